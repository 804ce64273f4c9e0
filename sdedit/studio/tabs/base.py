"""What a tab is to the page: its layout, the guide and mask it builds from its own components, its examples.

A tab is built once per page: `layout` creates its components inside its `gr.Tab` and wires the events that
join only them, right under them. `guide` turns its components' values into (guide, mask) when Generate or
the sweep is pressed while it is in front. `receive` puts a result back as its guide ("Use as new guide");
`restore` puts a result's own guide back (a dropped result PNG, a history click). `connect` wires what
joins it to the shared panels (an example that generates at once, the model's palette).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import gradio as gr  # at run time: gradio reads the gr.SelectData hint of connect_examples' handler
from PIL import Image

from ..examples import Example
from ..guides import CANVAS_SIZE

if TYPE_CHECKING:  # the page imports the tabs, not the other way round
    from ..page import Page


class Tab:
    id: str = ""
    label: str = ""
    examples: list[Example] = []  # noqa: RUF012 (a tab sets its own list)

    def layout(self, cfg) -> None:
        """Create the tab's components (inside its `gr.Tab`) and wire the events among them."""
        raise NotImplementedError

    @property
    def guide_inputs(self) -> list[gr.components.Component]:
        """The components `guide` reads."""
        return []

    def guide(self, values: dict) -> tuple[Image.Image | str, Image.Image | None]:
        """(guide, mask) from the values of `guide_inputs` (keyed by component); mask None = change it all."""
        raise NotImplementedError

    def guide_and_strength(self, values: dict) -> tuple:
        """(guide, mask, strength map): a tab with a strength brush returns its map (white = the full t0,
        black = kept exactly); None = the same t0 everywhere."""
        return (*self.guide(values), None)

    def fill_outlines(self, values: dict) -> bool:
        """Whether the tab's canvas fills closed outlines (its guide then carries the fill already)."""
        return False

    @property
    def receive_outputs(self) -> list[gr.components.Component]:
        """The components `receive` may update."""
        return []

    def receive(self, image: Image.Image, canvas_size: int = CANVAS_SIZE) -> dict | None:
        """Updates that make `image` this tab's guide, or None: the first tab takes it instead (`canvas_size`: the
        paint canvas's side for the model in use, `models.paint_canvas_size`)."""
        return None

    @property
    def restore_outputs(self) -> list[gr.components.Component]:
        """The components `restore` may update."""
        return []

    def restore(
        self,
        guide: Image.Image,
        mask: Image.Image | None,
        strength_map: Image.Image | None,
        fill_outlines: bool = False,
    ) -> dict | None:
        """Updates that put a result's guide (and mask, strength map) back as this tab's input, exactly as the
        model got it, so that Generate redoes the result (`fill_outlines`: whether its outlines were filled);
        None when this tab cannot hold it."""
        return None

    def connect(self, page: Page) -> None:
        """Wire the events that join this tab to the shared panels (they exist once every panel is laid out)."""

    def load_example(self, page: Page, index: int) -> dict:
        """The updates one click on example `index` makes: its guide on the tab, its seed and t0 in the controls
        (`examples.settings_updates`), and, for a tab whose click generates at once, what the model gets."""
        raise NotImplementedError

    def connect_examples(self, page: Page, outputs: list):
        """Wire a click on the tab's example gallery: `load_example`'s updates into `outputs` and the controls'
        seed and t0 (every example sets both). Returns the event, for a tab whose click generates at once."""

        def load_example(evt: gr.SelectData) -> dict:
            return self.load_example(page, evt.index)

        outputs = [*outputs, page.results.seed, page.results.strength]
        return self.gallery.select(load_example, None, outputs, api_visibility="private")

    def example_guide(self, page: Page, updates: dict) -> tuple[Image.Image | str, Image.Image | None]:
        """(guide, mask) that the first Generate after an example's click edits, from the click's `updates`
        (`load_example`): what the click shows as the model's guide, else `guide` of the tab's components once
        the click's updates are in."""
        if page.results.guide in updates:  # PNG files of their own (`Page.show_guide`)
            return _opened(updates[page.results.guide]), _opened(updates[page.results.mask])
        return self.guide({c: updates.get(c, c.value) for c in self.guide_inputs})


def _opened(image):
    """A PNG file's image, read now; an image or None as it is."""
    if not isinstance(image, str):
        return image
    with Image.open(image) as im:
        im.load()
        return im
