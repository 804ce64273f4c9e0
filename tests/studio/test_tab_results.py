"""Results belong to the tab that made them (sdedit.studio.tab_results), every example generates with one click,
and the history names the tab of each entry. The page's handlers are called as Gradio calls them; the same
flows run in Chromium in tests/browser/test_tabs_browser.py."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pytest
from PIL import Image

from sdedit.studio import history, tab_results
from sdedit.studio.results import edit, edit_on_gpu


@pytest.fixture(scope="module")
def page():
    from sdedit.studio.page import build_page

    return build_page()


@pytest.fixture
def files(tmp_path):
    """A result file, a guide and an animation on disk, as the results column holds them."""
    paths = {}
    for name in ("result", "guide", "mask"):
        paths[name] = str(tmp_path / f"{name}.png")
        Image.new("RGB", (8, 8), (10, 20, 30)).save(paths[name])
    paths["animation"] = str(tmp_path / "reverse.gif")
    Image.new("RGB", (8, 8)).save(paths["animation"])
    return paths


def test_every_tabs_example_click_is_followed_by_an_edit(page):
    """One behaviour on every tab: the gallery's select event puts the guide in place, then edits it."""
    fns = list(page.demo.fns.values())
    for tab in page.tabs:
        (select,) = [fn for fn in fns if any(t == (tab.gallery._id, "select") for t in fn.targets)]

        def after(event):
            return [fn for fn in fns if fn.trigger_after == event._id and fn.trigger_only_on_success]

        # the page's confirmation for a model made for a GPU on a CPU (models.check_device), then the edit
        (confirm,) = [fn for fn in after(select) if fn.name == "check_device"]
        assert any(fn.fn in (edit, edit_on_gpu) for fn in after(confirm)), f"{tab.label}: a click does not generate"
        outputs = {block._id for block in select.outputs}
        for comp in page.guide_outputs:  # the guide, mask and map the edit reads, and the tab that made it
            assert comp._id in outputs, (tab.label, comp)
        updates = tab.load_example(page, 0)
        assert updates[page.tab_results.made_by] == updates[page.tab_results.asked_by] == tab.id
        assert page.selected_tab not in updates  # the tab in front is the visitor's: a click may end after a switch
        guide = updates[page.results.guide]
        assert isinstance(guide, str) and Image.open(guide).size[0] > 0  # a PNG file of its own


def test_a_tab_shows_its_own_last_result_or_its_empty_state(page, files):
    r = page.results
    store = tab_results.file_edit(
        {}, "edit", [(files["result"], "seed 3")], files["animation"], "1 result · t0 = 0.2", {"seeds": [3]},
        files["guide"], files["mask"], None,
    )  # fmt: skip
    out = page.front("composite", "edit", store)
    assert out[page.selected_tab] == "composite"
    assert out[r.gallery] is None and out[r.animation] is None and out[r.details] is None
    assert out[r.summary] == "No result on **Composite** yet: press **Generate**, or click an example."
    assert out[page.history.slider] is None and out[r.guide] is None and out[r.sweep_grid] is None
    back = page.front("edit", "composite", store)
    assert back[r.gallery] == [(files["result"], "seed 3")] and back[r.animation] == files["animation"]
    assert back[r.summary] == "1 result · t0 = 0.2" and back[r.details] == {"seeds": [3]}
    assert back[page.history.slider] == (files["guide"], files["result"])
    assert back[r.guide] == files["guide"] and back[r.mask] == files["mask"] and back[r.strength_map] is None
    assert r.gallery not in page.front("edit", "edit", store), "the tab already in front keeps its column"
    # while a request runs, "What the model gets" stays the running request's
    running = page.front("edit", "composite", store, made_by="composite")
    assert r.gallery in running and r.guide not in running and r.mask not in running
    # a result whose files Gradio's cache has swept is an empty state, not a broken image
    Path(files["result"]).unlink()
    assert page.front("edit", "composite", store)[r.gallery] is None


