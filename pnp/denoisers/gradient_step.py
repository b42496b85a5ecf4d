"""Gradient-step denoiser (Hurault, Leclaire & Papadakis, ICLR 2022): an explicit, smooth potential from any network.

    g_σ(x) = ½‖R(x, σ)‖²,   D(x, σ) = x − ∇g_σ(x) = x − J_R(x, σ)ᵀ R(x, σ),

R the noise-conditional DnCNN residual with ELUs (C¹ with a locally Lipschitz Jacobian, so ∇g_σ is locally
Lipschitz). D is trained as a denoiser (per-σ MSE through the gradient: double back-propagation) and is then a
gradient step on a known function g_σ ≥ 0: its Jacobian Id − ∇²g_σ is symmetric (``pnp.certify``), and the objective
F = f + τ g_σ of a reconstruction is explicit, smooth and bounded below whatever the weights. No architectural
constraint is needed for that, which is why the denoiser keeps an unconstrained network's quality. Accelerated gradient
with backtracking (``scheme=agd``: no bound on Lip(∇g_σ) is known, the line search finds the step) then converges to
critical points of F (:mod:`pnp.schemes.agd`); PnP-PGD or PnP-ADMM with D itself is covered by no theorem here.
"""

from __future__ import annotations

import torch
from deepinv.models import Denoiser

from pnp.denoisers.channels import channelwise, channelwise_cost
from pnp.denoisers.dncnn import body, with_noise_map
from pnp.denoisers.state import input_gradient


class GradientStepDnCNN(Denoiser):
    """D = Id − ∇g_σ with g_σ = ½‖R(·, σ)‖², R a noise-conditional DnCNN with ELUs (the weights layout of a
    conditional :class:`~pnp.denoisers.DnCNN`, so its weights can start the training)."""

    def __init__(self, channels: int = 1, depth: int = 10, width: int = 32, activation: str = "elu") -> None:
        super().__init__()
        self.net = body(channels + 1, channels, depth, width, activation)
        self.channels = channels
        self.config = {"channels": channels, "depth": depth, "width": width, "activation": activation}

    def residual(self, x: torch.Tensor, sigma: float | torch.Tensor | None) -> torch.Tensor:
        """R(x, σ), the network's noise estimate."""
        return self.net(with_noise_map(x, sigma, "the gradient-step DnCNN"))

    def potential(
        self, x: torch.Tensor, sigma: float | torch.Tensor | None, dtype: torch.dtype | None = None
    ) -> torch.Tensor:
        """g_σ(x) = ½‖R(x, σ)‖² per batch element, [B] (summed in ``dtype``, default R's)."""
        r = self.residual(x, sigma)
        return 0.5 * (r if dtype is None else r.to(dtype)).pow(2).flatten(1).sum(1)

    @channelwise
    def grad(self, x: torch.Tensor, sigma: float | torch.Tensor | None = None) -> torch.Tensor:
        """∇g_σ(x) = J_Rᵀ R; works inside ``torch.inference_mode`` (the gradient is taken outside it). With gradients
        enabled it is differentiable in ``x`` and the weights (training); otherwise a plain tensor."""
        return input_gradient(self, lambda u: self.potential(u, sigma), x)

    @channelwise_cost
    def cost(self, x: torch.Tensor, sigma: float | torch.Tensor | None = None) -> torch.Tensor:
        """g_σ(x) per image of the batch (a colour image: the sum over its channels), in float64 (monotone schemes
        compare values of F whose differences near convergence are below float32's resolution)."""
        return self.potential(x, sigma, torch.float64)

    def grad_lipschitz(self, sigma: float | torch.Tensor | None, like: torch.Tensor) -> None:
        """No bound on Lip(∇g_σ) is known (an unconstrained network): ``scheme=agd`` finds its step by backtracking."""
        return None

    def bounded_below(self, sigma: float | torch.Tensor | None) -> bool:
        """g_σ = ½‖R‖² ≥ 0 for every σ and every set of weights."""
        return True

    @channelwise
    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        return x - self.grad(x, sigma)
