"""Shared helpers of the benchmark scripts: denoisers by config name, held-out images, run summaries, tables."""

from __future__ import annotations

import csv
import platform
import time
from pathlib import Path
from typing import Any

import torch

from pnp.config import compose_denoiser
from pnp.data import held_out, make_split
from pnp.monitor import ConvergenceMonitor
from pnp.outputs import RunSummary
from pnp.problems import Problem
from pnp.schemes import Result, Scheme

LEARNED = ("dncnn", "fne_dncnn", "euler", "lpn")  # blind networks
CONDITIONAL = ("crr", "wcrr", "pnn", "gs_dncnn", "euler_conditional", "dncnn_conditional")  # learned priors that take σ
CLASSICAL = ("tv", "wavelet", "bm3d")
RESULTS = Path(__file__).resolve().parent / "results"


def bm3d_available() -> bool:
    try:
        import bm3d  # noqa: F401
    except ImportError:
        return False
    return True


def denoiser(
    name: str, sigma: float | None = None, device: str = "cpu", theta: float | None = None, weights: str | None = None
):
    """(denoiser, strength) from ``pnp/configs/denoiser/<name>.yaml``; ``sigma`` and ``theta`` override the config's,
    ``weights`` its shipped weights (``denoiser.model.name``, e.g. ``wcrr_ct`` for ``wcrr``)."""
    overrides = () if sigma is None else (f"denoiser.sigma={sigma}",)
    overrides += () if theta is None else (f"denoiser.theta={theta}",)
    overrides += () if weights is None else (f"denoiser.model.name={weights}",)
    return compose_denoiser(name, torch.device(device), overrides)


def held_out_images(size: int, count: int | None = None, which: str = "test") -> tuple[torch.Tensor, list[str]]:
    """The test images (every reported number) or the validation images (tuning), centre crops of ``size``²."""
    split = make_split()
    names = split.images(which)[:count] if count else split.images(which)
    return held_out(split, size, which)[: len(names)], list(names)


def machine() -> str:
    return (
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch "
        f"{torch.__version__}, {time.strftime('%Y-%m-%d')}"
    )


def write_table(path: Path, rows: list[dict], title: str, notes: str = "") -> None:
    """``path``.md (a markdown table under a title and notes) and ``path``.csv."""
    columns = list(rows[0])
    with path.with_suffix(".csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)

    def fmt(v) -> str:
        return (
            f"{v:.2f}" if isinstance(v, float) and abs(v) >= 0.01 else (f"{v:.1e}" if isinstance(v, float) else str(v))
        )

    lines = [f"# {title}", "", notes, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in columns) + " |" for r in rows]
    path.with_suffix(".md").write_text("\n".join(lines) + "\n")


def summarise(problem: Problem, result: Result, seconds: float) -> dict:
    """Batch means of :class:`pnp.outputs.RunSummary` (the summary metrics.json reports), counts of images."""
    s = RunSummary.of(problem, result)
    return {
        "psnr": sum(s.psnr) / len(s.psnr),
        "ssim": sum(s.ssim) / len(s.ssim),
        "iters_to_tol": s.mean_iterations(),
        "converged": s.count(s.converged),
        "monotone": s.count(s.residual_monotone),
        "diverged": s.diverged,
        "final_c_k": float(result.history.rel_residual[-1].max()),
        "time_s": seconds,
    }


def run_and_summarise(problem: Problem, scheme: Scheme, den, sigma: float, max_iter: int, tol: float):
    """Run ``scheme`` on ``problem`` and return (:func:`summarise` row, curves of the first image)."""
    monitor = ConvergenceMonitor(max_iter=max_iter, tol=tol, progress=False)
    start = time.perf_counter()
    result = scheme.run(
        problem.y,
        problem.physics,
        den,
        problem.x0,
        sigma=sigma,
        norm=problem.norm,
        monitor=monitor,
        x_true=problem.x_true,
    )
    h = result.history
    curve: dict[str, Any] = {
        "iter": list(range(1, h.iterations + 1)),
        "rel_residual": h.rel_residual[:, 0].tolist(),
        "psnr": h.psnr[:, 0].tolist(),
    }
    return summarise(problem, result, time.perf_counter() - start), curve
