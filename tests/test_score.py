"""hepinfer.score: models run over ROOT files equal the models run over the same arrays read
directly; chunking, many files, output files, bad files among many, dask."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

uproot = pytest.importorskip("uproot")
ak = pytest.importorskip("awkward")
xgb = pytest.importorskip("xgboost")

from test_io import corrupt_last_basket, reference, root_written_files, skhep_file, write_flat

import hepinfer
from hepinfer.io import ReadError
from hepinfer.scoring import ModelHolder, score, score_dask

FEATURES = ["x", "y", "nJet"]


@pytest.fixture(scope="session")
def rootdir(tmp_path_factory):
    return root_written_files(tmp_path_factory.getbasetemp())


def train(X: np.ndarray, y: np.ndarray, names, objective="binary:logistic", rounds=20, **params):
    d = xgb.DMatrix(X, label=y, feature_names=list(names), missing=np.nan)
    return xgb.train({"objective": objective, "max_depth": 4, "eta": 0.3, "nthread": 1, **params}, d, rounds)


def direct(path: str, branches, tree="Events") -> dict:
    """The branches as uproot reads them, in one go."""
    with uproot.open(path) as f:
        return f[tree].arrays(list(branches), library="np")


@pytest.fixture(scope="module")
def bdt(rootdir):
    """An XGBoost BDT trained on the ROOT-written file's branches (NaNs included)."""
    ref = reference(rootdir, "nano_a")
    X = np.stack([ref[k].astype(np.float64) for k in FEATURES], axis=1)
    booster = train(X, (ref["x"] * ref["y"] > 0).astype(float), FEATURES)
    return booster, hepinfer.Forest.load(booster)


def test_score_equals_predict_on_direct_read(rootdir, bdt):
    booster, forest = bdt
    path = f"{rootdir}/nano_a.root"
    arrays = direct(path, FEATURES)
    expected = forest.predict(arrays)
    got = score(forest, path, tree="Events")
    assert got.dtype == np.float64 and got.shape == (5000,)
    np.testing.assert_array_equal(got, expected)
    # and the forest agrees with xgboost on those arrays (NaN = missing)
    X = np.stack([arrays[k].astype(np.float32) for k in FEATURES], axis=1)
    np.testing.assert_allclose(
        got, booster.predict(xgb.DMatrix(X, feature_names=FEATURES, missing=np.nan)), rtol=1e-6
    )
    # the model given as a file or a booster scores the same
    np.testing.assert_array_equal(score(booster, f"{path}:Events"), expected)


@pytest.mark.parametrize("chunk", [7, 999, 4096, "20 kB", "1 GB"])
def test_chunked_equals_unchunked(rootdir, bdt, chunk):
    _, forest = bdt
    path = f"{rootdir}/nano_a.root:Events"
    whole = score(forest, path, chunk=10**9)
    np.testing.assert_array_equal(score(forest, path, chunk=chunk, n_threads=1), whole)


def test_many_files_and_output_round_trip(rootdir, bdt, tmp_path):
    _, forest = bdt
    files = [f"{rootdir}/nano_a.root", f"{rootdir}/nano_b.root", f"{rootdir}/nano_a.root"]
    expected = np.concatenate([forest.predict(direct(p, FEATURES)) for p in files])
    np.testing.assert_array_equal(score(forest, files, tree="Events", chunk=1500), expected)
    np.testing.assert_array_equal(
        score(forest, f"{rootdir}/nano_[ab].root", tree="Events")[:8000], expected[:8000]
    )

    out = tmp_path / "scores.root"
    summary = score(forest, files, tree="Events", chunk=1500, output=out)
    assert summary.events == 13000 and summary.output == str(out) and not summary.failures
    assert summary.events_per_file == {0: 5000, 1: 3000, 2: 5000}
    assert summary.event_ids == {"run": "run", "luminosityBlock": "luminosityBlock", "event": "event"}
    with uproot.open(out) as f:
        t = f["scores"]
        assert t.num_entries == 13000
        got = t.arrays(library="np")
        assert "nano_b.root" in str(f["hepinfer_inputs"])
    np.testing.assert_array_equal(got["score"], expected)
    np.testing.assert_array_equal(got["file_index"], np.repeat([0, 1, 2], [5000, 3000, 5000]))
    np.testing.assert_array_equal(
        got["entry"], np.concatenate([np.arange(5000), np.arange(3000), np.arange(5000)])
    )
    ids = [direct(p, ["run", "luminosityBlock", "event"]) for p in files]
    for k in ("run", "luminosityBlock", "event"):
        assert got[k].dtype == ids[0][k].dtype  # uint32 / uint64 kept
        np.testing.assert_array_equal(got[k], np.concatenate([i[k] for i in ids]))
    assert "13,000" in summary.report() and str(out) in summary.report()


