"""`python -m sdedit eval`: SDEdit's realism/faithfulness trade-off on held-out stroke paintings.

The paper's protocol (Meng et al. 2022, section 4.1 and appendix), on our own model and data:

1. The held-out emoji (never seen by the diffusion model) are split, by emoji and balanced per Unicode
   group, into guides (A) and a realism reference (B), so that no output is ever scored against its own
   source, nor against a skin-tone twin of it.
2. Each guide is turned into simulated strokes (median filter + k-colour quantisation, `sdedit.strokes`).
3. SDEdit runs over a t0 grid (0.1 ... 1.0) with the default fast sampler, and at t0 = 0.5 with every
   sampler: the reference DDPM loop (1000-step schedule, the official code) and the fast ones at several
   step counts, each with its number of model evaluations per edit.
4. Faithfulness: the paper's L2 between output and guide (pixels in [0, 1], whole image); realism: KID
   between outputs and B in the feature space of `sdedit.lab.features` (the small emoji classifier);
   semantic faithfulness: identity accuracy (`sdedit.lab.identity`), how often the output's nearest held-out
   emoji identity is the guide's own. The t0 sweep is also scored on the guides with no near-twin (a gender
   or skin-tone variant) in the model's training split, and on those with one.
5. Anchors: the real-vs-real floor KID(A, B), the raw strokes (the t0 = 0 end), unconditional samples
   (t0 = 1.0: the guide's weight at t = 999 is sqrt(abar) < 0.01, so they are samples from pure noise), and
   the metric's sanity rows (blurred and noised real images).

The held-out set is the one of the split the model was trained on (its training.json's `split`; records
without one used `emoji-v1`), unless --split says otherwise.

Writes results.csv, results.json, results.md, tradeoff.png, samplers.png, samples.png and
samples_samplers.png to --out; `--docs docs/quality.md` also publishes the report there (plots in docs/img/).
`--sweep-only` runs the t0 sweep without the sampler comparison; a published page then keeps the previous
page's sampler section and figures, marked with the date of the run they come from.
Only the standard library and numpy are imported at module level, so the CLI parser stays fast.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import platform
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ..sweep import DEFAULT_STRENGTHS

DEFAULT_SAMPLERS = (
    "reference:1000",
    "dpmpp:10",
    "dpmpp:20",
    "dpmpp:50",
    "ddim:20",
    "ddim:50",
    "euler_a:20",
    "euler_a:50",
)
QUICK = dict(
    num_guides=16,
    strengths=(0.2, 0.5, 1.0),
    samplers=("reference:100", "dpmpp:10", "ddim:10", "euler_a:10"),
    reference_guides=8,
    kid_subsets=50,
)
CSV_FIELDS = (
    "section",
    "label",
    "sampler",
    "num_inference_steps",
    "strength",
    "steps",
    "model_evaluations",
    "n",
    "kid",
    "kid_std",
    "kid_subset_size",
    "l2_to_guide",
    "l2_to_guide_std",
    "l2_to_real",
    "identity_acc",
    "kid_paired",
    "kid_paired_std",
    "l2_to_guide_paired",
    "n_paired",
    "seconds",
    "seconds_per_edit",
)
WHY_FEATURES = """\
KID needs an image embedding. The standard one, Inception-v3 (ImageNet, 299 px photos), needs a download
that is impossible offline, and it would judge 64 px emoji through features made for photos. As FID for
MNIST uses a digit classifier, we use a classifier of our own domain: `EmojiFeatureNet` (0.58 M parameters,
1.2 MB in fp16), a small CNN trained for about half an hour on one CPU thread on the *training split only*,
to tell the ten Unicode emoji groups apart, plus an auxiliary exemplar task (which of ~1,700 emoji is it)
that makes it attend to the fine detail and shading that strokes, blur and noise destroy. Its augmentations
are flips and small shifts only: never blur or noise, so its features stay sensitive to both, and no colour
jitter, so outputs that keep the guide's colours in broken shapes do not pass for real (the jittered network
it replaced on 2026-12-02 let them; "Does the realism metric rank t0 as a person does?" below). KID
uses its penultimate layer: 256 global-average-pooled conv features. The held-out images it is evaluated on
are new to it too. The table below checks that the metric does separate real images from degraded ones.
Its weights, card and retraining command are in `models/emoji-features/`."""
IMAGES = ("tradeoff.png", "samplers.png", "samples.png", "samples_samplers.png")
SAMPLER_IMAGES = ("samplers.png", "samples_samplers.png")  # not made (nor published) by --sweep-only
SUBSETS = {"twin_free": "no twin in training", "twinned": "a twin in training"}
# in a published page, everything from this line on is written by hand and kept when --docs rewrites the page
KEEP_MARKER = "<!-- written by hand below: kept when python -m sdedit eval --docs rewrites this page -->"


@dataclass
class EvalSettings:
    """What one evaluation runs; the defaults are the full run (about 40 min on 1-2 CPU cores at 64 px)."""

    num_guides: int = 128
    strengths: tuple[float, ...] = DEFAULT_STRENGTHS
    sampler: str | None = None  # the t0 sweep's sampler; None: the model's default (dpmpp for ours)
    steps: int | None = None  # its full-schedule steps; None: the model's default (20)
    compare_strength: float = 0.5
    samplers: tuple[str, ...] = DEFAULT_SAMPLERS  # "name:N", N = full-schedule steps
    reference_guides: int = 32  # the 1000-step reference loop runs on the first this-many guides only
    colors: int = 6  # stroke colours k
    median_size: int | None = None  # None: the paper's 23 px at 256 px, scaled (7 px at 64 px)
    seed: int = 0
    batch_size: int = 16
    kid_subsets: int = 100
    sheet_guides: int = 6
    data: str = "fluent-emoji-3d"
    held_out_fraction: float = 0.1
    features: str | None = None  # feature network folder; None: the shipped models/emoji-features
    x0_limit: str | None = None  # "config": fast samplers follow the model's clipping; "off"; None: the pipeline's
    split: str | None = None  # sdedit.lab.data.SPLITS; None: the one the model was trained on (its training.json)
    identity: str | None = None  # identity network folder; None: the shipped models/emoji-identity
    sweep_only: bool = False  # the t0 sweep (and the t0 = 1 samples) only, no sampler comparison
    quick: bool = False

    @classmethod
    def quick_preset(cls, **overrides) -> EvalSettings:
        return replace(cls(**{**QUICK, "quick": True}), **overrides)


@dataclass
class EvalResult:
    """Everything the report needs: rows (as in results.csv), run info, and images for the sample sheets."""

    rows: list[dict]
    info: dict
    settings: EvalSettings
    sheet_real: np.ndarray
    sheet_strokes: np.ndarray
    sheet_tradeoff: dict[float, np.ndarray] = field(default_factory=dict)
    sheet_samplers: dict[str, np.ndarray] = field(default_factory=dict)

    def section(self, name: str) -> list[dict]:
        return [r for r in self.rows if r["section"] == name]

    def row(self, section: str, label: str) -> dict | None:
        return next((r for r in self.rows if r["section"] == section and r["label"] == label), None)


def parse_samplers(specs) -> list[tuple[str, int]]:
    """'reference:1000,dpmpp:20' (or a list of such) -> [('reference', 1000), ('dpmpp', 20)]."""
    if isinstance(specs, str):
        specs = [s for s in specs.replace(";", ",").split(",") if s.strip()]
    out = []
    for spec in specs:
        name, _, steps = str(spec).strip().partition(":")
        if not name or not steps.strip().isdigit() or int(steps) < 1:
            raise ValueError(f"a sampler is given as name:steps, like dpmpp:20 or reference:1000, not {spec!r}")
        out.append((name, int(steps)))
    if not out:
        raise ValueError("give at least one sampler, like dpmpp:20")
    return out


def split_held_out(names, categories, seed: int = 0, split: str = "emoji-v1") -> tuple[np.ndarray, np.ndarray]:
    """Indices of guides (A) and reference (B): whole emoji (all skin tones; under `identity-v2` also all
    gender variants) go to one side, grouped by the named split's key.

    Within each group, emoji are taken in a seeded hash order and each goes to the side that has fewer images
    of that group so far, so A and B have the same mix of groups (and the real-vs-real floor is ~0).
    """
    from .data import split_key

    by_cat: dict[str, dict[str, list[int]]] = {}
    for i, (name, cat) in enumerate(zip(names, categories, strict=True)):
        by_cat.setdefault(str(cat), {}).setdefault(split_key(str(name), split), []).append(i)
    side_a, side_b = [], []
    for cat in sorted(by_cat):
        groups = by_cat[cat]
        order = sorted(groups, key=lambda k: hashlib.sha1(f"{seed}:{k}".encode()).hexdigest())
        n_a = n_b = 0
        for k in order:
            if n_a <= n_b:
                side_a += groups[k]
                n_a += len(groups[k])
            else:
                side_b += groups[k]
                n_b += len(groups[k])
    return np.array(sorted(side_a), dtype=int), np.array(sorted(side_b), dtype=int)


def _log_default(msg: str) -> None:
    print(msg, flush=True)


class _Runner:
    """Runs batched SDEdit configs on the guides, scores them, and keeps a running time estimate."""

    def __init__(self, pipe, strokes, real, feats_b, extractor, s: EvalSettings, log, planned_evals: int, ident=None):
        self.pipe, self.strokes, self.real, self.feats_b = pipe, strokes, real, feats_b
        self.extractor, self.s, self.log, self.ident = extractor, s, log, ident
        self.planned, self.done, self.t_start = planned_evals, 0, time.perf_counter()

    def edit(self, strength: float, sampler: str, steps: int, n: int, label: str) -> tuple[np.ndarray, dict]:
        """SDEdit the first n stroke guides; guide i always gets seed + i, so configs differ only by setting."""
        out, meta, t0 = [], {}, time.perf_counter()
        bs = self.s.batch_size
        for i in range(0, n, bs):
            idx = range(i, min(n, i + bs))
            res = self.pipe(
                [self.strokes[j] for j in idx],
                strength=strength,
                num_inference_steps=steps,
                sampler=sampler,
                seed=[self.s.seed + j for j in idx],
                output_type="uint8",
                progress=False,
                upscale=False,  # the model's own outputs at its resolution, not a learned upscaler's
            )
            out.append(np.asarray(res.images))
            meta = res.metadata
            self.done += meta["model_evaluations"] * len(idx)
            if n > bs:
                self._progress(f"{label}: {min(n, i + bs)}/{n}")
        seconds = time.perf_counter() - t0
        return np.concatenate(out), {**meta, "seconds": seconds}

    def _progress(self, what: str) -> None:
        elapsed = time.perf_counter() - self.t_start
        rate = elapsed / max(1, self.done)
        left = max(0, self.planned - self.done) * rate
        self.log(f"  {what}  [{self.done:,}/{self.planned:,} evals, {elapsed / 60:.1f} min, ~{left / 60:.1f} min left]")

    def score(self, images: np.ndarray, idx: np.ndarray | None = None) -> dict:
        """KID vs B, L2 to the guides (strokes) and to the real sources, and identity accuracy, for outputs of
        the first n guides, or of the guides `idx` (then `images` are all n outputs and only idx are scored)."""
        from .metrics import kid, l2_distances

        idx = np.arange(len(images)) if idx is None else np.asarray(idx, dtype=int)
        images = images[idx]
        n = len(images)
        feats = self.extractor.features(images)
        k = kid(feats, self.feats_b, subsets=self.s.kid_subsets, seed=self.s.seed)
        l2g = l2_distances(images, self.strokes[idx])
        l2r = l2_distances(images, self.real[idx])
        return {
            "n": n,
            "kid": k.mean,
            "kid_std": k.std,
            "kid_subset_size": k.subset_size,
            "l2_to_guide": float(l2g.mean()),
            "l2_to_guide_std": float(l2g.std()),
            "l2_to_real": float(l2r.mean()),
            "identity_acc": self.ident.accuracy(images, idx) if self.ident is not None else "",
        }


class _Identity:
    """Identity accuracy against the held-out gallery (A and B), embedded once: the guides' true identities."""

    def __init__(self, embedder, gallery_images, gallery_ids, guide_ids):
        from .identity import IdentityGallery

        self.gallery, self.guide_ids = IdentityGallery(embedder, gallery_images, gallery_ids), list(guide_ids)
        self.gallery.require(self.guide_ids, "guide identities")

    @property
    def chance(self) -> float:
        return self.gallery.chance

    def accuracy(self, images: np.ndarray, idx: np.ndarray) -> float:
        return self.gallery.score(images, [self.guide_ids[i] for i in idx]).accuracy


