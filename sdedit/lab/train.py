"""Train a VP (DDPM) `UNet2DModel` on any image set, and export it as a diffusers model folder.

`python -m sdedit train --config configs/train-fluent-emoji-64.yaml` trains the embedded default. The loop
is the plain DDPM objective (predict the noise, uniform t) with AdamW, an EMA of the weights, mixed
precision where the hardware has it, periodic checkpoints (resumable) and sample grids. The EMA weights
are what gets exported: they are what SDEdit should sample from.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image
from tqdm.auto import tqdm

from ..accel import has_bf16_cpu
from .data import DEFAULT_SPLIT, ImageSet, check_split, identity_of, load_image_set, to_tensor_range
from .hardware import cpu_name

BALANCES = (None, "identity")


@dataclass
class TrainConfig:
    """Everything a training run depends on; a YAML file in configs/ fills it."""

    name: str
    data: str
    output_dir: str
    resolution: int = 64
    fit: str = "crop"
    held_out_fraction: float = 0.1
    split: str = DEFAULT_SPLIT  # sdedit.lab.data.SPLITS; recorded in the card, and the evaluation uses it
    model: dict = field(default_factory=dict)
    scheduler: dict = field(default_factory=dict)
    batch_size: int = 32
    learning_rate: float = 2e-4
    weight_decay: float = 0.0
    warmup_steps: int = 200
    max_steps: int = 100_000
    max_minutes: float | None = None
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    # how images are drawn into batches: None = uniformly; "identity" = every emoji identity equally often, its
    # skin-tone and gender variants sharing one identity's share (`sdedit.lab.data.identity_of`), so that the
    # people emoji (five tones and up to three genders each) no longer make up most of what the model learns
    balance: str | None = None
    snr_gamma: float | None = None  # Min-SNR-gamma loss weighting (Hang et al. 2023); None = plain MSE
    hflip: bool = True
    mixed_precision: str = "auto"
    seed: int = 0
    threads: int | None = None
    checkpoint_every: int = 250
    sample_every: int = 1000
    sample_steps: int = 50
    num_samples: int = 16
    # the model card's grid: the model's own ancestral sampler over every training level, as diffusers'
    # DDPMPipeline runs it (x0 clipped to the data range as the scheduler config says): the fairest look at
    # what the model learned; the periodic grids use the faster DDIM
    card_sampler: str = "ddpm"
    card_sample_steps: int = 1000
    save_dtype: str = "float16"

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides) -> TrainConfig:
        return cls(**read_recipe(cls, path, "training", overrides))


def read_recipe(cls, path: str | Path, what: str, overrides: dict) -> dict:
    """A training recipe's YAML as keyword arguments for the dataclass `cls`: unknown keys are an error
    that names the allowed ones; command-line overrides that are not None win."""
    with open(path) as f:
        raw = yaml.safe_load(f) or {}
    known = {f.name for f in fields(cls)}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"{path}: unknown {what} keys {sorted(unknown)}; allowed: {sorted(known)}")
    raw.update({k: v for k, v in overrides.items() if v is not None})
    return raw


def autocast_dtype(device: torch.device, mode: str) -> torch.dtype | None:
    if mode == "no":
        return None
    if mode == "bf16":
        return torch.bfloat16
    if mode == "fp16":
        return torch.float16
    if mode != "auto":
        raise ValueError(f"mixed_precision must be auto, no, bf16 or fp16, not {mode!r}")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if has_bf16_cpu() else None


def build_unet(cfg: TrainConfig):
    from diffusers import UNet2DModel

    return UNet2DModel(sample_size=cfg.resolution, in_channels=3, out_channels=3, **cfg.model)


def build_scheduler(cfg: TrainConfig):
    from diffusers import DDPMScheduler

    defaults = dict(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02)
    return DDPMScheduler(**{**defaults, **cfg.scheduler, "variance_type": "fixed_small"})


def sample_weights(names, balance: str | None) -> np.ndarray | None:
    """Each image's chance of being drawn into a batch (they sum to 1), or None to draw uniformly."""
    if balance not in BALANCES:
        raise ValueError(f"balance must be one of {BALANCES}, not {balance!r}")
    if balance is None:
        return None
    ids = [identity_of(str(n)) for n in names]
    counts: dict[str, int] = {}
    for i in ids:
        counts[i] = counts.get(i, 0) + 1
    w = np.array([1.0 / counts[i] for i in ids])
    return w / w.sum()


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """One fused pass over all parameters (a kernel per tensor would dominate a small model's GPU step)."""
    torch._foreach_lerp_(list(ema.parameters()), [p.detach() for p in model.parameters()], 1.0 - decay)


