"""Running edits: one request checked in its own thread, then run with others in one forward, and sweeps.

`prepare_edit` loads the model and checks everything about a request before it may wait for the model, so a
batch only ever holds requests that can run. The batcher (`edit_service`, a `queue.ServingQueue`) merges
requests with matching settings; `run_jobs` runs them as one forward, each sample with its own seed, so the
images agree with an unbatched run. `run_edit` is the entry point for the page and the tests; on ZeroGPU it
runs unbatched in the calling thread. `run_t0_sweep` is the engine's sweep (`sdedit.sweep`) on the model's slot.

The result comes first: during the forward the animation only keeps tensor copies of a few steps, and its
GIF is rendered when `EditResult.animation` is first read (the page reads it after it has sent the result).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from PIL import Image, ImageDraw

from .. import loading, ranking
from ..errors import InputError, OutOfMemoryError
from ..noise import check_seed, random_seed, seeds_for
from ..outlines import guide_hint
from ..pipeline import PreparedGuide, SDEditPipeline, Settings
from ..recall import settings_of
from ..samplers import StepInfo
from ..sweep import parse_strengths, run_sweep
from ..upscale import upscaler_for
from . import limits
from .guard import free_memory, is_out_of_memory, trim_malloc
from .guides import WHITE, prepare_mask, to_pil
from .models import config_for, get_pipeline
from .progress import Animation, ProgressFn, ReverseRecorder, StepProgress, queue_words, quoted, write_pngs
from .queue import Batch, Cancelled, ServingQueue
from .slots import ModelSlots


def pick_seed(seed) -> int:
    """-1, None or empty = a fresh random seed; otherwise the checked seed."""
    if seed is None or (isinstance(seed, str) and not seed.strip()):
        return random_seed()
    try:
        if float(seed) == -1:
            return random_seed()
    except (TypeError, ValueError, OverflowError):  # check_seed words them (a huge int overflows a float)
        pass
    return check_seed(seed)


@dataclass
class EditSettings:
    """One request's settings as the UI and API send them."""

    model: str | None = None
    strength: float | None = None
    sampler: str | None = None
    steps: int | None = None
    repeats: int | None = None
    num_samples: int = 1
    seed: int | None = -1
    snr: float | None = None
    mask_dilation: float = 0
    mask_feather: float = 0
    strength_map: object = None  # an image the guide's size: white = the full t0, black = kept exactly
    fill_outlines: bool = False  # fill closed outlines with their stroke colour first (`outlines.fill_guide`)
    auto_strength: bool = False  # pick t0 per guide within the model's follows range (sdedit.ranking.run_auto)
    rank: bool = False  # several samples: best first by realism, faithfulness and identity (sdedit.ranking.rank)
    prompt: str | None = None  # text models only (None = the model's default: unconditional)
    negative_prompt: str | None = None  # classifier-free guidance only
    guidance_scale: float | None = None  # None = the model's default
    keep_details: bool = False  # a drawing's thin and small parts start at half the t0 (`sdedit.details`)

    def guide_help(self) -> dict:
        """The guide help `prepare` (and `run_sweep`) take: fill closed outlines, keep details."""
        return dict(fill_outlines=self.fill_outlines, keep_details=self.keep_details)

    def pipe_kwargs(self) -> dict:
        return dict(
            strength=self.strength,
            num_inference_steps=self.steps,
            sampler=self.sampler or None,
            repeats=self.repeats,
            snr=self.snr,
            prompt=self.prompt,
            negative_prompt=self.negative_prompt,
            guidance_scale=self.guidance_scale,
        )


@dataclass
class EditResult:
    """One request's results, in seed order. The animation is pending until `animation` is first read (then
    rendered, once). `order`: the samples best first when they were ranked, with `captions` saying why."""

    images: list[Image.Image]
    seeds: list[int]
    metadata: dict
    pending_animation: Animation | None = None
    summary: str = ""
    order: list[int] | None = None
    captions: list[str] | None = None
    _pngs: list[Path] | None = field(default=None, repr=False)

    @property
    def animation(self) -> Path | None:
        """The reverse-process GIF (rendered on first access, in the caller's thread), or None without one."""
        return None if self.pending_animation is None else self.pending_animation.path()

    @property
    def animation_ready(self) -> bool:
        return self.pending_animation is not None and self.pending_animation.ready

    def png_files(self, inputs: dict[str, bytes] | None = None) -> list[Path]:
        """The images as PNG files (written on first call, then the same files); `inputs`: what the model got
        (guide, mask, strength map as PNG bytes, `sdedit.studio.restore.input_pngs`), carried in each PNG."""
        if self._pngs is None:
            settings = [settings_of(self.metadata, i) for i in range(len(self.images))]
            self._pngs = write_pngs(self.images, settings, inputs)
        return self._pngs


