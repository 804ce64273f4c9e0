"""The evaluation's report: a run's record (results.json) rendered as markdown, and the files of a run.

Every function that renders takes a record and nothing else (`EvalRecord`, or the results.json dict for the
sections registered in `sdedit.lab.records`), so a page can be rendered again, and checked, from the committed
record alone: `quality` (docs/quality.md), `x0-clipping` (docs/quality.md, this run next to one with
`--x0-limit off`), `few-step` (docs/performance.md) and `readme-quality` (README.md).
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

from ..sweep import DEFAULT_STRENGTHS
from .evaluate import CSV_FIELDS, DEFAULT_SAMPLERS, EvalRecord, EvalResult, EvalSettings

WHY_FEATURES = """\
KID needs an image embedding. The standard one, Inception-v3 (ImageNet, 299 px photos), needs a download
that is impossible offline, and it would judge 64 px emoji through features made for photos. As FID for
MNIST uses a digit classifier, we use a classifier of our own domain: `EmojiFeatureNet`, a small CNN (its card
has its size and training time) trained on one CPU thread on the *training split only*, to tell the ten
Unicode emoji groups apart, plus an auxiliary exemplar task (which of ~1,700 emoji is it)
that makes it attend to the fine detail and shading that strokes, blur and noise destroy. Its augmentations
are flips and small shifts only: never blur or noise, so its features stay sensitive to both, and no colour
jitter, so outputs that keep the guide's colours in broken shapes do not pass for real (a jittered network
lets them; "Does the realism metric rank t0 as a person does?" below). KID
uses its penultimate layer: 256 global-average-pooled conv features. The held-out images it is evaluated on
are new to it too. The table below checks that the metric does separate real images from degraded ones.
Its weights, card and retraining command are in `models/emoji-features/`."""
IMAGES = ("tradeoff.png", "samplers.png", "samples.png", "samples_samplers.png")
SAMPLER_IMAGES = ("samplers.png", "samples_samplers.png")  # not made (nor published) by --sweep-only


# ----- the files of a run ---------------------------------------------------------------------------------
def write_outputs(result: EvalResult, out: str | Path) -> list[Path]:
    """results.csv/json/md and the PNGs into `out`; returns the paths written."""
    from .eval_plots import plot_samplers, plot_tradeoff, sampler_sheet, tradeoff_sheet

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "results.csv", out / "results.json", out / "results.md"]
    with open(paths[0], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        for r in result.rows:
            w.writerow({k: _csv_value(r.get(k, "")) for k in CSV_FIELDS})
    paths[1].write_text(json.dumps(result.to_json(), indent=2, default=float) + "\n")
    plot_tradeoff(result).save(out / "tradeoff.png")
    tradeoff_sheet(result).save(out / "samples.png")
    if result.section("samplers"):
        plot_samplers(result).save(out / "samplers.png")
        sampler_sheet(result).save(out / "samples_samplers.png")
    paths += [out / name for name in made_images(result)]
    paths[2].write_text(render_markdown(result) + "\n")
    return paths


def made_images(result: EvalRecord) -> tuple[str, ...]:
    """The figures this run makes: a --sweep-only run makes no sampler figures."""
    return IMAGES if result.section("samplers") else tuple(n for n in IMAGES if n not in SAMPLER_IMAGES)


def publish_figures(result: EvalRecord, out: str | Path, img: str | Path) -> list[Path]:
    """Copy the run's figures from `out` to `img`/quality-*.png (docs/img/ for docs/quality.md)."""
    img = Path(img)
    img.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in made_images(result):
        copied.append(Path(shutil.copyfile(Path(out) / name, img / f"quality-{name}")))
    return copied


# ----- rendering ------------------------------------------------------------------------------------------
def _csv_value(v):
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


def _kid(r: dict, key: str = "kid") -> str:
    """KID with its std over subsets, unscaled (the usual x1000 suits Inception's features, not these)."""
    if r.get(key, "") == "":
        return ""
    return f"{r[key]:.3f} ± {r[key + '_std']:.3f}"


