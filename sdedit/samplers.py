"""SDEdit's perturb-then-denoise loops, one short function per sampler.

Every sampler starts from the guide perturbed to the strength's noise level and integrates the reverse
process to level 0. They share one view of the noise: VP samples are sqrt(abar) x0 + sqrt(1 - abar) e,
VE samples are x0 + sigma e, and x / sqrt(abar) = x0 + sigma e makes the two the same family.

Masked editing (`Guide.strength`: a mask is a strength map of {0, 1}) projects after every step: the kept
region is the guide re-noised to the level the sample is *now* at, with the start noise e, and exactly the
guide after the last step. The official code re-noised to the level it had just left (an off-by-one), and its last step
left the kept region slightly noisy; `official_mask_timing=True` reproduces that for comparisons.

Every loop has one keyword signature, `loop(model, guide, schedule, noise, *, callback=None,
on_start=None)`, and walks its own schedule object (`DDPMSchedule`, `SchedulerSchedule`, `VESchedule`);
`registry` builds the schedule for a model and settings and names the loop. A loop supplies one thing to
the shared pieces, how the guide is put at a noise level (`Guide.perturb`), so masked editing
(`Guide.project`) is written once for all of them. Models are plain callables: `eps_model(x, t)` for VP
(integer-valued t) and `score_model(x, sigma)` for VE. Both get a float32 batch in the model's space
(`adapters`) and a (B,) level tensor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from .noise import NoiseSource

Tensor = torch.Tensor
EpsModel = Callable[[Tensor, Tensor], Tensor]
ScoreModel = Callable[[Tensor, Tensor], Tensor]


@dataclass
class StepInfo:
    """What a callback sees after each step: the sample and the model's current guess of x0."""

    step: int
    total: int
    level: float
    x: Tensor
    x0_pred: Tensor


StepCallback = Callable[[StepInfo], None]
StartCallback = Callable[[Tensor], None]  # receives the perturbed guide x(t0) each pass starts from


@dataclass
class Guide:
    """The guide in the model's space, the noise e that perturbs it, and where and when it may change.

    `perturb(x0, level, e)` puts the guide at a noise level in the sampler's own parameterisation; it is the
    one piece a sampler supplies, so that masked editing (`project`) is written once for all of them.

    `strength` (optional, broadcasts against x0) is each element's t0 as a fraction of the run's, and it is the
    one mechanism for masks and strength maps alike: an element follows the guide re-noised to the current
    level until the reverse process reaches its own t0, then it is free (Differential Diffusion, Levin and
    Fried 2023, on SDEdit's reverse SDE). With n steps, an element of strength m is free for the last
    round(m n) of them, the rule `steps_for` applies to the whole run: 1 is free throughout (plain SDEdit), 0 is
    kept exactly, and a mask is a map of {0, 1}. A mask resampled to the model's resolution has fractional
    values at its edges, and they mean the same as any other fraction: a later start. None = all free.

    `official`: the official code's masking instead, every element of strength > 0 free throughout and
    the rest re-noised to the level just left (`official_mask_timing`; a sampler's schedule says which
    levels it passes).
    """

    x0: Tensor
    noise: Tensor
    strength: Tensor | None = None
    official: bool = False
    perturb: Callable[[Tensor, Tensor, Tensor], Tensor] | None = None

    def at(self, level) -> Tensor:
        """The guide perturbed to `level` with the start noise e (the kept region while the edit runs)."""
        return self.perturb(self.x0, level, self.noise)

    def mask_at(self, step: tuple[int, int]) -> Tensor | None:
        """The elements that are free in step k of n (`step` = (k, n)), 1 = free; None = all of them."""
        if self.strength is None:
            return None
        if self.official:
            return (self.strength > 0).to(self.x0.dtype)
        k, n = step
        return (torch.round(self.strength * n) >= n - k).to(self.x0.dtype)

    def project(self, x: Tensor, level, *, step: tuple[int, int], last: bool = False) -> Tensor:
        """Masked editing: where not yet free, the guide re-noised to `level`; after the last step, the guide."""
        mask = self.mask_at(step)
        if mask is None:
            return x
        kept = self.x0 if last else self.at(level)
        return mask * x + (1.0 - mask) * kept


# ----- noise levels -----------------------------------------------------------------------------------


