"""A batch: three images solved at once, each stopping on its own.

Schemes take [B, C, H, W]. The batch is a set of independent solves: every ``check_every`` iterations the monitor
stops the elements whose c_k fell below ``tol`` (their state is frozen from then on) and goes on with the others, so
each element's result equals its solve alone. ``history.returned`` gives each element's iteration count.
"""

import torch

from pnp.denoisers import Relaxed
from pnp.guarantees import Guarantee, relaxed
from pnp.images import load_image
from pnp.monitor import ConvergenceMonitor
from pnp.problems import deblur
from pnp.schemes import PGD
from pnp.tensors import batch_psnr
from pnp.weights import pretrained

# Three test images of scikit-image, 64×64 gray, stacked into a batch [3, 1, 64, 64].
names = ["camera", "astronaut", "coffee"]
x = torch.cat([load_image(name, size=64) for name in names])
problem = deblur(x, seed=0)  # one blur for the batch, the noise drawn per element

# The shipped Euler network (nonexpansive), weakened to θD + (1 − θ)Id with θ = 0.5: a ½-averaged denoiser, for which
# plain PnP-PGD is covered. guarantees.relaxed says what θ does to the declared class.
denoiser = Relaxed(pretrained("euler"), theta=0.5)
guarantee = relaxed(Guarantee("nonexpansive"), theta=0.5)


def solve(elements: slice):
    return PGD().run(
        problem.y[elements],
        problem.physics,
        denoiser,
        sigma=None,  # the Euler network is blind
        x0=problem.x0[elements],
        x_true=x[elements],
        monitor=ConvergenceMonitor(max_iter=400, tol=1e-5, check_every=5),
        guarantee=guarantee,
    )


batch = solve(slice(None))
h = batch.history
print(h.message)
psnr_init = batch_psnr(problem.x0, x)  # [3]
psnr_result = h.of_result(h.psnr)  # [3]: each element's PSNR at the iterate it returned (h.psnr is [iterations, 3])
for i, name in enumerate(names):
    print(f"{name:>10}: stopped at iteration {h.returned[i]:3d}, PSNR {psnr_init[i]:.2f} -> {psnr_result[i]:.2f} dB")

# Solve the second image alone: the same iterations and the same numbers as in the batch.
alone = solve(slice(1, 2))
difference = float((batch.x[1] - alone.x[0]).norm() / alone.x[0].norm())
print(f"astronaut alone: {alone.history.returned[0]} iterations, relative difference to the batch {difference:.1e}")

assert batch.converged and alone.converged
assert len(set(h.returned)) > 1  # the elements did stop at different iterations
assert alone.history.returned[0] == h.returned[1]
assert difference < 1e-6
assert bool((psnr_result > psnr_init).all())
