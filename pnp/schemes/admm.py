"""PnP-ADMM (scaled form, data step first):

    x_{k+1} = prox_{γ f}(z_k − u_k)
    z_{k+1} = D_σ(x_{k+1} + u_k)
    u_{k+1} = u_k + x_{k+1} − z_{k+1}

started from z_0 = x_0, u_0 = 0; the monitored iterate is z_k (the denoiser's output). prox_{γf} is deepinv's
``DataFidelity.prox``: closed form where the physics has one (e.g. ``BlurFFT``), conjugate gradient otherwise.
Mapping to deepinv's ``ADMM`` (``g_first=False``, β = 1): its (u, x, z) are our (x, z, u), so its estimate is our z
and its init tuple is (x_0, 0). Monitoring f(z_k) costs one extra A z per iteration (``monitor.track_fidelity=false``
skips it).
"""

from __future__ import annotations

import torch

from pnp.guarantees import Guarantee, Verdict, admm_verdict
from pnp.schemes.base import Context, Scheme


class ADMM(Scheme):
    """PnP-ADMM with penalty γ (``stepsize``); γ > 0 is its only parameter constraint."""

    def verdict(self, guarantee: Guarantee, gamma_l: float | None) -> Verdict:
        return admm_verdict(guarantee)

    def init_state(self, x0: torch.Tensor, ctx: Context) -> tuple[torch.Tensor, torch.Tensor]:
        return x0, torch.zeros_like(x0)

    def iterate(self, state: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return state[0]

    def step(self, state: tuple[torch.Tensor, torch.Tensor], ctx: Context, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        z, u = state
        x = ctx.fidelity.prox(z - u, ctx.y, ctx.physics, gamma=ctx.gamma)
        z = ctx.denoiser(x + u, ctx.sigma)
        ctx.record_fidelity(k, z)  # one more A z per iteration, unless the monitor skips f
        return z, u + x - z