def render_markdown(result: EvalRecord, image_dir: str = "", image_prefix: str = "") -> str:
    """The whole report of one run (its results.md): a title, then what `render_quality` publishes."""
    title = "# Realism and faithfulness: SDEdit on held-out stroke paintings"
    return f"{title}\n\n{_body(result, image_dir + image_prefix, out='OUT/', docs=False)}"


def render_quality(results: dict) -> str:
    """docs/quality.md's `quality` section from eval/results.json."""
    note = (
        "*Rendered from `eval/results.json` by the evaluation that measured it (the command is at the end of this"
        " section); `python -m sdedit.lab.records quality` renders it again from the record.*"
    )
    return f"{note}\n\n{_body(EvalRecord.from_json(results), 'img/quality-', out='eval/', docs=True)}"


def _body(result: EvalRecord, image_path: str, out: str, docs: bool) -> str:
    info, s = result.info, result.settings
    img = lambda name: f"{image_path}{name}"  # noqa: E731
    floor = result.row("sanity", "real (floor)")
    lines = [
        f"Model **{info['model']}** ({info['resolution']} px"
        + (f", `{info['model_source']}`" if info["model_source"] else "")
        + f"), {info['date']}. "
        f"{info['guides']} stroke guides; realism reference B = {info['split_b']} held-out images. "
        f"Run time {info['seconds'] / 60:.1f} min, {info['model_evaluations']:,} model evaluations on "
        f"{info['machine']} ({info['device']}, {info['dtype']}, {info['threads']} thread(s), torch {info['torch']}"
        + _load_words(info)
        + ")"
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
        lines += ["## Samplers", "", "Not measured in this run (`--sweep-only`).", ""]
        return "\n".join(lines + _unconditional_and_reproduce(result, floor, out, docs))
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
    return "\n".join(lines + _unconditional_and_reproduce(result, floor, out, docs))


def _unconditional_and_reproduce(result: EvalRecord, floor: dict | None, out: str, docs: bool) -> list[str]:
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
        eval_command(result, out, docs),
        "```",
    ]
    return lines


def _t0(r: dict) -> str:
    return "0 (strokes)" if r["strength"] == 0.0 else f"{r['strength']:g}"


def _ab_twins(info: dict) -> str:
    return "" if info["split"] != "emoji-v1" else " (under `emoji-v1` a gender variant of a guide may be in B)"


def _twin_table(result: EvalRecord) -> list[str]:
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


def tradeoff_summary(result: EvalRecord) -> str:
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


def _load_words(info: dict) -> str:
    """', load average a -> b' where the record has the machine's load (older records do not)."""
    if info.get("load_avg_begin") is None:
        return ""
    return f", load average {info['load_avg_begin']:.1f} at the start, {info['load_avg_end']:.1f} at the end"


def eval_command(result: EvalRecord, out: str = "eval/", docs: bool = True) -> str:
    """The command line that repeats this run (and, with `docs`, publishes it)."""
    s, info = result.settings, result.info
    cmd = f"python -m sdedit eval --threads {info['threads']} --model {info['model']} --out {out}"
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
    if tuple(s.strengths) != tuple(DEFAULT_STRENGTHS):
        cmd += " --strengths " + ",".join(f"{t:g}" for t in s.strengths)
    if not s.sweep_only and tuple(s.samplers) != tuple(DEFAULT_SAMPLERS):
        cmd += " --samplers " + ",".join(s.samplers)
    return cmd + (" --docs" if docs else "")


def _fmt(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}f}"


def _default_label(info: dict) -> str:
    return info.get("default_sampler") or f"{info['sweep_sampler']}/{info['sweep_steps']}"


