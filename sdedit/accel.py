"""The fast path: the same SDEdit, with the UNet prepared for speed and the loop kept off the host.

    pipe = AcceleratedPipeline.from_pretrained("google/ddpm-church-256")   # bf16, channels_last, CUDA graphs
    pipe.warmup()                                                          # capture/compile before the first user
    out = pipe(guide, strength=0.5, sampler="dpmpp", seed=0)

What it changes, and why each is safe (docs/performance.md has the measurements):

* **Precision.** bf16 (fp16 before Ampere) for the VP UNets, with an fp32 reference and a measured error
  bound (`measure_error`, which runs on the CPU too). NCSN++'s Gaussian Fourier time embedding always stays
  in fp32: its weights are N(0, 16^2), and rounding them to bf16 moves the phase 2*pi*W*log(sigma) by up to
  several radians, which scrambles the noise-level embedding.
* **FIR resampling.** NCSN++ up/downsamples with diffusers' `upfirdn2d_native`, which reshapes every
  (B, C, H, W) map into B*C one-channel images, builds its kernel on the host and copies it to the device on
  every call, and (downsampling) filters at full resolution before striding. `FirResample` is the same
  linear map as one depthwise (transposed) convolution with a device-resident kernel: 4x fewer filter
  FLOPs when downsampling, no host-to-device copy (so the forward can be CUDA-graphed), and a layout that
  half precision and channels_last handle well.
* **channels_last and SDPA** (diffusers' `AttnProcessor2_0`, set explicitly).
* **torch.compile** (optional, guarded: any failure falls back to eager and is recorded in `.notes`).
* **CUDA graphs**: the UNet forward is captured once per input shape into static buffers and replayed;
  sampler arithmetic stays eager (a few elementwise kernels per step).
* **Noise on the device** (`device_noise`): per-sample CUDA generators, so no host RNG and no blocking
  host-to-device copy per step. The numbers then differ from a CPU run of the same seed (the plain
  pipeline's CPU generators); set `device_noise=False` to keep them.

N samples (and several guides) already share one forward in `SDEditPipeline`; K repeats are sequential by
definition (each starts from the previous output), so they reuse the same captured graph instead.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import loading
from .fir import patch_fir
from .noise import NoiseSource
from .pipeline import SDEditPipeline

Tensor = torch.Tensor
ModelFn = Callable[[Tensor, Tensor], Tensor]
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@cache
def has_bf16_cpu() -> bool:
    """AMX or AVX512-BF16: the CPUs on which bf16 is faster than fp32, not slower (emulated bf16 is slower).
    Read once: every live preview asks, and a CPU's flags do not change while the process runs."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


@dataclass(frozen=True)
class AccelOptions:
    """What the fast path turns on. `dtype="auto"` follows `loading.pick_dtype` (fp32 on the CPU and for VE)."""

    dtype: str | torch.dtype = "auto"
    channels_last: bool = True
    sdpa: bool = True
    fix_fir: bool = True
    fir_impl: str = "auto"  # FirResample's upsampling: auto, transpose or phase
    fp32_fourier: bool = True
    compile: str | None = None  # one of COMPILE_MODES, or None for eager
    cuda_graph: bool = True  # CUDA only; ignored when compile="reduce-overhead" (it graphs by itself)
    graph_max_batch: int = 8
    device_noise: bool = True  # CUDA only
    cudnn_benchmark: bool = True  # CUDA only: fixed shapes, so let cuDNN time its algorithms once (global flag)


@contextlib.contextmanager
def quiet_diffusers():
    """Silence diffusers' info and warnings for a moment: it warns on every `.to(dtype)` of a model and on
    random initialisation, and here both are deliberate (casts are measured; benchmarks use random weights)."""
    from diffusers.utils import logging as dlog

    level = dlog.get_verbosity()
    dlog.set_verbosity_error()
    try:
        yield
    finally:
        dlog.set_verbosity(level)


