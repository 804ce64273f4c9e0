"""An offline image feature network for KID: a small CNN trained on the emoji's own Unicode groups.

KID (and FID) compare images in the feature space of a classifier. The usual Inception-v3 network needs a
download (no hub here) and was trained on photos at 299 px; a domain classifier is the better yardstick for
64 px emoji, in the way FID for MNIST uses a digit classifier. `EmojiFeatureNet` learns to tell the ten
Unicode emoji groups apart (Smileys, People, Animals & Nature, Food, Travel, Objects, Flags, ...) from the
training split only, so the held-out images that the evaluation scores are new to it as well. Its
penultimate layer (global-average-pooled conv features, before the linear classifier) is the embedding.
An auxiliary head, used in training only, also learns which emoji each image is (an exemplar task): ten
groups alone do not need the fine detail and shading that strokes, blur and noise remove.

Augmentations are flips and small shifts, never blur or noise: features that were trained to ignore blur and
noise could not tell a blurry or noisy sample from a real one. Nor colour jitter (`FeatureTrainSettings.jitter`,
0 by default): a net trained to ignore small colour changes ranked the model's high-t0 outputs (the guide's
colours in new, often blotchy shapes) about as realistic as its best ones. Without it, the shipped
`models/emoji-features` ranks them worse, as a person does; the jittered net it replaced (same recipe and
seed, `--jitter 1`) stays in `models/emoji-features-jitter` for that comparison (docs/quality.md, "Does the
realism metric rank t0 as a person does?").

    python -m sdedit features --out models/emoji-features       # retrain (about 30 min on one CPU thread)
    feats = load_feature_net().features(images_uint8_nhwc)       # (N, 256) float64
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from ..accel import has_bf16_cpu
from ..configs import repo_relative
from ..judges import (  # noqa: F401 (the realism net's inference lives in the engine; the lab's names stay)
    CONFIG,
    FEATURES_DIR,
    SELFCHECK,
    WEIGHTS,
    EmojiFeatureNet,
    FeatureExtractor,
    FeatureNetConfig,
    load_feature_net,
    load_net,
    load_selfcheck,
    to_input,
    to_resolution,
)
from ..judges import _load_features as _load

DEFAULT_DIR = FEATURES_DIR
LEGACY_JITTER = 1.0  # a config without settings.jitter predates the setting, when every net was jittered


def save_net(net: nn.Module, cfg, out: str | Path) -> Path:
    """A lab network as fp16 safetensors plus its dataclass config as config.json (the feature and the identity
    nets share this layout); BatchNorm statistics are stored with the weights."""
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = {
        k: v.detach().to(torch.float16 if v.is_floating_point() else v.dtype).contiguous().clone()
        for k, v in net.state_dict().items()
    }
    save_file(state, out / WEIGHTS, metadata={"format": "pt", "architecture": type(net).__name__})
    (out / CONFIG).write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    return out


def save_feature_net(net: EmojiFeatureNet, cfg: FeatureNetConfig, out: str | Path) -> Path:
    """fp16 safetensors (about 1.2 MB) and config.json."""
    return save_net(net, cfg, out)


# ----- training ---------------------------------------------------------------------------------------
def augment(x: torch.Tensor, gen: torch.Generator, shift: int = 4, jitter: float = 1.0) -> torch.Tensor:
    """Random flip, shift by up to `shift` px (white fill, the data's background) and colour jitter.

    `jitter` scales the colour jitter (0: none, so the features may keep exact colours)."""
    n = x.shape[0]
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    padded = F.pad(x, (shift,) * 4, value=1.0)
    dx = torch.randint(0, 2 * shift + 1, (n,), generator=gen)
    dy = torch.randint(0, 2 * shift + 1, (n,), generator=gen)
    size = x.shape[-1]
    x = torch.stack([padded[i, :, dy[i] : dy[i] + size, dx[i] : dx[i] + size] for i in range(n)])
    brightness = (torch.rand(n, 1, 1, 1, generator=gen) - 0.5) * 0.2 * jitter  # +-0.1 of the [-1, 1] range
    contrast = 1.0 + (torch.rand(n, 1, 1, 1, generator=gen) - 0.5) * 0.3 * jitter
    saturation = 1.0 + (torch.rand(n, 1, 1, 1, generator=gen) - 0.5) * 0.4 * jitter
    gray = x.mean(dim=1, keepdim=True)
    x = gray + (x - gray) * saturation
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * contrast + mean + brightness
    return x.clamp(-1.0, 1.0)


@dataclass
class FeatureTrainSettings:
    data: str = "fluent-emoji-3d"
    resolution: int = 64
    held_out_fraction: float = 0.1
    epochs: int = 15
    batch_size: int = 64
    learning_rate: float = 2e-3
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    identity_weight: float = 1.0  # auxiliary task: which emoji is it (skin tones = one class); 0 turns it off
    jitter: float = 0.0  # colour-jitter strength; 1 made models/emoji-features-jitter (see the module docstring)
    seed: int = 0
    threads: int | None = None
    max_minutes: float | None = None
    selfcheck_count: int = 96


def evaluate_classifier(extractor: FeatureExtractor, images: np.ndarray, categories: list[str]) -> dict:
    """Top-1 and class-balanced accuracy on labelled images (categories the net does not know count as wrong)."""
    classes = extractor.config.classes
    pred = extractor.predict(images)
    truth = np.array([classes.index(c) if c in classes else -1 for c in categories])
    per_class = {}
    for i, name in enumerate(classes):
        sel = truth == i
        if sel.any():
            per_class[name] = {"n": int(sel.sum()), "accuracy": round(float((pred[sel] == i).mean()), 4)}
    return {
        "n": len(truth),
        "accuracy": round(float((pred == truth).mean()), 4),
        "balanced_accuracy": round(float(np.mean([v["accuracy"] for v in per_class.values()])), 4),
        "per_class": per_class,
    }


def train_feature_net(out: str | Path, settings: FeatureTrainSettings | None = None, log=print) -> dict:
    """Train on the training split's groups, save to `out` with a README, and return the summary.

    Held-out images are used only to report accuracy after training, never to choose anything.
    """
    from .data import load_image_set

    s = settings or FeatureTrainSettings()
    if s.threads:
        torch.set_num_threads(s.threads)
    torch.manual_seed(s.seed)
    gen = torch.Generator().manual_seed(s.seed)
    t0 = time.perf_counter()
    data = load_image_set(s.data, resolution=s.resolution, held_out_fraction=s.held_out_fraction)
    train, held = data.subset(held_out=False), data.subset(held_out=True)
    classes = sorted({str(c) for c in train.categories})
    counts = Counter(str(c) for c in train.categories)
    y = torch.tensor([classes.index(str(c)) for c in train.categories])
    x = to_input(train.images, s.resolution)
    # inverse-sqrt class weights: People & Body (five skin tones each) would otherwise dominate
    weights = torch.tensor([counts[c] ** -0.5 for c in classes], dtype=torch.float32)
    weights = weights / (weights * torch.tensor([counts[c] for c in classes])).sum() * len(y)
    cfg = FeatureNetConfig(classes=classes, resolution=s.resolution)
    net = EmojiFeatureNet(cfg)
    # Auxiliary head, not shipped: telling ~1,500 emoji apart (an exemplar task) needs the fine detail and
    # shading that ten groups alone do not, and that strokes and blur remove.
    identities = sorted({_identity(str(n)) for n in train.names})
    y_id = torch.tensor([identities.index(_identity(str(n))) for n in train.names])
    id_head = nn.Linear(cfg.feature_dim, len(identities))
    params = [*net.parameters(), *id_head.parameters()]
    opt = torch.optim.AdamW(params, lr=s.learning_rate, weight_decay=s.weight_decay)
    steps_per_epoch = math.ceil(len(y) / s.batch_size)
    total = s.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, s.learning_rate, total_steps=total, pct_start=0.15)
    use_bf16 = has_bf16_cpu()
    log(
        f"training EmojiFeatureNet ({sum(p.numel() for p in net.parameters()):,} params) on {len(y)} images, "
        f"{len(classes)} groups (+ {len(identities)} identities, weight {s.identity_weight}), {s.epochs} epochs, "
        f"bf16 autocast: {use_bf16}"
    )
    step, stopped_early = 0, False
    for epoch in range(s.epochs):
        net.train()
        perm = torch.randperm(len(y), generator=gen)
        loss_sum, correct = 0.0, 0
        for i in range(0, len(y), s.batch_size):
            idx = perm[i : i + s.batch_size]
            xb, yb = augment(x[idx], gen, jitter=s.jitter), y[idx]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
                feats = net.dropout(net.features(xb))
                logits, id_logits = net.head(feats), id_head(feats)
            loss = F.cross_entropy(logits.float(), yb, weight=weights, label_smoothing=s.label_smoothing)
            if s.identity_weight:
                loss = loss + s.identity_weight * F.cross_entropy(id_logits.float(), y_id[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step < total - 1:
                sched.step()
            step += 1
            loss_sum += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
        minutes = (time.perf_counter() - t0) / 60
        log(
            f"epoch {epoch + 1}/{s.epochs}: loss {loss_sum / len(y):.3f}, train acc {correct / len(y):.3f}, "
            f"{minutes:.1f} min"
        )
        if s.max_minutes and minutes > s.max_minutes and epoch + 1 < s.epochs:
            log(f"stopping after {epoch + 1} epochs: --max-minutes {s.max_minutes} reached")
            stopped_early = True
            break
    train_s = time.perf_counter() - t0
    net.eval()
    out = Path(out)
    # the held-out scores are those of the saved (fp16-rounded) weights, as users will load them
    save_feature_net(net, cfg, out)
    extractor = _load.__wrapped__(str(out))
    held_metrics = evaluate_classifier(extractor, held.images, [str(c) for c in held.categories])
    train_metrics = evaluate_classifier(extractor, train.images, [str(c) for c in train.categories])
    cfg.info = {
        "data": f"{s.data} at {s.resolution} px, training split only (held_out_fraction {s.held_out_fraction}, "
        "split by emoji so skin-tone variants stay together)",
        "train_counts": dict(sorted(counts.items())),
        "settings": asdict(s),
        "epochs_run": epoch + 1,
        "stopped_early": stopped_early,
        "train_seconds": round(train_s, 1),
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s)",
        "accuracy_held_out": held_metrics,
        "accuracy_train_clean": {k: train_metrics[k] for k in ("n", "accuracy", "balanced_accuracy")},
    }
    write_selfcheck(out, cfg, held, s.selfcheck_count)
    log(
        f"held-out accuracy {held_metrics['accuracy']:.3f} (balanced {held_metrics['balanced_accuracy']:.3f}) "
        f"on {held_metrics['n']} images; saved to {out} in {train_s / 60:.1f} min"
    )
    return cfg.info


def write_selfcheck(out: str | Path, cfg: FeatureNetConfig, held, count: int, cols: int = 8) -> None:
    """Save the self-check sheet of held-out images, then config.json and the README that describe it."""
    out = Path(out)
    sel = _selfcheck_indices(held, count)
    _sheet(held.images[sel], cols).save(out / SELFCHECK, optimize=True)
    cfg.info["selfcheck"] = {
        "file": SELFCHECK,
        "resolution": int(held.images.shape[1]),
        "cols": cols,
        "count": len(sel),
        "names": [str(held.names[i]) for i in sel],
        "categories": [str(held.categories[i]) for i in sel],
    }
    (out / CONFIG).write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    # the card's retraining command names the folder as the repository knows it
    (out / "README.md").write_text(model_card(cfg, repo_relative(out)))
    _load.cache_clear()


def _identity(name: str) -> str:
    """An emoji's identity without skin tone: its five variants are one class of the auxiliary task."""
    from .data import base_key, code_points

    try:
        return "-".join(f"{c:x}" for c in base_key(code_points(name)))
    except ValueError:
        return name


def _selfcheck_indices(held, count: int) -> np.ndarray:
    """A fixed random sample of held-out images: the same mix of groups as the evaluation sees.

    Its order is random too, so the tests' even/odd halves are two random draws.
    """
    rng = np.random.default_rng(1234)
    return rng.permutation(len(held))[: min(count, len(held))]


def _sheet(images: np.ndarray, cols: int) -> Image.Image:
    n, h, w, _ = images.shape
    rows = math.ceil(n / cols)
    canvas = np.full((rows * h, cols * w, 3), 255, np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        canvas[r * h : (r + 1) * h, c * w : (c + 1) * w] = im
    return Image.fromarray(canvas)


def _jitter_words(jitter: float) -> str:
    if not jitter:
        return "; no colour jitter (with it, KID missed the colour-keeping, structure-losing outputs of large t0)"
    return f", colour jitter (strength {jitter:g})"


def _retrain_command(s: dict, folder: str) -> str:
    threads = f" --threads {s['threads']}" if s.get("threads") else ""
    jitter = s.get("jitter", LEGACY_JITTER)
    jitter = "" if jitter == FeatureTrainSettings.jitter else f" --jitter {jitter:g}"
    return f"python -m sdedit features --out {folder}{jitter}{threads}"


def model_card(cfg: FeatureNetConfig, folder: str = "models/emoji-features") -> str:
    info = cfg.info
    acc = info["accuracy_held_out"]
    rows = "\n".join(f"| {name} | {v['n']} | {v['accuracy']:.2f} |" for name, v in sorted(acc["per_class"].items()))
    params = sum(p.numel() for p in EmojiFeatureNet(cfg).parameters())
    s = info["settings"]
    return f"""# {Path(folder).name}: a feature network for SDEdit Studio's KID

A small CNN ({params:,} parameters, fp16 safetensors) that classifies 64 px Fluent Emoji 3D renders into
their Unicode emoji groups (with an auxiliary head, used in training only, that tells the emoji themselves
apart, so the features keep fine detail and shading). `sdedit.lab.metrics` computes KID on its **penultimate
layer**: the global mean of the last conv block, {cfg.feature_dim} numbers per image. It plays the part
that Inception-v3 plays for FID/KID on photos (and a digit classifier plays for MNIST): Inception needs a
download, and was trained on 299 px photos, not 64 px emoji. See `docs/quality.md` for why, and for the
metric's sanity checks.

```python
from sdedit.lab.features import load_feature_net
feats = load_feature_net().features(images)   # uint8 (N, H, W, 3) -> float64 (N, {cfg.feature_dim}), offline
```

## Data
{info["data"]}. Fluent Emoji 3D by Microsoft (MIT), npm `@lobehub/fluent-emoji-3d` 1.1.0; groups from
`unicode-emoji-json`. Training counts per group: {", ".join(f"{k} {v}" for k, v in info["train_counts"].items())}.
Augmentations: horizontal flips, shifts of up to 4 px{_jitter_words(s.get("jitter", LEGACY_JITTER))}.
Deliberately no blur or noise, so that the features stay sensitive to both.

## Accuracy on the held-out emoji (never seen in training)
Top-1 {acc["accuracy"]:.3f}, class-balanced {acc["balanced_accuracy"]:.3f}, on {acc["n"]} images
(clean training images: {info["accuracy_train_clean"]["accuracy"]:.3f}).

| group | held-out images | accuracy |
|---|---:|---:|
{rows}

## Training
{info["epochs_run"]} epochs of AdamW (lr {s["learning_rate"]}, one-cycle, weight decay {s["weight_decay"]}, batch
{s["batch_size"]}, label smoothing {s["label_smoothing"]}, inverse-sqrt class weights), plus the auxiliary
identity loss (weight {s.get("identity_weight", 0)}; skin tones of one emoji are one class), seed {s["seed"]}:
{info["train_seconds"] / 60:.1f} min on {info["machine"]}. Retrain with

```bash
{_retrain_command(s, folder)}
```

The group accuracy only shows that the features carry domain information; KID does not use the classes.
Retraining changes the features, so KID values are comparable only when computed with the same weights
(`config.json` records how these were made).

## Files
- `model.safetensors`: the weights (BatchNorm statistics included), fp16.
- `config.json`: architecture, classes, training summary.
- `selfcheck.png`: {info["selfcheck"]["count"]} held-out emoji (MIT) that the tests use to check the metric on
  real images offline.
"""
