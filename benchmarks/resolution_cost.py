"""What one evaluation of the embedded model's network costs on the CPU at its resolution and at larger ones.

    python -m benchmarks.resolution_cost              # 64, 96 and 128 px, 1 torch thread (about a minute)
    python -m benchmarks.resolution_cost --threads 2 --sizes 64,128

The network is the embedded model's own architecture (`models/fluent-emoji-64/unet/config.json`) with random
weights (a convolution's time does not depend on its values) at each sample size, batch 1. The sizes are timed
in interleaved rounds (64, 96, 128, 64, ...), so a change of the machine's load hits all of them; medians, with
the load average before and after. Writes benchmarks/results/resolution-cost.json and the model card's
`resolution-cost` section (models/fluent-emoji-64/README.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from benchmarks.harness import REPO, RESULTS, load_average, load_words, machine, publish

MODEL = REPO / "models" / "fluent-emoji-64"
DEFAULT_EVALUATIONS = 10  # the app's default edit: t0 = 0.5 of a 20-step DPM-Solver++ schedule


def measure(sizes: tuple[int, ...], rounds: int, threads: int) -> dict:
    import torch

    from benchmarks.common import build_unet

    torch.set_num_threads(threads)
    config = json.loads((MODEL / "unet" / "config.json").read_text())
    arch = {k: v for k, v in config.items() if not k.startswith("_")}
    nets = {size: build_unet(arch, size) for size in sizes}
    inputs = {size: torch.randn(1, 3, size, size) for size in sizes}
    level = torch.full((1,), 500.0)
    load_before = load_average()
    times: dict[int, list[float]] = {size: [] for size in sizes}
    with torch.inference_mode():
        for size in sizes:  # warm-up
            nets[size](inputs[size], level)
        for _ in range(rounds):
            for size in sizes:
                t = time.perf_counter()
                nets[size](inputs[size], level)
                times[size].append((time.perf_counter() - t) * 1000)
    base = statistics.median(times[sizes[0]])
    return {
        "model": MODEL.name,
        "sizes": [
            {
                "size": size,
                "ms_per_evaluation": round(statistics.median(times[size]), 2),
                "best_ms": round(min(times[size]), 2),
                "ratio": round(statistics.median(times[size]) / base, 3),
            }
            for size in sizes
        ],
        "rounds": rounds,
        "threads": torch.get_num_threads(),
        "load_start": load_before,
        "load_end": load_average(),
        "env": machine(),
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def render(r: dict) -> str:
    """The model card's `resolution-cost` section from benchmarks/results/resolution-cost.json."""
    per = ", ".join(
        f"{s['ms_per_evaluation']:.0f} ms at {s['size']} px" + ("" if s["ratio"] == 1 else f" ({s['ratio']:.1f}x)")
        for s in r["sizes"]
    )
    edit = ", ".join(f"{DEFAULT_EVALUATIONS * s['ms_per_evaluation'] / 1000:.2f} s" for s in r["sizes"])
    return (
        f"**Cost on the CPU.** One evaluation of this architecture (random weights, batch 1) takes {per}; an edit"
        f" at the app's defaults (t0 = 0.5, DPM-Solver++ with a 20-step schedule: {DEFAULT_EVALUATIONS} evaluations)"
        f" would be {edit}. Measured {r['when']} by `python -m benchmarks.resolution_cost` ({r['threads']} torch"
        f" thread(s) on {r['env']['cores']} cores of {r['env']['cpu']}, torch {r['env']['torch']}; medians of"
        f" {r['rounds']} interleaved rounds; {load_words(r['load_start'], r['load_end'])})."
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="64,96,128", help="sample sizes, comma-separated; the first is the base")
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-docs", action="store_true", help="print, do not write the model card")
    p.add_argument("--out", default=str(RESULTS / "resolution-cost.json"))
    args = p.parse_args(argv)
    sizes = tuple(int(s) for s in args.sizes.split(",") if s.strip())
    r = measure(sizes, args.rounds, args.threads)
    publish(r, args.out, render(r), "resolution-cost", not args.no_docs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
