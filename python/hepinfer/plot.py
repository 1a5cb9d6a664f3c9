"""Plots of a tagger's performance and of its mass sculpting, written as PNG files.

    >>> from hepinfer import plot
    >>> plot.roc_curve(label, {"BDT": s_bdt, "MLP": s_mlp}, "roc.png")
    >>> plot.score_distributions(label, {"BDT": s_bdt}, "scores.png")
    >>> plot.mass_sculpting(mass, label, {"MLP": s_mlp, "MLP + DisCo": s_disco}, "sculpting.png")
    >>> plot.jsd_vs_rejection({"MLP": (r50, inv_jsd), ...}, "jsd_vs_rejection.png")
    >>> plot.calibration(label, {"BDT": s_bdt, "MLP": s_mlp}, "calibration.png")
    >>> plot.multiclass_roc(label, probabilities, "roc.png", classes=["QCD", "W", "top"])
    >>> plot.confusion_matrix(label, probabilities, "confusion.png", classes=["QCD", "W", "top"])
    >>> plot.prediction_vs_truth(truth, prediction, "regression.png")

Every function draws on its own ``matplotlib.figure.Figure`` rendered by the Agg backend (no
pyplot state, no display needed, safe to call from several threads) and returns the path written.
The mplhep ROOT style is used when mplhep is installed, matplotlib's defaults otherwise.
Cuts follow :mod:`hepinfer.metrics`: events pass when ``score >= cut``, the cut keeping the
requested fraction of the signal. Needs matplotlib (``pip install matplotlib``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Optional, Union

import numpy as np
import numpy.typing as npt

__all__ = [
    "calibration",
    "confusion_matrix",
    "efficiency_curve",
    "jsd_vs_rejection",
    "mass_sculpting",
    "multiclass_roc",
    "prediction_vs_truth",
    "roc_curve",
    "score_distributions",
]

PathLike = Union[str, "os.PathLike[str]"]


def _matplotlib() -> Any:
    try:
        import matplotlib
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("hepinfer.plot needs matplotlib (pip install matplotlib)") from e
    return matplotlib


@contextlib.contextmanager
def _style() -> Iterator[None]:
    """mplhep's ROOT style when mplhep is importable, matplotlib's defaults otherwise.

    The ROOT style's font (26 pt) and tick lengths are meant for its 10 x 10 inch figures; these
    plots are about 6.4 inches wide, so both are scaled down with the figure (otherwise axis
    labels and legends do not fit)."""
    _matplotlib()
    try:
        import mplhep

        scale = 6.4 / 10.0
        root = dict(mplhep.style.ROOT)
        style: Any = {
            **root,
            "font.size": float(root.get("font.size", 26)) * scale,
            **{
                f"{axis}tick.{which}.size": float(root.get(f"{axis}tick.{which}.size", 0)) * scale
                for axis in "xy"
                for which in ("major", "minor")
                if f"{axis}tick.{which}.size" in root
            },
        }
    except Exception:  # noqa: BLE001 - any failure to get the optional style means: plain style
        style = "default"
    import matplotlib.style

    with matplotlib.style.context(style):
        yield


def _figure(width: float = 6.4, height: float = 4.8) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _save(fig: Any, path: PathLike) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=120)
    return path


def _plain_log_ticks(axis: Any) -> None:
    """Log-axis ticks at 1, 2, 5 x 10^k written as plain numbers."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _labels(label: npt.ArrayLike) -> np.ndarray:
    y = np.asarray(label).reshape(-1)
    if y.size == 0:
        raise ValueError("label is empty")
    is_signal = y > 0.5
    if is_signal.all() or not is_signal.any():
        raise ValueError("label must hold both signal (1) and background (0) events")
    return is_signal


