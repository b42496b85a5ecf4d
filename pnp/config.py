"""Objects built from the Hydra configs: problems, denoisers with their strength and guarantee class, tuned
strengths, composition outside a Hydra run. The library side of every entry point (solve, tune, certify, benchmarks,
scripts); nothing here reads the command line.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, NamedTuple

import torch
from deepinv.models import Denoiser
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from pnp.denoisers.relaxed import Relaxed
from pnp.errors import check
from pnp.guarantees import Guarantee, equivariant, relaxed
from pnp.images import load_image
from pnp.io import DATA_SUFFIXES, IMAGE_SUFFIXES, files_in, image_tensor, read_data
from pnp.problems import DEFAULT_KERNEL_SIZE, Measured, Problem
from pnp.schemes import Scheme

log = logging.getLogger("pnp")
CONFIGS = Path(__file__).resolve().parent / "configs"  # package data: in the wheel too
TUNED = CONFIGS / "tuned"  # <problem>_<denoiser>.yaml written by ``pnp.tune tune.ship=true``


def available(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


def choices(cfg: DictConfig) -> dict[str, str | None]:
    """The option of each config group ``cfg`` was composed with (``denoiser``, ``recipe``, …): Hydra's inside a
    Hydra run, else those of the ``hydra`` node :func:`composed` keeps with ``hydra=True``, else none."""
    if HydraConfig.initialized():
        return dict(HydraConfig.get().runtime.choices)
    return dict(cfg.hydra.runtime.choices) if "hydra" in cfg else {}


#: the entry points' own keys of a fixed type (the objects' keys are checked where they are built, with their ranges)
FLAGS = (
    "strict",
    "plots",
    "sweep_fails_on_divergence",
    "ship",
    "resume",
    "image.gray",
    "monitor.progress",
    "monitor.track_fidelity",
    "tune.ship",
    "tune.require_converged",
    "tune.keep_better",
)
INTEGERS = ("seed", "steps", "image.size", "batch_size", "tune.points", "tune.rounds")


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


def check_problem(cfg: DictConfig) -> None:
    check("problem" in cfg, f"choose a problem: python -m pnp.solve +problem=<{'|'.join(available('problem'))}>")


def read_measurement(path: str | Path, cfg: DictConfig, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The measurement in ``path`` as [1, …] (an image [1, C, H, W], colour to gray with ``image.gray``; a sinogram
    [1, 1, detectors, angles]; a vector [1, m]), values as stored (8/16-bit images scaled to [0, 1])."""
    return image_tensor(read_data(path, "measurement"), cfg.image.gray, device, dtype)


def measured_problem(cfg: DictConfig, y: torch.Tensor, x: torch.Tensor | None = None) -> Problem:
    """The problem of the measurements ``y`` [B, …], its operator rebuilt for an image of (C, H, W) = (1 or 3 with
    ``image.gray``, ``image.size``, ``image.size``) where y does not fix it; ``x``: an optional ground truth."""
    size = cfg.image.size
    shape = None if size is None else (1 if cfg.image.gray else 3, size, size)
    return instantiate(cfg.problem, x=x, measured=Measured(y, shape), seed=cfg.seed)


def warm_start(problem: Problem, path: str) -> Problem:
    """``problem`` started from the image saved at ``path`` (a reconstruction: npy, pt, tif or png) instead of its
    configured initialisation; it must have the image's shape."""
    a = read_data(path, "init")
    x0 = image_tensor(a, False, problem.x0.device, problem.x0.dtype)
    want = "×".join(map(str, problem.x0.shape[1:]))
    check(x0.shape == problem.x0.shape, f"init {path} holds an array of shape {a.shape}, the image is {want}")
    return dataclasses.replace(problem, x0=x0)


def build_problem(cfg: DictConfig, device: torch.device, dtype: torch.dtype) -> Problem:
    """The problem of ``cfg``: simulated from ``image.name`` or ``image.path``; or the measurement of
    ``measurement.path``, with ``image.path`` (read as it is, no resizing) as an optional ground truth; started from
    ``init.path`` when given."""
    check_problem(cfg)
    image, measurement = cfg.image, cfg.measurement
    if measurement.path is None:
        x = load_image(image.name, image.path, image.size, image.gray, image.fit, device=device, dtype=dtype)
        problem = instantiate(cfg.problem, x=x, seed=cfg.seed)
    else:
        y = read_measurement(measurement.path, cfg, device, dtype)
        truth = None
        if image.path is not None:
            truth = load_image(None, image.path, None, image.gray, "none", device=device, dtype=dtype)
        problem = measured_problem(cfg, y, truth)
    return problem if cfg.init.path is None else warm_start(problem, cfg.init.path)


class Group(NamedTuple):
    """Files of a folder solved as one batch: their names and their data [B, …] on the CPU (clean images for
    ``image.folder``, measurements for ``measurement.folder``)."""

    names: list[str]
    data: torch.Tensor