def test_a_result_is_filed_under_the_tab_that_made_it_even_after_a_switch(page, files):
    r = page.results
    args = [[(files["result"], "seed 3")], files["animation"], "1 result", {}, files["guide"], files["mask"], None]
    # made on the tab in front, where it arrived: filed, the column left as it is, and the before/after shows it
    # against its guide
    out = page.tab_results.filed({}, "edit", "edit", *args, [(files["result"], "seed 3")], files["animation"])
    store = out[page.tab_results.store]
    assert out[page.tab_results.made_by] == "" and store["edit"]["gallery"] == [(files["result"], "seed 3")]
    assert out[page.history.slider] == (files["guide"], files["result"]) and r.gallery not in out
    # the visitor came back to its tab while it ran (it arrived elsewhere, or its animation did): it goes in now
    for shown in ([None, None], [[(files["result"], "seed 3")], None]):
        out = page.tab_results.filed({}, "edit", "edit", *args, *shown)
        assert out[r.gallery] == [(files["result"], "seed 3")] and out[r.animation] == files["animation"]
        assert out[r.summary] == "1 result" and out[page.history.slider] == (files["guide"], files["result"])
    # the visitor went to Paint while it ran: filed under Edit, the column goes back to Paint's (empty) state
    out = page.tab_results.filed({}, "edit", "paint", *args)
    assert out[page.tab_results.store]["edit"]["summary"] == "1 result"
    assert out[r.gallery] is None and out[r.summary].startswith("No result on **Paint**")
    assert "Your result on **Edit a photo** is ready" in out[r.summary]


def test_the_edit_writes_into_hidden_copies_and_never_into_the_column(page):
    """`/edit`'s outputs are hidden copies of the column's components (the API is unchanged: the same types and
    labels, in the same order); its progress shows on the column's gallery, and the history reads the copies."""
    r = page.results
    edits = [fn for fn in page.demo.fns.values() if fn.fn in (edit, edit_on_gpu)]
    assert edits, "no edit event"
    column = {c._id for c in [*r.shown, page.history.slider]}
    for fn in edits:
        assert [b._id for b in fn.outputs] == [c._id for c in r.edit_outputs]
        assert not column & {b._id for b in fn.outputs}, "the edit writes into the column"
        assert [b._id for b in fn.show_progress_on] == [r.gallery._id]
    assert [c._id for c in r.edit_outputs[:4]] == [c._id for c in r.staged.outputs]
    for staged, shown in zip(r.staged.outputs, r.shown, strict=True):
        assert type(staged) is type(shown) and staged.label == shown.label and staged.visible == "hidden"
    assert r.staged.gallery.format == r.gallery.format == "png" and r.staged.gallery.type == "filepath"
    remembers = [fn for fn in page.demo.fns.values() if fn.fn is page.history.remember]
    assert len(remembers) == len(edits), "the history follows every edit"
    for fn in remembers:
        read = {b._id for b in fn.inputs}
        assert r.staged.gallery._id in read and r.gallery._id not in read
        # the tab that asked, from a State that `filed` (running beside it) leaves alone: not `made_by`
        assert page.tab_results.asked_by._id in read and page.tab_results.made_by._id not in read


def test_the_animation_is_read_as_its_file(page, files):
    """The handlers that move and file an edit read its GIF as the file it is, never a re-encoded copy."""
    from gradio.data_classes import FileData

    frames = [Image.new("RGB", (16, 8), (20 * i, 0, 0)) for i in range(3)]
    frames[0].save(files["animation"], save_all=True, append_images=frames[1:])
    for image in (page.results.animation, page.results.staged.animation):
        assert image.preprocess(FileData(path=files["animation"], orig_name="reverse.gif")) == files["animation"]


def test_an_edits_outputs_reach_the_column_only_while_their_tab_is_in_front(page, files):
    r, tr = page.results, page.tab_results
    outputs = [[(files["result"], "seed 3")], files["animation"], "1 result", {"seeds": [3]}]
    shown = tr.arrived("edit", "edit", *outputs)
    assert [shown[c] for c in r.shown] == outputs and shown[r.guard] == "edit" and len(shown) == 5
    assert tr.arrived("edit", "composite", *outputs) == gr.skip(), "another tab in front: its column stays its own"
    # no request running: `filed` has put the column right already (and the visitor may have left the tab)
    assert tr.arrived("", "edit", *outputs) == gr.skip()
    (copy,) = [fn for fn in page.demo.fns.values() if fn.fn is tr.arrived]
    triggers = {(r.staged.gallery._id, "change"), (r.staged.animation._id, "change")}
    assert set(copy.targets) == triggers and [b._id for b in copy.outputs] == [c._id for c in [r.guard, *r.shown]]


