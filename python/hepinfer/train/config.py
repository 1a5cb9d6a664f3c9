"""The training configuration: a small TOML file (or a dict) validated into dataclasses.

Every option has a default; unknown keys, wrong types and values out of range raise
:class:`ConfigError` with the dotted name of the key (``training.learning_rate: ...``).
TOML is read with the standard library's ``tomllib`` (Python >= 3.11) or the ``tomli`` package
on 3.9/3.10; ``.yaml``/``.yml`` files are read when PyYAML is installed.

Every key is documented where it is defined (the string under each field below);
``hepinfer train --print-config`` (:func:`default_config_text`) prints them all as commented TOML
that loads back, and README's "Training on your own files" has complete examples. A short one::

    seed = 1
    output = "runs/w-tagger"

    [data]
    source = "jets.root"            # "toy", "pythia", ROOT files (TTree/RNTuple), .parquet, .npz
    tree = "jets"
    features = ["mass", "n_const", "max_of(c_pt) / pt"]
    mass = "mass"

    [model]
    kind = "mlp"
    hidden = [64, 64]

    [training]
    epochs = 30
    batch_size = 2048

    [loss]
    kind = "bce"
    decorrelation = "disco"
    decorrelation_strength = 1.0     # measured: 10 kills the classifier on the Pythia sample
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from hepinfer._core import Error

__all__ = [
    "BDTConfig",
    "ConfigError",
    "DataConfig",
    "LossConfig",
    "ModelConfig",
    "RunConfig",
    "TrainingConfig",
    "default_config_text",
    "key_docs",
    "load_config",
    "ordered_classes",
    "parse_config",
]


class ConfigError(Error, ValueError):
    """A training configuration is malformed; the message names the key (a :class:`hepinfer.Error`)."""


MODEL_KINDS = ("mlp", "deepsets", "pfn", "efn", "particlenet", "autoencoder", "gaussian", "bdt")
LOSS_KINDS = ("bce", "cross_entropy", "focal", "mse", "gaussian_nll", "reconstruction")
#: Models that read per-particle inputs (``data.particle_features``) rather than ``data.features``.
PARTICLE_MODELS = ("deepsets", "pfn", "efn", "particlenet")
#: Losses whose ``data.target`` is a value to predict rather than a class index.
REGRESSION_LOSSES = ("mse", "gaussian_nll")
DECORRELATIONS = ("none", "disco", "mode", "adversary")


@dataclass
class DataConfig:
    """Where the events come from and which columns the model sees (hepinfer.train.data reads them).
    Expressions use the language of hepinfer.score: numpy functions (log, sqrt, arctan2, where,
    ...), num/first/nth/max_of/min_of/sum_of/mean_of of jagged branches, and data.aliases."""

    source: Union[str, list[str]] = "toy"
    """"toy" (hepinfer.datasets.generate_toy_jets), "pythia" (the hepinfer.datasets W vs QCD
    sample), or input files: a path, a glob pattern ("data/*.root"), a "file.root:tree" spec, or a
    list of those. ROOT files (TTree or RNTuple), .parquet or .npz. Leave it at "toy" when the
    files are given per class in [data.classes]."""
    tree: str = ""
    """Name of the TTree or RNTuple in the ROOT files ("" = each file's only tree; a
    "file.root:tree" spec in source wins)."""
    classes: dict[str, list[str]] = field(default_factory=dict)
    """Label by file instead of by branch: class name = [files or patterns], e.g.
    background = ["qcd*.root"] and signal = ["w*.root"]. Classes are numbered 0, 1, ... in the
    order listed, except that with two classes one named "signal" is class 1 (the score of a
    binary classifier is the probability of class 1)."""
    class_names: list[str] = field(default_factory=list)
    """Names of the label values 0, 1, ... when the label comes from data.target ([] = "background",
    "signal" for two classes, else "class_0", "class_1", ...)."""
    n_signal: int = 5000
    """source = "toy": number of signal jets generated."""
    n_background: int = 5000
    """source = "toy": number of background jets generated."""
    features: list[str] = field(default_factory=lambda: ["tau21", "tau32", "n_constituents"])
    """Per-event inputs of the MLP, BDT, autoencoder and Gaussian regression: branch names or
    expressions as hepinfer.score takes them ("sqrt(px**2 + py**2)", "max_of(c_pt)", aliases)."""
    particle_features: list[str] = field(default_factory=lambda: ["pt_fraction", "deta", "dphi"])
    """Per-particle inputs of the set and graph networks (deepsets, pfn, efn, particlenet): jagged
    branches or expressions of them and of per-jet branches ("log(c_pt)", "c_eta - eta"). On the
    hepinfer.datasets samples the names pt_fraction, log_pt, log_energy, deta, dphi and charge are
    built in (efn needs pt_fraction, deta and dphi; particlenet deta and dphi as coordinates)."""
    max_particles: int = 50
    """Particles kept per jet (the first ones; the rest are dropped), zero-padded to this length."""
    aliases: dict[str, str] = field(default_factory=dict)
    """Named expressions usable in every other expression, e.g. { pt_rel = "c_pt / pt" }."""
    cut: str = ""
    """Event selection expression; events where it is false are not read ("" = all events)."""
    target: str = "label"
    """The label: a branch or expression giving the class index 0, 1, ... (classification) or
    the value to predict (loss.kind = "mse" or "gaussian_nll"). Unused with data.classes."""
    mass: str = "jet_mass"
    """The variable to decorrelate from (DisCo, MoDE, adversary) and to report dCor² against: a
    branch or expression ("" = none; a decorrelation then refuses to run)."""
    weight: str = ""
    """Event weights: a branch or expression ("" = all 1)."""
    event_number: str = "auto"
    """The event number that splits events into folds (event % n_folds): a branch or expression;
    "auto" = a branch named event, eventNumber, EventNumber, event_number or evt if the sample has
    one; "" (or "auto" without such a branch) = a stable hash of each event's feature values."""
    n_folds: int = 5
    """Folds of the event-number split (>= 3: training, validation and test)."""
    validation_fold: int = 0
    """The fold used for validation (early stopping, model selection)."""
    test_fold: int = 1
    """The fold used for the test metrics in summary.json."""
    parameter: str = ""
    """Parameterised classifier: the column with the physics parameter θ (e.g. a signal mass);
    background events get θ drawn from the signal events' θ values."""
    chunk_size: str = "100 MB"
    """How much is read at a time: a size ("100 MB") or a number of events ("100000")."""
    max_events: int = 5_000_000
    """Refuse (with an error, never by truncating) samples of more selected events than this
    (0 = no limit): a guard for the memory the training sample takes."""
    memory_budget: str = ""
    """Stream the sample instead of holding it in memory when it would take more than this
    ("2 GB", "500 MB"; "" = never stream: the whole sample is kept and data.max_events applies).
    The size is estimated while reading: selected events x bytes per event of the needed columns
    (8 per flat column, 4 per particle value plus 1 per particle slot). Above the budget,
    `hepinfer train` reads the files again chunk by chunk every epoch (networks: mini-batches
    from a shuffle buffer of a few chunks, so keep 4 x data.chunk_size well below the budget;
    BDTs: xgboost's external-memory DMatrix) instead of refusing; data.max_events does not apply
    then. Only ROOT/parquet/npz files stream (toy samples and arrays are already in memory), and
    only single runs of binary and multi-class classifiers and regressions (k-fold
    cross-training, the autoencoder, the adversary and data.parameter hold the sample in memory)."""


