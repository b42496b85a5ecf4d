"""The strength tuner on a tiny problem, and how its result becomes the solve default."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import as_the_cli
from omegaconf import OmegaConf

from pnp.config import CONFIGS, apply_tuned, composed, label, tuned_path
from pnp.errors import ConfigError
from pnp.tune import beats_shipped, caveats, converged_in_budget, log_grid, report, tuned_setting, weights_mismatch
from pnp.tune import tune as run_tune
from pnp.weights import SHIPPED

ROOT = Path(__file__).resolve().parent.parent
TINY = ["image.size=32", "monitor.max_iter=15", "monitor.check_every=5", "device=cpu", "tune.points=3"]


def tune_process(*args: str, run_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pnp.tune", *args, *TINY, f"hydra.run.dir={run_dir}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def tune(*args: str, run_dir: Path) -> SimpleNamespace:
    """What ``python -m pnp.tune <args>`` ends with (``returncode``, ``stdout``: its report line, ``stderr``), in this
    process (:func:`conftest.as_the_cli`, ``pnp.tune.main``'s body); ``tune_process`` runs the real entry point."""
    status, line, err = as_the_cli("tune", [*args, *TINY], lambda cfg: report(cfg, run_tune(cfg, run_dir)))
    return SimpleNamespace(returncode=status, stdout=line or "", stderr=err)


def test_log_grid():
    grid = log_grid(0.001, 0.1, 3)
    assert len(grid) == 3 and math.isclose(grid[1], 0.01) and math.isclose(grid[-1], 0.1)


def test_the_tuner_doubts_a_best_value_at_an_end_of_its_search_or_unconverged():
    cfg = composed("+problem=deblur", "denoiser=tv", config="tune")
    runs = [{"value": v, "psnr": p, "converged": True} for v, p in [(0.01, 30.0), (0.02, 31.0), (0.04, 29.0)]]
    assert caveats(cfg, runs[1], runs) == []
    (low,) = caveats(cfg, runs[0], runs)
    assert low.startswith("the best denoiser.sigma is the smallest searched")
    high, unconverged = caveats(cfg, {**runs[2], "converged": False}, runs)
    assert "largest searched" in high and "did not reach monitor.tol within 2000 iterations" in unconverged
    theta = composed("+problem=deblur", "denoiser=euler", "tune.param=denoiser.theta", config="tune")
    at_one = [{"value": 0.5, "psnr": 30.0, "converged": True}, {"value": 1.0, "psnr": 31.0, "converged": True}]
    assert caveats(theta, at_one[1], at_one) == []  # θ = 1 is θ's own bound, not the end of a search


def test_keep_better_needs_more_than_the_minimum_gain(tmp_path):
    path = tmp_path / "deblur_crr.yaml"
    path.write_text("denoiser:\n  sigma: 0.01\nvalidation_psnr: 33.135\n")
    assert not beats_shipped(path, {"validation_psnr": 33.138}, keep_better=True, min_gain=0.02)
    assert beats_shipped(path, {"validation_psnr": 33.138}, keep_better=True, min_gain=0.0)
    assert beats_shipped(path, {"validation_psnr": 33.2}, keep_better=True, min_gain=0.02)
    assert beats_shipped(path, {"validation_psnr": 30.0}, keep_better=False, min_gain=0.02)
    assert beats_shipped(tmp_path / "absent.yaml", {"validation_psnr": 30.0}, keep_better=True, min_gain=0.02)


def test_validation_psnrs_of_another_image_size_or_budget_are_not_compared(tmp_path, caplog):
    """A search at 32² scores higher than the shipped 128² one and would have replaced it."""
    path = tmp_path / "deblur_tv.yaml"
    path.write_text("denoiser:\n  sigma: 0.01\nvalidation_psnr: 32.97\nvalidation_size: 128\n")
    small = {"validation_psnr": 33.39, "validation_size": 32, "validation_max_iter": 2000}
    with pytest.raises(ConfigError, match=r"tuned otherwise \(validation_size=128 there, 32 here\)"):
        beats_shipped(path, small, keep_better=True)
    assert beats_shipped(path, small, keep_better=False)  # tune.ship=true alone writes, and says so
    assert "replacing" in caplog.text and "validation_size=128 there, 32 here" in caplog.text
    assert beats_shipped(path, {**small, "validation_size": 128}, keep_better=True)  # alike: compared


def test_converge_within_wants_a_margin_on_the_iteration_budget():
    cfg = OmegaConf.create({"monitor": {"max_iter": 2000}, "tune": {"converge_within": 0.8}})
    assert converged_in_budget(SimpleNamespace(converged=True, iterations=1600), cfg)
    assert not converged_in_budget(SimpleNamespace(converged=True, iterations=1980), cfg)
    assert not converged_in_budget(SimpleNamespace(converged=False, iterations=500), cfg)


def test_tuner_picks_the_best_validation_value_and_ships_it(tmp_path):
    proc = tune(
        "+problem=deblur",
        "denoiser=wavelet",
        "tune.low=0.001",
        "tune.high=0.3",
        "tune.ship=true",
        f"tune.dir={tmp_path / 'tuned'}",
        run_dir=tmp_path / "run",
    )
    assert proc.returncode == 0, proc.stderr
    record = json.loads((tmp_path / "run" / "tune.json").read_text())
    psnrs = [e["psnr"] for e in record["evaluations"]]
    assert record["best"]["psnr"] == max(psnrs) and len(psnrs) >= 5  # coarse grid + a finer round
    assert record["validation_images"] == ["coins", "moon"]
    assert 0.001 <= record["best"]["value"] <= 0.3 and min(psnrs) < max(psnrs)
    shipped = tmp_path / "tuned" / "deblur_wavelet.yaml"
    assert shipped.read_text().startswith("# Tuned by") and "best" in proc.stdout

    cfg = composed("+problem=deblur", "denoiser=wavelet")
    given = composed("+problem=deblur", "denoiser=wavelet", "denoiser.sigma=0.5")
    assert tuned_path(cfg, tmp_path / "tuned") == shipped
    assert apply_tuned(cfg, (), tmp_path / "tuned") == shipped
    assert math.isclose(cfg.denoiser.sigma, record["best"]["value"], rel_tol=1e-5)
    apply_tuned(given, ("denoiser.sigma=0.5",), tmp_path / "tuned")
    assert given.denoiser.sigma == 0.5  # the command line wins


def test_blind_denoisers_tune_theta_and_mistakes_are_one_line(tmp_path):
    proc = tune("+problem=deblur", "denoiser=euler", run_dir=tmp_path / "a")
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error:") and "theta" in proc.stderr
    proc = tune(
        "+problem=deblur",
        "denoiser=euler",
        "tune.param=denoiser.theta",
        "tune.low=0.1",
        "tune.high=1.0",
        "tune.rounds=1",
        run_dir=tmp_path / "b",
    )
    assert proc.returncode == 0, proc.stderr
    values = [e["value"] for e in json.loads((tmp_path / "b" / "tune.json").read_text())["evaluations"]]
    assert max(values) <= 1.0


@pytest.mark.parametrize("flag", ["tune.ship", "tune.require_converged", "tune.keep_better"])
def test_a_tuning_flag_that_is_not_true_or_false_is_refused_before_anything_is_written(flag, tmp_path):
    """``tune.ship=maybe`` was read as true and overwrote the shipped tuned file."""
    proc = tune("+problem=deblur", "denoiser=tv", f"{flag}=maybe", f"tune.dir={tmp_path}", run_dir=tmp_path / "run")
    assert proc.returncode == 2 and proc.stderr.strip() == f"error: {flag} must be true or false, got 'maybe'"
    assert not any(tmp_path.glob("*.yaml"))


def test_tuning_refuses_data_of_its_own(tmp_path):
    """The tuner scores simulated validation images: a measurement, a folder, a warm start or an image is refused in
    one line (it would otherwise be ignored silently)."""
    proc = tune_process(
        "+problem=deblur", "denoiser=tv", "measurement.path=blurred.png", "init.path=x.npy", run_dir=tmp_path
    )
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error:")
    assert "measurement.path, init.path" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_the_admm_penalty_is_tuned_and_selects_its_scheme(tmp_path):
    """tune.param=scheme.step_factor: the tuned file names the scheme, which pnp.solve then uses unless the command
    line chooses another one (a penalty tuned for ADMM means nothing to PGD)."""
    proc = tune(
        "+problem=deblur",
        "denoiser=wavelet",
        "scheme=admm",
        "tune.param=scheme.step_factor",
        "tune.low=0.1",
        "tune.high=10",
        "tune.rounds=1",
        "tune.ship=true",
        f"tune.dir={tmp_path / 'tuned'}",
        run_dir=tmp_path / "run",
    )
    assert proc.returncode == 0, proc.stderr
    best = json.loads((tmp_path / "run" / "tune.json").read_text())["best"]["value"]
    default = composed("+problem=deblur", "denoiser=wavelet")
    pgd = composed("+problem=deblur", "denoiser=wavelet", "scheme=pgd")
    own = composed("+problem=deblur", "denoiser=wavelet", "scheme.step_factor=3")
    apply_tuned(default, (), tmp_path / "tuned")
    assert default.scheme._target_ == "pnp.schemes.ADMM"
    assert math.isclose(default.scheme.step_factor, best, rel_tol=1e-5)
    apply_tuned(pgd, ("scheme=pgd",), tmp_path / "tuned")
    assert pgd.scheme._target_ == "pnp.schemes.PGD" and pgd.scheme.step_factor == 1.0
    apply_tuned(own, ("scheme.step_factor=3",), tmp_path / "tuned")
    assert own.scheme._target_ == "pnp.schemes.ADMM" and own.scheme.step_factor == 3
    # keep_better: a second search that scores lower on the validation images leaves the tuned file as it is
    shipped = (tmp_path / "tuned" / "deblur_wavelet.yaml").read_text()
    proc = tune(
        "+problem=deblur",
        "denoiser=wavelet",
        "tune.low=5",
        "tune.high=10",
        "tune.rounds=1",
        "tune.ship=true",
        "tune.keep_better=true",
        f"tune.dir={tmp_path / 'tuned'}",
        run_dir=tmp_path / "worse",
    )
    assert proc.returncode == 0, proc.stderr
    assert not json.loads((tmp_path / "worse" / "tune.json").read_text())["shipped"] and "kept" in proc.stdout
    assert (tmp_path / "tuned" / "deblur_wavelet.yaml").read_text() == shipped
    # a set stepsize would make the tuned step_factor meaningless: one error line
    proc = tune(
        "+problem=deblur",
        "denoiser=wavelet",
        "tune.param=scheme.step_factor",
        "scheme.stepsize=1",
        run_dir=tmp_path / "b",
    )
    assert proc.returncode == 2 and "scheme.stepsize" in proc.stderr


def test_a_tuned_file_can_name_other_weights_of_its_prior(tmp_path):
    """A problem tuned with other shipped weights (``denoiser.model.name``) keeps them in its tuned file, and
    ``pnp.solve`` loads them by default there; weights named on the command line win."""
    tuned = composed("+problem=deblur", "denoiser=wcrr", "denoiser.model.name=crr", config="tune")
    plain = composed("+problem=deblur", "denoiser=wcrr", config="tune")
    cfg, own = (composed("+problem=deblur", "denoiser=wcrr", *extra) for extra in ([], ["denoiser.model.name=wcrr"]))
    setting = tuned_setting(tuned, {"value": 0.01, "psnr": 30.0})
    assert setting["denoiser"]["model"] == {"name": "crr"}
    assert "model" not in tuned_setting(plain, {"value": 0.01, "psnr": 30.0})["denoiser"]  # its own weights
    (tmp_path / "deblur_wcrr.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(setting)))
    apply_tuned(cfg, (), tmp_path)
    assert cfg.denoiser.model.name == "crr" and cfg.denoiser.model._target_ == "pnp.weights.pretrained"
    assert cfg.denoiser.sigma == 0.01 and label(cfg).endswith("wcrr(σ=0.01,weights=crr)")
    apply_tuned(own, ("denoiser.model.name=wcrr",), tmp_path)
    assert own.denoiser.model.name == "wcrr"


def test_weights_of_ones_own_run_the_tuned_setting_with_a_warning(caplog):
    mine = ("denoiser.model.name=null", "+denoiser.model.path=/data/mine.pt")
    cfg = composed("+problem=deblur", "denoiser=euler_conditional", *mine)
    assert apply_tuned(cfg, mine) is not None and cfg.denoiser.model.path == "/data/mine.pt"
    assert "deblur_euler_conditional.yaml was tuned with the shipped weights" in caplog.text


def test_a_search_of_other_weights_than_the_tuned_files_says_so(tmp_path):
    """The search starts from the denoiser's config: where the tuned file runs other weights, the tuner warns."""
    (tmp_path / "deblur_wcrr.yaml").write_text("denoiser:\n  sigma: 0.01\n  model:\n    name: crr\n")
    (tmp_path / "deblur_crr.yaml").write_text("denoiser:\n  sigma: 0.01\n")
    searched = composed("+problem=deblur", "denoiser=wcrr", f"tune.dir={tmp_path}", config="tune")
    assert weights_mismatch(searched) == (
        "deblur_wcrr.yaml runs the weights crr, this search tunes wcrr (denoiser.model.name=crr tunes those)"
    )
    for same in (["denoiser=wcrr", "denoiser.model.name=crr"], ["denoiser=crr"], ["denoiser=tv"]):
        assert weights_mismatch(composed("+problem=deblur", *same, f"tune.dir={tmp_path}", config="tune")) is None
    other = composed(
        "+problem=deblur", "denoiser=crr", "denoiser.model.name=wcrr", f"tune.dir={tmp_path}", config="tune"
    )
    assert "runs the weights crr, this search tunes wcrr" in weights_mismatch(other)
    best = {"value": 0.01, "psnr": 30.0, "iterations": 5}
    record = {"param": "denoiser.sigma", "best": best, "validation_images": ["coins"], "shipped": False}
    assert report(other, record).startswith("crr(weights=wcrr): best denoiser.sigma=0.01 -> 30.00 dB on coins")
    assert report(searched, record).startswith("wcrr: best")


def test_a_setting_tuned_from_another_start_records_it_and_solve_starts_there(tmp_path):
    """``problem.init`` other than the problem config's goes into the tuned file (a nonconvex F's critical point
    depends on x_0), a solve of that pair starts there and says so in its label; a start on the command line wins, and
    a setting tuned from the problem's own start records none."""
    tuned, plain = (
        composed("+problem=ct", "denoiser=tv", *extra, config="tune") for extra in (["problem.init=adjoint"], [])
    )
    cfg, own = (composed("+problem=ct", "denoiser=tv", *extra) for extra in ([], ["problem.init=zeros"]))
    motion = composed("+problem=deblur_motion", "denoiser=tv")  # its start from deblur's
    assert "from" not in label(motion)
    setting = tuned_setting(tuned, {"value": 0.01, "psnr": 30.0})
    assert setting["problem"] == {"init": "adjoint"}
    assert "problem" not in tuned_setting(plain, {"value": 0.01, "psnr": 30.0})
    (tmp_path / "ct_tv.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(setting)))
    assert cfg.problem.init == "fbp" and "from" not in label(cfg)
    apply_tuned(cfg, (), tmp_path)
    assert cfg.problem.init == "adjoint" and label(cfg).startswith("ct(from adjoint) · ")
    apply_tuned(own, ("problem.init=zeros",), tmp_path)
    assert own.problem.init == "zeros"


@pytest.mark.parametrize("path", sorted((CONFIGS / "tuned").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_tuned_file_composes_with_its_problem_and_names_shipped_weights(path):
    """``pnp/configs/tuned/<problem>_<denoiser>.yaml`` applies to a solve of that pair, every key it sets lands there,
    and weights it names are shipped."""
    problem = max((p.stem for p in (CONFIGS / "problem").glob("*.yaml") if path.stem.startswith(p.stem + "_")), key=len)
    denoiser = path.stem.removeprefix(problem + "_")
    cfg = composed(f"+problem={problem}", f"denoiser={denoiser}")
    assert apply_tuned(cfg) == path
    tuned = OmegaConf.load(path)
    for key, value in tuned.denoiser.items():
        assert (cfg.denoiser.model.name == value.name) if key == "model" else cfg.denoiser[key] == value, key
    for key, value in tuned.get("problem", {}).items():
        assert cfg.problem[key] == value, key
    weights = OmegaConf.select(cfg, "denoiser.model.name")
    assert weights is None or (SHIPPED / f"{weights}.pt").is_file(), weights


def test_the_prior_weight_of_accelerated_gradient_is_tuned_and_shipped(tmp_path):
    """tune.param=scheme.weight: τ of f + τR_σ (the papers' λ beside σ) goes into the tuned file with the scheme."""
    proc = tune(
        "+problem=deblur",
        "denoiser=crr",
        "tune.param=scheme.weight",
        "tune.low=0.25",
        "tune.high=4",
        "tune.rounds=1",
        "tune.ship=true",
        f"tune.dir={tmp_path / 'tuned'}",
        run_dir=tmp_path / "run",
    )
    assert proc.returncode == 0, proc.stderr
    record = json.loads((tmp_path / "run" / "tune.json").read_text())
    assert sorted(e["value"] for e in record["evaluations"]) == [0.25, 1.0, 4.0]
    assert len({e["psnr"] for e in record["evaluations"]}) == 3  # the weight changes the reconstruction
    cfg = composed("+problem=deblur", "denoiser=crr")
    apply_tuned(cfg, (), tmp_path / "tuned")
    assert cfg.scheme._target_ == "pnp.schemes.AGD"
    assert math.isclose(cfg.scheme.weight, record["best"]["value"], rel_tol=1e-5)
    proc = tune("+problem=deblur", "denoiser=tv", "tune.param=scheme.weight", run_dir=tmp_path / "pgd")
    assert proc.returncode == 2 and "scheme.weight" in proc.stderr and "Traceback" not in proc.stderr


def test_require_converged_refuses_runs_that_end_above_the_tolerance(tmp_path):
    proc = tune(
        "+problem=deblur",
        "denoiser=wavelet",
        "tune.rounds=1",
        "tune.require_converged=true",  # TINY's 15 iterations do not reach tol 1e-5
        run_dir=tmp_path,
    )
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error:") and "monitor.tol" in proc.stderr
