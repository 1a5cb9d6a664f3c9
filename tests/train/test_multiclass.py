"""Multiclass training end to end: networks (MLP, PFN, ParticleNet) with a softmax output and
xgboost ``multi:softprob`` BDTs, through ``hepinfer train`` and the Python API, exported and read
back by :class:`hepinfer.nn.Model` / :class:`hepinfer.Forest`, scored with one branch per class,
and the per-class metrics and plots. Trainings are tiny (a few hundred events, 1-3 epochs)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("xgboost")

from hepinfer import train as T

torch.set_num_threads(1)

CLASSES = ["qcd", "w", "top"]


def three_classes(rng, n):
    """(features [mass, tau21, tau32], label 0..2): each class its own mass peak and substructure."""
    y = rng.integers(0, 3, n)
    mass = np.choose(
        y, [20.0 + rng.exponential(40.0, n), rng.normal(80.0, 8.0, n), rng.normal(172.0, 12.0, n)]
    )
    tau21 = np.choose(y, [rng.normal(0.6, 0.1, n), rng.normal(0.3, 0.1, n), rng.normal(0.45, 0.1, n)])
    tau32 = np.choose(y, [rng.normal(0.8, 0.1, n), rng.normal(0.75, 0.1, n), rng.normal(0.5, 0.1, n)])
    return np.column_stack([mass, tau21, tau32]), y


def write_npz(rng, path, n=600):
    X, y = three_classes(rng, n)
    np.savez(path, jet_mass=X[:, 0], tau21=X[:, 1], tau32=X[:, 2], label=y, event=rng.permutation(n))


def config_text(tmp_path, data, model, loss="cross_entropy", extra=""):
    return (
        f'seed = 1\noutput = "{(tmp_path / "out").as_posix()}"\n'
        f'[data]\nsource = "{data.as_posix()}"\nfeatures = ["jet_mass", "tau21", "tau32"]\n'
        f'[model]\nkind = "{model}"\nhidden = [16]\n'
        "[training]\nepochs = 3\nbatch_size = 64\nprogress = false\nlearning_rate = 0.01\n"
        f'[loss]\nkind = "{loss}"\n[bdt]\nn_trees = 15\n{extra}'
    )


def fresh_rows(rng, n=300, nan_fraction=0.0):
    X, _ = three_classes(rng, n)
    X[rng.random(X.shape) < nan_fraction] = np.nan
    return X


def scored_branches(model, root, tmp_path, **options):
    """hepinfer.score(model, root) written to a ROOT file: {branch: values} of the score branches."""
    import uproot

    import hepinfer

    out = tmp_path / "scores.root"
    hepinfer.score(model, str(root), output=str(out), overwrite=True, **options)
    with uproot.open(out) as f:
        tree = f["scores"]
        return {k: tree[k].array(library="np") for k in tree.keys() if k.startswith("score")}


def write_root(path, X, tree="jets"):
    uproot = pytest.importorskip("uproot")
    with uproot.recreate(path) as f:
        f[tree] = {"jet_mass": X[:, 0], "tau21": X[:, 1], "tau32": X[:, 2]}


def test_cli_cross_entropy_mlp_trains_three_classes(rng, tmp_path):
    """Issue 17, finding 4: loss.kind = "cross_entropy" passed validation, then build_model made a
    one-output network and the run died with an IndexError. Now it trains a 3-class network,
    exports class probabilities (a softmax output) that hepinfer.nn.Model reproduces, and
    hepinfer.score writes one branch per class."""
    import hepinfer
    from hepinfer.nn import Model

    data = tmp_path / "jets.npz"
    write_npz(rng, data)
    cfg = tmp_path / "run.toml"
    cfg.write_text(config_text(tmp_path, data, "mlp"))
    assert T.main([str(cfg)]) == 0
    out = tmp_path / "out"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == "multiclass" and summary["n_classes"] == 3
    assert summary["classes"] == ["class_0", "class_1", "class_2"]
    assert summary["output_columns"] == ["score_class_0", "score_class_1", "score_class_2"]
    assert summary["test_accuracy"] > 0.6  # three well separated classes; chance is 1/3
    assert set(summary["test_per_class"]) == set(summary["classes"])
    assert all(v["auc"] > 0.7 for v in summary["test_per_class"].values())
    matrix = np.array(summary["test_confusion_matrix"])
    assert matrix.shape == (3, 3) and np.allclose(matrix.sum(axis=1), 1.0)
    for name in ("roc.png", "confusion_matrix.png"):
        assert (out / name).stat().st_size > 1000

    X = fresh_rows(rng).astype(np.float32)
    model = Model.load(str(out / "model.onnx"))
    got = np.asarray(model.predict(X))
    assert got.shape == (len(X), 3)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-5)
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    expected = session.run(None, {session.get_inputs()[0].name: X})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)

    root = tmp_path / "fresh.root"
    write_root(root, X)
    in_memory = hepinfer.score(str(out / "model.onnx"), str(root), features=["jet_mass", "tau21", "tau32"])
    np.testing.assert_allclose(in_memory, expected, rtol=1e-5, atol=1e-6)  # (events, classes)
    scores = scored_branches(str(out / "model.onnx"), root, tmp_path, features=["jet_mass", "tau21", "tau32"])
    assert list(scores) == summary["output_columns"]
    np.testing.assert_allclose(np.column_stack(list(scores.values())), expected, rtol=1e-5, atol=1e-6)


def test_bdt_multi_softprob_through_the_cli_forest_and_score(rng, tmp_path):
    """A 3-class xgboost BDT (multi:softprob): hepinfer.Forest gives xgboost's class
    probabilities on fresh rows with missing values, and score() names the branches by class."""
    import xgboost as xgb

    import hepinfer

    data = tmp_path / "jets.npz"
    write_npz(rng, data)
    cfg = tmp_path / "run.toml"
    cfg.write_text(config_text(tmp_path, data, "bdt"))
    assert T.main([str(cfg)]) == 0
    out = tmp_path / "out"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == "multiclass" and summary["test_accuracy"] > 0.6
    booster = xgb.Booster(model_file=str(out / "model.json"))
    assert json.loads(booster.save_config())["learner"]["objective"]["name"] == "multi:softprob"
    forest = hepinfer.Forest.load(str(out / "model.json"))
    assert forest.n_classes == 3 and forest.n_outputs() == 3
    X = fresh_rows(rng, 400, nan_fraction=0.15)
    expected = booster.predict(xgb.DMatrix(X, feature_names=booster.feature_names))
    got = forest.predict(X)
    assert got.shape == (len(X), 3)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(forest.predict(X[:1]), expected[:1], rtol=1e-5, atol=1e-6)
    assert forest.predict(X[:0]).shape == (0, 3)
    margin = forest.predict(X, output="margin")
    np.testing.assert_allclose(
        margin,
        booster.predict(xgb.DMatrix(X, feature_names=booster.feature_names), output_margin=True),
        rtol=1e-5,
        atol=1e-5,
    )

    root = tmp_path / "fresh.root"
    write_root(root, X)
    scores = scored_branches(str(out / "model.json"), root, tmp_path)
    assert list(scores) == ["score_class_0", "score_class_1", "score_class_2"]
    np.testing.assert_allclose(np.column_stack(list(scores.values())), expected, rtol=1e-5, atol=1e-6)
    loaded = scored_branches(forest, root, tmp_path)  # a loaded Forest carries no names: numbered
    assert list(loaded) == ["score_0", "score_1", "score_2"]
    dask = pytest.importorskip("dask")
    with dask.config.set(scheduler="synchronous"):  # the file's bytes travel to the workers: same names
        on_dask = hepinfer.score(str(out / "model.json"), str(root), dask=True, return_summary=True)
    assert on_dask.output_names == list(scores)
    np.testing.assert_allclose(on_dask.scores, expected, rtol=1e-5, atol=1e-6)


def test_train_bdt_api_with_class_names(rng, tmp_path):
    import hepinfer

    X, y = three_classes(rng, 450)
    names = ["QCD", "W+jets", "t t-bar"]
    result = T.train_bdt(X, y, task="multiclass", classes=names, n_trees=10, early_stopping_rounds=0)
    assert result.classes == names
    assert result.output_columns == ["score_QCD", "score_W_jets", "score_t_t_bar"]
    p = result.predict(X[:5])
    assert p.shape == (5, 3)
    path = result.save(tmp_path / "bdt.json")
    np.testing.assert_allclose(
        hepinfer.Forest.load(path).predict(X[:50]), result.predict(X[:50]), rtol=1e-5, atol=1e-6
    )
    with pytest.raises(ValueError, match=r"label\[\d+\] = 3 but there are only 3 classes"):
        T.train_bdt(X, np.where(y == 2, 3, y), task="multiclass", classes=names, n_trees=2)
    with pytest.raises(ValueError, match="task must be one of"):
        T.train_bdt(X, y, task="ranking")


@pytest.mark.parametrize("kind", ["pfn", "particlenet"])
def test_particle_networks_with_several_classes_export_and_score(rng, tmp_path, kind):
    """PFN and ParticleNet with three outputs: trained with cross_entropy on jets whose class is
    their angular spread, exported with a softmax (checked against onnxruntime and
    hepinfer.nn.Model by export_onnx), then scored from jagged branches, each jet at its own
    number of particles: one branch per class, equal to the padded network's probabilities."""
    ak = pytest.importorskip("awkward")
    from hepinfer.export import export_onnx, output_column_names

    n = 240
    y = rng.integers(0, 3, n)
    counts = rng.integers(3, 12, n)
    spread = np.array([0.05, 0.2, 0.5])[y]
    jets = [
        np.column_stack([rng.dirichlet(np.ones(k)), rng.normal(0, s, k), rng.normal(0, s, k)]).astype(
            np.float32
        )
        for k, s in zip(counts, spread)
    ]
    particles, mask = T.pad_particles(jets)
    torch.manual_seed(0)
    if kind == "pfn":
        model = T.ParticleFlowNetwork(3, (16,), 8, (16,), n_outputs=3)
    else:
        model = T.ParticleNetLite(3, (1, 2), k=3, blocks=[[8]], head_hidden=[8], n_outputs=3, dropout=0.0)
    model.scaler.fit(particles, mask)
    trainer = T.Trainer(
        model, loss="cross_entropy", epochs=3, batch_size=64, learning_rate=0.01, progress=False
    )
    trainer.fit(T.Sample((particles, mask.float()), torch.as_tensor(y, dtype=torch.float32)))
    probabilities = trainer.predict((particles, mask.float()))
    assert probabilities.shape == (n, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)

    classes = ["narrow", "medium", "wide"]
    path = export_onnx(
        T.WithSoftmax(model),
        (particles[:16], mask[:16].float()),
        tmp_path / f"{kind}.onnx",
        output_columns=output_column_names(classes),
        classes=classes,
    )
    uproot = pytest.importorskip("uproot")
    root = tmp_path / "jets.root"
    flat = {
        name: ak.unflatten(np.concatenate([j[:, i] for j in jets]), counts)
        for i, name in enumerate(["c_z", "c_deta", "c_dphi"])
    }
    with uproot.recreate(root) as f:
        f["jets"] = flat
    scores = scored_branches(path, root, tmp_path, features=["c_z", "c_deta", "c_dphi"])
    assert list(scores) == ["score_narrow", "score_medium", "score_wide"]
    np.testing.assert_allclose(np.column_stack(list(scores.values())), probabilities, rtol=1e-4, atol=1e-5)


