"""The first click on each example, as the app runs it: the measurement that chooses the examples' seeds and t0
(`python -m sdedit examples`) and the tests that check them go through here.

Not imported by the page: it builds one (`page.build_page`) to read the examples, their guides and the controls'
defaults from the app itself, and runs each edit through `jobs.run_edit`, the path of the page's `/edit`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, replace

from PIL import Image

from ..lab import examples as lab
from .examples import Example, load_example_image
from .jobs import EditSettings, run_edit
from .page import Page, build_page
from .tabs import Tab


def first_click(page: Page, tab: Tab, index: int) -> tuple[object, object, EditSettings]:
    """(guide, mask, settings) of the edit that clicking `tab`'s example `index` leads to on a fresh page: the
    guide and mask the click puts in place, the controls' defaults, and the seed and t0 the click sets.

    The settings are read from the components that Generate and an example's edit read
    (`Page.settings_inputs`), so they are the app's defaults by construction.
    """
    updates = tab.load_example(page, index)
    guide, mask = tab.example_guide(page, updates)
    values = [updates.get(comp, comp.value) for comp in page.settings_inputs]
    return guide, mask, EditSettings(*values)


def app_examples(page: Page) -> list[tuple[Tab, int, Example]]:
    """Every example on the page, tab by tab."""
    return [(tab, i, ex) for tab in page.tabs for i, ex in enumerate(tab.examples)]


def realism_scorer(page: Page):
    """The per-image realism distance (sdedit.lab.examples.RealismScorer), its reference without the emoji the
    examples are made of."""
    files = {f for _, _, ex in app_examples(page) for f in ex.files if f.startswith("photo-") and "strokes" not in f}
    return lab.RealismScorer(exclude=[load_example_image(f) for f in sorted(files)])


def run_first_click(guide, mask, settings: EditSettings) -> Image.Image:
    """The edit a first click runs (the batcher's path, as the page's `/edit`), without its animation."""
    return run_edit(guide, mask, settings, animate=False).images[0]


def measure_examples(
    seeds=None, strengths=None, on_result: Callable | None = None, log=print, tabs: list[str] | None = None
) -> list[tuple[str, Example, object]]:
    """Every app example over a grid of seeds and t0 (each otherwise its first click): [(tab, example, Choice)].

    Builds the page, so that the guides, masks and default settings are the app's own.
    """
    page = build_page()
    scorer = realism_scorer(page)
    log(f"realism reference: {scorer.reference_size} held-out emoji ({scorer.excluded} left out: example sources)")
    out = []
    for tab, index, ex in app_examples(page):
        if tabs and tab.id not in tabs:
            continue
        guide, mask, settings = first_click(page, tab, index)

        def edit(seed: int, strength: float, guide=guide, mask=mask, settings=settings):
            return run_first_click(guide, mask, replace(settings, seed=seed, strength=strength))

        rows = lab.measure(
            ex.title,
            guide,
            edit,
            scorer,
            seeds or lab.SEEDS,
            strengths or lab.STRENGTHS,
            on_result=(lambda row, image, tab=tab: on_result(tab.id, row, image)) if on_result else None,
            original=None if mask is None else load_example_image(ex.image),  # the photo before the edit
        )
        choice = lab.choose(rows, float(scorer.distance([guide])[0]), page.results.strength.value)
        c = choice
        scores = f"D3 {c.realism:.2f} (guide {c.guide_realism:.2f}), L2 {c.l2:.2f}"
        log(f"{tab.label}: {ex.title}: seed {c.seed}, t0 {c.strength:g}, {scores}")
        out.append((tab.label, ex, choice))
    return out


def first_click_sheet(cell: int = 128) -> Image.Image:
    """Every example's guide (top) and its first click's result (below), captioned with its seed and t0."""
    from PIL import ImageDraw

    page = build_page()
    found = app_examples(page)
    sheet = Image.new("RGB", (cell * len(found), 2 * cell + 30), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (tab, index, ex) in enumerate(found):
        guide, mask, settings = first_click(page, tab, index)
        shown = guide if isinstance(guide, Image.Image) else Image.open(guide)
        sheet.paste(shown.convert("RGB").resize((cell, cell), Image.LANCZOS), (i * cell, 0))
        result = run_first_click(guide, mask, settings)
        sheet.paste(result.convert("RGB").resize((cell, cell), Image.LANCZOS), (i * cell, cell))
        draw.text((i * cell + 3, 2 * cell + 2), ex.title[:20], fill="black")
        draw.text((i * cell + 3, 2 * cell + 15), f"seed {ex.seed}, t0 {ex.strength:g}", fill="black")
    return sheet


def main_examples(args) -> int:
    """`python -m sdedit examples`: measure every app example, print the table and the Example settings."""
    from ..lab.sweep import parse_strengths

    out = None
    if args.out:
        from pathlib import Path

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)

    if args.sheet:
        first_click_sheet().save(args.sheet, optimize=True)
        print(f"first clicks -> {args.sheet}")
        return 0
    rows = []

    def save(tab_id, row, image):
        rows.append({"tab": tab_id, **asdict(row)})
        if out is not None:
            image.save(out / f"{tab_id}-{row.example.replace(' ', '-').lower()}-t{row.strength:g}-seed{row.seed}.png")

    strengths = parse_strengths(args.strengths) if args.strengths else None
    tabs = args.tabs.split(",") if args.tabs else None
    chosen = measure_examples(list(range(args.seeds)), strengths, on_result=save, tabs=tabs)
    if out is not None:
        import json

        choices = [{"tab": tab, **c.as_dict()} for tab, _, c in chosen]
        (out / "examples.json").write_text(json.dumps({"choices": choices, "candidates": rows}, indent=1) + "\n")
    print()
    print(lab.render_markdown([c for _, _, c in chosen], [t for t, _, _ in chosen]))
    for _, ex, c in chosen:
        print(f"{ex.title}: seed={c.seed}, strength={c.strength:g}")
    return 0
