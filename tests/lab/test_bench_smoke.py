"""CI smoke of the benchmarks: the harness and the GPU script's dry run work and agree with the plain path.

It asserts correctness (the fast path equals the reference path, ratios are computed, files are written),
never time: CI machines are shared and their timings mean nothing.
"""

from __future__ import annotations

import json
import math

import pytest

from benchmarks import gpu_check, harness
from benchmarks import run as bench
from sdedit.lab import records


def test_harness_measures_side_by_side_and_writes_results(tmp_path, monkeypatch):
    docs = tmp_path / "performance.md"
    docs.write_text("# Performance\n\nhand-written text stays.\n")
    monkeypatch.setattr(bench, "write_section", lambda key, body: records.write_section(docs, key, body))
    argv = ["--model", "tiny", "--batches", "1", "--repeats", "1", "--warmup", "0", "--ref-steps", "3", "--no-arch"]
    assert bench.main([*argv, "--results-dir", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "bench-cpu.json").read_text())
    rows = {r["sampler"]: r for r in result["batches"][0]["rows"]}
    assert set(rows) == {"bare UNet", "reference", "dpmpp", "ddim", "euler_a", "dpmpp (accel)"}
    assert rows["reference"]["evals"] == 500 and rows["reference"]["scaled"]  # official loop: t0 = 0.5, N = 1000
    assert rows["dpmpp"]["evals"] == rows["bare UNet"]["evals"] == 10
    for name, row in rows.items():
        if name != "bare UNet":
            assert row["speedup_vs_ref"] > 0 and math.isfinite(row["speedup_vs_ref"])
        if row.get("loop_ms") is not None and name != "bare UNet":
            assert math.isfinite(row["overhead_pct"])
    assert rows["reference"]["speedup_vs_ref"] == pytest.approx(1.0)
    assert result["batches"][0]["accel_max_pixel_diff"] <= 1  # fast path == plain path (fp32 on the CPU)
    text = docs.read_text()
    assert "hand-written text stays." in text and text.count("<!-- bench-cpu:begin -->") == 1
    assert "| 1 | reference |" in text
    assert records.read_section(text, "bench-cpu") == bench.render(result).strip()  # what the record renders
    records.write_section(docs, "bench-cpu", "replaced")  # a second run rewrites only its own section
    assert docs.read_text().count("bench-cpu:begin") == 1 and "replaced" in docs.read_text()


def test_replace_section_appends_then_replaces():
    text = records.replace_between("# P\n", *records.markers("x"), "one")
    assert text.endswith("<!-- x:begin -->\none\n<!-- x:end -->\n")
    again = records.replace_between(text + "\ntail\n", *records.markers("x"), "two")
    assert "one" not in again and "two" in again and again.rstrip().endswith("tail")


def test_an_unregistered_key_goes_to_the_page_given_and_a_registered_one_to_its_own(tmp_path, monkeypatch):
    page = tmp_path / "p.md"
    assert harness.write_section("bench-cuda", "gpu rows", page) == page and "gpu rows" in page.read_text()
    written = []
    monkeypatch.setattr(records, "write_section", lambda path, key, body: written.append((path, key)) or path)
    harness.write_section("live-load", "x", page)
    assert written == [(harness.REPO / "docs" / "reliability.md", "live-load")]


@pytest.mark.slow  # every variant of the GPU script on tiny models
def test_gpu_check_dry_run_records_every_variant(tmp_path):
    out = tmp_path / "gpu"
    assert gpu_check.main(["--dry-run", "--out", str(out), "--batches", "1"]) == 0
    data = json.loads((out / "gpu_check.json").read_text())
    assert (out / "gpu_check.md").read_text().startswith("Recorded by")
    results = data["results"]
    assert {r["group"] for r in results} == {"unet-ddpm", "edit-ddpm", "ncsnpp"}
    errors = [r for r in results if r["status"] == "error"]
    assert not errors, errors
    skipped = [r for r in results if r["status"] == "skipped"]
    assert skipped and all(r["reason"] == "needs CUDA" for r in skipped)  # graphs and compile: GPU only
    by_name = {r["name"]: r for r in results}
    assert by_name["b1 fp32 channels_last"]["rel_l2"] < 1e-5
    assert by_name["b1 bf16 channels_last"]["rel_l2"] < 0.05 and by_name["b1 bf16 channels_last"]["finite"]
    same = next(r for r in results if r["name"].endswith("same noise"))
    assert same["edits"]["reference"]["max_abs"] <= 1 and same["edits"]["dpmpp"]["max_abs"] <= 1
    fir = next(r for r in results if r.get("fir_ops"))
    assert all(row["max_abs_diff"] < 1e-4 for row in fir["fir_ops"] if row["dtype"] == "float32")