@dataclass
class ModelConfig:
    kind: str = "mlp"
    hidden: list[int] = field(default_factory=lambda: [64, 64])
    latent: int = 64
    rho_hidden: list[int] = field(default_factory=lambda: [64])
    k: int = 7
    """ParticleNet: number of nearest neighbours."""
    blocks: list[list[int]] = field(default_factory=lambda: [[32, 32, 32], [64, 64, 64]])
    activation: str = "relu"
    dropout: float = 0.0


@dataclass
class TrainingConfig:
    epochs: int = 20
    batch_size: int = 1024
    """Events per step; 0 = the whole training sample (full batch, best for DisCo)."""
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 0
    """Early stopping: stop after this many epochs without a better validation loss (0 = off)."""
    rebalance: bool = True
    """Scale signal weights so that their sum equals the background's."""
    progress: bool = True
    checkpoint_every: int = 1
    selection: str = "auto"
    """Which epoch's weights are kept (and what ``patience`` watches): ``"auto"`` (``"objective"``
    with decorrelation, ``"loss"`` without), ``"objective"`` (the full loss including the
    decorrelation term: plain + λ·penalty for DisCo/MoDE, plain + λ·dCor²(score, mass) for the
    adversary, on the validation fold), ``"loss"`` (the validation loss; the adversary's NLL left
    out) or ``"rejection"`` (the largest validation background rejection at 50 % signal
    efficiency among epochs with 1/JSD >= ``min_inverse_jsd``). See hepinfer.train.loop."""
    min_inverse_jsd: float = 0.0
    """The 1/JSD floor of ``selection = "rejection"``."""
    resume: bool = False
    """Continue from ``<output>/checkpoint.pt`` if it exists."""
    n_folds: int = 0
    """k-fold cross-training (TMVA's CrossValidation): 0 = off; k >= 3 trains k models, model i
    applied to the events with ``data.event_number mod k == i`` and trained without them (fold
    i + 1 validates it), written as one bundle (``<output>/kfold.json``, see
    :mod:`hepinfer.train.kfold`) that ``hepinfer.KFold`` and ``hepinfer.score`` load as one model.
    Overrides ``data.n_folds``, ``data.test_fold`` and ``data.validation_fold``."""


