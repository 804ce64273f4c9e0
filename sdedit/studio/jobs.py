"""The logic behind the SDEdit Studio app (app.py): turning what the UI holds into guides and masks, running
edits and sweeps with progress and an animation, and the per-model settings the controls show.

Everything here is plain Python on PIL/numpy/the pipeline, so it is testable without a browser; app.py only
wires components to these functions. Problems the user can fix raise `SDEditError` subclasses whose message
is shown as is (see `user_message`).
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from . import loading
from .batching import Batch, Cancelled, MicroBatcher
from .configs import REPO_ROOT, SAMPLER_LABELS, ModelConfig, default_config, find_config, is_hub_id, model_configs
from .errors import InputError, ModelLoadError, OutOfMemoryError, SDEditError
from .guard import free_memory, is_out_of_memory, trim_malloc
from .imaging import ImageLimits, check_size, from_model_range, load_image, to_model_range
from .masks import refine, to_mask
from .noise import check_seed, random_seed, seeds_for
from .pipeline import RunLimits, SDEditPipeline, Settings
from .samplers import StepInfo, model_evaluations, steps_for
from .strokes import simulate_strokes
from .sweep import parse_strengths, run_sweep

CANVAS_SIZE = 256  # the paint canvas: 4x the embedded model, small enough for quick strokes in a browser
EXAMPLES_DIR = REPO_ROOT / "examples"
WHITE = (255, 255, 255)


def _env_number(name: str, default: float, lo: float = 1, kind=int):
    """A number from the environment, at least `lo`; the default when unset or unreadable."""
    try:
        value = kind(os.environ.get(name, default))
    except ValueError:
        return default
    return value if math.isfinite(value) and value >= lo else default


def _env_int(name: str, default: int) -> int:
    return _env_number(name, default)


# Every limit a visitor can meet, in one place (docs/reliability.md lists them with their variables).
MAX_SAMPLES = _env_int("SDEDIT_MAX_SAMPLES", 8)
MAX_REPEATS = 5
MAX_STEPS = 1000
# Network evaluations per request (samples x steps x repeats): a queue slot is never held for long.
MAX_WORK = _env_int("SDEDIT_MAX_WORK", 20_000)
# Guides up to 16 MP: the image editor holds several RGBA copies of a photo in memory.
MAX_MEGAPIXELS = _env_number("SDEDIT_MAX_MEGAPIXELS", 16.0, 0.01, float)
# One uploaded file (Gradio's max_file_size) and any other request body (JSON only carries file references).
MAX_UPLOAD_MB = _env_number("SDEDIT_MAX_UPLOAD_MB", 25.0, 0.1, float)
MAX_REQUEST_MB = _env_number("SDEDIT_MAX_REQUEST_MB", 4.0, 0.1, float)
MAX_STRENGTHS_TEXT = 200  # characters of the sweep's t0 list
# Model runs at once (one per replica), and samples from several requests merged into one forward.
CONCURRENCY = _env_int("SDEDIT_CONCURRENCY", 1)
MAX_BATCH = _env_int("SDEDIT_MAX_BATCH", 8)
BATCH_WINDOW_S = _env_number("SDEDIT_BATCH_WINDOW_MS", 100, 0) / 1000
# The fast path (sdedit.accel: half precision, channels_last, CUDA graphs, noise on the device) where it pays:
# "auto" = on CUDA only (on the CPU the plain pipeline is as fast and keeps CPU seeds; on ZeroGPU the GPU
# exists only inside each call, so graphs captured at start-up would be lost), "1" = always, "0" = never.
ACCEL = os.environ.get("SDEDIT_ACCEL", "auto").lower()
# Files the app writes (animations here, Gradio's cache in app.py) are deleted after this many seconds.
OUTPUT_TTL_S = _env_number("SDEDIT_CACHE_TTL_S", 3600, 60)
APP_LIMITS = RunLimits(
    max_images=MAX_SAMPLES,
    max_repeats=MAX_REPEATS,
    max_steps=MAX_STEPS,
    max_work=MAX_WORK,
    image=ImageLimits(max_pixels=int(MAX_MEGAPIXELS * 1e6), max_file_bytes=int(MAX_UPLOAD_MB * 1e6)),
)


def custom_models_allowed() -> bool:
    """Only the operator may let visitors load arbitrary Hub repos (downloads, disk, memory)."""
    return os.environ.get("SDEDIT_ALLOW_CUSTOM_MODELS", "").strip().lower() in ("1", "true", "yes", "on")


def user_message(exc: BaseException) -> str:
    """An SDEditError's message, capitalised for a dialog."""
    text = str(exc).strip() or type(exc).__name__
    return text[0].upper() + text[1:]


# ----- models and their defaults ---------------------------------------------------------------------------


def model_choices() -> list[tuple[str, str]]:
    """(label, name) for the model dropdown: the configured models, the embedded default first."""
    return [(cfg.label, name) for name, cfg in model_configs().items()]


