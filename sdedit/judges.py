"""The project's two judges of a result, for inference: the realism network and the identity network.

Both are small CNNs trained by the lab (`sdedit.lab.features`, `sdedit.lab.identity`) and shipped in
`models/emoji-features` and `models/emoji-identity`. The evaluation scores sets with them; the engine uses
them to rank one edit's samples and to pick t0 (`sdedit.ranking`). So what it takes to load and run them lives
here, in the engine, and the lab imports it from here: the studio never needs the lab to rank its results.

- **Realism**: `FeatureExtractor.features` is the realism net's penultimate layer (KID's space);
  `RealismScorer.distance` is one image's kNN realism distance D3 to the real held-out emoji that travel with
  the network (`load_selfcheck`): the mean distance to its 3 nearest, lower = more realistic.
- **Identity**: `IdentityEmbedder.embed` maps an image to a unit vector in which images of one emoji identity lie
  together, and a stroke painting near its emoji; cosine between a guide's and a result's says whether the
  result still shows what the guide showed.

Every loaded network counts its calls (`calls`, `images`), so tests can state the work a ranking costs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from .configs import REPO_ROOT

FEATURES_DIR = REPO_ROOT / "models" / "emoji-features"
IDENTITY_DIR = REPO_ROOT / "models" / "emoji-identity"
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
SELFCHECK = "selfcheck.png"


# ----- images in -------------------------------------------------------------------------------------------
def to_resolution(image, resolution: int) -> np.ndarray:
    """One PIL image or uint8 array -> uint8 (R, R, 3), resized with Lanczos as the data pipeline makes its
    64 px images."""
    pil = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, dtype=np.uint8))
    pil = pil.convert("RGB")
    if pil.size != (resolution, resolution):
        pil = pil.resize((resolution, resolution), Image.LANCZOS)
    return np.asarray(pil, dtype=np.uint8)


def to_input(images, resolution: int) -> torch.Tensor:
    """uint8 (N, H, W, 3) array or a list of PIL images/arrays -> float (N, 3, R, R) in [-1, 1] (`to_resolution`)."""
    if isinstance(images, np.ndarray) and images.ndim == 3:
        images = images[None]
    arrays = [to_resolution(im, resolution) for im in images]
    if not arrays:
        return torch.zeros(0, 3, resolution, resolution)
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float()
    return x.div(127.5).sub(1.0)


def load_net(folder: Path, config_cls, net_cls, retrain: str):
    """(network, config) from a folder the lab saved (fp16 safetensors + config.json): float32, frozen, offline.
    `retrain`: the command that makes one, for the error a missing folder gives."""
    from safetensors.torch import load_file

    if not (folder / WEIGHTS).is_file() or not (folder / CONFIG).is_file():
        raise FileNotFoundError(f"{folder} has no {WEIGHTS} + {CONFIG}; train one with `{retrain} --out {folder}`")
    cfg = config_cls(**json.loads((folder / CONFIG).read_text()))
    net = net_cls(cfg)
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in load_file(folder / WEIGHTS).items()})
    for p in net.parameters():
        p.requires_grad_(False)
    return net, cfg


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


# ----- realism -------------------------------------------------------------------------------------------
@dataclass
class FeatureNetConfig:
    """The architecture and what the network was trained on; saved as config.json beside the weights."""

    classes: list[str]
    widths: list[int] = field(default_factory=lambda: [32, 64, 128, 256])
    resolution: int = 64
    dropout: float = 0.2
    info: dict = field(default_factory=dict)  # training data, settings, accuracy (not needed to load)

    @property
    def feature_dim(self) -> int:
        return self.widths[-1]


class EmojiFeatureNet(nn.Module):
    """conv@64 -> pool -> 2 conv@32 -> pool -> 2 conv@16 -> pool -> conv@8 -> global mean -> linear.

    About 0.58 M parameters with the default widths; the global mean of the last conv block is the feature.
    """

    def __init__(self, cfg: FeatureNetConfig):
        super().__init__()
        w0, w1, w2, w3 = cfg.widths
        self.body = nn.Sequential(
            _conv(3, w0),
            nn.MaxPool2d(2),
            _conv(w0, w1),
            _conv(w1, w1),
            nn.MaxPool2d(2),
            _conv(w1, w2),
            _conv(w2, w2),
            nn.MaxPool2d(2),
            _conv(w2, w3),
        )
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(w3, len(cfg.classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, R, R) in [-1, 1] -> (N, feature_dim), the penultimate layer."""
        return self.body(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(x)))


