"""CPU threads, side by side in one run: the library and the app, on a quiet machine and beside a busy process.

    python -m benchmarks.threads              # ~5 minutes on 2 cores; writes results/threads.json and its section
    python -m benchmarks.threads --rounds 3   # more rounds (each: every configuration idle, light, busy)
    python -m benchmarks.threads --no-docs    # print only

Four configurations stay loaded at once, each in its own process (OpenMP reads its variables when torch loads):

* ``torch default``: torch's own settings (2 spin-waiting OpenMP threads on 2 cores), ``threads=None``;
* ``one passive thread``: ``OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE``, one thread that sleeps while it waits;
* ``sdedit``: the library as a user gets it, ``sdedit.threads.apply()`` then ``SDEditPipeline`` (threads "auto");
* ``app``: ``python app.py``, its ``/edit`` through gradio_client, waiting for all its outputs (the animation too).

Each round times ``--edits`` default edits (the app's default settings on the embedded model, strokes-heart.png,
1 sample) in every configuration with the machine as it is ("idle"), beside a process busy a fifth of the time
("light"), and beside one ``python -c "while True: pass"`` ("busy"). Medians over the rounds; the load average
is recorded.
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
used, forward = [], pipe.unet.forward
pipe.unet.forward = lambda *a, **k: used.append(torch.get_num_threads()) or forward(*a, **k)
edit = lambda: pipe(sys.argv[3], seed=0, progress=False)  # the model's default settings, as the app's
edit()
print(json.dumps({"ready": True, "torch_threads": torch.get_num_threads()}), flush=True)
for line in sys.stdin:
    times, used[:] = [], []
    for _ in range(int(line)):
        t = time.perf_counter()
        edit()
        times.append(time.perf_counter() - t)
    print(json.dumps({"times": times, "threads": sorted(set(used))}), flush=True)
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

    def edits(self, n: int) -> tuple[list[float], list[int]]:
        """n timed edits: their seconds, and the thread counts the network ran with."""
        self.proc.stdin.write(f"{n}\n")
        self.proc.stdin.flush()
        answer = json.loads(self.proc.stdout.readline())
        return answer["times"], answer["threads"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(30)


class App:
    """`python app.py` with its own thread policy, and /edit through gradio_client until all its outputs."""

    def __init__(self):
        from gradio_client import Client

        from benchmarks.app_load import DEFAULT_SETTINGS, edit_args
        from benchmarks.harness import Server
        from sdedit.configs import default_config

        for name in THREAD_VARS:
            os.environ.pop(name, None)
        self.server = Server().start()
        self.client = Client(self.server.url, verbose=False)
        d = default_config().defaults  # the app's default settings, as the library children use
        settings = {**DEFAULT_SETTINGS, "strength": d.strength, "sampler": d.sampler, "steps": d.num_inference_steps}
        self.args = edit_args(GUIDE, None, {**settings, "seed": 0})
        self.edits(1)

    def edits(self, n: int) -> tuple[list[float], list[int]]:
        times = []
        for _ in range(n):
            t = time.perf_counter()
            self.client.predict(**self.args, api_name="/edit")
            times.append(time.perf_counter() - t)
        return times, []

    def close(self) -> None:
        self.server.stop()


# The competing process of each state: none, a light load (busy 20% of every 20 ms), one busy core.
STATES = {"idle": None, "light": 0.2, "busy": 1.0}
LOOP = """
import sys, time
duty = float(sys.argv[1])
while True:
    t = time.perf_counter()
    while time.perf_counter() - t < 0.02 * duty:
        pass
    if duty < 1:
        time.sleep(0.02 * (1 - duty))
