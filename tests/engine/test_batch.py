"""Folder batch editing: resume, batching, manifest, and data parallel under torchrun (2 CPU processes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sdedit.batch import BatchSettings, list_guides, make_batches, plan, run_batch, seed_for, shard
from sdedit.errors import InputError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def guides(tmp_path) -> tuple[Path, Path]:
    """Five guides of different sizes and modes, and a mask for one of them."""
    g, m = tmp_path / "guides", tmp_path / "masks"
    g.mkdir()
    m.mkdir()
    rng = np.random.default_rng(0)
    sizes = [(16, 16), (20, 12), (24, 24), (10, 30), (16, 16)]
    for i, (w, h) in enumerate(sizes):
        a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(a).save(g / f"guide{i}.png")
    Image.fromarray(rng.integers(0, 256, (16, 16, 4), dtype=np.uint8), "RGBA").save(g / "zeta.png")
    mask = np.zeros((16, 16), np.uint8)
    mask[4:12, 4:12] = 255
    Image.fromarray(mask).save(m / "guide0.png")
    (g / "notes.txt").write_text("not an image")
    return g, m


def _tiny_pipe(tiny_model_dir: Path):
    from sdedit import SDEditPipeline

    return SDEditPipeline.from_pretrained(str(tiny_model_dir), device="cpu")


SETTINGS = BatchSettings(strength=0.5, steps=6)


def test_seeds_come_from_names_and_shards_cover_everything(guides, tmp_path):
    assert seed_for("a.png") == seed_for("a.png") != seed_for("b.png")
    assert seed_for("a.png", 1) != seed_for("a.png", 0)
    jobs = plan(guides[0], tmp_path / "out", guides[1], SETTINGS)
    assert [j.name for j in jobs] == [f"guide{i}.png" for i in range(5)] + ["zeta.png"]
    assert jobs[0].mask is not None and jobs[1].mask is None
    batches = make_batches(jobs, 4)
    assert [len(b) for b in batches] == [4, 2]
    for world in (1, 2, 3, 7):
        parts = [shard(batches, r, world) for r in range(world)]
        flat = [j.name for p in parts for b in p for j in b]
        assert sorted(flat) == sorted(j.name for j in jobs) and len(flat) == len(set(flat))


def test_sidecar_settings_split_batches(guides, tmp_path):
    (guides[0] / "guide2.json").write_text(json.dumps({"strength": 0.3, "num": 2}))
    jobs = plan(guides[0], tmp_path / "out", None, SETTINGS)
    special = next(j for j in jobs if j.name == "guide2.png")
    assert special.settings.strength == 0.3 and [p.name for p in special.outputs] == ["guide2-s0.png", "guide2-s1.png"]
    batches = make_batches(jobs, 8)
    assert sorted(len(b) for b in batches) == [1, 5]  # matching settings share a forward, the other doesn't
    (guides[0] / "guide3.json").write_text(json.dumps({"colour": "red"}))
    with pytest.raises(InputError):
        plan(guides[0], tmp_path / "out", None, SETTINGS)


def test_bad_folders_are_clear_errors(tmp_path):
    with pytest.raises(InputError):
        list_guides(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError):
        list_guides(tmp_path / "empty")
    dup = tmp_path / "dup"
    dup.mkdir()
    Image.new("RGB", (8, 8)).save(dup / "a.png")
    Image.new("RGB", (8, 8)).save(dup / "a.jpg")
    with pytest.raises(InputError, match="share the name"):
        list_guides(dup)


def test_batch_edits_resumes_and_writes_a_manifest(guides, tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    pipe = _tiny_pipe(tiny_model_dir)
    report = run_batch(guides[0], out, guides[1], settings=SETTINGS, batch_size=4, pipe=pipe, progress=False)
    assert sorted(report.edited) == [f"guide{i}.png" for i in range(5)] + ["zeta.png"] and not report.failed
    manifest = json.loads((out / "manifest.json").read_text())
    assert [g["guide"] for g in manifest["guides"]] == sorted(report.edited)
    first = manifest["guides"][0]
    assert first["mask"] == "guide0.png" and first["seeds"] == [seed_for("guide0.png")] and first["steps"] == 3
    # outputs keep the guide's size; outside the mask the guide is untouched
    img = np.asarray(Image.open(out / "guide0.png"))
    src = np.asarray(Image.open(guides[0] / "guide0.png"))
    assert img.shape == src.shape and np.array_equal(img[:4], src[:4])
    assert Image.open(out / "guide3.png").size == (10, 30)
    before = {p.name: p.read_bytes() for p in out.glob("*.png")}
    # resume: nothing to do
    again = run_batch(guides[0], out, guides[1], settings=SETTINGS, batch_size=4, pipe=pipe, progress=False)
    assert not again.edited and len(again.skipped) == 6
    # a lost output is redone, identically (seeds come from the name; the batch is the same)
    (out / "guide2.png").unlink()
    redo = run_batch(guides[0], out, guides[1], settings=SETTINGS, batch_size=4, pipe=pipe, progress=False)
    assert redo.edited == ["guide2.png"]
    assert {p.name: p.read_bytes() for p in out.glob("*.png")}.keys() == before.keys()
    redone = np.asarray(Image.open(out / "guide2.png")).astype(int)
    assert np.abs(redone - np.asarray(Image.open(__import__("io").BytesIO(before["guide2.png"])))).max() <= 1
    assert not list(out.glob(".*.tmp-*"))


def test_batch_size_does_not_change_results(guides, tiny_model_dir, tmp_path):
    pipe = _tiny_pipe(tiny_model_dir)
    run_batch(guides[0], tmp_path / "a", None, settings=SETTINGS, batch_size=6, pipe=pipe, progress=False)
    run_batch(guides[0], tmp_path / "b", None, settings=SETTINGS, batch_size=1, pipe=pipe, progress=False)
    for p in (tmp_path / "a").glob("*.png"):
        a = np.asarray(Image.open(p)).astype(int)
        b = np.asarray(Image.open(tmp_path / "b" / p.name)).astype(int)
        assert np.abs(a - b).max() <= 1  # per-sample generators; float batching noise only


@pytest.mark.slow  # torchrun starts two processes
def test_cli_batch_and_torchrun_two_processes_equal_one(guides, tiny_model_dir, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    args = ["--guides", str(guides[0]), "--masks", str(guides[1]), "--model", str(tiny_model_dir), "--strength", "0.5",
            "--steps", "6", "--batch-size", "2", "--no-progress"]  # fmt: skip
    one = subprocess.run(
        [sys.executable, "-m", "sdedit", "batch", *args, "--out", str(tmp_path / "one")],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert one.returncode == 0, one.stderr
    assert "6 edited" in one.stdout
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "sdedit", "batch", *args, "--out", str(tmp_path / "two")],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert two.returncode == 0, two.stdout + two.stderr
    assert "rank 0/2" in two.stdout and "rank 1/2" in two.stdout
    names = sorted(p.name for p in (tmp_path / "one").glob("*.png"))
    assert names == sorted(p.name for p in (tmp_path / "two").glob("*.png")) and len(names) == 6
    for name in names:  # same batches in both runs, so the same bytes
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    manifest = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert manifest["world_size"] == 2 and len(manifest["guides"]) == 6
