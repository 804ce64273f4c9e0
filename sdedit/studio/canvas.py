"""The studio's own paint canvas, with the Live preview beside it: `LiveCanvas`, a `gr.HTML` component of our own.

Why not gr.ImageEditor: gradio 6.31's editor sends its value about 1.1 s after mouse-up (its front end waits
out a 1 s debounce), too late for a preview that follows the brush. This canvas keeps the editor's tools
(the model's palette and any colour, brush sizes, eraser, undo, clear, upload / paste / drop, and for a photo
a paint layer, a mask-only layer and a strength layer), adds a bucket, automatic filling of closed outlines
and a hint for thin lines (`sdedit.outlines`, the same rule pixel for pixel), and, on pointer-up, sends its
picture straight to the Python function `sdedit.studio.live.preview` (a gr.HTML server function), then shows
the answer beside the canvas.

The page's code is in `static/` (canvas.html, canvas.css, canvas.js, read once at import). Everything it needs
to know comes in as props, set in Python: `mode` ("paint" or "photo"), `palette`, `live` (the settings the
preview follows, a text model's prompt included), the paint canvas's size (the model's, `models.paint_canvas_size`:
256 px, 512 for Stable Diffusion), a photo's largest side on the page (`limits.MAX_PHOTO_SIDE`),
the default brush size (the model config's `brush_size`), whether it fills outlines by default, the hint's
words (`outlines.HINT`) and the fill rule's constants (`outline_rule`).

Its value is a JSON string, kept current after every change:
`{"background": <PNG data URL>, "layers": [<paint>, <mask only>, <strength>], "fill": <the automatic fill>,
"auto_fill": <the switch>, "width": W, "height": H}` (Paint has the paint layer only). Data URLs only: a
value never names a file on the server. The component reads it itself (`preprocess`: RGBA arrays, missing
layers transparent) and writes it from Python images (`postprocess`: {"background", "layers", "fill",
"auto_fill"} or a single image); a value without "auto_fill" leaves the switch as it is.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image

from .. import outlines
from ..configs import ModelConfig
from ..errors import InputError, SDEditError
from . import limits, live
from .guides import CANVAS_SIZE

MODES = ("paint", "photo")
MAX_VALUE_CHARS = int(limits.MAX_REQUEST_MB * 1e6)
DEFAULT_BRUSH_SIZE = 10  # px on the 256 px paint canvas, when the model's config names none
STATIC = Path(__file__).resolve().parent / "static"
HTML, CSS, JS = ((STATIC / f"canvas.{ext}").read_text(encoding="utf-8") for ext in ("html", "css", "js"))
_PNG_URL = "data:image/png;base64,"
SERVER_FUNCTIONS = (live.preview, live.policy)  # what the page calls: `server.preview(...)`, `server.policy(...)`


def outline_rule() -> dict:
    """The fill rule's constants for the page's copy of it (`sdedit.outlines`), so that they live in one place."""
    return {
        "paint_threshold": outlines.PAINT_THRESHOLD,
        "max_hole": outlines.MAX_HOLE,
        "gap_at_256": outlines.gap_for(256),
        "thin_width": outlines.THIN_WIDTH,
        "thin_share": outlines.THIN_SHARE,
        "thin_min_painted": outlines.THIN_MIN_PAINTED,
    }


# ----- the value: Python images <-> the page's JSON ----------------------------------------------------------


def _data_url(image: Image.Image | str | None) -> str | None:
    if image is None or isinstance(image, str):  # a data URL already (a value read back from the page)
        return image
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return _PNG_URL + base64.b64encode(buf.getvalue()).decode("ascii")


def canvas_value(background=None, layers: list | None = None, fill=None, auto_fill: bool | None = None) -> str:
    """The page's JSON for a background (RGB), optional RGBA layers (paint, mask only, strength) and fill layer;
    `auto_fill` sets the canvas's Fill outlines switch (None: left as it is)."""
    if background is not None and not isinstance(background, str):
        background = background if isinstance(background, Image.Image) else Image.fromarray(np.asarray(background))
        size = background.size
        background = background.convert("RGB")
    else:
        size = (None, None)
    out = {
        "background": _data_url(background),
        "layers": [None if layer is None else _data_url(_rgba_image(layer)) for layer in layers or []],
        "fill": None if fill is None else _data_url(_rgba_image(fill)),
        "width": size[0],
        "height": size[1],
    }
    if auto_fill is not None:
        out["auto_fill"] = bool(auto_fill)
    return json.dumps(out)


def _rgba_image(layer):
    if isinstance(layer, str):
        return layer
    return (layer if isinstance(layer, Image.Image) else Image.fromarray(np.asarray(layer))).convert("RGBA")


