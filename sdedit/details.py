"""Keep a drawing's details: thin and small parts (eyes, a smile, a sun's rays, wheels) start at a lower t0.

Why: at t0 the noise drowns anything only a few of the model's pixels wide, so a scribbled smiley comes back as
a plain yellow disc and a sun loses its rays; wide regions need the full t0 to become a picture. SDEdit already
has the tool for both: a strength map (each pixel's own t0, `SDEditPipeline(..., strength_map=)`). This module
makes one from the drawing, so that its details start later and survive, while its regions keep the full t0.

The rule, for a flat-colour drawing on the model's plain background. Sizes scale with the guide's longer
side S (the numbers are px at 256):

1. **Drawn** pixels: where any channel differs from the background by more than `outlines.PAINT_THRESHOLD`.
2. **Palette**: the drawing's own colours, most frequent first. A colour joins when it is at least
   `MIN_COLOUR` of the drawn pixels and is not a blend (within `BLEND_TOLERANCE` per channel of a line
   between a palette colour and the background or another palette colour: antialiased edges are blends).
   When the palette leaves more than `MAX_UNEXPLAINED` of the drawn pixels further than `COLOUR_NEAR` from
   every colour in it, the guide is no flat-colour drawing (a photo) and has no details.
3. **Parts**: each drawn pixel belongs to its nearest palette colour. Each colour's pixels are closed by
   `CLOSE_PX` (a scribble's gaps between strokes close, so a scribbled region counts as one region).
4. **Details**: the closed pixels of a colour that an opening by `OPEN_PX` removes: the parts narrower than
   about 2 `OPEN_PX` (a default brush stroke is 10 px wide). Of those, the 4-connected pieces of at least
   `MIN_DETAIL_PX` pixels (an opening also trims a wide shape's corners: small pieces). And the small parts:
   the 4-connected pieces of a colour's closed pixels smaller than `SMALL_PART` of the drawn pixels (a car's
   wheels, an apple's leaf), unless they add up to more than `SMALL_TOTAL` of them (then they are the
   drawing itself: a scribble's separate strokes). All grown by `GROW_PX` to cover their soft edge.
5. **Map**: `DETAIL_STRENGTH` on details, 1 everywhere else. With a mask or a strength map too, the product.

Closing and opening are 4-neighbour steps (a diamond), as `outlines.close`. A guide larger than `WORK_SIDE` is
read at that size (nearest pixels) and its details scaled back to it.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .outlines import _components, _step, close, painted_pixels

DETAIL_STRENGTH = 0.5  # a detail's t0 as a fraction of the edit's t0
MIN_COLOUR = 0.01  # share of the drawn pixels a palette colour needs
COLOUR_NEAR = 90  # sum of channel differences: a pixel this near a palette colour is explained by it
BLEND_TOLERANCE = 30  # per channel: a colour this near a line between two palette colours is their blend
MAX_UNEXPLAINED = 0.1  # share of the drawn pixels: above this the guide is a photo, not a flat drawing
MAX_COLOURS = 12
CLOSE_PX, OPEN_PX, GROW_PX = 7, 7, 3  # px at 256
MIN_DETAIL_PX = 60  # px at 256 (scaled by area): smaller leftovers are a shape's corners, not details
SMALL_PART = 0.1  # share of the drawn pixels: a part of its own colour smaller than this is a detail (a wheel)
SMALL_TOTAL = 0.3  # ... unless such parts add up to more than this (a scribble's separate strokes)
WORK_SIDE = 512  # a larger guide is read at this size (nearest pixels) and its details scaled back: the map only
# ever reaches the model at its own resolution (64 px here), and the rule's cost grows with the pixels


def _px(value: int, side: int) -> int:
    return max(1, round(value * side / 256))


def _dilate(a: np.ndarray, steps: int) -> np.ndarray:
    for _ in range(steps):
        a = _step(a, False)
    return a


def _erode(a: np.ndarray, steps: int) -> np.ndarray:
    return ~_dilate(~a, steps)


def _piece_sizes(region: np.ndarray) -> np.ndarray:
    """(H, W) int: each pixel of `region` holds the size of its 4-connected piece; 0 outside it."""
    labels = _components(region)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return sizes[labels]


def _blended(colours: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N,) bool: which of `colours` (N, 3) lie within BLEND_TOLERANCE of the segment from `a` to `b`."""
    d = b - a
    t = np.clip((colours - a) @ d / max(float(d @ d), 1e-9), 0.0, 1.0)
    return np.abs(a + t[:, None] * d - colours).max(-1) < BLEND_TOLERANCE