def test_feature_mapping_expressions_and_cut(rootdir, tmp_path):
    ref = reference(rootdir, "nano_b")
    names = ["f_x", "f_r", "lead_pt"]
    # the same numpy operations uproot performs on the same dtypes (x float32, y float64)
    X = np.stack([ref["x"], np.sqrt(ref["x"] ** 2 + ref["y"] ** 2), ref["lead"]], axis=1)
    forest = hepinfer.Forest.load(train(X, ref["y"] > 0, names))
    path = f"{rootdir}/nano_b.root:Events"
    as_list = ["x", "sqrt(x**2 + y**2)", "first(Jet_pt)"]
    expected = forest.predict(X)
    np.testing.assert_array_equal(score(forest, path, features=as_list), expected)
    as_dict = {"f_r": "sqrt(x**2 + y**2)", "lead_pt": "first(Jet_pt)", "f_x": "x"}
    np.testing.assert_array_equal(score(forest, path, features=as_dict, chunk=700), expected)
    summary = score(forest, path, features=as_list, cut="nJet >= 2", return_summary=True)
    sel = ref["nJet"] >= 2
    np.testing.assert_array_equal(summary.entry, np.nonzero(sel)[0])
    np.testing.assert_array_equal(summary.scores, expected[sel])
    with pytest.raises(hepinfer.InputError, match="features has 2 entries but the model has 3 inputs"):
        score(forest, path, features=["x", "y"])
    with pytest.raises(hepinfer.InputError, match="not model inputs"):
        score(forest, path, features={"pt": "x"})


def test_multiclass_margin_and_output_names(rootdir, tmp_path):
    ref = reference(rootdir, "nano_a")
    X = np.stack([ref[k].astype(np.float64) for k in FEATURES], axis=1)
    label = np.digitize(ref["y"], [-0.5, 0.7])
    booster = train(X, label, FEATURES, objective="multi:softprob", num_class=3, rounds=5)
    forest = hepinfer.Forest.load(booster)
    path = f"{rootdir}/nano_a.root:Events"
    arrays = direct(f"{rootdir}/nano_a.root", FEATURES)
    got = score(forest, path, chunk=777)
    assert got.shape == (5000, 3)
    np.testing.assert_array_equal(got, forest.predict(arrays))
    np.testing.assert_array_equal(
        score(forest, path, output_kind="margin"), forest.predict(arrays, output="margin")
    )
    out = tmp_path / "multi.root"
    score(forest, path, output=out, output_names=["bkg", "mid", "sig"], output_tree="bdt")
    with uproot.open(out) as f:
        written = f["bdt"].arrays(["bkg", "mid", "sig"], library="np")
    np.testing.assert_array_equal(np.stack([written[k] for k in ("bkg", "mid", "sig")], axis=1), got)
    with pytest.raises(hepinfer.InputError, match="output_names has 1 names but the model gives 3"):
        score(forest, path, output_names=["s"])


class ToyNetwork:
    """A model following the scoring protocol without being a Forest (like hepinfer.Model)."""

    def __init__(self, w):
        self.inputs = ["x", "y"]
        self.output_names = ["signal", "background"]
        self.w = w
        self.calls = 0

    def predict(self, inputs):
        self.calls += 1
        z = self.w[0] * np.nan_to_num(inputs["x"].astype(np.float64)) + self.w[1] * inputs["y"]
        p = 1 / (1 + np.exp(-z))
        return {"signal": p, "background": 1 - p}


