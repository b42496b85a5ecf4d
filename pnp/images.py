"""Test images: scikit-image's embedded images by name, or a user's file, as [1, C, H, W] tensors in [0, 1].

Nothing is downloaded: only the images stored inside the scikit-image wheel are offered by name.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import skimage.data
import torch
from skimage import color, io, transform, util

from pnp.errors import ConfigError, check

#: Images embedded in the scikit-image wheel (no download); ``phantom`` is the Shepp–Logan phantom,
#: ``motorcycle`` the left view of the stereo pair.
EMBEDDED = {
    "astronaut": skimage.data.astronaut,
    "brick": skimage.data.brick,
    "camera": skimage.data.camera,
    "cat": skimage.data.cat,
    "cell": skimage.data.cell,
    "clock": skimage.data.clock,
    "coffee": skimage.data.coffee,
    "coins": skimage.data.coins,
    "grass": skimage.data.grass,
    "gravel": skimage.data.gravel,
    "horse": skimage.data.horse,
    "hubble_deep_field": skimage.data.hubble_deep_field,
    "immunohistochemistry": skimage.data.immunohistochemistry,
    "moon": skimage.data.moon,
    "motorcycle": lambda: skimage.data.stereo_motorcycle()[0],
    "page": skimage.data.page,
    "phantom": skimage.data.shepp_logan_phantom,
    "retina": skimage.data.retina,
    "rocket": skimage.data.rocket,
    "text": skimage.data.text,
}
log = logging.getLogger("pnp")
FITS = ("resize", "crop", "none")


def read_array(name: str | None = None, path: str | None = None) -> np.ndarray:
    """The raw image as a float array in [0, 1], shape (H, W) or (H, W, 3)."""
    if path is not None:
        file = Path(path).expanduser()
        check(file.is_file(), f"image file not found: {file}")
        try:
            image = io.imread(file)
        except Exception as err:  # imageio raises many types for undecodable files
            raise ConfigError(f"cannot read image {file}: {err}") from None
    else:
        check(name in EMBEDDED, f"unknown image {name!r}; embedded images: {', '.join(sorted(EMBEDDED))}")
        image = EMBEDDED[name]()
    if image.ndim == 3 and image.shape[-1] == 4:
        image = color.rgba2rgb(image)
    check(image.ndim in (2, 3), f"image must be gray or RGB, got array of shape {image.shape}")
    return util.img_as_float(image).clip(0.0, 1.0)


def fit(image: np.ndarray, size: int | None, how: str) -> np.ndarray:
    """To ``size``×``size``: ``resize`` scales the short side to ``size`` (anti-aliased, aspect ratio kept) and
    centre-crops the long one, ``crop`` centre-crops; ``none`` keeps the image as it is."""
    check(how in FITS, f"image.fit must be one of {FITS}, got {how!r}")
    if size is None or how == "none":
        return image
    check(isinstance(size, int) and size >= 8, f"image.size must be an integer >= 8, got {size!r}")
    h, w = image.shape[:2]
    if how == "resize":
        scale = size / min(h, w)
        shape = (max(size, round(h * scale)), max(size, round(w * scale)))
        image = transform.resize(image, shape, anti_aliasing=True)
        if h != w:
            log.info(f"image.fit=resize: {h}×{w} scaled to {shape[0]}×{shape[1]}, centre-cropped to {size}×{size}")
        h, w = shape
    check(h >= size and w >= size, f"image of {h}×{w} pixels is smaller than the crop size {size}")
    top, left = (h - size) // 2, (w - size) // 2
    return image[top : top + size, left : left + size]


def load_image(
    name: str | None = "camera",
    path: str | None = None,
    size: int | None = 256,
    gray: bool = True,
    fit_mode: str = "resize",
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Load an embedded image by ``name`` or a file at ``path`` as a [1, C, H, W] tensor in [0, 1]."""
    image = read_array(name, path)
    if gray and image.ndim == 3:
        image = color.rgb2gray(image)
    if not gray and image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    image = fit(image, size, fit_mode)
    tensor = torch.from_numpy(np.ascontiguousarray(image)).to(dtype)
    tensor = tensor[None] if tensor.ndim == 2 else tensor.permute(2, 0, 1)
    return tensor[None].to(device)
