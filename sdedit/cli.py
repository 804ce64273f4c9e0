"""Command line: `python -m sdedit {edit,sweep,info,models,train,train-upscaler,eval,examples,batch} --help`.

python -m sdedit edit --guide strokes.png --strength 0.5 --out result.png   # one result: this file
python -m sdedit edit --guide strokes.png --num 4 --out 'result-{i}.png'     # one file per result ({i} or {seed})
python -m sdedit edit --guide strokes.png --num 4 --out out/                 # a folder (names and a metadata JSON)
python -m sdedit edit --model google/ddpm-church-256 --guide photo.png --mask mask.png --sampler reference
python -m sdedit edit --model sd-turbo --guide sketch.png --prompt "a lighthouse at dusk, oil painting"
python -m sdedit sweep --guide strokes.png --strengths 0.2,0.4,0.6,0.8 --out sweep/
python -m sdedit info out/strokes-t0.5-dpmpp-seed0.png        # the settings a result carries
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import outpaths, registry, threads
from .errors import SDEditError
from .recall import describe, read_inputs, read_settings, save_png, settings_of

EDIT_EXAMPLES = """where --out writes:
  python -m sdedit edit --guide heart.png --out result.png                # one result: the file result.png
  python -m sdedit edit --guide heart.png --num 4 --out 'result-{i}.png'  # result-0.png ... result-3.png ({seed} too)
  python -m sdedit edit --guide heart.png --num 4 --out results/          # a folder: named by the CLI, + metadata JSON
"""
SWEEP_EXAMPLES = """where --out writes:
  python -m sdedit sweep --guide heart.png --out sweep.png   # the grid only, as sweep.png
  python -m sdedit sweep --guide heart.png --out sweep/      # a folder: grid, L2 plot, every image, rows as JSON
"""


def _edit_args(p: argparse.ArgumentParser, sweep: bool = False) -> None:
    p.add_argument("--model", default=None, help="configured name, local folder or Hub id (default: embedded model)")
    p.add_argument("--guide", required=True, help="guide image: a stroke painting, or a photo with strokes/patch")
    p.add_argument("--mask", default=None, help="mask image, white = may change (default: change everything)")
    if not sweep:
        p.add_argument("--strength", type=float, default=None, help="t0 in (0, 1]: faithful (low) <-> realistic (high)")
        p.add_argument(
            "--strength-map",
            default=None,
            help="greyscale image the guide's size: each pixel's own t0 as a fraction of --strength (black = kept)",
        )
    p.add_argument(
        "--fill-outlines",
        action="store_true",
        help="fill each closed outline with its stroke colour first (a thin outline fades in the noise)",
    )
    p.add_argument(
        "--keep-details",
        action="store_true",
        help="a drawing's thin and small parts (eyes, rays, wheels) start at half the t0, so they survive the noise",
    )
    p.add_argument("--steps", type=int, default=None, help="steps of a full schedule; an edit runs round(t0 x steps)")
    p.add_argument("--sampler", default=None, help=registry.describe())
    p.add_argument("--repeats", type=int, default=None, help="K: re-run SDEdit on its own output K times")
    p.add_argument("--num", type=int, default=1, help="samples per guide, batched into one forward pass")
    p.add_argument("--seed", type=int, default=0, help="seed of the first sample; sample i uses seed + i")
    p.add_argument("--snr", type=float, default=None, help="VE only: Langevin corrector signal-to-noise (0 = off)")
    p.add_argument("--prompt", default=None, help="text models (Stable Diffusion) only: what the result should show")
    p.add_argument(
        "--negative-prompt", default=None, help="text models only: what it should not show (needs guidance above 1)"
    )
    p.add_argument(
        "--guidance-scale",
        type=float,
        default=None,
        help="text models only: classifier-free guidance, 1 = none (default: the model's; turbo models take none)",
    )
    p.add_argument("--fit", choices=("pad", "crop", "stretch"), default=None, help="how a non-square guide is fitted")
    if sweep:
        p.add_argument(
            "--out", default="outputs", help="folder for the grid, plot, images and rows; or x.png: the grid only"
        )
    else:
        p.add_argument(
            "--out",
            default="outputs",
            help="x.png: the file of one result; x-{i}.png or x-{seed}.png: one file per result; else a folder "
            "(files named by guide, t0, sampler and seed, with a metadata JSON). PNGs carry their settings",
        )
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--dtype", default=None, help="auto, float32, bfloat16, float16")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument(
        "--no-upscale", action="store_true", help="skip the model's learned upscaler (when its config names one)"
    )


def _pipe(args):
    from .pipeline import SDEditPipeline

    return SDEditPipeline.from_pretrained(args.model, device=args.device, dtype=args.dtype)


def _settings(args) -> dict:
    return dict(
        num_inference_steps=args.steps,
        sampler=args.sampler,
        repeats=args.repeats,
        num_images=args.num,
        snr=args.snr,
        fit=args.fit,
        prompt=args.prompt,
        negative_prompt=args.negative_prompt,
        guidance_scale=args.guidance_scale,
        progress=not args.no_progress,
        upscale=False if args.no_upscale else None,  # None: the model's default (on when it has an upscaler)
        fill_outlines=args.fill_outlines,
        keep_details=args.keep_details,
    )


def _save(img, path: Path, settings: dict) -> None:
    """A result as `path`: a PNG carries its settings (`sdedit info`); JPEG and WebP are plain images."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".png":
        save_png(img, path, settings)
    else:
        img.convert("RGB").save(path, quality=95)


