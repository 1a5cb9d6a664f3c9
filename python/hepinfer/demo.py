"""``hepinfer demo``: W-jet tagging on Pythia jets, trained, decorrelated, exported and run by hepinfer.

The whole path of the project on a small sample (default: the committed Pythia 8 + FastJet
sample, 2000 W jets and 2000 QCD jets with pT 300-500 GeV, see :mod:`hepinfer.datasets`, plus
4000 QCD jets of an independent sample, ``EVALUATION_BACKGROUND_FILE``, for evaluation only):

1. Split the jets by event number (``event % 4``: 2 folds train, 1 validation, 1 test;
   :func:`hepinfer.train.split_by_event_number`). The evaluation-only QCD jets go to the
   validation and test folds (by the parity of their event number), never to training or early
   stopping: at 50% signal efficiency only 1-3% of the background passes, so without them the
   rejection and the 1/JSD of the passing background would rest on a handful of jets out of the
   ~500 QCD jets per fold; with them each of those folds holds ~2500 QCD jets.
2. Train four taggers, all seeded:

   * **BDT**: xgboost on the jet features ``JET_FEATURES`` (pT, eta, soft-drop mass, tau21,
     tau32, constituent count), early stopping on the (main sample's) validation fold
     (:func:`hepinfer.train.train_bdt`);
   * **MLP**: a dense network on the same features (:class:`hepinfer.train.MLP`);
   * **MLP + DisCo**: the same network trained with ``BCE + lambda * dCor^2(score, m_SD)`` on the
     background (:class:`hepinfer.train.Trainer` with ``decorrelation="disco"``), so that a cut
     on its score does not sculpt the background soft-drop mass. One network is trained per
     strength in ``DemoSettings.disco_scan``; the table's is the one with the largest 1/JSD on
     the validation fold among those keeping at least ``disco_min_rejection_fraction`` (50%) of
     the plain MLP's validation rejection (:func:`choose_disco_strength`), and all of them make
     the 1/JSD-vs-rejection curve. Batches of 512 jets, so the DisCo term's dCor^2 is estimated
     on ~250 background jets per step (hepinfer's O(n log n) estimator);
   * **PFN**: a Particle Flow Network (Deep Sets) on the constituents, padded and masked
     (``PARTICLE_FEATURES`` per particle: pT fraction, log pT, log E, delta-eta and delta-phi to
     the jet axis, charge).

3. Export them (xgboost JSON, ONNX), each file checked right after writing
   (:mod:`hepinfer.export`); load them with :class:`hepinfer.Forest` and
   :class:`hepinfer.nn.Model` and compare their scores with xgboost / onnxruntime on all the test jets.
4. Write the test jets to a ROOT file (jet features, and the PFN's constituent features as
   jagged branches ``part_*``) and score it with :func:`hepinfer.score`: the three jet-level
   taggers into ``scores.root``, the PFN from the jagged branches without padding
   (:meth:`hepinfer.nn.Model.predict_jagged`) into ``pfn_scores.root``; check both against the
   in-memory scores.
5. Print one table: AUC, background rejection 1/eps_B at 50% signal efficiency, 1/JSD of the
   background mass passing vs failing that cut (both with central 68% intervals from a
   bootstrap of the test jets, :func:`bootstrap_working_point`; the report gives the DisCo
   MLP's ratios to the plain MLP with paired intervals), background dCor^2(score, m_SD), training time and
   single-thread inference speed (all test jets in one batch, median of several repeats) of
   hepinfer against the reference runtime. Write the plots (:mod:`hepinfer.plot`: ROC, scores,
   mass sculpting, 1/JSD vs rejection, and the calibration of the BDT and MLP scores), ``report.md``
   and ``summary.json``.

Returns exit status 0 when every check passed.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np

from hepinfer.datasets.schema import CONSTITUENT_FEATURES, constituent_features, padded_constituents
from hepinfer.metrics import roc_auc

__all__ = [
    "DECORRELATION_MASS",
    "JET_FEATURES",
    "PARTICLE_FEATURES",
    "DemoSettings",
    "bootstrap_working_point",
    "choose_disco_strength",
    "evaluation_background_path",
    "run_demo",
]

#: Jet-level inputs of the BDT and the MLPs (tau32 is NaN for jets with fewer than 3
#: constituents: xgboost routes it by its learned default, the networks see -1).
JET_FEATURES = ["jet_pt", "jet_eta", "jet_sd_mass", "tau21", "tau32", "n_constituents"]
#: Per-constituent inputs of the PFN.
PARTICLE_FEATURES = list(CONSTITUENT_FEATURES)
#: The mass whose background distribution the taggers should not sculpt.
DECORRELATION_MASS = "jet_sd_mass"
#: Background mass histogram used for the JSD (GeV): 20 GeV bins from 0 to 200 GeV (wide
#: enough for the few dozen background jets that pass a cut at 50% signal efficiency).
MASS_BINS = np.linspace(0.0, 200.0, 11)
N_FOLDS = 4
VALIDATION_FOLD, TEST_FOLD = 0, 1
SIGNAL_EFFICIENCY = 0.5
#: QCD jets committed next to the default sample for evaluation only: they go to the validation
#: and test folds (half each, by event number), never to training, so that the rejection at 50%
#: signal efficiency (a few percent of the background passing) and the 1/JSD of the passing
#: background rest on dozens of jets rather than a handful. Made with ``python -m hepinfer.datasets
#: generate --signal 0 --background 4000 --seed 2027 --workers 1`` (pythia8mc 8.317.2, the
#: committed sample's settings with another seed, so independent of it; 122 s here, 3.4 MB).
EVALUATION_BACKGROUND_FILE = "jets_qcd_eval.root"
#: Added to the evaluation jets' event numbers so that they differ from the main sample's.
EVALUATION_EVENT_OFFSET = 10**9
#: Central interval of the bootstrap (16th to 84th percentile: +-1 sigma for a Gaussian).
INTERVAL_PERCENTILES = (15.865, 84.135)
#: Taggers drawn in the calibration plot (reliability diagram), and its number of score bins.
CALIBRATION_MODELS = ("BDT", "MLP", "MLP + DisCo")
CALIBRATION_BINS = 10


@dataclass
class DemoSettings:
    """Training settings of the demo (the whole default demo runs in about 20-30 s on 2 cores).

    The MLP settings (batch size, learning rate, strength scan) were fixed on an independent
    Pythia sample (another seed), not on the committed one's test fold."""

    mlp_hidden: tuple[int, ...] = (64, 64)
    mlp_epochs: int = 60
    mlp_learning_rate: float = 2e-3
    disco_scan: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0, 3.0, 5.0)
    """Strengths lambda of the DisCo penalty lambda * dCor^2(score, m_SD) on the background
    that are trained; the demo's "MLP + DisCo" is the one :func:`choose_disco_strength` picks on
    the validation fold, and all of them make the 1/JSD-vs-rejection curve."""
    disco_strength: Optional[float] = None
    """A fixed lambda for "MLP + DisCo" instead of the choice on the validation fold (it is
    trained in addition to ``disco_scan``)."""
    disco_min_rejection_fraction: float = 0.5
    """The choice keeps at least this fraction of the plain MLP's validation rejection."""

    batch_size: int = 512
    """Jets per optimiser step of the MLPs (about half of them background: the DisCo term's
    dCor^2 is estimated on ~250 jets per step)."""
    pfn_epochs: int = 25
    pfn_batch_size: int = 128
    pfn_learning_rate: float = 3e-3
    pfn_hidden: tuple[int, ...] = (64, 64)
    pfn_latent: int = 64
    max_particles: int = 64
    bdt_trees: int = 300
    timing_repeats: int = 5
    bootstrap_replicas: int = 200
    """Bootstrap replicas of the test jets for the 68% intervals of 1/eps_B and 1/JSD
    (:func:`bootstrap_working_point`)."""
    seed: int = 2026


