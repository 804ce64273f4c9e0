"""Pick for me: rank one edit's samples best first, and pick t0 per guide, by the project's three measures.

For a guide (at the model's resolution, as the model saw it) and its results:

- **realism**: the kNN realism distance D3 to real held-out emoji (`judges.RealismScorer`; lower = more real);
- **faithfulness**: the paper's L2 between result and guide, pixels in [0, 1] (lower = closer to the drawing);
- **identity**: the cosine between the identity embeddings of result and guide (`judges.IdentityEmbedder`;
  the identity net maps a stroke painting near its emoji, so a result that still shows what was drawn stays
  near the guide). Below `KEEPS_IDENTITY` a result no longer shows the drawing; the threshold is the one that
  best agrees with the freehand benchmark's independent "follows the drawing" test (eval/freehand.json).

**Ranking** (`rank`): results that keep the drawing first; within each group by the sum of their ranks on the
three measures (ties: the more realistic, then the sample's order). Each result gets words saying why it is
where it is. Cost: one realism-net call and one identity-net call on the guide and the n results, no model
evaluation.

**Auto strength** (`pick_strength`): one sample (the first seed) at each candidate t0 of the model's range
where it follows drawings (`ModelConfig.follows`); the chosen t0 is the most realistic candidate that keeps the
drawing, else the lowest. Its probe *is* the first sample (each sample has its own noise stream), so an edit at
auto strength equals a plain edit at the chosen t0 with the same seeds; the other samples run after, in one
batch. Cost: the probes' steps (sum over candidates of round(t0 x N)) plus (n - 1) x the chosen t0's steps,
and one call of each judge per probe set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
import torch

from .judges import IdentityEmbedder, RealismScorer, load_identity_net, realism_scorer
from .pipeline import Samples

# cosine (identity embedding, result vs guide) at or above which a result still shows the drawing: measured
# by the freehand benchmark (eval/freehand.json, "keeps_identity"); tests/engine/test_ranking.py ties the two
KEEPS_IDENTITY = 0.75
AUTO_STEP = 0.1  # candidate t0 values: the model's follows range in steps of this

ORDINALS = ("1st", "2nd", "3rd")


def ordinal(k: int) -> str:
    """1 -> 1st, 4 -> 4th."""
    return ORDINALS[k - 1] if k <= 3 else f"{k}th"


@dataclass(frozen=True, eq=False)
class Scores:
    """The three measures of each result against its guide, and the guide's own realism."""

    realism: np.ndarray  # D3, lower = more realistic
    faithfulness: np.ndarray  # L2 to the guide, lower = closer
    identity: np.ndarray  # cosine to the guide's identity embedding, higher = still shows the drawing
    guide_realism: float

    def __len__(self) -> int:
        return len(self.realism)

    @property
    def keeps(self) -> np.ndarray:
        return self.identity >= KEEPS_IDENTITY


class Judge:
    """The realism and identity nets, loaded once; `score` runs each once on a guide and its results."""

    def __init__(self, realism: RealismScorer | None = None, identity: IdentityEmbedder | None = None):
        self.realism = realism or realism_scorer()
        self.identity = identity or load_identity_net()

    def score(self, guide: np.ndarray, results: Sequence[np.ndarray]) -> Scores:
        """guide: (R, R, 3) uint8 as the model saw it; results: (R, R, 3) uint8 canvases (any same size)."""
        images = [np.asarray(guide, np.uint8), *[np.asarray(r, np.uint8) for r in results]]
        d3 = self.realism.distance(images)
        emb = self.identity.embed(images)
        g = images[0].astype(np.float64) / 255.0
        l2 = np.array([np.linalg.norm(r.astype(np.float64) / 255.0 - g) for r in images[1:]])
        return Scores(d3[1:], l2, emb[1:] @ emb[0], float(d3[0]))


@dataclass(frozen=True)
class Ranking:
    """`order`: result indices best first; `words[i]`: why result `order[i]` is where it is."""

    order: list[int]
    words: list[str]
    scores: Scores

    def as_dict(self) -> list[dict]:
        s = self.scores
        return [
            {
                "place": k + 1,
                "sample": i,
                "why": w,
                "realism_d3": round(float(s.realism[i]), 3),
                "l2_to_guide": round(float(s.faithfulness[i]), 3),
                "identity_cosine": round(float(s.identity[i]), 3),
            }
            for k, (i, w) in enumerate(zip(self.order, self.words, strict=True))
        ]


