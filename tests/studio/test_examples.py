"""A first impression that holds: every app example's first click, with the seed and t0 it sets and
the app's default settings, gives a result more realistic than its guide on the project's per-image realism
measure (the kNN realism distance D3 in KID's feature space, sdedit.lab.examples); the click puts that seed
and t0 in the controls; the selection rule and the measure behave as documented.

The first clicks run the embedded model through the app's own path (the tab's click handler, the controls'
defaults, `jobs.run_edit`): 14 edits of ~1 s each on a CPU.
"""

from __future__ import annotations

import numpy as np
import pytest

from sdedit import choose_examples
from sdedit.configs import default_config
from sdedit.lab.examples import Candidate, RealismScorer, choose
from sdedit.lab.features import load_selfcheck
from sdedit.studio import examples, first_click
from sdedit.studio.tabs.paint import paint_examples
from tests.browser_utils import browser_test

CASES = [
    ("paint", i, ex.title) for i, ex in enumerate(paint_examples(default_config()))
] + [  # the tabs' own lists (sdedit.studio.examples), in their order
    (tab, i, ex.title)
    for tab, exs in (
        ("edit", examples.EDIT_EXAMPLES),
        ("composite", examples.COMPOSITE_EXAMPLES),
        ("painting", examples.PAINTING_EXAMPLES),
    )
    for i, ex in enumerate(exs)
]
IDS = [f"{tab}-{title}" for tab, _, title in CASES]


@pytest.fixture(scope="module")
def page():
    from sdedit.studio.page import build_page

    return build_page()


@pytest.fixture(scope="module")
def scorer(page):
    return choose_examples.realism_scorer(page)


def test_every_example_on_the_page_carries_a_seed_and_a_t0(page):
    found = first_click.app_examples(page)
    assert [(tab.id, i) for tab, i, _ in found] == [(tab, i) for tab, i, _ in CASES]
    for tab, _, ex in found:
        assert isinstance(ex.seed, int) and ex.seed >= 0, (tab.id, ex.title)
        assert isinstance(ex.strength, float) and 0 < ex.strength <= 1, (tab.id, ex.title)


@pytest.mark.parametrize(("tab_id", "index", "title"), CASES, ids=IDS)
def test_a_click_sets_the_examples_seed_and_t0(page, tab_id, index, title):
    """The handler the gallery's select event runs puts a fixed seed (not -1, random) and the t0 in the controls."""
    tab = page.by_id[tab_id]
    ex = tab.examples[index]
    updates = tab.load_example(page, index)
    assert updates[page.results.seed] == ex.seed != -1
    assert updates[page.results.strength] == ex.strength
    select = [
        fn for fn in page.demo.fns.values() if any(t[0] == tab.gallery._id and t[1] == "select" for t in fn.targets)
    ]
    assert len(select) == 1, "one select event per examples gallery"
    outputs = {block._id for block in select[0].outputs}
    assert {page.results.seed._id, page.results.strength._id} <= outputs


@pytest.mark.parametrize(("tab_id", "index", "title"), CASES, ids=IDS)
def test_the_first_click_is_more_realistic_than_its_guide(page, scorer, tab_id, index, title):
    tab = page.by_id[tab_id]
    ex = tab.examples[index]
    guide, mask, settings = first_click.first_click(page, tab, index)
    cfg = default_config()
    assert (settings.seed, settings.strength) == (ex.seed, ex.strength)
    assert (settings.model, settings.sampler, settings.steps) == (
        cfg.name,
        cfg.defaults.sampler,
        cfg.defaults.num_inference_steps,
    )
    assert (tab_id in ("edit", "composite")) == (mask is not None)
    result = first_click.run_first_click(guide, mask, settings)
    d_result, d_guide = scorer.distance([result, guide])
    assert d_result < d_guide, (
        f"{title}: realism distance D3 {d_result:.3f} of the result vs {d_guide:.3f} of its guide"
    )


def test_a_painting_click_sets_the_simulator_settings_it_was_measured_with(page):
    """An example's own colours and smoothing, else the sliders' defaults; the guide is made with them."""
    from sdedit.studio.guides import make_painting

    tab = page.by_id["painting"]
    assert any(ex.colors is not None for ex in tab.examples)
    for index, ex in enumerate(tab.examples):
        updates = tab.load_example(page, index)
        colors = tab.colors.value if ex.colors is None else ex.colors
        smoothing = tab.smoothing.value if ex.smoothing is None else ex.smoothing
        assert (updates[tab.colors], updates[tab.smoothing], updates[tab.block]) == (colors, smoothing, tab.block.value)
        guide, _ = tab.example_guide(page, updates)
        expected = make_painting(examples.load_example_image(ex.image), colors, smoothing, tab.block.value)
        assert np.array_equal(np.asarray(guide), np.asarray(expected)), ex.title


