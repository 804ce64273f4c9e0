"""Tiny random Stable Diffusion components, built offline: the benchmark's toy architectures
(`benchmarks.latent.TINY`: a UNet2DConditionModel, an AutoencoderKL with the real 8x downsampling, a
CLIPTextModel) and a CLIP tokenizer over a character vocabulary written here; SDXL's two text encoders and size
conditioning at the same scale.

A 64 px canvas is 8x8 latents; a whole edit takes a few hundred milliseconds on a CPU.
"""

from __future__ import annotations

from pathlib import Path

import torch

from benchmarks.latent import TINY, char_tokenizer


def _text_config(tokenizer, **changes):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(**{**TINY["text"], **changes}, eos_token_id=tokenizer.eos_token_id)


def _frozen(parts: dict) -> dict:
    for m in parts.values():
        if isinstance(m, torch.nn.Module):
            m.eval().requires_grad_(False)
    return parts


def tiny_components(tmp: Path, seed: int = 0, prediction_type: str = "epsilon", lcm: bool = False) -> dict:
    """unet, vae, text_encoder, tokenizer, scheduler: random, seeded, small (an LCM's UNet takes the guidance)."""
    from diffusers import AutoencoderKL, DDIMScheduler, LCMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel

    tokenizer = char_tokenizer(Path(tmp) / "vocab")
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**TINY["unet"], time_cond_proj_dim=16 if lcm else None)
    vae = AutoencoderKL(**TINY["vae"])
    text_encoder = CLIPTextModel(_text_config(tokenizer))
    betas = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1)
    betas["prediction_type"] = prediction_type
    scheduler = LCMScheduler(**betas) if lcm else DDIMScheduler(**betas, clip_sample=False, set_alpha_to_one=False)
    return _frozen(dict(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler))


def tiny_xl_components(tmp: Path, seed: int = 0) -> dict:
    """SDXL's parts, tiny: two text encoders (the second with a projection), a UNet with size conditioning."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    tokenizer, tokenizer_2 = char_tokenizer(Path(tmp) / "vocab"), char_tokenizer(Path(tmp) / "vocab2")
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        **{
            **TINY["unet"],
            "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
            "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
            "attention_head_dim": (2, 4),
            "cross_attention_dim": 64,  # the two encoders' hidden states side by side
        },
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=32 + 6 * 8,  # the pooled embedding and six size numbers
    )
    vae = AutoencoderKL(**{**TINY["vae"], "scaling_factor": 0.13025})
    text = dict(num_hidden_layers=3, projection_dim=32)  # SDXL reads the penultimate layer
    parts = dict(
        unet=unet,
        vae=vae,
        text_encoder=CLIPTextModel(_text_config(tokenizer, **text)),
        text_encoder_2=CLIPTextModelWithProjection(_text_config(tokenizer_2, **text)),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        scheduler=DDIMScheduler(
            beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1, clip_sample=False
        ),
    )
    return _frozen(parts)


def save_folder(folder: Path, parts: dict) -> Path:
    """The diffusers Stable Diffusion layout: model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/."""
    from diffusers import StableDiffusionPipeline

    StableDiffusionPipeline(
        **parts, safety_checker=None, feature_extractor=None, requires_safety_checker=False
    ).save_pretrained(folder)
    return Path(folder)


def save_xl_folder(folder: Path, parts: dict) -> Path:
    """The diffusers SDXL layout: model_index.json, unet/, vae/, text_encoder(_2)/, tokenizer(_2)/, scheduler/."""
    from diffusers import StableDiffusionXLPipeline

    StableDiffusionXLPipeline(**parts).save_pretrained(folder)
    return Path(folder)


def pipeline(parts: dict, config=None):
    """An SDEditPipeline on the components (no folder)."""
    from sdedit import SDEditPipeline
    from sdedit.latent import LatentSpace, TextEncoder

    return SDEditPipeline(
        parts["unet"],
        parts["scheduler"],
        config,
        space=LatentSpace(parts["vae"]),
        text_encoder=TextEncoder(parts["tokenizer"], parts["text_encoder"]),
    )


def studio_config_dir(tmp: Path) -> Path:
    """A config folder for the studio (`SDEDIT_CONFIG_DIR`): the embedded default, and tiny random Stable Diffusion
    models saved in the diffusers layout, loadable offline: `tiny-sd` (64 px, 8x8 latents, Live on a CPU),
    `tiny-sd-512` (the same networks on a 512 px canvas: the UNet is convolutional, only its sample size differs)
    and `tiny-sd-gpu` (64 px, marked as made for a GPU, as the real checkpoints' configs are)."""
    import shutil

    from sdedit.configs import REPO_ROOT

    tmp = Path(tmp)
    folder = save_folder(tmp / "tiny-sd", tiny_components(tmp / "parts"))
    big = tiny_components(tmp / "parts-512")
    big["unet"].register_to_config(sample_size=64)
    big_folder = save_folder(tmp / "tiny-sd-512", big)
    configs = tmp / "configs"
    configs.mkdir()
    shutil.copy(REPO_ROOT / "configs" / "fluent-emoji-64.yaml", configs)
    common = "family: sd\nsde: vp\nfit: pad\nbackground: null\nlicense: test weights (random)\n"
    defaults = "defaults: {strength: 0.5, sampler: ddim, num_inference_steps: 4, repeats: 1, guidance_scale: 3.0}\n"
    for name, source, size, extra in (
        ("tiny-sd", folder, 64, ""),
        ("tiny-sd-512", big_folder, 512, ""),
        ("tiny-sd-gpu", folder, 64, "needs_gpu: true\nlive_on_cpu: false\n"),
    ):
        text = f"name: {name}\ntitle: Tiny SD {name}\nsource: {source}\nresolution: {size}\n{common}{defaults}{extra}"
        (configs / f"{name}.yaml").write_text(text)
    return configs
