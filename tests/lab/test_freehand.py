"""The freehand benchmark's parts: scripted drawings (deterministic, the kinds people draw), the pixel test of
whether a result follows a drawing (checked on made-up results whose answer is known), the docs section rendered
purely from the committed record, and the app defaults that the record chose."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sdedit.configs import default_config
from sdedit.lab import freehand
from sdedit.lab.freehand import follows, render
from sdedit.lab.freehand_drawings import DEFAULT_BRUSH, SIZE, STYLES, THINGS, draw, drawing_set
from sdedit.outlines import fill_outlines, painted_pixels


@pytest.fixture(scope="module")
def drawings():
    return drawing_set()


def test_the_set_is_48_drawings_of_12_things_half_outlines_half_scribbles(drawings):
    assert len(drawings) == 48 and len(THINGS) == 12
    assert {d.thing for d in drawings} == {t.name for t in THINGS}
    assert sum(d.kind == "outline" for d in drawings) == 24 and {d.style for d in drawings} == set(STYLES)
    for d in drawings:
        assert d.image.shape == (SIZE, SIZE, 3) and d.image.dtype == np.uint8 and d.brush == DEFAULT_BRUSH
        assert d.meant and all(m.any() for m, _ in d.meant)
        assert (d.image[0] == 255).all() or d.kind == "scribble"  # white around a drawing


def test_drawings_are_deterministic_and_seeds_differ():
    a, b, c = draw(THINGS[0], "outline"), draw(THINGS[0], "outline"), draw(THINGS[0], "outline", seed=1)
    assert np.array_equal(a.image, b.image) and not np.array_equal(a.image, c.image)
    assert not np.array_equal(draw(THINGS[0], "outline", brush=20).image, a.image)


def test_outlines_are_thin_lines_around_white_and_guide_help_fills_them(drawings):
    for d in drawings:
        meant = np.logical_or.reduce([m for m, _ in d.meant])
        inside = painted_pixels(d.image)[meant].mean()
        if d.style == "outline":  # a traced edge leaves the shape's inside white
            assert inside < 0.6, d.name
            assert painted_pixels(fill_outlines(d.image).image)[meant].mean() > 0.9, d.name
        if d.kind == "scribble":  # back-and-forth strokes cover most of it, with gaps
            assert 0.5 < inside < 1.0, d.name


def filled(d, size: int = 64, colour_of=None) -> np.ndarray:
    """A made-up result: the drawing's meant regions painted flat in (a function of) their colours."""
    out = np.full((SIZE, SIZE, 3), 255, np.uint8)
    for m, c in d.meant:
        out[m] = c if colour_of is None else colour_of(c)
    return np.asarray(Image.fromarray(out).resize((size, size), Image.BOX))


def test_the_follows_test_passes_the_meant_picture_and_fails_what_the_issue_saw(drawings):
    for d in drawings:
        assert follows(filled(d), d.meant).ok, d.name  # the drawing as meant, at the model's 64 px
        pale = follows(filled(d, colour_of=lambda c: tuple(int(255 - 0.25 * (255 - v)) for v in c)), d.meant)
        assert not pale.ok, d.name  # a pale ring or blob
        white = np.full((64, 64, 3), 255, np.uint8)
        assert not follows(white, d.meant).ok
        skin = filled(d, colour_of=lambda c: (240, 200, 170))
        assert not follows(skin, d.meant).ok, d.name  # a skin-coloured blob
    outline = [d for d in drawings if d.style == "outline"]
    as_drawn = [follows(np.asarray(Image.fromarray(d.image).resize((64, 64), Image.BOX)), d.meant).ok for d in outline]
    assert sum(as_drawn) <= 2  # a thin outline is not the filled shape it means


def test_colour_spilling_far_outside_the_shape_does_not_follow(drawings):
    d = next(d for d in drawings if d.thing == "heart" and d.style == "outline")
    flood = np.zeros((64, 64, 3), np.uint8) + np.array(d.meant[0][1], np.uint8)
    assert follows(filled(d), d.meant).spill < 0.1 and not follows(flood, d.meant).ok


def test_near_colour_reads_hue_not_shading():
    red = (249, 47, 96)
    shades = np.array([[[249, 47, 96], [150, 20, 50], [255, 140, 160], [240, 200, 170], [128, 128, 128]]], np.uint8)
    assert freehand.near_colour(shades, red).tolist() == [[True, True, True, False, False]]


# ----- the record, its docs section and the defaults it chose ----------------------------------------------------
@pytest.fixture(scope="module")
def record():
    return freehand.load()


def test_render_is_pure_and_the_docs_section_is_the_records(record):
    text = render(record)
    assert text == render(record) and text == render(freehand.load())
    page = freehand.DOCS.read_text()
    begin, end = f"<!-- {freehand.SECTION}:begin -->", f"<!-- {freehand.SECTION}:end -->"
    assert page.split(begin, 1)[1].split(end, 1)[0].strip() == text.strip()


def test_the_app_defaults_are_the_benchmarks_choices(record):
    cfg = default_config()
    assert cfg.defaults.strength == record["default_strength"]
    assert list(cfg.follows) == record["follows"]
    assert cfg.brush_size == record["brush_size"]
    lo, hi = cfg.follows
    assert lo <= cfg.defaults.strength <= hi


def test_the_section_says_whether_each_target_is_met(record):
    s = record["grid"][f"{record['default_strength']:g}"]["summary"]
    t = record["criteria"]["targets"]
    text = render(record)
    for kind in ("outline", "scribble"):
        word = "met" if s[kind]["follows"] >= t[kind] else "missed"
        assert f"{kind} target {word}" in text
