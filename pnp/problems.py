"""Inverse problems y = A x + e built from deepinv physics: deblurring, tomography, compressed sensing.

Each builder either simulates: it takes the ground truth ``x`` ([B, C, H, W] in [0, 1]) and a ``seed``, draws the
noise with a seeded generator on ``x``'s device; or takes ``measured`` data (:class:`Measured`, read from files), builds
the operator for the unknown image and checks y against it (``x``, when given, is then only a ground truth for
scoring). Either way it returns a :class:`Problem` with the initialisation ``x0``. ‖A‖ is computed once per problem
by power iteration (:attr:`Problem.norm`) and cached.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import warnings
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import deepinv as dinv
import torch
from deepinv.physics import DecomposablePhysics, LinearPhysics
from skimage.restoration import estimate_sigma

from pnp.errors import check, check_nonnegative, check_positive
from pnp.io import read_data, read_numbers
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
#: |sum − 1| above which a kernel read from a file is normalised, with a warning
KERNEL_SUM_TOL = 1e-3
ESTIMATE = "estimate"  # noise_sigma=estimate: the noise level estimated from the measurement
log = logging.getLogger("pnp")


@dataclass
class Problem:
    """An inverse problem: ground truth (None for measurements without one), measurements, operator and
    initialisation; ``noise_estimate``: per image, σ estimated from the measurement (``noise_sigma=estimate``)."""

    name: str
    x_true: torch.Tensor | None
    y: torch.Tensor
    physics: LinearPhysics
    x0: torch.Tensor
    seed: int = 0
    noise_estimate: list[float] | None = None

    @cached_property
    def norm(self) -> float:
        """‖A‖, computed once and cached (:func:`operator_norm`)."""
        return operator_norm(self.physics, self.x0[:1], seed=self.seed)

    def element(self, b: int) -> Problem:
        """Image ``b`` of a batch as a problem of its own, with the same operator and ‖A‖."""
        one = slice(b, b + 1)
        part = dataclasses.replace(
            self,
            x_true=None if self.x_true is None else self.x_true[one],
            y=self.y[one],
            x0=self.x0[one],
            noise_estimate=None if self.noise_estimate is None else self.noise_estimate[one],
        )
        part.__dict__["norm"] = self.norm  # cached_property's slot: the batch's ‖A‖, not computed again
        return part


class Measured(NamedTuple):
    """Measurements read from files, [B, …], and the unknown image's (C, H, W) as the config gives it (``image.gray``,
    ``image.size``; None without a size): tomography and compressed sensing rebuild their operator for that image;
    deblurring takes the image's shape from y."""

    y: torch.Tensor
    shape: tuple[int, int, int] | None


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


def noise_level(sigma: float | str, measured: Measured | None) -> tuple[float, list[float] | None]:
    """σ of the Gaussian noise model and, with ``estimate``, the per-image estimates from the measurement (the model
    takes their mean). The estimator is Donoho–Johnstone's: σ̂ = median(|d|) / 0.6745 over the finest diagonal
    wavelet subband d (Daubechies-2), as scikit-image's ``estimate_sigma`` computes it (colour: the channels' mean);
    it assumes white Gaussian noise on an image-like measurement (a blurred image, a sinogram)."""
    if sigma != ESTIMATE:
        check(not isinstance(sigma, str), f"noise_sigma must be a number >= 0 or `{ESTIMATE}`, got {sigma!r}")
        return sigma, None
    check(
        measured is not None,
        "noise_sigma=estimate estimates the noise of a measurement: give measurement.path (or a number)",
    )
    ys = measured.y.detach().double().cpu().numpy()
    estimates = [float(estimate_sigma(y, channel_axis=0, average_sigmas=True)) for y in ys]
    shown = ", ".join(f"{e:.4g}" for e in estimates)
    log.info(
        f"noise_sigma estimated from the measurement: {shown} (MAD of the finest diagonal wavelet band / 0.6745); "
        "the prior's strength stays denoiser.sigma, tuned at the problem config's noise level (set it for this noise)"
    )
    return sum(estimates) / len(estimates), estimates


def unknown(x: torch.Tensor | None, measured: Measured | None, shape: Sequence[int] | None = None) -> torch.Tensor:
    """The unknown image's template [B, C, H, W]: ``x`` when simulating; for measurements zeros of (C, H, W) =
    ``shape`` (default ``measured.shape``), the shape a ground truth ``x`` given beside them must have."""
    if measured is None:
        check(x is not None, "nothing to solve: give an image to simulate from or a measurement")
        return x
    shape = measured.shape if shape is None else tuple(shape)
    check(shape is not None, "image.size is needed to rebuild the operator of a measurement (the image's side)")
    y = measured.y
    if x is not None:
        size, truth = "×".join(map(str, shape)), "×".join(map(str, x.shape[1:]))
        check(tuple(x.shape[1:]) == shape, f"the ground truth (image.path) is {truth}, the measured image {size}")
    return torch.zeros(y.shape[0], *shape, device=y.device, dtype=y.dtype)


