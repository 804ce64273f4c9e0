"""Guide help for drawings: closed outlines filled with their stroke colour, and a word when lines are thin.

Why: SDEdit needs coloured regions. A thin outline carries too little colour to survive the noise at t0,
and the model then draws what its data holds most of. Filling a closed outline with the colour it was drawn
in turns a person's first drawing (an outline) into the kind of guide SDEdit follows (a filled shape).

The rule, exactly (the canvas does the same in `studio/static/canvas.js`, pixel for pixel; the browser tests
compare the two). Sizes scale with the guide's longer side S: `gap = max(1, round(3 S / 256))`.

1. **Painted** pixels: given (a layer's alpha, a mask), or where any channel differs from the background
   colour by more than `PAINT_THRESHOLD` (of 255).
2. **Closed**: the painted set closed by `gap` steps: `gap` dilations then `gap` erosions, each a step to the
   4 neighbours (outside the image counts as unpainted when dilating and as painted when eroding), so that
   gaps of up to about 2 `gap` pixels in a drawn line still close it.
3. **Outside**: the pixels that are not closed-painted and are 4-connected to the border through such pixels.
4. **Holes**: pixels neither painted nor outside, in 4-connected components. A hole must hold a pixel that
   the closing left unpainted (the nicks the closing fills along a stroke's edge are not holes), and a hole
   larger than `MAX_HOLE` of the image is left as it is (a frame drawn round the picture is no shape to fill).
5. **Colour** of a hole: each hole's number is carried `gap + 2` steps into the painted pixels (4
   neighbours, all pixels at once each step, the smaller number where two meet); the hole takes the most
   frequent exact colour among the painted pixels that carry its number, ties to the smallest 0xRRGGBB.
   A hole whose number reaches no painted pixel is left.

Each hole pixel becomes its hole's colour; nothing else changes. Open strokes enclose nothing and stay as
drawn. `thin_lines` says whether a drawing is still mostly thin lines after that (the page's hint).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PAINT_THRESHOLD = 40  # of 255, largest channel difference from the background: "painted"
MAX_HOLE = 0.85  # share of the image above which an enclosed region is not filled
THIN_WIDTH = 8  # px at 256: a drawing whose strokes are mostly narrower than this is "thin lines"
THIN_SHARE = 0.3  # ... when less than this share of its painted pixels survives erosion to that width
THIN_MIN_PAINTED = 0.002  # share of the image: below this there is no drawing to judge

HINT = (
    "Thin lines fade in the noise: the model follows areas of colour. Fill your shapes with colour "
    "(the bucket, or Fill outlines), or paint with a thicker brush."
)


@dataclass(frozen=True)
class Filled:
    """`image`: the guide with its closed outlines filled; `filled`: (H, W) bool, the pixels that changed
    colour; `holes`: how many regions were filled."""

    image: np.ndarray
    filled: np.ndarray
    holes: int


def gap_for(side: int) -> int:
    """The closing radius for an image whose longer side is `side` (3 px at 256)."""
    return max(1, round(3 * side / 256))


def painted_pixels(image: np.ndarray, background: tuple[int, int, int] | None = (255, 255, 255)) -> np.ndarray:
    """(H, W) bool: where `image` (H, W, 3) uint8 differs from the plain background by more than the threshold."""
    bg = np.asarray(background if background is not None else (255, 255, 255), np.int16)
    return np.abs(image.astype(np.int16) - bg).max(-1) > PAINT_THRESHOLD


def _step(a: np.ndarray, edge: bool) -> np.ndarray:
    """a OR its 4 neighbours (a dilation step); `edge` is what lies outside the image."""
    p = np.pad(a, 1, constant_values=edge)
    return p[1:-1, 1:-1] | p[:-2, 1:-1] | p[2:, 1:-1] | p[1:-1, :-2] | p[1:-1, 2:]


def close(painted: np.ndarray, radius: int) -> np.ndarray:
    """`radius` 4-neighbour dilations, then as many erosions (erosion = NOT dilation of NOT, edge painted)."""
    out = painted
    for _ in range(radius):
        out = _step(out, False)
    for _ in range(radius):
        out = ~_step(~out, False)  # outside the image counts as painted when eroding
    return out


def _runs(free: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row runs of `free` in raster order: (run id per pixel, -1 off `free`; first raster index of each run)."""
    flat = free.ravel()
    prev = np.zeros_like(flat)
    prev[1:] = flat[:-1]
    prev[:: free.shape[1]] = False  # a run never continues onto the next row
    starts = flat & ~prev
    ids = np.cumsum(starts) - 1
    return np.where(flat, ids, -1), np.flatnonzero(starts)


