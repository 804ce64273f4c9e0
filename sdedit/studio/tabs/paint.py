"""The Paint tab: flat colour strokes on a blank canvas, with the Live preview beside it; the whole canvas is
the guide (no mask)."""

from __future__ import annotations

import gradio as gr

from ...configs import REPO_ROOT, ModelConfig, default_config
from ..canvas import canvas_update, canvas_value, follow_settings, live_canvas, read_canvas
from ..examples import EXAMPLES_DIR, Example, gallery_items, load_example_image
from ..guides import blank_canvas, paint_guide, to_canvas
from ..ui import examples_gallery
from .base import Tab


def paint_examples(cfg: ModelConfig | None = None) -> list[Example]:
    """The model config's stroke paintings (the embedded default lists four)."""
    cfg = cfg or default_config()
    out = []
    for rel in cfg.examples or default_config().examples:
        path = REPO_ROOT / rel
        if path.is_file():
            title = path.stem.replace("strokes-", "").replace("-", " ").capitalize()
            out.append(
                Example(title, str(path.relative_to(EXAMPLES_DIR)) if path.is_relative_to(EXAMPLES_DIR) else rel)
            )
    return out


class PaintTab(Tab):
    id, label = "paint", "Paint"

    def layout(self, cfg: ModelConfig) -> None:
        self.examples = paint_examples(cfg)
        self.canvas = live_canvas(
            canvas_value(blank_canvas()),
            mode="paint",
            cfg=cfg,
            label="Canvas: paint flat colour strokes",
            elem_id="paint-editor",
        )
        self.gallery = examples_gallery(
            gallery_items(self.examples), "one click paints one and generates", "paint-examples"
        )

    @property
    def guide_inputs(self):
        return [self.canvas]

    def guide(self, values):
        return paint_guide(read_canvas(values[self.canvas], layers=1)), None

    @property
    def receive_outputs(self):
        return [self.canvas]

    def receive(self, image):
        return {self.canvas: canvas_value(to_canvas(image))}

    @property
    def restore_outputs(self):
        return [self.canvas]

    def restore(self, guide, mask, strength_map):
        """A result without a mask: its guide as the canvas, at its own size (not refitted), so it is exact."""
        if mask is not None or strength_map is not None:
            return None
        return {self.canvas: canvas_update(self.canvas, value=canvas_value(guide.convert("RGB")))}

    def connect(self, page) -> None:
        def load_example(evt: gr.SelectData) -> dict:
            """The example on the canvas, and as the guide to edit right away (no mask: all of it may change)."""
            canvas = to_canvas(load_example_image(self.examples[evt.index].image))
            return {self.canvas: canvas_value(canvas), **page.show_guide(self, canvas, None)}

        page.then_edit(
            self.gallery.select(load_example, None, [self.canvas, *page.guide_outputs], api_visibility="private")
        )
        follow_settings(self.canvas, page)
