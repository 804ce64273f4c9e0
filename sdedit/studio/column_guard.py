"""`ColumnGuard`: the results column never shows another tab's result, not even for a moment.

The column is one set of components under all the tabs, filled by the server's answers to events: a tab brought
to the front, an edit's outputs arriving or filed, a sweep. An answer is right for the tab that was in front when
the server computed it; it can land after the visitor has clicked another tab. Every answer that fills the
column therefore also sets the guard's value: the tab whose panel it is. In the page (static/column_guard.js),
while that tab is not the tab in front, the column's parts that belong to a tab (`TAB_RESULT`, a class) are
hidden, before the browser paints; when a late answer made the difference (not a tab switch, whose own answer
is on its way), the guard fires `stale` with the tab in front, and `TabResults` answers with that tab's panel.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

ELEM_ID = "column-guard"
COLUMN_ID = "results"  # the results column's elem_id (sdedit.studio.page)
TABS_ID = "tabs"  # the page's tabs' elem_id: their selected button is the tab in front
TAB_RESULT = "tab-result"  # the class of the column's parts that show a tab's result
OTHER_TAB = "other-tab"  # the column's class while it holds another tab's result than the one in front
JS = (Path(__file__).resolve().parent / "static" / "column_guard.js").read_text(encoding="utf-8")
# the page's CSS for it: the guard takes no room; the hidden parts keep their place (no jump), unseen
CSS = f"#{ELEM_ID} {{ display: none !important; }}\n#{COLUMN_ID}.{OTHER_TAB} .{TAB_RESULT} {{ visibility: hidden; }}"


class ColumnGuard(gr.HTML):
    """Its value is the id of the tab whose result the column holds; it shows nothing itself. The page's ids
    and classes reach its JS as props."""

    def __init__(self, value: str = "", **kwargs):
        ids = {"column_id": COLUMN_ID, "tabs_id": TABS_ID, "other_tab": OTHER_TAB}
        super().__init__(value=value, html_template="", js_on_load=JS, elem_id=ELEM_ID, **ids, **kwargs)

    def api_info(self) -> dict:
        return {"type": "string", "description": "the id of the tab whose result the results column holds"}
