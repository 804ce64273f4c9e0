"""The canvas's guide help in real Chromium: automatic filling of closed outlines, the bucket and the thin-lines
hint, checked on pixels read back from the page.

The fill rule lives twice, in Python (sdedit/outlines.py) and in the page (sdedit/studio/static/canvas.js);
here the page's fill is compared with Python's pixel for pixel, on drawings uploaded to the canvas (the same
flattened input on both sides) and on strokes drawn with the mouse (Python flattens the page's own layers).
The canvas's value is read as Generate reads it (`.sdl`'s `sdlValue()`, the value it sends). Debian's Chromium
via Playwright, as tests/browser/test_browser.py.
"""

from __future__ import annotations

import base64
import io
import json
import math
import time

import numpy as np
import pytest
from PIL import Image, ImageDraw

from sdedit import outlines
from sdedit.studio.guides import flatten, paint_over
from tests.browser_utils import (
    browser_marks,
    canvas_pixels,
    draw,
    fetch_bytes,
    fetch_image,
    generate,
    open_app,
    pick_color,
)

pytestmark = browser_marks()
RED, BLUE, YELLOW, DARK = (249, 47, 96), (0, 166, 237), (255, 200, 61), (33, 33, 33)
WHITE = (255, 255, 255)


@pytest.fixture
def page(browser, url):
    page = open_app(browser, url)
    yield page
    page.close()


def _decode(url: str | None) -> np.ndarray | None:
    if not url:
        return None
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGBA"))


def canvas_value(page, editor: str) -> dict:
    """The canvas's value as Generate reads it: background, layers and fill as RGBA arrays, and the switch."""
    time.sleep(0.3)
    v = page.evaluate("(id) => document.querySelector('#' + id + ' .sdl').sdlValue()", editor)
    return {
        "background": _decode(v["background"]),
        "layers": [_decode(u) for u in v["layers"]],
        "fill": _decode(v["fill"]),
        "auto_fill": v["auto_fill"],
    }


def drawing_of(v: dict) -> np.ndarray:
    """The drawing the fill rule reads: the background with the paint layer over it, as the guides flatten it."""
    rgb = flatten(v["background"])
    return paint_over(rgb, v["layers"][0]) if v["layers"] and v["layers"][0] is not None else rgb


def shown_guide(v: dict) -> np.ndarray:
    """The drawing with the page's fill on top: what the model gets."""
    rgb = drawing_of(v)
    return rgb if v["fill"] is None else paint_over(rgb, v["fill"])


def filled_pixels(v: dict) -> np.ndarray:
    return np.zeros(v["background"].shape[:2], bool) if v["fill"] is None else v["fill"][..., 3] > 0


def switch(page, editor: str):
    return page.locator(f"#{editor}").get_by_role("checkbox", name="Fill outlines, keep details", exact=True)


def tool(page, editor: str, name: str) -> None:
    page.locator(f"#{editor}").get_by_role("button", name=name, exact=True).click()
    time.sleep(0.2)


def circle(cx: float, cy: float, r: float, n: int = 14) -> list[tuple[float, float]]:
    return [(cx + r * math.cos(a), cy + r * math.sin(a)) for a in np.linspace(0, 2 * math.pi, n)]


def upload(page, editor: str, image: Image.Image, tmp_path, name: str) -> dict:
    """Put `image` on the canvas through its upload button; the value once the canvas holds it."""
    path = tmp_path / f"{name}.png"
    image.save(path)
    page.locator(f"#{editor} .sdl-file").set_input_files(str(path))
    want = np.asarray(image.convert("RGB"))
    deadline = time.time() + 15
    while time.time() < deadline:
        v = canvas_value(page, editor)
        if v["background"] is not None and np.array_equal(v["background"][..., :3], want):
            return v
    raise TimeoutError(f"{name} did not reach the canvas")


def brush_size(page, editor: str, px: int) -> None:
    js = "(e, px) => { e.value = px; e.dispatchEvent(new Event('input')); }"
    page.locator(f"#{editor} .sdl-size input").evaluate(js, px)


def hint_shown(page, editor: str) -> bool:
    return page.locator(f"#{editor} .sdl-hint").is_visible()


# ----- drawings for the comparison, as people draw them: outlines, several colours, gaps, frames -------------


