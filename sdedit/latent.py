"""Latent models: Stable Diffusion checkpoints entering SDEdit through the model-space seam.

A Stable Diffusion checkpoint is a text-conditioned UNet2DConditionModel on the latents of an AutoencoderKL
(8x smaller, 4 channels), with a CLIP text encoder. SDEdit runs on it unchanged: `LatentSpace` is its
`ModelSpace` (a canvas is encoded once per guide; masks and strength maps are resampled to the latent grid),
the samplers perturb and denoise latents exactly as they do pixels, and `postprocess` composites in pixels, so
every pixel outside a mask is still the input's. What is new is the condition: a prompt's embeddings
(`TextEncoder`, computed once per prompt and cached) and the guidance (`Conditioning`: classifier-free
guidance as one batched UNet call, or an LCM's guidance embedding, or none for turbo models).

transformers (the CLIP tokenizer and text encoder) is imported only when a latent model loads: pixel models
never need it and run without it installed. (diffusers itself imports it at import time when it is installed;
`benchmarks/latent_import.py` measures what that costs the embedded default's start.)
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .errors import InputError, LimitError, ModelLoadError
from .imaging import from_model_range, to_model_range

log = logging.getLogger(__name__)
Tensor = torch.Tensor

MAX_PROMPT_CHARS = 4000  # refused before tokenizing (a CLIP encoder reads at most 75 tokens anyway)
MAX_GUIDANCE = 30.0
PROMPT_CACHE = 64  # prompts whose embeddings are kept per text encoder
WEIGHTS = {"unet": "diffusion_pytorch_model.safetensors", "vae": "diffusion_pytorch_model.safetensors"}
TEXT_WEIGHTS = "model.safetensors"
COMPONENTS = {  # model_index.json entry -> the classes we load it with (never remote code)
    "unet": ("UNet2DConditionModel",),
    "vae": ("AutoencoderKL",),
    "text_encoder": ("CLIPTextModel",),
    "tokenizer": ("CLIPTokenizer", "CLIPTokenizerFast"),
}
PREDICTION_TYPES = ("epsilon", "v_prediction")


def is_sd_folder(folder: Path) -> bool:
    """A diffusers Stable Diffusion layout: model_index.json beside unet/ holding a UNet2DConditionModel."""
    unet = folder / "unet" / "config.json"
    if not (folder / "model_index.json").is_file() or not unet.is_file():
        return False
    try:
        return json.loads(unet.read_text()).get("_class_name") == "UNet2DConditionModel"
    except (OSError, ValueError):
        return False


# ----- the space: a canvas <-> the autoencoder's latents ---------------------------------------------------


class LatentSpace:
    """A canvas in the latents of an AutoencoderKL: (R, R, 3) uint8 <-> (C, R/f, R/f), scaled as the UNet saw
    them in training (`scaling_factor`, `shift_factor`). The guide is encoded to its posterior mean, so the same
    guide always gives the same latents (diffusers' img2img draws a sample with the generator instead).

    Masks and strength maps are resampled to the latent grid by the maximum over each f x f block: a latent is
    free wherever any pixel it covers is, so an edit is generated whole up to the mask's edge and the pixel
    composite (`pipeline.postprocess`) puts every pixel outside the mask back exactly.

    `tiny` (optional) is a tiny autoencoder (AutoencoderTiny, TAESD) for previews: `previews()` is the same
    space encoding and decoding through it, an order of magnitude cheaper than the full autoencoder.
    """

    def __init__(self, vae, tiny=None, fast: bool = False):
        cfg = vae.config
        self.vae, self.tiny, self.fast = vae, tiny, bool(fast and tiny is not None)
        self.channels = int(cfg.latent_channels)
        self.factor = 2 ** (len(cfg.block_out_channels) - 1)
        self.scaling_factor = float(cfg.scaling_factor)
        self.shift_factor = float(getattr(cfg, "shift_factor", None) or 0.0)
        self.decode_batch = 4  # samples per decoder call: bounds the decoder's activations at 512 px and up

    def previews(self) -> LatentSpace:
        """This space through the tiny autoencoder (itself when it has none)."""
        return LatentSpace(self.vae, self.tiny, fast=True) if self.tiny is not None else self

    @staticmethod
    def _where(module) -> tuple[torch.device, torch.dtype]:
        p = next(module.parameters())
        return p.device, p.dtype

    @torch.no_grad()
    def encode(self, canvas: np.ndarray) -> Tensor:
        x = to_model_range(canvas, (-1.0, 1.0))[None]
        if self.fast:
            device, dtype = self._where(self.tiny)
            z = self.tiny.encode(x.to(device, dtype)).latents  # TAESD's latents are already on the UNet's scale
        else:
            device, dtype = self._where(self.vae)
            z = self.vae.encode(x.to(device, dtype)).latent_dist.mode()
            z = (z - self.shift_factor) * self.scaling_factor
        return z[0].float().cpu()

    def encode_mask(self, mask: np.ndarray) -> Tensor:
        m = torch.from_numpy(np.asarray(mask, np.float32))[None, None]
        return F.max_pool2d(m, self.factor)[0]

    @torch.no_grad()
    def decode(self, x: Tensor) -> np.ndarray:
        module = self.tiny if self.fast else self.vae
        device, dtype = self._where(module)
        out = []
        for chunk in x.split(self.decode_batch):
            z = chunk.to(device, dtype)
            if self.fast:
                img = self.tiny.decode(z).sample
            else:
                img = self.vae.decode(z / self.scaling_factor + self.shift_factor).sample
            out.append(from_model_range(img, (-1.0, 1.0)))
        return np.concatenate(out)

    def resolution(self, sample_size: int) -> int:
        return int(sample_size) * self.factor

    def __repr__(self) -> str:
        return f"LatentSpace(channels={self.channels}, factor={self.factor}, previews={self.fast})"


# ----- the text: prompts -> embeddings, once per prompt ----------------------------------------------------


class TextEncoder:
    """A CLIP tokenizer and text encoder. `embed` computes each prompt's embeddings once and keeps the last
    `PROMPT_CACHE` prompts: a live preview re-runs the same prompt many times a second. Each prompt is encoded
    on its own, so its embeddings never depend on which other prompts were asked for with it."""

    def __init__(self, tokenizer, encoder, cache_size: int = PROMPT_CACHE):
        self.tokenizer, self.encoder = tokenizer, encoder
        self.max_length = int(tokenizer.model_max_length)
        self.cache_size = cache_size
        self._cache: OrderedDict[str, Tensor] = OrderedDict()
        self._lock = threading.Lock()  # fast tokenizers refuse concurrent use; the cache is shared

    @property
    def max_tokens(self) -> int:
        """Tokens a prompt may have: the encoder's length less the start and end tokens."""
        return self.max_length - 2

    def check(self, prompt, what: str = "prompt") -> str:
        """The prompt as text ("" for None), or an InputError naming what is wrong and what is allowed."""
        if prompt is None:
            return ""
        if not isinstance(prompt, str):
            raise InputError(f"the {what} must be text, not {type(prompt).__name__}")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise LimitError(f"the {what} is {len(prompt):,} characters long; at most {MAX_PROMPT_CHARS:,}")
        if "\x00" in prompt:
            raise InputError(f"the {what} contains a NUL character")
        with self._lock:
            n = len(self.tokenizer(prompt, truncation=False).input_ids) - 2
        if n > self.max_tokens:
            raise InputError(
                f"the {what} is {n} tokens long; this model's text encoder reads at most {self.max_tokens}: shorten it"
            )
        return prompt

    @torch.no_grad()
    def embed(self, prompts: Sequence[str]) -> Tensor:
        """(len(prompts), L, D) embeddings on the encoder's device, in its dtype (the last hidden state, as
        diffusers' Stable Diffusion pipelines use it)."""
        with self._lock:
            for prompt in dict.fromkeys(prompts):
                if prompt in self._cache:
                    self._cache.move_to_end(prompt)
                    continue
                tokens = self.tokenizer(
                    prompt, padding="max_length", max_length=self.max_length, truncation=True, return_tensors="pt"
                )
                device = next(self.encoder.parameters()).device
                kwargs = {}
                if getattr(self.encoder.config, "use_attention_mask", False):
                    kwargs["attention_mask"] = tokens.attention_mask.to(device)
                self._cache[prompt] = self.encoder(tokens.input_ids.to(device), **kwargs)[0][0]
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
            return torch.stack([self._cache[p] for p in prompts])

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()


# ----- the condition of one run -------------------------------------------------------------------------------


@dataclass
class Conditioning:
    """What every UNet call of one run gets besides x and t.

    embeds: (B, L, D) prompt embeddings; with classifier-free guidance (B, L, D) of the negative prompt
    first, then the prompt's, as diffusers orders them. timestep_cond: an LCM's guidance embedding (B, d).
    """

    embeds: Tensor
    guidance_scale: float = 1.0
    cfg: bool = False
    timestep_cond: Tensor | None = None


def guidance_embedding(w: Tensor, dim: int) -> Tensor:
    """The sinusoidal embedding of an LCM's guidance input w (= guidance_scale - 1), scaled by 1000 like a
    timestep (latent consistency distillation, Luo et al. 2023): (B,) -> (B, dim), sin then cos."""
    half = dim // 2
    freqs = torch.exp(-torch.arange(half, dtype=torch.float32) * (np.log(10000.0) / (half - 1)))
    angles = (w.float() * 1000.0)[:, None] * freqs[None]
    emb = torch.cat([angles.sin(), angles.cos()], dim=1)
    return F.pad(emb, (0, dim % 2))


def conditional_model(unet, dtype: torch.dtype, cond: Conditioning) -> Callable[[Tensor, Tensor], Tensor]:
    """The UNet's prediction for a float32 batch x at levels t, under `cond`: with classifier-free guidance one
    call on [x, x] (negative prompt, prompt), combined as u + g (c - u); float32 out."""

    def call(x: Tensor, level: Tensor) -> Tensor:
        t = level.to(x.device)
        if cond.cfg:
            out = unet(
                torch.cat([x, x]).to(dtype),
                torch.cat([t, t]),
                encoder_hidden_states=cond.embeds,
                timestep_cond=cond.timestep_cond,
            ).sample.float()
            uncond, text = out.chunk(2)
            return uncond + cond.guidance_scale * (text - uncond)
        return unet(x.to(dtype), t, encoder_hidden_states=cond.embeds, timestep_cond=cond.timestep_cond).sample.float()

    return call


def eps_from_v(v_model: Callable[[Tensor, Tensor], Tensor], alphas_cumprod: Tensor):
    """A v-prediction model as an eps model. Every sampler gets the VP sample x = sqrt(a) x0 + sqrt(1 - a) e as
    the model's input (the Euler family's scaled input is that too), and v = sqrt(a) e - sqrt(1 - a) x0, so
    e = sqrt(a) v + sqrt(1 - a) x."""
    abar = alphas_cumprod.to(torch.float32)

    def call(x: Tensor, t: Tensor) -> Tensor:
        a = abar.to(x.device)[t.round().long()].view(-1, *([1] * (x.dim() - 1)))
        return a.sqrt() * v_model(x, t) + (1 - a).sqrt() * x

    return call


# ----- loading a Stable Diffusion folder -------------------------------------------------------------------------


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"can't read {path}: {exc}") from None


