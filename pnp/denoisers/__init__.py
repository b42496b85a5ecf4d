"""Denoisers: every one is a ``deepinv.models.Denoiser`` (forward(x, sigma) on [B, C, H, W]).

The training-free priors (TV, wavelet soft-thresholding, BM3D) are deepinv's, built from ``pnp/configs/denoiser``.
This package adds the learned ones — the unconstrained / firmly nonexpansive :class:`DnCNN`, the 1-Lipschitz
:class:`EulerNet`, the learned proximal network :class:`LPN`, the convex / weakly convex ridge regularizers
:class:`RidgeRegularizer` (CRR-NN, WCRR-NN; their forward is an exact prox), the unrolled dual forward-backward
:class:`PNN` (proximal neural network, activations from :mod:`pnp.activations`), the gradient-step
:class:`GradientStepDnCNN` (D = Id − ∇g with an explicit potential g) — and two wrappers:
:class:`Relaxed` (θD + (1 − θ)Id, the strength knob of every denoiser) and :class:`EquivariantDenoiser`.
"""

from pnp.denoisers.dncnn import DnCNN
from pnp.denoisers.equivariant import EquivariantDenoiser
from pnp.denoisers.euler import EulerNet
from pnp.denoisers.gradient_step import GradientStepDnCNN
from pnp.denoisers.lpn import LPN
from pnp.denoisers.pnn import PNN
from pnp.denoisers.relaxed import Relaxed
from pnp.denoisers.ridge import RidgeRegularizer

__all__ = ["LPN", "PNN", "DnCNN", "EquivariantDenoiser", "EulerNet", "GradientStepDnCNN", "Relaxed", "RidgeRegularizer"]
