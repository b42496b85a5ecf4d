"""Training objectives. Each is called as ``objective(model, clean, noisy, step, steps, sigma) -> (loss, logs)``,
``sigma`` the [B] noise levels of the batch (what noise-conditional models take; blind ones ignore it).

* :class:`Denoising`: MSE or L1 between D(noisy) and clean.
* :class:`FirmlyNonexpansive`: denoising + λ · max(‖∇Q(x̃)‖², 1 − ε), Q = 2D − Id (Pesquet et al. 2021), with
  ‖∇Q(x̃)‖² by power iteration on the Jacobian. ``at="both"`` (default) takes half of the points on the segment
  x̃ = τ·clean + (1 − τ)·D(noisy), τ ~ U[0, 1] (the original authors' choice: where PnP iterates live near a fixed
  point) and half at the noisy inputs themselves (where PnP starts, and where ``pnp.certify`` also checks; the
  segment alone left Lip(2D − Id) ≈ 1.6 at noisy inputs in our CPU recipe). ``point_noise`` > 0 draws the noisy
  points afresh as clean + σ·n, σ ~ U[0, point_noise], so the penalty can reach inputs noisier than the training
  batch (CT iterates start from an FBP far outside the denoiser's training noise).
* :class:`GradientStepDenoising`: MSE after ``steps`` gradient steps on ½‖u − y‖² + R_σ(u) from u = y (the t-step
  denoiser of CRR-NN, Goujon et al. 2023), for models with an explicit regulariser (``model.unrolled``).
* :class:`ProximalMatching`: the LPN schedule (Fang et al. 2024): L1 for the first ``l1_fraction`` of the steps,
  then 1 − exp(−‖D(y) − x‖²/γ²) with γ = (8, 4, 2, 1)·γ_min in equal stages, γ_min = ``gamma_scale``·√d.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pnp.errors import check, check_positive
from pnp.lipschitz import jacobian_sq_norm_penalty_estimate

Logs = dict[str, float]


class Denoising:
    """Plain supervised denoising loss."""

    def __init__(self, loss: str = "mse") -> None:
        check(loss in ("mse", "l1"), f"loss must be mse or l1, got {loss!r}")
        self.loss = loss

    def fidelity(self, out: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(out, clean) if self.loss == "mse" else F.l1_loss(out, clean)

    def __call__(
        self, model, clean: torch.Tensor, noisy: torch.Tensor, step: int, steps: int, sigma: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, Logs]:
        loss = self.fidelity(model(noisy, sigma), clean)
        return loss, {"loss": float(loss)}


class GradientStepDenoising(Denoising):
    """The t-step denoiser loss of CRR-NN: ‖u_t − clean‖² with u_{k+1} = u_k − α(u_k − y + ∇R_σ(u_k)), u_0 = y.

    ``per_sigma=True`` divides each sample's squared error by σ², so that every noise level of a batch drawn over
    decades of σ weighs alike (unweighted, the noisiest samples dominate and the low-noise end, where PnP works,
    is neglected)."""

    def __init__(self, steps: int = 10, per_sigma: bool = True) -> None:
        super().__init__("mse")
        check(isinstance(steps, int) and steps >= 1, f"steps must be a positive integer, got {steps!r}")
        self.steps, self.per_sigma = steps, per_sigma

    def __call__(self, model, clean, noisy, step, steps, sigma=None):
        err = (model.unrolled(noisy, sigma, self.steps) - clean).flatten(1).pow(2).mean(1)
        loss = (err / sigma.pow(2)).mean() if self.per_sigma else err.mean()
        return loss, {"loss": float(loss.detach()), "mse": float(err.detach().mean())}


def hinge_log_capped(sq: torch.Tensor, floor: float, cap: float) -> torch.Tensor:
    """max(q, floor) for q ≤ cap and cap·(1 + log(q/cap)) above: the penalty of Pesquet et al. 2021 with its growth
    tamed above ``cap`` (an outlier estimate does not dominate the batch) but its gradient kept, cap/q > 0, exactly
    where the Jacobian is worst (a hard clamp would zero it there)."""
    tamed = torch.where(sq > cap, cap * (1 + torch.log(sq.clamp_min(cap) / cap)), sq)
    return tamed.clamp_min(floor)


class FirmlyNonexpansive(Denoising):
    """Denoising plus the firmly-nonexpansive Jacobian penalty on the first ``points`` samples of each batch."""

    def __init__(
        self,
        loss: str = "l1",
        lam: float = 1e-2,
        eps: float = 0.1,
        power_iters: int = 5,
        points: int = 4,
        clip: float = 1e3,
        at: str = "both",
        point_noise: float = 0.0,
    ) -> None:
        super().__init__(loss)
        check(at in ("segment", "noisy", "both"), f"at must be segment, noisy or both, got {at!r}")
        check(point_noise >= 0, f"point_noise must be >= 0, got {point_noise}")
        self.lam, self.eps, self.at, self.point_noise = check_positive("lam", lam), eps, at, point_noise
        self.power_iters, self.points, self.clip = power_iters, points, clip

    def penalty_points(self, model, clean: torch.Tensor, noisy: torch.Tensor, sigma=None) -> torch.Tensor:
        """x̃: ``points`` samples on the clean–denoised segment and/or at the noisy inputs."""
        n_noisy = {"segment": 0, "noisy": self.points, "both": self.points // 2}[self.at]
        n_segment = self.points - n_noisy
        with torch.no_grad():
            denoised = model(noisy[:n_segment], None if sigma is None else sigma[:n_segment])
        tau = torch.rand(n_segment, 1, 1, 1, device=clean.device, dtype=clean.dtype)
        segment = tau * clean[:n_segment] + (1 - tau) * denoised
        chosen = slice(n_segment, n_segment + n_noisy)
        if self.point_noise > 0:
            sigma = self.point_noise * torch.rand(n_noisy, 1, 1, 1, device=clean.device, dtype=clean.dtype)
            return torch.cat([segment, clean[chosen] + sigma * torch.randn_like(clean[chosen])])
        return torch.cat([segment, noisy[chosen]])

    def __call__(self, model, clean, noisy, step, steps, sigma=None):
        fidelity = self.fidelity(model(noisy, sigma), clean)
        x = self.penalty_points(model, clean, noisy, sigma)
        at = None if sigma is None else sigma[: x.shape[0]]  # the penalty holds at the noise level it is checked at
        sq = jacobian_sq_norm_penalty_estimate(lambda v: 2 * model(v, at) - v, x, self.power_iters)
        penalty = hinge_log_capped(sq, 1 - self.eps, self.clip).mean()
        loss = fidelity + self.lam * penalty
        logs = {"loss": float(loss.detach()), "fidelity": float(fidelity.detach()), "jac_sq": float(sq.detach().max())}
        return loss, logs


class ProximalMatching:
    """L1 warm-up, then the proximal matching loss with γ decreasing in stages."""

    def __init__(self, l1_fraction: float = 0.25, gamma_scale: float = 0.08, stages: tuple = (8, 4, 2, 1)) -> None:
        check(0 <= l1_fraction < 1, f"l1_fraction must be in [0, 1), got {l1_fraction}")
        self.l1_fraction, self.gamma_scale, self.stages = (
            l1_fraction,
            check_positive("gamma_scale", gamma_scale),
            tuple(stages),
        )

    def gamma(self, step: int, steps: int, dim: int) -> float | None:
        """γ at ``step`` (None during the L1 phase)."""
        start = int(self.l1_fraction * steps)
        if step < start:
            return None
        stage = min(len(self.stages) - 1, (step - start) * len(self.stages) // max(1, steps - start))
        return self.stages[stage] * self.gamma_scale * dim**0.5

    def __call__(self, model, clean, noisy, step, steps, sigma=None):
        out = model(noisy, sigma)
        gamma = self.gamma(step, steps, clean[0].numel())
        if gamma is None:
            loss = F.l1_loss(out, clean)
        else:
            dist2 = (out - clean).flatten(1).pow(2).sum(1)
            loss = (1 - torch.exp(-dist2 / gamma**2)).mean()
        return loss, {"loss": float(loss), "gamma": gamma or 0.0}
