"""Losses and regularisers used by the training loop.

* :func:`binary_cross_entropy` / :func:`cross_entropy`: weighted, on logits.
* :func:`focal_loss`: ``F(y, p; γ) = -y (1-p)^γ log p - (1-y) p^γ log(1-p)`` (Lin et al. 2017),
  equal to the binary cross-entropy at γ = 0.
* :func:`gaussian_nll` and :func:`mean_squared_error` for regression.
* :func:`fgsm_perturb`: the fast gradient sign method ``x + ε sign(∇ₓ L)`` (Goodfellow et al. 2015)
  for adversarial training.
* :func:`gradient_reversal` and :class:`MassAdversary`: the "Learning to Pivot" adversary
  (Louppe, Kagan, Cranmer 2016) that predicts the jet mass from the classifier score.

The decorrelation penalties DisCo and MoDE are in :mod:`hepinfer.train.decorrelation`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Callable, Optional

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "GradientReversal",
    "MassAdversary",
    "binary_cross_entropy",
    "cross_entropy",
    "fgsm_perturb",
    "focal_loss",
    "gaussian_nll",
    "gradient_reversal",
    "mean_squared_error",
    "weighted_mean",
]


def weighted_mean(values: torch.Tensor, weight: Optional[torch.Tensor]) -> torch.Tensor:
    """``Σ w v / Σ w`` (plain mean without weights). Negative event weights are allowed."""
    if weight is None:
        return values.mean()
    weight = weight.reshape(values.shape).to(values.dtype)
    return (weight * values).sum() / weight.sum()


def binary_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Event-weighted binary cross-entropy on logits (numerically stable)."""
    logits = logits.reshape(-1)
    per_event = F.binary_cross_entropy_with_logits(
        logits, target.reshape(-1).to(logits.dtype), reduction="none"
    )
    return weighted_mean(per_event, weight)


def cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Event-weighted multi-class cross-entropy; ``logits`` ``(n, k)``, integer ``target`` ``(n,)``."""
    per_event = F.cross_entropy(logits, target.reshape(-1).long(), reduction="none")
    return weighted_mean(per_event, weight)


def focal_loss(
    logits: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor] = None, *, gamma: float = 2.0
) -> torch.Tensor:
    """Binary focal loss ``-y (1-p)^γ log p - (1-y) p^γ log(1-p)``, ``p = sigmoid(logit)``,
    event-weighted mean. ``gamma = 0`` gives exactly :func:`binary_cross_entropy`.
    ``target`` may be fractional (then both terms contribute)."""
    if gamma < 0:
        raise ValueError(f"focal loss gamma must be >= 0, got {gamma}")
    logits = logits.reshape(-1)
    y = target.reshape(-1).to(logits.dtype)
    log_p = F.logsigmoid(logits)
    log_q = F.logsigmoid(-logits)
    if gamma == 0:
        per_event = -(y * log_p + (1 - y) * log_q)
    else:
        per_event = -(y * torch.exp(gamma * log_q) * log_p + (1 - y) * torch.exp(gamma * log_p) * log_q)
    return weighted_mean(per_event, weight)


def mean_squared_error(
    prediction: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Event-weighted mean squared error (summed over output columns)."""
    prediction = prediction.reshape(prediction.shape[0], -1)
    target = target.reshape(prediction.shape).to(prediction.dtype)
    return weighted_mean(((prediction - target) ** 2).sum(dim=1), weight)


