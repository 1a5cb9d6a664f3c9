"""Exact distance correlation (the DisCo decorrelation penalty) without n x n matrices.

Definitions (event weights ``w`` normalised to mean 1)::

    a_ij = |x_i - x_j|                      (Euclidean distance for (n, d) inputs)
    abar_i = mean_j(a_ij w_j),  abar = mean_i(abar_i w_i)
    A_ij = a_ij - abar_i - abar_j + abar,   B_ij likewise from y
    dCov^2(x, y) = mean_i(w_i mean_j(A_ij B_ij w_j))
    dCor^2(x, y) = dCov^2(x, y) / sqrt(|dCov^2(x, x) dCov^2(y, y)|)

With unit weights this is the V-statistic of ``dcor.distance_correlation_sqr``;
``unbiased=True`` gives the U-centred estimator of ``dcor.u_distance_correlation_sqr``
(unit weights only). Scalar ``x`` and ``y`` take O(n log n) time and O(n) memory;
vector-valued ones take O(n^2) time (threaded with ``n_threads``) and O(n) memory.

Conventions: the V-statistic needs at least 2 events, the unbiased one at least 4; when ``x`` or
``y`` is constant dCor^2 is 0 and its gradient 0; NaN/inf, negative weights or weights summing to
zero raise :class:`hepinfer.InputError`. Gradients use d|t|/dt = 0 at t = 0 (as torch does),
so pairs with equal ``x`` contribute nothing. The GIL is released during the computation.

On a GPU (``device="cuda"`` or ``"cuda:N"``, hepinfer built with ``HEPINFER_CUDA=ON``): numpy input
is copied to the device; torch CUDA tensors, cupy arrays and other ``__cuda_array_interface__``
producers are read where they are (no host round trip) and the gradients come back as arrays of
the same library on the same device. The device algorithm is the O(n^2) pair sweep (tiled CUDA
kernels) for scalar and vector-valued inputs alike; values agree with the CPU to rounding
(relative ~1e-12), not bitwise. Without CUDA a device request raises :class:`hepinfer.DeviceError`.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
import numpy.typing as npt

from hepinfer import _core, _device
from hepinfer._core import InputError

__all__ = [
    "distance_correlation",
    "distance_correlation_and_grad",
    "distance_covariance",
    "distance_covariance_and_grad",
]


def _array(values: Any, name: str) -> np.ndarray:
    a = np.asarray(values)
    if a.dtype.kind not in "fiub":
        raise InputError(f"{name} has dtype {a.dtype}; hepinfer needs numbers (float32, float64, integers)")
    if a.dtype.kind != "f" or a.dtype.itemsize not in (4, 8):
        a = a.astype(np.float64)
    if a.ndim not in (1, 2):
        raise InputError(f"{name} must be 1-dimensional (n,) or 2-dimensional (n, d), got shape {a.shape}")
    return a


def _stats_device(
    x: Any, y: Any, weights: Any, unbiased: bool, gradient: bool, device: str
) -> tuple[float, float, float, float, Any, Any]:
    """Arrays already on a GPU: passed by address, gradients allocated on that device."""
    device = _device.resolve(device, [x, y, weights])
    xa = _device.as_device_array(x, "x")
    ya = _device.as_device_array(y, "y")
    wa = None if weights is None else _device.as_device_array(weights, "weights")
    for name, a in (("x", xa), ("y", ya)):
        if len(a.shape) not in (1, 2):
            raise InputError(
                f"{name} must be 1-dimensional (n,) or 2-dimensional (n, d), got shape {a.shape}"
            )
    n = xa.shape[0]
    if ya.shape[0] != n:
        raise InputError(f"x and y must have the same number of events, got {n} and {ya.shape[0]}")
    if wa is not None and wa.shape != (n,):
        raise InputError(
            f"weights must be 1-dimensional with one entry per event ({n}), got shape {wa.shape}"
        )
    dx = 1 if len(xa.shape) == 1 else xa.shape[1]
    dy = 1 if len(ya.shape) == 1 else ya.shape[1]
    g_cor = g_cov = None
    p_cor = p_cov = 0
    if gradient:
        g_cor, p_cor = _device.empty_like_device(xa.owner, xa.shape)
        g_cov, p_cov = _device.empty_like_device(xa.owner, xa.shape)
    r = _core.distance_stats_device(
        xa.ptr,
        dx,
        ya.ptr,
        dy,
        0 if wa is None else wa.ptr,
        n,
        device,
        unbiased=unbiased,
        grad_dcor2=p_cor,
        grad_dcov=p_cov,
        stream=_device.stream_of(xa.owner),
    )
    return r[0], r[1], r[2], r[3], g_cor, g_cov


def _stats(
    x: Any, y: Any, weights: Any, unbiased: bool, n_threads: int, gradient: bool, device: str = "cpu"
) -> tuple[float, float, float, float, Optional[np.ndarray], Optional[np.ndarray]]:
    if not _device.is_cpu(device):
        _device.check(device)
        if any(_device.on_device(a) for a in (x, y, weights) if a is not None):
            return _stats_device(x, y, weights, unbiased, gradient, device)
    xa = _array(x, "x")
    ya = _array(y, "y")
    wa = None if weights is None else _array(weights, "weights")
    if wa is not None and wa.ndim != 1:
        raise InputError(f"weights must be 1-dimensional, got shape {wa.shape}")
    return _core.distance_stats(
        xa, ya, wa, unbiased=unbiased, n_threads=n_threads, gradient=gradient, device=device or "cpu"
    )


def distance_correlation(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    weights: Optional[npt.ArrayLike] = None,
    squared: bool = True,
    unbiased: bool = False,
    n_threads: int = 1,
    device: str = "cpu",
) -> float:
    """Distance correlation of ``x`` and ``y`` (squared by default, as DisCo uses it).

    Args:
        x, y: event values, 1-D (n,) or 2-D (n, d) (e.g. mass and pT together).
        weights: optional non-negative event weights (any scale; normalised to mean 1).
        squared: return dCor^2 (default) or dCor = sqrt(max(dCor^2, 0)).
        unbiased: U-centred (bias-corrected) estimator, unit weights only, n >= 4;
            it can be negative (then ``squared=False`` returns 0).
        n_threads: threads for vector-valued inputs (0: all cores); results do not depend on it.
        device: "cpu" (default), "cuda" or "cuda:N" (see the module docstring).
    """
    d2 = _stats(x, y, weights, unbiased, n_threads, False, device)[3]
    return float(d2) if squared else math.sqrt(max(float(d2), 0.0))


def distance_covariance(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    weights: Optional[npt.ArrayLike] = None,
    squared: bool = True,
    unbiased: bool = False,
    n_threads: int = 1,
    device: str = "cpu",
) -> float:
    """Distance covariance of ``x`` and ``y``: dCov^2 by default, dCov = sqrt(max(dCov^2, 0))
    with ``squared=False``. Arguments (including ``device``) as in :func:`distance_correlation`."""
    v = _stats(x, y, weights, unbiased, n_threads, False, device)[0]
    return float(v) if squared else math.sqrt(max(float(v), 0.0))


def _grad(g: Optional[Any]) -> Any:
    if g is None:  # asked for with gradient=True: always there
        raise RuntimeError("the C++ estimator returned no gradient")
    return g


def distance_correlation_and_grad(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    weights: Optional[npt.ArrayLike] = None,
    unbiased: bool = False,
    n_threads: int = 1,
    device: str = "cpu",
) -> tuple[float, npt.NDArray[np.float64]]:
    """dCor^2(x, y) and its gradient with respect to every ``x`` (same shape as ``x``, float64).

    O(n log n) for scalar x and y. Pairs with ``x_i == x_j`` contribute 0 to the gradient;
    a constant ``x`` or ``y`` gives value 0 and gradient 0. With ``device="cuda"`` and GPU input
    the gradient is a device array of the input's library (torch tensor, cupy array).
    """
    r = _stats(x, y, weights, unbiased, n_threads, True, device)
    return float(r[3]), _grad(r[4])


def distance_covariance_and_grad(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    weights: Optional[npt.ArrayLike] = None,
    unbiased: bool = False,
    n_threads: int = 1,
    device: str = "cpu",
) -> tuple[float, npt.NDArray[np.float64]]:
    """dCov^2(x, y) and its gradient with respect to every ``x`` (same shape as ``x``, float64)."""
    r = _stats(x, y, weights, unbiased, n_threads, True, device)
    return float(r[0]), _grad(r[5])
