"""One prepared GPU run: build, check against fp32, and time every variant of the fast path (one H100, < 10 min).

On a machine with one CUDA GPU (benchmarks/gpu_run.sh runs it after training, or alone):

    python -m benchmarks.gpu_check --out gpu/                       # all groups, within --deadline seconds
    TRAIN_MINUTES=0 CHECK_DEADLINE=360 bash benchmarks/gpu_run.sh   # the same through the GPU script
    python -m benchmarks.gpu_check --render gpu/gpu_check.json      # rewrite its section of docs/performance.md

CPU dry run (tiny models, seconds; what tests/lab/test_bench_smoke.py runs):

    python -m benchmarks.gpu_check --dry-run --out /tmp/gpu-dry

Groups, cheapest and most important first, each variant in its own try/except with a time limit, and a
global deadline (`--deadline`, 360 s by default) after which the rest are recorded as skipped; the JSON is
rewritten after every variant, so a run cut short keeps what it measured:

1. `unet-ddpm`: DDPM church-256 forward at batch 1 and 8: eager fp32 / bf16 / fp16, channels_last, CUDA
   graph: ms per evaluation, TFLOP/s, % of the bf16 peak, and the error against eager fp32 on fresh inputs
   (rel_l2, max_abs, finite).
2. `edit-ddpm`: whole edits at t0 = 0.5: the official-style 500-step reference (plain pipeline, fp32,
   torch defaults) against the fast samplers, plain and accelerated, at batch 1 and 8; loop overhead over
   the bare evaluations; host-device syncs per step (torch.cuda.set_sync_debug_mode); the uint8 difference
   between the accelerated (bf16) and the fp32 edit with the same noise.
3. `ncsnpp`: NCSN++ 256 at batch 1: fp32 / bf16 / fp16 with diffusers' FIR resampling and with
   FirResample (both upsampling implementations), CUDA graphs (and whether the native FIR can be captured),
   the bf16 error with and without the fp32 Fourier embedding, the FIR ops alone, and a kernel profile of
   fp32 vs bf16 (why is NCSN++ slower in bf16 than in fp32?).
4. `compile`: torch.compile (default mode + our CUDA graph at batch 1 and 8; "reduce-overhead" at batch 1),
   about 40 s of compiling each, and a compiled dpmpp edit.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import signal
import statistics
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import (
    DDPM_256,
    NCSNPP_256,
    build_unet,
    environment,
    forward_gflop,
    md_table,
    measure_matmul_tflops,
    quiet,
)
from benchmarks.harness import write_section

TINY_DDPM = dict(
    DDPM_256,
    sample_size=16,
    block_out_channels=(16, 16, 32, 32),
    down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
    norm_num_groups=8,
)
TINY_NCSNPP = dict(
    NCSNPP_256,
    sample_size=16,
    block_out_channels=(32, 32, 32),  # AttnSkip blocks hard-code 32 norm groups
    down_block_types=("SkipDownBlock2D", "AttnSkipDownBlock2D", "SkipDownBlock2D"),
    up_block_types=("SkipUpBlock2D", "AttnSkipUpBlock2D", "SkipUpBlock2D"),
)
BF16_PEAK_TFLOPS = 790.0  # measured on this workplace's H100/H200 (8192^3 bf16 matmul)


class VariantTimeout(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise VariantTimeout in the main thread after `seconds` (SIGALRM; a no-op where that is missing)."""
    if seconds <= 0 or not hasattr(signal, "SIGALRM"):
        yield
        return

    def handler(signum, frame):
        raise VariantTimeout(f"variant exceeded {seconds:.0f} s")

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def dt_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


