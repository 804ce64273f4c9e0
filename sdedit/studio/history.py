"""This visitor's results: a history strip that survives a reload, a before/after slider, and t0 from the sweep.

The history is a `gr.State` (one list per open page, newest first) shown as a strip of thumbnails;
clicking one shows it against its guide in the before/after slider and restores it from its PNG: settings,
seed and guide (`Page.restore_result`). Clicking a column of the t0 sweep's grid sets t0 to that column's
value.

A compact copy (each entry's settings and two small JPEG thumbnails, result and guide, as data URLs, and the
guide itself, with its mask and map, when they are small: `SMALL_INPUTS` bytes of PNG, as painted strokes
are; at most `SAVED_MAX` entries and `SAVED_BYTES` in all, the oldest dropped first) lives in the browser's
localStorage (`gr.BrowserState`), so the strip comes back after a reload of the page. The result files
themselves live in Gradio's cache, swept by age, and the browser's copy is data the visitor could have
changed: it never names a server file, and everything in it is checked as a dropped PNG's would be. So an
entry brought back by a reload restores settings and seed, shows its thumbnails, and puts its guide back
when it was small enough to keep; a photo's guide comes back from the downloaded PNG.
"""

from __future__ import annotations

import base64
import io
import json

import gradio as gr
from PIL import Image

from ..errors import InputError, SDEditError
from ..recall import INPUT_CHUNKS, read_inputs, read_settings
from . import limits
from .column_guard import TAB_RESULT
from .restore import FIELDS, decode_inputs, inputs_from_png, settings_from_dict, settings_from_png

MAX_HISTORY = 48  # results kept per visitor (their files live in Gradio's cache, swept by age)
SAVED_MAX = 24  # entries kept in the browser across reloads
SAVED_BYTES = 600_000  # their JSON at most (localStorage holds about 5 MB per site, shared with Gradio's own)
SMALL_INPUTS = 16_000  # an entry keeps its guide, mask and map (PNG bytes together) up to this: painted strokes
THUMB_SIDE = 128  # thumbnails: px of their longer side
MAX_THUMB_CHARS = 60_000  # a thumbnail's data URL read back from the browser, at most
SAVED_KEYS = {"model", *(key for key, _, _ in FIELDS)}  # the settings an entry keeps (what restore reads)


def path_of(item) -> str | None:
    """The file behind a gallery item: a (media, caption) pair or the media; a path or a PIL image opened
    from Gradio's cache (its `filename`)."""
    media = item[0] if isinstance(item, (tuple, list)) else item
    if isinstance(media, dict):
        media = media.get("path") or media.get("image")
    if isinstance(media, str):
        return media
    return getattr(media, "filename", None) or None


def thumbnail(source) -> str | None:
    """A small JPEG of an image file (or image) as a data URL; None when it cannot be read."""
    try:
        image = source if isinstance(source, Image.Image) else Image.open(source)
        image = image.convert("RGB")
        image.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.LANCZOS)
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=85)
    except (OSError, ValueError):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _settings_of_file(path: str) -> dict:
    try:
        s = read_settings(path)
    except SDEditError:
        return {}
    return {k: v for k, v in s.items() if k in SAVED_KEYS}


def _small_inputs(path: str) -> dict[str, str] | None:
    """A result's guide, mask and map as PNG data URLs, when together they are at most SMALL_INPUTS bytes."""
    try:
        inputs = read_inputs(path)
    except SDEditError:
        return None
    if not inputs or sum(len(v) for v in inputs.values()) > SMALL_INPUTS:
        return None
    return {k: "data:image/png;base64," + base64.b64encode(v).decode("ascii") for k, v in inputs.items()}


