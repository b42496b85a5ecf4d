"""Reconstruction quality and convergence of every prior on every problem, on the held-out images.

    python benchmarks/quality.py [--quick] [--problems a,b] [--priors a,b] [--max-iter 300] [--size N] [--out DIR]

Problems: Gaussian deblurring (σ_blur 1.6, noise 0.01) and motion deblurring (noise 0.01) at 128², CT (90 angles,
noise 0.01) at 128², compressed sensing with 25 % dense Gaussian measurements at 64² and with deepinv's structured
single-pixel camera at 256². Priors: tv, wavelet, bm3d (if installed), dncnn, fne_dncnn, euler, lpn, each with and
without the (random) equivariant wrapper; schemes PGD everywhere and ADMM where its data step is cheap (closed form
for deblurring and the single-pixel camera, CG on the small dense CS; not CT, where every ADMM step would be a CG
solve with the Radon transform). Strengths are the defaults of ``configs/denoiser/*.yaml`` (not tuned per problem).
All held-out images of a problem run as one batch; per image: PSNR, SSIM, iterations to c_k < tol, converged,
c_k monotone after the first 10 iterations; wall time is per batch.

Writes ``quality.md`` / ``quality.csv`` and ``quality_<problem>.png`` (c_k and PSNR of the first image against the
iteration, PGD without equivariance, every prior); ``--quick`` writes ``quality_quick*`` (two images at 64², 30
iterations, PGD only, no BM3D: a smoke run of a few minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from common import (
    CLASSICAL,
    LEARNED,
    RESULTS,
    bm3d_available,
    denoiser,
    held_out_images,
    machine,
    run_and_summarise,
    write_table,
)

from pnp.denoisers import EquivariantDenoiser
from pnp.monitor import batch_psnr
from pnp.plotting import plot_curves
from pnp.problems import Problem, cs, ct, deblur
from pnp.schemes import ADMM, PGD


@dataclass(frozen=True)
class Setting:
    """A problem on the held-out images at ``size``; ``admm``: whether ADMM's data step is cheap here."""

    build: Callable[[torch.Tensor, int], Problem]
    size: int
    admm: bool
    description: str


PROBLEMS = {
    "deblur_gaussian": Setting(
        lambda x, s: deblur(x, seed=s, kernel="gaussian", blur_sigma=1.6), 128, True, "Gaussian blur σ 1.6, noise 0.01"
    ),
    "deblur_motion": Setting(lambda x, s: deblur(x, seed=s, kernel="motion"), 128, True, "motion blur, noise 0.01"),
    "ct": Setting(lambda x, s: ct(x, seed=s), 128, False, "CT, 90 angles, noise 0.01, FBP start"),
    "cs_dense": Setting(lambda x, s: cs(x, seed=s, operator="dense"), 64, True, "CS 25 % dense Gaussian"),
    "cs_spc": Setting(lambda x, s: cs(x, seed=s, operator="spc"), 256, True, "CS 25 % single-pixel camera"),
}
PRIORS = (*CLASSICAL, *LEARNED)
TOL = 1e-5


class Priors:
    """Denoisers by name; learned networks are loaded once, classical ones are rebuilt per run (TV keeps a warm
    start between calls, which must not leak from one problem to the next)."""

    def __init__(self) -> None:
        self.cache: dict[str, tuple] = {}

    def get(self, name: str, equivariant: bool):
        if name in LEARNED:
            den, sigma = self.cache.setdefault(name, denoiser(name))
        else:
            den, sigma = denoiser(name)
        return (EquivariantDenoiser(den, "random", seed=0) if equivariant else den), sigma


def runs(setting: Setting, priors: list[str], quick: bool) -> list[tuple[str, str, bool]]:
    schemes = ["pgd"] + (["admm"] if setting.admm and not quick else [])
    variants = [(p, s, eq) for p in priors for s in schemes for eq in (False, True)]
    # BM3D (~0.3 s per 128² image and call on a CPU) runs once per problem: PGD, no wrapper
    return [(p, s, eq) for p, s, eq in variants if p != "bm3d" or (s == "pgd" and not eq)]


def benchmark(name: str, priors: list[str], count: int | None, size: int | None, max_iter: int, quick: bool):
    setting = PROBLEMS[name]
    images, _ = held_out_images(size or setting.size, count)
    problem = setting.build(images, 0)
    rows, curves, cache = [], {}, Priors()
    for prior, scheme, eq in runs(setting, priors, quick):
        den, sigma = cache.get(prior, eq)
        summary, curve = run_and_summarise(problem, PGD() if scheme == "pgd" else ADMM(), den, sigma, max_iter, TOL)
        rows.append({"problem": name, "prior": prior, "equivariant": eq, "scheme": scheme} | summary)
        print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in rows[-1].items()), flush=True)
        if scheme == "pgd" and not eq:
            curves[prior] = curve
    init_psnr = float(batch_psnr(problem.x0.clamp(0, 1), problem.x_true).mean())
    return rows, curves, init_psnr, problem.x_true.shape


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 images at 64², 30 iterations, PGD only, no BM3D")
    parser.add_argument("--problems", default=",".join(PROBLEMS))
    parser.add_argument("--priors", default=",".join(PRIORS))
    parser.add_argument("--max-iter", type=int, default=300)
    parser.add_argument("--size", type=int, help="image side for every problem (default: each problem's own)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    problems, priors = args.problems.split(","), args.priors.split(",")
    unknown = sorted(set(problems) - set(PROBLEMS)) + sorted(set(priors) - set(PRIORS))
    if unknown:
        parser.error(f"unknown problem or prior: {', '.join(unknown)}")
    if not bm3d_available() or args.quick:
        priors = [p for p in priors if p != "bm3d"]
    count, size, max_iter = (2, 64, 30) if args.quick else (None, args.size, args.max_iter)
    stem = "quality_quick" if args.quick else "quality"
    args.out.mkdir(parents=True, exist_ok=True)
    rows, inits = [], []
    for name in problems:
        problem_rows, curves, init_psnr, shape = benchmark(name, priors, count, size, max_iter, args.quick)
        rows += problem_rows
        what = PROBLEMS[name].description
        inits.append(f"{name} ({what}, {shape[0]} images of {shape[-1]}², start {init_psnr:.2f} dB)")
        plot_curves(args.out / f"{stem}_{name}.png", curves, title=f"{what}: PnP-PGD, first image")
        notes = (
            f"Held-out images (never trained on), means over images; converged/monotone count images (c_k < {TOL:g} "
            f"within {max_iter} iterations; c_k non-increasing after iteration 10); iters_to_tol averages the "
            f"converged images; time_s is the whole batch. γ = 1/‖A‖² (PGD and ADMM). Priors: {', '.join(priors)}. "
            f"Problems: {'; '.join(inits)}. Machine: {machine()}."
        )
        write_table(args.out / stem, rows, "PnP quality and convergence across problems and priors", notes)  # so far
    print(f"wrote {args.out / stem}.md")


if __name__ == "__main__":
    main()
