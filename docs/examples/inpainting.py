"""Inpainting: half of the pixels are missing.

A deepinv physics built by hand (``deepinv.physics.Inpainting``), the shipped 1-Lipschitz Euler network and
PnP-PGD. ``norm=`` is left out: pnp computes ‖A‖ itself, once per physics (here exactly: the largest value of the
mask, 1).
"""

import deepinv as dinv
import torch

from pnp.guarantees import Guarantee
from pnp.images import load_image
from pnp.monitor import ConvergenceMonitor
from pnp.schemes import PGD
from pnp.tensors import batch_psnr
from pnp.weights import pretrained

# The ground truth: scikit-image's camera (embedded in the wheel, no download), 64×64, [1, 1, 64, 64] in [0, 1].
x = load_image("camera", size=64)

# The forward model: keep a random half of the pixels, plus Gaussian noise of σ = 0.01. Seeded generators make the
# mask and the noise the same at every run.
physics = dinv.physics.Inpainting(
    img_size=(1, 64, 64),
    mask=0.5,
    rng=torch.Generator().manual_seed(0),
    noise_model=dinv.physics.GaussianNoise(sigma=0.01, rng=torch.Generator().manual_seed(1)),
)
y = physics(x)
x0 = physics.A_adjoint(y)  # the zero-filled observation

# The shipped Euler network: nonexpansive by construction and blind (it takes no strength, so sigma=None).
denoiser = pretrained("euler")

# PnP-PGD x⁺ = (1 − ν)x + ν D(x − γ∇f(x)) with γ = 1/‖A‖² (the default step) and ν = 0.9: for a nonexpansive D,
# the Krasnosel'skii–Mann theorem needs ν < 1. Declaring the denoiser's class lets the run say which theorem covers it.
result = PGD(relaxation=0.9).run(
    y,
    physics,
    denoiser,
    sigma=None,
    x0=x0,
    x_true=x,  # optional: the monitor then records the PSNR of every iterate
    monitor=ConvergenceMonitor(max_iter=300, tol=1e-5),
    guarantee=Guarantee("nonexpansive"),
)

psnr_init, psnr_result = float(batch_psnr(x0, x)), float(batch_psnr(result.x.clamp(0, 1), x))
print(f"inpainting: PSNR {psnr_init:.2f} -> {psnr_result:.2f} dB, {result.history.message}")
print(f"theorem: {result.verdict.theorem}")

assert result.converged, result.history.message
assert result.verdict.covered
assert psnr_result > psnr_init + 10
