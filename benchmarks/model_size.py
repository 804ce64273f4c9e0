"""Would a larger embedded model fit the CPU budget? Per-evaluation cost of the shipped network and wider ones.

    python -m benchmarks.model_size           # ~1 min; writes benchmarks/results/model-size.json

For each candidate (the shipped `configs/train-fluent-emoji-64-gpu.yaml` network, and the same with wider
channels): parameters, multiply-accumulates of one evaluation at 64 px (counted on every convolution and linear
layer, the bulk of the work), and the time of one evaluation at batch 1, timed in interleaved rounds (median),
in the process's thread policy, with the load average. The budget: Generate at the defaults (10 evaluations at
t0 0.5 with 20 steps, plus the upscaler) under 2 s on 2 cores, and auto t0 costing several edits' evaluations.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

from sdedit import threads

POLICY = threads.apply()

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results" / "model-size.json"
RECIPE = REPO / "configs" / "train-fluent-emoji-64-v2-gpu.yaml"
WIDTHS = {"shipped": [32, 64, 128, 192], "wider": [48, 96, 192, 256], "widest": [64, 128, 256, 320]}


def macs(unet, x, t) -> int:
    """Multiply-accumulates of one forward, from every Conv2d and Linear layer's output size."""
    import torch

    total = [0]

    def conv(m, args, out):
        k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
        total[0] += out.numel() * k

    def linear(m, args, out):
        total[0] += out.numel() * m.in_features

    hooks = [
        m.register_forward_hook(conv if isinstance(m, torch.nn.Conv2d) else linear)
        for m in unet.modules()
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
    ]
    with torch.inference_mode():
        unet(x, t)
    for h in hooks:
        h.remove()
    return total[0]


def measure(rounds: int) -> dict:
    from dataclasses import replace

    import torch

    from benchmarks.upscaler import _timings
    from sdedit.lab.train import TrainConfig, build_unet

    cfg = TrainConfig.from_yaml(RECIPE)
    x, t = torch.randn(1, 3, cfg.resolution, cfg.resolution), torch.tensor([500])
    nets = {}
    for name, widths in WIDTHS.items():
        model = {**cfg.model, "block_out_channels": widths}
        nets[name] = build_unet(replace(cfg, model=model)).eval()

    def once(net):
        with torch.inference_mode():
            net(x, t)

    load_before = os.getloadavg()[0]
    seconds = _timings({name: (lambda n=net: once(n)) for name, net in nets.items()}, rounds)
    load_after = os.getloadavg()[0]
    out = {}
    for name, net in nets.items():
        out[name] = {
            "block_out_channels": WIDTHS[name],
            "parameters": sum(p.numel() for p in net.parameters()),
            "macs_per_evaluation": macs(net, x, t),
            "ms_per_evaluation": round(1000 * seconds[name], 1),
        }
    base = out["shipped"]
    for row in out.values():
        row["macs_vs_shipped"] = round(row["macs_per_evaluation"] / base["macs_per_evaluation"], 2)
        row["time_vs_shipped"] = round(row["ms_per_evaluation"] / base["ms_per_evaluation"], 2)
    return {
        "candidates": out,
        "rounds": rounds,
        "machine": f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
        f"{threads.describe(POLICY)}",
        "load_average": [round(load_before, 1), round(load_after, 1)],
        "note": "times on a shared machine are upper bounds; the MAC ratio is the machine-free estimate",
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.model_size", description=__doc__.split("\n", 1)[0])
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--out", default=str(RESULTS))
    a = p.parse_args(argv)
    result = measure(a.rounds)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
