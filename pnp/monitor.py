"""Convergence monitor kept on the solver's device.

Per iteration k and batch element b it records ‖x_k − x_{k−1}‖, c_k = ‖x_k − x_{k−1}‖ / s (the quantity of
Pesquet et al. 2021, expected to decrease monotonically for averaged operators), the PSNR against the ground
truth when known, the data-fidelity value f(x_k) and the elapsed time. The scale s = max(‖x_0‖, ‖x_1‖) is the
paper's ‖x_0‖ unless the start vanishes (``init=zeros``), where ‖x_0‖ would make c_k meaningless; s = 0 only when
x_0 = x_1 = 0, and then every c_k is 0 (the run sits at a fixed point). Everything lives in tensors preallocated
on the device; the host only reads them every ``check_every`` iterations (one synchronisation) to decide
whether to stop, and once at the end. Elapsed times on CUDA come from CUDA events, read at the end.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from pnp.errors import check, check_positive
from pnp.tensors import batch_norm, batch_psnr, per_element

PROGRESS_DELAY_S = 2.0
MIN_STAGNATION_ITERS = 40  # shorter runs are not judged stagnant: early c_k of slow schemes can sit near c_1
STILL_FALLING = 0.99  # c_k still falling by more than 1 % from one eighth of the run to the next: not stagnant


@dataclass
class History:
    """Per-iteration statistics on the CPU; row k describes the iterate x_{k+1} (x_0 is the start)."""

    residual: torch.Tensor  # [n, B] ‖x_k − x_{k−1}‖
    rel_residual: torch.Tensor  # [n, B] c_k = ‖x_k − x_{k−1}‖ / max(‖x_0‖, ‖x_1‖)
    psnr: torch.Tensor | None  # [n, B] PSNR(clip(x_k, 0, 1), x_true): the data range of every image here
    fidelity: torch.Tensor | None  # [n, B] f(x_k)
    time_s: torch.Tensor  # [n] seconds since the start of the loop
    converged: bool
    diverged: bool  # blew up, or stagnated (then ``stagnated`` too)
    message: str
    objective: torch.Tensor | None = None  # [n, B] F(x_k) = f(x_k) + g(x_k) when the prior is explicit
    stagnated: bool = False
    tol: float = 0.0  # the monitor's tolerance on c_k
    returned: list[int] = field(default_factory=list)  # per element, k of the returned x_k (n unless it diverged)
    #: per element: converged, diverged (blew up), stagnated, max_iter or not_stationary (c_k < tol, but one step of
    #: the scheme's initial length from the result moves it by ≥ tol: :meth:`require_stationary`); and the rows
    #: recorded until it stopped
    outcome: list[str] = field(default_factory=list)
    stopped: list[int] = field(default_factory=list)
    #: per element, where the scheme measured it: ‖x − T₀(x)‖ / max(‖x_0‖, ‖x_1‖) at the result, T₀ the scheme's step
    #: at its initial length (accelerated gradient with backtracking, whose steps may shrink); None: not measured
    stationarity: list[float] | None = None

    @property
    def stationary(self) -> list[bool]:
        """Per element: not refuted by the stationarity check (True where it was not measured)."""
        return [o != "not_stationary" for o in self.outcome]

    def require_stationary(self, residual: list[float]) -> None:
        """Record the fixed-step residual per element (:attr:`stationarity`). A converged element whose residual is
        not below ``tol`` did not converge: its c_k fell because its step shrank, not at a fixed point."""
        self.stationarity = residual
        refuted = [j for j, o in enumerate(self.outcome) if o == "converged" and not residual[j] < self.tol]
        if not refuted:
            return
        for j in refuted:
            self.outcome[j] = "not_stationary"
        self.converged = False
        worst = max(residual[j] for j in refuted)
        which = "the result" if len(self.outcome) == 1 else f"element(s) {refuted}"
        refutation = (
            f"c_k fell below tol={self.tol:g}, but {which} is not stationary: a step of the initial length moves it by "
            f"{worst:.3e} (relative) >= tol; its steps had shrunk (line search)"
        )
        self.message = f"{self.message}; {refutation}" if self.diverged else refutation  # a blow-up stays reported

    @property
    def iterations(self) -> int:
        return self.residual.shape[0]

    def of_result(self, values: torch.Tensor) -> torch.Tensor:
        """[B] ``values`` ([n, B]) at each element's returned iterate (NaN for x_0, which has no row)."""
        rows = torch.tensor(self.returned) - 1
        picked = values[rows.clamp_min(0), torch.arange(values.shape[1])]
        return torch.where(rows >= 0, picked, torch.full_like(picked, math.nan))

    def element(self, b: int) -> History:
        """Batch element ``b`` as the history of a run of its own: its columns up to the row where it stopped, its
        returned iterate and outcome; the message is the batch's, prefixed with the element's outcome."""
        n, outcome = self.stopped[b], self.outcome[b]

        def one(values: torch.Tensor | None) -> torch.Tensor | None:
            return None if values is None else values[:n, b : b + 1]

        return dataclasses.replace(
            self,
            residual=one(self.residual),
            rel_residual=one(self.rel_residual),
            psnr=one(self.psnr),
            fidelity=one(self.fidelity),
            objective=one(self.objective),
            time_s=self.time_s[:n],
            converged=outcome == "converged",
            diverged=outcome in ("diverged", "stagnated"),
            stagnated=outcome == "stagnated",
            message=f"element {b}: {outcome} (the batch: {self.message})",
            returned=[self.returned[b]],
            outcome=[outcome],
            stopped=[n],
            stationarity=None if self.stationarity is None else [self.stationarity[b]],
        )

    def rows(self) -> list[dict[str, float | int]]:
        """One dict per iteration, batch-averaged (the CSV layout)."""
        cols = {
            "residual": self.residual,
            "rel_residual": self.rel_residual,
            "psnr": self.psnr,
            "fidelity": self.fidelity,
            "objective": self.objective,
        }
        means = {k: v.double().mean(dim=1).tolist() for k, v in cols.items() if v is not None}
        return [
            {"iter": i + 1, **{k: v[i] for k, v in means.items()}, "time_s": float(self.time_s[i])}
            for i in range(self.iterations)
        ]


