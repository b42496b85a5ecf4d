"""pnp.activations: every activation is the prox of its potential and the derivative of its penalization, checked
numerically against an independent 1-D minimiser, with the conjugate and Bregman identities of lifted training."""

from __future__ import annotations

import math

import pytest
import torch

from pnp import activations as A
from pnp.errors import ConfigError

ALL = [
    A.ReLU(),
    A.PReLU(0.25),
    A.BentIdentity(),
    A.ISRU(),
    A.ISRLU(),
    A.Arctan(),
    A.UnimodalSigmoid(),
    A.SoftThreshold(0.7),
    A.Tanh(),
    A.Clip(),
]
IDS = [type(a).__name__ for a in ALL]
X = torch.linspace(-6, 6, 241, dtype=torch.float64)
GOLDEN = (math.sqrt(5) - 1) / 2


def minimise(f, lo: torch.Tensor, hi: torch.Tensor, points: int = 4001, iters: int = 80) -> torch.Tensor:
    """Per element, argmin of the strictly convex (so unimodal) f(u, i) on [lo_i, hi_i]: the best point of a dense grid
    (ends included), then golden-section search on the bracket of its two neighbours."""
    t = torch.linspace(0, 1, points, dtype=lo.dtype)
    grid = lo[:, None] + (hi - lo)[:, None] * t
    best = f(grid, slice(None)).argmin(dim=1)
    rows = torch.arange(len(lo))
    a = grid[rows, (best - 1).clamp(min=0)]
    b = grid[rows, (best + 1).clamp(max=points - 1)]
    for _ in range(iters):
        c, d = b - GOLDEN * (b - a), a + GOLDEN * (b - a)
        left = f(c[:, None], slice(None))[:, 0] <= f(d[:, None], slice(None))[:, 0]
        a, b = torch.where(left, a, c), torch.where(left, d, b)
    return 0.5 * (a + b)


def reference_prox(act: A.Activation, x: torch.Tensor) -> torch.Tensor:
    """argmin_u ½(u − x)² + φ(u) over [x − 10, x + 10] ∩ dom φ, by :func:`minimise` (φ = +∞ outside the domain)."""
    lo = (x - 10).clamp(min=act.domain[0])
    hi = (x + 10).clamp(max=act.domain[1])
    return minimise(lambda u, i: 0.5 * (u - x[i, None]) ** 2 + act.potential(u), lo, hi)


@pytest.mark.parametrize("act", ALL, ids=IDS)
def test_the_activation_is_the_prox_of_its_potential(act):
    torch.testing.assert_close(act(X), reference_prox(act, X), rtol=0, atol=1e-6)


@pytest.mark.parametrize("act", ALL, ids=IDS)
def test_the_penalization_is_convex_one_smooth_with_derivative_the_activation(act):
    x = X.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(act.penalization(x).sum(), x)
    torch.testing.assert_close(grad, act(X), rtol=0, atol=1e-12)
    h = 1e-3
    fine = torch.arange(-6, 6, h, dtype=torch.float64)
    psi = act.penalization(fine)
    second = (psi[2:] - 2 * psi[1:-1] + psi[:-2]) / h**2
    assert second.min() >= -1e-6 and second.max() <= 1 + 1e-6  # ψ convex, ψ′ 1-Lipschitz
    slopes = torch.diff(act(fine)) / h
    assert slopes.min() >= -1e-9 and slopes.max() <= 1 + 1e-9  # ϱ nondecreasing and nonexpansive


@pytest.mark.parametrize("act", ALL, ids=IDS)
def test_the_potential_lives_on_its_domain_and_the_activation_maps_into_it(act):
    lo, hi = act.domain
    far = torch.tensor([-50.0, -6.0, 6.0, 50.0], dtype=torch.float64)
    out = act(far)
    assert ((out >= lo) & (out <= hi)).all()
    outside = torch.tensor([lo - 1e-3, lo - 5, hi + 1e-3, hi + 5], dtype=torch.float64)
    assert torch.isinf(act.potential(outside[torch.isfinite(outside)])).all()
    inside = act(X)  # the range of ϱ lies in dom φ
    assert torch.isfinite(act.potential(inside)).all()


