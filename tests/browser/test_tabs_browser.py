"""A first visit in real Chromium: every tab's first example shows that tab's result with one click, results stay
with the tab that made them (a result that arrives while another tab is in front never shows there, not even for
a moment, not even when the server's answer lands after the visitor switched tabs), the history strip says what
it is before the first result, and the reverse-process animation is drawn at the size the page shows it.
Screenshots (1366x768 and 390x844) land in artifacts/screenshots/.
"""

from __future__ import annotations

import inspect
import io
import threading
import time

import anyio
import numpy as np
import pytest
from PIL import Image

from sdedit.studio import first_click, progress, results, tab_results
from sdedit.studio.page import build_page
from sdedit.studio.tab_results import empty_summary
from tests.browser_utils import (
    browser_marks,
    fetch_bytes,
    fetch_image,
    fetch_src,
    open_app,
    screenshot,
    wait_for_result,
)

pytestmark = browser_marks()
LAPTOP = {"width": 1366, "height": 768}
PHONE = {"width": 390, "height": 844}
TABS = [("paint", "Paint"), ("edit", "Edit a photo"), ("composite", "Composite"), ("painting", "Photo → painting")]


@pytest.fixture(scope="module")
def expected():
    """Each tab's first example's result, made the way the click makes it (`first_click`): {tab id: pixels}."""
    page = build_page()
    out = {}
    for tab_id, _ in TABS:
        tab = page.by_id[tab_id]
        out[tab_id] = np.asarray(first_click.run_first_click(*first_click.first_click(page, tab, 0)).convert("RGB"))
    return out


def shown(page) -> np.ndarray | None:
    """The first result in the results gallery, as the browser got it (None when the gallery is empty)."""
    if not page.locator("#gallery img").count():
        return None
    return np.asarray(fetch_image(page, "#gallery img").convert("RGB"))


def summary(page) -> str:
    return page.locator("#summary").inner_text()


def column_is_the_fronts(page) -> bool:
    """The results column holds the result of the tab in front (its guard shows it; sdedit.studio.column_guard)."""
    return not page.evaluate("() => document.getElementById('results').classList.contains('other-tab')")


def go_to(page, label: str, expect_empty: str | None = None, timeout_s: float = 20) -> None:
    """Click a tab and wait until the results column has answered (its summary changed or reads `expect_empty`)."""
    before = summary(page)
    page.get_by_role("tab", name=label, exact=True).click()
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        text = summary(page)
        answered = (expect_empty and expect_empty in text) or (not expect_empty and text and text != before)
        if answered and column_is_the_fronts(page):
            time.sleep(0.3)
            return
        time.sleep(0.1)
    raise TimeoutError(f"the results column did not follow the switch to {label!r}: {summary(page)!r}")


def click_first_example(page, tab_id: str) -> None:
    """One click on the tab's first example, once the tab has laid itself out (its images move it meanwhile)."""
    thumb = page.locator(f"#{tab_id}-examples .thumbnail-item").first
    thumb.scroll_into_view_if_needed()
    time.sleep(1.0)
    thumb.click()


# Every state the results column passes through as the visitor sees it: the sources of the visible images each
# selector finds (by name) and the summary's text when visible, read on each change of the column's DOM (a
# MutationObserver: a state shown for one frame is seen too) and every 20 ms besides; `hidden` counts the looks
# at which the column's guard hid its tab-bound parts.
COLUMN = {"gallery": "#gallery img", "slider": "#before-after img", "animation": "#animation img"}
WATCH = """(selectors) => {
  const seen = window.sdeditSeen = {summary: new Set(), looks: 0, hidden: 0};
  for (const name in selectors) seen[name] = new Set();
  const visible = (el) => el.checkVisibility({visibilityProperty: true, opacityProperty: true});
  const look = () => {
    seen.looks += 1;
    if (document.getElementById('results').classList.contains('other-tab')) seen.hidden += 1;
    for (const [name, sel] of Object.entries(selectors)) {
      document.querySelectorAll(sel).forEach((i) => visible(i) && i.getAttribute('src')
                                                   && seen[name].add(i.getAttribute('src')));
    }
    const summary = document.querySelector('#summary .prose');  // its text, not a timer beside it
    if (summary && visible(summary)) seen.summary.add(summary.innerText.trim());
  };
  look();
  const observer = new MutationObserver(look);
  observer.observe(document.querySelector('#results'), {subtree: true, childList: true, attributes: true,
                                                        characterData: true});
  window.sdeditWatch = [setInterval(look, 20), observer];
}"""
SEEN = """() => {
  clearInterval(window.sdeditWatch[0]); window.sdeditWatch[1].disconnect();
  const out = {};
  for (const [name, value] of Object.entries(window.sdeditSeen)) out[name] = value instanceof Set ? [...value] : value;
  return out;
}"""


