"""The learned denoisers on tiny models: contract, constraints, LPN structure, power iteration, FNE training."""

from __future__ import annotations

import math

import deepinv as dinv
import pytest
import torch
from deepinv.optim.data_fidelity import L2

from pnp.denoisers import LPN, PNN, DnCNN, EulerNet, GradientStepDnCNN, RidgeRegularizer
from pnp.denoisers.euler import EulerLayer
from pnp.errors import ConfigError
from pnp.lipschitz import conv_norm_bound, conv_spectral_norm, jacobian_spectral_norm
from pnp.losses import FirmlyNonexpansive, ProximalMatching
from pnp.tensors import batch_norm

TINY = {
    "dncnn": lambda c: DnCNN(channels=c, depth=3, width=8),
    "euler": lambda c: EulerNet(channels=c, width=8, depth=3),
    "euler_averaged": lambda c: EulerNet(channels=c, width=8, depth=3, averaged=True),
    "lpn": lambda c: LPN(channels=c, width=8, depth=3),
    "dncnn_conditional": lambda c: DnCNN(channels=c, depth=3, width=8, conditional=True),
    "euler_conditional": lambda c: EulerNet(channels=c, width=8, depth=3, conditional=True),
    "lpn_conditional": lambda c: LPN(channels=c, width=8, depth=3, conditional=True),
}


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("channels", [1, 3])
def test_denoiser_contract(name, channels):
    model = TINY[name](channels).eval()
    assert isinstance(model, dinv.models.Denoiser)
    x = torch.rand(2, channels, 12, 16)
    out = model(x, 0.1)
    assert out.shape == x.shape and out.dtype == x.dtype
    with torch.inference_mode():  # how the schemes call it (LPN takes its gradient outside inference mode)
        torch.testing.assert_close(model(x, 0.1), out, rtol=1e-5, atol=1e-6)
    assert model(x, torch.tensor([0.1, 0.2])).shape == x.shape  # per-sample sigma is accepted


@pytest.mark.parametrize("name", TINY)
def test_runs_inside_deepinv_pgd(name):
    model = TINY[name](1).eval()
    physics = dinv.physics.BlurFFT(img_size=(1, 16, 16), filter=dinv.physics.functional.gaussian_blur(sigma=(1, 1)))
    y = physics(torch.rand(1, 1, 16, 16))
    algo = dinv.optim.PGD(
        data_fidelity=L2(), prior=dinv.optim.PnP(model), stepsize=1.0, sigma_denoiser=0.05, max_iter=3
    )
    assert algo(y, physics).shape == (1, 1, 16, 16)


def random_pairs(n: int, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(n, *shape)
    return x, x + 0.1 * torch.randn(n, *shape) * torch.rand(n, 1, 1, 1)


@pytest.mark.parametrize("scale", [1.0, 10.0, 100.0])
@pytest.mark.parametrize("training", [True, False])
def test_euler_layer_is_nonexpansive_even_with_large_weights(scale, training):
    layer = EulerLayer(width=4)
    with torch.no_grad():
        layer.weight.mul_(scale)
        layer.step.fill_(10.0)  # an unconstrained τ far above 2/‖W‖²: the bound must act
        layer.bias.normal_()
    layer.train(training)
    x, y = random_pairs(100, (4, 10, 10))
    with torch.no_grad():
        ratio = batch_norm(layer(x) - layer(y)) / batch_norm(x - y)
    assert ratio.max() <= 1.0 + 1e-5
    norm, _ = conv_spectral_norm(layer.weight.detach(), n_iter=2000, tol=1e-10)
    assert float(layer.tau().detach()) * float(norm) ** 2 <= 2.0
    if not training:  # eval: the step obeys the certified, size-independent bound
        assert float(layer.tau().detach()) * float(conv_norm_bound(layer.weight)) ** 2 <= 2.0 - layer.margin + 1e-6


@pytest.mark.parametrize("sigma", [0.005, 0.05, 0.3])
def test_conditional_euler_is_nonexpansive_at_every_sigma_for_random_weights(sigma):
    torch.manual_seed(1)
    net = EulerNet(width=6, depth=3, conditional=True)
    with torch.no_grad():
        for layer in net.layers:
            layer.weight.mul_(5.0)
            layer.step.fill_(3.0)
            layer.step_slope.fill_(2.0)  # τ grows with σ until the certified cap takes over
            layer.bias_slope.normal_()
    net.eval()
    x, y = random_pairs(60, (1, 12, 12))
    with torch.no_grad():
        assert (batch_norm(net(x, sigma) - net(y, sigma)) <= batch_norm(x - y) * (1 + 1e-5)).all()
        assert not torch.allclose(net(x, sigma), net(x, 2 * sigma))  # σ changes the output
    assert net.layer_bound()["max_tau_bound2_over_2"] <= 1.0 - net.layers[0].margin / 2 + 1e-6
    with pytest.raises(ConfigError, match="sigma"):
        net(x, None)
    blind = EulerNet(width=6, depth=3)
    assert "conditional" not in blind.config and net.config["conditional"]


def perturbed(model: torch.nn.Module) -> torch.nn.Module:
    """Random, non-zero weights everywhere (a conditional LPN starts with zero σ-biases)."""
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.5)
    return model


