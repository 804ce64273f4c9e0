"""Loading a UNet with and without `accelerate`: time and peak memory, side by side in one run.

    python -m benchmarks.model_load --accelerate-site /tmp/accel-site    # accelerate installed there (pip --target)
    python -m benchmarks.model_load --quick --accelerate-site ...         # 2 rounds, embedded model only

Without `accelerate`, diffusers' `from_pretrained` asks for `low_cpu_mem_usage=True` by default, cannot have
it, falls back to False and prints five lines of advice to install the package, on every load. Three ways
of loading are compared, each in a fresh Python process (so imports, caches and peak memory are its own):

- `default, no accelerate`: diffusers' default; what every load did before (the advice printed).
- `low_cpu_mem_usage=False`: the same loading path, asked for explicitly (what `sdedit.loading` does now).
- `accelerate`: the package on the path, diffusers' default `low_cpu_mem_usage=True` (no random
  initialisation; weights loaded straight into an empty model).

Per process: the seconds to import diffusers (and accelerate where it is found), the seconds of
`UNet2DModel.from_pretrained` as `sdedit.loading` calls it (safetensors, float32, CPU), the peak resident
memory the load added (the process's high-water mark once every weight has been read, as a first forward
reads them, minus its resident size before the load), and how often stderr holds the install advice. Models:
the embedded `fluent-emoji-64` and the `ddpm-church-256` architecture with random weights saved as
safetensors (they load as the real checkpoint's do). The ways run in interleaved rounds (a change of load
hits all of them); medians are reported with the load average before and after. Threads: the CLI's
policy (`sdedit.threads.apply()`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import publish

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results" / "model-load.json"
DOCS = REPO / "docs" / "performance.md"
EMBEDDED = REPO / "models" / "fluent-emoji-64"
WAYS = ("default, no accelerate", "low_cpu_mem_usage=False", "accelerate")
ADVICE = "pip install accelerate"


def _status_mb(key: str) -> float:
    """A memory line of /proc/self/status in MB: VmRSS (resident now) or VmHWM (its high-water mark, which,
    unlike getrusage's ru_maxrss, starts afresh at exec and so is this process's own)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {key} in /proc/self/status")


def child(way: str, folder: str, subfolder: str | None) -> dict:
    """One load in this (fresh) process: import, load, memory. Printed as one JSON line."""
    from sdedit import threads

    threads.apply()
    t = time.perf_counter()
    import torch
    from diffusers import UNet2DModel
    from diffusers.utils import is_accelerate_available

    import_s = time.perf_counter() - t
    kwargs = {"low_cpu_mem_usage": False} if way == "low_cpu_mem_usage=False" else {}
    before = _status_mb("VmRSS")
    t = time.perf_counter()
    unet = UNet2DModel.from_pretrained(
        folder, subfolder=subfolder, torch_dtype=torch.float32, use_safetensors=None, **kwargs
    )
    load_s = time.perf_counter() - t
    with torch.no_grad():  # read every weight once, as the first forward does: mapped files become resident
        float(sum(p.double().sum() for p in unet.parameters()))
    peak = _status_mb("VmHWM")
    params = sum(p.numel() for p in unet.parameters())
    return {
        "import_s": import_s,
        "load_s": load_s,
        "load_peak_mb": peak - before,
        "peak_mb": peak,
        "weights_mb": params * 4 / 2**20,
        "accelerate": is_accelerate_available(),
    }


def run_child(way: str, folder: Path, subfolder: str | None, site: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1", PYTHONPATH=str(REPO))
    if way == "accelerate":
        env["PYTHONPATH"] = f"{site}{os.pathsep}{REPO}"
    cmd = [sys.executable, "-m", "benchmarks.model_load", "--child", way, str(folder), subfolder or ""]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"{way} on {folder}: {proc.stderr[-2000:]}")
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    row["advice_printed"] = proc.stderr.count(ADVICE)
    row["stderr_lines"] = len([line for line in proc.stderr.splitlines() if line.strip()])
    return row


