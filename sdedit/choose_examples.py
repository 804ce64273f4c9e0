"""`python -m sdedit examples`: the lab's measure of realism and faithfulness, run on the app's own first clicks.

A door, like the command line, for the same reason: it joins two wings that never import each other. The studio
knows how an example's first click runs (`studio.first_click`: the page's guide, mask and default settings, and
`jobs.run_edit`); the lab knows how to score a result and choose a seed and t0 (`lab.examples`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, replace

from .errors import InputError
from .lab import examples as lab
from .studio.examples import load_example_image
from .studio.first_click import app_examples, first_click, first_click_sheet, run_first_click
from .studio.page import Page, build_page


def realism_scorer(page: Page):
    """The per-image realism distance (sdedit.lab.examples.RealismScorer), its reference without the emoji the
    examples are made of."""
    files = {f for _, _, ex in app_examples(page) for f in ex.files if f.startswith("photo-") and "strokes" not in f}
    return lab.RealismScorer(exclude=[load_example_image(f) for f in sorted(files)])


def measure_examples(
    seeds=None, strengths=None, on_result: Callable | None = None, log=print, tabs: list[str] | None = None
) -> dict:
    """Every app example over a grid of seeds and t0 (each otherwise its first click), scored and chosen.

    Builds the page, so that the guides, masks, default settings and the default t0 that sets the faithfulness
    bound are the app's own. Returns {"chosen": [(tab label, Example, Choice)], "entries": the record's
    per-example parts, "order": every (tab, example) of the app in order, "run": what the run was measured with}.
    """
    page = build_page()
    scorer = realism_scorer(page)
    log(f"realism reference: {scorer.reference_size} held-out emoji ({scorer.excluded} left out: example sources)")
    bound_t0 = float(page.results.strength.value)  # the Strength slider's start: the model config's default t0
    chosen, entries, measured, settings_seen = [], [], [], None
    for tab, index, ex in app_examples(page):
        if tabs and tab.id not in tabs:
            continue
        guide, mask, settings = first_click(page, tab, index)
        settings_seen = settings_seen or settings

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
        choice = lab.choose(rows, float(scorer.distance([guide])[0]), bound_t0)
        c = choice
        scores = f"D3 {c.realism:.2f} (guide {c.guide_realism:.2f}), L2 {c.l2:.2f} (bound {c.l2_bound:.2f})"
        log(f"{tab.label}: {ex.title}: seed {c.seed}, t0 {c.strength:g}, {scores}; ships {ex.seed}, {ex.strength}")
        chosen.append((tab.label, ex, choice))
        simulator = {k: v for k, v in (("colors", ex.colors), ("smoothing", ex.smoothing)) if v is not None}
        shipped = {"seed": ex.seed, "t0": ex.strength, **simulator}
        entries.append(lab.example_entry(tab.id, tab.label, rows, choice, shipped, 0))
        if tab.id not in measured:
            measured.append(tab.id)
    if settings_seen is None:
        raise InputError(f"no app example on the tabs {', '.join(tabs or [])}")
    s = settings_seen
    run = {
        "tabs": measured,
        "seeds": [int(x) for x in (seeds or lab.SEEDS)],
        "strengths": [float(x) for x in (strengths or lab.STRENGTHS)],
        "bound_t0": bound_t0,
        "settings": {
            "model": s.model,
            "sampler": s.sampler,
            "steps": s.steps,
            "repeats": s.repeats,
            "mask_feather": s.mask_feather,
            "mask_dilation": s.mask_dilation,
            "fill_outlines": s.fill_outlines,
            "auto_strength": s.auto_strength,
        },
        "realism_reference": scorer.reference_size,
        "realism_excluded": scorer.excluded,
    }
    order = [(tab.id, ex.title) for tab, _, ex in app_examples(page)]
    return {"chosen": chosen, "entries": entries, "order": order, "run": run}


def _command(args) -> str:
    """The command line that measured a record, as one would type it."""
    words = ["python -m sdedit examples"]
    if args.tabs:
        words.append(f"--tabs {args.tabs}")
    words.append(f"--seeds {args.seeds}")
    if args.strengths:
        words.append(f"--strengths {args.strengths}")
    if args.record != lab.RECORD:
        words.append(f"--record {args.record or repr('')}")
    return " ".join(words)


def main(args) -> int:
    """`python -m sdedit examples`: measure every app example, print the table and the Example settings, and
    merge the run into the record (eval/examples.json) that docs/quality.md's examples section is rendered from."""
    import json
    import os
    import platform
    import time
    from datetime import UTC, datetime
    from pathlib import Path

    from .lab.records import REPO_ROOT, publish
    from .sweep import parse_strengths

    out = None
    if args.out:
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

    t_start, load_start = time.perf_counter(), os.getloadavg()[0]
    strengths = parse_strengths(args.strengths) if args.strengths else None
    tabs = args.tabs.split(",") if args.tabs else None
    measured = measure_examples(list(range(args.seeds)), strengths, on_result=save, tabs=tabs)
    chosen = measured["chosen"]
    if out is not None:
        choices = [{"tab": tab, **c.as_dict()} for tab, _, c in chosen]
        (out / "examples.json").write_text(json.dumps({"choices": choices, "candidates": rows}, indent=1) + "\n")
    print()
    print(lab.render_markdown([c for _, _, c in chosen], [t for t, _, _ in chosen]))
    for _, ex, c in chosen:
        print(f"{ex.title}: seed={c.seed}, strength={c.strength:g}")
    if args.record:
        import torch

        record_path = Path(args.record)
        record_path = record_path if record_path.is_absolute() else REPO_ROOT / record_path
        run = {
            **measured["run"],
            "command": _command(args),
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "minutes": round((time.perf_counter() - t_start) / 60, 1),
            "load_average": [round(load_start, 1), round(os.getloadavg()[0], 1)],
            "machine": f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} thread(s)",
        }
        old = json.loads(record_path.read_text()) if record_path.is_file() else None
        record = lab.merge_records(old, run, measured["entries"], measured["order"])
        record_path.parent.mkdir(parents=True, exist_ok=True)
        record_path.write_text(json.dumps(record, indent=1) + "\n")
        print(f"record -> {record_path}")
        if args.docs:
            for page in publish(record_path):
                print(f"rendered from it -> {page}")
    return 0
