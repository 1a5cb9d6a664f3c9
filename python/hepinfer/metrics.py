"""Metrics of a classifier: background rejection and the Jensen-Shannon divergence between the
background mass distributions passing and failing a score cut (the 1/JSD of the DisCo paper,
arXiv:2001.05310), at a chosen signal efficiency; and the calibration curve (reliability
diagram) of a score read as a signal probability.

Cut convention: events pass when ``score >= cut``, and ``cut`` is the largest signal score such
that the (weighted) fraction of signal with ``score >= cut`` is at least the requested signal
efficiency. numpy only.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional, Union

import numpy as np
import numpy.typing as npt

from hepinfer._core import InputError

__all__ = [
    "CalibrationCurve",
    "background_rejection",
    "calibration_curve",
    "cut_at_signal_efficiency",
    "decorrelation_metrics",
    "jensen_shannon_divergence",
    "mass_sculpting_jsd",
    "roc_auc",
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


def roc_auc(score: npt.ArrayLike, label: npt.ArrayLike, weight: Optional[npt.ArrayLike] = None) -> float:
    """Weighted area under the ROC curve (ties count one half)."""
    score = np.asarray(score, dtype=np.float64).reshape(-1)
    label = np.asarray(label).reshape(-1) > 0.5
    w = np.ones_like(score) if weight is None else np.asarray(weight, dtype=np.float64).reshape(-1)
    ws, wb = w[label].sum(), w[~label].sum()
    if ws == 0 or wb == 0:
        return float("nan")
    order = np.argsort(score, kind="stable")
    s, lab, ww = score[order], label[order], w[order]
    _unique, start = np.unique(s, return_index=True)
    bkg_w = np.add.reduceat(np.where(lab, 0.0, ww), start)
    sig_w = np.add.reduceat(np.where(lab, ww, 0.0), start)
    bkg_below = np.cumsum(bkg_w) - bkg_w
    return float(((bkg_below + 0.5 * bkg_w) * sig_w).sum() / (ws * wb))


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


class CalibrationCurve(NamedTuple):
    """A reliability diagram, one entry per score bin that holds events (empty bins are left
    out, as :func:`sklearn.calibration.calibration_curve` does).

    ``mean_score``: (weighted) mean score of the bin's events, the "mean predicted probability";
    ``signal_fraction``: (weighted) fraction of signal among them, the "observed probability";
    ``signal_fraction_error``: its binomial standard error; ``sum_of_weights`` and ``entries``:
    the bin's total weight and number of events; ``bin_edges``: all ``n_bins + 1`` edges;
    ``bin_index``: which bin of ``bin_edges`` each entry is.
    """

    mean_score: np.ndarray
    signal_fraction: np.ndarray
    signal_fraction_error: np.ndarray
    sum_of_weights: np.ndarray
    entries: np.ndarray
    bin_edges: np.ndarray
    bin_index: np.ndarray


def calibration_curve(
    is_signal: npt.ArrayLike,
    score: npt.ArrayLike,
    weights: Optional[npt.ArrayLike] = None,
    bins: Union[int, npt.ArrayLike] = 10,
    strategy: str = "uniform",
) -> CalibrationCurve:
    """The observed signal fraction against the mean score in bins of score: a score that is a
    calibrated signal probability lies on the diagonal.

    Parameters
    ----------
    is_signal
        1 (or ``True``) for signal, 0 for background, one per event.
    score
        The classifier's output read as a signal probability, in [0, 1].
    weights
        Event weights (>= 0; ``None``: all 1). Both the mean score and the signal fraction are
        weighted means over the bin's events.
    bins
        Number of bins in [0, 1], or the increasing bin edges (events outside them are left out).
    strategy
        With a number of bins: ``"uniform"`` (equal widths in [0, 1]) or ``"quantile"`` (edges
        at the quantiles of the unweighted scores: equal numbers of events per bin).

    Bins are ``[low, high)``, the last one ``[low, high]`` (as :func:`numpy.histogram`). The
    error of the signal fraction f = sum(w y) / sum(w) of a bin is the binomial one,
    propagated to weighted events: sqrt(sum(w^2 (y - f)^2)) / sum(w), which is
    sqrt(f (1 - f) / n) without weights (normal approximation: 0 for a bin of one class only).
    """
    s = _vec(score, "score")
    y = _vec(is_signal, "is_signal", s.size)
    if not np.all((y == 0) | (y == 1)):
        bad = int(np.flatnonzero((y != 0) & (y != 1))[0])
        raise InputError(f"is_signal[{bad}] is {y[bad]}; it must be 1 (signal) or 0 (background)")
    w = np.ones(s.size) if weights is None else _vec(weights, "weights", s.size)
    if np.any(w < 0):
        raise InputError(f"weights[{int(np.flatnonzero(w < 0)[0])}] is negative")
    if np.ndim(bins) == 0:
        n_bins = int(bins)  # type: ignore[arg-type]
        if n_bins < 1 or n_bins != bins:
            raise InputError(f"bins must be a positive number of bins or a list of edges, got {bins!r}")
        if np.any((s < 0) | (s > 1)):
            bad = int(np.flatnonzero((s < 0) | (s > 1))[0])
            raise InputError(
                f"score[{bad}] = {s[bad]} is outside [0, 1]; give probabilities (or bin edges with bins=)"
            )
        if strategy == "uniform":
            edges = np.linspace(0.0, 1.0, n_bins + 1)
        elif strategy == "quantile":
            if s.size == 0:
                raise InputError("score is empty: no quantiles to take")
            edges = np.percentile(s, np.linspace(0.0, 100.0, n_bins + 1))
        else:
            raise InputError(f"strategy must be 'uniform' or 'quantile', got {strategy!r}")
    else:
        edges = _vec(bins, "bins")
        if edges.size < 2 or np.any(np.diff(edges) <= 0):
            raise InputError("bin edges must be at least two strictly increasing numbers")
        if strategy not in ("uniform", "quantile"):
            raise InputError(f"strategy must be 'uniform' or 'quantile', got {strategy!r}")
    n_bins = edges.size - 1
    # [low, high) bins, the last one closed; quantile edges may repeat (ties): such bins stay empty
    index = np.searchsorted(edges, s, side="right") - 1
    index[s == edges[-1]] = n_bins - 1
    inside = (index >= 0) & (index < n_bins) & (w > 0)
    index, s_in, y_in, w_in = index[inside], s[inside], y[inside], w[inside]
    total = np.bincount(index, weights=w_in, minlength=n_bins)
    entries = np.bincount(index, minlength=n_bins)
    filled = np.flatnonzero(total > 0)
    safe = np.where(total > 0, total, 1.0)
    mean_score = np.bincount(index, weights=w_in * s_in, minlength=n_bins) / safe
    fraction = np.bincount(index, weights=w_in * y_in, minlength=n_bins) / safe
    spread = np.bincount(index, weights=(w_in * (y_in - fraction[index])) ** 2, minlength=n_bins)
    error = np.sqrt(spread) / safe
    return CalibrationCurve(
        mean_score=mean_score[filled],
        signal_fraction=fraction[filled],
        signal_fraction_error=error[filled],
        sum_of_weights=total[filled],
        entries=entries[filled],
        bin_edges=edges,
        bin_index=filled,
    )


# ------------------------------------------------------------------------------------------
# Several classes and regressions: one-vs-rest ROC, AUC and rejection per class, the confusion
# matrix, and the resolution and bias of a regression.

__all__ += [
    "confusion_matrix",
    "multiclass_summary",
    "one_vs_rest_auc",
    "one_vs_rest_rejection",
    "regression_summary",
    "weighted_quantile",
]


def _class_probabilities(
    probabilities: Any, label: Any, weight: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(probabilities (n, k), integer labels (n,), weights (n,)) checked."""
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise InputError(f"probabilities must have shape (events, classes) with >= 2 classes, got {p.shape}")
    bad = np.argwhere(~np.isfinite(p))
    if bad.size:
        raise InputError(f"probabilities[{bad[0][0]}, {bad[0][1]}] is not finite")
    y = _vec(label, "label", p.shape[0])
    wrong = np.flatnonzero((y != np.round(y)) | (y < 0) | (y >= p.shape[1]))
    if wrong.size:
        raise InputError(f"label[{wrong[0]}] = {y[wrong[0]]} is not a class index in [0, {p.shape[1]})")
    w = _weights(weight, p.shape[0], "weight")
    return p, y.astype(np.int64), w


