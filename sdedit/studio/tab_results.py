"""Results belong to the tab that made them: the results column shows the last result of the tab in front.

The results column is one set of components under all the tabs (it shows what the `/edit` and `/sweep`
endpoints return). A per-visitor `gr.State` keeps, per tab, what the column showed after that tab's last edit (its
result files and captions, the animation, the summary and details, the before/after slider, the guide, mask
and map the model got) and after its last sweep. Bringing a tab to the front, by a click on it or by the app
(Use as new guide, Send to canvas, a restored result), shows that tab's panel, or an empty state that names
the tab.

`made_by` is the tab whose guide went to the model last, set when its guide is put in place (Generate, the
sweep, an example's click) and cleared when the request ends. Its result is filed under that tab even when
the visitor has gone to another one meanwhile, and the column's summary then says where the result is.

A tab never shows another tab's result, not even for a moment. `/edit` writes into hidden copies of the
column's components (`results.Staged`), not into the column: as its outputs arrive (the results first, the
animation after them), `arrived` copies them into the column only while the tab that asked for them is the
tab in front; when the edit ends, `filed` files them from the copies and shows them if their tab is in front
(the visitor may have come back meanwhile), else leaves the column on the tab in front. `/sweep` writes into
copies too; it sends its outputs once, at its end, and `swept` files and shows them the same way.

While a request runs, switching tabs leaves "What the model gets" alone: the running request's guide is what
its result is filed with.

Each of these answers is computed for the tab in front at the moment the server reads it; the visitor can click
another tab before it lands. So every answer that fills the column also names the tab it filled it for
(`results.Results.guard`, a `ColumnGuard`): the page hides the column's tab-bound parts whenever that is not the
tab in front, and a late answer makes the guard ask for the front tab's panel (`stale`).
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

EMPTY_SUMMARY = "No result on **{label}** yet: press **Generate**, or click an example."


def empty_summary(label: str) -> str:
    return EMPTY_SUMMARY.format(label=label)


def _path(media) -> str | None:
    """The file behind a gallery item or an image value (a path, a (path, caption) pair, a dict)."""
    if isinstance(media, (tuple, list)) and media:
        media = media[0]
    if isinstance(media, dict):
        media = media.get("path") or media.get("image")
    if isinstance(media, str):
        return media
    return getattr(media, "filename", None) or None


def _paths(gallery) -> list[str]:
    return [p for item in gallery or [] if (p := _path(item))]


def _caption(item) -> str:
    return str(item[1]) if isinstance(item, (tuple, list)) and len(item) > 1 and item[1] else ""


def _existing(path: str | None) -> str | None:
    """The path while its file is still there (Gradio's cache sweeps old files), else None."""
    return path if path and Path(path).is_file() else None


def file_edit(store: dict | None, tab: str, gallery, animation, summary, details, guide, mask, strength_map) -> dict:
    """`store` with tab `tab`'s panel replaced by this edit's: its result files (with their captions), the
    animation, summary and details, and the guide, mask and map it was made from (file paths)."""
    items = [(p, _caption(item)) for item in gallery or [] if (p := _path(item))]
    panel = {
        "gallery": items,
        "animation": _path(animation),
        "summary": summary or "",
        "details": details,
        "guide": _path(guide),
        "mask": _path(mask),
        "strength_map": _path(strength_map),
    }
    kept = dict(store or {})
    kept[tab] = {**kept.get(tab, {}), **panel}
    return kept


def file_sweep(store: dict | None, tab: str, grid, plot, table) -> dict:
    """`store` with tab `tab`'s last sweep (grid, plot, table) replaced by this one."""
    kept = dict(store or {})
    kept[tab] = {**kept.get(tab, {}), "sweep": (grid, plot, table)}
    return kept


def before_after(guide: str | None, first: str | None) -> tuple | None:
    """The slider's value: the guide left, the result right (None when either is missing)."""
    return (guide, first) if guide and first else None


class TabResults:
    """The per-tab store and the tab whose request runs; `connect` fills the store and shows its panels."""

    def __init__(self):
        self.store = gr.State({})
        self.made_by = gr.State("")
        # the same tab, kept after its request ends: the history names it, read while `filed` may be clearing
        # `made_by` (the two run side by side when an edit ends)
        self.asked_by = gr.State("")

    def bind(self, page) -> None:
        """The components a panel fills (once the results column and the history exist)."""
        r, h = page.results, page.history
        self.page = page
        self.inputs = [r.guide, r.mask, r.strength_map]
        self.sweep = [r.sweep_grid, r.sweep_plot, r.sweep_table]
        # the guard first: the page applies it before the parts it vouches for (`ColumnGuard`)
        self.outputs = [
            r.guard,
            r.gallery,
            r.animation,
            r.summary,
            r.details,
            r.selected,
            h.slider,
            *self.inputs,
            *self.sweep,
        ]
        self.labels = {tab.id: tab.label for tab in page.tabs}

    def connect(self, page) -> None:
        """File each edit's and sweep's results under the tab that made them (after every edit event exists)."""
        r, h = page.results, page.history

        def arrived(made_by, front, gallery, animation, summary, details) -> dict:
            """An edit's outputs have arrived in the hidden copies (its results, then with its animation): into
            the column while the tab that asked for them is in front; else nothing, and they wait for `filed`.

            No request running (`made_by` empty) is no permission: `filed` has run already and has put the
            column right, and a copy made now could be of a tab the visitor has left."""
            if not made_by or made_by != front:
                return gr.skip()  # every output left as it is
            return {**dict(zip(r.shown, (gallery, animation, summary, details), strict=True)), r.guard: made_by}

        def filed(
            store, made_by, front, gallery, animation, summary, details, guide, mask, strength_map,
            shown_gallery=None, shown_animation=None,
        ) -> dict:  # fmt: skip
            """After an edit (its outputs, from the hidden copies): file it under the tab that made it; show it
            when that tab is in front, else leave the column on the tab in front, saying where the result is.

            The column shows it already when it arrived with its tab in front (`shown_gallery`, `shown_animation`:
            what the column shows); else the visitor came back while it ran, and it goes in now."""
            tab = made_by or front
            store = file_edit(store, tab, gallery, animation, summary, details, guide, mask, strength_map)
            out = {self.store: store, self.made_by: ""}
            if tab == front:
                out[r.guard] = tab
                kept = store[tab]
                first = kept["gallery"][0][0] if kept["gallery"] else None
                out[h.slider] = before_after(kept["guide"], first)
                paths = [p for p, _ in kept["gallery"]]
                if paths == _paths(shown_gallery) and kept["animation"] == _path(shown_animation):
                    return out  # shown already: the column is left as it is
                shown = (kept["gallery"] or None, kept["animation"], kept["summary"], kept["details"])
                return {**out, **dict(zip(r.shown, shown, strict=True))}
            panel = self.panel(store, front)
            ready = f"Your result on **{self.labels.get(tab, tab)}** is ready: it is on that tab."
            return {**out, **panel, r.summary: f"{panel[r.summary]}\n\n{ready}"}

        self.arrived, self.filed = arrived, filed
        staged = r.staged.outputs
        # the results arrive in the gallery, the animation after them (the gallery unchanged): either copies
        gr.on(
            [staged[0].change, staged[1].change],
            arrived,
            [self.made_by, page.selected_tab, *staged],
            [r.guard, *r.shown],
            queue=False,
            api_visibility="private",
            show_progress="hidden",
        )
        for event in page.edit_events:
            event.success(
                filed,
                [self.store, self.made_by, page.selected_tab, *staged, *self.inputs, r.gallery, r.animation],
                [self.store, self.made_by, *self.outputs],
                queue=False,
                api_visibility="private",
                show_progress="hidden",
            )
            event.failure(lambda: "", None, self.made_by, queue=False, api_visibility="private")

        def swept(store, made_by, front, grid, plot, table) -> dict:
            """After a sweep (from the hidden copies: it has no steps to show before it ends): file it under the
            tab that made it; show it when that tab is in front, else leave the column on the tab in front."""
            tab = made_by or front
            store = file_sweep(store, tab, grid, plot, table)
            out = {self.store: store, self.made_by: ""}
            if tab == front:
                return {**out, **dict(zip(self.sweep, (grid, plot, table), strict=True)), r.guard: tab}
            return {**out, **self.panel(store, front)}

        self.swept = swept
        page.sweep_event.success(
            swept,
            [self.store, self.made_by, page.selected_tab, *r.staged.sweep_outputs],
            [self.store, self.made_by, *self.outputs],
            queue=False,
            api_visibility="private",
            show_progress="hidden",
        )
        page.sweep_event.failure(lambda: "", None, self.made_by, queue=False, api_visibility="private")

        def stale(store, made_by, evt: gr.EventData) -> dict:
            """The column was filled for another tab than the one in front (an answer that landed after a tab
            switch): the front tab's panel, as a switch to it shows it."""
            tab = getattr(evt, "front", None)
            if tab not in self.labels:
                return gr.skip()
            return {page.selected_tab: tab, **self.panel(store, tab, running=bool(made_by))}

        self.stale = stale
        r.guard.stale(
            stale,
            [self.store, self.made_by],
            [page.selected_tab, *self.outputs],
            queue=False,
            api_visibility="private",
            show_progress="hidden",
        )

    def panel(self, store: dict | None, tab: str, running: bool = False) -> dict:
        """Updates that show tab `tab`'s last result (its files that Gradio's cache still holds) and sweep, or
        its empty state. `running`: a request is under way, so "What the model gets" keeps its guide."""
        r = self.page.results
        kept = (store or {}).get(tab) or {}
        gallery = [(p, c) for p, c in kept.get("gallery") or [] if _existing(p)]
        guide = _existing(kept.get("guide"))
        grid, plot, table = kept.get("sweep") or (None, None, None)
        out = {
            r.gallery: gallery or None,
            r.animation: _existing(kept.get("animation")),
            r.summary: kept.get("summary") if gallery else empty_summary(self.labels.get(tab, tab)),
            r.details: kept.get("details") if gallery else None,
            r.selected: 0,
            self.page.history.slider: before_after(guide, gallery[0][0] if gallery else None),
            r.sweep_grid: grid,
            r.sweep_plot: plot,
            r.sweep_table: table,
            r.guard: tab,
        }
        if not running:
            mask, strength_map = _existing(kept.get("mask")), _existing(kept.get("strength_map"))
            out.update({r.guide: guide, r.mask: mask, r.strength_map: strength_map})
        return out
