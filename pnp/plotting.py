"""Figures: the reconstruction panels with a zoomed inset, convergence curves (one run or a whole sweep) and the
final quality of a sweep against a swept number."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

Curve = Mapping[str, Sequence[float]]  # keys: iter, rel_residual, psnr and objective (optional)
Region = tuple[int, int, int]  # top, left, side of a square, in pixels

DPI = 110
#: the zoomed region's side as a fraction of the image's shorter side; the inset's side as a fraction of the panel's
ZOOM, INSET = 0.2, 0.42
INSET_COLOUR = "#ffcc00"
ERROR_CMAP = "magma"
#: the error map's colour range ends at this quantile of the error (the colour bar says so with its arrow)
ERROR_QUANTILE = 0.995
#: the convergence figure's width (inches) for 1, 2 or 3 panels
PANEL_WIDTHS = {1: 5.5, 2: 10.5, 3: 15.0}
DIVERGED_MARK = {"marker": "x", "markersize": 9, "markeredgewidth": 2.2, "zorder": 5}


class Panel(NamedTuple):
    """One panel of the run figure: an image on [0, 1] (``is_image``; gets the zoomed inset) or a measurement that
    is no image (a sinogram, a CS vector), shown with its own range."""

    title: str
    image: torch.Tensor
    is_image: bool = True


class Point(NamedTuple):
    """One run of a sweep in the parameter figure: the swept value, final PSNR, iterations, diverged."""

    value: float
    psnr: float
    iterations: int
    diverged: bool


def to_display(t: torch.Tensor):
    """First batch element as an (H, W) or (H, W, 3) array; a vector becomes a 1-row strip."""
    t = t.detach()[0].float().cpu()
    if t.dim() == 1:
        return t[None].numpy()
    t = t.squeeze(0) if t.shape[0] == 1 else t.permute(1, 2, 0).clamp(0, 1)
    return t.reshape(t.shape[0], -1).numpy() if t.dim() == 2 else t.numpy()


def save(fig: Figure, path: Path) -> None:
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def error_map(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """|x − ref| of the first batch element, x clipped to [0, 1] and averaged over the colour channels: (H, W)."""
    return (x[0].detach().float().clamp(0, 1) - ref[0].detach().float()).abs().mean(0).cpu()


def zoom_region(error: torch.Tensor, fraction: float = ZOOM) -> Region:
    """The square window of side ``fraction`` × the shorter side where the mean of ``error`` (H, W) is largest."""
    side = max(2, round(fraction * min(error.shape)))
    pooled = F.avg_pool2d(error[None, None].double(), side, stride=1)[0, 0]
    top, left = divmod(int(pooled.argmax()), pooled.shape[1])
    return top, left, side


def inset_bounds(region: Region, shape: tuple[int, ...]) -> list[float]:
    """Axes bounds of the inset in the corner opposite the region, so that it never hides what it magnifies."""
    top, left, side = region
    below = top + side / 2 > shape[0] / 2
    right = left + side / 2 > shape[1] / 2
    margin = 0.02
    x = margin if right else 1 - INSET - margin
    y = 1 - INSET - margin if below else margin  # axes y points up, image rows down
    return [x, y, INSET, INSET]


def add_inset(ax: Axes, arr, region: Region, **shown) -> None:
    """Mark ``region`` on the image of ``ax`` and show it magnified in an inset axes."""
    top, left, side = region
    ax.add_patch(Rectangle((left - 0.5, top - 0.5), side, side, fill=False, edgecolor=INSET_COLOUR, linewidth=1.3))
    inset = ax.inset_axes(inset_bounds(region, arr.shape))
    inset.imshow(arr[top : top + side, left : left + side], interpolation="nearest", **shown)
    inset.set_xticks([])
    inset.set_yticks([])
    inset.set_label("inset")
    for spine in inset.spines.values():
        spine.set_edgecolor(INSET_COLOUR)
        spine.set_linewidth(1.8)


def show_error(ax: Axes, error: torch.Tensor, region: Region | None) -> None:
    """The error map on [0, its ``ERROR_QUANTILE`` quantile] with a colour bar beside it and the same inset."""
    top = float(np.quantile(error.numpy(), ERROR_QUANTILE)) or float(error.max()) or 1.0
    shown = {"cmap": ERROR_CMAP, "vmin": 0.0, "vmax": top}
    im = ax.imshow(error.numpy(), interpolation="nearest", **shown)
    cax = ax.inset_axes([1.03, 0.0, 0.05, 1.0])
    cax.set_label("colorbar")
    bar = ax.figure.colorbar(im, cax=cax, extend="max" if float(error.max()) > top else "neither")
    bar.ax.tick_params(labelsize=8)
    if region is not None:
        add_inset(ax, error.numpy(), region, **shown)


def reconstruction_figure(
    panels: Sequence[Panel], error: torch.Tensor | None = None, region: Region | None = None
) -> Figure:
    """Side-by-side panels and, with ``error`` (an (H, W) map such as :func:`error_map`), a last panel of the error
    in its own colour map. Every image panel and the error map get the same zoomed inset: ``region``, or by default
    the window where the error is largest (:func:`zoom_region`). Measurements that are not images keep their range."""
    region = region if region is not None or error is None else zoom_region(error)
    count = len(panels) + (error is not None)
    fig, axes = plt.subplots(1, count, figsize=(2.9 * count + 0.4, 3.5), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=False):
        arr = to_display(panel.image)
        shown = {"cmap": "gray"} | ({"vmin": 0.0, "vmax": 1.0} if panel.is_image else {})
        ax.imshow(arr, aspect="equal" if arr.shape[0] > 1 else "auto", interpolation="nearest", **shown)
        if panel.is_image and region is not None:
            add_inset(ax, arr, region, **shown)
        ax.set_title(panel.title, fontsize=10)
        ax.axis("off")
    if error is not None:
        ax = axes[0, -1]
        show_error(ax, error, region)
        ax.set_title("error |result − truth|", fontsize=10)
        ax.axis("off")
    fig.tight_layout(w_pad=2.0)
    return fig


def plot_reconstruction(
    path: Path, panels: Sequence[Panel], error: torch.Tensor | None = None, region: Region | None = None
) -> None:
    """Write :func:`reconstruction_figure` to ``path``."""
    save(reconstruction_figure(panels, error, region), path)


def objective_gap(values: Sequence[float] | None) -> list[float] | None:
    """(F(x_k) − min_j F(x_j)) / |min_j F(x_j)|, NaN where it is 0 (the minimum, which a log axis cannot show: no
    plunge to a floor at the last iterate); None without any finite value (a prior without an explicit objective)."""
    if values is None:
        return None
    f = torch.tensor(values, dtype=torch.float64)
    finite = torch.isfinite(f)
    if not finite.any():
        return None
    best = f[finite].min()
    gap = (f - best) / best.abs().clamp_min(1e-300)
    return gap.masked_fill(gap <= 0, float("nan")).tolist()


def psnr_limits(values: Sequence[tuple[float, bool]]) -> tuple[float, float] | None:
    """PSNR axis limits from the finite values (value, diverged) of the runs that did not diverge (of every run when
    all diverged), padded by 5 % of the range (at least 0.5 dB): a diverged run (−300 dB) cannot flatten the others."""
    kept = [v for v, gone in values if not gone and math.isfinite(v)] or [v for v, _ in values if math.isfinite(v)]
    if not kept:
        return None
    lo, hi = min(kept), max(kept)
    pad = max(0.05 * (hi - lo), 0.5)
    return lo - pad, hi + pad


def mark_end(ax: Axes, xs: Sequence[float], ys: Sequence[float], color, limits: tuple[float, float] | None) -> None:
    """An 'x' at the last finite point of a diverged run, moved onto the axis when it lies beyond ``limits``."""
    last = [(x, y) for x, y in zip(xs, ys, strict=True) if math.isfinite(y)]
    if not last:
        return
    x, y = last[-1]
    if limits is not None:
        y = min(max(y, limits[0]), limits[1])
    ax.plot([x], [y], color=color, clip_on=False, linestyle="none", **DIVERGED_MARK)


def legend_columns(labels: Sequence[str], width_chars: float) -> int:
    """As many legend columns as the labels fit into the width (at most 4), a count that fills every row if one of
    more than half that many does (a 2×2 sweep: 2 columns rather than 3 and 1)."""
    fit = max(1, min(4, len(labels), int(width_chars // (max(map(len, labels)) + 8))))
    full = [c for c in range(fit, fit // 2, -1) if len(labels) % c == 0]
    return full[0] if full else fit


def legend_below(fig: Figure, handles: list) -> None:
    """One legend for the whole figure, below the panels."""
    columns = legend_columns([h.get_label() for h in handles], fig.get_figwidth() * 14)
    fig.legend(handles=handles, loc="outside lower center", ncol=columns, fontsize=9, frameon=False)


def curves_figure(
    curves: Mapping[str, Curve],
    title: str = "",
    styles: Mapping[str, Mapping] | None = None,
    diverged: Collection[str] = (),
) -> Figure:
    """c_k = ‖x_k − x_{k−1}‖/max(‖x_0‖, ‖x_1‖) (log scale) and PSNR against the iteration (when some run has a PSNR:
    a ground truth), one line per run (``styles``: line keyword arguments per run, e.g. colour and line style); a
    panel with the relative objective gap when a run has an explicit objective (key ``objective``). The runs named in
    ``diverged`` are drawn, marked with an 'x' at their last point and "(diverged)" in the legend, and cut at the
    PSNR axis, whose limits they do not set."""
    styles = styles or {}
    gaps = {label: objective_gap(c.get("objective")) for label, c in curves.items()}
    explicit = any(g is not None for g in gaps.values())
    psnr = {label: list(c["psnr"]) for label, c in curves.items() if c.get("psnr") is not None and len(c["psnr"])}
    count = 1 + bool(psnr) + explicit
    fig, axes = plt.subplots(1, count, figsize=(PANEL_WIDTHS[count], 4.2), layout="constrained", squeeze=False)
    axes = list(axes[0])
    ax_c, ax_p, ax_f = axes[0], axes[1] if psnr else None, axes[-1] if explicit else None
    limits = psnr_limits([(v, label in diverged) for label, ys in psnr.items() for v in ys])
    handles = []
    for label, curve in curves.items():
        name = f"{label} (diverged)" if label in diverged else label
        (line,) = ax_c.semilogy(curve["iter"], curve["rel_residual"], label=name, lw=1.4, **styles.get(label, {}))
        handles.append(line)
        drawn = [(ax_c, curve["rel_residual"], None)]
        style = {"lw": 1.4, "color": line.get_color(), "linestyle": line.get_linestyle()}
        if label in psnr:
            ax_p.plot(curve["iter"], psnr[label], **style)
            drawn.append((ax_p, psnr[label], limits))
        if gaps[label] is not None:
            ax_f.semilogy(curve["iter"], gaps[label], **style)
            drawn.append((ax_f, gaps[label], None))
        if label in diverged:
            for ax, ys, lim in drawn:
                mark_end(ax, curve["iter"], ys, line.get_color(), lim)
    ax_c.set(
        xlabel="iteration k", ylabel=r"$c_k=\|x_k-x_{k-1}\|\,/\,\max(\|x_0\|,\|x_1\|)$", title="fixed-point residual"
    )
    if ax_p is not None:
        ax_p.set(xlabel="iteration k", ylabel="PSNR (dB)", title="PSNR against ground truth", ylim=limits)
    if ax_f is not None:
        ax_f.set(
            xlabel="iteration k",
            ylabel=r"$(F(x_k)-\min_j F(x_j))/|\min_j F(x_j)|$",
            title="objective (explicit priors)",
        )
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
    if len(curves) > 1:
        legend_below(fig, handles)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def plot_curves(
    path: Path,
    curves: Mapping[str, Curve],
    title: str = "",
    styles: Mapping[str, Mapping] | None = None,
    diverged: Collection[str] = (),
) -> None:
    """Write :func:`curves_figure` to ``path``."""
    save(curves_figure(curves, title, styles, diverged), path)


def parameter_figure(key: str, groups: Mapping[str, Sequence[Point]], title: str = "") -> Figure:
    """Final PSNR and iterations against the swept number ``key``, one line per group of runs (the other swept
    overrides); a log x-axis when the values span more than a factor 10. Diverged runs are marked with an 'x' and do
    not set the PSNR limits."""
    fig, (ax_p, ax_i) = plt.subplots(1, 2, figsize=(10.5, 4.0), layout="constrained")
    limits = psnr_limits([(p.psnr, p.diverged) for points in groups.values() for p in points])
    handles = []
    for label, points in groups.items():
        points = sorted(points)
        xs = [p.value for p in points]
        (line,) = ax_p.plot(xs, [p.psnr for p in points], marker="o", lw=1.4, label=label)
        ax_i.plot(xs, [p.iterations for p in points], marker="o", lw=1.4, color=line.get_color())
        if len(groups) > 1:
            handles.append(line)
        for p in points:
            if p.diverged:
                mark_end(ax_p, [p.value], [p.psnr], line.get_color(), limits)
                mark_end(ax_i, [p.value], [p.iterations], line.get_color(), None)
    if limits is not None:
        ax_p.set_ylim(limits)
    values = [p.value for points in groups.values() for p in points]
    for ax in (ax_p, ax_i):
        if min(values) > 0 and max(values) > 10 * min(values):
            ax.set_xscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.set_xlabel(key)
    ax_p.set(ylabel="final PSNR (dB)", title=f"PSNR against {key}")
    ax_i.set(ylabel="iterations", title=f"iterations against {key}")
    if any(p.diverged for points in groups.values() for p in points):
        handles.append(Line2D([], [], color="black", linestyle="none", label="diverged", **DIVERGED_MARK))
    if handles:
        legend_below(fig, handles)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig
