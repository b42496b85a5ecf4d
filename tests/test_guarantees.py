"""Denoiser classes, the θ knob and each scheme's covered regime; strict mode refuses what no theorem covers."""

from __future__ import annotations

import pytest
import torch
from conftest import ShrinkDenoiser, small_image

from pnp.denoisers import Relaxed
from pnp.errors import ConfigError
from pnp.guarantees import Guarantee, admm_verdict, composed_averagedness, equivariant, pgd_verdict, relaxed
from pnp.monitor import ConvergenceMonitor
from pnp.problems import deblur
from pnp.schemes import ADMM, PGD

FNE = Guarantee("firmly_nonexpansive")
NONEXPANSIVE = Guarantee("nonexpansive")


def test_declared_classes_are_checked():
    with pytest.raises(ConfigError, match="kind"):
        Guarantee("contractive")
    with pytest.raises(ConfigError, match="alpha"):
        Guarantee("averaged", alpha=1.5)
    with pytest.raises(ConfigError, match="kappa"):
        Guarantee("prox_weakly_convex", kappa=1.0)


def test_relaxation_changes_the_class_as_the_theory_says():
    assert relaxed(FNE, 0.3) == FNE and relaxed(Guarantee("prox_convex"), 0.5).kind == "prox_convex"
    g = relaxed(NONEXPANSIVE, 0.3)
    assert g.kind == "averaged" and g.alpha == pytest.approx(0.3)
    assert relaxed(Guarantee("averaged", alpha=0.5), 0.5).alpha == pytest.approx(0.25)
    g = relaxed(Guarantee("prox_weakly_convex", kappa=0.5), 0.5)
    assert g.kind == "prox_weakly_convex" and g.kappa == pytest.approx(1 / 3)  # θκ/(1 − (1 − θ)κ)
    assert relaxed(NONEXPANSIVE, 1.0) == NONEXPANSIVE
    assert equivariant(FNE, "average") == FNE and equivariant(FNE, "random").kind == "none"
    weakly_convex = Guarantee("prox_weakly_convex", kappa=0.3)
    assert equivariant(weakly_convex, "average") == weakly_convex


def test_composition_of_averaged_operators():
    assert composed_averagedness(0.5, 0.5) == pytest.approx(2 / 3)
    assert composed_averagedness(0.5, 1.0) == 1.0
    assert composed_averagedness(0.0, 0.3) == pytest.approx(0.3)


@pytest.mark.parametrize(
    ("g", "gamma_l", "nu", "covered"),
    [
        (FNE, 1.0, 1.0, True),
        (FNE, 1.99, 1.0, True),
        (FNE, 2.0, 1.0, False),
        (FNE, 1.0, 1.49, True),  # T is 2/3-averaged: nu < 1.5
        (FNE, 1.0, 1.51, False),
        (NONEXPANSIVE, 1.0, 1.0, False),  # plain PGD with a merely nonexpansive D: no theorem
        (NONEXPANSIVE, 1.0, 0.9, True),  # Krasnosel'skii-Mann
        (Guarantee("prox_weakly_convex", kappa=0.5), 1.4, 1.0, True),
        (Guarantee("prox_weakly_convex", kappa=0.5), 1.6, 1.0, False),  # gamma L < 2 - kappa
        (Guarantee("prox_weakly_convex", kappa=0.5), 1.0, 0.9, False),
        (Guarantee("none"), 1.0, 1.0, False),
        (FNE, None, 1.0, False),  # no Lipschitz gradient
    ],
)
def test_pgd_regimes(g, gamma_l, nu, covered):
    v = pgd_verdict(g, gamma_l, nu)
    assert v.covered == covered
    assert bool(v.theorem) == covered or not covered
    assert v.as_dict()["denoiser"]["kind"] == g.kind


def test_admm_needs_a_firmly_nonexpansive_denoiser():
    assert admm_verdict(FNE).covered and admm_verdict(Guarantee("prox_convex")).covered
    assert not admm_verdict(NONEXPANSIVE).covered


def test_relaxed_denoiser_keeps_firm_nonexpansiveness():
    """⟨D_θx − D_θy, x − y⟩ ≥ ‖D_θx − D_θy‖² for the FNE soft-thresholding, at several θ, on random pairs."""

    class Soft(ShrinkDenoiser):
        def forward(self, x, sigma=0.0, **kwargs):
            return torch.sign(x) * (x.abs() - 0.3).clamp_min(0)

    x, y = torch.randn(200, 1, 4, 4, dtype=torch.float64), torch.randn(200, 1, 4, 4, dtype=torch.float64)
    for theta in (0.1, 0.5, 1.0):
        d = Relaxed(Soft(0.0), theta)
        dx, dy = d(x), d(y)
        lhs = ((dx - dy) * (x - y)).flatten(1).sum(1)
        assert (lhs >= (dx - dy).flatten(1).pow(2).sum(1) - 1e-12).all()
    with pytest.raises(ConfigError, match="theta"):
        Relaxed(Soft(0.0), 0.0)


