"""Editing a folder of guides: resumable, batched, and data-parallel under an existing launcher.

    python -m sdedit batch --guides in/ --out out/ [--masks masks/] [--strength 0.5 --steps 20 ...]
    torchrun --standalone --nproc_per_node 8 -m sdedit batch --guides in/ --out out/     # 8 GPUs (or processes)

* **Batching.** Guides whose settings match are edited together, `--batch-size` guides (x `--num` samples)
  per forward. Settings come from the command line; a guide may override them with a sidecar `NAME.json`
  beside it (keys: strength, steps, sampler, repeats, num, snr, fit, seed).
* **Seeds** are derived from the guide's file name (and `--seed`), and every sample has its own generator,
  so an output never depends on the batch it was in, the number of processes or the order of the work.
* **Data parallel.** Under torchrun (or `accelerate launch`) each process reads RANK / WORLD_SIZE /
  LOCAL_RANK, uses `cuda:LOCAL_RANK` when there are GPUs, and takes the batches `rank::world_size` of one
  deterministic list (built from all guides, done or not, so every rank agrees on it). There is no scheduler
  of our own; the only collective is a gloo barrier at the end, after which rank 0 writes the manifest.
* **Resume.** A guide whose outputs all exist is skipped; images and records are written to a temporary
  name and renamed, so an interrupted run never leaves a half-written file that looks finished.
* **Manifest.** `OUT/manifest.json` lists every guide's outputs, seeds and settings (rebuilt from the
  per-guide records in `OUT/.records/` at the end of each run).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import registry
from .errors import InputError, SDEditError
from .recall import png_info, settings_of

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
OVERRIDES = ("strength", "steps", "sampler", "repeats", "num", "snr", "fit", "seed")
RECORDS = ".records"


@dataclass(frozen=True)
class BatchSettings:
    """The settings that must match for guides to share a forward pass (plus the seed base)."""

    strength: float | None = None
    steps: int | None = None
    sampler: str | None = None
    repeats: int | None = None
    num: int = 1
    snr: float | None = None
    fit: str | None = None
    seed: int = 0

    def group_key(self) -> tuple:
        return (self.strength, self.steps, self.sampler, self.repeats, self.num, self.snr, self.fit)


@dataclass
class Job:
    """One guide: where it is, its mask, its settings and where its outputs go."""

    name: str
    guide: Path
    mask: Path | None
    settings: BatchSettings
    outputs: list[Path]
    seeds: list[int]

    def done(self) -> bool:
        return all(p.is_file() for p in self.outputs)


@dataclass
class BatchReport:
    rank: int
    world_size: int
    edited: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    manifest: str | None = None


def dist_env() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun / accelerate's environment; (0, 1, 0) alone."""
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    if world < 1 or not 0 <= rank < world:
        raise InputError(f"bad distributed environment: RANK={rank} WORLD_SIZE={world}")
    return rank, world, local


