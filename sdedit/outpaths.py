"""Where the command line writes its images: `--out` is a file, a pattern or a folder.

- A path with an image extension (`result.png`) is the file of the one result.
- A pattern (`result-{i}.png`, `out/{seed}.png`) names one file per result: `{i}` is the result's index
  (0, 1, ...), `{seed}` its seed. One result may use a pattern too.
- Anything else (`results/`, `out`) is a folder, and an existing folder stays one even if its name ends
  in `.png`: the files in it are named by the command.

An image-extension path without a pattern for several results is refused before the model runs, in words
that say how to name them. PNG files carry their settings (`sdedit.recall`); JPEG and WebP files do not.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
FIELDS = ("i", "seed")


@dataclass(frozen=True)
class Target:
    """What `--out` names: a folder (`folder`), or one file per result (`pattern`, with {i}/{seed} or none)."""

    folder: Path | None = None
    pattern: str | None = None

    def files(self, seeds: list[int]) -> list[Path]:
        """The file of each result, in order (a target that names files, not a folder)."""
        if self.pattern is None:
            raise ValueError("a folder target names no files")
        if not _fields(self.pattern):  # a plain file name: taken as it is (braces and all)
            return [Path(self.pattern)] * len(seeds)
        return [Path(self.pattern.format(i=i, seed=seed)) for i, seed in enumerate(seeds)]


def _fields(text: str) -> list[str]:
    try:
        return [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]
    except ValueError as exc:
        raise InputError(f"--out {text!r} is not a valid pattern ({exc}): use {{i}} or {{seed}}") from None


def target(out: str | Path, count: int, option: str = "--out", patterns: bool = True) -> Target:
    """What `out` names for `count` results (the module's doc says how); an InputError, before anything runs,
    for one file asked to hold several results, a pattern field other than {i} and {seed}, or a pattern
    without an image extension. `patterns=False`: a command with one picture to write (a folder or a file)."""
    text = str(out)
    fields = _fields(text)
    suffix = Path(text).suffix.lower()
    if fields and not patterns:
        raise InputError(f"{option} {text!r}: this command takes a folder or one image file, not a pattern")
    if fields:
        unknown = sorted({"{" + f + "}" for f in fields if f not in FIELDS})
        if unknown:
            raise InputError(
                f"{option} {text!r} uses {', '.join(unknown)}: a pattern may use {{i}} (0, 1, ...) and {{seed}}"
            )
        if suffix not in IMAGE_EXTENSIONS:
            raise InputError(f"{option} {text!r} is a pattern: it must end in {', '.join(IMAGE_EXTENSIONS)}")
        return Target(pattern=text)
    if suffix in IMAGE_EXTENSIONS and not Path(text).is_dir():
        if count > 1:
            stem = text[: -len(suffix)]
            raise InputError(
                f"{option} {text!r} names one file, but this makes {count} images: use a pattern such as "
                f"'{stem}-{{i}}{suffix}' or '{stem}-{{seed}}{suffix}', or a folder"
            )
        return Target(pattern=text)
    return Target(folder=Path(text))
