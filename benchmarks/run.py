"""The benchmark harness: the reference loop, the fast samplers and the bare UNet, side by side, in one run.

    OMP_NUM_THREADS=1 python -m benchmarks.run                 # CPU: embedded default at batch 1 and 8
    python -m benchmarks.run --threads 2 --batches 1            # the issue's "2 cores" target
    python -m benchmarks.run --model tiny --batches 1,2 --no-arch --no-docs   # seconds (the CI smoke uses it)

For each batch size it measures, in one process and on the same model:

* **bare**: the UNet alone, called as many times as a fast sampler calls it (same batch, same shapes);
* **reference**: the official-style 500-step ancestral loop at t0 = 0.5 (N = 1000). On the CPU it times
  the first `--ref-steps` steps of that loop and scales to 500 (every step is the same work; marked
  "scaled" in the output); `--full-reference` times all of it;
* **dpmpp / ddim / euler_a** at their default step counts (20-step schedules: 10 evaluations at t0 = 0.5);
* **dpmpp (accel)**: the same through `sdedit.accel.AcceleratedPipeline`, checked equal to the plain run.

It prints ms per evaluation, ms per edit and per image, the loop's overhead over the bare evaluations and the
speed-up over the reference, then writes benchmarks/results/bench-<device>.json and rewrites the
`bench-<device>` section of docs/performance.md (pass `--no-docs` to leave the docs alone). It also times
one or two forwards of the real 256 px architectures with random weights (DDPM church-256, NCSN++ 256),
unless `--no-arch`.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from benchmarks.common import (
    build_pipeline,
    build_unet,
    environment,
    forward_gflop,
    md_table,
    measure_matmul_tflops,
    peak_tflops,
    quiet,
    time_it,
    update_docs,
    write_json,
)
from sdedit.noise import NoiseSource
from sdedit.samplers import DDPMSchedule, Guide, sample_ddpm, vp_timesteps

FAST = ("dpmpp", "ddim", "euler_a")


def stroke_guide(size: int, seed: int = 0) -> np.ndarray:
    """A deterministic flat-colour 'stroke painting' (white background, a few coloured blobs)."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), 255, np.uint8)
    yy, xx = np.mgrid[0:size, 0:size]
    for _ in range(5):
        cy, cx = rng.uniform(0.2, 0.8, 2) * size
        r = rng.uniform(0.1, 0.3) * size
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r**2] = rng.integers(0, 256, 3)
    return img


def tiny_pipeline(size: int = 16):
    """A small random VP model (the CI smoke): same code paths, milliseconds per evaluation."""
    from diffusers import DDPMScheduler, UNet2DModel

    from sdedit import SDEditPipeline

    torch.manual_seed(0)
    with quiet():
        unet = UNet2DModel(
            sample_size=size,
            block_out_channels=(16, 32),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "AttnDownBlock2D"),
            up_block_types=("AttnUpBlock2D", "UpBlock2D"),
            norm_num_groups=8,
            attention_head_dim=8,
        ).eval()
    return SDEditPipeline(unet, DDPMScheduler(num_train_timesteps=1000))


def load_pipeline(name: str, device: torch.device):
    from sdedit import SDEditPipeline

    with quiet():
        if name == "tiny":
            return tiny_pipeline().to(device)
        if name.endswith("-random"):
            return build_pipeline(name.removesuffix("-random"), device=device)
        return SDEditPipeline.from_pretrained(None if name == "default" else name, device=device, dtype="float32")


