"""Runs that used to return a wrong answer silently, or depend on what ran before (each a reproduction of issue 11)."""

from __future__ import annotations

import math

import deepinv as dinv
import pytest
import torch
from conftest import ShrinkDenoiser, small_image
from deepinv.optim.data_fidelity import L1, PoissonLikelihood

from pnp.denoisers import EquivariantDenoiser, EulerNet
from pnp.errors import ConfigError
from pnp.linear import cg_tolerance, has_closed_form_prox, l1_prox, l2_prox
from pnp.lipschitz import conv_norm_bound
from pnp.losses import hinge_log_capped
from pnp.monitor import ConvergenceMonitor
from pnp.outputs import RunSummary, iterations_to_tol, metrics
from pnp.problems import cs, deblur
from pnp.runtime import seed_everything
from pnp.schemes import ADMM, AGD, PGD
from pnp.schemes.base import gradient_lipschitz


def monitor(max_iter: int, tol: float = 1e-12, **kwargs) -> ConvergenceMonitor:
    return ConvergenceMonitor(max_iter=max_iter, tol=tol, progress=False, **kwargs)


def test_zero_start_gives_meaningful_residuals_and_converges():
    problem = deblur(small_image(16), seed=0, init="zeros")
    assert float(problem.x0.abs().max()) == 0
    result = PGD().solve(problem, ShrinkDenoiser(0.1), sigma=0.0, monitor=monitor(300, 1e-5))
    assert result.converged
    assert float(result.history.rel_residual[0, 0]) == pytest.approx(1.0)  # c_1 = ‖x_1‖ / max(‖x_0‖, ‖x_1‖)


def test_a_run_at_the_fixed_point_zero_reports_zero_residuals():
    x0 = torch.zeros(1, 1, 8, 8)
    physics = dinv.physics.Denoising(dinv.physics.GaussianNoise(0.0))
    result = PGD().run(
        x0, physics, ShrinkDenoiser(0.1), x0, sigma=0.0, norm=1.0, monitor=monitor(10, 1e-5, check_every=1)
    )
    assert result.converged and float(result.history.rel_residual.abs().max()) == 0


@pytest.mark.parametrize("fidelity", [L1(), PoissonLikelihood(gain=0.1, bkg=0.0)], ids=["l1", "poisson-bkg0"])
@pytest.mark.parametrize("scheme", [PGD, AGD])
def test_gradient_schemes_refuse_a_fidelity_without_lipschitz_gradient(fidelity, scheme):
    problem = deblur(small_image(16), seed=0)
    with pytest.raises(ConfigError, match="scheme=admm"):
        scheme().run(
            problem.y, problem.physics, ShrinkDenoiser(0.1), problem.x0, sigma=0.0, norm=problem.norm, fidelity=fidelity
        )


def test_pgd_on_l1_with_a_forced_step_is_reported_stagnant():
    """The reproduction: PGD on the non-smooth L1 fidelity oscillates at c_k ≈ const; no longer returned as a result."""
    problem = deblur(small_image(16), seed=0)
    result = PGD(stepsize=1.0 / problem.norm**2).solve(
        problem, ShrinkDenoiser(0.01), sigma=0.0, fidelity=L1(), monitor=monitor(60)
    )
    assert result.diverged and result.history.stagnated
    assert "stagnated" in result.history.message


def test_a_steady_run_cut_short_by_max_iter_is_not_called_stagnant():
    """c_k 2 % below c_1 at the end, yet falling steadily (CT with TV from the FBP start at a shortened budget):
    not converged, not stagnant; the same level without the fall is."""
    mon = monitor(200)
    mon.start(torch.ones(1, 1, 4, 4))
    steady = 1.0 - 0.001 * torch.arange(200.0)  # 1 → 0.8: above 0.5 c_1 throughout, 2.5 % down per eighth
    mon._residual[:200, 0] = steady
    assert mon.stagnated(199) == [False]
    mon._residual[:200, 0] = 1.0 + 0.1 * (-1.0) ** torch.arange(200.0)  # oscillating at a constant level
    assert mon.stagnated(199) == [True]


def test_a_slowly_converging_run_is_not_called_stagnant():
    problem = deblur(small_image(16), seed=0)
    result = PGD().run(
        problem.y, problem.physics, ShrinkDenoiser(1e-3), problem.x0, sigma=0.0, norm=problem.norm, monitor=monitor(60)
    )
    assert not result.converged and not result.diverged and not result.history.stagnated


