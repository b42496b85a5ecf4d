"""Shared helpers of the benchmark scripts: denoisers by config name, held-out images, markdown tables."""

from __future__ import annotations

import csv
import platform
import time
from pathlib import Path

import torch

from pnp.data import held_out, make_split
from pnp.solve import compose_denoiser

LEARNED = ("dncnn", "fne_dncnn", "euler", "lpn")
CLASSICAL = ("tv", "wavelet", "bm3d")
RESULTS = Path(__file__).resolve().parent / "results"


def bm3d_available() -> bool:
    try:
        import bm3d  # noqa: F401
    except ImportError:
        return False
    return True


def denoiser(name: str, sigma: float | None = None, device: str = "cpu"):
    """(denoiser, strength) from ``configs/denoiser/<name>.yaml``; ``sigma`` overrides the strength."""
    overrides = () if sigma is None else (f"denoiser.sigma={sigma}",)
    return compose_denoiser(name, torch.device(device), overrides)


def held_out_images(size: int, count: int | None = None) -> tuple[torch.Tensor, list[str]]:
    split = make_split()
    names = split.validation[:count] if count else split.validation
    return held_out(split, size)[: len(names)], list(names)


def machine() -> str:
    return (
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch "
        f"{torch.__version__}, {time.strftime('%Y-%m-%d')}"
    )


def write_table(path: Path, rows: list[dict], title: str, notes: str = "") -> None:
    """``path``.md (a markdown table under a title and notes) and ``path``.csv."""
    columns = list(rows[0])
    with path.with_suffix(".csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)

    def fmt(v) -> str:
        return (
            f"{v:.2f}" if isinstance(v, float) and abs(v) >= 0.01 else (f"{v:.1e}" if isinstance(v, float) else str(v))
        )

    lines = [f"# {title}", "", notes, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in columns) + " |" for r in rows]
    path.with_suffix(".md").write_text("\n".join(lines) + "\n")
