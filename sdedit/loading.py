"""Finding, fetching and loading score models: a config name, a local folder or a Hub id.

Folders may hold the UNet at the root (google/ddpm-*-256: config.json beside the weights and
scheduler_config.json) or in `unet/` and `scheduler/` subfolders (newer repos, and ours). Weights are
loaded from safetensors when the folder has them; a `.bin` file is only ever read with
`torch.load(weights_only=True)` (diffusers does that for us), and no remote code is ever run.

A Stable Diffusion folder (diffusers' layout: model_index.json, unet/, vae/, text_encoder/, tokenizer/,
scheduler/) loads through `latent.load_components`, from safetensors only; `load_model` returns what a
pipeline of either family is built from.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from .configs import ModelConfig, Sampling, default_config, find_config, is_hub_id
from .errors import ModelLoadError, ModelNotFoundError
from .fir import patch_fir
from .latent import family_of, is_sd_folder

# What a Hub download of a Stable Diffusion repo fetches: configs, the tokenizer, and the one safetensors file
# of each component (such repos also hold multi-GB single-file checkpoints and fp16 / .bin variants).
SD_FILES = [
    "model_index.json",
    "*/config.json",
    "scheduler/scheduler_config.json",
    "tokenizer/*",
    "tokenizer_2/*",
    "unet/diffusion_pytorch_model.safetensors",
    "vae/diffusion_pytorch_model.safetensors",
    "text_encoder/model.safetensors",
    "text_encoder_2/model.safetensors",  # SDXL
]
TINY_FILES = ["config.json", "diffusion_pytorch_model.safetensors"]

WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
VE_SCHEDULER = "ScoreSdeVeScheduler"
_CACHE: OrderedDict[tuple, tuple] = OrderedDict()
_CACHE_LOCK = threading.Lock()


def cache_size() -> int:
    return max(1, int(os.environ.get("SDEDIT_MODEL_CACHE", "2")))


def pick_device(device: str | torch.device | None = None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def pick_dtype(device: torch.device, sde: str, dtype: str | torch.dtype | None = None) -> torch.dtype:
    """fp32 on the CPU. On CUDA, bf16 (fp16 before Ampere) for the VP UNets, which are faster and accurate
    in half precision; fp32 for NCSN++ (VE), which diffusers runs *slower* in half (docs/performance.md)."""
    if dtype is not None and dtype != "auto":
        if isinstance(dtype, torch.dtype):
            return dtype
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be auto or one of {sorted(DTYPES)}, not {dtype!r}")
        return DTYPES[dtype]
    if device.type != "cuda" or sde == "ve":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _layout(folder: Path) -> tuple[str | None, Path | None]:
    """(unet subfolder or None for the root layout, scheduler config path or None)."""
    if (folder / "unet" / "config.json").is_file():
        unet_sub = "unet"
    elif (folder / "config.json").is_file():
        unet_sub = None
    else:
        raise ModelLoadError(f"{folder} holds no UNet: expected config.json at its root or in unet/")
    for candidate in (folder / "scheduler" / "scheduler_config.json", folder / "scheduler_config.json"):
        if candidate.is_file():
            return unet_sub, candidate
    return unet_sub, None


def download(repo_id: str, files: list[str] | None = None) -> Path:
    """Fetch a Hub repo's configs and weights into the HF cache: `files` (patterns) where given; else a Stable
    Diffusion repo's `SD_FILES`, or a UNet2DModel's configs and weights (safetensors only when it has them)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

    include = "".join(f'"{f}" ' for f in files or [])
    how = (
        f"On a machine with internet access run `hf download {repo_id} {include}--local-dir "
        f"models/{repo_id.split('/')[-1]}` and pass that folder instead, or unset HF_HUB_OFFLINE."
    )
    try:
        if files is not None:
            path = Path(snapshot_download(repo_id, allow_patterns=files))
        else:
            path = Path(snapshot_download(repo_id, allow_patterns=["*.json"]))  # configs first: which layout?
            if is_sd_folder(path):
                path = Path(snapshot_download(repo_id, allow_patterns=SD_FILES))
            else:
                path = Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors"]))
            if not is_sd_folder(path) and not any(path.glob("**/diffusion_pytorch_model.safetensors")):
                path = Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.bin"]))
    except (GatedRepoError, RepositoryNotFoundError):
        raise ModelNotFoundError(f"the Hub has no public model {repo_id!r} (or it is gated). {how}", repo_id) from None
    except LocalEntryNotFoundError:
        raise ModelNotFoundError(
            f"model {repo_id!r} is not in the local cache and the Hugging Face Hub can't be reached (offline). {how}",
            repo_id,
        ) from None
    except (OSError, ValueError) as exc:  # connection errors, timeouts, bad ids
        raise ModelNotFoundError(
            f"could not fetch {repo_id!r} from the Hugging Face Hub ({exc}). {how}", repo_id
        ) from None
    return path


