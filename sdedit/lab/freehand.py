"""The freehand benchmark: does what a newcomer draws come back as a picture of it?

    python -m sdedit freehand                      # ~15-30 min on 2 shared cores; writes eval/freehand.json,
                                                   # the docs/quality.md section and docs/img/freehand-*.png

48 drawings made by a script the way people draw (`freehand_drawings`: 12 things x outline / outline in colours
/ scribble in colours / scribble; large and centred or small and off-centre), each edited with 3 seeds by the
embedded model at the app's settings (DPM-Solver++, 20 steps), once as drawn (*baseline*) and once with guide
help (*help*: `sdedit.outlines.fill_outlines` on the drawing first, as the Paint tab and `fill_outlines=True` do).

A result **succeeds** when it passes both parts:

(a) **It follows the drawing** (`follows`; pixels only, no network): in each region the drawing means (its
    shape, its colour), the result's pixels near that colour (hue within `HUE_NEAR` degrees, saturated and lit
    enough to be a colour at all) cover at least `COVER` of the region, the region is not pale (median
    saturation at least `NOT_PALE` of the meant colour's), and that colour does not spill far outside it (near
    pixels outside the region grown by 3 px at most `SPILL` of its area).
(b) **It looks like a real thing** (the lab's networks): its kNN realism distance D3 (`judges.RealismScorer`,
    against the held-out emoji shipped with the realism net) is within what real held-out emoji score (at most
    the 90th percentile of D3 over the held-out emoji outside that reference), and the identity net puts it
    nearer to the meant thing's emoji than to the other 11 things' and to people (`PEOPLE_EMOJI`, what the
    model falls back to): a drawn cat nearest a cat emoji. KID of each setting's results against the
    held-out emoji is reported beside it.

The same run measures what the app's defaults are chosen by: the brush size (`brush_size` in the model's
config: the outline drawings at several brush sizes, thin to thick), the t0 grid with guide help (the default
t0 and the range where the model follows drawings, `follows` in its config, together with the evaluation's
identity accuracy over t0 from docs/quality.md), the identity-cosine threshold of `sdedit.ranking`, and how
ranking and auto strength do on the same results (both read the grid's results: an auto edit equals a plain
edit at the t0 it picks, `tests/engine/test_ranking.py`).
"""

from __future__ import annotations

import json
import os
import platform
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..configs import REPO_ROOT, repo_relative
from ..outlines import fill_outlines
from .freehand_drawings import DEFAULT_BRUSH, THINGS, Drawing, drawing_set

RESULTS = REPO_ROOT / "eval" / "freehand.json"
DOCS = REPO_ROOT / "docs" / "quality.md"
SECTION = "freehand"
SEEDS = (0, 1, 2)
STRENGTHS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
BRUSHES = (5, 10, 15, 20)
DEFAULT_STRENGTH = 0.5  # the app's default when the benchmark runs the baseline and the brush sweep

HUE_NEAR = 30.0  # degrees
MIN_SATURATION, MIN_VALUE = 0.25, 0.25  # a pixel below either is no colour (white, grey, black)
COVER = 0.6
NOT_PALE = 0.5
SPILL = 0.75
MIN_PART = 0.1  # of a drawing's meant area: smaller regions (a fish's tail) are not judged alone
REALISM_QUANTILE = 0.9
TARGETS = {"outline": 0.85, "scribble": 0.90}

# the emoji (file names of the image set) that count as each thing; those missing from the set are ignored
MEANT_EMOJI = {
    "apple": "1f34e 1f34f",
    "balloon": "1f388",
    "car": "1f697 1f698 1f3ce-fe0f 1f693 1f694 1f695 1f699",
    "cat": "1f408 1f431 1f408-200d-2b1b 1f63a 1f638 1f639 1f63b 1f63c 1f63d 1f63e 1f63f 1f640",
    "fish": "1f41f 1f420 1f421",
    "flower": "1f337 1f338 1f339 1f33a 1f33b 1f33c 1f490 1f4ae 1fabb 1fab7 1f940",
    "heart": "2764-fe0f 1f493 1f494 1f495 1f496 1f497 1f498 1f499 1f49a 1f49b 1f49c 1f49d 1f49e 1f49f 1f5a4 1f90d "
    "1f90e 1f9e1 1fa75 1fa76 1fa77 2665-fe0f 2763-fe0f",
    "house": "1f3e0 1f3e1 1f3d8-fe0f 1f3da-fe0f",
    "smiley": "smileys",  # every face of the Smileys & Emotion group (below)
    "star": "2b50 1f31f 1f320 1f4ab",
    "sun": "2600-fe0f 1f31e 26c5 1f324-fe0f 1f325-fe0f 1f326-fe0f",
    "tree": "1f333 1f332 1f334 1f384 1f38b",
}
# what the model falls back to when it loses a drawing: a person (standing, walking, man, woman, person)
PEOPLE_EMOJI = "1f9cd 1f6b6 1f468 1f469 1f9d1 1f9d2 1f466 1f467"


# ----- (a) follows the drawing ------------------------------------------------------------------------------------
def hsv(image: np.ndarray) -> np.ndarray:
    """uint8 (..., 3) RGB -> float (..., 3): hue in degrees, saturation and value in [0, 1]."""
    rgb = np.asarray(image, np.float64) / 255.0
    mx, mn = rgb.max(-1), rgb.min(-1)
    delta = mx - mn
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    safe = np.where(delta > 0, delta, 1.0)
    h = np.where(mx == r, ((g - b) / safe) % 6, np.where(mx == g, (b - r) / safe + 2, (r - g) / safe + 4))
    h = np.where(delta > 0, h * 60.0, 0.0)
    s = np.where(mx > 0, delta / np.where(mx > 0, mx, 1.0), 0.0)
    return np.stack([h, s, mx], -1)


