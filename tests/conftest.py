"""Shared fixtures: small images and problems so that every test runs in seconds on a CPU."""

from __future__ import annotations

import contextlib
import io
import json
import math
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from unittest import mock

import torch
from deepinv.models import Denoiser
from omegaconf import DictConfig

from pnp.cli import EXIT_USER_ERROR, refuse_composition_mistakes, user_errors
from pnp.config import apply_tuned, composed
from pnp.images import load_image
from pnp.monitor import ConvergenceMonitor
from pnp.solve import solve, summary

T = TypeVar("T")


class ShrinkDenoiser(Denoiser):
    """D(x) = x / (1 + λ): the prox of (λ/2)‖x‖², a linear denoiser with a closed-form PnP fixed point."""

    def __init__(self, lam: float) -> None:
        super().__init__()
        self.lam = lam

    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor = 0.0, **kwargs) -> torch.Tensor:
        return x / (1.0 + self.lam)


def small_image(size: int = 32, batch: int = 1, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Gray camera crops; batch elements are different crops of the same picture."""
    names = ["camera", "moon", "coins", "brick"]
    return torch.cat([load_image(names[i % 4], size=size, dtype=dtype) for i in range(batch)])


def solve_tiny(scheme, problem, model, guarantee, max_iter: int, tol: float, sigma: float = 0.05):
    """``scheme`` on the small ``problem`` with the prior ``model`` at ``sigma`` (a :class:`pnp.guarantees.Guarantee`
    declared for it), under a silent monitor."""
    monitor = ConvergenceMonitor(max_iter=max_iter, tol=tol, progress=False)
    return scheme.solve(problem, model, sigma=sigma, monitor=monitor, guarantee=guarantee, x_true=None)


def as_the_cli(entry: str, overrides: list[str], body: Callable[[DictConfig], T]) -> tuple[int, T | None, str]:
    """What ``python -m pnp.<entry> <overrides>`` ends with, in this process (a subprocess costs seconds of imports):
    :func:`pnp.cli.entry`'s composition check, ``<entry>.yaml`` composed, then ``body(cfg)`` (what the entry point's
    ``main`` does) under the same ``user_errors`` guard. (exit status, ``body``'s value or None, stderr)."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), user_errors():
            refuse_composition_mistakes(overrides, entry)
            value = body(composed(*overrides, config=entry))
    except SystemExit as stop:
        return stop.code, None, err.getvalue()
    except Exception as exc:  # a traceback at the command line: raised, with what it printed before
        exc.add_note(err.getvalue())
        raise
    return 0, value, err.getvalue()


def run_like_the_cli(overrides: list[str], run_dir: Path) -> tuple[str, str]:
    """('ok', the run's one-line summary) or ('user error' | 'bad: …', stderr): what ``python -m pnp.solve
    <overrides>`` would end with (:func:`as_the_cli`; ``pnp.solve.main``: tuned strengths, :func:`pnp.solve.solve`)."""

    def solved(cfg: DictConfig) -> dict:
        apply_tuned(cfg, overrides)
        return solve(cfg, run_dir)

    try:
        status, metrics, err = as_the_cli("solve", overrides, solved)
    except Exception as exc:
        return f"bad: {type(exc).__name__}: {str(exc)[:200]}", "".join(exc.__notes__)
    if status != 0:
        errors = [line for line in err.strip().splitlines() if line.startswith("error:")]
        if status == EXIT_USER_ERROR and len(errors) == 1:
            return "user error", err
        return f"bad: exit {status} with {len(errors)} error lines", err
    on_disk = json.loads((run_dir / "metrics.json").read_text())
    rows = on_disk.get("images", [on_disk])  # a folder's run: one row per image
    finite = all(math.isfinite(r[k]) for r in rows for k in ("psnr", "ssim", "final_rel_residual") if k in r)
    if not finite and (metrics["converged"] or not metrics["diverged"]):
        return "bad: non-finite metrics in a run not reported diverged", ""
    return "ok", summary(metrics)


def run_entry_point(function: Callable[[], None], argv: list[str]) -> tuple[int, str, str]:
    """A console script's function (``pnp.cli.solve``, …) called as pip's launcher calls it, with ``argv``, in this
    process (a subprocess costs seconds of imports): its exit status, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with (
        mock.patch.object(sys, "argv", argv),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
        warnings.catch_warnings(),
    ):
        warnings.filterwarnings("ignore", r"'pnp\.\w+' found in sys\.modules", RuntimeWarning)  # runpy: imported
        try:
            function()
            code = 0
        except SystemExit as stop:  # sys.exit(None) is success, sys.exit("message") failure, as for a process
            code = 0 if stop.code is None else stop.code if isinstance(stop.code, int) else 1
    return code, out.getvalue(), err.getvalue()
