"""Freehand drawings made by a script the way people draw them: 12 everyday things, outlined or scribbled.

Not the app's examples (big, bold, filled by hand to work): what a newcomer draws on the Paint canvas. Each
thing is a few parts in unit coordinates (a region with a colour, or a detail line such as eyes or a stem).
A drawing renders them at the Paint canvas's 256 px on white with a round brush, as the canvas draws (a disc
stamped along the path, antialiased), in one of four styles:

- `outline`: each region's edge traced once by hand (a wobbly closed line that overshoots where it meets its
  start), one colour for everything, large and near the centre: how most people first draw;
- `outline-colours`: the same in each part's own colour, small and off-centre;
- `scribble-colours`: each region filled with back-and-forth strokes that leave gaps and overshoot its edge,
  in each part's own colour, large and near the centre;
- `scribble`: the same in one colour, small and off-centre.

Each drawing also keeps what it *means* (`meant`): the regions a result should show, each with the colour it
should have there, the drawing's details (eyes, stems) left out; that is what the benchmark's "follows the
drawing" test reads. Everything is seeded: the same seed and brush give the same pixels.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

SIZE = 256  # the Paint canvas (sdedit.studio.guides.CANVAS_SIZE)
DEFAULT_BRUSH = 10  # the canvas's brush slider at start, px at 256
SUPERSAMPLE = 4  # drawn at 4x, then box-filtered down: the canvas's antialiased edge

RED, PINK, ORANGE, YELLOW, GOLD = "#F92F60", "#F92F60", "#FF822D", "#FFC83D", "#F9A825"
BLUE, DARK_BLUE, GREEN, DARK_GREEN, PURPLE = "#00A6ED", "#1565C0", "#00D26A", "#2E7D32", "#8D65C5"
BROWN, DARK_BROWN, DARK = "#A86B4E", "#6D4534", "#212121"


def hex_rgb(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))


# ----- the things: parts in unit coordinates (0..1, y down) -----------------------------------------------------
def circle(cx: float, cy: float, r: float, n: int = 48, sx: float = 1.0) -> list[tuple[float, float]]:
    return [(cx + sx * r * math.cos(2 * math.pi * k / n), cy + r * math.sin(2 * math.pi * k / n)) for k in range(n)]


def star_points(cx: float, cy: float, r: float, inner: float = 0.45) -> list[tuple[float, float]]:
    pts = []
    for k in range(10):
        a = -math.pi / 2 + k * math.pi / 5
        rr = r if k % 2 == 0 else r * inner
        pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
    return pts


def heart_points(cx: float, cy: float, s: float, n: int = 64) -> list[tuple[float, float]]:
    pts = []
    for k in range(n):
        t = 2 * math.pi * k / n
        x = 16 * math.sin(t) ** 3
        y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
        pts.append((cx + s * x / 17, cy - s * y / 17 - 0.03))
    return pts


def arc(cx: float, cy: float, r: float, a0: float, a1: float, n: int = 16) -> list[tuple[float, float]]:
    angles = [a0 + (a1 - a0) * k / (n - 1) for k in range(n)]
    return [(cx + r * math.cos(a), cy + r * math.sin(a)) for a in angles]


@dataclass(frozen=True)
class Region:
    """A closed shape with its colour; `meant`: a result must show it in that colour."""

    points: tuple[tuple[float, float], ...]
    colour: str
    meant: bool = True


@dataclass(frozen=True)
class Line:
    """A detail drawn as a stroke (eyes, a mouth, a stem, rays); `dot`: a single dab."""

    points: tuple[tuple[float, float], ...]
    colour: str
    dot: bool = False


@dataclass(frozen=True)
class Thing:
    name: str
    parts: tuple[Region | Line, ...]

    @property
    def main_colour(self) -> str:
        """The colour of its largest meant region: what a one-colour drawing is drawn in."""
        regions = [p for p in self.parts if isinstance(p, Region) and p.meant]
        return max(regions, key=lambda r: _area(r.points)).colour


def _area(points) -> float:
    p = np.asarray(points)
    return 0.5 * abs(float(np.dot(p[:, 0], np.roll(p[:, 1], 1)) - np.dot(p[:, 1], np.roll(p[:, 0], 1))))


def _r(points, colour, meant=True) -> Region:
    return Region(tuple(points), colour, meant)


def _l(points, colour, dot=False) -> Line:
    return Line(tuple(points), colour, dot)


THINGS: tuple[Thing, ...] = (
    Thing(
        "apple",
        (
            _r(
                [
                    (
                        0.5 + 0.36 * math.sin(t) * (1 - 0.1 * math.cos(t)),
                        0.56 - 0.33 * math.cos(t) + 0.06 * math.cos(2 * t),
                    )
                    for t in np.linspace(0, 2 * math.pi, 48, endpoint=False)
                ],
                RED,
            ),
            _r(circle(0.62, 0.18, 0.09, 24, sx=1.6), GREEN, meant=False),
            _l([(0.5, 0.28), (0.48, 0.12)], DARK_BROWN),
        ),
    ),
    Thing("balloon", (_r(circle(0.5, 0.4, 0.28, 48, sx=0.82), RED), _l([(0.5, 0.68), (0.46, 0.8), (0.54, 0.9)], DARK))),
    Thing(
        "car",
        (
            _r(
                [
                    (0.08, 0.62),
                    (0.1, 0.46),
                    (0.28, 0.44),
                    (0.36, 0.28),
                    (0.64, 0.28),
                    (0.74, 0.44),
                    (0.9, 0.47),
                    (0.92, 0.62),
                ],
                BLUE,
            ),
            _r(circle(0.28, 0.66, 0.08, 24), DARK, meant=False),
            _r(circle(0.72, 0.66, 0.08, 24), DARK, meant=False),
        ),
    ),
    Thing(
        "cat",
        (
            _r(
                [
                    *arc(0.5, 0.56, 0.32, math.radians(-30), math.radians(210), 32),
                    (0.2, 0.16),
                    (0.36, 0.3),
                    (0.64, 0.3),
                    (0.8, 0.16),
                ],
                ORANGE,
            ),
            _l([(0.4, 0.5)], DARK, dot=True),
            _l([(0.6, 0.5)], DARK, dot=True),
            _l([(0.46, 0.64), (0.5, 0.67), (0.54, 0.64)], DARK),
        ),
    ),
    Thing(
        "fish",
        (
            _r(
                [
                    (0.44 - 0.3 * math.cos(t), 0.5 + 0.22 * math.sin(t))
                    for t in np.linspace(0, 2 * math.pi, 40, endpoint=False)
                ],
                BLUE,
            ),
            _r([(0.72, 0.5), (0.92, 0.3), (0.92, 0.7)], BLUE),
            _l([(0.28, 0.45)], DARK, dot=True),
        ),
    ),
    Thing(
        "flower",
        (
            _r(
                [
                    (
                        0.5 + (0.2 + 0.1 * math.cos(5 * t)) * math.cos(t),
                        0.38 + (0.2 + 0.1 * math.cos(5 * t)) * math.sin(t),
                    )
                    for t in np.linspace(0, 2 * math.pi, 80, endpoint=False)
                ],
                PURPLE,
            ),
            _r(circle(0.5, 0.38, 0.08, 24), YELLOW, meant=False),
            _l([(0.5, 0.68), (0.52, 0.8), (0.5, 0.94)], DARK_GREEN),
        ),
    ),
    Thing("heart", (_r(heart_points(0.5, 0.5, 0.4), RED),)),
    Thing(
        "house",
        (
            _r([(0.2, 0.48), (0.8, 0.48), (0.8, 0.9), (0.2, 0.9)], YELLOW),
            _r([(0.12, 0.5), (0.5, 0.14), (0.88, 0.5)], RED),
            _r([(0.43, 0.66), (0.57, 0.66), (0.57, 0.9), (0.43, 0.9)], DARK_BROWN, meant=False),
        ),
    ),
    Thing(
        "smiley",
        (
            _r(circle(0.5, 0.5, 0.38, 48), YELLOW),
            _l([(0.38, 0.4)], DARK, dot=True),
            _l([(0.62, 0.4)], DARK, dot=True),
            _l(arc(0.5, 0.52, 0.2, math.radians(25), math.radians(155)), DARK),
        ),
    ),
    Thing("star", (_r(star_points(0.5, 0.53, 0.42), YELLOW),)),
    Thing(
        "sun",
        (
            _r(circle(0.5, 0.5, 0.24, 40), GOLD),
            *(
                _l(
                    [
                        (0.5 + 0.31 * math.cos(a), 0.5 + 0.31 * math.sin(a)),
                        (0.5 + 0.43 * math.cos(a), 0.5 + 0.43 * math.sin(a)),
                    ],
                    GOLD,
                )
                for a in np.linspace(0, 2 * math.pi, 8, endpoint=False)
            ),
        ),
    ),
    Thing(
        "tree",
        (
            _r(
                [
                    (
                        0.5 + 0.3 * math.cos(t) * (1 + 0.08 * math.cos(6 * t)),
                        0.38 + 0.28 * math.sin(t) * (1 + 0.08 * math.cos(6 * t)),
                    )
                    for t in np.linspace(0, 2 * math.pi, 60, endpoint=False)
                ],
                GREEN,
            ),
            _r([(0.44, 0.64), (0.56, 0.64), (0.57, 0.92), (0.43, 0.92)], BROWN, meant=False),
        ),
    ),
)

# ----- styles and placement --------------------------------------------------------------------------------------
STYLES = ("outline", "outline-colours", "scribble-colours", "scribble")


@dataclass(frozen=True)
class Placement:
    """Where the thing goes on the canvas: its unit square scaled by `scale` (of the canvas) at centre (cx, cy)."""

    scale: float
    cx: float
    cy: float

    def to_px(self, pts) -> np.ndarray:
        p = np.asarray(pts, np.float64)
        return np.stack(
            [(self.cx + (p[:, 0] - 0.5) * self.scale) * SIZE, (self.cy + (p[:, 1] - 0.5) * self.scale) * SIZE], 1
        )


def placement_for(style: str, rng: np.random.Generator) -> Placement:
    """Large near the centre, or small and off-centre (toward a random corner)."""
    if style in ("outline", "scribble-colours"):
        return Placement(
            float(rng.uniform(0.82, 0.92)), 0.5 + float(rng.uniform(-0.03, 0.03)), 0.5 + float(rng.uniform(-0.03, 0.03))
        )
    scale = float(rng.uniform(0.45, 0.55))
    sx, sy = rng.choice([-1, 1], 2)
    off = scale / 2 + 0.04
    return Placement(
        scale,
        0.5 + sx * float(rng.uniform(0.5 - off - 0.1, 0.5 - off)),
        0.5 + sy * float(rng.uniform(0.5 - off - 0.1, 0.5 - off)),
    )


@dataclass
class Drawing:
    """One drawing: its pixels (256 px RGB uint8), what it means, and how it was made."""

    name: str
    thing: str
    style: str
    brush: int
    seed: int
    image: np.ndarray = field(repr=False)
    meant: list[tuple[np.ndarray, tuple[int, int, int]]] = field(repr=False)  # (256 px bool mask, colour)

    @property
    def kind(self) -> str:
        """outline or scribble."""
        return "outline" if self.style.startswith("outline") else "scribble"


class Brush:
    """A round brush on a supersampled canvas: a disc stamped every half pixel along a path (the canvas's stroke
    with round caps and joins)."""

    def __init__(self):
        self.im = Image.new("RGB", (SIZE * SUPERSAMPLE, SIZE * SUPERSAMPLE), "white")
        self.draw = ImageDraw.Draw(self.im)

    def stroke(self, pts: np.ndarray, width: float, colour: str) -> None:
        s = SUPERSAMPLE
        r = width * s / 2
        p = np.asarray(pts, np.float64) * s
        if len(p) == 1:
            p = np.concatenate([p, p])
        for a, b in itertools.pairwise(p):
            n = max(1, int(np.ceil(np.linalg.norm(b - a) / (0.5 * s))))
            for t in np.linspace(0, 1, n + 1):
                x, y = a + (b - a) * t
                self.draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)

    def image(self) -> np.ndarray:
        return np.asarray(self.im.resize((SIZE, SIZE), Image.BOX))


def _smooth_noise(n: int, rng: np.random.Generator, amplitude: float, waves: int = 3) -> np.ndarray:
    """A smooth closed wobble: a few random low-frequency sines."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    out = np.zeros(n)
    for k in range(1, waves + 1):
        out += rng.normal(0, amplitude / k) * np.sin(k * t + rng.uniform(0, 2 * np.pi))
    return out