def near_colour(image: np.ndarray, colour) -> np.ndarray:
    """(H, W) bool: pixels of the colour's hue (within HUE_NEAR), saturated and lit enough to be a colour."""
    px, ref = hsv(image), hsv(np.asarray(colour, np.uint8))
    dh = np.abs(px[..., 0] - ref[0]) % 360.0
    dh = np.minimum(dh, 360.0 - dh)
    return (dh <= HUE_NEAR) & (px[..., 1] >= MIN_SATURATION) & (px[..., 2] >= MIN_VALUE)


def _downsample(mask: np.ndarray, size: int) -> np.ndarray:
    f = mask.shape[0] // size
    return mask.reshape(size, f, size, f).mean(axis=(1, 3)) > 0.5


def _step(a: np.ndarray, grow: bool) -> np.ndarray:
    p = np.pad(a, 1, constant_values=not grow)
    if grow:
        return p[1:-1, 1:-1] | p[:-2, 1:-1] | p[2:, 1:-1] | p[1:-1, :-2] | p[1:-1, 2:]
    return p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]


def _morph(a: np.ndarray, steps: int, grow: bool) -> np.ndarray:
    for _ in range(steps):
        a = _step(a, grow)
    return a


@dataclass(frozen=True)
class Follows:
    """The follows test of one result: the worst region's coverage, saturation ratio and spill, and the verdict."""

    coverage: float
    saturation: float
    spill: float

    @property
    def ok(self) -> bool:
        return self.coverage >= COVER and self.saturation >= NOT_PALE and self.spill <= SPILL


def follows(result: np.ndarray, meant: list[tuple[np.ndarray, tuple[int, int, int]]]) -> Follows:
    """(a) for one result (uint8 (R, R, 3), the model's canvas) against a drawing's meant regions (masks at
    the drawing's size, each with its colour): every region of at least `MIN_PART` of the meant area must be
    covered and not pale; spill is counted per colour, outside all its regions; the worst region decides."""
    size = result.shape[0]
    masks = [(_downsample(m, size) if m.shape[0] != size else m, tuple(c)) for m, c in meant]
    total = sum(int(m.sum()) for m, _ in masks)
    worst = None
    for m, colour in masks:
        if m.sum() < max(4, MIN_PART * total):
            continue
        inner = _morph(m, 1, grow=False)
        inner = inner if inner.sum() >= 4 else m
        near = near_colour(result, colour)
        coverage = float(near[inner].mean())
        ref_s = float(hsv(np.asarray(colour, np.uint8))[1])
        saturation = float(np.median(hsv(result[inner])[..., 1])) / max(ref_s, 1e-6)
        same = np.logical_or.reduce([mm for mm, cc in masks if cc == colour])
        spill = float((near & ~_morph(same, max(1, round(3 * size / 64)), grow=True)).sum()) / float(same.sum())
        f = Follows(coverage, saturation, spill)
        if worst is None or (f.ok, f.coverage) < (worst.ok, worst.coverage):
            worst = f
    return worst if worst is not None else Follows(0.0, 0.0, 0.0)


# ----- (b) realism and identity -----------------------------------------------------------------------------------
class Yardsticks:
    """The networks' part of success: the realism bound from real held-out emoji, the identity gallery of every
    emoji identity, each thing's meant identities, and the KID reference (held-out emoji)."""

    def __init__(self, data: str = "fluent-emoji-3d"):
        from ..judges import load_identity_net, realism_scorer
        from .data import identity_of, load_image_set
        from .identity import IdentityGallery

        self.realism = realism_scorer()
        extractor = self.realism.extractor
        image_set = load_image_set(data, extractor.config.resolution)
        held = image_set.subset(held_out=True)
        ref_names = set(json.loads((extractor.path / "config.json").read_text())["info"]["selfcheck"]["names"])
        outside = np.array([str(n) not in ref_names for n in held.names])
        real_d3 = self.realism.distance(held.images[outside])
        self.real_bound = float(np.quantile(real_d3, REALISM_QUANTILE))
        self.real_d3_median = float(np.median(real_d3))
        self.real_count = int(outside.sum())
        self.kid_reference = extractor.features(held.images)
        ids = [identity_of(str(n)) for n in image_set.names]
        self.embedder = load_identity_net()
        present = set(ids)
        smileys = self._smiley_identities(image_set, ids)
        self.meant = {}
        for thing, stems in {**MEANT_EMOJI, "person": PEOPLE_EMOJI}.items():
            wanted = smileys if stems == "smileys" else {identity_of(s) for s in stems.split()}
            self.meant[thing] = sorted(wanted & present)
            if not self.meant[thing]:
                raise ValueError(f"no emoji of {thing!r} is in the image set")
        # one centroid per emoji identity of the things (and people), from all of its images
        keep = [i for i, n in enumerate(ids) if any(n in v for v in self.meant.values())]
        self.gallery = IdentityGallery(self.embedder, image_set.images[keep], [ids[i] for i in keep])
        self.classes = list(self.meant)

    @staticmethod
    def _smiley_identities(image_set, ids) -> set[str]:
        import tarfile

        from .data import FLUENT_EMOJI_3D, fetch_npm

        with tarfile.open(fetch_npm(FLUENT_EMOJI_3D.groups)) as tar:
            table = json.load(tar.extractfile("package/data-by-emoji.json"))
        faces = {
            "-".join(f"{ord(c):x}" for c in e if ord(c) != 0xFE0F)
            for e, info in table.items()
            if info["group"] == "Smileys & Emotion"
            and re.search(r"\bface\b", info["name"])
            and "cat" not in info["name"]
        }
        return {i for n, i in zip(image_set.names, ids, strict=True) if str(n).replace("-fe0f", "") in faces}

    def identity_hits(self, images, things) -> np.ndarray:
        """Whether each image is nearer (cosine, best identity centroid of each class) to its own thing than to
        the 11 other things and to people (13 classes; chance 1 in 13)."""
        sims = self.embedder.embed(images) @ self.gallery.centroids.T
        names = self.gallery.names
        cols = {c: [names.index(i) for i in self.meant[c]] for c in self.classes}
        best = np.stack([sims[:, cols[c]].max(1) for c in self.classes], 1)
        return np.array([self.classes[k] == t for k, t in zip(best.argmax(1), things, strict=True)])


