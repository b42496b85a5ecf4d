#!/usr/bin/env bash
# Train the four shipped denoisers with their CPU recipes and ship them into pnp/weights/ (about 1 h on 2 cores).
# fne_dncnn starts from the shipped dncnn, so dncnn comes first. On a GPU: add scale=gpu device=cuda.
set -euo pipefail
cd "$(dirname "$0")/.."
for name in dncnn euler lpn fne_dncnn; do
  python -m pnp.train denoiser="$name" ship=true "$@"
done
