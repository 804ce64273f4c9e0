"""The models the app serves: which may be loaded, the loaded pipeline, and what the controls show for each.

One pipeline is kept loaded (the loader keeps a small LRU of weights besides); a model that fails to load
leaves the current one serving. The per-model values (samplers, default steps, the note under the dropdown,
the card, the cost hint, the paint canvas's size, whether it takes a prompt and needs a GPU) are read from the
model's config, so the controls follow the model. Latent (Stable Diffusion) models load with their autoencoder
and text encoder (`loading.load_model`).
"""

from __future__ import annotations

import os
import threading

import torch

from .. import loading, registry
from ..configs import ModelConfig, default_config, find_config, is_hub_id, model_configs, traits
from ..errors import InputError, ModelLoadError, SDEditError
from ..pipeline import SDEditPipeline
from ..samplers import steps_for
from . import costs, limits
from .guard import free_memory
from .guides import CANVAS_SIZE

GPU_WORDS = "needs a GPU"


def has_gpu() -> bool:
    """Whether this server edits on a GPU (on ZeroGPU one exists inside each edit's call)."""
    return limits.ZERO_GPU or torch.cuda.is_available()


def model_label(cfg: ModelConfig) -> str:
    """The dropdown's words for a model: its title, and whether it needs a GPU."""
    return f"{cfg.label} · {GPU_WORDS}" if cfg.needs_gpu else cfg.label


def model_choices() -> list[tuple[str, str]]:
    """(label, name) for the model dropdown: the configured models, the embedded default first and the models made
    for a GPU last, their labels saying so."""
    configs = sorted(model_configs().items(), key=lambda kv: kv[1].needs_gpu)  # stable: the default stays first
    return [(model_label(cfg), name) for name, cfg in configs]


def needs_confirmation(cfg: ModelConfig) -> bool:
    """Whether Generate must be confirmed for this model here: it needs a GPU and this server has none."""
    return cfg.needs_gpu and not has_gpu()


def paint_canvas_size(cfg: ModelConfig) -> int:
    """The Paint canvas's side for a model: 256 px, or the model's own canvas where it is larger (512 px for
    Stable Diffusion), so that a drawing has the detail the model paints at."""
    return max(CANVAS_SIZE, int(traits(cfg).canvas))


def unet_calls(cfg: ModelConfig, strength, steps, repeats, guidance_scale=None) -> int:
    """UNet passes of one sample: the steps at this t0, every repeat, two per step under classifier-free guidance."""
    n = steps_for(int(steps), float(strength)) * int(repeats)
    g = cfg.defaults.guidance_scale if guidance_scale is None else float(guidance_scale)
    return n * (2 if cfg.guidance == "cfg" and g > 1 else 1)


def check_device(name, confirmed, strength, steps, repeats, num_samples, guidance_scale=None) -> None:
    """Generate on the page, before anything runs: a model that needs a GPU, on a server without one, runs only
    once the visitor has ticked "Run it on this CPU anyway" (an InputError saying what the edit would cost here
    otherwise). The API is not asked: its callers chose the model and its settings themselves."""
    cfg = config_for(name)
    if confirmed or not needs_confirmation(cfg):
        return
    try:
        calls, samples = unet_calls(cfg, strength, steps, repeats, guidance_scale), max(1, int(num_samples))
    except (TypeError, ValueError):
        calls, samples = 1, 1
    raise InputError(costs.cpu_refusal(cfg, calls, samples))


def resolve_model(name: str | None) -> str:
    """A model name the app may load: configured names always, Hub ids only when the operator allows them."""
    if name is None or not str(name).strip():
        return default_config().name
    name = str(name).strip()
    if find_config(name) is not None:
        return find_config(name).name
    if limits.custom_models_allowed() and is_hub_id(name):
        return name
    allowed = ", ".join(model_configs())
    extra = "" if limits.custom_models_allowed() else " (custom Hub models are turned off on this server)"
    raise InputError(f"unknown model {name!r}; choose one of: {allowed}{extra}")


_PIPES: dict[str, SDEditPipeline] = {}
_PIPES_LOCK = threading.Lock()


def get_pipeline(name: str | None = None) -> SDEditPipeline:
    """The pipeline for `name`, loaded once; raises ModelNotFoundError/ModelLoadError with a clear message.

    A model that fails to load leaves the cached one in place, so the app keeps serving the default. A
    custom Hub id is only ever fetched from the Hub, never read as a folder on this server.
    """
    name = resolve_model(name)
    with _PIPES_LOCK:
        pipe = _PIPES.get(name)
        if pipe is None:
            try:
                pipe = _load(name)
            except SDEditError:
                raise
            except Exception as exc:  # a broken checkpoint, a diffusers/safetensors error: say so, keep serving
                raise ModelLoadError(f"model {name!r} could not be loaded ({type(exc).__name__}: {exc})") from None
            pipe.set_progress_bar_config(disable=True)
            _PIPES.clear()  # the loader keeps a small LRU of weights; keep only the current pipeline here
            _PIPES[name] = pipe
        return pipe


def _load(name: str) -> SDEditPipeline:
    """A pixel model through `loading.load` (the fast path where `use_accel` says so); a latent one, or a custom Hub
    id of either family, through `loading.load_model`, with its autoencoder and text encoder."""
    cfg = find_config(name)
    if cfg is not None and cfg.family == "pixel":
        cfg, unet, scheduler, _, _ = loading.load(name)
        return make_pipeline(unet, scheduler, cfg)
    model = loading.load_model(name, hub_only=cfg is None)
    if model.config.family == "pixel":
        return make_pipeline(model.unet, model.scheduler, model.config)
    return SDEditPipeline(config=model.config, limits=limits.APP_LIMITS, **model.components)


