"""hepinfer's LightGBM text-model loader against lightgbm.Booster.predict.

Every test trains a small model with the installed lightgbm on fresh random
data (the seed is printed, and shown by pytest on failure) and checks that
hepinfer reproduces LightGBM's margins (raw_score=True), outputs and leaf
indices (pred_leaf=True), including NaN, zeros, values exactly on the split
thresholds, and awkward categorical values.
"""

import os
import re
import warnings

import numpy as np
import pytest

lgb = pytest.importorskip("lightgbm")
import hepinfer  # noqa: E402

KZERO = float(np.float32(1e-35))  # LightGBM's kZeroThreshold (1e-35f widened to double)
MARGIN_RTOL = 1e-12
PROB_RTOL = 1e-9


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def rng(request):
    seed = int.from_bytes(os.urandom(4), "little")
    print(f"\n[{request.node.name}] random seed = {seed}")
    return np.random.default_rng(seed)


def _train(params, X, y, rounds, **dataset_kw):
    p = {"verbose": -1, "num_leaves": 15, "min_data_in_leaf": 5, "num_threads": 1, "seed": 1}
    p.update(params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lgb.train(p, lgb.Dataset(X, y, **dataset_kw), rounds)


def _numeric_thresholds(booster):
    """{feature: [thresholds]} of the numerical splits, parsed from the model text."""
    out = {}
    text = booster.model_to_string()
    for block in text.split("\nTree=")[1:]:
        sf = re.search(r"\nsplit_feature=(.*)\n", block)
        th = re.search(r"\nthreshold=(.*)\n", block)
        dt = re.search(r"\ndecision_type=(.*)\n", block)
        if not sf:
            continue
        for f, t, d in zip(sf.group(1).split(), th.group(1).split(), dt.group(1).split()):
            if int(d) & 1 == 0:
                out.setdefault(int(f), []).append(float(t))
    return out


SPECIALS = [
    np.nan,
    0.0,
    -0.0,
    KZERO,
    -KZERO,
    1e-36,
    -1e-36,
    1e-35,
    -1e-35,
    np.nextafter(KZERO, 1.0),
    np.nextafter(-KZERO, -1.0),
    1e300,
    -1e300,
    np.inf,
    -np.inf,
]


def _probe_rows(rng, X, booster, n=300, cat_cols=()):
    """Training rows, plus rows sprinkled with NaN/zero/tiny/huge values and with
    values exactly on (and one ulp either side of) the model's thresholds."""
    th = _numeric_thresholds(booster)
    base = X[rng.integers(0, len(X), n)].astype(np.float64).copy()
    for r in base:
        for j in range(X.shape[1]):
            if j in cat_cols:
                continue
            u = rng.random()
            if u < 0.15:
                r[j] = SPECIALS[rng.integers(len(SPECIALS))]
            elif u < 0.5 and j in th:
                t = th[j][rng.integers(len(th[j]))]
                r[j] = (t, np.nextafter(t, np.inf), np.nextafter(t, -np.inf))[rng.integers(3)]
    return np.vstack([X[:100].astype(np.float64), base])


def _load(booster, how, tmp_path):
    if how == "booster":
        return hepinfer.Forest.load(booster)
    path = tmp_path / "model.txt"
    booster.save_model(str(path))
    return hepinfer.Forest.load(str(path))


def _f32(X):
    with np.errstate(over="ignore"):  # 1e300 -> inf, deliberately
        return X.astype(np.float32)


def _check(forest, booster, X, check_prob=True):
    n = X.shape[0]
    ref_margin = booster.predict(X, raw_score=True)
    got_margin = forest.predict(X, output="margin")
    assert got_margin.shape == ref_margin.shape
    np.testing.assert_allclose(got_margin, ref_margin, rtol=MARGIN_RTOL, atol=1e-13)
    if check_prob:
        ref = booster.predict(X)
        got = forest.predict(X, output="probability")
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref, rtol=PROB_RTOL, atol=1e-15)
    ref_leaf = booster.predict(X, pred_leaf=True).reshape(n, -1)
    got_leaf = forest.predict_leaf(X)
    assert got_leaf.dtype == np.int32
    assert got_leaf.shape == ref_leaf.shape
    np.testing.assert_array_equal(got_leaf, ref_leaf)


