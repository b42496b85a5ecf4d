"""What a solve writes into its run directory: metrics.json, history.csv, the reconstruction (npy, float TIFF, 8-bit
PNG), the initialisation (npy) and the two figures; for a folder of images, one such folder per image beside
metrics.json (one row per image) and summary.csv."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from deepinv.loss.metric import SSIM

from pnp.io import write_array, write_reconstruction
from pnp.monitor import History, largest_increase
from pnp.plotting import Panel, error_map, plot_curves, plot_reconstruction
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


def iterations_to_tol(c: torch.Tensor, tol: float) -> torch.Tensor:
    """Per batch element, the first iteration (1-based) from which c_k stays below ``tol`` to the end; 0 where the
    last c_k is not below it."""
    below = (c < tol).flip(0).int().cumprod(0).flip(0)  # 1 where c_k and every later c_j are below tol
    stays = below.sum(0)
    return torch.where(stays > 0, c.shape[0] - stays + 1, torch.zeros_like(stays))


def batch_ssim(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Per image, the SSIM of ``x`` clipped to [0, 1] against ``ref``: [B]."""
    return SSIM(max_pixel=1.0)(x.clamp(0, 1).float(), ref.float()).flatten()


@dataclass
class RunSummary:
    """One run's figures per batch element, the one summary of the command line (metrics.json) and the benchmarks.
    psnr, ssim: None without a ground truth; converged: c_k < tol at the last iteration (what stops the monitor),
    and the result not refuted by the scheme's stationarity check (:meth:`pnp.monitor.History.require_stationary`);
    iterations_to_tol: the first iteration from which c_k stays below tol (None where it never does);
    residual_monotone: c_k never rose after ``MONOTONE_AFTER`` iterations (relative slack ``MONOTONE_SLACK``);
    objective_monotone: F(x_k) never rose (explicit priors, slack ``OBJECTIVE_SLACK``)."""

    psnr: list[float] | None
    ssim: list[float] | None
    converged: list[bool]
    iterations_to_tol: list[int | None]
    residual_monotone: list[bool]
    objective_monotone: list[bool] | None
    diverged: bool
    stagnated: bool

    @staticmethod
    def of(problem: Problem, result: Result) -> RunSummary:
        x, ref, h = result.x.clamp(0, 1), problem.x_true, result.history
        its = [int(i) if i > 0 else None for i in iterations_to_tol(h.rel_residual, h.tol).tolist()]
        rise = largest_increase(h.rel_residual, MONOTONE_AFTER)
        up = None if h.objective is None else largest_increase(h.objective)
        return RunSummary(
            psnr=None if ref is None else batch_psnr(x, ref).tolist(),
            ssim=None if ref is None else batch_ssim(x, ref).tolist(),
            converged=[i is not None and ok for i, ok in zip(its, h.stationary, strict=True)],
            iterations_to_tol=its,
            residual_monotone=(rise <= MONOTONE_SLACK).tolist(),
            objective_monotone=None if up is None else (up <= OBJECTIVE_SLACK).tolist(),
            diverged=h.diverged,
            stagnated=h.stagnated,
        )

    @staticmethod
    def count(flags: list[bool] | None) -> str:
        """``k/n`` (``-`` when not applicable)."""
        return "-" if flags is None else f"{sum(flags)}/{len(flags)}"

    def mean_iterations(self) -> float | str:
        """Mean iterations to tol over the converged images (``-`` when none converged)."""
        its = [i for i, c in zip(self.iterations_to_tol, self.converged, strict=True) if c]
        return sum(its) / len(its) if its else "-"


def metrics(problem: Problem, result: Result) -> dict[str, Any]:
    """Quality and convergence figures of a run: batch means and, from :class:`RunSummary`, per image. Without a
    ground truth the quality keys (PSNR, SSIM) are left out."""
    x, ref, h = result.x, problem.x_true, result.history
    s = RunSummary.of(problem, result)
    quality = {}
    if ref is not None:
        quality = {
            "psnr_observation": psnr(problem.y, ref) if problem.y.shape == ref.shape else None,
            "psnr_init": psnr(problem.x0, ref),
            "psnr": psnr(x, ref),
            "ssim": sum(s.ssim) / len(s.ssim),
            "psnr_per_image": s.psnr,
            "psnr_of": "the result clipped to [0, 1] (as history.csv and the figure)",
        }
    estimate = {} if problem.noise_estimate is None else {"noise_sigma_estimate": problem.noise_estimate}
    return {
        **quality,
        "iterations": h.iterations,
        "returned_iteration": h.returned,
        "converged": all(s.converged) and not h.diverged,
        "converged_per_image": s.converged,
        "iterations_to_tol": s.iterations_to_tol,
        "diverged": h.diverged,
        "stagnated": h.stagnated,
        "message": h.message,
        "final_residual": float(h.of_result(h.residual).double().mean()),
        "final_rel_residual": float(h.of_result(h.rel_residual).double().mean()),
        "stationarity_residual": h.stationarity,
        "stepsize": result.stepsize,
        "operator_norm": problem.norm,
        "guarantee": None if result.verdict is None else result.verdict.as_dict(),
        **estimate,
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


def json_safe(m: dict[str, Any]) -> dict[str, Any]:
    """``m`` with every NaN/±Inf number replaced by null (JSON has no literal for them), and the keys where that
    happened listed under ``"non_finite"``."""
    found: list[str] = []

    def clean(value: Any, key: str) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            found.append(key)
            return None
        if isinstance(value, dict):
            return {k: clean(v, f"{key}.{k}" if key else str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v, key) for v in value]
        return value

    out = clean(m, "")
    return {**out, "non_finite": sorted(set(found))} if found else out


def write_json(path: Path, m: dict[str, Any]) -> None:
    """``m`` as strict JSON (:func:`json_safe`: no NaN/Infinity literals)."""
    path.write_text(json.dumps(json_safe(m), indent=2, default=str, allow_nan=False))


def write_history(path: Path, history: History) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=HISTORY_COLUMNS, restval="")
        writer.writeheader()
        writer.writerows(history.rows())


