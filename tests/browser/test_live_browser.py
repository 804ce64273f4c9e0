"""Live preview in real Chromium: strokes update the preview beside the canvas without any button,
undo brings the previous preview back, the layout keeps the preview in view, and the photo tab's preview keeps
the photo outside the strokes. Debian's Chromium via Playwright, as tests/browser/test_browser.py."""

from __future__ import annotations

import base64
import io
import time

import numpy as np
from PIL import Image

from sdedit.studio import examples
from tests.browser_utils import (
    PHONE,
    browser_marks,
    draw,
    fetch_image,
    open_app,
    pick_color,
    screenshot,
)

pytestmark = browser_marks()
RED, BLUE = (249, 47, 96), (21, 101, 192)
LAPTOP_1366 = {"width": 1366, "height": 768}


def preview_src(page, editor: str) -> str | None:
    return page.evaluate(
        "(id) => { const i = document.querySelector('#' + id + ' .sdl-img'); return i.hidden ? null : i.src; }", editor
    )


def wait_live_on(page, editor: str, timeout_s: float = 90) -> None:
    """Live is on once the server has measured a preview's cost (the first call loads and times the model)."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if page.evaluate("(id) => document.querySelector('#' + id + ' .sdl-live input').checked", editor):
            return
        time.sleep(0.2)
    why = page.locator(f"#{editor} .sdl-why").inner_text()
    raise TimeoutError(f"Live did not come on for #{editor}: {why!r}")


def wait_preview(page, editor: str, before: str | None, timeout_s: float = 30) -> str:
    """The preview's new picture (a data URL) once it differs from `before`."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        src = preview_src(page, editor)
        if src and src != before:
            return src
        time.sleep(0.05)
    raise TimeoutError(f"the preview of #{editor} did not change")


def pixels(page, editor: str) -> np.ndarray:
    return np.asarray(fetch_image(page, f"#{editor} .sdl-img").convert("RGB")).astype(np.int16)


