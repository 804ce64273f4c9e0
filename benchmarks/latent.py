"""Latent-model speed: sd-turbo's real architectures (UNet, autoencoder, text encoder, TAESD) with random weights.

Speed does not depend on the weights' values, so no Hub access is needed. It measures, side by side in one run:
the components (one UNet evaluation, the autoencoder's encode and decode, TAESD's decode, one prompt's
encoding), a 512 px turbo edit end to end (1 to 4 steps), previews per second through the preview path
(`SDEditPipeline.previews`: TAESD in and out, one step), and batch-8 throughput.

    python -m benchmarks.latent --device cuda --dtypes fp16            # on a GPU: results/latent-gpu-<card>.json
    python -m benchmarks.latent --device cpu --dtypes fp32,bf16 --docs # this CPU: results/latent-cpu.json
    python -m benchmarks.latent --scale tiny --out /tmp/x.json         # seconds: the CI smoke (tiny components)

The prompt is tokenized by a character-level CLIP tokenizer written here (its cost is one cached encoding either
way); everything else is the real architecture at the real size.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.common import RESULTS, environment, md_table, quiet, sync, time_it, write_json
from benchmarks.harness import write_section

PROMPT = "a lighthouse on a cliff at dusk, oil painting"
TARGETS = {"edit_1_step_ms": 50.0, "previews_per_s": 20.0}  # on an H100, 512 px

# stabilityai/sd-turbo's published configs (Stable Diffusion 2.1's architecture at 512 px), keys as in the Hub's
# config.json files. Timing-relevant: channels, blocks, heads, attention widths, the text encoder's depth.
SD_TURBO_UNET = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    attention_head_dim=(5, 10, 20, 20),
    cross_attention_dim=1024,
    use_linear_projection=True,
    flip_sin_to_cos=True,
    freq_shift=0,
    norm_num_groups=32,
    norm_eps=1e-5,
)
SD_VAE = dict(
    in_channels=3,
    out_channels=3,
    block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    layers_per_block=2,
    latent_channels=4,
    norm_num_groups=32,
    sample_size=512,
    scaling_factor=0.18215,
)
# OpenCLIP ViT-H/14's text tower as diffusers stores it for SD 2.x (23 of its 24 layers: SD 2 reads the penultimate)
SD2_TEXT = dict(
    hidden_size=1024,
    intermediate_size=4096,
    num_attention_heads=16,
    num_hidden_layers=23,
    max_position_embeddings=77,
    vocab_size=49408,
    hidden_act="gelu",
    projection_dim=512,
)
TAESD: dict = {}  # AutoencoderTiny's defaults are TAESD's architecture
TINY = dict(  # the same code path at toy size, for the CPU smoke test
    unet=dict(
        SD_TURBO_UNET,
        sample_size=8,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        attention_head_dim=4,
        cross_attention_dim=32,
    ),
    vae=dict(SD_VAE, block_out_channels=(8, 16, 16, 16), norm_num_groups=8, sample_size=64),
    text=dict(SD2_TEXT, hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2),
    taesd=dict(encoder_block_out_channels=(8,) * 4, decoder_block_out_channels=(8,) * 4),
)
FULL = dict(unet=SD_TURBO_UNET, vae=SD_VAE, text=SD2_TEXT, taesd=TAESD)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters (what CLIP's BPE vocabulary is written in)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {b: chr(b) for b in keep}, 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


def char_tokenizer(folder: Path, max_length: int = 77):
    """A CLIPTokenizer whose vocabulary is every byte character and its word-final form, with no merges: real
    CLIP tokenization rules on a vocabulary small enough to write offline."""
    from transformers import CLIPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    chars = list(_bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate([*chars, *(c + "</w>" for c in chars)])}
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=max_length)


def build(scale: str, device: str, dtype: torch.dtype, seed: int = 0, compile_unet: bool = False):
    """(pipeline, tiny autoencoder) with random weights: sd-turbo's architectures ("full") or toy ones ("tiny");
    on CUDA in channels-last order, the UNet optionally through torch.compile."""
    from diffusers import AutoencoderKL, AutoencoderTiny, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from sdedit import SDEditPipeline
    from sdedit.configs import ModelConfig, Sampling
    from sdedit.latent import LatentSpace, TextEncoder

    arch = FULL if scale == "full" else TINY
    tokenizer = char_tokenizer(Path(tempfile.mkdtemp(prefix="sdedit-vocab-")))
    torch.manual_seed(seed)
    with quiet():
        unet = UNet2DConditionModel(**arch["unet"])
        vae = AutoencoderKL(**arch["vae"])
        tiny = AutoencoderTiny(**arch["taesd"])
    text = CLIPTextModel(CLIPTextConfig(**arch["text"], eos_token_id=tokenizer.eos_token_id))
    channels_last = torch.device(device).type == "cuda"
    with quiet():
        for m in (unet, vae, tiny, text):
            m.to(device=device, dtype=dtype).eval().requires_grad_(False)
            if channels_last and m is not text:
                m.to(memory_format=torch.channels_last)
    if compile_unet:
        unet = torch.compile(unet)  # attribute access (config, parameters) passes through to the module
    # sd-turbo's scheduler config: scaled-linear betas, trailing timesteps
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", timestep_spacing="trailing"
    )
    space = LatentSpace(vae, tiny)
    cfg = ModelConfig(
        name=f"sd-turbo-architecture-{scale}",
        source="",
        resolution=space.resolution(arch["unet"]["sample_size"]),
        family="sd",
        distilled="turbo",
        background=None,
        defaults=Sampling(0.5, "ddim", 2),
    )
    pipe = SDEditPipeline(unet, scheduler, cfg, space=space, text_encoder=TextEncoder(tokenizer, text))
    pipe.set_progress_bar_config(disable=True)
    return pipe, tiny


def _guide(r: int) -> Image.Image:
    y, x = np.mgrid[0:r, 0:r]
    img = np.stack([x * 255 // r, y * 255 // r, np.full_like(x, 128)], -1).astype(np.uint8)
    return Image.fromarray(img)


def _median_ms(fn, device, warmup: int, repeats: int) -> float:
    return time_it(fn, device, warmup, repeats)["median_ms"]


@torch.inference_mode()
def components(pipe, device, warmup: int, repeats: int) -> dict:
    """One UNet evaluation (batch 1, no guidance), autoencoder encode / decode, TAESD decode, a prompt's encoding."""
    r = pipe.config.resolution
    canvas = np.asarray(_guide(r))
    z = pipe.space.encode(canvas)[None].to(device)
    embeds = pipe.text_encoder.embed([PROMPT]).to(device)
    t = torch.full((1,), 499.0, device=device)
    fast = pipe.space.previews()

    def encode_prompt():
        pipe.text_encoder.clear()
        pipe.text_encoder.embed([PROMPT])

    return {
        "unet_ms": _median_ms(
            lambda: pipe.unet(z.to(pipe.dtype), t, encoder_hidden_states=embeds), device, warmup, repeats
        ),
        "vae_encode_ms": _median_ms(lambda: pipe.space.encode(canvas), device, warmup, repeats),
        "vae_decode_ms": _median_ms(lambda: pipe.space.decode(z), device, warmup, repeats),
        "taesd_decode_ms": _median_ms(lambda: fast.decode(z), device, warmup, repeats),
        "taesd_encode_ms": _median_ms(lambda: fast.encode(canvas), device, warmup, repeats),
        "prompt_encode_ms": _median_ms(encode_prompt, device, warmup, repeats),
    }