def few_step_rule(result: EvalRecord) -> dict:
    """The few-step rule on a run's sampler comparison: the fewest-evaluation setting whose paired KID is at most
    the reference loop's plus the real-vs-real floor (the KID this evaluation cannot tell from zero)."""
    rows = result.section("samplers")
    ref = next(r for r in rows if r["sampler"] == "reference")
    floor = result.row("sanity", "real (floor)")["kid"]
    threshold = ref["kid_paired"] + floor
    fast = [r for r in rows if r["sampler"] != "reference"]
    within = [r for r in fast if r["kid_paired"] <= threshold]
    pick = min(within, key=lambda r: (r["model_evaluations"], r["kid_paired"])) if within else None
    default = next((r for r in fast if r["label"] == _default_label(result.info)), None)
    return {"reference": ref, "floor": floor, "threshold": threshold, "fast": fast, "pick": pick, "default": default}


def render_few_step(results: dict) -> str:
    """docs/performance.md's `few-step` section: every sampler of the comparison against the few-step rule."""
    result = EvalRecord.from_json(results)
    if not any(r["sampler"] == "reference" for r in result.section("samplers")):
        return f"Not measured by the run of {result.info['date']} (no reference loop in its sampler comparison)."
    info, rule = result.info, few_step_rule(result)
    ref, pick, default, thr = rule["reference"], rule["pick"], rule["default"], rule["threshold"]
    lines = [
        f"From `eval/results.json` ({info['date']}, the run at the top of docs/quality.md): t0 ="
        f" {result.settings.compare_strength:g}, paired KID on the {info['reference_guides']} guides the reference"
        f" loop ran on, KID on all {info['guides']}. Threshold: {_fmt(ref['kid_paired'])} (the reference's paired"
        f" KID) + {_fmt(rule['floor'])} (the real-vs-real floor) = **{_fmt(thr)}**.",
        "",
        f"| sampler | N (full schedule) | evaluations at t0 = {result.settings.compare_strength:g} "
        f"| KID paired (n = {info['reference_guides']}) | KID (n = {info['guides']}) | L2 to guide (paired) "
        "| within the threshold? |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in result.section("samplers"):
        is_ref, is_default = r is ref, r is default
        if is_ref:
            verdict = "the reference"
        elif r["kid_paired"] <= thr:
            verdict = f"yes, by {_fmt(thr - r['kid_paired'])}" + (": the rule's pick" if r is pick else "")
        else:
            verdict = f"no, by {_fmt(r['kid_paired'] - thr)}"
        if is_default:
            verdict += " (the default)"
        cells = [
            r["sampler"] + (" (official)" if is_ref else ""),
            str(r["num_inference_steps"]),
            str(r["model_evaluations"]),
            _fmt(r["kid_paired"]),
            "–" if is_ref and r["n"] == r["n_paired"] else _fmt(r["kid"]),
            f"{r['l2_to_guide_paired']:.2f}",
            verdict,
        ]
        if is_default:
            cells = [f"**{c}**" for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    t0 = result.settings.compare_strength
    later = [r for r in rule["fast"] if abs(r["steps"] / r["num_inference_steps"] - t0) > 1e-9]
    if later:
        lines += [
            "",
            "A schedule that t0 does not split into whole steps starts the edit at another t0: "
            + "; ".join(
                f"{r['label']} runs round({t0:g} × {r['num_inference_steps']}) = {r['steps']} steps, from"
                f" t0 = {r['steps'] / r['num_inference_steps']:g}"
                for r in later
            )
            + ". Less noise keeps more of the guide: that, not chance, is why its L2 to the guide is lower.",
        ]
    if pick is not None and default is not None and pick is not default:
        lines += [
            "",
            f"The rule picks {pick['label']} ({pick['model_evaluations']} evaluations, paired KID"
            f" {_fmt(pick['kid_paired'])}); the default {default['label']} ({default['model_evaluations']}"
            f" evaluations, {_fmt(default['kid_paired'])}) is {_within_words(default, thr)}. Over all"
            f" {info['guides']} guides the pick's KID is {_fmt(default['kid'] - pick['kid'])} lower than the"
            f" default's, against a spread of ± {_fmt(default['kid_std'])}.",
        ]
    return "\n".join(lines)


def _within_words(r: dict, threshold: float) -> str:
    gap = r["kid_paired"] - threshold
    return f"over the threshold by {_fmt(gap)}" if gap > 0 else f"within it by {_fmt(-gap)}"


def render_readme(results: dict) -> str:
    """README.md's `readme-quality` section: what the evaluation's numbers say, in a paragraph."""
    result = EvalRecord.from_json(results)
    info = result.info
    rows = result.section("tradeoff")
    strokes = rows[0]
    edits = [r for r in rows if r["strength"] != 0.0]
    by_t = {round(r["strength"], 3): r for r in edits}
    best = min(edits, key=lambda r: r["kid"])
    floor = result.row("sanity", "real (floor)")
    noise = result.row("sanity", "noise (sigma=0.1)")
    uncond = result.section("unconditional")[-1]
    others = [by_t[t] for t in (0.3, 0.7, 0.9) if t in by_t and by_t[t] is not best]
    realer = [r for r in edits if r["kid"] + r["kid_std"] < strokes["kid"] - strokes["kid_std"]]
    ident = [by_t[t] for t in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8) if t in by_t]
    useful = [r for r in realer if r["identity_acc"] != "" and r["identity_acc"] >= 0.5]
    text = (
        f"What the numbers say ({info['guides']} held-out stroke paintings, {info['sweep_sampler']} with a"
        f" {info['sweep_steps']}-step schedule): the strokes score KID {_fmt(strokes['kid'])} and real held-out"
        f" emoji {_fmt(floor['kid'])} (the floor). SDEdit brings it lowest at **t0 = {best['strength']:g}"
        f" ({_fmt(best['kid'])})** (L2 to the guide {best['l2_to_guide']:.1f}); "
        + ", ".join(f"{_fmt(r['kid'])} at {r['strength']:g}" for r in others)
        + "."
    )
    if realer:
        verb = "is" if len(realer) == 1 else "are"
        span = _t0_range(realer, edits)
        text += f" Only t0 = {span} {verb} more realistic than the strokes beyond one standard deviation."
    else:
        text += " No t0 is more realistic than the strokes beyond one standard deviation."
    if ident:
        text += (
            " What KID sees weakly, identity accuracy sees sharply (does the output still show the guide's emoji,"
            f" judged by a network trained on other emoji): {_pct(strokes['identity_acc'])} for the strokes, "
            + ", ".join(f"{_pct(r['identity_acc'])} at {r['strength']:g}" for r in ident)
            + "."
        )
    if useful:
        text += (
            f" So the model's useful range is t0 = {_t0_range(useful, edits)}: more realistic than the strokes and at"
            " least half of the outputs still their emoji."
        )
    if any(r["sampler"] == "reference" for r in result.section("samplers")):
        rule = few_step_rule(result)
        ref, default, pick = rule["reference"], rule["default"], rule["pick"]
        if default is not None:
            text += (
                f" The official loop ({ref['model_evaluations']} evaluations) scores a paired KID of"
                f" {_fmt(ref['kid_paired'])} at t0 = {result.settings.compare_strength:g} and the default"
                f" {default['model_evaluations']}-evaluation sampler {_fmt(default['kid_paired'])},"
                f" {ref['model_evaluations'] / default['model_evaluations']:.0f}× cheaper"
            )
            if pick is not None and pick is not default:
                text += (
                    f"; {pick['label']} ({_fmt(pick['kid_paired'])}) is the few-step rule's pick at"
                    f" {pick['model_evaluations'] / default['model_evaluations']:.1f}× the cost"
                )
            text += " ([performance](docs/performance.md))."
    text += (
        f" From pure noise (t0 = 1) KID is {_fmt(uncond['kid'])} against the floor of {_fmt(floor['kid'])}: the"
        f" feature network is very sensitive to fine noise (noise of sigma = 0.1 on real emoji scores"
        f" {noise['kid']:.2f}). Measured {info['date']} (`eval/results.json`, [quality](docs/quality.md))."
    )
    return text


def _t0_range(rows: list[dict], grid: list[dict]) -> str:
    """'0.3-0.5' for t0 values that are a run of neighbours on the sweep's grid, else '0.3, 0.5'."""
    grid_t = sorted(r["strength"] for r in grid)
    ts = sorted(r["strength"] for r in rows)
    if len(ts) == 1:
        return f"{ts[0]:g}"
    first = grid_t.index(ts[0])
    if grid_t[first : first + len(ts)] == ts:
        return f"{ts[0]:g}-{ts[-1]:g}"
    return ", ".join(f"{t:g}" for t in ts)


def _by_setting(record: EvalRecord) -> dict[tuple, dict]:
    """Each fast setting's scores, keyed (sampler, steps, t0); a setting in both the sweep and the sampler
    comparison is one run, so its two rows are merged (the comparison's adds the paired scores)."""
    out: dict[tuple, dict] = {}
    for section in ("tradeoff", "samplers"):
        for r in record.section(section):
            if r["strength"] != 0.0 and r["sampler"] != "reference":
                key = (r["sampler"], r["num_inference_steps"], r["strength"])
                out.setdefault(key, {}).update({k: v for k, v in r.items() if v != ""})
    return out


def render_x0_clipping(on: dict, off: dict) -> str:
    """docs/quality.md's `x0-clipping` table: the same settings with the fast samplers' x0 limit on and off."""
    on_r, off_r = EvalRecord.from_json(on), EvalRecord.from_json(off)
    on_rows, default = _by_setting(on_r), _default_label(on_r.info)
    lines = [
        f"The **on** column is `eval/results.json` ({on_r.info['date']}, the run at the top of this page), the"
        f" **off** column `eval/x0-off/results.json` ({off_r.info['date']}): the same guides, seeds and KID"
        " subsets, so each difference is paired.",
        "",
        "| setting | evaluations per edit | KID off | KID on | on − off | L2 to guide off | L2 to guide on "
        f"| KID paired (n = {on_r.info['reference_guides']}) off → on |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, r_off in _by_setting(off_r).items():
        r_on = on_rows.get(key)
        if r_on is None:
            continue
        name = f"{key[0]}/{key[1]}"
        default_t0 = on_r.info.get("default_strength", on_r.settings.compare_strength)
        notes = ["the default sampler"] if name == default and key[2] == default_t0 else []
        notes += ["unconditional"] if key[2] == 1.0 else []
        label = f"t0 = {key[2]:g}, {name}" + (f" ({', '.join(notes)})" if notes else "")
        paired = (
            f"{_fmt(r_off['kid_paired'])} → {_fmt(r_on['kid_paired'])}"
            if "kid_paired" in r_off and "kid_paired" in r_on
            else "–"
        )
        lines.append(
            f"| {label} | {r_off['model_evaluations']} | {_kid(r_off)} | {_kid(r_on)} "
            f"| {r_on['kid'] - r_off['kid']:+.3f} | {r_off['l2_to_guide']:.2f} | {r_on['l2_to_guide']:.2f} | {paired} |"
        )
    ref = next((r for r in on_r.section("samplers") if r["sampler"] == "reference"), None)
    if ref is not None:
        lines.append(
            f"| t0 = {ref['strength']:g}, {ref['label']} (never clips) | {ref['model_evaluations']} "
            f"| – | – | – | – | – | {_fmt(ref['kid_paired'])} (one run) |"
        )
    lines += [
        "",
        "± is the spread over KID's subsets, as above. The off run:",
        "",
        "```bash",
        eval_command(off_r, "eval/x0-off/", docs=True),
        "```",
    ]
    return "\n".join(lines)
