"""The figures' structure: the run figure's panels and insets, the sweep figure's colours, line styles and legend,
PSNR limits that a diverged run cannot flatten, the parameter plot of a swept number, and no overwritten run figure."""

from __future__ import annotations

import csv
import json
import math
import os
import re
from pathlib import Path
from types import SimpleNamespace

import matplotlib.pyplot as plt
import pytest
import torch
import yaml

from pnp.outputs import reconstruction_panels
from pnp.plotting import Panel, curves_figure, error_map, objective_gap, reconstruction_figure, zoom_region
from pnp.sweep import collect, summarise, sweep_figures

ROOT = Path(__file__).resolve().parent.parent
CONFIG = {
    "problem": {"_target_": "pnp.problems.deblur", "kernel": "gaussian", "blur_sigma": 1.6, "kernel_size": None},
    "image": {"name": "camera", "path": None, "size": 32},
}


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def children(ax, label: str) -> list:
    return [child for child in ax.child_axes if child.get_label() == label]


def legend_texts(fig) -> list[str]:
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()]


def test_zoom_region_is_the_window_of_largest_error():
    error = torch.zeros(40, 50)
    error[20:28, 30:38] = 1.0
    assert zoom_region(error) == (20, 30, 8)


@pytest.mark.parametrize("channels", [1, 3])
def test_run_figure_has_every_panel_with_the_same_inset_and_an_error_map(channels):
    truth = torch.rand(1, channels, 40, 40)
    result = truth.clone()
    result[..., 4:12, 28:36] += 0.3
    sinogram = torch.rand(1, 1, 30, 17)
    panels = [Panel("ground truth", truth), Panel("observation", sinogram, is_image=False), Panel("result", result)]
    fig = reconstruction_figure(panels, error_map(result, truth))
    assert [ax.get_title() for ax in fig.axes] == ["ground truth", "observation", "result", "error |result − truth|"]
    truth_ax, sinogram_ax, result_ax, error_ax = fig.axes
    assert not sinogram_ax.child_axes  # a measurement keeps its own range and has no inset
    for ax in (truth_ax, result_ax, error_ax):
        (inset,) = children(ax, "inset")
        assert inset.get_images()[0].get_array().shape[:2] == (8, 8)
    assert len(children(error_ax, "colorbar")) == 1
    assert (truth_ax.patches[0].get_x(), truth_ax.patches[0].get_y()) == (28 - 0.5, 4 - 0.5)  # the region, marked


def test_a_given_region_is_zoomed_without_an_error_map():
    image = torch.rand(1, 1, 32, 32)
    fig = reconstruction_figure([Panel("a", image), Panel("b", image)], region=(0, 0, 6))
    assert len(fig.axes) == 2 and all(len(children(ax, "inset")) == 1 for ax in fig.axes)


@pytest.mark.parametrize(
    ("init", "titles"),
    [
        ("same", ["ground truth", "observation", "result"]),
        ("other", ["ground truth", "observation", "initialisation", "result"]),
    ],
)
def test_the_initialisation_is_shown_only_when_it_differs_from_the_observation(init, titles):
    truth = torch.rand(1, 1, 32, 32)
    y = (truth + 0.05 * torch.randn_like(truth)).clamp(0, 1)
    x0 = y if init == "same" else torch.zeros_like(y)
    problem = SimpleNamespace(x_true=truth, y=y, x0=x0)
    m = {"psnr_observation": 26.0, "psnr_init": 5.0, "psnr": 30.0, "ssim": 0.9, "diverged": False}
    panels = reconstruction_panels(problem, SimpleNamespace(x=truth), m)
    assert [p.title.split("\n")[0] for p in panels] == titles
    assert "dB, SSIM" in panels[1].title and panels[-1].title.endswith("30.00 dB, SSIM 0.900")


def test_a_measurement_of_another_shape_is_not_an_image():
    truth = torch.rand(1, 1, 16, 16)
    problem = SimpleNamespace(x_true=truth, y=torch.rand(1, 64), x0=truth)
    m = {"psnr_observation": None, "psnr_init": 20.0, "psnr": 30.0, "ssim": 0.9, "diverged": True}
    panels = reconstruction_panels(problem, SimpleNamespace(x=truth), m)
    assert [p.is_image for p in panels] == [True, False, True, True]
    assert panels[1].title == "observation\nmeasurements (64,)" and panels[-1].title.startswith("result (DIVERGED)")


def curve(psnr: list[float]) -> dict[str, list[float]]:
    n = len(psnr)
    return {"iter": list(range(1, n + 1)), "rel_residual": [10.0 ** (-k / 4) for k in range(n)], "psnr": psnr}


def test_a_diverged_run_is_drawn_marked_and_cut_but_does_not_set_the_psnr_limits():
    curves = {"good": curve([20.0, 25.0, 30.0]), "bad": curve([20.0, -50.0, -338.0])}
    fig = curves_figure(curves, "t", diverged={"bad"})
    ax_c, ax_p = fig.axes
    lo, hi = ax_p.get_ylim()
    assert 18 < lo < 20 and 30 < hi < 32
    marks = [line for line in ax_p.lines if line.get_marker() == "x"]
    assert len(marks) == 1 and marks[0].get_ydata()[0] == pytest.approx(lo)  # on the axis, not at −338 dB
    assert len(ax_p.lines) == 3  # both curves and the mark
    assert ax_c.get_yscale() == "log"
    assert legend_texts(fig) == ["good", "bad (diverged)"]


