"""The examples' record (eval/examples.json) and the docs section rendered from it: the record is of the examples
the app ships, the table shows their seeds and t0, and the rule's picks it records are what the rule gives on the
recorded scores. No model runs here: the record is read, not measured."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sdedit.lab import examples as lab
from sdedit.lab.examples import Candidate, choose, merge_records, render
from sdedit.lab.records import REPO_ROOT
from sdedit.studio import examples as shipped

TABS = {
    "paint": shipped.PAINT_EXAMPLES,
    "edit": shipped.EDIT_EXAMPLES,
    "composite": shipped.COMPOSITE_EXAMPLES,
    "painting": shipped.PAINTING_EXAMPLES,
}


@pytest.fixture(scope="module")
def record() -> dict:
    return json.loads((REPO_ROOT / lab.RECORD).read_text())


def test_the_record_is_of_the_examples_the_app_ships(record):
    found = [(e["tab"], e["example"], e["shipped"]) for e in record["examples"]]
    expected = [
        (tab, ex.title, {"seed": ex.seed, "t0": ex.strength} | {k: v for k, v in sim.items() if v is not None})
        for tab, exs in TABS.items()
        for ex in exs
        for sim in [{"colors": ex.colors, "smoothing": ex.smoothing}]
    ]
    assert found == expected, "measure again: python -m sdedit examples (docs/quality.md, the examples' Reproduce)"


def test_the_table_shows_each_shipped_seed_and_t0_and_where_the_rules_pick_differs(record):
    text = render(record)
    assert render(record) == text  # pure
    rows = [line for line in text.splitlines() if line.startswith("| ") and " | " in line]
    for e in record["examples"]:
        ex = next(x for x in TABS[e["tab"]] if x.title == e["example"])
        row = next(r for r in rows if r.startswith(f"| {e['tab_label']} | {ex.title}"))
        assert f" | {ex.seed} | {ex.strength:g} | " in row, row
        if ex.smoothing is not None:
            assert f"smoothing {ex.smoothing}" in row.split(" | ")[1]
        if (e["rule"]["seed"], e["rule"]["t0"]) == (ex.seed, ex.strength):
            assert "| the same |" in row
        else:
            assert f"| seed {e['rule']['seed']}, t0 {e['rule']['t0']:g} (D3 " in row
    bounds = {r["bound_t0"] for r in record["runs"]}
    assert f"t0 {' and '.join(f'{b:g}' for b in sorted(bounds))} in these runs" in text


def test_the_recorded_picks_are_the_rules_on_the_recorded_scores(record):
    for e in record["examples"]:
        run = record["runs"][e["run"]]
        rows = [
            Candidate(e["example"], c["seed"], c["t0"], c["d3"], c["l2"], c.get("l2_original")) for c in e["candidates"]
        ]
        assert len(rows) == len(run["seeds"]) * len(run["strengths"])
        at_default = [c["l2"] for c in e["candidates"] if abs(c["t0"] - run["bound_t0"]) < 1e-9]
        assert e["l2_bound"] == pytest.approx(float(np.median(at_default)), abs=1e-3)
        c = choose(rows, e["guide_d3"], run["bound_t0"])
        assert (c.seed, c.strength, c.better_within) == (e["rule"]["seed"], e["rule"]["t0"], e["better_within"])


def _entry(tab: str, title: str, shipped_at: tuple[int, float], rule: tuple[int, float], run: int = 0) -> dict:
    candidates = [
        {"seed": s, "t0": t, "d3": 5.0 + s + t, "l2": 10 * t + s} for t in (0.3, 0.4) for s in (0, 1)
    ]  # every candidate beats the guide's 9.0; the bound is median(4, 5) = 4.5 at t0 0.4
    return {
        "tab": tab,
        "tab_label": tab.capitalize(),
        "example": title,
        "shipped": {"seed": shipped_at[0], "t0": shipped_at[1]},
        "guide_d3": 9.0,
        "l2_bound": 4.5,
        "rule": {"seed": rule[0], "t0": rule[1]},
        "better_within": 2,
        "run": run,
        "candidates": candidates,
    }


def _run(tabs: list[str], date: str) -> dict:
    return {
        "tabs": tabs,
        "seeds": [0, 1],
        "strengths": [0.3, 0.4],
        "bound_t0": 0.4,
        "settings": {"model": "m", "sampler": "dpmpp", "steps": 20, "mask_feather": 2},
        "realism_reference": 95,
        "realism_excluded": 1,
        "command": f"python -m sdedit examples --tabs {','.join(tabs)}",
        "date": date,
        "minutes": 1.0,
        "load_average": [1.0, 2.0],
        "machine": "x86_64",
    }


def test_a_run_replaces_its_examples_and_keeps_the_others_in_the_apps_order():
    order = [("paint", "A"), ("edit", "B"), ("edit", "C")]
    old = merge_records(None, _run(["edit"], "day 1"), [_entry("edit", "B", (0, 0.3), (0, 0.3))], order)
    old = merge_records(old, _run(["paint"], "day 2"), [_entry("paint", "A", (0, 0.3), (0, 0.3))], order)
    assert [(e["example"], e["run"]) for e in old["examples"]] == [("A", 1), ("B", 0)]
    new = merge_records(
        old,
        _run(["edit"], "day 3"),
        [_entry("edit", "C", (1, 0.3), (0, 0.3)), _entry("edit", "B", (0, 0.3), (0, 0.3))],
        order,
    )
    assert [(e["example"], e["run"]) for e in new["examples"]] == [("A", 0), ("B", 1), ("C", 1)]
    assert [r["date"] for r in new["runs"]] == ["day 2", "day 3"]  # day 1's run feeds no example any more
    gone = merge_records(new, _run(["paint"], "day 4"), [_entry("paint", "A", (0, 0.3), (0, 0.3))], order[:1])
    assert [e["example"] for e in gone["examples"]] == ["A"] and len(gone["runs"]) == 1


def test_the_section_says_whether_the_rule_picks_what_the_app_ships():
    same = {"runs": [_run(["paint"], "d")], "examples": [_entry("paint", "A", (0, 0.3), (0, 0.3))]}
    text = render(same)
    assert "the rule picks what the app ships for every example" in text and "| the same |" in text
    # shipped (1, 0.4): L2 5 above the bound 4.5; the rule picks (0, 0.3)
    apart = {"runs": [_run(["paint"], "d")], "examples": [_entry("paint", "A", (1, 0.4), (0, 0.3))]}
    text = render(apart)
    assert "for 1 of the 1 examples" in text and "1 shipped result lies outside the bounds (A" in text
    assert "| Paint | A | 1 | 0.4 | 6.40 | 9.00 | 5.00 | 4.50 | no: above the L2 bound | 2/4 | seed 0, t0 0.3" in text
    assert "the A beats its guide by 2.60" in text
