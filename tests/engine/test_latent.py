"""Latent (Stable Diffusion) models on tiny random components built here, offline, on the CPU: loading a local
folder, the same maths as diffusers' img2img, exact masks, strength maps, repeats, prompts (cached, batched
guidance, recalled from PNGs) and clear errors before any model evaluation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sdedit import SDEditPipeline, loading, recall
from sdedit.configs import find_config, model_configs, traits
from sdedit.errors import InputError, LimitError, ModelLoadError, ModelNotFoundError
from sdedit.latent import LatentSpace
from tests import tiny_sd

REPO = Path(__file__).resolve().parents[2]
R = 64  # the tiny components' canvas: 8x8 latents


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    return tiny_sd.tiny_components(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def pipe(parts):
    p = tiny_sd.pipeline(parts)
    p.set_progress_bar_config(disable=True)
    return p


def guide_image(size=R, seed=0) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size]
    rng = np.random.default_rng(seed)
    img = np.stack([x * 4 % 256, y * 4 % 256, (x + y) * 2 % 256], -1) + rng.integers(0, 30, (size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


class Counter:
    """Counts a module's forward calls and the batch sizes it saw."""

    def __init__(self, module):
        self.calls, self.batches = 0, []
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, module, args, output):
        self.calls += 1
        x = args[0] if args else None
        self.batches.append(int(x.shape[0]) if isinstance(x, torch.Tensor) else None)

    def remove(self):
        self.handle.remove()


def edit(pipe, **kw):
    args = dict(strength=0.6, num_inference_steps=10, seed=3, progress=False, output_type="uint8")
    return pipe(guide_image(), **{**args, **kw})


# ----- loading --------------------------------------------------------------------------------------------------


def test_a_local_stable_diffusion_folder_loads(parts, tmp_path):
    folder = tiny_sd.save_folder(tmp_path / "sd", parts)
    loading.clear_cache()
    pipe = SDEditPipeline.from_pretrained(str(folder))
    cfg = pipe.config
    assert (cfg.family, cfg.resolution, cfg.takes_text, pipe.guidance) == ("sd", R, True, "cfg")
    assert isinstance(pipe.space, LatentSpace) and pipe.space.factor == 8
    x, t = torch.randn(1, 4, 8, 8), torch.tensor([500])
    emb = torch.randn(1, 77, 32)
    same = pipe.unet(x, t, encoder_hidden_states=emb).sample
    assert torch.allclose(same, parts["unet"](x, t, encoder_hidden_states=emb).sample, atol=1e-6)
    assert SDEditPipeline.from_pretrained(str(folder)).unet is pipe.unet  # cached
    out = pipe(guide_image(), prompt="a red cat", seed=0, num_inference_steps=4, progress=False)
    assert out.images[0].size == (R, R) and out.metadata["prompt"] == "a red cat"
    with pytest.raises(ModelLoadError, match="latent"):
        loading.load(str(folder))  # the 5-tuple loader has no place for the autoencoder and text encoder


def test_only_safetensors_and_known_classes_load(parts, tmp_path):
    folder = tiny_sd.save_folder(tmp_path / "sd", parts)
    index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps({**index, "text_encoder": ["somewhere", "RemoteModel"]}))
    with pytest.raises(ModelLoadError, match="text_encoder"):
        SDEditPipeline.from_pretrained(str(folder))
    (folder / "model_index.json").write_text(json.dumps(index))
    (folder / "unet" / "diffusion_pytorch_model.safetensors").rename(folder / "unet" / "x.bin")
    with pytest.raises(ModelLoadError, match="safetensors only"):
        SDEditPipeline.from_pretrained(str(folder))
    (folder / "model_index.json").write_text(json.dumps({**index, "requires_aesthetics_score": True}))
    with pytest.raises(ModelLoadError, match="refiner"):
        SDEditPipeline.from_pretrained(str(folder))


