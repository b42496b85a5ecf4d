"""Reading a run's ``History``: c_k, PSNR and the objective per iteration, the verdict, the metrics.

The prior is the shipped convex ridge regularizer ``crr`` at the strength tuned for deblurring, with the scheme its
config selects (accelerated gradient on the explicit objective F = f + R_σ/γ): everything a config would give, from
Python, with ``pnp.config.tuned_denoiser``.
"""

from pnp.config import tuned_denoiser
from pnp.images import load_image
from pnp.monitor import ConvergenceMonitor, largest_increase
from pnp.outputs import metrics
from pnp.problems import deblur

x = load_image("camera", size=64)
problem = deblur(x, seed=0)  # Gaussian blur σ = 1.6, noise 0.01

# pnp/configs/denoiser/crr.yaml + pnp/configs/tuned/deblur_crr.yaml: the network, its σ, declared class, scheme
tuned = tuned_denoiser("crr", "deblur", x.device)
print(f"denoiser crr at {tuned.label}, class {tuned.guarantee.kind}, scheme {type(tuned.scheme).__name__}")

result = tuned.scheme.run(
    problem.y,
    problem.physics,
    tuned.denoiser,
    sigma=tuned.sigma,
    x0=problem.x0,
    x_true=x,
    monitor=ConvergenceMonitor(max_iter=1500, tol=1e-5),
    guarantee=tuned.guarantee,
)

# -- the history: tensors [iterations, B] on the CPU; row k describes the iterate x_{k+1} (x_0 is the start) --------
h = result.history
print(f"{h.message}; converged={h.converged}, diverged={h.diverged}, stagnated={h.stagnated}")
# result.stepsize is γ: PGD's step, ADMM's penalty; for AGD the γ of F = f + R_σ/γ (its gradient step is α, smaller)
print(f"{h.iterations} rows, element 0 returned iterate {h.returned[0]}, γ = {result.stepsize:.3g}")
print("   k        c_k   PSNR dB       f(x_k)       F(x_k)   time s")
for k in [1, 10, 100, h.iterations]:
    row = k - 1
    print(
        f"{k:4d} {float(h.rel_residual[row, 0]):10.3e} {float(h.psnr[row, 0]):9.2f} "
        f"{float(h.fidelity[row, 0]):12.5g} {float(h.objective[row, 0]):12.5g} {float(h.time_s[row]):8.2f}"
    )

# c_k = ‖x_k − x_{k−1}‖ / max(‖x_0‖, ‖x_1‖) is what the monitor stops on; h.rel_residual holds it, h.residual the
# unscaled ‖x_k − x_{k−1}‖. of_result picks each element's value at the iterate it returned.
final_c = float(h.of_result(h.rel_residual)[0])
# F(x_k) of an explicit prior: accelerated gradient never lets it increase (up to float32 round-off)
rise = float(largest_increase(h.objective)[0])
print(f"final c_k = {final_c:.2e} < tol = {h.tol:g}; largest relative increase of F(x_k): {rise:.1e}")

# -- the verdict: which theorem covers this run, under which conditions ------------------------------------------------
v = result.verdict
print(f"covered={v.covered}: {v.theorem}\n  conditions: {v.conditions}\n  denoiser: {v.denoiser.as_dict()}")

# -- the metrics that pnp.solve writes to metrics.json, and the rows of history.csv (batch means) ----------------------
m = metrics(problem, result)
print(
    f"PSNR {m['psnr_init']:.2f} -> {m['psnr']:.2f} dB, SSIM {m['ssim']:.3f}, "
    f"iterations to tol {m['iterations_to_tol']}, F monotone: {m['objective_monotone']}"
)
print("last history.csv row:", {key: round(value, 6) for key, value in h.rows()[-1].items()})

assert result.converged and final_c < h.tol
assert v.covered and m["objective_monotone"]
assert m["psnr"] > m["psnr_init"] + 3
