"""Proximal neural network: the dual forward-backward algorithm unrolled (Le, Repetti, Pustelnik, "PNN: from proximal
algorithms to robust unfolded image denoising networks and Plug-and-Play methods", arXiv 2308.03139, 2023).

For x̂ = argmin_x ½‖x − z‖² + g(Lx), the dual forward-backward iteration (Combettes, Dũng, Vũ 2010)

    u_k = prox_{τ g*}(u_{k−1} − τ L(Lᵀ u_{k−1} − z)),   u_0 = 0,      x_k = z − Lᵀ u_k

converges to x̂ = prox_{g∘L}(z) for τ ∈ (0, 2/‖L‖²). The network runs K such layers with learned convolutions
L_k (``channels`` → ``features``, k×k, zero padding; Lᵀ the transposed convolution) and returns x = z − L_Kᵀ u_K;
``shared=True`` uses one (L, τ, λ) for every layer: K iterations of the algorithm itself.

* Steps: τ_k = (2 − margin)·sigmoid(t_k)/B_k², B_k ≥ ‖L_k‖ the certified bound of
  :func:`pnp.lipschitz.conv_norm_bound` (every image size): inside the algorithm's range by construction.
* Nonlinearity: prox_{τ_k g*}(v) = λ ϱ(v/λ), ϱ = prox_φ an activation of :mod:`pnp.activations`, so that
  τ_k g*(u) = λ²φ(u/λ). The default :class:`~pnp.activations.Clip` gives g = λ‖·‖₁: g* is the indicator of
  [−λ, λ] and its prox the clip, the dual of soft-thresholding by Moreau's identity
  prox_{τg*}(v) = v − τ prox_{g/τ}(v/τ). Bounded activations (Tanh, Arctan, ISRU) give smoothed ℓ1 penalties g.
* Strength: λ_{k,c}(σ) = exp(a_{k,c}) (σ/σ_ref)^{exp(b_{k,c})} per layer and feature channel: log λ is affine in
  log σ with a positive slope, so λ grows with σ (and D → Id as σ → 0). σ is a float, one value per image [B], or a
  noise-level map [B, 1, H, W] (one per image channel for a gray network on colour images), λ then varying over
  pixels.

Guarantees. For fixed weights each layer is one dual forward-backward step, and with shared weights the output tends
(K → ∞) to prox_{g∘L}(z), which is firmly nonexpansive. With finitely many, different L_k neither holds.
:meth:`PNN.lipschitz_bound` certifies, for every σ and activation: with δ differences between two inputs,
δu_k = D_k(A_k δu_{k−1} + τ_k L_k δz), D_k diagonal in [0, 1] (ϱ nondecreasing and 1-Lipschitz) and
A_k = I − τ_k L_k L_kᵀ of norm ≤ 1 (τ_k B_k² < 2), so ‖δu_k‖ ≤ ‖δu_{k−1}‖ + τ_k B_k ‖δz‖; and
δx = (I − τ_K L_Kᵀ D_K L_K) δz − L_Kᵀ D_K A_K δu_{K−1} with the first operator of norm ≤ 1, hence

    Lip(z ↦ x) ≤ 1 + B_K Σ_{k<K} τ_k B_k.

This layer-wise certificate grows linearly with K, where the product of the per-layer norms of the same network
written on (u, z) (the tutorial's certificate) grows geometrically. It exceeds 1 for K > 1: the class is "none",
measured by :mod:`pnp.certify` (the firmly-nonexpansive Jacobian penalty, :class:`pnp.losses.FirmlyNonexpansive`,
brings the measured Lip(2D − Id) near 1).

The exact prox (``shared=True``, ``tol``): the dual problem min_u ½‖Lᵀu − z‖² + g*(u) is solved by FISTA with
restart to a relative tolerance (warm-started from the previous call on the same shape), so D(·, σ) = prox_{g_σ∘L}
with the convex g_σ = λ(σ)‖·‖₁ (Clip; a smoothed ℓ1 for bounded activations) up to that tolerance: the prox of a
convex function, firmly nonexpansive, with a symmetric positive semi-definite Jacobian — a class by construction
(``prox_convex``), where the unrolled network has none. Training differentiates K layers run from the solution:
with u* fixed, D_a the activation's derivative there and M = D_aL, their Jacobian in z is
I − τMᵀ Σ_{j<K}(I − τMMᵀ)^j M = V diag((1 − τs_i²)^K) Vᵀ (s_i, V: the singular values and right vectors of M),
symmetric with eigenvalues in [0, 1] for τ‖L‖² ≤ 1, and tends to the prox's Jacobian as K grows.

Training. By back-propagation, or by lifted Bregman training (:class:`pnp.losses.LiftedBregman`, ``trainer=bregman``),
which needs the layers one at a time: :meth:`PNN.unroll`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from deepinv.models import Denoiser
from torch import nn

from pnp.activations import Activation, Clip, build
from pnp.denoisers.cache import weights_key
from pnp.denoisers.channels import SIGMA_REF, channelwise, channelwise_cost, log_noise_levels
from pnp.denoisers.equivariant import is_map
from pnp.denoisers.state import needs_graph, warm_start
from pnp.errors import check
from pnp.lipschitz import conv_norm_bound

NORM_GRID = 64  # Fourier grid of the certified ‖L_k‖ bound (loses < 0.5 % for 3×3 kernels, < 2 % for 5×5)


@dataclass(frozen=True)
class Layers:
    """A :class:`PNN`'s K layers at one input z and strength σ: what its forward pass and lifted Bregman training
    (:class:`pnp.losses.LiftedBregman`) share. Layer k (0-based) maps u_{k−1} to u_k = λ_kϱ(v_k/λ_k),
    v_k = u_{k−1} − τ_kL_k(L_kᵀu_{k−1} − z), from u_{−1} = 0; the output is z − L_{K−1}ᵀu_{K−1}."""

    z: torch.Tensor  # [B, C, H, W]
    weight: torch.Tensor  # [1 or K, F, C, k, k]: L_k is the convolution with weight[k], L_kᵀ its transpose
    tau: torch.Tensor  # [1 or K] steps τ_k
    norms: torch.Tensor  # [1 or K] certified bounds B_k ≥ ‖L_k‖
    log_threshold: torch.Tensor  # [1 or K, F] a: λ_k(σ_ref) = e^a
    power: torch.Tensor  # [1 or K, F] e^b: λ_k ∝ σ^{e^b}
    log_sigma: torch.Tensor  # log(σ/σ_ref), [B, 1, 1, 1] or [B, 1, H, W]
    activation: Activation
    count: int  # K
    initial: torch.Tensor | None = None  # u_{−1}: None for 0; the exact prox's dual solution u*

    def index(self, k: int) -> int:
        """The row of the parameters of layer k (0 for every layer of a shared network)."""
        return 0 if self.weight.shape[0] == 1 else k

    def analysis(self, k: int, x: torch.Tensor) -> torch.Tensor:
        """L_k x: image [B, C, H, W] → features [B, F, H, W]."""
        w = self.weight[self.index(k)]
        return F.conv2d(x, w, padding=w.shape[-1] // 2)

    def synthesis(self, k: int, u: torch.Tensor) -> torch.Tensor:
        """L_kᵀ u: features → image."""
        w = self.weight[self.index(k)]
        return F.conv_transpose2d(u, w, padding=w.shape[-1] // 2)

    def gradient_step(self, k: int, u: torch.Tensor, z: torch.Tensor | float) -> torch.Tensor:
        """u − τ_kL_k(L_kᵀu − z): the layer's input v_k from u = u_{k−1} and z = the image; A_k u = (I − τ_kL_kL_kᵀ)u
        for z = 0."""
        return u - self.tau[self.index(k)] * self.analysis(k, self.synthesis(k, u) - z)

    def threshold(self, k: int) -> torch.Tensor:
        """λ_k(σ) = exp(a_k + e^{b_k} log(σ/σ_ref)), [B, F, 1, 1] or [B, F, H, W]."""
        i = self.index(k)
        return torch.exp(self.log_threshold[i].view(1, -1, 1, 1) + self.power[i].view(1, -1, 1, 1) * self.log_sigma)

    def activate(self, k: int, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(y, u): the normalised activation y = ϱ(v/λ_k) ∈ dom φ and the layer's output u = λ_ky = prox_{τ_kg*}(v)."""
        lam = self.threshold(k)
        y = self.activation(v / lam)
        return y, lam * y

    def start(self) -> torch.Tensor:
        """u_{−1}, [B, F, H, W]: 0, or the exact prox's dual solution."""
        if self.initial is not None:
            return self.initial
        return self.z.new_zeros(self.z.shape[0], self.weight.shape[1], *self.z.shape[-2:])

    def output(self, u: torch.Tensor) -> torch.Tensor:
        """x = z − L_{K−1}ᵀ u from the last layer's output u."""
        return self.z - self.synthesis(self.count - 1, u)


