"""A learned 4x upscaler for a small model's canvases: 64 px results shown and saved at 256 px, sharp.

A model's config may name one (`upscaler: models/fluent-emoji-upscaler-4x`); the pipeline then applies it
to the result canvases before they are mapped back to the guide's size and composited, so that outside
the mask the output is still the guide, pixel for pixel (`SDEditPipeline.postprocess`).

The network (`SRNet`) predicts the detail that bicubic interpolation misses: output = bicubic(x) + a
residual computed at the low resolution and rearranged into the high one by a pixel shuffle
(Shi et al. 2016, ESPCN), with EDSR's plain residual blocks in the trunk (Lim et al. 2017, no batch norm).
The last layer starts at zero, so an untrained net is exactly bicubic. Everything runs at the input's
resolution except the final shuffle and the bicubic base, which is what keeps it within the CPU budget
(docs/quality.md, "A learned 4x upscaler"). It is trained by `sdedit.lab.upscaler`.

A folder holds `config.json` (the architecture, and what it was trained for) and `model.safetensors`;
loading reads nothing else and never touches the network.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import threads as cpu_threads
from .errors import ModelLoadError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
KINDS = ("edsr", "espcn")


class ResBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x), inplace=True))


class SRNet(nn.Module):
    """x (B, 3, h, w) in [0, 1] -> (B, 3, s h, s w): bicubic(x) + a learned, pixel-shuffled residual.

    kind "edsr": conv 3x3 -> `blocks` residual blocks (conv-ReLU-conv) with a long skip -> conv to 3 s^2
    channels -> shuffle. kind "espcn": conv 5x5 (C) -> conv 3x3 (C/2) -> conv 3x3 (3 s^2) -> shuffle.
    The output is not clamped (the loss sees it as is); `Upscaler` clamps and rounds to uint8.
    """

    def __init__(self, scale: int = 4, channels: int = 32, blocks: int = 4, kind: str = "edsr"):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
        self.scale, self.channels, self.blocks, self.kind = scale, channels, blocks, kind
        out = 3 * scale * scale
        if kind == "espcn":
            half = max(8, channels // 2)
            self.head = nn.Sequential(nn.Conv2d(3, channels, 5, padding=2), nn.ReLU(inplace=True))
            self.body = nn.Sequential(nn.Conv2d(channels, half, 3, padding=1), nn.ReLU(inplace=True))
            self.tail = nn.Conv2d(half, out, 3, padding=1)
        else:
            self.head = nn.Conv2d(3, channels, 3, padding=1)
            self.body = nn.Sequential(
                *[ResBlock(channels) for _ in range(blocks)], nn.Conv2d(channels, channels, 3, padding=1)
            )
            self.tail = nn.Conv2d(channels, out, 3, padding=1)
        nn.init.zeros_(self.tail.weight)  # start as bicubic: training only has to learn what it misses
        nn.init.zeros_(self.tail.bias)

    def config(self) -> dict:
        return {"_class_name": "SRNet", "scale": self.scale, "channels": self.channels, "blocks": self.blocks,
                "kind": self.kind}  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        h = self.head(x)
        h = self.body(h) + h if self.kind == "edsr" else self.body(h)
        return base + F.pixel_shuffle(self.tail(h), self.scale)


class Upscaler:
    """A loaded upscaler: `upscale(canvases)` maps (B, R, R, 3) uint8 to (B, sR, sR, 3) uint8."""

    def __init__(self, net: SRNet, config: dict | None = None, folder: str | Path | None = None):
        self.net = net.eval().requires_grad_(False)
        self.config = dict(config or net.config())
        self.folder = Path(folder) if folder is not None else None

    @property
    def scale(self) -> int:
        return self.net.scale

    @property
    def name(self) -> str:
        return self.config.get("name") or (self.folder.name if self.folder else "SRNet")

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def to(self, device) -> Upscaler:
        self.net.to(device)
        return self

    @torch.inference_mode()
    def upscale(self, canvases: np.ndarray, chunk: int = 8) -> np.ndarray:
        """(B, R, R, 3) or (R, R, 3) uint8 -> (B, sR, sR, 3) or (sR, sR, 3) uint8, in chunks of `chunk`."""
        a = np.asarray(canvases)
        if a.dtype != np.uint8 or a.ndim not in (3, 4) or a.shape[-1] != 3:
            raise ValueError(f"canvases must be uint8 (B, H, W, 3) or (H, W, 3), not {a.dtype} {a.shape}")
        single = a.ndim == 3
        a = a[None] if single else a
        outs = []
        for i in range(0, len(a), chunk):
            x = torch.from_numpy(np.array(a[i : i + chunk])).to(self.device)  # a writable copy
            x = x.permute(0, 3, 1, 2).float().div_(255.0)
            cpu_threads.step()  # inside an edit (`SDEditPipeline.postprocess`): the cores free now
            y = self.net(x).clamp_(0.0, 1.0).mul_(255.0).round_()
            outs.append(y.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())
        out = np.concatenate(outs) if outs else np.zeros((0, *(d * self.scale for d in a.shape[1:3]), 3), np.uint8)
        return out[0] if single else out

    __call__ = upscale


def save_upscaler(net: SRNet, folder: str | Path, info: dict | None = None, dtype: torch.dtype = torch.float16) -> Path:
    """Write `config.json` (architecture + `info`) and `model.safetensors` (weights in `dtype`)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", dtype).contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_FILE), metadata={"format": "pt"})
    (folder / CONFIG_FILE).write_text(json.dumps({**net.config(), **(info or {})}, indent=2) + "\n")
    return folder


