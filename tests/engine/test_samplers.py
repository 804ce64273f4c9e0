"""The noising formulas and the reference loop, against the paper and the official code."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler

from sdedit.noise import NoiseSource
from sdedit.samplers import (
    DDPMSchedule,
    Guide,
    perturb_ve,
    perturb_vp,
    sample_ddpm,
    steps_for,
    ve_sigma,
    ve_sigmas,
    vp_sigma,
    vp_timesteps,
)


def test_vp_perturbation_is_exact():
    sched = DDPMScheduler()
    x0 = torch.rand(2, 3, 8, 8) * 2 - 1
    z = torch.randn_like(x0)
    for t in (0, 1, 250, 499, 999):
        a = sched.alphas_cumprod[t]
        got = perturb_vp(x0, a, z)
        expected = torch.sqrt(a) * x0 + torch.sqrt(1 - a) * z
        assert torch.equal(got, expected)
        # diffusers' own forward process agrees
        assert torch.allclose(got, sched.add_noise(x0, z, torch.tensor([t, t])), atol=1e-6)
        # the sigma view: x / sqrt(abar) = x0 + sigma z
        assert torch.allclose(got / a.sqrt(), x0 + vp_sigma(a) * z, atol=1e-4)


def test_ve_perturbation_and_sigma_schedule_are_exact():
    x0 = torch.rand(1, 3, 8, 8)
    z = torch.randn_like(x0)
    assert torch.equal(perturb_ve(x0, 3.5, z), x0 + 3.5 * z)
    assert float(ve_sigma(0.0, 0.01, 348.0)) == pytest.approx(0.01)
    assert float(ve_sigma(1.0, 0.01, 348.0)) == pytest.approx(348.0)
    assert float(ve_sigma(0.5, 0.01, 348.0)) == pytest.approx(0.01 * (348 / 0.01) ** 0.5)
    s = ve_sigmas(0.5, 100, 0.01, 348.0)
    assert len(s) == 51  # the paper's grid t = t0 n / N, n = N..0
    assert float(s[0]) == pytest.approx(float(ve_sigma(0.5, 0.01, 348.0)), rel=1e-6)
    assert float(s[-1]) == pytest.approx(0.01)
    assert torch.all(s[1:] < s[:-1])


def test_pipeline_noised_guide_matches_formulas(vp_pipe, ve_pipe):
    x0 = torch.rand(1, 3, 16, 16)
    z = torch.randn_like(x0)
    got = vp_pipe.noised(x0, 0.5, z)
    a = vp_pipe.scheduler.alphas_cumprod[499]  # the official t = 500 starts from abar[t - 1]
    assert torch.equal(got, a.sqrt() * x0 + (1 - a).sqrt() * z)
    got = ve_pipe.noised(x0, 0.3, z, num_inference_steps=100)
    cfg = ve_pipe.scheduler.config
    sigma = cfg.sigma_min * (cfg.sigma_max / cfg.sigma_min) ** 0.3
    assert torch.allclose(got, x0 + sigma * z, rtol=1e-5)


def test_timesteps_match_official_and_diffusers_grids():
    assert vp_timesteps(1000, 1000, 0.5) == list(range(499, -1, -1))
    assert vp_timesteps(1000, 1000, 1.0)[0] == 999
    assert steps_for(20, 0.01) == 1 and steps_for(20, 1.0) == 20 and steps_for(50, 0.5) == 25
    for cls in (DDIMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler):
        for n in (10, 20, 25, 50):
            sched = cls.from_config(DDPMScheduler().config, timestep_spacing="trailing")
            sched.set_timesteps(n)
            ours = vp_timesteps(1000, n, 1.0)
            assert [int(t) for t in sched.timesteps] == ours, (cls.__name__, n)


# ----- the official loop, written from scratch the way ermongroup/SDEdit's image_editing.py does it -----


def official_sdedit(model, x0, keep, betas, t, gens, fix_off_by_one):
    """runners/image_editing.py, with its names. keep = the official mask (1 = keep). Noise is drawn per
    sample, first e, then z for i = t-1 .. 1 (the official z at i = 0 is multiplied by 0 anyway)."""
    n = x0.shape[0]

    def randn():
        return torch.cat([torch.randn((1, *x0.shape[1:]), generator=g) for g in gens])

    alphas = 1.0 - betas
    a = alphas.cumprod(dim=0)
    alphas_cumprod_prev = torch.cat([torch.ones(1), a[:-1]])
    posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - a)
    logvar = torch.log(torch.clamp(posterior_variance, min=1e-20))
    e = randn()
    x = x0 * a[t - 1].sqrt() + e * (1.0 - a[t - 1]).sqrt()
    for i in reversed(range(t)):
        tt = torch.ones(n) * i
        model_output = model(x, tt)
        weighted_score = betas / torch.sqrt(1 - a)
        mean = 1 / torch.sqrt(alphas[i]) * (x - weighted_score[i] * model_output)
        x_ = mean + torch.exp(0.5 * logvar[i]) * randn() if i > 0 else mean
        if keep is None:
            x = x_
            continue
        level = i - 1 if fix_off_by_one else i
        x = x0 * a[level].sqrt() + e * (1.0 - a[level]).sqrt() if level >= 0 else x0.clone()
        x = torch.where(keep.bool().expand_as(x), x, x_)
    return x


@pytest.fixture
def eps_model():
    from tests.conftest import tiny_vp_unet

    unet = tiny_vp_unet()

    def call(x, t):
        with torch.no_grad():
            return unet(x, t).sample

    return call


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("official_timing", [False, True])
def test_reference_sampler_equals_official_loop(eps_model, masked, official_timing):
    betas = DDPMScheduler().betas
    t = 60  # t0 = 0.06: 60 steps keep the test fast; the loop is the same for any t
    x0 = torch.rand(2, 3, 16, 16) * 2 - 1
    keep = None
    if masked:
        keep = torch.ones(1, 1, 16, 16)
        keep[..., 4:12, 4:12] = 0
    seeds = [3, 4]
    theirs = official_sdedit(
        eps_model, x0, keep, betas, t, [torch.Generator().manual_seed(s) for s in seeds], not official_timing
    )
    noise = NoiseSource.from_seeds(seeds)
    guide = Guide(x0, noise.randn_like(x0), strength=None if keep is None else 1 - keep, official=official_timing)
    schedule = DDPMSchedule(betas, vp_timesteps(1000, 1000, t / 1000), official_mask_timing=official_timing)
    ours = sample_ddpm(eps_model, guide, schedule, noise)
    assert torch.allclose(ours, theirs, atol=2e-5, rtol=1e-4), (ours - theirs).abs().max()
    if masked and not official_timing:
        # the fix: the kept region ends as the guide itself; the official loop leaves it noisy
        assert torch.equal(ours[..., :4, :], x0[..., :4, :])
    if masked and official_timing:
        assert not torch.equal(ours[..., :4, :], x0[..., :4, :])


def official_sdedit_repeats(model, x0, keep, betas, t, gens, fix_off_by_one, sample_step):
    """The official outer loop: each repeat draws a fresh e, and only the editable region of its output
    (keep != 1) is carried into the next repeat's x0; the kept region stays the original guide."""
    x0 = x0.clone()
    for _ in range(sample_step):
        x = official_sdedit(model, x0, keep, betas, t, gens, fix_off_by_one)
        editable = (keep != 1).expand_as(x)
        x0[editable] = x[editable]
    return x