@pytest.mark.parametrize("sigma", [0.002, 0.03, 0.2])
def test_conditional_lpn_is_the_gradient_of_a_convex_psi_at_every_sigma_for_random_weights(sigma):
    """σ enters only through biases: for fixed σ, ∇²ψ(·, σ) is symmetric with eigenvalues ≥ α (ψ convex in y)."""
    model = perturbed(LPN(width=6, depth=3, alpha=0.01, conditional=True)).double()
    model.clamp_weights()  # the non-negative weights of the input-convex paths (as after every training step)
    model.eval()
    x = torch.rand(1, 1, 4, 4, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda v: model(v, sigma), x).reshape(16, 16)
    torch.testing.assert_close(jac, jac.T, rtol=1e-10, atol=1e-12)
    assert torch.linalg.eigvalsh(jac).min() >= 0.01 - 1e-9
    assert not torch.allclose(model(x, sigma), model(x, 2 * sigma))  # σ changes the output
    phi, residual = model.prior(model(x, sigma), sigma)  # φ(·, σ) is found by inverting D(·, σ)
    assert residual.max() < 1e-5 and torch.isfinite(phi).all()
    with pytest.raises(ConfigError, match="sigma"):
        model(x, None)
    assert "conditional" not in LPN(width=6, depth=3).config and model.config["conditional"]


def test_conditional_dncnn_reads_a_noise_level_map():
    model = perturbed(DnCNN(depth=3, width=6, conditional=True)).eval()
    x = torch.rand(2, 1, 10, 10)
    with torch.no_grad():
        both = model(x, torch.tensor([0.01, 0.1]))
        torch.testing.assert_close(both[1:], model(x[1:], 0.1))  # each image reads its own σ
        assert not torch.allclose(both[:1], model(x[:1], 0.1))
    with pytest.raises(ConfigError, match="sigma"):
        model(x, None)
    assert "conditional" not in DnCNN(depth=3, width=6).config and model.config["conditional"]


def test_euler_network_nonexpansive_and_averaged_form_firmly_nonexpansive():
    net, avg = EulerNet(width=8, depth=4).eval(), EulerNet(width=8, depth=4, averaged=True).eval()
    avg.load_state_dict(net.state_dict())
    x, y = random_pairs(100, (1, 12, 12))
    with torch.no_grad():
        assert (batch_norm(net(x) - net(y)) <= batch_norm(x - y) * (1 + 1e-5)).all()
        dx = avg(x) - avg(y)
        assert (batch_norm(dx) ** 2 <= ((dx * (x - y)).flatten(1).sum(1)) * (1 + 1e-5) + 1e-9).all()


def test_lpn_output_is_the_gradient_of_psi_and_its_jacobian_is_symmetric_psd():
    model = LPN(width=6, depth=3, alpha=0.01).eval()
    x = torch.rand(1, 1, 4, 4, dtype=torch.float64)
    model = model.double()
    y = x.clone().requires_grad_(True)
    grad = torch.autograd.grad(model.psi(y).sum(), y)[0]
    torch.testing.assert_close(model(x, None), grad)
    jac = torch.autograd.functional.jacobian(lambda v: model(v, None), x).reshape(16, 16)
    torch.testing.assert_close(jac, jac.T, rtol=1e-10, atol=1e-12)
    assert torch.linalg.eigvalsh(jac).min() >= 0.01 - 1e-9  # α I ⪯ ∇²ψ