def edits(pipe, device, steps: list[int], warmup: int, repeats: int) -> list[dict]:
    """A turbo edit end to end (PIL in, PIL out, the prompt cached), at t0 = 0.5 with k steps: 2k-step schedule."""
    guide = _guide(pipe.config.resolution)
    rows = []
    for k in steps:
        kw = dict(strength=0.5, num_inference_steps=2 * k, sampler="ddim", prompt=PROMPT, seed=0, progress=False)
        ms = _median_ms(lambda kw=kw: pipe(guide, **kw), device, warmup, repeats)
        out = pipe(guide, **kw)
        rows.append({"steps": k, "edit_ms": ms, "timings": out.metadata["timings"]})
    return rows


def previews(pipe, tiny, device, seconds: float, warmup: int) -> dict:
    """One-step previews back to back through the preview path (TAESD in and out), as a live view asks for them."""
    fast = pipe.previews(tiny)
    guide = _guide(pipe.config.resolution)
    kw = dict(strength=0.5, num_inference_steps=2, sampler="ddim", prompt=PROMPT, seed=0, progress=False)
    for _ in range(warmup):
        fast(guide, output_type="uint8", **kw)
    sync(device)
    n, t = 0, time.perf_counter()
    while n < 2 or time.perf_counter() - t < seconds:
        fast(guide, output_type="uint8", **kw)
        n += 1
    sync(device)
    elapsed = time.perf_counter() - t
    return {"previews": n, "seconds": elapsed, "previews_per_s": n / elapsed, "ms_per_preview": 1e3 * elapsed / n}


def batch8(pipe, device, steps: list[int], warmup: int, repeats: int) -> list[dict]:
    guide = _guide(pipe.config.resolution)
    rows = []
    for k in steps:
        kw = dict(strength=0.5, num_inference_steps=2 * k, sampler="ddim", prompt=PROMPT, num_images=8, progress=False)
        ms = _median_ms(lambda kw=kw: pipe(guide, seed=0, **kw), device, warmup, repeats)
        rows.append({"steps": k, "batch": 8, "ms": ms, "images_per_s": 8e3 / ms})
    return rows


