"""The CPU thread policy (issue 12): the pure rule, the affinity/cgroup readers, and apply() in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sdedit import threads
from sdedit.threads import choose, read_affinity, read_quota, usable_cores

REPO = Path(__file__).resolve().parent.parent
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "SDEDIT_THREADS")
PASSIVE = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "0"}


# --- the pure rule ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "affinity, quota, cpu_count, cores, threads_",
    [
        (1, None, 64, 1, 1),  # pinned to one core: one thread whatever the machine has
        (2, None, 2, 2, 1),  # the 2-core machine / free Space: one thread (measured, see docs/performance.md)
        (None, 1.5, 2, 1, 1),  # a 1.5-CPU quota rounds down: the half core is left to the app's other threads
        (8, 1.5, 8, 1, 1),
        (8, 0.5, 8, 1, 1),  # less than one CPU still gets one thread
        (4, None, 4, 4, 3),  # larger: all usable cores but one
        (16, 4.0, 16, 4, 3),  # the quota, not the affinity, decides
        (4, 16.0, 16, 4, 3),  # the affinity, not the quota, decides
        (64, None, 64, 64, threads.MAX_THREADS),  # capped
        (None, None, 6, 6, 5),  # neither known: os.cpu_count()
        (None, None, None, 1, 1),
        (0, 0.0, 2, 2, 1),  # nonsense readings are ignored
    ],
)
def test_cores_and_threads(affinity, quota, cpu_count, cores, threads_):
    p = choose({}, affinity, quota, cpu_count)
    assert (p.cores, p.threads, p.interop, p.source) == (cores, threads_, 1, "auto")
    assert p.env == {"OMP_NUM_THREADS": str(threads_), "MKL_NUM_THREADS": str(threads_), **PASSIVE}
    assert p.wait == "PASSIVE"


def test_usable_cores_floor_and_minimum():
    assert usable_cores(None, 2.999, 8) == 2
    assert usable_cores(None, 3.0, 8) == 3
    assert usable_cores(None, 0.1, 8) == 1


def test_user_omp_num_threads_wins_and_is_left_alone():
    p = choose({"OMP_NUM_THREADS": "2"}, 2, None, 2)
    assert (p.threads, p.source) == (2, "OMP_NUM_THREADS")
    assert "OMP_NUM_THREADS" not in p.env and "MKL_NUM_THREADS" not in p.env  # torch reads the user's own
    assert p.env == PASSIVE  # the wait policy is still ours to set


def test_mkl_num_threads_alone_is_not_overridden():
    # Setting OMP_NUM_THREADS beside it would be harmless for torch (MKL wins there) but not for other OpenMP users.
    p = choose({"MKL_NUM_THREADS": "3"}, 8, None, 8)
    assert (p.threads, p.source, p.env) == (3, "MKL_NUM_THREADS", PASSIVE)
    both = choose({"MKL_NUM_THREADS": "3", "OMP_NUM_THREADS": "5"}, 8, None, 8)
    assert (both.threads, both.source) == (3, "MKL_NUM_THREADS")  # torch's order


def test_project_variable_wins_over_the_generic_ones():
    p = choose({"SDEDIT_THREADS": "2", "OMP_NUM_THREADS": "7"}, 1, 0.5, 1)
    assert (p.threads, p.source) == (2, "SDEDIT_THREADS")  # the user asked: even above the usable cores
    assert p.env["OMP_NUM_THREADS"] == p.env["MKL_NUM_THREADS"] == "2"


@pytest.mark.parametrize("value", ["auto", "", "0", "-1", "many"])
def test_project_variable_auto_or_invalid_falls_back_to_the_rule(value):
    p = choose({"SDEDIT_THREADS": value}, 2, None, 2)
    assert (p.threads, p.source) == (1, "auto")


def test_invalid_omp_value_keeps_the_users_variable_but_reports_the_rule():
    p = choose({"OMP_NUM_THREADS": "lots"}, 2, None, 2)
    assert (p.threads, p.source) == (1, "auto")
    assert "OMP_NUM_THREADS" not in p.env


@pytest.mark.parametrize("env", [{"OMP_WAIT_POLICY": "active"}, {"GOMP_SPINCOUNT": "10000"}])
def test_user_wait_variables_win(env):
    p = choose(env, 2, None, 2)
    assert not set(p.env) & {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"}
    assert p.wait == ("ACTIVE" if "OMP_WAIT_POLICY" in env else "user")


def test_describe_is_one_line():
    p = choose({}, 2, 1.5, 2)
    line = threads.describe(p)
    assert "\n" not in line
    assert "1 intra-op (auto)" in line and "wait PASSIVE" in line and "quota 1.5" in line


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
    assert r["env"]["OMP_WAIT_POLICY"] == "PASSIVE" and r["env"]["GOMP_SPINCOUNT"] == "0"
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
    assert r["threads"] == r["policy"] and r["env"]["OMP_WAIT_POLICY"] == "PASSIVE"
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
def test_the_cli_and_the_app_apply_the_policy_at_start_up(start):
    expected = threads.current(env={}).threads
    if "run_module" in start:  # the CLI exits when its command is done
        start = f"try:\n    {start}\nexcept SystemExit:\n    pass"
    code = STARTUP.format(start=start)
    r = probe({}, code)
    assert r["threads"] == expected
    assert r["env"] == {"OMP_NUM_THREADS": str(expected), "OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "0"}
    r = probe({"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "ACTIVE"}, code)  # a user's choice wins
    assert r["threads"] == 2 and r["env"]["OMP_WAIT_POLICY"] == "ACTIVE"
