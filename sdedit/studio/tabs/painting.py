"""The Photo -> painting tab: the paper's stroke simulator turns a photo into flat colour strokes, the guide."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import gradio as gr
from PIL import Image

from ...configs import ModelConfig
from ...errors import InputError
from ..examples import PAINTING_EXAMPLES, gallery_items, load_example_image, settings_updates
from ..guides import make_painting, to_pil
from ..ui import examples_gallery, friendly
from .base import Tab

_PAINTED: OrderedDict[tuple, Image.Image] = OrderedDict()
_PAINTED_LOCK = threading.Lock()


@friendly
def painting(photo, colors, smoothing, blockiness):
    """Photo -> flat colour strokes (the paper's stroke simulator; the `/painting` endpoint).

    The last few paintings are kept by the photo's pixels and the settings: an example's click paints its
    photo to edit it at once, and the photo's change event that follows finds it done instead of painting
    it again (about a second of median filter for a 256 px photo on a small CPU).
    """
    image = to_pil(photo, "photo") if photo is not None else None
    key = None
    if image is not None:
        pixels = hashlib.sha1(image.tobytes()).hexdigest()
        key = (pixels, image.size, image.mode, colors, smoothing, blockiness)
        with _PAINTED_LOCK:
            if key in _PAINTED:
                _PAINTED.move_to_end(key)
                return _PAINTED[key].copy()
    out = make_painting(image, colors, smoothing, blockiness)
    if key is not None:
        with _PAINTED_LOCK:
            _PAINTED[key] = out.copy()
            while len(_PAINTED) > 8:
                _PAINTED.popitem(last=False)
    return out


class PaintingTab(Tab):
    id, label = "painting", "Photo → painting"
    examples = PAINTING_EXAMPLES

    def layout(self, cfg: ModelConfig) -> None:
        photo = load_example_image(PAINTING_EXAMPLES[0].image)
        with gr.Row():
            self.photo = gr.Image(
                photo,
                type="filepath",
                image_mode=None,
                format="png",
                label="Photo",
                height=230,
                elem_id="pt-photo",
            )
            self.painting = gr.Image(
                make_painting(photo),
                type="pil",
                format="png",
                label="Simulated strokes",
                height=230,
                interactive=False,
                elem_id="pt-painting",
            )
        with gr.Row():
            self.colors = colors = gr.Slider(2, 32, 6, step=1, label="Colours", min_width=120)
            self.smoothing = smoothing = gr.Slider(0, 31, 0, step=2, label="Smoothing (0 = auto)", min_width=120)
            self.block = block = gr.Slider(1, 16, 1, step=1, label="Blockiness", min_width=120)
        self.send_btn = gr.Button("Send to canvas → Paint", elem_id="send-to-canvas")
        gr.Markdown(
            "The paper's stroke simulator: a median filter removes detail, then the colours are "
            "reduced to a few flat ones. **Generate** turns this painting back into a picture.",
            elem_classes="hint",
        )
        self.gallery = examples_gallery(
            gallery_items(PAINTING_EXAMPLES), "one click paints a photo and generates", "painting-examples"
        )

        gr.on(
            [self.photo.change, colors.release, smoothing.release, block.release],
            painting,
            [self.photo, colors, smoothing, block],
            self.painting,
            api_name="painting",
            show_progress="minimal",
        )

    @property
    def guide_inputs(self):
        return [self.painting]

    def guide(self, values):
        if values[self.painting] is None:
            raise InputError("make a painting from a photo first (or click an example)")
        return values[self.painting], None

    def load_example(self, page, index: int) -> dict:
        """The photo, the simulator's settings it was measured with (the example's own, or the sliders'
        defaults), its painting as the guide to edit right away, and the example's seed and t0."""
        ex = self.examples[index]
        sliders = {self.colors: ex.colors, self.smoothing: ex.smoothing, self.block: None}
        settings = {slider: slider.value if value is None else value for slider, value in sliders.items()}
        photo = load_example_image(ex.image)
        painted = painting(photo, settings[self.colors], settings[self.smoothing], settings[self.block])
        return {
            self.photo: photo,
            **settings,
            self.painting: painted,
            **page.show_guide(self, painted, None),
            **settings_updates(ex, page),
        }

    def connect(self, page) -> None:
        inputs = [self.photo, self.colors, self.smoothing, self.block, self.painting]
        page.then_edit(self.connect_examples(page, [*inputs, *page.guide_outputs]))

        def send_to_canvas(image, store, made_by, model) -> dict:
            """The painting onto the Paint tab's canvas (brought to the front with its own results), to paint on
            it or generate from it."""
            if image is None:
                raise gr.Error("Make a painting first.")
            return page.show_result(to_pil(image), "paint", store, made_by, front=self.id, model=model)

        states = [page.tab_results.store, page.tab_results.made_by, page.controls.loaded_model]
        self.send_btn.click(send_to_canvas, [self.painting, *states], page.result_outputs, api_visibility="private")
