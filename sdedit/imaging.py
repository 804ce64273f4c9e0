"""Images in and out: decoding any guide, fitting it to the model's square canvas, and mapping back.

Resolution policy (the same for the API, the CLI and the app):

* The model works on a square canvas of its training resolution R. A guide of any size and aspect is
  scaled so that its longer side is R and centred on that canvas (`fit="pad"`, the default). The padding
  is the model's background colour, or the guide's replicated edges where the model has none, and it is
  never edited: it stays exactly as padded and is cut away afterwards.
  `fit="crop"` fills the canvas with the centre of the guide and edits only that part; `fit="stretch"`
  ignores the aspect ratio.
* The result is mapped back to the guide's own size and aspect: the content box is cut out of the
  canvas and resized (Lanczos) to the input's width and height. Detail beyond R is therefore upscaled.
* Outside the mask the output is the input guide itself, pixel for pixel: the final composite is done at
  the input's resolution in uint8, not at the model's.
* Transparency is flattened onto the model's background colour first; that flattened RGB image is what
  "the guide" means everywhere after.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InputError, LimitError, SDEditError

FITS = ("pad", "crop", "stretch")


@dataclass(frozen=True)
class ImageLimits:
    """What a guide may be. Checked before any heavy work."""

    min_side: int = 8
    max_pixels: int = 50_000_000
    max_aspect: float = 16.0
    max_file_bytes: int = 50 * 1024 * 1024


DEFAULT_LIMITS = ImageLimits()


def _open_bytes(data: bytes, what: str, limits: ImageLimits) -> Image.Image:
    if len(data) > limits.max_file_bytes:
        raise LimitError(f"the {what} file is {len(data) / 1e6:.1f} MB; at most {limits.max_file_bytes / 1e6:.0f} MB")
    try:
        with warnings.catch_warnings():
            # our limit (check_size, from the header) decides, not PIL's global one, which an app may lower to
            # guard decoding it doesn't do itself; PIL still raises DecompressionBombError past twice its own
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            # TIFF only warns (a UserWarning, as PIL's all are); we refuse. Only that category: the filters are
            # the process's, and another warning meanwhile (an unclosed file named "truncated...") is not ours
            warnings.filterwarnings("error", message=".*[Tt]runcated.*", category=UserWarning)
            image = Image.open(io.BytesIO(data))
            check_size(image.size, what, limits)  # from the header, before decoding a single pixel
            if image.format == "PNG":  # PIL checks no chunk CRCs when decoding: a corrupt PNG decodes to garbage
                Image.open(io.BytesIO(data)).verify()
            image.seek(0)  # animated images: the first frame
            image.load()
    except SDEditError:
        raise  # check_size's own message (an InputError is also a ValueError, caught below otherwise)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise LimitError(
            f"the {what} is too large to decode safely; at most {limits.max_pixels / 1e6:.0f} MP is accepted"
        ) from None
    except UnidentifiedImageError:
        raise InputError(f"the {what} is not an image PIL can read (PNG, JPEG, WebP, GIF, BMP, TIFF)") from None
    except (OSError, SyntaxError, ValueError, EOFError, UserWarning) as exc:
        raise InputError(f"the {what} file is damaged or truncated and can't be decoded ({exc})") from None
    return ImageOps.exif_transpose(image)


def check_size(size: tuple[int, int], what: str = "image", limits: ImageLimits = DEFAULT_LIMITS) -> None:
    w, h = size
    if w < limits.min_side or h < limits.min_side:
        raise InputError(f"the {what} is {w}x{h}; each side must be at least {limits.min_side} pixels")
    if w * h > limits.max_pixels:
        raise LimitError(
            f"the {what} is {w}x{h} ({w * h / 1e6:.1f} MP); at most {limits.max_pixels / 1e6:.0f} MP is accepted"
        )
    if max(w, h) / min(w, h) > limits.max_aspect:
        raise InputError(f"the {what} is {w}x{h}; its aspect ratio may be at most {limits.max_aspect:g}:1")


def _array_to_pil(array: np.ndarray, what: str) -> Image.Image:
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
        raise InputError(f"the {what} array has shape {a.shape}; use (H, W), (H, W, 3) or (H, W, 4)")
    if a.dtype == np.uint8:
        pass
    elif a.dtype == np.uint16:
        a = (a.astype(np.float64) / 257.0).round().astype(np.uint8)
    elif a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise InputError(f"the {what} array contains NaN or infinite values")
        if a.min() < 0 or a.max() > 1:
            raise InputError(f"a float {what} array must hold values in [0, 1], got [{a.min():.3g}, {a.max():.3g}]")
        a = (a * 255.0).round().astype(np.uint8)
    else:
        raise InputError(f"the {what} array has dtype {a.dtype}; use uint8, uint16, bool or float in [0, 1]")
    return Image.fromarray(np.ascontiguousarray(a))


def _tensor_to_pil(t: torch.Tensor, what: str) -> Image.Image:
    x = t.detach().cpu()
    if x.ndim == 4:
        if x.shape[0] != 1:
            raise InputError(f"the {what} tensor holds a batch of {x.shape[0]}; pass a list of images instead")
        x = x[0]
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[0] not in (1, 3, 4):
        raise InputError(f"the {what} tensor has shape {tuple(t.shape)}; use (C, H, W) with C = 1, 3 or 4")
    if x.dtype == torch.uint8:
        return _array_to_pil(x.permute(1, 2, 0).numpy(), what)
    return _array_to_pil(x.float().permute(1, 2, 0).numpy(), what)


def load_image(obj, what: str = "image", limits: ImageLimits = DEFAULT_LIMITS) -> Image.Image:
    """Any supported guide (path, bytes, PIL, numpy, torch) -> a decoded, upright PIL image, size-checked."""
    if obj is None:
        raise InputError(f"no {what} was given")
    if isinstance(obj, (str, Path)):
        path = Path(obj)
        if not path.is_file():
            raise InputError(f"the {what} file {str(path)!r} does not exist")
        size = path.stat().st_size
        if size > limits.max_file_bytes:
            raise LimitError(f"the {what} file is {size / 1e6:.1f} MB; at most {limits.max_file_bytes / 1e6:.0f} MB")
        image = _open_bytes(path.read_bytes(), what, limits)
    elif isinstance(obj, (bytes, bytearray)):
        image = _open_bytes(bytes(obj), what, limits)
    elif isinstance(obj, Image.Image):
        check_size(obj.size, what, limits)
        image = ImageOps.exif_transpose(obj)
    elif isinstance(obj, np.ndarray):
        image = _array_to_pil(obj, what)
    elif isinstance(obj, torch.Tensor):
        image = _tensor_to_pil(obj, what)
    else:
        raise InputError(
            f"the {what} must be a PIL image, a numpy array, a torch tensor or a file path, not {type(obj).__name__}"
        )
    check_size(image.size, what, limits)
    return image


def to_rgb(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Flatten every PIL mode (RGBA, LA, P with transparency, L, 1, I;16, I, F, CMYK, YCbCr...) to RGB."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(image).astype(np.float64)
        scale = 257.0 if a.max() > 255 or mode.startswith("I;16") else 1.0
        image = Image.fromarray(np.clip(a / scale, 0, 255).round().astype(np.uint8))
    elif mode == "F":
        a = np.nan_to_num(np.asarray(image, dtype=np.float64))
        a = a * 255.0 if a.max() <= 1.0 else a
        image = Image.fromarray(np.clip(a, 0, 255).round().astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        base = Image.new("RGBA", rgba.size, (*background, 255))
        base.alpha_composite(rgba)
        return base.convert("RGB")
    return image.convert("RGB")


@dataclass(frozen=True)
class Placement:
    """Where a guide of `size` sits on the model's `resolution` x `resolution` canvas."""

    size: tuple[int, int]
    box: tuple[int, int, int, int]
    resolution: int
    fit: str

    @property
    def covers_canvas(self) -> bool:
        r = self.resolution
        return self.box == (0, 0, r, r)


