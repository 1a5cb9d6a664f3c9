"""Training on a sample larger than ``data.memory_budget``: the files are read chunk by chunk.

:func:`hepinfer.train.run` comes here when :func:`hepinfer.train.data.open_data` returns a
:class:`~hepinfer.train.data.StreamingData`. Every chunk is built by the same code as the
in-memory sample (expressions, labels, event numbers or row hashes), and its events are put into
folds by :func:`~hepinfer.train.bdt.split_by_event_number`, so each event lands in the same fold
as in memory. What is held at a time:

* a first pass counts the folds and gathers what training needs up front: the class weight sums
  of the training and validation folds (``training.rebalance``), the mean and standard deviation
  of the training inputs (the network's :class:`~hepinfer.train.nets.Standardize`) and of a
  regression target;
* networks (the MLP and the particle networks): every epoch reads the training fold again in
  pieces of :data:`SHUFFLE_CHUNKS` file chunks, and the :class:`~hepinfer.train.loop.Trainer`
  draws its mini-batches in random order within each piece (a shuffle buffer; the files' order
  is kept). ``training.batch_size = 0`` (full batch) is refused, and DisCo / MoDE penalties are
  computed per mini-batch. The validation fold is scored chunk by chunk each epoch, keeping only
  the outputs, labels, weights and masses (a few numbers per event, for a fifth of the sample
  with 5 folds), from which the loss and metrics are computed as in memory;
* BDTs: xgboost's external-memory :class:`xgboost.ExtMemQuantileDMatrix` reads the training and
  validation folds through a :class:`xgboost.DataIter` (quantised pages cached on disk in the
  output folder, removed afterwards);
* the test fold is scored chunk by chunk; its scores, labels, weights and masses (again a few
  numbers per event) feed the same metrics and plots as in memory.

Streams binary and multi-class classifiers and regressions; the autoencoder, the adversary and
parameterised classifiers (``data.parameter``) need the whole sample and are refused with a
:class:`~hepinfer.train.config.ConfigError`.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from hepinfer.train.bdt import split_by_event_number, train_bdt_streamed
from hepinfer.train.config import ConfigError, RunConfig
from hepinfer.train.data import StreamingData, TrainingData

__all__ = ["SHUFFLE_CHUNKS", "Survey", "survey", "train_streamed"]

#: file chunks gathered into one piece of the training fold (the shuffle buffer of networks)
SHUFFLE_CHUNKS = 4
_TRAIN, _VALIDATION, _TEST = 0, 1, 2


def _check_streamable(config: RunConfig, task: str) -> None:
    d, t, lo = config.data, config.training, config.loss
    why = ""
    if task not in ("binary", "multiclass", "regression"):
        why = f"{'an' if task[0] in 'aeiou' else 'a'} {task} run ({'model.kind' if task == 'anomaly' else 'loss.kind'} needs the whole sample)"
    elif d.parameter:
        why = "data.parameter (the parameterised classifier draws θ from all signal events)"
    elif lo.decorrelation == "adversary" and config.model.kind != "bdt":
        why = "loss.decorrelation = 'adversary' (it fits the whole training mass first)"
    elif t.batch_size == 0 and config.model.kind != "bdt":
        why = (
            "training.batch_size = 0 (full-batch training, e.g. full-batch DisCo, needs the whole sample "
            "in memory; give batch_size > 0: the decorrelation term is then computed per mini-batch)"
        )
    if why:
        raise ConfigError(
            f"data.memory_budget: the sample is larger than {d.memory_budget!r} and is streamed, which does not "
            f"support {why}; raise data.memory_budget or select fewer events (data.cut)"
        )


def _inputs(chunk: TrainingData) -> tuple[np.ndarray, ...]:
    """The model inputs of one chunk, as run() builds them for the whole sample."""
    if chunk.particles is not None:
        assert chunk.mask is not None
        return (chunk.particles, chunk.mask.astype(np.float32))
    return (np.nan_to_num(chunk.features, nan=-1.0).astype(np.float32),)


def _folds(config: RunConfig, chunk: TrainingData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d = config.data
    return split_by_event_number(
        chunk.event, d.n_folds, validation_fold=d.validation_fold, test_fold=d.test_fold
    )


@dataclass
class Survey:
    """What the first pass over the chunks finds: events per fold, class weight sums of the
    training and validation folds (``[fold][class]``: background, signal for a binary
    classifier; one column for a regression), sums for the mean and
    standard deviation of the training inputs (per input value; particles counted where the
    mask is set) and of the target."""

    n: list[int] = field(default_factory=lambda: [0, 0, 0])
    class_weight: np.ndarray = field(default_factory=lambda: np.zeros((2, 1)))
    class_names: list[str] = field(default_factory=list)
    feature_names: list[str] = field(default_factory=list)
    x: Optional[np.ndarray] = None  # (3, n_values): count, sum, sum of squares
    y: np.ndarray = field(default_factory=lambda: np.zeros(3))
    largest_chunk: int = 0
    n_chunks: int = 0

    def moments(self, which: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mean, standard deviation with n - 1, 1 where undefined or 0) from count/sum/squares."""
        n, s, q = which
        mean = s / np.maximum(n, 1)
        var = (q - n * mean**2) / np.maximum(n - 1, 1)
        std = np.sqrt(np.maximum(var, 0.0))
        return mean, np.where((n > 1) & (std > 0), std, 1.0)


