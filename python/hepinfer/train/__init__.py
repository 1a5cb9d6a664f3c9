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
export (ONNX for networks, xgboost JSON for BDTs) and write ``summary.json``.

Needs torch (networks), xgboost (BDTs, reweighting), onnx + onnxruntime (export checks), tqdm.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any, Optional

import numpy as np

from hepinfer.datasets.schema import CONSTITUENT_FEATURES, padded_constituents
from hepinfer.metrics import roc_auc
from hepinfer.train.bdt import BDTResult, rebalance_weights, split_by_event_number, train_bdt
from hepinfer.train.config import ConfigError, RunConfig, load_config, parse_config
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
    WithSigmoid,
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
    "StrengthScan",
    "Trainer",
    "TrainingWarning",
    "WithSigmoid",
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
    "main",
    "masked_sum",
    "mean_squared_error",
    "mode_loss",
    "pad_particles",
    "parameterise",
    "parse_config",
    "rebalance_weights",
    "resolve_penalty",
    "reweight",
    "roc_auc",
    "run",
    "run_evidence",
    "scan_config",
    "scan_strength",
    "split_by_event_number",
    "train_bdt",
]


def build_model(config: RunConfig, n_inputs: int) -> Any:
    """The torch model named by ``config.model.kind`` for ``n_inputs`` features per event (or
    per particle, for the constituent networks)."""
    m, lo = config.model, config.loss
    n_outputs = 1
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


def _load_columns(config: RunConfig) -> dict[str, np.ndarray]:
    d = config.data
    if d.source in ("toy", "pythia"):
        try:
            import hepinfer.datasets as hd
        except ImportError as e:  # pragma: no cover
            raise ConfigError(f"data.source = {d.source!r} needs hepinfer.datasets ({e})") from None
        if d.source == "toy":
            return hd.generate_toy_jets(d.n_signal, d.n_background, seed=config.seed, library="np")
        return hd.load_jets(library="np")
    path = d.source
    if not os.path.exists(path):
        raise ConfigError(f"data.source: {path!r} is neither 'toy', 'pythia' nor an existing file")
    if path.endswith(".npz"):
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    if path.endswith(".root"):
        import hepinfer.datasets as hd

        return hd.load_jets(path, library="np")
    if path.endswith(".parquet"):
        import pandas as pd

        frame = pd.read_parquet(path)
        return {str(c): frame[c].to_numpy() for c in frame.columns}
    raise ConfigError(f"data.source: {path!r} must be a .root, .npz or .parquet file")


def _column(columns: dict[str, np.ndarray], name: str, key: str) -> np.ndarray:
    if name not in columns:
        raise ConfigError(
            f"{key}: column {name!r} is not in the sample (it has {', '.join(sorted(columns))})"
        )
    return np.asarray(columns[name])


def _particles(
    columns: dict[str, np.ndarray], names: Sequence[str], max_particles: int
) -> tuple[np.ndarray, np.ndarray]:
    for n in names:
        if n not in CONSTITUENT_FEATURES:
            raise ConfigError(f"data.particle_features: unknown {n!r}; use {', '.join(CONSTITUENT_FEATURES)}")
    needed = {"constituent_offsets", "constituent_pt"}
    needed |= {
        f"constituent_{b}"
        for n, b in (("log_energy", "energy"), ("deta", "eta"), ("dphi", "phi"), ("charge", "charge"))
        if n in names
    }
    needed |= {f"jet_{b}" for n, b in (("pt_fraction", "pt"), ("deta", "eta"), ("dphi", "phi")) if n in names}
    for name in sorted(needed):
        _column(columns, name, "data.particle_features")
    return padded_constituents(columns, max_particles, names)