@pytest.mark.parametrize("act", ALL, ids=IDS)
def test_fenchel_is_the_conjugate_of_the_half_square_plus_potential(act):
    z = torch.linspace(-5, 5, 101, dtype=torch.float64)
    u = reference_prox(act, z)  # the maximiser of zu − ½u² − φ(u)
    supremum = z * u - 0.5 * u**2 - act.potential(u)
    torch.testing.assert_close(act.fenchel(z), supremum, rtol=0, atol=1e-9)
    rho = act(z)
    torch.testing.assert_close(act.fenchel(z), z * rho - 0.5 * rho**2 - act.potential(rho), rtol=0, atol=1e-9)


@pytest.mark.parametrize("act", ALL, ids=IDS)
def test_the_bregman_loss_vanishes_exactly_at_the_activation_and_its_z_gradient_is_the_residual(act):
    g = torch.Generator().manual_seed(0)
    z = (4 * torch.randn(500, generator=g, dtype=torch.float64)).requires_grad_(True)
    y = act(4 * torch.randn(500, generator=g, dtype=torch.float64))  # points of the domain
    loss = act.bregman(y, z)
    assert (loss >= 0.5 * (y - act(z)) ** 2 - 1e-9).all()  # B(y, z) ≥ ½(y − ϱ(z))² ≥ 0
    (grad,) = torch.autograd.grad(loss.sum(), z)
    torch.testing.assert_close(grad, act(z) - y, rtol=0, atol=1e-9)
    torch.testing.assert_close(act.bregman(act(z), z), torch.zeros_like(z), rtol=0, atol=1e-9)


def test_the_tutorials_misprinted_formulas_fail_the_checks_the_corrected_ones_pass():
    bent, sigmoid = A.BentIdentity(), A.UnimodalSigmoid()
    x = torch.linspace(-3, 3, 61, dtype=torch.float64)
    printed_bent = A.BentIdentity()
    printed_bent.phi = lambda u: math.pi / 2 - 0.25 * torch.log(u + 0.5)  # π/2 where u/2 belongs
    assert (reference_prox(printed_bent, x) - bent(x)).abs().max() > 0.1
    xr = x.clone().requires_grad_(True)
    (printed_psi_prime,) = torch.autograd.grad((math.pi / 2 + torch.log1p(torch.exp(-xr))).sum(), xr)
    torch.testing.assert_close(printed_psi_prime, sigmoid(x) - 0.5)  # the derivative is off by ½: σ(x) − 1
    printed_sigmoid = A.UnimodalSigmoid()
    printed_sigmoid.phi = lambda u: torch.xlogy(0.5 + u, 0.5 + u)  # the printed interior formula: its first term only
    assert (reference_prox(printed_sigmoid, x) - sigmoid(x)).abs().max() > 0.1
    printed_end = -0.5 * (0.5**2 + 0.25)  # the printed value at u = ½: −¼, below the limit −⅛ of φ there
    x = torch.tensor([4.0, 6.0], dtype=torch.float64)
    u = sigmoid(x)
    assert (0.5 * (0.5 - x) ** 2 + printed_end < 0.5 * (u - x) ** 2 + sigmoid.potential(u)).all()  # ϱ(x) not a prox
    torch.testing.assert_close(sigmoid.potential(torch.tensor(0.5, dtype=torch.float64)), torch.tensor(-0.125).double())


def test_an_activation_round_trips_through_its_spec_and_foreign_targets_are_refused():
    for act in ALL:
        again = A.build(act.spec())
        assert type(again) is type(act) and again.config == act.config
    for target in ("os.system", "pnp.activations.Activation", "pnp.activations.math", None):
        with pytest.raises(ConfigError, match=r"is not one of pnp\.activations"):
            A.build({"_target_": target})
