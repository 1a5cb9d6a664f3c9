"""The decorrelation-strength scan and the evidence every training run leaves behind.

* :func:`scan_strength`: train the same model for several strengths λ (and λ = 0 as the
  reference), measure each on the validation sample at 50 % signal efficiency (background
  rejection 1/ε_B and 1/JSD of the background mass passing vs failing the cut), choose λ with the
  demo's rule (:func:`hepinfer.demo.choose_disco_strength`: the flattest λ that keeps at least
  ``min_rejection_fraction`` of the λ = 0 rejection) and write the (rejection, 1/JSD) front with
  the chosen point as ``strength_scan.json`` and ``strength_scan.png``.
* :func:`scan_config`: the same for a whole ``hepinfer train`` run (``--scan-strength``): one run
  per λ in ``<output>/strength_<λ>/``, each with its own evidence.
* :func:`run_evidence`: the summary numbers of a trained binary classifier (AUC, rejection at
  50 % signal efficiency, 1/JSD, dCor²) and its ROC, score and mass-sculpting plots.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Sequence
from typing import Any, Callable, Optional

import numpy as np

from hepinfer.metrics import decorrelation_metrics, roc_auc

__all__ = ["SIGNAL_EFFICIENCY", "StrengthScan", "run_evidence", "scan_config", "scan_strength"]

#: the working point of the evidence and of the scan
SIGNAL_EFFICIENCY = 0.5
#: mass bins of the JSD (as hepinfer.train.Trainer's per-epoch metrics)
MASS_BINS = 50


def _finite_or_none(v: float) -> Optional[float]:
    return float(v) if math.isfinite(v) else None


def run_evidence(
    output: str,
    score: np.ndarray,
    label: np.ndarray,
    weight: Optional[np.ndarray],
    mass: Optional[np.ndarray],
    *,
    name: str = "model",
    prefix: str = "test_",
    plots: bool = True,
) -> dict[str, Any]:
    """Metrics of a binary classifier on a sample (``<prefix>auc``,
    ``<prefix>background_rejection`` and ``<prefix>inverse_jsd`` at 50 % signal efficiency,
    ``<prefix>background_dcor2`` of score and mass) and, with ``plots``, ``roc.png``,
    ``scores.png`` and ``mass_sculpting.png`` in ``output`` (their paths under ``plots``).
    Values that are undefined (a cut no background passes) are ``None``."""
    from hepinfer.disco import distance_correlation

    s = np.asarray(score, dtype=np.float64).reshape(len(label), -1)[:, 0]
    y = np.asarray(label) > 0.5
    w = np.ones(len(s)) if weight is None else np.asarray(weight, dtype=np.float64)
    out: dict[str, Any] = {f"{prefix}auc": roc_auc(s, y, w)}
    if mass is not None and y.any() and (~y).any():
        m = np.asarray(mass, dtype=np.float64)
        wp = decorrelation_metrics(s, m, y, w, signal_efficiency=SIGNAL_EFFICIENCY, bins=MASS_BINS)
        out[f"{prefix}background_rejection"] = _finite_or_none(wp["background_rejection"])
        out[f"{prefix}inverse_jsd"] = _finite_or_none(wp["inverse_jsd"])
        if (~y).sum() > 1:
            out[f"{prefix}background_dcor2"] = float(distance_correlation(s[~y], m[~y], w[~y]))
    if plots and y.any() and (~y).any():
        from hepinfer import plot

        os.makedirs(output, exist_ok=True)
        paths = {
            "roc": plot.roc_curve(y, {name: s}, os.path.join(output, "roc.png"), weight=w),
            "scores": plot.score_distributions(y, {name: s}, os.path.join(output, "scores.png"), weight=w),
        }
        if mass is not None:
            paths["mass_sculpting"] = plot.mass_sculpting(
                np.asarray(mass, dtype=np.float64),
                y,
                {name: s},
                os.path.join(output, "mass_sculpting.png"),
                weight=w,
                signal_efficiency=SIGNAL_EFFICIENCY,
            )
        out["plots"] = paths
    return out


@dataclasses.dataclass
class StrengthScan:
    """The result of a strength scan: ``points`` (one dict per λ, λ = 0 first: ``strength``,
    ``validation_background_rejection``, ``validation_inverse_jsd``, ``validation_auc`` and
    whatever else the runs report), the ``chosen`` λ, the ``rule`` that chose it and the files
    written (``json``, ``plot``)."""

    points: list[dict[str, Any]]
    chosen: float
    rule: str
    json: Optional[str] = None
    plot: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _choose(points: Sequence[dict[str, Any]], min_rejection_fraction: float) -> tuple[float, str]:
    from hepinfer.demo import choose_disco_strength

    def value(p: dict[str, Any], key: str) -> float:
        v = p.get(key)
        return math.inf if v is None else float(v)  # None: no background passes / none fails

    reference = [p for p in points if p["strength"] == 0]
    if not reference:
        raise ValueError("the scan needs the λ = 0 reference point")
    scan = {
        float(p["strength"]): (
            value(p, "validation_background_rejection"),
            value(p, "validation_inverse_jsd"),
        )
        for p in points
        if p["strength"] > 0
    }
    chosen = choose_disco_strength(
        value(reference[0], "validation_background_rejection"), scan, min_rejection_fraction
    )
    rule = (
        "largest validation 1/JSD among the strengths that keep at least "
        f"{min_rejection_fraction:.0%} of the λ = 0 validation rejection at {SIGNAL_EFFICIENCY:.0%} "
        "signal efficiency (hepinfer.demo.choose_disco_strength)"
    )
    return chosen, rule


def _write(result: StrengthScan, output: Optional[str], title: str) -> StrengthScan:
    if output is None:
        return result
    os.makedirs(output, exist_ok=True)
    from hepinfer import plot

    def pair(p: dict[str, Any], where: str) -> tuple[float, float]:
        r, j = p.get(f"{where}_background_rejection"), p.get(f"{where}_inverse_jsd")
        return (math.nan if r is None else r, math.nan if j is None else j)

    curves = {f"{title} (validation: the choice)": [pair(p, "validation") for p in result.points]}
    labels = {f"{title} (validation: the choice)": [f"λ={p['strength']:g}" for p in result.points]}
    if all("test_background_rejection" in p for p in result.points):
        curves[f"{title} (test)"] = [pair(p, "test") for p in result.points]
        labels[f"{title} (test)"] = [f"λ={p['strength']:g}" for p in result.points]
    chosen = next(p for p in result.points if p["strength"] == result.chosen)
    result.plot = plot.jsd_vs_rejection(
        {f"chosen λ = {result.chosen:g} (validation)": pair(chosen, "validation")},
        os.path.join(output, "strength_scan.png"),
        signal_efficiency=SIGNAL_EFFICIENCY,
        curves=curves,
        curve_labels=labels,
    )
    result.json = os.path.join(output, "strength_scan.json")
    with open(result.json, "w") as f:
        json.dump(
            result.to_dict(), f, indent=2, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)
        )
    return result


def _validation_point(history: Any) -> dict[str, Any]:
    """The validation metrics of the restored (selected) epoch."""
    best = history.best_epoch if history.best_epoch >= 1 else len(history.epochs)
    record = history.epochs[best - 1]
    keys = ("auc", "background_rejection", "inverse_jsd", "dcor2")
    return {
        "best_epoch": best,
        **{f"validation_{k}": _finite_or_none(record.get(f"validation_{k}", math.nan)) for k in keys},
    }


def scan_strength(
    make_model: Callable[[], Any],
    train: Any,
    validation: Any,
    strengths: Sequence[float],
    *,
    decorrelation: str = "disco",
    min_rejection_fraction: float = 0.5,
    output: Optional[str] = None,
    test: Any = None,
    **trainer_options: Any,
) -> StrengthScan:
    """Train ``make_model()`` (a fresh model each call; seed inside it for identical starts) with
    ``decorrelation`` at each strength in ``strengths`` and at λ = 0, on the
    :class:`~hepinfer.train.Sample` ``train`` (selection and choice on ``validation``, which needs
    a mass), with the :class:`~hepinfer.train.Trainer` options ``trainer_options``; optionally
    measure every λ on ``test`` too. Writes ``strength_scan.json``/``.png`` into ``output`` when
    given. Returns the :class:`StrengthScan` (the models are not kept: retrain the chosen λ)."""
    from hepinfer.train.loop import Trainer

    if validation is None or validation.mass is None:
        raise ValueError("scan_strength needs a validation sample with a mass")
    values = sorted({float(v) for v in strengths})
    if not values or any(v <= 0 for v in values):
        raise ValueError(f"strengths must be a non-empty list of values > 0, got {list(strengths)}")
    points = []
    for lam in [0.0, *values]:
        trainer = Trainer(
            make_model(),
            decorrelation=decorrelation if lam > 0 else None,
            decorrelation_strength=lam,
            **trainer_options,
        )
        history = trainer.fit(train, validation)
        point: dict[str, Any] = {"strength": lam, **_validation_point(history)}
        if test is not None and test.mass is not None:
            point.update(
                run_evidence(
                    "",
                    trainer.predict(test),
                    test.target.cpu().numpy(),
                    None if test.weight is None else test.weight.cpu().numpy(),
                    test.mass.cpu().numpy(),
                    plots=False,
                )
            )
        points.append(point)
    chosen, rule = _choose(points, min_rejection_fraction)
    return _write(StrengthScan(points, chosen, rule), output, f"{decorrelation} strength scan")


def scan_config(config: Any, strengths: Optional[Sequence[float]] = None) -> dict[str, Any]:
    """``hepinfer train --scan-strength``: :func:`hepinfer.train.run` for λ = 0 and each strength
    (default ``config.loss.strength_scan``), each into ``<output>/strength_<λ>/`` with its own
    summary and plots; the choice as :func:`scan_strength`'s; writes ``strength_scan.json``/``.png``
    and ``summary.json`` (the chosen run's summary plus the scan) into ``config.output``."""
    from hepinfer.train import run
    from hepinfer.train.loop import History

    values = sorted({float(v) for v in (config.loss.strength_scan if strengths is None else strengths)})
    if not values or any(v <= 0 for v in values):
        raise ValueError(f"strengths must be a non-empty list of values > 0, got {values}")
    if config.loss.decorrelation == "none":
        raise ValueError("a strength scan needs loss.decorrelation = 'disco', 'mode' or 'adversary'")
    points, summaries = [], {}
    for lam in [0.0, *values]:
        folder = os.path.join(config.output, f"strength_{lam:g}")
        one = dataclasses.replace(
            config,
            output=folder,
            loss=dataclasses.replace(
                config.loss,
                decorrelation_strength=lam,
                decorrelation=config.loss.decorrelation if lam > 0 else "none",
                strength_scan=[],
            ),
        )
        summary = run(one)
        summaries[lam] = summary
        history = History(list(summary["history"]), int(summary["best_epoch"]))
        point = {"strength": lam, "output": folder, **_validation_point(history)}
        point.update({k: v for k, v in summary.items() if k.startswith("test_")})
        points.append(point)
    chosen, rule = _choose(points, config.loss.strength_scan_min_rejection_fraction)
    result = _write(
        StrengthScan(points, chosen, rule), config.output, f"{config.loss.decorrelation} strength scan"
    )
    summary = dict(summaries[chosen])
    summary["strength_scan"] = result.to_dict()
    summary["chosen_strength"] = chosen
    summary["chosen_output"] = os.path.join(config.output, f"strength_{chosen:g}")
    with open(os.path.join(config.output, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))
    return summary