def ema_decay_at(step: int, target: float) -> float:
    """Warm the EMA up so early weights don't dominate a short run."""
    return min(target, (1 + step) / (10 + step))


def lr_at(step: int, cfg: TrainConfig) -> float:
    return cfg.learning_rate * min(1.0, (step + 1) / max(1, cfg.warmup_steps))


@torch.no_grad()
def sample_grid(
    unet, scheduler_config: dict, n: int, steps: int, seed: int, path: Path, sampler: str = "ddim"
) -> Image.Image:
    """Unconditional samples from `unet` (DDIM, or "ddpm": ancestral steps), tiled into a square-ish grid PNG.

    Both follow the scheduler config, including its `clip_sample`: predicted x0 clipped to the data range, as
    the DDPM checkpoints are sampled. Without it, small epsilon errors at high noise are amplified by
    1/sqrt(abar) (160x at t = T) into saturated, frame-filling colours.
    """
    from diffusers import DDIMScheduler, DDPMScheduler

    cls = {"ddim": DDIMScheduler, "ddpm": DDPMScheduler}[sampler]
    sched = cls.from_config(scheduler_config)
    sched.set_timesteps(steps)
    device = next(unet.parameters()).device
    g = torch.Generator(device).manual_seed(seed)
    res = unet.config.sample_size
    x = torch.randn(n, 3, res, res, generator=g, device=device)
    was_training = unet.training
    unet.eval()
    with torch.no_grad():
        for t in sched.timesteps:
            eps = unet(x, t.to(device)).sample
            x = sched.step(eps, t, x, generator=g).prev_sample
    unet.train(was_training)
    grid = make_grid(((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy())
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
    return grid


def make_grid(images: np.ndarray, cols: int | None = None, pad: int = 2) -> Image.Image:
    n, h, w, _ = images.shape
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    canvas = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        canvas[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = im
    return Image.fromarray(canvas)


def export_model(
    ema,
    scheduler,
    out: Path,
    save_dtype: str,
    card: dict | None = None,
    samples: int = 16,
    sampler: str = "ddpm",
    sample_steps: int = 1000,
) -> Path:
    """Write `unet/` and `scheduler/` subfolders (the layout SDEditPipeline.from_pretrained reads), a sample
    grid and a model card."""
    from .modelcard import write_card

    dtype = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}[save_dtype]
    model = copy.deepcopy(ema).to("cpu", dtype)
    model.save_pretrained(out / "unet", safe_serialization=True)
    scheduler.save_pretrained(out / "scheduler")
    if samples:
        model_fp32 = copy.deepcopy(ema).float()  # on the EMA's device: 1000 steps take seconds on a GPU
        sample_grid(model_fp32, dict(scheduler.config), samples, sample_steps, 0, out / "samples.png", sampler)
        if card is not None:
            card = {
                **card,
                "card_samples": f"{sampler}, {min(sample_steps, scheduler.config.num_train_timesteps)} steps",
            }
    if card is not None:
        (out / "training.json").write_text(json.dumps(card, indent=2) + "\n")
        write_card(out, card, sum(p.numel() for p in ema.parameters()))
    return out


class Trainer:
    """One training run: state, a step, checkpoints, resume."""

    def __init__(self, cfg: TrainConfig, images: ImageSet | None = None, device: str | None = None):
        self.cfg = cfg
        self.out = Path(cfg.output_dir)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        check_split(cfg.split)
        data = (
            images
            if images is not None
            else load_image_set(cfg.data, cfg.resolution, cfg.held_out_fraction, cfg.fit, split=cfg.split)
        )
        self.train_set = data.subset(held_out=False) if data.held_out.any() else data
        # (N, 3, H, W) uint8 on the training device (a quarter of float32's memory), with the RNG there too:
        # batches, timesteps and noise are drawn where they are used, so a GPU step never waits on the host
        self.data = torch.from_numpy(np.ascontiguousarray(self.train_set.images)).permute(0, 3, 1, 2).to(self.device)
        weights = sample_weights(self.train_set.names, cfg.balance)
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float32, device=self.device)
        self.unet = build_unet(cfg).to(self.device)
        self.ema = copy.deepcopy(self.unet).eval().requires_grad_(False)
        self.scheduler = build_scheduler(cfg)
        self.alphas_cumprod = self.scheduler.alphas_cumprod.to(self.device)
        cuda = self.device.type == "cuda"
        if cuda:
            torch.backends.cudnn.benchmark = True  # fixed shapes: cuDNN picks its fastest convolutions once
        self.opt = torch.optim.AdamW(
            self.unet.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay, fused=cuda or None
        )
        self.amp = autocast_dtype(self.device, cfg.mixed_precision)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp == torch.float16 and cuda)
        self.gen = torch.Generator(self.device).manual_seed(cfg.seed)
        self.step = 0
        self.seconds = 0.0
        self.losses: list[float] = []
        self.runs: list[dict] = []  # one record per run() over this checkpoint's life: steps and seconds
        self.config_file: str | None = None
        self._pending: list[torch.Tensor] = []  # losses still on the device, read every `sync_every` steps

    # ----- checkpoints -------------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.out / "checkpoints" / "last.pt"

    def save_checkpoint(self) -> None:
        self.sync_losses()
        self.checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "step": self.step,
            "seconds": self.seconds,
            "unet": self.unet.state_dict(),
            "ema": self.ema.state_dict(),
            "opt": self.opt.state_dict(),
            "scaler": self.scaler.state_dict(),
            "gen": self.gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "losses": self.losses[-10_000:],
            "runs": self.runs,
            "config": asdict(self.cfg),
        }
        tmp = self.checkpoint_path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.checkpoint_path)  # atomic: a kill mid-save never corrupts the last checkpoint

    def load_checkpoint(self) -> bool:
        if not self.checkpoint_path.exists():
            return False
        state = torch.load(self.checkpoint_path, map_location=self.device, weights_only=True)
        self.unet.load_state_dict(state["unet"])
        self.ema.load_state_dict(state["ema"])
        self.opt.load_state_dict(state["opt"])
        self.scaler.load_state_dict(state["scaler"])
        self.gen.set_state(state["gen"].cpu())  # RNG states are CPU byte tensors whatever the device
        torch.set_rng_state(state["torch_rng"].cpu())
        self.step, self.seconds, self.losses = state["step"], state["seconds"], list(state["losses"])
        self.runs = list(state.get("runs", []))
        return True

    # ----- one step ----------------------------------------------------------------------------------
    def batch(self) -> torch.Tensor:
        if self.weights is None:
            idx = torch.randint(0, len(self.data), (self.cfg.batch_size,), generator=self.gen, device=self.device)
        else:  # balanced: with replacement, by `sample_weights`
            idx = torch.multinomial(self.weights, self.cfg.batch_size, replacement=True, generator=self.gen)
        x = to_tensor_range(self.data[idx])  # [-1, 1], the VP models' range
        if self.cfg.hflip:
            flip = torch.rand(len(idx), generator=self.gen, device=self.device) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        return x

    def loss_weights(self, abar: torch.Tensor) -> torch.Tensor:
        """Min-SNR-gamma for epsilon prediction: min(SNR, gamma) / SNR. It stops the easy, low-noise steps
        from dominating the gradient, which converges several times faster for the same compute."""
        if not self.cfg.snr_gamma:
            return torch.ones_like(abar)
        snr = abar / (1 - abar)
        return snr.clamp(max=self.cfg.snr_gamma) / snr

    def train_step(self) -> torch.Tensor:
        """One optimiser step; returns the loss as a device tensor (reading it would sync the GPU)."""
        x0 = self.batch()
        n = x0.shape[0]
        t = torch.randint(0, self.scheduler.config.num_train_timesteps, (n,), generator=self.gen, device=self.device)
        noise = torch.randn(x0.shape, generator=self.gen, device=self.device)
        abar = self.alphas_cumprod[t].view(n, 1, 1, 1)
        xt = abar.sqrt() * x0 + (1 - abar).sqrt() * noise
        for group in self.opt.param_groups:
            group["lr"] = lr_at(self.step, self.cfg)
        with torch.autocast(self.device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None):
            pred = self.unet(xt, t).sample
        per_sample = (pred.float() - noise).pow(2).mean(dim=(1, 2, 3))
        loss = (per_sample * self.loss_weights(abar.view(n))).mean()
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.opt)
        torch.nn.utils.clip_grad_norm_(self.unet.parameters(), self.cfg.grad_clip)
        self.scaler.step(self.opt)
        self.scaler.update()
        ema_update(self.ema, self.unet, ema_decay_at(self.step, self.cfg.ema_decay))
        self.step += 1
        self._pending.append(loss.detach())
        return loss.detach()

    def sync_losses(self) -> None:
        """Move pending losses to `self.losses` (one host sync); fail fast on a non-finite one."""
        if not self._pending:
            return
        values = torch.stack(self._pending).float().cpu().tolist()
        first = self.step - len(values) + 1
        self._pending.clear()
        self.losses.extend(values)
        for i, value in enumerate(values):
            if not math.isfinite(value):
                raise FloatingPointError(f"loss became {value} at step {first + i}; lower learning_rate")

    # ----- the run -----------------------------------------------------------------------------------
    def samples(self, tag: str) -> Path:
        path = self.out / "samples" / f"{tag}.png"
        sample_grid(self.ema, dict(self.scheduler.config), self.cfg.num_samples, self.cfg.sample_steps, 0, path)
        return path

    def card(self) -> dict:
        self.sync_losses()
        return {
            "name": self.cfg.name,
            "data": self.cfg.data,
            "train_images": len(self.train_set),
            "steps": self.step,
            "batch_size": self.cfg.batch_size,
            "train_seconds": round(self.seconds, 1),
            "final_loss_mean_last_500": float(np.mean(self.losses[-500:])) if self.losses else None,
            "device": torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else cpu_name(),
            "device_type": self.device.type,
            "runs": self.runs,
            "config_file": self.config_file,
            "threads": torch.get_num_threads(),
            "mixed_precision": str(self.amp).replace("torch.", "") if self.amp else "no",
            "torch": torch.__version__,
            "config": asdict(self.cfg),
        }

    def export(self, dest: str | Path | None = None) -> Path:
        return export_model(
            self.ema,
            self.scheduler,
            Path(dest or self.out / "model"),
            self.cfg.save_dtype,
            self.card(),
            sampler=self.cfg.card_sampler,
            sample_steps=self.cfg.card_sample_steps,
        )

    def run(self, resume: bool = True) -> Path:
        if resume and self.load_checkpoint():
            print(f"resumed from {self.checkpoint_path} at step {self.step}")
        budget = self.cfg.max_minutes * 60 if self.cfg.max_minutes else math.inf
        this_run = {"from_step": self.step, "to_step": self.step, "seconds": 0.0}
        self.runs.append(this_run)
        resumed_at = self.seconds
        bar = tqdm(total=self.cfg.max_steps, initial=self.step, desc=self.cfg.name, dynamic_ncols=True)
        start = time.perf_counter() - self.seconds
        sync_every = 1 if self.device.type == "cpu" else 25
        while self.step < self.cfg.max_steps and self.seconds < budget:
            self.train_step()
            self.seconds = time.perf_counter() - start
            this_run.update(to_step=self.step, seconds=round(self.seconds - resumed_at, 1))
            bar.update(1)
            if self.step % sync_every == 0:
                self.sync_losses()
                bar.set_postfix(loss=f"{np.mean(self.losses[-50:]):.4f}", refresh=False)
            if self.step % self.cfg.checkpoint_every == 0:
                self.save_checkpoint()
            if self.cfg.sample_every and self.step % self.cfg.sample_every == 0:
                self.samples(f"step-{self.step:07d}")
        self.sync_losses()
        bar.close()
        self.save_checkpoint()
        self.samples(f"step-{self.step:07d}")
        return self.export()


def train(
    config: str | Path, resume: bool = True, export_only: bool = False, export_to: str | None = None, **overrides
) -> Path:
    """Train (resuming by default) and export; `export_only` exports the last checkpoint's EMA weights."""
    trainer = Trainer(TrainConfig.from_yaml(config, **overrides))
    return run_trainer(trainer, config, resume, export_only, export_to)


def run_trainer(trainer, config: str | Path, resume: bool, export_only: bool, export_to: str | None) -> Path:
    """What every trainer of the lab does with its command line: run (or only export) and export."""
    trainer.config_file = Path(config).as_posix()
    if export_only:
        if not trainer.load_checkpoint():
            raise FileNotFoundError(f"no checkpoint at {trainer.checkpoint_path} to export")
        return trainer.export(export_to)
    out = trainer.run(resume=resume)
    return trainer.export(export_to) if export_to else out