def choose_disco_strength(
    plain_rejection: float,
    scan: Mapping[float, tuple[float, float]],
    min_rejection_fraction: float = 0.5,
) -> float:
    """The DisCo strength of the demo's "MLP + DisCo": among the strengths ``lambda -> (1/eps_B,
    1/JSD)`` (measured on the validation fold at the working point), the one with the largest
    1/JSD whose rejection is at least ``min_rejection_fraction`` times the plain MLP's
    ``plain_rejection``; ties go to the smaller lambda. When no strength keeps that much
    rejection, the one that keeps the most (the flattest of those on ties).

    This is the DisCo paper's figure of merit read as a constrained choice: as flat as possible
    for a bounded loss of rejection, chosen on data the networks were not trained on and that
    the table does not report on. The rule uses the central values: judged instead on the
    lower end of the 68% bootstrap interval of the validation rejection ratio, it picked
    lambda = 0.5 for every seed on an independent Pythia sample (rejection x0.7-0.8 on its test
    fold, 1/JSD only x1.5-1.7), because the plain MLP's validation rejection alone is uncertain
    by about 20%.
    """
    if not scan:
        raise ValueError("choose_disco_strength: no strengths to choose from")
    if not 0 <= min_rejection_fraction <= 1:
        raise ValueError(f"min_rejection_fraction must be in [0, 1], got {min_rejection_fraction}")

    def finite(v: float, default: float) -> float:
        return v if np.isfinite(v) else default

    need = min_rejection_fraction * plain_rejection
    allowed = [lam for lam, (rejection, _) in scan.items() if rejection >= need]
    if allowed:
        return min(allowed, key=lambda lam: (-finite(scan[lam][1], 1e300), lam))
    return min(scan, key=lambda lam: (-finite(scan[lam][0], 1e300), -finite(scan[lam][1], 1e300), lam))


def evaluation_background_path() -> Path:
    """The committed evaluation-only QCD jets (see ``EVALUATION_BACKGROUND_FILE``)."""
    import hepinfer.datasets as hd

    return hd.default_sample_path().parent / EVALUATION_BACKGROUND_FILE


def bootstrap_working_point(
    label: np.ndarray,
    mass: np.ndarray,
    scores: Mapping[Any, np.ndarray],
    weight: Optional[np.ndarray] = None,
    *,
    reference: Any = None,
    replicas: int = 200,
    seed: int = 0,
    signal_efficiency: float = SIGNAL_EFFICIENCY,
    bins: Any = MASS_BINS,
) -> dict[Any, dict[str, tuple[float, float]]]:
    """Statistical uncertainties of the working-point metrics: for each tagger, the central 68%
    interval (``INTERVAL_PERCENTILES``) of ``background_rejection`` (1/eps_B) and ``inverse_jsd``
    (1/JSD) over ``replicas`` bootstrap replicas of the jets (resampled with replacement within
    each class, so both class sizes stay fixed; the cut is re-derived on each replica's signal).
    Every tagger sees the same replicas, so with ``reference`` (a key of ``scores``) the intervals
    of the paired ratios ``rejection_ratio`` = 1/eps_B / 1/eps_B(reference) and
    ``inverse_jsd_ratio`` = 1/JSD / 1/JSD(reference) are given too (the statistical fluctuations
    common to both taggers cancel in them).

    Intervals are taken on eps_B and on JSD and inverted, so a replica in which no background
    passes (1/eps_B = inf) or none fails is handled; a tagger whose sculpting is below the
    binning's resolution can have an upper limit of inf.
    """
    from hepinfer.metrics import decorrelation_metrics

    lab = np.asarray(label) > 0.5
    m = np.asarray(mass, dtype=np.float64)
    w = np.ones(len(lab)) if weight is None else np.asarray(weight, dtype=np.float64)
    if replicas < 2:
        raise ValueError(f"bootstrap needs at least 2 replicas, got {replicas}")
    if reference is not None and reference not in scores:
        raise ValueError(f"reference {reference!r} is not one of the scores {list(scores)}")
    rng = np.random.default_rng(seed)
    classes = [np.flatnonzero(lab), np.flatnonzero(~lab)]
    eff = {name: np.empty(replicas) for name in scores}
    jsd = {name: np.empty(replicas) for name in scores}
    for r in range(replicas):
        counts = np.zeros(len(lab))
        for idx in classes:
            counts[idx] = np.bincount(rng.integers(0, len(idx), len(idx)), minlength=len(idx))
        wr = w * counts
        for name, s in scores.items():
            v = decorrelation_metrics(
                np.asarray(s, dtype=np.float64), m, lab, wr, signal_efficiency=signal_efficiency, bins=bins
            )
            eff[name][r] = 1.0 / v["background_rejection"]
            jsd[name][r] = v["jsd"]

    def inverted(values: np.ndarray) -> tuple[float, float]:
        finite = values[~np.isnan(values)]
        if finite.size == 0:
            return float("nan"), float("nan")
        with np.errstate(divide="ignore", invalid="ignore"):
            lo, hi = np.percentile(finite, INTERVAL_PERCENTILES)
            return float(1.0 / hi), float(np.inf if lo == 0 else 1.0 / lo)

    def ratio(num: np.ndarray, den: np.ndarray) -> tuple[float, float]:
        # 1/eps_B(model) / 1/eps_B(reference) = eps_B(reference) / eps_B(model); likewise for JSD
        with np.errstate(divide="ignore", invalid="ignore"):
            q = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.inf)
        q = q[~np.isnan(num) & ~np.isnan(den)]
        if q.size == 0:
            return float("nan"), float("nan")
        big = np.finfo(np.float64).max  # stands in for inf, which percentile cannot interpolate
        lo, hi = np.percentile(np.minimum(q, big), INTERVAL_PERCENTILES)
        return (float(np.inf) if lo >= big / 2 else float(lo), float(np.inf) if hi >= big / 2 else float(hi))

    out: dict[Any, dict[str, tuple[float, float]]] = {}
    for name in scores:
        out[name] = {"background_rejection": inverted(eff[name]), "inverse_jsd": inverted(jsd[name])}
        if reference is not None:
            out[name]["rejection_ratio"] = ratio(eff[reference], eff[name])
            out[name]["inverse_jsd_ratio"] = ratio(jsd[reference], jsd[name])
    return out


