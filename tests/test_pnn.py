"""The proximal neural network (unrolled dual forward-backward): shapes and σ forms, the exact prox in the limit of
shared layers, steps inside the algorithm's bound, the Lipschitz certificate against measured values, strength
monotone in σ, gradients, and the manifest round trip."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import small_image, solve_tiny
from hydra.utils import instantiate

from pnp.activations import Clip, Tanh
from pnp.denoisers import PNN
from pnp.denoisers.pnn import SIGMA_REF, dct_filters
from pnp.errors import ConfigError
from pnp.guarantees import Guarantee
from pnp.lipschitz import conv_spectral_norm, jacobian_spectral_norm
from pnp.losses import LiftedBregman
from pnp.outputs import OBJECTIVE_SLACK
from pnp.problems import deblur
from pnp.schemes import PGD


def image(channels: int = 1, batch: int = 2, height: int = 17, width: int = 23, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.rand(batch, channels, height, width, generator=g, dtype=dtype)


def network(seed: int = 0, **kwargs) -> PNN:
    torch.manual_seed(seed)
    return PNN(**{"features": 8, "layers": 6, **kwargs}).eval()


@pytest.mark.parametrize(("channels", "net_channels"), [(1, 1), (3, 1), (3, 3)])
def test_shapes_dtypes_and_the_forms_of_sigma(channels, net_channels):
    den = network(channels=net_channels)
    x = image(channels)
    with torch.no_grad():
        out = den(x, 0.05)
        per_image = den(x, torch.tensor([0.05, 0.05]))
        constant_map = den(x, torch.full((2, 1, 17, 23), 0.05))
        varying = den(x, torch.cat([torch.full((2, 1, 17, 11), 0.01), torch.full((2, 1, 17, 12), 0.2)], dim=-1))
        out64 = den.double()(x.double(), 0.05)
    assert out.shape == x.shape and out.dtype == x.dtype and torch.isfinite(out).all()
    assert out64.dtype == torch.float64
    torch.testing.assert_close(per_image, out)
    torch.testing.assert_close(constant_map, out)
    assert not torch.allclose(varying, out, atol=1e-3)
    if net_channels == 1 and channels == 3:  # one σ map per image channel, for a gray network on colour images
        with torch.no_grad():
            torch.testing.assert_close(den.float()(x, torch.full((2, 3, 17, 23), 0.05)), out)


def test_shared_layers_converge_to_the_exact_prox_of_the_l1_analysis_prior():
    """K → ∞ shared layers: prox_{λ‖L·‖₁}(z), against Chambolle-Pock run to convergence on the same problem."""
    den = network(features=4, layers=1000, shared=True).double()
    lam = 0.05
    with torch.no_grad():
        den.step.fill_(3.0)  # τB² ≈ 1.9: the dual forward-backward's fast end
        den.log_threshold.fill_(math.log(lam))  # λ(σ_ref) = λ
    z = image(batch=1, height=12, width=12, dtype=torch.float64)
    w = den.weight[0].detach()
    step = 0.99 / float(den.norms()[0])  # primal and dual steps with στ‖L‖² < 1
    x, x_bar, y = z.clone(), z.clone(), torch.zeros(1, 4, 12, 12, dtype=torch.float64)
    for _ in range(5000):
        y = (y + step * F.conv2d(x_bar, w, padding=1)).clamp(-lam, lam)
        x_next = (x - step * F.conv_transpose2d(y, w, padding=1) + step * z) / (1 + step)
        x_bar, x = 2 * x_next - x, x_next
    with torch.no_grad():
        out = den(z, SIGMA_REF)
    torch.testing.assert_close(out, x, rtol=0, atol=1e-8)
    den.layers = 10  # a few layers are not there yet
    with torch.no_grad():
        assert (den(z, SIGMA_REF) - x).abs().max() > 1e-4


@pytest.mark.parametrize("seed", range(3))
def test_steps_stay_inside_the_algorithms_bound_for_any_weights(seed):
    den = network(seed, kernel_size=5)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        den.weight.mul_(10 ** (4 * torch.rand(6, 1, 1, 1, 1, generator=g) - 2))  # norms over four decades
        den.step.copy_(torch.tensor([-20.0, -1.0, 0.0, 1.0, 5.0, 20.0]))
    tau, bounds = den.steps(), den.norms()
    for k in range(6):
        power = conv_spectral_norm(den.weight[k].detach(), size=32)[0]
        assert power <= bounds[k] and tau[k] * power**2 < 2
    assert (tau * bounds**2 <= 2 - den.margin + 1e-6).all() and (tau > 0).all()


@pytest.mark.parametrize(
    "kwargs", [{}, {"layers": 1}, {"shared": True}, {"activation": Tanh()}], ids=["init", "one", "shared", "tanh"]
)
def test_the_certificate_bounds_the_measured_lipschitz_constant(kwargs):
    den = network(**kwargs)
    with torch.no_grad():
        den.step.fill_(4.0)  # steps near 2/B²: the layers' worst case
    x = image(batch=2, height=16, width=16)
    bound = den.lipschitz_bound()
    for sigma in (0.01, 0.1, 1.0):
        measured = jacobian_spectral_norm(lambda v, s=sigma: den(v, s), x, n_iter=100, tol=1e-5).norm.max()
        assert measured <= bound
    if den.layers == 1:
        assert bound == 1.0  # x = z − τLᵀD L z: nonexpansive
    assert den.layer_bound()["lip_D"] == bound and den.layer_bound()["max_tau_bound2"] < 2 - den.margin + 1e-6


def test_a_larger_sigma_moves_the_output_further_from_the_input():
    x = image()
    sigmas = (0.002, 0.01, 0.03, 0.1, 0.3)
    for den in (network(features=32, layers=15), network(features=4, layers=300, shared=True)):
        with torch.no_grad():
            moves = [float((den(x, s) - x).norm()) for s in sigmas]
        # nondecreasing up to rounding (λ large enough leaves the nonlinearity idle: the move saturates)
        assert all(a <= b * (1 + 1e-5) for a, b in itertools.pairwise(moves)), moves
        assert moves[0] < moves[2] < moves[3] and moves[0] < 0.5 * moves[-1], moves


def test_backward_reaches_every_parameter_in_training_mode():
    den = network().train()
    x = image()
    loss = (den(x, torch.tensor([0.02, 0.1])) - x.flip(-1)).square().mean()
    loss.backward()
    for name, p in den.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_the_config_rebuilds_the_network_as_a_manifest_and_hydra_do():
    den = network(activation=Tanh(), shared=True)
    again = PNN(**den.config)  # what pnp.weights.load does: the activation comes back from its spec
    again.load_state_dict(den.state_dict())
    x = image()
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(x, 0.05), den(x, 0.05))
    built = instantiate({"_target_": "pnp.denoisers.PNN", "activation": {"_target_": "pnp.activations.Tanh"}})
    assert isinstance(built.activation, Tanh)


def batch(seed: int, n: int = 4, size: int = 20) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(clean, noisy, σ): smooth random images with noise of per-image levels."""
    g = torch.Generator().manual_seed(seed)
    clean = F.avg_pool2d(torch.rand(n, 1, size + 4, size + 4, generator=g, dtype=torch.float64), 5, 1)
    sigma = torch.linspace(0.02, 0.15, n, dtype=torch.float64)
    return clean, clean + sigma.view(-1, 1, 1, 1) * torch.randn(clean.shape, generator=g, dtype=torch.float64), sigma


