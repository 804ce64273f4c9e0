"""`python -m sdedit eval`'s command line: its options, the settings they make, and a run that writes its files
and, with `--docs`, publishes its record (`sdedit.lab.records`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import records
from .edit_runner import X0_LIMITS
from .eval_report import publish_figures, write_outputs
from .evaluate import DEFAULT_SAMPLERS, EvalRecord, EvalSettings, parse_samplers, run_evaluation


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
        help="run the t0 sweep only (no sampler comparison; a published page then says the samplers were not measured)",
    )
    p.add_argument("--data", help="image set key or folder (default fluent-emoji-3d)")
    p.add_argument(
        "--x0-limit",
        choices=X0_LIMITS,
        help="config: the fast samplers clip x0 as the model's scheduler config says; off: they do not "
        "(default: the pipeline's, sdedit.pipeline.FOLLOW_X0_LIMIT)",
    )
    p.add_argument("--quick", action="store_true", help="a small smoke run (16 guides, 3 t0, 4 samplers): ~2 min")
    p.add_argument(
        "--docs",
        nargs="?",
        const=True,
        metavar="PAGE",
        help="publish: render the docs sections fed by this run's results file (eval/results.json: docs/quality.md, "
        "docs/performance.md's few-step table, README.md; eval/x0-off/results.json: the clipping table), or only "
        "PAGE's, and copy the figures of a run in eval/ to docs/img/",
    )
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
        page = None if args.docs in (None, True) else args.docs
        if args.docs and not records.sections_fed_by(Path(args.out) / "results.json"):
            raise ValueError(
                f"--docs publishes the sections rendered from a registered results file, and {args.out}/results.json "
                "is none: use --out eval/ (or eval/x0-off/ for the clipping table)"
            )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    pipe = SDEditPipeline.from_pretrained(args.model, device=args.device, dtype=args.dtype)
    result = run_evaluation(pipe, settings)
    paths = write_outputs(result, args.out)
    if args.docs:
        paths += publish(result, args.out, page=page)
    floor = result.row("sanity", "real (floor)")
    print(f"done in {result.info['seconds'] / 60:.1f} min; real-vs-real KID {floor['kid']:.4f}")
    for p in paths:
        print(f"  {p}")
    return 0


def publish(result: EvalRecord, out: str | Path, root: Path = records.REPO_ROOT, page=None) -> list[Path]:
    """Render every docs section fed by `out`/results.json (only `page`'s, if given); a run in eval/ also puts
    its figures in docs/img/. Returns the files written."""
    results = Path(out) / "results.json"
    written = records.publish(results, root, page)
    if (Path(root) / "eval").resolve() == Path(out).resolve():
        written += publish_figures(result, out, Path(root) / "docs" / "img")
    return written


if __name__ == "__main__":  # pragma: no cover
    parser = argparse.ArgumentParser()
    add_eval_args(parser)
    raise SystemExit(main_eval(parser.parse_args()))