class Check:
    """Runs variants, records each as ok / error / skipped, and rewrites the JSON after every one."""

    def __init__(self, out: Path, device: torch.device, deadline_s: float, dry: bool):
        self.out, self.device, self.deadline_s, self.dry = out, device, deadline_s, dry
        self.start = time.monotonic()
        self.results: list[dict] = []
        self.info: dict = {}
        out.mkdir(parents=True, exist_ok=True)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def time_ms(self, fn: Callable[[], object], warmup: int = 3, repeats: int = 10) -> dict:
        """Median ms per call: CUDA events on a GPU, the host clock (after synchronising) elsewhere."""
        for _ in range(warmup):
            fn()
        self.sync()
        times = []
        for _ in range(repeats):
            if self.cuda:
                a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                a.record()
                fn()
                b.record()
                b.synchronize()
                times.append(a.elapsed_time(b))
            else:
                t = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t) * 1e3)
        return {"ms": statistics.median(times), "ms_min": min(times), "ms_max": max(times), "repeats": repeats}

    def run(self, group: str, name: str, fn: Callable[[], dict], timeout_s: float = 120, needs_cuda: bool = False):
        rec: dict = {"group": group, "name": name}
        left = self.deadline_s - self.elapsed()
        if needs_cuda and not self.cuda:
            rec.update(status="skipped", reason="needs CUDA")
        elif left < 5:
            rec.update(status="skipped", reason=f"global deadline ({self.deadline_s:.0f} s) reached")
        else:
            t = time.monotonic()
            cudnn_benchmark = torch.backends.cudnn.benchmark  # a variant may flip the global flag
            try:
                with time_limit(min(timeout_s, left)):
                    rec.update(fn() or {})
                rec["status"] = "ok"
            except Exception as exc:
                rec.update(status="error", error=f"{type(exc).__name__}: {exc}"[:500])
                rec["traceback"] = traceback.format_exc(limit=6)[-2000:]
            torch.backends.cudnn.benchmark = cudnn_benchmark
            rec["wall_s"] = round(time.monotonic() - t, 2)
            if self.cuda:
                rec["peak_mem_gib"] = round(torch.cuda.max_memory_allocated(self.device) / 2**30, 2)
                torch.cuda.reset_peak_memory_stats(self.device)
                torch.cuda.empty_cache()
        self.results.append(rec)
        summary = {k: v for k, v in rec.items() if k in ("ms", "rel_l2", "status", "reason", "error")}
        print(f"[{self.elapsed():6.1f}s] {group:<10} {name:<44} {summary}", flush=True)
        self.save()
        return rec

    def save(self) -> None:
        data = {"info": self.info, "elapsed_s": round(self.elapsed(), 1), "results": self.results}
        tmp = self.out / "gpu_check.json.tmp"
        tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
        tmp.replace(self.out / "gpu_check.json")


# ----- helpers ----------------------------------------------------------------------------------------------


def fast_model(unet, dtype, device, channels_last=True, graph=False, compile_mode=None, fix_fir=True, **opts):
    from sdedit.accel import AccelOptions, FastModel, prepare_unet

    options = AccelOptions(dtype=dtype, channels_last=channels_last, fix_fir=fix_fir, **opts)
    net = prepare_unet(unet, dtype, options, device)
    return FastModel(net, dtype, channels_last=channels_last, cuda_graph=graph, compile_mode=compile_mode)


def plain_cast(unet, dtype, device):
    """What a diffusers user gets with `.to(dtype)`: the whole model cast, nothing else changed."""
    from sdedit.accel import plain_model_fn

    with quiet():
        net = copy.deepcopy(unet).to(device=device, dtype=dtype)
    return plain_model_fn(net)


def error_vs(reference, candidate, sde: str, batch: int, size: int, scheduler, device) -> dict:
    from sdedit.accel import measure_error, probe_inputs

    inputs = probe_inputs(sde, (batch, 3, size, size), scheduler, levels=4, seed=123, device=device)
    return measure_error(reference, candidate, inputs)


def eval_timer(check: Check, fn, batch: int, size: int, level: float, gflop: float, warmup=3, repeats=10) -> dict:
    x = torch.randn(batch, 3, size, size, device=check.device)
    lv = torch.full((batch,), level, device=check.device)

    def call():
        with torch.inference_mode():
            fn(x, lv)

    t = check.time_ms(call, warmup, repeats)
    tflops = gflop * batch / t["ms"]
    return {**t, "batch": batch, "tflops": tflops, "pct_bf16_peak": 100 * tflops / BF16_PEAK_TFLOPS}