def drawings() -> dict[str, Image.Image]:
    def sheet():
        im = Image.new("RGB", (256, 256), WHITE)
        return im, ImageDraw.Draw(im)

    out = {}
    im, d = sheet()
    d.ellipse((40, 40, 200, 200), outline=RED, width=9)
    d.arc((150, 150, 250, 250), 200, 80, fill=BLUE, width=7)  # an open stroke beside it
    out["circle-and-arc"] = im
    im, d = sheet()  # a smiley in outlines: the face takes its colour, the eyes theirs
    d.ellipse((30, 30, 226, 226), outline=YELLOW, width=10)
    for x in (85, 145):
        d.ellipse((x, 80, x + 26, 106), outline=DARK, width=5)
    d.arc((80, 120, 176, 190), 20, 160, fill=DARK, width=6)
    out["smiley"] = im
    im, d = sheet()  # a gap the closing bridges, and one it does not
    d.rectangle((20, 30, 120, 130), outline=BLUE, width=8)
    d.rectangle((60, 30, 63, 38), fill=WHITE)
    d.rectangle((140, 30, 240, 130), outline=RED, width=8)
    d.rectangle((170, 30, 200, 38), fill=WHITE)
    out["gaps"] = im
    im, d = sheet()  # a frame round the whole picture is no shape to fill; a heart inside it is
    d.rectangle((0, 0, 255, 255), outline=DARK, width=6)
    d.polygon([(128, 170), (95, 130), (102, 100), (128, 112), (154, 100), (161, 130)], outline=RED, width=6)
    out["frame-and-heart"] = im
    im, d = sheet()  # two colours around one hole: the most frequent wins; a shape cut by the border
    d.line((60, 60, 196, 60), fill=RED, width=8)
    d.line((196, 60, 196, 196), fill=BLUE, width=8)
    d.line((196, 196, 60, 196), fill=BLUE, width=8)
    d.line((60, 196, 60, 60), fill=BLUE, width=8)
    d.ellipse((200, -40, 300, 60), outline=RED, width=8)
    out["two-colours-and-border"] = im
    big = Image.new("RGB", (1024, 1024), WHITE)  # soft edges: drawn at 4x, scaled down
    d = ImageDraw.Draw(big)
    d.ellipse((200, 240, 840, 880), outline=(0, 210, 106), width=28)
    d.line((512, 240, 560, 120), fill=(120, 72, 0), width=28)
    d.line((100, 100, 300, 60), fill=RED, width=20)
    out["soft-edges"] = big.resize((256, 256), Image.LANCZOS)
    rng = np.random.default_rng(3)  # scribbles: random thick polylines in the palette's colours
    im, d = sheet()
    for _ in range(6):
        pts = [tuple(p) for p in rng.integers(10, 246, (5, 2)).tolist()]
        d.line([*pts, pts[0]] if rng.random() < 0.5 else pts, fill=[RED, BLUE, YELLOW, DARK][rng.integers(4)], width=7)
    out["scribbles"] = im
    im, d = sheet()  # a filled shape: nothing to fill, and no thin lines
    d.ellipse((50, 50, 206, 206), fill=RED)
    out["filled-disc"] = im
    return out


# ----- tests ---------------------------------------------------------------------------------------------------


def test_the_page_fills_exactly_as_python_does_on_several_drawings(page, tmp_path):
    """Uploaded drawings (the same pixels on both sides): the page's fill, its filled pixels and its hint are
    Python's `outlines.fill_outlines` / `guide_hint`, pixel for pixel."""
    assert switch(page, "paint-editor").is_checked(), "on by default on Paint"
    for name, im in drawings().items():
        v = upload(page, "paint-editor", im, tmp_path, name)
        want = outlines.fill_outlines(np.asarray(im))
        assert np.array_equal(shown_guide(v), want.image), name
        assert np.array_equal(filled_pixels(v), want.filled), name
        assert hint_shown(page, "paint-editor") == (outlines.guide_hint(want.image) is not None), name
        assert np.array_equal(canvas_pixels(page, "paint-editor"), want.image), f"{name}: the canvas shows it"
    # the comparison is not empty: most drawings fill something, the open and filled ones nothing
    holes = {name: outlines.fill_outlines(np.asarray(im)).holes for name, im in drawings().items()}
    assert holes["circle-and-arc"] == 1 and holes["smiley"] >= 3 and holes["gaps"] == 1
    assert holes["frame-and-heart"] == 1 and holes["filled-disc"] == 0


