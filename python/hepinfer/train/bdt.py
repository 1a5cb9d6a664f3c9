"""Boosted decision trees through xgboost, with HEP conventions.

* Event weights everywhere (negative weights allowed in the sums).
* Binary classifiers (``binary:logistic``), ``n``-class classifiers (``multi:softprob``: one
  probability per class) and regressions (``reg:squarederror``): ``task=``.
* Class re-balancing: signal weights scaled so that Σw(signal) = Σw(background) (with several
  classes: every class scaled to the Σw of class 0).
* A deterministic train / validation / test split by event number (``event % k``), so the same
  event always lands in the same fold whatever the file order.
* Early stopping on the validation fold; the saved model holds exactly the best iteration's trees.
* Feature importance (gain, weight, cover ...) by feature name.
* Saved as xgboost JSON and checked with :class:`hepinfer.Forest` right after saving
  (:func:`hepinfer.export.export_forest`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import numpy as np

from hepinfer.export import output_column_names

__all__ = [
    "BDTResult",
    "rebalance_classes",
    "rebalance_weights",
    "split_by_event_number",
    "train_bdt",
    "train_bdt_streamed",
]

TASKS = ("binary", "multiclass", "regression")


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


def class_labels(label: Any, n_classes: Optional[int] = None, what: str = "label") -> tuple[np.ndarray, int]:
    """``(label as int64, n_classes)`` for a class-index label: integers ``0 .. C-1``, ``C >= 2``
    (``n_classes`` given: the labels must lie below it; ``None``: ``C = max(label) + 1``).
    Raises ``ValueError`` naming the first bad entry."""
    y = np.asarray(label).reshape(-1)
    if y.dtype.kind == "b":
        y = y.astype(np.int64)
    if y.dtype.kind not in "iuf":
        raise ValueError(f"{what} must hold class indices 0, 1, ..., got dtype {y.dtype}")
    bad = (
        np.flatnonzero(~np.isfinite(y) | (y != np.round(y)) | (y < 0))
        if y.dtype.kind == "f"
        else np.flatnonzero(y < 0)
    )
    if bad.size:
        raise ValueError(f"{what}[{int(bad[0])}] = {y[bad[0]]} is not a class index 0, 1, ...")
    y = y.astype(np.int64)
    top = int(y.max()) + 1 if y.size else 0
    if n_classes is None:
        n_classes = max(top, 2)
    elif top > n_classes:
        bad_index = int(np.flatnonzero(y >= n_classes)[0])
        raise ValueError(f"{what}[{bad_index}] = {y[bad_index]} but there are only {n_classes} classes")
    if n_classes < 2:
        raise ValueError(f"a classifier needs at least 2 classes, got {n_classes}")
    return y, int(n_classes)


def rebalance_classes(label: Any, weight: Any = None, n_classes: Optional[int] = None) -> np.ndarray:
    """Event weights with every class ``c >= 1`` scaled so that its Σw equals that of class 0
    (for two classes the same as :func:`rebalance_weights`).

    Raises ``ValueError`` when a class is missing or its weights sum to zero or less.
    """
    y, k = class_labels(label, n_classes)
    w = np.ones(len(y)) if weight is None else np.asarray(weight, dtype=np.float64).reshape(-1).copy()
    if len(w) != len(y):
        raise ValueError(f"weight has {len(w)} entries, label {len(y)}")
    sums = np.bincount(y, weights=w, minlength=k)
    if not np.all(sums > 0):
        c = int(np.flatnonzero(~(sums > 0))[0])
        raise ValueError(f"re-balancing needs a positive weight sum for every class; class {c} has {sums[c]}")
    return w * (sums[0] / sums)[y]


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
    task: str = "binary"
    """``"binary"``, ``"multiclass"`` or ``"regression"``."""
    classes: Optional[list[str]] = None
    """The class names in label order (classifiers); stored in the saved JSON."""

    @property
    def output_columns(self) -> list[str]:
        """What each column of :meth:`predict` is: ``score_<class>`` per class (multiclass),
        ``score`` (binary) or ``prediction`` (regression)."""
        if self.task == "multiclass":
            return output_column_names(self.classes or [])
        return ["prediction"] if self.task == "regression" else ["score"]

    def predict(self, X: Any) -> np.ndarray:
        """Signal probability ``(n,)`` (binary), class probabilities ``(n, n_classes)``
        (multiclass) or the prediction ``(n,)`` (regression)."""
        import xgboost as xgb

        return self.booster.predict(xgb.DMatrix(np.asarray(X), feature_names=self.feature_names))

    def save(self, path: Union[str, "os.PathLike[str]"], X_check: Any = None) -> str:
        """Save as xgboost JSON and verify with :class:`hepinfer.Forest` (see
        :func:`hepinfer.export.export_forest`); the class names and output columns go into the
        file's attributes, where :func:`hepinfer.score` finds them."""
        from hepinfer.export import export_forest

        return export_forest(
            self.booster, path, X_check, output_columns=self.output_columns, classes=self.classes
        )


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
    task: str = "binary",
    classes: Optional[Sequence[str]] = None,
) -> BDTResult:
    """Train an xgboost BDT: a binary classifier (``task="binary"``, ``binary:logistic``, label
    0/1), an ``n``-class classifier (``"multiclass"``, ``multi:softprob``, label ``0 .. n-1``;
    ``classes`` names them, default ``class_0 ...``, and sets ``n`` when some class is absent)
    or a regression (``"regression"``, ``reg:squarederror``, label = the target value).

    ``X`` is ``(n_events, n_features)`` (numpy or a DataFrame, whose columns name the features);
    ``event_number`` defaults to the row index. Classifier weights are re-balanced on the
    training and validation folds when ``rebalance`` (:func:`rebalance_classes`); the validation
    fold drives early stopping (``early_stopping_rounds = 0`` turns it off) on the log-loss
    (``mlogloss``, ``rmse`` for regressions). ``params`` are passed to xgboost on top.
    """
    import xgboost as xgb

    if feature_names is None and hasattr(X, "columns"):
        feature_names = [str(c) for c in X.columns]
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (events, features), got shape {X.shape}")
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}; got {task!r}")
    y = np.asarray(label, dtype=np.float64).reshape(-1)
    if len(y) != len(X):
        raise ValueError(f"label has {len(y)} entries, X has {len(X)} rows")
    n_classes = 1
    if task == "binary" and not np.all((y == 0) | (y == 1)):
        raise ValueError("label must be 0 (background) or 1 (signal)")
    if task == "multiclass":
        y_int, n_classes = class_labels(y, None if classes is None else len(classes))
        y = y_int.astype(np.float64)
        classes = list(classes) if classes is not None else [f"class_{c}" for c in range(n_classes)]
    elif task == "regression" and not np.all(np.isfinite(y)):
        raise ValueError(
            f"label[{int(np.flatnonzero(~np.isfinite(y))[0])}] (the regression target) is not finite"
        )
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

    def balanced(part: np.ndarray) -> np.ndarray:
        if not rebalance or task == "regression":
            return w[part]
        if task == "binary":
            return rebalance_weights(y[part], w[part])
        return rebalance_classes(y[part], w[part], n_classes)

    w_train, w_val = balanced(train), balanced(validation)
    dtrain = xgb.DMatrix(X[train], label=y[train], weight=w_train, feature_names=names)
    dval = xgb.DMatrix(X[validation], label=y[validation], weight=w_val, feature_names=names)
    p = _booster_params(task, n_classes, max_depth, learning_rate, subsample, seed, n_threads, params)
    booster, best, evals_result, importance = _boost(
        p, dtrain, dval, names, n_trees, early_stopping_rounds, verbose
    )
    return BDTResult(
        booster,
        names,
        best,
        evals_result,
        (train, validation, test),
        importance,
        task=task,
        classes=list(classes) if task == "multiclass" and classes is not None else None,
    )