def _median_time(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


class _Stages:
    """Prints one line per stage with its duration."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.start = time.perf_counter()
        self.last = self.start

    def done(self, text: str) -> float:
        now = time.perf_counter()
        took = now - self.last
        self.last = now
        if not self.quiet:
            print(f"[{now - self.start:6.1f} s] {text} ({took:.1f} s)", flush=True)
        return took


def _load_sample(
    n_per_class: Optional[int], generate: Optional[int], sample: Optional[Union[str, Path]], seed: int
) -> tuple[dict[str, np.ndarray], str]:
    import hepinfer.datasets as hd

    if generate is not None:
        if generate < 50:
            raise ValueError(f"--generate needs at least 50 jets per class, got {generate}")
        path = hd.generate_jets(generate, generate, seed=seed, progress=True)
        where = f"freshly generated Pythia sample {path}"
    else:
        path = Path(sample) if sample is not None else hd.default_sample_path()
        where = "the committed Pythia sample" if sample is None else str(path)
    columns = hd.load_jets(path, library="np")
    label = np.asarray(columns["label"])
    if set(np.unique(label).tolist()) - {0, 1}:
        keep = (label == 0) | (label == 1)  # a top sample (label 2) is left out: W/QCD only
        columns = _take(columns, np.flatnonzero(keep))
        label = np.asarray(columns["label"])
    if n_per_class is not None:
        if n_per_class < 50:
            raise ValueError(f"--events needs at least 50 jets per class, got {n_per_class}")
        rng = np.random.default_rng(seed)
        picked = []
        for cls in (0, 1):
            idx = np.flatnonzero(label == cls)
            picked.append(np.sort(rng.choice(idx, min(n_per_class, len(idx)), replace=False)))
        columns = _take(columns, np.sort(np.concatenate(picked)))
    return columns, where


def _add_evaluation_background(
    columns: dict[str, np.ndarray], path: Path
) -> tuple[dict[str, np.ndarray], int]:
    """``columns`` followed by the QCD (label 0) jets of ``path``, their event numbers shifted by
    ``EVALUATION_EVENT_OFFSET``; and how many were added."""
    import hepinfer.datasets as hd
    from hepinfer.datasets.schema import concatenate

    extra = hd.load_jets(path, library="np")
    extra = _take(extra, np.flatnonzero(np.asarray(extra["label"]) == 0))
    n_extra = len(extra["label"])
    if n_extra == 0:
        raise ValueError(f"{path}: no QCD (label 0) jets for the evaluation background")
    extra["event"] = np.asarray(extra["event"], dtype=np.int64) + EVALUATION_EVENT_OFFSET
    return concatenate([columns, extra]), n_extra


def _take(columns: Mapping[str, np.ndarray], index: np.ndarray) -> dict[str, np.ndarray]:
    from hepinfer.datasets.schema import take

    return take(dict(columns), index)


def _jet_matrix(columns: Mapping[str, np.ndarray]) -> np.ndarray:
    return np.column_stack([np.asarray(columns[f], dtype=np.float32) for f in JET_FEATURES])


def _network_inputs(X: np.ndarray) -> np.ndarray:
    """What the networks see: the jet features with NaN (tau32 of tiny jets) replaced by -1."""
    return np.ascontiguousarray(np.nan_to_num(X, nan=-1.0), dtype=np.float32)


class _JetTaggers:
    """The three jet-level taggers through :func:`hepinfer.score`'s model protocol (one score
    branch each), evaluated by hepinfer's engines."""

    def __init__(self, forest: Any, mlp: Any, disco: Any, n_threads: Optional[int]) -> None:
        self.forest, self.mlp, self.disco = forest, mlp, disco
        self.n_threads = n_threads
        self.input_names = list(JET_FEATURES)
        self.output_names = ["bdt", "mlp", "mlp_disco"]

    def predict(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        X = np.column_stack([np.asarray(inputs[f], dtype=np.float32) for f in JET_FEATURES])
        x = _network_inputs(X)
        threads = 0 if self.n_threads is None else self.n_threads
        return np.column_stack(
            [
                self.forest.predict(X, n_threads=self.n_threads),
                self.mlp.predict(x, n_threads=threads).reshape(-1),
                self.disco.predict(x, n_threads=threads).reshape(-1),
            ]
        )


def _train_network(
    model: Any,
    inputs: tuple[np.ndarray, ...],
    target: np.ndarray,
    weight: np.ndarray,
    mass: np.ndarray,
    train: np.ndarray,
    validation: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    disco_strength: float = 0.0,
    learning_rate: float = 1e-3,
) -> Any:
    import torch

    from hepinfer.train import Sample, Trainer

    tensors = tuple(torch.as_tensor(a) for a in inputs)
    tr = torch.as_tensor(np.flatnonzero(train))
    model.scaler.fit(tensors[0][tr], tensors[1][tr] if len(tensors) == 2 else None)
    sample = Sample(
        tensors,
        torch.as_tensor(target, dtype=torch.float32),
        torch.as_tensor(weight, dtype=torch.float32),
        torch.as_tensor(mass, dtype=torch.float32),
    )
    trainer = Trainer(
        model,
        loss="bce",
        decorrelation="disco" if disco_strength > 0 else None,
        decorrelation_strength=disco_strength,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        patience=max(5, epochs // 4),
        seed=seed,
        progress=False,
    )
    trainer.fit(sample.subset(tr), sample.subset(torch.as_tensor(np.flatnonzero(validation))))
    return trainer.model.eval()


def _ort_session(path: str) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def _interval(bounds: Sequence[float], digits: int = 2) -> str:
    """``lo-hi`` with ``digits`` significant digits (``>lo`` for an infinite upper bound)."""
    lo, hi = bounds

    def fmt(v: float) -> str:
        if not np.isfinite(v):
            return "inf"
        if v == 0:
            return "0"
        places = max(0, digits - 1 - int(np.floor(np.log10(abs(v)))))
        return f"{v:.{places}f}"

    return f">{fmt(lo)}" if not np.isfinite(hi) else f"{fmt(lo)}-{fmt(hi)}"


def _format_table(rows: Sequence[dict[str, Any]], markdown: bool) -> str:
    head = [
        "model",
        "inputs",
        "AUC",
        "1/eps_B @50%",
        "bkg passing",
        "1/JSD @50%",
        "bkg dCor2(s,m)",
        "train [s]",
        "hepinfer [ev/s]",
        "reference [ev/s]",
        "speed-up",
    ]

    def cells(r: dict[str, Any]) -> list[str]:
        return [
            r["model"],
            r["inputs"],
            f"{r['auc']:.3f}",
            f"{r['background_rejection']:.1f} ({_interval(r['background_rejection_interval'])})",
            f"{r['background_passing']}",
            f"{r['inverse_jsd']:.1f} ({_interval(r['inverse_jsd_interval'])})",
            f"{r['background_dcor2']:.3f}",
            f"{r['train_seconds']:.1f}",
            f"{r['hepinfer_events_per_second']:.3g}",
            f"{r['reference_events_per_second']:.3g} ({r['reference']})",
            f"x{r['hepinfer_events_per_second'] / r['reference_events_per_second']:.1f}",
        ]

    body = [cells(r) for r in rows]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        return "\n".join(lines + ["| " + " | ".join(c) + " |" for c in body])
    widths = [max(len(h), *(len(c[i]) for c in body)) for i, h in enumerate(head)]
    fmt = lambda cs: "  ".join(
        c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cs, widths))
    )
    return "\n".join([fmt(head), "  ".join("-" * w for w in widths)] + [fmt(c) for c in body])


def run_demo(
    n_events: Optional[int] = None,
    out_dir: Union[str, Path] = "hepinfer-demo",
    n_threads: Optional[int] = None,
    *,
    generate: Optional[int] = None,
    sample: Optional[Union[str, Path]] = None,
    settings: Optional[DemoSettings] = None,
    quiet: bool = False,
    evaluation_background: Union[bool, str, Path] = True,
) -> int:
    """Run the demo; returns 0 when every check passed, 1 otherwise.

    Parameters
    ----------
    n_events
        Jets per class taken from the sample (``None``: all of them; the committed sample has 2000).
    out_dir
        Where the models, ``test_jets.root``, ``scores.root``, the PNGs, ``report.md`` and
        ``summary.json`` are written.
    n_threads
        Threads for scoring the ROOT file with :func:`hepinfer.score` (``None``: all cores).
        Training runs on one thread (the networks and the sample are small, so extra threads
        only add synchronisation; it also keeps the table reproducible), and the speed columns
        are single-thread.
    generate
        Generate a fresh Pythia sample with this many jets per class (needs pythia8mc and
        fastjet; cached, see :func:`hepinfer.datasets.generate_jets`) instead of the committed one.
    sample
        A jet sample file in the :mod:`hepinfer.datasets` format to use instead.
    settings
        Training settings (:class:`DemoSettings`).
    evaluation_background
        QCD jets added to the validation and test folds only (half each, by event number; never
        trained on): ``True`` = the committed ``EVALUATION_BACKGROUND_FILE`` when the committed
        sample is used (not with ``generate`` or ``sample``), ``False`` = none, or a jet sample
        file (its label-0 jets are used).
    """
    import torch

    cfg = settings or DemoSettings()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stages = _Stages(quiet)
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small networks, small batches: more threads only add synchronisation
    try:
        data = _prepare_data(cfg, n_events, generate, sample, evaluation_background, stages)
        taggers = _train_taggers(data, cfg, stages)
        engines = _export_and_check(data, taggers, out, stages)
        evaluation = _evaluate_on_test(data, taggers, engines, cfg, stages)
        _score_root_files(data, taggers, engines, evaluation, cfg, out, n_threads, stages)
        plotted = _plots(data, taggers, evaluation, out, stages)
        return _report(data, taggers, engines, evaluation, plotted, cfg, out, stages, quiet)
    finally:
        torch.set_num_threads(torch_threads)


