"""Schemes: closed-form fixed points, deepinv cross-check, bounds, divergence, batches and dtypes."""

from __future__ import annotations

import logging

import deepinv as dinv
import pytest
import torch
from conftest import ShrinkDenoiser, small_image
from deepinv.optim.data_fidelity import L2

from pnp.errors import ConfigError
from pnp.monitor import ConvergenceMonitor
from pnp.problems import cs, deblur
from pnp.schemes import ADMM, PGD

SCHEMES = {"pgd": PGD, "admm": ADMM}


def explicit_matrix(physics, like: torch.Tensor) -> torch.Tensor:
    eye = torch.eye(like[0].numel(), dtype=like.dtype).view(-1, *like.shape[1:])
    return physics.A(eye).flatten(1).T  # [m, n]


def monitor(max_iter: int, tol: float = 1e-12, **kwargs) -> ConvergenceMonitor:
    return ConvergenceMonitor(max_iter=max_iter, tol=tol, progress=False, **kwargs)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("build", [deblur, cs])
def test_linear_denoiser_reaches_tikhonov_solution(scheme, build):
    """D = prox of (λ/2)‖·‖²: both schemes must reach (AᵀA + (λ/γ) I) x = Aᵀy."""
    x = small_image(16, dtype=torch.float64)
    problem = build(x, seed=0, noise_sigma=0.02)
    lam, gamma = 0.1, 0.5 / problem.norm**2
    result = SCHEMES[scheme](stepsize=gamma).run(
        problem.y, problem.physics, ShrinkDenoiser(lam), problem.x0, sigma=0.0, norm=problem.norm, monitor=monitor(3000)
    )
    a = explicit_matrix(problem.physics, x)
    rhs = a.T @ problem.y.flatten()
    expected = torch.linalg.solve(a.T @ a + (lam / gamma) * torch.eye(a.shape[1], dtype=a.dtype), rhs)
    assert result.converged
    # ADMM on dense CS uses deepinv's CG prox (inexact, tol 1e-7); the closed forms are exact
    torch.testing.assert_close(result.x.flatten(), expected, rtol=1e-5, atol=1e-6)


def tiny_dncnn() -> dinv.models.DnCNN:
    """Random weights, scaled down so that the residual network stays close to the identity (no blow-up)."""
    torch.manual_seed(0)
    net = dinv.models.DnCNN(in_channels=1, out_channels=1, depth=3, nf=8, pretrained=None).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(0.3)
    return net


DENOISERS = {"wavelet": lambda: dinv.models.WaveletDenoiser(level=2, wv="db4"), "dncnn": tiny_dncnn}


# (ours, deepinv's, deepinv's init from x0): our ADMM (x, z, u) are deepinv's (u, x, z), its estimate is our z
DEEPINV = {
    "pgd": (PGD, dinv.optim.PGD, lambda x0: x0),
    "admm": (ADMM, dinv.optim.ADMM, lambda x0: (x0, torch.zeros_like(x0))),
}


@pytest.mark.parametrize("scheme", DEEPINV)
@pytest.mark.parametrize("denoiser", DENOISERS)
@pytest.mark.parametrize("build", [deblur, cs])
def test_iterates_match_deepinv(scheme, denoiser, build):
    ours_cls, theirs_cls, init = DEEPINV[scheme]
    problem = build(small_image(32), seed=2)
    den, sigma, n = DENOISERS[denoiser](), 0.03, 25
    ours = ours_cls().run(
        problem.y, problem.physics, den, problem.x0, sigma=sigma, norm=problem.norm, monitor=monitor(n)
    )
    ref = theirs_cls(
        data_fidelity=L2(),
        prior=dinv.optim.PnP(den),
        stepsize=ours.stepsize,
        sigma_denoiser=sigma,
        max_iter=n,
        early_stop=False,
    )
    with torch.no_grad():
        theirs = ref(problem.y, problem.physics, init=init(problem.x0))
    assert ours.history.iterations == n
    assert ((ours.x - theirs).norm() / theirs.norm()).item() < 1e-5


def test_solve_runs_the_scheme_on_a_problem():
    """``Scheme.solve(problem, …)`` is ``run`` on the problem's y, A, x_0, ‖A‖ and ground truth; ``x0`` and
    ``x_true=None`` override the start and drop the PSNR curve."""
    problem = deblur(small_image(16, batch=2), seed=0)
    den = ShrinkDenoiser(0.1)
    run = PGD().run(
        problem.y,
        problem.physics,
        den,
        problem.x0,
        sigma=0.0,
        norm=problem.norm,
        x_true=problem.x_true,
        monitor=monitor(6),
    )
    solved = PGD().solve(problem, den, sigma=0.0, monitor=monitor(6))
    torch.testing.assert_close(solved.x, run.x)
    torch.testing.assert_close(solved.history.psnr, run.history.psnr)
    zero = torch.zeros_like(problem.x0)
    other = PGD().solve(problem, den, sigma=0.0, monitor=monitor(6), x0=zero, x_true=None)
    from_zero = PGD().run(problem.y, problem.physics, den, zero, sigma=0.0, norm=problem.norm, monitor=monitor(6))
    torch.testing.assert_close(other.x, from_zero.x)
    assert other.history.psnr is None and not torch.allclose(other.x, run.x)
    given = PGD().solve(problem, den, sigma=0.0, monitor=monitor(6), norm=1.5 * problem.norm)  # another ‖A‖: another γ
    assert given.stepsize == pytest.approx(run.stepsize / 2.25)


