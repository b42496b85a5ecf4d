"""The fixed-point loop shared by every PnP scheme: monitor, stopping, step-size bounds, inference mode."""

from __future__ import annotations

import dataclasses
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch
from deepinv.models import Denoiser
from deepinv.optim import DataFidelity
from deepinv.optim.data_fidelity import L2, PoissonLikelihood
from deepinv.physics import LinearPhysics

from pnp.denoisers.state import reset_state
from pnp.errors import ConfigError, check_positive
from pnp.guarantees import EXPLICIT, Guarantee, Verdict, bounded_objective
from pnp.monitor import ConvergenceMonitor, History
from pnp.problems import Problem, cached_norm, operator_norm
from pnp.tensors import per_element

log = logging.getLogger("pnp")


@dataclass
class Result:
    """The reconstruction and its per-iteration history."""

    x: torch.Tensor
    history: History
    stepsize: float
    verdict: Verdict | None = None  # which convergence theorem covers the run (None: no denoiser class given)

    @property
    def converged(self) -> bool:
        return self.history.converged

    @property
    def diverged(self) -> bool:
        return self.history.diverged

    def element(self, b: int) -> Result:
        """Batch element ``b`` as the result of a run of its own (:meth:`History.element`)."""
        return Result(self.x[b : b + 1], self.history.element(b), self.stepsize, self.verdict)


@dataclass
class Values:
    """What a step reports about the iterate it returns: f(x_{k+1}) and, for an explicit prior, F(x_{k+1}) (None:
    not computed, e.g. with ``monitor.track_fidelity=false``)."""

    fidelity: torch.Tensor | None = None
    objective: torch.Tensor | None = None


@dataclass
class Context:
    """Everything one iteration needs; built once per run (constants such as γ are not recomputed)."""

    y: torch.Tensor
    physics: LinearPhysics
    fidelity: DataFidelity
    denoiser: Denoiser
    sigma: float | None
    gamma: float
    monitor: ConvergenceMonitor
    explicit: bool = False  # the denoiser is prox_g with g = R_σ/γ known (``denoiser.cost``): record F = f + g
    lipschitz: float | None = None  # Lip(∇f), None when unbounded
    norm: float = 1.0  # ‖A‖

    def values(self, x: torch.Tensor, ax: torch.Tensor | None = None) -> Values:
        """f(x) per batch element, from ``ax`` = A x when already computed, and F(x) = f(x) + R_σ(x)/γ when the
        prior is explicit; nothing (not even A x) when the monitor does not track the fidelity."""
        if not self.monitor.track_fidelity:
            return Values()
        ax = (self.physics.A(x) if ax is None else ax).contiguous()  # deepinv's L1 distance views its input
        f = self.fidelity.d.fn(ax, self.y)
        return Values(f, f + self.denoiser.cost(x, self.sigma) / self.gamma if self.explicit else None)


def gradient_lipschitz(fidelity: DataFidelity, norm: float, y: torch.Tensor) -> float | None:
    """Lipschitz constant of ∇f(x) = Aᵀ∇d(Ax): ‖A‖²/σ² for the L2 fidelity; for the Poisson likelihood with
    background β > 0 and gain g, ‖A‖²·max(y/g)/β² (∇²d(u) = (y/g)/(u/g + β)² ≤ max(y/g)/β² where Ax ≥ 0); None
    where ∇f is not Lipschitz (L1: not differentiable; Poisson with β = 0: unbounded curvature at 0)."""
    if isinstance(fidelity, L2):
        return norm**2 * float(fidelity.norm)
    if isinstance(fidelity, PoissonLikelihood) and fidelity.bkg > 0:
        return norm**2 * float((y / fidelity.gain).max()) / fidelity.bkg**2
    return None


def frozen(new: Any, old: Any, active: torch.Tensor) -> Any:
    """A scheme's state (a tuple or a dataclass) with the elements that stopped kept as they were in ``old``: every
    per-element tensor [B, …] is ``where(active, new, old)``; constants and scalars pass through."""

    def keep(n: Any, o: Any) -> Any:
        if torch.is_tensor(n) and n is not o and n.dim() > 0 and n.shape[0] == active.shape[0]:
            return torch.where(per_element(active, n), n, o)
        return n

    if isinstance(new, tuple):
        return tuple(keep(n, o) for n, o in zip(new, old, strict=True))
    return dataclasses.replace(
        new, **{f.name: keep(getattr(new, f.name), getattr(old, f.name)) for f in dataclasses.fields(new)}
    )


