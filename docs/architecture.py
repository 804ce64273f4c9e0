"""Draw docs/img/architecture.png from the code: the three wings with their modules (each with the first
line of its docstring) and the path one edit takes through them.

    python docs/architecture.py

The module lists are read from sdedit/ each time, so the drawing follows the code; the edit's path is
written here and checked by tests/test_architecture.py against the functions it names.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "img" / "architecture.png"

# The way one edit takes, from the browser to the samplers and back: (where, what happens).
EDIT_PATH = [
    ("browser", "paint strokes on the Paint tab, press Generate"),
    ("sdedit/studio/tabs/paint.py", "the tab builds its own guide from its editor (guides.paint_guide)"),
    ("sdedit/studio/jobs.py: prepare_edit", "pipe.check_inputs, then pipe.prepare: the guide, once, in model space"),
    ("sdedit/studio/queue.py", "the serving queue: requests with matching settings share one forward"),
    ("sdedit/studio/jobs.py: run_jobs", "pipe.run over every request's prepared guides, one seed per sample"),
    ("sdedit/pipeline.py: run", "K repeats; each: Guide(x0, e, strength) -> denoise"),
    ("sdedit/registry.py", "the sampler's row builds its loop and schedule"),
    ("sdedit/samplers.py", "perturb to t0, reverse SDE to 0; Guide.project keeps the unmasked region"),
    ("sdedit/adapters.py", "model space -> canvases (PixelSpace.decode)"),
    ("sdedit/pipeline.py: postprocess", "back to the guide's size; outside the mask, the guide itself"),
    ("sdedit/studio/jobs.py: finish_edit", "the summary; results go to the page first, the animation after"),
]

WINGS = [
    ("Studio wing  ·  sdedit/studio/", "the Gradio app: imports the engine only", "studio", "#fde7d3"),
    ("Engine  ·  sdedit/", "SDEdit itself: imports no wing", "engine", "#dbe8f6"),
    ("Lab wing  ·  sdedit/lab/", "training and measurement: imports the engine only", "lab", "#e2f1dc"),
]


def first_line(path: Path) -> str:
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    return doc.strip().splitlines()[0].rstrip(".") if doc.strip() else ""


def modules(wing: str) -> list[tuple[str, str]]:
    if wing == "engine":
        paths = sorted(p for p in (ROOT / "sdedit").glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    else:
        base = ROOT / "sdedit" / wing
        paths = sorted(p for p in base.rglob("*.py") if p.name != "__init__.py")
        paths = [p for p in paths if p.parent == base] + [p for p in paths if p.parent != base]
    root = ROOT / "sdedit" / ("" if wing == "engine" else wing)
    return [(str(p.relative_to(root)), first_line(p)) for p in paths]


def draw(out: Path = OUT) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    rows_max = max(len(modules(w)) for _, _, w, _ in WINGS)
    box = 1.2 + 0.38 * rows_max  # every module gets two lines
    height = 1.6 + box + 5.2
    fig = plt.figure(figsize=(18, height), dpi=90)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(0, 18)
    ax.set_ylim(0, height)
    ax.axis("off")
    ax.text(0.3, height - 0.45, "SDEdit Studio: one house, three wings", fontsize=19, weight="bold", va="center")
    ax.text(
        0.3,
        height - 0.9,
        "Doors: app.py (the Space's app file) → studio · python -m sdedit (sdedit/cli.py) → every wing "
        "(examples: sdedit/choose_examples.py, studio + lab) · the Python API (SDEditPipeline) → engine",
        fontsize=11.5,
        va="center",
        color="#333",
    )
    columns = [(0.3, 6.2), (6.7, 5.6), (12.5, 5.2)]
    top = height - 1.4
    bottom = top - box
    for (title, note, wing, colour), (x, w) in zip(WINGS, columns, strict=True):
        ax.add_patch(FancyBboxPatch((x, bottom), w, top - bottom, boxstyle="round,pad=0.05", fc=colour, ec="#555"))
        ax.text(x + 0.15, top - 0.25, title, fontsize=13, weight="bold", va="top")
        ax.text(x + 0.15, top - 0.62, note, fontsize=10, style="italic", va="top", color="#444")
        rows = modules(wing)
        step = 0.38
        for i, (name, doc) in enumerate(rows):
            y = top - 1.05 - i * step
            ax.text(x + 0.15, y, name, fontsize=9.5, family="monospace", weight="bold", va="top")
            short = textwrap.shorten(doc, width=int(w * 15), placeholder="…")
            ax.text(x + 0.15, y - 0.18, short, fontsize=7.8, va="top", color="#333")
    for x0, x1 in ((6.5, 6.7), (12.5, 12.3)):  # studio -> engine, lab -> engine
        mid = (top + bottom) / 2
        ax.add_patch(FancyArrowPatch((x0, mid), (x1, mid), arrowstyle="-|>", mutation_scale=22, lw=2, color="#555"))
        ax.text((x0 + x1) / 2, mid + 0.25, "uses", fontsize=9, ha="center", color="#555")

    ax.text(0.3, 4.75, "One edit, from the browser to the samplers and back", fontsize=14, weight="bold", va="center")
    # (the path's panel keeps its own coordinates at the bottom of the figure)
    n = len(EDIT_PATH)
    per_row = (n + 1) // 2
    for i, (where, what) in enumerate(EDIT_PATH):
        row, col = divmod(i, per_row)
        x = 0.3 + col * (17.4 / per_row)
        y = 3.9 - row * 2.0
        w = 17.4 / per_row - 0.35
        wing = "studio" if "studio" in where else ("engine" if where.startswith("sdedit") else "door")
        colour = {"studio": "#fde7d3", "engine": "#dbe8f6", "door": "#eeeeee"}[wing]
        ax.add_patch(FancyBboxPatch((x, y - 1.25), w, 1.35, boxstyle="round,pad=0.04", fc=colour, ec="#555"))
        path, _, func = where.partition(": ")
        label = f"{i + 1}. {path}" + (f"\n   {func}" if func else "")
        ax.text(x + 0.1, y - 0.02, label, fontsize=7.8, weight="bold", family="monospace", va="top")
        ax.text(x + 0.1, y - 0.5, textwrap.fill(what, width=int(w * 13)), fontsize=8.4, va="top")
        if i + 1 < n and (i + 1) % per_row:
            ax.add_patch(
                FancyArrowPatch((x + w, y - 0.55), (x + w + 0.35, y - 0.55), arrowstyle="-|>", mutation_scale=14)
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


if __name__ == "__main__":
    print(draw())