def test_a_composite_pastes_an_object_large_enough_for_the_model(page):
    """At the model's 64 px a pasted object under ~25 px comes back as a haze (docs/quality.md): each Composite
    example's pasted object spans at least 0.4 of the frame, measured on the mask the click leads to."""
    tab = page.by_id["composite"]
    res = default_config().resolution
    for index, ex in enumerate(tab.examples):
        _, mask, _ = first_click.first_click(page, tab, index)
        ys, xs = np.nonzero(np.asarray(mask.convert("L").resize((res, res))) > 127)
        assert min(np.ptp(xs), np.ptp(ys)) + 1 >= 0.4 * res, ex.title


def test_the_same_click_gives_the_same_result(page):
    """A fixed seed: the first Generate after the click is the measured image, every time."""
    tab = page.by_id["paint"]
    guide, mask, settings = first_click.first_click(page, tab, 0)
    a = np.asarray(first_click.run_first_click(guide, mask, settings))
    b = np.asarray(first_click.run_first_click(guide, mask, settings))
    assert np.array_equal(a, b)


# ----- the realism score and the rule (sdedit.lab.examples) ---------------------------------------------------


def test_realism_distance_ranks_real_images_above_flat_ones_and_leaves_out_example_sources():
    real, _ = load_selfcheck()
    scorer = RealismScorer(reference=real[:48])
    assert scorer.reference_size == 48 and scorer.excluded == 0
    inside, others = scorer.distance(real[:48]), scorer.distance(real[48:])
    assert np.median(inside) < np.median(others)  # a reference image is its own nearest neighbour
    flat = np.full((2, 64, 64, 3), (255, 200, 60), np.uint8)  # a flat disc-less colour field
    assert scorer.distance(flat).min() > np.median(others)
    without = RealismScorer(reference=real[:48], exclude=[real[3], real[7]])
    assert without.excluded == 2 and without.reference_size == 46
    assert without.distance(real[3:4])[0] > scorer.distance(real[3:4])[0]


def test_choose_takes_the_most_realistic_within_the_default_t0s_median_l2():
    rows = [  # realism is D3: lower = more realistic
        Candidate("x", 0, 0.5, 6.0, 10.0),
        Candidate("x", 1, 0.5, 6.5, 12.0),
        Candidate("x", 2, 0.5, 5.5, 14.0),  # bound = median(10, 12, 14) = 12
        Candidate("x", 0, 0.7, 3.0, 20.0),  # more realistic, but beyond the bound
        Candidate("x", 1, 0.4, 5.8, 9.0),
        Candidate("x", 2, 0.4, 7.5, 8.0),  # within, but less realistic than its guide
    ]
    c = choose(rows, guide_realism=7.0, default_strength=0.5)
    assert (c.seed, c.strength, c.l2_bound, c.better_within, c.tried) == (1, 0.4, 12.0, 3, 6)
    none_better = choose(rows, guide_realism=1.0, default_strength=0.5)  # then the most realistic within
    assert (none_better.seed, none_better.strength, none_better.better_within) == (1, 0.4, 0)
    with pytest.raises(ValueError, match="default t0"):
        choose(rows, 1.0, default_strength=0.6)
    # an edit of a photo must keep its edit: the result closer to the guide than to the photo before it
    undone = Candidate("x", 3, 0.4, 4.0, 9.5, l2_original=9.0)
    assert not undone.keeps_the_edit and Candidate("x", 3, 0.4, 4.0, 9.5, l2_original=9.6).keeps_the_edit
    c = choose([*rows, undone], guide_realism=7.0, default_strength=0.5)
    assert (c.seed, c.strength) == (1, 0.4)  # not the undone one, though it is the most realistic within


@browser_test
def test_in_chromium_the_seed_field_shows_the_examples_seed_after_a_click():
    from playwright.sync_api import sync_playwright

    from sdedit.studio.page import build_page
    from tests.app_server import running_app
    from tests.browser_utils import CHROMIUM, CHROMIUM_ARGS, open_app, wait_for_result

    ex = paint_examples(default_config())[0]
    with running_app() as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = open_app(browser, url)
            page.locator("#paint-examples .thumbnail-item").first.click()
            shown = np.asarray(wait_for_result(page).convert("RGB"))
            assert page.locator("#seed input").input_value() == str(ex.seed)
            assert float(page.locator("#strength input[type=number]").input_value()) == ex.strength
            assert f"seed {ex.seed}" in page.locator("#summary").inner_text()
            # the first click shows exactly the measured result
            built = build_page()
            guide, mask, settings = first_click.first_click(built, built.by_id["paint"], 0)
            assert np.array_equal(shown, np.asarray(first_click.run_first_click(guide, mask, settings).convert("RGB")))
        finally:
            browser.close()
