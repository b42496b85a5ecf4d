"""Every YAML file in pnp/configs/ composes, and every object in it instantiates."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from deepinv.models import Denoiser
from deepinv.optim import DataFidelity
from hydra.utils import instantiate
from omegaconf import OmegaConf

from pnp.config import CONFIGS, build_denoiser, build_problem, composed, denoiser_sigma
from pnp.errors import ConfigError
from pnp.guarantees import Guarantee
from pnp.losses import LiftedBregman
from pnp.monitor import ConvergenceMonitor
from pnp.problems import Problem
from pnp.schemes import Scheme

GROUPS = ("problem", "scheme", "denoiser", "fidelity", "equivariant")
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONFIGS / g).glob("*.yaml"))]
SMALL = ["image.size=32", "monitor.max_iter=3", "device=cpu"]


def test_every_group_has_options():
    for group in GROUPS:
        assert any(g == group for g, _ in OPTIONS), group
    assert {"deblur", "ct", "cs"} <= {o for g, o in OPTIONS if g == "problem"}


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_config_composes_and_instantiates(group, option):
    problem = option if group == "problem" else "deblur"
    overrides = [f"+problem={problem}", *SMALL]
    if group != "problem":
        overrides.append(f"{group}={option}")
    cfg = composed(*overrides)
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    if group == "problem":
        built = build_problem(cfg, torch.device("cpu"), torch.float32)
        assert isinstance(built, Problem) and built.name == option.split("_")[0]  # deblur_motion is a deblur
    elif group in ("denoiser", "equivariant"):
        den = build_denoiser(cfg, torch.device("cpu"), torch.float32)
        assert isinstance(den, Denoiser)
        sigma = denoiser_sigma(cfg)
        assert (sigma is None) == bool(cfg.denoiser.get("blind")) and Guarantee(**cfg.denoiser.guarantee)
        x = torch.rand(1, 1, 16, 16)
        assert den(x, sigma).shape == x.shape
    elif group == "scheme":
        assert isinstance(instantiate(cfg.scheme), Scheme)
    else:
        assert isinstance(instantiate(cfg.fidelity), DataFidelity)
    assert isinstance(instantiate(cfg.monitor), ConvergenceMonitor)


def test_problem_configs_set_their_default_images():
    assert composed("+problem=ct").image.name == "phantom"
    assert composed("+problem=cs").image.size == 64
    assert composed("+problem=deblur").image.name == "camera"
    assert composed("+problem=ct", "image.name=camera").image.name == "camera"  # the command line wins


def test_no_python_registry_of_classes():
    """Objects come from `_target_` in YAML: no string-to-class tables in the package."""
    for path in Path(CONFIGS).rglob("*.yaml"):
        cfg = OmegaConf.load(path)
        assert "type" not in cfg and "class" not in cfg, path


RECIPES = sorted(p.stem for p in (CONFIGS / "recipe").glob("*.yaml"))


def recipe_denoiser(recipe: str) -> str:
    """The denoiser a recipe trains: the longest denoiser name it starts with (fne_dncnn_cpu, lpn_convex_cpu)."""
    names = {o for g, o in OPTIONS if g == "denoiser"}
    return max((n for n in names if recipe.startswith(n + "_")), key=len)


@pytest.mark.parametrize("recipe", RECIPES)
def test_training_recipes_compose_and_instantiate(recipe):
    name = recipe_denoiser(recipe)
    cfg = composed(f"denoiser={name}", f"recipe={recipe}", config="train")
    assert cfg.denoiser.name == name
    net, objective = instantiate(cfg.net), instantiate(cfg.objective)
    assert isinstance(net, Denoiser) and callable(objective)
    if "width" in cfg.net:  # the forward at a few channels: a 64-channel Euler net's first one costs 8 s
        net = instantiate(composed(f"denoiser={name}", f"recipe={recipe}", "net.width=4", config="train").net)
    x = torch.rand(1, 1, 8, 8)
    assert net(x, 0.1).shape == x.shape  # blind networks ignore sigma, conditional ones need it


def test_every_learned_denoiser_has_both_recipes():
    learned = {o for g, o in OPTIONS if g == "denoiser"} - {"tv", "wavelet", "bm3d"}
    assert {f"{n}_{s}" for n in learned for s in ("cpu", "gpu")} <= set(RECIPES)
    assert all(r.endswith(("_cpu", "_gpu")) for r in RECIPES)


def test_the_bregman_trainer_lifts_the_recipes_objective_and_changes_nothing_else():
    backprop = OmegaConf.to_container(composed("denoiser=pnn", config="train"))
    assert backprop == OmegaConf.to_container(composed("denoiser=pnn", "trainer=backprop", config="train"))
    cfg = composed("denoiser=pnn", "trainer=bregman", "objective.sweeps=1", config="train")
    bregman = OmegaConf.to_container(cfg)
    assert bregman.pop("objective") == {"_target_": "pnp.losses.LiftedBregman", "loss": "mse", "sweeps": 1}
    assert backprop.pop("objective") != {} and bregman == backprop
    objective, net = instantiate(cfg.objective), instantiate(cfg.net)
    assert isinstance(objective, LiftedBregman)
    clean = torch.rand(2, 1, 8, 8)
    loss, logs = objective(net, clean, clean + 0.1 * torch.randn_like(clean), 0, 1, torch.full((2,), 0.1))
    loss.backward()
    assert torch.isfinite(loss) and logs["bregman"] >= 0 and logs["loss"] <= logs["mse"]
    dncnn = composed("denoiser=dncnn", "trainer=bregman", config="train")
    with pytest.raises(ConfigError, match="unrolled network"):
        instantiate(dncnn.objective)(instantiate(dncnn.net), clean, clean, 0, 1, None)


@pytest.mark.parametrize("name", ["euler", "fne_dncnn", "lpn", "tv"])
def test_certify_config_composes(name):
    cfg = composed(f"denoiser={name}", config="certify")
    assert cfg.n_iter > 0 and len(cfg.noise) >= 2
    assert (cfg.denoiser.get("expect") is not None) == (name != "tv")