def initialise(how: str, y: torch.Tensor, physics: LinearPhysics, x: torch.Tensor) -> torch.Tensor:
    """x0 from the measurements: ``observation`` (y itself), ``adjoint`` (Aᵀy), ``pinv`` (A⁺y), ``fbp``
    (filtered back-projection, tomography only) or ``zeros``; ``x`` has the unknown's shape."""
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


def measure(
    name: str,
    x: torch.Tensor | None,
    like: torch.Tensor,
    physics: LinearPhysics,
    seed: int,
    init: str,
    *,
    measured: Measured | None = None,
    explain: str = "",
    estimate: list[float] | None = None,
) -> Problem:
    """Simulate y = A x + e with ``like`` = x, or check the measured y against the operator (A ``like`` must have
    y's shape; ``explain`` says what fixes it), and build the :class:`Problem`. The physics must already be in the
    image's dtype: ``Module.to(dtype)`` would drop the imaginary part of ``BlurFFT``'s complex mask."""
    physics.tol, physics.max_iter = CG_TOL, CG_MAX_ITER
    with torch.no_grad():
        if measured is None:
            y = physics(like)
        else:
            y, expected = measured.y, tuple(physics.A(like[:1]).shape[1:])
            got = tuple(y.shape[1:])
            check(got == expected, f"measurement of shape {got} does not match {explain}: A x has shape {expected}")
    return Problem(name, x, y, physics, initialise(init, y, physics, like), seed, estimate)


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


