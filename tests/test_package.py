"""The installed package: a wheel that carries the configs and weights, console scripts that are the modules, and
weights manifests that can only build pnp's own architectures."""

from __future__ import annotations

import configparser
import importlib
import json
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import run_entry_point
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from pnp import weights
from pnp.cli import check_composition
from pnp.config import CONFIGS
from pnp.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = {
    "pnp-solve": "pnp.cli:solve",
    "pnp-train": "pnp.cli:train",
    "pnp-tune": "pnp.cli:tune",
    "pnp-certify": "pnp.cli:certify",
}


def run_script(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``name`` as the launcher pip writes for a console script: import its target and ``sys.exit`` with it."""
    module, function = SCRIPTS[name].split(":")
    launcher = f"import sys; from {module} import {function}; sys.exit({function}())"
    return subprocess.run([sys.executable, "-c", launcher, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def script_function(name: str) -> Callable[[], None]:
    """The function the console script ``name`` calls."""
    module, function = SCRIPTS[name].split(":")
    return getattr(importlib.import_module(module), function)


def test_the_wheel_carries_every_config_the_weights_and_the_console_scripts(tmp_path):
    pytest.importorskip("setuptools", minversion="70.1")  # builds a wheel without the `wheel` package
    source = tmp_path / "source"  # a copy: the build's build/ and *.egg-info stay out of the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "pnp", source / "pnp", ignore=shutil.ignore_patterns("__pycache__"))
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q", "-w", "dist"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    (wheel,) = (tmp_path / "dist").glob("pnp-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = configparser.ConfigParser()
        scripts.read_string(archive.read(entry_points).decode())
    configs = {f"pnp/configs/{p.relative_to(CONFIGS).as_posix()}" for p in CONFIGS.rglob("*.yaml")}
    shipped = {f"pnp/weights/{p.name}" for p in weights.SHIPPED.glob("*") if p.suffix in (".pt", ".json")}
    expected = {
        "pnp/configs/solve.yaml",
        "pnp/configs/denoiser/crr.yaml",
        "pnp/configs/hydra/job_logging/pnp.yaml",
        "pnp/configs/tuned/deblur_crr.yaml",
        "pnp/weights/crr.pt",
        "pnp/weights/crr.json",
    }
    assert expected <= configs | shipped
    assert not (configs | shipped) - names, sorted((configs | shipped) - names)
    assert dict(scripts["console_scripts"]) == SCRIPTS


def test_a_console_script_reports_a_mistake_as_its_module_does(tmp_path):
    proc = run_script("pnp-solve", "+problem=deblr", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert "did you mean `deblur`?" in proc.stderr and not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("script", "args", "fragment"),
    [
        ("pnp-train", ["stepz=3"], "did you mean `steps`?"),
        ("pnp-certify", ["denoiser=fne_dncn"], "did you mean `fne_dncnn`?"),
        ("pnp-tune", ["+problem=deblur", "tune.parm=denoiser.theta"], "did you mean `tune.param`?"),
    ],
)
def test_the_other_console_scripts_report_a_mistake_as_their_modules_do(script, args, fragment, tmp_path):
    """The function pip's launcher calls, in this process (the test above runs one as a process)."""
    code, _, err = run_entry_point(script_function(script), [script, *args, f"hydra.run.dir={tmp_path / 'run'}"])
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert fragment in err and not (tmp_path / "run").exists()


def test_help_names_the_groups_and_the_main_keys_for_the_module_and_its_script(tmp_path):
    module = subprocess.run(
        [sys.executable, "-m", "pnp.solve", "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    code, stdout, stderr = run_entry_point(script_function("pnp-solve"), ["pnp-solve", "--help"])
    assert module.returncode == code == 0, module.stderr + stderr
    assert module.stdout == stdout
    groups, keys = module.stdout.split("keys (key=value):")
    listed = [line.split()[0] for line in groups.splitlines() if line.startswith("  ")]
    assert {"problem", "scheme", "denoiser"} <= set(listed), module.stdout
    assert "+problem=" in groups and "  monitor." in keys and "  image." in keys, module.stdout


def copy_weights(tmp_path: Path, name: str, **changes: object) -> Path:
    """Shipped weights ``name`` copied into ``tmp_path`` with ``changes`` to their manifest."""
    shutil.copy(weights.SHIPPED / f"{name}.pt", tmp_path / f"{name}.pt")
    manifest = {**json.loads((weights.SHIPPED / f"{name}.json").read_text()), **changes}
    (tmp_path / f"{name}.json").write_text(json.dumps(manifest))
    return tmp_path / f"{name}.pt"


def test_a_manifest_naming_another_class_is_refused_before_it_is_built(monkeypatch, tmp_path):
    def popen(*args: object, **kwargs: object) -> None:
        raise AssertionError("a manifest made pnp.weights.load start a process")

    monkeypatch.setattr(subprocess, "Popen", popen)
    evil = copy_weights(tmp_path, "crr", target="subprocess.Popen", config={"args": ["touch", str(tmp_path / "x")]})
    with pytest.raises(ConfigError, match=r"'subprocess\.Popen', which is not one of pnp's: .*RidgeRegularizer"):
        weights.load(evil)
    assert not (tmp_path / "x").exists()


def test_a_manifest_target_is_never_imported(tmp_path):
    assert "antigravity" not in sys.modules  # importing it opens a web browser
    with pytest.raises(ConfigError, match="not one of pnp's"):
        weights.load(copy_weights(tmp_path, "crr", target="antigravity.geohash"))
    assert "antigravity" not in sys.modules


@pytest.mark.parametrize("config", [["channels", 1], "channels=1", None])
def test_a_manifest_config_must_be_a_dict(config, tmp_path):
    with pytest.raises(ConfigError, match="config must be a dict of arguments"):
        weights.load(copy_weights(tmp_path, "crr", config=config))


def test_every_shipped_manifest_and_training_recipe_names_an_allowed_architecture():
    for manifest in weights.SHIPPED.glob("*.json"):
        target = json.loads(manifest.read_text())["target"]
        assert isinstance(weights.load(manifest.with_suffix(".pt")), weights.ARCHITECTURES[target])
    for recipe in (CONFIGS / "recipe").glob("*.yaml"):  # what pnp.train saves, pnp.weights.load builds again
        assert get_class(recipe_net(recipe.stem)._target_) in weights.ARCHITECTURES.values(), recipe.name


def recipe_net(name: str) -> DictConfig:
    """A recipe's ``net``, merged over that of the recipe it extends (defaults: [<recipe>, _self_])."""
    cfg = OmegaConf.load(CONFIGS / "recipe" / f"{name}.yaml")
    bases = [d for d in cfg.get("defaults", []) if d != "_self_"]
    return OmegaConf.merge(recipe_net(bases[0]) if bases else {}, cfg.get("net", {}))


def test_a_users_config_folder_on_the_search_path_passes_the_command_line_guard(tmp_path):
    (tmp_path / "denoiser").mkdir()
    shutil.copy(CONFIGS / "denoiser" / "tv.yaml", tmp_path / "denoiser" / "mine.yaml")
    argv = ["+problem=deblur", "denoiser=mine"]
    assert "has no option `mine`" in check_composition(argv, "solve")
    assert check_composition([*argv, f"hydra.searchpath=[file://{tmp_path}]"], "solve") is None
