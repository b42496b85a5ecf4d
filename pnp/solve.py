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
from typing import Any, NamedTuple

import hydra
import torch
from deepinv.models import Denoiser
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from pnp.denoisers.relaxed import Relaxed
from pnp.errors import ConfigError, check
from pnp.guarantees import Guarantee, equivariant, relaxed
from pnp.images import load_image
from pnp.outputs import write_run
from pnp.problems import Problem
from pnp.runtime import resolve_device, resolve_dtype
from pnp.schemes import Scheme

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
TUNED = CONFIGS / "tuned"  # <problem>_<denoiser>.yaml written by ``pnp.tune tune.ship=true``
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


def denoiser_sigma(cfg: DictConfig) -> float | None:
    """The strength σ passed as D(x, σ): a positive number, or null for a blind denoiser, which cannot take one."""
    den, sigma = cfg.denoiser, cfg.denoiser.get("sigma")
    if den.get("blind"):
        check(
            sigma is None,
            f"denoiser {den.name} is blind: it takes no sigma (got {sigma}); weaken it with denoiser.theta in (0, 1]",
        )
        return None
    check(
        isinstance(sigma, (int, float)) and sigma == sigma and 0 < sigma < float("inf"),
        f"denoiser.sigma must be a finite number > 0 for {den.name}, got {sigma!r}",
    )
    return float(sigma)


def build_denoiser(cfg: DictConfig, device: torch.device, dtype: torch.dtype) -> Denoiser:
    """The denoiser of ``cfg.denoiser.model``, relaxed to θD + (1 − θ)Id when ``denoiser.theta`` < 1 and wrapped by
    ``cfg.equivariant`` when one is selected."""
    denoiser_sigma(cfg)
    denoiser = instantiate(cfg.denoiser.model)
    theta = cfg.denoiser.get("theta", 1.0)
    if theta != 1:
        denoiser = Relaxed(denoiser, theta)
    if cfg.get("equivariant"):
        denoiser = instantiate(cfg.equivariant, denoiser=denoiser)
    return denoiser.to(device=device, dtype=dtype).eval()


def guarantee_of(cfg: DictConfig) -> Guarantee:
    """The denoiser config's declared class, after the θ relaxation and the equivariant wrapper."""
    declared = cfg.denoiser.get("guarantee")
    g = Guarantee(**OmegaConf.to_container(declared)) if declared else Guarantee("none", basis="not declared")
    g = relaxed(g, cfg.denoiser.get("theta", 1.0))
    return equivariant(g, cfg.equivariant.mode) if cfg.get("equivariant") else g


def composed(*overrides: str) -> DictConfig:
    """``solve.yaml`` composed with ``overrides`` outside any Hydra run (scripts, benchmarks)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose("solve", overrides=list(overrides))


def compose_denoiser(name: str, device: torch.device, overrides: tuple[str, ...] = ()) -> tuple[Denoiser, float | None]:
    """A denoiser of ``configs/denoiser/<name>.yaml`` with its strength, outside any Hydra run (scripts)."""
    cfg = composed(f"denoiser={name}", *overrides)
    return build_denoiser(cfg, device, torch.float32), denoiser_sigma(cfg)


class TunedDenoiser(NamedTuple):
    denoiser: Denoiser
    sigma: float | None
    guarantee: Guarantee
    label: str  # the strength as set, "(untuned)" when no tuned file exists
    scheme: Scheme  # the configured scheme (an explicit prior's config selects scheme=agd)


def tuned_denoiser(name: str, problem: str, device: torch.device, overrides: tuple[str, ...] = ()) -> TunedDenoiser:
    """A denoiser of ``configs/denoiser/<name>.yaml`` at its tuned strength for the problem config ``problem``,
    with its strength, class and scheme, outside any Hydra run (scripts, benchmarks)."""
    cfg = composed(f"+problem={problem}", f"denoiser={name}", *overrides)
    tuned = apply_tuned(cfg, overrides)
    label = (strength(cfg) or "default") + ("" if tuned else " (untuned)")
    den = build_denoiser(cfg, device, torch.float32)
    return TunedDenoiser(den, denoiser_sigma(cfg), guarantee_of(cfg), label, instantiate(cfg.scheme))


def strength(cfg: DictConfig) -> str:
    """σ and θ as a user set them: ``σ=0.02``, ``θ=0.3`` or both."""
    sigma, theta = cfg.denoiser.get("sigma"), cfg.denoiser.get("theta", 1.0)
    parts = ([] if sigma is None else [f"σ={sigma:g}"]) + ([] if theta == 1 else [f"θ={theta:g}"])
    return ",".join(parts)


def tuned_path(cfg: DictConfig, folder: Path = TUNED) -> Path | None:
    """``<folder>/<problem>_<denoiser>.yaml`` with the problem config's ``problem_name``; None without a problem."""
    return folder / f"{cfg.problem_name}_{cfg.denoiser.name}.yaml" if "problem_name" in cfg else None


def apply_tuned(cfg: DictConfig, overrides: list[str] | tuple[str, ...] = (), folder: Path = TUNED) -> Path | None:
    """Set the denoiser's tuned strength from ``configs/tuned/<problem>_<denoiser>.yaml`` when that file exists,
    except for the keys given in ``overrides`` (the command line wins). Returns the file used."""
    path = tuned_path(cfg, folder)
    if path is None or not path.is_file():
        return None
    given = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
    with open_dict(cfg):
        for key, value in OmegaConf.load(path).items():
            if f"denoiser.{key}" not in given:
                cfg.denoiser[key] = value
    return path


def label(cfg: DictConfig) -> str:
    """Short description of the run: problem, scheme, denoiser (and equivariance)."""
    eq = cfg.get("equivariant")
    parts = [
        cfg.problem._target_.rsplit(".", 1)[-1],
        cfg.scheme._target_.rsplit(".", 1)[-1],
        f"{cfg.denoiser.name}({strength(cfg)})",
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
        denoiser_sigma(cfg),
        problem.x0,
        norm=problem.norm,
        fidelity=fidelity,
        monitor=monitor,
        x_true=problem.x_true,
        guarantee=guarantee_of(cfg),
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
    state = "converged" if m["converged"] else "not converged"
    if m["diverged"]:
        state = "STAGNATED" if m.get("stagnated") else "DIVERGED"
    init = f"{m['psnr_init']:.2f}"
    g = m.get("guarantee")
    covered = "guarantee: none" if not g or not g["covered"] else f"guarantee: {g['theorem']}"
    objective = ""
    if "objective_monotone" in m:  # an explicit prior: say whether F(x_k) ever rose
        objective = ", F(x_k) never increased" if m["objective_monotone"] else ", F(x_k) INCREASED"
    return (
        f"{m['label']}: PSNR {init} -> {m['psnr']:.2f} dB, SSIM {m['ssim']:.3f}, {m['iterations']} it, "
        f"{state} (c_k={m['final_rel_residual']:.2e}){objective}, {m['wall_time_s']:.1f} s on {m['device']}; "
        f"{covered}"
    )


@hydra.main(version_base="1.3", config_path="../configs", config_name="solve")
def main(cfg: DictConfig) -> None:
    hc = HydraConfig.get()
    with user_errors():
        apply_tuned(cfg, hc.overrides.task)
        m = solve(cfg, Path(hc.runtime.output_dir))
    print(summary(m))
    if m["diverged"]:
        print(f"warning: the run {m['message']}", file=sys.stderr)
        if HydraConfig.get().mode != RunMode.MULTIRUN:
            sys.exit(EXIT_DIVERGED)


if __name__ == "__main__":
    main()