_CACHE: OrderedDict[tuple[str, str], Upscaler] = OrderedDict()
_LOCK = threading.Lock()


def load_upscaler(folder: str | Path, device: str | torch.device = "cpu") -> Upscaler:
    """The upscaler in `folder` (config.json + model.safetensors), in float32 on `device`; cached."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    key = (str(folder.resolve()), str(torch.device(device)))
    with _LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            if not (folder / name).is_file():
                raise ModelLoadError(f"the upscaler folder {folder} has no {name}")
        try:
            config = json.loads((folder / CONFIG_FILE).read_text())
            net = SRNet(**{k: config[k] for k in ("scale", "channels", "blocks", "kind") if k in config})
            state = load_file(str(folder / WEIGHTS_FILE))
            net.load_state_dict({k: v.float() for k, v in state.items()})
        except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as exc:
            raise ModelLoadError(f"the upscaler in {folder} could not be loaded ({exc})") from None
        upscaler = Upscaler(net.to(device), config, folder)
        _CACHE[key] = upscaler
        while len(_CACHE) > 4:
            _CACHE.popitem(last=False)
        return upscaler


def upscaler_for(config, device: str | torch.device = "cpu") -> Upscaler | None:
    """The upscaler a model config names (`config.upscaler`, a folder relative to the repository), or None."""
    path = getattr(config, "upscaler_path", None)
    return None if path is None else load_upscaler(path, device)


def upscale(canvases: np.ndarray, upscaler: Upscaler | str | Path) -> np.ndarray:
    """(B, R, R, 3) uint8 -> (B, 4R, 4R, 3) uint8 with `upscaler` (a loaded one, or its folder)."""
    if not isinstance(upscaler, Upscaler):
        upscaler = load_upscaler(upscaler)
    return upscaler.upscale(canvases)


def resolve(config, upscale: bool | None, device: str | torch.device = "cpu") -> Upscaler | None:
    """The upscaler a call uses: None (the default) = the config's, if it names one; True = the config's,
    an InputError if it names none; False = none."""
    from .errors import InputError

    if upscale is not None and not isinstance(upscale, (bool, np.bool_)):
        raise InputError(f"upscale must be True, False or None (the model's default), not {upscale!r}")
    if upscale is False or upscale is np.False_:
        return None
    path = getattr(config, "upscaler_path", None)
    if path is None:
        if upscale:
            raise InputError(f"{getattr(config, 'name', 'this model')} has no upscaler (its config names none)")
        return None
    return load_upscaler(path, device)