def bench_batch(pipe, batch: int, args, device: torch.device, peak: float | None) -> dict:
    """All samplers at one batch size; returns rows and the correctness checks."""
    from sdedit.accel import AcceleratedPipeline, AccelOptions

    r = pipe.config.resolution
    guide = stroke_guide(r)
    strength = args.strength
    common = dict(strength=strength, num_images=batch, seed=0, output_type="uint8", progress=False)
    model = pipe.model_fn()
    gflop_image = forward_gflop(pipe.unet, 1, r)

    def denoise_fn(settings, steps_limit: int | None = None):
        prepared = [pipe.prepare(guide, None, "pad")] * batch
        x0 = torch.stack([g.x0 for g in prepared]).to(device)
        smap = pipe.strengths(prepared)

        def run():
            noise = NoiseSource.from_seeds(range(batch), device)
            g = Guide(x0, noise.randn_like(x0), strength=smap)
            if steps_limit is None:
                return pipe.denoise(g, settings, noise)
            ts = vp_timesteps(pipe.num_train_timesteps, settings.num_inference_steps, strength)[:steps_limit]
            return sample_ddpm(model, g, DDPMSchedule(pipe.scheduler.betas, ts), noise)

        return run

    # bare: the UNet alone, same batch, as many calls as a fast sampler makes
    fast_settings = {s: pipe.check_inputs(strength, None, s, 1, batch) for s in FAST}
    n_fast = pipe.evaluations(fast_settings[FAST[0]])
    x = torch.randn(batch, 3, r, r, device=device)
    levels = [torch.full((batch,), float(t), device=device) for t in range(n_fast)]

    def bare():
        with torch.inference_mode():
            for lv in levels:
                model(x, lv)

    t_bare = time_it(bare, device, args.warmup, args.repeats)
    ms_eval = t_bare["median_ms"] / n_fast
    rows = [{"sampler": "bare UNet", "evals": n_fast, "loop_ms": t_bare["median_ms"], "ms_per_eval": ms_eval}]

    # the fast samplers: the sampler loop alone (denoise) and the whole edit (pipe(...))
    fixed_ms = []
    outputs = {}
    for s in FAST:
        st = fast_settings[s]
        evals = pipe.evaluations(st)
        t_loop = time_it(denoise_fn(st), device, args.warmup, args.repeats)
        t_edit = time_it(lambda s=s: outputs.__setitem__(s, pipe(guide, sampler=s, **common)), device, 0, args.repeats)
        fixed_ms.append(t_edit["median_ms"] - t_loop["median_ms"])
        rows.append(
            {"sampler": s, "steps": st.num_inference_steps, "evals": evals, "loop_ms": t_loop["median_ms"],
             "edit_ms": t_edit["median_ms"], "scaled": False}
        )  # fmt: skip

    # the fast path (accel) for the default sampler: same images?
    accel = AcceleratedPipeline(pipe.unet, pipe.scheduler, pipe.config, options=AccelOptions(), device=device)
    t_accel = time_it(
        lambda: outputs.__setitem__("accel", accel(guide, sampler="dpmpp", **common)), device, 1, args.repeats
    )
    diff = np.abs(outputs["accel"].images.astype(int) - outputs["dpmpp"].images.astype(int)).max()
    st = fast_settings["dpmpp"]
    rows.append(
        {"sampler": "dpmpp (accel)", "steps": st.num_inference_steps, "evals": pipe.evaluations(st),
         "edit_ms": t_accel["median_ms"], "loop_ms": None, "scaled": False, "max_pixel_diff": int(diff)}
    )  # fmt: skip

    # the reference: official 500-step loop (N = 1000 at t0 = 0.5)
    ref_settings = pipe.check_inputs(strength, pipe.num_train_timesteps, "reference", 1, batch)
    ref_steps = ref_settings.steps
    k = ref_steps if args.full_reference else min(args.ref_steps, ref_steps)
    t_ref = time_it(denoise_fn(ref_settings, k), device, min(args.warmup, 1), args.repeats)
    ref_loop = t_ref["median_ms"] * ref_steps / k
    fixed = float(np.median(fixed_ms))
    rows.insert(
        1,
        {"sampler": "reference", "steps": pipe.num_train_timesteps, "evals": ref_steps, "loop_ms": ref_loop,
         "edit_ms": ref_loop + fixed, "scaled": k < ref_steps, "measured_steps": k},
    )  # fmt: skip
    ref_edit = ref_loop + fixed
    for row in rows:
        if row["sampler"] == "bare UNet":
            continue
        evals = row["evals"]
        bare_ms = ms_eval * evals
        if row.get("loop_ms") is not None:
            row["ms_per_eval"] = row["loop_ms"] / evals
            row["overhead_pct"] = 100.0 * (row["loop_ms"] - bare_ms) / bare_ms
        row["per_image_ms"] = row["edit_ms"] / batch
        row["speedup_vs_ref"] = ref_edit / row["edit_ms"]
    for row in rows:
        row["batch"] = batch
        if row.get("ms_per_eval"):
            tflops = gflop_image * batch / row["ms_per_eval"]  # GFLOP / ms = TFLOP/s
            row["tflops"] = tflops
            row["pct_peak"] = 100.0 * tflops / peak if peak else None
    return {"batch": batch, "rows": rows, "gflop_per_image": gflop_image, "accel_max_pixel_diff": int(diff)}


