"""The evaluation's edit loop: batched SDEdit over stroke guides (guide i with seed + i), scored against a reference.

`python -m sdedit eval` (`sdedit.lab.evaluate`) and the realism cross-check (`sdedit.lab.crosscheck`) both run
their t0 sweeps through `EditRunner`, so their outputs are the same images for the same guides and settings.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

X0_LIMITS = ("config", "off")


def log_to_stdout(msg: str) -> None:
    print(msg, flush=True)


def x0_limit_for(pipe, mode: str | None):
    """The pipeline's x0 limit for `--x0-limit`: the model's config ("config"), none ("off"), or as it is (None)."""
    from ..samplers import X0Limit

    if mode not in (None, *X0_LIMITS):
        raise ValueError(f"--x0-limit is one of {', '.join(X0_LIMITS)}, not {mode!r}")
    if mode is None:
        return pipe.x0_limit
    return X0Limit.from_config(pipe.scheduler.config) if mode == "config" and pipe.sde == "vp" else None


def describe_x0_limit(limit) -> str:
    """How a run's x0 limit is written in its record and report."""
    if limit is None:
        return "off"
    if limit.ratio is None:
        return f"config: clip x0 to [-{limit.clip:g}, {limit.clip:g}]"
    return f"config: dynamic thresholding (ratio {limit.ratio:g}, max {limit.max_value:g})"


class GuideIdentity:
    """Identity accuracy against a held-out gallery, embedded once: the guides' true identities."""

    def __init__(self, embedder, gallery_images, gallery_ids, guide_ids):
        from .identity import IdentityGallery

        self.gallery, self.guide_ids = IdentityGallery(embedder, gallery_images, gallery_ids), list(guide_ids)
        self.gallery.require(self.guide_ids, "guide identities")

    @property
    def chance(self) -> float:
        return self.gallery.chance

    def accuracy(self, images: np.ndarray, idx: np.ndarray) -> float:
        return self.gallery.score(images, [self.guide_ids[i] for i in idx]).accuracy


class EditRunner:
    """Runs batched SDEdit settings on the stroke guides, scores the outputs, and keeps a running time estimate.

    `feats_b`/`extractor` (the realism reference's features and the network that made them) and `identity` are
    only needed by `score`; a runner that only edits (the cross-check's sweep) can leave them None.
    """

    def __init__(
        self,
        pipe,
        strokes: np.ndarray,
        real: np.ndarray,
        *,
        seed: int = 0,
        batch_size: int = 16,
        kid_subsets: int = 100,
        feats_b: np.ndarray | None = None,
        extractor=None,
        identity: GuideIdentity | None = None,
        planned_evals: int = 0,
        log: Callable[[str], None] = log_to_stdout,
    ):
        self.pipe, self.strokes, self.real = pipe, strokes, real
        self.seed, self.batch_size, self.kid_subsets = seed, batch_size, kid_subsets
        self.feats_b, self.extractor, self.identity, self.log = feats_b, extractor, identity, log
        self.planned, self.done, self.t_start = planned_evals, 0, time.perf_counter()

    def edit(self, strength: float, sampler: str, steps: int, n: int, label: str) -> tuple[np.ndarray, dict]:
        """SDEdit the first n stroke guides; guide i always gets seed + i, so settings differ only by setting."""
        out, meta, t0 = [], {}, time.perf_counter()
        bs = self.batch_size
        for i in range(0, n, bs):
            idx = range(i, min(n, i + bs))
            res = self.pipe(
                [self.strokes[j] for j in idx],
                strength=strength,
                num_inference_steps=steps,
                sampler=sampler,
                seed=[self.seed + j for j in idx],
                output_type="uint8",
                progress=False,
                upscale=False,  # the model's own outputs at its resolution, not a learned upscaler's
            )
            out.append(np.asarray(res.images))
            meta = res.metadata
            self.done += meta["model_evaluations"] * len(idx)
            if n > bs:
                self.progress(f"{label}: {min(n, i + bs)}/{n}")
        seconds = time.perf_counter() - t0
        return np.concatenate(out), {**meta, "seconds": seconds}

    def progress(self, what: str) -> None:
        """Log `what` with the evaluations done, the minutes spent and an estimate of the minutes left."""
        elapsed = time.perf_counter() - self.t_start
        rate = elapsed / max(1, self.done)
        left = max(0, self.planned - self.done) * rate
        self.log(f"  {what}  [{self.done:,}/{self.planned:,} evals, {elapsed / 60:.1f} min, ~{left / 60:.1f} min left]")

    def score(self, images: np.ndarray, idx: np.ndarray | None = None) -> dict:
        """KID vs the reference, L2 to the guides (strokes) and to the real sources, and identity accuracy, for
        outputs of the first n guides, or of the guides `idx` (then `images` are all n outputs, only idx scored)."""
        from .metrics import kid, l2_distances

        if self.extractor is None or self.feats_b is None:
            raise ValueError("this runner was made without a realism reference (feats_b, extractor): it cannot score")
        idx = np.arange(len(images)) if idx is None else np.asarray(idx, dtype=int)
        images = images[idx]
        feats = self.extractor.features(images)
        k = kid(feats, self.feats_b, subsets=self.kid_subsets, seed=self.seed)
        l2g = l2_distances(images, self.strokes[idx])
        l2r = l2_distances(images, self.real[idx])
        return {
            "n": len(images),
            "kid": k.mean,
            "kid_std": k.std,
            "kid_subset_size": k.subset_size,
            "l2_to_guide": float(l2g.mean()),
            "l2_to_guide_std": float(l2g.std()),
            "l2_to_real": float(l2r.mean()),
            "identity_acc": self.identity.accuracy(images, idx) if self.identity is not None else "",
        }
