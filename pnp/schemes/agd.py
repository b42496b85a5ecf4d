"""Monotone accelerated gradient descent on an explicit objective (Li & Lin, NeurIPS 2015, Alg. 1):

    F(x) = f(x) + τ R_σ(x),   ∇F(x) = Aᵀ∇d(Ax, y) + τ ∇R_σ(x),   α = step_factor / (L + τ Lip(∇R_σ))

    y_k = x_k + (t_{k−1}/t_k)(z_k − x_k) + ((t_{k−1} − 1)/t_k)(x_k − x_{k−1})
    z_{k+1} = y_k − α ∇F(y_k)
    x_{k+1} = z_{k+1}                          if F(z_{k+1}) ≤ F(x_k) − δ‖z_{k+1} − y_k‖²
              argmin{F(z_{k+1}), F(v_{k+1})}   otherwise, v_{k+1} = x_k − α ∇F(x_k)
    t_{k+1} = (1 + √(1 + 4 t_k²)) / 2

with one addition (``restart=True``), per batch element: where z_{k+1} is rejected the momentum restarts (the next
extrapolation starts from x_{k+1} with t = 1, so y_{k+1} = x_{k+1}): the function-value restart of O'Donoghue &
Candès (Found. Comput. Math. 2015), which restores linear convergence where F is locally strongly convex instead of
the oscillating tail of plain momentum. It only changes y, so the monotonicity and the convergence results above
hold unchanged.

``box=(lo, hi)`` adds the constraint x ∈ [lo, hi]ⁿ (F + ι_box): every step above becomes a projected (proximal)
gradient step, z_{k+1} = P(y_k − α∇F(y_k)) and v_{k+1} = P(x_k − α∇F(x_k)), and x_0 is projected; Li & Lin's
results are for exactly this composite F (smooth + a convex function with a cheap prox). The gradient-step prior needs
it: its learned g_σ is trained on images in [0, 1] only, and unconstrained iterates drift out of that range where
g_σ is lower than at natural images.

A prior with no known bound on Lip(∇R_σ) (``grad_lipschitz`` returns None: the gradient-step DnCNN) gets a
backtracking line search instead: α starts at step_factor / (L + τ) (Lip(∇g) = Lip(Id − D) ≈ 1 for a denoiser
D = Id − ∇g), is searched once at x_0 (α₀; the guess where no step decreases F there) and then halves, per batch
element, until the gradient step from x_k decreases F by δ/α ‖v_{k+1} − x_k‖²
(Armijo; at most ``MAX_HALVINGS`` times per iteration); it never grows back. Where ∇F is L_F-Lipschitz on the
sublevel set, the descent lemma gives the decrease once α ≤ 2(1 − δ)/L_F, so the search stops with α > (1 − δ)/L_F:
the step stays bounded below and the results below hold as for a known bound. In floating point it does not: near a
critical point F's decrease falls below the resolution of the network's cost, α keeps halving, and c_k shrinks with
it. So the run ends with one gradient step of the initial length α₀ from the result (:meth:`stationarity`); where it
moves x by ‖x − P(x − α₀∇F(x))‖ ≥ tol·max(‖x_0‖, ‖x_1‖), the monitor's "converged" is withdrawn (``not_stationary``).

F(x_k) never increases (where neither step decreases F in floating point, x_k is kept and c_k = 0 ends the run).
Convex F (CRR-NN): F(x_k) − F* = O(1/k²); nonconvex F (WCRR-NN): every accumulation point is a critical point (Li &
Lin 2015, Thm 1), for α < 1/Lip(∇F). This is the accelerated gradient the ridge-regularizer
papers use for reconstruction; it needs one ∇R_σ per iteration where PnP-PGD with D = prox_{R_σ} needs an inner solve.

τ defaults to L = ‖A‖²/σ² (``weight: null``): F is then the objective f + R_σ/γ that PnP-PGD with γ = 1/L and
D = prox_{R_σ} minimises, so a strength σ tuned for one scheme holds for the other. A x is linear, so A y_k is
combined from the A x_k, A x_{k−1}, A z_k already computed. The accept test reads one flag per iteration on the host
(a rejected element needs the extra gradient at x_k); the monitored iterate is x_k.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from deepinv.optim import DataFidelity

from pnp.errors import ConfigError, check_positive
from pnp.guarantees import POTENTIALS, Guarantee, Verdict
from pnp.schemes.base import Context, Scheme, Values, gradient_lipschitz
from pnp.tensors import batch_norm, per_element


@dataclass
class State:
    x: torch.Tensor
    x_prev: torch.Tensor
    z: torch.Tensor
    ax: torch.Tensor  # A x_k, A x_{k−1}, A z_k
    ax_prev: torch.Tensor
    az: torch.Tensor
    objective: torch.Tensor  # F(x_k) per batch element
    t_prev: torch.Tensor  # momentum sequence per batch element, [B]
    t: torch.Tensor
    alpha: torch.Tensor  # step, [B, 1, ..., 1]
    alpha0: torch.Tensor  # the initial step, [B, 1, ..., 1]
    backtrack: bool  # no bound on Lip(∇R_σ): α by line search


MAX_HALVINGS = 40  # backtracking: α may fall by 2⁻⁴⁰ in one iteration before x_k counts as stationary
INITIAL_GRAD_LIPSCHITZ = 1.0  # backtracking's first guess of Lip(∇g) for D = Id − ∇g, a denoiser


def agd_verdict(g: Guarantee, step_factor: float) -> Verdict:
    """Monotone APG on F = f + τR_σ with α = step_factor / Lip(∇F) (bound), or by backtracking (gradient steps)."""
    if g.kind not in POTENTIALS:
        return Verdict(False, "", f"needs an explicit prior (one of {POTENTIALS}), got {g.kind!r}", g)
    if g.kind == "gradient_step":
        return Verdict(
            True,
            "monotone accelerated gradient with backtracking (Li-Lin 2015, Alg. 1; nonconvex F: accumulation points "
            "are critical)",
            "alpha by Armijo backtracking on the gradient steps, F = f + g_sigma/gamma smooth and bounded below",
            g,
        )
    ok = step_factor <= 1
    convex = g.kind == "prox_convex"
    theorem = "monotone accelerated gradient (Li-Lin 2015, Alg. 1" + (
        "; convex F: F(x_k) - F* = O(1/k^2))" if convex else "; nonconvex F: accumulation points are critical)"
    )
    return Verdict(ok, theorem, f"alpha = {step_factor:g} / Lip(grad F) bound, needs step_factor <= 1", g)


class AGD(Scheme):
    """Monotone accelerated gradient descent on F = f + τR_σ for an explicit prior (``denoiser.grad``, ``.cost``)."""

    def __init__(
        self,
        *,
        weight: float | None = None,
        step_factor: float = 1.0,
        decrease: float = 1e-4,
        restart: bool = True,
        box: tuple[float, float] | None = None,
        strict: bool = False,
    ) -> None:
        super().__init__(step_factor=step_factor, strict=strict)
        self.weight = None if weight is None else check_positive("weight", weight)
        self.decrease = check_positive("decrease", decrease)
        self.restart = restart
        if box is not None and not (len(box) == 2 and float(box[0]) < float(box[1])):
            raise ConfigError(f"scheme.box must be [lo, hi] with lo < hi, got {box}")
        self.box = None if box is None else (float(box[0]), float(box[1]))

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """P onto [lo, hi]ⁿ (the identity without a box)."""
        return x if self.box is None else x.clamp(*self.box)

    def resolve_stepsize(self, fidelity: DataFidelity, norm: float, y: torch.Tensor) -> tuple[float, float | None]:
        """γ = 1/τ: the prior weight, as PnP-PGD's step (its F is f + R_σ/γ)."""
        lipschitz = gradient_lipschitz(fidelity, norm, y)
        if lipschitz is None:
            raise ConfigError(
                f"scheme=agd needs a data fidelity with a Lipschitz gradient, not {type(fidelity).__name__}: use "
                "fidelity=l2 (or fidelity.bkg > 0 for poisson), or scheme=admm, which uses the fidelity's prox"
            )
        self.check_bounds(0.0, lipschitz)
        return 1.0 / (self.weight if self.weight is not None else lipschitz), lipschitz

    def check_bounds(self, gamma: float, lipschitz: float | None) -> None:
        if self.step_factor > 1:
            self.violation(f"step_factor={self.step_factor:g} is above 1 (alpha must stay below 1/Lip(grad F))")

    def verdict(self, guarantee: Guarantee, gamma_l: float | None) -> Verdict:
        return agd_verdict(guarantee, self.step_factor)

    # -- F and ∇F ------------------------------------------------------------------------------------------
    @staticmethod
    def objective(ctx: Context, x: torch.Tensor, ax: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(f(x), F(x)) per batch element, from ``ax`` = A x, in float64 (the accept test compares F values whose
        differences near convergence are below float32's resolution of the sums)."""
        f = ctx.fidelity.d.fn(ax.double(), ctx.y.double())
        return f, f + ctx.denoiser.cost(x, ctx.sigma) / ctx.gamma

    @staticmethod
    def gradient(ctx: Context, x: torch.Tensor, ax: torch.Tensor) -> torch.Tensor:
        return ctx.physics.A_adjoint(ctx.fidelity.d.grad(ax, ctx.y)) + ctx.denoiser.grad(x, ctx.sigma) / ctx.gamma

    # -- the iteration -------------------------------------------------------------------------------------
    def init_state(self, x0: torch.Tensor, ctx: Context) -> State:
        prior = ctx.denoiser
        if not (hasattr(prior, "grad") and hasattr(prior, "cost") and hasattr(prior, "grad_lipschitz")):
            raise ConfigError(
                "scheme=agd needs an explicit prior with a gradient and a cost "
                f"(denoiser=crr, wcrr or gs_dncnn, theta=1), got {type(prior).__name__}"
            )
        x0 = self.project(x0)
        bound = prior.grad_lipschitz(ctx.sigma, x0)
        prior_lip = x0.new_full((x0.shape[0],), INITIAL_GRAD_LIPSCHITZ) if bound is None else bound
        lip = ctx.lipschitz + prior_lip / ctx.gamma
        alpha = per_element(self.step_factor / lip, x0)
        ax = ctx.physics.A(x0)
        ones = x0.new_ones(x0.shape[0])
        state = State(x0, x0, x0, ax, ax, ax, self.objective(ctx, x0, ax)[1], ones, ones, alpha, alpha, bound is None)
        if bound is None:  # α₀ by the line search at x_0 (where it finds a decrease): the stationarity check's step
            v, _, _, big_fv, searched = self.gradient_step(ctx, state, torch.ones_like(ones, dtype=torch.bool))
            found = self.decreases(big_fv, state.objective, v, x0, searched)
            state.alpha = state.alpha0 = torch.where(per_element(found, alpha), searched, alpha)
        return state

    def iterate(self, state: State) -> torch.Tensor:
        return state.x

    def step(self, s: State, ctx: Context, k: int) -> tuple[State, Values]:
        t_next = 0.5 * (1 + (1 + 4 * s.t**2).sqrt())
        a, b = s.t_prev / s.t, (s.t_prev - 1) / s.t  # [B]; A x may not be image-shaped (CS, CT)
        y = s.x + per_element(a, s.x) * (s.z - s.x) + per_element(b, s.x) * (s.x - s.x_prev)
        ay = s.ax + per_element(a, s.ax) * (s.az - s.ax) + per_element(b, s.ax) * (s.ax - s.ax_prev)
        z = self.project(y - s.alpha * self.gradient(ctx, y, ay))
        az = ctx.physics.A(z)
        fz, big_fz = self.objective(ctx, z, az)
        accept = self.decreases(big_fz, s.objective, z, y, s.alpha)
        x, ax, fx, big_fx, t, x_prev, ax_prev = z, az, fz, big_fz, s.t, s.x, s.ax
        alpha = s.alpha
        if not bool(accept.all()):  # the safeguard: a gradient step from x_k where z went uphill, and a restart
            v, av, fv, big_fv, alpha = self.gradient_step(ctx, s, ~accept)
            keep = accept | (big_fz <= big_fv)
            x, ax, fx, big_fx = (
                torch.where(per_element(keep, u), u, w) for u, w in ((z, v), (az, av), (fz, fv), (big_fz, big_fv))
            )
            stay = big_fx > s.objective  # neither step decreases F in floating point: x_k is stationary to precision
            pairs = ((x, s.x), (ax, s.ax), (big_fx, s.objective))
            x, ax, big_fx = (torch.where(per_element(stay, u), w, u) for u, w in pairs)
            fx = torch.where(stay, ctx.fidelity.d.fn(s.ax.double(), ctx.y.double()), fx)
            if self.restart:  # z and x_k of the next extrapolation set to x_{k+1}, t to 1 (y_{k+1} = x_{k+1})
                r, ra = per_element(~accept, x), per_element(~accept, ax)  # A x may not be image-shaped (CS, CT)
                z, az = torch.where(r, x, z), torch.where(ra, ax, az)
                x_prev, ax_prev = torch.where(r, x, s.x), torch.where(ra, ax, s.ax)
                t, t_next = torch.where(~accept, 1.0, s.t), torch.where(~accept, 1.0, t_next)
        state = State(x, x_prev, z, ax, ax_prev, az, big_fx, t, t_next, alpha, s.alpha0, s.backtrack)
        return state, Values(fx, big_fx)

    def stationarity(self, state: State, ctx: Context) -> torch.Tensor | None:
        """With backtracking: ‖x − P(x − α₀∇F(x))‖ at the result, α₀ the initial step. The line search may have
        shrunk α until F's decrease fell below floating-point resolution, and then c_k is small whatever x is; this
        one gradient step at the original length shows whether x is a critical point (the monitor's verdict)."""
        if not state.backtrack:
            return None
        x = state.x
        return batch_norm(x - self.project(x - state.alpha0 * self.gradient(ctx, x, state.ax)))

    def decreases(
        self, big_f_new: torch.Tensor, big_f: torch.Tensor, new: torch.Tensor, base: torch.Tensor, alpha: torch.Tensor
    ) -> torch.Tensor:
        """Per element: F(new) ≤ F(x_k) − δ/α ‖new − base‖² (``big_f`` = F(x_k)), the sufficient decrease that the
        accept test (new = z_{k+1}, base = y_k) and the line search (new = v_{k+1}, base = x_k) both require."""
        return big_f_new <= big_f - self.decrease / alpha.flatten() * (new - base).flatten(1).pow(2).sum(1)

    def gradient_step(self, ctx: Context, s: State, rejected: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(v, A v, f(v), F(v), α) for v = P(x_k − α∇F(x_k)); with backtracking α halves where a ``rejected`` element's
        v does not decrease F by δ/α ‖v − x_k‖² (one flag read on the host per halving)."""
        grad = self.gradient(ctx, s.x, s.ax)
        a_grad = ctx.physics.A(grad) if self.box is None else None
        alpha = s.alpha
        for _ in range(MAX_HALVINGS):
            v = self.project(s.x - alpha * grad)
            av = s.ax - per_element(alpha.flatten(), s.ax) * a_grad if self.box is None else ctx.physics.A(v)
            fv, big_fv = self.objective(ctx, v, av)
            if not s.backtrack:
                break
            short = rejected & ~self.decreases(big_fv, s.objective, v, s.x, alpha)
            if not bool(short.any()):
                break
            alpha = torch.where(per_element(short, alpha), 0.5 * alpha, alpha)
        return v, av, fv, big_fv, alpha
