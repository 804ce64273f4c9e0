"""SDEdit's two scores: realism (KID against real held-out images) and faithfulness (L2 to the guide).

KID, the Kernel Inception Distance (Binkowski et al., ICLR 2018), is the squared MMD between two feature
sets under the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3. Its estimator is unbiased, so unlike FID it
has no bias that depends on the sample size: small evaluation sets (a few hundred held-out emoji) give
noisy but centred values, ~0 for two samples of the same distribution (it can come out slightly negative).
As in the standard implementations (torch-fidelity, clean-fid), it is averaged over random subsets, and the
spread over those subsets is reported as its standard deviation.

Faithfulness is the paper's L2: the Euclidean distance between guide and output with pixels in [0, 1],
over the whole image (`l2_distance`; the t0 sweep's curve uses it too).

The distortions here (blur, noise, strokes) are the metric's sanity checks: each must score clearly worse
than real images do against other real images.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageFilter

from ..sweep import l2_distance  # the engine's: the app's t0 sweep draws the same faithfulness

__all__ = [
    "KIDResult",
    "add_noise",
    "blur",
    "kid",
    "l2_distance",
    "l2_distances",
    "mmd2_unbiased",
    "polynomial_kernel",
    "stroke_versions",
]


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """KID's kernel (x.y / d + 1)^3, d the feature dimension, for all pairs of rows."""
    d = x.shape[1]
    return (x @ y.T / d + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 between feature sets x (n, d) and y (m, d): the diagonals of k_xx, k_yy are left out."""
    n, m = len(x), len(y)
    if n < 2 or m < 2:
        raise ValueError(f"MMD needs at least 2 samples on each side, got {n} and {m}")
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    term_xx = (k_xx.sum() - np.trace(k_xx)) / (n * (n - 1))
    term_yy = (k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(term_xx + term_yy - 2.0 * k_xy.mean())


@dataclass(frozen=True)
class KIDResult:
    """Mean and standard deviation of the unbiased KID over `subsets` random subsets of `subset_size`."""

    mean: float
    std: float
    subsets: int
    subset_size: int
    n_x: int
    n_y: int

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.mean:.4f} +- {self.std:.4f}"


def default_subset_size(n_x: int, n_y: int, cap: int = 1000) -> int:
    """Half the smaller set (capped at the standard 1000).

    The standard 1000-of-50,000 subsets are small draws from large sets. With a few hundred images, a subset
    as large as the smaller set would reuse that whole set every time, and the spread would ignore its
    sampling noise; half of it keeps every draw different, so the std is an honest (if conservative,
    about sqrt(2) x the full-set estimate's) error bar.
    """
    return max(2, min(cap, min(n_x, n_y) // 2))


def kid(
    x: np.ndarray,
    y: np.ndarray,
    subsets: int = 100,
    subset_size: int | None = None,
    seed: int = 0,
) -> KIDResult:
    """KID between feature sets x (n, d) and y (m, d): unbiased MMD^2 averaged over random subset pairs.

    Each subset draws `subset_size` rows of x and of y without replacement; the mean is unbiased for any
    subset size, which only changes the spread. The seed fixes the draws, so results are reproducible.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"features must be (n, d) and (m, d), got {x.shape} and {y.shape}")
    n, m = len(x), len(y)
    size = default_subset_size(n, m) if subset_size is None else int(subset_size)
    if not 2 <= size <= min(n, m):
        raise ValueError(f"subset_size must be from 2 to {min(n, m)} for sets of {n} and {m}, not {size}")
    rng = np.random.default_rng(seed)
    values = np.array(
        [
            mmd2_unbiased(x[rng.choice(n, size, replace=False)], y[rng.choice(m, size, replace=False)])
            for _ in range(int(subsets))
        ]
    )
    return KIDResult(float(values.mean()), float(values.std()), int(subsets), size, n, m)


def l2_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image `l2_distance` for two uint8 batches (N, H, W, 3) of the same shape."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"image batches differ in shape: {a.shape} vs {b.shape}")
    return np.array([l2_distance(p, q) for p, q in zip(a, b, strict=True)])


# ----- distortions for the metric's sanity checks ------------------------------------------------------
def blur(images: np.ndarray, radius: float = 1.5) -> np.ndarray:
    """Gaussian blur of each uint8 image (N, H, W, 3)."""
    return np.stack([np.asarray(Image.fromarray(im).filter(ImageFilter.GaussianBlur(radius))) for im in images])


def add_noise(images: np.ndarray, sigma: float = 0.1, seed: int = 0) -> np.ndarray:
    """Additive Gaussian pixel noise of std `sigma` (pixels in [0, 1]), clipped and rounded to uint8."""
    rng = np.random.default_rng(seed)
    noisy = images.astype(np.float64) / 255.0 + rng.normal(0.0, sigma, images.shape)
    return np.clip(np.rint(noisy * 255.0), 0, 255).astype(np.uint8)


def stroke_versions(images: np.ndarray, colors: int = 6, median_size: int | None = None, block: int = 1) -> np.ndarray:
    """The paper's simulated strokes (median filter + k-colour quantisation) of each uint8 image."""
    from ..strokes import simulate_strokes

    return np.stack([np.asarray(simulate_strokes(Image.fromarray(im), colors, median_size, block)) for im in images])