def _data(rng, n=1200, n_features=6, nan_frac=0.1):
    X = rng.normal(size=(n, n_features))
    X[:, -1] = rng.integers(0, 4, n)  # a discrete column with many exact zeros
    Xn = X.copy()
    if nan_frac:
        Xn[rng.random(X.shape) < nan_frac] = np.nan
    score = X[:, 0] + X[:, 1] * X[:, 2] + 0.3 * rng.normal(size=n)
    return X, Xn, score


# --------------------------------------------------------------------------- numerical models

OBJECTIVES = {
    "binary": ({"objective": "binary"}, lambda s: (s > 0).astype(int), 2),
    "regression": ({"objective": "regression"}, lambda s: s * 3 + 1, 1),
    "regression_l1": ({"objective": "regression_l1"}, lambda s: s * 3 + 1, 1),
    "xentropy": ({"objective": "cross_entropy"}, lambda s: 1 / (1 + np.exp(-s)), 1),
    "multiclass": (
        {"objective": "multiclass", "num_class": 4},
        lambda s: np.digitize(s, [-0.7, 0.0, 0.7]),
        4,
    ),
    "multiclassova": (
        {"objective": "multiclassova", "num_class": 3},
        lambda s: np.digitize(s, [-0.5, 0.5]),
        3,
    ),
}

MISSING = {
    "nan_type": ({}, True),  # missing type NaN where data has NaN
    "zero_as_missing": ({"zero_as_missing": True}, True),  # missing type Zero
    "use_missing_false": ({"use_missing": False}, True),  # missing type None, NaN -> 0
    "no_nan_in_training": ({}, False),  # missing type None
}


@pytest.mark.parametrize("how", ["file", "booster"])
@pytest.mark.parametrize("missing", list(MISSING))
@pytest.mark.parametrize("objective", list(OBJECTIVES))
def test_numerical_models_match(rng, tmp_path, objective, missing, how):
    params, make_y, n_classes = OBJECTIVES[objective]
    mparams, with_nan = MISSING[missing]
    X, Xn, score = _data(rng)
    Xtrain = Xn if with_nan else X
    booster = _train({**params, **mparams}, Xtrain, make_y(score), 12)
    forest = _load(booster, how, tmp_path)
    assert forest.n_features == X.shape[1]
    assert list(forest.feature_names) == booster.feature_name()
    assert forest.n_classes == n_classes
    Xt = _probe_rows(rng, Xn, booster)
    _check(forest, booster, Xt)
    # float32 input: LightGBM widens float32 to double exactly
    _check(forest, booster, _f32(Xt))


def test_many_leaves_and_constant_first_tree(rng, tmp_path):
    X, Xn, score = _data(rng, n=3000)
    booster = _train({"objective": "regression", "num_leaves": 255, "min_data_in_leaf": 1}, Xn, score, 5)
    forest = _load(booster, "file", tmp_path)
    _check(forest, booster, _probe_rows(rng, Xn, booster))
    # every tree a single leaf: boost_from_average is baked into the first tree
    booster = _train({"objective": "regression", "min_data_in_leaf": 100000}, X, score + 5.0, 3)
    forest = _load(booster, "file", tmp_path)
    _check(forest, booster, X[:50])
    np.testing.assert_array_equal(forest.predict_leaf(X[:5]), np.zeros((5, booster.num_trees()), np.int32))


