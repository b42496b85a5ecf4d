"""PnP with every denoiser: deblurring quality and convergence on the held-out images, convergence on CT, and the
unconstrained DnCNN with and without the equivariant wrapper.

    python benchmarks/pnp_convergence.py [--size 128] [--max-iter 300] [--quick]

Writes benchmarks/results/pnp_{deblur,ct,equivariance}.{md,csv} and one convergence figure per experiment
(c_k and PSNR against the iteration).
"""

from __future__ import annotations

import argparse
import time

from common import LEARNED, RESULTS, denoiser, held_out_images, machine, write_table

from pnp.denoisers import EquivariantDenoiser
from pnp.images import load_image
from pnp.monitor import ConvergenceMonitor, History
from pnp.outputs import metrics, psnr
from pnp.plotting import plot_curves
from pnp.problems import Problem, ct, deblur
from pnp.schemes import ADMM, PGD, Scheme


def monotone_after(history: History, start: int = 10) -> bool:
    """c_k non-increasing (to 1e-6 relative) from iteration ``start`` on, for every batch element."""
    c = history.rel_residual[start:]
    return bool((c[1:] <= c[:-1] * (1 + 1e-6)).all()) if c.shape[0] > 1 else True


def run(problem: Problem, den, sigma: float, scheme: Scheme, max_iter: int, tol: float) -> tuple[dict, dict]:
    monitor = ConvergenceMonitor(max_iter=max_iter, tol=tol, progress=False)
    start = time.perf_counter()
    result = scheme.run(
        problem.y, problem.physics, den, sigma, problem.x0, norm=problem.norm, monitor=monitor, x_true=problem.x_true
    )
    m = metrics(problem, result)
    h = result.history
    row = {
        "psnr": m["psnr"],
        "ssim": m["ssim"],
        "iterations": m["iterations"],
        "converged": m["converged"],
        "diverged": m["diverged"],
        "monotone_after_10": monotone_after(h),
        "final_c_k": m["final_rel_residual"],
        "time_s": time.perf_counter() - start,
    }
    curve = {
        "iter": list(range(1, h.iterations + 1)),
        "rel_residual": h.rel_residual[:, 0].tolist(),
        "psnr": h.psnr[:, 0].tolist(),
    }
    return row, curve


def mean_row(rows: list[dict]) -> dict:
    return {
        "psnr": sum(r["psnr"] for r in rows) / len(rows),
        "ssim": sum(r["ssim"] for r in rows) / len(rows),
        "iterations": sum(r["iterations"] for r in rows) / len(rows),
        "converged": f"{sum(r['converged'] for r in rows)}/{len(rows)}",
        "monotone_after_10": f"{sum(r['monotone_after_10'] for r in rows)}/{len(rows)}",
        "diverged": f"{sum(r['diverged'] for r in rows)}/{len(rows)}",
        "final_c_k": max(r["final_c_k"] for r in rows),
        "time_s": sum(r["time_s"] for r in rows) / len(rows),
    }


def deblurring(size: int, count: int | None, max_iter: int, tol: float, suffix: str) -> None:
    images, names = held_out_images(size, count)
    problems = [deblur(images[i : i + 1], seed=i) for i in range(len(names))]
    rows, curves = [], {}
    for name in (*LEARNED, "tv", "wavelet"):
        den, sigma = denoiser(name)
        results = [run(p, den, sigma, PGD(), max_iter, tol) for p in problems]
        rows.append({"denoiser": name, **mean_row([r for r, _ in results])})
        curves[name] = results[0][1]
        print("deblur", rows[-1])
    notes = (
        f"PnP-PGD, γ = 1/‖A‖², Gaussian blur σ_blur = 1.6, noise 0.01, held-out images {', '.join(names)} at "
        f"{size}×{size} (means; converged/monotone count images), max {max_iter} iterations, tol {tol:g} on "
        f"c_k. Observation PSNR {sum(psnr(p.y, p.x_true) for p in problems) / len(problems):.2f} dB. "
        f"BM3D is left out (≈2 s per call makes 300 iterations × 5 images too long on a CPU). "
        f"Machine: {machine()}."
    )
    write_table(RESULTS / f"pnp_deblur{suffix}", rows, "PnP-PGD deblurring", notes)
    plot_curves(
        RESULTS / f"pnp_deblur_convergence{suffix}.png", curves, title=f"PnP-PGD deblurring, {names[0]} {size}²"
    )