def run(config: RunConfig) -> dict[str, Any]:
    """Execute a training run described by ``config``; returns (and writes to
    ``<output>/summary.json``) the test-fold metrics and the paths written."""
    import torch

    d, t, lo = config.data, config.training, config.loss
    os.makedirs(config.output, exist_ok=True)
    columns = _load_columns(config)
    target = _column(columns, d.target, "data.target").astype(np.float64)
    n = len(target)
    weight = _column(columns, d.weight, "data.weight").astype(np.float64) if d.weight else np.ones(n)
    events = _column(columns, d.event_number, "data.event_number") if d.event_number else np.arange(n)
    mass = _column(columns, d.mass, "data.mass").astype(np.float64)
    train_mask, val_mask, test_mask = split_by_event_number(
        events, d.n_folds, validation_fold=d.validation_fold, test_fold=d.test_fold
    )
    summary: dict[str, Any] = {
        "config": config.to_dict(),
        "n_train": int(train_mask.sum()),
        "n_validation": int(val_mask.sum()),
        "n_test": int(test_mask.sum()),
    }
    particle_model = config.model.kind in ("deepsets", "pfn", "efn", "particlenet")
    if particle_model:
        x, pmask = _particles(columns, d.particle_features, d.max_particles)
        inputs_all: tuple[np.ndarray, ...] = (x, pmask.astype(np.float32))
    else:
        feats = np.column_stack([_column(columns, f, "data.features") for f in d.features]).astype(np.float64)
        if d.parameter:
            feats, _ = parameterise(
                feats, _column(columns, d.parameter, "data.parameter"), target, seed=config.seed
            )
        inputs_all = (np.nan_to_num(feats, nan=-1.0).astype(np.float32),)

    if config.model.kind == "bdt":
        result = train_bdt(
            inputs_all[0],
            target,
            weight,
            events,
            feature_names=d.features + ([d.parameter] if d.parameter else []),
            n_folds=d.n_folds,
            validation_fold=d.validation_fold,
            test_fold=d.test_fold,
            rebalance=t.rebalance,
            n_trees=config.bdt.n_trees,
            max_depth=config.bdt.max_depth,
            learning_rate=config.bdt.learning_rate,
            subsample=config.bdt.subsample,
            early_stopping_rounds=config.bdt.early_stopping_rounds,
            seed=config.seed,
            params=config.bdt.params,
        )
        path = result.save(os.path.join(config.output, "model.json"), inputs_all[0][test_mask][:1000])
        score = result.predict(inputs_all[0][test_mask])
        summary.update(model=path, best_iteration=result.best_iteration, importance=result.importance)
    else:
        torch.manual_seed(config.seed)
        model = build_model(config, inputs_all[0].shape[-1])
        if config.model.kind == "autoencoder":  # background only
            train_mask = train_mask & (target < 0.5)
            val_mask = val_mask & (target < 0.5)
        tr = np.flatnonzero(train_mask)
        w = weight.copy()
        if t.rebalance and lo.kind in ("bce", "focal"):
            w[train_mask] = rebalance_weights(target[train_mask], weight[train_mask])
            w[val_mask] = rebalance_weights(target[val_mask], weight[val_mask])
        tensors = tuple(torch.as_tensor(a) for a in inputs_all)
        scaler = getattr(model, "scaler", None)
        if scaler is not None:
            scaler.fit(tensors[0][tr], tensors[1][tr] if particle_model else None)
        if config.model.kind == "gaussian":
            model.fit_target(torch.as_tensor(target[tr]))
        sample = Sample(
            tensors,
            torch.as_tensor(target, dtype=torch.float32),
            torch.as_tensor(w, dtype=torch.float32),
            torch.as_tensor(mass, dtype=torch.float32),
        )
        trainer = Trainer(
            model,
            loss=lo.kind,
            focal_gamma=lo.focal_gamma,
            decorrelation=None if lo.decorrelation == "none" else lo.decorrelation,
            decorrelation_strength=lo.decorrelation_strength,
            decorrelation_options=(
                {"order": lo.mode_order, "monotonic": lo.mode_monotonic}
                if lo.decorrelation == "mode"
                else None
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
        history = trainer.fit(
            sample.subset(torch.as_tensor(tr)),
            sample.subset(torch.as_tensor(np.flatnonzero(val_mask))),
            resume=t.resume,
        )
        model = trainer.model.cpu()
        trainer.device = torch.device("cpu")
        score = trainer.predict(sample.subset(torch.as_tensor(np.flatnonzero(test_mask))))
        weights_path = os.path.join(config.output, "model.pt")
        torch.save({"model": model.state_dict(), "config": config.to_dict()}, weights_path)
        summary.update(weights=weights_path, history=history.epochs, best_epoch=history.best_epoch)
        if config.export_onnx:
            from hepinfer.export import export_onnx

            wrapped = (
                WithSigmoid(model)
                if lo.kind in ("bce", "focal")
                else ReconstructionError(model)  # type: ignore[arg-type]  # an Autoencoder here
                if config.model.kind == "autoencoder"
                else model
            )
            example = tuple(a[np.flatnonzero(test_mask)[:16]] for a in tensors)
            summary["onnx"] = export_onnx(wrapped, example, os.path.join(config.output, "model.onnx"))
    y_test, w_test, m_test = target[test_mask], weight[test_mask], mass[test_mask]
    if lo.kind in ("bce", "focal") or config.model.kind == "bdt":
        # test-fold AUC, rejection and 1/JSD at 50 % signal efficiency, dCor²; ROC, score and
        # mass-sculpting plots (hepinfer.train.scan.run_evidence)
        summary.update(run_evidence(config.output, score, y_test, w_test, m_test, name=config.model.kind))
        if "test_background_dcor2" in summary:  # the name of earlier summaries
            summary["test_background_dcor2_mass"] = summary["test_background_dcor2"]
    elif config.model.kind == "autoencoder":
        summary["test_auc"] = roc_auc(score, y_test, w_test)  # anomaly score: signal should be high
    elif lo.kind in ("mse", "gaussian_nll"):
        prediction = np.asarray(score).reshape(len(y_test), -1)[:, 0]
        summary["test_rmse"] = float(np.sqrt(np.average((prediction - y_test) ** 2, weights=w_test)))
    with open(os.path.join(config.output, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))
    return summary


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``hepinfer train CONFIG [--set section.key=value ...] [--output DIR] [--resume]``."""
    parser = argparse.ArgumentParser(
        prog="hepinfer train", description="Train a model from a TOML configuration."
    )
    parser.add_argument("config", help="TOML (or YAML, with PyYAML) configuration file")
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
    if args.scan_strength:
        try:
            values = [float(v) for v in args.scan_strength.split(",") if v.strip()]
        except ValueError:
            parser.error(f"--scan-strength: expected numbers separated by commas, got {args.scan_strength!r}")
        overrides.append(f"loss.strength_scan={json.dumps(values)}")
    try:
        config = load_config(args.config, overrides)
        summary = scan_config(config) if config.loss.strength_scan else run(config)
    except ConfigError as e:
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