def test_random_forest_average_output(rng, tmp_path):
    X, Xn, score = _data(rng)
    rounds = 8
    booster = _train(
        {"objective": "binary", "boosting": "rf", "bagging_fraction": 0.6, "bagging_freq": 1},
        Xn,
        (score > 0).astype(int),
        rounds,
    )
    forest = _load(booster, "file", tmp_path)
    Xt = _probe_rows(rng, Xn, booster)
    # LightGBM averages the trees before the sigmoid; raw_score=True is the plain sum.
    np.testing.assert_allclose(forest.predict(Xt), booster.predict(Xt), rtol=PROB_RTOL, atol=1e-15)
    np.testing.assert_array_equal(forest.predict_leaf(Xt), booster.predict(Xt, pred_leaf=True))
    # the margin is LightGBM's raw score: the plain sum
    np.testing.assert_allclose(
        forest.predict(Xt, output="margin"), booster.predict(Xt, raw_score=True), rtol=MARGIN_RTOL, atol=1e-13
    )
    np.testing.assert_allclose(
        [forest.predict_one(row) for row in Xt[:50]], booster.predict(Xt[:50]), rtol=PROB_RTOL, atol=1e-15
    )


# --------------------------------------------------------------------------- categorical

CAT_VALUES = np.array(
    [
        np.nan,
        -1.0,
        -0.5,
        -0.0,
        0.0,
        0.3,
        0.999,
        1.0,
        1.5,
        2.7,
        3.0,
        31.0,
        31.9,
        32.0,
        39.0,
        40.0,
        63.0,
        64.0,
        1000.0,
        2.0**31 - 1,
        2.0**31,
        1e10,
        -1e10,
        -(2.0**31),
        np.inf,
        -np.inf,
    ]
)


@pytest.mark.parametrize("max_cat_to_onehot", [4, 64])
@pytest.mark.parametrize("objective", ["binary", "multiclass"])
def test_categorical_feature(rng, tmp_path, max_cat_to_onehot, objective):
    n = 1500
    X = rng.normal(size=(n, 5))
    X[:, 3] = rng.integers(0, 7, n)
    X[:, 4] = rng.integers(0, 40, n)
    hit = np.isin(X[:, 4], [1, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37]) ^ (X[:, 3] == 2)
    X[rng.random(n) < 0.05, 4] = np.nan
    if objective == "binary":
        params, y = {"objective": "binary"}, (hit | (X[:, 0] > 1)).astype(int)
    else:
        params, y = {"objective": "multiclass", "num_class": 3}, hit.astype(int) + (X[:, 0] > 0.5)
    booster = _train(
        {**params, "min_data_per_group": 5, "cat_smooth": 1, "max_cat_to_onehot": max_cat_to_onehot},
        X,
        y,
        12,
        categorical_feature=[3, 4],
    )
    assert "cat_threshold=" in booster.model_to_string()
    forest = _load(booster, "file", tmp_path)
    Xt = _probe_rows(rng, X, booster, cat_cols=(3, 4))
    # NaN, negative, fractional (truncated toward zero), beyond-bitset and huge categories
    extra = np.repeat(Xt[:1], len(CAT_VALUES) * 2, axis=0)
    extra[:, 4] = np.tile(CAT_VALUES, 2)
    extra[:, 3] = np.roll(np.tile(CAT_VALUES, 2), 5)
    Xt = np.vstack([Xt, extra])
    _check(forest, booster, Xt)
    _check(forest, booster, _f32(Xt))


def test_pandas_category_columns(rng, tmp_path):
    pd = pytest.importorskip("pandas")
    n = 1200
    df = pd.DataFrame(
        {
            "a": rng.normal(size=n),
            "b": rng.normal(size=n),
            "c": pd.Categorical(rng.choice(list("pqrstuvwxyz"), n), categories=list("pqrstuvwxyz")),
            "d": pd.Categorical(rng.choice(["u", "v", "w", None], n), categories=["u", "v", "w"]),
        }
    )
    y = ((df["c"].isin(list("pqrs")) & (df["a"] > -0.5)) | (df["d"] == "v")).astype(int)
    booster = _train({"objective": "binary", "min_data_per_group": 5, "cat_smooth": 1}, df, y, 12)
    forest = _load(booster, "file", tmp_path)
    assert list(forest.feature_names) == ["a", "b", "c", "d"]
    test = df.iloc[:200].copy()
    test.loc[test.index[:20], "a"] = np.nan
    np.testing.assert_allclose(
        forest.predict(test, output="margin"),
        booster.predict(test, raw_score=True),
        rtol=MARGIN_RTOL,
        atol=1e-13,
    )
    np.testing.assert_allclose(forest.predict(test), booster.predict(test), rtol=PROB_RTOL, atol=1e-15)
    np.testing.assert_array_equal(forest.predict_leaf(test), booster.predict(test, pred_leaf=True))


