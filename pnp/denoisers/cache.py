"""Quantities derived from weights (certified norms, FFT spectra), kept until the weights change.

A cache keyed by :func:`weights_key` cannot outlive its weights: the key changes when a tensor is modified in place
(an optimiser step, ``load_state_dict``'s copy), replaced (``to()``, assignment) or moved to another dtype/device.
"""

from __future__ import annotations

import torch


def weights_key(*tensors: torch.Tensor) -> tuple:
    """Identity, version counter, dtype and device of each tensor."""
    return tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in tensors)