# ----- edits: checked in the request's thread, run in batches ----------------------------------------------


@dataclass
class EditJob:
    """One request, fully checked and its guide prepared once: what a batch needs, nothing left to refuse."""

    pipe: SDEditPipeline
    guide: Image.Image
    prepared: PreparedGuide  # on the model's canvas and in its space; `x0` is the animation's first frame
    settings: EditSettings
    checked: Settings
    seeds: list[int]
    animate: bool = True
    report: ProgressFn | None = None
    prepare_s: float = 0.0
    queued_at: float = field(default_factory=time.perf_counter)
    hint: str | None = None  # words for a guide that is mostly thin lines (`outlines.guide_hint`)

    @property
    def key(self) -> tuple:
        """Requests may share a forward when these match (the number of samples may differ): one run has one
        text condition, so the prompt, negative prompt and guidance scale are part of it."""
        c = self.checked
        return (
            self.pipe.config.name,
            id(self.pipe.unet),
            c.strength,
            c.sampler,
            c.num_inference_steps,
            c.repeats,
            c.snr,
            c.fit,
            c.prompt,
            c.negative_prompt,
            c.guidance_scale,
        )

    @property
    def size(self) -> int:
        return self.checked.num_images

    @property
    def work(self) -> int:
        """Network evaluations of the whole request, by the pipeline's cost rule."""
        return self.checked.num_images * self.pipe.evaluations(self.checked)


@dataclass
class JobOutput:
    """What a batch hands back to one request: its images, metadata and its animation, still to be rendered, and
    its samples at the model's resolution (what ranking scores)."""

    images: list[Image.Image]
    metadata: dict
    animation: Animation | None
    canvases: object = None  # (n, R, R, 3) uint8


def prepare_edit(guide, mask=None, settings: EditSettings | None = None, animate: bool = True) -> EditJob:
    """Load the model, check everything about one request and prepare its guide, before it may wait for the model.

    Any problem raises here, in the request's own thread, so a batch only ever holds requests that can run.
    The guide is prepared once (`pipe.prepare`): the batch runs it and the animation starts from it.
    """
    s = settings or EditSettings()
    pipe = get_pipeline(s.model)
    guide = to_pil(guide)
    checked = pipe.check_inputs(num_images=s.num_samples, **s.pipe_kwargs())
    m = prepare_mask(to_pil(mask, "mask") if mask is not None else None, guide.size, s.mask_dilation, s.mask_feather)
    seeds = seeds_for(pick_seed(s.seed), checked.num_images)
    t0 = time.perf_counter()
    smap = to_pil(s.strength_map, "strength_map") if s.strength_map is not None else None
    prepared = pipe.prepare(guide, m, checked.fit, strength_map=smap, **s.guide_help())
    job = EditJob(pipe, guide, prepared, s, checked, seeds, animate, prepare_s=time.perf_counter() - t0)
    job.hint = prepared_hint(prepared, pipe.config.background)
    return job


def prepared_hint(prepared: PreparedGuide, background) -> str | None:
    """`outlines.HINT` when the guide the model gets (its outlines filled when asked) is mostly thin lines:
    its drawn pixels are the mask's, or without one those that differ from the model's background."""
    painted = None if prepared.mask is None else prepared.mask > 0.5
    return guide_hint(prepared.rgb, painted, background or WHITE)