def test_protocol_model_dict_outputs(rootdir, rng, tmp_path):
    net = ToyNetwork(rng.normal(size=2))
    path = f"{rootdir}/nano_b.root:Events"
    got = score(net, path, chunk=1000)
    arrays = direct(f"{rootdir}/nano_b.root", ["x", "y"])
    want = net.predict(arrays)
    assert set(got) == {"signal", "background"} and net.calls >= 3
    for k in got:
        np.testing.assert_array_equal(got[k], want[k])
    summary = score(net, path, output=tmp_path / "nn.root")
    assert summary.output_names == ["signal", "background"]
    with uproot.open(tmp_path / "nn.root") as f:
        np.testing.assert_array_equal(f["scores"]["signal"].array(library="np"), want["signal"])
    with pytest.raises(TypeError, match="needs input names"):
        score(object(), path)


def test_rntuple_input(rootdir, bdt):
    _, forest = bdt
    expected = forest.predict(direct(f"{rootdir}/nano_b.root", FEATURES))
    np.testing.assert_array_equal(score(forest, f"{rootdir}/ntuple.root:Events", chunk=1000), expected)


def test_results_do_not_depend_on_threads(rootdir, bdt):
    _, forest = bdt
    path = f"{rootdir}/nano_a.root:Events"
    ref = score(forest, path, n_threads=1, chunk=1000)
    np.testing.assert_array_equal(score(forest, path, n_threads=2, chunk=333), ref)
    np.testing.assert_array_equal(score(forest, path, n_threads=None), ref)


def test_empty_tree_and_progress_bar(tmp_path, rng, bdt, capsys):
    _, forest = bdt
    with uproot.recreate(tmp_path / "empty.root") as f:
        f.mktree("Events", {k: np.float32 for k in FEATURES})
    assert score(forest, str(tmp_path / "empty.root")).shape == (0,)
    summary = score(forest, str(tmp_path / "empty.root"), output=tmp_path / "o.root")
    assert summary.events == 0
    with uproot.open(tmp_path / "o.root") as f:
        assert f["scores"].num_entries == 0 and "score" in f["scores"].keys()
    data = write_flat(tmp_path / "f.root", rng, 3000, names=FEATURES)
    got = score(forest, str(tmp_path / "f.root"), progress=True, chunk=1000)
    np.testing.assert_array_equal(got, forest.predict(data))
    err = capsys.readouterr().err
    assert "3.00k/3.00k" in err and "events/s" in err and "read" in err
    assert "<" in err  # elapsed<remaining: the ETA
    # with a cut the bar counts entries read, so it still reaches its total
    got = score(forest, str(tmp_path / "f.root"), progress=True, chunk=700, cut="x > 0", return_summary=True)
    err = capsys.readouterr().err
    assert "3.00k/3.00k" in err and 0 < got.events < 3000
    np.testing.assert_array_equal(got.entry, np.flatnonzero(data["x"] > 0))


# ------------------------------------------------------------------ bad files among many


def test_bad_file_among_many_raise_keeps_partial_output(rootdir, bdt, tmp_path):
    _, forest = bdt
    good = f"{rootdir}/nano_a.root"
    with open(good, "rb") as fh:
        data = fh.read()
    corrupt = tmp_path / "corrupt.root"
    corrupt.write_bytes(data)
    corrupt_last_basket(corrupt, "y")  # readable header, broken basket: fails part-way
    out = tmp_path / "partial.root"
    with pytest.raises(ReadError) as err:
        score(forest, [good, str(corrupt), good], tree="Events", output=out, chunk=700)
    msg = str(err.value)
    assert "corrupt.root" in msg and str(out) in msg and "file_index" in msg
    assert err.value.file == str(corrupt)
    summary = err.value.summary
    assert summary.events_per_file[0] == 5000 and 0 < summary.events_per_file.get(1, 0) < 5000
    with uproot.open(out) as f:  # the output is a valid ROOT file holding what was scored
        got = f["scores"].arrays(["file_index", "score"], library="np")
    assert len(got["score"]) == summary.events
    np.testing.assert_array_equal(got["score"][:5000], forest.predict(direct(good, FEATURES)))


