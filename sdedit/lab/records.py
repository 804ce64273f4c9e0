"""Published numbers and their records: which section of which page is rendered from which results file.

Every measured number in README.md, docs/ and the model cards lies in a section between `<!-- key:begin -->`
and `<!-- key:end -->`, rendered from a committed JSON results file by a pure function (results -> markdown)
that the measuring command also calls to publish it. `SECTIONS` is the registry; a new section is one line
there. `python -m sdedit.lab.records` renders every section again from the committed records, `--check` only
says which pages differ from their records (as tests/lab/test_records.py does).

No torch here: benchmarks import this before they set their thread policy (torch reads it when it loads).
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Section:
    """`key`'s section of `page`, rendered by `render` ("module:function") from the `results` files (in order)."""

    key: str
    page: str
    results: tuple[str, ...]
    render: str

    def records(self, root: Path = REPO_ROOT) -> list[dict]:
        return [json.loads((Path(root) / r).read_text()) for r in self.results]

    def render_text(self, root: Path = REPO_ROOT) -> str:
        module, _, name = self.render.partition(":")
        return getattr(importlib.import_module(module), name)(*self.records(root)).strip()


def section(key: str, page: str, results: str | tuple[str, ...], render: str) -> Section:
    return Section(key, page, (results,) if isinstance(results, str) else tuple(results), render)


_BENCH = "benchmarks/results/"
SECTIONS: tuple[Section, ...] = (
    section("quality", "docs/quality.md", "eval/results.json", "sdedit.lab.eval_report:render_quality"),
    section(
        "x0-clipping",
        "docs/quality.md",
        ("eval/results.json", "eval/x0-off/results.json"),
        "sdedit.lab.eval_report:render_x0_clipping",
    ),
    section("few-step", "docs/performance.md", "eval/results.json", "sdedit.lab.eval_report:render_few_step"),
    section("readme-quality", "README.md", "eval/results.json", "sdedit.lab.eval_report:render_readme"),
    section(
        "crosscheck",
        "docs/quality.md",
        ("eval/crosscheck/crosscheck.json", "eval/crosscheck-paper/crosscheck.json"),
        "sdedit.lab.crosscheck:render",
    ),
    section(
        "live-quality", "docs/quality.md", _BENCH + "live-quality.json", "benchmarks.live_latency:quality_markdown"
    ),
    section(
        "upscaler",
        "docs/quality.md",
        (_BENCH + "upscaler.json", _BENCH + "upscaler-2threads.json", "models/fluent-emoji-upscaler-4x/training.json"),
        "benchmarks.upscaler:render",
    ),
    section(
        "targets",
        "docs/performance.md",
        (_BENCH + "bench-cpu.json", _BENCH + "gpu-check-h100.json"),
        "benchmarks.run:render_targets",
    ),
    section("bench-cpu", "docs/performance.md", _BENCH + "bench-cpu.json", "benchmarks.run:render"),
    section("bench-gpu", "docs/performance.md", _BENCH + "gpu-check-h100.json", "benchmarks.gpu_check:render"),
    section(
        "ncsnpp-cpu", "docs/performance.md", _BENCH + "ncsnpp-profile-cpu.json", "benchmarks.ncsnpp_profile:render"
    ),
    section("app-load", "docs/performance.md", _BENCH + "app-load.json", "benchmarks.app_load:performance_section"),
    section("app-speed", "docs/performance.md", _BENCH + "app-speed.json", "benchmarks.app_speed:section"),
    section(
        "live-precision",
        "docs/performance.md",
        _BENCH + "live-precision.json",
        "benchmarks.live_latency:precision_markdown",
    ),
    section(
        "live-latency", "docs/performance.md", _BENCH + "live-latency.json", "benchmarks.live_latency:latency_markdown"
    ),
    section(
        "app-load-reliability",
        "docs/reliability.md",
        _BENCH + "app-load.json",
        "benchmarks.app_load:reliability_section",
    ),
    section(
        "app-load-baseline",
        "docs/reliability.md",
        (_BENCH + "app-load.json", _BENCH + "app-load-baseline.json"),
        "benchmarks.app_load:comparison_section",
    ),
    section("live-load", "docs/reliability.md", _BENCH + "live-load.json", "benchmarks.live_load:markdown"),
    section("threads", "docs/performance.md", _BENCH + "threads.json", "benchmarks.threads:render"),
    section("model-load", "docs/performance.md", _BENCH + "model-load.json", "benchmarks.model_load:render"),
    section("animation", "docs/performance.md", _BENCH + "animation.json", "benchmarks.animation:render"),
    section("pick-cost", "docs/performance.md", _BENCH + "pick-cost.json", "benchmarks.pick_cost:render"),
    section("latent-cpu", "docs/performance.md", _BENCH + "latent-cpu.json", "benchmarks.latent:summary"),
    section("latent-import", "docs/performance.md", _BENCH + "latent-import.json", "benchmarks.latent_import:table"),
    section("freehand", "docs/quality.md", "eval/freehand.json", "sdedit.lab.freehand:render"),
    section("d3-agreement", "docs/quality.md", "eval/d3-agreement.json", "sdedit.lab.examples:render_agreement"),
    section("examples", "docs/quality.md", "eval/examples.json", "sdedit.lab.examples:render"),
    section(
        "readme-performance",
        "README.md",
        (_BENCH + "bench-cpu.json", _BENCH + "gpu-check-h100.json"),
        "benchmarks.run:render_readme",
    ),
    section("readme-model", "README.md", "models/fluent-emoji-64/training.json", "sdedit.lab.modelcard:render_readme"),
    section(
        "resolution-cost",
        "models/fluent-emoji-64/README.md",
        _BENCH + "resolution-cost.json",
        "benchmarks.resolution_cost:render",
    ),
)
# sections still written by hand, each until it is rendered from its record
UNRECORDED: tuple[str, ...] = ()


