"""Accelerated MRI: a quarter of the k-space lines of the Shepp–Logan phantom.

deepinv's single-coil ``MRI`` is complex-valued: images and measurements are [B, 2, H, W], channel 0 the real part
and channel 1 the imaginary part. The schemes need nothing special for it (they only call A, Aᵀ and the denoiser),
and ``norm=`` is left out: the operator is decomposable, so ‖A‖ is exact (1, the mask's largest value).

The denoiser sees a two-channel image. deepinv's TV and wavelet denoisers act on each channel separately, and pnp's
gray networks (``pretrained("euler")``, ``"crr"``, …) fold the channels into the batch: the real and imaginary parts
are then denoised as two gray images. A colour network would need a wrapper that does this folding.
"""

import deepinv as dinv
import torch

from pnp.guarantees import Guarantee
from pnp.images import load_image
from pnp.monitor import ConvergenceMonitor
from pnp.schemes import PGD
from pnp.tensors import batch_psnr

# The ground truth: the Shepp–Logan phantom, 64×64, as a complex image with a zero imaginary part: [1, 2, 64, 64].
magnitude = load_image("phantom", size=64)
x = torch.cat([magnitude, torch.zeros_like(magnitude)], dim=1)

# A Cartesian mask (vertical lines, 4× acceleration, Gaussian density, 8 % of the lines at the centre), then
# complex Gaussian noise of σ = 0.01 on the sampled k-space.
generator = dinv.physics.generator.GaussianMaskGenerator(
    img_size=(2, 64, 64), acceleration=4, center_fraction=0.08, rng=torch.Generator().manual_seed(0)
)
mask = generator.step(batch_size=1, seed=0)["mask"]
physics = dinv.physics.MRI(
    mask=mask, noise_model=dinv.physics.GaussianNoise(sigma=0.01, rng=torch.Generator().manual_seed(1))
)
y = physics(x)
x0 = physics.A_adjoint(y)  # the zero-filled inverse Fourier transform


def magnitude_psnr(z: torch.Tensor) -> float:
    """PSNR of |z| = √(re² + im²) against the phantom (the history's PSNR is over both channels, clipped)."""
    return float(batch_psnr(z.pow(2).sum(dim=1, keepdim=True).sqrt().clamp(0, 1), magnitude))


# PnP-PGD with the TV prox (convex) at γ = 1/‖A‖² = 1.
result = PGD().run(
    y,
    physics,
    dinv.models.TVDenoiser(n_it_max=50, crit=1e-6),
    sigma=0.02,
    x0=x0,
    x_true=x,
    monitor=ConvergenceMonitor(max_iter=400, tol=1e-5),
    guarantee=Guarantee("prox_convex", basis="prox of the convex TV"),
)

psnr_init, psnr_result = magnitude_psnr(x0), magnitude_psnr(result.x)
print(f"MRI 4x: magnitude PSNR {psnr_init:.2f} -> {psnr_result:.2f} dB, {result.history.message}")

assert result.converged, result.history.message
assert result.verdict.covered
assert psnr_result > psnr_init + 3