def thin_lines_note(guide: str, mask: str | None, fill_outlines: bool) -> str | None:
    """What the page's canvas says of a drawing that is mostly thin lines (`outlines.HINT`), in the CLI's words:
    a stroke guide (no mask) of thin lines, unfilled, mostly comes back as a pale ring or a blob."""
    if fill_outlines or mask is not None:
        return None
    import numpy as np

    from .imaging import load_image
    from .outlines import guide_hint

    try:
        rgb = np.asarray(load_image(guide, "guide").convert("RGB"))  # size-checked before it is decoded
    except SDEditError:
        return None  # the edit itself says what is wrong with the file
    if guide_hint(rgb) is None:
        return None
    return (
        "note: the guide is mostly thin lines, which fade in the noise: the model follows areas of colour. "
        "Fill the shapes with colour, or add --fill-outlines to fill each closed outline with its stroke colour."
    )


def cmd_edit(args) -> int:
    target = outpaths.target(args.out, args.num)  # a file for several images is refused before the model loads
    if note := thin_lines_note(args.guide, args.mask, args.fill_outlines):
        print(note, file=sys.stderr)
    pipe = _pipe(args)
    kw = dict(strength_map=args.strength_map)
    out = pipe(args.guide, args.mask, strength=args.strength, seed=args.seed, **kw, **_settings(args))
    m = out.metadata
    done = f"({m['model']}, {m['sampler']}, t0={m['strength']:g}, {m['steps']} steps x {m['repeats']} repeats, "
    done += f"{m['timings']['total_s']:.2f} s)"
    if target.folder is None:
        files = target.files(m["seeds"])
        for i, (img, path) in enumerate(zip(out.images, files, strict=True)):
            _save(img, path, settings_of(m, i))
        print(f"{len(files)} image(s) -> {', '.join(map(str, files))}  {done}")
        return 0
    folder = target.folder
    folder.mkdir(parents=True, exist_ok=True)
    stem = Path(args.guide).stem
    paths = []
    for i, (img, seed) in enumerate(zip(out.images, out.metadata["seeds"], strict=True)):
        path = folder / f"{stem}-t{out.metadata['strength']:g}-{out.metadata['sampler']}-seed{seed}.png"
        save_png(img, path, settings_of(out.metadata, i))  # the PNG carries its settings: `sdedit info`
        paths.append(str(path))
    meta_path = folder / f"{stem}-metadata.json"
    meta_path.write_text(json.dumps({**out.metadata, "outputs": paths}, indent=2) + "\n")
    print(f"{len(paths)} image(s) -> {folder}/  {done}")
    return 0


def cmd_info(args) -> int:
    """Print the settings an SDEdit Studio PNG carries (its text chunk), as JSON or one line, and which inputs
    (guide, mask, strength map) it carries; `--extract DIR` writes those out as PNG files, to edit or reuse."""
    for path in args.files:
        settings = read_settings(path)
        inputs = read_inputs(path)
        sizes = {name: _png_size(data) for name, data in inputs.items()}
        if args.json:
            print(json.dumps({**settings, "carries": sizes}, indent=2, sort_keys=True))
        else:
            carried = ", ".join(f"{name} {w}x{h}" for name, (w, h) in sizes.items()) or "no inputs"
            print(f"{path}: {describe(settings)} · carries {carried}")
        if args.extract and inputs:
            folder = Path(args.extract)
            folder.mkdir(parents=True, exist_ok=True)
            for name, data in inputs.items():
                target = folder / f"{Path(path).stem}-{name}.png"
                target.write_bytes(data)
                print(f"wrote {target}")
    return 0


