"""XGBoost parity: hepinfer must reproduce xgboost's own predict exactly.

Models are trained in each test on fresh random data (the seed is printed). Inputs include
NaN (missing) and values exactly on split thresholds. XGBoost sums leaves in float32, tree
by tree, and so does hepinfer for XGBoost models, so margins are compared for equality
after rounding to float32; leaf indices must equal `pred_leaf`.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

import hepinfer

xgb = pytest.importorskip("xgboost")

DATA = Path(__file__).resolve().parents[1] / "data" / "xgboost"

OBJECTIVES = {
    "binary:logistic": {},
    "binary:logitraw": {},
    "reg:logistic": {},
    "reg:squarederror": {},
    "multi:softprob": {"num_class": 4},
    "multi:softmax": {"num_class": 3},
    "count:poisson": {},
}


def _labels(objective, X, rng):
    x0 = np.nan_to_num(X[:, 0])
    if objective.startswith("multi"):
        k = OBJECTIVES[objective]["num_class"]
        return (np.digitize(x0, np.linspace(-1, 1, k - 1)) + rng.integers(0, 2, len(x0))) % k
    if objective == "reg:squarederror":
        return 3 * x0 + np.nan_to_num(X[:, 1]) ** 2 + rng.normal(size=len(x0))
    if objective == "reg:logistic":
        return 1 / (1 + np.exp(-x0 - rng.normal(size=len(x0))))
    if objective == "count:poisson":
        return rng.poisson(np.exp(0.5 * np.clip(x0, -2, 2)))
    return (x0 + np.nan_to_num(X[:, 1]) * rng.normal(size=len(x0)) > 0).astype(int)


def _train(objective, rng, depth, n_trees, n_features=8, n_rows=600, missing=0.05):
    X = rng.normal(size=(n_rows, n_features)).astype(np.float32)
    X[rng.random(X.shape) < missing] = np.nan
    y = _labels(objective, X, rng)
    params = {
        "objective": objective,
        "max_depth": depth,
        "eta": 0.3,
        "nthread": 1,
        "seed": int(rng.integers(1 << 30)),
        **OBJECTIVES[objective],
    }
    return xgb.train(params, xgb.DMatrix(X, y), num_boost_round=n_trees)


def _thresholds(booster):
    """(feature, split value) of every split in the model."""
    out = []
    gb = json.loads(booster.save_raw("json"))["learner"]["gradient_booster"]
    model = gb["model"] if "model" in gb else gb["gbtree"]["model"]  # gbtree or dart
    for tree in model["trees"]:
        for left, feat, cond in zip(tree["left_children"], tree["split_indices"], tree["split_conditions"]):
            if left != -1:
                out.append((feat, np.float32(cond)))
    return out


def _test_rows(booster, rng, n_features, n=500):
    X = rng.normal(size=(n, n_features)).astype(np.float32)
    X[rng.random(X.shape) < 0.1] = np.nan
    X[: n // 10] = np.nan  # rows with every feature missing
    splits = _thresholds(booster)
    if splits:
        # a third of the rows put several features exactly on split values
        for i in range(n // 10, n // 2):
            for _ in range(3):
                f, v = splits[int(rng.integers(len(splits)))]
                X[i, f] = v
    return X


def _check(booster, forest, X):
    d = xgb.DMatrix(X)
    ref_margin = booster.predict(d, output_margin=True)
    ref_leaf = booster.predict(d, pred_leaf=True)
    ref = booster.predict(d)
    margin = forest.predict(X, output="margin")
    np.testing.assert_array_equal(margin.astype(np.float32).reshape(ref_margin.shape), ref_margin)
    np.testing.assert_array_equal(forest.predict_leaf(X).reshape(ref_leaf.shape), ref_leaf)
    got = forest.predict(X)
    np.testing.assert_allclose(got.reshape(ref.shape), ref, rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("fmt", ["json", "ubj"])
@pytest.mark.parametrize("objective", list(OBJECTIVES))
def test_objectives(objective, fmt, rng, tmp_path):
    booster = _train(objective, rng, depth=5, n_trees=30)
    path = tmp_path / f"model.{fmt}"
    booster.save_model(path)
    forest = hepinfer.Forest.load(path)
    assert forest.source_format == "xgboost"
    assert forest.objective == objective
    assert forest.n_trees == len(booster.get_dump())
    _check(booster, forest, _test_rows(booster, rng, 8))


@pytest.mark.parametrize(
    "depth,n_trees", [(1, 1), (1, 300), (2, 17), (3, 1000), (6, 100), (8, 40), (10, 25), (10, 200)]
)
def test_depths_and_sizes(depth, n_trees, rng, tmp_path):
    booster = _train("binary:logistic", rng, depth=depth, n_trees=n_trees, n_features=12, n_rows=2000)
    fmt = "ubj" if n_trees % 2 else "json"
    path = tmp_path / f"model.{fmt}"
    booster.save_model(path)
    _check(booster, hepinfer.Forest.load(path), _test_rows(booster, rng, 12, n=1000))


def test_in_memory_booster_and_feature_names(rng):
    names = [f"jet{i}_pt" for i in range(6)]
    X = rng.normal(size=(400, 6)).astype(np.float32)
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 3, "nthread": 1},
        xgb.DMatrix(X, (X[:, 0] > 0).astype(int), feature_names=names),
        10,
    )
    forest = hepinfer.Forest.load(booster)
    assert forest.feature_names == names
    assert forest.n_classes == 2
    ref = booster.predict(xgb.DMatrix(X, feature_names=names))
    np.testing.assert_allclose(forest.predict(X), ref, rtol=2e-6)
    # named inputs in another order, extra columns ignored
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({n: X[:, j] for j, n in reversed(list(enumerate(names)))})
    df["unused"] = 1.0
    np.testing.assert_allclose(forest.predict(df), ref, rtol=2e-6)
    np.testing.assert_allclose(forest.predict({n: X[:, j] for j, n in enumerate(names)}), ref, rtol=2e-6)
    ak = pytest.importorskip("awkward")
    arr = ak.zip({n: X[:, j] for j, n in enumerate(names)})
    np.testing.assert_allclose(forest.predict(arr), ref, rtol=2e-6)
    with pytest.raises(hepinfer.InputError, match="jet3_pt"):
        forest.predict({n: X[:, j] for j, n in enumerate(names) if j != 3})
    jagged = ak.zip(
        {n: ak.unflatten(X[:, j], np.ones(len(X), dtype=np.int64)) for j, n in enumerate(names)},
        depth_limit=1,
    )
    with pytest.raises(hepinfer.InputError, match="jagged"):
        forest.predict(jagged)


def test_layouts_dtypes_and_shapes(rng):
    booster = _train("multi:softprob", rng, depth=4, n_trees=10)
    forest = hepinfer.Forest.load(booster)
    X = _test_rows(booster, rng, 8, n=300)
    expected = forest.predict(X)
    assert expected.shape == (300, 4)
    np.testing.assert_array_equal(forest.predict(np.asfortranarray(X)), expected)
    np.testing.assert_array_equal(
        forest.predict(X.astype(np.float64)), expected
    )  # rounded to float32 as xgboost
    wide = np.zeros((300, 16), dtype=np.float32)
    wide[:, ::2] = X
    np.testing.assert_array_equal(forest.predict(wide[:, ::2]), expected)  # strided view, no copy
    np.testing.assert_array_equal(forest.predict(X[::-1])[::-1], expected)  # negative stride
    np.testing.assert_array_equal(
        forest.predict(np.nan_to_num(X).astype(np.int64)),
        forest.predict(np.nan_to_num(X).astype(np.int64).astype(np.float64)),
    )
    out = np.empty((300, 4))
    assert forest.predict(X, out=out) is out
    np.testing.assert_array_equal(out, expected)
    empty = forest.predict(np.empty((0, 8), dtype=np.float32))
    assert empty.shape == (0, 4)
    assert forest.predict_leaf(np.empty((0, 8))).shape == (0, forest.n_trees)
    for i in (0, 7, 299):
        np.testing.assert_array_equal(forest.predict_one(X[i]), expected[i])
        np.testing.assert_array_equal(forest.predict(X[i : i + 1])[0], expected[i])


def test_threads_give_identical_results(rng):
    booster = _train("binary:logistic", rng, depth=6, n_trees=60, n_rows=3000)
    forest = hepinfer.Forest.load(booster)
    X = _test_rows(booster, rng, 8, n=20000)
    one = forest.predict(X, n_threads=1)
    for n in (2, 3, 8, None):
        np.testing.assert_array_equal(forest.predict(X, n_threads=n), one)
    results = [None] * 8

    def work(k):
        results[k] = [forest.predict(X[k:], n_threads=1 + k % 2) for _ in range(3)]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k, runs in enumerate(results):
        for r in runs:
            np.testing.assert_array_equal(r, one[k:])


def test_bad_input_raises(rng, tmp_path):
    booster = _train("binary:logistic", rng, depth=3, n_trees=5)
    path = tmp_path / "model.json"
    booster.save_model(path)
    forest = hepinfer.Forest.load(path)
    X = rng.normal(size=(10, 8)).astype(np.float32)
    with pytest.raises(hepinfer.InputError, match="7 features but the model expects 8"):
        forest.predict(X[:, :7])
    with pytest.raises(hepinfer.InputError, match="2-dimensional"):
        forest.predict(X[0])
    with pytest.raises(hepinfer.InputError, match="2-dimensional"):
        forest.predict(X.reshape(10, 8, 1))
    with pytest.raises(hepinfer.InputError, match="dtype"):
        forest.predict(X.astype(object))
    with pytest.raises(hepinfer.InputError, match="dtype"):
        forest.predict(X.astype(str))
    with pytest.raises(hepinfer.InputError, match="dtype"):
        forest.predict(X.astype(np.complex64))
    with pytest.raises(hepinfer.InputError, match="n_threads"):
        forest.predict(X, n_threads=0)
    with pytest.raises(hepinfer.InputError, match="output"):
        forest.predict(X, output="probabilities")
    with pytest.raises(hepinfer.InputError, match="out"):
        forest.predict(X, out=np.empty((10, 2)))
    with pytest.raises(ValueError):  # InputError is a ValueError
        forest.predict_one(X[0, :3])
    assert issubclass(hepinfer.InputError, ValueError)
    assert issubclass(hepinfer.ModelFormatError, ValueError)


@pytest.mark.parametrize("fmt", ["json", "ubj"])
def test_broken_model_files(fmt, rng, tmp_path):
    booster = _train("binary:logistic", rng, depth=3, n_trees=5)
    path = tmp_path / f"model.{fmt}"
    booster.save_model(path)
    data = path.read_bytes()
    for cut in (1, len(data) // 3, len(data) // 2, len(data) - 1):
        broken = tmp_path / f"truncated.{fmt}"
        broken.write_bytes(data[:cut])
        with pytest.raises(hepinfer.ModelFormatError, match="truncated"):
            hepinfer.Forest.load(broken)
    # random corruption must never crash: either a clean error or a valid model
    for _ in range(200):
        corrupt = bytearray(data)
        for _ in range(int(rng.integers(1, 8))):
            corrupt[int(rng.integers(len(corrupt)))] = int(rng.integers(256))
        try:
            hepinfer.Forest.load(bytes(corrupt))
        except hepinfer.ModelFormatError:
            pass
    with pytest.raises(hepinfer.ModelFormatError, match="cannot open"):
        hepinfer.Forest.load(tmp_path / "missing.json")


def test_unsupported_objective_and_booster(rng):
    booster = _train("binary:logistic", rng, depth=2, n_trees=2)
    doc = json.loads(booster.save_raw("json"))
    doc["learner"]["objective"]["name"] = "binary:hinge"
    with pytest.raises(hepinfer.ModelFormatError, match="binary:hinge"):
        hepinfer.Forest.load(json.dumps(doc).encode())
    doc = json.loads(booster.save_raw("json"))
    doc["learner"]["gradient_booster"]["name"] = "gblinear"
    with pytest.raises(hepinfer.ModelFormatError, match="gblinear"):
        hepinfer.Forest.load(json.dumps(doc).encode())


def test_dart_booster(rng, tmp_path):
    X = rng.normal(size=(500, 5)).astype(np.float32)
    booster = xgb.train(
        {"booster": "dart", "objective": "binary:logistic", "rate_drop": 0.3, "max_depth": 3, "nthread": 1},
        xgb.DMatrix(X, (X[:, 0] > 0).astype(int)),
        10,
    )
    path = tmp_path / "dart.json"
    booster.save_model(path)
    forest = hepinfer.Forest.load(path)
    Xt = _test_rows(booster, rng, 5)
    ref = booster.predict(xgb.DMatrix(Xt), output_margin=True)
    np.testing.assert_allclose(forest.predict(Xt, output="margin"), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("path", sorted(DATA.glob("*.npz")), ids=lambda p: p.stem)
def test_models_from_older_xgboost(path):
    """Models saved by xgboost 1.7 and 2.1 (tests/data/xgboost, made by
    tests/data/xgboost/make_models.py) with those versions' own predictions."""
    ref = np.load(path)
    for suffix in (".json", ".ubj"):
        model = path.with_suffix(suffix)
        if not model.exists():
            continue
        forest = hepinfer.Forest.load(model)
        X = ref["X"]
        np.testing.assert_array_equal(
            forest.predict(X, output="margin").astype(np.float32).reshape(ref["margin"].shape), ref["margin"]
        )
        np.testing.assert_array_equal(forest.predict_leaf(X).reshape(ref["leaf"].shape), ref["leaf"])
        np.testing.assert_allclose(
            forest.predict(X).reshape(ref["prob"].shape), ref["prob"], rtol=2e-6, atol=1e-7
        )