def plan_evaluations(s: EvalSettings, sweep: tuple[str, int], n_guides: int, n_ref: int) -> int:
    """Model evaluations (x images) that the run needs: the basis of its time estimate."""
    from ..samplers import steps_for

    total = sum(steps_for(sweep[1], t) for t in s.strengths) * n_guides
    for name, steps in [] if s.sweep_only else parse_samplers(s.samplers):
        if (name, steps) == sweep and s.compare_strength in s.strengths:
            continue
        total += steps_for(steps, s.compare_strength) * (n_ref if name == "reference" else n_guides)
    if 1.0 not in s.strengths:
        total += sweep[1] * n_guides
    return total


X0_LIMITS = ("config", "off")


def _x0_limit(pipe, mode: str | None):
    """The pipeline's x0 limit for --x0-limit: the model's config ("config"), none ("off"), or as it is (None)."""
    from ..samplers import X0Limit

    if mode not in (None, *X0_LIMITS):
        raise ValueError(f"--x0-limit is one of {', '.join(X0_LIMITS)}, not {mode!r}")
    if mode is None:
        return pipe.x0_limit
    return X0Limit.from_config(pipe.scheduler.config) if mode == "config" and pipe.sde == "vp" else None


def _describe_x0_limit(limit) -> str:
    if limit is None:
        return "off"
    if limit.ratio is None:
        return f"config: clip x0 to [-{limit.clip:g}, {limit.clip:g}]"
    return f"config: dynamic thresholding (ratio {limit.ratio:g}, max {limit.max_value:g})"