@dataclass
class LossConfig:
    kind: str = "bce"
    """``bce``/``focal`` (binary: label 0/1), ``cross_entropy`` (n classes: label 0 .. n-1, one
    softmax output per class), ``mse`` (regression of ``data.target``), ``gaussian_nll``
    (``model.kind = "gaussian"``: mean and width) or ``reconstruction`` (autoencoder). BDTs:
    ``bce`` = binary:logistic, ``cross_entropy`` = multi:softprob, ``mse`` = reg:squarederror."""
    focal_gamma: float = 2.0
    decorrelation: str = "none"
    decorrelation_strength: float = 0.0
    """λ of the DisCo / MoDE penalty, or the gradient-reversal strength of the adversary."""
    fgsm_epsilon: float = 0.0
    """FGSM adversarial training step ε in input units (0 = off)."""
    fgsm_weight: float = 0.5
    """Weight α of the adversarial-example loss: (1 - α) L(x) + α L(x_adv)."""
    adversary_steps: int = 1
    adversary_learning_rate: float = 1e-3
    adversary_pretrain_epochs: int = 0
    mode_order: int = 0
    """MoDE: order of the allowed dependence on the mass (0 = flat, 1 = linear, 2 = quadratic)."""
    mode_monotonic: bool = False
    """MoDE order 2: allow only quadratic dependences that are monotonic in the mass."""
    strength_scan: list[float] = field(default_factory=list)
    """Decorrelation strengths λ to scan (``hepinfer train --scan-strength 0.5,1,2,5``): one
    training per λ, the (rejection, 1/JSD) front on the validation fold written to
    ``<output>/strength_scan.json`` and ``.png``, and the run continued with the chosen λ
    (see hepinfer.train.scan). Empty: train ``decorrelation_strength`` only."""
    strength_scan_min_rejection_fraction: float = 0.5
    """The scan keeps the flattest λ (largest validation 1/JSD) whose validation rejection is at
    least this fraction of the undecorrelated (λ = 0) model's."""


@dataclass
class BDTConfig:
    n_trees: int = 500
    max_depth: int = 6
    learning_rate: float = 0.1
    early_stopping_rounds: int = 20
    subsample: float = 1.0
    params: dict[str, Any] = field(default_factory=dict)
    """Extra xgboost parameters, passed through."""


