"""Decorrelation metrics of a classifier: background rejection and the Jensen-Shannon divergence
between the background mass distributions passing and failing a score cut (the 1/JSD of the
DisCo paper, arXiv:2001.05310), at a chosen signal efficiency.

Cut convention: events pass when ``score >= cut``, and ``cut`` is the largest signal score such
that the (weighted) fraction of signal with ``score >= cut`` is at least the requested signal
efficiency. numpy only.
"""

from __future__ import annotations

from typing import Any, Optional, Union

import numpy as np
import numpy.typing as npt

from hepinfer._core import InputError

__all__ = [
    "background_rejection",
    "cut_at_signal_efficiency",
    "decorrelation_metrics",
    "jensen_shannon_divergence",
    "mass_sculpting_jsd",
]


def _vec(a: Any, name: str, n: Optional[int] = None) -> np.ndarray:
    v = np.asarray(a, dtype=np.float64)
    if v.ndim != 1:
        raise InputError(f"{name} must be 1-dimensional, got shape {v.shape}")
    if n is not None and v.shape[0] != n:
        raise InputError(f"{name} has {v.shape[0]} entries, expected {n}")
    bad = np.flatnonzero(~np.isfinite(v))
    if bad.size:
        raise InputError(f"{name}[{bad[0]}] is not finite ({v[bad[0]]})")
    return v


def _weights(w: Any, n: int, name: str) -> np.ndarray:
    if w is None:
        return np.ones(n)
    v = _vec(w, name, n)
    if np.any(v < 0):
        raise InputError(f"{name}[{int(np.flatnonzero(v < 0)[0])}] is negative")
    if not v.sum() > 0:
        raise InputError(f"{name} sum to zero")
    return v


def cut_at_signal_efficiency(
    signal_score: npt.ArrayLike,
    signal_efficiency: float = 0.5,
    signal_weights: Optional[npt.ArrayLike] = None,
) -> float:
    """The score cut (pass: ``score >= cut``) that keeps at least ``signal_efficiency`` of the signal."""
    if not 0 < signal_efficiency <= 1:
        raise InputError(f"signal_efficiency must be in (0, 1], got {signal_efficiency}")
    s = _vec(signal_score, "signal_score")
    if s.size == 0:
        raise InputError("signal_score is empty")
    w = _weights(signal_weights, s.size, "signal_weights")
    order = np.argsort(-s, kind="stable")
    frac = np.cumsum(w[order]) / w.sum()
    k = int(np.searchsorted(frac, signal_efficiency * (1 - 1e-12), side="left"))
    return float(s[order][min(k, s.size - 1)])


def background_rejection(
    signal_score: npt.ArrayLike,
    background_score: npt.ArrayLike,
    signal_efficiency: float = 0.5,
    signal_weights: Optional[npt.ArrayLike] = None,
    background_weights: Optional[npt.ArrayLike] = None,
) -> float:
    """1 / epsilon_B at the cut keeping ``signal_efficiency`` of the signal (inf if no background passes)."""
    cut = cut_at_signal_efficiency(signal_score, signal_efficiency, signal_weights)
    b = _vec(background_score, "background_score")
    wb = _weights(background_weights, b.size, "background_weights")
    eff_b = wb[b >= cut].sum() / wb.sum()
    return float(np.inf) if eff_b == 0 else float(1.0 / eff_b)


def jensen_shannon_divergence(p: npt.ArrayLike, q: npt.ArrayLike, base: float = 2.0) -> float:
    """JSD(P, Q) = 1/2 KL(P || M) + 1/2 KL(Q || M), M = (P + Q)/2, of two histograms (normalised
    here). In ``base`` 2 it lies in [0, 1]. (``scipy.spatial.distance.jensenshannon`` is its square root.)"""
    pa, qa = _vec(p, "p"), _vec(q, "q", None)
    if pa.shape != qa.shape:
        raise InputError(f"p and q must have the same number of bins, got {pa.size} and {qa.size}")
    if np.any(pa < 0) or np.any(qa < 0) or not pa.sum() > 0 or not qa.sum() > 0:
        raise InputError("histograms must be non-negative and not empty")
    pa, qa = pa / pa.sum(), qa / qa.sum()
    m = 0.5 * (pa + qa)

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log(a[nz] / m[nz])))

    return max(0.0, 0.5 * (kl(pa) + kl(qa)) / np.log(base))


def mass_sculpting_jsd(
    background_mass: npt.ArrayLike,
    background_score: npt.ArrayLike,
    cut: float,
    bins: Union[int, npt.ArrayLike] = 50,
    mass_range: Optional[tuple[float, float]] = None,
    background_weights: Optional[npt.ArrayLike] = None,
    base: float = 2.0,
) -> float:
    """JSD between the background mass histograms of events passing (``score >= cut``) and failing the cut.
    0 means no sculpting; the DisCo paper quotes 1/JSD (base 2). Returns NaN when one side is empty."""
    m = _vec(background_mass, "background_mass")
    s = _vec(background_score, "background_score", m.size)
    w = _weights(background_weights, m.size, "background_weights")
    edges = np.histogram_bin_edges(m, bins=bins, range=mass_range)
    passing = s >= cut
    hp, _ = np.histogram(m[passing], bins=edges, weights=w[passing])
    hf, _ = np.histogram(m[~passing], bins=edges, weights=w[~passing])
    if hp.sum() <= 0 or hf.sum() <= 0:
        return float("nan")
    return jensen_shannon_divergence(hp, hf, base=base)


def decorrelation_metrics(
    score: npt.ArrayLike,
    mass: npt.ArrayLike,
    is_signal: npt.ArrayLike,
    weights: Optional[npt.ArrayLike] = None,
    signal_efficiency: float = 0.5,
    bins: Union[int, npt.ArrayLike] = 50,
    mass_range: Optional[tuple[float, float]] = None,
) -> dict[str, float]:
    """The DisCo paper's pair of figures of merit at one signal efficiency: ``cut``,
    ``background_rejection`` (1/epsilon_B), ``jsd`` and ``inverse_jsd`` (1/JSD, base 2)."""
    s = _vec(score, "score")
    m = _vec(mass, "mass", s.size)
    lab = np.asarray(is_signal).astype(bool)
    if lab.shape != s.shape:
        raise InputError(f"is_signal must have shape {s.shape}, got {lab.shape}")
    w = _weights(weights, s.size, "weights")
    if not lab.any() or lab.all():
        raise InputError("need both signal and background events")
    cut = cut_at_signal_efficiency(s[lab], signal_efficiency, w[lab])
    wb = w[~lab]
    eff_b = wb[s[~lab] >= cut].sum() / wb.sum()
    jsd = mass_sculpting_jsd(m[~lab], s[~lab], cut, bins, mass_range, wb)
    return {
        "cut": cut,
        "background_rejection": float(np.inf) if eff_b == 0 else float(1 / eff_b),
        "jsd": jsd,
        "inverse_jsd": float(np.inf) if jsd == 0 else 1.0 / jsd,
    }