def test_lpn_prior_inverts_and_is_a_prox():
    model = LPN(width=6, depth=3, alpha=0.05).double().eval()
    y = torch.rand(2, 1, 6, 6, dtype=torch.float64)
    x = model(y, None)
    phi, residual = model.prior(x)
    assert residual.max() < 1e-5
    # x = prox_φ(y): ½‖x − y‖² + φ(x) ≤ ½‖z − y‖² + φ(z) for nearby z
    objective = lambda z, phi_z: 0.5 * (z - y).flatten(1).pow(2).sum(1) + phi_z  # noqa: E731
    for _ in range(3):
        z = x + 0.05 * torch.randn_like(x)
        phi_z, res_z = model.prior(z)
        assert res_z.max() < 1e-5
        assert (objective(x, phi) <= objective(z, phi_z) + 1e-8).all()


def test_lpn_hidden_weights_stay_nonnegative_after_optimiser_steps():
    model = LPN(width=6, depth=3)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(3):
        loss = -model(torch.rand(2, 1, 8, 8), None).sum()  # pushes weights in both directions
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.clamp_weights()
        assert all((conv.weight >= 0).all() for conv in [*model.hidden, model.output])
    assert any((conv.weight == 0).any() for conv in model.hidden)  # the projection acted


def test_power_iteration_matches_exact_spectral_norm():
    g = torch.Generator().manual_seed(0)
    matrix = torch.randn(30, 20, generator=g, dtype=torch.float64)
    result = jacobian_spectral_norm(
        lambda v: (v.flatten(1) @ matrix.T).view(-1, 1, 5, 6),
        torch.randn(3, 1, 4, 5, dtype=torch.float64),
        n_iter=500,
        tol=1e-12,
    )
    assert result.converged
    torch.testing.assert_close(
        result.norm,
        torch.full((3,), torch.linalg.matrix_norm(matrix, 2).item(), dtype=torch.float64),
        rtol=1e-6,
        atol=0,
    )
    weight = torch.randn(3, 2, 3, 3, generator=g, dtype=torch.float64)
    explicit = (
        torch.nn.functional.conv2d(torch.eye(2 * 36, dtype=torch.float64).view(-1, 2, 6, 6), weight, padding=1)
        .flatten(1)
        .T
    )
    norm, _ = conv_spectral_norm(weight, size=6, n_iter=5000, tol=1e-14)
    assert float(norm) == pytest.approx(torch.linalg.matrix_norm(explicit, 2).item(), rel=1e-6)
    chunked, _ = conv_spectral_norm(weight, size=6, n_iter=5000, tol=1e-14, check_every=8)  # an accelerator's test
    assert float(chunked) == pytest.approx(float(norm), rel=1e-9)
    first, _ = conv_spectral_norm(weight, size=6, n_iter=1, check_every=8)  # never more than n_iter iterations
    assert 0 < float(first) < float(norm) and float(first) != pytest.approx(float(norm), rel=1e-3)


def test_conv_norm_bound_is_above_the_norm_at_every_size_and_tight():
    weight = torch.randn(3, 2, 3, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    bound = float(conv_norm_bound(weight))
    for size in (3, 8, 16):
        basis = torch.eye(2 * size * size, dtype=torch.float64).view(-1, 2, size, size)
        explicit = torch.nn.functional.conv2d(basis, weight, padding=1).flatten(1)
        assert torch.linalg.matrix_norm(explicit, 2).item() <= bound
    large, _ = conv_spectral_norm(weight, size=128, n_iter=5000, tol=1e-14)
    assert bound <= 1.01 * float(large)  # 1/cos(2π/64) = 1.0048, and size 128 is below the supremum


def test_fne_training_lowers_the_penalty_on_a_toy_set():
    model = DnCNN(depth=3, width=8)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)  # start clearly expansive
    clean = torch.rand(4, 1, 12, 12)
    noisy = clean + 0.1 * torch.randn_like(clean)
    objective = FirmlyNonexpansive(loss="l1", lam=1.0, eps=0.1, power_iters=5, points=4)
    q = lambda v: 2 * model(v, None) - v  # noqa: E731
    before = jacobian_spectral_norm(q, clean, n_iter=100).norm.max()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for step in range(30):
        loss, _logs = objective(model, clean, noisy, step, 30)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = jacobian_spectral_norm(q, clean, n_iter=100).norm.max()
    assert before > 1.5 and after < 0.8 * before