def run_jobs(jobs: list[EditJob], cancelled: Callable[[], bool] = lambda: False) -> list[JobOutput]:
    """Run requests with equal `key`s as one forward: their guides side by side, each sample with its own seed.

    One `pipe.run` over the prepared guides: a request with k samples lists its guide k times with its k
    seeds, so its samples get exactly the noise they would get alone; the images agree with an unbatched
    run up to the float rounding of batched convolutions. Nothing is checked again: each request was checked
    alone against the app's limits, and the batcher bounds the batch (MAX_BATCH, MAX_WORK). `cancelled()` is
    polled after every step and stops the forward (`Cancelled`).
    """
    if not jobs:
        return []
    first = jobs[0]
    if any(j.key != first.key for j in jobs):
        raise ValueError("run_jobs needs requests whose settings match (EditJob.key)")
    pipe, c = first.pipe, first.checked
    guides, seeds, offsets = [], [], []
    for job in jobs:
        offsets.append(len(guides))
        guides += [job.prepared] * job.size
        seeds += job.seeds
    total = c.steps * c.repeats
    bars = [StepProgress(job.report, total, "Denoising") for job in jobs]
    recorders = [ReverseRecorder(pipe.space.decode, total) if job.animate else None for job in jobs]

    def on_start(repeat: int, x_t0) -> None:
        if repeat == 0:  # the exact perturbed guide the first pass starts from
            for job, rec, o in zip(jobs, recorders, offsets, strict=True):
                if rec is not None:
                    rec.add("your guide", f"noised to t0 = {c.strength:g}", job.prepared.x0[None], x_t0[o : o + 1])

    def on_step(info: StepInfo) -> None:
        if cancelled():
            raise Cancelled("the request was cancelled")
        for bar, rec, o in zip(bars, recorders, offsets, strict=True):
            bar(info)
            if rec is not None:
                rec.step(info.x[o : o + 1], info.x0_pred[o : o + 1])

    try:
        samples = pipe.run(guides, c, seeds, callback=on_step, on_start=on_start)
        out = pipe.postprocess(
            samples, guides, c, requests=[j.size for j in jobs], prepare_s=[j.prepare_s for j in jobs]
        )
    except Exception as exc:
        if is_out_of_memory(exc):
            raise _out_of_memory(pipe, len(guides)) from None
        raise
    results = []
    for job, rec, own in zip(jobs, recorders, out.requests, strict=True):
        if rec is not None:
            rec.to_host()
        queued_s = round(time.perf_counter() - job.queued_at, 4)
        meta = {**own.metadata, "mask_dilation": job.settings.mask_dilation, "mask_feather": job.settings.mask_feather}
        meta["timings"] = {**meta["timings"], "queued_s": queued_s}
        anim = Animation(rec, own.canvases[0], upscaler_for(pipe.config, pipe.device)) if rec is not None else None
        results.append(JobOutput(list(own.images), meta, anim, own.canvases))
    return results


def run_auto_job(job: EditJob) -> JobOutput:
    """An edit at auto strength (`sdedit.ranking.run_auto`: a probe per t0 of the model's follows range, then the
    other samples at the t0 chosen), on a model slot as a batch is. No animation: the probes are the work."""
    with MODEL_SLOTS:
        try:
            choice, samples = ranking.run_auto(job.pipe, job.prepared, job.checked, job.seeds, ranking.default_judge())
            job.checked = replace(job.checked, strength=choice.strength)
            out = job.pipe.postprocess(samples, [job.prepared] * job.size, job.checked, prepare_s=job.prepare_s)
        except Exception as exc:
            if is_out_of_memory(exc):
                raise _out_of_memory(job.pipe, job.size) from None
            raise
    meta = {
        **out.metadata,
        "model_evaluations_total": ranking.evaluations_of_auto(job.pipe, job.checked, choice.tried, choice.strength),
        "auto_strength": choice.as_dict(),
        "mask_dilation": job.settings.mask_dilation,
        "mask_feather": job.settings.mask_feather,
    }
    return JobOutput(list(out.images), meta, None, out.canvases)


def _out_of_memory(pipe: SDEditPipeline, batch: int) -> OutOfMemoryError:
    """Free what the failed forward held (and other cached models), and say so in words."""
    loading.clear_cache()  # other cached models; the current one stays loaded in _PIPES
    free_memory()
    where = "GPU" if pipe.device.type == "cuda" else "server"
    return OutOfMemoryError(
        f"the {where} ran out of memory for this request ({batch} image(s) at {pipe.config.resolution} px). "
        "Memory has been freed: try again, or ask for fewer samples"
    )


def finish_edit(job: EditJob, out: JobOutput) -> EditResult:
    """The summary of one request (and its ranking, when asked for and there are several samples), and its
    reverse-process animation still pending: the GIF is rendered when `EditResult.animation` is first read, so it
    never holds up the result."""
    meta, order, captions = out.metadata, None, None
    if job.settings.rank and len(out.images) > 1 and out.canvases is not None:
        ranked = ranking.rank(ranking.default_judge().score(job.prepared.canvas, list(out.canvases)))
        order, captions = ranked.order, ranked.words
        seeds = meta["seeds"]
        meta = {**meta, "ranking": [{**row, "seed": seeds[row["sample"]]} for row in ranked.as_dict()]}
    summary = summarize(meta, job.guide.size)
    if captions:
        seeds = meta["seeds"]
        summary += "\n\n" + "\n".join(f"- {w} (seed {seeds[i]})" for i, w in zip(order, captions, strict=True))
    if job.hint:
        summary += f"\n\n**Tip:** {job.hint}"
    if "auto_strength" in meta:
        summary += f"\n\nAuto t0: {meta['auto_strength']['why']}."
    return EditResult(out.images, list(meta["seeds"]), meta, out.animation, summary, order, captions)


