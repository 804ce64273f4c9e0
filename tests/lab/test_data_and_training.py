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
    DEFAULT_SPLIT,
    LEGACY_SPLIT,
    DataError,
    ImageSet,
    ImageSetSpec,
    NpmPackage,
    _with_split,
    base_key,
    cache_dir,
    code_points,
    fetch_npm,
    identity_key,
    identity_of,
    load_folder,
    load_image_set,
    load_npm_image_set,
    sha1_of,
    split_key,
    twins_in_training,
)
from sdedit.lab.train import TrainConfig, Trainer

REPO = Path(__file__).resolve().parents[2]

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


def test_identity_key_groups_gender_and_skin_tone_variants_of_real_emoji():
    same = {
        "cyclist": ["1f6b4", "1f6b4-200d-2642-fe0f", "1f6b4-200d-2640-fe0f", "1f6b4-1f3fd-200d-2640-fe0f"],
        "technologist": ["1f9d1-200d-1f4bb", "1f468-200d-1f4bb", "1f469-1f3ff-200d-1f4bb", "1f468-1f3fb-200d-1f4bb"],
        "child": ["1f9d2", "1f466", "1f467-1f3fc"],
        "older person": ["1f9d3", "1f474", "1f475-1f3ff"],
        "person": ["1f9d1", "1f468", "1f469-1f3fb"],
        "dancer": ["1f483", "1f57a", "1f57a-1f3fe"],
        "crowned": ["1fac5", "1f934", "1f478-1f3fb"],
        "pregnant": ["1fac4", "1f930", "1fac3-1f3fd"],
        "Claus": ["1f9d1-200d-1f384", "1f385", "1f936-1f3fb"],
        "holding hands": ["1f9d1-200d-1f91d-200d-1f9d1", "1f46b", "1f46c-1f3fb", "1f46d"],
        "kiss": [
            "1f48f",
            "1f469-200d-2764-fe0f-200d-1f48b-200d-1f468",
            "1f468-1f3fc-200d-2764-fe0f-200d-1f48b-200d-1f468-1f3fc",
        ],
        "family, 1 adult, 2 children": ["1f468-200d-1f467-200d-1f467", "1f469-200d-1f466-200d-1f466"],
        "red hair": ["1f9d1-200d-1f9b0", "1f468-1f3fc-200d-1f9b0", "1f469-200d-1f9b0"],
    }
    keys = {}
    for what, names in same.items():
        found = {identity_key(code_points(n)) for n in names}
        assert len(found) == 1, (what, found)
        keys[what] = found.pop()
    assert keys["cyclist"] == (0x1F6B4,) and keys["technologist"] == (0x1F9D1, 0x200D, 0x1F4BB)
    assert len(set(keys.values())) == len(keys)  # different emoji stay apart
    different = ["1f6b4", "1f6b5", "1f9d1", "2640-fe0f", "2642-fe0f", "26a7-fe0f", "1f9d1-200d-1f384", "1f384"]
    assert len({identity_key(code_points(n)) for n in different}) == len(different)
    assert identity_key(code_points("2640-fe0f")) == (0x2640,)  # the female sign emoji keeps its code point
    # emoji-v1 (the shipped models' split) keeps the genders apart: that is the near-twin leak
    assert split_key("1f6b4-200d-2642-fe0f", LEGACY_SPLIT) != split_key("1f6b4", LEGACY_SPLIT)
    assert split_key("1f6b4-200d-2642-fe0f", "identity-v2") == split_key("1f6b4", "identity-v2") == "1f6b4"
    assert identity_of("not-an-emoji") == split_key("not-an-emoji", LEGACY_SPLIT) == "not-an-emoji"
    with pytest.raises(DataError, match=r"unknown split 'v3'.*emoji-v1"):
        split_key("1f6b4", "v3")


def _variant_names() -> list[str]:
    """Man / woman / person variants (ZWJ + gender sign, and 1F468 / 1F469 / 1F9D1 + object), five skin tones."""
    names = []
    tones = ("", "-1f3fb", "-1f3fc", "-1f3fd", "-1f3fe", "-1f3ff")
    for i in range(60):
        base = f"1f{0x645 + i:03x}"
        for tone in tones:
            names += [base + tone, f"{base}{tone}-200d-2640-fe0f", f"{base}{tone}-200d-2642-fe0f"]
        obj = f"1f{0x300 + i:03x}"
        for person in ("1f9d1", "1f468", "1f469"):
            names += [f"{person}{tone}-200d-{obj}" for tone in tones]
    return names