def test_fne_training_of_a_conditional_dncnn_lowers_the_penalty_at_every_sigma():
    """The penalty is taken at each sample's own σ, drawn over the range: it must lower Lip(2D − Id) across σ."""
    model = DnCNN(depth=3, width=8, conditional=True)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)  # start clearly expansive
    clean = torch.rand(8, 1, 12, 12)
    levels = (0.005, 0.05, 0.2)

    def lip(sigma: float) -> torch.Tensor:
        q = lambda v: 2 * model(v, sigma) - v  # noqa: E731
        return jacobian_spectral_norm(q, clean[:2], n_iter=100).norm.max()

    before = [lip(s) for s in levels]
    objective = FirmlyNonexpansive(loss="l1", lam=1.0, eps=0.1, power_iters=5, points=8)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for step in range(30):
        sigma = torch.exp(torch.empty(8).uniform_(math.log(0.005), math.log(0.2)))
        noisy = clean + sigma.view(-1, 1, 1, 1) * torch.randn_like(clean)
        loss, _logs = objective(model, clean, noisy, step, 30, sigma)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = [lip(s) for s in levels]
    assert min(before) > 1.5 and all(a < 0.8 * b for a, b in zip(after, before, strict=True))


def test_fne_penalty_points_can_be_noisier_than_the_training_batch():
    model, clean = DnCNN(depth=2, width=4), torch.rand(8, 1, 16, 16)
    noisy = clean + 0.01 * torch.randn_like(clean)
    torch.manual_seed(0)
    own = FirmlyNonexpansive(points=8).penalty_points(model, clean, noisy)
    wide = FirmlyNonexpansive(points=8, point_noise=1.0).penalty_points(model, clean, noisy)
    assert own.shape == wide.shape == (8, 1, 16, 16)
    assert torch.equal(own[4:], noisy[4:])  # default: the batch's own noisy inputs
    assert (wide[4:] - clean[4:]).flatten(1).std(1).max() > 0.1  # σ ~ U[0, 1] per point
    with pytest.raises(ConfigError, match="point_noise"):
        FirmlyNonexpansive(point_noise=-1.0)


def test_proximal_matching_schedule():
    pm = ProximalMatching(l1_fraction=0.2, gamma_scale=0.1, stages=(8, 4, 2, 1))
    assert pm.gamma(0, 100, 100) is None and pm.gamma(19, 100, 100) is None
    assert pm.gamma(20, 100, 100) == pytest.approx(8.0)
    assert pm.gamma(99, 100, 100) == pytest.approx(1.0)
    values = [pm.gamma(s, 100, 100) for s in range(20, 100)]
    assert values == sorted(values, reverse=True)


@pytest.mark.parametrize("name", ["dncnn", "euler", "lpn"])
def test_gray_network_denoises_colour_images_channel_by_channel(name):
    model = TINY[name](1).eval()
    x = torch.rand(2, 3, 12, 12)
    with torch.inference_mode():
        out = model(x, None)
        per_channel = torch.cat([model(x[:, c : c + 1], None) for c in range(3)], dim=1)
    torch.testing.assert_close(out, per_channel)


EXPLICIT = {  # gray priors with an explicit cost, tiny and random
    "crr": lambda: RidgeRegularizer(conv_channels=(4, 8), kernel_size=3, knots=11),
    "pnn": lambda: PNN(features=6, kernel_size=3, shared=True, tol=1e-6),
    "gs_dncnn": lambda: GradientStepDnCNN(depth=3, width=8),
}


@pytest.mark.parametrize("name", EXPLICIT)
def test_the_cost_of_a_colour_image_is_the_sum_over_its_channels(name):
    model = EXPLICIT[name]().double().eval()
    x, sigma = torch.rand(2, 3, 12, 12, dtype=torch.float64), torch.tensor([0.02, 0.1], dtype=torch.float64)
    with torch.no_grad():
        cost = model.cost(x, sigma)
        per_channel = sum(model.cost(x[:, c : c + 1], sigma) for c in range(3))
    assert cost.shape == (2,) and cost.dtype == torch.float64
    torch.testing.assert_close(cost, per_channel)


@pytest.mark.parametrize(
    "name", ["dncnn", "dncnn_conditional", "fne_dncnn", "euler", "euler_conditional", "lpn", "crr", "wcrr"]
)
def test_every_shipped_denoiser_is_differentiable_in_eval_mode(name):
    """Through the input and the weights, as a block of a larger model (an inner solve: see its forward)."""
    from pnp.weights import pretrained

    model = pretrained(name).eval()
    x = torch.rand(1, 1, 16, 16)
    out = model(x, 0.05)
    assert out.requires_grad, name
    out.square().sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters()), name
    x.requires_grad_(True)
    model(x, 0.05).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with torch.no_grad():
        assert not model(x, 0.05).requires_grad