def resolve_model(name: str | None) -> str:
    """A model name the app may load: configured names always, Hub ids only when the operator allows them."""
    if name is None or not str(name).strip():
        return default_config().name
    name = str(name).strip()
    if find_config(name) is not None:
        return find_config(name).name
    if custom_models_allowed() and is_hub_id(name):
        return name
    allowed = ", ".join(model_configs())
    extra = "" if custom_models_allowed() else " (custom Hub models are turned off on this server)"
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
                cfg, unet, scheduler, _, _ = loading.load(name, hub_only=find_config(name) is None)
            except SDEditError:
                raise
            except Exception as exc:  # a broken checkpoint, a diffusers/safetensors error: say so, keep serving
                raise ModelLoadError(f"model {name!r} could not be loaded ({type(exc).__name__}: {exc})") from None
            pipe = _make_pipeline(unet, scheduler, cfg)
            pipe.set_progress_bar_config(disable=True)
            _PIPES.clear()  # the loader keeps a small LRU of weights; keep only the current pipeline here
            _PIPES[name] = pipe
        return pipe


def use_accel(device: torch.device) -> bool:
    """Whether the app serves this device with sdedit.accel's AcceleratedPipeline (see ACCEL)."""
    if ACCEL in ("0", "false", "no", "off"):
        return False
    if ACCEL in ("1", "true", "yes", "on"):
        return True
    zero_gpu = os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "true")
    return device.type == "cuda" and not zero_gpu


def _make_pipeline(unet, scheduler, cfg: ModelConfig) -> SDEditPipeline:
    device = next(unet.parameters()).device
    if not use_accel(device):
        return SDEditPipeline(unet, scheduler, cfg, APP_LIMITS)
    from .accel import AcceleratedPipeline

    return AcceleratedPipeline(unet, scheduler, cfg, APP_LIMITS, device=device)


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


def default_steps(cfg: ModelConfig, sampler: str) -> int:
    """Steps of a full schedule for `sampler`: the config's own choice, the paper's for its sampler."""
    if sampler == cfg.defaults.sampler:
        return cfg.defaults.num_inference_steps
    if sampler == cfg.paper.sampler:
        return cfg.paper.num_inference_steps
    return 1000 if sampler == "reference" else 25


def sampler_choices(cfg: ModelConfig) -> list[tuple[str, str]]:
    return [(SAMPLER_LABELS.get(s, s), s) for s in cfg.samplers]


def model_note(cfg: ModelConfig) -> str:
    """One visible line under the model dropdown: the SDE, and how the model's resolution meets the image."""
    note = f"{cfg.sde.upper()} SDE · paints at {cfg.resolution}×{cfg.resolution} px"
    if cfg.resolution < CANVAS_SIZE:
        note += ": results are upscaled to your image's size for display and download, so they look soft"
    return note + "."


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


def work_hint(strength: float, steps: int, repeats: int, num_samples: int, sde: str = "vp", snr: float = 0.0) -> str:
    """What the chosen settings cost, in the units the limits use (the corrector doubles VE's evaluations)."""
    try:
        n = steps_for(int(steps), float(strength))
        per_step = 2 if sde == "ve" and snr and float(snr) > 0 else 1
        evals = n * per_step * int(repeats) * int(num_samples)
    except (TypeError, ValueError):
        return ""
    over = f" That is over this server's limit of {MAX_WORK:,}: lower something." if evals > MAX_WORK else ""
    return (
        f"Runs {n} denoising steps (t0 × steps) × {int(repeats)} repeat(s) × {int(num_samples)} sample(s) "
        f"= {evals:,} network evaluations.{over}"
    )


# ----- guides and masks from the UI ------------------------------------------------------------------------


def _rgba(obj, what: str = "image") -> np.ndarray | None:
    """An image from the editor (numpy/PIL/path) as (H, W, 4) uint8, or None."""
    if obj is None:
        return None
    if isinstance(obj, (str, Path, bytes)):
        obj = load_image(obj, what, APP_LIMITS.image)
    if isinstance(obj, Image.Image):
        check_size(obj.size, what, APP_LIMITS.image)
        return np.asarray(obj.convert("RGBA"))
    a = np.asarray(obj)
    if a.ndim == 2:
        a = np.stack([a, a, a], -1)
    if a.shape[-1] == 3:
        a = np.concatenate([a, np.full((*a.shape[:2], 1), 255, np.uint8)], -1)
    return a.astype(np.uint8)


def flatten(rgba: np.ndarray, background: tuple[int, int, int] = WHITE) -> np.ndarray:
    """RGBA over a solid colour (the RGB under alpha 0 is undefined in the editor's layers)."""
    a = rgba[..., 3:4].astype(np.float32) / 255.0
    out = rgba[..., :3].astype(np.float32) * a + np.asarray(background, np.float32) * (1.0 - a)
    return np.clip(out.round(), 0, 255).astype(np.uint8)


def _paint_over(base: np.ndarray, layer: np.ndarray) -> np.ndarray:
    """Alpha-composite an RGBA layer onto an RGB image of the same size."""
    a = layer[..., 3:4].astype(np.float32) / 255.0
    out = layer[..., :3].astype(np.float32) * a + base.astype(np.float32) * (1.0 - a)
    return np.clip(out.round(), 0, 255).astype(np.uint8)


