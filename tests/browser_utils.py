"""Helpers for driving the app in real Chromium through Playwright (Debian's /usr/bin/chromium).

Gradio's ImageEditor draws on two stacked canvases; the image sits centred in them at the zoom the editor
shows (e.g. "125%"), so image pixel (x, y) is at centre + (x - w/2, y - h/2) * zoom on the page.
"""

from __future__ import annotations

import base64
import io
import os
import re
import time
from pathlib import Path

import numpy as np
from PIL import Image

CHROMIUM = os.environ.get("SDEDIT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def browser_marks() -> list:
    """The marks of a module of browser tests: browser, and slow (each launches Chromium against a running app,
    seconds). Without Debian's Chromium they are skipped with a reason, except where SDEDIT_REQUIRE_BROWSER=1
    (.ci/run sets it after installing Chromium): there a missing browser is a failure at collection, not a
    silent skip."""
    import pytest

    if os.environ.get("SDEDIT_REQUIRE_BROWSER") == "1" and not os.path.exists(CHROMIUM):
        raise RuntimeError(f"SDEDIT_REQUIRE_BROWSER=1 but there is no Chromium at {CHROMIUM}")
    return [
        pytest.mark.browser,
        pytest.mark.slow,
        pytest.mark.skipif(
            not os.path.exists(CHROMIUM), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"
        ),
    ]


def browser_test(fn):
    """`browser_marks()` on one test, in a module whose other tests need no browser."""
    for mark in browser_marks():
        fn = mark(fn)
    return fn


SCREENSHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}

_FETCH = """async (src) => {
  const blob = await (await fetch(src)).blob();
  return await new Promise((done) => {
    const r = new FileReader();
    r.onload = () => done(r.result);
    r.readAsDataURL(blob);
  });
}"""


def screenshot(page, name: str, full_page: bool = True) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def open_app(browser, url: str, viewport: dict = LAPTOP):
    """A fresh page on the app, once the paint canvas is ready."""
    page = browser.new_page(viewport=viewport)
    page.goto(url)
    page.wait_for_selector("#paint-editor canvas", timeout=60_000)
    time.sleep(1.0)  # the editor sizes its canvas after the first frame
    return page


def pick_color(page, editor: str, rgb: tuple[int, int, int]) -> None:
    """Choose a palette swatch, then close the popup (an open popup swallows the next stroke)."""
    root = page.locator(f"#{editor}")
    root.get_by_role("button", name="Color", exact=True).click()
    root.locator(f'button.color[style*="rgb({rgb[0]}, {rgb[1]}, {rgb[2]})"]').first.click()
    root.get_by_role("button", name="Brush", exact=True).click()
    time.sleep(0.3)


def image_to_page(page, editor: str, size: tuple[int, int]):
    """A function mapping image pixel (x, y) of the editor's background to page coordinates."""
    root = page.locator(f"#{editor}")
    root.evaluate("e => e.scrollIntoView({block: 'center'})")  # the whole canvas on screen, or strokes are lost
    time.sleep(0.3)
    box = root.locator("canvas").first.bounding_box()
    match = re.search(r"(\d+)%", root.inner_text())
    zoom = int(match.group(1)) / 100 if match else 1.0
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    w, h = size
    return lambda x, y: (cx + (x - w / 2) * zoom, cy + (y - h / 2) * zoom)


def wait_until_idle(page, elem_id: str, timeout_s: float = 30) -> None:
    """Wait until a component shows no "processing" overlay (a stroke made while it loads is lost)."""
    time.sleep(0.5)  # let a just-triggered event show its overlay first
    tracker = page.locator(f"#{elem_id} [data-testid=status-tracker]").first
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if not tracker.count() or "hide" in (tracker.get_attribute("class") or ""):
            time.sleep(0.5)  # the editor draws its new background on the next frames
            return
        time.sleep(0.2)
    raise TimeoutError(f"#{elem_id} is still busy")


def draw(page, editor: str, points: list[tuple[float, float]], size: tuple[int, int] = (256, 256)) -> None:
    """One brush stroke through `points`, given in the background image's pixels."""
    wait_until_idle(page, editor)
    to_page = image_to_page(page, editor, size)
    page.mouse.move(*to_page(*points[0]))
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(*to_page(x, y), steps=4)
    page.mouse.up()
    time.sleep(0.3)


def canvas_pixels(page, editor: str) -> np.ndarray:
    """What the studio's canvas `#editor` shows, read back from its drawing surface, as (H, W, 3) int16 RGB."""
    url = page.evaluate("(id) => document.querySelector('#' + id + ' .sdl-view').toDataURL()", editor)
    data = base64.b64decode(url.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(np.int16)


def fetch_bytes(page, selector: str) -> bytes:
    """The file an <img> shows, fetched inside the page (so it is exactly what the browser got), as bytes."""
    return fetch_src(page, page.locator(selector).first.get_attribute("src"))


def fetch_src(page, src: str) -> bytes:
    """The file at `src` (an <img>'s source), fetched inside the page, as bytes."""
    return base64.b64decode(page.evaluate(_FETCH, src).split(",", 1)[1])


def fetch_image(page, selector: str) -> Image.Image:
    """The image an <img> shows, fetched inside the page (so it is exactly what the browser got)."""
    return Image.open(io.BytesIO(fetch_bytes(page, selector)))


def generate(page, timeout_s: float = 120) -> Image.Image:
    """Press Generate and wait for a new first result; return it."""
    before = page.locator("#gallery img").first.get_attribute("src") if page.locator("#gallery img").count() else None
    page.click("#generate")
    return wait_for_result(page, before, timeout_s)


def wait_for_result(page, before: str | None = None, timeout_s: float = 120) -> Image.Image:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        errors = page.locator(".toast-body.error")
        if errors.count():
            raise AssertionError(f"the app showed an error: {errors.first.inner_text()}")
        imgs = page.locator("#gallery img")
        if imgs.count() and imgs.first.get_attribute("src") not in (None, before):
            time.sleep(0.5)
            return fetch_image(page, "#gallery img")
        time.sleep(0.25)
    raise TimeoutError("no result appeared in the gallery")


def _open_model_inputs(page) -> None:
    if not page.locator("#guide img").count():
        page.get_by_text("What the model gets").click()
        page.wait_for_selector("#guide img", timeout=10_000)


def guide_image(page) -> np.ndarray:
    """The guide the model got (from the "What the model gets" accordion)."""
    _open_model_inputs(page)
    return np.asarray(fetch_image(page, "#guide img").convert("RGB"))


def guide_and_mask(page) -> tuple[np.ndarray, np.ndarray]:
    """The guide and the mask the model got; the mask as bool, True = may change."""
    guide = guide_image(page)
    page.wait_for_selector("#mask img", timeout=10_000)
    return guide, np.asarray(fetch_image(page, "#mask img").convert("L")) > 127
