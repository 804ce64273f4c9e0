"""`python -m sdedit examples`: the lab's measure of realism and faithfulness, run on the app's own first clicks.

A door, like the command line, for the same reason: it joins two wings that never import each other. The studio
knows how an example's first click runs (`studio.first_click`: the page's guide, mask and default settings, and
`jobs.run_edit`); the lab knows how to score a result and choose a seed and t0 (`lab.examples`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, replace

from .lab import examples as lab
from .studio.examples import Example, load_example_image
from .studio.first_click import app_examples, first_click, first_click_sheet, run_first_click
from .studio.page import Page, build_page


def realism_scorer(page: Page):
    """The per-image realism distance (sdedit.lab.examples.RealismScorer), its reference without the emoji the
    examples are made of."""
    files = {f for _, _, ex in app_examples(page) for f in ex.files if f.startswith("photo-") and "strokes" not in f}
    return lab.RealismScorer(exclude=[load_example_image(f) for f in sorted(files)])


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


def main(args) -> int:
    """`python -m sdedit examples`: measure every app example, print the table and the Example settings."""
    from .sweep import parse_strengths

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
