"""Why NCSN++ (VE) is slower in half precision than in fp32 in diffusers 0.42: the CPU side of the evidence.

    OMP_NUM_THREADS=1 python -m benchmarks.ncsnpp_profile [--size 128] [--device cpu]

Profiles one forward of the NCSN++ 256 architecture (random weights) in fp32 and bf16, with diffusers' FIR
resampling (`upfirdn2d_native`) and with `sdedit.accel.FirResample`, and reports per variant: wall time,
the operators' call counts and self time, dtype casts, the one-channel convolutions that upfirdn2d issues,
and host-to-device-style tensor creations per forward. It also times the FIR ops alone at NCSN++'s shapes.
On a GPU (`--device cuda`) the same report includes CUDA kernel times. Writes
benchmarks/results/ncsnpp-profile-<device>.json and rewrites the `ncsnpp-<device>` section of
docs/performance.md.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from benchmarks.common import build_unet, environment, forward_gflop, md_table, sync, write_json
from benchmarks.harness import write_section
from sdedit.accel import AccelOptions, prepare_unet
from sdedit.fir import FirResample, patch_fir

FIR_OPS = ("aten::conv2d", "aten::convolution", "aten::conv_transpose2d", "aten::constant_pad_nd", "aten::lift_fresh")


def profile_forward(unet, x, level, device) -> dict:
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch.inference_mode():
        unet(x, level)  # warm-up
        sync(device)
        with profile(activities=activities, record_shapes=True) as prof:
            unet(x, level)
            sync(device)
    ops: dict[str, dict] = {}
    one_channel_convs = 0
    for e in prof.events():
        if e.name == "aten::conv2d" and e.input_shapes and len(e.input_shapes[0]) == 4 and e.input_shapes[0][1] == 1:
            one_channel_convs += 1
    for avg in prof.key_averages():
        ops[avg.key] = {
            "count": avg.count,
            "self_cpu_ms": avg.self_cpu_time_total / 1e3,
            "device_ms": getattr(avg, "self_device_time_total", 0) / 1e3,
        }
    casts = sum(ops.get(k, {}).get("count", 0) for k in ("aten::_to_copy",))
    top = sorted(ops.items(), key=lambda kv: -(kv[1]["device_ms"] or kv[1]["self_cpu_ms"]))[:12]
    return {
        "one_channel_conv2d": one_channel_convs,
        "dtype_casts": casts,
        "tensor_from_host": ops.get("aten::lift_fresh", {}).get("count", 0),
        "ops_total": sum(v["count"] for v in ops.values()),
        "top": [{"op": k, **v} for k, v in top],
    }


def time_forward(unet, x, level, device, repeats: int) -> float:
    times = []
    with torch.inference_mode():
        unet(x, level)
        sync(device)
        for _ in range(repeats):
            t = time.perf_counter()
            unet(x, level)
            sync(device)
            times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def fir_microbench(size: int, device, dtype, repeats: int) -> list[dict]:
    """upfirdn2d_native vs FirResample at the shapes of NCSN++'s first levels (batch 1)."""
    from diffusers.models.downsampling import downsample_2d
    from diffusers.models.upsampling import upsample_2d

    rows = []
    for c, r in ((128, size), (256, size // 2), (256, size // 4)):
        x = torch.randn(1, c, r, r, device=device, dtype=dtype)
        for name, native, ours in (
            ("down", lambda x: downsample_2d(x, kernel=(1, 3, 3, 1)), FirResample(False).to(device)),
            ("up", lambda x: upsample_2d(x, kernel=(1, 3, 3, 1)), FirResample(True).to(device)),
        ):
            t_native = time_forward(lambda a, _, f=native: f(a), x, None, device, repeats)
            t_ours = time_forward(lambda a, _, m=ours: m(a), x, None, device, repeats)
            err = (native(x).float() - ours(x).float()).abs().max().item()
            rows.append(
                {"op": name, "shape": f"1x{c}x{r}x{r}", "upfirdn2d_ms": t_native, "fir_resample_ms": t_ours,
                 "speedup": t_native / t_ours, "max_abs_diff": err}
            )  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=128, help="input size (the architecture is the 256 one)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-docs", action="store_true")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    base = build_unet("ncsnpp-church-256", device=device)
    x = torch.randn(1, 3, args.size, args.size, device=device)
    level = torch.full((1,), 50.0, device=device)
    variants = []
    for dtype in (torch.float32, torch.bfloat16) + ((torch.float16,) if device.type == "cuda" else ()):
        for fix in (False, True):
            net = (
                prepare_unet(base, dtype, AccelOptions(fix_fir=fix, channels_last=False), device)
                if fix or dtype != torch.float32
                else copy.deepcopy(base)
            )
            if not fix:
                assert patch_fir(copy.deepcopy(net)) > 0  # the native variant really has FIR layers
            xd = x.to(dtype)
            row = {
                "dtype": str(dtype).replace("torch.", ""),
                "fir": "FirResample" if fix else "upfirdn2d_native",
                "forward_ms": time_forward(net, xd, level, device, args.repeats),
                "gflop": forward_gflop(net, 1, args.size),
            }
            row.update(profile_forward(net, xd, level, device))
            variants.append(row)
            print(
                f"{row['dtype']:>9} {row['fir']:<17} {row['forward_ms']:9.1f} ms  {row['gflop']:7.1f} GFLOP  "
                f"1-ch convs {row['one_channel_conv2d']:3d}  casts {row['dtype_casts']:3d}  "
                f"host tensors {row['tensor_from_host']:3d}  ops {row['ops_total']}"
            )
    micro = []
    for dtype in (torch.float32, torch.bfloat16):
        for r in fir_microbench(args.size, device, dtype, args.repeats):
            r["dtype"] = str(dtype).replace("torch.", "")
            micro.append(r)
            print(
                f"  FIR {r['op']:<4} {r['shape']:<14} {r['dtype']:>9}: "
                f"{r['upfirdn2d_ms']:.2f} -> {r['fir_resample_ms']:.2f} ms"
            )
    result = {"environment": environment(device), "size": args.size, "variants": variants, "fir_ops": micro}
    path = write_json(result, f"ncsnpp-profile-{device.type}.json")
    if not args.no_docs:
        write_section(f"ncsnpp-{device.type}", render(result))
    print(f"-> {path}")
    return 0


def render(result: dict) -> str:
    """The docs section of one profile (benchmarks/results/ncsnpp-profile-DEVICE.json)."""
    env, size = result["environment"], result["size"]
    device = env["device"].split(":")[0]
    load = env.get("load_avg_1m") or 0.0
    contended = device == "cpu" and load > 0.5  # others busy before the profile began
    return "\n".join(
        [
            *(
                [
                    f"**Contended:** load average {load:.1f} on {env['cpu_count']} cores: whole-forward times are "
                    "noisy; the per-op table (many repeats of small ops) is the steadier one.",
                    "",
                ]
                if contended
                else []
            ),
            f"Measured by `python -m benchmarks.ncsnpp_profile --size {size} --device {device}` on "
            f"{env.get('card', env['cpu'])}, torch {env['torch']}, diffusers {env['diffusers']}, "
            f"{env['threads']} thread(s), load {round(load, 2)}, {env['time']}. Batch 1, "
            f"NCSN++ 256 architecture at {size} px, random weights.",
            "",
            md_table(
                result["variants"],
                [
                    ("dtype", "dtype"),
                    ("fir", "FIR resampling"),
                    ("forward_ms", "ms / forward"),
                    ("gflop", "GFLOP"),
                    ("one_channel_conv2d", "1-channel conv2d"),
                    ("dtype_casts", "dtype casts"),
                    ("tensor_from_host", "tensors made on the host"),
                    ("ops_total", "ATen ops"),
                ],
            ),
            "",
            md_table(
                result["fir_ops"],
                [
                    ("op", "FIR op"),
                    ("shape", "input"),
                    ("dtype", "dtype"),
                    ("upfirdn2d_ms", "upfirdn2d_native ms"),
                    ("fir_resample_ms", "FirResample ms"),
                    ("speedup", "speed-up"),
                    ("max_abs_diff", "max |diff|"),
                ],
            ),
        ]
    )


if __name__ == "__main__":
    raise SystemExit(main())