@pytest.mark.parametrize("name", ["sd-turbo", "stable-diffusion-v1-5", "lcm-dreamshaper-v7", "sdxl-turbo"])
def test_configured_latent_models_offline_give_a_clear_error(name, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # an empty cache: nothing to fall back on
    cfg = find_config(name)
    assert cfg.family in ("sd", "sdxl") and cfg.resolution == 512 and cfg.takes_text and cfg.needs_gpu
    for asked in (name, cfg.source):
        with pytest.raises(ModelNotFoundError) as info:
            SDEditPipeline.from_pretrained(asked)
        message = str(info.value)
        assert cfg.source in message and "offline" in message and "--local-dir" in message
        assert "unet/diffusion_pytorch_model.safetensors" in message  # fetch only what loads, not every variant


def test_traits_say_what_the_page_needs_without_loading():
    turbo, sd15, lcm = (traits(find_config(n)) for n in ("sd-turbo", "stable-diffusion-v1-5", "lcm-dreamshaper-v7"))
    assert turbo.takes_text and turbo.guidance == "none" and turbo.canvas == 512 and turbo.needs_gpu
    assert sd15.guidance == "cfg" and sd15.guidance_scale == 7.5 and lcm.guidance == "embedded"
    assert not turbo.live and traits(find_config("sd-turbo"), "cuda").live
    assert turbo.preview_decoder == "madebyollin/taesd"
    emoji = traits(next(iter(model_configs().values())))
    assert not emoji.takes_text and emoji.guidance == "none" and not emoji.needs_gpu and emoji.live


# ----- the same maths as diffusers' img2img -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sampler", "prediction_type"), [("ddim", "epsilon"), ("dpmpp", "epsilon"), ("ddim", "v_prediction")]
)
def test_no_mask_equals_diffusers_img2img(sampler, prediction_type, tmp_path):
    """Same components, scheduler, initial noise and prompt: the latents agree to float rounding."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, StableDiffusionImg2ImgPipeline

    parts = tiny_sd.tiny_components(tmp_path, seed=1, prediction_type=prediction_type)
    pipe = tiny_sd.pipeline(parts)
    settings = pipe.check_inputs(
        strength=0.6, num_inference_steps=10, sampler=sampler, prompt="a red cat", negative_prompt="blur",
        guidance_scale=3.0,
    )  # fmt: skip
    # the registry's scheduler for this sampler, given to diffusers as is (trailing timesteps, as ours)
    common = dict(timestep_spacing="trailing", prediction_type=prediction_type)
    if sampler == "ddim":
        scheduler = DDIMScheduler.from_config(parts["scheduler"].config, **common, set_alpha_to_one=True)
    else:
        scheduler = DPMSolverMultistepScheduler.from_config(
            parts["scheduler"].config, **common, algorithm_type="dpmsolver++", solver_order=2
        )
    reference = StableDiffusionImg2ImgPipeline(
        vae=parts["vae"],
        text_encoder=parts["text_encoder"],
        tokenizer=parts["tokenizer"],
        unet=parts["unet"],
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    assert_same_latents(pipe, settings, reference, prompt="a red cat", negative_prompt="blur", guidance_scale=3.0)


def assert_same_latents(pipe, settings, reference, **text):
    """Our run and diffusers' img2img `reference` from the same guide latents, seed and text: the same latents."""
    guide = pipe.prepare(guide_image())
    ours = pipe.run([guide], settings, seeds=[5]).x
    reference.set_progress_bar_config(disable=True)
    theirs = reference(
        image=guide.x0[None],  # 4 channels: taken as the initial latents
        strength=settings.strength,
        num_inference_steps=settings.num_inference_steps,
        generator=torch.Generator().manual_seed(5),
        output_type="latent",
        **text,
    ).images
    assert ours.shape == theirs.shape == (1, 4, 8, 8)
    assert (ours - theirs).abs().max() < 1e-4 * max(1.0, theirs.abs().max().item())
    assert (ours - guide.x0[None]).abs().max() > 0.1  # it did edit


# ----- pixels: determinism, prompts, masks, strength maps, repeats -------------------------------------------


