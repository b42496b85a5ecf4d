"""Proximal activations: each knows its potential and its penalization.

An activation ϱ: ℝ → ℝ is the proximity operator of a proper lower-semicontinuous convex φ if and only if ϱ = ψ′ with
ψ convex and 1-smooth (Moreau 1965; Combettes & Pesquet, "Deep neural network structures solving variational
inequalities", Set-Valued Var. Anal. 2020). Then

    ϱ(x) = prox_φ(x) = argmin_u ½(u − x)² + φ(u) = ψ′(x),     ψ = ½|·|² − ¹φ + const (¹φ the Moreau envelope),

ϱ is firmly nonexpansive (nondecreasing with slopes in [0, 1]) and ϱ(ℝ) ⊂ dom φ. The conjugate used by lifted Bregman
training (Wang & Benning, JMLR 2023; Wang, Benning, Repetti, MLSP 2024) follows from ψ: ∇(½|·|² + φ)* = prox_φ = ψ′, so

    (½|·|² + φ)*(z) = z ϱ(z) − ½ϱ(z)² − φ(ϱ(z)) = ψ(z) − ψ(0) − ½ϱ(0)² − φ(ϱ(0))           (:meth:`Activation.fenchel`)

and B_φ(y, z) = ½y² + φ(y) + (½|·|² + φ)*(z) − yz ≥ ½(y − ϱ(z))² ≥ 0, zero iff y = ϱ(z), with ∂_z B_φ = ϱ(z) − y
(:meth:`Activation.bregman`).

The table follows the activation table of the proximal-neural-network tutorial (Repetti, Pustelnik, Pesquet,
EUSIPCO 2025) and Combettes & Pesquet 2020; tanh's potential is Wang & Benning's. Every formula
here is checked numerically by ``tests/test_activations.py``. The tutorial's table has three misprints, corrected
here: the bent identity's potential is x/2 − ln(x + ½)/4 (printed π/2 − …), the unimodal sigmoid's penalization is
x/2 + ln(1 + e^{−x}) (printed π/2 + …), and its potential is (½ + x)ln(½ + x) + (½ − x)ln(½ − x) − x²/2 on
[−½, ½], −⅛ at |x| = ½ (printed: the first term only, and −½(x² + ¼) = −¼ at the ends). Potentials are the
lower-semicontinuous (closed) ones: tanh's is finite, ln 2 − ½, at ±1.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pnp.errors import check


class Activation(nn.Module):
    """ϱ = prox_φ = ψ′ (``forward``), with the potential φ (:meth:`potential`, +∞ outside ``domain``, the closure of
    dom φ) and the penalization ψ (:meth:`penalization`, convex with a 1-Lipschitz derivative). Elementwise."""

    domain: tuple[float, float] = (-math.inf, math.inf)

    def __init__(self) -> None:
        super().__init__()
        self.config: dict[str, Any] = {}  # the constructor's arguments (:meth:`spec`)

    def phi(self, u: torch.Tensor) -> torch.Tensor:
        """φ on the closed domain (``u`` already inside it)."""
        raise NotImplementedError

    def penalization(self, x: torch.Tensor) -> torch.Tensor:
        """ψ(x), with ψ′ = ϱ."""
        raise NotImplementedError

    def potential(self, u: torch.Tensor) -> torch.Tensor:
        """φ(u); +∞ outside the domain (evaluated at the clamped point, so gradients stay finite there)."""
        lo, hi = self.domain
        return torch.where((u >= lo) & (u <= hi), self.phi(u.clamp(lo, hi)), math.inf)

    def fenchel(self, z: torch.Tensor) -> torch.Tensor:
        """(½|·|² + φ)*(z) = z ϱ(z) − ½ϱ(z)² − φ(ϱ(z)), computed as ψ(z) − ψ(0) − ½ϱ(0)² − φ(ϱ(0)) (both have the
        derivative ϱ; this form stays exact where ϱ(z) rounds onto the boundary of dom φ)."""
        zero = z.new_zeros(())
        rho = self(zero)
        return self.penalization(z) - self.penalization(zero) - 0.5 * rho**2 - self.potential(rho)

    def bregman(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """B_φ(y, z) = ½y² + φ(y) + (½|·|² + φ)*(z) − yz, elementwise: ≥ 0, zero iff y = ϱ(z), ∂_z B = ϱ(z) − y."""
        return 0.5 * y**2 + self.potential(y) + self.fenchel(z) - y * z

    def spec(self) -> dict[str, Any]:
        """``{"_target_": class path, **arguments}``: a Hydra node, and what :func:`build` takes back."""
        return {"_target_": f"{type(self).__module__}.{type(self).__qualname__}", **self.config}


def build(spec: dict[str, Any]) -> Activation:
    """The activation of a :meth:`Activation.spec` (e.g. from a weights manifest). Only this module's classes are
    accepted: the target is looked up here, never imported."""
    args = dict(spec)
    target = args.pop("_target_", None)
    prefix = f"{__name__}."
    cls = globals().get(target[len(prefix) :]) if isinstance(target, str) and target.startswith(prefix) else None
    check(
        isinstance(cls, type) and issubclass(cls, Activation) and cls is not Activation,
        f"activation {target!r} is not one of {__name__}'s",
    )
    return cls(**args)


class ReLU(Activation):
    """ϱ(x) = max(x, 0); φ = ι_[0, +∞); ψ(x) = ½max(x, 0)²."""

    domain = (0.0, math.inf)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x)

    def phi(self, u: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(u)

    def penalization(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * F.relu(x) ** 2


class PReLU(Activation):
    """ϱ(x) = x (x > 0), a·x (x ≤ 0), slope a ∈ (0, 1]; φ(u) = 0 (u > 0), (1/a − 1)u²/2 (u ≤ 0);
    ψ(x) = x²/2 (x > 0), a·x²/2 (x ≤ 0)."""

    def __init__(self, slope: float = 0.25) -> None:
        super().__init__()
        check(0 < slope <= 1, f"the parametric ReLU's slope must be in (0, 1], got {slope}")
        self.slope = float(slope)
        self.config = {"slope": self.slope}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x) + self.slope * x.clamp(max=0)

    def phi(self, u: torch.Tensor) -> torch.Tensor:
        return 0.5 * (1 / self.slope - 1) * u.clamp(max=0) ** 2

    def penalization(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (F.relu(x) ** 2 + self.slope * x.clamp(max=0) ** 2)


def bent_sum(x: torch.Tensor) -> torch.Tensor:
    """x + √(x² + 1), without cancellation for x ≪ 0 (there = 1/(√(x² + 1) − x))."""
    r = torch.hypot(x, torch.ones_like(x))
    return torch.where(x >= 0, x + r, 1 / (r - x))


class BentIdentity(Activation):
    """ϱ(x) = (x + √(x² + 1) − 1)/2; φ(u) = u/2 − ln(u + ½)/4 on (−½, +∞) (the tutorial prints π/2 for u/2);
    ψ(x) = (x² + x√(x² + 1) − 2x + arsinh x)/4."""

    domain = (-0.5, math.inf)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (bent_sum(x) - 1)

    def phi(self, u: torch.Tensor) -> torch.Tensor:
        return 0.5 * u - 0.25 * torch.log(u + 0.5)

    def penalization(self, x: torch.Tensor) -> torch.Tensor:
        return 0.25 * (x * bent_sum(x) - 2 * x + torch.asinh(x))


class ISRU(Activation):
    """Inverse square root unit: ϱ(x) = x/√(1 + x²); φ(u) = −u²/2 − √(1 − u²) on [−1, 1]; ψ(x) = √(1 + x²)."""

    domain = (-1.0, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / torch.hypot(x, torch.ones_like(x))

    def phi(self, u: torch.Tensor) -> torch.Tensor:
        return -0.5 * u**2 - torch.sqrt(1 - u**2)

    def penalization(self, x: torch.Tensor) -> torch.Tensor:
        return torch.hypot(x, torch.ones_like(x))


class ISRLU(Activation):
    """Inverse square root linear unit: ϱ(x) = x (x ≥ 0), x/√(1 + x²) (x < 0); φ(u) = 0 (u ≥ 0),
    1 − u²/2 − √(1 − u²) (−1 ≤ u < 0); ψ(x) = x²/2 (x ≥ 0), √(1 + x²) − 1 (x < 0)."""

    domain = (-1.0, math.inf)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.clamp(max=0)
        return F.relu(x) + m / torch.hypot(m, torch.ones_like(m))

    def phi(self, u: torch.Tensor) -> torch.Tensor:
        m = u.clamp(max=0)  # the formula vanishes at 0: one expression for both pieces
        return 1 - 0.5 * m**2 - torch.sqrt(1 - m**2)

    def penalization(self, x: torch.Tensor) -> torch.Tensor:
        m = x.clamp(max=0)
        return 0.5 * F.relu(x) ** 2 + torch.hypot(m, torch.ones_like(m)) - 1


class Arctan(Activation):
    """ϱ(x) = (2/π) arctan x; φ(u) = −(2/π) ln cos(πu/2) − u²/2 on (−1, 1); ψ(x) = (2x arctan x − ln(1 + x²))/π."""

    domain = (-1.0, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (2 / math.pi) * torch.atan(x)

    def phi(self, u: torch.Tensor) -> torch.Tensor:
        # cos(πu/2) = sin(π(1 − |u|)/2): exactly 0, so φ = +∞, at |u| = 1, and accurate near it
        return -(2 / math.pi) * torch.log(torch.sin(0.5 * math.pi * (1 - u.abs()))) - 0.5 * u**2

    def penalization(self, x: torch.Tensor) -> torch.Tensor:
        return (2 * x * torch.atan(x) - torch.log1p(x**2)) / math.pi


class UnimodalSigmoid(Activation):
    """ϱ(x) = 1/(1 + e^{−x}) − ½; φ(u) = (½ + u)ln(½ + u) + (½ − u)ln(½ − u) − u²/2 on [−½, ½] (−⅛ at the ends);
    ψ(x) = x/2 + ln(1 + e^{−x}) = ln(2 cosh(x/2)). The tutorial misprints φ and ψ (see the module docstring)."""

    domain = (-0.5, 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x) - 0.5

    def phi(self, u: torch.Tensor) -> torch.Tensor:
        p, q = 0.5 + u, 0.5 - u
        return torch.xlogy(p, p) + torch.xlogy(q, q) - 0.5 * u**2

    def penalization(self, x: torch.Tensor) -> torch.Tensor:
        return F.softplus(x) - 0.5 * x


class SoftThreshold(Activation):
    """ϱ(x) = sign(x) max(|x| − λ, 0); φ = λ|·|; ψ(x) = ½max(|x| − λ, 0)²."""

    def __init__(self, threshold: float = 1.0) -> None:
        super().__init__()
        check(threshold >= 0, f"the soft threshold must be >= 0, got {threshold}")
        self.threshold = float(threshold)
        self.config = {"threshold": self.threshold}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sign(x) * F.relu(x.abs() - self.threshold)

    def phi(self, u: torch.Tensor) -> torch.Tensor:
        return self.threshold * u.abs()

    def penalization(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * F.relu(x.abs() - self.threshold) ** 2


class Tanh(Activation):
    """ϱ = tanh; φ(u) = u artanh u + ½(ln(1 − u²) − u²) = ½[(1 + u)ln(1 + u) + (1 − u)ln(1 − u)] − u²/2 on [−1, 1]
    (closed: ln 2 − ½ at ±1, where Wang & Benning write +∞; same prox); ψ = ln cosh."""

    domain = (-1.0, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x)

    def phi(self, u: torch.Tensor) -> torch.Tensor:
        p, q = 1 + u, 1 - u
        return 0.5 * (torch.xlogy(p, p) + torch.xlogy(q, q)) - 0.5 * u**2

    def penalization(self, x: torch.Tensor) -> torch.Tensor:
        a = x.abs()
        return a + F.softplus(-2 * a) - math.log(2)


class Clip(Activation):
    """ϱ(x) = max(−1, min(x, 1)) (hard tanh), the projection onto [−1, 1]: φ = ι_[−1, 1]; ψ is Huber's function,
    x²/2 (|x| ≤ 1), |x| − ½ otherwise. By Moreau's identity Clip = Id − SoftThreshold(1)."""

    domain = (-1.0, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(-1, 1)

    def phi(self, u: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(u)

    def penalization(self, x: torch.Tensor) -> torch.Tensor:
        m = x.clamp(-1, 1)
        return 0.5 * m**2 + (x - m).abs()