def place(
    image: Image.Image, resolution: int, fit: str = "pad", pad_color: tuple[int, int, int] | None = (255, 255, 255)
) -> tuple[Image.Image, Placement]:
    """Fit an RGB guide onto the model canvas; see the module docstring for the policy."""
    if fit not in FITS:
        raise InputError(f"fit must be one of {', '.join(FITS)}, not {fit!r}")
    w, h = image.size
    r = resolution
    if fit == "stretch":
        return image.resize((r, r), Image.LANCZOS), Placement((w, h), (0, 0, r, r), r, fit)
    if fit == "crop":
        s = r / min(w, h)
        sw, sh = max(r, round(w * s)), max(r, round(h * s))
        left, top = (sw - r) // 2, (sh - r) // 2
        canvas = image.resize((sw, sh), Image.LANCZOS).crop((left, top, left + r, top + r))
        # the canvas covers this box of the *input*, in input pixels
        box = (round(left / s), round(top / s), round((left + r) / s), round((top + r) / s))
        return canvas, Placement((w, h), box, r, fit)
    s = r / max(w, h)
    cw, ch = max(1, round(w * s)), max(1, round(h * s))
    left, top = (r - cw) // 2, (r - ch) // 2
    content = image.resize((cw, ch), Image.LANCZOS)
    if pad_color is None:
        a = np.asarray(content)
        padded = np.pad(a, ((top, r - ch - top), (left, r - cw - left), (0, 0)), mode="edge")
        return Image.fromarray(padded), Placement((w, h), (left, top, left + cw, top + ch), r, fit)
    canvas = Image.new("RGB", (r, r), tuple(pad_color))
    canvas.paste(content, (left, top))
    return canvas, Placement((w, h), (left, top, left + cw, top + ch), r, fit)


