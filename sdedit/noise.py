"""Per-sample random streams: sample i's noise depends only on seed i.

That is what makes a batch of N give the same images as N single runs with the same seeds: every draw is
made one sample at a time from that sample's own generator, never for the batch as a whole. The noise is
identical; the images agree up to the float rounding of batched convolutions (measured: at most 1/255 on
about 0.015% of pixels), which the tests bound.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import torch

from .errors import InputError

MAX_SEED = 2**63 - 1


def random_seed() -> int:
    return secrets.randbelow(2**31)


def check_seed(seed) -> int:
    if isinstance(seed, bool):
        raise InputError(f"seed must be a whole number from 0 to {MAX_SEED}, not {seed!r}")
    given = seed
    if not isinstance(seed, int):
        try:
            as_float = float(seed)
        except (TypeError, ValueError):
            raise InputError(f"seed must be a whole number from 0 to {MAX_SEED}, not {seed!r}") from None
        if not as_float.is_integer():
            raise InputError(f"seed must be a whole number from 0 to {MAX_SEED}, not {seed!r}")
        seed = int(as_float)
    if not 0 <= seed <= MAX_SEED:
        shown = str(given)  # as it was given: 1e+308, not its 309 digits
        raise InputError(f"seed must be from 0 to {MAX_SEED}, not {shown if len(shown) <= 40 else shown[:37] + '...'}")
    return seed


def seeds_for(seed: int | Sequence[int] | None, n: int) -> list[int]:
    """One seed per sample: a list is taken as is, a single seed s gives s, s+1, ..., None draws one."""
    if seed is None:
        seed = random_seed()
    if isinstance(seed, (list, tuple)):
        if len(seed) != n:
            raise InputError(f"got {len(seed)} seeds for {n} samples; give one seed or exactly {n}")
        return [check_seed(s) for s in seed]
    base = check_seed(seed)
    if base + n - 1 > MAX_SEED:
        raise InputError(f"seed {base} + {n} samples runs past {MAX_SEED}")
    return [base + i for i in range(n)]


class NoiseSource:
    """Draws standard normal noise for a batch, one sample per generator."""

    def __init__(self, generators: Sequence[torch.Generator], device: torch.device | str = "cpu"):
        if not generators:
            raise ValueError("NoiseSource needs at least one generator")
        self.generators = list(generators)
        self.device = torch.device(device)

    @classmethod
    def from_seeds(cls, seeds: Sequence[int], device: torch.device | str = "cpu", on_device: bool = False):
        """CPU generators by default, so that CPU and GPU runs of one seed start from the same noise."""
        gen_device = torch.device(device) if on_device else torch.device("cpu")
        return cls([torch.Generator(gen_device).manual_seed(int(s)) for s in seeds], device)

    def __len__(self) -> int:
        return len(self.generators)

    def randn(self, shape: Sequence[int]) -> torch.Tensor:
        """A float32 (len(self), *shape) tensor on `self.device`."""
        draws = [torch.randn((1, *shape), generator=g, device=g.device, dtype=torch.float32) for g in self.generators]
        return torch.cat(draws).to(self.device)

    def randn_like(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != len(self):
            raise ValueError(f"batch of {x.shape[0]} but {len(self)} generators")
        return self.randn(x.shape[1:])