@pytest.mark.parametrize("activation", [Clip(), Tanh()], ids=["clip", "tanh"])
def test_the_lifted_objective_is_the_forward_mse_at_the_forward_pass_and_the_sweeps_lower_it(activation):
    den = network(activation=activation).double().train()
    clean, noisy, sigma = batch(0)
    net = den.unroll(noisy, sigma)
    mse = F.mse_loss(den(noisy, sigma), clean)
    values = []
    with torch.no_grad():
        for sweeps in (0, 1, 2, 5):
            y, forward = LiftedBregman(sweeps=sweeps).layer_variables(net, clean)
            loss, penalty = LiftedBregman().lifted(net, y, clean)
            u = net.start()
            for k in range(net.count):  # every Bregman term is >= 0
                lam = net.threshold(k)
                assert (net.activation.bregman(y[k], net.gradient_step(k, u, noisy) / lam) >= -1e-12).all()
                u = lam * y[k]
            torch.testing.assert_close(forward, mse)
            values.append(float(loss))
            if sweeps == 0:  # the layer variables are the forward pass: every penalty vanishes
                assert abs(float(penalty)) < 1e-12
                torch.testing.assert_close(loss, mse, rtol=1e-12, atol=1e-14)
            else:
                assert float(penalty) > 0
    assert all(b <= a for a, b in itertools.pairwise(values)) and values[-1] < 0.5 * values[0], values