def check_folder(folder: Path, name: str) -> dict:
    """The folder's model_index.json, checked: the components we load, their classes, safetensors weights."""
    index = _read_json(folder / "model_index.json")
    if "text_encoder_2" in index or "XL" in str(index.get("_class_name", "")):
        raise ModelLoadError(
            f"{name}: SDXL checkpoints (two text encoders, size conditioning) are not supported yet; "
            "Stable Diffusion 1.x and 2.x (and their turbo and LCM distillations) are"
        )
    for part, classes in COMPONENTS.items():
        entry = index.get(part)
        if not isinstance(entry, list) or len(entry) != 2 or entry[1] not in classes:
            raise ModelLoadError(
                f"{name}: model_index.json must name {part} as one of {', '.join(classes)}, not {entry!r}"
            )
        if not (folder / part).is_dir():
            raise ModelLoadError(f"{name}: the folder has no {part}/")
    for part, weights in (*WEIGHTS.items(), ("text_encoder", TEXT_WEIGHTS)):
        if not (folder / part / weights).is_file():
            raise ModelLoadError(
                f"{name}: {part}/{weights} is missing; latent models load from safetensors only "
                "(no pickled .bin or .ckpt weights)"
            )
    return index


def scheduler_config(folder: Path, name: str) -> dict:
    raw = _read_json(folder / "scheduler" / "scheduler_config.json") if (folder / "scheduler").is_dir() else {}
    prediction = raw.get("prediction_type", "epsilon")
    if prediction not in PREDICTION_TYPES:
        raise ModelLoadError(f"{name}: prediction_type {prediction!r} is not supported; {PREDICTION_TYPES} are")
    return raw


