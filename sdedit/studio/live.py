"""Live preview: every finished stroke becomes a quick, stable SDEdit preview beside the canvas.

The canvas (sdedit.studio.canvas) calls `preview` straight from the page on pointer-up (a gr.HTML server
function: no queue, no debounce). Three rules make it live without hurting Generate:

* **Newest only.** Each visitor has at most one canvas waiting. A canvas that arrives while the visitor's
  previous one waits replaces it (the replaced call answers `stale` at once); the one already running
  finishes. So a burst of strokes computes the running canvas and the last one, never the ones in between
  (`PreviewService`). Visitors take turns in the order they first had a canvas waiting.
* **Generate first.** Previews use the same model slot as the edit batcher and the sweep
  (`jobs.MODEL_SLOTS`, which counts the threads blocked on it), through `ModelGate`: a preview takes the slot
  only while no edit is queued or waiting for it, so a slot a preview releases goes to the edit behind it. An
  edit therefore waits at most for the one preview that is running.
* **Fast.** On a CPU previews run on a channels-last copy of the weights, in bf16 where the CPU has it
  natively (`preview_pipeline`); only the network, the sampler stays float32.
* **Stable.** The preview's noise is fixed per visitor and seed (the page's seed, or one drawn from the
  visitor's id while the seed is random), so the same canvas always gives the same preview and a small
  stroke changes the picture mostly where it was made. The sampler and number of network evaluations were
  chosen by measurement (docs/quality.md, "Live preview settings").

Whether Live is on by default is decided per model from a measured preview time (`live_policy`): on for
every model on a GPU, and on a CPU only where a preview takes at most `LIVE_BUDGET_MS`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import hashlib
import io
import itertools
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from ..errors import InputError, SDEditError
from ..imaging import composite, unplace
from ..samplers import steps_for
from . import limits

log = logging.getLogger("sdedit.live")

# The preview's settings, picked by docs/quality.md "Live preview settings" (python -m benchmarks.live_latency
# --quality; the rule is written there).
PREVIEW_SAMPLER = "dpmpp"
PREVIEW_EVALUATIONS = 2
PREVIEW_SIDE = 256  # the canvas sends its picture at most this many pixels a side
MAX_PREVIEW_SIDE = 1024  # a larger preview guide is refused (the page never sends one)
# One image of a preview call, as a data URL: a 256 px PNG is at most ~350,000 characters even for noise. With
# the visitors below, what waiting canvases can hold is bounded (256 x 2 x 0.45 MB decoded, in the worst case).
MAX_PREVIEW_CHARS = 600_000
# Slower than this per preview (compute alone) and Live starts off, with the reason on the switch: a picture
# that comes a second or more after the stroke no longer follows the brush. The embedded model takes ~0.1-0.3 s
# on 2 busy CPU cores, a 256 px model ~6 s, so the line falls far from both (a brief load spike at the
# measurement cannot turn the embedded model off for good either: an "off" is measured again after a minute).
LIVE_BUDGET_MS = float(os.environ.get("SDEDIT_LIVE_BUDGET_MS", "1000"))
REMEASURE_OFF_S = 60.0
# Previews of several visitors with matching settings may share a forward: on a GPU that is nearly free, on a
# CPU it is not (a batch of 2 takes twice as long), so there one preview runs at a time.
MAX_PREVIEW_BATCH = int(os.environ.get("SDEDIT_LIVE_BATCH", "0")) or None  # None: 8 on a GPU, 1 on a CPU
MAX_VISITORS = 256  # visitors with a canvas waiting at once; more are told the server is busy


# ----- the model slot, shared with Generate --------------------------------------------------------------


class ModelGate:
    """Previews take turns on the model slot only when no edit wants it.

    `slot` is the `jobs.ModelSlots` the edit batcher and the sweep hold around each forward; `edits_waiting()`
    says whether edits are queued for it (`jobs.edits_waiting`: the batcher's pending requests). A preview
    waits (polling every `poll_s`) while an edit is queued or blocked on the slot, and takes a free slot only
    through `slot.acquire_unless_waited()`: an edit blocked on the slot counts as waiting until it has it, so
    a slot a preview releases goes to that edit, never to the next preview. An edit therefore waits at most
    for the one preview that is running.
    """

    def __init__(self, slot, edits_waiting: Callable[[], bool] = lambda: False, poll_s: float = 0.004):
        self.slot, self.edits_waiting, self.poll_s = slot, edits_waiting, poll_s
        self.yielded = 0  # turns given to an edit that was waiting
        # how long each preview held the model while an edit was waiting for it when it ended: the most that
        # preview can have delayed that edit (the last 1000)
        self.edit_delays_ms: collections.deque[float] = collections.deque(maxlen=1000)

    def _edit_wants_it(self) -> bool:
        return self.slot.waiting > 0 or bool(self.edits_waiting())

    @contextlib.contextmanager
    def turn(self, timeout_s: float = 120.0):
        deadline = time.monotonic() + timeout_s
        waited = False
        while self.edits_waiting() or not self.slot.acquire_unless_waited():
            waited = True
            if time.monotonic() > deadline:
                raise TimeoutError("the model stayed busy")
            # a forward holds the slot for 0.1 s or more: look less often then (fewer wake-ups next to it)
            time.sleep(self.poll_s * (4 if self.slot.busy else 1))
        if waited:
            self.yielded += 1
        held_from = time.perf_counter()
        try:
            yield
        finally:
            wanted = self._edit_wants_it()
            self.slot.release()
            if wanted:
                self.edit_delays_ms.append((time.perf_counter() - held_from) * 1000)


def default_gate() -> ModelGate:
    from .jobs import MODEL_SLOTS, edits_waiting

    return ModelGate(MODEL_SLOTS, edits_waiting)


# ----- requests, tickets and the newest-only service ------------------------------------------------------


@dataclass(frozen=True)
class PreviewSettings:
    """What the page's controls say about the preview (the model, t0, the seed, the mask's refinement)."""

    model: str | None = None
    strength: float = 0.5
    seed: int = -1
    mask_dilation: float = 0
    mask_feather: float = 0

    @property
    def key(self) -> tuple:
        """Previews may share a forward when these match."""
        return (self.model, round(float(self.strength), 4))


@dataclass
class PreviewRequest:
    visitor: str
    seq: int
    guide: Any  # PNG bytes or a PIL image: the canvas, flattened, at most PREVIEW_SIDE a side
    mask: Any = None  # PNG bytes / PIL / array (white = may change) or None: the whole canvas may change
    settings: PreviewSettings = field(default_factory=PreviewSettings)
    # PNG bytes / PIL / array or None: each pixel's own t0 as a fraction of t0 (white = the full t0, black = kept
    # exactly), the photo tab's Strength layer as Generate reads it (tabs/edit.photo_guide_and_strength)
    strength_map: Any = None

    @property
    def seed(self) -> int:
        """The page's seed, or (while it is random, -1) one fixed by the visitor's id."""
        s = self.settings.seed
        if s is not None and int(s) >= 0:
            return int(s)
        return int.from_bytes(hashlib.sha256(self.visitor.encode()).digest()[:4], "big") & 0x7FFFFFFF


@dataclass
class PreviewResult:
    seq: int
    jpeg: bytes | None = None
    stale: bool = False
    error: str | None = None
    compute_ms: float = 0.0  # prepare + forward + compositing + JPEG, this request's share
    wait_ms: float = 0.0  # from submit to the start of its compute
    batch: int = 1

    def as_dict(self) -> dict:
        out: dict[str, Any] = {"seq": self.seq, "stale": self.stale}
        if self.jpeg is not None:
            out["image"] = "data:image/jpeg;base64," + base64.b64encode(self.jpeg).decode("ascii")
        if self.error:
            out["error"] = self.error
        out["compute_ms"] = round(self.compute_ms, 1)
        out["wait_ms"] = round(self.wait_ms, 1)
        return out


class PreviewTicket:
    """One canvas waiting for, or in, a preview."""

    _ids = itertools.count()

    def __init__(self, request: PreviewRequest):
        self.id = next(self._ids)
        self.request = request
        self.submitted = time.monotonic()
        self._done = threading.Event()
        self._result: PreviewResult | None = None
        self._watchers: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def finish(self, result: PreviewResult) -> None:
        with self._lock:
            if self._done.is_set():
                return
            self._result = result
            self._done.set()
            watchers = list(self._watchers)
        for fn in watchers:
            fn()

    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> PreviewResult:
        if not self._done.wait(timeout):
            raise TimeoutError("the preview did not finish in time")
        assert self._result is not None
        return self._result

    async def wait_async(self, timeout: float | None = None) -> PreviewResult:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()

        def wake() -> None:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(None))

        with self._lock:
            if not self._done.is_set():
                self._watchers.append(wake)
        if not self._done.is_set():
            await asyncio.wait_for(fut, timeout)
        assert self._result is not None
        return self._result


Compute = Callable[[list[PreviewRequest]], Sequence[PreviewResult]]


class PreviewService:
    """Newest canvas only, per visitor; one worker thread; visitors take turns.

    compute: `compute(requests) -> one PreviewResult per request`, called on the worker with requests whose
        `settings.key` match (at most `max_batch`); it takes the model's turn itself (see `ModelGate`).
    """

    def __init__(self, compute: Compute, max_batch: int = 1, max_visitors: int = MAX_VISITORS, name: str = "live"):
        self.compute, self.max_batch, self.max_visitors, self.name = compute, max(1, max_batch), max_visitors, name
        self._waiting: OrderedDict[str, PreviewTicket] = OrderedDict()  # visitor -> its newest canvas
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.running: list[PreviewTicket] = []
        # submitted; computed (previews made); dropped (replaced while waiting: never computed); errors
        self.stats = {"submitted": 0, "computed": 0, "dropped": 0, "batches": 0, "errors": 0}

    def submit(self, request: PreviewRequest) -> PreviewTicket:
        ticket = PreviewTicket(request)
        replaced = None
        with self._cond:
            if self._closed:
                raise SDEditError("the server is shutting down")
            if request.visitor not in self._waiting and len(self._waiting) >= self.max_visitors:
                ticket.finish(PreviewResult(request.seq, error="the server is busy; the preview will follow"))
                return ticket
            self.stats["submitted"] += 1
            replaced = self._waiting.get(request.visitor)
            self._waiting[request.visitor] = ticket  # a replaced canvas keeps its visitor's place in line
            if replaced is not None:
                self.stats["dropped"] += 1
            self._start()
            self._cond.notify_all()
        if replaced is not None:
            replaced.finish(PreviewResult(replaced.request.seq, stale=True))
        return ticket

    def pending(self) -> int:
        with self._cond:
            return len(self._waiting)

    def close(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._closed = True
            left = list(self._waiting.values())
            self._waiting.clear()
            self._cond.notify_all()
        for t in left:
            t.finish(PreviewResult(t.request.seq, stale=True))
        if self._thread is not None:
            self._thread.join(timeout)

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._work, name=f"sdedit-{self.name}", daemon=True)
            self._thread.start()

    def _next(self) -> list[PreviewTicket] | None:
        with self._cond:
            while not self._waiting:
                if self._closed:
                    return None
                self._cond.wait()
            first = next(iter(self._waiting.values()))
            key = first.request.settings.key
            batch = [t for t in self._waiting.values() if t.request.settings.key == key][: self.max_batch]
            for t in batch:
                del self._waiting[t.request.visitor]
            self.running = batch
            return batch

    def _work(self) -> None:
        while True:
            batch = self._next()
            if batch is None:
                return
            started = time.monotonic()
            try:
                results = list(self.compute([t.request for t in batch]))
                if len(results) != len(batch):
                    raise RuntimeError(f"{len(results)} previews for {len(batch)} canvases")
            except Exception as exc:  # one bad preview must never stop the worker
                log.exception("preview failed")
                message = str(exc) if isinstance(exc, SDEditError) else f"the preview failed ({type(exc).__name__})"
                results = [PreviewResult(t.request.seq, error=message) for t in batch]
            with self._cond:
                self.running = []
                self.stats["batches"] += 1
                self.stats["computed"] += sum(r.error is None for r in results)
                self.stats["errors"] += sum(r.error is not None for r in results)
            for t, r in zip(batch, results, strict=True):
                r.wait_ms = (started - t.submitted) * 1000
                r.batch = len(batch)
                t.finish(r)
            if LOG_STATS and self is _SERVICE:
                log.info("live stats %s", json.dumps(live_stats()))


# ----- the real preview: the loaded pipeline, a few evaluations ---------------------------------------------


def preview_steps(strength: float, evaluations: int = PREVIEW_EVALUATIONS) -> int:
    """The full-schedule length N whose edit at `strength` runs exactly `evaluations` steps (one evaluation each
    for the preview's samplers) and starts nearest to t0: the last E of N trailing steps start at E / N, so N is
    near E / t0 (N = 3 for two steps at t0 = 0.5 would start at 0.67, N = 4 starts at 0.5)."""
    e = max(1, int(evaluations))
    t0 = min(1.0, max(1e-3, float(strength)))
    ok = [n for n in range(e, min(1000, 4 * round(e / t0) + 4) + 1) if steps_for(n, t0) == e]
    return min(ok, key=lambda n: (abs(e / n - t0), n)) if ok else max(e, round(e / t0))


def loaded_pipeline(name: str | None):
    """The pipeline for `name` if it is the one loaded (previews never load a model; the model box does)."""
    from . import models

    resolved = models.resolve_model(name)
    return models._PIPES.get(resolved)


_PREVIEW_PIPES: dict[tuple, Any] = {}
_PREVIEW_PIPES_LOCK = threading.Lock()
FAST_COPY_MAX_PARAMS = 50_000_000  # a copy of the weights for previews: only for small models


def preview_dtype(pipe):
    """The dtype of the network previews run on, on a CPU: bf16 where the CPU computes it natively (AVX512-BF16
    or AMX; measured 0.6x the fp32 time per evaluation of the embedded model, docs/performance.md), else the
    model's own (emulated bf16 is slower than fp32)."""
    import torch

    from ..lab.hardware import has_bf16_cpu

    return torch.bfloat16 if pipe.dtype == torch.float32 and has_bf16_cpu() else pipe.dtype


def preview_pipeline(pipe, dtype=None):
    """The pipeline previews run on. On a CPU: the same model with its weights copied into channels-last order
    and `dtype` (default `preview_dtype`: bf16 where native). Only the network runs in that dtype: the
    pipeline feeds it float32 samples cast on the way in and casts its output back to float32, so the
    sampler's arithmetic, the noise and the x0 clipping stay float32 (`SDEditPipeline.model_fn`). A copy, so
    Generate's numbers stay exactly the library's (bf16: 14 MB more memory for the embedded model). On a GPU,
    and for a model over `FAST_COPY_MAX_PARAMS`: `pipe` itself. A preview pipeline maps to itself."""
    import copy

    import torch

    if pipe.device.type != "cpu" or type(pipe).__name__ != "SDEditPipeline":
        return pipe
    if sum(p.numel() for p in pipe.unet.parameters()) > FAST_COPY_MAX_PARAMS:
        return pipe
    dtype = dtype or preview_dtype(pipe)
    with _PREVIEW_PIPES_LOCK:
        if any(fast is pipe for fast in _PREVIEW_PIPES.values()):
            return pipe
        key = (id(pipe.unet), dtype)
        fast = _PREVIEW_PIPES.get(key)
        if fast is None or fast.config is not pipe.config:
            # nn.Module.to, not diffusers' override: that one warns about fp32-kept modules even when there
            # are none, a line in every visitor's log that says nothing.
            unet = torch.nn.Module.to(copy.deepcopy(pipe.unet), memory_format=torch.channels_last, dtype=dtype)
            fast = type(pipe)(unet, pipe.scheduler, pipe.config, pipe.limits, space=pipe.space)
            fast.x0_limit = pipe.x0_limit  # the same clipping as the model it previews
            for k in [k for k in _PREVIEW_PIPES if k[0] != key[0]]:
                del _PREVIEW_PIPES[k]  # one model is served at a time
            _PREVIEW_PIPES[key] = fast
        return fast


def preview_sampler(pipe) -> str:
    return PREVIEW_SAMPLER if PREVIEW_SAMPLER in pipe.config.samplers else pipe.config.samplers[0]


def _jpeg(rgb: np.ndarray) -> bytes:
    """A preview for the page: JPEG (about 1 ms at 256 px, where a PNG of a textured result takes 10-12 ms)."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _image(obj, what: str) -> Image.Image:
    from .guides import to_pil

    if isinstance(obj, (bytes, bytearray)):
        from ..imaging import load_image

        image = load_image(bytes(obj), what, limits.APP_LIMITS.image)
    else:
        image = to_pil(obj, what)
    if max(image.size) > MAX_PREVIEW_SIDE:
        raise InputError(f"the preview's {what} is {image.width}x{image.height}; at most {MAX_PREVIEW_SIDE} a side")
    return image


def compute_previews(
    requests: list[PreviewRequest],
    gate: ModelGate | None = None,
    pipe=None,
    sampler: str | None = None,
    evaluations: int = PREVIEW_EVALUATIONS,
) -> list[PreviewResult]:
    """Previews of canvases with matching settings: each prepared alone, one forward for all, composited.

    A canvas with nothing to compute (blank, or a photo with nothing painted) answers with words instead.
    `pipe`, `sampler` and `evaluations` default to the loaded model and the measured preview settings (the
    benchmark passes its candidates).
    """
    from .guides import prepare_mask

    t_start = time.perf_counter()
    s = requests[0].settings
    if pipe is None:
        loaded = loaded_pipeline(s.model)
        if loaded is None:
            return [PreviewResult(r.seq, error="the model is still loading") for r in requests]
        pipe = preview_pipeline(loaded)
    n = len(requests)
    checked = pipe.check_inputs(
        strength=s.strength,
        num_inference_steps=preview_steps(float(s.strength), evaluations),
        sampler=sampler or preview_sampler(pipe),
        repeats=1,
        num_images=1,
        snr=0.0,
    )
    results: list[PreviewResult | None] = [None] * n
    prepared, rows = [], []
    for i, r in enumerate(requests):
        try:
            guide = _image(r.guide, "canvas").convert("RGB")
            mask = smap = None
            if r.mask is not None:
                mask = prepare_mask(
                    _image(r.mask, "mask"), guide.size, r.settings.mask_dilation, r.settings.mask_feather
                )
            if r.strength_map is not None:
                smap = _image(r.strength_map, "strength map")
            rgb = np.asarray(guide)
            if mask is None and (rgb == rgb.reshape(-1, 3)[0]).all():
                raise InputError("paint some strokes to see a preview")
            prepared.append(pipe.prepare(guide, mask, checked.fit, strength_map=smap))
            rows.append(i)
        except InputError as exc:
            msg = str(exc)
            if "empty" in msg and r.mask is not None:
                msg = "paint on the photo to see a preview"
            results[i] = PreviewResult(r.seq, error=msg)
        except SDEditError as exc:
            results[i] = PreviewResult(r.seq, error=str(exc))
    if prepared:
        seeds = [requests[i].seed for i in rows]
        with gate.turn() if gate is not None else contextlib.nullcontext():
            samples = pipe.run(prepared, checked, seeds=seeds)
        for g, i, canvas in zip(prepared, rows, samples.canvases, strict=True):
            rgb = composite(g.rgb, unplace(canvas, g.placement, g.rgb), g.mask)
            results[i] = PreviewResult(requests[i].seq, jpeg=_jpeg(rgb))
    ms = (time.perf_counter() - t_start) * 1000 / n
    for r in results:
        r.compute_ms = ms
    return results  # type: ignore[return-value]


_SERVICE: PreviewService | None = None
_SERVICE_LOCK = threading.Lock()


def preview_service() -> PreviewService:
    """The process's preview service (created on first use)."""
    global _SERVICE
    with _SERVICE_LOCK:
        if _SERVICE is None:
            gate = default_gate()
            batch = MAX_PREVIEW_BATCH
            if batch is None:
                import torch

                batch = 8 if torch.cuda.is_available() else 1
            _SERVICE = PreviewService(lambda reqs: compute_previews(reqs, gate), max_batch=batch)
            _SERVICE.gate = gate  # type: ignore[attr-defined]
        return _SERVICE


# ----- the page's calls -------------------------------------------------------------------------------------

_DATA_URL_PREFIXES = ("data:image/png;base64,", "data:image/webp;base64,", "data:image/jpeg;base64,")


def decode_data_url(value, what: str = "image", max_chars: int = MAX_PREVIEW_CHARS) -> bytes | None:
    """A `data:image/...;base64,` URL -> its bytes; None for None/"". Never a path, never a remote URL."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not value.startswith(_DATA_URL_PREFIXES):
        raise InputError(f"the {what} must be a PNG, WebP or JPEG data URL")
    if len(value) > max_chars:
        raise InputError(f"the {what} is too large ({len(value):,} characters; at most {max_chars:,})")
    try:
        return base64.b64decode(value.split(",", 1)[1], validate=True)
    except (binascii.Error, ValueError):
        raise InputError(f"the {what} is not valid base64") from None


def _number(value, default: float, lo: float, hi: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return default
    return min(hi, max(lo, v)) if np.isfinite(v) else default


def parse_settings(raw) -> PreviewSettings:
    raw = raw if isinstance(raw, dict) else {}
    model = raw.get("model")
    seed = raw.get("seed", -1)
    try:
        seed = int(float(seed)) if seed not in (None, "") else -1
    except (TypeError, ValueError):
        seed = -1
    return PreviewSettings(
        model=str(model)[:200] if model else None,
        strength=_number(raw.get("strength"), 0.5, 0.01, 1.0),
        seed=max(-1, min(seed, 2**31 - 1)),
        mask_dilation=_number(raw.get("mask_dilation"), 0, 0, 64),
        mask_feather=_number(raw.get("mask_feather"), 0, 0, 64),
    )


def parse_request(payload) -> PreviewRequest:
    """The page's call -> a request; anything malformed is an InputError (the reply says so, nothing runs)."""
    if not isinstance(payload, dict):
        raise InputError("a preview call takes one object")
    visitor = payload.get("visitor")
    if not isinstance(visitor, str) or not 8 <= len(visitor) <= 64:
        raise InputError("a preview call needs the page's visitor id")
    try:
        seq = int(payload.get("seq", 0))
    except (TypeError, ValueError):
        seq = 0
    guide = decode_data_url(payload.get("guide"), "canvas")
    if guide is None:
        raise InputError("a preview call needs the canvas")
    return PreviewRequest(
        visitor,
        seq,
        guide,
        decode_data_url(payload.get("mask"), "mask"),
        parse_settings(payload.get("settings")),
        decode_data_url(payload.get("strength_map"), "strength map"),
    )


async def preview(payload) -> dict:
    """The canvas's server function: its newest picture -> a preview (or `stale`, or words on an error)."""
    seq = payload.get("seq", 0) if isinstance(payload, dict) else 0
    try:
        request = parse_request(payload)
        ticket = preview_service().submit(request)
    except SDEditError as exc:
        return PreviewResult(seq if isinstance(seq, int) else 0, error=str(exc)).as_dict()
    return (await ticket.wait_async(timeout=120)).as_dict()


# ----- on or off by default: a measured preview time per model ------------------------------------------------


@dataclass
class LivePolicy:
    allowed: bool
    reason: str
    ms_per_evaluation: float | None = None
    preview_ms: float | None = None
    device: str = "cpu"
    measured_at: float = field(default_factory=time.monotonic)

    def as_dict(self) -> dict:
        return {
            "allowed": self.allowed,
            "reason": self.reason,
            "ms_per_evaluation": None if self.ms_per_evaluation is None else round(self.ms_per_evaluation, 1),
            "preview_ms": None if self.preview_ms is None else round(self.preview_ms, 1),
            "device": self.device,
            "side": PREVIEW_SIDE,
        }


_POLICIES: dict[tuple, LivePolicy] = {}
_POLICY_LOCK = threading.Lock()


def measure_evaluation_ms(pipe, tries: int = 2) -> float:
    """One network evaluation of `pipe` at batch 1, in ms (the best of a few after a warm-up call)."""
    import torch

    from .jobs import MODEL_SLOTS

    r = pipe.config.resolution
    x = torch.zeros(1, pipe.unet.config.in_channels, r, r, device=pipe.device)
    level = torch.tensor([pipe.num_train_timesteps // 2], device=pipe.device)
    call = pipe.model_fn()
    best = float("inf")
    with MODEL_SLOTS, torch.inference_mode():
        for i in range(tries + 1):
            t0 = time.perf_counter()
            call(x, level)
            if pipe.device.type == "cuda":
                torch.cuda.synchronize(pipe.device)
            ms = (time.perf_counter() - t0) * 1000
            if i:
                best = min(best, ms)
            elif ms > 2 * LIVE_BUDGET_MS:  # one evaluation (cold) is over the whole budget twice: clearly off
                return ms
    return best


def live_policy(name: str | None) -> LivePolicy:
    """Whether Live starts on for model `name`, and why not: measured once per loaded model."""
    from .models import get_pipeline

    if limits.ZERO_GPU:
        return LivePolicy(False, "Live is off on ZeroGPU: each preview would wait for a GPU of its own.")
    pipe = get_pipeline(name)
    key = (pipe.config.name, id(pipe.unet))
    with _POLICY_LOCK:
        known = _POLICIES.get(key)
        if known is not None and (known.allowed or time.monotonic() - known.measured_at < REMEASURE_OFF_S):
            return known
    ms = measure_evaluation_ms(preview_pipeline(pipe))
    evals = PREVIEW_EVALUATIONS
    total = ms * evals + 10.0  # + decoding, preparing, compositing and the JPEG (a few ms)
    device = pipe.device.type
    if device == "cuda" or total <= LIVE_BUDGET_MS:
        policy = LivePolicy(True, "", ms, total, device)
    else:
        policy = LivePolicy(
            False,
            f"Live is off for this model here: a preview would take about {total / 1000:.1f} s on this "
            f"{device.upper()} ({evals} network evaluations of {ms:,.0f} ms at {pipe.config.resolution} px), "
            "too slow to follow the brush. Generate still works.",
            ms,
            total,
            device,
        )
    log.info(
        "live preview for %s: %s (%.0f ms per evaluation)", pipe.config.name, "on" if policy.allowed else "off", ms
    )
    with _POLICY_LOCK:
        _POLICIES[key] = policy
    return policy


def policy(payload) -> dict:
    """The canvas's server function: may Live be on for this model (and why not)?"""
    name = payload.get("model") if isinstance(payload, dict) else None
    try:
        return live_policy(str(name)[:200] if name else None).as_dict()
    except SDEditError as exc:
        return LivePolicy(False, f"Live is off: {exc}").as_dict()


def live_stats() -> dict:
    """The preview service's counters, and how long previews held the model while an edit waited for it."""
    s = preview_service()
    gate = getattr(s, "gate", None)
    delays = list(gate.edit_delays_ms) if gate is not None else []
    return {
        **s.stats,
        "waiting": s.pending(),
        "turns_given_to_edits": gate.yielded if gate is not None else 0,
        "edits_behind_a_preview": len(delays),
        "edit_delay_max_ms": round(max(delays), 1) if delays else 0.0,
        "edit_delay_p50_ms": round(float(np.median(delays)), 1) if delays else 0.0,
    }


LOG_STATS = os.environ.get("SDEDIT_LIVE_STATS_LOG", "").lower() in ("1", "true", "yes")  # benchmarks/live_load


def reset_service() -> None:
    """Forget the preview service (tests)."""
    global _SERVICE
    with _SERVICE_LOCK:
        if _SERVICE is not None:
            _SERVICE.close()
        _SERVICE = None


__all__ = [
    "LivePolicy",
    "ModelGate",
    "PreviewRequest",
    "PreviewResult",
    "PreviewService",
    "PreviewSettings",
    "compute_previews",
    "live_policy",
    "policy",
    "preview",
    "preview_service",
    "preview_steps",
]
