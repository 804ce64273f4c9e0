"""What a visitor sees while an edit runs and after: the progress bar's words and the reverse-process GIF.

`StepProgress` turns the pipeline's step callbacks into a bar with an estimate; `queue_words` says where a
waiting request stands. `ReverseRecorder` keeps a few frames of one sample (x_t and the model's current guess
of the clean image) as tensor copies: nothing is decoded or encoded while the model runs. `Animation` turns
them into the looping GIF (`render_animation`) only when asked, after the result has gone back, once. The
GIF and the result PNGs go to a private folder whose old files are swept (`cleanup_outputs`).

`WORK` counts the animation's work (tensor copies in the step loop, frames decoded and encoded, GIFs), so
tests can check what runs on a result's path without timing it.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ..recall import save_png
from ..samplers import StepInfo
from . import limits
from .guides import WHITE

ProgressFn = Callable[[int, int, str], None]

# Work done for animations since the process started: "step_copies" (tensor copies in the step loop),
# "frames_decoded", "frames_encoded" (GIF frames drawn and quantized), "gifs" (files written).
WORK: Counter = Counter()
_WORK_LOCK = threading.Lock()


def quoted(text: str, most: int = 60) -> str:
    """A visitor's text (a prompt) in quotes for a notice or a summary, cut to `most` characters."""
    text = " ".join(str(text).split())
    return f"“{text if len(text) <= most else text[: most - 1] + '…'}”"


def count(**amounts: int) -> None:
    with _WORK_LOCK:
        WORK.update(amounts)


def queue_words(ahead: int, eta_s: float | None) -> str:
    """'Waiting for the model: 2 requests ahead of yours · starts in about 3 s' for a waiting request."""
    who = "1 request" if ahead == 1 else f"{ahead} requests"
    when = "" if eta_s is None else f" · starts in about {max(1, round(eta_s))} s"
    return f"Waiting for the model: {who} ahead of yours{when}"


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
    """Keeps the first sample's x_t and predicted x0 after some steps, to animate the reverse process later.

    In the step loop it only copies two (1, C, h, w) tensors on the model's device (no host sync, no decoding);
    `frames()` decodes them, all at once, when the animation is rendered. `decode` is the model's space back
    to (B, R, R, 3) uint8 canvases (`pipe.space.decode`): the recorder never assumes pixels.
    """

    def __init__(self, decode: Callable[[torch.Tensor], np.ndarray], total: int, max_frames: int = 48):
        self.decode = decode
        self.every = max(1, math.ceil(total / max_frames))
        self.total = total
        self.labels: list[tuple[str, str]] = []
        self.left: list[torch.Tensor] = []
        self.right: list[torch.Tensor] = []
        self.count = 0

    def add(self, left: str, right: str, x, x0) -> None:
        self.labels.append((left, right))
        self.left.append(x[:1].detach().clone())
        self.right.append(x0[:1].detach().clone())
        count(step_copies=2)

    def step(self, x, x0_pred) -> None:
        """After a step: keep x_t and the predicted x0 (the first sample of `x`) every `every` steps."""
        self.count += 1
        if self.count % self.every == 0 or self.count == self.total:
            self.add(f"step {self.count}/{self.total}", "predicted clean image", x, x0_pred)

    def __call__(self, info: StepInfo) -> None:
        self.step(info.x, info.x0_pred)

    def to_host(self) -> None:
        """Move the kept tensors off the accelerator in one copy each side (after the run, not per step)."""
        if self.left and self.left[0].device.type != "cpu":
            self.left = list(torch.cat(self.left).cpu().split(1))
            self.right = list(torch.cat(self.right).cpu().split(1))

    def frames(self) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
        """(left label, right label, left image, right image) for every kept step, decoded in one batch."""
        if not self.labels:
            return []
        n = len(self.labels)
        images = self.decode(torch.cat([*self.left, *self.right]).float())
        count(frames_decoded=2 * n)
        return [(a, b, images[i], images[n + i]) for i, (a, b) in enumerate(self.labels)]


class Animation:
    """One request's reverse-process GIF: rendered when first asked for (after the result went back), once.

    `path()` renders it (thread-safe; later calls return the same file) and frees the recorded tensors.
    `upscaler` (the model's learned one, `sdedit.upscale`, or None) makes the last frame the result canvas as
    the results are made, at their size; the steps before it are resized as the results are (Lanczos).
    """

    def __init__(self, recorder: ReverseRecorder, result: np.ndarray, upscaler=None):
        self._recorder: ReverseRecorder | None = recorder
        self._result = result
        self._upscaler = upscaler
        self.num_frames = len(recorder.labels) + 1  # the kept steps and the result
        self._path: Path | None = None
        self._lock = threading.Lock()

    @property
    def ready(self) -> bool:
        return self._path is not None

    def path(self) -> Path:
        with self._lock:
            if self._path is None:
                result = self._result if self._upscaler is None else self._upscaler.upscale(self._result)
                frames = [*self._recorder.frames(), ("result", "result", result, result)]
                self._path = render_animation(frames, output_dir() / f"reverse-{uuid.uuid4().hex[:12]}.gif")
                self._recorder = None
            return self._path


_FONT = None


def _font(size: int = 13):
    global _FONT
    if _FONT is None:
        try:
            _FONT = ImageFont.load_default(size=size)
        except TypeError:  # Pillow without FreeType
            _FONT = ImageFont.load_default()
    return _FONT


