"""Gradio glue shared by every panel: errors shown as dialogs, progress bars, the ZeroGPU decorator, the
examples strip, and Gradio's own input checks made to speak.

The error discipline: a handler wrapped in `friendly` shows an `SDEditError`'s own message as is (it names
the value and what is allowed), an out-of-memory in words, and anything else as a one-line apology while the
traceback goes to the server's log only.
"""

from __future__ import annotations

import functools
import inspect
import logging

import gradio as gr

from ..errors import BusyError, ModelLoadError, ModelNotFoundError, OutOfMemoryError, SDEditError
from . import limits
from .guard import explain_rejected_value, free_memory, is_out_of_memory, slips_past_a_range_check

log = logging.getLogger("sdedit.app")


def gpu(duration: int):
    """`spaces.GPU(duration)` on a ZeroGPU Space; elsewhere (or without the package) the function as it is.

    app.py imports `spaces` before anything imports torch, as ZeroGPU needs; this only looks it up.
    """
    try:
        import spaces
    except ImportError:
        return lambda fn: fn
    return spaces.GPU(duration=duration)


def user_message(exc: BaseException) -> str:
    """An SDEditError's message, capitalised for a dialog."""
    text = str(exc).strip() or type(exc).__name__
    return text[0].upper() + text[1:]


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
        return gr.Error(user_message(exc), title=title, print_exception=False)
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


def accept_old_clients(demo: gr.Blocks) -> None:
    """Let a client that sends a public endpoint's inputs as they were before optional ones were appended keep
    working: the missing trailing inputs count as not given (None, so the handler's default applies).

    gradio_client fills them from the API's description by itself; a raw HTTP call (POST /gradio_api/call/edit
    with the old number of values) would otherwise be refused by Gradio for "not enough input values".
    Only inputs whose handler parameter has a default may be left out.
    """
    optional: dict[int, int] = {}  # block_fn id -> how many leading inputs are required
    for fn in demo.fns.values():
        if fn.fn is None or fn.api_visibility != "public":
            continue
        params = list(inspect.signature(fn.fn).parameters.values())[: len(fn.inputs)]
        required = sum(1 for p in params if p.default is inspect.Parameter.empty)
        if required < len(fn.inputs):
            optional[id(fn)] = required
    validate = demo.validate_inputs

    def validate_inputs(block_fn, inputs: list) -> None:
        required = optional.get(id(block_fn))
        if required is not None and required <= len(inputs) < len(block_fn.inputs):
            inputs.extend([None] * (len(block_fn.inputs) - len(inputs)))  # read in place by preprocess_data
        validate(block_fn, inputs)

    demo.validate_inputs = validate_inputs


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

    integer = getattr(block, "precision", None) == 0 or getattr(block, "step", None) == 1

    def preprocess(payload):
        try:
            if kind == "number" and slips_past_a_range_check(payload, integer):
                raise ValueError(payload)  # NaN and bools pass Gradio's range check, a fraction would be rounded
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
                integer,
                limits.MAX_MEGAPIXELS,
            )
            raise gr.Error(f"{name}: {problem}", title="Please check", print_exception=False) from None

    return preprocess
