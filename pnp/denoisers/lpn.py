"""Learned proximal network (Fang, Buchanan, Sulam, ICLR 2024).

ψ_θ is an input-convex CNN:

    z_1 = s(A_1 y + b_1),   z_{l+1} = s(W_l z_l + A_{l+1} y + b_{l+1}),   ψ(y) = Σ_pixels w ⋆ z_L + (α/2)‖y‖²

with s(t) = softplus(βt)/β (convex, nondecreasing), W_l and w non-negative (kept so by :meth:`LPN.clamp_weights`
after every optimiser step), A_l free skip convolutions from the input. D(y) = ∇ψ(y) by autograd is exactly the prox
of a (nonconvex) regulariser φ_θ, and its Jacobian ∇²ψ is symmetric positive definite (α > 0).

``conditional=True`` makes it noise-conditional where convexity in y cannot break: a small MLP of s = log(σ/σ_ref)
adds a bias c_l(s) to every layer's pre-activation. For fixed σ each z_l is still a non-negative combination of
convex nondecreasing functions of affine maps of y, so ψ(·, σ) is convex and D(·, σ) a prox at every σ.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from deepinv.models import Denoiser
from torch import nn

from pnp.denoisers.channels import channelwise, log_noise_levels
from pnp.denoisers.state import input_gradient

EMBED = 32  # hidden width of the σ embedding


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
        conditional: bool = False,
    ) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.skips = nn.ModuleList(nn.Conv2d(channels, width, kernel_size, padding=pad) for _ in range(depth))
        self.hidden = nn.ModuleList(
            nn.Conv2d(width, width, kernel_size, padding=pad, bias=False) for _ in range(depth - 1)
        )
        self.output = nn.Conv2d(width, 1, 1, bias=False)
        # conditional: the per-layer biases c_l(s) [B, depth, width], zero at the start (the blind network)
        self.embed = (
            nn.Sequential(nn.Linear(1, EMBED), nn.SiLU(), nn.Linear(EMBED, depth * width)) if conditional else None
        )
        if self.embed is not None:
            nn.init.zeros_(self.embed[-1].weight)
            nn.init.zeros_(self.embed[-1].bias)
        self.channels, self.beta, self.alpha, self.width = channels, beta, alpha, width
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
        if conditional:  # recorded only when set, so manifests of blind networks keep loading
            self.config["conditional"] = True

    def activation(self, t: torch.Tensor) -> torch.Tensor:
        return F.softplus(t, beta=self.beta)

    def biases(self, sigma: float | torch.Tensor | None, y: torch.Tensor) -> list[torch.Tensor | float]:
        """The σ-dependent bias c_l(s) of each layer as [B, width, 1, 1] (zeros for the blind network)."""
        if self.embed is None:
            return [0.0] * len(self.skips)
        s = log_noise_levels(sigma, y, "the conditional LPN").view(-1, 1)
        c = self.embed(s.to(self.embed[0].weight.dtype)).to(y.dtype).view(-1, len(self.skips), self.width, 1, 1)
        return list(c.unbind(1))

    def psi(self, y: torch.Tensor, sigma: float | torch.Tensor | None = None) -> torch.Tensor:
        """ψ_θ(y) (conditional: ψ_θ(y, σ)) per batch element."""
        c = self.biases(sigma, y)
        z = self.activation(self.skips[0](y) + c[0])
        for hidden, skip, c_l in zip(self.hidden, self.skips[1:], c[1:], strict=True):
            z = self.activation(hidden(z) + skip(y) + c_l)
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
        return input_gradient(self, lambda u: self.psi(u, sigma), y)

    def prior(
        self, x: torch.Tensor, sigma: float | torch.Tensor | None = None, max_iter: int = 200, tol: float = 1e-6
    ) -> tuple[torch.Tensor, torch.Tensor]:
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
                loss = (self.psi(y, sigma) - (x * y).flatten(1).sum(1)).sum()
                loss.backward()
                return loss

            opt.step(closure)
            y = y.detach()
            residual = (self(y, sigma) - x).flatten(1).norm(dim=1) / x[0].numel() ** 0.5
            with torch.no_grad():
                phi = (y * x).flatten(1).sum(1) - 0.5 * x.flatten(1).pow(2).sum(1) - self.psi(y, sigma)
        return phi, residual
