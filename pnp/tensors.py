"""Per-batch-element tensor helpers, computed on the device (no host synchronisation)."""

from __future__ import annotations

import torch


def batch_norm(x: torch.Tensor) -> torch.Tensor:
    """Euclidean norm of each batch element: [B, ...] → [B]."""
    return torch.linalg.vector_norm(x.flatten(1), dim=1)


def batch_psnr(x: torch.Tensor, ref: torch.Tensor, max_pixel: float = 1.0) -> torch.Tensor:
    """PSNR of each batch element in dB, computed on the device (no host synchronisation)."""
    mse = (x - ref).flatten(1).pow(2).mean(dim=1)
    return 10.0 * torch.log10(max_pixel**2 / mse)


def batch_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """⟨a_b, b_b⟩ of each batch element: [B, ...] × [B, ...] → [B] (non-contiguous inputs allowed)."""
    return (a * b).reshape(a.shape[0], -1).sum(1)


def per_element(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """[B] values shaped [B, 1, …, 1] to broadcast against ``like`` [B, …]."""
    return v.view(-1, *([1] * (like.dim() - 1)))


def unit(v: torch.Tensor) -> torch.Tensor:
    """Each batch element scaled to unit norm."""
    return v / per_element(batch_norm(v).clamp_min(1e-30), v)
