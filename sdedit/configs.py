"""Model configs: one YAML file in configs/ per supported model.

A config says where the weights live (a Hub id, or a folder relative to the repository), which SDE the
model was trained with, its resolution, the SDEdit paper's settings and our interactive defaults, and the
licence and credit that must travel with it. Any folder or Hub id without a config also loads: its SDE and
resolution are read from the checkpoint and generic defaults apply.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache
from pathlib import Path

import yaml

from . import registry
from .errors import ModelNotFoundError
from .samplers import steps_for

DATA_FOLDERS = ("configs", "models", "examples")  # what `pip install .` puts under share/sdedit-studio


def data_root(home: str | None = None, checkout: Path | None = None, prefix: str | None = None) -> Path:
    """Where configs/, models/ and examples/ are: `SDEDIT_HOME` when set, else the source checkout this package
    sits in, else the folder an installed copy (`pip install .`) has them in, `sys.prefix`/share/sdedit-studio."""
    home = os.environ.get("SDEDIT_HOME") if home is None else home
    checkout = checkout or Path(__file__).resolve().parent.parent
    installed = Path(sys.prefix if prefix is None else prefix) / "share" / "sdedit-studio"
    for root in (Path(home) if home else None, checkout, installed):
        if root is not None and (root / "configs").is_dir():
            return root
    return checkout


REPO_ROOT = data_root()
SDES = ("vp", "ve")
# "pixel": a diffusers UNet2DModel on the image itself; "sd": a Stable Diffusion checkpoint (a text-conditioned
# UNet2DConditionModel on the latents of an AutoencoderKL, a CLIP text encoder), entering through `latent`;
# "sdxl": SDXL's (two text encoders, the canvas size as a condition).
FAMILIES = ("pixel", "sd", "sdxl")
# How a latent model was distilled: "turbo" (adversarial diffusion distillation: few steps, no classifier-free
# guidance), "lcm" (latent consistency: few steps, the guidance scale is an input of the UNet).
DISTILLATIONS = (None, "turbo", "lcm")


def repo_relative(path: str | Path) -> str:
    """`path` relative to the repository where it lies inside it (so reports and cards do not show one
    machine's folders), else as given."""
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


@dataclass(frozen=True)
class Sampling:
    """One set of SDEdit settings: t0, the sampler and its full-schedule step count, K repeats."""

    strength: float = 0.5
    sampler: str = "dpmpp"
    num_inference_steps: int = 20
    repeats: int = 1
    snr: float = 0.0
    guidance_scale: float = 1.0  # classifier-free guidance (text models only); 1 = none

    @property
    def steps(self) -> int:
        """The steps a run takes: the strength's share of the full schedule."""
        return steps_for(self.num_inference_steps, self.strength)


@dataclass(frozen=True)
class ModelConfig:
    name: str
    source: str
    sde: str = "vp"
    resolution: int = 256
    title: str = ""
    description: str = ""
    default: bool = False
    fit: str = "pad"
    background: tuple[int, int, int] | None = (255, 255, 255)
    defaults: Sampling = field(default_factory=Sampling)
    paper: Sampling = field(default_factory=lambda: Sampling(0.5, "reference", 1000, 1))
    license: str = "unknown"
    credit: str = ""
    palette: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()
    upscaler: str | None = None  # a folder (relative to the repository) with a learned upscaler (sdedit.upscale)
    family: str = "pixel"  # FAMILIES
    distilled: str | None = None  # DISTILLATIONS
    preview_decoder: str | None = None  # a tiny autoencoder (TAESD: Hub id or folder) for fast previews of latents
    needs_gpu: bool = False  # too slow for interactive use on a CPU (measured; the config says where)
    live_on_cpu: bool = True  # whether live previews are worth running on a CPU
    # the t0 range in which the model follows drawings, measured (lab/freehand.py); the Strength slider says it
    follows: tuple[float, float] | None = None
    brush_size: int | None = None  # the Paint canvas's default brush (px at 256), measured (lab/freehand.py)
    config_path: str = ""

    def __post_init__(self):
        if self.sde not in SDES:
            raise ValueError(f"{self.name}: sde must be one of {SDES}, not {self.sde!r}")
        if self.family not in FAMILIES:
            raise ValueError(f"{self.name}: family must be one of {FAMILIES}, not {self.family!r}")
        if self.distilled not in DISTILLATIONS:
            raise ValueError(f"{self.name}: distilled must be one of {DISTILLATIONS}, not {self.distilled!r}")
        if self.follows is not None:
            lo, hi = self.follows
            if not 0.0 < lo <= hi <= 1.0:
                raise ValueError(f"{self.name}: follows must be [lo, hi] with 0 < lo <= hi <= 1, not {self.follows}")
        if self.brush_size is not None and not 1 <= self.brush_size <= 60:
            raise ValueError(f"{self.name}: brush_size must be from 1 to 60 px, not {self.brush_size}")

    @property
    def samplers(self) -> tuple[str, ...]:
        return registry.names(self.sde, distilled=self.distilled is not None)

    @property
    def takes_text(self) -> bool:
        """Whether the model is conditioned on a text prompt (every latent family today)."""
        return self.family != "pixel"

    @property
    def guidance(self) -> str:
        """How `guidance_scale` acts: "cfg" (classifier-free guidance, one batched call of the conditional and
        unconditional prompt), "embedded" (an input of an LCM's UNet), "none" (turbo models, pixel models)."""
        if not self.takes_text or self.distilled == "turbo":
            return "none"
        return "embedded" if self.distilled == "lcm" else "cfg"

    @property
    def data_range(self) -> tuple[float, float]:
        """VP (DDPM) models see [-1, 1]; the VE (NCSN++) checkpoints were trained on [0, 1]."""
        return (-1.0, 1.0) if self.sde == "vp" else (0.0, 1.0)

    @property
    def is_local(self) -> bool:
        return not is_hub_id(self.source) or (REPO_ROOT / self.source).is_dir()

    @property
    def local_path(self) -> Path:
        path = Path(self.source)
        return path if path.is_absolute() else REPO_ROOT / path

    @property
    def upscaler_path(self) -> Path | None:
        """The upscaler's folder (`upscaler`, relative to the repository), or None when the model has none."""
        if not self.upscaler:
            return None
        path = Path(self.upscaler)
        return path if path.is_absolute() else REPO_ROOT / path

    @property
    def label(self) -> str:
        return self.title or self.name


@dataclass(frozen=True)
class ModelTraits:
    """What a page or a client needs to know about a model before loading it (`traits`)."""

    takes_text: bool  # show a prompt box
    guidance: str  # ModelConfig.guidance: "cfg" shows a negative prompt and a guidance scale
    guidance_scale: float  # its default
    canvas: int  # the model's canvas size in pixels (512 for SD 1.x and 2.x)
    needs_gpu: bool  # too slow for interactive use on a CPU
    live: bool  # whether live previews are on for this model on the device asked about
    preview_decoder: str | None  # the tiny autoencoder that decodes its previews, if any


def traits(cfg: ModelConfig, device: str = "cpu") -> ModelTraits:
    """A model's traits on a device type ("cpu", "cuda"): from its config, without loading it."""
    on_cpu = str(device).split(":")[0] == "cpu"
    return ModelTraits(
        takes_text=cfg.takes_text,
        guidance=cfg.guidance,
        guidance_scale=cfg.defaults.guidance_scale,
        canvas=cfg.resolution,
        needs_gpu=cfg.needs_gpu,
        live=cfg.live_on_cpu or not on_cpu,
        preview_decoder=cfg.preview_decoder,
    )


def is_hub_id(text: str) -> bool:
    parts = text.split("/")
    return (
        len(parts) == 2
        and all(p and p[0].isalnum() and all(c.isalnum() or c in "-_." for c in p) for p in parts)
        and ".." not in text
    )


def _sampling(raw: dict | None, base: Sampling) -> Sampling:
    if not raw:
        return base
    known = {f.name for f in fields(Sampling)}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"unknown sampling keys {sorted(unknown)}; allowed: {sorted(known)}")
    return replace(base, **raw)


