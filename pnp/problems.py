"""Inverse problems y = A x + e built from deepinv physics: deblurring, tomography, compressed sensing.

Each builder takes the ground truth ``x`` ([B, C, H, W] in [0, 1]) and a ``seed``, draws the noise with a
seeded generator on ``x``'s device, and returns a :class:`Problem` with the initialisation ``x0``.
‖A‖ is computed once per problem by power iteration (:attr:`Problem.norm`) and cached.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import deepinv as dinv
import torch
from deepinv.physics import DecomposablePhysics, LinearPhysics

from pnp.errors import check, check_nonnegative, check_positive
from pnp.runtime import generator

KERNELS = ("gaussian", "motion", "uniform")
DEFAULT_KERNEL_SIZE = {"motion": 31, "uniform": 9}  # kernel_size: null (a Gaussian's follows from its σ)
PADDINGS = ("circular", "reflect", "replicate", "valid")
NOISES = ("gaussian", "poisson")
CS_OPERATORS = ("dense", "spc")
#: Inner conjugate-gradient settings for prox_{γf} and A⁺ when the physics has no closed form (deepinv's default
#: tolerance, 1e-4, leaves PnP-ADMM at a visibly wrong fixed point).
CG_TOL, CG_MAX_ITER = 1e-7, 200
#: Largest image (pixels) for the dense Gaussian CS matrix: beyond it construction takes minutes and GBs.
DENSE_CS_MAX_PIXELS = 128 * 128


@dataclass
class Problem:
    """A measured inverse problem: ground truth, measurements, operator and initialisation."""

    name: str
    x_true: torch.Tensor
    y: torch.Tensor
    physics: LinearPhysics
    x0: torch.Tensor
    seed: int = 0

    @cached_property
    def norm(self) -> float:
        """‖A‖, computed once and cached (:func:`operator_norm`)."""
        return operator_norm(self.physics, self.x_true[:1], seed=self.seed)


#: ‖A‖ per physics object and input (shape, dtype, device), for runs that are not given it
NORMS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def operator_norm(
    physics: LinearPhysics, like: torch.Tensor, seed: int = 0, max_iter: int = 100, tol: float = 1e-4
) -> float:
    """‖A‖ (not ‖A‖², which is what deepinv's ``compute_norm`` returns unless ``squared=False``): exact (the
    largest singular value) for decomposable operators such as ``BlurFFT``, else power iteration on AᵀA from a
    seeded random start, a lower bound (to ``tol`` relative, or ``max_iter`` iterations)."""
    if isinstance(physics, DecomposablePhysics):
        return float(torch.as_tensor(physics.mask).abs().max())
    start = torch.randn(like[:1].shape, generator=generator(seed, torch.device("cpu")))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deepinv warns when the power iteration stops at max_iter
        value = physics.compute_norm(start.to(like), max_iter=max_iter, tol=tol, verbose=False, squared=False)
    return float(value)


def cached_norm(physics: LinearPhysics, like: torch.Tensor) -> float:
    """:func:`operator_norm`, computed once per physics object and input shape, dtype and device."""
    key = (tuple(like.shape[1:]), like.dtype, like.device)
    per_physics = NORMS.setdefault(physics, {})
    if key not in per_physics:
        per_physics[key] = operator_norm(physics, like)
    return per_physics[key]


def noise_model(kind: str, sigma: float, gain: float, rng: torch.Generator) -> dinv.physics.NoiseModel:
    """deepinv noise model: additive Gaussian (std ``sigma``) or Poisson (``y = gain · P(Ax / gain)``)."""
    check(kind in NOISES, f"noise must be one of {NOISES}, got {kind!r}")
    if kind == "gaussian":
        return dinv.physics.GaussianNoise(sigma=check_nonnegative("noise_sigma", sigma), rng=rng)
    return dinv.physics.PoissonNoise(gain=check_positive("poisson_gain", gain), clip_positive=True, rng=rng)


def initialise(how: str, y: torch.Tensor, physics: LinearPhysics, x: torch.Tensor) -> torch.Tensor:
    """x0 from the measurements: ``observation`` (y itself), ``adjoint`` (Aᵀy), ``pinv`` (A⁺y), ``fbp``
    (filtered back-projection, tomography only) or ``zeros``."""
    inits: dict[str, Callable[[], torch.Tensor]] = {
        "observation": lambda: y.clone(),
        "adjoint": lambda: physics.A_adjoint(y),
        "pinv": lambda: physics.A_dagger(y),
        "fbp": lambda: physics.A_dagger(y),
        "zeros": lambda: torch.zeros_like(x),
    }
    check(how in inits, f"init must be one of {sorted(inits)}, got {how!r}")
    check(
        how != "observation" or y.shape == x.shape,
        f"init=observation needs measurements of the image's shape, got {tuple(y.shape)}; use init=adjoint",
    )
    check(how != "fbp" or isinstance(physics, dinv.physics.Tomography), "init=fbp is for tomography only")
    with torch.no_grad():
        return inits[how]()


def measure(name: str, x: torch.Tensor, physics: LinearPhysics, seed: int, init: str) -> Problem:
    """Apply the physics and its noise model to ``x`` and build the :class:`Problem`. The physics must already be
    in ``x``'s dtype: ``Module.to(dtype)`` would drop the imaginary part of ``BlurFFT``'s complex mask."""
    physics.tol, physics.max_iter = CG_TOL, CG_MAX_ITER
    with torch.no_grad():
        y = physics(x)
    return Problem(name, x, y, physics, initialise(init, y, physics, x), seed)


def blur_kernel(kind: str, size: int | None, blur_sigma: float, seed: int, device, dtype) -> torch.Tensor:
    """A [1, 1, k, k] kernel summing to one: Gaussian (std ``blur_sigma``), motion (random, from ``seed``)
    or uniform (box)."""
    check(kind in KERNELS, f"kernel must be one of {KERNELS}, got {kind!r}")
    check(
        size is None or (isinstance(size, int) and size >= 1 and size % 2 == 1),
        f"kernel_size must be an odd positive integer, got {size!r}",
    )
    if kind == "gaussian":
        s = check_positive("blur_sigma", blur_sigma)
        psf = None if size is None else (size, size)
        return dinv.physics.functional.gaussian_blur(psf_size=psf, sigma=(s, s), device=device, dtype=dtype)
    size = size or DEFAULT_KERNEL_SIZE[kind]
    if kind == "uniform":
        return torch.full((1, 1, size, size), 1.0 / size**2, device=device, dtype=dtype)
    motion = dinv.physics.generator.MotionBlurGenerator(
        psf_size=(size, size), rng=generator(seed, device), device=device, dtype=dtype
    )
    return motion.step(batch_size=1, seed=seed)["filter"]


def deblur(
    x: torch.Tensor,
    *,
    seed: int = 0,
    kernel: str = "gaussian",
    kernel_size: int | None = None,
    blur_sigma: float = 1.6,
    padding: str = "circular",
    noise: str = "gaussian",
    noise_sigma: float = 0.01,
    poisson_gain: float = 0.01,
    init: str = "observation",
) -> Problem:
    """Deblurring. ``padding=circular`` uses deepinv's ``BlurFFT`` (closed-form prox); other paddings use
    the direct convolution ``Blur`` (slower, CG prox)."""
    check(padding in PADDINGS, f"padding must be one of {PADDINGS}, got {padding!r}")
    filt = blur_kernel(kernel, kernel_size, blur_sigma, seed, x.device, x.dtype)
    k, (h, w) = filt.shape[-1], x.shape[-2:]
    check(min(h, w) > k, f"image of {h}×{w} pixels is smaller than the {k}×{k} blur kernel")
    rng = generator(seed, x.device)
    noise_m = noise_model(noise, noise_sigma, poisson_gain, rng)
    if padding == "circular":
        physics = dinv.physics.BlurFFT(img_size=tuple(x.shape[1:]), filter=filt, device=x.device, noise_model=noise_m)
    else:
        physics = dinv.physics.Blur(filter=filt, padding=padding, device=x.device, noise_model=noise_m)
    return measure("deblur", x, physics, seed, init)


def ct(
    x: torch.Tensor,
    *,
    seed: int = 0,
    angles: int = 90,
    noise: str = "gaussian",
    noise_sigma: float = 0.01,
    poisson_gain: float = 0.01,
    init: str = "fbp",
) -> Problem:
    """Parallel-beam tomography, ``angles`` views evenly spread over 180°. The operator is normalised to
    ‖A‖ = 1 (deepinv's ``normalize=True``), so ``noise_sigma`` is in the units of the image."""
    check(isinstance(angles, int) and angles >= 1, f"angles must be a positive integer, got {angles!r}")
    h, w = x.shape[-2:]
    check(h == w, f"tomography needs a square image, got {h}×{w}")
    check(x.dtype == torch.float32, "deepinv 0.5.0's Tomography runs in float32 only (its sampling grids stay float32)")
    noise_m = noise_model(noise, noise_sigma, poisson_gain, generator(seed, x.device))
    physics = dinv.physics.Tomography(
        angles=angles, img_width=w, circle=False, normalize=True, device=x.device, dtype=x.dtype, noise_model=noise_m
    )
    return measure("ct", x, physics, seed, init)


def cs(
    x: torch.Tensor,
    *,
    seed: int = 0,
    ratio: float = 0.25,
    operator: str = "dense",
    noise: str = "gaussian",
    noise_sigma: float = 0.01,
    poisson_gain: float = 0.01,
    init: str = "pinv",
) -> Problem:
    """Compressed sensing with m = ratio · n measurements: a dense Gaussian matrix (``dense``, small
    images) or deepinv's fast subsampled Hadamard single-pixel camera (``spc``, sides a power of two)."""
    check(isinstance(ratio, (int, float)) and 0 < ratio <= 1, f"ratio must be in (0, 1], got {ratio!r}")
    check(operator in CS_OPERATORS, f"operator must be one of {CS_OPERATORS}, got {operator!r}")
    c, h, w = x.shape[1:]
    m = max(1, round(ratio * c * h * w))
    rng = generator(seed, x.device)
    noise_m = noise_model(noise, noise_sigma, poisson_gain, generator(seed + 1, x.device))
    if operator == "dense":
        check(
            c * h * w <= DENSE_CS_MAX_PIXELS,
            f"dense CS at {c}×{h}×{w} is too large (max {DENSE_CS_MAX_PIXELS} values); use operator=spc",
        )
        physics = dinv.physics.CompressedSensing(
            m=m, img_size=(c, h, w), dtype=x.dtype, device=x.device, rng=rng, noise_model=noise_m
        )
    else:
        check(all(s & (s - 1) == 0 for s in (h, w)), f"operator=spc needs sides that are powers of two, got {h}×{w}")
        m = max(1, round(ratio * h * w))
        physics = dinv.physics.SinglePixelCamera(
            m=m, img_size=(c, h, w), fast=True, device=x.device, dtype=x.dtype, rng=rng, noise_model=noise_m
        )
    return measure("cs", x, physics, seed, init)
