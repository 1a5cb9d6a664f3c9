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
    # the default strength scan (the choice of lambda is part of what is tested), a shorter PFN
    settings = DemoSettings(pfn_epochs=10, bdt_trees=60, timing_repeats=1, bootstrap_replicas=100)
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
    # the evaluation-only QCD jets: in the validation and test folds, never in training or in
    # early stopping; with them each of those folds holds thousands of QCD jets
    n = summary["n_jets"]
    assert n["evaluation_background"] == 4000
    assert n["validation_background"] > 2000 and n["test_background"] > 2000
    assert n["train"] + n["validation"] + n["test"] == n["signal"] + n["background"] == 8000
    from hepinfer.datasets import load_jets

    main_fold = load_jets(library="np")["event"] % 4
    assert n["train"] == np.isin(main_fold, (2, 3)).sum() and n["early_stopping"] == (main_fold == 0).sum()
    # statistical intervals (bootstrap of the test jets): ordered, and the passing background is
    # dozens of jets, not a handful
    for name, r in rows.items():
        for key in ("background_rejection_interval", "inverse_jsd_interval"):
            lo, hi = r[key]
            assert 0 < lo < hi, (name, key)
        assert r["background_passing"] >= 15, name
        lo, hi = r["background_rejection_interval"]
        assert lo <= r["background_rejection"] <= hi, name
    assert plain["rejection_ratio_to_mlp_interval"] == [1.0, 1.0]
    # the claims of the report, beyond the statistical errors (paired bootstrap): the DisCo MLP
    # sculpts less (1/JSD ratio interval above 1) and pays for it in rejection (below 1)
    assert flat["inverse_jsd_ratio_to_mlp_interval"][0] > 1.5
    assert flat["rejection_ratio_to_mlp_interval"][1] < 1.0
    # the DisCo strength is chosen on the validation fold: the flattest point that keeps at least
    # half of the plain MLP's validation rejection, and its test metrics are the table's row
    scan = summary["disco_scan"]
    assert [p["strength"] for p in scan] == [0.0, *settings.disco_scan]
    chosen = [p for p in scan if p["chosen"]]
    assert len(chosen) == 1 and chosen[0]["strength"] == summary["disco_strength"] > 0
    assert scan[0]["validation_rejection_ratio_interval"] == [1.0, 1.0]
    for p in scan[1:]:
        lo, hi = p["validation_rejection_ratio_interval"]
        assert lo < hi
    need = settings.disco_min_rejection_fraction * scan[0]["validation_background_rejection"]
    allowed = [p for p in scan[1:] if p["validation_background_rejection"] >= need]
    assert allowed, "some strength keeps half of the plain MLP's rejection"
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