def _booster_params(
    task: str,
    n_classes: int,
    max_depth: int,
    learning_rate: float,
    subsample: float,
    seed: int,
    n_threads: Optional[int],
    params: Optional[dict[str, Any]],
) -> dict[str, Any]:
    objective, metrics = {
        "binary": ("binary:logistic", ["auc", "logloss"]),  # early stopping watches the last one
        "multiclass": ("multi:softprob", ["merror", "mlogloss"]),
        "regression": ("reg:squarederror", ["rmse"]),
    }[task]
    p: dict[str, Any] = {
        "objective": objective,
        "eval_metric": metrics,
        "max_depth": max_depth,
        "eta": learning_rate,
        "subsample": subsample,
        "seed": seed,
        "tree_method": "hist",
    }
    if task == "multiclass":
        p["num_class"] = n_classes
    if n_threads is not None:
        p["nthread"] = n_threads
    p.update(params or {})
    return p


def _boost(
    p: dict[str, Any],
    dtrain: Any,
    dval: Any,
    names: list[str],
    n_trees: int,
    early_stopping_rounds: int,
    verbose: bool,
) -> tuple[Any, int, dict[str, dict[str, list[float]]], dict[str, dict[str, float]]]:
    """xgb.train with the validation fold for early stopping; (booster cut at the best
    iteration, best iteration, evals_result, importance)."""
    import xgboost as xgb

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
    return booster, best, evals_result, importance