def _ranks(values: np.ndarray, higher_is_better: bool = False) -> np.ndarray:
    """1 = best; equal values share the better rank."""
    v = -values if higher_is_better else values
    return np.array([1 + int((v < x).sum()) for x in v])


def rank(scores: Scores) -> Ranking:
    """Results best first (module docstring) with the words for each."""
    n = len(scores)
    r_real = _ranks(scores.realism)
    r_faith = _ranks(scores.faithfulness)
    r_ident = _ranks(scores.identity, higher_is_better=True)
    total = r_real + r_faith + r_ident
    keeps = scores.keeps
    order = sorted(range(n), key=lambda i: (not keeps[i], total[i], scores.realism[i], i))
    words = [f"{ordinal(k + 1)}: {_why(i, r_real, r_faith, r_ident, keeps, n)}" for k, i in enumerate(order)]
    return Ranking(order, words, scores)


BEST = ("most realistic", "closest to your drawing's colours", "most like what you drew")
WORST = ("least realistic", "furthest from your colours", "least like what you drew")


def _why(i: int, r_real, r_faith, r_ident, keeps, n: int) -> str:
    ranks = (r_real[i], r_faith[i], r_ident[i])
    parts = [w for w, r in zip(BEST, ranks, strict=True) if r == 1]
    parts += [w for w, r in zip(WORST, ranks, strict=True) if n > 1 and r == n]
    if not keeps[i]:
        parts.append("strays from your drawing")
    return ", ".join(parts) if parts else "between the others on every measure"


# ----- auto strength -----------------------------------------------------------------------------------------
def candidates(follows: tuple[float, float] | None, step: float = AUTO_STEP) -> list[float]:
    """The t0 values auto strength tries: the model's follows range in steps of `step` (0.3-0.6 without one)."""
    lo, hi = follows or (0.3, 0.6)
    n = round((hi - lo) / step)
    return [round(lo + k * step, 4) for k in range(n + 1)]


@dataclass(frozen=True)
class StrengthChoice:
    """The chosen t0, the t0 values tried, their probes' scores (one sample each) and why."""

    strength: float
    tried: list[float]
    scores: Scores
    why: str

    def as_dict(self) -> dict:
        s = self.scores
        return {
            "strength": self.strength,
            "why": self.why,
            "tried": [
                {
                    "strength": t,
                    "realism_d3": round(float(s.realism[k]), 3),
                    "l2_to_guide": round(float(s.faithfulness[k]), 3),
                    "identity_cosine": round(float(s.identity[k]), 3),
                }
                for k, t in enumerate(self.tried)
            ],
        }


def choose_strength(tried: Sequence[float], scores: Scores) -> tuple[int, str]:
    """(index into `tried`, words): the most realistic that keeps the drawing, else the lowest t0."""
    keeps = np.flatnonzero(scores.keeps)
    listed = ", ".join(f"{t:g}" for t in tried)
    if len(keeps):
        k = int(min(keeps, key=lambda i: (scores.realism[i], tried[i])))
        return k, f"t0 {tried[k]:g}: the most realistic of {listed} that still shows your drawing"
    k = int(np.argmin(tried))
    return k, f"t0 {tried[k]:g}: none of {listed} kept your drawing, so the most faithful"


def pick_strength(pipe, guide, settings, seed: int, judge: Judge, tried: Sequence[float] | None = None):
    """Probe each candidate t0 with one sample (seed `seed`) of the prepared `guide`; returns
    (StrengthChoice, the chosen probe's `Samples`). `settings`: checked `pipeline.Settings` (its strength is
    replaced by each candidate's)."""
    tried = list(tried if tried is not None else candidates(pipe.config.follows))
    probes = [pipe.run([guide], replace(settings, strength=t, num_images=1), [seed]) for t in tried]
    scores = judge.score(guide.canvas, [p.canvases[0] for p in probes])
    k, why = choose_strength(tried, scores)
    return StrengthChoice(tried[k], tried, scores, why), probes[k]


