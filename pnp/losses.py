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
* :class:`LiftedBregman`: the MSE of an unrolled proximal network (:class:`~pnp.denoisers.PNN`) lifted to per-sample
  layer variables with Bregman penalties (Wang & Benning 2023; Wang, Benning, Repetti 2024): no back-propagation
  through the layers (``trainer=bregman``).
* :class:`ProximalMatching`: the LPN schedule (Fang et al. 2024): L1 for the first ``l1_fraction`` of the steps,
  then 1 − exp(−‖D(y) − x‖²/γ²) with γ = (8, 4, 2, 1)·γ_min in equal stages, γ_min = ``gamma_scale``·√d.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pnp.denoisers.pnn import Layers
from pnp.errors import check, check_positive
from pnp.lipschitz import jacobian_sq_norm_penalty_estimate

#: what an objective reports of a step: detached 0-d tensors (or numbers), read by the trainer only when it
#: validates, so that the training loop does not wait for the device every step
Logs = dict[str, torch.Tensor | float]


class Denoising:
    """Plain supervised denoising loss. ``per_sigma=True`` divides each sample's error by σ (L1) or σ² (MSE), so
    that every noise level of a batch drawn over decades of σ weighs alike: unweighted, the noisiest samples dominate
    and the low-noise end, where PnP works, is neglected (noise-conditional models)."""

    def __init__(self, loss: str = "mse", per_sigma: bool = False) -> None:
        check(loss in ("mse", "l1"), f"loss must be mse or l1, got {loss!r}")
        self.loss, self.per_sigma = loss, per_sigma

    def errors(self, out: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        """The per-sample error [B]: mean squared (mse) or mean absolute (l1)."""
        diff = (out - clean).flatten(1)
        return diff.pow(2).mean(1) if self.loss == "mse" else diff.abs().mean(1)

    def weighted(self, err: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        """The batch loss: the mean of ``err``, each divided by σ^p (p = 2 for mse, 1 for l1) when ``per_sigma``."""
        if not self.per_sigma:
            return err.mean()
        check(sigma is not None, "per_sigma needs the batch's noise levels")
        return (err / sigma.pow(2 if self.loss == "mse" else 1)).mean()

    def fidelity(self, out: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(out, clean) if self.loss == "mse" else F.l1_loss(out, clean)

    def __call__(
        self, model, clean: torch.Tensor, noisy: torch.Tensor, step: int, steps: int, sigma: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, Logs]:
        loss = self.weighted(self.errors(model(noisy, sigma), clean), sigma)
        return loss, {"loss": loss.detach()}


class GradientStepDenoising(Denoising):
    """The t-step denoiser loss of CRR-NN: ‖u_t − clean‖² with u_{k+1} = u_k − α(u_k − y + ∇R_σ(u_k)), u_0 = y,
    weighted per σ² by default (``per_sigma``, see :class:`Denoising`)."""

    def __init__(self, steps: int = 10, per_sigma: bool = True) -> None:
        super().__init__("mse", per_sigma)
        check(isinstance(steps, int) and steps >= 1, f"steps must be a positive integer, got {steps!r}")
        self.steps = steps

    def __call__(self, model, clean, noisy, step, steps, sigma=None):
        err = self.errors(model.unrolled(noisy, sigma, self.steps), clean)
        loss = self.weighted(err, sigma)
        return loss, {"loss": loss.detach(), "mse": err.detach().mean()}


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
        logs = {"loss": loss.detach(), "fidelity": fidelity.detach(), "jac_sq": sq.detach().max()}
        return loss, logs


class LiftedBregman(Denoising):
    """Lifted Bregman training (Wang & Benning, JMLR 24(232), 2023; Wang, Benning, Repetti, MLSP 2024) of an unrolled
    network u_k = λ_kϱ(v_k/λ_k), v_k = A_ku_{k−1} + τ_kL_kz (A_k = I − τ_kL_kL_kᵀ), x = z − L_Kᵀu_K
    (:meth:`pnp.denoisers.PNN.unroll`). The layer equations become penalties on per-sample layer variables
    y_k = u_k/λ_k ∈ dom φ (the normalised activations), in units of ½‖·‖² per pixel:

        E(θ, y) = ½‖z − L_Kᵀu_K − x̄‖² + Σ_k λ_k² B_φ(y_k, v_k/λ_k),   u_k = λ_ky_k,  v_k = A_ku_{k−1} + τ_kL_kz,

    B_φ(y, w) = ½y² + φ(y) + (½|·|² + φ)*(w) − yw ≥ ½(y − ϱ(w))², zero iff y = ϱ(w) (λ²B_φ(u/λ, v/λ) is the Bregman
    penalty of the scaled activation λϱ(·/λ) = prox_{λ²φ(·/λ)}). At the forward pass every penalty vanishes and
    E is the network's loss. Each call (one batch):

    1. y from the forward pass, with the pre-activations q_k = v_k;
    2. ``sweeps`` top-down sweeps k = K … 1 of block Bregman proximal gradient on u_k with the mirror map
       ½‖·‖² + λ_k²φ(·/λ_k) (whose conjugate's gradient is the activation): q_k ← (1 − γ_k)q_k + γ_k(v_k − g_k),
       y_k = ϱ(q_k/λ_k), g_k the gradient of the term of the layer above, A_{k+1}(λ_{k+1}ϱ(v_{k+1}/λ_{k+1}) −
       u_{k+1}) (∂_w B_φ(y, w) = ϱ(w) − y), or −L_K(x − x̄) at the top. γ_k = 1/(1 + L_k), L_k ≥ the Lipschitz
       constant of g_k (‖A_{k+1}‖² ≤ 1 below the top, B_K² at it), makes every block step decrease E (relative
       smoothness: Bauschke, Bolte, Teboulle 2017);
    3. E(θ, y)·2/N (N pixels: the forward pass's MSE plus the penalties) with y fixed, for the trainer's optimiser:
       each term depends on layers k − 1 and k only, so autograd never runs through the layers' chain, and through
       the activation only as ∂_wB_φ = ϱ(w) − y, the derivative of the Fenchel term's ψ (no derivative of ϱ).

    The paper keeps one layer variable per training sample across epochs; the patches here are redrawn each step,
    so the layer variables live for one batch: initialised by the forward pass, refined by the sweeps."""

    def __init__(self, loss: str = "mse", sweeps: int = 2) -> None:
        check(loss == "mse", f"lifted Bregman training takes the mse loss, got {loss!r}")
        check(isinstance(sweeps, int) and sweeps >= 0, f"sweeps must be an integer >= 0, got {sweeps!r}")
        super().__init__(loss)
        self.sweeps = sweeps

    def layer_variables(self, net: Layers, clean: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The layer variables y_k after the forward pass and the sweeps, and the forward pass's MSE."""
        q, y, u = [], [], net.start()
        for k in range(net.count):
            q.append(net.gradient_step(k, u, net.z))
            yk, u = net.activate(k, q[k])
            y.append(yk)
        mse = self.fidelity(net.output(u), clean)
        top = 1 / (1 + net.norms[net.index(net.count - 1)] ** 2)
        for _ in range(self.sweeps):
            inputs = [net.start(), *(net.threshold(k) * y[k] for k in range(net.count))]  # u_{k−1}, then u_{K−1}
            v = [net.gradient_step(k, inputs[k], net.z) for k in range(net.count)]
            g = -net.analysis(net.count - 1, net.output(inputs[-1]) - clean)
            for k in reversed(range(net.count)):
                step = top if k == net.count - 1 else 0.5
                q[k] = (1 - step) * q[k] + step * (v[k] - g)
                y[k], u = net.activate(k, q[k])
                if k:
                    g = net.gradient_step(k, net.activate(k, v[k])[1] - u, 0.0)
        return y, mse

    def lifted(self, net: Layers, y: list[torch.Tensor], clean: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(E(θ, y)·2/N, the penalties' part of it) at the layer variables ``y``."""
        u, penalty = net.start(), clean.new_zeros(())
        for k in range(net.count):
            lam = net.threshold(k)
            v = net.gradient_step(k, u, net.z)
            penalty = penalty + (lam**2 * net.activation.bregman(y[k], v / lam)).sum()
            u = lam * y[k]
        penalty = 2 * penalty / clean.numel()
        return self.fidelity(net.output(u), clean) + penalty, penalty

    def __call__(self, model, clean, noisy, step, steps, sigma=None):
        check(hasattr(model, "unroll"), f"lifted Bregman training needs an unrolled network (PNN), not {type(model)}")
        check(noisy.shape[1] == model.channels, f"a {model.channels}-channel network trains on as many channels")
        net = model.unroll(noisy, sigma)
        with torch.no_grad():
            y, mse = self.layer_variables(net, clean)
        loss, penalty = self.lifted(net, [t.detach() for t in y], clean)
        logs = {"loss": loss.detach(), "mse": mse, "bregman": penalty.detach()}
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
        return loss, {"loss": loss.detach(), "gamma": gamma or 0.0}
