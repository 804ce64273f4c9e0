"""The serving queue as the edits' micro-batcher (sdedit.studio.queue) and the studio's batched edits.

Generic behaviour with a fake runner first (grouping, limits, errors, cancellation, progress, busy), then the
real embedded model: requests run as one forward give the images each would get alone, up to float rounding.
"""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
from PIL import Image

from sdedit.errors import BusyError, InputError
from sdedit.studio import examples, jobs, limits
from sdedit.studio.queue import Batch, Cancelled, ServingQueue

EX = examples.EXAMPLES_DIR


class Recorder:
    """A fake model: records each batch, can be held until released, fails on payload 'bad'."""

    def __init__(self, hold: bool = False):
        self.batches: list[list] = []
        self.release = threading.Event()
        if not hold:
            self.release.set()
        self.started = threading.Event()

    def __call__(self, batch: Batch):
        self.batches.append([t.payload for t in batch])
        self.started.set()
        for step in range(1000):  # until released (at least 3 steps), or 10 s
            if batch.all_cancelled():
                raise Cancelled("all cancelled")
            for t in batch:
                t.report(step + 1, 20, "fake")
            if self.release.wait(0.01) and step >= 2:
                break
        if any(t.payload == "bad" for t in batch):
            raise ValueError("bad payload")
        return [f"done {t.payload}" for t in batch]


def test_tickets_with_the_same_key_share_a_batch_within_the_limits():
    run = Recorder(hold=True)
    b = ServingQueue(run, max_items=4, max_cost=10, window_s=0)
    first = b.submit("k", "first")  # runs alone: the worker was idle
    assert run.started.wait(5)
    tickets = [b.submit("k", f"a{i}", size=1, cost=2) for i in range(3)]
    tickets.append(b.submit("other", "o"))
    tickets.append(b.submit("k", "big", size=3))  # would overflow max_items with the others
    run.release.set()
    for t in [first, *tickets]:
        assert t.wait(timeout=10).startswith("done")
    assert run.batches[0] == ["first"]
    assert ["a0", "a1", "a2"] in run.batches and ["o"] in run.batches and ["big"] in run.batches
    assert b.stats["largest"] == 3 and b.stats["tickets"] == 6
    b.close()


def test_an_error_reaches_only_its_own_request():
    run = Recorder(hold=True)
    b = ServingQueue(run, max_items=8, window_s=0)
    blocker = b.submit("k", "blocker")
    assert run.started.wait(5)
    good, bad, good2 = (b.submit("k", p) for p in ("g1", "bad", "g2"))
    run.release.set()
    blocker.wait(timeout=10)
    assert good.wait(timeout=10) == "done g1" and good2.wait(timeout=10) == "done g2"
    with pytest.raises(ValueError, match="bad payload"):
        bad.wait(timeout=10)
    assert b.stats["retried"] == 1 and ["g1", "bad", "g2"] in run.batches
    b.close()


def test_cancelled_tickets_never_run_and_a_batch_of_cancelled_tickets_stops():
    run = Recorder(hold=True)
    b = ServingQueue(run, window_s=0)
    running = b.submit("k", "running")
    assert run.started.wait(5)
    waiting = b.submit("k2", "waiting")
    waiting.cancel()
    running.cancel()  # the only ticket of its batch: the runner sees all_cancelled and stops
    with pytest.raises(Cancelled):
        running.wait(timeout=10)
    after = b.submit("k3", "after")
    run.release.set()
    assert after.wait(timeout=10) == "done after"
    assert ["waiting"] not in run.batches and b.stats["aborted"] == 1 and b.stats["cancelled"] == 1
    b.close()


def test_progress_is_forwarded_in_the_waiters_own_thread():
    b = ServingQueue(Recorder(), window_s=0)
    seen = []
    me = threading.get_ident()
    b.submit("k", "p").wait(on_progress=lambda done, total, desc: seen.append((done, total, threading.get_ident())))
    assert seen and seen[-1][:2] == (3, 20) and all(tid == me for *_, tid in seen)
    b.close()


