"""Loading: config names, local folders in both layouts, Hub ids offline, the shipped default."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler, ScoreSdeVeScheduler

from sdedit import SDEditPipeline, load_default, loading
from sdedit.configs import default_config, find_config, is_hub_id, model_configs
from sdedit.errors import ModelLoadError, ModelNotFoundError
from tests.conftest import tiny_ve_unet, tiny_vp_unet

REPO = Path(__file__).resolve().parents[2]

HUB_MODELS = {
    "google/ddpm-church-256": "vp",
    "google/ddpm-bedroom-256": "vp",
    "google/ddpm-celebahq-256": "vp",
    "google/ncsnpp-church-256": "ve",
    "google/ncsnpp-celebahq-256": "ve",
    "google/ncsnpp-ffhq-256": "ve",
}


@pytest.fixture(autouse=True)
def _fresh_cache():
    loading.clear_cache()
    yield
    loading.clear_cache()


def save_root_layout(folder, unet, scheduler, bin_only=False):
    """google/ddpm-*-256 style: config.json and weights at the root, scheduler_config.json beside them."""
    unet.save_pretrained(folder, safe_serialization=not bin_only)
    scheduler.save_pretrained(folder)
    return folder


def save_sub_layout(folder, unet, scheduler):
    unet.save_pretrained(folder / "unet")
    scheduler.save_pretrained(folder / "scheduler")
    return folder


@pytest.mark.parametrize("layout", ["root", "sub", "root-bin"])
def test_vp_folder_in_either_layout(tmp_path, layout):
    unet = tiny_vp_unet()
    if layout == "sub":
        save_sub_layout(tmp_path, unet, DDPMScheduler())
    else:
        save_root_layout(tmp_path, unet, DDPMScheduler(), bin_only=layout == "root-bin")
    pipe = SDEditPipeline.from_pretrained(str(tmp_path))
    assert pipe.sde == "vp" and pipe.config.resolution == 16
    assert pipe.config.samplers == ("dpmpp", "ddim", "euler_a", "reference")
    x = torch.randn(1, 3, 16, 16)
    t = torch.tensor([10])
    assert torch.allclose(pipe.unet(x, t).sample, unet(x, t).sample, atol=1e-6)
    assert pipe(np.zeros((16, 16, 3), np.uint8), num_inference_steps=4, progress=False).images[0].size == (16, 16)


def test_ve_folder_is_recognised_from_its_scheduler(tmp_path):
    save_sub_layout(tmp_path, tiny_ve_unet(), ScoreSdeVeScheduler(sigma_max=348.0))
    pipe = SDEditPipeline.from_pretrained(tmp_path)
    assert pipe.sde == "ve" and pipe.config.data_range == (0.0, 1.0) and pipe.config.samplers == ("reference",)
    assert pipe.scheduler.config.sigma_max == 348.0


def test_models_are_cached(tmp_path):
    save_sub_layout(tmp_path, tiny_vp_unet(), DDPMScheduler())
    a = SDEditPipeline.from_pretrained(str(tmp_path))
    b = SDEditPipeline.from_pretrained(str(tmp_path))
    assert a.unet is b.unet


def test_cpu_is_fp32_and_dtype_can_be_chosen(tmp_path):
    assert loading.pick_dtype(torch.device("cpu"), "vp") == torch.float32
    assert loading.pick_dtype(torch.device("cpu"), "vp", "bfloat16") == torch.bfloat16
    with pytest.raises(ValueError, match="dtype"):
        loading.pick_dtype(torch.device("cpu"), "vp", "float8")
    save_sub_layout(tmp_path, tiny_vp_unet(), DDPMScheduler())
    pipe = SDEditPipeline.from_pretrained(str(tmp_path), dtype="bfloat16")
    assert pipe.dtype == torch.bfloat16
    out = pipe(np.zeros((16, 16, 3), np.uint8), num_inference_steps=4, output_type="model", progress=False)
    assert out.images.dtype == torch.float32 and torch.isfinite(out.images).all()


@pytest.mark.parametrize("hub_id", sorted(HUB_MODELS))
def test_hub_models_offline_give_a_clear_error(hub_id, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # an empty cache: nothing to fall back on
    cfg = find_config(hub_id)
    assert cfg is not None and cfg.sde == HUB_MODELS[hub_id]
    for name in (hub_id, cfg.name):
        with pytest.raises(ModelNotFoundError) as info:
            SDEditPipeline.from_pretrained(name)
        message = str(info.value)
        assert hub_id in message and "offline" in message and "--local-dir" in message
        assert info.value.repo_id == hub_id


def test_unknown_model_names_are_explained():
    with pytest.raises(ModelNotFoundError, match=r"unknown model 'no-such-model'.*fluent-emoji-64"):
        SDEditPipeline.from_pretrained("no-such-model")
    with pytest.raises(ModelNotFoundError, match="unknown model"):
        SDEditPipeline.from_pretrained("../../etc/passwd")


def test_folders_that_are_not_models_are_refused(tmp_path):
    with pytest.raises(ModelLoadError, match="holds no UNet"):
        SDEditPipeline.from_pretrained(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel"}))
    with pytest.raises(ModelLoadError, match="not supported"):
        SDEditPipeline.from_pretrained(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel", "in_channels": 4}))
    with pytest.raises(ModelLoadError, match="3-channel"):
        SDEditPipeline.from_pretrained(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel"}))
    with pytest.raises(ModelLoadError, match="no weights"):
        SDEditPipeline.from_pretrained(str(tmp_path))


def test_configs_cover_the_paper_models_and_the_default():
    configs = model_configs()
    assert next(iter(configs)) == default_config().name == "fluent-emoji-64"
    sources = {c.source: c for c in configs.values()}
    for hub_id, sde in HUB_MODELS.items():
        cfg = sources[hub_id]
        assert cfg.sde == sde and cfg.resolution == 256
        assert (
            cfg.paper.sampler == "reference" and 0 < cfg.paper.strength <= 1 and cfg.paper.num_inference_steps >= 1000
        )
        assert cfg.license and cfg.credit
    for cfg in configs.values():
        assert cfg.defaults.sampler in cfg.samplers


def test_hub_id_recognition():
    assert is_hub_id("google/ddpm-church-256")
    for bad in ("google", "a/b/c", "../x", "/abs/path", "a/..", "a b/c"):
        assert not is_hub_id(bad)


def test_the_shipped_default_loads_offline_and_matches_its_config():
    pipe = load_default()
    cfg = default_config()
    assert pipe.config.name == cfg.name and pipe.sde == "vp"
    assert pipe.unet.config.sample_size == cfg.resolution >= 64
    assert pipe.device.type == "cpu" and pipe.dtype == torch.float32
    weights = cfg.local_path / "unet" / "diffusion_pytorch_model.safetensors"
    assert weights.is_file() and weights.stat().st_size <= 20 * 1024 * 1024
    out = pipe(np.full((64, 64, 3), 255, np.uint8), seed=0, progress=False)
    assert out.images[0].size == (64, 64) and out.metadata["sampler"] == cfg.defaults.sampler


def test_the_shipped_default_is_what_its_training_config_builds():
    """The card's training command must rebuild this model: same architecture, schedule and data."""
    from sdedit.lab.train import TrainConfig, build_scheduler, build_unet

    folder = default_config().local_path
    record = json.loads((folder / "training.json").read_text())
    train_cfg = TrainConfig.from_yaml(REPO / record["config_file"])
    assert train_cfg.data == record["data"] and train_cfg.resolution == record["config"]["resolution"]
    built = build_unet(train_cfg).config
    shipped = json.loads((folder / "unet" / "config.json").read_text())
    for key in ("sample_size", "block_out_channels", "layers_per_block", "down_block_types", "up_block_types"):
        assert shipped[key] == json.loads(json.dumps(built[key])), key
    sched = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    for key, value in build_scheduler(train_cfg).config.items():
        if key in ("beta_start", "beta_end", "num_train_timesteps", "beta_schedule", "variance_type"):
            assert sched[key] == value
    # the record adds up: the runs cover every step and the time the card states
    runs = record["runs"]
    assert runs[0]["from_step"] == 0 and runs[-1]["to_step"] == record["steps"]
    assert all(a["to_step"] == b["from_step"] for a, b in itertools.pairwise(runs))
    assert abs(sum(r["seconds"] for r in runs) - record["train_seconds"]) < 1.0