def _scalar(value: Tensor | float, like: Tensor) -> Tensor:
    """A noise level for arithmetic with `like`. A host number stays a 0-dim CPU tensor (passed to the
    kernel as an argument); copying it to the GPU would be a blocking host-to-device copy every step."""
    t = torch.as_tensor(value, dtype=like.dtype)
    return t if t.dim() == 0 or t.device == like.device else t.to(like.device)


def perturb_vp(x0: Tensor, alpha_cumprod: Tensor | float, noise: Tensor) -> Tensor:
    """x(t) = sqrt(abar) x0 + sqrt(1 - abar) z."""
    a = _scalar(alpha_cumprod, x0)
    return a.sqrt() * x0 + (1.0 - a).sqrt() * noise


def perturb_ve(x0: Tensor, sigma: Tensor | float, noise: Tensor) -> Tensor:
    """x(t) = x0 + sigma(t) z."""
    return x0 + _scalar(sigma, x0) * noise


def vp_sigma(alpha_cumprod: Tensor) -> Tensor:
    """The VE-equivalent noise level of a VP sample: x / sqrt(abar) = x0 + sigma z."""
    return ((1.0 - alpha_cumprod) / alpha_cumprod).sqrt()


def ve_sigma(t: Tensor | float, sigma_min: float, sigma_max: float) -> Tensor:
    """sigma(t) = sigma_min (sigma_max / sigma_min)^t, t in [0, 1]."""
    t = torch.as_tensor(t, dtype=torch.float64)
    return sigma_min * (sigma_max / sigma_min) ** t


def steps_for(num_inference_steps: int, strength: float) -> int:
    """How many of a full schedule's steps an edit at `strength` runs (at least one)."""
    return max(1, min(num_inference_steps, round(strength * num_inference_steps)))


def vp_timesteps(num_train_timesteps: int, num_inference_steps: int, strength: float) -> list[int]:
    """The trailing grid of `num_inference_steps` levels over [0, T), cut to the levels at or below t0.

    With N = T and strength 0.5 this is 499, 498, ..., 0: the official loop's t = 500.
    """
    T = num_train_timesteps
    grid = [round(T - i * T / num_inference_steps) - 1 for i in range(num_inference_steps)]
    return grid[num_inference_steps - steps_for(num_inference_steps, strength) :]


def ve_sigmas(strength: float, num_inference_steps: int, sigma_min: float, sigma_max: float) -> Tensor:
    """The paper's grid t = t0 n / N for n = N..0, as sigmas (float32, N + 1 values, last = sigma_min)."""
    n = steps_for(num_inference_steps, strength)
    t = torch.linspace(strength, 0.0, n + 1, dtype=torch.float64)
    return ve_sigma(t, sigma_min, sigma_max).float()


def _batch(level: Tensor | float, x: Tensor) -> Tensor:
    """The (B,) level tensor the model gets. A level already on x's GPU is broadcast there: float() of a
    device tensor would be a host-device sync."""
    if isinstance(level, Tensor) and level.device == x.device and level.device.type != "cpu":
        return level.to(torch.float32).reshape(1).expand(x.shape[0])
    return torch.full((x.shape[0],), float(level), device=x.device, dtype=torch.float32)


# ----- the model's x0 limits: clipping or dynamic thresholding, as its scheduler config asks -------------


@dataclass(frozen=True)
class X0Limit:
    """How a VP model's predicted x0 is kept in range: clipped to [-clip, clip], or dynamically thresholded
    (Imagen: per sample, s = the `ratio` quantile of |x0|, at least 1 and at most `max_value`; x0 -> clamp(x0,
    -s, s) / s). Read from the model's scheduler config (`clip_sample`, `thresholding`, ...)."""

    clip: float | None = None
    ratio: float | None = None
    max_value: float = 1.0

    @classmethod
    def from_config(cls, config) -> X0Limit | None:
        get = config.get if isinstance(config, dict) else lambda k, d=None: getattr(config, k, d)
        if get("thresholding", False):
            ratio, max_value = get("dynamic_thresholding_ratio", 0.995), get("sample_max_value", 1.0)
            return cls(ratio=float(ratio), max_value=float(max_value))
        if get("clip_sample", False):
            return cls(clip=float(get("clip_sample_range", 1.0)))
        return None

    def __call__(self, x0: Tensor) -> Tensor:
        if self.ratio is None:
            return x0.clamp(-self.clip, self.clip)
        b = x0.shape[0]
        s = torch.quantile(x0.reshape(b, -1).abs().float(), self.ratio, dim=1)
        s = s.clamp(1.0, self.max_value).to(x0.dtype).view(b, *([1] * (x0.dim() - 1)))
        return torch.maximum(torch.minimum(x0, s), -s) / s


