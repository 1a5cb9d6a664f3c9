"""k-fold cross-training (training.n_folds = k): ``hepinfer train`` trains k members, each with
its own fold as test fold (never trained or validated on), and writes a bundle that hepinfer.KFold
loads as one model; its cross-application is checked event by event against the member models
loaded on their own (hepinfer.Forest for BDTs, onnxruntime for networks)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("xgboost")

import hepinfer
from hepinfer import train as T

torch.set_num_threads(1)


def write_sample(rng, path, n=900):
    y = (rng.random(n) < 0.5).astype(np.float64)
    mass = np.where(y == 1, rng.normal(80.0, 8.0, n), 20.0 + rng.exponential(40.0, n))
    tau21 = np.where(y == 1, rng.normal(0.35, 0.12, n), rng.normal(0.55, 0.12, n))
    event = rng.choice(10**9, n, replace=False).astype(np.int64)
    np.savez(path, jet_mass=mass, tau21=tau21, label=y, event=event)
    return np.column_stack([mass, tau21]).astype(np.float32), y, event


def config_file(tmp_path, data, kind):
    cfg = tmp_path / f"{kind}.toml"
    cfg.write_text(
        f'seed = 2\noutput = "{(tmp_path / kind).as_posix()}"\n'
        f'[data]\nsource = "{data.as_posix()}"\nfeatures = ["jet_mass", "tau21"]\n'
        f'[model]\nkind = "{kind}"\nhidden = [8]\n'
        "[training]\nepochs = 3\nbatch_size = 0\nprogress = false\nlearning_rate = 0.01\n"
        "[bdt]\nn_trees = 6\nmax_depth = 3\n"
    )
    return cfg


@pytest.mark.parametrize("kind", ["bdt", "mlp"])
def test_kfold_training_and_cross_application(rng, tmp_path, kind, capsys):
    k = 3
    X, y, event = write_sample(rng, tmp_path / "jets.npz")
    cfg = config_file(tmp_path, tmp_path / "jets.npz", kind)
    assert T.main([str(cfg), "--set", f"training.n_folds={k}"]) == 0
    assert "test_auc_mean" in capsys.readouterr().out
    out = tmp_path / kind
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_folds"] == k and len(summary["folds"]) == k
    bundle = hepinfer.KFold.load(out)
    assert (bundle.n_folds, bundle.event_number, bundle.feature_names) == (k, "event", ["jet_mass", "tau21"])
    assert bundle.kind == ("forest" if kind == "bdt" else "network")
    folds = event % k
    for i in range(k):  # member i: tested on fold i, validated on fold i + 1, trained on the rest
        single = json.loads((out / f"fold_{i}" / "summary.json").read_text())
        data = single["config"]["data"]
        assert (data["n_folds"], data["test_fold"], data["validation_fold"]) == (k, i, (i + 1) % k)
        assert single["n_test"] == int((folds == i).sum())
        assert single["n_validation"] == int((folds == (i + 1) % k).sum())
        assert single["n_train"] == len(y) - single["n_test"] - single["n_validation"]
        assert summary["folds"][i]["test_auc"] == single["test_auc"]
    got = bundle.predict(X, event)
    # event by event: each event's score is that of the member of its fold, loaded on its own
    if kind == "bdt":
        members = [hepinfer.Forest.load(p) for p in bundle.member_paths]
        alone = np.column_stack([m.predict(X) for m in members])
    else:
        ort = pytest.importorskip("onnxruntime")
        sessions = [ort.InferenceSession(p, providers=["CPUExecutionProvider"]) for p in bundle.member_paths]
        name = sessions[0].get_inputs()[0].name
        alone = np.column_stack([s.run(None, {name: X})[0].reshape(-1) for s in sessions])
    want = alone[np.arange(len(X)), folds]
    if kind == "bdt":
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # the members differ, so picking the wrong one would show
    assert all(np.any(alone[:, i] != alone[:, j]) for i in range(k) for j in range(i))
    # and the per-fold test AUC is the AUC of the bundle's scores on that fold
    for i in range(k):
        sel = folds == i
        assert hepinfer.metrics.roc_auc(got[sel], y[sel]) == pytest.approx(
            summary["folds"][i]["test_auc"], abs=1e-6
        )


def test_kfold_config_errors(rng, tmp_path):
    write_sample(rng, tmp_path / "jets.npz", n=120)
    cfg = config_file(tmp_path, tmp_path / "jets.npz", "bdt")
    with pytest.raises(T.ConfigError, match="training.n_folds: must be 0 \\(off\\) or >= 3"):
        T.load_config(cfg, ["training.n_folds=2"])
    for overrides, match in (
        (["training.n_folds=3", 'model.kind="pfn"'], "one \\(events, features\\) input.*'pfn'"),
        (["training.n_folds=3", 'data.event_number=""'], "needs data.event_number"),
        (["training.n_folds=3", 'model.kind="mlp"', "export_onnx=false"], "export_onnx must be true"),
    ):
        with pytest.raises(T.ConfigError, match=match):
            T.run(T.load_config(cfg, overrides))


def test_kfold_refuses_hashed_event_numbers(rng, tmp_path):
    """Without an event-number branch the loader splits by a hash of the features, which the
    bundle could not recompute when scoring: k-fold says so instead of writing a bundle that
    names a branch the files do not have."""
    n = 120
    y = (rng.random(n) < 0.5).astype(np.float64)
    np.savez(tmp_path / "noevent.npz", jet_mass=rng.normal(60, 20, n), tau21=rng.random(n), label=y)
    cfg = config_file(tmp_path, tmp_path / "noevent.npz", "bdt")
    with pytest.raises(
        T.ConfigError, match="split by hash of the features; a k-fold bundle needs an event-number branch"
    ):
        T.run(T.load_config(cfg, ["training.n_folds=3"]))
    assert not (tmp_path / "bdt" / "kfold.json").exists()