# ---------------------------------------------------------------------------------- the demo's stages


@dataclass
class _Data:
    """The sample, its folds and the arrays every stage reads."""

    columns: dict[str, np.ndarray]
    where: str
    n_main: int  # jets of the main sample (the evaluation-only QCD jets follow them)
    n_extra: int
    label: np.ndarray
    weight: np.ndarray
    mass: np.ndarray
    events: np.ndarray
    X: np.ndarray  # jet features (float32, NaN kept: the BDT routes it)
    x_net: np.ndarray  # what the networks see (NaN -> -1)
    folds: np.ndarray
    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    stopping: np.ndarray  # the validation jets that early stopping watches
    w_fit: np.ndarray  # training weights, classes rebalanced
    particles: np.ndarray  # padded constituents
    pmask: np.ndarray


def _prepare_data(
    cfg: DemoSettings,
    n_events: Optional[int],
    generate: Optional[int],
    sample: Optional[Union[str, Path]],
    evaluation_background: Union[bool, str, Path],
    stages: _Stages,
) -> _Data:
    """Stage 1: the sample (plus the evaluation-only QCD jets), split by event number, and the
    padded constituents."""
    import hepinfer
    from hepinfer.train import rebalance_weights, split_by_event_number

    columns, where = _load_sample(n_events, generate, sample, cfg.seed)
    n_main = len(columns["label"])
    extra_path: Optional[Path] = None
    if evaluation_background is True:
        if generate is None and sample is None:
            extra_path = evaluation_background_path()
    elif evaluation_background is not False:
        extra_path = Path(evaluation_background)
    n_extra = 0
    if extra_path is not None:
        columns, n_extra = _add_evaluation_background(columns, extra_path)
        where += f", plus {n_extra} QCD jets for validation and test only ({extra_path.name})"
    label = np.asarray(columns["label"]).astype(np.float64)
    weight = np.asarray(columns["weight"], dtype=np.float64)
    events = np.asarray(columns["event"])
    X = _jet_matrix(columns)
    # fold of each jet: event % N_FOLDS for the main sample; the evaluation-only jets go to
    # the validation or the test fold by the parity of their event number
    folds = np.mod(events, N_FOLDS)
    folds[n_main:] = np.where(np.mod(events[n_main:], 2) == 0, VALIDATION_FOLD, TEST_FOLD)
    train, validation, test = split_by_event_number(
        folds, N_FOLDS, validation_fold=VALIDATION_FOLD, test_fold=TEST_FOLD
    )
    # early stopping watches the main sample's validation jets only (as without the
    # evaluation-only jets, and at the same cost); those serve the choice of the DisCo
    # strength and the test metrics
    stopping = validation & (np.arange(len(label)) < n_main)
    w_fit = weight.copy()
    w_fit[train] = rebalance_weights(label[train], weight[train])
    w_fit[stopping] = rebalance_weights(label[stopping], weight[stopping])
    n_sig, n_bkg = int((label == 1).sum()), int((label == 0).sum())
    stages.done(
        f"hepinfer {hepinfer.__version__} demo: {n_sig} W + {n_bkg} QCD jets from {where}; "
        f"split by event number: {int(train.sum())} train, {int(validation.sum())} validation "
        f"({int((validation & (label == 0)).sum())} QCD), {int(test.sum())} test "
        f"({int((test & (label == 0)).sum())} QCD)"
    )
    particles, mask = padded_constituents(columns, cfg.max_particles, PARTICLE_FEATURES)
    stages.done(
        f"padded constituents to {cfg.max_particles} per jet ({len(PARTICLE_FEATURES)} features each)"
    )
    return _Data(
        columns=columns,
        where=where,
        n_main=n_main,
        n_extra=n_extra,
        label=label,
        weight=weight,
        mass=np.asarray(columns[DECORRELATION_MASS], dtype=np.float64),
        events=events,
        X=X,
        x_net=_network_inputs(X),
        folds=folds,
        train=train,
        validation=validation,
        test=test,
        stopping=stopping,
        w_fit=w_fit,
        particles=particles,
        pmask=mask.astype(np.float32),
    )


def _working_point(data: _Data, net: Any, fold: np.ndarray) -> dict[str, Any]:
    """1/eps_B and 1/JSD at the working point, the background dCor^2 and the scores, of a
    jet-feature network on one fold."""
    import torch

    from hepinfer.disco import distance_correlation
    from hepinfer.metrics import decorrelation_metrics

    with torch.no_grad():
        s = torch.sigmoid(net(torch.as_tensor(data.x_net[fold]))).numpy().reshape(-1).astype(np.float64)
    sig = data.label[fold] > 0.5
    mass, weight = data.mass[fold], data.weight[fold]
    m: dict[str, Any] = decorrelation_metrics(
        s, mass, sig, weight, signal_efficiency=SIGNAL_EFFICIENCY, bins=MASS_BINS
    )
    m["background_dcor2"] = distance_correlation(s[~sig], mass[~sig], weight[~sig])
    m["background_passing"] = int(np.sum(~sig & (s >= m["cut"])))
    m["scores"] = s
    return m


@dataclass
class _Taggers:
    """The trained taggers: the BDT, the networks by table name, the DisCo strength scan and
    the strength chosen on the validation fold."""

    bdt: Any
    nets: dict[str, Any]
    trained: dict[str, dict[str, Any]]  # per table name: training seconds and inputs
    scan: dict[float, Any]  # DisCo strength -> MLP
    on_validation: dict[float, dict[str, Any]]  # strength (0: plain MLP) -> working point
    validation_bootstrap: dict[Any, dict[str, Any]]
    chosen: float