@pytest.mark.parametrize("gain", [0.01, 0.1, 1.0])
def test_poisson_step_bound_uses_gain_and_background(gain):
    """Lip(∇f) = ‖A‖²·max(y/g)/β² bounds the gradient's variation between non-negative points."""
    gen = torch.Generator().manual_seed(0)
    y = gain * torch.poisson(20 * torch.rand(1, 1, 8, 8, generator=gen), generator=gen)
    fidelity = PoissonLikelihood(gain=gain, bkg=0.5)
    physics = dinv.physics.Denoising(dinv.physics.GaussianNoise(0.0))
    lip = gradient_lipschitz(fidelity, 1.0, y)
    assert lip == pytest.approx(float((y / gain).max()) / 0.25)
    ratios = []
    for _ in range(20):
        u, v = torch.rand(2, 1, 1, 8, 8, generator=gen) * 3
        du = fidelity.grad(u, y, physics) - fidelity.grad(v, y, physics)
        ratios.append(float(du.norm() / (u - v).norm()))
    assert max(ratios) <= lip


def test_two_runs_with_one_tv_denoiser_object_are_identical():
    problem = deblur(small_image(16), seed=0)
    tv = dinv.models.TVDenoiser(n_it_max=20)
    runs = [
        PGD().run(problem.y, problem.physics, tv, problem.x0, sigma=0.05, norm=problem.norm, monitor=monitor(5))
        for _ in range(2)
    ]
    assert torch.equal(runs[0].x, runs[1].x)


def test_two_runs_with_one_equivariant_wrapper_are_identical():
    problem = deblur(small_image(16), seed=0)
    denoiser = EquivariantDenoiser(dinv.models.TVDenoiser(n_it_max=20), mode="random", seed=3)
    runs = [
        PGD().run(problem.y, problem.physics, denoiser, problem.x0, sigma=0.05, norm=problem.norm, monitor=monitor(6))
        for _ in range(2)
    ]
    assert torch.equal(runs[0].x, runs[1].x)


def test_euler_bound_follows_loaded_and_stepped_weights():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, 1, 12, 12, generator=gen)
    model, other = EulerNet(width=4, depth=2).eval(), EulerNet(width=4, depth=2).eval()
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(3.0)  # weights whose norms differ: the step caps differ
    model(x)  # caches the bounds of the first weights
    model.load_state_dict(other.state_dict())
    torch.testing.assert_close(model(x), other(x))
    for layer_m, layer_o in zip(model.layers, other.layers, strict=True):
        torch.testing.assert_close(layer_m.certified_norm(), conv_norm_bound(layer_o.weight))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    model(x).square().sum().backward()
    opt.step()  # an optimiser step in eval mode changes the weights: the bound must follow
    for layer in model.layers:
        torch.testing.assert_close(layer.certified_norm(), conv_norm_bound(layer.weight))


def test_penalty_keeps_a_gradient_above_its_cap():
    sq = torch.tensor([0.5, 2.0, 10.0, 1e4], requires_grad=True)
    out = hinge_log_capped(sq, 0.9, 10.0)
    out.sum().backward()
    assert out[0] == 0.9 and out[1] == 2.0 and out[2] == 10.0
    assert out[3] < 1e4 and sq.grad[3] > 0  # a hard clamp would give 0
    assert sq.grad.tolist()[:3] == [0.0, 1.0, 1.0]


@pytest.mark.parametrize("grid", [6, 8, 12])
def test_conv_norm_bound_holds_for_peaks_between_grid_points(grid):
    """Kernels whose symbol peaks midway between the grid's frequencies, the worst case of the proof."""
    taps = torch.arange(3) - 1
    omega = math.pi / grid
    for scale in (0.3, 1.0, 3.0):
        envelope = torch.exp(-scale * (taps[:, None] ** 2 + taps[None, :] ** 2).double())
        kernel = (envelope * torch.cos(omega * (taps[:, None] + taps[None, :]))).view(1, 1, 3, 3)
        sup = torch.fft.rfft2(kernel[:, 0], s=(2048, 2048)).abs().amax()
        assert float(conv_norm_bound(kernel, grid=grid)) >= float(sup)


def test_cg_prox_solves_the_prox_and_warm_start_saves_iterations():
    physics = dinv.physics.Blur(dinv.physics.blur.gaussian_blur(1.6).double(), padding="reflect")
    assert not has_closed_form_prox(physics)
    x = small_image(24, batch=2, dtype=torch.float64)
    y, z, kappa = physics(x), x + 0.05 * torch.randn_like(x), 3.0
    calls = []
    counted = dinv.physics.Blur.A_adjoint_A

    def counting(self, v, **kw):
        calls.append(1)
        return counted(self, v, **kw)

    physics.A_adjoint_A = counting.__get__(physics)
    tol = cg_tolerance(torch.float64, 1e-10)
    sol = l2_prox(physics, z, physics.A_adjoint(y), kappa, z, tol, max_iter=500, check_every=1)
    cold = len(calls)
    optimality = sol - z + kappa * physics.A_adjoint(physics.A(sol) - y)
    assert float(optimality.norm() / z.norm()) < 1e-8
    calls.clear()
    nearby = z + 1e-7 * torch.randn_like(z)  # the next ADMM prox input: close to the last one
    l2_prox(physics, nearby, physics.A_adjoint(y), kappa, sol, tol, max_iter=500, check_every=1)
    assert len(calls) < cold / 2
    assert cg_tolerance(torch.float32, 1e-7) == pytest.approx(100 * torch.finfo(torch.float32).eps)