def one_vs_rest_auc(
    probabilities: npt.ArrayLike, label: npt.ArrayLike, weight: Optional[npt.ArrayLike] = None
) -> np.ndarray:
    """The AUC of each class against all the others, scored by its own probability column:
    ``auc[c] = roc_auc(probabilities[:, c], label == c)`` (NaN for a class without events),
    as ``sklearn.metrics.roc_auc_score(..., multi_class="ovr", average=None)``."""
    p, y, w = _class_probabilities(probabilities, label, weight)
    return np.array([roc_auc(p[:, c], y == c, w) for c in range(p.shape[1])])


def one_vs_rest_rejection(
    probabilities: npt.ArrayLike,
    label: npt.ArrayLike,
    signal_efficiency: float = 0.5,
    weight: Optional[npt.ArrayLike] = None,
) -> np.ndarray:
    """For each class ``c``: the rejection 1/eps of all other classes together at the cut on
    ``probabilities[:, c]`` keeping ``signal_efficiency`` of class ``c`` (the cut convention of
    :func:`background_rejection`; NaN when class ``c`` or the rest has no events)."""
    p, y, w = _class_probabilities(probabilities, label, weight)
    out = np.full(p.shape[1], np.nan)
    for c in range(p.shape[1]):
        mine = y == c
        if mine.any() and (~mine).any() and w[mine].sum() > 0 and w[~mine].sum() > 0:
            out[c] = background_rejection(p[mine, c], p[~mine, c], signal_efficiency, w[mine], w[~mine])
    return out


