"""Guide help through the engine, the API and the page's Python side: `fill_outlines` fills closed outlines
with their stroke colour before the guide is placed (off by default, so every old call gives the same
pictures), with a mask the mask grows by the filled pixels, and filling a filled guide changes nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from sdedit import outlines
from sdedit.cli import main
from sdedit.errors import InputError
from sdedit.recall import describe, read_settings, settings_of

RED, BLUE, DARK = (220, 30, 40), (0, 90, 200), (20, 20, 20)
FAST = dict(strength=0.5, sampler="dpmpp", steps=8, repeats=1)


def outline_drawing(size: int = 64) -> np.ndarray:
    """A red ring, a dark closed square with a small gap and an open blue stroke, on white."""
    im = Image.new("RGB", (size, size), "white")
    d = ImageDraw.Draw(im)
    s = size / 64
    d.ellipse((6 * s, 6 * s, 34 * s, 34 * s), outline=RED, width=max(1, round(3 * s)))
    d.rectangle((38 * s, 36 * s, 60 * s, 58 * s), outline=DARK, width=round(3 * s))
    d.rectangle((48 * s, 36 * s, 48 * s + s - 1, 38 * s + s - 1), fill="white")  # a gap the closing bridges
    d.line((6 * s, 56 * s, 30 * s, 44 * s), fill=BLUE, width=max(1, round(3 * s)))
    return np.asarray(im)


def thin_outline() -> np.ndarray:
    """A 256 px drawing as a newcomer draws it: a thin red ring, and a thin open stroke."""
    im = Image.new("RGB", (256, 256), "white")
    d = ImageDraw.Draw(im)
    d.ellipse((40, 40, 200, 200), outline=RED, width=4)
    d.line((30, 230, 120, 215), fill=BLUE, width=4)
    return np.asarray(im)


def photo_with_loop(size: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """A smooth photo with a red loop painted on it, and the loop as the mask (1 = painted)."""
    y, x = np.mgrid[0:size, 0:size]
    photo = np.stack([x * 5 % 256, y * 5 % 256, (x + y) * 2 % 256], -1).astype(np.uint8)
    loop = Image.new("L", (size, size), 0)
    ImageDraw.Draw(loop).ellipse((10, 10, 38, 38), outline=255, width=3)
    mask = np.asarray(loop) > 0
    guide = photo.copy()
    guide[mask] = RED
    return guide, mask.astype(np.float32)


# ----- the engine ---------------------------------------------------------------------------------------------


def test_fill_outlines_fills_the_guide_before_it_is_placed_and_is_off_by_default(vp_pipe):
    drawing = outline_drawing()
    off = vp_pipe.prepare(drawing)
    assert np.array_equal(off.rgb, drawing) and not off.fill_outlines
    on = vp_pipe.prepare(drawing, fill_outlines=True)
    want = outlines.fill_outlines(drawing)
    assert want.holes == 2, "the ring and the square with its small gap; the open stroke encloses nothing"
    assert np.array_equal(on.rgb, want.image) and on.fill_outlines and on.mask is None
    assert tuple(on.rgb[20, 20]) == RED and tuple(on.rgb[47, 49]) == DARK
    # the model's canvas (16 px here) is made from the filled guide at its own size
    assert not np.array_equal(on.canvas, off.canvas)
    assert np.array_equal(on.canvas, vp_pipe.prepare(want.image).canvas)
    a = vp_pipe(drawing, **_fast(vp_pipe), seed=3, progress=False, output_type="uint8")
    b = vp_pipe(drawing, **_fast(vp_pipe), seed=3, progress=False, output_type="uint8", fill_outlines=False)
    assert np.array_equal(a.images, b.images), "the default is off: old calls give the same pictures"
    assert a.metadata["fill_outlines"] == [False]
    c = vp_pipe(drawing, **_fast(vp_pipe), seed=3, progress=False, output_type="uint8", fill_outlines=True)
    assert c.metadata["fill_outlines"] == [True] and not np.array_equal(a.images, c.images)


def _fast(pipe) -> dict:
    return dict(strength=0.5, sampler="ddim", num_inference_steps=10)


def test_with_a_mask_the_masked_pixels_are_the_drawing_and_the_mask_grows_by_the_fill(vp_pipe):
    guide, mask = photo_with_loop()
    g = vp_pipe.prepare(guide, mask, fill_outlines=True)
    want = outlines.fill_outlines(guide, mask > 0.5)
    assert want.holes == 1 and np.array_equal(g.rgb, want.image)
    assert (g.rgb[want.filled] == RED).all(), "colours from the guide under the mask: the loop's red"
    assert np.array_equal(g.mask > 0, (mask > 0) | want.filled), "the filled pixels may change too"
    # outside the grown mask the result is the guide itself, pixel for pixel
    out = vp_pipe(guide, mask, **_fast(vp_pipe), seed=1, progress=False, output_type="uint8", fill_outlines=True)
    kept = ~((mask > 0) | want.filled)
    assert np.array_equal(out.images[0][kept], guide[kept])
    # a soft mask: only pixels above one half count as drawn
    assert np.array_equal(vp_pipe.prepare(guide, mask * 0.4, fill_outlines=True).rgb, guide)


def test_filling_a_filled_guide_changes_nothing(vp_pipe):
    """The page's guide carries its fill already, and the page passes its switch: filling again is idempotent."""
    rng = np.random.default_rng(0)
    drawings = [outline_drawing(64), outline_drawing(256)]
    for _ in range(4):  # scribbles: random closed and open polylines in a few colours
        im = Image.new("RGB", (96, 96), "white")
        d = ImageDraw.Draw(im)
        for _ in range(5):
            pts = [tuple(p) for p in rng.integers(4, 92, (4, 2)).tolist()]
            colour = [RED, BLUE, DARK][rng.integers(3)]
            d.line([*pts, pts[0]] if rng.random() < 0.6 else pts, fill=colour, width=int(rng.integers(2, 5)))
        drawings.append(np.asarray(im))
    for drawing in drawings:
        once = outlines.fill_guide(drawing)[0]
        twice = outlines.fill_guide(once)[0]
        assert np.array_equal(once, twice)
    guide, mask = photo_with_loop()
    g1, m1, _ = outlines.fill_guide(guide, mask)
    g2, m2, f2 = outlines.fill_guide(g1, m1)
    assert np.array_equal(g1, g2) and np.array_equal(m1, m2) and f2.holes == 0
    # through the pipeline: the filled guide with fill_outlines on gives the pictures of the drawing filled once
    drawing = drawings[0]
    filled = outlines.fill_outlines(drawing).image
    a = vp_pipe(drawing, **_fast(vp_pipe), seed=5, progress=False, output_type="uint8", fill_outlines=True)
    b = vp_pipe(filled, **_fast(vp_pipe), seed=5, progress=False, output_type="uint8", fill_outlines=True)
    c = vp_pipe(filled, **_fast(vp_pipe), seed=5, progress=False, output_type="uint8")
    assert np.array_equal(a.images, b.images) and np.array_equal(b.images, c.images)


