"""Task-aware (bilevel) fine-tuning of a shipped ridge regularizer on the deblurring problem itself (an experiment).

    x*(θ) = argmin_x F(x, θ) = ½‖Ax − y‖² + R_θ,σ(x)          (the objective scheme=agd minimises at γ = 1/‖A‖² = 1)
    ℓ(θ)  = ½‖x*(θ) − x‖²,   ∇ℓ(θ) = −(∂_θ∇_x F)ᵀ v,   v = H⁻¹(x* − x),   H = AᵀA + ∇²R_θ,σ(x*)

(implicit differentiation; Chen, Pock, Bischof; Kobler et al. for learned regularizers). H is replaced by H + δI
(``--damp``): the WCRR is nonconvex, H is indefinite away from a minimiser and plain CG on it diverged. A fixed set of
training patches of the embedded training images, each with its blurred noisy observation; each step re-solves a
minibatch of them warm-started from its previous solution (``--inner`` monotone-restart Nesterov steps), solves for v
by ``--cg`` conjugate-gradient steps with Hessian-vector products by autograd, and takes an Adam step on θ (spline
slopes projected back onto [0, 1]). Every ``--val-every`` steps the weights are scored exactly as ``pnp.tune`` scores a
setting (the configured scheme on the validation images, coins and moon, 128²) at the fixed σ. JSON lines on stdout.

    python benchmarks/bilevel_deblur.py --lr 2e-4 --steps 600 > benchmarks/results/bilevel_deblur.log

A checkpoint (weights, Adam, solutions, validation history) is written at every validation (``--resume``);
``--init`` starts fresh from the weights of an earlier run; ``--ship NAME`` ships the last weights with a manifest.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import torch
from common import log_row, psnr, scored, start_training, training_problem, validation_checkpoint

import pnp.tune as tune
from pnp import weights
from pnp.config import composed
from pnp.data import make_split
from pnp.denoisers.ridge import RidgeRegularizer


def solve(model: RidgeRegularizer, physics, x: torch.Tensor, y: torch.Tensor, sigma: float, iters: int) -> torch.Tensor:
    """``iters`` steps of Nesterov's method on F = ½‖Ax − y‖² + R_σ(x) from ``x``, step 1/(1 + Lip ∇R_σ), momentum
    restarted per image where a step goes uphill."""
    with torch.no_grad():
        scales, op = model.scales(sigma, x), model.operator()
        alpha = 1.0 / (1.0 + float(model.lipschitz(scales.lam, scales.mu).max()))
        z = u = x
        t = 1.0
        for _ in range(iters):
            g = physics.A_adjoint(physics.A(z) - y) + model.gradient(z, scales, op)
            u_next = z - alpha * g
            t_next = 0.5 * (1 + math.sqrt(1 + 4 * t * t))
            uphill = ((g * (u_next - u)).flatten(1).sum(1) > 0).view(-1, 1, 1, 1)
            z = torch.where(uphill, u_next, u_next + ((t - 1) / t_next) * (u_next - u))
            u, t = u_next, t_next
        return u


def implicit_direction(model, physics, x_star, residual, sigma, damp, cg_steps):
    """(∇R_σ(x*) with its graph in θ, v ≈ (AᵀA + ∇²R_σ(x*) + δI)⁻¹ residual by conjugate gradients)."""
    xg = x_star.clone().requires_grad_(True)
    grad_r = model.gradient(xg, model.scales(sigma, xg), model.operator())

    def hessian(v: torch.Tensor) -> torch.Tensor:
        hv = torch.autograd.grad(grad_r, xg, v, retain_graph=True)[0]
        return physics.A_adjoint(physics.A(v)) + hv.detach() + damp * v

    v = torch.zeros_like(residual)
    res = residual - hessian(v)
    p, rs = res.clone(), (res * res).sum()
    for _ in range(cg_steps):
        hp = hessian(p)
        curvature = (p * hp).sum()
        if curvature <= 0:
            break
        step = rs / curvature
        v, res = v + step * p, res - step * hp
        rs_next = (res * res).sum()
        p, rs = res + (rs_next / rs) * p, rs_next
    return grad_r, v.detach(), float(rs.sqrt() / residual.norm())


def _first_solutions(model: RidgeRegularizer, problem, args) -> torch.Tensor:
    """``--start-iters`` steps from the problem's x0 (the observation for deblurring, the FBP for CT), 16 a time."""
    x0, y = problem.x0, problem.y
    chunks = range(0, args.patches, 16)
    iters = args.start_iters
    return torch.cat([solve(model, problem.physics, x0[i : i + 16], y[i : i + 16], args.sigma, iters) for i in chunks])


