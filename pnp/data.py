"""Training data: noisy/clean patch pairs from scikit-image's embedded images or a folder of your own.

The split is fixed and written into every manifest. With the embedded images, :data:`HELD_OUT` (five natural
images) is never used for training. It is split again: :data:`VALIDATION` (coins, moon) is what training curves,
strength tuning and recipe choices look at; :data:`TEST` (camera, astronaut, coffee, the demo's camera among them) is
what every reported number is measured on, and nothing is chosen on it. Certificates check all five.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from pnp.errors import check
from pnp.images import load_image

VALIDATION = ("coins", "moon")
TEST = ("camera", "astronaut", "coffee")
HELD_OUT = VALIDATION + TEST
TRAIN = (
    "brick",
    "cat",
    "cell",
    "clock",
    "grass",
    "gravel",
    "horse",
    "hubble_deep_field",
    "immunohistochemistry",
    "motorcycle",
    "page",
    "retina",
    "rocket",
    "text",
)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}
MAX_SIDE = 512  # large embedded images are downscaled to this side before patches are drawn


@dataclass
class Split:
    """Which images train, which validate and which test (names for embedded images, paths for a folder)."""

    source: str
    train: list[str]
    validation: list[str]
    test: list[str] = field(default_factory=list)

    def images(self, which: str) -> list[str]:
        """``validation``, ``test`` or ``held_out`` (both)."""
        check(which in ("validation", "test", "held_out"), f"which must be validation, test or held_out: {which!r}")
        return {"validation": self.validation, "test": self.test, "held_out": self.validation + self.test}[which]

    def as_dict(self) -> dict:
        return asdict(self)


def make_split(root: str | None = None, n_validation: int = 4) -> Split:
    """The embedded split, or a deterministic one of ``root`` (sorted files, every k-th file validates)."""
    if root is None:
        return Split("scikit-image", list(TRAIN), list(VALIDATION), list(TEST))
    folder = Path(root).expanduser()
    check(folder.is_dir(), f"data.root is not a folder: {folder}")
    files = sorted(str(p) for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    check(len(files) > n_validation, f"data.root {folder} has {len(files)} images; need more than {n_validation}")
    stride = len(files) / n_validation
    chosen = {int(i * stride) for i in range(n_validation)}
    return Split(
        str(folder),
        [f for i, f in enumerate(files) if i not in chosen],
        [f for i, f in enumerate(files) if i in chosen],
    )


def open_image(item: str, source: str, size: int | None = None, fit_mode: str = "none") -> torch.Tensor:
    """One gray image of a split as [1, 1, H, W] (an embedded name, or a path when ``source`` is a folder)."""
    name, path = (item, None) if source == "scikit-image" else (None, item)
    return load_image(name, path, size=size, fit_mode=fit_mode)


def training_image(item: str, source: str, max_side: int = MAX_SIDE) -> torch.Tensor:
    """A training image, downscaled so that its longer side is at most ``max_side``."""
    x = open_image(item, source)
    scale = max(x.shape[-2:]) / max_side
    if scale > 1:
        x = F.interpolate(x, scale_factor=1 / scale, mode="bilinear", antialias=True, align_corners=False)
    return x


def training_images(
    split: Split, scales: list[float] | tuple[float, ...] = (1.0,), patch: int = 0
) -> list[torch.Tensor]:
    """The split's training images (:func:`training_image`), each also at every factor of ``scales`` (≤ 1,
    antialiased bilinear): the multi-scale augmentation of DnCNN's training (Zhang et al. 2017), more edges per
    patch from the same images. A downscaled copy smaller than ``patch`` is left out."""
    check(all(0 < s <= 1 for s in scales), f"data.scales must lie in (0, 1], got {list(scales)}")
    images = []
    for item in split.train:
        x = training_image(item, split.source)
        for s in scales:
            y = x if s == 1 else F.interpolate(x, scale_factor=s, mode="bilinear", antialias=True, align_corners=False)
            if s == 1 or min(y.shape[-2:]) >= patch:
                images.append(y)
    return images


def held_out(split: Split, size: int, which: str = "validation") -> torch.Tensor:
    """The ``which`` images of the split (see :meth:`Split.images`), centre-cropped (or resized when smaller) to
    ``size``², as [N, 1, size, size]."""
    return torch.cat([centre(open_image(item, split.source), size) for item in split.images(which)])


def centre(x: torch.Tensor, size: int) -> torch.Tensor:
    """Centre crop to ``size``², or a resize when the image is smaller."""
    h, w = x.shape[-2:]
    if min(h, w) < size:
        return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top : top + size, left : left + size]


class PatchSampler:
    """Random patches with random rotations/flips, and Gaussian noise of std σ ~ U[sigma_min, sigma_max]
    (``log_uniform``: log σ uniform, for noise-conditional models trained over decades of σ)."""

    def __init__(
        self,
        images: list[torch.Tensor],
        patch: int,
        batch: int,
        sigma_min: float,
        sigma_max: float,
        seed: int,
        device: torch.device,
        log_uniform: bool = False,
    ) -> None:
        small = [tuple(im.shape[-2:]) for im in images if min(im.shape[-2:]) < patch]
        check(not small, f"patch size {patch} is larger than training images of sizes {small}")
        check(0 <= sigma_min <= sigma_max, f"need 0 <= sigma_min <= sigma_max, got {sigma_min}, {sigma_max}")
        check(not log_uniform or sigma_min > 0, "data.log_uniform needs sigma_min > 0")
        self.images, self.patch, self.batch = images, patch, batch
        self.sigma_min, self.sigma_max, self.device = sigma_min, sigma_max, device
        self.log_uniform = log_uniform
        self.generator = torch.Generator().manual_seed(seed)

    def randint(self, high: int) -> int:
        return int(torch.randint(high, (1,), generator=self.generator))

    def crop(self) -> torch.Tensor:
        im = self.images[self.randint(len(self.images))]
        h, w = im.shape[-2:]
        top, left = self.randint(h - self.patch + 1), self.randint(w - self.patch + 1)
        p = im[..., top : top + self.patch, left : left + self.patch]
        p = torch.rot90(p, self.randint(4), dims=(-2, -1))
        return torch.flip(p, dims=(-1,)) if self.randint(2) else p

    def noise_levels(self) -> torch.Tensor:
        u = torch.rand(self.batch, generator=self.generator)
        if self.log_uniform:
            return self.sigma_min * (self.sigma_max / self.sigma_min) ** u
        return self.sigma_min + (self.sigma_max - self.sigma_min) * u

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(clean, noisy, σ) on the device: [batch, 1, patch, patch] twice and the [batch] noise levels."""
        clean = torch.cat([self.crop() for _ in range(self.batch)])
        sigma = self.noise_levels()
        noisy = clean + sigma.view(-1, 1, 1, 1) * torch.randn(clean.shape, generator=self.generator)
        return clean.to(self.device), noisy.to(self.device), sigma.to(self.device)


def validation_pairs(
    split: Split, size: int, sigma: float, seed: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Held-out crops with fixed noise of std ``sigma``: (clean, noisy) on the device."""
    clean = held_out(split, size)
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(seed))
    return clean.to(device), (clean + sigma * noise).to(device)
