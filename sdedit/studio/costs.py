"""What a model made for a GPU costs on a CPU, as measured, in the page's words.

A Stable Diffusion edit at 512 px on a CPU takes minutes, not seconds (an autoencoder encode, the UNet passes and
a decode, each tens of seconds on two cores). The page must say so instead of looking frozen: the model box
says which models need a GPU, Generate asks for a confirmation on a CPU, and Live starts off with the reason.
The numbers come from the committed measurement (`python -m benchmarks.latent --device cpu`, written to
benchmarks/results/latent-cpu.json: the real sd-turbo architectures with random weights, float32 as the app
runs a CPU), never typed by hand; without that file the words say "minutes" without a number.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..configs import REPO_ROOT, ModelConfig, repo_relative

RESULTS = REPO_ROOT / "benchmarks" / "results" / "latent-cpu.json"


@dataclass(frozen=True)
class CpuCost:
    """A 512 px latent edit on a CPU, measured: one step end to end, each further step, one live preview."""

    edit_s: float  # a one-step edit: encode, one UNet pass, decode
    step_s: float  # each further step (a UNet pass and the sampler)
    preview_s: float | None  # one live preview through the tiny autoencoder
    cores: int
    resolution: int
    source: str  # the results file, relative to the repository

    def edit_seconds(self, unet_calls: int, samples: int = 1) -> float:
        """Roughly what an edit with `unet_calls` UNet passes per sample costs (samples run side by side on a CPU,
        so they cost about as much as one after the other)."""
        return max(1, int(samples)) * (self.edit_s + max(0, int(unet_calls) - 1) * self.step_s)


@lru_cache(maxsize=4)
def _read(path: str) -> CpuCost | None:
    try:
        data = json.loads(Path(path).read_text())
        run = next(r for r in data["runs"] if r.get("dtype") == "fp32" and r.get("scale") == "full")
        edits = {int(e["steps"]): float(e["edit_ms"]) / 1000 for e in run["edits"]}
        one, most = edits[1], max(edits)
        step = (edits[most] - one) / (most - 1) if most > 1 else one
        preview = run.get("previews", {}).get("ms_per_preview")
        cores = int(data["environment"].get("cpu_count") or data["environment"].get("threads") or 0)
    except (OSError, ValueError, KeyError, StopIteration, TypeError):
        return None
    preview_s = float(preview) / 1000 if preview else None
    return CpuCost(one, max(step, 0.0), preview_s, cores, int(run.get("resolution") or 512), repo_relative(path))


def measured_cpu_cost(path: Path | None = None) -> CpuCost | None:
    """The committed measurement (`RESULTS`), or None where this copy of SDEdit Studio has no results file."""
    return _read(str(path or RESULTS))


def duration(seconds: float) -> str:
    """ "about 40 s", "about 3 min", "about 1.5 h": a rough duration in words."""
    if seconds < 90:
        return f"about {max(1, round(seconds))} s"
    minutes = seconds / 60
    if minutes < 90:
        return f"about {math.ceil(minutes)} min"
    return f"about {minutes / 60:.1f} h"


def _where(cost: CpuCost) -> str:
    cores = f"{cost.cores}-core " if cost.cores else ""
    return f"on a {cores}CPU ({cost.source})"


def gpu_note(cfg: ModelConfig) -> str:
    """One sentence for the model box of a model that needs a GPU, on a server without one."""
    cost = measured_cpu_cost()
    if cost is None:
        return f"**Needs a GPU:** this server has none, and an edit with {cfg.name} takes minutes on its CPU."
    return (
        f"**Needs a GPU:** this server has none. A {cost.resolution} px edit took {duration(cost.edit_s)} for one "
        f"step and {duration(cost.step_s)} for each further step {_where(cost)}; Generate asks you to confirm."
    )


def cpu_refusal(cfg: ModelConfig, unet_calls: int, samples: int) -> str:
    """Why Generate waits for a confirmation: the model, what this edit would cost here, what to tick."""
    cost = measured_cpu_cost()
    if cost is None:
        estimate = "this edit would take minutes"
    else:
        passes = f"{unet_calls} UNet pass{'es' if unet_calls != 1 else ''}"
        work = f"{passes} × {samples} sample{'s' if samples != 1 else ''}"
        took = duration(cost.edit_seconds(unet_calls, samples))
        estimate = f"this edit ({work}) would take {took} at the speed measured {_where(cost)}"
    return (
        f"The model {cfg.name} needs a GPU and this server has none: {estimate}. Tick “Run it on this CPU "
        "anyway” under the model box to run it, or choose a model that runs on a CPU."
    )


def live_off_reason(cfg: ModelConfig) -> str:
    """Why Live starts off for a model that needs a GPU, on a CPU."""
    cost = measured_cpu_cost()
    if cost is None or cost.preview_s is None:
        return "Live is off for this model on a CPU: a preview would take minutes. Generate still works."
    return (
        f"Live is off for this model on a CPU: a preview took {duration(cost.preview_s)} {_where(cost)}, far too "
        "slow to follow the brush. Generate still works."
    )