def framed_like_an_emoji(result: np.ndarray, drawing: Drawing, margin: float = 0.1) -> np.ndarray:
    """The part of a result where the drawing is (its painted box and a margin), padded square with white: the
    identity net's gallery is emoji that fill their frame, so a small, off-centre drawing's result is judged at
    the same framing (else the frame, not the thing, decides its nearest identity)."""
    from ..outlines import painted_pixels

    ys, xs = np.nonzero(painted_pixels(drawing.image))
    f = result.shape[0] / drawing.image.shape[0]
    y0, y1, x0, x1 = ys.min() * f, (ys.max() + 1) * f, xs.min() * f, (xs.max() + 1) * f
    side = max(y1 - y0, x1 - x0) * (1 + 2 * margin)
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    left, top, size = round(cx - side / 2), round(cy - side / 2), max(2, round(side))
    pad = size + 1  # the box may reach past the image: white there, as the canvas
    big = np.pad(result, ((pad, pad), (pad, pad), (0, 0)), constant_values=255)
    return big[top + pad : top + pad + size, left + pad : left + pad + size]


# ----- running -----------------------------------------------------------------------------------------------------
def guides_for(drawings: list[Drawing], helped: bool) -> list[np.ndarray]:
    """What the model gets: the drawing, or (guide help) the drawing with its closed outlines filled."""
    return [fill_outlines(d.image).image if helped else d.image for d in drawings]


def edit_all(
    pipe, guides: list[np.ndarray], strength: float, seeds=SEEDS, batch: int = 48, keep_details: bool = False
) -> np.ndarray:
    """(len(guides) x len(seeds), R, R, 3) uint8 canvases: every guide with every seed, the app's sampler and steps,
    guide-major. Each guide is prepared once; samples run `batch` at a time (each with its own seed)."""
    settings = pipe.check_inputs(strength=strength)
    prepared = [pipe.prepare(g, None, settings.fit, keep_details=keep_details) for g in guides]
    items = [(p, s) for p in prepared for s in seeds]
    out = []
    for i in range(0, len(items), batch):
        chunk = items[i : i + batch]
        samples = pipe.run([p for p, _ in chunk], settings, [s for _, s in chunk])
        out.append(samples.canvases)
    return np.concatenate(out)


def score(
    canvases: np.ndarray, drawings: list[Drawing], guides: list[np.ndarray], sticks: Yardsticks, judge, seeds=SEEDS
) -> dict:
    """Per result: follows (a), realism and identity (b), and the ranking's three measures against the guide."""
    from ..judges import to_resolution
    from .metrics import kid

    n_s = len(seeds)
    rows = []
    res = canvases.shape[1]
    d3 = sticks.realism.distance(list(canvases))
    framed = [framed_like_an_emoji(canvases[gi * n_s + si], d) for gi, d in enumerate(drawings) for si in range(n_s)]
    hits = sticks.identity_hits(framed, [d.thing for d in drawings for _ in seeds])
    for gi, (d, g) in enumerate(zip(drawings, guides, strict=True)):
        guide_small = to_resolution(g, res)
        sc = judge.score(guide_small, list(canvases[gi * n_s : (gi + 1) * n_s]))
        for si, seed in enumerate(seeds):
            k = gi * n_s + si
            f = follows(canvases[k], d.meant)
            rows.append(
                {
                    "drawing": d.name,
                    "thing": d.thing,
                    "style": d.style,
                    "kind": d.kind,
                    "seed": seed,
                    "follows": f.ok,
                    "coverage": round(f.coverage, 3),
                    "saturation": round(f.saturation, 3),
                    "spill": round(f.spill, 3),
                    "realism_d3": round(float(d3[k]), 3),
                    "real": bool(d3[k] <= sticks.real_bound),
                    "identity": bool(hits[k]),
                    "success": bool(f.ok and d3[k] <= sticks.real_bound and hits[k]),
                    "l2_to_guide": round(float(sc.faithfulness[si]), 3),
                    "identity_cosine": round(float(sc.identity[si]), 4),
                    "guide_d3": round(sc.guide_realism, 3),
                }
            )
    k = kid(sticks.realism.extractor.features(list(canvases)), sticks.kid_reference, subsets=100, seed=0)
    return {"rows": rows, "kid": round(k.mean, 4), "kid_std": round(k.std, 4)}


def summary(rows: list[dict]) -> dict:
    """Rates per kind (outline / scribble) and overall."""
    out = {}
    for kind in ("outline", "scribble", "all"):
        sel = [r for r in rows if kind == "all" or r["kind"] == kind]
        n = len(sel)
        out[kind] = {
            "n": n,
            "follows": sum(r["follows"] for r in sel) / n,
            "real": sum(r["real"] for r in sel) / n,
            "identity": sum(r["identity"] for r in sel) / n,
            "success": sum(r["success"] for r in sel) / n,
            "follows_and_real": sum(r["follows"] and r["real"] for r in sel) / n,
            "real_given_follows": (
                sum(r["real"] and r["identity"] for r in sel if r["follows"]) / max(1, sum(r["follows"] for r in sel))
            ),
        }
    return out


