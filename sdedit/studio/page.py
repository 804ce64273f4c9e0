"""The page: the title, the tabs (sdedit.studio.tabs.TABS, in order) with the shared controls under them,
the results column, and the few events that join a tab to the shared panels; `launch` serves it.

Generate and the sweep ask the tab in front for its guide and mask (`Tab.guide`), show them under "What the
model gets", then edit them through the `/edit` (or `/sweep`) endpoint, so the API and the page run the same
code. Gradio cannot read which tab is selected, so `selected_tab` (a State) follows the tabs' select events.
"""

from __future__ import annotations

import os

import gradio as gr
from starlette.middleware import Middleware

from ..configs import default_config
from ..errors import SDEditError
from . import column_guard, limits
from .controls import Controls
from .guard import BodySizeLimit
from .guides import CANVAS_SIZE, to_pil
from .history import History
from .models import check_device, config_for, paint_canvas_size
from .progress import png_file, quoted
from .restore import inputs_from_png, settings_from_png
from .results import Results, edit, edit_on_gpu, sweep
from .tab_results import TabResults, empty_summary
from .tabs import TABS, Tab
from .ui import accept_old_clients, friendly, guard_inputs, user_message

CSS = (
    """
.gradio-container { max-width: 1360px !important; margin: auto; }
#title h1 { margin: 0 0 0.1em 0; }
#title p { margin-top: 0.2em; color: var(--body-text-color-subdued); }
#generate { min-height: 52px; font-size: 1.15em; }
/* the live canvas (sdedit.studio.canvas) uses its block's full width: the canvas stays >= 300 px on a phone */
.block.live-canvas .html-container { padding-left: 0 !important; padding-right: 0 !important; }
.hint, .hint p { font-size: 0.9em; color: var(--body-text-color-subdued); }
/* five shrinkable columns: fixed-size thumbnails would make the page scroll sideways on a phone */
.examples-gallery .grid-container { grid-template-columns: repeat(5, minmax(0, 1fr)) !important; }
.examples-gallery .thumbnail-item { min-width: 0 !important; }
/* the history strip keeps thumbnail-sized columns from its first entry on (Gradio stretches few items) */
#history .grid-container { grid-template-columns: repeat(6, minmax(0, 1fr)) !important; }
#history .thumbnail-item { min-width: 0 !important; }
#history .thumbnail-item img { object-fit: contain !important; }
@media (max-width: 640px) {
  .examples-gallery .grid-container { grid-template-columns: repeat(4, minmax(0, 1fr)) !important; }
  #history .grid-container { grid-template-columns: repeat(4, minmax(0, 1fr)) !important; }
  .examples-gallery .caption-label { display: none; }
}
"""
    + column_guard.CSS
)
# Soft, with quiet grey labels so that the orange Generate button is what stands out.
THEME = gr.themes.Soft(primary_hue="orange", secondary_hue="blue", radius_size="md").set(
    block_label_background_fill="*neutral_100",
    block_label_text_color="*neutral_600",
    block_title_text_color="*neutral_700",
)
TITLE = (
    "# SDEdit Studio\n"
    "Paint rough colour strokes, or paint over a photo, and a diffusion model turns them into a picture "
    "that looks real. **1** paint, or click an example · **2** press **Generate** · **3** keep a result, "
    "or use it as the new guide and go again. "
    "[How it works](https://arxiv.org/abs/2108.01073): SDEdit adds noise to your picture, then removes it "
    "with a model trained on real images."
)
CREDITS = (
    "<small>SDEdit: Meng et al., *Guided Image Synthesis and Editing with Stochastic Differential "
    "Equations*, ICLR 2022. Example photos: Fluent Emoji 3D by Microsoft (MIT). Runs offline on the "
    "embedded model. API: the *Use via API* link below, and docs/app.md.</small>"
)


