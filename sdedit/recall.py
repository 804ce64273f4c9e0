"""Results that carry their settings: PNG text chunks written with every result, read back to redo it.

Like A1111's "PNG info" and ComfyUI's workflow chunk, each PNG holds one `sdedit` text chunk with a JSON
object of what made it (model, sampler, steps, t0, repeats, its own seed, which of how many samples it was,
the app's mask dilation and feather, whether a mask or a strength map was used, whether closed outlines were
filled; for a text model its prompt, negative prompt and guidance scale) plus a human-readable `parameters`
line. `call_kwargs` turns the settings back into a pipeline call. `python -m sdedit info FILE.png` prints them;
the app restores them when such a PNG is dropped on it. The same seed with the same guide and settings gives the
same image again.

The app's PNGs also carry what the model got, so that a dropped PNG can be redone without its guide at
hand: the guide, the mask and the strength map, each as PNG bytes in a private ancillary chunk of its own
(`sdGd`, `sdMk`, `sdSm`, after the image data). Why chunks and not text: a text chunk would hold base64
(a third larger) and Pillow refuses text chunks over 1 MB, which a 768 px photo guide exceeds; ancillary
chunks are skipped by every other PNG reader (the PNG specification), so the file still opens everywhere.
PNGs written before these keys and chunks existed still read: the keys they lack are simply absent.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from .errors import InputError

CHUNK = "sdedit"
KEYS = (
    "model",
    "sde",
    "sampler",
    "strength",
    "num_inference_steps",
    "steps",
    "repeats",
    "snr",
    "fit",
    "upscaler",
    "mask_dilation",  # the app's mask refinement (its metadata has them; the engine's does not)
    "mask_feather",
    "prompt",  # text models only (a pixel model's metadata has none of these three)
    "negative_prompt",
    "guidance_scale",
)
# the settings that are arguments of SDEditPipeline.__call__ under the same name
CALL_KEYS = (
    "strength",
    "sampler",
    "num_inference_steps",
    "repeats",
    "snr",
    "fit",
    "fill_outlines",
    "keep_details",
    "prompt",
    "negative_prompt",
    "guidance_scale",
)
# What the model got, each as PNG bytes in a private ancillary chunk (lower-case first and second letters:
# ancillary and private; upper-case third: the reserved bit; lower-case fourth: safe to copy).
INPUT_CHUNKS = {"guide": b"sdGd", "mask": b"sdMk", "strength_map": b"sdSm"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def settings_of(metadata: dict, index: int = 0) -> dict:
    """The recallable settings of sample `index` of a call, from the pipeline's metadata."""
    seeds = metadata.get("seeds") or []
    n = max(1, int(metadata.get("num_images") or 1))
    guide = min(index // n, max(0, len(metadata.get("masked") or [None]) - 1))
    out = {k: metadata.get(k) for k in KEYS if metadata.get(k) is not None}
    out["seed"] = seeds[index] if index < len(seeds) else None
    out["num_images"] = n  # the call's samples per guide, and which of them this one is: seed - sample is the
    out["sample"] = index % n  # call's first seed, so the whole set can be redone
    out["masked"] = bool((metadata.get("masked") or [False])[guide])
    out["strength_map"] = bool((metadata.get("strength_map") or [False])[guide])
    out["fill_outlines"] = bool((metadata.get("fill_outlines") or [False])[guide])
    out["keep_details"] = bool((metadata.get("keep_details") or [False])[guide])
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
    if settings.get("fill_outlines"):
        parts.append("outlines filled")
    if settings.get("keep_details"):
        parts.append("details kept")
    if settings.get("guidance_scale") is not None:
        parts.append(f"guidance {settings['guidance_scale']:g}")
    if settings.get("negative_prompt"):
        parts.append(f"negative prompt {json.dumps(settings['negative_prompt'], ensure_ascii=False)}")
    if settings.get("prompt"):
        parts.append(f"prompt {json.dumps(settings['prompt'], ensure_ascii=False)}")
    return ", ".join(parts)


def call_kwargs(settings: dict) -> dict:
    """The arguments of an `SDEditPipeline` call that redoes the result these settings describe (with its guide,
    mask and strength map): the recorded settings under their call names, and the seed. The model is
    `settings["model"]`; a VE-only `snr` of None and a pixel model's missing prompt are left out."""
    kwargs = {k: settings[k] for k in CALL_KEYS if settings.get(k) is not None}
    if settings.get("seed") is not None:
        kwargs["seed"] = settings["seed"]
    return kwargs


def png_info(settings: dict, inputs: dict[str, bytes] | None = None) -> PngInfo:
    """The chunks of a result PNG: its settings as text, and `inputs` (guide, mask, strength_map: PNG bytes)."""
    info = PngInfo()
    info.add_text(CHUNK, json.dumps(settings, sort_keys=True))
    info.add_text("parameters", describe(settings))
    info.add_text("Software", "SDEdit Studio")
    for name, data in (inputs or {}).items():
        if name not in INPUT_CHUNKS:
            raise ValueError(f"unknown input {name!r}; known: {', '.join(INPUT_CHUNKS)}")
        if data is not None:
            if not data.startswith(PNG_SIGNATURE):
                raise ValueError(f"the {name} must be given as PNG bytes")
            info.add(INPUT_CHUNKS[name], data, after_idat=True)
    return info


def save_png(image: Image.Image, path: str | Path, settings: dict, inputs: dict[str, bytes] | None = None) -> Path:
    """Write `image` as a PNG that carries `settings` (and, when given, the guide, mask and strength map)."""
    path = Path(path)
    image.save(path, format="PNG", pnginfo=png_info(settings, inputs))
    return path


def read_inputs(source) -> dict[str, bytes]:
    """The guide, mask and strength map a result PNG carries, as PNG bytes (only those present; {} for a PNG
    written before they were carried). `source`: a path, bytes or a binary file object. A damaged chunk (its
    CRC does not match) is left out rather than trusted."""
    if isinstance(source, (str, Path)):
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise InputError(f"could not read {source}: {exc.strerror or exc}") from None
    elif isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    else:
        data = source.read()
    if not data.startswith(PNG_SIGNATURE):
        raise InputError("this file is not a PNG (only PNGs saved by SDEdit Studio carry their settings)")
    wanted = {cid: name for name, cid in INPUT_CHUNKS.items()}
    out: dict[str, bytes] = {}
    pos = len(PNG_SIGNATURE)
    while pos + 12 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        cid = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > len(data):
            break  # a truncated file: keep what was read
        body = data[pos + 8 : pos + 8 + length]
        if cid in wanted:
            (crc,) = struct.unpack(">I", data[pos + 8 + length : end])
            if zlib.crc32(cid + body) == crc and body.startswith(PNG_SIGNATURE):
                out[wanted[cid]] = body
        if cid == b"IEND":
            break
        pos = end
    return out


def png_bytes(image: Image.Image) -> bytes:
    """`image` as PNG bytes (what `save_png`'s `inputs` take)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


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
