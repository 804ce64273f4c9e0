"""The samplers SDEdit Studio offers, in one table: configs, the CLI, the app and every cost estimate read it.

A row says what a person sees (name, label), which SDEs it runs on, what a run costs (network evaluations
for a strength and a schedule), the schedule length it uses when none is given, and how to build its loop
and schedule for a model. Adding a sampler is one loop in `samplers.py` and one row here.

    spec = SAMPLERS["dpmpp"]
    loop, schedule = spec.build(pipe, settings)   # loop(model, guide, schedule, noise, *, callback, on_start)
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .samplers import (
    DDPMSchedule,
    Loop,
    SchedulerSchedule,
    VESchedule,
    sample_ddpm,
    sample_scheduler,
    sample_ve,
    ve_sigmas,
    vp_timesteps,
)

# The schedulers' own clip_sample / thresholding are off: the pipeline limits x0 once, for every sampler that
# follows the model's config (samplers.limit_x0).
# build(pipe, settings, official_mask_timing) -> (loop, schedule). `pipe` is any object with the model's
# diffusers `scheduler` and `num_train_timesteps` (an SDEditPipeline); `settings` has strength,
# num_inference_steps, steps and snr (a pipeline.Settings).
Builder = Callable[..., tuple[Loop, object]]


@dataclass(frozen=True)
class SamplerSpec:
    name: str
    label: str
    builders: Mapping[str, Builder]  # one per SDE it runs on
    default_steps: int | None = 20  # full-schedule length when none is given; None: the model's T
    corrector: frozenset[str] = frozenset()  # SDEs on which `snr` adds Langevin corrector steps
    limits_x0: bool = True  # follows the model's clipping / thresholding (the official reference loop does not)
    for_distilled: bool = False  # offered only to distilled models (a config's `distilled`)
    max_steps: int | None = None  # the longest full schedule it can make (None: the model's T)

    @property
    def sdes(self) -> tuple[str, ...]:
        return tuple(self.builders)

    def build(self, pipe, settings, official_mask_timing: bool = False) -> tuple[Loop, object]:
        return self.builders[pipe.sde](pipe, settings, official_mask_timing)

    def evaluations(self, steps: int, snr: float | None = 0.0, corrector_steps: int = 1, sde: str = "vp") -> int:
        """Network evaluations of one repeat: one per step, plus the corrector's where it is on."""
        if sde in self.corrector and snr:
            return steps * (1 + corrector_steps)
        return steps


def _diffusers(class_name: str, overrides: dict, sigma_space: bool = False) -> Builder:
    """A VP sampler that steps through one of diffusers' schedulers, configured like the model's own."""

    templates: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model's scheduler -> {steps: template}

    def build(pipe, s, official_mask_timing=False):
        # Schedulers keep per-run state, so each run gets its own; a copy of a cached template costs a
        # quarter of from_config + set_timesteps (0.9 against 3.9 ms at load ~7), which a live preview feels.
        per_model = templates.setdefault(pipe.scheduler, {})
        template = per_model.get(s.num_inference_steps)
        if template is None:
            import diffusers

            cls = getattr(diffusers, class_name)
            # the pipeline's model always predicts eps (SDEditPipeline.model_fn converts a v-prediction model)
            config = {"timestep_spacing": "trailing", "prediction_type": "epsilon", **overrides}
            template = cls.from_config(pipe.scheduler.config, **config)
            template.set_timesteps(s.num_inference_steps)  # on the host: the samplers read levels there, no syncs
            per_model[s.num_inference_steps] = template
        return sample_scheduler, SchedulerSchedule(copy.deepcopy(template), s.steps, sigma_space)

    return build


def _ddpm(pipe, s, official_mask_timing=False):
    timesteps = vp_timesteps(pipe.num_train_timesteps, s.num_inference_steps, s.strength)
    return sample_ddpm, DDPMSchedule(pipe.scheduler.betas, timesteps, official_mask_timing)


def _ve_euler_maruyama(pipe, s, official_mask_timing=False):
    cfg = pipe.scheduler.config
    sigmas = ve_sigmas(s.strength, s.num_inference_steps, cfg.sigma_min, cfg.sigma_max)
    return sample_ve, VESchedule(sigmas, s.snr or None, corrector_steps(pipe))


def corrector_steps(pipe) -> int:
    """Langevin corrector steps per level, from the VE scheduler's config."""
    return int(getattr(pipe.scheduler.config, "correct_steps", 1) or 1)


SAMPLERS: dict[str, SamplerSpec] = {
    spec.name: spec
    for spec in (
        SamplerSpec(
            "dpmpp",
            "DPM-Solver++ (2M)",
            {
                "vp": _diffusers(
                    "DPMSolverMultistepScheduler",
                    {"algorithm_type": "dpmsolver++", "solver_order": 2, "thresholding": False},
                )
            },
        ),
        SamplerSpec(
            "ddim",
            "DDIM",
            {
                "vp": _diffusers(
                    "DDIMScheduler", {"clip_sample": False, "thresholding": False, "set_alpha_to_one": True}
                )
            },
        ),
        SamplerSpec("euler_a", "Euler ancestral", {"vp": _diffusers("EulerAncestralDiscreteScheduler", {}, True)}),
        SamplerSpec(
            "lcm",
            "LCM (consistency steps)",
            {"vp": _diffusers("LCMScheduler", {"clip_sample": False, "thresholding": False})},
            default_steps=4,
            for_distilled=True,
            max_steps=50,  # LCMScheduler's original_inference_steps: its grid is a subset of that one
        ),
        SamplerSpec(
            "reference",
            "Reference (paper's SDE loop)",
            {"vp": _ddpm, "ve": _ve_euler_maruyama},
            default_steps=None,
            corrector=frozenset({"ve"}),
            limits_x0=False,
        ),
    )
}


def get(name: str) -> SamplerSpec:
    return SAMPLERS[name]


def names(sde: str, distilled: bool = False) -> tuple[str, ...]:
    """The samplers that run on `sde`, in the order the app lists them (`distilled`: with the rows made for
    distilled models, such as LCM's consistency steps)."""
    return tuple(
        name for name, spec in SAMPLERS.items() if sde in spec.builders and (distilled or not spec.for_distilled)
    )


def label(name: str) -> str:
    spec = SAMPLERS.get(name)
    return spec.label if spec else name


def describe() -> str:
    """The samplers per SDE, in one line (command-line help)."""
    extra = [n for n in names("vp", distilled=True) if n not in names("vp")]
    per_sde = "; ".join(f"{sde.upper()}: {', '.join(names(sde))}" for sde in ("vp", "ve"))
    return f"{per_sde}; distilled models also: {', '.join(extra)}"


def sampler_choices(sde: str, distilled: bool = False) -> list[tuple[str, str]]:
    """(label, name) pairs for a dropdown."""
    return [(SAMPLERS[n].label, n) for n in names(sde, distilled)]


def evaluations(sampler: str, steps: int, snr: float | None = 0.0, corrector_steps: int = 1, sde: str = "vp") -> int:
    """The one cost rule: network evaluations of one repeat of `sampler` over `steps` steps."""
    return SAMPLERS[sampler].evaluations(steps, snr, corrector_steps, sde)


def default_steps(sampler: str, num_train_timesteps: int = 1000) -> int:
    """The full-schedule length a sampler uses when neither the call nor the model's config says."""
    steps = SAMPLERS[sampler].default_steps
    return num_train_timesteps if steps is None else steps
