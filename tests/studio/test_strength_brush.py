"""The strength brush in the app: the Edit tab's Strength layer becomes a strength map,
and the public /edit endpoint takes one as a new last parameter (existing calls keep working)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from sdedit.studio import examples, jobs
from sdedit.studio.tabs.edit import photo_guide_and_strength
from tests.app_server import running_app
from tests.browser_utils import (
    CHROMIUM,
    CHROMIUM_ARGS,
    browser_test,
    draw,
    fetch_image,
    generate,
    guide_image,
    open_app,
    pick_color,
)
from tests.helpers import rgb

EX = examples.EXAMPLES_DIR
FAST = dict(strength=0.6, sampler="ddim", steps=10, repeats=1)


def layer(h, w, box, color, alpha=255):
    a = np.zeros((h, w, 4), np.uint8)
    y0, y1, x0, x1 = box
    a[y0:y1, x0:x1, :3] = color
    a[y0:y1, x0:x1, 3] = alpha
    return a


def test_the_strength_layer_becomes_a_map_and_joins_the_mask():
    photo = np.full((64, 64, 4), 200, np.uint8)
    paint = layer(64, 64, (10, 30, 10, 50), (255, 0, 0))
    strength = layer(64, 64, (10, 30, 30, 50), (0, 0, 0))  # level 0 over half of the paint
    strength[40:50, 10:20] = (128, 128, 128, 255)  # level ~0.5 where nothing is painted
    read = {"background": photo, "layers": [paint, np.zeros_like(paint), strength]}
    _, mask, smap = photo_guide_and_strength(read)
    m, s = np.asarray(mask) > 0, np.asarray(smap)
    assert m[15, 15] and m[45, 15] and not m[60, 60]  # paint, and the strength stroke above 0, may change
    assert s[15, 40] == 0 and s[15, 15] == 255 and s[45, 15] == 128
    no_strength = {"background": photo, "layers": [paint, np.zeros_like(paint), np.zeros_like(paint)]}
    assert photo_guide_and_strength(no_strength)[2] is None


def test_a_strength_map_of_zeros_where_painted_keeps_those_pixels():
    guide = Image.open(EX / "photo-car.png").convert("RGB")
    w, h = guide.size
    smap = np.full((h, w), 255, np.uint8)
    smap[:, : w // 2] = 0
    s = jobs.EditSettings(seed=3, strength_map=Image.fromarray(smap, "L"), **FAST)
    r = jobs.run_edit(guide, None, s, animate=False)
    out = np.asarray(r.images[0].convert("RGB"))
    assert np.array_equal(out[:, : w // 2], np.asarray(guide)[:, : w // 2])
    assert not np.array_equal(out[:, w // 2 :], np.asarray(guide)[:, w // 2 :])
    assert r.metadata["strength_map"] == [True]


def test_edit_endpoint_takes_a_strength_map_after_its_old_parameters(tmp_path):
    from gradio_client import Client, handle_file

    guide = Image.open(EX / "photo-car.png").convert("RGB")
    w, h = guide.size
    smap = np.full((h, w), 255, np.uint8)
    smap[: h // 2] = 0
    path = tmp_path / "map.png"
    Image.fromarray(smap, "L").save(path)
    with running_app() as url:
        client = Client(url, verbose=False)
        api = client.view_api(return_format="dict", print_info=False)
        params = api["named_endpoints"]["/edit"]["parameters"]
        assert params[12]["parameter_name"] == "strength_map", "appended after the 12 old inputs"
        assert all(p["parameter_has_default"] for p in params[12:]), "it and every input after it are optional"
        args = [handle_file(str(EX / "photo-car.png")), None, "fluent-emoji-64", 0.6, "ddim", 10, 1, 1, 5, 0.0, 0, 0]
        old, *_ = client.predict(*args, api_name="/edit")  # an existing client: no map
        new, *_ = client.predict(*args, handle_file(str(path)), api_name="/edit")
        out, base = rgb(new[0]["image"]), np.asarray(guide)
        assert np.array_equal(out[: h // 2], base[: h // 2])
        assert not np.array_equal(out[h // 2 :], base[h // 2 :])
        assert not np.array_equal(rgb(old[0]["image"])[: h // 2], base[: h // 2])


@browser_test
def test_in_chromium_pixels_painted_strength_0_are_unchanged_in_the_result():
    from playwright.sync_api import sync_playwright

    with running_app() as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = open_app(browser, url)
        page.get_by_role("tab", name="Edit a photo", exact=True).click()
        page.wait_for_selector("#edit-editor canvas")
        pick_color(page, "edit-editor", (21, 101, 192))
        page.locator("#edit-editor input[aria-label='Brush size']").fill("40")
        draw(page, "edit-editor", [(40, 150), (216, 150)])  # a thick blue stroke across the photo
        page.locator("#edit-editor button[aria-label='Strength layer']").click()
        page.locator("#edit-editor button[aria-label='Strength 0']").click()
        draw(page, "edit-editor", [(40, 150), (120, 150)])  # its left half: strength 0, kept exactly
        result = np.asarray(generate(page).convert("RGB"))
        guide = guide_image(page)
        page.wait_for_selector("#strength-map img", timeout=10_000)
        smap = np.asarray(fetch_image(page, "#strength-map img").convert("L"))
        mask = np.asarray(fetch_image(page, "#mask img").convert("L")) > 127
        kept_in_stroke = (smap == 0) & mask
        assert kept_in_stroke.sum() > 500, "strength 0 was painted over part of the stroke"
        assert (result[smap == 0] == guide[smap == 0]).all(), "pixels painted strength 0 must not change"
        free = (smap == 255) & mask
        assert free.sum() > 500 and (result[free] != guide[free]).any(), "the rest of the stroke does change"
        browser.close()
