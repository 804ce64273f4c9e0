"""The Edit tab: paint over a photo; only painted pixels (and the mask-only layer's) may change."""

from __future__ import annotations

import gradio as gr
import numpy as np
from PIL import Image

from ...configs import ModelConfig
from ..examples import Example, gallery_items, load_example_image
from ..guides import bake_strokes, editor_value, photo_guide
from ..ui import examples_gallery, image_editor
from .base import Tab

EDIT_EXAMPLES = [
    Example(
        "Blue car",
        "photo-car.png",
        layer="photo-car-strokes.png",
    ),
    Example(
        "Cat with a bow",
        "photo-cat.png",
        layer="photo-cat-strokes.png",
    ),
    Example(
        "Rosy panda",
        "photo-panda.png",
        layer="photo-panda-strokes.png",
    ),
]
# The editor's layers: colour strokes (change the guide and the mask), then a mask-only brush.
EDIT_LAYERS = ["Paint strokes", "Mask only (colour ignored)"]


def edit_example_value(ex: Example) -> tuple[dict, tuple[np.ndarray, np.ndarray]]:
    """An Edit example for the editor: its photo with the strokes baked in, and the (photo, painted) pair."""
    baked = bake_strokes(load_example_image(ex.image), load_example_image(ex.layer, "RGBA"))
    return editor_value(Image.fromarray(baked[1])), baked


class EditTab(Tab):
    id, label = "edit", "Edit a photo"

    def layout(self, cfg: ModelConfig) -> None:
        self.baked = gr.State(None)  # (photo, photo with strokes) of a loaded example: see photo_guide
        self.editor = image_editor(
            cfg,
            editor_value(load_example_image(EDIT_EXAMPLES[1].image)),
            "Photo: paint on it, only painted areas change",
            "edit-editor",
            layers=gr.LayerOptions(allow_additional_layers=False, layers=EDIT_LAYERS),
        )
        gr.Markdown(
            "Strokes on the **Paint strokes** layer recolour the photo and mark where it may change. "
            "Pick the **Mask only** layer (bottom right of the editor) to mark more area without "
            "painting. Everything else stays exactly as it is.",
            elem_classes="hint",
        )
        self.gallery = examples_gallery(
            gallery_items(EDIT_EXAMPLES),
            "one click loads one, strokes included, and generates",
            "edit-examples",
        )

    @property
    def guide_inputs(self):
        return [self.editor, self.baked]

    def guide(self, values):
        return photo_guide(values[self.editor], values[self.baked])

    @property
    def editors(self):
        return [self.editor]

    @property
    def receive_outputs(self):
        return [self.editor, self.baked]

    def receive(self, image):
        return {self.editor: editor_value(image), self.baked: None}

    def connect(self, page) -> None:
        def load_example(evt: gr.SelectData) -> dict:
            """The photo with the example's strokes baked in (see guides.editor_value), plus its guide and mask."""
            value, baked = edit_example_value(EDIT_EXAMPLES[evt.index])
            guide, mask = photo_guide(value, baked)
            return {self.editor: value, self.baked: baked, **page.show_guide(self, guide, mask)}

        page.then_edit(
            self.gallery.select(
                load_example, None, [self.editor, self.baked, *page.guide_outputs], api_visibility="private"
            )
        )
