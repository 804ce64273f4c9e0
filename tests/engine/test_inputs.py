"""Inputs of every kind are accepted or refused with a clear message; outputs come back at the input size."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from sdedit.errors import InputError, LimitError, SDEditError
from sdedit.imaging import ImageLimits, load_image, place, to_rgb
from sdedit.pipeline import RunLimits, SDEditPipeline

FAST = dict(num_inference_steps=4, progress=False)


def png_bytes(img: Image.Image, fmt="PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "LA", "CMYK", "I;16", "1"])
def test_pil_modes(vp_pipe, mode):
    base = Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8))
    img = base.convert("L").convert("I;16") if mode == "I;16" else base.convert(mode)
    out = vp_pipe(img, seed=0, **FAST).images[0]
    assert out.size == (30, 20) and out.mode == "RGB"


def test_palette_transparency_is_flattened_on_the_background():
    img = Image.new("P", (10, 10), 0)
    img.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    img.info["transparency"] = 0
    assert to_rgb(img, (255, 255, 255)).getpixel((0, 0)) == (255, 255, 255)
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert to_rgb(rgba, (10, 20, 30)).getpixel((1, 1)) == (10, 20, 30)


def test_sixteen_bit_is_scaled_not_clipped():
    img = Image.fromarray(np.full((10, 10), 65535, np.uint16))
    assert to_rgb(load_image(img)).getpixel((0, 0)) == (255, 255, 255)
    img = Image.fromarray(np.full((10, 10), 32896, np.uint16))
    assert to_rgb(load_image(img)).getpixel((0, 0))[0] == 128


@pytest.mark.parametrize(
    "array",
    [
        np.zeros((20, 30), np.uint8),
        np.zeros((20, 30, 1), np.uint8),
        np.zeros((20, 30, 3), np.uint8),
        np.zeros((20, 30, 4), np.uint8),
        np.zeros((20, 30, 3), np.float32),
        np.zeros((20, 30, 3), np.uint16),
    ],
)
def test_numpy_inputs(vp_pipe, array):
    assert vp_pipe(array, seed=0, output_type="uint8", **FAST).images[0].shape == (20, 30, 3)


def test_torch_and_path_and_bytes_inputs(vp_pipe, tmp_path):
    t = torch.rand(3, 20, 30)
    assert vp_pipe(t, seed=0, output_type="uint8", **FAST).images[0].shape == (20, 30, 3)
    assert vp_pipe(t[None], seed=0, output_type="uint8", **FAST).images[0].shape == (20, 30, 3)
    img = Image.fromarray(np.zeros((20, 30, 3), np.uint8))
    path = tmp_path / "guide.png"
    img.save(path)
    assert vp_pipe(str(path), seed=0, **FAST).images[0].size == (30, 20)
    assert vp_pipe(png_bytes(img, "JPEG"), seed=0, **FAST).images[0].size == (30, 20)


def test_exif_rotation_is_applied():
    img = Image.new("RGB", (30, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif)
    assert load_image(buf.getvalue()).size == (20, 30)


def test_animated_gif_uses_the_first_frame():
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    assert to_rgb(load_image(buf.getvalue())).getpixel((5, 5)) == (255, 0, 0)


def test_outputs_types_and_sizes(vp_pipe, photo):
    for output_type, check in [
        ("pil", lambda o: o[0].size == (36, 24)),
        ("uint8", lambda o: o.shape == (2, 24, 36, 3) and o.dtype == np.uint8),
        ("np", lambda o: o.shape == (2, 24, 36, 3) and o.dtype == np.float32 and o.max() <= 1),
        ("pt", lambda o: o.shape == (2, 3, 24, 36) and o.dtype == torch.float32),
        ("model", lambda o: o.shape == (2, 3, 16, 16)),
    ]:
        out = vp_pipe(photo, num_images=2, seed=0, output_type=output_type, **FAST)
        assert check(out.images), output_type
    meta = out.metadata
    for key in ("model", "sampler", "strength", "steps", "seeds", "timings", "model_evaluations", "device"):
        assert key in meta
    assert meta["seeds"] == [0, 1] and meta["timings"]["total_s"] > 0


# ----- bad input: each gets a clear, specific message ---------------------------------------------------

GOOD = np.zeros((20, 20, 3), np.uint8)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(strength=float("nan")), "finite"),
        (dict(strength=math.inf), "finite"),
        (dict(strength=0.0), r"\(0, 1\]"),
        (dict(strength=-0.5), r"\(0, 1\]"),
        (dict(strength=1.5), r"\(0, 1\]"),
        (dict(strength="high"), "number"),
        (dict(strength=None, num_inference_steps=0), "from 1 to"),
        (dict(num_inference_steps=10**6), "from 1 to"),
        (dict(num_inference_steps=2.5), "whole number"),
        (dict(num_inference_steps=[3]), "number"),
        (dict(repeats=0), "repeats"),
        (dict(repeats=99), "repeats"),
        (dict(num_images=0), "num_images"),
        (dict(num_images=10**4), "num_images"),
        (dict(seed=-3), "seed"),
        (dict(seed="abc"), "seed"),
        (dict(sampler="plms"), "sampler must be one of"),
        (dict(sampler=None, snr=float("nan")), "snr"),
        (dict(snr=-1), "snr"),
        (dict(fit="zoom"), "fit must be"),
        (dict(output_type="jpeg"), "output_type"),
    ],
)
def test_bad_settings(vp_pipe, kwargs, message):
    with pytest.raises(InputError, match=message):
        vp_pipe(GOOD, progress=False, **kwargs)


@pytest.mark.parametrize(
    "image,message",
    [
        (None, "no image"),
        (np.zeros((1, 1, 3), np.uint8), "at least 8"),
        (np.zeros((4, 200, 3), np.uint8), "at least 8"),
        (np.zeros((10, 400, 3), np.uint8), "aspect ratio"),
        (np.zeros((20, 20, 3), np.int64), "dtype"),
        (np.zeros((20, 20, 2), np.uint8), "shape"),
        (np.full((20, 20, 3), np.nan, np.float32), "NaN"),
        (np.full((20, 20, 3), 3.0, np.float32), r"\[0, 1\]"),
        (torch.zeros(2, 3, 20, 20), "batch"),
        (b"definitely not an image", "not an image"),
        (png_bytes(Image.new("RGB", (40, 40)))[:60], "damaged or truncated"),
        ("/no/such/file.png", "does not exist"),
        (12345, "must be a PIL image"),
        ([], "no image"),
    ],
)
def test_bad_images(vp_pipe, image, message):
    with pytest.raises(InputError, match=message):
        vp_pipe(image, progress=False)


def test_truncated_jpeg_is_refused():
    data = png_bytes(Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)), "JPEG")
    with pytest.raises(InputError, match="damaged or truncated"):
        load_image(data[: len(data) // 2])


def test_decompression_bomb_is_refused_before_decoding():
    """A small file that claims 20000 x 20000 pixels is refused from its header."""
    bomb = png_bytes(Image.new("L", (20000, 20000)))
    assert len(bomb) < 1_000_000
    with pytest.raises(LimitError, match="MP"):
        load_image(bomb)


def test_large_image_limit_and_work_limit(vp_pipe):
    strict = SDEditPipeline(
        vp_pipe.unet, vp_pipe.scheduler, limits=RunLimits(max_work=100, image=ImageLimits(max_pixels=1000))
    )
    with pytest.raises(LimitError, match="MP"):
        strict(np.zeros((40, 40, 3), np.uint8), progress=False)
    with pytest.raises(LimitError, match="network evaluations"):
        strict(np.zeros((20, 20, 3), np.uint8), num_images=4, num_inference_steps=100, progress=False)


def test_errors_are_sdedit_errors_with_user_facing_text(vp_pipe):
    with pytest.raises(SDEditError) as info:
        vp_pipe(GOOD, strength=2, progress=False)
    assert "Traceback" not in str(info.value) and "strength" in str(info.value)


def test_placement_policy():
    img = Image.new("RGB", (200, 100), (0, 0, 0))
    canvas, p = place(img, 64, "pad", (255, 255, 255))
    assert canvas.size == (64, 64) and p.box == (0, 16, 64, 48)
    assert canvas.getpixel((0, 0)) == (255, 255, 255) and canvas.getpixel((32, 32)) == (0, 0, 0)
    canvas, p = place(img, 64, "crop")
    assert canvas.size == (64, 64) and p.box == (50, 0, 150, 100)
    canvas, p = place(img, 64, "stretch")
    assert p.covers_canvas
