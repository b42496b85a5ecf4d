"""Denoisers: every one is a ``deepinv.models.Denoiser`` (forward(x, sigma) on [B, C, H, W]).

The training-free priors (TV, wavelet soft-thresholding, BM3D) are deepinv's, built from ``configs/denoiser``.
This package adds the learned ones — the unconstrained / firmly nonexpansive :class:`DnCNN`, the 1-Lipschitz
:class:`EulerNet`, the learned proximal network :class:`LPN` — and the :class:`EquivariantDenoiser` wrapper.
"""

from pnp.denoisers.dncnn import DnCNN
from pnp.denoisers.equivariant import EquivariantDenoiser
from pnp.denoisers.euler import EulerNet
from pnp.denoisers.lpn import LPN

__all__ = ["LPN", "DnCNN", "EquivariantDenoiser", "EulerNet"]
