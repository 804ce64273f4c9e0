"""The evaluation: a guide/reference split with no leaks, the CLI's settings, and an end-to-end smoke run
(tiny random UNet, real held-out emoji from the feature network's self-check sheet) writing every output."""

from __future__ import annotations

import csv
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from sdedit.cli import build_parser
from sdedit.lab.data import ImageSet
from sdedit.lab.evaluate import (
    CSV_FIELDS,
    IMAGES,
    KEEP_MARKER,
    EvalSettings,
    parse_samplers,
    plan_evaluations,
    publish_docs,
    run_evaluation,
    settings_from_args,
    split_held_out,
    write_outputs,
)
from sdedit.lab.features import load_feature_net, load_selfcheck
from sdedit.samplers import X0Limit


def test_split_keeps_skin_tones_together_and_balances_groups():
    names, cats = [], []
    for i in range(12):  # 12 emoji with five skin tones each, and 30 without
        base = f"1f{400 + i:03x}"
        for tone in ("", "-1f3fb", "-1f3fc", "-1f3fd", "-1f3fe"):
            names.append(base + tone)
            cats.append("People & Body")
    for i in range(30):
        names.append(f"1f{600 + i:03x}")
        cats.append("Objects" if i % 2 else "Symbols")
    a, b = split_held_out(names, cats, seed=0)
    assert len(set(a) & set(b)) == 0 and sorted([*a, *b]) == list(range(len(names)))
    side = {i: "a" for i in a} | {i: "b" for i in b}
    for i in range(12):  # every variant of one emoji is on one side
        assert len({side[5 * i + j] for j in range(5)}) == 1
    for cat in set(cats):
        na = sum(cats[i] == cat for i in a)
        nb = sum(cats[i] == cat for i in b)
        assert abs(na - nb) <= 5
    assert split_held_out(names, cats, seed=0)[0].tolist() == a.tolist()
    assert split_held_out(names, cats, seed=1)[0].tolist() != a.tolist()


def test_parse_samplers():
    assert parse_samplers("reference:1000, dpmpp:20") == [("reference", 1000), ("dpmpp", 20)]
    for bad in ("dpmpp", "dpmpp:x", "dpmpp:0", ":20", ""):
        with pytest.raises(ValueError):
            parse_samplers(bad)


def test_cli_settings(tmp_path):
    parser = build_parser()
    args = parser.parse_args(["eval", "--quick", "--out", str(tmp_path), "--num-guides", "4"])
    s = settings_from_args(args)
    assert s.quick and s.num_guides == 4 and s.strengths == (0.2, 0.5, 1.0)
    full = settings_from_args(parser.parse_args(["eval", "--samplers", "ddim:50", "--strengths", "0.3,0.6"]))
    assert not full.quick and full.num_guides == 128 and full.samplers == ("ddim:50",)
    assert full.strengths == (0.3, 0.6)
    with pytest.raises(ValueError):
        settings_from_args(parser.parse_args(["eval", "--strengths", "0.5,1.5"]))
    with pytest.raises(ValueError):
        settings_from_args(parser.parse_args(["eval", "--reference-guides", "1"]))
    assert len(EvalSettings().strengths) == 10 and "reference:1000" in EvalSettings().samplers


def _held_out_fixture() -> ImageSet:
    images, categories = load_selfcheck()
    names = load_feature_net().config.info["selfcheck"]["names"]
    return ImageSet(images, list(names), categories, np.ones(len(names), bool), "selfcheck")


