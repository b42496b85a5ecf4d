"""Solve one inverse problem with a PnP scheme: ``python -m pnp.solve +problem=deblur [overrides]``.

Writes metrics.json, history.csv, reconstruction.png and convergence.png into Hydra's run directory and prints a
one-line summary. Bad input ends with one ``error:`` line and exit status 2; a diverged run writes its outputs,
says so and exits with status 3 (in a ``-m`` sweep the other runs go on and the run is marked diverged).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from pnp.cli import EXIT_DIVERGED, entry, failed_in_sweep, log, user_errors
from pnp.config import apply_tuned, build_denoiser, build_problem, check_keys, denoiser_sigma, guarantee_of, label
from pnp.outputs import write_run
from pnp.runtime import resolve_device, resolve_dtype, seed_everything


def solve(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Build everything from ``cfg``, run the scheme and write the outputs into ``run_dir``."""
    check_keys(cfg)
    device, dtype = resolve_device(cfg.device), resolve_dtype(cfg.dtype)
    seed_everything(cfg.seed, device)
    problem = build_problem(cfg, device, dtype)
    denoiser = build_denoiser(cfg, device, dtype)
    scheme, fidelity, monitor = instantiate(cfg.scheme), instantiate(cfg.fidelity), instantiate(cfg.monitor)
    start = time.perf_counter()
    result = scheme.run(
        problem.y,
        problem.physics,
        denoiser,
        denoiser_sigma(cfg),
        problem.x0,
        norm=problem.norm,
        fidelity=fidelity,
        monitor=monitor,
        x_true=problem.x_true,
        guarantee=guarantee_of(cfg),
    )
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    extra = {
        "wall_time_s": wall,
        "device": str(device),
        "label": label(cfg),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    return write_run(run_dir, problem, result, extra, title=label(cfg), plots=cfg.plots)


def summary(m: dict[str, Any]) -> str:
    state = "converged" if m["converged"] else "not converged"
    its = f"{m['iterations']} it"
    if m["diverged"]:
        state = "STAGNATED" if m.get("stagnated") else "DIVERGED"
        if m["returned_iteration"] != [m["iterations"]] * len(m["returned_iteration"]):
            its = f"{m['iterations']} it, result: iterate {'/'.join(map(str, m['returned_iteration']))}"
    init = f"{m['psnr_init']:.2f}"
    g = m.get("guarantee")
    covered = "guarantee: none" if not g or not g["covered"] else f"guarantee: {g['theorem']}"
    objective = ""
    if "objective_monotone" in m:  # an explicit prior: say whether F(x_k) ever rose
        objective = ", F(x_k) never increased" if m["objective_monotone"] else ", F(x_k) INCREASED"
    return (
        f"{m['label']}: PSNR {init} -> {m['psnr']:.2f} dB, SSIM {m['ssim']:.3f}, {its}, "
        f"{state} (c_k={m['final_rel_residual']:.2e}){objective}, {m['wall_time_s']:.1f} s on {m['device']}; "
        f"{covered}"
    )


@hydra.main(version_base="1.3", config_path="configs", config_name="solve")
def main(cfg: DictConfig) -> None:
    hc = HydraConfig.get()
    with user_errors():
        apply_tuned(cfg, hc.overrides.task)
        m = solve(cfg, Path(hc.runtime.output_dir))
    log.info(summary(m))
    if m["diverged"]:
        log.warning(f"the run {m['message']}")
        if hc.mode != RunMode.MULTIRUN:
            sys.exit(EXIT_DIVERGED)
        if cfg.sweep_fails_on_divergence:
            failed_in_sweep(" ".join(hc.overrides.task), m["message"])


if __name__ == "__main__":
    entry(main, "solve", added=("problem",))
