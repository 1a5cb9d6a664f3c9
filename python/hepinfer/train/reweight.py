"""Classifier-based reweighting and the parameterised-classifier helper.

Reweighting (the likelihood-ratio trick): a classifier ``f`` trained to separate sample 1
(label 0) from sample 2 (label 1) approximates ``f = p2 / (p1 + p2)``, so sample-1 events weighted
by ``w = f / (1 - f)`` (times the ratio of the samples' total weights) follow sample 2. Weights
are cross-fitted (each event gets its weight from a classifier that did not see it) and clipped.
:func:`closure_check` compares the weighted sample 1 with sample 2 feature by feature.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

__all__ = ["ClosureResult", "ReweightResult", "closure_check", "parameterise", "reweight"]


@dataclass
class ReweightResult:
    weights: np.ndarray
    """New weights for sample 1 (its input weights times the density ratio)."""
    ratio: np.ndarray
    """The clipped density ratio f / (1 - f) · Σw1 / Σw2 per sample-1 event."""
    n_clipped: int
    boosters: list


def reweight(
    sample1: Any,
    sample2: Any,
    weight1: Any = None,
    weight2: Any = None,
    *,
    n_splits: int = 2,
    max_weight: float = 20.0,
    n_trees: int = 200,
    max_depth: int = 3,
    learning_rate: float = 0.1,
    min_child_weight: float = 20.0,
    seed: int = 0,
    n_threads: Optional[int] = None,
) -> ReweightResult:
    """Weights that make ``sample1`` (``(n1, f)``) look like ``sample2`` (``(n2, f)``).

    An xgboost classifier per split (``n_splits`` ≥ 2 folds, cross-fitted) gives
    ``w = f / (1 - f)``, normalised so that the reweighted sample 1 keeps the total weight of
    sample 1's input weights, clipped to ``max_weight`` times the mean weight and normalised again.
    """
    import xgboost as xgb

    x1 = np.asarray(sample1, dtype=np.float64)
    x2 = np.asarray(sample2, dtype=np.float64)
    if x1.ndim == 1:
        x1 = x1[:, None]
    if x2.ndim == 1:
        x2 = x2[:, None]
    if x1.ndim != 2 or x2.ndim != 2 or x1.shape[1] != x2.shape[1]:
        raise ValueError(
            f"sample1 {x1.shape} and sample2 {x2.shape} must be (events, features) with equal features"
        )
    if len(x1) < n_splits or len(x2) < n_splits:
        raise ValueError("each sample needs at least n_splits events")
    if n_splits < 2:
        raise ValueError(f"n_splits must be >= 2 (cross-fitting), got {n_splits}")
    w1 = np.ones(len(x1)) if weight1 is None else np.asarray(weight1, dtype=np.float64).reshape(-1)
    w2 = np.ones(len(x2)) if weight2 is None else np.asarray(weight2, dtype=np.float64).reshape(-1)
    if len(w1) != len(x1) or len(w2) != len(x2):
        raise ValueError("weights must have one entry per event")
    rng = np.random.default_rng(seed)
    fold1 = rng.permutation(len(x1)) % n_splits
    fold2 = rng.permutation(len(x2)) % n_splits
    # balance the two samples' total weights in training so that f/(1-f) is the density ratio
    scale2 = w1.sum() / w2.sum()
    ratio = np.empty(len(x1))
    boosters = []
    params = {
        "objective": "binary:logistic",
        "max_depth": max_depth,
        "eta": learning_rate,
        "min_child_weight": min_child_weight,
        "seed": seed,
        "tree_method": "hist",
    }
    if n_threads is not None:
        params["nthread"] = n_threads
    for k in range(n_splits):
        t1, t2 = fold1 != k, fold2 != k
        X = np.concatenate([x1[t1], x2[t2]])
        y = np.concatenate([np.zeros(t1.sum()), np.ones(t2.sum())])
        w = np.concatenate([w1[t1], w2[t2] * scale2])
        booster = xgb.train(params, xgb.DMatrix(X, label=y, weight=w), num_boost_round=n_trees)
        boosters.append(booster)
        f = booster.predict(xgb.DMatrix(x1[~t1]))
        f = np.clip(f, 1e-7, 1 - 1e-7)
        ratio[~t1] = f / (1 - f)
    # keep the total weight of sample 1
    ratio *= w1.sum() / (w1 * ratio).sum()
    cap = max_weight * np.average(ratio, weights=np.abs(w1))
    n_clipped = int((ratio > cap).sum())
    ratio = np.minimum(ratio, cap)
    ratio *= w1.sum() / (w1 * ratio).sum()  # the total weight again, after clipping
    return ReweightResult(w1 * ratio, ratio, n_clipped, boosters)


@dataclass
class ClosureResult:
    chi2: np.ndarray
    """Per feature: Σ over bins of (h1 - h2)² / (σ1² + σ2²), histograms normalised to unit area."""
    ndf: np.ndarray
    """Per feature: number of bins used minus one."""
    ks: np.ndarray
    """Per feature: weighted Kolmogorov–Smirnov distance max |CDF1 - CDF2|."""

    @property
    def chi2_per_ndf(self) -> np.ndarray:
        return self.chi2 / np.maximum(self.ndf, 1)


def closure_check(
    sample1: Any, weight1: Any, sample2: Any, weight2: Any = None, *, bins: int = 20
) -> ClosureResult:
    """Compare weighted sample 1 with sample 2, feature by feature: χ² of the unit-normalised
    histograms (bins: quantiles of the pooled sample; errors from Σw²) and the weighted KS
    distance."""
    x1 = np.asarray(sample1, dtype=np.float64)
    x2 = np.asarray(sample2, dtype=np.float64)
    x1 = x1[:, None] if x1.ndim == 1 else x1
    x2 = x2[:, None] if x2.ndim == 1 else x2
    w1 = np.ones(len(x1)) if weight1 is None else np.asarray(weight1, dtype=np.float64).reshape(-1)
    w2 = np.ones(len(x2)) if weight2 is None else np.asarray(weight2, dtype=np.float64).reshape(-1)
    chi2, ndf, ks = [], [], []
    for j in range(x1.shape[1]):
        a, b = x1[:, j], x2[:, j]
        edges = np.unique(np.quantile(np.concatenate([a, b]), np.linspace(0, 1, bins + 1)))
        if len(edges) < 2:
            edges = np.array([edges[0] - 0.5, edges[0] + 0.5])
        edges[0], edges[-1] = -np.inf, np.inf
        h1, _ = np.histogram(a, edges, weights=w1)
        s1, _ = np.histogram(a, edges, weights=w1**2)
        h2, _ = np.histogram(b, edges, weights=w2)
        s2, _ = np.histogram(b, edges, weights=w2**2)
        n1, n2 = h1.sum(), h2.sum()
        var = s1 / n1**2 + s2 / n2**2
        used = var > 0
        chi2.append(float((((h1 / n1 - h2 / n2) ** 2)[used] / var[used]).sum()))
        ndf.append(int(used.sum()) - 1)
        grid = np.sort(np.concatenate([a, b]))
        o1, o2 = np.argsort(a), np.argsort(b)
        c1 = np.concatenate([[0.0], np.cumsum(w1[o1])]) / n1
        c2 = np.concatenate([[0.0], np.cumsum(w2[o2])]) / n2
        f1 = c1[np.searchsorted(a[o1], grid, side="right")]
        f2 = c2[np.searchsorted(b[o2], grid, side="right")]
        ks.append(float(np.max(np.abs(f1 - f2))))
    return ClosureResult(np.array(chi2), np.array(ndf), np.array(ks))


def parameterise(
    features: Any, parameter: Any, label: Any, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Inputs of a parameterised classifier (Baldi et al. 2016): the physics parameter θ as an
    extra last column. Signal events keep their own θ; background events get θ drawn at random
    from the signal events' θ values (so θ alone does not separate the classes).

    Returns ``(features with θ appended, θ per event)``.
    """
    x = np.asarray(features, dtype=np.float64)
    x = x[:, None] if x.ndim == 1 else x
    theta = np.asarray(parameter, dtype=np.float64).reshape(-1).copy()
    y = np.asarray(label).reshape(-1) > 0.5
    if len(theta) != len(x) or len(y) != len(x):
        raise ValueError(
            f"features ({len(x)}), parameter ({len(theta)}) and label ({len(y)}) need the same length"
        )
    if not y.any():
        raise ValueError("parameterise needs signal events (label 1) to draw θ from")
    rng = np.random.default_rng(seed)
    theta[~y] = rng.choice(theta[y], size=int((~y).sum()), replace=True)
    return np.column_stack([x, theta]), theta
