"""Keep details: a drawing's thin and small parts get a lower t0 through a strength map made from the drawing;
wide regions, scribbled regions and photos get none, and the pipeline's `keep_details` is that map, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from sdedit.details import DETAIL_STRENGTH, detail_strength, details, palette
from sdedit.errors import InputError
from sdedit.outlines import painted_pixels

YELLOW, DARK, ORANGE, BLUE = (255, 200, 60), (30, 30, 30), (255, 130, 45), (0, 166, 237)


def smiley(size: int = 256) -> np.ndarray:
    """A filled yellow disc with two dark eyes and a dark smile, drawn with a 10 px brush at 256."""
    im = Image.new("RGB", (size, size), "white")
    d = ImageDraw.Draw(im)
    s = size / 256
    d.ellipse((48 * s, 48 * s, 208 * s, 208 * s), fill=YELLOW)
    for x in (100, 156):
        d.ellipse(((x - 6) * s, 96 * s, (x + 6) * s, 120 * s), fill=DARK)
    d.arc((88 * s, 100 * s, 168 * s, 176 * s), 20, 160, fill=DARK, width=round(10 * s))
    return np.asarray(im)


def test_a_smileys_face_is_detail_and_its_disc_is_not():
    found = details(smiley())
    assert found[108, 100] and found[108, 156]  # the eyes
    assert found[175, 128]  # the smile's lowest point (the arc's centre 138, radius 38)
    assert not found[140, 70] and not found[80, 128]  # inside the disc, away from the face
    assert not found[5, 5]  # the background
    assert found.mean() < 0.1


def test_the_map_halves_t0_on_details_and_keeps_it_elsewhere():
    m = detail_strength(smiley())
    assert m.dtype == np.float32 and m.shape == (256, 256)
    assert set(np.unique(m)) == {np.float32(DETAIL_STRENGTH), np.float32(1.0)}
    assert m[108, 100] == DETAIL_STRENGTH and m[140, 70] == 1.0


def test_the_rule_scales_with_the_guide():
    small, large = details(smiley(128)), details(smiley(512))
    assert small[54, 50] and large[216, 200]  # an eye at each size
    assert not small[70, 35] and not large[280, 140]


def test_a_sun_keeps_its_rays():
    im = Image.new("RGB", (256, 256), "white")
    d = ImageDraw.Draw(im)
    d.ellipse((88, 88, 168, 168), fill=ORANGE)
    for a in range(0, 360, 45):
        c, s = np.cos(np.radians(a)), np.sin(np.radians(a))
        d.line((128 + 55 * c, 128 + 55 * s, 128 + 90 * c, 128 + 90 * s), fill=ORANGE, width=10)
    found = details(np.asarray(im))
    assert found[128, 128 + 72] and found[128 - 72, 128]  # two rays
    assert not found[128, 128]  # the disc


def test_wide_shapes_and_a_scribbled_region_have_no_details():
    im = Image.new("RGB", (256, 256), "white")
    d = ImageDraw.Draw(im)
    d.rectangle((30, 30, 120, 120), fill=BLUE)
    for y in range(140, 230, 14):  # a region scribbled with 10 px strokes and 4 px gaps between them
        d.line((140, y, 230, y), fill=ORANGE, width=10)
    assert detail_strength(np.asarray(im)) is None


def test_a_photo_has_no_palette_and_no_details(photo):
    rgb = np.asarray(photo)
    assert palette(rgb, painted_pixels(rgb)) is None
    assert detail_strength(rgb) is None
    assert detail_strength(np.full((64, 64, 3), 255, np.uint8)) is None  # nothing drawn


def test_antialiased_edges_are_blends_not_colours():
    im = Image.new("RGB", (512, 512), "white")
    ImageDraw.Draw(im).ellipse((40, 40, 470, 470), fill=BLUE)
    small = np.asarray(im.resize((256, 256), Image.LANCZOS))  # an edge of every blend of blue and white
    colours = palette(small, painted_pixels(small))
    assert colours is not None and len(colours) == 1
    assert detail_strength(small) is None


def _edit(pipe, **kw):
    args = dict(strength=0.6, num_inference_steps=20, seed=[3, 4], num_images=2, progress=False, output_type="uint8")
    return pipe(**{**args, **kw})


@pytest.mark.parametrize("masked", [False, True])
def test_keep_details_is_the_drawings_strength_map(vp_pipe, masked):
    """The pipeline's keep_details is exactly the edit with `detail_strength` as its strength map (in product
    with a mask), and the metadata says it was asked for."""
    guide = smiley(32)
    mask = np.zeros((32, 32), np.float32)
    mask[4:28, 2:30] = 1.0
    m = mask if masked else None
    kept = _edit(vp_pipe, image=guide, mask_image=m, keep_details=True)
    direct = _edit(vp_pipe, image=guide, mask_image=m, strength_map=detail_strength(guide))
    plain = _edit(vp_pipe, image=guide, mask_image=m)
    assert np.array_equal(kept.images, direct.images)
    assert not np.array_equal(kept.images, plain.images)
    assert kept.metadata["keep_details"] == [True] and plain.metadata["keep_details"] == [False]


def test_keep_details_without_details_is_plain_sdedit(vp_pipe, photo):
    rgb = np.asarray(photo)
    assert np.array_equal(_edit(vp_pipe, image=rgb, keep_details=True).images, _edit(vp_pipe, image=rgb).images)


def test_keep_details_is_checked(vp_pipe):
    with pytest.raises(InputError, match="keep_details must be True or False"):
        _edit(vp_pipe, image=smiley(32), keep_details="yes")
    with pytest.raises(InputError, match="official_mask_timing"):
        _edit(vp_pipe, image=smiley(32), keep_details=True, official_mask_timing=True)


def test_the_cli_keeps_details_and_its_png_recalls_them(tiny_model_dir, tmp_path):
    """`--keep-details` reaches the pipeline, the result's PNG says so, and its settings redo the same pixels."""
    from sdedit import SDEditPipeline
    from sdedit.cli import main
    from sdedit.recall import call_kwargs, describe, read_settings

    guide = tmp_path / "smiley.png"
    Image.fromarray(smiley(32)).save(guide)
    out = tmp_path / "out.png"
    args = ["edit", "--model", str(tiny_model_dir), "--guide", str(guide), "--strength", "0.6", "--steps", "10"]
    assert main([*args, "--seed", "2", "--keep-details", "--out", str(out), "--no-progress"]) == 0
    settings = read_settings(out)
    assert settings["keep_details"] is True and "details kept" in describe(settings)
    pipe = SDEditPipeline.from_pretrained(str(tiny_model_dir))
    again = pipe(str(guide), **call_kwargs(settings), progress=False, output_type="uint8").images[0]
    assert np.array_equal(np.asarray(Image.open(out).convert("RGB")), again)


