"""The paper's stroke simulator: a photo -> a flat colour-stroke painting.

SDEdit evaluates stroke-based synthesis on simulated strokes (Meng et al. 2022, appendix): a median filter
removes texture and detail, then colour quantisation leaves k flat colours (their Table 4 varies k from 3
to 50). Optional blocky down-sampling makes the strokes coarser still, like a quick sketch. The app uses
the same function as "photo -> painting".
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from .errors import InputError


def default_median_size(side: int) -> int:
    """The paper's 23 px kernel on 256 px images, scaled to the image and made odd (at least 3)."""
    size = max(3, round(side * 23 / 256))
    return size if size % 2 else size + 1


def simulate_strokes(
    image: Image.Image,
    colors: int = 6,
    median_size: int | None = None,
    block: int = 1,
) -> Image.Image:
    """Median filter, then quantise to at most `colors` colours; `block` > 1 also makes it blocky.

    Deterministic: the same image and settings always give the same painting.
    """
    if not 2 <= int(colors) <= 256:
        raise InputError(f"colors must be from 2 to 256, not {colors}")
    if int(block) < 1:
        raise InputError(f"block must be 1 or more, not {block}")
    rgb = image.convert("RGB")
    w, h = rgb.size
    size = default_median_size(min(w, h)) if median_size is None else int(median_size)
    if size < 1 or size % 2 == 0:
        raise InputError(f"median_size must be a positive odd number, not {size}")
    if size > 1:
        rgb = rgb.filter(ImageFilter.MedianFilter(size))
    if block > 1:
        small = rgb.resize((max(1, w // block), max(1, h // block)), Image.BOX)
        rgb = small.resize((w, h), Image.NEAREST)
    # k-means refinement of median-cut: flat regions keep their true colour instead of a box average
    quantised = rgb.quantize(colors=int(colors), method=Image.Quantize.MEDIANCUT, kmeans=3, dither=Image.Dither.NONE)
    return quantised.convert("RGB")


def count_colors(image: Image.Image) -> int:
    a = np.asarray(image.convert("RGB")).reshape(-1, 3)
    return len(np.unique(a, axis=0))