def test_bad_files_skipped_and_recorded(rootdir, bdt, tmp_path, rng):
    _, forest = bdt
    good = f"{rootdir}/nano_a.root"
    (tmp_path / "text.root").write_text("not ROOT")
    write_flat(tmp_path / "nofeat.root", rng, 50, names=("x", "y"), tree="Events")  # lacks nJet
    with open(good, "rb") as fh:
        data = fh.read()
    (tmp_path / "cut.root").write_bytes(data[: len(data) // 2])
    corrupt = tmp_path / "corrupt.root"
    corrupt.write_bytes(data)
    corrupt_last_basket(corrupt, "x")
    files = [
        good,
        str(tmp_path / "text.root"),
        str(tmp_path / "nofeat.root"),
        str(tmp_path / "cut.root"),
        str(corrupt),
        good,
    ]
    with pytest.raises(ReadError, match="text.root"):  # checked before anything is scored
        score(forest, files, tree="Events", output=tmp_path / "never.root")
    out = tmp_path / "skip.root"
    summary = score(forest, files, tree="Events", output=out, on_error="skip", chunk=1000)
    failed = {f.source.index: f for f in summary.failures}
    assert sorted(failed) == [1, 2, 3, 4]
    assert (
        "not ROOT" in failed[1].message and "nJet" in failed[2].message and "truncated" in failed[3].message
    )
    assert failed[2].error.branch == "nJet"
    assert failed[4].entry > 0 and summary.n_files_done == 2
    report = summary.report()
    assert report.count("FAILED") == 4 and "corrupt.root" in report
    with uproot.open(out) as f:
        idx = f["scores"]["file_index"].array(library="np")
        assert "corrupt.root" in str(f["hepinfer_failures"])
    assert np.sum(idx == 0) == 5000 and np.sum(idx == 5) == 5000 and set(np.unique(idx)) <= {0, 4, 5}
    # in memory
    kept = score(forest, files, tree="Events", on_error="skip", return_summary=True, chunk=1000)
    assert len(kept.scores) == kept.events == summary.events and len(kept.failures) == 4


# ------------------------------------------------------------------ shipping models to workers


def test_model_holder_pickles_bytes_and_loads_once(bdt, tmp_path):
    booster, forest = bdt
    path = tmp_path / "m.ubj"
    booster.save_model(path)
    holder = ModelHolder.from_model(str(path))
    clone = pickle.loads(pickle.dumps(holder))
    assert clone.key == holder.key and len(pickle.dumps(holder)) < len(path.read_bytes()) + 1000
    assert clone.get() is holder.get()  # cached per process, keyed by the model's hash
    X = np.random.default_rng(1).normal(size=(50, 3))
    np.testing.assert_array_equal(clone.get().predict(dict(zip(FEATURES, X.T))), forest.predict(X))
    assert ModelHolder.from_model(booster).key  # from a booster too
    # a loaded Forest travels as its model bytes
    from_forest = pickle.loads(pickle.dumps(ModelHolder.from_model(forest)))
    np.testing.assert_array_equal(from_forest.get().predict(dict(zip(FEATURES, X.T))), forest.predict(X))


@pytest.mark.slow
def test_dask_cluster_matches_single_process(rootdir, bdt, tmp_path):
    distributed = pytest.importorskip("distributed")
    pytest.importorskip("dask_awkward")
    booster, forest = bdt
    model = tmp_path / "m.json"
    booster.save_model(model)
    files = [f"{rootdir}/nano_a.root", f"{rootdir}/nano_b.root"]
    expected = score(forest, files, tree="Events")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster),
    ):
        client = distributed.get_client()
        got = score(str(model), files, tree="Events", chunk=2000, dask=True)
        # the model was loaded once in each worker that scored (cached by its hash), not per partition
        loaded = client.run(lambda: len(__import__("hepinfer.scoring").scoring._LOADED))
        lazy = score_dask(str(model), files, tree="Events", chunk=1000, compute=False)
        graph = dict(lazy.__dask_graph__())
    np.testing.assert_array_equal(got, expected)
    assert len(loaded) == 2 and all(n <= 1 for n in loaded.values()) and sum(loaded.values()) >= 1
    # the model's bytes are one node of the task graph, shared by the 8 partitions
    holders = [k for k, v in graph.items() if isinstance(getattr(v, "value", v), ModelHolder)]
    assert len(holders) == 1 and lazy.npartitions == 8


