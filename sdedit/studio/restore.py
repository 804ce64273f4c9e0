"""Restore a result from its PNG (A1111's "PNG info", and more): the app's PNGs carry their settings and what
the model got (`sdedit.recall`); dropping one on the app puts its model, t0, sampler, steps, repeats, snr,
samples, seed, mask refinement and (a text model's) prompt, negative prompt and guidance back, and its guide
(with the mask and strength map) back on a canvas, so that Generate redoes it.

The seed restored is the call's first seed and the number of samples the call's: Generate then gives the
whole set again, the dropped image at its place. A PNG written before these keys existed restores the image's
own seed and leaves the samples as they are.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from ..errors import InputError, SDEditError
from ..latent import MAX_PROMPT_CHARS
from ..recall import INPUT_CHUNKS, PNG_SIGNATURE, png_bytes, read_inputs, read_settings
from .guides import to_pil

# the controls' names for the keys a PNG carries, and their types
FIELDS = (
    ("strength", "strength", float),
    ("sampler", "sampler", str),
    ("num_inference_steps", "steps", int),
    ("repeats", "repeats", int),
    ("snr", "snr", float),
    ("seed", "seed", int),
    ("num_images", "samples", int),
    ("sample", "sample", int),
    ("mask_dilation", "mask_dilation", float),
    ("mask_feather", "mask_feather", float),
    ("fill_outlines", "fill_outlines", bool),
    ("keep_details", "keep_details", bool),
    ("prompt", "prompt", str),  # a text model's (a pixel model's PNG has none of these three)
    ("negative_prompt", "negative_prompt", str),
    ("guidance_scale", "guidance", float),
)
TEXT_KEYS = ("prompt", "negative_prompt")


def settings_from_dict(s: dict) -> dict:
    """The controls' values from a PNG's settings (or a history entry's): model, strength, sampler, steps,
    repeats, snr, samples, seed (the call's first), mask dilation and feather, whether closed outlines were
    filled and details kept, a text model's prompt, negative prompt and guidance, and `sample` (which of the
    call's samples the image was) with `own_seed`. Keys it lacks are left out; a damaged one is an InputError."""
    if not isinstance(s, dict):
        raise InputError("these SDEdit Studio settings are damaged")
    out: dict = {}
    if isinstance(s.get("model"), str) and s["model"]:
        out["model"] = s["model"]
    for key, name, kind in FIELDS:
        value = s.get(key)
        if value is None:
            continue
        if key in TEXT_KEYS and (not isinstance(value, str) or len(value) > MAX_PROMPT_CHARS):
            why = f"{key} is not a text of at most {MAX_PROMPT_CHARS:,} characters"
            raise InputError(f"this image's SDEdit Studio settings are damaged ({why})")
        try:
            out[name] = kind(value)
        except (TypeError, ValueError):
            raise InputError(f"this image's SDEdit Studio settings are damaged ({key} = {value!r})") from None
    if "seed" in out:
        out["own_seed"] = out["seed"]
        sample = out.get("sample", 0)
        if 0 < sample < out.get("samples", 0) and out["seed"] - sample >= 0:
            out["seed"] -= sample  # the call's first seed: seeds_for gives seed, seed + 1, ...
    return out


def settings_from_png(path) -> dict:
    """`settings_from_dict` of a result PNG. InputError when the file carries no SDEdit Studio settings."""
    if path is None:
        raise InputError("drop a PNG saved by SDEdit Studio")
    return settings_from_dict(read_settings(path))


def inputs_from_png(path) -> dict[str, Image.Image]:
    """What the model got, from a result PNG: {"guide", "mask", "strength_map"} (those it carries), decoded
    within the app's image limits; {} for a PNG written before they were carried."""
    return decode_inputs(read_inputs(path))


def decode_inputs(inputs: dict[str, bytes]) -> dict[str, Image.Image]:
    """{"guide", "mask", "strength_map"} as PNG bytes -> images (RGB guide, L masks), within the app's limits."""
    out = {}
    for name, data in inputs.items():
        if name in INPUT_CHUNKS:
            out[name] = to_pil(data, name).convert("L" if name != "guide" else "RGB")
    return out


MAX_CARRIED_BYTES = 8_000_000  # what the model got, carried in each result PNG, at most (PNG bytes together)
MAX_ENCODED_PIXELS = 2_000_000  # an input that is not a PNG file already is encoded up to this size only


def input_png(image) -> bytes | None:
    """One of the model's inputs as PNG bytes for the result's chunk: a PNG file as it is (the page's guides
    are already PNG files in Gradio's cache: nothing to encode), anything else decoded and encoded when it is
    at most MAX_ENCODED_PIXELS (a larger JPEG sent through the API would cost seconds to encode: not carried).
    """
    if image is None:
        return None
    if isinstance(image, (str, Path)):
        path = Path(image)
        if path.is_file() and path.stat().st_size <= MAX_CARRIED_BYTES:
            with path.open("rb") as f:
                if f.read(len(PNG_SIGNATURE)) == PNG_SIGNATURE:
                    return path.read_bytes()
    pil = to_pil(image)
    return png_bytes(pil) if pil.width * pil.height <= MAX_ENCODED_PIXELS else None


def input_pngs(guide, mask=None, strength_map=None) -> dict[str, bytes]:
    """The guide, mask and strength map of a request as PNG bytes, for `EditResult.png_files`; {} when the
    guide cannot be carried or all of them are over MAX_CARRIED_BYTES (the PNG then carries its settings only).
    """
    try:
        out = {"guide": input_png(guide), "mask": input_png(mask), "strength_map": input_png(strength_map)}
    except (SDEditError, OSError, ValueError):  # the edit has run: its results go out, carrying less
        return {}
    if out["guide"] is None or (mask is not None and out["mask"] is None):
        return {}
    if strength_map is not None and out["strength_map"] is None:
        return {}
    if sum(len(v) for v in out.values() if v) > MAX_CARRIED_BYTES:
        return {}
    return {k: v for k, v in out.items() if v is not None}
