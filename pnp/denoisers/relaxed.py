"""The training-free strength knob: D_θ(x, σ) = θ D(x, σ) + (1 − θ) x, θ ∈ (0, 1].

θ < 1 weakens any denoiser. It keeps firm nonexpansiveness (a convex combination of firmly nonexpansive maps) and
makes a nonexpansive D θ-averaged, an α-averaged D θα-averaged; a prox stays a prox, θ prox_g + (1 − θ)Id =
prox_{θ M_{1−θ}g} with M_μ the Moreau envelope, less weakly convex than g and bounded below where g is
(:func:`pnp.guarantees.relaxed`). In PnP-PGD it
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
        bounded_below = getattr(denoiser, "bounded_below", None)
        if bounded_below is not None:  # θ M_{1−θ}g has the infimum of g
            self.bounded_below = bounded_below

    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        return torch.lerp(x, self.denoiser(x, sigma, **kwargs), self.theta)
