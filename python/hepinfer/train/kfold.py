"""k-fold cross-training (``training.n_folds = k``): k models, each trained without the events
it will be applied to, written as one bundle that :class:`hepinfer.KFold`, :func:`hepinfer.score`
and ``hepinfer::KFold`` load as one model.

The events are split by ``data.event_number`` into k folds, ``event_number mod k`` (see
:mod:`hepinfer.kfold`). Model ``i`` is trained by the ordinary single run (:func:`hepinfer.train.run`,
the same loop, losses, decorrelation, export and checks) with ``data.n_folds = k``,
``data.test_fold = i`` and ``data.validation_fold = (i + 1) mod k``: it is applied to fold ``i``
(its test fold, never seen), its early stopping / model selection watches fold ``i + 1``, and it
is trained on the other k - 2 folds. So ``k >= 3``. The run writes ``<output>/fold_<i>/`` (the
member's model, checkpoint and summary), ``<output>/kfold.json`` (the manifest: the folder is the
bundle) and ``<output>/summary.json`` with each fold's test metrics (each computed on the
fold its member is applied to: the cross-applied scores, fold by fold) and their mean.

Members are models with one ``(events, features)`` input: ``bdt`` (xgboost JSON) and the
networks ``mlp``, ``autoencoder`` and ``gaussian`` (ONNX, so ``export_onnx = true``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable, Optional

import numpy as np

from hepinfer.train.config import ConfigError, RunConfig
from hepinfer.train.data import TrainingData, load_data

__all__ = ["KFOLD_MODEL_KINDS", "run_kfold"]

KFOLD_MODEL_KINDS = ("bdt", "mlp", "autoencoder", "gaussian")
"""Model kinds a k-fold bundle can hold (one ``(events, features)`` input)."""


def fold_config(config: RunConfig, fold: int) -> RunConfig:
    """The single run that trains the member applied to ``fold``."""
    k = config.training.n_folds
    return dataclasses.replace(
        config,
        output=os.path.join(config.output, f"fold_{fold}"),
        data=dataclasses.replace(config.data, n_folds=k, test_fold=fold, validation_fold=(fold + 1) % k),
        training=dataclasses.replace(config.training, n_folds=0),
    )


def _check(config: RunConfig) -> None:
    k, d = config.training.n_folds, config.data
    if k < 3:
        raise ConfigError(
            f"training.n_folds: must be 0 (off) or >= 3 (each member: one fold applied, one validation "
            f"fold, the rest trained on), got {k}"
        )
    if config.model.kind not in KFOLD_MODEL_KINDS:
        raise ConfigError(
            f"training.n_folds: k-fold bundles hold models with one (events, features) input "
            f"({', '.join(KFOLD_MODEL_KINDS)}); model.kind is {config.model.kind!r}"
        )
    if not d.event_number:
        raise ConfigError(
            "training.n_folds: needs data.event_number (a column of integers): the bundle picks each "
            "event's model by it when applied, so a hash of the row cannot stand in for it"
        )
    if config.model.kind != "bdt" and not config.export_onnx:
        raise ConfigError("training.n_folds: network members are exported as ONNX: export_onnx must be true")


def run_kfold(
    config: RunConfig, run_one: Callable[..., dict[str, Any]], data: Optional[TrainingData] = None
) -> dict[str, Any]:
    """Train the k members with ``run_one`` (:func:`hepinfer.train.run`) on the sample read once,
    write the bundle and return (and write to ``<output>/summary.json``) the summary."""
    from hepinfer.kfold import write_manifest

    _check(config)
    k, d = config.training.n_folds, config.data
    data = load_data(config) if data is None else data
    event_branch = data.event_expression
    if not event_branch or not event_branch.isidentifier():
        raise ConfigError(
            f"training.n_folds: the events are split by {data.event_origin}; a k-fold bundle needs an "
            'event-number branch (data.event_number = "event", say) that scoring reads to pick each '
            "event's model"
        )
    os.makedirs(config.output, exist_ok=True)
    members, folds = [], []
    for i in range(k):
        s = run_one(fold_config(config, i), data)
        members.append(s["model"] if config.model.kind == "bdt" else s["onnx"])
        folds.append(
            {
                key: v
                for key, v in s.items()
                if key.startswith(("test_", "n_")) or key in ("best_epoch", "best_iteration")
            }
        )
    features = list(d.features) + ([d.parameter] if d.parameter else [])
    manifest = write_manifest(config.output, members, features=features, event_number=event_branch)
    summary: dict[str, Any] = {
        "config": config.to_dict(),
        "bundle": config.output,
        "manifest": manifest,
        "members": members,
        "n_folds": k,
        "folds": folds,
    }
    aucs = [f["test_auc"] for f in folds if "test_auc" in f]
    if len(aucs) == k:
        summary["test_auc_mean"] = float(np.mean(aucs))  # printed by hepinfer train
    with open(os.path.join(config.output, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))
    return summary
