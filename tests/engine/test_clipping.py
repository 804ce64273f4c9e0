"""The fast samplers follow the model's x0 clipping / thresholding (its scheduler config); the reference loop
stays the official one, which never clips. A test model whose x0 prediction leaves the range shows which."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sdedit import registry
from sdedit.samplers import X0Limit

X0 = 3.0  # what the test model predicts: far outside [-1, 1]


def _out_of_range_model(pipe):
    abar = pipe.scheduler.alphas_cumprod.float()

    def model(x, t):
        a = abar[t.long()].view(-1, 1, 1, 1)
        return (x - a.sqrt() * X0) / (1 - a).sqrt()  # eps whose implied x0 is X0 everywhere

    pipe.model_fn = lambda: model
    return pipe


def _final(pipe, sampler):
    img = np.full((16, 16, 3), 128, np.uint8)
    kw = dict(strength=0.5, sampler=sampler, num_inference_steps=10, seed=0, progress=False, output_type="model")
    return pipe(img, **kw).images


@pytest.mark.parametrize("sampler", registry.names("vp"))
@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"clip_sample": True, "clip_sample_range": 1.0}, 1.0),
        ({"clip_sample": True, "clip_sample_range": 2.0}, 2.0),
        ({"thresholding": True, "dynamic_thresholding_ratio": 0.995, "sample_max_value": 1.5}, 1.0),
        ({"clip_sample": False}, X0),
    ],
    ids=["clip-1", "clip-2", "threshold", "none"],
)
def test_each_sampler_follows_the_configured_limit(vp_pipe, sampler, config, expected):
    pipe = _out_of_range_model(vp_pipe)
    pipe.x0_limit = X0Limit.from_config(config)
    out = _final(pipe, sampler)
    follows = registry.get(sampler).limits_x0
    assert torch.allclose(out, torch.full_like(out, expected if follows else X0), atol=1e-3), float(out.mean())


def test_thresholding_is_per_sample_and_keeps_in_range_values():
    limit = X0Limit(ratio=0.5, max_value=4.0)
    x0 = torch.stack([torch.linspace(-3, 3, 100).reshape(1, 10, 10), torch.linspace(-0.5, 0.5, 100).reshape(1, 10, 10)])
    out = limit(x0)
    assert out.abs().max() <= 1.0 + 1e-6
    assert torch.equal(out[1], x0[1])  # a sample already in range: s = 1, unchanged
    assert out[0].abs().max() == pytest.approx(1.0) and not torch.equal(out[0], x0[0])


def test_the_limit_comes_from_the_scheduler_config():
    assert X0Limit.from_config({"clip_sample": True, "clip_sample_range": 1.0}) == X0Limit(clip=1.0)
    assert X0Limit.from_config({"thresholding": True, "clip_sample": True}).ratio == 0.995
    assert X0Limit.from_config({"clip_sample": False}) is None