@pytest.mark.parametrize("theta", [0.2, 0.5, 0.8])
def test_relaxed_prox_of_a_weakly_convex_function_is_the_prox_of_a_scaled_moreau_envelope(theta):
    """g(t) = |t| − κt²/2 (κ-weakly convex), prox_g(x) = soft(x, 1)/(1 − κ): θ prox_g + (1 − θ)Id equals the prox of
    g_θ = θ M_{1−θ}g, computed by brute force on a grid, and g_θ is θκ/(1 − (1 − θ)κ)-weakly convex, not less."""
    kappa = 0.6
    t = torch.linspace(-6, 6, 6001, dtype=torch.float64)
    g = t.abs() - kappa * t**2 / 2
    envelope = (g[None, :] + (t[:, None] - t[None, :]) ** 2 / (2 * (1 - theta))).min(1).values
    g_theta = theta * envelope
    x = torch.linspace(-3, 3, 61, dtype=torch.float64)
    prox_brute = t[((t[None, :] - x[:, None]) ** 2 / 2 + g_theta[None, :]).argmin(1)]
    relaxed_prox = theta * torch.sign(x) * (x.abs() - 1).clamp_min(0) / (1 - kappa) + (1 - theta) * x
    assert torch.allclose(prox_brute, relaxed_prox, atol=3e-3)
    s, h = 50, 50 * (t[1] - t[0])  # a wide stencil: the grid minimum's O(h²) error would swamp a narrow one
    curvature = (g_theta[2 * s :] - 2 * g_theta[s:-s] + g_theta[: -2 * s]) / h**2
    modulus = relaxed(Guarantee("prox_weakly_convex", kappa=kappa), theta).kappa
    inner = slice(1000, -1000)  # away from the grid's ends, where the envelope's minimiser is clipped
    assert curvature[inner].min() == pytest.approx(-modulus, rel=1e-2)


def test_relaxation_keeps_the_bounded_below_check_of_the_prior():
    """θ M_{1−θ}g is bounded below exactly where g is: the relaxed denoiser answers with the prior's own check."""

    class Bounded(ShrinkDenoiser):
        def bounded_below(self, sigma):
            return sigma > 0.1

    relaxed_prior = Relaxed(Bounded(0.1), 0.5)
    assert relaxed_prior.bounded_below(0.2) and not relaxed_prior.bounded_below(0.05)
    assert not hasattr(Relaxed(ShrinkDenoiser(0.1), 0.5), "bounded_below")


def test_strict_refuses_what_no_theorem_covers_and_results_carry_the_verdict():
    problem = deblur(small_image(16), seed=0)
    args = (problem.y, problem.physics, ShrinkDenoiser(0.1), problem.x0)
    monitor = ConvergenceMonitor(max_iter=3, progress=False)
    with pytest.raises(ConfigError, match="no convergence theorem"):
        PGD(strict=True).run(*args, sigma=None, norm=problem.norm, monitor=monitor, guarantee=NONEXPANSIVE)
    result = PGD(relaxation=0.9, strict=True).run(
        *args, sigma=None, norm=problem.norm, monitor=monitor, guarantee=NONEXPANSIVE
    )
    assert result.verdict.covered and "Krasnosel" in result.verdict.theorem
    with pytest.raises(ConfigError, match="no convergence theorem"):
        ADMM(strict=True).run(*args, sigma=None, norm=problem.norm, monitor=monitor, guarantee=NONEXPANSIVE)
    assert PGD().run(*args, sigma=None, norm=problem.norm, monitor=monitor).verdict is None  # no class given: no claim


def test_a_denoiser_of_no_class_runs_with_a_warning(caplog):
    """Without ``strict`` a run that no theorem covers warns, a denoiser declared ``none`` (dncnn, bm3d) included."""
    problem = deblur(small_image(16), seed=0)
    monitor = ConvergenceMonitor(max_iter=3, progress=False)
    result = PGD().solve(problem, ShrinkDenoiser(0.1), sigma=None, monitor=monitor, guarantee=Guarantee("none"))
    assert not result.verdict.covered
    assert "no convergence theorem covers this run" in caplog.text and "not guaranteed" in caplog.text
