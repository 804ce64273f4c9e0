"""SDEdit Studio: paint strokes or edit a photo, and a diffusion model makes it realistic (Meng et al., 2022).

Run `python app.py` (http://127.0.0.1:7860; `--port`, GRADIO_SERVER_PORT and GRADIO_SERVER_NAME are
respected). The same file runs unchanged as a Hugging Face Space. The logic lives in sdedit/studio.py;
this file lays out the page top to bottom and wires events. API: see docs/app.md.
"""

from __future__ import annotations

import os

# Offline unless the operator says otherwise: the embedded model needs no network, and a Space's
# preload_from_hub puts the configured Hub models in the local cache. Set before any HF import reads them.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
if os.environ.get("SDEDIT_ALLOW_CUSTOM_MODELS", "").lower() not in ("1", "true", "yes", "on"):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

# ZeroGPU patches CUDA when `spaces` is imported, so it must come before anything imports torch.
try:
    import spaces

    def gpu(duration: int):
        return spaces.GPU(duration=duration)

except ImportError:  # not on a Space, and the package isn't installed: run on whatever is here

    def gpu(duration: int):
        return lambda fn: fn


import argparse
import functools
import inspect
import logging

import gradio as gr
from PIL import Image
from starlette.middleware import Middleware

from sdedit import studio
from sdedit.configs import default_config
from sdedit.errors import BusyError, InputError, ModelLoadError, ModelNotFoundError, OutOfMemoryError, SDEditError
from sdedit.guard import BodySizeLimit, explain_rejected_value, free_memory, is_out_of_memory, limit_malloc_arenas

log = logging.getLogger("sdedit.app")
# On ZeroGPU the GPU exists only inside a @spaces.GPU call, so edits run there one by one, unbatched.
ZERO_GPU = os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "true")
DEFAULT = default_config()
PAINT_EXAMPLES = studio.paint_examples(DEFAULT)
CONCURRENCY = studio.CONCURRENCY  # model runs at once per replica (SDEDIT_CONCURRENCY)
QUEUE_SIZE = int(os.environ.get("SDEDIT_QUEUE_SIZE", "16"))  # requests waiting beyond those being served
# Edit requests admitted at once: enough to fill a batch while the previous one runs (the batcher runs
# CONCURRENCY forwards at a time, each with up to MAX_BATCH samples from requests with matching settings).
EDIT_CONCURRENCY = CONCURRENCY if ZERO_GPU else CONCURRENCY * max(1, 2 * studio.MAX_BATCH)
# PIL's own decompression-bomb guard, set to our limit: Gradio decodes the editor's and the private
# endpoints' images before our code runs, and PIL then refuses anything over twice this from the header.
Image.MAX_IMAGE_PIXELS = studio.APP_LIMITS.image.max_pixels
# The Edit tab's layers: colour strokes (change the guide and the mask), then a mask-only brush.
EDIT_LAYERS = ["Paint strokes", "Mask only (colour ignored)"]

CSS = """
.gradio-container { max-width: 1360px !important; margin: auto; }
#title h1 { margin: 0 0 0.1em 0; }
#title p { margin-top: 0.2em; color: var(--body-text-color-subdued); }
#generate { min-height: 52px; font-size: 1.15em; }
.hint, .hint p { font-size: 0.9em; color: var(--body-text-color-subdued); }
/* five shrinkable columns: fixed-size thumbnails would make the page scroll sideways on a phone */
.examples-gallery .grid-container { grid-template-columns: repeat(5, minmax(0, 1fr)) !important; }
.examples-gallery .thumbnail-item { min-width: 0 !important; }
@media (max-width: 640px) {
  .examples-gallery .grid-container { grid-template-columns: repeat(4, minmax(0, 1fr)) !important; }
  .examples-gallery .caption-label { display: none; }
}
"""
# Soft, with quiet grey labels so that the orange Generate button is what stands out.
THEME = gr.themes.Soft(primary_hue="orange", secondary_hue="blue", radius_size="md").set(
    block_label_background_fill="*neutral_100",
    block_label_text_color="*neutral_600",
    block_title_text_color="*neutral_700",
)


TITLES = (
    (BusyError, "Busy"),
    (OutOfMemoryError, "Out of memory"),
    (ModelNotFoundError, "Model unavailable"),
    (ModelLoadError, "Model unavailable"),
)


