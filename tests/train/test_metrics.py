"""hepinfer.metrics against direct numpy/scipy computations."""

from __future__ import annotations

import numpy as np
import pytest

import hepinfer
from hepinfer import metrics

scipy_distance = pytest.importorskip("scipy.spatial.distance")


def _direct_cut(s, w, eff):
    # brute force over candidate cuts: the largest cut keeping >= eff of the signal weight
    best = -np.inf
    for c in np.unique(s):
        if w[s >= c].sum() / w.sum() >= eff * (1 - 1e-12):
            best = max(best, c)
    return best


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("eff", [0.3, 0.5, 0.8, 1.0])
def test_cut_and_rejection(rng, weighted, eff):
    ns, nb = 400, 700
    ss = np.round(rng.normal(1.0, 1.0, size=ns), 2)  # ties
    sb = np.round(rng.normal(0.0, 1.0, size=nb), 2)
    ws = rng.uniform(0.1, 2, size=ns) if weighted else None
    wb = rng.uniform(0.1, 2, size=nb) if weighted else None
    cut = metrics.cut_at_signal_efficiency(ss, eff, ws)
    assert cut == _direct_cut(ss, np.ones(ns) if ws is None else ws, eff)
    wbb = np.ones(nb) if wb is None else wb
    eps_b = wbb[sb >= cut].sum() / wbb.sum()
    assert metrics.background_rejection(ss, sb, eff, ws, wb) == pytest.approx(1 / eps_b, rel=1e-12)


def test_rejection_infinite_when_no_background_passes():
    assert metrics.background_rejection([5.0, 6.0], [0.0, 1.0], 0.5) == np.inf


def test_jsd_matches_scipy(rng):
    p, q = rng.uniform(size=20), rng.uniform(size=20)
    p[3] = 0.0
    ref = scipy_distance.jensenshannon(p, q, base=2) ** 2
    assert metrics.jensen_shannon_divergence(p, q) == pytest.approx(ref, rel=1e-10)
    ref_e = scipy_distance.jensenshannon(p, q) ** 2
    assert metrics.jensen_shannon_divergence(p, q, base=np.e) == pytest.approx(ref_e, rel=1e-10)
    assert metrics.jensen_shannon_divergence(p, p) == 0.0
    assert metrics.jensen_shannon_divergence([1.0, 0.0], [0.0, 1.0]) == pytest.approx(1.0)


@pytest.mark.parametrize("weighted", [False, True])
def test_decorrelation_metrics(rng, weighted):
    n = 5000
    sig = rng.integers(0, 2, size=n).astype(bool)
    mass = np.where(sig, rng.normal(80, 8, size=n), rng.exponential(50, size=n) + 20)
    score = np.where(sig, 1.0, 0.0) + 0.02 * mass + rng.normal(size=n)  # sculpts the mass
    w = rng.uniform(0.5, 1.5, size=n) if weighted else np.ones(n)
    res = metrics.decorrelation_metrics(
        score, mass, sig, w if weighted else None, 0.5, bins=30, mass_range=(20, 300)
    )
    cut = _direct_cut(score[sig], w[sig], 0.5)
    assert res["cut"] == cut
    b = ~sig
    assert res["background_rejection"] == pytest.approx(w[b].sum() / w[b][score[b] >= cut].sum(), rel=1e-12)
    edges = np.linspace(20, 300, 31)
    hp = np.histogram(mass[b][score[b] >= cut], edges, weights=w[b][score[b] >= cut])[0]
    hf = np.histogram(mass[b][score[b] < cut], edges, weights=w[b][score[b] < cut])[0]
    ref = scipy_distance.jensenshannon(hp, hf, base=2) ** 2
    assert res["jsd"] == pytest.approx(ref, rel=1e-10)
    assert res["inverse_jsd"] == pytest.approx(1 / ref, rel=1e-10)
    # a score independent of the mass sculpts much less
    flat = np.where(sig, 1.0, 0.0) + rng.normal(size=n)
    assert metrics.decorrelation_metrics(flat, mass, sig, bins=30, mass_range=(20, 300))["jsd"] < 0.2 * ref