# --------------------------------------------------------------------------- API shapes and inputs


@pytest.mark.parametrize("objective", ["binary", "regression", "multiclass"])
def test_shapes_single_row_empty_batch_dict_threads(rng, tmp_path, objective):
    params, make_y, n_classes = OBJECTIVES[objective]
    X, Xn, score = _data(rng, n=800)
    booster = _train(params, Xn, make_y(score), 8)
    forest = _load(booster, "file", tmp_path)
    nf = X.shape[1]
    multi = n_classes > 2

    one = forest.predict(Xn[:1])
    assert one.shape == ((1, n_classes) if multi else (1,))
    np.testing.assert_allclose(one, booster.predict(Xn[:1]), rtol=PROB_RTOL)

    for dtype in (np.float32, np.float64):
        empty = forest.predict(np.empty((0, nf), dtype=dtype))
        assert empty.shape == ((0, n_classes) if multi else (0,))
        assert forest.predict(np.empty((0, nf), dtype=dtype), output="margin").shape == empty.shape
        assert forest.predict_leaf(np.empty((0, nf), dtype=dtype)).shape == (0, booster.num_trees())

    Xt = _probe_rows(rng, Xn, booster, n=500)
    as_dict = {name: Xt[:, j] for j, name in enumerate(booster.feature_name())}
    np.testing.assert_allclose(
        forest.predict(as_dict, output="margin"),
        booster.predict(Xt, raw_score=True),
        rtol=MARGIN_RTOL,
        atol=1e-13,
    )

    a = forest.predict(Xt, n_threads=1)
    b = forest.predict(Xt, n_threads=4)
    c = forest.predict(Xt)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)

    # non-contiguous input
    wide = np.repeat(Xt, 2, axis=1)[:, ::2]
    np.testing.assert_array_equal(forest.predict(wide, output="margin"), forest.predict(Xt, output="margin"))


def test_model_string_from_older_lightgbm_layout(rng, tmp_path):
    """A LightGBM 3.x-style file (version=v3, no is_linear lines) loads and predicts the same."""
    X, Xn, score = _data(rng)
    booster = _train({"objective": "binary"}, Xn, (score > 0).astype(int), 6)
    text = booster.model_to_string()
    text = text.replace("version=v4", "version=v3")
    text = "\n".join(line for line in text.split("\n") if not line.startswith("is_linear="))
    text = "\n".join(line for line in text.split("\n") if not line.startswith("tree_sizes="))
    path = tmp_path / "v3.txt"
    path.write_text(text)
    forest = hepinfer.Forest.load(str(path))
    _check(forest, booster, _probe_rows(rng, Xn, booster))


# --------------------------------------------------------------------------- other output transforms


@pytest.mark.parametrize("case", ["sigmoid2", "ova_sigmoid05", "reg_sqrt", "xentlambda", "poisson"])
def test_output_transforms_match(rng, tmp_path, case):
    """Scaled sigmoids, reg_sqrt, cross_entropy_lambda and log links: probabilities match LightGBM."""
    X, Xn, score = _data(rng)
    if case == "sigmoid2":
        booster = _train({"objective": "binary", "sigmoid": 2.0}, X, (score > 0).astype(int), 6)
    elif case == "ova_sigmoid05":
        y = np.digitize(score, [-1.0, 0.0, 1.0])
        booster = _train({"objective": "multiclassova", "num_class": 4, "sigmoid": 0.5}, X, y, 4)
    elif case == "reg_sqrt":
        booster = _train({"objective": "regression", "reg_sqrt": True}, X, score * np.abs(score) * 10, 6)
    elif case == "xentlambda":
        booster = _train({"objective": "cross_entropy_lambda"}, X, 1 / (1 + np.exp(-score)), 6)
    else:
        booster = _train({"objective": "poisson"}, X, rng.poisson(np.exp(score / 3)), 6)
    path = tmp_path / "m.txt"
    booster.save_model(str(path))
    forest = hepinfer.Forest.load(str(path))
    _check(forest, booster, _probe_rows(rng, X, booster))


