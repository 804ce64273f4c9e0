"""The learned 4x upscaler against bicubic and Lanczos: cost and quality, side by side in one run.

    python -m benchmarks.upscaler                 # cost + quality on all held-out emoji + the two grids
    python -m benchmarks.upscaler --quick         # a few images and rounds (a smoke run)

Cost: milliseconds per 64 -> 256 image for the shipped upscaler (`sdedit.upscale`, from uint8 canvases to
uint8 images, as the pipeline calls it), PIL bicubic and PIL Lanczos (what the pipeline does without it),
at batch 1 and 8. The three are timed in interleaved rounds (ours, bicubic, Lanczos, ours, ...) so a
change of load hits all of them; the median of the rounds is reported, with the load average before and
after (a high load average makes the times upper bounds). Threads: the CLI's and the app's policy
(`sdedit.threads.apply()`), unless --threads is given.

Quality: the held-out emoji (never seen by the diffusion model, nor by the upscaler: the same split as the
evaluation) at 256 px, made 64 px by the Lanczos resize that made the diffusion model's training images (and,
as a check of robustness, by a box / area filter); PSNR (RGB) and SSIM (luma, 11x11 Gaussian window) at
256 px of each method against the original. Writes benchmarks/results/upscaler.json and, unless --no-grids,
docs/img/upscaler-heldout.png and docs/img/upscaler-strokes.png. docs/quality.md's `upscaler` section is
`render`ed from two such runs (1 and 2 threads) and the upscaler's training record.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results" / "upscaler.json"
IMG = REPO / "docs" / "img"
SHIPPED = REPO / "models" / "fluent-emoji-upscaler-4x"
STROKES = ["strokes-smiley.png", "strokes-heart.png", "strokes-apple.png", "strokes-tree.png"]


def _timings(fns: dict, rounds: int) -> dict[str, float]:
    """Median seconds of each function, timed in interleaved rounds after one warm-up call each."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {name: statistics.median(ts) for name, ts in times.items()}


def cost(up, canvases, rounds: int) -> dict:
    from sdedit.lab.upscaler import resize_up

    out = {}
    for batch in (1, 8):
        x = canvases[:batch]
        med = _timings(
            {
                "ours": lambda x=x: up.upscale(x),
                "bicubic": lambda x=x: resize_up(x, 4, "bicubic"),
                "lanczos": lambda x=x: resize_up(x, 4, "lanczos"),
            },
            rounds,
        )
        ms = {k: 1000 * v / batch for k, v in med.items()}
        out[f"batch {batch}"] = {
            "ms_per_image": {k: round(v, 2) for k, v in ms.items()},
            "ours_over_bicubic": round(ms["ours"] / ms["bicubic"], 2),
            "ours_over_lanczos": round(ms["ours"] / ms["lanczos"], 2),
        }
    return out


def quality(up, hr, degradation: str) -> dict:
    import numpy as np

    from sdedit.lab.upscaler import downscale, psnr, resize_up, ssim

    lr = downscale(hr, 4, degradation)
    outs = {"bicubic": resize_up(lr, 4, "bicubic"), "lanczos": resize_up(lr, 4, "lanczos"), "ours": up.upscale(lr)}
    rows = {}
    for name, out in outs.items():
        p, s = psnr(out, hr), ssim(out, hr)
        rows[name] = {"psnr": round(float(p.mean()), 3), "ssim": round(float(s.mean()), 4), "_p": p, "_s": s}
    for name in ("bicubic", "lanczos"):
        rows["ours"][f"psnr_wins_over_{name}"] = round(float(np.mean(rows["ours"]["_p"] > rows[name]["_p"])), 3)
        rows["ours"][f"ssim_wins_over_{name}"] = round(float(np.mean(rows["ours"]["_s"] > rows[name]["_s"])), 3)
    worst = np.argsort(rows["ours"]["_p"] - rows["bicubic"]["_p"])[:5]
    for r in rows.values():
        r.pop("_p"), r.pop("_s")
    return {"images": len(hr), "rows": rows, "worst_vs_bicubic": worst.tolist()}


def heldout_grid(up, hr, names, path: Path, picks: list[int]) -> None:
    from sdedit.lab.upscaler import comparison_grid, downscale, resize_up

    sel = hr[picks]
    lr = downscale(sel, 4, "lanczos")
    columns = {"64 px input": lr, "bicubic": resize_up(lr, 4), "ours": up.upscale(lr), "original": sel}
    comparison_grid(columns).save(path)
    print(f"grid -> {path.relative_to(REPO)} ({', '.join(names[i] for i in picks)})")


