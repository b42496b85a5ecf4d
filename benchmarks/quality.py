"""Reconstruction quality and convergence of every prior at its tuned default, on the test images.

    python benchmarks/quality.py [--problems a,b] [--priors a,b] [--max-iter 300] [--max-iter-agd 2000]
                                [--size N] [--count N] [--out DIR] [--update]

Problems (their configs in ``pnp/configs/problem``): Gaussian deblurring (σ_blur 1.6, noise 0.01) and motion deblurring
(31×31 kernel, noise 0.01) at 256², CT (90 angles, noise 0.01, FBP start) at 128², compressed sensing with 25 % dense
Gaussian measurements at 64² and with deepinv's single-pixel camera at 256². Every prior runs at the strength that
``python -m pnp.tune`` chose on the *validation* images (``pnp/configs/tuned/<problem>_<prior>.yaml``, see
``scripts/tune_defaults.sh``); the test images (camera, astronaut, coffee) run as one batch of PnP-PGD with
γ = 1/‖A‖² (or PnP-ADMM at its tuned penalty where the tuned file chose it), at most ``--max-iter`` iterations (or
the larger budget a prior's config sets: ``tv``, ``pnn``, ``lpn`` and ``euler_conditional`` 2000, ``wcrr`` 5000), tol
1e-5 on c_k (the explicit ridge priors: the scheme their config selects, monotone accelerated gradient on the same
objective f + R_σ/γ, at most ``--max-iter-agd`` iterations). Per row: PSNR and SSIM (means over the images), the images
whose c_k fell below tol (converged) and whose c_k never rose after iteration 20 (monotone), the mean iterations to tol,
the wall time of the batch, whether a convergence theorem covers the run (:mod:`pnp.guarantees`) and, for explicit
priors, whether the objective F(x_k) never increased.

Writes ``quality_<problem>.md`` / ``.csv`` (one table per problem, its priors run side by side in one process),
``quality_<problem>.png`` (c_k, PSNR and, for explicit priors, the objective gap of the first test image) and the
curves behind it (``quality_<problem>_curves.json``). ``--update`` re-measures only ``--priors`` and replaces their
rows and curves in the files already there (the table says which rows come from the later run).
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import torch
from common import RESULTS, held_out_images, machine, write_table
from hydra.utils import instantiate

from pnp.config import composed, tuned_denoiser
from pnp.monitor import ConvergenceMonitor
from pnp.outputs import MONOTONE_AFTER, MONOTONE_SLACK, RunSummary
from pnp.plotting import plot_curves
from pnp.problems import Problem, initialise
from pnp.tensors import batch_psnr

PROBLEMS = {"deblur": 256, "deblur_motion": 256, "ct": 128, "cs": 64, "cs_spc": 256}
PRIORS = (
    "tv",
    "wavelet",
    "crr",
    "wcrr",
    "pnn",
    "gs_dncnn",
    "euler",
    "euler_conditional",
    "fne_dncnn",
    "lpn",
    "dncnn",
    "dncnn_conditional",
)
TOL = 1e-5


def build(name: str, size: int | None, count: int | None) -> Problem:
    """The problem config ``name`` (``cs_spc``: ``cs`` with the single-pixel camera) on the test images."""
    overrides = ["+problem=cs", "problem.operator=spc"] if name == "cs_spc" else [f"+problem={name}"]
    cfg = composed(*overrides)
    images, _ = held_out_images(size or PROBLEMS[name], count, "test")
    return instantiate(cfg.problem, x=images, seed=0)


def run(
    problem: Problem, tuned_as: str, prior: str, max_iter: dict[str, int], config_budget: bool = True
) -> tuple[dict, dict]:
    """One prior at its tuned strength and configured scheme: the table row and the first image's curves."""
    den, sigma, guarantee, label, scheme, budget, start = tuned_denoiser(prior, tuned_as, torch.device("cpu"))
    x0 = problem.x0 if start is None else initialise(start, problem.y, problem.physics, problem.x_true)
    name = type(scheme).__name__
    limit = max(max_iter[name], budget) if config_budget else max_iter[name]
    monitor = ConvergenceMonitor(max_iter=limit, tol=TOL, progress=False)
    start = time.perf_counter()
    result = scheme.solve(problem, den, x0=x0, sigma=sigma, monitor=monitor, guarantee=guarantee)
    seconds = time.perf_counter() - start
    h, s = result.history, RunSummary.of(problem, result)  # the summary metrics.json reports
    row = {
        "prior": prior,
        "strength": label,
        "scheme": name,
        "psnr": sum(s.psnr) / len(s.psnr),
        "ssim": sum(s.ssim) / len(s.ssim),
        "converged": s.count(s.converged),
        "monotone": s.count(s.residual_monotone),
        "iters_to_tol": s.mean_iterations(),
        "time_s": seconds,
        "covered": result.verdict.covered,
        "F_monotone": s.count(s.objective_monotone),
        "measured": time.strftime("%Y-%m-%d"),
    }
    curve = {
        "iter": list(range(1, h.iterations + 1)),
        "rel_residual": h.rel_residual[:, 0].tolist(),
        "psnr": h.psnr[:, 0].tolist(),
        "objective": None if h.objective is None else h.objective[:, 0].tolist(),
    }
    return row, curve


