"""Speed of ``pnp``'s schemes against a bare torch loop and deepinv, in one process, on the same work.

    python benchmarks/speed.py [--device auto|cpu|cuda] [--quick] [--out DIR]

Work: PnP-PGD and PnP-ADMM on Gaussian deblurring (deepinv ``BlurFFT``, σ_blur 1.6, noise 0.01), gray images of
256² and 512², batch 1 and 8, with a DnCNN-size denoiser (17 layers, 64 channels) and a small one (4 layers,
16 channels) that makes per-iteration overhead visible. Contenders, same physics, denoiser, γ and iterations:

    pnp        pnp's scheme with the monitor on (c_k, PSNR, f(x_k), timings; host reads every 10 iterations)
    bare       x ← D(x − γ Aᵀ(Ax − y)) (PGD) or the three ADMM updates, nothing else: the floor
    deepinv    deepinv.optim.PGD / ADMM with metrics on (PSNR, residual against x_gt)
    deepinv0   the same with ``compute_metrics=False``

Per-iteration time is the median over repeats of (run time / iterations), after a warm-up run, with CUDA
synchronisation around each timed run; the repeats of the four contenders are interleaved. Also: time to the
first iteration (a 1-iteration run), peak memory
(``torch.cuda.max_memory_allocated`` on CUDA, peak RSS on CPU, reset per contender), and a check that every
contender ends at the same iterate. Writes ``speed[_<device>].md`` and ``.csv`` under ``benchmarks/results/``.
On a 2-core CPU the DnCNN-size denoiser costs ~2 s per 256² image and iteration, so the CPU grid runs it only at
256², batch 1 (``--full-cpu`` runs every case).
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import deepinv as dinv
import torch
from common import RESULTS, machine, write_table
from deepinv.optim.data_fidelity import L2

from pnp.denoisers import DnCNN
from pnp.monitor import ConvergenceMonitor
from pnp.problems import Problem, deblur
from pnp.runtime import resolve_device
from pnp.schemes import ADMM, PGD

SIGMA = 0.03  # denoiser strength passed to every contender (the DnCNNs here are blind)
ARCHITECTURES = {"dncnn-17x64": (17, 64), "small-4x16": (4, 16)}


@dataclass(frozen=True)
class Case:
    scheme: str
    size: int
    batch: int
    denoiser: str

    @property
    def label(self) -> str:
        return f"{self.scheme} {self.size}² b{self.batch} {self.denoiser}"


def cases(device: torch.device, full_cpu: bool, quick: bool) -> list[Case]:
    if quick:
        return [Case(s, 64, 2, "small-4x16") for s in ("pgd", "admm")]
    grid = [Case(s, n, b, d) for s in ("pgd", "admm") for n in (256, 512) for b in (1, 8) for d in ARCHITECTURES]
    if device.type == "cpu" and not full_cpu:
        grid = [c for c in grid if c.denoiser == "small-4x16" or (c.size, c.batch) == (256, 1)]
    return grid


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        with contextlib.suppress(OSError):  # Linux: "5" resets the peak resident set size (VmHWM)
            Path("/proc/self/clear_refs").write_text("5")


def peak_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmHWM"))
        return int(line.split()[1]) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- the contenders: each maps (problem, denoiser, γ, iterations) to the final iterate ----------------------------
def run_pnp(scheme: str) -> Callable:
    def go(p: Problem, den, gamma: float, n: int) -> torch.Tensor:
        monitor = ConvergenceMonitor(max_iter=n, tol=1e-30, progress=False)
        cls = PGD if scheme == "pgd" else ADMM
        result = cls(stepsize=gamma).run(
            p.y, p.physics, den, p.x0, sigma=SIGMA, norm=p.norm, monitor=monitor, x_true=p.x_true
        )
        return result.x

    return go


def run_bare(scheme: str) -> Callable:
    def go(p: Problem, den, gamma: float, n: int) -> torch.Tensor:
        fidelity, physics, y = L2(), p.physics, p.y
        with torch.inference_mode():
            if scheme == "pgd":
                x = p.x0
                for _ in range(n):
                    x = den(x - gamma * physics.A_adjoint(physics.A(x) - y), SIGMA)
                return x.clone()
            z, u = p.x0, torch.zeros_like(p.x0)
            for _ in range(n):
                x = fidelity.prox(z - u, y, physics, gamma=gamma)
                z = den(x + u, SIGMA)
                u = u + x - z
            return z.clone()

    return go


def run_deepinv(scheme: str, metrics: bool) -> Callable:
    def go(p: Problem, den, gamma: float, n: int) -> torch.Tensor:
        cls = dinv.optim.PGD if scheme == "pgd" else dinv.optim.ADMM
        model = cls(
            data_fidelity=L2(),
            prior=dinv.optim.PnP(den),
            stepsize=gamma,
            sigma_denoiser=SIGMA,
            max_iter=n,
            early_stop=False,
        )
        init = p.x0 if scheme == "pgd" else (p.x0, torch.zeros_like(p.x0))
        with torch.no_grad():
            out = model(p.y, p.physics, x_gt=p.x_true if metrics else None, init=init, compute_metrics=metrics)
        return out[0] if metrics else out

    return go


def contenders(scheme: str) -> dict[str, Callable]:
    return {
        "pnp": run_pnp(scheme),
        "bare": run_bare(scheme),
        "deepinv": run_deepinv(scheme, True),
        "deepinv0": run_deepinv(scheme, False),
    }


def timed(fn: Callable, p: Problem, den, gamma: float, n: int, device: torch.device) -> tuple[float, torch.Tensor]:
    sync(device)
    start = time.perf_counter()
    x = fn(p, den, gamma, n)
    sync(device)
    return time.perf_counter() - start, x


def prepare(fn: Callable, p: Problem, den, gamma: float, n: int, device: torch.device) -> tuple[dict, torch.Tensor]:
    """Warm-up, time to the first iteration, and peak memory of an n-iteration run; its final iterate."""
    fn(p, den, gamma, 1)  # warm-up (cuDNN autotuning, allocator, lazy deepinv buffers)
    first, _ = timed(fn, p, den, gamma, 1, device)
    reset_peak(device)
    _, x = timed(fn, p, den, gamma, n, device)
    return {"first_iter_ms": 1e3 * first, "peak_mib": peak_mib(device)}, x


def per_iteration(runs: dict[str, Callable], p: Problem, den, gamma: float, n: int, repeats: int, device) -> dict:
    """Median seconds per iteration of each contender; the repeats are interleaved (in rotating order) so that
    drifts of the machine (clock, other load) affect every contender alike."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            times[name].append(timed(runs[name], p, den, gamma, n, device)[0] / n)
    return {name: statistics.median(t) for name, t in times.items()}


