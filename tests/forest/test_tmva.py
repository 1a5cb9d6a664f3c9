"""TMVA BDT weight files: hepinfer must reproduce TMVA::Reader.

* The real weight files in ../shared/tmva (not ours to commit; skipped when
  absent) come with 2000 input rows and TMVA's own outputs.
* The hand-built files in tests/data/tmva exercise each node convention; their
  expected outputs come from `tmva_reference`, a small evaluator written
  directly from TMVA's source (DecisionTreeNode::GoesRight,
  DecisionTree::CheckEvent, MethodBDT::PrivateGetMvaValue, the variable
  transformations), independent of hepinfer's IR.
"""

import json
import math
import os
import zlib
from pathlib import Path

import numpy as np
import pytest

import hepinfer
from tests.forest.tmva_reference import TMVAReference

TESTS = Path(__file__).resolve().parents[1]  # the tests/ folder
DATA = TESTS / "data" / "tmva"


def _shared_dir():
    env = os.environ.get("HEPINFER_SHARED")
    if env:
        return Path(env) / "tmva"
    return TESTS.parent.parent / "shared" / "tmva"


SHARED = _shared_dir()
MANIFEST = SHARED / "manifest.json"
SHARED_ENTRIES = json.loads(MANIFEST.read_text()) if MANIFEST.is_file() else []
needs_shared = pytest.mark.skipif(not SHARED_ENTRIES, reason="shared TMVA reference data not available")

HAND_BUILT = sorted(p.name for p in DATA.glob("*.xml"))
OPS = (">=", ">")


def _rows_for(ref, rng):
    """random rows, rows exactly on each cut (untransformed files), and NaN rows"""
    n = ref.n
    rows = [rng.uniform(-6, 6, n) for _ in range(300)]
    rows += [rng.integers(-4, 5, n).astype(float) * 0.25 for _ in range(200)]
    if not ref.transforms:
        for feat, cut in ref.thresholds():
            if feat is None:
                continue
            for _ in range(4):
                r = rng.uniform(-6, 6, n)
                r[feat] = cut
                rows.append(r)
    for j in range(n):
        r = rng.uniform(-6, 6, n)
        r[j] = np.nan
        rows.append(r)
    rows.append(np.full(n, np.nan))
    return np.array(rows, dtype=np.float32)


# --------------------------------------------------------------------------------------
# real weight files with TMVA's outputs


def _load_csv(path):
    return np.loadtxt(path, delimiter=",", ndmin=2)


@needs_shared
@pytest.mark.parametrize("entry", SHARED_ENTRIES, ids=[e["name"] for e in SHARED_ENTRIES])
@pytest.mark.parametrize("which", ["own", "auto", "other"])
def test_shared_reference(entry, which):
    name = entry["name"]
    X = _load_csv(SHARED / f"{name}.inputs.csv")
    expected = _load_csv(SHARED / f"{name}.tmva.csv")[:, -1].copy()
    own = entry["cut_op"]
    if which == "own":
        op = own
    elif which == "auto":
        op = "auto"
    else:
        op = ">" if own == ">=" else ">="
        for k, v in entry["other_op_rows"].items():
            expected[int(k)] = v
    f = hepinfer.Forest.load(str(SHARED / f"{name}.weights.xml"), tmva_cut_op=op)
    assert f.n_features == entry["n_vars"] == X.shape[1]
    assert list(f.feature_names) == entry["variables"]
    assert f.n_trees == entry["n_trees"]
    got = np.asarray(f.predict(X))
    assert got.shape == (X.shape[0],)
    assert np.max(np.abs(got - expected)) <= 1e-6
    # float32 input gives the same (the inputs are float32-representable)
    got32 = np.asarray(f.predict(X.astype(np.float32)))
    assert np.array_equal(got32, got)
    # multi-threaded evaluation is bit-identical
    assert np.array_equal(np.asarray(f.predict(X, n_threads=4)), got)


