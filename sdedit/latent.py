"""Latent models: Stable Diffusion checkpoints entering SDEdit through the model-space seam.

A Stable Diffusion checkpoint is a text-conditioned UNet2DConditionModel on the latents of an AutoencoderKL
(8x smaller, 4 channels), with a CLIP text encoder (SDXL: two, and the canvas size as a condition). SDEdit
runs on it unchanged: `LatentSpace` is its `ModelSpace` (a canvas is encoded once per guide; masks and
strength maps are resampled to the latent grid), the samplers perturb and denoise latents exactly as they do
pixels, and `postprocess` composites in pixels, so every pixel outside a mask is still the input's. What is
new is the condition: a prompt's embeddings (`TextEncoder`, computed once per prompt and cached) and the
guidance (`Conditioning`: classifier-free guidance as one batched UNet call, or an LCM's guidance embedding,
or none for turbo models).

transformers (the CLIP tokenizer and text encoder) is imported only when a latent model loads: pixel models
never need it and run without it installed. (diffusers itself imports it at import time when it is installed;
`benchmarks/latent_import.py` measures what that costs the embedded default's start.)
"""

from __future__ import annotations

import json
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
XL_COMPONENTS = {  # SDXL's second text encoder (OpenCLIP bigG, with its projection: the pooled embedding)
    "text_encoder_2": ("CLIPTextModelWithProjection",),
    "tokenizer_2": ("CLIPTokenizer", "CLIPTokenizerFast"),
}
PREDICTION_TYPES = ("epsilon", "v_prediction")


def family_of(folder: Path) -> str:
    """ "sdxl" for a folder with SDXL's second text encoder, else "sd"."""
    return "sdxl" if "text_encoder_2" in _read_json(folder / "model_index.json") else "sd"


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


def check_text(prompt, what: str = "prompt") -> str:
    """A prompt as given: text of at most MAX_PROMPT_CHARS characters without NUL, or an InputError saying what is
    wrong (before any tokenizer runs; `TextEncoder.check` then counts its tokens)."""
    if not isinstance(prompt, str):
        raise InputError(f"the {what} must be text, not {type(prompt).__name__}")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise LimitError(f"the {what} is {len(prompt):,} characters long; at most {MAX_PROMPT_CHARS:,}")
    if "\x00" in prompt:
        raise InputError(f"the {what} contains a NUL character")
    return prompt