def file_kernel(path: str, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A [1, 1, kh, kw] kernel read from ``path`` (a PSF: npy, pt, tif or png; see :mod:`pnp.io`): 2-D, non-negative,
    normalised to sum to one (with a warning when its sum is off by more than ``KERNEL_SUM_TOL``)."""
    k = read_data(path, "kernel")
    if k.ndim > 2 and all(s == 1 for s in k.shape[:-2]):  # [1, 1, kh, kw] as deepinv stores filters
        k = k.reshape(k.shape[-2:])
    check(k.ndim == 2, f"kernel {path} must be a 2-D array (a gray PSF), got shape {k.shape}")
    check(k.min() >= 0, f"kernel {path} has negative entries (min {k.min():.3g}): a blur kernel is non-negative")
    total = float(k.sum())
    check(total > 0, f"kernel {path} sums to 0")
    if abs(total - 1) > KERNEL_SUM_TOL:
        log.warning(
            f"kernel {path} sums to {total:.4g}, not 1: normalised to sum to 1 "
            "(save it divided by its sum to avoid this warning)"
        )
    return torch.from_numpy(k / total).to(device=device, dtype=dtype)[None, None]


def deblur(
    x: torch.Tensor | None = None,
    *,
    measured: Measured | None = None,
    seed: int = 0,
    kernel: str = "gaussian",
    kernel_path: str | None = None,
    kernel_size: int | None = None,
    blur_sigma: float = 1.6,
    padding: str = "circular",
    noise: str = "gaussian",
    noise_sigma: float | str = 0.01,
    poisson_gain: float = 0.01,
    init: str = "observation",
) -> Problem:
    """Deblurring. ``padding=circular`` uses deepinv's ``BlurFFT`` (closed-form prox); other paddings use
    the direct convolution ``Blur`` (slower, CG prox). ``kernel_path``: the PSF from a file, instead of ``kernel``.
    A measured blurred image fixes the image's shape (larger by the kernel's size − 1 with ``padding=valid``)."""
    check(padding in PADDINGS, f"padding must be one of {PADDINGS}, got {padding!r}")
    ref = x if measured is None else measured.y
    if kernel_path is None:
        filt = blur_kernel(kernel, kernel_size, blur_sigma, seed, ref.device, ref.dtype)
    else:
        filt = file_kernel(kernel_path, ref.device, ref.dtype)
    (kh, kw), shape = filt.shape[-2:], None
    if measured is not None:
        y = measured.y
        check(y.dim() == 4, f"deblurring needs a blurred image, (H, W) or (C, H, W), got shape {tuple(y.shape[1:])}")
        grow = (kh - 1, kw - 1) if padding == "valid" else (0, 0)
        shape = (y.shape[1], y.shape[2] + grow[0], y.shape[3] + grow[1])
    like = unknown(x, measured, shape)
    h, w = like.shape[-2:]
    check(h > kh and w > kw, f"image of {h}×{w} pixels must be larger than the {kh}×{kw} blur kernel")
    sigma, estimate = noise_level(noise_sigma, measured)
    noise_m = noise_model(noise, sigma, poisson_gain, generator(seed, like.device))
    if padding == "circular":
        physics = dinv.physics.BlurFFT(
            img_size=tuple(like.shape[1:]), filter=filt, device=like.device, noise_model=noise_m
        )
    else:
        physics = dinv.physics.Blur(filter=filt, padding=padding, device=like.device, noise_model=noise_m)
    explain = f"the {kh}×{kw} blur with padding={padding}"
    return measure("deblur", x, like, physics, seed, init, measured=measured, explain=explain, estimate=estimate)


def tomography_angles(angles: int | str | Sequence[float]) -> int | list[float]:
    """``angles`` views evenly spread over 180° (an int), or the angles in degrees of a list or of a file (``.txt``:
    numbers separated by spaces or new lines, ``.csv``: by commas, ``.npy``/``.pt``: an array)."""
    if isinstance(angles, int) and not isinstance(angles, bool):
        check(angles >= 1, f"angles must be a positive integer, got {angles!r}")
        return angles
    if isinstance(angles, str):
        return read_numbers(angles, "angles").tolist()
    numbers = isinstance(angles, Sequence) and all(isinstance(a, (int, float)) for a in angles)
    check(
        numbers and len(angles) > 0 and all(math.isfinite(a) for a in angles),
        f"angles must be a positive integer, a list of angles in degrees or a file of them, got {angles!r}",
    )
    return [float(a) for a in angles]


def ct(
    x: torch.Tensor | None = None,
    *,
    measured: Measured | None = None,
    seed: int = 0,
    angles: int | str | Sequence[float] = 90,
    noise: str = "gaussian",
    noise_sigma: float | str = 0.01,
    poisson_gain: float = 0.01,
    init: str = "fbp",
) -> Problem:
    """Parallel-beam tomography, ``angles`` views evenly spread over 180° (or the listed angles, in degrees). The
    operator is normalised to ‖A‖ = 1 (deepinv's ``normalize=True``), so ``noise_sigma`` is in the units of the image,
    and a measured sinogram (detectors × angles) must be in the units of that normalised operator."""
    views = tomography_angles(angles)
    like = unknown(x, measured)
    h, w = like.shape[-2:]
    check(h == w, f"tomography needs a square image, got {h}×{w}")
    check(
        like.dtype == torch.float32, "deepinv 0.5.0's Tomography runs in float32 only (its sampling grids stay float32)"
    )
    sigma, estimate = noise_level(noise_sigma, measured)
    noise_m = noise_model(noise, sigma, poisson_gain, generator(seed, like.device))
    physics = dinv.physics.Tomography(
        angles=views,
        img_width=w,
        circle=False,
        normalize=True,
        device=like.device,
        dtype=like.dtype,
        noise_model=noise_m,
    )
    count = views if isinstance(views, int) else len(views)
    explain = (
        f"{count} angles (problem.angles) for a {w}×{w} image (image.size={w}): a sinogram is detectors × angles, "
        "with about √2 × image.size detectors"
    )
    return measure("ct", x, like, physics, seed, init, measured=measured, explain=explain, estimate=estimate)


def cs(
    x: torch.Tensor | None = None,
    *,
    measured: Measured | None = None,
    seed: int = 0,
    ratio: float = 0.25,
    operator: str = "dense",
    noise: str = "gaussian",
    noise_sigma: float | str = 0.01,
    poisson_gain: float = 0.01,
    init: str = "pinv",
) -> Problem:
    """Compressed sensing with m = ratio · n measurements: a dense Gaussian matrix (``dense``, small
    images) or deepinv's fast subsampled Hadamard single-pixel camera (``spc``, sides a power of two). A measured
    vector needs the operator it came from: the same ``seed``, ``ratio``, ``operator`` and image size."""
    check(isinstance(ratio, (int, float)) and 0 < ratio <= 1, f"ratio must be in (0, 1], got {ratio!r}")
    check(operator in CS_OPERATORS, f"operator must be one of {CS_OPERATORS}, got {operator!r}")
    check(
        noise_sigma != ESTIMATE,
        "noise_sigma=estimate needs an image-like measurement (deblurring, tomography); give a number for CS",
    )
    like = unknown(x, measured)
    c, h, w = like.shape[1:]
    m = max(1, round(ratio * c * h * w))
    rng = generator(seed, like.device)
    sigma, estimate = noise_level(noise_sigma, measured)
    noise_m = noise_model(noise, sigma, poisson_gain, generator(seed + 1, like.device))
    if operator == "dense":
        check(
            c * h * w <= DENSE_CS_MAX_PIXELS,
            f"dense CS at {c}×{h}×{w} is too large (max {DENSE_CS_MAX_PIXELS} values); use operator=spc",
        )
        physics = dinv.physics.CompressedSensing(
            m=m, img_size=(c, h, w), dtype=like.dtype, device=like.device, rng=rng, noise_model=noise_m
        )
    else:
        check(all(s & (s - 1) == 0 for s in (h, w)), f"operator=spc needs sides that are powers of two, got {h}×{w}")
        m = max(1, round(ratio * h * w))
        physics = dinv.physics.SinglePixelCamera(
            m=m, img_size=(c, h, w), fast=True, device=like.device, dtype=like.dtype, rng=rng, noise_model=noise_m
        )
    explain = (
        f"operator={operator} with ratio={ratio} and seed={seed} on a {c}×{h}×{w} image "
        "(problem.ratio, seed, image.size, image.gray rebuild the operator)"
    )
    return measure("cs", x, like, physics, seed, init, measured=measured, explain=explain, estimate=estimate)
