"""The results column: Generate, strength and seeds, the results, the animation, what the model got, the t0
sweep and the details; and the `/edit` and `/sweep` endpoints behind them.

The endpoints return their values in the order docs/app.md documents (gradio_client receives them so).
`/edit` sends its outputs twice: the results as soon as they exist (the animation still empty), then the same
with the reverse-process GIF, rendered after the results have gone out. `predict` returns the second.

`/edit` and `/sweep` write into hidden copies of the column's result components (`Staged`: the same types and
labels, so the API reads as the column would), never into the column itself: the visitor may be on another
tab by the time a result arrives, and the column shows the tab in front (`tab_results` moves a result into
the column only while the tab that asked for it is in front).
"""

from __future__ import annotations

import logging

import anyio
import gradio as gr

from ..configs import ModelConfig
from . import limits
from .column_guard import TAB_RESULT, ColumnGuard
from .jobs import EditResult, EditSettings, run_edit, run_edit_async, run_t0_sweep
from .models import strength_info
from .restore import input_pngs
from .ui import as_gr_error, friendly, gpu, progress_reporter

log = logging.getLogger("sdedit.app")


def edit_outputs(r: EditResult, animation: bool = True, inputs: tuple = ()):
    """(gallery, animation, summary, details, last seed) for the results panel: the `/edit` endpoint's return.

    The gallery lists the results' PNG files (written once, so sending the outputs twice encodes them once),
    each carrying its settings and `inputs` (guide, mask, strength map: what the model got, so that a dropped
    PNG restores its guide too); animation=False leaves the animation empty (and unrendered).
    """
    files = r.png_files(input_pngs(*inputs) if inputs else None)
    if r.order is not None:  # ranked: best first, each saying why (the files keep their seeds' settings)
        gallery = [(str(files[i]), f"{w} · seed {r.seeds[i]}") for i, w in zip(r.order, r.captions, strict=True)]
    else:
        gallery = [(str(path), f"seed {s}") for path, s in zip(files, r.seeds, strict=True)]
    anim = r.animation if animation else None
    return gallery, None if anim is None else str(anim), r.summary, r.metadata, r.seeds[0]