class TextEncoder:
    """A CLIP tokenizer and text encoder (SDXL: and a second pair). `encode` computes each prompt's embeddings once
    and keeps the last `PROMPT_CACHE` prompts: a live preview re-runs the same prompt many times a second. Each
    prompt is encoded on its own, so its embeddings never depend on which other prompts were asked for with it.

    With a `second` (tokenizer, CLIPTextModelWithProjection), as SDXL has: the two encoders' penultimate hidden
    states side by side, and the second's projected embedding as the pooled one, as diffusers' SDXL pipelines
    compute them. `zero_empty_negative`: an empty negative prompt is zeros, not the embedding of "" (SDXL's
    `force_zeros_for_empty_prompt`)."""

    def __init__(self, tokenizer, encoder, cache_size: int = PROMPT_CACHE, second=None, zero_empty_negative=False):
        self.tokenizer, self.encoder = tokenizer, encoder
        self.second = tuple(second) if second is not None else None
        self.zero_empty_negative = bool(zero_empty_negative)
        self.max_length = int(tokenizer.model_max_length)
        self.cache_size = cache_size
        self._cache: OrderedDict[str, tuple[Tensor, Tensor | None]] = OrderedDict()
        self._lock = threading.Lock()  # fast tokenizers refuse concurrent use; the cache is shared

    @property
    def pooled(self) -> bool:
        """Whether it gives a pooled embedding too (SDXL's UNet takes it with the size condition)."""
        return self.second is not None

    @property
    def modules(self) -> list:
        return [self.encoder] + ([self.second[1]] if self.second else [])

    @property
    def max_tokens(self) -> int:
        """Tokens a prompt may have: the encoder's length less the start and end tokens."""
        return self.max_length - 2

    def check(self, prompt, what: str = "prompt") -> str:
        """The prompt as text ("" for None), or an InputError naming what is wrong and what is allowed."""
        if prompt is None:
            return ""
        prompt = check_text(prompt, what)
        with self._lock:
            tokenizers = [self.tokenizer] + ([self.second[0]] if self.second else [])
            n = max(len(t(prompt, truncation=False).input_ids) for t in tokenizers) - 2
        if n > self.max_tokens:
            raise InputError(
                f"the {what} is {n} tokens long; this model's text encoder reads at most {self.max_tokens}: shorten it"
            )
        return prompt

    def embed(self, prompts: Sequence[str]) -> Tensor:
        """(len(prompts), L, D) embeddings on the encoder's device, in its dtype."""
        return self.encode(prompts)[0]

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> tuple[Tensor, Tensor | None]:
        """(len(prompts), L, D) embeddings, and (len(prompts), P) pooled ones with a second encoder (else None):
        one encoder: its last hidden state, as diffusers' Stable Diffusion pipelines use it; two (SDXL): their
        penultimate hidden states side by side, and the second's projection."""
        with self._lock:
            for prompt in dict.fromkeys(prompts):
                if prompt in self._cache:
                    self._cache.move_to_end(prompt)
                    continue
                self._cache[prompt] = self._encode(prompt)
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
            rows = [self._cache[p] for p in prompts]
        pooled = torch.stack([r[1] for r in rows]) if self.second else None
        return torch.stack([r[0] for r in rows]), pooled

    def _encode(self, prompt: str) -> tuple[Tensor, Tensor | None]:
        if self.second is None:
            return self._run(self.tokenizer, self.encoder, prompt)[0][0], None
        first = self._run(self.tokenizer, self.encoder, prompt, hidden=True)
        second = self._run(*self.second, prompt, hidden=True)
        embeds = torch.cat([first.hidden_states[-2][0], second.hidden_states[-2][0]], dim=-1)
        return embeds, second[0][0]  # CLIPTextModelWithProjection's first output: the projected embedding

    def _run(self, tokenizer, encoder, prompt: str, hidden: bool = False):
        length = self.max_length
        tokens = tokenizer(prompt, padding="max_length", max_length=length, truncation=True, return_tensors="pt")
        device = next(encoder.parameters()).device
        kwargs = {"output_hidden_states": True} if hidden else {}
        if getattr(encoder.config, "use_attention_mask", False):
            kwargs["attention_mask"] = tokens.attention_mask.to(device)
        return encoder(tokens.input_ids.to(device), **kwargs)

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()


# ----- the condition of one run -------------------------------------------------------------------------------