def as_gr_error(exc: Exception, where: str) -> gr.Error:
    """The dialog for an exception: the library's own words for problems the user can act on, never a traceback."""
    if isinstance(exc, gr.Error):
        return exc
    if isinstance(exc, SDEditError):
        title = next((t for cls, t in TITLES if isinstance(exc, cls)), "Please check")
        return gr.Error(studio.user_message(exc), title=title, print_exception=False)
    if is_out_of_memory(exc):
        free_memory()
        return gr.Error(
            "The server ran out of memory: try fewer samples or steps.", title="Out of memory", print_exception=False
        )
    log.error("unexpected error in %s", where, exc_info=exc)  # the traceback goes to the server's log only
    return gr.Error(
        f"Something went wrong on the server ({type(exc).__name__}). Please try again.", print_exception=False
    )


def friendly(fn):
    """Wrap an event handler (plain or async) so that every failure reaches the user as `as_gr_error`."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args, **kwargs):
            try:
                return await fn(*args, **kwargs)
            except Exception as exc:
                raise as_gr_error(exc, fn.__name__) from None

        return async_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise as_gr_error(exc, fn.__name__) from None

    return wrapper


def progress_reporter(progress: gr.Progress):
    return lambda done, total, desc: progress((done, total), desc=desc, unit="steps")


# ----- event handlers: thin wrappers over sdedit.studio ---------------------------------------------------


@friendly
def prepare(mode, paint, photo, baked, base, patch, x, y, scale, cutout, painting):
    """The active tab's guide and mask (None = change everything)."""
    if mode == "edit":
        return studio.photo_guide(photo, baked)
    if mode == "composite":
        return studio.composite_guide(base, patch, x, y, scale, cutout)
    if mode == "painting":
        if painting is None:
            raise InputError("make a painting from a photo first (or click an example)")
        return painting, None
    return studio.paint_guide(paint), None


def edit_outputs(r: studio.EditResult):
    """(gallery, animation, summary, details, last seed) for the results panel."""
    gallery = [(im, f"seed {s}") for im, s in zip(r.images, r.seeds, strict=True)]
    return gallery, str(r.animation), r.summary, r.metadata, r.seeds[0]


@friendly
async def edit(
    guide,
    mask,
    model,
    strength,
    sampler,
    steps,
    repeats,
    num_samples,
    seed,
    snr,
    mask_dilation,
    mask_feather,
    progress=gr.Progress(),  # noqa: B008 (gradio injects its tracker through this default)
):
    """SDEdit: perturb the guide to t0 and denoise it. White in `mask` may change; None changes everything.

    Async so that a cancelled request stops its work (the batcher drops it) instead of running on unseen;
    requests with matching settings share one forward pass (sdedit.batching).
    """
    settings = studio.EditSettings(
        model, strength, sampler, steps, repeats, num_samples, seed, snr, mask_dilation, mask_feather
    )
    progress(0, desc="Waiting for the model")
    return edit_outputs(await studio.run_edit_async(guide, mask, settings, progress_reporter(progress)))


@gpu(duration=90)
@friendly
def edit_on_gpu(
    guide,
    mask,
    model,
    strength,
    sampler,
    steps,
    repeats,
    num_samples,
    seed,
    snr,
    mask_dilation,
    mask_feather,
    progress=gr.Progress(),  # noqa: B008 (gradio injects its tracker through this default)
):
    """`edit` on ZeroGPU: the GPU exists only inside this call, so each request runs here, unbatched."""
    settings = studio.EditSettings(
        model, strength, sampler, steps, repeats, num_samples, seed, snr, mask_dilation, mask_feather
    )
    progress(0, desc="Loading the model")
    return edit_outputs(studio.run_edit(guide, mask, settings, progress_reporter(progress), batch=False))


@gpu(duration=180)
@friendly
def sweep(
    guide,
    mask,
    model,
    strengths,
    sampler,
    steps,
    repeats,
    seed,
    snr,
    mask_dilation,
    mask_feather,
    progress=gr.Progress(),  # noqa: B008 (gradio injects its tracker through this default)
):
    """The same guide and seed at several t0: a grid and a faithfulness-vs-t0 plot."""
    settings = studio.EditSettings(model, None, sampler, steps, repeats, 1, seed, snr, mask_dilation, mask_feather)
    r = studio.run_t0_sweep(guide, mask, strengths, settings, progress_reporter(progress))
    return r.grid, r.plot, [[row["strength"], row["l2_to_guide"]] for row in r.rows]


@friendly
def composite(base, patch, x, y, scale, cutout):
    """Paste the patch onto the base: the guide, and the mask the patch covers."""
    return studio.composite_guide(base, patch, x, y, scale, cutout)


