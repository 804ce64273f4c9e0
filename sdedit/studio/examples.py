"""The bundled examples: files under examples/ that one click puts on a tab. Each tab lists its own."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from ..configs import REPO_ROOT

EXAMPLES_DIR = REPO_ROOT / "examples"


@dataclass(frozen=True)
class Example:
    """One click in the UI: files under examples/, and the settings that show it off."""

    title: str
    image: str
    layer: str | None = None
    patch: str | None = None
    x: float = 0.5
    y: float = 0.5
    scale: float = 0.4

    @property
    def path(self) -> str:
        return str(EXAMPLES_DIR / self.image)


def load_example_image(rel: str | None, mode: str = "RGB") -> Image.Image | None:
    if rel is None:
        return None
    with Image.open(EXAMPLES_DIR / rel) as im:
        return im.convert(mode)


def gallery_items(examples: list[Example]) -> list[tuple[str, str]]:
    """(thumbnail path, caption) pairs for an examples gallery."""
    return [(ex.path, ex.title) for ex in examples]