def is_fourier(unet: nn.Module) -> bool:
    return getattr(getattr(unet, "config", None), "time_embedding_type", None) == "fourier"


def set_sdpa(unet: nn.Module) -> int:
    """Use PyTorch's scaled_dot_product_attention in every attention layer (diffusers' default; made explicit)."""
    from diffusers.models.attention_processor import Attention, AttnProcessor2_0

    layers = [m for m in unet.modules() if isinstance(m, Attention)]
    for m in layers:
        m.set_processor(AttnProcessor2_0())
    return len(layers)


def prepare_unet(
    unet: nn.Module, dtype: torch.dtype, options: AccelOptions = AccelOptions(), device=None, copy_model: bool = True
) -> nn.Module:
    """A copy of `unet` in `dtype` on `device`, with the FIR fix, an fp32 Fourier embedding, SDPA and channels_last.

    The copy leaves the loader's cached fp32 model alone (it is the reference for error bounds).
    """
    device = torch.device(device) if device is not None else next(unet.parameters()).device
    net = copy.deepcopy(unet) if copy_model else unet
    if options.fix_fir:
        patch_fir(net, options.fir_impl)
    if options.sdpa:
        set_sdpa(net)
    # keep the fp32 original: casting to bf16 and back would not restore the rounded weights
    fourier = copy.deepcopy(net.time_proj) if options.fp32_fourier and is_fourier(net) else None
    with quiet_diffusers():
        net = net.to(device=device, dtype=dtype)
    if fourier is not None:
        net.time_proj = fourier.to(device=device, dtype=torch.float32)  # UNet2DModel casts its output after
    if options.channels_last:
        net = net.to(memory_format=torch.channels_last)
    return net.eval().requires_grad_(False)


# ----- the model function ---------------------------------------------------------------------------------


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    x: Tensor
    level: Tensor
    out: Tensor


