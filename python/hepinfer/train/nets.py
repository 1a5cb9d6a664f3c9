"""The model zoo: networks for high-level features, for jet constituents and for regression.

Every network here is a plain ``torch.nn.Module`` whose ``forward`` takes tensors only, so that
:func:`hepinfer.export.export_onnx` can write it to ONNX with a dynamic batch size (and, for the
constituent networks, a dynamic number of particles).

Conventions
-----------
* Classifiers return **logits** of shape ``(batch, n_outputs)``; the score is ``sigmoid(logit)``
  (binary) or ``softmax`` (several classes). :class:`WithSigmoid` and :class:`WithSoftmax` wrap
  a classifier so that the exported model returns probabilities.
* Constituent networks take ``(particles, mask)``: ``particles`` of shape
  ``(batch, n_particles, n_features)`` zero-padded, ``mask`` of shape ``(batch, n_particles)``
  (1 for a real particle, 0 for padding, any float or bool dtype). Padded particles never
  contribute to the output, whatever their feature values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Optional

import torch
from torch import nn

__all__ = [
    "MLP",
    "Autoencoder",
    "DeepSets",
    "EdgeConv",
    "EnergyFlowNetwork",
    "GaussianRegressor",
    "ParticleFlowNetwork",
    "ParticleNetLite",
    "ReconstructionError",
    "Standardize",
    "TargetScaled",
    "WithSigmoid",
    "WithSoftmax",
    "masked_sum",
    "pad_particles",
]

_ACTIVATIONS = {"relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU}


def _activation(name: str) -> nn.Module:
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {name!r}") from None


def _stack(n_in: int, hidden: Sequence[int], activation: str, dropout: float = 0.0) -> tuple[nn.Module, int]:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(n_in, int(width)), _activation(activation)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        n_in = int(width)
    return nn.Sequential(*layers), n_in


class Standardize(nn.Module):
    """``(x - mean) / std`` with the constants stored as buffers, so they travel with the state
    dict and the exported ONNX file. Fit them with :meth:`fit` on training data."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))

    @torch.no_grad()
    def fit(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> "Standardize":
        """Set mean and std from ``x`` (``(n, f)``, or ``(n, p, f)`` with a particle ``mask``)."""
        if mask is not None:
            x = x[mask.bool()]
        x = x.reshape(-1, x.shape[-1]).double()
        std = x.std(dim=0) if x.shape[0] > 1 else torch.ones(x.shape[-1], dtype=x.dtype)
        self.mean.copy_(x.mean(dim=0).to(self.mean.dtype))
        self.std.copy_(torch.where(std > 0, std, torch.ones_like(std)).to(self.std.dtype))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class MLP(nn.Module):
    """A fully connected network on high-level features (jet mass, tau21, ...).

    Parameters
    ----------
    n_inputs
        Number of input features.
    hidden
        Widths of the hidden layers.
    n_outputs
        1 for a binary classifier (one logit) or a scalar regression, ``k`` for ``k`` classes.
    activation
        ``"relu"``, ``"elu"``, ``"gelu"``, ``"tanh"`` or ``"silu"``.
    dropout
        Dropout probability after every hidden layer (0 = none).
    """

    def __init__(
        self,
        n_inputs: int,
        hidden: Sequence[int] = (64, 64),
        n_outputs: int = 1,
        *,
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.scaler = Standardize(n_inputs)
        self.body, width = _stack(n_inputs, hidden, activation, dropout)
        self.head = nn.Linear(width, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.scaler(x)))


class WithSigmoid(nn.Module):
    """Wraps a binary classifier so that it returns ``sigmoid(logit)`` (what gets exported)."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.classifier(*inputs))


class WithSoftmax(nn.Module):
    """Wraps an ``n``-class classifier (logits ``(batch, n)``) so that it returns the class
    probabilities ``softmax(logits)`` ``(batch, n)`` (what gets exported)."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.classifier(*inputs), dim=-1)


class TargetScaled(nn.Module):
    """Wraps a regression network so that it learns the standardised target: ``forward``
    returns ``network(*inputs) * target_std + target_mean``, in the target's own units (the
    buffers travel with the state dict and the ONNX export). Set them with :meth:`fit_target`
    on the training targets; without it a network starting near 0 needs many epochs to reach
    targets of size 100 (a jet mass in GeV)."""

    target_mean: torch.Tensor
    target_std: torch.Tensor

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network
        self.register_buffer("target_mean", torch.zeros(()))
        self.register_buffer("target_std", torch.ones(()))

    @property
    def scaler(self) -> Optional[nn.Module]:
        """The wrapped network's input :class:`Standardize` (fitted by the caller)."""
        return getattr(self.network, "scaler", None)

    @torch.no_grad()
    def fit_target(self, y: torch.Tensor) -> "TargetScaled":
        y = y.double().reshape(-1)
        self.target_mean.fill_(float(y.mean()) if y.numel() else 0.0)
        std = float(y.std()) if y.numel() > 1 else 1.0
        self.target_std.fill_(std if std > 0 else 1.0)
        return self

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.network(*inputs) * self.target_std + self.target_mean


def _float_mask(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask.to(like.dtype)


def masked_sum(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum over the particle axis (1) of ``values`` ``(b, p, c)``, padded particles excluded."""
    return (values * _float_mask(mask, values).unsqueeze(-1)).sum(dim=1)


def pad_particles(
    particles: Sequence, max_particles: Optional[int] = None, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad a list of ``(n_i, f)`` arrays (one per jet) to ``(n_jets, max_particles, f)``.

    Returns ``(particles, mask)``; jets longer than ``max_particles`` keep their first particles
    (sort them by pT first to keep the hardest).
    """
    arrays = [torch.as_tensor(p, dtype=dtype) for p in particles]
    if not arrays:
        raise ValueError("pad_particles needs at least one jet")
    n_features = arrays[0].shape[-1] if arrays[0].ndim == 2 else 0
    for i, a in enumerate(arrays):
        if a.ndim != 2 or a.shape[-1] != n_features:
            raise ValueError(f"jet {i} has shape {tuple(a.shape)}; expected (n_particles, {n_features})")
    longest = max(a.shape[0] for a in arrays)
    p = longest if max_particles is None else int(max_particles)
    out = torch.zeros(len(arrays), p, n_features, dtype=dtype)
    mask = torch.zeros(len(arrays), p, dtype=torch.bool)
    for i, a in enumerate(arrays):
        k = min(a.shape[0], p)
        out[i, :k] = a[:k]
        mask[i, :k] = True
    return out, mask


class DeepSets(nn.Module):
    """Deep Sets / Particle Flow Network: ``rho( sum_i phi(particle_i) )`` over real particles.

    Permutation invariant and blind to padding (masked sum pooling). With ``n_particle_features``
    = (pT fraction, Δη, Δφ, ...) this is the PFN of Komiske, Metodiev, Thaler (2019).
    """

    def __init__(
        self,
        n_particle_features: int,
        phi_hidden: Sequence[int] = (64, 64),
        latent: int = 64,
        rho_hidden: Sequence[int] = (64,),
        n_outputs: int = 1,
        *,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.scaler = Standardize(n_particle_features)
        body, width = _stack(n_particle_features, phi_hidden, activation)
        self.phi = nn.Sequential(body, nn.Linear(width, latent), _activation(activation))
        self.rho, width = _stack(latent, rho_hidden, activation)
        self.head = nn.Linear(width, n_outputs)

    def forward(self, particles: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        latent = masked_sum(self.phi(self.scaler(particles)), mask)
        return self.head(self.rho(latent))


class ParticleFlowNetwork(DeepSets):
    """Alias of :class:`DeepSets` under the name used in jet physics (PFN)."""


class EnergyFlowNetwork(nn.Module):
    """Energy Flow Network: ``rho( sum_i z_i phi(Δη_i, Δφ_i) )``, infrared and collinear safe.

    ``z_i`` (the particle's pT fraction) is column ``z_index`` of the particle features and
    ``phi`` sees only the angular columns ``angle_indices`` (Δη, Δφ to the jet axis).
    """

    def __init__(
        self,
        z_index: int = 0,
        angle_indices: Sequence[int] = (1, 2),
        phi_hidden: Sequence[int] = (64, 64),
        latent: int = 64,
        rho_hidden: Sequence[int] = (64,),
        n_outputs: int = 1,
        *,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.z_index = int(z_index)
        self.angle_indices = [int(i) for i in angle_indices]
        body, width = _stack(len(self.angle_indices), phi_hidden, activation)
        self.phi = nn.Sequential(body, nn.Linear(width, latent), _activation(activation))
        self.rho, width = _stack(latent, rho_hidden, activation)
        self.head = nn.Linear(width, n_outputs)

    def forward(self, particles: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        z = particles[..., self.z_index : self.z_index + 1]
        angles = particles[..., self.angle_indices]
        latent = masked_sum(z * self.phi(angles), mask)
        return self.head(self.rho(latent))


def _gather_neighbours(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x`` (b, p, c), ``index`` (b, p, k) -> (b, p, k, c) with ``out[b,i,j] = x[b, index[b,i,j]]``."""
    b, p, c = x.shape
    k = index.shape[-1]
    offset = (torch.arange(b, device=x.device) * p).view(b, 1, 1)
    flat = (index + offset).reshape(-1)
    return x.reshape(b * p, c).index_select(0, flat).reshape(b, p, k, c)


class EdgeConv(nn.Module):
    """One EdgeConv block (Wang et al. 2019, as in ParticleNet): for each particle ``i`` and each
    of its ``k`` nearest neighbours ``j``, ``h(x_i, x_j - x_i)``, averaged over the real
    neighbours, plus a linear shortcut."""

    def __init__(self, n_in: int, widths: Sequence[int], k: int, *, activation: str = "relu") -> None:
        super().__init__()
        self.k = int(k)
        layers: list[nn.Module] = []
        width = 2 * n_in
        for w in widths:
            layers += [nn.Linear(width, int(w)), _activation(activation)]
            width = int(w)
        self.edge = nn.Sequential(*layers)
        self.shortcut = nn.Linear(n_in, width)
        self.out = _activation(activation)
        self.n_out = width

    def forward(self, x: torch.Tensor, neighbours: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        xj = _gather_neighbours(x, neighbours)  # (b, p, k, c)
        xi = x.unsqueeze(2).expand_as(xj)
        h = self.edge(torch.cat([xi, xj - xi], dim=-1))
        nmask = _gather_neighbours(mask.unsqueeze(-1), neighbours)  # (b, p, k, 1)
        count = nmask.sum(dim=2)
        count = torch.maximum(count, torch.ones_like(count))
        h = (h * nmask).sum(dim=2) / count
        return self.out(h + self.shortcut(x)) * mask.unsqueeze(-1)


def _knn(distance: torch.Tensor, mask: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (b, p, k) of the k nearest real, non-self particles (padded ones sort last)."""
    # padding sorts after every real particle and the particle itself after all padding; as the
    # caller appends k padded particles, a particle is never its own neighbour, and ties (which
    # runtimes break differently) only occur among padding, which the aggregation ignores
    big = torch.finfo(distance.dtype).max / 8
    p = distance.shape[-1]
    invalid = (1.0 - mask).unsqueeze(1)  # neighbour j is padding
    index = torch.arange(p, device=distance.device)
    eye = (index.unsqueeze(0) == index.unsqueeze(1)).to(distance.dtype).unsqueeze(0)  # no EyeLike in the ONNX
    d = distance + (invalid + 2.0 * eye) * big
    return torch.topk(d, k, dim=-1, largest=False, sorted=True).indices


class ParticleNetLite(nn.Module):
    """ParticleNet-Lite (Qu & Gouskos 2020): EdgeConv blocks on a dynamic kNN graph.

    The first block finds neighbours in (η, φ) (columns ``coordinate_indices`` of the particle
    features, Δη and Δφ to the jet axis; Δφ differences are wrapped into [-π, π)), later blocks
    in the learned feature space. Padded particles are never anyone's neighbour and are excluded
    from the pooling. Works for any number of particles, also fewer than ``k`` (the input is
    padded internally with ``k`` masked particles), so the ONNX export has a dynamic particle
    axis. Batch normalisation is left out (it would mix padded entries into the statistics).
    """

    def __init__(
        self,
        n_particle_features: int,
        coordinate_indices: Sequence[int] = (1, 2),
        k: int = 7,
        blocks: Sequence[Sequence[int]] = ((32, 32, 32), (64, 64, 64)),
        head_hidden: Sequence[int] = (128,),
        n_outputs: int = 1,
        *,
        wrap_phi: bool = True,
        activation: str = "relu",
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if len(coordinate_indices) != 2:
            raise ValueError("coordinate_indices must name the two columns (Δη, Δφ)")
        self.k = int(k)
        self.coordinate_indices = [int(i) for i in coordinate_indices]
        self.wrap_phi = bool(wrap_phi)
        self.scaler = Standardize(n_particle_features)
        convs = []
        width = n_particle_features
        for widths in blocks:
            conv = EdgeConv(width, widths, self.k, activation=activation)
            convs.append(conv)
            width = conv.n_out
        self.convs = nn.ModuleList(convs)
        body, w = _stack(width, head_hidden, activation, dropout)
        self.fc = body
        self.head = nn.Linear(w, n_outputs)

    def _coordinate_distance(self, coords: torch.Tensor) -> torch.Tensor:
        diff = coords.unsqueeze(2) - coords.unsqueeze(1)  # (b, p, p, 2)
        deta = diff[..., 0]
        dphi = diff[..., 1]
        if self.wrap_phi:
            dphi = torch.remainder(dphi + math.pi, 2 * math.pi) - math.pi
        return deta * deta + dphi * dphi

    @staticmethod
    def _feature_distance(x: torch.Tensor) -> torch.Tensor:
        # explicit differences, not |a|² + |b|² - 2a·b: that cancels, and runtimes summing in
        # another order would then pick other neighbours among near ties
        diff = x.unsqueeze(2) - x.unsqueeze(1)
        return (diff * diff).sum(dim=-1)

    def forward(self, particles: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b = particles.shape[0]
        f = particles.shape[2]
        padding = torch.zeros(b, self.k, f, dtype=particles.dtype, device=particles.device)
        x = torch.cat([particles, padding], dim=1)
        m = torch.cat([mask.to(particles.dtype), padding[..., 0]], dim=1)
        coords = x[..., self.coordinate_indices]
        h = self.scaler(x) * m.unsqueeze(-1)
        for i, conv in enumerate(self.convs):
            distance = self._coordinate_distance(coords) if i == 0 else self._feature_distance(h)
            h = conv(h, _knn(distance, m, self.k), m)
        n_real = m.sum(dim=1, keepdim=True)
        pooled = masked_sum(h, m) / torch.maximum(n_real, torch.ones_like(n_real))
        return self.head(self.fc(pooled))


class Autoencoder(nn.Module):
    """A dense autoencoder for anomaly detection: train it on background only; the anomaly score
    of an event is its reconstruction error (see :class:`ReconstructionError`)."""

    def __init__(
        self, n_inputs: int, hidden: Sequence[int] = (32, 16), latent: int = 4, *, activation: str = "relu"
    ) -> None:
        super().__init__()
        self.scaler = Standardize(n_inputs)
        enc, width = _stack(n_inputs, hidden, activation)
        self.encoder = nn.Sequential(enc, nn.Linear(width, latent))
        dec, width = _stack(latent, list(hidden)[::-1], activation)
        self.decoder = nn.Sequential(dec, nn.Linear(width, n_inputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction, in standardised units (compare it with ``self.scaler(x)``)."""
        return self.decoder(self.encoder(self.scaler(x)))

    def anomaly_score(self, x: torch.Tensor) -> torch.Tensor:
        """Mean squared reconstruction error per event (standardised units), shape ``(batch,)``."""
        return ((self(x) - self.scaler(x)) ** 2).mean(dim=-1)


class ReconstructionError(nn.Module):
    """Wraps an :class:`Autoencoder` so that ``forward`` returns the anomaly score ``(batch, 1)``
    (what gets exported)."""

    def __init__(self, autoencoder: Autoencoder) -> None:
        super().__init__()
        self.autoencoder = autoencoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.autoencoder.anomaly_score(x).unsqueeze(-1)


class GaussianRegressor(nn.Module):
    """A regression network with a Gaussian head: returns ``(batch, 2)`` = (mean, width σ > 0).

    Train it with the Gaussian negative log-likelihood
    (:func:`hepinfer.train.gaussian_nll`); σ is then a per-event resolution estimate. The target
    is standardised internally (``target_mean``/``target_std`` buffers, set by
    :meth:`fit_target`), the outputs are in the target's own units.
    """

    target_mean: torch.Tensor
    target_std: torch.Tensor

    def __init__(
        self,
        n_inputs: int,
        hidden: Sequence[int] = (64, 64),
        *,
        activation: str = "relu",
        min_width: float = 1e-6,
    ) -> None:
        super().__init__()
        self.scaler = Standardize(n_inputs)
        self.body, width = _stack(n_inputs, hidden, activation)
        self.head = nn.Linear(width, 2)
        self.min_width = float(min_width)
        self.register_buffer("target_mean", torch.zeros(()))
        self.register_buffer("target_std", torch.ones(()))

    @torch.no_grad()
    def fit_target(self, y: torch.Tensor) -> "GaussianRegressor":
        y = y.double().reshape(-1)
        self.target_mean.fill_(float(y.mean()))
        std = float(y.std()) if y.numel() > 1 else 1.0
        self.target_std.fill_(std if std > 0 else 1.0)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.body(self.scaler(x)))
        mean = out[:, 0:1] * self.target_std + self.target_mean
        width = (nn.functional.softplus(out[:, 1:2]) + self.min_width) * self.target_std
        return torch.cat([mean, width], dim=1)
