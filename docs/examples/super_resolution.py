"""Super-resolution ×2: a bicubic low-pass filter, then every second pixel.

A deepinv physics built by hand (``deepinv.physics.Downsampling``), deepinv's TV denoiser and PnP-ADMM. ``norm=``
is left out: pnp computes ‖A‖ itself by power iteration (here ‖A‖ ≈ 0.5, not 1: a constant image loses three
quarters of its pixels). Passing deepinv's ``physics.compute_norm(x)``, which is ‖A‖² by default, would be caught.
"""

import deepinv as dinv
import torch

from pnp.guarantees import Guarantee
from pnp.images import load_image
from pnp.monitor import ConvergenceMonitor
from pnp.schemes import ADMM
from pnp.tensors import batch_psnr

# The ground truth: scikit-image's camera, 96×96 gray.
x = load_image("camera", size=96)

# The forward model: bicubic anti-aliasing filter, decimation by 2 (circular boundaries), Gaussian noise σ = 0.01.
physics = dinv.physics.Downsampling(
    img_size=(1, 96, 96),
    factor=2,
    filter="bicubic",
    padding="circular",
    noise_model=dinv.physics.GaussianNoise(sigma=0.01, rng=torch.Generator().manual_seed(1)),
)
y = physics(x)  # [1, 1, 48, 48]
x0 = physics.A_dagger(y)  # the pseudo-inverse: a 96×96 start

# TV's prox (deepinv, by an inner primal-dual solve) is the prox of a convex function: PnP-ADMM is then covered by
# the Eckstein–Bertsekas theorem, with any penalty γ. The strength sigma is the TV weight, D(x, sigma).
denoiser = dinv.models.TVDenoiser(n_it_max=50, crit=1e-6)
result = ADMM().run(
    y,
    physics,
    denoiser,
    sigma=0.01,
    x0=x0,
    x_true=x,
    monitor=ConvergenceMonitor(max_iter=400, tol=1e-5),
    guarantee=Guarantee("prox_convex", basis="prox of the convex TV"),
)

psnr_init, psnr_result = float(batch_psnr(x0.clamp(0, 1), x)), float(batch_psnr(result.x.clamp(0, 1), x))
print(f"super-resolution x2: PSNR {psnr_init:.2f} -> {psnr_result:.2f} dB, {result.history.message}")
print(f"theorem: {result.verdict.theorem}")

assert result.converged, result.history.message
assert result.verdict.covered
assert psnr_result > psnr_init + 1
