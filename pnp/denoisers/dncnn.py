"""DnCNN without batch normalisation (Zhang et al. 2017), residual: D(x) = x − R(x).

The same architecture serves as the unconstrained reference (``dncnn``) and, trained with the Jacobian penalty of
Pesquet, Repetti, Terris & Wiaux (SIAM J. Imaging Sci. 2021), as the firmly nonexpansive ``fne_dncnn``. Blind: the
noise level ``sigma`` passed to forward is ignored (as in deepinv's DnCNN).
"""

from __future__ import annotations

import torch
from deepinv.models import Denoiser
from torch import nn

from pnp.denoisers.channels import channelwise
from pnp.lipschitz import conv_spectral_norm


class DnCNN(Denoiser):
    """``depth`` 3×3 convolutions of ``width`` channels with ReLUs; the network predicts the noise."""

    def __init__(self, channels: int = 1, depth: int = 17, width: int = 64) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
        layers.append(nn.Conv2d(width, channels, 3, padding=1))
        self.net = nn.Sequential(*layers)
        self.channels = channels
        self.config = {"channels": channels, "depth": depth, "width": width}

    @channelwise
    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        return x - self.net(x)

    def layer_bound(self) -> dict[str, float]:
        """Upper bounds from the product P of the convolutions' spectral norms (ReLU is 1-Lipschitz):
        Lip(D) ≤ 1 + P and Lip(2D − Id) = Lip(Id − 2R) ≤ 1 + 2P."""
        product = 1.0
        for layer in self.net:
            if isinstance(layer, nn.Conv2d):
                product *= float(conv_spectral_norm(layer.weight.detach())[0])
        return {"lip_D": 1.0 + product, "lip_2D_minus_I": 1.0 + 2.0 * product, "conv_norm_product": product}
