"""The bundled examples: files under examples/ that one click puts on a tab, with the seed and t0 it sets.

Every example carries a fixed seed and a t0, measured on the embedded model with the app's default settings
by `python -m sdedit examples` (sdedit.choose_examples: per-image realism and L2 over 6 seeds x 4 t0, and one
rule; the scores are in eval/examples.json and docs/quality.md, "The examples' seeds and t0"). A click sets both in the
controls, so the first Generate gives exactly the measured result; the seed stays visible and changeable
("Random" makes it -1).
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from ..configs import REPO_ROOT

EXAMPLES_DIR = REPO_ROOT / "examples"


@dataclass(frozen=True)
class Example:
    """One click in the UI: files under examples/, and the settings that show it off.

    `seed` and `strength` (t0) are what the click sets in the controls; None leaves the control as it is (an
    example a model config lists that was never measured). `colors` and `smoothing` are the Photo -> painting
    simulator's settings for the photo (None: the sliders' defaults): a panda's mouth survives only a lighter
    median filter and more colours than the defaults.
    """

    title: str
    image: str
    layer: str | None = None
    patch: str | None = None
    x: float = 0.5
    y: float = 0.5
    scale: float = 0.4
    seed: int | None = None
    strength: float | None = None
    colors: int | None = None
    smoothing: int | None = None

    @property
    def path(self) -> str:
        return str(EXAMPLES_DIR / self.image)

    @property
    def files(self) -> list[str]:
        """The files under examples/ that it is made of."""
        return [f for f in (self.image, self.layer, self.patch) if f]


# The measured seed and t0 of each example (`python -m sdedit examples` prints these; docs/quality.md, "The
# examples' seeds and t0", has the table and the picks made by eye among the measured candidates).
PAINT_EXAMPLES = [
    Example("Smiley", "paint-smiley.png", seed=4, strength=0.3),  # by eye: the rule's pick (1, 0.4) frowns
    Example("Heart", "paint-heart.png", seed=0, strength=0.5),
    Example("Apple", "paint-apple.png", seed=4, strength=0.5),
    Example("Tree", "paint-tree.png", seed=5, strength=0.5),
]
EDIT_EXAMPLES = [
    Example("Blue car", "photo-car.png", layer="photo-car-body-strokes.png", seed=3, strength=0.2),
    Example("Cool cat", "photo-cat.png", layer="photo-cat-glasses-strokes.png", seed=4, strength=0.3),
    Example("Yellow tulip", "photo-tulip.png", layer="photo-tulip-petals-strokes.png", seed=5, strength=0.2),
]
# A Paint drawing pasted large onto a plain scene: the model shades the flat shape and keeps the scene.
COMPOSITE_EXAMPLES = [
    Example("Tree in the meadow", "comp-meadow.png", patch="paint-tree.png", y=0.48, scale=0.62, seed=3, strength=0.5),
    Example("Heart on the ice", "comp-ice.png", patch="paint-heart.png", y=0.45, scale=0.62, seed=5, strength=0.5),
    Example("Apple on the ice", "comp-ice.png", patch="paint-apple.png", y=0.45, scale=0.62, seed=5, strength=0.5),
]
# The cat's painting is smoothed less than the automatic 23 px median, which wipes out its eyes and whiskers.
PAINTING_EXAMPLES = [
    Example("Cat", "photo-cat.png", seed=3, strength=0.5, smoothing=9),
    Example("Car", "photo-car.png", seed=5, strength=0.5),
    Example("Tulip", "photo-tulip.png", seed=0, strength=0.4),
    # by eye: at the rule's pick (1, 0.4) the mouth is smeared
    Example("Panda", "photo-panda.png", seed=1, strength=0.3, colors=10, smoothing=4),
]


def paint_example(rel: str) -> Example:
    """The Paint example for a model config's file (a path from the repository root): the measured one when
    there is one, else a plain one titled after the file."""
    path = REPO_ROOT / rel
    image = str(path.relative_to(EXAMPLES_DIR)) if path.is_relative_to(EXAMPLES_DIR) else rel
    for ex in PAINT_EXAMPLES:
        if ex.image == image:
            return ex
    return Example(path.stem.replace("strokes-", "").replace("-", " ").capitalize(), image)


def load_example_image(rel: str | None, mode: str = "RGB") -> Image.Image | None:
    if rel is None:
        return None
    with Image.open(EXAMPLES_DIR / rel) as im:
        return im.convert(mode)


def gallery_items(examples: list[Example]) -> list[tuple[str, str]]:
    """(thumbnail path, caption) pairs for an examples gallery."""
    return [(ex.path, ex.title) for ex in examples]


def settings_updates(ex: Example, page) -> dict:
    """The example's seed and t0 as updates of the page's controls (a fixed seed: the first Generate gives the
    measured result)."""
    updates = {}
    if ex.seed is not None:
        updates[page.results.seed] = ex.seed
    if ex.strength is not None:
        updates[page.results.strength] = ex.strength
    return updates