def test_relaxation_interpolates_with_previous_iterate():
    problem = deblur(small_image(16), seed=0)
    den = DENOISERS["wavelet"]()
    one = PGD(relaxation=1.0).run(problem.y, problem.physics, den, problem.x0, sigma=0.02, norm=1.0, monitor=monitor(1))
    half = PGD(relaxation=0.5).run(
        problem.y, problem.physics, den, problem.x0, sigma=0.02, norm=1.0, monitor=monitor(1)
    )
    torch.testing.assert_close(half.x, 0.5 * (problem.x0 + one.x))


def test_batch_elements_are_independent():
    x = small_image(32, batch=3)
    problem = deblur(x, seed=0)
    den = DENOISERS["wavelet"]()
    both = PGD().run(problem.y, problem.physics, den, problem.x0, sigma=0.02, norm=1.0, x_true=x, monitor=monitor(15))
    for i in range(3):
        one = PGD().run(
            problem.y[i : i + 1],
            problem.physics,
            den,
            problem.x0[i : i + 1],
            sigma=0.02,
            norm=1.0,
            x_true=x[i : i + 1],
            monitor=monitor(15),
        )
        torch.testing.assert_close(both.x[i : i + 1], one.x, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(both.history.psnr[:, i], one.history.psnr[:, 0], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("scheme", SCHEMES)
def test_dtype_is_preserved(dtype, scheme):
    problem = deblur(small_image(16, dtype=dtype), seed=0)
    result = SCHEMES[scheme]().run(
        problem.y,
        problem.physics,
        DENOISERS["wavelet"]().to(dtype),
        problem.x0,
        sigma=0.02,
        norm=problem.norm,
        monitor=monitor(5),
    )
    assert result.x.dtype == dtype
    assert result.history.residual.dtype == dtype


def test_step_above_bound_warns_and_strict_raises(caplog):
    problem = deblur(small_image(16), seed=0)
    args = (problem.y, problem.physics, ShrinkDenoiser(0.1), problem.x0)
    with caplog.at_level(logging.WARNING, logger="pnp"):
        PGD(step_factor=2.5).run(*args, sigma=0.0, norm=problem.norm, monitor=monitor(2))
    assert "not below 2/L" in caplog.text
    with pytest.raises(ConfigError, match="strict"):
        PGD(step_factor=2.5, strict=True).run(*args, sigma=0.0, norm=problem.norm, monitor=monitor(2))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pnp"):
        PGD(step_factor=1.99).run(*args, sigma=0.0, norm=problem.norm, monitor=monitor(2))
    assert caplog.text == ""


def test_too_large_step_is_detected_as_divergence():
    problem = deblur(small_image(16), seed=0)
    result = PGD(step_factor=4.0).run(
        problem.y, problem.physics, ShrinkDenoiser(0.0), problem.x0, sigma=0.0, norm=problem.norm, monitor=monitor(500)
    )
    assert result.diverged and not result.converged
    assert result.history.iterations < 500
    assert "diverged at iteration" in result.history.message
    assert torch.isfinite(result.x).all()


class NaNAfter(ShrinkDenoiser):
    """Returns NaN from the ``n``-th call on."""

    def __init__(self, n: int) -> None:
        super().__init__(0.1)
        self.calls, self.n = 0, n

    def forward(self, x, sigma=0.0, **kwargs):
        self.calls += 1
        out = super().forward(x)
        return out * float("nan") if self.calls >= self.n else out


@pytest.mark.parametrize("scheme", SCHEMES)
def test_nan_stops_the_run_and_keeps_the_last_iterate_before_it(scheme):
    problem = deblur(small_image(16), seed=0)
    before = SCHEMES[scheme]().run(
        problem.y, problem.physics, NaNAfter(10**9), problem.x0, sigma=0.0, norm=1.0, monitor=monitor(6, check_every=3)
    )
    result = SCHEMES[scheme]().run(
        problem.y, problem.physics, NaNAfter(7), problem.x0, sigma=0.0, norm=1.0, monitor=monitor(50, check_every=4)
    )
    assert result.diverged
    assert result.history.iterations == 8  # detected at the first check point after the NaN
    assert "diverged at iteration 7" in result.history.message and "returning iterate 6" in result.history.message
    assert result.history.returned == [6]
    torch.testing.assert_close(result.x, before.x)  # iterate 6, between two check points: kept by reference


def test_only_the_element_that_blew_up_stops_and_falls_back():
    problem = deblur(small_image(16, batch=2), seed=0)

    class NaNInSecond(ShrinkDenoiser):
        calls = 0

        def forward(self, x, sigma=0.0, **kwargs):
            self.calls += 1
            out = super().forward(x)
            return torch.cat([out[:1], out[1:] * float("nan")]) if self.calls >= 7 else out

    ref = PGD().run(
        problem.y, problem.physics, ShrinkDenoiser(0.1), problem.x0, sigma=0.0, norm=1.0, monitor=monitor(50)
    )
    ref6 = PGD().run(
        problem.y, problem.physics, ShrinkDenoiser(0.1), problem.x0, sigma=0.0, norm=1.0, monitor=monitor(6)
    )
    result = PGD().run(
        problem.y,
        problem.physics,
        NaNInSecond(0.1),
        problem.x0,
        sigma=0.0,
        norm=1.0,
        monitor=monitor(50, check_every=4),
    )
    assert result.diverged and result.history.returned == [50, 6]
    torch.testing.assert_close(result.x[:1], ref.x[:1])  # the healthy element went on to its own end
    torch.testing.assert_close(result.x[1:], ref6.x[1:])  # the other its last one before the NaN


@pytest.mark.parametrize("name", ["dncnn", "fne_dncnn", "euler", "lpn", "crr"])
def test_every_shipped_network_runs_in_float64_when_asked_and_is_refused_otherwise(name):
    from pnp.weights import pretrained

    problem = deblur(small_image(16).double(), seed=0)
    args = (problem.y, problem.physics)
    with pytest.raises(ConfigError, match=r"weights are torch.float32 .* iterates torch.float64"):
        PGD().run(*args, pretrained(name), problem.x0, sigma=0.05, norm=problem.norm, monitor=monitor(2))
    result = PGD().run(
        *args, pretrained(name, dtype=torch.float64), problem.x0, sigma=0.05, norm=problem.norm, monitor=monitor(2)
    )
    assert result.x.dtype == torch.float64 and torch.isfinite(result.x).all()


def super_resolution() -> dinv.physics.LinearPhysics:
    return dinv.physics.Downsampling(img_size=(1, 32, 32), factor=2, filter="gaussian", padding="circular")


@pytest.mark.parametrize(
    "make",
    [super_resolution, lambda: dinv.physics.Inpainting(img_size=(1, 32, 32), mask=0.5, rng=torch.manual_seed(0))],
)
def test_any_deepinv_physics_runs_without_its_norm(make):
    from pnp.tensors import batch_psnr

    x, physics = small_image(32), make()
    y = physics(x)
    x0 = physics.A_adjoint(y)
    result = PGD().run(y, physics, dinv.models.WaveletDenoiser(), x0, sigma=0.02, monitor=monitor(300))
    assert not result.diverged and float(batch_psnr(result.x, x)) > float(batch_psnr(x0, x)) + 1


def test_a_squared_norm_from_deepinv_is_caught(caplog):
    x, physics = small_image(32), super_resolution()
    y = physics(x)
    squared = float(physics.compute_norm(torch.randn_like(x), verbose=False))  # deepinv's default: ‖A‖²
    args = (y, physics, dinv.models.WaveletDenoiser(), physics.A_adjoint(y))
    with caplog.at_level("WARNING", logger="pnp"):
        PGD().run(*args, sigma=0.02, norm=squared, monitor=monitor(2))
    assert "is below ||A||" in caplog.text and "squared=False" in caplog.text
    with pytest.raises(ConfigError, match="strict"):
        PGD(strict=True).run(*args, sigma=0.02, norm=squared, monitor=monitor(2))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_batch_is_a_set_of_independent_solves(scheme):
    """Each element stops on its own (converged elements are frozen): its result equals its solve alone."""
    from pnp.data import held_out, make_split

    images = held_out(make_split(), 32, "test")  # camera, astronaut, coffee: they converge at different iterations
    problem = deblur(images, seed=0)
    den = dinv.models.WaveletDenoiser(level=2)

    def run(i: slice):
        return SCHEMES[scheme]().run(
            problem.y[i],
            problem.physics,
            den,
            problem.x0[i],
            sigma=0.03,
            norm=1.0,
            monitor=ConvergenceMonitor(max_iter=400, tol=1e-5, check_every=5, progress=False),
        )

    batch = run(slice(None))
    alone = [run(slice(i, i + 1)) for i in range(3)]
    assert batch.history.converged and all(a.history.converged for a in alone)
    assert batch.history.returned == [a.history.returned[0] for a in alone]
    assert len(set(batch.history.returned)) > 1  # the elements did stop at different iterations
    for i, a in enumerate(alone):
        err = (batch.x[i] - a.x[0]).norm() / a.x[0].norm()
        assert err < 1e-6, (i, float(err))