def test_a_full_backlog_is_refused_with_busy():
    run = Recorder(hold=True)
    b = ServingQueue(run, max_pending=2, window_s=0)
    b.submit("k", "running")
    assert run.started.wait(5)
    b.submit("k2", "w1")
    b.submit("k3", "w2")
    with pytest.raises(BusyError, match="busy"):
        b.submit("k4", "w3")
    run.release.set()
    b.close()


def test_a_lone_request_does_not_wait_for_company_but_a_returning_group_is_batched():
    run = Recorder()
    b = ServingQueue(run, window_s=1.0)
    t0 = time.monotonic()
    b.submit("k", "alone").wait(timeout=10)
    assert time.monotonic() - t0 < 0.5  # no linger: the previous batch (none) held one request
    run.release.clear()
    run.started.clear()
    hold = b.submit("k", "hold")
    assert run.started.wait(5)
    group = [b.submit("k", f"g{i}") for i in range(3)]
    run.release.set()
    for t in [hold, *group]:
        t.wait(timeout=10)
    assert ["g0", "g1", "g2"] in run.batches
    # the group of three comes back one by one, 50 ms apart: the idle worker waits for all three
    again = []
    for i in range(3):
        again.append(b.submit("k", f"r{i}"))
        time.sleep(0.05)
    for t in again:
        t.wait(timeout=10)
    assert run.batches[-1] == ["r0", "r1", "r2"]
    b.close()


def test_the_studio_never_lingers_beside_an_idle_model_and_batches_what_arrives_while_it_is_busy():
    """No batching window by default; requests that arrive during a forward share the next one, and
    a lone request after a group starts at once (counted: the idle worker never waited for company)."""
    assert limits.BATCH_WINDOW_S == 0 and jobs.edit_service().window_s == 0
    run = Recorder(hold=True)
    b = ServingQueue(run, window_s=limits.BATCH_WINDOW_S)
    hold = b.submit("k", "hold")
    assert run.started.wait(5)
    group = [b.submit("k", f"g{i}") for i in range(3)]  # they arrive while the model is busy
    run.release.set()
    for t in [hold, *group]:
        t.wait(timeout=10)
    alone = b.submit("k", "alone")  # after a batch of three: no waiting for the group to come back
    alone.wait(timeout=10)
    assert run.batches == [["hold"], ["g0", "g1", "g2"], ["alone"]]
    assert b.stats["lingered"] == 0
    b.close()


def test_a_waiting_ticket_knows_where_it_stands():
    run = Recorder(hold=True)
    b = ServingQueue(run, max_items=1)
    first = b.submit("k", "first", cost=10)
    assert run.started.wait(5)
    waiting = [b.submit("k", f"w{i}", cost=10) for i in range(3)]
    assert [t.position[0] for t in waiting] == [1, 2, 3]  # the running request, then those waiting longer
    assert first.position is None  # running
    seen: list[int] = []
    waiter = threading.Thread(target=lambda: waiting[2].wait(on_queue=lambda ahead, eta: seen.append(ahead)))
    waiter.start()
    deadline = time.monotonic() + 5
    while not seen and time.monotonic() < deadline:
        time.sleep(0.01)
    run.release.set()
    waiter.join(10)
    assert seen[0] == 3 and seen == sorted(seen, reverse=True), seen  # forwarded in the waiter's thread
    # once a batch has been timed, a waiting request also gets an estimate of when it starts
    run.release.clear()
    run.started.clear()
    hold = b.submit("k", "hold", cost=10)
    assert run.started.wait(5)
    later = b.submit("k", "later", cost=10)
    deadline = time.monotonic() + 5
    while later.position[1] is None and time.monotonic() < deadline:  # the running batch reports progress
        time.sleep(0.01)
    assert later.position[0] == 1 and later.position[1] is not None
    run.release.set()
    hold.wait(timeout=10)
    later.wait(timeout=10)
    assert later.position is None
    b.close()