def test_same_seed_same_pixels_another_prompt_other_pixels(pipe):
    a = edit(pipe, prompt="a red cat").images
    assert np.array_equal(a, edit(pipe, prompt="a red cat").images)
    assert not np.array_equal(a, edit(pipe, prompt="a blue dog").images)
    assert not np.array_equal(a, edit(pipe, prompt="a red cat", seed=4).images)
    assert not np.array_equal(a, edit(pipe, prompt="a red cat", negative_prompt="green").images)


def test_a_batch_gives_the_images_of_single_runs(pipe):
    both = edit(pipe, prompt="a red cat", num_images=2).images
    assert np.abs(both[1].astype(int) - edit(pipe, prompt="a red cat", seed=4).images[0]).max() <= 1


@pytest.mark.parametrize("sampler", ["dpmpp", "ddim", "euler_a", "reference"])
@pytest.mark.parametrize("repeats", [1, 2])
def test_a_mask_keeps_every_pixel_outside_it(pipe, sampler, repeats):
    mask = np.zeros((R, R), np.float32)
    mask[13:37, 21:50] = 1.0  # not aligned to the 8 px latent grid
    mask[40:60, 5:9] = 0.5  # soft
    steps = 100 if sampler == "reference" else 10  # the reference loop: 30 ancestral steps at t0 = 0.3
    kw = dict(sampler=sampler, repeats=repeats, num_inference_steps=steps, strength=0.3 if steps == 100 else 0.6)
    out = edit(pipe, mask_image=mask, prompt="a red cat", **kw).images[0]
    guide = guide_image()
    assert np.array_equal(out[mask == 0], guide[mask == 0])
    assert not np.array_equal(out[mask == 1], guide[mask == 1])
    # in latent space the kept region is the guide's latents, bit for bit, after the last step
    settings = pipe.check_inputs(prompt="a red cat", num_images=1, **kw)
    prepared = pipe.prepare(guide, mask)
    x = pipe.run([prepared], settings, seeds=[3]).x[0]
    kept = (prepared.x0_strength == 0).expand_as(x)  # the mask is a {0, 1} strength map
    assert kept.any() and torch.equal(x[kept], prepared.x0[kept])
    assert prepared.x0_strength.shape == (1, 8, 8) and prepared.x0_strength[0, 1, 2] == 1.0  # any free pixel frees it


def test_strength_map_of_ones_is_plain_sdedit_and_of_zeros_the_guide(pipe):
    plain = edit(pipe, prompt="a red cat").images
    ones = edit(pipe, prompt="a red cat", strength_map=np.ones((R, R), np.float32)).images
    assert np.array_equal(plain, ones)
    zeros = edit(pipe, prompt="a red cat", strength_map=np.zeros((R, R), np.float32)).images
    assert np.array_equal(zeros[0], guide_image())
    half = np.zeros((R, R), np.float32)
    half[:, 32:] = 1.0
    left_kept = edit(pipe, prompt="a red cat", strength_map=half).images[0]
    assert np.array_equal(left_kept[:, :32], guide_image()[:, :32]) and not np.array_equal(left_kept, plain[0])
    ramp = np.tile(np.linspace(0, 1, R, dtype=np.float32), (R, 1))  # a later start towards the left, K = 2
    twice = edit(pipe, prompt="a red cat", strength_map=ramp, repeats=2).images[0]
    assert np.array_equal(twice[:, 0], guide_image()[:, 0]) and not np.array_equal(twice[:, 32:], guide_image()[:, 32:])


