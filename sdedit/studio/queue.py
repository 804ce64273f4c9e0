"""The studio's serving queue: requests wait in line, those with matching settings share one run, workers run them.

Both of the studio's services are this queue: the edit batcher (`jobs.edit_service`: Generate's requests, batched
into one forward) and the live previews (`live.PreviewService`: newest canvas only, per visitor). Each request
becomes a `Ticket` with a key (the settings that must match to share a run), a size (samples) and a cost
(network evaluations). A worker thread takes the oldest waiting ticket, adds every waiting ticket with the same
key while the batch stays within `max_items` and `max_cost`, and runs them with one call of
`run(batch) -> one result per ticket`.

Why a queue of our own rather than Gradio's `batch=True`: requests may differ in their number of samples and
only partly match, each keeps its own progress bar and animation, one request's error must not fail the others,
a cancelled request must stop its work, and a visitor's stale canvas must never be computed. Here:

* **Errors stay with their request.** A failed batch of several tickets is retried one ticket at a time.
* **Cancelling stops the work.** `Ticket.cancel()` (or cancelling the coroutine in `wait_async`) drops a waiting
  ticket, and `run` can stop early once every ticket it holds is cancelled (`Batch.all_cancelled`).
* **Progress in the waiter's context.** Progress is stored on the ticket and forwarded by the waiter in its own
  thread or coroutine, since a web framework's progress hook is bound to the request (Gradio's is a contextvar).
* **No waiting beside an idle model.** A request that finds a worker idle starts at once; requests that arrive
  while the model is busy wait, and the next batch takes every waiting one with the same key. With `window_s`
  > 0 an idle worker may also linger that long for company, but only after a batch of several requests (a group
  about to send its next ones); the studio keeps it at 0.
* **Where a request stands.** A waiting ticket knows the requests ahead of it and an estimate of when it starts
  from recent batch times (`Ticket.position`); the waiter forwards changes to `on_queue`.
* **Newest only per owner** (the `newest_only` policy, for live previews): each owner (a visitor) has at most one
  ticket waiting. A newer one takes the older one's place in line, and the older one is answered at once with
  `newest_only(ticket)` without being run; the one already running finishes. Owners therefore take turns in the
  order they first had a ticket waiting, and a burst of canvases computes the running one and the last one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from ..errors import BusyError

Progress = tuple[int, int, str]
SHUTTING_DOWN = "the server is shutting down; please try again in a moment"


class Cancelled(Exception):
    """The request was cancelled (or every request of its batch was: `run` stops early)."""


class Ticket:
    """One request waiting for, or running in, a batch."""

    _ids = itertools.count()

    def __init__(self, key: Hashable, payload: Any, size: int = 1, cost: float = 0.0, owner: Hashable = None):
        self.id = next(self._ids)
        self.key, self.payload, self.size, self.cost = key, payload, max(1, int(size)), float(cost)
        self.owner = owner
        self.submitted = time.monotonic()
        self.started: float | None = None
        self.cancelled = False
        self.batch_tickets = 0  # how many requests shared its run
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._result: Any = None
        self._error: BaseException | None = None
        self._progress: Progress | None = None
        self._progress_seq = 0
        self._position: tuple[int, float | None] | None = None  # (requests ahead, seconds until it starts)
        self._position_seq = 0
        self._on_report: Callable[[], None] | None = None  # the queue's hook while it runs
        self._watchers: list[Callable[[], None]] = []

    # ----- the worker's side ---------------------------------------------------------------------------
    def report(self, done: int, total: int, desc: str = "") -> None:
        """Store the latest progress; the waiter forwards it in its own context."""
        with self._lock:
            self._progress = (done, total, desc)
            self._progress_seq += 1
            on_report = self._on_report
        self._notify()
        if on_report is not None:
            on_report()

    @property
    def progress(self) -> Progress | None:
        with self._lock:
            return self._progress

    def set_position(self, ahead: int, eta_s: float | None) -> None:
        """Where the waiting ticket stands (the queue updates it as requests come and go)."""
        eta = None if eta_s is None else round(max(0.0, eta_s), 1)
        with self._lock:
            if self._position == (ahead, eta):
                return
            self._position = (ahead, eta)
            self._position_seq += 1
        self._notify()

    @property
    def position(self) -> tuple[int, float | None] | None:
        """(requests ahead, estimated seconds until it starts) while it waits; None once it started or finished."""
        with self._lock:
            return None if self.started is not None or self._done.is_set() else self._position

    def finish(self, result: Any = None, error: BaseException | None = None) -> None:
        with self._lock:
            if self._done.is_set():
                return
            self._result, self._error = result, error
            self._done.set()
        self._notify()

    # ----- the requester's side ------------------------------------------------------------------------
    def cancel(self) -> None:
        """Drop the ticket if it is still waiting; a running batch stops once all its tickets are cancelled."""
        self.cancelled = True
        self._notify()

    def done(self) -> bool:
        return self._done.is_set()

    def result(self) -> Any:
        if not self._done.is_set():
            raise RuntimeError("the ticket has not finished")
        if self._error is not None:
            raise self._error
        return self._result

    def wait(
        self,
        timeout: float | None = None,
        *,
        on_progress: Callable[[int, int, str], None] | None = None,
        on_queue: Callable[[int, float | None], None] | None = None,
    ) -> Any:
        """Block until done, calling `on_progress` (and `on_queue(ahead, eta_s)` while it waits) in this thread;
        returns the result or raises its error. A timeout raises TimeoutError and leaves the ticket in line."""
        seen = (0, 0)
        deadline = None if timeout is None else time.monotonic() + timeout
        wake = threading.Event()
        self._watch(wake.set)
        try:
            while True:
                seen, done = self._catch_up(wake.clear, on_progress, on_queue, seen)
                if done:
                    break
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError("the request did not finish in time")
                wake.wait(left if left is not None else 1.0)
        finally:
            self._unwatch(wake.set)
        self._forward(on_progress, None, seen)
        return self.result()

    async def wait_async(
        self,
        timeout: float | None = None,
        *,
        on_progress: Callable[[int, int, str], None] | None = None,
        on_queue: Callable[[int, float | None], None] | None = None,
    ) -> Any:
        """`wait` for coroutines. The awaiting task giving up (cancelled, or past `timeout`: TimeoutError) cancels
        the ticket: nobody will read its result."""
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()

        def notify() -> None:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
                loop.call_soon_threadsafe(wake.set)

        self._watch(notify)
        deadline = None if timeout is None else loop.time() + timeout
        seen = (0, 0)
        try:
            while True:
                seen, done = self._catch_up(wake.clear, on_progress, on_queue, seen)
                if done:
                    break
                if deadline is None:
                    await wake.wait()
                    continue
                left = deadline - loop.time()
                if left <= 0:
                    raise TimeoutError("the request did not finish in time")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), left)
        except (asyncio.CancelledError, TimeoutError):
            self.cancel()
            raise
        finally:
            self._unwatch(notify)
        self._forward(on_progress, None, seen)
        return self.result()

    # ----- helpers -------------------------------------------------------------------------------------
    def _catch_up(self, rearm: Callable[[], None], on_progress, on_queue, seen: tuple[int, int]):
        """Re-arm the waiter's wake-up, then pass on what changed: (what it has seen now, whether it is done)."""
        rearm()
        return self._forward(on_progress, on_queue, seen), self._done.is_set()

    def _forward(self, on_progress, on_queue, seen: tuple[int, int]) -> tuple[int, int]:
        """Pass on what changed since `seen` (progress and position sequence numbers): the position only
        while the ticket still waits, and never after its first progress."""
        with self._lock:
            seq, progress = self._progress_seq, self._progress
            pseq, position = self._position_seq, self._position
            waiting = self.started is None and not self._done.is_set() and seq == 0
        if on_queue is not None and waiting and position is not None and pseq != seen[1]:
            on_queue(*position)
        if on_progress is not None and progress is not None and seq != seen[0]:
            on_progress(*progress)
        return seq, pseq

    def _watch(self, fn: Callable[[], None]) -> None:
        with self._lock:
            self._watchers.append(fn)

    def _unwatch(self, fn: Callable[[], None]) -> None:
        with self._lock:
            if fn in self._watchers:
                self._watchers.remove(fn)

    def _notify(self) -> None:
        with self._lock:
            watchers = list(self._watchers)
        for fn in watchers:
            fn()


