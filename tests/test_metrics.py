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