def model_split(pipe) -> str:
    """The split `pipe`'s model was trained on: its training.json's config `split`; `emoji-v1` for records that
    predate the named splits (the shipped model) and for models without a record (they cannot say)."""
    from .data import LEGACY_SPLIT

    record = pipe.config.local_path / "training.json" if pipe.config.source else None
    if record is None or not record.is_file():
        return LEGACY_SPLIT
    return json.loads(record.read_text()).get("config", {}).get("split", LEGACY_SPLIT)


def run_evaluation(
    pipe, settings: EvalSettings | None = None, image_set=None, extractor=None, log=None, identity=None
) -> EvalResult:
    """The whole evaluation on `pipe` (any SDEditPipeline); image_set defaults to the held-out emoji of the
    model's split. `identity` is an `IdentityEmbedder` (default: the shipped one).

    `settings.x0_limit` sets `pipe.x0_limit` for the run (restored after it)."""
    s = settings or EvalSettings()
    before = pipe.x0_limit
    pipe.x0_limit = _x0_limit(pipe, s.x0_limit)
    try:
        result = _run_evaluation(pipe, s, image_set, extractor, log, identity)
    finally:
        pipe.x0_limit = before
    return result


def _run_evaluation(pipe, s: EvalSettings, image_set, extractor, log, identity) -> EvalResult:
    from ..strokes import default_median_size
    from .data import check_split, identity_of, twins_in_training
    from .features import load_feature_net
    from .identity import load_identity_net
    from .metrics import add_noise, blur, stroke_versions

    log = log or _log_default
    t_begin = time.perf_counter()
    given = image_set.meta.get("split") if image_set is not None else None  # a caller's set keeps its own split
    split = check_split(s.split or given or model_split(pipe))
    if s.split and s.split != model_split(pipe):
        log(
            f"note: {pipe.config.name} was trained on split {model_split(pipe)}; some of {s.split}'s held-out "
            "images may have been in its training set"
        )
    if image_set is None:
        from .data import load_image_set

        image_set = load_image_set(
            s.data, resolution=pipe.config.resolution, held_out_fraction=s.held_out_fraction, split=split
        )
    twins = twins_in_training(image_set)[image_set.held_out]
    held = image_set.subset(held_out=True)
    extractor = extractor or load_feature_net(s.features)
    identity = identity or load_identity_net(s.identity)
    idx_a, idx_b = split_held_out(held.names, held.categories, s.seed, split)
    rng = np.random.default_rng(s.seed)
    guides_idx = idx_a[rng.permutation(len(idx_a))][: s.num_guides]
    if len(guides_idx) < s.num_guides:
        log(f"note: only {len(guides_idx)} guides available (asked for {s.num_guides})")
    n = len(guides_idx)
    real, ref = held.images[guides_idx], held.images[idx_b]
    held_ids = [identity_of(str(name)) for name in held.names]
    ident = _Identity(identity, held.images, held_ids, [held_ids[i] for i in guides_idx])
    subsets = {"twin_free": np.flatnonzero(~twins[guides_idx]), "twinned": np.flatnonzero(twins[guides_idx])}
    median = s.median_size or default_median_size(real.shape[1])
    strokes = stroke_versions(real, s.colors, median)
    feats_b = extractor.features(ref)
    d = pipe.config.defaults
    sweep = (s.sampler or d.sampler, s.steps or d.num_inference_steps)
    samplers = [] if s.sweep_only else parse_samplers(s.samplers)
    unknown = [f"{a}:{b}" for a, b in samplers if a not in pipe.config.samplers]
    if unknown:  # e.g. the fast VP samplers on a VE model
        log(f"note: skipping {', '.join(unknown)}: a {pipe.sde.upper()} model has {pipe.config.samplers}")
        samplers = [(a, b) for a, b in samplers if a in pipe.config.samplers]
        s = replace(s, samplers=tuple(f"{a}:{b}" for a, b in samplers))
    n_ref = min(s.reference_guides, n)
    planned = plan_evaluations(s, sweep, n, n_ref)
    log(
        f"evaluating {pipe.config.name}: {n} stroke guides (A) from {len(idx_a)}, realism reference B = "
        f"{len(idx_b)} held-out images (split {split}; {len(subsets['twinned'])} guides with a twin in training); "
        f"t0 sweep with {sweep[0]}/{sweep[1]}, {len(samplers)} samplers at "
        f"t0={s.compare_strength:g} (reference on {n_ref} guides); x0 limit "
        f"{_describe_x0_limit(pipe.x0_limit)}; {planned:,} model evaluations planned"
    )
    runner = _Runner(pipe, strokes, real, feats_b, extractor, s, log, planned, ident)
    rows: list[dict] = []

    def add(section: str, label: str, scores: dict, **extra) -> dict:
        row = {k: "" for k in CSV_FIELDS}
        row.update(section=section, label=label, **scores, **extra)
        rows.append(row)
        return row

    # 1. anchors and the metric's sanity checks: real A, and distorted versions of it, against real B
    for label, images in (
        ("real (floor)", real),
        ("blur (r=1.5 px)", blur(real, 1.5)),
        ("noise (sigma=0.1)", add_noise(real, 0.1, s.seed)),
        (f"strokes (k={s.colors})", strokes),
    ):
        # L2 to the strokes means nothing here; L2 to the real source says how far each distortion moved pixels
        add("sanity", label, {**runner.score(images), "l2_to_guide": "", "l2_to_guide_std": ""})
    for r in rows:
        log(f"  sanity  {r['label']:<22} KID {r['kid']:.4f} +- {r['kid_std']:.4f}")

    # 2. the t0 sweep; t0 = 0 is the strokes themselves. Each row is scored again on the guides without and
    # with a near-twin in the model's training split (the same images: no extra model evaluations)
    def add_sweep(label: str, images: np.ndarray, **extra) -> dict:
        row = add("tradeoff", label, runner.score(images), **extra)
        for name, idx in subsets.items():
            if len(idx) >= 2:  # KID needs two images a side
                add(f"tradeoff_{name}", label, runner.score(images, idx), **extra)
        return row

    add_sweep(
        "strokes (t0=0)",
        strokes,
        sampler="",
        strength=0.0,
        steps=0,
        model_evaluations=0,
        seconds=0.0,
        seconds_per_edit=0.0,
    )
    outputs: dict[tuple, np.ndarray] = {}
    metas: dict[tuple, dict] = {}
    for t in s.strengths:
        label = f"t0={t:g} {sweep[0]}/{sweep[1]}"
        imgs, meta = runner.edit(t, sweep[0], sweep[1], n, label)
        outputs[(sweep[0], sweep[1], t)], metas[(sweep[0], sweep[1], t)] = imgs, meta
        row = add_sweep(label, imgs, **_meta_fields(meta, n))
        runner._progress(
            f"{label}: KID {row['kid']:.4f}, L2 {row['l2_to_guide']:.2f}, identity {row['identity_acc']:.2f}"
        )
    # 3. samplers at compare_strength (the sweep's matching run is reused)
    t = s.compare_strength
    for name, steps in samplers:
        key = (name, steps, t)
        m = n_ref if name == "reference" else n
        label = f"{name}/{steps}"
        if key in outputs and len(outputs[key]) >= m:
            imgs, meta = outputs[key][:m], metas[key]
        else:
            imgs, meta = runner.edit(t, name, steps, m, f"t0={t:g} {label}")
            outputs[key], metas[key] = imgs, meta
        scores = runner.score(imgs)
        paired = runner.score(imgs[:n_ref]) if m > n_ref else scores
        row = add(
            "samplers",
            label,
            scores,
            kid_paired=paired["kid"],
            kid_paired_std=paired["kid_std"],
            l2_to_guide_paired=paired["l2_to_guide"],
            n_paired=n_ref,
            **_meta_fields(meta, m),
        )
        runner._progress(
            f"t0={t:g} {label}: KID {row['kid']:.4f} (paired {row['kid_paired']:.4f}), L2 {row['l2_to_guide']:.2f}"
        )
    # 4. unconditional samples (t0 = 1) next to the floor
    key = (sweep[0], sweep[1], 1.0)
    if key not in outputs:
        outputs[key], metas[key] = runner.edit(1.0, sweep[0], sweep[1], n, "unconditional")
    add("unconditional", "real A vs real B (floor)", {k: rows[0][k] for k in _SCORE_KEYS})
    uncond = add(
        "unconditional",
        f"unconditional ({sweep[0]}/{sweep[1]}, t0=1)",
        runner.score(outputs[key]),
        **_meta_fields(metas[key], n),
    )
    log(f"  unconditional KID {uncond['kid']:.4f} vs floor {rows[0]['kid']:.4f}")
    # sample sheets: the first few guides
    k = min(s.sheet_guides, n)
    tradeoff_sheet = {t: outputs[(sweep[0], sweep[1], t)][:k] for t in s.strengths}
    sampler_sheet = {
        f"{name}/{steps}": outputs[(name, steps, s.compare_strength)][: min(k, n_ref)] for name, steps in samplers
    }
    info = _run_info(pipe, s, extractor, held, idx_a, idx_b, n, n_ref, sweep, median, time.perf_counter() - t_begin)
    info.update(
        model_evaluations=runner.done,
        split=split,
        identity_net=_relative(identity.path),
        identity_chance=ident.chance,
        identity_gallery=len(ident.gallery.names),
        guides_twin_free=len(subsets["twin_free"]),
        guides_twinned=len(subsets["twinned"]),
        held_out_twinned=int(twins.sum()),
        sweep_only=s.sweep_only,
    )
    return EvalResult(rows, info, s, real[:k], strokes[:k], tradeoff_sheet, sampler_sheet)


