"""1-Lipschitz gradient-flow (Euler) network (Sherry, Celledoni, Ehrhardt, Murari, Owren, Schönlieb, Physica D 2024).

Lift the image by zero-padding to ``width`` channels, apply L explicit Euler steps of gradient flows

    x ← x − τ_l W_lᵀ σ(W_l x + b_l),     W_l a 3×3 convolution, σ = ReLU,

and keep the first channels. Each step is nonexpansive when τ_l ∈ [0, 2/‖W_l‖²]; here τ_l = min(softplus(t_l),
(2 − margin)/‖W_l‖²), so the bound holds at every forward pass. In training ‖W_l‖ comes from a persistent power
iteration, re-converged from its previous vector at every forward (a few steps once training is under way). In eval
mode it is the certified bound of :func:`pnp.lipschitz.conv_norm_bound` (valid for every image size, ≥ the power
estimate by ~0.5 %), computed once per set of weights and recomputed whenever they change: the shipped network is
1-Lipschitz by construction, not by measurement. ``averaged=True`` returns (x + N(x))/2, which is firmly nonexpansive.

``conditional=True`` makes it noise-conditional without touching the proof: with s = log(σ/σ_ref), each layer's bias
is b + c·s and its step min(softplus(t + e·s), (2 − margin)/‖W‖²). Neither enters the x-Lipschitz bound of the
layer, so D(·, σ) is nonexpansive for every σ; σ is then required (``denoiser.sigma``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from deepinv.models import Denoiser
from torch import nn

from pnp.denoisers.cache import weights_key
from pnp.denoisers.channels import SIGMA_REF, channelwise, log_noise_levels
from pnp.lipschitz import conv_norm_bound, conv_spectral_norm
from pnp.tensors import unit

POWER_MAX_ITER, POWER_TOL = 1000, 1e-6
NORM_PROBE = 32  # side of the training power-iteration vector (eval uses the size-independent certified bound)


class EulerLayer(nn.Module):
    """x ← x − τ Wᵀ ReLU(W x + b) with τ ≤ (2 − margin)/‖W‖²; conditional: b, τ depend on s = log(σ/σ_ref)."""

    def __init__(self, width: int, margin: float = 0.02, conditional: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(width, width, 3, 3) * math.sqrt(2.0 / (9 * width)))
        self.bias = nn.Parameter(torch.zeros(width))
        self.step = nn.Parameter(torch.tensor(0.5))  # softplus(step) is the unconstrained τ
        if conditional:
            self.bias_slope = nn.Parameter(torch.zeros(width))  # c: b(σ) = b + c s
            self.step_slope = nn.Parameter(torch.zeros(()))  # e: τ(σ) = min(softplus(t + e s), cap)
        self.conditional = conditional
        self.margin = margin
        self.register_buffer("v", unit(torch.randn(1, width, NORM_PROBE, NORM_PROBE)))
        self._bound: torch.Tensor | None = None  # eval mode: the certified bound of the weights of ``_bound_key``
        self._bound_key: tuple = ()

    def update_norm(self) -> torch.Tensor:
        """Converge the persistent power iteration; returns ‖W‖ = ‖W v‖ (differentiable in W)."""
        with torch.no_grad():
            _, self.v = conv_spectral_norm(self.weight, v=self.v, n_iter=POWER_MAX_ITER, tol=POWER_TOL)
        return torch.linalg.vector_norm(F.conv2d(self.v, self.weight, padding=1))

    def certified_norm(self) -> torch.Tensor:
        """B ≥ ‖W‖ for every image size (:func:`conv_norm_bound`); in eval mode cached until the weights change (a
        load, an optimiser step, ``to()``: :func:`pnp.denoisers.cache.weights_key`)."""
        if self.training:
            return conv_norm_bound(self.weight)
        key = weights_key(self.weight)
        if self._bound is None or key != self._bound_key:
            self._bound, self._bound_key = conv_norm_bound(self.weight), key
        return self._bound

    def tau(self, s: torch.Tensor | None = None) -> torch.Tensor:
        """τ = min(softplus(t [+ e s]), (2 − margin)/‖W‖²): power-iteration ‖W‖ in training, certified bound in
        eval; per sample ([B, 1, 1, 1]) when conditional."""
        norm = self.update_norm() if self.training else self.certified_norm()
        step = self.step if s is None else self.step + self.step_slope * s
        return torch.minimum(F.softplus(step), (2.0 - self.margin) / norm**2)

    def forward(self, x: torch.Tensor, s: torch.Tensor | None = None) -> torch.Tensor:
        w = self.weight.to(x.dtype)
        pre = F.conv2d(x, w, self.bias.to(x.dtype), padding=1)
        if s is not None:
            pre = pre + self.bias_slope.to(x.dtype).view(1, -1, 1, 1) * s
        return x - self.tau(s).to(x.dtype) * F.conv_transpose2d(F.relu(pre), w, padding=1)


class EulerNet(Denoiser):
    """Nonexpansive denoiser N = P ∘ E_L ∘ … ∘ E_1 ∘ lift (or its average with the identity)."""

    def __init__(
        self,
        channels: int = 1,
        width: int = 64,
        depth: int = 10,
        averaged: bool = False,
        margin: float = 0.02,
        conditional: bool = False,
    ) -> None:
        super().__init__()
        self.channels, self.width, self.averaged, self.conditional = channels, width, averaged, conditional
        self.layers = nn.ModuleList(EulerLayer(width, margin, conditional) for _ in range(depth))
        self.config = {"channels": channels, "width": width, "depth": depth, "averaged": averaged, "margin": margin}
        if conditional:  # recorded only when set, so manifests of blind networks keep loading
            self.config["conditional"] = True

    def log_sigma(self, sigma: float | torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
        """s = log(σ/σ_ref) as [B, 1, 1, 1] (None for the blind network, which ignores σ)."""
        if not self.conditional:
            return None
        return log_noise_levels(sigma, x, "the conditional Euler network").view(-1, 1, 1, 1)

    @channelwise
    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        s = self.log_sigma(sigma, x)
        z = F.pad(x, (0, 0, 0, 0, 0, self.width - self.channels))
        for layer in self.layers:
            z = layer(z, s)
        out = z[:, : self.channels]
        return 0.5 * (x + out) if self.averaged else out

    def layer_bound(self) -> dict[str, float]:
        """Each layer is nonexpansive by construction: report max_l τ_l B_l²/2 ≤ 1 − margin/2, with B_l ≥ ‖W_l‖ the
        certified bound (any image size), and the resulting bound Lip(N) ≤ 1 (conditional: the max over σ in
        [1e-3, 1], where τ(σ) is monotone in log σ, so the ends attain it)."""
        ends = None if not self.conditional else torch.log(torch.tensor([1e-3, 1.0]) / SIGMA_REF).view(-1, 1, 1, 1)
        with torch.no_grad():
            ratios = [float((layer.tau(ends) * layer.certified_norm() ** 2 / 2).max()) for layer in self.layers]
        return {"lip_D": 1.0, "max_tau_bound2_over_2": max(ratios)}