def test_fill_outlines_must_be_true_or_false(vp_pipe):
    with pytest.raises(InputError, match="fill_outlines must be True or False"):
        vp_pipe.prepare(outline_drawing(), fill_outlines="yes")


def test_the_result_records_it_and_the_cli_asks_for_it(vp_pipe, tiny_model_dir, tmp_path):
    out = vp_pipe(outline_drawing(), **_fast(vp_pipe), num_images=2, seed=0, progress=False, fill_outlines=True)
    settings = settings_of(out.metadata, 1)
    assert settings["fill_outlines"] is True and "outlines filled" in describe(settings)
    assert settings_of({**out.metadata, "fill_outlines": [False]})["fill_outlines"] is False
    Image.fromarray(outline_drawing()).save(tmp_path / "outline.png")
    for flag, expected in ((["--fill-outlines"], True), ([], False)):
        folder = tmp_path / f"out-{expected}"
        args = ["edit", "--model", str(tiny_model_dir), "--guide", str(tmp_path / "outline.png"), "--steps", "4"]
        assert main([*args, "--sampler", "ddim", "--out", str(folder), "--no-progress", *flag]) == 0
        assert read_settings(next(folder.glob("*.png")))["fill_outlines"] is expected
        assert json.loads((folder / "outline-metadata.json").read_text())["fill_outlines"] == [expected]


# ----- the studio: jobs, the /edit function, the page's Python side --------------------------------------------


def test_an_edit_with_fill_outlines_gets_the_filled_guide_and_a_thin_guide_gets_the_hint():
    from sdedit.studio import jobs

    drawing = thin_outline()
    thin = jobs.run_edit(Image.fromarray(drawing), None, jobs.EditSettings(seed=2, **FAST), animate=False)
    assert outlines.guide_hint(drawing) and outlines.HINT in thin.summary
    assert thin.metadata["fill_outlines"] == [False]
    filled = jobs.run_edit(
        Image.fromarray(drawing), None, jobs.EditSettings(seed=2, fill_outlines=True, **FAST), animate=False
    )
    assert filled.metadata["fill_outlines"] == [True]
    page_guide = Image.fromarray(outlines.fill_outlines(drawing).image)  # what the canvas sends
    again = jobs.run_edit(page_guide, None, jobs.EditSettings(seed=2, fill_outlines=True, **FAST), animate=False)
    assert np.array_equal(np.asarray(again.images[0]), np.asarray(filled.images[0]))
    assert outlines.guide_hint(outlines.fill_outlines(drawing).image) is None and outlines.HINT not in filled.summary