@contextlib.contextmanager
def count_syncs(enabled: bool):
    """Count host-device synchronisations (torch.cuda.set_sync_debug_mode warnings) inside the block."""
    counter = {"syncs": 0, "where": {}}
    if not enabled:
        yield counter
        return
    torch.cuda.set_sync_debug_mode("warn")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield counter
        finally:
            torch.cuda.set_sync_debug_mode(0)
    for w in caught:
        if "synchroniz" in str(w.message):
            counter["syncs"] += 1
            key = f"{Path(w.filename).name}:{w.lineno}"
            counter["where"][key] = counter["where"].get(key, 0) + 1


# ----- the groups -------------------------------------------------------------------------------------------


def group_unet(check: Check, unet, size: int, gflop: float, batches) -> dict:
    """DDPM forward variants; returns the fastest callable per batch for the edit group."""
    from diffusers import DDPMScheduler

    from sdedit.accel import plain_model_fn

    dev = check.device
    half = (torch.bfloat16, torch.float16) if check.cuda else (torch.bfloat16,)
    ref = plain_model_fn(unet)
    sched = DDPMScheduler()
    best: dict = {}
    for b in batches:

        def measure(fn, b=b, **extra):
            res = eval_timer(check, fn, b, size, 500.0, gflop, *((1, 2) if check.dry else (3, 10)))
            res.update(error_vs(ref, fn, "vp", b, size, sched, dev), **extra)
            return res

        check.run("unet-ddpm", f"b{b} eager fp32 (torch defaults)", lambda: measure(ref))
        for dt in half:
            check.run(
                "unet-ddpm", f"b{b} eager {dt_name(dt)} (.to cast)", lambda dt=dt: measure(plain_cast(unet, dt, dev))
            )
        cl32 = fast_model(unet, torch.float32, dev, channels_last=True)
        check.run("unet-ddpm", f"b{b} fp32 channels_last", lambda m=cl32: measure(m))
        fast = fast_model(unet, torch.bfloat16, dev, channels_last=True)
        check.run("unet-ddpm", f"b{b} bf16 channels_last", lambda m=fast: measure(m))
        graphed = fast_model(unet, torch.bfloat16, dev, channels_last=True, graph=True)
        rec = check.run(
            "unet-ddpm", f"b{b} bf16 channels_last + CUDA graph", lambda m=graphed: measure(m), needs_cuda=True
        )
        if rec["status"] == "ok":
            best[b] = ("bf16 CL graph", graphed, rec["ms"])
        else:
            best[b] = ("bf16 CL", fast, None)

        def benchmarked(b=b):
            torch.backends.cudnn.benchmark = True
            return measure(fast_model(unet, torch.bfloat16, dev, channels_last=True, graph=True), b=b)

        check.run("unet-ddpm", f"b{b} bf16 CL + cudnn.benchmark + CUDA graph", benchmarked, needs_cuda=True)
    return best


def ncsnpp_native_graph(check: Check, unet, size: int) -> None:
    """Can diffusers' FIR layers be captured in a CUDA graph? Last of all: a failed capture may leave the
    CUDA context unusable."""
    dev = check.device

    def native_graph():
        fn = fast_model(unet, torch.float32, dev, channels_last=False, graph=True, fix_fir=False)
        x = torch.randn(1, 3, size, size, device=dev)
        with torch.inference_mode():
            fn(x, torch.full((1,), 5.0, device=dev))
        return {"captured": bool(fn._graphs), "notes": fn.notes}

    check.run("ncsnpp", "CUDA graph with diffusers FIR (capturable?)", native_graph, needs_cuda=True)