def _train_taggers(data: _Data, cfg: DemoSettings, stages: _Stages) -> _Taggers:
    """Stage 2: the BDT (xgboost), the MLP, the DisCo MLPs of the strength scan (the table's
    "MLP + DisCo" chosen on the validation fold) and the PFN."""
    import torch

    from hepinfer.train import MLP, ParticleFlowNetwork, train_bdt

    d, n_main = data, data.n_main
    trained: dict[str, dict[str, Any]] = {}
    t0 = time.perf_counter()
    bdt = train_bdt(
        d.X[:n_main],
        d.label[:n_main],
        d.weight[:n_main],
        d.folds[:n_main],
        feature_names=JET_FEATURES,
        n_folds=N_FOLDS,
        validation_fold=VALIDATION_FOLD,
        test_fold=TEST_FOLD,
        n_trees=cfg.bdt_trees,
        max_depth=4,
        learning_rate=0.1,
        early_stopping_rounds=20,
        seed=cfg.seed,
        n_threads=1,
    )
    trained["BDT"] = {"seconds": time.perf_counter() - t0, "inputs": "jet features"}
    stages.done(f"trained BDT (xgboost, {bdt.best_iteration + 1} trees, depth 4)")

    def train_mlp(strength: float) -> Any:
        """The jet-feature MLP, seeded the same way for every DisCo strength."""
        torch.manual_seed(cfg.seed)
        return _train_network(
            MLP(len(JET_FEATURES), cfg.mlp_hidden),
            (d.x_net,),
            d.label,
            d.w_fit,
            d.mass,
            d.train,
            d.stopping,
            epochs=cfg.mlp_epochs,
            batch_size=cfg.batch_size,
            seed=cfg.seed,
            disco_strength=strength,
            learning_rate=cfg.mlp_learning_rate,
        )

    nets: dict[str, Any] = {}
    t0 = time.perf_counter()
    nets["MLP"] = train_mlp(0.0)
    trained["MLP"] = {"seconds": time.perf_counter() - t0, "inputs": "jet features"}
    stages.done("trained MLP")
    # the DisCo MLPs: one per strength; the table's "MLP + DisCo" is chosen on the validation fold
    strengths = sorted(
        {float(v) for v in cfg.disco_scan if v > 0}
        | ({float(cfg.disco_strength)} if cfg.disco_strength else set())
    )
    if not strengths:
        raise ValueError("DemoSettings: disco_scan (or disco_strength) needs a strength > 0")
    scan: dict[float, Any] = {}
    scan_seconds: dict[float, float] = {}
    for strength in strengths:
        t0 = time.perf_counter()
        scan[strength] = train_mlp(strength)
        scan_seconds[strength] = time.perf_counter() - t0
    on_validation = {
        lam: _working_point(d, net, d.validation) for lam, net in [(0.0, nets["MLP"]), *scan.items()]
    }
    # paired bootstrap of the validation jets: how uncertain each strength's rejection
    # relative to the plain MLP's is, where lambda is chosen (for the report)
    val_boot = bootstrap_working_point(
        d.label[d.validation],
        d.mass[d.validation],
        {lam: v["scores"] for lam, v in on_validation.items()},
        d.weight[d.validation],
        reference=0.0,
        replicas=cfg.bootstrap_replicas,
        seed=cfg.seed + 1,
    )
    if cfg.disco_strength:
        chosen = float(cfg.disco_strength)
    else:
        chosen = choose_disco_strength(
            on_validation[0.0]["background_rejection"],
            {
                lam: (v["background_rejection"], v["inverse_jsd"])
                for lam, v in on_validation.items()
                if lam > 0
            },
            cfg.disco_min_rejection_fraction,
        )
    nets["MLP + DisCo"] = scan[chosen]
    trained["MLP + DisCo"] = {"seconds": scan_seconds[chosen], "inputs": "jet features"}
    stages.done(
        f"trained MLP + DisCo for lambda = {', '.join(f'{v:g}' for v in scan)}; "
        f"chose lambda = {chosen:g} "
        + (
            "(fixed by the settings)"
            if cfg.disco_strength
            else f"(largest validation 1/JSD keeping >= {cfg.disco_min_rejection_fraction:.0%} "
            f"of the plain MLP's validation rejection {on_validation[0.0]['background_rejection']:.1f})"
        )
    )
    torch.manual_seed(cfg.seed)
    t0 = time.perf_counter()
    nets["PFN"] = _train_network(
        ParticleFlowNetwork(len(PARTICLE_FEATURES), cfg.pfn_hidden, cfg.pfn_latent, (64,)),
        (d.particles, d.pmask),
        d.label,
        d.w_fit,
        d.mass,
        d.train,
        d.stopping,
        epochs=cfg.pfn_epochs,
        batch_size=cfg.pfn_batch_size,
        seed=cfg.seed,
        learning_rate=cfg.pfn_learning_rate,
    )
    trained["PFN"] = {"seconds": time.perf_counter() - t0, "inputs": "constituents"}
    stages.done("trained PFN (Deep Sets on constituents)")
    return _Taggers(bdt, nets, trained, scan, on_validation, val_boot, chosen)


@dataclass
class _Engines:
    """The exported files run by hepinfer, their references, and the checks so far."""

    forest: Any
    booster: Any
    models: dict[str, Any]  # table name -> hepinfer.Forest / hepinfer.nn.Model
    references: dict[str, Any]  # network name -> (onnxruntime session, feed)
    checks: dict[str, dict[str, Any]]
    bdt_scores: np.ndarray  # hepinfer's BDT scores on the test fold
    X_test: np.ndarray
    x_test: np.ndarray
    p_test: np.ndarray
    m_test: np.ndarray


def _export_and_check(data: _Data, taggers: _Taggers, out: Path, stages: _Stages) -> _Engines:
    """Stage 3: export the BDT to xgboost JSON and the networks to ONNX, load them with
    hepinfer and compare with xgboost, onnxruntime and torch on the test fold."""
    import torch

    import hepinfer
    from hepinfer.export import export_onnx, max_relative_difference
    from hepinfer.train import WithSigmoid

    d = data
    checks: dict[str, dict[str, Any]] = {}
    X_test, x_test = d.X[d.test], d.x_net[d.test]
    p_test, m_test = np.ascontiguousarray(d.particles[d.test]), np.ascontiguousarray(d.pmask[d.test])
    bdt_path = taggers.bdt.save(out / "bdt.json", X_test)
    forest = hepinfer.Forest.load(bdt_path)
    booster = taggers.bdt.booster
    booster.set_param({"nthread": 1})
    ref_bdt = booster.inplace_predict(X_test)
    hep_bdt = forest.predict(X_test, n_threads=1)
    diff = float(np.max(np.abs(hep_bdt - ref_bdt)))
    checks["BDT"] = {
        "file": bdt_path,
        "reference": "xgboost",
        "max_abs_difference": diff,
        "passed": diff <= 1e-6,
    }
    models: dict[str, Any] = {"BDT": forest}
    references: dict[str, Any] = {}
    files = {"MLP": "mlp.onnx", "MLP + DisCo": "mlp_disco.onnx", "PFN": "pfn.onnx"}
    for name, net in taggers.nets.items():
        inputs = (x_test,) if name != "PFN" else (p_test, m_test)
        example = tuple(torch.as_tensor(a[:64]) for a in inputs)
        path = export_onnx(WithSigmoid(net), example, out / files[name])
        model = hepinfer.nn.Model.load(path)
        session = _ort_session(path)
        feed = dict(zip([i.name for i in session.get_inputs()], inputs))
        ref = session.run(None, feed)[0].reshape(-1)
        mine = np.asarray(model.predict(*inputs, n_threads=1)).reshape(-1)
        with torch.no_grad():
            torch_scores = WithSigmoid(net)(*(torch.as_tensor(a) for a in inputs)).numpy().reshape(-1)
        diff = float(np.max(np.abs(mine - ref)))
        d_torch = max_relative_difference(mine, torch_scores)
        checks[name] = {
            "file": path,
            "reference": "onnxruntime",
            "max_abs_difference": diff,
            "max_difference_to_torch": d_torch,
            "passed": diff <= 1e-5 and d_torch <= 1e-5,
        }
        models[name] = model
        references[name] = (session, feed)
    stages.done(
        "exported and reloaded: "
        + ", ".join(
            f"{n} max |hepinfer - {c['reference']}| = {c['max_abs_difference']:.1e}"
            for n, c in checks.items()
        )
    )
    return _Engines(forest, booster, models, references, checks, hep_bdt, X_test, x_test, p_test, m_test)


@dataclass
class _Evaluation:
    """The test fold's scores, the table's rows and the DisCo strength scan."""

    scores: dict[str, np.ndarray]
    rows: list[dict[str, Any]]
    scan_points: list[dict[str, Any]]
    y_test: np.ndarray
    w_test: np.ndarray
    mass_test: np.ndarray
    n_test: int


