"""Summaries of a Hydra multirun folder: overlaid convergence curves, summary.csv and summary.md."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from pnp.errors import check
from pnp.plotting import plot_curves

SUMMARY_COLUMNS = (
    "overrides",
    "psnr",
    "ssim",
    "iterations",
    "converged",
    "diverged",
    "final_rel_residual",
    "wall_time_s",
)


@dataclass
class Run:
    """One finished job of a sweep."""

    path: Path
    overrides: list[str]
    metrics: dict
    history: dict[str, list[float]]


def read_history(path: Path) -> dict[str, list[float]]:
    with path.open() as f:
        rows = list(csv.DictReader(f))
    return (
        {key: [float(r[key]) if r[key] not in ("", None) else float("nan") for r in rows] for key in rows[0]}
        if rows
        else {}
    )


def collect(folder: Path) -> list[Run]:
    """Every run below ``folder`` that wrote metrics.json, in job order."""
    check(folder.is_dir(), f"not a folder: {folder}")
    runs = []
    for metrics in sorted(folder.rglob("metrics.json"), key=lambda p: (len(p.parts), str(p))):
        job = metrics.parent
        overrides_file = job / ".hydra" / "overrides.yaml"
        overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.exists() else []
        runs.append(Run(job, list(overrides or []), json.loads(metrics.read_text()), read_history(job / "history.csv")))
    check(bool(runs), f"no runs (metrics.json) found under {folder}")
    return runs


def varying_overrides(runs: list[Run]) -> list[str]:
    """Per run, the overrides that differ between runs (all of them for a single run), space-separated."""
    if len(runs) == 1:
        return [" ".join(runs[0].overrides)]
    common = set.intersection(*(set(r.overrides) for r in runs))
    return [" ".join(o for o in r.overrides if o not in common) or r.path.name for r in runs]


def summarise(folder: Path, out: Path | None = None) -> list[dict]:
    """Write convergence.png, summary.csv and summary.md for the runs under ``folder``; return the rows."""
    runs = collect(folder)
    out = out or folder
    out.mkdir(parents=True, exist_ok=True)
    labels = varying_overrides(runs)
    rows = [
        {"overrides": label, **{k: r.metrics.get(k) for k in SUMMARY_COLUMNS[1:]}}
        for label, r in zip(labels, runs, strict=True)
    ]
    with (out / "summary.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=SUMMARY_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    (out / "summary.md").write_text(markdown_table(rows))
    curves = {label: r.history for label, r in zip(labels, runs, strict=True) if r.history}
    plot_curves(out / "convergence.png", curves, title=str(folder))
    return rows


#: summary.md's format per quantity (dB to 0.01, SSIM to 0.001, residuals in scientific notation, seconds to 0.1)
FORMATS = {"psnr": "{:.2f}", "ssim": "{:.3f}", "final_rel_residual": "{:.2e}", "wall_time_s": "{:.1f}"}


def fmt(column: str, value) -> str:
    if value is None:
        return ""
    return FORMATS[column].format(value) if column in FORMATS and isinstance(value, float) else str(value)


def markdown_table(rows: list[dict]) -> str:
    head = "| " + " | ".join(SUMMARY_COLUMNS) + " |\n|" + "---|" * len(SUMMARY_COLUMNS) + "\n"
    return head + "".join("| " + " | ".join(fmt(c, r[c]) for c in SUMMARY_COLUMNS) + " |\n" for r in rows)