def test_cli_particle_network_cross_entropy(tmp_path):
    """The constituent networks through ``hepinfer train`` with cross_entropy (the toy sample's
    two classes, as two softmax outputs)."""
    pytest.importorskip("hepinfer.datasets")
    from hepinfer.nn import Model

    cfg = tmp_path / "pfn.toml"
    cfg.write_text(
        f'output = "{(tmp_path / "pfn").as_posix()}"\n[data]\nsource = "toy"\nn_signal = 60\nn_background = 60\n'
        'max_particles = 20\n[model]\nkind = "pfn"\nhidden = [8]\nlatent = 8\nrho_hidden = [8]\n'
        '[training]\nepochs = 2\nbatch_size = 32\nprogress = false\n[loss]\nkind = "cross_entropy"\n'
    )
    assert T.main([str(cfg)]) == 0
    summary = json.loads((tmp_path / "pfn" / "summary.json").read_text())
    assert summary["classes"] == ["background", "signal"]
    assert summary["output_columns"] == ["score_background", "score_signal"]
    model = Model.load(str(tmp_path / "pfn" / "model.onnx"))
    assert model.outputs[0].shape[-1] == 2


def test_cli_rejects_labels_that_are_not_class_indices(rng, tmp_path, capsys):
    data = tmp_path / "jets.npz"
    X, y = three_classes(rng, 200)
    label = y.astype(np.float64)
    label[7] = 1.5
    np.savez(data, jet_mass=X[:, 0], tau21=X[:, 1], tau32=X[:, 2], label=label, event=np.arange(200))
    cfg = tmp_path / "run.toml"
    cfg.write_text(config_text(tmp_path, data, "mlp"))
    assert T.main([str(cfg)]) == 2
    assert (
        "data.target: 'label' must give class indices 0, 1, ... for a classifier; event 7 has 1.5"
        in capsys.readouterr().err
    )


