"""1-Lipschitz gradient-flow (Euler) network (Sherry, Celledoni, Ehrhardt, Murari, Owren, Schönlieb, Physica D 2024).

Lift the image by zero-padding to ``width`` channels, apply L explicit Euler steps of gradient flows

    x ← x − τ_l W_lᵀ σ(W_l x + b_l),     W_l a 3×3 convolution, σ = ReLU,

and keep the first channels. Each step is nonexpansive when τ_l ∈ [0, 2/‖W_l‖²]; here τ_l = min(softplus(t_l),
(2 − margin)/‖W_l‖²), so the bound holds at every forward pass. ‖W_l‖ comes from a persistent power iteration,
re-converged from its previous vector at every training forward (a few steps once training is under way) and once,
then cached, in eval mode; ``margin`` absorbs what a power iteration can miss.
``averaged=True`` returns (x + N(x))/2, which is firmly nonexpansive.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from deepinv.models import Denoiser
from torch import nn

from pnp.denoisers.channels import channelwise
from pnp.lipschitz import conv_spectral_norm, unit

POWER_MAX_ITER, POWER_TOL = 1000, 1e-6
NORM_PROBE = 32  # side of the power-iteration vector (the norm on larger images differs by < 1 %, under the margin)


class EulerLayer(nn.Module):
    """x ← x − τ Wᵀ ReLU(W x + b) with τ ≤ (2 − margin)/‖W‖²."""

    def __init__(self, width: int, margin: float = 0.02) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(width, width, 3, 3) * math.sqrt(2.0 / (9 * width)))
        self.bias = nn.Parameter(torch.zeros(width))
        self.step = nn.Parameter(torch.tensor(0.5))  # softplus(step) is the unconstrained τ
        self.margin = margin
        self.register_buffer("v", unit(torch.randn(1, width, NORM_PROBE, NORM_PROBE)))
        self.register_buffer("norm", torch.ones(()))
        self.fresh = False  # eval mode: True once ‖W‖ has been converged for the current weights

    def update_norm(self) -> torch.Tensor:
        """Converge the persistent power iteration; returns ‖W‖ = ‖W v‖ (differentiable in W)."""
        with torch.no_grad():
            _, self.v = conv_spectral_norm(self.weight, v=self.v, n_iter=POWER_MAX_ITER, tol=POWER_TOL)
        norm = torch.linalg.vector_norm(F.conv2d(self.v, self.weight, padding=1))
        self.norm = norm.detach()
        return norm

    def tau(self) -> torch.Tensor:
        """τ = min(softplus(t), (2 − margin)/‖W‖²), with ‖W‖ re-converged unless cached in eval mode."""
        if self.training or not self.fresh:
            norm = self.update_norm()
            self.fresh = not self.training
        else:
            norm = self.norm
        return torch.minimum(F.softplus(self.step), (2.0 - self.margin) / norm**2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype)
        return x - self.tau().to(x.dtype) * F.conv_transpose2d(
            F.relu(F.conv2d(x, w, self.bias.to(x.dtype), padding=1)), w, padding=1
        )


class EulerNet(Denoiser):
    """Nonexpansive denoiser N = P ∘ E_L ∘ … ∘ E_1 ∘ lift (or its average with the identity)."""

    def __init__(
        self, channels: int = 1, width: int = 64, depth: int = 10, averaged: bool = False, margin: float = 0.02
    ) -> None:
        super().__init__()
        self.channels, self.width, self.averaged = channels, width, averaged
        self.layers = nn.ModuleList(EulerLayer(width, margin) for _ in range(depth))
        self.config = {"channels": channels, "width": width, "depth": depth, "averaged": averaged, "margin": margin}

    def train(self, mode: bool = True) -> EulerNet:
        for layer in self.layers:
            layer.fresh = False  # weights may change: re-converge the norms at the next eval forward
        return super().train(mode)

    @channelwise
    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        z = F.pad(x, (0, 0, 0, 0, 0, self.width - self.channels))
        for layer in self.layers:
            z = layer(z)
        out = z[:, : self.channels]
        return 0.5 * (x + out) if self.averaged else out

    def layer_bound(self) -> dict[str, float]:
        """Each layer is nonexpansive by construction: report max_l τ_l‖W_l‖²/2 (≤ 1 − margin/2) and the
        resulting bound Lip(N) ≤ 1."""
        ratios = []
        with torch.no_grad():
            for layer in self.layers:
                norm, _ = conv_spectral_norm(layer.weight, n_iter=1000, tol=1e-9)
                ratios.append(float(layer.tau() * norm**2 / 2))
        return {"lip_D": 1.0, "max_tau_norm2_over_2": max(ratios)}
