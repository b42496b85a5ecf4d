"""The gradient-step DnCNN (D = Id − ∇g, g = ½‖R‖²) on tiny random networks, and accelerated gradient with
backtracking, the scheme that covers it."""

from __future__ import annotations

import pytest
import torch
from conftest import small_image, solve_tiny
from torch import nn

from pnp import weights
from pnp.denoisers import DnCNN, GradientStepDnCNN
from pnp.errors import ConfigError
from pnp.guarantees import Guarantee, admm_verdict, pgd_verdict, relaxed
from pnp.monitor import ConvergenceMonitor
from pnp.outputs import RunSummary, metrics
from pnp.problems import deblur
from pnp.schemes import AGD, PGD
from pnp.schemes.agd import agd_verdict

SIGMAS = (0.01, 0.1)


def tiny(seed: int = 0) -> GradientStepDnCNN:
    torch.manual_seed(seed)
    return GradientStepDnCNN(depth=3, width=4).double().eval()


@pytest.mark.parametrize("sigma", SIGMAS)
def test_gradient_is_the_gradient_of_the_potential(sigma):
    model, x = tiny(), torch.rand(2, 1, 8, 8, dtype=torch.float64)
    d = torch.randn_like(x)
    eps = 1e-6
    with torch.no_grad():
        secant = (model.cost(x + eps * d, sigma) - model.cost(x - eps * d, sigma)) / (2 * eps)
    torch.testing.assert_close(secant, (model.grad(x, sigma) * d).flatten(1).sum(1), rtol=1e-6, atol=1e-8)
    assert (model.cost(x, sigma) >= 0).all() and model.bounded_below(sigma)


@pytest.mark.parametrize("sigma", SIGMAS)
def test_the_jacobian_is_symmetric_as_a_hessian_step_must_be(sigma):
    model, x = tiny(1), torch.rand(1, 1, 5, 5, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda u: model(u, sigma), x).reshape(25, 25)
    torch.testing.assert_close(jac, jac.T, rtol=0, atol=1e-10)
    assert not torch.allclose(jac, torch.eye(25, dtype=jac.dtype), atol=1e-3)  # not a trivial map


def test_forward_is_a_gradient_step_in_inference_mode_and_per_channel():
    model, x = tiny(), torch.rand(2, 3, 8, 8, dtype=torch.float64)
    sigma = torch.tensor([0.02, 0.05], dtype=torch.float64)
    with torch.inference_mode():
        out = model(x, sigma)
    assert not out.requires_grad
    gray = x.reshape(6, 1, 8, 8)
    expected = gray - model.grad(gray, sigma.repeat_interleave(3))
    torch.testing.assert_close(out, expected.reshape(x.shape))
    per_channel = model.cost(gray, sigma.repeat_interleave(3)).view(2, 3).sum(1)
    torch.testing.assert_close(model.cost(x, sigma).detach(), per_channel.detach())
    with pytest.raises(ConfigError, match="needs the noise level"):
        model(x)


def test_training_through_the_gradient_lowers_the_denoising_loss_and_the_weights_round_trip(tmp_path):
    """Double back-propagation: the per-σ loss of D = x − ∇g falls; a dncnn state dict of the same size loads."""
    model = GradientStepDnCNN(depth=3, width=8).train()
    model.load_state_dict(DnCNN(depth=3, width=8, conditional=True).state_dict())
    clean = small_image(16, batch=4)
    torch.manual_seed(0)
    noise = 0.05 * torch.randn_like(clean)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        loss = (model(clean + noise, 0.05) - clean).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.6 * min(losses[0], float(noise.pow(2).mean()))  # below the noisy input's error
    weights.save(model.eval(), tmp_path / "gs.pt", {"steps": 60})
    x = torch.rand(1, 1, 8, 8)
    torch.testing.assert_close(weights.pretrained(path=str(tmp_path / "gs.pt"))(x, 0.05), model(x, 0.05))


def test_an_unknown_activation_is_refused():
    with pytest.raises(ConfigError, match="activation must be one of"):
        GradientStepDnCNN(activation="tanh")


def test_its_class_is_covered_by_accelerated_gradient_only():
    g = Guarantee("gradient_step", basis="construction")
    assert agd_verdict(g, 1.0).covered and "backtracking" in agd_verdict(g, 1.0).theorem
    assert not pgd_verdict(g, 1.0, 1.0).covered and not admm_verdict(g).covered
    assert relaxed(g, 0.5).kind == "gradient_step"  # θD + (1 − θ)Id = Id − ∇(θg)
    problem = deblur(small_image(16).double(), seed=0)
    with pytest.raises(ConfigError, match="no convergence theorem"):
        PGD(strict=True).run(problem.y, problem.physics, tiny(), problem.x0, sigma=0.05, norm=problem.norm, guarantee=g)


class Quadratic(nn.Module):
    """g(x) = (c/2)‖x‖², D = Id − ∇g; ``grad_lipschitz`` reports ``bound`` (None: unknown, as for a network)."""

    def __init__(self, c: float, bound: float | None) -> None:
        super().__init__()
        self.c, self.bound = c, bound

    def grad(self, x: torch.Tensor, sigma=None) -> torch.Tensor:
        return self.c * x

    def cost(self, x: torch.Tensor, sigma=None) -> torch.Tensor:
        return 0.5 * self.c * x.double().pow(2).flatten(1).sum(1)

    def grad_lipschitz(self, sigma, like: torch.Tensor) -> torch.Tensor | None:
        return None if self.bound is None else like.new_full((like.shape[0],), self.bound)

    def forward(self, x: torch.Tensor, sigma=None) -> torch.Tensor:
        return x - self.grad(x)