def bench_arch(device: torch.device, evals: int, warmup: int) -> list[dict]:
    """One or two forwards of each real 256 px architecture with random weights, batch 1."""
    from sdedit.accel import AccelOptions, plain_model_fn, prepare_unet

    rows = []
    for arch in ("ddpm-church-256", "ncsnpp-church-256"):
        unet = build_unet(arch, device=device)
        fns = {"plain": plain_model_fn(unet)}
        if arch.startswith("ncsnpp"):
            fixed = prepare_unet(unet, torch.float32, AccelOptions(channels_last=False), device)
            fns["FirResample"] = plain_model_fn(fixed)
        x = torch.randn(1, 3, 256, 256, device=device)
        level = torch.full((1,), 50.0, device=device)
        gflop = forward_gflop(unet, 1, 256)
        for name, fn in fns.items():

            def call(fn=fn):
                with torch.inference_mode():
                    for _ in range(evals):
                        fn(x, level)  # noqa: B023 - called before the loop moves on

            t = time_it(call, device, warmup, 1)
            ms = t["median_ms"] / evals
            rows.append(
                {"arch": arch, "variant": name, "params_m": sum(p.numel() for p in unet.parameters()) / 1e6,
                 "gflop": gflop, "ms_per_eval": ms, "tflops": gflop / ms, "ref_500_s": 500 * ms / 1e3,
                 "dpmpp_10_s": 10 * ms / 1e3}
            )  # fmt: skip
            print(
                f"  {arch:<18} {name:<12} {ms:9.0f} ms/eval  {gflop:6.0f} GFLOP  "
                f"-> 500-step reference {500 * ms / 1e3:.0f} s"
            )
        del unet, fns
    return rows


