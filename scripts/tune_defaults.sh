#!/usr/bin/env bash
# Tune every prior's strength per problem on the validation images (coins, moon) and ship the choices into
# pnp/configs/tuned/<problem>_<prior>.yaml, where `python -m pnp.solve +problem=<p> denoiser=<d>` picks them up.
# The whole search of each pair is kept in benchmarks/results/tuning/<problem>_<prior>/tune.json.
#   bash scripts/tune_defaults.sh [problems] [priors]     e.g.  bash scripts/tune_defaults.sh "deblur ct" "tv crr"
# Each search: 5 values on a log grid, then 5 around the best at half the log spacing (9 runs of PnP-PGD, 300
# iterations; the ridge regularizers: the accelerated gradient and 2000 iterations their configs select; both
# validation images as one batch of 128² centre crops: a CPU budget choice, see README). With
# strict=true a value that no convergence theorem covers (e.g. theta = 1 for the merely nonexpansive euler) scores -inf
# (not for dncnn and pnn, which no theorem covers at any strength: pnn's certificate fails at low sigma).
set -euo pipefail
cd "$(dirname "$0")/.."
problems=${1:-"deblur deblur_motion ct cs"}
priors=${2:-"tv wavelet crr wcrr pnn euler fne_dncnn dncnn"}
range() {  # the coarse search range of each prior's parameter
  case "$1" in
    tv) echo "tune.low=0.0005 tune.high=0.05" ;;
    wavelet) echo "tune.low=0.001 tune.high=0.1" ;;
    crr | wcrr) echo "tune.low=0.001 tune.high=0.03" ;;
    pnn) echo "tune.low=0.002 tune.high=0.1" ;;  # its sigma: lambda(sigma) per layer and channel
    *) echo "tune.param=denoiser.theta tune.low=0.05 tune.high=1.0" ;;
  esac
}
for problem in $problems; do
  for prior in $priors; do
    # shellcheck disable=SC2046
    python -m pnp.tune +problem="$problem" denoiser="$prior" $(range "$prior") tune.points=5 tune.rounds=2 \
      tune.ship=true strict="$(case "$prior" in dncnn | pnn) echo false ;; *) echo true ;; esac)" image.size=128 device=cpu hydra.run.dir="benchmarks/results/tuning/${problem}_${prior}"
  done
done
