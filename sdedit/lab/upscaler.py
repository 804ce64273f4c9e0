"""Train the learned 4x upscaler (`sdedit.upscale.SRNet`) on an image set, and export it as a folder.

`python -m sdedit train-upscaler --config configs/train-upscaler-fluent-emoji.yaml` trains the embedded
model's upscaler on the training split of Fluent Emoji 3D at the data's native 256 px (the held-out emoji
stay held out: the same split as `sdedit.lab.data` and the evaluation). The habits are the model
trainer's (`sdedit.lab.train`): a progress bar, an EMA of the weights (what gets exported), periodic
checkpoints, resume, a time budget, and an export folder with the weights (fp16 safetensors), a model card
and a sample grid.

Inputs are the high-resolution images made small the way the diffusion model's results look: the 64 px
images it was trained on were made by `data.square`, a Lanczos resize of each 256 px render, so
`degradation: lanczos` pairs each 256 px image with exactly what the model learned to produce. `area`
(box) and `mixed` (either, per sample) are there to measure or to harden; `noise` adds Gaussian noise of a
random standard deviation up to that many grey levels, for outputs that are not quite clean.

The learning rate warms up, then follows a cosine over the run's progress, which is whichever of
`max_steps` and `max_minutes` is nearer its end, so a time-budgeted run still anneals.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from tqdm.auto import tqdm

from ..upscale import SRNet, Upscaler, save_upscaler
from .data import DEFAULT_SPLIT, ImageSet, base_key, code_points, is_held_out, load_image_set
from .hardware import cpu_name
from .train import read_recipe, run_trainer

DEGRADATIONS = ("lanczos", "area", "bicubic", "mixed")
_PIL_FILTERS = {"lanczos": Image.LANCZOS, "area": Image.BOX, "bicubic": Image.BICUBIC}


@dataclass
class UpscalerTrainConfig:
    """Everything an upscaler training run depends on; a YAML file in configs/ fills it."""

    name: str
    data: str = "fluent-emoji-3d"
    output_dir: str = "runs/upscaler"
    resolution: int = 256  # the high-resolution side: the data's native size
    scale: int = 4
    fit: str = "pad"
    held_out_fraction: float = 0.1  # the data module's split: the held-out emoji are never loaded for training
    split: str = DEFAULT_SPLIT  # which split (sdedit.lab.data.SPLITS); the shipped upscaler's is emoji-v1
    monitor_fraction: float = 0.02  # training-split emoji kept out of training to watch PSNR on
    model: dict = field(default_factory=lambda: {"kind": "edsr", "channels": 32, "blocks": 4})
    degradation: str = "lanczos"
    noise: float = 0.0  # max std of Gaussian noise on the small input, in grey levels (0-255)
    patch: int = 32  # small-side patch; the target is scale x patch (0 = whole images)
    batch_size: int = 16
    learning_rate: float = 1e-3
    min_learning_rate: float = 1e-5
    warmup_steps: int = 100
    max_steps: int = 100_000
    max_minutes: float | None = None
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    hflip: bool = True
    seed: int = 0
    threads: int | None = None
    checkpoint_every: int = 100
    monitor_every: int = 250
    grid_images: int = 6
    save_dtype: str = "float16"

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides) -> UpscalerTrainConfig:
        cfg = cls(**read_recipe(cls, path, "upscaler training", overrides))
        if cfg.degradation not in DEGRADATIONS:
            raise ValueError(f"degradation must be one of {DEGRADATIONS}, not {cfg.degradation!r}")
        if cfg.resolution % cfg.scale:
            raise ValueError(f"resolution {cfg.resolution} is not a multiple of scale {cfg.scale}")
        return cfg


# ----- images and measures (also used by benchmarks/upscaler.py) -------------------------------------------
def downscale(images: np.ndarray, scale: int, method: str = "lanczos") -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, H/scale, W/scale, 3) uint8 with PIL's resampling (antialiased)."""
    _, h, w, _ = images.shape
    size = (w // scale, h // scale)
    return np.stack([np.asarray(Image.fromarray(im).resize(size, _PIL_FILTERS[method])) for im in images])


def resize_up(images: np.ndarray, scale: int, method: str = "bicubic") -> np.ndarray:
    """(N, h, w, 3) uint8 -> (N, h*scale, w*scale, 3) uint8 with PIL (bicubic, lanczos or nearest)."""
    filt = {"bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS, "nearest": Image.NEAREST}[method]
    _, h, w, _ = images.shape
    return np.stack([np.asarray(Image.fromarray(im).resize((w * scale, h * scale), filt)) for im in images])


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image PSNR in dB of uint8 (N, H, W, 3) images (peak 255)."""
    err = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    mse = err.reshape(len(a), -1).mean(1)
    return 10.0 * np.log10(255.0**2 / np.maximum(mse, 1e-10))


def ssim(a: np.ndarray, b: np.ndarray, window: int = 11, sigma: float = 1.5, chunk: int = 16) -> np.ndarray:
    """Per-image SSIM (Wang et al. 2004) of uint8 (N, H, W, 3) images on the luma (BT.601), the common
    convention in super-resolution papers: an 11x11 Gaussian window (sigma 1.5, applied as two 1-D passes),
    K1 = 0.01, K2 = 0.03, L = 255, over the valid region (no padding)."""
    g = torch.exp(-((torch.arange(window, dtype=torch.float32) - (window - 1) / 2) ** 2) / (2 * sigma**2))
    g = g / g.sum()
    gh, gv = g.view(1, 1, 1, window), g.view(1, 1, window, 1)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    weights = torch.tensor([0.299, 0.587, 0.114])

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, gh), gv)

    out = []
    for i in range(0, len(a), chunk):
        x = (torch.from_numpy(a[i : i + chunk]).float() @ weights)[:, None]
        y = (torch.from_numpy(b[i : i + chunk]).float() @ weights)[:, None]
        mx, my = blur(x), blur(y)
        # (co)variances from values centred per image: float32 without E[x^2] - E[x]^2 cancellation
        xc, yc = x - x.mean(dim=(2, 3), keepdim=True), y - y.mean(dim=(2, 3), keepdim=True)
        mxc, myc = blur(xc), blur(yc)
        sxx = blur(xc * xc) - mxc * mxc
        syy = blur(yc * yc) - myc * myc
        sxy = blur(xc * yc) - mxc * myc
        ssim_map = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
        out.append(ssim_map.mean(dim=(1, 2, 3)).double())
    return torch.cat(out).numpy()


def _font(size: int = 14):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def comparison_grid(columns: dict[str, np.ndarray], size: int | None = None, pad: int = 4) -> Image.Image:
    """One row per image, one labelled column per entry of `columns` ((N, h, w, 3) uint8 each); every
    tile is shown at `size` px (the largest column's by default), smaller ones enlarged with nearest
    neighbour so their pixels stay visible."""
    arrays = list(columns.values())
    n = len(arrays[0])
    size = size or max(a.shape[1] for a in arrays)
    head = 22
    w = len(arrays) * (size + pad) + pad
    h = head + n * (size + pad) + pad
    canvas = Image.new("RGB", (w, h), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = _font()
    for c, (label, a) in enumerate(columns.items()):
        x = pad + c * (size + pad)
        draw.text((x + 2, 4), label, fill=(0, 0, 0), font=font)
        for r in range(n):
            tile = Image.fromarray(a[r])
            if tile.size != (size, size):
                tile = tile.resize((size, size), Image.NEAREST)
            canvas.paste(tile, (x, head + r * (size + pad)))
    return canvas


def group_key(name: str) -> str:
    """The emoji without skin tones (the data module's split key), or the name for other files."""
    try:
        return "-".join(f"{c:x}" for c in base_key(code_points(name)))
    except ValueError:
        return name


# ----- the trainer ----------------------------------------------------------------------------------------
def lr_at(step: int, progress: float, cfg: UpscalerTrainConfig) -> float:
    warm = min(1.0, (step + 1) / max(1, cfg.warmup_steps))
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return warm * (cfg.min_learning_rate + (cfg.learning_rate - cfg.min_learning_rate) * cosine)


class UpscalerTrainer:
    """One upscaler training run: data, a step, monitoring, checkpoints, resume, export."""

    def __init__(self, cfg: UpscalerTrainConfig, images: ImageSet | None = None):
        self.cfg = cfg
        self.out = Path(cfg.output_dir)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        data = (
            images
            if images is not None
            else load_image_set(cfg.data, cfg.resolution, cfg.held_out_fraction, cfg.fit, split=cfg.split)
        )
        train = data.subset(held_out=False) if data.held_out.any() else data  # held-out emoji: never touched
        monitor = np.array([is_held_out("monitor:" + group_key(n), cfg.monitor_fraction) for n in train.names])
        if monitor.all():
            monitor[:] = False
        if not monitor.any() and len(train) > 1:
            monitor[-1] = True
        self.hr = train.images[~monitor]
        self.monitor_hr = train.images[monitor][:64]
        self.monitor_names = [n for n, m in zip(train.names, monitor, strict=True) if m][:64]
        self.train_images = int((~monitor).sum())
        methods = ("lanczos", "area") if cfg.degradation == "mixed" else (cfg.degradation,)
        self.lr = {m: downscale(self.hr, cfg.scale, m) for m in methods}
        self.monitor_lr = downscale(self.monitor_hr, cfg.scale, methods[0])
        self.monitor_bicubic_psnr = float(psnr(resize_up(self.monitor_lr, cfg.scale), self.monitor_hr).mean())
        self.net = SRNet(scale=cfg.scale, **cfg.model)
        self.ema = copy.deepcopy(self.net).eval().requires_grad_(False)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.learning_rate)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.step = 0
        self.seconds = 0.0
        self.losses: list[float] = []
        self.monitor: list[dict] = []  # {"step", "psnr"} of the EMA weights on the monitor images
        self.runs: list[dict] = []
        self.config_file: str | None = None

    # ----- checkpoints -----------------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.out / "checkpoints" / "last.pt"

    def save_checkpoint(self) -> None:
        self.checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "step": self.step,
            "seconds": self.seconds,
            "net": self.net.state_dict(),
            "ema": self.ema.state_dict(),
            "opt": self.opt.state_dict(),
            "gen": self.gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "losses": self.losses[-10_000:],
            "monitor": self.monitor,
            "runs": self.runs,
            "config": asdict(self.cfg),
        }
        tmp = self.checkpoint_path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.checkpoint_path)  # atomic: a kill mid-save never corrupts the last checkpoint

    def load_checkpoint(self) -> bool:
        if not self.checkpoint_path.exists():
            return False
        state = torch.load(self.checkpoint_path, map_location="cpu", weights_only=True)
        self.net.load_state_dict(state["net"])
        self.ema.load_state_dict(state["ema"])
        self.opt.load_state_dict(state["opt"])
        self.gen.set_state(state["gen"])
        torch.set_rng_state(state["torch_rng"])
        self.step, self.seconds, self.losses = state["step"], state["seconds"], list(state["losses"])
        self.monitor, self.runs = list(state["monitor"]), list(state["runs"])
        return True

    # ----- one step --------------------------------------------------------------------------------------
    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(small input, target) in [0, 1]: random images, aligned random patches, flips, input noise."""
        cfg, s = self.cfg, self.cfg.scale
        n = len(self.hr)
        idx = torch.randint(0, n, (cfg.batch_size,), generator=self.gen).tolist()
        methods = list(self.lr)
        which = torch.randint(0, len(methods), (cfg.batch_size,), generator=self.gen).tolist()
        small = self.lr[methods[0]].shape[1]
        p = min(cfg.patch, small) if cfg.patch else small
        offs = torch.randint(0, small - p + 1, (cfg.batch_size, 2), generator=self.gen).tolist()
        xs, ys = [], []
        for i, m, (top, left) in zip(idx, which, offs, strict=True):
            xs.append(self.lr[methods[m]][i, top : top + p, left : left + p])
            ys.append(self.hr[i, top * s : (top + p) * s, left * s : (left + p) * s])
        x = torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).float() / 255.0
        y = torch.from_numpy(np.stack(ys)).permute(0, 3, 1, 2).float() / 255.0
        if cfg.hflip:
            flip = (torch.rand(len(idx), generator=self.gen) < 0.5)[:, None, None, None]
            x, y = torch.where(flip, x.flip(-1), x), torch.where(flip, y.flip(-1), y)
        if cfg.noise:
            std = torch.rand(len(idx), 1, 1, 1, generator=self.gen) * (cfg.noise / 255.0)
            x = ((x + std * torch.randn(x.shape, generator=self.gen)).clamp(0, 1) * 255).round() / 255  # still uint8
        return x, y

    def progress(self) -> float:
        by_steps = self.step / max(1, self.cfg.max_steps)
        by_time = self.seconds / (self.cfg.max_minutes * 60) if self.cfg.max_minutes else 0.0
        return max(by_steps, by_time)

    def train_step(self) -> float:
        x, y = self.batch()
        for group in self.opt.param_groups:
            group["lr"] = lr_at(self.step, self.progress(), self.cfg)
        loss = F.l1_loss(self.net(x), y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.cfg.grad_clip)
        self.opt.step()
        decay = min(self.cfg.ema_decay, (1 + self.step) / (10 + self.step))
        with torch.no_grad():
            torch._foreach_lerp_(list(self.ema.parameters()), [p.detach() for p in self.net.parameters()], 1 - decay)
        self.step += 1
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"loss became {value} at step {self.step}; lower learning_rate")
        self.losses.append(value)
        return value

    # ----- monitoring and export -------------------------------------------------------------------------
    def upscaler(self) -> Upscaler:
        return Upscaler(copy.deepcopy(self.ema).eval(), {"name": self.cfg.name})

    def measure(self) -> float:
        """Mean PSNR (dB) of the EMA weights on the monitor images (training-split emoji not trained on)."""
        value = float(psnr(self.upscaler().upscale(self.monitor_lr), self.monitor_hr).mean())
        self.monitor.append({"step": self.step, "psnr": round(value, 3)})
        return value

    def grid(self, path: Path) -> Path:
        k = self.cfg.grid_images
        lr, hr = self.monitor_lr[:k], self.monitor_hr[:k]
        columns = {
            f"{lr.shape[1]} px input": lr,
            "bicubic": resize_up(lr, self.cfg.scale),
            "ours": self.upscaler().upscale(lr),
            "original": hr,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        comparison_grid(columns).save(path)
        return path

    def card(self) -> dict:
        ours = self.monitor[-1]["psnr"] if self.monitor else None
        return {
            "name": self.cfg.name,
            "data": self.cfg.data,
            "train_images": self.train_images,
            "monitor_images": len(self.monitor_hr),
            "steps": self.step,
            "batch_size": self.cfg.batch_size,
            "train_seconds": round(self.seconds, 1),
            "final_loss_mean_last_200": float(np.mean(self.losses[-200:])) if self.losses else None,
            "monitor_psnr": ours,
            "monitor_psnr_bicubic": round(self.monitor_bicubic_psnr, 3),
            "monitor": self.monitor,
            "parameters": sum(p.numel() for p in self.ema.parameters()),
            "device": cpu_name(),
            "threads": torch.get_num_threads(),
            "runs": self.runs,
            "config_file": self.config_file,
            "torch": torch.__version__,
            "config": asdict(self.cfg),
        }

    def export(self, dest: str | Path | None = None) -> Path:
        folder = Path(dest or self.out / "model")
        if not self.monitor or self.monitor[-1]["step"] != self.step:
            self.measure()
        dtype = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}[self.cfg.save_dtype]
        card = self.card()
        info = {
            "name": self.cfg.name,
            "input_resolution": self.cfg.resolution // self.cfg.scale,
            "degradation": self.cfg.degradation,
            "trained_on": f"{self.cfg.data} (training split)",
        }
        save_upscaler(self.ema, folder, info, dtype)
        self.grid(folder / "samples.png")
        (folder / "training.json").write_text(json.dumps(card, indent=2) + "\n")
        write_upscaler_card(folder, card)
        return folder

    # ----- the run ---------------------------------------------------------------------------------------
    def run(self, resume: bool = True) -> Path:
        if resume and self.load_checkpoint():
            print(f"resumed from {self.checkpoint_path} at step {self.step}")
        budget = self.cfg.max_minutes * 60 if self.cfg.max_minutes else math.inf
        this_run = {"from_step": self.step, "to_step": self.step, "seconds": 0.0}
        self.runs.append(this_run)
        resumed_at = self.seconds
        bar = tqdm(total=self.cfg.max_steps, initial=self.step, desc=self.cfg.name, dynamic_ncols=True)
        start = time.perf_counter() - self.seconds
        while self.step < self.cfg.max_steps and self.seconds < budget:
            self.train_step()
            self.seconds = time.perf_counter() - start
            this_run.update(to_step=self.step, seconds=round(self.seconds - resumed_at, 1))
            bar.update(1)
            postfix = {"loss": f"{np.mean(self.losses[-50:]):.4f}"}
            if self.cfg.monitor_every and self.step % self.cfg.monitor_every == 0:
                self.measure()
            if self.monitor:
                postfix["psnr"] = f"{self.monitor[-1]['psnr']:.2f} (bicubic {self.monitor_bicubic_psnr:.2f})"
            bar.set_postfix(postfix, refresh=False)
            if self.step % self.cfg.checkpoint_every == 0:
                self.save_checkpoint()
        bar.close()
        self.measure()
        self.save_checkpoint()
        return self.export()


def write_upscaler_card(folder: Path, card: dict) -> Path:
    """README.md: what the upscaler is, what it was trained on and for how long, what it measured."""
    cfg = card["config"]
    params = card["parameters"]
    weights = folder / "model.safetensors"
    size = weights.stat().st_size if weights.exists() else 0
    arch = cfg["model"]
    monitor = (
        f"{card['monitor_psnr']:.2f} dB vs bicubic {card['monitor_psnr_bicubic']:.2f} dB"
        if card.get("monitor_psnr") is not None
        else "not measured"
    )
    lines = [
        f"# {card['name']}",
        "",
        f"A learned {cfg['scale']}x upscaler for SDEdit Studio's embedded model: its "
        f"{cfg['resolution'] // cfg['scale']} px results become {cfg['resolution']} px images "
        "(`sdedit.upscale`; the pipeline applies it when the model's config names this folder).",
        "",
        "## Model",
        "",
        f"- `SRNet`, kind `{arch.get('kind', 'edsr')}`, {arch.get('channels')} channels, "
        f"{arch.get('blocks')} residual blocks: bicubic plus a residual computed at the small resolution and "
        "pixel-shuffled up (ESPCN / EDSR style). The last layer starts at zero, i.e. as bicubic.",
        f"- {params:,} parameters; weights {size / 1e6:.2f} MB ({cfg['save_dtype']} safetensors).",
        "",
        "## Training",
        "",
        f"- Data: `{card['data']}`, training split only ({card['train_images']} images at {cfg['resolution']} px;"
        f" held-out fraction {cfg['held_out_fraction']}, split `{cfg.get('split', 'emoji-v1')}` of `sdedit.lab.data`). "
        f"{card['monitor_images']} training-split images of other emoji were kept out to watch PSNR.",
        f"- Inputs: the targets downscaled {cfg['scale']}x with `{cfg['degradation']}`"
        + (f", plus Gaussian noise up to {cfg['noise']:g} grey levels" if cfg.get("noise") else "")
        + f"; {cfg['patch'] * cfg['scale']} px target patches" * bool(cfg["patch"])
        + f", batch {cfg['batch_size']}, horizontal flips.",
        f"- L1 loss, Adam at {cfg['learning_rate']:g} (warm-up {cfg['warmup_steps']} steps, cosine to "
        f"{cfg['min_learning_rate']:g} over the run's step or time budget), EMA {cfg['ema_decay']} (exported).",
        f"- {card['steps']:,} steps in {card['train_seconds'] / 60:.1f} min on {card['device']} "
        f"({card['threads']} threads); final L1 (mean of the last 200 steps) {card['final_loss_mean_last_200']:.4f}.",
        f"- Monitor PSNR at {cfg['resolution']} px: {monitor}.",
        "",
        "![64 px input, bicubic, this upscaler, original](samples.png)",
        "",
        "Columns: the small input (enlarged, nearest neighbour), bicubic, this upscaler, the original.",
        "",
        "## Reproduce",
        "",
        f"    python -m sdedit train-upscaler --config {card.get('config_file') or 'CONFIG.yaml'}",
        "",
        "Quality on the held-out emoji and cost: `python benchmarks/upscaler.py`, reported in docs/quality.md.",
        "",
        "## Licence",
        "",
        "MIT (weights); trained on Fluent Emoji 3D by Microsoft (MIT), via the npm package @lobehub/fluent-emoji-3d.",
        "",
    ]
    path = folder / "README.md"
    path.write_text("\n".join(lines))
    return path


def train_upscaler(
    config: str | Path, resume: bool = True, export_only: bool = False, export_to: str | None = None, **overrides
) -> Path:
    """Train (resuming by default) and export; `export_only` exports the last checkpoint's EMA weights."""
    trainer = UpscalerTrainer(UpscalerTrainConfig.from_yaml(config, **overrides))
    return run_trainer(trainer, config, resume, export_only, export_to)
