"""Live preview: the newest-only rule, Generate's priority on the model, stable previews, the canvas's
value, and whether Live starts on. The browser side is tests/browser/test_live_browser.py."""

from __future__ import annotations

import asyncio
import base64
import inspect
import io
import json
import threading
import time
import types
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from sdedit.configs import default_config
from sdedit.errors import InputError
from sdedit.samplers import steps_for
from sdedit.studio import canvas, live, models, previews, results
from sdedit.studio.live import PreviewRequest, PreviewResult, PreviewService, PreviewSettings
from sdedit.studio.slots import ModelSlots


def _fake_compute(log: list, seconds: float = 0.05):
    def compute(requests):
        time.sleep(seconds)
        log.extend(r.seq for r in requests)
        return [PreviewResult(r.seq, jpeg=b"x") for r in requests]

    return compute


def _request(seq: int, visitor: str = "visitor-a", **settings) -> PreviewRequest:
    return PreviewRequest(visitor, seq, b"png", None, PreviewSettings(**settings))


# ----- the newest-only rule ---------------------------------------------------------------------------------


def test_a_burst_from_one_visitor_computes_the_last_canvas_and_at_most_one_more():
    computed: list[int] = []
    service = PreviewService(_fake_compute(computed, 0.1))
    try:
        tickets = [service.submit(_request(seq)) for seq in range(1, 21)]  # 20 strokes in a few ms
        results = [t.wait(10) for t in tickets]
    finally:
        service.close()
    assert computed[-1] == 20, "the newest canvas is always computed"
    assert len(computed) <= 2, f"computed {computed}: the last and at most one more"
    stale = [r.seq for r in results if r.stale]
    assert sorted(stale + computed) == list(range(1, 21)), "every other canvas is answered as stale, at once"
    assert service.stats["dropped"] == len(stale) and service.stats["computed"] == len(computed)


def test_a_canvas_sent_while_a_preview_runs_replaces_the_waiting_one():
    computed: list[int] = []
    service = PreviewService(_fake_compute(computed, 0.2))
    try:
        first = service.submit(_request(1))
        time.sleep(0.05)  # 1 is running now
        second = service.submit(_request(2))
        third = service.submit(_request(3))
        assert second.wait(1).stale, "the waiting canvas is dropped as soon as a newer one comes"
        assert not first.wait(2).stale and not third.wait(2).stale
    finally:
        service.close()
    assert computed == [1, 3]


def test_visitors_take_turns_a_busy_painter_does_not_starve_the_others():
    computed: list[tuple[str, int]] = []

    def compute(requests):
        time.sleep(0.03)
        computed.extend((r.visitor, r.seq) for r in requests)
        return [PreviewResult(r.seq) for r in requests]

    service = PreviewService(compute)
    try:
        for seq in range(1, 6):  # a waits in line, and keeps replacing its canvas
            service.submit(_request(seq, "visitor-a"))
        b = service.submit(_request(100, "visitor-b"))
        for seq in range(6, 30):
            service.submit(_request(seq, "visitor-a"))
            time.sleep(0.005)
        assert not b.wait(2).stale
        service.submit(_request(30, "visitor-a")).wait(2)
    finally:
        service.close()
    order = [v for v, _ in computed]
    assert order.index("visitor-b") <= 2, f"b waited for more than one turn of a: {computed}"


def test_waiting_visitors_are_bounded():
    computed: list[int] = []
    service = PreviewService(_fake_compute(computed, 0.2), max_visitors=2)
    try:
        service.submit(_request(1, "visitor-a"))
        time.sleep(0.05)  # a runs; b and c wait; d finds the line full
        waiting = [service.submit(_request(1, f"visitor-{v}")) for v in "bc"]
        full = service.submit(_request(1, "visitor-d")).wait(1)
        assert full.error and "busy" in full.error
        assert all(not t.wait(2).error for t in waiting)
    finally:
        service.close()


def test_previews_with_matching_settings_may_share_a_forward():
    batches: list[list[str]] = []

    def compute(requests):
        time.sleep(0.05)
        batches.append([r.visitor for r in requests])
        return [PreviewResult(r.seq) for r in requests]

    service = PreviewService(compute, max_batch=4)
    try:
        tickets = [service.submit(_request(1, f"visitor-{i}", strength=0.5)) for i in range(5)]
        tickets.append(service.submit(_request(1, "visitor-other", strength=0.7)))
        for t in tickets:
            t.wait(5)
    finally:
        service.close()
    assert max(len(b) for b in batches) <= 4
    assert ["visitor-other"] in batches, "another t0 never shares a forward"


