"""The studio on latent (Stable Diffusion) models: tiny random SD folders served as configured models
(`tiny_sd.studio_config_dir`), the page's logic, the live preview, and the app through gradio_client. The browser
side is tests/browser/test_latent_studio_browser.py."""

from __future__ import annotations

import asyncio
import base64
import io
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image, ImageDraw

from sdedit.configs import REPO_ROOT, find_config
from sdedit.errors import InputError
from sdedit.latent import MAX_PROMPT_CHARS, LatentSpace
from sdedit.recall import read_settings
from sdedit.studio import canvas, costs, jobs, live, models, previews
from sdedit.studio.previews import PreviewRequest, PreviewSettings
from sdedit.studio.restore import settings_from_dict
from tests import tiny_sd
from tests.app_server import running_app
from tests.helpers import call_edit, rgb

EX = REPO_ROOT / "examples"
QUICK = dict(strength=0.5, sampler="ddim", steps=4, repeats=1)  # two denoising steps
LONG_PROMPT = "a " * 80  # 80 words of one character: more tokens than a CLIP encoder reads


@pytest.fixture(scope="module")
def sd_configs(tmp_path_factory):
    """The studio's configs: the embedded default and the tiny text models (the environment of this module)."""
    folder = tiny_sd.studio_config_dir(tmp_path_factory.mktemp("studio-sd"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SDEDIT_CONFIG_DIR", str(folder))
        yield folder
        models.drop_pipelines()  # the next module loads its own models
        live._POLICIES.clear()


@pytest.fixture(scope="module")
def app_url(sd_configs):
    with running_app() as url:
        yield url


@pytest.fixture(scope="module")
def page(sd_configs):
    from sdedit.studio.page import build_page

    return build_page()


def strokes(size: int = 64, color=(200, 40, 60)) -> Image.Image:
    image = Image.new("RGB", (size, size), "white")
    ImageDraw.Draw(image).ellipse((size // 4, size // 4, 3 * size // 4, 3 * size // 4), fill=color)
    return image


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def edit(client, model="tiny-sd", seed=3, *text, guide=EX / "strokes-heart.png"):
    """/edit with the 12 inputs of the first clients, then, when `text` is given, the four optional ones before
    the prompt (strength_map, fill_outlines, auto_strength, rank) and `text` (prompt, negative prompt, guidance)."""
    later = (None, False, False, False, *text) if text else ()
    return call_edit(client, guide, None, *later, model=model, seed=seed, **QUICK)


# ----- what the page shows per model ---------------------------------------------------------------------------


def test_the_model_box_shows_text_models_and_says_which_need_a_gpu(sd_configs, monkeypatch):
    labels = dict((name, label) for label, name in models.model_choices())
    assert {"fluent-emoji-64", "tiny-sd", "tiny-sd-512", "tiny-sd-gpu"} <= set(labels)
    assert labels["tiny-sd-gpu"].endswith("· needs a GPU") and "GPU" not in labels["tiny-sd"]
    monkeypatch.setenv("SDEDIT_CONFIG_DIR", str(REPO_ROOT / "configs"))
    choices = models.model_choices()
    names = [name for _, name in choices]
    assert names[0] == "fluent-emoji-64"
    gpu = [name for label, name in choices if label.endswith("needs a GPU")]
    assert set(gpu) == {"sd-turbo", "stable-diffusion-v1-5", "lcm-dreamshaper-v7", "sdxl-turbo"}
    assert names[-len(gpu) :] == gpu, "the models made for a GPU come last"


def test_canvas_sizes_follow_the_model(sd_configs, page, monkeypatch):
    assert models.paint_canvas_size(find_config("fluent-emoji-64")) == 256
    assert models.paint_canvas_size(find_config("tiny-sd")) == 256, "a 64 px model draws on the 256 px canvas"
    assert models.paint_canvas_size(find_config("tiny-sd-512")) == 512
    monkeypatch.setenv("SDEDIT_CONFIG_DIR", str(REPO_ROOT / "configs"))
    for name, side in (
        ("sd-turbo", 512),
        ("stable-diffusion-v1-5", 512),
        ("sdxl-turbo", 512),
        ("ddpm-church-256", 256),
    ):
        assert models.paint_canvas_size(find_config(name)) == side, name
    monkeypatch.undo()
    paint = page.by_id["paint"].canvas
    assert paint.props["canvas_size"] == 256, "the embedded model's page is as it was"
    follow = next(f for f in page.demo.fns.values() if f.outputs == [paint] and page.controls.loaded_model in f.inputs)
    update = follow.fn("tiny-sd-512", 0.5, -1, 0, 2, "a red cat", "", 3.0)
    assert update["canvas_size"] == 512 and update["live"]["prompt"] == "a red cat"
    assert update["live"]["guidance_scale"] == 3.0 and update["mode"] == "paint", "the fixed props travel along"
    update = follow.fn("fluent-emoji-64", 0.5, -1, 0, 2, "a red cat", "", 3.0)
    assert update["canvas_size"] == 256 and update["live"]["prompt"] is None, "a pixel model's preview takes no text"
    assert "canvas_size" not in canvas.canvas_update(paint, value=None), "a restore leaves the size to the model"


def test_the_prompt_boxes_follow_the_model_and_keep_what_was_typed(sd_configs, page, monkeypatch):
    c = page.controls
    assert not c.prompt.visible and not c.negative_prompt.visible and not c.guidance.visible, "pixel page as it was"
    assert c.prompt.value is None and c.guidance.value is None, "API clients that leave them out send None"
    out = c.model_settings("tiny-sd", "fluent-emoji-64", "", "", ("", ""))
    assert out[c.prompt]["visible"] and out[c.negative_prompt]["visible"]
    assert out[c.guidance]["visible"] and out[c.guidance]["value"] == 3.0 and not out[c.run_on_cpu]["visible"]
    out = c.model_settings("fluent-emoji-64", "tiny-sd", "a red cat", "blurry", ("", ""))
    assert not out[c.prompt]["visible"] and out[c.prompt]["value"] == "" and out[c.negative_prompt]["value"] == ""
    assert out[c.guidance]["value"] is None and not out[c.guidance]["visible"]
    assert out[c.kept_text] == ("a red cat", "blurry"), "kept aside while the model takes no text"
    back = c.model_settings("tiny-sd", "fluent-emoji-64", "", "", out[c.kept_text])
    assert back[c.prompt]["value"] == "a red cat" and back[c.negative_prompt]["value"] == "blurry"
    assert c.model_settings("tiny-sd-gpu", "tiny-sd", "a cat", "", ("", ""))[c.run_on_cpu]["visible"], "on a CPU"
    monkeypatch.setattr(models, "has_gpu", lambda: True)
    assert not c.model_settings("tiny-sd-gpu", "tiny-sd", "a cat", "", ("", ""))[c.run_on_cpu]["visible"]
    monkeypatch.setenv("SDEDIT_CONFIG_DIR", str(REPO_ROOT / "configs"))
    from sdedit.studio.controls import text_updates

    turbo, lcm, sd15 = (
        text_updates(find_config(n)) for n in ("sd-turbo", "lcm-dreamshaper-v7", "stable-diffusion-v1-5")
    )
    assert turbo[0]["visible"] and not turbo[1]["visible"] and not turbo[2]["visible"], "turbo: a prompt, no guidance"
    assert lcm[2]["visible"] and lcm[2]["value"] == 8.0 and not lcm[1]["visible"], "LCM: guidance in its network"
    assert sd15[1]["visible"] and sd15[2]["value"] == 7.5, "SD 1.5: negative prompt and classifier-free guidance"


def test_a_gpu_model_on_a_cpu_waits_for_a_confirmation_with_the_measured_cost(sd_configs, monkeypatch):
    measured = costs.measured_cpu_cost()
    assert measured is not None and measured.edit_s > 1, "benchmarks/results/latent-cpu.json is read"
    with pytest.raises(InputError) as err:
        models.check_device("tiny-sd-gpu", False, 0.5, 4, 1, 2, 3.0)
    words = str(err.value)
    assert "needs a GPU and this server has none" in words and "Run it on this CPU anyway" in words
    assert "4 UNet passes × 2 samples" in words, "2 steps at t0 0.5, twice each under guidance, 2 samples"
    assert costs.duration(measured.edit_seconds(4, 2)) in words and "latent-cpu.json" in words, "rendered, not typed"
    assert models.check_device("tiny-sd-gpu", True, 0.5, 4, 1, 2, 3.0) is None, "ticked: it runs"
    assert models.check_device("tiny-sd", False, 0.5, 4, 1, 2, 3.0) is None, "a model that runs on a CPU"
    note = models.model_note(find_config("tiny-sd-gpu"))
    assert "Needs a GPU" in note and costs.duration(measured.edit_s) in note
    monkeypatch.setattr(models, "has_gpu", lambda: True)
    assert models.check_device("tiny-sd-gpu", False, 0.5, 4, 1, 2, 3.0) is None, "on a GPU nothing is asked"
    assert "Needs a GPU" not in models.model_note(find_config("tiny-sd-gpu"))


def test_the_cost_line_counts_classifier_free_guidance_twice(sd_configs):
    guided = models.work_hint("tiny-sd", "ddim", 0.5, 4, 1, 2)  # the model's guidance, 3
    assert "× 2 (classifier-free guidance) = 8 network evaluations" in guided, guided
    assert "= 4 network evaluations" in models.work_hint("tiny-sd", "ddim", 0.5, 4, 1, 2, 0.0, 1.0)
    assert "classifier-free" not in models.work_hint("fluent-emoji-64", "ddim", 0.5, 4, 1, 2)


# ----- Live -----------------------------------------------------------------------------------------------------


def test_live_is_off_for_gpu_models_on_a_cpu_without_a_measurement(sd_configs, monkeypatch):
    live._POLICIES.clear()

    def no_measurement(pipe):
        raise AssertionError("a model marked live_on_cpu: false is not measured on a CPU")

    monkeypatch.setattr(live, "measure_evaluation_ms", no_measurement)
    p = live.live_policy("tiny-sd-gpu")
    measured = costs.measured_cpu_cost()
    assert not p.allowed and p.reason.startswith("Live is off for this model on a CPU")
    assert costs.duration(measured.preview_s) in p.reason and "latent-cpu.json" in p.reason
    assert "Generate still works" in p.reason
    monkeypatch.undo()
    on = live.live_policy("tiny-sd")  # a text model's network measured with its prompt's condition
    assert on.allowed and on.ms_per_evaluation > 0


def test_previews_of_a_text_model_keep_its_text_encoder_and_decode_with_taesd(sd_configs, tmp_path, monkeypatch):
    from diffusers import AutoencoderTiny

    pipe = models.get_pipeline("tiny-sd")
    fast = previews.preview_pipeline(pipe)
    assert fast is not pipe and fast.unet is not pipe.unet, "a fast copy of the network"
    assert fast.text_encoder is pipe.text_encoder and isinstance(fast.space, LatentSpace) and fast.config is pipe.config
    tiny = AutoencoderTiny(
        encoder_block_out_channels=(8,) * 4,
        decoder_block_out_channels=(8,) * 4,
        num_encoder_blocks=(1,) * 4,
        num_decoder_blocks=(1,) * 4,
    )
    tiny.save_pretrained(tmp_path / "taesd")
    named = pipe.replace(config=replace(pipe.config, preview_decoder=str(tmp_path / "taesd")))
    fast = previews.preview_pipeline(named)
    assert fast.space.fast and fast.space.tiny is not None and fast.text_encoder is pipe.text_encoder
    request = PreviewRequest("visitor-taesd", 1, png_bytes(strokes()), None, PreviewSettings("tiny-sd", 0.5, 1))
    (result,) = previews.compute_previews([request], pipe=fast)
    assert result.error is None and Image.open(io.BytesIO(result.jpeg)).size == (64, 64)
    monkeypatch.setattr(previews, "FAST_COPY_MAX_PARAMS", 0)  # a large network (or a GPU): no copy, TAESD still
    big = named.replace(config=replace(named.config))
    fast = previews.preview_pipeline(big)
    assert fast.unet is big.unet and fast.space.fast and previews.preview_pipeline(fast) is fast


def _preview(prompt, visitor="visitor-prompt", seed=5, **text):
    settings = PreviewSettings("tiny-sd", 0.5, seed, prompt=prompt, **text)
    return previews.compute_previews([PreviewRequest(visitor, 1, png_bytes(strokes()), None, settings)])[0]


def test_the_live_preview_follows_the_prompt(sd_configs):
    models.get_pipeline("tiny-sd")  # previews never load a model: the model box does
    a, again, other = _preview("a red cat"), _preview("a red cat"), _preview("a blue sea")
    assert a.error is None and a.jpeg == again.jpeg, "the same canvas and prompt: the same preview"
    assert other.jpeg != a.jpeg, "another prompt: another preview"
    assert _preview("a red cat", guidance_scale=1.0).jpeg != a.jpeg, "the guidance counts too"
    assert PreviewSettings(prompt="a").key != PreviewSettings(prompt="b").key, "other prompts never share a forward"
    assert PreviewSettings(negative_prompt="a").key != PreviewSettings().key
    # through the canvas's server function, the settings as the page's `live` prop carries them
    url = "data:image/png;base64," + base64.b64encode(png_bytes(strokes())).decode()
    payload = {"visitor": "visitor-prompt-2", "seq": 1, "guide": url}
    answers = [
        asyncio.run(live.preview({**payload, "settings": canvas.live_settings("tiny-sd", 0.5, 5, 0, 0, p, "", 3.0)}))
        for p in ("a red cat", "a blue sea")
    ]
    assert all("image" in out for out in answers) and answers[0]["image"] != answers[1]["image"]
    out = asyncio.run(live.preview({**payload, "settings": {"model": "tiny-sd", "prompt": LONG_PROMPT}}))
    assert "tokens long" in out["error"] and "image" not in out, "the model's token limit, in words"


def test_preview_calls_check_the_prompt_and_guidance():
    s = live.parse_settings({"prompt": "a cat", "negative_prompt": "", "guidance_scale": "7.5"})
    assert (s.prompt, s.negative_prompt, s.guidance_scale) == ("a cat", "", 7.5)
    assert (
        live.parse_settings({}).prompt is None and live.parse_settings({"guidance_scale": None}).guidance_scale is None
    )
    for bad, words in [
        ({"prompt": 5}, "the prompt must be text, not int"),
        ({"prompt": ["a"]}, "the prompt must be text, not list"),
        ({"prompt": "x" * (MAX_PROMPT_CHARS + 1)}, f"the prompt is {MAX_PROMPT_CHARS + 1:,} characters long"),
        ({"negative_prompt": "a\x00b"}, "the negative prompt contains a NUL character"),
        ({"guidance_scale": 50}, r"guidance scale must be a number from 1 to 30, not 50"),
        ({"guidance_scale": "nan"}, "guidance scale must be a number"),
        ({"guidance_scale": 0.5}, "from 1 to 30"),
    ]:
        with pytest.raises(InputError, match=words):
            live.parse_settings(bad)


# ----- edits: the batch key, and the API ------------------------------------------------------------------------


def test_edits_with_other_prompts_never_share_a_forward(sd_configs):
    def job(**text):
        settings = jobs.EditSettings(model="tiny-sd", seed=1, **QUICK, **text)
        return jobs.prepare_edit(strokes(), None, settings, animate=False)

    a, same, other = job(prompt="a red cat"), job(prompt="a red cat"), job(prompt="a blue sea")
    assert a.key == same.key and a.key != other.key
    assert job(prompt="a red cat", negative_prompt="blurry").key != a.key
    assert job(prompt="a red cat", guidance_scale=5.0).key != a.key
    with pytest.raises(ValueError, match="settings match"):
        jobs.run_jobs([a, other])
    shared = jobs.run_jobs([a, same])
    alone = jobs.run_jobs([job(prompt="a red cat")])[0]
    assert shared[0].metadata["prompt"] == "a red cat" and shared[0].metadata["batched_requests"] == 2
    assert np.abs(np.asarray(shared[0].images[0], int) - np.asarray(alone.images[0], int)).max() <= 1


def test_edit_with_a_prompt_on_a_text_model(client):
    gallery, _, summary, meta, *_ = edit(client, "tiny-sd", 3, "a red cat", "", 3.0)
    assert meta["prompt"] == "a red cat" and meta["guidance_scale"] == 3.0 and "“a red cat”" in summary
    assert read_settings(gallery[0]["image"])["prompt"] == "a red cat", "the PNG carries its prompt"
    again, *_ = edit(client, "tiny-sd", 3, "a red cat", "", 3.0)
    assert (rgb(again[0]["image"]) == rgb(gallery[0]["image"])).all(), "the same seed: the same pixels"
    other, *_ = edit(client, "tiny-sd", 3, "a blue sea", "", 3.0)
    assert (rgb(other[0]["image"]) != rgb(gallery[0]["image"])).any(), "another prompt: other pixels"
    negative, *_ = edit(client, "tiny-sd", 3, "a red cat", "blurry", 3.0)
    assert (rgb(negative[0]["image"]) != rgb(gallery[0]["image"])).any(), "the negative prompt counts"


def test_old_positional_calls_still_work(client):
    gallery, _, _, meta, *_ = edit(client, "fluent-emoji-64", 2)  # the 12 inputs of the first clients
    assert len(gallery) == 1 and "prompt" not in meta, "a pixel model's results are as they were"
    gallery, _, _, meta, *_ = edit(client, "tiny-sd", 2)  # a text model, no prompt: its defaults
    assert meta["prompt"] == "" and meta["guidance_scale"] == 3.0
    from gradio_client import handle_file

    sixteen = client.predict(  # the inputs before the prompt existed, by name
        guide=handle_file(str(EX / "strokes-heart.png")),
        mask=None,
        model="tiny-sd",
        **QUICK,
        num_samples=1,
        seed=2,
        snr=0.0,
        mask_dilation=0,
        mask_feather=0,
        strength_map=None,
        fill_outlines=False,
        auto_strength=False,
        rank=False,
        api_name="/edit",
    )
    assert (rgb(sixteen[0][0]["image"]) == rgb(gallery[0]["image"])).all()


def test_bad_text_values_get_words(client):
    from gradio_client.exceptions import AppError

    for text, words in [
        (("a red cat", None, None), "(?i)fluent-emoji-64 takes no text"),
        ((None, None, 4.0), "takes no text, so no guidance"),
    ]:
        with pytest.raises(AppError, match=words):
            edit(client, "fluent-emoji-64", 1, *text)
    for text, words in [
        ((LONG_PROMPT, None, None), r"(?i)the prompt is \d+ tokens long; this model's text encoder reads at most"),
        (("a cat", "blurry", 1.0), "(?i)a negative prompt acts through classifier-free guidance"),
        (("a cat", None, 50), r"guidance_scale: .*30"),
    ]:
        with pytest.raises(AppError, match=words):
            edit(client, "tiny-sd", 1, *text)
    gallery, *_ = edit(client, "tiny-sd", 1, "a cat", None, None)
    assert len(gallery) == 1, "and the app keeps serving"


def test_the_sweep_takes_the_prompt(client):
    from gradio_client import handle_file

    def sweep(prompt):
        grid, _, table = client.predict(
            handle_file(str(EX / "strokes-heart.png")),
            None,
            "tiny-sd",
            "0.4, 0.8",
            "ddim",
            4,
            1,
            3,
            0.0,
            0,
            0,
            None,
            False,
            prompt,
            None,
            None,
            api_name="/sweep",
        )
        assert [row[0] for row in table["data"]] == [0.4, 0.8]
        return rgb(grid)

    a, again, other = sweep("a red cat"), sweep("a red cat"), sweep("a blue sea")
    assert (a == again).all() and (a != other).any()


def test_a_text_models_png_restores_its_prompt(client, page):
    gallery, *_ = edit(client, "tiny-sd", 4, "a lighthouse at dusk", "fog", 5.0)
    c = page.controls
    updates = page.restore_png(gallery[0]["image"], "fluent-emoji-64")
    assert updates[c.model] == "tiny-sd" and updates[c.prompt]["value"] == "a lighthouse at dusk"
    assert updates[c.prompt]["visible"] and updates[c.negative_prompt]["value"] == "fog"
    assert updates[c.guidance]["value"] == 5.0 and updates[c.guidance]["visible"]
    pixel, *_ = edit(client, "fluent-emoji-64", 4)
    updates = page.restore_png(pixel[0]["image"], "tiny-sd")
    assert updates[c.prompt]["value"] == "" and not updates[c.prompt]["visible"], "a pixel result takes none"
    for damaged in ({"prompt": 5}, {"negative_prompt": "x" * (MAX_PROMPT_CHARS + 1)}):
        with pytest.raises(InputError, match="damaged"):
            settings_from_dict({"model": "tiny-sd", **damaged})


def test_the_api_documents_the_new_inputs_last_with_none_defaults(client):
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    for endpoint, before in (("/edit", "rank"), ("/sweep", "fill_outlines")):
        params = api[endpoint]["parameters"]
        names = [p["parameter_name"] for p in params]
        assert names[-5:] == [before, "prompt", "negative_prompt", "guidance_scale", "keep_details"], endpoint
        assert all(p["parameter_has_default"] and p["parameter_default"] is None for p in params[-4:-1]), endpoint
        assert params[-1]["parameter_has_default"] and params[-1]["parameter_default"] is False, endpoint