def test_linear_trees_are_rejected(rng, tmp_path):
    X, Xn, score = _data(rng, nan_frac=0.0)
    booster = _train({"objective": "regression", "linear_tree": True}, X, score, 6)
    path = tmp_path / "m.txt"
    booster.save_model(str(path))
    with pytest.raises(hepinfer.ModelFormatError, match="m.txt"):
        hepinfer.Forest.load(str(path))


# --------------------------------------------------------------------------- malformed files


@pytest.fixture
def good_model_text(rng):
    X, Xn, score = _data(rng, n=600)
    X[:, 4] = rng.integers(0, 10, len(X))
    y = ((score > 0) ^ np.isin(X[:, 4], [2, 3, 7])).astype(int)
    booster = _train(
        {"objective": "binary", "min_data_per_group": 5, "cat_smooth": 1}, X, y, 4, categorical_feature=[4]
    )
    return booster.model_to_string()


def _expect_error(tmp_path, text, name="bad.txt"):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(hepinfer.ModelFormatError) as info:
        hepinfer.Forest.load(str(path))
    assert isinstance(info.value, ValueError)
    return str(info.value)


def _sub_tree_line(text, tree, key, fn):
    """Rewrite the `key=` line of Tree=`tree` with fn(values list) -> values list."""
    head, sep, rest = text.partition(f"\nTree={tree}\n")
    lines = rest.split("\n")
    for i, line in enumerate(lines):
        if line.startswith(key + "="):
            lines[i] = key + "=" + " ".join(fn(line[len(key) + 1 :].split(" ")))
            break
        if line == "":
            raise AssertionError(f"{key} not in Tree={tree}")
    return head + sep + "\n".join(lines)


def test_truncated_files_rejected(rng, tmp_path, good_model_text):
    text = good_model_text
    end = text.index("end of trees")
    cuts = sorted(
        set(
            [0, 1, 3, 10, text.index("\nTree=0"), end - 1, end + 5]
            + [int(c) for c in rng.integers(1, end, 25)]
        )
    )
    for cut in cuts:
        msg = _expect_error(tmp_path, text[:cut], name=f"trunc_{cut}.txt")
        assert f"trunc_{cut}.txt" in msg


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "\n\n",
        "hello world\n",
        "tree\n",
        "tree\nversion=v4\n",
        "\x00\x01\x02garbage",
        '{"learner": {}}',
        "tree\nversion=v99\nnum_class=1\n",
    ],
)
def test_garbage_rejected(tmp_path, garbage):
    _expect_error(tmp_path, garbage)


