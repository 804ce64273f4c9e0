"""End-to-end: the app in real Chromium. Strokes are drawn with the mouse, Generate is clicked, and the
images the browser shows are read back and checked. Screenshots land in artifacts/screenshots/.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sdedit.studio import examples, guides
from tests.browser_utils import (
    PHONE,
    browser_marks,
    draw,
    generate,
    guide_and_mask,
    guide_image,
    open_app,
    pick_color,
    screenshot,
    wait_for_result,
)
from tests.helpers import rgb

pytestmark = browser_marks()
RED, BLUE = (249, 47, 96), (21, 101, 192)
EX = examples.EXAMPLES_DIR


@pytest.fixture
def page(browser, url):
    page = open_app(browser, url)
    yield page
    page.close()


def kept_region(mask: np.ndarray, feather: int = 2) -> np.ndarray:
    """Pixels the edit must leave alone: the zeros of the mask after the app's default feathering."""
    return guides.prepare_mask(mask.astype(np.float32), (mask.shape[1], mask.shape[0]), 0, feather) == 0


def test_paint_strokes_on_the_canvas_and_generate(page):
    screenshot(page, "laptop-start", full_page=False)
    pick_color(page, "paint-editor", RED)
    draw(page, "paint-editor", [(70, 80), (128, 190), (186, 80)])
    draw(page, "paint-editor", [(90, 70), (166, 70)])
    result = generate(page)
    assert result.size == (256, 256)
    guide = guide_image(page)
    red = (np.abs(guide.astype(int) - RED).max(-1) < 40).sum()
    assert red > 500, "the red strokes should be in the guide the model got"
    assert np.asarray(result.convert("RGB")).std() > 5, "a result, not a blank image"
    assert "1 result" in page.locator("#summary").inner_text()
    screenshot(page, "laptop-paint-result")


def test_edit_a_photo_changes_only_the_painted_pixels(page):
    page.get_by_role("tab", name="Edit a photo", exact=True).click()
    page.wait_for_selector("#edit-editor canvas")
    pick_color(page, "edit-editor", BLUE)
    draw(page, "edit-editor", [(90, 150), (170, 160)])
    result = np.asarray(generate(page).convert("RGB"))
    photo = rgb(EX / "photo-cat.png")  # the tab opens on this photo
    guide, mask = guide_and_mask(page)
    ys, xs = np.nonzero(mask)
    assert 200 < mask.sum() < 20_000 and 80 < xs.mean() < 180 and 130 < ys.mean() < 180, "mask = the stroke"
    kept = kept_region(mask)
    assert (guide[kept] == photo[kept]).all()
    assert (result[kept] == photo[kept]).all(), "pixels outside the strokes must not change"
    assert (result[mask] != photo[mask]).any()
    screenshot(page, "laptop-edit-result")


def test_one_click_example_then_use_as_new_guide(page):
    page.get_by_role("tab", name="Edit a photo", exact=True).click()
    page.locator("#edit-examples .thumbnail-item").first.click()  # "Blue car": loads and generates
    result = np.asarray(wait_for_result(page).convert("RGB"))
    photo = rgb(EX / "photo-car.png")
    strokes = np.asarray(Image.open(EX / examples.EDIT_EXAMPLES[0].layer))[..., 3] > 0
    kept = kept_region(strokes)
    assert (result[kept] == photo[kept]).all()
    screenshot(page, "laptop-example-result")
    page.click("#use-as-guide")  # the result becomes the photo to edit; paint on it and go again
    draw(page, "edit-editor", [(60, 60), (100, 60)])
    generate(page)
    guide, mask = guide_and_mask(page)
    kept = kept_region(mask)
    assert (guide[kept] == result[kept]).all(), "the new guide is the previous result"


def test_empty_canvas_gets_a_friendly_message(page):
    page.click("#generate")
    toast = page.get_by_text("The canvas is blank", exact=False).first
    toast.wait_for(timeout=20_000)
    assert "Traceback" not in page.content()
    screenshot(page, "laptop-empty-canvas-message", full_page=False)


def test_composite_tab_generates_and_keeps_the_base(page):
    page.get_by_role("tab", name="Composite", exact=True).click()
    result = np.asarray(generate(page).convert("RGB"))
    first = examples.COMPOSITE_EXAMPLES[0]  # the tab opens on its first example
    base = rgb(EX / first.image)
    _, mask = guide_and_mask(page)
    kept = kept_region(mask)
    assert 0 < mask.sum() <= first.scale**2 * mask.size  # only the pasted patch may change
    assert (result[kept] == base[kept]).all()
    screenshot(page, "laptop-composite-result")


def test_phone_width_is_usable(browser, url):
    page = open_app(browser, url, PHONE)
    try:
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= PHONE["width"] + 1, f"the page scrolls sideways on a phone ({width}px)"
        box = page.locator("#paint-editor canvas").first.bounding_box()
        assert box["width"] >= 300
        screenshot(page, "phone-start", full_page=False)
        draw(page, "paint-editor", [(60, 128), (196, 128)])
        page.locator("#generate").scroll_into_view_if_needed()
        assert page.locator("#generate").is_visible()
        result = generate(page)
        assert result.size == (256, 256)
        screenshot(page, "phone-result")
    finally:
        page.close()


def test_a_second_visitor_sees_where_it_stands_while_another_edit_runs(browser, url):
    """Two visitors at once. While the first one's long edit holds the model (its progress says the
    step and the time left), the second one's page says how many requests are ahead of it and about when it
    starts; once the first is cancelled the second gets its result. Nothing looks frozen."""
    import time

    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    long = client.submit(
        guide=handle_file(str(EX / "strokes-apple.png")),
        mask=None,
        model="fluent-emoji-64",
        strength=1.0,
        sampler="dpmpp",
        steps=400,
        repeats=1,
        num_samples=1,
        seed=0,
        snr=0.0,
        mask_dilation=0,
        mask_feather=0,
        api_name="/edit",
    )
    page = open_app(browser, url)
    try:
        deadline, desc = time.time() + 60, ""
        while "Denoising: step" not in desc and time.time() < deadline:
            progress = long.status().progress_data
            desc = (progress[0].desc or "") if progress else ""
            time.sleep(0.1)
        assert "Denoising: step" in desc and "/400" in desc, f"the long edit shows no progress: {desc!r}"
        page.get_by_role("tab", name="Composite", exact=True).click()
        page.click("#generate")
        gallery = page.locator("#gallery")
        try:
            gallery.get_by_text("ahead of yours", exact=False).wait_for(timeout=30_000)
        except Exception as exc:
            raise AssertionError(f"no position shown: {gallery.inner_text()!r}; first: {long.status()}") from exc
        text = gallery.inner_text()
        assert "Waiting for the model: 1 request ahead of yours" in text, text
        assert "starts in about" in text, text  # an estimate from the running edit's own progress
        screenshot(page, "laptop-queue-position", full_page=False)
        long.cancel()
        assert wait_for_result(page).size == (256, 256)
    finally:
        long.cancel()
        page.close()