_SERVICE: ServingQueue | None = None
_SERVICE_LOCK = threading.Lock()


def edits_waiting() -> bool:
    """Whether edits are queued for the model (the batcher's pending requests): live previews wait while this
    holds (`ModelSlots.turn`, which also counts the edits blocked on a slot)."""
    return _SERVICE is not None and _SERVICE.pending() > 0


# One model run at a time per slot: the batcher's workers, the sweep and the live previews share these.
MODEL_SLOTS = ModelSlots(limits.CONCURRENCY, queued=edits_waiting)


def _run_tickets(batch: Batch) -> list[JobOutput]:
    jobs = [t.payload for t in batch]
    for job, ticket in zip(jobs, batch, strict=True):
        job.report = ticket.report
    try:
        return run_jobs(jobs, batch.all_cancelled)
    finally:
        trim_malloc()  # a long-running server's RSS stays flat (fragmentation, see sdedit.guard)


def edit_service() -> ServingQueue:
    """The process's batcher (created on first use): requests with matching settings share a forward."""
    global _SERVICE
    with _SERVICE_LOCK:
        if _SERVICE is None:
            _SERVICE = ServingQueue(
                _run_tickets,
                max_items=limits.MAX_BATCH,
                max_cost=limits.MAX_WORK,
                window_s=limits.BATCH_WINDOW_S,  # 0 by default: requests batch while the model is busy
                workers=limits.CONCURRENCY,
                slot=MODEL_SLOTS,
                name="sdedit-edits",
            )
        return _SERVICE


def run_edit(
    guide,
    mask=None,
    settings: EditSettings | None = None,
    progress: ProgressFn | None = None,
    animate: bool = True,
    batch: bool = True,
) -> EditResult:
    """SDEdit `guide` (only inside `mask` when given) into `settings.num_samples` results.

    batch=True goes through the process's batcher (shared forwards, one model run at a time); False runs here
    and now, in this thread (ZeroGPU, where the GPU exists only inside the calling function).
    """
    job = prepare_edit(guide, mask, settings, animate)
    if job.settings.auto_strength:
        return finish_edit(job, run_auto_job(job))
    if not batch:
        job.report = progress
        with MODEL_SLOTS:
            out = run_jobs([job])[0]
    else:
        ticket = edit_service().submit(job.key, job, job.size, job.work)
        out = ticket.wait(on_progress=progress, on_queue=_queue_reporter(job, progress))
    return finish_edit(job, out)


def _queue_reporter(job: EditJob, progress: ProgressFn | None):
    """While a request waits for the model: its progress bar at 0 with where it stands (`queue_words`)."""
    if progress is None:
        return None
    total = job.checked.steps * job.checked.repeats
    return lambda ahead, eta_s: progress(0, total, queue_words(ahead, eta_s))


async def run_edit_async(
    guide, mask=None, settings: EditSettings | None = None, progress: ProgressFn | None = None, animate: bool = True
) -> EditResult:
    """`run_edit` for a web server's event loop: cancelling the awaiting task cancels the request's work."""
    import anyio

    job = await anyio.to_thread.run_sync(prepare_edit, guide, mask, settings, animate)
    if job.settings.auto_strength:
        if progress is not None:
            progress(0, 1, "Trying t0 values for this guide")
        out = await anyio.to_thread.run_sync(run_auto_job, job)
    else:
        ticket = edit_service().submit(job.key, job, job.size, job.work)
        out = await ticket.wait_async(on_progress=progress, on_queue=_queue_reporter(job, progress))
    if job.settings.rank and job.size > 1:  # two small networks: off the event loop
        return await anyio.to_thread.run_sync(finish_edit, job, out)
    return finish_edit(job, out)  # a summary line: no thread needed (the animation is still pending)


