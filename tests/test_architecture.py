"""The house's shape, read from the code with `ast` so it cannot drift: the engine (the modules at the top of
sdedit/) imports nothing from the studio or the lab wing, the lab and the studio never import each other, and no
module imports itself back through others. docs/architecture.md draws the same picture."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "sdedit"
# the command line reaches every wing (lazily, per sub-command); choosing the examples joins the studio and the lab
DOORS = {"sdedit.cli", "sdedit.__main__", "sdedit.choose_examples"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(name: str) -> set[str]:
    """Every sdedit module `name` imports, at the top or inside a function."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from . import loading` names a module; `from .configs import X` names things in one
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        found |= {_owner(t) for t in targets if t.split(".")[0] == "sdedit"}
    return found - {name, None}


def _owner(target: str) -> str | None:
    """The module a dotted import lands in (`sdedit.sweep.run_sweep` -> `sdedit.sweep`)."""
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    return target or None


def wing(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ("studio", "lab") else "engine"


GRAPH = {name: imports_of(name) for name in MODULES}


def test_the_wings_exist():
    assert {wing(n) for n in MODULES} == {"engine", "studio", "lab"}
    assert "sdedit.studio.page" in MODULES and "sdedit.lab.train" in MODULES


@pytest.mark.parametrize("name", sorted(n for n in MODULES if wing(n) == "engine" and n not in DOORS))
def test_the_engine_imports_no_wing(name):
    bad = sorted(t for t in GRAPH[name] if wing(t) != "engine")
    assert not bad, f"{name} imports {bad}: the engine must not depend on the studio or the lab"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if wing(n) == "lab"))
def test_the_lab_never_imports_the_studio(name):
    assert not [t for t in GRAPH[name] if wing(t) == "studio"]


@pytest.mark.parametrize("name", sorted(n for n in MODULES if wing(n) == "studio"))
def test_the_studio_never_imports_the_lab(name):
    """The app serves what the engine serves (the t0 sweep, the CPU's bf16): training and measuring stay out."""
    bad = sorted(t for t in GRAPH[name] if wing(t) == "lab")
    assert not bad, f"{name} imports {bad}: the studio may use the engine only"


def test_no_import_cycles():
    """Depth-first search over every import (lazy ones too: a cycle hidden in a function is still one).
    A package's __init__ importing its own submodules is how packages work, not a cycle."""
    graph = {}
    for n, targets in GRAPH.items():
        is_package = MODULES[n].name == "__init__.py"
        # a package importing its own submodules, or a module its enclosing packages, is how packages work
        graph[n] = {t for t in targets if not (is_package and t.startswith(n + ".")) and not n.startswith(t + ".")}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(n: str) -> None:
        state[n] = 1
        path.append(n)
        for t in sorted(graph.get(n, ())):
            if state.get(t) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path[path.index(t) :], t]))
            if t not in state:
                visit(t)
        path.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)


def test_app_py_keeps_only_the_environment_the_zero_gpu_shim_and_main():
    tree = ast.parse((ROOT / "app.py").read_text())
    functions = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    assert "build_demo" not in functions and "main" in functions
    assert len((ROOT / "app.py").read_text().splitlines()) < 150


def test_the_drawn_edit_path_names_real_code():
    """docs/img/architecture.png's path of one edit names files and functions that exist."""
    import importlib.util
    import re

    spec = importlib.util.spec_from_file_location("architecture_doc", ROOT / "docs" / "architecture.py")
    doc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(doc)
    for where, _ in doc.EDIT_PATH:
        path, _, func = where.partition(": ")
        if path == "browser":
            continue
        assert (ROOT / path).is_file(), path
        if func:
            assert re.search(rf"\bdef {func}\(", (ROOT / path).read_text()), where