def dct_filters(size: int, channels: int) -> torch.Tensor:
    """The size² − 1 non-constant atoms of the orthonormal 2-D DCT-II of a size×size patch, lowest frequencies first,
    the same on every channel, [size² − 1, channels, size, size]: an analysis operator with which Σλ|Lx| is already a
    sliding-DCT sparsity prior (the ``init="dct"`` start; from random filters the exact PNN trained to a prior below
    TV on the validation images, 32.2 dB against 34.5 dB at 10/255)."""
    n = torch.arange(size, dtype=torch.float64)
    basis = torch.stack([torch.cos(math.pi * (2 * n + 1) * i / (2 * size)) for i in range(size)])
    basis = basis / torch.linalg.vector_norm(basis, dim=1, keepdim=True)
    order = sorted(((i, j) for i in range(size) for j in range(size) if i or j), key=lambda ij: (sum(ij), ij))
    atoms = torch.stack([torch.outer(basis[i], basis[j]) for i, j in order]).float()
    return atoms.unsqueeze(1).expand(-1, channels, -1, -1) / math.sqrt(channels)


class PNN(Denoiser):
    """x = z − L_Kᵀu_K after K dual forward-backward layers u_k = λϱ(v_k/λ), v_k = u_{k−1} − τ_kL_k(L_kᵀu_{k−1} − z)."""

    def __init__(
        self,
        channels: int = 1,
        features: int = 32,
        kernel_size: int = 3,
        layers: int = 15,
        shared: bool = False,
        activation: Activation | dict[str, Any] | None = None,
        margin: float = 0.02,
        tol: float | None = None,
        max_iter: int = 1000,
        train_iter: int = 100,
        init: str = "random",
        threshold: float = 1.0,
    ) -> None:
        super().__init__()
        check(kernel_size >= 3 and kernel_size % 2 == 1, f"kernel_size must be odd and >= 3, got {kernel_size}")
        check(layers >= 1 and features >= 1, f"layers and features must be >= 1, got {layers} and {features}")
        check(0 < margin < 2, f"margin must be in (0, 2), got {margin}")
        check(
            tol is None or (shared and tol > 0 and min(max_iter, train_iter) >= 1),
            f"tol (the exact prox) needs shared=True, tol > 0 and max_iter, train_iter >= 1, got {shared}, {tol}, "
            f"{max_iter}, {train_iter}",
        )
        check(init in ("random", "dct"), f"init must be random or dct, got {init!r}")
        check(threshold > 0, f"threshold must be > 0, got {threshold}")
        n = 1 if shared else layers
        w = torch.randn(n, features, channels, kernel_size, kernel_size)
        if init == "dct":
            w[:, : kernel_size**2 - 1] = dct_filters(kernel_size, channels)[:features]
        w = w - w.mean(dim=(-2, -1), keepdim=True)  # zero-mean filters: the prior starts blind to constant images
        self.weight = nn.Parameter(w / torch.linalg.vector_norm(w, dim=(-3, -2, -1), keepdim=True))
        self.step = nn.Parameter(torch.zeros(n))  # t_k: τ_k = (2 − margin) sigmoid(t_k) / B_k²
        lam = math.log(threshold * SIGMA_REF)
        self.log_threshold = nn.Parameter(torch.full((n, features), lam))  # a: λ(σ_ref) = e^a = threshold·σ_ref
        self.log_power = nn.Parameter(torch.zeros(n, features))  # b: λ ∝ σ^{e^b}
        if isinstance(activation, dict):
            activation = build(activation)
        self.activation = activation if activation is not None else Clip()
        self.channels, self.layers, self.shared, self.margin = channels, layers, shared, margin
        self.tol, self.max_iter, self.train_iter = tol, max_iter, train_iter
        self.config = {
            "channels": channels,
            "features": features,
            "kernel_size": kernel_size,
            "layers": layers,
            "shared": shared,
            "activation": self.activation.spec(),
            "margin": margin,
            "tol": tol,
            "max_iter": max_iter,
            "train_iter": train_iter,
            "init": init,
            "threshold": threshold,
        }
        self._norms: torch.Tensor | None = None  # eval mode: the certified bounds of the weights of ``_norms_key``
        self._norms_key: tuple = ()
        self._warm: torch.Tensor | None = None  # the exact prox's last dual solution (a warm start)
        self.last_iterations = 0

    def norms(self) -> torch.Tensor:
        """B_k ≥ ‖L_k‖ for every image size, [1 or K]: differentiable in training, cached in eval mode until the
        weights change (:func:`pnp.denoisers.cache.weights_key`)."""
        if self.training:
            return torch.stack([conv_norm_bound(w, NORM_GRID, detach=False) for w in self.weight])
        key = weights_key(self.weight)
        if self._norms is None or key != self._norms_key:
            with torch.no_grad():
                self._norms = torch.stack([conv_norm_bound(w, NORM_GRID) for w in self.weight])
            self._norms_key = key
        return self._norms

    def steps(self, norms: torch.Tensor | None = None) -> torch.Tensor:
        """τ_k = (2 − margin) sigmoid(t_k) / B_k² < 2/‖L_k‖², [1 or K] (B_k: ``norms``, default :meth:`norms`); with
        ``tol`` (the exact prox, solved by FISTA on the dual) τ = sigmoid(t) / B² < 1/‖L‖², FISTA's step bound."""
        top = 1.0 if self.tol is not None else 2 - self.margin
        return top * torch.sigmoid(self.step) / (self.norms() if norms is None else norms) ** 2

    def log_sigma(self, sigma: float | torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
        """log(σ/σ_ref) as [B, 1, 1, 1], or [B, 1, H, W] for a noise-level map."""
        if not is_map(sigma):
            return log_noise_levels(sigma, x, "the PNN").view(-1, 1, 1, 1)
        m = sigma.to(x.dtype).reshape(-1, 1, *sigma.shape[-2:])
        check(
            m.shape[-2:] == x.shape[-2:] and x.shape[0] % m.shape[0] == 0,
            f"a sigma map of shape {tuple(sigma.shape)} does not fit images of shape {tuple(x.shape)}",
        )
        check(bool((m > 0).all()) and bool(torch.isfinite(m).all()), "sigma maps must be finite and > 0")
        return torch.log(m.repeat_interleave(x.shape[0] // m.shape[0], dim=0) / SIGMA_REF)

    def unroll(self, z: torch.Tensor, sigma: float | torch.Tensor | None) -> Layers:
        """The layers at the input ``z`` [B, channels, H, W] and strength σ (steps and norms computed once); with
        ``tol``, starting from the exact prox's dual solution (solved here, without gradients, warm-started)."""
        net = self.layers_at(z, sigma)
        if self.tol is None:
            return net
        with torch.no_grad():
            if self.training:  # unrelated batches: from 0, a shorter solve (the K layers from there carry the gradient)
                return dataclasses.replace(net, initial=self.solve(net, net.start(), self.train_iter))
            self._warm = self.solve(net, warm_start(self._warm, net.start()), self.max_iter)
        return dataclasses.replace(net, initial=self._warm)

    def layers_at(self, z: torch.Tensor, sigma: float | torch.Tensor | None) -> Layers:
        """The layers at ``z`` and σ, from u = 0."""
        norms = self.norms()
        return Layers(
            z,
            self.weight.to(z.dtype),
            self.steps(norms).to(z.dtype),
            norms.to(z.dtype),
            self.log_threshold.to(z.dtype),
            self.log_power.exp().to(z.dtype),
            self.log_sigma(sigma, z),
            self.activation,
            self.layers,
        )

    @channelwise
    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        """The K layers from u = 0; with ``tol``, the exact prox: the dual solved to ``tol`` without gradients (warm
        started), then K differentiable layers from the solution, a fixed point of each, whose Jacobian in z tends
        to the prox's (one-step-from-the-fixed-point differentiation, as for the ridge regularizers)."""
        net = self.unroll(x, sigma)
        u = net.start()
        if self.tol is not None and not needs_graph(self, x):
            return net.output(u)
        for k in range(self.layers):
            u = net.activate(k, net.gradient_step(k, u, x))[1]
        return net.output(u)

    @channelwise_cost
    def cost(self, x: torch.Tensor, sigma: float | torch.Tensor | None = None) -> torch.Tensor:
        """g_σ(Lx) = Σ_{c,p} λ_c(σ)|(Lx)_{c,p}| per image (a colour image: summed over its channels), in float64: the
        convex function whose prox the exact PNN with the clip activation computes, so that schemes can monitor the
        objective f + g_σ∘L/γ they minimise."""
        check(
            self.tol is not None and isinstance(self.activation, Clip),
            "the PNN's cost g(Lx) = sum lambda |Lx| is that of the exact prox (tol) with the clip activation",
        )
        net = self.layers_at(x, sigma)
        g = net.threshold(0) * net.analysis(0, net.z).abs()
        return g.flatten(1).sum(1, dtype=torch.float64)

    def reset(self) -> None:
        """Forget the exact prox's warm start (call between unrelated solves)."""
        self._warm = None

    def solve(self, net: Layers, u: torch.Tensor, max_iter: int) -> torch.Tensor:
        """FISTA on the dual, min_u ½‖Lᵀu − z‖² + g*(u) (Beck & Teboulle 2009; step τ < 1/‖L‖²), with the
        gradient restart of O'Donoghue & Candès (2015) per image, from ``u``, until every image's primal step
        ‖Lᵀ(u_{k+1} − u_k)‖ falls below ``tol``·‖z‖ (checked every 5 iterations: the check costs one Lᵀ; the dual
        iterates themselves may drift where Lᵀ does not see them) or ``max_iter`` iterations. Its limit is the dual
        forward-backward's: x = z − Lᵀu* = prox_{g∘L}(z)."""
        z = net.z
        scale = z.flatten(1).norm(dim=1).clamp_min(1e-12)
        w, t = u, z.new_ones(z.shape[0])
        for k in range(max_iter):
            u_next = net.activate(0, net.gradient_step(0, w, z))[1]
            step = u_next - u
            t_next = 0.5 * (1 + (1 + 4 * t**2).sqrt())
            restart = (w - u_next).flatten(1).mul(step.flatten(1)).sum(1) > 0
            momentum = torch.where(restart, 0.0, (t - 1) / t_next).view(-1, 1, 1, 1)
            w, u, t = u_next + momentum * step, u_next, torch.where(restart, 1.0, t_next)
            if k % 5 == 4 and bool((net.synthesis(0, step).flatten(1).norm(dim=1) < self.tol * scale).all()):
                break
        self.last_iterations = k + 1
        return u

    def lipschitz_bound(self) -> float:
        """Certified Lip(z ↦ x) ≤ 1 + B_K Σ_{k<K} τ_k B_k, for every σ (see the module docstring)."""
        with torch.no_grad():
            norms, tau = self.norms().double(), self.steps().double()
            per_layer = (tau * norms).expand(self.layers)
            return float(1 + norms[-1] * per_layer[:-1].sum())

    def layer_bound(self) -> dict[str, float]:
        """What :mod:`pnp.certify` reports: max_k τ_k B_k² (< 2 − margin by construction; < 1 for the exact prox)
        and, for the unrolled network, the layer-wise certificate (the exact prox is 1-Lipschitz by the prox theorem
        instead: Moreau 1965)."""
        with torch.no_grad():
            tau_bound2 = float((self.steps() * self.norms() ** 2).max())
        if self.tol is not None:
            return {"max_tau_bound2": tau_bound2, "tol": self.tol}
        return {"lip_D": self.lipschitz_bound(), "max_tau_bound2": tau_bound2}
