"""Training data, shipped weights, and the pnp.train / pnp.certify command lines on tiny models."""

from __future__ import annotations

import json
import math
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import io

from pnp import weights
from pnp.certify import caveats
from pnp.cli import Composer
from pnp.data import HELD_OUT, TEST, TRAIN, VALIDATION, PatchSampler, make_split, training_images
from pnp.denoisers import LPN
from pnp.errors import ConfigError
from pnp.train import train

ROOT = Path(__file__).resolve().parent.parent
TINY_TRAIN = [
    "data.patch=16",
    "data.batch=2",
    "data.val_size=32",
    "certify_points=1",
    "val_every=2",
    "checkpoint_every=2",
    "device=cpu",
]
TINY_NET = {
    "dncnn": ["net.depth=3", "net.width=4"],
    "euler": ["net.depth=2", "net.width=4"],
    "lpn": ["net.depth=2", "net.width=4"],
    "crr": ["net.conv_channels=[2,4]", "net.kernel_size=3", "net.knots=5", "objective.steps=2"],
}
SHIPPED = sorted(p.stem for p in weights.SHIPPED.glob("*.json"))


def run(module: str, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def trained(folder: Path, *overrides: str) -> dict:
    """``python -m pnp.train <overrides> hydra.run.dir=<folder>``'s manifest, trained in this process (a subprocess
    costs seconds of imports); the command line itself is tested by the resume and kill tests."""
    return train(Composer("train")(list(overrides)), folder)


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory) -> dict[str, Path]:
    """Tiny dncnn, euler, lpn and crr trained for 4 steps each (weights + manifest + checkpoint)."""
    out = {}
    for name, net in TINY_NET.items():
        out[name] = tmp_path_factory.mktemp(name)
        trained(out[name], f"denoiser={name}", "steps=4", *net, *TINY_TRAIN)
    return out


def test_noise_conditional_ridge_regularizer_trains(tiny_runs):
    manifest = json.loads((tiny_runs["crr"] / "crr.json").read_text())
    assert manifest["target"] == "pnp.denoisers.ridge.RidgeRegularizer" and manifest["recipe"] == "crr_cpu"
    assert manifest["train_config"]["data"]["log_uniform"] and math.isfinite(manifest["val_psnr"])
    assert manifest["lipschitz"]["lip_D_max"] <= 1.0 + 1e-3  # the prox of a convex function
    model = weights.load(tiny_runs["crr"] / "crr.pt")
    assert model.config["conv_channels"] == [2, 4] and model(torch.rand(1, 1, 16, 16), 0.05).shape == (1, 1, 16, 16)


def test_embedded_split_keeps_held_out_images_out_of_training():
    split = make_split()
    assert len(split.validation) >= 2 and "camera" in split.test
    assert not set(split.train) & set(HELD_OUT) and not set(split.validation) & set(split.test)
    assert set(VALIDATION) == set(split.validation) and set(TEST) == set(split.test) and set(TRAIN) == set(split.train)
    assert split.images("held_out") == [*VALIDATION, *TEST]