def calibrate_keeps(rows: list[dict]) -> dict:
    """The identity-cosine threshold that best agrees with the follows test (balanced accuracy), over the grid."""
    cos = np.array([r["identity_cosine"] for r in rows])
    ok = np.array([r["follows"] for r in rows])
    best = None
    for t in np.round(np.arange(0.05, 0.96, 0.05), 2):
        pred = cos >= t
        tpr = (pred & ok).sum() / max(1, ok.sum())
        tnr = (~pred & ~ok).sum() / max(1, (~ok).sum())
        bal = (tpr + tnr) / 2
        if best is None or bal > best["balanced_accuracy"] + 1e-12:
            best = {"threshold": float(t), "balanced_accuracy": float(bal), "tpr": float(tpr), "tnr": float(tnr)}
    return best


def ranking_check(rows: list[dict], keeps: float) -> dict:
    """Does the result ranked first (of the seeds of one drawing) succeed / follow more often than a random one?"""
    from .. import ranking

    by = {}
    for r in rows:
        by.setdefault(r["drawing"], []).append(r)
    first_follows, first_success, mean_follows, mean_success = [], [], [], []
    for group in by.values():
        s = ranking.Scores(
            np.array([r["realism_d3"] for r in group]),
            np.array([r["l2_to_guide"] for r in group]),
            np.array([r["identity_cosine"] for r in group]),
            group[0]["guide_d3"],
        )
        top = group[_rank_with(s, keeps).order[0]]
        first_follows.append(top["follows"])
        first_success.append(top["success"])
        mean_follows.append(np.mean([r["follows"] for r in group]))
        mean_success.append(np.mean([r["success"] for r in group]))
    return {
        "drawings": len(by),
        "first_follows": float(np.mean(first_follows)),
        "any_follows": float(np.mean([m > 0 for m in mean_follows])),
        "mean_follows": float(np.mean(mean_follows)),
        "first_success": float(np.mean(first_success)),
        "mean_success": float(np.mean(mean_success)),
    }


def _rank_with(scores, keeps: float):
    from .. import ranking

    saved = ranking.KEEPS_IDENTITY
    ranking.KEEPS_IDENTITY = keeps
    try:
        return ranking.rank(scores)
    finally:
        ranking.KEEPS_IDENTITY = saved


def auto_check(grid: dict[float, list[dict]], tried: list[float], keeps: float) -> dict:
    """Auto strength on the grid's results: per drawing and seed, the t0 `ranking.choose_strength` picks among
    `tried` (scored as the engine scores its probes), and whether that result follows / succeeds."""
    from .. import ranking

    saved = ranking.KEEPS_IDENTITY
    ranking.KEEPS_IDENTITY = keeps
    picked, rows = [], []
    try:
        n = len(grid[tried[0]])
        for k in range(n):
            cand = [grid[t][k] for t in tried]
            s = ranking.Scores(
                np.array([r["realism_d3"] for r in cand]),
                np.array([r["l2_to_guide"] for r in cand]),
                np.array([r["identity_cosine"] for r in cand]),
                cand[0]["guide_d3"],
            )
            i, _ = ranking.choose_strength(tried, s)
            picked.append(tried[i])
            rows.append(cand[i])
    finally:
        ranking.KEEPS_IDENTITY = saved
    return {
        "tried": tried,
        "picked": {f"{t:g}": picked.count(t) for t in tried},
        "summary": summary(rows),
    }


# ----- choices from the measurements ----------------------------------------------------------------------------
def choose_brush(brushes: dict[int, dict]) -> int:
    """The brush whose outline drawings (with guide help) most often follow and look real; ties: the most
    successes, then the one nearest the canvas's 10 px. (Identity is a weak judge of drawings, so it breaks ties
    rather than deciding: docs/quality.md.)"""
    return max(
        brushes,
        key=lambda b: (
            brushes[b]["outline"]["follows_and_real"],
            brushes[b]["outline"]["success"],
            -abs(b - DEFAULT_BRUSH),
        ),
    )


def choose_range(grid: dict[float, dict], identity: dict[float, float]) -> tuple[float, float]:
    """Where the model follows drawings: lo = the lowest t0 whose results (with guide help) look real at least
    half as often as at the best t0; hi = the highest t0 at which at least 85% follow and the evaluation's identity
    accuracy is at least 50%."""
    best_real = max(g["all"]["real"] for g in grid.values())
    ts = sorted(grid)
    lo = next(t for t in ts if grid[t]["all"]["real"] >= 0.5 * best_real)
    ok = [t for t in ts if grid[t]["all"]["follows"] >= TARGETS["outline"] and identity.get(t, 0.0) >= 0.5 and t >= lo]
    hi = max(ok) if ok else lo
    return lo, hi


def choose_strength(grid: dict[float, dict], follows_range: tuple[float, float]) -> float:
    """The default t0: within the range, where the most results (with guide help) follow and look real; ties:
    the most successes, then the lower t0."""
    lo, hi = follows_range
    inside = [t for t in sorted(grid) if lo <= t <= hi]
    return max(inside, key=lambda t: (grid[t]["all"]["follows_and_real"], grid[t]["all"]["success"], -t))


def evaluation_identity(record: Path = REPO_ROOT / "eval" / "results.json") -> dict[float, float]:
    """The evaluation's identity accuracy per t0 on held-out strokes, from its record (eval/results.json, which
    docs/quality.md's t0 table is rendered from)."""
    rows = json.loads(Path(record).read_text())["rows"]
    sweep = [r for r in rows if r["section"] == "tradeoff" and r["strength"]]
    return {float(r["strength"]): float(r["identity_acc"]) for r in sweep}


# ----- the run -------------------------------------------------------------------------------------------------
def _setting(measured: dict) -> dict:
    return {"summary": summary(measured["rows"]), "kid": measured["kid"], "kid_std": measured["kid_std"]}


def _compact(rows: list[dict]) -> list[list]:
    """The committed per-result record: [drawing, seed, follows, real, identity, coverage]."""
    return [[r["drawing"], r["seed"], r["follows"], r["real"], r["identity"], r["coverage"]] for r in rows]