def _evaluate_on_test(
    data: _Data, taggers: _Taggers, engines: _Engines, cfg: DemoSettings, stages: _Stages
) -> _Evaluation:
    """Stage 4: every tagger's metrics on the test fold with bootstrap intervals, single-thread
    timings against its reference engine, and the DisCo strength scan on both folds."""
    from hepinfer.disco import distance_correlation
    from hepinfer.metrics import decorrelation_metrics

    d, e = data, engines
    x_test, p_test, m_test = e.x_test, e.p_test, e.m_test
    scores = {
        "BDT": e.bdt_scores,
        "MLP": np.asarray(e.models["MLP"].predict(x_test, n_threads=1)).reshape(-1),
        "MLP + DisCo": np.asarray(e.models["MLP + DisCo"].predict(x_test, n_threads=1)).reshape(-1),
        "PFN": np.asarray(e.models["PFN"].predict(p_test, m_test, n_threads=1)).reshape(-1),
    }
    y_test, w_test, mass_test = d.label[d.test], d.weight[d.test], d.mass[d.test]
    bkg = ~(y_test > 0.5)
    rows: list[dict[str, Any]] = []
    n_test = int(d.test.sum())
    for name, s in scores.items():
        s64 = np.asarray(s, dtype=np.float64)
        metrics = decorrelation_metrics(
            s64, mass_test, ~bkg, w_test, signal_efficiency=SIGNAL_EFFICIENCY, bins=MASS_BINS
        )
        if name == "BDT":
            t_hep = _median_time(lambda: e.forest.predict(e.X_test, n_threads=1), cfg.timing_repeats)
            t_ref = _median_time(lambda: e.booster.inplace_predict(e.X_test), cfg.timing_repeats)
            reference = "xgboost"
        else:
            model, (session, feed) = e.models[name], e.references[name]
            inputs = (x_test,) if name != "PFN" else (p_test, m_test)
            t_hep = _median_time(functools.partial(model.predict, *inputs, n_threads=1), cfg.timing_repeats)
            t_ref = _median_time(functools.partial(session.run, None, feed), cfg.timing_repeats)
            reference = "onnxruntime"
        rows.append(
            {
                "model": name,
                "inputs": taggers.trained[name]["inputs"],
                "auc": roc_auc(s64, y_test),
                "background_rejection": metrics["background_rejection"],
                "background_passing": int(np.sum(bkg & (s64 >= metrics["cut"]))),
                "inverse_jsd": metrics["inverse_jsd"],
                "jsd": metrics["jsd"],
                "cut": metrics["cut"],
                "background_dcor2": distance_correlation(s64[bkg], mass_test[bkg], w_test[bkg]),
                "train_seconds": taggers.trained[name]["seconds"],
                "hepinfer_events_per_second": n_test / t_hep,
                "reference_events_per_second": n_test / t_ref,
                "reference": reference,
            }
        )
    # statistical uncertainties: the same bootstrap replicas of the test jets for every
    # tagger, so the ratios to the plain MLP are paired
    boot = bootstrap_working_point(
        y_test,
        mass_test,
        {n: np.asarray(s, dtype=np.float64) for n, s in scores.items()},
        w_test,
        reference="MLP",
        replicas=cfg.bootstrap_replicas,
        seed=cfg.seed,
    )
    for r in rows:
        b = boot[r["model"]]
        r["background_rejection_interval"] = list(b["background_rejection"])
        r["inverse_jsd_interval"] = list(b["inverse_jsd"])
        r["rejection_ratio_to_mlp_interval"] = list(b["rejection_ratio"])
        r["inverse_jsd_ratio_to_mlp_interval"] = list(b["inverse_jsd_ratio"])
    # the strength scan (lambda 0 = the plain MLP) on the validation fold (where lambda is
    # chosen) and on the test fold (what the table reports)
    scan_points: list[dict[str, Any]] = []
    on_test = {
        lam: _working_point(d, net, d.test)
        for lam, net in [(0.0, taggers.nets["MLP"]), *taggers.scan.items()]
    }
    scan_boot = bootstrap_working_point(
        y_test,
        mass_test,
        {lam: t["scores"] for lam, t in on_test.items()},
        w_test,
        reference=0.0,
        replicas=cfg.bootstrap_replicas,
        seed=cfg.seed,
    )
    for strength, t in on_test.items():
        v, b = taggers.on_validation[strength], scan_boot[strength]
        scan_points.append(
            {
                "strength": strength,
                "chosen": strength == taggers.chosen,
                "validation_background_rejection": v["background_rejection"],
                "validation_inverse_jsd": v["inverse_jsd"],
                "validation_background_dcor2": v["background_dcor2"],
                "validation_background_passing": v["background_passing"],
                "validation_rejection_ratio_interval": list(
                    taggers.validation_bootstrap[strength]["rejection_ratio"]
                ),
                "background_rejection": t["background_rejection"],
                "background_rejection_interval": list(b["background_rejection"]),
                "rejection_ratio_to_mlp_interval": list(b["rejection_ratio"]),
                "inverse_jsd": t["inverse_jsd"],
                "inverse_jsd_interval": list(b["inverse_jsd"]),
                "inverse_jsd_ratio_to_mlp_interval": list(b["inverse_jsd_ratio"]),
                "background_dcor2": t["background_dcor2"],
                "background_passing": t["background_passing"],
            }
        )
    stages.done(f"metrics and single-thread timings on {n_test} test jets (median of {cfg.timing_repeats})")
    return _Evaluation(scores, rows, scan_points, y_test, w_test, mass_test, n_test)


def _score_root_files(
    data: _Data,
    taggers: _Taggers,
    engines: _Engines,
    evaluation: _Evaluation,
    cfg: DemoSettings,
    out: Path,
    n_threads: Optional[int],
    stages: _Stages,
) -> None:
    """Stage 5: write the test jets to a ROOT file (jet branches and the PFN's inputs as jagged
    branches) and score it with hepinfer.score: the jet taggers into scores.root, the PFN
    straight from the jagged branches (no padding) into pfn_scores.root; both are checked
    against the in-memory scores (``engines.checks``)."""
    import awkward as ak
    import uproot

    import hepinfer

    d, e, scores, n_test = data, engines, evaluation.scores, evaluation.n_test
    jets_path = out / "test_jets.root"
    branches = {f: np.asarray(d.columns[f])[d.test] for f in JET_FEATURES}
    branches.update(
        jet_mass=np.asarray(d.columns["jet_mass"])[d.test],
        label=np.asarray(d.columns["label"])[d.test],
        event=d.events[d.test],
        weight=d.weight[d.test],
    )
    # the PFN's inputs as jagged branches (one value per kept constituent), read back
    # unpadded by hepinfer.score through Model.predict_jagged
    counts, values = constituent_features(d.columns, cfg.max_particles, PARTICLE_FEATURES)
    in_test = np.repeat(d.test, counts)
    jagged = {
        f"part_{name}": ak.unflatten(values[name][in_test], counts[d.test]) for name in PARTICLE_FEATURES
    }
    with uproot.recreate(jets_path) as f:
        f.mktree(
            "jets",
            {**{k: v.dtype for k, v in branches.items()}, **{k: v.type.content for k, v in jagged.items()}},
        )
        f["jets"].extend({**branches, **jagged})
    scores_path = out / "scores.root"
    summary_score = hepinfer.score(
        _JetTaggers(e.forest, e.models["MLP"], e.models["MLP + DisCo"], n_threads),
        str(jets_path),
        tree="jets",
        output=str(scores_path),
        overwrite=True,  # the demo's own folder: a rerun replaces its files
        n_threads=n_threads,
    )
    with uproot.open(scores_path) as f:
        written = f["scores"].arrays(["bdt", "mlp", "mlp_disco", "event"], library="np")
    same = (
        len(written["bdt"]) == n_test
        and np.array_equal(written["event"], d.events[d.test])
        and all(
            np.max(np.abs(written[b] - scores[n]), initial=0.0) <= 1e-7
            for b, n in (("bdt", "BDT"), ("mlp", "MLP"), ("mlp_disco", "MLP + DisCo"))
        )
    )
    e.checks["scores.root"] = {"file": str(scores_path), "entries": len(written["bdt"]), "passed": bool(same)}
    stages.done(
        f"scored {jets_path.name} with hepinfer.score -> {scores_path.name} "
        f"({summary_score.events_per_second:.3g} events/s, 3 taggers; "
        f"{'equal to' if same else 'DIFFERENT FROM'} the in-memory scores)"
    )
    pfn_path = out / "pfn_scores.root"
    summary_pfn = hepinfer.score(
        e.models["PFN"],
        str(jets_path),
        tree="jets",
        features={"particles": [f"part_{name}" for name in PARTICLE_FEATURES]},
        output=str(pfn_path),
        overwrite=True,
        output_names=["pfn"],
        n_threads=n_threads,
    )
    with uproot.open(pfn_path) as f:
        written_pfn = f["scores"].arrays(["pfn", "event"], library="np")
    d_pfn = (
        float(np.max(np.abs(written_pfn["pfn"] - scores["PFN"]), initial=0.0))
        if len(written_pfn["pfn"]) == n_test
        else float("inf")
    )
    e.checks["pfn_scores.root"] = {
        "file": str(pfn_path),
        "reference": "padded PFN",
        "entries": len(written_pfn["pfn"]),
        "max_abs_difference": d_pfn,
        "passed": bool(d_pfn <= 1e-5 and np.array_equal(written_pfn["event"], d.events[d.test])),
    }
    stages.done(
        f"scored the PFN on {jets_path.name}'s jagged constituent branches with hepinfer.score "
        f"(no padding) -> {pfn_path.name} ({summary_pfn.events_per_second:.3g} events/s; "
        f"max |difference| to the padded scores {d_pfn:.1e})"
    )


