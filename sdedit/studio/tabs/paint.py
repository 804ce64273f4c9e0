"""The Paint tab: flat colour strokes on a blank canvas, with the Live preview beside it; the whole canvas is
the guide (no mask)."""

from __future__ import annotations

from ...configs import REPO_ROOT, ModelConfig, default_config
from ..canvas import canvas_update, canvas_value, follow_settings, live_canvas, read_canvas
from ..examples import Example, gallery_items, load_example_image, paint_example, settings_updates
from ..guides import blank_canvas, paint_guide, to_canvas
from ..ui import examples_gallery
from .base import Tab


def paint_examples(cfg: ModelConfig | None = None) -> list[Example]:
    """The model config's stroke paintings (the embedded default lists four), with their measured seed and t0
    (`examples.PAINT_EXAMPLES`)."""
    cfg = cfg or default_config()
    return [paint_example(rel) for rel in cfg.examples or default_config().examples if (REPO_ROOT / rel).is_file()]


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

    def load_example(self, page, index: int) -> dict:
        """The example on the canvas, and as the guide to edit right away (no mask: all of it may change)."""
        ex = self.examples[index]
        canvas = to_canvas(load_example_image(ex.image))
        return {self.canvas: canvas_value(canvas), **page.show_guide(self, canvas, None), **settings_updates(ex, page)}

    def connect(self, page) -> None:
        page.then_edit(self.connect_examples(page, [self.canvas, *page.guide_outputs]))
        follow_settings(self.canvas, page)
