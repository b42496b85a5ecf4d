"""State a denoiser carries from one call to the next, and the one way to clear it between runs.

Warm starts (the ridge prox, deepinv's TV/TGV primal-dual solvers) and random streams (the equivariant wrapper's
group draws) make a call depend on the calls before it. Every scheme run starts with :func:`reset_state`, so two
identical runs give identical numbers whatever ran before. :func:`warm_start` is the test an iterative denoiser applies
to its kept solution, :func:`needs_graph` the one by which it decides whether a call must stay differentiable.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def reset_state(denoiser: Any) -> None:
    """Clear the state of ``denoiser`` and of every submodule: call each ``reset()`` (the protocol of our stateful
    denoisers) and set deepinv's ``restart`` flag (its TV/TGV denoisers then start their inner solver afresh)."""
    for module in denoiser.modules() if isinstance(denoiser, nn.Module) else (denoiser,):
        reset = getattr(module, "reset", None)
        if callable(reset):
            reset()
        if hasattr(module, "restart"):
            module.restart = True


def warm_start(warm: torch.Tensor | None, default: torch.Tensor) -> torch.Tensor:
    """The kept solution ``warm`` where it fits ``default`` (same shape and dtype), else ``default``."""
    return warm if warm is not None and warm.shape == default.shape and warm.dtype == default.dtype else default


def needs_graph(module: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``module(x)`` must be differentiable: gradients are enabled and the input or a weight requires them."""
    return torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in module.parameters()))
