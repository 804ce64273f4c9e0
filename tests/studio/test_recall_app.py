"""Recall in the app: every result PNG the app serves carries its settings (sdedit.recall), and dropping one
on "Restore a result from its PNG" puts them and its guide back."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sdedit.errors import InputError
from sdedit.recall import read_settings
from sdedit.studio import examples, jobs
from sdedit.studio.restore import settings_from_png
from tests.app_server import running_app
from tests.helpers import rgb

EX = examples.EXAMPLES_DIR
FAST = dict(strength=0.45, sampler="ddim", steps=10, repeats=1)


def test_result_pngs_carry_their_settings_and_restore_reads_them_back():
    r = jobs.run_edit(EX / "strokes-heart.png", None, jobs.EditSettings(num_samples=2, seed=21, **FAST), animate=False)
    files = r.png_files()
    for i, path in enumerate(files):
        s = read_settings(path)
        assert s["seed"] == 21 + i and s["sampler"] == "ddim" and s["strength"] == 0.45
        assert s["num_inference_steps"] == 10 and s["repeats"] == 1 and s["model"] == "fluent-emoji-64"
        assert s["masked"] is False and s["strength_map"] is False
        assert s["num_images"] == 2 and s["sample"] == i and s["mask_dilation"] == 0 and s["mask_feather"] == 0
    restored = settings_from_png(files[1])
    keys = ("model", "strength", "sampler", "steps", "repeats", "seed", "samples", "sample", "own_seed")
    assert {k: restored[k] for k in keys} == {
        "model": "fluent-emoji-64",
        "strength": 0.45,
        "sampler": "ddim",
        "steps": 10,
        "repeats": 1,
        "seed": 21,  # the call's first seed: with 2 samples, Generate gives both again
        "samples": 2,
        "sample": 1,
        "own_seed": 22,
    }


def test_a_png_from_before_samples_and_guides_were_carried_still_restores(tmp_path):
    """Old PNGs: only the text chunk of the first version (no samples, no mask refinement, no guide chunks)."""
    from sdedit.recall import save_png
    from sdedit.studio.restore import inputs_from_png

    old = {"model": "fluent-emoji-64", "sampler": "ddim", "strength": 0.4, "num_inference_steps": 10, "repeats": 1,
           "seed": 9, "masked": False, "strength_map": False}  # fmt: skip
    path = save_png(Image.new("RGB", (8, 8), (1, 2, 3)), tmp_path / "old.png", old)
    s = settings_from_png(path)
    assert s["seed"] == s["own_seed"] == 9 and "samples" not in s and "mask_dilation" not in s
    assert inputs_from_png(path) == {}


def _edit_tab_request(tmp_path):
    """A request as the Edit tab makes one: a photo with a stroke, the mask, and a strength map with a 0 half."""
    from sdedit.studio.tabs.edit import photo_guide_and_strength

    photo = np.asarray(Image.open(EX / "photo-cat.png").convert("RGBA"))
    paint = np.zeros_like(photo)
    paint[20:40, 10:50] = (30, 90, 200, 255)
    strength = np.zeros_like(photo)
    strength[10:60, 30:60] = (0, 0, 0, 255)  # kept exactly, over part of the stroke
    strength[40:60, 5:30] = (128, 128, 128, 255)  # half the t0, joins the mask
    guide, mask, smap = photo_guide_and_strength(
        {"background": photo, "layers": [paint, np.zeros_like(photo), strength]}
    )
    paths = []
    for name, image in (("guide", guide), ("mask", mask), ("map", smap)):
        image.save(tmp_path / f"{name}.png")
        paths.append(str(tmp_path / f"{name}.png"))
    return paths


def test_a_result_png_carries_its_guide_mask_and_map_and_restores_all_of_it_so_generate_redoes_it(tmp_path):
    """Save -> read -> restore: the settings, seed, samples and mask refinement come back, the guide, mask and
    strength map go back on the Edit tab's canvas exactly, and the restored request gives the same images."""
    from sdedit.studio.page import build_page
    from sdedit.studio.restore import input_pngs, inputs_from_png

    guide, mask, smap = _edit_tab_request(tmp_path)
    settings = jobs.EditSettings(num_samples=2, seed=40, mask_dilation=3, mask_feather=1, strength_map=smap, **FAST)
    r = jobs.run_edit(guide, mask, settings, animate=False)
    files = r.png_files(input_pngs(guide, mask, smap))
    carried = inputs_from_png(files[1])
    assert set(carried) == {"guide", "mask", "strength_map"}
    for name, path in (("guide", guide), ("mask", mask), ("strength_map", smap)):
        assert np.array_equal(np.asarray(carried[name]), np.asarray(Image.open(path))), name

    page = build_page()
    c, res = page.controls, page.results
    edit_tab = page.by_id["edit"]
    out = page.restore_result(settings_from_png(files[1]), carried, "fluent-emoji-64")
    assert out[res.seed] == 40 and out[res.num_samples] == 2 and out[res.strength] == 0.45
    assert out[c.mask_dilation] == 3 and out[c.mask_feather] == 1 and out[c.steps] == 10
    assert out[page.selected_tab] == "edit"
    # what Generate reads from the restored canvas is what the model got
    assert out[edit_tab.canvas]["mode"] == "photo"  # the canvas's own props travel with its new value
    g2, m2, s2 = edit_tab.guide_and_strength({edit_tab.canvas: out[edit_tab.canvas]["value"]})
    assert np.array_equal(np.asarray(g2), np.asarray(Image.open(guide).convert("RGB")))
    assert np.array_equal(np.asarray(m2), np.asarray(Image.open(mask)))
    assert np.array_equal(np.asarray(s2), np.asarray(Image.open(smap)))
    again = jobs.run_edit(
        g2,
        m2,
        jobs.EditSettings(
            model=out[c.model],
            strength=out[res.strength],
            sampler="ddim",
            steps=out[c.steps],
            repeats=out[c.repeats],
            num_samples=out[res.num_samples],
            seed=out[res.seed],
            mask_dilation=out[c.mask_dilation],
            mask_feather=out[c.mask_feather],
            strength_map=s2,
        ),
        animate=False,
    )
    for a, b in zip(again.images, r.images, strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_what_a_result_carries_is_bounded_and_all_or_nothing(tmp_path):
    """A guide that is not a PNG file is encoded only when small; a guide is never carried without its mask."""
    from sdedit.studio.restore import MAX_ENCODED_PIXELS, input_pngs

    small, big = Image.new("RGB", (64, 48), (9, 9, 9)), Image.new("RGB", (2000, 1100), (9, 9, 9))
    assert MAX_ENCODED_PIXELS < 2000 * 1100
    big.save(tmp_path / "big.jpg")
    assert set(input_pngs(small)) == {"guide"}
    assert input_pngs(str(tmp_path / "big.jpg")) == {}  # seconds to encode: the PNG carries its settings only
    assert input_pngs(small, str(tmp_path / "big.jpg")) == {}  # no guide without its mask
    big.save(tmp_path / "big.png")
    assert set(input_pngs(str(tmp_path / "big.png"))) == {"guide"}  # a PNG file goes in as it is


def test_a_result_without_a_mask_goes_back_on_the_paint_canvas_at_its_own_size():
    from sdedit.studio.canvas import read_canvas
    from sdedit.studio.page import build_page
    from sdedit.studio.restore import input_pngs, inputs_from_png

    guide = str(EX / "strokes-heart.png")
    r = jobs.run_edit(guide, None, jobs.EditSettings(seed=5, **FAST), animate=False)
    path = r.png_files(input_pngs(guide))[0]
    carried = inputs_from_png(path)
    assert set(carried) == {"guide"}
    page = build_page()
    paint = page.by_id["paint"]
    out = page.restore_guide(carried)
    assert out[page.selected_tab] == "paint" and page.by_id["edit"].canvas not in out
    restored = np.asarray(paint.guide({paint.canvas: out[paint.canvas]["value"]})[0])
    assert np.array_equal(restored, rgb(guide))
    assert read_canvas(out[paint.canvas]["value"])["layers"] == []


def test_a_png_without_settings_is_refused_in_words(tmp_path):
    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(plain)
    with pytest.raises(InputError, match="carries no SDEdit Studio settings"):
        settings_from_png(plain)


def test_the_page_restores_a_dropped_png_into_the_controls():
    import gradio as gr

    from sdedit.studio.page import build_page

    page = build_page()
    c, r = page.controls, page.results
    result = jobs.run_edit(EX / "strokes-heart.png", None, jobs.EditSettings(seed=7, **FAST), animate=False)
    out = page.restore_png(str(result.png_files()[0]), "fluent-emoji-64")
    assert out[c.model] == out[c.loaded_model] == "fluent-emoji-64"
    assert out[r.strength] == 0.45 and out[r.seed] == 7 and out[c.steps] == 10 and out[c.repeats] == 1
    assert out[c.sampler]["value"] == "ddim" if isinstance(out[c.sampler], dict) else out[c.sampler].value == "ddim"
    assert page.restore_png(None, "fluent-emoji-64") == gr.skip()


def test_the_served_png_is_the_written_file_with_its_chunks():
    """Through the real HTTP API: the gallery's PNG is served as written, text chunks included."""
    from gradio_client import Client, handle_file

    with running_app() as url:
        client = Client(url, verbose=False)
        gallery, *_ = client.predict(
            handle_file(str(EX / "strokes-heart.png")),
            None,
            "fluent-emoji-64",
            0.45,
            "ddim",
            10,
            1,
            1,
            33,
            0.0,
            0,
            2,
            api_name="/edit",
        )
        s = read_settings(gallery[0]["image"])
        assert s["seed"] == 33 and s["strength"] == 0.45 and s["sampler"] == "ddim"
        from sdedit.studio.restore import inputs_from_png

        carried = inputs_from_png(gallery[0]["image"])  # and what the model got: here, the guide alone
        assert set(carried) == {"guide"} and np.array_equal(np.asarray(carried["guide"]), rgb(EX / "strokes-heart.png"))
        again, *_ = client.predict(
            handle_file(str(EX / "strokes-heart.png")),
            None,
            s["model"],
            s["strength"],
            s["sampler"],
            s["num_inference_steps"],
            s["repeats"],
            1,
            s["seed"],
            0.0,
            0,
            2,
            api_name="/edit",
        )
        assert np.array_equal(rgb(again[0]["image"]), rgb(gallery[0]["image"]))


def test_history_strip_keeps_results_newest_first_with_their_guides():
    from sdedit.studio import history

    class Opened:  # what Gradio's gallery hands over with type="pil": an image opened from its cache
        def __init__(self, filename):
            self.filename = filename

    h = history.add_results([], [(Opened("/a.png"), "seed 1"), ("/b.png", "seed 2")], "/guide1.png")
    h = history.add_results(h, [(Opened("/c.png"), "seed 3")], "/guide2.png")
    assert [x["image"] for x in h] == ["/c.png", "/a.png", "/b.png"]
    assert [x["guide"] for x in h] == ["/guide2.png", "/guide1.png", "/guide1.png"]
    assert history.strip(h)[0] == ("/c.png", "seed 3")
    assert len(history.add_results(h * 40, [("/d.png", "")], None)) == history.MAX_HISTORY
    assert history.before_after("/g.png", "/r.png") == ("/g.png", "/r.png")
    assert history.before_after(None, "/r.png") is None


def test_the_strip_the_browser_keeps_is_small_checked_and_names_no_server_file():
    from sdedit.studio import history
    from sdedit.studio.restore import input_pngs

    guide = str(EX / "strokes-heart.png")
    r = jobs.run_edit(guide, None, jobs.EditSettings(seed=3, **FAST), animate=False)
    h = history.add_results([], [(str(p), "seed 3") for p in r.png_files(input_pngs(guide))], guide)
    kept = history.saved(h)
    assert len(kept) == 1 and set(kept[0]) == {"settings", "thumb", "guide_thumb", "caption", "inputs"}
    assert set(kept[0]["inputs"]) == {"guide"}  # painted strokes: small enough to keep
    assert kept[0]["settings"]["seed"] == 3 and kept[0]["thumb"].startswith("data:image/jpeg;base64,")
    back = history.from_saved(kept)
    assert back[0]["image"] is None and back[0]["settings"] == kept[0]["settings"]
    assert back[0]["inputs"] == kept[0]["inputs"]
    shown = history.strip(back)[0][0]
    assert shown.size == (128, 128)  # the thumbnail, decoded on the server
    # the oldest go first: at most SAVED_MAX entries and SAVED_BYTES of JSON
    many = history.saved(h * 100)
    assert len(many) == history.SAVED_MAX
    big = [{**h[0], "thumb": h[0]["thumb"] + "A" * 50_000} for _ in range(20)]
    assert len(history.saved(big)) < 20
    # what a visitor could have written there: paths, bad types, huge or broken thumbnails are dropped
    hostile = [
        {**kept[0], "image": "/etc/passwd", "guide": "/etc/passwd"},
        {**kept[0], "settings": {"seed": "not a number"}},
        {**kept[0], "thumb": "file:///etc/passwd"},
        {**kept[0], "thumb": "data:image/jpeg;base64," + "A" * 100_000},
        "text",
        {**kept[0], "inputs": {"guide": "/etc/passwd"}},  # kept as an entry, without a guide
        {**kept[0], "inputs": {"guide": "data:image/png;base64," + "A" * 100_000}},
    ]
    back = history.from_saved(hostile)
    assert len(back) == 3 and all(b["image"] is None and b["guide"] is None for b in back)
    assert back[0]["inputs"] == kept[0]["inputs"] and back[1]["inputs"] is None and back[2]["inputs"] is None
    assert history.from_saved("not a list") == [] and history.from_saved(None) == []


def test_a_history_entry_whose_file_was_swept_still_restores_its_settings_and_seed(tmp_path):
    import gradio as gr

    from sdedit.studio import history
    from sdedit.studio.page import build_page
    from sdedit.studio.restore import input_pngs

    r = jobs.run_edit(EX / "strokes-heart.png", None, jobs.EditSettings(seed=11, **FAST), animate=False)
    copy = tmp_path / "result.png"
    copy.write_bytes(r.png_files(input_pngs(str(EX / "strokes-heart.png")))[0].read_bytes())
    h = history.add_results([], [(str(copy), "seed 11")], str(EX / "strokes-heart.png"))
    page = build_page()
    pick = page.history.pick
    full = pick(h, "fluent-emoji-64", gr.SelectData(None, {"index": 0, "value": None}))
    assert full[page.results.seed] == 11 and full[page.selected_tab] == "paint"  # its guide back on Paint
    copy.unlink()  # Gradio's cache swept it: the entry's own copy (a painted guide is small enough to keep)
    out = pick(h, "fluent-emoji-64", gr.SelectData(None, {"index": 0, "value": None}))
    assert out[page.results.seed] == 11 and out[page.results.strength] == 0.45
    paint = page.by_id["paint"]
    assert out[page.selected_tab] == "paint"
    assert np.array_equal(
        np.asarray(paint.guide({paint.canvas: out[paint.canvas]["value"]})[0]), rgb(EX / "strokes-heart.png")
    )
    h[0]["inputs"] = None  # a photo's guide is too large to keep: settings and seed only
    out = pick(h, "fluent-emoji-64", gr.SelectData(None, {"index": 0, "value": None}))
    assert out[page.results.seed] == 11 and page.selected_tab not in out


def test_a_click_on_the_sweep_grid_gives_that_columns_t0():
    from sdedit.studio.history import sweep_strengths, t0_at

    strengths = sweep_strengths({"headers": ["t0", "L2"], "data": [[0.2, 1.0], [0.4, 2.0], [0.6, 3.0]]})
    assert strengths == [0.2, 0.4, 0.6]
    width = 4 * 128  # the guide's column, then one per t0
    assert t0_at(10, width, strengths) is None  # the guide
    assert t0_at(130, width, strengths) == 0.2
    assert t0_at(300, width, strengths) == 0.4
    assert t0_at(511, width, strengths) == 0.6
