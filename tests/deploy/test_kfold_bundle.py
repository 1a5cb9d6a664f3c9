"""hepinfer.KFold (hepinfer::KFold): a k-fold bundle loaded as one model scores each event with
the member of its fold (event_number mod k), checked event by event against the members loaded
on their own (hepinfer.Forest for xgboost members, onnxruntime for ONNX members); the manifest's
errors; pickling; threads."""

from __future__ import annotations

import json
import pickle
import shutil
import threading

import numpy as np
import pytest

import hepinfer
from hepinfer import InputError, ModelFormatError
from tests.deploy.kfold_models import (
    FEATURES,
    events,
    fold_of,
    mlp_onnx,
    write_raw_manifest,
    xgboost_bundle,
)

pytest.importorskip("xgboost")


@pytest.fixture(scope="module")
def bundle3(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kfold") / "bdt_kfold"
    paths = xgboost_bundle(folder, 3, seed=17)
    return folder, paths


def by_members(paths, X, ev, k, output="probability"):
    """Reference: each event scored by Forest.load(member of its fold) alone."""
    folds = fold_of(ev, k)
    forests = [hepinfer.Forest.load(p) for p in paths]
    want = np.full(len(X), np.nan)
    for i, f in enumerate(forests):
        sel = folds == i
        if sel.any():
            want[sel] = f.predict(X[sel], output=output, n_threads=1)
    return want


def test_each_event_gets_the_model_of_its_fold(bundle3, rng):
    folder, paths = bundle3
    kf = hepinfer.KFold.load(folder)
    assert (kf.n_folds, kf.kind, kf.event_number, kf.feature_names) == (3, "forest", "event", FEATURES)
    assert kf.member_paths == [str(folder / f"fold_{i}" / "model.json") for i in range(3)]
    d = events(rng, 2000)
    X = np.column_stack([d[f] for f in FEATURES]).astype(np.float32)
    ev = d["event"]
    ev[:6] = [0, 1, 2, -1, -5, 2**62 + 1]  # negative numbers: Python's e % k
    got = kf.predict(X, ev, n_threads=1)
    want = by_members(paths, X, ev, 3)
    np.testing.assert_array_equal(got, want)
    # the folds really differ: each member would have given other scores to the other folds
    own = hepinfer.Forest.load(paths[0]).predict(X)
    assert not np.array_equal(own, got)
    np.testing.assert_array_equal(kf.folds(ev), fold_of(ev, 3))
    # margins, float64 rows, threads
    np.testing.assert_array_equal(
        kf.predict(X.astype(np.float64), ev, output="margin", n_threads=2),
        by_members(paths, X.astype(np.float64), ev, 3, output="margin"),
    )


def test_event_number_dtypes(bundle3, rng):
    folder, paths = bundle3
    kf = hepinfer.KFold.load(folder / "kfold.json")  # the manifest itself
    d = events(rng, 300)
    X = np.column_stack([d[f] for f in FEATURES]).astype(np.float32)
    big = rng.integers(2**63, 2**64 - 1, 300, dtype=np.uint64, endpoint=True)  # above int64
    np.testing.assert_array_equal(kf.predict(X, big), by_members(paths, X, big, 3))
    np.testing.assert_array_equal(kf.predict(X.astype(np.float64), big), by_members(paths, X, big, 3))
    for dtype in (np.int32, np.uint32, np.int16, np.uint8):
        ev = rng.integers(0, 200, 300).astype(dtype)
        np.testing.assert_array_equal(kf.predict(X, ev), by_members(paths, X, ev.astype(np.int64), 3))
    with pytest.raises(InputError, match="must hold integers.*float64"):
        kf.predict(X, d["event"].astype(np.float64))
    with pytest.raises(InputError, match="must hold integers.*bool"):
        kf.predict(X, np.ones(300, dtype=bool))
    with pytest.raises(InputError, match="299 entries for 300 events"):
        kf.predict(X, d["event"][:-1])
    with pytest.raises(InputError, match="give event_numbers"):
        kf.predict(X)
    with pytest.raises(InputError, match="expects 3"):
        kf.predict(X[:, :2], d["event"])


def test_named_inputs_and_edge_sizes(bundle3, rng):
    pd = pytest.importorskip("pandas")
    folder, paths = bundle3
    kf = hepinfer.KFold.load(folder)
    d = events(rng, 500)
    X = np.column_stack([d[f] for f in FEATURES])  # float64 (eta is float64)
    want = by_members(paths, X, d["event"], 3)
    shuffled = {k: d[k] for k in ["event", "mass", "eta", "pt"]}
    np.testing.assert_array_equal(kf.predict(shuffled), want)
    np.testing.assert_array_equal(kf.predict(pd.DataFrame(shuffled)), want)
    ak = pytest.importorskip("awkward")
    np.testing.assert_array_equal(kf.predict(ak.zip(shuffled)), want)
    with pytest.raises(InputError, match="no column\\(s\\) \\['eta'\\]"):
        kf.predict({k: v for k, v in d.items() if k != "eta"})
    with pytest.raises(InputError, match="no column 'event'"):
        kf.predict({k: v for k, v in d.items() if k != "event"})
    assert kf.predict(X[:0], d["event"][:0]).shape == (0,)
    for i in range(3):  # one row, one fold only
        np.testing.assert_array_equal(kf.predict(X[i : i + 1], d["event"][i : i + 1]), want[i : i + 1])
    one_fold = d["event"] - d["event"] % 3 + 1  # every event in fold 1
    np.testing.assert_array_equal(
        kf.predict(X, one_fold), hepinfer.Forest.load(paths[1]).predict(X, n_threads=1)
    )


def test_pickle_and_threads(bundle3, rng, tmp_path):
    folder, paths = bundle3
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    kf = hepinfer.KFold.load(copy)
    data = pickle.dumps(kf)
    shutil.rmtree(copy)  # the pickle holds the files, not their paths
    back = pickle.loads(data)
    d = events(rng, 4000)
    X = np.column_stack([d[f] for f in FEATURES]).astype(np.float32)
    want = by_members(paths, X, d["event"], 3)
    np.testing.assert_array_equal(back.predict(X, d["event"]), want)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(back)).predict(X, d["event"]), want)
    results: list = [None] * 6
    errors: list = []

    def work(j):
        try:
            results[j] = back.predict(X[j * 100 :], d["event"][j * 100 :], n_threads=1 + j % 2)
        except Exception as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(j,)) for j in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for j in range(6):
        np.testing.assert_array_equal(results[j], want[j * 100 :])


