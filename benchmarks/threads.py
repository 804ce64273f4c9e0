"""CPU threads, side by side in one run: the library and the app, on a quiet machine and beside a busy process.

    python -m benchmarks.threads              # ~4 minutes on 2 cores; writes results/threads.json and its section
    python -m benchmarks.threads --rounds 3   # more rounds (each: every configuration idle, then busy)
    python -m benchmarks.threads --no-docs    # print only

Four configurations stay loaded at once, each in its own process (OpenMP reads its variables when torch loads):

* ``torch default``: torch's own settings (2 spin-waiting OpenMP threads on 2 cores), ``threads=None``;
* ``one passive thread``: ``OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE``, the rule before this one;
* ``sdedit``: the library as a user gets it, ``sdedit.threads.apply()`` then ``SDEditPipeline`` (threads "auto");
* ``app``: ``python app.py``, its ``/edit`` through gradio_client, waiting for all its outputs (the animation too).

Each round times ``--edits`` default edits (the app's default on the embedded model: strokes-heart.png, t0 0.5,
DPM-Solver++ N = 20, 1 sample) in every configuration with the machine as it is ("idle"), then again beside one
``python -c "while True: pass"`` started here ("busy"). Medians over the rounds; the load average is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.harness import THREAD_VARS, publish

REPO = Path(__file__).resolve().parent.parent
RESULT = REPO / "benchmarks" / "results" / "threads.json"
GUIDE = REPO / "examples" / "strokes-heart.png"
TARGETS = {"auto_idle_vs_default": 1.1, "busy_vs_idle": 2.0, "app_vs_library": 1.3}

LIBRARIES = {
    "torch default": {"env": {}, "apply": False, "threads": None},
    "one passive thread": {
        "env": {"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"},
        "apply": False,
        "threads": None,
    },
    "sdedit": {"env": {}, "apply": True, "threads": "auto"},
}

# A library child: loads the embedded model once, then answers "N" on stdin with N timed edits as JSON.
CHILD = """
import json, sys
apply, threads_arg = sys.argv[1] == "1", json.loads(sys.argv[2])
if apply:
    import sdedit.threads
    sdedit.threads.apply()
from sdedit import SDEditPipeline
from sdedit.accel import quiet_diffusers
import time, torch
with quiet_diffusers():
    pipe = SDEditPipeline.from_pretrained(None, threads=threads_arg)
pipe.set_progress_bar_config(disable=True)
edit = lambda: pipe(sys.argv[3], strength=0.5, sampler="dpmpp", num_inference_steps=20, seed=0, progress=False)
edit()
print(json.dumps({"ready": True, "torch_threads": torch.get_num_threads()}), flush=True)
for line in sys.stdin:
    times = []
    for _ in range(int(line)):
        t = time.perf_counter()
        edit()
        times.append(time.perf_counter() - t)
    print(json.dumps({"times": times}), flush=True)
