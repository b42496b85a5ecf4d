"""Learned ridge regularizers (CRR-NN, WCRR-NN) on tiny random models: gradient, prox, convexity, objective."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import small_image, solve_tiny

from pnp.denoisers import RidgeRegularizer
from pnp.denoisers.ridge import SCALE_RATE
from pnp.errors import ConfigError
from pnp.guarantees import Guarantee
from pnp.lipschitz import conv_spectral_norm, jacobian_spectral_norm
from pnp.losses import GradientStepDenoising
from pnp.problems import deblur
from pnp.schemes import AGD, PGD
from pnp.schemes.agd import agd_verdict

SIGMAS = (0.01, 0.05, 0.2)
# (κ, concave_scale): CRR, WCRR with ψ⁻ on μ's scale, WCRR with ψ⁻ on its own scale ν
KINDS = [(0.0, False), (0.6, False), (0.6, True)]


def tiny(weak_convexity: float = 0.0, seed: int = 0, concave_scale: bool = False) -> RidgeRegularizer:
    """A small random model whose splines have random slopes (some outside [0, 1]: the forward clamps them)."""
    torch.manual_seed(seed)
    model = RidgeRegularizer(
        conv_channels=(4, 8),
        kernel_size=3,
        knots=11,
        weak_convexity=weak_convexity,
        concave_scale=concave_scale,
        tol=1e-7,
    )
    with torch.no_grad():
        for spline in (model.plus, model.minus):
            if spline is not None:
                spline.slopes.uniform_(-0.3, 1.3)
        model.log_lam.copy_(torch.tensor([2.0, 1.0]) / SCALE_RATE)
        model.log_mu.copy_(torch.tensor([0.5, -0.5]) / SCALE_RATE)
        if model.log_nu is not None:
            model.log_nu.copy_(torch.tensor([-1.0, -0.3]) / SCALE_RATE)
    return model.double().eval()


@pytest.mark.parametrize(("kappa", "own"), KINDS)
def test_gradient_matches_finite_differences_of_the_cost(kappa, own):
    model = tiny(kappa, concave_scale=own)
    x, v = torch.rand(2, 1, 12, 12, dtype=torch.float64), torch.randn(2, 1, 12, 12, dtype=torch.float64)
    eps = 1e-6
    fd = (model.cost(x + eps * v, 0.05) - model.cost(x - eps * v, 0.05)) / (2 * eps)
    exact = (model.grad(x, 0.05) * v).flatten(1).sum(1)
    torch.testing.assert_close(fd, exact, rtol=1e-5, atol=1e-7)


def test_collapsed_kernel_is_the_composed_convolution_and_has_norm_at_most_one():
    model = tiny()
    x = torch.rand(1, 1, 20, 20, dtype=torch.float64)
    first = model.convs[0] - model.convs[0].mean(dim=(-2, -1), keepdim=True)
    sequential = F.conv2d(F.conv2d(x, first, padding=1), model.convs[1], padding=1)
    collapsed = F.conv2d(x, model.collapsed(), padding=2)
    torch.testing.assert_close(sequential[..., 2:-2, 2:-2], collapsed[..., 2:-2, 2:-2])
    assert model.collapsed().sum(dim=(-2, -1)).abs().max() < 1e-12  # zero-mean filters: R ignores offsets
    for size in (8, 33, 64):
        norm, _ = conv_spectral_norm(model.kernel().detach(), size=size, n_iter=500)
        assert norm <= 1.0 + 1e-9


@pytest.mark.parametrize("sigma", SIGMAS)
def test_prox_satisfies_its_optimality_condition(sigma):
    model = tiny(0.6)
    x = torch.rand(3, 1, 16, 16, dtype=torch.float64)
    u = model(x, sigma)
    residual = u - x + model.grad(u, sigma)
    assert residual.abs().max() < 1e-5 * x.abs().max()
    assert model.last_iterations < model.max_iter


def midpoint_gap(cost, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(c(a) + c(b))/2 − c((a + b)/2) per pair: ≥ 0 for every pair when c is convex."""
    return 0.5 * (cost(a) + cost(b)) - cost(0.5 * (a + b))


