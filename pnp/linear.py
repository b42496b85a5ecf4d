"""Data-term proxes for physics without a closed form: L2 by warm-started conjugate gradient, L1 by dual
forward-backward.

    prox_{γf}(z) = argmin_x (κ/2)‖Ax − y‖² + ½‖x − z‖²  ⇔  (I + κAᵀA) x = z + κAᵀy,    κ = γ/σ²

deepinv's ``LinearPhysics.prox_l2`` runs CG from z to a tolerance that float32 cannot reach (so to its iteration cap
at every call) and reads the host at every CG step. :func:`l2_prox` starts from the previous prox (consecutive ADMM
solutions differ by O(c_k)), stops at a relative residual no finer than the dtype resolves (:func:`cg_tolerance`) and
reads the residuals every ``check_every`` steps: at most ⌈max_iter / check_every⌉ host reads per call.
"""

from __future__ import annotations

import torch
from deepinv.physics import LinearPhysics

from pnp.tensors import batch_dot, per_element


def has_closed_form_prox(physics: LinearPhysics) -> bool:
    """True when the physics overrides ``prox_l2`` (FFT blur, denoising, inpainting, …), False for the generic CG."""
    return type(physics).prox_l2 is not LinearPhysics.prox_l2


def cg_tolerance(dtype: torch.dtype, tol: float | None = None) -> float:
    """Relative residual at which CG stops: ``tol``, but not below 100 ε of ``dtype`` (float32: 1.2e-5)."""
    floor = 100 * torch.finfo(dtype).eps
    return floor if tol is None else max(tol, floor)


def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """:func:`pnp.tensors.batch_dot` shaped [B, 1, …] to broadcast against the images."""
    return per_element(batch_dot(a, b), a)


def l2_prox(
    physics: LinearPhysics,
    z: torch.Tensor,
    aty: torch.Tensor,
    kappa: float,
    init: torch.Tensor,
    tol: float,
    max_iter: int = 200,
    check_every: int = 10,
) -> torch.Tensor:
    """Solve (I + κAᵀA) x = z + κ·``aty`` (``aty`` = Aᵀy, computed once per run) by CG from ``init``, per batch
    element, to ‖residual‖ ≤ ``tol``·‖rhs‖ (checked every ``check_every`` steps) or ``max_iter`` steps."""
    rhs = z + kappa * aty
    x = init
    r = rhs - (x + kappa * physics.A_adjoint_A(x))
    p, rs = r, dot(r, r)
    threshold = tol**2 * dot(rhs, rhs)
    tiny = torch.finfo(z.dtype).tiny
    for i in range(max_iter):
        ap = p + kappa * physics.A_adjoint_A(p)
        alpha = rs / dot(p, ap).clamp_min(tiny)
        x, r = x + alpha * p, r - alpha * ap
        rs_new = dot(r, r)
        if (i + 1) % check_every == 0 and bool((rs_new <= threshold).all()):
            break
        p, rs = r + (rs_new / rs.clamp_min(tiny)) * p, rs_new
    return x


def l1_prox(
    physics: LinearPhysics,
    z: torch.Tensor,
    y: torch.Tensor,
    gamma: float,
    norm: float,
    dual: torch.Tensor,
    tol: float,
    max_iter: int = 200,
    check_every: int = 10,
) -> tuple[torch.Tensor, torch.Tensor]:
    """prox_{γ‖A· − y‖₁}(z) = z − Aᵀv, v the solution of the dual problem min_{‖v‖∞ ≤ γ} ½‖Aᵀv‖² − ⟨v, Az − y⟩,
    by projected gradient v ← clip(v + τ(A(z − Aᵀv) − y), −γ, γ), τ = 1/‖A‖² (Combettes, Dũng, Vũ 2010), from the
    measurement-shaped ``dual`` (the previous call's: a warm start), until v moves less than ``tol``·‖v‖ (checked
    every ``check_every`` steps). Returns (prox, dual). deepinv's ``L1.prox`` starts its dual from the image, which
    fails for any physics whose measurements are not image-shaped (compressed sensing, tomography)."""
    tau = 1.0 / norm**2
    v = dual
    for i in range(max_iter):
        v_next = (v + tau * (physics.A(z - physics.A_adjoint(v)) - y)).clamp(-gamma, gamma)
        moved, v = dot(v_next - v, v_next - v), v_next
        if (i + 1) % check_every == 0 and bool((moved <= tol**2 * dot(v, v)).all()):
            break
    return z - physics.A_adjoint(v), v
