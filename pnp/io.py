"""Files in and out: measurements, blur kernels, angle lists and saved reconstructions read as arrays; a
reconstruction written at full precision (``.npy``, float32 TIFF) and as a viewable 8-bit PNG.

Formats read: ``.npy`` (numpy), ``.pt`` (a tensor saved with ``torch.save``), ``.tif``/``.tiff`` (tifffile: float
values as stored) and the image formats of scikit-image (png, jpg, bmp). Integer pixel types (8/16-bit images, TIFF
included) are scaled to [0, 1] by their type's range; floating-point data is read as stored. Images come back
channels first: (H, W) or (C, H, W).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
import torch
from skimage import color, io, util

from pnp.errors import ConfigError, check
from pnp.images import read_array

ARRAY_SUFFIXES = (".npy", ".pt")
TIFF_SUFFIXES = (".tif", ".tiff")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", *TIFF_SUFFIXES)
DATA_SUFFIXES = (*ARRAY_SUFFIXES, *IMAGE_SUFFIXES)
TEXT_SUFFIXES = (".txt", ".csv")


def existing(path: str | Path, what: str, suffixes: tuple[str, ...]) -> Path:
    """``path`` as a file that exists and has one of ``suffixes`` (a ConfigError naming ``what`` otherwise)."""
    file = Path(path).expanduser()
    check(file.is_file(), f"{what} file not found: {file}")
    check(file.suffix.lower() in suffixes, f"{what} {file}: unknown file type; use one of {', '.join(suffixes)}")
    return file


def files_in(folder: str | Path, suffixes: tuple[str, ...], what: str) -> list[Path]:
    """The files of ``folder`` with one of ``suffixes``, in name order; their names without the suffix name the
    outputs, so they must be unique."""
    root = Path(folder).expanduser()
    check(root.is_dir(), f"{what} {root} is not a folder")
    files = sorted(f for f in root.iterdir() if f.is_file() and f.suffix.lower() in suffixes)
    check(bool(files), f"{what} {root} has no files of type {', '.join(suffixes)}")
    stems = [f.stem for f in files]
    twice = sorted({s for s in stems if stems.count(s) > 1})
    check(not twice, f"{what} {root} has several files named {twice[0] if twice else ''}.*: rename all but one")
    return files


def channels_first(a: np.ndarray) -> np.ndarray:
    """An (H, W, 3|4) colour image as (3, H, W) (RGBA to RGB); anything else unchanged."""
    if a.ndim == 3 and a.shape[-1] in (3, 4) and a.shape[0] not in (1, 3):
        a = color.rgba2rgb(a) if a.shape[-1] == 4 else a
        return np.moveaxis(a, -1, 0)
    return a


def read_data(path: str | Path, what: str) -> np.ndarray:
    """The array stored in ``path`` as float64 (see the module's formats); a missing, unreadable or non-numeric file
    and a non-finite value are one ConfigError naming ``what`` (measurement, kernel, init, …)."""
    file = existing(path, what, DATA_SUFFIXES)
    suffix = file.suffix.lower()
    try:
        if suffix == ".npy":
            a = np.load(file, allow_pickle=False)
        elif suffix == ".pt":
            t = torch.load(file, map_location="cpu", weights_only=True)
            check(torch.is_tensor(t), f"{what} {file} holds a {type(t).__name__}, not a tensor")
            a = t.detach().double().numpy()
        elif suffix in TIFF_SUFFIXES:
            a = channels_first(util.img_as_float(tifffile.imread(file)))
        else:
            a = channels_first(read_array(path=str(file)))
        a = np.asarray(a, dtype=np.float64)
    except ConfigError:
        raise
    except Exception as err:  # numpy, torch and tifffile raise many types for a broken file
        raise ConfigError(f"cannot read {what} {file}: {str(err).strip().splitlines()[0]}") from None
    check(a.size > 0, f"{what} {file} is empty")
    check(bool(np.isfinite(a).all()), f"{what} {file} has non-finite values (NaN or Inf)")
    return a


def read_numbers(path: str | Path, what: str) -> np.ndarray:
    """A 1-D list of numbers: a text file (``.txt``: separated by spaces or new lines; ``.csv``: by commas) or any
    :func:`read_data` file, flattened."""
    file = existing(path, what, (*TEXT_SUFFIXES, *DATA_SUFFIXES))
    if file.suffix.lower() not in TEXT_SUFFIXES:
        return read_data(file, what).ravel()
    try:
        a = np.loadtxt(file, delimiter="," if file.suffix.lower() == ".csv" else None, ndmin=1).ravel()
    except Exception as err:
        raise ConfigError(f"cannot read {what} {file}: {str(err).strip().splitlines()[0]}") from None
    check(a.size > 0 and bool(np.isfinite(a).all()), f"{what} {file} must hold finite numbers")
    return a


def image_tensor(a: np.ndarray, gray: bool, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(H, W) → [1, 1, H, W], (C, H, W) → [1, C, H, W] (colour to its luminance with ``gray``), 1-D (m,) → [1, m]."""
    if a.ndim == 3 and a.shape[0] == 3 and gray:
        a = color.rgb2gray(np.moveaxis(a, 0, -1))
    t = torch.from_numpy(np.ascontiguousarray(a)).to(device=device, dtype=dtype)
    return t[None, None] if t.ndim == 2 else t[None]


def as_array(x: torch.Tensor) -> np.ndarray:
    """One image [1, C, H, W] as float32 (H, W) (one channel) or (C, H, W)."""
    check(x.shape[0] == 1, f"one image expected, got a batch of {x.shape[0]}")
    a = x[0].detach().float().cpu().numpy()
    return a[0] if a.shape[0] == 1 else a


def write_array(path: Path, x: torch.Tensor) -> None:
    """``x`` (one image) as float32 ``.npy``: (H, W) or (C, H, W)."""
    np.save(path, as_array(x))


def write_reconstruction(folder: Path, x: torch.Tensor, stem: str = "reconstruction") -> None:
    """``<stem>.npy`` and ``<stem>.tif`` (float32, values as computed) and ``<stem>_8bit.png`` (clipped to [0, 1],
    NaN as 0, rounded to 8 bits: for viewing only)."""
    a = as_array(x)
    np.save(folder / f"{stem}.npy", a)
    tifffile.imwrite(folder / f"{stem}.tif", a, photometric="minisblack")
    view = np.nan_to_num(a, nan=0.0).clip(0.0, 1.0)
    view = np.moveaxis(view, 0, -1) if view.ndim == 3 else view
    io.imsave(folder / f"{stem}_8bit.png", util.img_as_ubyte(view), check_contrast=False)