@dataclass
class FastModel:
    """The sampler-facing model callable `fn(x float32 (B,3,R,R), level float32 (B,)) -> float32`.

    On CUDA with `cuda_graph`, each new input shape (batch <= graph_max_batch) is warmed up on a side
    stream, captured once and then replayed: one launch per evaluation instead of hundreds.
    """

    unet: nn.Module
    dtype: torch.dtype
    channels_last: bool = True
    cuda_graph: bool = False
    graph_max_batch: int = 8
    compile_mode: str | None = None
    notes: list[str] = field(default_factory=list)
    evaluations: int = 0

    def __post_init__(self):
        self._graphs: dict[tuple, _Graph] = {}
        self._forward = self._eager
        if self.compile_mode:
            if self.compile_mode not in COMPILE_MODES:
                raise ValueError(f"compile must be one of {COMPILE_MODES} or None, not {self.compile_mode!r}")
            try:
                compiled = torch.compile(self.unet, mode=self.compile_mode, dynamic=False)
                self._forward = lambda x, level: compiled(x, level).sample
                if self.compile_mode == "reduce-overhead":
                    self.cuda_graph = False  # inductor's own CUDA graphs
            except Exception as exc:
                self.notes.append(f"torch.compile({self.compile_mode}) unavailable, eager instead: {exc!r}")

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    def _eager(self, x: Tensor, level: Tensor) -> Tensor:
        return self.unet(x, level).sample

    def _run(self, x: Tensor, level: Tensor) -> Tensor:
        x = x.to(self.dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        try:
            out = self._forward(x, level)
        except Exception as exc:
            if self._forward is self._eager:
                raise
            self.notes.append(f"compiled forward failed, eager from now on: {exc!r}")
            self._forward = self._eager
            out = self._eager(x, level)
        return out.float().contiguous()

    def _capture(self, x: Tensor, level: Tensor) -> _Graph:
        static_x, static_level = x.clone(), level.clone()
        side = torch.cuda.Stream(device=x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side):
            for _ in range(3):  # warm-up: cuDNN/cuBLAS pick algorithms, lazy buffers get allocated
                self._run(static_x, static_level)
        torch.cuda.current_stream(x.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):  # a private memory pool per graph: safe in any replay order
            static_out = self._run(static_x, static_level)
        return _Graph(graph, static_x, static_level, static_out)

    def __call__(self, x: Tensor, level: Tensor) -> Tensor:
        self.evaluations += 1
        level = level.to(device=x.device, dtype=torch.float32)
        with torch.inference_mode():
            if not (self.cuda_graph and x.is_cuda and x.shape[0] <= self.graph_max_batch):
                return self._run(x, level)
            key = (tuple(x.shape), x.device)
            g = self._graphs.get(key)
            if g is None:
                try:
                    g = self._graphs[key] = self._capture(x, level)
                except Exception as exc:
                    self.notes.append(f"CUDA graph capture failed, eager instead: {exc!r}")
                    self.cuda_graph = False
                    return self._run(x, level)
            g.x.copy_(x)
            g.level.copy_(level)
            g.graph.replay()
            return g.out.clone()  # the next replay overwrites g.out


def plain_model_fn(unet: nn.Module) -> ModelFn:
    """The pipeline's own model callable for `unet` (the fp32 reference in error measurements)."""
    dtype = next(unet.parameters()).dtype

    def call(x: Tensor, level: Tensor) -> Tensor:
        return unet(x.to(dtype), level.to(x.device)).sample.float()

    return call


# ----- error bounds ---------------------------------------------------------------------------------------


def probe_inputs(
    sde: str,
    shape: Sequence[int],
    scheduler,
    levels: int = 6,
    seed: int = 0,
    device="cpu",
) -> list[tuple[Tensor, Tensor]]:
    """Fresh noisy inputs across the schedule: VP x_t = sqrt(abar) x0 + sqrt(1 - abar) z at t in [0, T),
    VE x = x0 + sigma z with sigma in [sigma_min, sigma_max]. x0 is smooth random 'image' data in range."""
    g = torch.Generator().manual_seed(seed)
    b, c, r, _ = shape
    out = []
    for i in range(levels):
        coarse = torch.rand((b, c, max(1, r // 8), max(1, r // 8)), generator=g)
        x0 = F.interpolate(coarse, size=(r, r), mode="bilinear", align_corners=False)
        z = torch.randn((b, c, r, r), generator=g)
        frac = (i + 0.5) / levels
        if sde == "ve":
            cfg = scheduler.config
            sigma = cfg.sigma_min * (cfg.sigma_max / cfg.sigma_min) ** frac
            x, level = x0 + sigma * z, torch.full((b,), sigma)
        else:
            T = int(scheduler.config.num_train_timesteps)
            t = min(T - 1, int(frac * T))
            a = float(scheduler.alphas_cumprod[t])
            x, level = math.sqrt(a) * (2 * x0 - 1) + math.sqrt(1 - a) * z, torch.full((b,), float(t))
        out.append((x.to(device), level.to(device)))
    return out


def measure_error(reference: ModelFn, candidate: ModelFn, inputs: Sequence[tuple[Tensor, Tensor]]) -> dict:
    """Worst-case differences of `candidate` from `reference` over `inputs`.

    rel_l2 = ||out - ref|| / ||ref|| per input (the number to bound); max_abs over all elements; NaN/inf in
    the candidate make the result unsafe (`finite` False).
    """
    worst_rel, worst_abs, finite = 0.0, 0.0, True
    with torch.inference_mode():
        for x, level in inputs:
            ref = reference(x, level).double()
            out = candidate(x.clone(), level.clone()).double()
            finite = finite and bool(torch.isfinite(out).all())
            diff = (out - ref).flatten(1)
            rel = (diff.norm(dim=1) / ref.flatten(1).norm(dim=1).clamp_min(1e-30)).max()
            worst_rel = max(worst_rel, float(rel))
            worst_abs = max(worst_abs, float(diff.abs().max()))
    return {"rel_l2": worst_rel, "max_abs": worst_abs, "finite": finite, "inputs": len(inputs)}


# ----- the pipeline ---------------------------------------------------------------------------------------


class AcceleratedPipeline(SDEditPipeline):
    """`SDEditPipeline` with `FastModel` as its model and noise drawn on the device.

    It only overrides `model_fn` and `prepare_noise`: sampling, masking
    and outputs are the pipeline's own.
    `reference_unet` (optional) keeps the fp32 model for `error_bound`.
    """

    def __init__(self, unet, scheduler, config=None, limits=None, options: AccelOptions = AccelOptions(), **kw):
        reference = kw.pop("reference_unet", None)
        device = kw.pop("device", None)
        if kw:
            raise TypeError(f"unexpected arguments {sorted(kw)}")
        super().__init__(unet, scheduler, config, limits)
        device = torch.device(device) if device is not None else super().device
        dtype = loading.pick_dtype(device, self.sde, options.dtype)
        self.options = options
        self.reference_unet = reference
        if device.type == "cuda" and options.cudnn_benchmark:
            torch.backends.cudnn.benchmark = True
        self.unet = prepare_unet(unet, dtype, options, device)
        self.fast = FastModel(
            self.unet,
            dtype,
            channels_last=options.channels_last,
            cuda_graph=options.cuda_graph and device.type == "cuda",
            graph_max_batch=options.graph_max_batch,
            compile_mode=options.compile,
        )
        self.warmup_s: float | None = None

    @classmethod
    def from_pretrained(
        cls, name_or_path=None, device=None, dtype=None, limits=None, options: AccelOptions | None = None, **kw
    ) -> AcceleratedPipeline:
        """Load the fp32 model once (cached: on the host, or on `device` with keep_reference=True, where it is
        the reference for `error_bound`), then build the fast copy on `device`."""
        options = options or AccelOptions()
        if dtype is not None:
            options = replace(options, dtype=dtype)
        dev = loading.pick_device(device)
        keep = kw.pop("keep_reference", False)
        cfg, unet, scheduler, _, _ = loading.load(name_or_path, dev if keep else "cpu", torch.float32)
        return cls(unet, scheduler, cfg, limits, options, reference_unet=unet if keep else None, device=dev, **kw)

    def model_fn(self) -> ModelFn:
        return self.fast

    def prepare_noise(self, seed, generator, batch: int, device: torch.device):
        noise, seeds = super().prepare_noise(seed, generator, batch, device)
        if self.options.device_noise and device.type == "cuda" and seeds is not None:
            noise = NoiseSource.from_seeds(seeds, device, on_device=True)
        return noise, seeds

    def warmup(self, batches: Sequence[int] = (1,), sampler: str | None = None, steps: int = 4) -> float:
        """Run a short edit per batch size, so that compiling, algorithm search and graph capture happen now
        and not on a user's first request. Returns the seconds it took."""
        t = time.perf_counter()
        r = self.config.resolution
        guide = torch.full((3, r, r), 0.5)
        for b in batches:
            self(guide, strength=0.5, num_inference_steps=steps, sampler=sampler, num_images=b, seed=0, progress=False)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.warmup_s = time.perf_counter() - t
        return self.warmup_s

    def error_bound(self, batch: int = 1, levels: int = 6, seed: int = 0) -> dict:
        """Measure this pipeline's model against the fp32 reference on fresh inputs across the schedule."""
        if self.reference_unet is None:
            raise ValueError("load with keep_reference=True to measure against the fp32 reference")
        r = self.config.resolution
        ref_unet = self.reference_unet
        ref_device = next(ref_unet.parameters()).device
        inputs = probe_inputs(self.sde, (batch, 3, r, r), self.scheduler, levels, seed, ref_device)
        dev = self.device

        def candidate(x: Tensor, level: Tensor) -> Tensor:
            return self.fast(x.to(dev), level.to(dev)).to(ref_device)

        result = measure_error(plain_model_fn(ref_unet), candidate, inputs)
        result["dtype"] = str(self.fast.dtype).replace("torch.", "")
        return result
