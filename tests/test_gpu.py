"""The CUDA branches, on a machine with a GPU (every test skips without one): a solve on the GPU agrees with the CPU,
training and its resume run there, the speed benchmark times CUDA, and with two GPUs torchrun trains over nccl."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
import torch
from test_cli import ROOT, solve
from test_parallel import torchrun
from test_training import TINY_NET, TINY_TRAIN, run

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
TINY_SOLVE = ["+problem=deblur", "image.size=32", "monitor.max_iter=10", "denoiser=tv", "plots=false"]
ON_GPU = [*(a for a in TINY_TRAIN if not a.startswith("device=")), "device=cuda"]


def test_a_solve_on_the_gpu_agrees_with_the_cpu(tmp_path):
    metrics = {}
    for device in ("cpu", "cuda"):
        proc = solve(*TINY_SOLVE, f"device={device}", run_dir=tmp_path / device)
        assert proc.returncode == 0, proc.stderr[-3000:]
        metrics[device] = json.loads((tmp_path / device / "metrics.json").read_text())
    cpu, gpu = metrics["cpu"], metrics["cuda"]
    assert gpu["device"].startswith("cuda") and gpu["iterations"] == cpu["iterations"] == 10
    assert gpu["psnr"] == pytest.approx(cpu["psnr"], abs=0.01) and gpu["wall_time_s"] > 0


def test_training_and_its_resume_on_the_gpu(tmp_path):
    """The Euler network keeps its power-iteration vectors on the GPU; the checkpoint's random streams come back
    to the host when resumed."""
    args = ["denoiser=euler", *TINY_NET["euler"], *ON_GPU, f"hydra.run.dir={tmp_path}"]
    run("pnp.train", *args, "steps=4")
    run("pnp.train", *args, "steps=6", "resume=true")
    manifest = json.loads((tmp_path / "euler.json").read_text())
    assert manifest["device"].startswith("cuda") and [h["step"] for h in manifest["history"]] == [2, 4, 6]


def test_the_speed_benchmark_times_the_gpu(tmp_path):
    proc = subprocess.run(
        [sys.executable, "benchmarks/speed.py", "--quick", "--device", "cuda", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with (tmp_path / "speed_quick.csv").open() as f:
        table = list(csv.DictReader(f))
    assert {r["contender"] for r in table} == {"pnp", "bare", "deepinv", "deepinv0"}
    for r in table:  # CUDA-synchronised timings and CUDA peak memory, the same iterates
        assert float(r["max_rel_diff_vs_bare"]) < 1e-4 and float(r["per_iter_ms"]) > 0 and float(r["peak_mib"]) > 0
    assert "(cuda)" in (tmp_path / "speed_quick.md").read_text()


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs (nccl: one GPU per process)")
def test_two_torchrun_processes_train_over_nccl(tmp_path):
    torchrun("denoiser=dncnn", *TINY_NET["dncnn"], *ON_GPU, "steps=4", f"hydra.run.dir={tmp_path}")
    manifest = json.loads((tmp_path / "dncnn.json").read_text())
    assert manifest["processes"] == 2 and manifest["device"] == "cuda:0"
