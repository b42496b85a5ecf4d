"""What a solve writes into its run directory: metrics.json, history.csv and the two figures."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import torch
from deepinv.loss.metric import SSIM

from pnp.monitor import History, largest_increase
from pnp.plotting import plot_curves, plot_reconstruction
from pnp.problems import Problem
from pnp.schemes import Result
from pnp.tensors import batch_psnr

HISTORY_COLUMNS = ("iter", "residual", "rel_residual", "psnr", "fidelity", "objective", "time_s")
#: c_k is judged monotone after this transient (iterations), with this relative slack for float round-off
MONOTONE_AFTER, MONOTONE_SLACK = 20, 1e-3
#: F(x_k) may not rise by more than this, relative: float32 round-off of a sum over the image (about 1e-6 at 256²)
OBJECTIVE_SLACK = 1e-5


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
        "stagnated": h.stagnated,
        "message": h.message,
        "final_residual": float(h.residual[-1].double().mean()),
        "final_rel_residual": float(h.rel_residual[-1].double().mean()),
        "stepsize": result.stepsize,
        "operator_norm": problem.norm,
        "guarantee": None if result.verdict is None else result.verdict.as_dict(),
        **monotonicity(h),
    }


def monotonicity(h: History) -> dict[str, Any]:
    """c_k after the transient and F(x_k) (explicit priors) from the start: the largest relative increase per image
    (≤ 0: never increased) and the verdicts (each with a relative slack for round-off)."""
    rise = largest_increase(h.rel_residual, MONOTONE_AFTER)
    out: dict[str, Any] = {
        "residual_monotone_after": MONOTONE_AFTER,
        "residual_largest_increase": [float(v) if v > -float("inf") else None for v in rise],
        "residual_monotone": bool((rise <= MONOTONE_SLACK).all()),
    }
    if h.objective is not None:
        up = largest_increase(h.objective)
        out["objective_largest_increase"] = [float(v) if v > -float("inf") else None for v in up]
        out["objective_monotone"] = bool((up <= OBJECTIVE_SLACK).all())
        out["final_objective"] = float(h.objective[-1].double().mean())
    return out


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
    if result.history.objective is not None:
        curve["objective"] = [r["objective"] for r in rows]
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