def place_mask(mask: np.ndarray, placement: Placement) -> np.ndarray:
    """A full-size mask (H, W) in [0, 1] -> the canvas mask (R, R); padding is never editable."""
    r = placement.resolution
    m = Image.fromarray(mask.astype(np.float32), mode="F")
    if placement.fit == "stretch":
        return np.clip(np.asarray(m.resize((r, r), Image.BILINEAR)), 0, 1)
    if placement.fit == "crop":
        return np.clip(np.asarray(m.crop(placement.box).resize((r, r), Image.BILINEAR)), 0, 1)
    left, top, right, bottom = placement.box
    out = np.zeros((r, r), np.float32)
    out[top:bottom, left:right] = np.asarray(m.resize((right - left, bottom - top), Image.BILINEAR))
    return np.clip(out, 0, 1)


def canvas_mask(placement: Placement) -> np.ndarray | None:
    """The editable part of the canvas when the user gave no mask: all of it but the padding."""
    if placement.fit != "pad" or placement.covers_canvas:
        return None
    return place_mask(np.ones(placement.size[::-1], np.float32), placement)


def unplace(canvas: np.ndarray, placement: Placement, guide: np.ndarray) -> np.ndarray:
    """A result canvas (R, R, 3) uint8 -> an (H, W, 3) uint8 image of the input's size.

    The canvas may be larger than the model's resolution R (an upscaled result, kR x kR): the placement
    box is scaled with it. For `fit="crop"` the part of the input outside the canvas is the guide
    (`guide`, (H, W, 3) uint8).
    """
    w, h = placement.size
    im = Image.fromarray(canvas)
    if placement.fit == "stretch":
        return np.asarray(im.resize((w, h), Image.LANCZOS))
    if placement.fit == "crop":
        left, top, right, bottom = placement.box
        out = guide.copy()
        out[top:bottom, left:right] = np.asarray(im.resize((right - left, bottom - top), Image.LANCZOS))
        return out
    box = placement.box
    if im.size[0] != placement.resolution:  # an upscaled canvas: the content box in its pixels
        k = im.size[0] / placement.resolution
        box = tuple(round(v * k) for v in box)
    return np.asarray(im.crop(box).resize((w, h), Image.LANCZOS))


def crop_region(placement: Placement) -> np.ndarray | None:
    """For fit="crop": 1 inside the input region the canvas covers, else None."""
    if placement.fit != "crop":
        return None
    w, h = placement.size
    left, top, right, bottom = placement.box
    region = np.zeros((h, w), np.float32)
    region[top:bottom, left:right] = 1.0
    return region


def composite(guide: np.ndarray, result: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """uint8 blend at full resolution: where mask == 0 the output *is* the guide, bit for bit."""
    if mask is None:
        return result
    m = mask.astype(np.float32)[..., None]
    out = guide.astype(np.float32) * (1.0 - m) + result.astype(np.float32) * m
    return np.clip(out.round(), 0, 255).astype(np.uint8)


def to_model_range(canvas: np.ndarray, data_range: tuple[float, float]) -> torch.Tensor:
    """(R, R, 3) uint8 -> (3, R, R) float32 in the model's data range ([-1, 1] VP, [0, 1] VE)."""
    lo, hi = data_range
    x = torch.from_numpy(np.array(canvas, dtype=np.float32)).permute(2, 0, 1) / 255.0
    return x * (hi - lo) + lo


def from_model_range(x: torch.Tensor, data_range: tuple[float, float]) -> np.ndarray:
    """(B, 3, R, R) in the model's range -> (B, R, R, 3) uint8, clipped."""
    lo, hi = data_range
    unit = ((x.detach().float().cpu() - lo) / (hi - lo)).clamp(0, 1)
    return (unit * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