def test_admm_with_cg_reads_the_host_a_bounded_number_of_times(monkeypatch):
    problem = deblur(small_image(24), seed=0, padding="reflect")
    norm = problem.norm  # its power iteration reads the host; not part of the loop
    reads = []
    original = torch.Tensor.__bool__
    monkeypatch.setattr(torch.Tensor, "__bool__", lambda t: reads.append(1) or original(t))
    scheme = ADMM(cg_max_iter=50)
    result = scheme.run(
        problem.y, problem.physics, ShrinkDenoiser(0.1), problem.x0, sigma=0.0, norm=norm, monitor=monitor(5)
    )
    assert torch.isfinite(result.x).all()
    assert len(reads) <= 5 * 5  # ≤ ⌈50 / 10⌉ reads per prox, 5 iterations (deepinv's CG: one per CG step)


class LargestBatch(ShrinkDenoiser):
    """A non-equivariant denoiser (a position-dependent gain) that records the largest batch it is given."""

    largest = 0

    def forward(self, x, sigma=0.0, **kwargs):
        self.largest = max(self.largest, x.shape[0])
        ramp = torch.linspace(0.5, 1.5, x.shape[-1], dtype=x.dtype)
        return x * ramp / (1.0 + self.lam)


@pytest.mark.parametrize("size", [(12, 12), (10, 14)])
def test_equivariant_average_runs_in_bounded_chunks(size):
    x = torch.rand(2, 1, *size, generator=torch.Generator().manual_seed(0))
    whole = EquivariantDenoiser(LargestBatch(0.1), mode="average", max_shift=2, chunk=1000)
    chunked = EquivariantDenoiser(LargestBatch(0.1), mode="average", max_shift=2, chunk=8)
    torch.testing.assert_close(chunked(x, 0.1), whole(x, 0.1))
    assert chunked.denoiser.largest == 8 * 2 and whole.denoiser.largest > 8 * 2
    assert chunked.calls(size[0] == size[1]) is chunked.calls(size[0] == size[1])  # computed once per kind of shape


@pytest.mark.parametrize("build", [deblur, cs])
def test_l1_prox_matches_its_optimality_condition(build):
    """z − u ∈ γAᵀ∂‖Au − y‖₁: with v the returned dual, u = z − Aᵀv, |v| ≤ γ and v = γ·sign(Au − y) where Au ≠ y."""
    problem = build(small_image(16, dtype=torch.float64), seed=0)
    z = problem.x0 + 0.1
    gamma = 0.02
    u, v = l1_prox(problem.physics, z, problem.y, gamma, problem.norm, torch.zeros_like(problem.y), 1e-12, 5000, 1)
    torch.testing.assert_close(u, z - problem.physics.A_adjoint(v))
    residual = problem.physics.A(u) - problem.y
    assert float(v.abs().max()) <= gamma * (1 + 1e-12)
    off = residual.abs() > 1e-6
    torch.testing.assert_close(v[off], gamma * residual[off].sign(), atol=1e-6, rtol=0)


def test_iterations_to_tol_counts_from_where_c_k_stays_below():
    c = torch.tensor([[1.0, 1.0], [0.5, 1e-6], [1e-6, 1e-6], [1e-3, 1e-6], [1e-6, 1e-6], [1e-7, 1.0]])
    assert iterations_to_tol(c, 1e-5).tolist() == [5, 0]  # a dip below tol that does not last is not convergence


def test_cli_metrics_and_benchmark_rows_share_one_summary():
    problem = deblur(small_image(16, batch=2), seed=0)
    result = PGD().solve(problem, ShrinkDenoiser(0.1), sigma=0.0, monitor=monitor(300, 1e-5))
    m, s = metrics(problem, result), RunSummary.of(problem, result)
    assert m["converged"] == all(s.converged) == result.converged
    assert m["converged_per_image"] == s.converged and m["iterations_to_tol"] == s.iterations_to_tol
    assert m["psnr_per_image"] == s.psnr and m["ssim"] == pytest.approx(sum(s.ssim) / 2)
    short = metrics(problem, PGD().solve(problem, ShrinkDenoiser(0.1), sigma=0.0, monitor=monitor(3, 1e-5)))
    assert short["iterations_to_tol"] == [None, None] and short["converged_per_image"] == [False, False]


def test_seeding_asks_for_deterministic_kernels_on_a_gpu(monkeypatch):
    flags = {}
    record = lambda on, warn_only: flags.update(on=on, warn=warn_only)  # noqa: E731
    monkeypatch.setattr(torch, "use_deterministic_algorithms", record)
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", False)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    seed_everything(3, torch.device("cpu"))
    assert flags == {} and torch.initial_seed() == 3  # nothing to change on the CPU
    seed_everything(3, torch.device("cuda"))
    assert flags == {"on": True, "warn": True}
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
