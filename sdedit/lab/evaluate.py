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

The run's record is results.json (`EvalRecord`: its rows and run info); `sdedit.lab.eval_report` renders it
(results.md here, and the docs sections registered in `sdedit.lab.records`), `sdedit.lab.eval_plots` draws its
figures, `sdedit.lab.eval_cli` is the command line, and `sdedit.lab.edit_runner` runs and scores the edits.
Only the standard library and numpy are imported at module level, so the CLI parser stays fast.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ..sweep import DEFAULT_STRENGTHS

DEFAULT_SAMPLERS = (
    "reference:1000",
    "dpmpp:10",
    "dpmpp:20",
    "dpmpp:25",
    "dpmpp:30",
    "dpmpp:40",
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


@dataclass
class EvalSettings:
    """What one evaluation runs; the defaults are the full run (48,896 model evaluations at 64 px)."""

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
class EvalRecord:
    """A run's record, as results.json holds it: one row per scored setting, and the run's info (its settings,
    the model, the machine and its load, the time it took)."""

    rows: list[dict]
    info: dict

    @classmethod
    def from_json(cls, data: dict) -> EvalRecord:
        return cls(data["rows"], data["info"])

    def to_json(self) -> dict:
        return {"info": self.info, "rows": self.rows}

    @property
    def settings(self) -> EvalSettings:
        raw = self.info["settings"]
        return EvalSettings(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})

    def section(self, name: str) -> list[dict]:
        return [r for r in self.rows if r["section"] == name]

    def row(self, section: str, label: str) -> dict | None:
        return next((r for r in self.rows if r["section"] == section and r["label"] == label), None)


@dataclass
class EvalResult(EvalRecord):
    """A finished run: its record, and the images of its sample sheets (which the record does not keep)."""

    sheet_real: np.ndarray = field(default_factory=lambda: np.zeros((0, 1, 1, 3), np.uint8))
    sheet_strokes: np.ndarray = field(default_factory=lambda: np.zeros((0, 1, 1, 3), np.uint8))
    sheet_tradeoff: dict[float, np.ndarray] = field(default_factory=dict)
    sheet_samplers: dict[str, np.ndarray] = field(default_factory=dict)


def load_record(out: str | Path) -> EvalRecord:
    """A finished run's record from its results.json (a folder, or the file itself)."""
    path = Path(out)
    path = path / "results.json" if path.is_dir() else path
    return EvalRecord.from_json(json.loads(path.read_text()))


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
    from .edit_runner import x0_limit_for

    s = settings or EvalSettings()
    before = pipe.x0_limit
    pipe.x0_limit = x0_limit_for(pipe, s.x0_limit)
    try:
        result = _run_evaluation(pipe, s, image_set, extractor, log, identity)
    finally:
        pipe.x0_limit = before
    return result


def _run_evaluation(pipe, s: EvalSettings, image_set, extractor, log, identity) -> EvalResult:
    from ..strokes import default_median_size
    from .data import check_split, identity_of, twins_in_training
    from .edit_runner import EditRunner, GuideIdentity, describe_x0_limit, log_to_stdout
    from .features import load_feature_net
    from .identity import load_identity_net
    from .metrics import add_noise, blur, stroke_versions

    log = log or log_to_stdout
    t_begin, load_begin = time.perf_counter(), _load_average()
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
    ident = GuideIdentity(identity, held.images, held_ids, [held_ids[i] for i in guides_idx])
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
        f"{describe_x0_limit(pipe.x0_limit)}; {planned:,} model evaluations planned"
    )
    runner = EditRunner(
        pipe,
        strokes,
        real,
        seed=s.seed,
        batch_size=s.batch_size,
        kid_subsets=s.kid_subsets,
        feats_b=feats_b,
        extractor=extractor,
        identity=ident,
        planned_evals=planned,
        log=log,
    )
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
        runner.progress(
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
        runner.progress(
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
        load_avg_begin=load_begin,
        load_avg_end=_load_average(),
        default_strength=d.strength,
        default_sampler=f"{d.sampler}/{d.num_inference_steps}",
    )
    return EvalResult(rows, info, real[:k], strokes[:k], tradeoff_sheet, sampler_sheet)


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


def _load_average() -> float | None:
    """The 1-minute load average (None where the system has none): what shared the CPU while a run was timed."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _run_info(pipe, s, extractor, held, idx_a, idx_b, n, n_ref, sweep, median, seconds) -> dict:
    import torch

    from .edit_runner import describe_x0_limit

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
        "x0_limit": describe_x0_limit(pipe.x0_limit),
        "device": str(pipe.device),
        "dtype": str(pipe.dtype).replace("torch.", ""),
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "seconds": round(seconds, 1),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(s).items()},
    }
