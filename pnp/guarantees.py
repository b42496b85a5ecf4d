"""Which convergence theorem covers a run: denoiser classes, how wrappers change them, and each scheme's regime.

A denoiser config declares its class (``guarantee.kind``):

* ``prox_convex``: D = prox_g, g convex (TV, orthogonal-wavelet soft-thresholding, CRR-NN). Firmly nonexpansive.
* ``prox_weakly_convex`` (``kappa`` < 1): D = prox_g with g + (κ/2)‖·‖² convex (WCRR-NN, the convex-stage LPN).
* ``firmly_nonexpansive``: D = (Id + Q)/2 with Q nonexpansive (FNE DnCNN: measured, not proven, see ``pnp.certify``).
* ``averaged`` (``alpha`` in (0, 1)): D = (1 − α)Id + αN with N nonexpansive (an averaged Euler network: α = ½).
* ``nonexpansive``: Lip(D) ≤ 1 (the Euler network, by construction).
* ``gradient_step``: D = Id − ∇g with g explicit, bounded below and C¹ with a locally Lipschitz gradient (the
  gradient-step DnCNN, g = ½‖R‖²): not a prox or nonexpansive map, but F = f + τg is a smooth objective.
* ``none``: no property (DnCNN, BM3D).

Wrappers: D_θ = θD + (1 − θ)Id keeps firmly nonexpansive (θ ≤ 1) and makes an α-averaged D θα-averaged (a
nonexpansive D θ-averaged). It keeps a prox exact: θ prox_g + (1 − θ)Id = prox_{θ M_{1−θ}g}, M_μ g(x) =
min_v g(v) + ‖x − v‖²/(2μ) the Moreau envelope (prox_g = ∇φ with φ convex and 1/(1 − κ)-smooth, so D_θ = ∇(θφ +
(1 − θ)‖·‖²/2) is the prox of the function whose weak-convexity modulus is θκ/(1 − (1 − θ)κ) ≤ κ; Gribonval &
Nikolova 2020): prox_convex stays prox_convex, a κ-weakly convex prox becomes a less weakly convex one, bounded below
where g is (same infimum); a gradient step Id − ∇g becomes Id − ∇(θg). The Reynolds average (1/|G|) Σ T_g⁻¹ D T_g
over a group of isometries keeps every class: a convex combination of maps of the class, for a prox ∇ of the average
of the convex, 1/(1 − κ)-smooth φ∘T_g, so again the prox of a κ-weakly convex function, bounded below where g is, and
for a gradient step Id − ∇ of the average of g∘T_g; the random equivariant draw makes the
iteration stochastic, which no theorem here covers.

PnP-PGD x⁺ = (1 − ν)x + ν D(x − γ∇f(x)), f convex and L-smooth:
* D α-averaged (prox_convex, FNE: α = ½): I − γ∇f is γL/2-averaged for γL < 2 (Baillon–Haddad), the composition is
  averaged with α_T = (α₁ + α₂ − 2α₁α₂)/(1 − α₁α₂) (Combettes & Yamada 2015, Prop. 2.4), and the relaxed iteration
  converges for ν < 1/α_T (Krasnosel'skii–Mann; Combettes 2004), when a fixed point exists.
* D nonexpansive: the composition is nonexpansive; Krasnosel'skii–Mann needs ν < 1.
* D = Id − ∇g (gradient_step): no theorem; its potential goes to accelerated gradient instead (scheme agd).
* D = prox of a κ-weakly convex g (ν = 1): the objective F = f + g/γ decreases by ((2 − κ)/(2γ) − L/2)‖x⁺ − x‖² per
  step, so γL < 2 − κ; with the Kurdyka–Łojasiewicz property of the semi-algebraic F and bounded iterates, the
  iterates converge to a critical point (Attouch, Bolte & Svaiter 2013, Thm 2.9).
PnP-ADMM (Douglas–Rachford in ADMM form, any γ > 0): D firmly nonexpansive, i.e. ½-averaged (the resolvent of a
maximally monotone operator, Minty; a nonexpansive D relaxed by θ ≤ ½) with f convex: Eckstein & Bertsekas 1992,
Thm 8.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from pnp.errors import check

KINDS = (
    "prox_convex",
    "prox_weakly_convex",
    "firmly_nonexpansive",
    "averaged",
    "nonexpansive",
    "gradient_step",
    "none",
)
EXPLICIT = ("prox_convex", "prox_weakly_convex")  # D is the prox of a known function: an objective exists
POTENTIALS = (*EXPLICIT, "gradient_step")  # the prior's function is known: accelerated gradient on F applies


@dataclass(frozen=True)
class Guarantee:
    """The declared class of a denoiser; ``alpha`` for averaged ones, ``kappa`` for weakly convex priors."""

    kind: str = "none"
    alpha: float | None = None
    kappa: float | None = None
    basis: str = ""  # how the class is known: "construction", "certificate at test points", ...

    def __post_init__(self) -> None:
        check(self.kind in KINDS, f"guarantee.kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "averaged":
            check(self.alpha is not None and 0 < self.alpha < 1, f"an averaged denoiser needs 0 < alpha < 1: {self}")
        if self.kind == "prox_weakly_convex":
            check(self.kappa is not None and 0 <= self.kappa < 1, f"a weakly convex prior needs 0 <= kappa < 1: {self}")

    @property
    def averagedness(self) -> float | None:
        """α such that D is α-averaged (1 for nonexpansive), None when D is not nonexpansive."""
        return {"prox_convex": 0.5, "firmly_nonexpansive": 0.5, "averaged": self.alpha, "nonexpansive": 1.0}.get(
            self.kind
        )

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v not in (None, "")}


def relaxed(g: Guarantee, theta: float) -> Guarantee:
    """The class of D_θ = θD + (1 − θ)Id for θ ∈ (0, 1]."""
    check(0 < theta <= 1, f"theta must be in (0, 1], got {theta}")
    if theta == 1 or g.kind in ("prox_convex", "firmly_nonexpansive", "none"):
        return g
    if g.kind == "gradient_step":  # θD + (1 − θ)Id = Id − ∇(θg)
        return Guarantee("gradient_step", basis=f"{g.basis}; theta={theta:g}: a gradient step on theta g")
    if g.kind == "prox_weakly_convex":  # θ prox_g + (1 − θ)Id = prox of θ M_{1−θ}g (module docstring)
        kappa = theta * g.kappa / (1 - (1 - theta) * g.kappa)
        basis = f"{g.basis}; theta={theta:g}: the prox of theta times a Moreau envelope"
        return Guarantee("prox_weakly_convex", kappa=kappa, basis=basis)
    alpha = theta * g.averagedness
    return Guarantee("averaged", alpha=alpha, basis=f"theta={theta:g} on {g.kind}")


def equivariant(g: Guarantee, mode: str) -> Guarantee:
    """The class of the equivariant wrapper: the group average keeps every class (module docstring); random draws
    make the iteration stochastic."""
    if mode == "random":
        return Guarantee("none", basis="random group element per iteration (stochastic iteration)")
    return g


@dataclass(frozen=True)
class Verdict:
    """Whether a theorem covers the run, which one, and why (not)."""

    covered: bool
    theorem: str
    conditions: str
    denoiser: Guarantee

    def as_dict(self) -> dict:
        return {
            "covered": self.covered,
            "theorem": self.theorem,
            "conditions": self.conditions,
            "denoiser": self.denoiser.as_dict(),
        }

    def short(self) -> str:
        return f"{self.theorem}" if self.covered else f"no theorem covers it ({self.conditions})"


def bounded_objective(v: Verdict, bounded: bool) -> Verdict:
    """The nonconvex theorems (weakly convex priors, gradient steps) need F = f + R_σ/γ bounded below: a verdict that
    covered the run no longer does when the prior's R_σ is not (its iterates can run off to where F → −∞)."""
    if bounded or not v.covered or v.denoiser.kind not in ("prox_weakly_convex", "gradient_step"):
        return v
    return Verdict(False, "", f"{v.conditions}, but R_sigma is not bounded below at this sigma (F -> -inf)", v.denoiser)