def palette(rgb: np.ndarray, drawn: np.ndarray, background=(255, 255, 255)) -> np.ndarray | None:
    """(K, 3) float: the drawing's own colours (rule 2), or None when they do not explain it (a photo)."""
    pixels = rgb[drawn].astype(np.float64)
    if len(pixels) == 0:
        return None
    colours, counts = np.unique(pixels, axis=0, return_counts=True)
    bg = np.asarray(background, np.float64)
    chosen: list[np.ndarray] = []
    for i in np.argsort(-counts, kind="stable"):
        if counts[i] < MIN_COLOUR * len(pixels) or len(chosen) == MAX_COLOURS:
            break
        c = colours[i]
        if any(np.abs(c - q).sum() < COLOUR_NEAR for q in chosen):
            continue
        if any(_blended(c[None], a, b)[0] for a in chosen for b in (bg, *chosen) if b is not a):
            continue
        chosen.append(c)
    if not chosen:
        return None
    pal = np.stack(chosen)
    far = np.abs(colours[:, None, :] - pal[None]).sum(-1).min(-1) >= COLOUR_NEAR
    rest, weights = colours[far], counts[far]
    explained = np.zeros(len(rest), bool)
    for i, a in enumerate(pal):  # antialiased edges: blends of the palette with the background or each other
        for b in (bg, *pal[i + 1 :]):
            explained |= _blended(rest, a, b)
    if weights[~explained].sum() > MAX_UNEXPLAINED * len(pixels):
        return None
    return pal


def details(rgb: np.ndarray, background=(255, 255, 255)) -> np.ndarray:
    """(H, W) bool: the drawing's details (rules 1-4); all False for a guide that is no flat-colour drawing."""
    rgb = np.asarray(rgb, dtype=np.uint8)[..., :3]
    h, w = rgb.shape[:2]
    if max(h, w) > WORK_SIDE:
        scale = WORK_SIDE / max(h, w)
        small = Image.fromarray(rgb).resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.NEAREST)
        found = details(np.asarray(small), background)
        return np.asarray(Image.fromarray(found).resize((w, h), Image.NEAREST))
    drawn = painted_pixels(rgb, background)
    out = np.zeros(drawn.shape, bool)
    colours = palette(rgb, drawn, background)
    if colours is None:
        return out
    side = max(drawn.shape)
    closing, opening, grow = _px(CLOSE_PX, side), _px(OPEN_PX, side), _px(GROW_PX, side)
    nearest = np.abs(rgb[..., None, :].astype(np.int32) - colours[None, None].astype(np.int32)).sum(-1).argmin(-1)
    small = np.zeros(drawn.shape, bool)
    for k in range(len(colours)):
        part = drawn & (nearest == k)
        if not part.any():
            continue
        closed = close(part, closing)
        out |= closed & ~_dilate(_erode(closed, opening), opening)
        small |= closed & (_piece_sizes(closed) < SMALL_PART * drawn.sum())
    if small.sum() <= SMALL_TOTAL * drawn.sum():
        out |= small
    if not out.any():
        return out
    out = _piece_sizes(out) >= MIN_DETAIL_PX * (side / 256) ** 2
    return _dilate(out, grow) if out.any() else out


def detail_strength(rgb: np.ndarray, background=(255, 255, 255)) -> np.ndarray | None:
    """(H, W) float32 strength map: `DETAIL_STRENGTH` on the drawing's details, 1 elsewhere (rule 5); None when
    the drawing has no details (nothing to keep, so the edit stays plain SDEdit)."""
    found = details(rgb, background)
    if not found.any():
        return None
    return np.where(found, np.float32(DETAIL_STRENGTH), np.float32(1.0))