def survey(config: RunConfig, data: StreamingData, task: str) -> Survey:
    """One pass over ``data`` (see :class:`Survey`)."""
    out = Survey(feature_names=data.feature_names)
    for chunk in data.chunks():
        out.n_chunks += 1
        out.largest_chunk = max(out.largest_chunk, len(chunk))
        if not out.class_names:
            out.class_names = list(chunk.class_names)
        if task == "binary" and chunk.label is not None and (chunk.label > 1).any():
            raise ConfigError(
                f"data.target: {config.data.target!r} reaches class index {int(chunk.label.max())}; a streamed "
                "run trains a binary classifier (0 = background, 1 = signal) or a regression"
            )
        folds = _folds(config, chunk)
        for f in range(3):
            out.n[f] += int(folds[f].sum())
        n_cols = {"binary": 2, "multiclass": max(len(out.class_names), 2)}.get(task, 1)
        for f in (_TRAIN, _VALIDATION):
            idx = class_index(chunk.target[folds[f]], n_cols)
            if len(idx) and int(idx.max()) >= out.class_weight.shape[1]:
                grow = int(idx.max()) + 1 - out.class_weight.shape[1]
                out.class_weight = np.pad(out.class_weight, ((0, 0), (0, grow)))
            if out.class_weight.shape[1] < n_cols:
                out.class_weight = np.pad(out.class_weight, ((0, 0), (0, n_cols - out.class_weight.shape[1])))
            out.class_weight[f] += np.bincount(
                idx, weights=chunk.weight[folds[f]], minlength=out.class_weight.shape[1]
            )
        train = folds[_TRAIN]
        inputs = _inputs(chunk)
        values = inputs[0][train]
        if len(inputs) == 2:
            values = values[inputs[1][train] > 0]
        values = values.reshape(-1, values.shape[-1]).astype(np.float64)
        if out.x is None:
            out.x = np.zeros((3, values.shape[1]))
        out.x += [np.full(values.shape[1], len(values)), values.sum(0), (values**2).sum(0)]
        y = chunk.target[train]
        out.y += [len(y), y.sum(), (y**2).sum()]
    if not out.n_chunks:
        raise ConfigError(f"data: no events selected from {', '.join(data.sources)}")
    if not out.n[_TRAIN] or not out.n[_VALIDATION]:
        raise ConfigError(
            "data.n_folds: the training or validation fold is empty; give more events or fewer folds"
        )
    return out


def class_index(target: np.ndarray, n_cols: int) -> np.ndarray:
    """The column of each event in the class factors: its class (signal = target > 0.5 for two
    columns), 0 for a regression (one column)."""
    if n_cols == 1:
        return np.zeros(len(target), dtype=np.int64)
    if n_cols == 2:
        return (target > 0.5).astype(np.int64)
    return target.astype(np.int64)


def stream_classes(config: RunConfig, task: str, found: Survey) -> Optional[list[str]]:
    """The ordered class names of a streamed multi-class run (as
    :func:`hepinfer.train.sample_classes` gives them for a sample in memory)."""
    if task != "multiclass":
        return None
    from hepinfer.train import sample_classes

    seen = np.flatnonzero(found.class_weight.sum(axis=0) != 0)
    return sample_classes(config, seen if len(seen) else np.zeros(1), found.class_names or None)