def test_backtracking_finds_the_step_that_no_bound_gives():
    """With Lip(∇g) = 40 unknown, AGD starts from the guess 1, halves its step and reaches the minimiser of
    F = ½‖Ax − y‖² + g/γ, as with the true bound; a bound that is wrong (1) stalls it where it started."""
    problem = deblur(small_image(16, batch=2).double(), seed=0)
    guarantee = Guarantee("gradient_step", basis="test")

    def solve(bound: float | None):
        return solve_tiny(AGD(), problem, Quadratic(40.0, bound), guarantee, max_iter=3000, tol=1e-8)

    searched, known, wrong = solve(None), solve(40.0), solve(1.0)
    f = searched.history.objective
    assert searched.converged and searched.verdict.covered and (f[1:] <= f[:-1]).all()
    torch.testing.assert_close(searched.x, known.x, rtol=0, atol=1e-6)
    assert (wrong.x - known.x).norm() > 100 * (searched.x - known.x).norm()


class Coarse(Quadratic):
    """g = (c/2)‖x‖² whose cost is known to a resolution q only (as a float32 network's cost): far from the minimiser
    F's decreases show, near it they fall below q and the line search finds none; ``q = inf``: a cost that never
    changes (0), where no step decreases F even at x_0."""

    def __init__(self, c: float, q: float) -> None:
        super().__init__(c, None)
        self.q = q

    def cost(self, x: torch.Tensor, sigma=None) -> torch.Tensor:
        exact = super().cost(x)
        return (exact / self.q).floor() * self.q if self.q < float("inf") else torch.zeros_like(exact)


def test_a_step_that_shrank_to_nothing_is_not_convergence():
    """Backtracking ends where no step decreases F: c_k = 0. One step at the initial length α₀ (searched at x_0) says
    whether that is a critical point: yes for an exact cost (the residual recorded, below tol), no where the cost's
    resolution stopped the search short of it, or where no step ever decreased F (the monitor's "converged"
    withdrawn, per element, with a message)."""
    problem = deblur(small_image(16, batch=2).double(), seed=0)
    guarantee = Guarantee("gradient_step", basis="test")

    def solve(prior):
        return solve_tiny(AGD(), problem, prior, guarantee, max_iter=3000, tol=1e-8)

    good = solve(Quadratic(40.0, None))
    assert good.converged and max(good.history.stationarity) < 1e-8 and good.history.stationary == [True, True]
    for q in (1e-3, float("inf")):
        stuck = solve(Coarse(40.0, q))
        h = stuck.history
        assert h.rel_residual[-1].max() < 1e-8  # the monitor alone would have called it converged
        assert not stuck.converged and h.outcome == ["not_stationary"] * 2 and min(h.stationarity) > 1e-6
        assert "not stationary" in h.message and not h.element(1).converged
        summary = RunSummary.of(problem, stuck)
        assert summary.converged == [False, False] and not metrics(problem, stuck)["converged"]
    # a fixed step (a known bound) is not checked: its c_k cannot shrink with the step
    assert solve_tiny(AGD(), problem, Quadratic(40.0, 40.0), guarantee, 3000, 1e-10).history.stationarity is None


def test_a_box_makes_every_step_projected_and_the_limit_a_constrained_critical_point():
    """x ∈ [0, 0.3]ⁿ: the iterates stay in the box and the limit satisfies the KKT conditions of F + ι_box (∇F = 0
    inside, ∇F ≤ 0 at the upper bound, ≥ 0 at the lower one), while the unconstrained minimiser leaves the box."""
    problem = deblur(small_image(16).double(), seed=0)
    prior = Quadratic(0.5, None)
    monitor = ConvergenceMonitor(max_iter=3000, tol=1e-12, progress=False)
    kwargs = {"sigma": 0.05, "norm": problem.norm, "guarantee": Guarantee("gradient_step", basis="test")}
    free = AGD().run(problem.y, problem.physics, prior, problem.x0, **kwargs)
    boxed = AGD(box=(0.0, 0.3)).run(problem.y, problem.physics, prior, problem.x0, monitor=monitor, **kwargs)
    x = boxed.x
    assert free.x.max() > 0.5 and x.min() >= 0 and x.max() <= 0.3
    grad = problem.physics.A_adjoint(problem.physics.A(x) - problem.y) + prior.grad(x) / boxed.stepsize
    inside, top, bottom = (x > 1e-6) & (x < 0.3 - 1e-6), x >= 0.3 - 1e-6, x <= 1e-6
    assert inside.any() and top.any()
    assert grad[inside].abs().max() < 1e-4 and (grad[top] < 1e-4).all() and (grad[bottom] > -1e-4).all()
    f = boxed.history.objective
    assert (f[1:] <= f[:-1]).all()
    with pytest.raises(ConfigError, match=r"scheme\.box must be"):
        AGD(box=(1.0, 0.0))