def markers(key: str) -> tuple[str, str]:
    return f"<!-- {key}:begin -->", f"<!-- {key}:end -->"


def replace_between(text: str, begin: str, end: str, body: str) -> str:
    """`text` with what lies between the `begin` and `end` markers replaced by `body` (appended when absent)."""
    block = f"{begin}\n{body.rstrip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        return pattern.sub(lambda _: block, text)
    return text.rstrip() + "\n\n" + block + "\n"


def read_section(text: str, key: str) -> str | None:
    """What lies between `key`'s markers in `text` (stripped), or None without them."""
    begin, end = markers(key)
    found = re.search(re.escape(begin) + r"(.*?)" + re.escape(end), text, re.S)
    return found.group(1).strip() if found else None


def write_section(path: str | Path, key: str, body: str) -> Path:
    """Rewrite `key`'s section of the page at `path` (added at its end when the page has none)."""
    path = Path(path)
    text = path.read_text() if path.exists() else ""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(replace_between(text, *markers(key), body))
    return path


def registered(key: str) -> Section:
    found = [s for s in SECTIONS if s.key == key]
    if not found:
        raise KeyError(f"no section {key!r} is registered in sdedit.lab.records.SECTIONS")
    return found[0]


def sections_fed_by(results_file: str | Path, root: Path = REPO_ROOT) -> list[Section]:
    """The registered sections that `results_file` (a path, or one relative to `root`) is a record of."""
    target = (Path(root) / results_file).resolve()
    return [s for s in SECTIONS if any((Path(root) / r).resolve() == target for r in s.results)]


def publish(results_file: str | Path, root: Path = REPO_ROOT, page: str | Path | None = None) -> list[Path]:
    """Render every section fed by `results_file` into its page (only `page`'s, if given); the pages written.

    A section with several records is rendered only when all of them exist."""
    root = Path(root)
    pages = []
    for s in sections_fed_by(results_file, root):
        if page is not None and (root / s.page).resolve() != (root / page).resolve():
            continue
        if all((root / r).is_file() for r in s.results):
            pages.append(write_section(root / s.page, s.key, s.render_text(root)))
    return pages


def publish_body(body: str, results_file: str | Path, key: str, root: Path = REPO_ROOT) -> Path:
    """Write an already rendered `body` into registered section `key`, after checking that `results_file` feeds it
    (for a tool that renders once and prints the same text)."""
    s = registered(key)
    if not any((Path(root) / r).resolve() == Path(results_file).resolve() for r in s.results):
        raise ValueError(f"section {key!r} is rendered from {', '.join(s.results)}, not from {results_file}")
    return write_section(Path(root) / s.page, key, body)


def stale(root: Path = REPO_ROOT, keys=None) -> list[str]:
    """Keys of the sections (of `keys`, default all) whose page differs from what their records render, whose
    page lacks them, or whose records are missing."""
    out = []
    for s in SECTIONS:
        if keys is not None and s.key not in keys:
            continue
        page = Path(root) / s.page
        current = read_section(page.read_text(), s.key) if page.is_file() else None
        if not all((Path(root) / r).is_file() for r in s.results) or current != s.render_text(root):
            out.append(s.key)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sdedit.lab.records", description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="only list the sections whose page differs from its record")
    p.add_argument("keys", nargs="*", help="render only these sections (default: all)")
    args = p.parse_args(argv)
    chosen = [registered(k) for k in args.keys] if args.keys else list(SECTIONS)
    if args.check:
        bad = stale(keys={s.key for s in chosen})
        for k in bad:
            print(f"{k}: {registered(k).page} differs from what {', '.join(registered(k).results)} renders (or lacks)")
        return 1 if bad else 0
    for s in chosen:
        print(f"{s.key}: {write_section(REPO_ROOT / s.page, s.key, s.render_text())}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
