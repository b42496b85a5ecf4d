#!/usr/bin/env bash
# Train the four shipped denoisers with their CPU recipes and ship them into pnp/weights/ (about 1.5 h on 2 cores).
# fne_dncnn starts from the shipped dncnn, so dncnn comes first. On a GPU: add scale=gpu device=cuda.
set -euo pipefail
cd "$(dirname "$0")/.."
for name in dncnn euler lpn fne_dncnn; do
  python -m pnp.train denoiser="$name" ship=true "$@"
done
# fne_dncnn, second stage: a stronger penalty from the first stage's weights (max Lip(2D - Id) 1.22 -> 1.16)
python -m pnp.train denoiser=fne_dncnn init_from=fne_dncnn objective.lam=0.5 objective.power_iters=5 steps=800 \
  hydra.run.dir=outputs/train/fne_dncnn_cpu_stage2 ship=true "$@"