def test_a_drawn_closed_outline_fills_with_its_stroke_colour_and_an_open_stroke_does_not(page):
    pick_color(page, "paint-editor", BLUE)
    draw(page, "paint-editor", [(20, 230), (120, 200), (236, 236)])  # open
    v = canvas_value(page, "paint-editor")
    assert v["fill"] is None and v["auto_fill"] is True
    pick_color(page, "paint-editor", RED)
    draw(page, "paint-editor", circle(128, 110, 70))  # closed
    v = canvas_value(page, "paint-editor")
    want = outlines.fill_outlines(drawing_of(v))
    assert want.holes == 1
    assert np.array_equal(shown_guide(v), want.image), "the page's fill is Python's on the page's own layers"
    inside = filled_pixels(v)
    assert inside[110, 128] and inside.sum() > 0.8 * math.pi * 60**2
    assert (v["fill"][inside][:, :3] == RED).all(), "filled with the stroke colour"
    assert (canvas_pixels(page, "paint-editor")[100:120, 118:138] == RED).all()


def test_the_fill_is_undoable_and_stays_off_when_switched_off(page):
    editor = "paint-editor"
    pick_color(page, editor, RED)
    draw(page, editor, circle(128, 128, 70))
    filled = canvas_value(page, editor)
    assert filled["fill"] is not None
    page.keyboard.press("Control+z")  # the fill is its own step: the outline stays
    v = canvas_value(page, editor)
    assert v["fill"] is None and np.array_equal(v["layers"][0], filled["layers"][0])
    assert not switch(page, editor).is_checked() and v["auto_fill"] is False, "undoing a fill turns it off"
    assert (canvas_pixels(page, editor)[120:136, 120:136] == 255).all()
    page.keyboard.press("Control+z")  # then the stroke, and the switch as it was before it
    v = canvas_value(page, editor)
    assert v["layers"][0] is None and switch(page, editor).is_checked()
    assert (canvas_pixels(page, editor) == 255).all()

    # switched off: a closed outline stays an outline; on again: it fills; the Undo button takes that back
    switch(page, editor).uncheck()
    draw(page, editor, circle(128, 128, 70))
    v = canvas_value(page, editor)
    assert v["fill"] is None and v["auto_fill"] is False
    switch(page, editor).check()
    v = canvas_value(page, editor)
    assert v["fill"] is not None and np.array_equal(shown_guide(v), outlines.fill_outlines(drawing_of(v)).image)
    tool(page, editor, "Undo")
    v = canvas_value(page, editor)
    assert v["fill"] is None and not switch(page, editor).is_checked()


