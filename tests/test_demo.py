"""`hepinfer demo` end to end on the committed Pythia sample, and the plots of hepinfer.plot."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("xgboost")
pytest.importorskip("onnxruntime")
pytest.importorskip("matplotlib")
uproot = pytest.importorskip("uproot")

import hepinfer
from hepinfer import plot


@pytest.mark.slow
def test_demo_end_to_end(tmp_path, capsys):
    from hepinfer.demo import JET_FEATURES, PARTICLE_FEATURES, DemoSettings, run_demo

    out = tmp_path / "demo"
    settings = DemoSettings(pfn_epochs=10, bdt_trees=60, disco_scan=(0.5, 2.0, 5.0), timing_repeats=1)
    assert run_demo(out_dir=out, n_threads=2, settings=settings) == 0
    printed = capsys.readouterr().out
    assert "all checks passed" in printed
    summary = json.loads((out / "summary.json").read_text())
    rows = {r["model"]: r for r in summary["models"]}
    assert set(rows) == {"BDT", "MLP", "MLP + DisCo", "PFN"}
    for name, r in rows.items():
        assert name in printed
        assert r["auc"] > 0.7, name
        assert r["background_rejection"] > 1 and np.isfinite(r["inverse_jsd"]) and r["inverse_jsd"] > 1
        assert 0 <= r["background_dcor2"] <= 1
        assert r["hepinfer_events_per_second"] > 0 and r["reference_events_per_second"] > 0
    plain, flat = rows["MLP"], rows["MLP + DisCo"]
    assert flat["background_dcor2"] < 0.5 * plain["background_dcor2"]
    assert flat["inverse_jsd"] > 2 * plain["inverse_jsd"]
    # the DisCo strength is chosen on the validation fold: the flattest point that keeps at least
    # half of the plain MLP's validation rejection, and its test metrics are the table's row
    scan = summary["disco_scan"]
    assert [p["strength"] for p in scan] == [0.0, 0.5, 2.0, 5.0]
    chosen = [p for p in scan if p["chosen"]]
    assert len(chosen) == 1 and chosen[0]["strength"] == summary["disco_strength"] > 0
    need = settings.disco_min_rejection_fraction * scan[0]["validation_background_rejection"]
    allowed = [p for p in scan[1:] if p["validation_background_rejection"] >= need]
    if allowed:
        assert chosen[0]["validation_inverse_jsd"] == max(p["validation_inverse_jsd"] for p in allowed)
    assert chosen[0]["background_rejection"] == flat["background_rejection"]
    assert chosen[0]["inverse_jsd"] == flat["inverse_jsd"]
    assert scan[0]["background_rejection"] == plain["background_rejection"]
    # a stronger penalty decorrelates more (dCor^2 of the background on the test fold)
    dcor = [p["background_dcor2"] for p in scan]
    assert dcor == sorted(dcor, reverse=True)
    checks = summary["checks"]
    assert set(checks) == {"BDT", "MLP", "MLP + DisCo", "PFN", "scores.root", "pfn_scores.root"}
    assert all(c["passed"] for c in checks.values())
    for name in ("BDT", "MLP", "MLP + DisCo", "PFN"):
        assert checks[name]["max_abs_difference"] <= 1e-5

    # scores.root, re-derived here: one entry per test jet, equal to hepinfer's engines on the files
    n_test = summary["n_jets"]["test"]
    assert n_test == summary["n_jets"]["signal"] + summary["n_jets"]["background"] - (
        summary["n_jets"]["train"] + summary["n_jets"]["validation"]
    )
    with uproot.open(out / "test_jets.root") as f:
        jets = f["jets"].arrays(library="np")
    with uproot.open(out / "scores.root") as f:
        scores = f["scores"].arrays(["bdt", "mlp", "mlp_disco", "event"], library="np")
    assert len(jets["event"]) == n_test and len(scores["bdt"]) == n_test
    np.testing.assert_array_equal(scores["event"], jets["event"])
    X = np.column_stack([jets[f] for f in JET_FEATURES]).astype(np.float32)
    x = np.nan_to_num(X, nan=-1.0)
    bdt = hepinfer.Forest.load(out / "bdt.json")
    assert bdt.feature_names == JET_FEATURES
    np.testing.assert_array_equal(scores["bdt"], bdt.predict(X))
    for branch, file in (("mlp", "mlp.onnx"), ("mlp_disco", "mlp_disco.onnx")):
        np.testing.assert_array_equal(
            scores[branch], hepinfer.nn.Model.load(out / file).predict(x).reshape(-1)
        )
    # pfn_scores.root: the PFN run by hepinfer.score on the jagged constituent branches (no
    # padding) equals Model.predict_jagged on those branches read back, and the padded scores
    branches = [f"part_{n}" for n in PARTICLE_FEATURES]
    with uproot.open(out / "test_jets.root") as f:
        parts = f["jets"].arrays(branches, library="ak")
    with uproot.open(out / "pfn_scores.root") as f:
        pfn = f["scores"].arrays(["pfn", "event"], library="np")
    np.testing.assert_array_equal(pfn["event"], jets["event"])
    counts = np.asarray(parts[branches[0]].layout.offsets.data)
    assert np.diff(counts).max() <= settings.max_particles and np.diff(counts).min() >= 1
    pfn_model = hepinfer.nn.Model.load(out / "pfn.onnx")
    want = pfn_model.predict_jagged(parts, fields={"particles": branches}).reshape(-1)
    np.testing.assert_allclose(pfn["pfn"], want, rtol=1e-6, atol=1e-7)
    assert checks["pfn_scores.root"]["entries"] == n_test
    assert checks["pfn_scores.root"]["max_abs_difference"] <= 1e-5
    assert "scored the PFN on test_jets.root's jagged constituent branches" in printed
    # the AUC in the table is the AUC of these scores
    from hepinfer.train import roc_auc

    assert roc_auc(scores["bdt"], jets["label"]) == pytest.approx(rows["BDT"]["auc"], abs=1e-12)

    for png in ("roc.png", "scores.png", "mass_sculpting.png", "jsd_vs_rejection.png", "calibration.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "report.md").read_text()
    assert "| MLP + DisCo |" in report and "![mass_sculpting.png](mass_sculpting.png)" in report
    assert "![calibration.png](calibration.png)" in report
    # the calibration curves in summary.json are those of the written scores (class-balanced weights)
    from hepinfer.metrics import calibration_curve

    test_weight = jets["weight"] * np.where(
        jets["label"] == 1,
        jets["weight"][jets["label"] == 0].sum() / jets["weight"][jets["label"] == 1].sum(),
        1.0,
    )
    assert set(summary["calibration"]) == {"BDT", "MLP", "MLP + DisCo"}
    for name, c in summary["calibration"].items():
        assert sum(c["entries"]) == n_test, name
        assert len(c["mean_score"]) == len(c["signal_fraction"]) == len(c["signal_fraction_error"])
    want = calibration_curve(jets["label"], scores["bdt"], test_weight, bins=10)  # BDT scores: bit-exact
    got = summary["calibration"]["BDT"]
    np.testing.assert_allclose(got["mean_score"], want.mean_score, rtol=1e-12)
    np.testing.assert_allclose(got["signal_fraction"], want.signal_fraction, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(
        got["signal_fraction_error"], want.signal_fraction_error, rtol=1e-12, atol=1e-15
    )


def test_choose_disco_strength():
    from hepinfer.demo import choose_disco_strength

    scan = {0.2: (50.0, 1.8), 0.5: (40.0, 3.3), 1.0: (30.0, 3.9), 2.0: (24.0, 9.0), 5.0: (10.0, 30.0)}
    # keep >= 50% of 55 = 27.5: 0.2, 0.5 and 1 are allowed, 1 is the flattest of them
    assert choose_disco_strength(55.0, scan, 0.5) == 1.0
    assert choose_disco_strength(55.0, scan, 0.4) == 2.0
    assert choose_disco_strength(55.0, scan, 0.0) == 5.0
    # none keeps enough: the one that keeps the most
    assert choose_disco_strength(500.0, scan, 0.5) == 0.2
    # ties in 1/JSD go to the weaker penalty; an infinite 1/JSD (no sculpting at all) wins
    assert choose_disco_strength(10.0, {1.0: (9.0, 4.0), 2.0: (8.0, 4.0)}, 0.5) == 1.0
    assert choose_disco_strength(10.0, {1.0: (9.0, 4.0), 2.0: (8.0, np.inf)}, 0.5) == 2.0
    with pytest.raises(ValueError, match="no strengths"):
        choose_disco_strength(10.0, {}, 0.5)
    with pytest.raises(ValueError, match="min_rejection_fraction"):
        choose_disco_strength(10.0, scan, 1.5)


def test_efficiency_curve_against_brute_force(rng):
    n = int(rng.integers(20, 200))
    label = rng.random(n) < 0.4
    label[:2] = [True, False]
    score = np.round(rng.normal(size=n) + label, 1)  # rounding makes ties
    weight = rng.random(n) + 0.1
    eff_s, eff_b = plot.efficiency_curve(label, score, weight)
    thresholds = np.unique(score)[::-1]
    assert len(eff_s) == len(thresholds)
    for t, es, eb in zip(thresholds, eff_s, eff_b):
        passing = score >= t
        assert es == pytest.approx(weight[passing & label].sum() / weight[label].sum())
        assert eb == pytest.approx(weight[passing & ~label].sum() / weight[~label].sum())
    assert eff_s[-1] == pytest.approx(1.0) and eff_b[-1] == pytest.approx(1.0)


def test_plots_write_pngs_and_reject_bad_input(tmp_path, rng):
    n = 400
    label = rng.random(n) < 0.5
    label[:2] = [True, False]
    mass = np.where(label, rng.normal(80, 8, n), rng.exponential(40, n))
    good = rng.normal(size=n) + 2 * label
    sculpting = good + 0.05 * mass
    tied = np.zeros(n)  # a constant score: one cut passes everything
    scores = {"good": good, "sculpting": sculpting, "constant": tied}
    paths = [
        plot.roc_curve(label, scores, tmp_path / "roc.png"),
        plot.score_distributions(label, scores, tmp_path / "s.png"),
        plot.mass_sculpting(mass, label, scores, tmp_path / "sub" / "m.png", mass_range=(0, 200)),
        plot.jsd_vs_rejection(
            {"good": (10.0, 5.0), "infinite": (np.inf, 2.0)},
            tmp_path / "j.png",
            curves={"scan": [(2.0, 50.0), (10.0, 5.0)]},
            curve_labels={"scan": ["λ=1", "λ=0"]},
        ),
    ]
    for p in paths:
        with open(p, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="both signal"):
        plot.roc_curve(np.zeros(n), scores, tmp_path / "x.png")
    with pytest.raises(ValueError, match="entries"):
        plot.score_distributions(label, {"short": good[:-1]}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="NaN"):
        plot.mass_sculpting(mass, label, {"nan": np.where(label, np.nan, good)}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="nothing"):
        plot.jsd_vs_rejection({}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="2 points"):
        plot.jsd_vs_rejection(
            {}, tmp_path / "x.png", curves={"c": [(1, 2), (3, 4)]}, curve_labels={"c": ["a"]}
        )


def test_calibration_plot(tmp_path, rng):
    n = 2000
    p = rng.beta(1.5, 1.5, size=n)
    label = rng.random(n) < p
    scores = {"calibrated": p, "squeezed": 0.5 + 0.3 * (p - 0.5), "constant": np.full(n, 0.5)}
    for kwargs in ({}, {"weight": rng.uniform(0.5, 2, n), "strategy": "quantile", "bins": 8, "title": "t"}):
        path = plot.calibration(label, scores, tmp_path / "c.png", **kwargs)
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        plot.calibration(label, {"margin": 4 * (p - 0.5)}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="both signal"):
        plot.calibration(np.ones(n), scores, tmp_path / "x.png")


def test_demo_sample_takes_jets_per_class():
    from hepinfer.datasets import load_jets
    from hepinfer.demo import _load_sample, _particles

    full = load_jets(library="np")
    columns, _ = _load_sample(300, None, None, seed=3)
    assert np.bincount(columns["label"]).tolist() == [300, 300]
    # the jets keep their own constituents
    offsets = columns["constituent_offsets"]
    assert offsets[-1] == len(columns["constituent_pt"]) == columns["n_constituents"].sum()
    first = int(
        np.flatnonzero((full["event"] == columns["event"][0]) & (full["label"] == columns["label"][0]))[0]
    )
    np.testing.assert_array_equal(
        columns["constituent_pt"][: offsets[1]],
        full["constituent_pt"][full["constituent_offsets"][first] : full["constituent_offsets"][first + 1]],
    )
    particles, mask = _particles(columns, 16)
    assert particles.shape == (600, 16, 6) and mask.shape == (600, 16)
    np.testing.assert_array_equal(mask.sum(axis=1), np.minimum(columns["n_constituents"], 16))
    assert np.all(particles[mask == 0] == 0)
    # pT fractions of the kept (hardest) constituents, and delta-phi wrapped into [-pi, pi)
    n0 = min(int(columns["n_constituents"][0]), 16)
    np.testing.assert_allclose(
        particles[0, :n0, 0], columns["constituent_pt"][:n0] / columns["jet_pt"][0], rtol=1e-6
    )
    assert np.all(np.abs(particles[..., 4]) <= np.pi)
