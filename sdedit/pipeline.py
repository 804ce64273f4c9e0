"""`SDEditPipeline`: SDEdit on any diffusers UNet2DModel, VP (DDPM) or VE (NCSN++), and on Stable Diffusion.

    pipe = SDEditPipeline.from_pretrained("google/ddpm-church-256")      # or a folder, or a config name
    out = pipe(guide, mask_image=None, strength=0.5, num_inference_steps=20, sampler="dpmpp", seed=0)
    out.images[0].save("edit.png"); print(out.metadata)

    pipe = SDEditPipeline.from_pretrained("stabilityai/sd-turbo")         # a latent, text-conditioned model
    out = pipe(guide, strength=0.5, prompt="a watercolour of a lighthouse", seed=0)

`strength` is SDEdit's t0 in (0, 1]: small stays faithful to the guide, large is more realistic.
`num_inference_steps` is the length of a *full* schedule, as in diffusers' img2img: an edit at strength s
runs round(s * N) of them. The reference sampler with N = T (1000) is the official loop.

A call is four public steps, so that a server or a batch job can do each once where it needs to:

    settings = pipe.check_inputs(strength=0.5, num_images=2)     # 1. every problem, before any work
    guide = pipe.prepare(image, mask, settings.fit)              # 2. decode, place, into the model's space
    samples = pipe.run([guide, guide], settings, seeds=[0, 1])   # 3. K x (perturb -> reverse SDE), batched
    out = pipe.postprocess(samples, [guide, guide], settings)    # 4. back to the guide's size, composited

`run` takes one prepared guide per sample (several requests' guides may share one batch) and never checks
or prepares again. The model's space (`adapters`) is the only place that knows the network sees pixels.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from . import loading, registry
from . import threads as cpu_threads
from .adapters import ModelSpace, pixel_space
from .configs import ModelConfig, Sampling
from .details import detail_strength
from .errors import InputError, LimitError, ModelLoadError, ModelNotFoundError
from .imaging import (
    DEFAULT_LIMITS,
    FITS,
    ImageLimits,
    Placement,
    canvas_mask,
    composite,
    crop_region,
    load_image,
    place,
    place_mask,
    to_rgb,
    unplace,
)
from .latent import (
    MAX_GUIDANCE,
    Conditioning,
    LatentSpace,
    TextEncoder,
    conditional_model,
    eps_from_v,
    guidance_embedding,
)
from .masks import to_mask
from .noise import NoiseSource, seeds_for
from .outlines import fill_guide
from .samplers import Guide, StepInfo, X0Limit, limit_x0, perturb_ve, perturb_vp, ve_sigmas, vp_timesteps
from .upscale import resolve as resolve_upscaler

Tensor = torch.Tensor
log = logging.getLogger(__name__)

# Whether the fast samplers follow the model's x0 clipping / thresholding (samplers.limit_x0). On: measured better
# (docs/quality.md, "Clipping x0 in the fast samplers"); `pipe.x0_limit` can be set per pipeline either way.
FOLLOW_X0_LIMIT = True

OUTPUT_TYPES = ("pil", "np", "pt", "uint8", "model")


@dataclass(frozen=True)
class RunLimits:
    """Bounds on one call, checked before any model evaluation."""

    max_images: int = 64
    max_repeats: int = 10
    max_steps: int = 1000
    max_work: int = 200_000  # samples x steps x repeats (x corrector) network evaluations of one image
    image: ImageLimits = DEFAULT_LIMITS


@dataclass(frozen=True)
class Settings(Sampling):
    """The settings of one call, validated and completed from the model's defaults (`check_inputs`)."""

    num_images: int = 1
    fit: str = "pad"
    output_type: str = "pil"
    prompt: str | None = None  # text models only ("" = unconditional); None for models without text
    negative_prompt: str | None = None  # classifier-free guidance only


@dataclass
class PreparedGuide:
    """One guide, prepared once: its full-size RGB pixels and the region that may change there (`mask`, 1 =
    may change, None = all), its canvas at the model's resolution with the canvas's strength map (mask and
    strength map in one, the padding 0), and both in the model's space (`x0`, `x0_strength`: what the
    samplers see). `strength_map`: whether the caller gave a strength map (not only a mask)."""

    rgb: np.ndarray
    mask: np.ndarray | None
    canvas: np.ndarray
    canvas_strength: np.ndarray | None
    placement: Placement
    x0: torch.Tensor = field(repr=False, default=None)
    x0_strength: torch.Tensor | None = field(repr=False, default=None)  # per-element t0 / strength, or None
    strength_map: bool = False
    fill_outlines: bool = False  # its closed outlines were filled with their stroke colour (`outlines.fill_guide`)
    keep_details: bool = False  # its details started at a lower t0 (`details.detail_strength`)


@dataclass
class Samples:
    """What `run` hands to `postprocess`: the samples in the model's space and as canvases."""

    x: torch.Tensor  # (B, C, h, w) in the model's space
    canvases: np.ndarray  # (B, R, R, 3) uint8 at the model's resolution
    seeds: list[int] | None
    seconds: float
    threads: list[int] = field(default_factory=list)  # the CPU thread counts the network ran with (`sdedit.threads`)


@dataclass
class SDEditOutput:
    """`images` in the requested `output_type` (image-major: all samples of guide 0, then guide 1, ...).

    pil: list of PIL images; uint8: (B, H, W, 3) uint8; np: (B, H, W, 3) float32 in [0, 1];
    pt: (B, 3, H, W) float32 in [0, 1] (lists where the guides differ in size); model: the raw
    (B, 3, R, R) float32 samples in the model's data range, before mapping back.
    """

    images: list[Image.Image] | np.ndarray | torch.Tensor | list[np.ndarray]
    metadata: dict
    canvases: np.ndarray = field(repr=False, default=None)  # (B, R, R, 3) uint8, before mapping back
    # one output per request that shared the batch (`postprocess(requests=...)`), each with its own images,
    # canvases and metadata (its seeds, guides, timings); a plain call is one request
    requests: list[SDEditOutput] = field(repr=False, default_factory=list)