# ----- Generate first: the model slot --------------------------------------------------------------------------


def test_an_edit_waits_at_most_for_the_preview_that_is_running():
    """Previews run back to back (eight painters); an edit that arrives at any moment waits at most one preview."""
    slot = ModelSlots(1, poll_s=0.002)
    preview_s = 0.06
    stop = threading.Event()

    def painter():
        while not stop.is_set():
            with slot.turn():
                time.sleep(preview_s)

    threads = [threading.Thread(target=painter, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    waits = []
    try:
        rng = np.random.default_rng(0)
        for _ in range(12):
            time.sleep(float(rng.uniform(0.0, 0.08)))
            t0 = time.perf_counter()
            with slot:  # what the edit batcher does around a forward
                waits.append(time.perf_counter() - t0)
                time.sleep(0.02)
    finally:
        stop.set()
        for t in threads:
            t.join(2)
    assert max(waits) < preview_s + 0.04, f"an edit waited {max(waits):.3f} s behind previews of {preview_s} s"
    assert slot.edit_delays_ms and max(slot.edit_delays_ms) < (preview_s + 0.04) * 1000


def test_a_preview_never_takes_the_slot_while_an_edit_waits_for_it():
    """An edit blocked on the slot behind a running preview gets it next, even with a preview polling every
    millisecond; the slot's public `waiting` count is what previews yield to (no semaphore internals)."""
    slot = ModelSlots(1, poll_s=0.001)
    order: list[str] = []
    running = threading.Event()

    def first_preview():
        with slot.turn():
            order.append("preview 1")
            running.set()
            time.sleep(0.15)

    def edit():
        with slot:
            order.append("edit")
            time.sleep(0.05)

    def second_preview():
        with slot.turn():
            order.append("preview 2")

    threads = [threading.Thread(target=first_preview, daemon=True)]
    threads[0].start()
    assert running.wait(2)
    threads.append(threading.Thread(target=edit, daemon=True))
    threads[1].start()
    deadline = time.monotonic() + 2
    while slot.waiting == 0 and time.monotonic() < deadline:
        time.sleep(0.001)
    assert slot.waiting == 1, "the edit is blocked on the slot, and counted"
    threads.append(threading.Thread(target=second_preview, daemon=True))
    threads[2].start()  # polls while preview 1 runs, and when it releases the slot to the edit
    for t in threads:
        t.join(3)
    assert order == ["preview 1", "edit", "preview 2"], order
    assert slot.waiting == 0 and not slot.busy
    assert slot.yielded == 1 and len(slot.edit_delays_ms) == 1, "preview 1 is the one that delayed the edit"


def test_previews_wait_while_an_edit_is_queued():
    queued = threading.Event()
    slot = ModelSlots(1, queued=queued.is_set, poll_s=0.002)
    queued.set()
    started = []

    def preview():
        with slot.turn():
            started.append(time.perf_counter())

    t = threading.Thread(target=preview, daemon=True)
    t.start()
    time.sleep(0.1)
    assert not started, "a preview must not start while an edit is queued"
    released = time.perf_counter()
    queued.clear()
    t.join(2)
    assert started and started[0] >= released


def test_the_model_slots_count_blocked_threads_and_behave_as_a_semaphore():
    slot = ModelSlots(1)
    assert slot.acquire(blocking=False) and slot.busy and not slot.acquire(blocking=False)
    assert not slot.acquire(timeout=0.02) and slot.waiting == 0, "a timed-out wait stops counting"
    assert not slot.acquire_unless_waited()
    slot.release()
    assert not slot.busy and slot.acquire_unless_waited()
    slot.release()
    with pytest.raises(ValueError):
        slot.release()  # bounded, like the semaphore it replaces
    from sdedit.studio import jobs

    assert isinstance(jobs.MODEL_SLOTS, ModelSlots)
    assert jobs.MODEL_SLOTS.queued is jobs.edits_waiting, "previews wait while edits are queued for the slots"


# ----- the real preview on the embedded model ---------------------------------------------------------------


def test_preview_steps_run_exactly_the_evaluations_and_start_near_t0():
    for t0 in (0.2, 0.3, 0.5, 0.6, 0.8, 1.0):
        for e in (1, 2, 3, 4):
            n = previews.preview_steps(t0, e)
            assert steps_for(n, t0) == e
            assert abs(e / n - t0) <= 0.2, (t0, e, n)
    assert previews.preview_steps(0.5, 2) == 4


def _stroke_canvas(extra: bool = False) -> bytes:
    image = Image.new("RGB", (256, 256), "white")
    draw = ImageDraw.Draw(image)
    draw.ellipse((50, 50, 200, 200), fill=(255, 200, 61))
    draw.line((80, 150, 176, 150), fill=(33, 33, 33), width=10)
    if extra:  # a small stroke: an eye
        draw.ellipse((85, 85, 115, 115), fill=(33, 33, 33))
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def _pixels(result: PreviewResult) -> np.ndarray:
    assert result.error is None, result.error
    return np.asarray(Image.open(io.BytesIO(result.jpeg)).convert("RGB")).astype(np.int16)


@pytest.fixture(scope="module")
def pipe():
    return models.get_pipeline(None)


def test_the_same_canvas_gives_the_same_preview_and_a_small_stroke_changes_it_mostly_there(pipe):
    settings = PreviewSettings(pipe.config.name, 0.5, -1)

    def one(visitor: str, seq: int, extra: bool = False) -> PreviewResult:
        request = PreviewRequest(visitor, seq, _stroke_canvas(extra), None, settings)
        return previews.compute_previews([request], pipe=pipe)[0]

    a, again = one("visitor-one", 1), one("visitor-one", 2)
    assert a.jpeg == again.jpeg, "same canvas, same visitor and seed: the same preview"
    other = one("visitor-two", 1)
    assert other.jpeg != a.jpeg, "with a random seed each visitor has noise of its own"
    b = one("visitor-one", 3, True)
    diff = np.abs(_pixels(a) - _pixels(b)).sum(-1)
    near = np.zeros(diff.shape, bool)
    near[55:145, 55:145] = True  # the stroke and a margin of 30 px around it (measured: 44 inside, 5 outside)
    assert diff[near].mean() > 4 * diff[~near].mean(), "a small stroke changes the picture mostly where it was made"


def test_previews_run_on_a_fast_copy_and_generate_keeps_its_weights(pipe):
    fast = previews.preview_pipeline(pipe)
    assert fast is not pipe and fast.unet is not pipe.unet and previews.preview_pipeline(pipe) is fast
    assert previews.preview_pipeline(fast) is fast, "a preview pipeline maps to itself"
    conv = next(p for p in fast.unet.parameters() if p.ndim == 4)
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert fast.dtype == previews.preview_dtype(pipe) and fast.x0_limit == pipe.x0_limit
    generate_conv = next(p for p in pipe.unet.parameters() if p.ndim == 4)
    assert generate_conv.is_contiguous() and pipe.dtype == torch.float32, "Generate's weights untouched"
    request = PreviewRequest("visitor-one", 1, _stroke_canvas(), None, PreviewSettings(pipe.config.name, 0.5, 7))
    (a,) = previews.compute_previews([request], pipe=pipe)
    (b,) = previews.compute_previews([request], pipe=previews.preview_pipeline(pipe, torch.float32))
    assert np.abs(_pixels(a) - _pixels(b)).mean() < 0.5, "channels-last alone: the same preview, up to rounding"


def test_bf16_is_used_only_where_the_cpu_has_it_natively(pipe, monkeypatch):
    from sdedit import accel

    monkeypatch.setattr(accel, "has_bf16_cpu", lambda: False)
    assert previews.preview_dtype(pipe) == torch.float32 and previews.preview_pipeline(pipe).dtype == torch.float32
    monkeypatch.setattr(accel, "has_bf16_cpu", lambda: True)
    assert previews.preview_dtype(pipe) == torch.bfloat16 and previews.preview_pipeline(pipe).dtype == torch.bfloat16
    half = types.SimpleNamespace(dtype=torch.float16)
    assert previews.preview_dtype(half) == torch.float16, "a model that is not float32 keeps its own dtype"
    gpu = types.SimpleNamespace(device=torch.device("cuda"))
    assert previews.preview_pipeline(gpu) is gpu, "on a GPU previews run on the model as it is"


def test_the_bf16_network_gives_nearly_the_fp32_preview_and_the_sampler_stays_fp32(pipe):
    """Only the network runs in bf16 (the samples, noise and solver stay float32). Measured on the four stroke
    examples at t0 0.3 / 0.5 / 0.8 and seeds 0-2 (36 previews, 256 px JPEG): mean |bf16 - fp32| 0.4-1.7 of 255,
    99th percentile at most 7; two seeds of the same canvas differ by 8-14 at t0 = 0.5 and 25-33 at 0.8 (fp32).
    The bound leaves room for other CPUs' bf16 kernels; a preview past it would stop promising Generate's picture
    (a fifth of a reseed at most)."""
    b16 = previews.preview_pipeline(pipe, torch.bfloat16)
    f32 = previews.preview_pipeline(pipe, torch.float32)
    assert b16.dtype == torch.bfloat16 and f32.dtype == torch.float32
    seen = []
    real = b16.unet.forward

    def spy(x, t, *args, **kwargs):
        seen.append(x.dtype)
        return real(x, t, *args, **kwargs)

    b16.unet.forward = spy
    try:
        guide = b16.prepare(Image.open("examples/strokes-heart.png"), None)
        checked = b16.check_inputs(strength=0.5, num_inference_steps=4, sampler="dpmpp")
        samples = b16.run([guide], checked, seeds=[0])
    finally:
        del b16.unet.forward
    assert seen == [torch.bfloat16, torch.bfloat16], "two evaluations, the network fed bf16"
    assert samples.x.dtype == torch.float32, "the sampler's arithmetic is float32"
    for name in ("strokes-heart.png", "strokes-tree.png"):
        buf = io.BytesIO()
        Image.open(f"examples/{name}").convert("RGB").resize((256, 256)).save(buf, "PNG")
        for strength, seed in ((0.5, 0), (0.8, 1)):
            request = PreviewRequest("visitor-one", 1, buf.getvalue(), None, PreviewSettings(None, strength, seed))
            a = _pixels(previews.compute_previews([request], pipe=f32)[0])
            b = _pixels(previews.compute_previews([request], pipe=b16)[0])
            other = PreviewRequest("visitor-one", 1, buf.getvalue(), None, PreviewSettings(None, strength, seed + 9))
            c = _pixels(previews.compute_previews([other], pipe=f32)[0])
            d = np.abs(a - b)
            assert d.mean() < 2.5 and np.percentile(d, 99) <= 10, (name, strength, d.mean(), np.percentile(d, 99))
            assert d.mean() < np.abs(a - c).mean() / 5, "far closer than another seed's preview"


def test_a_masked_preview_keeps_the_photo_outside_the_strokes(pipe):
    photo = Image.open("examples/photo-cat.png").convert("RGB")
    mask = Image.new("L", photo.size, 0)
    ImageDraw.Draw(mask).rectangle((90, 140, 170, 170), fill=255)
    buf = io.BytesIO()
    photo.save(buf, "PNG")
    settings = PreviewSettings(pipe.config.name, 0.6, 3, 0, 0)
    (res,) = previews.compute_previews([PreviewRequest("visitor-one", 1, buf.getvalue(), mask, settings)], pipe=pipe)
    out, ref = _pixels(res), np.asarray(photo).astype(np.int16)
    m = np.asarray(mask) > 0
    assert np.abs(out - ref)[~m].mean() < 3, "outside the mask the preview is the photo (up to JPEG)"
    assert np.abs(out - ref)[m].mean() > 5
    empty = previews.compute_previews(
        [PreviewRequest("visitor-one", 2, buf.getvalue(), Image.new("L", photo.size, 0), settings)], pipe=pipe
    )[0]
    assert empty.error and "paint" in empty.error and empty.jpeg is None


def test_a_preview_honours_the_strength_layer_pixels_at_zero_are_kept(pipe):
    """The photo tab's Strength layer reaches the preview as Generate's strength map: where it is 0 the preview
    is the guide (strokes included), as in the Generate result; where it is 1 the strokes change."""
    photo = Image.open("examples/photo-cat.png").convert("RGB")
    painted = photo.copy()
    ImageDraw.Draw(painted).rectangle((60, 130, 200, 180), fill=(21, 101, 192))
    mask = Image.new("L", photo.size, 0)
    ImageDraw.Draw(mask).rectangle((60, 130, 200, 180), fill=255)
    smap = Image.new("L", photo.size, 255)
    ImageDraw.Draw(smap).rectangle((0, 0, 129, 255), fill=0)  # the left half of the stroke: kept exactly
    buf = io.BytesIO()
    painted.save(buf, "PNG")
    settings = PreviewSettings(pipe.config.name, 0.8, 3, 0, 0)
    request = PreviewRequest("visitor-one", 1, buf.getvalue(), mask, settings, strength_map=smap)
    (res,) = previews.compute_previews([request], pipe=pipe)
    out, guide = _pixels(res), np.asarray(painted).astype(np.int16)
    kept = (np.asarray(smap) == 0) & (np.asarray(mask) > 0)
    kept_inner = np.zeros_like(kept)
    kept_inner[136:175, 66:122] = True  # inside the kept part, away from its edges (JPEG blocks blur edges)
    assert np.abs(out - guide)[kept_inner].mean() < 2, "strength 0: the stroke is kept (up to JPEG)"
    free = (np.asarray(smap) > 0) & (np.asarray(mask) > 0)
    assert np.abs(out - guide)[free].mean() > 8, "strength 1: the stroke changes"
    (plain,) = previews.compute_previews([replace(request, strength_map=None)], pipe=pipe)
    assert np.abs(_pixels(plain) - guide)[kept_inner].mean() > 8, "without the map that half changes too"
    from sdedit.studio.jobs import EditSettings, run_edit

    generated = run_edit(painted, mask, EditSettings(strength=0.8, seed=3, steps=4, strength_map=smap), batch=False)
    assert (np.asarray(generated.images[0])[kept] == np.asarray(painted)[kept]).all(), "as Generate keeps them"


def test_the_sweep_honours_the_strength_map():
    """Every column of the t0 sweep keeps the pixels whose strength is 0 (the grid's cells equal the guide's
    there, away from the resize's reach) and changes the others."""
    from sdedit.studio.jobs import EditSettings, run_t0_sweep

    guide = Image.open("examples/strokes-heart.png").convert("RGB").resize((128, 128))
    smap = Image.new("L", guide.size, 255)
    ImageDraw.Draw(smap).rectangle((0, 0, 63, 127), fill=0)  # the left half: kept
    settings = EditSettings(steps=4, seed=0, strength_map=smap)
    out = run_t0_sweep(guide, None, "0.5, 1.0", settings)
    grid = np.asarray(out.grid).astype(np.int16)
    top, cell = 18, 128
    cells = [grid[top : top + cell, i * cell : (i + 1) * cell] for i in range(3)]  # guide, t0 0.5, t0 1.0
    for c in cells[1:]:
        assert (c[:, :56] == cells[0][:, :56]).all(), "strength 0: kept in every column"
        assert np.abs(c[:, 72:] - cells[0][:, 72:]).mean() > 3, "strength 1: changed"
    plain = run_t0_sweep(guide, None, "0.5, 1.0", EditSettings(steps=4, seed=0))
    assert np.abs(np.asarray(plain.grid).astype(np.int16)[top:, cell : cell + 56] - cells[0][:, :56]).mean() > 3
    with pytest.raises(InputError, match="strength_map"):
        run_t0_sweep(guide, None, "0.5", EditSettings(steps=4, strength_map=Image.new("L", (10, 10), 0)))


def test_a_blank_canvas_answers_with_words(pipe):
    buf = io.BytesIO()
    Image.new("RGB", (256, 256), "white").save(buf, "PNG")
    (res,) = previews.compute_previews([PreviewRequest("visitor-one", 1, buf.getvalue())], pipe=pipe)
    assert res.error and "paint" in res.error


# ----- the service on the real model: forwards counted -------------------------------------------------------


def _counting_forwards(pipe, monkeypatch) -> tuple[object, list[int]]:
    """The preview pipeline of `pipe`, its network's forwards recorded as their batch sizes."""
    fast = previews.preview_pipeline(pipe)
    sizes: list[int] = []
    real = fast.unet.forward

    def counted(x, t, *args, **kwargs):
        sizes.append(x.shape[0])
        return real(x, t, *args, **kwargs)

    monkeypatch.setattr(fast.unet, "forward", counted)
    return fast, sizes


def _hold_then_release(slot: ModelSlots, service: PreviewService, first: PreviewRequest, later: list[PreviewRequest]):
    """Submit `first` and let it reach the model's turn, which an edit holds; submit `later`; release the model.
    Returns the tickets: `first`'s, then `later`'s."""
    slot.acquire()  # an edit holds the model: the preview worker takes `first` and waits for its turn
    try:
        head = service.submit(first)
        deadline = time.monotonic() + 5
        while head.started is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert head.started is not None, "the first canvas never reached the worker"
        tickets = [head, *(service.submit(r) for r in later)]
    finally:
        slot.release()
    return tickets


def test_previews_with_matching_settings_share_one_forward_up_to_the_batch_size(pipe, monkeypatch):
    """docs/app.md: on a GPU the previews of up to 8 visitors with the same model and t0 share one forward. The
    eight canvases that wait behind a running one run as one batch of 8 (each network evaluation once, for all),
    a ninth with another t0 runs on its own, and every preview is the one its canvas gets alone."""
    monkeypatch.setattr(previews, "MAX_PREVIEW_BATCH", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert previews.preview_batch() == 8, "8 on a GPU"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert previews.preview_batch() == 1, "1 on a CPU, where a batch of 2 takes twice as long"
    fast, sizes = _counting_forwards(pipe, monkeypatch)
    slot = ModelSlots(1, poll_s=0.001)
    service = PreviewService(lambda reqs: previews.compute_previews(reqs, slot, pipe=fast), max_batch=8)
    canvases = [_stroke_canvas(i % 2 == 1) for i in range(2)]

    def request(i: int, strength: float = 0.5) -> PreviewRequest:
        return PreviewRequest(f"visitor-{i:02d}", 1, canvases[i % 2], None, PreviewSettings(None, strength, i))

    later = [request(i) for i in range(1, 9)] + [request(9, strength=0.8)]
    try:
        tickets = _hold_then_release(slot, service, request(0), later)
        results = [t.wait(60) for t in tickets]
    finally:
        service.close()
    evals = previews.PREVIEW_EVALUATIONS
    assert sizes == [1] * evals + [8] * evals + [1] * evals, f"forwards by batch size: {sizes}"
    assert [r.batch for r in results] == [1] + [8] * 8 + [1]
    assert service.stats["batches"] == 3 and service.stats["computed"] == 10
    for r, req in zip(results, [request(0), *later], strict=True):
        (alone,) = previews.compute_previews([req], pipe=fast)
        assert np.abs(_pixels(r) - _pixels(alone)).mean() < 0.5, "batched: the preview it gets alone"


def test_newest_only_drops_a_visitors_stale_canvases_and_never_computes_them(pipe, monkeypatch):
    """Visitor a sends canvases 2, 3, 4 while its canvas 1 waits for the model; visitor b sends one. 2 and 3 are
    answered `stale` at once and never reach the network; then 4 and b's canvas share the next forward."""
    fast, sizes = _counting_forwards(pipe, monkeypatch)
    slot = ModelSlots(1, poll_s=0.001)
    service = PreviewService(lambda reqs: previews.compute_previews(reqs, slot, pipe=fast), max_batch=8)
    settings = PreviewSettings(None, 0.5, 3)
    a = [PreviewRequest("visitor-a", seq, _stroke_canvas(seq % 2 == 0), None, settings) for seq in (1, 2, 3, 4)]
    b = PreviewRequest("visitor-b", 1, _stroke_canvas(), None, settings)
    try:
        tickets = _hold_then_release(slot, service, a[0], [*a[1:], b])
        results = [t.wait(60) for t in tickets]
    finally:
        service.close()
    stale = [r.seq for r in results if r.stale]
    assert stale == [2, 3] and all(r.jpeg is None for r in results if r.stale)
    assert all(r.jpeg and not r.error for r in results if not r.stale)
    evals = previews.PREVIEW_EVALUATIONS
    assert sizes == [1] * evals + [2] * evals, f"a's first canvas, then a's newest with b's: {sizes}"
    assert service.stats["dropped"] == 2 and service.stats["computed"] == 3


# ----- the page's calls -------------------------------------------------------------------------------------


def _data_url(data: bytes, kind: str = "png") -> str:
    return f"data:image/{kind};base64," + base64.b64encode(data).decode()


def test_preview_calls_are_checked_before_anything_runs():
    good = {"visitor": "visitor-0123", "seq": 3, "guide": _data_url(_stroke_canvas())}
    assert live.parse_request(good).seq == 3 and live.parse_request(good).strength_map is None
    assert live.parse_request({**good, "strength_map": _data_url(b"map")}).strength_map == b"map"
    for bad, words in [
        ("not an object", "one object"),
        ({**good, "visitor": "x"}, "visitor id"),
        ({**good, "guide": "/etc/passwd"}, "data URL"),
        ({**good, "guide": "https://example.com/a.png"}, "data URL"),
        ({**good, "guide": "data:image/png;base64,@@@"}, "base64"),
        ({**good, "guide": None}, "needs the canvas"),
        ({**good, "guide": "data:image/png;base64," + "A" * 700_000}, "too large"),
        ({**good, "strength_map": "/etc/passwd"}, "strength map must be"),
    ]:
        with pytest.raises(InputError, match=words):
            live.parse_request(bad)
    out = asyncio.run(live.preview({**good, "guide": "/etc/passwd"}))
    assert out["seq"] == 3 and "data URL" in out["error"] and "image" not in out
    s = live.parse_settings({"strength": "0.7", "seed": "12", "mask_feather": 3, "model": None})
    assert (s.strength, s.seed, s.mask_feather, s.model) == (0.7, 12, 3.0, None), "numbers spelt as text are read"
    assert live.parse_settings("junk") == PreviewSettings() == live.parse_settings({"seed": None, "strength": ""})
    for bad, words in [
        ({"strength": 7}, r"strength \(t0\) must be a number in \(0, 1\], not 7"),
        ({"seed": 1.5}, "seed must be a whole number from -1 to"),
        ({"mask_feather": -3}, "mask feather must be a number from 0 to 64, not -3"),
        ({"model": 5}, "model must be a model's name"),
    ]:
        with pytest.raises(InputError, match=words):
            live.parse_settings(bad)


def test_the_canvas_value_round_trips_and_never_names_a_file():
    photo = Image.open("examples/photo-cat.png").convert("RGB")
    strokes = Image.new("RGBA", photo.size, (0, 0, 0, 0))
    ImageDraw.Draw(strokes).rectangle((10, 10, 40, 30), fill=(255, 0, 0, 255))
    value = canvas.canvas_value(photo, [strokes, None])
    read = canvas.read_canvas(value)
    assert (read["background"][..., :3] == np.asarray(photo)).all()
    assert len(read["layers"]) == 2 and read["layers"][1].shape == (*photo.size[::-1], 4)
    assert not read["layers"][1].any(), "a missing layer is transparent, so the mask layer stays layer 1"
    assert (read["layers"][0][15, 15] == (255, 0, 0, 255)).all()
    for bad in ['{"background": "/etc/passwd"}', '{"background": "file:///etc/passwd"}', "{not json", "[1]"]:
        with pytest.raises(InputError):
            canvas.read_canvas(bad)
    assert canvas.read_canvas("") == {"background": None, "layers": [], "fill": None, "auto_fill": False}
    json.loads(value)


def test_the_tabs_read_their_guides_from_the_canvas():
    from sdedit.studio.page import build_page

    page = build_page()
    paint, edit = page.by_id["paint"], page.by_id["edit"]
    for tab in (paint, edit):
        names = {fn.__name__ for fn in tab.canvas.server_fns}
        assert {"preview", "policy"} <= names
        assert tab.canvas.props["live"]["model"] == default_config().name
    blank = canvas.canvas_value(Image.new("RGB", (256, 256), "white"))
    with pytest.raises(InputError, match="blank"):
        paint.guide({paint.canvas: blank})
    layer = Image.new("RGBA", (256, 256), (0, 0, 0, 0))
    ImageDraw.Draw(layer).ellipse((60, 60, 190, 190), fill=(249, 47, 96, 255))
    guide, mask = paint.guide({paint.canvas: canvas.canvas_value(Image.new("RGB", (256, 256), "white"), [layer])})
    assert mask is None and np.asarray(guide)[128, 128].tolist() == [249, 47, 96]
    photo = Image.open("examples/photo-cat.png").convert("RGB")
    only_mask = Image.new("RGBA", photo.size, (0, 0, 0, 0))
    ImageDraw.Draw(only_mask).rectangle((0, 0, 9, 9), fill=(255, 255, 255, 255))
    guide, mask = edit.guide({edit.canvas: canvas.canvas_value(photo, [None, only_mask])})
    assert (np.asarray(guide) == np.asarray(photo)).all(), "the mask layer marks, it does not paint"
    assert (np.asarray(mask) > 0).sum() == 100
    sweep = next(fn for fn in page.demo.fns.values() if fn.api_name == "sweep")
    params = list(inspect.signature(results.sweep).parameters)
    at = params.index("strength_map")
    assert sweep.inputs[at] is page.results.strength_map, "the sweep gets the strength map the page shows"
    assert at == 11 and params[at + 1] == "fill_outlines", "appended after the old inputs, with defaults"


# ----- Live on or off by default ------------------------------------------------------------------------------


def test_live_is_on_where_a_preview_is_fast_and_says_why_where_it_is_not(monkeypatch):
    live._POLICIES.clear()
    monkeypatch.setattr(live, "measure_evaluation_ms", lambda pipe: 40.0)
    fast = live.live_policy(None)
    assert fast.allowed and fast.preview_ms < live.LIVE_BUDGET_MS
    live._POLICIES.clear()
    monkeypatch.setattr(live, "measure_evaluation_ms", lambda pipe: 3000.0)  # a 256 px model on a CPU
    slow = live.live_policy(None)
    assert not slow.allowed and "6.0 s" in slow.reason and "Generate still works" in slow.reason
    monkeypatch.setattr(live, "measure_evaluation_ms", lambda pipe: 40.0)
    assert not live.live_policy(None).allowed, "a decision is kept for a while"
    monkeypatch.setattr(live, "REMEASURE_OFF_S", 0.0)
    assert live.live_policy(None).allowed, "an 'off' is measured again (a load spike must not turn Live off for good)"
    monkeypatch.setattr(live, "measure_evaluation_ms", lambda pipe: 3000.0)
    assert live.live_policy(None).allowed, "an 'on' is kept"
    live._POLICIES.clear()
    gpu = types.SimpleNamespace(config=default_config(), unet=object(), device=torch.device("cuda"))
    monkeypatch.setattr(models, "get_pipeline", lambda name=None: gpu)
    assert live.live_policy(None).allowed, "on a GPU Live is on for every model"
    live._POLICIES.clear()
    monkeypatch.setattr(live.limits, "ZERO_GPU", True)
    assert not live.live_policy(None).allowed
    live._POLICIES.clear()


def test_the_embedded_model_is_live_on_this_cpu():
    live._POLICIES.clear()
    p = live.live_policy(None)
    assert p.ms_per_evaluation and p.ms_per_evaluation > 0
    assert p.allowed, f"a preview takes {p.preview_ms:.0f} ms here: {p.reason}"


@pytest.mark.parametrize("others, n", [(0.0, 2), (1.0, 1)])
def test_previews_follow_the_free_cores_as_edits_do(pipe, monkeypatch, others, n):
    """A preview runs its network with the threads of the cores free now (sdedit.threads), as Generate does."""
    from sdedit import threads

    class Load:
        def others(self):
            return others

    monkeypatch.setattr(threads, "_MONITOR", Load())
    monkeypatch.setattr(threads, "_CORES", (time.monotonic() + 1e6, 2, None))
    monkeypatch.setattr(threads, "_CACHE_S", 0.0)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "SDEDIT_THREADS"):
        monkeypatch.delenv(name, raising=False)
    fast = previews.preview_pipeline(pipe)
    seen, forward = [], fast.unet.forward
    monkeypatch.setattr(fast.unet, "forward", lambda *a, **k: seen.append(torch.get_num_threads()) or forward(*a, **k))
    request = PreviewRequest(
        "visitor-threads", 1, _stroke_canvas(False), None, PreviewSettings(pipe.config.name, 0.5, 3)
    )
    assert previews.compute_previews([request], pipe=fast)[0].jpeg
    assert seen and set(seen) == {n}