def _png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR, without decoding it."""
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def cmd_sweep(args) -> int:
    from .sweep import parse_strengths, run_sweep

    target = outpaths.target(args.out, 1, patterns=False)
    if note := thin_lines_note(args.guide, args.mask, args.fill_outlines):
        print(note, file=sys.stderr)
    pipe = _pipe(args)
    result = run_sweep(pipe, args.guide, args.mask, parse_strengths(args.strengths), seed=args.seed, **_settings(args))
    rows = result.rows()
    for row in rows:
        print(f"t0={row['strength']:<5g} L2 to guide = {row['l2_to_guide']:.3f}")
    if target.folder is None:  # one file: the grid
        (path,) = target.files([args.seed])
        path.parent.mkdir(parents=True, exist_ok=True)
        result.grid().convert("RGB").save(path)
        print(f"grid -> {path}")
        return 0
    folder = target.folder
    folder.mkdir(parents=True, exist_ok=True)
    stem = Path(args.guide).stem
    result.grid().save(folder / f"{stem}-sweep.png")
    result.plot(f"{stem}: faithfulness vs t0 ({pipe.config.name})").save(folder / f"{stem}-sweep-l2.png")
    for s, imgs in zip(result.strengths, result.images, strict=True):
        for i, img in enumerate(imgs):
            img.save(folder / f"{stem}-t{s:g}-{i}.png")
    (folder / f"{stem}-sweep.json").write_text(json.dumps({"rows": rows, "runs": result.metadata}, indent=2) + "\n")
    print(f"grid -> {folder / (stem + '-sweep.png')}")
    return 0


def cmd_models(args) -> int:
    from .configs import model_configs

    for cfg in model_configs().values():
        where = "embedded" if cfg.local_path.is_dir() else f"Hub: {cfg.source}"
        star = "*" if cfg.default else " "
        kind = ("text" if cfg.takes_text else "    ") + (" GPU" if cfg.needs_gpu else "    ")
        print(f"{star} {cfg.name:<22} {cfg.sde.upper()}  {cfg.resolution:>4}px  {kind}  {where:<40} {cfg.license}")
    return 0


def cmd_train(args) -> int:
    from .lab.train import train

    return _training(train, args, "model")


def cmd_train_upscaler(args) -> int:
    from .lab.upscaler import train_upscaler

    return _training(train_upscaler, args, "upscaler")


def _training(train_fn, args, what: str) -> int:
    out = train_fn(
        args.config,
        resume=not args.no_resume,
        export_only=args.export_only,
        export_to=args.export_to,
        max_steps=args.max_steps,
        max_minutes=args.max_minutes,
        output_dir=args.output_dir,
        threads=args.threads,
    )
    print(f"saved {what} to {out}")
    return 0


def cmd_features(args) -> int:
    from .lab.features import FeatureTrainSettings, train_feature_net

    settings = FeatureTrainSettings(
        data=args.data, epochs=args.epochs, seed=args.seed, threads=args.threads, jitter=args.jitter
    )
    settings.max_minutes = args.max_minutes
    train_feature_net(args.out, settings)
    return 0


def cmd_eval(args) -> int:
    from .lab.eval_cli import main_eval

    return main_eval(args)


def cmd_freehand(args) -> int:
    from .lab.freehand import main

    return main(args)


def cmd_batch(args) -> int:
    from .batch import main_batch

    return main_batch(args)


def cmd_examples(args) -> int:
    from .choose_examples import main

    return main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sdedit",
        description="SDEdit: guided image synthesis and editing with pretrained diffusion models.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n", 1)[1],
    )
    sub = parser.add_subparsers(dest="command", required=True)
    raw = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser(
        "edit",
        help="perturb a guide to t0 and denoise it back: stroke synthesis, editing, compositing",
        epilog=EDIT_EXAMPLES,
        formatter_class=raw,
    )
    _edit_args(p)
    p.set_defaults(func=cmd_edit)
    p = sub.add_parser(
        "sweep",
        help="a grid of outputs over t0, with the faithfulness (L2) curve",
        epilog=SWEEP_EXAMPLES,
        formatter_class=raw,
    )
    _edit_args(p, sweep=True)
    p.add_argument("--strengths", default=None, help="comma-separated t0 values (default 0.1,0.2,...,1.0)")
    p.set_defaults(func=cmd_sweep)
    p = sub.add_parser("info", help="print the settings an SDEdit Studio PNG carries (model, t0, sampler, seed...)")
    p.add_argument("files", nargs="+", help="PNG files saved by SDEdit Studio (app, edit or batch)")
    p.add_argument("--json", action="store_true", help="the whole record as JSON")
    p.add_argument("--extract", metavar="DIR", help="write the guide, mask and strength map it carries into DIR")
    p.set_defaults(func=cmd_info)
    p = sub.add_parser("models", help="list the configured models")
    p.set_defaults(func=cmd_models)
    for name, help_, func, export in (
        ("train", "train a VP UNet2DModel on an image set (see configs/train-*.yaml)", cmd_train, "model folder"),
        ("train-upscaler", "train a learned 4x upscaler (see configs/train-upscaler-*.yaml)", cmd_train_upscaler,
         "folder"),
    ):  # fmt: skip
        p = sub.add_parser(name, help=help_)
        p.add_argument("--config", required=True)
        p.add_argument("--max-steps", type=int)
        p.add_argument("--max-minutes", type=float)
        p.add_argument("--output-dir")
        p.add_argument("--threads", type=int, help="CPU threads for torch (default: the config's)")
        p.add_argument("--no-resume", action="store_true", help="start over even if a checkpoint exists")
        p.add_argument("--export-only", action="store_true", help="export the last checkpoint's EMA weights and stop")
        p.add_argument("--export-to", help=f"{export} to export to (default: OUTPUT_DIR/model)")
        p.set_defaults(func=func)
    p = sub.add_parser("eval", help="realism (KID) / faithfulness (L2) evaluation on held-out stroke paintings")
    from .lab.eval_cli import add_eval_args

    add_eval_args(p)
    p.set_defaults(func=cmd_eval)
    p = sub.add_parser("freehand", help="the freehand benchmark: scripted drawings, with and without guide help")
    from .lab.freehand import add_args as add_freehand_args

    add_freehand_args(p)
    p.set_defaults(func=cmd_freehand)
    p = sub.add_parser("features", help="train the small feature network that KID uses (models/emoji-features)")
    p.add_argument("--out", default="models/emoji-features", help="output folder")
    p.add_argument("--data", default="fluent-emoji-3d", help="image set key or folder (sub-folder = category)")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    p.add_argument("--max-minutes", type=float, help="stop after the epoch that passes this time")
    p.add_argument("--jitter", type=float, default=0.0, help="colour-jitter strength (1: the old recipe)")
    p.set_defaults(func=cmd_features)
    p = sub.add_parser("examples", help="measure the app's examples over seeds and t0; choose each one's seed and t0")
    p.add_argument("--seeds", type=int, default=8, help="seeds 0 .. N-1 tried per example and t0")
    p.add_argument("--strengths", default=None, help="comma-separated t0 values (default 0.2,0.3,0.4,0.5,0.6)")
    p.add_argument("--tabs", default=None, help="comma-separated tab ids to measure (default: all)")
    p.add_argument("--out", default=None, help="folder to save every result in (default: none saved)")
    p.add_argument("--sheet", default=None, help="only draw each example's guide and first click into this PNG")
    p.add_argument(
        "--record",
        default="eval/examples.json",
        help="merge the run into this record, from the repository root (default eval/examples.json; '' for none)",
    )
    p.add_argument("--no-docs", dest="docs", action="store_false", help="do not render docs/quality.md from it")
    p.set_defaults(func=cmd_examples)
    p = sub.add_parser("batch", help="edit a folder of guides: resumable, batched, data-parallel under torchrun")
    from .batch import add_batch_args

    add_batch_args(p)
    p.set_defaults(func=cmd_batch)
    return parser


def main(argv: list[str] | None = None) -> int:
    threads.apply()  # edit, sweep, batch, train and eval all run torch on the CPU policy (docs/performance.md)
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SDEditError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
