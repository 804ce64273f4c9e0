"""Recall in real Chromium: generate, download the result PNG with the gallery's Download button, drop it on
"Restore settings from a PNG", and the settings and seed come back; Generate with them gives the same image."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sdedit.recall import read_settings

from .app_server import running_app
from .browser_utils import (
    CHROMIUM,
    CHROMIUM_ARGS,
    draw,
    fetch_image,
    generate,
    open_app,
    pick_color,
    wait_for_result,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"),
]


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
    page.keyboard.press("Escape")

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

    before = page.locator("#gallery img").first.get_attribute("src")
    page.click("#generate")
    again = np.asarray(wait_for_result(page, before).convert("RGB"))
    assert np.array_equal(again, first)  # the same seed and settings regenerate the same image


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
