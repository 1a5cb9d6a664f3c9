"""hepinfer.tmva_export: XGBoost/LightGBM forests written as TMVA BDT (Grad) weight files,
read back with hepinfer's own TMVA loader: every tree must reach the same leaf (checked
through the leaf values, exactly) on fresh random float inputs, including values exactly
on and next to the split thresholds, and TMVA's value must equal 2 p - 1."""

from __future__ import annotations

import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

import hepinfer
from hepinfer import _core, tmva_export

TESTS = Path(__file__).resolve().parents[1]  # the tests/ folder
SHARED = TESTS.parent.parent / "shared" / "tmva"
xgb = pytest.importorskip("xgboost")
lgb = pytest.importorskip("lightgbm")


def _leaf_values(forest: hepinfer.Forest, X: np.ndarray) -> np.ndarray:
    """(rows, trees): the value of the leaf each row reaches in each tree."""
    ir = _core.forest_ir(forest._core)
    leaves = forest.predict_leaf(X)
    nodes, offsets = ir["nodes"], ir["tree_offsets"]
    out = np.empty(leaves.shape)
    for t in range(leaves.shape[1]):
        a, b = int(offsets[t]), int(offsets[t + 1])
        ids = nodes["leaf_id"][a:b].copy()
        pos = np.arange(b - a)
        ids = np.where(ids >= 0, ids, pos)
        is_leaf = nodes["kind"][a:b] == 0
        lookup = dict(zip(ids[is_leaf].tolist(), nodes["value"][a:b][is_leaf].tolist()))
        out[:, t] = [lookup[int(i)] for i in leaves[:, t]]
    return out


def _rows(forest: hepinfer.Forest, rng, n: int, nan: bool = False) -> np.ndarray:
    """float32 rows, many exactly on a split threshold or one float away from it."""
    ir = _core.forest_ir(forest._core)
    X = rng.normal(scale=1.5, size=(n, forest.n_features)).astype(np.float32)
    num = ir["nodes"]["kind"] == 1
    feats, thr = ir["nodes"]["feature"][num], ir["nodes"]["threshold"][num]
    k = rng.integers(0, len(thr), size=n * forest.n_features)
    r = rng.integers(0, n, size=len(k))
    t = thr[k].astype(np.float32)
    step = rng.integers(-1, 2, size=len(k))
    t = np.where(step > 0, np.nextafter(t, np.float32(np.inf)), t)
    t = np.where(step < 0, np.nextafter(t, np.float32(-np.inf)), t)
    X[r, feats[k]] = t
    if nan:
        X[rng.random(X.shape) < 0.1] = np.nan
    return X


def _xgb_forest(rng, objective="binary:logistic", nan_in_training=True, **extra):
    X = rng.normal(size=(1500, 6)).astype(np.float32)
    if nan_in_training:
        X[rng.random(X.shape) < 0.1] = np.nan
    z = np.nan_to_num(X[:, 0]) + np.nan_to_num(X[:, 1]) * np.nan_to_num(X[:, 2])
    y = np.digitize(z, [-0.5, 0.5]) if objective.startswith("multi") else (z > 0).astype(int)
    params = {
        "objective": objective,
        "max_depth": 5,
        "nthread": 1,
        "seed": int(rng.integers(1 << 30)),
        **extra,
    }
    return hepinfer.Forest.load(xgb.train(params, xgb.DMatrix(X, y), 30))


def _roundtrip_check(forest, exported, X, scale=0.5):
    orig = _leaf_values(forest, X)
    back = _leaf_values(exported, X)
    extra = back.shape[1] - orig.shape[1]  # a leading single-leaf tree holds the base score
    assert extra in (0, 1)
    np.testing.assert_array_equal(back[:, extra:], (orig * scale).astype(np.float32).astype(np.float64))
    base = float(_core.forest_ir(forest._core)["base_margin"][0])
    if extra:
        np.testing.assert_array_equal(back[:, 0], np.float32(base * scale))
    # the outputs: TMVA's Grad value = 2p - 1, its margin is half the logit
    margin = forest.predict(X, output="margin")
    np.testing.assert_allclose(exported.predict(X, output="margin"), margin * scale, rtol=1e-5, atol=1e-5)
    if forest.objective != "binary:logitraw":
        np.testing.assert_allclose((exported.predict(X) + 1) / 2, forest.predict(X), rtol=1e-6, atol=1e-6)


