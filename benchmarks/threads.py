"""CPU thread configurations measured side by side, idle and beside one busy process (issue 12).

    python -m benchmarks.threads            # all configurations, idle and busy, ~1-2 minutes on 2 cores
    python -m benchmarks.threads --edits 5  # more timed edits per configuration

Each configuration runs in a fresh subprocess (OpenMP reads its variables when torch loads), loads the
embedded model, does one warm-up edit and then times ``--edits`` default edits (t0 = 0.5, seed 0) of a 256px
RGB guide. "busy" starts one competing ``python -c "while True: pass"`` for the duration of that child only.
Prints the median edit time of each, the busy/idle ratio, each ratio to torch's default idle time, and the
load average before and after (the machine is shared: a high load average makes the numbers suspect).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# name -> environment for the child; None values are removed. "policy" calls sdedit.threads.apply() instead.
CONFIGS: dict[str, dict[str, str | None]] = {
    "torch default": {},
    "1 thread": {"OMP_NUM_THREADS": "1"},
    "2 threads + PASSIVE": {"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"},
    "sdedit.threads.apply()": {},
}
CLEARED = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "SDEDIT_THREADS")

CHILD = """
import json, sys, time
if sys.argv[1] == "1":  # the module alone, before torch loads (importing the package loads torch today)
    import importlib.util
    spec = importlib.util.spec_from_file_location("sdedit_threads", "sdedit/threads.py")
    threads = sys.modules["sdedit_threads"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(threads)
    line = threads.describe(threads.apply())
else:
    line = ""
import numpy as np
import torch
from PIL import Image
from sdedit import SDEditPipeline
from sdedit.accel import quiet_diffusers
with quiet_diffusers():
    pipe = SDEditPipeline.from_pretrained(None)
pipe.set_progress_bar_config(disable=True)
img = Image.fromarray((np.indices((256, 256)).sum(0) % 256).astype("uint8")).convert("RGB")
pipe(img, strength=0.5, seed=0)
times = []
for _ in range(int(sys.argv[2])):
    t = time.perf_counter()
    pipe(img, strength=0.5, seed=0)
    times.append(time.perf_counter() - t)
print(json.dumps({"times": times, "threads": torch.get_num_threads(), "policy": line}))
"""


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def run_child(name: str, busy: bool, edits: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env.update({k: v for k, v in CONFIGS[name].items() if v is not None})
    env["TQDM_DISABLE"] = "1"
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        if hog is not None:
            time.sleep(0.5)
        flag = "1" if name == "sdedit.threads.apply()" else "0"
        out = subprocess.run(
            [sys.executable, "-c", CHILD, flag, str(edits)],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=3, help="timed edits per configuration (after 1 warm-up)")
    args = parser.parse_args(argv)
    print(f"cpus {os.cpu_count()}, load average before: {loadavg()}")
    rows = []
    for name in CONFIGS:
        res = {busy: run_child(name, busy, args.edits) for busy in (False, True)}
        rows.append((name, res))
        print(f"  ran {name!r}: load average {loadavg()}", flush=True)
    base = statistics.median(rows[0][1][False]["times"])
    print()
    print("| configuration | torch threads | idle s | beside 1 busy process s | busy / idle | idle / default idle |")
    print("|---|---|---|---|---|---|")
    for name, res in rows:
        idle, busy = (statistics.median(res[b]["times"]) for b in (False, True))
        print(
            f"| {name} | {res[False]['threads']} | {idle:.2f} | {busy:.2f} | {busy / idle:.1f}x | {idle / base:.2f} |"
        )
    for name, res in rows:
        if res[False]["policy"]:
            print(f"\n{name}: {res[False]['policy']}")
    print(f"\nload average after: {loadavg()}; medians of {args.edits} edits (after 1 warm-up) each")


if __name__ == "__main__":
    main()