def _spread(values: np.ndarray, free: np.ndarray, op) -> np.ndarray:
    """Each row run of `free` takes `op` (np.maximum or np.minimum) of its values, along rows."""
    ids, starts = _runs(free)
    if not starts.size:
        return values
    flat = values.ravel()
    order = np.flatnonzero(free.ravel())  # raster order: each run's pixels are contiguous here
    per_run = op.reduceat(flat[order], np.searchsorted(order, starts))
    out = flat.copy()
    out[order] = per_run[ids[order]]
    return out.reshape(values.shape)


def _reach(seed: np.ndarray, free: np.ndarray) -> np.ndarray:
    """The pixels of `free` 4-connected to `seed` within `free` (a flood fill: whole row and column runs at a
    time, until nothing changes)."""
    out = seed & free
    while True:
        grown = _spread(out, free, np.maximum)
        grown = _spread(grown.T, free.T, np.maximum).T
        if np.array_equal(grown, out):
            return out
        out = grown


def _components(region: np.ndarray) -> np.ndarray:
    """(H, W) int32 labels: each 4-connected component of `region` gets the smallest raster index in it
    (plus 1); 0 elsewhere."""
    h, w = region.shape
    big = np.int32(h * w + 1)
    labels = np.where(region, np.arange(1, h * w + 1, dtype=np.int32).reshape(h, w), big)
    while True:
        low = _spread(labels, region, np.minimum)
        low = _spread(low.T, region.T, np.minimum).T
        if np.array_equal(low, labels):
            return np.where(region, labels, 0)
        labels = low


def _carry(labels: np.ndarray, into: np.ndarray, steps: int) -> np.ndarray:
    """Carry the labels `steps` 4-neighbour steps into the pixels of `into` (the smaller label where two meet;
    a pixel keeps the label it got first)."""
    big = np.int32(np.iinfo(np.int32).max)
    cur = np.where(labels > 0, labels, big)
    for _ in range(steps):
        p = np.pad(cur, 1, constant_values=big)
        low = np.minimum.reduce([p[:-2, 1:-1], p[2:, 1:-1], p[1:-1, :-2], p[1:-1, 2:]])
        take = into & (cur == big) & (low < big)
        if not take.any():
            break
        cur = np.where(take, low, cur)
    return np.where(into & (cur < big), cur, 0)


