"""Learned proximal network (Fang, Buchanan, Sulam, ICLR 2024).

ψ_θ is an input-convex CNN:

    z_1 = s(A_1 y + b_1),   z_{l+1} = s(W_l z_l + A_{l+1} y + b_{l+1}),   ψ(y) = Σ_pixels w ⋆ z_L + (α/2)‖y‖²

with s(t) = softplus(βt)/β (convex, nondecreasing), W_l and w non-negative (kept so by :meth:`LPN.clamp_weights`
after every optimiser step), A_l free skip convolutions from the input. D(y) = ∇ψ(y) by autograd is exactly the prox
of a (nonconvex) regulariser φ_θ, and its Jacobian ∇²ψ is symmetric positive definite (α > 0).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from deepinv.models import Denoiser
from torch import nn

from pnp.denoisers.channels import channelwise
from pnp.denoisers.state import needs_graph


class LPN(Denoiser):
    """D(y) = ∇ψ_θ(y) with ψ_θ convex; ``kernel_size=1`` on [B, C, 1, 1] inputs gives a scalar (1D) network."""

    def __init__(
        self,
        channels: int = 1,
        width: int = 64,
        depth: int = 5,
        kernel_size: int = 3,
        beta: float = 10.0,
        alpha: float = 1e-3,
    ) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.skips = nn.ModuleList(nn.Conv2d(channels, width, kernel_size, padding=pad) for _ in range(depth))
        self.hidden = nn.ModuleList(
            nn.Conv2d(width, width, kernel_size, padding=pad, bias=False) for _ in range(depth - 1)
        )
        self.output = nn.Conv2d(width, 1, 1, bias=False)
        self.channels, self.beta, self.alpha = channels, beta, alpha
        with torch.no_grad():
            for conv in [*self.hidden, self.output]:
                conv.weight.uniform_(0.0, 1.0 / (conv.weight[0].numel()))
        self.config = {
            "channels": channels,
            "width": width,
            "depth": depth,
            "kernel_size": kernel_size,
            "beta": beta,
            "alpha": alpha,
        }

    def activation(self, t: torch.Tensor) -> torch.Tensor:
        return F.softplus(t, beta=self.beta)

    def psi(self, y: torch.Tensor) -> torch.Tensor:
        """ψ_θ(y) per batch element."""
        z = self.activation(self.skips[0](y))
        for hidden, skip in zip(self.hidden, self.skips[1:], strict=True):
            z = self.activation(hidden(z) + skip(y))
        return self.output(z).flatten(1).sum(1) + 0.5 * self.alpha * y.flatten(1).pow(2).sum(1)

    def clamp_weights(self) -> None:
        """Project the hidden-to-hidden and output weights onto the non-negative orthant."""
        with torch.no_grad():
            for conv in [*self.hidden, self.output]:
                conv.weight.clamp_(min=0.0)

    @channelwise
    def forward(self, y: torch.Tensor, sigma: float | torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        """∇ψ_θ(y); works inside ``torch.inference_mode`` (the gradient is taken outside it). With gradients enabled
        (in train or eval mode) the output is differentiable in ``y`` and the weights (double back-propagation);
        under ``no_grad``/``inference_mode`` it is a plain tensor."""
        create_graph = needs_graph(self, y) and not torch.is_inference_mode_enabled()
        with torch.inference_mode(False), torch.enable_grad():
            y_ = y.clone() if y.is_inference() else y
            if not y_.requires_grad:
                y_ = y_.detach().requires_grad_(True)
            grad = torch.autograd.grad(self.psi(y_).sum(), y_, create_graph=create_graph)[0]
        return grad if create_graph else grad.detach()

    def prior(self, x: torch.Tensor, max_iter: int = 200, tol: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
        """φ_θ(x) = ⟨y, x⟩ − ½‖x‖² − ψ(y) with y = D⁻¹(x), found by minimising the strongly convex ψ(y) − ⟨x, y⟩
        with L-BFGS from y = x. Returns (φ per batch element, inversion residual ‖D(y) − x‖/√n, in pixel units)."""
        x = x.detach()
        with torch.inference_mode(False), torch.enable_grad():
            x = x.clone()
            y = x.clone().requires_grad_(True)
            opt = torch.optim.LBFGS(
                [y],
                lr=1.0,
                max_iter=max_iter,
                tolerance_grad=tol,
                tolerance_change=1e-12,
                history_size=20,
                line_search_fn="strong_wolfe",
            )

            def closure() -> torch.Tensor:
                opt.zero_grad()
                loss = (self.psi(y) - (x * y).flatten(1).sum(1)).sum()
                loss.backward()
                return loss

            opt.step(closure)
            y = y.detach()
            residual = (self(y) - x).flatten(1).norm(dim=1) / x[0].numel() ** 0.5
            with torch.no_grad():
                phi = (y * x).flatten(1).sum(1) - 0.5 * x.flatten(1).pow(2).sum(1) - self.psi(y)
        return phi, residual