# The GIF's palette: up to 253 colours of the panels, then the background and the two labels' greys.
_BG, _LEFT, _RIGHT = 253, 254, 255
# The animation's panels, in px: the size the results are shown at (the embedded model's 64 px canvases reach
# the page at 256 px, through its upscaler). The page shows the GIF at its own size (`ANIMATION_SIZE`).
PANEL, GAP, FOOTER = 256, 6, 22
ANIMATION_SIZE = (2 * PANEL + GAP, PANEL + FOOTER)


def fit_panel(image: np.ndarray, panel: int = PANEL) -> np.ndarray:
    """A (R, R, 3) canvas at `panel` px, resized as the results are (Lanczos: smooth, not blocks)."""
    if image.shape[0] == panel and image.shape[1] == panel:
        return image
    return np.asarray(Image.fromarray(image).resize((panel, panel), Image.LANCZOS))


def _panels(x: np.ndarray, x0: np.ndarray, panel: int, gap: int) -> Image.Image:
    """Both panels side by side, at `panel` px each, as one palette image (quantized once, at its final size)."""
    row = np.full((panel, 2 * panel + gap, 3), 255, np.uint8)
    row[:, :panel], row[:, panel + gap :] = fit_panel(x, panel), fit_panel(x0, panel)
    q = Image.fromarray(row).quantize(_BG, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    palette = q.getpalette()[: 3 * _BG]
    q.putpalette(palette + [0] * (3 * _BG - len(palette)) + [*WHITE, 40, 40, 40, 110, 110, 110])
    return q


def render_animation(
    frames: list[tuple[str, str, np.ndarray, np.ndarray]], path: Path, panel: int = PANEL, hold_last_ms: int = 2000
) -> Path:
    """A looping GIF: left the sample x_t, right the model's current guess of the clean image.

    Frames are (left label, right label, left image, right image), each image resized to `panel` px as the
    results are (`fit_panel`); the first and last are held longer. Each frame is quantized once, at its final
    size (its cost: `benchmarks/animation.py`, docs/performance.md).
    """
    images, durations = [], []
    for i, (left, right, x, x0) in enumerate(frames):
        panels = _panels(x, x0, panel, GAP)
        frame = Image.new("P", (panels.width, panels.height + FOOTER), _BG)
        frame.putpalette(panels.getpalette())
        frame.paste(panels, (0, 0))
        draw = ImageDraw.Draw(frame)  # the labels go under the panels: the page's own label covers the top left
        draw.text((4, panel + 4), left, fill=_LEFT, font=_font())
        draw.text((panel + GAP + 4, panel + 4), right, fill=_RIGHT, font=_font())
        images.append(frame)
        durations.append(1200 if i == 0 else hold_last_ms if i == len(frames) - 1 else 110)
    images[0].save(path, save_all=True, append_images=images[1:], duration=durations, loop=0, optimize=False)
    count(frames_encoded=len(images), gifs=1)
    return path


def write_pngs(
    images: list[Image.Image], settings: list[dict] | None = None, inputs: dict[str, bytes] | None = None
) -> list[Path]:
    """The results as lossless PNG files in the output folder, written once: the page's gallery serves them
    (a Gradio event that sends its outputs twice, as /edit does, would otherwise encode every PNG twice).
    With `settings` (one dict per image, `sdedit.recall.settings_of`) each PNG carries them in text chunks,
    and `inputs` (the guide, mask and strength map as PNG bytes, `sdedit.recall.save_png`) with them."""
    folder = output_dir()
    stem = uuid.uuid4().hex[:12]
    paths = []
    for i, im in enumerate(images):
        path = folder / f"result-{stem}-{i}.png"
        if settings is not None:
            save_png(im, path, settings[i], inputs)
        else:
            im.save(path, format="PNG")
        paths.append(path)
    return paths


def png_file(image, what: str = "image") -> str | None:
    """A PIL image as a PNG file of its own in the output folder (a path or None passes through)."""
    if image is None or not isinstance(image, Image.Image):
        return image
    path = output_dir() / f"{what}-{uuid.uuid4().hex[:12]}.png"
    image.save(path, format="PNG")
    return str(path)


_LAST_CLEANUP = [0.0]
CLEANUP_EVERY_S = 10.0


def output_dir() -> Path:
    """A private temp folder for animations and result PNGs; old files are removed as new ones come in.

    Gradio copies each file into its own cache (cleaned by `delete_cache` in the page), so these are only the
    sources; at most `keep` are kept however busy the server is. The folder is swept at most every
    CLEANUP_EVERY_S seconds (a sweep lists the folder).
    """
    folder = Path(tempfile.gettempdir()) / "sdedit-studio"
    folder.mkdir(parents=True, exist_ok=True)
    now = time.monotonic()
    if now - _LAST_CLEANUP[0] >= CLEANUP_EVERY_S:
        _LAST_CLEANUP[0] = now
        cleanup_outputs(folder)
    return folder


def cleanup_outputs(folder: Path, ttl_s: float | None = None, keep: int = 500) -> int:
    """Delete outputs (GIFs, PNGs) older than `ttl_s` (default OUTPUT_TTL_S), and the oldest beyond `keep`;
    returns how many."""
    cutoff = time.time() - (limits.OUTPUT_TTL_S if ttl_s is None else ttl_s)
    files = []
    for path in [*folder.glob("*.gif"), *folder.glob("*.png")]:
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
