"""State a denoiser carries from one call to the next, and the one way to clear it between runs.

Warm starts (the ridge prox, deepinv's TV/TGV primal-dual solvers) and random streams (the equivariant wrapper's
group draws) make a call depend on the calls before it. Every scheme run starts with :func:`reset_state`, so two
identical runs give identical numbers whatever ran before.
"""

from __future__ import annotations

from typing import Any

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
