"""Trained weights: saving with a manifest (architecture, training record, sha256) and verified offline loading.

Shipped weights live in ``pnp/weights/<name>.pt`` next to ``<name>.json``; nothing is ever downloaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from deepinv.models import Denoiser

from pnp.denoisers import LPN, PNN, DnCNN, EulerNet, GradientStepDnCNN, RidgeRegularizer
from pnp.errors import ConfigError, check

SHIPPED = Path(__file__).resolve().parent / "weights"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write(path: Path, write: Callable[[Path], Any]) -> None:
    """``write`` a temporary file beside ``path``, then rename it over ``path`` (atomic on POSIX): an interrupted
    write never leaves a truncated file where a checkpoint or weights are expected."""
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` through :func:`atomic_write`."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def copy_atomic(src: Path, dst: Path) -> None:
    atomic_write(dst, lambda tmp: shutil.copyfile(src, tmp))


def class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


#: the architectures a manifest may name (those pnp.train ships), by class path: a manifest's ``target`` is looked up
#: here, never imported, so a manifest cannot make :func:`load` import or call anything else
ARCHITECTURES: dict[str, type[Denoiser]] = {
    class_path(c): c for c in (DnCNN, EulerNet, GradientStepDnCNN, LPN, PNN, RidgeRegularizer)
}


def save(model: Denoiser, weights: Path, record: dict[str, Any]) -> dict[str, Any]:
    """Write ``weights`` (state dict) and ``weights.with_suffix('.json')`` (manifest); return the manifest."""
    save_atomic({k: v.detach().cpu() for k, v in model.state_dict().items()}, weights)
    manifest = {
        "file": weights.name,
        "target": class_path(type(model)),
        "config": model.config,
        **record,
        "sha256": sha256(weights),
    }
    text = json.dumps(manifest, indent=2, default=str)
    atomic_write(weights.with_suffix(".json"), lambda tmp: tmp.write_text(text))
    return manifest


def manifest_of(weights: Path) -> dict[str, Any]:
    file = weights.with_suffix(".json")
    check(weights.is_file() or file.is_file(), f"weights file {weights} not found")
    check(file.is_file(), f"no manifest {file} next to the weights {weights}")
    manifest = json.loads(file.read_text())
    check(isinstance(manifest, dict), f"manifest {file} is not a JSON object")
    return manifest


def architecture(manifest: dict[str, Any], weights: Path) -> type[Denoiser]:
    """The class a manifest names, if it is one of :data:`ARCHITECTURES`, after checking its ``config`` is a dict."""
    target = manifest.get("target")
    known = ", ".join(ARCHITECTURES)
    check(
        isinstance(target, str) and target in ARCHITECTURES,
        f"manifest of {weights} names the architecture {target!r}, which is not one of pnp's: {known}",
    )
    config = manifest.get("config")
    check(isinstance(config, dict), f"manifest of {weights}: config must be a dict of arguments, not {config!r}")
    return ARCHITECTURES[target]


def load(weights: Path) -> Denoiser:
    """Build the architecture recorded in the manifest (one of :data:`ARCHITECTURES`) and load the weights after
    checking their sha256."""
    weights = Path(weights)
    manifest = manifest_of(weights)
    cls = architecture(manifest, weights)
    expected = manifest["sha256"]
    check(weights.is_file(), f"weights file {weights} is missing (expected sha256 {expected})")
    actual = sha256(weights)
    check(actual == expected, f"weights file {weights} is corrupted: sha256 {actual}, expected {expected}")
    model = cls(**manifest["config"])
    state = torch.load(weights, map_location="cpu", weights_only=True)
    load_state(model, state, f"weights {weights} do not fit {manifest['target']}{manifest['config']}")
    return model.eval()


def load_state(model: torch.nn.Module, state: dict[str, torch.Tensor], mismatch: str, strict: bool = True) -> Any:
    """``model.load_state_dict(state, strict=strict)``; weights of another network (another width or depth) are a
    user's mistake: ``mismatch`` and the first difference torch names, on one line, not its traceback."""
    try:
        return model.load_state_dict(state, strict=strict)
    except RuntimeError as err:
        details = [line.strip() for line in str(err).splitlines()[1:] if line.strip()]
        raise ConfigError(f"{mismatch}: {details[0] if details else err}") from None


def pretrained(
    name: str | None = None,
    path: str | None = None,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> Denoiser:
    """A shipped denoiser by ``name`` (``pnp/weights/<name>.pt``), or weights of your own at ``path``, in eval mode
    on ``device`` in ``dtype`` (default: CPU, float32). The schemes refuse a denoiser whose weights are not in the
    iterates' dtype and device."""
    check((name is None) != (path is None), "give exactly one of a shipped weights name or a weights path")
    if path is not None:
        model = load(Path(path).expanduser())
    else:
        available = sorted(p.stem for p in SHIPPED.glob("*.json"))
        check(name in available, f"no shipped weights named {name!r}; shipped: {', '.join(available) or 'none'}")
        model = load(SHIPPED / f"{name}.pt")
    return model.to(device=device, dtype=dtype)
