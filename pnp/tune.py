"""Tune a denoiser's strength for a problem on the validation images:
``python -m pnp.tune +problem=deblur denoiser=crr [tune.param=denoiser.theta] [tune.ship=true]``.

The parameter (``denoiser.sigma`` by default, ``denoiser.theta`` for blind networks, ``scheme.step_factor``: γL,
the step of PnP-PGD within its bound or the penalty of PnP-ADMM, where a larger γ weakens the prior of prox_{γf}, D;
or ``scheme.weight``: τ of accelerated gradient on f + τR_σ, the λ of the ridge-regularizer papers beside σ)
is searched on a log grid between ``tune.low`` and ``tune.high``, then on finer grids around the best value
(``tune.rounds``). Each value runs the configured scheme on the validation images (:data:`pnp.data.VALIDATION`,
never a test image) as one batch at the problem's image size and scores the mean PSNR of the result; a run that
diverges or that no convergence theorem covers (under ``strict``) scores −inf, and so does one that ends above the
monitor's tolerance with ``tune.require_converged=true`` (a default must converge within the iteration budget, or
within the fraction ``tune.converge_within`` of it, a margin for images it was not tuned on). The
choice, the whole search and the settings go to ``tune.json`` in the run directory; ``tune.ship=true`` writes the
setting (the denoiser's σ and θ, the scheme and its step, and ``problem.init`` where it is not the problem config's)
to ``pnp/configs/tuned/<problem>_<denoiser>.yaml``, which ``pnp.solve`` then uses by default for that problem and
denoiser (a value or a scheme on the command line still wins); with ``tune.keep_better=true`` only when its
validation PSNR beats the file already there by more than ``tune.min_gain`` dB (a second search, e.g. the ADMM
penalty after θ, ships only if it wins on the validation images).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from pnp.cli import entry, log, user_errors
from pnp.config import (
    TUNED,
    build_denoiser,
    check_keys,
    denoiser_sigma,
    guarantee_of,
    other_weights,
    scheme_name,
    tuned_path,
    tuned_start,
)
from pnp.data import held_out, make_split
from pnp.errors import ConfigError, check
from pnp.monitor import History
from pnp.problems import Problem
from pnp.runtime import resolve_device, seed_everything
from pnp.tensors import batch_psnr

PARAMS = ("denoiser.sigma", "denoiser.theta", "scheme.step_factor", "scheme.weight")
UPPER = {"denoiser.theta": 1.0}  # a parameter's largest meaningful value


def validation_problem(cfg: DictConfig, device: torch.device) -> Problem:
    """The configured problem on the validation images (centre crops at the problem's image size)."""
    check(cfg.image.size is not None, "tuning needs image.size")
    x = held_out(make_split(), int(cfg.image.size), "validation").to(device)
    return instantiate(cfg.problem, x=x, seed=cfg.seed)


def set_param(cfg: DictConfig, value: float) -> None:
    """``cfg.tune.param`` (``section.key``) = ``value`` in ``cfg``."""
    section, key = cfg.tune.param.split(".")
    with open_dict(cfg):
        cfg[section][key] = float(value)


def evaluate(cfg: DictConfig, problem: Problem, value: float) -> dict[str, Any]:
    """Run the scheme with ``cfg.tune.param`` = ``value``; the mean PSNR over the validation images."""
    set_param(cfg, value)
    device = problem.x_true.device
    start = time.perf_counter()
    try:
        result = instantiate(cfg.scheme).solve(
            problem,
            build_denoiser(cfg, device, torch.float32),
            sigma=denoiser_sigma(cfg),
            fidelity=instantiate(cfg.fidelity),
            monitor=instantiate(cfg.monitor),
            guarantee=guarantee_of(cfg),
            x_true=None,  # scored at the end only
        )
    except ConfigError as err:  # e.g. strict=true and no theorem covers this value
        return {"value": value, "psnr": -math.inf, "error": str(err)}
    psnr = batch_psnr(result.x.clamp(0, 1), problem.x_true)
    h = result.history
    failed = h.diverged or (cfg.tune.require_converged and not converged_in_budget(h, cfg))
    return {
        "value": value,
        "psnr": -math.inf if failed else float(psnr.mean()),
        "psnr_per_image": [float(p) for p in psnr],
        "iterations": h.iterations,
        "converged": h.converged,
        "diverged": h.diverged,
        "seconds": time.perf_counter() - start,
    }


def converged_in_budget(history: History, cfg: DictConfig) -> bool:
    """Whether the run reached the monitor's tolerance within ``tune.converge_within`` × ``monitor.max_iter``
    iterations: a margin below 1 refuses a setting that only just converges on the validation images (on unseen
    images it may not)."""
    return bool(history.converged) and history.iterations <= cfg.tune.converge_within * cfg.monitor.max_iter


def log_grid(low: float, high: float, points: int) -> list[float]:
    check(
        0 < low < high and points >= 2,
        f"need 0 < tune.low < tune.high and tune.points >= 2, got low={low}, high={high}, points={points}",
    )
    return [low * (high / low) ** (i / (points - 1)) for i in range(points)]


def search(cfg: DictConfig, problem: Problem, evaluations: list[dict[str, Any]]) -> dict[str, Any]:
    """Coarse log grid, then ``rounds`` − 1 grids centred on the best value so far, each with half the log spacing
    of the one before."""
    t = cfg.tune
    grid = log_grid(t.low, t.high, t.points)
    ratio = (t.high / t.low) ** (1 / (t.points - 1))
    for round_ in range(t.rounds):
        for value in grid:
            if not any(math.isclose(value, e["value"], rel_tol=1e-9) for e in evaluations):
                entry = evaluate(cfg, problem, value)
                evaluations.append(entry)
                log.info(f"  round {round_ + 1}: {t.param}={value:.5g} -> {entry['psnr']:.3f} dB")
        best = max(evaluations, key=lambda e: e["psnr"])
        upper = UPPER.get(t.param, math.inf)
        ratio = math.sqrt(ratio)
        grid = [min(best["value"] * ratio ** (i - (t.points - 1) / 2), upper) for i in range(t.points)]
    check(
        math.isfinite(best["psnr"]),
        f"every value of {t.param} diverged or was refused"
        + (
            f" or did not reach monitor.tol within {t.converge_within:g} x {cfg.monitor.max_iter} iterations"
            if t.require_converged
            else ""
        ),
    )
    return best


def caveats(cfg: DictConfig, best: dict[str, Any], evaluations: list[dict[str, Any]]) -> list[str]:
    """What to doubt in a best value: it lies at an end of the values searched (the optimum may lie beyond; not at
    the parameter's own bound, e.g. θ = 1), or its run did not reach monitor.tol within monitor.max_iter."""
    param, values = cfg.tune.param, sorted(e["value"] for e in evaluations)
    notes = []
    if len(values) > 1 and best["value"] == values[0]:
        notes.append(f"the best {param} is the smallest searched: the optimum may lie below (lower tune.low)")
    if len(values) > 1 and best["value"] == values[-1] and best["value"] < UPPER.get(param, math.inf):
        notes.append(f"the best {param} is the largest searched: the optimum may lie above (raise tune.high)")
    if not best.get("converged", True):
        notes.append(
            f"the best {param} did not reach monitor.tol within {cfg.monitor.max_iter} iterations "
            "(tune.require_converged=true scores such values -inf)"
        )
    return notes


def tuned_file(cfg: DictConfig) -> Path:
    """Where ``tune.ship`` writes: ``tune.dir`` (default ``pnp/configs/tuned``)/<problem>_<denoiser>.yaml."""
    return tuned_path(cfg, Path(cfg.tune.dir) if cfg.tune.dir else TUNED)


def weights_mismatch(cfg: DictConfig) -> str | None:
    """Where the tuned file of this problem × denoiser runs other shipped weights than this search tunes (the search
    starts from the denoiser's config, not from that file), the warning that says so; else None."""
    path, searched = tuned_file(cfg), OmegaConf.select(cfg, "denoiser.model.name")
    if searched is None or not path.is_file():
        return None
    solved = OmegaConf.select(OmegaConf.load(path), "denoiser.model.name") or cfg.denoiser.name
    if solved == searched:
        return None
    tunes = f"denoiser.model.name={solved} tunes those"
    return f"{path.name} runs the weights {solved}, this search tunes {searched} ({tunes})"


def tuned_setting(cfg: DictConfig, best: dict[str, Any]) -> dict[str, Any]:
    """What ``pnp.solve`` needs to repeat the best run: the denoiser's strength and the scheme with its step."""
    set_param(cfg, best["value"])
    denoiser: dict[str, Any] = {
        k: float(f"{cfg.denoiser[k]:.6g}") for k in ("sigma", "theta") if cfg.denoiser.get(k) is not None
    }
    weights = other_weights(cfg)
    if weights is not None:  # other shipped weights of this prior were tuned
        denoiser["model"] = {"name": weights}
    setting: dict[str, Any] = {"denoiser": denoiser}
    name = scheme_name(cfg.scheme)
    if name is not None:  # a scheme config of one's own (hydra.searchpath) is not in pnp's scheme/ group
        keys = ("step_factor", "weight")  # weight: the prior weight τ of accelerated gradient (null: L)
        setting["scheme"] = {"name": name} | {
            k: float(f"{cfg.scheme[k]:.6g}") for k in keys if cfg.scheme.get(k) is not None
        }
    start = tuned_start(cfg)
    if start is not None:  # tuned from another start than the problem config's (pnp.config.apply_tuned sets it)
        setting["problem"] = {"init": start}
    return {
        **setting,
        "validation_psnr": round(float(best["psnr"]), 3),
        "validation_size": cfg.image.size,  # what validation_psnr was measured at: beats_shipped compares only alike
        "validation_max_iter": cfg.monitor.max_iter,
    }


def write_tuned(path: Path, cfg: DictConfig, setting: dict[str, Any], best: dict[str, Any]) -> None:
    """The tuned setting as ``denoiser``, ``scheme`` (and ``problem``) sections (pnp.config.apply_tuned), with where it
    came from."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"# Tuned by `python -m pnp.tune` ({cfg.tune.param}) on the validation images {list(make_split().validation)} "
        f"at {cfg.image.size}x{cfg.image.size}:\n"
        f"# mean PSNR {best['psnr']:.2f} dB, {best['iterations']} iterations, converged={best['converged']}.\n"
        + OmegaConf.to_yaml(OmegaConf.create(setting))
    )


def beats_shipped(path: Path, setting: dict[str, Any], keep_better: bool, min_gain: float = 0.0) -> bool:
    """Whether ``setting`` should replace the tuned file at ``path``: always, unless ``keep_better`` and its
    validation PSNR does not exceed the file's ``validation_psnr`` by more than ``min_gain`` dB (both as written,
    rounded alike): a default does not move for a gain within the noise of a few validation images. PSNRs measured
    at another image size or iteration budget are not compared: an error with ``keep_better``, else a warning."""
    if not path.is_file():
        return True
    shipped = OmegaConf.load(path)
    unlike = [
        f"{key}={shipped[key]} there, {setting.get(key)} here"
        for key in ("validation_size", "validation_max_iter")
        if shipped.get(key) is not None and shipped[key] != setting.get(key)
    ]
    if unlike:
        otherwise = "; ".join(unlike)
        check(
            not keep_better,
            f"{path} was tuned otherwise ({otherwise}): its validation PSNR is not comparable; search alike, or "
            "write elsewhere (tune.dir)",
        )
        log.warning(f"replacing {path}, tuned otherwise: {otherwise}")
    if not keep_better or shipped.get("validation_psnr") is None:
        return True
    return setting["validation_psnr"] > shipped.validation_psnr + min_gain


def tune(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    check("problem" in cfg, "choose a problem: python -m pnp.tune +problem=<deblur|ct|cs> denoiser=<name>")
    check(cfg.tune.param in PARAMS, f"tune.param must be one of {PARAMS}, got {cfg.tune.param!r}")
    check(0 < cfg.tune.converge_within <= 1, f"tune.converge_within must be in (0, 1], got {cfg.tune.converge_within}")
    check(cfg.tune.min_gain >= 0, f"tune.min_gain must be >= 0 dB, got {cfg.tune.min_gain}")
    given = [
        k
        for k in ("measurement.path", "measurement.folder", "image.folder", "init.path", "image.path")
        if OmegaConf.select(cfg, k) is not None
    ]
    check(
        not given,
        f"tuning runs on the validation images (simulated, scored against their truth): drop {', '.join(given)}",
    )
    check(
        cfg.tune.param != "denoiser.sigma" or not cfg.denoiser.get("blind"),
        f"denoiser {cfg.denoiser.name} is blind: tune denoiser.theta instead (tune.param=denoiser.theta)",
    )
    check(
        cfg.tune.param != "scheme.weight" or "weight" in cfg.scheme,
        "scheme.weight is the prior weight of scheme=agd (denoiser=crr|wcrr); this scheme has none",
    )
    check(
        cfg.tune.param != "scheme.step_factor" or cfg.scheme.get("stepsize") is None,
        "scheme.stepsize is set, so scheme.step_factor has no effect: drop scheme.stepsize to tune the step",
    )
    check_keys(cfg)
    mismatch = weights_mismatch(cfg)
    if mismatch:
        log.warning(mismatch)
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed, device)
    problem = validation_problem(cfg, device)
    evaluations: list[dict[str, Any]] = []
    best = search(cfg, problem, evaluations)
    doubts = caveats(cfg, best, evaluations)
    for doubt in doubts:
        log.warning(doubt)
    setting = tuned_setting(cfg, best)  # also sets cfg's parameter to the best value for the record below
    path = tuned_file(cfg)
    shipped = bool(cfg.tune.ship) and beats_shipped(path, setting, cfg.tune.keep_better, cfg.tune.min_gain)
    record = {
        "param": cfg.tune.param,
        "best": best,
        "setting": setting,
        "shipped": shipped,
        "caveats": doubts,
        "evaluations": sorted(evaluations, key=lambda e: e["value"]),
        "validation_images": list(make_split().validation),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "tune.json").write_text(json.dumps(record, indent=2))
    if shipped:
        write_tuned(path, cfg, setting, best)
    return record


def report(cfg: DictConfig, record: dict[str, Any]) -> str:
    """The run's one line: the prior (and its weights where they are not its own), the best value, its validation
    PSNR, and whether the tuned file was written."""
    best, weights = record["best"], other_weights(cfg)
    prior = cfg.denoiser.name + ("" if weights is None else f"(weights={weights})")
    return (
        f"{prior}: best {record['param']}={best['value']:.5g} -> {best['psnr']:.2f} dB on "
        f"{', '.join(record['validation_images'])} ({best['iterations']} it)"
        + (f"; written to {tuned_file(cfg)}" if record["shipped"] else "")
        + ("; the tuned file there scores higher: kept" if cfg.tune.ship and not record["shipped"] else "")
    )


@hydra.main(version_base="1.3", config_path="configs", config_name="tune")
def main(cfg: DictConfig) -> None:
    with user_errors():
        record = tune(cfg, Path(HydraConfig.get().runtime.output_dir))
    log.info(report(cfg, record))


if __name__ == "__main__":
    entry(main, "tune")
