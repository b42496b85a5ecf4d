"""Shared fixtures: small images and problems so that every test runs in seconds on a CPU."""

from __future__ import annotations

import torch
from deepinv.models import Denoiser

from pnp.images import load_image


class ShrinkDenoiser(Denoiser):
    """D(x) = x / (1 + λ): the prox of (λ/2)‖x‖², a linear denoiser with a closed-form PnP fixed point."""

    def __init__(self, lam: float) -> None:
        super().__init__()
        self.lam = lam

    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor = 0.0, **kwargs) -> torch.Tensor:
        return x / (1.0 + self.lam)


def small_image(size: int = 32, batch: int = 1, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Gray camera crops; batch elements are different crops of the same picture."""
    names = ["camera", "moon", "coins", "brick"]
    return torch.cat([load_image(names[i % 4], size=size, dtype=dtype) for i in range(batch)])
