"""Gray networks on colour images: each channel is denoised as a gray image (channels folded into the batch)."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch


def channelwise(forward: Callable) -> Callable:
    """Decorate ``forward(self, x, sigma)`` of a network with ``self.channels == 1`` to accept [B, C, H, W]."""

    @functools.wraps(forward)
    def wrapper(self, x: torch.Tensor, sigma=None, **kwargs) -> torch.Tensor:
        if self.channels == 1 and x.shape[1] > 1:
            return forward(self, x.reshape(-1, 1, *x.shape[-2:]), sigma, **kwargs).reshape(x.shape)
        return forward(self, x, sigma, **kwargs)

    return wrapper
