"""The training-free strength knob: D_θ(x, σ) = θ D(x, σ) + (1 − θ) x, θ ∈ (0, 1].

θ < 1 weakens any denoiser. It keeps firm nonexpansiveness (a convex combination of firmly nonexpansive maps) and
makes a nonexpansive D θ-averaged, an α-averaged D θα-averaged (:func:`pnp.guarantees.relaxed`). In PnP-PGD it
trades quality against iterations: the fixed-point residual shrinks by a factor that tends to 1 as θ → 0.
"""

from __future__ import annotations

import torch
from deepinv.models import Denoiser

from pnp.errors import check


class Relaxed(Denoiser):
    """θD + (1 − θ)Id around any ``deepinv.models.Denoiser``."""

    def __init__(self, denoiser: Denoiser, theta: float) -> None:
        super().__init__()
        check(isinstance(theta, (int, float)) and 0 < theta <= 1, f"theta must be in (0, 1], got {theta!r}")
        self.denoiser, self.theta = denoiser, float(theta)

    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        return torch.lerp(x, self.denoiser(x, sigma, **kwargs), self.theta)
