"""Summaries of a Hydra multirun folder: summary.csv, summary.md, the overlaid convergence curves and, for a swept
number, final PSNR and iterations against it; and the sweep's diverged runs, read from the folder whatever the
launcher (:class:`DivergedRuns`)."""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from matplotlib.figure import Figure
from omegaconf import DictConfig, OmegaConf

from pnp.cli import SWEEP_FAILURES
from pnp.config import problem_label
from pnp.errors import check
from pnp.plotting import Point, curves_figure, parameter_figure, save

#: a sweep's runs: colours (tab10) for one swept axis, line styles for another
COLOURS = [f"C{i}" for i in range(10)]
LINE_STYLES = ["-", "--", ":", "-."]
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


def job_order(path: Path) -> tuple:
    """Sort key: shallower first, then numbers by value (job 2 before job 10)."""
    return len(path.parts), [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", str(path))]


def metrics_files(folder: Path) -> list[Path]:
    """The metrics.json of every run below ``folder``, in job order; a folder run (``image.folder=``: its
    metrics.json lists ``images``) counts as its images, each with its own metrics.json and history.csv."""
    files = sorted(folder.rglob("metrics.json"), key=job_order)
    return [f for f in files if "images" not in json.loads(f.read_text())]


def job_overrides(job: Path) -> list[str]:
    """The command-line overrides of the job in ``job`` (none outside a Hydra run); an image of a folder run: its
    run's, and ``image=<its folder's name>``."""
    for hydra_dir, extra in ((job / ".hydra", []), (job.parent / ".hydra", [f"image={job.name}"])):
        overrides = hydra_dir / "overrides.yaml"
        if overrides.exists():
            return [*(yaml.safe_load(overrides.read_text()) or []), *extra]
    return []


def collect(folder: Path) -> list[Run]:
    """Every run below ``folder`` that wrote metrics.json, in job order."""
    check(folder.is_dir(), f"not a folder: {folder}")
    runs = [
        Run(m.parent, job_overrides(m.parent), json.loads(m.read_text()), read_history(m.parent / "history.csv"))
        for m in metrics_files(folder)
    ]
    check(bool(runs), f"no runs (metrics.json) found under {folder}")
    return runs


class DivergedRuns(Callback):
    """Hydra callback (``pnp/configs/hydra/callbacks/pnp.yaml``): after a ``-m`` sweep, in the launching process and
    whatever the launcher (joblib's workers and submitit's jobs report nothing to it), the sweep folder's diverged
    runs whose config says ``sweep_fails_on_divergence`` become :data:`pnp.cli.SWEEP_FAILURES`, which
    :func:`pnp.cli.entry` lists before it exits with status 3."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        failures = []
        for path in metrics_files(Path(config.hydra.sweep.dir)):
            m = json.loads(path.read_text())
            if m.get("diverged") and m.get("config", {}).get("sweep_fails_on_divergence"):
                failures.append((" ".join(job_overrides(path.parent)), m["message"]))
        SWEEP_FAILURES[:] = failures


def varying_overrides(runs: list[Run]) -> list[str]:
    """Per run, the overrides that differ between runs (all of them for a single run), space-separated."""
    if len(runs) == 1:
        return [" ".join(runs[0].overrides)]
    common = set.intersection(*(set(r.overrides) for r in runs))
    return [" ".join(o for o in r.overrides if o not in common) or r.path.name for r in runs]


def parse(override: str) -> tuple[str, str]:
    """``key=value`` as (key, value), the key without Hydra's ``+``, ``++`` or ``~`` prefix."""
    key, _, value = override.partition("=")
    return key.lstrip("+~"), value


def swept(runs: list[Run]) -> dict[str, list[str | None]]:
    """Each overridden key whose value differs between runs (in command-line order), with every run's value (None
    where the run does not set it)."""
    settings = [dict(parse(o) for o in r.overrides) for r in runs]
    keys = dict.fromkeys(k for s in settings for k in s)
    return {k: [s.get(k) for s in settings] for k in keys if len({s.get(k) for s in settings}) > 1}


def ranks(values: list) -> list[int]:
    """Per element, the index of its value among the distinct values in order of appearance."""
    distinct = list(dict.fromkeys(values))
    return [distinct.index(v) for v in values]


def line_styles(axes: dict[str, list[str | None]], count: int) -> list[dict[str, str]]:
    """Per run, a colour for one swept axis and a line style for another: the line style for the key with the
    fewest values (at most ``len(LINE_STYLES)``; the later key on a tie), the colour for the combination of the rest."""
    styled = [k for k in axes if len(set(axes[k])) <= len(LINE_STYLES)] if len(axes) > 1 else []
    by_style = min(styled, key=lambda k: (len(set(axes[k])), -list(axes).index(k)), default=None)
    colour = ranks([tuple(v[i] for k, v in axes.items() if k != by_style) for i in range(count)])
    style = ranks(axes[by_style]) if by_style else [0] * count
    return [
        {"color": COLOURS[c % len(COLOURS)], "linestyle": LINE_STYLES[s]} for c, s in zip(colour, style, strict=True)
    ]


def subject(config: dict) -> str:
    """The problem and the image of a run's resolved config: ``deblur(gaussian σ=1.6) · camera 128²``."""
    image = config["image"]
    name = Path(image["path"]).name if image.get("path") else image["name"]
    size = f" {image['size']}²" if image.get("size") else ""
    return f"{problem_label(OmegaConf.create(config))} · {name}{size}"


def sweep_title(runs: list[Run]) -> str:
    """The problems and images of the runs (from the config each run keeps in metrics.json) and their number."""
    subjects = ", ".join(dict.fromkeys(subject(r.metrics["config"]) for r in runs if "config" in r.metrics))
    count = f"{len(runs)} runs" if len(runs) > 1 else "1 run"
    return f"{subjects} · {count}" if subjects else count


def number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def numeric_keys(axes: dict[str, list[str | None]]) -> list[str]:
    """The swept keys whose values are all numbers: the only swept key, or any with at least 3 values."""
    return [
        k
        for k, values in axes.items()
        if all(number(v) is not None for v in values) and (len(axes) == 1 or len(set(values)) >= 3)
    ]


def parameter_groups(runs: list[Run], axes: dict[str, list[str | None]], key: str) -> dict[str, list[Point]]:
    """The runs as points (``key``'s value, final PSNR, iterations, diverged), grouped by the other swept overrides."""
    groups: dict[str, list[Point]] = {}
    for i, r in enumerate(runs):
        label = " ".join(f"{k}={v[i]}" for k, v in axes.items() if k != key) or key
        psnr = r.metrics.get("psnr")  # null when not finite, absent without a ground truth
        point = Point(
            number(axes[key][i]), math.nan if psnr is None else psnr, r.metrics["iterations"], r.metrics["diverged"]
        )
        groups.setdefault(label, []).append(point)
    return groups


def sweep_figures(runs: list[Run]) -> dict[str, Figure]:
    """File name → figure: ``sweep_convergence.png`` (every run's curves, colour and line style from the swept
    axes, diverged runs marked) and ``sweep_<key>.png`` for each swept number (:func:`numeric_keys`). No run writes
    these names, so a summary written into a run's folder leaves the run's own figures alone."""
    axes, labels, title = swept(runs), varying_overrides(runs), sweep_title(runs)
    styles = dict(zip(labels, line_styles(axes, len(runs)), strict=True))
    curves = {label: r.history for label, r in zip(labels, runs, strict=True) if r.history}
    diverged = {label for label, r in zip(labels, runs, strict=True) if r.metrics.get("diverged")}
    figures = {"sweep_convergence.png": curves_figure(curves, title, styles, diverged)}
    for key in numeric_keys(axes):
        groups = parameter_groups(runs, axes, key)
        figures[f"sweep_{re.sub(r'[^A-Za-z0-9_.-]', '_', key)}.png"] = parameter_figure(key, groups, title)
    return figures


def summarise(folder: Path, out: Path | None = None) -> tuple[list[dict], list[Path]]:
    """Write summary.csv, summary.md and :func:`sweep_figures` for the runs under ``folder``; return the rows and
    the files written. In a run's own folder (it has a metrics.json; a folder run writes its own summary.csv) the
    tables are sweep_summary.csv and sweep_summary.md."""
    runs = collect(folder)
    out = out or folder
    out.mkdir(parents=True, exist_ok=True)
    stem = "sweep_summary" if (out / "metrics.json").is_file() else "summary"
    labels = varying_overrides(runs)
    rows = [
        {"overrides": label, **{k: r.metrics.get(k) for k in SUMMARY_COLUMNS[1:]}}
        for label, r in zip(labels, runs, strict=True)
    ]
    with (out / f"{stem}.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=SUMMARY_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    (out / f"{stem}.md").write_text(markdown_table(rows))
    written = [out / f"{stem}.csv", out / f"{stem}.md"]
    for name, fig in sweep_figures(runs).items():
        save(fig, out / name)
        written.append(out / name)
    return rows, written


#: summary.md's format per quantity (dB to 0.01, SSIM to 0.001, residuals in scientific notation, seconds to 0.1)
FORMATS = {"psnr": "{:.2f}", "ssim": "{:.3f}", "final_rel_residual": "{:.2e}", "wall_time_s": "{:.1f}"}


def fmt(column: str, value) -> str:
    if value is None:
        return ""
    return FORMATS[column].format(value) if column in FORMATS and isinstance(value, float) else str(value)


def markdown_table(rows: list[dict]) -> str:
    head = "| " + " | ".join(SUMMARY_COLUMNS) + " |\n|" + "---|" * len(SUMMARY_COLUMNS) + "\n"
    return head + "".join("| " + " | ".join(fmt(c, r[c]) for c in SUMMARY_COLUMNS) + " |\n" for r in rows)
