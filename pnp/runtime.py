"""Device, dtype and random-generator resolution shared by the entry points."""

from __future__ import annotations

import torch

from pnp.errors import ConfigError, check

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available; ``cuda`` without a GPU is a user error."""
    check(
        name in ("auto", "cpu", "cuda") or name.startswith("cuda:"), f"device must be auto, cpu or cuda, got {name!r}"
    )
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name} was requested but no CUDA GPU is available (use device=auto or cpu)")
    return torch.device(name)


def resolve_dtype(name: str) -> torch.dtype:
    check(name in DTYPES, f"dtype must be one of {sorted(DTYPES)}, got {name!r}")
    return DTYPES[name]


def generator(seed: int, device: torch.device) -> torch.Generator:
    """A seeded generator on ``device`` (deepinv's noise models need one on the data's device)."""
    return torch.Generator(device=device).manual_seed(int(seed))


def seed_everything(seed: int, device: torch.device) -> None:
    """Seed torch's generators and, on a GPU, ask for deterministic kernels (cuDNN without autotuning, deterministic
    algorithms where torch has them, warning where it does not): the same seed gives the same numbers."""
    torch.manual_seed(int(seed))
    if device.type == "cuda":
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)
