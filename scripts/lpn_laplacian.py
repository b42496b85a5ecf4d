"""The LPN 1D check (Fang, Buchanan, Sulam 2024): an LPN trained by proximal matching on samples of a Laplacian
prior (b = 1) with unit Gaussian noise must come close to the MAP denoiser, soft-thresholding at 1.

    python scripts/lpn_laplacian.py [--steps 4000] [--out benchmarks/results]

Prints the max and mean |D(y) − soft(y, 1)| on [−4, 4] and saves the plot (learned prox and learned prior φ).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from tqdm.auto import tqdm

from pnp.denoisers import LPN
from pnp.losses import ProximalMatching


def soft(y: torch.Tensor, threshold: float = 1.0) -> torch.Tensor:
    return torch.sign(y) * torch.clamp(y.abs() - threshold, min=0)


class Scalars(torch.nn.Module):
    """Applies a 1×1-kernel LPN to B scalars [B, 1, 1, 1] as the B pixels of one [1, 1, 1, B] image (one convolution
    instead of B tiny ones; with 1×1 kernels the pixels do not interact, so D acts on each scalar)."""

    def __init__(self, lpn: LPN) -> None:
        super().__init__()
        self.lpn = lpn

    def forward(self, y: torch.Tensor, sigma=None) -> torch.Tensor:
        return self.lpn(y.reshape(1, 1, 1, -1), sigma).reshape(y.shape)


def train(steps: int, batch: int, seed: int) -> LPN:
    """An input-convex MLP (1×1 kernels) trained with the LPN schedule on Laplacian samples."""
    torch.manual_seed(seed)
    model = LPN(channels=1, width=64, depth=3, kernel_size=1, beta=10.0, alpha=1e-4)
    scalars = Scalars(model)
    objective = ProximalMatching(l1_fraction=0.2, gamma_scale=0.1, stages=(8, 4, 2, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    laplace = torch.distributions.Laplace(0.0, 1.0)
    for step in tqdm(range(steps), desc="1D LPN", leave=False):
        x = laplace.sample((batch, 1, 1, 1))
        y = x + torch.randn_like(x)
        loss, _ = objective(scalars, x, y, step, steps)
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.clamp_weights()
        sched.step()
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    model = train(args.steps, args.batch, args.seed)
    y = torch.linspace(-4, 4, 801).view(-1, 1, 1, 1)
    d = Scalars(model)(y)
    err = (d - soft(y)).abs().flatten()
    xs = torch.linspace(-3, 3, 121).view(-1, 1, 1, 1)
    phi, residual = model.prior(xs)
    phi = phi - phi[60]  # φ is defined up to a constant: pin φ(0) = 0 to compare with |x|
    result = {
        "max_abs_error": float(err.max()),
        "mean_abs_error": float(err.mean()),
        "interval": [-4, 4],
        "steps": args.steps,
        "batch": args.batch,
        "seed": args.seed,
        "prior_inversion_residual_max": float(residual.max()),
    }
    print(
        f"|D(y) - soft(y, 1)| on [-4, 4]: max {result['max_abs_error']:.4f}, mean {result['mean_abs_error']:.4f}; "
        f"prior inversion residual <= {result['prior_inversion_residual_max']:.1e}"
    )
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(y.flatten(), d.flatten(), label="learned prox D(y)")
    a.plot(y.flatten(), soft(y).flatten(), "--", label="soft-thresholding at 1")
    a.set(xlabel="y", title=f"LPN on a Laplacian prior (max error {result['max_abs_error']:.3f})")
    b.plot(xs.flatten(), phi.flatten(), label=r"learned prior $\phi_\theta(x) - \phi_\theta(0)$")
    b.plot(xs.flatten(), xs.abs().flatten(), "--", label="|x|")
    b.set(xlabel="x", title="learned regulariser")
    for ax in (a, b):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.out / "lpn_laplacian.png", dpi=110)
    (args.out / "lpn_laplacian.json").write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out / 'lpn_laplacian.png'} and {args.out / 'lpn_laplacian.json'}")


if __name__ == "__main__":
    main()