class Hold(threading.Event):
    """Set it to let a held function run (`held`); `entered` is set when the app calls it, `done` when the call
    has returned or raised."""

    def __init__(self):
        super().__init__()
        self.entered, self.done = threading.Event(), threading.Event()


def held(monkeypatch, module, name: str) -> Hold:
    """From now on, `module.name` (a function of the app, which runs in this process) waits until the returned
    hold is set, then runs: an edit held before it starts, its animation before it is rendered, its filing."""
    release, fn = Hold(), getattr(module, name)

    if inspect.iscoroutinefunction(fn):

        async def waiting(*args, **kwargs):
            release.entered.set()
            try:
                assert await anyio.to_thread.run_sync(release.wait, 120), "never released"
                return await fn(*args, **kwargs)
            finally:
                release.done.set()

    else:

        def waiting(*args, **kwargs):
            release.entered.set()
            try:
                assert release.wait(120), "never released"
                return fn(*args, **kwargs)
            finally:
                release.done.set()

    monkeypatch.setattr(module, name, waiting)
    return release


def paint_example_filed(page) -> None:
    """Paint's first example, generated and filed (its history entry is there): a Paint result to start from."""
    click_first_example(page, "paint")
    wait_for_result(page)
    page.locator("#history").get_by_text("Paint", exact=False).first.wait_for(timeout=30_000)


def animation_sizes(page) -> dict:
    """The animation's pixels (natural) and the size it is drawn at on the page (object-fit: scale-down). Scrolled
    into view first: below the fold (a phone) the browser loads the image lazily, only once it is near."""
    page.locator("#animation").scroll_into_view_if_needed()
    page.wait_for_function(
        "() => { const i = document.querySelector('#animation img'); return i && i.complete && i.naturalWidth > 0 }",
        timeout=60_000,
    )
    return page.evaluate(
        """() => {
          const i = document.querySelector('#animation img'); const r = i.getBoundingClientRect();
          const k = Math.min(1, r.width / i.naturalWidth, r.height / i.naturalHeight);
          return {natural: [i.naturalWidth, i.naturalHeight], shown: [k * i.naturalWidth, k * i.naturalHeight]};
        }"""
    )


def test_each_tabs_first_example_shows_its_result_and_results_stay_with_their_tab(browser, url, expected):
    page = open_app(browser, url, LAPTOP)
    try:
        # before the first result the history strip is words, not an empty box
        assert page.locator("#history-empty").is_visible()
        assert "your results line up here" in page.locator("#history-empty").inner_text()
        assert not page.locator("#history").is_visible()
        assert "No result on Paint yet" in summary(page)
        screenshot(page, "laptop-1366-start", full_page=False)
        for i, (tab_id, label) in enumerate(TABS):
            if i:  # a tab without a result yet: its own empty state, no other tab's result
                go_to(page, label, expect_empty=empty_summary(label).replace("**", ""))
                assert shown(page) is None, f"{label} shows another tab's result before its own"
                assert not page.locator("#before-after img").count()
            click_first_example(page, tab_id)  # one click: loaded and generated
            result = np.asarray(wait_for_result(page).convert("RGB"))
            assert np.array_equal(result, expected[tab_id]), f"{label}: the first example's result is not shown"
            assert "1 result" in summary(page)
            history = page.locator("#history")
            history.wait_for(state="visible", timeout=10_000)
            assert label in history.inner_text(), "a history entry names the tab that made it"
            screenshot(page, f"laptop-1366-{tab_id}-example")
        assert not page.locator("#history-empty").is_visible()
        sizes = animation_sizes(page)
        assert tuple(sizes["natural"]) == progress.ANIMATION_SIZE
        assert sizes["shown"] == pytest.approx(list(progress.ANIMATION_SIZE), abs=1), "drawn at its own size"
        # back to each tab: its own result, caption and before/after; never the one made last
        for tab_id, label in reversed(TABS[:-1]):
            go_to(page, label)
            assert np.array_equal(shown(page), expected[tab_id]), f"{label} shows another tab's result"
            page.locator("#before-after img").first.wait_for(timeout=10_000)
            screenshot(page, f"laptop-1366-back-to-{tab_id}", full_page=False)
    finally:
        page.close()