def evaluations_of_auto(pipe, settings, tried: Sequence[float], chosen: float) -> int:
    """Model evaluations of an auto-strength edit of `settings.num_images` samples (module docstring)."""
    probe = sum(pipe.evaluations(replace(settings, strength=t)) for t in tried)
    return probe + (settings.num_images - 1) * pipe.evaluations(replace(settings, strength=chosen))


def run_auto(pipe, guide, settings, seeds: Sequence[int], judge: Judge, tried: Sequence[float] | None = None):
    """An edit of `guide` at auto strength: (StrengthChoice, Samples of all len(seeds) samples, in seed order).
    The first sample is the chosen probe; the rest run in one batch at the chosen t0."""
    choice, first = pick_strength(pipe, guide, settings, seeds[0], judge, tried)
    chosen = replace(settings, strength=choice.strength)
    if len(seeds) == 1:
        return choice, first
    rest = pipe.run([guide] * (len(seeds) - 1), chosen, list(seeds[1:]))
    x = torch.cat([first.x, rest.x])
    canvases = np.concatenate([first.canvases, rest.canvases])
    threads = sorted({*first.threads, *rest.threads})
    return choice, Samples(x, canvases, list(seeds), first.seconds + rest.seconds, threads)


def pick(
    pipe,
    image,
    mask_image=None,
    num_images: int = 1,
    seed: int = 0,
    auto_strength: bool = False,
    rank_results: bool = True,
    judge: Judge | None = None,
    strength_map=None,
    fill_outlines: bool = False,
    keep_details: bool = False,
    **settings,
):
    """`pipe(...)` with pick for me, for Python users: t0 picked per guide, and several samples best first.

        out = ranking.pick(pipe, "drawing.png", num_images=4, seed=0, auto_strength=True, fill_outlines=True)
        out.images[0]                      # the best; out.metadata["ranking"][0]["why"] says why

    Args:
        pipe (`SDEditPipeline`): the model to edit with.
        image, mask_image, strength_map: one guide, its mask and strength map, as `SDEditPipeline.__call__` takes.
        num_images (`int`): samples (seeds `seed`, `seed + 1`, ...).
        seed (`int`): the first sample's seed.
        auto_strength (`bool`): pick t0 per guide within the model's `follows` range (`pick_strength`).
        rank_results (`bool`): order several samples best first (`rank`).
        judge (`Judge`, *optional*): the measures; None = the shipped realism and identity networks.
        fill_outlines (`bool`): fill the guide's closed outlines first, as the page does (`outlines`).
        keep_details (`bool`): the drawing's thin and small parts start at half the t0, as the page does (`details`).
        **settings: the rest of `SDEditPipeline.check_inputs` (strength, sampler, num_inference_steps, ...).

    Returns:
        `SDEditOutput`: `images` in that order, with `metadata["ranking"]` (each sample's place, seed and why)
        and `metadata["auto_strength"]` when used.
    """
    judge = judge or default_judge()
    s = pipe.check_inputs(num_images=num_images, **settings)
    guide = pipe.prepare(image, mask_image, s.fit, strength_map, fill_outlines, keep_details)
    seeds = [seed + i for i in range(s.num_images)]
    choice = None
    if auto_strength:
        choice, samples = run_auto(pipe, guide, s, seeds, judge)
        s = replace(s, strength=choice.strength)
    else:
        samples = pipe.run([guide] * s.num_images, s, seeds)
    out = pipe.postprocess(samples, [guide] * s.num_images, s)
    if choice is not None:
        out.metadata["auto_strength"] = choice.as_dict()
        out.metadata["model_evaluations_total"] = evaluations_of_auto(pipe, s, choice.tried, choice.strength)
    if rank_results and s.num_images > 1:
        ranked = rank(judge.score(guide.canvas, list(samples.canvases)))
        out.metadata["ranking"] = [{**row, "seed": seeds[row["sample"]]} for row in ranked.as_dict()]
        out.images = [out.images[i] for i in ranked.order] if isinstance(out.images, list) else out.images[ranked.order]
        out.canvases = samples.canvases[ranked.order]
    return out


@lru_cache(maxsize=1)
def default_judge() -> Judge:
    """The shipped judges, loaded once per process (what the studio ranks and picks t0 with)."""
    return Judge()
