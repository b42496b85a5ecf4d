"""A seeded fault campaign over problem × scheme × denoiser × fidelity × equivariance × dtype × init × bad values.

Every drawn configuration goes through what ``python -m pnp.solve`` does (composition, tuned strengths, the
``user_errors`` guard, :func:`pnp.solve.solve`) on a tiny image. Each must either finish with finite outputs and a
valid ``metrics.json`` (a converged run never carries a NaN), or stop with exactly one ``error:`` line and exit
status 2. Anything else (an exception escaping, i.e. a traceback at the command line) fails the campaign, with the
offending configurations listed.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import random
from pathlib import Path

import pytest

from pnp.cli import EXIT_USER_ERROR, user_errors
from pnp.config import apply_tuned, composed
from pnp.solve import solve

N_CONFIGS = 50
AXES = {
    "+problem": ["deblur", "deblur_motion", "ct", "cs"],
    "scheme": ["pgd", "pgd", "admm", "admm", "agd"],
    "denoiser": ["tv", "wavelet", "crr", "wcrr", "euler", "fne_dncnn", "lpn", "dncnn"],
    "fidelity": ["l2", "l2", "l2", "l2", "l1", "poisson"],
    "equivariant": [None, None, "random", "average"],
    "dtype": ["float32", "float32", "float64"],
    "problem.init": [None, None, None, None, "zeros", "adjoint", "bogus"],
}
#: bad or edge values, one of which (or none) joins each configuration
FAULTS = [
    *[None] * 8,
    "denoiser.sigma=0",
    "denoiser.sigma=-0.1",
    "denoiser.sigma=nan",
    "denoiser.theta=0.5",
    "denoiser.theta=0",
    "denoiser.theta=2",
    "scheme.step_factor=-1",
    "scheme.step_factor=3",
    "monitor.max_iter=0",
    "monitor.tol=-1",
    "image.size=3",
    "seed=7",
]
FAST = ["image.size=32", "monitor.max_iter=4", "monitor.check_every=2", "monitor.progress=false", "device=cpu"]


def draw(rng: random.Random) -> list[str]:
    picks = {axis: rng.choice(values) for axis, values in AXES.items()}
    overrides = [f"{axis}={value}" for axis, value in picks.items() if value is not None]
    fault = rng.choice(FAULTS)
    # a fault may override a FAST setting: it comes last, so it wins
    return [*FAST, *overrides, *([fault] if fault else [])]


def run_like_the_cli(overrides: list[str], run_dir: Path) -> tuple[str, str]:
    """('ok' | 'user error' | 'bad: …', stderr): what ``python -m pnp.solve`` would end with."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), user_errors():
            cfg = composed(*overrides)
            apply_tuned(cfg, overrides)
            metrics = solve(cfg, run_dir)
    except SystemExit as stop:
        lines = err.getvalue().strip().splitlines()
        errors = [line for line in lines if line.startswith("error:")]
        if stop.code == EXIT_USER_ERROR and len(errors) == 1:
            return "user error", err.getvalue()
        return f"bad: exit {stop.code} with {len(errors)} error lines", err.getvalue()
    except Exception as exc:
        return f"bad: {type(exc).__name__}: {str(exc)[:200]}", err.getvalue()
    on_disk = json.loads((run_dir / "metrics.json").read_text())
    finite = all(math.isfinite(on_disk[k]) for k in ("psnr", "ssim", "final_rel_residual"))
    if not finite and (metrics["converged"] or not metrics["diverged"]):
        return "bad: non-finite metrics in a run not reported diverged", ""
    return "ok", ""


def test_fault_campaign(tmp_path, capsys):
    rng = random.Random(0)
    configs = [draw(rng) for _ in range(N_CONFIGS)]
    outcomes = [run_like_the_cli(c, tmp_path / str(i)) for i, c in enumerate(configs)]
    bad = [(c, o) for c, o in zip(configs, outcomes, strict=True) if o[0].startswith("bad")]
    counts = {kind: sum(o[0] == kind for o in outcomes) for kind in ("ok", "user error")}
    with capsys.disabled():
        print(f"\nfault campaign: {len(configs)} configurations, {counts['ok']} ran, {counts['user error']} refused")
    assert not bad, "\n".join(f"{' '.join(c)} -> {o[0]}" for c, o in bad)
    assert counts["ok"] >= N_CONFIGS // 4 and counts["user error"] >= N_CONFIGS // 6  # the draw covers both


@pytest.mark.parametrize(
    "overrides",
    [["+problem=deblur", "problem.init=zeros"], ["+problem=cs", "fidelity=l1", "scheme=admm"]],
)
def test_campaign_runner_accepts_good_runs(overrides, tmp_path):
    assert run_like_the_cli([*FAST, *overrides], tmp_path)[0] == "ok"