def test_bad_inputs():
    with pytest.raises(hepinfer.InputError, match="signal_efficiency"):
        metrics.cut_at_signal_efficiency([1.0, 2.0], 0.0)
    with pytest.raises(hepinfer.InputError, match=r"signal_score\[1\]"):
        metrics.cut_at_signal_efficiency([1.0, np.nan], 0.5)
    with pytest.raises(hepinfer.InputError, match="negative"):
        metrics.background_rejection([1.0], [0.0], 0.5, background_weights=[-1.0])
    with pytest.raises(hepinfer.InputError, match="both signal and background"):
        metrics.decorrelation_metrics([1.0, 2.0], [1.0, 2.0], [True, True])
    with pytest.raises(hepinfer.InputError, match="same number of bins"):
        metrics.jensen_shannon_divergence([1.0], [1.0, 2.0])
    assert np.isnan(metrics.mass_sculpting_jsd([1.0, 2.0], [0.0, 0.0], cut=1.0))


# ------------------------------------------------------------------ calibration curve


def _calibration_by_loops(y, s, w, edges):
    """Per-bin weighted mean score, signal fraction and its error, bin by bin ([lo, hi), last closed)."""
    rows = []
    for i in range(len(edges) - 1):
        lo, hi = edges[i], edges[i + 1]
        inside = (s >= lo) & ((s < hi) if i < len(edges) - 2 else (s <= hi)) & (w > 0)
        if not inside.any():
            continue
        ww, yy, ss = w[inside], y[inside], s[inside]
        f = np.sum(ww * yy) / np.sum(ww)
        err = np.sqrt(np.sum(ww**2 * (yy - f) ** 2)) / np.sum(ww)
        rows.append((i, np.sum(ww * ss) / np.sum(ww), f, err, np.sum(ww), inside.sum()))
    return [np.array(c) for c in zip(*rows)]


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
@pytest.mark.parametrize("n_bins", [1, 5, 7, 20])
def test_calibration_curve_matches_sklearn(rng, strategy, n_bins):
    sk = pytest.importorskip("sklearn.calibration")
    n = 1000  # (n - 1) * k / n_bins is not an integer: no quantile edge falls on an event
    s = rng.beta(0.7, 1.3, size=n)
    y = (rng.random(n) < s).astype(int)
    got = metrics.calibration_curve(y, s, bins=n_bins, strategy=strategy)
    prob_true, prob_pred = sk.calibration_curve(y, s, n_bins=n_bins, strategy=strategy)
    np.testing.assert_allclose(got.signal_fraction, prob_true, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(got.mean_score, prob_pred, rtol=1e-12)
    assert got.entries.sum() == n and got.sum_of_weights.sum() == pytest.approx(n)
    # unweighted: the binomial error sqrt(f (1 - f) / n)
    f = got.signal_fraction
    np.testing.assert_allclose(
        got.signal_fraction_error, np.sqrt(f * (1 - f) / got.entries), rtol=1e-12, atol=1e-15
    )
    # integer weights count an event that many times
    k = rng.integers(1, 4, size=n)
    weighted = metrics.calibration_curve(y, s, k, bins=n_bins)
    repeated = sk.calibration_curve(np.repeat(y, k), np.repeat(s, k), n_bins=n_bins)
    np.testing.assert_allclose(weighted.signal_fraction, repeated[0], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(weighted.mean_score, repeated[1], rtol=1e-12)


def test_calibration_curve_weighted_against_loops(rng):
    n = int(rng.integers(200, 2000))
    s = np.round(rng.random(n), 2)  # many scores exactly on the 0.1-wide bin edges, 0 and 1 included
    s[:3] = [0.0, 1.0, 0.3]
    y = rng.random(n) < s
    w = rng.exponential(1.0, size=n)
    w[rng.random(n) < 0.05] = 0.0  # zero weights count for nothing
    got = metrics.calibration_curve(y, s, w, bins=10)
    edges = np.linspace(0, 1, 11)
    index, mean, frac, err, total, entries = _calibration_by_loops(y.astype(float), s, w, edges)
    np.testing.assert_array_equal(got.bin_index, index)
    np.testing.assert_allclose(got.mean_score, mean, rtol=1e-12)
    np.testing.assert_allclose(got.signal_fraction, frac, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(got.signal_fraction_error, err, rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(got.sum_of_weights, total, rtol=1e-12)
    np.testing.assert_array_equal(got.entries, entries)
    # the bins are numpy.histogram's
    np.testing.assert_allclose(got.sum_of_weights, np.histogram(s, edges, weights=w)[0][index], rtol=1e-12)
    # explicit edges: events outside them are left out, empty bins too
    custom = [0.2, 0.25, 0.5, 0.55, 0.9]
    s2 = np.where(rng.random(n) < 0.5, rng.uniform(0.2, 0.25, n), rng.uniform(0.5, 0.55, n))
    s2[:2] = [0.05, 0.95]
    got2 = metrics.calibration_curve(y, s2, w, bins=custom)
    index2, mean2, frac2, err2, _, _ = _calibration_by_loops(y.astype(float), s2, w, np.array(custom))
    np.testing.assert_array_equal(got2.bin_index, index2)
    assert set(got2.bin_index) <= {0, 2}
    np.testing.assert_allclose(got2.mean_score, mean2, rtol=1e-12)
    np.testing.assert_allclose(got2.signal_fraction, frac2, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(got2.signal_fraction_error, err2, rtol=1e-10, atol=1e-15)


def test_calibration_of_a_calibrated_score_has_unit_pulls(rng):
    n = 200_000
    s = rng.beta(2.0, 2.0, size=n)
    w = rng.uniform(0.5, 2.0, size=n)
    y = rng.random(n) < s  # s is the true signal probability
    c = metrics.calibration_curve(y, s, w, bins=10)
    pulls = (c.signal_fraction - c.mean_score) / c.signal_fraction_error
    assert len(pulls) == 10 and np.sum(pulls**2) < 45  # chi2 with 10 dof: p ~ 1e-6
    # a score squeezed towards 1/2 is not calibrated: far off the diagonal at the ends
    squeezed = metrics.calibration_curve(y, 0.5 + 0.5 * (s - 0.5), w, bins=10)
    assert (
        np.max(np.abs(squeezed.signal_fraction - squeezed.mean_score) / squeezed.signal_fraction_error) > 20
    )


def test_calibration_curve_edge_cases_and_bad_input():
    one = metrics.calibration_curve([1], [0.7], bins=4)
    assert one.bin_index.tolist() == [2] and one.signal_fraction.tolist() == [1.0]
    assert one.signal_fraction_error.tolist() == [0.0] and one.mean_score.tolist() == [0.7]
    empty = metrics.calibration_curve([], [], bins=3)
    assert empty.mean_score.size == 0 and empty.bin_edges.size == 4
    tied = metrics.calibration_curve([0, 1, 1, 0], [0.5] * 4, bins=4, strategy="quantile")
    assert tied.entries.tolist() == [4] and tied.signal_fraction.tolist() == [0.5]
    with pytest.raises(hepinfer.InputError, match=r"score\[1\] = 1.5 is outside \[0, 1\]"):
        metrics.calibration_curve([0, 1], [0.5, 1.5])
    with pytest.raises(hepinfer.InputError, match=r"is_signal\[0\] is 2.0"):
        metrics.calibration_curve([2, 1], [0.5, 0.5])
    with pytest.raises(hepinfer.InputError, match=r"score\[0\] is not finite"):
        metrics.calibration_curve([0, 1], [np.nan, 0.5])
    with pytest.raises(hepinfer.InputError, match="negative"):
        metrics.calibration_curve([0, 1], [0.1, 0.5], [1.0, -1.0])
    with pytest.raises(hepinfer.InputError, match="weights has 1 entries, expected 2"):
        metrics.calibration_curve([0, 1], [0.1, 0.5], [1.0])
    with pytest.raises(hepinfer.InputError, match="strategy"):
        metrics.calibration_curve([0, 1], [0.1, 0.5], strategy="equal")
    with pytest.raises(hepinfer.InputError, match="strictly increasing"):
        metrics.calibration_curve([0, 1], [0.1, 0.5], bins=[0.0, 0.5, 0.5, 1.0])
    with pytest.raises(hepinfer.InputError, match="positive number of bins"):
        metrics.calibration_curve([0, 1], [0.1, 0.5], bins=0)
