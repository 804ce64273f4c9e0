"""CPU threads: the pure rules, the affinity/cgroup/proc readers, the per-edit count, and apply() in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from sdedit import threads
from sdedit.threads import (
    CpuReading,
    LoadMonitor,
    choose,
    read_affinity,
    read_cpu,
    read_quota,
    taken_between,
    threads_for,
    usable_cores,
)

REPO = Path(__file__).resolve().parents[2]
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "SDEDIT_THREADS")


# --- the pure rules -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "affinity, quota, cpu_count, cores",
    [
        (1, None, 64, 1),  # pinned to one core
        (2, None, 2, 2),  # the 2-core machine / free Space
        (None, 1.5, 2, 1),  # a 1.5-CPU quota rounds down: the half core is left to the process's other threads
        (8, 0.5, 8, 1),  # less than one CPU still gets one thread
        (16, 4.0, 16, 4),  # the quota, not the affinity, decides
        (4, 16.0, 16, 4),  # the affinity, not the quota, decides
        (None, None, 6, 6),  # neither known: os.cpu_count()
        (None, None, None, 1),
        (0, 0.0, 2, 2),  # nonsense readings are ignored
    ],
)
def test_usable_cores_cap_openmp_at_start_up(affinity, quota, cpu_count, cores):
    p = choose({}, affinity, quota, cpu_count)
    assert (p.cores, p.threads, p.source, p.mode) == (cores, cores, "auto", "auto")
    assert p.env == {"OMP_NUM_THREADS": str(cores), "MKL_NUM_THREADS": str(cores)}  # never the wait policy


@pytest.mark.parametrize(
    "usable, others, n",
    [
        (2, 0.0, 2),  # both cores free: torch's two spinning threads are the fastest
        (2, 0.15, 2),  # background noise (a shell, an idle server elsewhere) takes no core
        (2, 0.25, 1),  # more than a fifth of a core: that core is taken
        (2, 1.0, 1),  # one busy process: one thread, steady
        (2, 2.0, 1),  # both busy: still one
        (8, 1.0, 7),
        (8, 2.6, 5),
        (1, 0.0, 1),
        (2, None, 2),  # the load can't be read (not Linux): all usable cores
    ],
)
def test_threads_follow_the_free_cores(usable, others, n):
    assert threads_for(usable, others) == n


def test_usable_cores_floor_and_minimum():
    assert usable_cores(None, 2.999, 8) == 2
    assert usable_cores(None, 3.0, 8) == 3
    assert usable_cores(None, 0.1, 8) == 1


def test_user_omp_num_threads_wins_and_is_left_alone():
    p = choose({"OMP_NUM_THREADS": "2"}, 2, None, 2)
    assert (p.threads, p.source, p.mode, p.env) == (2, "OMP_NUM_THREADS", "user", {})


def test_mkl_num_threads_alone_is_not_overridden():
    # Setting OMP_NUM_THREADS beside it would be harmless for torch (MKL wins there) but not for other OpenMP users.
    p = choose({"MKL_NUM_THREADS": "3"}, 8, None, 8)
    assert (p.threads, p.source, p.env) == (3, "MKL_NUM_THREADS", {})
    both = choose({"MKL_NUM_THREADS": "3", "OMP_NUM_THREADS": "5"}, 8, None, 8)
    assert (both.threads, both.source) == (3, "MKL_NUM_THREADS")  # torch's order


def test_project_variable_fixes_the_count():
    p = choose({"SDEDIT_THREADS": "2", "OMP_NUM_THREADS": "7"}, 1, 0.5, 1)
    assert (p.threads, p.source, p.mode) == (2, "SDEDIT_THREADS", "fixed")  # the user asked: even above the cores
    assert p.env["OMP_NUM_THREADS"] == p.env["MKL_NUM_THREADS"] == "2"


@pytest.mark.parametrize("value", ["auto", "", "0", "-1", "many"])
def test_project_variable_auto_or_invalid_falls_back_to_the_rule(value):
    p = choose({"SDEDIT_THREADS": value}, 2, None, 2)
    assert (p.threads, p.source) == (2, "auto")


def test_invalid_omp_value_keeps_the_users_variable():
    p = choose({"OMP_NUM_THREADS": "lots"}, 2, None, 2)
    assert (p.mode, p.env) == ("user", {})  # the user's variable is theirs, even unparsable


def test_describe_is_one_line():
    line = threads.describe(choose({}, 2, 1.5, 2))
    assert "\n" not in line
    assert line.startswith("threads: auto, 1-1 per edit") and "quota 1.5" in line
    assert "SDEDIT_THREADS" in threads.describe(choose({"SDEDIT_THREADS": "3"}, 2, None, 2))


# --- the load of other processes ------------------------------------------------------------------------------

STAT = """cpu  300 5 100 5000 20 1 2 3 0 0
cpu0 100 0 50 2500 10 1 1 1 0 0
cpu1 200 5 50 2500 10 0 1 2 0 0
intr 12345
"""


def test_read_cpu_sums_busy_time_of_the_watched_cpus(tmp_path):
    write(tmp_path, "proc/stat", STAT)
    hz = os.sysconf("SC_CLK_TCK")
    every = read_cpu(None, tmp_path)
    assert every.busy == pytest.approx((300 + 5 + 100 + 1 + 2 + 3) / hz)  # idle and iowait are not busy
    assert read_cpu({1}, tmp_path).busy == pytest.approx((200 + 5 + 50 + 0 + 1 + 2) / hz)
    assert read_cpu({0, 1}, tmp_path).busy == pytest.approx(every.busy)
    assert every.own >= 0
    assert read_cpu(None, tmp_path / "nowhere") is None


def test_taken_is_the_busy_time_of_everyone_else():
    a = CpuReading(at=10.0, busy=100.0, own=5.0)
    assert taken_between(a, CpuReading(11.0, 101.9, 5.9)) == pytest.approx(1.0)  # we used 0.9, they 1.0
    assert taken_between(a, CpuReading(11.0, 101.0, 6.0)) == 0.0  # only us
    assert taken_between(a, CpuReading(12.0, 101.0, 5.0)) == pytest.approx(0.5)
    assert taken_between(a, a) == 0.0


class Clock:
    """Readings of a machine where other processes use `others` cores, advanced by hand."""

    def __init__(self, others: float):
        self.others, self.t, self.busy = others, 0.0, 0.0

    def read(self) -> CpuReading:
        return CpuReading(self.t, self.busy, 0.0)

    def tick(self, dt: float) -> None:
        self.t += dt
        self.busy += self.others * dt


def test_the_monitor_reads_the_last_second(monkeypatch):
    clock = Clock(1.0)
    monitor = LoadMonitor(read=clock.read)
    monkeypatch.setattr(monitor, "start", lambda: None)  # no thread: readings by hand
    for _ in range(6):
        monitor._history.append(clock.read())
        clock.tick(0.25)
    assert monitor.others() == pytest.approx(1.0)
    clock.others = 0.0  # the other process stops
    for _ in range(8):
        monitor._history.append(clock.read())
        clock.tick(0.25)
    assert monitor.others() < 0.1


def test_the_monitor_probes_once_without_history(monkeypatch):
    clock = Clock(1.0)
    monitor = LoadMonitor(read=clock.read)
    monkeypatch.setattr(monitor, "start", lambda: None)
    monkeypatch.setattr(threads.time, "sleep", clock.tick)  # the probe's wait advances the fake clock
    assert monitor.others(probe=0.1) == pytest.approx(1.0)


def test_the_real_monitor_answers():
    others = threads.LoadMonitor().others(probe=0.05)
    assert others is None or 0.0 <= others <= (os.cpu_count() or 1) + 0.5
    assert 1 <= threads.free_threads() <= threads.current().cores


# --- per edit ------------------------------------------------------------------------------------------------


class Fixed:
    def __init__(self, others: float):
        self.value = others

    def others(self) -> float:
        return self.value


@pytest.fixture
def two_cores(monkeypatch):
    """Two usable cores and no user variables, whatever this machine has (nor any that an earlier start-up in
    this process wrote: `apply` would count them as its own)."""
    import time

    for k in THREAD_ENV:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setattr(threads, "_applied", None)
    monkeypatch.setattr(threads, "_CORES", (time.monotonic() + 1e6, 2, None))
    monkeypatch.setattr(threads, "_CACHE_S", 0.0)


def test_an_edit_sets_its_own_threads_and_puts_them_back(two_cores):
    import torch

    torch.set_num_threads(1)
    busy = Fixed(1.0)
    with threads.for_run("auto", monitor=busy):
        assert torch.get_num_threads() == 1
        busy.value = 0.0  # the other process stopped: the next step takes both cores
        threads.step()
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == 1  # as before the edit
    with threads.for_run(3):
        assert torch.get_num_threads() == 3
    with threads.for_run(None):
        assert torch.get_num_threads() == 1  # None leaves torch alone
    threads.step()  # outside an edit: nothing
    assert torch.get_num_threads() == 1


def test_another_threads_count_is_not_touched(two_cores):
    """torch keeps one count per thread: an edit in a worker thread leaves the caller's as it was."""
    import torch

    torch.set_num_threads(1)
    seen = []

    def edit():
        with threads.for_run("auto", monitor=Fixed(0.0)):
            seen.append(torch.get_num_threads())

    worker = threading.Thread(target=edit)
    worker.start()
    worker.join()
    assert seen == [2] and torch.get_num_threads() == 1


