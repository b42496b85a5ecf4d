"""Smoke runs of the benchmark scripts (their quick modes, on tiny cases): they run, write their tables, and the
speed contenders compute the same iterates. No timing is asserted."""

from __future__ import annotations

import csv
import itertools
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def benchmark(script: str, *args: str, folder: str = "benchmarks") -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, f"{folder}/{script}", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def rows(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_speed_quick_contenders_agree(tmp_path):
    benchmark("speed.py", "--quick", "--device", "cpu", "--out", str(tmp_path))
    table = rows(tmp_path / "speed_quick.csv")
    assert {r["contender"] for r in table} == {"pnp", "bare", "deepinv", "deepinv0"}
    assert {r["case"].split()[0] for r in table} == {"pgd", "admm"}
    for r in table:
        assert float(r["max_rel_diff_vs_bare"]) < 1e-4, r
        assert float(r["per_iter_ms"]) > 0 and float(r["peak_mib"]) > 0
    assert (tmp_path / "speed_quick.md").read_text().startswith("# Speed")


def test_quality_small_subset(tmp_path):
    args = ("--problems", "deblur", "--priors", "tv,crr,euler", "--size", "32", "--count", "2", "--max-iter", "12")
    args = (*args, "--no-config-budget")  # tv's config asks 2000 iterations
    benchmark("quality.py", *args, "--max-iter-agd", "12", "--out", str(tmp_path))
    table = rows(tmp_path / "quality_deblur.csv")
    assert [r["prior"] for r in table] == ["tv", "crr", "euler"]
    # the explicit prior's config selects AGD; euler's tuned deblurring setting is PnP-ADMM
    assert [r["scheme"] for r in table] == ["PGD", "AGD", "ADMM"]
    assert table[1]["F_monotone"] == "2/2" and table[0]["F_monotone"] == "-"  # TV: no cost evaluated
    for r in table:
        assert 15 < float(r["psnr"]) < 40 and r["covered"] in ("True", "False") and r["converged"].endswith("/2")
    assert (tmp_path / "quality_deblur.png").stat().st_size > 0


def test_quality_update_replaces_only_the_priors_it_runs(tmp_path):
    small = ("--problems", "deblur", "--size", "32", "--count", "1", "--max-iter", "4", "--max-iter-agd", "4")
    small = (*small, "--no-config-budget")
    benchmark("quality.py", *small, "--priors", "tv,euler", "--out", str(tmp_path))
    before = rows(tmp_path / "quality_deblur.csv")
    benchmark("quality.py", *small, "--priors", "wavelet,tv", "--update", "--out", str(tmp_path))
    after = rows(tmp_path / "quality_deblur.csv")
    assert [r["prior"] for r in after] == ["tv", "wavelet", "euler"]  # the table's order, the new prior added
    assert after[2] == before[1]  # euler's row kept as it was, its date included
    assert all(r["measured"] for r in after)
    assert "`measured` gives each row's date" in (tmp_path / "quality_deblur.md").read_text()


def test_quality_rejects_unknown_names():
    proc = subprocess.run(
        [sys.executable, "benchmarks/quality.py", "--priors", "tv,nope"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "unknown problem or prior: nope" in proc.stderr


def test_repeated_denoising_steps_never_grow_for_the_nonexpansive_euler(tmp_path):
    args = ("--denoisers", "euler", "tv", "--iterations", "8", "--size", "32", "--out", str(tmp_path))
    benchmark("repeated_denoising.py", *args, folder="scripts")
    table = rows(tmp_path / "repeated_denoising.csv")
    steps = [float(r["rel_step"]) for r in table if r["denoiser"] == "euler"]
    assert len(steps) == 8 and len(table) == 16
    assert all(b <= a * (1 + 1e-5) for a, b in itertools.pairwise(steps)), steps
    assert (tmp_path / "repeated_denoising.png").stat().st_size > 0