"""


def loadavg() -> float:
    return round(os.getloadavg()[0], 2)


class Child:
    """One library configuration in its own process."""

    def __init__(self, name: str):
        spec = LIBRARIES[name]
        env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
        env.update({**spec["env"], "TQDM_DISABLE": "1"})
        args = ["1" if spec["apply"] else "0", json.dumps(spec["threads"]), str(GUIDE)]
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, *args], cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        self.info = json.loads(self.proc.stdout.readline())

    def edits(self, n: int) -> list[float]:
        self.proc.stdin.write(f"{n}\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())["times"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(30)


class App:
    """`python app.py` with its own thread policy, and /edit through gradio_client until all its outputs."""

    def __init__(self):
        from gradio_client import Client

        from benchmarks.app_load import DEFAULT_SETTINGS, edit_args
        from benchmarks.harness import Server

        for name in THREAD_VARS:
            os.environ.pop(name, None)
        self.server = Server().start()
        self.client = Client(self.server.url, verbose=False)
        self.args = edit_args(GUIDE, None, {**DEFAULT_SETTINGS, "seed": 0})
        self.edits(1)

    def edits(self, n: int) -> list[float]:
        times = []
        for _ in range(n):
            t = time.perf_counter()
            self.client.predict(**self.args, api_name="/edit")
            times.append(time.perf_counter() - t)
        return times

    def close(self) -> None:
        self.server.stop()


class Busy:
    """One competing busy process while the block runs."""

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(1.5)  # the load monitor reads over the last second
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait(5)
        time.sleep(1.5)


def measure(rounds: int, edits: int) -> dict:
    runners = {name: Child(name) for name in LIBRARIES}
    runners["app"] = App()
    times = {name: {"idle": [], "busy": []} for name in runners}
    loads = []
    try:
        for r in range(rounds):
            for state in ("idle", "busy"):
                loads.append(loadavg())
                if state == "busy":
                    with Busy():
                        for name, runner in runners.items():
                            times[name][state] += runner.edits(edits)
                else:
                    for name, runner in runners.items():
                        times[name][state] += runner.edits(edits)
                print(f"  round {r + 1} {state}: load {loadavg()}", flush=True)
    finally:
        for runner in runners.values():
            runner.close()
    loads.append(loadavg())
    medians = {name: {s: round(statistics.median(v), 3) for s, v in t.items()} for name, t in times.items()}
    return {
        "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "load_average": {"min": min(loads), "max": max(loads)},
        "rounds": rounds,
        "edits_per_round": edits,
        "torch_threads_at_start": {name: r.info["torch_threads"] for name, r in runners.items() if hasattr(r, "info")},
        "median_s": medians,
        "times_s": {name: {s: [round(x, 3) for x in v] for s, v in t.items()} for name, t in times.items()},
        "ratios": ratios(medians),
        "targets": TARGETS,
    }


def ratios(m: dict) -> dict:
    def r(a, b):
        return round(a / b, 2)

    return {
        "sdedit_idle_vs_default_idle": r(m["sdedit"]["idle"], m["torch default"]["idle"]),
        "app_idle_vs_default_idle": r(m["app"]["idle"], m["torch default"]["idle"]),
        **{f"{name}_busy_vs_idle": r(m[name]["busy"], m[name]["idle"]) for name in m},
    }


def _met(value: float, target: float) -> str:
    return f"**{value:.2f}x** (target <= {target:g}x: {'met' if value <= target else 'missed'})"


def render(res: dict) -> str:
    """The docs section, from the results file alone."""
    m, q, t = res["median_s"], res["ratios"], res["targets"]
    rows = "\n".join(
        f"| {name} | {v['idle']:.2f} | {v['busy']:.2f} | {q[f'{name}_busy_vs_idle']:.2f}x |" for name, v in m.items()
    )
    la = res["load_average"]
    auto_idle = _met(q["sdedit_idle_vs_default_idle"], t["auto_idle_vs_default"])
    lib_busy = _met(q["sdedit_busy_vs_idle"], t["busy_vs_idle"])
    app_busy = _met(q["app_busy_vs_idle"], t["busy_vs_idle"])
    app_idle = _met(q["app_idle_vs_default_idle"], t["app_vs_library"])
    return f"""## CPU threads: the free cores, per edit

Measured {res["measured"]} by `python -m benchmarks.threads` on {res["machine"]["cpus"]} CPU cores (1-minute load
average {la["min"]}-{la["max"]} during the run), {res["rounds"]} rounds of {res["edits_per_round"]} edits per
configuration, each round idle and then beside one busy `python -c "while True: pass"`; medians, seconds per
default edit (embedded model, t0 0.5, DPM-Solver++ N = 20). The app's time is `/edit` through gradio_client until
all its outputs (results and animation).

| configuration | idle s | beside 1 busy process s | busy / idle |
|---|---|---|---|
{rows}

- The library (`sdedit`, threads "auto") idle, against torch's default idle: {auto_idle}
- Beside one busy process, against its own idle time: the library {lib_busy}, the app {app_busy}
- The app's `/edit` idle, against the plain library call under torch's defaults: {app_idle}

**The rule** (`sdedit/threads.py`): torch keeps OpenMP's own spin-waiting, which is what makes two threads fast
when both cores are free, and each edit sets the threads of the thread that runs the network to the usable cores
(affinity and cgroup quota) less those other processes hold, read from `/proc/stat` over about the last second,
before every network evaluation. A core counts as held once others use more than a third of it. `apply()` at
start-up only caps OpenMP at the usable cores. `SDEditPipeline(..., threads=None)` leaves torch's settings alone,
`threads=N` fixes them; `SDEDIT_THREADS=N` fixes every edit; a user's `OMP_NUM_THREADS`/`MKL_NUM_THREADS` make edits
leave torch alone.
"""


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--edits", type=int, default=3, help="timed edits per configuration and round")
    p.add_argument("--no-docs", action="store_true", help="print the section without writing docs/performance.md")
    args = p.parse_args(argv)
    res = measure(args.rounds, args.edits)
    publish(res, RESULT, render(res), "threads", docs=not args.no_docs)


if __name__ == "__main__":
    main()
