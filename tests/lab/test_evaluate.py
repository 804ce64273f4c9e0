"""The evaluation: a guide/reference split with no leaks, the CLI's settings, and an end-to-end smoke run
(tiny random UNet, real held-out emoji from the feature network's self-check sheet) writing every output."""

from __future__ import annotations

import csv
import json
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from sdedit.cli import build_parser
from sdedit.lab import records
from sdedit.lab.data import ImageSet, identity_of
from sdedit.lab.eval_cli import publish, settings_from_args
from sdedit.lab.eval_report import (
    IMAGES,
    SAMPLER_IMAGES,
    render_few_step,
    render_markdown,
    render_quality,
    render_readme,
    write_outputs,
)
from sdedit.lab.evaluate import (
    CSV_FIELDS,
    EvalSettings,
    load_record,
    model_split,
    parse_samplers,
    plan_evaluations,
    run_evaluation,
    split_held_out,
)
from sdedit.lab.features import load_feature_net, load_selfcheck
from sdedit.lab.identity import identity_accuracy, load_identity_net
from sdedit.lab.metrics import stroke_versions
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


def test_the_identity_split_keeps_gender_variants_of_a_held_out_emoji_on_one_side():
    names, cats = [], []
    for i in range(20):
        base = f"1f{0x645 + i:03x}"
        for form in ("", "-200d-2640-fe0f", "-200d-2642-fe0f", "-1f3fb-200d-2640-fe0f"):
            names.append(base + form)
            cats.append("People & Body")
    side = {}
    for split, together in (("identity-v2", True), ("emoji-v1", False)):
        a, b = split_held_out(names, cats, seed=0, split=split)
        side = {i: "a" for i in a} | {i: "b" for i in b}
        straddles = [len({side[4 * i + j] for j in range(4)}) > 1 for i in range(20)]
        assert not any(straddles) if together else any(straddles)


def test_model_split_reads_the_training_record(tmp_path):
    from types import SimpleNamespace

    from sdedit.configs import REPO_ROOT

    def pipe(folder):
        return SimpleNamespace(config=SimpleNamespace(source=str(folder), local_path=folder))

    assert model_split(pipe(REPO_ROOT / "models" / "fluent-emoji-64")) == "emoji-v1"  # the shipped model
    (tmp_path / "training.json").write_text('{"config": {"split": "identity-v2"}}')
    assert model_split(pipe(tmp_path)) == "identity-v2"
    (tmp_path / "training.json").write_text('{"config": {}}')  # a record from before the named splits
    assert model_split(pipe(tmp_path)) == "emoji-v1"
    assert model_split(SimpleNamespace(config=SimpleNamespace(source="", local_path=None))) == "emoji-v1"
    # the CLI offers exactly the data module's splits (spelled out there so the parser needs no data import)
    import argparse

    from sdedit.lab.data import SPLITS
    from sdedit.lab.eval_cli import add_eval_args

    eval_parser = argparse.ArgumentParser()
    add_eval_args(eval_parser)
    split_arg = next(a for a in eval_parser._actions if a.dest == "split")
    assert set(split_arg.choices) == set(SPLITS)
    assert settings_from_args(build_parser().parse_args(["eval", "--split", "identity-v2"])).split == "identity-v2"


def test_identity_accuracy_names_real_images_and_drops_for_a_wrong_pairing():
    images, _ = load_selfcheck()
    ids = [identity_of(n) for n in load_feature_net().config.info["selfcheck"]["names"]]
    net = load_identity_net()
    own = identity_accuracy(net, images, ids, images, ids)
    assert own.identities == len(set(ids)) and own.chance == 1 / len(set(ids))
    assert own.accuracy >= 0.95  # an original is identified as itself
    # each image with another image's identity (a shuffled pairing, no one keeps its own): near chance
    perm = np.roll(np.arange(len(ids)), 7)
    shuffled = [ids[i] for i in perm]
    assert sum(a == b for a, b in zip(ids, shuffled, strict=True)) < 5
    assert identity_accuracy(net, images, shuffled, images, ids).accuracy <= 0.1
    # stroke paintings (the evaluation's simulator) are mostly still their own emoji, far above chance
    strokes = identity_accuracy(net, stroke_versions(images, 6, 7), ids, images, ids)
    assert strokes.accuracy > 0.4 > 10 * strokes.chance
    with pytest.raises(ValueError, match="not in the gallery"):
        identity_accuracy(net, images[:2], ["1f600", "zzz"], images, ids)


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