def seed_for(name: str, base: int = 0) -> int:
    """A seed from the guide's file name: stable across runs, machines and world sizes."""
    digest = hashlib.sha256(f"{base}/{name}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def list_guides(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise InputError(f"--guides {folder} is not a folder")
    guides = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
    if not guides:
        raise InputError(f"no images ({', '.join(IMAGE_EXTS)}) in {folder}")
    stems: dict[str, Path] = {}
    for p in guides:
        if p.stem in stems:
            raise InputError(f"two guides share the name {p.stem!r} ({stems[p.stem].name}, {p.name}): rename one")
        stems[p.stem] = p
    return guides


def find_mask(masks: Path | None, stem: str) -> Path | None:
    if masks is None:
        return None
    for ext in IMAGE_EXTS:
        for candidate in (masks / f"{stem}{ext}", masks / f"{stem}{ext.upper()}"):
            if candidate.is_file():
                return candidate
    return None


def read_overrides(guide: Path, base: BatchSettings) -> BatchSettings:
    side = guide.with_suffix(".json")
    if not side.is_file():
        return base
    try:
        raw = json.loads(side.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{side}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict) or set(raw) - set(OVERRIDES):
        raise InputError(f"{side}: keys must be among {', '.join(OVERRIDES)}")
    return BatchSettings(**{**asdict(base), **raw})


def plan(guides_dir: Path, out_dir: Path, masks_dir: Path | None, base: BatchSettings) -> list[Job]:
    """Every guide's job, in file-name order (the same list in every process)."""
    jobs = []
    for g in list_guides(guides_dir):
        s = read_overrides(g, base)
        if not isinstance(s.num, int) or s.num < 1:
            raise InputError(f"{g.name}: num must be a positive whole number")
        first = seed_for(g.name, s.seed)
        names = [f"{g.stem}.png"] if s.num == 1 else [f"{g.stem}-s{j}.png" for j in range(s.num)]
        jobs.append(Job(g.name, g, find_mask(masks_dir, g.stem), s, [out_dir / n for n in names],
                        [first + j for j in range(s.num)]))  # fmt: skip
    return jobs


def make_batches(jobs: Sequence[Job], batch_size: int, max_images: int = 64) -> list[list[Job]]:
    """Consecutive runs of jobs with matching settings, at most `batch_size` guides (and `max_images`
    samples) each. Built from all jobs, done or not, so that it is the same in every process."""
    groups: dict[tuple, list[Job]] = {}
    for job in jobs:
        groups.setdefault(job.settings.group_key(), []).append(job)
    batches = []
    for group in groups.values():
        per = max(1, min(batch_size, max_images // max(1, group[0].settings.num)))
        batches += [group[i : i + per] for i in range(0, len(group), per)]
    return batches


def shard(batches: Sequence, rank: int, world_size: int) -> list:
    return list(batches[rank::world_size])


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _save_png(image, path: Path, settings: dict) -> None:
    import io

    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=png_info(settings))  # `sdedit info` reads the settings back
    _atomic_write_bytes(path, buf.getvalue())


def write_manifest(out_dir: Path, info: dict) -> Path:
    """Rebuild OUT/manifest.json from the per-guide records (all runs, all ranks)."""
    records = []
    for p in sorted((out_dir / RECORDS).glob("*.json")):
        try:
            records.append(json.loads(p.read_text()))
        except (OSError, ValueError):
            continue  # a record being replaced right now: the next run picks it up
    data = {**info, "guides": sorted(records, key=lambda r: r["guide"]), "updated": time.strftime("%Y-%m-%dT%H:%M:%S")}
    path = out_dir / "manifest.json"
    _atomic_write_bytes(path, (json.dumps(data, indent=2) + "\n").encode())
    return path


def _barrier(world_size: int) -> bool:
    """A gloo barrier across the launcher's processes (the run's one collective). False if unavailable."""
    if world_size == 1:
        return True
    import datetime

    import torch.distributed as dist

    try:
        if not dist.is_initialized():
            dist.init_process_group("gloo", timeout=datetime.timedelta(hours=12))
        dist.barrier()
        return True
    except (RuntimeError, ValueError) as exc:
        print(f"warning: no barrier across processes ({exc}); manifest.json will be rebuilt by the next run")
        return False


def run_batch(
    guides_dir: str | Path,
    out_dir: str | Path,
    masks_dir: str | Path | None = None,
    model: str | None = None,
    settings: BatchSettings = BatchSettings(),
    batch_size: int = 8,
    device: str | None = None,
    dtype: str | None = None,
    accel: bool | None = None,
    progress: bool = True,
    rank: int | None = None,
    world_size: int | None = None,
    pipe=None,
    upscale: bool | None = None,
) -> BatchReport:
    """Edit every guide in `guides_dir` that has no outputs in `out_dir` yet (this process's shard).

    upscale: the model's learned upscaler (None = on when its config names one; False = off)."""
    import torch

    t0 = time.perf_counter()
    env_rank, env_world, local_rank = dist_env()
    rank = env_rank if rank is None else rank
    world_size = env_world if world_size is None else world_size
    if batch_size < 1:
        raise InputError("--batch-size must be at least 1")
    guides_dir, out_dir = Path(guides_dir), Path(out_dir)
    masks_dir = Path(masks_dir) if masks_dir else None
    if masks_dir is not None and not masks_dir.is_dir():
        raise InputError(f"--masks {masks_dir} is not a folder")
    (out_dir / RECORDS).mkdir(parents=True, exist_ok=True)
    jobs = plan(guides_dir, out_dir, masks_dir, settings)
    mine = shard(make_batches(jobs, batch_size), rank, world_size)
    report = BatchReport(rank, world_size)

    if pipe is None and any(not j.done() for b in mine for j in b):
        if device is None and torch.cuda.is_available():
            device = f"cuda:{local_rank % torch.cuda.device_count()}"
        use_accel = accel if accel is not None else str(device or "cpu").startswith("cuda")
        if use_accel:
            from .accel import AcceleratedPipeline

            pipe = AcceleratedPipeline.from_pretrained(model, device=device, dtype=dtype)
        else:
            from .pipeline import SDEditPipeline

            pipe = SDEditPipeline.from_pretrained(model, device=device, dtype=dtype)
    bar = None
    if progress and rank == 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(len(b) for b in mine), desc=f"rank {rank}/{world_size}", leave=False)
    for batch in mine:
        todo = [j for j in batch if not j.done()]
        report.skipped += [j.name for j in batch if j.done()]
        if bar is not None:
            bar.update(len(batch) - len(todo))
        if not todo:
            continue
        tb = time.perf_counter()
        edited = edit_batch(pipe, todo, report.failed, upscale)
        per_guide = (time.perf_counter() - tb) / len(todo)
        for job, images, meta in edited:
            _finish(job, images, meta, per_guide, len(edited))
            report.edited.append(job.name)
        if bar is not None:
            bar.update(len(todo))
    if bar is not None:
        bar.close()
    synced = _barrier(world_size)
    if rank == 0 and (synced or world_size == 1):
        info = {
            "guides_dir": str(guides_dir),
            "masks_dir": str(masks_dir) if masks_dir else None,
            "model": model or "default",
            "settings": asdict(settings),
            "batch_size": batch_size,
            "world_size": world_size,
        }
        report.manifest = str(write_manifest(out_dir, info))
    report.seconds = time.perf_counter() - t0
    return report


def edit_batch(
    pipe, jobs: Sequence[Job], failed: dict[str, str], upscale: bool | None = None
) -> list[tuple[Job, list, dict]]:
    """Edit guides with matching settings in one forward: check once, prepare each guide once, run once.

    A guide that cannot be read is recorded in `failed` and the rest go on without it.
    """
    s = jobs[0].settings
    try:
        checked = pipe.check_inputs(
            strength=s.strength,
            num_inference_steps=s.steps,
            sampler=s.sampler,
            repeats=s.repeats,
            num_images=s.num,
            snr=s.snr,
            fit=s.fit,
            num_guides=len(jobs),
        )
    except SDEditError as exc:
        failed.update({job.name: str(exc) for job in jobs})
        return []
    ready = []
    for job in jobs:
        try:
            ready.append((job, pipe.prepare(str(job.guide), str(job.mask) if job.mask else None, checked.fit)))
        except SDEditError as exc:
            failed[job.name] = str(exc)
    if not ready:
        return []
    guides = [g for _, g in ready for _ in range(checked.num_images)]
    seeds = [seed for job, _ in ready for seed in job.seeds]
    out = pipe.postprocess(pipe.run(guides, checked, seeds), guides, checked, upscale)
    n = checked.num_images
    return [(job, out.images[i * n : (i + 1) * n], out.metadata) for i, (job, _) in enumerate(ready)]


def _finish(job: Job, images, meta: dict, seconds: float, batch_guides: int) -> None:
    recalled = {**settings_of(meta), "masked": job.mask is not None, "strength_map": False}
    for k, (img, path, seed) in enumerate(zip(images, job.outputs, job.seeds, strict=True)):
        _save_png(img, path, {**recalled, "seed": seed, "sample": k})
    keep = ("model", "sde", "sampler", "strength", "num_inference_steps", "steps", "repeats", "model_evaluations",
            "snr", "resolution", "fit", "upscaler", "device", "dtype")  # fmt: skip
    record = {
        "guide": job.name,
        "mask": job.mask.name if job.mask else None,
        "outputs": [p.name for p in job.outputs],
        "seeds": job.seeds,
        "settings": asdict(job.settings),
        **{k: meta.get(k) for k in keep},
        "seconds": round(seconds, 3),
        "guides_in_batch": batch_guides,
    }
    out_dir = job.outputs[0].parent
    _atomic_write_bytes(
        out_dir / RECORDS / f"{Path(job.name).stem}.json", (json.dumps(record, indent=2) + "\n").encode()
    )


def add_batch_args(p) -> None:
    """The `python -m sdedit batch` options (kept here, so cli.py only wires the subcommand)."""
    p.add_argument("--guides", required=True, help="folder of guide images (a NAME.json beside one overrides settings)")
    p.add_argument("--out", required=True, help="output folder: NAME.png (or NAME-sJ.png), manifest.json")
    p.add_argument("--masks", default=None, help="folder of masks named like the guides (white = may change)")
    p.add_argument("--model", default=None, help="configured name, local folder or Hub id (default: embedded model)")
    p.add_argument("--strength", type=float, default=None, help="t0 in (0, 1]")
    p.add_argument("--steps", type=int, default=None, help="steps of a full schedule; an edit runs round(t0 x steps)")
    p.add_argument("--sampler", default=None, help=registry.describe())
    p.add_argument("--repeats", type=int, default=None, help="K: re-run SDEdit on its own output K times")
    p.add_argument("--num", type=int, default=1, help="samples per guide")
    p.add_argument("--seed", type=int, default=0, help="seed base; each guide's seed derives from it and its file name")
    p.add_argument("--snr", type=float, default=None, help="VE only: Langevin corrector signal-to-noise (0 = off)")
    p.add_argument("--fit", choices=("pad", "crop", "stretch"), default=None)
    p.add_argument("--batch-size", type=int, default=8, help="guides per forward pass (x --num samples)")
    p.add_argument("--device", default=None, help="default: cuda:LOCAL_RANK if there are GPUs, else cpu")
    p.add_argument("--dtype", default=None, help="auto, float32, bfloat16, float16")
    p.add_argument("--accel", action=argparse.BooleanOptionalAction, default=None,
                   help="the fast path (sdedit.accel); default: on for CUDA, off on the CPU")  # fmt: skip
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--no-upscale", action="store_true", help="skip the model's learned upscaler (when it has one)")


def main_batch(args) -> int:
    settings = BatchSettings(
        args.strength, args.steps, args.sampler, args.repeats, args.num, args.snr, args.fit, args.seed
    )
    report = run_batch(
        args.guides,
        args.out,
        args.masks,
        args.model,
        settings,
        batch_size=args.batch_size,
        device=args.device,
        dtype=args.dtype,
        accel=args.accel,
        progress=not args.no_progress,
        upscale=False if args.no_upscale else None,
    )
    where = f"rank {report.rank}/{report.world_size}: " if report.world_size > 1 else ""
    print(
        f"{where}{len(report.edited)} edited, {len(report.skipped)} already done, {len(report.failed)} failed "
        f"({report.seconds:.1f} s) -> {args.out}" + (f"; manifest {report.manifest}" if report.manifest else "")
    )
    for name, err in report.failed.items():
        print(f"  {name}: {err}")
    return 1 if report.failed else 0