def _rgba(obj, what: str) -> np.ndarray | None:
    """A layer of the value as (H, W, 4) uint8: a PNG data URL (from the page), a PIL image or an array."""
    if isinstance(obj, Image.Image):
        return np.asarray(obj.convert("RGBA"))
    if isinstance(obj, np.ndarray):
        return np.asarray(Image.fromarray(obj.astype(np.uint8)).convert("RGBA"))
    data = live.decode_data_url(obj, what, MAX_VALUE_CHARS)
    if data is None:
        return None
    from ..imaging import load_image

    return np.asarray(load_image(data, what, limits.APP_LIMITS.image).convert("RGBA"))


def read_canvas(value, layers: int = 2) -> dict:
    """The canvas's value -> {"background": RGBA array or None, "layers": [RGBA arrays], "fill": RGBA array or
    None, "auto_fill": bool} (the editor-style dict `guides.paint_guide` / `guides.photo_guide` take).

    `value`: the page's JSON, or a dict of the same keys holding data URLs, PIL images or arrays, or an image
    (a background alone). Missing layers come back fully transparent (not None), so that layer i is always
    layer i.
    """
    if isinstance(value, dict):
        data = value
    elif isinstance(value, (Image.Image, np.ndarray)):
        data = {"background": value}
    elif not value:
        data = {}
    else:
        if not isinstance(value, str) or len(value) > MAX_VALUE_CHARS:
            raise InputError("the canvas could not be read (too large or not text)")
        try:
            data = json.loads(value)
        except ValueError:
            raise InputError("the canvas could not be read") from None
        if not isinstance(data, dict):
            raise InputError("the canvas could not be read")
    bg = _rgba(data.get("background"), "canvas")
    raw = data.get("layers") or []
    if not isinstance(raw, list):
        raise InputError("the canvas could not be read (layers)")
    out = []
    for i in range(min(len(raw), layers)):
        layer = _rgba(raw[i], "canvas layer")
        if layer is None and bg is not None:
            layer = np.zeros((*bg.shape[:2], 4), np.uint8)
        if layer is not None:
            out.append(layer)
    fill = _rgba(data.get("fill"), "canvas fill")
    return {"background": bg, "layers": out, "fill": fill, "auto_fill": data.get("auto_fill") is True}


def auto_fill(value) -> bool:
    """Whether the canvas's Fill outlines switch is on in `value` (any form `read_canvas` takes), without
    decoding its images."""
    if isinstance(value, str) and value:
        try:
            value = json.loads(value)
        except ValueError:
            return False
    return isinstance(value, dict) and value.get("auto_fill") is True


def with_fill(layer: np.ndarray | None, fill: np.ndarray | None) -> np.ndarray | None:
    """A layer with the automatic fill on top (the fill's pixels are opaque and replace what is under them)."""
    if fill is None or not fill[..., 3].any():
        return layer
    if layer is None:
        return fill
    return np.where(fill[..., 3:4] > 0, fill, layer)


# ----- the component ----------------------------------------------------------------------------------------


class LiveCanvas(gr.HTML):
    """A paint canvas (mode "paint") or a photo with paint, mask-only and strength layers (mode "photo"), with
    the Live preview beside it.

    As an input it gives `read_canvas`'s dict; as an output it takes a value for `canvas_value` (a dict of
    "background", "layers", "fill", "auto_fill", or a single image). Gradio rebuilds the component from its
    constructor's arguments when a prop is updated, so everything it needs is an argument (`canvas_update`).
    """

    def __init__(
        self,
        value=None,
        *,
        mode: str = "paint",
        label_text: str = "Canvas",
        palette: list[str] | tuple[str, ...] = (),
        live: dict | None = None,
        canvas_size: int = CANVAS_SIZE,
        photo_side: int = limits.MAX_PHOTO_SIDE,
        brush_size: int = DEFAULT_BRUSH_SIZE,
        auto_fill: bool | None = None,
        hint: str = outlines.HINT,
        rule: dict | None = None,
        **kwargs,
    ):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        kwargs.setdefault("elem_classes", ["live-canvas"])
        super().__init__(
            value=value,
            html_template=HTML,
            css_template=CSS,
            js_on_load=JS,
            server_functions=list(SERVER_FUNCTIONS),
            mode=mode,
            label_text=label_text,
            palette=list(palette),
            live=live or {},
            canvas_size=int(canvas_size),
            photo_side=int(photo_side),
            brush_size=int(brush_size),
            auto_fill=(mode == "paint") if auto_fill is None else bool(auto_fill),
            hint=hint,
            rule=rule or outline_rule(),
            **kwargs,
        )

    @property
    def layer_count(self) -> int:
        return 3 if self.props.get("mode") == "photo" else 1

    def preprocess(self, payload) -> dict:
        """The page's JSON -> `read_canvas`'s dict; an unreadable value is an error in words."""
        try:
            return read_canvas(payload, layers=self.layer_count)
        except SDEditError as exc:
            raise gr.Error(str(exc), title="Please check", print_exception=False) from None

    def postprocess(self, value) -> str | None:
        """A Python value (see the class) -> the page's JSON; a JSON string passes as it is."""
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, dict):
            return canvas_value(value.get("background"), value.get("layers"), value.get("fill"), value.get("auto_fill"))
        return canvas_value(value)

    def read(self, value) -> dict:
        """`preprocess` for any form of the value (the page's JSON, or what `postprocess` takes)."""
        return read_canvas(value, layers=self.layer_count)

    def api_info(self) -> dict:
        return {
            "type": "string",
            "description": 'JSON: {"background": PNG data URL, "layers": [PNG data URLs], "fill": PNG data URL}',
        }

    def example_payload(self) -> str:
        return canvas_value(Image.new("RGB", (8, 8), "white"))

    def example_value(self) -> dict:
        return {"background": Image.new("RGB", (8, 8), "white")}


