"""Strength per region: a per-pixel t0 map (Differential Diffusion on SDEdit's reverse SDE), VP and VE.

The exact identities: a map of ones is plain SDEdit, a {0, 1} map is masked editing with that map as the
mask, a map of zeros returns the guide; all bit for bit, with the same seed."""

from __future__ import annotations

import numpy as np
import pytest

from sdedit import registry
from sdedit.errors import InputError

CASES = [("vp", name) for name in registry.names("vp")] + [("ve", "reference")]


def _guide(h=16, w=16):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 13 % 256, y * 11 % 256, (x * y) % 256], -1).astype(np.uint8)


def _binary(h=16, w=16):
    m = np.zeros((h, w), np.float32)
    m[3:12, 5:14] = 1.0
    return m


def _run(pipe, sampler, **kw):
    args = dict(strength=0.6, sampler=sampler, num_inference_steps=20, seed=[4, 5], num_images=2, progress=False)
    return pipe(output_type="uint8", **{**args, **kw}).images


@pytest.fixture
def pipes(vp_pipe, ve_pipe):
    return {"vp": vp_pipe, "ve": ve_pipe}


@pytest.mark.parametrize(("sde", "sampler"), CASES)
@pytest.mark.parametrize("size", [(16, 16), (12, 20)], ids=["square", "padded"])
def test_a_map_of_ones_is_plain_sdedit(pipes, sde, sampler, size):
    pipe, guide = pipes[sde], _guide(*size)
    plain = _run(pipe, sampler, image=guide)
    ones = _run(pipe, sampler, image=guide, strength_map=np.ones(size, np.float32))
    assert np.array_equal(plain, ones)


@pytest.mark.parametrize(("sde", "sampler"), CASES)
@pytest.mark.parametrize("repeats", [1, 2])
@pytest.mark.parametrize(
    ("size", "fit"),
    [((16, 16), "pad"), ((24, 36), "pad"), ((40, 40), "pad"), ((24, 36), "crop"), ((10, 30), "stretch")],
    ids=["model-size", "larger-padded", "larger-square", "cropped", "stretched"],
)
def test_a_binary_map_is_masked_editing_at_every_size_and_fit(pipes, sde, sampler, repeats, size, fit):
    """One mechanism: the mask is a {0, 1} map, so the two are the same edit bit for bit, whatever the guide's
    size (its resampled edges have fractions at the model's resolution) and fit."""
    h, w = size
    pipe, guide = pipes[sde], _guide(h, w)
    m = np.zeros(size, np.float32)
    m[h // 5 : h * 3 // 4, w // 4 : w * 5 // 6] = 1.0
    masked = _run(pipe, sampler, image=guide, mask_image=m, repeats=repeats, fit=fit)
    mapped = _run(pipe, sampler, image=guide, strength_map=m, repeats=repeats, fit=fit)
    assert np.array_equal(masked, mapped)
    both = _run(pipe, sampler, image=guide, mask_image=m, strength_map=np.ones(size, np.float32), fit=fit)
    assert np.array_equal(both, _run(pipe, sampler, image=guide, mask_image=m, fit=fit))
    for img in masked:  # outside the mask: the guide itself
        assert np.array_equal(img[m == 0], guide[m == 0])


@pytest.mark.slow
@pytest.mark.parametrize("aligned", [True, False], ids=["block-aligned", "unaligned"])
def test_a_binary_map_is_the_masked_edit_on_the_embedded_model_at_256_px(aligned):
    """A 256 px guide on the 64 px model: mask and map used to differ by up to 57/255 on ~4% of the pixels."""
    from sdedit import SDEditPipeline
    from tests.engine.test_golden import _example

    pipe = SDEditPipeline.from_pretrained(None)
    guide = _example("photo-car.png")
    m = np.zeros(guide.shape[:2], np.float32)
    m[64:160, 48:208] = 1.0 if aligned else 0.0
    if not aligned:
        m[61:163, 45:203] = 1.0
    args = dict(strength=0.5, seed=[12, 13], num_images=2, output_type="uint8", progress=False, upscale=False)
    masked = pipe(guide, mask_image=m, **args).images
    mapped = pipe(guide, strength_map=m, **args).images
    assert np.array_equal(masked, mapped)


@pytest.mark.parametrize(("sde", "sampler"), CASES)
def test_a_map_of_zeros_returns_the_guide(pipes, sde, sampler):
    out = _run(pipes[sde], sampler, image=_guide(12, 20), strength_map=np.zeros((12, 20), np.float32), repeats=2)
    assert all(np.array_equal(img, _guide(12, 20)) for img in out)


@pytest.mark.parametrize(("sde", "sampler"), CASES)
def test_each_region_changes_by_its_own_strength(pipes, sde, sampler):
    """Three bands at 0, 0.5 and 1: the first is the guide exactly, the others change; an element of
    strength m is free for the last round(m n) steps, so the half band starts later and stays closer."""
    pipe, guide = pipes[sde], _guide()
    smap = np.zeros((16, 16), np.float32)
    smap[:, 5:10], smap[:, 10:] = 0.5, 1.0
    out = _run(pipe, sampler, image=guide, strength_map=smap, strength=1.0)
    diff = np.abs(out.astype(int) - guide.astype(int)).mean(axis=(0, 3))
    assert diff[:, :5].max() == 0
    assert diff[:, 5:10].mean() > 0 and diff[:, 10:].mean() > 0


def test_the_free_steps_follow_the_map():
    """The per-step mask: an element of strength m joins for the last round(m n) of n steps."""
    import torch

    from sdedit.samplers import Guide

    x = torch.zeros(1, 1, 1, 4)
    strength = torch.tensor([0.0, 0.25, 0.5, 1.0]).reshape(1, 1, 1, 4)
    g = Guide(x, x, strength=strength)
    free = torch.stack([g.mask_at((k, 4)).flatten() for k in range(4)])
    assert free.tolist() == [[0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 1, 1], [0, 1, 1, 1]]
    assert Guide(x, x).mask_at((0, 4)) is None  # no map: everything is free
    # the official code's masking: every element above 0 free throughout
    assert Guide(x, x, strength=strength, official=True).mask_at((0, 4)).flatten().tolist() == [0, 1, 1, 1]


def test_bad_maps_are_refused_before_any_work(vp_pipe):
    calls = []
    vp_pipe.model_fn = lambda: calls.append(1)
    with pytest.raises(InputError, match="strength_map"):
        vp_pipe(_guide(), strength_map=np.ones((8, 8), np.float32), progress=False)
    with pytest.raises(InputError, match="strength_map"):
        vp_pipe(_guide(), strength_map=np.full((16, 16), 1.5, np.float32), progress=False)
    with pytest.raises(InputError, match="official_mask_timing"):
        vp_pipe(_guide(), strength_map=_binary(), official_mask_timing=True, progress=False)
    assert not calls


def test_metadata_says_a_map_was_used(vp_pipe):
    out = vp_pipe(_guide(), strength_map=_binary(), strength=0.3, num_inference_steps=10, seed=0, progress=False)
    assert out.metadata["strength_map"] == [True] and out.metadata["masked"] == [True]