def test_build_model_gives_one_logit_per_class():
    config = T.parse_config({"model": {"kind": "mlp", "hidden": [4]}, "loss": {"kind": "cross_entropy"}})
    assert T.build_model(config, 3, 4)(torch.zeros(2, 3)).shape == (2, 4)
    with pytest.raises(T.ConfigError, match="number of classes"):
        T.build_model(config, 3)
    binary = T.parse_config({"model": {"kind": "particlenet", "k": 2, "blocks": [[4]]}})
    assert T.build_model(binary, 3)(torch.zeros(2, 5, 3), torch.ones(2, 5)).shape == (2, 1)


def test_rebalance_classes(rng):
    y = rng.integers(0, 4, 500)
    w = rng.uniform(0.5, 2.0, 500)
    balanced = T.rebalance_classes(y, w)
    sums = np.bincount(y, weights=balanced, minlength=4)
    np.testing.assert_allclose(sums, sums[0])
    np.testing.assert_allclose(balanced[y == 0], w[y == 0])
    binary = rng.integers(0, 2, 100)
    np.testing.assert_allclose(T.rebalance_classes(binary, w[:100]), T.rebalance_weights(binary, w[:100]))
    with pytest.raises(ValueError, match="class 2 has 0"):
        T.rebalance_classes(np.array([0, 1, 1, 0]), None, 3)