@dataclass
class Conditioning:
    """What every UNet call of one run gets besides x and t.

    embeds: (B, L, D) prompt embeddings; with classifier-free guidance (B, L, D) of the negative prompt
    first, then the prompt's, as diffusers orders them. timestep_cond: an LCM's guidance embedding (B, d).
    added: SDXL's added conditions, in the same order: the pooled embeddings ("text_embeds") and the size
    condition ("time_ids": original size, crop corner, target size).
    """

    embeds: Tensor
    guidance_scale: float = 1.0
    cfg: bool = False
    timestep_cond: Tensor | None = None
    added: dict[str, Tensor] | None = None


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
        kw = dict(encoder_hidden_states=cond.embeds, timestep_cond=cond.timestep_cond, added_cond_kwargs=cond.added)
        if cond.cfg:
            out = unet(torch.cat([x, x]).to(dtype), torch.cat([t, t]), **kw).sample.float()
            uncond, text = out.chunk(2)
            return uncond + cond.guidance_scale * (text - uncond)
        return unet(x.to(dtype), t, **kw).sample.float()

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
    xl = "text_encoder_2" in index
    if index.get("requires_aesthetics_score") or (xl and not index.get("text_encoder")):
        raise ModelLoadError(
            f"{name}: SDXL's refiner (one text encoder, aesthetic-score conditioning) is not supported; SDXL base "
            "and turbo, and Stable Diffusion 1.x and 2.x, are"
        )
    for part, classes in {**COMPONENTS, **(XL_COMPONENTS if xl else {})}.items():
        entry = index.get(part)
        if not isinstance(entry, list) or len(entry) != 2 or entry[1] not in classes:
            raise ModelLoadError(
                f"{name}: model_index.json must name {part} as one of {', '.join(classes)}, not {entry!r}"
            )
        if not (folder / part).is_dir():
            raise ModelLoadError(f"{name}: the folder has no {part}/")
    texts = ["text_encoder", *(["text_encoder_2"] if xl else [])]
    for part, weights in (*WEIGHTS.items(), *((t, TEXT_WEIGHTS) for t in texts)):
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
        from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer
    except ImportError:
        raise ModelLoadError(
            f"{name}: Stable Diffusion models need the transformers package (its CLIP text encoder): "
            "pip install -r requirements.txt"
        ) from None
    index = check_folder(folder, name)
    raw = scheduler_config(folder, name)
    xl = "text_encoder_2" in index
    second = None
    try:
        # low_cpu_mem_usage=False: what diffusers falls back to without `accelerate`, asked for so that it
        # prints no install advice (as `loading.load_components` does)
        kw = dict(torch_dtype=dtype, use_safetensors=True, low_cpu_mem_usage=False)
        unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", **kw)
        vae = AutoencoderKL.from_pretrained(folder, subfolder="vae", **kw)
        tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer")
        encoder = CLIPTextModel.from_pretrained(folder / "text_encoder", dtype=dtype, use_safetensors=True)
        if xl:
            encoder_2 = CLIPTextModelWithProjection.from_pretrained(
                folder / "text_encoder_2", dtype=dtype, use_safetensors=True
            )
            second = (CLIPTokenizer.from_pretrained(folder / "tokenizer_2"), encoder_2)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise ModelLoadError(f"{name}: the Stable Diffusion components could not be loaded ({exc})") from None
    if unet.config.in_channels != vae.config.latent_channels:
        raise ModelLoadError(
            f"{name}: the UNet takes {unet.config.in_channels} channels but the autoencoder makes "
            f"{vae.config.latent_channels}"
        )
    width = encoder.config.hidden_size + (second[1].config.hidden_size if xl else 0)
    if unet.config.cross_attention_dim != width:
        raise ModelLoadError(
            f"{name}: the UNet attends to {unet.config.cross_attention_dim}-wide text but the text encoder(s) "
            f"give {width}"
        )
    if xl != (unet.config.addition_embed_type == "text_time"):
        raise ModelLoadError(f"{name}: an SDXL UNet (size conditioning) needs SDXL's two text encoders, and only it")
    for m in (unet, vae, encoder, *(second[1:] if xl else ())):
        m.to(device).eval().requires_grad_(False)
    if xl and dtype == torch.float16 and vae.config.force_upcast:
        vae.to(torch.float32)  # SDXL's autoencoder overflows in fp16 (diffusers' SDXL pipelines upcast it too)
    # any VP scheduler config carries the betas; DDPM is our canonical holder (the samplers make their own)
    scheduler = DDPMScheduler.from_config(raw) if raw else DDPMScheduler()
    return {
        "unet": unet,
        "scheduler": scheduler,
        "space": LatentSpace(vae),
        "text_encoder": TextEncoder(
            tokenizer,
            encoder,
            second=second,
            zero_empty_negative=xl and index.get("force_zeros_for_empty_prompt", True),
        ),
    }


def load_tiny_autoencoder(folder: Path, name: str, device: torch.device, dtype: torch.dtype):
    """A tiny autoencoder (AutoencoderTiny: TAESD) from a folder, safetensors only."""
    from diffusers import AutoencoderTiny

    if not (folder / "diffusion_pytorch_model.safetensors").is_file():
        raise ModelLoadError(f"{name}: no diffusion_pytorch_model.safetensors in {folder}")
    try:
        tiny = AutoencoderTiny.from_pretrained(folder, torch_dtype=dtype, use_safetensors=True, low_cpu_mem_usage=False)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise ModelLoadError(f"{name}: the tiny autoencoder could not be loaded ({exc})") from None
    return tiny.to(device).eval().requires_grad_(False)