def _class_factors(config: RunConfig, task: str, found: Survey) -> np.ndarray:
    """Per fold (train, validation, test) and class: the factor on the weights that re-balances
    the classes to class 0's weight sum (:func:`~hepinfer.train.bdt.rebalance_classes` applied
    fold by fold; for two classes :func:`~hepinfer.train.bdt.rebalance_weights`)."""
    factors = np.ones((3, found.class_weight.shape[1]))
    if not config.training.rebalance or task not in ("binary", "multiclass"):
        return factors
    for f in (_TRAIN, _VALIDATION):
        sums = found.class_weight[f]
        if not np.all(sums > 0):
            c = int(np.flatnonzero(~(sums > 0))[0])
            raise ConfigError(
                f"training.rebalance: re-balancing needs a positive weight sum for every class; class {c} "
                f"has {sums[c]} in the {('training', 'validation')[f]} fold (set training.rebalance = false "
                "to train unbalanced)"
            )
        factors[f] = sums[0] / sums
    return factors


@dataclass
class _Rows:
    """The events of one fold of a few chunks: inputs, target, weight (re-balanced), mass."""

    inputs: tuple[np.ndarray, ...]
    target: np.ndarray
    weight: np.ndarray
    mass: Optional[np.ndarray]

    def __len__(self) -> int:
        return len(self.target)


def _rows(config: RunConfig, chunk: TrainingData, fold: int, factors: np.ndarray) -> _Rows:
    keep = _folds(config, chunk)[fold]
    target = chunk.target[keep]
    weight = chunk.weight[keep] * factors[fold][class_index(target, factors.shape[1])]
    return _Rows(
        tuple(a[keep] for a in _inputs(chunk)),
        target,
        weight,
        None if chunk.mass is None else chunk.mass[keep],
    )


def _fold_rows(
    config: RunConfig, data: StreamingData, fold: int, factors: np.ndarray, per: int
) -> Iterator[_Rows]:
    """The events of one fold, ``per`` chunks at a time (concatenated)."""
    buffer: list[_Rows] = []
    for chunk in data.chunks():
        rows = _rows(config, chunk, fold, factors)
        if len(rows):
            buffer.append(rows)
        if len(buffer) == per:
            yield _merge(buffer)
            buffer = []
    if buffer:
        yield _merge(buffer)


def _merge(parts: list[_Rows]) -> _Rows:
    if len(parts) == 1:
        return parts[0]
    return _Rows(
        tuple(np.concatenate([p.inputs[i] for p in parts]) for i in range(len(parts[0].inputs))),
        np.concatenate([p.target for p in parts]),
        np.concatenate([p.weight for p in parts]),
        None if parts[0].mass is None else np.concatenate([p.mass for p in parts if p.mass is not None]),
    )


def _describe(data: StreamingData, found: Survey) -> str:
    shape = f"{len(found.feature_names)} features"
    if data.plan.particle:
        shape = (
            f"{len(data.plan.particle)} values per particle, up to {data.config.data.max_particles} particles"
        )
    n = sum(found.n)
    return (
        f"{n} events streamed in {found.n_chunks} chunks of up to {found.largest_chunk} events (more than "
        f"data.memory_budget = {data.config.data.memory_budget!r} at {data.bytes_per_event} bytes per event) "
        f"from {len(data.sources)} input(s); {shape}"
    )


def train_streamed(
    config: RunConfig, task: str, data: StreamingData
) -> tuple[dict[str, Any], np.ndarray, tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]]:
    """Train on ``data`` chunk by chunk (see the module documentation); returns the summary so
    far (with ``streamed: true``), the test-fold scores and the test fold's (label, weight,
    mass) for :func:`hepinfer.train.run`'s metrics and plots."""
    _check_streamable(config, task)
    found = survey(config, data, task)
    factors = _class_factors(config, task, found)
    classes = stream_classes(config, task, found)
    summary: dict[str, Any] = {
        "config": config.to_dict(),
        "task": task,
        "n_train": found.n[_TRAIN],
        "n_validation": found.n[_VALIDATION],
        "n_test": found.n[_TEST],
        "data": _describe(data, found),
        "class_names": found.class_names,
        "streamed": True,
        "memory_budget": config.data.memory_budget,
        "bytes_per_event": data.bytes_per_event,
    }
    if classes is not None:
        summary.update(classes=classes, n_classes=len(classes))
    if config.model.kind == "bdt":
        score, test = _train_bdt(config, task, classes, data, factors, summary)
    else:
        score, test = _train_network(config, task, classes, data, found, factors, summary)
    return summary, score, test


