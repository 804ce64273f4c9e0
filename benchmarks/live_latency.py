"""Live preview: how fast, and how good, on the embedded model.

    OMP_NUM_THREADS=1 python -m benchmarks.live_latency --quality   # the preview candidates: realism (KID),
                                                                    # faithfulness (L2) and compute time ->
                                                                    # docs/quality.md "Live preview settings"
    python -m benchmarks.live_latency                               # real Chromium: mouse-up -> preview
                                                                    # image updated, 20 strokes, and Generate
                                                                    # for comparison, on the app's own thread
                                                                    # policy -> docs/performance.md

Both run on 127.0.0.1 / in-process only, with a fixed number of strokes or images, and stop by themselves.

**--quality** (a few minutes on 2 CPU cores): the paper's protocol of `python -m sdedit eval`, small: held-out
emoji (never seen in training), split into guides (A) and a realism reference (B) as there, turned into
stroke paintings, edited at t0 = 0.5 with each preview candidate (sampler, network
evaluations, resolution) and with Generate's default (dpmpp, 20-step schedule = 10 evaluations). Realism is
KID against B on the project's emoji features; faithfulness the paper's L2 to the guide; and "L2 to Generate"
how far the preview is from the Generate result with the same seed (what the preview promises). Compute is
the live path's own function (`sdedit.studio.previews.compute_previews`: decode the 256 px canvas PNG, prepare,
forward, composite, JPEG) on one canvas, median of repeated runs with one torch thread.

**latency** (about two minutes): the app in this process on a free port, Debian's Chromium through
Playwright (executable_path; never `playwright install`). Live is on; each stroke is a real mouse drag on
the canvas; the page records performance.now() at pointer-up (a capture listener on window) and when the
preview <img> has loaded its new picture. Strokes are spaced so that each preview finishes before the next.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import replace

import numpy as np

from .harness import REPO, RESULTS, load_average, load_words, publish

BUDGET_MS = 120.0  # target: preview compute on the embedded model, 2 CPU cores
TARGET_MS = 350.0  # target: mouse-up -> preview updated, median over 20 strokes

# (label, sampler, evaluations, resolution); the last is Generate's default, for comparison
CANDIDATES = [
    ("dpmpp, 1 evaluation", "dpmpp", 1, 64),
    ("dpmpp, 2 evaluations", "dpmpp", 2, 64),
    ("dpmpp, 3 evaluations", "dpmpp", 3, 64),
    ("dpmpp, 4 evaluations", "dpmpp", 4, 64),
    ("dpmpp, 6 evaluations", "dpmpp", 6, 64),
    ("ddim, 2 evaluations", "ddim", 2, 64),
    ("euler_a, 2 evaluations", "euler_a", 2, 64),
    ("dpmpp, 2 evaluations at 32 px", "dpmpp", 2, 32),
    ("dpmpp, 4 evaluations at 32 px", "dpmpp", 4, 32),
]
GENERATE = ("Generate's default (dpmpp/20)", "dpmpp", 10, 64)


def environment() -> dict:
    import torch

    from sdedit import threads as cpu_threads

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "policy": cpu_threads.describe(cpu_threads.apply().policy),  # apply: as the app starts (idempotent)
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "machine": platform.machine(),
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


# ----- --quality: the candidates side by side --------------------------------------------------------------


def candidate_pipe(pipe, resolution: int):
    """`pipe`, or the same network run at another resolution (a UNet is fully convolutional)."""
    from sdedit.pipeline import SDEditPipeline

    if resolution == pipe.config.resolution:
        return pipe
    out = SDEditPipeline(pipe.unet, pipe.scheduler, replace(pipe.config, resolution=resolution), pipe.limits)
    out.x0_limit = pipe.x0_limit
    return out


def edit_all(pipe, strokes: np.ndarray, sampler: str, evaluations: int, seed: int, batch: int = 16) -> np.ndarray:
    from sdedit.studio.previews import preview_steps

    steps = preview_steps(0.5, evaluations)
    out = []
    for i in range(0, len(strokes), batch):
        idx = range(i, min(len(strokes), i + batch))
        res = pipe(
            [strokes[j] for j in idx],
            strength=0.5,
            num_inference_steps=steps,
            sampler=sampler,
            seed=[seed + j for j in idx],
            output_type="uint8",
            progress=False,
            upscale=False,  # previews show the model's own picture; at 64 px guides an upscaler changes nothing
        )
        out.append(np.asarray(res.images))
    return np.concatenate(out)


def smiley_request():
    """A preview call for the smiley example's 256 px canvas (the page sends PNG), t0 = 0.5, seed 0."""
    import io

    from PIL import Image

    from sdedit.studio.previews import PreviewRequest, PreviewSettings

    canvas = Image.open(REPO / "examples" / "strokes-smiley.png").convert("RGB").resize((256, 256))
    buf = io.BytesIO()
    canvas.save(buf, "PNG")
    return PreviewRequest("benchmark-visitor", 0, buf.getvalue(), None, PreviewSettings(None, 0.5, 0))


