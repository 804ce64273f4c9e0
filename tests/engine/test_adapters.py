"""The model-space seam, proven with a space that is not pixels: a tiny UNet on a 2x pixel-unshuffled image
(12 channels at half the resolution). SDEdit, masked editing and K repeats run through it unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DModel

from sdedit import SDEditPipeline, registry
from sdedit.imaging import from_model_range, to_model_range


class UnshuffleSpace:
    """Pixels in [-1, 1], folded 2x2 into channels: (3, R, R) <-> (12, R/2, R/2)."""

    data_range = (-1.0, 1.0)

    def encode(self, canvas):
        return F.pixel_unshuffle(to_model_range(canvas, self.data_range)[None], 2)[0]

    def encode_mask(self, mask):
        m = torch.from_numpy(np.asarray(mask, np.float32))[None].expand(3, -1, -1)
        return F.pixel_unshuffle(m[None], 2)[0]

    def decode(self, x):
        return from_model_range(F.pixel_shuffle(x, 2), self.data_range)

    def resolution(self, sample_size):
        return 2 * int(sample_size)


@pytest.fixture
def latent_pipe():
    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=8,
        in_channels=12,
        out_channels=12,
        block_out_channels=(16, 32),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
    ).eval()
    return SDEditPipeline(unet, DDPMScheduler(num_train_timesteps=1000), space=UnshuffleSpace())


def _guide(size=16):
    y, x = np.mgrid[0:size, 0:size]
    return np.stack([x * 13 % 256, y * 11 % 256, (x * y) % 256], -1).astype(np.uint8)


def test_the_space_decides_the_canvas_and_the_samplers_see_its_tensors(latent_pipe):
    assert latent_pipe.config.resolution == 16
    guide = latent_pipe.prepare(_guide())
    assert guide.x0.shape == (12, 8, 8)
    assert np.array_equal(latent_pipe.space.decode(guide.x0[None])[0], guide.canvas)  # lossless round trip


@pytest.mark.parametrize("sampler", registry.names("vp"))
def test_sdedit_runs_through_a_space_that_is_not_pixels(latent_pipe, sampler):
    kw = dict(strength=0.5, sampler=sampler, num_inference_steps=10, seed=1, progress=False)
    raw = latent_pipe(_guide(), output_type="model", **kw).images
    assert raw.shape == (1, 12, 8, 8) and torch.isfinite(raw).all()
    img = latent_pipe(_guide(), output_type="uint8", **kw).images
    assert img.shape == (1, 16, 16, 3) and not np.array_equal(img[0], _guide())


@pytest.mark.parametrize("sampler", registry.names("vp"))
@pytest.mark.parametrize("repeats", [1, 3])
def test_masked_editing_and_repeats_keep_everything_outside_the_mask(latent_pipe, sampler, repeats):
    mask = np.zeros((16, 16), np.float32)
    mask[4:12, 6:14] = 1.0  # 2x2-aligned, so the model-space mask is exactly the pixel mask
    settings = latent_pipe.check_inputs(strength=0.6, sampler=sampler, num_inference_steps=10, repeats=repeats)
    guide = latent_pipe.prepare(_guide(), mask, settings.fit)
    samples = latent_pipe.run([guide, guide], settings, seeds=[3, 4])
    kept = (guide.x0_strength == 0).expand_as(samples.x[0])
    for x in samples.x:  # in the model's space: the guide itself outside the mask, bit for bit
        assert torch.equal(x[kept], guide.x0[kept])
    out = latent_pipe.postprocess(samples, [guide, guide], settings).images
    outside = mask == 0
    for img in out:
        assert np.array_equal(np.asarray(img)[outside], _guide()[outside])
        assert not np.array_equal(np.asarray(img)[~outside], _guide()[~outside])