def run(
    pipe=None,
    seeds=SEEDS,
    strengths=STRENGTHS,
    brushes=BRUSHES,
    sheets: Path | None = REPO_ROOT / "docs" / "img",
    log=print,
    cache: Path | None = None,
) -> dict:
    """Measure everything the module docstring lists; returns the record `render` turns into the docs section.
    `cache`: a folder that keeps each setting's results (the edits are deterministic), so a run that stopped, or
    a change to the scoring, does not redo the model's work."""
    import torch

    from ..pipeline import SDEditPipeline
    from ..ranking import Judge, candidates

    t_start, load_start = time.perf_counter(), os.getloadavg()[0]
    pipe = pipe or SDEditPipeline.from_pretrained()
    pipe.set_progress_bar_config(disable=True)
    sticks = Yardsticks()
    judge = Judge(sticks.realism)
    evals = 0
    reused: list[str] = []  # settings whose results came from the cache (made by an earlier run of this command)

    def measure(drawings, helped: bool, strength: float, details: bool = False) -> dict:
        nonlocal evals
        t0 = time.perf_counter()
        guides = guides_for(drawings, helped)
        stored = None
        if cache is not None:
            name = f"b{drawings[0].brush}-{'help' if helped else 'base'}{'-details' if details else ''}"
            stored = Path(cache) / f"{name}-t{strength:g}-s{len(seeds)}.npy"
        if stored is not None and stored.is_file():
            canvases = np.load(stored)
            reused.append(stored.name)
        else:
            canvases = edit_all(pipe, guides, strength, seeds, keep_details=details)
            if stored is not None:
                stored.parent.mkdir(parents=True, exist_ok=True)
                np.save(stored, canvases)
        evals += len(canvases) * pipe.evaluations(pipe.check_inputs(strength=strength))
        out = score(canvases, drawings, guides, sticks, judge, seeds)
        out["canvases"], out["guides"] = canvases, guides
        s = summary(out["rows"])
        log(
            f"  brush {drawings[0].brush}, {'help' if helped else 'baseline'}{' + details' if details else ''}, "
            f"t0 {strength:g}: follows outline "
            f"{s['outline']['follows']:.0%} scribble {s['scribble']['follows']:.0%}, success {s['all']['success']:.0%}"
            f" ({time.perf_counter() - t0:.0f} s, {(time.perf_counter() - t_start) / 60:.1f} min)"
        )
        return out

    log(f"freehand: {len(THINGS)} things x 4 styles, seeds {list(seeds)}; real-D3 bound {sticks.real_bound:.3f}")
    by_brush = {b: measure(drawing_set(b), True, DEFAULT_STRENGTH) for b in brushes}
    brush = choose_brush({b: summary(r["rows"]) for b, r in by_brush.items()})
    drawings = drawing_set(brush)
    # as drawn: today's defaults (the canvas's brush, t0 0.5), and the defaults chosen here
    base_settings = [(DEFAULT_BRUSH, DEFAULT_STRENGTH)]
    grid = {t: by_brush[brush] if t == DEFAULT_STRENGTH else measure(drawings, True, t) for t in strengths}
    grid_summary = {t: summary(g["rows"]) for t, g in grid.items()}
    identity = evaluation_identity()
    keeps = calibrate_keeps([r for g in grid.values() for r in g["rows"]])
    follows_range = choose_range(grid_summary, identity)
    default = choose_strength(grid_summary, follows_range)
    base_settings += [(brush, default)] if (brush, default) not in base_settings else []
    baseline = {(b, t): measure(drawing_set(b), False, t) for b, t in base_settings}
    tried = [t for t in candidates(follows_range) if t in grid]
    chosen = grid[default]
    kept = measure(drawings, True, default, details=True)
    record = {
        "model": pipe.config.name,
        "settings": {
            "sampler": pipe.config.defaults.sampler,
            "num_inference_steps": pipe.config.defaults.num_inference_steps,
        },
        "drawings": len(drawings),
        "seeds": list(seeds),
        "things": [t.name for t in THINGS],
        "criteria": {
            "hue_near_deg": HUE_NEAR,
            "cover": COVER,
            "not_pale": NOT_PALE,
            "spill": SPILL,
            "min_part": MIN_PART,
            "realism_quantile": REALISM_QUANTILE,
            "real_bound_d3": round(sticks.real_bound, 4),
            "real_d3_median": round(sticks.real_d3_median, 4),
            "real_images": sticks.real_count,
            "identity_classes": len(sticks.classes),
            "identities": len(sticks.gallery.names),
            "targets": TARGETS,
        },
        "brushes": {str(b): _setting(r) for b, r in by_brush.items()},
        "brush_size": brush,
        "baseline": [{"brush": b, "strength": t, **_setting(r)} for (b, t), r in baseline.items()],
        "grid": {f"{t:g}": _setting(g) for t, g in grid.items()},
        "details": {"strength": default, **_setting(kept), "changed": details_changes(chosen["rows"], kept["rows"])},
        "evaluation_identity": {f"{t:g}": a for t, a in sorted(identity.items())},
        "follows": list(follows_range),
        "default_strength": default,
        "keeps_identity": keeps,
        "ranking": ranking_check(chosen["rows"], keeps["threshold"]),
        "auto": auto_check({t: grid[t]["rows"] for t in tried}, tried, keeps["threshold"]),
        "results": {"help": _compact(chosen["rows"]), "baseline": _compact(baseline[(brush, default)]["rows"])},
        "run": {
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "minutes": round((time.perf_counter() - t_start) / 60, 1),
            "model_evaluations": evals,
            "settings_from_cache": len(reused),
            "machine": f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} thread(s)",
            "load_average": [round(load_start, 1), round(os.getloadavg()[0], 1)],
            "command": "python -m sdedit freehand",
        },
    }
    if sheets is not None:
        make_sheets(pipe, drawings, baseline[(brush, default)], chosen, default, sheets)
        make_details_sheet(pipe, drawings, chosen, kept, sheets)
    return record


