"""Solve one inverse problem with a PnP scheme: ``python -m pnp.solve +problem=deblur [overrides]``.

Simulates the measurement from an image, or reconstructs a measured one (``measurement.path``); ``image.folder`` and
``measurement.folder`` solve every file of a folder, in batches of images of one size. Writes metrics.json,
history.csv, the reconstruction (npy, float TIFF, 8-bit PNG), init.npy, reconstruction.png and convergence.png into
Hydra's run directory (a folder: those per image in a subfolder named after it, plus metrics.json with one row per
image and summary.csv) and prints a one-line summary. Bad input ends with one ``error:`` line and exit status 2; a
diverged run writes its outputs, says so and exits with status 3 (in a ``-m`` sweep the other runs go on and the run
is marked diverged).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import hydra
import torch
from deepinv.models import Denoiser
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from pnp.cli import EXIT_DIVERGED, entry, log, user_errors
from pnp.config import (
    apply_tuned,
    batch_problem,
    build_denoiser,
    build_problem,
    check_keys,
    denoiser_sigma,
    folder_groups,
    folder_kind,
    guarantee_of,
    label,
)
from pnp.outputs import image_row, write_folder, write_run
from pnp.problems import Problem
from pnp.runtime import resolve_device, resolve_dtype, seed_everything
from pnp.schemes import Result


def solve(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Build everything from ``cfg``, run the scheme and write the outputs into ``run_dir`` (one image, or every
    image of a folder: :func:`solve_folder`)."""
    check_keys(cfg)
    device, dtype = resolve_device(cfg.device), resolve_dtype(cfg.dtype)
    seed_everything(cfg.seed, device)
    kind = folder_kind(cfg)
    if kind is not None:
        return solve_folder(cfg, kind, run_dir, device, dtype)
    problem = build_problem(cfg, device, dtype)
    result, wall = run(cfg, problem, build_denoiser(cfg, device, dtype), device)
    extra = {
        "wall_time_s": wall,
        "device": str(device),
        "label": label(cfg),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    return write_run(run_dir, problem, result, extra, title=label(cfg), plots=cfg.plots)


def solve_folder(cfg: DictConfig, kind: str, run_dir: Path, device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """Every file of ``<kind>.folder``: batches of images of one size (:func:`pnp.config.folder_groups`), one
    ``scheme.run`` each (every image stops on its own); each image's outputs in ``run_dir/<name>/``, one row per image
    in metrics.json and summary.csv."""
    groups = folder_groups(cfg, kind, dtype)
    denoiser = build_denoiser(cfg, device, dtype)
    rows, wall = [], 0.0
    for i, group in enumerate(groups):
        problem = batch_problem(cfg, kind, group, device)
        result, seconds = run(cfg, problem, denoiser, device)
        wall += seconds
        for b, name in enumerate(group.names):
            extra = {"wall_time_s_batch": seconds, "device": str(device), "label": label(cfg), "batch": i}
            one = problem.element(b)
            m = write_run(
                run_dir / name, one, result.element(b), extra, title=f"{label(cfg)} · {name}", plots=cfg.plots
            )
            rows.append(image_row(name, tuple(one.x0.shape[1:]), i, m))
    extra = {
        "batch_size": cfg.batch_size,
        "batches": len(groups),
        "wall_time_s": wall,
        "device": str(device),
        "label": label(cfg),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    return write_folder(run_dir, rows, extra)


def run(cfg: DictConfig, problem: Problem, denoiser: Denoiser, device: torch.device) -> tuple[Result, float]:
    """The configured scheme on ``problem`` (a batch: one run, each image stopping on its own); its wall time."""
    scheme, fidelity, monitor = instantiate(cfg.scheme), instantiate(cfg.fidelity), instantiate(cfg.monitor)
    start = time.perf_counter()
    result = scheme.solve(
        problem, denoiser, sigma=denoiser_sigma(cfg), fidelity=fidelity, monitor=monitor, guarantee=guarantee_of(cfg)
    )
    if device.type == "cuda":
        torch.cuda.synchronize()
    return result, time.perf_counter() - start


def summary(m: dict[str, Any]) -> str:
    """The run's one line: quality (with a ground truth), iterations, verdict, time and the covering theorem."""
    if "images" in m:
        return folder_summary(m)
    state = "converged" if m["converged"] else "not converged"
    its = f"{m['iterations']} it"
    if m["diverged"]:
        state = "STAGNATED" if m.get("stagnated") else "DIVERGED"
        if m["returned_iteration"] != [m["iterations"]] * len(m["returned_iteration"]):
            its = f"{m['iterations']} it, result: iterate {'/'.join(map(str, m['returned_iteration']))}"
    g = m.get("guarantee")
    covered = "guarantee: none" if not g or not g["covered"] else f"guarantee: {g['theorem']}"
    objective = ""
    if "objective_monotone" in m:  # an explicit prior: say whether F(x_k) ever rose
        objective = ", F(x_k) never increased" if m["objective_monotone"] else ", F(x_k) INCREASED"
    scores = f"PSNR {m['psnr_init']:.2f} -> {m['psnr']:.2f} dB, SSIM {m['ssim']:.3f}, " if "psnr" in m else ""
    return (
        f"{m['label']}: {scores}{its}, "
        f"{state} (c_k={m['final_rel_residual']:.2e}){objective}, {m['wall_time_s']:.1f} s on {m['device']}; "
        f"{covered}"
    )


def folder_summary(m: dict[str, Any]) -> str:
    """A folder run's one line: images, batches, mean PSNR (with ground truths), convergence counts, time."""
    rows = m["images"]
    psnr = [r["psnr"] for r in rows if isinstance(r.get("psnr"), float)]
    scores = f", mean PSNR {sum(psnr) / len(psnr):.2f} dB" if psnr else ""
    return (
        f"{m['label']}: {m['count']} images in {m['batches']} batch(es){scores}, {m['message']}, "
        f"{m['wall_time_s']:.1f} s on {m['device']}"
    )


@hydra.main(version_base="1.3", config_path="configs", config_name="solve")
def main(cfg: DictConfig) -> None:
    hc = HydraConfig.get()
    with user_errors():
        apply_tuned(cfg, hc.overrides.task)
        m = solve(cfg, Path(hc.runtime.output_dir))
    log.info(summary(m))
    if m["diverged"]:
        log.warning(f"the run {m['message']}")
        if hc.mode != RunMode.MULTIRUN:  # a sweep's diverged runs: pnp.sweep.DivergedRuns, after the last job
            sys.exit(EXIT_DIVERGED)


if __name__ == "__main__":
    entry(main, "solve")
