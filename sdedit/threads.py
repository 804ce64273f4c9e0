"""CPU threads: as many as the cores that are free at that moment, so an edit is fast on a quiet machine and
steady beside a busy one.

Measured on a 2-core machine (docs/performance.md, `python -m benchmarks.threads`): torch's default, two
OpenMP threads that spin-wait for each other, is the fastest when both cores are free, and 4-5x slower when
another process keeps one core busy (every step waits for the thread that shares its core); one thread is
steady beside a busy process but 1.5x slower on a quiet machine; two threads that wait passively lose the
second thread's gain; and two spinning threads already lose to one beside a process busy a fifth of the time.
So torch keeps its spin-waiting, and the number of threads follows the free cores:

- **Usable cores** = the smaller of the CPU affinity (``os.sched_getaffinity(0)``: cpusets, ``taskset``,
  container pinning) and the cgroup CPU quota (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``),
  rounded down, at least 1; ``os.cpu_count()`` only when neither is known.
- **Taken** cores: what other processes used of the usable CPUs over about the last half second, from
  ``/proc/stat`` minus this process's own CPU time (``LoadMonitor``, a daemon thread that reads both eight
  times a second). A core counts as taken once others use more than `TAKEN_ABOVE` of it.
- **Threads** = usable - taken, at least 1: 2 when both cores of a 2-core machine are free, 1 beside one
  busy process. Set in the thread that runs the network, before every network evaluation of an edit
  (``torch.set_num_threads`` is per calling thread and cheap), and put back when the edit ends.

``apply()`` runs at start-up before torch loads (the app, the CLI, ``batch``): it caps OpenMP at the usable
cores (torch would otherwise start one thread per core of the host, whatever the quota) and leaves the wait
policy to OpenMP. The library does the rest per edit by default (``SDEditPipeline(..., threads="auto")``);
``threads=None`` leaves torch's settings alone, an int fixes the count. What a user sets wins:

- ``SDEDIT_THREADS=N``: N threads for every edit (``auto`` or empty = the rule).
- else ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS``: the user's count; edits leave torch's settings alone.
- ``OMP_WAIT_POLICY`` / ``GOMP_SPINCOUNT``: read by OpenMP itself; never written here.

This module imports nothing heavy at the top (torch only inside the functions that set its threads).
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Applied",
    "CpuReading",
    "LoadMonitor",
    "ThreadPolicy",
    "apply",
    "choose",
    "current",
    "describe",
    "for_run",
    "free_threads",
    "read_affinity",
    "read_cpu",
    "read_quota",
    "step",
    "taken_between",
    "threads_for",
    "usable_cores",
]

PROJECT_VAR = "SDEDIT_THREADS"
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
TAKEN_ABOVE = 0.2  # a core counts as taken by other processes once they use more than this share of it
WINDOW_S = 0.5  # the load is read over about the last half second: a process that stops or starts counts soon
PERIOD_S = 0.125  # how often the monitor reads /proc/stat
PROBE_S = 0.1  # the first reading's window, before the monitor has any history


@dataclass(frozen=True)
class ThreadPolicy:
    """What ``choose`` decided. ``env`` holds the variables to write (the user's own are never in it).

    ``mode``: "auto" (per edit, the free cores), "fixed" (``SDEDIT_THREADS``: `threads` for every edit) or
    "user" (the user set OpenMP's or MKL's count: edits leave torch alone)."""

    threads: int  # OpenMP's cap at start-up (auto), the fixed count, or what the user's variable says
    cores: int  # usable cores (affinity and quota)
    source: str  # "auto", "SDEDIT_THREADS", "OMP_NUM_THREADS" or "MKL_NUM_THREADS"
    env: Mapping[str, str]
    affinity: int | None = None
    quota: float | None = None

    @property
    def mode(self) -> str:
        return {"auto": "auto", PROJECT_VAR: "fixed"}.get(self.source, "user")


@dataclass(frozen=True)
class Applied:
    """What ``apply`` did: the policy, and whether torch was already loaded (then set via torch's call)."""

    policy: ThreadPolicy
    torch_loaded: bool


def _positive_int(value: str | None) -> int | None:
    try:
        n = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return n if n >= 1 else None


def usable_cores(affinity: int | None, quota_cpus: float | None, cpu_count: int | None) -> int:
    """Cores free to this process: min(affinity, floor(quota)), else cpu_count; at least 1."""
    known = []
    if affinity is not None and affinity >= 1:
        known.append(affinity)
    if quota_cpus is not None and quota_cpus > 0:
        known.append(max(1, math.floor(quota_cpus + 1e-9)))
    if not known:
        known.append(cpu_count or 1)
    return max(1, min(known))


def threads_for(usable: int, others: float | None) -> int:
    """Threads for an edit: the usable cores less those other processes hold (more than `TAKEN_ABOVE` of a
    core each), at least 1. `others`: the cores other processes used lately (None: not known, all free)."""
    busy = others or 0.0
    taken = 0 if busy <= TAKEN_ABOVE else math.ceil(busy - TAKEN_ABOVE)
    return max(1, usable - taken)


def choose(
    env: Mapping[str, str],
    affinity: int | None,
    quota_cpus: float | None,
    cpu_count: int | None,
) -> ThreadPolicy:
    """The start-up policy for these cores and this environment (pure: reads nothing, writes nothing)."""
    cores = usable_cores(affinity, quota_cpus, cpu_count)
    n = _positive_int(env.get(PROJECT_VAR, ""))
    if n is not None:
        return ThreadPolicy(n, cores, PROJECT_VAR, {v: str(n) for v in THREAD_VARS}, affinity, quota_cpus)
    if any(env.get(v, "").strip() for v in THREAD_VARS):
        # torch's own order: MKL_NUM_THREADS over OMP_NUM_THREADS; an unparsable value reports the usable cores
        source = next((v for v in ("MKL_NUM_THREADS", "OMP_NUM_THREADS") if _positive_int(env.get(v))), None)
        threads = _positive_int(env.get(source)) if source else cores
        return ThreadPolicy(threads, cores, source or "OMP_NUM_THREADS", {}, affinity, quota_cpus)
    return ThreadPolicy(cores, cores, "auto", {v: str(cores) for v in THREAD_VARS}, affinity, quota_cpus)


# --- readers ---------------------------------------------------------------------------------------------


def _parse_cpu_list(text: str) -> int | None:
    """Count the CPUs in a list such as '0-3,8,10-11'."""
    count = 0
    for part in text.strip().split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        try:
            count += (int(hi) - int(lo) + 1) if hi else 1
        except ValueError:
            return None
    return count or None


def read_affinity(
    root: str | os.PathLike[str] = "/",
    getaffinity: Callable[[int], set[int]] | None = None,
) -> int | None:
    """CPUs this process may run on: ``os.sched_getaffinity(0)``, else /proc/self/status's Cpus_allowed_list.

    None when neither is available (macOS, Windows without the call). ``root`` and ``getaffinity`` are for
    tests; ``getaffinity`` defaults to ``os.sched_getaffinity`` only when ``root`` is the real one.
    """
    if getaffinity is None and str(root) == "/":
        getaffinity = getattr(os, "sched_getaffinity", None)
    if getaffinity is not None:
        try:
            return len(getaffinity(0)) or None
        except OSError:
            pass
    try:
        for line in (Path(root) / "proc/self/status").read_text().splitlines():
            if line.startswith("Cpus_allowed_list:"):
                return _parse_cpu_list(line.split(":", 1)[1])
    except OSError:
        pass
    return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _v2_quota(directory: Path) -> float | None:
    text = _read(directory / "cpu.max")
    if not text:
        return None
    fields = text.split()
    if fields[0] == "max":
        return None
    try:
        quota = int(fields[0])
        period = int(fields[1]) if len(fields) > 1 else 100_000
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _v1_quota(directory: Path) -> float | None:
    quota, period = _read(directory / "cpu.cfs_quota_us"), _read(directory / "cpu.cfs_period_us")
    try:
        q, p = int(quota or ""), int(period or "")
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None


def _ancestors(mount: Path, cgroup_path: str) -> list[Path]:
    """The process's cgroup directory under ``mount`` and each parent up to the mount itself."""
    parts = [p for p in cgroup_path.strip().split("/") if p and p not in (".", "..")]
    dirs = [mount.joinpath(*parts[:i]) for i in range(len(parts), 0, -1)]
    return [*dirs, mount]


def read_quota(root: str | os.PathLike[str] = "/") -> float | None:
    """The cgroup CPU quota in CPUs (e.g. 1.5), or None when there is none or it cannot be read.

    Looks in the process's own cgroup (from /proc/self/cgroup) and its parents, v2 (``cpu.max``) and v1
    (``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` under ``cpu`` or ``cpu,cpuacct``); the smallest limit wins,
    as the kernel enforces every level. Missing or odd files count as no limit.
    """
    root = Path(root)
    fs = root / "sys/fs/cgroup"
    v2_path, v1_path = "/", "/"
    for line in (_read(root / "proc/self/cgroup") or "").splitlines():
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        if fields[0] == "0" and fields[1] == "":
            v2_path = fields[2]
        elif "cpu" in fields[1].split(","):
            v1_path = fields[2]
    found: list[float] = []
    for directory in _ancestors(fs, v2_path):
        q = _v2_quota(directory)
        if q is not None:
            found.append(q)
    for mount in (fs / "cpu", fs / "cpu,cpuacct", fs / "cpuacct,cpu"):
        for directory in _ancestors(mount, v1_path):
            q = _v1_quota(directory)
            if q is not None:
                found.append(q)
    return min(found) if found else None


def current(env: Mapping[str, str] | None = None, root: str | os.PathLike[str] = "/") -> ThreadPolicy:
    """The policy for this process now (reads the affinity, the quota and ``os.environ``; changes nothing)."""
    return choose(os.environ if env is None else env, read_affinity(root), read_quota(root), os.cpu_count())


# --- the load of the other processes -------------------------------------------------------------------------


@dataclass(frozen=True)
class CpuReading:
    """CPU seconds at one moment: `busy`, all processes on the watched CPUs; `own`, this process."""

    at: float  # time.monotonic()
    busy: float
    own: float


_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)  # user, nice, system, irq, softirq, steal (guest time is inside user)


def read_cpu(cpus: Collection[int] | None = None, root: str | os.PathLike[str] = "/") -> CpuReading | None:
    """Busy seconds of `cpus` (all when None) from /proc/stat, and this process's own CPU seconds; None where
    /proc/stat can't be read (not Linux)."""
    text = _read(Path(root) / "proc/stat")
    if not text:
        return None
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    busy = 0
    for line in text.splitlines():
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu"):
            continue
        if cpus is None and name != "cpu":
            continue
        if cpus is not None and (name == "cpu" or int(name[3:] or -1) not in cpus):
            continue
        fields = rest.split()
        busy += sum(int(fields[i]) for i in _BUSY_FIELDS if i < len(fields))
    t = os.times()
    return CpuReading(time.monotonic(), busy / hz, t.user + t.system)


def taken_between(a: CpuReading, b: CpuReading) -> float:
    """The cores other processes used between two readings: all busy time less this process's own."""
    span = b.at - a.at
    if span <= 0:
        return 0.0
    return max(0.0, (b.busy - a.busy) - (b.own - a.own)) / span


class LoadMonitor:
    """What the other processes use of the CPUs over about the last `WINDOW_S`: a daemon thread reads /proc/stat
    every `period` s (about 50 us a read). Started on first use; before it has any history, the first call
    measures over `probe` s."""

    def __init__(self, read: Callable[[], CpuReading | None] | None = None, period: float = PERIOD_S):
        self._read = read or (lambda: read_cpu(_cpus()))
        self.period = period
        self._history: deque[CpuReading] = deque(maxlen=int(WINDOW_S / period) + 2)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while True:
            reading = self._read()
            if reading is not None:
                with self._lock:
                    self._history.append(reading)
            time.sleep(self.period)

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sdedit-load", daemon=True)
                self._thread.start()

    def others(self, probe: float = PROBE_S) -> float | None:
        """Cores used by other processes lately; None where the CPU times can't be read."""
        self.start()
        now = self._read()
        if now is None:
            return None
        with self._lock:
            past = [r for r in self._history if now.at - r.at <= WINDOW_S * 1.5]
        if past and now.at - past[0].at >= probe:
            return taken_between(past[0], now)
        time.sleep(probe)
        later = self._read()
        return taken_between(now, later) if later is not None else None


_MONITOR = LoadMonitor()
_CORES: tuple[float, int, set[int] | None] | None = None  # (read at, usable cores, affinity set)


def _cpus() -> set[int] | None:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def _usable_now() -> int:
    """The usable cores, re-read at most every 5 s (the affinity and quota rarely change)."""
    global _CORES
    now = time.monotonic()
    if _CORES is None or now - _CORES[0] > 5.0:
        _CORES = (now, current().cores, _cpus())
    return _CORES[1]


def free_threads(monitor: LoadMonitor | None = None) -> int:
    """The threads an edit should use now: `threads_for` the usable cores and what other processes use."""
    return threads_for(_usable_now(), (monitor or _MONITOR).others())


# --- per edit ----------------------------------------------------------------------------------------------

_local = threading.local()
_CACHE_S = 0.1  # how long one decision holds within an edit (an evaluation takes tens of ms)


def _plan(threads) -> int | str | None:
    """None (leave torch alone), a fixed count, or "auto", from a pipeline's `threads` and the environment."""
    if threads is None:
        return None
    if threads != "auto":
        return int(threads)
    policy = current(_users_env())
    return {"auto": "auto", "fixed": policy.threads}.get(policy.mode)


def _users_env() -> dict[str, str]:
    """os.environ without the variables `apply` wrote itself (they are not the user's choice)."""
    written = _applied.policy.env if _applied is not None else {}
    return {k: v for k, v in os.environ.items() if not (k in written and written[k] == v and k != PROJECT_VAR)}


@contextmanager
def for_run(threads: int | str | None = "auto", monitor: LoadMonitor | None = None) -> Iterator[set[int]]:
    """The thread count for one edit, in the calling thread (the one that runs the network): "auto" follows
    the free cores (`step` re-decides before each evaluation), an int fixes it, None leaves torch alone.
    The thread's own count is put back afterwards (torch keeps one per thread). Yields the set of counts the
    edit's evaluations ran with (filled by `step`; the unchanged count when torch is left alone)."""
    plan = _plan(threads)
    if plan is None:
        import torch

        yield {torch.get_num_threads()}
        return
    import torch

    before, outer = torch.get_num_threads(), getattr(_local, "run", None)
    used: set[int] = set()
    _local.run = {"plan": plan, "monitor": monitor or _MONITOR, "at": -1.0, "used": used}
    try:
        step()
        yield used
    finally:
        _local.run = outer
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def step() -> None:
    """Before a network evaluation: set the calling thread's torch threads by its edit's plan (`for_run`);
    nothing outside an edit. "auto" reads the load at most every `_CACHE_S`."""
    run = getattr(_local, "run", None)
    if run is None:
        return
    now = time.monotonic()
    if now - run["at"] < _CACHE_S:
        run["used"].add(run["n"])
        return
    run["at"] = now
    plan = run["plan"]
    n = plan if isinstance(plan, int) else threads_for(_usable_now(), run["monitor"].others())
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    run["n"] = n
    run["used"].add(n)


# --- at start-up -------------------------------------------------------------------------------------------

_applied: Applied | None = None


def apply(environ: MutableMapping[str, str] | None = None) -> Applied:
    """The start-up policy, put in force; idempotent (later calls return the first result).

    Before torch is imported: writes OpenMP's and MKL's thread count (the usable cores, or ``SDEDIT_THREADS``)
    into the environment unless the user set one, so torch never starts more threads than the cores this
    process may use. After torch is imported: ``torch.set_num_threads`` instead. Edits then follow the free
    cores themselves (`for_run`).
    """
    global _applied
    environ = os.environ if environ is None else environ
    if _applied is not None:
        return _applied
    policy = current(environ)
    environ.update(policy.env)
    torch_loaded = "torch" in sys.modules
    if torch_loaded and policy.mode != "user":
        import torch

        torch.set_num_threads(policy.threads)
    _applied = Applied(policy, torch_loaded)
    return _applied


def describe(policy: ThreadPolicy | Applied) -> str:
    """One line for logs, e.g. 'threads: auto, 1-2 per edit (the free cores); cores 2 (affinity 2)'."""
    applied = policy if isinstance(policy, Applied) else None
    p = applied.policy if applied else policy
    where = [f"affinity {p.affinity}" if p.affinity is not None else "affinity ?"]
    if p.quota is not None:
        where.append(f"quota {p.quota:g}")
    how = {
        "auto": f"auto, 1-{p.cores} per edit (the free cores)",
        "fixed": f"{p.threads} per edit ({PROJECT_VAR})",
        "user": f"{p.threads} ({p.source}, torch's own)",
    }[p.mode]
    line = f"threads: {how}; cores {p.cores} ({', '.join(where)})"
    if applied is not None:
        line += "; torch was already loaded" if applied.torch_loaded else "; set before torch loaded"
    return line
