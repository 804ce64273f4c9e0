"""The Edit tab: paint over a photo; only painted pixels (and the mask-only layer's) may change. The Live
preview sits beside the photo."""

from __future__ import annotations

import gradio as gr
import numpy as np
from PIL import Image

from ...configs import ModelConfig
from ..canvas import canvas_value, follow_settings, live_canvas, read_canvas
from ..examples import Example, gallery_items, load_example_image
from ..guides import bake_strokes, editor_value, photo_guide
from ..ui import examples_gallery
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


def edit_example_value(ex: Example) -> tuple[dict, tuple[np.ndarray, np.ndarray]]:
    """An Edit example as gr.ImageEditor took it: its photo with the strokes baked in, and the (photo, painted)
    pair `photo_guide` finds them with. (The studio's canvas takes the strokes as a layer: `example_canvas`.)"""
    baked = bake_strokes(load_example_image(ex.image), load_example_image(ex.layer, "RGBA"))
    return editor_value(Image.fromarray(baked[1])), baked


def example_canvas(ex: Example) -> tuple[str, dict]:
    """An Edit example for the canvas (its photo, its strokes on the paint layer) and the same as guides read it."""
    photo, strokes = load_example_image(ex.image), load_example_image(ex.layer, "RGBA")
    value = {"background": np.asarray(photo.convert("RGBA")), "layers": [np.asarray(strokes)]}
    return canvas_value(photo, [strokes, None]), value


class EditTab(Tab):
    id, label = "edit", "Edit a photo"

    def layout(self, cfg: ModelConfig) -> None:
        self.canvas = live_canvas(
            canvas_value(load_example_image(EDIT_EXAMPLES[1].image)),
            mode="photo",
            cfg=cfg,
            label="Photo: paint on it, only painted areas change",
            elem_id="edit-editor",
        )
        gr.Markdown(
            "Strokes on the **Paint** layer recolour the photo and mark where it may change. Pick "
            "**Mask only** to mark more area without painting. Everything else stays exactly as it is. "
            "⤒ uploads a photo (or paste or drop one).",
            elem_classes="hint",
        )
        self.gallery = examples_gallery(
            gallery_items(EDIT_EXAMPLES),
            "one click loads one, strokes included, and generates",
            "edit-examples",
        )

    @property
    def guide_inputs(self):
        return [self.canvas]

    def guide(self, values):
        return photo_guide(read_canvas(values[self.canvas]))

    @property
    def receive_outputs(self):
        return [self.canvas]

    def receive(self, image):
        return {self.canvas: canvas_value(image)}

    def connect(self, page) -> None:
        def load_example(evt: gr.SelectData) -> dict:
            """The photo with the example's strokes on the paint layer, plus its guide and mask."""
            value, read = example_canvas(EDIT_EXAMPLES[evt.index])
            guide, mask = photo_guide(read)
            return {self.canvas: value, **page.show_guide(self, guide, mask)}

        page.then_edit(
            self.gallery.select(load_example, None, [self.canvas, *page.guide_outputs], api_visibility="private")
        )
        follow_settings(self.canvas, page)