def group_compile(check: Check, unet, size: int, gflop: float, batches, guide_size: int) -> None:
    """torch.compile variants, last (each mode and shape costs ~40 s of compiling on an H100)."""
    from diffusers import DDPMScheduler

    from sdedit.accel import AcceleratedPipeline, AccelOptions, plain_model_fn

    dev = check.device
    ref = plain_model_fn(unet)
    sched = DDPMScheduler()

    def compiled(b, mode, graph):
        t = time.perf_counter()
        fn = fast_model(unet, torch.bfloat16, dev, channels_last=True, graph=graph, compile_mode=mode)
        with torch.inference_mode():
            fn(torch.randn(b, 3, size, size, device=dev), torch.full((b,), 10.0, device=dev))
        check.sync()
        compile_s = time.perf_counter() - t
        res = eval_timer(check, fn, b, size, 500.0, gflop)
        res.update(error_vs(ref, fn, "vp", b, size, sched, dev), compile_s=compile_s, notes=fn.notes)
        return res, fn

    built: dict = {}

    def variant(b, mode, graph):
        res, fn = compiled(b, mode, graph)
        built[(b, mode, graph)] = fn
        return res

    for b in batches:
        check.run("unet-ddpm", f"b{b} bf16 CL compile(default) + CUDA graph", lambda b=b: variant(b, "default", True),
                  timeout_s=240, needs_cuda=True)  # fmt: skip
    check.run("unet-ddpm", "b1 bf16 CL compile(reduce-overhead)", lambda: variant(1, "reduce-overhead", False),
              timeout_s=240, needs_cuda=True)  # fmt: skip
    fn = built.get((1, "default", True))
    if fn is not None:
        pipe = AcceleratedPipeline(unet, sched, options=AccelOptions(cuda_graph=False), device=dev)
        pipe.fast = fn
        rng = np.random.default_rng(0)
        guide = (rng.random((guide_size, guide_size, 3)) * 255).astype(np.uint8)

        def edit():
            kw = dict(
                strength=0.5, num_inference_steps=20, sampler="dpmpp", seed=0, output_type="uint8", progress=False
            )
            pipe(guide, **kw)
            check.sync()
            times = []
            for _ in range(3):
                t = time.perf_counter()
                out = pipe(guide, **kw)
                check.sync()
                times.append((time.perf_counter() - t) * 1e3)
            ms = statistics.median(times)
            return {"ms": ms, "batch": 1, "evals": out.metadata["model_evaluations"], "ms_per_image": ms,
                    "images_per_s": 1e3 / ms}  # fmt: skip

        check.run("edit-ddpm", "b1 dpmpp N=20, accel bf16 compile(default) + CUDA graph", edit, needs_cuda=True)