@pytest.mark.parametrize("repeats", [2, 3])
@pytest.mark.parametrize("official_timing", [False, True])
def test_reference_repeats_under_a_mask_equal_official_loop(vp_pipe, repeats, official_timing):
    """K repeats through the pipeline, given the same noise, match the official loop element-wise."""
    betas = vp_pipe.scheduler.betas
    t = 40
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    mask = np.zeros((16, 16), np.float32)
    mask[3:11, 5:13] = 1.0  # binary, white = may change
    seeds = [7]
    ours = vp_pipe(
        img,
        mask,
        strength=t / 1000,
        sampler="reference",
        num_inference_steps=1000,
        repeats=repeats,
        seed=seeds,
        output_type="model",
        progress=False,
        official_mask_timing=official_timing,
    ).images
    x0 = torch.from_numpy(img.astype(np.float32)).permute(2, 0, 1)[None] / 255.0 * 2 - 1
    keep = 1 - torch.from_numpy(mask)[None, None]
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    model = vp_pipe.model_fn()
    theirs = official_sdedit_repeats(model, x0, keep, betas, t, gens, not official_timing, repeats)
    # float32 rounding only: the official loop keeps its coefficients in float32, ours are float64 (measured
    # 1.1e-5 at K = 2 and 1.7e-5 at K = 3; the old whole-output hand-off was off by 0.035 under official timing)
    assert (ours - theirs).abs().max() <= 2e-5, (ours - theirs).abs().max()
    kept = torch.from_numpy(mask == 0).expand_as(ours)
    if not official_timing:  # the kept region ends as the guide itself, bit for bit
        assert torch.equal(ours[kept], x0.expand_as(ours)[kept])