@dataclass
class RunConfig:
    """The whole run; ``hepinfer train config.toml`` executes it with :func:`hepinfer.train.run`."""

    seed: int = 0
    device: str = "cpu"
    output: str = "hepinfer-train"
    export_onnx: bool = True
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    bdt: BDTConfig = field(default_factory=BDTConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_SECTIONS = {
    "data": DataConfig,
    "model": ModelConfig,
    "training": TrainingConfig,
    "loss": LossConfig,
    "bdt": BDTConfig,
}


def _type_name(t: Any) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(t, str(t))


def _convert(key: str, value: Any, annotation: Any) -> Any:
    ann = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    ann = ann.replace("typing.", "")
    if ann == "bool":
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if ann == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if ann == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if ann == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    if ann == "list[str]":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key}: expected a list of strings, got {value!r}")
        return list(value)
    if ann == "list[int]":
        if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        ):
            raise ConfigError(f"{key}: expected a list of integers, got {value!r}")
        return list(value)
    if ann == "list[float]":
        ok = isinstance(value, list) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value
        )
        if not ok:
            raise ConfigError(f"{key}: expected a list of finite numbers, got {value!r}")
        return [float(v) for v in value]
    if ann == "list[list[int]]":
        ok = isinstance(value, list) and all(
            isinstance(b, list) and b and all(isinstance(v, int) and not isinstance(v, bool) for v in b)
            for b in value
        )
        if not ok:
            raise ConfigError(f"{key}: expected a list of lists of integers, got {value!r}")
        return [list(b) for b in value]
    if ann == "Union[str, list[str]]":
        if isinstance(value, str):
            return value
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return list(value)
        raise ConfigError(f"{key}: expected a string or a non-empty list of strings, got {value!r}")
    if ann == "dict[str, str]":
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ConfigError(f'{key}: expected a table of strings (name = "expression"), got {value!r}')
        return {str(k): v for k, v in value.items()}
    if ann == "dict[str, list[str]]":
        if not isinstance(value, dict):
            raise ConfigError(f'{key}: expected a table (class = ["files", ...]), got {value!r}')
        out: dict[str, list[str]] = {}
        for k, v in value.items():
            files = [v] if isinstance(v, str) else v
            if not isinstance(files, list) or not files or not all(isinstance(f, str) for f in files):
                raise ConfigError(
                    f"{key}.{k}: expected a file pattern or a non-empty list of them, got {v!r}"
                )
            out[str(k)] = list(files)
        return out
    if ann == "dict[str, Any]":
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table, got {value!r}")
        return dict(value)
    raise ConfigError(f"{key}: unsupported option type {ann}")  # pragma: no cover