class FeatureExtractor:
    """A loaded, frozen EmojiFeatureNet in eval mode: `features(images)` and `predict(images)`."""

    def __init__(self, net: EmojiFeatureNet, config: FeatureNetConfig, path: Path | None = None):
        self.net = net.eval()
        self.config = config
        self.path = path
        self.calls = 0  # calls of `features` / `predict`
        self.images = 0  # images they ran the network on

    @property
    def feature_dim(self) -> int:
        return self.config.feature_dim

    def _count(self, n: int) -> None:
        self.calls += 1
        self.images += n

    @torch.inference_mode()
    def features(self, images, batch_size: int = 128) -> np.ndarray:
        """(N, feature_dim) float64: deterministic (eval mode, float32, fixed batch split)."""
        x = to_input(images, self.config.resolution)
        self._count(len(x))
        out = [self.net.features(x[i : i + batch_size]).double() for i in range(0, len(x), batch_size)]
        return torch.cat(out).numpy() if out else np.zeros((0, self.feature_dim))

    @torch.inference_mode()
    def predict(self, images, batch_size: int = 128) -> np.ndarray:
        """Class index per image (into config.classes)."""
        x = to_input(images, self.config.resolution)
        self._count(len(x))
        out = [self.net(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)]
        return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.int64)


def _loader(config_cls, net_cls, wrapper, retrain: str):
    """A loader of one kind of network, cached per folder: folder path (str) -> `wrapper(net, config, folder)`."""

    @lru_cache(maxsize=4)
    def load(path: str):
        net, cfg = load_net(Path(path), config_cls, net_cls, retrain)
        return wrapper(net, cfg, Path(path))

    return load


def _folder_key(path: str | Path | None, default: Path) -> str:
    return str(Path(path).resolve()) if path else str(default)


_load_features = _loader(FeatureNetConfig, EmojiFeatureNet, FeatureExtractor, "python -m sdedit features")


def load_feature_net(path: str | Path | None = None) -> FeatureExtractor:
    """The shipped realism network (models/emoji-features) or another folder; offline, cached per path."""
    return _load_features(_folder_key(path, FEATURES_DIR))