def ddpm_256_folder(root: Path) -> Path:
    """The ddpm-church-256 architecture with random weights, saved as the loader reads it."""
    from benchmarks.common import build_unet

    folder = root / "ddpm-church-256-random"
    if not (folder / "unet" / "diffusion_pytorch_model.safetensors").is_file():
        build_unet("ddpm-church-256").save_pretrained(folder / "unet")
    return folder


def _median(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def render(result: dict) -> str:
    lines = [
        f"Loading one UNet in a fresh process, three ways ({result['rounds']} interleaved rounds, medians; load "
        f"average {result['load_avg_before'][0]:.1f} before, {result['load_avg_after'][0]:.1f} after; "
        f"{result['machine']['cpu_count']} cores; `python -m benchmarks.model_load`, "
        "`benchmarks/results/model-load.json`):",
        "",
        "| model | way | import s | load s | peak MB added (load + first read) | times the install advice is printed |",
        "|---|---|---|---|---|---|",
    ]
    for model, ways in result["models"].items():
        for way, m in ways.items():
            lines.append(
                f"| {model} ({m['weights_mb']:.0f} MB of weights) | {way} | {m['import_s']:.2f} | {m['load_s']:.2f} "
                f"| {m['load_peak_mb']:.0f} | {m['advice_printed']} |"
            )
    lines.append("")
    for model, ways in result["models"].items():
        a, b = ways["accelerate"], ways["low_cpu_mem_usage=False"]
        lines.append(
            f"- {model}: with accelerate, import + load takes {ratio(a, b, 'import_s', 'load_s'):.2f}x the time of "
            f"`low_cpu_mem_usage=False`, and the load adds {ratio(a, b, 'load_peak_mb'):.2f}x the memory."
        )
    return "\n".join(lines)


def ratio(a: dict, b: dict, *keys: str) -> float:
    """sum(a[k]) / sum(b[k]) over `keys` (nan when the denominator is 0)."""
    den = sum(b[k] for k in keys)
    return sum(a[k] for k in keys) / den if den else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", nargs=3, metavar=("WAY", "FOLDER", "SUBFOLDER"), help=argparse.SUPPRESS)
    parser.add_argument("--accelerate-site", required=False, help="a folder holding accelerate (pip --target)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2 rounds, the embedded model only")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite the docs section")
    args = parser.parse_args(argv)
    if args.child:
        way, folder, sub = args.child
        print(json.dumps(child(way, folder, sub or None)))
        return 0
    if not args.accelerate_site or not (Path(args.accelerate_site) / "accelerate").is_dir():
        parser.error("--accelerate-site must be a folder that holds accelerate (pip install --target DIR accelerate)")
    rounds = 2 if args.quick else args.rounds
    with tempfile.TemporaryDirectory() as tmp:
        models = {"fluent-emoji-64": (EMBEDDED, "unet")}
        if not args.quick:
            models["ddpm-church-256"] = (ddpm_256_folder(Path(tmp)), "unet")
        load_before = [round(x, 2) for x in os.getloadavg()]
        rows: dict[str, dict[str, list[dict]]] = {m: {w: [] for w in WAYS} for m in models}
        for r in range(rounds):
            for model, (folder, sub) in models.items():
                for way in WAYS:
                    rows[model][way].append(run_child(way, folder, sub, args.accelerate_site))
            print(f"round {r + 1}/{rounds} done (load {os.getloadavg()[0]:.1f})", file=sys.stderr)
        load_after = [round(x, 2) for x in os.getloadavg()]
    summary = {
        model: {
            way: {
                "import_s": round(_median(rs, "import_s"), 3),
                "load_s": round(_median(rs, "load_s"), 3),
                "load_peak_mb": round(_median(rs, "load_peak_mb"), 1),
                "weights_mb": round(rs[0]["weights_mb"], 1),
                "advice_printed": max(r["advice_printed"] for r in rs),
                "accelerate_found": rs[0]["accelerate"],
                "runs": rs,
            }
            for way, rs in ways.items()
        }
        for model, ways in rows.items()
    }
    import platform

    result = {
        "rounds": rounds,
        "load_avg_before": load_before,
        "load_avg_after": load_after,
        "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(), "time": time.ctime()},
        "models": summary,
    }
    publish(result, Path(args.out), render(result), "model-load", docs=not args.no_docs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