@pytest.mark.parametrize("sigma", SIGMAS)
def test_crr_is_convex_and_wcrr_is_kappa_weakly_convex(sigma):
    """Midpoint convexity of R_σ (CRR) and of R_σ + (κ/2)‖·‖² (WCRR) on random pairs, for random weights; for the
    most concave WCRR (ψ⁺ = 0, ψ⁻ of slope 1) R_σ alone is concave, so the check can fail and κ is attained."""
    a, b = torch.rand(64, 1, 10, 10, dtype=torch.float64), torch.rand(64, 1, 10, 10, dtype=torch.float64)
    crr = tiny(0.0, seed=1)
    assert midpoint_gap(lambda x: crr.cost(x, sigma), a, b).min() >= -1e-10
    kappa = 0.6

    def quad(x: torch.Tensor) -> torch.Tensor:
        return 0.5 * kappa * x.flatten(1).pow(2).sum(1)

    for own in (False, True):
        wcrr = tiny(kappa, seed=1, concave_scale=own)
        assert midpoint_gap(lambda x, m=wcrr: m.cost(x, sigma) + quad(x), a, b).min() >= -1e-10
        with torch.no_grad():  # own scale: ψ⁺' must stay above ρψ⁻' at the ends (the cap), so keep a small ψ⁺ kink
            wcrr.plus.slopes.copy_(torch.tensor([0.0] * 4 + [1.0] * 2 + [0.0] * 4) if own else torch.tensor(0.0))
            wcrr.minus.slopes.fill_(1.0)
        assert midpoint_gap(lambda x, m=wcrr: m.cost(x, sigma) + quad(x), a, b).min() >= -1e-10
        if not own:  # R_σ alone concave: the check can fail (own scale: the saturation test below shows φ_σ'' < 0)
            assert midpoint_gap(lambda x, m=wcrr: m.cost(x, sigma), a, b).max() < 0


@pytest.mark.parametrize(("kappa", "own"), KINDS)
def test_prox_lipschitz_constant_is_within_its_class(kappa, own):
    model, bound = tiny(kappa, concave_scale=own), 1 / (1 - kappa)
    x = torch.rand(2, 1, 12, 12, dtype=torch.float64)
    lip = jacobian_spectral_norm(lambda v: model(v, 0.05), x, n_iter=60, tol=1e-6).norm
    assert lip.max() <= bound + 1e-4 and lip.min() > 0.05


@pytest.mark.parametrize(("kappa", "own"), KINDS)
def test_gradient_lipschitz_bound_holds_and_is_nearly_attained(kappa, own):
    """Lip(∇R_σ) (the Hessian's spectral norm, by power iteration) stays below ``grad_lipschitz``, which AGD's step
    size uses; the bound is not loose by more than the spline and filter geometry allow."""
    model = tiny(kappa, concave_scale=own)
    x = torch.rand(2, 1, 12, 12, dtype=torch.float64)
    for sigma in SIGMAS:
        lip = jacobian_spectral_norm(lambda v, s=sigma: model.grad(v, s), x, n_iter=200, tol=1e-8).norm
        bound = model.grad_lipschitz(sigma, x)
        assert (lip <= bound * (1 + 1e-6)).all() and (lip > 0.1 * bound).all(), (sigma, lip, bound)


def test_sigma_is_required_and_checked():
    model = tiny()
    x = torch.rand(1, 1, 8, 8, dtype=torch.float64)
    with pytest.raises(ConfigError, match="sigma"):
        model(x, None)
    with pytest.raises(ConfigError, match="sigma"):
        model(x, -0.1)
    rgb = torch.rand(2, 3, 8, 8, dtype=torch.float64)  # colour: each channel a gray image, σ per image
    out = model(rgb, torch.tensor([0.02, 0.1], dtype=torch.float64))
    torch.testing.assert_close(out[1:], model(rgb[1:], 0.1))
    assert model.cost(rgb, 0.05).shape == (2,)


