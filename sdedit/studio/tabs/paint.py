"""The Paint tab: flat colour strokes on a blank canvas, with the Live preview beside it; the whole canvas is
the guide (no mask). Its canvas's guide help is on by default: closed outlines fill with their stroke colour (the
model follows areas of colour, not thin lines) and the drawing's thin and small details start at half the t0
(`sdedit.details`); examples and results put on it turn that off, so that they stay as they are."""

from __future__ import annotations

from ...configs import REPO_ROOT, ModelConfig, default_config
from ..canvas import auto_fill, canvas_update, follow_settings, live_canvas, with_fill
from ..examples import Example, gallery_items, load_example_image, paint_example, settings_updates
from ..guides import CANVAS_SIZE, blank_canvas, paint_guide, to_canvas
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
            {"background": blank_canvas()},
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
        read = self.canvas.read(values[self.canvas])
        paint = read["layers"][0] if read["layers"] else None
        layers = [x for x in (with_fill(paint, read["fill"]),) if x is not None]
        return paint_guide({"background": read["background"], "layers": layers}), None

    def fill_outlines(self, values) -> bool:
        return auto_fill(values[self.canvas])

    @property
    def receive_outputs(self):
        return [self.canvas]

    def receive(self, image, canvas_size=CANVAS_SIZE):
        return {self.canvas: {"background": to_canvas(image, canvas_size), "auto_fill": False}}

    @property
    def restore_outputs(self):
        return [self.canvas]

    def restore(self, guide, mask, strength_map, fill_outlines=False):
        """A result without a mask: its guide as the canvas, at its own size (not refitted), so it is exact; the
        Fill outlines switch as the result had it."""
        if mask is not None or strength_map is not None:
            return None
        value = {"background": guide.convert("RGB"), "auto_fill": bool(fill_outlines)}
        return {self.canvas: canvas_update(self.canvas, value=value)}

    def load_example(self, page, index: int) -> dict:
        """The example on the canvas, and as the guide to edit right away (no mask: all of it may change)."""
        ex = self.examples[index]
        canvas = to_canvas(load_example_image(ex.image))
        value = {"background": canvas, "auto_fill": False}  # an example is a finished painting: kept as it is
        return {self.canvas: value, **page.show_guide(self, canvas, None), **settings_updates(ex, page)}

    def connect(self, page) -> None:
        page.then_edit(self.connect_examples(page, [self.canvas, *page.guide_outputs]))
        follow_settings(self.canvas, page)