def test_xgboost_roundtrip_exact_decisions(tmp_path, rng):
    forest = _xgb_forest(rng, base_score=0.3)
    path = tmp_path / "BDTG.weights.xml"
    names = [f"x{j}" for j in range(6)]
    with pytest.warns(UserWarning, match="send missing values"):
        assert tmva_export.to_tmva_xml(forest, path, variables=names) == str(path)
    exported = hepinfer.Forest.load(path)
    assert exported.source_format == "tmva"
    assert exported.feature_names == names
    assert exported.objective == "tmva:Grad"
    X = _rows(forest, rng, 800)
    _roundtrip_check(forest, exported, X)
    # also exact with double rows that round to those floats, and in ROOT <= 6.16's convention
    _roundtrip_check(forest, exported, X.astype(np.float64))
    old = tmp_path / "old.weights.xml"
    tmva_export.to_tmva_xml(forest, old, on_missing="ignore", root_cut_op=">")
    _roundtrip_check(forest, hepinfer.Forest.load(old, tmva_cut_op=">"), X)
    _roundtrip_check(forest, hepinfer.Forest.load(old, tmva_cut_op="auto"), X)


def test_xgboost_logitraw_and_nan_on_default_left(tmp_path, rng):
    forest = _xgb_forest(rng, objective="binary:logitraw")
    ir = _core.forest_ir(forest._core)
    path = tmp_path / "m.weights.xml"
    tmva_export.to_tmva_xml(forest, path, on_missing="ignore")
    exported = hepinfer.Forest.load(path)
    X = _rows(forest, rng, 500, nan=True)
    # NaN is exact where it follows the `x < Cut` side: rows whose NaNs only meet default-left splits
    num = ir["nodes"]["kind"] == 1
    right_feats = set(ir["nodes"]["feature"][num & (ir["nodes"]["default_left"] == 0)].tolist())
    ok = ~np.isnan(X[:, sorted(right_feats)]).any(axis=1) if right_feats else np.ones(len(X), bool)
    assert ok.sum() > 20
    _roundtrip_check(forest, exported, X[ok])


def test_lightgbm_roundtrip(tmp_path, rng):
    X = rng.normal(size=(2000, 5))
    X[rng.random(X.shape) < 0.05] = np.nan
    X[rng.random(len(X)) < 0.3, 4] = np.nan  # missing-vs-rest splits: `x <= +inf`
    y = (np.nan_to_num(X[:, 0]) - np.nan_to_num(X[:, 1]) ** 2 + 2 * np.isnan(X[:, 4]) > 0).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        booster = lgb.train(
            {
                "objective": "binary",
                "verbose": -1,
                "num_leaves": 20,
                "num_threads": 1,
                "seed": int(rng.integers(1 << 30)),
            },
            lgb.Dataset(X, y),
            25,
        )
    forest = hepinfer.Forest.load(booster)
    assert (_core.forest_ir(forest._core)["nodes"]["threshold"] == np.inf).any()
    path = tmp_path / "lgb.weights.xml"
    tmva_export.to_tmva_xml(forest, path, on_missing="ignore")
    exported = hepinfer.Forest.load(path)
    # decisions are exact for float inputs (TMVA's Reader holds floats); leaves become Float_t
    Xf = _rows(forest, rng, 600)
    _roundtrip_check(forest, exported, Xf)


def test_structure_follows_real_tmva_files(tmp_path, rng):
    forest = _xgb_forest(rng, nan_in_training=False)
    text = tmva_export.tmva_xml(forest, on_missing="ignore")
    root = ET.fromstring(text)
    assert root.tag == "MethodSetup" and root.get("Method") == "BDT::BDT"
    order = [
        "GeneralInfo",
        "Options",
        "Variables",
        "Spectators",
        "Classes",
        "Transformations",
        "MVAPdfs",
        "Weights",
    ]
    assert [c.tag for c in root] == order
    options = {o.get("name"): o.text for o in root.find("Options")}
    assert options["BoostType"] == "Grad" and options["UseYesNoLeaf"] == "False"
    n_trees = int(root.find("Weights").get("NTrees"))
    assert options["NTrees"] == str(n_trees) == str(len(root.find("Weights")))
    assert n_trees - forest.n_trees in (0, 1)  # plus one single-leaf tree for a nonzero base score
    node = root.find("Weights/BinaryTree/Node")
    expected_attrs = {"pos", "depth", "NCoef", "IVar", "Cut", "cType", "res", "rms", "purity", "nType"}
    real = sorted(SHARED.glob("*.weights.xml")) if SHARED.is_dir() else []
    if real:
        ref = ET.parse(real[0]).getroot()
        assert [c.tag for c in ref] == order
        expected_attrs = set(ref.find("Weights/BinaryTree/Node").attrib)
        assert set(ref.find("Variables/Variable").attrib) == set(root.find("Variables/Variable").attrib)
        assert set(ref.find("Options")[0].attrib) == set(root.find("Options")[0].attrib)
    assert set(node.attrib) == expected_attrs