# ------------------------------------------------------------------------------------------ metrics


def random_probabilities(rng, n, k):
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True), y


@pytest.mark.parametrize("weighted", [False, True])
def test_one_vs_rest_auc_and_confusion_matrix_match_sklearn(rng, weighted):
    sk = pytest.importorskip("sklearn.metrics")
    from hepinfer import metrics

    p, y = random_probabilities(rng, 700, 4)
    w = rng.uniform(0.2, 3.0, len(y)) if weighted else None
    expected = sk.roc_auc_score(y, p, multi_class="ovr", average=None, sample_weight=w)
    np.testing.assert_allclose(metrics.one_vs_rest_auc(p, y, w), expected, rtol=1e-12)
    for normalize in (None, "true", "pred", "all"):
        want = sk.confusion_matrix(y, p.argmax(axis=1), labels=range(4), sample_weight=w, normalize=normalize)
        np.testing.assert_allclose(
            metrics.confusion_matrix(y, p, 4, w, normalize=normalize), want, rtol=1e-12
        )
        np.testing.assert_allclose(
            metrics.confusion_matrix(y, p.argmax(axis=1), 4, w, normalize=normalize), want, rtol=1e-12
        )


def test_one_vs_rest_rejection_is_the_binary_rejection_of_each_column(rng):
    from hepinfer import metrics

    p, y = random_probabilities(rng, 500, 3)
    w = rng.uniform(0.5, 2.0, len(y))
    got = metrics.one_vs_rest_rejection(p, y, 0.4, w)
    for c in range(3):
        mine = y == c
        want = metrics.background_rejection(p[mine, c], p[~mine, c], 0.4, w[mine], w[~mine])
        assert got[c] == want
    missing = metrics.one_vs_rest_rejection(p, np.where(y == 2, 0, y), 0.5)
    assert np.isnan(missing[2]) and np.isfinite(missing[:2]).all()