def test_reference_with_fewer_steps_is_respaced_ddpm(eps_model):
    """A strided grid uses alpha = abar_t / abar_prev; with every step it reduces to the official betas."""
    betas = DDPMScheduler().betas
    x0 = torch.rand(1, 3, 16, 16) * 2 - 1
    noise = NoiseSource.from_seeds([0])
    guide = Guide(x0, noise.randn_like(x0))
    levels = vp_timesteps(1000, 50, 0.5)
    assert levels == list(range(499, -1, -20))
    out = sample_ddpm(eps_model, guide, DDPMSchedule(betas, levels), noise)
    assert out.shape == x0.shape and torch.isfinite(out).all()


def test_callback_sees_every_step_with_x0_prediction(vp_pipe):
    seen = []
    img = np.full((16, 16, 3), 128, np.uint8)
    vp_pipe(img, strength=0.5, num_inference_steps=20, sampler="ddim", seed=0, callback=seen.append, progress=False)
    assert [s.step for s in seen] == list(range(10))
    assert all(s.total == 10 for s in seen)
    assert seen[0].x.shape == seen[0].x0_pred.shape == (1, 3, 16, 16)
    levels = [s.level for s in seen]
    assert levels == sorted(levels, reverse=True)


def test_repeats_run_sequentially_and_report_progress(vp_pipe):
    seen = []
    img = np.full((16, 16, 3), 128, np.uint8)
    out = vp_pipe(
        img,
        strength=0.5,
        num_inference_steps=10,
        sampler="ddim",
        repeats=3,
        seed=0,
        callback=seen.append,
        progress=False,
    )
    assert [s.step for s in seen] == list(range(15))
    assert out.metadata["model_evaluations"] == 15


@pytest.mark.parametrize("sampler", ["dpmpp", "euler_a", "reference"])
def test_on_start_sees_the_perturbed_guide(vp_pipe, sampler):
    """The first frame of an animation: exactly the noised guide the pass starts from (VP form)."""
    starts = []
    img = np.full((16, 16, 3), 128, np.uint8)
    kw = dict(strength=0.5, sampler=sampler, num_inference_steps=20, seed=3, progress=False, output_type="model")
    vp_pipe(img, on_start=lambda k, x: starts.append((k, x.clone())), repeats=2, **kw)
    assert [k for k, _ in starts] == [0, 1]
    x0 = torch.zeros(1, 3, 16, 16) + (128 / 255 * 2 - 1)
    e = NoiseSource.from_seeds([3]).randn((3, 16, 16))
    a = DDPMScheduler().alphas_cumprod[vp_timesteps(1000, 20, 0.5)[0]]
    assert torch.allclose(starts[0][1], a.sqrt() * x0 + (1 - a).sqrt() * e, atol=1e-5)


def test_on_start_for_ve(ve_pipe):
    starts = []
    ve_pipe(
        np.zeros((16, 16, 3), np.uint8),
        strength=0.3,
        num_inference_steps=10,
        seed=0,
        progress=False,
        on_start=lambda k, x: starts.append(x),
    )
    sigma0 = float(ve_sigmas(0.3, 10, 0.01, 348.0)[0])
    e = NoiseSource.from_seeds([0]).randn((3, 16, 16))
    assert torch.allclose(starts[0], sigma0 * e, rtol=1e-4, atol=1e-4)