def test_refusals(tmp_path, rng):
    with pytest.raises(hepinfer.InputError, match="binary classifiers"):
        tmva_export.tmva_xml(_xgb_forest(rng, objective="multi:softprob", num_class=3))
    forest = _xgb_forest(rng)
    with pytest.raises(hepinfer.InputError, match="send missing values"):
        tmva_export.tmva_xml(forest, on_missing="raise")
    with pytest.raises(hepinfer.InputError, match="variables has 2 names"):
        tmva_export.tmva_xml(forest, variables=["a", "b"], on_missing="ignore")
    with pytest.raises(hepinfer.InputError, match="distinct"):
        tmva_export.tmva_xml(forest, variables=["a"] * 6, on_missing="ignore")
    with pytest.raises(hepinfer.InputError, match="on_missing"):
        tmva_export.tmva_xml(forest, on_missing="maybe")
    X = rng.normal(size=(500, 4))
    X[:, 2] = rng.integers(0, 10, size=500)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cat = lgb.train(
            {
                "objective": "binary",
                "verbose": -1,
                "num_threads": 1,
                "max_cat_to_onehot": 2,
                "min_data_per_group": 5,
                "cat_smooth": 1,
            },
            lgb.Dataset(X, (X[:, 2] % 3 == 0).astype(int), categorical_feature=[2]),
            5,
        )
    with pytest.raises(hepinfer.InputError, match="categorical"):
        tmva_export.tmva_xml(hepinfer.Forest.load(cat))
    tmva = hepinfer.Forest.load(TESTS / "data" / "tmva" / "grad.xml")
    with pytest.raises(hepinfer.InputError, match="binary classifiers"):
        tmva_export.tmva_xml(tmva)


# ------------------------------------------------ the independent TMVA evaluator (tests/forest)
def _independent(path, X: np.ndarray, cut_op: str = ">="):
    """(per-tree res, TMVA value) of every row, from tests/forest/tmva_reference.py: a re-implementation
    of TMVA::Reader's BDT evaluation written from TMVA's source, independent of hepinfer's loader."""
    from tests.forest.tmva_reference import TMVAReference

    ref = TMVAReference(str(path), cut_op)
    per_tree = np.empty((len(X), len(ref.trees)))
    values = np.empty(len(X))
    for r, row in enumerate(X):
        x = ref._transform(row)
        per_tree[r] = [ref._check_event(t, x) for _, t in ref.trees]
        values[r] = ref(row)
    return per_tree, values


def _independent_check(forest, path, X, cut_op=">=", scale=0.5):
    per_tree, values = _independent(path, X, cut_op)
    orig = _leaf_values(forest, X)
    extra = per_tree.shape[1] - orig.shape[1]
    assert extra in (0, 1)
    # every tree reaches the leaf the source model reaches (its value, halved, as Float_t)
    np.testing.assert_array_equal(per_tree[:, extra:], (orig * scale).astype(np.float32).astype(np.float64))
    # and TMVA's value is 2 p - 1
    np.testing.assert_allclose((values + 1) / 2, forest.predict(X), rtol=1e-6, atol=1e-6)


def test_export_read_by_independent_tmva_evaluator(tmp_path, rng):
    """XGBoost (both ROOT cut conventions) and LightGBM exports evaluated by test_tmva's TMVA
    re-implementation, not by hepinfer: same leaf in every tree, TMVA value = 2 p - 1."""
    forest = _xgb_forest(rng, base_score=0.3, nan_in_training=False)
    X = _rows(forest, rng, 400)
    for op in (">=", ">"):
        path = tmp_path / f"xgb{len(op)}.weights.xml"
        tmva_export.to_tmva_xml(forest, path, on_missing="ignore", root_cut_op=op)
        _independent_check(forest, path, X, op)
    Xl = rng.normal(size=(2000, 5))
    y = (Xl[:, 0] - Xl[:, 1] ** 2 > 0).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        booster = lgb.train(
            {
                "objective": "binary",
                "verbose": -1,
                "num_leaves": 20,
                "num_threads": 1,
                "seed": int(rng.integers(1 << 30)),
            },
            lgb.Dataset(Xl, y),
            20,
        )
    lforest = hepinfer.Forest.load(booster)
    path = tmp_path / "lgb.weights.xml"
    tmva_export.to_tmva_xml(lforest, path, on_missing="ignore")
    _independent_check(lforest, path, _rows(lforest, rng, 300).astype(np.float64))


