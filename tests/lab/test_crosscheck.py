"""The realism cross-check (sdedit.lab.crosscheck): its stroke simulator, its independent feature network, the
paired statistics on data where the answer is known, and a small end-to-end run (tiny random UNet, real held-out
emoji from the feature network's self-check sheet)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from sdedit.errors import InputError
from sdedit.lab.crosscheck import (
    CrosscheckSettings,
    ProjectLayers,
    RandomFeatureNet,
    SweepImages,
    kid_draws,
    main,
    make_strokes,
    paired_consistency,
    spearman,
    summarise,
    superpixel_strokes,
    sweep_images,
)
from sdedit.lab.data import ImageSet
from sdedit.lab.features import load_feature_net, load_selfcheck
from sdedit.lab.metrics import kid


@pytest.fixture(scope="module")
def emoji() -> np.ndarray:
    return load_selfcheck()[0][:24]


def test_superpixel_strokes_are_flat_paintings_unlike_the_papers(emoji):
    ours = make_strokes(emoji[:8], "superpixel", colors=6)
    paper = make_strokes(emoji[:8], "paper", colors=6)
    assert ours.shape == emoji[:8].shape and ours.dtype == np.uint8
    for im, src in zip(ours, emoji[:8], strict=True):
        assert 2 <= len(np.unique(im.reshape(-1, 3), axis=0)) <= 6
        assert np.abs(im.astype(int) - src).mean() > 3  # it removes detail ...
        assert np.abs(im.astype(int) - src).mean() < 60  # ... but keeps the picture
    assert np.abs(ours.astype(int) - paper).mean() > 3  # a different painting from the paper's simulator
    assert np.array_equal(superpixel_strokes(emoji[0]), superpixel_strokes(emoji[0]))  # deterministic
    assert len(np.unique(superpixel_strokes(emoji[0], colors=3).reshape(-1, 3), axis=0)) <= 3


def test_superpixel_strokes_refuse_bad_settings(emoji):
    with pytest.raises(InputError, match="colors must be from 2 to 64"):
        superpixel_strokes(emoji[0], colors=1)
    with pytest.raises(InputError, match="segments"):
        superpixel_strokes(emoji[0], segments=1)
    with pytest.raises(InputError, match="uint8"):
        superpixel_strokes(emoji[0].astype(np.float32))
    with pytest.raises(InputError, match="stroke simulator"):
        make_strokes(emoji[:1], "crayon")


def test_random_feature_net_is_deterministic_and_sees_degradation(emoji):
    a = RandomFeatureNet(seed=0).features(emoji)
    b = RandomFeatureNet(seed=0).features(emoji)
    assert a.shape == (len(emoji), 480) and a.dtype == np.float64
    assert np.array_equal(a, b)
    assert not np.allclose(a, RandomFeatureNet(seed=1).features(emoji))
    assert np.array_equal(a[:5], RandomFeatureNet(seed=0).features(emoji[:5]))  # independent of the batch
    # not colour statistics alone: shuffling each image's pixels (same colours, no structure) moves its features
    # by a good part of the distance between two different emoji (about half, measured)
    rng = np.random.default_rng(0)
    shuffled = np.stack([im.reshape(-1, 3)[rng.permutation(64 * 64)].reshape(64, 64, 3) for im in emoji])
    moved = np.linalg.norm(RandomFeatureNet(seed=0).features(shuffled) - a, axis=1).mean()
    between = np.mean([np.linalg.norm(a[i] - a[j]) for i in range(len(a)) for j in range(i)])
    assert moved > 0.3 * between


def test_project_layers_include_the_penultimate_layer(emoji):
    multi = ProjectLayers(taps=(0, 3, 6, 8)).features(emoji[:4])
    assert multi.shape == (4, 32 + 64 + 128 + 256)
    assert np.allclose(multi[:, -256:], load_feature_net().features(emoji[:4]), atol=1e-5)


def test_kid_draws_are_the_draws_behind_metrics_kid():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 8)), rng.normal(0.3, 1.0, size=(50, 8))
    draws = kid_draws(x, y, subsets=30, seed=3)
    ref = kid(x, y, subsets=30, seed=3)
    assert draws.shape == (30,)
    assert draws.mean() == pytest.approx(ref.mean, rel=1e-9) and draws.std() == pytest.approx(ref.std, rel=1e-9)


def test_paired_consistency_on_known_answers():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(120, 6))
    same = rng.normal(size=(80, 6))
    shifted = same + 0.6  # the same points moved away from the reference: worse in every draw
    d_same, d_shift = kid_draws(same, ref, 100, seed=0), kid_draws(shifted, ref, 100, seed=0)
    assert paired_consistency(d_same, d_shift) == 1.0
    assert paired_consistency(d_shift, d_same) == 0.0
    other = rng.normal(size=(80, 6))  # another sample of the reference's distribution: a coin flip
    assert 0.25 < paired_consistency(d_same, kid_draws(other, ref, 100, seed=0)) < 0.75
    assert paired_consistency(np.array([1.0, 2.0]), np.array([1.0, 3.0])) == 0.75  # a tie counts half
    with pytest.raises(ValueError, match="paired draws"):
        paired_consistency(np.zeros(3), np.zeros(4))


def test_spearman_and_summary_find_the_best_setting():
    assert spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    rng = np.random.default_rng(2)
    ref = rng.normal(size=(100, 4))
    base = rng.normal(size=(60, 4))
    draws = {k: kid_draws(base + shift, ref, 50) for k, shift in
             (("real (floor)", 0.0), ("strokes (t0 = 0)", 1.0), ("t0 = 0.3", 0.5), ("t0 = 0.5", 0.1),
              ("t0 = 0.8", 0.7))}  # fmt: skip
    scores = {"l2_to_guide": dict.fromkeys(draws, 1.0), "draws": {"a": draws, "b": draws}, "strengths": [0.3, 0.5, 0.8]}
    s = summarise(scores)
    assert s["networks"]["a"]["best"] == "t0 = 0.5"
    assert s["networks"]["a"]["best_beats"]["t0 = 0.8"] == 1.0
    assert s["rank_correlation"]["a vs b"] == pytest.approx(1.0)


def test_sweep_and_command_end_to_end(vp_pipe, tmp_path, emoji):
    images, categories = load_selfcheck()
    names = load_feature_net().config.info["selfcheck"]["names"]
    held = ImageSet(images, list(names), categories, np.ones(len(names), bool), "selfcheck")
    s = CrosscheckSettings(num_guides=6, strengths=(0.3, 0.6), kid_subsets=10, batch_size=6)
    logs = []
    sweep = sweep_images(vp_pipe, s, image_set=held, log=logs.append)
    assert vp_pipe.x0_limit is not None  # restored: the tiny model's scheduler clips, and the pipeline follows it
    assert sweep.real.shape == sweep.strokes.shape == sweep.outputs[0.3].shape == (6, 64, 64, 3)
    assert list(sweep.outputs) == [0.3, 0.6] and len(sweep.reference) > 6
    assert not np.array_equal(sweep.outputs[0.3], sweep.outputs[0.6])
    sweep.save(tmp_path / "sweep.npz")
    again = SweepImages.load(tmp_path / "sweep.npz")
    assert np.array_equal(again.outputs[0.6], sweep.outputs[0.6]) and again.names == sweep.names
    out = tmp_path / "report"
    assert main(["--images", str(tmp_path / "sweep.npz"), "--out", str(out), "--kid-subsets", "10"]) == 0
    summary = json.loads((out / "crosscheck.json").read_text())
    assert set(summary["networks"]) == {"random CNN", "project", "project, jitter"}
    for net in summary["networks"].values():
        assert net["best"] in ("t0 = 0.3", "t0 = 0.6") and 0.0 <= net["best_beats"]["strokes (t0 = 0)"] <= 1.0
    with Image.open(out / "grid.png") as im:
        assert im.size == (4 * 80, 16 + 6 * 80)  # real, strokes, two t0; one row per guide
    assert "| t0 = 0.3 |" in (out / "crosscheck.md").read_text()
    assert main(["--images", str(tmp_path / "missing.npz"), "--out", str(out)]) == 2
    for bad in (["--strengths", "0.5,1.5"], ["--num-guides", "3"]):  # refused before any model or data is loaded
        assert main([*bad, "--out", str(out)]) == 2


def test_contrastive_net_features_and_views(tmp_path, emoji):
    import torch
    from safetensors.torch import save_file

    from sdedit.lab.crosscheck import ContrastiveNet, _views
    from sdedit.lab.features import to_input

    net = ContrastiveNet(seed=3)
    feats = net.features(emoji[:6])
    assert feats.shape == (6, 128) and np.array_equal(feats, net.features(emoji[:6]))
    save_file({k: v.contiguous() for k, v in net.body.state_dict().items()}, tmp_path / "contrastive.safetensors")
    assert np.allclose(ContrastiveNet(tmp_path).features(emoji[:6]), feats)  # a trained folder loads back
    x = to_input(emoji[:8], 64)
    for mode in ("shift", "crop"):
        views = _views(x, torch.Generator().manual_seed(0), mode)
        assert views.shape == x.shape and views.min() >= -1 and views.max() <= 1
        assert not torch.allclose(views, x)
    shifted = _views(x, torch.Generator().manual_seed(0), "shift")
    grey = shifted.std(1).amax((1, 2)) < 1e-6  # grey views aside, shifts only move whole pixels: no new colours
    src = {tuple(c) for c in (x.permute(0, 2, 3, 1).reshape(-1, 3) * 1000).round().int().tolist()} | {(1000,) * 3}
    got = {tuple(c) for c in (shifted[~grey].permute(0, 2, 3, 1).reshape(-1, 3) * 1000).round().int().tolist()}
    assert got <= src
    calibrated = net.calibrate(emoji)
    f = net.features(emoji)
    assert np.allclose(calibrated, f)  # calibrate returns the reference's features, as features() now gives them
    assert np.allclose(f.mean(0), 0, atol=1e-9) and np.sqrt((f**2).mean()) == pytest.approx(1 / 3, rel=1e-6)


def test_feature_recipe_without_colour_jitter_and_the_jittered_network_it_replaced(emoji):
    import torch

    from sdedit.lab.features import DEFAULT_DIR, augment, to_input
    from sdedit.lab.metrics import add_noise, blur

    x = to_input(emoji[:6], 64)
    plain = augment(x, torch.Generator().manual_seed(0), jitter=0.0)
    jittered = augment(x, torch.Generator().manual_seed(0), jitter=1.0)

    def colours(t):  # rounded: the no-op colour arithmetic may move a value by one float ulp
        return set(map(tuple, (t.permute(0, 2, 3, 1).reshape(-1, 3) * 1000).round().int().tolist()))

    assert colours(plain) <= colours(x) | {(1000, 1000, 1000)}  # flips and shifts only: no new colours
    assert not torch.allclose(plain, jittered)
    assert load_feature_net().config.info["settings"]["jitter"] == 0  # the shipped realism net
    old = load_feature_net(DEFAULT_DIR.parent / "emoji-features-jitter")  # kept for the comparison in the docs
    assert old.config.info["settings"]["jitter"] == 1 and old.feature_dim == 256
    assert old.config.info["accuracy_held_out"]["balanced_accuracy"] > 0.6
    images = load_selfcheck(old.path)[
        0
    ]  # all 96: two halves of 48, as tests/lab/test_metrics.py checks the shipped net
    a, b = images[0::2], images[1::2]
    fb = old.features(b)
    floor = kid(old.features(a), fb).mean
    for distorted in (blur(a, 1.5), add_noise(a, 0.1), make_strokes(a, "paper")):
        assert kid(old.features(distorted), fb).mean > floor + 0.1
