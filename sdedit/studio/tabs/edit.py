"""The Edit tab: paint over a photo; only painted pixels (and the mask-only layer's) may change. The Live
preview sits beside the photo."""

from __future__ import annotations

import gradio as gr
import numpy as np
from PIL import Image

from ...configs import ModelConfig
from ..canvas import auto_fill, canvas_update, follow_settings, live_canvas, with_fill
from ..examples import EDIT_EXAMPLES, Example, gallery_items, load_example_image, settings_updates
from ..guides import photo_guide
from ..ui import examples_gallery
from .base import Tab


def example_canvas(ex: Example) -> tuple[dict, dict]:
    """An Edit example for the canvas (its photo, its strokes on the paint layer) and the same as guides read it."""
    photo, strokes = load_example_image(ex.image), load_example_image(ex.layer, "RGBA")
    value = {"background": np.asarray(photo.convert("RGBA")), "layers": [np.asarray(strokes)]}
    return {"background": photo, "layers": [strokes, None], "auto_fill": False}, value


def photo_guide_and_strength(read: dict) -> tuple[Image.Image, Image.Image, Image.Image | None]:
    """(guide, mask, strength map) from the canvas's layers: paint, mask only, strength, and the automatic fill.

    The fill colours the photo as the paint layer does, and its pixels may change. The strength layer's grey
    is each pixel's own t0 as a fraction of t0 (white = the full t0, black = kept exactly); unpainted pixels
    keep the full t0. Its pixels above 0 may change (they join the mask), its pixels at 0 are kept even where
    they cover paint. No strength strokes: no map, as before.
    """
    layers = list(read.get("layers") or [])
    if layers:
        layers[0] = with_fill(layers[0], read.get("fill"))
    strength = layers[2] if len(layers) > 2 else None
    painted = strength is not None and strength[..., 3].any()
    base = {"background": read.get("background"), "layers": layers[:2]}
    if painted:  # levels above 0 mark pixels that may change, like the mask-only layer
        marks = strength.copy()
        marks[..., 3] = np.where((strength[..., 3] > 0) & (strength[..., 0] > 0), 255, 0)
        empty = np.zeros_like(strength)
        base["layers"] = [*layers[:2], *[empty] * (2 - len(layers[:2])), marks]
    guide, mask = photo_guide(base)
    if not painted:
        return guide, mask, None
    level = np.where(strength[..., 3] > 0, strength[..., 0], 255).astype(np.uint8)
    smap = Image.fromarray(level, "L")
    if smap.size != guide.size:
        smap = smap.resize(guide.size, Image.NEAREST)
    return guide, mask, smap


def photo_canvas(
    guide: Image.Image, mask: Image.Image, strength_map: Image.Image | None = None, fill_outlines: bool = False
) -> dict:
    """The canvas that gives back exactly this (guide, mask, strength map) through `photo_guide_and_strength`:
    the guide as the photo, the mask on the mask-only layer, the map's pixels below 1 on the strength layer
    (pixels at 1 left unpainted: unpainted pixels keep the full t0); the Fill outlines switch as `fill_outlines`."""
    size = guide.size
    m = np.asarray(mask.convert("L").resize(size, Image.NEAREST)) > 127
    marks = np.zeros((size[1], size[0], 4), np.uint8)
    marks[m] = 255
    strength = None
    if strength_map is not None:
        level = np.asarray(strength_map.convert("L").resize(size, Image.NEAREST))
        grey = np.zeros((size[1], size[0], 4), np.uint8)
        grey[..., :3] = level[..., None]
        grey[..., 3] = np.where(level < 255, 255, 0)
        strength = Image.fromarray(grey, "RGBA") if grey[..., 3].any() else None
    layers = [None, Image.fromarray(marks, "RGBA"), strength]
    return {"background": guide.convert("RGB"), "layers": layers, "auto_fill": bool(fill_outlines)}


class EditTab(Tab):
    id, label = "edit", "Edit a photo"
    examples = EDIT_EXAMPLES

    def layout(self, cfg: ModelConfig) -> None:
        self.canvas = live_canvas(
            {"background": load_example_image(EDIT_EXAMPLES[1].image)},
            mode="photo",
            cfg=cfg,
            label="Photo: paint on it, only painted areas change",
            elem_id="edit-editor",
        )
        gr.Markdown(
            "Strokes on the **Paint** layer recolour the photo and mark where it may change. Pick "
            "**Mask only** to mark more area without painting. Everything else stays exactly as it is. "
            "**Strength** paints how much each region may change (0 = kept exactly, 1 = the full t0). "
            "The bucket fills a region; **Fill outlines** fills each closed outline of paint strokes with its "
            "colour. ⤒ uploads a photo (or paste or drop one).",
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
        return self.guide_and_strength(values)[:2]

    def guide_and_strength(self, values):
        return photo_guide_and_strength(self.canvas.read(values[self.canvas]))

    def fill_outlines(self, values) -> bool:
        return auto_fill(values[self.canvas])

    @property
    def receive_outputs(self):
        return [self.canvas]

    def receive(self, image, canvas_size=None):
        return {self.canvas: {"background": image, "auto_fill": False}}

    @property
    def restore_outputs(self):
        return [self.canvas]

    def restore(self, guide, mask, strength_map, fill_outlines=False):
        """A result with a mask: its guide as the photo, its mask on the mask-only layer, its map as strokes."""
        if mask is None:
            return None
        value = photo_canvas(guide, mask, strength_map, fill_outlines)
        return {self.canvas: canvas_update(self.canvas, value=value)}

    def load_example(self, page, index: int) -> dict:
        """The photo with the example's strokes on the paint layer, plus its guide and mask."""
        ex = self.examples[index]
        value, read = example_canvas(ex)
        guide, mask = photo_guide(read)
        return {self.canvas: value, **page.show_guide(self, guide, mask), **settings_updates(ex, page)}

    def connect(self, page) -> None:
        page.then_edit(self.connect_examples(page, [self.canvas, *page.guide_outputs]))
        follow_settings(self.canvas, page)