def group_edits(check: Check, unet, size: int, batches, best: dict, ref_n: int) -> None:
    """Whole edits at t0 = 0.5: the reference against the fast samplers, plain and accelerated."""
    from diffusers import DDPMScheduler

    from sdedit import SDEditPipeline
    from sdedit.accel import AcceleratedPipeline, AccelOptions

    dev = check.device
    sched = DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02)
    plain = SDEditPipeline(unet, sched)
    accel = AcceleratedPipeline(unet, sched, options=AccelOptions(cuda_graph=check.cuda), device=dev)
    tag = f"accel {dt_name(accel.dtype)}"
    rng = np.random.default_rng(0)
    guide = (rng.random((size, size, 3)) * 255).astype(np.uint8)
    repeats = 1 if check.dry else 2
    results: dict = {}

    def edit(pipe, sampler, n, b, label, syncs=True):
        kwargs = dict(strength=0.5, sampler=sampler, num_images=b, seed=0, progress=False, output_type="uint8")

        def one(steps=n):
            return pipe(guide, num_inference_steps=steps, **kwargs)

        short = min(n, 20)
        one(short)  # warm-up on the same shapes (graph capture, algorithm choice), a short schedule
        check.sync()
        with count_syncs(check.cuda and syncs) as counter:
            warm = one(short)
        check.sync()
        times = []
        for _ in range(1 if n > 100 else repeats):  # the 500-step reference: once
            t = time.perf_counter()
            out = one()
            check.sync()
            times.append((time.perf_counter() - t) * 1e3)
        ms = statistics.median(times)
        evals = out.metadata["model_evaluations"]
        results[label] = ms
        return {
            "ms": ms,
            "batch": b,
            "evals": evals,
            "ms_per_image": ms / b,
            "images_per_s": 1e3 * b / ms,
            "sample_ms": 1e3 * out.metadata["timings"]["sample_s"],
            "syncs_per_step": counter["syncs"] / max(1, warm.metadata["steps"] * warm.metadata["repeats"])
            if check.cuda
            else None,
            "sync_sites": dict(sorted(counter["where"].items(), key=lambda kv: -kv[1])[:8]),
        }

    def bare(pipe_fn, b, evals):
        x = torch.randn(b, 3, size, size, device=dev)
        lv = torch.full((b,), 300.0, device=dev)

        def call():
            with torch.inference_mode():
                for _ in range(evals):
                    pipe_fn(x, lv)

        return check.time_ms(call, 1, repeats)["ms"]

    for b in batches:
        base = check.run(
            "edit-ddpm",
            f"b{b} reference {ref_n // 2} steps, plain fp32",
            lambda b=b: edit(plain, "reference", ref_n, b, f"ref{b}"),
        )
        for s in ("dpmpp", "ddim", "euler_a"):
            check.run("edit-ddpm", f"b{b} {s} N=20, plain fp32", lambda b=b, s=s: edit(plain, s, 20, b, f"{s}{b}"))
        rec = check.run(
            "edit-ddpm",
            f"b{b} reference {ref_n // 2} steps, {tag}",
            lambda b=b: edit(accel, "reference", ref_n, b, f"aref{b}"),
        )
        for s, n in (("dpmpp", 20), ("ddim", 20), ("euler_a", 20), ("dpmpp", 50)):

            def fast_edit(b=b, s=s, n=n, base=base):
                res = edit(accel, s, n, b, f"a{s}{n}-{b}")
                bare_ms = bare(accel.fast, b, res["evals"])
                res["bare_ms"] = bare_ms
                res["overhead_pct"] = 100 * (res["sample_ms"] - bare_ms) / bare_ms
                if base.get("ms"):
                    res["speedup_vs_plain_reference"] = base["ms"] / res["ms"]
                return res

            check.run("edit-ddpm", f"b{b} {s} N={n}, {tag}", fast_edit)
        if rec.get("ms") and base.get("ms"):
            rec["speedup_vs_plain_reference"] = base["ms"] / rec["ms"]

    def same_noise():
        """bf16 accelerated vs fp32 plain with the same (host) noise: how far apart are the edits?"""
        same = AcceleratedPipeline(
            unet, sched, options=AccelOptions(device_noise=False, cuda_graph=check.cuda), device=dev
        )
        out = {}
        for s in ("dpmpp", "reference"):
            n = 20 if s == "dpmpp" else ref_n
            a = plain(
                guide, strength=0.5, num_inference_steps=n, sampler=s, seed=7, output_type="uint8", progress=False
            )
            c = same(guide, strength=0.5, num_inference_steps=n, sampler=s, seed=7, output_type="uint8", progress=False)
            d = np.abs(a.images.astype(np.int16) - c.images.astype(np.int16))
            mse = float((d.astype(np.float64) ** 2).mean())
            out[s] = {
                "max_abs": int(d.max()),
                "mean_abs": float(d.mean()),
                "psnr_db": 10 * np.log10(255**2 / max(mse, 1e-12)),
            }
        return {"dtype": dt_name(same.dtype), "edits": out}

    check.run("edit-ddpm", f"{tag} vs plain fp32 edit, same noise", same_noise)