@pytest.mark.parametrize("fmt", ["json", "ubj"])
@pytest.mark.parametrize("max_cat_to_onehot", [1, 64])
def test_categorical_splits(fmt, max_cat_to_onehot, rng, tmp_path):
    """Partition-based and one-hot categorical splits, with NaN, unseen, negative, fractional
    and huge category values: XGBoost treats x < 0 and x >= 2^24 as invalid (left)."""
    n = 3000
    X = np.column_stack([rng.normal(size=n), rng.integers(0, 40, n), rng.integers(0, 5, n)]).astype(
        np.float32
    )
    y = ((X[:, 0] > 0) ^ np.isin(X[:, 1], [1, 3, 5, 9, 33]) ^ (X[:, 2] == 2)).astype(int)
    X[rng.random(X.shape) < 0.05] = np.nan
    types = ["q", "c", "c"]
    booster = xgb.train(
        {
            "max_depth": 4,
            "tree_method": "hist",
            "max_cat_to_onehot": max_cat_to_onehot,
            "objective": "binary:logistic",
            "nthread": 1,
            "seed": int(rng.integers(1 << 30)),
        },
        xgb.DMatrix(X, y, feature_types=types, enable_categorical=True),
        20,
    )
    path = tmp_path / f"cat.{fmt}"
    booster.save_model(path)
    forest = hepinfer.Forest.load(path)
    T = X[:600].copy()
    odd = [-0.5, -1.0, -3.0, -0.0, 2.7, 39.99, 40.0, 100.0, 2.0**24, 2.0**24 + 4, 1e30, -1e30, np.nan]
    T[:100, 1] = rng.choice(odd, 100)
    T[100:200, 2] = rng.choice([-0.5, -1.0, 2.5, 4.999, 5.0, 7.0, np.nan], 100)
    d = xgb.DMatrix(T, feature_types=types, enable_categorical=True)
    np.testing.assert_array_equal(
        forest.predict(T, output="margin").astype(np.float32), booster.predict(d, output_margin=True)
    )
    np.testing.assert_array_equal(forest.predict_leaf(T), booster.predict(d, pred_leaf=True))
    np.testing.assert_allclose(forest.predict(T), booster.predict(d), rtol=2e-6, atol=1e-7)
    one = np.array([forest.predict_one(row) for row in T[:120]])
    np.testing.assert_array_equal(one, forest.predict(T[:120]))


