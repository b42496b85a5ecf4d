"""The monitor against naive computations, its stopping rules, and the absence of host syncs in the loop."""

from __future__ import annotations

import contextlib
import math

import pytest
import torch
from conftest import ShrinkDenoiser, small_image
from deepinv.optim.data_fidelity import L2

from pnp.errors import ConfigError
from pnp.monitor import ConvergenceMonitor, History
from pnp.problems import deblur
from pnp.schemes import ADMM, PGD


def naive_pgd(problem, denoiser, gamma: float, n: int) -> list[torch.Tensor]:
    xs = [problem.x0]
    for _ in range(n):
        x = xs[-1]
        grad = problem.physics.A_adjoint(problem.physics.A(x) - problem.y)
        xs.append(denoiser(x - gamma * grad, 0.0))
    return xs


def test_statistics_match_naive_values():
    x = small_image(32, batch=2)
    problem = deblur(x, seed=0)
    den, n = ShrinkDenoiser(0.05), 12
    monitor = ConvergenceMonitor(max_iter=n, tol=1e-12, check_every=5, progress=False)
    result = PGD().solve(problem, den, sigma=0.0, monitor=monitor)  # problem.x_true is x
    xs = naive_pgd(problem, den, result.stepsize, n)
    h = result.history
    fid = L2()
    for k in range(n):
        for b in range(2):
            diff = xs[k + 1][b] - xs[k][b]
            assert h.residual[k, b].item() == pytest.approx(diff.norm().item(), rel=1e-5)
            assert h.rel_residual[k, b].item() == pytest.approx((diff.norm() / xs[0][b].norm()).item(), rel=1e-5)
            mse = ((xs[k + 1][b] - x[b]) ** 2).mean().item()
            assert h.psnr[k, b].item() == pytest.approx(-10 * math.log10(mse), rel=1e-5)
            f = fid(xs[k + 1][b : b + 1], problem.y[b : b + 1], problem.physics).item()
            assert h.fidelity[k, b].item() == pytest.approx(f, rel=1e-4)
    assert (h.time_s[1:] >= h.time_s[:-1]).all() and h.time_s[0] > 0
    rows = h.rows()
    assert len(rows) == n and rows[0]["iter"] == 1
    assert rows[3]["rel_residual"] == pytest.approx(h.rel_residual[3].double().mean().item())


def test_admm_fidelity_is_that_of_the_monitored_iterate():
    problem = deblur(small_image(16), seed=0)
    result = ADMM().run(
        problem.y,
        problem.physics,
        ShrinkDenoiser(0.1),
        problem.x0,
        sigma=0.0,
        norm=1.0,
        monitor=ConvergenceMonitor(max_iter=3, progress=False),
    )
    f = L2()(result.x, problem.y, problem.physics).item()
    assert result.history.fidelity[-1, 0].item() == pytest.approx(f, rel=1e-5)


@pytest.mark.parametrize("scheme", [PGD, ADMM])
def test_fidelity_tracking_can_be_switched_off(scheme, monkeypatch):
    problem = deblur(small_image(16), seed=0)

    def run(track: bool):
        monitor = ConvergenceMonitor(max_iter=4, progress=False, track_fidelity=track)
        return scheme().run(
            problem.y, problem.physics, ShrinkDenoiser(0.1), problem.x0, sigma=0.0, norm=1.0, monitor=monitor
        )

    tracked = run(True)
    calls = []
    forward = problem.physics.A
    monkeypatch.setattr(problem.physics, "A", lambda x, **kw: calls.append(1) or forward(x, **kw))
    untracked = run(False)
    assert untracked.history.fidelity is None and tracked.history.fidelity is not None
    # PGD needs A x_k for its gradient (x_0 … x_4: the last one is the price of reporting f with each step); ADMM's
    # prox is closed form
    assert len(calls) == (5 if scheme is PGD else 0)


def test_stops_at_tolerance_only_at_check_points():
    problem = deblur(small_image(16), seed=0)

    def run(every: int):
        monitor = ConvergenceMonitor(max_iter=500, tol=1e-4, check_every=every, progress=False)
        return PGD().run(
            problem.y, problem.physics, ShrinkDenoiser(0.5), problem.x0, sigma=0.0, norm=1.0, monitor=monitor
        )

    h1, h7 = run(1).history, run(7).history
    assert h1.converged and h7.converged
    first = int((h1.rel_residual[:, 0] < 1e-4).nonzero()[0, 0]) + 1
    assert h1.iterations == first
    assert h7.iterations == 7 * math.ceil(first / 7)
    assert "converged in" in h7.message


