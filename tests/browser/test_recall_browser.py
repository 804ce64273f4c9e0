"""Recall in real Chromium: generate, download the result PNG with the gallery's Download button, drop it on
"Restore a result from its PNG", and the settings, seed and guide come back (the guide on the canvas it was
painted on, the mask and strength layers with it); Generate then gives the same image. The history strip
survives a reload of the page."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sdedit.recall import read_settings
from sdedit.studio.restore import inputs_from_png
from tests.app_server import running_app
from tests.browser_utils import (
    CHROMIUM,
    CHROMIUM_ARGS,
    browser_marks,
    canvas_pixels,
    draw,
    fetch_image,
    generate,
    guide_image,
    open_app,
    pick_color,
    screenshot,
    wait_for_result,
)

pytestmark = browser_marks()


@pytest.fixture(scope="module")
def page():
    from playwright.sync_api import sync_playwright

    with running_app() as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = open_app(browser, url)
        yield page
        browser.close()


def set_number(page, selector: str, value) -> None:
    box = page.locator(f"{selector} input[type=number]").first
    box.fill(str(value))
    box.press("Enter")


def drop_file(page, selector: str, path) -> None:
    """Drag a file from the desktop onto a component: a real `drop` event with the file in its DataTransfer."""
    data = list(Path(path).read_bytes())
    transfer = page.evaluate_handle(
        """([bytes, name]) => {
            const dt = new DataTransfer();
            dt.items.add(new File([new Uint8Array(bytes)], name, { type: "image/png" }));
            return dt;
        }""",
        [data, Path(path).name],
    )
    target = page.locator(f"{selector} button, {selector} [data-testid=upload]").first
    for kind in ("dragenter", "dragover", "drop"):
        target.dispatch_event(kind, {"dataTransfer": transfer})


def value_of(page, selector: str) -> str:
    return page.locator(f"{selector} input").first.input_value()


def test_download_a_result_drop_it_back_and_the_settings_and_seed_return(page, tmp_path):
    pick_color(page, "paint-editor", (249, 47, 96))
    draw(page, "paint-editor", [(70, 80), (128, 190), (186, 80)])
    set_number(page, "#strength", 0.55)
    first = np.asarray(generate(page).convert("RGB"))

    page.locator("#gallery img").first.click()  # the preview, with its Download button
    with page.expect_download() as info:
        page.locator("#gallery button[aria-label=Download]").first.click()
    path = tmp_path / "result.png"
    info.value.save_as(path)
    s = read_settings(path)
    assert np.array_equal(np.asarray(Image.open(path).convert("RGB")), first)  # served as written
    assert s["strength"] == 0.55 and s["seed"] >= 0 and s["model"] == "fluent-emoji-64"
    guide = np.asarray(inputs_from_png(path)["guide"]).astype(np.int16)
    painted = canvas_pixels(page, "paint-editor")  # (stroke edges: the browser's and the server's rounding)
    assert np.abs(painted - guide).max() <= 3, "the PNG carries the painted guide"
    page.keyboard.press("Escape")

    # paint something else, and go to another tab
    page.locator("#paint-editor").get_by_role("button", name="Clear", exact=True).click()
    pick_color(page, "paint-editor", (0, 166, 237))
    draw(page, "paint-editor", [(40, 40), (200, 60)])
    assert not np.array_equal(canvas_pixels(page, "paint-editor"), guide)
    page.get_by_role("tab", name="Photo → painting", exact=True).click()

    # change everything the PNG restores
    set_number(page, "#strength", 0.9)
    page.locator("#seed input").first.fill("-1")
    page.locator("#seed input").first.press("Enter")
    page.get_by_text("Sampler and steps").click()
    set_number(page, "#steps", 33)
    set_number(page, "#repeats", 2)
    time.sleep(0.5)
    assert value_of(page, "#seed") == "-1" and page.locator("#steps input[type=number]").first.input_value() == "33"

    drop_file(page, "#restore-png", path)
    deadline = time.time() + 20
    while time.time() < deadline and value_of(page, "#seed") != str(s["seed"]):
        time.sleep(0.2)
    assert value_of(page, "#seed") == str(s["seed"])
    assert float(page.locator("#strength input[type=number]").first.input_value()) == pytest.approx(0.55)
    assert int(page.locator("#steps input[type=number]").first.input_value()) == s["num_inference_steps"]
    assert int(page.locator("#repeats input[type=number]").first.input_value()) == s["repeats"]
    # the guide is back on the Paint canvas, which is in front again
    page.wait_for_selector("#paint-editor canvas", state="visible", timeout=10_000)
    deadline = time.time() + 10
    while time.time() < deadline and not np.array_equal(canvas_pixels(page, "paint-editor"), guide):
        time.sleep(0.2)
    assert np.array_equal(canvas_pixels(page, "paint-editor"), guide)

    before = page.locator("#gallery img").first.get_attribute("src")
    page.click("#generate")
    again = np.asarray(wait_for_result(page, before).convert("RGB"))
    assert np.array_equal(again, first)  # the same seed and settings regenerate the same image


def slider_value(page, elem_id: str) -> float:
    return float(page.locator(f"#{elem_id} input[type=number]").first.input_value())


def test_a_photo_edit_with_a_strength_layer_and_two_samples_comes_back_whole(page, tmp_path):
    """The Edit tab: a stroke, strength 1/2 over part of it, 2 samples, mask dilation 2; the second result's PNG
    brings back the photo, the mask and strength layers, the samples, the first seed and the dilation, and
    Generate gives that second image again."""
    page.get_by_role("tab", name="Edit a photo", exact=True).click()
    page.wait_for_selector("#edit-editor canvas", state="visible")
    time.sleep(0.5)
    pick_color(page, "edit-editor", (21, 101, 192))
    draw(page, "edit-editor", [(70, 150), (190, 150)])
    root = page.locator("#edit-editor")
    root.get_by_role("button", name="Strength layer").click()
    root.get_by_role("button", name="Strength 0.5", exact=True).click()
    draw(page, "edit-editor", [(160, 120), (160, 180)])
    root.get_by_role("button", name="Paint strokes layer").click()
    set_number(page, "#num-samples", 2)
    set_number(page, "#seed", 500)
    page.get_by_text("Advanced", exact=True).click()
    set_number(page, "#mask-dilation", 2)
    time.sleep(0.5)
    page.locator("#edit-editor").scroll_into_view_if_needed()
    screenshot(page, "recall-photo-before-generate", full_page=False)
    generate(page)
    deadline = time.time() + 60
    while time.time() < deadline and page.locator("#gallery img").count() < 2:
        time.sleep(0.2)
    time.sleep(0.5)
    second = np.asarray(fetch_image(page, "#gallery img >> nth=1").convert("RGB"))

    page.locator("#gallery img").nth(1).click()
    with page.expect_download() as info:
        page.locator("#gallery button[aria-label=Download]").first.click()
    path = tmp_path / "second.png"
    info.value.save_as(path)
    page.keyboard.press("Escape")
    assert np.array_equal(np.asarray(Image.open(path).convert("RGB")), second)
    s = read_settings(path)
    assert s["seed"] == 501 and s["sample"] == 1 and s["num_images"] == 2 and s["mask_dilation"] == 2
    assert s["masked"] and s["strength_map"]
    carried = inputs_from_png(path)
    assert set(carried) == {"guide", "mask", "strength_map"}
    guide = np.asarray(carried["guide"]).astype(np.int16)
    untouched = (np.asarray(carried["mask"]) == 0) & (np.asarray(carried["strength_map"]) == 255)

    # another photo, other settings, another tab
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (200, 200, 3), dtype=np.uint8)).save(tmp_path / "other.png")
    page.locator("#edit-editor .sdl-file").set_input_files(str(tmp_path / "other.png"))
    set_number(page, "#num-samples", 1)
    set_number(page, "#seed", 7)
    set_number(page, "#mask-dilation", 0)
    page.get_by_role("tab", name="Paint", exact=True).click()
    time.sleep(0.5)

    drop_file(page, "#restore-png", path)
    deadline = time.time() + 20
    while time.time() < deadline and value_of(page, "#seed") != "500":
        time.sleep(0.2)
    assert value_of(page, "#seed") == "500", "the call's first seed"
    assert slider_value(page, "num-samples") == 2 and slider_value(page, "mask-dilation") == 2
    page.wait_for_selector("#edit-editor canvas", state="visible", timeout=10_000)
    deadline = time.time() + 10
    while time.time() < deadline and canvas_pixels(page, "edit-editor").shape != guide.shape:
        time.sleep(0.2)
    time.sleep(0.5)
    shown = canvas_pixels(page, "edit-editor")
    assert np.array_equal(shown[untouched], guide[untouched]), "the photo is back"
    assert not np.array_equal(shown[~untouched], guide[~untouched]), "with the mask and strength layers on it"

    before = page.locator("#gallery img").first.get_attribute("src")
    page.click("#generate")
    wait_for_result(page, before)
    deadline = time.time() + 60
    while time.time() < deadline and page.locator("#gallery img").count() < 2:
        time.sleep(0.2)
    time.sleep(0.5)
    again = np.asarray(fetch_image(page, "#gallery img >> nth=1").convert("RGB"))
    assert np.array_equal(again, second), "the second sample again, bit for bit"
    set_number(page, "#num-samples", 1)
    set_number(page, "#mask-dilation", 0)
    page.get_by_role("tab", name="Paint", exact=True).click()
    time.sleep(0.5)


def test_history_strip_before_after_slider_and_sweep_clicks(page):
    draw(page, "paint-editor", [(60, 200), (200, 200)])
    page.locator("#seed input").first.fill("101")
    page.locator("#seed input").first.press("Enter")
    set_number(page, "#strength", 0.5)
    first = np.asarray(generate(page).convert("RGB"))
    page.locator("#seed input").first.fill("202")
    page.locator("#seed input").first.press("Enter")
    set_number(page, "#strength", 0.7)
    generate(page)
    deadline = time.time() + 20
    while time.time() < deadline and page.locator("#history img").count() < 2:
        time.sleep(0.2)
    # the newest result is filed (the before/after shows it) before the history is clicked: filing it sets the
    # before/after, and must not land after the click's
    newest = page.locator("#gallery img").first.get_attribute("src")
    deadline = time.time() + 20
    while time.time() < deadline and page.locator("#before-after img").nth(1).get_attribute("src") != newest:
        time.sleep(0.1)
    thumbs = page.locator("#history img")
    assert thumbs.count() >= 2
    assert "seed 202" in page.locator("#history").inner_text()
    assert page.locator("#before-after img").count() == 2  # the guide and the newest result

    page.locator("#history button.thumbnail-item").nth(1).click()  # the older one: seed 101 at t0 0.5
    deadline = time.time() + 20
    while time.time() < deadline and value_of(page, "#seed") != "101":
        time.sleep(0.2)
    assert value_of(page, "#seed") == "101"
    assert float(page.locator("#strength input[type=number]").first.input_value()) == pytest.approx(0.5)
    time.sleep(1.0)
    after = page.locator("#before-after img").nth(1)
    shown = np.asarray(fetch_image(page, "#before-after img >> nth=1").convert("RGB"))
    assert after.count() and np.array_equal(shown, first)

    # the t0 sweep: a click on a column sets t0 to its value
    page.get_by_text("t0 sweep: faithful").click()
    page.locator("#strengths textarea, #strengths input").first.fill("0.3, 0.8")
    page.click("#sweep")
    page.wait_for_selector("#sweep-grid img", timeout=120_000)
    time.sleep(1.0)
    grid = page.locator("#sweep-grid img").first
    box = grid.bounding_box()
    grid.click(position={"x": box["width"] * 5 / 6, "y": box["height"] / 2})  # the last column: t0 = 0.8
    deadline = time.time() + 20
    while time.time() < deadline:
        if float(page.locator("#strength input[type=number]").first.input_value()) == pytest.approx(0.8):
            break
        time.sleep(0.2)
    assert float(page.locator("#strength input[type=number]").first.input_value()) == pytest.approx(0.8)


def test_the_history_strip_survives_a_reload_and_its_entries_still_restore(page):
    page.get_by_role("tab", name="Paint", exact=True).click()
    time.sleep(0.5)
    set_number(page, "#seed", 303)
    set_number(page, "#strength", 0.6)
    page.locator("#paint-editor").get_by_role("button", name="Clear", exact=True).click()
    draw(page, "paint-editor", [(80, 60), (180, 200)])
    result = np.asarray(generate(page).convert("RGB"))
    guide = guide_image(page).astype(np.int16)
    deadline = time.time() + 20
    while time.time() < deadline and "seed 303" not in page.locator("#history").inner_text():
        time.sleep(0.2)
    count = page.locator("#history img").count()
    assert count >= 3

    page.reload()
    page.wait_for_selector("#paint-editor canvas", timeout=60_000)
    deadline = time.time() + 20
    while time.time() < deadline and page.locator("#history img").count() < count:
        time.sleep(0.2)
    assert page.locator("#history img").count() == count, "the whole strip is back"
    assert "seed 303" in page.locator("#history").inner_text()
    assert value_of(page, "#seed") == "-1"

    page.locator("#history button.thumbnail-item").first.click()  # the newest: seed 303 at t0 0.6
    deadline = time.time() + 20
    while time.time() < deadline and value_of(page, "#seed") != "303":
        time.sleep(0.2)
    assert value_of(page, "#seed") == "303"
    assert float(page.locator("#strength input[type=number]").first.input_value()) == pytest.approx(0.6)
    assert page.locator("#before-after img").count() == 2  # its guide and result thumbnails
    # a painted guide is small enough for the browser to keep: it is back on the canvas, and Generate redoes it
    deadline = time.time() + 10
    while time.time() < deadline and not np.array_equal(canvas_pixels(page, "paint-editor"), guide):
        time.sleep(0.2)
    assert np.array_equal(canvas_pixels(page, "paint-editor"), guide)
    assert np.array_equal(np.asarray(generate(page).convert("RGB")), result)
