"""hepinfer.score: models run over ROOT files equal the models run over the same arrays read
directly; chunking, many files, output files, bad files among many, dask."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from tests.seeding import stable_seed

uproot = pytest.importorskip("uproot")
ak = pytest.importorskip("awkward")
xgb = pytest.importorskip("xgboost")

import hepinfer
from hepinfer.io import ReadError
from hepinfer.scoring import ModelHolder, score, score_dask
from tests.scoring.samples import corrupt_last_basket, reference, skhep_file, train, write_flat

FEATURES = ["x", "y", "nJet"]


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
        assert list(f["hepinfer_failures"]["file_index"].array(library="np")) == [1, 2, 3, 4]
        assert "corrupt.root" in f["hepinfer_failures"]["path"].array(library="np")[3]
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
        loaded = client.run(lambda: len(__import__("hepinfer.scoring.on_dask").scoring.on_dask._LOADED))
        lazy = score_dask(str(model), files, tree="Events", chunk=1000, compute=False)
        graph = dict(lazy.__dask_graph__())
        # the whole local feature set on the cluster: expressions, aliases, a cut, an output file
        kw = {
            "tree": "Events",
            "features": ["x", "w", "nth(Jet_pt, 0, -1)"],
            "aliases": {"w": "where(y > 0, y, 2 * y)"},
            "cut": "nJet != 1",
            "chunk": 1500,
        }
        summary = score(str(model), files, output=tmp_path / "cluster.root", dask=True, **kw)
    local = score(str(model), files, output=tmp_path / "local.root", **kw)
    assert summary.events == local.events and summary.events_per_file == local.events_per_file
    with uproot.open(tmp_path / "cluster.root") as f, uproot.open(tmp_path / "local.root") as g:
        a, b = f["scores"].arrays(library="np"), g["scores"].arrays(library="np")
        assert str(f["hepinfer_inputs"]) == str(g["hepinfer_inputs"])
    assert list(a) == list(b) == ["file_index", "entry", "run", "luminosityBlock", "event", "score"]
    for k in a:
        assert a[k].dtype == b[k].dtype
        np.testing.assert_array_equal(a[k], b[k])
    refs = [reference(rootdir, name) for name in ("nano_a", "nano_b")]
    sel = [r["nJet"] != 1 for r in refs]
    np.testing.assert_array_equal(a["entry"], np.concatenate([np.flatnonzero(m) for m in sel]))
    X = np.concatenate(
        [
            np.stack(
                [r["x"], np.where(r["y"] > 0, r["y"], 2 * r["y"]), np.nan_to_num(r["lead"], nan=-1)], axis=1
            )[m]
            for r, m in zip(refs, sel)
        ]
    )
    np.testing.assert_array_equal(a["score"], forest.predict(X))
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


# ------------------------------------------------------------------ set/graph networks from jagged branches


def _jagged_jets(rng, n_jets: int):
    """Jets of 0..40 particles (a few empty) as an awkward record array: float32 logpt/eta/phi,
    int32 charge per particle, per-jet pt/eta and an event number."""
    counts = np.minimum(rng.poisson(rng.gamma(3.0, 5.0, n_jets)), 40)
    counts[rng.choice(n_jets, 5, replace=False)] = 0
    counts[rng.choice(n_jets, 8, replace=False)] = np.arange(8)  # 0 .. 7: shorter than a kNN's k
    total = int(counts.sum())
    part = {
        "logpt": rng.normal(1.0, 1.0, total).astype(np.float32),
        "eta": (rng.integers(-160, 161, total) / 64.0).astype(np.float32),
        "phi": (rng.integers(-160, 161, total) / 64.0).astype(np.float32),
        "charge": rng.integers(-1, 2, total).astype(np.int32),
    }
    jets = {
        "jet_pt": rng.uniform(200, 600, n_jets).astype(np.float32),
        "jet_eta": rng.uniform(-2, 2, n_jets).astype(np.float32),
        "event": np.arange(n_jets, dtype=np.int64) * 3 + 1,
    }
    return counts, {k: ak.unflatten(v, counts) for k, v in part.items()}, jets


def _write_jagged(path, counts, part, jets, *, shifted_phi: bool = False, rntuple: bool = False) -> str:
    """The jets as a TTree 'jets' (or an RNTuple) with jagged part_* branches (plus part_phi2, whose
    counts differ from the others in one event when shifted_phi) and flat jet branches."""
    phi2 = part["phi"]
    if shifted_phi:
        flat = ak.to_numpy(ak.flatten(phi2))
        c2 = counts.copy()
        i = int(np.flatnonzero(c2 > 1)[len(c2[c2 > 1]) // 2])
        c2[i] -= 1
        phi2 = ak.unflatten(flat[: int(c2.sum())], c2)
    data = {**{f"part_{k}": v for k, v in part.items()}, "part_phi2": phi2, **jets}
    with uproot.recreate(path) as f:
        if rntuple:
            f["jets"] = data
        else:
            f.mktree(
                "jets", {k: v.type.content if isinstance(v, ak.Array) else v.dtype for k, v in data.items()}
            )
            f["jets"].extend(data)
    return str(path)


@pytest.fixture(scope="module")
def jagged_pfns(tmp_path_factory):
    """A masked PFN (particles, mask) and one with a per-jet input (particles, mask, jet),
    exported from torch with a dynamic particle axis."""
    from tests.nn.jet_models import PFN, export, torch

    seed = stable_seed("tests/test_score.py::jagged_pfn") % (1 << 31)
    print(f"torch weight seed = {seed}")
    torch.manual_seed(seed)
    d = tmp_path_factory.mktemp("jagged_pfn")
    dyn = [{0: "batch", 1: "n_particles"}] * 2
    plain = export(
        PFN().eval(), (torch.randn(3, 9, 4), torch.ones(3, 9)), d / "pfn.onnx", ["particles", "mask"], dyn
    )
    with_jet = export(
        PFN(jet_feat=2).eval(),
        (torch.randn(3, 9, 4), torch.ones(3, 9), torch.randn(3, 2)),
        d / "pfn_jet.onnx",
        ["particles", "mask", "jet"],
        dyn + [{0: "batch"}],
    )
    return str(plain), str(with_jet)


def _ort_padded(path, offsets, content, jet=None):
    """onnxruntime on the zero-padded, masked input (the padded model)."""
    from tests.nn.jet_models import pad

    ort = pytest.importorskip("onnxruntime")

    P = max(1, int(np.diff(offsets).max()))
    x, mask = pad(content, offsets, P, channels_first=False)
    feed = {"particles": x, "mask": mask}
    if jet is not None:
        feed["jet"] = jet
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, feed)[0]


PFN_BRANCHES = ["part_logpt", "part_eta", "part_phi", "part_charge"]


def test_jagged_pfn_scored_without_padding(jagged_pfns, rng, tmp_path):
    plain, _ = jagged_pfns
    counts, part, jets = _jagged_jets(rng, 400)
    path = _write_jagged(tmp_path / "jets.root", counts, part, jets)
    net = hepinfer.nn.Model.load(plain)
    record = ak.zip(
        {"logpt": part["logpt"], "eta": part["eta"], "phi": part["phi"], "charge": part["charge"]}
    )
    want = net.predict_jagged(record, fields={"particles": ["logpt", "eta", "phi", "charge"]})
    assert want.shape == (400, 3)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    content = np.stack(
        [ak.to_numpy(ak.flatten(part[k])).astype(np.float32) for k in ("logpt", "eta", "phi", "charge")],
        axis=1,
    )
    np.testing.assert_allclose(want, _ort_padded(plain, offsets, content), rtol=1e-5, atol=2e-6)
    assert np.isfinite(want[counts == 0]).all()
    rntuple = _write_jagged(tmp_path / "jets_rntuple.root", counts, part, jets, rntuple=True)
    for model, source in ((plain, path), (net, path), (plain, rntuple)):
        for chunk in ("100 MB", 37, 1):
            got = score(
                model, source, tree="jets", features={"particles": PFN_BRANCHES}, chunk=chunk, n_threads=1
            )
            assert got.shape == (400, 3)
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    # a plain list (the network has one per-particle input), given as a comma-separated string too
    np.testing.assert_allclose(
        score(plain, path, tree="jets", features=", ".join(PFN_BRANCHES)), want, rtol=1e-6, atol=1e-7
    )
    # output file: one branch per output column, the event number and entry copied
    out = tmp_path / "scores.root"
    summary = score(plain, [path, path], tree="jets", features=PFN_BRANCHES, output=out, chunk=150)
    assert summary.events == 800 and summary.output_names == ["score_0", "score_1", "score_2"]
    with uproot.open(out) as f:
        t = f["scores"].arrays(library="np")
    np.testing.assert_array_equal(t["event"], np.tile(jets["event"], 2))
    np.testing.assert_array_equal(t["file_index"], np.repeat([0, 1], 400))
    np.testing.assert_array_equal(t["entry"], np.tile(np.arange(400), 2))
    for j in range(3):
        np.testing.assert_allclose(t[f"score_{j}"], np.tile(want[:, j], 2), rtol=1e-6, atol=1e-7)


def test_jagged_pfn_with_jet_inputs_expressions_and_cut(jagged_pfns, rng, tmp_path):
    _, with_jet = jagged_pfns
    counts, part, jets = _jagged_jets(rng, 300)
    path = _write_jagged(tmp_path / "jets.root", counts, part, jets)
    net = hepinfer.nn.Model.load(with_jet)
    # per-particle expressions broadcast the jet's values; per-jet expressions
    features = {"particles": ["part_logpt", "part_eta - jet_eta", "part_phi", "part_charge"]}
    jet_features = {"jet": ["jet_pt / 100", "jet_eta"]}
    keep = jets["jet_pt"] > 350
    sel = {k: v[keep] for k, v in part.items()}
    deta = sel["eta"] - jets["jet_eta"][keep]
    offsets = np.concatenate([[0], np.cumsum(counts[keep])])
    cols = [sel["logpt"], deta, sel["phi"], sel["charge"]]
    jet = np.stack([jets["jet_pt"][keep] / np.float32(100), jets["jet_eta"][keep]], axis=1).astype(np.float32)
    want = net.predict_jagged(
        offsets, {"particles": [ak.to_numpy(ak.flatten(c)) for c in cols]}, jet_inputs={"jet": jet}
    )
    content = np.stack([ak.to_numpy(ak.flatten(c)).astype(np.float32) for c in cols], axis=1)
    np.testing.assert_allclose(want, _ort_padded(with_jet, offsets, content, jet), rtol=1e-5, atol=2e-6)
    summary = score(
        with_jet,
        path,
        tree="jets",
        features=features,
        jet_features=jet_features,
        cut="jet_pt > 350",
        chunk=64,
        return_summary=True,
    )
    np.testing.assert_array_equal(summary.entry, np.flatnonzero(keep))
    np.testing.assert_allclose(summary.scores, want, rtol=1e-5, atol=1e-6)


def test_jagged_inputs_errors(jagged_pfns, rng, tmp_path):
    plain, with_jet = jagged_pfns
    counts, part, jets = _jagged_jets(rng, 120)
    good = _write_jagged(tmp_path / "good.root", counts, part, jets)
    bad = _write_jagged(tmp_path / "bad.root", counts, part, jets, shifted_phi=True)
    kw = {"tree": "jets"}
    with pytest.raises(hepinfer.InputError, match=r"particles \(4 value\(s\) per particle\).*give features="):
        score(plain, good, **kw)
    with pytest.raises(hepinfer.InputError, match=r"'particles' takes 4 value\(s\) per particle; 3 branch"):
        score(plain, good, features={"particles": PFN_BRANCHES[:3]}, **kw)
    with pytest.raises(hepinfer.InputError, match="'mask' is the mask: it is built from the particle counts"):
        score(plain, good, features={"particles": PFN_BRANCHES, "mask": ["part_eta"]}, **kw)
    with pytest.raises(hepinfer.InputError, match=r"per-jet input\(s\) \['jet'\]"):
        score(with_jet, good, features=PFN_BRANCHES, **kw)
    with pytest.raises(hepinfer.InputError, match="'jet' takes values per jet, not per particle"):
        score(with_jet, good, features={"particles": PFN_BRANCHES, "jet": ["jet_pt", "jet_eta"]}, **kw)
    with pytest.raises(hepinfer.InputError, match="jet_features= is for set/graph networks"):
        score(
            hepinfer.Forest.load(train(np.eye(2), np.array([0.0, 1.0]), ["a", "b"], rounds=1)),
            good,
            jet_features={"x": "a"},
            **kw,
        )
    # file-level errors name the file and the branch
    with pytest.raises(
        ReadError, match=r"good\.root: tree 'jets' has no branch 'part_pz' \(needed for feature 'particles'\)"
    ):
        score(plain, good, features=[*PFN_BRANCHES[:3], "part_pz"], **kw)
    with pytest.raises(
        ReadError,
        match=r"good\.root: branch 'jet_pt' of tree 'jets' is not jagged.*'particles'.*jet_features=",
    ) as err:
        score(plain, good, features=[*PFN_BRANCHES[:3], "jet_pt"], **kw)
    assert err.value.branch == "jet_pt" and err.value.file == good
    with pytest.raises(
        ReadError,
        match=r"good\.root: 'jet_pt \* 2' \(per-particle input 'particles'\)|good\.root: branch 'jet_pt \* 2'.*not jagged",
    ):
        score(plain, good, features=[*PFN_BRANCHES[:3], "jet_pt * 2"], **kw)
    with pytest.raises(ReadError, match=r"good\.root: branch 'part_eta' .*jagged: a variable number"):
        score(with_jet, good, features=PFN_BRANCHES, jet_features={"jet": ["jet_pt", "part_eta"]}, **kw)

    with pytest.raises(
        ReadError,
        match=r"bad\.root: branches 'part_logpt' \(input 'particles'\) and 'part_phi2' \(input 'particles'\) of tree 'jets' hold different numbers of particles in entry \d+ \(\d+ and \d+\)",
    ) as err:
        score(plain, bad, features=["part_logpt", "part_eta", "part_phi2", "part_charge"], **kw)
    assert err.value.branch == "part_phi2"
    # skipped among good files: the good ones are scored, the bad one recorded
    summary = score(
        plain,
        [good, bad, good],
        features=["part_logpt", "part_eta", "part_phi2", "part_charge"],
        on_error="skip",
        return_summary=True,
        **kw,
    )
    assert [f.source.index for f in summary.failures] == [1] and "part_phi2" in summary.failures[0].message
    np.testing.assert_array_equal(summary.file_index, np.repeat([0, 2], 120))


def test_network_with_fixed_particle_axis_refused(tmp_path):
    from tests.nn.jet_models import PFN, export, torch

    path = export(
        PFN().eval(),
        (torch.randn(3, 9, 4), torch.ones(3, 9)),
        tmp_path / "fixed.onnx",
        ["particles", "mask"],
        [{0: "batch"}] * 2,
    )
    root = tmp_path / "x.root"
    with uproot.recreate(root) as f:
        f.mktree("jets", {"a": np.float32})
        f["jets"].extend({"a": np.zeros(3, np.float32)})
    with pytest.raises(
        hepinfer.InputError, match=r"particles \['batch', 9, 4\].*is neither.*symbolic particle dimension"
    ):
        score(str(path), str(root), tree="jets", features=["a"] * 4)


def test_jagged_pfn_on_dask_equals_score(jagged_pfns, rng, tmp_path):
    dask = pytest.importorskip("dask")
    pytest.importorskip("dask_awkward")
    _, with_jet = jagged_pfns
    counts, part, jets = _jagged_jets(rng, 200)
    files = [_write_jagged(tmp_path / f"j{i}.root", counts, part, jets) for i in range(2)]
    kw = {
        "tree": "jets",
        "features": {"particles": PFN_BRANCHES},
        "jet_features": {"jet": ["jet_pt", "jet_eta"]},
    }
    want = score(with_jet, files, **kw)
    assert want.shape == (400, 3)
    with dask.config.set(scheduler="synchronous"):
        got = score(with_jet, files, dask=True, chunk=70, **kw)
        lazy = score_dask(with_jet, files, compute=False, **kw)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert lazy.fields == ["file_index", "entry", "event", "score_0", "score_1", "score_2"]
    with pytest.raises(hepinfer.InputError, match=r"per-jet input\(s\) \['jet'\]"):
        score_dask(with_jet, files, tree="jets", features=PFN_BRANCHES)


def test_cli_jagged_features(jagged_pfns, rng, tmp_path, capsys):
    from hepinfer.cli import main

    _, with_jet = jagged_pfns
    counts, part, jets = _jagged_jets(rng, 150)
    path = _write_jagged(tmp_path / "jets.root", counts, part, jets)
    want = score(
        with_jet,
        path,
        tree="jets",
        features={"particles": PFN_BRANCHES},
        jet_features={"jet": ["jet_pt", "log(jet_eta + 3)"]},
    )
    out = tmp_path / "s.root"
    argv = ["score", with_jet, path, "-o", str(out), "--no-progress", "--tree", "jets"]
    assert (
        main(
            [
                *argv,
                "--jagged-features",
                "particles=" + ",".join(PFN_BRANCHES),
                "--jet-features",
                "jet=jet_pt, log(jet_eta + 3)",
            ]
        )
        == 0
    )
    assert "files     1 scored, 0 failed, 1 given" in capsys.readouterr().out
    with uproot.open(out) as f:
        t = f["scores"].arrays(library="np")
    np.testing.assert_allclose(
        np.stack([t[f"score_{j}"] for j in range(3)], axis=1), want, rtol=1e-6, atol=1e-7
    )
    assert main([*argv, "--jagged-features", "particles"]) == 1
    assert "--jagged-features takes INPUT=BRANCH,BRANCH" in capsys.readouterr().err
    assert main([*argv, "--jagged-features", "particles=" + ",".join(PFN_BRANCHES)]) == 1
    assert "per-jet input(s) ['jet']" in capsys.readouterr().err


def test_jagged_particlenet_graph_model(rng, tmp_path):
    """A graph network (ParticleNet-Lite, EdgeConv k = 7, channels-first inputs points/features/mask)
    scored from jagged branches equals onnxruntime on padded input (jets of 0 .. k-1 particles
    included: padded to k exactly as the padded model sees them)."""
    from tests.nn.jet_models import ParticleNetLite, export, pnet_padded_feeds, randomize_batchnorm, torch

    ort = pytest.importorskip("onnxruntime")

    seed = int(rng.integers(1 << 31))
    torch.manual_seed(seed)
    net = ParticleNetLite(7).eval()
    randomize_batchnorm(net, torch.Generator().manual_seed(seed + 1))
    path = export(
        net,
        (torch.randn(2, 2, 12), torch.randn(2, 4, 12), torch.ones(2, 1, 12)),
        tmp_path / "pn.onnx",
        ["points", "features", "mask"],
        [{0: "batch", 2: "n_particles"}] * 3,
    )
    counts, part, jets = _jagged_jets(rng, 150)  # holds jets of 0 .. k particles
    root = _write_jagged(tmp_path / "jets.root", counts, part, jets)
    got = score(
        str(path),
        root,
        tree="jets",
        features={"points": ["part_eta", "part_phi"], "features": PFN_BRANCHES},
        chunk=40,
    )
    offsets = np.concatenate([[0], np.cumsum(counts)])
    content = np.stack(
        [ak.to_numpy(ak.flatten(part[k])).astype(np.float32) for k in ("logpt", "eta", "phi", "charge")],
        axis=1,
    )
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, pnet_padded_feeds(content, offsets, max(7, int(counts.max())))
    )[0]
    nonempty = counts > 0  # an empty jet divides 0 by 0 in the masked mean, padded or not
    assert got.shape == (150, 2)
    np.testing.assert_allclose(got[nonempty], want[nonempty], rtol=1e-5, atol=2e-6)
