"""The repository keeps its promises: pins, the README's two commands, CI running them, ruff-clean code."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def requirements() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name = re.split(r"[=<>~!\[ ;]", line, maxsplit=1)[0]
            pins[name.strip().lower()] = line
    return pins


def front_matter() -> dict:
    text = (ROOT / "README.md").read_text()
    assert text.startswith("---\n"), "README must start with the Space front matter"
    return yaml.safe_load(text.split("---\n")[1])


def test_torch_is_pinned_and_gradio_matches_the_space_sdk():
    pins = requirements()
    assert pins["torch"] == "torch==2.13.0"
    assert pins["gradio"] == f"gradio=={front_matter()['sdk_version']}"


def test_space_front_matter():
    fm = front_matter()
    assert fm["sdk"] == "gradio" and fm["app_file"] == "app.py" and (ROOT / fm["app_file"]).is_file()
    assert fm["suggested_hardware"]
    hub = {
        "google/ddpm-church-256",
        "google/ddpm-bedroom-256",
        "google/ddpm-celebahq-256",
        "google/ncsnpp-church-256",
        "google/ncsnpp-celebahq-256",
        "google/ncsnpp-ffhq-256",
    }
    assert hub <= set(fm["models"]) and hub <= set(fm["preload_from_hub"])


def test_readme_first_screen_has_exactly_the_two_commands_and_ci_runs_the_test_one():
    body = (ROOT / "README.md").read_text().split("---\n", 2)[2]
    first_screen = "\n".join(body.splitlines()[:40])
    commands = re.findall(r"```bash\n(.+?)\n```", first_screen)
    assert len(commands) == 2, commands
    app_cmd, test_cmd = commands
    assert app_cmd.endswith("python app.py")
    assert test_cmd.endswith("python -m pytest")
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_cmd in ci_lines, "CI must run the README's test command, verbatim, as a line of its own"
    assert "python -m pytest" in test_cmd


def test_ruff_clean():
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    result = subprocess.run([ruff, "check", str(ROOT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:]
    result = subprocess.run([ruff, "format", "--check", str(ROOT)], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:]


def test_no_large_or_stray_files_are_tracked():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    assert files
    for f in files:
        path = ROOT / f
        if path.is_file():
            assert path.stat().st_size <= 20 * 1024 * 1024, f
        assert not f.startswith(("runs/", "outputs/", "artifacts/", ".venv/")), f


def test_every_browser_test_takes_its_marks_from_browser_utils_and_ci_requires_the_browser():
    """With SDEDIT_REQUIRE_BROWSER=1 (set by .ci/run) a missing Chromium must fail, never skip: every test that
    launches Chromium gets its marks from tests/browser_utils.browser_marks (the module's pytestmark, or
    browser_test on one test), never a skip of its own."""
    run = (ROOT / ".ci" / "run").read_text()
    assert "export SDEDIT_REQUIRE_BROWSER=1" in run
    assert run.index("SDEDIT_REQUIRE_BROWSER=1") < run.rindex("python -m pytest")
    drivers = []
    for path in sorted(p for p in (ROOT / "tests").rglob("test_*.py") if p.name != "test_repo.py"):
        text = path.read_text()
        if "sync_playwright" not in text and "open_app(" not in text:
            continue
        drivers.append(path.name)
        assert re.search(r"pytestmark = .*browser_marks\(\)", text) or "@browser_test" in text, path.name
        assert "skipif(not os.path.exists" not in text and "mark.browser\n" not in text, path.name
    assert {"test_browser.py", "test_examples.py", "test_recall_browser.py", "test_strength_brush.py"} <= set(drivers)


def test_tests_are_grouped_by_wing():
    """Each test module lives with the part of the product it checks; only repo-wide checks stay at the top."""
    tests = ROOT / "tests"
    top = {p.name for p in tests.glob("test_*.py")}
    assert top == {"test_architecture.py", "test_packaging.py", "test_repo.py"}, top
    for wing in ("engine", "studio", "lab", "browser"):
        assert (tests / wing / "__init__.py").is_file(), wing
        assert list((tests / wing).glob("test_*.py")), f"tests/{wing} has no tests"
