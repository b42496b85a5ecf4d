"""Denoisers: every one is a ``deepinv.models.Denoiser`` (forward(x, sigma) on [B, C, H, W]).

The training-free priors (TV, wavelet soft-thresholding, BM3D) are deepinv's, built from ``configs/denoiser``;
this package adds the equivariant wrapper and, later, the convergent learned denoisers.
"""

from pnp.denoisers.equivariant import EquivariantDenoiser

__all__ = ["EquivariantDenoiser"]
