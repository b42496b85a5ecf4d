"""A seeded fault campaign over problem × scheme × denoiser × fidelity × equivariance × dtype × init × bad values.

Every drawn configuration goes through what ``python -m pnp.solve`` does (composition, tuned strengths, the
``user_errors`` guard, :func:`pnp.solve.solve`) on a tiny image. Each must either finish with finite outputs and a
valid ``metrics.json`` (a converged run never carries a NaN), or stop with exactly one ``error:`` line and exit
status 2. Anything else (an exception escaping, i.e. a traceback at the command line) fails the campaign, with the
offending configurations listed.
"""

from __future__ import annotations

import random

import pytest
from conftest import run_like_the_cli

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
