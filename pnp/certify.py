"""Lipschitz certificates: ``python -m pnp.certify denoiser=<name>``.

At each held-out crop, clean and with noise, and for a noise-conditional denoiser at each strength σ of
``strengths``: Lip(D) and Lip(2D − Id) by power iteration on JᵀJ (a lower estimate of
the global constants), the same ratios along a random secant of std ``secant`` (the map as computed, no autograd),
the asymmetry ‖J − Jᵀ‖ on random probes and the smallest eigenvalue of the symmetric part of
J (an LPN's Jacobian is a Hessian: symmetric, positive semi-definite), plus the architecture's layer-wise upper
bound where it has one. The denoiser config's ``expect`` block says what must hold (``lip_D``, ``lip_2D_minus_I``,
``symmetric``: J = Jᵀ, ``monotone``: J + Jᵀ ⪰ 0); the run writes ``certificate.json``, prints a table and exits
with status 1 when a check fails.
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from pnp.cli import entry, log, user_errors
from pnp.config import build_denoiser, check_keys, denoiser_sigma
from pnp.data import held_out, make_split
from pnp.errors import check
from pnp.lipschitz import Fn, asymmetry, jacobian_spectral_norm, min_eigenvalue, secant_ratios
from pnp.runtime import generator, resolve_device


def strengths(cfg: DictConfig) -> list[float | None]:
    """The denoiser strengths σ to certify: ``strengths`` for a noise-conditional denoiser (default: its
    ``denoiser.sigma``), [None] for a blind one."""
    sigma = denoiser_sigma(cfg)
    if sigma is None:
        check(not cfg.strengths, "strengths: the denoiser is blind (it takes no sigma)")
        return [None]
    values = [float(v) for v in cfg.strengths] if cfg.strengths else [sigma]
    check(all(v > 0 for v in values), f"strengths must be positive, got {values}")
    return values


def certify(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    check_keys(cfg)
    device = resolve_device(cfg.device)
    with open_dict(cfg):
        cfg.denoiser.theta = 1.0  # certify the network itself; θD + (1 − θ)Id inherits its bounds
    denoiser = build_denoiser(cfg, device, torch.float32)
    split = make_split()
    clean = held_out(split, cfg.size, "held_out").to(device)
    names = split.images("held_out")
    g = generator(cfg.seed, torch.device("cpu"))
    points = []
    for strength, sigma in itertools.product(strengths(cfg), cfg.noise):
        d_fn: Fn = lambda v, s=strength: denoiser(v, s)  # noqa: E731
        q_fn: Fn = lambda v, s=strength: 2 * denoiser(v, s) - v  # noqa: E731
        x = clean + sigma * torch.randn(clean.shape, generator=g).to(device)
        d = jacobian_spectral_norm(d_fn, x, cfg.n_iter, cfg.tol, g)
        q = jacobian_spectral_norm(q_fn, x, cfg.n_iter, cfg.tol, g)
        asym = asymmetry(d_fn, x, cfg.probes, g)
        lam_min = min_eigenvalue(d_fn, x, d.norm * 1.01 + 1e-6, cfg.n_iter, g)
        secant_d, secant_q = secant_ratios(d_fn, x, cfg.secant, g)
        for i in range(x.shape[0]):
            points.append(
                {
                    "image": names[i],
                    "strength": strength,
                    "noise": float(sigma),
                    "lip_D": float(d.norm[i]),
                    "lip_2D_minus_I": float(q.norm[i]),
                    "secant_D": float(secant_d[i]),
                    "secant_2D_minus_I": float(secant_q[i]),
                    "asymmetry": float(asym[i]),
                    "min_eigenvalue": float(lam_min[i]),
                    "power_iterations": max(d.iterations, q.iterations),
                    "power_converged": d.converged and q.converged,
                }
            )
    keys = ("lip_D", "lip_2D_minus_I", "secant_D", "secant_2D_minus_I", "asymmetry", "min_eigenvalue")
    summary = {
        k: {
            "max": max(p[k] for p in points),
            "mean": sum(p[k] for p in points) / len(points),
            "min": min(p[k] for p in points),
        }
        for k in keys
    }
    model = getattr(denoiser, "denoiser", denoiser)
    bound = model.layer_bound() if hasattr(model, "layer_bound") else None
    checks = expectations(cfg, summary)
    return {
        "denoiser": cfg.denoiser.name,
        "points": points,
        "summary": summary,
        "layer_bound": bound,
        "checks": checks,
        "passed": all(c["passed"] for c in checks),
        "settings": {
            k: OmegaConf.to_container(cfg, resolve=True)[k]
            for k in ("size", "noise", "strengths", "n_iter", "tol", "probes", "secant", "slack", "seed")
        },
        "device": str(device),
    }


def expectations(cfg: DictConfig, summary: dict) -> list[dict[str, Any]]:
    """The bounds promised in the denoiser config's ``expect`` block, checked with ``slack`` on the Jacobian and on
    the secant ratios."""
    expect = cfg.denoiser.get("expect") or {}
    checks = []
    for key in ("lip_D", "lip_2D_minus_I"):
        for measured in (key, key.replace("lip", "secant")) if key in expect else ():
            value = summary[measured]["max"]
            checks.append(
                {
                    "check": f"max {measured} <= {expect[key]} + {cfg.slack}",
                    "value": value,
                    "passed": value <= expect[key] + cfg.slack,
                }
            )
    if expect.get("symmetric"):
        checks.append(
            {
                "check": f"max asymmetry <= {cfg.slack}",
                "value": summary["asymmetry"]["max"],
                "passed": summary["asymmetry"]["max"] <= cfg.slack,
            }
        )
    if expect.get("monotone"):
        checks.append(
            {
                "check": f"min eigenvalue >= -{cfg.slack}",
                "value": summary["min_eigenvalue"]["min"],
                "passed": summary["min_eigenvalue"]["min"] >= -cfg.slack,
            }
        )
    return checks


def table(cert: dict[str, Any]) -> str:
    lines = [
        f"{'image':<12}{'sigma':>8}{'noise':>7}{'Lip(D)':>9}{'Lip(2D-I)':>11}{'sec D':>8}{'sec 2D-I':>10}"
        f"{'asym':>10}{'min eig':>10}"
    ]
    lines += [
        f"{p['image']:<12}{'-' if p['strength'] is None else format(p['strength'], '.4g'):>8}{p['noise']:>7.3f}"
        f"{p['lip_D']:>9.4f}{p['lip_2D_minus_I']:>11.4f}{p['secant_D']:>8.4f}{p['secant_2D_minus_I']:>10.4f}"
        f"{p['asymmetry']:>10.2e}{p['min_eigenvalue']:>10.4f}"
        for p in cert["points"]
    ]
    s = cert["summary"]
    lines.append(
        f"{'max':<27}{s['lip_D']['max']:>9.4f}{s['lip_2D_minus_I']['max']:>11.4f}{s['secant_D']['max']:>8.4f}"
        f"{s['secant_2D_minus_I']['max']:>10.4f}{s['asymmetry']['max']:>10.2e}{s['min_eigenvalue']['min']:>10.4f} (min)"
    )
    if cert["layer_bound"]:
        lines.append("layer-wise bound: " + ", ".join(f"{k}={v:.4g}" for k, v in cert["layer_bound"].items()))
    lines += [f"{'PASS' if c['passed'] else 'FAIL'}: {c['check']} (value {c['value']:.4g})" for c in cert["checks"]]
    return "\n".join(lines)


def caveats(cert: dict[str, Any]) -> list[str]:
    """What weakens a PASS: a config that promises no bound (nothing was checked), and power iterations stopped by
    ``n_iter`` before ``tol`` (their Jacobian norms are lower bounds further below the maximum)."""
    notes = []
    if not cert["checks"]:
        notes.append(f"{cert['denoiser']} promises no bound (no `expect` in its config): nothing was checked")
    short = sum(not p["power_converged"] for p in cert["points"])
    if short:
        notes.append(
            f"the power iteration stopped at n_iter={cert['settings']['n_iter']} before tol at {short} of "
            f"{len(cert['points'])} points: the Lipschitz estimates there are looser lower bounds (raise n_iter)"
        )
    return notes


@hydra.main(version_base="1.3", config_path="configs", config_name="certify")
def main(cfg: DictConfig) -> None:
    with user_errors():
        run_dir = Path(HydraConfig.get().runtime.output_dir)
        cert = certify(cfg, run_dir)
    (run_dir / "certificate.json").write_text(json.dumps(cert, indent=2))
    log.info(table(cert))
    log.info(f"certificate: {run_dir / 'certificate.json'}")
    for caveat in caveats(cert):
        log.warning(caveat)
    if not cert["passed"]:
        failed = "; ".join(c["check"] for c in cert["checks"] if not c["passed"])
        log.error(f"certificate failed: {failed}")
        sys.exit(1)


if __name__ == "__main__":
    entry(main, "certify")