def details_changes(helped: list[dict], kept: list[dict]) -> dict:
    """How keeping details changed each result's verdicts, counted: follows and success, gained and lost."""
    out = {}
    for key in ("follows", "success"):
        out[key] = {
            "gained": sum(1 for a, b in zip(helped, kept, strict=True) if b[key] and not a[key]),
            "lost": sum(1 for a, b in zip(helped, kept, strict=True) if a[key] and not b[key]),
            "lost_things": sorted({a["thing"] for a, b in zip(helped, kept, strict=True) if a[key] and not b[key]}),
        }
    return out


def _result_tile(upscaler, canvas: np.ndarray, row: dict, cell: int, bar: int) -> Image.Image:
    """A result on a sheet: upscaled as the app shows it, `cell` px, with a `bar` px bar under it: green = success,
    yellow = follows only, red = does not follow."""
    im = upscaler.upscale(canvas[None])[0] if upscaler is not None else canvas
    tile = Image.fromarray(im).resize((cell, cell), Image.LANCZOS)
    colour = (0, 170, 80) if row["success"] else (240, 190, 0) if row["follows"] else (220, 40, 40)
    ImageDraw.Draw(tile).rectangle((0, cell - bar, cell, cell), fill=colour)
    return tile


def make_sheets(pipe, drawings: list[Drawing], baseline: dict, helped: dict, strength: float, folder: Path) -> None:
    """docs/img/freehand-outlines.png and -scribbles.png: per thing and style, the drawing, its baseline result
    (seed 0), the guide with help, and its three results; the bar under a result: green = success, yellow =
    follows only, red = does not follow."""
    from ..upscale import resolve

    upscaler = resolve(pipe.config, None, pipe.device)
    n = len(SEEDS)
    cell = 96

    def result(canvas, row: dict) -> Image.Image:
        return _result_tile(upscaler, canvas, row, cell, bar=6)

    folder.mkdir(parents=True, exist_ok=True)
    for kind in ("outline", "scribble"):
        idx = [i for i, d in enumerate(drawings) if d.kind == kind]
        styles = sorted({drawings[i].style for i in idx}, key=lambda s: ("colours" in s, s))
        cols = 3 + n
        head = 22
        sheet = Image.new("RGB", (len(styles) * cols * cell, head + len(THINGS) * cell), "white")
        draw = ImageDraw.Draw(sheet)
        for si, style in enumerate(styles):
            x0 = si * cols * cell
            words = ["drawing", f"as drawn, t0 {strength:g}", "with help", *[f"help, seed {s}" for s in SEEDS]]
            for k, word in enumerate(words):
                draw.text((x0 + k * cell + 4, 5), word if k else f"{style}", fill=(0, 0, 0))
            for ti, thing in enumerate(THINGS):
                i = next(j for j in idx if drawings[j].thing == thing.name and drawings[j].style == style)
                y = head + ti * cell
                tiles = [
                    Image.fromarray(drawings[i].image).resize((cell, cell), Image.LANCZOS),
                    result(baseline["canvases"][i * n], baseline["rows"][i * n]),
                    Image.fromarray(helped["guides"][i]).resize((cell, cell), Image.LANCZOS),
                    *[result(helped["canvases"][i * n + s], helped["rows"][i * n + s]) for s in range(n)],
                ]
                for k, tile in enumerate(tiles):
                    sheet.paste(tile, (x0 + k * cell, y))
        sheet.save(folder / f"freehand-{kind}s.png", optimize=True)