def test_skhep_zmumu_scored():
    path = skhep_file("uproot-Zmumu.root")
    arrays = direct(path, ["px1", "py1", "E1"], tree="events")
    X = np.stack([arrays[k] for k in ("px1", "py1", "E1")], axis=1)
    forest = hepinfer.Forest.load(train(X, arrays["E1"] > 40, ["px1", "py1", "E1"], rounds=5))
    np.testing.assert_array_equal(score(forest, f"{path}:events", chunk=500), forest.predict(X))


# ------------------------------------------------------------------ ONNX networks


def _onnx_mlp(path, rng, n_in: int, n_out: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """A Gemm + Sigmoid network written with onnx's helpers; returns its weights."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    W = rng.normal(size=(n_in, n_out)).astype(np.float32)
    b = rng.normal(size=n_out).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["x", "W", "b"], ["z"]),
            helper.make_node("Sigmoid", ["z"], ["probability"]),
        ],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", n_in])],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["n", n_out])],
        [numpy_helper.from_array(W, "W"), numpy_helper.from_array(b, "b")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return W, b


def test_onnx_network_with_features(rootdir, rng, tmp_path):
    path = str(tmp_path / "mlp.onnx")
    W, b = _onnx_mlp(path, rng, 3)
    arrays = direct(f"{rootdir}/nano_a.root", ["x", "y", "nJet"])
    X = np.stack([arrays["y"], arrays["x"], np.sqrt(np.abs(arrays["y"]))], axis=1).astype(np.float32)
    net = hepinfer.nn.Model.load(path)
    want = net.predict(X).reshape(-1)
    np.testing.assert_allclose(want, 1 / (1 + np.exp(-(X @ W[:, 0] + b[0]))), rtol=1e-5, atol=1e-6)
    features = ["y", "x", "sqrt(abs(y))"]
    src = f"{rootdir}/nano_a.root:Events"
    for model in (path, net):
        got = score(model, src, features=features, chunk=1100)
        assert got.shape == (5000,)
        np.testing.assert_array_equal(got, want)
    out = tmp_path / "nn.root"
    summary = score(path, src, features=features, output=out)
    assert summary.output_names == ["probability"]
    with uproot.open(out) as f:
        np.testing.assert_array_equal(f["scores"]["probability"].array(library="np"), want)
    with pytest.raises(hepinfer.InputError, match=r"input 'x' takes 3 numbers per event.*features="):
        score(path, src)
    with pytest.raises(hepinfer.InputError, match="features has 2 entries but the model has 3 inputs"):
        score(path, src, features=["x", "y"])
    assert ModelHolder.from_model(path).kind == "onnx"
    clone = pickle.loads(pickle.dumps(ModelHolder.from_model(path)))
    np.testing.assert_array_equal(
        clone.get().predict({f"x[{j}]": X[:, j] for j in range(3)}).reshape(-1), want
    )


def test_cli_features_with_commas_inside_expressions(rootdir, bdt, tmp_path, capsys):
    from hepinfer.cli import main
    from hepinfer.scoring import split_features

    assert split_features("x, sqrt(a**2 + b**2),nth(Jet_pt, 1, -1) , where(a > 0, [1, 2], c)") == [
        "x",
        "sqrt(a**2 + b**2)",
        "nth(Jet_pt, 1, -1)",
        "where(a > 0, [1, 2], c)",
    ]
    booster, forest = bdt
    model = tmp_path / "bdt.json"
    booster.save_model(model)
    ref = reference(rootdir, "nano_a")
    out = tmp_path / "s.root"
    argv = ["score", str(model), f"{rootdir}/nano_a.root", "-o", str(out), "--no-progress"]
    assert main([*argv, "--features", "x, y, nth(Jet_pt, 0, -1)", "--chunk", "999"]) == 0
    assert "files     1 scored, 0 failed, 1 given" in capsys.readouterr().out
    lead = np.where(np.isnan(ref["lead"]), -1, ref["lead"])
    want = forest.predict({"x": ref["x"], "y": ref["y"], "nJet": lead})
    with uproot.open(out) as f:
        np.testing.assert_array_equal(f["scores"]["score"].array(library="np"), want)
    assert main([*argv, "--features", "x, y, nth(Jet_pt, 0"]) == 1  # unbalanced: a clear error, no traceback
    assert "hepinfer: error:" in capsys.readouterr().err
