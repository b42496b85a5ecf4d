"""PnP-ADMM (scaled form, data step first):

    x_{k+1} = prox_{γ f}(z_k − u_k)
    z_{k+1} = D_σ(x_{k+1} + u_k)
    u_{k+1} = u_k + x_{k+1} − z_{k+1}

started from z_0 = x_0, u_0 = 0; the monitored iterate is z_k (the denoiser's output). prox_{γf} is deepinv's
``DataFidelity.prox`` where it has a closed form (e.g. ``BlurFFT``); for the L2 fidelity with any other physics it is
:func:`pnp.linear.l2_prox`, conjugate gradient warm-started from x_k, to a dtype-aware tolerance, with bounded host
reads; for the L1 fidelity :func:`pnp.linear.l1_prox`, dual forward-backward warm-started from the last dual.
Mapping to deepinv's ``ADMM`` (``g_first=False``, β = 1): its (u, x, z) are our (x, z, u), so its estimate is our z
and its init tuple is (x_0, 0). Monitoring f(z_k) costs one extra A z per iteration
(``monitor.track_fidelity=false`` skips it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from deepinv.optim.data_fidelity import L1, L2

from pnp.guarantees import Guarantee, Verdict, admm_verdict
from pnp.linear import cg_tolerance, has_closed_form_prox, l1_prox, l2_prox
from pnp.schemes.base import Context, Scheme, Values


@dataclass
class State:
    z: torch.Tensor  # the denoiser's output, the monitored iterate
    u: torch.Tensor  # the scaled dual variable
    x: torch.Tensor  # the last data prox: the warm start of the next CG solve
    aty: torch.Tensor | None  # Aᵀy when the data prox is solved by CG (a constant of the run)
    dual: torch.Tensor | None  # the L1 prox's dual variable (measurement-shaped), its warm start


class ADMM(Scheme):
    """PnP-ADMM with penalty γ (``stepsize``); γ > 0 is its only parameter constraint. ``cg_tol`` and
    ``cg_max_iter`` set the inner CG where the data prox has no closed form (``cg_tol=None``: 100 ε of the dtype)."""

    def __init__(
        self,
        *,
        stepsize: float | None = None,
        step_factor: float = 1.0,
        strict: bool = False,
        cg_tol: float | None = None,
        cg_max_iter: int = 200,
    ) -> None:
        super().__init__(stepsize=stepsize, step_factor=step_factor, strict=strict)
        self.cg_tol, self.cg_max_iter = cg_tol, cg_max_iter

    def verdict(self, guarantee: Guarantee, gamma_l: float | None) -> Verdict:
        return admm_verdict(guarantee)

    def init_state(self, x0: torch.Tensor, ctx: Context) -> State:
        by_cg = isinstance(ctx.fidelity, L2) and not has_closed_form_prox(ctx.physics)
        dual = torch.zeros_like(ctx.y) if isinstance(ctx.fidelity, L1) else None
        return State(x0, torch.zeros_like(x0), x0, ctx.physics.A_adjoint(ctx.y) if by_cg else None, dual)

    def iterate(self, state: State) -> torch.Tensor:
        return state.z

    def data_prox(self, v: torch.Tensor, state: State, ctx: Context) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(prox_{γf}(v), the L1 dual for the next call)."""
        tol = cg_tolerance(v.dtype, self.cg_tol)
        if state.dual is not None:
            return l1_prox(ctx.physics, v, ctx.y, ctx.gamma, ctx.norm, state.dual, tol, self.cg_max_iter)
        if state.aty is None:
            return ctx.fidelity.prox(v, ctx.y, ctx.physics, gamma=ctx.gamma), None
        kappa = ctx.gamma * float(ctx.fidelity.norm)
        return l2_prox(ctx.physics, v, state.aty, kappa, state.x, tol, self.cg_max_iter), None

    def step(self, state: State, ctx: Context, k: int) -> tuple[State, Values]:
        x, dual = self.data_prox(state.z - state.u, state, ctx)
        z = ctx.denoiser(x + state.u, ctx.sigma)
        # f(z) costs one more A z per iteration, unless the monitor skips f
        return State(z, state.u + x - z, x, state.aty, dual), ctx.values(z)