def test_a_large_drawing_is_read_at_the_working_size():
    """Above `WORK_SIDE` the rule runs on the drawing at that size and its details are scaled back: the same
    eyes and smile, in the guide's own size, at a bounded cost."""
    from sdedit.details import WORK_SIDE

    big = details(smiley(2 * WORK_SIDE))
    assert big.shape == (2 * WORK_SIDE, 2 * WORK_SIDE)
    small = details(smiley(WORK_SIDE))
    scaled = np.asarray(Image.fromarray(small).resize(big.shape[::-1], Image.NEAREST))
    assert (big == scaled).mean() > 0.99 and big[432, 400]  # an eye (at 256: y 108, x 100)


def test_small_parts_of_their_own_colour_are_details_but_a_small_drawing_is_not():
    im = Image.new("RGB", (256, 256), "white")
    d = ImageDraw.Draw(im)
    d.rectangle((45, 105, 211, 175), fill=BLUE)  # a car: its body, and two wheels, wide but small
    d.rectangle((85, 75, 175, 110), fill=BLUE)
    for cx in (85, 170):
        d.ellipse((cx - 17, 158, cx + 17, 192), fill=DARK)
    found = details(np.asarray(im))
    assert found[175, 85] and found[175, 170], "the wheels"
    assert not found[130, 128] and not found[90, 130], "the body"
    small = Image.new("RGB", (256, 256), "white")
    ImageDraw.Draw(small).ellipse((20, 20, 60, 60), fill=ORANGE)  # a small drawing is all one part
    assert detail_strength(np.asarray(small)) is None
