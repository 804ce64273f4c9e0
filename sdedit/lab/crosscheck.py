"""`python -m sdedit.lab.crosscheck`: does the project's realism metric rank t0 as an independent one does?

The evaluation (`sdedit.lab.evaluate`) scores realism as KID on the features of the project's own emoji
classifier (`models/emoji-features`), on strokes from the paper's simulator. A metric that shares its
training data, its augmentations and its stroke simulator with the thing it grades can be blind in the
same places, so this command re-measures the t0 sweep with parts that share none of that:

- **Another stroke simulator** (`superpixel_strokes`): the image is cut into compact superpixels (SLIC-style
  k-means in colour and position), each is painted flat with its mean colour, and those colours are
  reduced to a k-colour palette. The paper's simulator (`sdedit.strokes`) median-filters then quantises per
  pixel, which rounds shapes; superpixels keep straight, polygonal borders and drop details below their size.
- **Independent feature networks** (nothing can be downloaded, so nothing pretrained is available):
  `RandomFeatureNet`, a randomly initialised CNN of another shape (no pooling between the conv layers,
  strided convs, no BatchNorm) with a fixed seed and multi-scale features (each stage's global mean, from
  64 px down to 8 px); random CNN features are a known second yardstick for generative models where no
  pretrained domain network exists (Naeem et al. 2020). It has never seen an emoji, a model sample or a
  training objective, so it cannot share the project network's invariances. Optionally a contrastive
  network trained by this module on the training split (`ContrastiveNet`, `train-contrastive`).
- **Paired bootstrap consistency**: every t0 is scored on the same guides (guide i with seed + i) and every
  network on the same random subset draws (those of `sdedit.lab.metrics.kid`), so for any two settings a, b
  the fraction of draws in which a scores lower than b says how reliably the metric ranks them.

The sweep itself is `python -m sdedit eval`'s: its guide/reference split, its batched edit loop
(`sdedit.lab.edit_runner.EditRunner`), the model's default sampler settings with the model's x0 clipping.
A run's record is its crosscheck.json; docs/quality.md's `crosscheck` section is rendered from two of them
(`render`: the superpixel run in eval/crosscheck/, the paper's strokes in eval/crosscheck-paper/).

    python -m sdedit.lab.crosscheck --out eval/crosscheck/      # 96 guides x 8 t0: 8,448 model evaluations
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..configs import REPO_ROOT

# ----- a second stroke simulator ---------------------------------------------------------------------------


def superpixel_strokes(
    image: np.ndarray,
    segments: int = 40,
    colors: int = 6,
    compactness: float = 1.5,
    iterations: int = 8,
) -> np.ndarray:
    """uint8 (H, W, 3) -> a flat-colour painting: SLIC-style superpixels, each painted with one of `colors`.

    Deterministic (grid-initialised k-means, then a palette by k-means from a farthest-point start), so the
    same image always gives the same painting. `compactness` weighs position against colour (both in [0, 1]
    units): larger gives rounder, more regular segments.
    """
    from ..errors import InputError

    if not 2 <= int(colors) <= 64:
        raise InputError(f"colors must be from 2 to 64, not {colors}")
    if not 2 <= int(segments) <= 4096:
        raise InputError(f"segments must be from 2 to 4096, not {segments}")
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
        raise InputError(f"image must be uint8 (H, W, 3), not {a.dtype} {a.shape}")
    h, w, _ = a.shape
    rgb = a.reshape(-1, 3).astype(np.float64) / 255.0
    yy, xx = np.mgrid[0:h, 0:w]
    step = math.sqrt(h * w / int(segments))
    pos = np.stack([yy.ravel(), xx.ravel()], 1) / step  # one grid step = one unit
    feats = np.concatenate([rgb, pos * compactness], 1)
    gy = np.arange(step / 2, h, step)
    gx = np.arange(step / 2, w, step)
    cy, cx = np.meshgrid(gy, gx, indexing="ij")
    seeds = (np.clip(cy.ravel().astype(int), 0, h - 1) * w + np.clip(cx.ravel().astype(int), 0, w - 1)).astype(int)
    centres = feats[seeds].copy()
    for _ in range(int(iterations)):
        d = ((feats[:, None, :] - centres[None]) ** 2).sum(-1)
        label = d.argmin(1)
        for k in range(len(centres)):
            sel = label == k
            if sel.any():
                centres[k] = feats[sel].mean(0)
    label = ((feats[:, None, :] - centres[None]) ** 2).sum(-1).argmin(1)
    used = np.unique(label)
    seg_rgb = np.stack([rgb[label == k].mean(0) for k in used])
    seg_size = np.array([(label == k).sum() for k in used], dtype=np.float64)
    palette = _palette(seg_rgb, seg_size, int(colors))
    seg_colour = palette[((seg_rgb[:, None] - palette[None]) ** 2).sum(-1).argmin(1)]
    lookup = np.zeros((len(centres), 3))
    lookup[used] = seg_colour
    return np.clip(np.rint(lookup[label] * 255.0), 0, 255).astype(np.uint8).reshape(h, w, 3)


def _palette(points: np.ndarray, weights: np.ndarray, k: int, iterations: int = 10) -> np.ndarray:
    """Weighted k-means of colours from a farthest-point start at the heaviest colour (deterministic)."""
    k = min(k, len(points))
    centres = [points[int(weights.argmax())]]
    for _ in range(1, k):
        d = np.min([((points - c) ** 2).sum(1) for c in centres], axis=0)
        centres.append(points[int(d.argmax())])
    c = np.stack(centres)
    for _ in range(iterations):
        label = ((points[:, None] - c[None]) ** 2).sum(-1).argmin(1)
        for j in range(k):
            sel = label == j
            if sel.any():
                c[j] = (points[sel] * weights[sel, None]).sum(0) / weights[sel].sum()
    return c


STROKE_SIMULATORS = ("superpixel", "paper")


def make_strokes(images: np.ndarray, simulator: str = "superpixel", colors: int = 6) -> np.ndarray:
    """Stroke paintings of a uint8 batch (N, H, W, 3) by the named simulator."""
    from ..errors import InputError

    if simulator == "superpixel":
        return np.stack([superpixel_strokes(im, colors=colors) for im in images])
    if simulator == "paper":
        from ..strokes import default_median_size
        from .metrics import stroke_versions

        return stroke_versions(images, colors, default_median_size(images.shape[1]))
    raise InputError(f"stroke simulator must be one of {', '.join(STROKE_SIMULATORS)}, not {simulator!r}")


# ----- paired KID draws ------------------------------------------------------------------------------------


def kid_draws(x: np.ndarray, y: np.ndarray, subsets: int = 100, subset_size: int | None = None, seed: int = 0):
    """The per-subset unbiased MMD² values behind `metrics.kid` (the same draws for the same seed and sizes).

    Kernel matrices are computed once and summed over each draw's rows, so many settings can share draws:
    two feature sets of the same size scored with the same seed are compared subset by subset (paired).
    """
    from .metrics import default_subset_size, polynomial_kernel

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n, m = len(x), len(y)
    size = default_subset_size(n, m) if subset_size is None else int(subset_size)
    if not 2 <= size <= min(n, m):
        raise ValueError(f"subset_size must be from 2 to {min(n, m)} for sets of {n} and {m}, not {size}")
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    rng = np.random.default_rng(seed)
    out = np.empty(int(subsets))
    off = size * (size - 1)
    for i in range(int(subsets)):
        a = rng.choice(n, size, replace=False)
        b = rng.choice(m, size, replace=False)
        sxx = k_xx[np.ix_(a, a)]
        syy = k_yy[np.ix_(b, b)]
        out[i] = (sxx.sum() - np.trace(sxx)) / off + (syy.sum() - np.trace(syy)) / off - 2 * k_xy[np.ix_(a, b)].mean()
    return out


def paired_consistency(draws_a: np.ndarray, draws_b: np.ndarray) -> float:
    """Fraction of paired draws in which setting a scores lower (more realistic) than b; ties count half."""
    draws_a, draws_b = np.asarray(draws_a), np.asarray(draws_b)
    if draws_a.shape != draws_b.shape or draws_a.ndim != 1 or len(draws_a) == 0:
        raise ValueError(f"paired draws must be two 1-d arrays of one length, not {draws_a.shape}, {draws_b.shape}")
    return float(np.mean((draws_a < draws_b) + 0.5 * (draws_a == draws_b)))


# ----- independent feature networks -----------------------------------------------------------------------


class _Calibrated:
    """`calibrate(real)`: centre every feature dimension on real images and scale all by one factor to an RMS
    spread of 1/3 over them (see `RandomFeatureNet`); an uncalibrated network returns its raw features."""

    shift: np.ndarray | None = None
    scale: float | None = None

    def calibrate(self, real) -> np.ndarray:
        """Centre every feature on these real images (uint8 NHWC); scale all to an RMS spread of 1/3 over them.
        Returns their calibrated features (what `features(real)` now gives), so they need not be computed again."""
        self.shift = self.scale = None
        raw = self.features(real)
        self.shift = raw.mean(0)
        self.scale = 3.0 * float(np.sqrt(((raw - self.shift) ** 2).mean())) + 1e-12
        return self._calibrated(raw)

    def _calibrated(self, feats: np.ndarray) -> np.ndarray:
        return feats if self.shift is None else (feats - self.shift) / self.scale


class RandomFeatureNet(_Calibrated):
    """A randomly initialised CNN with a fixed seed: four stages of two 3x3 convs (the first strided), ReLU.

    Features: each stage's global mean (64, 32, 16 and 8 px stages; 32 + 64 + 128 + 256 = 480 numbers).
    He-initialised weights keep activations on one scale across depth without BatchNorm. Raw random features
    are a large constant offset plus small variations (about 0.05-0.1 per dimension against a mean of 0.4-0.8),
    on which KID's cubic kernel is nearly linear (it would compare means only). `calibrate(real)` therefore
    centres every dimension on a set of real images (the realism reference) and scales all of them by one
    factor, to an RMS spread of 1/3 over those images: x.y/d then stays well under 1, where the cubic kernel
    is smooth (standardising each channel instead blew near-constant channels up until single odd images
    dominated the kernel: KID -0.7 +- 0.8). One fixed affine map, applied to every set that is compared.
    """

    widths = (32, 64, 128, 256)
    resolution = 64
    name = "random CNN (seed 0)"

    def __init__(self, seed: int = 0):
        import torch
        from torch import nn

        gen = torch.Generator().manual_seed(seed)
        self.stages = []
        cin = 3
        for i, w in enumerate(self.widths):
            first = nn.Conv2d(cin, w, 3, stride=1 if i == 0 else 2, padding=1)
            second = nn.Conv2d(w, w, 3, padding=1)
            for conv in (first, second):
                fan_in = conv.in_channels * 9
                with torch.no_grad():
                    conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * math.sqrt(2.0 / fan_in))
                    conv.bias.zero_()
            self.stages.append(nn.Sequential(first, nn.ReLU(), second, nn.ReLU()).eval())
            cin = w

    @property
    def feature_dim(self) -> int:
        return sum(self.widths)

    def features(self, images, batch_size: int = 128) -> np.ndarray:
        """uint8 (N, H, W, 3) -> (N, 480) float64, deterministic (standardised once `calibrate` has run)."""
        import torch

        from .features import to_input

        x = to_input(images, self.resolution)
        out = []
        with torch.inference_mode():
            for i in range(0, len(x), batch_size):
                h, parts = x[i : i + batch_size], []
                for stage in self.stages:
                    h = stage(h)
                    parts.append(h.mean(dim=(2, 3)))
                out.append(torch.cat(parts, 1).double())
        return self._calibrated(torch.cat(out).numpy() if out else np.zeros((0, self.feature_dim)))


class ContrastiveNet(_Calibrated):
    """A second independent yardstick, trained: a small residual CNN (GroupNorm, strided convs) learning SimCLR's
    instance discrimination on the training split, never a label, a group or a model sample.

    Views (`_views`) differ by whole-pixel shifts of up to 8 px, flips and, one time in five, grey; never by
    colour jitter, blur, noise or resampling, so colour and sharpness stay visible to it (the first version's
    resized crops made it blind to blur: docs/quality.md). The feature is the 128-d global mean of the last
    block (the projection head is used in training only), calibrated like `RandomFeatureNet`'s.
    `train_contrastive` makes one.
    """

    widths = (16, 32, 64, 128)
    resolution = 64

    def __init__(self, path: str | Path | None = None, seed: int = 0):
        import torch

        torch.manual_seed(seed)
        self.body = _contrastive_body(self.widths)
        self.name = "contrastive CNN"
        if path is not None:
            from safetensors.torch import load_file

            self.body.load_state_dict(load_file(Path(path) / "contrastive.safetensors"))
            self.name = f"contrastive CNN ({Path(path).name})"
        self.body.eval()

    @property
    def feature_dim(self) -> int:
        return self.widths[-1]

    def features(self, images, batch_size: int = 128) -> np.ndarray:
        """uint8 (N, H, W, 3) -> (N, 128) float64, deterministic (GroupNorm needs no statistics); see `calibrate`."""
        import torch

        from .features import to_input

        x = to_input(images, self.resolution)
        with torch.inference_mode():
            out = [self.body(x[i : i + batch_size]).mean(dim=(2, 3)).double() for i in range(0, len(x), batch_size)]
        return self._calibrated(torch.cat(out).numpy() if out else np.zeros((0, self.feature_dim)))


def _contrastive_body(widths):
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int):
            super().__init__()
            self.a = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.GroupNorm(8, cout), nn.SiLU())
            self.b = nn.Sequential(nn.Conv2d(cout, cout, 3, 1, 1), nn.GroupNorm(8, cout))
            self.skip = nn.Conv2d(cin, cout, 1, stride) if (cin, stride) != (cout, 1) else nn.Identity()
            self.act = nn.SiLU()

        def forward(self, x):
            return self.act(self.b(self.a(x)) + self.skip(x))

    layers, cin = [], 3
    for i, w in enumerate(widths):
        layers.append(Block(cin, w, 1 if i == 0 else 2))
        cin = w
    return nn.Sequential(*layers)


def _views(x, gen, mode: str = "shift"):
    """Two kinds of view, each with a flip and, one time in five, grey. "shift": moved by up to 8 px (white
    fill, whole pixels: nothing is resampled, so sharpness survives). "crop": a random resized crop (40-100% of
    the area, aspect 3/4-4/3), resampled bilinearly, which teaches blur invariance (measured in docs/quality.md).
    """
    import torch
    from torch.nn import functional as F

    n = x.shape[0]
    if mode == "shift":
        pad, size = 8, x.shape[-1]
        padded = F.pad(x, (pad,) * 4, value=1.0)
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
        v = torch.stack([padded[i, :, dy[i] : dy[i] + size, dx[i] : dx[i] + size] for i in range(n)])
        flip = (torch.rand(n, generator=gen) < 0.5)[:, None, None, None]
        v = torch.where(flip, v.flip(3), v)
        grey = (torch.rand(n, generator=gen) < 0.2)[:, None, None, None]
        return torch.where(grey, v.mean(1, keepdim=True).expand_as(v), v)
    area = 0.4 + 0.6 * torch.rand(n, generator=gen)
    aspect = torch.exp((torch.rand(n, generator=gen) - 0.5) * 2 * math.log(4 / 3))
    sw, sh = (area * aspect).sqrt().clamp(max=1.0), (area / aspect).sqrt().clamp(max=1.0)
    cx = (torch.rand(n, generator=gen) * 2 - 1) * (1 - sw)
    cy = (torch.rand(n, generator=gen) * 2 - 1) * (1 - sh)
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sw * flip, cx, sh, cy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    v = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    grey = (torch.rand(n, generator=gen) < 0.2)[:, None, None, None]
    return torch.where(grey, v.mean(1, keepdim=True).expand_as(v), v)


def train_contrastive(
    out: str | Path,
    epochs: int = 6,
    batch_size: int = 256,
    temperature: float = 0.2,
    seed: int = 0,
    views: str = "shift",
    log=print,
) -> Path:
    """SimCLR (NT-Xent) on the training split's images at 64 px; saves contrastive.safetensors + config.json."""
    import torch
    from safetensors.torch import save_file
    from torch import nn
    from torch.nn import functional as F

    from .data import load_image_set
    from .features import to_input

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    data = load_image_set("fluent-emoji-3d", resolution=64).subset(held_out=False)
    x = to_input(data.images, 64)
    net = ContrastiveNet(seed=seed)
    body = net.body.train()
    head = nn.Sequential(nn.Linear(net.feature_dim, 128), nn.ReLU(), nn.Linear(128, 64))
    params = [*body.parameters(), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=2e-3, weight_decay=1e-4)
    steps = epochs * (len(x) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=steps, pct_start=0.1)
    t_begin, step = time.perf_counter(), 0
    for epoch in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        total = 0.0
        for i in range(0, len(x) - batch_size + 1, batch_size):
            xb = x[perm[i : i + batch_size]]
            z = F.normalize(
                head(body(torch.cat([_views(xb, gen, views), _views(xb, gen, views)])).mean(dim=(2, 3))), dim=1
            )
            sim = z @ z.T / temperature
            sim.fill_diagonal_(-1e9)
            n = len(xb)
            target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
            loss = F.cross_entropy(sim, target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            total += float(loss.detach())
        log(f"contrastive epoch {epoch + 1}/{epochs}: loss {total / (len(x) // batch_size):.3f}, "
            f"{(time.perf_counter() - t_begin) / 60:.1f} min")  # fmt: skip
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in body.state_dict().items()}, out / "contrastive.safetensors")
    info = {"epochs": epochs, "batch_size": batch_size, "temperature": temperature, "seed": seed, "views": views,
            "images": len(x), "data": "fluent-emoji-3d at 64 px, training split (emoji-v1)",
            "minutes": round((time.perf_counter() - t_begin) / 60, 1), "threads": torch.get_num_threads()}  # fmt: skip
    (out / "config.json").write_text(json.dumps(info, indent=2) + "\n")
    return out