def test_the_users_variables_decide_the_plan(two_cores, monkeypatch):
    assert threads._plan("auto") == "auto"
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads._plan("auto") is None  # the user's count: torch's settings stay
    monkeypatch.setenv("SDEDIT_THREADS", "3")
    assert threads._plan("auto") == 3
    assert threads._plan(None) is None and threads._plan(2) == 2


def _threads_inside(pipe) -> list[int]:
    """The torch thread count at each network evaluation of one edit."""
    import torch

    seen = []
    forward = pipe.unet.forward

    def counting(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return forward(*args, **kwargs)

    pipe.unet.forward = counting
    pipe(np.full((16, 16, 3), 128, np.uint8), strength=0.5, num_inference_steps=10, seed=0, progress=False)
    pipe.unet.forward = forward
    return seen


@pytest.mark.parametrize("others, n", [(0.0, 2), (1.0, 1)])
def test_the_library_follows_the_free_cores_by_default(vp_pipe, two_cores, monkeypatch, others, n):
    import torch

    torch.set_num_threads(1)
    monkeypatch.setattr(threads, "_MONITOR", Fixed(others))
    assert vp_pipe.threads == "auto"
    assert set(_threads_inside(vp_pipe)) == {n}
    assert torch.get_num_threads() == 1


def test_threads_none_leaves_torch_alone(two_cores, monkeypatch):
    import torch
    from diffusers import DDPMScheduler

    from sdedit import SDEditPipeline
    from tests.conftest import tiny_vp_unet

    monkeypatch.setattr(threads, "_MONITOR", Fixed(0.0))
    torch.set_num_threads(1)
    pipe = SDEditPipeline(tiny_vp_unet(), DDPMScheduler(), threads=None)
    assert set(_threads_inside(pipe)) == {1}
    assert set(_threads_inside(SDEditPipeline(tiny_vp_unet(), DDPMScheduler(), threads=2))) == {2}
    torch.set_num_threads(1)


@pytest.mark.parametrize("bad", [0, -1, 1.5, "many", True])
def test_bad_thread_settings_are_refused(bad):
    from diffusers import DDPMScheduler

    from sdedit import InputError, SDEditPipeline
    from tests.conftest import tiny_vp_unet

    with pytest.raises(InputError, match="threads"):
        SDEditPipeline(tiny_vp_unet(), DDPMScheduler(), threads=bad)


# --- the readers --------------------------------------------------------------------------------------------


def write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_quota_missing_files_is_none(tmp_path):
    assert read_quota(tmp_path) is None
    write(tmp_path, "proc/self/cgroup", "garbage\n0::/a/b\n")
    assert read_quota(tmp_path) is None


def test_quota_v2_own_cgroup_and_parents(tmp_path):
    write(tmp_path, "proc/self/cgroup", "0::/kubepods/pod1/box\n")
    write(tmp_path, "sys/fs/cgroup/kubepods/pod1/box/cpu.max", "max 100000\n")
    assert read_quota(tmp_path) is None
    write(tmp_path, "sys/fs/cgroup/kubepods/pod1/cpu.max", "150000 100000\n")
    assert read_quota(tmp_path) == 1.5
    write(tmp_path, "sys/fs/cgroup/kubepods/cpu.max", "50000 100000\n")  # the tighter ancestor wins
    assert read_quota(tmp_path) == 0.5


def test_quota_v2_in_a_container_namespace(tmp_path):
    # Inside a container /proc/self/cgroup says "/" and the limit sits at the mount's root.
    write(tmp_path, "proc/self/cgroup", "0::/\n")
    write(tmp_path, "sys/fs/cgroup/cpu.max", "200000 100000")
    assert read_quota(tmp_path) == 2.0


@pytest.mark.parametrize("text", ["", "junk", "max", "0 100000", "100000 0", "-1 100000"])
def test_quota_v2_odd_files_are_no_limit(tmp_path, text):
    write(tmp_path, "proc/self/cgroup", "0::/\n")
    write(tmp_path, "sys/fs/cgroup/cpu.max", text)
    assert read_quota(tmp_path) is None


@pytest.mark.parametrize("mount", ["cpu", "cpu,cpuacct"])
def test_quota_v1(tmp_path, mount):
    write(tmp_path, "proc/self/cgroup", "4:memory:/docker/abc\n2:cpu,cpuacct:/docker/abc\n0::/\n")
    write(tmp_path, f"sys/fs/cgroup/{mount}/docker/abc/cpu.cfs_quota_us", "-1\n")  # unlimited
    write(tmp_path, f"sys/fs/cgroup/{mount}/docker/abc/cpu.cfs_period_us", "100000\n")
    assert read_quota(tmp_path) is None
    write(tmp_path, f"sys/fs/cgroup/{mount}/docker/abc/cpu.cfs_quota_us", "150000\n")
    assert read_quota(tmp_path) == 1.5
    (tmp_path / f"sys/fs/cgroup/{mount}/docker/abc/cpu.cfs_period_us").unlink()  # half a pair: no limit
    assert read_quota(tmp_path) is None


def test_affinity_from_the_call_then_from_proc_status(tmp_path):
    assert read_affinity(tmp_path, getaffinity=lambda pid: {0, 3, 5}) == 3
    assert read_affinity(tmp_path) is None  # a fake root never consults the real call
    write(tmp_path, "proc/self/status", "Name:\tpython\nCpus_allowed_list:\t0-3,8,10-11\n")
    assert read_affinity(tmp_path) == 7

    def broken(pid):
        raise OSError

    assert read_affinity(tmp_path, getaffinity=broken) == 7


def test_real_readers_do_not_fail():
    affinity = read_affinity()
    assert affinity is None or 1 <= affinity <= (os.cpu_count() or affinity)
    quota = read_quota()
    assert quota is None or quota > 0
    assert threads.current().cores >= 1


# --- apply() in a fresh process -------------------------------------------------------------------------------

PROBE = """
import json, os, sys
THREAD_ENV = ARGS
import sdedit.threads as t
loaded_before = "torch" in sys.modules
a = t.apply()
assert t.apply() is a  # idempotent
import torch
print(json.dumps({
    "threads": torch.get_num_threads(),
    "policy": a.policy.threads,
    "torch_loaded": a.torch_loaded,
    "loaded_before": loaded_before,
    "env": {k: os.environ.get(k) for k in THREAD_ENV},
    "line": t.describe(a),
}))
""".replace("ARGS", repr(THREAD_ENV))


def probe(env_extra: dict[str, str], code: str = PROBE) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in THREAD_ENV}
    env.update(env_extra)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_apply_sets_the_policy_for_torch():
    r = probe({})
    expected = threads.current(env={}).threads
    assert r["threads"] == r["policy"] == expected
    assert r["env"]["OMP_NUM_THREADS"] == r["env"]["MKL_NUM_THREADS"] == str(expected)
    assert r["env"]["OMP_WAIT_POLICY"] is None and r["env"]["GOMP_SPINCOUNT"] is None  # OpenMP's own waiting
    assert r["torch_loaded"] == r["loaded_before"]  # reported honestly either way
    assert "\n" not in r["line"]


