"""Metric sanity: KID is ~0 for equal distributions and grows with distortion; L2 is the paper's; the shipped
feature network loads offline and is deterministic; the stroke simulator keeps shape and colour budget."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from sdedit.lab.features import DEFAULT_DIR, load_feature_net, load_selfcheck
from sdedit.lab.metrics import (
    add_noise,
    blur,
    default_subset_size,
    kid,
    l2_distance,
    l2_distances,
    mmd2_unbiased,
    polynomial_kernel,
    stroke_versions,
)
from sdedit.strokes import count_colors, simulate_strokes


# ----- KID on synthetic features -------------------------------------------------------------------------
def _naive_mmd2(x, y):
    d = x.shape[1]
    k = lambda a, b: (a @ b / d + 1.0) ** 3  # noqa: E731
    n, m = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return xx + yy - 2 * xy


def test_mmd2_matches_the_definition(rng):
    x, y = rng.normal(size=(7, 5)), rng.normal(0.3, 1.2, size=(9, 5))
    assert mmd2_unbiased(x, y) == pytest.approx(_naive_mmd2(x, y), rel=1e-10)
    assert mmd2_unbiased(x, y) == pytest.approx(mmd2_unbiased(y, x), rel=1e-10)
    assert polynomial_kernel(x, y).shape == (7, 9)


def test_kid_of_a_set_against_itself_and_a_shuffle_is_about_zero(rng):
    x = rng.normal(size=(400, 32))
    shifted = x + 0.5
    far = kid(x, shifted).mean
    assert far > 0.1
    # against itself: subsets of one set share samples, which biases it slightly negative; still ~0
    assert abs(kid(x, x).mean) < 0.05 * far
    # two independent draws of one distribution, and a shuffled copy: ~0, within noise
    y = rng.normal(size=(400, 32))
    same = kid(x, y)
    assert abs(same.mean) < 0.01 * far
    assert abs(same.mean) < 3 * same.std
    assert abs(kid(x, rng.permutation(x)).mean) < 0.05 * far
    # pooled and reshuffled into two halves: exchangeable samples, ~0 again
    pooled = rng.permutation(np.concatenate([x, y]))
    halves = kid(pooled[:400], pooled[400:])
    assert abs(halves.mean) < 0.01 * far and abs(halves.mean) < 3 * halves.std


def test_kid_grows_with_the_distortion(rng):
    x, y = rng.normal(size=(300, 16)), rng.normal(size=(300, 16))
    values = [kid(x, y + shift).mean for shift in (0.0, 0.2, 0.4, 0.8)]
    assert values == sorted(values)
    assert values[1] > 5 * abs(values[0])
    # a change of spread, not of mean, is also seen (a cubic kernel compares moments up to the third)
    assert kid(x, y * 1.5).mean > 5 * abs(values[0])


def test_kid_is_reproducible_and_checks_its_inputs(rng):
    x, y = rng.normal(size=(50, 8)), rng.normal(size=(60, 8))
    a, b = kid(x, y, seed=3), kid(x, y, seed=3)
    assert a == b
    assert a.subset_size == default_subset_size(50, 60) == 25
    assert (a.n_x, a.n_y, a.subsets) == (50, 60, 100)
    with pytest.raises(ValueError):
        kid(x, y, subset_size=51)
    with pytest.raises(ValueError):
        kid(x, rng.normal(size=(60, 9)))
    with pytest.raises(ValueError):
        mmd2_unbiased(x[:1], y)


# ----- L2 ---------------------------------------------------------------------------------------------
def test_l2_is_the_papers_distance():
    white = np.full((2, 64, 64, 3), 255, np.uint8)
    black = np.zeros_like(white)
    assert l2_distances(white, white).tolist() == [0.0, 0.0]
    # every pixel off by 1 (in [0, 1]) over 64 x 64 x 3 values
    assert l2_distances(white, black) == pytest.approx([np.sqrt(64 * 64 * 3)] * 2)
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8), rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    assert l2_distances(a, b).tolist() == [l2_distance(p, q) for p, q in zip(a, b, strict=True)]
    with pytest.raises(ValueError):
        l2_distances(a, b[:, :4])


# ----- the shipped feature network ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def extractor():
    return load_feature_net()


@pytest.fixture(scope="module")
def selfcheck():
    return load_selfcheck()


def test_feature_net_ships_small_and_matches_its_config(extractor):
    cfg = json.loads((DEFAULT_DIR / "config.json").read_text())
    assert (DEFAULT_DIR / "model.safetensors").stat().st_size < 2_000_000
    assert (DEFAULT_DIR / "README.md").is_file()
    assert extractor.config.classes == cfg["classes"] and len(cfg["classes"]) >= 9
    assert extractor.feature_dim == cfg["widths"][-1] == 256
    params = sum(p.numel() for p in extractor.net.parameters())
    assert 100_000 < params < 1_000_000
    assert not extractor.net.training


def test_features_are_deterministic_with_the_documented_shape(extractor, selfcheck):
    images, _ = selfcheck
    a = extractor.features(images[:10])
    assert a.shape == (10, 256) and a.dtype == np.float64
    assert np.array_equal(a, extractor.features(images[:10]))
    # batching does not change an image's features, and PIL input is accepted
    alone = extractor.features([Image.fromarray(images[3])])
    np.testing.assert_allclose(alone[0], a[3], rtol=1e-4, atol=1e-5)
    assert np.isfinite(a).all() and (a >= 0).all()  # post-ReLU means
    # other resolutions are resized to the network's 64 px
    assert extractor.features(np.zeros((2, 32, 32, 3), np.uint8)).shape == (2, 256)


def test_feature_net_is_trained(extractor, selfcheck):
    """Its group predictions on held-out emoji beat always guessing the largest group by far."""
    images, categories = selfcheck
    pred = [extractor.config.classes[i] for i in extractor.predict(images)]
    accuracy = np.mean([p == c for p, c in zip(pred, categories, strict=True)])
    majority = max(categories.count(c) for c in set(categories)) / len(categories)
    assert accuracy > majority + 0.15


def test_kid_separates_real_from_distorted_held_out_images(extractor, selfcheck):
    """Real-vs-real is ~0; blurred, noised and stroke versions of the same images score far worse."""
    images, _ = selfcheck
    x, y = images[0::2], images[1::2]  # two disjoint halves of real held-out emoji
    fy = extractor.features(y)
    score = lambda imgs: kid(extractor.features(imgs), fy)  # noqa: E731
    floor = score(x)
    assert abs(floor.mean) < 0.1
    margin = max(0.1, floor.std)
    for distorted in (blur(x, 1.5), add_noise(x, 0.1), stroke_versions(x, 6)):
        assert score(distorted).mean > floor.mean + margin
    assert score(add_noise(x, 0.1)).mean > score(add_noise(x, 0.02)).mean > floor.mean


# ----- the stroke simulator -------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(
    w=st.integers(8, 40),
    h=st.integers(8, 40),
    k=st.integers(2, 12),
    block=st.sampled_from([1, 2, 4]),
    seed=st.integers(0, 2**16),
)
def test_strokes_keep_the_shape_and_at_most_k_colours(w, h, k, block, seed):
    img = Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))
    out = simulate_strokes(img, colors=k, block=block)
    assert out.size == (w, h) and out.mode == "RGB"
    assert count_colors(out) <= k
    assert np.array_equal(np.asarray(out), np.asarray(simulate_strokes(img, colors=k, block=block)))


def test_stroke_versions_of_real_images(selfcheck):
    images, _ = selfcheck
    strokes = stroke_versions(images[:4], colors=5)
    assert strokes.shape == images[:4].shape and strokes.dtype == np.uint8
    assert all(count_colors(Image.fromarray(s)) <= 5 for s in strokes)
    assert all(
        count_colors(Image.fromarray(s)) < count_colors(Image.fromarray(r))
        for s, r in zip(strokes, images[:4], strict=True)
    )