def test_lcm_takes_guidance_as_an_input_not_a_second_batch(tmp_path):
    parts = tiny_sd.tiny_components(tmp_path, lcm=True)
    from sdedit.configs import ModelConfig, Sampling

    cfg = ModelConfig("tiny-lcm", "", resolution=R, family="sd", distilled="lcm", defaults=Sampling(0.5, "lcm", 8))
    pipe = tiny_sd.pipeline(parts, cfg)
    assert (
        pipe.guidance == "embedded"
        and "lcm" in cfg.samplers
        and "lcm" not in model_configs()["fluent-emoji-64"].samplers
    )
    seen = []
    handle = parts["unet"].register_forward_hook(
        lambda m, a, kw, out: seen.append(kw["timestep_cond"]), with_kwargs=True
    )
    try:
        a = edit(pipe, sampler="lcm", num_inference_steps=8, strength=0.5, prompt="a cat", guidance_scale=8.0).images
    finally:
        handle.remove()
    assert len(seen) == 4 and all(c is not None and c.shape == (1, 16) for c in seen)  # 4 steps, batch of 1
    b = edit(pipe, sampler="lcm", num_inference_steps=8, strength=0.5, prompt="a cat", guidance_scale=2.0).images
    assert not np.array_equal(a, b)
    with pytest.raises(InputError, match="negative prompt"):
        pipe.check_inputs(sampler="lcm", prompt="a cat", negative_prompt="a dog", guidance_scale=8.0)
    with pytest.raises(InputError, match="num_inference_steps must be from 1 to 50"):
        pipe.check_inputs(sampler="lcm", num_inference_steps=51)


# ----- the prompt: embeddings once, guidance in one call ------------------------------------------------------


def test_classifier_free_guidance_is_one_batched_call_per_step(pipe, parts):
    count = Counter(parts["unet"])
    try:
        edit(pipe, prompt="a red cat", guidance_scale=5.0, num_images=3, num_inference_steps=10, strength=0.6)
        assert count.calls == 6 and set(count.batches) == {6}  # 6 steps, uncond + cond of 3 samples at once
        count.calls, count.batches = 0, []
        edit(pipe, prompt="a red cat", guidance_scale=1.0, num_images=3)
        assert count.calls == 6 and set(count.batches) == {3}  # no guidance: no second half
    finally:
        count.remove()


def test_prompt_embeddings_are_computed_once_per_prompt(parts):
    pipe = tiny_sd.pipeline(parts)  # its own empty cache
    count = Counter(parts["text_encoder"])
    try:
        edit(pipe, prompt="a red cat", negative_prompt="blur", guidance_scale=4.0, repeats=2, num_images=2)
        assert count.calls == 2  # the prompt and the negative prompt, once each, for 2 samples x 2 repeats
        edit(pipe, prompt="a red cat", negative_prompt="blur", guidance_scale=4.0)
        edit(pipe, prompt="a red cat", guidance_scale=4.0)  # "" is the unconditional prompt: a new one
        assert count.calls == 3
        edit(pipe, prompt="a red cat")
        assert count.calls == 3
    finally:
        count.remove()


def test_bad_inputs_are_refused_before_any_model_evaluation(pipe, parts):
    counters = [Counter(parts[k]) for k in ("unet", "vae", "text_encoder")]
    too_long = " ".join(["word"] * 80)
    bad = [
        (dict(guidance_scale=0.5), "guidance_scale must be from 1"),
        (dict(guidance_scale=float("nan")), "finite"),
        (dict(guidance_scale=float("inf")), "finite"),
        (dict(guidance_scale=31), "guidance_scale must be from 1"),
        (dict(guidance_scale="strong"), "must be a number"),
        (dict(prompt=too_long), r"tokens long; .* at most 75"),
        (dict(prompt="x" * 5000), "characters long"),
        (dict(prompt=["a", "list"]), "must be text"),
        (dict(prompt="ok", negative_prompt="blur", guidance_scale=1.0), "negative prompt"),
        (dict(negative_prompt=7, guidance_scale=3.0), "must be text"),
    ]
    try:
        for kwargs, message in bad:
            with pytest.raises(InputError, match=message):
                pipe(guide_image(), progress=False, **kwargs)
        assert all(c.calls == 0 for c in counters)  # the tokenizer checked lengths; no network ran
    finally:
        for c in counters:
            c.remove()
    with pytest.raises(LimitError):
        pipe(guide_image(), prompt="x" * 5000)


