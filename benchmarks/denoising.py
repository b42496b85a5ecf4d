"""Denoising PSNR at σ = 15/255 and 25/255 on the held-out images, every denoiser next to TV, wavelet and BM3D.

    python benchmarks/denoising.py [--size 256] [--quick]

The learned blind networks run as trained (θ = 1, one network for all σ); the noise-conditional ones (ridge
regularizers, pnn, euler_conditional, dncnn_conditional) are told σ, also at θ = 1, and so are wcrr's other shipped
weights (wcrr_multiscale, wcrr_ct: rows ``wcrr/<weights>``). The classical ones get the
strength that maximises their mean PSNR over a grid of multiples of σ (an oracle choice, stated in the table).
Writes benchmarks/results/denoising.{md,csv}.
"""

from __future__ import annotations

import argparse
import time

import torch
from common import (
    CLASSICAL,
    CONDITIONAL,
    LEARNED,
    RESULTS,
    bm3d_available,
    denoiser,
    held_out_images,
    machine,
    write_table,
)

from pnp.tensors import batch_psnr

NOISE = (15 / 255, 25 / 255)
OTHER_WEIGHTS = {  # further shipped weights of a conditional prior
    "wcrr": ("wcrr_multiscale", "wcrr_ct"),
    "euler_conditional": ("euler_conditional_w64",),
}
MULTIPLIERS = {"tv": (0.25, 0.5, 1.0, 2.0), "wavelet": (1.0, 1.5, 2.0, 3.0), "bm3d": (1.0,)}


def psnr_of(den, strength: float, noisy: torch.Tensor, clean: torch.Tensor) -> tuple[float, float]:
    start = time.perf_counter()
    outputs = []
    with torch.inference_mode():
        for i in range(noisy.shape[0]):
            if hasattr(den, "restart"):
                den.restart = True  # deepinv's TV keeps a warm start from its previous call (another image)
            outputs.append(den(noisy[i : i + 1], strength))
    out = torch.cat(outputs)
    seconds = (time.perf_counter() - start) / noisy.shape[0]
    return float(batch_psnr(out.clamp(0, 1), clean).mean()), seconds


def noisy_versions(clean: torch.Tensor) -> dict[float, torch.Tensor]:
    """``clean`` with Gaussian noise of each level of :data:`NOISE`, drawn from seed 0 in that order (the same draws
    for every table that compares with this one)."""
    g = torch.Generator().manual_seed(0)
    return {s: clean + s * torch.randn(clean.shape, generator=g) for s in NOISE}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--quick", action="store_true", help="two images at 64×64")
    args = parser.parse_args()
    size, count = (64, 2) if args.quick else (args.size, None)
    clean, names = held_out_images(size, count)
    noisy = noisy_versions(clean)
    conditional = [(name, w) for name in CONDITIONAL for w in (None, *OTHER_WEIGHTS.get(name, ()))]
    classical = [(name, None) for name in CLASSICAL if name != "bm3d" or bm3d_available()]
    runs = [(name, None) for name in LEARNED] + conditional + classical  # (denoiser, its weights where not its own)
    rows = []
    for name, weights in runs:
        row: dict = {"denoiser": name if weights is None else f"{name}/{weights}"}
        for s in NOISE:
            label = f"σ={round(s * 255)}/255"
            if name in LEARNED:  # the network itself (θ = 1), not the θ-relaxed default of its solve config
                den, strength = denoiser(name, theta=1.0)
                value, seconds = psnr_of(den, strength, noisy[s], clean)
                choice = "blind"
            elif name in CONDITIONAL:  # told the true noise level, nothing tuned (θ = 1: the network itself)
                den, _ = denoiser(name, theta=1.0, weights=weights)
                value, seconds = psnr_of(den, s, noisy[s], clean)
                choice = "σ"
            else:
                den, _ = denoiser(name)
                best = max(((*psnr_of(den, m * s, noisy[s], clean), m) for m in MULTIPLIERS[name]), key=lambda t: t[0])
                value, seconds, choice = best[0], best[1], f"{best[2]:g}σ"
            row[f"PSNR {label}"] = value
            row[f"strength {label}"] = choice
            row[f"s/image {label}"] = seconds
        print(row)
        rows.append(row)
    input_psnr = {f"PSNR σ={round(s * 255)}/255": float(batch_psnr(noisy[s], clean).mean()) for s in NOISE}
    notes = (
        f"Held-out images {', '.join(names)} (never used in training), centre crops {size}×{size}, gray. "
        f"Noisy input PSNR: {', '.join(f'{k[5:]} {v:.2f} dB' for k, v in input_psnr.items())}. "
        f"Learned weights: the shipped CPU-recipe ones. Machine: {machine()}."
    )
    write_table(RESULTS / ("denoising_quick" if args.quick else "denoising"), rows, "Denoising PSNR (dB)", notes)


if __name__ == "__main__":
    main()
