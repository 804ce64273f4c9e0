"""Correctness against a closed form: Gaussian data N(mu, s^2 I) has an exact score, and SDEdit's output
distribution for a fixed guide is then known analytically.

For a guide g perturbed to level t0 (x = sqrt(a) g + sqrt(1-a) z, or g + sigma z for VE):
* SDE samplers (the reference DDPM loop, Euler-ancestral, the VE Euler-Maruyama loop) sample the posterior
  p(x0 | x_t0): mean mu + k (x_t - sqrt(a) mu), variance s^2 (1-a) / (a s^2 + 1 - a), k = sqrt(a) s^2/(...).
  Over z the output is Gaussian with mean mu + k sqrt(a) (g - mu) and variance k^2 (1 - a) + posterior var.
* ODE samplers (DDIM, DPM-Solver++) are deterministic given x_t0: the probability-flow map is affine,
  x0 = mu + r (x_t - sqrt(a) mu), r = sqrt(s^2 / (a s^2 + 1 - a)), so the variance over z is r^2 (1 - a).
The test standardises every output pixel by the analytic mean and std and checks mean ~ 0, variance ~ 1.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler, ScoreSdeVeScheduler

from sdedit import SDEditPipeline
from sdedit.samplers import ve_sigmas

SIZE = 16
N = 16  # samples: 16 x 3 x 16 x 16 = 12,288 standardised values per case


class GaussianVP(torch.nn.Module):
    """eps(x_t, t) for data N(mu, s^2 I): sqrt(1-a) (x - sqrt(a) mu) / (a s^2 + 1 - a)."""

    def __init__(self, alphas_cumprod, mu, s):
        super().__init__()
        self.register_buffer("abar", alphas_cumprod.double())
        self.mu, self.s = mu, s
        self.config = SimpleNamespace(sample_size=SIZE)

    def forward(self, x, t):
        a = self.abar[t.round().long()].view(-1, 1, 1, 1)
        eps = (1 - a).sqrt() * (x.double() - a.sqrt() * self.mu) / (a * self.s**2 + 1 - a)
        return SimpleNamespace(sample=eps.float())


class GaussianVE(torch.nn.Module):
    """score(x, sigma) for data N(mu, s^2 I): -(x - mu) / (s^2 + sigma^2)."""

    def __init__(self, mu, s):
        super().__init__()
        self.register_buffer("dummy", torch.zeros(1))
        self.mu, self.s = mu, s
        self.config = SimpleNamespace(sample_size=SIZE)

    def forward(self, x, sigma):
        sig = sigma.double().view(-1, 1, 1, 1)
        return SimpleNamespace(sample=(-(x.double() - self.mu) / (self.s**2 + sig**2)).float())


def standardised(out, mean, var):
    z = (out.double() - mean) / torch.sqrt(torch.as_tensor(var, dtype=torch.float64))
    return float(z.mean()), float(z.var())


def guide_u8(seed=0):
    return np.random.default_rng(seed).integers(64, 192, (SIZE, SIZE, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    "sampler,steps,kind",
    [("reference", 1000, "sde"), ("euler_a", 1000, "sde"), ("ddim", 1000, "ode"), ("dpmpp", 200, "ode")],
)
@pytest.mark.parametrize("strength", [0.3, 0.6])
def test_vp_output_matches_analytic_posterior(sampler, steps, kind, strength):
    mu, s = 0.1, 0.25
    sched = DDPMScheduler()
    pipe = SDEditPipeline(GaussianVP(sched.alphas_cumprod, mu, s), sched)
    g_u8 = guide_u8()
    out = pipe(
        g_u8,
        strength=strength,
        num_inference_steps=steps,
        sampler=sampler,
        num_images=N,
        seed=0,
        output_type="model",
        progress=False,
    ).images
    g = torch.from_numpy(g_u8).permute(2, 0, 1).double() / 127.5 - 1
    t0 = round(1000 - (steps - round(strength * steps)) * 1000 / steps) - 1  # the first level of the edit
    a = float(sched.alphas_cumprod[t0])
    denom = a * s**2 + 1 - a
    if kind == "sde":
        k = math.sqrt(a) * s**2 / denom
        mean, var = mu + k * math.sqrt(a) * (g - mu), k**2 * (1 - a) + s**2 * (1 - a) / denom
    else:
        r = math.sqrt(s**2 / denom)
        mean, var = mu + r * math.sqrt(a) * (g - mu), r**2 * (1 - a)
    m, v = standardised(out, mean, var)
    assert abs(m) < 0.06, f"{sampler}: standardised mean {m:.3f}"
    assert abs(v - 1) < 0.1, f"{sampler}: standardised variance {v:.3f}"


@pytest.mark.parametrize("strength", [0.3, 0.5])
def test_ve_output_matches_analytic_posterior(strength):
    mu, s = 0.5, 0.15
    sched = ScoreSdeVeScheduler(sigma_min=0.01, sigma_max=50.0)
    pipe = SDEditPipeline(GaussianVE(mu, s), sched)
    g_u8 = guide_u8(1)
    out = pipe(
        g_u8, strength=strength, num_inference_steps=1000, num_images=N, seed=0, output_type="model", progress=False
    ).images
    g = torch.from_numpy(g_u8).permute(2, 0, 1).double() / 255.0
    sigma0 = float(ve_sigmas(strength, 1000, 0.01, 50.0)[0])
    k = s**2 / (s**2 + sigma0**2)
    mean, var = mu + k * (g - mu), k**2 * sigma0**2 + s**2 * sigma0**2 / (s**2 + sigma0**2)
    m, v = standardised(out, mean, var)
    assert abs(m) < 0.06, f"standardised mean {m:.3f}"
    assert abs(v - 1) < 0.1, f"standardised variance {v:.3f}"


def test_ve_corrector_keeps_the_posterior():
    """Langevin correction at each level leaves the (already exact) marginals where they are."""
    mu, s = 0.5, 0.15
    pipe = SDEditPipeline(GaussianVE(mu, s), ScoreSdeVeScheduler(sigma_min=0.01, sigma_max=50.0))
    g_u8 = guide_u8(2)
    out = pipe(
        g_u8, strength=0.4, num_inference_steps=400, snr=0.1, num_images=N, seed=1, output_type="model", progress=False
    )
    assert out.metadata["model_evaluations"] == 2 * 160
    g = torch.from_numpy(g_u8).permute(2, 0, 1).double() / 255.0
    sigma0 = float(ve_sigmas(0.4, 400, 0.01, 50.0)[0])
    k = s**2 / (s**2 + sigma0**2)
    m, v = standardised(out.images, mu + k * (g - mu), k**2 * sigma0**2 + s**2 * sigma0**2 / (s**2 + sigma0**2))
    assert abs(m) < 0.06 and abs(v - 1) < 0.12, (m, v)


def test_a_wrong_model_fails_the_closed_form():
    """The check has teeth: a score that is off by 20% in s is caught."""
    mu, s = 0.1, 0.25
    sched = DDPMScheduler()
    pipe = SDEditPipeline(GaussianVP(sched.alphas_cumprod, mu, s * 1.2), sched)
    g_u8 = guide_u8()
    out = pipe(
        g_u8,
        strength=0.6,
        num_inference_steps=1000,
        sampler="reference",
        num_images=N,
        seed=0,
        output_type="model",
        progress=False,
    ).images
    g = torch.from_numpy(g_u8).permute(2, 0, 1).double() / 127.5 - 1
    a = float(sched.alphas_cumprod[599])
    denom = a * s**2 + 1 - a
    k = math.sqrt(a) * s**2 / denom
    m, v = standardised(out, mu + k * math.sqrt(a) * (g - mu), k**2 * (1 - a) + s**2 * (1 - a) / denom)
    assert abs(v - 1) > 0.1 or abs(m) > 0.06