@pytest.mark.parametrize(
    "mutation",
    [
        "leaf_value_short",
        "leaf_value_long",
        "threshold_short",
        "split_feature_out_of_range",
        "left_child_out_of_range",
        "right_child_out_of_range",
        "child_cycle",
        "num_leaves_absurd",
        "num_leaves_negative",
        "leaf_value_not_number",
        "bad_decision_type",
        "cat_boundaries_wrong",
        "cat_threshold_short",
        "missing_num_class",
        "missing_feature_names",
        "feature_names_count",
        "tree_index_wrong",
        "unknown_objective",
        "is_linear",
        "num_cat_mismatch",
    ],
)
def test_corrupted_models_rejected(tmp_path, good_model_text, mutation):
    t = good_model_text
    if mutation == "leaf_value_short":
        t = _sub_tree_line(t, 1, "leaf_value", lambda v: v[:-1])
    elif mutation == "leaf_value_long":
        t = _sub_tree_line(t, 1, "leaf_value", lambda v: v + ["0.5"])
    elif mutation == "threshold_short":
        t = _sub_tree_line(t, 0, "threshold", lambda v: v[:-1])
    elif mutation == "split_feature_out_of_range":
        t = _sub_tree_line(t, 0, "split_feature", lambda v: ["999"] + v[1:])
    elif mutation == "left_child_out_of_range":
        t = _sub_tree_line(t, 0, "left_child", lambda v: ["-9999"] + v[1:])
    elif mutation == "right_child_out_of_range":
        t = _sub_tree_line(t, 0, "right_child", lambda v: v[:-1] + ["4242"])
    elif mutation == "child_cycle":
        t = _sub_tree_line(t, 0, "left_child", lambda v: v[:-1] + ["0"])
    elif mutation == "num_leaves_absurd":
        t = _sub_tree_line(t, 0, "num_leaves", lambda v: ["2000000000000"])
    elif mutation == "num_leaves_negative":
        t = _sub_tree_line(t, 0, "num_leaves", lambda v: ["-3"])
    elif mutation == "leaf_value_not_number":
        t = _sub_tree_line(t, 0, "leaf_value", lambda v: ["abc"] + v[1:])
    elif mutation == "bad_decision_type":
        t = _sub_tree_line(t, 0, "decision_type", lambda v: ["14"] + v[1:])
    elif mutation == "cat_boundaries_wrong":
        if "\ncat_boundaries=" not in t:
            pytest.skip("model without categorical splits")
        t = re.sub(r"\ncat_boundaries=(\S+)", "\ncat_boundaries=7", t, count=1)
    elif mutation == "cat_threshold_short":
        if "\ncat_threshold=" not in t:
            pytest.skip("model without categorical splits")
        t = re.sub(r"\ncat_threshold=\S+ ?", "\ncat_threshold=", t, count=1)
    elif mutation == "missing_num_class":
        t = re.sub(r"\nnum_class=\d+", "", t, count=1)
    elif mutation == "missing_feature_names":
        t = re.sub(r"\nfeature_names=[^\n]*", "", t, count=1)
    elif mutation == "feature_names_count":
        t = re.sub(r"\nfeature_names=([^\n]*)", r"\nfeature_names=\1 extra_name", t, count=1)
    elif mutation == "tree_index_wrong":
        t = t.replace("\nTree=1\n", "\nTree=7\n", 1)
    elif mutation == "unknown_objective":
        t = re.sub(r"\nobjective=[^\n]*", "\nobjective=frobnicate", t, count=1)
    elif mutation == "is_linear":
        t = _sub_tree_line(t, 0, "is_linear", lambda v: ["1"])
    elif mutation == "num_cat_mismatch":
        t = _sub_tree_line(t, 0, "num_cat", lambda v: [str(int(v[0]) + 3)])
    assert t != good_model_text
    msg = _expect_error(tmp_path, t)
    assert "bad.txt" in msg


def test_error_names_tree_and_key(tmp_path, good_model_text):
    t = _sub_tree_line(good_model_text, 2, "leaf_value", lambda v: v[:-1])
    msg = _expect_error(tmp_path, t)
    assert "Tree=2" in msg and "leaf_value" in msg


def test_single_leaf_trees_beside_categorical_trees(rng):
    """A class absent from training gets single-leaf trees; when every other tree has a
    categorical split, those leaves are the only trees in the complete layout (depth 0)."""
    X, Xn, score = _data(rng, n=800)
    X[:, 4] = rng.integers(0, 10, len(X))
    y = ((score > 0) ^ np.isin(X[:, 4], [2, 3, 7])).astype(int)  # classes 0 and 1 only
    booster = _train(
        {
            "objective": "multiclass",
            "num_class": 3,
            "min_data_per_group": 5,
            "cat_smooth": 1,
            "max_cat_to_onehot": 1,
        },
        X,
        y,
        6,
        categorical_feature=[4],
    )
    forest = hepinfer.Forest.load(booster)
    Xt = _probe_rows(rng, X, booster)
    with np.errstate(over="ignore"):
        X32 = Xt.astype(np.float32)  # some probe values overflow to inf, as for any float32 input
    for Xd in (X32, Xt):
        np.testing.assert_allclose(forest.predict(Xd), booster.predict(Xd), rtol=PROB_RTOL, atol=1e-15)