def parse_config(raw: dict, path: Path | None = None) -> ModelConfig:
    raw = dict(raw)
    known = {f.name for f in fields(ModelConfig)}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}; allowed: {sorted(known)}")
    defaults = _sampling(raw.pop("defaults", None), Sampling())
    paper = _sampling(raw.pop("paper", None), Sampling(0.5, "reference", 1000, 1))
    bg = raw.pop("background", (255, 255, 255))
    follows = raw.pop("follows", None)
    cfg = ModelConfig(
        **raw,
        follows=tuple(float(v) for v in follows) if follows is not None else None,
        defaults=defaults,
        paper=paper,
        background=tuple(bg) if bg is not None else None,
        config_path=str(path or ""),
    )
    for s in (cfg.defaults, cfg.paper):
        if s.sampler not in cfg.samplers:
            raise ValueError(f"{path}: sampler {s.sampler!r} is not one of {cfg.samplers} for a {cfg.sde} model")
    return replace(cfg, palette=tuple(cfg.palette), examples=tuple(cfg.examples))


def config_dir() -> Path:
    return Path(os.environ.get("SDEDIT_CONFIG_DIR", REPO_ROOT / "configs"))


@lru_cache(maxsize=4)
def _load_dir(directory: str) -> dict[str, ModelConfig]:
    configs: dict[str, ModelConfig] = {}
    for path in sorted(Path(directory).glob("*.yaml")):
        if path.name.startswith("train-"):
            continue  # training recipes, not models
        with open(path) as f:
            cfg = parse_config(yaml.safe_load(f), path)
        configs[cfg.name] = cfg
    return configs


def model_configs() -> dict[str, ModelConfig]:
    """All configured models, the default first."""
    configs = _load_dir(str(config_dir()))
    return dict(sorted(configs.items(), key=lambda kv: (not kv[1].default, kv[0])))


def default_config() -> ModelConfig:
    configs = model_configs()
    for cfg in configs.values():
        if cfg.default:
            return cfg
    raise ModelNotFoundError(f"no config in {config_dir()} is marked `default: true`")


def find_config(name_or_source: str) -> ModelConfig | None:
    """A config by its name, or by its Hub id / folder."""
    configs = model_configs()
    if name_or_source in configs:
        return configs[name_or_source]
    for cfg in configs.values():
        if name_or_source == cfg.source:
            return cfg
    return None
