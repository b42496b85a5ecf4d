"""The equivariant wrapper: group structure, deepinv agreement, equivariance, seeding, non-square images."""

from __future__ import annotations

import deepinv as dinv
import pytest
import torch
from conftest import small_image

from pnp.denoisers import LPN, EquivariantDenoiser, Relaxed
from pnp.denoisers.equivariant import group_elements, inverse_transform, transform
from pnp.errors import ConfigError


class Biased(dinv.models.Denoiser):
    """A deliberately non-equivariant denoiser: a fixed random 3×3 filter plus a ramp."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.register_buffer("w", torch.randn(1, 1, 3, 3, generator=g) / 3)

    def forward(self, x, sigma=None, **kwargs):
        ramp = torch.linspace(0, 0.1, x.shape[-1], dtype=x.dtype)
        return torch.nn.functional.conv2d(x, self.w.to(x.dtype), padding=1) + ramp


def test_group_sizes_and_inverses():
    assert len(group_elements(True, 0)) == 8
    assert len(group_elements(True, 1)) == 8 * 9
    assert len(group_elements(False, 2)) == 25
    assert group_elements(True, 2)[0] == (0, False, 0, 0)
    x = torch.randn(2, 1, 6, 9)
    for g in group_elements(True, 1):
        torch.testing.assert_close(inverse_transform(transform(x, g), g), x)


def test_average_matches_deepinv_equivariant_denoiser():
    x = small_image(24, batch=2)
    ours = EquivariantDenoiser(Biased(), mode="average")(x, 0.1)
    theirs = dinv.models.EquivariantDenoiser(Biased(), random=False)(x, 0.1)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("max_shift", [0, 1])
def test_average_is_equivariant(max_shift):
    den = EquivariantDenoiser(Biased(), mode="average", max_shift=max_shift)
    x = small_image(16)
    for g in group_elements(True, 0):
        torch.testing.assert_close(den(transform(x, g), 0.1), transform(den(x, 0.1), g), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(Biased()(torch.rot90(x, 1, (-2, -1))), torch.rot90(Biased()(x), 1, (-2, -1)))


def test_random_mode_is_seeded_and_draws_several_elements():
    x = small_image(16)
    a, b = EquivariantDenoiser(Biased(), seed=5), EquivariantDenoiser(Biased(), seed=5)
    seq_a = [a(x, 0.1) for _ in range(6)]
    seq_b = [b(x, 0.1) for _ in range(6)]
    for u, v in zip(seq_a, seq_b, strict=True):
        torch.testing.assert_close(u, v)
    assert len({tuple(o.flatten()[:5].tolist()) for o in seq_a}) > 1
    other = EquivariantDenoiser(Biased(), seed=6)
    assert any(not torch.equal(u, other(x, 0.1)) for u in seq_a)


def test_non_square_images_and_per_sample_sigma():
    x = torch.rand(3, 1, 12, 20)
    out = EquivariantDenoiser(dinv.models.WaveletDenoiser(level=1, wv="haar"), mode="average")(
        x, torch.tensor([0.0, 0.05, 0.1])
    )
    assert out.shape == x.shape
    torch.testing.assert_close(out[0], x[0], rtol=1e-5, atol=1e-5)  # zero threshold: identity


def test_bad_settings():
    with pytest.raises(ConfigError, match="mode"):
        EquivariantDenoiser(Biased(), mode="sometimes")
    with pytest.raises(ConfigError, match="trivial"):
        EquivariantDenoiser(Biased(), rotations_flips=False)


def test_warm_started_denoisers_restart_under_random_transforms():
    """TV's warm start (its previous dual) belongs to another transform of another input: the wrapper turns it off,
    so a call gives what a fresh TV gives for the same group element."""
    wrapped = EquivariantDenoiser(dinv.models.TVDenoiser(n_it_max=20), "random", seed=0)
    wrapped(small_image(16).flip(-1) ** 2, 0.1)  # leaves a warm start behind without the fix
    state = wrapped.generator.get_state()
    out = wrapped(small_image(16), 0.1)
    g = wrapped.elements[int(torch.randint(len(wrapped.elements), (1,), generator=torch.Generator().set_state(state)))]
    fresh = dinv.models.TVDenoiser(n_it_max=20)
    torch.testing.assert_close(out, inverse_transform(fresh(transform(small_image(16), g), 0.1), g))


@pytest.mark.parametrize("shape", [(16, 16), (12, 20)])
@pytest.mark.parametrize("mode", ["average", "random"])
def test_noise_maps_are_transformed_with_the_image(mode, shape):
    torch.manual_seed(0)
    drunet = dinv.models.DRUNet(in_channels=1, out_channels=1, pretrained=None, nc=[8, 8, 8, 8]).eval()
    x, sigma = torch.rand(2, 1, *shape), 0.02 + 0.1 * torch.rand(2, 1, *shape)
    wrapper = EquivariantDenoiser(drunet, mode=mode, seed=3, chunk=3)
    with torch.no_grad():
        out = wrapper(x, sigma)
        if mode == "average":
            elements = wrapper.elements
        else:  # the element the wrapper drew: replay its generator
            index = torch.randint(len(wrapper.elements), (1,), generator=torch.Generator().manual_seed(3))
            elements = [wrapper.elements[int(index)]]
        manual = sum(inverse_transform(drunet(transform(x, g), transform(sigma, g)), g) for g in elements)
    torch.testing.assert_close(out, manual / len(elements), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("theta", [1.0, 0.3])
def test_the_average_of_a_prox_is_a_prox_no_weaker_than_it(theta):
    """D = ∇ψ (LPN, ψ convex; relaxed by θ it is ∇ of θψ + (1 − θ)‖·‖²/2): the group average is ∇ of the average of
    ψ∘T_g, so its Jacobian is symmetric positive semi-definite with its largest eigenvalue at most the largest of D's
    at the transformed points, i.e. again the prox of a function at most as weakly convex (pnp.guarantees)."""
    model = LPN(width=6, depth=3, alpha=0.01).double().eval()
    denoiser = Relaxed(model, theta) if theta < 1 else model
    average = EquivariantDenoiser(denoiser, mode="average")
    x = torch.rand(1, 1, 4, 4, dtype=torch.float64)

    def jacobian(d, v):
        return torch.autograd.functional.jacobian(lambda u: d(u, None), v).reshape(16, 16)

    jac = jacobian(average, x)
    torch.testing.assert_close(jac, jac.T, rtol=1e-10, atol=1e-12)
    eigenvalues = torch.linalg.eigvalsh(jac)
    largest = max(torch.linalg.eigvalsh(jacobian(denoiser, transform(x, g))).max() for g in average.elements)
    assert eigenvalues.min() >= 0 and eigenvalues.max() <= largest + 1e-10
