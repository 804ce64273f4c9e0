"""The t0 sweep: one guide edited at several strengths, as a grid and a faithfulness curve.

This is the paper's Figure 2 for a single guide: small t0 stays close to the guide, large t0 drifts
toward the model's idea of a realistic image. Faithfulness is the paper's L2 distance to the guide
(`l2_distance`: pixels in [0, 1], over the whole image, then averaged over samples). The app's sweep and
`python -m sdedit sweep` both run `run_sweep`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw

from .errors import InputError

if TYPE_CHECKING:  # the pipeline (torch, diffusers) loads with the first sweep, not with DEFAULT_STRENGTHS
    from .pipeline import SDEditPipeline

DEFAULT_STRENGTHS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def l2_distance(a: np.ndarray, b: np.ndarray) -> float:
    """The paper's faithfulness: ||a - b||_2 over the whole image with pixels in [0, 1]."""
    return float(np.linalg.norm(a.astype(np.float64) / 255.0 - b.astype(np.float64) / 255.0))


@dataclass
class SweepResult:
    strengths: list[float]
    images: list[list[Image.Image]]  # [strength][sample]
    l2: list[float]  # mean L2 to the guide per strength
    guide: Image.Image
    metadata: list[dict] = field(default_factory=list)

    def grid(self, cell: int = 128, labels: bool = True) -> Image.Image:
        """Guide on the left, then one column per t0; one row per sample."""
        rows = len(self.images[0])
        cols = len(self.strengths) + 1
        top = 18 if labels else 0
        w, h = self.guide.size
        cw, ch = cell, max(1, round(cell * h / w))
        sheet = Image.new("RGB", (cols * cw, top + rows * ch), (255, 255, 255))
        draw = ImageDraw.Draw(sheet)
        for r in range(rows):
            sheet.paste(self.guide.convert("RGB").resize((cw, ch), Image.LANCZOS), (0, top + r * ch))
            for c, imgs in enumerate(self.images, start=1):
                sheet.paste(imgs[r].resize((cw, ch), Image.LANCZOS), (c * cw, top + r * ch))
        if labels:
            draw.text((4, 3), "guide", fill=(0, 0, 0))
            for c, s in enumerate(self.strengths, start=1):
                draw.text((c * cw + 4, 3), f"t0={s:g}", fill=(0, 0, 0))
        return sheet

    def plot(self, title: str = "") -> Image.Image:
        """Faithfulness (L2 to the guide) against t0, as a PNG-ready image."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(4.8, 3.2), dpi=100)
        ax.plot(self.strengths, self.l2, "o-", color="#3b6ea8")
        ax.set_xlabel("strength t0  (faithful -> realistic)")
        ax.set_ylabel("L2 distance to guide")
        ax.set_title(title or "Faithfulness vs t0", fontsize=10)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        plt.close(fig)
        buf.seek(0)
        return Image.open(buf).convert("RGB")

    def rows(self) -> list[dict]:
        return [{"strength": s, "l2_to_guide": round(d, 4)} for s, d in zip(self.strengths, self.l2, strict=True)]


def parse_strengths(text: str | None) -> list[float]:
    if not text:
        return list(DEFAULT_STRENGTHS)
    try:
        values = [float(v) for v in str(text).replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise InputError(f"strengths must be numbers separated by commas, like 0.2,0.4,0.6; got {text!r}") from None
    if not values:
        raise InputError("give at least one strength")
    return values


def run_sweep(
    pipe: SDEditPipeline,
    image,
    mask_image=None,
    strengths=DEFAULT_STRENGTHS,
    seed: int | None = 0,
    num_images: int = 1,
    max_points: int = 12,
    **kwargs,
) -> SweepResult:
    """Edit `image` once per strength with the same seeds, so columns differ only by t0.

    Args:
        pipe (`SDEditPipeline`): the model.
        image, mask_image: the guide and its mask, as `SDEditPipeline.__call__` takes them.
        strengths (`Sequence[float]`): the t0 values, 1 to `max_points` of them.
        seed (`int`, *optional*): the first sample's seed (the same in every column); None = a random one.
        num_images (`int`): samples per t0.
        max_points (`int`): the most t0 values a sweep takes.
        **kwargs: the rest of `SDEditPipeline.__call__` (sampler, num_inference_steps, fill_outlines, prompt...).

    Returns:
        `SweepResult`: the columns, each column's faithfulness (L2 to the guide) and metadata; `grid()` and
        `plot()` draw them.
    """
    strengths = [float(s) for s in strengths]
    if not 1 <= len(strengths) <= max_points:
        raise InputError(f"a sweep takes 1 to {max_points} strengths, not {len(strengths)}")
    from .noise import seeds_for

    seeds = seeds_for(seed, num_images)
    fit, fill = kwargs.get("fit") or pipe.config.fit, bool(kwargs.get("fill_outlines"))
    guide_rgb = pipe.prepare(image, mask_image if fill else None, fit, fill_outlines=fill).rgb  # what the model got
    columns, l2, metas = [], [], []
    for s in strengths:
        out = pipe(image, mask_image, strength=s, num_images=num_images, seed=seeds, output_type="pil", **kwargs)
        columns.append(out.images)
        l2.append(float(np.mean([l2_distance(np.asarray(im), guide_rgb) for im in out.images])))
        metas.append(out.metadata)
    return SweepResult(strengths, columns, l2, Image.fromarray(guide_rgb), metas)