def load_components(folder: Path, name: str, device: torch.device, dtype: torch.dtype) -> dict:
    """unet, scheduler, space and text_encoder of a Stable Diffusion folder (safetensors only, no remote code):
    the keyword arguments of `SDEditPipeline`."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

    try:
        from transformers import CLIPTextModel, CLIPTokenizer
    except ImportError:
        raise ModelLoadError(
            f"{name}: Stable Diffusion models need the transformers package (its CLIP text encoder): "
            "pip install -r requirements.txt"
        ) from None
    check_folder(folder, name)
    raw = scheduler_config(folder, name)
    try:
        unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", torch_dtype=dtype, use_safetensors=True)
        vae = AutoencoderKL.from_pretrained(folder, subfolder="vae", torch_dtype=dtype, use_safetensors=True)
        tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer")
        encoder = CLIPTextModel.from_pretrained(folder / "text_encoder", dtype=dtype, use_safetensors=True)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise ModelLoadError(f"{name}: the Stable Diffusion components could not be loaded ({exc})") from None
    if unet.config.in_channels != vae.config.latent_channels:
        raise ModelLoadError(
            f"{name}: the UNet takes {unet.config.in_channels} channels but the autoencoder makes "
            f"{vae.config.latent_channels}"
        )
    if unet.config.cross_attention_dim != encoder.config.hidden_size:
        raise ModelLoadError(
            f"{name}: the UNet attends to {unet.config.cross_attention_dim}-wide text but the text encoder "
            f"gives {encoder.config.hidden_size}"
        )
    modules = [m.to(device).eval().requires_grad_(False) for m in (unet, vae, encoder)]
    unet, vae, encoder = modules
    # any VP scheduler config carries the betas; DDPM is our canonical holder (the samplers make their own)
    scheduler = DDPMScheduler.from_config(raw) if raw else DDPMScheduler()
    return {
        "unet": unet,
        "scheduler": scheduler,
        "space": LatentSpace(vae),
        "text_encoder": TextEncoder(tokenizer, encoder),
    }


def load_tiny_autoencoder(folder: Path, name: str, device: torch.device, dtype: torch.dtype):
    """A tiny autoencoder (AutoencoderTiny: TAESD) from a folder, safetensors only."""
    from diffusers import AutoencoderTiny

    if not (folder / "diffusion_pytorch_model.safetensors").is_file():
        raise ModelLoadError(f"{name}: no diffusion_pytorch_model.safetensors in {folder}")
    try:
        tiny = AutoencoderTiny.from_pretrained(folder, torch_dtype=dtype, use_safetensors=True)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise ModelLoadError(f"{name}: the tiny autoencoder could not be loaded ({exc})") from None
    return tiny.to(device).eval().requires_grad_(False)


def preview_pipeline(pipe, tiny=None):
    """`pipe` with its previews decoded (and guides encoded) by a tiny autoencoder: `tiny`, else the one its
    config names (`preview_decoder`, loaded once). The network, scheduler, text encoder and its prompt cache
    are shared. Where there is no tiny autoencoder (a pixel model, none named, or it can't be fetched), `pipe`
    itself."""
    space = getattr(pipe, "space", None)
    if not isinstance(space, LatentSpace):
        return pipe
    if tiny is None and space.tiny is None:
        source = pipe.config.preview_decoder
        if not source:
            return pipe
        from . import loading

        try:
            tiny = loading.load_tiny_autoencoder(source, pipe.device, pipe.dtype)
        except (ModelLoadError, LookupError) as exc:
            log.warning("previews use the full autoencoder: %s", exc)
            return pipe
    fast = LatentSpace(space.vae, tiny or space.tiny, fast=True)
    return pipe.replace(space=fast)
