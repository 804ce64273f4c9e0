"""The first click on each example, as the app runs it: the measurement that chooses the examples' seeds and t0
(`python -m sdedit examples`, sdedit.choose_examples) and the tests that check them go through here.

Not imported by the page: it builds one (`page.build_page`) to read the examples, their guides and the controls'
defaults from the app itself, and runs each edit through `jobs.run_edit`, the path of the page's `/edit`.
"""

from __future__ import annotations

from PIL import Image

from .examples import Example
from .jobs import EditSettings, run_edit
from .page import Page, build_page
from .tabs import Tab


def first_click(page: Page, tab: Tab, index: int) -> tuple[object, object, EditSettings]:
    """(guide, mask, settings) of the edit that clicking `tab`'s example `index` leads to on a fresh page: the
    guide and mask the click puts in place, the controls' defaults, and the seed and t0 the click sets.

    The settings are read from the components that Generate and an example's edit read
    (`Page.settings_inputs`), so they are the app's defaults by construction.
    """
    updates = tab.load_example(page, index)
    guide, mask = tab.example_guide(page, updates)
    values = [updates.get(comp, comp.value) for comp in page.settings_inputs]
    return guide, mask, EditSettings(*values)


def app_examples(page: Page) -> list[tuple[Tab, int, Example]]:
    """Every example on the page, tab by tab."""
    return [(tab, i, ex) for tab in page.tabs for i, ex in enumerate(tab.examples)]


def run_first_click(guide, mask, settings: EditSettings) -> Image.Image:
    """The edit a first click runs (the batcher's path, as the page's `/edit`), without its animation."""
    return run_edit(guide, mask, settings, animate=False).images[0]


def first_click_sheet(cell: int = 128) -> Image.Image:
    """Every example's guide (top) and its first click's result (below), captioned with its seed and t0."""
    from PIL import ImageDraw

    page = build_page()
    found = app_examples(page)
    sheet = Image.new("RGB", (cell * len(found), 2 * cell + 30), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (tab, index, ex) in enumerate(found):
        guide, mask, settings = first_click(page, tab, index)
        shown = guide if isinstance(guide, Image.Image) else Image.open(guide)
        sheet.paste(shown.convert("RGB").resize((cell, cell), Image.LANCZOS), (i * cell, 0))
        result = run_first_click(guide, mask, settings)
        sheet.paste(result.convert("RGB").resize((cell, cell), Image.LANCZOS), (i * cell, cell))
        draw.text((i * cell + 3, 2 * cell + 2), ex.title[:20], fill="black")
        draw.text((i * cell + 3, 2 * cell + 15), f"seed {ex.seed}, t0 {ex.strength:g}", fill="black")
    return sheet