def fill_outlines(
    image: np.ndarray,
    painted: np.ndarray | None = None,
    background: tuple[int, int, int] | None = (255, 255, 255),
) -> Filled:
    """Fill each closed outline of a drawing with its stroke colour (the module docstring has the rule).

    Args:
        image (`np.ndarray`): (H, W, 3) uint8, the flattened drawing.
        painted (`np.ndarray`, *optional*): (H, W) bool, the drawn pixels when known (a paint layer's alpha, a
            mask); None = where `image` differs from `background`.
        background (`tuple[int, int, int]`, *optional*): the plain colour the drawing is on (white when None).

    Returns:
        `Filled`: the filled image, the pixels that changed colour, and how many regions were filled.
    """
    rgb = np.ascontiguousarray(np.asarray(image, dtype=np.uint8)[..., :3])
    h, w = rgb.shape[:2]
    drawn = painted_pixels(rgb, background) if painted is None else np.asarray(painted, dtype=bool)
    none = Filled(rgb.copy(), np.zeros((h, w), bool), 0)
    if not drawn.any():
        return none
    gap = gap_for(max(h, w))
    closed = close(drawn, gap)
    border = np.zeros((h, w), bool)
    border[0, :] = border[-1, :] = border[:, 0] = border[:, -1] = True
    outside = _reach(border, ~closed)
    holes = ~drawn & ~outside
    if not holes.any():
        return none
    labels = _components(holes)
    ids, sizes = np.unique(labels[labels > 0], return_counts=True)
    open_ids = np.unique(labels[(labels > 0) & ~closed])  # a hole holds a pixel the closing did not paint
    drop = ids[(sizes > MAX_HOLE * h * w) | ~np.isin(ids, open_ids)]
    if drop.size:
        labels[np.isin(labels, drop)] = 0
    carried = _carry(labels, drawn, gap + 2)
    packed = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    sel = carried > 0
    pairs = np.unique(np.stack([carried[sel].astype(np.int64), packed[sel]], 1), axis=0, return_counts=True)
    colour: dict[int, int] = {}
    best: dict[int, int] = {}
    for (label, value), count in zip(pairs[0].tolist(), pairs[1].tolist(), strict=True):
        # pairs come sorted by (label, colour): a strictly larger count wins, so ties keep the smaller colour
        if count > best.get(label, 0):
            best[label], colour[label] = count, value
    out = rgb.copy()
    filled = np.zeros((h, w), bool)
    keys = np.array(sorted(colour), dtype=np.int64)
    if keys.size:
        region = np.isin(labels, keys)
        values = np.array([colour[k] for k in keys.tolist()], dtype=np.int64)
        chosen = values[np.searchsorted(keys, labels[region])]
        out[region] = np.stack([(chosen >> 16) & 255, (chosen >> 8) & 255, chosen & 255], -1).astype(np.uint8)
        filled = region
    return Filled(out, filled, int(keys.size))


def thin_lines(painted: np.ndarray) -> bool:
    """Whether a drawing is mostly thin lines: it has painted pixels, but less than `THIN_SHARE` of them
    survive an erosion that removes strokes narrower than `THIN_WIDTH` px (at 256; scaled with the image)."""
    drawn = np.asarray(painted, dtype=bool)
    h, w = drawn.shape
    total = int(drawn.sum())
    if total < THIN_MIN_PAINTED * h * w:
        return False
    radius = max(1, round(THIN_WIDTH / 2 * max(h, w) / 256))
    eroded = drawn
    for _ in range(radius):
        eroded = ~_step(~eroded, False)
    return int(eroded.sum()) < THIN_SHARE * total


def guide_hint(image: np.ndarray, painted: np.ndarray | None = None, background=(255, 255, 255)) -> str | None:
    """The page's words for a guide that is mostly thin lines (`HINT`), else None."""
    rgb = np.asarray(image, dtype=np.uint8)[..., :3]
    drawn = painted_pixels(rgb, background) if painted is None else np.asarray(painted, dtype=bool)
    return HINT if thin_lines(drawn) else None


def fill_guide(
    rgb: np.ndarray, mask: np.ndarray | None = None, background: tuple[int, int, int] | None = (255, 255, 255)
) -> tuple[np.ndarray, np.ndarray | None, Filled]:
    """The guide help of an edit (`SDEditPipeline(..., fill_outlines=True)`): (guide, mask, what was filled).

    No mask: the drawn pixels are those that differ from the model's `background`. With a mask (H, W) in
    [0, 1]: the drawn pixels are those above 0.5, the colours come from the guide, and the mask grows by the
    filled pixels (they may change, as the strokes that enclose them). Filling a filled guide changes nothing.
    """
    if mask is None:
        filled = fill_outlines(rgb, None, background)
        return filled.image, None, filled
    filled = fill_outlines(rgb, np.asarray(mask) > 0.5)
    grown = np.maximum(mask, filled.filled.astype(np.asarray(mask).dtype)) if filled.holes else mask
    return filled.image, grown, filled