def test_apply_leaves_the_users_variables():
    r = probe({"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "ACTIVE"})
    assert r["threads"] == r["policy"] == 2
    assert r["env"]["OMP_NUM_THREADS"] == "2" and r["env"]["OMP_WAIT_POLICY"] == "ACTIVE"
    assert r["env"]["MKL_NUM_THREADS"] is None and r["env"]["GOMP_SPINCOUNT"] is None


def test_apply_project_variable():
    r = probe({"SDEDIT_THREADS": "2", "OMP_NUM_THREADS": "1"})
    assert r["threads"] == 2 and r["env"]["OMP_NUM_THREADS"] == r["env"]["MKL_NUM_THREADS"] == "2"


MODULE_ONLY = """
import importlib.util, json, os, sys
spec = importlib.util.spec_from_file_location("threads_alone", PATH)
t = sys.modules["threads_alone"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(t)
assert "torch" not in sys.modules, "sdedit/threads.py must not import torch"
a = t.apply()
import torch
print(json.dumps({"threads": torch.get_num_threads(), "policy": a.policy.threads, "torch_loaded": a.torch_loaded,
                  "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}}))
""".replace("PATH", repr(str(REPO / "sdedit" / "threads.py")))


def test_module_sets_env_before_torch():
    """The module itself is stdlib only: applied before torch loads, torch starts with the policy's env."""
    r = probe({}, MODULE_ONLY)
    assert r["torch_loaded"] is False
    assert r["threads"] == r["policy"] and r["env"]["OMP_WAIT_POLICY"] is None
    r = probe({"SDEDIT_THREADS": "2", "OMP_NUM_THREADS": "1"}, MODULE_ONLY)
    assert r["threads"] == 2 and r["env"]["OMP_NUM_THREADS"] == "2"


def test_importing_sdedit_threads_does_not_load_torch():
    code = "import sys, json; import sdedit.threads; print(json.dumps({'torch': 'torch' in sys.modules}))"
    assert probe({}, code)["torch"] is False


STARTUP = """
import json, os, runpy, sys
{start}
import torch
keys = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
print(json.dumps({{"threads": torch.get_num_threads(), "env": {{k: os.environ.get(k) for k in keys}}}}))
"""


@pytest.mark.parametrize(
    "start",
    [
        # the CLI: `python -m sdedit models` (the thread policy is applied before the command runs)
        "sys.argv = ['sdedit', 'models']; runpy.run_module('sdedit', run_name='__main__', alter_sys=True)",
        # the app: importing app.py (the Space's app file) applies it before gradio or torch load
        "import app",
    ],
    ids=["cli", "app"],
)
@pytest.mark.slow  # fresh interpreters import torch and the app
def test_the_cli_and_the_app_apply_the_policy_at_start_up(start):
    expected = threads.current(env={}).threads
    if "run_module" in start:  # the CLI exits when its command is done
        start = f"try:\n    {start}\nexcept SystemExit:\n    pass"
    code = STARTUP.format(start=start)
    r = probe({}, code)
    assert r["threads"] == expected
    assert r["env"] == {"OMP_NUM_THREADS": str(expected), "OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": None}
    r = probe({"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "ACTIVE"}, code)  # a user's choice wins
    assert r["threads"] == 2 and r["env"]["OMP_WAIT_POLICY"] == "ACTIVE"


APPLIED_PLAN = """
import json, sdedit.threads as t
t.apply()
print(json.dumps({"plan": t._plan("auto")}))
"""


def test_the_variables_apply_wrote_are_not_taken_for_the_users():
    """After start-up, edits still follow the free cores: OMP_NUM_THREADS written by apply() is not a user's."""
    assert probe({}, APPLIED_PLAN)["plan"] == "auto"
    assert probe({"OMP_NUM_THREADS": "1"}, APPLIED_PLAN)["plan"] is None
    assert probe({"SDEDIT_THREADS": "3"}, APPLIED_PLAN)["plan"] == 3
