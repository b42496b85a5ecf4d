"""PnP proximal gradient descent (forward-backward) with relaxation.

    x_{k+1} = (1 − ν) x_k + ν D_σ(x_k − γ ∇f(x_k)),    ∇f(x) = Aᵀ ∇d(Ax, y).

With D averaged (e.g. firmly nonexpansive), γ ∈ (0, 2/L) and ν ∈ (0, 1], the iterates converge to a fixed point
when one exists (Pesquet, Repetti, Terris, Wiaux, SIAM J. Imaging Sci. 2021). A x_k is computed once per
iteration, right after x_k: it serves both the monitored f(x_k) and the next step's ∇f(x_k).
"""

from __future__ import annotations

import torch

from pnp.errors import ConfigError, check_positive
from pnp.guarantees import Guarantee, Verdict, pgd_verdict
from pnp.schemes.base import Context, Scheme, Values


class PGD(Scheme):
    """PnP-PGD; ``relaxation`` is ν (1 gives plain forward-backward, deepinv's ``PGD``)."""

    def __init__(
        self,
        *,
        stepsize: float | None = None,
        step_factor: float = 1.0,
        relaxation: float = 1.0,
        strict: bool = False,
    ) -> None:
        super().__init__(stepsize=stepsize, step_factor=step_factor, strict=strict)
        self.relaxation = check_positive("relaxation", relaxation)

    def check_bounds(self, gamma: float, lipschitz: float | None) -> None:
        if lipschitz is None and self.stepsize is None:
            raise ConfigError(
                "the data fidelity has no Lipschitz gradient (l1, or poisson with bkg=0), so PGD has no step size: "
                "use scheme=admm, which uses the fidelity's prox, or give scheme.stepsize (no convergence guarantee)"
            )
        if lipschitz is None:
            self.violation("the data fidelity has no Lipschitz gradient, so no step-size bound applies")
        elif gamma * lipschitz >= 2:
            self.violation(f"step size γ={gamma:.4g} is not below 2/L={2 / lipschitz:.4g}")
        if self.relaxation > 1:
            self.violation(f"relaxation ν={self.relaxation:g} is above 1")

    def verdict(self, guarantee: Guarantee, gamma_l: float | None) -> Verdict:
        return pgd_verdict(guarantee, gamma_l, self.relaxation)

    def init_state(self, x0: torch.Tensor, ctx: Context) -> tuple[torch.Tensor, torch.Tensor]:
        return x0, ctx.physics.A(x0)

    def iterate(self, state: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return state[0]

    def step(
        self, state: tuple[torch.Tensor, torch.Tensor], ctx: Context, k: int
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], Values]:
        x, ax = state
        grad = ctx.physics.A_adjoint(ctx.fidelity.d.grad(ax, ctx.y))
        z = ctx.denoiser(x - ctx.gamma * grad, ctx.sigma)
        x = z if self.relaxation == 1 else torch.lerp(x, z, self.relaxation)
        ax = ctx.physics.A(x)
        return (x, ax), ctx.values(x, ax)