class ProjectFeatures:
    """The project's realism network (`models/emoji-features` or another folder) behind the same interface."""

    def __init__(self, path: str | None = None):
        from .features import load_feature_net

        self.extractor = load_feature_net(path)
        self.name = f"project ({Path(self.extractor.path).name})"

    @property
    def feature_dim(self) -> int:
        return self.extractor.feature_dim

    def features(self, images) -> np.ndarray:
        return self.extractor.features(images)


# ----- the sweep ------------------------------------------------------------------------------------------

JITTER_DIR = REPO_ROOT / "models" / "emoji-features-jitter"  # the realism net shipped until 2026-12-02
DEFAULT_T0 = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass
class CrosscheckSettings:
    """One cross-check run: the guides, the stroke simulator, the t0 grid, the networks' draws."""

    num_guides: int = 96
    strengths: tuple[float, ...] = DEFAULT_T0
    strokes: str = "superpixel"
    colors: int = 6
    seed: int = 0
    batch_size: int = 16
    kid_subsets: int = 200
    sheet_guides: int = 12
    data: str = "fluent-emoji-3d"
    held_out_fraction: float = 0.1


@dataclass
class SweepImages:
    """What the sweep made, kept so that new networks can score it without re-running the model."""

    real: np.ndarray
    strokes: np.ndarray
    outputs: dict[float, np.ndarray]
    reference: np.ndarray
    names: list[str]
    info: dict = field(default_factory=dict)

    def save(self, path: str | Path) -> None:
        arrays = {f"t{t:g}": v for t, v in self.outputs.items()}
        np.savez_compressed(
            path, real=self.real, strokes=self.strokes, reference=self.reference, names=np.array(self.names), **arrays
        )
        Path(path).with_suffix(".json").write_text(json.dumps(self.info, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> SweepImages:
        z = np.load(path)
        outputs = {float(k[1:]): z[k] for k in z.files if k.startswith("t")}
        info = json.loads(Path(path).with_suffix(".json").read_text())
        return cls(z["real"], z["strokes"], dict(sorted(outputs.items())), z["reference"], list(z["names"]), info)


def sweep_images(pipe, s: CrosscheckSettings, image_set=None, log=print) -> SweepImages:
    """Held-out guides (evaluate's split A), stroke paintings, and SDEdit at each t0 with the model's defaults.

    image_set defaults to the held-out emoji of the shipped model's split; the pipeline's x0 limit is set to
    the model's config for the run (what `python -m sdedit eval` uses by default) and restored after it.
    """
    from ..samplers import steps_for
    from .data import load_image_set
    from .edit_runner import EditRunner, x0_limit_for
    from .evaluate import split_held_out

    if image_set is None:
        image_set = load_image_set(s.data, resolution=pipe.config.resolution, held_out_fraction=s.held_out_fraction)
    held = image_set.subset(held_out=True)
    idx_a, idx_b = split_held_out(held.names, held.categories, s.seed)
    rng = np.random.default_rng(s.seed)
    guides_idx = idx_a[rng.permutation(len(idx_a))][: s.num_guides]
    real, ref = held.images[guides_idx], held.images[idx_b]
    strokes = make_strokes(real, s.strokes, s.colors)
    d = pipe.config.defaults
    sampler, steps = d.sampler, d.num_inference_steps
    planned = sum(steps_for(steps, t) for t in s.strengths) * len(real)
    before, pipe.x0_limit = pipe.x0_limit, x0_limit_for(pipe, "config")
    runner = EditRunner(pipe, strokes, real, seed=s.seed, batch_size=s.batch_size, planned_evals=planned, log=log)
    log(
        f"cross-check sweep: {len(real)} guides ({s.strokes} strokes, k={s.colors}), reference B = {len(ref)}, "
        f"{sampler}/{steps}, t0 {', '.join(f'{t:g}' for t in s.strengths)}; {planned:,} model evaluations"
    )
    t_begin = time.perf_counter()
    outputs = {}
    try:
        for t in s.strengths:
            outputs[float(t)], _ = runner.edit(t, sampler, steps, len(real), f"t0={t:g}")
    finally:
        pipe.x0_limit = before
    info = {
        "model": pipe.config.name,
        "sampler": sampler,
        "steps": steps,
        "x0_limit": "config",
        "guides": len(real),
        "reference": len(ref),
        "seconds": round(time.perf_counter() - t_begin, 1),
        "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(s).items()},
    }
    return SweepImages(real, strokes, outputs, ref, [str(held.names[i]) for i in guides_idx], info)


# ----- scoring --------------------------------------------------------------------------------------------


def score_sweep(images: SweepImages, networks: dict, subsets: int = 200, seed: int = 0, log=print) -> dict:
    """KID draws of every setting by every network (the same subset draws throughout) and L2 to the guide.

    Settings: the guides' real sources (the real-vs-real floor), blurred and noised (the metric's sanity checks),
    the strokes (t0 = 0) and each t0's outputs. L2 is to the strokes, the paper's faithfulness.
    """
    from .metrics import add_noise, blur, l2_distances

    settings = {
        "real (floor)": images.real,
        "real, blurred (r = 1.5 px)": blur(images.real, 1.5),
        "real, noised (sigma = 0.1)": add_noise(images.real, 0.1, seed),
        "strokes (t0 = 0)": images.strokes,
    }
    settings |= {f"t0 = {t:g}": v for t, v in images.outputs.items()}
    l2 = {k: float(l2_distances(v, images.strokes).mean()) for k, v in settings.items()}
    draws: dict[str, dict[str, np.ndarray]] = {}
    for name, net in networks.items():
        t_net = time.perf_counter()
        ref = net.calibrate(images.reference) if hasattr(net, "calibrate") else net.features(images.reference)
        draws[name] = {k: kid_draws(net.features(v), ref, subsets, seed=seed) for k, v in settings.items()}
        log(f"  scored with {name} in {time.perf_counter() - t_net:.0f} s")
    return {"l2_to_guide": l2, "draws": draws, "strengths": list(images.outputs)}


def summarise(scores: dict) -> dict:
    """Per network: KID mean and std per setting, the best t0, and how often it beats each other t0."""
    out = {"l2_to_guide": scores["l2_to_guide"], "networks": {}}
    edits = [f"t0 = {t:g}" for t in scores["strengths"]]
    for name, draws in scores["draws"].items():
        kid = {k: (float(v.mean()), float(v.std())) for k, v in draws.items()}
        best = min(edits, key=lambda k: kid[k][0])
        beats = {k: paired_consistency(draws[best], draws[k]) for k in [*edits, "strokes (t0 = 0)"] if k != best}
        matrix = {a: {b: paired_consistency(draws[a], draws[b]) for b in edits if b != a} for a in edits}
        out["networks"][name] = {"kid": kid, "best": best, "best_beats": beats, "pairwise": matrix}
    names = list(out["networks"])
    out["rank_correlation"] = {
        f"{a} vs {b}": spearman([out["networks"][a]["kid"][k][0] for k in edits],
                                [out["networks"][b]["kid"][k][0] for k in edits])
        for i, a in enumerate(names) for b in names[i + 1 :]
    }  # fmt: skip
    return out


def spearman(a, b) -> float:
    """Spearman's rank correlation of two equal-length sequences (ties get their mean rank)."""

    def ranks(v):
        v = np.asarray(v, dtype=np.float64)
        order = v.argsort(kind="stable")
        r = np.empty(len(v))
        r[order] = np.arange(len(v), dtype=np.float64)
        for x in np.unique(v):
            r[v == x] = r[v == x].mean()
        return r

    ra, rb = ranks(a), ranks(b)
    if len(ra) != len(rb) or len(ra) < 2:
        raise ValueError(f"spearman needs two sequences of one length >= 2, not {len(ra)} and {len(rb)}")
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = math.sqrt((ra**2).sum() * (rb**2).sum())
    return float((ra * rb).sum() / den) if den else 0.0


def grid(images: SweepImages, count: int = 12, cell: int = 96):
    """Real, strokes and every t0's output for the first `count` guides (one row each), labels on top."""
    from .eval_plots import labelled_sheet

    cols = [("real", images.real[:count]), ("strokes", images.strokes[:count])]
    cols += [(f"t0={t:g}", v[:count]) for t, v in images.outputs.items()]
    return labelled_sheet(cols, cell)


def render_table(summary: dict) -> str:
    """Markdown: one row per setting, KID ± std and P(the network's best t0 beats it) for each network."""
    nets = list(summary["networks"])
    head = "| setting | L2 to guide | " + " | ".join(f"KID, {n} | P(best beats it), {n}" for n in nets) + " |"
    lines = [head, "|---|---:|" + "---:|---:|" * len(nets)]
    for k, l2 in summary["l2_to_guide"].items():
        cells = []
        for n in nets:
            s = summary["networks"][n]
            mean, std = s["kid"][k]
            p = s["best_beats"].get(k)
            mark = "**" if k == s["best"] else ""
            cells += [
                f"{mark}{mean:.3f} ± {std:.3f}{mark}",
                "best" if k == s["best"] else ("" if p is None else f"{100 * p:.0f}%"),
            ]
        lines.append(f"| {k} | {l2:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ----- the published section -----------------------------------------------------------------------------

NETWORK_ORDER = ("project, jitter", "project", "contrastive CNN", "random CNN")
# How a person ranked the superpixel run's outputs by eye (1 = most realistic; ties as ties): t0 = 0.3 ≈ 0.4 ≈ 0.5
# > 0.2 > 0.6 > 0.7 ≈ 0.8 ≈ 0.9 (docs/quality.md, "What a person sees"). A judgement, not a measurement.
BY_EYE = {0.2: 2, 0.3: 1, 0.4: 1, 0.5: 1, 0.6: 3, 0.7: 4, 0.8: 4, 0.9: 4}
COMPARED = ((0.4, 0.7), (0.4, 0.8), (0.5, 0.7), (0.5, 0.8), (0.4, 0.9), (0.4, 0.2), (0.6, 0.8))


def _networks(summary: dict) -> list[str]:
    return [n for n in NETWORK_ORDER if n in summary["networks"]] + [
        n for n in summary["networks"] if n not in NETWORK_ORDER
    ]


def kid_table(summary: dict) -> list[str]:
    """One row per setting: L2 to the guide and each network's KID (its lowest over t0 in bold)."""
    nets = _networks(summary)
    lines = [
        "| setting | L2 to guide | " + " | ".join(f"KID, {n}" for n in nets) + " |",
        "|---|---:|" + "---:|" * len(nets),
    ]
    for k, l2 in summary["l2_to_guide"].items():
        cells = []
        for n in nets:
            mean, std = summary["networks"][n]["kid"][k]
            mark = "**" if k == summary["networks"][n]["best"] else ""
            cells.append(f"{mark}{mean:.3f} ± {std:.3f}{mark}")
        lines.append(f"| {k} | {l2:.2f} | " + " | ".join(cells) + " |")
    return lines


def paired_table(summary: dict) -> list[str]:
    """For the pairs of t0 in COMPARED that the run has: the share of paired draws in which the first is lower."""
    nets = _networks(summary)
    lines = ["| paired draws in which ... | " + " | ".join(nets) + " |", "|---|" + "---:|" * len(nets)]
    for a, b in COMPARED:
        ka, kb = f"t0 = {a:g}", f"t0 = {b:g}"
        if ka in summary["l2_to_guide"] and kb in summary["l2_to_guide"]:
            shares = [summary["networks"][n]["pairwise"][ka][kb] for n in nets]
            lines.append(f"| {ka} beats {kb} | " + " | ".join(f"{100 * p:.0f}%" for p in shares) + " |")
    return lines


def eye_agreement(summary: dict) -> dict[str, float]:
    """Spearman's correlation, over the t0 that a person ranked (BY_EYE), of each network's KID with that rank."""
    ts = [t for t in BY_EYE if f"t0 = {t:g}" in summary["l2_to_guide"]]
    return {
        n: spearman([BY_EYE[t] for t in ts], [summary["networks"][n]["kid"][f"t0 = {t:g}"][0] for t in ts])
        for n in _networks(summary)
    }


def _run_words(record: dict) -> str:
    info = record["info"]
    s = info["settings"]
    return (
        f"{info['guides']} guides ({s['strokes']} strokes, {s['colors']} colours), reference B = {info['reference']},"
        f" {info['sampler']}/{info['steps']}, t0 = {', '.join(f'{t:g}' for t in s['strengths'])};"
        f" {s['kid_subsets']} paired subset draws; the sweep took {info['seconds'] / 60:.1f} min"
    )


def render(superpixel: dict, paper: dict) -> str:
    """docs/quality.md's `crosscheck` tables: the superpixel run (eval/crosscheck/) and the paper's strokes
    (eval/crosscheck-paper/), each a crosscheck.json."""
    agree = eye_agreement(superpixel)
    lines = [
        "*Rendered from `eval/crosscheck/crosscheck.json` and `eval/crosscheck-paper/crosscheck.json` by"
        " `python -m sdedit.lab.records crosscheck`; the commands that measured them are under Reproduce below.*",
        "",
        f"### Superpixel strokes, {superpixel['info']['guides']} guides",
        "",
        f"{_run_words(superpixel)}.",
        "",
        *kid_table(superpixel),
        "",
        "L2 is to the guide (the strokes), the paper's faithfulness; **bold** is each network's lowest KID over t0.",
        "",
        *paired_table(superpixel),
        "",
        "Spearman's correlation of each network's KID over t0 with the ranking by eye (below; ties as ties): "
        + ", ".join(f"{n} {rho:+.2f}" for n, rho in agree.items())
        + " (+1: the same order).",
        "",
        f"### The paper's strokes, {paper['info']['guides']} guides",
        "",
        f"{_run_words(paper)}.",
        "",
        *kid_table(paper),
        "",
        *paired_table(paper),
    ]
    return "\n".join(lines)


class ProjectLayers(ProjectFeatures):
    """The project's network read at several depths: each tapped block's global mean, concatenated.

    `taps` index `EmojiFeatureNet.body`; (0, 3, 6, 8) are its 64, 32, 16 and 8 px blocks (32 + 64 + 128 + 256
    = 480 numbers), (8,) alone is the penultimate layer that KID uses.
    """

    def __init__(self, path: str | None = None, taps: tuple[int, ...] = (0, 3, 6, 8)):
        super().__init__(path)
        self.taps = tuple(taps)
        self.name = f"project layers {','.join(map(str, self.taps))} ({Path(self.extractor.path).name})"

    def features(self, images) -> np.ndarray:
        import torch

        from .features import to_input

        x = to_input(images, self.extractor.config.resolution)
        parts = []
        with torch.inference_mode():
            h = x
            for i, layer in enumerate(self.extractor.net.body):
                h = layer(h)
                if i in self.taps:
                    parts.append(h.mean(dim=(2, 3)))
        return torch.cat(parts, 1).double().numpy()


# ----- command line ---------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sdedit.lab.crosscheck", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="outputs/crosscheck", help="folder for the report, grid, images and scores")
    p.add_argument("--model", default=None, help="model (default: the embedded fluent-emoji-64)")
    p.add_argument("--images", help="reuse a sweep saved by an earlier run (its sweep.npz) instead of running one")
    p.add_argument("--num-guides", type=int, default=CrosscheckSettings.num_guides)
    p.add_argument("--strengths", default=",".join(f"{t:g}" for t in DEFAULT_T0), help="t0 values, comma-separated")
    p.add_argument("--strokes", choices=STROKE_SIMULATORS, default="superpixel", help="stroke simulator of the guides")
    p.add_argument("--kid-subsets", type=int, default=CrosscheckSettings.kid_subsets, help="paired subset draws")
    p.add_argument(
        "--features",
        action="append",
        default=[],
        help="also score with this project-style feature network folder (repeatable); the shipped one always runs",
    )
    p.add_argument(
        "--contrastive",
        metavar="DIR",
        help="also score with the contrastive network in DIR (trained there first if it has none: 8 min, 1 quiet core)",
    )
    p.add_argument("--layers", action="store_true", help="also score with the project network's multi-layer features")
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    return p


def main(argv: list[str] | None = None) -> int:
    import torch

    from ..errors import SDEditError
    from ..sweep import parse_strengths

    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        strengths = tuple(parse_strengths(args.strengths))
        bad = [t for t in strengths if not 0.0 < t <= 1.0]
        if bad or args.num_guides < 4:
            raise ValueError(
                f"t0 values must be in (0, 1] and --num-guides at least 4 (KID's subsets need 2 a side), "
                f"not t0 {', '.join(f'{t:g}' for t in bad) or 'ok'} and {args.num_guides} guides"
            )
        if args.images:
            images = SweepImages.load(args.images)
        else:
            from ..pipeline import SDEditPipeline

            s = CrosscheckSettings(
                num_guides=args.num_guides,
                strengths=strengths,
                strokes=args.strokes,
                kid_subsets=args.kid_subsets,
            )
            images = sweep_images(SDEditPipeline.from_pretrained(args.model), s)
            images.save(out / "sweep.npz")
        networks = {"random CNN": RandomFeatureNet(seed=0), "project": ProjectFeatures()}
        if JITTER_DIR.is_dir():
            networks["project, jitter"] = ProjectFeatures(str(JITTER_DIR))
        if args.contrastive:
            if not (Path(args.contrastive) / "contrastive.safetensors").is_file():
                train_contrastive(args.contrastive)
            networks["contrastive CNN"] = ContrastiveNet(args.contrastive)
        if args.layers:
            networks["project, 4 layers"] = ProjectLayers()
        for folder in args.features:
            networks[Path(folder).name] = ProjectFeatures(folder)
            if args.layers:
                networks[f"{Path(folder).name}, 4 layers"] = ProjectLayers(folder)
    except (SDEditError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    scores = score_sweep(images, networks, subsets=args.kid_subsets)
    summary = summarise(scores)
    grid(images, cell=80).save(out / "grid.png", optimize=True)
    table = render_table(summary)
    (out / "crosscheck.md").write_text(table + "\n")
    (out / "crosscheck.json").write_text(json.dumps({"info": images.info, **summary}, indent=2) + "\n")
    print(table)
    for pair, rho in summary["rank_correlation"].items():
        print(f"Spearman over t0, {pair}: {rho:+.2f}")
    print(f"-> {out}/crosscheck.md, crosscheck.json, grid.png")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