def test_the_photo_canvas_fills_paint_strokes_only_and_never_changes_the_mask_layer(page, tmp_path):
    editor = "edit-editor"
    page.get_by_role("tab", name="Edit a photo", exact=True).click()
    page.wait_for_selector(f"#{editor} canvas")
    time.sleep(0.5)
    assert not switch(page, editor).is_checked(), "off by default on a photo"
    # a photo 384 px wide: the closing radius is round(4.5) = 4 (halves to even, as Python rounds)
    y, x = np.mgrid[0:200, 0:384]
    photo = Image.fromarray(np.stack([x * 255 // 383, y * 255 // 199, 128 + 0 * x], -1).astype(np.uint8))
    upload(page, editor, photo, tmp_path, "photo")
    draw(page, editor, circle(100, 100, 60), size=(384, 200))  # switched off: no fill
    assert canvas_value(page, editor)["fill"] is None
    switch(page, editor).check()
    v = canvas_value(page, editor)
    want = outlines.fill_outlines(drawing_of(v), v["layers"][0][..., 3] > 0)
    assert want.holes == 1 and outlines.gap_for(384) == 4
    assert np.array_equal(shown_guide(v), want.image), "the page's fill is Python's (drawn = the paint layer)"

    tool(page, editor, "Mask only layer")
    draw(page, editor, circle(280, 100, 60), size=(384, 200))  # a closed loop on the mask-only layer
    before = canvas_value(page, editor)
    assert before["layers"][1][..., 3].any()
    assert np.array_equal(filled_pixels(before), filled_pixels(v)), "a mask-only loop is not filled"
    tool(page, editor, "Paint strokes layer")
    pick_color(page, editor, BLUE)
    draw(page, editor, [(250, 40), (330, 40), (330, 90), (250, 90), (250, 40)], size=(384, 200))  # over it
    after = canvas_value(page, editor)
    assert filled_pixels(after).sum() > filled_pixels(before).sum(), "the paint loop fills"
    assert np.array_equal(after["layers"][1], before["layers"][1]), "the mask-only layer is as it was"
    want = outlines.fill_outlines(drawing_of(after), after["layers"][0][..., 3] > 0)
    assert np.array_equal(shown_guide(after), want.image)


def test_the_bucket_fills_a_region_with_the_colour(page):
    editor = "paint-editor"
    switch(page, editor).uncheck()
    pick_color(page, editor, RED)
    draw(page, editor, [(60, 60), (196, 60), (196, 196), (60, 196), (60, 60)])
    outline = canvas_pixels(page, editor)
    pick_color(page, editor, BLUE)
    tool(page, editor, "Bucket")
    draw(page, editor, [(128, 128)])  # a click inside
    shown = canvas_pixels(page, editor)
    assert (shown[80:176, 80:176] == BLUE).all(), "the inside takes the colour"
    assert (shown[:40] == 255).all() and (shown[220:] == 255).all(), "the outside stays white"
    assert np.array_equal(shown[57:63, 80:176], outline[57:63, 80:176]), "the outline stays on top"
    assert (shown[57:90, 80:176].min(-1) < 215).all(), "no white seam between the outline and the new colour"
    v = canvas_value(page, editor)
    assert v["fill"] is None and (v["layers"][0][128, 128] == (*BLUE, 255)).all(), "a stroke of the paint layer"
    page.keyboard.press("Control+z")
    assert np.array_equal(canvas_pixels(page, editor), outline)


def test_the_hint_shows_for_thin_lines_and_not_for_filled_shapes(page):
    editor = "paint-editor"
    assert not hint_shown(page, editor), "nothing drawn, nothing to say"
    draw(page, editor, [(40, 70), (128, 110), (216, 70)])
    assert hint_shown(page, editor)
    assert page.locator(f"#{editor} .sdl-hint").inner_text().strip() == outlines.HINT, "Python's words"
    tool(page, editor, "Clear")
    brush_size(page, editor, 60)
    draw(page, editor, [(90, 128), (166, 128)])  # a broad brush paints an area
    assert not hint_shown(page, editor)
    tool(page, editor, "Clear")
    brush_size(page, editor, 10)
    draw(page, editor, circle(128, 128, 70))  # an outline, filled: an area again
    assert canvas_value(page, editor)["fill"] is not None and not hint_shown(page, editor)


def test_the_live_preview_gets_the_filled_guide(page, monkeypatch):
    """What the preview's server function receives (the app runs in this process): the outline filled."""
    from sdedit.studio import live

    editor, received = "paint-editor", []
    parse = live.parse_request

    def parse_and_keep(payload):
        request = parse(payload)
        received.append(request)
        return request

    monkeypatch.setattr(live, "parse_request", parse_and_keep)
    deadline = time.time() + 90
    while not page.evaluate("(id) => document.querySelector('#' + id + ' .sdl-live input').checked", editor):
        assert time.time() < deadline, "Live did not come on"
        time.sleep(0.2)
    pick_color(page, editor, RED)
    draw(page, editor, circle(128, 128, 80))
    deadline = time.time() + 20
    while time.time() < deadline:
        guides = [np.asarray(Image.open(io.BytesIO(r.guide)).convert("RGB")) for r in received]
        if guides and (guides[-1][100:156, 100:156] == RED).all():
            break
        time.sleep(0.2)
    assert guides, "no preview was asked for"
    assert guides[-1].shape == (256, 256, 3)
    assert (guides[-1][100:156, 100:156] == RED).all(), "the preview's guide has the outline's inside filled"
    assert received[-1].keep_details is True, "the switch asks the preview to keep the details too"


def test_the_api_with_fill_outlines_gives_the_pages_guide_and_picture(page, url, tmp_path):
    """The page's Generate (its canvas filled the outline) and `/edit` called with the unfilled drawing and
    fill_outlines=True: the same guide, the same picture. `/edit` with its old positional inputs still works."""
    from gradio_client import Client, handle_file

    from sdedit.recall import read_settings

    editor = "paint-editor"
    page.locator("#seed input").first.fill("7")
    page.locator("#title").click()
    pick_color(page, editor, RED)
    brush_size(page, editor, 4)  # a thin outline
    draw(page, editor, circle(128, 128, 75))
    v = canvas_value(page, editor)
    assert v["fill"] is not None
    result = generate(page)
    page.get_by_text("What the model gets").click()
    page.wait_for_selector("#guide img", timeout=10_000)
    page_guide = np.asarray(fetch_image(page, "#guide img").convert("RGB"))
    assert np.array_equal(page_guide, shown_guide(v)), "the model gets what the canvas shows"
    settings = read_settings(io.BytesIO(fetch_bytes(page, "#gallery img")))  # the file itself, its chunks too
    assert settings["fill_outlines"] is True and settings["keep_details"] is True, "the result records the switch"

    Image.fromarray(drawing_of(v)).save(tmp_path / "outline.png")  # the drawing as drawn, unfilled
    client = Client(url, verbose=False)
    old = [
        handle_file(str(tmp_path / "outline.png")),
        None,
        settings["model"],
        settings["strength"],
        settings["sampler"],
        settings["num_inference_steps"],
        settings["repeats"],
        1,
        settings["seed"],
        0.0,
        0,
        0,
    ]
    gallery, _, summary, meta, *_ = client.predict(*old, None, True, api_name="/edit")
    again = np.asarray(Image.open(gallery[0]["image"]).convert("RGB"))
    assert np.array_equal(again, np.asarray(result.convert("RGB"))), "the same picture as the page's"
    meta = meta if isinstance(meta, dict) else json.loads(meta)
    assert meta["fill_outlines"] == [True] and outlines.HINT not in summary, "filled: an area, no hint"
    # the old positional inputs (no strength map, no fill_outlines): the drawing as it is, unfilled
    gallery, _, summary, meta, *_ = client.predict(*old, api_name="/edit")
    meta = meta if isinstance(meta, dict) else json.loads(meta)
    assert meta["fill_outlines"] == [False]
    assert not np.array_equal(np.asarray(Image.open(gallery[0]["image"]).convert("RGB")), again)
    assert outlines.guide_hint(drawing_of(v)) and outlines.HINT in summary, "a thin outline: the hint comes with it"


def test_a_drawing_with_details_gets_them_kept_on_the_page_and_through_the_api(page, url, tmp_path):
    """A yellow disc with a dark smile: the page's Generate keeps the smile's details (its PNG says so), and
    `/edit` with the same drawing, fill_outlines and keep_details gives the same picture; an old client that
    sends neither gets the plain edit of the page's guide, another picture."""
    from gradio_client import Client, handle_file

    from sdedit.details import details
    from sdedit.recall import read_settings

    editor = "paint-editor"
    page.locator("#seed input").first.fill("5")
    page.locator("#title").click()
    pick_color(page, editor, YELLOW)
    brush_size(page, editor, 10)
    draw(page, editor, circle(128, 128, 80))  # an outline the switch fills: a disc
    pick_color(page, editor, DARK)
    draw(page, editor, [(96 + 4 * k, 150 + 12 * math.sin(k / 16 * math.pi)) for k in range(17)])  # the smile
    v = canvas_value(page, editor)
    guide = shown_guide(v)
    assert details(guide).any(), "the smile is a detail"
    result = np.asarray(generate(page).convert("RGB"))
    settings = read_settings(io.BytesIO(fetch_bytes(page, "#gallery img")))
    assert settings["keep_details"] is True and settings["fill_outlines"] is True

    Image.fromarray(drawing_of(v)).save(tmp_path / "smiley.png")
    Image.fromarray(guide).save(tmp_path / "guide.png")
    client = Client(url, verbose=False)
    s = settings
    first = [s["model"], s["strength"], s["sampler"], s["num_inference_steps"], s["repeats"], 1, s["seed"], 0.0, 0, 0]
    kept, *_ = client.predict(
        handle_file(str(tmp_path / "smiley.png")), None, *first, None, True, False, False, None, None, None, True,
        api_name="/edit",
    )  # fmt: skip
    assert np.array_equal(np.asarray(Image.open(kept[0]["image"]).convert("RGB")), result)
    plain, _, _, meta, *_ = client.predict(handle_file(str(tmp_path / "guide.png")), None, *first, api_name="/edit")
    meta = meta if isinstance(meta, dict) else json.loads(meta)
    assert meta["keep_details"] == [False], "an old client's default"
    assert not np.array_equal(np.asarray(Image.open(plain[0]["image"]).convert("RGB")), result)