def folder_kind(cfg: DictConfig) -> str | None:
    """``image`` or ``measurement`` when ``image.folder`` or ``measurement.folder`` is set (one of them), else None."""
    image, measurement = cfg.image.get("folder"), cfg.measurement.get("folder")
    check(image is None or measurement is None, "give image.folder or measurement.folder, not both")
    kind = "image" if image is not None else "measurement" if measurement is not None else None
    if kind is not None:
        for key in ("image.path", "measurement.path", "init.path"):
            check(OmegaConf.select(cfg, key) is None, f"{key} is for one image: give it or {kind}.folder, not both")
    return kind


def folder_groups(cfg: DictConfig, kind: str, dtype: torch.dtype) -> list[Group]:
    """Every file of ``<kind>.folder`` (in name order) read and checked, grouped by the size of its image (a folder's
    images may differ in size unless ``image.size`` fits them to one) in the order of first appearance, each group
    cut into batches of at most ``batch_size``."""
    check_problem(cfg)
    size = cfg.batch_size
    check(isinstance(size, int) and size >= 1, f"batch_size must be a positive integer, got {size!r}")
    image, cpu = cfg.image, torch.device("cpu")
    if kind == "image":
        files = files_in(image.folder, IMAGE_SUFFIXES, "image.folder")
        data = [load_image(None, str(f), image.size, image.gray, image.fit, device=cpu, dtype=dtype) for f in files]
    else:
        files = files_in(cfg.measurement.folder, DATA_SUFFIXES, "measurement.folder")
        data = [read_measurement(f, cfg, cpu, dtype) for f in files]
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, t in enumerate(data):
        by_shape.setdefault(tuple(t.shape), []).append(i)
    return [
        Group([files[i].stem for i in chunk], torch.cat([data[i] for i in chunk]))
        for members in by_shape.values()
        for chunk in (members[j : j + size] for j in range(0, len(members), size))
    ]


def batch_problem(cfg: DictConfig, kind: str, group: Group, device: torch.device) -> Problem:
    """The problem of a :class:`Group`: simulated from its clean images, or of its measurements."""
    data = group.data.to(device)
    return instantiate(cfg.problem, x=data, seed=cfg.seed) if kind == "image" else measured_problem(cfg, data)


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


def composed(*overrides: str, config: str = "solve", hydra: bool = False) -> DictConfig:
    """``<config>.yaml`` (``solve``, ``tune``, ``train``, …) composed with ``overrides`` outside any Hydra run
    (scripts, benchmarks, the entry points' composition check); ``hydra``: with Hydra's own ``hydra`` node."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(config, overrides=list(overrides), return_hydra_config=hydra)


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
    max_iter: int  # the iteration budget its config sets (monitor.max_iter)
    start: str | None  # ``problem.init`` where the tuned file sets another start than the problem config's


def tuned_denoiser(name: str, problem: str, device: torch.device, overrides: tuple[str, ...] = ()) -> TunedDenoiser:
    """A denoiser of ``pnp/configs/denoiser/<name>.yaml`` at its tuned strength for the problem config ``problem``,
    with its strength, class and scheme, outside any Hydra run (scripts, benchmarks)."""
    cfg = composed(f"+problem={problem}", f"denoiser={name}", *overrides)
    tuned = apply_tuned(cfg, overrides)
    label = (strength(cfg) or "default") + step_label(cfg.scheme) + start_label(cfg) + ("" if tuned else " (untuned)")
    den = build_denoiser(cfg, device, torch.float32)
    scheme = instantiate(cfg.scheme)
    budget = int(cfg.monitor.max_iter)
    return TunedDenoiser(den, denoiser_sigma(cfg), guarantee_of(cfg), label, scheme, budget, tuned_start(cfg))


def strength(cfg: DictConfig) -> str:
    """σ and θ as a user set them (``σ=0.02``, ``θ=0.3`` or both), and the shipped weights where they are not the
    prior's own (``weights=wcrr_multiscale``)."""
    sigma, theta, weights = cfg.denoiser.get("sigma"), cfg.denoiser.get("theta", 1.0), other_weights(cfg)
    parts = ([] if sigma is None else [f"σ={sigma:g}"]) + ([] if theta == 1 else [f"θ={theta:g}"])
    return ",".join(parts + ([] if weights is None else [f"weights={weights}"]))


def other_weights(cfg: DictConfig) -> str | None:
    """The shipped weights the denoiser loads (``denoiser.model.name``) where they are not its own, else None."""
    weights = OmegaConf.select(cfg, "denoiser.model.name")
    return None if weights in (None, cfg.denoiser.name) else weights


def step_label(scheme: DictConfig) -> str:
    """``(γL=10)`` where the step (PGD) or penalty (ADMM) is not the default γ = 1/L, ``(τ=0.35)`` where accelerated
    gradient's prior weight is set; empty otherwise."""
    factor, weight = scheme.get("step_factor", 1.0), scheme.get("weight")
    step = "" if scheme.get("stepsize") is not None or factor == 1 else f"(γL={factor:g})"
    return step + ("" if weight is None else f"(τ={weight:g})")


