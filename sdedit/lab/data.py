"""Training and evaluation images: a pinned image set from the npm registry, or any folder of images.

The embedded default model is trained on Microsoft's Fluent Emoji 3D renders (MIT), which npm ships as
`@lobehub/fluent-emoji-3d`. We fetch the tarball with the ordinary client (`npm pack`), check its
checksum, and read the images straight out of it; nothing is committed. Alpha is composited onto a fixed
background *before* resizing, which is the premultiplied-correct order.

Splits are by *emoji*, not by file, and come in named versions (`SPLITS`): `emoji-v1` keeps the five skin-tone
variants of one emoji on one side; `identity-v2` (the default for new training) also keeps its man / woman /
person variants together (`identity_key`), so held-out images have no near-twins in training. A model records
the split it was trained on, and is evaluated on that split.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from ..imaging import to_rgb

if TYPE_CHECKING:
    import torch

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
SKIN_TONES = frozenset(range(0x1F3FB, 0x1F400))
VARIATION_SELECTOR = 0xFE0F
ZWJ = 0x200D
GENDER_SIGNS = frozenset((0x2640, 0x2642))  # female / male sign: "woman biking" = person biking + ZWJ + 2640
PERSON, CHILD, OLDER_PERSON = 0x1F9D1, 0x1F9D2, 0x1F9D3
# Gendered code points -> the gender-neutral emoji of the same identity (Unicode's own neutral forms, e.g.
# 1F468 man -> 1F9D1 person, so "man technologist" 1F468-200D-1F4BB becomes "technologist" 1F9D1-200D-1F4BB).
GENDER_NEUTRAL: dict[int, tuple[int, ...]] = {
    0x1F468: (PERSON,),  # man
    0x1F469: (PERSON,),  # woman
    0x1F466: (CHILD,),  # boy
    0x1F467: (CHILD,),  # girl
    0x1F474: (OLDER_PERSON,),  # old man
    0x1F475: (OLDER_PERSON,),  # old woman
    0x1F57A: (0x1F483,),  # man dancing -> woman dancing (Unicode has no neutral dancer)
    0x1F934: (0x1FAC5,),  # prince -> person with crown
    0x1F478: (0x1FAC5,),  # princess -> person with crown
    0x1F930: (0x1FAC4,),  # pregnant woman -> pregnant person
    0x1FAC3: (0x1FAC4,),  # pregnant man -> pregnant person
    0x1F385: (PERSON, ZWJ, 0x1F384),  # Santa Claus -> Mx Claus
    0x1F936: (PERSON, ZWJ, 0x1F384),  # Mrs. Claus -> Mx Claus
    0x1F46B: (PERSON, ZWJ, 0x1F91D, ZWJ, PERSON),  # woman and man holding hands -> people holding hands
    0x1F46C: (PERSON, ZWJ, 0x1F91D, ZWJ, PERSON),  # men holding hands
    0x1F46D: (PERSON, ZWJ, 0x1F91D, ZWJ, PERSON),  # women holding hands
    0x1F48F: (PERSON, ZWJ, 0x2764, ZWJ, 0x1F48B, ZWJ, PERSON),  # kiss -> kiss: person, person (any genders)
    0x1F491: (PERSON, ZWJ, 0x2764, ZWJ, PERSON),  # couple with heart -> couple with heart: person, person
    0x1F46A: (PERSON, ZWJ, PERSON, ZWJ, CHILD),  # family -> family: man, woman, boy (its usual picture)
}


class DataError(RuntimeError):
    """A data set could not be fetched, verified or read."""


@dataclass(frozen=True)
class NpmPackage:
    """One pinned npm tarball, checked against the sha1 that the registry publishes for it."""

    name: str
    version: str
    sha1: str

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass(frozen=True)
class ImageSetSpec:
    """An image set inside an npm tarball, with what a model card must say about it."""

    key: str
    package: NpmPackage
    pattern: str
    license: str
    credit: str
    homepage: str
    groups: NpmPackage | None = None


FLUENT_EMOJI_3D = ImageSetSpec(
    key="fluent-emoji-3d",
    package=NpmPackage("@lobehub/fluent-emoji-3d", "1.1.0", "ff0679b2bbbf6100dd9709d8952498f08f364ac6"),
    pattern=r"^package/assets/[0-9a-f_\-]+\.webp$",
    license="MIT",
    credit="Fluent Emoji 3D by Microsoft (github.com/microsoft/fluentui-emoji), packaged by LobeHub",
    homepage="https://github.com/microsoft/fluentui-emoji",
    groups=NpmPackage("unicode-emoji-json", "0.9.0", "d5384c7be62d5c7c0bdc91a453f42a24c072c3d9"),
)
IMAGE_SETS = {FLUENT_EMOJI_3D.key: FLUENT_EMOJI_3D}


@dataclass
class ImageSet:
    """Images as uint8 (N, H, W, 3), with a name, a category and a held-out flag per image."""

    images: np.ndarray
    names: list[str]
    categories: list[str]
    held_out: np.ndarray
    source: str = ""
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.names)

    def subset(self, held_out: bool) -> ImageSet:
        idx = np.flatnonzero(self.held_out == held_out)
        return ImageSet(
            self.images[idx],
            [self.names[i] for i in idx],
            [self.categories[i] for i in idx],
            self.held_out[idx],
            self.source,
            dict(self.meta),
        )

    @property
    def category_names(self) -> list[str]:
        return sorted(set(self.categories))


def cache_dir() -> Path:
    """Where fetched tarballs and decoded arrays live: $SDEDIT_CACHE, else ~/.cache/sdedit."""
    root = os.environ.get("SDEDIT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "sdedit")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha1_of(path: Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_npm(package: NpmPackage, dest: Path | None = None) -> Path:
    """Return the verified tarball of `package`, fetching it with `npm pack` when it is not cached."""
    dest = Path(dest) if dest else cache_dir() / "npm"
    dest.mkdir(parents=True, exist_ok=True)
    filename = package.name.lstrip("@").replace("/", "-") + f"-{package.version}.tgz"
    path = dest / filename
    if not path.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise DataError(f"`npm` is needed to fetch {package.spec}; install Node.js, or place {filename} in {dest}")
        result = subprocess.run(
            [npm, "pack", package.spec, "--pack-destination", str(dest), "--silent"],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if result.returncode != 0 or not path.exists():
            raise DataError(f"`npm pack {package.spec}` failed: {result.stderr.strip()[-500:]}")
    actual = sha1_of(path)
    if actual != package.sha1:
        path.unlink()
        raise DataError(f"{filename}: sha1 {actual} does not match the pinned {package.sha1}; removed it")
    return path


def square(image: Image.Image, size: int, fit: str = "pad", background=(255, 255, 255)) -> Image.Image:
    """Make an RGB image square at `size`: `pad` keeps everything, `crop` fills the frame."""
    w, h = image.size
    if fit == "crop":
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        image = image.crop((left, top, left + s, top + s))
    elif fit == "pad":
        s = max(w, h)
        canvas = Image.new("RGB", (s, s), background)
        canvas.paste(image, ((s - w) // 2, (s - h) // 2))
        image = canvas
    else:
        raise ValueError(f"fit must be 'pad' or 'crop', not {fit!r}")
    return image.resize((size, size), Image.LANCZOS)


def code_points(stem: str) -> tuple[int, ...]:
    """'1f44b-1f3fb' -> (0x1f44b, 0x1f3fb); the package also separates tag sequences with '_'."""
    return tuple(int(part, 16) for part in re.split(r"[-_]", stem) if part)


def base_key(points: Iterable[int]) -> tuple[int, ...]:
    """The emoji without skin tone or variation selector: all variants of one emoji share it."""
    return tuple(c for c in points if c not in SKIN_TONES and c != VARIATION_SELECTOR)


def identity_key(points: Iterable[int]) -> tuple[int, ...]:
    """The emoji up to skin tone *and* gender: man / woman / person (and boy / girl / child, prince / princess /
    person with crown, ...) variants of one emoji share it, as do all five skin tones of each.

    '1f6b4-200d-2642-fe0f' (man biking), '1f6b4-200d-2640-fe0f' (woman biking) and '1f6b4' (person biking) all
    give (0x1F6B4,); '1f468-1f3fd-200d-1f4bb' (man technologist, medium skin) gives (0x1F9D1, 0x200D, 0x1F4BB).
    """
    out: list[int] = []
    for c in base_key(points):
        if c in GENDER_SIGNS and out and out[-1] == ZWJ:  # "+ ZWJ + male sign": drop both (the bare sign
            out.pop()  # 2642-fe0f is an emoji of its own and keeps its code point)
            continue
        out.extend(GENDER_NEUTRAL.get(c, (c,)))
    return tuple(out)


def emoji_groups(package: NpmPackage) -> dict[tuple[int, ...], str]:
    """Unicode's emoji group ('Animals & Nature', ...) for every emoji, keyed by `base_key`."""
    with tarfile.open(fetch_npm(package)) as tar:
        member = tar.extractfile("package/data-by-emoji.json")
        if member is None:
            raise DataError(f"{package.spec} has no data-by-emoji.json")
        table = json.load(member)
    return {base_key(ord(ch) for ch in emoji): info["group"] for emoji, info in table.items()}