@friendly
def painting(photo, colors, smoothing, blockiness):
    """Photo -> flat colour strokes (the paper's stroke simulator)."""
    return studio.make_painting(photo, colors, smoothing, blockiness)


MODEL_OUTPUTS = 11  # the number of values model_settings returns


def model_settings(name, current):
    """Load the chosen model and show its defaults; on failure, say why and keep the current one.

    Runs on every change of the dropdown, including the revert it makes itself: the same model again is a no-op.
    """
    if name == current:
        return (gr.skip(),) * MODEL_OUTPUTS
    name_tried = name
    try:
        studio.get_pipeline(name)
        cfg, note = studio.config_for(name), ""
    except Exception as exc:  # anything at all: the app must keep working on the current model
        message = studio.user_message(exc) if isinstance(exc, SDEditError) else f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, SDEditError):
            log.exception("loading model %r failed", name)
        gr.Warning(message, duration=15, title=f"Could not load {name_tried}")
        name = current or DEFAULT.name
        cfg = studio.config_for(name)
        note = f"⚠️ **Could not load {name_tried}.** {message} Still using {cfg.label}. "
    d = cfg.defaults
    brush = gr.Brush(default_size=10, colors=list(cfg.palette) or None, color_mode="defaults")
    return (
        name,
        name,
        note + studio.model_note(cfg),
        studio.model_card(cfg),
        d.strength,
        gr.Dropdown(choices=studio.sampler_choices(cfg), value=d.sampler),
        d.num_inference_steps,
        d.repeats,
        gr.Slider(value=d.snr, visible=cfg.sde == "ve"),
        gr.ImageEditor(brush=brush),
        gr.ImageEditor(brush=brush),
    )


def steps_for_sampler(name, sampler):
    return studio.default_steps(studio.config_for(name), sampler)


def paper_settings(name):
    p = studio.config_for(name).paper
    return p.strength, p.sampler, p.num_inference_steps, p.repeats


def work_hint(name, strength, steps, repeats, num_samples, snr):
    try:
        sde = studio.config_for(name).sde
    except SDEditError:
        sde = "vp"
    return studio.work_hint(strength, steps, repeats, num_samples, sde, snr)


def use_as_guide(results, selected, mode):
    """Put the chosen result back where the guide came from, to keep iterating.

    Returns updates for (paint editor, edit editor, baked strokes, composite base, mode, tabs).
    """
    if not results:
        raise gr.Error("Generate something first: there is no result to use yet.")
    item = results[min(int(selected or 0), len(results) - 1)]
    image = studio._to_pil(item[0] if isinstance(item, (tuple, list)) else item, "result").convert("RGB")
    if mode == "edit":
        return gr.skip(), studio.editor_value(image), None, gr.skip(), "edit", gr.Tabs(selected="edit")
    if mode == "composite":
        return gr.skip(), gr.skip(), gr.skip(), image, "composite", gr.Tabs(selected="composite")
    canvas = studio.editor_value(studio.to_canvas(image))
    return canvas, gr.skip(), gr.skip(), gr.skip(), "paint", gr.Tabs(selected="paint")


def load_paint_example(evt: gr.SelectData):
    """The example on the canvas, and as the guide to edit right away (no mask: all of it may change).

    The guide goes straight to the edit step: reading the editor back while it is still loading the new
    value leaves it showing the old picture (gradio 6.31).
    """
    canvas = studio.to_canvas(studio.load_example_image(PAINT_EXAMPLES[evt.index].image))
    return studio.editor_value(canvas), "paint", canvas, None


def load_edit_example(evt: gr.SelectData):
    """The photo with the example's strokes baked in (see studio.editor_value), plus its guide and mask."""
    value, baked = studio.edit_example_value(studio.EDIT_EXAMPLES[evt.index])
    guide, mask = studio.photo_guide(value, baked)
    return value, baked, "edit", guide, mask


def load_composite_example(evt: gr.SelectData):
    ex = studio.COMPOSITE_EXAMPLES[evt.index]
    return studio.load_example_image(ex.image), studio.load_example_image(ex.patch, "RGBA"), ex.x, ex.y, ex.scale


def load_painting_example(evt: gr.SelectData):
    return studio.load_example_image(studio.PAINTING_EXAMPLES[evt.index].image)


def selected_result(evt: gr.SelectData) -> int:
    return evt.index


