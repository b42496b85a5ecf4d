"""Equivariant PnP (Terris, Moreau, Pustelnik, Tachella, CVPR 2024) as a denoiser wrapper.

    D_g(x) = T_g⁻¹ D(T_g x)

``mode=random``: one g drawn per call (so one per PnP iteration) from a seeded generator.
σ may be a float, one value per image [B] or a noise-level map [B, 1, H, W], which is transformed with the image.
``mode=average``: the deterministic Reynolds average (1/|G|) Σ_g T_g⁻¹ D(T_g x), whose Lipschitz constant is at
most D's; the average of a prox of a κ-weakly convex g is again one (∇ of the averaged convex φ∘T_g, prox_g = ∇φ),
whose prior is bounded below where g is (:func:`pnp.guarantees.equivariant`). G is the 8 rotations by multiples of
90° and flips (``rotations_flips``), optionally times circular shifts by (dy, dx) ∈ {−s, …, s}² (``max_shift`` = s).
Being a ``deepinv.models.Denoiser``, the wrapper works in every scheme of ``pnp`` and in deepinv's own algorithms.
"""

from __future__ import annotations

import itertools

import torch
from deepinv.models import Denoiser

from pnp.errors import check

MODES = ("random", "average")
Element = tuple[int, bool, int, int]  # (quarter turns, horizontal flip, shift y, shift x)


def group_elements(rotations_flips: bool, max_shift: int) -> list[Element]:
    """The group's elements; the identity comes first."""
    turns = range(4) if rotations_flips else range(1)
    flips = (False, True) if rotations_flips else (False,)
    shifts = range(-max_shift, max_shift + 1)
    shifts = sorted(shifts, key=abs)  # 0 first
    return list(itertools.product(turns, flips, shifts, shifts))


def transform(x: torch.Tensor, g: Element) -> torch.Tensor:
    """T_g x: shift, then flip, then rotate (on the last two dimensions)."""
    turns, flip, dy, dx = g
    if dy or dx:
        x = torch.roll(x, shifts=(dy, dx), dims=(-2, -1))
    if flip:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, k=turns, dims=(-2, -1)) if turns else x


def inverse_transform(x: torch.Tensor, g: Element) -> torch.Tensor:
    """T_g⁻¹ x."""
    turns, flip, dy, dx = g
    if turns:
        x = torch.rot90(x, k=-turns, dims=(-2, -1))
    if flip:
        x = torch.flip(x, dims=(-1,))
    return torch.roll(x, shifts=(-dy, -dx), dims=(-2, -1)) if dy or dx else x


def is_map(sigma: float | torch.Tensor) -> bool:
    """A noise-level map [B, 1, H, W] (transformed with the image), not a float or a per-image [B]."""
    return torch.is_tensor(sigma) and sigma.dim() == 4


def batched_sigma(sigma: float | torch.Tensor, group: list[Element]) -> float | torch.Tensor:
    """σ for the images T_g x of ``group`` stacked along the batch: maps transformed like them, [B] repeated."""
    if is_map(sigma):
        return torch.cat([transform(sigma, g) for g in group])
    return sigma.repeat(len(group)) if torch.is_tensor(sigma) and sigma.numel() > 1 else sigma


class EquivariantDenoiser(Denoiser):
    """Make any denoiser equivariant to rotations/flips (and optionally shifts), by sampling or averaging."""

    def __init__(
        self,
        denoiser: Denoiser,
        mode: str = "random",
        rotations_flips: bool = True,
        max_shift: int = 0,
        seed: int = 0,
        chunk: int = 8,
    ) -> None:
        super().__init__()
        check(isinstance(chunk, int) and chunk >= 1, f"chunk must be a positive integer, got {chunk!r}")
        check(mode in MODES, f"equivariant mode must be one of {MODES}, got {mode!r}")
        check(isinstance(max_shift, int) and max_shift >= 0, f"max_shift must be an integer >= 0, got {max_shift!r}")
        check(rotations_flips or max_shift > 0, "the equivariance group is trivial: enable rotations_flips or shifts")
        self.denoiser, self.mode = denoiser, mode
        self.elements = group_elements(rotations_flips, max_shift)
        self.chunk = chunk  # average mode: at most chunk·B images per call of the wrapped denoiser
        self._calls: dict[bool, list[list[Element]]] = {}  # average mode: the calls, for square / oblong images
        self.seed = int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)  # CPU draws: no device synchronisation
        bounded_below = getattr(denoiser, "bounded_below", None)
        if mode == "average" and bounded_below is not None:  # the averaged prior has g's lower bound
            self.bounded_below = bounded_below

    def reset(self) -> None:
        """Restart the stream of group draws (:func:`pnp.denoisers.state.reset_state` resets the wrapped denoiser)."""
        self.generator.manual_seed(self.seed)

    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor, **kwargs) -> torch.Tensor:
        if self.mode == "random":
            g = self.elements[int(torch.randint(len(self.elements), (1,), generator=self.generator))]
            if hasattr(self.denoiser, "restart"):
                # deepinv's TV/TGV warm-start their inner solver from the previous call's variables, which belong to
                # another transform of the image here (PnP-TV then loses ~6 dB); ``restart`` holds for one call
                self.denoiser.restart = True
            sigma_g = transform(sigma, g) if is_map(sigma) else sigma
            return inverse_transform(self.denoiser(transform(x, g), sigma_g, **kwargs), g)
        return self.average(x, sigma, **kwargs)

    def calls(self, square: bool) -> list[list[Element]]:
        """The group split into batched calls: elements giving one output shape (all of them for a square image;
        even and odd quarter turns otherwise), in chunks of at most ``chunk``; computed once per kind of shape."""
        if square not in self._calls:
            shapes = [self.elements] if square else [[g for g in self.elements if g[0] % 2 == r] for r in (0, 1)]
            self._calls[square] = [s[i : i + self.chunk] for s in shapes if s for i in range(0, len(s), self.chunk)]
        return self._calls[square]

    def average(self, x: torch.Tensor, sigma: float | torch.Tensor, **kwargs) -> torch.Tensor:
        """(1/|G|) Σ_g T_g⁻¹ D(T_g x), evaluated in batched calls of at most ``chunk``·B images (bounded memory)."""
        calls = self.calls(x.shape[-2] == x.shape[-1])
        total = torch.zeros_like(x)
        b = x.shape[0]
        for group in calls:
            if len(calls) > 1 and hasattr(self.denoiser, "restart"):
                self.denoiser.restart = True  # a warm start from another chunk belongs to other transforms
            out = self.denoiser(torch.cat([transform(x, g) for g in group]), batched_sigma(sigma, group), **kwargs)
            for i, g in enumerate(group):
                total += inverse_transform(out[i * b : (i + 1) * b], g)
        return total / len(self.elements)