def _scores(scores: Mapping[str, npt.ArrayLike], n: int) -> dict[str, np.ndarray]:
    if not scores:
        raise ValueError("no scores given")
    out = {}
    for name, s in scores.items():
        a = np.asarray(s, dtype=np.float64).reshape(-1)
        if a.shape != (n,):
            raise ValueError(f"scores[{name!r}] has {a.size} entries, label has {n}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"scores[{name!r}] holds NaN or inf")
        out[str(name)] = a
    return out


def efficiency_curve(
    label: npt.ArrayLike, score: npt.ArrayLike, weight: Optional[npt.ArrayLike] = None
) -> tuple[np.ndarray, np.ndarray]:
    """Signal and background efficiencies ``(eps_S, eps_B)`` of the cuts ``score >= t`` for every
    distinct score ``t`` (from the highest to the lowest; both end at 1). Ties move together."""
    is_signal = _labels(label)
    s: np.ndarray = np.asarray(score, dtype=np.float64).reshape(-1)
    if s.shape != is_signal.shape:
        raise ValueError(f"score has {s.size} entries, label has {is_signal.size}")
    w: np.ndarray = np.ones_like(s) if weight is None else np.asarray(weight, dtype=np.float64).reshape(-1)
    order = np.argsort(-s, kind="stable")
    s, sig, w = s[order], is_signal[order], w[order]
    last_of_tie = np.r_[s[1:] != s[:-1], True]
    eff_s = np.cumsum(np.where(sig, w, 0.0))[last_of_tie] / w[sig].sum()
    eff_b = np.cumsum(np.where(sig, 0.0, w))[last_of_tie] / w[~sig].sum()
    return eff_s, eff_b


def roc_curve(
    label: npt.ArrayLike,
    scores: Mapping[str, npt.ArrayLike],
    path: PathLike,
    *,
    weight: Optional[npt.ArrayLike] = None,
    title: Optional[str] = None,
) -> str:
    """Background rejection 1/eps_B against signal efficiency eps_S (log scale), one line per
    tagger, with the AUC in the legend."""
    from hepinfer.metrics import roc_auc

    is_signal = _labels(label)
    named = _scores(scores, is_signal.size)
    with _style():
        fig = _figure()
        ax = fig.add_subplot()
        for name, s in named.items():
            eff_s, eff_b = efficiency_curve(is_signal, s, weight)
            keep = eff_b > 0
            ax.plot(eff_s[keep], 1.0 / eff_b[keep], label=f"{name} (AUC {roc_auc(s, is_signal, weight):.3f})")
        eff = np.linspace(0.02, 1.0, 50)
        ax.plot(eff, 1.0 / eff, ls=":", color="grey", label="random")
        ax.set_yscale("log")
        _plain_log_ticks(ax.yaxis)
        ax.set_xlim(0.0, 1.0)
        ax.set_xlabel(r"signal efficiency $\varepsilon_S$")
        ax.set_ylabel(r"background rejection $1/\varepsilon_B$")
        if title:
            ax.set_title(title)
        ax.legend(loc="best")
        ax.grid(alpha=0.3, which="both")
        return _save(fig, path)


def score_distributions(
    label: npt.ArrayLike,
    scores: Mapping[str, npt.ArrayLike],
    path: PathLike,
    *,
    weight: Optional[npt.ArrayLike] = None,
    bins: int = 40,
    signal_name: str = "signal",
    background_name: str = "background",
) -> str:
    """Normalised score histograms of signal and background, one panel per tagger."""
    is_signal = _labels(label)
    named = _scores(scores, is_signal.size)
    w = np.ones(is_signal.size) if weight is None else np.asarray(weight, dtype=np.float64).reshape(-1)
    n = len(named)
    with _style():
        fig = _figure(3.6 * n, 3.6)
        axes = fig.subplots(1, n, squeeze=False)[0]
        for ax, (name, s) in zip(axes, named.items()):
            lo, hi = float(s.min()), float(s.max())
            edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
            ax.hist(
                s[~is_signal],
                edges,
                weights=w[~is_signal],
                density=True,
                histtype="step",
                lw=1.5,
                label=background_name,
            )
            ax.hist(
                s[is_signal],
                edges,
                weights=w[is_signal],
                density=True,
                histtype="step",
                lw=1.5,
                label=signal_name,
            )
            ax.set_title(name)
            ax.set_xlabel("score")
            ax.set_yscale("log")
        axes[0].set_ylabel("normalised")
        axes[0].legend(loc="best")
        return _save(fig, path)


def mass_sculpting(
    mass: npt.ArrayLike,
    label: npt.ArrayLike,
    scores: Mapping[str, npt.ArrayLike],
    path: PathLike,
    *,
    weight: Optional[npt.ArrayLike] = None,
    signal_efficiency: float = 0.5,
    bins: Union[int, Sequence[float], np.ndarray] = 20,
    mass_range: Optional[tuple[float, float]] = None,
    mass_label: str = "jet mass [GeV]",
) -> str:
    """The background mass distribution before and after each tagger's cut at
    ``signal_efficiency`` (all normalised to unit area): a flat tagger leaves the shape as it
    was, a sculpting one makes it peak where the signal is. The signal's mass is drawn shaded."""
    from hepinfer.metrics import cut_at_signal_efficiency

    is_signal = _labels(label)
    named = _scores(scores, is_signal.size)
    m = np.asarray(mass, dtype=np.float64).reshape(-1)
    if m.shape != is_signal.shape:
        raise ValueError(f"mass has {m.size} entries, label has {is_signal.size}")
    w = np.ones(m.size) if weight is None else np.asarray(weight, dtype=np.float64).reshape(-1)
    edges = np.histogram_bin_edges(m[~is_signal], bins=bins, range=mass_range)
    with _style():
        fig = _figure(8.4, 4.8)
        ax = fig.add_subplot()
        ax.hist(
            m[is_signal], edges, weights=w[is_signal], density=True, color="grey", alpha=0.25, label="signal"
        )
        ax.hist(
            m[~is_signal],
            edges,
            weights=w[~is_signal],
            density=True,
            histtype="step",
            color="black",
            lw=2,
            label="background, all",
        )
        for name, s in named.items():
            cut = cut_at_signal_efficiency(s[is_signal], signal_efficiency, w[is_signal])
            passing = ~is_signal & (s >= cut)
            if w[passing].sum() > 0:
                ax.hist(
                    m[passing],
                    edges,
                    weights=w[passing],
                    density=True,
                    histtype="step",
                    lw=1.5,
                    label=f"background, {name} cut",
                )
        ax.set_xlabel(mass_label)
        ax.set_ylabel("normalised")
        ax.set_title(rf"background passing the cut at $\varepsilon_S$ = {signal_efficiency:.0%}")
        # beside the axes: inside, it hides the peak the taggers sculpt
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
        return _save(fig, path)


def jsd_vs_rejection(
    points: Mapping[str, tuple[float, float]],
    path: PathLike,
    *,
    signal_efficiency: float = 0.5,
    curves: Optional[Mapping[str, Sequence[tuple[float, float]]]] = None,
    curve_labels: Optional[Mapping[str, Sequence[str]]] = None,
) -> str:
    """Mass decorrelation 1/JSD against background rejection, both at ``signal_efficiency``
    (the DisCo paper's figure of merit): one marker per tagger ``name -> (rejection, 1/JSD)``,
    optionally ``curves`` (e.g. a scan of the decorrelation strength), whose points
    ``curve_labels[name]`` (one text per point, e.g. the strength) annotates. Up and right is better."""
    if not points and not curves:
        raise ValueError("nothing to draw")
    pct = f"{signal_efficiency:.0%}"
    with _style():
        fig = _figure(7.2, 7.2)
        ax = fig.add_subplot()
        for name, line in (curves or {}).items():
            xy = np.asarray(line, dtype=np.float64).reshape(-1, 2)
            ok = np.all(np.isfinite(xy), axis=1)
            ax.plot(xy[ok, 0], xy[ok, 1], "o--", ms=4, alpha=0.6, label=name)
            texts = (curve_labels or {}).get(name)
            if texts is not None:
                if len(texts) != len(xy):
                    raise ValueError(f"curve_labels[{name!r}] has {len(texts)} labels for {len(xy)} points")
                for (x, y), text, good in zip(xy, texts, ok):
                    if good:
                        ax.annotate(
                            text, (x, y), textcoords="offset points", xytext=(4, 4), fontsize="x-small"
                        )
        markers = "s^vDP*X"
        for i, (name, (rejection, inverse_jsd)) in enumerate(points.items()):
            if np.isfinite(rejection) and np.isfinite(inverse_jsd):
                ax.plot([rejection], [inverse_jsd], markers[i % len(markers)], ms=9, label=name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        _plain_log_ticks(ax.xaxis)
        _plain_log_ticks(ax.yaxis)
        ax.set_xlabel(rf"background rejection $1/\varepsilon_B$ at $\varepsilon_S$ = {pct}")
        ax.set_ylabel(rf"1/JSD, background mass pass vs fail, $\varepsilon_S$ = {pct}", fontsize="small")
        # below the axes: inside, it covers the scan's strength labels
        fig.legend(loc="outside lower center", ncols=1, fontsize="small")
        ax.grid(alpha=0.3, which="both")
        return _save(fig, path)


def calibration(
    label: npt.ArrayLike,
    scores: Mapping[str, npt.ArrayLike],
    path: PathLike,
    *,
    weight: Optional[npt.ArrayLike] = None,
    bins: Union[int, Sequence[float]] = 10,
    strategy: str = "uniform",
    title: Optional[str] = None,
) -> str:
    """Reliability diagram: the observed signal fraction (with its binomial error) against the
    mean score in bins of score, one set of points per tagger, and the diagonal that a
    calibrated signal probability follows; below, the (weighted) number of events per bin.
    Scores must lie in [0, 1] (see :func:`hepinfer.metrics.calibration_curve`). A tagger
    trained on classes re-weighted to equal totals is calibrated for that prior: pass the same
    re-weighting as ``weight``."""
    from hepinfer.metrics import calibration_curve

    is_signal = _labels(label)
    named = _scores(scores, is_signal.size)
    curves = {
        name: calibration_curve(is_signal, s, weight, bins=bins, strategy=strategy)
        for name, s in named.items()
    }
    with _style():
        fig = _figure(6.4, 6.4)
        top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": (3, 1)})
        top.plot([0.0, 1.0], [0.0, 1.0], ls=":", color="grey", label="perfectly calibrated")
        markers = "os^vDP*X"
        for i, (name, c) in enumerate(curves.items()):
            line = top.errorbar(
                c.mean_score,
                c.signal_fraction,
                yerr=c.signal_fraction_error,
                fmt=markers[i % len(markers)] + "-",
                ms=5,
                lw=1,
                capsize=2,
                label=name,
            )
            totals = np.zeros(c.bin_edges.size - 1)
            totals[c.bin_index] = c.sum_of_weights
            bottom.stairs(totals, c.bin_edges, color=line[0].get_color(), lw=1.5)
        top.set_xlim(0.0, 1.0)
        top.set_ylim(-0.02, 1.02)
        top.set_ylabel("observed signal fraction")
        top.legend(fontsize="small", loc="upper left")
        top.grid(alpha=0.3)
        if title:
            top.set_title(title)
        bottom.set_yscale("log")
        from matplotlib.ticker import NullFormatter

        bottom.yaxis.set_minor_formatter(NullFormatter())  # decades only: the panel is short
        bottom.set_xlabel("score (mean in each bin)")
        bottom.set_ylabel("events" if weight is None else "sum of weights")
        return _save(fig, path)


# ------------------------------------------------------------------------------------------
# several classes and regressions


def _class_inputs(
    label: npt.ArrayLike, probabilities: npt.ArrayLike, classes: Optional[Sequence[str]]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"probabilities must have shape (events, classes) with >= 2 classes, got {p.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError("probabilities hold NaN or inf")
    y = np.asarray(label).reshape(-1)
    if y.shape != (p.shape[0],):
        raise ValueError(f"label has {y.size} entries, probabilities {p.shape[0]} rows")
    if y.size == 0:
        raise ValueError("label is empty")
    if np.any((y != np.round(y)) | (y < 0) | (y >= p.shape[1])):
        raise ValueError(f"label must hold class indices in [0, {p.shape[1]})")
    names = [f"class {i}" for i in range(p.shape[1])] if classes is None else [str(c) for c in classes]
    if len(names) != p.shape[1]:
        raise ValueError(f"{len(names)} class names for {p.shape[1]} probability columns")
    return y.astype(np.int64), p, names


def multiclass_roc(
    label: npt.ArrayLike,
    probabilities: npt.ArrayLike,
    path: PathLike,
    *,
    classes: Optional[Sequence[str]] = None,
    weight: Optional[npt.ArrayLike] = None,
    title: Optional[str] = None,
) -> str:
    """One-vs-rest ROC curves of an ``n``-class classifier: for each class, the rejection
    1/eps of all other classes against the efficiency of this class, cutting on this class's
    probability column (log scale), with the one-vs-rest AUC in the legend. Classes without
    events (or without any other class) are left out."""
    from hepinfer.metrics import roc_auc

    y, p, names = _class_inputs(label, probabilities, classes)
    with _style():
        fig = _figure()
        ax = fig.add_subplot()
        for c, name in enumerate(names):
            mine = y == c
            if not mine.any() or mine.all():
                continue
            eff_s, eff_b = efficiency_curve(mine, p[:, c], weight)
            keep = eff_b > 0
            auc = roc_auc(p[:, c], mine, weight)
            ax.plot(eff_s[keep], 1.0 / eff_b[keep], label=f"{name} vs rest (AUC {auc:.3f})")
        eff = np.linspace(0.02, 1.0, 50)
        ax.plot(eff, 1.0 / eff, ls=":", color="grey", label="random")
        ax.set_yscale("log")
        _plain_log_ticks(ax.yaxis)
        ax.set_xlim(0.0, 1.0)
        ax.set_xlabel(r"efficiency of the class $\varepsilon_c$")
        ax.set_ylabel(r"rejection of the other classes $1/\varepsilon_{\mathrm{rest}}$")
        if title:
            ax.set_title(title)
        ax.legend(loc="best")  # given: matplotlib warns when the default "best" takes over a second
        ax.grid(alpha=0.3, which="both")
        return _save(fig, path)


def confusion_matrix(
    label: npt.ArrayLike,
    probabilities: npt.ArrayLike,
    path: PathLike,
    *,
    classes: Optional[Sequence[str]] = None,
    weight: Optional[npt.ArrayLike] = None,
    title: Optional[str] = None,
) -> str:
    """The confusion matrix of an ``n``-class classifier (each event assigned to its most probable
    class), normalised per true class: each row shows where the events of one class end up
    (:func:`hepinfer.metrics.confusion_matrix` with ``normalize="true"``), the fractions written
    in the cells."""
    from hepinfer.metrics import confusion_matrix as matrix_of

    y, p, names = _class_inputs(label, probabilities, classes)
    m = matrix_of(y, p, p.shape[1], weight, normalize="true")
    k = len(names)
    with _style():
        fig = _figure(1.2 * k + 2.8, 1.1 * k + 1.8)
        ax = fig.add_subplot()
        image = ax.imshow(m, vmin=0.0, vmax=1.0, cmap="Blues")
        fig.colorbar(image, ax=ax, label="fraction of the true class")
        for i in range(k):
            for j in range(k):
                ax.text(
                    j,
                    i,
                    f"{m[i, j]:.2f}",
                    ha="center",
                    va="center",
                    color="white" if m[i, j] > 0.5 else "black",
                )
        ax.set_xticks(range(k), names, rotation=30 if k > 3 else 0)
        ax.set_yticks(range(k), names)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.minorticks_off()
        if title:
            ax.set_title(title)
        return _save(fig, path)


def prediction_vs_truth(
    truth: npt.ArrayLike,
    prediction: npt.ArrayLike,
    path: PathLike,
    *,
    weight: Optional[npt.ArrayLike] = None,
    bins: int = 40,
    name: str = "target",
    title: Optional[str] = None,
) -> str:
    """A regression's prediction against the truth: left, the 2-D histogram with the diagonal
    and the median prediction in bins of truth (bars: the 16-84 % band); right, the
    distribution of the residual ``prediction - truth`` with its bias and resolution
    (:func:`hepinfer.metrics.regression_summary`) in the legend."""
    from hepinfer.metrics import regression_summary, weighted_quantile

    t = np.asarray(truth, dtype=np.float64).reshape(-1)
    q = np.asarray(prediction, dtype=np.float64).reshape(-1)
    if q.shape != t.shape:
        raise ValueError(f"prediction has {q.size} entries, truth has {t.size}")
    if t.size == 0:
        raise ValueError("truth is empty")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(q))):
        raise ValueError("truth or prediction holds NaN or inf")
    w = np.ones(t.size) if weight is None else np.asarray(weight, dtype=np.float64).reshape(-1)
    found = regression_summary(q, t, w)
    lo = float(min(t.min(), q.min()))
    hi = float(max(t.max(), q.max()))
    hi = hi if hi > lo else lo + 1.0
    edges = np.linspace(lo, hi, bins + 1)
    with _style():
        fig = _figure(11.0, 4.8)
        left, right = fig.subplots(1, 2)
        left.hist2d(t, q, bins=[edges, edges], weights=w, cmin=1e-12, cmap="viridis")
        left.plot([lo, hi], [lo, hi], ls="--", color="grey", label="prediction = truth")
        profile = np.linspace(lo, hi, min(bins, 20) + 1)
        index = np.clip(np.searchsorted(profile, t, side="right") - 1, 0, len(profile) - 2)
        centres, medians, low, high = [], [], [], []
        for b in range(len(profile) - 1):
            inside = (index == b) & (w > 0)
            if inside.sum() >= 5:
                q16, q50, q84 = weighted_quantile(q[inside], [0.16, 0.5, 0.84], w[inside])
                centres.append(0.5 * (profile[b] + profile[b + 1]))
                medians.append(q50)
                low.append(q50 - q16)
                high.append(q84 - q50)
        if centres:
            left.errorbar(
                centres, medians, yerr=[low, high], fmt="o", color="red", ms=3, label="median, 16-84 %"
            )
        left.set_xlabel(f"true {name}")
        left.set_ylabel(f"predicted {name}")
        left.legend(loc="best")
        residual = q - t
        right.hist(
            residual,
            bins,
            weights=w,
            histtype="step",
            lw=1.5,
            label=f"bias {found['bias']:.3g}, resolution {found['resolution']:.3g}\n"
            f"median {found['median_bias']:.3g}, robust σ {found['robust_resolution']:.3g}",
        )
        right.set_xlabel(f"predicted - true {name}")
        right.set_ylabel("events")
        right.legend(loc="best")
        if title:
            fig.suptitle(title)
        return _save(fig, path)