def test_text_arguments_on_a_pixel_model_are_refused(vp_pipe):
    for kwargs in (dict(prompt="a cat"), dict(negative_prompt="blur"), dict(guidance_scale=3.0)):
        with pytest.raises(InputError, match="takes no text"):
            vp_pipe.check_inputs(**kwargs)
    s = vp_pipe.check_inputs(prompt="", guidance_scale=1.0)  # the empty values a form sends are fine
    assert s.prompt is None and s.guidance_scale == 1.0


def test_a_turbo_model_takes_no_guidance(parts):
    from sdedit.configs import ModelConfig, Sampling

    cfg = ModelConfig("tiny-turbo", "", resolution=R, family="sd", distilled="turbo", defaults=Sampling(0.5, "ddim", 2))
    pipe = tiny_sd.pipeline(parts, cfg)
    assert pipe.guidance == "none" and pipe.check_inputs(prompt="a cat").guidance_scale == 1.0
    with pytest.raises(InputError, match="without guidance"):
        pipe.check_inputs(prompt="a cat", guidance_scale=2.0)
    count = Counter(parts["unet"])
    try:
        pipe(guide_image(), prompt="a cat", seed=0, progress=False)
        assert count.calls == 1 and count.batches == [1]  # 2-step schedule at t0 = 0.5: one step, one call
    finally:
        count.remove()


# ----- recall: the prompt travels in the PNG -------------------------------------------------------------------


def test_the_prompt_travels_through_png_settings_and_restores(pipe, tmp_path):
    kw = dict(prompt="a red cat, «oil»", negative_prompt="blur", guidance_scale=4.5, strength=0.7, sampler="ddim")
    out = pipe(guide_image(), seed=11, num_inference_steps=10, progress=False, **kw)
    settings = recall.settings_of(out.metadata, 0)
    path = recall.save_png(out.images[0], tmp_path / "r.png", settings)
    back = recall.read_settings(path)
    assert (back["prompt"], back["negative_prompt"], back["guidance_scale"]) == (kw["prompt"], "blur", 4.5)
    assert 'prompt "a red cat, «oil»"' in Image.open(path).text["parameters"]
    again = pipe(guide_image(), progress=False, **recall.call_kwargs(back)).images[0]
    assert np.array_equal(np.asarray(again), np.asarray(out.images[0]))


def test_cli_edit_takes_a_prompt(parts, tmp_path):
    from sdedit import cli

    folder = tiny_sd.save_folder(tmp_path / "sd", parts)
    Image.fromarray(guide_image()).save(tmp_path / "guide.png")
    args = ["edit", "--model", str(folder), "--guide", str(tmp_path / "guide.png"), "--out", str(tmp_path / "out")]
    extra = ["--prompt", "a red cat", "--negative-prompt", "blur", "--guidance-scale", "3", "--steps", "4"]
    assert cli.main([*args, *extra, "--no-progress"]) == 0
    (png,) = (tmp_path / "out").glob("*.png")
    assert recall.read_settings(png)["prompt"] == "a red cat"
    assert cli.main([*args, "--guidance-scale", "0.5", "--no-progress"]) == 2  # a clear error, exit code 2


# ----- previews through a tiny autoencoder --------------------------------------------------------------------


def test_previews_decode_with_a_tiny_autoencoder(pipe, tmp_path):
    from diffusers import AutoencoderTiny

    torch.manual_seed(0)
    tiny = AutoencoderTiny(
        encoder_block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        num_encoder_blocks=(1, 1, 1, 1),
        num_decoder_blocks=(1, 1, 1, 1),
    ).eval()
    tiny.save_pretrained(tmp_path / "taesd")
    from dataclasses import replace

    pipe = pipe.replace(config=replace(pipe.config, preview_decoder=str(tmp_path / "taesd")))
    fast = pipe.previews()
    assert fast is not pipe and fast.space.fast and fast.text_encoder is pipe.text_encoder and fast.unet is pipe.unet
    decoder = Counter(fast.space.tiny.decoder)
    vae = Counter(pipe.space.vae.decoder)
    try:
        out = fast(guide_image(), prompt="a red cat", seed=0, num_images=2, progress=False, output_type="uint8")
        assert out.images.shape == (2, R, R, 3) and decoder.calls == 1 and vae.calls == 0
    finally:
        decoder.remove()
        vae.remove()
    assert pipe.replace(config=replace(pipe.config, preview_decoder=None)).previews().space is pipe.space


