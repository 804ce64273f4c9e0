"""Helpers shared by the test wings: images as arrays and the app's /edit by position."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
EX = REPO / "examples"

# /edit's inputs by position, as old clients send them (docs/app.md); later inputs are appended after these
EDIT_INPUTS = (
    "guide",
    "mask",
    "model",
    "strength",
    "sampler",
    "steps",
    "repeats",
    "num_samples",
    "seed",
    "snr",
    "mask_dilation",
    "mask_feather",
)
EDIT_DEFAULTS = dict(model="fluent-emoji-64", num_samples=1, seed=0, snr=0.0, mask_dilation=0, mask_feather=0)


def rgb(path) -> np.ndarray:
    """An image file as an (H, W, 3) uint8 array."""
    return np.asarray(Image.open(path).convert("RGB"))


def call_edit(client, guide, mask=None, *later, **settings):
    """/edit through gradio_client with its inputs by position, as a client written against the first API would
    call it: `settings` name the first 12 (strength, sampler, steps and repeats have no default here), `later`
    are the inputs appended since, in order (strength_map, fill_outlines, auto_strength, rank, prompt, ...)."""
    from gradio_client import handle_file

    s = {**EDIT_DEFAULTS, **settings}
    unknown = set(s) - set(EDIT_INPUTS)
    if unknown:
        raise TypeError(f"/edit has no input named {sorted(unknown)}")
    files = (handle_file(str(guide)), handle_file(str(mask)) if mask is not None else None)
    return client.predict(*files, *(s[name] for name in EDIT_INPUTS[2:]), *later, api_name="/edit")
