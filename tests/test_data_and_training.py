"""Data loading on a tiny fixture (a fake npm tarball), and a training smoke run with resume and export."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sdedit import SDEditPipeline
from sdedit.lab.data import (
    DataError,
    ImageSetSpec,
    NpmPackage,
    base_key,
    code_points,
    fetch_npm,
    load_folder,
    load_npm_image_set,
    sha1_of,
)
from sdedit.lab.train import TrainConfig, Trainer

REPO = Path(__file__).resolve().parents[1]

NAMES = ["1f600", "1f44b", "1f44b-1f3fb", "1f44b-1f3ff", "1f3f4-e0067_e0062_e0065_e006e_e0067", "2764-fe0f"]


def _webp(color, alpha=255, size=(20, 24)) -> bytes:
    img = Image.new("RGBA", size, (*color, alpha))
    img.putpixel((0, 0), (0, 0, 0, 0))  # one transparent pixel: must come out as the background
    buf = io.BytesIO()
    img.save(buf, format="WEBP", lossless=True)
    return buf.getvalue()


def _tarball(path, files: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.fixture
def fake_registry(tmp_path, monkeypatch):
    """Pre-placed tarballs in the npm cache folder, as `npm pack` would leave them."""
    monkeypatch.setenv("SDEDIT_CACHE", str(tmp_path / "cache"))
    npm_dir = tmp_path / "cache" / "npm"
    npm_dir.mkdir(parents=True)
    images = {f"package/assets/{n}.webp": _webp((40 * i, 200, 255 - 30 * i)) for i, n in enumerate(NAMES)}
    images["package/README.md"] = b"not an image"
    _tarball(npm_dir / "fake-emoji-1.0.0.tgz", images)
    groups = {"😀": {"group": "Smileys & Emotion"}, "👋": {"group": "People & Body"}, "❤️": {"group": "Symbols"}}
    _tarball(npm_dir / "fake-groups-2.0.0.tgz", {"package/data-by-emoji.json": json.dumps(groups).encode()})
    spec = ImageSetSpec(
        key="fake",
        package=NpmPackage("fake-emoji", "1.0.0", sha1_of(npm_dir / "fake-emoji-1.0.0.tgz")),
        pattern=r"^package/assets/[0-9a-f_\-]+\.webp$",
        license="MIT",
        credit="test",
        homepage="",
        groups=NpmPackage("fake-groups", "2.0.0", sha1_of(npm_dir / "fake-groups-2.0.0.tgz")),
    )
    return spec


def test_npm_image_set_decodes_composites_and_categorises(fake_registry):
    s = load_npm_image_set(fake_registry, resolution=16, held_out_fraction=0.5)
    assert s.images.shape == (6, 16, 16, 3) and s.images.dtype == np.uint8
    assert s.names == sorted(NAMES, key=lambda n: n + ".webp")  # tarball member order
    cats = dict(zip(s.names, s.categories, strict=True))
    assert cats["1f600"] == "Smileys & Emotion"
    assert cats["1f44b-1f3ff"] == "People & Body"  # skin tones map to their base emoji
    assert cats["2764-fe0f"] == "Symbols"  # variation selectors are ignored
    assert cats["1f3f4-e0067_e0062_e0065_e006e_e0067"] == "Other"
    # padded to square with the white background; the transparent corner is white too
    assert tuple(s.images[0, 0, 0]) == (255, 255, 255)
    # the split keeps all variants of one emoji together
    split = dict(zip(s.names, s.held_out, strict=True))
    assert split["1f44b"] == split["1f44b-1f3fb"] == split["1f44b-1f3ff"]
    # deterministic: the same split again
    assert np.array_equal(load_npm_image_set(fake_registry, 16, 0.5).held_out, s.held_out)


def test_checksum_mismatch_is_refused_and_removed(fake_registry, tmp_path):
    bad = NpmPackage("fake-emoji", "1.0.0", "0" * 40)
    with pytest.raises(DataError, match="does not match"):
        fetch_npm(bad)
    assert not (tmp_path / "cache" / "npm" / "fake-emoji-1.0.0.tgz").exists()


def test_code_points_and_base_key():
    assert code_points("1f44b-1f3fb") == (0x1F44B, 0x1F3FB)
    assert code_points("1f3f4-e0067_e0062") == (0x1F3F4, 0xE0067, 0xE0062)
    assert base_key(code_points("1f44b-1f3fb")) == base_key(code_points("1f44b")) == (0x1F44B,)


def _folder(tmp_path, n=6):
    for i in range(n):
        sub = tmp_path / ("cats" if i % 2 else "dogs")
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((20, 30, 3), 30 * i, np.uint8)).save(sub / f"img{i}.png")
    (tmp_path / "dogs" / "broken.png").write_bytes(b"\x89PNG broken")
    return tmp_path


def test_folder_of_images_with_categories_and_a_broken_file(tmp_path):
    s = load_folder(_folder(tmp_path / "imgs"), resolution=16, fit="crop")
    assert s.images.shape == (6, 16, 16, 3)
    assert set(s.categories) == {"cats", "dogs"}
    assert len(s.meta["skipped"]) == 1 and "broken.png" in s.meta["skipped"][0]
    with pytest.raises(DataError, match="no images"):
        load_folder(_empty(tmp_path), 16)


def _empty(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    return d


def tiny_train_config(tmp_path, data, **kw) -> TrainConfig:
    return TrainConfig(
        name="tiny",
        data=str(data),
        output_dir=str(tmp_path / "run"),
        resolution=16,
        held_out_fraction=0.0,
        model=dict(
            block_out_channels=[16, 32],
            layers_per_block=1,
            down_block_types=["DownBlock2D", "AttnDownBlock2D"],
            up_block_types=["AttnUpBlock2D", "UpBlock2D"],
            norm_num_groups=8,
        ),
        batch_size=4,
        warmup_steps=2,
        checkpoint_every=2,
        sample_every=3,
        sample_steps=3,
        num_samples=4,
        card_sample_steps=5,
        mixed_precision="no",
        threads=1,
        **kw,
    )


def test_training_smoke_resume_and_export(tmp_path):
    data = _folder(tmp_path / "imgs")
    cfg = tiny_train_config(tmp_path, data, max_steps=3)
    out = Trainer(cfg).run()
    run = tmp_path / "run"
    assert (run / "checkpoints" / "last.pt").is_file()
    assert (run / "samples" / "step-0000003.png").is_file()
    card = json.loads((out / "training.json").read_text())
    assert card["steps"] == 3 and card["train_images"] == 6
    # the card's grid comes from the model's own ancestral sampler, and the card says so
    assert card["card_samples"] == "ddpm, 5 steps" and (out / "samples.png").is_file()
    assert "DDPM ancestral sampler, 5 steps" in (out / "README.md").read_text()
    # resume: a second run continues from step 3 with the optimiser state, not from scratch
    cfg5 = tiny_train_config(tmp_path, data, max_steps=5)
    trainer = Trainer(cfg5)
    assert trainer.load_checkpoint() and trainer.step == 3 and len(trainer.losses) == 3
    trainer.run()
    assert trainer.step == 5
    # each run over the checkpoint is recorded, and the card carries the record
    assert [(r["from_step"], r["to_step"]) for r in trainer.runs] == [(0, 3), (3, 5)]
    assert trainer.card()["runs"] == trainer.runs and trainer.card()["device_type"] == "cpu"
    # the export is a diffusers folder that the pipeline loads and edits with
    pipe = SDEditPipeline.from_pretrained(str(out))
    assert pipe.sde == "vp" and pipe.config.resolution == 16
    img = pipe(np.full((16, 16, 3), 200, np.uint8), num_inference_steps=4, seed=0, progress=False).images[0]
    assert img.size == (16, 16)


def test_training_config_rejects_unknown_keys(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("name: x\ndata: d\noutput_dir: o\nlearning_rte: 0.1\n")
    with pytest.raises(ValueError, match="learning_rte"):
        TrainConfig.from_yaml(path)


def test_min_snr_weighting(tmp_path):
    import torch

    data = _folder(tmp_path / "imgs")
    trainer = Trainer(tiny_train_config(tmp_path, data, snr_gamma=5.0, max_steps=1))
    abar = torch.tensor([0.999, 5 / 6, 0.5, 0.01])  # SNR 999, 5, 1, ~0.01
    w = trainer.loss_weights(abar)
    assert torch.allclose(w, torch.tensor([5 / 999, 1.0, 1.0, 1.0]), atol=1e-4)
    assert torch.equal(Trainer(tiny_train_config(tmp_path, data, max_steps=1)).loss_weights(abar), torch.ones(4))


def test_a_non_finite_loss_stops_training_at_its_step(tmp_path):
    """Losses are read from the device in batches (no sync per GPU step); a NaN must still be caught, naming
    the step where it happened."""
    import torch

    data = _folder(tmp_path / "imgs")
    trainer = Trainer(tiny_train_config(tmp_path, data, max_steps=4))
    trainer.step = 7
    trainer._pending = [torch.tensor(0.5), torch.tensor(float("nan")), torch.tensor(0.4)]
    with pytest.raises(FloatingPointError, match="loss became nan at step 6"):
        trainer.sync_losses()
    assert trainer.losses[-3:][0] == 0.5 and not trainer._pending


def test_the_gpu_and_cpu_recipes_train_the_same_model():
    """configs/train-fluent-emoji-64-gpu.yaml differs from the CPU recipe in batch, rate and budget only,
    so either one re-trains the shipped model."""
    cpu = TrainConfig.from_yaml(REPO / "configs" / "train-fluent-emoji-64.yaml")
    gpu = TrainConfig.from_yaml(REPO / "configs" / "train-fluent-emoji-64-gpu.yaml")
    same = ("name", "data", "resolution", "fit", "held_out_fraction", "model", "scheduler", "snr_gamma", "hflip")
    assert all(getattr(cpu, k) == getattr(gpu, k) for k in same)
    assert gpu.batch_size > cpu.batch_size and gpu.max_minutes