def test_the_endpoints_take_fill_outlines_last_with_an_old_clients_default():
    import inspect

    from sdedit.studio import results

    for fn in (results.edit, results.sweep):
        params = list(inspect.signature(fn).parameters)
        at = params.index("strength_map")
        assert params[at + 1] == "fill_outlines" and inspect.signature(fn).parameters["fill_outlines"].default is False
    s = results.edit_settings(None, 0.5, None, None, None, 1, 0, None, 0, 0, None, None)
    assert s.fill_outlines is False, "an old client that sends nothing for it"


def test_the_canvas_value_carries_the_fill_and_the_switch_and_the_tabs_read_them():
    from sdedit.studio.canvas import DYNAMIC_PROPS, LiveCanvas, auto_fill, canvas_update, read_canvas
    from sdedit.studio.page import build_page

    page = build_page()
    paint, edit = page.by_id["paint"], page.by_id["edit"]
    drawing = outline_drawing(256)
    want = outlines.fill_outlines(drawing)
    fill = np.zeros((256, 256, 4), np.uint8)  # the page's fill layer: the filled pixels, opaque
    fill[want.filled, :3] = want.image[want.filled]
    fill[want.filled, 3] = 255
    value = paint.canvas.postprocess({"background": Image.fromarray(drawing), "fill": fill, "auto_fill": True})
    read = paint.canvas.preprocess(value)
    assert read["auto_fill"] is True and np.array_equal(read["fill"], fill)
    assert auto_fill(value) and auto_fill(read) and not auto_fill(paint.canvas.postprocess({"background": drawing}))
    guide, mask = paint.guide({paint.canvas: value})
    assert mask is None and np.array_equal(np.asarray(guide), want.image), "Generate reads what the canvas shows"
    shown = page.guide_in_front({page.selected_tab: "paint", paint.canvas: value, edit.canvas: edit.canvas.value})
    assert shown[page.results.fill_outlines] is True

    # the photo: the fill colours the photo and joins the mask; the mask-only layer is read as it is
    photo, loop = photo_with_loop(64)
    paint_layer = np.zeros((64, 64, 4), np.uint8)
    paint_layer[loop > 0] = (*RED, 255)
    only = np.zeros((64, 64, 4), np.uint8)
    only[:4, :4] = 255
    pf = outlines.fill_outlines(photo, loop > 0)
    photo_fill = np.zeros((64, 64, 4), np.uint8)
    photo_fill[pf.filled] = (*RED, 255)
    base = photo.copy()
    base[loop > 0] = (5, 5, 5)  # the photo under the strokes: the paint layer covers it
    value = {"background": base, "layers": [paint_layer, only, None], "fill": photo_fill, "auto_fill": True}
    guide, mask, smap = edit.guide_and_strength({edit.canvas: edit.canvas.postprocess(value)})
    assert np.array_equal(np.asarray(guide), pf.image) and smap is None
    assert np.array_equal(np.asarray(mask) > 0, (loop > 0) | pf.filled | (only[..., 3] > 0))
    assert read_canvas(edit.canvas.postprocess(value), layers=3)["layers"][1].tolist() == only.tolist()

    # an update carries every prop the canvas was built with (a tab not yet opened mounts from it), but those that
    # follow the page's model and controls (the canvas keeps them page-wide)
    update = canvas_update(edit.canvas, live={"model": "x"})
    fixed = {k for k in edit.canvas.props if k not in DYNAMIC_PROPS}
    assert fixed <= set(update) and update["mode"] == "photo" and update["live"] == {"model": "x"}
    assert edit.canvas.props["auto_fill"] is False and paint.canvas.props["auto_fill"] is True
    assert paint.canvas.props["hint"] == outlines.HINT and paint.canvas.props["canvas_size"] == 256
    from sdedit.studio import limits

    assert edit.canvas.props["photo_side"] == limits.MAX_PHOTO_SIDE
    assert paint.canvas.props["rule"]["paint_threshold"] == outlines.PAINT_THRESHOLD
    with pytest.raises(ValueError, match="mode"):
        LiveCanvas(mode="watercolour", render=False)


