"""The studio's canvas (sdedit/studio/canvas.py) in real Chromium: its tools change the pixels they should.

Each test reads the canvas's own drawing surface back from the page (`canvas_pixels`) and compares pixels:
the eraser gives the background back where it passes, Clear empties the canvas, an upload puts the image's
exact pixels on it, and Ctrl+Z gives back the pixels from before the last stroke. Debian's Chromium via
Playwright, as tests/browser/test_browser.py.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image

from sdedit.studio import examples
from tests.browser_utils import browser_marks, canvas_pixels, draw, open_app, pick_color

pytestmark = browser_marks()
RED, BLUE = (249, 47, 96), (21, 101, 192)
WHITE = (255, 255, 255)
CAT = np.asarray(Image.open(examples.EXAMPLES_DIR / "photo-cat.png").convert("RGB")).astype(np.int16)


@pytest.fixture
def page(browser, url):
    page = open_app(browser, url)
    yield page
    page.close()


def near(image: np.ndarray, rgb, tol: int = 40) -> np.ndarray:
    return np.abs(image - np.asarray(rgb)).max(-1) < tol


def tool(page, editor: str, name: str) -> None:
    page.locator(f"#{editor}").get_by_role("button", name=name, exact=True).click()
    time.sleep(0.2)


def settled(page, editor: str) -> np.ndarray:
    """The canvas once it has drawn its last change (it redraws on the next animation frame)."""
    time.sleep(0.3)
    return canvas_pixels(page, editor)


def to_edit_tab(page) -> None:
    page.get_by_role("tab", name="Edit a photo", exact=True).click()
    page.wait_for_selector("#edit-editor canvas")
    time.sleep(0.5)


def test_the_eraser_gives_the_background_back_where_it_passes(page):
    pick_color(page, "paint-editor", RED)
    draw(page, "paint-editor", [(60, 128), (200, 128)])
    painted = settled(page, "paint-editor")
    assert near(painted[124:133, 70:190], RED).all(), "a red stroke across the middle"
    tool(page, "paint-editor", "Eraser")
    draw(page, "paint-editor", [(128, 60), (128, 200)])
    erased = settled(page, "paint-editor")
    assert (erased[124:133, 126:131] == 255).all(), "where the eraser passed, the white background is back"
    assert np.array_equal(erased[124:133, 70:110], painted[124:133, 70:110]), "the rest of the stroke stays"
    assert (erased[:, :120] == painted[:, :120]).all()

    # on a photo the eraser takes strokes off and gives the photo's own pixels back
    to_edit_tab(page)
    before = settled(page, "edit-editor")
    assert np.array_equal(before, CAT), "the photo, exactly"
    pick_color(page, "edit-editor", BLUE)
    draw(page, "edit-editor", [(40, 128), (216, 128)])
    assert near(settled(page, "edit-editor")[125:132, 60:200], BLUE).all()
    tool(page, "edit-editor", "Eraser")
    draw(page, "edit-editor", [(128, 90), (128, 170)])
    after = settled(page, "edit-editor")
    assert np.array_equal(after[122:135, 125:132], CAT[122:135, 125:132]), "the photo is back under the eraser"
    assert near(after[125:132, 60:110], BLUE).all(), "the stroke stays elsewhere"


def test_clear_empties_the_canvas_and_ctrl_z_brings_the_strokes_back(page):
    pick_color(page, "paint-editor", RED)
    draw(page, "paint-editor", [(60, 80), (200, 80)])
    draw(page, "paint-editor", [(60, 180), (200, 180)])
    painted = settled(page, "paint-editor")
    assert near(painted, RED).sum() > 1000
    tool(page, "paint-editor", "Clear")
    assert (settled(page, "paint-editor") == 255).all(), "Clear leaves a white canvas"
    page.keyboard.press("Control+z")
    assert np.array_equal(settled(page, "paint-editor"), painted), "Ctrl+Z undoes the clear"

    # on a photo, Clear takes every stroke off and keeps the photo
    to_edit_tab(page)
    draw(page, "edit-editor", [(40, 60), (216, 60)])
    assert not np.array_equal(settled(page, "edit-editor"), CAT)
    tool(page, "edit-editor", "Clear")
    assert np.array_equal(settled(page, "edit-editor"), CAT)


def test_ctrl_z_undoes_the_last_stroke_exactly(page):
    pick_color(page, "paint-editor", RED)
    draw(page, "paint-editor", [(70, 80), (128, 190), (186, 80)])
    one = settled(page, "paint-editor")
    pick_color(page, "paint-editor", BLUE)
    page.locator("#title").click()  # the keyboard focus leaves the toolbar (painting never takes it)
    draw(page, "paint-editor", [(60, 200), (200, 200)])
    two = settled(page, "paint-editor")
    assert near(two, BLUE).sum() > 500
    assert page.evaluate("() => document.activeElement === document.body")
    page.keyboard.press("Control+z")
    assert np.array_equal(settled(page, "paint-editor"), one), "the pixels from before the last stroke"
    page.keyboard.press("Control+z")
    assert (settled(page, "paint-editor") == 255).all(), "and before the first"
    # the Undo button does the same
    draw(page, "paint-editor", [(60, 200), (200, 200)])
    tool(page, "paint-editor", "Undo")
    assert (settled(page, "paint-editor") == 255).all()
    # while typing in a field, Ctrl+Z is the field's, not the canvas's
    draw(page, "paint-editor", [(60, 200), (200, 200)])
    drawn = settled(page, "paint-editor")
    page.locator("#seed input").first.click()
    page.keyboard.press("Control+z")
    assert np.array_equal(settled(page, "paint-editor"), drawn)


def test_an_upload_puts_the_image_on_the_canvas_pixel_for_pixel(page, tmp_path):
    rng = np.random.default_rng(0)
    square = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    Image.fromarray(square).save(tmp_path / "square.png")
    page.locator("#paint-editor .sdl-file").set_input_files(str(tmp_path / "square.png"))
    deadline = time.time() + 10
    while time.time() < deadline and not np.array_equal(canvas_pixels(page, "paint-editor"), square):
        time.sleep(0.2)
    assert np.array_equal(canvas_pixels(page, "paint-editor"), square)
    page.keyboard.press("Control+z")  # an upload is undone like a stroke
    assert (settled(page, "paint-editor") == 255).all()

    # a photo keeps its own size and pixels (up to 768 px a side)
    to_edit_tab(page)
    photo = rng.integers(0, 256, (150, 200, 3), dtype=np.uint8)
    Image.fromarray(photo).save(tmp_path / "photo.png")
    page.locator("#edit-editor .sdl-file").set_input_files(str(tmp_path / "photo.png"))
    deadline = time.time() + 10
    while time.time() < deadline and canvas_pixels(page, "edit-editor").shape != photo.shape:
        time.sleep(0.2)
    assert np.array_equal(settled(page, "edit-editor"), photo)