class Batch(list):
    """The tickets of one run (a list), and whether they are all cancelled."""

    def all_cancelled(self) -> bool:
        return all(t.cancelled for t in self)

    @property
    def items(self) -> int:
        return sum(t.size for t in self)


class ServingQueue:
    """Tickets wait in line; equal keys are batched and run on `workers` threads.

    run: `run(batch) -> one result per ticket`, called on a worker thread; it may raise `Cancelled`.
    max_items / max_cost: bounds on a batch's total size and cost (a single larger ticket still runs alone).
    window_s: how long an idle worker may wait for a returning group of requests (0: never; see the module
        docstring).
    max_pending: tickets that may wait before `submit` raises `BusyError` (under `newest_only`: owners).
    slot: held around each `run` (e.g. `jobs.MODEL_SLOTS`), so that one process never runs more forwards at
        once than it has slots.
    newest_only: the "newest only per owner" policy: the answer (a result) that a ticket submitted with an
        `owner` gets when a newer ticket of the same owner replaces it while it waits, or when the queue closes.
    """

    def __init__(
        self,
        run: Callable[[Batch], Sequence[Any]],
        max_items: int = 8,
        max_cost: float = math.inf,
        window_s: float = 0.0,
        workers: int = 1,
        max_pending: int = 256,
        slot: AbstractContextManager | None = None,
        newest_only: Callable[[Ticket], Any] | None = None,
        name: str = "sdedit-queue",
    ):
        self.run = run
        self.max_items, self.max_cost, self.window_s = max(1, int(max_items)), float(max_cost), float(window_s)
        self.workers, self.max_pending, self.name = max(1, int(workers)), max(1, int(max_pending)), name
        self.slot = slot if slot is not None else nullcontext()
        self.newest_only = newest_only
        self._pending: list[Ticket] = []
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []
        self.closed = False
        self._last_batch_tickets = 1
        self._idle_since = time.monotonic()
        self._running: list[tuple[Batch, float]] = []  # batches on the workers, with their start times
        self._cost_s: float | None = None  # recent seconds per unit of cost (moving average), for the estimates
        self._positions_at = 0.0  # when the waiting tickets were last told where they stand
        # dropped: replaced by their owner's newer ticket (newest_only); cancelled: dropped before they ran;
        # aborted: batches stopped because all their requests were cancelled; lingered: times an idle worker
        # waited for company (window_s)
        self.stats = dict.fromkeys(
            ("submitted", "batches", "tickets", "largest", "retried", "cancelled", "aborted", "lingered", "dropped"), 0
        )

    # ----- public ----------------------------------------------------------------------------------------
    def submit(self, key: Hashable, payload: Any, size: int = 1, cost: float = 0.0, owner: Hashable = None) -> Ticket:
        """Put a request in line (behind its owner's waiting one's place, under `newest_only`)."""
        ticket = Ticket(key, payload, size, cost, owner)
        replaced = None
        with self._cond:
            if self.closed:
                raise BusyError(SHUTTING_DOWN)
            if self.newest_only is not None and owner is not None:
                for i, t in enumerate(self._pending):
                    if t.owner == owner:
                        replaced, self._pending[i] = t, ticket  # a replaced ticket keeps its owner's place
                        self.stats["dropped"] += 1
                        break
            if replaced is None:
                if len(self._pending) >= self.max_pending:
                    raise BusyError(
                        f"the server is busy: {len(self._pending)} requests are waiting. Please try again in a minute."
                    )
                self._pending.append(ticket)
            self.stats["submitted"] += 1
            self._start_workers()
            self._update_positions()
            self._cond.notify_all()
        if replaced is not None:
            replaced.finish(result=self.newest_only(replaced))
        return ticket

    def pending(self) -> int:
        with self._cond:
            return len(self._pending)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the workers once the current batches finish; waiting tickets get BusyError (an owner's ticket under
        `newest_only`: its answer)."""
        with self._cond:
            self.closed = True
            left, self._pending = self._pending, []
            self._cond.notify_all()
        for t in left:
            if self.newest_only is not None and t.owner is not None:
                t.finish(result=self.newest_only(t))
            else:
                t.finish(error=BusyError(SHUTTING_DOWN))
        for thread in self._threads:
            thread.join(timeout)

    # ----- the workers ---------------------------------------------------------------------------------
    def _start_workers(self) -> None:
        self._threads = [t for t in self._threads if t.is_alive()]
        while len(self._threads) < self.workers:
            thread = threading.Thread(target=self._work, name=f"{self.name}-{len(self._threads)}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _work(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._execute(batch)

    def _collect(self, first: Ticket) -> Batch:
        batch, items, cost = Batch([first]), first.size, first.cost
        for t in self._pending:
            if t is first or t.key != first.key or t.cancelled:
                continue
            if items + t.size > self.max_items or cost + t.cost > self.max_cost:
                continue
            batch.append(t)
            items, cost = items + t.size, cost + t.cost
        return batch

    def _next_batch(self) -> Batch | None:
        with self._cond:
            while True:
                for t in [t for t in self._pending if t.cancelled]:
                    self._pending.remove(t)
                    self.stats["cancelled"] += 1
                    t.finish(error=Cancelled("cancelled before it started"))
                if self.closed:
                    return None
                if self._pending:
                    break
                self._cond.wait()
            # Linger only while idle workers can expect a group back (the last batch held several requests),
            # and never longer than `window_s` after the later of its first request and the worker's idle start.
            first = self._pending[0]
            deadline = max(first.submitted, self._idle_since) + self.window_s
            target = self._last_batch_tickets
            while True:
                batch = self._collect(first)
                now = time.monotonic()
                full = batch.items >= self.max_items
                if full or len(batch) >= target or now >= deadline or self.closed or first.cancelled:
                    break
                self.stats["lingered"] += 1
                self._cond.wait(deadline - now)
            now = time.monotonic()
            for t in batch:
                self._pending.remove(t)
                t.started = now
                t.batch_tickets = len(batch)
                t._on_report = self._progressed
            self._running.append((batch, now))
            self._update_positions()
            return batch

    def _progressed(self) -> None:
        """A running ticket reported progress: refresh the waiting tickets' estimates, at most once a second."""
        with self._cond:
            if time.monotonic() - self._positions_at >= 1.0:
                self._update_positions()

    def _left_s(self, batch: Batch, t0: float, now: float) -> float | None:
        """Seconds a running batch still needs: from its own progress when it has any, else from its cost."""
        elapsed = now - t0
        progress = batch[0].progress
        if progress is not None and progress[0] > 0 and progress[1] >= progress[0]:
            return elapsed * (progress[1] - progress[0]) / progress[0]
        if self._cost_s is not None:
            return max(0.0, sum(t.cost for t in batch) * self._cost_s - elapsed)
        return None

    def _update_positions(self) -> None:
        """Tell each waiting ticket how many requests are ahead of it and when it may start (under `_cond`).

        Ahead: the requests running now and those waiting longer. The estimate: what the running batches still
        need (from their progress) plus the cost of the requests waiting ahead at the recent seconds per unit
        of cost, shared by the workers; None while nothing has been timed.
        """
        now = time.monotonic()
        self._positions_at = now
        running = sum(len(b) for b, _ in self._running)
        lefts = [self._left_s(b, t0, now) for b, t0 in self._running]
        left = None if any(x is None for x in lefts) else sum(lefts)
        ahead, cost = running, 0.0
        for t in self._pending:
            if t.cancelled:
                continue
            if ahead:
                eta = None
                if left is not None and (cost == 0 or self._cost_s is not None):
                    eta = (left + cost * (self._cost_s or 0.0)) / self.workers
                t.set_position(ahead, eta)
            ahead += 1
            cost += t.cost

    def _execute(self, batch: Batch) -> None:
        started = time.monotonic()
        with self.slot:
            live = Batch(t for t in batch if not t.cancelled)
            for t in batch:
                if t.cancelled:
                    self.stats["cancelled"] += 1
                    t.finish(error=Cancelled("cancelled before it started"))
            if live:
                self._run(live)
        with self._cond:
            self.stats["batches"] += 1
            self.stats["tickets"] += len(live)
            self.stats["largest"] = max(self.stats["largest"], len(live))
            self._last_batch_tickets = max(1, len(live))
            self._idle_since = time.monotonic()
            self._running = [(b, t0) for b, t0 in self._running if b is not batch]
            for t in batch:
                t._on_report = None
            cost = sum(t.cost for t in live)
            if live and cost > 0:
                per = (self._idle_since - started) / cost
                self._cost_s = per if self._cost_s is None else 0.7 * self._cost_s + 0.3 * per
            self._update_positions()

    def _run(self, batch: Batch) -> None:
        try:
            results = list(self.run(batch))
            if len(results) != len(batch):
                raise RuntimeError(f"the batch runner returned {len(results)} results for {len(batch)} requests")
        except Cancelled as exc:
            self.stats["aborted"] += 1
            for t in batch:
                t.finish(error=exc)
            return
        except Exception as exc:
            if len(batch) == 1:
                batch[0].finish(error=exc)
                return
            # One request's problem (or a batch too large for memory) must not fail the others: one by one.
            self.stats["retried"] += 1
            for t in batch:
                if t.cancelled:
                    t.finish(error=Cancelled("cancelled"))
                    continue
                try:
                    t.batch_tickets = 1
                    t.finish(result=self.run(Batch([t]))[0])
                except Exception as single_exc:
                    t.finish(error=single_exc)
            return
        for t, r in zip(batch, results, strict=True):
            t.finish(result=r)
