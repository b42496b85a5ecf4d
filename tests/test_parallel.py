"""Scaling out: sweeps run by Hydra's joblib and submitit launchers give the serial sweep's results, the threads of
their jobs share the cores out, the Slurm config composes, and two torchrun processes train one model."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_training import TINY_NET, TINY_TRAIN

from pnp import parallel
from pnp.cli import Composer
from pnp.errors import ConfigError
from pnp.sweep import summarise
from pnp.train import train

ROOT = Path(__file__).resolve().parent.parent
#: two runs, the second diverges: every launcher must report it and exit with status 3
SWEEP = ["+problem=deblur", "image.size=32", "monitor.max_iter=20", "denoiser=dncnn", "scheme.stepsize=1,100",
         "plots=false", "threads=1", "device=cpu"]  # fmt: skip
DNCNN = ["denoiser=dncnn", *TINY_NET["dncnn"], *TINY_TRAIN]


def installed(plugin: str) -> pytest.MarkDecorator:
    """Skip without Hydra's launcher ``plugin`` (``pip install -e ".[cluster]"``)."""
    try:
        found = importlib.util.find_spec(f"hydra_plugins.{plugin}") is not None
    except ModuleNotFoundError:
        found = False
    return pytest.mark.skipif(not found, reason=f"needs {plugin.replace('_', '-')}")


JOBLIB, SUBMITIT = installed("hydra_joblib_launcher"), installed("hydra_submitit_launcher")


def sweep(folder: Path, *launcher: str) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """The sweep's process and its summary rows (pnp.sweep, as scripts/plot_convergence.py writes them)."""
    proc = subprocess.run(
        [sys.executable, "-m", "pnp.solve", "-m", *launcher, *SWEEP, f"hydra.sweep.dir={folder}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 3, proc.stderr[-3000:]
    rows, _ = summarise(folder)
    assert (folder / "summary.md").is_file()
    return proc, [{k: v for k, v in r.items() if k != "wall_time_s"} for r in rows]


@pytest.fixture(scope="module")
def serial(tmp_path_factory) -> tuple[subprocess.CompletedProcess, list[dict]]:
    return sweep(tmp_path_factory.mktemp("serial"))


@pytest.mark.parametrize(
    "launcher",
    [
        pytest.param(["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], marks=JOBLIB, id="joblib"),
        pytest.param(["hydra/launcher=submitit_local"], marks=SUBMITIT, id="submitit_local"),
    ],
)
def test_a_parallel_sweep_gives_the_serial_sweeps_results(launcher, serial, tmp_path):
    proc, rows = sweep(tmp_path, *launcher)
    assert rows == serial[1] and len(rows) == 2 and [r["diverged"] for r in rows] == [False, True]
    report = proc.stderr[proc.stderr.index("error: 1 run(s) of the sweep diverged") :]
    assert report == serial[0].stderr[serial[0].stderr.index("error: 1 run(s)") :] and "stepsize=100" in report
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir() and not p.name.startswith(".")) == ["0", "1"]


def test_the_threads_of_a_job(monkeypatch):
    solve = Composer("solve")
    assert parallel.job_threads(solve(["+problem=deblur"])) is None  # one process: torch's default
    assert parallel.job_threads(solve(["+problem=deblur", "threads=3"])) == 3
    with pytest.raises(ConfigError, match="threads must be a positive integer"):
        parallel.job_threads(solve(["threads=0"]))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # torchrun --nproc_per_node=2
    assert parallel.job_threads(Composer("train")([])) == max(1, parallel.cores() // 2)


@JOBLIB
@SUBMITIT
def test_the_jobs_of_a_launcher_share_the_cores_out():
    solve = Composer("solve")
    two_workers = solve(["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"])
    assert parallel.job_threads(two_workers) == max(1, parallel.cores() // 2)
    assert parallel.job_threads(solve(["hydra/launcher=joblib"])) == 1  # n_jobs=-1: one worker per core
    assert parallel.job_threads(solve(["hydra/launcher=submitit_local", "hydra.launcher.cpus_per_task=3"])) == 3


@SUBMITIT
def test_the_slurm_launcher_config_extends_the_plugins():
    launcher = Composer("solve")(["hydra/launcher=slurm", "hydra.launcher.partition=gpu"]).hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher") and launcher.partition == "gpu"
    assert (launcher.timeout_min, launcher.cpus_per_task, launcher.array_parallelism) == (60, 4, 64)


def torchrun(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "pnp.train", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_two_torchrun_processes_train_one_model_and_resume(tmp_path):
    """Each process draws its own patches, the averaged gradients keep the replicas identical (pnp.train checks that
    they end with the same weights and buffers), rank 0 writes; a resume needs as many processes."""
    torchrun(*DNCNN, "steps=4", f"hydra.run.dir={tmp_path}")
    manifest = json.loads((tmp_path / "dncnn.json").read_text())
    assert manifest["processes"] == 2 and manifest["history"][-1]["val_psnr"] > manifest["history"][0]["val_psnr"]
    streams = torch.load(tmp_path / "checkpoint.pt", weights_only=False)["random"]
    assert len(streams) == 2 and not torch.equal(streams[0]["generator"], streams[1]["generator"])
    torchrun(*DNCNN, "steps=6", "resume=true", f"hydra.run.dir={tmp_path}")
    manifest = json.loads((tmp_path / "dncnn.json").read_text())
    assert [h["step"] for h in manifest["history"]] == [2, 4, 6] and manifest["processes"] == 2
    with pytest.raises(ConfigError, match=r"written by 2 process\(es\)"):
        train(Composer("train")([*DNCNN, "steps=6", "resume=true"]), tmp_path)
