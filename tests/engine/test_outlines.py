"""Guide help: closed outlines fill with their stroke colour, open strokes and frames do not, thin lines are told."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from sdedit.outlines import HINT, MAX_HOLE, fill_outlines, gap_for, guide_hint, painted_pixels, thin_lines

RED, GREEN, DARK, BLUE = (220, 30, 40), (0, 160, 60), (20, 20, 20), (0, 0, 200)


def drawing(size: int = 256) -> ImageDraw.ImageDraw:
    im = Image.new("RGB", (size, size), "white")
    return im, ImageDraw.Draw(im)


def test_a_closed_outline_fills_with_its_stroke_colour_and_nothing_else_changes():
    im, d = drawing()
    d.ellipse((40, 40, 200, 200), outline=RED, width=10)
    d.line((20, 230, 120, 250), fill=GREEN, width=10)  # an open stroke beside it
    a = np.asarray(im)
    f = fill_outlines(a)
    assert f.holes == 1
    assert tuple(f.image[120, 120]) == RED  # the middle of the circle
    assert f.filled[120, 120] and not f.filled[5, 5]
    # every changed pixel is a filled one, and every filled pixel was unpainted before
    changed = (f.image != a).any(-1)
    assert np.array_equal(changed, f.filled & (a != np.array(RED, np.uint8)).any(-1))
    assert not (f.filled & painted_pixels(a)).any()
    # the filled disc is about the circle's inside (radius 80 - 10)
    assert abs(f.filled.sum() - np.pi * 70**2) < 0.05 * np.pi * 70**2


def test_open_strokes_enclose_nothing():
    im, d = drawing()
    d.arc((40, 40, 200, 200), 0, 300, fill=BLUE, width=8)
    d.line((10, 10, 240, 120), fill=GREEN, width=12)
    d.line((30, 200, 90, 250), fill=DARK, width=3)
    f = fill_outlines(np.asarray(im))
    assert f.holes == 0 and not f.filled.any()
    assert np.array_equal(f.image, np.asarray(im))


def test_a_small_gap_in_the_line_still_closes_it_and_a_wide_one_does_not():
    gap = gap_for(256)
    for opening, closes in ((gap, True), (6 * gap, False)):
        im, d = drawing()
        d.rectangle((60, 60, 190, 190), outline=BLUE, width=8)
        d.rectangle((120, 60, 120 + opening, 68), fill="white")  # cut the top side
        f = fill_outlines(np.asarray(im))
        assert bool(f.filled[125, 125]) is closes, opening


def test_nested_shapes_keep_their_own_colours():
    """A smiley: the face's inside takes the face's colour, the eyes (closed circles) their own."""
    im, d = drawing()
    d.ellipse((30, 30, 226, 226), outline=(255, 200, 61), width=10)
    for x in (85, 145):
        d.ellipse((x, 80, x + 26, 106), outline=DARK, width=5)
    d.arc((80, 110, 176, 190), 20, 160, fill=DARK, width=6)
    f = fill_outlines(np.asarray(im))
    assert f.holes == 3
    assert tuple(f.image[60, 128]) == (255, 200, 61)
    assert tuple(f.image[93, 98]) == DARK and tuple(f.image[93, 158]) == DARK


def test_a_frame_round_the_picture_is_not_filled():
    im, d = drawing()
    d.rectangle((2, 2, 253, 253), outline=RED, width=6)
    f = fill_outlines(np.asarray(im))
    assert not f.filled.any()
    assert MAX_HOLE < 0.95


def test_given_painted_pixels_are_used_instead_of_the_background():
    """A photo: only the painted layer's pixels count, whatever the photo's own colours are."""
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    painted = np.zeros((64, 96), bool)
    painted[10:50, 20:24] = painted[10:50, 60:64] = painted[10:14, 20:64] = painted[46:50, 20:64] = True
    photo[painted] = GREEN
    f = fill_outlines(photo, painted)
    assert f.holes == 1
    assert (f.image[14:46, 24:60] == np.array(GREEN, np.uint8)).all()
    assert np.array_equal(f.image[~f.filled], photo[~f.filled])


def test_nothing_drawn_is_left_alone():
    blank = np.full((32, 40, 3), 255, np.uint8)
    f = fill_outlines(blank)
    assert f.holes == 0 and np.array_equal(f.image, blank)
    assert guide_hint(blank) is None


def test_thin_lines_are_told_and_filled_shapes_are_not():
    im, d = drawing()
    d.ellipse((40, 40, 200, 200), outline=RED, width=4)
    outline = np.asarray(im)
    assert thin_lines(painted_pixels(outline)) and guide_hint(outline) == HINT
    filled = fill_outlines(outline).image
    assert not thin_lines(painted_pixels(filled)) and guide_hint(filled) is None
    im, d = drawing()
    d.line((40, 128, 220, 128), fill=RED, width=30)  # one thick stroke
    assert guide_hint(np.asarray(im)) is None


def test_the_rule_scales_with_the_image():
    """The same drawing at 128, 256 and 512 px fills the same share of the image."""
    shares = []
    for size in (128, 256, 512):
        im, d = drawing(size)
        k = size / 256
        d.ellipse((40 * k, 40 * k, 200 * k, 200 * k), outline=RED, width=round(8 * k))
        shares.append(fill_outlines(np.asarray(im)).filled.mean())
    assert max(shares) - min(shares) < 0.01
