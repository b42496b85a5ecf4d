"""Figures: the reconstruction panel and convergence curves (one run or a whole sweep)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

Curve = Mapping[str, Sequence[float]]  # keys: iter, rel_residual, psnr and objective (optional)


def to_display(t: torch.Tensor):
    """First batch element as an (H, W) or (H, W, 3) array; a vector becomes a 1-row strip."""
    t = t.detach()[0].float().cpu()
    if t.dim() == 1:
        return t[None].numpy()
    t = t.squeeze(0) if t.shape[0] == 1 else t.permute(1, 2, 0).clamp(0, 1)
    return t.reshape(t.shape[0], -1).numpy() if t.dim() == 2 else t.numpy()


def plot_reconstruction(path: Path, panels: Sequence[tuple[str, torch.Tensor, bool]]) -> None:
    """Side-by-side panels (title, image, is_image): images are shown on [0, 1], measurements that are not
    images (sinograms, CS vectors) with their own range."""
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.6))
    for ax, (title, image, is_image) in zip(axes, panels, strict=True):
        arr = to_display(image)
        limits = {"vmin": 0.0, "vmax": 1.0} if is_image else {}
        ax.imshow(arr, cmap="gray", aspect="equal" if arr.shape[0] > 1 else "auto", interpolation="nearest", **limits)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def objective_gap(values: Sequence[float] | None) -> list[float] | None:
    """(F(x_k) − min_j F(x_j)) / |min_j F(x_j)|, floored at float64's resolution for a log axis; None without any
    finite value (a run whose prior has no explicit objective)."""
    if values is None:
        return None
    f = torch.tensor(values, dtype=torch.float64)
    finite = torch.isfinite(f)
    if not finite.any():
        return None
    best = f[finite].min()
    return ((f - best) / best.abs().clamp_min(1e-300)).clamp_min(1e-16).tolist()


def plot_curves(path: Path, curves: Mapping[str, Curve], title: str = "") -> None:
    """c_k = ‖x_k − x_{k−1}‖/‖x_0‖ (log scale) and PSNR against the iteration, one line per run; a third panel
    with the relative objective gap when a run has an explicit objective (key ``objective``)."""
    gaps = {label: objective_gap(c.get("objective")) for label, c in curves.items()}
    explicit = any(g is not None for g in gaps.values())
    fig, axes = plt.subplots(1, 3 if explicit else 2, figsize=(16 if explicit else 11, 4))
    ax_c, ax_p = axes[0], axes[1]
    for label, curve in curves.items():
        (line,) = ax_c.semilogy(curve["iter"], curve["rel_residual"], label=label, lw=1.3)
        if curve.get("psnr") is not None and len(curve["psnr"]):
            ax_p.plot(curve["iter"], curve["psnr"], label=label, lw=1.3, color=line.get_color())
        if gaps[label] is not None:
            axes[2].semilogy(curve["iter"], gaps[label], label=label, lw=1.3, color=line.get_color())
    ax_c.set(xlabel="iteration k", ylabel=r"$c_k=\|x_k-x_{k-1}\|/\|x_0\|$", title="fixed-point residual")
    ax_p.set(xlabel="iteration k", ylabel="PSNR (dB)", title="PSNR against ground truth")
    if explicit:
        axes[2].set(
            xlabel="iteration k",
            ylabel=r"$(F(x_k)-\min_j F(x_j))/|\min_j F(x_j)|$",
            title="objective (explicit priors)",
        )
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
    if len(curves) > 1:
        ax_p.legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