@needs_shared
@pytest.mark.parametrize("entry", SHARED_ENTRIES, ids=[e["name"] for e in SHARED_ENTRIES])
def test_shared_nan_rows_do_not_crash(entry):
    f = hepinfer.Forest.load(str(SHARED / f"{entry['name']}.weights.xml"), tmva_cut_op="auto")
    X = np.full((3, f.n_features), np.nan)
    X[1, 0] = 1.0
    out = np.asarray(f.predict(X))
    assert out.shape == (3,)
    assert np.all(np.isfinite(out))


@needs_shared
@pytest.mark.parametrize("entry", SHARED_ENTRIES, ids=[e["name"] for e in SHARED_ENTRIES])
def test_shared_against_independent_evaluator(entry):
    """the independent evaluator agrees with TMVA on the first rows (guards the evaluator itself)"""
    name = entry["name"]
    X = _load_csv(SHARED / f"{name}.inputs.csv")[:40]
    expected = _load_csv(SHARED / f"{name}.tmva.csv")[:40, -1]
    ref = TMVAReference(SHARED / f"{name}.weights.xml", entry["cut_op"])
    got = np.array([ref(r) for r in X])
    assert np.max(np.abs(got - expected)) <= 1e-6


# --------------------------------------------------------------------------------------
# hand-built files


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("fname", HAND_BUILT)
def test_hand_built_against_reference(fname, op):
    path = DATA / fname
    ref = TMVAReference(path, op)
    f = hepinfer.Forest.load(str(path), tmva_cut_op=op)
    assert f.n_features == ref.n
    assert list(f.feature_names) == ref.vars
    assert f.n_trees == len(ref.trees)
    X = _rows_for(ref, np.random.default_rng(zlib.crc32((fname + op).encode())))
    expected = np.array([ref(r) for r in X.astype(np.float64)])
    got = np.asarray(f.predict(X))
    assert np.max(np.abs(got - expected)) <= 1e-6
    got64 = np.asarray(f.predict(X.astype(np.float64)))
    assert np.max(np.abs(got64 - expected)) <= 1e-6


def test_adaboost_yes_no_by_hand():
    # weights 0.6, 0.3, 0.1 (Float_t); tree 0: x>=0.5 right (cType 1), then y: cType 0;
    # tree 1 is a single leaf (+1); tree 2: z vs -1.25 with cType 0
    w = np.float32([0.6, 0.3, 0.1]).astype(np.float64)
    X = np.array(
        [
            [0.2, 0.0, 0.0],  # -1, +1, +1
            [0.5, 2.0, -1.25],  # on every cut
            [0.7, 1.0, -3.0],  # -1 (y<2, cType 0 -> right), +1, -1 (z<-1.25 -> right)
            [np.nan] * 3,
        ]
    )
    f_ge = hepinfer.Forest.load(str(DATA / "adaboost_yesno.xml"), tmva_cut_op=">=")
    f_gt = hepinfer.Forest.load(str(DATA / "adaboost_yesno.xml"), tmva_cut_op=">")
    f_auto = hepinfer.Forest.load(str(DATA / "adaboost_yesno.xml"), tmva_cut_op="auto")  # ROOT 6.24 -> >=

    def mva(y):
        return float(np.dot(w, y) / w.sum())

    # tree 0 inner node (cType 0): y >= 2 -> left (+1), y < 2 -> right (-1)
    exp_ge = [mva([-1, 1, 1]), mva([1, 1, 1]), mva([-1, 1, -1]), mva([-1, 1, -1])]
    # with ">": x=0.5 fails x>0.5 -> left (-1); z=-1.25 fails z>-1.25 -> cType 0 -> right (-1)
    exp_gt = [mva([-1, 1, 1]), mva([-1, 1, -1]), mva([-1, 1, -1]), mva([-1, 1, -1])]
    np.testing.assert_allclose(np.asarray(f_ge.predict(X)), exp_ge, atol=1e-12)
    np.testing.assert_allclose(np.asarray(f_gt.predict(X)), exp_gt, atol=1e-12)
    np.testing.assert_allclose(np.asarray(f_auto.predict(X)), exp_ge, atol=1e-12)
    # AdaBoost: the margin is the MVA value itself
    np.testing.assert_allclose(np.asarray(f_ge.predict(X, output="margin")), exp_ge, atol=1e-12)