def test_strength_grows_with_sigma():
    model = tiny()
    x = small_image(16).double() + 0.1 * torch.randn(1, 1, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        moves = [float((model(x, s) - x).norm()) for s in SIGMAS]
    assert moves == sorted(moves) and moves[0] < 0.5 * moves[-1]


def test_objective_never_increases_in_a_tiny_pgd_solve():
    problem = deblur(small_image(16).double(), seed=0)
    model = tiny()
    result = solve_tiny(PGD(), problem, model, Guarantee("prox_convex"), max_iter=60, tol=1e-9)
    f = result.history.objective[:, 0]
    assert torch.isfinite(f).all() and f.shape[0] == result.history.iterations
    assert (f[1:] <= f[:-1] * (1 + 1e-10) + 1e-12).all() and f[-1] < f[0]
    assert result.verdict.covered


@pytest.mark.parametrize(("kappa", "own"), KINDS)
def test_accelerated_gradient_never_increases_the_objective_and_reaches_the_pgd_minimiser(kappa, own):
    """AGD on F = f + R_σ/γ (γ = 1/L) and PnP-PGD with D = prox_{R_σ} minimise the same F: same limit, F monotone
    and the same objective values recorded by both."""
    problem = deblur(small_image(16).double(), seed=0)
    model = tiny(kappa, concave_scale=own)
    guarantee = Guarantee("prox_weakly_convex", kappa=kappa) if kappa else Guarantee("prox_convex")
    runs = {}
    for scheme in (AGD(), PGD()):
        runs[type(scheme).__name__] = solve_tiny(scheme, problem, model, guarantee, max_iter=3000, tol=1e-10)
    agd = runs["AGD"]
    f = agd.history.objective[:, 0]
    assert agd.converged and agd.verdict.covered and torch.isfinite(f).all()
    assert (f[1:] <= f[:-1]).all() and f[-1] < f[0]
    torch.testing.assert_close(agd.x, runs["PGD"].x, rtol=0, atol=1e-6)
    torch.testing.assert_close(f[-1], runs["PGD"].history.objective[-1, 0], rtol=1e-9, atol=0)


def test_accelerated_gradient_needs_an_explicit_prior_and_a_step_within_its_bound():
    problem = deblur(small_image(16), seed=0)
    with pytest.raises(ConfigError, match="explicit prior"):
        AGD().run(problem.y, problem.physics, lambda x, s: x, problem.x0, sigma=0.05, norm=problem.norm)
    with pytest.raises(ConfigError, match="step_factor"):
        AGD(step_factor=1.5, strict=True).run(
            problem.y, problem.physics, tiny().float(), problem.x0, sigma=0.05, norm=1.0
        )
    assert agd_verdict(Guarantee("prox_convex"), 1.0).covered
    assert not agd_verdict(Guarantee("prox_convex"), 1.5).covered
    assert not agd_verdict(Guarantee("firmly_nonexpansive"), 1.0).covered


def test_gradient_step_training_lowers_the_loss():
    torch.manual_seed(0)
    model = RidgeRegularizer(conv_channels=(4, 8), kernel_size=3, knots=11)
    clean = small_image(24, batch=4)
    sigma = torch.full((4,), 0.1)
    noisy = clean + 0.1 * torch.randn_like(clean)
    objective = GradientStepDenoising(steps=3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for step in range(30):
        loss, _ = objective(model, clean, noisy, step, 30, sigma)
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.clamp_weights()
    assert float(loss.detach()) < 0.8 * first
    assert (model.plus.slopes >= 0).all() and (model.plus.slopes <= 1).all()


@pytest.mark.parametrize(("kappa", "own"), KINDS)
def test_spline_slopes_on_their_bounds_receive_gradients(kappa, own):
    """The splines start with slopes exactly 0 or 1 and the projection puts them back there: the loss must still
    move them (a forward ``clamp`` passes no gradient on a bound, which froze the potentials of earlier weights)."""
    torch.manual_seed(0)
    model = RidgeRegularizer(
        conv_channels=(4, 8), kernel_size=3, knots=11, weak_convexity=kappa, concave_scale=own
    ).train()
    clean = small_image(24, batch=2)
    noisy = clean + 0.1 * torch.randn_like(clean)
    loss, _ = GradientStepDenoising(steps=3)(model, clean, noisy, 0, 1, torch.full((2,), 0.1))
    loss.backward()
    splines = [model.plus] if model.minus is None else [model.plus, model.minus]
    assert all(set(torch.unique(s.slopes.detach()).tolist()) <= {0.0, 1.0} for s in splines)
    assert all(float(s.slopes.grad.abs().sum()) > 0 for s in splines)


def test_beyond_the_knots_only_the_convex_part_keeps_curving():
    """Beyond [−r, r] ψ⁻' is constant and ψ⁺' extends linearly: ψ'' = s⁺_end ≥ 0 there, and ψ is the integral of ψ'
    across the knots' ends (the concave part cannot pull R_σ to −∞ quadratically, as a linear ψ⁻' extension did)."""
    model = tiny(0.6)
    r = model.plus.radius
    t = torch.tensor([r, 2 * r, 10 * r, 100 * r], dtype=torch.float64).view(1, 1, 4, 1).expand(1, 8, 4, 1)
    t = torch.cat([t, -t], dim=2).contiguous()
    scales = model.scales(0.05, t)
    a = model.potential(t / scales.mu, scales, integral=False) / scales.lam  # ψ'(t) in μ's units
    tail = model.splines(scales.rho, torch.float64)[3]
    torch.testing.assert_close(a[:, :, 1:4] - a[:, :, :1], tail * (t[:, :, 1:4] - r))
    torch.testing.assert_close(a[:, :, 4:], -a[:, :, :4])
    u = t.clone().requires_grad_()
    (grad,) = torch.autograd.grad(model.potential(u, scales).sum(), u)
    torch.testing.assert_close(grad, model.potential(t, scales, integral=False))


def test_a_weakly_convex_prior_not_bounded_below_is_not_covered():
    """ψ' < 0 at the knots' end with a flat ψ⁺ tail: R_σ → −∞ along large filter responses, F = f + R_σ/γ is not
    bounded below and no nonconvex theorem applies; strict refuses the run, and the convex model is always bounded."""
    model = tiny(0.9)
    with torch.no_grad():
        model.plus.slopes.zero_()
        model.plus.slopes[:, 4:6] = 0.05  # a small ψ⁺' peak at the centre, flat beyond
        model.minus.slopes.fill_(1.0)
    assert not model.bounded_below(0.05) and tiny(0.0).bounded_below(0.05) and tiny(0.6).bounded_below(0.05)
    problem = deblur(small_image(16).double(), seed=0)
    guarantee = Guarantee("prox_weakly_convex", kappa=0.9)
    result = solve_tiny(AGD(), problem, model, guarantee, max_iter=5, tol=1e-10)
    assert not result.verdict.covered and "not bounded below" in result.verdict.conditions
    with pytest.raises(ConfigError, match="not bounded below"):
        solve_tiny(AGD(strict=True), problem, model, guarantee, max_iter=5, tol=1e-10)


def test_momentum_restart_reaches_the_tolerance_sooner_at_the_same_minimiser():
    """AGD's function-value restart (O'Donoghue & Candès 2015) changes the path, not the convex F's minimiser."""
    problem = deblur(small_image(16).double(), seed=0)
    model = tiny()
    fast, plain = (
        solve_tiny(AGD(restart=r), problem, model, Guarantee("prox_convex"), max_iter=3000, tol=1e-10)
        for r in (True, False)
    )
    assert fast.converged and fast.history.iterations < plain.history.iterations
    f = fast.history.objective[:, 0]
    assert (f[1:] <= f[:-1]).all()
    torch.testing.assert_close(fast.x, plain.x, rtol=0, atol=1e-6)


def test_own_concave_scale_saturates_but_stays_bounded_below():
    """With ψ⁻ on its own scale ν, the cap ρ ≤ ψ⁺'(r)/ψ⁻'(r) keeps φ_σ' ≥ 0 beyond both knot ranges for any slopes:
    the potential may flatten out (the concave part cancels the convex one's end value) but never turns down."""
    model = tiny(0.9, concave_scale=True)
    with torch.no_grad():
        model.plus.slopes.zero_()
        model.plus.slopes[:, 4:6] = 0.05  # the slopes that make the shared-scale model unbounded below
        model.minus.slopes.fill_(1.0)
    far = torch.logspace(0, 4, 9, dtype=torch.float64).view(1, 1, -1, 1).expand(3, 8, -1, 1)
    for sigma in SIGMAS:
        scales = model.scales(torch.full((3,), sigma, dtype=torch.float64), far)
        assert model.bounded_below(sigma)
        slope = model.potential(far, scales, integral=False)
        assert (slope >= -1e-12).all() and (slope[..., -1, :] < 1e-9).any()  # saturated channels exist
        assert torch.isfinite(model.cost(torch.rand(2, 1, 12, 12, dtype=torch.float64) * 1e3, sigma)).all()
