#!/usr/bin/env bash
# Train the ten shipped priors with their CPU recipes and ship them into pnp/weights/ (about 3.2 h on 2 cores),
# then a second set of wcrr weights (76 min on one core), a third, for CT (82 min on one core), and euler_conditional at
# width 64 (1.8 h on one core).
# fne_dncnn starts from the shipped dncnn and gs_dncnn from dncnn_conditional, so those come first; lpn and fne_dncnn
# add stages from their own weights.
# Extra arguments (e.g. device=cpu) go to every run. The full-size recipes are one run each on a GPU:
#   python -m pnp.train denoiser=<name> recipe=<name>_gpu device=cuda ship=true   (then lpn's second stage: recipe=lpn_convex_gpu)
set -euo pipefail
cd "$(dirname "$0")/.."
for name in dncnn dncnn_conditional gs_dncnn euler euler_conditional lpn fne_dncnn crr wcrr pnn; do
  python -m pnp.train denoiser="$name" ship=true "$@"
done
# lpn, second stage: the proximal-matching LPN fine-tuned with the firmly-nonexpansive penalty, half of its points at
# inputs as noisy as CT's FBP start (a convex prior: PnP converges on deblurring and CT; 6 min on 2 cores)
python -m pnp.train denoiser=lpn recipe=lpn_convex_cpu hydra.run.dir=outputs/train/lpn_cpu_convex ship=true "$@"
# fne_dncnn, second and third stages from the previous stage's weights: a stronger penalty (lam 0.5, 5 power
# iterations; certified max Lip(2D - Id) 1.22 -> 1.16), then a wider margin (eps 0.2: the hinge starts at
# ||grad Q||^2 = 0.8) at 6 points per batch (1.16 -> 0.975, every held-out test point below 1; 7 min on 2 cores).
python -m pnp.train denoiser=fne_dncnn init_from=fne_dncnn objective.lam=0.5 objective.power_iters=5 steps=800 \
  hydra.run.dir=outputs/train/fne_dncnn_cpu_stage2 ship=true "$@"
python -m pnp.train denoiser=fne_dncnn init_from=fne_dncnn objective.lam=0.5 objective.power_iters=5 \
  objective.eps=0.2 objective.points=6 steps=700 hydra.run.dir=outputs/train/fne_dncnn_cpu_stage3 ship=true "$@"
# wcrr, a second set of weights (deblurring's tuned file names it; scripts/tune_defaults.sh tries it on both blur
# problems): the shipped wcrr fine-tuned on
# patches of the training images at full, half and quarter size (textures at the scales a blur leaves), 1000 steps of
# 64 patches at lr 5e-4, the last step kept (76 min on one core; denoising validation 35.78 dB, flat from step 250)
python -m pnp.train denoiser=wcrr init_from=wcrr optim.lr=5e-4 data.batch=64 'data.scales=[1.0,0.5,0.25]' \
  steps=1000 select=last weights_name=wcrr_multiscale hydra.run.dir=outputs/train/wcrr_multiscale ship=true "$@"
# wcrr, a third set of weights for CT (CT's tuned file names it): task-aware (bilevel) fine-tuning of the shipped wcrr
# on CT itself at sigma 0.0055, 200 steps at lr 2e-4, then 100 at 5e-4 from those weights, shipped after the step
# with the best CT validation (benchmarks/results/bilevel_ct*.log; 47 + 35 min on one core)
python benchmarks/bilevel_deblur.py --problem ct --sigma 0.0055 --steps 200 --out outputs/bilevel_ct
python benchmarks/bilevel_deblur.py --problem ct --sigma 0.0055 --lr 5e-4 --steps 100 --init outputs/bilevel_ct/step200.pt \
  --out outputs/bilevel_ct_lr5e-4 --ship wcrr_ct
# euler_conditional, a second set of weights (the tuned files name them where they beat the first on validation): the
# same recipe at width 64 (+0.41 dB validation denoising at 5/255 over width 32; 2.5x the cost per PnP iteration;
# 1.8 h on one core)
python -m pnp.train denoiser=euler_conditional net.width=64 weights_name=euler_conditional_w64 \
  hydra.run.dir=outputs/train/euler_conditional_w64 ship=true "$@"