def test_the_lifted_gradient_is_layer_local():
    """At the forward pass only the last layer's parameters see the loss (every penalty is at its minimum); one
    top-down sweep carries the residual to every layer."""
    den = network().double().train()
    clean, noisy, sigma = batch(1)
    for sweeps, reached in ((0, {den.layers - 1}), (1, set(range(den.layers)))):
        den.zero_grad()
        LiftedBregman(sweeps=sweeps)(den, clean, noisy, 0, 1, sigma)[0].backward()
        for name in ("weight", "log_threshold", "log_power"):
            grad = getattr(den, name).grad
            layers = {k for k in range(den.layers) if grad[k].abs().max() > 1e-12}
            assert layers == reached, (sweeps, name, layers)


def test_a_few_bregman_steps_lower_the_validation_mse():
    torch.manual_seed(0)
    den = PNN(features=4, layers=4).double()
    opt = torch.optim.Adam(den.parameters(), lr=1e-2)
    clean, noisy, sigma = batch(99)
    with torch.no_grad():
        before = F.mse_loss(den.eval()(noisy, sigma), clean)
    den.train()
    for step in range(10):
        train_clean, train_noisy, train_sigma = batch(step)
        loss, logs = LiftedBregman()(den, train_clean, train_noisy, step, 10, train_sigma)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert logs["bregman"] >= 0 and logs["loss"] <= logs["mse"]
    with torch.no_grad():
        assert F.mse_loss(den.eval()(noisy, sigma), clean) < 0.9 * before


def exact(seed: int = 0, **kwargs) -> PNN:
    """An exact-prox PNN (shared layers solved to ``tol``) with random weights, in float64."""
    return network(seed, **{"features": 4, "shared": True, "tol": 1e-10, "max_iter": 20000, **kwargs}).double()


def chambolle_pock(z: torch.Tensor, w: torch.Tensor, lam: torch.Tensor, iters: int = 5000) -> torch.Tensor:
    """prox_{Σ λ_c|(Lx)_c|}(z) by the primal-dual algorithm (an independent solver), L = conv with ``w``."""
    step = 0.99 / float(conv_spectral_norm(w, size=32)[0])
    pad = w.shape[-1] // 2
    x, x_bar, y = z.clone(), z.clone(), torch.zeros(z.shape[0], w.shape[0], *z.shape[-2:], dtype=z.dtype)
    for _ in range(iters):
        y = torch.maximum(torch.minimum(y + step * F.conv2d(x_bar, w, padding=pad), lam), -lam)
        x_next = (x - step * F.conv_transpose2d(y, w, padding=pad) + step * z) / (1 + step)
        x_bar, x = 2 * x_next - x, x_next
    return x


@pytest.mark.parametrize("sigma", [0.01, 0.1])
def test_the_exact_mode_is_the_prox_of_its_cost(sigma):
    """tol: FISTA on the dual returns prox_{g∘L}(z), g = Σ λ_c(σ)|·| (against Chambolle-Pock), and the cost is that
    g∘L: the output minimises ½‖v − z‖² + cost(v) against random perturbations."""
    den = exact(kernel_size=5)
    z = image(batch=2, height=12, width=12, dtype=torch.float64)
    with torch.no_grad():
        out = den(z, sigma)
        lam = den.layers_at(z, sigma).threshold(0)
        reference = chambolle_pock(z, den.weight[0], lam)
        objective = lambda v: 0.5 * (v - z).flatten(1).pow(2).sum(1) + den.cost(v, sigma)  # noqa: E731
        g = torch.Generator().manual_seed(3)
        perturbed = [objective(out + 1e-3 * torch.randn(z.shape, generator=g, dtype=z.dtype)) for _ in range(10)]
    torch.testing.assert_close(out, reference, rtol=0, atol=1e-7)
    assert all(bool((p > objective(out)).all()) for p in perturbed)
    assert (out - z).abs().max() > 1e-2  # not the identity: the prior acts