def use_accel(device: torch.device) -> bool:
    """Whether the app serves this device with sdedit.accel's AcceleratedPipeline (see limits.ACCEL)."""
    if limits.ACCEL in ("0", "false", "no", "off"):
        return False
    if limits.ACCEL in ("1", "true", "yes", "on"):
        return True
    zero_gpu = os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "true")
    return device.type == "cuda" and not zero_gpu


def make_pipeline(unet, scheduler, cfg: ModelConfig) -> SDEditPipeline:
    """The app's pipeline for loaded weights: the fast path where `use_accel` says so, with the app's limits."""
    device = next(unet.parameters()).device
    if not use_accel(device):
        return SDEditPipeline(unet, scheduler, cfg, limits.APP_LIMITS)
    from ..accel import AcceleratedPipeline

    return AcceleratedPipeline(unet, scheduler, cfg, limits.APP_LIMITS, device=device)


def drop_pipelines() -> None:
    """Forget every loaded model (the next request loads its own again) and free their memory."""
    with _PIPES_LOCK:
        _PIPES.clear()
    loading.clear_cache()
    free_memory()


def config_for(name: str | None) -> ModelConfig:
    """The config of a configured model, or an inferred-later placeholder for a custom Hub id."""
    name = resolve_model(name)
    cfg = find_config(name)
    if cfg is not None:
        return cfg
    pipe = _PIPES.get(name)
    if pipe is not None:
        return pipe.config
    return ModelConfig(name=name, source=name, title=name, resolution=256, background=None)


def default_steps(name: str | None, sampler: str) -> int:
    """Steps of a full schedule for `sampler` on model `name`: the pipeline's own rule (the config's choice for
    its default sampler, the paper's for the paper's sampler, else the registry's)."""
    return get_pipeline(name).default_steps(sampler)


def sampler_choices(cfg: ModelConfig) -> list[tuple[str, str]]:
    return registry.sampler_choices(cfg.sde)


def model_note(cfg: ModelConfig) -> str:
    """One visible line under the model dropdown: the SDE, and how the model's resolution meets the image; for a
    text model that it takes a prompt, and where it needs a GPU this server lacks, what an edit costs here."""
    note = f"{cfg.sde.upper()} SDE · paints at {cfg.resolution}×{cfg.resolution} px"
    if cfg.takes_text:
        note += " in its autoencoder's latent space and follows the prompt below."
        return note + (" " + costs.gpu_note(cfg) if needs_confirmation(cfg) else "")
    if cfg.resolution < CANVAS_SIZE and cfg.upscaler:
        note += f", then a learned 4× upscaler brings results to {cfg.resolution * 4} px before they meet your image"
    elif cfg.resolution < CANVAS_SIZE:
        note += ": results are resized to your image's size for display and download, so they look soft"
    return note + "."


STRENGTH_WORDS = (
    "How much noise is added before the model repaints: low keeps your strokes, high looks more real but strays "
    "from them."
)


def strength_info(cfg: ModelConfig) -> str:
    """The Strength slider's help for a model: where it follows drawings, measured (`follows` in its config)."""
    if not cfg.follows:
        return STRENGTH_WORDS
    lo, hi = cfg.follows
    return (
        f"{STRENGTH_WORDS} This model follows drawings from {lo:g} to {hi:g}: below, it keeps your strokes "
        f"almost as drawn; above {hi:g}, it paints a picture of its own."
    )


def model_card(cfg: ModelConfig) -> str:
    """What the model was trained on, its licence and credit (Markdown)."""
    lines = [cfg.description.strip() or cfg.label]
    if cfg.license:
        lines.append(f"**Licence:** {cfg.license}")
    if cfg.credit:
        lines.append(f"**Credit:** {cfg.credit.strip()}")
    if cfg.source:
        lines.append(f"**Weights:** `{cfg.source}`")
    return "\n\n".join(lines)


def work_hint(
    name: str | None,
    sampler: str,
    strength: float,
    steps: int,
    repeats: int,
    num_samples: int,
    snr: float = 0.0,
    guidance_scale: float | None = None,
) -> str:
    """What the chosen settings cost, in the units the limits use: the registry's cost rule (the corrector's
    steps where it is on; twice the evaluations under classifier-free guidance), with the loaded model's corrector
    steps once it is loaded."""
    cfg = config_for(name)
    pipe = _PIPES.get(cfg.name)
    corrector = registry.corrector_steps(pipe) if pipe is not None else 1
    try:
        n = steps_for(int(steps), float(strength))
        evals = registry.evaluations(sampler, n, float(snr or 0), corrector, cfg.sde) * int(repeats) * int(num_samples)
        g = cfg.defaults.guidance_scale if guidance_scale is None else float(guidance_scale)
    except (TypeError, ValueError, KeyError):
        return ""
    guided = cfg.guidance == "cfg" and g > 1
    evals *= 2 if guided else 1
    over = (
        f" That is over this server's limit of {limits.MAX_WORK:,}: lower something." if evals > limits.MAX_WORK else ""
    )
    twice = " × 2 (classifier-free guidance)" if guided else ""
    return (
        f"Runs {n} denoising steps (t0 × steps) × {int(repeats)} repeat(s) × {int(num_samples)} sample(s){twice} "
        f"= {evals:,} network evaluations.{over}"
    )
