"""Results that carry their settings: PNG text chunks written with every result, read back to redo it.

Like A1111's "PNG info" and ComfyUI's workflow chunk, each PNG holds one `sdedit` text chunk with a JSON
object of what made it (model, sampler, steps, t0, repeats, its own seed, whether a mask or a strength map
was used) plus a human-readable `parameters` line. `python -m sdedit info FILE.png` prints them; the app
restores them when such a PNG is dropped on it. The same seed with the same guide and settings gives the
same image again.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from .errors import InputError

CHUNK = "sdedit"
KEYS = ("model", "sde", "sampler", "strength", "num_inference_steps", "steps", "repeats", "snr", "fit", "upscaler")


def settings_of(metadata: dict, index: int = 0) -> dict:
    """The recallable settings of sample `index` of a call, from the pipeline's metadata."""
    seeds = metadata.get("seeds") or []
    n = max(1, int(metadata.get("num_images") or 1))
    guide = min(index // n, max(0, len(metadata.get("masked") or [None]) - 1))
    out = {k: metadata.get(k) for k in KEYS if metadata.get(k) is not None}
    out["seed"] = seeds[index] if index < len(seeds) else None
    out["masked"] = bool((metadata.get("masked") or [False])[guide])
    out["strength_map"] = bool((metadata.get("strength_map") or [False])[guide])
    return out


def describe(settings: dict) -> str:
    """One line in the order people read such lines: t0, sampler, steps, repeats, seed, model."""
    parts = [
        f"t0 {settings.get('strength')}",
        f"sampler {settings.get('sampler')}",
        f"steps {settings.get('num_inference_steps')}",
        f"repeats {settings.get('repeats')}",
        f"seed {settings.get('seed')}",
        f"model {settings.get('model')}",
    ]
    if settings.get("masked"):
        parts.append("mask" if not settings.get("strength_map") else "strength map")
    return ", ".join(parts)


def png_info(settings: dict) -> PngInfo:
    info = PngInfo()
    info.add_text(CHUNK, json.dumps(settings, sort_keys=True))
    info.add_text("parameters", describe(settings))
    info.add_text("Software", "SDEdit Studio")
    return info


def save_png(image: Image.Image, path: str | Path, settings: dict) -> Path:
    """Write `image` as a PNG that carries `settings`."""
    path = Path(path)
    image.save(path, format="PNG", pnginfo=png_info(settings))
    return path


def read_settings(source) -> dict:
    """The settings a PNG carries (a path, bytes' file object, or an open PIL image); InputError if none."""
    if isinstance(source, Image.Image):
        text = getattr(source, "text", {}) or source.info
    else:
        try:
            with Image.open(source) as im:
                text = dict(getattr(im, "text", {}) or im.info)
        except (OSError, ValueError) as exc:
            raise InputError(f"could not read {source}: {exc}") from None
    raw = text.get(CHUNK)
    if not raw:
        raise InputError("this image carries no SDEdit Studio settings (only PNGs saved by SDEdit Studio do)")
    try:
        settings = json.loads(raw)
    except json.JSONDecodeError:
        raise InputError("this image's SDEdit Studio settings are damaged") from None
    if not isinstance(settings, dict):
        raise InputError("this image's SDEdit Studio settings are damaged")
    return settings