def group_ncsnpp(check: Check, unet, size: int, gflop: float) -> None:
    from diffusers import ScoreSdeVeScheduler

    from benchmarks.ncsnpp_profile import fir_microbench, profile_forward
    from sdedit.accel import plain_model_fn

    dev = check.device
    sched = ScoreSdeVeScheduler(sigma_min=0.01, sigma_max=380.0)
    ref = plain_model_fn(unet)
    reps = (1, 2) if check.dry else (3, 10)

    def measure(fn, **extra):
        res = eval_timer(check, fn, 1, size, 50.0, gflop, *reps)
        res.update(error_vs(ref, fn, "ve", 1, size, sched, dev), **extra)
        return res

    dtypes = (torch.float32, torch.bfloat16, torch.float16) if check.cuda else (torch.float32, torch.bfloat16)
    for dt in dtypes:
        check.run(
            "ncsnpp", f"eager {dt_name(dt)}, diffusers FIR (.to cast)", lambda dt=dt: measure(plain_cast(unet, dt, dev))
        )

    def benchmarked(dt):
        torch.backends.cudnn.benchmark = True  # does letting cuDNN time its algorithms remove the half slowdown?
        return measure(plain_cast(unet, dt, dev))

    for dt in (torch.float32, torch.bfloat16):
        label = f"eager {dt_name(dt)}, diffusers FIR, cudnn.benchmark"
        check.run("ncsnpp", label, lambda dt=dt: benchmarked(dt), needs_cuda=True)
    for dt in dtypes:
        for impl in ("transpose", "phase"):
            check.run(
                "ncsnpp",
                f"{dt_name(dt)} FirResample({impl}), fp32 Fourier",
                lambda dt=dt, impl=impl: measure(fast_model(unet, dt, dev, channels_last=False, fir_impl=impl)),
            )
    check.run(
        "ncsnpp",
        "bf16 FirResample, Fourier rounded to bf16",
        lambda: measure(fast_model(unet, torch.bfloat16, dev, channels_last=False, fp32_fourier=False)),
    )
    for dt in (torch.float32, torch.bfloat16):
        check.run(
            "ncsnpp", f"{dt_name(dt)} FirResample + channels_last", lambda dt=dt: measure(fast_model(unet, dt, dev))
        )
        check.run(
            "ncsnpp",
            f"{dt_name(dt)} FirResample + channels_last + CUDA graph",
            lambda dt=dt: measure(fast_model(unet, dt, dev, graph=True)),
            needs_cuda=True,
        )

    def profiles():
        out = {}
        x = torch.randn(1, 3, size, size, device=dev)
        lv = torch.full((1,), 50.0, device=dev)
        for dt in (torch.float32, torch.bfloat16):
            with quiet():
                net = copy.deepcopy(unet).to(dtype=dt)
            out[f"native {dt_name(dt)}"] = profile_forward(net, x.to(dt), lv, dev)
            fixed = fast_model(unet, dt, dev, channels_last=False).unet
            out[f"FirResample {dt_name(dt)}"] = profile_forward(fixed, x.to(dt), lv, dev)
        return {"profiles": out}

    check.run("ncsnpp", "profile fp32 vs bf16 (top ops/kernels)", profiles, timeout_s=120)

    def fir_ops():
        rows = []
        for dt in (torch.float32, torch.bfloat16):
            for r in fir_microbench(size, dev, dt, 3 if check.dry else 20):
                rows.append({**r, "dtype": dt_name(dt)})
        return {"fir_ops": rows}

    check.run("ncsnpp", "FIR ops alone: upfirdn2d_native vs FirResample", fir_ops)


# ----- report -----------------------------------------------------------------------------------------------