def test_export_of_a_tree_5000_levels_deep(tmp_path, rng):
    """A 5000-level chain tree (XGBoost/LightGBM allow such depths) exports without recursion, and
    both hepinfer's loader and the independent evaluator read it back exactly."""
    from tests.deploy.deep_trees import deep_rows, deep_xgb_json

    raw, chain = deep_xgb_json(rng, 5000, 3)
    forest = hepinfer.Forest.load(raw, format="xgboost-json")
    path = tmp_path / "deep.weights.xml"
    tmva_export.to_tmva_xml(forest, path, on_missing="ignore")
    assert path.stat().st_size < 20_000_000  # indentation does not grow with the depth
    X = deep_rows(rng, chain, 3, 120)
    X = X[~np.isnan(X).any(axis=1)].astype(np.float32)  # NaN may take the other side in TMVA
    exported = hepinfer.Forest.load(path)
    _roundtrip_check(forest, exported, X)
    _independent_check(forest, path, X)
    assert len(np.unique(_leaf_values(forest, X)[:, -1])) > 50


def test_variable_names_are_escaped_or_refused(tmp_path, rng):
    """Markup, quotes, TAB/CR/LF and non-ASCII in names survive (as entities / character references);
    characters XML 1.0 cannot hold at all (NUL, other C0 controls, U+FFFE) are refused, naming the
    variable; a hostile source file name cannot break the file."""
    names = ['a"b', "x<y>&z", "cr\rlf\ntab\t", "caf\u00e9", "  spaced  ", "q'uote"]
    src = tmp_path / 'evil\x01\n"<name>.json'
    forest_file = hepinfer.Forest.load(_xgb_source(src, rng))
    path = tmp_path / "names.weights.xml"
    tmva_export.to_tmva_xml(forest_file, path, variables=names, on_missing="ignore")
    root = ET.parse(path).getroot()  # well-formed XML 1.0
    assert [v.get("Expression") for v in root.find("Variables")] == names
    assert "evil" in root.find("GeneralInfo/Info[@name='Creator']").get("value")
    exported = hepinfer.Forest.load(path)
    assert exported.feature_names == names
    X = _rows(forest_file, rng, 200)
    _roundtrip_check(forest_file, exported, X)
    _independent_check(forest_file, path, X)
    for bad, char in (("nul\x00", "\x00"), ("bell\x07", "\x07"), ("nonchar\ufffe", "\ufffe")):
        with pytest.raises(hepinfer.InputError, match=r"variable 2 \(.*contains the character") as e:
            tmva_export.tmva_xml(forest_file, variables=names[:2] + [bad] + names[3:], on_missing="ignore")
        assert repr(char) in str(e.value)


def _xgb_source(path, rng):
    X = rng.normal(size=(800, 6)).astype(np.float32)
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 3, "nthread": 1},
        xgb.DMatrix(X, (X[:, 0] + X[:, 1] > 0).astype(int)),
        5,
    )
    booster.save_model(str(path))
    return path


def test_split_threshold_rule_is_the_engines_and_exact():
    """The one split-threshold rule (hepinfer._core.split_threshold, used by the engines, codegen and
    the TMVA export): for every float32 x near t, (x OP t in double) == (x < c), with c a float32."""
    rng = np.random.default_rng(3)
    ts = np.concatenate(
        [
            rng.normal(size=300) * 10.0 ** rng.integers(-30, 30, 300),
            rng.normal(size=100).astype(np.float32).astype(np.float64),  # exactly on a float32
            [0.0, -0.0, 1e-45, -1e-45, 3.4e38, -3.4e38, 1e300, -1e300, np.inf, -np.inf],
        ]
    )
    with np.errstate(over="ignore"):  # 1e300 as float32 is inf, on purpose
        for t in ts:
            for op in (0, 1):
                _check_split_threshold(float(t), op)


def _check_split_threshold(t: float, op: int) -> None:
    from hepinfer import _core

    c = _core.split_threshold(t, op, True)
    assert c == np.float32(c) or np.isinf(c)
    f = np.float32(t) if np.isfinite(np.float32(t)) else np.float32(np.sign(t) * 3.4e38)
    near = [
        np.nextafter(np.nextafter(f, np.float32(-np.inf)), np.float32(-np.inf)),
        np.nextafter(f, np.float32(-np.inf)),
        f,
    ]
    for _ in range(3):
        near.append(np.nextafter(near[-1], np.float32(np.inf)))
    for x in near:
        want = float(x) < t if op == 0 else float(x) <= t
        assert (np.float32(x) < np.float32(c)) == want, (t, op, x, c)
    d = _core.split_threshold(t, op, False)
    if np.isfinite(t):
        for x in (t, np.nextafter(t, np.inf), np.nextafter(t, -np.inf)):
            assert (x < d) == (x < t if op == 0 else x <= t), (t, op, x, d)
