"""Lifted Bregman training against back-propagation: the same PNN, recipe and CPU budget, validation PSNR over time.

    python benchmarks/pnn_trainers.py [--budget 480] [--calibrate 15] [--trainers backprop,bregman] [--runs DIR]
                                      [--reuse] [--out DIR] [pnp.train overrides ...]

For each trainer, one after the other on one thread: time ``--calibrate`` steps of ``python -m pnp.train denoiser=pnn
trainer=<trainer>`` (after as many warm-up steps), give the run steps = budget / (seconds per step), so that the
recipe's learning-rate schedule fits the budget (the runs differ only in the trainer and hence the step count), train,
and read the manifest's history: the trainer's validation PSNR (the recipe's σ, 10/255, on the validation crops)
against the training wall time. Writes ``pnn_trainers.{csv,md,png}``; the runs stay in ``--runs`` (``--reuse`` plots
finished ones again).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from common import RESULTS, held_out_images, machine, write_table
from denoising import NOISE, noisy_versions, psnr_of

from pnp.plotting import save
from pnp.weights import load

ROOT = Path(__file__).resolve().parent.parent
POINTS = 12  # validations per run


def train(trainer: str, steps: int, val_every: int, folder: Path, overrides: list[str]) -> dict:
    """Run pnp.train on one thread and return its manifest."""
    args = [
        "denoiser=pnn",
        f"trainer={trainer}",
        f"steps={steps}",
        f"val_every={val_every}",
        f"checkpoint_every={steps}",
        "threads=1",
        "device=cpu",
        f"hydra.run.dir={folder}",
        *overrides,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "pnp.train", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"pnp.train {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return json.loads((folder / "pnn.json").read_text())


def run(trainer: str, budget: float, calibrate: int, runs: Path, reuse: bool, overrides: list[str]) -> dict:
    """The trainer's run sized to ``budget`` seconds by timing the second half of 2 × ``calibrate`` steps; its
    manifest."""
    folder = runs / trainer
    if reuse and (folder / "pnn.json").is_file():
        return json.loads((folder / "pnn.json").read_text())
    first, second = train(trainer, 2 * calibrate, calibrate, runs / f"{trainer}_calibration", overrides)["history"]
    per_step = (second["time_s"] - first["time_s"]) / calibrate  # the second half: past the first steps' warm-up
    steps = max(POINTS, int(budget / per_step))
    print(f"{trainer}: {per_step:.3f} s/step, {steps} steps in {budget:g} s", flush=True)
    return train(trainer, steps, max(1, steps // POINTS), folder, overrides)


def plot(path: Path, manifests: dict[str, dict], budget: float) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for trainer, m in manifests.items():
        h = m["history"]
        ax.plot([p["time_s"] / 60 for p in h], [p["val_psnr"] for p in h], "o-", ms=3, label=trainer)
    ax.axvline(budget / 60, color="gray", ls=":", lw=1)
    sigma = next(iter(manifests.values()))["val_sigma"]
    ax.set(xlabel="training wall time (min, one thread)", ylabel=f"validation PSNR (dB), σ = {sigma * 255:.0f}/255")
    ax.set_title("PNN: back-propagation vs lifted Bregman training")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save(fig, path)


def test_denoising(runs: Path, trainers: list[str]) -> list[dict]:
    """Each trainer's network, told σ, on the test images at the noise levels and with the noise of
    ``benchmarks/denoising.py`` (its table's rows for the shipped networks)."""
    clean, _ = held_out_images(256, None)
    noisy = noisy_versions(clean)
    rows = []
    for t in trainers:
        den = load(runs / t / "pnn.pt")
        rows.append(
            {"trainer": t, **{f"PSNR σ={round(s * 255)}/255": psnr_of(den, s, noisy[s], clean)[0] for s in NOISE}}
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=480.0, help="training seconds per trainer")
    parser.add_argument("--calibrate", type=int, default=15, help="steps timed (after as many) to size each run")
    parser.add_argument("--trainers", default="backprop,bregman")
    parser.add_argument("--runs", type=Path, default=ROOT / "outputs" / "benchmarks" / "pnn_trainers")
    parser.add_argument("--reuse", action="store_true", help="keep finished runs (just tabulate and plot)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("overrides", nargs="*", help="pnp.train overrides for every run (e.g. the network's size)")
    args = parser.parse_args()
    manifests = {
        t: run(t, args.budget, args.calibrate, args.runs, args.reuse, args.overrides) for t in args.trainers.split(",")
    }
    rows = [
        {"trainer": t, "step": p["step"], "time_s": p["time_s"], "val_psnr": p["val_psnr"], "loss": p["loss"]}
        for t, m in manifests.items()
        for p in m["history"]
    ]
    summary = "; ".join(
        f"{t}: {m['steps']} steps in {m['wall_time_s']:.0f} s ({m['wall_time_s'] / m['steps']:.2f} s/step), final "
        f"{m['val_psnr']:.2f} dB, best {max(p['val_psnr'] for p in m['history']):.2f} dB"
        for t, m in manifests.items()
    )
    m = next(iter(manifests.values()))
    recipe = m["train_config"]
    notes = (
        f"python benchmarks/pnn_trainers.py --budget {args.budget:g} {' '.join(args.overrides)}. The recipe "
        f"{m['recipe']} ({recipe['net']['layers']} layers, {recipe['net']['features']} features, batch "
        f"{recipe['data']['batch']} of {recipe['data']['patch']}², lr {recipe['optim']['lr']:g}, milestones "
        f"{recipe['optim']['milestones']} of the steps), identical but for the trainer; each run sized to a "
        f"{args.budget:g} s budget by timing {args.calibrate} steps after as many, run one after the other on one "
        f"thread. "
        f"loss: the trainer's objective on its last batch (back-propagation: the MSE; Bregman: the lifted objective, "
        f"MSE at the layer variables plus the penalties). {summary}. Machine: {machine()} (shared with other jobs: "
        f"wall times are noisy)."
    )
    args.out.mkdir(parents=True, exist_ok=True)
    write_table(args.out / "pnn_trainers", rows, "PNN: validation PSNR against wall time, by trainer", notes)
    plot(args.out / "pnn_trainers.png", manifests, args.budget)
    print(summary)
    write_table(
        args.out / "pnn_trainers_denoising",
        test_denoising(args.runs, list(manifests)),
        "PNN: test denoising PSNR (dB) of each trainer's network",
        f"The networks of pnn_trainers.md (the weights each run ends with: {m['train_config']['select']} validation), "
        "told the true σ, on the test images of benchmarks/denoising.py (camera, astronaut, coffee, 256², gray, the "
        f"same noise draws). Machine: {machine()}.",
    )


if __name__ == "__main__":
    main()