def largest_increase(values: torch.Tensor, start: int = 0) -> torch.Tensor:
    """Per batch element, max_k (v_{k+1} − v_k)/|v_k| over rows k ≥ ``start`` (≤ 0: never increased); NaN rows
    (not recorded) are skipped, −inf when fewer than two rows remain."""
    v = values[start:].double()
    if v.shape[0] < 2:
        return torch.full(v.shape[1:], -math.inf, dtype=torch.float64)
    ratio = (v[1:] - v[:-1]) / v[:-1].abs().clamp_min(1e-300)
    return torch.nan_to_num(ratio, nan=-math.inf).amax(dim=0)


class ConvergenceMonitor:
    """Records iteration statistics on the device and decides when a scheme stops.

    Stops when every batch element has c_k < ``tol`` (checked every ``check_every`` iterations) or at
    ``max_iter``. Declares divergence when a residual is NaN/Inf or exceeds ``divergence_factor`` times the first
    residual, and stagnation when a run of at least ``MIN_STAGNATION_ITERS`` iterations ends with c_k, over its
    last quarter, never below ``stagnation`` times its first value and no longer falling (an iteration that is not
    contracting: e.g. PGD on a non-smooth fidelity; :meth:`stagnated`). A diverged element's result is its iterate
    at the last check point before the blow-up (:meth:`good_iterate`), the one before the first residual that blew
    up: the monitor keeps references to the iterates since the last check point (schemes make a new tensor per
    iterate), no copies.
    """

    def __init__(
        self,
        *,
        max_iter: int = 300,
        tol: float = 1e-5,
        check_every: int = 10,
        divergence_factor: float = 1e3,
        stagnation: float = 0.5,
        progress: bool = True,
        track_fidelity: bool = True,
    ) -> None:
        check(isinstance(max_iter, int) and max_iter >= 1, f"max_iter must be a positive integer, got {max_iter!r}")
        check(
            isinstance(check_every, int) and check_every >= 1,
            f"check_every must be a positive integer, got {check_every!r}",
        )
        self.max_iter, self.check_every = max_iter, check_every
        self.tol = check_positive("tol", tol)
        self.divergence_factor = check_positive("divergence_factor", divergence_factor)
        self.stagnation = check_positive("stagnation", stagnation)
        self.progress, self.track_fidelity = progress, track_fidelity

    # -- lifecycle -------------------------------------------------------------------------------------------
    def start(self, x0: torch.Tensor, x_true: torch.Tensor | None = None) -> None:
        """Allocate the buffers on ``x0``'s device; call once before the first iteration."""
        n, b = self.max_iter, x0.shape[0]
        opts = {"device": x0.device, "dtype": torch.float64 if x0.dtype == torch.float64 else torch.float32}
        self._residual = torch.full((n, b), math.nan, **opts)
        self._psnr = torch.full((n, b), math.nan, **opts) if x_true is not None else None
        self._fidelity = torch.full((n, b), math.nan, **opts) if self.track_fidelity else None
        self._objective: torch.Tensor | None = None  # allocated by the first objective value recorded
        self._scale = batch_norm(x0).to(opts["dtype"])
        self._x_true = x_true
        self._recent = [x0]  # references to x_start … x_k since the last check point (start = its iteration)
        self._latest = self._result = x0  # _result: diverged elements' last iterate before the blow-up
        self._active = torch.ones(b, dtype=torch.bool, device=x0.device)  # elements still iterating
        self.frozen = False  # some element stopped: the scheme keeps its state as it was (see ``active``)
        self._returned: list[int | None] = [None] * b  # per element: k of its result x_k, once it stopped
        self._stopped: list[int | None] = [None] * b  # per element: the rows recorded until it stopped
        self._outcome: list[str] = []
        self._blew_up: list[bool] = [False] * b
        self._cuda = x0.device.type == "cuda"
        self._times = torch.zeros(n, dtype=torch.float64)
        self._events: list = []
        self._t0 = time.perf_counter()
        if self._cuda:
            self._start_event = torch.cuda.Event(enable_timing=True)
            self._start_event.record()
        self._checked = 0  # iterations already examined by should_stop
        self._stop_message = ""
        self.converged = self.diverged = self.stalled = False
        self._bar = tqdm(total=n, delay=PROGRESS_DELAY_S, leave=False, disable=not self.progress, unit="it")

    def record(self, k: int, x: torch.Tensor, x_prev: torch.Tensor) -> None:
        """Statistics of iterate x_{k+1} = ``x`` (row ``k``, 0-based) against x_k = ``x_prev``."""
        diff = batch_norm(x - x_prev)
        self._residual[k] = diff
        if k == 0:  # s = max(‖x_0‖, ‖x_1‖), > 0 unless the run starts at the fixed point 0
            self._scale = torch.maximum(self._scale, batch_norm(x).to(self._scale)).clamp_min(
                torch.finfo(self._scale.dtype).tiny
            )
        if self._psnr is not None:
            self._psnr[k] = batch_psnr(x.clamp(0, 1), self._x_true)  # as metrics.json and the figure: clipped
        self._latest = x
        self._recent.append(x)
        if self._cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self._events.append(event)
        else:
            self._times[k] = time.perf_counter() - self._t0

    def record_values(self, k: int, fidelity: torch.Tensor | None, objective: torch.Tensor | None = None) -> None:
        """f(x_{k+1}) and, when the scheme minimises an explicit objective, F(x_{k+1}) for row ``k``."""
        if fidelity is not None and self._fidelity is not None:
            self._fidelity[k] = self.carried(k, fidelity, self._fidelity)
        if objective is not None:
            if self._objective is None:
                self._objective = torch.full_like(self._residual, math.nan)
            self._objective[k] = self.carried(k, objective, self._objective)

    def carried(self, k: int, values: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """``values`` for the active elements, the previous row for the stopped ones (their iterate is frozen)."""
        return torch.where(self._active, values.to(rows.dtype), rows[k - 1]) if self.frozen else values

    @property
    def scale(self) -> torch.Tensor:
        """[B] on the device: max(‖x_0‖, ‖x_1‖), the scale of c_k."""
        return self._scale

    @property
    def active(self) -> torch.Tensor:
        """[B] bool on the device: the elements still iterating (changes only at check points)."""
        return self._active

    def should_stop(self, k: int) -> bool:
        """True when the run must stop after row ``k``; reads the device only at check points. Each batch element
        stops on its own: once its c_k < ``tol`` (converged) or its residual blew up (diverged, its result is its last
        iterate before the blow-up); the scheme then keeps its state unchanged (:attr:`active`) while the others go
        on, so an element's result in a batch is its result alone."""
        last = k + 1 == self.max_iter
        if (k + 1) % self.check_every and not last:
            return False
        start, self._checked = self._checked, k + 1
        window = self._residual[start : k + 1]
        rel = self._residual[k] / self._scale
        reference = self._residual[0].clamp_min(self.tol * self._scale)
        blowup = (~torch.isfinite(window) | (window > self.divergence_factor * reference)) & self._active
        bad = blowup.any(dim=0)
        done = (rel < self.tol) & self._active & ~bad
        worst = torch.where(self._active & ~bad, rel, torch.zeros_like(rel)).amax().view(1)
        flags = torch.cat([bad.to(rel), done.to(rel), worst]).tolist()  # one sync per check point
        b = rel.shape[0]
        bad_l, done_l = [v > 0 for v in flags[:b]], [v > 0 for v in flags[b : 2 * b]]
        if any(bad_l):
            self.keep_last_good(start, blowup, bad_l)
        for j in (j for j in range(b) if done_l[j]):
            self._returned[j] = k + 1
        for j in (j for j in range(b) if done_l[j] or bad_l[j]):
            self._stopped[j] = k + 1
        if any(bad_l) or any(done_l):
            self._active, self.frozen = self._active & ~bad & ~done, True
        self._recent = [self._latest]
        self._bar.update(k + 1 - start)
        self._bar.set_postfix_str(f"c_k={flags[-1]:.2e}", refresh=False)
        stop = last or all(r is not None for r in self._returned)
        if stop:
            self.conclude(k)
        return stop

    def keep_last_good(self, start: int, blowup: torch.Tensor, bad: list[bool]) -> None:
        """For each element whose residual blew up in rows ``start`` … (``blowup`` [rows, B]), its iterate just
        before the first bad row r: x_r, from the references kept since the last check."""
        first = blowup.to(torch.int8).argmax(dim=0).tolist()  # first True row per element
        result = self._result.clone()
        for j in (j for j in range(len(bad)) if bad[j]):
            result[j] = self._recent[first[j]][j]
            self._returned[j], self._blew_up[j] = start + first[j], True
        self._result = result

    def conclude(self, k: int) -> None:
        """The verdict and the message of the run, after its last row ``k``."""
        b = len(self._returned)
        blown = [j for j in range(b) if self._blew_up[j]]
        converged = [j for j in range(b) if self._returned[j] is not None and not self._blew_up[j]]
        stalled = self.stagnated(k)
        self._outcome = [
            "diverged" if j in blown else "converged" if j in converged else "stagnated" if stalled[j] else "max_iter"
            for j in range(b)
        ]
        if blown:
            self.diverged = True
            at = ", ".join(f"{self._returned[j] + 1}" for j in blown)
            which = f"diverged at iteration {at}" if b == 1 else f"element(s) {blown} diverged at iterations {at}"
            self._stop_message = (
                f"{which}: the residual became non-finite or grew past {self.divergence_factor:g}× its first value; "
                + (
                    f"returning iterate {self._returned[0]} (the last before it)"
                    if b == 1
                    else "each returns its last iterate before the blow-up, the others went on"
                )
            )
        elif len(converged) == b:
            self.converged = True
            counts = sorted({self._returned[j] for j in converged})
            per = "" if len(counts) == 1 else f" (per element: {[self._returned[j] for j in range(b)]})"
            self._stop_message = f"converged in {counts[-1]} iterations (c_k < {self.tol:g}){per}"
        elif any(stalled):
            self.diverged = self.stalled = True
            self._stop_message = (
                f"stagnated: after {k + 1} iterations c_k never fell below {self.stagnation:g}× its first value "
                "over the last quarter of the run; the iteration is not contracting"
            )
        else:
            worst = float((self._residual[k] / self._scale).max())
            self._stop_message = f"reached max_iter={self.max_iter} with c_k={worst:.3e} >= tol={self.tol:g}" + (
                f"; elements {converged} converged before" if converged else ""
            )

    def stagnated(self, k: int) -> list[bool]:
        """Per element: its c_k stayed ≥ ``stagnation`` × c_1 over the last quarter of a run of ≥
        ``MIN_STAGNATION_ITERS`` iterations and is no longer falling: the mean c_k over the run's last eighth is
        at least ``STILL_FALLING`` × the mean over the eighth before (a slow but steady iteration cut short by
        ``max_iter`` is not stagnant). One host read, at the end of the run only."""
        n = k + 1
        if n < MIN_STAGNATION_ITERS:
            return [False] * self._residual.shape[1]
        c = self._residual[:n]
        first, tail = c[0], c[(3 * n) // 4 :].amin(dim=0)
        eighth = n // 8
        falling = c[n - eighth :].mean(dim=0) < STILL_FALLING * c[n - 2 * eighth : n - eighth].mean(dim=0)
        return ((tail >= self.stagnation * first) & (first > 0) & ~falling).tolist()

    def good_iterate(self) -> torch.Tensor:
        """The result: each element's last iterate, except for elements that diverged, which get their last iterate
        before the blow-up."""
        if not any(self._blew_up):
            return self._latest
        blown = torch.tensor(self._blew_up, device=self._latest.device)
        return torch.where(per_element(blown, self._latest), self._result, self._latest)

    def finish(self, k: int) -> History:
        """Close the run after row ``k`` and return the statistics on the CPU."""
        self._bar.close()
        n = k + 1
        if self._cuda:
            torch.cuda.synchronize()
            self._times[:n] = torch.tensor(
                [self._start_event.elapsed_time(e) / 1e3 for e in self._events[:n]], dtype=torch.float64
            )
        residual = self._residual[:n].cpu()
        return History(
            residual=residual,
            rel_residual=residual / self._scale.cpu(),
            psnr=None if self._psnr is None else self._psnr[:n].cpu(),
            fidelity=None if self._fidelity is None else self._fidelity[:n].cpu(),
            time_s=self._times[:n].clone(),
            converged=self.converged,
            diverged=self.diverged,
            message=self._stop_message,
            objective=None if self._objective is None else self._objective[:n].cpu(),
            stagnated=self.stalled,
            tol=self.tol,
            returned=[n if r is None else r for r in self._returned],
            outcome=list(self._outcome),
            stopped=[n if r is None else r for r in self._stopped],
        )