def confusion_matrix(
    label: npt.ArrayLike,
    predicted: npt.ArrayLike,
    n_classes: Optional[int] = None,
    weight: Optional[npt.ArrayLike] = None,
    normalize: Optional[str] = None,
) -> np.ndarray:
    """``matrix[true, predicted]``: the (weighted) number of events of class ``true`` assigned to
    class ``predicted``. ``predicted`` is a class index per event, or class probabilities
    ``(n, k)`` (then the most probable class). ``normalize``: ``None`` (sums of weights),
    ``"true"`` (each row sums to 1: the fraction of each true class assigned to each class),
    ``"pred"`` (each column sums to 1) or ``"all"``; as :func:`sklearn.metrics.confusion_matrix`
    with ``labels=range(n_classes)``. Empty rows or columns stay 0 when normalised."""
    pred = np.asarray(predicted)
    if pred.ndim == 2:
        k_pred = pred.shape[1]
        pred = np.argmax(_class_probabilities(pred, np.zeros(pred.shape[0]), None)[0], axis=1)
    else:
        k_pred = None
    y = _vec(label, "label")
    pv = _vec(pred, "predicted", y.size)
    k = (
        int(n_classes)
        if n_classes is not None
        else (k_pred or int(max(y.max(initial=-1), pv.max(initial=-1))) + 1)
    )
    for name, v in (("label", y), ("predicted", pv)):
        wrong = np.flatnonzero((v != np.round(v)) | (v < 0) | (v >= k))
        if wrong.size:
            raise InputError(f"{name}[{wrong[0]}] = {v[wrong[0]]} is not a class index in [0, {k})")
    w = np.ones(y.size) if weight is None else _vec(weight, "weight", y.size)
    m = np.bincount(y.astype(np.int64) * k + pv.astype(np.int64), weights=w, minlength=k * k).reshape(k, k)
    if normalize is None:
        return m
    if normalize == "true":
        total = m.sum(axis=1, keepdims=True)
    elif normalize == "pred":
        total = m.sum(axis=0, keepdims=True)
    elif normalize == "all":
        total = np.array(m.sum())
    else:
        raise InputError(f"normalize must be None, 'true', 'pred' or 'all', got {normalize!r}")
    return np.divide(m, total, out=np.zeros_like(m), where=total != 0)