def make_details_sheet(pipe, drawings: list[Drawing], helped: dict, kept: dict, folder: Path) -> None:
    """docs/img/freehand-details.png: the drawings in their parts' colours (where details have colours of their
    own), each as the guide with help, its results (three seeds) with help, and with help and kept details."""
    from ..details import details
    from ..upscale import resolve

    upscaler = resolve(pipe.config, None, pipe.device)
    n, cell, head = len(SEEDS), 80, 22
    idx = [i for i, d in enumerate(drawings) if d.style.endswith("colours")]

    def show(canvas, row: dict) -> Image.Image:
        return _result_tile(upscaler, canvas, row, cell, bar=5)

    def guide(i):
        g = helped["guides"][i].copy()
        g[details(g)] //= 3  # the details, darkened: where the t0 is halved
        return Image.fromarray(g).resize((cell, cell), Image.LANCZOS)

    cols, per_col = 1 + 2 * n, (len(idx) + 1) // 2
    sheet = Image.new("RGB", (2 * cols * cell, head + per_col * cell), "white")
    draw = ImageDraw.Draw(sheet)
    words = ["details (dark)", *[f"help, seed {s}" for s in SEEDS], *[f"+ details, seed {s}" for s in SEEDS]]
    for half in range(2):
        for k, word in enumerate(words):
            draw.text((half * cols * cell + k * cell + 3, 5), word, fill=(0, 0, 0))
    for j, i in enumerate(idx):
        x0, y = (j // per_col) * cols * cell, head + (j % per_col) * cell
        tiles = [guide(i)]
        tiles += [show(helped["canvases"][i * n + s], helped["rows"][i * n + s]) for s in range(n)]
        tiles += [show(kept["canvases"][i * n + s], kept["rows"][i * n + s]) for s in range(n)]
        for k, tile in enumerate(tiles):
            sheet.paste(tile, (x0 + k * cell, y))
    folder.mkdir(parents=True, exist_ok=True)
    sheet.save(folder / "freehand-details.png", optimize=True)


# ----- the docs section ----------------------------------------------------------------------------------------
def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _details_section(kd: dict, helped: dict, targets: dict) -> list[str]:
    """The "Keep details" part of the section: what it does, its numbers against help alone, its sheet."""
    s, ch = kd["summary"], kd["changed"]

    def verdicts(key: str) -> str:
        c = ch[key]
        lost = f" ({', '.join(c['lost_things'])})" if c["lost_things"] else ""
        return f"{c['gained']} gained, {c['lost']} lost{lost}"

    return [
        "",
        "### Keep details",
        "",
        "`keep_details=True` (`sdedit.details`; `--keep-details` on the command line; the Paint canvas's switch "
        "*Fill outlines, keep details* turns it on with the fill) gives a drawing's thin and small parts "
        "(eyes, a smile, rays, a string: the parts of a colour that an opening by about a brush's width removes; "
        "wheels, a leaf: parts of their own colour smaller than a tenth of the drawing) half the t0, through a "
        "strength map made from the drawing, so that they survive the noise. "
        f"With help at t0 {kd['strength']:g}, against help alone: outlines follow {_pct(s['outline']['follows'])} "
        f"(help alone {_pct(helped['outline']['follows'])}), scribbles {_pct(s['scribble']['follows'])} "
        f"({_pct(helped['scribble']['follows'])}), look real {_pct(s['all']['real'])} "
        f"({_pct(helped['all']['real'])}), identity {_pct(s['all']['identity'])} ({_pct(helped['all']['identity'])}), "
        f"success {_pct(s['all']['success'])} ({_pct(helped['all']['success'])}). Per result: follows "
        f"{verdicts('follows')}; success {verdicts('success')}. The follows test counts a colour outside the "
        "drawing's meant regions as spill, and a sun's rays are drawn outside its disc, so a sun that keeps its "
        "rays can fail it. This row is what the Paint tab gives by default: "
        + ", ".join(
            f"{kind} target ({_pct(targets[kind])}) {'met' if s[kind]['follows'] >= targets[kind] else 'missed'}"
            for kind in ("outline", "scribble")
        )
        + ".",
        "",
        "![Keep details: the guide with its details darkened, three seeds with help, three with help and kept "
        "details](img/freehand-details.png)",
        "",
    ]


def render(results: dict) -> str:
    """The docs/quality.md section for a freehand record: pure (the same record gives the same text)."""
    c, run_ = results["criteria"], results["run"]
    base = results["baseline"][-1]["summary"]  # as drawn at the chosen defaults
    d = results["default_strength"]
    helped = results["grid"][f"{d:g}"]["summary"]
    lo, hi = results["follows"]
    lines = [
        "## Your own drawing: the freehand benchmark",
        "",
        f"*Generated by `{run_['command']}` ({run_['date']}, {run_['minutes']} min, {run_['model_evaluations']:,} "
        f"model evaluations on {run_['machine']}, load average {run_['load_average'][0]} -> "
        f"{run_['load_average'][1]}"
        + (
            f"; {run_['settings_from_cache']} settings' edits reused from an earlier run (`--cache`), scored anew"
            if run_.get("settings_from_cache")
            else ""
        )
        + "); "
        "the numbers are in `eval/freehand.json`.*",
        "",
        f"{results['drawings']} drawings made by a script the way people draw (`sdedit/lab/freehand_drawings.py`): "
        f"{', '.join(results['things'])}, each as an outline in one colour (large, centred), an outline in its parts' "
        "colours (small, off-centre), a scribble in colours (large) and a scribble in one colour (small, off-centre), "
        "with the canvas's round brush at 256 px. Each is edited by "
        f"`{results['model']}` with seeds {', '.join(map(str, results['seeds']))} at the app's sampler "
        f"({results['settings']['sampler']}, {results['settings']['num_inference_steps']} steps), as drawn "
        "(*baseline*) and with guide help (*help*: closed outlines filled with their colour, "
        "`sdedit.outlines.fill_outlines`, what the Paint tab and `fill_outlines=True` do).",
        "",
        "A result **follows** the drawing (pixels only) when, in every region the drawing means, pixels of the meant "
        f"colour (hue within {c['hue_near_deg']:g}°, not white, grey or black) cover at least {_pct(c['cover'])}, "
        f"the region is not pale (median saturation at least {_pct(c['not_pale'])} of the meant colour's) and the "
        f"colour spills outside it by at most {_pct(c['spill'])} of its area. It **looks real** when its kNN realism "
        f"distance D3 is at most {c['real_bound_d3']:.2f}, the {c['realism_quantile']:.0%} quantile of real held-out "
        f"emoji ({c['real_images']} outside the reference; their median {c['real_d3_median']:.2f}); its **identity** "
        f"holds when, in the identity net, it is nearer to the meant thing's emoji than to those of the other things "
        f"and to people ({c['identity_classes']} classes, {c['identities']} emoji identities; chance 1 in "
        f"{c['identity_classes']}). **Success** = all three.",
        "",
        "| setting | outlines follow | scribbles follow | look real | follow, look real | identity | success | KID |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def row(label: str, s: dict, kid: float, kid_std: float) -> str:
        return (
            f"| {label} | {_pct(s['outline']['follows'])} | {_pct(s['scribble']['follows'])} "
            f"| {_pct(s['all']['real'])} | {_pct(s['all']['follows_and_real'])} | {_pct(s['all']['identity'])} "
            f"| {_pct(s['all']['success'])} "
            f"| {kid:.3f} ± {kid_std:.3f} |"
        )

    for r in results["baseline"]:
        lines.append(row(f"as drawn, brush {r['brush']}, t0 {r['strength']:g}", r["summary"], r["kid"], r["kid_std"]))
    for t, g in results["grid"].items():
        mark = " **← default**" if float(t) == d else ""
        lines.append(row(f"help, brush {results['brush_size']}, t0 {t}{mark}", g["summary"], g["kid"], g["kid_std"]))
    kd = results.get("details")
    if kd:
        label = f"help + keep details, brush {results['brush_size']}, t0 {kd['strength']:g}"
        lines.append(row(label, kd["summary"], kd["kid"], kd["kid_std"]))
    t = results["criteria"]["targets"]
    lines += [
        "",
        f"**Targets** (help, the default settings): outlines {_pct(t['outline'])}, scribbles {_pct(t['scribble'])}. "
        f"Measured: outlines {_pct(helped['outline']['follows'])}, scribbles {_pct(helped['scribble']['follows'])} "
        f"(as drawn, without help, at the same t0: {_pct(base['outline']['follows'])} and "
        f"{_pct(base['scribble']['follows'])}): "
        + ", ".join(
            f"{kind} target {'met' if helped[kind]['follows'] >= t[kind] else 'missed'}"
            for kind in ("outline", "scribble")
        )
        + ".",
        "",
        *(_details_section(kd, helped, t) if kd else []),
        "### Brush size",
        "",
        "The drawings again at each brush size (help, t0 "
        f"{DEFAULT_STRENGTH:g}); the default (`brush_size` in the model's config, the Paint canvas's brush at start) "
        "is the size whose outlines most often follow and look real (then: most successes, then nearest 10 px):",
        "",
        "| brush (px at 256) | outlines follow | scribbles follow | outlines follow and look real | all succeed |",
        "|---:|---:|---:|---:|---:|",
    ]
    for b, r in sorted(results["brushes"].items(), key=lambda kv: int(kv[0])):
        s = r["summary"]
        mark = " **← default**" if int(b) == results["brush_size"] else ""
        lines.append(
            f"| {b}{mark} | {_pct(s['outline']['follows'])} | {_pct(s['scribble']['follows'])} "
            f"| {_pct(s['outline']['follows_and_real'])} | {_pct(s['all']['success'])} |"
        )
    ev = results["evaluation_identity"]
    k = results["keeps_identity"]
    rk, au = results["ranking"], results["auto"]
    lines += [
        "",
        "### Where the model follows drawings",
        "",
        f"**t0 {lo:g} to {hi:g}** (`follows` in the model's config, said by the Strength slider): from the lowest t0 "
        "whose results look real at least half as often as at the best t0, to the highest at which at least "
        f"{_pct(t['outline'])} of the drawings follow (with help) and the evaluation's identity accuracy (held-out "
        "strokes, the t0 table above) is at least 50%. Identity accuracy by t0: "
        + ", ".join(f"{tt} {_pct(a)}" for tt, a in ev.items() if float(tt) in {float(x) for x in results["grid"]})
        + f". The default t0 is the one in that range where the most results follow and look real (then: the most "
        f"successes, then the lower t0): **{d:g}**. Identity (the third part of success) is a weak judge of these "
        "drawings, so it breaks ties rather than deciding.",
        "",
        "### Pick for me: ranking and auto strength",
        "",
        f"A result still shows the drawing when the cosine of its and its guide's identity embeddings is at least "
        f"**{k['threshold']:g}** (`sdedit.ranking.KEEPS_IDENTITY`): the threshold that agrees best with the follows "
        f"test over the t0 grid (balanced accuracy {_pct(k['balanced_accuracy'])}; calibrated on these drawings, so "
        "this is an in-sample figure).",
        "",
        f"- **Ranking** (the {len(results['seeds'])} seeds of each drawing, help, t0 {d:g}): the result ranked first "
        f"follows in {_pct(rk['first_follows'])} of the drawings (a random one: {_pct(rk['mean_follows'])}; at least "
        f"one of the seeds: {_pct(rk['any_follows'])}) and succeeds in {_pct(rk['first_success'])} (random: "
        f"{_pct(rk['mean_success'])}).",
        f"- **Auto strength** (one probe per t0 of {', '.join(f'{x:g}' for x in au['tried'])}; picked: "
        + ", ".join(f"{tt} {nn}x" for tt, nn in au["picked"].items())
        + f"): outlines follow {_pct(au['summary']['outline']['follows'])}, scribbles "
        f"{_pct(au['summary']['scribble']['follows'])}, success {_pct(au['summary']['all']['success'])} "
        f"(the fixed default: {_pct(helped['all']['success'])}).",
        "",
        "![Outline drawings: drawing, as drawn, with help, three seeds](img/freehand-outlines.png)",
        "",
        "![Scribbles: drawing, as drawn, with help, three seeds](img/freehand-scribbles.png)",
        "",
        "The bar under a result: green = success, yellow = follows but not real or not its identity, red = does not "
        "follow.",
    ]
    return "\n".join(lines)


def write(results: dict, out: Path = RESULTS, docs: Path | None = DOCS) -> None:
    """Save the record and put its rendered section into docs/quality.md."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    if docs is not None:
        from .records import write_section

        write_section(docs, SECTION, render(results))


def load(path: Path = RESULTS) -> dict:
    return json.loads(Path(path).read_text())


def add_args(p) -> None:
    p.add_argument("--out", default=str(RESULTS), help="the record (default eval/freehand.json)")
    p.add_argument("--docs", default=str(DOCS), help="page whose freehand section is rewritten ('' for none)")
    p.add_argument("--quick", action="store_true", help="one seed, t0 0.4-0.6, one brush: checks the plumbing")
    p.add_argument("--render-only", action="store_true", help="rewrite the docs section from the record")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: the CPU policy's)")
    p.add_argument("--cache", default=None, help="folder keeping each setting's results, to resume or re-score")


def main(args) -> int:
    out, docs = Path(args.out), Path(args.docs) if args.docs else None
    if args.render_only:
        if docs is not None:
            write(load(out), out, docs)
        return 0
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    kw = dict(seeds=(0,), strengths=(0.4, 0.5, 0.6), brushes=(DEFAULT_BRUSH,), sheets=None) if args.quick else {}
    results = run(**kw, cache=Path(args.cache) if args.cache else None)
    write(results, out, docs)
    print(f"wrote {repo_relative(out)}" + (f" and the {SECTION} section of {repo_relative(docs)}" if docs else ""))
    return 0