def fake_run(
    folder: Path, overrides: list[str], psnr: list[float], diverged: bool = False, config: dict = CONFIG
) -> Path:
    """A run folder as pnp.solve writes it: metrics.json, history.csv and .hydra/overrides.yaml."""
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    metrics = {
        "psnr": psnr[-1],
        "ssim": 0.8,
        "iterations": 10 * len(psnr),
        "converged": not diverged,
        "diverged": diverged,
        "final_rel_residual": 1e-4,
        "wall_time_s": 0.1,
        "config": config,
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))
    with (folder / "history.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=("iter", "rel_residual", "psnr", "objective"))
        writer.writeheader()
        rows = curve(psnr)
        writer.writerows(
            {"iter": k, "rel_residual": c, "psnr": p, "objective": ""}
            for k, c, p in zip(rows["iter"], rows["rel_residual"], rows["psnr"], strict=True)
        )
    return folder


def test_sweep_figure_colours_one_axis_and_styles_the_other(tmp_path):
    combos = [(s, d) for s in ("pgd", "admm") for d in ("tv", "wavelet")]
    for i, (s, d) in enumerate(combos):
        fake_run(tmp_path / str(i), ["+problem=deblur", f"scheme={s}", f"denoiser={d}"], [20.0, 25.0 + i])
    figures = sweep_figures(collect(tmp_path))
    assert list(figures) == ["sweep_convergence.png"]  # no swept number
    fig = figures["sweep_convergence.png"]
    assert fig._suptitle.get_text() == "deblur(gaussian σ=1.6) · camera 32² · 4 runs"
    assert legend_texts(fig) == [f"scheme={s} denoiser={d}" for s, d in combos]
    lines = {line.get_label(): line for line in fig.axes[0].lines}
    for s, d in combos:
        for t, e in combos:
            a, b = lines[f"scheme={s} denoiser={d}"], lines[f"scheme={t} denoiser={e}"]
            assert (a.get_color() == b.get_color()) == (s == t)
            assert (a.get_linestyle() == b.get_linestyle()) == (d == e)


def test_a_swept_number_gets_psnr_and_iterations_against_it(tmp_path):
    runs = [(scheme, sigma) for scheme in ("pgd", "admm") for sigma in ("0.1", "0.001", "0.01")]
    for i, (scheme, sigma) in enumerate(runs):
        fake_run(tmp_path / str(i), [f"scheme={scheme}", f"denoiser.sigma={sigma}"], [20.0, 25.0 + i], i == 5)
    diverged = tmp_path / "5" / "metrics.json"
    diverged.write_text(json.dumps({**json.loads(diverged.read_text()), "psnr": None}))  # not finite: null
    figures = sweep_figures(collect(tmp_path))
    fig = figures["sweep_denoiser.sigma.png"]
    ax_p, ax_i = fig.axes
    assert ax_p.get_xscale() == "log" and ax_p.get_xlabel() == "denoiser.sigma"
    pgd = next(line for line in ax_p.lines if line.get_label() == "scheme=pgd")
    assert list(pgd.get_xdata()) == [0.001, 0.01, 0.1] and list(pgd.get_ydata()) == [26.0, 27.0, 25.0]
    assert list(ax_i.lines[0].get_ydata()) == [20, 20, 20]
    assert legend_texts(fig) == ["scheme=pgd", "scheme=admm", "diverged"]
    assert "(diverged)" in legend_texts(figures["sweep_convergence.png"])[-1]


def test_one_swept_number_with_two_values_gets_its_plot(tmp_path):
    for i, step in enumerate(("1", "1.9")):
        fake_run(tmp_path / str(i), [f"scheme.step_factor={step}"], [20.0, 25.0 + i])
    assert set(sweep_figures(collect(tmp_path))) == {"sweep_convergence.png", "sweep_scheme.step_factor.png"}


def test_summarising_a_single_run_leaves_its_own_figures_alone(tmp_path):
    run = fake_run(tmp_path, ["+problem=deblur"], [20.0, 25.0])
    own = ("convergence.png", "reconstruction.png", "summary.csv")  # summary.csv: a folder run's own table
    for name in own:
        (run / name).write_bytes(b"the run's own figure")
        os.utime(run / name, (1_000_000_000, 1_000_000_000))
    rows, written = summarise(run)
    assert len(rows) == 1
    assert {p.name for p in written} == {"sweep_summary.csv", "sweep_summary.md", "sweep_convergence.png"}
    for name in own:
        assert (run / name).read_bytes() == b"the run's own figure"
        assert (run / name).stat().st_mtime == 1_000_000_000
    assert (run / "sweep_convergence.png").read_bytes().startswith(b"\x89PNG")


def test_the_objective_gap_leaves_out_the_minimum_that_a_log_axis_cannot_show():
    gap = objective_gap([3.0, 2.0, 1.0])
    assert gap[:2] == [2.0, 1.0] and math.isnan(gap[2])
    assert objective_gap([float("nan")] * 3) is None and objective_gap(None) is None


def test_the_readme_figures_come_from_its_demo_command_and_exist():
    script, readme = (ROOT / "scripts" / "readme_figures.sh").read_text(), (ROOT / "README.md").read_text()
    demo = re.search(r"# set up and run the demo.*\n(.*)\n", readme).group(1).split(".venv/bin/")[-1]
    assert demo == "python -m pnp.solve +problem=deblur" and f"\n{demo} " in script
    assert "scripts/plot_convergence.py" in script
    for name in ("demo_reconstruction.png", "sweep_convergence.png"):
        assert f"](docs/figures/{name})" in readme and name in script
        assert (ROOT / "docs" / "figures" / name).read_bytes().startswith(b"\x89PNG")