def test_folder_split_is_deterministic(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(7):
        io.imsave(tmp_path / f"im{i}.png", (rng.random((20, 24)) * 255).astype(np.uint8))
    a, b = make_split(str(tmp_path), 3), make_split(str(tmp_path), 3)
    assert a == b and len(a.validation) == 3 and len(a.train) == 4
    with pytest.raises(ConfigError, match="need more than"):
        make_split(str(tmp_path), 7)


def test_multiscale_training_images(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(4):
        io.imsave(tmp_path / f"im{i}.png", (rng.random((40, 60)) * 255).astype(np.uint8))
    split = make_split(str(tmp_path), 1)
    plain = training_images(split)
    multi = training_images(split, (1.0, 0.5, 0.25), patch=16)  # 0.25: 10 x 15, below the patch, left out
    assert [tuple(x.shape[-2:]) for x in plain] == [(40, 60)] * 3
    assert [tuple(x.shape[-2:]) for x in multi] == [(40, 60), (20, 30)] * 3
    assert torch.allclose(multi[1].mean(), multi[0].mean(), atol=1e-3)  # an antialiased downscale keeps the mean
    with pytest.raises(ConfigError, match="must lie in"):
        training_images(split, (1.0, 1.5))


def test_patch_sampler_shapes_noise_and_seed():
    images = [torch.rand(1, 1, 30, 40), torch.rand(1, 1, 50, 20)]
    s1, s2 = (PatchSampler(images, 16, 8, 0.1, 0.1, seed=3, device=torch.device("cpu")) for _ in range(2))
    (c1, n1, sig1), (c2, n2, _) = s1(), s2()
    assert c1.shape == (8, 1, 16, 16) and torch.equal(c1, c2) and torch.equal(n1, n2)
    assert (n1 - c1).std().item() == pytest.approx(0.1, rel=0.15) and torch.allclose(sig1, torch.full((8,), 0.1))
    wide = PatchSampler(images, 16, 4000, 0.01, 1.0, seed=0, device=torch.device("cpu"), log_uniform=True)
    levels = wide.noise_levels()
    assert levels.min() >= 0.01 and levels.max() <= 1.0
    assert (levels < 0.1).float().mean().item() == pytest.approx(0.5, abs=0.05)  # log-uniform: half below √(0.01)
    with pytest.raises(ConfigError, match="larger than"):
        PatchSampler(images, 32, 2, 0.0, 0.1, 0, torch.device("cpu"))


def test_train_writes_weights_and_manifest(tiny_runs):
    folder = tiny_runs["dncnn"]
    manifest = json.loads((folder / "dncnn.json").read_text())
    assert manifest["sha256"] == weights.sha256(folder / "dncnn.pt")
    assert manifest["target"] == "pnp.denoisers.dncnn.DnCNN" and manifest["config"]["depth"] == 3
    assert manifest["recipe"] == "dncnn_cpu" and manifest["steps"] == 4
    assert set(manifest["split"]["validation"]) == set(VALIDATION) and set(manifest["split"]["test"]) == set(TEST)
    for key in ("wall_time_s", "device", "val_psnr", "lipschitz", "train_config", "history"):
        assert key in manifest
    assert manifest["lipschitz"]["lip_D_max"] > 0
    model = weights.load(folder / "dncnn.pt")
    assert model(torch.rand(1, 1, 8, 8), None).shape == (1, 1, 8, 8)


def test_train_resumes_from_its_checkpoint(tiny_runs, tmp_path):
    folder = tmp_path / "resume"
    shutil.copytree(tiny_runs["dncnn"], folder)
    proc = run(
        "pnp.train",
        "denoiser=dncnn",
        "steps=6",
        "resume=true",
        *TINY_NET["dncnn"],
        *TINY_TRAIN,
        f"hydra.run.dir={folder}",
    )
    manifest = json.loads((folder / "dncnn.json").read_text())
    assert [h["step"] for h in manifest["history"]] == [2, 4, 6]  # continued, not restarted
    assert "val PSNR" in proc.stdout
    fresh = subprocess.run(
        [
            sys.executable,
            "-m",
            "pnp.train",
            "denoiser=dncnn",
            "resume=true",
            *TINY_TRAIN,
            f"hydra.run.dir={tmp_path / 'empty'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert fresh.returncode == 2 and "no checkpoint" in fresh.stderr and "Traceback" not in fresh.stderr


def test_training_refuses_a_checkpoint_of_another_network_or_beyond_its_steps(tiny_runs, tmp_path):
    """Mistakes a rerun in a recipe's fixed run folder makes easily: one line each (not torch's traceback, not a
    manifest whose ``steps`` disagree with its weights), nothing written."""
    folder = tmp_path / "resume"
    shutil.copytree(tiny_runs["dncnn"], folder)
    before = (folder / "dncnn.json").read_bytes()
    with pytest.raises(ConfigError, match=r"resume=true: .*checkpoint.pt holds weights of another network: size"):
        trained(folder, "denoiser=dncnn", "steps=6", "resume=true", "net.depth=3", "net.width=8", *TINY_TRAIN)
    with pytest.raises(ConfigError, match=r"checkpoint.pt is at step 4, beyond steps=3"):
        trained(folder, "denoiser=dncnn", "steps=3", "resume=true", *TINY_NET["dncnn"], *TINY_TRAIN)
    with pytest.raises(ConfigError, match="steps must be at least 1, got 0"):
        trained(folder, "denoiser=dncnn", "steps=0", *TINY_NET["dncnn"], *TINY_TRAIN)
    with pytest.raises(ConfigError, match=r"init_from=.*dncnn.pt holds weights of another network: size"):
        trained(tmp_path / "init", "denoiser=dncnn", f"init_from={folder / 'dncnn.pt'}", "steps=2", *TINY_TRAIN)
    assert (folder / "dncnn.json").read_bytes() == before and not (tmp_path / "init" / "dncnn.pt").exists()


def test_a_pnn_trains_with_the_lifted_bregman_trainer(tmp_path):
    args = ["denoiser=pnn", "trainer=bregman", "steps=2", "net.layers=2", "net.features=4", *TINY_TRAIN]
    manifest = trained(tmp_path, *args)
    assert manifest["trainer"] == "bregman" and manifest["recipe"] == "pnn_cpu"
    assert manifest["train_config"]["objective"]["_target_"] == "pnp.losses.LiftedBregman"
    (last,) = manifest["history"]
    assert last["time_s"] > 0 and last["bregman"] >= 0 and math.isfinite(manifest["val_psnr"])
    assert weights.load(tmp_path / "pnn.pt")(torch.rand(1, 1, 16, 16), 0.05).shape == (1, 1, 16, 16)


def test_trained_lpn_weights_are_nonnegative(tiny_runs):
    model = weights.load(tiny_runs["lpn"] / "lpn.pt")
    assert isinstance(model, LPN)
    assert all((conv.weight >= 0).all() for conv in [*model.hidden, model.output])


def test_certify_writes_its_certificate(tiny_runs, tmp_path):
    proc = run(
        "pnp.certify",
        "denoiser=euler",
        "denoiser.model.name=null",
        f"+denoiser.model.path={tiny_runs['euler'] / 'euler.pt'}",
        "size=16",
        "n_iter=30",
        "probes=2",
        "noise=[0.0,0.1]",
        "device=cpu",
        f"hydra.run.dir={tmp_path}",
    )
    cert = json.loads((tmp_path / "certificate.json").read_text())
    assert len(cert["points"]) == 2 * len(HELD_OUT)
    assert cert["summary"]["lip_D"]["max"] <= 1.0 + 1e-3
    assert cert["passed"] and cert["checks"][0]["check"].startswith("max lip_D")
    assert cert["layer_bound"]["max_tau_bound2_over_2"] <= 1.0
    assert "PASS" in proc.stdout and "Lip(D)" in proc.stdout


def test_certify_names_what_weakens_a_pass():
    points = [{"power_converged": True}, {"power_converged": False}]
    cert = {"denoiser": "dncnn", "checks": [], "points": points, "settings": {"n_iter": 5}}
    nothing, loose = caveats(cert)
    assert "nothing was checked" in nothing and "n_iter=5 before tol at 1 of 2 points" in loose
    assert caveats({**cert, "checks": [{"passed": True}], "points": points[:1]}) == []


def test_certify_checks_a_noise_conditional_prior_at_several_strengths_and_fails_loudly(tiny_runs, tmp_path):
    args = (
        "pnp.certify",
        "denoiser=crr",
        "denoiser.model.name=null",
        f"+denoiser.model.path={tiny_runs['crr'] / 'crr.pt'}",
        "size=16",
        "probes=2",
        "noise=[0.05]",
        "device=cpu",
    )
    run(*args, "n_iter=20", "strengths=[0.01,0.1]", f"hydra.run.dir={tmp_path / 'ok'}")
    cert = json.loads((tmp_path / "ok" / "certificate.json").read_text())
    assert {p["strength"] for p in cert["points"]} == {0.01, 0.1} and cert["passed"]
    assert cert["summary"]["lip_D"]["max"] <= 1.0 + 1e-3 and cert["summary"]["min_eigenvalue"]["min"] > -1e-3
    # a prox is firmly nonexpansive, not a contraction by a factor 2: a wrong promise must fail, with status 1
    # (one strength and a few power iterations suffice to fail)
    wrong = ("n_iter=5", "strengths=[0.01]", "+denoiser.expect.lip_D=0.5", f"hydra.run.dir={tmp_path / 'bad'}")
    proc = subprocess.run(
        [sys.executable, "-m", *args, *wrong],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 1 and "FAIL: max lip_D <= 0.5" in proc.stdout
    assert "FAIL: max secant_D <= 0.5" in proc.stdout  # the outputs themselves are checked too
    assert proc.stderr.strip().splitlines()[-1].startswith("error: certificate failed")


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_weights_load_offline_and_corruption_is_rejected(name, tmp_path):
    model = weights.pretrained(name)
    manifest = json.loads((weights.SHIPPED / f"{name}.json").read_text())
    assert (weights.SHIPPED / f"{name}.pt").stat().st_size < 20 * 2**20
    # trained on today's split: no held-out (validation or test) image was seen in training or chose anything
    assert manifest["recipe"] and manifest["split"] == make_split().as_dict()
    assert model(torch.rand(1, 1, 16, 16), 0.05).shape == (1, 1, 16, 16)  # blind networks ignore sigma
    for suffix in (".pt", ".json"):
        shutil.copy(weights.SHIPPED / f"{name}{suffix}", tmp_path / f"{name}{suffix}")
    data = bytearray((tmp_path / f"{name}.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / f"{name}.pt").write_bytes(bytes(data))
    with pytest.raises(ConfigError, match=rf"{name}\.pt is corrupted: .* expected {manifest['sha256']}"):
        weights.load(tmp_path / f"{name}.pt")
    (tmp_path / f"{name}.pt").unlink()
    with pytest.raises(ConfigError, match=rf"{name}\.pt is missing \(expected sha256 {manifest['sha256']}\)"):
        weights.load(tmp_path / f"{name}.pt")


def test_unknown_shipped_name():
    with pytest.raises(ConfigError, match="no shipped weights named"):
        weights.pretrained("resnet")


def test_a_killed_run_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path):
    """SIGKILL after the first checkpoints, resume=true, and compare with a run that was never interrupted (the
    firmly-nonexpansive objective draws its penalty points from the global generator: that state is checkpointed)."""
    args = ["denoiser=fne_dncnn", "init_from=null", "steps=60", "checkpoint_every=5", "val_every=30",
            "objective.points=2", *TINY_NET["dncnn"], *TINY_TRAIN[:-3], "device=cpu"]  # fmt: skip
    killed, straight = tmp_path / "killed", tmp_path / "straight"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pnp.train", *args, f"hydra.run.dir={killed}"], cwd=ROOT, stderr=subprocess.DEVNULL
    )
    ckpt = killed / "checkpoint.pt"
    while not ckpt.is_file() and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step = torch.load(ckpt, weights_only=False)["step"]
    assert 0 < step < 60 and not (killed / "fne_dncnn.pt").exists()  # killed mid-way
    run("pnp.train", *args, "resume=true", f"hydra.run.dir={killed}")
    run("pnp.train", *args, f"hydra.run.dir={straight}")
    resumed, uninterrupted = (torch.load(d / "fne_dncnn.pt") for d in (killed, straight))
    for key, value in uninterrupted.items():
        torch.testing.assert_close(resumed[key], value, rtol=0, atol=0, msg=key)


def test_select_best_ships_the_weights_of_the_best_validation_step(tmp_path):
    """Early stopping on the validation images: ``select=best`` keeps the best validation PSNR's weights (and says
    which step they are from); the default keeps the last step's. ``weights_name`` names the files (a second set of
    weights of one prior)."""
    args = ["denoiser=crr", "steps=6", "select=best", *TINY_NET["crr"], *TINY_TRAIN]
    manifest = trained(tmp_path, *args, "optim.lr=0.3", "weights_name=crr_best")  # lr too large: PSNR peaks at step 2
    assert manifest == json.loads((tmp_path / "crr_best.json").read_text())
    assert manifest["name"] == "crr_best" and manifest["file"] == "crr_best.pt"
    scores = {h["step"]: h["val_psnr"] for h in manifest["history"]}
    best_step = max(scores, key=scores.get)
    assert manifest["selected_step"] == best_step and manifest["val_psnr"] == scores[best_step], scores
    last = torch.load(tmp_path / "checkpoint.pt", weights_only=False)["model"]
    shipped = weights.load(tmp_path / "crr_best.pt").state_dict()
    assert best_step != 6 and not all(torch.equal(shipped[k], last[k]) for k in last)


def test_select_best_lets_the_starting_weights_compete(tmp_path):
    """With init_from, the starting weights are validated first (step 0): a fine-tune that only makes them worse
    ships them unchanged."""
    args = ["denoiser=dncnn", "init_from=dncnn", "steps=2", "select=best", *TINY_TRAIN]
    manifest = trained(tmp_path, *args, "optim.lr=1.0", "optim.grad_clip=100")  # a destructive step
    assert [h["step"] for h in manifest["history"]] == [0, 2] and manifest["selected_step"] == 0
    start, shipped = weights.pretrained("dncnn").state_dict(), weights.load(tmp_path / "dncnn.pt").state_dict()
    assert all(torch.equal(start[k], shipped[k]) for k in start)


def test_init_from_takes_a_weights_path_of_a_previous_run(tiny_runs, tmp_path):
    """A run can start from another run's output (a path with its manifest): its step-0 validation is the PSNR the
    first run ended with."""
    first = tiny_runs["dncnn"] / "dncnn.pt"
    args = ["denoiser=dncnn", f"init_from={first}", "steps=2", "select=best", *TINY_NET["dncnn"], *TINY_TRAIN]
    history = trained(tmp_path, *args)["history"]
    before = json.loads(first.with_suffix(".json").read_text())["val_psnr"]
    assert history[0]["step"] == 0 and history[0]["val_psnr"] == pytest.approx(before, abs=1e-4)
    with pytest.raises(ConfigError, match="no shipped weights named"):
        weights.pretrained("outputs_train_dncnn")  # a bare word is a shipped name, never a path


def test_select_last_is_the_default(tiny_runs):
    manifest = json.loads((tiny_runs["dncnn"] / "dncnn.json").read_text())
    assert manifest["selected_step"] == manifest["steps"] == 4


@pytest.mark.parametrize(("loss", "power"), [("mse", 2), ("l1", 1)])
def test_per_sigma_denoising_loss_weighs_every_noise_level_alike(loss, power):
    """The identity 'denoiser' errs by exactly σ_i n_i on sample i (n_i of unit RMS / unit mean magnitude): divided
    by σ_i^p every sample scores the same, while the unweighted loss is the noisiest sample's."""
    from pnp.losses import Denoising

    torch.manual_seed(0)
    clean = torch.rand(3, 1, 8, 8)
    sigma = torch.tensor([0.002, 0.02, 0.2])
    n = torch.randn_like(clean)
    n = n / (n.pow(2).mean((1, 2, 3), keepdim=True).sqrt() if power == 2 else n.abs().mean((1, 2, 3), keepdim=True))
    noisy = clean + sigma.view(-1, 1, 1, 1) * n

    def identity(x, s):
        return x

    weighted, _ = Denoising(loss, per_sigma=True)(identity, clean, noisy, 0, 1, sigma)
    plain, _ = Denoising(loss)(identity, clean, noisy, 0, 1, sigma)
    assert float(weighted) == pytest.approx(1.0, rel=1e-4)
    assert float(plain) == pytest.approx(float(sigma.pow(power).mean()), rel=1e-4)
    with pytest.raises(ConfigError, match="per_sigma"):
        Denoising(loss, per_sigma=True)(identity, clean, noisy, 0, 1, None)