def ssim(x: torch.Tensor, ref: torch.Tensor) -> float:
    """Batch-mean :func:`batch_ssim`."""
    return float(batch_ssim(x, ref).mean())


def quality(psnr_db: float, ssim_value: float) -> str:
    return f"{psnr_db:.2f} dB, SSIM {ssim_value:.3f}"


def reconstruction_panels(problem: Problem, result: Result, m: dict[str, Any]) -> list[Panel]:
    """Ground truth | observation | initialisation (only when it is not the observation) | result, with PSNR and
    SSIM in the titles; an observation of another shape (sinogram, CS vector) is shown as a measurement. Without a
    ground truth: observation | initialisation | result, without PSNR and SSIM."""
    ref, y, x0 = problem.x_true, problem.y, problem.x0
    obs = m.get("psnr_observation")

    def titled(name: str, image: torch.Tensor, psnr_db: float | None) -> str:
        return name if ref is None or psnr_db is None else f"{name}\n{quality(psnr_db, ssim(image, ref))}"

    panels = [] if ref is None else [Panel("ground truth", ref)]
    if y.shape == x0.shape:
        panels.append(Panel(titled("observation", y, obs), y))
    else:
        panels.append(Panel(f"observation\nmeasurements {tuple(y.shape[1:])}", y, is_image=False))
    if x0.shape != y.shape or not torch.equal(x0, y):
        panels.append(Panel(titled("initialisation", x0, m.get("psnr_init")), x0))
    state = " (DIVERGED)" if m["diverged"] else ""
    scored = "" if ref is None else f"\n{quality(m['psnr'], m['ssim'])}"
    panels.append(Panel(f"result{state}{scored}", result.x))
    return panels


def write_figures(run_dir: Path, problem: Problem, result: Result, m: dict[str, Any], title: str) -> None:
    """reconstruction.png (:func:`reconstruction_panels` and, with a ground truth, the error map, with the zoomed
    inset where the error is largest) and convergence.png."""
    error = None if problem.x_true is None else error_map(result.x, problem.x_true)
    plot_reconstruction(run_dir / "reconstruction.png", reconstruction_panels(problem, result, m), error)
    rows = result.history.rows()
    curve = {key: [r[key] for r in rows] for key in ("iter", "rel_residual")}
    curve["psnr"] = [r["psnr"] for r in rows] if result.history.psnr is not None else []
    if result.history.objective is not None:
        curve["objective"] = [r["objective"] for r in rows]
    plot_curves(run_dir / "convergence.png", {title: curve}, title=title, diverged={title} if m["diverged"] else ())


def image_row(name: str, shape: tuple[int, ...], batch: int, m: dict[str, Any]) -> dict[str, Any]:
    """One image's row of a folder run (metrics.json's ``images``, summary.csv) from its :func:`metrics` (``shape``:
    the image's (C, H, W)); PSNR and SSIM only with a ground truth."""
    scores = {k: m[k] for k in ("psnr_init", "psnr", "ssim") if k in m}
    estimate = {"noise_sigma_estimate": m["noise_sigma_estimate"][0]} if "noise_sigma_estimate" in m else {}
    return {
        "name": name,
        "size": f"{shape[-2]}x{shape[-1]}",
        "channels": shape[0],
        "batch": batch,
        **scores,
        "iterations": m["iterations"],
        "returned_iteration": m["returned_iteration"][0],
        "converged": m["converged"],
        "diverged": m["diverged"],
        "stagnated": m["stagnated"],
        "final_rel_residual": m["final_rel_residual"],
        **estimate,
    }


def write_folder(run_dir: Path, rows: list[dict[str, Any]], extra: dict[str, Any]) -> dict[str, Any]:
    """A folder run's metrics.json (``images``: one row per image, in name order; the counts; ``extra``) and
    summary.csv (the rows)."""
    rows = sorted(rows, key=lambda r: r["name"])
    diverged = [r["name"] for r in rows if r["diverged"]]
    converged = sum(r["converged"] for r in rows)
    message = f"converged on {converged} of {len(rows)} images" + (
        f"; diverged on {len(diverged)}: {', '.join(diverged)}" if diverged else ""
    )
    m = {
        "images": rows,
        "count": len(rows),
        "converged": converged == len(rows),
        "diverged": bool(diverged),
        "message": message,
        **extra,
    }
    write_json(run_dir / "metrics.json", m)
    with (run_dir / "summary.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)), restval="")
        writer.writeheader()
        writer.writerows(rows)
    return m


def write_run(
    run_dir: Path, problem: Problem, result: Result, extra: dict[str, Any], title: str, plots: bool = True
) -> dict[str, Any]:
    """Write one image's metrics.json, history.csv, reconstruction.npy/.tif/_8bit.png, init.npy and (with ``plots``)
    reconstruction.png and convergence.png."""
    run_dir.mkdir(parents=True, exist_ok=True)
    m = {**metrics(problem, result), **extra}
    write_json(run_dir / "metrics.json", m)
    write_history(run_dir / "history.csv", result.history)
    write_reconstruction(run_dir, result.x)
    write_array(run_dir / "init.npy", problem.x0)
    if plots:
        write_figures(run_dir, problem, result, m, title)
    return m
