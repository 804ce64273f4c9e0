"""The Composite tab: paste a patch onto a base image; only the pasted patch may change (the model blends it)."""

from __future__ import annotations

import gradio as gr

from ...configs import ModelConfig
from ..examples import COMPOSITE_EXAMPLES, gallery_items, load_example_image, settings_updates
from ..guides import composite_guide
from ..ui import examples_gallery, friendly
from .base import Tab


@friendly
def composite(base, patch, x, y, scale, cutout):
    """Paste the patch onto the base: the guide, and the mask the patch covers (the `/composite` endpoint)."""
    return composite_guide(base, patch, x, y, scale, cutout)


class CompositeTab(Tab):
    id, label = "composite", "Composite"
    examples = COMPOSITE_EXAMPLES

    def layout(self, cfg: ModelConfig) -> None:
        first = COMPOSITE_EXAMPLES[0]
        base, patch = load_example_image(first.image), load_example_image(first.patch, "RGBA")
        with gr.Row():
            self.base = gr.Image(
                base,
                type="filepath",  # decoded by the studio within its limits, not by Gradio
                image_mode=None,
                format="png",
                label="Base image",
                height=190,
                elem_id="comp-base",
            )
            self.patch = gr.Image(
                patch,
                type="filepath",
                image_mode=None,
                format="png",
                label="Patch to paste",
                height=190,
                elem_id="comp-patch",
            )
            self.preview = gr.Image(
                composite(base, patch, first.x, first.y, first.scale, True)[0],
                label="Preview",
                format="png",
                height=190,
                interactive=False,
                elem_id="comp-preview",
            )
        with gr.Row():
            self.x = gr.Slider(0, 1, first.x, step=0.01, label="x (left → right)", min_width=120)
            self.y = gr.Slider(0, 1, first.y, step=0.01, label="y (top → bottom)", min_width=120)
            self.scale = gr.Slider(0.05, 1.0, first.scale, step=0.01, label="Size", min_width=120)
        self.cutout = gr.Checkbox(True, label="Cut out the patch (use its transparency, or drop its plain background)")
        gr.Markdown("Only the pasted patch changes: the model blends it into the base.", elem_classes="hint")
        self.mask = gr.Image(visible=False, format="png", image_mode="L", label="Mask")
        self.gallery = examples_gallery(
            gallery_items(COMPOSITE_EXAMPLES), "one click pastes one and generates", "composite-examples"
        )

        gr.on(
            [
                self.base.change,
                self.patch.change,
                self.x.release,
                self.y.release,
                self.scale.release,
                self.cutout.input,
            ],
            composite,
            self.guide_inputs,
            [self.preview, self.mask],
            api_name="composite",
            show_progress="hidden",
        )

    @property
    def guide_inputs(self):
        return [self.base, self.patch, self.x, self.y, self.scale, self.cutout]

    def guide(self, values):
        return composite_guide(*(values[c] for c in self.guide_inputs))

    def load_example(self, page, index: int) -> dict:
        """The base, the patch and where it goes (cut out), the composite as the guide to edit right away (the
        pasted patch its mask), and the example's seed and t0."""
        ex = self.examples[index]
        base, patch = load_example_image(ex.image), load_example_image(ex.patch, "RGBA")
        guide, mask = composite(base, patch, ex.x, ex.y, ex.scale, True)
        return {
            self.base: base,
            self.patch: patch,
            self.x: ex.x,
            self.y: ex.y,
            self.scale: ex.scale,
            self.cutout: True,
            self.preview: guide,
            self.mask: mask,
            **page.show_guide(self, guide, mask),
            **settings_updates(ex, page),
        }

    def connect(self, page) -> None:
        inputs = [self.base, self.patch, self.x, self.y, self.scale, self.cutout, self.preview, self.mask]
        page.then_edit(self.connect_examples(page, [*inputs, *page.guide_outputs]))

    @property
    def receive_outputs(self):
        return [self.base]

    def receive(self, image, canvas_size=None):
        return {self.base: image}