def live_canvas(value, *, mode: str, cfg: ModelConfig, label: str, elem_id: str) -> LiveCanvas:
    """The page's canvas for a tab: the model's palette, brush size and canvas size, the Live preview on its
    settings."""
    from .models import paint_canvas_size

    d = cfg.defaults
    text = (None, None, None) if not cfg.takes_text else ("", "", d.guidance_scale)
    return LiveCanvas(
        value,
        mode=mode,
        label_text=label,
        palette=list(cfg.palette),
        live=live_settings(cfg.name, d.strength, -1, 0, 2, *text),
        canvas_size=paint_canvas_size(cfg),
        brush_size=getattr(cfg, "brush_size", DEFAULT_BRUSH_SIZE) or DEFAULT_BRUSH_SIZE,
        elem_id=elem_id,
    )


# the props the page changes (they follow the model and the controls); the others stay as the canvas was built
DYNAMIC_PROPS = ("live", "palette", "canvas_size")


def canvas_update(canvas: LiveCanvas, **changes) -> dict:
    """An update of a canvas's props (`value`, `live`, `palette`) that also carries the props it was built with.

    Why: a canvas on a tab not yet opened is mounted later from its props as the last update left them, and
    gradio 6.31 keeps only the props that update named: a t0 change before the Edit tab was first opened
    mounted that canvas without its mode (a paint canvas, no layers) and without its label.
    """
    fixed = {k: v for k, v in canvas.props.items() if k not in DYNAMIC_PROPS}
    return gr.update(**fixed, **changes)


def live_settings(
    model, strength, seed, mask_dilation, mask_feather, prompt=None, negative_prompt=None, guidance_scale=None
) -> dict:
    """The page's settings the preview follows (the canvas's `live` prop): a text model's prompt, negative prompt
    and guidance too (None for a model without text)."""

    def number(v, default):
        try:
            return float(v)
        except (TypeError, ValueError):
            return default

    return {
        "model": model,
        "strength": number(strength, 0.5),
        "seed": number(seed, -1),
        "mask_dilation": number(mask_dilation, 0),
        "mask_feather": number(mask_feather, 0),
        "prompt": prompt if isinstance(prompt, str) else None,
        "negative_prompt": negative_prompt if isinstance(negative_prompt, str) else None,
        "guidance_scale": number(guidance_scale, None),
    }


def follow_settings(canvas: LiveCanvas, page) -> None:
    """Keep the canvas's `live` settings, palette and size in step with the page's model and controls (no queue:
    instant). The prompt boxes count for a text model only; typing in them updates the preview as the brush
    does (the newest-only service computes the running preview and the last, never the ones between)."""
    from .models import config_for, paint_canvas_size

    c, r = page.controls, page.results

    def update(model, strength, seed, dilation, feather, prompt, negative, guidance):
        try:
            cfg = config_for(model)
        except Exception:
            cfg = None
        palette = list(cfg.palette) if cfg is not None else []
        text = (prompt, negative, guidance) if cfg is not None and cfg.takes_text else (None, None, None)
        return canvas_update(
            canvas,
            live=live_settings(model, strength, seed, dilation, feather, *text),
            palette=palette,
            canvas_size=paint_canvas_size(cfg) if cfg is not None else CANVAS_SIZE,
        )

    gr.on(
        [
            c.loaded_model.change,
            r.strength.change,
            r.seed.change,
            c.mask_dilation.change,
            c.mask_feather.change,
            c.prompt.change,
            c.negative_prompt.change,
            # the visitor's moves only: the model box sets it along with the model (the loaded model's change
            # reads it), and its `.change` on those updates kept firing in gradio 6.31 (a request loop)
            c.guidance.input,
        ],
        update,
        [c.loaded_model, r.strength, r.seed, c.mask_dilation, c.mask_feather, *page.text_inputs],
        canvas,
        queue=False,
        show_progress="hidden",
        api_visibility="private",
    )
