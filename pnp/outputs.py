"""What a solve writes into its run directory: metrics.json, history.csv and the two figures."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import torch
from deepinv.loss.metric import SSIM

from pnp.monitor import History, batch_psnr
from pnp.plotting import plot_curves, plot_reconstruction
from pnp.problems import Problem
from pnp.schemes import Result

HISTORY_COLUMNS = ("iter", "residual", "rel_residual", "psnr", "fidelity", "time_s")


def psnr(x: torch.Tensor, ref: torch.Tensor) -> float:
    return float(batch_psnr(x.clamp(0, 1) if x.shape == ref.shape else x, ref).mean())


def metrics(problem: Problem, result: Result) -> dict[str, Any]:
    """Quality and convergence figures of a run (batch means)."""
    x, ref, h = result.x, problem.x_true, result.history
    same_shape = problem.y.shape == ref.shape
    ssim = SSIM(max_pixel=1.0)(x.clamp(0, 1).float(), ref.float())
    return {
        "psnr_observation": psnr(problem.y, ref) if same_shape else None,
        "psnr_init": psnr(problem.x0, ref),
        "psnr": psnr(x, ref),
        "ssim": float(ssim.mean()),
        "iterations": h.iterations,
        "converged": h.converged,
        "diverged": h.diverged,
        "message": h.message,
        "final_residual": float(h.residual[-1].double().mean()),
        "final_rel_residual": float(h.rel_residual[-1].double().mean()),
        "stepsize": result.stepsize,
        "operator_norm": problem.norm,
    }


def write_history(path: Path, history: History) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=HISTORY_COLUMNS, restval="")
        writer.writeheader()
        writer.writerows(history.rows())


def write_figures(run_dir: Path, problem: Problem, result: Result, m: dict[str, Any], title: str) -> None:
    obs = m["psnr_observation"]
    panels = [
        ("ground truth", problem.x_true, True),
        (
            f"observation ({obs:.2f} dB)" if obs is not None else f"observation {tuple(problem.y.shape[1:])}",
            problem.y,
            obs is not None,
        ),
        (f"initialisation ({m['psnr_init']:.2f} dB)", problem.x0, True),
        (f"result ({m['psnr']:.2f} dB{', DIVERGED' if m['diverged'] else ''})", result.x, True),
    ]
    plot_reconstruction(run_dir / "reconstruction.png", panels)
    rows = result.history.rows()
    curve = {key: [r[key] for r in rows] for key in ("iter", "rel_residual")}
    curve["psnr"] = [r["psnr"] for r in rows] if result.history.psnr is not None else []
    plot_curves(run_dir / "convergence.png", {title: curve}, title=title)


def write_run(
    run_dir: Path, problem: Problem, result: Result, extra: dict[str, Any], title: str, plots: bool = True
) -> dict[str, Any]:
    """Write metrics.json, history.csv and (with ``plots``) reconstruction.png and convergence.png."""
    run_dir.mkdir(parents=True, exist_ok=True)
    m = {**metrics(problem, result), **extra}
    (run_dir / "metrics.json").write_text(json.dumps(m, indent=2, default=str))
    write_history(run_dir / "history.csv", result.history)
    if plots:
        write_figures(run_dir, problem, result, m, title)
    return m
