"""Live preview: every finished stroke becomes a quick, stable SDEdit preview beside the canvas.

The canvas (sdedit.studio.canvas) calls two functions here straight from the page (gr.HTML server functions: no
queue, no debounce): `preview` on pointer-up, and `policy` when the model changes. This module reads their calls
(anything malformed is answered in words, never an HTTP error) and runs the previews on a serving queue:

* **Newest only.** Each visitor has at most one canvas waiting. A canvas that arrives while the visitor's
  previous one waits replaces it (the replaced call answers `stale` at once); the one already running
  finishes. So a burst of strokes computes the running canvas and the last one, never the ones in between
  (`PreviewService`: a `queue.ServingQueue` with its newest-only policy). Visitors take turns in the order they
  first had a canvas waiting.
* **Generate first.** Previews use the model slots of the edit batcher and the sweep (`jobs.MODEL_SLOTS`) through
  `ModelSlots.turn`: a preview takes a slot only while no edit is queued or waiting for it, so an edit waits at
  most for the one preview that is running.
* **Fast and stable**: `sdedit.studio.previews` (the compute).

Whether Live is on by default is decided per model from a measured preview time (`live_policy`): on for
every model on a GPU, and on a CPU only where a preview takes at most `LIVE_BUDGET_MS`. A model whose config says
Live is not worth it on a CPU (`live_on_cpu: false`: Stable Diffusion, measured in benchmarks/results/latent-cpu.json)
is off there without a measurement, and the reason names that measurement (`costs.live_off_reason`).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..configs import traits
from ..errors import BusyError, InputError, SDEditError
from ..latent import MAX_GUIDANCE, check_text
from ..noise import MAX_SEED
from . import costs, limits
from .guard import checked_number
from .previews import (
    PREVIEW_EVALUATIONS,
    PREVIEW_SIDE,
    PreviewRequest,
    PreviewResult,
    PreviewSettings,
    compute_previews,
    preview_batch,
    preview_pipeline,
)
from .queue import Batch, ServingQueue, Ticket

log = logging.getLogger("sdedit.live")

# One image of a preview call, as a data URL: a 256 px PNG is at most ~350,000 characters even for noise. With
# the visitors below, what waiting canvases can hold is bounded (256 x 2 x 0.45 MB decoded, in the worst case).
MAX_PREVIEW_CHARS = 600_000
MAX_VISITORS = 256  # visitors with a canvas waiting at once; more are told the server is busy
MAX_SEQ = 2**53 - 1  # the page counts its calls in a JavaScript number: whole up to here
PREVIEW_TIMEOUT_S = 120.0
# Slower than this per preview (compute alone) and Live starts off, with the reason on the switch: a picture
# that comes a second or more after the stroke no longer follows the brush. The embedded model takes ~0.1-0.3 s
# on 2 busy CPU cores, a 256 px model ~6 s, so the line falls far from both (a brief load spike at the
# measurement cannot turn the embedded model off for good either: an "off" is measured again after a minute).
LIVE_BUDGET_MS = float(os.environ.get("SDEDIT_LIVE_BUDGET_MS", "1000"))
REMEASURE_OFF_S = 60.0
LOG_STATS = os.environ.get("SDEDIT_LIVE_STATS_LOG", "").lower() in ("1", "true", "yes")  # benchmarks/live_load


# ----- the page's calls, read ------------------------------------------------------------------------------

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


def parse_settings(raw) -> PreviewSettings:
    """The page's settings (the canvas's `live` prop). A missing one is its default; one out of range, not a
    number or not finite is an InputError that names it (the page's controls never send one)."""
    raw = raw if isinstance(raw, dict) else {}
    model = raw.get("model")
    if model is not None and not isinstance(model, str):
        raise InputError(f"the model must be a model's name, not {type(model).__name__}")

    def given(name: str, default, *check):
        value = raw.get(name)
        return default if value is None or value == "" else checked_number(value, *check)

    return PreviewSettings(
        model=model[:200] if model else None,
        strength=given("strength", 0.5, "strength (t0)", 0, 1, False, True),
        seed=given("seed", -1, "seed", -1, MAX_SEED, True),
        mask_dilation=given("mask_dilation", 0, "mask dilation", 0, 64),
        mask_feather=given("mask_feather", 0, "mask feather", 0, 64),
        prompt=text_setting(raw, "prompt"),
        negative_prompt=text_setting(raw, "negative_prompt"),
        guidance_scale=given("guidance_scale", None, "guidance scale", 1, MAX_GUIDANCE),
    )


def text_setting(raw: dict, name: str) -> str | None:
    """A prompt of the page's settings: None when missing, else `latent.check_text`'s (whether the model reads that
    many tokens is the pipeline's check, in the preview's answer)."""
    value = raw.get(name)
    return None if value is None else check_text(value, name.replace("_", " "))


def parse_seq(payload) -> int:
    """The call's sequence number, which the answer carries back (0 when the call has none)."""
    seq = payload.get("seq") if isinstance(payload, dict) else None
    return 0 if seq is None else checked_number(seq, "seq", 0, MAX_SEQ, whole=True)


def parse_request(payload) -> PreviewRequest:
    """The page's call -> a request; anything malformed is an InputError (the reply says so, nothing runs)."""
    if not isinstance(payload, dict):
        raise InputError("a preview call takes one object")
    visitor = payload.get("visitor")
    if not isinstance(visitor, str) or not 8 <= len(visitor) <= 64:
        raise InputError("a preview call needs the page's visitor id")
    seq = parse_seq(payload)
    guide = decode_data_url(payload.get("guide"), "canvas")
    if guide is None:
        raise InputError("a preview call needs the canvas")
    keep_details = payload.get("keep_details", False)
    if not isinstance(keep_details, bool):
        raise InputError(f"keep_details must be true or false, not {keep_details!r}"[:200])
    return PreviewRequest(
        visitor,
        seq,
        guide,
        decode_data_url(payload.get("mask"), "mask"),
        parse_settings(payload.get("settings")),
        decode_data_url(payload.get("strength_map"), "strength map"),
        keep_details,
    )


# ----- the service: newest canvas only, per visitor ------------------------------------------------------------

Compute = Callable[[list[PreviewRequest]], Sequence[PreviewResult]]


class PreviewService:
    """Newest canvas only, per visitor; one worker thread; visitors take turns (a `ServingQueue` whose owners are
    the visitors).

    compute: `compute(requests) -> one PreviewResult per request`, called on the worker with requests whose
        `settings.key` match (at most `max_batch`); it takes the model's turn itself (`ModelSlots.turn`).
    """

    def __init__(self, compute: Compute, max_batch: int = 1, max_visitors: int = MAX_VISITORS, name: str = "live"):
        self.compute = compute
        self.queue = ServingQueue(
            self._run,
            max_items=max_batch,
            max_pending=max_visitors,
            newest_only=lambda t: PreviewResult(t.payload.seq, stale=True),
            name=f"sdedit-{name}",
        )
        self.after_batch: Callable[[], None] | None = None
        self._counts = {"computed": 0, "errors": 0}  # previews made; previews answered with words

    @property
    def stats(self) -> dict:
        """The queue's counters (submitted, dropped: replaced while waiting, never computed; batches...) and the
        previews computed and answered with words."""
        return {**self.queue.stats, **self._counts}

    def submit(self, request: PreviewRequest) -> Ticket:
        try:
            return self.queue.submit(request.settings.key, request, owner=request.visitor)
        except BusyError as exc:
            busy = Ticket(request.settings.key, request, owner=request.visitor)
            words = str(exc) if self.queue.closed else "the server is busy; the preview will follow"
            busy.finish(PreviewResult(request.seq, error=words))
            return busy

    def pending(self) -> int:
        return self.queue.pending()

    def close(self, timeout: float = 5.0) -> None:
        self.queue.close(timeout)

    def _run(self, batch: Batch) -> list[PreviewResult]:
        try:
            results = list(self.compute([t.payload for t in batch]))
            if len(results) != len(batch):
                raise RuntimeError(f"{len(results)} previews for {len(batch)} canvases")
        except Exception as exc:  # one bad preview must never stop the worker
            log.exception("preview failed")
            message = str(exc) if isinstance(exc, SDEditError) else f"the preview failed ({type(exc).__name__})"
            results = [PreviewResult(t.payload.seq, error=message) for t in batch]
        for t, r in zip(batch, results, strict=True):
            r.wait_ms += (t.started - t.submitted) * 1000
            r.batch = len(batch)
        self._counts["computed"] += sum(r.error is None for r in results)
        self._counts["errors"] += sum(r.error is not None for r in results)
        if self.after_batch is not None:
            self.after_batch()
        return results


_SERVICE: PreviewService | None = None
_SERVICE_LOCK = threading.Lock()


def preview_service() -> PreviewService:
    """The process's preview service (created on first use), on the model slots Generate uses."""
    global _SERVICE
    with _SERVICE_LOCK:
        if _SERVICE is None:
            from .jobs import MODEL_SLOTS

            _SERVICE = PreviewService(lambda reqs: compute_previews(reqs, MODEL_SLOTS), max_batch=preview_batch())
            if LOG_STATS:
                _SERVICE.after_batch = lambda: log.info("live stats %s", json.dumps(live_stats()))
        return _SERVICE


async def preview(payload) -> dict:
    """The canvas's server function: its newest picture -> a preview (or `stale`, or words on an error)."""
    try:
        request = parse_request(payload)
        ticket = preview_service().submit(request)
    except SDEditError as exc:
        try:
            seq = parse_seq(payload)
        except SDEditError:
            seq = 0  # the answer carries a seq the page can read, never the one it could not
        return PreviewResult(seq, error=str(exc)).as_dict()
    try:
        return (await ticket.wait_async(PREVIEW_TIMEOUT_S)).as_dict()
    except TimeoutError:
        return PreviewResult(request.seq, error="the preview took too long; the next stroke will try again").as_dict()
    except SDEditError as exc:
        return PreviewResult(request.seq, error=str(exc)).as_dict()


def live_stats() -> dict:
    """The preview service's counters, and how long previews held the model while an edit waited for it."""
    from .jobs import MODEL_SLOTS

    s = preview_service()
    delays = list(MODEL_SLOTS.edit_delays_ms)
    return {
        **s.stats,
        "waiting": s.pending(),
        "turns_given_to_edits": MODEL_SLOTS.yielded,
        "edits_behind_a_preview": len(delays),
        "edit_delay_max_ms": round(max(delays), 1) if delays else 0.0,
        "edit_delay_p50_ms": round(float(np.median(delays)), 1) if delays else 0.0,
    }


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
    side = pipe.space.encode_mask(np.ones((r, r), np.float32)).shape[-1]  # the model's grid: pixels or latents
    x = torch.zeros(1, pipe.unet.config.in_channels, side, side, device=pipe.device)
    level = torch.tensor([pipe.num_train_timesteps // 2], device=pipe.device)
    # a text model's call at its default settings (classifier-free guidance where it has it: two in one)
    call = pipe.model_fn(pipe.conditioning(pipe.check_inputs(), 1)) if pipe.text_encoder else pipe.model_fn()
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
    device = pipe.device.type
    if not traits(pipe.config, device).live:  # measured once, offline: far too slow here (configs, live_on_cpu)
        return LivePolicy(False, costs.live_off_reason(pipe.config), device=device)
    key = (pipe.config.name, id(pipe.unet))
    with _POLICY_LOCK:
        known = _POLICIES.get(key)
        if known is not None and (known.allowed or time.monotonic() - known.measured_at < REMEASURE_OFF_S):
            return known
    ms = measure_evaluation_ms(preview_pipeline(pipe))
    evals = PREVIEW_EVALUATIONS
    total = ms * evals + 10.0  # + decoding, preparing, compositing and the JPEG (a few ms)
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
    """The canvas's server function: may Live be on for this model (and why not)? Always an answer in words."""
    name = payload.get("model") if isinstance(payload, dict) else None
    try:
        if name is not None and not isinstance(name, str):
            raise InputError(f"the model must be a model's name, not {type(name).__name__}")
        return live_policy(name[:200] if name else None).as_dict()
    except SDEditError as exc:
        return LivePolicy(False, f"Live is off: {exc}").as_dict()
    except Exception as exc:  # a failed measurement turns Live off for now; the page keeps working
        log.exception("the live policy could not be decided")
        return LivePolicy(False, f"Live is off: the preview could not be timed ({type(exc).__name__}).").as_dict()


__all__ = [
    "LivePolicy",
    "PreviewRequest",
    "PreviewResult",
    "PreviewService",
    "PreviewSettings",
    "compute_previews",
    "live_policy",
    "policy",
    "preview",
    "preview_service",
]
