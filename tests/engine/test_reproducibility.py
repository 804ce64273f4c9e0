"""Seeds: a batch of N gives the same images as N single runs with those seeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sdedit.errors import InputError
from sdedit.noise import NoiseSource, seeds_for


@pytest.mark.parametrize("sampler", ["dpmpp", "ddim", "euler_a", "reference"])
def test_vp_batch_equals_single_runs(vp_pipe, photo, sampler):
    kw = dict(
        strength=0.6,
        sampler=sampler,
        num_inference_steps=40 if sampler == "reference" else 10,
        output_type="model",
        progress=False,
    )
    batch = vp_pipe(photo, num_images=3, seed=[11, 12, 13], **kw).images
    for i, s in enumerate((11, 12, 13)):
        single = vp_pipe(photo, num_images=1, seed=s, **kw).images[0]
        assert torch.allclose(batch[i], single, atol=1e-4), (sampler, i, (batch[i] - single).abs().max())


def test_ve_batch_equals_single_runs_with_corrector(ve_pipe, photo):
    kw = dict(strength=0.4, num_inference_steps=20, snr=0.075, output_type="model", progress=False)
    batch = ve_pipe(photo, num_images=2, seed=7, **kw).images
    assert torch.allclose(batch[1], ve_pipe(photo, seed=8, **kw).images[0], atol=1e-4)


def test_same_seed_same_image_other_seed_other_image(vp_pipe, photo):
    kw = dict(num_inference_steps=10, output_type="uint8", progress=False)
    a = vp_pipe(photo, seed=1, **kw).images
    b = vp_pipe(photo, seed=1, **kw).images
    c = vp_pipe(photo, seed=2, **kw).images
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_batches_of_several_guides(vp_pipe, photo):
    """A list of guides is one forward pass; each guide keeps its own size and its own seeds."""
    other = np.full((20, 20, 3), 200, np.uint8)
    kw = dict(num_inference_steps=10, progress=False)
    out = vp_pipe([photo, other], num_images=2, seed=[1, 2, 3, 4], output_type="uint8", **kw)
    assert [im.shape for im in out.images] == [photo.shape, photo.shape, other.shape, other.shape]
    assert out.metadata["batch"] == 4 and out.metadata["seeds"] == [1, 2, 3, 4]
    alone = vp_pipe(other, num_images=1, seed=3, output_type="uint8", **kw).images[0]
    assert np.abs(out.images[2].astype(int) - alone.astype(int)).max() <= 1


def test_requests_sharing_a_batch_get_their_own_images_and_metadata(vp_pipe, photo):
    """`postprocess(requests=...)`: a server that runs two requests in one `run` gets each one's images, canvases,
    seeds, guides and timings back, equal to what each gets alone (up to batched float rounding)."""
    other = np.full((20, 30, 3), 200, np.uint8)
    mask = np.zeros((20, 30), np.float32)
    mask[5:15, 5:20] = 1
    s = vp_pipe.check_inputs(num_inference_steps=10, output_type="uint8")
    a, b = vp_pipe.prepare(photo, None, s.fit), vp_pipe.prepare(other, mask, s.fit)
    samples = vp_pipe.run([a, a, b], s, seeds=[1, 2, 9])
    out = vp_pipe.postprocess(samples, [a, a, b], s, requests=[2, 1], prepare_s=[0.25, 0.5])
    first, second = out.requests
    assert np.array_equal(first.images, out.images[:2]) and np.array_equal(second.images, out.images[2:])
    assert np.array_equal(second.canvases, samples.canvases[2:])
    assert (first.metadata["seeds"], second.metadata["seeds"]) == ([1, 2], [9])
    assert (first.metadata["num_images"], second.metadata["num_images"]) == (2, 1)
    assert second.metadata["input_sizes"] == [[30, 20]] and second.metadata["masked"] == [True]
    assert first.metadata["masked"] == [False] and first.metadata["batch"] == 3
    assert first.metadata["batched_requests"] == 2 and "batched_requests" not in out.metadata
    t1, t2 = first.metadata["timings"], second.metadata["timings"]
    assert (t1["prepare_s"], t2["prepare_s"]) == (0.25, 0.5) and t1["sample_s"] == t2["sample_s"]
    assert t2["total_s"] == pytest.approx(0.5 + t2["sample_s"] + t2["postprocess_s"], abs=2e-4)
    assert t2["per_image_s"] == pytest.approx(t2["total_s"] / 3, abs=2e-4)
    assert out.metadata["timings"]["prepare_s"] == 0.75, "the batch's: every request's preparing"
    alone = vp_pipe(other, mask, num_inference_steps=10, seed=9, output_type="uint8", progress=False)
    assert np.abs(second.images[0].astype(int) - alone.images[0].astype(int)).max() <= 1
    assert alone.requests[0].metadata == {**alone.metadata, "batched_requests": 1}, "a call is one request"
    with pytest.raises(ValueError, match="add up"):
        vp_pipe.postprocess(samples, [a, a, b], s, requests=[1, 1])


def test_generators_and_seeds_agree(vp_pipe, photo):
    kw = dict(num_inference_steps=10, output_type="model", progress=False)
    gens = [torch.Generator().manual_seed(s) for s in (4, 5)]
    a = vp_pipe(photo, num_images=2, generator=gens, **kw).images
    b = vp_pipe(photo, num_images=2, seed=4, **kw).images
    assert torch.equal(a, b)
    # one shared generator (the diffusers habit) is reproducible too
    c = vp_pipe(photo, num_images=2, generator=torch.Generator().manual_seed(0), **kw)
    d = vp_pipe(photo, num_images=2, generator=torch.Generator().manual_seed(0), **kw)
    assert torch.equal(c.images, d.images) and c.metadata["seeds"] == d.metadata["seeds"]


def test_noise_source_is_per_sample():
    a = NoiseSource.from_seeds([1, 2, 3]).randn((3, 4, 4))
    b = NoiseSource.from_seeds([2]).randn((3, 4, 4))
    assert torch.equal(a[1], b[0])


def test_seed_validation():
    assert seeds_for(5, 3) == [5, 6, 7]
    assert seeds_for([9, 1], 2) == [9, 1]
    assert len(seeds_for(None, 2)) == 2
    for bad in (-1, 2**63, 1.5, "x", float("nan"), True):
        with pytest.raises(InputError, match="seed"):
            seeds_for(bad, 1)
    with pytest.raises(InputError, match="2 seeds for 3 samples"):
        seeds_for([1, 2], 3)