def test_at_phone_width_a_tab_shows_only_its_own_result(browser, url, expected, monkeypatch):
    page = open_app(browser, url, PHONE)
    try:
        assert page.locator("#history-empty").is_visible()
        go_to(page, "Composite", expect_empty="No result on Composite yet")
        click_first_example(page, "composite")
        result = np.asarray(wait_for_result(page).convert("RGB"))
        assert np.array_equal(result, expected["composite"])
        sizes = animation_sizes(page)
        assert tuple(sizes["natural"]) == progress.ANIMATION_SIZE
        assert sizes["shown"][0] <= sizes["natural"][0], "never enlarged"
        screenshot(page, "phone-390-composite-example", full_page=False)
        go_to(page, "Edit a photo", expect_empty="No result on Edit a photo yet")
        assert shown(page) is None
        page.locator("#results").scroll_into_view_if_needed()
        screenshot(page, "phone-390-edit-empty", full_page=False)
        go_to(page, "Composite")
        assert np.array_equal(shown(page), expected["composite"])
        # an example's result that ends after its tab was left is kept for that tab and never shown on this one,
        # not even for a moment: the column is watched from the switch until the result is filed
        go_to(page, "Edit a photo", expect_empty="No result on Edit a photo yet")
        release = held(monkeypatch, results, "run_edit_async")  # the edit waits until Composite is in front
        click_first_example(page, "edit")
        go_to(page, "Composite", expect_empty="masked edit")  # at once, while the edit runs
        page.evaluate(WATCH, COLUMN)
        history = page.locator("#history").get_by_text("Edit a photo", exact=False)
        assert not history.count(), "the Edit tab's result was filed before the watch began: nothing was tested"
        composite_summary = page.locator("#summary .prose").first.inner_text().strip()
        composite_animation = fetch_bytes(page, "#animation img")
        release.set()
        history.first.wait_for(timeout=120_000)
        time.sleep(1.5)  # the edit is filed; the column stays with Composite
        seen = page.evaluate(SEEN)
        assert seen["looks"] > 10 and seen["gallery"], seen
        for src in seen["gallery"] + seen["slider"]:
            pixels = np.asarray(Image.open(io.BytesIO(fetch_src(page, src))).convert("RGB"))
            assert not np.array_equal(pixels, expected["edit"]), "Composite showed the Edit tab's result"
        for src in seen["animation"]:
            assert fetch_src(page, src) == composite_animation, "Composite showed another animation than its own"
        for text in seen["summary"]:
            assert not text or text.startswith(composite_summary), f"Composite showed another summary: {text!r}"
        assert "Your result on Edit a photo is ready" in summary(page)
        assert np.array_equal(shown(page), expected["composite"]), "Composite shows the Edit tab's result"
        # back on the Edit tab: its result, and its animation, which arrived while Composite was in front
        go_to(page, "Edit a photo")
        assert np.array_equal(shown(page), expected["edit"])
        assert fetch_bytes(page, "#animation img") != composite_animation
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= PHONE["width"] + 1, f"the page scrolls sideways on a phone ({width}px)"
    finally:
        page.close()


def test_a_result_shows_before_its_animation(browser, url, expected, monkeypatch):
    """On the tab that asked for it, a result is shown as soon as it exists, its animation (held here) after."""
    page = open_app(browser, url, LAPTOP)
    try:
        release = held(monkeypatch, progress, "render_animation")
        click_first_example(page, "paint")
        result = np.asarray(wait_for_result(page).convert("RGB"))
        assert np.array_equal(result, expected["paint"]) and "1 result" in summary(page)
        assert not page.locator("#animation img").count(), "an animation before its own was rendered"
        release.set()
        page.wait_for_selector("#animation img", timeout=60_000)
        page.locator("#history").get_by_text("Paint", exact=False).first.wait_for(timeout=30_000)
        assert np.array_equal(shown(page), expected["paint"])
    finally:
        page.close()


