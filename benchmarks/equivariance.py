"""The unconstrained DnCNN at an aggressive step, with and without the equivariant wrapper, next to fne_dncnn.

    python benchmarks/equivariance.py [--size 128] [--max-iter 300] [--step-factor 1.99] [--quick]

PnP-PGD deblurring of camera (Gaussian blur 1.6, noise 0.01) with γ = step_factor/‖A‖²: the setting where DnCNN's
iterates keep moving. Writes benchmarks/results/pnp_equivariance.{md,csv} and its convergence figure.
"""

from __future__ import annotations

import argparse

from common import RESULTS, denoiser, machine, run_and_summarise, write_table

from pnp.denoisers import EquivariantDenoiser
from pnp.images import load_image
from pnp.plotting import plot_curves
from pnp.problems import deblur
from pnp.schemes import PGD


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--max-iter", type=int, default=300)
    parser.add_argument("--tol", type=float, default=1e-5)
    parser.add_argument("--step-factor", type=float, default=1.99, help="γ·‖A‖²")
    parser.add_argument("--quick", action="store_true", help="64×64, 20 iterations")
    args = parser.parse_args()
    size, max_iter = (64, 20) if args.quick else (args.size, args.max_iter)
    problem = deblur(load_image("camera", size=size), seed=0)
    base, sigma = denoiser("dncnn")
    variants = {
        "dncnn": base,
        "dncnn + equivariant (random)": EquivariantDenoiser(base, "random", seed=0),
        "dncnn + equivariant (average)": EquivariantDenoiser(base, "average"),
        "fne_dncnn": denoiser("fne_dncnn")[0],
    }
    rows, curves = [], {}
    for label, den in variants.items():
        summary, curves[label] = run_and_summarise(
            problem, PGD(step_factor=args.step_factor), den, sigma, max_iter, args.tol
        )
        rows.append({"denoiser": label, **summary})
        print(rows[-1], flush=True)
    suffix = "_quick" if args.quick else ""
    notes = (
        f"PnP-PGD deblurring of camera {size}² (Gaussian blur 1.6, noise 0.01) with γ = {args.step_factor}/‖A‖², "
        f"max {max_iter} iterations, tol {args.tol:g}. Machine: {machine()}."
    )
    write_table(RESULTS / f"pnp_equivariance{suffix}", rows, "Unconstrained DnCNN and the equivariant wrapper", notes)
    plot_curves(
        RESULTS / f"pnp_equivariance_convergence{suffix}.png",
        curves,
        title=f"PnP-PGD, γ = {args.step_factor}/L: DnCNN with and without equivariance",
    )


if __name__ == "__main__":
    main()
