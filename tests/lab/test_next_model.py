"""The next embedded model's recipe (configs/train-fluent-emoji-64-v2-gpu.yaml), run at tiny scale on the CPU:
batches balanced by emoji identity, and the EMA that is exported."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sdedit.lab.data import identity_of
from sdedit.lab.train import TrainConfig, Trainer, ema_decay_at, sample_weights
from tests.lab.test_data_and_training import tiny_train_config

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "configs" / "train-fluent-emoji-64-v2-gpu.yaml"
SHIPPED = REPO / "configs" / "train-fluent-emoji-64-gpu.yaml"

# one person emoji in 5 skin tones x 3 genders (15 images), and three single-image emoji
PEOPLE = [
    f"{who}{tone}-200d-1f3eb"
    for who in ("1f9d1", "1f468", "1f469")
    for tone in ("", "-1f3fb", "-1f3fc", "-1f3fd", "-1f3fe")
]
OTHERS = ["1f34e", "1f388", "1f697"]


def emoji_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "emoji"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in PEOPLE + OTHERS:
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / f"{name}.png")
    return folder


def test_the_recipe_changes_only_what_it_says_from_the_shipped_one():
    new, old = TrainConfig.from_yaml(RECIPE), TrainConfig.from_yaml(SHIPPED)
    assert new.split == "identity-v2" and new.balance == "identity" and old.balance is None
    assert new.max_minutes > old.max_minutes and new.ema_decay > old.ema_decay
    assert new.model == old.model and new.scheduler == old.scheduler  # the same network: the CPU budget
    same = ("data", "resolution", "fit", "batch_size", "learning_rate", "snr_gamma", "hflip", "save_dtype")
    assert all(getattr(new, k) == getattr(old, k) for k in same)


def test_every_identity_gets_one_share_whatever_its_variants():
    names = PEOPLE + OTHERS
    assert len({identity_of(n) for n in PEOPLE}) == 1  # tones and genders: one identity
    w = sample_weights(names, "identity")
    assert w.sum() == pytest.approx(1.0)
    share = Counter()
    for n, p in zip(names, w, strict=True):
        share[identity_of(n)] += p
    assert all(v == pytest.approx(0.25) for v in share.values())  # 4 identities, a quarter each
    assert sample_weights(names, None) is None
    with pytest.raises(ValueError, match="balance"):
        sample_weights(names, "group")


def test_the_recipe_trains_a_few_balanced_steps_on_the_cpu_with_its_ema(tmp_path):
    cfg = TrainConfig.from_yaml(RECIPE)
    tiny = replace(
        cfg,
        data=str(emoji_folder(tmp_path)),
        output_dir=str(tmp_path / "run"),
        resolution=16,
        held_out_fraction=0.0,
        model=tiny_train_config(tmp_path, "unused").model,
        batch_size=64,
        max_steps=3,
        max_minutes=None,
        warmup_steps=1,
        checkpoint_every=100,
        sample_every=0,
        mixed_precision="no",
        threads=1,
    )
    trainer = Trainer(tiny)
    # balanced batches: the person emoji (15 of 18 images) is drawn about a quarter of the time, not 15/18
    drawn = Counter()
    gen = trainer.gen.get_state()
    for _ in range(20):
        idx = torch.multinomial(trainer.weights, tiny.batch_size, replacement=True, generator=trainer.gen)
        drawn.update(identity_of(str(trainer.train_set.names[i])) for i in idx.tolist())
    trainer.gen.set_state(gen)
    person = drawn[identity_of(PEOPLE[0])] / sum(drawn.values())
    assert 0.18 < person < 0.32, person
    # a few steps: the EMA follows the weights at its warm-up rate, and is what gets exported
    before = [p.clone() for p in trainer.ema.parameters()]
    trainer.train_step()
    d = ema_decay_at(0, tiny.ema_decay)
    assert d < tiny.ema_decay
    for e, b, p in zip(trainer.ema.parameters(), before, trainer.unet.parameters(), strict=True):
        assert torch.allclose(e, b * d + p.detach() * (1 - d), atol=1e-6)
    trainer.train_step()
    trainer.train_step()
    assert trainer.step == 3 and all(np.isfinite(trainer.losses or [0.0]))