def edit_settings(*values) -> EditSettings:
    """The endpoints' inputs in `EditSettings` order; an optional input an old client leaves out (None) keeps
    its default (a prompt left out is None: the model's default)."""
    settings = EditSettings(*values)
    for name in ("fill_outlines", "auto_strength", "rank", "keep_details"):
        if getattr(settings, name) is None:
            setattr(settings, name, False)
    return settings


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
    strength_map=None,
    fill_outlines=False,
    auto_strength=False,
    rank=False,
    prompt=None,
    negative_prompt=None,
    guidance_scale=None,
    keep_details=None,
    progress=gr.Progress(),  # noqa: B008 (gradio injects its tracker through this default)
):
    """SDEdit: perturb the guide to t0 and denoise it. White in `mask` may change; None changes everything.
    `strength_map` (optional, the guide's size): each pixel's own t0 as a fraction of `strength` (white = the
    full t0, black = kept exactly). `fill_outlines` (optional): fill each closed outline of the guide with its
    stroke colour first, as the page's canvas does (`outlines.fill_guide`). `auto_strength` (optional): pick t0
    for this guide within the range where the model follows drawings (`strength` is then ignored). `rank`
    (optional): with several samples, return them best first, each captioned with why (sdedit.ranking).
    `prompt`, `negative_prompt`, `guidance_scale` (optional; text models only, None = the model's default):
    what the picture should show, what it should not (classifier-free guidance), and how strongly.
    `keep_details` (optional): a drawing's thin and small parts (eyes, rays, wheels) start at half the t0, as the page's
    guide help does (`sdedit.details`).

    Async so that a cancelled request stops its work (the batcher drops it) instead of running on unseen;
    requests with matching settings share one forward pass (`jobs.edit_service`). A generator: the results
    go out first, then again with the animation, rendered in a worker thread after they went out. Errors
    reach the user as `ui.as_gr_error` words (`friendly` does not wrap generators).
    """
    values = (model, strength, sampler, steps, repeats, num_samples, seed, snr, mask_dilation, mask_feather)
    text = (prompt, negative_prompt, guidance_scale)
    settings = edit_settings(*values, strength_map, fill_outlines, auto_strength, rank, *text, keep_details)
    try:
        progress(0, desc="Waiting for the model")
        r = await run_edit_async(guide, mask, settings, progress_reporter(progress))
        first = await anyio.to_thread.run_sync(edit_outputs, r, False, (guide, mask, strength_map))
    except Exception as exc:
        raise as_gr_error(exc, "edit") from None
    yield first
    if r.pending_animation is None:
        return
    try:
        animation = str(await anyio.to_thread.run_sync(lambda: r.animation))
    except Exception:  # the results are out already: a failed animation must not turn them into an error
        log.exception("the reverse-process animation could not be rendered")
        return
    yield (first[0], animation, *first[2:])


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
    strength_map=None,
    fill_outlines=False,
    auto_strength=False,
    rank=False,
    prompt=None,
    negative_prompt=None,
    guidance_scale=None,
    keep_details=None,
    progress=gr.Progress(),  # noqa: B008 (gradio injects its tracker through this default)
):
    """`edit` on ZeroGPU: the GPU exists only inside this call, so each request runs here, unbatched."""
    values = (model, strength, sampler, steps, repeats, num_samples, seed, snr, mask_dilation, mask_feather)
    text = (prompt, negative_prompt, guidance_scale)
    settings = edit_settings(*values, strength_map, fill_outlines, auto_strength, rank, *text, keep_details)
    progress(0, desc="Loading the model")
    r = run_edit(guide, mask, settings, progress_reporter(progress), batch=False)
    return edit_outputs(r, True, (guide, mask, strength_map))


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
    strength_map=None,
    fill_outlines=False,
    prompt=None,
    negative_prompt=None,
    guidance_scale=None,
    keep_details=None,
    progress=gr.Progress(),  # noqa: B008 (gradio injects its tracker through this default)
):
    """The same guide and seed at several t0: a grid and a faithfulness-vs-t0 plot. `strength_map` as in `edit`
    (each pixel's t0 as a fraction of each column's t0), `fill_outlines`, `prompt`, `negative_prompt`,
    `guidance_scale` and `keep_details` too."""
    values = (model, None, sampler, steps, repeats, 1, seed, snr, mask_dilation, mask_feather)
    text = (prompt, negative_prompt, guidance_scale)
    settings = edit_settings(*values, strength_map, fill_outlines, None, None, *text, keep_details)
    r = run_t0_sweep(guide, mask, strengths, settings, progress_reporter(progress))
    return r.grid, r.plot, [[row["strength"], row["l2_to_guide"]] for row in r.rows]


def _part(elem_id: str | None, visible: bool | str) -> dict:
    """The arguments every part of the column that shows a tab's result shares (hidden while it is another
    tab's: `ColumnGuard`)."""
    return {"visible": visible, "elem_id": elem_id, "elem_classes": TAB_RESULT}


def _results_gallery(elem_id: str, visible: bool | str = True) -> gr.Gallery:
    return gr.Gallery(
        label="Results (lossless PNG)",
        format="png",
        type="filepath",  # handlers read the result files (history, Use as new guide), never decode them all
        columns=2,
        fit_columns=False,
        height=None,
        object_fit="contain",
        interactive=False,
        buttons=["download", "download_all", "fullscreen"],
        **_part(elem_id, visible),
    )


def _animation(elem_id: str, visible: bool | str = True) -> gr.Image:
    """The reverse-process GIF. Read as its file, as it is (image_mode None): with a mode, Gradio re-encodes the
    GIF on every read (about 90 ms a read: `tab_results` reads it as each edit arrives and is filed)."""
    return gr.Image(
        type="filepath",
        image_mode=None,
        label="Reverse process: the noised guide becomes the result",
        height=None,
        interactive=False,
        **_part(elem_id, visible),
    )