def test_multiclass_summary_and_its_errors(rng):
    from hepinfer import InputError, metrics

    p, y = random_probabilities(rng, 300, 3)
    s = metrics.multiclass_summary(p, y, ["a", "b", "c"])
    assert s["accuracy"] == np.mean(p.argmax(axis=1) == y)
    assert list(s["per_class"]) == ["a", "b", "c"]
    np.testing.assert_allclose(s["per_class"]["b"]["auc"], metrics.roc_auc(p[:, 1], y == 1))
    with pytest.raises(InputError, match=r"label\[4\] = 3.0 is not a class index in \[0, 3\)"):
        metrics.multiclass_summary(p, np.where(np.arange(300) == 4, 3, y))
    bad = p.copy()
    bad[2, 1] = np.nan
    with pytest.raises(InputError, match=r"probabilities\[2, 1\] is not finite"):
        metrics.one_vs_rest_auc(bad, y)
    with pytest.raises(InputError, match="2 class names for 3"):
        metrics.multiclass_summary(p, y, ["a", "b"])
    with pytest.raises(InputError, match="shape"):
        metrics.one_vs_rest_auc(p[:, 0], y)


def test_multiclass_plots_write_files(rng, tmp_path):
    pytest.importorskip("matplotlib")
    from hepinfer import plot

    p, y = random_probabilities(rng, 300, 3)
    assert (tmp_path / "roc.png").samefile(
        plot.multiclass_roc(y, p, tmp_path / "roc.png", classes=list("abc"))
    )
    path = plot.confusion_matrix(y, p, tmp_path / "cm.png", weight=rng.uniform(0.5, 1.5, 300))
    assert (tmp_path / "cm.png").stat().st_size > 1000 and path.endswith("cm.png")
    with pytest.raises(ValueError, match="class indices"):
        plot.confusion_matrix(y + 1, p, tmp_path / "bad.png")


def test_onnx_metadata_reader_matches_onnx_and_export_checks_the_columns(tmp_path):
    """score() reads the stored output columns without the onnx package: its small protobuf
    walker gives what onnx itself reads; export_onnx refuses names that do not fit the output."""
    onnx = pytest.importorskip("onnx")
    from hepinfer.export import export_onnx
    from hepinfer.scoring.models import onnx_metadata, stored_output_columns

    torch.manual_seed(0)
    model = T.WithSoftmax(T.MLP(3, (4,), 3))
    x = torch.randn(8, 3)
    path = export_onnx(
        model, x, tmp_path / "m.onnx", output_columns=["score_a", "score_b", "score_c"], classes="abc"
    )
    proto = onnx.load(path)
    assert onnx_metadata(path) == {p.key: p.value for p in proto.metadata_props}
    assert stored_output_columns(path) == ["score_a", "score_b", "score_c"]
    assert json.loads(onnx_metadata(path)["hepinfer.classes"]) == ["a", "b", "c"]
    assert stored_output_columns(export_onnx(model, x, tmp_path / "plain.onnx")) is None
    (tmp_path / "junk.onnx").write_bytes(b"\xff\xff\xff")
    assert onnx_metadata(tmp_path / "junk.onnx") == {}
    with pytest.raises(ValueError, match="output_columns has 2 names but the model returns 1 output"):
        export_onnx(model, x, tmp_path / "bad.onnx", output_columns=["a", "b"])
