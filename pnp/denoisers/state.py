"""State a denoiser carries from one call to the next, and the one way to clear it between runs.

Warm starts (the ridge prox, deepinv's TV/TGV primal-dual solvers) and random streams (the equivariant wrapper's
group draws) make a call depend on the calls before it. Every scheme run starts with :func:`reset_state`, so two
identical runs give identical numbers whatever ran before. :func:`warm_start` is the test an iterative denoiser applies
to its kept solution, :func:`needs_graph` the one by which it decides whether a call must stay differentiable, and
:func:`input_gradient` how a denoiser defined as a gradient (LPN, the gradient-step DnCNN) takes it in any mode.
"""

from __future__ import annotations

from collections.abc import Callable
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


def input_gradient(
    module: nn.Module, potential: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor
) -> torch.Tensor:
    """∇ₓ Σ_b potential(x)_b, also inside ``torch.inference_mode`` (the gradient is taken outside it). With gradients
    enabled (:func:`needs_graph`) the result is differentiable in ``x`` and the weights of ``module`` (double
    back-propagation); otherwise a plain tensor."""
    create_graph = needs_graph(module, x) and not torch.is_inference_mode_enabled()
    with torch.inference_mode(False), torch.enable_grad():
        x_ = x.clone() if x.is_inference() else x
        if not x_.requires_grad:
            x_ = x_.detach().requires_grad_(True)
        grad = torch.autograd.grad(potential(x_).sum(), x_, create_graph=create_graph)[0]
    return grad if create_graph else grad.detach()