def send_to_canvas(image):
    if image is None:
        raise gr.Error("Make a painting first.")
    return studio.editor_value(studio.to_canvas(studio._to_pil(image))), "paint", gr.Tabs(selected="paint")


# ----- the page -------------------------------------------------------------------------------------------


def build_demo() -> gr.Blocks:
    cfg = DEFAULT
    palette = list(cfg.palette) or None
    first_composite = studio.COMPOSITE_EXAMPLES[0]
    first_preview, _ = composite(
        studio.load_example_image(first_composite.image),
        studio.load_example_image(first_composite.patch, "RGBA"),
        first_composite.x,
        first_composite.y,
        first_composite.scale,
        True,
    )
    first_photo = studio.load_example_image(studio.EDIT_EXAMPLES[1].image)
    first_painting_photo = studio.load_example_image(studio.PAINTING_EXAMPLES[0].image)

    def examples_gallery(items, label: str, elem_id: str) -> gr.Gallery:
        """A strip of clickable thumbnails, captioned above (a floating label would cover them on a phone)."""
        gr.Markdown(f"**Examples** · {label}", elem_classes="hint examples-caption")
        return gr.Gallery(
            items,
            label="Examples",
            show_label=False,
            columns=5,
            fit_columns=False,
            rows=1,
            height=160,
            allow_preview=False,
            interactive=False,
            object_fit="contain",
            buttons=[],
            elem_id=elem_id,
            elem_classes="examples-gallery",
        )

    # Gradio's cache (uploads, results) is swept every 10 minutes of files older than SDEDIT_CACHE_TTL_S.
    ttl = int(studio.OUTPUT_TTL_S)
    with gr.Blocks(title="SDEdit Studio", delete_cache=(min(600, ttl), ttl)) as demo:
        mode = gr.State("paint")
        edit_baked = gr.State(None)  # (photo, photo with strokes) of a loaded edit example
        loaded_model = gr.State(cfg.name)
        last_seed = gr.State(-1)
        selected = gr.State(0)

        gr.Markdown(
            "# SDEdit Studio\n"
            "Paint rough colour strokes, or paint over a photo, and a diffusion model turns them into a picture "
            "that looks real. **1** paint, or click an example · **2** press **Generate** · **3** keep a result, "
            "or use it as the new guide and go again. "
            "[How it works](https://arxiv.org/abs/2108.01073): SDEdit adds noise to your picture, then removes it "
            "with a model trained on real images.",
            elem_id="title",
        )

        with gr.Row(equal_height=False):
            # ----- left: the guide, the model and its settings --------------------------------------------
            with gr.Column(scale=6, min_width=320):
                with gr.Tabs(selected="paint", overflow_behavior="wrap") as tabs:
                    with gr.Tab("Paint", id="paint") as tab_paint:
                        paint_editor = gr.ImageEditor(
                            value=studio.editor_value(studio.blank_canvas()),
                            type="numpy",
                            image_mode="RGBA",
                            canvas_size=(studio.CANVAS_SIZE, studio.CANVAS_SIZE),
                            fixed_canvas=True,
                            sources=("upload", "clipboard"),
                            transforms=(),
                            layers=False,
                            brush=gr.Brush(default_size=10, colors=palette, color_mode="defaults"),
                            eraser=gr.Eraser(default_size=16),
                            format="png",
                            height=380,
                            label="Canvas: paint flat colour strokes",
                            elem_id="paint-editor",
                        )
                        paint_gallery = examples_gallery(
                            studio.gallery_items(PAINT_EXAMPLES),
                            "one click paints one and generates",
                            "paint-examples",
                        )
                    with gr.Tab("Edit a photo", id="edit") as tab_edit:
                        edit_editor = gr.ImageEditor(
                            value=studio.editor_value(first_photo),
                            type="numpy",
                            image_mode="RGBA",
                            sources=("upload", "clipboard"),
                            transforms=(),
                            layers=gr.LayerOptions(allow_additional_layers=False, layers=EDIT_LAYERS),
                            brush=gr.Brush(default_size=10, colors=palette, color_mode="defaults"),
                            eraser=gr.Eraser(default_size=16),
                            format="png",
                            height=380,
                            label="Photo: paint on it, only painted areas change",
                            elem_id="edit-editor",
                        )
                        gr.Markdown(
                            "Strokes on the **Paint strokes** layer recolour the photo and mark where it may change. "
                            "Pick the **Mask only** layer (bottom right of the editor) to mark more area without "
                            "painting. Everything else stays exactly as it is.",
                            elem_classes="hint",
                        )
                        edit_gallery = examples_gallery(
                            studio.gallery_items(studio.EDIT_EXAMPLES),
                            "one click loads one, strokes included, and generates",
                            "edit-examples",
                        )
                    with gr.Tab("Composite", id="composite") as tab_composite:
                        with gr.Row():
                            comp_base = gr.Image(
                                studio.load_example_image(first_composite.image),
                                type="filepath",  # decoded by studio within its limits, not by Gradio
                                image_mode=None,
                                format="png",
                                label="Base image",
                                height=190,
                                elem_id="comp-base",
                            )
                            comp_patch = gr.Image(
                                studio.load_example_image(first_composite.patch, "RGBA"),
                                type="filepath",
                                image_mode=None,
                                format="png",
                                label="Patch to paste",
                                height=190,
                                elem_id="comp-patch",
                            )
                            comp_preview = gr.Image(
                                first_preview,
                                label="Preview",
                                format="png",
                                height=190,
                                interactive=False,
                                elem_id="comp-preview",
                            )
                        with gr.Row():
                            comp_x = gr.Slider(
                                0, 1, first_composite.x, step=0.01, label="x (left → right)", min_width=120
                            )
                            comp_y = gr.Slider(
                                0, 1, first_composite.y, step=0.01, label="y (top → bottom)", min_width=120
                            )
                            comp_scale = gr.Slider(
                                0.05, 1.0, first_composite.scale, step=0.01, label="Size", min_width=120
                            )
                        comp_cutout = gr.Checkbox(
                            True, label="Cut out the patch (use its transparency, or drop its plain background)"
                        )
                        gr.Markdown(
                            "Only the pasted patch changes: the model blends it into the base.", elem_classes="hint"
                        )
                        comp_mask = gr.Image(visible=False, format="png", image_mode="L", label="Mask")
                        comp_gallery = examples_gallery(
                            [(ex.path, ex.title) for ex in studio.COMPOSITE_EXAMPLES],
                            "click one to load it",
                            "composite-examples",
                        )
                    with gr.Tab("Photo → painting", id="painting") as tab_painting:
                        with gr.Row():
                            pt_photo = gr.Image(
                                first_painting_photo,
                                type="filepath",
                                image_mode=None,
                                format="png",
                                label="Photo",
                                height=230,
                                elem_id="pt-photo",
                            )
                            pt_painting = gr.Image(
                                studio.make_painting(first_painting_photo),
                                type="pil",
                                format="png",
                                label="Simulated strokes",
                                height=230,
                                interactive=False,
                                elem_id="pt-painting",
                            )
                        with gr.Row():
                            pt_colors = gr.Slider(2, 32, 6, step=1, label="Colours", min_width=120)
                            pt_smoothing = gr.Slider(0, 31, 0, step=2, label="Smoothing (0 = auto)", min_width=120)
                            pt_block = gr.Slider(1, 16, 1, step=1, label="Blockiness", min_width=120)
                        send_btn = gr.Button("Send to canvas → Paint", elem_id="send-to-canvas")
                        gr.Markdown(
                            "The paper's stroke simulator: a median filter removes detail, then the colours are "
                            "reduced to a few flat ones. **Generate** turns this painting back into a picture.",
                            elem_classes="hint",
                        )
                        pt_gallery = examples_gallery(
                            studio.gallery_items(studio.PAINTING_EXAMPLES),
                            "click a photo to paint it",
                            "painting-examples",
                        )

                model = gr.Dropdown(
                    studio.model_choices(),
                    value=cfg.name,
                    label="Model",
                    allow_custom_value=studio.custom_models_allowed(),
                    info="Or type a Hugging Face model id." if studio.custom_models_allowed() else None,
                    elem_id="model",
                )
                model_note = gr.Markdown(studio.model_note(cfg), elem_id="model-note", elem_classes="hint")
                with gr.Accordion("About this model", open=False):
                    model_card = gr.Markdown(studio.model_card(cfg), elem_id="model-card")
                with gr.Accordion("Sampler and steps", open=False):
                    with gr.Row():
                        sampler = gr.Dropdown(
                            studio.sampler_choices(cfg), value=cfg.defaults.sampler, label="Sampler", min_width=160
                        )
                        steps = gr.Slider(
                            1,
                            studio.MAX_STEPS,
                            cfg.defaults.num_inference_steps,
                            step=1,
                            label="Steps (of a full schedule)",
                            min_width=200,
                        )
                    repeats = gr.Slider(
                        1,
                        studio.MAX_REPEATS,
                        cfg.defaults.repeats,
                        step=1,
                        label="K repeats",
                        info="Run SDEdit again on its own output: more realistic, less faithful (paper: 1 to 3).",
                    )
                    hint = gr.Markdown(
                        studio.work_hint(cfg.defaults.strength, cfg.defaults.num_inference_steps, 1, 1, cfg.sde),
                        elem_classes="hint",
                    )
                    paper_btn = gr.Button("Use the paper's settings (slow on a CPU)", size="sm")
                with gr.Accordion("Advanced", open=False):
                    snr = gr.Slider(
                        0,
                        0.3,
                        cfg.defaults.snr,
                        step=0.005,
                        label="VE corrector snr (0 = off; the paper used 0.075)",
                        visible=cfg.sde == "ve",
                    )
                    with gr.Row():
                        mask_dilation = gr.Slider(0, 32, 0, step=1, label="Mask dilation (px)", info="Grow the mask.")
                        mask_feather = gr.Slider(
                            0, 32, 2, step=1, label="Mask feather (px)", info="Soften its edge so the edit blends in."
                        )

            # ----- right: generate, and the results ----------------------------------------------------
            with gr.Column(scale=5, min_width=320, elem_id="results"):
                generate_btn = gr.Button("Generate", variant="primary", size="lg", elem_id="generate")
                strength = gr.Slider(
                    0.05,
                    1.0,
                    cfg.defaults.strength,
                    step=0.01,
                    label="Strength t0:  faithful ◀ ▶ realistic",
                    info="How much noise is added before the model repaints: low keeps your strokes, high looks "
                    "more real but strays from them.",
                    elem_id="strength",
                )
                with gr.Row(equal_height=True):
                    num_samples = gr.Slider(1, studio.MAX_SAMPLES, 1, step=1, label="Samples", min_width=120)
                    seed = gr.Number(-1, precision=0, label="Seed (-1 = random)", min_width=120, elem_id="seed")
                    with gr.Column(min_width=90, scale=0):
                        random_btn = gr.Button("Random", size="sm", elem_id="random-seed")
                        reuse_btn = gr.Button("Reuse last", size="sm", elem_id="reuse-seed")
                gallery = gr.Gallery(
                    label="Results (lossless PNG)",
                    format="png",
                    type="pil",
                    columns=2,
                    fit_columns=False,
                    height=None,
                    object_fit="contain",
                    interactive=False,
                    buttons=["download", "download_all", "fullscreen"],
                    elem_id="gallery",
                )
                with gr.Row(equal_height=True):
                    summary = gr.Markdown("Results appear here.", label="Summary", elem_id="summary")
                    reuse_guide_btn = gr.Button(
                        "Use as new guide", size="sm", scale=0, min_width=150, elem_id="use-as-guide"
                    )
                animation = gr.Image(
                    type="filepath",
                    label="Reverse process: the noised guide becomes the result",
                    height=240,
                    interactive=False,
                    elem_id="animation",
                )
                with gr.Accordion("What the model gets: guide and mask", open=False), gr.Row():
                    guide_img = gr.Image(
                        type="filepath",  # the API's guide: read by studio within its limits
                        image_mode=None,
                        format="png",
                        label="Guide",
                        height=200,
                        interactive=False,
                        elem_id="guide",
                    )
                    mask_img = gr.Image(
                        type="filepath",
                        image_mode=None,
                        format="png",
                        label="Mask (white = may change)",
                        height=200,
                        interactive=False,
                        elem_id="mask",
                    )
                with gr.Accordion("t0 sweep: faithful ↔ realistic, for this guide", open=False):
                    with gr.Row(equal_height=True):
                        strengths = gr.Textbox("0.2, 0.4, 0.6, 0.8, 1.0", label="t0 values", elem_id="strengths")
                        sweep_btn = gr.Button("Run sweep", scale=0, min_width=120, elem_id="sweep")
                    gr.Markdown(
                        "The same guide and seed at each t0: the guide first, then one column per t0; below, "
                        "the paper's faithfulness (L2 distance to the guide; lower = more faithful).",
                        elem_classes="hint",
                    )
                    sweep_grid = gr.Image(
                        label="Sweep", show_label=False, format="png", interactive=False, elem_id="sweep-grid"
                    )
                    sweep_plot = gr.Image(
                        label="Faithfulness plot",
                        show_label=False,
                        format="png",
                        interactive=False,
                        elem_id="sweep-plot",
                    )
                    sweep_table = gr.Dataframe(headers=["t0", "L2 to guide"], interactive=False, label="Faithfulness")
                with gr.Accordion("Details (JSON)", open=False):
                    details = gr.JSON(label="Settings, seeds and timings")

        gr.Markdown(
            "<small>SDEdit: Meng et al., *Guided Image Synthesis and Editing with Stochastic Differential "
            "Equations*, ICLR 2022. Example photos: Fluent Emoji 3D by Microsoft (MIT). Runs offline on the "
            "embedded model. API: the *Use via API* link below, and docs/app.md.</small>",
            elem_id="credits",
        )

        # ----- events --------------------------------------------------------------------------------
        for tab, name in (
            (tab_paint, "paint"),
            (tab_edit, "edit"),
            (tab_composite, "composite"),
            (tab_painting, "painting"),
        ):
            tab.select(lambda n=name: n, None, mode, queue=False, api_visibility="private")

        guide_inputs = [
            mode,
            paint_editor,
            edit_editor,
            edit_baked,
            comp_base,
            comp_patch,
            comp_x,
            comp_y,
            comp_scale,
            comp_cutout,
            pt_painting,
        ]
        settings_inputs = [
            model,
            strength,
            sampler,
            steps,
            repeats,
            num_samples,
            seed,
            snr,
            mask_dilation,
            mask_feather,
        ]

        def then_edit(prepared, api_name: str | None = None):
            """After the active tab's guide and mask are in place, edit them (the public `edit` endpoint)."""
            return prepared.success(
                edit_on_gpu if ZERO_GPU else edit,
                [guide_img, mask_img, *settings_inputs],
                [gallery, animation, summary, details, last_seed],
                api_name=api_name,
                api_visibility="public" if api_name else "private",
                show_progress_on=[gallery],
                concurrency_limit=EDIT_CONCURRENCY,
                concurrency_id="edit",
            ).success(lambda: 0, None, selected, queue=False, api_visibility="private")

        then_edit(
            generate_btn.click(
                prepare, guide_inputs, [guide_img, mask_img], api_visibility="private", show_progress="hidden"
            ),
            "edit",
        )
        sweep_btn.click(
            prepare, guide_inputs, [guide_img, mask_img], api_visibility="private", show_progress="hidden"
        ).success(
            sweep,
            [guide_img, mask_img, model, strengths, sampler, steps, repeats, seed, snr, mask_dilation, mask_feather],
            [sweep_grid, sweep_plot, sweep_table],
            api_name="sweep",
        )
        then_edit(
            paint_gallery.select(
                load_paint_example, None, [paint_editor, mode, guide_img, mask_img], api_visibility="private"
            )
        )
        then_edit(
            edit_gallery.select(
                load_edit_example,
                None,
                [edit_editor, edit_baked, mode, guide_img, mask_img],
                api_visibility="private",
            )
        )
        comp_gallery.select(
            load_composite_example,
            None,
            [comp_base, comp_patch, comp_x, comp_y, comp_scale],
            api_visibility="private",
        )
        pt_gallery.select(load_painting_example, None, pt_photo, api_visibility="private")

        comp_inputs = [comp_base, comp_patch, comp_x, comp_y, comp_scale, comp_cutout]
        gr.on(
            [
                comp_base.change,
                comp_patch.change,
                comp_x.release,
                comp_y.release,
                comp_scale.release,
                comp_cutout.input,
            ],
            composite,
            comp_inputs,
            [comp_preview, comp_mask],
            api_name="composite",
            show_progress="hidden",
        )
        gr.on(
            [pt_photo.change, pt_colors.release, pt_smoothing.release, pt_block.release],
            painting,
            [pt_photo, pt_colors, pt_smoothing, pt_block],
            pt_painting,
            api_name="painting",
            show_progress="minimal",
        )
        send_btn.click(send_to_canvas, pt_painting, [paint_editor, mode, tabs], api_visibility="private")

        model.change(
            model_settings,
            [model, loaded_model],
            [
                model,
                loaded_model,
                model_note,
                model_card,
                strength,
                sampler,
                steps,
                repeats,
                snr,
                paint_editor,
                edit_editor,
            ],
            api_visibility="private",
        )
        sampler.input(steps_for_sampler, [model, sampler], steps, queue=False, api_visibility="private")
        paper_btn.click(
            paper_settings, model, [strength, sampler, steps, repeats], queue=False, api_visibility="private"
        )
        gr.on(
            [strength.change, steps.change, repeats.change, num_samples.change, snr.change, model.change],
            work_hint,
            [model, strength, steps, repeats, num_samples, snr],
            hint,
            queue=False,
            api_visibility="private",
            show_progress="hidden",
        )
        random_btn.click(lambda: -1, None, seed, queue=False, api_visibility="private")
        reuse_btn.click(lambda s: s, last_seed, seed, queue=False, api_visibility="private")
        gallery.select(selected_result, None, selected, queue=False, api_visibility="private")
        reuse_guide_btn.click(
            use_as_guide,
            [gallery, selected, mode],
            [paint_editor, edit_editor, edit_baked, comp_base, mode, tabs],
            api_visibility="private",
        )

    guard_inputs(demo)
    demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)
    return demo


