"""The training loop for the torch models: losses, decorrelation, FGSM, model selection and
early stopping, progress bars, checkpoints and exact resume.

Model selection (which epoch's weights :meth:`Trainer.fit` restores, and what early stopping
watches) is an explicit objective, ``Trainer(selection=...)``, recorded per epoch as
``record["selection"]`` (lower is better) and described in words in ``History.selection``:

* ``"loss"``: the validation loss (the training loss without a validation sample): the plain loss
  plus λ·penalty for DisCo/MoDE; for the adversary the plain loss only (its NLL is not a measure
  of the classifier). The default without decorrelation.
* ``"objective"``: the full loss *including the decorrelation term*, evaluated after each epoch on
  the validation sample, or on the whole training sample (no gradient, no FGSM) when there is none:
  ``plain + λ·penalty`` for DisCo / MoDE / a callable, and ``plain + λ·dCor²(score, mass)`` on the
  background for the adversary, whose own NLL is replaced by the distance correlation because it
  is lowest when the score predicts the mass best (the opposite of what is wanted). The default
  with decorrelation.
* ``"rejection"``: the largest background rejection 1/ε_B at 50 % signal efficiency among the
  epochs whose 1/JSD (background mass passing vs failing that cut, ``mass_bins`` bins) is at least
  ``min_inverse_jsd``; when no epoch reaches the floor, the epoch with the largest 1/JSD.

A decorrelated classifier that ends dead (AUC of the selected epoch below ``MIN_AUC`` = 0.55 on the
selection sample) or collapsed (standard deviation of its score below ``MIN_SCORE_SPREAD``) raises a
:class:`TrainingWarning`: the strength is too large for the sample; scan it with
:func:`hepinfer.train.scan.scan_strength` (``hepinfer train --scan-strength``).

Reproducibility: every epoch runs with the random state seeded from ``(seed, epoch)`` (the
caller's global torch random state is left untouched), so the same seed gives identical
weights, and a run resumed from a checkpoint continues exactly like the uninterrupted one.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import nn

from hepinfer._core import Error
from hepinfer.disco import distance_correlation
from hepinfer.metrics import decorrelation_metrics, roc_auc
from hepinfer.train import losses_extra as lx
from hepinfer.train.decorrelation import Penalty, resolve_penalty

__all__ = [
    "SELECTIONS",
    "History",
    "Sample",
    "StreamedSample",
    "Trainer",
    "TrainingWarning",
    "resolve_penalty",
]

#: model-selection objectives of :class:`Trainer` (see the module docstring)
SELECTIONS = ("auto", "loss", "objective", "rejection")
#: a decorrelated classifier whose selected epoch has a lower AUC than this raises TrainingWarning
MIN_AUC = 0.55
#: ... as does one whose score has a smaller standard deviation than this (a collapsed score)
MIN_SCORE_SPREAD = 1e-3
#: signal efficiency of the working point where rejection and 1/JSD are measured every epoch
SIGNAL_EFFICIENCY = 0.5


class TrainingWarning(Error, UserWarning):
    """A training run finished but its result is suspect (a dead or collapsed decorrelated
    classifier): a :class:`UserWarning` (and a :class:`hepinfer.Error`, so that it is hepinfer's
    own class). Filter it like any warning:
    ``warnings.filterwarnings("error", category=hepinfer.train.TrainingWarning)``."""


@dataclass
class Sample:
    """A set of events as tensors.

    ``inputs``: what the model's ``forward`` takes (``(x,)`` or ``(particles, mask)``);
    ``target``: labels (0 = background, 1 = signal; class indices; or regression targets);
    ``weight``: event weights (optional); ``mass``: the variable to decorrelate from (optional).
    """

    inputs: tuple[torch.Tensor, ...]
    target: torch.Tensor
    weight: Optional[torch.Tensor] = None
    mass: Optional[torch.Tensor] = None

    def __post_init__(self) -> None:
        if isinstance(self.inputs, torch.Tensor):
            self.inputs = (self.inputs,)
        self.inputs = tuple(torch.as_tensor(t) for t in self.inputs)
        self.target = torch.as_tensor(self.target)
        n = len(self.target)
        for i, t in enumerate(self.inputs):
            if len(t) != n:
                raise ValueError(f"Sample: inputs[{i}] has {len(t)} events but target has {n}")
        for name in ("weight", "mass"):
            v = getattr(self, name)
            if v is not None:
                v = torch.as_tensor(v)
                if v.shape != (n,):
                    raise ValueError(f"Sample: {name} must have shape ({n},), got {tuple(v.shape)}")
                setattr(self, name, v)

    def __len__(self) -> int:
        return len(self.target)

    def subset(self, index: Union[torch.Tensor, np.ndarray, slice]) -> "Sample":
        index = torch.as_tensor(index) if isinstance(index, np.ndarray) else index
        return Sample(
            tuple(t[index] for t in self.inputs),
            self.target[index],
            None if self.weight is None else self.weight[index],
            None if self.mass is None else self.mass[index],
        )

    def to(self, device: Union[str, torch.device]) -> "Sample":
        move = lambda t: None if t is None else t.to(device)
        return Sample(
            tuple(t.to(device) for t in self.inputs),
            self.target.to(device),
            move(self.weight),
            move(self.mass),
        )


class StreamedSample:
    """A sample too large to hold in memory, for :meth:`Trainer.fit`: ``chunks(epoch)`` yields
    :class:`Sample` pieces (read afresh every epoch, shuffled as the caller sees fit, e.g. within
    a buffer of file chunks; :mod:`hepinfer.train.streaming` builds them from ROOT files).

    As training sample, every piece is cut into mini-batches (shuffled within the piece), so
    ``batch_size = 0`` (full batch) is refused, and DisCo / MoDE penalties are computed per
    mini-batch, as they are in memory with ``batch_size > 0``. As validation sample, the model's
    outputs, labels, weights and masses are gathered piece by piece (not the inputs: a few
    numbers per event) and the loss and metrics computed on them, so the validation fold need
    not fit in memory either. ``has_mass`` says whether the pieces carry ``Sample.mass``."""

    def __init__(self, chunks: Callable[[int], Iterable[Sample]], *, has_mass: bool = False) -> None:
        self.chunks = chunks
        self.has_mass = bool(has_mass)


@dataclass
class History:
    """Per-epoch records: ``train_loss``, ``validation_loss`` and metrics (``validation_auc``,
    ``validation_background_rejection`` and ``validation_inverse_jsd`` at 50 % signal efficiency,
    ``validation_score_spread``, ``validation_dcor2`` of score and mass on background when a mass
    is given; the same with the prefix ``train_sample_`` when the selection is evaluated on the
    training sample) and ``selection``, the model-selection score (lower is better).
    ``best_epoch`` (1-based) is the epoch with the lowest ``selection``; the attribute
    ``selection`` says in words what it is."""

    epochs: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    stopped_early: bool = False
    selection: str = ""

    def column(self, name: str) -> list[float]:
        return [e[name] for e in self.epochs if name in e]


def _background_dcor2(score: np.ndarray, mass: np.ndarray, weight: Optional[np.ndarray]) -> float:
    """dCor²(score, mass) (V-statistic, weighted) for the validation metrics: hepinfer's
    O(n log n) C++ estimator (it is evaluated every epoch, on validation samples of thousands of
    events)."""
    if weight is not None and not np.sum(weight) > 0:
        return float("nan")
    return float(
        distance_correlation(
            np.asarray(score, dtype=np.float64),
            np.asarray(mass, dtype=np.float64),
            None if weight is None else np.asarray(weight, dtype=np.float64),
        )
    )


#: record entries shown on the progress bar
_SHOWN = ("train_loss", "validation_loss", "validation_auc", "validation_dcor2", "validation_inverse_jsd")

_LOSSES = ("bce", "cross_entropy", "focal", "mse", "gaussian_nll", "reconstruction")


class Trainer:
    """Trains a torch model with HEP conventions.

    Parameters
    ----------
    model
        A module whose ``forward(*sample.inputs)`` returns logits (classification), a prediction
        (regression; ``(n, 2)`` mean and width for ``"gaussian_nll"``) or, for
        ``"reconstruction"``, an :class:`~hepinfer.train.nets.Autoencoder`.
    loss
        ``"bce"`` (weighted binary cross-entropy on logits), ``"cross_entropy"`` (several
        classes), ``"focal"`` (γ = ``focal_gamma``), ``"mse"``, ``"gaussian_nll"`` or
        ``"reconstruction"`` (autoencoder: mean squared reconstruction error).
    decorrelation
        ``None``, ``"disco"`` (λ·dCor²(score, mass) on the background events of each batch),
        ``"mode"`` (:class:`hepinfer.train.decorrelation.MoDE`), ``"adversary"`` (Learning to Pivot: a
        :class:`~hepinfer.train.losses_extra.MassAdversary` trained in alternation, its loss
        reversed into the classifier with strength λ) or any callable
        ``penalty(score, mass, weight) -> tensor`` (added as λ·penalty). λ is
        ``decorrelation_strength``. DisCo wants large batches (``batch_size=0`` = full batch).
    fgsm_epsilon, fgsm_weight
        FGSM adversarial training: the loss becomes ``(1-α) L(x) + α L(x + ε sign ∇ₓL)``.
    batch_size
        Events per optimiser step; 0 = the whole sample.
    patience
        Early stopping on the selection score (0 = off); the best epoch's weights are restored.
    selection, min_inverse_jsd, mass_bins
        The model-selection objective (``"auto"``: ``"objective"`` with decorrelation,
        ``"loss"`` without; see the module docstring), the 1/JSD floor of ``"rejection"`` and the
        number of mass bins of the JSD.
    seed, device, progress
        Random seed, ``"cpu"``/``"cuda"``, tqdm progress bar with the loss and metrics per epoch.
    checkpoint_path, checkpoint_every
        Write model and optimiser state, settings and epoch every ``checkpoint_every`` epochs;
        :meth:`fit` with ``resume=True`` continues from the file.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        loss: str = "bce",
        focal_gamma: float = 2.0,
        decorrelation: Union[None, str, Penalty] = None,
        decorrelation_strength: float = 0.0,
        decorrelation_options: Optional[dict[str, Any]] = None,
        fgsm_epsilon: float = 0.0,
        fgsm_weight: float = 0.5,
        adversary: Optional[lx.MassAdversary] = None,
        adversary_steps: int = 1,
        adversary_learning_rate: float = 1e-3,
        adversary_pretrain_epochs: int = 0,
        epochs: int = 10,
        batch_size: int = 1024,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        patience: int = 0,
        selection: str = "auto",
        min_inverse_jsd: float = 0.0,
        mass_bins: int = 50,
        seed: int = 0,
        device: Union[str, torch.device] = "cpu",
        progress: bool = True,
        checkpoint_path: Union[None, str, "os.PathLike[str]"] = None,
        checkpoint_every: int = 1,
    ) -> None:
        if loss not in _LOSSES:
            raise ValueError(f"loss must be one of {', '.join(_LOSSES)}; got {loss!r}")
        if decorrelation == "none":
            decorrelation = None
        if decorrelation is not None and loss not in ("bce", "focal"):
            raise ValueError(f"decorrelation needs a binary classifier (loss 'bce' or 'focal'), not {loss!r}")
        if selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {', '.join(SELECTIONS)}; got {selection!r}")
        if selection == "rejection" and loss not in ("bce", "focal"):
            raise ValueError(
                f"selection 'rejection' needs a binary classifier (loss 'bce' or 'focal'), not {loss!r}"
            )
        if not min_inverse_jsd >= 0 or mass_bins < 1:
            raise ValueError("min_inverse_jsd must be >= 0 and mass_bins >= 1")
        if epochs < 1 or batch_size < 0 or learning_rate <= 0:
            raise ValueError("epochs must be >= 1, batch_size >= 0 and learning_rate > 0")
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device 'cuda' was asked for but torch sees no CUDA device")
        self.model = model.to(self.device)
        self.loss = loss
        self.focal_gamma = float(focal_gamma)
        self.decorrelation_strength = float(decorrelation_strength)
        self.fgsm_epsilon = float(fgsm_epsilon)
        self.fgsm_weight = float(fgsm_weight)
        self.epochs = int(epochs)
        self.batch_size = int(batch_size)
        self.patience = int(patience)
        if selection == "auto":
            selection = "loss" if decorrelation is None else "objective"
        self.selection = selection
        self.min_inverse_jsd = float(min_inverse_jsd)
        self.mass_bins = int(mass_bins)
        self.seed = int(seed)
        self.progress = bool(progress)
        self.checkpoint_path = None if checkpoint_path is None else os.fspath(checkpoint_path)
        self.checkpoint_every = int(checkpoint_every)
        self.adversary_steps = int(adversary_steps)
        self.adversary_pretrain_epochs = int(adversary_pretrain_epochs)
        self.penalty: Optional[Penalty] = None
        self.adversary: Optional[lx.MassAdversary] = None
        self.decorrelation_name = (
            decorrelation if isinstance(decorrelation, str) else (None if decorrelation is None else "custom")
        )
        if decorrelation == "adversary":
            self.adversary = (adversary or lx.MassAdversary()).to(self.device)
        elif isinstance(decorrelation, str):
            self.penalty = resolve_penalty(decorrelation, **(decorrelation_options or {}))
        elif decorrelation is not None:
            self.penalty = decorrelation
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=learning_rate, weight_decay=weight_decay
        )
        self.adversary_optimizer = (
            None
            if self.adversary is None
            else torch.optim.Adam(self.adversary.parameters(), lr=adversary_learning_rate)
        )
        self.history = History()
        self.epoch = 0  # epochs completed
        self._best_loss = math.inf
        self._best_state: Optional[dict[str, torch.Tensor]] = None
        self._bad_epochs = 0

    # ------------------------------------------------------------------ pieces
    def settings(self) -> dict[str, Any]:
        """The options this trainer was built with (stored in checkpoints)."""
        return {
            "loss": self.loss,
            "focal_gamma": self.focal_gamma,
            "decorrelation": self.decorrelation_name,
            "decorrelation_strength": self.decorrelation_strength,
            "fgsm_epsilon": self.fgsm_epsilon,
            "fgsm_weight": self.fgsm_weight,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "patience": self.patience,
            "selection": self.selection,
            "min_inverse_jsd": self.min_inverse_jsd,
            "seed": self.seed,
        }

    def _main_loss(self, output: torch.Tensor, batch: Sample, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        w = batch.weight
        if self.loss == "bce":
            return lx.binary_cross_entropy(output, batch.target, w)
        if self.loss == "focal":
            return lx.focal_loss(output, batch.target, w, gamma=self.focal_gamma)
        if self.loss == "cross_entropy":
            return lx.cross_entropy(output, batch.target, w)
        if self.loss == "mse":
            return lx.mean_squared_error(output, batch.target, w)
        if self.loss == "gaussian_nll":
            return lx.gaussian_nll(output, batch.target, w)
        return lx.weighted_mean(self.model.anomaly_score(*inputs), w)  # type: ignore[operator]  # reconstruction

    def _forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.model(*inputs)

    def _background(self, batch: Sample, output: torch.Tensor):
        if batch.mass is None:
            raise ValueError("decorrelation needs Sample.mass")
        bkg = batch.target.reshape(-1) < 0.5
        score = torch.sigmoid(output.reshape(-1))[bkg]
        weight = None if batch.weight is None else batch.weight[bkg]
        return score, batch.mass[bkg], weight

    def objective(self, batch: Sample, *, adversarial: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """(total loss to minimise, plain loss) for one batch."""
        return self._objective_of(self._forward(batch.inputs), batch, adversarial=adversarial)

    def _objective_of(
        self, output: torch.Tensor, batch: Sample, *, adversarial: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = batch.inputs
        plain = self._main_loss(output, batch, inputs)
        total = plain
        if self.fgsm_epsilon > 0 and adversarial:
            mask = inputs[1] if len(inputs) == 2 and inputs[0].ndim == 3 else None
            adv = lx.fgsm_perturb(
                lambda x: self._main_loss(self._forward(x), batch, x), inputs, self.fgsm_epsilon, mask=mask
            )
            total = (1 - self.fgsm_weight) * plain + self.fgsm_weight * self._main_loss(
                self._forward(adv), batch, adv
            )
        if self.penalty is not None and self.decorrelation_strength > 0:
            score, mass, weight = self._background(batch, output)
            if score.numel() > 1:
                total = total + self.decorrelation_strength * self.penalty(score, mass, weight)
        if self.adversary is not None and adversarial and self.decorrelation_strength > 0:
            score, mass, weight = self._background(batch, output)
            if score.numel() > 1:
                reversed_score = lx.gradient_reversal(score, self.decorrelation_strength)
                total = total + self.adversary.nll(reversed_score, mass, weight)
        return total, plain

    def _adversary_step(self, batch: Sample) -> float:
        assert self.adversary is not None and self.adversary_optimizer is not None
        with torch.no_grad():
            output = self._forward(batch.inputs)
        score, mass, weight = self._background(batch, output)
        value = 0.0
        for _ in range(self.adversary_steps):
            self.adversary_optimizer.zero_grad()
            nll = self.adversary.nll(score, mass, weight)
            nll.backward()
            self.adversary_optimizer.step()
            value = float(nll.detach())
        return value

    def _batches(self, n: int, generator: torch.Generator) -> list[torch.Tensor]:
        order = torch.randperm(n, generator=generator)
        size = n if self.batch_size == 0 else self.batch_size
        return [order[i : i + size] for i in range(0, n, size)]

    def _rng_context(self, epoch: int):
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        ctx = torch.random.fork_rng(devices=devices)
        return ctx, self.seed * 1_000_003 + epoch

    # ------------------------------------------------------------------ public
    def fit(
        self,
        train: Union[Sample, StreamedSample],
        validation: Union[None, Sample, StreamedSample] = None,
        *,
        resume: bool = False,
        restore_best: bool = True,
    ) -> History:
        """Train for the configured number of epochs (continuing from ``self.epoch``).

        With ``resume=True`` and an existing checkpoint file the state is loaded first.
        ``train`` and ``validation`` may be :class:`StreamedSample` (mini-batches only; not with
        the adversary or the autoencoder). Returns the :class:`History`.
        """
        if resume and self.checkpoint_path and os.path.exists(self.checkpoint_path):
            self.load_checkpoint(self.checkpoint_path)
        if isinstance(train, StreamedSample):
            self._check_streamable()
        else:
            if len(train) == 0:
                raise ValueError("the training sample is empty")
            train = train.to(self.device)
        if isinstance(validation, Sample):
            validation = None if len(validation) == 0 else validation.to(self.device)
        if self.adversary is not None and self.epoch == 0:
            assert isinstance(train, Sample)
            if train.mass is None:
                raise ValueError("decorrelation 'adversary' needs Sample.mass")
            self.adversary.fit_mass(train.mass[train.target.reshape(-1) < 0.5])
            for e in range(self.adversary_pretrain_epochs):
                ctx, s = self._rng_context(-1 - e)
                with ctx:
                    torch.manual_seed(s)
                    g = torch.Generator().manual_seed(s)
                    for idx in self._batches(len(train), g):
                        self._adversary_step(train.subset(idx.to(self.device)))
        chooser = train if validation is None else validation
        has_mass = chooser.has_mass if isinstance(chooser, StreamedSample) else chooser.mass is not None
        if self.selection == "rejection" and not has_mass:
            where = "training" if validation is None else "validation"
            raise ValueError(f"selection 'rejection' needs the mass of the {where} sample (Sample.mass)")
        self.history.selection = self.describe_selection(validation is not None)
        bar = None
        if self.progress:  # tqdm is imported only when a bar is shown
            from tqdm.auto import tqdm

            bar = tqdm(total=self.epochs, initial=self.epoch, desc="training", unit="epoch")
        try:
            while self.epoch < self.epochs:
                record = self._run_epoch(train, validation)
                record["selection"] = self._selection_score(record)
                self.history.epochs.append(record)
                if bar is not None:
                    bar.set_postfix({k: f"{v:.4g}" for k, v in record.items() if k in _SHOWN})
                    bar.update(1)
                stop = self._early_stopping(record)
                if (
                    self.checkpoint_path
                    and self.checkpoint_every
                    and (self.epoch % self.checkpoint_every == 0 or stop)
                ):
                    self.save_checkpoint(self.checkpoint_path)
                if stop:
                    self.history.stopped_early = True
                    break
        finally:
            if bar is not None:
                bar.close()
        if restore_best and self._best_state is not None:
            self.model.load_state_dict(self._best_state)
        self._warn_if_dead(restore_best)
        return self.history

    # ------------------------------------------------------------------ model selection
    @property
    def decorrelating(self) -> bool:
        """Whether a decorrelation term is trained (a penalty or the adversary with λ > 0)."""
        return (self.penalty is not None or self.adversary is not None) and self.decorrelation_strength > 0

    def _selection_prefix(self, record: dict[str, float]) -> str:
        return "validation_" if "validation_loss" in record else "train_sample_"

    def describe_selection(self, with_validation: bool) -> str:
        """The model-selection objective in words (stored in ``History.selection``)."""
        where = "validation sample" if with_validation else "training sample"
        lam = f"{self.decorrelation_strength:g}"
        if self.selection == "loss":
            what = "validation loss" if with_validation else "mean training loss of the epoch"
            if self.adversary is not None:
                what += " (plain loss: the adversary's NLL is left out)"
            elif self.decorrelating:
                what += f" (plain loss + {lam}·{self.decorrelation_name} penalty)"
            return f"minimum {what}"
        if self.selection == "objective":
            if self.adversary is not None:
                term = f" + {lam}·dCor²(score, mass | background)"
            elif self.decorrelating:
                term = f" + {lam}·{self.decorrelation_name} penalty"
            else:
                term = ""
            return f"minimum {self.loss}{term} on the {where}"
        return (
            f"maximum background rejection at {SIGNAL_EFFICIENCY:.0%} signal efficiency on the {where} "
            f"among epochs with 1/JSD >= {self.min_inverse_jsd:g} (else the largest 1/JSD)"
        )

    def _selection_score(self, record: dict[str, float]) -> float:
        """The epoch's model-selection score (lower is better; NaN counts as +inf)."""
        if self.selection == "loss":
            value = record.get("validation_loss", record["train_loss"])
        else:
            p = self._selection_prefix(record)
            if self.selection == "objective":
                value = record[f"{p}loss"]
                if self.adversary is not None and self.decorrelating:
                    value = record[f"{p}plain_loss"] + self.decorrelation_strength * record.get(
                        f"{p}dcor2", math.nan
                    )
            else:
                rejection = record.get(f"{p}background_rejection", math.nan)
                inverse_jsd = record.get(f"{p}inverse_jsd", math.nan)
                if inverse_jsd >= self.min_inverse_jsd:
                    value = -rejection  # <= -1: any epoch above the floor beats those below
                else:
                    value = 1.0 / inverse_jsd if inverse_jsd > 0 else math.inf  # JSD >= 0
        return math.inf if math.isnan(value) else float(value)

    def _warn_if_dead(self, restored: bool) -> None:
        if not self.decorrelating or self.loss not in ("bce", "focal") or not self.history.epochs:
            return
        best = self.history.best_epoch
        record = (
            self.history.epochs[best - 1]
            if restored and 1 <= best <= len(self.history.epochs)
            else self.history.epochs[-1]
        )
        p = self._selection_prefix(record)
        auc, spread = record.get(f"{p}auc", math.nan), record.get(f"{p}score_spread", math.nan)
        problems = []
        if auc < MIN_AUC:
            problems.append(f"AUC {auc:.3f} < {MIN_AUC}")
        if spread < MIN_SCORE_SPREAD:
            problems.append(f"score standard deviation {spread:.2g} < {MIN_SCORE_SPREAD:g} (collapsed)")
        if problems:
            where = "validation" if p == "validation_" else "training-sample"
            warnings.warn(
                TrainingWarning(
                    f"decorrelated training ({self.decorrelation_name}, strength {self.decorrelation_strength:g}) "
                    f"gave a dead classifier: {where} {' and '.join(problems)} at the selected epoch "
                    f"{int(record['epoch'])}. The decorrelation strength is probably too large for this "
                    "sample: lower it, or scan it with `hepinfer train --scan-strength 0.5,1,2,5` "
                    "(hepinfer.train.scan_strength)."
                ),
                stacklevel=3,
            )

    def _check_streamable(self) -> None:
        if self.batch_size == 0:
            raise ValueError(
                "batch_size = 0 (full batch) needs the whole training sample in memory; a streamed "
                "sample trains on mini-batches: give batch_size > 0"
            )
        if self.adversary is not None:
            raise ValueError(
                "decorrelation 'adversary' fits the whole training mass first; it does not stream"
            )
        if self.loss == "reconstruction":
            raise ValueError("the autoencoder ('reconstruction' loss) does not train on a streamed sample")

    def _run_epoch(
        self, train: Union[Sample, StreamedSample], validation: Union[None, Sample, StreamedSample]
    ) -> dict[str, float]:
        ctx, s = self._rng_context(self.epoch)
        self.model.train()
        total_loss, total_w = 0.0, 0.0
        with ctx:
            torch.manual_seed(s)
            g = torch.Generator().manual_seed(s)
            pieces = train.chunks(self.epoch) if isinstance(train, StreamedSample) else (train,)
            for piece in pieces:
                total_loss, total_w = self._train_piece(piece, g, total_loss, total_w)
        if total_w == 0:
            raise ValueError("the training sample is empty")
        self.epoch += 1
        record: dict[str, float] = {"epoch": float(self.epoch), "train_loss": total_loss / total_w}
        if validation is not None:
            record.update(self.evaluate(validation))
        elif self.selection != "loss" or self.decorrelating:
            # the selection (and the dead-classifier check) need the metrics of the whole sample
            record.update(self.evaluate(train, prefix="train_sample_"))
        return record

    def _train_piece(
        self, train: Sample, g: torch.Generator, total_loss: float, total_w: float
    ) -> tuple[float, float]:
        """One pass of mini-batches over ``train`` (the whole sample, or one streamed piece)."""
        if train.target.device != self.device:
            train = train.to(self.device)
        for idx in self._batches(len(train), g):
            batch = train.subset(idx.to(self.device))
            if self.adversary is not None:
                self._adversary_step(batch)
                self.adversary_optimizer.zero_grad()  # type: ignore[union-attr]
            self.optimizer.zero_grad()
            loss, _ = self.objective(batch)
            loss.backward()
            self.optimizer.step()
            total_loss += float(loss.detach()) * len(idx)
            total_w += len(idx)
        return total_loss, total_w

    @torch.no_grad()
    def _streamed_outputs(self, sample: StreamedSample) -> tuple[torch.Tensor, Sample]:
        """The model's outputs on every piece, with the pieces' labels, weights and masses
        (``Sample.inputs`` holds the outputs: the inputs themselves are not kept)."""
        outputs, targets, weights, masses = [], [], [], []
        for piece in sample.chunks(-1):
            if len(piece) == 0:
                continue
            piece = piece.to(self.device)
            outputs.append(self._forward(piece.inputs))
            targets.append(piece.target)
            weights.append(torch.ones(len(piece)) if piece.weight is None else piece.weight)
            if piece.mass is not None:
                masses.append(piece.mass)
        if not outputs:
            raise ValueError("the streamed sample to evaluate is empty")
        output = torch.cat(outputs)
        mass = torch.cat(masses) if len(masses) == len(outputs) else None
        return output, Sample((output,), torch.cat(targets), torch.cat(weights), mass)

    @torch.no_grad()
    def evaluate(
        self, sample: Union[Sample, StreamedSample], prefix: str = "validation_"
    ) -> dict[str, float]:
        """Loss (with the decorrelation penalty, without FGSM) and metrics on a sample (a
        :class:`StreamedSample` is scored piece by piece; the loss and metrics are then computed
        on the gathered outputs, so they equal those of the same events in memory)."""
        self.model.eval()
        if isinstance(sample, StreamedSample):
            output, sample = self._streamed_outputs(sample)
        else:
            sample = sample.to(self.device)
            output = self._forward(sample.inputs)
        total, plain = self._objective_of(output, sample, adversarial=False)
        out = {f"{prefix}loss": float(total), f"{prefix}plain_loss": float(plain)}
        if self.loss in ("bce", "focal"):
            score = torch.sigmoid(output.reshape(-1)).cpu().numpy()
            w = None if sample.weight is None else sample.weight.cpu().numpy()
            label = sample.target.reshape(-1).cpu().numpy()
            out[f"{prefix}auc"] = roc_auc(score, label, w)
            ww = np.ones(len(score)) if w is None else w.astype(np.float64)
            mean = float(np.average(score, weights=ww)) if ww.sum() > 0 else math.nan
            out[f"{prefix}score_spread"] = (
                math.sqrt(float(np.average((score - mean) ** 2, weights=ww))) if ww.sum() > 0 else math.nan
            )
            if sample.mass is not None:
                bkg = label < 0.5
                mass = sample.mass.cpu().numpy()
                if bkg.sum() > 1:
                    out[f"{prefix}dcor2"] = _background_dcor2(
                        score[bkg], mass[bkg], None if w is None else w[bkg]
                    )
                if bkg.any() and (~bkg).any() and ww[bkg].sum() > 0 and ww[~bkg].sum() > 0:
                    wp = decorrelation_metrics(
                        score, mass, ~bkg, ww, signal_efficiency=SIGNAL_EFFICIENCY, bins=self.mass_bins
                    )
                    # left out when undefined (no background on one side of the cut)
                    for key in ("background_rejection", "inverse_jsd"):
                        if not math.isnan(wp[key]):
                            out[f"{prefix}{key}"] = float(wp[key])
        return out

    def _early_stopping(self, record: dict[str, float]) -> bool:
        value = record["selection"]
        if value < self._best_loss or self._best_state is None:
            self._best_loss = value
            self._best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self._bad_epochs = 0
            self.history.best_epoch = self.epoch
            return False
        self._bad_epochs += 1
        return self.patience > 0 and self._bad_epochs >= self.patience

    @torch.no_grad()
    def predict(
        self, inputs: Union[Sample, Sequence[torch.Tensor], torch.Tensor], batch_size: int = 65536
    ) -> np.ndarray:
        """Scores for a sample: sigmoid (binary), softmax (several classes), the raw output
        (regression) or the reconstruction error (autoencoder), as a numpy array."""
        if isinstance(inputs, Sample):
            inputs = inputs.inputs
        if isinstance(inputs, torch.Tensor):
            inputs = (inputs,)
        self.model.eval()
        n = len(inputs[0])
        parts = []
        for i in range(0, max(n, 1), batch_size):
            chunk = [t[i : i + batch_size].to(self.device) for t in inputs]
            if self.loss == "reconstruction":
                out = self.model.anomaly_score(*chunk)  # type: ignore[operator]
            else:
                out = self._forward(chunk)
                if self.loss in ("bce", "focal"):
                    out = torch.sigmoid(out.reshape(-1))
                elif self.loss == "cross_entropy":
                    out = torch.softmax(out, dim=1)
            parts.append(out.cpu())
        return torch.cat(parts).numpy()

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(
        self, path: Union[str, "os.PathLike[str]"], extra: Optional[dict[str, Any]] = None
    ) -> None:
        """Write model/optimiser (and adversary) state, settings, epoch and history to ``path``."""
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch,
            "settings": self.settings(),
            "history": {
                "epochs": self.history.epochs,
                "best_epoch": self.history.best_epoch,
                "selection": self.history.selection,
            },
            "best_loss": self._best_loss,
            "best_state": self._best_state,
            "bad_epochs": self._bad_epochs,
            "extra": extra or {},
        }
        if self.adversary is not None:
            state["adversary"] = self.adversary.state_dict()
            state["adversary_optimizer"] = self.adversary_optimizer.state_dict()  # type: ignore[union-attr]
        path = os.fspath(path)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        tmp = path + ".tmp"
        torch.save(state, tmp)
        os.replace(tmp, path)

    def load_checkpoint(self, path: Union[str, "os.PathLike[str]"]) -> dict[str, Any]:
        """Load a checkpoint written by :meth:`save_checkpoint` into this trainer; returns it."""
        state = torch.load(os.fspath(path), map_location=self.device, weights_only=False)
        mine, theirs = self.settings(), state.get("settings", {})
        changed = [
            k for k in mine if k not in ("epochs", "patience") and k in theirs and theirs[k] != mine[k]
        ]
        if changed:
            raise ValueError(
                f"checkpoint {os.fspath(path)!r} was written with different settings: "
                + ", ".join(f"{k}={theirs[k]!r} (now {mine[k]!r})" for k in changed)
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.adversary is not None:
            self.adversary.load_state_dict(state["adversary"])
            self.adversary_optimizer.load_state_dict(state["adversary_optimizer"])  # type: ignore[union-attr]
        self.epoch = int(state["epoch"])
        self.history = History(
            list(state["history"]["epochs"]),
            int(state["history"]["best_epoch"]),
            selection=str(state["history"].get("selection", "")),
        )
        self._best_loss = float(state["best_loss"])
        self._best_state = state["best_state"]
        self._bad_epochs = int(state["bad_epochs"])
        return state