def number(value: str) -> float | str:
    """A csv cell as the float it was written from, else as it is ("3/3", "-", "True")."""
    try:
        return float(value)
    except ValueError:
        return value


def merged(path: Path, rows: list[dict], curves: dict, update: bool) -> tuple[list[dict], dict | None, str]:
    """With ``update``: the rows of ``path``.csv with those of the priors in ``rows`` replaced, in :data:`PRIORS`
    order, the curves likewise (None where the earlier run saved none: its figure stays), and a note saying so;
    else ``rows`` and ``curves``."""
    if not update:
        return rows, curves, ""
    with path.with_suffix(".csv").open() as f:
        old = {r["prior"]: {k: number(v) for k, v in r.items()} for r in csv.DictReader(f)}
    new = {r["prior"]: r for r in rows}
    order = [p for p in PRIORS if p in old or p in new]
    note = (
        " Rows are re-measured by later runs of this script (--update replaces only the priors it runs); "
        "`measured` gives each row's date."
    )
    rows = [new.get(p) or old[p] for p in order]
    if not curves_file(path).is_file():
        note += (
            " The figure is that of the last full run (which saved no curves): priors re-measured since show "
            "their earlier curves there, or none."
        )
        return rows, None, note
    old_curves = json.loads(curves_file(path).read_text())
    return rows, {p: curves.get(p) or old_curves[p] for p in order}, note


def curves_file(path: Path) -> Path:
    """``quality_<problem>_curves.json`` beside the table ``path`` (no suffix)."""
    return path.with_name(path.name + "_curves.json")


def larger_budgets(max_iter: dict[str, int]) -> str:
    """``tv 2000, pnn 2000, wcrr 5000``: the table's priors whose config sets more iterations than ``max_iter`` gives
    their scheme (by class name)."""
    budgets = {}
    for prior in PRIORS:
        cfg = composed(f"denoiser={prior}")
        if cfg.monitor.max_iter > max_iter[cfg.scheme._target_.rsplit(".", 1)[-1]]:
            budgets[prior] = cfg.monitor.max_iter
    return ", ".join(f"{p} {b}" for p, b in budgets.items()) or "none"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", default=",".join(PROBLEMS))
    parser.add_argument("--priors", default=",".join(PRIORS))
    parser.add_argument("--max-iter", type=int, default=300, help="PnP-PGD iterations")
    parser.add_argument("--max-iter-agd", type=int, default=2000, help="accelerated gradient (explicit priors)")
    parser.add_argument(
        "--no-config-budget", action="store_true", help="stop every prior at --max-iter, whatever its config sets"
    )
    parser.add_argument("--size", type=int, help="image side for every problem (default: each problem's own)")
    parser.add_argument("--count", type=int, help="use only the first N test images")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--update", action="store_true", help="replace only these priors' rows in the tables there")
    args = parser.parse_args()
    problems, priors = args.problems.split(","), args.priors.split(",")
    unknown = sorted(set(problems) - set(PROBLEMS)) + sorted(set(priors) - set(PRIORS))
    if unknown:
        parser.error(f"unknown problem or prior: {', '.join(unknown)}")
    args.out.mkdir(parents=True, exist_ok=True)
    limits = {"PGD": args.max_iter, "ADMM": args.max_iter, "AGD": args.max_iter_agd}
    budgets = "ignored" if args.no_config_budget else larger_budgets(limits)  # composed once, not per problem
    for name in problems:
        problem = build(name, args.size, args.count)
        tuned_as = "cs" if name == "cs_spc" else name
        start = float(batch_psnr(problem.x0.clamp(0, 1), problem.x_true).mean())
        rows, curves = [], {}
        for prior in priors:
            row, curves[prior] = run(
                problem,
                tuned_as,
                prior,
                limits,
                not args.no_config_budget,
            )
            rows.append({"problem": name, **row})
            print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in rows[-1].items()))
        path = args.out / f"quality_{name}"
        rows, curves, note = merged(path, rows, curves, args.update)
        if curves is not None:
            curves_file(path).write_text(json.dumps(curves))
            plot_curves(path.with_suffix(".png"), curves, title=f"{name}: tuned strengths, camera")
        write_table(
            path,
            rows,
            f"{name}: every prior at its tuned strength on the test images",
            f"Test images camera, astronaut, coffee (never trained on, never tuned on): {problem.x_true.shape[0]} "
            f"images of {problem.x_true.shape[-1]}², start {start:.2f} dB; strengths tuned on the validation images "
            f"by pnp.tune. Scheme: PnP-PGD (γ = 1/L, at most {args.max_iter} iterations, or the larger budget of a "
            f"prior's config: {budgets}) or, where the "
            f"tuner chose it, "
            f"PnP-ADMM at its tuned penalty γL (as many iterations), for the explicit ridge priors accelerated "
            f"gradient on the same objective (at most {args.max_iter_agd}). converged: c_k < "
            f"{TOL:g} from some iteration to the end (iters_to_tol: that iteration; the summary metrics.json "
            f"reports); monotone: c_k never rose (relative slack {MONOTONE_SLACK:g}) after iteration "
            f"{MONOTONE_AFTER}; covered: a convergence theorem covers the run; F_monotone: images whose objective "
            f"never rose (explicit priors). Machine: {machine()}.{note}",
        )
        print(f"wrote {args.out / f'quality_{name}'}.md")


if __name__ == "__main__":
    main()