def test_gpu_check_variant_errors_and_deadline_are_recorded(tmp_path):
    import torch

    check = gpu_check.Check(tmp_path, torch.device("cpu"), deadline_s=1000, dry=True)

    def broken():
        raise RuntimeError("boom")

    assert check.run("g", "broken", broken)["status"] == "error"
    assert check.run("g", "fine", lambda: {"ms": 1.0})["status"] == "ok"
    check.deadline_s = 0
    assert check.run("g", "late", lambda: {})["reason"].startswith("global deadline")
    saved = json.loads((tmp_path / "gpu_check.json").read_text())
    assert [r["status"] for r in saved["results"]] == ["error", "ok", "skipped"]
    assert "boom" in saved["results"][0]["error"]


def test_the_preview_rule_wants_more_real_than_the_strokes_then_the_budget_then_closest_to_generate():
    from benchmarks.live_latency import BUDGET_MS, choose, strict_note

    def row(label, evals, kid, ms, l2g, sampler="dpmpp"):
        return {"label": label, "sampler": sampler, "evaluations": evals, "resolution": 64, "kid": kid,
                "kid_std": 0.05, "median_ms": ms, "l2_generate": l2g}  # fmt: skip

    strokes = {"label": "strokes (t0 = 0)", "resolution": None, "kid": 0.375, "kid_std": 0.076}
    one = row("dpmpp, 1 evaluation", 1, 0.51, 0.5 * BUDGET_MS, 6.4)  # cheap but less real than the strokes
    two = row("dpmpp, 2 evaluations", 2, 0.336, 0.8 * BUDGET_MS, 3.5)
    three = row("dpmpp, 3 evaluations", 3, 0.268, 1.2 * BUDGET_MS, 2.1)
    rows = [strokes, one, two, three]
    assert choose(rows) is two  # within the budget and more real than the strokes
    note = strict_note(rows, two)
    assert "not more real than the strokes by more than their KID's std" in note and "dpmpp, 3 evaluations" in note
    slow = [strokes, one, {**two, "median_ms": 1.5 * BUDGET_MS}, three]
    assert choose(slow)["label"] == "dpmpp, 2 evaluations"  # none fits: the cheapest of the more-real ones
    with pytest.raises(ValueError, match="no preview candidate"):
        choose([strokes, one])  # nothing more real than the strokes: no silent fallback


def test_animation_benchmark_draws_each_way_at_its_size(tmp_path):
    """benchmarks/animation.py on three made-up 64 px frames: the old blocks at 390x214, the shipped frames at the
    page's size, every way timed and its GIF written (correctness of the harness, not its times)."""
    import numpy as np

    from benchmarks import animation
    from sdedit.configs import default_config
    from sdedit.studio import progress
    from sdedit.upscale import upscaler_for

    rng = np.random.default_rng(0)
    frames = [("a", "b", *rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)) for _ in range(3)]
    result = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    rows = animation.measure(frames, result, upscaler_for(default_config()), 1, tmp_path)
    assert set(rows) == {"blocks (before)", "Lanczos + upscaled result (shipped)", "upscaler on every guess"}
    assert rows["blocks (before)"]["frame_size"] == [390, 214]
    assert rows["Lanczos + upscaled result (shipped)"]["frame_size"] == list(progress.ANIMATION_SIZE)
    assert all(r["frames"] == 4 and r["ms_per_animation"] > 0 and r["gif_kb"] > 0 for r in rows.values())
    text = animation.render({"rounds": 1, "threads": 1, "load_avg_before": [1.0], "load_avg_after": [1.0],
                             "edits": {"made up": rows}})  # fmt: skip
    assert "| made up | blocks (before) | 4 | 390×214 |" in text


def test_model_load_benchmark_renders_its_ratios():
    from benchmarks import model_load

    way = {"import_s": 2.0, "load_s": 0.5, "load_peak_mb": 100.0, "weights_mb": 26.0, "advice_printed": 0}
    result = {
        "rounds": 1,
        "load_avg_before": [1.0],
        "load_avg_after": [1.0],
        "machine": {"cpu_count": 2},
        "models": {"m": {w: dict(way) for w in model_load.WAYS}},
    }
    result["models"]["m"]["accelerate"].update(load_s=3.0, load_peak_mb=50.0)
    result["models"]["m"]["default, no accelerate"]["advice_printed"] = 1
    text = model_load.render(result)
    assert "| m (26 MB of weights) | default, no accelerate | 2.00 | 0.50 | 100 | 1 |" in text
    assert "takes 2.00x the time" in text and "adds 0.50x the memory" in text


def test_the_app_speed_benchmark_times_the_apps_default_edit():
    from benchmarks import app_speed
    from sdedit.configs import default_config

    d = default_config().defaults
    s = app_speed.SETTINGS
    assert (s["strength"], s["sampler"], s["steps"], s["repeats"]) == (
        d.strength,
        d.sampler,
        d.num_inference_steps,
        d.repeats,
    )
