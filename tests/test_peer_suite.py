"""The generic denoiser checks (deepinv's own denoiser tests, adapted) over every configured denoiser: each file in
``pnp/configs/denoiser/`` joins automatically, built exactly as ``pnp.solve`` builds it (shipped weights,
θ relaxation)."""

from __future__ import annotations

import deepinv as dinv
import pytest
import torch
from deepinv.optim.data_fidelity import L2

from pnp.config import available, compose_denoiser

CONFIGURED = available("denoiser")
NOT_DIFFERENTIABLE = {"bm3d"}  # a NumPy/C++ solver behind deepinv's wrapper: no autograd through it
ALGORITHMS = ("PGD", "HQS", "DRS", "ADMM")


@pytest.fixture(scope="module", params=CONFIGURED)
def configured(request) -> tuple[str, dinv.models.Denoiser, float | None]:
    den, sigma = compose_denoiser(request.param, torch.device("cpu"))
    return request.param, den, sigma


def reference_input(channels: int, batch: int = 2, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Odd, non-square images with noise: the shapes where padding and strides go wrong."""
    g = torch.Generator().manual_seed(0)
    clean = torch.linspace(0.2, 0.8, 23).expand(batch, channels, 17, 23).to(dtype)
    return clean + 0.05 * torch.randn(clean.shape, generator=g, dtype=dtype)


@pytest.mark.parametrize("channels", [1, 3])
def test_odd_sizes_colour_and_gray_batches(configured, channels):
    name, den, sigma = configured
    x = reference_input(channels)
    with torch.no_grad():
        out = den(x, sigma)
        single = den(x[1:], sigma)
    assert out.shape == x.shape and out.dtype == x.dtype and torch.isfinite(out).all(), name
    assert not out.requires_grad
    torch.testing.assert_close(single, out[1:], rtol=1e-4, atol=1e-4)  # batch elements are independent


def test_sigma_as_a_float_or_one_value_per_image(configured):
    name, den, sigma = configured
    if sigma is None:
        pytest.skip(f"{name} is blind: it takes no sigma")
    x = reference_input(1)
    with torch.no_grad():
        per_image = den(x, torch.tensor([sigma, sigma]))
        first = den(x[:1], sigma)
    torch.testing.assert_close(per_image[:1], first, rtol=1e-4, atol=1e-4)


def test_float64_in_float64_out(configured):
    name, den, sigma = configured
    x = reference_input(1, batch=1, dtype=torch.float64)
    den64 = den.to(torch.float64)
    try:
        with torch.no_grad():
            out = den64(x, sigma)
    finally:
        den.to(torch.float32)
    assert out.dtype == torch.float64 and torch.isfinite(out).all(), name


def test_backward_through_the_output(configured):
    name, den, sigma = configured
    if name in NOT_DIFFERENTIABLE:
        pytest.skip(f"{name} has no autograd path")
    x = reference_input(1, batch=1).requires_grad_(True)
    den(x, sigma).square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0, name


@pytest.mark.parametrize("iteration", ALGORITHMS)
def test_runs_inside_deepinv_algorithms(configured, iteration):
    name, den, sigma = configured
    physics = dinv.physics.BlurFFT(img_size=(1, 17, 23), filter=dinv.physics.functional.gaussian_blur(sigma=(1, 1)))
    y = physics(reference_input(1, batch=1))
    algo = dinv.optim.optim_builder(
        iteration,
        prior=dinv.optim.PnP(den),
        data_fidelity=L2(),
        max_iter=3,
        params_algo={"stepsize": 1.0, "g_param": sigma, "lambda": 1.0},
    )
    with torch.no_grad():
        out = algo(y, physics)
    assert out.shape == y.shape and torch.isfinite(out).all(), name