def locate(name_or_path: str | os.PathLike | None, hub_only: bool = False) -> tuple[ModelConfig, Path]:
    """A config name, a folder or a Hub id -> (its config, a local folder with its files).

    `hub_only`: an unconfigured name must be a Hub id and is never read as a local folder (a web visitor's
    "models/x" or "runs/y" looks like a Hub id but must not open the server's own folders).
    """
    if name_or_path is None:
        cfg = default_config()
    else:
        text = str(name_or_path)
        cfg = find_config(text)
        if cfg is None:
            if not hub_only and Path(text).is_dir():
                return infer_config(Path(text)), Path(text)
            if not is_hub_id(text):
                from .configs import model_configs

                raise ModelNotFoundError(
                    f"unknown model {text!r}: use a configured name ({', '.join(model_configs())}), "
                    "a folder holding a diffusers UNet2DModel, or a Hub id like google/ddpm-church-256"
                )
            folder = download(text)
            return infer_config(folder, name=text, source=text), folder
    if cfg.local_path.is_dir():
        return cfg, cfg.local_path
    if is_hub_id(cfg.source):
        return cfg, download(cfg.source, SD_FILES if cfg.family != "pixel" else None)
    raise ModelNotFoundError(f"model {cfg.name!r}: its folder {cfg.local_path} is missing")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"can't read {path}: {exc}") from None


def infer_config(folder: Path, name: str | None = None, source: str | None = None) -> ModelConfig:
    """A config for a folder that has none: the SDE from its scheduler (or time embedding), its resolution."""
    if is_sd_folder(folder):
        return infer_sd_config(folder, name, source)
    unet_sub, sched_path = _layout(folder)
    unet_cfg = _read_json(folder / (unet_sub or "") / "config.json")
    sched_cfg = _read_json(sched_path) if sched_path else {}
    ve = sched_cfg.get("_class_name") == VE_SCHEDULER or unet_cfg.get("time_embedding_type") == "fourier"
    size = unet_cfg.get("sample_size", 256)
    size = size[0] if isinstance(size, (list, tuple)) else size
    defaults = Sampling(0.5, "reference", 1000, 1, snr=0.0) if ve else Sampling(0.5, "dpmpp", 20, 1)
    return ModelConfig(
        name=name or folder.name,
        source=source or str(folder),
        sde="ve" if ve else "vp",
        resolution=int(size),
        title=name or folder.name,
        defaults=defaults,
        fit="pad",
        background=None,
    )