def test_bootstrap_working_point_against_binomial_errors():
    from hepinfer.demo import bootstrap_working_point

    rng = np.random.default_rng(11)
    n_sig, n_bkg, p = 1000, 4000, 0.05
    label = np.r_[np.ones(n_sig), np.zeros(n_bkg)]
    mass = rng.uniform(0, 200, n_sig + n_bkg)
    # signal scores in (0, 1): the cut at 50% signal efficiency is inside (0, 1) on every
    # replica, so a background jet passes exactly when its score is 2: eps_B is binomial
    passes = np.zeros(n_bkg, dtype=bool)
    passes[: int(p * n_bkg)] = True
    ref = np.r_[rng.uniform(0.01, 0.99, n_sig), np.where(passes, 2.0, 0.0)]
    # a second tagger passing the same jets and as many others: its rejection is half as large,
    # and the paired ratio spreads less than the two rejections do; the third is the reference itself
    more = (
        passes
        | np.r_[
            np.zeros(int(p * n_bkg), dtype=bool),
            np.ones(int(p * n_bkg), dtype=bool),
            np.zeros(n_bkg - 2 * int(p * n_bkg), dtype=bool),
        ]
    )
    looser = np.r_[ref[:n_sig], np.where(more, 2.0, 0.0)]
    out = bootstrap_working_point(
        label, mass, {"ref": ref, "looser": looser, "same": ref.copy()}, reference="ref", replicas=400, seed=5
    )
    sigma = np.sqrt(p * (1 - p) / n_bkg)
    lo, hi = out["ref"]["background_rejection"]
    assert lo == pytest.approx(1 / (p + sigma), rel=0.05) and hi == pytest.approx(1 / (p - sigma), rel=0.05)
    assert out["same"]["rejection_ratio"] == (1.0, 1.0) and out["same"]["inverse_jsd_ratio"] == (1.0, 1.0)
    assert out["same"]["background_rejection"] == out["ref"]["background_rejection"]
    r_lo, r_hi = out["looser"]["rejection_ratio"]
    assert 0.45 < r_lo <= 0.5 <= r_hi < 0.55
    # unpaired, the ratio of the two rejections would spread twice as wide as the paired one
    l_lo, l_hi = out["looser"]["background_rejection"]
    assert (l_hi / lo - l_lo / hi) > 1.5 * (r_hi - r_lo)
    # mass independent of the score: the 1/JSD intervals are finite and ordered
    for name in out:
        j_lo, j_hi = out[name]["inverse_jsd"]
        assert 0 < j_lo < j_hi
    with pytest.raises(ValueError, match="reference"):
        bootstrap_working_point(label, mass, {"ref": ref}, reference="nope")
    with pytest.raises(ValueError, match="replicas"):
        bootstrap_working_point(label, mass, {"ref": ref}, replicas=1)


def test_evaluation_background_is_qcd_outside_the_training_folds():
    import hepinfer.datasets as hd
    from hepinfer.demo import EVALUATION_EVENT_OFFSET, _add_evaluation_background, evaluation_background_path

    path = evaluation_background_path()
    extra = hd.load_jets(path, library="np")
    assert len(extra["label"]) == 4000 and np.all(extra["label"] == 0)
    main = hd.load_jets(library="np")
    both, n_extra = _add_evaluation_background(main, path)
    n_main = len(main["label"])
    assert n_extra == 4000 and len(both["label"]) == n_main + n_extra
    # the extra jets follow the main ones, constituents included, with shifted event numbers
    assert np.array_equal(both["event"][n_main:], extra["event"] + EVALUATION_EVENT_OFFSET)
    assert not set(both["event"][n_main:].tolist()) & set(main["event"][main["label"] == 0].tolist())
    k = n_main + 7
    np.testing.assert_array_equal(
        both["constituent_pt"][both["constituent_offsets"][k] : both["constituent_offsets"][k + 1]],
        extra["constituent_pt"][extra["constituent_offsets"][7] : extra["constituent_offsets"][8]],
    )
    # an independent Pythia sample (another seed): no jet of it is a jet of the main sample
    key = lambda c: set(zip(np.round(c["jet_pt"], 3).tolist(), np.round(c["jet_eta"], 4).tolist()))
    assert not key(extra) & key(main)


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
    from hepinfer.datasets.schema import padded_constituents
    from hepinfer.demo import _load_sample

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
    particles, mask = padded_constituents(columns, 16)
    assert particles.shape == (600, 16, 6) and mask.shape == (600, 16)
    np.testing.assert_array_equal(mask.sum(axis=1), np.minimum(columns["n_constituents"], 16))
    assert np.all(particles[mask == 0] == 0)
    # pT fractions of the kept (hardest) constituents, and delta-phi wrapped into [-pi, pi)
    n0 = min(int(columns["n_constituents"][0]), 16)
    np.testing.assert_allclose(
        particles[0, :n0, 0], columns["constituent_pt"][:n0] / columns["jet_pt"][0], rtol=1e-6
    )
    assert np.all(np.abs(particles[..., 4]) <= np.pi)