def guard_inputs(demo: gr.Blocks) -> None:
    """Make Gradio's own reading of a request (decoding an image, a number's range, a choice) fail with the
    API parameter's name, what was wrong and what is allowed, instead of a bare "error" with no words.

    Gradio reads each input with its component's `preprocess` before our handler runs; this wraps it.
    """
    names: dict[int, str] = {}
    for fn in demo.fns.values():
        if fn.fn is not None and fn.api_visibility == "public":
            params = list(inspect.signature(fn.fn).parameters)
            for block, name in zip(fn.inputs, params, strict=False):
                names.setdefault(block._id, name)
    for block in demo.blocks.values():
        if isinstance(block, gr.components.Component) and "preprocess" not in vars(block):
            block.preprocess = _guarded_preprocess(block, names.get(block._id) or str(block.label or "input"))


def _guarded_preprocess(block: gr.components.Component, name: str):
    original = block.preprocess
    kind = (
        "image"
        if isinstance(block, (gr.Image, gr.ImageEditor))
        else "number"
        if isinstance(block, (gr.Slider, gr.Number))
        else "text"
        if isinstance(block, gr.Textbox)
        else "other"
    )

    def preprocess(payload):
        try:
            return original(payload)
        except gr.Error as exc:
            raise gr.Error(f"{name}: {exc.message}", title="Please check", print_exception=False) from None
        except Exception as exc:
            problem = explain_rejected_value(
                kind,
                payload,
                exc,
                getattr(block, "minimum", None),
                getattr(block, "maximum", None),
                getattr(block, "precision", None) == 0 or getattr(block, "step", None) == 1,
                studio.MAX_MEGAPIXELS,
            )
            raise gr.Error(f"{name}: {problem}", title="Please check", print_exception=False) from None

    return preprocess


