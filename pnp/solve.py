"""Solve one inverse problem with a PnP scheme: ``python -m pnp.solve +problem=deblur [overrides]``.

Writes metrics.json, history.csv, reconstruction.png and convergence.png into Hydra's run directory and prints a
one-line summary. Bad input ends with one ``error:`` line and exit status 2; a diverged run writes its outputs,
says so and exits with status 3 (in a ``-m`` sweep the other runs go on and the run is marked diverged).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hydra
import torch
from deepinv.models import Denoiser
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from pnp.errors import ConfigError, check
from pnp.images import load_image
from pnp.outputs import write_run
from pnp.problems import Problem
from pnp.runtime import resolve_device, resolve_dtype

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
EXIT_USER_ERROR, EXIT_DIVERGED = 2, 3
log = logging.getLogger("pnp")


def available(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn configuration mistakes into one ``error:`` line on stderr and exit status 2."""
    try:
        yield
    except (ConfigError, InstantiationException) as err:
        cause = err.__cause__ if isinstance(err.__cause__, ConfigError) else err
        message = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        print(f"error: {message}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


def build_problem(cfg: DictConfig, device: torch.device, dtype: torch.dtype) -> Problem:
    check("problem" in cfg, f"choose a problem: python -m pnp.solve +problem=<{'|'.join(available('problem'))}>")
    image = cfg.image
    x = load_image(image.name, image.path, image.size, image.gray, image.fit, device=device, dtype=dtype)
    return instantiate(cfg.problem, x=x, seed=cfg.seed)


def build_denoiser(cfg: DictConfig, device: torch.device, dtype: torch.dtype) -> Denoiser:
    """The denoiser of ``cfg.denoiser.model``, wrapped by ``cfg.equivariant`` when one is selected."""
    denoiser = instantiate(cfg.denoiser.model)
    if cfg.get("equivariant"):
        denoiser = instantiate(cfg.equivariant, denoiser=denoiser)
    return denoiser.to(device=device, dtype=dtype).eval()


def compose_denoiser(name: str, device: torch.device, overrides: tuple[str, ...] = ()) -> tuple[Denoiser, float]:
    """A denoiser of ``configs/denoiser/<name>.yaml`` with its strength, outside any Hydra run (scripts)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("solve", overrides=[f"denoiser={name}", *overrides])
    return build_denoiser(cfg, device, torch.float32), float(cfg.denoiser.sigma)


def label(cfg: DictConfig) -> str:
    """Short description of the run: problem, scheme, denoiser (and equivariance)."""
    eq = cfg.get("equivariant")
    parts = [
        cfg.problem._target_.rsplit(".", 1)[-1],
        cfg.scheme._target_.rsplit(".", 1)[-1],
        f"{cfg.denoiser.name}(σ={cfg.denoiser.sigma:g})",
    ]
    return " · ".join(parts + ([f"equivariant-{eq.mode}"] if eq else []))


def solve(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Build everything from ``cfg``, run the scheme and write the outputs into ``run_dir``."""
    device, dtype = resolve_device(cfg.device), resolve_dtype(cfg.dtype)
    torch.manual_seed(cfg.seed)
    problem = build_problem(cfg, device, dtype)
    denoiser = build_denoiser(cfg, device, dtype)
    scheme, fidelity, monitor = instantiate(cfg.scheme), instantiate(cfg.fidelity), instantiate(cfg.monitor)
    start = time.perf_counter()
    result = scheme.run(
        problem.y,
        problem.physics,
        denoiser,
        cfg.denoiser.sigma,
        problem.x0,
        norm=problem.norm,
        fidelity=fidelity,
        monitor=monitor,
        x_true=problem.x_true,
    )
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    extra = {
        "wall_time_s": wall,
        "device": str(device),
        "label": label(cfg),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    return write_run(run_dir, problem, result, extra, title=label(cfg), plots=cfg.plots)


def summary(m: dict[str, Any]) -> str:
    state = "DIVERGED" if m["diverged"] else ("converged" if m["converged"] else "not converged")
    init = f"{m['psnr_init']:.2f}"
    return (
        f"{m['label']}: PSNR {init} -> {m['psnr']:.2f} dB, SSIM {m['ssim']:.3f}, {m['iterations']} it, "
        f"{state} (c_k={m['final_rel_residual']:.2e}), {m['wall_time_s']:.1f} s on {m['device']}"
    )


@hydra.main(version_base="1.3", config_path="../configs", config_name="solve")
def main(cfg: DictConfig) -> None:
    with user_errors():
        m = solve(cfg, Path(HydraConfig.get().runtime.output_dir))
    print(summary(m))
    if m["diverged"]:
        print(f"warning: the run {m['message']}", file=sys.stderr)
        if HydraConfig.get().mode != RunMode.MULTIRUN:
            sys.exit(EXIT_DIVERGED)


if __name__ == "__main__":
    main()