def measure(
    scale: str,
    device: str,
    dtype_name: str,
    steps: list[int],
    warmup: int,
    repeats: int,
    seconds: float,
    b8: bool,
    compile_unet: bool = False,
):
    t = time.perf_counter()
    pipe, tiny = build(scale, device, DTYPES[dtype_name], compile_unet=compile_unet)
    built_s = time.perf_counter() - t
    row = {"dtype": dtype_name, "scale": scale, "resolution": pipe.config.resolution, "build_s": built_s}
    row["compiled"] = compile_unet
    row["load_avg_before"] = os.getloadavg()[0]
    row["components"] = components(pipe, device, warmup, repeats)
    row["edits"] = edits(pipe, device, steps, warmup, repeats)
    row["previews"] = previews(pipe, tiny, device, seconds, warmup)
    row["batch8"] = batch8(pipe, device, steps[:1], warmup, max(1, repeats // 2)) if b8 else []
    row["load_avg_after"] = os.getloadavg()[0]
    return row


def summary(result: dict) -> str:
    rows = []
    for r in result["runs"]:
        c = r["components"]
        for e in r["edits"]:
            rows.append(
                {
                    "dtype": r["dtype"],
                    "steps": e["steps"],
                    "edit_s": e["edit_ms"] / 1e3,
                    "unet_s": c["unet_ms"] / 1e3,
                    "enc_s": c["vae_encode_ms"] / 1e3,
                    "dec_s": c["vae_decode_ms"] / 1e3,
                    "taesd_s": c["taesd_decode_ms"] / 1e3,
                    "pps": r["previews"]["previews_per_s"],
                    "b8": r["batch8"][0]["images_per_s"] if r["batch8"] else None,
                }
            )
    env = result["environment"]
    head = (
        f"Recorded by `{result['command']}` on {env.get('card') or env['cpu']} ({env['threads']} threads, "
        f"load {env.get('load_avg_1m', 0):.1f}): sd-turbo's architectures with random weights, "
        f"{result['runs'][0]['resolution']} px, t0 = 0.5, the prompt cached.\n\n"
    )
    columns = [
        ("dtype", "dtype"),
        ("steps", "steps"),
        ("edit_s", "edit (s)"),
        ("unet_s", "1 UNet eval (s)"),
        ("enc_s", "VAE encode (s)"),
        ("dec_s", "VAE decode (s)"),
        ("taesd_s", "TAESD decode (s)"),
        ("pps", "previews/s (TAESD, 1 step)"),
        ("b8", "batch-8 images/s (1 step)"),
    ]
    return head + md_table(rows, columns)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument(
        "--dtypes", default=None, help="comma-separated: fp32, bf16, fp16 (default: fp16 on CUDA, fp32 on CPU)"
    )
    p.add_argument("--steps", default="1,2,4", help="comma-separated step counts of the turbo edit")
    p.add_argument("--scale", choices=("full", "tiny"), default="full")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--preview-seconds", type=float, default=5.0)
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    p.add_argument("--compile", action="store_true", help="run the UNet through torch.compile (warm-up compiles)")
    p.add_argument(
        "--batch8", action=argparse.BooleanOptionalAction, default=None, help="batch-8 throughput (default: on CUDA)"
    )
    p.add_argument("--out", default=None, help="result JSON (default: benchmarks/results/latent-{cpu,gpu-CARD}.json)")
    p.add_argument("--docs", action="store_true", help="render the table into docs/performance.md")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    dtypes = (args.dtypes or ("fp16" if device.startswith("cuda") else "fp32")).split(",")
    steps = [int(s) for s in args.steps.split(",")]
    env = environment(device)
    b8 = device.startswith("cuda") if args.batch8 is None else args.batch8
    runs = [
        measure(args.scale, device, d, steps, args.warmup, args.repeats, args.preview_seconds, b8, args.compile)
        for d in dtypes
    ]
    command = " ".join(["python -m benchmarks.latent", *(sys.argv[1:] if argv is None else argv)])
    result = {"command": command, "environment": env, "runs": runs}
    result["targets_h100"] = TARGETS
    if device.startswith("cuda"):
        first = next((e for r in runs for e in r["edits"] if e["steps"] == 1), None)
        result["meets_targets"] = {
            "edit_1_step": first is not None and first["edit_ms"] <= TARGETS["edit_1_step_ms"],
            "previews": max(r["previews"]["previews_per_s"] for r in runs) >= TARGETS["previews_per_s"],
        }
    card = env.get("card", "").lower().replace(" ", "-")
    default = RESULTS / (f"latent-gpu-{card}.json" if device.startswith("cuda") else "latent-cpu.json")
    out = Path(args.out) if args.out else default
    write_json(result, out.name, out.parent)
    body = summary(result)
    print(body)
    if args.docs:
        write_section("latent-cpu" if device == "cpu" else "latent-gpu", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
