"""Train a denoiser: ``python -m pnp.train denoiser=<name> [recipe=<name>_gpu] [overrides]``.

Writes ``checkpoint.pt`` regularly (``resume=true`` continues from it), and at the end ``<denoiser>.pt`` with its
manifest ``<denoiser>.json`` (architecture, training config, data split, steps, wall time, device, validation PSNR,
measured Lipschitz values, sha256) into the run directory; ``ship=true`` copies both into ``pnp/weights/``.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from pnp import parallel, weights
from pnp.cli import entry, log, user_errors
from pnp.config import check_keys, choices
from pnp.data import PatchSampler, centre, make_split, training_images, validation_pairs
from pnp.errors import check
from pnp.lipschitz import jacobian_spectral_norm
from pnp.runtime import resolve_device, seed_everything
from pnp.tensors import batch_psnr

LIPSCHITZ_CROP = 64  # side of the crops where the manifest's Lipschitz values are measured


def validate(model: torch.nn.Module, clean: torch.Tensor, noisy: torch.Tensor, sigma: float) -> float:
    """Mean PSNR of D(noisy, σ) on the validation crops (blind models ignore σ)."""
    model.eval()
    with torch.no_grad():  # an LPN takes its own gradient inside forward
        out = torch.cat([model(noisy[i : i + 1], sigma) for i in range(noisy.shape[0])])
    model.train()
    return float(batch_psnr(out.clamp(0, 1), clean).mean())


def starting_weights(init_from: str) -> dict:
    """The state dict ``init_from`` names: shipped weights by name (``dncnn``), or a weights file of your own with its
    manifest beside it (a path: it ends in ``.pt`` or contains a ``/``, e.g. a previous run's output)."""
    is_path = init_from.endswith(".pt") or "/" in init_from
    return (weights.pretrained(path=init_from) if is_path else weights.pretrained(init_from)).state_dict()


def lipschitz_record(
    model: torch.nn.Module, clean: torch.Tensor, noisy: torch.Tensor, points: int, sigma: float
) -> dict:
    """Lip(D) and Lip(2D − Id) by Jacobian power iteration at 64² centre crops of the first validation images (clean
    and noisy), at the validation noise level σ (``pnp.certify`` does the full certificate)."""
    model.eval()
    at = centre(torch.cat([clean[:points], noisy[:points]]), LIPSCHITZ_CROP)
    d = jacobian_spectral_norm(lambda v: model(v, sigma), at, n_iter=50, tol=1e-4)
    q = jacobian_spectral_norm(lambda v: 2 * model(v, sigma) - v, at, n_iter=50, tol=1e-4)
    return {
        "lip_D_max": float(d.norm.max()),
        "lip_2D_minus_I_max": float(q.norm.max()),
        "points": int(at.shape[0]),
        "power_iterations": max(d.iterations, q.iterations),
    }


def random_state(sampler: PatchSampler) -> dict:
    """This process's random streams: its patches' and torch's global one (objectives draw from it, e.g. penalty
    points)."""
    return {"generator": sampler.generator.get_state(), "torch_rng": torch.get_rng_state()}


def checkpoint_state(step: int, model, opt, sched, streams: list[dict], history: list, best: dict | None) -> dict:
    return {
        "step": step,
        "best": best,  # select=best: the weights of the best validation PSNR so far, and their step
        "model": model.state_dict(),
        "optim": opt.state_dict(),
        "sched": sched.state_dict(),
        "random": streams,  # each process's random_state, in rank order: a resume needs as many processes
        "history": history,
    }


def own_keys(cfg: DictConfig) -> dict[str, Any]:
    """``cfg`` resolved, without the ``hydra`` node a config composed outside a Hydra run may carry."""
    return OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True)


