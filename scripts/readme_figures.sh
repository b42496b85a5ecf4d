#!/usr/bin/env bash
# Regenerate the README's figures in docs/figures/: the demo's reconstruction.png and convergence.png (the README's
# demo command, `python -m pnp.solve +problem=deblur`) and the curves of a 2×2 sweep (two priors × two step sizes).
#   bash scripts/readme_figures.sh        (about 7 minutes on 2 shared CPU cores; `python` is the one on PATH)
# The runs themselves stay in outputs/readme_figures/.
set -euo pipefail
cd "$(dirname "$0")/.."
work=outputs/readme_figures
rm -rf "$work"
mkdir -p docs/figures
python -m pnp.solve +problem=deblur monitor.progress=false hydra.run.dir="$work/demo"
cp "$work/demo/reconstruction.png" docs/figures/demo_reconstruction.png
cp "$work/demo/convergence.png" docs/figures/demo_convergence.png
python -m pnp.solve -m +problem=deblur denoiser=tv,wavelet scheme.step_factor=1,1.9 image.size=128 \
  monitor.progress=false hydra.sweep.dir="$work/sweep"
python scripts/plot_convergence.py "$work/sweep"
cp "$work/sweep/sweep_convergence.png" docs/figures/sweep_convergence.png