def composed_averagedness(a1: float, a2: float) -> float:
    """α of the composition of an a1- and an a2-averaged operator (Combettes & Yamada 2015)."""
    if a1 >= 1 or a2 >= 1:
        return 1.0
    return (a1 + a2 - 2 * a1 * a2) / (1 - a1 * a2)


def pgd_verdict(g: Guarantee, gamma_l: float | None, nu: float) -> Verdict:
    """PnP-PGD with step γ (``gamma_l`` = γL, None when ∇f is not Lipschitz) and relaxation ν."""
    if gamma_l is None:
        return Verdict(False, "", "the data fidelity has no Lipschitz gradient", g)
    if g.kind == "prox_weakly_convex":
        bound = 2 - g.kappa
        ok = nu == 1 and gamma_l < bound
        return Verdict(
            ok,
            "forward-backward on a KL objective (Attouch-Bolte-Svaiter 2013, Thm 2.9)",
            f"nu = 1 and gamma*L = {gamma_l:.4g} < 2 - kappa = {bound:.4g} (bounded iterates)",
            g,
        )
    alpha_d = g.averagedness
    if alpha_d is None:
        return Verdict(False, "", f"the denoiser's class is {g.kind!r}", g)
    if gamma_l >= 2:
        return Verdict(False, "", f"gamma*L = {gamma_l:.4g} is not below 2", g)
    alpha = composed_averagedness(gamma_l / 2, alpha_d)
    limit = 1 / alpha
    ok = nu < limit
    theorem = (
        "Krasnosel'skii-Mann iteration of an averaged operator (Combettes 2004; Combettes-Yamada 2015)"
        if alpha < 1
        else "Krasnosel'skii-Mann iteration of a nonexpansive operator (needs nu < 1)"
    )
    kind = "only nonexpansive" if alpha >= 1 else f"{alpha:.3g}-averaged"
    return Verdict(ok, theorem, f"T is {kind}: needs nu < {limit:.4g}, nu = {nu:g}", g)


def admm_verdict(g: Guarantee) -> Verdict:
    """PnP-ADMM with any penalty γ > 0."""
    alpha = g.averagedness
    ok = alpha is not None and alpha <= 0.5  # ½-averaged is firmly nonexpansive
    return Verdict(
        ok,
        "Douglas-Rachford / ADMM with a resolvent (Eckstein-Bertsekas 1992, Thm 8)" if ok else "",
        "the denoiser is firmly nonexpansive"
        if ok
        else f"needs a firmly nonexpansive denoiser, got {g.kind!r}"
        + (f" ({alpha:g}-averaged; theta <= {0.5 / alpha:g} makes it firmly nonexpansive)" if alpha else ""),
        g,
    )