def test_max_iter_without_convergence_is_reported():
    problem = deblur(small_image(16), seed=0)
    h = (
        PGD()
        .run(
            problem.y,
            problem.physics,
            ShrinkDenoiser(0.0),
            problem.x0,
            sigma=0.0,
            norm=1.0,
            monitor=ConvergenceMonitor(max_iter=13, tol=1e-12, check_every=5, progress=False),
        )
        .history
    )
    assert h.iterations == 13 and not h.converged and not h.diverged
    assert "max_iter=13" in h.message


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_iter": 0}, "max_iter"),
        ({"tol": -1.0}, "tol"),
        ({"tol": math.nan}, "tol"),
        ({"check_every": 0}, "check_every"),
        ({"divergence_factor": 0.0}, "divergence_factor"),
    ],
)
def test_bad_settings(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        ConvergenceMonitor(**kwargs)


class SyncCounter:
    """Counts host synchronisations (.item, .tolist, .cpu, .numpy, bool(tensor)) while ``active``."""

    NAMES = ("item", "tolist", "cpu", "numpy", "__bool__")

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.active, self.calls = False, []
        for name in self.NAMES:
            original = getattr(torch.Tensor, name)
            monkeypatch.setattr(torch.Tensor, name, self.wrap(name, original))

    def wrap(self, name, original):
        def counted(tensor, *args, **kwargs):
            if self.active:
                self.calls.append(name)
            return original(tensor, *args, **kwargs)

        return counted

    @contextlib.contextmanager
    def hot(self):
        self.active = True
        try:
            yield
        finally:
            self.active = False


@pytest.mark.parametrize("scheme", [PGD, ADMM])
def test_no_host_sync_inside_the_loop(monkeypatch, scheme):
    problem = deblur(small_image(32, batch=2), seed=0)
    counter = SyncCounter(monkeypatch)

    class Watched(ConvergenceMonitor):
        def record(self, *args):
            with counter.hot():
                super().record(*args)

        def record_values(self, *args):
            with counter.hot():
                super().record_values(*args)

        def should_stop(self, k):
            with counter.hot():
                stop = super().should_stop(k)
            checks.append(len(counter.calls))
            return stop

    class WatchedScheme(scheme):
        def step(self, *args):
            with counter.hot():
                return super().step(*args)

    checks: list[int] = []
    WatchedScheme().run(
        problem.y,
        problem.physics,
        ShrinkDenoiser(0.1),
        problem.x0,
        sigma=0.0,
        norm=1.0,
        x_true=problem.x_true,
        monitor=Watched(max_iter=30, tol=1e-12, check_every=10, progress=False),
    )
    assert len(checks) == 30
    # one read (tolist) at each of the 3 check points, nothing at the other 27 iterations
    assert counter.calls == ["tolist"] * 3
    assert checks[8] == 0 and checks[9] == 1 and checks[19] == 2 and checks[29] == 3


def test_sweep_summary_formats_each_quantity_its_own_way():
    from pnp.sweep import markdown_table

    row = {
        "overrides": "a=1",
        "psnr": 27.123,
        "ssim": 0.81234,
        "iterations": 40,
        "converged": True,
        "diverged": False,
        "final_rel_residual": 0.00049,
        "wall_time_s": 5990.784,
    }
    line = markdown_table([row]).splitlines()[-1]
    assert line == "| a=1 | 27.12 | 0.812 | 40 | True | False | 4.90e-04 | 5990.8 |"


def test_a_refuted_convergence_keeps_a_blow_up_reported():
    """The stationarity check withdraws an element's "converged"; in a batch where another element diverged, the
    message still says so, and the elements it did not refute keep their outcome."""
    rows = torch.zeros(3, 3)
    h = History(rows, rows, None, None, torch.zeros(3), False, True, "element(s) [0] diverged at iteration 2", tol=1e-5)
    h.outcome, h.stopped, h.returned = ["diverged", "converged", "converged"], [2, 3, 3], [1, 3, 3]
    h.require_stationary([math.nan, 1e-3, 1e-7])
    assert h.outcome == ["diverged", "not_stationary", "converged"] and h.stationary == [True, False, True]
    assert h.message.startswith("element(s) [0] diverged") and "element(s) [1] is not stationary" in h.message
    assert h.diverged and not h.converged and h.element(2).stationarity == [1e-7]
