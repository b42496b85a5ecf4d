"""Shared helpers of the benchmark scripts: denoisers by config name, held-out images, run summaries, tables."""

from __future__ import annotations

import csv
import json
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


def scored(cfg, problem, denoiser, sigma: float) -> dict:
    """``denoiser`` scored as ``pnp.tune`` scores a setting (the configured scheme on ``problem``, the validation
    images, at ``sigma``): mean PSNR (``val``, −inf where the tuner rejects the run), per image, iterations."""
    import pnp.tune as tune

    build = tune.build_denoiser
    tune.build_denoiser = lambda *_: denoiser
    try:
        r = tune.evaluate(cfg, problem, sigma)
    finally:
        tune.build_denoiser = build
    return {"val": r["psnr"], "per": r.get("psnr_per_image"), "its": r.get("iterations"), "conv": r.get("converged")}


def training_problem(cfg, patch: int, count: int):
    """(clean, problem): ``count`` fixed ``patch``² patches of the embedded training images and the configured problem
    on them (its observations drawn once, seed 3)."""
    from hydra.utils import instantiate

    from pnp.data import PatchSampler, training_images

    sampler = PatchSampler(training_images(make_split()), patch, count, 0.0, 0.0, seed=1, device=torch.device("cpu"))
    clean = sampler()[0]
    return clean, instantiate(cfg.problem, x=clean, seed=3)


def psnr(x: torch.Tensor, ref: torch.Tensor) -> float:
    """Mean PSNR over the batch of ``x`` clipped to [0, 1], as pnp.tune scores."""
    from pnp.tensors import batch_psnr

    return float(batch_psnr(x.clamp(0, 1), ref).mean())


def log_row(row: dict, start: float) -> None:
    """A training row as a JSON line on stdout, with the seconds since ``start``."""
    print(json.dumps({**row, "t": round(time.time() - start)}), flush=True)


def validation_checkpoint(out: Path, step: int, start: float, scores: dict, history: list, model, opt, order, **extra):
    """Append ``scores`` of ``step`` to ``history``, print them and :func:`save_checkpoint` (history and ``extra``)."""
    history.append({"step": step, "time_s": time.time() - start, **scores})
    print(json.dumps(history[-1]), flush=True)
    save_checkpoint(out, step, model, opt, order, history=history, **extra)


def save_checkpoint(out: Path, step: int, model, opt, order: torch.Generator, **extra) -> None:
    """``step<N>.pt`` (the weights) and ``checkpoint<N>.pt`` (weights, optimiser, minibatch order, ``extra``)."""
    from pnp import weights

    weights.save_atomic(model.state_dict(), out / f"step{step}.pt")
    state = {"model": model.state_dict(), "opt": opt.state_dict(), "order": order.get_state(), "step": step}
    weights.save_atomic({**state, **extra}, out / f"checkpoint{step}.pt")


def start_training(model, lr: float, resume: str | None):
    """(Adam at ``lr``, the minibatch order's generator, the state of ``resume`` or None) with ``model`` in training
    mode and, on resume, weights, optimiser and order restored (:func:`load_checkpoint`)."""
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    order = torch.Generator().manual_seed(5)
    return opt, order, load_checkpoint(resume, model, opt, order) if resume else None


def load_checkpoint(path: str, model, opt, order: torch.Generator) -> dict:
    """Restore what :func:`save_checkpoint` wrote; returns the whole state (its ``step`` and extras)."""
    state = torch.load(path, map_location="cpu")
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    order.set_state(state["order"])
    return state


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
    result = scheme.solve(problem, den, sigma=sigma, monitor=monitor)
    h = result.history
    curve: dict[str, Any] = {
        "iter": list(range(1, h.iterations + 1)),
        "rel_residual": h.rel_residual[:, 0].tolist(),
        "psnr": h.psnr[:, 0].tolist(),
    }
    return summarise(problem, result, time.perf_counter() - start), curve
