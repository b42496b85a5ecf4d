"""Lipschitz estimates of networks and linear layers.

* :func:`jacobian_spectral_norm`: ‖J_f(x)‖₂ at a point by power iteration on JᵀJ with autograd (J v by the
  double-backward trick, Jᵀ w by a vector-Jacobian product). Per batch element; a lower estimate of Lip(f).
* :func:`asymmetry`, :func:`min_eigenvalue`: ‖J − Jᵀ‖ on random probes and the smallest eigenvalue of (J + Jᵀ)/2
  (a prox of a convex function has a symmetric positive semi-definite Jacobian).
* :func:`conv_spectral_norm`: ‖W‖₂ of a 2D convolution by power iteration on WᵀW (conv / transposed conv).
* :func:`conv_norm_bound`: a certified upper bound on ‖W‖₂ for every image size, from the kernel's Fourier symbol.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pnp.tensors import batch_dot, batch_norm, per_element, unit

POWER_CHECK_EVERY = 8  # power iterations between convergence tests (each a host sync on an accelerator)


def jvp_vjp(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor):
    """(y, J·, Jᵀ·) at ``x``: J v by double backward through a dummy cotangent, Jᵀ w by backward.

    ``jv(v, create_graph=True)`` keeps the graph to the parameters of ``fn`` (for training penalties)."""
    x = x.detach().requires_grad_(True)
    y = fn(x)
    w0 = torch.zeros_like(y, requires_grad=True)
    jtw0 = torch.autograd.grad(y, x, w0, create_graph=True)[0]

    def jv(v: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
        return torch.autograd.grad(jtw0, w0, v, retain_graph=True, create_graph=create_graph)[0]

    def jtw(w: torch.Tensor) -> torch.Tensor:
        return torch.autograd.grad(y, x, w, retain_graph=True)[0]

    return y, jv, jtw


Fn = Callable[[torch.Tensor], torch.Tensor]


def asymmetry(fn: Fn, x: torch.Tensor, probes: int, g: torch.Generator) -> torch.Tensor:
    """Per sample, max over unit probes u, v of |⟨u, (J − Jᵀ) v⟩| / (‖J v‖ + ‖Jᵀ v‖): 0 for a symmetric J."""
    with torch.enable_grad():
        _, jv, jtw = jvp_vjp(fn, x)
        worst = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for _ in range(probes):
            u = unit(torch.randn(x.shape, generator=g, dtype=x.dtype).to(x.device))
            v = unit(torch.randn(x.shape, generator=g, dtype=x.dtype).to(x.device))
            a, b = jv(v), jtw(v)
            worst = torch.maximum(worst, (batch_dot(u, a) - batch_dot(u, b)).abs() / (batch_norm(a) + batch_norm(b)))
    return worst.detach()


def secant_ratios(fn: Fn, x: torch.Tensor, scale: float, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample, ‖D(x + δ) − D(x)‖/‖δ‖ and ‖Q(x + δ) − Q(x)‖/‖δ‖ for Q = 2D − Id, δ Gaussian of std ``scale``:
    the Lipschitz ratios of the map as computed, without autograd (what the Jacobian of a solve's differentiable
    tail cannot show, such as an inexact inner solve, shows here)."""
    with torch.no_grad():
        delta = scale * torch.randn(x.shape, generator=g, dtype=x.dtype).to(x.device)
        a, b = fn(x), fn(x + delta)
        step = batch_norm(delta)
        return batch_norm(b - a) / step, batch_norm(2 * (b - a) - delta) / step


def min_eigenvalue(fn: Fn, x: torch.Tensor, shift: torch.Tensor, n_iter: int, g: torch.Generator) -> torch.Tensor:
    """Smallest eigenvalue of (J + Jᵀ)/2 by power iteration on shift·I − (J + Jᵀ)/2 (shift ≥ ‖J‖)."""
    with torch.enable_grad():
        _, jv, jtw = jvp_vjp(fn, x)
        v = unit(torch.randn(x.shape, generator=g, dtype=x.dtype).to(x.device))
        s = per_element(shift, x)
        for _ in range(n_iter):
            w = s * v - 0.5 * (jv(v) + jtw(v))
            top = batch_dot(v, w)
            v = unit(w.detach())
    return (shift - top).detach()


@dataclass
class PowerResult:
    norm: torch.Tensor  # [B] ‖J‖₂ estimates
    iterations: int
    converged: bool


