"""Restore settings from a result PNG (A1111's "PNG info"): the app's PNGs carry their settings
(`sdedit.recall`); dropping one on the app puts its model, t0, sampler, steps, repeats, snr and seed back.
"""

from __future__ import annotations

from ..errors import InputError
from ..recall import read_settings


def settings_from_png(path) -> dict:
    """The controls' values a result PNG carries: model, strength, sampler, steps, repeats, snr, seed.

    InputError when the file carries no SDEdit Studio settings; keys the PNG lacks are left out.
    """
    if path is None:
        raise InputError("drop a PNG saved by SDEdit Studio")
    s = read_settings(path)
    out: dict = {}
    if isinstance(s.get("model"), str) and s["model"]:
        out["model"] = s["model"]
    for key, name, kind in (
        ("strength", "strength", float),
        ("sampler", "sampler", str),
        ("num_inference_steps", "steps", int),
        ("repeats", "repeats", int),
        ("snr", "snr", float),
        ("seed", "seed", int),
    ):
        value = s.get(key)
        if value is None:
            continue
        try:
            out[name] = kind(value)
        except (TypeError, ValueError):
            raise InputError(f"this image's SDEdit Studio settings are damaged ({key} = {value!r})") from None
    return out