def multiclass_summary(
    probabilities: npt.ArrayLike,
    label: npt.ArrayLike,
    classes: Optional[list[str]] = None,
    weight: Optional[npt.ArrayLike] = None,
    signal_efficiency: float = 0.5,
) -> dict[str, Any]:
    """The figures of merit of an ``n``-class classifier: ``accuracy`` (weighted fraction of
    events whose most probable class is the true one), ``confusion_matrix`` (rows: true class,
    normalised to 1), and per class (by name, default ``class_<i>``) the one-vs-rest ``auc`` and
    ``rejection`` at ``signal_efficiency``."""
    p, y, w = _class_probabilities(probabilities, label, weight)
    names = [f"class_{i}" for i in range(p.shape[1])] if classes is None else [str(c) for c in classes]
    if len(names) != p.shape[1]:
        raise InputError(f"{len(names)} class names for {p.shape[1]} probability columns")
    auc = one_vs_rest_auc(p, y, w)
    rejection = one_vs_rest_rejection(p, y, signal_efficiency, w)
    predicted = np.argmax(p, axis=1)
    return {
        "accuracy": float(w[predicted == y].sum() / w.sum()),
        "confusion_matrix": confusion_matrix(y, predicted, p.shape[1], w, normalize="true").tolist(),
        "per_class": {
            n: {"auc": float(auc[i]), f"rejection_at_{signal_efficiency:g}": float(rejection[i])}
            for i, n in enumerate(names)
        },
    }


def weighted_quantile(values: npt.ArrayLike, q: Any, weight: Optional[npt.ArrayLike] = None) -> Any:
    """Quantile(s) ``q`` in [0, 1] of ``values`` with event weights (>= 0), interpolated
    linearly between the sorted values placed at their cumulative weight before them, divided
    by the total less the last event's weight: with equal weights exactly
    ``numpy.quantile(values, q)`` (its default linear method), and unchanged when all weights
    are scaled. Events of weight 0 are left out."""
    v = _vec(values, "values")
    if v.size == 0:
        raise InputError("values is empty")
    qa = np.asarray(q, dtype=np.float64)
    if np.any((qa < 0) | (qa > 1)) or not np.all(np.isfinite(qa)):
        raise InputError(f"quantiles must lie in [0, 1], got {q!r}")
    if weight is None:
        return np.quantile(v, qa)
    w = _weights(weight, v.size, "weight")
    order = np.argsort(v, kind="stable")
    v, w = v[order], w[order]
    keep = w > 0
    v, w = v[keep], w[keep]
    if v.size == 1:
        return np.full(qa.shape, v[0]) if qa.ndim else float(v[0])
    before = np.cumsum(w) - w
    position = before / before[-1]
    return np.interp(qa, position, v)


def regression_summary(
    prediction: npt.ArrayLike, truth: npt.ArrayLike, weight: Optional[npt.ArrayLike] = None
) -> dict[str, float]:
    """How well a regression reproduces ``truth``, from the residual ``r = prediction - truth``:
    ``bias`` (weighted mean of r), ``resolution`` (weighted standard deviation of r), ``rmse``,
    ``median_bias`` and ``robust_resolution`` (half the 16-84 % inter-quantile range of r: the
    Gaussian σ, insensitive to tails), and the same five for the relative residual
    ``r / truth`` (``relative_*``, over events with ``truth != 0``; NaN when there are none)."""
    p = _vec(prediction, "prediction")
    t = _vec(truth, "truth", p.size)
    w = _weights(weight, p.size, "weight")

    def five(r: np.ndarray, ww: np.ndarray) -> dict[str, float]:
        if r.size == 0 or not ww.sum() > 0:
            return dict.fromkeys(
                ("bias", "resolution", "rmse", "median_bias", "robust_resolution"), float("nan")
            )
        mean = float(np.average(r, weights=ww))
        q16, q50, q84 = weighted_quantile(r, [0.16, 0.5, 0.84], ww)
        return {
            "bias": mean,
            "resolution": float(np.sqrt(np.average((r - mean) ** 2, weights=ww))),
            "rmse": float(np.sqrt(np.average(r**2, weights=ww))),
            "median_bias": float(q50),
            "robust_resolution": float(0.5 * (q84 - q16)),
        }

    out = five(p - t, w)
    nonzero = t != 0
    out.update(
        {f"relative_{k}": v for k, v in five((p[nonzero] - t[nonzero]) / t[nonzero], w[nonzero]).items()}
    )
    return out