def test_cancelling_the_awaiting_coroutine_cancels_the_ticket():
    run = Recorder(hold=True)
    b = ServingQueue(run, window_s=0)

    async def main():
        ticket = b.submit("k", "async")
        task = asyncio.create_task(ticket.wait_async())
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return ticket

    ticket = asyncio.run(main())
    assert ticket.cancelled
    deadline = time.monotonic() + 5
    while not ticket.done() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ticket.done() and b.stats["aborted"] == 1
    b.close()


# ----- the real model: batched edits equal unbatched ones ---------------------------------------------------

FAST = dict(strength=0.5, sampler="dpmpp", steps=8, repeats=1)


def _jobs():
    mask = np.zeros((256, 256), np.uint8)
    mask[60:200, 40:220] = 255
    return [
        jobs.prepare_edit(EX / "strokes-heart.png", None, jobs.EditSettings(num_samples=1, seed=7, **FAST)),
        jobs.prepare_edit(EX / "strokes-tree.png", None, jobs.EditSettings(num_samples=2, seed=100, **FAST)),
        jobs.prepare_edit(
            EX / "photo-car.png", Image.fromarray(mask), jobs.EditSettings(num_samples=1, seed=3, **FAST)
        ),
    ]


def _close(a: Image.Image, b: Image.Image) -> None:
    diff = np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16))
    assert diff.max() <= 2 and (diff > 0).mean() < 0.01, (diff.max(), (diff > 0).mean())


def test_batched_requests_equal_each_run_alone():
    requests = _jobs()
    assert len({j.key for j in requests}) == 1
    batched = jobs.run_jobs(requests)
    for job, out in zip(requests, batched, strict=True):
        alone = jobs.run_jobs([job])[0]
        assert out.metadata["seeds"] == alone.metadata["seeds"] == job.seeds
        assert out.metadata["batch"] == 4 and out.metadata["batched_requests"] == 3
        assert len(out.images) == job.size
        assert out.animation.num_frames == alone.animation.num_frames == 1 + 4 + 1  # guide|noised, 4 steps, result
        for a, b in zip(out.images, alone.images, strict=True):
            _close(a, b)
    # the masked request keeps every pixel outside its mask, batched or not
    photo = np.asarray(Image.open(EX / "photo-car.png").convert("RGB"))
    out = np.asarray(batched[2].images[0])
    assert (out[:60] == photo[:60]).all() and (out[60:200, 40:220] != photo[60:200, 40:220]).any()


def test_run_edit_through_the_batcher_from_several_threads():
    settings = [jobs.EditSettings(num_samples=1, seed=s, **FAST) for s in (11, 12, 13)]
    alone = [jobs.run_edit(EX / "strokes-apple.png", None, s, batch=False, animate=False) for s in settings]
    results: dict[int, jobs.EditResult] = {}
    service = jobs.edit_service()
    hold = threading.Event()
    with service.slot:  # hold the model so that all three queue up and share one forward
        threads = [
            threading.Thread(
                target=lambda i=i, s=s: results.__setitem__(i, jobs.run_edit(EX / "strokes-apple.png", None, s))
            )
            for i, s in enumerate(settings)
        ]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 20
        while service.pending() < 2 and time.monotonic() < deadline:  # the first may already hold the worker
            hold.wait(0.02)
    for t in threads:
        t.join(60)
    assert sorted(r.seeds[0] for r in results.values()) == [11, 12, 13]
    assert max(r.metadata["batched_requests"] for r in results.values()) >= 2
    for i, r in results.items():
        assert r.seeds == alone[i].seeds
        _close(r.images[0], alone[i].images[0])
        assert r.animation is not None and r.animation.is_file()


def test_a_bad_request_is_refused_before_it_can_join_a_batch():
    with pytest.raises(InputError, match="mask is empty"):
        jobs.prepare_edit(EX / "strokes-heart.png", Image.new("L", (256, 256), 0), jobs.EditSettings(**FAST))
    with pytest.raises(InputError, match="same size"):
        jobs.prepare_edit(EX / "strokes-heart.png", Image.new("L", (10, 10), 255), jobs.EditSettings(**FAST))
