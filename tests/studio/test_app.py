"""The app: its logic (sdedit.studio) directly, then its API through gradio_client against the launched app.

The server runs the real embedded model with few steps, so every request takes a second or two on a CPU.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from sdedit.configs import REPO_ROOT, default_config
from sdedit.errors import InputError, ModelNotFoundError
from sdedit.masks import dilate
from sdedit.studio import examples, guides, jobs, limits, models, progress
from sdedit.studio.tabs.composite import COMPOSITE_EXAMPLES
from sdedit.studio.tabs.edit import EDIT_EXAMPLES
from sdedit.studio.tabs.paint import paint_examples
from sdedit.studio.tabs.painting import PAINTING_EXAMPLES
from tests.helpers import call_edit, rgb

EX = examples.EXAMPLES_DIR
FAST = dict(strength=0.5, sampler="dpmpp", steps=8, repeats=1)  # 4 denoising steps


# ----- sdedit.studio, without a server ---------------------------------------------------------------------


def test_bundled_examples_exist():
    cfg = default_config()
    for rel in cfg.examples:
        assert (REPO_ROOT / rel).is_file(), rel
    for ex in EDIT_EXAMPLES + COMPOSITE_EXAMPLES + PAINTING_EXAMPLES:
        for name in (ex.image, ex.layer, ex.patch):
            if name:
                assert (EX / name).is_file(), name
    assert len(paint_examples(cfg)) == len(cfg.examples) == 4


def test_paint_guide_flattens_layers_and_refuses_a_blank_canvas():
    blank = np.full((32, 32, 4), 255, np.uint8)
    with pytest.raises(InputError, match="blank"):
        guides.paint_guide({"background": blank, "layers": [np.zeros((32, 32, 4), np.uint8)], "composite": None})
    with pytest.raises(InputError, match="empty"):
        guides.paint_guide({"background": None, "layers": [], "composite": None})
    layer = np.zeros((32, 32, 4), np.uint8)
    layer[4:8, 4:8] = (10, 20, 30, 255)
    layer[20:24, 20:24] = (99, 99, 99, 0)  # colour under alpha 0 must not leak into the guide
    guide = np.asarray(guides.paint_guide({"background": blank, "layers": [layer], "composite": None}))
    assert guide.shape == (32, 32, 3)
    assert (guide[5, 5] == (10, 20, 30)).all()
    assert (guide[21, 21] == 255).all()


def test_photo_guide_mask_is_every_painted_pixel_and_the_mask_layer_keeps_colours():
    photo = np.zeros((20, 30, 4), np.uint8)
    photo[..., :3], photo[..., 3] = 100, 255
    paint = np.zeros_like(photo)
    paint[2:5, 2:6] = (255, 0, 0, 255)
    mask_only = np.zeros_like(photo)
    mask_only[10:12, 20:25] = (0, 255, 0, 255)
    guide, mask = guides.photo_guide({"background": photo, "layers": [paint, mask_only], "composite": None})
    g, m = np.asarray(guide), np.asarray(mask) > 0
    assert (g[3, 3] == (255, 0, 0)).all()
    assert (g[11, 21] == 100).all()  # the mask layer marks, it does not paint
    assert m.sum() == 3 * 4 + 2 * 5 and m[3, 3] and m[11, 21]
    with pytest.raises(InputError, match="nothing is marked"):
        guides.photo_guide({"background": photo, "layers": [np.zeros_like(photo)], "composite": None})
    with pytest.raises(InputError, match="upload a photo"):
        guides.photo_guide({"background": None, "layers": [paint], "composite": None})


def test_composite_guide_pastes_the_patch_and_masks_only_it():
    base = Image.open(EX / "photo-desert.png")
    patch = Image.open(EX / "photo-moon.png")
    guide, mask = guides.composite_guide(base, patch, x=0.25, y=0.25, scale=0.25, cutout=True)
    m = np.asarray(mask) > 0
    assert guide.size == base.size and 0 < m.sum() < 64 * 64
    ys, xs = np.nonzero(m)
    assert 32 <= xs.mean() <= 96 and 32 <= ys.mean() <= 96
    g, b = np.asarray(guide), rgb(EX / "photo-desert.png")
    assert (g[~m] == b[~m]).all()
    _, rect = guides.composite_guide(base, patch, x=0.25, y=0.25, scale=0.25, cutout=False)
    assert (np.asarray(rect) > 0).sum() == 64 * 64
    with pytest.raises(InputError, match="covers nothing"):
        guides.composite_guide(base, Image.new("RGB", (40, 40), "white"), cutout=True)
    _, corner = guides.composite_guide(base, patch, x=1.0, y=1.0, scale=0.5, cutout=False)
    assert (np.asarray(corner) > 0).sum() == 64 * 64  # the quarter that lands on the base
    with pytest.raises(InputError, match="patch"):
        guides.composite_guide(base, None)


def test_painting_has_few_flat_colours():
    painting = guides.make_painting(Image.open(EX / "photo-cat.png"), colors=5)
    assert painting.size == (256, 256)
    assert len(np.unique(np.asarray(painting).reshape(-1, 3), axis=0)) <= 5
    with pytest.raises(InputError):
        guides.make_painting(None)


def test_models_offered_are_the_configured_ones_and_custom_ids_need_the_operator(monkeypatch):
    names = [name for _, name in models.model_choices()]
    assert names[0] == default_config().name
    assert "ddpm-church-256" in names
    monkeypatch.delenv("SDEDIT_ALLOW_CUSTOM_MODELS", raising=False)
    with pytest.raises(InputError, match="turned off"):
        models.resolve_model("someone/some-model")
    with pytest.raises(InputError):
        models.resolve_model("/etc")
    monkeypatch.setenv("SDEDIT_ALLOW_CUSTOM_MODELS", "1")
    assert models.resolve_model("someone/some-model") == "someone/some-model"
    assert models.resolve_model(None) == names[0]


def test_a_hub_model_that_cannot_load_gives_a_clear_message_and_the_ui_keeps_the_current_model():
    import gradio as gr

    from sdedit.studio.page import build_page

    controls = build_page().controls
    with pytest.raises(ModelNotFoundError, match=r"can't be reached|offline|not in the local cache"):
        models.get_pipeline("ddpm-church-256")
    out = controls.model_settings("ddpm-church-256", "fluent-emoji-64")
    assert out[controls.model] == out[controls.loaded_model] == "fluent-emoji-64"  # back to the model in use
    assert "Could not load ddpm-church-256" in out[controls.note]
    assert controls.model_settings("fluent-emoji-64", "fluent-emoji-64") == gr.skip()


def test_default_steps_and_hint_follow_the_model_config():
    cfg = default_config()
    assert models.default_steps(cfg.name, cfg.defaults.sampler) == cfg.defaults.num_inference_steps
    assert models.default_steps(cfg.name, "reference") == cfg.paper.num_inference_steps
    assert "12 denoising steps" in models.work_hint(cfg.name, "dpmpp", 0.6, 20, 1, 1)
    assert "over this server's limit" in models.work_hint(cfg.name, "dpmpp", 1.0, 1000, 5, 8)
    # the hint's count is the pipeline's own cost rule, the one its limits apply
    pipe = models.get_pipeline(cfg.name)
    settings = pipe.check_inputs(strength=0.6, num_inference_steps=20, sampler="dpmpp", repeats=2, num_images=3)
    assert f"= {3 * pipe.evaluations(settings):,} network" in models.work_hint(cfg.name, "dpmpp", 0.6, 20, 2, 3)


def test_run_edit_records_an_animation_from_the_noised_guide(tmp_path):
    settings = jobs.EditSettings(num_samples=2, seed=3, **FAST)
    seen = []
    r = jobs.run_edit(EX / "strokes-heart.png", None, settings, progress=lambda d, t, desc: seen.append((d, t)))
    assert r.seeds == [3, 4] and len(r.images) == 2 and r.images[0].size == (256, 256)
    assert seen[-1] == (4, 4)
    gif = Image.open(r.animation)
    assert gif.format == "GIF" and gif.n_frames == 1 + 4 + 1  # guide|noised, 4 steps, result


def test_the_animation_frames_are_the_results_size_smooth_and_end_on_the_result():
    """The frames are drawn at the size the page shows them (`progress.ANIMATION_SIZE`: two 256 px panels, the
    results' size), resized smoothly rather than enlarged into blocks, and the last frame is the result."""
    r = jobs.run_edit(EX / "strokes-heart.png", None, jobs.EditSettings(seed=3, **FAST))
    gif = Image.open(r.animation)
    assert gif.size == progress.ANIMATION_SIZE == (2 * 256 + progress.GAP, 256 + progress.FOOTER)
    side = progress.PANEL
    gif.seek(1)  # the first step: the noisy sample x_t, left panel
    noisy = np.asarray(gif.convert("RGB"))[:side, :side].astype(int)
    # nearest-neighbour blocks of a 64 px frame repeat each column 4 times (3 of 4 neighbours equal); a smooth
    # resize of noise makes neighbours differ
    same = (np.abs(np.diff(noisy, axis=1)).max(-1) == 0).mean()
    assert same < 0.6, f"{same:.0%} of neighbouring columns are equal: blocks, not a smooth image"
    gif.seek(gif.n_frames - 1)
    last = np.asarray(gif.convert("RGB"))[:side, side + progress.GAP :].astype(int)
    result = np.asarray(r.images[0].convert("RGB")).astype(int)  # the 256 px result of a 256 px guide
    assert np.abs(last - result).mean() < 3, "the last frame is the result (up to the GIF's palette)"


def test_the_animation_resizes_like_the_results():
    """A frame smaller or larger than a panel is resized with Lanczos to the panel's size; one at its size is
    kept as it is."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert progress.fit_panel(small).shape == (256, 256, 3)
    expected = np.asarray(Image.fromarray(small).resize((256, 256), Image.LANCZOS))
    assert np.array_equal(progress.fit_panel(small), expected)
    exact = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    assert progress.fit_panel(exact) is exact
    assert progress.fit_panel(np.zeros((512, 512, 3), np.uint8)).shape == (256, 256, 3)


def test_the_result_comes_back_before_any_animation_work_and_the_gif_is_rendered_once():
    """On the result's path the animation only copies tensors (two per kept step); decoding and
    encoding frames happen when the GIF is first asked for, once. Counts of work, not time."""
    before = Counter(progress.WORK)
    r = jobs.run_edit(EX / "strokes-heart.png", None, jobs.EditSettings(num_samples=1, seed=5, **FAST))
    done = Counter(progress.WORK) - before
    assert r.images and not r.animation_ready
    assert done == Counter(step_copies=2 * (1 + 4))  # guide|noised and 4 steps; nothing decoded or encoded
    path = r.animation  # now rendered
    done = Counter(progress.WORK) - before
    assert done["frames_decoded"] == 2 * (1 + 4) and done["frames_encoded"] == 1 + 4 + 1 and done["gifs"] == 1
    assert r.animation == path and Counter(progress.WORK) - before == done  # asked again: the same file, no work
    assert Image.open(path).n_frames == 1 + 4 + 1
    # without an animation nothing at all is recorded
    before = Counter(progress.WORK)
    r = jobs.run_edit(EX / "strokes-heart.png", None, jobs.EditSettings(seed=5, **FAST), animate=False)
    assert r.animation is None and Counter(progress.WORK) == before


def test_ranked_samples_come_best_first_with_reasons_and_the_pngs_keep_their_own_seeds():
    """rank=True: the gallery order and captions follow sdedit.ranking; each PNG still carries its own seed."""
    from sdedit import ranking

    judge = ranking.default_judge()
    calls = judge.realism.extractor.calls, judge.identity.calls
    r = jobs.run_edit(EX / "strokes-heart.png", None, jobs.EditSettings(num_samples=3, seed=3, rank=True, **FAST))
    assert (judge.realism.extractor.calls - calls[0], judge.identity.calls - calls[1]) == (1, 1)
    assert sorted(r.order) == [0, 1, 2] and r.seeds == [3, 4, 5]
    assert [c[:4] for c in r.captions] == ["1st:", "2nd:", "3rd:"]
    assert [row["seed"] for row in r.metadata["ranking"]] == [r.seeds[i] for i in r.order]
    assert "1st:" in r.summary
    from sdedit.studio.results import edit_outputs

    gallery, *_ = edit_outputs(r, animation=False)
    assert [cap for _, cap in gallery] == [f"{w} · seed {r.seeds[i]}" for i, w in zip(r.order, r.captions, strict=True)]
    from sdedit.recall import read_settings

    assert [read_settings(path)["seed"] for path, _ in gallery] == [r.seeds[i] for i in r.order]
    # one sample, or rank off: nothing ranked, no judge called
    calls = judge.realism.extractor.calls
    r = jobs.run_edit(EX / "strokes-heart.png", None, jobs.EditSettings(num_samples=1, seed=3, rank=True, **FAST))
    assert r.order is None and judge.realism.extractor.calls == calls


def test_auto_strength_picks_a_t0_in_the_models_follows_range():
    cfg = default_config()
    r = jobs.run_edit(
        EX / "strokes-heart.png", None, jobs.EditSettings(num_samples=2, seed=1, auto_strength=True, **FAST)
    )
    auto = r.metadata["auto_strength"]
    lo, hi = cfg.follows
    assert lo <= auto["strength"] <= hi and r.metadata["strength"] == auto["strength"]
    assert [t["strength"] for t in auto["tried"]] == ranking_candidates(cfg)
    assert "Auto t0: t0 " in r.summary and len(r.images) == 2 and r.animation is None


def ranking_candidates(cfg):
    from sdedit.ranking import candidates

    return candidates(cfg.follows)


def test_the_strength_slider_says_where_each_model_follows_drawings():
    cfg = default_config()
    lo, hi = cfg.follows
    assert f"follows drawings from {lo:g} to {hi:g}" in models.strength_info(cfg)
    hub = models.config_for("ddpm-church-256")
    assert hub.follows is None and models.strength_info(hub) == models.STRENGTH_WORDS


def test_a_waiting_request_is_told_where_it_stands():
    """While another batch holds the model, run_edit's progress says how many requests are ahead."""
    service = jobs.edit_service()
    seen: list[str] = []
    with service.slot:  # the model is busy: the first request is taken by the worker and waits for the slot
        first = threading.Thread(target=jobs.run_edit, args=(EX / "strokes-heart.png", None, jobs.EditSettings(**FAST)))
        first.start()
        deadline = time.monotonic() + 30
        while not service._running and time.monotonic() < deadline:
            time.sleep(0.02)
        second = threading.Thread(
            target=jobs.run_edit,
            args=(EX / "strokes-tree.png", None, jobs.EditSettings(**FAST)),
            kwargs=dict(progress=lambda d, t, desc: seen.append(desc)),
        )
        second.start()
        while not seen and time.monotonic() < deadline:
            time.sleep(0.02)
    first.join(60)
    second.join(60)
    assert seen and seen[0].startswith("Waiting for the model: 1 request ahead of yours"), seen[:3]
    assert any(desc.startswith("Denoising: step") for desc in seen)  # then its own steps


# ----- the launched app through gradio_client ---------------------------------------------------------------


def test_api_lists_the_named_endpoints(client):
    api = client.view_api(return_format="dict", print_info=False)
    names = set(api["named_endpoints"])
    assert {"/edit", "/sweep", "/composite", "/painting"} <= names
    params = [p["parameter_name"] for p in api["named_endpoints"]["/edit"]["parameters"]]
    assert params[:3] == ["guide", "mask", "model"] and "seed" in params
    # optional, appended in this order: old positional calls keep working
    assert params[-6:] == ["auto_strength", "rank", "prompt", "negative_prompt", "guidance_scale", "keep_details"]


def test_edit_ranks_and_picks_t0_when_asked(client):
    """The appended inputs: strength_map None, fill_outlines False, auto_strength True, rank True."""
    gallery, _, summary, meta, *_ = call_edit(
        client, EX / "strokes-heart.png", None, None, False, True, True, num_samples=2, seed=4, **FAST
    )
    meta = meta if isinstance(meta, dict) else json.loads(meta)
    assert [item["caption"][:4] for item in gallery] == ["1st:", "2nd:"]
    assert meta["auto_strength"]["strength"] == meta["strength"] and len(meta["ranking"]) == 2
    assert "Auto t0" in summary


def test_edit_returns_lossless_pngs_an_animation_and_metadata(client):
    gallery, animation, summary, meta, *_ = call_edit(client, EX / "strokes-heart.png", num_samples=2, seed=11, **FAST)
    assert len(gallery) == 2
    for item in gallery:
        im = Image.open(item["image"])
        assert im.format == "PNG" and im.size == (256, 256)
    assert Image.open(animation).n_frames > 2
    meta = meta if isinstance(meta, dict) else json.loads(meta)
    assert meta["seeds"] == [11, 12] and meta["steps"] == 4
    assert "2 results" in summary and "64×64" in summary
    # sample i depends only on seed i (a batch of one differs at most by float rounding in the UNet)
    again, *_ = call_edit(client, EX / "strokes-heart.png", num_samples=1, seed=12, **FAST)
    diff = np.abs(rgb(again[0]["image"]).astype(int) - rgb(gallery[1]["image"]).astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01


def test_edit_sends_its_results_before_the_animation_is_rendered(client, monkeypatch):
    """/edit's first output is the results with no animation, sent while the GIF has not been
    rendered (held here until the results arrived); its final output (what predict returns) adds the GIF."""
    from gradio_client import handle_file

    release, rendering = threading.Event(), threading.Event()
    render = progress.render_animation

    def held(frames, path, **kwargs):
        rendering.set()
        assert release.wait(60), "the results never arrived while the animation was held"
        return render(frames, path, **kwargs)

    monkeypatch.setattr(progress, "render_animation", held)
    gifs = progress.WORK["gifs"]
    job = client.submit(
        guide=handle_file(str(EX / "strokes-heart.png")),
        mask=None,
        model="fluent-emoji-64",
        **FAST,
        num_samples=1,
        seed=7,
        snr=0.0,
        mask_dilation=0,
        mask_feather=0,
        api_name="/edit",
    )
    deadline = time.monotonic() + 60
    while not job.outputs() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job.outputs(), "no output arrived"
    gallery, animation, summary, meta = job.outputs()[0][:4]
    assert len(gallery) == 1 and animation is None and meta["seeds"] == [7] and "1 result" in summary
    assert progress.WORK["gifs"] == gifs  # no GIF written when the results went out
    release.set()
    final = job.result(timeout=60)
    assert rendering.is_set() and progress.WORK["gifs"] == gifs + 1
    assert Image.open(final[1]).n_frames == 1 + 4 + 1 and final[3]["seeds"] == [7]
    assert (rgb(final[0][0]["image"]) == rgb(gallery[0]["image"])).all()


def test_masked_edit_leaves_every_pixel_outside_the_mask_unchanged(client):
    layer = EX / "photo-car-strokes.png"
    gallery, *_ = call_edit(client, EX / "photo-car.png", mask=layer, seed=1, **FAST)
    out, photo = rgb(gallery[0]["image"]), rgb(EX / "photo-car.png")
    m = np.asarray(Image.open(layer))[..., 3] > 0
    assert (out[~m] == photo[~m]).all()
    assert (out[m] != photo[m]).any()
    # feathering softens the border outward: exactly the refined mask's zeros stay untouched
    gallery, *_ = call_edit(client, EX / "photo-car.png", mask=layer, seed=1, mask_feather=4, **FAST)
    out = rgb(gallery[0]["image"])
    kept = guides.prepare_mask(Image.open(layer), (256, 256), 0, 4) == 0
    assert (out[kept] == photo[kept]).all()
    assert kept.sum() < (~m).sum() and (dilate(m.astype(np.float32), 12) == 0)[~kept].sum() == 0


def test_sweep_returns_a_grid_a_plot_and_faithfulness_rows(client):
    from gradio_client import handle_file

    grid, plot, table = client.predict(
        handle_file(str(EX / "strokes-apple.png")),
        None,
        "fluent-emoji-64",
        "0.3, 0.7",
        "dpmpp",
        8,
        1,
        0,
        0.0,
        0,
        0,
        api_name="/sweep",
    )
    assert Image.open(grid).width >= 3 * 100  # the guide and two columns
    assert Image.open(plot).size[0] > 200
    rows = table["data"]
    assert [r[0] for r in rows] == [0.3, 0.7] and all(r[1] > 0 for r in rows)


def test_composite_and_painting_endpoints(client):
    from gradio_client import handle_file

    guide, mask = client.predict(
        handle_file(str(EX / "photo-panda.png")),
        handle_file(str(EX / "photo-tulip.png")),
        0.7,
        0.3,
        0.3,
        True,
        api_name="/composite",
    )
    assert Image.open(guide).size == (256, 256) and np.asarray(Image.open(mask)).max() == 255
    painting = client.predict(handle_file(str(EX / "photo-cat.png")), 4, 0, 1, api_name="/painting")
    assert len(np.unique(rgb(painting).reshape(-1, 3), axis=0)) <= 4


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(mask="black"), "mask is empty"),
        (dict(model="ddpm-church-256"), "can't be reached|offline|not in the local cache"),
        (dict(strength=1.0, steps=1000, repeats=5, num_samples=8), "network evaluations"),
        (dict(sampler="nonsense"), "not in the list of choices|sampler"),
    ],
)
def test_bad_inputs_get_a_clear_message_and_the_server_keeps_serving(client, tmp_path, overrides, message):
    import re

    from gradio_client.exceptions import AppError

    overrides = dict(overrides)
    mask = None
    if overrides.pop("mask", None):
        mask = tmp_path / "black.png"
        Image.new("L", (256, 256), 0).save(mask)
    num = overrides.pop("num_samples", 1)
    with pytest.raises(AppError) as err:
        call_edit(client, EX / "strokes-tree.png", mask=mask, num_samples=num, **{**FAST, **overrides})
    assert re.search(message, str(err.value), re.IGNORECASE), str(err.value)
    assert "Traceback" not in str(err.value)
    gallery, *_ = call_edit(client, EX / "strokes-tree.png", **FAST)  # and the next request works
    assert len(gallery) == 1


def test_queue_has_a_concurrency_limit():
    import app

    demo = app.build_demo()
    assert demo._queue.default_concurrency_limit == limits.CONCURRENCY >= 1
    assert demo._queue.max_size == limits.QUEUE_SIZE


def test_launch_defaults_to_localhost_port_7860(monkeypatch):
    import app

    seen = {}

    class Fake:
        def launch(self, **kwargs):
            seen.update(kwargs)

    monkeypatch.delenv("GRADIO_SERVER_PORT", raising=False)
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    app.launch(Fake())
    assert seen["server_name"] == "127.0.0.1" and seen["server_port"] == 7860 and not seen.get("share")
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7999")
    app.launch(Fake())
    assert seen["server_port"] == 7999