def warm_up(name: str | None = None) -> float:
    """Load the model and run one small edit, so the first visitor doesn't pay for lazy set-up; seconds taken."""
    t0 = time.perf_counter()
    guide = Image.new("RGB", (64, 64), WHITE)
    ImageDraw.Draw(guide).ellipse((16, 16, 48, 48), fill=(230, 80, 60))
    cfg = config_for(name)
    settings = EditSettings(model=name, strength=0.5, sampler=cfg.defaults.sampler, steps=4, num_samples=1, seed=0)
    pipe = get_pipeline(name)
    if hasattr(pipe, "warmup"):  # the fast path: compile and capture the batch sizes the batcher will use
        pipe.warmup(batches=tuple(sorted({1, limits.MAX_BATCH})), sampler=cfg.defaults.sampler)
    result = run_edit(guide, None, settings, batch=False)
    if result.animation is not None:
        result.animation.unlink(missing_ok=True)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # the sweep's plot: about a second of import on the first sweep otherwise

    return time.perf_counter() - t0


def summarize(meta: dict, size: tuple[int, int]) -> str:
    """One line about a finished run, for the results panel."""
    seeds = meta.get("seeds") or []
    seed_text = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {seeds[0]}–{seeds[-1]}" if seeds else ""
    n = meta.get("num_images", len(seeds))
    r = meta.get("resolution")
    scale = f" · model output {r}×{r} px, shown at {size[0]}×{size[1]}" if r and max(size) > r else ""
    masked = " · masked edit: pixels outside the mask are untouched" if any(meta.get("masked") or []) else ""
    prompt = f" · prompt {quoted(meta['prompt'])}" if meta.get("prompt") else ""
    t = meta.get("timings", {}).get("total_s")
    shared = meta.get("batched_requests", 1)
    batched = f" (one forward shared by {shared} requests)" if shared > 1 else ""
    return (
        f"**{n} result{'s' if n != 1 else ''}** · t0 = {meta.get('strength'):g} · {meta.get('sampler_label')} · "
        f"{meta.get('steps')} steps × {meta.get('repeats')} · {seed_text}{prompt}"
        + (f" · {t:.1f} s on {meta.get('device')}{batched}" if t is not None else "")
        + scale
        + masked
    )


@dataclass
class SweepOutput:
    grid: Image.Image
    plot: Image.Image
    rows: list[dict]
    seed: int


def run_t0_sweep(
    guide,
    mask=None,
    strengths="0.2, 0.4, 0.6, 0.8, 1.0",
    settings: EditSettings | None = None,
    progress: ProgressFn | None = None,
) -> SweepOutput:
    """The same guide and seeds at several t0: a grid of results and the faithfulness curve. A strength map
    (`settings.strength_map`) holds in every column: each pixel's t0 is its fraction of that column's t0."""
    s = settings or EditSettings()
    pipe = get_pipeline(s.model)
    guide = to_pil(guide)
    if isinstance(strengths, str) and len(strengths) > limits.MAX_STRENGTHS_TEXT:
        raise InputError(f"the t0 list is {len(strengths)} characters long; at most {limits.MAX_STRENGTHS_TEXT}")
    values = parse_strengths(strengths) if isinstance(strengths, str) else [float(v) for v in strengths]
    if not 1 <= len(values) <= 10:
        raise InputError(f"a sweep takes 1 to 10 strengths, not {len(values)}")
    kwargs = {k: v for k, v in s.pipe_kwargs().items() if k != "strength"}
    checks = [pipe.check_inputs(strength=v, num_images=s.num_samples, **kwargs) for v in values]  # fail fast
    num, repeats = checks[0].num_images, checks[0].repeats
    m = prepare_mask(to_pil(mask, "mask") if mask is not None else None, guide.size, s.mask_dilation, s.mask_feather)
    smap = to_pil(s.strength_map, "strength_map") if s.strength_map is not None else None
    pipe.prepare(guide, m, checks[0].fit, strength_map=smap, **s.guide_help())  # fails before the wait
    seed = pick_seed(s.seed)
    bar = StepProgress(progress, sum(c.steps for c in checks) * repeats, "t0 sweep")
    if not MODEL_SLOTS.acquire(blocking=False):  # edits hold the model: say so rather than look frozen
        if progress is not None:
            progress(0, bar.total, "Waiting for the model: edits are running")
        MODEL_SLOTS.acquire()
        bar.t0 = time.perf_counter()  # the time-left estimate counts from the first step, not the wait
    try:
        result = run_sweep(
            pipe,
            guide,
            m,
            values,
            seed=seed,
            num_images=num,
            callback=bar,
            progress=False,
            strength_map=smap,
            **s.guide_help(),
            **kwargs,
        )
    except Exception as exc:
        if is_out_of_memory(exc):
            raise _out_of_memory(pipe, num) from None
        raise
    finally:
        MODEL_SLOTS.release()
    title = f"Faithfulness vs t0 · {pipe.config.name} · seed {seed}"
    return SweepOutput(result.grid(), result.plot(title), result.rows(), seed)
