"""Masked editing: outside the mask the output is the input guide, down to the uint8 pixel."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sdedit.errors import InputError
from sdedit.masks import dilate, feather, mask_from_layers, mask_from_strokes, refine, to_mask


def box_mask(h, w, soft=False):
    m = np.zeros((h, w), np.float32)
    m[6:18, 10:26] = 1.0
    if soft:
        m[5, 10:26] = 0.5
        m[6:18, 26] = 0.25
    return m


@pytest.mark.parametrize("sampler", ["dpmpp", "ddim", "euler_a", "reference"])
@pytest.mark.parametrize("fit", ["pad", "crop", "stretch"])
def test_vp_outside_mask_is_exactly_the_guide(vp_pipe, photo, sampler, fit):
    mask = box_mask(*photo.shape[:2], soft=True)
    steps = 40 if sampler == "reference" else 10
    out = vp_pipe(
        photo,
        mask,
        strength=0.8,
        sampler=sampler,
        num_inference_steps=steps,
        num_images=2,
        seed=5,
        fit=fit,
        output_type="uint8",
        progress=False,
    ).images
    keep = mask == 0
    for img in out:
        assert img.shape == photo.shape
        assert np.array_equal(img[keep], photo[keep])
        assert not np.array_equal(img[mask == 1], photo[mask == 1])  # the edit did something


def test_ve_outside_mask_is_exactly_the_guide(ve_pipe, photo):
    mask = box_mask(*photo.shape[:2])
    out = ve_pipe(
        photo, mask, strength=0.5, num_inference_steps=20, snr=0.05, seed=1, output_type="uint8", progress=False
    ).images[0]
    assert np.array_equal(out[mask == 0], photo[mask == 0])


def test_pil_output_and_repeats_also_preserve(vp_pipe, photo):
    mask = Image.fromarray((box_mask(*photo.shape[:2]) * 255).astype(np.uint8))
    out = vp_pipe(
        Image.fromarray(photo), mask, strength=0.6, repeats=3, num_inference_steps=10, seed=0, progress=False
    ).images[0]
    got = np.asarray(out)
    assert np.array_equal(got[np.asarray(mask) == 0], photo[np.asarray(mask) == 0])


def test_float_outputs_preserve_exactly_too(vp_pipe, photo):
    mask = box_mask(*photo.shape[:2])
    out = vp_pipe(photo, mask, seed=0, num_inference_steps=10, output_type="np", progress=False).images[0]
    assert np.array_equal(out[mask == 0], photo[mask == 0].astype(np.float32) / 255.0)


def test_model_output_keeps_the_guide_in_model_range(vp_pipe):
    img = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    mask = np.zeros((16, 16), np.float32)
    mask[4:12, 4:12] = 1
    x = vp_pipe(img, mask, seed=0, num_inference_steps=10, output_type="model", progress=False).images[0]
    guide = np.transpose(img, (2, 0, 1)).astype(np.float32) / 255.0 * 2 - 1
    assert np.array_equal(x.numpy()[:, mask == 0], guide[:, mask == 0])


def test_padding_is_never_edited_without_a_mask(vp_pipe):
    """A wide guide is letterboxed; the padding stays padding and is cut away."""
    img = np.full((8, 32, 3), 40, np.uint8)
    out = vp_pipe(img, seed=0, num_inference_steps=10, output_type="model", progress=False).images[0]
    assert np.allclose(out[:, :5, :].numpy(), 1.0)  # white padding (255 -> 1.0) above the content


def test_all_ones_mask_equals_no_mask(vp_pipe, photo):
    a = vp_pipe(
        photo, np.ones(photo.shape[:2], np.float32), seed=3, num_inference_steps=10, output_type="uint8", progress=False
    ).images
    b = vp_pipe(photo, None, seed=3, num_inference_steps=10, output_type="uint8", progress=False).images
    assert np.array_equal(a, b)


def test_empty_and_mismatched_masks_are_clear_errors(vp_pipe, photo):
    with pytest.raises(InputError, match="mask is empty"):
        vp_pipe(photo, np.zeros(photo.shape[:2], np.float32), progress=False)
    with pytest.raises(InputError, match="same size"):
        vp_pipe(photo, np.ones((5, 5), np.float32), progress=False)
    with pytest.raises(InputError, match="NaN"):
        vp_pipe(photo, np.full(photo.shape[:2], np.nan, np.float32), progress=False)
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        vp_pipe(photo, np.full(photo.shape[:2], 2.0, np.float32), progress=False)


# ----- deriving masks from strokes ------------------------------------------------------------------


def test_mask_from_strokes_marks_exactly_the_painted_pixels():
    original = np.full((20, 30, 3), 100, np.uint8)
    painted = original.copy()
    painted[5:8, 10:20] = (255, 0, 0)
    painted[15, 3] = (103, 100, 100)  # below the threshold: JPEG-like noise is not a stroke
    m = mask_from_strokes(original, painted, threshold=8)
    assert m.dtype == np.float32 and m.shape == (20, 30)
    assert m[5:8, 10:20].min() == 1.0
    assert m.sum() == 30


def test_dilation_and_feathering_grow_outward_only():
    m = np.zeros((21, 21), np.float32)
    m[10, 10] = 1
    d = dilate(m, 2)
    assert d.sum() == 25 and d[8:13, 8:13].min() == 1
    f = feather(d, 3)
    assert f[8:13, 8:13].min() == 1.0  # the strokes stay fully editable
    assert 0 < f[10, 15] < 1  # a soft border outside them
    assert f[0, 0] == 0
    r = refine(m, 1, 2)
    assert r.max() == 1 and r.min() == 0


def test_mask_from_gradio_layers_uses_alpha():
    layer = np.zeros((10, 12, 4), np.uint8)
    layer[2:4, 3:6] = (10, 200, 30, 255)
    empty = np.zeros((10, 12, 4), np.uint8)
    m = mask_from_layers([empty, layer], (12, 10))
    assert m.sum() == 6 and m[2:4, 3:6].min() == 1


def test_to_mask_accepts_images_and_arrays():
    size = (12, 10)
    arr = np.zeros((10, 12), np.uint8)
    arr[1:3, 1:3] = 255
    for obj in (arr, arr > 0, arr.astype(np.float32) / 255, Image.fromarray(arr), Image.fromarray(arr).convert("RGB")):
        m = to_mask(obj, size)
        assert m.shape == (10, 12) and m.sum() == 4
    rgba = np.zeros((10, 12, 4), np.uint8)
    rgba[1:3, 1:3, 3] = 255
    assert to_mask(Image.fromarray(rgba, "RGBA"), size).sum() == 4
