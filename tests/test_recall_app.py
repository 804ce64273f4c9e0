"""Recall in the app: every result PNG the app serves carries its settings (sdedit.recall), and dropping one
on "Restore settings from a PNG" puts them back into the controls (issue 13, point 3)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sdedit.errors import InputError
from sdedit.recall import read_settings
from sdedit.studio import examples, jobs
from sdedit.studio.restore import settings_from_png

from .app_server import running_app

EX = examples.EXAMPLES_DIR
FAST = dict(strength=0.45, sampler="ddim", steps=10, repeats=1)


def rgb(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_result_pngs_carry_their_settings_and_restore_reads_them_back():
    r = jobs.run_edit(EX / "strokes-heart.png", None, jobs.EditSettings(num_samples=2, seed=21, **FAST), animate=False)
    files = r.png_files()
    for i, path in enumerate(files):
        s = read_settings(path)
        assert s["seed"] == 21 + i and s["sampler"] == "ddim" and s["strength"] == 0.45
        assert s["num_inference_steps"] == 10 and s["repeats"] == 1 and s["model"] == "fluent-emoji-64"
        assert s["masked"] is False and s["strength_map"] is False
    restored = settings_from_png(files[1])
    assert {k: restored[k] for k in ("model", "strength", "sampler", "steps", "repeats", "seed")} == {
        "model": "fluent-emoji-64",
        "strength": 0.45,
        "sampler": "ddim",
        "steps": 10,
        "repeats": 1,
        "seed": 22,
    }


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
    out = c.restore_settings(str(result.png_files()[0]), "fluent-emoji-64")
    assert out[c.model] == out[c.loaded_model] == "fluent-emoji-64"
    assert out[r.strength] == 0.45 and out[r.seed] == 7 and out[c.steps] == 10 and out[c.repeats] == 1
    assert out[c.sampler]["value"] == "ddim" if isinstance(out[c.sampler], dict) else out[c.sampler].value == "ddim"
    assert c.restore_settings(None, "fluent-emoji-64") == gr.skip()


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


def test_a_click_on_the_sweep_grid_gives_that_columns_t0():
    from sdedit.studio.history import sweep_strengths, t0_at

    strengths = sweep_strengths({"headers": ["t0", "L2"], "data": [[0.2, 1.0], [0.4, 2.0], [0.6, 3.0]]})
    assert strengths == [0.2, 0.4, 0.6]
    width = 4 * 128  # the guide's column, then one per t0
    assert t0_at(10, width, strengths) is None  # the guide
    assert t0_at(130, width, strengths) == 0.2
    assert t0_at(300, width, strengths) == 0.4
    assert t0_at(511, width, strengths) == 0.6
