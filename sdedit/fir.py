"""NCSN++'s FIR up/downsampling as one depthwise convolution (`FirResample`), swapped in at load time.

diffusers' `upfirdn2d_native` reshapes every (B, C, H, W) map into B*C one-channel images, builds its kernel
on the host and copies it to the device on every call, and (downsampling) filters at full resolution before
striding. The same linear map as one depthwise (transposed) convolution is ~1.75x faster for NCSN++ on the
CPU (docs/performance.md) and can be CUDA-graphed. `loading` applies it to every VE model; `accel` too.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

Tensor = torch.Tensor


class FirResample(nn.Module):
    """2x FIR up- or downsampling (NCSN++'s (1, 3, 3, 1) filter) as one depthwise convolution.

    Equal to diffusers' `upsample_2d` / `downsample_2d` (and `FirUpsample2D` / `FirDownsample2D` without
    their conv) for a 4-tap kernel and factor 2; see tests/engine/test_accel.py. Upsampling has two equivalent
    implementations: "transpose" (a depthwise stride-2 transposed convolution) and "phase" (the four
    polyphase 3x3 filters as one grouped convolution, then pixel_shuffle), which is the faster one for bf16 on
    the CPU (oneDNN's depthwise transposed bf16 convolution is slow there). "auto" picks per call.
    """

    def __init__(self, up: bool, kernel: Sequence[float] = (1, 3, 3, 1), impl: str = "auto"):
        super().__init__()
        if len(kernel) != 4:
            raise ValueError("FirResample handles 4-tap kernels with factor 2 (NCSN++'s (1, 3, 3, 1))")
        if impl not in ("auto", "transpose", "phase"):
            raise ValueError(f"impl must be auto, transpose or phase, not {impl!r}")
        k = torch.tensor(kernel, dtype=torch.float64)
        k2 = torch.outer(k, k)
        k2 = k2 / k2.sum() * (4.0 if up else 1.0)
        # upfirdn2d correlates with the flipped kernel; conv_transpose2d with stride 2 applies it unflipped
        w = k2 if up else torch.flip(k2, [0, 1])
        self.up, self.impl = up, impl
        self.register_buffer("weight", w.float()[None, None].contiguous(), persistent=False)
        if up:  # output 2m takes taps (k3, k1) of x[m-1], x[m]; output 2m+1 takes (k2, k0) of x[m], x[m+1]
            k1 = k / k.sum() * 2.0
            zero = k1.new_zeros(())
            taps = (torch.stack([k1[3], k1[1], zero]), torch.stack([zero, k1[2], k1[0]]))
            phases = torch.stack([torch.outer(taps[py], taps[px]) for py in (0, 1) for px in (0, 1)])
            self.register_buffer("phases", phases.float()[:, None].contiguous(), persistent=False)

    def _use_phase(self, x: Tensor) -> bool:
        if self.impl != "auto":
            return self.impl == "phase"
        return x.device.type == "cpu" and x.dtype in (torch.bfloat16, torch.float16)

    def forward(self, x: Tensor) -> Tensor:
        c = x.shape[1]
        if not self.up:
            return F.conv2d(x, self.weight.to(x.dtype).expand(c, 1, 4, 4), stride=2, padding=1, groups=c)
        if self._use_phase(x):
            w = self.phases.to(x.dtype).repeat(c, 1, 1, 1)  # (4c, 1, 3, 3): channel c*4 + phase
            return F.pixel_shuffle(F.conv2d(x, w, padding=1, groups=c), 2)
        return F.conv_transpose2d(x, self.weight.to(x.dtype).expand(c, 1, 4, 4), stride=2, padding=1, groups=c)

    def extra_repr(self) -> str:
        return f"{'up' if self.up else 'down'}, impl={self.impl}"


def _is_fir_lambda(fn, name: str) -> bool:
    code = getattr(fn, "__code__", None)
    return code is not None and fn.__name__ == "<lambda>" and name in code.co_names


def patch_fir(unet: nn.Module, impl: str = "auto") -> int:
    """Swap every FIR resampler of a (NCSN++) UNet2DModel for `FirResample`, in place. Returns how many."""
    from diffusers.models.downsampling import FirDownsample2D
    from diffusers.models.resnet import ResnetBlock2D
    from diffusers.models.upsampling import FirUpsample2D

    count = 0
    for module in list(unet.modules()):
        if isinstance(module, ResnetBlock2D):
            if _is_fir_lambda(module.upsample, "upsample_2d"):
                module.upsample = FirResample(True, impl=impl)
                count += 1
            if _is_fir_lambda(module.downsample, "downsample_2d"):
                module.downsample = FirResample(False, impl=impl)
                count += 1
        for name, child in list(module.named_children()):
            fir = tuple(getattr(child, "fir_kernel", ()))
            if isinstance(child, (FirUpsample2D, FirDownsample2D)) and not child.use_conv and len(fir) == 4:
                setattr(module, name, FirResample(isinstance(child, FirUpsample2D), fir, impl))
                count += 1
    return count


# ----- preparing the UNet ---------------------------------------------------------------------------------
