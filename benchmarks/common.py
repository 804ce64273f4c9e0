"""Shared by the CPU harness (`benchmarks.run`) and the GPU script (`benchmarks.gpu_check`).

The real architectures are rebuilt here with random weights (no Hub access is needed): timing does not
depend on the weights' values, and the correctness checks compare two paths on the same weights.
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks.harness import RESULTS, cpu_model, load_average
from sdedit.accel import quiet_diffusers as quiet

# google/ddpm-{church,bedroom,cat}-256 (the official SDEdit LSUN checkpoints, converted by diffusers):
# ch 128, ch_mult 1,1,2,2,4,4, 2 res blocks, attention at 16x16, one head. Keys as in the Hub's config.json.
DDPM_256 = dict(
    sample_size=256,
    in_channels=3,
    out_channels=3,
    layers_per_block=2,
    block_out_channels=(128, 128, 256, 256, 512, 512),
    down_block_types=("DownBlock2D",) * 4 + ("AttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "AttnUpBlock2D") + ("UpBlock2D",) * 4,
    attention_head_dim=None,
    downsample_padding=0,
    flip_sin_to_cos=False,
    freq_shift=1,
    norm_eps=1e-6,
    norm_num_groups=32,
)
# google/ncsnpp-{church,celebahq,ffhq}-256 (score_sde's NCSN++ converted by diffusers): fourier embedding
# (called with sigma), Skip/AttnSkip blocks with FIR resampling, attention at 16x16.
NCSNPP_256 = dict(
    sample_size=256,
    in_channels=3,
    out_channels=3,
    layers_per_block=2,
    block_out_channels=(128, 128, 256, 256, 256, 256, 256),
    down_block_types=("SkipDownBlock2D",) * 4 + ("AttnSkipDownBlock2D",) + ("SkipDownBlock2D",) * 2,
    up_block_types=("SkipUpBlock2D",) * 2 + ("AttnSkipUpBlock2D",) + ("SkipUpBlock2D",) * 4,
    time_embedding_type="fourier",
    attention_head_dim=None,
    downsample_padding=1,
    flip_sin_to_cos=True,
    freq_shift=1,
    mid_block_scale_factor=math.sqrt(2.0),
    norm_eps=1e-6,
    norm_num_groups=None,
)
ARCHITECTURES = {"ddpm-church-256": DDPM_256, "ncsnpp-church-256": NCSNPP_256}
# peak dense matrix rates (TFLOP/s) for "% of peak"; H100/H200 bf16 as measured on this workplace's cards
PEAK_TFLOPS = {("h100", "bfloat16"): 790.0, ("h200", "bfloat16"): 790.0, ("h100", "float16"): 790.0}


def build_unet(arch: str | dict, size: int | None = None, seed: int = 0, device="cpu", dtype=torch.float32):
    """A UNet2DModel of a named architecture with random weights (or a config dict), optionally at another size."""
    from diffusers import UNet2DModel

    cfg = dict(ARCHITECTURES[arch] if isinstance(arch, str) else arch)
    if size is not None:
        cfg["sample_size"] = size
    torch.manual_seed(seed)
    with quiet():
        unet = UNet2DModel(**cfg).to(device=device, dtype=dtype)
    return unet.eval().requires_grad_(False)


def build_pipeline(arch: str, size: int | None = None, seed: int = 0, device="cpu"):
    """An `SDEditPipeline` around a random-weight architecture, with the matching scheduler."""
    from diffusers import DDPMScheduler, ScoreSdeVeScheduler

    from sdedit import SDEditPipeline

    unet = build_unet(arch, size, seed, device)
    if ARCHITECTURES[arch].get("time_embedding_type") == "fourier":
        sched = ScoreSdeVeScheduler(sigma_min=0.01, sigma_max=380.0, snr=0.075)
    else:
        sched = DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear")
    return SDEditPipeline(unet, sched)


def forward_gflop(unet: torch.nn.Module, batch: int = 1, size: int | None = None) -> float:
    """GFLOP of one forward (2 per multiply-add; convolutions, matmuls and attention), counted by PyTorch."""
    from torch.utils.flop_counter import FlopCounterMode

    r = size or unet.config.sample_size
    p = next(unet.parameters())
    x = torch.zeros((batch, 3, r, r), device=p.device, dtype=p.dtype)
    level = torch.full((batch,), 10.0, device=p.device)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        unet(x, level)
    return counter.get_total_flops() / 1e9


def sync(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_it(fn: Callable[[], object], device="cpu", warmup: int = 1, repeats: int = 3) -> dict:
    """Median wall time in ms of `fn` after `warmup` calls (synchronising the device around each)."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - t) * 1e3)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times), "repeats": repeats}


def environment(device: torch.device | str = "cpu") -> dict:
    """Card or CPU, versions, threads and load: what a number needs to be compared with another."""
    import diffusers

    device = torch.device(device)
    env = {
        "device": str(device),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "threads": torch.get_num_threads(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "time": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    if load_average() is not None:
        env["load_avg_1m"] = load_average()
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(
            card=props.name,
            sms=props.multi_processor_count,
            memory_gib=round(props.total_memory / 2**30, 1),
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
        )
    return env


def peak_tflops(env: dict, dtype: str) -> float | None:
    card = env.get("card", "").lower()
    for (name, dt), peak in PEAK_TFLOPS.items():
        if name in card and dt == dtype:
            return peak
    return env.get("measured_peak_tflops", {}).get(dtype)


def measure_matmul_tflops(device="cpu", dtype=torch.float32, n: int = 1024, repeats: int = 3) -> float:
    """A large matrix product's rate: the practical peak for % of peak where no datasheet number applies."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    t = time_it(lambda: a @ b, device, warmup=1, repeats=repeats)
    return 2 * n**3 / (t["median_ms"] / 1e3) / 1e12


def write_json(data: dict, name: str, folder: Path = RESULTS) -> Path:
    """`name` under `folder` (benchmarks/results/), written atomically."""
    from benchmarks.harness import write_json as write

    return write(data, Path(folder) / name)


def md_table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    """A markdown table of `rows` with (key, header) columns; floats get 3 significant digits."""

    def fmt(v) -> str:
        if v is None:
            return "–"
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
        return str(v)

    head = "| " + " | ".join(h for _, h in columns) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(fmt(r.get(k)) for k, _ in columns) + " |" for r in rows]
    return "\n".join([head, sep, *body])
