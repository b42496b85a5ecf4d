"""DnCNN without batch normalisation (Zhang et al. 2017), residual: D(x) = x − R(x).

The same architecture serves as the unconstrained reference (``dncnn``) and, trained with the Jacobian penalty of
Pesquet, Repetti, Terris & Wiaux (SIAM J. Imaging Sci. 2021), as the firmly nonexpansive ``fne_dncnn``. Blind by
default: the noise level ``sigma`` passed to forward is ignored (as in deepinv's DnCNN). ``conditional=True`` feeds
a constant noise-level map log(σ/σ_ref) as one more input channel (FFDNet, Zhang, Zuo, Zhang 2018; DRUNet): D(x, σ),
σ then required. A map is an input, not a weight: a Jacobian penalty must then hold at every σ, so a conditional
``fne_dncnn`` samples its penalty points over the training range of σ and is certified at several (``pnp.certify``).
"""

from __future__ import annotations

import torch
from deepinv.models import Denoiser
from torch import nn

from pnp.denoisers.channels import channelwise, log_noise_levels
from pnp.errors import check
from pnp.lipschitz import conv_spectral_norm

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "elu": nn.ELU}


def body(in_channels: int, out_channels: int, depth: int, width: int, activation: str = "relu") -> nn.Sequential:
    """DnCNN's ``depth`` 3×3 convolutions of ``width`` channels with an activation between each two."""
    check(activation in ACTIVATIONS, f"activation must be one of {list(ACTIVATIONS)}, got {activation!r}")
    act = ACTIVATIONS[activation]
    layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 3, padding=1), act()]
    for _ in range(depth - 2):
        layers += [nn.Conv2d(width, width, 3, padding=1), act()]
    layers.append(nn.Conv2d(width, out_channels, 3, padding=1))
    return nn.Sequential(*layers)


def with_noise_map(x: torch.Tensor, sigma: float | torch.Tensor | None, who: str) -> torch.Tensor:
    """[x, log(σ/σ_ref)] on the channel axis: the constant noise-level map of FFDNet / DRUNet."""
    s = log_noise_levels(sigma, x, who).view(-1, 1, 1, 1)
    return torch.cat([x, s.expand(-1, 1, *x.shape[-2:])], dim=1)


class DnCNN(Denoiser):
    """``depth`` 3×3 convolutions of ``width`` channels with ReLUs; the network predicts the noise."""

    def __init__(self, channels: int = 1, depth: int = 17, width: int = 64, conditional: bool = False) -> None:
        super().__init__()
        self.net = body(channels + int(conditional), channels, depth, width)
        self.channels, self.conditional = channels, conditional
        self.config = {"channels": channels, "depth": depth, "width": width}
        if conditional:  # recorded only when set, so manifests of blind networks keep loading
            self.config["conditional"] = True

    @channelwise
    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        if not self.conditional:
            return x - self.net(x)
        return x - self.net(with_noise_map(x, sigma, "the conditional DnCNN"))

    def layer_bound(self) -> dict[str, float]:
        """Upper bounds from the product P of the convolutions' spectral norms (ReLU is 1-Lipschitz):
        Lip(D) ≤ 1 + P and Lip(2D − Id) = Lip(Id − 2R) ≤ 1 + 2P."""
        product = 1.0
        for layer in self.net:
            if isinstance(layer, nn.Conv2d):
                product *= float(conv_spectral_norm(layer.weight.detach())[0])
        return {"lip_D": 1.0 + product, "lip_2D_minus_I": 1.0 + 2.0 * product, "conv_norm_product": product}