def _unknown(key: str, name: str, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else f"; known keys: {', '.join(sorted(known))}"
    return ConfigError(f"unknown key {key!r}{hint}")


def _fill(cls: Any, values: Any, prefix: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{prefix.rstrip('.')}: expected a table, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for name, value in values.items():
        key = prefix + str(name)
        if name not in fields:
            raise _unknown(key, str(name), list(fields))
        kwargs[name] = _convert(key, value, fields[name].type)
    return cls(**kwargs)


_BYTE_UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
}


def memory_bytes(text: str) -> int:
    """``"2 GB"`` -> 2e9 bytes (B, KB, MB, GB, TB, KiB, MiB, GiB; a bare number is bytes)."""
    import re

    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", text)
    unit = m.group(2).upper() if m else ""
    if m is None or unit not in _BYTE_UNITS or float(m.group(1)) <= 0:
        raise ValueError(f"expected a positive size such as '2 GB' or '500 MB', got {text!r}")
    return int(float(m.group(1)) * _BYTE_UNITS[unit])


def _check(cond: bool, key: str, message: str) -> None:
    if not cond:
        raise ConfigError(f"{key}: {message}")


def _validate(c: RunConfig) -> None:
    _check(
        c.device == "cpu" or c.device.startswith("cuda"),
        "device",
        f"must be 'cpu' or 'cuda[:N]', got {c.device!r}",
    )
    d, m, t, lo, b = c.data, c.model, c.training, c.loss, c.bdt
    _check(d.n_signal >= 0, "data.n_signal", f"must be >= 0, got {d.n_signal}")
    _check(d.n_background >= 0, "data.n_background", f"must be >= 0, got {d.n_background}")
    _check(len(d.features) > 0, "data.features", "needs at least one column")
    _check(d.source != "" or bool(d.classes), "data.source", "give the input files (or data.classes)")
    _check(
        not d.classes or d.source in ("toy", ""),
        "data.classes",
        f"give the files either in data.source ({d.source!r}) or per class in data.classes, not both",
    )
    _check(
        not d.classes or len(d.classes) >= 2,
        "data.classes",
        f"needs at least two classes, got {list(d.classes)}",
    )
    _check(d.max_events >= 0, "data.max_events", f"must be >= 0 (0 = no limit), got {d.max_events}")
    if d.memory_budget.strip():
        try:
            memory_bytes(d.memory_budget)
        except ValueError as e:
            raise ConfigError(f"data.memory_budget: {e}") from None
    _check(
        len(set(d.class_names)) == len(d.class_names),
        "data.class_names",
        f"names must differ, got {d.class_names}",
    )
    _check(
        bool(d.chunk_size.strip()), "data.chunk_size", "give a size such as '100 MB' or a number of events"
    )
    _check(
        lo.decorrelation == "none" or bool(d.mass),
        "data.mass",
        f"loss.decorrelation = {lo.decorrelation!r} needs the variable to decorrelate from",
    )
    _check(len(d.particle_features) > 0, "data.particle_features", "needs at least one column")
    _check(d.max_particles >= 1, "data.max_particles", f"must be >= 1, got {d.max_particles}")
    _check(
        d.n_folds >= 3, "data.n_folds", f"must be >= 3 (train, validation and test folds), got {d.n_folds}"
    )
    _check(
        0 <= d.validation_fold < d.n_folds,
        "data.validation_fold",
        f"must be in [0, {d.n_folds}), got {d.validation_fold}",
    )
    _check(0 <= d.test_fold < d.n_folds, "data.test_fold", f"must be in [0, {d.n_folds}), got {d.test_fold}")
    _check(d.test_fold != d.validation_fold, "data.test_fold", "must differ from data.validation_fold")
    _check(m.kind in MODEL_KINDS, "model.kind", f"must be one of {', '.join(MODEL_KINDS)}; got {m.kind!r}")
    _check(all(h > 0 for h in m.hidden), "model.hidden", f"widths must be > 0, got {m.hidden}")
    _check(m.latent > 0, "model.latent", f"must be > 0, got {m.latent}")
    _check(m.k >= 1, "model.k", f"must be >= 1, got {m.k}")
    _check(0.0 <= m.dropout < 1.0, "model.dropout", f"must be in [0, 1), got {m.dropout}")
    _check(
        m.activation in ("relu", "elu", "gelu", "tanh", "silu"),
        "model.activation",
        f"unknown activation {m.activation!r}",
    )
    _check(t.epochs >= 1, "training.epochs", f"must be >= 1, got {t.epochs}")
    _check(t.batch_size >= 0, "training.batch_size", f"must be >= 0 (0 = full batch), got {t.batch_size}")
    _check(t.learning_rate > 0, "training.learning_rate", f"must be > 0, got {t.learning_rate}")
    _check(t.weight_decay >= 0, "training.weight_decay", f"must be >= 0, got {t.weight_decay}")
    _check(t.patience >= 0, "training.patience", f"must be >= 0, got {t.patience}")
    _check(
        t.n_folds == 0 or t.n_folds >= 3,
        "training.n_folds",
        f"must be 0 (off) or >= 3 (applied, validation and training folds), got {t.n_folds}",
    )
    _check(t.checkpoint_every >= 0, "training.checkpoint_every", f"must be >= 0, got {t.checkpoint_every}")
    _check(lo.kind in LOSS_KINDS, "loss.kind", f"must be one of {', '.join(LOSS_KINDS)}; got {lo.kind!r}")
    _check(lo.focal_gamma >= 0, "loss.focal_gamma", f"must be >= 0, got {lo.focal_gamma}")
    _check(
        lo.decorrelation in DECORRELATIONS,
        "loss.decorrelation",
        f"must be one of {', '.join(DECORRELATIONS)}; got {lo.decorrelation!r}",
    )
    _check(
        lo.decorrelation_strength >= 0,
        "loss.decorrelation_strength",
        f"must be >= 0, got {lo.decorrelation_strength}",
    )
    _check(lo.fgsm_epsilon >= 0, "loss.fgsm_epsilon", f"must be >= 0, got {lo.fgsm_epsilon}")
    _check(0.0 <= lo.fgsm_weight <= 1.0, "loss.fgsm_weight", f"must be in [0, 1], got {lo.fgsm_weight}")
    _check(lo.adversary_steps >= 1, "loss.adversary_steps", f"must be >= 1, got {lo.adversary_steps}")
    _check(
        lo.adversary_learning_rate > 0,
        "loss.adversary_learning_rate",
        f"must be > 0, got {lo.adversary_learning_rate}",
    )
    _check(lo.adversary_pretrain_epochs >= 0, "loss.adversary_pretrain_epochs", "must be >= 0")
    _check(
        lo.mode_order in (0, 1, 2),
        "loss.mode_order",
        f"must be 0 (flat), 1 (linear) or 2 (quadratic), got {lo.mode_order}",
    )
    _check(
        not lo.mode_monotonic or lo.mode_order == 2,
        "loss.mode_monotonic",
        f"needs loss.mode_order = 2, got {lo.mode_order}",
    )
    _check(
        t.selection in ("auto", "loss", "objective", "rejection"),
        "training.selection",
        f"must be 'auto', 'objective', 'loss' or 'rejection', got {t.selection!r}",
    )
    _check(t.min_inverse_jsd >= 0, "training.min_inverse_jsd", f"must be >= 0, got {t.min_inverse_jsd}")
    _check(
        all(v > 0 for v in lo.strength_scan),
        "loss.strength_scan",
        f"strengths must be > 0, got {lo.strength_scan}",
    )
    _check(
        not lo.strength_scan or lo.decorrelation != "none",
        "loss.strength_scan",
        "needs loss.decorrelation = 'disco', 'mode' or 'adversary'",
    )
    _check(
        0 <= lo.strength_scan_min_rejection_fraction <= 1,
        "loss.strength_scan_min_rejection_fraction",
        f"must be in [0, 1], got {lo.strength_scan_min_rejection_fraction}",
    )
    binary = lo.kind in ("bce", "focal")
    _check(
        t.selection != "rejection" or binary,
        "training.selection",
        f"'rejection' needs a binary classifier (loss.kind = 'bce' or 'focal'), not {lo.kind!r}",
    )
    _check(
        lo.decorrelation == "none" or binary,
        "loss.decorrelation",
        f"{lo.decorrelation!r} needs a binary classifier (loss.kind = 'bce' or 'focal'), not {lo.kind!r}",
    )
    if m.kind == "autoencoder":
        _check(
            lo.kind == "reconstruction",
            "loss.kind",
            "model.kind = 'autoencoder' trains with loss.kind = 'reconstruction'",
        )
    if m.kind == "gaussian":
        _check(
            lo.kind == "gaussian_nll",
            "loss.kind",
            "model.kind = 'gaussian' trains with loss.kind = 'gaussian_nll'",
        )
    if lo.kind in ("reconstruction", "gaussian_nll"):
        _check(
            m.kind in ("autoencoder", "gaussian"),
            "model.kind",
            f"loss.kind = {lo.kind!r} needs a matching model",
        )
    if m.kind == "bdt":
        _check(
            lo.kind in ("bce", "cross_entropy", "mse"),
            "loss.kind",
            "model.kind = 'bdt' trains with 'bce' (binary:logistic), 'cross_entropy' (multi:softprob) "
            f"or 'mse' (reg:squarederror), not {lo.kind!r}",
        )
        _check(
            lo.decorrelation == "none",
            "loss.decorrelation",
            f"{lo.decorrelation!r} is a term of a network's loss; model.kind = 'bdt' trains xgboost without "
            "it (set loss.decorrelation = 'none', or train a network: model.kind = 'mlp')",
        )
    _check(b.n_trees >= 1, "bdt.n_trees", f"must be >= 1, got {b.n_trees}")
    _check(b.max_depth >= 1, "bdt.max_depth", f"must be >= 1, got {b.max_depth}")
    _check(b.learning_rate > 0, "bdt.learning_rate", f"must be > 0, got {b.learning_rate}")
    _check(b.early_stopping_rounds >= 0, "bdt.early_stopping_rounds", "must be >= 0")
    _check(0 < b.subsample <= 1, "bdt.subsample", f"must be in (0, 1], got {b.subsample}")


def parse_config(values: dict[str, Any]) -> RunConfig:
    """Validate a configuration given as nested dicts (the parsed TOML) into a :class:`RunConfig`."""
    if not isinstance(values, dict):
        raise ConfigError(f"the configuration must be a table, got {type(values).__name__}")
    top = {f.name: f for f in dataclasses.fields(RunConfig)}
    kwargs: dict[str, Any] = {}
    for name, value in values.items():
        if name in _SECTIONS:
            kwargs[name] = _fill(_SECTIONS[name], value, f"{name}.")
        elif name in top:
            kwargs[name] = _convert(name, value, top[name].type)
        else:
            raise _unknown(str(name), str(name), list(top))
    config = RunConfig(**kwargs)
    _validate(config)
    return config


def _read_toml(path: str) -> dict[str, Any]:
    try:
        import tomllib  # type: ignore[import-not-found]
    except ModuleNotFoundError:  # Python < 3.11
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            raise ConfigError(f"{path}: reading TOML on Python < 3.11 needs the 'tomli' package") from None
    with open(path, "rb") as f:
        try:
            return tomllib.load(f)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: not valid TOML: {e}") from None


def load_config(
    source: Union[str, "os.PathLike[str]", dict[str, Any]], overrides: Optional[list[str]] = None
) -> RunConfig:
    """Read and validate a configuration file (``.toml``; ``.yaml``/``.yml`` with PyYAML) or dict.

    ``overrides`` are ``"section.key=value"`` strings with TOML values (``training.epochs=5``,
    ``loss.decorrelation="disco"``), applied before validation.
    """
    if isinstance(source, dict):
        values = source
        where = "config"
    else:
        path = os.fspath(source)
        where = path
        if not os.path.exists(path):
            raise ConfigError(f"configuration file {path!r} does not exist")
        if path.endswith((".yaml", ".yml")):
            try:
                import yaml  # type: ignore[import-untyped]
            except ModuleNotFoundError:
                raise ConfigError(
                    f"{path}: reading YAML needs PyYAML; or write the configuration as TOML"
                ) from None
            with open(path) as f:
                values = yaml.safe_load(f) or {}
        else:
            values = _read_toml(path)
    values = {k: (dict(v) if isinstance(v, dict) else v) for k, v in values.items()}
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected section.key=value")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        try:
            value = _read_value(text.strip())
        except ConfigError as e:
            raise ConfigError(f"{key.strip()}: {e}") from None
        if len(parts) == 1:
            values[parts[0]] = value
        elif len(parts) == 2:
            section = values.setdefault(parts[0], {})
            if not isinstance(section, dict):
                raise ConfigError(f"{parts[0]}: expected a table")
            section[parts[1]] = value
        else:
            raise ConfigError(f"override {item!r}: keys are 'key' or 'section.key'")
    try:
        return parse_config(values)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


def _read_value(text: str) -> Any:
    try:
        import tomllib  # type: ignore[import-not-found]
    except ModuleNotFoundError:  # pragma: no cover
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word is a string


def ordered_classes(data: DataConfig) -> list[str]:
    """The class names in label order (label ``i`` is ``ordered_classes(...)[i]``): from
    ``data.classes`` (in the order listed, except that of two classes one named "signal" is
    class 1), else ``data.class_names`` ([] when the label branch's values decide: see
    :attr:`hepinfer.train.data.TrainingData.class_names`)."""
    if data.classes:
        names = list(data.classes)
        signal = [n for n in names if n.lower() == "signal"]
        if len(names) == 2 and len(signal) == 1:
            names.remove(signal[0])
            names.append(signal[0])
        return names
    return list(data.class_names)


# ---------------------------------------------------------------------------------- documentation

#: The meaning of keys whose dataclass field has no docstring (a docstring, where a field has
#: one, is what :func:`default_config_text` prints).
_KEY_DOCS: dict[str, str] = {
    "seed": "Seed of the toy generator, the weight initialisation and the batch order.",
    "device": '"cpu", "cuda" or "cuda:N".',
    "output": "Folder for the model, summary.json, checkpoints and plots.",
    "export_onnx": "Export networks to <output>/model.onnx (checked against onnxruntime).",
    "model.kind": "One of " + ", ".join(MODEL_KINDS) + ".",
    "model.hidden": "Hidden layer widths (MLP, autoencoder, Gaussian; the per-particle network phi of deepsets/pfn/efn).",
    "model.latent": "Latent width: the pooled particle representation (deepsets/pfn/efn) or the autoencoder's bottleneck.",
    "model.rho_hidden": "Hidden widths of the network after pooling (deepsets, pfn, efn, particlenet).",
    "model.blocks": "ParticleNet: the EdgeConv blocks, each a list of channel widths.",
    "model.activation": "relu, elu, gelu, tanh or silu.",
    "model.dropout": "Dropout probability in [0, 1).",
    "training.epochs": "Passes over the training sample.",
    "training.learning_rate": "Adam learning rate.",
    "training.weight_decay": "AdamW weight decay (0 = plain Adam).",
    "training.progress": "Show a progress bar.",
    "training.checkpoint_every": "Write <output>/checkpoint.pt every this many epochs (0 = never).",
    "loss.kind": "One of " + ", ".join(LOSS_KINDS) + ".",
    "loss.focal_gamma": 'Focusing parameter γ of loss.kind = "focal".',
    "loss.decorrelation": "One of " + ", ".join(DECORRELATIONS) + " (decorrelates the score from data.mass).",
    "loss.adversary_steps": "Adversary updates per classifier step.",
    "loss.adversary_learning_rate": "Learning rate of the adversary.",
    "loss.adversary_pretrain_epochs": "Epochs the adversary trains alone before the classifier.",
    "bdt.n_trees": "Maximum number of boosting rounds.",
    "bdt.max_depth": "Maximum tree depth.",
    "bdt.learning_rate": "Shrinkage η.",
    "bdt.early_stopping_rounds": "Stop when the validation loss has not improved for this many rounds (0 = off).",
    "bdt.subsample": "Fraction of events sampled per tree, in (0, 1].",
}


def _field_docstrings(cls: type) -> dict[str, str]:
    """{field: docstring} from the string literal that follows each field in the class body."""
    import ast
    import inspect
    import textwrap

    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):  # pragma: no cover - no source (zipped, frozen)
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for node, after in zip(body, body[1:]):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = inspect.cleandoc(after.value.value)
    return docs


