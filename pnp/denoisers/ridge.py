"""Learned ridge regularizers: convex (CRR-NN) and weakly convex (WCRR-NN).

    R(x) = Σ_{c,p} ψ_c((W x)_{c,p}),        ∇R(x) = Wᵀ ψ'(W x)

(Goujon, Neumayer, Bohra, Ducotterd, Unser, IEEE TCI 2023; Goujon, Neumayer, Unser, SIAM J. Imaging Sci. 2024).

* W is a multi-convolution 1 → … → C (zero-mean first filters, so R ignores constant offsets), applied as the one
  collapsed kernel it equals and divided by a certified bound on its norm (:func:`pnp.lipschitz.conv_norm_bound`):
  ‖W‖ ≤ 1 on every image size, by construction.
* ψ'_c is an odd linear spline on ``knots`` uniform knots in [−r, r], extended linearly outside. Its slopes are
  s⁺ − ρ(σ)·s⁻ with s⁺, s⁻ ∈ [0, 1] (kept there by :meth:`clamp_weights` and projected again in every forward,
  gradients passing: :func:`projected`), so ψ_c'' ≤ 1 always and ψ_c'' ≥ 0 for the convex model
  (``weak_convexity = 0``: no s⁻).
* Strength: R_σ(x) = Σ φ_σ((Wx)_{c,p}) with φ_σ(t) = (λ/μ) ψ⁺(μt) − (λρ/ν) ψ⁻(νt), log λ, log μ (and log ν)
  affine in log σ (learned), so ∇²R_σ = Wᵀ(λμ ψ⁺''(μ·) − λρν ψ⁻''(ν·))W and Lip(∇R_σ) ≤ λ(σ)μ(σ). For the weakly
  convex model ρ(σ) = κ/(λ(σ)ν(σ)) with κ = ``weak_convexity`` < 1, which makes R_σ κ-weakly convex:
  ½‖u − x‖² + R_σ(u) stays (1 − κ)-strongly convex for every σ.
* ``concave_scale=False``: ν = μ, ψ⁺ and ψ⁻ share the knots. Then |ρψ⁻'| ≤ κr/(λμ), about 1 % of ψ⁺' at the trained
  μ(σ) ≈ 10² (the convex kink's sharpness and the knots' range both come from μ): the concave part cannot bend φ_σ
  back at edge-sized responses. ``concave_scale=True``: ψ⁻ on its own learned scale ν(σ), so its knots cover
  |Wx| ≤ r/ν while ψ⁺'s kink stays at |Wx| ≈ r/μ; and ρ is capped per channel at ψ⁺'(r)/ψ⁻'(r), so that
  φ_σ'(t) ≥ 0 beyond both knot ranges: φ_σ may saturate (a truncated-ℓ1-like potential) but R_σ stays bounded below
  by construction.

As a denoiser, D(x, σ) = prox_{R_σ}(x) = argmin_u ½‖u − x‖² + R_σ(u), solved by Nesterov's accelerated gradient for
strongly convex functions (step 1/(1 + λμ), momentum from the condition number, restart when a step goes uphill) to
a relative tolerance, warm-started from the previous call on the same input shape (:meth:`reset` forgets it).
D is the prox of a convex function (CRR: firmly nonexpansive) or of a κ-weakly convex one (WCRR:
1/(1 − κ)-Lipschitz). :meth:`cost` evaluates R_σ, so schemes can monitor the objective they minimise.
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from deepinv.models import Denoiser
from torch import nn

from pnp.convolution import FourierConv
from pnp.denoisers.cache import weights_key
from pnp.denoisers.channels import channelwise, channelwise_cost, log_noise_levels
from pnp.denoisers.state import needs_graph, warm_start
from pnp.errors import check
from pnp.lipschitz import conv_norm_bound

SCALE_RATE = 20.0  # log λ(σ), log μ(σ) are stored divided by this: Adam moves them 20× faster than the filters
NORM_GRID = 256  # Fourier grid of the certified ‖W‖ bound (loses < 1.1 % for the 13×13 collapsed kernel)


class Scales(NamedTuple):
    """λ(σ), μ(σ), ρ(σ), ν(σ) of φ_σ(t) = (λ/μ)ψ⁺(μt) − (λρ/ν)ψ⁻(νt) (ν = μ without ``concave_scale``)."""

    lam: torch.Tensor
    mu: torch.Tensor
    rho: torch.Tensor
    nu: torch.Tensor


def lookup(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``table[b, c, index[b, c, h, w]]`` for a table [1 or B, C, n] (differentiable in the table); a gather, about
    5× faster on the CPU than advanced indexing, which dominated the cost of ∇R."""
    batch, channels = index.shape[:2]
    rows = table.expand(batch, channels, table.shape[-1])
    return torch.gather(rows, 2, index.flatten(2)).view_as(index)