def tuned_path(cfg: DictConfig, folder: Path = TUNED) -> Path | None:
    """``<folder>/<problem>_<denoiser>.yaml`` with the problem config's ``problem_name``; None without a problem."""
    return folder / f"{cfg.problem_name}_{cfg.denoiser.name}.yaml" if "problem_name" in cfg else None


def scheme_name(scheme: DictConfig) -> str | None:
    """The ``scheme/`` group config whose ``_target_`` the configured scheme has (``pgd``, ``admm``, ``agd``)."""
    targets = {OmegaConf.load(CONFIGS / "scheme" / f"{n}.yaml")._target_: n for n in available("scheme")}
    return targets.get(scheme.get("_target_"))


def apply_tuned(cfg: DictConfig, overrides: list[str] | tuple[str, ...] = (), folder: Path = TUNED) -> Path | None:
    """Set the tuned setting of ``pnp/configs/tuned/<problem>_<denoiser>.yaml`` when that file exists: its
    ``denoiser`` keys (σ, θ, and ``model.name`` where the problem was tuned with other shipped weights of the same
    architecture), its ``problem`` keys (the start ``init`` where the setting was tuned from another start than the
    problem config's: a nonconvex F's critical point depends on it) and, unless the command line chose another scheme,
    its ``scheme`` (the group config ``name`` with the tuned keys, e.g. the ADMM penalty). A key given on the command
    line wins. Returns the file."""
    path = tuned_path(cfg, folder)
    if path is None or not path.is_file():
        return None
    given = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
    tuned = OmegaConf.load(path)
    if "denoiser.model.path" in given:
        log.warning(
            f"{path.name} was tuned with the shipped weights; your weights (denoiser.model.path) run its setting as "
            "it is: tune them with python -m pnp.tune … denoiser.model.name=null +denoiser.model.path=…"
        )
    with open_dict(cfg):
        for key, value in tuned.get("denoiser", {}).items():
            if key == "model":  # the weights: unless the command line names its own (a name or a path)
                if not {"denoiser.model", "denoiser.model.name", "denoiser.model.path"} & given:
                    cfg.denoiser.model.name = value.name
            elif f"denoiser.{key}" not in given:
                cfg.denoiser[key] = value
        for key, value in tuned.get("problem", {}).items():
            if f"problem.{key}" not in given:
                cfg.problem[key] = value
        scheme = tuned.get("scheme")
        if scheme is not None and ("scheme" not in given or scheme_name(cfg.scheme) == scheme.name):
            chosen = OmegaConf.load(CONFIGS / "scheme" / f"{scheme.name}.yaml")
            for key, value in scheme.items():
                if key != "name":
                    chosen[key] = value
            for key in (g.split(".", 1)[1] for g in given if g.startswith("scheme.")):
                chosen[key] = cfg.scheme.get(key)
            cfg.scheme = chosen
    return path


def problem_default(name: str, key: str) -> Any:
    """``problem.<key>`` as the problem config ``pnp/configs/problem/<name>.yaml`` sets it, or as the problem configs
    in its ``defaults`` list do (``deblur_motion`` extends ``deblur``); None where none does."""
    path = CONFIGS / "problem" / f"{name}.yaml"
    if not path.is_file():
        return None
    conf = OmegaConf.load(path)
    value = OmegaConf.select(conf, f"problem.{key}")
    parents = (d for d in conf.get("defaults", []) if isinstance(d, str) and d != "_self_")
    return (
        value
        if value is not None
        else next((v for v in (problem_default(d, key) for d in parents) if v is not None), None)
    )


def tuned_start(cfg: DictConfig) -> str | None:
    """``problem.init`` where it is not the problem config's own (:func:`problem_default`), else None: the start a
    tuned setting records and a run's label shows."""
    init, default = OmegaConf.select(cfg, "problem.init"), problem_default(str(cfg.get("problem_name")), "init")
    return None if init is None or default is None or init == default else str(init)


def start_label(cfg: DictConfig) -> str:
    """``(from adjoint)`` where the start is not the problem config's (:func:`tuned_start`), else empty."""
    start = tuned_start(cfg)
    return "" if start is None else f"(from {start})"


def problem_label(cfg: DictConfig) -> str:
    """The problem and, for deblurring, its kernel: ``deblur(gaussian σ=1.6)``, ``deblur(motion 31×31)``; the start
    where it is not the problem config's (``ct(from adjoint)``)."""
    return kernel_label(cfg) + start_label(cfg)


def kernel_label(cfg: DictConfig) -> str:
    """The problem and, for deblurring, its kernel."""
    p, name = cfg.problem, cfg.problem._target_.rsplit(".", 1)[-1]
    if name != "deblur":
        return name
    if p.get("kernel_path"):
        return f"deblur({Path(p.kernel_path).name})"
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
        cfg.scheme._target_.rsplit(".", 1)[-1] + step_label(cfg.scheme),
        f"{cfg.denoiser.name}({shown})" if shown else cfg.denoiser.name,
    ]
    return " · ".join(parts + ([f"equivariant-{eq.mode}"] if eq else []))