_SCORE_KEYS = ("n", "kid", "kid_std", "kid_subset_size", "l2_to_guide", "l2_to_guide_std", "l2_to_real")


def _meta_fields(meta: dict, n: int) -> dict:
    return {
        "sampler": meta["sampler"],
        "num_inference_steps": meta["num_inference_steps"],
        "strength": meta["strength"],
        "steps": meta["steps"],
        "model_evaluations": meta["model_evaluations"],
        "seconds": round(meta["seconds"], 2),
        "seconds_per_edit": round(meta["seconds"] / max(1, n), 4),
    }


def _relative(path) -> str:
    """A repository-relative path where possible (`configs.repo_relative`); a network built in memory has none."""
    from ..configs import repo_relative

    return "in-memory" if path is None else repo_relative(path)


def _run_info(pipe, s, extractor, held, idx_a, idx_b, n, n_ref, sweep, median, seconds) -> dict:
    import torch

    acc = extractor.config.info.get("accuracy_held_out", {})
    return {
        "model": pipe.config.name,
        "model_source": pipe.config.source,
        "resolution": pipe.config.resolution,
        "sweep_sampler": sweep[0],
        "sweep_steps": sweep[1],
        "guides": n,
        "reference_guides": n_ref,
        "held_out": len(held),
        "split_a": len(idx_a),
        "split_b": len(idx_b),
        "stroke_colors": s.colors,
        "stroke_median_size": median,
        "feature_net": _relative(extractor.path),
        "feature_dim": extractor.feature_dim,
        "feature_net_accuracy": acc.get("accuracy"),
        "feature_net_balanced_accuracy": acc.get("balanced_accuracy"),
        "x0_limit": _describe_x0_limit(pipe.x0_limit),
        "device": str(pipe.device),
        "dtype": str(pipe.dtype).replace("torch.", ""),
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "seconds": round(seconds, 1),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(s).items()},
    }


# ----- outputs --------------------------------------------------------------------------------------------
def load_result(out: str | Path) -> EvalResult:
    """A finished run's report from its results.json, to render or publish again without re-running it (the
    figures must still be in `out`; the sample sheets' images are not stored, so they cannot be redrawn)."""
    raw = json.loads((Path(out) / "results.json").read_text())
    info = raw["info"]
    settings = {k: tuple(v) if isinstance(v, list) else v for k, v in info["settings"].items()}
    empty = np.zeros((0, 1, 1, 3), np.uint8)
    return EvalResult(raw["rows"], info, EvalSettings(**settings), empty, empty)


