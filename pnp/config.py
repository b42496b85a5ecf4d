"""Objects built from the Hydra configs: problems, denoisers with their strength and guarantee class, tuned
strengths, composition outside a Hydra run. The library side of every entry point (solve, tune, certify, benchmarks,
scripts); nothing here reads the command line.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch
from deepinv.models import Denoiser
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from pnp.denoisers.relaxed import Relaxed
from pnp.errors import check
from pnp.guarantees import Guarantee, equivariant, relaxed
from pnp.images import load_image
from pnp.problems import DEFAULT_KERNEL_SIZE, Problem
from pnp.schemes import Scheme

CONFIGS = Path(__file__).resolve().parent / "configs"  # package data: in the wheel too
TUNED = CONFIGS / "tuned"  # <problem>_<denoiser>.yaml written by ``pnp.tune tune.ship=true``


def available(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


#: the entry points' own keys of a fixed type (the objects' keys are checked where they are built, with their ranges)
FLAGS = ("strict", "plots", "sweep_fails_on_divergence", "ship", "resume", "image.gray", "monitor.progress")
INTEGERS = ("seed", "steps", "image.size")


def check_keys(cfg: DictConfig) -> None:
    """Flags are true or false and counts are integers: one ``error:`` line instead of a silently truthy string
    (``image.gray=maybe``) or a traceback (``seed=abc``)."""
    for key in FLAGS:
        value = OmegaConf.select(cfg, key, default=None)
        check(value is None or isinstance(value, bool), f"{key} must be true or false, got {value!r}")
    for key in INTEGERS:
        value = OmegaConf.select(cfg, key, default=None)
        integer = isinstance(value, int) and not isinstance(value, bool)
        check(value is None or integer, f"{key} must be an integer, got {value!r}")


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
    """A denoiser of ``pnp/configs/denoiser/<name>.yaml`` with its strength, outside any Hydra run (scripts)."""
    cfg = composed(f"denoiser={name}", *overrides)
    return build_denoiser(cfg, device, torch.float32), denoiser_sigma(cfg)


class TunedDenoiser(NamedTuple):
    denoiser: Denoiser
    sigma: float | None
    guarantee: Guarantee
    label: str  # the strength as set, "(untuned)" when no tuned file exists
    scheme: Scheme  # the configured scheme (an explicit prior's config selects scheme=agd)


def tuned_denoiser(name: str, problem: str, device: torch.device, overrides: tuple[str, ...] = ()) -> TunedDenoiser:
    """A denoiser of ``pnp/configs/denoiser/<name>.yaml`` at its tuned strength for the problem config ``problem``,
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
    """Set the denoiser's tuned strength from ``pnp/configs/tuned/<problem>_<denoiser>.yaml`` when that file exists,
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


def problem_label(cfg: DictConfig) -> str:
    """The problem and, for deblurring, its kernel: ``deblur(gaussian σ=1.6)``, ``deblur(motion 31×31)``."""
    p, name = cfg.problem, cfg.problem._target_.rsplit(".", 1)[-1]
    if name != "deblur":
        return name
    if p.kernel == "gaussian":
        return f"deblur(gaussian σ={p.blur_sigma:g})"
    size = p.kernel_size or DEFAULT_KERNEL_SIZE.get(p.kernel)
    return f"deblur({p.kernel} {size}×{size})"


def label(cfg: DictConfig) -> str:
    """Short description of the run: problem, scheme, denoiser (and equivariance)."""
    eq = cfg.get("equivariant")
    shown = strength(cfg)
    parts = [
        problem_label(cfg),
        cfg.scheme._target_.rsplit(".", 1)[-1],
        f"{cfg.denoiser.name}({shown})" if shown else cfg.denoiser.name,
    ]
    return " · ".join(parts + ([f"equivariant-{eq.mode}"] if eq else []))