def test_a_sweep_that_ends_after_its_tab_was_left_never_shows_on_another(browser, url, monkeypatch):
    """A sweep writes into hidden copies too: it shows on its own tab, never (not even for a moment) on the tab in
    front when it ends."""
    page = open_app(browser, url, LAPTOP)
    try:
        paint_example_filed(page)  # a guide on the Paint canvas (and its result)
        page.get_by_text("t0 sweep: faithful").click()
        page.locator("#strengths textarea, #strengths input").first.fill("0.3, 0.8")
        release = held(monkeypatch, results, "run_t0_sweep")  # it waits until Edit a photo is in front
        page.click("#sweep")
        go_to(page, "Edit a photo", expect_empty="No result on Edit a photo yet")
        page.evaluate(WATCH, {"sweep": "#sweep-grid img, #sweep-plot img"})
        release.set()
        assert release.done.wait(120), "the sweep did not end"
        time.sleep(2.0)  # its outputs arrive and are filed
        seen = page.evaluate(SEEN)
        assert seen["looks"] > 10 and not seen["sweep"], "Edit a photo showed the Paint tab's sweep"
        assert not page.locator("#sweep-grid img").count()
        go_to(page, "Paint")
        page.wait_for_selector("#sweep-grid img", timeout=10_000)
        assert page.locator("#sweep-plot img").count()
    finally:
        page.close()


def test_an_answer_that_lands_after_a_tab_switch_never_shows_there(browser, url, expected, monkeypatch):
    """The server files a result for the tab it read as in front; the visitor clicks another tab before that
    answer lands. The late answer is hidden the moment it lands (never shown), and the column goes back to the
    tab in front: here the second Paint result's filing is held on the server until Edit a photo is in front."""
    page = open_app(browser, url, LAPTOP)
    try:
        paint_example_filed(page)
        release = held(monkeypatch, tab_results, "file_edit")
        page.click("#generate")  # Paint in front: its result arrives there; its filing reads Paint as in front
        assert release.entered.wait(120), "the edit was never filed"
        go_to(page, "Edit a photo", expect_empty="No result on Edit a photo yet")
        assert not page.locator("#before-after img").count()
        page.evaluate(WATCH, {**COLUMN, "sweep": "#sweep-grid img"})
        release.set()  # the answer for Paint lands with Edit a photo in front
        assert release.done.wait(30)
        time.sleep(2.0)  # it has landed; the guard has asked for the front tab's panel, and got it
        seen = page.evaluate(SEEN)
        assert seen["looks"] > 10 and not seen["gallery"] and not seen["slider"] and not seen["animation"], seen
        assert all(not text or text.startswith("No result on Edit a photo") for text in seen["summary"]), seen
        assert seen["hidden"], "the late answer was never hidden: it did not land on Edit a photo"
        assert column_is_the_fronts(page) and not page.locator("#before-after img").count()
        assert "No result on Edit a photo yet" in summary(page)
        go_to(page, "Paint")  # the held result was filed under Paint all the same
        page.locator("#before-after img").first.wait_for(timeout=10_000)
        assert shown(page) is not None and "1 result" in summary(page)
    finally:
        page.close()


def test_rapid_tab_switches_during_an_edit_end_on_the_front_tabs_own_column(browser, url, expected):
    """Clicks on tab after tab, faster than the server answers, while an edit runs and is filed: the column ends
    on the tab in front, shown (never left hidden), with that tab's own result or empty state."""
    page = open_app(browser, url, LAPTOP)
    try:
        paint_example_filed(page)
        page.click("#generate")  # a second Paint edit, filed while the tabs change under it
        for _ in range(3):
            for _, label in [*TABS[1:], TABS[0], TABS[2]]:
                page.get_by_role("tab", name=label, exact=True).click()
                time.sleep(0.03)
        page.locator("#history").get_by_text("Paint", exact=False).nth(1).wait_for(timeout=60_000)
        time.sleep(2.0)  # every answer has landed
        assert column_is_the_fronts(page), "the column was left hidden"
        assert "No result on Composite yet" in summary(page) and shown(page) is None
        go_to(page, "Paint")
        assert shown(page) is not None and "1 result" in summary(page) and column_is_the_fronts(page)
    finally:
        page.close()