def iterations(case: Case, device: torch.device, quick: bool) -> tuple[int, int]:
    """(iterations per timed run, repeats): on CPU fewer iterations for bigger work, so each case takes seconds."""
    if quick:
        return 5, 2
    if device.type == "cuda":
        return 50, 5
    if case.denoiser == "dncnn-17x64":
        return 3, 3
    pixels = case.batch * case.size**2
    return max(3, min(20, round(20 * (256**2 / pixels) ** 0.5))), 7


def bench_case(case: Case, device: torch.device, quick: bool) -> list[dict]:
    torch.manual_seed(0)
    depth, width = ARCHITECTURES[case.denoiser]
    den = DnCNN(depth=depth, width=width).to(device).eval()
    x = torch.rand(case.batch, 1, case.size, case.size, generator=torch.Generator().manual_seed(0)).to(device)
    problem = deblur(x, seed=0)
    gamma = 1.0 / problem.norm**2
    n, repeats = iterations(case, device, quick)
    runs = contenders(case.scheme)
    rows, finals = [], {}
    for name, fn in runs.items():
        stats, finals[name] = prepare(fn, problem, den, gamma, n, device)
        rows.append({"case": case.label, "contender": name, "per_iter_ms": 0.0, **stats})
    medians = per_iteration(runs, problem, den, gamma, n, repeats, device)
    for row in rows:
        row["per_iter_ms"] = 1e3 * medians[row["contender"]]
    ref = finals["bare"]
    for row, name in zip(rows, finals, strict=True):
        row["max_rel_diff_vs_bare"] = float((finals[name] - ref).norm() / ref.norm())
    times = {r["contender"]: r["per_iter_ms"] for r in rows}
    for row in rows:
        row["vs_bare"] = row["per_iter_ms"] / times["bare"]
        row["vs_deepinv"] = row["per_iter_ms"] / times["deepinv"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true", help="tiny cases (a smoke test), written as speed_quick")
    parser.add_argument("--full-cpu", action="store_true", help="every case on CPU too (slow)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    device = resolve_device(args.device)
    rows = []
    for case in cases(device, args.full_cpu, args.quick):
        rows += bench_case(case, device, args.quick)
        pnp_row = rows[-4]
        print(
            f"{case.label}: pnp {pnp_row['per_iter_ms']:.2f} ms/it, pnp/bare {pnp_row['vs_bare']:.3f}, "
            f"pnp/deepinv {pnp_row['vs_deepinv']:.3f}",
            flush=True,
        )
    name = "speed_quick" if args.quick else f"speed_{device.type}"
    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    notes = (
        f"{hardware}; {machine()}; deepinv {dinv.__version__}. Per-iteration time: median over repeats after a "
        "warm-up; vs_bare and vs_deepinv are ratios of per-iteration times; max_rel_diff_vs_bare: "
        "‖x − x_bare‖/‖x_bare‖ after the timed iterations (every contender computes the same iterates)."
    )
    args.out.mkdir(parents=True, exist_ok=True)
    write_table(args.out / name, rows, f"Speed: pnp vs a bare loop vs deepinv ({device.type})", notes)
    print(f"wrote {args.out / name}.md")


if __name__ == "__main__":
    main()