def _plots(
    data: _Data, taggers: _Taggers, evaluation: _Evaluation, out: Path, stages: _Stages
) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """Stage 6: ROC, score, mass-sculpting, 1/JSD-vs-rejection and calibration plots (PNG) of
    the test fold: (file name -> path, the calibration curves)."""
    from hepinfer import plot
    from hepinfer.metrics import calibration_curve
    from hepinfer.train import rebalance_weights

    y_test, w_test, mass_test = evaluation.y_test, evaluation.w_test, evaluation.mass_test
    scores, rows, scan_points, chosen = (
        evaluation.scores,
        evaluation.rows,
        evaluation.scan_points,
        taggers.chosen,
    )
    # the taggers were trained with the signal re-weighted to the background's total, so
    # their scores are probabilities for equal priors: the calibration uses the same weights
    w_calibration = rebalance_weights(y_test, w_test)
    calibration = {}
    for name in CALIBRATION_MODELS:
        c = calibration_curve(y_test, scores[name], w_calibration, bins=CALIBRATION_BINS)
        calibration[name] = {k: getattr(c, k).tolist() for k in c._fields}
    pngs = {
        "roc.png": plot.roc_curve(
            y_test, scores, out / "roc.png", weight=w_test, title="W vs QCD jets, test fold"
        ),
        "scores.png": plot.score_distributions(
            y_test,
            scores,
            out / "scores.png",
            weight=w_test,
            signal_name="W jets",
            background_name="QCD jets",
        ),
        "mass_sculpting.png": plot.mass_sculpting(
            mass_test,
            y_test,
            {n: scores[n] for n in ("BDT", "MLP", "MLP + DisCo")},
            out / "mass_sculpting.png",
            weight=w_test,
            signal_efficiency=SIGNAL_EFFICIENCY,
            bins=MASS_BINS,
            mass_label="soft-drop jet mass [GeV]",
        ),
        "jsd_vs_rejection.png": plot.jsd_vs_rejection(
            {
                r["model"] + (f" (λ = {chosen:g}, chosen)" if r["model"] == "MLP + DisCo" else ""): (
                    r["background_rejection"],
                    r["inverse_jsd"],
                )
                for r in rows
            },
            out / "jsd_vs_rejection.png",
            signal_efficiency=SIGNAL_EFFICIENCY,
            curves={
                "MLP, DisCo strength scan (test fold)": [
                    (p["background_rejection"], p["inverse_jsd"]) for p in scan_points
                ],
                "MLP, DisCo strength scan (validation fold: the choice)": [
                    (p["validation_background_rejection"], p["validation_inverse_jsd"]) for p in scan_points
                ],
            },
            curve_labels={
                "MLP, DisCo strength scan (test fold)": [f"λ={p['strength']:g}" for p in scan_points],
                "MLP, DisCo strength scan (validation fold: the choice)": [
                    f"λ={p['strength']:g}" for p in scan_points
                ],
            },
        ),
        "calibration.png": plot.calibration(
            y_test,
            {n: scores[n] for n in CALIBRATION_MODELS},
            out / "calibration.png",
            weight=w_calibration,
            bins=CALIBRATION_BINS,
            title="W vs QCD jets, test fold (classes re-weighted to equal totals)",
        ),
    }
    stages.done(f"wrote {len(pngs)} plots")
    return pngs, calibration


def _report(
    data: _Data,
    taggers: _Taggers,
    engines: _Engines,
    evaluation: _Evaluation,
    plotted: tuple[dict[str, str], dict[str, dict[str, Any]]],
    cfg: DemoSettings,
    out: Path,
    stages: _Stages,
    quiet: bool,
) -> int:
    """Stage 7: the table, the verdict on the DisCo penalty and the checks on the terminal,
    report.md and summary.json; 0 when every check passed, 1 otherwise."""
    say = (lambda *a: None) if quiet else print
    d = data
    pngs, calibration = plotted
    rows, scan_points, n_test = evaluation.rows, evaluation.scan_points, evaluation.n_test
    on_validation, chosen, scan = taggers.on_validation, taggers.chosen, taggers.scan
    checks, where = engines.checks, d.where
    bkg = ~(evaluation.y_test > 0.5)
    n_sig, n_bkg = int((d.label == 1).sum()), int((d.label == 0).sum())
    by_name = {r["model"]: r for r in rows}
    plain, flat = by_name["MLP"], by_name["MLP + DisCo"]
    v_plain = on_validation[0.0]
    v_flat = on_validation[chosen]
    n_test_bkg = int(bkg.sum())
    verdict = (
        f"The DisCo penalty (lambda = {chosen:g}, "
        + (
            "fixed by the settings"
            if cfg.disco_strength
            else f"chosen on the validation fold as the flattest of lambda = "
            f"{', '.join(f'{v:g}' for v in scan)} that keeps at least "
            f"{cfg.disco_min_rejection_fraction:.0%} of the plain MLP's rejection"
        )
        + f") flattens the background mass: at {SIGNAL_EFFICIENCY:.0%} signal efficiency on the "
        f"test fold ({n_test_bkg} QCD jets), 1/JSD goes from {plain['inverse_jsd']:.1f} (plain MLP) to "
        f"{flat['inverse_jsd']:.1f}, x{flat['inverse_jsd'] / plain['inverse_jsd']:.1f} "
        f"({_interval(flat['inverse_jsd_ratio_to_mlp_interval'])}), and the background dCor^2(score, "
        f"m_SD) from {plain['background_dcor2']:.3f} to {flat['background_dcor2']:.3f}, while the "
        f"background rejection goes from {plain['background_rejection']:.1f} to "
        f"{flat['background_rejection']:.1f}, "
        f"x{flat['background_rejection'] / plain['background_rejection']:.2f} "
        f"({_interval(flat['rejection_ratio_to_mlp_interval'])}); AUC {plain['auc']:.3f} -> "
        f"{flat['auc']:.3f}. On the validation fold: 1/JSD {v_plain['inverse_jsd']:.1f} -> "
        f"{v_flat['inverse_jsd']:.1f}, rejection {v_plain['background_rejection']:.1f} -> "
        f"{v_flat['background_rejection']:.1f}. In parentheses: central 68% intervals from "
        f"{cfg.bootstrap_replicas} bootstrap replicas of the test jets, the ratios paired (both "
        f"taggers on the same replicas). The soft-drop mass is the strongest discriminant, so a "
        f"tagger that may not sculpt it gives up part of its rejection. The 1/JSD of a tagger that "
        f"does not sculpt at all is bounded by the statistics of the passing jets (about "
        f"8 ln2 N_pass / (bins - 1) with N_pass passing jets: "
        f"{8 * np.log(2) * flat['background_passing'] / (len(MASS_BINS) - 2):.0f} for the DisCo MLP's "
        f"{flat['background_passing']})."
    )
    ok = all(c["passed"] for c in checks.values())
    elapsed = time.perf_counter() - stages.start
    table = _format_table(rows, markdown=False)
    say("")
    say(table)
    say("")
    say(verdict)
    say(
        "DisCo strength scan (MLP; validation | test): "
        + "; ".join(
            f"lambda {p['strength']:g}{' (chosen)' if p['chosen'] else ''}: 1/eps_B "
            f"{p['validation_background_rejection']:.1f} | {p['background_rejection']:.1f}, 1/JSD "
            f"{p['validation_inverse_jsd']:.1f} | {p['inverse_jsd']:.1f}"
            for p in scan_points
        )
    )
    for name, c in checks.items():
        if "max_abs_difference" in c:
            say(
                f"check {name:<12} hepinfer vs {c['reference']:<12} max |difference| = "
                f"{c['max_abs_difference']:.2e}  {'ok' if c['passed'] else 'FAILED'}"
            )
        else:
            say(
                f"check {name:<12} {c['entries']} entries equal to the engines' scores  "
                f"{'ok' if c['passed'] else 'FAILED'}"
            )
    _write_report(out, rows, checks, verdict, pngs, where, cfg, elapsed, n_test, scan_points)
    summary = {
        "sample": where,
        "n_jets": {
            "signal": n_sig,
            "background": n_bkg,
            "train": int(d.train.sum()),
            "validation": int(d.validation.sum()),
            "test": n_test,
            "validation_background": int((d.validation & (d.label == 0)).sum()),
            "test_background": int((d.test & (d.label == 0)).sum()),
            "evaluation_background": d.n_extra,
            "early_stopping": int(d.stopping.sum()),
        },
        "jet_features": JET_FEATURES,
        "particle_features": PARTICLE_FEATURES,
        "decorrelation_mass": DECORRELATION_MASS,
        "signal_efficiency": SIGNAL_EFFICIENCY,
        "settings": {k: v for k, v in vars(cfg).items()},
        "models": rows,
        "disco_strength": chosen,
        "disco_scan": scan_points,
        "calibration": calibration,
        "checks": checks,
        "all_checks_passed": ok,
        "seconds": elapsed,
    }
    with open(out / "summary.json", "w") as fh:
        json.dump(summary, fh, indent=2, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))
    say(
        f"\nwrote models, test_jets.root, scores.root, pfn_scores.root, {', '.join(pngs)}, report.md and "
        f"summary.json to {out}/ in {elapsed:.1f} s"
    )
    say("all checks passed" if ok else "SOME CHECKS FAILED")
    return 0 if ok else 1