def tomography(size: int, max_iter: int, tol: float, suffix: str) -> None:
    problem = ct(load_image("phantom", size=size), seed=0)
    runs = [(name, "pgd") for name in (*LEARNED, "tv")] + [("lpn", "admm")]
    rows, curves = [], {}
    for name, scheme in runs:
        den, sigma = denoiser(name)
        row, curve = run(problem, den, sigma, PGD() if scheme == "pgd" else ADMM(), max_iter, tol)
        rows.append({"denoiser": name, "scheme": scheme, **row})
        curves[f"{name} ({scheme})"] = curve
        print("ct", rows[-1])
    notes = (
        f"Shepp–Logan phantom {size}², 90 angles over 180°, noise 0.01 (operator normalised to ‖A‖ = 1), FBP "
        f"initialisation (PSNR {psnr(problem.x0, problem.x_true):.2f} dB), γ = 1/‖A‖², max "
        f"{max_iter} iterations, tol {tol:g}. Machine: {machine()}."
    )
    write_table(RESULTS / f"pnp_ct{suffix}", rows, "PnP on CT", notes)
    plot_curves(RESULTS / f"pnp_ct_convergence{suffix}.png", curves, title=f"PnP on CT, phantom {size}²")


def equivariance(size: int, max_iter: int, tol: float, step_factor: float, suffix: str) -> None:
    problem = deblur(load_image("camera", size=size), seed=0)
    base, sigma = denoiser("dncnn")
    fne, _ = denoiser("fne_dncnn")
    variants = {
        "dncnn": base,
        "dncnn + equivariant (random)": EquivariantDenoiser(base, "random", seed=0),
        "dncnn + equivariant (average)": EquivariantDenoiser(base, "average"),
        "fne_dncnn": fne,
    }
    rows, curves = [], {}
    for label, den in variants.items():
        row, curve = run(problem, den, sigma, PGD(step_factor=step_factor), max_iter, tol)
        rows.append({"denoiser": label, **row})
        curves[label] = curve
        print("equivariance", rows[-1])
    notes = (
        f"PnP-PGD deblurring of camera {size}² (Gaussian blur 1.6, noise 0.01) with γ = {step_factor}/‖A‖², "
        f"max {max_iter} iterations, tol {tol:g}. Machine: {machine()}."
    )
    write_table(RESULTS / f"pnp_equivariance{suffix}", rows, "Unconstrained DnCNN and the equivariant wrapper", notes)
    plot_curves(
        RESULTS / f"pnp_equivariance_convergence{suffix}.png",
        curves,
        title=f"PnP-PGD, γ = {step_factor}/L: DnCNN with and without equivariance",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--max-iter", type=int, default=300)
    parser.add_argument("--tol", type=float, default=1e-5)
    parser.add_argument("--step-factor", type=float, default=1.99, help="γ·‖A‖² of the equivariance experiment")
    parser.add_argument("--quick", action="store_true", help="one 64×64 image, 20 iterations")
    args = parser.parse_args()
    size, count, n = (64, 1, 20) if args.quick else (args.size, None, args.max_iter)
    suffix = "_quick" if args.quick else ""
    deblurring(size, count, n, args.tol, suffix)
    tomography(size, n, args.tol, suffix)
    equivariance(size, n, args.tol, args.step_factor, suffix)


if __name__ == "__main__":
    main()