#: (X, label, weight) of one chunk, as :func:`train_bdt_streamed` reads them
Chunk = tuple[np.ndarray, np.ndarray, np.ndarray]


def train_bdt_streamed(
    train_chunks: Callable[[], Iterator[Chunk]],
    validation_chunks: Callable[[], Iterator[Chunk]],
    *,
    feature_names: Sequence[str],
    cache_prefix: str,
    task: str = "binary",
    classes: Optional[Sequence[str]] = None,
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
    """:func:`train_bdt` on a sample that does not fit in memory: ``train_chunks()`` and
    ``validation_chunks()`` yield the (already re-balanced) training and validation folds chunk
    by chunk, every time they are called; xgboost reads them through a :class:`xgboost.DataIter`
    into an :class:`xgboost.ExtMemQuantileDMatrix` (quantised pages cached on disk under
    ``cache_prefix``), so no more than one chunk of raw values is held at a time. Binary and
    multi-class classifiers (``classes``: the ordered class names, labels 0..n-1) and
    regressions (``task``); ``BDTResult.split`` is empty (the folds were chosen chunk by chunk by
    the caller)."""
    import xgboost as xgb

    if task not in ("binary", "multiclass", "regression"):
        raise ValueError(f"a streamed BDT trains a classifier or a regression, not {task!r}")
    if task == "multiclass" and (classes is None or len(classes) < 2):
        raise ValueError("a streamed multi-class BDT needs the class names (classes=[...], two or more)")
    names = list(feature_names)

    class Chunks(xgb.DataIter):
        def __init__(self, make: Callable[[], Iterator[Chunk]], prefix: str) -> None:
            self._make = make
            self._it: Optional[Iterator[Chunk]] = None
            self.n_events = 0
            super().__init__(cache_prefix=prefix)

        def next(self, input_data: Callable[..., None]) -> bool:
            if self._it is None:
                self._it = self._make()
                self.n_events = 0
            for X, y, w in self._it:
                if len(y):
                    self.n_events += len(y)
                    input_data(data=X, label=y, weight=w, feature_names=names)
                    return True
            return False

        def reset(self) -> None:
            self._it = None

    train_iter = Chunks(train_chunks, cache_prefix + "-train")
    dtrain = xgb.ExtMemQuantileDMatrix(train_iter, nthread=n_threads)
    val_iter = Chunks(validation_chunks, cache_prefix + "-validation")
    dval = xgb.ExtMemQuantileDMatrix(val_iter, ref=dtrain, nthread=n_threads)
    if not train_iter.n_events or not val_iter.n_events:
        raise ValueError("the training or validation fold is empty; give more events or fewer folds")
    n_classes = len(classes) if task == "multiclass" and classes is not None else 1
    p = _booster_params(task, n_classes, max_depth, learning_rate, subsample, seed, n_threads, params)
    booster, best, evals_result, importance = _boost(
        p, dtrain, dval, names, n_trees, early_stopping_rounds, verbose
    )
    empty = np.zeros(0, dtype=bool)
    return BDTResult(
        booster,
        names,
        best,
        evals_result,
        (empty, empty, empty),
        importance,
        task=task,
        classes=list(classes) if task == "multiclass" and classes is not None else None,
    )