def limit_x0(eps_model: EpsModel, alphas_cumprod: Tensor, limit: X0Limit) -> EpsModel:
    """An eps model whose implied x0 = (x - sqrt(1 - abar) eps) / sqrt(abar) obeys `limit`.

    Every VP sampler only sees eps, so limiting x0 here and returning the eps that goes with it is the same
    as diffusers' `clip_sample` / `thresholding` inside DDIM's step, for every sampler at once.
    """
    abar = alphas_cumprod.to(torch.float32)

    def call(x: Tensor, t: Tensor) -> Tensor:
        eps = eps_model(x, t)
        a = abar.to(x.device)[t.long()].view(-1, *([1] * (x.dim() - 1)))
        x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
        return (x - a.sqrt() * limit(x0)) / (1 - a).sqrt()

    return call


# ----- schedules: what each loop walks through, built by the registry from a model and settings -----------


@dataclass
class DDPMSchedule:
    """The training betas and the integer timesteps to visit, t0's first (see `vp_timesteps`)."""

    betas: Tensor
    timesteps: Sequence[int]
    official_mask_timing: bool = False


@dataclass
class SchedulerSchedule:
    """A fresh diffusers scheduler, already `set_timesteps` (schedulers keep per-run state), and how many of
    its last steps to run. `sigma_space`: its samples are x0 + sigma e (Euler family), not the VP form."""

    scheduler: Any
    num_steps: int
    sigma_space: bool = False


@dataclass
class VESchedule:
    """sigma(t0) down to sigma(0) (see `ve_sigmas`), and the Langevin corrector's snr (None or 0: off)."""

    sigmas: Tensor
    snr: float | None = None
    corrector_steps: int = 1


# Every loop has this signature: loop(model, guide, schedule, noise, *, callback=None, on_start=None) -> x(0).
Loop = Callable[..., Tensor]


# ----- VP: the official DDPM loop ---------------------------------------------------------------------


def sample_ddpm(
    model: EpsModel,
    guide: Guide,
    schedule: DDPMSchedule,
    noise: NoiseSource,
    *,
    callback: StepCallback | None = None,
    on_start: StartCallback | None = None,
) -> Tensor:
    """Ancestral DDPM with fixed-small variance from timesteps[0] down to 0, no noise at the last step.

    With every timestep (t0*T - 1, ..., 0) this is the official SDEdit loop; a strided grid is the same
    sampler respaced (alpha = abar_t / abar_prev), as in improved DDPM.
    """
    guide = replace(guide, perturb=perturb_vp)
    abar = torch.cumprod(1.0 - schedule.betas.double(), 0)
    timesteps = schedule.timesteps
    levels = [*timesteps, -1]
    a = [abar[t] if t >= 0 else abar.new_tensor(1.0) for t in levels]
    x = guide.at(a[0].float())
    if on_start:
        on_start(x)
    n = len(timesteps)
    for k, t in enumerate(timesteps):
        a_t, a_prev = a[k], a[k + 1]
        alpha = a_t / a_prev
        eps = model(x, _batch(t, x))
        mean = (x - ((1 - alpha) / (1 - a_t).sqrt()).float() * eps) / alpha.sqrt().float()
        if k + 1 < n:
            var = (1 - alpha) * (1 - a_prev) / (1 - a_t)
            x_next = mean + var.sqrt().float() * noise.randn_like(x)
        else:
            x_next = mean
        if schedule.official_mask_timing:  # re-noised to the level just left, noisy at the end (see above)
            x_next = guide.project(x_next, a_t.float(), step=(k, n))
        else:
            x_next = guide.project(x_next, a_prev.float(), last=k + 1 == n, step=(k, n))
        if callback:
            x0_pred = (x - (1 - a_t).sqrt().float() * eps) / a_t.sqrt().float()
            callback(StepInfo(k, n, float(t), x_next, x0_pred))
        x = x_next
    return x