def infer_sd_config(folder: Path, name: str | None = None, source: str | None = None) -> ModelConfig:
    """A config for a Stable Diffusion folder without one: its canvas from the UNet and autoencoder, LCM from
    its scheduler or guidance input; classifier-free guidance 7.5 and DPM-Solver++ otherwise."""
    unet_cfg = _read_json(folder / "unet" / "config.json")
    vae_path = folder / "vae" / "config.json"
    vae_cfg = _read_json(vae_path) if vae_path.is_file() else {}
    sched_path = folder / "scheduler" / "scheduler_config.json"
    sched_cfg = _read_json(sched_path) if sched_path.is_file() else {}
    size = unet_cfg.get("sample_size", 64)
    size = size[0] if isinstance(size, (list, tuple)) else size
    factor = 2 ** (len(vae_cfg.get("block_out_channels", (1, 2, 3, 4))) - 1)
    lcm = sched_cfg.get("_class_name") == "LCMScheduler" or bool(unet_cfg.get("time_cond_proj_dim"))
    family = family_of(folder)
    defaults = Sampling(0.5, "lcm", 4, 1, guidance_scale=8.5) if lcm else Sampling(0.6, "dpmpp", 25, 1, 0.0, 7.5)
    return ModelConfig(
        name=name or folder.name,
        source=source or str(folder),
        sde="vp",
        resolution=int(size) * factor,
        title=name or folder.name,
        defaults=defaults,
        fit="pad",
        background=None,
        family=family,
        distilled="lcm" if lcm else None,
        needs_gpu=True,
        live_on_cpu=False,
    )


def _scheduler(sched_path: Path | None, sde: str):
    from diffusers import DDPMScheduler, ScoreSdeVeScheduler

    raw = _read_json(sched_path) if sched_path else {}
    if sde == "ve":
        return ScoreSdeVeScheduler.from_config(raw) if raw else ScoreSdeVeScheduler()
    # any VP scheduler config (DDPM, DDIM, PNDM...) carries the betas; DDPM is our canonical holder
    return DDPMScheduler.from_config(raw) if raw else DDPMScheduler()


def load_components(folder: Path, cfg: ModelConfig, device: torch.device, dtype: torch.dtype):
    """(unet, scheduler) for a local folder, cached by (folder, device, dtype)."""
    from diffusers import UNet2DModel

    key = (str(Path(folder).resolve()), str(device), str(dtype))
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
        unet_sub, sched_path = _layout(folder)
        unet_cfg = _read_json(folder / (unet_sub or "") / "config.json")
        if unet_cfg.get("_class_name", "UNet2DModel") != "UNet2DModel":
            raise ModelLoadError(
                f"{cfg.name}: {unet_cfg.get('_class_name')} is not supported; SDEdit needs an unconditional "
                "pixel-space UNet2DModel (DDPM or NCSN++)"
            )
        if unet_cfg.get("in_channels", 3) != 3 or unet_cfg.get("out_channels", 3) != 3:
            raise ModelLoadError(f"{cfg.name}: the UNet must map 3-channel images to 3 channels")
        weights = folder / (unet_sub or "")
        if not any((weights / f).is_file() for f in WEIGHT_FILES):
            raise ModelLoadError(f"{cfg.name}: no weights ({' or '.join(WEIGHT_FILES)}) in {weights}")
        try:
            # low_cpu_mem_usage=False: the loading diffusers falls back to without `accelerate`, asked for
            # directly, so it does not advise installing a package on every load (docs/performance.md)
            unet = UNet2DModel.from_pretrained(
                str(folder), subfolder=unet_sub, torch_dtype=dtype, use_safetensors=None, low_cpu_mem_usage=False
            )
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            raise ModelLoadError(f"{cfg.name}: the UNet in {weights} could not be loaded ({exc})") from None
        if cfg.sde == "ve":
            patch_fir(unet)  # the same FIR resampling as one depthwise conv: ~1.75x faster NCSN++ (performance.md)
        unet = unet.to(device).eval().requires_grad_(False)
        scheduler = _scheduler(sched_path, cfg.sde)
        _CACHE[key] = (unet, scheduler)
        while len(_CACHE) > cache_size():
            _CACHE.popitem(last=False)
        return unet, scheduler


def load_latent_components(folder: Path, cfg: ModelConfig, device: torch.device, dtype: torch.dtype) -> dict:
    """A Stable Diffusion folder's pipeline components (`latent.load_components`), cached like the UNets."""
    from . import latent

    key = ("sd", str(Path(folder).resolve()), str(device), str(dtype))
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
        parts = latent.load_components(Path(folder), cfg.name, device, dtype)
        _CACHE[key] = parts
        while len(_CACHE) > cache_size():
            _CACHE.popitem(last=False)
        return parts


