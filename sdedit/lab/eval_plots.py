"""The evaluation's figures: the trade-off and sampler plots (from a run's record) and its labelled sample sheets."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .evaluate import EvalRecord, EvalResult


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


def plot_tradeoff(result: EvalRecord):
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


def _plot_identity(ax, result: EvalRecord) -> None:
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


def plot_samplers(result: EvalRecord):
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


def labelled_sheet(columns: list[tuple[str, np.ndarray]], cell: int = 128):
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
    return labelled_sheet(cols)


def sampler_sheet(result: EvalResult):
    n = min(len(v) for v in result.sheet_samplers.values()) if result.sheet_samplers else 0
    cols = [("real", result.sheet_real[:n]), ("strokes", result.sheet_strokes[:n])]
    cols += [(label, imgs[:n]) for label, imgs in result.sheet_samplers.items()]
    return labelled_sheet(cols)
