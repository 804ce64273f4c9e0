"""The studio on latent (Stable Diffusion) models in real Chromium: the prompt box appears only for text models and
the live preview follows it, the paint canvas takes the model's size, a model made for a GPU asks before it runs
on a CPU, and a dropped result PNG of a text model puts its prompt back. Tiny random SD models served as configured
models (`tiny_sd.studio_config_dir`); the logic and the API are tests/studio/test_latent_studio.py."""

from __future__ import annotations

import time

import numpy as np
import pytest

from sdedit.studio import jobs, live, models
from sdedit.studio.restore import input_pngs
from tests import tiny_sd
from tests.app_server import running_app
from tests.browser.test_live_browser import LAPTOP_1366, preview_src, wait_live_on, wait_preview
from tests.browser.test_recall_browser import drop_file
from tests.browser_utils import browser_marks, draw, generate, open_app, pick_color, screenshot, wait_for_result

pytestmark = browser_marks()
RED = (249, 47, 96)


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    """The app with the embedded default and the tiny text models (`tiny-sd`, `tiny-sd-512`, `tiny-sd-gpu`)."""
    folder = tiny_sd.studio_config_dir(tmp_path_factory.mktemp("studio-sd"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SDEDIT_CONFIG_DIR", str(folder))
        with running_app() as u:
            yield u
        models.drop_pipelines()
        live._POLICIES.clear()


def choose_model(page, name: str) -> None:
    """Pick a model in the model box (by its label, as the page lists it) and wait until it is in use."""
    label = {name: label for label, name in models.model_choices()}[name]
    page.locator("#model input").first.click()
    page.get_by_role("option", name=label, exact=True).click()
    deadline = time.time() + 60
    while time.time() < deadline:
        if model_in_use(page) == name:
            return
        time.sleep(0.2)
    raise TimeoutError(f"the page did not switch to {name}")


def model_in_use(page) -> str | None:
    """The model the paint canvas's Live settings follow (what the page switched to once the model loaded)."""
    return page.evaluate("() => (window.__sdeditPageProps && window.__sdeditPageProps.live || {}).model || null")


def visible(page, elem_id: str) -> bool:
    loc = page.locator(f"#{elem_id}")
    return loc.count() > 0 and loc.first.is_visible()


def canvas_side(page) -> tuple[int, int]:
    size = page.evaluate(
        "() => { const v = document.querySelector('#paint-editor .sdl').sdlValue(); return [v.width, v.height]; }"
    )
    return tuple(size)


def events_while_idle(page, seconds: float = 3.0) -> int:
    """The page's event calls to the server while nobody touches it (a settled page makes none)."""
    calls = []

    def count(request):
        if "/gradio_api/run/predict" in request.url or "/gradio_api/queue/join" in request.url:
            calls.append(request.url)

    page.on("request", count)
    time.sleep(seconds)
    page.remove_listener("request", count)
    return len(calls)


def type_prompt(page, text: str) -> None:
    box = page.locator("#prompt textarea").first
    box.fill(text)
    box.press("Tab")  # the change reaches the page's settings on blur as well as on input


def test_the_prompt_box_appears_only_for_text_models_and_the_live_preview_follows_it(browser, url):
    page = open_app(browser, url, LAPTOP_1366)
    try:
        assert not visible(page, "prompt") and not visible(page, "run-on-cpu"), "the pixel page has no prompt box"
        choose_model(page, "tiny-sd")
        page.wait_for_selector("#prompt textarea", state="visible", timeout=20_000)
        assert "follows the prompt" in page.locator("#model-note").inner_text()
        time.sleep(2)
        assert events_while_idle(page) == 0, "the controls the model set settle (no change-event loop)"
        wait_live_on(page, "paint-editor")
        pick_color(page, "paint-editor", RED)
        draw(page, "paint-editor", [(70, 80), (128, 190), (186, 80)])
        blank = wait_preview(page, "paint-editor", None)
        type_prompt(page, "a red cat")
        cat = wait_preview(page, "paint-editor", blank)
        type_prompt(page, "a blue sea")
        sea = wait_preview(page, "paint-editor", cat)
        assert sea != cat, "another prompt, another preview"
        type_prompt(page, "a red cat")
        assert wait_preview(page, "paint-editor", sea) == cat, "the same prompt and canvas: the same preview"
        page.click("#generate")
        wait_for_result(page)
        assert "“a red cat”" in page.locator("#summary").inner_text()
        screenshot(page, "laptop-text-model", full_page=False)
        choose_model(page, "fluent-emoji-64")
        deadline = time.time() + 20
        while time.time() < deadline and visible(page, "prompt"):
            time.sleep(0.2)
        assert not visible(page, "prompt"), "a model without text shows no prompt box"
    finally:
        page.close()


def test_the_paint_canvas_takes_the_models_size(browser, url):
    page = open_app(browser, url, LAPTOP_1366)
    try:
        assert canvas_side(page) == (256, 256)
        pick_color(page, "paint-editor", RED)
        draw(page, "paint-editor", [(60, 128), (196, 128)])
        choose_model(page, "tiny-sd-512")
        deadline = time.time() + 20
        while time.time() < deadline and canvas_side(page) != (512, 512):
            time.sleep(0.2)
        assert canvas_side(page) == (512, 512), "a 512 px model paints on a 512 px canvas"
        time.sleep(2)
        assert events_while_idle(page) == 0, "the controls the model set settle (no change-event loop)"
        shown = page.evaluate("() => document.querySelector('#paint-editor .sdl-view').width")
        assert shown == 512
        value = page.evaluate("() => document.querySelector('#paint-editor .sdl').sdlValue().layers[0]")
        assert value, "the stroke came along"
        choose_model(page, "fluent-emoji-64")
        deadline = time.time() + 20
        while time.time() < deadline and canvas_side(page) != (256, 256):
            time.sleep(0.2)
        assert canvas_side(page) == (256, 256)
    finally:
        page.close()


def test_a_gpu_model_says_so_and_asks_before_it_runs_on_a_cpu(browser, url):
    page = open_app(browser, url)
    try:
        choose_model(page, "tiny-sd-gpu")
        page.wait_for_selector("#run-on-cpu", state="visible", timeout=20_000)
        time.sleep(2)
        assert events_while_idle(page) == 0, "the controls the model set settle (no change-event loop)"
        assert "Needs a GPU" in page.locator("#model-note").inner_text()
        deadline = time.time() + 30
        why = ""
        while time.time() < deadline and "Live is off for this model on a CPU" not in why:
            why = page.locator("#paint-editor .sdl-why").inner_text()
            time.sleep(0.2)
        assert "latent-cpu.json" in why, why
        pick_color(page, "paint-editor", RED)
        draw(page, "paint-editor", [(70, 80), (128, 190), (186, 80)])
        page.click("#generate")
        page.wait_for_selector(".toast-body.error", timeout=20_000)
        words = page.locator(".toast-body.error").first.inner_text()
        assert "needs a GPU" in words and "Run it on this CPU anyway" in words, words
        assert not page.locator("#gallery img").count(), "nothing ran"
        page.locator(".toast-body.error").first.click()  # let it go
        page.locator("#run-on-cpu input").check()
        time.sleep(0.5)
        page.click("#generate")
        page.wait_for_selector("#gallery img", timeout=120_000)
        assert preview_src(page, "paint-editor") is None, "Live stayed off"
    finally:
        page.close()


def test_a_dropped_text_model_png_puts_its_prompt_back(browser, url, tmp_path):
    from PIL import Image, ImageDraw

    guide = Image.new("RGB", (256, 256), "white")
    ImageDraw.Draw(guide).ellipse((60, 60, 196, 196), fill=RED)
    settings = jobs.EditSettings(
        model="tiny-sd", strength=0.5, sampler="ddim", steps=4, seed=9, prompt="a lighthouse", guidance_scale=4.5
    )
    result = jobs.run_edit(guide, None, settings, animate=False, batch=False)
    (path,) = result.png_files(input_pngs(guide))
    page = open_app(browser, url, LAPTOP_1366)
    try:
        drop_file(page, "#restore-png", path)
        page.wait_for_selector("#prompt textarea", state="visible", timeout=30_000)
        deadline = time.time() + 20
        while time.time() < deadline and page.locator("#prompt textarea").input_value() != "a lighthouse":
            time.sleep(0.2)
        assert page.locator("#prompt textarea").input_value() == "a lighthouse"
        page.get_by_text("Advanced", exact=True).click()
        assert float(page.locator("#guidance input[type=number]").first.input_value()) == 4.5
        assert model_in_use(page) == "tiny-sd"
        again = np.asarray(generate(page).convert("RGB"))
        assert (again == np.asarray(Image.open(path).convert("RGB"))).all(), "Generate redoes it, prompt and all"
    finally:
        page.close()