def projected(p: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """``p`` clamped to [low, high] in value, with the identity's gradient: the step of projected gradient descent
    (:meth:`RidgeRegularizer.clamp_weights` projects the parameter itself). ``Tensor.clamp`` would pass no gradient
    to a parameter that sits exactly on a bound, and the splines start and are projected onto their bounds, so
    their slopes would never move."""
    return p + (p.clamp(low, high) - p).detach()


class OddSpline(nn.Module):
    """Per-channel odd linear spline ψ' with slopes in [0, 1] on uniform knots in [−r, r], and its integral ψ."""

    def __init__(self, channels: int, knots: int, radius: float, init_slope: float, init_width: float = 1.0) -> None:
        """Slopes ``init_slope`` on the central ``init_width`` fraction of the knots' range, 0 outside (ψ' a clipped
        line: a Huber potential, the shape the CRR-NN paper reports learning)."""
        super().__init__()
        check(knots >= 3 and knots % 2 == 1, f"knots must be an odd integer >= 3, got {knots}")
        centres = torch.linspace(-1, 1, knots)[:-1] + 1 / (knots - 1)
        slopes = torch.where(centres.abs() < init_width, float(init_slope), 0.0).expand(channels, -1).clone()
        self.slopes = nn.Parameter(slopes)
        self.knots, self.radius = knots, radius
        self.delta = 2 * radius / (knots - 1)

    def tables(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(slopes s_j [C, K−1], ψ'(t_j) [C, K], ψ(t_j) [C, K]) with ψ'(0) = ψ(0) = 0, symmetric slopes."""
        s = projected(self.slopes, 0.0, 1.0)
        s = 0.5 * (s + s.flip(-1))
        mid = (self.knots - 1) // 2
        zero = s.new_zeros(s.shape[0], 1)
        c = torch.cat([zero, torch.cumsum(s * self.delta, dim=1)], dim=1)
        c = c - c[:, mid : mid + 1]
        p = torch.cat([zero, torch.cumsum(c[:, :-1] * self.delta + 0.5 * s * self.delta**2, dim=1)], dim=1)
        return s, c, p - p[:, mid : mid + 1]

    def locate(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Segment index j (clamped, so outside [−r, r] the end segments extend linearly) and t − t_j, in few passes
        over ``t`` (this, not the table lookups, is most of the cost of ∇R)."""
        u = (t + self.radius) / self.delta
        j = u.detach().floor().clamp_(0, self.knots - 2)
        return j.long(), (u - j) * self.delta

    def max_slope(self) -> torch.Tensor:
        """Per channel, the largest slope (a bound on ψ'')."""
        return self.tables()[0].amax(dim=1)


class RidgeRegularizer(Denoiser):
    """CRR-NN (``weak_convexity=0``) or WCRR-NN (``0 < weak_convexity < 1``); forward is prox_{R_σ}."""

    def __init__(
        self,
        channels: int = 1,
        conv_channels: tuple[int, ...] = (8, 32),
        kernel_size: int = 7,
        knots: int = 21,
        radius: float = 0.1,
        weak_convexity: float = 0.0,
        concave_scale: bool = False,
        max_iter: int = 300,
        tol: float = 1e-6,
    ) -> None:
        super().__init__()
        check(0.0 <= weak_convexity < 1.0, f"weak_convexity must be in [0, 1), got {weak_convexity}")
        check(not concave_scale or weak_convexity > 0, "concave_scale needs weak_convexity > 0 (a concave part)")
        widths = [1, *conv_channels]
        self.convs = nn.ParameterList(
            nn.Parameter(torch.randn(o, i, kernel_size, kernel_size) / math.sqrt(i * kernel_size**2))
            for i, o in itertools.pairwise(widths)
        )
        self.plus = OddSpline(widths[-1], knots, radius, init_slope=1.0, init_width=0.5)
        self.minus = OddSpline(widths[-1], knots, radius, init_slope=0.0) if weak_convexity > 0 else None
        # log λ(σ) = a + b log(σ/σ_ref), log μ(σ) likewise, stored / SCALE_RATE; μ starts at e^1.5 ≈ 4.5 so the
        # filter responses of natural images (≈ 0.01 with ‖W‖ ≤ 1) spread over the splines' knots
        self.log_lam = nn.Parameter(torch.tensor([math.log(5.0), 1.0]) / SCALE_RATE)
        self.log_mu = nn.Parameter(torch.tensor([1.5, 0.0]) / SCALE_RATE)
        # ν starts at 1: ψ⁻'s knots cover |Wx| ≤ r, the size of edges' filter responses
        self.log_nu = nn.Parameter(torch.zeros(2)) if concave_scale else None
        self.channels, self.weak_convexity, self.max_iter, self.tol = channels, weak_convexity, max_iter, tol
        self.config = {
            "channels": channels,
            "conv_channels": list(conv_channels),
            "kernel_size": kernel_size,
            "knots": knots,
            "radius": radius,
            "weak_convexity": weak_convexity,
            "concave_scale": concave_scale,
            "max_iter": max_iter,
            "tol": tol,
        }
        self._warm: torch.Tensor | None = None
        self._fourier: FourierConv | None = None  # eval mode: the normalised kernel of ``_fourier_key``, by FFT
        self._fourier_key: tuple = ()
        self.last_iterations = 0

    # -- the linear part -----------------------------------------------------------------------------------
    def collapsed(self) -> torch.Tensor:
        """The one [C, 1, k, k] kernel of the composed convolutions (zero-mean first filters)."""
        first = self.convs[0] - self.convs[0].mean(dim=(-2, -1), keepdim=True)
        kernel = first.transpose(0, 1)  # [1, c1, k, k]: the filters as channels of one image
        for w in self.convs[1:]:
            pad = w.shape[-1] - 1
            kernel = F.conv2d(kernel, w.flip(-2, -1), padding=pad)  # full convolution of the kernels
        return kernel.transpose(0, 1)

    def kernel(self) -> torch.Tensor:
        """W's kernel divided by its certified norm bound: ‖W‖ ≤ 1 for every image size."""
        k = self.collapsed()
        return k / conv_norm_bound(k, grid=NORM_GRID, detach=False)

    def operator(self) -> FourierConv:
        """W applied by FFT (:mod:`pnp.convolution`, equal to the zero-padded direct convolution, ≈ 3× faster on
        training patches and 15× at 256²). In eval mode built once and cached until the weights change; while
        training built, differentiably, per call: callers build it once per solve, not once per iteration."""
        if self.training:
            return FourierConv(self.kernel())
        key = weights_key(*self.convs)
        if self._fourier is None or key != self._fourier_key:
            with torch.no_grad():
                self._fourier, self._fourier_key = FourierConv(self.kernel().detach()), key
        return self._fourier

    # -- strength ------------------------------------------------------------------------------------------
    def scales(self, sigma: float | torch.Tensor | None, like: torch.Tensor) -> Scales:
        """λ(σ), μ(σ), ν(σ) as [B, 1, 1, 1] tensors in ``like``'s dtype, and ρ(σ) ([B, C, 1, 1] when capped)."""
        ls = log_noise_levels(sigma, like, type(self).__name__).view(-1, 1, 1, 1)

        def affine(log_scale: torch.Tensor) -> torch.Tensor:
            a, b = (SCALE_RATE * log_scale).to(like.dtype)
            return torch.exp(a + b * ls)

        lam, mu = affine(self.log_lam), affine(self.log_mu)
        if self.log_nu is None:
            return Scales(lam, mu, self.weak_convexity / (lam * mu), mu)
        nu = affine(self.log_nu)
        end_plus, end_minus = (spline.tables()[1][:, -1].to(like.dtype) for spline in (self.plus, self.minus))
        cap = (end_plus / end_minus.clamp_min(1e-30)).view(1, -1, 1, 1)  # φ_σ'(∞) ≥ 0 per channel
        return Scales(lam, mu, torch.minimum(self.weak_convexity / (lam * nu), cap), nu)

    def lipschitz(self, lam: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
        """Bound on Lip(∇R_σ) = λμ‖Wᵀψ''W‖ ≤ λμ · max slope of ψ⁺ (‖W‖ ≤ 1)."""
        return lam * mu * self.plus.max_slope().max().to(lam.dtype)

    def grad_lipschitz(self, sigma: float | torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
        """Per batch element, a bound on Lip(∇R_σ): the Hessian λμ Wᵀ(ψ⁺'' − ρψ⁻'')W has its spectrum in
        [−κ, λμ · max slope of ψ⁺]."""
        s = self.scales(sigma, like)
        return self.lipschitz(s.lam, s.mu).flatten().clamp_min(self.weak_convexity)

    # -- R, ∇R ---------------------------------------------------------------------------------------------
    def splines(self, rho: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        """(slopes, ψ'(t_j), ψ(t_j)) of ψ = ψ⁺ − ρψ⁻ as tables [1 or B, C, ·] where both splines share their knots
        and scale (``concave_scale=False``: the weakly convex potential is one spline per batch element, one lookup
        instead of two), of ψ⁺ alone otherwise; and ψ'' beyond the knots, [1, C, 1, 1]: the end slope of ψ⁺ (ψ⁻' is
        constant there)."""
        tables = [t.to(dtype).unsqueeze(0) for t in self.plus.tables()]
        tail = tables[0][0, :, -1].view(1, -1, 1, 1)
        if self.minus is None or self.log_nu is not None:
            return *tables, tail
        r = rho.view(-1, 1, 1)
        return *(a - r * b.to(dtype) for a, b in zip(tables, self.minus.tables(), strict=True)), tail

    def inside(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(segment j, offset d) of u = clamp(t, −r, r) and the excess e = t − u beyond the knots."""
        u = t.clamp(-self.plus.radius, self.plus.radius)
        return *self.plus.locate(u), t - u

    def spline(self, tables: tuple[torch.Tensor, ...], t: torch.Tensor, integral: bool) -> torch.Tensor:
        """ψ'(t), or with ``integral`` ψ(t) exactly: on the segment of u = clamp(t, −r, r), ψ(t_j) + d ψ'(t_j)
        + ½ s_j d², then beyond it ψ(u) + e ψ'(u) + ½ s_end e² (e = t − u), from ``tables`` = (s, ψ'(t_j), ψ(t_j),
        s_end)."""
        s, c, p, tail = tables
        j, d, e = self.inside(t)
        slope = lookup(c, j) + lookup(s, j) * d
        if not integral:
            return slope + tail * e
        return lookup(p, j) + d * (lookup(c, j) + 0.5 * lookup(s, j) * d) + e * (slope + 0.5 * tail * e)

    def concave(self, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        """ψ⁻'s tables with a flat tail (ψ⁻' constant beyond the knots)."""
        s, c, p = (t.to(dtype).unsqueeze(0) for t in self.minus.tables())
        return s, c, p, s.new_zeros(1, s.shape[1], 1, 1)

    def potential(self, t: torch.Tensor, scales: Scales, integral: bool = True) -> torch.Tensor:
        """φ_σ(t) = (λ/μ)ψ⁺(μt) − (λρ/ν)ψ⁻(νt), or with ``integral=False`` its derivative
        φ_σ'(t) = λ(ψ⁺'(μt) − ρψ⁻'(νt)), at the filter responses t = Wx. Beyond the knots ψ⁺' extends linearly and
        ψ⁻' is constant (so ψ⁻ grows at most linearly: :meth:`bounded_below`)."""
        lam, mu, rho, nu = scales
        outer = lam / mu if integral else lam
        value = outer * self.spline(self.splines(rho, t.dtype), mu * t, integral)
        if self.log_nu is None:
            return value
        inner = lam * rho / nu if integral else lam * rho
        return value - inner * self.spline(self.concave(t.dtype), nu * t, integral)

    def bounded_below(self, sigma: float | torch.Tensor | None) -> bool:
        """Whether R_σ is bounded below, the condition the nonconvex convergence theorems need (F = f + R_σ/γ
        bounded below): φ_σ is even and bounded on the knots' ranges, and beyond both φ_σ'(t)/λ = ψ⁺'(r) − ρψ⁻'(r)
        + s⁺_end (μt − r), so R_σ is bounded below iff in every channel s⁺_end > 0 or ψ⁺'(r) ≥ ρψ⁻'(r). Always
        true for the convex model and, by the cap on ρ, for ``concave_scale=True``."""
        if self.minus is None:
            return True
        with torch.no_grad():
            values = torch.as_tensor(sigma, dtype=torch.float64, device=self.log_lam.device).reshape(-1)
            rho = self.scales(values, values.view(-1, 1, 1, 1)).rho.flatten(1)
            (s, c, _), c_minus = self.plus.tables(), self.minus.tables()[1]
            end = c[:, -1].double() - rho * c_minus[:, -1].double()
            return bool(((s[:, -1] > 0) | (end >= -1e-12 * c[:, -1].double().abs())).all())

    def gradient(self, x: torch.Tensor, scales: Scales, op: FourierConv) -> torch.Tensor:
        """∇R_σ(x) = Wᵀ φ_σ'(W x), W = ``op``."""
        return op.adjoint(self.potential(op.conv(x), scales, integral=False))

    @channelwise
    def grad(self, x: torch.Tensor, sigma: float | torch.Tensor | None = None) -> torch.Tensor:
        """∇R_σ(x) on [B, C, H, W]."""
        return self.gradient(x, self.scales(sigma, x), self.operator())

    @channelwise_cost
    def cost(self, x: torch.Tensor, sigma: float | torch.Tensor | None = None) -> torch.Tensor:
        """R_σ(x) = Σ φ_σ(W x), per image of the batch (a colour image: the sum over its channels), summed in
        float64: monotone schemes compare values of F whose differences near convergence are below float32's
        resolution of the sum."""
        phi = self.potential(self.operator().conv(x), self.scales(sigma, x))
        return phi.flatten(1).sum(1, dtype=torch.float64)

    # -- denoising -----------------------------------------------------------------------------------------
    def unrolled(self, y: torch.Tensor, sigma: float | torch.Tensor, steps: int) -> torch.Tensor:
        """``steps`` differentiable iterations of Nesterov's method on ½‖u − y‖² + R_σ(u) from u = y (step
        1/(1 + λμ), constant momentum from the condition number): the t-step denoiser of the CRR-NN training,
        accelerated so that a few steps already approach the prox that PnP uses."""
        return self.accelerated(y, y, self.scales(sigma, y), steps=steps)

    def reset(self) -> None:
        """Forget the warm start (call between unrelated solves)."""
        self._warm = None

    @channelwise
    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        """prox_{R_σ}(x) by accelerated gradient on the (1 − κ)-strongly convex ½‖u − x‖² + R_σ(u), to the relative
        tolerance ``tol``. With gradients enabled (an input or weights that require them), the solve is followed by
        differentiable steps from the solution (no restarts), whose Jacobian converges to (I + ∇²R_σ)⁻¹: the
        Jacobian of the prox, for Lipschitz certificates, and a gradient in the weights (one-step-from-the-fixed-point
        differentiation, not through the whole solve)."""
        scales = self.scales(sigma, x)
        with torch.no_grad():
            u = self.accelerated(x, warm_start(self._warm, x.detach()), scales, steps=self.max_iter, tol=self.tol)
        self._warm = u
        if needs_graph(self, x):
            lip = self.lipschitz(scales.lam, scales.mu)
            cond = float(((1.0 + lip) / (1.0 - self.weak_convexity)).detach().max())
            steps = min(self.max_iter, math.ceil(math.sqrt(cond) * math.log(1e4)))
            u = self.accelerated(x, u, scales, steps=steps)
        return u

    def accelerated(
        self,
        x: torch.Tensor,
        u: torch.Tensor,
        scales: Scales,
        steps: int,
        tol: float | None = None,
    ) -> torch.Tensor:
        """``steps`` iterations of Nesterov's method for the strongly convex ½‖u − x‖² + R_σ(u) from ``u``: step
        1/L, momentum (√L − √m)/(√L + √m), L = 1 + λμ, m = 1 − κ. With ``tol``: momentum restarts when a step goes
        uphill and the run stops once every image moved less than ``tol`` relative to ‖x‖ (checked at every step on
        the CPU, every 5 steps on a GPU, where a check synchronises the host)."""
        big, strong = 1.0 + self.lipschitz(scales.lam, scales.mu), 1.0 - self.weak_convexity
        alpha = 1.0 / big
        q = (big.sqrt() - math.sqrt(strong)) / (big.sqrt() + math.sqrt(strong))
        z, scale, op = u, x.detach().flatten(1).norm(dim=1).clamp_min(1e-12), self.operator()
        for k in range(steps):
            g = z - x + self.gradient(z, scales, op)
            u_next = z - alpha * g
            step = u_next - u
            if tol is None:
                z, u = u_next + q * step, u_next
                continue
            uphill = ((g * step).flatten(1).sum(1) > 0).view(-1, 1, 1, 1)
            z, u = torch.where(uphill, u_next, u_next + q * step), u_next
            if (x.device.type == "cpu" or k % 5 == 4) and bool(((step.flatten(1).norm(dim=1) / scale) < tol).all()):
                break
        self.last_iterations = k + 1 if steps else 0
        return u

    # -- constraints and certificates ----------------------------------------------------------------------
    def clamp_weights(self) -> None:
        """Project the spline slopes onto [0, 1] after an optimiser step."""
        with torch.no_grad():
            for spline in (self.plus, self.minus):
                if spline is not None:
                    spline.slopes.clamp_(0.0, 1.0)

    def layer_bound(self) -> dict[str, float]:
        """Computed bounds: ‖W‖ (certified, ≤ 1 by the normalisation), the largest ψ⁺ slope, the tighter
        ‖Wᵀ diag(s⁺_max) W‖ = max_ω Σ_c s_c |Ŵ_c(ω)|² on a fine grid, and the weak-convexity modulus κ."""
        with torch.no_grad():
            k = self.kernel().double()
            symbol = torch.fft.rfft2(k[:, 0], s=(512, 512)).abs() ** 2
            slopes = self.plus.max_slope().double()
            return {
                "W_norm_bound": float(conv_norm_bound(k, grid=NORM_GRID)),
                "max_slope": float(slopes.max()),
                "lip_grad_R_over_lam_mu": float((slopes.view(-1, 1, 1) * symbol).sum(0).max()),
                "weak_convexity": self.weak_convexity,
            }
