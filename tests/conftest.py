"""Shared fixtures: tiny random diffusers models built in the test, and an offline, single-thread setup."""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One thread for every edit (sdedit.threads' fixed count), not the free cores: torch sums in another order with
# another thread count, which can move a pixel by one grey level, and the tests compare outputs bit for bit
# (golden hashes, a restored PNG regenerated). The thread policy's own tests clear it.
os.environ.setdefault("SDEDIT_THREADS", "1")

import numpy as np
import pytest
import torch

torch.set_num_threads(1)  # an oversubscribed CPU runs a small UNet an order of magnitude slower


def tiny_vp_unet(size: int = 16, seed: int = 0):
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    return UNet2DModel(
        sample_size=size,
        block_out_channels=(16, 32),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
        attention_head_dim=8,
    ).eval()


def tiny_ve_unet(size: int = 16, seed: int = 0):
    """NCSN++ in miniature: fourier time embedding (called with sigma), skip blocks, output / sigma."""
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    return UNet2DModel(
        sample_size=size,
        block_out_channels=(32, 32),
        layers_per_block=1,
        down_block_types=("SkipDownBlock2D", "AttnSkipDownBlock2D"),
        up_block_types=("AttnSkipUpBlock2D", "SkipUpBlock2D"),
        time_embedding_type="fourier",
        norm_num_groups=None,
        mid_block_scale_factor=2**0.5,
        norm_eps=1e-6,
        attention_head_dim=None,
    ).eval()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny VP model saved like a real one (unet/ + scheduler/), loadable by path. Read-only: shared."""
    from diffusers import DDPMScheduler

    folder = tmp_path_factory.mktemp("tiny-model")
    tiny_vp_unet().save_pretrained(folder / "unet")
    DDPMScheduler(num_train_timesteps=1000).save_pretrained(folder / "scheduler")
    return folder


@pytest.fixture
def vp_pipe():
    from diffusers import DDPMScheduler

    from sdedit import SDEditPipeline

    return SDEditPipeline(tiny_vp_unet(), DDPMScheduler(num_train_timesteps=1000))


@pytest.fixture
def ve_pipe():
    from diffusers import ScoreSdeVeScheduler

    from sdedit import SDEditPipeline

    return SDEditPipeline(tiny_ve_unet(), ScoreSdeVeScheduler(sigma_max=348.0, snr=0.075))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def photo(rng):
    """A smooth 24x36 RGB 'photo' (non-square, so fitting and mapping back are exercised)."""
    y, x = np.mgrid[0:24, 0:36]
    img = np.stack([x * 7 % 256, y * 10 % 256, (x + y) * 4 % 256], -1).astype(np.uint8)
    return img


@pytest.fixture(scope="module")
def url():
    """The app served on 127.0.0.1 for one module of browser tests."""
    from .app_server import running_app

    with running_app() as u:
        yield u


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium through Playwright, one per module of browser tests (never `playwright install`)."""
    from playwright.sync_api import sync_playwright

    from .browser_utils import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()
