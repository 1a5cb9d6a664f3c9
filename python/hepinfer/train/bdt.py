"""Boosted decision trees through xgboost, with HEP conventions.

* Event weights everywhere (negative weights allowed in the sums).
* Class re-balancing: signal weights scaled so that Σw(signal) = Σw(background).
* A deterministic train / validation / test split by event number (``event % k``), so the same
  event always lands in the same fold whatever the file order.
* Early stopping on the validation fold; the saved model holds exactly the best iteration's trees.
* Feature importance (gain, weight, cover ...) by feature name.
* Saved as xgboost JSON and checked with :class:`hepinfer.Forest` right after saving
  (:func:`hepinfer.export.export_forest`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import numpy as np

__all__ = ["BDTResult", "rebalance_weights", "split_by_event_number", "train_bdt"]


def split_by_event_number(
    event_number: Any, n_folds: int = 5, *, validation_fold: int = 0, test_fold: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boolean masks (train, validation, test): ``event % n_folds == test_fold`` is the test
    sample, ``== validation_fold`` the validation sample, the rest is for training."""
    ev = np.asarray(event_number)
    if ev.ndim != 1:
        raise ValueError(f"event_number must be 1-D, got shape {ev.shape}")
    if ev.dtype.kind not in "iu":
        if ev.dtype.kind == "f" and np.all(np.isfinite(ev)) and np.all(ev == np.round(ev)):
            ev = ev.astype(np.int64)
        else:
            raise ValueError(f"event_number must hold integers, got dtype {ev.dtype}")
    if n_folds < 3:
        raise ValueError(f"n_folds must be >= 3 (train, validation, test), got {n_folds}")
    if not (0 <= validation_fold < n_folds and 0 <= test_fold < n_folds) or validation_fold == test_fold:
        raise ValueError(
            f"validation_fold ({validation_fold}) and test_fold ({test_fold}) must be different folds in [0, {n_folds})"
        )
    fold = np.mod(ev, n_folds)
    test = fold == test_fold
    validation = fold == validation_fold
    return ~(test | validation), validation, test


def rebalance_weights(label: Any, weight: Any = None) -> np.ndarray:
    """Event weights with the signal (label 1) scaled so that Σw(signal) = Σw(background).

    Raises ``ValueError`` when either class is missing or its weights sum to zero or less.
    """
    y = np.asarray(label).reshape(-1)
    w = np.ones(len(y)) if weight is None else np.asarray(weight, dtype=np.float64).reshape(-1).copy()
    if len(w) != len(y):
        raise ValueError(f"weight has {len(w)} entries, label {len(y)}")
    sig = y > 0.5
    ws, wb = w[sig].sum(), w[~sig].sum()
    if not (ws > 0 and wb > 0):
        raise ValueError(
            f"re-balancing needs positive weight sums for both classes (signal {ws}, background {wb})"
        )
    w[sig] *= wb / ws
    return w


@dataclass
class BDTResult:
    """What :func:`train_bdt` returns."""

    booster: Any
    """The xgboost Booster, cut at the best iteration."""
    feature_names: list[str]
    best_iteration: int
    evals_result: dict[str, dict[str, list[float]]]
    split: tuple[np.ndarray, np.ndarray, np.ndarray]
    """Boolean masks (train, validation, test) used."""
    importance: dict[str, dict[str, float]] = field(default_factory=dict)
    """``importance[type][feature]`` for type in gain, weight, cover, total_gain, total_cover
    (features never used get 0)."""

    def predict(self, X: Any) -> np.ndarray:
        import xgboost as xgb

        return self.booster.predict(xgb.DMatrix(np.asarray(X), feature_names=self.feature_names))

    def save(self, path: Union[str, "os.PathLike[str]"], X_check: Any = None) -> str:
        """Save as xgboost JSON and verify with :class:`hepinfer.Forest` (see
        :func:`hepinfer.export.export_forest`)."""
        from hepinfer.export import export_forest

        return export_forest(self.booster, path, X_check)