def _summary(value: str | None, elem_id: str, visible: bool | str = True) -> gr.Markdown:
    return gr.Markdown(value, label="Summary", **_part(elem_id, visible))


def _details(elem_id: str | None = None, visible: bool | str = True) -> gr.JSON:
    return gr.JSON(label="Settings, seeds and timings", **_part(elem_id, visible))


def _sweep_image(label: str, elem_id: str, visible: bool | str = True) -> gr.Image:
    """The sweep's grid or its faithfulness plot: a PNG shown without its label."""
    return gr.Image(
        label=label,
        show_label=False,
        format="png",
        interactive=False,
        **_part(elem_id, visible),
    )


def _sweep_table(elem_id: str | None = None, visible: bool | str = True) -> gr.Dataframe:
    return gr.Dataframe(
        headers=["t0", "L2 to guide"],
        interactive=False,
        label="Faithfulness",
        **_part(elem_id, visible),
    )


class Staged:
    """Where `/edit` and `/sweep` write: a hidden copy of each of the column's result components (gallery,
    animation, summary, details; the sweep's grid, plot and table), built by the same functions, so the
    endpoints' outputs have the column's types, labels and formats and the API is the column's.

    Hidden as "hidden", not False: Gradio keeps such a component on the page (a False one is not mounted), and
    a mounted component is what fires `.change` when a backend function updates it; `tab_results` listens
    there to move an arriving edit into the column while its tab is in front, and files results from here."""

    def __init__(self):
        self.gallery = _results_gallery("staged-gallery", visible="hidden")
        self.animation = _animation("staged-animation", visible="hidden")
        self.summary = _summary(None, "staged-summary", visible="hidden")
        self.details = _details("staged-details", visible="hidden")
        self.sweep_grid = _sweep_image("Sweep", "staged-sweep-grid", visible="hidden")
        self.sweep_plot = _sweep_image("Faithfulness plot", "staged-sweep-plot", visible="hidden")
        self.sweep_table = _sweep_table("staged-sweep-table", visible="hidden")

    @property
    def outputs(self) -> list:
        """The copies of an edit's outputs (without the last seed, a State of the column's)."""
        return [self.gallery, self.animation, self.summary, self.details]

    @property
    def sweep_outputs(self) -> list:
        return [self.sweep_grid, self.sweep_plot, self.sweep_table]


def _shown_image(label: str, elem_id: str) -> gr.Image:
    """A read-only PNG the page shows and the API passes on as a file path."""
    return gr.Image(
        type="filepath",
        image_mode=None,
        format="png",
        label=label,
        height=200,
        interactive=False,
        **_part(elem_id, True),
    )


