"""Every limit a visitor can meet, in one place, read once from the environment.

docs/reliability.md lists them with their variables. The models, jobs and the page read them from here, so
a limit is changed (or monkeypatched in a test) in one place.
"""

from __future__ import annotations

import math
import os

from ..imaging import ImageLimits
from ..pipeline import RunLimits


def _env_number(name: str, default: float, lo: float = 1, kind=int):
    """A number from the environment, at least `lo`; the default when unset or unreadable."""
    try:
        value = kind(os.environ.get(name, default))
    except ValueError:
        return default
    return value if math.isfinite(value) and value >= lo else default


def _env_int(name: str, default: int) -> int:
    return _env_number(name, default)


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
# A photo is scaled to at most this a side on the page's canvas, so that the canvas's value (PNG data URLs of
# the photo and its layers) stays under the request body limit.
MAX_PHOTO_SIDE = 768
# Model runs at once (one per replica), and samples from several requests merged into one forward.
CONCURRENCY = _env_int("SDEDIT_CONCURRENCY", 1)
MAX_BATCH = _env_int("SDEDIT_MAX_BATCH", 8)
# How long an idle model may wait for company (after a batch of several requests). 0: never; requests that
# arrive while the model is busy are batched instead, so a lone request never waits beside an idle model.
BATCH_WINDOW_S = _env_number("SDEDIT_BATCH_WINDOW_MS", 0, 0) / 1000
# Requests waiting beyond those being served (Gradio's queue).
QUEUE_SIZE = int(os.environ.get("SDEDIT_QUEUE_SIZE", "16"))
# On ZeroGPU the GPU exists only inside a @spaces.GPU call, so edits run there one by one, unbatched.
ZERO_GPU = os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "true")
# Edit requests admitted at once: enough to fill a batch while the previous one runs (the batcher runs
# CONCURRENCY forwards at a time, each with up to MAX_BATCH samples from requests with matching settings).
EDIT_CONCURRENCY = CONCURRENCY if ZERO_GPU else CONCURRENCY * max(1, 2 * MAX_BATCH)
# The fast path (sdedit.accel: half precision, channels_last, CUDA graphs, noise on the device) where it pays:
# "auto" = on CUDA only (on the CPU the plain pipeline is as fast and keeps CPU seeds; on ZeroGPU the GPU
# exists only inside each call, so graphs captured at start-up would be lost), "1" = always, "0" = never.
ACCEL = os.environ.get("SDEDIT_ACCEL", "auto").lower()
# Files the app writes (animations here, Gradio's cache in the page) are deleted after this many seconds.
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