def _decode_inputs(urls) -> dict[str, Image.Image]:
    """An entry's kept guide, mask and map (data URLs from the browser) -> images; {} when absent or bad."""
    from .live import decode_data_url

    if not isinstance(urls, dict) or "guide" not in urls:
        return {}
    try:
        raw = {k: decode_data_url(v, k, 4 * SMALL_INPUTS // 3 + 100) for k, v in urls.items() if k in INPUT_CHUNKS}
        return decode_inputs({k: v for k, v in raw.items() if v})
    except (SDEditError, ValueError):
        return {}


def add_results(history: list | None, gallery, guide, thumbs: bool = True, tab: str = "") -> list[dict]:
    """The history with this edit's results in front (newest first), each with the guide it came from, its
    settings, the label of the tab that made it (`tab`, first in its caption) and (`thumbs`) the thumbnails
    the browser keeps across reloads."""
    new = []
    guide = guide if isinstance(guide, str) else None
    guide_thumb = thumbnail(guide) if thumbs and guide else None
    items = [(path_of(item), item) for item in gallery or []]
    items = [(path, item) for path, item in items if path]
    # one edit's samples all carry the same guide, mask and map (`jobs.EditResult.png_files`): read them once
    inputs = _small_inputs(items[0][0]) if thumbs and items else None
    for path, item in items:
        caption = item[1] if isinstance(item, (tuple, list)) and len(item) > 1 else ""
        caption = " · ".join(c for c in (tab, caption) if c)
        entry = {"image": path, "guide": guide, "caption": caption, "tab": tab, "settings": _settings_of_file(path)}
        if thumbs:
            entry.update(thumb=thumbnail(path), guide_thumb=guide_thumb, inputs=inputs)
        new.append(entry)
    return (new + list(history or []))[:MAX_HISTORY]


def _decode_thumb(url) -> Image.Image | None:
    from .live import decode_data_url

    if not url:
        return None
    try:
        data = decode_data_url(url, "thumbnail", MAX_THUMB_CHARS)
        from ..imaging import load_image

        image = load_image(data, "thumbnail", limits.APP_LIMITS.image)
    except (SDEditError, ValueError):
        return None
    return image.convert("RGB") if max(image.size) <= 2 * THUMB_SIDE else None


def strip(history: list[dict]) -> list[tuple]:
    """The strip's items: the result file, or for an entry brought back by a reload its thumbnail."""
    out = []
    for h in history:
        shown = h.get("image") or _decode_thumb(h.get("thumb"))
        if shown is not None:
            out.append((shown, h.get("caption") or ""))
    return out


def saved(history: list[dict]) -> list[dict]:
    """What the browser keeps: each entry's settings, thumbnails and caption (no server paths), newest first,
    at most SAVED_MAX entries and SAVED_BYTES of JSON; the oldest are dropped first."""
    out, size = [], 2
    for h in history[:SAVED_MAX]:
        if not h.get("thumb"):
            continue
        entry = {k: h.get(k) for k in ("settings", "thumb", "guide_thumb", "caption", "inputs")}
        n = len(json.dumps(entry)) + 1
        if size + n > SAVED_BYTES:
            break
        out.append(entry)
        size += n
    return out


def from_saved(value) -> list[dict]:
    """The history entries a browser kept (`saved`), checked: this is data from the visitor, so every entry
    is a dict whose settings read as a PNG's would and whose thumbnails decode as small images; others are
    dropped. No entry names a server file."""
    if not isinstance(value, list):
        return []
    out = []
    for raw in value[:SAVED_MAX]:
        if not isinstance(raw, dict) or not isinstance(raw.get("settings"), dict):
            continue
        settings = {k: v for k, v in raw["settings"].items() if k in SAVED_KEYS and isinstance(v, (str, int, float))}
        try:
            settings_from_dict(settings)
        except InputError:
            continue
        thumb = raw.get("thumb")
        if _decode_thumb(thumb) is None:
            continue
        guide_thumb = raw.get("guide_thumb") if _decode_thumb(raw.get("guide_thumb")) is not None else None
        caption = raw.get("caption") if isinstance(raw.get("caption"), str) else ""
        inputs = raw.get("inputs") if _decode_inputs(raw.get("inputs")) else None
        entry = {"image": None, "guide": None, "caption": caption[:60], "settings": settings, "inputs": inputs}
        out.append({**entry, "thumb": thumb, "guide_thumb": guide_thumb})
    return out


def before_after(guide, result) -> tuple | None:
    """The slider's value: the guide left, the result right (None when either is missing)."""
    if not guide or not result:
        return None
    return (guide, result)


def t0_at(x: float, width: int, strengths: list[float]) -> float | None:
    """The t0 of the sweep grid's column under pixel column `x` (the guide's column first: None there)."""
    if not strengths or width <= 0:
        return None
    col = int(x * (len(strengths) + 1) // width)
    return None if col < 1 else float(strengths[min(col, len(strengths)) - 1])


def sweep_strengths(table) -> list[float]:
    """The t0 values of the sweep's table (a DataFrame, a dict with "data", or rows)."""
    if table is None:
        return []
    if isinstance(table, dict):
        rows = table.get("data") or []
    elif hasattr(table, "to_numpy"):  # a pandas DataFrame
        rows = table.to_numpy().tolist()
    else:
        rows = table
    out = []
    for row in rows:
        try:
            out.append(float(row[0]))
        except (TypeError, ValueError, IndexError):
            continue
    return out


EMPTY = (
    "**History** · your results line up here, newest first: click one to see it against its guide and get its "
    "settings back."
)


class History:
    """The history strip and the before/after slider, under the results."""

    def __init__(self):
        self.state = gr.State([])
        # the browser's copy (`saved`); its secret is drawn per server process, so a restarted server starts
        # a visitor's strip afresh instead of reading what it cannot decrypt
        self.saved = gr.BrowserState([], storage_key="sdedit-history")
        self.slider = gr.ImageSlider(
            type="filepath",
            format="png",
            image_mode=None,
            label="Before / after: the guide and the selected result",
            interactive=False,
            elem_id="before-after",
            elem_classes=TAB_RESULT,
        )
        # before the first result the strip is a line of words, not an empty box
        self.empty = gr.Markdown(EMPTY, elem_id="history-empty", elem_classes="hint")
        self.gallery = gr.Gallery(
            label="History (this visit): click one to see it and get its settings back",
            format="png",
            type="filepath",
            columns=6,
            rows=1,
            height=170,
            allow_preview=False,
            interactive=False,
            visible=False,
            elem_id="history",
        )

    def shown(self, history: list[dict]) -> tuple:
        """The strip and its empty state: the thumbnails once there is one, the words before."""
        items = strip(history)
        return gr.Gallery(value=items, visible=bool(items)), gr.Markdown(visible=not items)

    def connect(self, page) -> None:
        """Fill the strip after each edit; clicking a thumbnail (history or results) shows it; the sweep's
        grid sets t0. Called after the controls are connected (it reuses their restore)."""
        r, c = page.results, page.controls

        labels = {tab.id: tab.label for tab in page.tabs}

        def remember(history, gallery, guide, asked_by=""):
            """The strip after an edit (its entries name the tab that made them, `asked_by`), from the edit's own
            outputs (`results.Staged`: the column may show another tab's result); the before/after slider is the
            results column's (`tab_results`)."""
            history = add_results(history, gallery, guide, tab=labels.get(asked_by, ""))
            return history, *self.shown(history), saved(history)

        self.remember = remember
        for event in page.edit_events:
            event.success(
                remember,
                [self.state, r.staged.gallery, r.guide, page.tab_results.asked_by],
                [self.state, self.gallery, self.empty, self.saved],
                queue=False,
                api_visibility="private",
                show_progress="hidden",
            )

        def reload(history, kept):
            """A new page (a reload): the strip the browser kept comes back."""
            if history:
                return gr.skip()
            history = from_saved(kept)
            return (history, *self.shown(history)) if history else gr.skip()

        self.reload = reload
        page.demo.load(
            reload,
            [self.state, self.saved],
            [self.state, self.gallery, self.empty],
            queue=False,
            api_visibility="private",
        )

        def show_result(guide, gallery, shown_for, evt: gr.SelectData):
            """A result picked in the column: the slider compares it with its guide. The column's tab goes back
            with it (`ColumnGuard`): a tab switched to meanwhile hides it and shows its own."""
            items = gallery or []
            if not items:
                return gr.skip()
            return shown_for, before_after(guide, path_of(items[min(evt.index, len(items) - 1)]))

        r.gallery.select(  # the guard first: the page applies it before the slider (`ColumnGuard`)
            show_result, [r.guide, r.gallery, r.guard], [r.guard, self.slider], queue=False, api_visibility="private"
        )

        def pick(history, current, evt: gr.SelectData, front=None, store=None, made_by=""):
            """A thumbnail clicked: the result from its PNG (settings, seed, guide back on its canvas), or for an
            entry a reload brought back, its settings and seed. The slider shows it, whichever tab its guide
            goes back on."""
            if not history:
                return gr.skip()
            h = history[min(evt.index, len(history) - 1)]
            try:
                settings, inputs = settings_from_png(h["image"]), inputs_from_png(h["image"])
                shown = before_after(h.get("guide"), h["image"])
            except (SDEditError, KeyError, TypeError):  # brought back by a reload, or its file swept from the cache
                try:
                    settings, inputs = settings_from_dict(h.get("settings") or {}), _decode_inputs(h.get("inputs"))
                except SDEditError as exc:
                    gr.Warning(str(exc), title="This result cannot be restored")
                    return gr.skip()
                shown = before_after(_decode_thumb(h.get("guide_thumb")), _decode_thumb(h.get("thumb")))
            updates = page.restore_result(
                settings, inputs, current, reloaded=not inputs, front=front, store=store, made_by=made_by
            )
            return {**updates, self.slider: shown}

        self.pick = pick
        fronts = [page.selected_tab, page.tab_results.store, page.tab_results.made_by]
        self.gallery.select(
            pick,
            [self.state, c.loaded_model, *fronts],
            list(dict.fromkeys([*page.restore_outputs, self.slider])),
            queue=False,
            api_visibility="private",
        )

        def sweep_t0(grid, table, evt: gr.SelectData):
            strengths = sweep_strengths(table)
            width = grid.shape[1] if hasattr(grid, "shape") else 0
            t0 = t0_at(evt.index[0], width, strengths) if evt.index else None
            if t0 is None:
                return gr.skip()
            gr.Info(f"t0 set to {t0:g}")
            return t0

        r.sweep_grid.select(sweep_t0, [r.sweep_grid, r.sweep_table], r.strength, queue=False, api_visibility="private")