def test_no_identity_straddles_the_identity_split_while_emoji_v1_lets_twins_straddle():
    names = _variant_names()
    images = np.zeros((len(names), 1, 1, 3), np.uint8)

    def sides(split):
        s = _with_split(ImageSet(images, names, ["x"] * len(names), np.zeros(len(names), bool)), 0.2, split)
        by_id = {}
        for name, held in zip(names, s.held_out, strict=True):
            by_id.setdefault(identity_of(name), set()).add(bool(held))
        return s, by_id

    v2, by_id = sides("identity-v2")
    assert v2.meta["split"] == "identity-v2" and 0 < v2.held_out.sum() < len(names)
    assert all(len(v) == 1 for v in by_id.values()) and not twins_in_training(v2).any()
    v1, by_id = sides(LEGACY_SPLIT)
    assert sum(len(v) == 2 for v in by_id.values()) > 10 and twins_in_training(v1).any()


OLD_SPLIT_HELD_OUT_SHA256 = "8158bd52d47f2298d075fa5d67692b2551dd4fed234068252d8ef92f6e49340f"  # 337 names
ALL_NAMES_SHA256 = "6ae26275b852932b356e08ee87a0862d267afc70a840d23089eb5d6288d67a42"  # 3,391 names
DATA = Path(__file__).resolve().parents[1] / "data"


def _lines(path: Path) -> list[str]:
    return path.read_text().split()


def test_the_old_split_is_unchanged():
    """The shipped model was trained on emoji-v1: its held-out emoji must not move. The data's 3,391 names and
    the 337 held out under emoji-v1 are committed (tests/data/) and pinned by their hashes, so the split rule is
    checked on all of them without the data; where the data is cached, its names must be the committed ones."""
    import hashlib

    from sdedit.lab.features import load_feature_net

    names, held = _lines(DATA / "fluent-emoji-3d-names.txt"), _lines(DATA / "emoji-v1-held-out.txt")
    assert len(names) == 3391 and hashlib.sha256("\n".join(names).encode()).hexdigest() == ALL_NAMES_SHA256
    assert len(held) == 337 and hashlib.sha256("\n".join(held).encode()).hexdigest() == OLD_SPLIT_HELD_OUT_SHA256
    assert [n for n in names if is_held_out_name(n, LEGACY_SPLIT)] == held  # the rule gives exactly these
    selfcheck = load_feature_net().config.info["selfcheck"]["names"]
    assert set(selfcheck) <= set(held)  # the feature net's self-check images were held out under it
    assert not all(is_held_out_name(n, DEFAULT_SPLIT) for n in selfcheck)  # the new split is another split
    # twins of the old split: held out under emoji-v1 with a gender variant in training; none under identity-v2
    images = np.zeros((len(names), 1, 1, 3), np.uint8)
    for split, twins in ((LEGACY_SPLIT, 154), ("identity-v2", 0)):
        held_out = np.array([is_held_out_name(n, split) for n in names])
        assert twins_in_training(ImageSet(images, names, ["x"] * len(names), held_out)).sum() == twins
    if (cache_dir() / "arrays" / "fluent-emoji-3d-1.1.0-64px-bgffffff.npz").is_file():
        s = load_image_set("fluent-emoji-3d", 64, 0.1)  # the default is still the shipped models' split
        assert sorted(map(str, s.names)) == names
        assert sorted(str(n) for n, h in zip(s.names, s.held_out, strict=True) if h) == held


def is_held_out_name(name: str, split: str) -> bool:
    from sdedit.lab.data import is_held_out

    return is_held_out(split_key(name, split), 0.1)


def test_recipes_train_on_the_identity_split_and_the_shipped_records_say_emoji_v1():
    for recipe in ("train-fluent-emoji-64.yaml", "train-fluent-emoji-64-gpu.yaml"):
        assert TrainConfig.from_yaml(REPO / "configs" / recipe).split == "identity-v2" == DEFAULT_SPLIT
    from sdedit.lab.upscaler import UpscalerTrainConfig

    assert UpscalerTrainConfig.from_yaml(REPO / "configs" / "train-upscaler-fluent-emoji.yaml").split == DEFAULT_SPLIT
    for model in ("fluent-emoji-64", "fluent-emoji-upscaler-4x"):
        record = json.loads((REPO / "models" / model / "training.json").read_text())
        assert record["config"]["split"] == LEGACY_SPLIT
        assert "split `emoji-v1`" in (REPO / "models" / model / "README.md").read_text()


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
    assert card["config"]["split"] == "identity-v2"  # new training records the split it was trained on
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
    path.write_text("name: x\ndata: d\noutput_dir: o\nsplit: by-colour\n")
    with pytest.raises(DataError, match="unknown split 'by-colour'"):
        Trainer(TrainConfig.from_yaml(path))


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
    same = (
        "name",
        "data",
        "resolution",
        "fit",
        "held_out_fraction",
        "split",
        "model",
        "scheduler",
        "snr_gamma",
        "hflip",
    )
    assert all(getattr(cpu, k) == getattr(gpu, k) for k in same)
    assert gpu.batch_size > cpu.batch_size and gpu.max_minutes