def test_every_answer_that_fills_the_column_names_its_tab_first(page):
    """The page hides the column while its guard names another tab than the one in front (`ColumnGuard`); that
    holds for a late answer only when every event that writes a tab's result into the column also sets the
    guard, as its first output of the page's (Gradio applies an answer's outputs in order)."""
    r, h = page.results, page.history
    column = {c._id for c in [r.gallery, r.animation, r.summary, r.details, h.slider, *r.sweep_shown]}
    writers = [fn for fn in page.demo.fns.values() if column & {b._id for b in fn.outputs}]
    assert len(writers) > 8, "the tab switches, filing, the sweep and restores all write the column"
    for fn in writers:
        shown = [b for b in fn.outputs if b._id in column or b is r.guard]
        assert shown and shown[0] is r.guard, f"{fn.name} writes the column before naming its tab"
    # what it names: the tab a panel is for, or the tab an edit and a sweep were filed for
    assert page.front("composite", "edit", {})[r.guard] == "composite"
    assert page.tab_results.stale({}, "", gr.EventData(None, {"front": "edit"}))[r.guard] == "edit"
    assert page.tab_results.stale({}, "", gr.EventData(None, {"front": "nowhere"})) == gr.skip()


def test_a_sweep_is_kept_per_tab(page):
    r = page.results
    store = tab_results.file_sweep({}, "paint", "grid", "plot", {"data": [[0.2, 1.0]]})
    assert page.front("paint", "edit", store)[r.sweep_grid] == "grid"
    assert page.front("edit", "paint", store)[r.sweep_table] is None


def test_a_sweep_writes_into_hidden_copies_and_shows_only_on_its_own_tab(page):
    r, tr = page.results, page.tab_results
    (fn,) = [fn for fn in page.demo.fns.values() if fn.api_name == "sweep"]
    assert [b._id for b in fn.outputs] == [c._id for c in r.staged.sweep_outputs] == [c._id for c in r.sweep_outputs]
    assert [b._id for b in fn.show_progress_on] == [c._id for c in r.sweep_shown]
    for staged, shown in zip(r.staged.sweep_outputs, r.sweep_shown, strict=True):
        assert type(staged) is type(shown) and staged.label == shown.label and staged.visible == "hidden"
    table = {"data": [[0.2, 1.0]]}
    out = tr.swept({}, "paint", "paint", "grid", "plot", table)
    assert out[tr.store]["paint"]["sweep"] == ("grid", "plot", table) and out[tr.made_by] == ""
    assert [out[c] for c in r.sweep_shown] == ["grid", "plot", table]
    # the visitor went to Edit while it ran: filed under Paint, the column stays Edit's (its empty state)
    out = tr.swept({}, "paint", "edit", "grid", "plot", table)
    assert out[tr.store]["paint"]["sweep"] == ("grid", "plot", table)
    assert [out[c] for c in r.sweep_shown] == [None, None, None]


def test_history_entries_name_the_tab_that_made_them(files):
    h = history.add_results([], [(files["result"], "seed 3")], files["guide"], thumbs=False, tab="Composite")
    assert h[0]["caption"] == "Composite · seed 3" and h[0]["tab"] == "Composite"
    assert history.add_results([], [(files["result"], "seed 3")], None, thumbs=False)[0]["caption"] == "seed 3"


def test_the_history_strip_is_words_until_the_first_result(page, files):
    strip, empty = page.history.shown([])
    assert strip.visible is False and empty.visible is True
    assert page.history.gallery.visible is False and "your results line up here" in page.history.empty.value
    strip, empty = page.history.shown(history.add_results([], [(files["result"], "s")], None, thumbs=False))
    assert strip.visible is True and empty.visible is False