def _test_fold(
    config: RunConfig, data: StreamingData, factors: np.ndarray, predict: Any, keep_inputs: int
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, Optional[np.ndarray]], tuple[np.ndarray, ...]]:
    """Score the test fold chunk by chunk: (scores, (label, weight, mass), the first
    ``keep_inputs`` test events' inputs)."""
    scores, targets, weights, masses = [], [], [], []
    kept: list[tuple[np.ndarray, ...]] = []
    n_kept = 0
    no_rebalance = np.ones_like(factors)  # test metrics use the events' own weights, as in memory
    for rows in _fold_rows(config, data, _TEST, no_rebalance, 1):
        scores.append(np.asarray(predict(rows.inputs)))
        targets.append(rows.target)
        weights.append(rows.weight)
        if rows.mass is not None:
            masses.append(rows.mass)
        if n_kept < keep_inputs:
            kept.append(tuple(a[: keep_inputs - n_kept] for a in rows.inputs))
            n_kept += len(kept[-1][0])
    if not scores:
        raise ConfigError("data.test_fold: the test fold is empty; give more events or fewer folds")
    example = tuple(np.concatenate([k[i] for k in kept]) for i in range(len(kept[0])))
    mass = np.concatenate(masses) if len(masses) == len(scores) else None
    return np.concatenate(scores), (np.concatenate(targets), np.concatenate(weights), mass), example


def _train_bdt(
    config: RunConfig,
    task: str,
    classes: Optional[list[str]],
    data: StreamingData,
    factors: np.ndarray,
    summary: dict[str, Any],
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]]:
    b = config.bdt

    def fold(f: int) -> Any:
        def chunks() -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
            for rows in _fold_rows(config, data, f, factors, 1):
                yield rows.inputs[0], rows.target, rows.weight

        return chunks

    cache = os.path.join(config.output, "xgboost-cache")
    try:
        result = train_bdt_streamed(
            fold(_TRAIN),
            fold(_VALIDATION),
            feature_names=data.feature_names,
            cache_prefix=cache,
            task=task,
            classes=classes,
            n_trees=b.n_trees,
            max_depth=b.max_depth,
            learning_rate=b.learning_rate,
            subsample=b.subsample,
            early_stopping_rounds=b.early_stopping_rounds,
            seed=config.seed,
            params=b.params,
        )
    finally:
        for path in glob.glob(glob.escape(cache) + "*"):
            os.remove(path)
    score, test, example = _test_fold(config, data, factors, lambda inputs: result.predict(inputs[0]), 1000)
    path = result.save(os.path.join(config.output, "model.json"), example[0])
    summary.update(
        model=path,
        output_columns=result.output_columns,
        best_iteration=result.best_iteration,
        importance=result.importance,
    )
    return score, test


def _train_network(
    config: RunConfig,
    task: str,
    classes: Optional[list[str]],
    data: StreamingData,
    found: Survey,
    factors: np.ndarray,
    summary: dict[str, Any],
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]]:
    import torch

    from hepinfer.train import _make_trainer, _save_network, build_model
    from hepinfer.train.loop import Sample, StreamedSample

    assert found.x is not None
    torch.manual_seed(config.seed)
    model = build_model(config, found.x.shape[1], None if classes is None else len(classes))
    scaler = getattr(model, "scaler", None)
    if scaler is not None:
        mean, std = found.moments(found.x)
        scaler.mean.copy_(torch.as_tensor(mean, dtype=scaler.mean.dtype))
        scaler.std.copy_(torch.as_tensor(std, dtype=scaler.std.dtype))
    if hasattr(model, "fit_target"):  # the Gaussian head, or an MSE regression (TargetScaled)
        (y_mean,), (y_std,) = found.moments(found.y.reshape(3, 1))
        model.target_mean.fill_(float(y_mean))
        model.target_std.fill_(float(y_std))

    def sample(rows: _Rows) -> Sample:
        return Sample(
            tuple(torch.as_tensor(a) for a in rows.inputs),
            torch.as_tensor(rows.target, dtype=torch.float32),
            torch.as_tensor(rows.weight, dtype=torch.float32),
            None if rows.mass is None else torch.as_tensor(rows.mass, dtype=torch.float32),
        )

    def fold(f: int, per: int) -> StreamedSample:
        return StreamedSample(
            lambda epoch: (sample(rows) for rows in _fold_rows(config, data, f, factors, per)),
            has_mass=data.config.data.mass != "",
        )

    trainer = _make_trainer(config, model)
    history = trainer.fit(fold(_TRAIN, SHUFFLE_CHUNKS), fold(_VALIDATION, 1), resume=config.training.resume)
    trainer.model.cpu()
    trainer.device = torch.device("cpu")
    score, test, example = _test_fold(
        config, data, factors, lambda inputs: trainer.predict(tuple(torch.as_tensor(a) for a in inputs)), 16
    )
    _save_network(
        config, task, classes, trainer, history, tuple(torch.as_tensor(a) for a in example), summary
    )
    return score, test