def _fit_layer(layer: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A layer resized to (W, H) when the editor's canvas and the background differ."""
    h, w = layer.shape[:2]
    if (w, h) == tuple(size):
        return layer
    return np.asarray(Image.fromarray(layer, "RGBA").resize(size, Image.NEAREST))


def paint_guide(value: dict | None) -> Image.Image:
    """The Paint tab's canvas as a guide: background (white if cleared) with every painted layer on top."""
    value = value or {}
    bg = _rgba(value.get("background"))
    layers = [x for x in (_rgba(layer) for layer in value.get("layers") or []) if x is not None]
    if bg is None:
        if not layers:
            raise InputError("the canvas is empty: paint some colour strokes first, or click an example")
        bg = np.zeros_like(layers[0])
    rgb = flatten(bg)
    size = (rgb.shape[1], rgb.shape[0])
    for layer in layers:
        rgb = _paint_over(rgb, _fit_layer(layer, size))
    if (rgb == rgb.reshape(-1, 3)[0]).all():
        raise InputError("the canvas is blank: paint some colour strokes first, or click an example")
    return Image.fromarray(rgb)


def photo_guide(
    value: dict | None, baked: tuple[np.ndarray, np.ndarray] | None = None
) -> tuple[Image.Image, Image.Image]:
    """The Edit tab: (photo with the paint layer on top, binary mask of every painted pixel).

    Layer 0 holds colour strokes (they change the guide and the mask); any further layer is a mask brush
    (it only marks pixels that may change, its colour is ignored). `baked` = (original, painted) from
    `bake_strokes`: while the editor's background is still exactly `painted`, the pixels where it differs
    from `original` are strokes too (an example loaded with its strokes).
    """
    value = value or {}
    bg = _rgba(value.get("background"))
    if bg is None:
        raise InputError("upload a photo first (or click an example), then paint strokes on it")
    rgb = flatten(bg)
    size = (rgb.shape[1], rgb.shape[0])
    layers = [_fit_layer(x, size) for x in (_rgba(layer) for layer in value.get("layers") or []) if x is not None]
    mask = np.zeros(rgb.shape[:2], bool)
    if baked is not None:
        original, painted = (np.asarray(a) for a in baked)
        if painted.shape == rgb.shape and np.array_equal(painted, rgb) and original.shape == rgb.shape:
            mask |= (original != painted).any(-1)
    for i, layer in enumerate(layers):
        if i == 0:
            rgb = _paint_over(rgb, layer)
        mask |= layer[..., 3] > 0
    if not mask.any():
        raise InputError(
            "nothing is marked for change: paint strokes on the photo (only painted areas change), "
            "or use the Mask layer to mark a region"
        )
    return Image.fromarray(rgb), Image.fromarray((mask * 255).astype(np.uint8), "L")


def _cutout_alpha(patch: Image.Image, threshold: int = 24) -> np.ndarray:
    """The patch's own alpha, or, for an opaque patch, everything that differs from its corner colour."""
    rgba = np.asarray(patch.convert("RGBA"))
    alpha = rgba[..., 3]
    if alpha.min() < 255:
        return alpha
    rgb = rgba[..., :3].astype(np.int16)
    corners = np.stack([rgb[0, 0], rgb[0, -1], rgb[-1, 0], rgb[-1, -1]])
    bg = np.median(corners, axis=0)
    fg = np.abs(rgb - bg).max(-1) > threshold
    return (fg * 255).astype(np.uint8)


def composite_guide(
    base, patch, x: float = 0.5, y: float = 0.5, scale: float = 0.4, cutout: bool = True
) -> tuple[Image.Image, Image.Image]:
    """Paste `patch` onto `base` centred at (x, y) (fractions of the base), `scale` x the base's width.

    Returns (guide, mask): the mask is the pasted patch, its cut-out shape when `cutout` (its alpha, or
    its non-background pixels), else its rectangle.
    """
    if base is None:
        raise InputError("choose a base image first (or click an example)")
    if patch is None:
        raise InputError("choose a patch image to paste onto the base")
    base, patch = _to_pil(base, "base image"), _to_pil(patch, "patch")
    for v, what, lo, hi in ((x, "x", 0.0, 1.0), (y, "y", 0.0, 1.0), (scale, "scale", 0.02, 2.0)):
        if v is None or not math.isfinite(float(v)) or not lo <= float(v) <= hi:
            raise InputError(f"the patch's {what} must be from {lo:g} to {hi:g}, not {v}")
    canvas = Image.fromarray(flatten(np.asarray(base.convert("RGBA"))))
    bw, bh = canvas.size
    pw = max(1, round(bw * float(scale)))
    ph = max(1, round(patch.height * pw / patch.width))
    small = patch.convert("RGBA").resize((pw, ph), Image.LANCZOS)
    alpha = _cutout_alpha(small) if cutout else np.full((ph, pw), 255, np.uint8)
    left, top = round(float(x) * bw - pw / 2), round(float(y) * bh - ph / 2)
    shape = Image.fromarray(alpha, "L")
    mask = Image.new("L", (bw, bh), 0)
    mask.paste(shape, (left, top))
    opaque = Image.fromarray(flatten(np.asarray(small)))
    canvas.paste(opaque, (left, top), shape)
    m = np.asarray(mask) > 0
    if not m.any():
        raise InputError(
            "the patch covers nothing: it is one plain colour, so cutting out its background leaves nothing "
            "(turn off cut-out, or choose another patch)"
        )
    return canvas, Image.fromarray((m * 255).astype(np.uint8), "L")


def prepare_mask(mask, size: tuple[int, int], dilation: float = 0, feather: float = 0) -> np.ndarray | None:
    """A mask image (white = may change) -> float (H, W), grown by `dilation` and softened by `feather`."""
    if mask is None:
        return None
    m = to_mask(mask, size)
    if m.max() <= 0:
        raise InputError("the mask is empty: mark the region that may change (white = change)")
    for v, what in ((dilation, "mask dilation"), (feather, "mask feather")):
        if v is None or not math.isfinite(float(v)) or not 0 <= float(v) <= 64:
            raise InputError(f"{what} must be from 0 to 64 pixels, not {v}")
    return refine(m, int(dilation), float(feather))


def to_canvas(image: Image.Image, size: int = CANVAS_SIZE, background=WHITE) -> Image.Image:
    """Fit any image onto the square paint canvas (padded, centred), e.g. to continue painting on a result."""
    rgb = Image.fromarray(flatten(np.asarray(image.convert("RGBA")), background))
    w, h = rgb.size
    s = size / max(w, h)
    small = rgb.resize((max(1, round(w * s)), max(1, round(h * s))), Image.LANCZOS)
    out = Image.new("RGB", (size, size), background)
    out.paste(small, ((size - small.width) // 2, (size - small.height) // 2))
    return out


def blank_canvas(size: int = CANVAS_SIZE) -> Image.Image:
    return Image.new("RGB", (size, size), WHITE)


def editor_value(background: Image.Image | None) -> dict:
    """A value for gr.ImageEditor: a background and no layers.

    Never send layers: the editor (gradio 6.31) does not draw layers it is given, renames its named layers,
    and drops the next stroke; with `layers: []` it makes its own empty layers and painting just works.
    Pre-painted strokes (the examples) are therefore baked into the background; see `photo_guide`.
    """
    return {"background": background, "layers": [], "composite": background}


def bake_strokes(photo: Image.Image, strokes: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """(photo, photo with the RGBA strokes painted on): what `photo_guide` needs to find baked strokes."""
    original = np.asarray(photo.convert("RGB"))
    return original, _paint_over(original, np.asarray(strokes.convert("RGBA")))


def make_painting(photo, colors: int = 6, smoothing: int = 0, block: int = 1, max_side: int = 512) -> Image.Image:
    """Photo -> flat colour-stroke painting (the paper's stroke simulator); `smoothing` 0 = automatic."""
    if photo is None:
        raise InputError("choose a photo first (or click an example)")
    image = Image.fromarray(flatten(np.asarray(_to_pil(photo, "photo").convert("RGBA"))))
    if max(image.size) > max_side:  # the median filter is O(k^2) per pixel: keep it interactive
        s = max_side / max(image.size)
        image = image.resize((max(1, round(image.width * s)), max(1, round(image.height * s))), Image.LANCZOS)
    smoothing = int(smoothing or 0)
    median = None if smoothing <= 0 else smoothing + (1 - smoothing % 2)
    return simulate_strokes(image, colors=int(colors), median_size=median, block=int(block))


# ----- runs ------------------------------------------------------------------------------------------------


def pick_seed(seed) -> int:
    """-1, None or empty = a fresh random seed; otherwise the checked seed."""
    if seed is None or (isinstance(seed, str) and not seed.strip()):
        return random_seed()
    try:
        if float(seed) == -1:
            return random_seed()
    except (TypeError, ValueError):
        pass
    return check_seed(seed)


@dataclass
class EditSettings:
    """One request's settings as the UI and API send them."""

    model: str | None = None
    strength: float | None = None
    sampler: str | None = None
    steps: int | None = None
    repeats: int | None = None
    num_samples: int = 1
    seed: int | None = -1
    snr: float | None = None
    mask_dilation: float = 0
    mask_feather: float = 0

    def pipe_kwargs(self) -> dict:
        return dict(
            strength=self.strength,
            num_inference_steps=self.steps,
            sampler=self.sampler or None,
            repeats=self.repeats,
            snr=self.snr,
        )


ProgressFn = Callable[[int, int, str], None]


class StepProgress:
    """Turns step callbacks into (done, total, 'Step 3/12 · about 2 s left') for a progress bar."""

    def __init__(self, report: ProgressFn | None, total: int, label: str = "Denoising"):
        self.report, self.total, self.label = report, max(1, total), label
        self.done = 0
        self.t0 = time.perf_counter()

    def eta(self) -> str:
        if self.done <= 0:
            return ""
        left = (time.perf_counter() - self.t0) / self.done * (self.total - self.done)
        return f" · about {left:.0f} s left" if left >= 1 else " · almost done"

    def __call__(self, info: StepInfo | None = None) -> None:
        self.done = min(self.total, self.done + 1)
        if self.report is not None:
            self.report(self.done, self.total, f"{self.label}: step {self.done}/{self.total}{self.eta()}")


class ReverseRecorder:
    """Keeps the first sample's x_t and predicted x0 after each step, to animate the reverse process."""

    def __init__(self, data_range: tuple[float, float], total: int, max_frames: int = 48):
        self.data_range = data_range
        self.every = max(1, math.ceil(total / max_frames))
        self.total = total
        self.frames: list[tuple[str, str, np.ndarray, np.ndarray]] = []
        self.count = 0

    def _img(self, x) -> np.ndarray:
        return from_model_range(x[:1], self.data_range)[0]

    def add(self, left: str, right: str, x, x0) -> None:
        self.frames.append((left, right, self._img(x), self._img(x0)))

    def step(self, x, x0_pred) -> None:
        """After a step: keep x_t and the predicted x0 (the first sample of `x`) every `every` steps."""
        self.count += 1
        if self.count % self.every == 0 or self.count == self.total:
            self.add(f"step {self.count}/{self.total}", "predicted clean image", x, x0_pred)

    def __call__(self, info: StepInfo) -> None:
        self.step(info.x, info.x0_pred)


_FONT = None


def _font(size: int = 13):
    global _FONT
    if _FONT is None:
        try:
            _FONT = ImageFont.load_default(size=size)
        except TypeError:  # Pillow without FreeType
            _FONT = ImageFont.load_default()
    return _FONT


def _panel(img: np.ndarray, size: int) -> Image.Image:
    return Image.fromarray(img).resize((size, size), Image.BICUBIC if img.shape[0] < size else Image.LANCZOS)


def render_animation(
    frames: list[tuple[str, str, np.ndarray, np.ndarray]], path: Path, panel: int = 192, hold_last_ms: int = 2000
) -> Path:
    """A looping GIF: left the sample x_t, right the model's current guess of the clean image.

    Frames are (left label, right label, left image, right image); the first and last are held longer.
    """
    header = 22
    images, durations = [], []
    for i, (left, right, x, x0) in enumerate(frames):
        frame = Image.new("RGB", (2 * panel + 6, panel + header), WHITE)
        frame.paste(_panel(x, panel), (0, header))
        frame.paste(_panel(x0, panel), (panel + 6, header))
        draw = ImageDraw.Draw(frame)
        draw.text((4, 4), left, fill=(40, 40, 40), font=_font())
        draw.text((panel + 10, 4), right, fill=(110, 110, 110), font=_font())
        # our own fast palette: PIL's default GIF quantizer takes ~0.2 s a frame, this ~5 ms
        images.append(frame.quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE))
        durations.append(1200 if i == 0 else hold_last_ms if i == len(frames) - 1 else 110)
    images[0].save(path, save_all=True, append_images=images[1:], duration=durations, loop=0, optimize=False)
    return path


def _output_dir() -> Path:
    """A private temp folder for animations; files older than OUTPUT_TTL_S are removed as new ones come in.

    Gradio copies each animation into its own cache (cleaned by `delete_cache` in app.py), so these are only
    the sources; at most `keep` are kept however busy the server is.
    """
    folder = Path(tempfile.gettempdir()) / "sdedit-studio"
    folder.mkdir(parents=True, exist_ok=True)
    cleanup_outputs(folder)
    return folder


def cleanup_outputs(folder: Path, ttl_s: float | None = None, keep: int = 500) -> int:
    """Delete animations older than `ttl_s` (default OUTPUT_TTL_S), and the oldest beyond `keep`; returns how many."""
    cutoff = time.time() - (OUTPUT_TTL_S if ttl_s is None else ttl_s)
    files = []
    for path in folder.glob("*.gif"):
        with contextlib.suppress(OSError):  # removed meanwhile by another process
            files.append((path.stat().st_mtime, path))
    files.sort(reverse=True)
    removed = 0
    for i, (mtime, path) in enumerate(files):
        if mtime < cutoff or i >= keep:
            try:
                path.unlink()
                removed += 1
            except OSError:
                pass
    return removed


@dataclass
class EditResult:
    images: list[Image.Image]
    seeds: list[int]
    metadata: dict
    animation: Path | None = None
    summary: str = ""


def _to_pil(image, what: str = "guide") -> Image.Image:
    """Any image the app gets (a path from Gradio's cache, PIL, numpy), decoded within APP_LIMITS.

    Paths are read by `load_image`: size checked from the header before decoding, decompression bombs and
    truncated files refused, EXIF rotation applied, the first frame of an animation.
    """
    if image is None:
        raise InputError(f"no {what} image was given: paint on the canvas, upload a photo or click an example")
    if isinstance(image, Image.Image):
        check_size(image.size, what, APP_LIMITS.image)
        return image
    return load_image(image, what, APP_LIMITS.image)


# ----- edits: checked in the request's thread, run in batches ----------------------------------------------


@dataclass
class EditJob:
    """One request, fully checked: everything a batch needs to run it, and nothing left to refuse."""

    pipe: SDEditPipeline
    guide: Image.Image
    mask: np.ndarray | None
    settings: EditSettings
    checked: Settings
    seeds: list[int]
    x0: torch.Tensor  # the guide's canvas in the model's range: the animation's first frame
    animate: bool = True
    report: ProgressFn | None = None
    queued_at: float = field(default_factory=time.perf_counter)

    @property
    def key(self) -> tuple:
        """Requests may share a forward when these match (the number of samples may differ)."""
        c = self.checked
        return (
            self.pipe.config.name,
            id(self.pipe.unet),
            c.strength,
            c.sampler,
            c.num_inference_steps,
            c.repeats,
            c.snr,
            c.fit,
        )

    @property
    def size(self) -> int:
        return self.checked.num_images

    @property
    def work(self) -> int:
        c = self.checked
        sampler = "ve" if self.pipe.sde == "ve" else c.sampler
        return c.num_images * c.repeats * model_evaluations(sampler, c.steps, c.snr)


@dataclass
class JobOutput:
    """What a batch hands back to one request: its images, metadata and animation frames."""

    images: list[Image.Image]
    metadata: dict
    frames: list[tuple[str, str, np.ndarray, np.ndarray]] | None


def prepare_edit(guide, mask=None, settings: EditSettings | None = None, animate: bool = True) -> EditJob:
    """Load the model and check everything about one request before it may wait for the model.

    Any problem raises here, in the request's own thread, so a batch only ever holds requests that can run.
    """
    s = settings or EditSettings()
    pipe = get_pipeline(s.model)
    guide = _to_pil(guide)
    checked = pipe.check_inputs(num_images=s.num_samples, **s.pipe_kwargs())
    m = prepare_mask(_to_pil(mask, "mask") if mask is not None else None, guide.size, s.mask_dilation, s.mask_feather)
    seeds = seeds_for(pick_seed(s.seed), checked.num_images)
    prepared = pipe.prepare_guide(guide, m, checked.fit)
    x0 = to_model_range(prepared.canvas, pipe.config.data_range)[None]
    return EditJob(pipe, guide, m, s, checked, seeds, x0, animate)


def _batch_pipe(pipe: SDEditPipeline) -> SDEditPipeline:
    """The same model with a batch's limits: several requests' samples in one call (each was checked alone).

    A shallow copy per batch (a few attributes): the weights are shared, the request limits stay as they are.
    """
    bp = copy.copy(pipe)
    bp.limits = replace(APP_LIMITS, max_images=max(MAX_SAMPLES, MAX_BATCH), max_work=max(MAX_WORK, 1))
    return bp


def run_jobs(jobs: list[EditJob], cancelled: Callable[[], bool] = lambda: False) -> list[JobOutput]:
    """Run requests with equal `key`s as one forward: their guides side by side, each sample with its own seed.

    A request with k samples contributes its guide k times with its k seeds, so its samples get exactly the
    noise they would get alone; the images agree with an unbatched run up to the float rounding of batched
    convolutions. `cancelled()` is polled after every step and stops the forward (`Cancelled`).
    """
    if not jobs:
        return []
    first = jobs[0]
    if any(j.key != first.key for j in jobs):
        raise ValueError("run_jobs needs requests whose settings match (EditJob.key)")
    c = first.checked
    images, masks, seeds, offsets = [], [], [], []
    for job in jobs:
        offsets.append(len(images))
        images += [job.guide] * job.size
        masks += [job.mask] * job.size
        seeds += job.seeds
    total = c.steps * c.repeats
    bars = [StepProgress(job.report, total, "Denoising") for job in jobs]
    recorders = [ReverseRecorder(first.pipe.config.data_range, total) if job.animate else None for job in jobs]

    def on_start(repeat: int, x_t0) -> None:
        if repeat == 0:  # the exact perturbed guide the first pass starts from
            for job, rec, o in zip(jobs, recorders, offsets, strict=True):
                if rec is not None:
                    rec.add("your guide", f"noised to t0 = {c.strength:g}", job.x0, x_t0[o : o + 1])

    def on_step(info: StepInfo) -> None:
        if cancelled():
            raise Cancelled("the request was cancelled")
        for bar, rec, o in zip(bars, recorders, offsets, strict=True):
            bar(info)
            if rec is not None:
                rec.step(info.x[o : o + 1], info.x0_pred[o : o + 1])

    pipe = _batch_pipe(first.pipe) if len(images) > 1 else first.pipe
    try:
        out = pipe(
            images,
            masks,
            strength=c.strength,
            num_inference_steps=c.num_inference_steps,
            sampler=c.sampler,
            repeats=c.repeats,
            snr=c.snr,
            fit=c.fit,
            num_images=1,
            seed=seeds,
            callback=on_step,
            on_start=on_start,
            progress=False,
        )
    except Exception as exc:
        if is_out_of_memory(exc):
            raise _out_of_memory(first.pipe, len(images)) from None
        raise
    results = []
    for job, rec, o in zip(jobs, recorders, offsets, strict=True):
        meta = dict(out.metadata)
        meta.update(
            seeds=list(job.seeds),
            num_images=job.size,
            input_sizes=meta["input_sizes"][o : o + 1],
            masked=meta["masked"][o : o + 1],
            batch=len(images),
            batched_requests=len(jobs),
            mask_dilation=job.settings.mask_dilation,
            mask_feather=job.settings.mask_feather,
        )
        meta["timings"] = {**meta["timings"], "queued_s": round(time.perf_counter() - job.queued_at, 4)}
        frames = None
        if rec is not None:
            rec.frames.append(("result", "result", out.canvases[o], out.canvases[o]))
            frames = rec.frames
        results.append(JobOutput(list(out.images[o : o + job.size]), meta, frames))
    return results


def _out_of_memory(pipe: SDEditPipeline, batch: int) -> OutOfMemoryError:
    """Free what the failed forward held (and other cached models), and say so in words."""
    loading.clear_cache()  # other cached models; the current one stays loaded in _PIPES
    free_memory()
    where = "GPU" if pipe.device.type == "cuda" else "server"
    return OutOfMemoryError(
        f"the {where} ran out of memory for this request ({batch} image(s) at {pipe.config.resolution} px). "
        "Memory has been freed: try again, or ask for fewer samples"
    )


def finish_edit(job: EditJob, out: JobOutput) -> EditResult:
    """Render the animation and the summary of one request (in its own thread, off the model's)."""
    anim = None
    if out.frames:
        anim = render_animation(out.frames, _output_dir() / f"reverse-{uuid.uuid4().hex[:12]}.gif")
    summary = summarize(out.metadata, job.guide.size)
    return EditResult(out.images, list(out.metadata["seeds"]), out.metadata, anim, summary)


# One model run at a time per slot: the batcher's workers and the sweep share these.
MODEL_SLOTS = threading.BoundedSemaphore(CONCURRENCY)
_SERVICE: MicroBatcher | None = None
_SERVICE_LOCK = threading.Lock()


def _run_tickets(batch: Batch) -> list[JobOutput]:
    jobs = [t.payload for t in batch]
    for job, ticket in zip(jobs, batch, strict=True):
        job.report = ticket.report
    try:
        return run_jobs(jobs, batch.all_cancelled)
    finally:
        trim_malloc()  # a long-running server's RSS stays flat (fragmentation, see sdedit.guard)


def edit_service() -> MicroBatcher:
    """The process's batcher (created on first use): requests with matching settings share a forward."""
    global _SERVICE
    with _SERVICE_LOCK:
        if _SERVICE is None:
            _SERVICE = MicroBatcher(
                _run_tickets,
                max_items=MAX_BATCH,
                max_cost=MAX_WORK,
                window_s=BATCH_WINDOW_S,
                workers=CONCURRENCY,
                slot=MODEL_SLOTS,
                name="sdedit-edits",
            )
        return _SERVICE


def run_edit(
    guide,
    mask=None,
    settings: EditSettings | None = None,
    progress: ProgressFn | None = None,
    animate: bool = True,
    batch: bool = True,
) -> EditResult:
    """SDEdit `guide` (only inside `mask` when given) into `settings.num_samples` results.

    batch=True goes through the process's batcher (shared forwards, one model run at a time); False runs here
    and now, in this thread (ZeroGPU, where the GPU exists only inside the calling function).
    """
    job = prepare_edit(guide, mask, settings, animate)
    if not batch:
        job.report = progress
        with MODEL_SLOTS:
            out = run_jobs([job])[0]
    else:
        out = edit_service().submit(job.key, job, job.size, job.work).wait(progress)
    return finish_edit(job, out)


async def run_edit_async(
    guide, mask=None, settings: EditSettings | None = None, progress: ProgressFn | None = None, animate: bool = True
) -> EditResult:
    """`run_edit` for a web server's event loop: cancelling the awaiting task cancels the request's work."""
    import anyio

    job = await anyio.to_thread.run_sync(prepare_edit, guide, mask, settings, animate)
    out = await edit_service().submit(job.key, job, job.size, job.work).wait_async(progress)
    return await anyio.to_thread.run_sync(finish_edit, job, out)


def warm_up(name: str | None = None) -> float:
    """Load the model and run one small edit, so the first visitor doesn't pay for lazy set-up; seconds taken."""
    t0 = time.perf_counter()
    guide = Image.new("RGB", (64, 64), WHITE)
    ImageDraw.Draw(guide).ellipse((16, 16, 48, 48), fill=(230, 80, 60))
    cfg = config_for(name)
    settings = EditSettings(model=name, strength=0.5, sampler=cfg.defaults.sampler, steps=4, num_samples=1, seed=0)
    pipe = get_pipeline(name)
    if hasattr(pipe, "warmup"):  # the fast path: compile and capture the batch sizes the batcher will use
        pipe.warmup(batches=tuple(sorted({1, MAX_BATCH})), sampler=cfg.defaults.sampler)
    result = run_edit(guide, None, settings, batch=False)
    if result.animation is not None:
        result.animation.unlink(missing_ok=True)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # the sweep's plot: about a second of import on the first sweep otherwise

    return time.perf_counter() - t0


def summarize(meta: dict, size: tuple[int, int]) -> str:
    """One line about a finished run, for the results panel."""
    seeds = meta.get("seeds") or []
    seed_text = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {seeds[0]}–{seeds[-1]}" if seeds else ""
    n = meta.get("num_images", len(seeds))
    r = meta.get("resolution")
    scale = f" · model output {r}×{r} px, shown at {size[0]}×{size[1]}" if r and max(size) > r else ""
    masked = " · masked edit: pixels outside the mask are untouched" if any(meta.get("masked") or []) else ""
    t = meta.get("timings", {}).get("total_s")
    shared = meta.get("batched_requests", 1)
    batched = f" (one forward shared by {shared} requests)" if shared > 1 else ""
    return (
        f"**{n} result{'s' if n != 1 else ''}** · t0 = {meta.get('strength'):g} · {meta.get('sampler_label')} · "
        f"{meta.get('steps')} steps × {meta.get('repeats')} · {seed_text}"
        + (f" · {t:.1f} s on {meta.get('device')}{batched}" if t is not None else "")
        + scale
        + masked
    )


@dataclass
class SweepOutput:
    grid: Image.Image
    plot: Image.Image
    rows: list[dict]
    seed: int


def run_t0_sweep(
    guide,
    mask=None,
    strengths="0.2, 0.4, 0.6, 0.8, 1.0",
    settings: EditSettings | None = None,
    progress: ProgressFn | None = None,
) -> SweepOutput:
    """The same guide and seeds at several t0: a grid of results and the faithfulness curve."""
    s = settings or EditSettings()
    pipe = get_pipeline(s.model)
    guide = _to_pil(guide)
    if isinstance(strengths, str) and len(strengths) > MAX_STRENGTHS_TEXT:
        raise InputError(f"the t0 list is {len(strengths)} characters long; at most {MAX_STRENGTHS_TEXT}")
    values = parse_strengths(strengths) if isinstance(strengths, str) else [float(v) for v in strengths]
    if not 1 <= len(values) <= 10:
        raise InputError(f"a sweep takes 1 to 10 strengths, not {len(values)}")
    kwargs = dict(num_inference_steps=s.steps, sampler=s.sampler or None, repeats=s.repeats, snr=s.snr)
    checks = [pipe.check_inputs(strength=v, num_images=s.num_samples, **kwargs) for v in values]  # fail fast
    num, repeats = checks[0].num_images, checks[0].repeats
    m = prepare_mask(_to_pil(mask, "mask") if mask is not None else None, guide.size, s.mask_dilation, s.mask_feather)
    seed = pick_seed(s.seed)
    bar = StepProgress(progress, sum(c.steps for c in checks) * repeats, "t0 sweep")
    with MODEL_SLOTS:
        try:
            result = run_sweep(
                pipe, guide, m, values, seed=seed, num_images=num, callback=bar, progress=False, **kwargs
            )
        except Exception as exc:
            if is_out_of_memory(exc):
                raise _out_of_memory(pipe, num) from None
            raise
    title = f"Faithfulness vs t0 · {pipe.config.name} · seed {seed}"
    return SweepOutput(result.grid(), result.plot(title), result.rows(), seed)


# ----- bundled examples -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    """One click in the UI: files under examples/, and the settings that show it off."""

    title: str
    image: str
    layer: str | None = None
    patch: str | None = None
    x: float = 0.5
    y: float = 0.5
    scale: float = 0.4

    @property
    def path(self) -> str:
        return str(EXAMPLES_DIR / self.image)


def paint_examples(cfg: ModelConfig | None = None) -> list[Example]:
    """The model config's stroke paintings (the embedded default lists four)."""
    cfg = cfg or default_config()
    out = []
    for rel in cfg.examples or default_config().examples:
        path = REPO_ROOT / rel
        if path.is_file():
            title = path.stem.replace("strokes-", "").replace("-", " ").capitalize()
            out.append(
                Example(title, str(path.relative_to(EXAMPLES_DIR)) if path.is_relative_to(EXAMPLES_DIR) else rel)
            )
    return out


EDIT_EXAMPLES = [
    Example(
        "Blue car",
        "photo-car.png",
        layer="photo-car-strokes.png",
    ),
    Example(
        "Cat with a bow",
        "photo-cat.png",
        layer="photo-cat-strokes.png",
    ),
    Example(
        "Rosy panda",
        "photo-panda.png",
        layer="photo-panda-strokes.png",
    ),
]
COMPOSITE_EXAMPLES = [
    Example("Moon over the desert", "photo-desert.png", patch="photo-moon.png", x=0.3, y=0.3, scale=0.3),
    Example("Tulip for the panda", "photo-panda.png", patch="photo-tulip.png", x=0.72, y=0.3, scale=0.35),
    Example("Penguin drives", "photo-car.png", patch="photo-penguin.png", x=0.6, y=0.3, scale=0.3),
]
PAINTING_EXAMPLES = [
    Example("Cat", "photo-cat.png"),
    Example("Penguin", "photo-penguin.png"),
    Example("Tulip", "photo-tulip.png"),
    Example("Desert", "photo-desert.png"),
]


def load_example_image(rel: str | None, mode: str = "RGB") -> Image.Image | None:
    if rel is None:
        return None
    with Image.open(EXAMPLES_DIR / rel) as im:
        return im.convert(mode)


def edit_example_value(ex: Example) -> tuple[dict, tuple[np.ndarray, np.ndarray]]:
    """An Edit example for the editor: its photo with the strokes baked in, and the (photo, painted) pair."""
    baked = bake_strokes(load_example_image(ex.image), load_example_image(ex.layer, "RGBA"))
    return editor_value(Image.fromarray(baked[1])), baked


def gallery_items(examples: list[Example]) -> list[tuple[str, str]]:
    """(thumbnail path, caption) pairs for an examples gallery."""
    return [(ex.path, ex.title) for ex in examples]
