"""A live preview's compute: the canvas prepared, a few evaluations of a fast copy of the loaded model, composited.

* **Fast.** On a CPU previews run on a channels-last copy of the weights, in bf16 where the CPU has it natively
  (`preview_pipeline`); only the network, the sampler stays float32.
* **Stable.** The preview's noise is fixed per visitor and seed (the page's seed, or one drawn from the visitor's
  id while the seed is random), so the same canvas always gives the same preview and a small stroke changes the
  picture mostly where it was made. The sampler and number of network evaluations were chosen by measurement
  (docs/quality.md, "Live preview settings").
* **Shared.** Canvases with matching settings (`PreviewSettings.key`) run as one forward (`compute_previews`),
  each with its own seed, and the model's turn is taken only for that forward (`ModelSlots.turn`: Generate first).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from ..errors import InputError, SDEditError
from ..samplers import steps_for
from . import limits
from .slots import ModelSlots

# The preview's settings, picked by docs/quality.md "Live preview settings" (python -m benchmarks.live_latency
# --quality; the rule is written there).
PREVIEW_SAMPLER = "dpmpp"
PREVIEW_EVALUATIONS = 2
PREVIEW_SIDE = 256  # the canvas sends its picture at most this many pixels a side
MAX_PREVIEW_SIDE = 1024  # a larger preview guide is refused (the page never sends one)
FAST_COPY_MAX_PARAMS = 50_000_000  # a copy of the weights for previews: only for small models
# Previews of several visitors with matching settings may share a forward: on a GPU that is nearly free, on a
# CPU it is not (a batch of 2 takes twice as long), so there one preview runs at a time.
MAX_PREVIEW_BATCH = int(os.environ.get("SDEDIT_LIVE_BATCH", "0")) or None  # None: 8 on a GPU, 1 on a CPU


@dataclass(frozen=True)
class PreviewSettings:
    """What the page's controls say about the preview (the model, t0, the seed, the mask's refinement, and a text
    model's prompt, negative prompt and guidance scale: None = the model's default)."""

    model: str | None = None
    strength: float = 0.5
    seed: int = -1
    mask_dilation: float = 0
    mask_feather: float = 0
    prompt: str | None = None
    negative_prompt: str | None = None
    guidance_scale: float | None = None

    @property
    def key(self) -> tuple:
        """Previews may share a forward when these match (one run has one text condition)."""
        return (self.model, round(float(self.strength), 4), self.prompt, self.negative_prompt, self.guidance_scale)


@dataclass
class PreviewRequest:
    visitor: str
    seq: int
    guide: Any  # PNG bytes or a PIL image: the canvas, flattened, at most PREVIEW_SIDE a side
    mask: Any = None  # PNG bytes / PIL / array (white = may change) or None: the whole canvas may change
    settings: PreviewSettings = field(default_factory=PreviewSettings)
    # PNG bytes / PIL / array or None: each pixel's own t0 as a fraction of t0 (white = the full t0, black = kept
    # exactly), the photo tab's Strength layer as Generate reads it (tabs/edit.photo_guide_and_strength)
    strength_map: Any = None
    keep_details: bool = False  # the canvas's guide help switch: thin and small parts start at half the t0

    @property
    def seed(self) -> int:
        """The page's seed, or (while it is random, -1) one fixed by the visitor's id."""
        s = self.settings.seed
        if s is not None and int(s) >= 0:
            return int(s)
        return int.from_bytes(hashlib.sha256(self.visitor.encode()).digest()[:4], "big") & 0x7FFFFFFF


@dataclass
class PreviewResult:
    seq: int
    jpeg: bytes | None = None
    stale: bool = False
    error: str | None = None
    compute_ms: float = 0.0  # prepare + forward + compositing + JPEG, this request's share
    wait_ms: float = 0.0  # from submit to the start of its compute, and for the model's turn
    batch: int = 1

    def as_dict(self) -> dict:
        out: dict[str, Any] = {"seq": self.seq, "stale": self.stale}
        if self.jpeg is not None:
            out["image"] = "data:image/jpeg;base64," + base64.b64encode(self.jpeg).decode("ascii")
        if self.error:
            out["error"] = self.error
        out["compute_ms"] = round(self.compute_ms, 1)
        out["wait_ms"] = round(self.wait_ms, 1)
        return out


def preview_batch() -> int:
    """How many canvases of different visitors may share a forward (`SDEDIT_LIVE_BATCH`; else 8 on a GPU, 1 on
    a CPU)."""
    if MAX_PREVIEW_BATCH is not None:
        return MAX_PREVIEW_BATCH
    import torch

    return 8 if torch.cuda.is_available() else 1


def preview_steps(strength: float, evaluations: int = PREVIEW_EVALUATIONS) -> int:
    """The full-schedule length N whose edit at `strength` runs exactly `evaluations` steps (one evaluation each
    for the preview's samplers) and starts nearest to t0: the last E of N trailing steps start at E / N, so N is
    near E / t0 (N = 3 for two steps at t0 = 0.5 would start at 0.67, N = 4 starts at 0.5)."""
    e = max(1, int(evaluations))
    t0 = min(1.0, max(1e-3, float(strength)))
    ok = [n for n in range(e, min(1000, 4 * round(e / t0) + 4) + 1) if steps_for(n, t0) == e]
    return min(ok, key=lambda n: (abs(e / n - t0), n)) if ok else max(e, round(e / t0))


def loaded_pipeline(name: str | None):
    """The pipeline for `name` if it is the one loaded (previews never load a model; the model box does)."""
    from . import models

    return models._PIPES.get(models.resolve_model(name))


_PREVIEW_PIPES: dict[tuple, Any] = {}
_PREVIEW_PIPES_LOCK = threading.Lock()


def preview_dtype(pipe):
    """The dtype of the network previews run on, on a CPU: bf16 where the CPU computes it natively (AVX512-BF16
    or AMX; measured 0.6x the fp32 time per evaluation of the embedded model, docs/performance.md), else the
    model's own (emulated bf16 is slower than fp32)."""
    import torch

    from ..accel import has_bf16_cpu

    return torch.bfloat16 if pipe.dtype == torch.float32 and has_bf16_cpu() else pipe.dtype


def preview_pipeline(pipe, dtype=None):
    """The pipeline previews run on. A latent model's decodes (and encodes) its previews through the tiny
    autoencoder its config names (`SDEditPipeline.previews`: TAESD), sharing its networks and prompt cache.

    On a CPU: the same model with its weights copied into channels-last order and `dtype` (default
    `preview_dtype`: bf16 where native). Only the network runs in that dtype: the pipeline feeds it float32
    samples cast on the way in and casts its output back to float32, so the sampler's arithmetic, the noise and
    the x0 clipping stay float32 (`SDEditPipeline.model_fn`). A copy (`SDEditPipeline.replace`, which keeps a
    latent model's space and text encoder), so Generate's numbers stay exactly the library's (bf16: 14 MB more
    memory for the embedded model). On a GPU, and for a model over `FAST_COPY_MAX_PARAMS`: the model's own
    network. A preview pipeline maps to itself."""
    import copy

    import torch

    if type(pipe).__name__ != "SDEditPipeline":  # the fast path (sdedit.accel) and stand-ins: as they are
        return pipe
    on_cpu = pipe.device.type == "cpu"
    copied = on_cpu and sum(p.numel() for p in pipe.unet.parameters()) <= FAST_COPY_MAX_PARAMS
    dtype = (dtype or preview_dtype(pipe)) if copied else None
    with _PREVIEW_PIPES_LOCK:
        if any(fast is pipe for fast in _PREVIEW_PIPES.values()):
            return pipe
        key = (id(pipe.unet), dtype)
        fast = _PREVIEW_PIPES.get(key)
        if fast is None or fast.config is not pipe.config:
            fast = pipe.previews()  # itself for a pixel model, or where no tiny autoencoder is named or found
            if copied:
                # nn.Module.to, not diffusers' override: that one warns about fp32-kept modules even when there
                # are none, a line in every visitor's log that says nothing.
                unet = torch.nn.Module.to(copy.deepcopy(pipe.unet), memory_format=torch.channels_last, dtype=dtype)
                fast = fast.replace(unet=unet)  # the same clipping, space and text encoder as the model it previews
            for k in [k for k in _PREVIEW_PIPES if k[0] != key[0]]:
                del _PREVIEW_PIPES[k]  # one model is served at a time
            _PREVIEW_PIPES[key] = fast
        return fast


def preview_sampler(pipe) -> str:
    return PREVIEW_SAMPLER if PREVIEW_SAMPLER in pipe.config.samplers else pipe.config.samplers[0]


def _jpeg(rgb: np.ndarray) -> bytes:
    """A preview for the page: JPEG (about 1 ms at 256 px, where a PNG of a textured result takes 10-12 ms)."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _image(obj, what: str) -> Image.Image:
    from .guides import to_pil

    if isinstance(obj, (bytes, bytearray)):
        from ..imaging import load_image

        image = load_image(bytes(obj), what, limits.APP_LIMITS.image)
    else:
        image = to_pil(obj, what)
    if max(image.size) > MAX_PREVIEW_SIDE:
        raise InputError(f"the preview's {what} is {image.width}x{image.height}; at most {MAX_PREVIEW_SIDE} a side")
    return image


def _prepare(pipe, r: PreviewRequest, fit: str):
    """One canvas on the model's canvas; words (InputError) for a canvas with nothing to compute."""
    from .guides import prepare_mask

    guide = _image(r.guide, "canvas").convert("RGB")
    mask = smap = None
    if r.mask is not None:
        s = r.settings
        mask = prepare_mask(_image(r.mask, "mask"), guide.size, s.mask_dilation, s.mask_feather)
    if r.strength_map is not None:
        smap = _image(r.strength_map, "strength map")
    rgb = np.asarray(guide)
    if mask is None and (rgb == rgb.reshape(-1, 3)[0]).all():
        raise InputError("paint some strokes to see a preview")
    return pipe.prepare(guide, mask, fit, strength_map=smap, keep_details=r.keep_details)


def compute_previews(
    requests: list[PreviewRequest],
    slots: ModelSlots | None = None,
    pipe=None,
    sampler: str | None = None,
    evaluations: int = PREVIEW_EVALUATIONS,
) -> list[PreviewResult]:
    """Previews of canvases with matching settings: each prepared alone, one forward for all (on `slots`' turn
    for previews, when given), composited by the pipeline's `postprocess` (without the upscaler: the model's
    own picture, resized).

    A canvas with nothing to compute (blank, or a photo with nothing painted) answers with words instead.
    `pipe`, `sampler` and `evaluations` default to the loaded model and the measured preview settings (the
    benchmark passes its candidates).
    """
    s = requests[0].settings
    if pipe is None:
        loaded = loaded_pipeline(s.model)
        if loaded is None:
            return [PreviewResult(r.seq, error="the model is still loading") for r in requests]
        pipe = preview_pipeline(loaded)
    checked = pipe.check_inputs(
        strength=s.strength,
        num_inference_steps=preview_steps(float(s.strength), evaluations),
        sampler=sampler or preview_sampler(pipe),
        repeats=1,
        num_images=1,
        snr=0.0,
        output_type="uint8",
        prompt=s.prompt,
        negative_prompt=s.negative_prompt,
        guidance_scale=s.guidance_scale,
    )
    results = [PreviewResult(r.seq) for r in requests]
    prepared, rows, prepare_s = [], [], []
    for i, r in enumerate(requests):
        t0 = time.perf_counter()
        try:
            prepared.append(_prepare(pipe, r, checked.fit))
            rows.append(i)
            prepare_s.append(time.perf_counter() - t0)
        except SDEditError as exc:
            msg = str(exc)
            if isinstance(exc, InputError) and "empty" in msg and r.mask is not None:
                msg = "paint on the photo to see a preview"
            results[i].error, results[i].compute_ms = msg, (time.perf_counter() - t0) * 1000
    if not prepared:
        return results
    waited = time.perf_counter()
    with slots.turn() if slots is not None else contextlib.nullcontext():
        wait_ms = (time.perf_counter() - waited) * 1000
        samples = pipe.run(prepared, checked, seeds=[requests[i].seed for i in rows])
    out = pipe.postprocess(samples, prepared, checked, upscale=False, requests=[1] * len(rows), prepare_s=prepare_s)
    for i, own in zip(rows, out.requests, strict=True):
        t = time.perf_counter()
        results[i].jpeg = _jpeg(np.asarray(own.images[0]))
        seconds = own.metadata["timings"]
        shared = (seconds["sample_s"] + seconds["postprocess_s"]) / len(rows)
        results[i].compute_ms = (seconds["prepare_s"] + shared + time.perf_counter() - t) * 1000
        results[i].wait_ms = wait_ms
    return results