def load_tiny_autoencoder(source: str, device: torch.device, dtype: torch.dtype):
    """A tiny autoencoder (TAESD) for previews, from a folder (relative to the repository) or a Hub id; cached."""
    from . import latent
    from .configs import REPO_ROOT

    path = Path(source) if Path(source).is_absolute() else REPO_ROOT / source
    folder = path if path.is_dir() else download(source, TINY_FILES) if is_hub_id(source) else None
    if folder is None:
        raise ModelNotFoundError(f"the preview decoder {source!r} is neither a folder nor a Hub id")
    key = ("tiny", str(folder.resolve()), str(device), str(dtype))
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = latent.load_tiny_autoencoder(folder, source, device, dtype)
        return _CACHE[key]


@dataclass
class LoadedModel:
    """A loaded model: its config, where it runs, and the components an `SDEditPipeline` is built from
    (`SDEditPipeline(config=m.config, **m.components)`)."""

    config: ModelConfig
    device: torch.device
    dtype: torch.dtype
    components: dict = field(default_factory=dict)  # unet, scheduler; space and text_encoder for latent models

    @property
    def unet(self):
        return self.components["unet"]

    @property
    def scheduler(self):
        return self.components["scheduler"]


def load_model(name_or_path=None, device=None, dtype=None, hub_only: bool = False) -> LoadedModel:
    """A model of either family (pixel UNet2DModel, or Stable Diffusion) by name, folder or Hub id."""
    cfg, folder = locate(name_or_path, hub_only)
    return _load_located(cfg, folder, device, dtype)


def _load_located(cfg: ModelConfig, folder: Path, device, dtype) -> LoadedModel:
    dev = pick_device(device)
    dt = pick_dtype(dev, cfg.sde, dtype)
    if cfg.family == "pixel" and is_sd_folder(folder):  # a folder named in a pixel config, or a stale config
        raise ModelLoadError(f"{cfg.name}: {folder} holds a Stable Diffusion model; its config must say its family")
    if cfg.family != "pixel":
        parts = load_latent_components(folder, cfg, dev, dt)
        resolution = parts["space"].resolution(_sample_size(parts["unet"]))
        if resolution != cfg.resolution:
            cfg = replace(cfg, resolution=resolution)
        return LoadedModel(cfg, dev, dt, dict(parts))
    cfg, unet, scheduler, dev, dt = _load_pixel(cfg, folder, dev, dt)
    return LoadedModel(cfg, dev, dt, {"unet": unet, "scheduler": scheduler})


def _sample_size(unet) -> int:
    size = unet.config.sample_size
    return int(size[0] if isinstance(size, (list, tuple)) else size)


def clear_cache() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def load(name_or_path=None, device=None, dtype=None, hub_only: bool = False):
    """(config, unet, scheduler, device, dtype) of a pixel model by name, folder or Hub id (`hub_only`: see
    `locate`). A latent model has more components than this tuple: `load_model` returns them all."""
    cfg, folder = locate(name_or_path, hub_only)
    if cfg.family != "pixel":
        raise ModelLoadError(
            f"{cfg.name} is a latent (Stable Diffusion) model: it loads with SDEditPipeline.from_pretrained "
            "or loading.load_model, which return its autoencoder and text encoder too"
        )
    model = _load_located(cfg, folder, device, dtype)
    return model.config, model.unet, model.scheduler, model.device, model.dtype


def _load_pixel(cfg: ModelConfig, folder: Path, dev: torch.device, dt: torch.dtype):
    unet, scheduler = load_components(folder, cfg, dev, dt)
    if unet.config.sample_size != cfg.resolution:
        size = unet.config.sample_size
        cfg = replace(cfg, resolution=int(size[0] if isinstance(size, (list, tuple)) else size))
    return cfg, unet, scheduler, dev, dt