def _resample(pts: np.ndarray, step: float) -> np.ndarray:
    """A closed polygon as points about `step` px apart."""
    closed = np.concatenate([pts, pts[:1]])
    seg = np.linalg.norm(np.diff(closed, axis=0), axis=1)
    cum = np.concatenate([[0], np.cumsum(seg)])
    n = max(8, int(cum[-1] / step))
    s = np.linspace(0, cum[-1], n, endpoint=False)
    return np.stack([np.interp(s, cum, closed[:, 0]), np.interp(s, cum, closed[:, 1])], 1)


def hand_outline(pts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A closed shape traced by hand: a wobble along its normal (about 1.5% of its size), a random start, and
    an overshoot of a few points past where it began."""
    p = _resample(pts, 3.0)
    centre = p.mean(0)
    size = float(np.ptp(p, axis=0).max())
    radial = p - centre
    radial /= np.linalg.norm(radial, axis=1, keepdims=True).clip(1e-6)
    p = p + radial * _smooth_noise(len(p), rng, 0.015 * size)[:, None]
    start = int(rng.integers(len(p)))
    p = np.roll(p, -start, axis=0)
    over = int(rng.integers(2, 6))
    return np.concatenate([p, p[:over]])


def region_mask(pts: np.ndarray) -> np.ndarray:
    """(SIZE, SIZE) bool: the polygon's inside."""
    im = Image.new("L", (SIZE, SIZE), 0)
    ImageDraw.Draw(im).polygon([tuple(x) for x in pts], fill=255)
    return np.asarray(im) > 127


def scribble_path(mask: np.ndarray, width: float, rng: np.random.Generator) -> list[np.ndarray]:
    """Back-and-forth strokes across a region: parallel passes `width` x 1.0-1.5 apart at a random slant, each
    pass overshooting the edge by up to 3 px, joined end to end as one zig-zag per run of passes."""
    angle = float(rng.uniform(-0.6, 0.6)) + (math.pi / 2 if rng.random() < 0.3 else 0.0)
    d = np.array([math.cos(angle), math.sin(angle)])  # along a pass
    nrm = np.array([-d[1], d[0]])
    ys, xs = np.nonzero(mask)
    pts = np.stack([xs, ys], 1).astype(np.float64)
    proj_n = pts @ nrm
    spacing = width * float(rng.uniform(1.0, 1.5))
    offsets = np.arange(proj_n.min() + width * 0.4, proj_n.max(), spacing)
    passes = []
    for k, off in enumerate(offsets):
        sel = np.abs(proj_n - off) < 0.7
        if sel.sum() < 2:
            continue
        along = pts[sel] @ d
        lo, hi = along.min() - rng.uniform(0, 3), along.max() + rng.uniform(0, 3)
        a, b = off * nrm + lo * d, off * nrm + hi * d
        passes.append((a, b) if k % 2 == 0 else (b, a))
    paths, current = [], []
    for a, b in passes:
        if current and np.linalg.norm(current[-1] - a) > 4 * spacing:  # a gap (a concave part): lift the pen
            paths.append(np.array(current))
            current = []
        current += [a, b]
    if current:
        paths.append(np.array(current))
    return paths


def draw(thing: Thing, style: str, brush: int = DEFAULT_BRUSH, seed: int = 0) -> Drawing:
    """One drawing of `thing` in `style` (STYLES) with a round brush of `brush` px, deterministic per seed."""
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, not {style!r}")
    rng = np.random.default_rng([seed, STYLES.index(style), sum(map(ord, thing.name)), brush])
    place = placement_for(style, rng)
    one_colour = style in ("outline", "scribble")
    main = thing.main_colour
    canvas = Brush()
    meant = []
    detail = np.zeros((SIZE, SIZE), bool)
    for part in thing.parts:
        colour = main if one_colour else part.colour
        pts = place.to_px(part.points)
        if isinstance(part, Line):
            w = brush * (1.4 if part.dot else 1.0)
            canvas.stroke(pts + rng.normal(0, 1.0, pts.shape), w, colour)
            d = Brush()
            d.stroke(pts, w + 6, "#000000")
            detail |= d.image()[..., 0] < 128
            continue
        mask = region_mask(pts)
        if style.startswith("outline"):
            canvas.stroke(hand_outline(pts, rng), brush, colour)
        else:
            inner = _shrink(mask, brush // 2)  # pass centres stay inside, so the brush reaches the edge
            for path in scribble_path(inner if inner.sum() > 20 else mask, brush, rng):
                canvas.stroke(path, brush, colour)
        if part.meant:
            meant.append((mask, hex_rgb(colour)))
    # in a one-colour drawing, the meant regions are one shape of one colour
    if one_colour and len(meant) > 1:
        union = np.logical_or.reduce([m for m, _ in meant])
        meant = [(union, hex_rgb(main))]
    meant = [(m & ~detail, c) for m, c in meant]
    name = f"{thing.name}-{style}-b{brush}-s{seed}"
    return Drawing(name, thing.name, style, brush, seed, canvas.image(), meant)


def _grow(mask: np.ndarray, r: int) -> np.ndarray:
    out = mask
    for _ in range(r):
        p = np.pad(out, 1)
        out = p[1:-1, 1:-1] | p[:-2, 1:-1] | p[2:, 1:-1] | p[1:-1, :-2] | p[1:-1, 2:]
    return out


def _shrink(mask: np.ndarray, r: int) -> np.ndarray:
    return ~_grow(~mask, r)


def drawing_set(brush: int = DEFAULT_BRUSH, seed: int = 0, things=THINGS, styles=STYLES) -> list[Drawing]:
    """Every thing in every style: 12 x 4 = 48 drawings (24 outlines, 24 scribbles), deterministic."""
    return [draw(t, s, brush, seed) for t in things for s in styles]
