"""Regression end to end: xgboost ``reg:squarederror`` BDTs and networks (MSE; the Gaussian head
with its negative log-likelihood) through ``hepinfer train``, exported, read back by
hepinfer.Forest / hepinfer.nn.Model, scored into a ``prediction`` branch, with the regression
summary (bias, resolution) and the prediction-vs-truth plot. Trainings are tiny."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("xgboost")

from hepinfer import train as T

torch.set_num_threads(1)


def jets_with_true_mass(rng, n):
    """Reconstructed features and a true mass they measure (with a 5 % smearing)."""
    true_mass = rng.uniform(40.0, 200.0, n)
    reco = true_mass * rng.normal(1.0, 0.05, n)
    tau21 = rng.normal(0.5, 0.1, n)
    return np.column_stack([reco, tau21]), true_mass


def write_npz(rng, path, n=600):
    X, true_mass = jets_with_true_mass(rng, n)
    np.savez(path, jet_mass=X[:, 0], tau21=X[:, 1], true_mass=true_mass, event=rng.permutation(n))


def config_text(tmp_path, data, model, loss, extra=""):
    return (
        f'seed = 2\noutput = "{(tmp_path / "out").as_posix()}"\n'
        f'[data]\nsource = "{data.as_posix()}"\nfeatures = ["jet_mass", "tau21"]\ntarget = "true_mass"\n'
        f'[model]\nkind = "{model}"\nhidden = [16, 16]\n'
        "[training]\nepochs = 3\nbatch_size = 32\nprogress = false\nlearning_rate = 0.01\n"
        f'[loss]\nkind = "{loss}"\n[bdt]\nn_trees = 40\n{extra}'
    )


def scored_branches(model, X, tmp_path, **options):
    uproot = pytest.importorskip("uproot")
    import hepinfer

    root = tmp_path / "fresh.root"
    with uproot.recreate(root) as f:
        f["jets"] = {"jet_mass": X[:, 0], "tau21": X[:, 1]}
    out = tmp_path / "scores.root"
    hepinfer.score(model, str(root), output=str(out), overwrite=True, **options)
    with uproot.open(out) as f:
        tree = f["scores"]
        return {k: tree[k].array(library="np") for k in tree.keys() if k not in ("file_index", "entry")}


def test_cli_bdt_regression(rng, tmp_path):
    import xgboost as xgb

    import hepinfer

    data = tmp_path / "jets.npz"
    write_npz(rng, data)
    (tmp_path / "run.toml").write_text(config_text(tmp_path, data, "bdt", "mse"))
    assert T.main([str(tmp_path / "run.toml")]) == 0
    out = tmp_path / "out"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == "regression" and summary["output_columns"] == ["prediction"]
    reg = summary["test_regression"]
    assert summary["test_rmse"] == reg["rmse"]
    # the reconstructed mass alone has a 5 % resolution (~6 GeV): the BDT should not be far off
    assert reg["robust_resolution"] < 15.0 and abs(reg["median_bias"]) < 10.0
    assert (out / "prediction_vs_truth.png").stat().st_size > 1000
    booster = xgb.Booster(model_file=str(out / "model.json"))
    X, _ = jets_with_true_mass(rng, 300)
    X[rng.random(X.shape) < 0.1] = np.nan
    expected = booster.predict(xgb.DMatrix(X, feature_names=booster.feature_names))
    np.testing.assert_allclose(hepinfer.Forest.load(str(out / "model.json")).predict(X), expected, rtol=1e-5)
    scores = scored_branches(str(out / "model.json"), X, tmp_path)
    assert list(scores) == ["prediction"]
    np.testing.assert_allclose(scores["prediction"], expected, rtol=1e-5)


@pytest.mark.parametrize(("model", "loss"), [("mlp", "mse"), ("gaussian", "gaussian_nll")])
def test_cli_network_regression(rng, tmp_path, model, loss):
    from hepinfer.nn import Model

    data = tmp_path / "jets.npz"
    write_npz(rng, data)
    (tmp_path / "run.toml").write_text(config_text(tmp_path, data, model, loss))
    assert T.main([str(tmp_path / "run.toml")]) == 0
    out = tmp_path / "out"
    summary = json.loads((out / "summary.json").read_text())
    columns = ["prediction", "width"] if model == "gaussian" else ["prediction"]
    assert summary["task"] == "regression" and summary["output_columns"] == columns
    reg = summary["test_regression"]
    assert np.isfinite([reg[k] for k in ("bias", "resolution", "rmse", "relative_resolution")]).all()
    # the truth alone spreads by 160 / sqrt(12) = 46 GeV, the reconstructed mass measures it to ~6 GeV
    assert reg["rmse"] < 25.0
    if model == "gaussian":
        assert np.isfinite(summary["test_pull_std"]) and summary["test_pull_std"] > 0
    X, _ = jets_with_true_mass(rng, 200)
    net = Model.load(str(out / "model.onnx"))
    got = np.asarray(net.predict(X.astype(np.float32))).reshape(len(X), -1)
    assert got.shape == (len(X), len(columns))
    scores = scored_branches(str(out / "model.onnx"), X, tmp_path, features=["jet_mass", "tau21"])
    assert [k for k in scores if k in columns] == columns
    np.testing.assert_allclose(np.column_stack([scores[c] for c in columns]), got, rtol=1e-5, atol=1e-4)


def test_cli_bdt_rejects_losses_it_cannot_train(tmp_path, capsys):
    (tmp_path / "bad.toml").write_text('[model]\nkind = "bdt"\n[loss]\nkind = "focal"\n')
    assert T.main([str(tmp_path / "bad.toml")]) == 2
    assert "loss.kind" in capsys.readouterr().err


def test_regression_summary_matches_numpy(rng):
    from hepinfer import metrics

    truth = rng.uniform(10, 100, 400)
    prediction = truth + rng.normal(2.0, 5.0, 400)
    r = prediction - truth
    s = metrics.regression_summary(prediction, truth)
    np.testing.assert_allclose(s["bias"], r.mean())
    np.testing.assert_allclose(s["resolution"], r.std())
    np.testing.assert_allclose(s["rmse"], np.sqrt(np.mean(r**2)))
    np.testing.assert_allclose(s["median_bias"], np.median(r))
    q16, q84 = np.quantile(r, [0.16, 0.84])
    np.testing.assert_allclose(s["robust_resolution"], 0.5 * (q84 - q16))
    np.testing.assert_allclose(s["relative_bias"], np.mean(r / truth))
    w = rng.uniform(0.5, 2.0, 400)
    sw = metrics.regression_summary(prediction, truth, w)
    np.testing.assert_allclose(sw["bias"], np.average(r, weights=w))
    np.testing.assert_allclose(sw["resolution"], np.sqrt(np.cov(r, aweights=w, bias=True)))
    # equal weights give the unweighted quantiles; scaling all weights changes nothing
    same = metrics.regression_summary(prediction, truth, np.full(400, 3.0))
    np.testing.assert_allclose(same["robust_resolution"], s["robust_resolution"])
    np.testing.assert_allclose(
        metrics.regression_summary(prediction, truth, 7 * w)["median_bias"], sw["median_bias"]
    )
    zero_truth = metrics.regression_summary([1.0, 2.0], [0.0, 0.0])
    assert np.isnan(zero_truth["relative_bias"]) and zero_truth["bias"] == 1.5


def test_weighted_quantile(rng):
    from hepinfer import InputError, metrics

    x = rng.normal(size=51)
    q = [0.0, 0.1, 0.5, 0.9, 1.0]
    np.testing.assert_allclose(metrics.weighted_quantile(x, q), np.quantile(x, q))
    np.testing.assert_allclose(metrics.weighted_quantile(x, q, np.full(51, 0.3)), np.quantile(x, q))
    w = np.ones(51)
    w[::2] = 0.0  # zero-weight events are left out
    np.testing.assert_allclose(metrics.weighted_quantile(x, q, w), np.quantile(x[1::2], q))
    assert metrics.weighted_quantile([4.0], 0.3, [2.0]) == 4.0
    with pytest.raises(InputError, match="quantiles must lie in"):
        metrics.weighted_quantile(x, 1.5)
    with pytest.raises(InputError, match="empty"):
        metrics.weighted_quantile([], 0.5)


def test_prediction_vs_truth_plot(rng, tmp_path):
    pytest.importorskip("matplotlib")
    from hepinfer import plot

    truth = rng.uniform(0, 1, 300)
    path = plot.prediction_vs_truth(truth, truth + rng.normal(0, 0.1, 300), tmp_path / "reg.png", name="mass")
    assert (tmp_path / "reg.png").stat().st_size > 1000 and path.endswith("reg.png")
    with pytest.raises(ValueError, match="NaN"):
        plot.prediction_vs_truth(truth, np.full(300, np.nan), tmp_path / "bad.png")