def write_outputs(result: EvalResult, out: str | Path) -> list[Path]:
    """results.csv/json/md and the PNGs into `out`; returns the paths written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "results.csv", out / "results.json", out / "results.md"]
    with open(paths[0], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        for r in result.rows:
            w.writerow({k: _csv_value(r.get(k, "")) for k in CSV_FIELDS})
    paths[1].write_text(json.dumps({"info": result.info, "rows": result.rows}, indent=2, default=float) + "\n")
    plot_tradeoff(result).save(out / "tradeoff.png")
    tradeoff_sheet(result).save(out / "samples.png")
    if result.section("samplers"):
        plot_samplers(result).save(out / "samplers.png")
        sampler_sheet(result).save(out / "samples_samplers.png")
    paths += [out / name for name in made_images(result)]
    paths[2].write_text(render_markdown(result, image_dir=""))
    return paths


def made_images(result: EvalResult) -> tuple[str, ...]:
    """The figures this run makes: a --sweep-only run makes no sampler figures."""
    return IMAGES if result.section("samplers") else tuple(n for n in IMAGES if n not in SAMPLER_IMAGES)


SAMPLERS_HEADING = "## Samplers at t0"
SAMPLERS_END = "## Unconditional samples"


def publish_docs(result: EvalResult, out: str | Path, docs: str | Path) -> Path:
    """Copy the report to `docs` (e.g. docs/quality.md), its plots to docs/img/quality-*.png.

    A --sweep-only run keeps the old page's sampler section and figures, under a line saying which run they
    come from; without an old section the page says the samplers were not measured."""
    docs = Path(docs)
    img = docs.parent / "img"
    img.mkdir(parents=True, exist_ok=True)
    for name in made_images(result):
        shutil.copyfile(Path(out) / name, img / f"quality-{name}")
    old = docs.read_text() if docs.is_file() else ""
    kept = old[old.index(KEEP_MARKER) :] if KEEP_MARKER in old else ""
    text = render_markdown(result, image_dir="img/", image_prefix="quality-", for_docs=True)
    if not result.section("samplers"):
        text = text.replace(_SAMPLERS_PLACEHOLDER, _kept_samplers(old, result))
    docs.write_text(text + ("\n" + kept if kept else ""))
    return docs


_SAMPLERS_PLACEHOLDER = "<!-- samplers: not run -->"
_STALE_NOTE = "*Not re-run by the latest run (`--sweep-only`):"


def _kept_samplers(old_page: str, result: EvalResult) -> str:
    """The previous page's sampler section, marked with the run it comes from (kept as marked if already so)."""
    above = old_page.split(KEEP_MARKER)[0]
    if SAMPLERS_HEADING not in above or SAMPLERS_END not in above:
        return f"{SAMPLERS_HEADING.removesuffix(' t0')}\n\nNot measured in this run (`--sweep-only`)."
    section = above[above.index(SAMPLERS_HEADING) : above.index(SAMPLERS_END)].rstrip()
    if _STALE_NOTE in section:
        return section
    import re

    found = re.search(r"\), (\d{4}-\d\d-\d\d \d\d:\d\d)\. ", above)
    when = found.group(1) if found else "an earlier run"
    x0 = re.search(r"`--x0-limit`\): ([^;]+);", above)
    x0_words = f"x0 limit {x0.group(1)}" if x0 else "from before `--x0-limit`: the fast samplers did not clip x0"
    heading, _, body = section.partition("\n")
    note = (
        f"{_STALE_NOTE} this section, its table and both figures are from the run of {when} ({x0_words})"
        + f", on that run's guides; the rest of the page is from {result.info['date']}.*"
    )
    return f"{heading}\n\n{note}\n{body}"


def _csv_value(v):
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


def _kid(r: dict, key: str = "kid") -> str:
    """KID with its std over subsets, unscaled (the usual x1000 suits Inception's features, not these)."""
    if r.get(key, "") == "":
        return ""
    return f"{r[key]:.3f} ± {r[key + '_std']:.3f}"