def key_docs() -> dict[str, str]:
    """The meaning of every configuration key (``"data.source"``, ``"seed"``, ...): the
    comments of :func:`default_config_text`."""
    out: dict[str, str] = {}
    top = _field_docstrings(RunConfig)
    for f in dataclasses.fields(RunConfig):
        if f.name not in _SECTIONS:
            out[f.name] = top.get(f.name, _KEY_DOCS.get(f.name, ""))
    for section, cls in _SECTIONS.items():
        docs = _field_docstrings(cls)
        for f in dataclasses.fields(cls):
            key = f"{section}.{f.name}"
            out[key] = docs.get(f.name, _KEY_DOCS.get(key, ""))
    return out


def _toml_value(value: Any) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML form for {value!r}")  # pragma: no cover


def _comment(text: str) -> list[str]:
    return [f"# {line}".rstrip() for line in (text or "(undocumented)").splitlines()]


def default_config_text(config: Optional[RunConfig] = None) -> str:
    """The whole configuration as TOML, every key with a comment saying what it does:
    ``hepinfer train --print-config``. It loads back (:func:`load_config`) to ``config`` (the
    defaults when ``None``)."""
    config = config or RunConfig()
    docs = key_docs()
    lines = [
        "# hepinfer train configuration: every key with its default value.",
        "# Run with: hepinfer train run.toml [--set section.key=value ...]",
        "",
    ]
    values = config.to_dict()
    for f in dataclasses.fields(RunConfig):
        if f.name in _SECTIONS:
            continue
        lines += _comment(docs[f.name])
        lines.append(f"{f.name} = {_toml_value(values[f.name])}")
    for section, cls in _SECTIONS.items():
        lines += ["", f"[{section}]"]
        doc = _class_doc(cls)
        if doc:
            lines += _comment(doc)
        for f in dataclasses.fields(cls):
            lines += _comment(docs[f"{section}.{f.name}"])
            lines.append(f"{f.name} = {_toml_value(values[section][f.name])}")
    return "\n".join(lines) + "\n"


def _class_doc(cls: type) -> str:
    import inspect

    doc = cls.__doc__ or ""
    return "" if doc.startswith(f"{cls.__name__}(") else inspect.cleandoc(doc)
