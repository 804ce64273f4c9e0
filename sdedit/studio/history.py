"""This visitor's results in this session: a history strip, a before/after slider, and t0 from the sweep.

The history is a `gr.State` (one list per browser session, newest first) shown as a strip of thumbnails;
clicking one shows it against its guide in the before/after slider and restores its settings and seed from
the PNG's own text chunks (`sdedit.studio.restore`). Clicking a column of the t0 sweep's grid sets t0 to
that column's value.
"""

from __future__ import annotations

import gradio as gr

MAX_HISTORY = 48  # results kept per visitor (their files live in Gradio's cache, swept by age)


def path_of(item) -> str | None:
    """The file behind a gallery item: a (media, caption) pair or the media; a path or a PIL image opened
    from Gradio's cache (its `filename`)."""
    media = item[0] if isinstance(item, (tuple, list)) else item
    if isinstance(media, dict):
        media = media.get("path") or media.get("image")
    if isinstance(media, str):
        return media
    return getattr(media, "filename", None) or None


def add_results(history: list | None, gallery, guide) -> list[dict]:
    """The history with this edit's results in front (newest first), each with the guide it came from."""
    new = []
    for item in gallery or []:
        path = path_of(item)
        if path:
            caption = item[1] if isinstance(item, (tuple, list)) and len(item) > 1 else ""
            new.append({"image": path, "guide": guide if isinstance(guide, str) else None, "caption": caption})
    return (new + list(history or []))[:MAX_HISTORY]


def strip(history: list[dict]) -> list[tuple[str, str]]:
    return [(h["image"], h.get("caption") or "") for h in history]


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


class History:
    """The history strip and the before/after slider, under the results."""

    def __init__(self):
        self.state = gr.State([])
        self.slider = gr.ImageSlider(
            type="filepath",
            format="png",
            image_mode=None,
            label="Before / after: the guide and the selected result",
            interactive=False,
            elem_id="before-after",
        )
        self.gallery = gr.Gallery(
            label="History (this session): click one to see it and get its settings back",
            format="png",
            type="filepath",
            columns=8,
            rows=1,
            height=110,
            allow_preview=False,
            interactive=False,
            elem_id="history",
        )

    def connect(self, page) -> None:
        """Fill the strip after each edit; clicking a thumbnail (history or results) shows it; the sweep's
        grid sets t0. Called after the controls are connected (it reuses their restore)."""
        r, c = page.results, page.controls

        def remember(history, gallery, guide):
            history = add_results(history, gallery, guide)
            first = history[0] if history else None
            return history, strip(history), before_after(guide, first and first["image"])

        self.remember = remember
        for event in page.edit_events:
            event.success(
                remember,
                [self.state, r.gallery, r.guide],
                [self.state, self.gallery, self.slider],
                queue=False,
                api_visibility="private",
                show_progress="hidden",
            )

        def show_result(guide, gallery, evt: gr.SelectData):
            items = gallery or []
            if not items:
                return gr.skip()
            return before_after(guide, path_of(items[min(evt.index, len(items) - 1)]))

        r.gallery.select(show_result, [r.guide, r.gallery], self.slider, queue=False, api_visibility="private")

        def pick(history, current, evt: gr.SelectData):
            if not history:
                return gr.skip()
            h = history[min(evt.index, len(history) - 1)]
            updates = c.restore_settings(h["image"], current)
            updates = {} if not isinstance(updates, dict) else updates
            return {**updates, self.slider: before_after(h.get("guide"), h["image"])}

        self.pick = pick
        self.gallery.select(
            pick,
            [self.state, c.loaded_model],
            [*c.restore_outputs, self.slider],
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