def gaussian_nll(
    prediction: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Gaussian negative log-likelihood ``log σ + (y - μ)² / (2σ²) + log(2π)/2`` for a
    ``(n, 2)`` prediction of (mean μ, width σ), event-weighted mean."""
    if prediction.ndim != 2 or prediction.shape[1] != 2:
        raise ValueError(
            f"gaussian_nll needs a (n, 2) prediction of (mean, width), got {tuple(prediction.shape)}"
        )
    mean, width = prediction[:, 0], prediction[:, 1]
    y = target.reshape(-1).to(mean.dtype)
    per_event = torch.log(width) + 0.5 * ((y - mean) / width) ** 2 + 0.5 * math.log(2 * math.pi)
    return weighted_mean(per_event, weight)


def fgsm_perturb(
    loss_of_inputs: Callable[[Sequence[torch.Tensor]], torch.Tensor],
    inputs: Sequence[torch.Tensor],
    epsilon: float,
    *,
    perturb: Optional[Sequence[bool]] = None,
    mask: Optional[torch.Tensor] = None,
) -> list[torch.Tensor]:
    """Fast gradient sign method: ``x_adv = x + ε sign(∇ₓ L)``.

    Parameters
    ----------
    loss_of_inputs
        ``f(inputs) -> scalar loss``.
    inputs
        The model's input tensors (they are not modified).
    epsilon
        Step size ε ≥ 0, in the units of the inputs the model receives.
    perturb
        Which inputs to perturb (default: every floating-point input except a particle mask,
        i.e. all inputs but the second one of a ``(particles, mask)`` pair).
    mask
        Particle mask ``(b, p)``: padded particles are left unchanged.

    Guarantees ``max |x_adv - x| <= ε`` exactly (a float32 sum that rounds past ε is moved one
    ulp back towards x). The returned tensors are detached.
    """
    if epsilon < 0 or not math.isfinite(epsilon):
        raise ValueError(f"FGSM epsilon must be a finite number >= 0, got {epsilon}")
    if perturb is None:
        perturb = [t.is_floating_point() for t in inputs]
        if len(inputs) == 2 and inputs[0].ndim == 3:
            perturb[1] = False
    leaves = [t.detach().clone().requires_grad_(bool(p)) for t, p in zip(inputs, perturb)]
    loss = loss_of_inputs(leaves)
    wanted = [t for t, p in zip(leaves, perturb) if p]
    grads = iter(torch.autograd.grad(loss, wanted, allow_unused=True))
    out = []
    for t, p in zip(leaves, perturb):
        x = t.detach()
        if not p:
            out.append(x)
            continue
        g = next(grads)
        if g is None:
            out.append(x)
            continue
        step = torch.sign(g)
        if mask is not None and x.ndim == 3:
            step = step * mask.to(step.dtype).unsqueeze(-1)
        out.append(_bounded_step(x, step, epsilon))
    return out


def _bounded_step(x: torch.Tensor, step: torch.Tensor, epsilon: float) -> torch.Tensor:
    """``x + epsilon * step`` in x's dtype with ``|result - x| <= epsilon`` exactly: the step size
    is rounded down to the dtype, and sums that still round past ε are moved back towards x one
    ulp at a time (a few times at most; anything left falls back to x itself)."""
    eps_t = torch.tensor(epsilon, dtype=torch.float64).to(x.dtype)
    if float(eps_t) > epsilon:
        eps_t = torch.nextafter(eps_t, torch.zeros_like(eps_t))
    adv = x + eps_t * step
    for _ in range(4):
        too_far = (adv.double() - x.double()).abs() > epsilon
        if not bool(too_far.any()):
            return adv
        adv = torch.where(too_far, torch.nextafter(adv, x), adv)
    too_far = (adv.double() - x.double()).abs() > epsilon
    return torch.where(too_far, x, adv)


class GradientReversal(torch.autograd.Function):
    """Identity forward; multiplies the gradient by ``-strength`` backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, strength: float) -> torch.Tensor:  # type: ignore[override]
        ctx.strength = strength
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return -ctx.strength * grad, None


def gradient_reversal(x: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
    """Gradient reversal layer (Ganin & Lempitsky 2015): ``x`` forward, ``-strength · grad`` backward."""
    return GradientReversal.apply(x, float(strength))


class MassAdversary(nn.Module):
    """The "Learning to Pivot" adversary: a mixture density network that models the
    (standardised) jet mass distribution given the classifier score, ``p(m | s)`` as a mixture
    of ``n_components`` Gaussians. Its loss is the negative log-likelihood of the mass; the
    classifier is trained to make that likelihood as poor as possible (gradient reversal)."""

    mass_mean: torch.Tensor
    mass_std: torch.Tensor

    def __init__(self, n_components: int = 5, hidden: Sequence[int] = (32, 32)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = 1
        for w in hidden:
            layers += [nn.Linear(width, int(w)), nn.ReLU()]
            width = int(w)
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, 3 * n_components)
        self.n_components = int(n_components)
        self.register_buffer("mass_mean", torch.zeros(()))
        self.register_buffer("mass_std", torch.ones(()))

    @torch.no_grad()
    def fit_mass(self, mass: torch.Tensor) -> "MassAdversary":
        """Set the mass standardisation (use the background training sample)."""
        mass = mass.double().reshape(-1)
        self.mass_mean.fill_(float(mass.mean()))
        std = float(mass.std()) if mass.numel() > 1 else 1.0
        self.mass_std.fill_(std if std > 0 else 1.0)
        return self

    def nll(
        self, score: torch.Tensor, mass: torch.Tensor, weight: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Weighted mean negative log-likelihood of ``mass`` given ``score`` (both ``(n,)``)."""
        out = self.head(self.body(score.reshape(-1, 1)))
        k = self.n_components
        log_pi = F.log_softmax(out[:, :k], dim=1)
        mu = out[:, k : 2 * k]
        log_sigma = out[:, 2 * k :].clamp(-7.0, 5.0)
        m = ((mass.reshape(-1, 1).to(out.dtype) - self.mass_mean) / self.mass_std).expand_as(mu)
        log_n = -0.5 * ((m - mu) / torch.exp(log_sigma)) ** 2 - log_sigma - 0.5 * math.log(2 * math.pi)
        return weighted_mean(-torch.logsumexp(log_pi + log_n, dim=1), weight)
