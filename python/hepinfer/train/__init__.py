"""Training with HEP conventions: xgboost BDTs and torch networks, decorrelated from the jet mass.

    >>> from hepinfer import train
    >>> result = train.train_bdt(X, y, weight, event_number)          # xgboost, split by event % 5
    >>> result.save("bdt.json")                                       # checked with hepinfer.Forest
    >>> model = train.MLP(n_inputs=3)
    >>> trainer = train.Trainer(model, loss="bce", decorrelation="disco", decorrelation_strength=1)
    >>> trainer.fit(train.Sample((x,), y, w, mass), validation)
    >>> from hepinfer.export import export_onnx
    >>> export_onnx(train.WithSigmoid(model), x[:10], "model.onnx")   # checked with onnxruntime

Command line: ``hepinfer train config.toml`` (see :mod:`hepinfer.train.config` for the options)
runs :func:`run`: read the sample, split it by event number, train, evaluate on the test fold,
export (ONNX for networks, xgboost JSON for BDTs) and write ``summary.json``; with
``training.n_folds = k``, k such runs and a k-fold bundle (:mod:`hepinfer.train.kfold`).

``loss.kind`` says what is trained (:func:`task_of`): a binary tagger (``bce``, ``focal``), an
``n``-class tagger (``cross_entropy``: the label holds class indices ``0 .. n-1``; networks get
``n`` outputs and are exported with a softmax, BDTs use ``multi:softprob``; the summary has the
accuracy, the confusion matrix and the one-vs-rest AUC and rejection per class, with
``roc.png`` and ``confusion_matrix.png``) or a regression of ``data.target`` (``mse``: networks
and ``reg:squarederror`` BDTs; ``gaussian_nll``: the Gaussian head; the summary has bias and
resolution, with ``prediction_vs_truth.png``). The exported files name their output columns
(``score_<class>``, ``prediction``), and :func:`hepinfer.score` names its branches after them.

Needs torch (networks), xgboost (BDTs, reweighting), onnx + onnxruntime (export checks), tqdm.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any, Optional, Union

import numpy as np

from hepinfer._core import Error
from hepinfer.metrics import roc_auc
from hepinfer.train.bdt import (
    BDTResult,
    class_labels,
    rebalance_classes,
    rebalance_weights,
    split_by_event_number,
    train_bdt,
)
from hepinfer.train.config import ConfigError, RunConfig, default_config_text, load_config, parse_config
from hepinfer.train.data import StreamingData, TrainingData, describe, load_data, open_data
from hepinfer.train.decorrelation import (
    DisCo,
    MoDE,
    disco_loss,
    distance_correlation_squared,
    mode_loss,
    resolve_penalty,
)
from hepinfer.train.loop import History, Sample, Trainer, TrainingWarning
from hepinfer.train.losses_extra import (
    MassAdversary,
    binary_cross_entropy,
    cross_entropy,
    fgsm_perturb,
    focal_loss,
    gaussian_nll,
    gradient_reversal,
    mean_squared_error,
)
from hepinfer.train.nets import (
    MLP,
    Autoencoder,
    DeepSets,
    EnergyFlowNetwork,
    GaussianRegressor,
    ParticleFlowNetwork,
    ParticleNetLite,
    ReconstructionError,
    Standardize,
    TargetScaled,
    WithSigmoid,
    WithSoftmax,
    masked_sum,
    pad_particles,
)
from hepinfer.train.reweight import ClosureResult, ReweightResult, closure_check, parameterise, reweight
from hepinfer.train.scan import StrengthScan, run_evidence, scan_config, scan_strength

__all__ = [
    "MLP",
    "Autoencoder",
    "BDTResult",
    "ClosureResult",
    "ConfigError",
    "DeepSets",
    "DisCo",
    "EnergyFlowNetwork",
    "GaussianRegressor",
    "History",
    "MassAdversary",
    "MoDE",
    "ParticleFlowNetwork",
    "ParticleNetLite",
    "ReconstructionError",
    "ReweightResult",
    "RunConfig",
    "Sample",
    "Standardize",
    "TargetScaled",
    "StrengthScan",
    "Trainer",
    "TrainingWarning",
    "WithSigmoid",
    "WithSoftmax",
    "binary_cross_entropy",
    "build_model",
    "closure_check",
    "cross_entropy",
    "disco_loss",
    "distance_correlation_squared",
    "fgsm_perturb",
    "focal_loss",
    "gaussian_nll",
    "gradient_reversal",
    "load_config",
    "load_data",
    "main",
    "masked_sum",
    "mean_squared_error",
    "mode_loss",
    "pad_particles",
    "parameterise",
    "parse_config",
    "rebalance_classes",
    "rebalance_weights",
    "resolve_penalty",
    "reweight",
    "roc_auc",
    "run",
    "sample_classes",
    "run_evidence",
    "scan_config",
    "scan_strength",
    "split_by_event_number",
    "task_of",
    "train_bdt",
]


def task_of(config: RunConfig) -> str:
    """What the run trains: ``"binary"`` (loss ``bce``/``focal``), ``"multiclass"``
    (``cross_entropy``), ``"regression"`` (``mse``, ``gaussian_nll``) or ``"anomaly"`` (the
    autoencoder). BDTs follow ``loss.kind`` too: ``bce`` -> ``binary:logistic``,
    ``cross_entropy`` -> ``multi:softprob``, ``mse`` -> ``reg:squarederror``."""
    if config.model.kind == "autoencoder":
        return "anomaly"
    if config.loss.kind == "cross_entropy":
        return "multiclass"
    if config.loss.kind in ("mse", "gaussian_nll"):
        return "regression"
    return "binary"


def sample_classes(config: RunConfig, label: Any, classes: Optional[Sequence[str]] = None) -> list[str]:
    """The ordered class names of a classification sample; ``len(...)`` is the number of classes.

    ``classes`` as the data loader gives them (from ``[data.classes]``), else the names the
    configuration lists (``data.classes``, when it has such a key), else derived from the
    integer ``label`` column: ``max(label) + 1`` classes named ``class_0, class_1, ...``
    (``background, signal`` for two). Raises :class:`ConfigError` when the labels are not class
    indices below that number."""
    if classes is None:
        configured = getattr(config.data, "classes", None)
        if configured:
            classes = list(configured)  # a list of names, or a table name -> file patterns
    try:
        _, n = class_labels(
            label, None if classes is None else len(classes), f"{config.data.target} (the label)"
        )
    except ValueError as e:
        raise ConfigError(f"data.target: {e}") from None
    if classes is not None:
        return [str(c) for c in classes]
    return ["background", "signal"] if n == 2 else [f"class_{c}" for c in range(n)]


def build_model(config: RunConfig, n_inputs: int, n_classes: Optional[int] = None) -> Any:
    """The torch model named by ``config.model.kind`` for ``n_inputs`` features per event (or
    per particle, for the constituent networks): one output (a binary classifier's logit or a
    regression), or ``n_classes`` logits for ``loss.kind = "cross_entropy"`` (required then)."""
    m, lo = config.model, config.loss
    if lo.kind == "cross_entropy":
        if n_classes is None or n_classes < 2:
            raise ConfigError(
                f"loss.kind = 'cross_entropy' needs the number of classes (>= 2) of the sample, got {n_classes}"
            )
        if m.kind in ("autoencoder", "gaussian"):
            raise ConfigError(
                f"model.kind = {m.kind!r} is not a classifier; loss.kind = 'cross_entropy' needs one"
            )
        n_outputs = int(n_classes)
    else:
        n_outputs = 1
    network = _network(config, n_inputs, n_outputs)
    if lo.kind == "mse" and not isinstance(network, (Autoencoder, GaussianRegressor)):
        return TargetScaled(network)  # learns the standardised target, predicts in its units
    return network


def _network(config: RunConfig, n_inputs: int, n_outputs: int) -> Any:
    m, lo = config.model, config.loss
    if m.kind == "mlp":
        return MLP(n_inputs, m.hidden, n_outputs, activation=m.activation, dropout=m.dropout)
    if m.kind in ("deepsets", "pfn"):
        return DeepSets(n_inputs, m.hidden, m.latent, m.rho_hidden, n_outputs, activation=m.activation)
    if m.kind == "efn":
        names = config.data.particle_features
        for needed in ("pt_fraction", "deta", "dphi"):
            if needed not in names:
                raise ConfigError(
                    f"data.particle_features: model.kind = 'efn' needs {needed!r} among {names}"
                )
        return EnergyFlowNetwork(
            names.index("pt_fraction"),
            (names.index("deta"), names.index("dphi")),
            m.hidden,
            m.latent,
            m.rho_hidden,
            n_outputs,
            activation=m.activation,
        )
    if m.kind == "particlenet":
        names = config.data.particle_features
        for needed in ("deta", "dphi"):
            if needed not in names:
                raise ConfigError(
                    f"data.particle_features: model.kind = 'particlenet' needs {needed!r} among {names}"
                )
        return ParticleNetLite(
            n_inputs,
            (names.index("deta"), names.index("dphi")),
            m.k,
            m.blocks,
            m.rho_hidden,
            n_outputs,
            activation=m.activation,
            dropout=m.dropout,
        )
    if m.kind == "autoencoder":
        return Autoencoder(n_inputs, m.hidden, m.latent, activation=m.activation)
    if m.kind == "gaussian":
        return GaussianRegressor(n_inputs, m.hidden, activation=m.activation)
    raise ConfigError(f"model.kind: {m.kind!r} is not a torch model (loss {lo.kind!r})")


def run(config: RunConfig, data: Union[None, TrainingData, StreamingData] = None) -> dict[str, Any]:
    """Execute a training run described by ``config``; returns (and writes to
    ``<output>/summary.json``) the test-fold metrics and the paths written. A sample larger
    than ``data.memory_budget`` is streamed (:mod:`hepinfer.train.streaming`; the summary then
    has ``streamed: true``)."""
    if config.training.n_folds:  # k-fold cross-training: k single runs and the bundle
        from hepinfer.train.kfold import run_kfold

        if isinstance(data, StreamingData):
            raise ConfigError(
                "training.n_folds: k-fold cross-training holds the sample in memory; it does not stream "
                "(data.memory_budget)"
            )
        return run_kfold(config, run, data)
    d = config.data
    os.makedirs(config.output, exist_ok=True)
    loaded = open_data(config) if data is None else data
    task = task_of(config)
    if isinstance(loaded, StreamingData):  # larger than data.memory_budget: chunk by chunk
        from hepinfer.train.streaming import train_streamed

        streamed, score, (y_test, w_test, m_test) = train_streamed(config, task, loaded)
        streamed.update(_evaluate(config, task, streamed.get("classes"), score, y_test, w_test, m_test))
        return _write_summary(config, streamed)
    data = loaded
    target, weight, events, mass = data.target, data.weight, data.event, data.mass
    train_mask, val_mask, test_mask = split_by_event_number(
        events, d.n_folds, validation_fold=d.validation_fold, test_fold=d.test_fold
    )
    classes = sample_classes(config, target, data.class_names) if task == "multiclass" else None
    summary: dict[str, Any] = {
        "config": config.to_dict(),
        "task": task,
        "n_train": int(train_mask.sum()),
        "n_validation": int(val_mask.sum()),
        "n_test": int(test_mask.sum()),
        "data": describe(data),
        "class_names": data.class_names,
    }
    if classes is not None:
        summary.update(classes=classes, n_classes=len(classes))
    particle_model = config.model.kind in ("deepsets", "pfn", "efn", "particlenet")
    if particle_model:
        assert data.particles is not None and data.mask is not None
        inputs_all: tuple[np.ndarray, ...] = (data.particles, data.mask.astype(np.float32))
    else:
        feats = data.features
        if data.parameter is not None:
            feats, _ = parameterise(feats, data.parameter, target, seed=config.seed)
        inputs_all = (np.nan_to_num(feats, nan=-1.0).astype(np.float32),)
    masks = (train_mask, val_mask, test_mask)
    if config.model.kind == "bdt":
        score = _train_bdt(config, task, classes, inputs_all[0], target, weight, events, test_mask, summary)
    else:
        score = _train_network(config, task, classes, inputs_all, target, weight, mass, masks, summary)
    summary.update(
        _evaluate(
            config,
            task,
            classes,
            score,
            target[test_mask],
            weight[test_mask],
            None if mass is None else mass[test_mask],
        )
    )
    return _write_summary(config, summary)


def _write_summary(config: RunConfig, summary: dict[str, Any]) -> dict[str, Any]:
    with open(os.path.join(config.output, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))
    return summary


def _train_bdt(
    config: RunConfig,
    task: str,
    classes: Optional[list[str]],
    X: np.ndarray,
    target: np.ndarray,
    weight: np.ndarray,
    events: np.ndarray,
    test_mask: np.ndarray,
    summary: dict[str, Any],
) -> np.ndarray:
    """Train and save the xgboost BDT; returns its test-fold prediction."""
    d = config.data
    result = train_bdt(
        X,
        target,
        weight,
        events,
        feature_names=d.features + ([d.parameter] if d.parameter else []),
        n_folds=d.n_folds,
        validation_fold=d.validation_fold,
        test_fold=d.test_fold,
        rebalance=config.training.rebalance,
        n_trees=config.bdt.n_trees,
        max_depth=config.bdt.max_depth,
        learning_rate=config.bdt.learning_rate,
        subsample=config.bdt.subsample,
        early_stopping_rounds=config.bdt.early_stopping_rounds,
        seed=config.seed,
        params=config.bdt.params,
        task=task,
        classes=classes,
    )
    path = result.save(os.path.join(config.output, "model.json"), X[test_mask][:1000])
    summary.update(
        model=path,
        output_columns=result.output_columns,
        best_iteration=result.best_iteration,
        importance=result.importance,
    )
    return result.predict(X[test_mask])


def _train_network(
    config: RunConfig,
    task: str,
    classes: Optional[list[str]],
    inputs_all: tuple[np.ndarray, ...],
    target: np.ndarray,
    weight: np.ndarray,
    mass: Optional[np.ndarray],
    masks: tuple[np.ndarray, np.ndarray, np.ndarray],
    summary: dict[str, Any],
) -> np.ndarray:
    """Train, save and export the torch network; returns its test-fold prediction (the
    signal probability, the class probabilities, the regression or the anomaly score)."""
    import torch

    t = config.training
    train_mask, val_mask, test_mask = masks
    particle_model = len(inputs_all) == 2
    torch.manual_seed(config.seed)
    model = build_model(config, inputs_all[0].shape[-1], None if classes is None else len(classes))
    if config.model.kind == "autoencoder":  # background only
        train_mask = train_mask & (target < 0.5)
        val_mask = val_mask & (target < 0.5)
    tr = np.flatnonzero(train_mask)
    w = weight.copy()
    if t.rebalance and task in ("binary", "multiclass"):
        try:
            for part in (train_mask, val_mask):
                if part.any():
                    w[part] = (
                        rebalance_weights(target[part], weight[part])
                        if task == "binary"
                        else rebalance_classes(target[part], weight[part], len(classes or ()))
                    )
        except ValueError as e:
            raise ConfigError(
                f"training.rebalance: {e} (set training.rebalance = false to train unbalanced)"
            ) from None
    tensors = tuple(torch.as_tensor(a) for a in inputs_all)
    scaler = getattr(model, "scaler", None)
    if scaler is not None:
        scaler.fit(tensors[0][tr], tensors[1][tr] if particle_model else None)
    if hasattr(model, "fit_target"):  # the Gaussian head, or an MSE regression (TargetScaled)
        model.fit_target(torch.as_tensor(target[tr]))
    sample = Sample(
        tensors,
        torch.as_tensor(target, dtype=torch.float32),
        torch.as_tensor(w, dtype=torch.float32),
        None if mass is None else torch.as_tensor(mass, dtype=torch.float32),
    )
    trainer = _make_trainer(config, model)
    history = trainer.fit(
        sample.subset(torch.as_tensor(tr)),
        sample.subset(torch.as_tensor(np.flatnonzero(val_mask))),
        resume=t.resume,
    )
    trainer.model.cpu()
    trainer.device = torch.device("cpu")
    score = trainer.predict(sample.subset(torch.as_tensor(np.flatnonzero(test_mask))))
    example = tuple(a[np.flatnonzero(test_mask)[:16]] for a in tensors)
    _save_network(config, task, classes, trainer, history, example, summary)
    return score


def _make_trainer(config: RunConfig, model: Any) -> Trainer:
    """The :class:`Trainer` of ``[training]`` and ``[loss]``, checkpointing into the output folder."""
    t, lo = config.training, config.loss
    return Trainer(
        model,
        loss=lo.kind,
        focal_gamma=lo.focal_gamma,
        decorrelation=None if lo.decorrelation == "none" else lo.decorrelation,
        decorrelation_strength=lo.decorrelation_strength,
        decorrelation_options=(
            {"order": lo.mode_order, "monotonic": lo.mode_monotonic} if lo.decorrelation == "mode" else None
        ),
        fgsm_epsilon=lo.fgsm_epsilon,
        fgsm_weight=lo.fgsm_weight,
        adversary_steps=lo.adversary_steps,
        adversary_learning_rate=lo.adversary_learning_rate,
        adversary_pretrain_epochs=lo.adversary_pretrain_epochs,
        epochs=t.epochs,
        batch_size=t.batch_size,
        learning_rate=t.learning_rate,
        weight_decay=t.weight_decay,
        patience=t.patience,
        selection=t.selection,
        min_inverse_jsd=t.min_inverse_jsd,
        seed=config.seed,
        device=config.device,
        progress=t.progress,
        checkpoint_path=os.path.join(config.output, "checkpoint.pt"),
        checkpoint_every=t.checkpoint_every,
    )


def _save_network(
    config: RunConfig,
    task: str,
    classes: Optional[list[str]],
    trainer: Trainer,
    history: History,
    example: tuple[Any, ...],
    summary: dict[str, Any],
) -> None:
    """Save the trained weights (``model.pt``) and export the ONNX file (checked on ``example``,
    a few test events' inputs)."""
    import torch

    model = trainer.model
    weights_path = os.path.join(config.output, "model.pt")
    torch.save({"model": model.state_dict(), "config": config.to_dict(), "classes": classes}, weights_path)
    summary.update(weights=weights_path, history=history.epochs, best_epoch=history.best_epoch)
    if config.export_onnx:
        from hepinfer.export import export_onnx

        wrapped, output_columns = _exportable(config, task, classes, model)
        summary["onnx"] = export_onnx(
            wrapped,
            example,
            os.path.join(config.output, "model.onnx"),
            output_columns=output_columns,
            classes=classes,
        )
        summary["output_columns"] = output_columns


def _exportable(
    config: RunConfig, task: str, classes: Optional[list[str]], model: Any
) -> tuple[Any, list[str]]:
    """(the module to export, what each column of its output is)."""
    from hepinfer.export import output_column_names

    if task == "multiclass":
        return WithSoftmax(model), output_column_names(classes or [])
    if task == "binary":
        return WithSigmoid(model), ["score"]
    if task == "anomaly":
        return ReconstructionError(model), ["anomaly_score"]
    if config.model.kind == "gaussian":
        return model, ["prediction", "width"]
    return model, ["prediction"]


def _evaluate(
    config: RunConfig,
    task: str,
    classes: Optional[list[str]],
    score: np.ndarray,
    y_test: np.ndarray,
    w_test: np.ndarray,
    m_test: Optional[np.ndarray],
) -> dict[str, Any]:
    """The test-fold metrics (``test_*``) and plots of the run's task."""
    from hepinfer.metrics import multiclass_summary, regression_summary

    out: dict[str, Any] = {}
    plots: dict[str, str] = {}
    if task == "binary":
        # test-fold AUC, rejection and 1/JSD at 50 % signal efficiency, dCor²; ROC, score and
        # mass-sculpting plots (hepinfer.train.scan.run_evidence)
        evidence = run_evidence(config.output, score, y_test, w_test, m_test, name=config.model.kind)
        plots.update(evidence.pop("plots", {}) or {})
        out.update(evidence)
        if "test_background_dcor2" in out:  # the name of earlier summaries
            out["test_background_dcor2_mass"] = out["test_background_dcor2"]
    elif task == "anomaly":
        out["test_auc"] = roc_auc(score, y_test, w_test)  # anomaly score: signal should be high
    elif task in ("multiclass", "regression") and np.any(w_test < 0):
        # quantiles, rejections and confusion fractions need weights >= 0
        out["test_weights_note"] = "the sample has negative event weights: these metrics use |weight|"
    if task == "multiclass":
        assert classes is not None
        probabilities = np.asarray(score, dtype=np.float64).reshape(len(y_test), len(classes))
        found = multiclass_summary(probabilities, y_test, classes, np.abs(w_test))
        out.update({f"test_{k}": v for k, v in found.items()})
        plots.update(_multiclass_plots(config.output, probabilities, y_test, classes, np.abs(w_test)))
    elif task == "regression":
        columns = np.asarray(score, dtype=np.float64).reshape(len(y_test), -1)
        prediction = columns[:, 0]
        found = regression_summary(prediction, y_test, np.abs(w_test))
        out["test_rmse"] = found["rmse"]
        out["test_regression"] = found
        if columns.shape[1] == 2:  # Gaussian head: the pull (y - mean) / width should be N(0, 1)
            pull = (y_test - prediction) / columns[:, 1]
            out["test_pull_mean"] = float(np.average(pull, weights=np.abs(w_test)))
            out["test_pull_std"] = float(
                np.sqrt(np.average((pull - out["test_pull_mean"]) ** 2, weights=np.abs(w_test)))
            )
        plots.update(_regression_plots(config.output, prediction, y_test, np.abs(w_test)))
    if plots:
        out["plots"] = plots
    return out


def _have_matplotlib() -> bool:
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def _multiclass_plots(
    folder: str, probabilities: np.ndarray, label: np.ndarray, classes: list[str], weight: np.ndarray
) -> dict[str, str]:
    if not _have_matplotlib():
        return {}
    from hepinfer import plot

    return {
        "roc": plot.multiclass_roc(
            label, probabilities, os.path.join(folder, "roc.png"), classes=classes, weight=weight
        ),
        "confusion_matrix": plot.confusion_matrix(
            label, probabilities, os.path.join(folder, "confusion_matrix.png"), classes=classes, weight=weight
        ),
    }


def _regression_plots(
    folder: str, prediction: np.ndarray, truth: np.ndarray, weight: np.ndarray
) -> dict[str, str]:
    if not _have_matplotlib():
        return {}
    from hepinfer import plot

    return {
        "prediction_vs_truth": plot.prediction_vs_truth(
            truth, prediction, os.path.join(folder, "prediction_vs_truth.png"), weight=weight
        )
    }


_HELP_EPILOG = """\
configuration keys: `hepinfer train --print-config` prints every key with its default and a
comment saying what it does (valid TOML: save it as run.toml and edit). README section
"Training on your own files" has a complete example on a ROOT file; the keys' documentation
lives in hepinfer.train.config (help(hepinfer.train.config.DataConfig), ...).
"""


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``hepinfer train CONFIG [--set section.key=value ...] [--output DIR] [--resume]``;
    ``hepinfer train --print-config [CONFIG]`` prints the (default or given) configuration."""
    parser = argparse.ArgumentParser(
        prog="hepinfer train",
        description="Train a model from a TOML configuration.",
        epilog=_HELP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", nargs="?", help="TOML (or YAML, with PyYAML) configuration file")
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the full configuration (the defaults, or CONFIG with --set applied) as TOML with a "
        "comment per key, and exit",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override an option, e.g. --set training.epochs=5 (repeatable)",
    )
    parser.add_argument("--output", help="output folder (overrides 'output')")
    parser.add_argument("--resume", action="store_true", help="continue from <output>/checkpoint.pt")
    parser.add_argument("--device", help="'cpu' or 'cuda' (overrides 'device')")
    parser.add_argument(
        "--scan-strength",
        metavar="L1,L2,...",
        help="train once per decorrelation strength (and once without decorrelation), choose the "
        "flattest one that keeps loss.strength_scan_min_rejection_fraction of the validation "
        "rejection, and write the (rejection, 1/JSD) front to <output>/strength_scan.json/.png",
    )
    args = parser.parse_args(argv)
    overrides = list(args.overrides)
    if args.output:
        overrides.append(f"output={json.dumps(args.output)}")
    if args.resume:
        overrides.append("training.resume=true")
    if args.device:
        overrides.append(f"device={json.dumps(args.device)}")
    if args.config is None and not args.print_config:
        parser.error("give a CONFIG file (or --print-config for a commented default one)")
    if args.scan_strength:
        try:
            values = [float(v) for v in args.scan_strength.split(",") if v.strip()]
        except ValueError:
            parser.error(f"--scan-strength: expected numbers separated by commas, got {args.scan_strength!r}")
        overrides.append(f"loss.strength_scan={json.dumps(values)}")
    try:
        if args.print_config:
            config = load_config(args.config, overrides) if args.config else load_config({}, overrides)
            sys.stdout.write(default_config_text(config))
            return 0
        config = load_config(args.config, overrides)
        summary = scan_config(config) if config.loss.strength_scan else run(config)
    except Error as e:  # ConfigError, hepinfer.io.ReadError, ...: the message names key, file, branch
        print(f"hepinfer train: {e}", file=sys.stderr)
        return 2
    shown = {
        k: v
        for k, v in summary.items()
        if k.startswith("test_")
        or k in ("onnx", "model", "weights", "plots", "chosen_strength", "chosen_output")
    }
    print(json.dumps(shown, indent=2))
    return 0
