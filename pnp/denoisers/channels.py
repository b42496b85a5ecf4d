"""Gray networks on colour images: each channel is denoised as a gray image (channels folded into the batch), and
the per-image noise level that conditional networks need, repeated to match."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from pnp.errors import check

SIGMA_REF = 25 / 255  # noise-conditional networks take σ as log(σ/σ_ref)


def channelwise(forward: Callable) -> Callable:
    """Decorate ``forward(self, x, sigma)`` of a network with ``self.channels == 1`` to accept [B, C, H, W]."""

    @functools.wraps(forward)
    def wrapper(self, x: torch.Tensor, sigma=None, **kwargs) -> torch.Tensor:
        if self.channels == 1 and x.shape[1] > 1:
            return forward(self, x.reshape(-1, 1, *x.shape[-2:]), sigma, **kwargs).reshape(x.shape)
        return forward(self, x, sigma, **kwargs)

    return wrapper


def channelwise_cost(cost: Callable) -> Callable:
    """Decorate ``cost(self, x, sigma)`` ([N] values per gray image) of a network with ``self.channels == 1`` to
    accept [B, C, H, W]: the value of a colour image is the sum over its channels, [B]."""

    @functools.wraps(cost)
    def wrapper(self, x: torch.Tensor, sigma=None) -> torch.Tensor:
        if self.channels == 1 and x.shape[1] > 1:
            return cost(self, x.reshape(-1, 1, *x.shape[-2:]), sigma).view(x.shape[0], -1).sum(1)
        return cost(self, x, sigma)

    return wrapper


def noise_levels(sigma: float | torch.Tensor | None, x: torch.Tensor, who: str) -> torch.Tensor:
    """σ as a [B] tensor for the batch ``x`` (one value, or one per image repeated over its folded channels);
    σ must be given, finite and > 0."""
    check(sigma is not None, f"{who} needs the noise level sigma (its strength)")
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1)
    check(bool((s > 0).all()) and bool(torch.isfinite(s).all()), f"sigma must be finite and > 0, got {sigma}")
    check(x.shape[0] % s.numel() == 0, f"sigma has {s.numel()} values for a batch of {x.shape[0]}")
    return s.repeat_interleave(x.shape[0] // s.numel())


def log_noise_levels(sigma: float | torch.Tensor | None, x: torch.Tensor, who: str) -> torch.Tensor:
    """s = log(σ/σ_ref) as a [B] tensor (:func:`noise_levels`), how the noise-conditional networks read σ."""
    return torch.log(noise_levels(sigma, x, who) / SIGMA_REF)