def time_preview(pipe, sampler: str, evaluations: int, repeats: int) -> dict:
    """The live path's compute for one 256 px canvas (the smiley example) on `pipe` as given (pass
    `previews.preview_pipeline(pipe)` for what the app's previews run on), ms: median and best of `repeats`."""
    from sdedit.studio.previews import compute_previews

    request = smiley_request()
    compute_previews([request], pipe=pipe, sampler=sampler, evaluations=evaluations)  # warm
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        (res,) = compute_previews([request], pipe=pipe, sampler=sampler, evaluations=evaluations)
        times.append((time.perf_counter() - t0) * 1000)
        assert res.error is None, res.error
    return {"median_ms": statistics.median(times), "best_ms": min(times), "runs": len(times)}


def run_quality(num_guides: int, repeats: int, seed: int = 0) -> dict:
    from sdedit.lab.data import load_image_set
    from sdedit.lab.evaluate import split_held_out
    from sdedit.lab.features import load_feature_net
    from sdedit.lab.metrics import kid, l2_distances, stroke_versions
    from sdedit.pipeline import load_default
    from sdedit.strokes import default_median_size
    from sdedit.studio.previews import preview_pipeline

    t_begin = time.perf_counter()
    load_start = load_average()
    pipe = load_default()
    pipe.set_progress_bar_config(disable=True)
    fast = preview_pipeline(pipe)  # the previews' network (bf16 where native); Generate's row keeps `pipe`
    fast.set_progress_bar_config(disable=True)
    held = load_image_set("fluent-emoji-3d", resolution=pipe.config.resolution).subset(held_out=True)
    idx_a, idx_b = split_held_out(held.names, held.categories, seed)
    rng = np.random.default_rng(seed)
    guides_idx = idx_a[rng.permutation(len(idx_a))][:num_guides]
    real, ref = held.images[guides_idx], held.images[idx_b]
    strokes = stroke_versions(real, 6, default_median_size(real.shape[1]))
    extractor = load_feature_net()
    feats_b = extractor.features(ref)

    def score(images: np.ndarray) -> dict:
        k = kid(extractor.features(images), feats_b, subsets=100, seed=seed)
        return {"kid": k.mean, "kid_std": k.std, "l2_guide": float(l2_distances(images, strokes).mean())}

    print(f"{len(strokes)} stroke guides, reference B = {len(ref)}; load average {load_start:.1f}", flush=True)
    rows = [{"label": "strokes (t0 = 0)", "evaluations": 0, **score(strokes), "l2_generate": None}]
    generated = edit_all(pipe, strokes, GENERATE[1], GENERATE[2], seed)
    gen_row = {"label": GENERATE[0], "sampler": GENERATE[1], "evaluations": GENERATE[2], "resolution": 64}
    gen_row.update(
        score(generated), l2_generate=0.0, **time_preview(pipe, GENERATE[1], GENERATE[2], max(3, repeats // 3))
    )
    print(f"  {GENERATE[0]}: KID {gen_row['kid']:.3f} L2 {gen_row['l2_guide']:.2f} {gen_row['median_ms']:.0f} ms")
    for label, sampler, evals, res in CANDIDATES:
        cpipe = candidate_pipe(fast, res)
        images = edit_all(cpipe, strokes, sampler, evals, seed)
        row = {"label": label, "sampler": sampler, "evaluations": evals, "resolution": res, **score(images)}
        row["l2_generate"] = float(l2_distances(images, generated).mean())
        row.update(time_preview(cpipe, sampler, evals, repeats))
        rows.append(row)
        print(
            f"  {label}: KID {row['kid']:.3f} ± {row['kid_std']:.3f}, L2 {row['l2_guide']:.2f}, "
            f"L2 to Generate {row['l2_generate']:.2f}, {row['median_ms']:.0f} ms (best {row['best_ms']:.0f})",
            flush=True,
        )
    rows.append(gen_row)
    chosen = choose(rows)
    return {
        "rows": rows,
        "preview_dtype": str(fast.dtype).replace("torch.", ""),
        "chosen": chosen["label"],
        "budget_met": pooled_ms(rows, chosen) <= BUDGET_MS,
        "num_guides": len(strokes),
        "reference": len(ref),
        "load_start": load_start,
        "load_end": load_average(),
        "seconds": time.perf_counter() - t_begin,
        "env": environment(),
        "repeats": repeats,
    }


def retime(r: dict, repeats: int) -> dict:
    """Time every candidate of a finished --quality run again (KID and L2 are deterministic and kept)."""
    from sdedit.pipeline import load_default
    from sdedit.studio.previews import preview_pipeline

    pipe = load_default()
    pipe.set_progress_bar_config(disable=True)
    fast = preview_pipeline(pipe)
    r.setdefault("quality_when", r["env"]["when"])
    r["load_start"] = load_average()
    for row in r["rows"]:
        if row.get("resolution"):
            cpipe = pipe if row["label"] == GENERATE[0] else candidate_pipe(fast, row["resolution"])
            row.update(time_preview(cpipe, row["sampler"], row["evaluations"], repeats))
            print(f"  {row['label']}: {row['median_ms']:.0f} ms (best {row['best_ms']:.0f})", flush=True)
    r["load_end"], r["repeats"], r["env"] = load_average(), repeats, environment()
    r["retimed"] = True
    chosen = choose(r["rows"])
    r["chosen"], r["budget_met"] = chosen["label"], pooled_ms(r["rows"], chosen) <= BUDGET_MS
    return r


def cost(r: dict) -> float:
    """Network work of a candidate: evaluations x pixels, in 64 px evaluations."""
    return r["evaluations"] * (r["resolution"] / 64) ** 2


def candidates_of(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r.get("resolution") and not r["label"].startswith("Generate")]


def pooled_ms(rows: list[dict], r: dict) -> float:
    """The median of the median compute times of the candidates that cost what `r` costs."""
    return statistics.median(c["median_ms"] for c in candidates_of(rows) if cost(c) == cost(r))


def more_real(rows: list[dict], by_std: bool = False) -> list[dict]:
    """The candidates with a lower KID than the strokes' (`by_std`: lower by more than the strokes' KID std)."""
    strokes = rows[0]
    bar = strokes["kid"] - (strokes["kid_std"] if by_std else 0.0)
    return [r for r in candidates_of(rows) if r["kid"] < bar]


def choose(rows: list[dict]) -> dict:
    """The rule (written out in quality_markdown): more real than the strokes, then the budget, then closest to
    Generate.

    Candidates of equal cost run the same network work, so their timings differ only by noise (on a shared
    machine, a lot): whether a cost fits the budget is decided by `pooled_ms`, and L2 to Generate within 0.1 is
    a tie, settled for Generate's own sampler."""
    realistic = more_real(rows)
    if not realistic:
        raise ValueError("no preview candidate is more realistic than the strokes: nothing to choose")
    fits = [r for r in realistic if pooled_ms(rows, r) <= BUDGET_MS]
    if fits:
        return min(fits, key=lambda r: (round(r["l2_generate"], 1), r["sampler"] != GENERATE[1], cost(r)))
    # the cheapest; equal cost: the one closer to Generate, then Generate's own sampler
    return min(realistic, key=lambda r: (cost(r), round(r["l2_generate"], 1), r["sampler"] != GENERATE[1]))


def strict_note(rows: list[dict], chosen: dict) -> str:
    """What the rule's first step as it stood before 2026-12-02 (a KID lower than the strokes' by more than its
    std) says of the chosen candidate, and what it would pick instead."""
    strict = more_real(rows, by_std=True)
    if chosen in strict:
        return "The chosen preview is also more real than the strokes by more than their KID's std."
    strokes = rows[0]
    bar = strokes["kid"] - strokes["kid_std"]
    if not strict:
        return f"No candidate is more real than the strokes by more than their KID's std ({bar:.3f})."
    cheapest = min(strict, key=lambda r: (cost(r), round(r["l2_generate"], 1), r["sampler"] != GENERATE[1]))
    return (
        f"It is not more real than the strokes by more than their KID's std ({chosen['kid']:.3f} against "
        f"{strokes['kid']:.3f} − {strokes['kid_std']:.3f} = {bar:.3f}); the cheapest candidate that is, "
        f"{cheapest['label']}, takes {pooled_ms(rows, cheapest):.0f} ms, over the {BUDGET_MS:.0f} ms budget."
    )


QUALITY_INTRO = (
    "Measured {when} by `OMP_NUM_THREADS=1 python -m benchmarks.live_latency --quality` ({minutes:.1f} min): "
    "{num_guides} held-out stroke guides (the protocol above{fewer}), realism reference B = {reference}, t0 = 0.5, "
    "seed + i for guide i in every row. Compute: the live path "
    "(`sdedit.studio.previews.compute_previews`: the 256 px canvas PNG decoded, prepared, the forward, composited, "
    "JPEG) on one canvas, median (best) of {repeats} runs, {threads} torch thread on {cores} cores ({machine}), "
    "torch {torch}. The candidates run on the previews' network ({dtype} weights in channels-last order where the "
    "CPU computes bf16 natively, `previews.preview_pipeline`; the sampler in float32), Generate's row on its float32 "
    "network; every row follows the model's x0 clipping (the pipeline's default). {load}.{retimed}"
)
QUALITY_RETIMED = (
    " The compute column was timed again, alone, at {when} (KID and L2 are from the run of {quality_when})."
)
QUALITY_HEAD = (
    "| candidate | evaluations | resolution | KID (realism) | L2 to guide (faithfulness) "
    "| L2 to Generate, same seed | compute ms, median (best) |\n"
    "|---|---:|---:|---:|---:|---:|---:|"
)
QUALITY_RULE = (
    "**The rule.** (1) A preview must look more real than the strokes themselves: a lower KID than theirs. (2) Of "
    "those, the ones whose median compute fits the {budget:.0f} ms budget; among them, the one closest to what "
    "Generate will give with the same seed (lowest *L2 to Generate*: a preview is a promise of the result). (3) If "
    "none fits the budget on this machine, the cheapest candidate of (1) (fewest evaluations x pixels; equal costs: "
    "the one closer to Generate, then Generate's own sampler). Candidates of equal cost do the same network work, "
    "so their timings differ only by noise: whether a cost fits is decided by the median of its candidates' "
    "medians, and L2 to Generate within 0.1 is a tie, settled for Generate's own sampler. **Chosen: {chosen}** "
    "(`sdedit/studio/previews.py`: `PREVIEW_SAMPLER`, `PREVIEW_EVALUATIONS`){how}. Generate keeps its own "
    "settings: the preview shows where the picture is going, Generate gives the full-quality samples. {strict}"
)
QUALITY_BY_STEP_3 = ", by step (3): on this loaded machine no realistic candidate fit {budget:.0f} ms"


def quality_markdown(r: dict) -> str:
    """docs/quality.md's `live-quality` section from benchmarks/results/live-quality.json."""

    def ms(row) -> str:
        if row.get("median_ms") is None:
            return "–"
        return f"{row['median_ms']:.0f} ({row['best_ms']:.0f})"

    env = r["env"]
    retimed = QUALITY_RETIMED.format(when=env["when"], quality_when=r.get("quality_when")) if r.get("retimed") else ""
    intro = QUALITY_INTRO.format(
        when=env["when"],
        minutes=r["seconds"] / 60,
        num_guides=r["num_guides"],
        fewer=", fewer guides" if r["num_guides"] < 128 else "",
        reference=r["reference"],
        repeats=r["repeats"],
        threads=env["threads"],
        cores=env["cores"],
        machine=env["machine"],
        torch=env["torch"],
        dtype=r.get("preview_dtype", "float32"),
        load=load_words(r["load_start"], r["load_end"]).capitalize(),
        retimed=retimed,
    )
    lines = [intro, "", QUALITY_HEAD]
    for row in r["rows"]:
        mark = " **← preview**" if row["label"] == r["chosen"] else ""
        res = f"{row['resolution']} px" if row.get("resolution") else "–"
        l2g = "–" if row.get("l2_generate") is None else f"{row['l2_generate']:.2f}"
        lines.append(
            f"| {row['label']}{mark} | {row['evaluations']} | {res} | {row['kid']:.3f} ± {row['kid_std']:.3f} | "
            f"{row['l2_guide']:.2f} | {l2g} | {ms(row)} |"
        )
    lines += [
        "",
        QUALITY_RULE.format(
            budget=BUDGET_MS,
            chosen=r["chosen"],
            how="" if r.get("budget_met") else QUALITY_BY_STEP_3.format(budget=BUDGET_MS),
            strict=strict_note(r["rows"], {row["label"]: row for row in r["rows"]}[r["chosen"]]),
        ),
    ]
    rows = {row["label"]: row for row in r["rows"]}
    strokes, chosen, gen = r["rows"][0], rows[r["chosen"]], rows[GENERATE[0]]
    one, small = rows.get("dpmpp, 1 evaluation"), rows.get("dpmpp, 2 evaluations at 32 px")
    notes = [
        f"The chosen preview takes KID from the strokes' {strokes['kid']:.3f} to {chosen['kid']:.3f} (Generate: "
        f"{gen['kid']:.3f}) at the same faithfulness ({chosen['l2_guide']:.2f} vs {gen['l2_guide']:.2f}), and lands "
        f"{chosen['l2_generate']:.2f} (L2) from Generate's picture with the same seed"
    ]
    if one:
        notes.append(
            f"one evaluation is {'no' if one['kid'] >= strokes['kid'] else 'hardly'} more realistic than the "
            f"strokes ({one['kid']:.3f} vs {strokes['kid']:.3f}): a single step from t0 leaves visible grain"
        )
    if small:
        notes.append(
            f"running the 64 px network at 32 px is cheaper but less realistic than the strokes ({small['kid']:.3f}): "
            "it was never trained at that size"
        )
    lines += ["", "; ".join(notes) + ". At two steps DDIM and DPM-Solver++ (2M, first-order last step) coincide."]
    prev = r.get("previous")
    if prev:
        changes = []
        for label in (r["chosen"], GENERATE[0], "dpmpp, 1 evaluation"):
            old, new = prev["rows"].get(label), rows.get(label)
            if old and new and old.get("kid") is not None:
                changes.append(
                    f"{label}: KID {old['kid']:.3f} → {new['kid']:.3f}"
                    + (
                        f", L2 to Generate {old['l2_generate']:.2f} → {new['l2_generate']:.2f}"
                        if old.get("l2_generate") and new.get("l2_generate")
                        else ""
                    )
                )
        lines += [
            "",
            f"**What changed since the previous table** ({prev['when']}, {prev['preview_dtype']} network"
            + (", before x0 clipping was the default" if prev["preview_dtype"] == "float32" else "")
            + "): the rule was applied again to these measurements. "
            + "; ".join(changes)
            + ".",
        ]
    return "\n".join(lines)


# ----- --precision: the preview's network in fp32 and bf16, side by side -------------------------------------


def run_precision(rounds: int) -> dict:
    """fp32 vs bf16 preview compute in one run, interleaved round by round (so load changes hit both alike):
    one network evaluation at batch 1, and the whole live path (`compute_previews`, 2 evaluations); then where
    the bf16 preview's time goes, stage by stage."""
    import torch

    from sdedit.accel import has_bf16_cpu
    from sdedit.imaging import composite, unplace
    from sdedit.pipeline import load_default
    from sdedit.studio import previews

    load_start = load_average()
    pipe = load_default()
    variants = {
        "fp32, Generate's weights": pipe,
        "fp32, channels-last copy": previews.preview_pipeline(pipe, torch.float32),
        "bf16, channels-last copy": previews.preview_pipeline(pipe, torch.bfloat16),
    }
    request = smiley_request()
    x = torch.zeros(1, pipe.unet.config.in_channels, pipe.config.resolution, pipe.config.resolution)
    level = torch.tensor([pipe.num_train_timesteps // 2])
    calls = {name: p.model_fn() for name, p in variants.items()}
    times: dict[str, dict[str, list[float]]] = {name: {"evaluation": [], "preview": []} for name in variants}
    with torch.inference_mode():
        for _ in range(2):  # warm
            for name, p in variants.items():
                calls[name](x, level)
                previews.compute_previews([request], pipe=p)
        for _ in range(rounds):
            for name, p in variants.items():
                t0 = time.perf_counter()
                calls[name](x, level)
                t1 = time.perf_counter()
                (res,) = previews.compute_previews([request], pipe=p)
                t2 = time.perf_counter()
                assert res.error is None, res.error
                times[name]["evaluation"].append((t1 - t0) * 1000)
                times[name]["preview"].append((t2 - t1) * 1000)
    rows = []
    for name, t in times.items():
        rows.append(
            {
                "variant": name,
                "evaluation_ms": statistics.median(t["evaluation"]),
                "evaluation_best_ms": min(t["evaluation"]),
                "preview_ms": statistics.median(t["preview"]),
                "preview_best_ms": min(t["preview"]),
            }
        )
    base = rows[1]
    for row in rows:
        row["preview_ratio"] = row["preview_ms"] / base["preview_ms"]
        row["evaluation_ratio"] = row["evaluation_ms"] / base["evaluation_ms"]
    # where the bf16 preview's time goes (the steps of compute_previews, timed one by one)
    fast = variants["bf16, channels-last copy"]
    checked = fast.check_inputs(strength=0.5, num_inference_steps=previews.preview_steps(0.5), sampler="dpmpp", snr=0.0)
    stage_times: dict[str, list[float]] = {"decode the canvas PNG": [], "prepare": [], "run (2 evaluations)": []}
    stage_times.update({"map back (Lanczos to 256 px) + composite": [], "JPEG": []})
    for _ in range(rounds):
        t = [time.perf_counter()]
        guide = previews._image(request.guide, "canvas").convert("RGB")
        t.append(time.perf_counter())
        g = fast.prepare(guide, None, checked.fit)
        t.append(time.perf_counter())
        samples = fast.run([g], checked, seeds=[request.seed])
        t.append(time.perf_counter())
        rgb = composite(g.rgb, unplace(samples.canvases[0], g.placement, g.rgb), g.mask)
        t.append(time.perf_counter())
        previews._jpeg(rgb)
        t.append(time.perf_counter())
        for values, a, b in zip(stage_times.values(), t[:-1], t[1:], strict=True):
            values.append((b - a) * 1000)
    return {
        "rows": rows,
        "stages": {k: statistics.median(v) for k, v in stage_times.items()},
        "native_bf16": has_bf16_cpu(),
        "preview_dtype": str(previews.preview_dtype(pipe)).replace("torch.", ""),
        "rounds": rounds,
        "load_start": load_start,
        "load_end": load_average(),
        "env": environment(),
    }


def precision_markdown(r: dict) -> str:
    b16 = r["rows"][2]
    lines = [
        "### The preview's network: fp32 and bf16 side by side",
        "",
        f"Measured {r['env']['when']} by `OMP_NUM_THREADS=1 python -m benchmarks.live_latency --precision`: "
        f"{r['rounds']} rounds, each timing every variant once (one network evaluation at batch 1, then the "
        "whole live path `compute_previews` on the smiley's 256 px canvas, 2 evaluations at t0 = 0.5), medians "
        f"(best); {r['env']['threads']} torch thread on {r['env']['cores']} cores ({r['env']['machine']}), torch "
        f"{r['env']['torch']}; native bf16 on this CPU: {'yes' if r['native_bf16'] else 'no'}, so previews run in "
        f"**{r['preview_dtype']}**. {load_words(r['load_start'], r['load_end']).capitalize()}; the ratios, measured "
        "side by side, are the result.",
        "",
        "| network | one evaluation, ms | ratio | preview compute, ms | ratio |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in r["rows"]:
        lines.append(
            f"| {row['variant']} | {row['evaluation_ms']:.1f} ({row['evaluation_best_ms']:.1f}) | "
            f"{row['evaluation_ratio']:.2f} | {row['preview_ms']:.1f} ({row['preview_best_ms']:.1f}) | "
            f"{row['preview_ratio']:.2f} |"
        )
    total = sum(r["stages"].values())
    lines += [
        "",
        f"bf16 takes the preview to **{b16['preview_ratio']:.2f}x** the fp32 channels-last time "
        f"({b16['preview_ms']:.0f} ms median; target {BUDGET_MS:.0f} ms: "
        f"{'met' if b16['preview_ms'] <= BUDGET_MS else 'not met'} in this run). Where the bf16 preview's "
        f"{total:.0f} ms go (medians of the steps timed one by one):",
        "",
        "| step | ms |",
        "|---|---:|",
        *[f"| {k} | {v:.1f} |" for k, v in r["stages"].items()],
    ]
    return "\n".join(lines)


# ----- latency in real Chromium -----------------------------------------------------------------------------

_RECORDER = """() => {
  const img = document.querySelector('#paint-editor .sdl-preview img');
  window.__ups = []; window.__loads = [];
  window.addEventListener('pointerup', () => window.__ups.push(performance.now()), true);
  img.addEventListener('load', () => window.__loads.push(performance.now()));
}"""


def run_latency(strokes: int, generates: int) -> dict:
    sys.path.insert(0, str(REPO))
    from playwright.sync_api import sync_playwright

    from tests.app_server import running_app
    from tests.browser_utils import CHROMIUM, CHROMIUM_ARGS, LAPTOP, image_to_page, open_app

    load_start = load_average()
    out: dict = {"env": environment(), "load_start": load_start, "strokes": []}
    with running_app() as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = open_app(browser, url, LAPTOP)
        page.wait_for_function("() => document.querySelector('#paint-editor .sdl-live input').checked", timeout=60_000)
        page.evaluate(_RECORDER)
        to_page = image_to_page(page, "paint-editor", (256, 256))
        rng = np.random.default_rng(0)
        # one warm-up stroke (the first forward pays for lazy set-up), not counted
        for i in range(strokes + 1):
            x0, y0 = rng.uniform(40, 216, 2)
            x1, y1 = np.clip([x0 + rng.uniform(-60, 60), y0 + rng.uniform(-60, 60)], 20, 236)
            page.mouse.move(*to_page(x0, y0))
            page.mouse.down()
            page.mouse.move(*to_page(x1, y1), steps=6)
            n_loads = page.evaluate("() => window.__loads.length")
            page.mouse.up()
            page.wait_for_function(f"() => window.__loads.length > {n_loads}", timeout=30_000)
            up = page.evaluate("() => window.__ups[window.__ups.length - 1]")
            load = page.evaluate("() => window.__loads[window.__loads.length - 1]")
            info = page.evaluate(
                "() => JSON.parse(document.querySelector('#paint-editor .sdl-preview').dataset.last || '{}')"
            )
            if i:
                out["strokes"].append(
                    {"ms": load - up, "compute_ms": info.get("compute_ms"), "wait_ms": info.get("wait_ms")}
                )
            time.sleep(0.4)
        lat = [s["ms"] for s in out["strokes"]]
        out["median_ms"], out["p90_ms"] = statistics.median(lat), float(np.percentile(lat, 90))
        out["min_ms"], out["max_ms"] = min(lat), max(lat)
        comp = [s["compute_ms"] for s in out["strokes"] if s["compute_ms"] is not None]
        out["compute_median_ms"] = statistics.median(comp) if comp else None
        # Generate on the same canvas, for comparison: click -> first result shown
        gens = []
        for _ in range(generates):
            before = (
                page.locator("#gallery img").first.get_attribute("src")
                if page.locator("#gallery img").count()
                else None
            )
            t0 = time.perf_counter()
            page.click("#generate")
            page.wait_for_function(
                "(b) => { const i = document.querySelector('#gallery img'); return i && i.getAttribute('src') !== b; }",
                arg=before,
                timeout=120_000,
            )
            gens.append((time.perf_counter() - t0) * 1000)
            time.sleep(0.5)
        out["generate_ms"] = gens
        out["generate_median_ms"] = statistics.median(gens) if gens else None
        browser.close()
    out["load_end"] = load_average()
    return out


def _latency_command(env: dict) -> str:
    """The command that took a latency record (records before the per-edit policy ran on one fixed thread)."""
    command = "python -m benchmarks.live_latency"
    return command if "policy" in env else f"OMP_NUM_THREADS=1 {command}"


def _threads_words(env: dict) -> str:
    return env["policy"] if "policy" in env else f"{env['threads']} torch thread(s), {env['cores']} cores"


def latency_markdown(r: dict) -> str:
    lat = sorted(s["ms"] for s in r["strokes"])
    met = "**met**" if r["median_ms"] <= TARGET_MS else "**not met**"
    comp_met = ""
    if r.get("compute_median_ms") is not None:
        comp_met = "met" if r["compute_median_ms"] <= BUDGET_MS else "not met"
    return "\n".join(
        [
            f"Measured {r['env']['when']} by `{_latency_command(r['env'])}`: the app "
            f"in-process ({_threads_words(r['env'])}; {r['env']['machine']}, torch {r['env']['torch']}), Debian's "
            f"Chromium through Playwright, laptop viewport, the Paint tab with Live on, {len(lat)} strokes (one "
            f"warm-up stroke not counted). {load_words(r['load_start'], r['load_end']).capitalize()}.",
            "",
            "| | median | p90 | min | max | target |",
            "|---|---:|---:|---:|---:|---|",
            f"| mouse-up → preview image updated, ms | {r['median_ms']:.0f} | {r['p90_ms']:.0f} | "
            f"{r['min_ms']:.0f} | {r['max_ms']:.0f} | ≤ {TARGET_MS:.0f} median: {met} |",
            "| of which the preview's compute on the server, ms | "
            + (f"{r['compute_median_ms']:.0f}" if r.get("compute_median_ms") is not None else "–")
            + f" | | | | ≤ {BUDGET_MS:.0f}: {comp_met} |",
            f"| Generate (click → first result shown, {len(r['generate_ms'])} runs), ms | "
            + (f"{r['generate_median_ms']:.0f}" if r.get("generate_median_ms") else "–")
            + " | | "
            + (f"{min(r['generate_ms']):.0f} | {max(r['generate_ms']):.0f}" if r["generate_ms"] else "– | –")
            + " | – |",
            "",
            "All strokes, ms: " + ", ".join(f"{v:.0f}" for v in lat) + ".",
            "",
            "The run was on the CPU: the target of at least 10 previews/s end to end for a 256 px Hub architecture "
            "on a GPU is not measured by it.",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quality", action="store_true", help="the preview candidates' KID / L2 / compute table")
    p.add_argument("--guides", type=int, default=64, help="stroke guides for --quality (default 64)")
    p.add_argument("--repeats", type=int, default=15, help="timed runs per candidate for --quality")
    p.add_argument("--strokes", type=int, default=20)
    p.add_argument("--generates", type=int, default=5)
    p.add_argument("--no-docs", action="store_true", help="print, do not write docs/")
    p.add_argument("--render", action="store_true", help="rewrite the docs from the last results JSON")
    p.add_argument("--retime", action="store_true", help="with --quality: time the candidates again, keep KID/L2")
    p.add_argument("--precision", action="store_true", help="the preview's network in fp32 and bf16, side by side")
    p.add_argument("--rounds", type=int, default=30, help="interleaved rounds for --precision")
    args = p.parse_args(argv)
    from sdedit.threads import apply

    apply()
    if args.precision:
        saved = RESULTS / "live-precision.json"
        r = json.loads(saved.read_text()) if args.render else run_precision(args.rounds)
        publish(r, saved, precision_markdown(r), "live-precision", not args.no_docs)
        return 0
    if args.quality:
        if args.retime:  # the same rows, their compute timed again (e.g. when the machine is quieter)
            r = retime(json.loads((RESULTS / "live-quality.json").read_text()), args.repeats)
        elif args.render:
            r = json.loads((RESULTS / "live-quality.json").read_text())
            chosen = choose(r["rows"])
            r["chosen"], r["budget_met"] = chosen["label"], pooled_ms(r["rows"], chosen) <= BUDGET_MS
        else:
            before = RESULTS / "live-quality.json"
            r = run_quality(args.guides, args.repeats)
            if before.exists():  # what changed since the previous measurement, for the docs
                old = json.loads(before.read_text())
                r["previous"] = {
                    "when": old.get("quality_when") or old["env"]["when"],
                    "preview_dtype": old.get("preview_dtype", "float32"),
                    "rows": {row["label"]: {k: row.get(k) for k in ("kid", "l2_generate")} for row in old["rows"]},
                }
        publish(r, RESULTS / "live-quality.json", quality_markdown(r), "live-quality", not args.no_docs)
        return 0
    r = run_latency(args.strokes, args.generates)
    publish(r, RESULTS / "live-latency.json", latency_markdown(r), "live-latency", not args.no_docs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
