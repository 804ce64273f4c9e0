"""Tiny random Stable Diffusion components, built offline: a UNet2DConditionModel, an AutoencoderKL with the
real 8x downsampling, a CLIPTextModel and a CLIP tokenizer over a character vocabulary written here.

A 64 px canvas is 8x8 latents; a whole edit takes a few hundred milliseconds on a CPU.
"""

from __future__ import annotations

from pathlib import Path

import torch

PROMPT_LENGTH = 77  # CLIP's


def write_tokenizer(folder: Path):
    """A CLIPTokenizer over every byte character and its word-final form (no merges), written offline."""
    from benchmarks.latent import char_tokenizer

    return char_tokenizer(Path(folder), max_length=PROMPT_LENGTH)


def tiny_components(tmp: Path, seed: int = 0, prediction_type: str = "epsilon", lcm: bool = False) -> dict:
    """unet, vae, text_encoder, tokenizer, scheduler: random, seeded, small."""
    from diffusers import AutoencoderKL, DDIMScheduler, LCMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = write_tokenizer(Path(tmp) / "vocab")
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
        time_cond_proj_dim=16 if lcm else None,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 16, 16, 16),  # three downsamplings: 8x, as in Stable Diffusion
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=64,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            vocab_size=len(tokenizer.get_vocab()),
            max_position_embeddings=PROMPT_LENGTH,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    betas = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1)
    betas["prediction_type"] = prediction_type
    scheduler = LCMScheduler(**betas) if lcm else DDIMScheduler(**betas, clip_sample=False, set_alpha_to_one=False)
    modules = (unet, vae, text_encoder)
    for m in modules:
        m.eval().requires_grad_(False)
    return dict(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler)


def save_folder(folder: Path, parts: dict) -> Path:
    """The diffusers Stable Diffusion layout: model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/."""
    from diffusers import StableDiffusionPipeline

    StableDiffusionPipeline(
        **parts, safety_checker=None, feature_extractor=None, requires_safety_checker=False
    ).save_pretrained(folder)
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


def tiny_xl_components(tmp: Path, seed: int = 0) -> dict:
    """SDXL's parts, tiny: two text encoders (the second with a projection), a UNet with size conditioning."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    tokenizer = write_tokenizer(Path(tmp) / "vocab")
    tokenizer_2 = write_tokenizer(Path(tmp) / "vocab2")
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=32 + 6 * 8,  # the pooled embedding and six size numbers
        cross_attention_dim=64,  # the two encoders' hidden states side by side
    )
    vae = AutoencoderKL(
        block_out_channels=(8, 16, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=64,
        scaling_factor=0.13025,
    )
    text = dict(
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=3,
        vocab_size=len(tokenizer.get_vocab()),
        max_position_embeddings=PROMPT_LENGTH,
        eos_token_id=tokenizer.eos_token_id,
        projection_dim=32,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(**text))
    text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**text))
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1, clip_sample=False
    )
    for m in (unet, vae, text_encoder, text_encoder_2):
        m.eval().requires_grad_(False)
    return dict(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        scheduler=scheduler,
    )


def save_xl_folder(folder: Path, parts: dict) -> Path:
    """The diffusers SDXL layout: model_index.json, unet/, vae/, text_encoder(_2)/, tokenizer(_2)/, scheduler/."""
    from diffusers import StableDiffusionXLPipeline

    StableDiffusionXLPipeline(**parts).save_pretrained(folder)
    return Path(folder)