def render(result: dict) -> str:
    env = result["environment"]
    load = env.get("load_avg_1m")
    lines = [
        f"Recorded by `{result['command']}` on {env.get('card', env['cpu'])} ({env['cpu_count']} cores), "
        f"torch {env['torch']}, diffusers {env['diffusers']}, Python {env['python']}; {env['threads']} torch "
        f"thread(s), load average {load if load is None else round(load, 2)} at the start, {env['time']}.",
        f"Model: {result['model']} ({result['resolution']} px, {result['dtype']}, "
        f"{result['gflop_per_image']:.2f} GFLOP per evaluation per image); t0 = {result['strength']}. "
        f"Medians of {result['repeats']} runs after warm-up. Measured matmul peak: {result['peak_tflops']:.3g} TFLOP/s "
        f"({result['dtype']}).",
        "",
        "`overhead` = sampler loop time over the same number of bare UNet calls; `speed-up` = reference edit "
        "time over this edit time. A reference row marked *scaled* timed its first "
        f"{result['batches'][0]['rows'][1].get('measured_steps')} steps and scaled to the full loop.",
        "",
    ]
    cols = [
        ("batch", "batch"), ("sampler", "sampler"), ("steps", "N"), ("evals", "evals"),
        ("ms_per_eval", "ms / eval"), ("loop_ms", "loop ms"), ("overhead_pct", "overhead %"),
        ("edit_ms", "ms / edit"), ("per_image_ms", "ms / image"), ("speedup_vs_ref", "speed-up vs ref"),
        ("pct_peak", "% of peak"), ("scaled", "scaled"),
    ]  # fmt: skip
    rows = [row for b in result["batches"] for row in b["rows"]]
    if env["device"] == "cpu" and load is not None and load > 0.5:  # others busy before the bench began
        lines += [
            f"**Contended:** other processes kept ~{load:.1f} cores busy on {env['cpu_count']}; these timings "
            "validate the harness, not the code's speed. Re-run at a quiet time.",
            "",
        ]
    rows = [dict(r, scaled="scaled" if r.get("scaled") else "") for r in rows]
    lines.append(md_table(rows, cols))
    checks = ", ".join(f"batch {b['batch']}: {b['accel_max_pixel_diff']}" for b in result["batches"])
    lines += ["", f"Fast path check (accel vs plain dpmpp, max uint8 difference): {checks}."]
    if result.get("arch"):
        lines += [
            "",
            "Real 256 px architectures, random weights, batch 1 (few evaluations on the CPU):",
            "",
            md_table(
                result["arch"],
                [
                    ("arch", "architecture"),
                    ("variant", "variant"),
                    ("params_m", "M params"),
                    ("gflop", "GFLOP"),
                    ("ms_per_eval", "ms / eval"),
                    ("tflops", "TFLOP/s"),
                    ("ref_500_s", "500-step ref s"),
                    ("dpmpp_10_s", "10-eval dpmpp s"),
                ],
            ),
        ]
    elif result.get("arch_skipped"):
        lines += ["", f"Real 256 px architectures: skipped ({result['arch_skipped']})."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default", help="default (embedded), tiny, a config/folder, or ARCH-random")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (recorded with the numbers)")
    ap.add_argument("--strength", type=float, default=0.5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--ref-steps", type=int, default=20, help="reference steps timed on the CPU (then scaled)")
    ap.add_argument("--full-reference", action="store_true", help="time all reference steps")
    ap.add_argument("--no-arch", action="store_true", help="skip the 256 px architectures")
    ap.add_argument("--arch-evals", type=int, default=1)
    ap.add_argument("--no-docs", action="store_true", help="don't rewrite docs/performance.md")
    ap.add_argument("--json", default=None, help="results file name under benchmarks/results/")
    ap.add_argument("--results-dir", default=None)
    ap.add_argument("--render", metavar="JSON", help="only rewrite the docs section from a results file")
    args = ap.parse_args(argv)
    if args.render:
        result = __import__("json").loads(__import__("pathlib").Path(args.render).read_text())
        update_docs(f"bench-{torch.device(result['environment']['device']).type}", render(result))
        return 0

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    env = environment(device)
    pipe = load_pipeline(args.model, device)
    dtype = str(pipe.dtype).replace("torch.", "")
    measured_peak = measure_matmul_tflops(device, pipe.dtype, 1024 if device.type == "cpu" else 8192)
    env["measured_peak_tflops"] = {dtype: measured_peak}
    peak = peak_tflops(env, dtype) or measured_peak
    print(
        f"{env.get('card', env['cpu'])} | torch {env['torch']} | diffusers {env['diffusers']} "
        f"| threads {env['threads']}"
        f" | load {env.get('load_avg_1m', '?')} | model {pipe.config.name} {pipe.config.resolution}px {dtype}"
    )
    t0 = time.perf_counter()
    batches = []
    for b in [int(v) for v in args.batches.split(",") if v]:
        res = bench_batch(pipe, b, args, device, peak)
        batches.append(res)
        for row in res["rows"]:
            print(
                f"  b={b:<2} {row['sampler']:<14} evals {row['evals']:4d}  "
                + (f"{row['ms_per_eval']:8.1f} ms/eval  " if row.get("ms_per_eval") else " " * 18)
                + (f"edit {row['edit_ms']:9.0f} ms  " if row.get("edit_ms") else "")
                + (f"overhead {row['overhead_pct']:+6.1f}%  " if row.get("overhead_pct") is not None else "")
                + (f"x{row['speedup_vs_ref']:.1f} vs ref" if row.get("speedup_vs_ref") else "")
                + (" (scaled)" if row.get("scaled") else "")
            )
    result = {
        "command": "python -m benchmarks.run " + " ".join(argv if argv is not None else __import__("sys").argv[1:]),
        "environment": env,
        "model": pipe.config.name,
        "resolution": pipe.config.resolution,
        "dtype": dtype,
        "strength": args.strength,
        "repeats": args.repeats,
        "peak_tflops": peak,
        "gflop_per_image": batches[0]["gflop_per_image"] if batches else None,
        "batches": batches,
    }
    if args.no_arch:
        result["arch_skipped"] = "--no-arch"
    else:
        result["arch"] = bench_arch(device, args.arch_evals, 1 if device.type == "cuda" else 0)
    result["wall_s"] = time.perf_counter() - t0
    results_dir = __import__("pathlib").Path(args.results_dir) if args.results_dir else None
    name = args.json or f"bench-{device.type}.json"
    path = write_json(result, name, results_dir) if results_dir else write_json(result, name)
    if not args.no_docs:
        update_docs(f"bench-{device.type}", render(result))
    print(f"-> {path} ({result['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