def _held_out_fixture(twins: int = 0) -> ImageSet:
    """The self-check's held-out emoji; with `twins`, that many of them also get a skin-tone variant in training
    (a flipped copy), so those guides have a near-twin."""
    images, categories = load_selfcheck()
    names = list(load_feature_net().config.info["selfcheck"]["names"])
    held = np.ones(len(names), bool)
    if twins:
        images = np.concatenate([images, images[:twins, :, ::-1]])
        categories = [*categories, *categories[:twins]]
        names += [f"{n}-1f3fb" for n in names[:twins]]
        held = np.concatenate([held, np.zeros(twins, bool)])
    return ImageSet(images, names, categories, held, "selfcheck")


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
    result = run_evaluation(vp_pipe, s, image_set=_held_out_fixture(twins=30), log=logs.append)
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
    # the same rows on the twin-free guides and on those with a twin in training
    assert result.info["guides_twinned"] + result.info["guides_twin_free"] == 6
    assert sections.count("tradeoff_twin_free") == sections.count("tradeoff_twinned") == 3
    free = result.section("tradeoff_twin_free")[0]
    assert free["n"] == result.info["guides_twin_free"] and free["l2_to_guide"] == 0.0
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
    # identity: the real guides are themselves, the strokes mostly; a random UNet's noise is not
    assert float(by_label[("sanity", "real (floor)")]["identity_acc"]) == 1.0
    assert float(t1["identity_acc"]) < float(by_label[("tradeoff", "strokes (t0=0)")]["identity_acc"])
    assert result.info["identity_chance"] == 1 / result.info["identity_gallery"]
    assert result.info["model_evaluations"] == plan_evaluations(s, ("dpmpp", 20), 6, 3)
    md = (out / "results.md").read_text()
    assert render_markdown(load_record(out)) + "\n" == md  # a finished run renders again from its results.json
    for heading in ("## The trade-off over t0", "## Samplers at t0 = 0.5", "## Unconditional samples"):
        assert heading in md
    assert "| 0 (strokes) |" in md and "(tradeoff.png)" in md
    assert "| identity accuracy |" in md and "### Guides with and without a near-twin" in md
    assert "| chance (a random identity) |" in md
    assert any("model evaluations planned" in line for line in logs)


def test_publishing_renders_every_section_fed_by_the_record_and_keeps_the_rest(vp_pipe, tmp_path):
    s = EvalSettings(num_guides=4, strengths=(0.5, 1.0), samplers=("reference:4", "dpmpp:2", "dpmpp:4"),
                     reference_guides=2, kid_subsets=4, batch_size=4, sheet_guides=2)  # fmt: skip
    result = run_evaluation(vp_pipe, s, image_set=_held_out_fixture())
    root, out = tmp_path, tmp_path / "eval"
    write_outputs(result, out)
    page = root / "docs" / "quality.md"
    page.parent.mkdir(parents=True)
    page.write_text("# Title\n\n<!-- quality:begin -->\nold\n<!-- quality:end -->\n\n## Written by hand\n")
    written = publish(result, out, root=root)
    assert {p.relative_to(root).as_posix() for p in written} >= {
        "docs/quality.md", "docs/performance.md", "README.md", *(f"docs/img/quality-{n}" for n in IMAGES)
    }  # fmt: skip
    text = page.read_text()
    assert text.startswith("# Title\n\n<!-- quality:begin -->\n*Rendered from") and "old" not in text
    assert text.endswith("<!-- quality:end -->\n\n## Written by hand\n")  # the hand-written rest is kept
    record = json.loads((out / "results.json").read_text())
    assert records.read_section(text, "quality") == render_quality(record).strip()
    assert "(img/quality-tradeoff.png)" in text and "--out eval/ --x0-limit" in text and "--docs" in text
    few = records.read_section((root / "docs" / "performance.md").read_text(), "few-step")
    assert few == render_few_step(record).strip() and "the reference" in few
    assert records.read_section((root / "README.md").read_text(), "readme-quality") == render_readme(record).strip()
    # the clipping table needs its second record: not written until eval/x0-off/results.json exists
    assert records.read_section(text, "x0-clipping") is None
    # a run outside the registered folders has nothing to publish
    assert records.sections_fed_by(tmp_path / "elsewhere" / "results.json", root) == []