def strokes_grid(path: Path, seeds=(0, 1)) -> None:
    """SDEdit results of the embedded model from the stroke examples (its defaults, two seeds each): the
    painting, the 64 px result, bicubic and ours at 256 px."""
    import numpy as np
    from PIL import Image

    from sdedit import SDEditPipeline
    from sdedit.lab.upscaler import comparison_grid, resize_up
    from sdedit.upscale import upscaler_for

    pipe = SDEditPipeline.from_pretrained(None)
    guides, canvases = [], []
    for name in STROKES:
        guide = np.asarray(Image.open(REPO / "examples" / name).convert("RGB"))
        out = pipe(guide, seed=list(seeds), num_images=len(seeds), output_type="uint8", progress=False, upscale=False)
        guides += [guide] * len(seeds)
        canvases += list(out.canvases)
    canvases = np.stack(canvases)
    columns = {
        "stroke painting": np.stack(guides),
        "SDEdit, 64 px": canvases,
        "bicubic": resize_up(canvases, 4),
        "ours": upscaler_for(pipe.config).upscale(canvases),
    }
    comparison_grid(columns).save(path)
    d = pipe.config.defaults
    print(f"grid -> {path.relative_to(REPO)} (t0 {d.strength}, {d.sampler} {d.num_inference_steps}, seeds {seeds})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="8 images, 5 rounds, no grids: a smoke run")
    parser.add_argument("--rounds", type=int, default=30, help="timed rounds per method and batch size")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: the CPU policy's)")
    parser.add_argument("--no-grids", action="store_true")
    parser.add_argument("--out", default=str(RESULTS), help="JSON results file")
    args = parser.parse_args(argv)

    from sdedit import threads

    threads.apply()
    import numpy as np
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from sdedit.lab.data import load_image_set
    from sdedit.upscale import load_upscaler

    load_before = os.getloadavg()
    up = load_upscaler(SHIPPED)
    data = load_image_set("fluent-emoji-3d", 256, 0.1)
    held = data.subset(held_out=True)
    hr = held.images[:8] if args.quick else held.images
    rounds = 5 if args.quick else args.rounds
    from sdedit.lab.upscaler import downscale

    canvases = downscale(held.images[:8], 4, "lanczos")
    result = {
        "upscaler": up.name,
        "config": {k: up.config.get(k) for k in ("kind", "channels", "blocks", "scale")},
        "parameters": sum(p.numel() for p in up.net.parameters()),
        "weights_bytes": (SHIPPED / "model.safetensors").stat().st_size,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "load_average_before": [round(v, 2) for v in load_before],
    }
    t = time.perf_counter()
    result["cost"] = cost(up, canvases, rounds)
    result["quality"] = {d: quality(up, hr, d) for d in ("lanczos", "area")}
    for q in result["quality"].values():
        q["worst_vs_bicubic"] = [held.names[i] for i in q["worst_vs_bicubic"]]
    result["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    result["seconds"] = round(time.perf_counter() - t, 1)

    print(f"{up.name}: {result['parameters']:,} parameters, {result['weights_bytes'] / 1e6:.2f} MB; "
          f"{result['torch_threads']} torch thread(s); load average {result['load_average_before']} -> "
          f"{result['load_average_after']}")  # fmt: skip
    print("\n| 64 -> 256, ms per image | ours | bicubic (PIL) | Lanczos (PIL) | ours / bicubic | ours / Lanczos |")
    print("|---|---|---|---|---|---|")
    for batch, c in result["cost"].items():
        ms = c["ms_per_image"]
        print(f"| {batch} | {ms['ours']:.1f} | {ms['bicubic']:.2f} | {ms['lanczos']:.2f} | "
              f"{c['ours_over_bicubic']:.1f}x | {c['ours_over_lanczos']:.1f}x |")  # fmt: skip
    for d, q in result["quality"].items():
        print(f"\nheld-out emoji ({q['images']} images) made 64 px with {d}; at 256 px:")
        print("| method | PSNR (dB) | SSIM |\n|---|---|---|")
        for name, r in q["rows"].items():
            print(f"| {name} | {r['psnr']:.2f} | {r['ssim']:.4f} |")
        o = q["rows"]["ours"]
        print(f"ours beats bicubic on {o['psnr_wins_over_bicubic']:.0%} (PSNR) / {o['ssim_wins_over_bicubic']:.0%}"
              f" (SSIM) of the images; least gain: {', '.join(q['worst_vs_bicubic'])}")  # fmt: skip
    if not args.quick:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        print(f"\nresults -> {Path(args.out).relative_to(REPO) if Path(args.out).is_absolute() else args.out}")
    if not (args.quick or args.no_grids):
        from sdedit.lab.upscaler import group_key

        picks, seen = [], set()  # eight emoji spread over the held-out set, no two variants of one emoji
        for i in np.linspace(0, len(held) - 9, 8).round().astype(int):
            while group_key(held.names[i]) in seen:
                i += 1
            seen.add(group_key(held.names[i]))
            picks.append(int(i))
        heldout_grid(up, held.images, held.names, IMG / "upscaler-heldout.png", picks)
        strokes_grid(IMG / "upscaler-strokes.png")
    return 0


def _cost_row(r: dict) -> str:
    c1, c8 = r["cost"]["batch 1"], r["cost"]["batch 8"]
    ms1, ms8 = c1["ms_per_image"], c8["ms_per_image"]
    before, after = r["load_average_before"][0], r["load_average_after"][0]
    return (
        f"| {r['torch_threads']} | {before:.1f} → {after:.1f} | {ms1['ours']:.1f} | {ms8['ours']:.1f} "
        f"| {ms1['bicubic']:.2f} / {ms8['bicubic']:.2f} | {ms1['lanczos']:.2f} / {ms8['lanczos']:.2f} "
        f"| {c1['ours_over_bicubic']:.1f}x / {c8['ours_over_bicubic']:.1f}x |"
    )


def render(*records: dict) -> str:
    """docs/quality.md's `upscaler` section: the network, its training (its training.json, the last record) and
    the cost and quality runs (benchmarks/results/upscaler.json and upscaler-2threads.json)."""
    *runs, training = records
    first = runs[0]
    mb = first["weights_bytes"] / 1e6
    monitor = {m["step"]: m["psnr"] for m in training["monitor"]}
    lines = [
        f"**The network:** {first['config']['kind']}, {first['config']['channels']} channels x"
        f" {first['config']['blocks']} blocks, {first['parameters']:,} parameters, {mb:.2f} MB in"
        f" {training['config']['save_dtype']} safetensors.",
        "",
        f"**Training** (`python -m sdedit train-upscaler --config {training['config_file']}`, its record"
        f" `models/{training['name']}/training.json`): {training['train_images']:,} training-split images,"
        f" {training['monitor_images']} held back as the monitor set; **{training['steps']:,} steps in"
        f" {training['train_seconds'] / 60:.1f} minutes** on {training['threads']} thread(s) of {training['device']}"
        f" (torch {training['torch']}); final L1 {training['final_loss_mean_last_200']:.4f} (mean of the last 200"
        f" steps); monitor PSNR "
        + ", ".join(
            f"{psnr:.1f} dB at step {step:,}" for step, psnr in list(monitor.items())[:: max(1, len(monitor) // 3)]
        )
        + f", {training['monitor_psnr']:.1f} dB at the end (bicubic {training['monitor_psnr_bicubic']:.1f} dB).",
        "",
        "### Quality on the held-out emoji",
        "",
    ]
    quality = first["quality"]
    n = quality["lanczos"]["images"]
    lines += [
        f"All {n} held-out images (never seen by the diffusion model or the upscaler) at 256 px, made 64 px, then"
        " brought back to 256 px by each method; PSNR on RGB, SSIM on luma (11x11 Gaussian window, sigma 1.5).",
        "",
        "| 64 px input made by | method | PSNR (dB) | SSIM |",
        "|---|---|---:|---:|",
    ]
    names = {"lanczos": "Lanczos (as the model's training images)", "area": "area / box (a check of robustness)"}
    for degradation, q in quality.items():
        for i, (method, r) in enumerate(q["rows"].items()):
            label = names.get(degradation, degradation) if i == 0 else ""
            shown = "**ours**" if method == "ours" else {"bicubic": "bicubic", "lanczos": "Lanczos"}.get(method, method)
            cells = (f"{r['psnr']:.2f}", f"{r['ssim']:.4f}")
            if method == "ours":
                cells = tuple(f"**{c}**" for c in cells)
            lines.append(f"| {label} | {shown} | {cells[0]} | {cells[1]} |")
    wins = [
        f"{ours['psnr_wins_over_bicubic']:.0%} (PSNR) and {ours['ssim_wins_over_bicubic']:.0%} (SSIM) of the"
        f" {q['images']} images with {d} inputs, by {ours['psnr'] - q['rows']['bicubic']['psnr']:+.1f} dB on average"
        for d, q in quality.items()
        for ours in [q["rows"]["ours"]]
    ]
    lines += ["", "Ours beats bicubic on " + "; on ".join(wins) + "."]
    lines += [
        "",
        "### Cost",
        "",
        "Milliseconds per 64 -> 256 image from uint8 canvases to uint8 images, timed in interleaved rounds (the"
        " median) in one run each, on "
        f"{first['cpu_count']} cores ({first['machine']}), torch {first['torch']}:",
        "",
        "| torch threads | load average (1 min, before → after) | ours, batch 1 | ours, batch 8 "
        "| bicubic (PIL) b1 / b8 | Lanczos (PIL) b1 / b8 | ours / bicubic b1 / b8 |",
        "|---:|---|---:|---:|---:|---:|---:|",
        *(_cost_row(r) for r in runs),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