def test_grad_by_hand():
    f = hepinfer.Forest.load(str(DATA / "grad.xml"), tmva_cut_op="auto")  # ROOT 6.18 -> >=
    # p=0 >= 0 -> right (0.375); q=5 >= 5 with cType 0 -> left; p=0 >= -2 -> right (-0.0625); + 0.03125
    s = 0.375 - 0.0625 + 0.03125
    X = np.array([[0.0, 5.0]])
    assert abs(float(np.asarray(f.predict(X))[0]) - (2.0 / (1.0 + math.exp(-2.0 * s)) - 1.0)) < 1e-12
    assert abs(float(np.asarray(f.predict(X, output="margin"))[0]) - s) < 1e-12


def test_fisher_is_strict():
    # tree 0: 2u - v + 0.5 > 1 goes right (+1); exactly 1 goes left (-1) under both ops
    for op in OPS:
        f = hepinfer.Forest.load(str(DATA / "fisher.xml"), tmva_cut_op=op)
        ref = TMVAReference(DATA / "fisher.xml", op)
        row = np.array([[0.25, 0.0]])  # 2*0.25 - 0 + 0.5 = 1.0 == Cut
        assert abs(float(np.asarray(f.predict(row))[0]) - ref(row[0])) <= 1e-12


def test_oldformat_purity_and_auto():
    # ROOT 5.34 -> ">" ; purity from nS/(nS+nB)
    f = hepinfer.Forest.load(str(DATA / "purity_oldformat.xml"), tmva_cut_op="auto")
    ref = TMVAReference(DATA / "purity_oldformat.xml", ">")
    X = np.array([[1.0, 0.25], [-3.5, 0.0], [2.0, 1.0]])
    np.testing.assert_allclose(np.asarray(f.predict(X)), [ref(r) for r in X], atol=1e-12)


# --------------------------------------------------------------------------------------
# malformed files


def _variant(tmp_path, text, name="bad.weights.xml"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


BASE = (DATA / "adaboost_yesno.xml").read_text() if (DATA / "adaboost_yesno.xml").is_file() else ""


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.9, 0.97])
def test_truncated(tmp_path, cut):
    path = _variant(tmp_path, BASE[: int(len(BASE) * cut)])
    with pytest.raises(hepinfer.ModelFormatError):
        hepinfer.Forest.load(path, tmva_cut_op=">=")


BAD_EDITS = {
    "missing_cut": ('IVar="0" Cut="0.5"', 'IVar="0"'),
    "missing_ntype": ('purity="0.9" nType="1"', 'purity="0.9"'),
    "missing_boostweight": ('boostWeight="0.3" ', ""),
    "ivar_out_of_range": ('IVar="2" Cut="-1.25"', 'IVar="3" Cut="-1.25"'),
    "ivar_negative": ('IVar="2" Cut="-1.25"', 'IVar="-1" Cut="-1.25"'),
    "cut_not_a_number": ('Cut="0.5"', 'Cut="abc"'),
    "ctype_bad": ('IVar="0" Cut="0.5" cType="1"', 'IVar="0" Cut="0.5" cType="x"'),
    "ntrees_mismatch": ('NTrees="3"', 'NTrees="4"'),
    "absurd_ntrees": ('NTrees="3"', 'NTrees="99999999999"'),
    "absurd_nvar": ('NVar="3"', 'NVar="1000000000"'),
    "nvar_mismatch": ('NVar="3"', 'NVar="2"'),
    "unknown_boost": (">AdaBoost<", ">SuperBoost<"),
    "multiclass": ('value="Classification"', 'value="Multiclass"'),
    "regression": ('value="Classification"', 'value="Regression"'),
    "bad_entity": ('value="hepinfer &amp; tests"', 'value="hepinfer &bogus; tests"'),
    "mismatched_tag": (
        '</BinaryTree>\n    <BinaryTree type="DecisionTree" boostWeight="0.3"',
        '</BinaryTre>\n    <BinaryTree type="DecisionTree" boostWeight="0.3"',
    ),
    "not_tmva": ('<MethodSetup Method="BDT::BDT">', '<MethodSetup Method="MLP::MLP">'),
    "bad_pos": (
        '<Node pos="r" depth="1" NCoef="0" IVar="-1" Cut="0.0" cType="1" res="-99.0" rms="0.0" purity="0.1"',
        '<Node pos="x" depth="1" NCoef="0" IVar="-1" Cut="0.0" cType="1" res="-99.0" rms="0.0" purity="0.1"',
    ),
}