# ----- VP: fast samplers through diffusers' schedulers -----------------------------------------------


def sample_scheduler(
    model: EpsModel,
    guide: Guide,
    schedule: SchedulerSchedule,
    noise: NoiseSource,
    *,
    callback: StepCallback | None = None,
    on_start: StartCallback | None = None,
) -> Tensor:
    """Run the last `num_steps` steps of a diffusers scheduler's schedule (DDIM, DPM-Solver++, Euler-a)."""
    scheduler, num_steps, sigma_space = schedule.scheduler, schedule.num_steps, schedule.sigma_space
    begin = len(scheduler.timesteps) - num_steps
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(begin)
    timesteps = scheduler.timesteps[begin:].cpu()  # levels are read on the host: no sync inside the loop
    abar = scheduler.alphas_cumprod.to("cpu", torch.float32)
    a = [abar[int(t)] for t in timesteps] + [abar.new_tensor(1.0)]

    def perturb(x0: Tensor, a_t: Tensor, e: Tensor) -> Tensor:
        x_vp = perturb_vp(x0, a_t, e)
        return x_vp / a_t.sqrt() if sigma_space else x_vp

    guide = replace(guide, perturb=perturb)
    x = guide.at(a[0])
    if on_start:
        on_start(x * a[0].sqrt() if sigma_space else x)
    n = len(timesteps)
    for k, t in enumerate(timesteps):
        x_in = scheduler.scale_model_input(x, t)
        eps = model(x_in, _batch(t, x_in))
        x = scheduler.step(eps, t, x, generator=noise.generators).prev_sample
        x = guide.project(x, a[k + 1], last=k + 1 == n, step=(k, n))
        if callback:
            x0_pred = (x_in - (1 - a[k]).sqrt() * eps) / a[k].sqrt()
            callback(StepInfo(k, n, float(t), x * a[k + 1].sqrt() if sigma_space else x, x0_pred))
    return x


# ----- VE: the paper's Euler-Maruyama, with an optional Langevin corrector ----------------------------


def langevin_correct(model: ScoreModel, x: Tensor, sigma: Tensor, snr: float, noise: NoiseSource) -> Tensor:
    """One Langevin step at fixed sigma, with the step size set per sample from the signal-to-noise ratio.

    score_sde averages the norms over the batch, which makes a sample depend on its batch-mates; per
    sample keeps a batch of N identical to N single runs.
    """
    score = model(x, _batch(sigma, x))
    z = noise.randn_like(x)
    b = x.shape[0]
    ratio = z.reshape(b, -1).norm(dim=1) / score.reshape(b, -1).norm(dim=1).clamp_min(1e-12)
    step = (2 * (snr * ratio) ** 2).view(b, 1, 1, 1)
    return x + step * score + (2 * step).sqrt() * z


def sample_ve(
    model: ScoreModel,
    guide: Guide,
    schedule: VESchedule,
    noise: NoiseSource,
    *,
    callback: StepCallback | None = None,
    on_start: StartCallback | None = None,
) -> Tensor:
    """x = guide + sigma(t0) z, then x <- x + eps^2 score + eps z with eps^2 = sigma_n^2 - sigma_{n-1}^2.

    The last step adds no noise.
    """
    sigmas = schedule.sigmas.to("cpu", torch.float32)  # levels are read on the host: no sync inside the loop
    snr = schedule.snr
    guide = replace(guide, perturb=perturb_ve)
    x = guide.at(sigmas[0])
    if on_start:
        on_start(x)
    n = len(sigmas) - 1
    for k in range(n):
        s, s_next = sigmas[k], sigmas[k + 1]
        if snr:
            for _ in range(schedule.corrector_steps):
                x = langevin_correct(model, x, s, snr, noise)
        score = model(x, _batch(s, x))
        if callback:
            x0_pred = x + s**2 * score
        var = s**2 - s_next**2
        x = x + var * score
        if k + 1 < n:
            x = x + var.sqrt() * noise.randn_like(x)
        x = guide.project(x, s_next, last=k + 1 == n, step=(k, n))
        if callback:
            callback(StepInfo(k, n, float(s), x, x0_pred))
    return x