def train_bdt(
    X: Any,
    label: Any,
    weight: Any = None,
    event_number: Any = None,
    *,
    feature_names: Optional[Sequence[str]] = None,
    n_folds: int = 5,
    validation_fold: int = 0,
    test_fold: int = 1,
    rebalance: bool = True,
    n_trees: int = 500,
    max_depth: int = 6,
    learning_rate: float = 0.1,
    subsample: float = 1.0,
    early_stopping_rounds: int = 20,
    seed: int = 0,
    n_threads: Optional[int] = None,
    params: Optional[dict[str, Any]] = None,
    verbose: bool = False,
) -> BDTResult:
    """Train a binary xgboost classifier (``binary:logistic``).

    ``X`` is ``(n_events, n_features)`` (numpy or a DataFrame, whose columns name the features);
    ``event_number`` defaults to the row index. Weights are re-balanced on the training and
    validation folds when ``rebalance``; the validation fold drives early stopping
    (``early_stopping_rounds = 0`` turns it off). ``params`` are passed to xgboost on top.
    """
    import xgboost as xgb

    if feature_names is None and hasattr(X, "columns"):
        feature_names = [str(c) for c in X.columns]
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (events, features), got shape {X.shape}")
    y = np.asarray(label, dtype=np.float64).reshape(-1)
    if len(y) != len(X):
        raise ValueError(f"label has {len(y)} entries, X has {len(X)} rows")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("label must be 0 (background) or 1 (signal)")
    w = np.ones(len(y)) if weight is None else np.asarray(weight, dtype=np.float64).reshape(-1)
    if len(w) != len(y):
        raise ValueError(f"weight has {len(w)} entries, X has {len(X)} rows")
    names = list(feature_names) if feature_names is not None else [f"f{i}" for i in range(X.shape[1])]
    if len(names) != X.shape[1]:
        raise ValueError(f"{len(names)} feature names for {X.shape[1]} columns")
    ev = np.arange(len(y)) if event_number is None else event_number
    train, validation, test = split_by_event_number(
        ev, n_folds, validation_fold=validation_fold, test_fold=test_fold
    )
    if not train.any() or not validation.any():
        raise ValueError("the training or validation fold is empty; give more events or fewer folds")
    w_train = rebalance_weights(y[train], w[train]) if rebalance else w[train]
    w_val = rebalance_weights(y[validation], w[validation]) if rebalance else w[validation]
    dtrain = xgb.DMatrix(X[train], label=y[train], weight=w_train, feature_names=names)
    dval = xgb.DMatrix(X[validation], label=y[validation], weight=w_val, feature_names=names)
    p = {
        "objective": "binary:logistic",
        "eval_metric": ["auc", "logloss"],  # early stopping watches the last one
        "max_depth": max_depth,
        "eta": learning_rate,
        "subsample": subsample,
        "seed": seed,
        "tree_method": "hist",
    }
    if n_threads is not None:
        p["nthread"] = n_threads
    p.update(params or {})
    evals_result: dict[str, dict[str, list[float]]] = {}
    booster = xgb.train(
        p,
        dtrain,
        num_boost_round=n_trees,
        evals=[(dtrain, "train"), (dval, "validation")],
        early_stopping_rounds=early_stopping_rounds or None,
        evals_result=evals_result,
        verbose_eval=verbose,
    )
    best = (
        int(getattr(booster, "best_iteration", n_trees - 1))
        if early_stopping_rounds
        else booster.num_boosted_rounds() - 1
    )
    booster = booster[: best + 1]
    importance = {}
    for kind in ("gain", "weight", "cover", "total_gain", "total_cover"):
        scores = booster.get_score(importance_type=kind)
        importance[kind] = {name: float(scores.get(name, 0.0)) for name in names}  # type: ignore[arg-type]
    return BDTResult(booster, names, best, evals_result, (train, validation, test), importance)