def test_onnx_members_against_onnxruntime(tmp_path, rng):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    k = 4
    paths = [mlp_onnx(tmp_path / f"net_{i}.onnx", len(FEATURES), 2, seed=100 + i) for i in range(k)]
    hepinfer.kfold.write_manifest(tmp_path, paths, features=FEATURES, event_number="evt")
    kf = hepinfer.KFold.load(tmp_path)
    assert (kf.kind, kf.n_outputs(), kf.event_number) == ("network", 2, "evt")
    d = events(rng, 1000)
    X = np.nan_to_num(np.column_stack([d[f] for f in FEATURES]).astype(np.float32))
    got = kf.predict(X, d["event"])
    assert got.shape == (1000, 2)
    folds = fold_of(d["event"], k)
    for i, p in enumerate(paths):
        sess = ort.InferenceSession(p, providers=["CPUExecutionProvider"])
        sel = folds == i
        want = sess.run(None, {"x": X[sel]})[0]
        np.testing.assert_allclose(got[sel], want, rtol=1e-5, atol=1e-6)
    # float64 rows are rounded to float32 for the networks, as hepinfer.nn.Model does
    np.testing.assert_array_equal(kf.predict(X.astype(np.float64), d["event"]), got)


def test_manifest_errors(bundle3, tmp_path):
    folder, _ = bundle3
    work = tmp_path / "b"
    shutil.copytree(folder, work)

    def load_error(match, **fields):
        path = write_raw_manifest(work, **fields)
        with pytest.raises(ModelFormatError, match=match):
            hepinfer.KFold.load(work)
        return path

    load_error(
        "kfold.json: members: 2 member models listed for n_folds = 3", members=["fold_0/model.json"] * 2
    )
    load_error('kfold.json: format: expected "hepinfer-kfold"', format="something")
    load_error("kfold.json: \\(root\\): missing key 'event_number'", event_number=None)
    load_error(
        "kfold.json: n_folds: expected an integer >= 2, got 1", n_folds=1, members=["fold_0/model.json"]
    )
    load_error("kfold.json: version: .*version 1, not 2", version=2)
    load_error("kfold.json: features\\[1\\]: 'pt' is listed twice", features=["pt", "pt", "mass"])
    load_error("event_number: 'pt' is also a feature", event_number="pt")
    load_error(
        "kfold.json: members\\[2\\]: the member model .*fold_9.* does not exist",
        members=["fold_0/model.json", "fold_1/model.json", "fold_9/model.json"],
    )
    # members whose features disagree with the manifest (and so with each other)
    load_error(
        "fold_0/model.json: the fold 0 model's features \\['pt', 'eta', 'mass'\\] differ from the "
        "manifest's \\['pt', 'mass', 'eta'\\]",
        features=["pt", "mass", "eta"],
    )
    load_error(
        "fold_0/model.json: the fold 0 model takes 3 features, the manifest .* lists 2",
        features=["pt", "eta"],
    )
    (work / "kfold.json").write_text('{"format": "hepinfer-kfold", ')
    with pytest.raises(ModelFormatError, match="kfold.json"):
        hepinfer.KFold.load(work)
    (work / "kfold.json").unlink()
    with pytest.raises(ModelFormatError, match="not a k-fold bundle \\(the folder has no kfold.json\\)"):
        hepinfer.KFold.load(work)


def test_members_of_different_kinds_or_outputs(bundle3, tmp_path):
    folder, paths = bundle3
    nets = [mlp_onnx(tmp_path / f"n{i}.onnx", 3, 1 + (i == 2), seed=i) for i in range(3)]
    with pytest.raises(ModelFormatError, match="n2.onnx: the fold 2 network gives 2 outputs per event"):
        hepinfer.kfold.write_manifest(tmp_path / "x", nets, features=FEATURES)
    with pytest.raises(ModelFormatError, match="mixes ONNX networks and forests"):
        hepinfer.kfold.write_manifest(tmp_path / "y", [paths[0], paths[1], nets[0]], features=FEATURES)
    four = mlp_onnx(tmp_path / "four.onnx", 4, 1, seed=5)
    with pytest.raises(ModelFormatError, match="four.onnx: the fold 1 network takes 4 values per event"):
        hepinfer.kfold.write_manifest(tmp_path / "z", [nets[0], four, nets[1]], features=FEATURES)
    manifest = json.loads((tmp_path / "z" / "kfold.json").read_text())  # written, then refused
    assert manifest["members"][1].endswith("four.onnx") and manifest["n_folds"] == 3


def test_forest_and_model_load_point_to_kfold(bundle3):
    folder, _ = bundle3
    for load in (hepinfer.Forest.load, hepinfer.Model.load):
        for path in (folder, folder / "kfold.json"):
            with pytest.raises(
                ModelFormatError, match="a k-fold bundle: load it with hepinfer.KFold.load, not"
            ):
                load(path)