def check_placement(denoiser: Denoiser, x0: torch.Tensor) -> None:
    """The same rule for every network: its floating-point weights must be in the iterates' dtype and on their
    device (a float64 input would otherwise fail inside a convolution, or be cast silently by some networks)."""
    if not isinstance(denoiser, torch.nn.Module):
        return
    weights = [t for t in [*denoiser.parameters(), *denoiser.buffers()] if t.is_floating_point()]
    wrong = next((t for t in weights if t.dtype != x0.dtype or t.device != x0.device), None)
    if wrong is not None:
        raise ConfigError(
            f"the denoiser's weights are {wrong.dtype} on {wrong.device}, the iterates {x0.dtype} on {x0.device}: "
            f"move it first, denoiser.to(x0) (or pnp.weights.pretrained(name, device=..., dtype=...))"
        )


class Scheme(ABC):
    """A PnP fixed-point iteration x_{k+1} = T(x_k) run under a :class:`ConvergenceMonitor`.

    ``stepsize`` γ defaults to ``step_factor / L`` with L the Lipschitz constant of ∇f (from ‖A‖, computed once
    per problem). A step outside the scheme's convergence bound logs a warning, or raises with ``strict=True``.
    """

    def __init__(self, *, stepsize: float | None = None, step_factor: float = 1.0, strict: bool = False) -> None:
        self.stepsize = None if stepsize is None else check_positive("stepsize", stepsize)
        self.step_factor = check_positive("step_factor", step_factor)
        self.strict = strict

    # -- what a scheme defines ------------------------------------------------------------------------------
    @abstractmethod
    def init_state(self, x0: torch.Tensor, ctx: Context) -> Any:
        """The scheme's state before the first iteration."""

    @abstractmethod
    def step(self, state: Any, ctx: Context, k: int) -> tuple[Any, Values]:
        """One iteration: the state after iteration ``k`` (0-based) and the values of its iterate."""

    @abstractmethod
    def iterate(self, state: Any) -> torch.Tensor:
        """The monitored iterate x_k of ``state``."""

    def stationarity(self, state: Any, ctx: Context) -> torch.Tensor | None:
        """[B] ‖x − T₀(x)‖ at the result x, T₀ the step at its initial length, for a scheme whose steps may shrink
        (then c_k < tol alone does not show a fixed point); None (not measured) for a fixed-step scheme."""
        return None

    def check_bounds(self, gamma: float, lipschitz: float | None) -> None:  # noqa: B027 (optional hook)
        """Warn (or raise when strict) if the parameters leave the scheme's admissible range."""

    @abstractmethod
    def verdict(self, guarantee: Guarantee, gamma_l: float | None) -> Verdict:
        """Which theorem covers this scheme with a denoiser of class ``guarantee`` at γL = ``gamma_l``."""

    # -- the loop ------------------------------------------------------------------------------------------
    def violation(self, message: str) -> None:
        """A parameter outside the convergence bound: a warning, or an error with ``strict=True``."""
        if self.strict:
            raise ConfigError(f"{message} (strict=true)")
        log.warning("%s; convergence is not guaranteed", message)

    def check_norm(self, norm: float, physics: LinearPhysics, x0: torch.Tensor) -> float:
        """A given ‖A‖ against a lower bound from 10 power iterations: below it (for instance ‖A‖² from deepinv's
        ``compute_norm`` with its default ``squared=True``, when ‖A‖ < 1), the step sizes derived from it break the
        convergence bounds (a warning, an error with ``strict``); above twice the estimate they are needlessly
        small (a warning)."""
        check_positive("norm", norm)
        estimate = operator_norm(physics, x0, max_iter=10, tol=0.0)
        if norm < estimate * (1 - 1e-3):
            self.violation(
                f"norm={norm:.4g} is below ||A|| >= {estimate:.4g} (power iteration): pass ||A||, not ||A||^2 "
                "(deepinv's compute_norm(..., squared=False)), or leave norm out to have it computed"
            )
        elif norm > 2 * estimate:
            log.warning(f"norm={norm:.4g} is more than twice ||A|| ~ {estimate:.4g}: the steps are needlessly small")
        return norm

    def resolve_stepsize(self, fidelity: DataFidelity, norm: float, y: torch.Tensor) -> tuple[float, float | None]:
        """γ: ``stepsize`` when given, else ``step_factor`` / Lip(∇f) (/ ‖A‖² where ∇f has no Lipschitz bound, for
        schemes whose γ is free, such as ADMM's penalty)."""
        lipschitz = gradient_lipschitz(fidelity, norm, y)
        gamma = self.stepsize if self.stepsize is not None else self.step_factor / (lipschitz or norm**2)
        self.check_bounds(gamma, lipschitz)
        return gamma, lipschitz

    def solve(
        self, problem: Problem, denoiser: Denoiser, *, sigma: float | torch.Tensor | None, **options: Any
    ) -> Result:
        """:meth:`run` on ``problem``: its measurements, operator, start, ‖A‖ and ground truth (the PSNR per
        iteration, where it has one); ``options``: the other keywords of :meth:`run`, and ``x0`` (another start),
        ``norm`` or ``x_true=None`` (no PSNR curve) in place of the problem's."""
        options = {"x0": problem.x0, "norm": problem.norm, "x_true": problem.x_true, **options}
        x0 = options.pop("x0")
        return self.run(problem.y, problem.physics, denoiser, x0, sigma=sigma, **options)

    def run(
        self,
        y: torch.Tensor,
        physics: LinearPhysics,
        denoiser: Denoiser,
        x0: torch.Tensor,
        *,
        sigma: float | torch.Tensor | None,
        norm: float | None = None,
        fidelity: DataFidelity | None = None,
        monitor: ConvergenceMonitor | None = None,
        x_true: torch.Tensor | None = None,
        guarantee: Guarantee | None = None,
    ) -> Result:
        """Iterate from ``x0`` until the monitor stops. ``sigma`` (keyword-only: a bare number would be ambiguous) is
        the denoiser's strength, passed as D(x, sigma): a float, one per batch element [B] or a map; None for a blind
        denoiser. ``norm`` is ‖A‖ (not ‖A‖²): computed once per physics when
        not given (:func:`pnp.problems.cached_norm`), checked against a 10-step power iteration when given
        (:meth:`check_norm`).

        ``guarantee`` is the denoiser's class (:mod:`pnp.guarantees`): the result then says which theorem covers the
        run, ``strict`` refuses a run that none covers, and an explicit prior (a prox with a ``cost``) has its
        objective F = f + R_σ/γ recorded per iteration."""
        check_placement(denoiser, x0)
        norm = cached_norm(physics, x0) if norm is None else self.check_norm(norm, physics, x0)
        fidelity = fidelity if fidelity is not None else L2()
        monitor = monitor if monitor is not None else ConvergenceMonitor()
        gamma, lipschitz = self.resolve_stepsize(fidelity, norm, y)
        verdict = None
        if guarantee is not None:
            verdict = self.verdict(guarantee, None if lipschitz is None else gamma * lipschitz)
            bounded = getattr(denoiser, "bounded_below", None)
            verdict = bounded_objective(verdict, bounded is None or bounded(sigma))
            if not verdict.covered:
                self.violation(f"no convergence theorem covers this run: {verdict.conditions}")
        explicit = guarantee is not None and guarantee.kind in EXPLICIT and hasattr(denoiser, "cost")
        ctx = Context(y, physics, fidelity, denoiser, sigma, gamma, monitor, explicit, lipschitz, norm)
        reset_state(denoiser)  # no warm start or random stream carried over from another run
        with torch.inference_mode():
            state = self.init_state(x0, ctx)
            monitor.start(x0, x_true)
            x_prev = x0
            for k in range(monitor.max_iter):
                new, values = self.step(state, ctx, k)
                state = frozen(new, state, monitor.active) if monitor.frozen else new
                x = self.iterate(state)
                monitor.record(k, x, x_prev)
                monitor.record_values(k, values.fidelity, values.objective)
                if monitor.should_stop(k):
                    break
                x_prev = x
            history = monitor.finish(k)
            residual = self.stationarity(state, ctx)
            if residual is not None:
                history.require_stationary((residual / monitor.scale).tolist())  # one host read, after the loop
        return Result(x=monitor.good_iterate().clone(), history=history, stepsize=gamma, verdict=verdict)