def test_eval_smoke_run_writes_every_output(vp_pipe, tmp_path):
    s = EvalSettings(
        num_guides=6,
        strengths=(0.5, 1.0),
        samplers=("reference:10", "dpmpp:4"),
        reference_guides=3,
        kid_subsets=10,
        batch_size=4,
        sheet_guides=2,
    )
    logs = []
    result = run_evaluation(vp_pipe, s, image_set=_held_out_fixture(), log=logs.append)
    out = tmp_path / "eval"
    paths = write_outputs(result, out)
    assert {p.name for p in paths} == {"results.csv", "results.json", "results.md", *IMAGES}
    for name in IMAGES:
        with Image.open(out / name) as im:
            assert im.width > 200 and im.height > 100
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == CSV_FIELDS
    sections = [r["section"] for r in rows]
    assert sections.count("sanity") == 4 and sections.count("tradeoff") == 3  # strokes + 2 t0
    assert sections.count("samplers") == 2 and sections.count("unconditional") == 2
    by_label = {(r["section"], r["label"]): r for r in rows}
    assert float(by_label[("tradeoff", "strokes (t0=0)")]["l2_to_guide"]) == 0.0
    ref = by_label[("samplers", "reference/10")]
    assert (int(ref["n"]), int(ref["model_evaluations"]), int(ref["steps"])) == (3, 5, 5)
    fast = by_label[("samplers", "dpmpp/4")]
    assert (int(fast["n"]), int(fast["n_paired"]), int(fast["model_evaluations"])) == (6, 3, 2)
    # a random UNet's outputs are noise: far from the strokes, and far less realistic than real images
    t1 = by_label[("tradeoff", "t0=1 dpmpp/20")]
    assert float(t1["l2_to_guide"]) > 10
    assert float(t1["kid"]) > float(by_label[("sanity", "real (floor)")]["kid"]) + 0.05
    assert result.info["model_evaluations"] == plan_evaluations(s, ("dpmpp", 20), 6, 3)
    md = (out / "results.md").read_text()
    for heading in ("## The trade-off over t0", "## Samplers at t0 = 0.5", "## Unconditional samples"):
        assert heading in md
    assert "| 0 (strokes) |" in md and "(tradeoff.png)" in md
    docs = publish_docs(result, out, tmp_path / "docs" / "quality.md")
    assert "(img/quality-tradeoff.png)" in docs.read_text()
    docs.write_text(docs.read_text() + f"{KEEP_MARKER}\n\n## Written by hand\n")  # kept when the page is rewritten
    assert publish_docs(result, out, docs).read_text().endswith(f"```\n\n{KEEP_MARKER}\n\n## Written by hand\n")
    assert all((tmp_path / "docs" / "img" / f"quality-{n}").is_file() for n in IMAGES)
    assert any("model evaluations planned" in line for line in logs)


def test_x0_limit_option_sets_the_pipeline_for_the_run_and_is_recorded(vp_pipe, tmp_path):
    parser = build_parser()
    assert settings_from_args(parser.parse_args(["eval"])).x0_limit is None  # the pipeline's default
    assert settings_from_args(parser.parse_args(["eval", "--x0-limit", "config"])).x0_limit == "config"
    with pytest.raises(SystemExit):
        parser.parse_args(["eval", "--x0-limit", "sometimes"])
    s = EvalSettings(num_guides=2, strengths=(1.0,), samplers=("dpmpp:2",), reference_guides=2, kid_subsets=2)
    seen, results, default = [], {}, vp_pipe.x0_limit
    for mode in ("config", "off"):  # the tiny model's DDPMScheduler clips x0 to [-1, 1] by default
        log = lambda _msg: seen.append(vp_pipe.x0_limit)  # noqa: E731
        results[mode] = run_evaluation(vp_pipe, replace(s, x0_limit=mode), image_set=_held_out_fixture(), log=log)
        assert vp_pipe.x0_limit == default  # restored: the pipeline's own setting after the run
    assert seen[0] == X0Limit(clip=1.0) and seen[-1] is None
    on, off = results["config"], results["off"]
    assert on.info["x0_limit"] == "config: clip x0 to [-1, 1]" and off.info["x0_limit"] == "off"
    assert on.info["settings"]["x0_limit"] == "config"
    # at t0 = 1 a random UNet's x0 leaves the range: clipping changes the images
    label = "t0=1 dpmpp/20"
    assert on.row("tradeoff", label)["l2_to_guide"] != off.row("tradeoff", label)["l2_to_guide"]
    paths = write_outputs(on, tmp_path / "on")
    md = paths[2].read_text()
    assert "x0 limit in the fast samplers (`--x0-limit`): config: clip x0 to [-1, 1]" in md
    assert "--x0-limit config" in md