def ship(model: RidgeRegularizer, args: argparse.Namespace, history: list[dict], last: dict) -> None:
    """The weights of the last step into ``pnp/weights/<--ship>.pt`` with a manifest like ``pnp.train``'s; its
    ``val_psnr`` is the validation PSNR of the problem (not of denoising) at ``--sigma``."""
    record = {
        "name": args.ship,
        "recipe": f"bilevel_{args.problem}",
        "trainer": "bilevel (benchmarks/bilevel_deblur.py)",
        "steps": args.steps,
        "selected_step": args.steps,
        "device": "cpu",
        "processes": 1,
        "torch": torch.__version__,
        "val_psnr": last["val"],
        "val_problem": args.problem,
        "val_sigma": args.sigma,
        "split": make_split().as_dict(),
        "history": history,
        "train_config": vars(args),
    }
    manifest = weights.save(model.eval(), weights.SHIPPED / f"{args.ship}.pt", record)
    print(json.dumps({"shipped": manifest["file"], "sha256": manifest["sha256"], "val": last["val"]}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior", default="wcrr")
    parser.add_argument("--problem", default="deblur")
    parser.add_argument("--sigma", type=float, default=0.00474275, help="the prior's strength (its tuned deblur σ)")
    parser.add_argument("--patches", type=int, default=64)
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--inner", type=int, default=100)
    parser.add_argument("--start-iters", type=int, default=600, help="first solve of every patch, from x0")
    parser.add_argument("--cg", type=int, default=20)
    parser.add_argument("--damp", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--val-every", type=int, default=100)
    parser.add_argument("--out", default="outputs/bilevel_deblur", help="folder for the weights of each validation")
    parser.add_argument("--init", help="a state dict (a step<N>.pt of an earlier run) to start the weights from")
    parser.add_argument("--resume", help="a checkpoint<N>.pt of an earlier run: weights, Adam, solutions and step")
    parser.add_argument("--ship", metavar="NAME", help="at the end, ship the weights as pnp/weights/NAME.pt + manifest")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = weights.pretrained(args.prior)
    if args.init:
        model.load_state_dict(torch.load(args.init, map_location="cpu"))
    overrides = [f"+problem={args.problem}", f"denoiser={args.prior}", "image.size=128", "device=cpu"]
    cfg = composed(*overrides, config="tune")
    validation = tune.validation_problem(cfg, torch.device("cpu"))

    def validate() -> dict:
        return scored(cfg, validation, copy.deepcopy(model).eval(), args.sigma)

    clean, problem = training_problem(cfg, args.patch, args.patches)
    physics, y = problem.physics, problem.y
    start = time.time()
    opt, order, state = start_training(model, args.lr, args.resume)
    first, history = 1, []
    if state:
        x_star, first, history = state["x_star"], state["step"] + 1, state["history"]
    else:
        x_star = _first_solutions(model, problem, args)
        row = {"step": 0, "train_psnr": psnr(x_star, clean), "start_psnr": psnr(problem.x0, clean)}
        print(json.dumps(row), flush=True)
    for step in range(first, args.steps + 1):
        idx = torch.randperm(args.patches, generator=order)[: args.batch]
        xs = solve(model, physics, x_star[idx], y[idx], args.sigma, args.inner)
        x_star[idx] = xs
        grad_r, v, cg_residual = implicit_direction(model, physics, xs, xs - clean[idx], args.sigma, args.damp, args.cg)
        opt.zero_grad()
        (-(grad_r * v).sum() / args.batch).backward()
        opt.step()
        model.clamp_weights()
        if step % 10 == 0:
            log_row({"step": step, "train_psnr_batch": psnr(xs, clean[idx]), "cg_res": cg_residual}, start)
        if step % args.val_every == 0:
            validation_checkpoint(out, step, start, validate(), history, model, opt, order, x_star=x_star)
    if args.ship:
        validated = bool(history) and history[-1]["step"] == args.steps  # the last step's score is already there
        ship(model, args, history, history[-1] if validated else validate())


if __name__ == "__main__":
    main()