# ----- the embedded default stays light --------------------------------------------------------------------------


@pytest.mark.slow  # a fresh interpreter imports torch and diffusers
def test_pixel_models_need_no_transformers_and_latent_ones_say_so(parts, tmp_path):
    """With transformers absent (as before latent models), the embedded default loads and edits; a latent model
    fails with a message saying what to install. sdedit imports transformers only to load a latent model."""
    folder = tiny_sd.save_folder(tmp_path / "sd", parts)
    code = (
        "import sys; sys.modules['transformers'] = None\n"  # what `import transformers` sees when it is not installed
        "import numpy as np; from sdedit import SDEditPipeline, errors\n"
        "p = SDEditPipeline.from_pretrained(None)\n"
        "p(np.zeros((64, 64, 3), np.uint8), num_inference_steps=2, progress=False)\n"
        f"try: SDEditPipeline.from_pretrained({str(folder)!r})\n"
        "except errors.ModelLoadError as exc: print(exc)\n"
    )
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "need the transformers package" in out.stdout
    for path in (REPO / "sdedit").glob("*.py"):  # the engine imports it nowhere at module level
        for line in path.read_text().splitlines():
            assert not line.startswith(("import transformers", "from transformers")), path


# ----- SDXL: two text encoders, size conditioning ------------------------------------------------------------------


@pytest.fixture(scope="module")
def xl_folder(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("xl")
    parts = tiny_sd.tiny_xl_components(tmp)
    return parts, tiny_sd.save_xl_folder(tmp / "sdxl", parts)


@pytest.mark.parametrize(
    ("negative_prompt", "guidance_scale"), [("blur", 3.0), (None, 3.0), (None, 1.0)]
)  # an empty negative prompt is zeros on SDXL (force_zeros_for_empty_prompt)
def test_sdxl_equals_diffusers_img2img(xl_folder, negative_prompt, guidance_scale):
    from diffusers import DDIMScheduler, StableDiffusionXLImg2ImgPipeline

    parts, folder = xl_folder
    loading.clear_cache()
    pipe = SDEditPipeline.from_pretrained(str(folder))
    assert pipe.config.family == "sdxl" and pipe.text_encoder.pooled and pipe.config.resolution == R
    kw = dict(prompt="a red cat", negative_prompt=negative_prompt, guidance_scale=guidance_scale)
    settings = pipe.check_inputs(strength=0.6, num_inference_steps=10, sampler="ddim", **kw)
    scheduler = DDIMScheduler.from_config(
        parts["scheduler"].config, timestep_spacing="trailing", set_alpha_to_one=True, prediction_type="epsilon"
    )
    reference = StableDiffusionXLImg2ImgPipeline.from_pretrained(str(folder), scheduler=scheduler)
    assert_same_latents(pipe, settings, reference, **kw)


def test_sdxl_masks_keep_every_pixel_and_prompts_matter(xl_folder):
    _, folder = xl_folder
    pipe = SDEditPipeline.from_pretrained(str(folder))
    mask = np.zeros((R, R), np.float32)
    mask[10:40, 20:55] = 1.0
    a = edit(pipe, mask_image=mask, prompt="a red cat").images[0]
    assert np.array_equal(a[mask == 0], guide_image()[mask == 0])
    assert not np.array_equal(a, edit(pipe, mask_image=mask, prompt="a blue dog").images[0])
    count = Counter(pipe.unet)
    try:
        edit(pipe, prompt="a red cat", guidance_scale=4.0, num_images=2)
        assert count.calls == 6 and set(count.batches) == {4}  # one batched call per step under guidance
    finally:
        count.remove()
