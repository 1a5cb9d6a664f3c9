"""The training loop for the torch models: losses, decorrelation, FGSM, early stopping,
progress bars, checkpoints and exact resume.

Reproducibility: every epoch runs with the random state seeded from ``(seed, epoch)`` (the
caller's global torch random state is left untouched), so the same seed gives identical
weights, and a run resumed from a checkpoint continues exactly like the uninterrupted one.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import nn

from hepinfer.disco import distance_correlation
from hepinfer.metrics import roc_auc
from hepinfer.train import losses_extra as lx
from hepinfer.train.decorrelation import Penalty, resolve_penalty

__all__ = ["History", "Sample", "Trainer", "resolve_penalty"]


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


@dataclass
class History:
    """Per-epoch records: ``train_loss``, ``validation_loss`` and metrics (``validation_auc``,
    ``validation_dcor2`` of score and mass on background when a mass is given)."""

    epochs: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    stopped_early: bool = False

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
        Early stopping on the validation loss (0 = off); the best weights are restored.
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
        inputs = batch.inputs
        output = self._forward(inputs)
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
        train: Sample,
        validation: Optional[Sample] = None,
        *,
        resume: bool = False,
        restore_best: bool = True,
    ) -> History:
        """Train for the configured number of epochs (continuing from ``self.epoch``).

        With ``resume=True`` and an existing checkpoint file the state is loaded first.
        Returns the :class:`History`.
        """
        from tqdm.auto import tqdm

        if resume and self.checkpoint_path and os.path.exists(self.checkpoint_path):
            self.load_checkpoint(self.checkpoint_path)
        if len(train) == 0:
            raise ValueError("the training sample is empty")
        train = train.to(self.device)
        validation = None if validation is None or len(validation) == 0 else validation.to(self.device)
        if self.adversary is not None and self.epoch == 0:
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
        bar = tqdm(
            total=self.epochs, initial=self.epoch, disable=not self.progress, desc="training", unit="epoch"
        )
        try:
            while self.epoch < self.epochs:
                record = self._run_epoch(train, validation)
                self.history.epochs.append(record)
                bar.set_postfix({k: f"{v:.4g}" for k, v in record.items() if k != "epoch"})
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
            bar.close()
        if restore_best and self._best_state is not None:
            self.model.load_state_dict(self._best_state)
        return self.history

    def _run_epoch(self, train: Sample, validation: Optional[Sample]) -> dict[str, float]:
        ctx, s = self._rng_context(self.epoch)
        self.model.train()
        total_loss, total_w = 0.0, 0.0
        with ctx:
            torch.manual_seed(s)
            g = torch.Generator().manual_seed(s)
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
        self.epoch += 1
        record: dict[str, float] = {"epoch": float(self.epoch), "train_loss": total_loss / total_w}
        if validation is not None:
            record.update(self.evaluate(validation))
        return record

    @torch.no_grad()
    def evaluate(self, sample: Sample, prefix: str = "validation_") -> dict[str, float]:
        """Loss (with the decorrelation penalty, without FGSM) and metrics on a sample."""
        self.model.eval()
        sample = sample.to(self.device)
        total, plain = self.objective(sample, adversarial=False)
        out = {f"{prefix}loss": float(total), f"{prefix}plain_loss": float(plain)}
        if self.loss in ("bce", "focal"):
            score = torch.sigmoid(self._forward(sample.inputs).reshape(-1)).cpu().numpy()
            w = None if sample.weight is None else sample.weight.cpu().numpy()
            out[f"{prefix}auc"] = roc_auc(score, sample.target.cpu().numpy(), w)
            if sample.mass is not None:
                bkg = sample.target.reshape(-1).cpu().numpy() < 0.5
                if bkg.sum() > 1:
                    out[f"{prefix}dcor2"] = _background_dcor2(
                        score[bkg], sample.mass.cpu().numpy()[bkg], None if w is None else w[bkg]
                    )
        return out

    def _early_stopping(self, record: dict[str, float]) -> bool:
        key = "validation_loss" if "validation_loss" in record else "train_loss"
        value = record[key]
        if value < self._best_loss:
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
            "history": {"epochs": self.history.epochs, "best_epoch": self.history.best_epoch},
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
        self.history = History(list(state["history"]["epochs"]), int(state["history"]["best_epoch"]))
        self._best_loss = float(state["best_loss"])
        self._best_state = state["best_state"]
        self._bad_epochs = int(state["bad_epochs"])
        return state
