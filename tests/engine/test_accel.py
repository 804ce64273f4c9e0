"""The fast path computes the same function as the plain one: exactly (fp32) or within a measured bound (half)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler, ScoreSdeVeScheduler
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from diffusers.models.downsampling import FirDownsample2D, downsample_2d
from diffusers.models.upsampling import FirUpsample2D, upsample_2d

from sdedit import SDEditPipeline
from sdedit.accel import (
    AcceleratedPipeline,
    AccelOptions,
    FastModel,
    measure_error,
    plain_model_fn,
    prepare_unet,
    probe_inputs,
    set_sdpa,
)
from sdedit.fir import FirResample, patch_fir
from tests.conftest import tiny_ve_unet, tiny_vp_unet

# Measured on CPU (torch 2.13, tiny random models, 6 levels across the schedule): bf16 rel_l2 0.012 (VP) and
# 0.028 (VE, Fourier embedding in fp32); fp16 0.0015 / 0.022. The bounds leave ~2x headroom.
BF16_BOUND = {"vp": 0.03, "ve": 0.06}


@pytest.mark.parametrize("kernel", [(1, 3, 3, 1), (1, 2, 5, 3)])
@pytest.mark.parametrize("impl", ["transpose", "phase"])
def test_fir_resample_equals_upfirdn2d(kernel, impl):
    x = torch.randn(2, 5, 12, 10)
    assert torch.allclose(FirResample(True, kernel, impl)(x), upsample_2d(x, kernel=kernel), atol=1e-5)
    assert torch.allclose(FirResample(False, kernel, impl)(x), downsample_2d(x, kernel=kernel), atol=1e-5)


def test_fir_resample_equals_fir_modules():
    x = torch.randn(1, 3, 8, 8)
    assert torch.allclose(FirResample(True)(x), FirUpsample2D(8, out_channels=8)(x), atol=1e-5)
    assert torch.allclose(FirResample(False)(x), FirDownsample2D(8, out_channels=8)(x), atol=1e-5)
    with pytest.raises(ValueError):
        FirResample(True, (1, 1))


def test_patch_fir_keeps_the_function():
    unet = tiny_ve_unet(32)
    patched = copy.deepcopy(unet)
    n = patch_fir(patched)
    assert n == 5  # down: resnet_down's lambda + FirDownsample2D; up: resnet_up's lambda + 2 FirUpsample2D
    assert patch_fir(tiny_vp_unet()) == 0
    x, sigma = torch.randn(2, 3, 32, 32), torch.tensor([0.5, 40.0])
    with torch.no_grad():
        assert torch.allclose(patched(x, sigma).sample, unet(x, sigma).sample, atol=1e-5)


def test_sdpa_is_set_and_is_the_default():
    unet = tiny_vp_unet()
    layers = [m for m in unet.modules() if isinstance(m, Attention)]
    assert layers and all(isinstance(m.processor, AttnProcessor2_0) for m in layers)  # diffusers' default
    assert set_sdpa(unet) == len(layers)


@pytest.mark.parametrize("sde", ["vp", "ve"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_fp32_fast_model_equals_plain(sde, channels_last):
    unet = tiny_vp_unet(32) if sde == "vp" else tiny_ve_unet(32)
    fast = FastModel(prepare_unet(unet, torch.float32, AccelOptions(channels_last=channels_last)), torch.float32)
    fast.channels_last = channels_last
    plain = plain_model_fn(unet)
    sched = DDPMScheduler() if sde == "vp" else ScoreSdeVeScheduler(sigma_max=348.0)
    for x, level in probe_inputs(sde, (2, 3, 32, 32), sched, levels=3, seed=1):
        with torch.no_grad():
            ref = plain(x, level)
            out = fast(x, level)
        assert out.dtype == torch.float32 and out.is_contiguous()
        assert (out - ref).abs().max() <= 1e-5 * max(1.0, ref.abs().max().item())


def test_prepare_leaves_the_original_alone():
    unet = tiny_ve_unet()
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    fast = prepare_unet(unet, torch.bfloat16)
    assert all(torch.equal(before[k], v) for k, v in unet.state_dict().items())
    assert next(unet.parameters()).dtype == torch.float32
    assert fast.time_proj.weight.dtype == torch.float32
    assert torch.equal(fast.time_proj.weight, unet.time_proj.weight)  # the fp32 original, not a rounded copy


@pytest.mark.parametrize("sde", ["vp", "ve"])
def test_bf16_error_is_within_the_measured_bound(sde):
    unet = tiny_vp_unet(32) if sde == "vp" else tiny_ve_unet(32)
    sched = DDPMScheduler() if sde == "vp" else ScoreSdeVeScheduler(sigma_max=380.0)
    inputs = probe_inputs(sde, (2, 3, 32, 32), sched, levels=6, seed=2)
    err = measure_error(plain_model_fn(unet), FastModel(prepare_unet(unet, torch.bfloat16), torch.bfloat16), inputs)
    assert err["finite"] and err["inputs"] == 6
    assert 0 < err["rel_l2"] < BF16_BOUND[sde], err


def test_fourier_embedding_in_fp32_matters_for_ve():
    unet = tiny_ve_unet(32)
    inputs = probe_inputs("ve", (2, 3, 32, 32), ScoreSdeVeScheduler(sigma_max=380.0), levels=6, seed=3)
    plain = plain_model_fn(unet)
    kept = measure_error(plain, FastModel(prepare_unet(unet, torch.bfloat16), torch.bfloat16), inputs)
    rounded_unet = prepare_unet(unet, torch.bfloat16, AccelOptions(fp32_fourier=False))
    rounded = measure_error(plain, FastModel(rounded_unet, torch.bfloat16), inputs)
    assert kept["rel_l2"] < 0.5 * rounded["rel_l2"], (kept, rounded)


def test_measure_error_flags_nan():
    def ref(x, level):
        return x

    def bad(x, level):
        return x * float("nan")

    err = measure_error(ref, bad, [(torch.ones(1, 3, 4, 4), torch.zeros(1))])
    assert not err["finite"]


def test_compile_is_optional_and_guarded(monkeypatch):
    unet = tiny_vp_unet()
    with pytest.raises(ValueError):
        FastModel(unet, torch.float32, compile_mode="fastest")

    def broken(*args, **kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", broken)
    fast = FastModel(unet, torch.float32, compile_mode="default")
    assert fast.notes and "eager" in fast.notes[0]
    x = torch.randn(1, 3, 16, 16)
    assert torch.allclose(fast(x, torch.tensor([5.0])), plain_model_fn(unet)(x, torch.tensor([5.0])), atol=1e-5)


def test_compiled_forward_failing_at_first_call_falls_back():
    unet = tiny_vp_unet()
    fast = FastModel(unet, torch.float32)

    def failing(x, level):
        raise RuntimeError("inductor failed")

    fast._forward = failing
    x = torch.randn(1, 3, 16, 16)
    out = fast(x, torch.tensor([3.0]))
    assert torch.allclose(out, plain_model_fn(unet)(x, torch.tensor([3.0])), atol=1e-5)
    assert fast.notes and fast._forward == fast._eager


def test_cuda_graph_option_is_harmless_on_cpu():
    unet = tiny_vp_unet()
    fast = FastModel(unet, torch.float32, cuda_graph=True)
    x = torch.randn(1, 3, 16, 16)
    assert torch.allclose(fast(x, torch.tensor([7.0])), plain_model_fn(unet)(x, torch.tensor([7.0])), atol=1e-5)
    assert fast.evaluations == 1


def _pipes(sde: str):
    if sde == "vp":
        unet, sched = tiny_vp_unet(), DDPMScheduler(num_train_timesteps=1000)
    else:
        unet, sched = tiny_ve_unet(), ScoreSdeVeScheduler(sigma_max=348.0, snr=0.075)
    return SDEditPipeline(unet, sched), AcceleratedPipeline(unet, sched)


@pytest.mark.parametrize(
    "sde,kwargs",
    [
        ("vp", dict(sampler="dpmpp", num_inference_steps=10)),
        ("vp", dict(sampler="ddim", num_inference_steps=10, repeats=2)),
        ("vp", dict(sampler="euler_a", num_inference_steps=10, num_images=2)),
        ("vp", dict(sampler="reference", num_inference_steps=40, masked=True)),
        ("ve", dict(sampler="reference", num_inference_steps=20, snr=0.075)),
    ],
)
def test_accelerated_pipeline_equals_plain_pipeline(sde, kwargs, photo):
    plain, fast = _pipes(sde)
    kwargs = dict(kwargs)
    mask = None
    if kwargs.pop("masked", False):
        mask = np.zeros(photo.shape[:2], np.uint8)
        mask[4:16, 8:24] = 255
    a = plain(photo, mask, strength=0.5, seed=3, output_type="model", progress=False, **kwargs)
    b = fast(photo, mask, strength=0.5, seed=3, output_type="model", progress=False, **kwargs)
    assert b.metadata["dtype"] == "float32" and b.metadata["model_evaluations"] == a.metadata["model_evaluations"]
    assert torch.allclose(a.images, b.images, atol=1e-4)
    assert fast.fast.evaluations == b.metadata["model_evaluations"]


def test_accelerated_pipeline_error_bound_and_warmup():
    unet, sched = tiny_vp_unet(), DDPMScheduler(num_train_timesteps=1000)
    pipe = AcceleratedPipeline(unet, sched, options=AccelOptions(dtype="bfloat16"), reference_unet=unet)
    assert pipe.dtype == torch.bfloat16
    bound = pipe.error_bound(batch=1, levels=3)
    assert bound["dtype"] == "bfloat16" and bound["finite"] and bound["rel_l2"] < BF16_BOUND["vp"]
    assert pipe.warmup(batches=(1, 2), steps=2) > 0
    with pytest.raises(ValueError):
        AcceleratedPipeline(unet, sched).error_bound()


def test_embedded_model_fast_path_and_bf16_bound():
    """The shipped model: the fast path (fp32 on the CPU) gives the plain pipeline's edit, and its bf16 error
    stays small (measured 0.0084 rel L2 over 8 levels; fp16 0.0009)."""
    plain = SDEditPipeline.from_pretrained(None, device="cpu")
    fast = AcceleratedPipeline.from_pretrained(None, device="cpu")
    guide = np.full((40, 30, 3), 200, np.uint8)
    guide[10:30, 5:25] = (250, 180, 40)
    kw = dict(strength=0.5, num_inference_steps=4, seed=1, output_type="model", progress=False)
    assert torch.allclose(plain(guide, **kw).images, fast(guide, **kw).images, atol=1e-4)
    half = AcceleratedPipeline.from_pretrained(None, device="cpu", dtype="bfloat16", keep_reference=True)
    bound = half.error_bound(batch=1, levels=4)
    assert bound["finite"] and bound["rel_l2"] < 0.02, bound


def test_the_app_serves_cuda_with_the_fast_path_and_the_cpu_with_the_plain_one(monkeypatch):
    """models.get_pipeline picks AcceleratedPipeline where use_accel says so (CUDA by default), warms it at
    load, and its edits equal the plain pipeline's for the same seeds (forced on here, on the CPU)."""
    from sdedit.accel import AcceleratedPipeline
    from sdedit.studio import jobs, limits, models

    assert models.use_accel(torch.device("cuda")) and not models.use_accel(torch.device("cpu"))
    monkeypatch.setenv("SPACES_ZERO_GPU", "1")
    assert not models.use_accel(torch.device("cuda"))  # graphs captured at start-up would not survive ZeroGPU

    guide = np.zeros((64, 64, 3), np.uint8)
    guide[16:48, 16:48] = (230, 80, 60)
    settings = jobs.EditSettings(strength=0.5, steps=8, seed=3)
    models.drop_pipelines()
    plain = jobs.run_edit(guide, None, settings, animate=False, batch=False).images[0]
    monkeypatch.setattr(limits, "ACCEL", "1")
    models.drop_pipelines()
    try:
        assert jobs.warm_up() > 0
        pipe = models.get_pipeline(None)
        assert isinstance(pipe, AcceleratedPipeline) and pipe.warmup_s is not None
        fast = jobs.run_edit(guide, None, settings, animate=False, batch=False).images[0]
    finally:
        models.drop_pipelines()
    diff = np.abs(np.asarray(fast, np.int16) - np.asarray(plain, np.int16)).max()
    assert diff <= 1, diff