def jacobian_spectral_norm(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    n_iter: int = 50,
    tol: float = 1e-4,
    generator: torch.Generator | None = None,
) -> PowerResult:
    """‖J_fn(x)‖₂ per batch element by power iteration on JᵀJ (stops when every estimate moves < tol, relative)."""
    with torch.enable_grad():
        _, jv, jtw = jvp_vjp(fn, x)
        v = unit(torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device))
        previous = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for it in range(1, n_iter + 1):
            u = jv(v)
            estimate = batch_norm(u)
            v = unit(jtw(u).detach())
            if ((estimate - previous).abs() <= tol * estimate).all():
                return PowerResult(estimate.detach(), it, True)
            previous = estimate.detach()
    return PowerResult(previous, n_iter, False)


def jacobian_sq_norm_penalty_estimate(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, n_iter: int = 5
) -> torch.Tensor:
    """Differentiable ‖J_fn(x)‖₂² per batch element: ``n_iter`` detached power steps, then ‖J v‖² with the graph
    kept (for training penalties such as the firmly-nonexpansive one)."""
    _, jv, jtw = jvp_vjp(fn, x)
    v = unit(torch.randn_like(x))
    for _ in range(n_iter):
        v = unit(jtw(jv(v)).detach())
    return batch_norm(jv(v, create_graph=True)) ** 2


def conv_spectral_norm(
    weight: torch.Tensor,
    size: int = 64,
    n_iter: int = 200,
    v: torch.Tensor | None = None,
    tol: float = 1e-7,
    check_every: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """‖W‖₂ of the zero-padded 'same' convolution with ``weight`` on ``size``×``size`` inputs, by power iteration,
    stopped when one iteration changes the estimate by at most ``tol`` (relative), tested every ``check_every``
    iterations (None: every iteration on the CPU, every :data:`POWER_CHECK_EVERY` on an accelerator, where each test
    is a host sync).

    Returns (norm, v) with v the (detached) right singular vector, to warm-start the next call."""
    pad = weight.shape[-1] // 2
    if v is None:
        g = torch.Generator().manual_seed(0)
        v = torch.randn(1, weight.shape[1], size, size, generator=g, dtype=weight.dtype).to(weight.device)
    v = unit(v)
    norm = torch.zeros((), dtype=weight.dtype, device=weight.device)
    if check_every is None:
        check_every = 1 if weight.device.type == "cpu" else POWER_CHECK_EVERY
    with torch.no_grad():
        for start in range(0, n_iter, check_every):
            for _ in range(min(check_every, n_iter - start)):
                u = F.conv2d(v, weight, padding=pad)
                v = unit(F.conv_transpose2d(u, weight, padding=pad))
                norm, previous = batch_norm(u)[0], norm
            if (norm - previous).abs() <= tol * norm:
                break
    return norm, v


def conv_norm_bound(weight: torch.Tensor, grid: int = 64, detach: bool = True) -> torch.Tensor:
    """Upper bound on ‖W‖₂ of the zero-padded convolution with ``weight`` on images of *any* size.

    A zero-padded convolution is a compression of the convolution on ℤ², whose norm is the supremum S over ω of the
    largest singular value of the symbol K̂(ω) = Σ_p K_p e^{−i⟨p, ω⟩}, d = k // 2. Let ω* attain S with singular
    vectors u, v: q(ω) = Re(vᴴK̂(ω)u) is a real trigonometric polynomial with q ≤ ‖K̂(ω)‖₂, q(ω*) = S = ‖q‖_∞.
    On the segment from ω* to the nearest point of an M×M grid, ω* + s·t/|t| with |t_i| ≤ π/M, q is a polynomial in
    s of degree ≤ d(|t₁| + |t₂|)/|t|, so Szegő's inequality q′² + n²q² ≤ n²‖q‖²_∞ gives q ≥ S cos(n s) ≥
    S cos(2dπ/M) at the grid point: ‖W‖₂ ≤ max_grid ‖K̂‖₂ / cos(2dπ/M). For 3×3 kernels and M = 64 the bound
    exceeds the supremum by < 0.5 %.
    ``detach=False`` keeps it differentiable in the weights (to normalise a kernel while training). Detached, it is
    computed on the CPU (LAPACK, float64) whatever the weights' device: the certificate is the same number on every
    device, and a batched complex SVD is slow on accelerators.
    """
    degree = weight.shape[-1] // 2
    kernel = weight.detach().cpu().double() if detach else weight.double()
    symbol = torch.fft.rfft2(kernel, s=(grid, grid))  # K̂(−ω) = conj K̂(ω): half the grid suffices
    top = torch.linalg.matrix_norm(symbol.permute(2, 3, 0, 1), ord=2).amax()
    return (top / math.cos(2 * degree * math.pi / grid)).to(device=weight.device, dtype=weight.dtype)
