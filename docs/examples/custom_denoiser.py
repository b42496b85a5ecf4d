"""A denoiser of your own, with its convergence class declared.

Any ``deepinv.models.Denoiser`` (a ``torch.nn.Module`` with ``forward(x, sigma)`` on [B, C, H, W]) plugs into the
schemes. Here: the smoothing D(x, σ) = (I + σ∇ᵀ∇)⁻¹x, solved exactly in the Fourier domain (circular boundaries).
It is the prox of the convex g(x) = (σ/2)‖∇x‖², so we declare ``Guarantee("prox_convex")``, and the run then
reports which convergence theorem covers it (or warns when none does; ``strict=True`` makes that an error).
"""

import math

import torch
from deepinv.models import Denoiser

from pnp.guarantees import Guarantee
from pnp.images import load_image
from pnp.monitor import ConvergenceMonitor
from pnp.problems import deblur
from pnp.schemes import PGD
from pnp.tensors import batch_psnr


class GradientSmoothing(Denoiser):
    """prox of (σ/2)‖∇x‖² with circular finite differences: divide the spectrum by 1 + σ|ĝ|²."""

    def forward(self, x: torch.Tensor, sigma: float | None = None, **kwargs) -> torch.Tensor:
        h, w = x.shape[-2:]
        fy = torch.fft.fftfreq(h, dtype=x.dtype, device=x.device).view(-1, 1)
        fx = torch.fft.rfftfreq(w, dtype=x.dtype, device=x.device).view(1, -1)
        laplacian = 4 * torch.sin(math.pi * fy) ** 2 + 4 * torch.sin(math.pi * fx) ** 2  # the symbol of ∇ᵀ∇
        return torch.fft.irfft2(torch.fft.rfft2(x) / (1 + sigma * laplacian), s=(h, w))


# A ready-made problem from pnp.problems: Gaussian blur (σ = 1.6, deepinv's BlurFFT), noise 0.01, and the blurred
# observation as the start. problem.norm (‖A‖) exists, but the scheme does not need it.
x = load_image("camera", size=64)
problem = deblur(x, seed=0)

result = PGD(strict=True).run(
    problem.y,
    problem.physics,
    GradientSmoothing(),
    sigma=0.01,
    x0=problem.x0,
    x_true=x,
    monitor=ConvergenceMonitor(max_iter=500, tol=1e-5),
    guarantee=Guarantee("prox_convex", basis="closed-form prox of (sigma/2)|grad x|^2"),
)

psnr_init, psnr_result = float(batch_psnr(problem.x0, x)), float(batch_psnr(result.x.clamp(0, 1), x))
print(f"deblurring with a custom denoiser: PSNR {psnr_init:.2f} -> {psnr_result:.2f} dB, {result.history.message}")
print(f"covered: {result.verdict.covered}, by {result.verdict.theorem}; {result.verdict.conditions}")

assert result.converged, result.history.message
assert result.verdict.covered
assert psnr_result > psnr_init + 1

# A denoiser declared without a theorem behind it (kind "none") runs too, with a verdict that says so.
unproven = PGD().run(
    problem.y,
    problem.physics,
    GradientSmoothing(),
    sigma=0.01,
    x0=problem.x0,
    monitor=ConvergenceMonitor(max_iter=20),
    guarantee=Guarantee("none"),
)
print(f"declared 'none': covered={unproven.verdict.covered} ({unproven.verdict.conditions})")
assert not unproven.verdict.covered