def render_markdown(result: EvalResult, image_dir: str = "", image_prefix: str = "", for_docs: bool = False) -> str:
    info, s = result.info, result.settings
    img = lambda name: f"{image_dir}{image_prefix}{name}"  # noqa: E731
    floor = result.row("sanity", "real (floor)")
    lines = [
        "# Realism and faithfulness: SDEdit on held-out stroke paintings",
        "",
    ]
    if for_docs:
        lines += [
            "*This page is generated by `python -m sdedit eval --docs docs/quality.md`; edit `sdedit/lab/evaluate.py`,"
            " not this file, except below its hand-written marker near the end. See the end for the exact command.*",
            "",
        ]
    lines += [
        f"Model **{info['model']}** ({info['resolution']} px"
        + (f", `{info['model_source']}`" if info["model_source"] else "")
        + f"), {info['date']}. "
        f"{info['guides']} stroke guides; realism reference B = {info['split_b']} held-out images. "
        f"Run time {info['seconds'] / 60:.1f} min, {info['model_evaluations']:,} model evaluations on "
        f"{info['machine']} ({info['device']}, {info['dtype']}, {info['threads']} thread(s), torch {info['torch']})"
        + (" — **quick mode: small sets, noisy numbers**." if s.quick else "."),
        "",
        "**Faithfulness** is the paper's L2 distance between output and guide (the stroke painting), pixels in",
        "[0, 1], over the whole image (lower = more faithful). *L2 to real* is the distance to the real emoji the",
        "strokes were made from. **Realism** is KID (lower = more realistic) between outputs and B, on",
        f"the {info['feature_dim']}-d penultimate features of the project's emoji classifier "
        f"(`{info['feature_net']}`, held-out group accuracy {_pct(info['feature_net_accuracy'])}, "
        f"balanced {_pct(info['feature_net_balanced_accuracy'])}). KID is the unbiased MMD² with the kernel "
        f"(x·y/d + 1)³, averaged over {s.kid_subsets} random subset pairs; ± is the std over subsets (half the",
        "smaller set each), a conservative error bar. Near zero means indistinguishable from real held-out emoji;",
        "small negative values are sampling noise around zero.",
        "",
        "## Which feature network, and why",
        "",
        *WHY_FEATURES.splitlines(),
        "",
        "## Protocol",
        "",
        f"- Held-out emoji ({info['held_out']} images the diffusion model never saw: split `{info['split']}`, the one"
        f" it was trained on) are split again, by the same key and balanced per Unicode group, into A"
        f" ({info['split_a']}) and B ({info['split_b']}). The {info['guides']} guides come from A, so no output is"
        f" scored against its own source or a skin-tone twin{_ab_twins(info)}.",
        f"- Near-twins in training: {info['held_out_twinned']} of the {info['held_out']} held-out images (and"
        f" {info['guides_twinned']} of the {info['guides']} guides) have a gender or skin-tone variant of their"
        " emoji in the model's training split"
        + (" (`emoji-v1` keeps skin tones together, not man / woman / person)." if info["held_out_twinned"] else ".")
        + " The t0 sweep is scored on all guides and, separately, on the twin-free ones and the others.",
        f"- Strokes: the paper's simulator, a {info['stroke_median_size']} px median filter then"
        f" {info['stroke_colors']} colours (`sdedit.strokes.simulate_strokes`).",
        f"- t0 sweep: {info['sweep_sampler']} with a {info['sweep_steps']}-step schedule (round(t0 x"
        f" {info['sweep_steps']}) steps per edit). Samplers at t0 = {s.compare_strength:g}; the reference loop"
        f" runs on the first {info['reference_guides']} guides, and every sampler is also scored on those same"
        " guides (*paired* columns), for a like-for-like comparison.",
        "- Guide i always gets seed + i, so rows differ only by their setting. One SDEdit pass, no repeats (K = 1).",
        f"- x0 limit in the fast samplers (`--x0-limit`): {info['x0_limit']}; the reference loop never clips.",
        "",
        "## Does the metric work? Real vs distorted held-out images",
        "",
        "| images (from A), against real B | n | KID | L2 to the real source | identity accuracy |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in result.section("sanity"):
        lines.append(f"| {r['label']} | {r['n']} | {_kid(r)} | {r['l2_to_real']:.2f} | {_pct(r.get('identity_acc'))} |")
    lines += [
        "",
        "Real-vs-real should be ~0, and every distortion clearly above it: KID sees what the pixel distance",
        "alone does not (the distortions move pixels by similar amounts, but not equally far from realism).",
        "The identity accuracy column (see the trade-off below) should stay high for all four: blur, noise and",
        "strokes degrade an image but do not make it another emoji.",
        "",
        "## The trade-off over t0",
        "",
        f"![KID, L2 and identity accuracy against t0]({img('tradeoff.png')})",
        "",
        "| t0 | steps (= model evaluations) | KID (realism) | L2 to guide (faithfulness) | L2 to real "
        "| identity accuracy | s / edit |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    if info.get("identity_chance"):
        lines.append(f"| chance (a random identity) | – | – | – | – | {_pct(info['identity_chance'], 1)} | – |")
    for r in result.section("tradeoff"):
        lines.append(
            f"| {_t0(r)} | {r['model_evaluations']} | {_kid(r)} | {r['l2_to_guide']:.2f} ± {r['l2_to_guide_std']:.2f} "
            f"| {r['l2_to_real']:.2f} | {_pct(r['identity_acc'])} | {r['seconds_per_edit']:.3f} |"
        )
    real, strokes_row = result.row("sanity", "real (floor)"), result.section("tradeoff")[0]
    lines += [
        "",
        "Small t0 keeps the strokes (low L2, high KID); large t0 gives realistic images that drift from the guide",
        "(low KID, high L2). The paper's sweet spot is in between (t0 around 0.4–0.6).",
        "",
        f"**Identity accuracy** (semantic faithfulness): how often the output's nearest held-out emoji identity is"
        f" the guide's own, in the embedding of `{info['identity_net']}` (trained on identities outside every"
        " split's held-out set; `sdedit/lab/identity.py`), by cosine to the mean embedding of each identity's real"
        f" held-out images (A and B: {info['identity_gallery']} identities; an identity is the emoji up to skin"
        f" tone and gender). Chance is {_pct(info['identity_chance'], 1)}; the real guide images themselves score"
        f" {_pct(real['identity_acc'])} and their strokes (t0 = 0) {_pct(strokes_row['identity_acc'])}."
        " It falls when an output turns into another emoji, whatever its realism or pixel distance.",
        "",
        tradeoff_summary(result),
        "",
        *_twin_table(result),
        f"![guides, strokes and outputs over t0]({img('samples.png')})",
        "",
    ]
    if not result.section("samplers"):
        lines += [_SAMPLERS_PLACEHOLDER if for_docs else "## Samplers\n\nNot run (`--sweep-only`).", ""]
        lines += _unconditional_and_reproduce(result, floor)
        return "\n".join(lines)
    lines += [
        f"## Samplers at t0 = {s.compare_strength:g}",
        "",
        f"![KID and L2 against model evaluations]({img('samplers.png')})",
        "",
        f"| sampler / schedule steps | model evaluations per edit | n | KID | L2 to guide | KID (paired, "
        f"n={info['reference_guides']}) | L2 (paired) | s / edit |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result.section("samplers"):
        lines.append(
            f"| {r['label']} | {r['model_evaluations']} | {r['n']} | {_kid(r)} | {r['l2_to_guide']:.2f} "
            f"| {_kid(r, 'kid_paired')} | {r['l2_to_guide_paired']:.2f} | {r['seconds_per_edit']:.3f} |"
        )
    lines += [
        "",
        "`reference/1000` is the official SDEdit loop (ancestral DDPM steps, t0 x 1000 of them); the fast",
        "samplers run round(t0 x N) steps of an N-step schedule.",
        "",
        f"![outputs per sampler]({img('samples_samplers.png')})",
        "",
    ]
    return "\n".join(lines + _unconditional_and_reproduce(result, floor))


def _unconditional_and_reproduce(result: EvalResult, floor: dict | None) -> list[str]:
    lines = [
        "## Unconditional samples and the real-vs-real floor",
        "",
        "| images, against real B | n | KID |",
        "|---|---:|---:|",
    ]
    for r in result.section("unconditional"):
        lines.append(f"| {r['label']} | {r['n']} | {_kid(r)} |")
    if floor:
        lines += ["", "The floor is what a perfect model would score with these set sizes."]
    lines += [
        "",
        "## Reproduce",
        "",
        "```bash",
        _command(result),
        "```",
        "",
    ]
    return lines


def _t0(r: dict) -> str:
    return "0 (strokes)" if r["strength"] == 0.0 else f"{r['strength']:g}"


def _ab_twins(info: dict) -> str:
    return "" if info["split"] != "emoji-v1" else " (under `emoji-v1` a gender variant of a guide may be in B)"


def _twin_table(result: EvalResult) -> list[str]:
    """The sweep on the guides without and with a near-twin in training, side by side."""
    free, twinned = result.section("tradeoff_twin_free"), result.section("tradeoff_twinned")
    if not twinned or not free:
        return [
            f"Guides with a near-twin (a gender or skin-tone variant) in the model's training split"
            f" (`{result.info['split']}`): {result.info['guides_twinned']} of {result.info['guides']}"
            " (too few on one side to score them apart).",
            "",
        ]
    lines = [
        f"### Guides with and without a near-twin in training (split `{result.info['split']}`)",
        "",
        f"The same outputs as above, scored on the {result.info['guides_twin_free']} guides whose emoji has no"
        f" gender or skin-tone variant in the training split (*twin-free*) and the {result.info['guides_twinned']}"
        " that have one. KID is against the same B.",
        "",
        "| t0 | KID twin-free | KID twinned | L2 to guide twin-free | L2 to guide twinned | L2 to real twin-free "
        "| L2 to real twinned | identity twin-free | identity twinned |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for a, b in zip(free, twinned, strict=True):
        lines.append(
            f"| {_t0(a)} | {_kid(a)} | {_kid(b)} | {a['l2_to_guide']:.2f} | {b['l2_to_guide']:.2f} "
            f"| {a['l2_to_real']:.2f} | {b['l2_to_real']:.2f} | {_pct(a['identity_acc'])} | {_pct(b['identity_acc'])} |"
        )
    return [*lines, ""]


def tradeoff_summary(result: EvalResult) -> str:
    """What this run's numbers say, in one sentence each: written from the data, not from expectations."""
    rows = result.section("tradeoff")
    strokes = next((r for r in rows if r["strength"] == 0.0), None)
    edits = [r for r in rows if r["strength"] != 0.0]
    if not edits or strokes is None:
        return ""
    best = min(edits, key=lambda r: r["kid"])
    better = [f"{r['strength']:g}" for r in edits if r["kid"] + r["kid_std"] < strokes["kid"] - strokes["kid_std"]]
    floor = result.row("sanity", "real (floor)")
    text = (
        f"**This run:** the lowest KID is at t0 = {best['strength']:g} ({best['kid']:.3f}, L2 to guide "
        f"{best['l2_to_guide']:.1f}); the raw strokes score {strokes['kid']:.3f} and the real-vs-real floor "
        f"{floor['kid']:.3f}. "
    )
    if better:
        text += f"Outputs are more realistic than the strokes (beyond one std) at t0 = {', '.join(better)}."
    else:
        text += "No t0 gives outputs that are more realistic than the strokes themselves (beyond one std)."
    if all(r.get("identity_acc", "") != "" for r in rows):
        top = max(edits, key=lambda r: r["identity_acc"])
        below = [f"{r['strength']:g}" for r in edits if r["identity_acc"] < strokes["identity_acc"]]
        text += (
            f" Identity accuracy peaks at t0 = {top['strength']:g} ({_pct(top['identity_acc'])}; strokes"
            f" {_pct(strokes['identity_acc'])}, chance {_pct(result.info['identity_chance'], 1)})"
            + (f", is below the strokes' at t0 = {', '.join(below)}" if below else "")
            + f" and is {_pct(edits[-1]['identity_acc'])} at t0 = {edits[-1]['strength']:g}."
        )
    return text


def _pct(x, digits: int = 0) -> str:
    return "n/a" if x is None or x == "" else f"{100 * x:.{digits}f}%"


def _command(result: EvalResult) -> str:
    s, info = result.settings, result.info
    cmd = f"OMP_NUM_THREADS={info['threads']} python -m sdedit eval --model {info['model']} --out eval/"
    cmd += f" --x0-limit {'off' if info['x0_limit'] == 'off' else 'config'}"
    if s.sweep_only:
        cmd += " --sweep-only"
    if s.split:
        cmd += f" --split {s.split}"
    if s.quick:
        return cmd + " --quick"
    default = EvalSettings()
    for name, flag in (("num_guides", "--num-guides"), ("reference_guides", "--reference-guides"), ("seed", "--seed")):
        if getattr(s, name) != getattr(default, name):
            cmd += f" {flag} {getattr(s, name)}"
    return cmd + " --docs docs/quality.md"


# ----- plots and sheets -----------------------------------------------------------------------------------
def _figure_to_image(fig):
    import io

    import matplotlib.pyplot as plt
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_tradeoff(result: EvalResult):
    """Left: KID (left axis) and L2 (right axis) against t0, like the paper's Figure 3; t0 = 0 is the strokes.
    Right: identity accuracy against t0 (all guides, twin-free, twinned), with chance."""
    plt = _plt()
    rows = result.section("tradeoff")
    t = [r["strength"] for r in rows]
    kid = np.array([r["kid"] for r in rows])
    kid_std = np.array([r["kid_std"] for r in rows])
    l2 = [r["l2_to_guide"] for r in rows]
    floor = result.row("sanity", "real (floor)")
    fig, (ax, ax_id) = plt.subplots(1, 2, figsize=(11.0, 4.0), dpi=110, gridspec_kw={"width_ratios": [1.5, 1]})
    _plot_identity(ax_id, result)
    c1, c2 = "#1f5fa8", "#d9620b"
    ax.errorbar(t, kid, yerr=kid_std, fmt="o-", color=c1, capsize=3, label="KID vs real (realism)")
    if floor:
        ax.axhline(floor["kid"], color=c1, ls=":", lw=1.2, label="real-vs-real floor")
    ax.set_xlabel("t0  (0 = the strokes themselves;  faithful → realistic)")
    ax.set_ylabel("KID  (lower = more realistic)", color=c1)
    ax.tick_params(axis="y", colors=c1)
    ax2 = ax.twinx()
    ax2.plot(t, l2, "s--", color=c2, label="L2 to guide (faithfulness)")
    ax2.set_ylabel("L2 to guide  (lower = more faithful)", color=c2)
    ax2.tick_params(axis="y", colors=c2)
    ax2.set_ylim(bottom=0)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2_ = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2_, loc="upper center", fontsize=8, framealpha=0.9)
    info = result.info
    ax.set_title(
        f"{info['model']}: realism vs faithfulness ({info['sweep_sampler']}/{info['sweep_steps']}, "
        f"{info['guides']} guides, split {info.get('split', '?')})",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _figure_to_image(fig)


def _plot_identity(ax, result: EvalResult) -> None:
    info = result.info
    styles = (
        ("tradeoff", f"all {info['guides']} guides", "o-", "#2e8b3a"),
        ("tradeoff_twin_free", f"twin-free ({info.get('guides_twin_free', 0)})", "s--", "#1f5fa8"),
        ("tradeoff_twinned", f"twin in training ({info.get('guides_twinned', 0)})", "^:", "#c23b22"),
    )
    for section, label, fmt, color in styles:
        rows = [r for r in result.section(section) if r.get("identity_acc", "") != ""]
        if rows:
            ax.plot(
                [r["strength"] for r in rows], [100 * r["identity_acc"] for r in rows], fmt, color=color, label=label
            )
    if info.get("identity_chance"):
        ax.axhline(100 * info["identity_chance"], color="#888888", ls=":", lw=1.2, label="chance")
    ax.set_ylim(0, 100)
    ax.set_xlabel("t0  (0 = the strokes themselves)")
    ax.set_ylabel("identity accuracy, %  (higher = same emoji)")
    ax.set_title("Does the output still show the guide's emoji?", fontsize=10)
    ax.legend(fontsize=8, loc="lower left", framealpha=0.9)
    ax.grid(alpha=0.3)


def plot_samplers(result: EvalResult):
    """KID and L2 against model evaluations per edit (log x), one line per sampler, at compare_strength."""
    plt = _plt()
    rows = result.section("samplers")
    fig, (ax_k, ax_l) = plt.subplots(1, 2, figsize=(9.6, 3.8), dpi=110)
    colors = {"reference": "#222222", "dpmpp": "#1f5fa8", "ddim": "#2e8b3a", "euler_a": "#c23b22"}
    markers = {"reference": "*", "dpmpp": "o", "ddim": "s", "euler_a": "^"}
    paired = any(r["n"] != r["n_paired"] for r in rows)
    key = "kid_paired" if paired else "kid"
    l2key = "l2_to_guide_paired" if paired else "l2_to_guide"
    for name in dict.fromkeys(r["sampler"] for r in rows):
        rs = sorted((r for r in rows if r["sampler"] == name), key=lambda r: r["model_evaluations"])
        x = [r["model_evaluations"] for r in rs]
        c, mk = colors.get(name), markers.get(name, "o")
        ms = 12 if name == "reference" else 6
        ax_k.errorbar(
            x,
            [r[key] for r in rs],
            yerr=[r[key + "_std"] for r in rs],
            fmt=f"{mk}-",
            color=c,
            ms=ms,
            capsize=3,
            label=name,
        )
        ax_l.plot(x, [r[l2key] for r in rs], f"{mk}-", color=c, ms=ms, label=name)
    floor = result.row("sanity", "real (floor)")
    if floor:
        ax_k.axhline(floor["kid"], color="#888888", ls=":", lw=1.2, label="real-vs-real floor")
    n = rows[0]["n_paired"] if paired and rows else (rows[0]["n"] if rows else 0)
    ticks = sorted({r["model_evaluations"] for r in rows})
    for ax, ylab in ((ax_k, "KID (realism, lower = better)"), (ax_l, "L2 to guide (faithfulness)")):
        ax.set_xscale("log")
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("model evaluations per edit (log)")
        ax.set_ylabel(ylab)
        ax.grid(alpha=0.3, which="both")
    ax_k.legend(fontsize=8)
    t = result.settings.compare_strength
    fig.suptitle(f"Samplers at t0 = {t:g}, on the same {n} guides", fontsize=10)
    fig.tight_layout()
    return _figure_to_image(fig)


def _labelled_sheet(columns: list[tuple[str, np.ndarray]], cell: int = 128):
    """One column per (label, images) pair, one row per guide, labels on top."""
    from PIL import Image, ImageDraw

    rows = max(len(imgs) for _, imgs in columns)
    top = 16
    sheet = Image.new("RGB", (len(columns) * cell, top + rows * cell), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for c, (label, imgs) in enumerate(columns):
        draw.text((c * cell + 3, 2), label, fill=(0, 0, 0))
        for r, im in enumerate(imgs):
            sheet.paste(Image.fromarray(im).resize((cell, cell), Image.NEAREST), (c * cell, top + r * cell))
    return sheet


def tradeoff_sheet(result: EvalResult):
    cols = [("real", result.sheet_real), ("strokes", result.sheet_strokes)]
    cols += [(f"t0={t:g}", imgs) for t, imgs in result.sheet_tradeoff.items()]
    return _labelled_sheet(cols)


def sampler_sheet(result: EvalResult):
    n = min(len(v) for v in result.sheet_samplers.values()) if result.sheet_samplers else 0
    cols = [("real", result.sheet_real[:n]), ("strokes", result.sheet_strokes[:n])]
    cols += [(label, imgs[:n]) for label, imgs in result.sheet_samplers.items()]
    return _labelled_sheet(cols)


# ----- command line ---------------------------------------------------------------------------------------
def add_eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="configured name, local folder or Hub id (default: embedded model)")
    p.add_argument("--out", default="outputs/eval", help="output folder")
    p.add_argument("--num-guides", type=int, help="stroke guides from held-out A (default 128; quick 16)")
    p.add_argument("--strengths", help="t0 grid, comma-separated (default 0.1,0.2,...,1.0)")
    p.add_argument("--sampler", help="sampler of the t0 sweep (default: the model's default)")
    p.add_argument("--steps", type=int, help="its full-schedule steps (default: the model's default)")
    p.add_argument(
        "--samplers",
        help="samplers compared at --compare-strength, name:steps (default " + ",".join(DEFAULT_SAMPLERS) + ")",
    )
    p.add_argument("--compare-strength", type=float, help="t0 of the sampler comparison (default 0.5)")
    p.add_argument("--reference-guides", type=int, help="guides the reference sampler runs on (default 32)")
    p.add_argument("--colors", type=int, help="stroke colours k (default 6)")
    p.add_argument("--seed", type=int, help="seed of guide 0; guide i uses seed + i (default 0)")
    p.add_argument("--batch-size", type=int, help="guides per forward pass (default 16)")
    p.add_argument("--kid-subsets", type=int, help="KID subsets (default 100)")
    p.add_argument("--features", help="feature network folder (default: models/emoji-features)")
    p.add_argument("--identity", help="identity network folder (default: models/emoji-identity)")
    p.add_argument(
        "--split",
        choices=("emoji-v1", "identity-v2"),
        help="held-out split (default: the one the model was trained on, from its training.json; emoji-v1 "
        "for the shipped model)",
    )
    p.add_argument(
        "--sweep-only",
        action="store_true",
        help="run the t0 sweep only (no sampler comparison); --docs keeps the page's old sampler section, marked",
    )
    p.add_argument("--data", help="image set key or folder (default fluent-emoji-3d)")
    p.add_argument(
        "--x0-limit",
        choices=X0_LIMITS,
        help="config: the fast samplers clip x0 as the model's scheduler config says; off: they do not "
        "(default: the pipeline's, sdedit.pipeline.FOLLOW_X0_LIMIT)",
    )
    p.add_argument("--quick", action="store_true", help="a small smoke run (16 guides, 3 t0, 4 samplers): ~2 min")
    p.add_argument("--docs", help="also publish the report to this markdown file (plots to its img/ folder)")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")
    p.add_argument("--dtype", default=None, help="auto, float32, bfloat16, float16 (default auto: fp32 on CPU)")


def settings_from_args(args) -> EvalSettings:
    overrides = {}
    for name in ("num_guides", "sampler", "steps", "compare_strength", "reference_guides", "colors", "seed"):
        if getattr(args, name, None) is not None:
            overrides[name] = getattr(args, name)
    for name in ("batch_size", "kid_subsets", "features", "identity", "split", "data", "x0_limit"):
        if getattr(args, name, None) is not None:
            overrides[name] = getattr(args, name)
    if args.strengths:
        from ..sweep import parse_strengths

        overrides["strengths"] = tuple(parse_strengths(args.strengths))
    if args.samplers:
        overrides["samplers"] = tuple(f"{n}:{k}" for n, k in parse_samplers(args.samplers))
    if getattr(args, "sweep_only", False):
        overrides["sweep_only"] = True
    s = EvalSettings.quick_preset(**overrides) if args.quick else EvalSettings(**overrides)
    for t in s.strengths:
        if not 0.0 < t <= 1.0:
            raise ValueError(f"every t0 must be in (0, 1], not {t}")
    if s.num_guides < 2 or s.reference_guides < 2:
        raise ValueError("KID needs at least 2 images a side: use --num-guides and --reference-guides of 2 or more")
    return s


def main_eval(args) -> int:
    import torch

    from ..pipeline import SDEditPipeline

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        settings = settings_from_args(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    pipe = SDEditPipeline.from_pretrained(args.model, device=args.device, dtype=args.dtype)
    result = run_evaluation(pipe, settings)
    paths = write_outputs(result, args.out)
    if args.docs:
        paths.append(publish_docs(result, args.out, args.docs))
    floor = result.row("sanity", "real (floor)")
    print(f"done in {result.info['seconds'] / 60:.1f} min; real-vs-real KID {floor['kid']:.4f}")
    for p in paths:
        print(f"  {p}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    parser = argparse.ArgumentParser()
    add_eval_args(parser)
    raise SystemExit(main_eval(parser.parse_args()))