def train(cfg: DictConfig, run_dir: Path) -> dict[str, Any] | None:
    """Train ``cfg.net`` with ``cfg.objective`` and write weights + manifest into ``run_dir``.

    Under ``torchrun --nproc_per_node=N`` (:mod:`pnp.parallel`) every process trains a replica on its own patches
    (seed + rank, ``data.batch`` each) with the gradients averaged over the processes; rank 0 validates, checkpoints,
    writes and returns the manifest, the others return None."""
    check_keys(cfg)
    check(cfg.select in ("last", "best"), f"select must be last or best, got {cfg.select!r}")
    check(cfg.steps >= 1, f"steps must be at least 1, got {cfg.steps}")
    ranks, device = parallel.join(resolve_device(cfg.device))
    seed_everything(cfg.seed + ranks.rank, device)  # rank 0 draws what a single process draws
    composed_from = choices(cfg)
    name = cfg.weights_name or composed_from.get("denoiser") or cfg.denoiser.name
    check(name.isidentifier(), f"weights_name must be a plain file name (letters, digits, _), got {name!r}")
    model = instantiate(cfg.net).to(device)
    if cfg.init_from:
        start = starting_weights(str(cfg.init_from))
        other = f"init_from={cfg.init_from} holds weights of another network"
        missing, unexpected = weights.load_state(model, start, other, strict=False)  # shapes are still checked
        check(not unexpected, f"init_from={cfg.init_from}: {', '.join(unexpected)} have no place in this network")
        if missing:  # e.g. a WCRR from the CRR: its concave spline and scale start from their initialisation
            log.info(f"init_from={cfg.init_from}: {', '.join(missing)} start from their initialisation")
    objective = instantiate(cfg.objective)
    split = make_split(cfg.data.root, cfg.data.n_validation)
    sampler = PatchSampler(
        training_images(split, cfg.data.scales, cfg.data.patch),
        cfg.data.patch,
        cfg.data.batch,
        cfg.data.sigma_min,
        cfg.data.sigma_max,
        cfg.seed + ranks.rank,
        device,
        cfg.data.get("log_uniform", False),
    )
    val_clean, val_noisy = validation_pairs(split, cfg.data.val_size, cfg.data.val_sigma, cfg.seed, device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.optim.lr)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [int(f * cfg.steps) for f in cfg.optim.milestones], 0.1)
    start, history, elapsed, best = 0, [], 0.0, None
    ckpt = run_dir / "checkpoint.pt"
    if cfg.resume:
        check(ckpt.is_file(), f"resume=true but there is no checkpoint at {ckpt}")
        state = torch.load(ckpt, map_location=device, weights_only=False)
        check(
            state["step"] <= cfg.steps,
            f"{ckpt} is at step {state['step']}, beyond steps={cfg.steps}: ask for at least as many steps",
        )
        weights.load_state(model, state["model"], f"resume=true: {ckpt} holds weights of another network")
        opt.load_state_dict(state["optim"])
        sched.load_state_dict(state["sched"])
        streams = state.get("random", [state])  # checkpoints before pnp.parallel: one process's, at the top
        count = len(streams)
        check(count == ranks.world, f"{ckpt} was written by {count} process(es): resume with as many (torchrun)")
        own = streams[ranks.rank]
        sampler.generator.set_state(own["generator"].cpu())
        if "torch_rng" in own:
            torch.set_rng_state(own["torch_rng"].cpu())
        start, history, elapsed = state["step"], state["history"], state.get("elapsed", 0.0)
        best = state.get("best")
    if ranks.distributed:
        parallel.broadcast(model)  # every replica starts from rank 0's weights and buffers
    model.train()
    t0 = time.perf_counter() - elapsed
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc=name, disable=not ranks.main)

    def validation(done: int, logs: dict) -> float:
        """Validate, record the step in ``history`` and, for select=best, keep the weights when they are the best."""
        nonlocal best
        psnr = validate(model, val_clean, val_noisy, cfg.data.val_sigma)
        logged = {key: float(value) for key, value in logs.items()}  # the one wait for the device per validation
        history.append({"step": done, "time_s": time.perf_counter() - t0, "val_psnr": psnr, **logged})
        bar.set_postfix({"val_psnr": f"{psnr:.2f}", **{key: f"{value:.4g}" for key, value in logged.items()}})
        if cfg.select == "best" and (best is None or psnr > best["val_psnr"]):
            best = {"step": done, "val_psnr": psnr, "model": copy.deepcopy(model.state_dict())}
        return psnr

    if ranks.main and not history and cfg.select == "best" and cfg.init_from:
        # the starting weights compete too: a fine-tune that only loses on the validation images ships nothing new
        validation(0, {})
    psnr = history[-1]["val_psnr"] if history else float("nan")
    for step in bar:
        clean, noisy, sigma = sampler()
        loss, logs = objective(model, clean, noisy, step, cfg.steps, sigma)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if ranks.distributed:  # before clipping, the step and the projections: every replica takes the same step
            parallel.average_gradients(model.parameters(), ranks.world)
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        opt.step()
        if hasattr(model, "clamp_weights"):
            model.clamp_weights()
        sched.step()
        done = step + 1
        if ranks.main and (done % cfg.val_every == 0 or done == cfg.steps):
            psnr = validation(done, logs)
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            streams = parallel.gather(random_state(sampler), ranks)
            if ranks.main:
                weights.save_atomic(
                    {
                        **checkpoint_state(done, model, opt, sched, streams, history, best),
                        "elapsed": time.perf_counter() - t0,
                    },
                    ckpt,
                )
    wall = time.perf_counter() - t0
    replicas = parallel.gather(parallel.digest(model), ranks) if ranks.distributed else []
    if len(set(replicas)) > 1:  # the replicas took the same steps, unless pnp.parallel has a bug
        raise RuntimeError(f"the {ranks.world} processes ended training with different weights")
    if not ranks.main:
        parallel.leave(ranks)
        return None
    selected = cfg.steps
    if best is not None:  # early stopping on the validation images (never on a test image)
        model.load_state_dict(best["model"])
        selected, psnr = best["step"], best["val_psnr"]
    record = {
        "name": name,
        "recipe": composed_from.get("recipe"),
        "trainer": composed_from.get("trainer"),
        "steps": cfg.steps,
        "selected_step": selected,  # the step whose weights these are (select=best: the best validation PSNR)
        "wall_time_s": wall,
        "device": str(device),
        "processes": ranks.world,  # data-parallel replicas (torchrun), data.batch patches each
        "torch": torch.__version__,
        "val_psnr": psnr,
        "val_sigma": cfg.data.val_sigma,
        "split": split.as_dict(),
        "history": history,
        "lipschitz": lipschitz_record(model, val_clean, val_noisy, cfg.certify_points, cfg.data.val_sigma),
        "train_config": own_keys(cfg),
    }
    manifest = weights.save(model.cpu(), run_dir / f"{name}.pt", record)
    if cfg.ship:
        for suffix in (".pt", ".json"):  # weights first: a manifest never names weights that are not there yet
            weights.copy_atomic(run_dir / f"{name}{suffix}", weights.SHIPPED / f"{name}{suffix}")
    parallel.leave(ranks)
    return manifest


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> None:
    with user_errors():
        run_dir = Path(HydraConfig.get().runtime.output_dir)
        m = train(cfg, run_dir)
    if m is None:  # another process of a torchrun launch: rank 0 reports
        return
    lip = m["lipschitz"]
    log.info(
        f"{m['name']} ({m['recipe']}): val PSNR {m['val_psnr']:.2f} dB at sigma {m['val_sigma']:g}, "
        f"Lip(D) {lip['lip_D_max']:.3f}, Lip(2D-I) {lip['lip_2D_minus_I_max']:.3f}, {m['wall_time_s']:.0f} s; "
        f"weights {run_dir / (m['name'] + '.pt')}"
    )


if __name__ == "__main__":
    entry(main, "train")
