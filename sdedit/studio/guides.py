"""What the model gets from the page: editor values, uploads and pastes turned into a guide and a mask.

Plain PIL/numpy, testable without a browser; each tab (sdedit.studio.tabs) calls the builder for its own
components. Every image is decoded within the app's limits (`to_pil`), and a guide that cannot be edited
(an empty canvas, nothing marked for change) raises `InputError` with words the user can act on.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import InputError
from ..imaging import check_size, load_image
from ..masks import refine, to_mask
from ..strokes import simulate_strokes
from . import limits

CANVAS_SIZE = 256  # the paint canvas: 4x the embedded model, small enough for quick strokes in a browser
WHITE = (255, 255, 255)


def to_pil(image, what: str = "guide") -> Image.Image:
    """Any image the app gets (a path from Gradio's cache, PIL, numpy), decoded within APP_LIMITS.

    Paths are read by `load_image`: size checked from the header before decoding, decompression bombs and
    truncated files refused, EXIF rotation applied, the first frame of an animation.
    """
    if image is None:
        raise InputError(f"no {what} image was given: paint on the canvas, upload a photo or click an example")
    if isinstance(image, Image.Image):
        check_size(image.size, what, limits.APP_LIMITS.image)
        return image
    return load_image(image, what, limits.APP_LIMITS.image)


def _rgba(obj, what: str = "image") -> np.ndarray | None:
    """An image from the editor (numpy/PIL/path) as (H, W, 4) uint8, or None."""
    if obj is None:
        return None
    if isinstance(obj, (str, Path, bytes)):
        obj = load_image(obj, what, limits.APP_LIMITS.image)
    if isinstance(obj, Image.Image):
        check_size(obj.size, what, limits.APP_LIMITS.image)
        return np.asarray(obj.convert("RGBA"))
    a = np.asarray(obj)
    if a.ndim == 2:
        a = np.stack([a, a, a], -1)
    if a.shape[-1] == 3:
        a = np.concatenate([a, np.full((*a.shape[:2], 1), 255, np.uint8)], -1)
    return a.astype(np.uint8)


def paint_over(base: np.ndarray, layer: np.ndarray) -> np.ndarray:
    """Alpha-composite an RGBA layer onto an RGB image of the same size."""
    a = layer[..., 3:4].astype(np.float32) / 255.0
    out = layer[..., :3].astype(np.float32) * a + base.astype(np.float32) * (1.0 - a)
    return np.clip(out.round(), 0, 255).astype(np.uint8)


def flatten(rgba: np.ndarray, background: tuple[int, int, int] = WHITE) -> np.ndarray:
    """RGBA over a solid colour (the RGB under alpha 0 is undefined in the editor's layers)."""
    return paint_over(np.broadcast_to(np.asarray(background, np.uint8), (*rgba.shape[:2], 3)), rgba)


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
        rgb = paint_over(rgb, _fit_layer(layer, size))
    if (rgb == rgb.reshape(-1, 3)[0]).all():
        raise InputError("the canvas is blank: paint some colour strokes first, or click an example")
    return Image.fromarray(rgb)


def photo_guide(value: dict | None) -> tuple[Image.Image, Image.Image]:
    """The Edit tab: (photo with the paint layer on top, binary mask of every painted pixel).

    Layer 0 holds colour strokes (they change the guide and the mask); any further layer is a mask brush
    (it only marks pixels that may change, its colour is ignored).
    """
    value = value or {}
    bg = _rgba(value.get("background"))
    if bg is None:
        raise InputError("upload a photo first (or click an example), then paint strokes on it")
    rgb = flatten(bg)
    size = (rgb.shape[1], rgb.shape[0])
    layers = [_fit_layer(x, size) for x in (_rgba(layer) for layer in value.get("layers") or []) if x is not None]
    mask = np.zeros(rgb.shape[:2], bool)
    for i, layer in enumerate(layers):
        if i == 0:
            rgb = paint_over(rgb, layer)
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
    base, patch = to_pil(base, "base image"), to_pil(patch, "patch")
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


def make_painting(photo, colors: int = 6, smoothing: int = 0, block: int = 1, max_side: int = 512) -> Image.Image:
    """Photo -> flat colour-stroke painting (the paper's stroke simulator); `smoothing` 0 = automatic."""
    if photo is None:
        raise InputError("choose a photo first (or click an example)")
    image = Image.fromarray(flatten(np.asarray(to_pil(photo, "photo").convert("RGBA"))))
    if max(image.size) > max_side:  # the median filter is O(k^2) per pixel: keep it interactive
        s = max_side / max(image.size)
        image = image.resize((max(1, round(image.width * s)), max(1, round(image.height * s))), Image.LANCZOS)
    smoothing = int(smoothing or 0)
    median = None if smoothing <= 0 else smoothing + (1 - smoothing % 2)
    return simulate_strokes(image, colors=int(colors), median_size=median, block=int(block))