class Page:
    """The built page: its tabs and shared panels, and the events that join them."""

    def __init__(self):
        cfg = default_config()
        self.tabs: list[Tab] = [cls() for cls in TABS]
        self.by_id = {tab.id: tab for tab in self.tabs}
        # Gradio's cache (uploads, results) is swept every 10 minutes of files older than SDEDIT_CACHE_TTL_S.
        ttl = int(limits.OUTPUT_TTL_S)
        with gr.Blocks(title="SDEdit Studio", delete_cache=(min(600, ttl), ttl)) as self.demo:
            self.selected_tab = gr.State(self.tabs[0].id)
            self.tab_results = TabResults()  # each tab's last result, shown when the tab comes to the front
            self.tab_items: dict[str, gr.Tab] = {}
            gr.Markdown(TITLE, elem_id="title")
            with gr.Row(equal_height=False):
                # ----- left: the guide, the model and its settings ----------------------------------------
                with gr.Column(scale=6, min_width=320):
                    tabs = gr.Tabs(selected=self.tabs[0].id, overflow_behavior="wrap", elem_id=column_guard.TABS_ID)
                    with tabs as self.tabs_block:
                        for tab in self.tabs:
                            with gr.Tab(tab.label, id=tab.id) as self.tab_items[tab.id]:
                                tab.layout(cfg)
                    self.controls = Controls(cfg)
                # ----- right: generate, and the results -------------------------------------------------
                with gr.Column(scale=5, min_width=320, elem_id=column_guard.COLUMN_ID):
                    self.results = Results(cfg, empty_summary(self.tabs[0].label), self.tabs[0].id)
                    self.history = History()
            self.tab_results.bind(self)
            gr.Markdown(CREDITS, elem_id="credits")
            self.connect()
        guard_inputs(self.demo)
        accept_old_clients(self.demo)
        self.demo.queue(default_concurrency_limit=limits.CONCURRENCY, max_size=limits.QUEUE_SIZE)

    # ----- what the model gets, and where a result goes back --------------------------------------------

    @property
    def guide_outputs(self) -> list:
        r = self.results
        return [
            r.guide,
            r.mask,
            r.strength_map,
            r.fill_outlines,
            r.keep_details,
            self.tab_results.made_by,
            self.tab_results.asked_by,
        ]

    def show_guide(self, tab: Tab, guide, mask) -> dict:
        """Updates that show `tab`'s guide and mask as what the model gets (the next edit reads them, and its
        result is filed under `tab`).

        They go out as PNG files of their own: Gradio writes an image output to a file named by its content and
        rewrites that file each time; a tab's own preview of the same image (a composite, a painting), updated
        by another event at the same moment, would rewrite it while the edit reads it.
        """
        return {
            self.results.guide: png_file(guide, "guide"),
            self.results.mask: png_file(mask, "mask"),
            self.results.strength_map: None,
            self.results.fill_outlines: False,
            self.results.keep_details: False,
            self.tab_results.made_by: tab.id,  # not `selected_tab`: the visitor may have moved on meanwhile
            self.tab_results.asked_by: tab.id,
        }

    def guide_in_front(self, values: dict) -> dict:
        """The guide, mask and strength map of the tab in front, from its own components (mask None = change
        everything; strength map None = the same t0 everywhere), and whether its canvas's guide help is on (its
        guide carries the fill already; the edit keeps its details); the result will be filed under that tab."""
        tab_id = values[self.selected_tab]
        tab = self.by_id[tab_id]
        guide, mask, strength_map = tab.guide_and_strength(values)
        r = self.results
        return {
            r.guide: guide,
            r.mask: mask,
            r.strength_map: strength_map,
            r.fill_outlines: tab.fill_outlines(values),
            r.keep_details: tab.fill_outlines(values),  # one switch: fill outlines, keep details
            self.tab_results.made_by: tab_id,
            self.tab_results.asked_by: tab_id,
        }

    # ----- bringing a tab to the front, with its own results -------------------------------------------------

    @property
    def front_outputs(self) -> list:
        return [self.selected_tab, self.tabs_block, *self.tab_results.outputs]

    def front(self, tab_id: str, current: str | None, store: dict | None, made_by: str = "") -> dict:
        """Updates that bring tab `tab_id` to the front; when it was not, the results column shows its last
        result (`TabResults.panel`)."""
        updates = {self.selected_tab: tab_id, self.tabs_block: gr.Tabs(selected=tab_id)}
        if tab_id != current:
            updates.update(self.tab_results.panel(store, tab_id, running=bool(made_by)))
        return updates

    @property
    def result_outputs(self) -> list:
        seen = [c for tab in self.tabs for c in tab.receive_outputs]
        return [*dict.fromkeys(seen), *self.front_outputs]

    def show_result(
        self, image, tab_id: str, store=None, made_by: str = "", front: str | None = None, model=None
    ) -> dict:
        """Put `image` where the guide of tab `tab_id` comes from (the first tab when that one cannot take it),
        and bring that tab to the front (`front`: the tab in front now, `tab_id` when not given); a paint canvas
        takes it at the size of the model in use (`model`)."""
        tab = self.by_id[tab_id]
        side = paint_canvas_size(config_for(model)) if model else CANVAS_SIZE
        updates = tab.receive(image, side)
        if updates is None:
            tab = self.tabs[0]
            updates = tab.receive(image, side)
        return {**updates, **self.front(tab.id, front or tab_id, store, made_by)}

    def use_as_guide(self, results, selected, tab_id, store=None, made_by="", model=None) -> dict:
        """Put the chosen result back where the guide came from, to keep iterating."""
        if not results:
            raise gr.Error("Generate something first: there is no result to use yet.")
        item = results[min(int(selected or 0), len(results) - 1)]
        image = to_pil(item[0] if isinstance(item, (tuple, list)) else item, "result").convert("RGB")
        return self.show_result(image, tab_id, store, made_by, model=model)

    # ----- restoring a result: its settings, seed and guide ------------------------------------------------

    @property
    def restore_outputs(self) -> list:
        seen = [c for tab in self.tabs for c in tab.restore_outputs]
        return [*self.controls.restore_outputs, *dict.fromkeys(seen), *self.front_outputs]

    def restore_guide(
        self, inputs: dict, fill_outlines: bool = False, front: str | None = None, store=None, made_by: str = ""
    ) -> dict:
        """Put a result's guide (mask, strength map) back on the first tab that can hold it exactly, and bring
        that tab to the front (with its results, when `front` was another); {} when there is no guide or no
        tab can hold it. `fill_outlines`: whether the result's outlines were filled (its canvas's switch follows)."""
        if "guide" not in inputs:
            return {}
        for tab in self.tabs:
            updates = tab.restore(inputs["guide"], inputs.get("mask"), inputs.get("strength_map"), fill_outlines)
            if updates is not None:
                return {**updates, **self.front(tab.id, front or tab.id, store, made_by)}
        return {}

    def restore_result(
        self, settings: dict, inputs: dict, current: str, reloaded: bool = False, front=None, store=None, made_by=""
    ) -> dict:
        """Updates that restore a result: its settings and seed into the controls (`restore.settings_from_dict`)
        and its guide back on a canvas; a notice says what came back."""
        # the canvas's switch does both: on only for a result that had both (one filled without kept details
        # restores with it off: its guide carries the fill already, so Generate redoes it)
        fill = bool(settings.get("fill_outlines")) and bool(settings.get("keep_details"))
        updates = self.controls.restore_settings(settings, current)
        updates.update(self.restore_guide(inputs, fill, front, store, made_by))
        s = settings
        words = [f"t0 {s.get('strength')}", f"{s.get('sampler')}", f"{s.get('steps')} steps", f"seed {s.get('seed')}"]
        if s.get("prompt"):
            words.append(f"prompt {quoted(s['prompt'])}")
        if s.get("samples", 1) > 1:
            own = f", seed {s['own_seed']}" if "own_seed" in s else ""
            words.append(f"{s['samples']} samples (this one is number {s.get('sample', 0) + 1}{own})")
        tab = updates.get(self.selected_tab)
        if tab is not None:
            words.append(f"its guide is back on {self.by_id[tab].label!r}")
        elif inputs:
            words.append("its guide fits no canvas (made through the API?)")
        elif reloaded:
            words.append("its guide comes back when you drop its downloaded PNG on the app")
        else:
            words.append("no guide: only PNGs saved since guides are carried have one")
        gr.Info("Restored: " + ", ".join(words) + ".")
        return updates

    def restore_png(self, path, current, front=None, store=None, made_by="") -> dict:
        """A dropped result PNG restored (`restore_result`); a PNG without settings is refused in words."""
        if path is None:
            return gr.skip()
        try:
            settings, inputs = settings_from_png(path), inputs_from_png(path)
        except SDEditError as exc:
            gr.Warning(user_message(exc), title="Nothing to restore from this image")
            return {self.controls.restore_png: None}
        # the drop zone is emptied, ready for the next PNG
        restored = self.restore_result(settings, inputs, current, front=front, store=store, made_by=made_by)
        return {**restored, self.controls.restore_png: None}

    # ----- events -----------------------------------------------------------------------------------------

    @property
    def settings_inputs(self) -> list:
        c, r = self.controls, self.results
        return [
            c.model,
            r.strength,
            c.sampler,
            c.steps,
            c.repeats,
            r.num_samples,
            r.seed,
            c.snr,
            c.mask_dilation,
            c.mask_feather,
        ]

    @property
    def text_inputs(self) -> list:
        """The prompt, negative prompt and guidance: the last inputs of `/edit` and `/sweep`."""
        c = self.controls
        return [c.prompt, c.negative_prompt, c.guidance]

    def confirmed(self, event):
        """`event`, then the check that a model made for a GPU runs on a CPU only once the visitor said so
        (`models.check_device`): the page's own step, before `/edit` or `/sweep`, never the API's."""
        c, r = self.controls, self.results
        checked = event.success(
            friendly(check_device),
            [c.model, c.run_on_cpu, r.strength, c.steps, c.repeats, r.num_samples, c.guidance],
            None,
            concurrency_limit=None,  # through the queue (unqueued, its refusal showed no dialog), never waiting
            api_visibility="private",
            show_progress="hidden",
        )
        # nothing runs: the guide shown is no request's (TabResults files a result under `made_by`)
        checked.failure(lambda: "", None, self.tab_results.made_by, queue=False, api_visibility="private")
        return checked

    def then_edit(self, event, api_name: str | None = None):
        """After a guide and mask are in place, edit them (the public `/edit` endpoint when `api_name` is set).

        The edit writes into the hidden copies of the results (`results.Staged`), its progress shown on the
        column's gallery; `TabResults` moves its outputs into the column while their tab is in front."""
        r = self.results
        inputs = [r.guide, r.mask, *self.settings_inputs, r.strength_map, r.fill_outlines, r.auto_strength, r.rank]
        edited = self.confirmed(event).success(
            edit_on_gpu if limits.ZERO_GPU else edit,
            [*inputs, *self.text_inputs, r.keep_details],
            r.edit_outputs,
            api_name=api_name,
            api_visibility="public" if api_name else "private",
            show_progress_on=[r.gallery],
            concurrency_limit=limits.EDIT_CONCURRENCY,
            concurrency_id="edit",
        )
        self.edit_events.append(edited)  # the history strip follows every edit (History.connect)
        return edited.success(lambda: 0, None, r.selected, queue=False, api_visibility="private")

    def connect(self) -> None:
        r, c = self.results, self.controls
        self.edit_events = []
        guide_inputs = {self.selected_tab, *(comp for tab in self.tabs for comp in tab.guide_inputs)}
        guide_in_front = friendly(self.guide_in_front)
        shown = self.guide_outputs
        fronts = [self.tab_results.store, self.tab_results.made_by]
        for tab in self.tabs:

            def bring_to_front(store, made_by, current, tab_id=tab.id) -> dict:
                return self.front(tab_id, current, store, made_by)

            self.tab_items[tab.id].select(
                bring_to_front,
                [*fronts, self.selected_tab],
                self.front_outputs,
                queue=False,
                api_visibility="private",
                show_progress="hidden",
            )
        self.then_edit(
            r.generate_btn.click(guide_in_front, guide_inputs, shown, api_visibility="private", show_progress="hidden"),
            "edit",
        )
        self.sweep_event = self.confirmed(
            r.sweep_btn.click(guide_in_front, guide_inputs, shown, api_visibility="private", show_progress="hidden")
        ).success(
            sweep,
            [
                r.guide,
                r.mask,
                c.model,
                r.strengths,
                c.sampler,
                c.steps,
                c.repeats,
                r.seed,
                c.snr,
                c.mask_dilation,
                c.mask_feather,
                r.strength_map,
                r.fill_outlines,
                *self.text_inputs,
                r.keep_details,
            ],
            r.sweep_outputs,  # hidden copies, as the edit's: `TabResults` shows them while their tab is in front
            api_name="sweep",
            show_progress_on=r.sweep_shown,
        )
        r.use_as_guide_btn.click(
            self.use_as_guide,
            [r.gallery, r.selected, self.selected_tab, *fronts, c.loaded_model],
            self.result_outputs,
            api_visibility="private",
        )
        for tab in self.tabs:
            tab.connect(self)
        c.connect(self)
        self.tab_results.connect(self)
        restore_inputs = [c.restore_png, c.loaded_model, self.selected_tab, *fronts]
        c.restore_png.upload(
            self.restore_png,
            restore_inputs,
            [*self.restore_outputs, c.restore_png],
            queue=False,
            api_visibility="private",
        )
        self.history.connect(self)


def build_page() -> Page:
    return Page()


def build_demo() -> gr.Blocks:
    return build_page().demo


def launch(demo: gr.Blocks, port: int | None = None, host: str | None = None, **kwargs):
    """Launch on 127.0.0.1 unless told otherwise (a Space sets GRADIO_SERVER_NAME=0.0.0.0).

    Uploads are limited per file (Gradio's max_file_size) and every other request body by BodySizeLimit.
    show_error: Gradio's own request checks (a malformed file reference, a wrong JSON type) say what was
    wrong; our handlers never show more than `ui.as_gr_error` gives.
    """
    upload = int(limits.MAX_UPLOAD_MB * 1e6)
    limit = dict(max_bytes=int(limits.MAX_REQUEST_MB * 1e6), upload_bytes=4 * upload + 1_000_000)
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
