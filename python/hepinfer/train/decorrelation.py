"""Decorrelation penalties for training classifiers that do not sculpt the mass: every DisCo and
MoDE code path of the training loop is here (``hepinfer.losses`` is the older name of this module).

* :class:`DisCo` / :func:`disco_loss`: ``lambda_ * dCor^2(score, mass)^power`` (Kasieczka & Shih,
  arXiv:2001.05310), exact, computed by the hepinfer C++ core in O(n log n) time and O(n)
  memory (O(n^2) time for vector-valued mass, e.g. mass and pT together) instead of n x n
  matrices. By default forward and backward run on CPU: tensors reach the core as numpy views,
  float32 inputs are copied to float64 there, and the gradient is returned in the score's dtype and
  device. With ``device="cuda"`` (hepinfer built with ``HEPINFER_CUDA=ON``) CUDA tensors go to the
  GPU kernels by address, with no copy to the host (O(n^2) tiled kernels, see hepinfer.disco);
  ``device="auto"`` picks the GPU for CUDA scores up to ``GPU_AUTO_MAX_EVENTS`` events and the CPU
  otherwise.
* :class:`MoDE` (Moment Decomposition, Kitouni, Nachman, Weisser & Williams, arXiv:2010.09745),
  orders 0 (flat), 1 (linear), 2 (quadratic) and 2 monotonic, in an exact sort-based
  O(n log n) form (see its docstring).
* :func:`distance_correlation_squared`: the same dCor^2 in plain torch through the dense O(n^2)
  formula, a reference for small batches.
* :func:`resolve_penalty`: the penalty the :class:`~hepinfer.train.Trainer` applies for
  ``decorrelation="disco"`` or ``"mode"``.

Apply them to background events only, as in both papers:
``loss = bce + disco(score[label == 0], mass[label == 0])``.

Gradients flow to ``score`` only; ``mass`` and ``weights`` are treated as constants (they are
detached; a tensor that requires grad is accepted and receives no gradient).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional, Union

import numpy as np
import torch

from hepinfer import _core, _device
from hepinfer._core import InputError

__all__ = [
    "MODE_ORDERS",
    "DisCo",
    "MoDE",
    "disco_loss",
    "distance_correlation_squared",
    "mode_loss",
    "resolve_penalty",
]

#: ``f(score, mass, weight) -> scalar``: a decorrelation penalty of the training loop
Penalty = Callable[[torch.Tensor, torch.Tensor, Optional[torch.Tensor]], torch.Tensor]

#: device="auto": the largest batch sent to the O(n^2) GPU kernels; beyond it the O(n log n) CPU path
#: is expected to be faster. An estimate from operation counts (~20 flops per pair on the GPU against
#: 0.4 s for 10^6 events on the CPU), to be replaced by the crossover benchmarks/gpu.py measures.
GPU_AUTO_MAX_EVENTS = 1 << 17


def _as_numpy(t: Any, name: str) -> np.ndarray:
    if isinstance(t, torch.Tensor):
        if t.device.type != "cpu":
            t = t.detach().cpu()
        if t.dtype not in (torch.float32, torch.float64):
            t = t.to(torch.float64)
        return t.detach().numpy()
    return np.asarray(t, dtype=np.float64)


def _score_array(score: Any) -> np.ndarray:
    s = _as_numpy(score, "score")
    if s.ndim == 2 and s.shape[1] == 1:
        s = s[:, 0]
    if s.ndim != 1:
        raise InputError(f"score must have shape (n,) or (n, 1), got {tuple(s.shape)}")
    return s


class _DisCoFunction(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, score: Any, mass: Any, weights: Any, unbiased: bool, n_threads: int, device: str = "cpu"
    ) -> Any:
        if not _device.is_cpu(device):
            return _forward_device(ctx, score, mass, weights, unbiased, device)
        s = _score_array(score)
        m = _as_numpy(mass, "mass")
        w = None if weights is None else _as_numpy(weights, "weights")
        r = _core.distance_stats(s, m, w, unbiased=unbiased, n_threads=n_threads, gradient=True)
        ctx.save_for_backward(torch.from_numpy(r[4]).reshape(score.shape))
        return torch.tensor(r[3], dtype=score.dtype, device=score.device)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_output: Any) -> Any:  # type: ignore[override]
        (g,) = ctx.saved_tensors
        g = g.to(dtype=grad_output.dtype, device=grad_output.device)
        return grad_output * g, None, None, None, None, None


def _forward_device(ctx: Any, score: Any, mass: Any, weights: Any, unbiased: bool, device: str) -> Any:
    """Score on a CUDA device: mass and weights are moved next to it, everything stays there."""
    s = score.detach()
    if s.ndim == 2 and s.shape[1] == 1:
        s = s[:, 0]
    if s.ndim != 1:
        raise InputError(f"score must have shape (n,) or (n, 1), got {tuple(s.shape)}")
    if not _device.is_torch_cuda(s):
        raise InputError(f'device="{device}" needs the score on a CUDA device, got {s.device}')
    m = torch.as_tensor(mass, device=s.device)
    w = None if weights is None else torch.as_tensor(weights, device=s.device)
    from hepinfer.disco import _stats_device

    r = _stats_device(s, m, w, unbiased, True, device)
    ctx.save_for_backward(r[4].reshape(score.shape))
    return torch.tensor(r[3], dtype=score.dtype, device=score.device)


def disco_loss(
    score: torch.Tensor,
    mass: Union[torch.Tensor, np.ndarray],
    weights: Optional[Union[torch.Tensor, np.ndarray]] = None,
    lambda_: float = 1.0,
    power: float = 1.0,
    unbiased: bool = False,
    n_threads: int = 1,
    device: str = "cpu",
) -> torch.Tensor:
    """``lambda_ * dCor^2(score, mass)^power`` as a differentiable torch scalar.

    Args:
        score: classifier output, shape (n,) or (n, 1), float32 or float64 (gradient flows here).
        mass: the variable(s) to decorrelate from, (n,) or (n, d) (constant, no gradient).
        weights: optional non-negative event weights (constant).
        lambda_: strength of the penalty.
        power: exponent of dCor^2 (1 in the DisCo paper).
        unbiased: use the U-centred estimator (unit weights only, n >= 4).
        n_threads: threads for vector-valued mass.
        device: "cpu" (default: the core runs on host copies), "cuda"/"cuda:N" (the GPU kernels on
            the CUDA tensors, no host copy; DeviceError in builds without CUDA), or "auto" (the GPU
            when the score is a CUDA tensor, hepinfer has CUDA and n <= GPU_AUTO_MAX_EVENTS).
    """
    if not isinstance(score, torch.Tensor):
        raise InputError("score must be a torch.Tensor")
    if score.dtype not in (torch.float32, torch.float64):
        raise InputError(f"score must be float32 or float64, got {score.dtype}")
    if isinstance(mass, torch.Tensor):
        mass = mass.detach()
    if isinstance(weights, torch.Tensor):
        weights = weights.detach()
    if device == "auto":
        n = score.shape[0] if score.ndim else 1
        use_gpu = score.device.type == "cuda" and _core.built_with_cuda() and n <= GPU_AUTO_MAX_EVENTS
        device = "cuda" if use_gpu else "cpu"
    elif not _device.is_cpu(device):
        _device.check(device)
    d2 = _DisCoFunction.apply(score, mass, weights, unbiased, n_threads, device)
    if power != 1:
        d2 = d2.clamp_min(0) ** power
    return lambda_ * d2


class DisCo(torch.nn.Module):
    """DisCo penalty as a module: ``forward(score, mass, weights=None) -> lambda_ * dCor^2^power``.

    See :func:`disco_loss`. Typical use (background events only)::

        disco = hepinfer.train.decorrelation.DisCo(lambda_=1.0)
        loss = bce(score, label) + disco(score[label == 0], mass[label == 0])
    """

    def __init__(
        self,
        lambda_: float = 1.0,
        power: float = 1.0,
        unbiased: bool = False,
        n_threads: int = 1,
        device: str = "cpu",
    ):
        super().__init__()
        self.lambda_ = float(lambda_)
        self.power = float(power)
        self.unbiased = bool(unbiased)
        self.n_threads = int(n_threads)
        self.device = str(device)

    def forward(self, score: Any, mass: Any, weights: Any = None) -> Any:
        return disco_loss(
            score, mass, weights, self.lambda_, self.power, self.unbiased, self.n_threads, self.device
        )

    def extra_repr(self) -> str:
        extra = "" if self.device == "cpu" else f", device={self.device!r}"
        return f"lambda_={self.lambda_}, power={self.power}, unbiased={self.unbiased}{extra}"


class MoDE(torch.nn.Module):
    """Moment Decomposition (MoDE) penalty, orders 0 (flat), 1 (linear in mass), 2 (quadratic)
    and 2 monotonic, as in Kitouni et al. (arXiv:2010.09745, the MoDe[0], MoDe[1], MoDe[2] and
    monotonic MoDe[2] of the paper).

    MoDE asks the conditional CDF of the score in bins of mass, F_m(s), to equal its
    weighted least-squares projection onto polynomials of degree ``order`` in mass (bin
    centres x_m, mapped to [-1, 1]; Legendre-like basis e_0 = 1, e_1, e_2 orthonormal under the
    bin fractions p_m, which for equal fractions and uniform centres are the Legendre
    polynomials of the paper's reference implementation). Here the distance is integrated
    exactly over the score axis,
    ``L = lambda_ * sum_m p_m * integral ds (F_m(s) - Fhat_m(s))^2``,
    which for empirical CDFs reduces to energy-distance sums: with c the (zero-sum)
    coefficients of F_m - Fhat_m on the events' step functions,
    ``integral (sum_i c_i H(s - s_i))^2 ds = -1/2 sum_ij c_i c_j |s_i - s_j|``.
    Order 0: ``L0 = 1/2 GMD(all) - sum_m p_m 1/2 GMD(bin m)`` (GMD: weighted mean |s_i - s_j|);
    order k: ``Lk = L(k-1) - integral beta_k(s)^2 ds`` with ``beta_k(s) = sum_m p_m e_k(x_m) F_m(s)``
    the coefficient of e_k.
    Monotonic (order 2, ``monotonic=True``): the quadratic coefficient is softly clipped, for each
    s, to the interval in which the fitted ``beta_1 e_1(x) + beta_2 e_2(x)`` is monotonic in x on
    [-1, 1] (``|2 c_2| <= |c_1|`` for its coefficients ``c_1 x + c_2 x^2``), with the paper's
    ``bound * tanh(beta_2 / (bound + eps))``; the loss is then
    ``L2 + integral (beta_2(s) - clipped(s))^2 ds``: the response may follow the mass linearly
    and curve only as far as it stays monotonic (for Legendre polynomials the bound is the
    reference implementation's ``|a_1| / 3``).
    Everything is sums of ``|s_i - s_j|`` or step functions over sorted scores: O(n log n) time,
    O(n) memory (no n x n or n x bins^2 matrices); the gradient is torch autograd through the sort
    (at exactly tied scores it depends on the sort order, elsewhere it is exact).
    The loss has the units of the score (use scores in [0, 1], e.g. after a sigmoid).

    Args:
        order: 0 (flat: score distribution independent of mass), 1 (allows a linear trend) or 2
            (allows a quadratic one).
        monotonic: with ``order=2``, allow only quadratic trends that are monotonic in mass.
        eps: the small number of the monotonic clip (avoids 0/0 where the linear term vanishes).
        lambda_: strength.
        bins: number of equal-width mass bins between ``mass_range`` (default: the batch's
            min and max) or a 1-D sequence of bin edges; events outside are clipped into the
            first/last bin.
        mass_range: (low, high) for integer ``bins``.
    """

    def __init__(
        self,
        order: int = 0,
        lambda_: float = 1.0,
        bins: Union[int, Any] = 20,
        mass_range: Optional[tuple[float, float]] = None,
        monotonic: bool = False,
        eps: float = 1e-4,
    ):
        super().__init__()
        _check_mode_order(order, monotonic)
        self.order = int(order)
        self.lambda_ = float(lambda_)
        self.bins = bins
        self.mass_range = mass_range
        self.monotonic = bool(monotonic)
        self.eps = float(eps)

    def forward(self, score: Any, mass: Any, weights: Any = None) -> Any:
        return mode_loss(
            score,
            mass,
            weights,
            self.order,
            self.lambda_,
            self.bins,
            self.mass_range,
            monotonic=self.monotonic,
            eps=self.eps,
        )

    def extra_repr(self) -> str:
        extra = ", monotonic=True" if self.monotonic else ""
        return f"order={self.order}, lambda_={self.lambda_}, bins={self.bins!r}{extra}"


#: the MoDE orders implemented (0 flat, 1 linear, 2 quadratic; 2 also monotonic)
MODE_ORDERS = (0, 1, 2)


def _check_mode_order(order: int, monotonic: bool) -> None:
    if order not in MODE_ORDERS:
        raise InputError(f"MoDE order must be 0, 1 or 2, got {order}")
    if monotonic and order != 2:
        raise InputError(
            f"MoDE monotonic=True needs order 2 (a quadratic fit to constrain), got order {order}"
        )


def _mode_basis(x: torch.Tensor, p: torch.Tensor, order: int) -> list[Optional[torch.Tensor]]:
    """e_1..e_order on the bin centres x (in [-1, 1]): polynomials of degree k orthonormal under
    the bin fractions p (Gram-Schmidt); None where the bins hold too few distinct masses."""
    basis = [torch.ones_like(x)]
    out: list[Optional[torch.Tensor]] = []
    for k in range(1, order + 1):
        v = x**k
        for e in basis:
            v = v - torch.sum(p * v * e) * e
        norm2 = float(torch.sum(p * v * v))
        if not norm2 > 1e-20:
            out.append(None)
            continue
        v = v / math.sqrt(norm2)
        basis.append(v)
        out.append(v)
    return out


def _monotonic_excess(
    sd: torch.Tensor,
    c1: torch.Tensor,
    c2: torch.Tensor,
    e1: torch.Tensor,
    e2: torch.Tensor,
    x: torch.Tensor,
    eps: float,
) -> torch.Tensor:
    """integral (beta_2(s) - clip(beta_2(s)))^2 ds, beta_k(s) = sum_i c_k,i H(s - s_i), with the
    clip to the interval of beta_2 in which beta_1 e_1 + beta_2 e_2 is monotonic on [-1, 1]."""
    # monomial coefficients of e_1 = u1 x + u0 and e_2 = v2 x^2 + v1 x + v0 (exact: they are
    # polynomials, so three points determine them)
    u1 = (e1[-1] - e1[0]) / (x[-1] - x[0])
    v = torch.linalg.solve(
        torch.stack([x * x, x, torch.ones_like(x)], 1)[[0, len(x) // 2, -1]], e2[[0, len(x) // 2, -1]]
    )
    v2, v1 = v[0], v[1]
    order = torch.argsort(sd.detach())
    ss = sd[order]
    beta1 = torch.cumsum(c1[order], 0)[:-1]  # on [s_(k), s_(k+1))
    beta2 = torch.cumsum(c2[order], 0)[:-1]
    width = ss[1:] - ss[:-1]
    a = beta1 * u1
    sign = torch.where(a >= 0, 1.0, -1.0).to(a.dtype)
    hi = a.abs() / (2 * v2.abs() - sign * v1)
    lo = a.abs() / (2 * v2.abs() + sign * v1)
    bound = torch.where(beta2 >= 0, hi, lo)
    clipped = bound * torch.tanh(beta2 / (bound + eps))
    return torch.sum(width * (beta2 - clipped) ** 2)


def _pair_sum(s: Any, c: Any) -> Any:
    """sum_ij c_i c_j |s_i - s_j| for 1-D tensors, via one sort and cumulative sums (O(n log n))."""
    order = torch.argsort(s)
    ss, cs = s[order], c[order]
    cum = torch.cumsum(cs, 0)
    before = cum - cs  # sum of c over events earlier in the order
    total = cum[-1]
    after = total - cum
    # sum_{i<j} c_i c_j (s_j - s_i) counted twice
    return 2.0 * torch.sum(cs * ss * (before - after))


def mode_loss(
    score: torch.Tensor,
    mass: Any,
    weights: Any = None,
    order: int = 0,
    lambda_: float = 1.0,
    bins: Union[int, Any] = 20,
    mass_range: Optional[tuple[float, float]] = None,
    *,
    monotonic: bool = False,
    eps: float = 1e-4,
) -> torch.Tensor:
    """MoDE penalty (see :class:`MoDE`) as a function; gradient flows to ``score`` only."""
    _check_mode_order(order, monotonic)
    if not isinstance(score, torch.Tensor):
        raise InputError("score must be a torch.Tensor")
    s = score.reshape(-1) if score.ndim == 2 and score.shape[1] == 1 else score
    if s.ndim != 1:
        raise InputError(f"score must have shape (n,) or (n, 1), got {tuple(score.shape)}")
    n = s.shape[0]
    m_np = np.asarray(_as_numpy(mass, "mass"), dtype=np.float64)
    if m_np.ndim == 2 and m_np.shape[1] == 1:
        m_np = m_np[:, 0]
    if m_np.ndim != 1:
        raise InputError(f"MoDE decorrelates against one mass variable: mass must be (n,), got {m_np.shape}")
    m = torch.from_numpy(m_np)
    if m.shape[0] != n:
        raise InputError(f"mass has {m.shape[0]} events but score has {n}")
    if n < 2:
        raise InputError(f"MoDE needs at least 2 events, got {n}")
    if weights is None:
        w = torch.ones(n, dtype=torch.float64)
    else:
        w = torch.as_tensor(np.asarray(_as_numpy(weights, "weights"), dtype=np.float64)).reshape(-1)
        if w.shape[0] != n:
            raise InputError(f"weights has {w.shape[0]} events but score has {n}")
        if not bool(torch.all(torch.isfinite(w))) or bool(torch.any(w < 0)) or not float(w.sum()) > 0:
            raise InputError("weights must be finite, non-negative and not all zero")
    if not bool(torch.all(torch.isfinite(m))):
        raise InputError("mass contains NaN or inf")
    if not bool(torch.all(torch.isfinite(s.detach()))):
        raise InputError("score contains NaN or inf")
    # mass bins
    if isinstance(bins, (int, np.integer)):
        if bins < 1:
            raise InputError(f"bins must be >= 1, got {bins}")
        lo, hi = (float(m.min()), float(m.max())) if mass_range is None else map(float, mass_range)
        edges = torch.linspace(lo, hi if hi > lo else lo + 1.0, int(bins) + 1, dtype=torch.float64)
    else:
        edges = torch.as_tensor(np.asarray(bins, dtype=np.float64))
        if edges.ndim != 1 or edges.shape[0] < 2 or not bool(torch.all(edges[1:] > edges[:-1])):
            raise InputError("bins must be an int or an increasing 1-D sequence of at least 2 edges")
    n_bins = edges.shape[0] - 1
    b = torch.clamp(torch.bucketize(m, edges[1:-1], right=True), 0, n_bins - 1)
    W = w.sum()
    Wb = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, b, w)
    p = Wb / W
    sd = s.to(torch.float64)
    # order 0: 1/2 GMD(all) - sum_m p_m 1/2 GMD(m), GMD = sum_ij w_i w_j |s_i - s_j| / W^2
    total = 0.5 * _pair_sum(sd, w / W)
    # within-bin sums: sort by (bin, score) via a stable sort of the score order by bin
    order_s = torch.argsort(sd.detach())
    order_b = order_s[torch.argsort(b[order_s], stable=True)]
    ss, ws, bs = sd[order_b], w[order_b], b[order_b]
    cum = torch.cumsum(ws, 0)
    start = torch.cumsum(Wb, 0) - Wb  # weight before each bin
    before = cum - ws - start[bs]
    after = Wb[bs] - (cum - start[bs])
    # sum_m p_m * sum_{ij in m} (w_i/W_m)(w_j/W_m)|s_i - s_j| = sum_m (1/(W W_m)) * ...
    Wm = torch.where(Wb > 0, Wb, torch.ones_like(Wb))[bs]
    within = 2.0 * torch.sum(ws * ss * (before - after) / (W * Wm))
    loss = total - 0.5 * within
    if order >= 1:
        centres = 0.5 * (edges[1:] + edges[:-1])
        x = (
            2 * (centres - centres[0]) / (centres[-1] - centres[0]) - 1
            if n_bins > 1
            else torch.zeros_like(centres)
        )
        basis = _mode_basis(x, p, order)
        coefficients = [None if e is None else w * e[b] / W for e in basis]
        for c in coefficients:
            if c is not None:  # - integral beta_k(s)^2 ds = + 1/2 sum_ij c_i c_j |s_i - s_j|
                loss = loss + 0.5 * _pair_sum(sd, c)
        e1, e2 = basis[0], basis[-1]
        c1, c2 = coefficients[0], coefficients[-1]
        if monotonic and e1 is not None and e2 is not None and c1 is not None and c2 is not None:
            loss = loss + _monotonic_excess(sd, c1, c2, e1, e2, x, eps)
    return (lambda_ * loss).to(score.dtype)


def _centred_distances(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    d = (x.reshape(-1, 1) - x.reshape(1, -1)).abs()
    row = (d * w.reshape(1, -1)).sum(dim=1)  # weighted row means (w sums to 1)
    total = (row * w).sum()
    return d - row.reshape(-1, 1) - row.reshape(1, -1) + total


def distance_correlation_squared(
    x: torch.Tensor, y: torch.Tensor, weight: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Weighted squared distance correlation dCor²(x, y) of two 1-D samples (V-statistic, as
    in the DisCo paper, Kasieczka & Shih 2020), differentiable, O(n²) memory: a reference
    implementation for batches of a few thousand events (:func:`disco_loss` is the exact
    O(n log n) one)."""
    x = x.reshape(-1)
    y = y.reshape(-1).to(x.dtype)
    w = torch.ones_like(x) if weight is None else weight.reshape(-1).to(x.dtype)
    w = w / w.sum()
    a = _centred_distances(x, w)
    b = _centred_distances(y, w)
    ww = w.reshape(-1, 1) * w.reshape(1, -1)
    dcov_xy = (a * b * ww).sum()
    dcov_xx = (a * a * ww).sum()
    dcov_yy = (b * b * ww).sum()
    denom = torch.sqrt(dcov_xx * dcov_yy)
    return torch.where(denom > 0, dcov_xy / denom.clamp(min=1e-30), torch.zeros_like(denom))


def resolve_penalty(name: str, **options: Any) -> Penalty:
    """The decorrelation penalty ``f(score, mass, weight) -> scalar`` for ``"disco"``
    (:func:`disco_loss`, the C++ O(n log n) distance correlation) or ``"mode"`` (:class:`MoDE`;
    ``options`` are passed to it)."""
    if name == "disco":
        return lambda score, mass, weight: disco_loss(score, mass, weight)
    if name == "mode":
        mode = MoDE(**options)
        return lambda score, mass, weight: mode(score, mass, weight)
    raise ValueError(f"unknown decorrelation penalty {name!r}; use 'disco', 'mode' or a callable")
