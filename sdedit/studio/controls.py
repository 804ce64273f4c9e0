"""The shared controls under the tabs: the model, its card, the prompt, the sampler and steps, and the advanced
knobs.

They follow the model: picking one loads it and shows its defaults, samplers, note and palette; a model
that fails to load is named in a warning and the current one stays. A model that takes text shows a prompt box
(and under Advanced a negative prompt and the guidance scale, where its guidance takes them); a model that
needs a GPU, on a server without one, shows what an edit costs here and a box to run it anyway.
"""

from __future__ import annotations

import logging

import gradio as gr

from ..configs import ModelConfig, default_config, traits
from ..errors import SDEditError
from ..latent import MAX_GUIDANCE, MAX_PROMPT_CHARS
from . import limits
from .models import (
    config_for,
    default_steps,
    get_pipeline,
    model_card,
    model_choices,
    model_note,
    needs_confirmation,
    sampler_choices,
    strength_info,
    work_hint,
)
from .ui import user_message

log = logging.getLogger("sdedit.app")


def steps_for_sampler(name, sampler):
    return default_steps(name, sampler)


def hint_for(name, sampler, strength, steps, repeats, num_samples, snr, guidance=None):
    """The cost line under the sampler settings, for the model chosen (empty while it is not known)."""
    try:
        return work_hint(name, sampler, strength, steps, repeats, num_samples, snr, guidance)
    except SDEditError:
        return ""


def load_model(name, current) -> tuple[str, ModelConfig, str]:
    """(model now in use, its config, a warning to show first or ""): `name` loaded, or the current one kept.

    Anything at all that goes wrong keeps the current model: the app must keep working on it.
    """
    try:
        get_pipeline(name)
        return name, config_for(name), ""
    except Exception as exc:
        message = user_message(exc) if isinstance(exc, SDEditError) else f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, SDEditError):
            log.exception("loading model %r failed", name)
        gr.Warning(message, duration=15, title=f"Could not load {name}")
        kept = current or default_config().name
        cfg = config_for(kept)
        return kept, cfg, f"⚠️ **Could not load {name}.** {message} Still using {cfg.label}. "


class OptionalSlider(gr.Slider):
    """A slider for an optional API input whose default is the model's: it may hold None (hidden, for a model that
    takes no such value), which passes as None, so the handler's default applies (gr.Slider would refuse None, and
    turn an initial None into its minimum, which API clients would then send as the default). Any other value is
    checked as a slider's."""

    is_template = True  # drawn by gradio's own slider

    def preprocess(self, payload):
        return None if payload is None else super().preprocess(payload)

    def postprocess(self, value):
        return None if value is None else super().postprocess(value)


GUIDANCE_WORDS = {
    "cfg": "How closely the picture follows the prompt (classifier-free guidance: 1 = not at all, 7.5 is usual; "
    "above 1 each step runs the network twice).",
    "embedded": "How closely the picture follows the prompt (an input of this distilled network: 1 = not at all).",
}


def prompt_box(label: str, info: str, elem_id: str, lines: int, **kwargs) -> gr.Textbox:
    """A prompt's text box. Its value is None, not "", until something is typed: API clients that leave the input
    out then send None, the model's default."""
    return gr.Textbox(
        None,
        label=label,
        info=info,
        lines=lines,
        max_lines=3 * lines,
        max_length=MAX_PROMPT_CHARS,
        elem_id=elem_id,
        **kwargs,
    )


def text_updates(cfg: ModelConfig) -> tuple[dict, dict, dict]:
    """What the prompt box, the negative prompt and the guidance slider show for a model: the prompt for every
    text model, the negative prompt where classifier-free guidance uses it, the guidance where the model takes
    one (at the model's default; hidden and None, the model's own default, for turbo models and models without
    text)."""
    t = traits(cfg)
    guided = t.guidance != "none"
    return (
        {"visible": t.takes_text},
        {"visible": t.guidance == "cfg"},
        {
            "visible": guided,
            "value": t.guidance_scale if guided else None,
            "info": GUIDANCE_WORDS.get(t.guidance),
        },
    )