class Results:
    """The right-hand column. `shown_for`: the tab whose (empty) result it shows at first (`ColumnGuard`)."""

    def __init__(self, cfg: ModelConfig, empty: str = "Results appear here.", shown_for: str = ""):
        self.last_seed = gr.State(-1)
        self.selected = gr.State(0)  # the result picked in the gallery, for "Use as new guide"
        self.generate_btn = gr.Button("Generate", variant="primary", size="lg", elem_id="generate")
        self.strength = gr.Slider(
            0.05,
            1.0,
            cfg.defaults.strength,
            step=0.01,
            label="Strength t0:  faithful ◀ ▶ realistic",
            info=strength_info(cfg),
            elem_id="strength",
        )
        self.auto_strength = gr.Checkbox(
            False,
            label="Auto t0: try the range where the model follows drawings and keep the best",
            info="Costs a few edits' time: one trial per t0.",
            elem_id="auto-strength",
        )
        # on whenever there are several samples (the page ranks them best first); an API input, default off
        self.rank = gr.Checkbox(False, visible=False, label="Rank the samples", elem_id="rank")
        with gr.Row(equal_height=True):
            self.num_samples = gr.Slider(
                1, limits.MAX_SAMPLES, 1, step=1, label="Samples", min_width=120, elem_id="num-samples"
            )
            self.seed = gr.Number(-1, precision=0, label="Seed (-1 = random)", min_width=120, elem_id="seed")
            with gr.Column(min_width=90, scale=0):
                random_btn = gr.Button("Random", size="sm", elem_id="random-seed")
                reuse_btn = gr.Button("Reuse last", size="sm", elem_id="reuse-seed")
        random_btn.click(lambda: -1, None, self.seed, queue=False, api_visibility="private")
        self.num_samples.change(
            lambda n: (n or 1) > 1, self.num_samples, self.rank, queue=False, api_visibility="private"
        )
        self.auto_strength.change(  # auto picks t0 itself: the slider rests while it is on
            lambda auto: gr.Slider(interactive=not auto),
            self.auto_strength,
            self.strength,
            queue=False,
            api_visibility="private",
        )
        reuse_btn.click(lambda s: s, self.last_seed, self.seed, queue=False, api_visibility="private")
        self.gallery = _results_gallery("gallery")

        def selected_result(evt: gr.SelectData) -> int:
            return evt.index

        self.gallery.select(selected_result, None, self.selected, queue=False, api_visibility="private")
        with gr.Row(equal_height=True):
            self.summary = _summary(empty, "summary")
            self.use_as_guide_btn = gr.Button(
                "Use as new guide", size="sm", scale=0, min_width=150, elem_id="use-as-guide"
            )
        self.animation = _animation("animation")
        with gr.Accordion("What the model gets: guide and mask", open=False):
            with gr.Row():
                # the API's guide, mask and map: read by the studio within its limits
                self.guide = _shown_image("Guide", "guide")
                self.mask = _shown_image("Mask (white = may change)", "mask")
                self.strength_map = _shown_image("Strength map (white = the full t0, black = kept)", "strength-map")
            # the canvas's Fill outlines switch: its guide carries the fill already (filling again changes nothing)
            self.fill_outlines = gr.Checkbox(
                False,
                label="Closed outlines filled with their stroke colour",
                interactive=False,
                elem_id="fill-outlines",
            )
            # the same switch: a drawing's thin and small parts start at half the t0 (`sdedit.details`)
            self.keep_details = gr.Checkbox(
                False,
                label="Thin and small details (eyes, rays, wheels) start at half the t0",
                interactive=False,
                elem_id="keep-details",
            )
        with gr.Accordion("t0 sweep: faithful ↔ realistic, for this guide", open=False):
            with gr.Row(equal_height=True):
                self.strengths = gr.Textbox("0.2, 0.4, 0.6, 0.8, 1.0", label="t0 values", elem_id="strengths")
                self.sweep_btn = gr.Button("Run sweep", scale=0, min_width=120, elem_id="sweep")
            gr.Markdown(
                "The same guide and seed at each t0: the guide first, then one column per t0; below, "
                "the paper's faithfulness (L2 distance to the guide; lower = more faithful).",
                elem_classes="hint",
            )
            self.sweep_grid = _sweep_image("Sweep", "sweep-grid")
            self.sweep_plot = _sweep_image("Faithfulness plot", "sweep-plot")
            self.sweep_table = _sweep_table()
        with gr.Accordion("Details (JSON)", open=False):
            self.details = _details()
        self.staged = Staged()
        self.guard = ColumnGuard(shown_for)

    @property
    def edit_outputs(self) -> list:
        """The `/edit` endpoint's outputs, in its documented order: the hidden copies (`Staged`), not the column."""
        s = self.staged
        return [s.gallery, s.animation, s.summary, s.details, self.last_seed]

    @property
    def shown(self) -> list:
        """The column's components that show an edit's result: the staged outputs' counterparts, in their order."""
        return [self.gallery, self.animation, self.summary, self.details]

    @property
    def sweep_outputs(self) -> list:
        """The `/sweep` endpoint's outputs: the hidden copies (`Staged`), not the column."""
        return self.staged.sweep_outputs

    @property
    def sweep_shown(self) -> list:
        """The column's sweep components: the staged sweep outputs' counterparts, in their order."""
        return [self.sweep_grid, self.sweep_plot, self.sweep_table]
