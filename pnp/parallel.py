"""Parallel runs: torch threads per job of a parallel sweep, and data-parallel training under ``torchrun``.

* :class:`JobThreads`, a Hydra callback of every entry point (``pnp/configs/hydra/callbacks/pnp.yaml``), sets each
  job's torch threads from the ``threads`` key or from the launcher, so that the jobs a launcher runs side by side do
  not oversubscribe the cores (:func:`job_threads`).
* :func:`join` enters the process group of a ``torchrun --nproc_per_node=N`` launch (``WORLD_SIZE`` > 1: gloo on
  CPU, nccl on CUDA, one GPU per process); :class:`Ranks` says where this process stands. Training keeps one
  replica of the model per process: the same start (:func:`broadcast`), gradients averaged over the processes
  (:func:`average_gradients`) before clipping, the optimiser step and the projections, so that every replica takes
  the same steps; :func:`digest` checks that they did.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from pnp.cli import log, user_errors
from pnp.errors import check


def cores() -> int:
    """The CPU cores this process may run on (its affinity: a Slurm allocation, ``taskset``), not the machine's."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def joblib_workers(n_jobs: int) -> int:
    """The processes joblib runs for ``n_jobs`` (−1: one per core, −2: all cores but one, …)."""
    return n_jobs if n_jobs > 0 else max(1, cores() + 1 + n_jobs)


def job_threads(config: DictConfig) -> int | None:
    """Torch threads for one job: ``threads`` when set; else the launcher's ``cpus_per_task`` (submitit), the cores
    shared out between joblib's workers (``hydra.launcher.n_jobs``) or between the processes of a ``torchrun`` launch
    on this machine; None (torch's default: every core of the affinity) for a single process."""
    threads = config.get("threads")
    if threads is not None:
        check(
            isinstance(threads, int) and not isinstance(threads, bool) and threads >= 1,
            f"threads must be a positive integer or null, got {threads!r}",
        )
        return threads
    launcher = config.hydra.launcher
    if launcher.get("cpus_per_task"):
        return int(launcher.cpus_per_task)
    processes = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    if "n_jobs" in launcher:
        processes *= joblib_workers(int(launcher.n_jobs))
    return max(1, cores() // processes) if processes > 1 else None


class JobThreads(Callback):
    """Sets torch's intra-op threads at the start of every job (:func:`job_threads`), in the job's own process."""

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        with user_errors():
            threads = job_threads(config)
        if threads is not None:
            torch.set_num_threads(threads)
        log.debug(f"torch threads: {torch.get_num_threads()} ({cores()} cores)")


@dataclass(frozen=True)
class Ranks:
    """This process's place in a ``torchrun`` launch: rank 0 of 1 without one."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """Rank 0: the process that validates, checkpoints and writes."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def join(device: torch.device) -> tuple[Ranks, torch.device]:
    """Enter ``torchrun``'s process group when ``WORLD_SIZE`` > 1 (gloo on CPU; nccl on CUDA, with the GPU
    ``LOCAL_RANK``); this process's ranks and device."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world == 1:
        return Ranks(), device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Ranks(dist.get_rank(), dist.get_world_size()), device


def leave(ranks: Ranks) -> None:
    """Wait for every process (rank 0 writes the results meanwhile), then leave the process group."""
    if ranks.distributed:
        dist.barrier()
        dist.destroy_process_group()


def broadcast(module: torch.nn.Module) -> None:
    """Rank 0's parameters and buffers (e.g. power-iteration vectors) into every process's replica."""
    for tensor in itertools.chain(module.parameters(), module.buffers()):
        dist.broadcast(tensor.data, 0)


def average_gradients(parameters: Iterable[torch.nn.Parameter], world: int) -> None:
    """Replace each gradient by its mean over the processes (one all-reduce of the gradients laid end to end)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    flat = torch.cat([g.flatten() for g in grads])
    dist.all_reduce(flat)
    flat /= world
    for g, mean in zip(grads, flat.split([g.numel() for g in grads]), strict=True):
        g.copy_(mean.view_as(g))


def gather(value: Any, ranks: Ranks) -> list[Any]:
    """Every process's ``value`` (picklable), in rank order; ``[value]`` in a single process."""
    if not ranks.distributed:
        return [value]
    values: list[Any] = [None] * ranks.world
    dist.all_gather_object(values, value)
    return values


def digest(module: torch.nn.Module) -> str:
    """sha256 of the parameters and buffers: equal on every process when the replicas are identical."""
    h = hashlib.sha256()
    for tensor in itertools.chain(module.parameters(), module.buffers()):
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