def test_restoring_a_result_sets_the_switch_and_examples_and_results_turn_it_off():
    from sdedit.studio.page import build_page

    page = build_page()
    paint, edit = page.by_id["paint"], page.by_id["edit"]
    guide = Image.fromarray(outline_drawing(256))
    for fill in (True, False):
        out = page.restore_guide({"guide": guide}, fill)
        value = paint.canvas.postprocess(out[paint.canvas]["value"])
        assert json.loads(value)["auto_fill"] is fill
    mask = Image.new("L", guide.size, 0)
    out = page.restore_guide({"guide": guide, "mask": mask.point(lambda _: 255)}, True)
    assert json.loads(edit.canvas.postprocess(out[edit.canvas]["value"]))["auto_fill"] is True
    updates = paint.load_example(page, 0)
    assert json.loads(paint.canvas.postprocess(updates[paint.canvas]))["auto_fill"] is False
    assert updates[page.results.fill_outlines] is False, "an example's first edit is the example as it is"
    received = page.show_result(guide, "paint")[paint.canvas]
    assert json.loads(paint.canvas.postprocess(received))["auto_fill"] is False
    from sdedit.studio.restore import settings_from_dict

    assert settings_from_dict({"fill_outlines": True})["fill_outlines"] is True


# ----- keep details: the same switch, its own input -----------------------------------------------------------


def test_the_guide_help_switch_also_keeps_details_and_the_endpoints_take_it_last():
    import inspect

    from sdedit.studio import jobs, results
    from sdedit.studio.page import build_page
    from tests.engine.test_details import smiley

    for fn in (results.edit, results.edit_on_gpu, results.sweep):
        params = inspect.signature(fn).parameters
        assert list(params)[-2:] == ["keep_details", "progress"] and params["keep_details"].default is None
    old = results.edit_settings(None, 0.5, None, None, None, 1, 0, None, 0, 0, None, None, None, None)
    assert old.keep_details is False, "an old client that sends nothing for it"

    page = build_page()
    paint, edit = page.by_id["paint"], page.by_id["edit"]
    value = paint.canvas.postprocess({"background": Image.fromarray(smiley()), "auto_fill": True})
    shown = page.guide_in_front({page.selected_tab: "paint", paint.canvas: value, edit.canvas: edit.canvas.value})
    assert shown[page.results.keep_details] is True and shown[page.results.fill_outlines] is True
    off = paint.canvas.postprocess({"background": Image.fromarray(smiley()), "auto_fill": False})
    shown = page.guide_in_front({page.selected_tab: "paint", paint.canvas: off, edit.canvas: edit.canvas.value})
    assert shown[page.results.keep_details] is False
    assert paint.load_example(page, 0)[page.results.keep_details] is False

    guide = Image.fromarray(smiley())
    kept = jobs.run_edit(guide, None, jobs.EditSettings(seed=2, keep_details=True, **FAST), animate=False)
    plain = jobs.run_edit(guide, None, jobs.EditSettings(seed=2, **FAST), animate=False)
    assert kept.metadata["keep_details"] == [True] and plain.metadata["keep_details"] == [False]
    assert not np.array_equal(np.asarray(kept.images[0]), np.asarray(plain.images[0]))


def test_a_result_restores_the_switch_on_only_when_it_had_both():
    from sdedit.configs import default_config
    from sdedit.studio.page import build_page
    from sdedit.studio.restore import settings_from_dict

    page = build_page()
    paint = page.by_id["paint"]
    guide = Image.fromarray(outline_drawing(256))
    for both, want in (((True, True), True), ((True, False), False), ((False, True), False)):
        settings = settings_from_dict({"fill_outlines": both[0], "keep_details": both[1], "strength": 0.4})
        out = page.restore_result(settings, {"guide": guide}, default_config().name)
        assert json.loads(paint.canvas.postprocess(out[paint.canvas]["value"]))["auto_fill"] is want


def test_a_live_preview_keeps_details_when_the_switch_is_on():
    import base64
    import io

    from sdedit.studio.live import parse_request
    from tests.engine.test_details import smiley

    buf = io.BytesIO()
    Image.fromarray(smiley()).save(buf, "PNG")
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    base = {"visitor": "v" * 12, "seq": 1, "guide": url}
    assert parse_request(base).keep_details is False, "a page from before the switch sends none"
    assert parse_request({**base, "keep_details": True}).keep_details is True
    with pytest.raises(InputError, match="keep_details"):
        parse_request({**base, "keep_details": "yes"})