@pytest.mark.parametrize("edit", sorted(BAD_EDITS))
def test_malformed_edits(tmp_path, edit):
    old, new = BAD_EDITS[edit]
    assert old in BASE, edit
    path = _variant(tmp_path, BASE.replace(old, new, 1))
    with pytest.raises(hepinfer.ModelFormatError):
        hepinfer.Forest.load(path, tmva_cut_op=">=")


def test_node_with_one_child(tmp_path):
    # drop the right leaf of tree 2's root
    leaf = '        <Node pos="r" depth="1" NCoef="0" IVar="-1" Cut="0.0" cType="1" res="-99.0" rms="0.0" purity="0.1" nType="-1"/>\n'
    assert leaf in BASE
    path = _variant(tmp_path, BASE.replace(leaf, ""))
    with pytest.raises(hepinfer.ModelFormatError, match="child"):
        hepinfer.Forest.load(path, tmva_cut_op=">=")


def test_intermediate_node_without_children(tmp_path):
    # a node with nType=0 and no children: TMVA would dereference a null child
    old = 'purity="0.9" nType="1"/>'
    path = _variant(tmp_path, BASE.replace(old, 'purity="0.9" nType="0"/>'))
    with pytest.raises(hepinfer.ModelFormatError):
        hepinfer.Forest.load(path, tmva_cut_op=">=")


def test_error_names_the_file(tmp_path):
    path = _variant(
        tmp_path, BASE.replace('IVar="2" Cut="-1.25"', 'IVar="7" Cut="-1.25"'), "named.weights.xml"
    )
    with pytest.raises(hepinfer.ModelFormatError) as info:
        hepinfer.Forest.load(path, tmva_cut_op=">=")
    msg = str(info.value)
    assert "named.weights.xml" in msg and "tree 2" in msg and "IVar" in msg
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "<",
        '<?xml version="1.0"?>',
        "<MethodSetup",
        '<MethodSetup Method="BDT::BDT">',
        "<MethodSetup Method='BDT::BDT'></MethodSetup>",
        "\x00\x01\x02 binary",
        '<MethodSetup Method="BDT::BDT"><![CDATA[ unterminated',
        '<MethodSetup Method="BDT::BDT"><!-- unterminated comment',
        "<a>" * 20000 + "</a>" * 20000,
        '<MethodSetup Method="BDT::BDT" Method="x"></MethodSetup>',
        '<MethodSetup Method="BDT::BDT">&#0;</MethodSetup>',
    ],
    ids=lambda t: "len%d_%08x" % (len(t), zlib.crc32(t.encode())),
)
def test_garbage(tmp_path, text):
    path = _variant(tmp_path, text)
    with pytest.raises(hepinfer.ModelFormatError):
        hepinfer.Forest.load(path, tmva_cut_op=">=")


def test_comments_cdata_and_entities_are_accepted(tmp_path):
    text = BASE.replace("<Weights", "<!-- a comment <Weights> inside -->\n  <Weights", 1)
    text = text.replace('Expression="x"', 'Expression="x&lt;&#65;&#x42;&gt;"', 1)
    text = text.replace("<MVAPdfs/>", "<MVAPdfs><![CDATA[ <not markup> ]]></MVAPdfs>", 1)
    f = hepinfer.Forest.load(_variant(tmp_path, text), tmva_cut_op=">=")
    assert f.feature_names[0] == "x<AB>"
    g = hepinfer.Forest.load(str(DATA / "adaboost_yesno.xml"), tmva_cut_op=">=")
    X = np.random.default_rng(1).uniform(-3, 3, (50, 3))
    assert np.array_equal(np.asarray(f.predict(X)), np.asarray(g.predict(X)))
