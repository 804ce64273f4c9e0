"""Edit masks: 1 marks the region that may change, 0 what must stay exactly as it is.

A mask can come from a file or array, or be derived from strokes: wherever a painted image differs from
the original. Dilation grows it to catch anti-aliased stroke edges; feathering softens its border so the
edit blends in, and is applied outside the strokes so that every painted pixel stays fully editable. To the
pipeline a mask is a strength map (`samplers.Guide`): a feathered border's fractions start later.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image, ImageFilter

from .errors import InputError


def to_mask(obj, size: tuple[int, int], what: str = "mask") -> np.ndarray:
    """A mask image or array -> float32 (H, W) in [0, 1], checked to be the guide's size (W, H)."""
    if isinstance(obj, Image.Image):
        has_alpha = obj.mode in ("RGBA", "LA", "PA") or (obj.mode == "P" and "transparency" in obj.info)
        if has_alpha:
            alpha = np.asarray(obj.convert("RGBA"))[..., 3]
            # a transparent-background drawing: its alpha is the mask; an opaque one: its brightness
            m = alpha if alpha.min() < 255 else np.asarray(obj.convert("L"))
        elif obj.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
            a = np.asarray(obj).astype(np.float64)
            m = a / (a.max() if a.max() > 1 else 1.0)
        else:
            m = np.asarray(obj.convert("L"))
        arr = np.asarray(m)
    else:
        arr = np.asarray(obj.detach().cpu().numpy() if hasattr(obj, "detach") else obj)
        arr = arr.squeeze()
        if arr.ndim == 3 and arr.shape[-1] in (3, 4):
            arr = arr[..., 3] if arr.shape[-1] == 4 and arr[..., 3].min() < arr[..., 3].max() else arr[..., :3].max(-1)
    if arr.ndim != 2:
        raise InputError(f"the {what} must be a single-channel image of shape (H, W), got shape {arr.shape}")
    if arr.dtype == bool:
        out = arr.astype(np.float32)
    elif arr.dtype == np.uint8:
        out = arr.astype(np.float32) / 255.0
    elif np.issubdtype(arr.dtype, np.integer):
        out = arr.astype(np.float32) / (65535.0 if arr.max() > 255 else 255.0 if arr.max() > 1 else 1.0)
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise InputError(f"the {what} contains NaN or infinite values")
        if arr.min() < 0 or arr.max() > 1:
            raise InputError(f"a float {what} must hold values in [0, 1], got [{arr.min():.3g}, {arr.max():.3g}]")
        out = arr.astype(np.float32)
    else:
        raise InputError(f"the {what} has dtype {arr.dtype}; use bool, uint8 or float in [0, 1]")
    h, w = out.shape
    if (w, h) != tuple(size):
        raise InputError(f"the {what} is {w}x{h} but the image is {size[0]}x{size[1]}; they must be the same size")
    return out


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Grey dilation with a (2r+1) square, done as two 1-D running maxima."""
    if radius <= 0:
        return mask
    padded = np.pad(mask, radius, mode="constant")
    rows = sliding_window_view(padded, 2 * radius + 1, axis=0).max(-1)
    return sliding_window_view(rows, 2 * radius + 1, axis=1).max(-1)


def feather(mask: np.ndarray, radius: float) -> np.ndarray:
    """Soften the border outward by about `radius` pixels; the inside stays at 1."""
    if radius <= 0:
        return mask
    grown = dilate(mask, int(np.ceil(radius)))
    im = Image.fromarray((grown * 255).round().astype(np.uint8), mode="L")
    blurred = np.asarray(im.filter(ImageFilter.GaussianBlur(radius / 2)), dtype=np.float32) / 255.0
    return np.maximum(mask, blurred)


def refine(mask: np.ndarray, dilation: int = 0, feathering: float = 0.0) -> np.ndarray:
    return np.clip(feather(dilate(mask, int(dilation)), float(feathering)), 0.0, 1.0).astype(np.float32)


def mask_from_strokes(
    original,
    painted,
    threshold: int = 8,
    dilation: int = 0,
    feathering: float = 0.0,
) -> np.ndarray:
    """1 where `painted` differs from `original` by more than `threshold` (0-255) in any channel."""
    a = np.asarray(original.convert("RGB") if isinstance(original, Image.Image) else original)
    b = np.asarray(painted.convert("RGB") if isinstance(painted, Image.Image) else painted)
    if a.shape != b.shape:
        raise InputError(
            f"the painted image is {b.shape[1]}x{b.shape[0]} but the original is {a.shape[1]}x{a.shape[0]}"
        )
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    changed = (diff.max(-1) if diff.ndim == 3 else diff) > threshold
    return refine(changed.astype(np.float32), dilation, feathering)


def mask_from_layers(layers: list[np.ndarray], size: tuple[int, int], dilation: int = 0, feathering: float = 0.0):
    """The union of painted layers' alpha (Gradio's ImageEditor gives RGBA layers) as a mask."""
    w, h = size
    m = np.zeros((h, w), np.float32)
    for layer in layers:
        a = np.asarray(layer)
        if a.ndim == 3 and a.shape[-1] == 4 and a.shape[:2] == (h, w):
            m = np.maximum(m, (a[..., 3] > 0).astype(np.float32))
    return refine(m, dilation, feathering)
