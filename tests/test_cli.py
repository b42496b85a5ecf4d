"""The command line: one smoke run per problem, a sweep with its plotting script, and every bad input."""

from __future__ import annotations

import csv
import json
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_entry_point, run_like_the_cli
from skimage import io

from pnp.cli import check_composition, train
from pnp.cli import solve as solve_script

ROOT = Path(__file__).resolve().parent.parent
FAST = ["image.size=32", "monitor.max_iter=6", "monitor.check_every=3", "device=cpu"]
OUTPUTS = ("metrics.json", "history.csv", "reconstruction.png", "convergence.png")


def solve(*args: str, run_dir: Path | None = None) -> subprocess.CompletedProcess:
    extra = [f"hydra.run.dir={run_dir}"] if run_dir else ["hydra.run.dir=" + str(ROOT / "outputs" / "test")]
    return subprocess.run(
        [sys.executable, "-m", "pnp.solve", *args, *extra], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def solve_here(*args: str, run_dir: Path) -> tuple[dict, str]:
    """A run as ``python -m pnp.solve`` makes it, in this process (a subprocess costs seconds of imports): its
    metrics.json and its one-line summary."""
    outcome, line = run_like_the_cli(list(args), run_dir)
    assert outcome == "ok", line
    return json.loads((run_dir / "metrics.json").read_text()), line


def refused_here(args: list[str], run_dir: Path, *fragments: str) -> None:
    """``python -m pnp.solve <args>`` ends with one ``error:`` line (exit status 2) holding ``fragments``, no
    traceback: checked in this process."""
    outcome, stderr = run_like_the_cli(args, run_dir)
    assert outcome == "user error", (outcome, stderr)
    assert "Traceback" not in stderr and all(fragment in stderr for fragment in fragments), stderr


def plot_script(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "scripts/plot_convergence.py", str(folder)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def plot_here() -> None:
    """scripts/plot_convergence.py in this process (with :func:`conftest.run_entry_point`)."""
    runpy.run_path(str(ROOT / "scripts" / "plot_convergence.py"), run_name="__main__")


def assert_user_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr


@pytest.mark.parametrize("problem", ["deblur", "ct", "cs"])
def test_problem_smoke(problem, tmp_path):
    """deblur as a real ``python -m pnp.solve`` process (its summary is the first line of stdout), the others in this
    process."""
    if problem == "deblur":
        proc = solve(f"+problem={problem}", *FAST, run_dir=tmp_path)
        assert proc.returncode == 0, proc.stderr
        m, stdout = json.loads((tmp_path / "metrics.json").read_text()), proc.stdout
    else:
        m, stdout = solve_here(f"+problem={problem}", *FAST, run_dir=tmp_path)
    for name in OUTPUTS:
        assert (tmp_path / name).stat().st_size > 0, name
    for key in (
        "psnr_observation",
        "psnr_init",
        "psnr",
        "ssim",
        "iterations",
        "converged",
        "diverged",
        "final_residual",
        "wall_time_s",
        "device",
        "config",
    ):
        assert key in m
    assert m["iterations"] == 6 and m["device"] == "cpu" and not m["diverged"]
    assert m["config"]["problem"]["_target_"] == f"pnp.problems.{problem}"
    assert m["psnr"] > m["psnr_init"] - 0.5
    assert (m["psnr_observation"] is None) == (problem != "deblur")
    with (tmp_path / "history.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6
    assert set(rows[0]) >= {"iter", "residual", "rel_residual", "psnr", "fidelity", "time_s"}
    assert all(float(r["fidelity"]) >= 0 for r in rows)
    assert " · AGD" in stdout and " · wcrr(" in stdout and "PSNR" in stdout  # the default: explicit
    assert stdout.startswith("deblur(gaussian σ=1.6) · " if problem == "deblur" else f"{problem} · ")
    assert m["guarantee"]["covered"] and "guarantee: " in stdout  # the default sits in a covered regime
    assert isinstance(m["residual_monotone"], bool) and len(m["residual_largest_increase"]) == 1


def test_theta_relaxed_blind_network_is_covered_and_says_so(tmp_path):
    # scheme=pgd: euler's tuned deblurring setting is PnP-ADMM; chosen on the command line, PGD keeps only θ
    args = ("+problem=deblur", "denoiser=euler", "scheme=pgd", "denoiser.theta=0.5", "strict=true", *FAST)
    m, line = solve_here(*args, run_dir=tmp_path)
    assert m["guarantee"]["covered"] and m["guarantee"]["denoiser"] == {
        "kind": "averaged",
        "alpha": 0.5,
        "basis": "theta=0.5 on nonexpansive",
    }
    assert "PGD · euler(θ=0.5)" in line and "Krasnosel" in line


def test_a_tuned_admm_penalty_runs_by_default_and_says_so(tmp_path):
    """euler's tuned deblurring setting (pnp/configs/tuned/deblur_euler.yaml) is PnP-ADMM at its penalty, θ = ½:
    firmly nonexpansive, so Eckstein-Bertsekas covers it."""
    m, line = solve_here("+problem=deblur", "denoiser=euler", "strict=true", *FAST, run_dir=tmp_path)
    assert m["guarantee"]["covered"] and "Eckstein" in m["guarantee"]["theorem"]
    assert " · ADMM(γL=" in line and "euler(θ=0.5)" in line


def test_explicit_prior_runs_accelerated_gradient_with_a_monitored_objective(tmp_path):
    m, line = solve_here("+problem=deblur", "denoiser=crr", "strict=true", *FAST, run_dir=tmp_path)
    assert m["config"]["scheme"]["_target_"] == "pnp.schemes.AGD"
    assert "deblur(gaussian σ=1.6) · AGD · crr" in line
    assert "F(x_k) never increased" in line
    assert m["guarantee"]["covered"] and "Li-Lin" in m["guarantee"]["theorem"]
    assert m["objective_monotone"] and m["objective_largest_increase"][0] <= 0
    with (tmp_path / "history.csv").open() as f:
        objective = [float(r["objective"]) for r in csv.DictReader(f)]
    assert len(objective) == 6 and objective == sorted(objective, reverse=True)
    assert (tmp_path / "convergence.png").stat().st_size > 0
    # the prox of the same prior in PnP-PGD (the command line wins over the config's scheme choice)
    _, line = solve_here("+problem=deblur", "denoiser=crr", "scheme=pgd", *FAST, run_dir=tmp_path / "pgd")
    assert "deblur(gaussian σ=1.6) · PGD · crr" in line
    refused_here(["+problem=deblur", "denoiser=euler", "scheme=agd", *FAST], tmp_path / "agd", "explicit prior")


def test_sweep_and_plot_script(tmp_path):
    sweep = tmp_path / "sweep"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pnp.solve",
            "-m",
            "+problem=deblur",
            "scheme=pgd,admm",
            "denoiser=tv,wavelet",
            *FAST,
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    runs = sorted(p for p in sweep.iterdir() if p.is_dir() and (p / "metrics.json").exists())
    assert len(runs) == 4
    own = {run: (run / "convergence.png").read_bytes() for run in runs}
    plot = plot_script(sweep)
    assert plot.returncode == 0, plot.stderr
    for name in ("summary.csv", "summary.md", "sweep_convergence.png"):
        assert (sweep / name).stat().st_size > 0
    code, _, err = run_entry_point(plot_here, ["plot_convergence.py", str(runs[0])])  # here: one process is enough
    assert code == 0, err  # a single run's folder: its own figure stays, and its tables are named apart
    assert (runs[0] / "sweep_convergence.png").exists() and (runs[0] / "sweep_summary.csv").exists()
    assert not (runs[0] / "summary.csv").exists()
    assert all((run / "convergence.png").read_bytes() == figure for run, figure in own.items())
    with (sweep / "summary.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4
    assert {r["overrides"] for r in rows} == {
        f"scheme={s} denoiser={d}" for s in ("pgd", "admm") for d in ("tv", "wavelet")
    }
    assert set(rows[0]) >= {"overrides", "psnr", "ssim", "iterations", "converged", "wall_time_s"}
    assert (sweep / "summary.md").read_text().count("\n|") >= 5


def test_plot_script_rejects_a_folder_without_runs(tmp_path):
    code, _, err = run_entry_point(plot_here, ["plot_convergence.py", str(tmp_path)])
    assert code == 2 and err.startswith("error: ") and "no runs" in err, err


def test_user_colour_image_and_seed_reproducibility(tmp_path):
    rng = np.random.default_rng(0)
    image = (rng.random((40, 50, 3)) * 255).astype(np.uint8)
    io.imsave(tmp_path / "mine.png", image)
    args = ("+problem=deblur", f"image.path={tmp_path / 'mine.png'}", "image.gray=false", "image.fit=crop", *FAST)
    (ma, _), (mb, _) = (solve_here(*args, run_dir=tmp_path / r) for r in ("a", "b"))
    assert ma["psnr"] == mb["psnr"] and ma["final_residual"] == mb["final_residual"]
    assert solve_here(*args, "seed=1", run_dir=tmp_path / "c")[0]["psnr"] != ma["psnr"]


def test_no_problem_lists_the_problems(tmp_path):
    refused_here([], tmp_path, "choose a problem", "deblur", "ct", "cs")


BAD_INPUT = [
    (["+problem=deblur", "scheme=sgd"], ["scheme", "sgd"]),
    (["+problem=deblur", "problem.bogus=1"], ["bogus"]),
    (["+problem=deblur", "image.path=/nonexistent/x.png"], ["error: image file not found"]),
    (["+problem=deblur", "problem.noise_sigma=-0.1"], ["error: noise_sigma must be a finite number >= 0"]),
    (["+problem=deblur", "problem.noise_sigma=nan"], ["error: noise_sigma"]),
    (["+problem=deblur", "problem.kernel=uniform", "problem.kernel_size=41"], ["error: image of 32×32 pixels"]),
    (["+problem=cs", "problem.ratio=1.5"], ["error: ratio must be in (0, 1]"]),
    (["+problem=cs", "problem.ratio=0"], ["error: ratio must be in (0, 1]"]),
    (["+problem=deblur", "scheme.step_factor=2.5", "strict=true"], ["error: step_factor=2.5 is above 1", "strict"]),
    (
        ["+problem=deblur", "scheme=pgd", "denoiser=tv", "scheme.step_factor=2.5", "strict=true"],
        ["error: step size"],
    ),
    (["+problem=deblur", "dtype=float16"], ["error: dtype"]),
    (["+problem=deblur", "seed=abc"], ["error: seed must be an integer, got 'abc'"]),
    (["+problem=deblur", "image.gray=maybe"], ["error: image.gray must be true or false"]),
    (["+problem=deblur", "denoiser=euler", "denoiser.sigma=0.1"], ["error: denoiser euler is blind", "theta"]),
    (["+problem=deblur", "denoiser=tv", "denoiser.sigma=-1"], ["error: denoiser.sigma must be", "> 0"]),
    (["+problem=deblur", "denoiser=tv", "denoiser.sigma=nan"], ["error: denoiser.sigma must be"]),
    (["+problem=deblur", "denoiser=euler", "denoiser.theta=1.5"], ["error: theta must be in (0, 1]"]),
    (["+problem=deblur", "denoiser=euler", "denoiser.theta=1", "strict=true"], ["error: no convergence theorem"]),
    (["+problem=deblur", "denoiser=dncnn", "strict=true"], ["error: no convergence theorem", "'none'"]),
    (["+problem=deblur", "equivariant=null"], ["error: equivariant=null", "~equivariant"]),
    (["+problem=cs", "fidelity=l1", "scheme=pgd", "denoiser=tv"], ["error: the data fidelity", "scheme=admm"]),
]


@pytest.mark.parametrize(("args", "fragments"), BAD_INPUT)
def test_bad_input_is_one_clear_line(args, fragments, tmp_path):
    refused_here([*args, *FAST], tmp_path / "run", *fragments)


@pytest.mark.parametrize(("args", "fragments"), [BAD_INPUT[i] for i in (0, 8)])
def test_bad_input_is_one_clear_line_at_the_command_line(args, fragments):
    """Two of the cases above as real ``python -m pnp.solve`` processes: a composition mistake and a refusal of strict
    mode (the rest run in-process, as the command line would, to spare seconds of imports each; a bad file as a
    process: tests/test_real_data.py)."""
    assert_user_error(solve(*args, *FAST), *fragments)


def test_unreadable_image(tmp_path):
    (tmp_path / "broken.png").write_text("not an image")
    refused_here(
        ["+problem=deblur", f"image.path={tmp_path / 'broken.png'}", *FAST], tmp_path, "error: cannot read image"
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_gpu(tmp_path):
    refused_here(["+problem=deblur", *FAST[:-1], "device=cuda"], tmp_path, "error: device=cuda", "no CUDA GPU")


def test_step_above_bound_is_a_warning(tmp_path, caplog):
    solve_here("+problem=deblur", "scheme.step_factor=2.5", *FAST, run_dir=tmp_path)
    assert "convergence is not guaranteed" in caplog.text


def test_divergence_is_reported_with_its_own_exit_status(tmp_path):
    proc = solve(
        "+problem=deblur",
        "scheme.step_factor=4",
        "denoiser=wavelet",
        "monitor.max_iter=200",
        *FAST[:1],
        *FAST[2:],
        run_dir=tmp_path,
    )
    assert proc.returncode == 3, proc.stderr
    assert "diverged at iteration" in proc.stderr and "Traceback" not in proc.stderr
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["diverged"] and not m["converged"] and m["iterations"] < 200
    assert np.isfinite(m["psnr"])


def test_a_diverged_run_reports_the_iterate_it_returns(tmp_path):
    args = ("+problem=deblur", "scheme.stepsize=100", "denoiser=dncnn", *FAST[:1], "monitor.max_iter=20")
    m, line = solve_here(*args, run_dir=tmp_path)  # its exit status 3: the test above
    assert m["diverged"]
    (k,) = m["returned_iteration"]
    assert 0 < k < m["iterations"] and f"returning iterate {k} " in m["message"]
    assert f"result: iterate {k}," in line
    with (tmp_path / "history.csv").open() as f:
        row = list(csv.DictReader(f))[k - 1]
    assert float(row["psnr"]) == pytest.approx(m["psnr"], abs=1e-4)
    assert float(row["rel_residual"]) == pytest.approx(m["final_rel_residual"], rel=1e-6)


@pytest.mark.parametrize("fail", [True, False])
def test_a_sweep_with_a_diverged_run_fails_unless_told_not_to(fail, tmp_path):
    args = [
        "-m",
        "+problem=deblur",
        "scheme.stepsize=1,100",
        "denoiser=dncnn",
        *FAST[:1],
        "monitor.max_iter=20",
        "plots=false",
        f"sweep_fails_on_divergence={fail}",
        f"hydra.sweep.dir={tmp_path}",
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "pnp.solve", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == (3 if fail else 0), proc.stderr
    assert ("1 run(s) of the sweep diverged:\n  +problem=deblur scheme.stepsize=100" in proc.stderr) == fail
    assert len(list(tmp_path.glob("*/metrics.json"))) == 2


CONFIG_MISTAKES = [
    (["+problem=deblurr"], ["problem has no option `deblurr`", "did you mean `deblur`?", "deblur_motion"]),
    (["+problem=deblur", "denoiser=eulr"], ["did you mean `euler`?", "options: bm3d"]),
    (["+problem=deblur", "image.sise=64"], ["unknown key `image.sise`", "did you mean `image.size`?"]),
    (["+problem=deblur", "denoisr=tv"], ["unknown key `denoisr`", "did you mean `denoiser`?"]),
    (["+problem=deblur", "recipe=euler_cpu"], ["pnp.solve has no config group `recipe`", "its groups:"]),
    (["+problem=deblur", "+recipe=euler_cpu"], ["pnp.solve has no config group `recipe`"]),
    (["problem=deblur"], ["add it with a `+`: +problem=deblur"]),
    (["-m", "+problem=deblur", "denoiser=tv,eulr"], ["denoiser=eulr", "did you mean `euler`?"]),
    (["+problem=deblur", "monitor.max_iter=[1"], ["cannot parse the overrides"]),
    (["+problem=deblur", "image.path=~/my.png"], ["cannot parse the overrides", "'key=\"value\"'"]),
]


@pytest.mark.parametrize(("args", "fragments"), CONFIG_MISTAKES)
def test_config_mistakes_are_one_line_with_the_closest_choice(args, fragments):
    message = check_composition([*args, *FAST], "solve")
    assert message is not None and "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message


def test_the_quoting_hint_comes_only_with_a_value_quoting_would_fix():
    message = check_composition(["+problem=deblur", "monitor.max_iter=[1", *FAST], "solve")
    assert message.startswith("cannot parse the overrides") and "quote" not in message


@pytest.mark.parametrize(("args", "fragments"), [CONFIG_MISTAKES[i] for i in (0, 7)])
def test_config_mistakes_at_the_command_line_stop_before_any_output(args, fragments, tmp_path):
    """As real processes: the one ``error:`` line is all the command prints, exit status 2, and no run (or sweep)
    folder is created."""
    run_dir = tmp_path / "run"
    proc = solve(*args, *FAST, run_dir=run_dir)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == "" and proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr
    assert not run_dir.exists() and not (ROOT / "multirun").exists()


@pytest.mark.parametrize(
    ("args", "fragment"), [(["denoiser=eulr"], "did you mean `euler`?"), (["stepz=3"], "did you mean `steps`?")]
)
def test_training_config_mistakes_are_one_line_with_the_closest_choice(args, fragment):
    message = check_composition(args, "train")
    assert message is not None and "\n" not in message and fragment in message, message


@pytest.mark.parametrize(
    ("module", "args", "fragment"),
    [
        ("pnp.train", ["+problem=deblur"], "pnp.train has no config group `problem`"),
        ("pnp.certify", ["denoiser=fne_dncn"], "did you mean `fne_dncnn`?"),
        ("pnp.tune", ["+problem=deblur", "tune.parm=denoiser.theta"], "did you mean `tune.param`?"),
    ],
)
def test_every_entry_point_reports_config_mistakes_in_one_line(module, args, fragment, tmp_path):
    """One real process per entry point (pnp.solve's: above)."""
    proc = subprocess.run(
        [sys.executable, "-m", module, *args, f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and fragment in proc.stderr, proc.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("script", "own", "foreign"), [(solve_script, "problem", "recipe"), (train, "recipe", "problem")]
)
def test_help_lists_only_the_entry_points_groups(script, own, foreign):
    """In this process (tests/test_package.py runs ``python -m pnp.solve --help`` as a process)."""
    code, stdout, stderr = run_entry_point(script, ["pnp", "--help"])
    assert code == 0, stderr
    groups = [line.split()[0] for line in stdout.split("keys (key=value):")[0].splitlines() if line.startswith("  ")]
    assert own in groups and foreign not in groups and "tuned" not in groups, stdout


def test_one_log_summary_on_stdout_warnings_on_stderr_and_both_in_the_run_log(tmp_path):
    proc = solve("+problem=deblur", "scheme=pgd", "scheme.step_factor=2.5", "denoiser=tv", *FAST, run_dir=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = proc.stdout.strip().splitlines()[-1]
    assert summary.startswith("deblur(gaussian σ=1.6) · PGD(γL=2.5) · tv") and "warning" not in proc.stdout
    assert "warning: step size γ=2.5 is not below 2/L" in proc.stderr
    logged = (tmp_path / "solve.log").read_text()
    assert summary in logged and "[WARNING] - step size γ=2.5" in logged


def test_a_bad_value_is_logged_in_the_run_that_it_stopped(tmp_path):
    proc = solve("+problem=deblur", "denoiser=tv", "denoiser.sigma=-1", *FAST, run_dir=tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("error: ") == 1, proc.stderr
    assert "[ERROR] - denoiser.sigma must be" in (tmp_path / "solve.log").read_text()
