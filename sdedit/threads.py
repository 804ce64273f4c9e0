"""CPU thread policy (issue 12): how many threads torch uses, and how they wait.

Call ``sdedit.threads.apply()`` first thing at start-up, before torch is imported (the app, the CLI, ``batch``,
the trainer and the evaluation do). It reads the cores really free to this process, decides, and writes the
OpenMP/MKL environment variables that torch reads when it loads. If torch is already loaded it calls
``torch.set_num_threads`` (and ``torch.set_num_interop_threads`` where torch still allows it) instead. It
imports nothing heavy itself: this module is stdlib only.

The rule (``choose``):

- **Usable cores** = the smaller of the CPU affinity (``os.sched_getaffinity(0)``: cpusets, ``taskset``,
  container CPU pinning) and the cgroup CPU quota (cgroup v2 ``cpu.max``, v1 ``cpu.cfs_quota_us`` /
  ``cpu.cfs_period_us``), rounded *down* (a 1.5-CPU quota gives 1 usable core: the half core is left to the
  process's other threads: HTTP, image encoding, the animation), at least 1. ``os.cpu_count()`` only when
  neither is known.
- **Intra-op threads**: 1 when 1 or 2 cores are usable, else the usable cores minus one, at most 8. Measured
  on the 2-core machine (``benchmarks/threads.py``; table in ``docs/performance.md``), default edit on the
  embedded model: one thread was the fastest configuration or tied with it in every run, idle (0.50 s vs
  0.59 s for torch's default two on a quiet machine) and beside one busy process (0.57-0.71 s, about its
  idle time), where torch's two spinning threads took 7.9-12 s and two passive threads 1.1-1.3 s (the
  thread sharing its core with the other process holds every step back). So on small machines a core is
  left to the rest of the process (HTTP, encoding, the animation) and the machine. Above 2 cores the rule
  (all but one, at most 8) is reasoning, not measured here: leave the app's own threads a core, and past
  about 8 threads these small convolutions gain little.
- **Inter-op threads**: 1 (eager inference does not use torch's inter-op pool; one thread keeps it small).
- **Waiting**: ``OMP_WAIT_POLICY=PASSIVE`` and ``GOMP_SPINCOUNT=0`` (libgomp, torch's OpenMP on Linux):
  idle OpenMP threads sleep instead of spinning. Spinning threads that share a core with another busy
  process made an edit 20-60x slower here; passive waiting costs little when the machine is idle.

Environment variables a user sets keep precedence, each group on its own:

- ``SDEDIT_THREADS=N`` (this project's knob; ``auto`` or empty = the rule above) sets the intra-op threads and
  overrides ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` for this process.
- else ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS``, when either is set, are left untouched and torch reads them
  (``MKL_NUM_THREADS`` wins if both are set, as in torch).
- ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` set by the user: neither wait variable is touched.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Applied",
    "ThreadPolicy",
    "apply",
    "choose",
    "current",
    "describe",
    "read_affinity",
    "read_quota",
    "usable_cores",
]

PROJECT_VAR = "SDEDIT_THREADS"
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
WAIT_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
MAX_THREADS = 8


@dataclass(frozen=True)
class ThreadPolicy:
    """What ``choose`` decided. ``env`` holds the variables to write (the user's own are never in it)."""

    threads: int  # torch intra-op threads
    interop: int  # torch inter-op threads
    wait: str  # "PASSIVE", or the user's OMP_WAIT_POLICY / "user" when the user set the wait variables
    cores: int  # usable cores (affinity and quota)
    source: str  # where `threads` came from: "SDEDIT_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "auto"
    env: Mapping[str, str]
    affinity: int | None = None
    quota: float | None = None


@dataclass(frozen=True)
class Applied:
    """What ``apply`` did: the policy, and whether torch was already loaded (then set via torch's calls)."""

    policy: ThreadPolicy
    torch_loaded: bool
    interop_set: bool  # False when torch was loaded and its inter-op pool had already started


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


def choose(
    env: Mapping[str, str],
    affinity: int | None,
    quota_cpus: float | None,
    cpu_count: int | None,
) -> ThreadPolicy:
    """The thread policy for these cores and this environment (pure: reads nothing, writes nothing)."""
    cores = usable_cores(affinity, quota_cpus, cpu_count)
    auto = 1 if cores <= 2 else min(MAX_THREADS, cores - 1)
    out: dict[str, str] = {}

    project = env.get(PROJECT_VAR, "").strip()
    n = _positive_int(project)
    if n is not None:
        threads, source = n, PROJECT_VAR
        out.update({v: str(n) for v in THREAD_VARS})
    elif any(env.get(v, "").strip() for v in THREAD_VARS):
        # Torch's own order: MKL_NUM_THREADS over OMP_NUM_THREADS; an unparsable value falls back to `auto`.
        source = next((v for v in ("MKL_NUM_THREADS", "OMP_NUM_THREADS") if _positive_int(env.get(v))), "auto")
        threads = _positive_int(env.get(source)) or auto
    else:
        threads, source = auto, "auto"
        out.update({v: str(threads) for v in THREAD_VARS})

    if any(env.get(v, "").strip() for v in WAIT_VARS):
        wait = env.get("OMP_WAIT_POLICY", "").strip().upper() or "user"
    else:
        wait = "PASSIVE"
        out.update({"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "0"})

    return ThreadPolicy(
        threads=threads,
        interop=1,
        wait=wait,
        cores=cores,
        source=source,
        env=out,
        affinity=affinity,
        quota=quota_cpus,
    )


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


# --- applying ----------------------------------------------------------------------------------------------

_applied: Applied | None = None


def apply(environ: MutableMapping[str, str] | None = None) -> Applied:
    """Decide the policy and put it in force; idempotent (later calls return the first result).

    Before torch is imported: writes the policy's variables into the environment (the user's own are left
    alone, except that ``SDEDIT_THREADS`` rewrites ``OMP_NUM_THREADS``/``MKL_NUM_THREADS``), so torch's
    OpenMP/MKL start with them. The inter-op count has no variable: a later call to ``apply`` sets it once
    torch is loaded (eager inference never starts that pool anyway). After torch is imported: also calls
    ``torch.set_num_threads`` and, where torch still allows, ``set_num_interop_threads``; the wait policy
    can no longer change in that process (OpenMP read it when it loaded).
    """
    global _applied
    environ = os.environ if environ is None else environ
    if _applied is not None:
        if not _applied.torch_loaded and "torch" in sys.modules:
            _applied = Applied(_applied.policy, True, _torch_settings(_applied.policy))
        return _applied
    policy = current(environ)
    environ.update(policy.env)  # holds none of the user's variables, except those SDEDIT_THREADS overrides
    torch_loaded = "torch" in sys.modules
    interop_set = _torch_settings(policy) if torch_loaded else False
    _applied = Applied(policy, torch_loaded, interop_set)
    return _applied


def _torch_settings(policy: ThreadPolicy) -> bool:
    """Set torch's thread counts in a process where torch is loaded; True if the inter-op count was set."""
    import torch

    if torch.get_num_threads() != policy.threads:
        torch.set_num_threads(policy.threads)
    if torch.get_num_interop_threads() == policy.interop:
        return True
    try:
        torch.set_num_interop_threads(policy.interop)
    except RuntimeError:  # the inter-op pool has started (or was set before): torch allows it only once
        return False
    return True


def describe(policy: ThreadPolicy | Applied) -> str:
    """One line for logs, e.g. 'threads: 1 intra-op (auto), 1 inter-op, wait PASSIVE; cores 2 (affinity 2)'."""
    applied = policy if isinstance(policy, Applied) else None
    p = applied.policy if applied else policy
    where = [f"affinity {p.affinity}" if p.affinity is not None else "affinity ?"]
    if p.quota is not None:
        where.append(f"quota {p.quota:g}")
    line = f"threads: {p.threads} intra-op ({p.source}), {p.interop} inter-op, wait {p.wait}; "
    line += f"cores {p.cores} ({', '.join(where)})"
    if applied is not None:
        line += "; torch was already loaded" if applied.torch_loaded else "; set before torch loaded"
    return line