def load_selfcheck(path: str | Path | None = None) -> tuple[np.ndarray, list[str]]:
    """The held-out test images shipped with a realism net (uint8 (N, 64, 64, 3)) and their groups.

    A few real held-out emoji travel with the network (MIT, like the data) so that the realism distance and the
    tests of the metric on real images need neither npm nor the data cache.
    """
    folder = Path(path) if path else FEATURES_DIR
    raw = json.loads((folder / CONFIG).read_text())["info"]["selfcheck"]
    sheet = np.asarray(Image.open(folder / SELFCHECK).convert("RGB"))
    r, cols, n = raw["resolution"], raw["cols"], raw["count"]
    images = [sheet[(i // cols) * r : (i // cols + 1) * r, (i % cols) * r : (i % cols + 1) * r] for i in range(n)]
    return np.stack(images), list(raw["categories"])


class RealismScorer:
    """The kNN realism distance D3(x): the mean feature distance of an image to its k = 3 nearest real reference
    images (the radius of the smallest ball around it that holds k real images); lower = more realistic.

    `reference`: real images (default: the held-out emoji shipped with the network). `exclude`: images a guide
    was made from; reference images within `same_below` mean absolute difference (pixels 0-255, at the features'
    resolution) of one of them are left out, so no result is scored against the image it started from.
    """

    def __init__(
        self,
        extractor: FeatureExtractor | None = None,
        reference: np.ndarray | None = None,
        k: int = 3,
        exclude: Iterable = (),
        same_below: float = 4.0,
    ):
        self.extractor = extractor or load_feature_net()
        res = self.extractor.config.resolution
        ref = load_selfcheck(self.extractor.path)[0] if reference is None else np.asarray(reference, np.uint8)
        ref = np.stack([to_resolution(im, res) for im in ref])
        drop = np.zeros(len(ref), bool)
        for im in exclude:
            diff = np.abs(ref.astype(np.int16) - to_resolution(im, res).astype(np.int16)).mean(axis=(1, 2, 3))
            drop |= diff < same_below
        self.excluded = int(drop.sum())
        ref = ref[~drop]
        if len(ref) < k:
            raise ValueError(f"the realism reference needs at least k = {k} images, got {len(ref)}")
        self.features, self.k, self.reference_size = self.extractor.features(ref), k, len(ref)

    def distance(self, images) -> np.ndarray:
        """D3(x) for each image (uint8 arrays or PIL images, any size): lower = more realistic."""
        return self.distance_of(self.extractor.features(list(images)))

    def distance_of(self, feats: np.ndarray) -> np.ndarray:
        """D3 of images whose features are already computed."""
        dist = np.linalg.norm(feats[:, None] - self.features[None], axis=-1)
        return np.sort(dist, axis=1)[:, : self.k].mean(axis=1)


@lru_cache(maxsize=2)
def realism_scorer(path: str | None = None) -> RealismScorer:
    """The shipped realism net's D3 against its shipped held-out emoji, built once per process."""
    return RealismScorer(load_feature_net(path))


# ----- identity ------------------------------------------------------------------------------------------
@dataclass
class IdentityNetConfig:
    """The architecture, and what the network was trained on (config.json beside the weights)."""

    widths: list[int] = field(default_factory=lambda: [32, 64, 128, 192])
    embed_dim: int = 128
    resolution: int = 64
    info: dict = field(default_factory=dict)


class IdentityNet(nn.Module):
    """Strided convs 64 -> 32 -> 16 -> 8 -> 4 px (two convs at 16 and 8), global mean, linear, unit length."""

    def __init__(self, cfg: IdentityNetConfig):
        super().__init__()
        w0, w1, w2, w3 = cfg.widths
        self.body = nn.Sequential(
            _conv(3, w0, 2),
            _conv(w0, w1, 2),
            _conv(w1, w1, 1),
            _conv(w1, w2, 2),
            _conv(w2, w2, 1),
            _conv(w2, w3, 2),
        )
        self.embed = nn.Linear(w3, cfg.embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, R, R) in [-1, 1] -> (N, embed_dim), L2-normalised."""
        return F.normalize(self.embed(self.body(x).mean(dim=(2, 3))), dim=1)


class IdentityEmbedder:
    """A loaded, frozen IdentityNet: `embed(images)` for uint8 (N, H, W, 3) images of any size."""

    def __init__(self, net: IdentityNet, config: IdentityNetConfig, path: Path | None = None):
        self.net, self.config, self.path = net.eval(), config, path
        self.calls = 0
        self.images = 0

    @torch.inference_mode()
    def embed(self, images, batch_size: int = 128) -> np.ndarray:
        x = to_input(images, self.config.resolution)
        self.calls += 1
        self.images += len(x)
        out = [self.net(x[i : i + batch_size]).double() for i in range(0, len(x), batch_size)]
        return torch.cat(out).numpy() if out else np.zeros((0, self.config.embed_dim))


_load_identity = _loader(IdentityNetConfig, IdentityNet, IdentityEmbedder, "python -m sdedit.lab.identity")


def load_identity_net(path: str | Path | None = None) -> IdentityEmbedder:
    """The shipped identity network (models/emoji-identity) or another folder; offline, cached per path."""
    return _load_identity(_folder_key(path, IDENTITY_DIR))
