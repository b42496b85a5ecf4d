"""Operators the configs can build: adjointness, norms, shapes, reproducibility and bad values."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import small_image

from pnp.errors import ConfigError
from pnp.problems import cs, ct, deblur

OPERATORS = {
    "deblur-gaussian-fft": (deblur, {}),
    "deblur-motion-fft": (deblur, {"kernel": "motion", "kernel_size": 9}),
    "deblur-uniform-fft": (deblur, {"kernel": "uniform", "kernel_size": 5}),
    "deblur-gaussian-reflect": (deblur, {"padding": "reflect"}),
    "deblur-gaussian-replicate": (deblur, {"padding": "replicate"}),
    "deblur-gaussian-valid": (deblur, {"padding": "valid", "init": "adjoint"}),
    "deblur-poisson-noise": (deblur, {"noise": "poisson", "poisson_gain": 0.05}),
    "ct": (ct, {"angles": 24}),
    "cs-dense": (cs, {"ratio": 0.3}),
    "cs-spc": (cs, {"operator": "spc", "ratio": 0.4}),
}


def relative_adjoint_error(problem, generator: torch.Generator) -> float:
    x = torch.randn(problem.x_true.shape, generator=generator, dtype=problem.x_true.dtype)
    v = torch.randn(problem.y.shape, generator=generator, dtype=problem.y.dtype)
    lhs = (problem.physics.A(x) * v).sum()
    rhs = (x * problem.physics.A_adjoint(v)).sum()
    return float((lhs - rhs).abs() / lhs.abs())


@pytest.mark.parametrize("name", OPERATORS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_adjointness(name, dtype):
    build, kwargs = OPERATORS[name]
    if build is ct and dtype == torch.float64:
        pytest.skip("deepinv's Tomography is float32 only (a clear ConfigError, tested below)")
    problem = build(small_image(32, batch=2, dtype=dtype), seed=1, **kwargs)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert relative_adjoint_error(problem, torch.Generator().manual_seed(0)) < tol
    assert problem.x0.shape == problem.x_true.shape and problem.x0.dtype == dtype
    assert torch.isfinite(problem.y).all()


@pytest.mark.parametrize("name", ["deblur-gaussian-fft", "deblur-motion-fft", "cs-spc", "cs-dense", "ct"])
def test_norm_matches_power_iteration_and_svd(name):
    build, kwargs = OPERATORS[name]
    problem = build(small_image(16), seed=0, **kwargs)
    x = torch.zeros_like(problem.x_true)
    # explicit matrix of A, column by column: the exact spectral norm
    columns = []
    for i in range(x.numel()):
        e = x.flatten().clone()
        e[i] = 1.0
        columns.append(problem.physics.A(e.view_as(x)).flatten())
    exact = torch.linalg.matrix_norm(torch.stack(columns, dim=1).double(), ord=2).item()
    assert problem.norm == pytest.approx(exact, rel=2e-3)


def test_noise_is_reproducible_and_seeded():
    x = small_image(32)
    a, b, c = deblur(x, seed=3), deblur(x, seed=3), deblur(x, seed=4)
    assert torch.equal(a.y, b.y)
    assert not torch.equal(a.y, c.y)
    k1 = deblur(x, seed=3, kernel="motion", kernel_size=9).physics.filter
    k2 = deblur(x, seed=5, kernel="motion", kernel_size=9).physics.filter
    assert not torch.allclose(k1, k2)


def test_noise_level_is_the_configured_one():
    x = small_image(64)
    clean, noisy = deblur(x, noise_sigma=0.0), deblur(x, noise_sigma=0.05)
    assert (noisy.y - clean.y).std().item() == pytest.approx(0.05, rel=0.05)


def test_ct_default_init_is_fbp():
    x = small_image(32)
    fbp, adj = ct(x, angles=30, noise_sigma=0.0), ct(x, angles=30, init="adjoint", noise_sigma=0.0)
    assert fbp.y.shape[-1] == 30
    assert (fbp.x0 - x).norm() < 0.1 * (adj.x0 - x).norm()  # FBP inverts, the adjoint only back-projects


@pytest.mark.parametrize(
    ("build", "kwargs", "match"),
    [
        (deblur, {"noise_sigma": -0.1}, "noise_sigma"),
        (deblur, {"noise_sigma": math.nan}, "noise_sigma"),
        (deblur, {"noise_sigma": math.inf}, "noise_sigma"),
        (deblur, {"kernel": "disk"}, "kernel"),
        (deblur, {"kernel": "uniform", "kernel_size": 41}, "must be larger than the 41×41 blur kernel"),
        (deblur, {"kernel_size": 4}, "odd"),
        (deblur, {"padding": "zeros"}, "padding"),
        (deblur, {"blur_sigma": 0.0}, "blur_sigma"),
        (deblur, {"noise": "speckle"}, "noise"),
        (deblur, {"padding": "valid"}, "init=observation"),
        (cs, {"ratio": 0.0}, r"ratio must be in \(0, 1\]"),
        (cs, {"ratio": 1.5}, r"ratio must be in \(0, 1\]"),
        (cs, {"operator": "fourier"}, "operator"),
        (ct, {"angles": 0}, "angles"),
        (ct, {"init": "fbpp"}, "init must be one of"),
        (deblur, {"init": "fbp"}, "tomography only"),
    ],
)
def test_bad_values_raise_config_error(build, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        build(small_image(32), **kwargs)


def test_dense_cs_refuses_large_images_and_spc_needs_powers_of_two():
    with pytest.raises(ConfigError, match="operator=spc"):
        cs(torch.zeros(1, 1, 256, 256))
    with pytest.raises(ConfigError, match="powers of two"):
        cs(torch.zeros(1, 1, 48, 48), operator="spc")


def test_ct_float64_is_a_clear_error():
    with pytest.raises(ConfigError, match="float32"):
        ct(small_image(16, dtype=torch.float64))


def test_resize_keeps_the_aspect_ratio_and_says_so(caplog):
    import logging

    import numpy as np

    from pnp.images import fit

    image = np.tile(np.linspace(0, 1, 90), (60, 1))  # 60×90, a horizontal ramp
    with caplog.at_level(logging.INFO, logger="pnp"):
        out = fit(image, 30, "resize")
    assert out.shape == (30, 30) and "60×90 scaled to 30×45, centre-cropped to 30×30" in caplog.text
    # the middle two thirds of the ramp, not the whole ramp squashed (0 … 1)
    assert 0.12 < out[:, 0].mean() < 0.2 and 0.8 < out[:, -1].mean() < 0.88