def test_categorical_from_pandas(rng):
    """A model trained on a pandas categorical column takes the same DataFrame (its codes)."""
    pd = pytest.importorskip("pandas")
    n = 2000
    df = pd.DataFrame(
        {"a": rng.normal(size=n), "flavour": pd.Categorical(rng.choice(["b", "c", "light", "tau"], n))}
    )
    y = ((df["a"] > 0) ^ df["flavour"].isin(["b", "tau"])).astype(int)
    booster = xgb.train(
        {"max_depth": 3, "tree_method": "hist", "objective": "binary:logistic", "nthread": 1},
        xgb.DMatrix(df, y, enable_categorical=True),
        10,
    )
    forest = hepinfer.Forest.load(booster)
    test = df.iloc[:300]
    np.testing.assert_allclose(
        forest.predict(test),
        booster.predict(xgb.DMatrix(test, enable_categorical=True)),
        rtol=2e-6,
        atol=1e-7,
    )


def test_pickle_round_trip(rng, tmp_path):
    """Forests pickle as their model file's bytes (for multiprocessing and Dask workers)."""
    import pickle

    booster = _train("multi:softprob", rng, depth=4, n_trees=5)
    X = _test_rows(booster, rng, 8)
    path = tmp_path / "m.json"
    booster.save_model(path)
    for forest in (
        hepinfer.Forest.load(path),
        hepinfer.Forest.load(booster),
        hepinfer.Forest.load(path.read_bytes()),
    ):
        again = pickle.loads(pickle.dumps(forest))
        np.testing.assert_array_equal(again.predict(X), forest.predict(X))
        assert again.feature_names == forest.feature_names
    forest = hepinfer.Forest.load(path)
    path.write_text(path.read_text() + " ")  # the file changes after loading
    with pytest.raises(TypeError, match="changed"):
        pickle.dumps(forest)