def shown_canvas(page, editor: str) -> np.ndarray:
    """What the canvas shows (its drawing surface), as RGB."""
    url = page.evaluate("(id) => document.querySelector('#' + id + ' .sdl-view').toDataURL()", editor)
    data = base64.b64decode(url.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(np.int16)


def is_colour(image: np.ndarray, rgb) -> np.ndarray:
    return np.abs(image - np.asarray(rgb)).max(-1) < 40


def test_the_preview_follows_each_stroke_without_a_button_and_undo_brings_it_back(browser, url):
    page = open_app(browser, url, LAPTOP_1366)
    try:
        wait_live_on(page, "paint-editor")
        pick_color(page, "paint-editor", RED)
        draw(page, "paint-editor", [(70, 80), (128, 190), (186, 80)])
        first = wait_preview(page, "paint-editor", None)
        one = pixels(page, "paint-editor")
        assert one.std() > 5, "a picture, not a blank"
        pick_color(page, "paint-editor", BLUE)
        draw(page, "paint-editor", [(60, 200), (200, 200)])
        second = wait_preview(page, "paint-editor", first)
        two = pixels(page, "paint-editor")
        assert np.abs(two - one).mean() > 1, "the second stroke changed the preview"
        page.locator("#paint-editor").get_by_role("button", name="Undo", exact=True).click()
        wait_preview(page, "paint-editor", second)
        shown = shown_canvas(page, "paint-editor")
        assert not is_colour(shown, BLUE).any() and is_colour(shown, RED).sum() > 500, "undo took the blue stroke off"
        back = pixels(page, "paint-editor")
        assert np.abs(back - one).mean() < 0.5, "undo gives the first canvas back, and with it the first preview"
        assert not page.locator("#gallery img").count(), "no button was pressed: nothing was generated"
        # Generate still works from the same canvas
        page.click("#generate")
        page.wait_for_selector("#gallery img", timeout=120_000)
        screenshot(page, "laptop-live-preview", full_page=False)
    finally:
        page.close()


def test_the_preview_is_beside_the_canvas_on_a_laptop_and_under_it_on_a_phone(browser, url):
    page = open_app(browser, url, LAPTOP_1366)
    try:
        wait_live_on(page, "paint-editor")
        page.evaluate("() => window.scrollTo(0, 0)")
        canvas = page.locator("#paint-editor canvas").first.bounding_box()
        frame = page.locator("#paint-editor .sdl-frame").bounding_box()
        assert frame["x"] >= canvas["x"] + canvas["width"] - 1, "beside the canvas"
        assert frame["y"] + frame["height"] <= LAPTOP_1366["height"], "visible without scrolling at 1366x768"
        assert canvas["y"] + canvas["height"] <= LAPTOP_1366["height"]
    finally:
        page.close()
    page = open_app(browser, url, PHONE)
    try:
        canvas = page.locator("#paint-editor canvas").first.bounding_box()
        frame = page.locator("#paint-editor .sdl-frame").bounding_box()
        assert frame["y"] >= canvas["y"] + canvas["height"] - 1, "under the canvas on a phone"
        assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"] + 1
        screenshot(page, "phone-live-preview", full_page=False)
    finally:
        page.close()


def edit_tab_live_in_blue(page) -> None:
    """The Edit tab open on its example photo, Live on, the brush blue."""
    page.get_by_role("tab", name="Edit a photo", exact=True).click()
    page.wait_for_selector("#edit-editor canvas")
    wait_live_on(page, "edit-editor")
    pick_color(page, "edit-editor", BLUE)


def test_the_photo_preview_changes_the_strokes_and_keeps_the_photo(browser, url):
    page = open_app(browser, url, LAPTOP_1366)
    try:
        edit_tab_live_in_blue(page)
        draw(page, "edit-editor", [(90, 150), (170, 160)])
        before = wait_preview(page, "edit-editor", None)
        out = pixels(page, "edit-editor")
        photo = np.asarray(Image.open(examples.EXAMPLES_DIR / "photo-cat.png").convert("RGB")).astype(np.int16)
        assert out.shape == photo.shape
        far = np.ones(photo.shape[:2], bool)
        far[110:200, 60:200] = False  # the stroke and the mask's feathering around it
        assert np.abs(out - photo)[far].mean() < 3, "outside the strokes the preview is the photo"
        assert np.abs(out - photo)[140:170, 95:165].mean() > 10, "the stroke's region changes"
        # the mask-only layer marks more area: the preview follows it too
        page.locator("#edit-editor").get_by_role("button", name="Mask only layer").click()
        draw(page, "edit-editor", [(40, 40), (80, 50)])
        wait_preview(page, "edit-editor", before)
        screenshot(page, "laptop-live-photo", full_page=False)
    finally:
        page.close()


def test_the_photo_preview_keeps_pixels_painted_strength_0(browser, url):
    """The Strength layer reaches the preview: a thick stroke whose left half is painted strength 0 keeps that
    half in the preview (as Generate does), while the right half changes."""
    page = open_app(browser, url, LAPTOP_1366)
    try:
        edit_tab_live_in_blue(page)
        page.locator("#edit-editor input[aria-label='Brush size']").fill("40")
        draw(page, "edit-editor", [(40, 150), (216, 150)])
        before = wait_preview(page, "edit-editor", None)
        free_before = pixels(page, "edit-editor")
        page.locator("#edit-editor button[aria-label='Strength layer']").click()
        page.locator("#edit-editor button[aria-label='Strength 0']").click()
        draw(page, "edit-editor", [(40, 150), (120, 150)])
        wait_preview(page, "edit-editor", before)
        out = pixels(page, "edit-editor")
        kept = np.zeros(out.shape[:2], bool)
        kept[140:160, 50:110] = True  # well inside the strength-0 part of the stroke
        assert np.abs(out - np.asarray(BLUE))[kept].mean() < 6, "strength 0: the blue stroke is kept (up to JPEG)"
        assert np.abs(free_before - np.asarray(BLUE))[kept].mean() > 10, "before the strength stroke it changed"
        free = np.zeros(out.shape[:2], bool)
        free[140:160, 150:205] = True
        assert np.abs(out - np.asarray(BLUE))[free].mean() > 10, "strength 1 (unpainted): the stroke changes"
    finally:
        page.close()


def test_erase_clear_and_upload_each_update_the_preview(browser, url, tmp_path):
    """Every finished change of the canvas updates the preview, not only a brush stroke."""
    page = open_app(browser, url, LAPTOP_1366)
    try:
        wait_live_on(page, "paint-editor")
        pick_color(page, "paint-editor", RED)
        draw(page, "paint-editor", [(60, 128), (196, 128)])
        painted_src = wait_preview(page, "paint-editor", None)
        painted = pixels(page, "paint-editor")

        page.locator("#paint-editor").get_by_role("button", name="Eraser", exact=True).click()
        draw(page, "paint-editor", [(128, 40), (128, 216)])
        erased_src = wait_preview(page, "paint-editor", painted_src)
        erased = pixels(page, "paint-editor")
        h, w = erased.shape[:2]
        band = np.abs(erased - painted)[h // 3 : 2 * h // 3, w * 2 // 5 : w * 3 // 5]  # where the eraser cut the line
        assert band.mean() > 0.5, "the erased canvas has its own preview"

        page.locator("#paint-editor").get_by_role("button", name="Clear", exact=True).click()
        deadline = time.time() + 30
        while time.time() < deadline and preview_src(page, "paint-editor") is not None:
            time.sleep(0.05)
        assert preview_src(page, "paint-editor") is None, "a cleared canvas has no picture to preview"
        assert page.locator("#paint-editor .sdl-note").inner_text().strip(), "the frame says why, in words"

        rng = np.random.default_rng(1)
        blob = np.full((256, 256, 3), 255, np.uint8)
        blob[64:192, 64:192] = rng.integers(0, 256, 3, dtype=np.uint8)
        Image.fromarray(blob).save(tmp_path / "upload.png")
        page.locator("#paint-editor .sdl-file").set_input_files(str(tmp_path / "upload.png"))
        uploaded_src = wait_preview(page, "paint-editor", None)
        assert uploaded_src not in (painted_src, erased_src)
        assert pixels(page, "paint-editor").std() > 5, "the uploaded picture is previewed"
    finally:
        page.close()