def is_held_out(group_key: str, fraction: float) -> bool:
    """A stable, platform-independent split: hash the group key, not a random draw."""
    bucket = int(hashlib.sha1(group_key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return bucket < fraction


# The named train / held-out splits: what an image's split key groups. A model records the one it was trained on
# (its training config's `split`); the evaluation uses that one. Records without a `split` predate the versions
# and used `emoji-v1` (the shipped fluent-emoji-64 and its upscaler).
SPLITS = {
    "emoji-v1": base_key,  # skin tones together; gender variants (man / woman cyclist) may straddle the split
    "identity-v2": identity_key,  # skin tones and gender variants together: no near-twin across the split
}
LEGACY_SPLIT = "emoji-v1"
DEFAULT_SPLIT = "identity-v2"


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise DataError(
            f"unknown split {split!r}: use one of {sorted(SPLITS)} (the default for new training is "
            f"{DEFAULT_SPLIT!r}; {LEGACY_SPLIT!r} is the shipped model's)"
        )
    return split


def split_key(name: str, split: str = LEGACY_SPLIT) -> str:
    """The key that `split` hashes for an image name: '1f44b-1f3fb' -> '1f44b'; a non-emoji name is its own key."""
    try:
        points = code_points(name)
    except ValueError:  # not an emoji file name: split by the name itself
        return name
    return "-".join(f"{c:x}" for c in SPLITS[check_split(split)](points))


def identity_of(name: str) -> str:
    """An image's identity (the emoji up to skin tone and gender), as a string: the identity measure's label."""
    return split_key(name, "identity-v2")


def load_npm_image_set(
    spec: ImageSetSpec,
    resolution: int,
    held_out_fraction: float = 0.1,
    background: tuple[int, int, int] = (255, 255, 255),
    limit: int | None = None,
    split: str = LEGACY_SPLIT,
) -> ImageSet:
    """Decode (and cache as .npz) every image of `spec` at `resolution`; hold out by the named `split`."""
    tag = f"{spec.key}-{spec.package.version}-{resolution}px-bg{'{:02x}{:02x}{:02x}'.format(*background)}"
    cached = cache_dir() / "arrays" / f"{tag}.npz"
    if cached.exists() and limit is None:
        return _load_cached(cached, held_out_fraction, split)
    groups = emoji_groups(spec.groups) if spec.groups else {}
    pattern = re.compile(spec.pattern)
    images, names, categories = [], [], []
    with tarfile.open(fetch_npm(spec.package)) as tar:
        members = sorted((m for m in tar.getmembers() if m.isfile() and pattern.match(m.name)), key=lambda m: m.name)
        if not members:
            raise DataError(f"{spec.package.spec} holds no files matching {spec.pattern}")
        for member in members[:limit]:
            data = tar.extractfile(member).read()
            with Image.open(io.BytesIO(data)) as im:
                rgb = square(to_rgb(im, background), resolution, "pad", background)
            stem = Path(member.name).stem
            images.append(np.asarray(rgb, dtype=np.uint8))
            names.append(stem)
            categories.append(groups.get(base_key(code_points(stem)), "Other"))
    array = np.stack(images)
    if limit is None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(cached, images=array, names=np.array(names), categories=np.array(categories))
    image_set = ImageSet(array, names, categories, np.zeros(len(names), bool), spec.key)
    return _with_split(image_set, held_out_fraction, split)


def _load_cached(path: Path, held_out_fraction: float, split: str) -> ImageSet:
    with np.load(path) as z:
        s = ImageSet(z["images"], list(z["names"]), list(z["categories"]), np.zeros(len(z["names"]), bool))
    s.source = path.stem.split("-")[0]
    return _with_split(s, held_out_fraction, split)


def _with_split(image_set: ImageSet, fraction: float, split: str = LEGACY_SPLIT) -> ImageSet:
    held = [is_held_out(split_key(str(name), split), fraction) for name in image_set.names]
    image_set.held_out = np.array(held, dtype=bool)
    image_set.meta.update(held_out_fraction=fraction, split=split)
    return image_set


def twins_in_training(image_set: ImageSet) -> np.ndarray:
    """Per image: held out, and another image of its identity (a gender or skin-tone variant) is in training.

    Under `identity-v2` this is never true; under `emoji-v1` these are the held-out images with a near-twin
    that the model saw (man cyclist held out, woman cyclist trained on).
    """
    ids = [identity_of(str(n)) for n in image_set.names]
    trained = {k for k, h in zip(ids, image_set.held_out, strict=True) if not h}
    return np.array([bool(h) and k in trained for k, h in zip(ids, image_set.held_out, strict=True)], dtype=bool)


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def load_folder(
    folder: str | Path,
    resolution: int,
    fit: str = "crop",
    held_out_fraction: float = 0.1,
    background: tuple[int, int, int] = (255, 255, 255),
) -> ImageSet:
    """Any folder of images; a sub-folder name becomes the category (ImageFolder convention)."""
    folder = Path(folder)
    paths = list_images(folder)
    if not paths:
        raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {folder}")
    images, names, categories, skipped = [], [], [], []
    for path in paths:
        try:
            with Image.open(path) as im:
                im.load()
                rgb = square(to_rgb(im, background), resolution, fit, background)
        except (OSError, ValueError) as exc:  # unreadable file: report, don't crash a long run
            skipped.append(f"{path.name}: {exc}")
            continue
        rel = path.relative_to(folder)
        images.append(np.asarray(rgb, dtype=np.uint8))
        names.append(str(rel.with_suffix("")))
        categories.append(rel.parts[0] if len(rel.parts) > 1 else "all")
    if not images:
        raise DataError(f"none of the {len(paths)} files under {folder} could be read: {skipped[:3]}")
    s = ImageSet(np.stack(images), names, categories, np.zeros(len(names), bool), str(folder))
    s.meta["skipped"] = skipped
    s.held_out = np.array([is_held_out(n, held_out_fraction) for n in names], dtype=bool)
    return s


def load_image_set(
    source: str, resolution: int, held_out_fraction: float = 0.1, fit: str = "crop", split: str = LEGACY_SPLIT
) -> ImageSet:
    """A registered set by key (`fluent-emoji-3d`) or a folder path (split by file name whatever `split` says).

    `split` defaults to the shipped models' `emoji-v1`, so that measuring them stays on the split they were
    trained on; trainers pass their config's (`identity-v2` for new runs)."""
    check_split(split)
    if source in IMAGE_SETS:
        return load_npm_image_set(IMAGE_SETS[source], resolution, held_out_fraction, split=split)
    if Path(source).is_dir():
        return load_folder(source, resolution, fit, held_out_fraction)
    raise DataError(f"unknown data source {source!r}: use one of {sorted(IMAGE_SETS)} or a folder of images")


def to_tensor_range(images: np.ndarray | Sequence[np.ndarray] | torch.Tensor) -> torch.Tensor:
    """uint8 images -> float tensor (N, 3, H, W) in [-1, 1], the VP models' range. Takes (N, H, W, 3) arrays
    (or a sequence of (H, W, 3) ones), or an (N, 3, H, W) uint8 tensor already in channels-first layout."""
    import torch

    if isinstance(images, torch.Tensor):
        return images.float().div(127.5).sub(1.0)
    array = np.asarray(images)
    return torch.from_numpy(array).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
