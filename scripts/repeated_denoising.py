"""Stability under repetition: x_{k+1} = D(x_k) from a noisy held-out image (the experiment of seed 001).

For a nonexpansive D the steps s_k = ‖x_k − x_{k−1}‖ can never grow (s_{k+1} = ‖D x_k − D x_{k−1}‖ ≤ s_k): the
largest ratio s_{k+1}/s_k is ≤ 1 and the iterates settle. An unconstrained denoiser has no such bound and can drift
(ratios above 1, steps that stop shrinking). All of them smooth the image further at every application, so PSNR
falls for every denoiser; the guarantee is about stability, not about quality.

    python scripts/repeated_denoising.py [--denoisers dncnn fne_dncnn euler lpn tv wavelet] [--iterations 100]
"""

from __future__ import annotations

import argparse
import csv
import itertools
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from pnp.config import compose_denoiser
from pnp.images import load_image
from pnp.tensors import batch_norm, batch_psnr


def repeat(denoiser, sigma: float, x0: torch.Tensor, clean: torch.Tensor, n: int) -> dict:
    x, steps, psnrs = x0, [], []
    with torch.inference_mode():
        for _ in range(n):
            x_new = denoiser(x, sigma)
            steps.append(float(batch_norm(x_new - x)[0] / batch_norm(x0)[0]))
            psnrs.append(float(batch_psnr(x_new.clamp(0, 1), clean)[0]))
            x = x_new
    ratios = [b / a for a, b in itertools.pairwise(steps) if a > 0]
    return {"step": steps, "psnr": psnrs, "final": x, "max_ratio": max(ratios, default=float("nan"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--denoisers", nargs="+", default=["dncnn", "fne_dncnn", "euler", "lpn", "tv", "wavelet"])
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--image", default="camera")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--noise", type=float, default=25 / 255)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    clean = load_image(args.image, size=args.size)
    noisy = clean + args.noise * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    runs = {}
    for name in args.denoisers:
        denoiser, sigma = compose_denoiser(
            name, torch.device("cpu"), ("denoiser.sigma=0.05",) if name in ("tv", "wavelet") else ()
        )
        runs[name] = repeat(denoiser, sigma, noisy, clean, args.iterations)
        print(
            f"{name:>10}: PSNR after 1 / {args.iterations} applications "
            f"{runs[name]['psnr'][0]:.2f} / {runs[name]['psnr'][-1]:.2f} dB, last step {runs[name]['step'][-1]:.2e}, "
            f"max s_(k+1)/s_k {runs[name]['max_ratio']:.3f}"
        )
    fig = plt.figure(figsize=(3 * len(runs), 6.5))
    grid = fig.add_gridspec(2, len(runs))
    ax_s, ax_p = fig.add_subplot(grid[0, : len(runs) // 2]), fig.add_subplot(grid[0, len(runs) // 2 :])
    for i, (name, r) in enumerate(runs.items()):
        k = range(1, args.iterations + 1)
        ax_s.semilogy(k, r["step"], label=name)
        ax_p.plot(k, r["psnr"], label=name)
        ax = fig.add_subplot(grid[1, i])
        ax.imshow(r["final"][0, 0].clamp(0, 1), cmap="gray", vmin=0, vmax=1)
        title = f"{name}: D^{args.iterations}(y)\n{r['psnr'][-1]:.2f} dB, max ratio {r['max_ratio']:.3f}"
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    ax_s.set(xlabel="k", ylabel=r"$\|x_k-x_{k-1}\|/\|x_0\|$", title="step size of x ← D(x)")
    ax_p.set(xlabel="k", ylabel="PSNR (dB)", title="PSNR against the clean image")
    ax_p.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out / "repeated_denoising.png", dpi=110)
    with (args.out / "repeated_denoising.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["denoiser", "k", "rel_step", "psnr"])
        for name, r in runs.items():
            writer.writerows([name, k + 1, s, p] for k, (s, p) in enumerate(zip(r["step"], r["psnr"], strict=True)))
    print(f"wrote {args.out / 'repeated_denoising.png'} and {args.out / 'repeated_denoising.csv'}")


if __name__ == "__main__":
    main()
