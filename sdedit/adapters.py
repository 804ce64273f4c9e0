"""The model-space seam: how a guide on the model's canvas becomes what the network sees, and back.

The samplers and the pipeline never assume pixels: they perturb, denoise and mask whatever tensor the
model's space gives them. Every model shipped today works on pixels scaled to its data range
(`PixelSpace`). A model with an autoencoder (a latent model) plugs in here with its own `encode` /
`decode` / `encode_mask`; `tests/engine/test_adapters.py` proves the seam with a space that is not pixels.

Shapes: a canvas is (R, R, 3) uint8 at the model's resolution R; a canvas mask is (R, R) float in [0, 1]
(1 = may change); model-space tensors are (C, h, w) per guide and (B, C, h, w) batched.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from .imaging import from_model_range, to_model_range


class ModelSpace(Protocol):
    """What the pipeline needs from a model's space."""

    def encode(self, canvas: np.ndarray) -> torch.Tensor:
        """(R, R, 3) uint8 canvas -> (C, h, w) float32 in the model's space."""

    def encode_mask(self, mask: np.ndarray) -> torch.Tensor:
        """(R, R) mask in [0, 1] -> a float32 mask that broadcasts against (C, h, w)."""

    def decode(self, x: torch.Tensor) -> np.ndarray:
        """(B, C, h, w) model-space samples -> (B, R, R, 3) uint8 canvases."""

    def resolution(self, sample_size: int) -> int:
        """The canvas size R for a network whose inputs are `sample_size` wide."""


class PixelSpace:
    """The canvas's pixels scaled to the model's data range: [-1, 1] for VP (DDPM), [0, 1] for VE (NCSN++)."""

    channels = 3

    def __init__(self, data_range: tuple[float, float]):
        self.data_range = tuple(data_range)

    def encode(self, canvas: np.ndarray) -> torch.Tensor:
        return to_model_range(canvas, self.data_range)

    def encode_mask(self, mask: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(mask))[None].float()

    def decode(self, x: torch.Tensor) -> np.ndarray:
        return from_model_range(x, self.data_range)

    def resolution(self, sample_size: int) -> int:
        return int(sample_size)

    def __repr__(self) -> str:
        return f"PixelSpace(data_range={self.data_range})"


def pixel_space(config) -> PixelSpace:
    """The space of a configured pixel-space model (every model in configs/)."""
    return PixelSpace(config.data_range)