def test_few_step_rule_picks_the_fewest_evaluations_within_the_reference_plus_the_floor():
    from sdedit.lab.eval_report import few_step_rule
    from sdedit.lab.evaluate import EvalRecord

    def row(label, evals, paired, kid=0.2):
        name, _, steps = label.partition("/")
        return {"section": "samplers", "label": label, "sampler": name, "num_inference_steps": int(steps),
                "model_evaluations": evals, "kid_paired": paired, "kid": kid, "kid_std": 0.05, "n": 8, "n_paired": 4,
                "l2_to_guide_paired": 12.0, "seconds_per_edit": 0.1, "strength": 0.5}  # fmt: skip

    rows = [
        {"section": "sanity", "label": "real (floor)", "kid": 0.05},
        row("reference/1000", 500, 0.08),
        row("dpmpp/10", 5, 0.20),
        row("dpmpp/20", 10, 0.14),  # 0.08 + 0.05 = 0.13: over by 0.01
        row("dpmpp/30", 15, 0.12),  # within: the pick
        row("ddim/30", 15, 0.125),  # as cheap, but a higher KID
        row("dpmpp/50", 25, 0.10),
    ]
    info = {"default_sampler": "dpmpp/20", "settings": {}}
    rule = few_step_rule(EvalRecord(rows, info))
    assert rule["threshold"] == pytest.approx(0.13) and rule["pick"]["label"] == "dpmpp/30"
    assert rule["default"]["label"] == "dpmpp/20"
    rows[4]["kid_paired"] = 0.2
    assert few_step_rule(EvalRecord(rows, info))["pick"]["label"] == "ddim/30"


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
    # a split other than the model's own is allowed, with a warning (the tiny model records none: emoji-v1)
    notes = []
    run_evaluation(vp_pipe, replace(s, split="identity-v2"), image_set=_held_out_fixture(), log=notes.append)
    assert any("was trained on split emoji-v1" in n for n in notes)
    assert on.info["x0_limit"] == "config: clip x0 to [-1, 1]" and off.info["x0_limit"] == "off"
    assert on.info["settings"]["x0_limit"] == "config"
    # at t0 = 1 a random UNet's x0 leaves the range: clipping changes the images
    label = "t0=1 dpmpp/20"
    assert on.row("tradeoff", label)["l2_to_guide"] != off.row("tradeoff", label)["l2_to_guide"]
    paths = write_outputs(on, tmp_path / "on")
    md = paths[2].read_text()
    assert "x0 limit in the fast samplers (`--x0-limit`): config: clip x0 to [-1, 1]" in md
    assert "--x0-limit config" in md


def test_a_sweep_only_run_says_the_samplers_were_not_measured(vp_pipe, tmp_path):
    args = build_parser().parse_args(["eval", "--sweep-only", "--strengths", "0.5,1.0", "--num-guides", "4"])
    quick = replace(settings_from_args(args), kid_subsets=4)
    assert quick.sweep_only and plan_evaluations(quick, ("dpmpp", 20), 4, 2) == (10 + 20) * 4
    result = run_evaluation(vp_pipe, quick, image_set=_held_out_fixture())
    assert not result.section("samplers") and result.info["model_evaluations"] == 120
    paths = write_outputs(result, tmp_path / "eval")
    assert not any(p.name in SAMPLER_IMAGES for p in paths)
    record = json.loads((tmp_path / "eval" / "results.json").read_text())
    section = render_quality(record)
    assert "## Samplers\n\nNot measured in this run (`--sweep-only`)." in section and "| 0.5 |" in section
    assert "--sweep-only" in section.split("## Reproduce")[1]
    assert render_few_step(record).startswith("Not measured by the run of")
    written = publish(result, tmp_path / "eval", root=tmp_path)
    assert not any(p.name in {f"quality-{n}" for n in SAMPLER_IMAGES} for p in written)


@pytest.mark.parametrize("which", ["features", "identity"])
def test_the_lab_nets_save_in_fp16_and_load_back_frozen(which, tmp_path):
    import torch

    from sdedit.lab import features, identity

    load, save = {
        "features": (features.load_feature_net, features.save_feature_net),
        "identity": (identity.load_identity_net, identity.save_identity_net),
    }[which]
    shipped = load()
    save(shipped.net, shipped.config, tmp_path / which)
    again = load(tmp_path / which)
    for (name, a), b in zip(shipped.net.state_dict().items(), again.net.state_dict().values(), strict=True):
        assert torch.equal(a, b), name  # the shipped weights are fp16 already: saving again loses nothing
    assert not any(p.requires_grad for p in again.net.parameters())
    with pytest.raises(FileNotFoundError, match="train one with"):
        load(tmp_path / "missing")


def test_docs_needs_a_registered_results_folder(tmp_path, capsys):
    from sdedit.lab.eval_cli import main_eval

    args = build_parser().parse_args(["eval", "--quick", "--out", str(tmp_path / "scratch"), "--docs"])
    assert args.docs is True
    assert main_eval(args) == 2  # refused before any model or data is loaded
    assert "use --out eval/" in capsys.readouterr().err
    assert build_parser().parse_args(["eval", "--docs", "docs/quality.md"]).docs == "docs/quality.md"