def _number(value, name: str, kind=float):
    if isinstance(value, bool) or value is None:
        raise InputError(f"{name} must be a number, not {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, not {value!r}") from None
    if not math.isfinite(number):
        raise InputError(f"{name} must be a finite number, not {value!r}")
    if kind is int:
        if not number.is_integer():
            raise InputError(f"{name} must be a whole number, not {value!r}")
        return int(number)
    return number


def _int_in(value, name: str, lo: int, hi: int) -> int:
    n = _number(value, name, int)
    if not lo <= n <= hi:
        raise InputError(f"{name} must be from {lo} to {hi}, not {n}")
    return n


class SDEditPipeline:
    """Perturb a guide to t0, then simulate the reverse SDE back to t = 0 (Meng et al., ICLR 2022)."""

    def __init__(
        self,
        unet: torch.nn.Module,
        scheduler,
        config: ModelConfig | None = None,
        limits: RunLimits | None = None,
        space: ModelSpace | None = None,
        threads: int | str | None = "auto",
        text_encoder: TextEncoder | None = None,
    ):
        """Args:
        unet: the score network (a diffusers UNet2DModel, or any module called as ``unet(x, t).sample``; a
            UNet2DConditionModel for a text model).
        scheduler: its diffusers scheduler (DDPM-family for VP, ``ScoreSdeVeScheduler`` for VE).
        config: the model's config; None infers one from the network and scheduler.
        limits: bounds on one call (`RunLimits`).
        space: the model's space (`adapters`); None = pixels in the config's data range; a
            `latent.LatentSpace` for Stable Diffusion.
        threads: CPU threads for the network on a CPU: "auto" = the cores free at each step
            (`sdedit.threads`), an int = that many, None = leave torch's settings alone.
        text_encoder: a `latent.TextEncoder` for a text-conditioned UNet.
        """
        if (
            threads is not None
            and threads != "auto"
            and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1)
        ):
            raise InputError(f"threads must be 'auto', None or a whole number of at least 1, not {threads!r}")
        self.threads = threads
        self.unet = unet
        self.scheduler = scheduler
        self.text_encoder = text_encoder
        sde = "ve" if type(scheduler).__name__ == loading.VE_SCHEDULER else "vp"
        if config is None:  # a bare model: SDE from its scheduler, resolution from the network and its space
            size = getattr(unet.config, "sample_size", 256)
            size = size[0] if isinstance(size, (list, tuple)) else size
            defaults = Sampling(0.5, "reference", 1000, 1) if sde == "ve" else Sampling()
            family = "pixel" if text_encoder is None else "sd"
            if text_encoder is not None:
                defaults = replace(defaults, guidance_scale=7.5)  # diffusers' Stable Diffusion default
            config = ModelConfig(name=type(unet).__name__, source="", sde=sde, defaults=defaults, family=family)
            space = space or pixel_space(config)
            config = replace(config, resolution=space.resolution(int(size)))
        if config.sde != sde:
            raise InputError(f"{config.name}: config says {config.sde} but the scheduler is {type(scheduler).__name__}")
        if config.takes_text != (text_encoder is not None):
            raise InputError(f"{config.name}: a {config.family} model needs a text encoder exactly when it takes text")
        self.config = config
        self.space = space or pixel_space(config)
        self.limits = limits or RunLimits()
        # the model's x0 clipping / thresholding (its scheduler config), for the samplers that follow it; a
        # range in pixels, so never in a latent space
        pixels = config.family == "pixel"
        self.x0_limit = X0Limit.from_config(scheduler.config) if sde == "vp" and FOLLOW_X0_LIMIT and pixels else None
        self.guidance = self._guidance_mode()
        self._progress_kwargs: dict = {}

    def _guidance_mode(self) -> str:
        """How guidance_scale acts on this network: "cfg", "embedded" (an LCM's UNet input) or "none"."""
        if self.text_encoder is None:
            return "none"
        if getattr(self.unet.config, "time_cond_proj_dim", None):
            return "embedded"
        return "none" if self.config.distilled else "cfg"

    def replace(self, **components) -> SDEditPipeline:
        """The same pipeline with some components swapped (unet, scheduler, config, limits, space,
        text_encoder): a preview copy with another decoder, or a half-precision network."""
        kw = dict(
            unet=self.unet,
            scheduler=self.scheduler,
            config=self.config,
            limits=self.limits,
            space=self.space,
            threads=self.threads,
            text_encoder=self.text_encoder,
        )
        pipe = type(self)(**{**kw, **components})
        pipe.x0_limit = self.x0_limit
        pipe._progress_kwargs = dict(self._progress_kwargs)
        return pipe

    # ----- construction ----------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        limits: RunLimits | None = None,
        threads: int | str | None = "auto",
    ) -> SDEditPipeline:
        """Load a model and its scheduler (and, for a latent model, its autoencoder and text encoder).

        Args:
            name_or_path: a configured name (`fluent-emoji-64`, `sd-turbo`), a local folder (a diffusers
                UNet2DModel, or a Stable Diffusion layout: model_index.json, unet/, vae/, text_encoder/,
                tokenizer/, scheduler/), or a Hub id; None is the embedded default.
            device: "cpu", "cuda", ...; None = CUDA when there is one.
            dtype: "auto"/None (fp32 on the CPU, bf16 on CUDA for VP models), or a torch dtype or its name.
            limits: bounds on one call (`RunLimits`).
            threads: CPU threads ("auto", an int, or None to leave torch alone; see `__init__`).
        """
        model = loading.load_model(name_or_path, device, dtype)
        return cls(config=model.config, limits=limits, threads=threads, **model.components)

    @property
    def device(self) -> torch.device:
        for tensor in (*self.unet.parameters(), *self.unet.buffers()):
            return tensor.device
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        for tensor in self.unet.parameters():
            return tensor.dtype
        return torch.float32

    @property
    def sde(self) -> str:
        return self.config.sde

    @property
    def num_train_timesteps(self) -> int:
        return int(getattr(self.scheduler.config, "num_train_timesteps", 1000))

    def previews(self, tiny=None) -> SDEditPipeline:
        """This pipeline with previews decoded (and guides encoded) by a tiny autoencoder: `tiny`, else the one
        its config names (`preview_decoder`: TAESD, loaded once). The networks, scheduler, text encoder and its
        prompt cache are shared. Where there is no tiny autoencoder (a pixel model, none named, or it can't be
        fetched), the pipeline itself."""
        space = self.space
        if not isinstance(space, LatentSpace):
            return self
        if tiny is None and space.tiny is None:
            if not self.config.preview_decoder:
                return self
            try:
                tiny = loading.load_tiny_autoencoder(self.config.preview_decoder, self.device, self.dtype)
            except (ModelLoadError, ModelNotFoundError) as exc:
                log.warning("previews use the full autoencoder: %s", exc)
                return self
        return self.replace(space=LatentSpace(space.vae, tiny or space.tiny, fast=True))

    @property
    def prediction_type(self) -> str:
        """What the network predicts ("epsilon" or "v_prediction"); the samplers always get eps."""
        return getattr(self.scheduler.config, "prediction_type", "epsilon") or "epsilon"

    def to(self, device=None, dtype=None) -> SDEditPipeline:
        self.unet.to(device=device, dtype=dtype)
        for module in (getattr(self.space, "vae", None), getattr(self.space, "tiny", None)):
            if module is not None:
                module.to(device=device, dtype=dtype)
        if self.text_encoder is not None:
            for module in self.text_encoder.modules:
                module.to(device=device, dtype=dtype)
            self.text_encoder.clear()
        return self

    def set_progress_bar_config(self, **kwargs) -> None:
        self._progress_kwargs = kwargs

    def progress_bar(self, total: int):
        return tqdm(total=total, **{"desc": "SDEdit", "leave": False, **self._progress_kwargs})

    # ----- 1. check inputs -------------------------------------------------------------------------
    def default_steps(self, sampler: str) -> int:
        """A sampler's full-schedule length when none is given: the config's own choice for its default
        sampler, the paper's for the paper's sampler, else the registry's."""
        d, paper = self.config.defaults, self.config.paper
        if sampler == d.sampler:
            return d.num_inference_steps
        if sampler == paper.sampler:
            return paper.num_inference_steps
        return registry.default_steps(sampler, self.num_train_timesteps)

    def evaluations(self, settings: Sampling) -> int:
        """Network evaluations of one sample of a call with these settings, all repeats."""
        spec = registry.get(settings.sampler)
        steps = settings.steps
        return settings.repeats * spec.evaluations(steps, settings.snr, registry.corrector_steps(self), self.sde)

    def check_inputs(
        self,
        strength=None,
        num_inference_steps=None,
        sampler=None,
        repeats=None,
        num_images=1,
        snr=None,
        fit=None,
        output_type="pil",
        num_guides: int = 1,
        prompt=None,
        negative_prompt=None,
        guidance_scale=None,
    ) -> Settings:
        """Validate and complete settings from the model's defaults, before any model evaluation.

        Args:
            strength (`float`, *optional*): t0 in (0, 1]; None = the config's default.
            num_inference_steps (`int`, *optional*): the length of a full schedule; an edit runs
                round(strength * N) of it. None = `default_steps(sampler)`.
            sampler (`str`, *optional*): a registry name the model's SDE runs (`config.samplers`).
            repeats (`int`, *optional*): K, SDEdit passes each starting from the last one's output.
            num_images (`int`): samples per guide.
            snr (`float`, *optional*): the VE Langevin corrector's signal-to-noise ratio in [0, 1]; 0 = off.
            fit (`str`, *optional*): "pad", "crop" or "stretch" (`imaging`); None = the config's.
            output_type (`str`): one of `OUTPUT_TYPES`.
            num_guides (`int`): how many guides share the call (the limits count samples of all of them).
            prompt, negative_prompt (`str`, *optional*): text models only (`config.takes_text`).
            guidance_scale (`float`, *optional*): text models only; 1 = no guidance.

        Returns:
            `Settings`: complete and valid. Raises `InputError` / `LimitError` naming the value and what is allowed.
        """
        d = self.config.defaults
        sampler = d.sampler if sampler is None else sampler
        if not isinstance(sampler, str) or sampler not in self.config.samplers:
            raise InputError(
                f"sampler must be one of {', '.join(self.config.samplers)} for this {self.sde.upper()} model, "
                f"not {sampler!r}"
            )
        strength = _number(d.strength if strength is None else strength, "strength")
        if not 0.0 < strength <= 1.0:
            raise InputError(f"strength (t0) must be in (0, 1], not {strength}")
        T = self.num_train_timesteps
        if num_inference_steps is None:
            num_inference_steps = self.default_steps(sampler)
        most = min(self.limits.max_steps, T, registry.get(sampler).max_steps or T)
        steps = _int_in(num_inference_steps, "num_inference_steps", 1, most)
        repeats = _int_in(d.repeats if repeats is None else repeats, "repeats", 1, self.limits.max_repeats)
        n = _int_in(num_images, "num_images", 1, self.limits.max_images)
        if n * num_guides > self.limits.max_images:
            raise LimitError(f"{num_guides} guides x {n} samples = {n * num_guides}; at most {self.limits.max_images}")
        snr = _number(d.snr if snr is None else snr, "snr")
        if not 0.0 <= snr <= 1.0:
            raise InputError(f"snr must be in [0, 1] (0 turns the corrector off), not {snr}")
        if snr and self.sde != "ve":
            snr = 0.0  # the Langevin corrector is part of the VE sampler only
        fit = self.config.fit if fit is None else fit
        if fit not in FITS:
            raise InputError(f"fit must be one of {', '.join(FITS)}, not {fit!r}")
        if output_type not in OUTPUT_TYPES:
            raise InputError(f"output_type must be one of {', '.join(OUTPUT_TYPES)}, not {output_type!r}")
        prompt, negative_prompt, guidance_scale = self._check_text(prompt, negative_prompt, guidance_scale)
        settings = Settings(
            strength=strength,
            sampler=sampler,
            num_inference_steps=steps,
            repeats=repeats,
            snr=snr,
            guidance_scale=guidance_scale,
            num_images=n,
            fit=fit,
            output_type=output_type,
            prompt=prompt,
            negative_prompt=negative_prompt,
        )
        work = n * num_guides * self.evaluations(settings) * (2 if self._uses_cfg(settings) else 1)
        if work > self.limits.max_work:
            raise LimitError(
                f"this request needs {work:,} network evaluations (samples x steps x repeats); "
                f"at most {self.limits.max_work:,}: use fewer samples, steps or repeats"
            )
        return settings

    def _check_text(self, prompt, negative_prompt, guidance_scale) -> tuple[str | None, str | None, float]:
        """(prompt, negative prompt, guidance scale), checked against what this model takes."""
        name = self.config.name
        if self.text_encoder is None:
            for value, what in ((prompt, "prompt"), (negative_prompt, "negative_prompt")):
                if value is not None and value != "":
                    raise InputError(f"{name} takes no text (an unconditional model): leave {what} out")
            if guidance_scale is not None and _number(guidance_scale, "guidance_scale") != 1.0:
                raise InputError(f"{name} takes no text, so no guidance: guidance_scale must be 1 or unset")
            return None, None, 1.0
        default = self.config.defaults.guidance_scale if self.guidance != "none" else 1.0
        g = _number(default if guidance_scale is None else guidance_scale, "guidance_scale")
        if not 1.0 <= g <= MAX_GUIDANCE:
            raise InputError(
                f"guidance_scale must be from 1 (no guidance) to {MAX_GUIDANCE:g}, not {g:g} "
                "(diffusers' 0 for turbo models is 1 here)"
            )
        if self.guidance == "none" and g != 1.0:
            raise InputError(f"{name} was distilled to run without guidance: guidance_scale must be 1, not {g:g}")
        prompt = self.text_encoder.check(prompt, "prompt")
        negative_prompt = self.text_encoder.check(negative_prompt, "negative prompt")
        if negative_prompt and not (self.guidance == "cfg" and g > 1.0):
            why = "guidance_scale above 1" if self.guidance == "cfg" else f"a model that uses it ({name} does not)"
            raise InputError(f"a negative prompt acts through classifier-free guidance: it needs {why}")
        return prompt, negative_prompt, g

    def _uses_cfg(self, settings: Settings) -> bool:
        return self.guidance == "cfg" and settings.guidance_scale > 1.0

    # ----- 2. prepare a guide and its mask, once -------------------------------------------------------
    def prepare(
        self,
        image,
        mask_image=None,
        fit: str = "pad",
        strength_map=None,
        fill_outlines: bool = False,
        keep_details: bool = False,
    ) -> PreparedGuide:
        """Decode a guide (and mask, and strength map), place it on the model's canvas and put it into the
        model's space.

        A mask and a strength map are one mechanism (`samplers.Guide`): the mask is a map of {0, 1}, a map
        and a mask together are their product, and the canvas's padding is 0. The map is resampled to the
        model's resolution once, where a fraction means a later start, so a {0, 1} map and the same mask give
        the same pixels at any guide size and fit. At the guide's own size every pixel the map leaves at 0 is
        the guide itself, bit for bit (`postprocess`).

        Args:
            image (`PIL.Image.Image`, `np.ndarray`, `torch.Tensor`, `str` or `bytes`): the guide (a path or
                encoded bytes are decoded within `limits.image`).
            mask_image (same forms, *optional*): white (1) = may change; None = all of it.
            fit (`str`): "pad", "crop" or "stretch".
            strength_map (same forms, *optional*): the guide's size, values in [0, 1]: each pixel's own t0 as a
                fraction of `strength` (1 = the full t0, 0 = kept exactly). With a mask too, it counts inside it.
            fill_outlines (`bool`): fill each closed outline of the guide with its stroke colour, at the guide's
                own size, before it is placed (`outlines.fill_guide`: with a mask, the masked pixels are the
                drawing and the mask grows by the filled pixels). A thin outline fades in the noise; a filled
                shape is followed.
            keep_details (`bool`): the drawing's thin and small parts (eyes, rays, wheels) start at a lower t0,
                after any filling (`details.detail_strength`: a strength map from the drawing, in product with the mask
                and strength map); a guide that is no flat-colour drawing (a photo) has none.

        Returns:
            `PreparedGuide`: what `run` and `postprocess` need, computed once per guide.
        """
        limits = self.limits.image
        background = self.config.background or (255, 255, 255)
        pil = to_rgb(load_image(image, "image", limits), background)
        rgb = np.asarray(pil)
        mask = self._read_mask(mask_image, pil.size, "mask")
        if mask is not None and mask.max() <= 0:
            raise InputError("the mask is empty: mark the region that may change (white = change)")
        for name, flag in (("fill_outlines", fill_outlines), ("keep_details", keep_details)):
            if not isinstance(flag, (bool, np.bool_)):
                raise InputError(f"{name} must be True or False, not {flag!r}")
        if fill_outlines:
            rgb, mask, filled = fill_guide(rgb, mask, background)
            if filled.holes:
                pil = Image.fromarray(rgb)
        smap = self._read_mask(strength_map, pil.size, "strength_map")
        edit = smap if mask is None else mask if smap is None else smap * mask  # the guide's strength map
        kept = detail_strength(rgb, background) if keep_details else None
        if kept is not None:
            edit = kept if edit is None else edit * kept
        canvas, placement = place(pil, self.config.resolution, fit, self.config.background)
        cstrength = place_mask(edit, placement) if edit is not None else canvas_mask(placement)
        if mask is not None and cstrength.max() <= 0:
            raise InputError("the mask only covers the part of the image that is outside the model's view (fit='crop')")
        region = crop_region(placement)  # crop: what the canvas doesn't see stays as it is
        keep = None if edit is None else (edit > 0).astype(np.float32)
        if region is not None:
            keep = region if keep is None else keep * region
        canvas = np.asarray(canvas)
        x0 = self.space.encode(canvas)
        x0_strength = self.space.encode_mask(cstrength) if cstrength is not None else None
        flags = dict(strength_map=smap is not None, fill_outlines=bool(fill_outlines), keep_details=bool(keep_details))
        return PreparedGuide(rgb, keep, canvas, cstrength, placement, x0, x0_strength, **flags)

    def _read_mask(self, obj, size: tuple[int, int], what: str) -> np.ndarray | None:
        if obj is None:
            return None
        raw = load_image(obj, what, self.limits.image) if isinstance(obj, (str, bytes)) else obj
        return to_mask(raw, size, what)

    def strengths(self, guides: Sequence[PreparedGuide]) -> torch.Tensor | None:
        """(B, *, h, w) per-element strength maps in the model's space (masks included), ones for guides
        without one; None when no guide has one."""
        if all(g.x0_strength is None for g in guides):
            return None
        full = self.space.encode_mask(np.ones((self.config.resolution,) * 2, np.float32))
        return torch.stack([full if g.x0_strength is None else g.x0_strength for g in guides])

    def prepare_noise(self, seed, generator, batch: int, device: torch.device) -> tuple[NoiseSource, list[int] | None]:
        """One generator per sample (`seed`: one int, a list, or None for a random one; or `generator`)."""
        if generator is not None:
            gens = list(generator) if isinstance(generator, (list, tuple)) else [generator]
            if len(gens) == 1 and batch > 1:
                # one shared generator (diffusers habit): derive per-sample seeds from it
                base = int(torch.randint(0, 2**62, (1,), generator=gens[0]).item())
                seeds = [base + i for i in range(batch)]
                return NoiseSource.from_seeds(seeds, device), seeds
            if len(gens) != batch:
                raise InputError(f"got {len(gens)} generators for {batch} samples")
            return NoiseSource(gens, device), None
        seeds = seeds_for(seed, batch)
        return NoiseSource.from_seeds(seeds, device), seeds

    # ----- 3. run: K repeats of perturb -> reverse SDE ---------------------------------------------------
    def conditioning(self, settings: Settings, batch: int) -> Conditioning | None:
        """The text condition of a run of `batch` samples (None for a model without text): the prompt's cached
        embeddings, the negative prompt's first under classifier-free guidance, an LCM's guidance embedding."""
        text = self.text_encoder
        if text is None:
            return None
        device, dtype = self.device, self.dtype

        def rows(prompt: str | None, zeros: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
            embeds, pooled = text.encode([prompt or ""])
            if zeros:  # SDXL's empty negative prompt
                embeds, pooled = torch.zeros_like(embeds), torch.zeros_like(pooled)
            pooled = pooled.to(device, dtype).repeat(batch, 1) if pooled is not None else None
            return embeds.to(device, dtype).repeat(batch, 1, 1), pooled

        embeds, pooled = rows(settings.prompt)
        g = settings.guidance_scale
        added = None
        if pooled is not None:  # SDXL: the pooled embedding and the size condition (no crop, the canvas's size)
            r = self.config.resolution
            added = {"text_embeds": pooled, "time_ids": torch.tensor([[r, r, 0, 0, r, r]], device=device, dtype=dtype)}
            added["time_ids"] = added["time_ids"].repeat(batch, 1)
        if self._uses_cfg(settings):
            zeros = text.zero_empty_negative and not settings.negative_prompt
            negative, negative_pooled = rows(settings.negative_prompt, zeros)
            if added is not None:
                added = {
                    "text_embeds": torch.cat([negative_pooled, added["text_embeds"]]),
                    "time_ids": added["time_ids"].repeat(2, 1),
                }
            return Conditioning(torch.cat([negative, embeds]), g, cfg=True, added=added)
        timestep_cond = None
        if self.guidance == "embedded":
            w = torch.full((batch,), g - 1.0)
            timestep_cond = guidance_embedding(w, self.unet.config.time_cond_proj_dim).to(device, dtype)
        return Conditioning(embeds, g, cfg=False, timestep_cond=timestep_cond, added=added)

    def model_fn(self, conditioning: Conditioning | None = None) -> Callable[[torch.Tensor, torch.Tensor], Tensor]:
        """eps(x, t) for VP, score(x, sigma) for VE: float32 in and out, the UNet's dtype inside. A text model
        needs its run's `conditioning`."""
        unet, dtype = self.unet, self.dtype
        if conditioning is not None:
            return conditional_model(unet, dtype, conditioning)

        def call(x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
            cpu_threads.step()  # the free cores now, within an edit (`run`); nothing outside one
            return unet(x.to(dtype), level.to(x.device)).sample.float()

        return call

    def denoise(
        self,
        guide: Guide,
        settings: Settings,
        noise: NoiseSource,
        callback=None,
        official_mask_timing: bool = False,
        on_start=None,
        conditioning: Conditioning | None = None,
    ) -> torch.Tensor:
        """One SDEdit pass (perturb to t0, integrate back to 0) with the registered sampler's loop."""
        spec = registry.get(settings.sampler)
        loop, schedule = spec.build(self, settings, official_mask_timing)
        model = self.model_fn() if conditioning is None else self.model_fn(conditioning)
        if self.prediction_type == "v_prediction":
            model = eps_from_v(model, self.scheduler.alphas_cumprod)
        if spec.limits_x0 and self.x0_limit is not None:
            model = limit_x0(model, self.scheduler.alphas_cumprod, self.x0_limit)
        return loop(model, guide, schedule, noise, callback=callback, on_start=on_start)

    @torch.inference_mode()
    def run(
        self,
        guides: Sequence[PreparedGuide],
        settings: Settings,
        seeds: int | Sequence[int] | None = None,
        *,
        noise: NoiseSource | None = None,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
        callback: Callable[[StepInfo], None] | None = None,
        on_start: Callable[[int, torch.Tensor], None] | None = None,
        official_mask_timing: bool = False,
        progress: bool = False,
    ) -> Samples:
        """SDEdit one batch: perturb each guide to t0 and integrate the reverse SDE back to 0, K times.

        K repeats: each starts from the previous output inside the mask and from the guide outside it (the
        official hand-off), with fresh start noise. Nothing is checked again: `settings` come from
        `check_inputs`, so a server may run several requests' samples in one call.

        Args:
            guides (`Sequence[PreparedGuide]`): one prepared guide per sample (the same object may repeat).
            settings (`Settings`): from `check_inputs`.
            seeds (`int` or `Sequence[int]`, *optional*): one int (sample i gets seed + i), one per sample, or
                None for random ones.
            noise (`NoiseSource`, *optional*): the samples' noise streams, instead of seeds.
            generator (`torch.Generator` or a list, *optional*): instead of seeds, diffusers-style.
            callback (`Callable[[StepInfo], None]`, *optional*): after every step.
            on_start (`Callable[[int, torch.Tensor], None]`, *optional*): (repeat, x(t0)) at each pass's start.
            official_mask_timing (`bool`): the official code's masking (`samplers.Guide`).
            progress (`bool`): a tqdm bar.

        Returns:
            `Samples`: the samples in the model's space and as canvases, their seeds and the seconds taken.
        """
        t_start = time.perf_counter()
        s = settings
        device = self.device
        if official_mask_timing and any(g.strength_map or g.keep_details for g in guides):
            raise InputError(
                "a strength map (keep_details makes one) follows the default mask timing; official_mask_timing must"
                " be False"
            )
        x0 = torch.stack([g.x0 for g in guides]).to(device)
        strength = self.strengths(guides)
        strength = strength.to(device) if strength is not None else None
        batch = x0.shape[0]
        seed_list = None
        if noise is None:
            noise, seed_list = self.prepare_noise(seeds, generator, batch, device)
        conditioning = self.conditioning(s, batch)  # the prompt's embeddings: computed once, cached per prompt
        editable = None if strength is None else strength > 0
        total = s.repeats * s.steps
        bar = self.progress_bar(total) if progress else None
        x = x0
        with cpu_threads.for_run(self.threads if device.type == "cpu" else None) as used:
            for k in range(s.repeats):
                if k and editable is not None:
                    # the official hand-off: the previous output inside the mask, the original guide outside it
                    # (under the default timing the kept region already is the guide, so this changes nothing)
                    x = torch.where(editable, x, x0)
                guide = Guide(x, noise.randn_like(x), strength=strength, official=official_mask_timing)
                step_cb = self._step_callback(callback, bar, k, s.steps, total)
                start_cb = (lambda x_t0, k=k: on_start(k, x_t0)) if on_start else None
                x = self.denoise(guide, s, noise, step_cb, official_mask_timing, start_cb, conditioning)
        if bar is not None:
            bar.close()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t_start
        threads = sorted(used) if device.type == "cpu" else []
        return Samples(x, self.space.decode(x), seed_list, seconds, threads)

    def noised(self, x0: torch.Tensor, strength: float, noise: torch.Tensor, num_inference_steps: int | None = None):
        """The perturbed guide an edit starts from (same level as `denoise` uses)."""
        if self.sde == "ve":
            cfg = self.scheduler.config
            return perturb_ve(
                x0, ve_sigmas(strength, num_inference_steps or 1000, cfg.sigma_min, cfg.sigma_max)[0], noise
            )
        t = vp_timesteps(self.num_train_timesteps, num_inference_steps or self.num_train_timesteps, strength)[0]
        return perturb_vp(x0, self.scheduler.alphas_cumprod[t], noise)

    # ----- 4. postprocess: back to each guide's size, the guide itself outside its mask ---------------------
    def postprocess(
        self,
        samples: Samples,
        guides: Sequence[PreparedGuide],
        settings: Settings,
        upscale: bool | None = None,
        *,
        requests: Sequence[int] | None = None,
        prepare_s: float | Sequence[float] = 0.0,
    ) -> SDEditOutput:
        """Map the samples back to each guide's size and composite them: outside the mask, the guide itself.

        The canvases are upscaled before they are mapped back to each guide's size, so outside the mask the
        output is still the guide, pixel for pixel.

        Args:
            samples (`Samples`): from `run`.
            guides (`Sequence[PreparedGuide]`): the same list `run` got.
            settings (`Settings`): the same settings (`output_type` decides the form of `images`).
            upscale (`bool`, *optional*): None = the model's upscaler when its config names one
                (`sdedit.upscale`), True = it (an `InputError` if there is none), False = none.
            requests (`Sequence[int]`, *optional*): how many of the samples belong to each request that shared
                this batch, in order (a server runs several requests in one `run`); None: one request. Each gets
                its own output in `.requests`, whose metadata has its seeds, guides and timings, so that a caller
                never slices the batch's metadata itself.
            prepare_s (`float` or `Sequence[float]`): each request's time in `prepare`, or one number for all.

        Returns:
            `SDEditOutput`: `images`, `metadata` and `canvases` (and `.requests` per request).
        """
        t_start = time.perf_counter()
        s = settings
        counts = [len(guides)] if requests is None else [int(n) for n in requests]
        if min(counts, default=0) < 1 or sum(counts) != len(guides):
            raise ValueError(f"requests {counts} do not add up to the {len(guides)} samples")
        prepared = [float(prepare_s)] * len(counts) if np.ndim(prepare_s) == 0 else [float(p) for p in prepare_s]
        if len(prepared) != len(counts):
            raise ValueError(f"{len(prepared)} prepare times for {len(counts)} requests")
        upscaler = resolve_upscaler(self.config, upscale, self.device)
        if s.output_type == "model":  # raw float32 samples in the model's space, at its resolution
            out, upscaler = samples.x.float().cpu(), None
        else:
            with cpu_threads.for_run(self.threads if upscaler is not None and upscaler.device.type == "cpu" else None):
                canvases = samples.canvases if upscaler is None else upscaler.upscale(samples.canvases)
            results = [
                composite(g.rgb, unplace(canvas, g.placement, g.rgb), g.mask)
                for g, canvas in zip(guides, canvases, strict=True)
            ]
            out = self._format(results, s.output_type)
        metadata = self._metadata(s, samples.seeds, _distinct(guides), len(guides))
        metadata["upscaler"] = upscaler.name if upscaler is not None else None
        metadata["threads"] = samples.threads
        postprocess_s = time.perf_counter() - t_start
        timings = functools.partial(_timings, samples.seconds, postprocess_s, len(guides))
        metadata["timings"] = timings(sum(prepared))
        parts, o = [], 0
        for n, prep in zip(counts, prepared, strict=True):
            own = _distinct(guides[o : o + n])
            meta = {
                **metadata,
                "seeds": None if samples.seeds is None else samples.seeds[o : o + n],
                "num_images": n // len(own),
                **_guides_metadata(own),
                "batched_requests": len(counts),
                "timings": timings(prep),
            }
            parts.append(SDEditOutput(out[o : o + n], meta, samples.canvases[o : o + n]))
            o += n
        return SDEditOutput(out, metadata, samples.canvases, parts)

    # ----- the call --------------------------------------------------------------------------------
    def __call__(
        self,
        image,
        mask_image=None,
        strength: float | None = None,
        num_inference_steps: int | None = None,
        sampler: str | None = None,
        repeats: int | None = None,
        num_images: int = 1,
        seed: int | Sequence[int] | None = None,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
        snr: float | None = None,
        fit: str | None = None,
        output_type: str = "pil",
        callback: Callable[[StepInfo], None] | None = None,
        progress: bool = True,
        official_mask_timing: bool = False,
        on_start: Callable[[int, torch.Tensor], None] | None = None,
        strength_map=None,
        upscale: bool | None = None,
        fill_outlines: bool = False,
        keep_details: bool = False,
        prompt: str | None = None,
        negative_prompt: str | None = None,
        guidance_scale: float | None = None,
    ) -> SDEditOutput:
        """Edit one guide (or a list of guides) into `num_images` samples each: 1. check the inputs, 2. prepare
        each guide once, 3. K x (perturb to t0 -> reverse SDE) for all samples in one batch, 4. back to each
        guide's size, the guide itself outside its mask.

        Args:
            image (`PIL.Image.Image`, `np.ndarray`, `torch.Tensor`, `str`, or a list of them): the guide: PIL,
                numpy (H, W[, C]) uint8 or float in [0, 1], torch (C, H, W) in [0, 1], or a path.
            mask_image (same forms, *optional*): white (1) = may change; None edits everything. A list for a list
                of guides.
            strength (`float`, *optional*): SDEdit's t0 in (0, 1]: small stays faithful to the guide, large is more
                realistic. None = the config's default.
            num_inference_steps (`int`, *optional*): the length of a full schedule (an edit runs round(t0 N)).
            sampler (`str`, *optional*): `dpmpp`, `ddim`, `euler_a`, `reference`, `lcm` (`registry`).
            repeats (`int`, *optional*): K passes, each from the last one's output inside the mask.
            num_images (`int`): samples per guide, batched into one forward.
            seed (`int` or `Sequence[int]`, *optional*): one int (sample i gets seed + i), a list with one seed per
                sample, or None for random ones.
            generator (`torch.Generator` or a list, *optional*): instead of seeds, one per sample (or one,
                shared, for diffusers habits).
            snr (`float`, *optional*): VE only: the Langevin corrector's signal-to-noise ratio; 0 = off.
            fit (`str`, *optional*): "pad", "crop" or "stretch" (`imaging`).
            output_type (`str`): "pil", "np", "pt", "uint8" or "model" (`SDEditOutput`).
            callback (`Callable[[StepInfo], None]`, *optional*): x_t and the predicted x0 after every step, for
                progress and animation.
            progress (`bool`): a tqdm bar (`set_progress_bar_config`).
            official_mask_timing (`bool`): re-noise the kept region as the official code does (`samplers`); with
                `reference` at N = T it reproduces ermongroup/SDEdit (README, "Masks").
            on_start (`Callable[[int, torch.Tensor], None]`, *optional*): (repeat, x(t0)), the perturbed guide
                each repeat starts from (the first frame of an animation), in the model's space.
            strength_map (same forms as `mask_image`, *optional*): per pixel, its own t0 as a fraction of
                `strength` (the guide's size, in [0, 1]; 1 = the full t0, 0 = kept exactly); a list for a list
                of guides.
            upscale (`bool`, *optional*): the model's learned upscaler on the result before it is mapped back;
                None = on when the config names one, True = on (an `InputError` without one), False = off.
            fill_outlines (`bool`): fill each guide's closed outlines with their stroke colour first (`prepare`).
            keep_details (`bool`): each drawing's thin and small parts start at a lower t0, so that eyes, rays
                and wheels survive the noise (`prepare`).
            prompt (`str`, *optional*): text models only (`config.takes_text`).
            negative_prompt (`str`, *optional*): text models with classifier-free guidance only.
            guidance_scale (`float`, *optional*): 1 is none; above 1, classifier-free guidance (one batched UNet
                call per step) or, on an LCM, its guidance input; turbo models take none. None = the config's.

        Returns:
            `SDEditOutput`: `images` in `output_type` (all samples of guide 0, then guide 1, ...) and `metadata`
            (settings, seeds, timings). Every bad input raises an `InputError` or `LimitError` before any work.
        """
        t_start = time.perf_counter()
        images = list(image) if isinstance(image, (list, tuple)) else [image]
        if not images:
            raise InputError("no image was given")
        masks = list(mask_image) if isinstance(mask_image, (list, tuple)) else [mask_image] * len(images)
        if len(masks) != len(images):
            raise InputError(f"got {len(masks)} masks for {len(images)} images")
        maps = list(strength_map) if isinstance(strength_map, (list, tuple)) else [strength_map] * len(images)
        if len(maps) != len(images):
            raise InputError(f"got {len(maps)} strength maps for {len(images)} images")
        # 1. check inputs
        s = self.check_inputs(
            strength,
            num_inference_steps,
            sampler,
            repeats,
            num_images,
            snr,
            fit,
            output_type,
            len(images),
            prompt=prompt,
            negative_prompt=negative_prompt,
            guidance_scale=guidance_scale,
        )
        resolve_upscaler(self.config, upscale, self.device)  # an upscale=True the model can't honour fails now
        # 2. prepare each guide once; every sample of a guide shares it
        prepared = [
            self.prepare(im, m, s.fit, sm, fill_outlines, keep_details)
            for im, m, sm in zip(images, masks, maps, strict=True)
        ]
        guides = [g for g in prepared for _ in range(s.num_images)]
        t_prepared = time.perf_counter()
        # 3. K repeats of perturb -> reverse SDE, all samples in one batch
        samples = self.run(
            guides,
            s,
            seed,
            generator=generator,
            callback=callback,
            on_start=on_start,
            official_mask_timing=official_mask_timing,
            progress=progress,
        )
        # 4. back to images at the input's size; outside the mask, the guide itself
        return self.postprocess(samples, guides, s, upscale, prepare_s=t_prepared - t_start)

    # ----- helpers ---------------------------------------------------------------------------------
    @staticmethod
    def _step_callback(callback, bar, repeat: int, steps: int, total: int):
        if callback is None and bar is None:
            return None

        def on_step(info: StepInfo) -> None:
            if bar is not None:
                bar.update(1)
            if callback is not None:
                info.step, info.total = repeat * steps + info.step, total
                callback(info)

        return on_step

    @staticmethod
    def _format(results: list[np.ndarray], output_type: str):
        if output_type == "pil":
            return [Image.fromarray(r) for r in results]
        same = len({r.shape for r in results}) == 1
        if output_type == "uint8":
            return np.stack(results) if same else results
        floats = [r.astype(np.float32) / 255.0 for r in results]
        if output_type == "np":
            return np.stack(floats) if same else floats
        tensors = [torch.from_numpy(f).permute(2, 0, 1) for f in floats]
        return torch.stack(tensors) if same else tensors

    def _metadata(self, s: Settings, seeds, guides: list[PreparedGuide], batch: int) -> dict:
        text = {}
        if self.text_encoder is not None:  # pixel models' metadata stays as it was
            text = {"prompt": s.prompt, "negative_prompt": s.negative_prompt, "guidance_scale": s.guidance_scale}
        return {
            "model": self.config.name,
            "source": self.config.source,
            "sde": self.sde,
            "sampler": s.sampler,
            "sampler_label": registry.label(s.sampler),
            "strength": s.strength,
            "num_inference_steps": s.num_inference_steps,
            "steps": s.steps,
            "repeats": s.repeats,
            "model_evaluations": self.evaluations(s),
            "snr": s.snr if self.sde == "ve" else None,
            "num_images": s.num_images,
            "batch": batch,
            "seeds": seeds,
            "resolution": self.config.resolution,
            "fit": s.fit,
            **_guides_metadata(guides),
            "device": str(self.device),
            "dtype": str(self.dtype).replace("torch.", ""),
            **text,
        }


def _distinct(guides: Sequence[PreparedGuide]) -> list[PreparedGuide]:
    """Each prepared guide once, in order (a guide with k samples is listed k times)."""
    return list({id(g): g for g in guides}.values())


def _guides_metadata(guides: Sequence[PreparedGuide]) -> dict:
    """What the metadata says about each distinct guide: its size, whether it had a mask or a strength map, and
    whether its closed outlines were filled."""
    return {
        "input_sizes": [list(g.placement.size) for g in guides],
        "masked": [g.mask is not None for g in guides],
        "strength_map": [g.strength_map for g in guides],
        "fill_outlines": [g.fill_outlines for g in guides],
        "keep_details": [g.keep_details for g in guides],
    }


def _timings(sample_s: float, postprocess_s: float, batch: int, prepare_s: float) -> dict:
    """One request's seconds: its own `prepare`, and the shared `run` and `postprocess` of its batch."""
    total = prepare_s + sample_s + postprocess_s
    return {
        "prepare_s": round(prepare_s, 4),
        "sample_s": round(sample_s, 4),
        "postprocess_s": round(postprocess_s, 4),
        "total_s": round(total, 4),
        "per_image_s": round(total / batch, 4),
    }


def load_default(device=None, dtype=None) -> SDEditPipeline:
    """The embedded default model (trained by this project, shipped in models/), ready to edit offline."""
    return SDEditPipeline.from_pretrained(None, device=device, dtype=dtype)