"""


class Busy:
    """One competing process, busy `duty` of the time, while the block runs."""

    def __init__(self, duty: float):
        self.duty = duty

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", LOOP, str(self.duty)])
        time.sleep(1.5)  # the load monitor reads over the last half second
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait(5)
        time.sleep(1.5)


def measure(rounds: int, edits: int) -> dict:
    runners = {name: Child(name) for name in LIBRARIES}
    runners["app"] = App()
    times = {name: {state: [] for state in STATES} for name in runners}
    used = {name: {state: set() for state in STATES} for name in runners}
    loads = []

    def block(state: str) -> None:
        for name, runner in runners.items():
            time.sleep(1.0)  # "idle" means nothing ran for the last second (the previous configuration did)
            seconds, threads = runner.edits(edits)
            times[name][state] += seconds
            used[name][state] |= set(threads)

    try:
        for r in range(rounds):
            for state, duty in STATES.items():
                loads.append(loadavg())
                if duty is None:
                    block(state)
                else:
                    with Busy(duty):
                        block(state)
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
        "threads_used": {name: {s: sorted(v) for s, v in u.items()} for name, u in used.items() if name != "app"},
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
        **{f"{name}_{state}_vs_idle": r(m[name][state], m[name]["idle"]) for name in m for state in m[name]},
    }


def _met(value: float, target: float) -> str:
    return f"**{value:.2f}x** (target <= {target:g}x: {'met' if value <= target else 'missed'})"


def render(res: dict) -> str:
    """The docs section, from the results file alone."""
    m, q, t = res["median_s"], res["ratios"], res["targets"]
    used = res.get("threads_used", {})

    def cell(name: str, state: str) -> str:
        counts = used.get(name, {}).get(state)
        threads = f" ({'/'.join(map(str, counts))})" if counts else ""
        ratio = "" if state == "idle" else f", {q[f'{name}_{state}_vs_idle']:.2f}x"
        return f"{m[name][state]:.2f}{threads}{ratio}"

    rows = "\n".join(f"| {name} | {cell(name, 'idle')} | {cell(name, 'light')} | {cell(name, 'busy')} |" for name in m)
    la = res["load_average"]
    auto_idle = _met(q["sdedit_idle_vs_default_idle"], t["auto_idle_vs_default"])
    lib_busy = _met(q["sdedit_busy_vs_idle"], t["busy_vs_idle"])
    app_busy = _met(q["app_busy_vs_idle"], t["busy_vs_idle"])
    app_idle = _met(q["app_idle_vs_default_idle"], t["app_vs_library"])
    return f"""## CPU threads: the free cores, per edit

Measured {res["measured"]} by `python -m benchmarks.threads` on {res["machine"]["cpus"]} CPU cores (1-minute load
average {la["min"]}-{la["max"]} during the run), {res["rounds"]} rounds of {res["edits_per_round"]} edits per
configuration; each round idle, beside a light load (a process busy a fifth of every 20 ms), and beside one busy
`python -c "while True: pass"`. Medians, seconds per default edit (the embedded model's default settings,
strokes-heart.png), with the thread counts the network ran with in brackets and the time against the same
configuration's idle time. The app's time is `/edit` through gradio_client until all its outputs (results and
animation), with the client on the same cores.

| configuration | idle s | beside a light load s | beside 1 busy process s |
|---|---|---|---|
{rows}

- The library (`sdedit`, threads "auto") idle, against torch's default idle: {auto_idle}
- Beside one busy process, against its own idle time: the library {lib_busy}, the app {app_busy}
- The app's `/edit` idle, against the plain library call under torch's defaults: {app_idle}

**The rule** (`sdedit/threads.py`): torch keeps OpenMP's own spin-waiting, which is what makes two threads fast
when both cores are free, and each edit sets the threads of the thread that runs the network to the usable cores
(affinity and cgroup quota) less those other processes hold, read from `/proc/stat` over about the last half
second, before every network evaluation. A core counts as held once others use more than a fifth of it (the light
load's column is why). `apply()` at start-up only caps OpenMP at the usable cores.
`SDEditPipeline(..., threads=None)` leaves torch's settings alone, `threads=N` fixes them; `SDEDIT_THREADS=N` fixes
every edit; a user's `OMP_NUM_THREADS`/`MKL_NUM_THREADS` make edits leave torch alone.
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