@pytest.mark.parametrize("seed", range(3))
def test_the_exact_mode_is_firmly_nonexpansive_with_a_symmetric_jacobian_for_random_weights(seed):
    """prox_convex by construction: at several σ, for random weights and steps, Lip(2D − Id) ≤ 1, J symmetric, on
    the differentiable layers from the dual solution (the Jacobian that certify measures)."""
    den = exact(seed, layers=30, tol=1e-9)
    with torch.no_grad():
        den.step.fill_(float(seed) * 3 - 3)  # τB² from 0.05 to 0.95
        den.log_threshold.add_(torch.randn(den.log_threshold.shape, generator=torch.Generator().manual_seed(seed)))
    x = image(batch=2, height=12, width=12, dtype=torch.float64)
    assert den.layer_bound()["max_tau_bound2"] < 1
    for sigma in (0.005, 0.05, 0.3):
        fn = lambda v, s=sigma: 2 * den(v, s) - v  # noqa: E731
        assert jacobian_spectral_norm(fn, x, n_iter=200, tol=1e-7).norm.max() <= 1 + 1e-6
        v, w = torch.randn_like(x), torch.randn_like(x)
        jv = torch.autograd.functional.jvp(lambda t, s=sigma: den(t, s), x, v)[1]
        jw = torch.autograd.functional.jvp(lambda t, s=sigma: den(t, s), x, w)[1]
        torch.testing.assert_close((jv * w).sum(), (jw * v).sum(), rtol=1e-6, atol=1e-9)


def test_the_exact_mode_warm_starts_and_trains():
    den = exact(tol=1e-6)
    x = image(dtype=torch.float64)
    with torch.no_grad():
        first = den(x, 0.05)
        cold = den.last_iterations
        torch.testing.assert_close(den(x + 1e-4, 0.05), first + 1e-4, rtol=0, atol=5e-4)
        assert den.last_iterations < cold  # warm-started from the previous solution
        den.reset()
        den(x, 0.05)
        assert den.last_iterations == cold
    den.train()  # a capped solve from 0, then the differentiable layers: every parameter gets a gradient
    (den(x, torch.tensor([0.02, 0.1])) - x.flip(-1)).square().mean().backward()
    for name, p in den.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize(
    "kwargs",
    [{"tol": 1e-5}, {"tol": 1e-5, "shared": True, "max_iter": 0}, {"tol": 0.0, "shared": True}],
    ids=["unshared", "no-iterations", "zero-tol"],
)
def test_the_exact_mode_refuses_what_it_cannot_solve(kwargs):
    with pytest.raises(ConfigError, match="tol"):
        PNN(**kwargs)
    with pytest.raises(ConfigError, match="cost"):
        PNN(shared=True, tol=1e-5, activation=Tanh()).cost(image(), 0.05)


@pytest.mark.parametrize("size", [3, 5])
def test_the_dct_start_is_an_orthonormal_bank_of_zero_mean_filters(size):
    atoms = dct_filters(size, channels=1).flatten(1).double()
    assert atoms.shape == (size**2 - 1, size**2)
    torch.testing.assert_close(atoms @ atoms.T, torch.eye(size**2 - 1, dtype=torch.float64), atol=1e-6, rtol=0)
    assert atoms.sum(1).abs().max() < 1e-6  # orthogonal to the constant atom
    den = PNN(features=size**2 + 2, kernel_size=size, shared=True, tol=1e-4, init="dct", threshold=0.06)
    torch.testing.assert_close(den.weight[0, : size**2 - 1].flatten(1).double(), atoms, atol=1e-6, rtol=0)
    lam = den.layers_at(image(batch=1), SIGMA_REF).threshold(0)
    torch.testing.assert_close(lam, torch.full((1, size**2 + 2, 1, 1), 0.06 * SIGMA_REF))
    with pytest.raises(ConfigError, match="init"):
        PNN(init="zeros")


def test_the_exact_mode_in_pnp_pgd_converges_with_its_objective_never_increasing():
    """PnP-PGD with the exact PNN is proximal gradient on F = f + g_σ(L·)/γ: c_k falls below tol and the monitored F
    never increases (γL = 1)."""
    problem = deblur(small_image(16).double(), seed=0)
    den = exact(features=8, init="dct", threshold=0.1, tol=1e-8, max_iter=5000)
    result = solve_tiny(PGD(), problem, den, Guarantee("prox_convex"), max_iter=300, tol=1e-5, sigma=0.02)
    f = result.history.objective[:, 0]
    assert result.converged and result.verdict.covered and torch.isfinite(f).all()
    assert (f[1:] <= f[:-1] * (1 + OBJECTIVE_SLACK)).all() and f[-1] < f[0]  # the monitor's verdict (inexact prox)