def render(data: dict) -> str:
    info = data["info"]
    env = info.get("environment", {})
    lines = [
        f"Recorded by `python -m benchmarks.gpu_check{' --dry-run' if info.get('dry') else ''}` on "
        f"{env.get('card', env.get('cpu', '?'))}, torch {env.get('torch')}, CUDA {env.get('cuda')}, cuDNN "
        f"{env.get('cudnn')}, diffusers {env.get('diffusers')}, {env.get('time')}; {data.get('elapsed_s')} s in all. "
        f"Measured bf16 matmul rate: {info.get('matmul_bf16_tflops', 0):.0f} TFLOP/s. "
        + "; ".join(
            f"{name} {info[key]:.0f} GFLOP / forward"
            for key, name in (("ddpm_gflop", "DDPM church-256"), ("ncsnpp_gflop", "NCSN++ 256"))
            if info.get(key)
        )
        + ".",
        "",
    ]
    cols = {
        "unet-ddpm": [("name", "variant"), ("ms", "ms / eval"), ("tflops", "TFLOP/s"), ("pct_bf16_peak", "% bf16 peak"),
                      ("rel_l2", "rel L2 vs fp32"), ("max_abs", "max |err|"), ("compile_s", "compile s"),
                      ("status", "status")],
        "edit-ddpm": [("name", "edit"), ("evals", "evals"), ("ms", "ms / edit"), ("ms_per_image", "ms / image"),
                      ("images_per_s", "images/s"), ("overhead_pct", "overhead %"),
                      ("speedup_vs_plain_reference", "speed-up vs ref"), ("syncs_per_step", "syncs / step"),
                      ("status", "status")],
        "ncsnpp": [("name", "variant"), ("ms", "ms / eval"), ("tflops", "TFLOP/s"), ("rel_l2", "rel L2 vs fp32"),
                   ("max_abs", "max |err|"), ("status", "status")],
    }  # fmt: skip
    for group, columns in cols.items():
        rows = [
            dict(
                r,
                status=r.get("status")
                if r.get("status") == "ok"
                else f"{r.get('status')}: {r.get('reason') or r.get('error', '')}"[:80],
            )
            for r in data["results"]
            if r["group"] == group
        ]
        if rows:
            lines += [f"**{group}**", "", md_table(rows, columns), ""]
    for r in data["results"]:
        if r.get("edits"):
            lines.append(f"Same-noise edit difference (accel {r.get('dtype')} vs plain fp32, uint8): {r['edits']}")
        if r.get("fir_ops"):
            fir_cols = [("op", "FIR op"), ("shape", "input"), ("dtype", "dtype"), ("upfirdn2d_ms", "upfirdn2d ms"),
                        ("fir_resample_ms", "FirResample ms"), ("speedup", "speed-up")]  # fmt: skip
            lines += ["", md_table(r["fir_ops"], fir_cols)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="tiny models on whatever device there is (CPU)")
    ap.add_argument("--out", default=os.environ.get("OUT") or "benchmarks/results/gpu")
    ap.add_argument("--deadline", type=float, default=360.0, help="seconds after which variants are skipped")
    ap.add_argument("--groups", default="unet,edit,ncsnpp,compile")
    ap.add_argument("--batches", default=None, help="comma-separated batch sizes (default 1,8; dry run 1,2)")
    ap.add_argument("--render", metavar="JSON", help="rewrite docs/performance.md's GPU section from a results file")
    args = ap.parse_args(argv)
    if args.render:
        data = json.loads(Path(args.render).read_text())
        write_section("bench-gpu" if not data["info"].get("dry") else "bench-gpu-dry", render(data))
        print(render(data))
        return 0
    device = torch.device("cuda" if torch.cuda.is_available() and not args.dry_run else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    check = Check(Path(args.out), device, args.deadline, args.dry_run or device.type == "cpu")
    size = 16 if check.dry else 256
    batches = tuple(int(b) for b in args.batches.split(",")) if args.batches else ((1, 2) if check.dry else (1, 8))
    ref_n = 20 if check.dry else 1000  # the reference's full-schedule N: 500 steps at t0 = 0.5 on a GPU
    check.info = {"environment": environment(device), "dry": check.dry, "argv": sys.argv[1:]}
    if check.cuda:
        check.info["tf32"] = {
            "matmul": torch.backends.cuda.matmul.allow_tf32,
            "cudnn": torch.backends.cudnn.allow_tf32,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
        }
        check.info["matmul_bf16_tflops"] = measure_matmul_tflops(device, torch.bfloat16, 8192)
    print(f"gpu_check on {check.info['environment'].get('card', 'cpu')} (dry={check.dry}), out={check.out}", flush=True)
    groups = set(args.groups.split(","))
    if groups & {"unet", "edit"}:
        ddpm = build_unet(TINY_DDPM if check.dry else "ddpm-church-256", device=device)
        check.info["ddpm_gflop"] = forward_gflop(ddpm, 1, size)
        best = group_unet(check, ddpm, size, check.info["ddpm_gflop"], batches) if "unet" in groups else {}
        if "edit" in groups:
            group_edits(check, ddpm, size, batches, best, ref_n)
        del best
    if "ncsnpp" in groups:
        ncsnpp = build_unet(TINY_NCSNPP if check.dry else "ncsnpp-church-256", device=device)
        check.info["ncsnpp_gflop"] = forward_gflop(ncsnpp, 1, size)
        group_ncsnpp(check, ncsnpp, size, check.info["ncsnpp_gflop"])
    if "compile" in groups and "ddpm" in locals():
        group_compile(check, ddpm, size, check.info["ddpm_gflop"], batches, size)
    if "ncsnpp" in groups:
        ncsnpp_native_graph(check, ncsnpp, size)
    check.save()
    data = json.loads((check.out / "gpu_check.json").read_text())
    report = render(data)
    (check.out / "gpu_check.md").write_text(report + "\n")
    print("\n" + report)
    bad = [r for r in check.results if r["status"] == "error"]
    print(f"\n{len(check.results)} variants, {len(bad)} errors, {check.elapsed():.0f} s -> {check.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