def _write_report(
    out: Path,
    rows: Sequence[dict[str, Any]],
    checks: Mapping[str, Mapping[str, Any]],
    verdict: str,
    pngs: Mapping[str, str],
    where: str,
    cfg: DemoSettings,
    elapsed: float,
    n_test: int,
    scan_points: Sequence[Mapping[str, Any]],
) -> None:
    lines = [
        "# hepinfer demo: W-jet tagging, decorrelated from the jet mass",
        "",
        (
            f"Sample: {where}. Test fold (event % {N_FOLDS} == {TEST_FOLD}, and the evaluation-only QCD "
            f"jets with odd event numbers): {n_test} jets. Jet features: "
            f"{', '.join(JET_FEATURES)}; constituent features (PFN, up to {cfg.max_particles} per jet): "
            f"{', '.join(PARTICLE_FEATURES)}. Decorrelated from: {DECORRELATION_MASS}."
        ),
        "",
        _format_table(rows, markdown=True),
        "",
        (
            f"1/eps_B and 1/JSD at {SIGNAL_EFFICIENCY:.0%} signal efficiency; JSD (base 2) between the "
            "background soft-drop mass histograms (20 GeV bins, 0-200 GeV) passing and failing the cut. "
            f"Speeds: one thread, all {n_test} test jets in one call, median of {cfg.timing_repeats}."
        ),
        "",
        (
            "The 'bkg passing' column counts the test background jets behind each rejection and 1/JSD; "
            "in parentheses, central 68% intervals from a bootstrap of the test jets "
            f"({cfg.bootstrap_replicas} replicas, resampled within each class; the 1/JSD intervals sit "
            "below the central values because resampling duplicates jets, which adds to the JSD's "
            "finite-sample bias). "
            "`hepinfer demo --generate N` trains and tests on a freshly generated, larger Pythia sample."
        ),
        "",
        verdict,
        "",
    ]
    lines += [
        "DisCo strength scan (same MLP, same seed; lambda 0 = the plain MLP). lambda is chosen on the "
        "validation fold; the test columns are what the table reports:",
        "",
        "| lambda | validation 1/eps_B @50% | validation 1/JSD @50% | test 1/eps_B @50% | test 1/JSD @50% "
        "| test 1/eps_B / plain | test 1/JSD / plain | test bkg dCor2(s,m) |",
        "|---|---|---|---|---|---|---|---|",
        *(
            f"| {p['strength']:g}{' (chosen)' if p['chosen'] else ''} "
            f"| {p['validation_background_rejection']:.1f} "
            f"| {p['validation_inverse_jsd']:.1f} "
            f"| {p['background_rejection']:.1f} ({_interval(p['background_rejection_interval'])}) "
            f"| {p['inverse_jsd']:.1f} ({_interval(p['inverse_jsd_interval'])}) "
            f"| {p['background_rejection'] / scan_points[0]['background_rejection']:.2f} "
            f"({_interval(p['rejection_ratio_to_mlp_interval'])}) "
            f"| {p['inverse_jsd'] / scan_points[0]['inverse_jsd']:.1f} "
            f"({_interval(p['inverse_jsd_ratio_to_mlp_interval'])}) "
            f"| {p['background_dcor2']:.3f} |"
            for p in scan_points
        ),
        "",
        "In parentheses: central 68% intervals from the bootstrap of the test jets (the ratios to the "
        "plain MLP paired: both networks on the same replicas).",
        "",
    ]
    lines += [
        "## Checks",
        "",
    ]
    for name, c in checks.items():
        if "max_abs_difference" in c:
            lines.append(
                f"* {name} ({os.path.basename(str(c['file']))}): max |hepinfer - {c['reference']}| = "
                f"{c['max_abs_difference']:.2e}: {'passed' if c['passed'] else 'FAILED'}"
            )
        else:
            lines.append(
                f"* {name}: {c['entries']} entries, equal to the engines' scores: "
                f"{'passed' if c['passed'] else 'FAILED'}"
            )
    lines += ["", f"Total time {elapsed:.1f} s.", "", "## Plots", ""]
    captions = {
        "mass_sculpting.png": (
            "Background soft-drop mass before and after the cuts at 50% signal efficiency (test fold): "
            "the plain MLP and the BDT shape it into the W peak, the DisCo MLP keeps it close to the "
            "uncut shape."
        ),
        "jsd_vs_rejection.png": (
            "1/JSD against background rejection at 50% signal efficiency: one marker per tagger (test "
            "fold), and the DisCo strength scan of the MLP on the test fold and on the validation fold, "
            "where lambda is chosen (each point labelled with its lambda); up and right is better."
        ),
        "calibration.png": (
            "Calibration (reliability diagram) of the BDT and MLP scores on the test fold: observed "
            "signal fraction against mean score in 10 score bins, with binomial errors, the classes "
            "re-weighted to equal totals as in training; a calibrated score follows the diagonal."
        ),
    }
    for name in pngs:
        if name in captions:
            lines += [captions[name], ""]
        lines.append(f"![{name}]({name})")
        lines.append("")
    (out / "report.md").write_text("\n".join(lines))