@pytest.mark.parametrize("n_trees", [16, 37, 100])
def test_single_row_path_matches_xgboost(n_trees, rng):
    """predict_one walks groups of 16 trees from the tree-interleaved copy of the nodes (then 8,
    then 1): every row, NaN and values on split thresholds included, gives xgboost's float32
    margin bit for bit, and the batch path's probability."""
    booster = _train("binary:logistic", rng, depth=5, n_trees=n_trees)
    forest = hepinfer.Forest.load(booster)
    X = _test_rows(booster, rng, 8, n=200)
    margin = booster.predict(xgb.DMatrix(X), output_margin=True)
    one_margin = np.array([forest.predict_one(row, output="margin") for row in X])
    np.testing.assert_array_equal(one_margin.astype(np.float32), margin)
    np.testing.assert_array_equal(np.array([forest.predict_one(row) for row in X]), forest.predict(X))


def test_option_names_come_from_one_table(tmp_path):
    """output= and tmva_cut_op= take exactly the documented spellings (the core's one table, shared
    with the C API); the undocumented aliases the bindings used to accept are refused, and the
    message lists what is accepted."""
    X = np.random.default_rng(0).normal(size=(50, 3))
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 2}, xgb.DMatrix(X, label=X[:, 0] > 0), 3
    )
    path = tmp_path / "m.json"
    booster.save_model(path)
    forest = hepinfer.Forest.load(str(path))
    for alias in ("value", "prediction", "raw", "Margin", ""):
        with pytest.raises(hepinfer.InputError, match=r'output must be one of "probability", "margin", not'):
            forest.predict(X, output=alias)
    for alias in ("file", "=>", "AUTO"):
        with pytest.raises(hepinfer.InputError, match=r'tmva_cut_op must be one of ">=", ">", "auto", not'):
            hepinfer.Forest.load(str(path), tmva_cut_op=alias)
    for op in (">=", ">", "auto"):
        np.testing.assert_array_equal(
            hepinfer.Forest.load(str(path), tmva_cut_op=op).predict(X), forest.predict(X)
        )
    np.testing.assert_array_equal(
        forest.predict(X, output="margin"),
        booster.predict(xgb.DMatrix(X), output_margin=True).astype(np.float64),
    )
