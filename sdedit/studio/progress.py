"""What a visitor sees while an edit runs and after: the progress bar's words and the reverse-process GIF.

`StepProgress` turns the pipeline's step callbacks into a bar with an estimate; `ReverseRecorder` keeps a
few frames of one sample (x_t and the model's current guess of the clean image); `render_animation` makes
the looping GIF, written to a private folder whose old files are swept (`cleanup_outputs`).
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ..samplers import StepInfo
from . import limits
from .guides import WHITE

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
    """Keeps the first sample's x_t and predicted x0 after each step, to animate the reverse process.

    `decode` is the model's space back to (B, R, R, 3) uint8 canvases (`pipe.space.decode`): the recorder
    never assumes pixels.
    """

    def __init__(self, decode: Callable[[torch.Tensor], np.ndarray], total: int, max_frames: int = 48):
        self.decode = decode
        self.every = max(1, math.ceil(total / max_frames))
        self.total = total
        self.frames: list[tuple[str, str, np.ndarray, np.ndarray]] = []
        self.count = 0

    def _img(self, x) -> np.ndarray:
        return self.decode(x[:1])[0]

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


def output_dir() -> Path:
    """A private temp folder for animations; files older than OUTPUT_TTL_S are removed as new ones come in.

    Gradio copies each animation into its own cache (cleaned by `delete_cache` in the page), so these are only
    the sources; at most `keep` are kept however busy the server is.
    """
    folder = Path(tempfile.gettempdir()) / "sdedit-studio"
    folder.mkdir(parents=True, exist_ok=True)
    cleanup_outputs(folder)
    return folder


def cleanup_outputs(folder: Path, ttl_s: float | None = None, keep: int = 500) -> int:
    """Delete animations older than `ttl_s` (default OUTPUT_TTL_S), and the oldest beyond `keep`; returns how many."""
    cutoff = time.time() - (limits.OUTPUT_TTL_S if ttl_s is None else ttl_s)
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