def launch(demo: gr.Blocks, port: int | None = None, host: str | None = None, **kwargs):
    """Launch on 127.0.0.1 unless told otherwise (a Space sets GRADIO_SERVER_NAME=0.0.0.0).

    Uploads are limited per file (Gradio's max_file_size) and every other request body by BodySizeLimit.
    show_error: Gradio's own request checks (a malformed file reference, a wrong JSON type) say what was
    wrong; our handlers never show more than `as_gr_error` gives.
    """
    upload = int(studio.MAX_UPLOAD_MB * 1e6)
    limit = dict(max_bytes=int(studio.MAX_REQUEST_MB * 1e6), upload_bytes=4 * upload + 1_000_000)
    app_kwargs = {"middleware": [Middleware(BodySizeLimit, **limit)], **kwargs.pop("app_kwargs", {})}
    return demo.launch(
        server_name=host or os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=port or int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        theme=THEME,
        css=CSS,
        footer_links=["api"],
        max_file_size=upload,
        show_error=True,
        app_kwargs=app_kwargs,
        **kwargs,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="SDEdit Studio web app")
    parser.add_argument("--port", type=int, default=None, help="port (default: $GRADIO_SERVER_PORT or 7860)")
    parser.add_argument("--host", default=None, help="address (default: $GRADIO_SERVER_NAME or 127.0.0.1)")
    args = parser.parse_args(argv)
    limit_malloc_arenas()  # before the server's threads start: keeps memory flat under load (sdedit.guard)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # Load the embedded model before the first visitor (and before ZeroGPU forks); warm it with one small
    # edit so that the first request costs what every other one does (SDEDIT_WARMUP=0 skips the edit).
    if os.environ.get("SDEDIT_WARMUP", "1") != "0" and not ZERO_GPU:
        log.info("warmed up in %.1f s", studio.warm_up())
    else:
        studio.get_pipeline(None)
    launch(build_demo(), args.port, args.host)


if __name__ == "__main__":
    main()