class Controls:
    """The model and settings column below the tabs."""

    def __init__(self, cfg: ModelConfig):
        d = cfg.defaults
        self.loaded_model = gr.State(cfg.name)
        self.model = gr.Dropdown(
            model_choices(),
            value=cfg.name,
            label="Model",
            allow_custom_value=limits.custom_models_allowed(),
            info="Or type a Hugging Face model id." if limits.custom_models_allowed() else None,
            elem_id="model",
        )
        self.note = gr.Markdown(model_note(cfg), elem_id="model-note", elem_classes="hint")
        prompt, negative, guidance = text_updates(cfg)
        self.run_on_cpu = gr.Checkbox(
            False,
            label="Run it on this CPU anyway (minutes per edit)",
            visible=needs_confirmation(cfg),
            elem_id="run-on-cpu",
        )
        self.prompt = prompt_box(
            "Prompt",
            "What the picture should show, in a few words or phrases.",
            "prompt",
            lines=2,
            placeholder="a red vintage sports car, studio photo",
            **prompt,
        )
        self.kept_text = gr.State(("", ""))  # a text model's prompts while a model without text is chosen
        with gr.Accordion("About this model", open=False):
            self.card = gr.Markdown(model_card(cfg), elem_id="model-card")
        with gr.Accordion("Sampler and steps", open=False):
            with gr.Row():
                self.sampler = gr.Dropdown(
                    sampler_choices(cfg),
                    value=cfg.defaults.sampler,
                    label="Sampler",
                    min_width=160,
                    elem_id="sampler",
                )
                self.steps = gr.Slider(
                    1,
                    limits.MAX_STEPS,
                    cfg.defaults.num_inference_steps,
                    step=1,
                    label="Steps (of a full schedule)",
                    min_width=200,
                    elem_id="steps",
                )
            self.repeats = gr.Slider(
                1,
                limits.MAX_REPEATS,
                cfg.defaults.repeats,
                step=1,
                label="K repeats",
                info="Run SDEdit again on its own output: more realistic, less faithful (paper: 1 to 3).",
                elem_id="repeats",
            )
            self.hint = gr.Markdown(
                work_hint(cfg.name, d.sampler, d.strength, d.num_inference_steps, d.repeats, 1, d.snr),
                elem_classes="hint",
            )
            self.paper_btn = gr.Button("Use the paper's settings (slow on a CPU)", size="sm")
        with gr.Accordion("Advanced", open=False):
            self.negative_prompt = prompt_box(
                "Negative prompt",
                "What the picture should not show (acts through classifier-free guidance, above 1).",
                "negative-prompt",
                lines=1,
                **negative,
            )
            self.guidance = OptionalSlider(
                1, MAX_GUIDANCE, step=0.5, label="Guidance scale", elem_id="guidance", **guidance
            )
            self.snr = gr.Slider(
                0,
                0.3,
                cfg.defaults.snr,
                step=0.005,
                label="VE corrector snr (0 = off; the paper used 0.075)",
                visible=cfg.sde == "ve",
            )
            with gr.Row():
                self.mask_dilation = gr.Slider(
                    0, 32, 0, step=1, label="Mask dilation (px)", info="Grow the mask.", elem_id="mask-dilation"
                )
                self.mask_feather = gr.Slider(
                    0,
                    32,
                    2,
                    step=1,
                    label="Mask feather (px)",
                    info="Soften its edge so the edit blends in.",
                    elem_id="mask-feather",
                )

        self.restore_png = gr.File(
            label="Restore a result from its PNG",  # one line: a wrapped label pushes the drop zone out of its box
            file_types=[".png"],
            type="filepath",
            height=120,
            elem_id="restore-png",
        )

        self.sampler.input(
            steps_for_sampler, [self.model, self.sampler], self.steps, queue=False, api_visibility="private"
        )

    def text_settings(self, cfg: ModelConfig, prompt="", negative="", kept=("", "")) -> dict:
        """The prompt boxes and guidance for model `cfg`. A model without text gets none of them (the page must
        not send it a prompt): the prompts typed for a text model are kept aside and come back with the next
        text model, unless something new was typed meanwhile."""
        p, n, g = text_updates(cfg)
        prompt, negative = prompt or "", negative or ""
        kept = tuple(kept) if isinstance(kept, (list, tuple)) and len(kept) == 2 else ("", "")
        if cfg.takes_text:
            if not prompt and not negative:
                prompt, negative = kept
            kept = ("", "")
        else:
            kept = (prompt, negative) if prompt or negative else kept
            prompt = negative = ""
        return {
            self.prompt: gr.update(value=prompt, **p),
            self.negative_prompt: gr.update(value=negative if n["visible"] else "", **n),
            self.guidance: gr.update(**g),
            self.run_on_cpu: gr.update(value=False, visible=needs_confirmation(cfg)),
            self.kept_text: kept,
        }

    @property
    def text_outputs(self) -> list:
        return [self.prompt, self.negative_prompt, self.guidance, self.run_on_cpu, self.kept_text]

    def connect(self, page) -> None:
        """The events that reach the results column (strength, samples, seed). The canvases follow the model's
        palette on their own (`canvas.follow_settings`)."""
        strength, num_samples = page.results.strength, page.results.num_samples

        def model_settings(name, current, prompt="", negative="", kept=("", "")) -> dict:
            """Load the chosen model and show its defaults (and its prompt boxes, `text_settings`); on failure, say
            why and keep the current one.

            Runs on every change of the dropdown, including the revert it makes itself: the same model again is
            a no-op.
            """
            if name == current:
                return gr.skip()
            name, cfg, warning = load_model(name, current)
            d = cfg.defaults
            return {
                **self.text_settings(cfg, prompt, negative, kept),
                self.model: name,
                self.loaded_model: name,
                self.note: warning + model_note(cfg),
                self.card: model_card(cfg),
                strength: gr.Slider(value=d.strength, info=strength_info(cfg)),
                self.sampler: gr.Dropdown(choices=sampler_choices(cfg), value=d.sampler),
                self.steps: d.num_inference_steps,
                self.repeats: d.repeats,
                self.snr: gr.Slider(value=d.snr, visible=cfg.sde == "ve"),
            }

        self.model_settings = model_settings
        self.model.change(
            model_settings,
            [self.model, self.loaded_model, self.prompt, self.negative_prompt, self.kept_text],
            [
                self.model,
                self.loaded_model,
                self.note,
                self.card,
                strength,
                self.sampler,
                self.steps,
                self.repeats,
                self.snr,
                *self.text_outputs,
            ],
            api_visibility="private",
        )

        seed = page.results.seed

        def restore_settings(s: dict, current) -> dict:
            """A result's settings (`restore.settings_from_dict`) into the controls: its model (loaded first),
            t0, sampler, steps, repeats, snr, samples, seed, mask dilation and feather (those it carries), and a
            text model's prompt, negative prompt and guidance scale."""
            name, cfg, warning = load_model(s.get("model") or current, current)
            updates = {self.model: name, self.loaded_model: name}
            if name != current or warning:
                updates.update({self.note: warning + model_note(cfg), self.card: model_card(cfg)})
            if warning:  # the PNG's model could not be loaded: its other settings would not fit the one kept
                return updates
            updates[self.sampler] = gr.Dropdown(
                choices=sampler_choices(cfg), value=s.get("sampler", cfg.defaults.sampler)
            )
            for key, comp in (
                ("strength", strength),
                ("steps", self.steps),
                ("repeats", self.repeats),
                ("seed", seed),
                ("samples", num_samples),
                ("mask_dilation", self.mask_dilation),
                ("mask_feather", self.mask_feather),
            ):
                if key in s:
                    updates[comp] = s[key]
            updates[self.snr] = gr.Slider(value=s.get("snr") or 0.0, visible=cfg.sde == "ve")
            updates.update(self.text_settings(cfg, s.get("prompt", ""), s.get("negative_prompt", "")))
            if cfg.takes_text and "guidance" in s:
                updates[self.guidance] = {**updates[self.guidance], "value": s["guidance"]}
            return updates

        self.restore_settings = restore_settings
        self.restore_outputs = [
            self.model,
            self.loaded_model,
            self.note,
            self.card,
            self.sampler,
            strength,
            self.steps,
            self.repeats,
            seed,
            num_samples,
            self.snr,
            self.mask_dilation,
            self.mask_feather,
            *self.text_outputs,
        ]

        def paper_settings(name) -> dict:
            p = config_for(name).paper
            return {
                strength: p.strength,
                self.sampler: p.sampler,
                self.steps: p.num_inference_steps,
                self.repeats: p.repeats,
            }

        self.paper_btn.click(
            paper_settings,
            self.model,
            [strength, self.sampler, self.steps, self.repeats],
            queue=False,
            api_visibility="private",
        )
        gr.on(
            [
                strength.change,
                self.steps.change,
                self.repeats.change,
                num_samples.change,
                self.snr.change,
                self.model.change,
                self.sampler.change,
                self.guidance.input,  # the visitor's moves (see `canvas.follow_settings`)
            ],
            hint_for,
            [self.model, self.sampler, strength, self.steps, self.repeats, num_samples, self.snr, self.guidance],
            self.hint,
            queue=False,
            api_visibility="private",
            show_progress="hidden",
        )
