"""The model's slots: one forward at a time per slot, Generate first and live previews only when no edit wants one.

The edit batcher and the sweep take a slot with `acquire` (or `with slots:`), and wait for it. A live preview
takes its turn with `with slots.turn():`, which waits while edits are queued (`queued()`: the batcher's pending
requests) or blocked on a slot, and takes only a free slot that nobody waits for. A waiting edit counts until
its `acquire` returns, so a slot a preview releases goes to that edit, never to the next preview (a plain
semaphore lets any thread take a freed slot). An edit therefore waits at most for the one preview running.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from collections.abc import Callable


class ModelSlots:
    """A bounded semaphore that counts the threads blocked on it, with a low-priority `turn` for previews.

    queued: whether edits are queued for the model (they have not reached `acquire` yet); previews wait too.
    poll_s: how often a waiting preview looks again (4x less often while every slot is held).
    """

    def __init__(self, slots: int, queued: Callable[[], bool] = lambda: False, poll_s: float = 0.004):
        self.slots = max(1, int(slots))
        self.queued, self.poll_s = queued, poll_s
        self._sem = threading.BoundedSemaphore(self.slots)
        self._lock = threading.Lock()
        self._waiting = 0
        self._held = 0
        self.yielded = 0  # preview turns that waited for an edit first
        # how long each preview held the model while an edit was waiting for it when it ended: the most that
        # preview can have delayed that edit (the last 1000)
        self.edit_delays_ms: collections.deque[float] = collections.deque(maxlen=1000)

    # ----- Generate: wait for a slot ------------------------------------------------------------------------
    def _take(self) -> bool:  # with self._lock held
        if self._sem.acquire(blocking=False):
            self._held += 1
            return True
        return False

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Take a slot, as `threading.Semaphore.acquire`; while a blocking call waits, previews yield to it."""
        with self._lock:
            if self._take():
                return True
            if not blocking:
                return False
            self._waiting += 1
        ok = False
        try:
            ok = self._sem.acquire(True, timeout)
        finally:
            with self._lock:
                self._waiting -= 1
                self._held += ok
        return ok

    def release(self) -> None:
        self._sem.release()  # a release too many raises here (bounded), before the count changes
        with self._lock:
            self._held -= 1

    def __enter__(self) -> ModelSlots:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    # ----- live previews: a turn only when no edit wants the model -------------------------------------------
    def acquire_unless_waited(self) -> bool:
        """Take a free slot only if no thread waits for one (never blocks): a preview never jumps an edit."""
        with self._lock:
            return not self._waiting and self._take()

    @contextlib.contextmanager
    def turn(self, timeout_s: float = 120.0):
        """A preview's turn on a slot: waits while an edit is queued or blocked on a slot (TimeoutError after
        `timeout_s`), and records how long it then held the model while an edit waited for it."""
        deadline = time.monotonic() + timeout_s
        waited = False
        while self.queued() or not self.acquire_unless_waited():
            waited = True
            if time.monotonic() > deadline:
                raise TimeoutError("the model stayed busy")
            # a forward holds the slot for 0.1 s or more: look less often then (fewer wake-ups next to it)
            time.sleep(self.poll_s * (4 if self.busy else 1))
        if waited:
            self.yielded += 1
        held_from = time.perf_counter()
        try:
            yield
        finally:
            wanted = self.waiting > 0 or bool(self.queued())
            self.release()
            if wanted:
                self.edit_delays_ms.append((time.perf_counter() - held_from) * 1000)

    @property
    def waiting(self) -> int:
        """Threads blocked in `acquire` (edits' batches, a sweep, the live policy's measurement)."""
        return self._waiting

    @property
    def busy(self) -> bool:
        """Every slot is held."""
        return self._held >= self.slots
