"""Malicious model files: absurd sizes, deep nesting, overflowing counts.

Every crafted file below is written in the test. Each must be rejected with
hepinfer.ModelFormatError (never MemoryError, never a crash, never a long allocation) or, for
the legitimate-but-extreme ones (a tree 20 000 levels deep, one categorical bitset named by
many nodes), load and give the right answer without recursion or memory blow-up.
Run also under AddressSanitizer by .ci/sanitize.
"""

from __future__ import annotations

import copy
import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from hepinfer import Forest, Model, ModelFormatError

# .ci/sanitize runs this file under AddressSanitizer (libasan preloaded): memory errors are what
# that run looks for; its quarantine and shadow pages change a process's peak memory, so the peak
# bounds below are checked in the ordinary run only
UNDER_ASAN = "libasan" in os.environ.get("LD_PRELOAD", "")

DATA = Path(__file__).resolve().parents[1] / "data"
DEEP = 10**6


def rejects(load, content, *fragments: str) -> str:
    with pytest.raises(ModelFormatError) as err:
        load(content)
    message = str(err.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


# ---------------------------------------------------------------- JSON / UBJSON nesting
@pytest.mark.parametrize("fmt", ["auto", "xgboost-json"])
def test_json_nesting_a_million_levels_deep(fmt):
    load = lambda b: Forest.load(b, format=fmt)
    rejects(load, b'{"learner":' * DEEP + b"1" + b"}" * DEEP, "nesting deeper than")
    rejects(load, b'{"learner":' + b"[" * DEEP + b"]" * DEEP + b"}", "nesting deeper than")
    rejects(load, b'{"learner":' + b"[{}," * DEEP, "nesting deeper than")  # unterminated as well


def test_ubjson_nesting_a_million_levels_deep():
    load = lambda b: Forest.load(b, format="xgboost-ubj")
    rejects(load, b"[" * DEEP, "nesting deeper than")
    rejects(load, b"{" + b"U\x01a{" * DEEP, "nesting deeper than")
    # typed containers of containers: [$[#U\x01 repeated
    rejects(load, b"[$[#U\x01" * DEEP, "nesting deeper than")


def _ubj_count(n: int) -> bytes:
    return b"L" + struct.pack(">q", n)


@pytest.mark.parametrize("count", [10**8, 10**11, 10**12 - 1, 2**62])
def test_ubjson_absurd_counts(count):
    load = lambda b: Forest.load(b, format="xgboost-ubj")
    # typed numeric array, string, untyped counted array and object, zero-size typed array
    rejects(load, b"{U\x01a[$D#" + _ubj_count(count) + b"\x00" * 64 + b"}")
    rejects(load, b"{U\x01aS" + _ubj_count(count) + b"abc}")
    rejects(load, b"{U\x01a[#" + _ubj_count(count) + b"ii}")
    rejects(load, b"{#" + _ubj_count(count) + b"U\x01ai\x01")
    rejects(load, b"{U\x01a[$Z#" + _ubj_count(count) + b"}")


# ---------------------------------------------------------------- parser memory amplification
# A document of tiny values (JSON numbers, UBJSON null markers, empty XML elements) must not cost a
# large in-memory node per value: peak memory while loading stays a few times the file size.
# Each load runs in a subprocess (its own ru_maxrss) under an address-space limit, so that a
# regression fails cleanly instead of swapping the machine.
# The peak is VmHWM (this process's own high-water RSS) rather than getrusage's ru_maxrss, which
# a child inherits from the parent at fork: a large pytest process would hide the growth.
_AMPLIFICATION_SCRIPT = r"""
import os, resource, sys
import hepinfer
path, fmt = sys.argv[1], sys.argv[2]
size = os.path.getsize(path)
def status(key):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith(key + ":"))
resource.setrlimit(resource.RLIMIT_AS, (status("VmSize") + 40 * size + (256 << 20), resource.RLIM_INFINITY))
before = status("VmHWM")
try:
    hepinfer.Forest.load(path, format=fmt)
    outcome = "loaded"
except hepinfer.ModelFormatError as e:
    outcome = "error: " + str(e)[:200]
print(outcome)
print((status("VmHWM") - before) / size)
"""


def _load_growth(tmp_path, content: bytes, fmt: str) -> tuple[str, float]:
    """Loads `content` from a file in a fresh interpreter: (outcome, peak RSS growth / file size)."""
    import subprocess
    import sys

    path = tmp_path / "big.model"
    path.write_bytes(content)
    run = subprocess.run(
        [sys.executable, "-c", _AMPLIFICATION_SCRIPT, str(path), fmt],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    outcome, ratio = run.stdout.strip().splitlines()[-2:]
    return outcome, float(ratio)


# Measured on 20 MB inputs: the DOM readers took 103x (JSON zeros), 28x (JSON 1.5e3), > 100x
# (UBJSON nulls: out of memory under a 4 GB limit) and 56x (XML <a/>) the file size; the
# in-place readers take 1.0x (the file read into memory) for JSON and UBJSON, and 3.2x for XML
# (8 bytes of index per 4-byte element).
_MAX_GROWTH = 4.0
_AMPLIFICATION_MB = 20


@pytest.mark.parametrize("value", [b"0", b"1.5e3", b"null", b"[]"])
def test_json_of_tiny_values_costs_a_few_times_its_size(tmp_path, value):
    n = _AMPLIFICATION_MB * 2**20 // (len(value) + 1)
    junk = b"[" + b",".join([value] * n) + b"]"
    model = (DATA / "xgboost" / "xgb1.7.6_binary_logistic.json").read_bytes()
    assert model.startswith(b"{")
    outcome, ratio = _load_growth(tmp_path, b'{"junk":' + junk + b"," + model[1:], "xgboost-json")
    assert outcome == "loaded", outcome
    assert ratio <= _MAX_GROWTH, ratio


def test_ubjson_of_null_markers_costs_a_few_times_its_size(tmp_path):
    n = _AMPLIFICATION_MB * 2**20
    junk = b"L" + struct.pack(">q", 4) + b"junk[" + b"Z" * n + b"]"
    model = (DATA / "xgboost" / "xgb1.7.6_binary_logistic.ubj").read_bytes()
    assert model.startswith(b"{L")
    outcome, ratio = _load_growth(tmp_path, b"{" + junk + model[1:], "xgboost-ubj")
    assert outcome == "loaded", outcome
    assert ratio <= _MAX_GROWTH, ratio


def test_tmva_of_empty_elements_costs_a_few_times_its_size(tmp_path):
    n = _AMPLIFICATION_MB * 2**20 // 4
    doc = _tmva("<Junk>" + "<a/>" * n + "</Junk>" + _tmva_chain(2))
    outcome, ratio = _load_growth(tmp_path, doc, "tmva")
    assert outcome == "loaded", outcome
    assert ratio <= _MAX_GROWTH, ratio


@pytest.mark.parametrize("junk", ["blank lines", "distinct keys"])
def test_lightgbm_of_short_lines_costs_a_few_times_its_size(tmp_path, junk):
    # measured on 20 MB: a vector of all lines took 41x for blank lines, a map of keys 14x for
    # k0=, k1=, ... lines; now 1.0x and 2.8x
    model = (DATA / "lightgbm" / "binary_categorical.txt").read_text()
    cut = model.index("\nTree=0") + 1
    if junk == "blank lines":
        filler = "\n" * (_AMPLIFICATION_MB * 2**20)
    else:
        filler = "".join(f"k{i}=\n" for i in range(_AMPLIFICATION_MB * 2**20 // 9))
    outcome, ratio = _load_growth(tmp_path, (model[:cut] + filler + model[cut:]).encode(), "lightgbm")
    assert outcome == "loaded", outcome
    assert ratio <= _MAX_GROWTH, ratio


# ---------------------------------------------------------------- XGBoost fields
@pytest.fixture(scope="module")
def xgb_doc():
    return json.loads((DATA / "xgboost" / "xgb2.1.4_binary_logistic.json").read_text())


def _model(doc):
    return doc["learner"]["gradient_booster"]["model"]


def _load_json(doc):
    return Forest.load(json.dumps(doc).encode())


def test_xgboost_absurd_counts(xgb_doc):
    doc = copy.deepcopy(xgb_doc)
    doc["learner"]["learner_model_param"]["num_feature"] = "1000000000"
    rejects(_load_json, doc, "num_feature", "absurd")

    doc = copy.deepcopy(xgb_doc)
    doc["learner"]["learner_model_param"]["num_class"] = "1000000000"
    rejects(_load_json, doc, "num_class")

    doc = copy.deepcopy(xgb_doc)
    _model(doc)["gbtree_model_param"]["num_trees"] = "1000000000"
    rejects(_load_json, doc, "num_trees")

    doc = copy.deepcopy(xgb_doc)
    _model(doc)["trees"][0]["tree_param"]["num_nodes"] = "1000000000"
    rejects(_load_json, doc, "num_nodes")

    doc = copy.deepcopy(xgb_doc)
    _model(doc)["trees"][0]["left_children"][0] = 10**9
    rejects(_load_json, doc, "child index out of range")

    doc = copy.deepcopy(xgb_doc)
    _model(doc)["trees"][0]["split_indices"][0] = 2**40
    rejects(_load_json, doc, "out of range")


def _single_tree(left, right, cond, split_type=None, **categories):
    n = len(left)
    tree = {
        "left_children": left,
        "right_children": right,
        "split_indices": [0] * n,
        "split_conditions": cond,
        "default_left": [0] * n,
        "tree_param": {"num_nodes": str(n), "size_leaf_vector": "1", "num_feature": "1", "num_deleted": "0"},
        "base_weights": [0.0] * n,
        "loss_changes": [0.0] * n,
        "sum_hessian": [1.0] * n,
        "parents": [2147483647] * n,
        "categories": [],
        "categories_nodes": [],
        "categories_segments": [],
        "categories_sizes": [],
    }
    if split_type is not None:
        tree["split_type"] = split_type
    tree.update(categories)
    return tree


def _with_trees(xgb_doc, trees, n_features=1):
    doc = copy.deepcopy(xgb_doc)
    doc["learner"]["learner_model_param"]["num_feature"] = str(n_features)
    doc["learner"].pop("feature_names", None)
    doc["learner"].pop("feature_types", None)
    model = _model(doc)
    model["trees"] = trees
    model["tree_info"] = [0] * len(trees)
    model["gbtree_model_param"]["num_trees"] = str(len(trees))
    return doc


def test_xgboost_cycle_detached_from_the_root(xgb_doc):
    # root 0 is a leaf; nodes 1 and 2 are each other's child: every node has one parent
    tree = _single_tree([-1, 2, 1, -1, -1], [-1, 3, 4, -1, -1], [0.5, 0.0, 0.0, 1.0, 2.0])
    rejects(_load_json, _with_trees(xgb_doc, [tree]), "not reachable")


def test_xgboost_huge_category_ids_are_bounded(xgb_doc):
    # one category id near 2^24 costs a 2 MiB bitset per node: 200 such trees ask for 400 MiB
    tree = _single_tree(
        [1, -1, -1],
        [2, -1, -1],
        [0.0, -1.0, 1.0],
        split_type=[1, 0, 0],
        categories=[2**24 - 1],
        categories_nodes=[0],
        categories_segments=[0],
        categories_sizes=[1],
    )
    doc = _with_trees(xgb_doc, [tree] * 200)
    rejects(_load_json, doc, "category bitsets")
    # a handful of such trees is legitimate, and correct: the listed category goes right
    forest = _load_json(_with_trees(xgb_doc, [tree] * 3))
    margin = np.ravel(
        forest.predict(np.array([[2**24 - 1], [5.0], [2**24 - 2]], dtype=np.float32), output="margin")
    )
    np.testing.assert_allclose([margin[0] - margin[1], margin[2] - margin[1]], [6.0, 0.0], atol=1e-5)


# ---------------------------------------------------------------- LightGBM text
LGB_HEADER = """tree
version=v4
num_class=1
num_tree_per_iteration=1
label_index=0
max_feature_idx={max_feature_idx}
objective=regression
feature_names={names}
feature_infos={infos}
tree_sizes={tree_sizes}
"""


def _lgb(trees, max_feature_idx=0, tree_sizes=None):
    names = " ".join(f"f{i}" for i in range(max_feature_idx + 1))
    infos = " ".join("[-1e9:1e9]" for _ in range(max_feature_idx + 1))
    sizes = tree_sizes if tree_sizes is not None else " ".join("1" for _ in trees)
    text = (
        LGB_HEADER.format(max_feature_idx=max_feature_idx, names=names, infos=infos, tree_sizes=sizes) + "\n"
    )
    for i, t in enumerate(trees):
        text += f"Tree={i}\n" + "".join(f"{k}={v}\n" for k, v in t.items()) + "\n"
    return (text + "end of trees\n").encode()


def _lgb_tree(n_internal, *, categorical_words=0):
    """A chain: internal node i goes left to leaf i when x <= i, else right to node i+1."""
    nl = n_internal + 1
    idx = range(n_internal)
    t = {
        "num_leaves": nl,
        "num_cat": 1 if categorical_words else 0,
        "split_feature": " ".join("0" for _ in idx),
        "split_gain": " ".join("1" for _ in idx),
        "threshold": " ".join("0" if categorical_words else str(i) for i in idx),
        "decision_type": " ".join("1" if categorical_words else "2" for _ in idx),
        "left_child": " ".join(str(-(i + 1)) for i in idx),
        "right_child": " ".join(str(i + 1) if i + 1 < n_internal else str(-(i + 2)) for i in idx),
        "leaf_value": " ".join(repr(0.001 * j) for j in range(nl)),
        "leaf_weight": " ".join("1" for _ in range(nl)),
        "leaf_count": " ".join("1" for _ in range(nl)),
        "internal_value": " ".join("0" for _ in idx),
        "internal_weight": " ".join("1" for _ in idx),
        "internal_count": " ".join("1" for _ in idx),
        "is_linear": 0,
        "shrinkage": 1,
    }
    if categorical_words:
        t["cat_boundaries"] = f"0 {categorical_words}"
        t["cat_threshold"] = " ".join("4294967295" for _ in range(categorical_words))
    return t


def test_lightgbm_absurd_counts():
    load = Forest.load
    rejects(
        load,
        _lgb([_lgb_tree(3)]).replace(b"max_feature_idx=0", b"max_feature_idx=1000000000"),
        "max_feature_idx",
    )
    text = _lgb([_lgb_tree(3)]).replace(b"max_feature_idx=0", b"max_feature_idx=99999999")
    rejects(load, text, "names")
    rejects(load, _lgb([_lgb_tree(3)], tree_sizes=" ".join(["1"] * 10**6)), "tree_sizes")
    rejects(load, _lgb([_lgb_tree(3)]).replace(b"num_leaves=4", b"num_leaves=131072"), "leaf_value")
    rejects(load, _lgb([_lgb_tree(3)]).replace(b"num_leaves=4", b"num_leaves=1000000000"), "num_leaves")
    rejects(load, _lgb([_lgb_tree(3)]).replace(b"num_class=1", b"num_class=1000000000"), "num_class")


def test_lightgbm_tree_twenty_thousand_levels_deep():
    n = 20000
    forest = Forest.load(_lgb([_lgb_tree(n)]))
    x = np.array([[-5.0], [0.0], [12345.5], [19998.0], [1e9], [np.nan]])
    # leaf j for the first node i = j with x <= i; NaN with missing type None acts as 0 -> leaf 0
    want = np.array([0, 0, 12346, 19998, n, 0]) * 0.001
    np.testing.assert_allclose(forest.predict(x), want, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(forest.predict_leaf(x)[:, 0], [0, 0, 12346, 19998, n, 0])


def test_lightgbm_one_bitset_named_by_many_nodes():
    # 5000 categorical nodes share one 20 000-word bitset: 10^8 words if copied per node
    forest = Forest.load(_lgb([_lgb_tree(5000, categorical_words=20000)]))
    x = np.array([[3.0], [639999.0], [-1.0], [np.nan]])
    # every category below 32 * 20000 is in the bitset: left at the root (leaf 0);
    # negative and NaN go right all the way down the chain (leaf 5000)
    np.testing.assert_allclose(forest.predict(x), [0.0, 0.0, 5.0, 5.0], rtol=0, atol=1e-12)


# ---------------------------------------------------------------- TMVA XML
def _tmva(weights_block: str, nvar: int = 1, nvar_attr: int | None = None) -> bytes:
    variables = "".join(
        f'<Variable VarIndex="{i}" Expression="v{i}" Label="v{i}" Title="v{i}" Unit="" Internal="v{i}" Type="F" '
        f'Min="-1" Max="1"/>'
        for i in range(nvar)
    )
    return (
        '<?xml version="1.0"?>\n<MethodSetup Method="BDT::BDT"><GeneralInfo>'
        '<Info name="ROOT Release" value="6.30/02 [400898]"/><Info name="AnalysisType" value="Classification"/>'
        '</GeneralInfo><Options><Option name="BoostType" modified="Yes">Grad</Option></Options>'
        f'<Variables NVar="{nvar if nvar_attr is None else nvar_attr}">{variables}</Variables>'
        '<Transformations NTransformations="0"/>' + weights_block + "</MethodSetup>"
    ).encode()


def _tmva_chain(depth: int) -> str:
    """A chain of `depth` cuts on v0 at 0, 1, 2, ...: x < i goes left to a leaf with res=i (purity rising with i)."""
    parts = []
    for i in range(depth):
        pos = "s" if i == 0 else "r"
        parts.append(
            f'<Node pos="{pos}" depth="{i}" NCoef="0" IVar="0" Cut="{i}" cType="1" res="0" rms="0" '
            f'purity="0.5" nType="0">'
            f'<Node pos="l" depth="{i + 1}" NCoef="0" IVar="-1" Cut="0" cType="1" res="{i}" rms="0" '
            f'purity="{(i + 0.5) / (depth + 1)}" nType="-1"/>'
        )
    parts.append(
        f'<Node pos="r" depth="{depth}" NCoef="0" IVar="-1" Cut="0" cType="1" res="{depth}" rms="0" '
        f'purity="{(depth + 0.5) / (depth + 1)}" nType="-1"/>'
    )
    parts.append("</Node>" * depth)
    return (
        '<Weights NTrees="1" AnalysisType="0"><BinaryTree type="DecisionTree" boostWeight="1" itree="0">'
        + "".join(parts)
        + "</BinaryTree></Weights>"
    )


def test_tmva_xml_nesting_a_million_levels_deep():
    load = lambda b: Forest.load(b, format="tmva")
    rejects(load, b"<a>" * DEEP + b"</a>" * DEEP, "nested deeper than")
    rejects(load, _tmva(_tmva_chain(20000)), "nested deeper than")


def test_tmva_tree_thousands_of_levels_deep():
    depth = 4000
    forest = Forest.load(_tmva(_tmva_chain(depth)), format="tmva")
    x = np.array([[-3.0], [0.0], [1.5], [2500.0], [1e6]], dtype=np.float32)
    # cut i: x >= i goes right (ROOT >= 6.18); a Grad tree's margin is the leaf's res
    leaves = forest.predict_leaf(x)[:, 0]
    margin = forest.predict(x, output="margin")
    assert len(np.unique(leaves)) == 5
    assert np.all(np.diff(margin) > 0)


def test_tmva_absurd_counts():
    load = lambda b: Forest.load(b, format="tmva")
    rejects(load, _tmva(_tmva_chain(2).replace('NTrees="1"', 'NTrees="1000000000"')), "NTrees")
    rejects(load, _tmva(_tmva_chain(2).replace('NTrees="1"', 'NTrees="100000"')), "NTrees")
    rejects(load, _tmva(_tmva_chain(2), nvar_attr=10**9), "NVar")
    rejects(load, _tmva(_tmva_chain(2), nvar_attr=1000), "NVar")
    rejects(
        load, _tmva(_tmva_chain(2).replace('NCoef="0" IVar="0"', 'NCoef="1000000000" IVar="0"', 1)), "NCoef"
    )


# ---------------------------------------------------------------- ONNX
onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper


def _onnx_model(nodes, inits, x_shape=("batch", 4), y_shape=("batch", 4), y_type=TensorProto.FLOAT) -> bytes:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
        [helper.make_tensor_value_info("y", y_type, list(y_shape))],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def _empty_tensor(name, dims, data_type=TensorProto.FLOAT, raw=None):
    t = TensorProto()
    t.name = name
    t.data_type = data_type
    t.dims.extend(dims)
    if raw is not None:
        t.raw_data = raw
    return t


@pytest.mark.parametrize(
    "dims", [[60000, 60000], [10**6, 10**6], [2**62, 4], [2**31, 2**31, 2**31], [4, 2**40, 2**40]]
)
def test_onnx_initializer_claims_huge_dims_without_data(dims):
    model = _onnx_model([helper.make_node("Add", ["x", "w"], ["y"])], [_empty_tensor("w", dims)])
    message = rejects(Model.load, model, "tensor 'w'")
    assert "elements" in message or "values" in message


def test_onnx_raw_data_shorter_than_dims():
    model = _onnx_model(
        [helper.make_node("Add", ["x", "w"], ["y"])], [_empty_tensor("w", [50000, 50000], raw=b"\x00" * 16)]
    )
    rejects(Model.load, model, "raw data has 16 bytes")
    model = _onnx_model([helper.make_node("Add", ["x", "w"], ["y"])], [_empty_tensor("w", [4, -3])])
    rejects(Model.load, model, "negative dimension")


@pytest.mark.parametrize(
    "op,shape",
    [
        ("ConstantOfShape", [100000, 100000]),
        ("ConstantOfShape", [2**40, 2**40]),
        ("Expand", [100000, 100000]),
        ("Tile", [2**33, 2**33]),
    ],
)
def test_onnx_constant_folding_of_huge_shapes(op, shape):
    shape_t = helper.make_tensor("s", TensorProto.INT64, [len(shape)], shape)
    if op == "ConstantOfShape":
        nodes = [helper.make_node(op, ["s"], ["c"]), helper.make_node("Add", ["x", "c"], ["y"])]
        inits = [shape_t]
    else:
        one = helper.make_tensor("one", TensorProto.FLOAT, [1, 1], [1.0])
        nodes = [helper.make_node(op, ["one", "s"], ["c"]), helper.make_node("Add", ["x", "c"], ["y"])]
        inits = [shape_t, one]
    rejects(Model.load, _onnx_model(nodes, inits), "would need more than")


def test_onnx_dry_run_with_huge_declared_input():
    # a declared input of 10^10 elements per event: loading must not allocate it
    model = Model.load(
        _onnx_model(
            [helper.make_node("Relu", ["x"], ["y"])],
            [],
            x_shape=("batch", 100000, 100000),
            y_shape=("batch", 100000, 100000),
        )
    )
    assert model.inputs[0].shape[1:] == (100000, 100000) or list(model.inputs[0].shape[1:]) == [
        100000,
        100000,
    ]
    # an Expand to a huge shape: found by the load-time dry run when the input shape is fixed...
    shape_t = helper.make_tensor("s", TensorProto.INT64, [3], [2**31, 2**31, 4])
    expand = [helper.make_node("Expand", ["x", "s"], ["y"])]
    rejects(Model.load, _onnx_model(expand, [shape_t], y_shape=("a", "b", "c")), "would need more than")
    # ...and an error at predict, not a crash, when it is not
    m = Model.load(_onnx_model(expand, [shape_t], x_shape=("batch", "n"), y_shape=("a", "b", "c")))
    with pytest.raises(ValueError, match="would need more than"):
        m.predict(np.ones((1, 4), np.float32))


def test_onnx_external_data_out_of_bounds(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"\x00" * 64)

    def external(**entries):
        t = _empty_tensor("w", [4])
        t.data_location = TensorProto.EXTERNAL
        for k, v in entries.items():
            e = t.external_data.add()
            e.key, e.value = k, v
        return _onnx_model([helper.make_node("Add", ["x", "w"], ["y"])], [t])

    load = lambda b: Model.load(b, external_data_dir=tmp_path)
    assert load(external(location="weights.bin", offset="16", length="16")).predict(
        np.ones((2, 4), np.float32)
    ).shape == (2, 4)
    rejects(load, external(location="weights.bin", offset="1000000000000"), "past the end")
    rejects(load, external(location="weights.bin", offset="8", length="1000000000000"), "past the end")
    rejects(load, external(location="weights.bin", offset="8", length="18446744073709551615"), "raw data has")
    rejects(load, external(location="weights.bin", offset="-1"), "past the end")
    rejects(load, external(location="../weights.bin"), "inside the model's folder")
    rejects(load, external(location="/etc/passwd"), "inside the model's folder")
    rejects(load, external(location="weights.bin", offset="56"), "raw data has 8 bytes")
    rejects(load, external(location="weights.bin", offset="lots"), "not a number")


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _nested_if_graph(depth: int) -> bytes:
    """GraphProto bytes: an If node whose then_branch holds an If node whose ... `depth` times.

    Written directly in protobuf wire format from the inside out (onnx's own Python
    protobuf refuses nesting beyond 100 levels)."""
    op = _varint(4 << 3 | 2) + _varint(2) + b"If"  # NodeProto.op_type
    name = _varint(1 << 3 | 2) + _varint(11) + b"then_branch"  # AttributeProto.name
    kind = _varint(20 << 3) + _varint(5)  # AttributeProto.type = GRAPH
    prefixes = []
    inner = 0  # length of the innermost (empty) GraphProto
    for _ in range(depth):
        attr_prefix = name + kind + _varint(6 << 3 | 2) + _varint(inner)
        attr_len = len(attr_prefix) + inner
        node_prefix = op + _varint(5 << 3 | 2) + _varint(attr_len)
        node_len = len(node_prefix) + attr_len
        graph_prefix = _varint(1 << 3 | 2) + _varint(node_len)
        inner = len(graph_prefix) + node_len
        prefixes.append(graph_prefix + node_prefix + attr_prefix)
    return b"".join(reversed(prefixes))


@pytest.mark.parametrize("depth", [1, 8, 9, 100, 20000])
def test_onnx_nested_subgraphs_are_rejected_not_walked(depth):
    # a valid model, plus (protobuf merges repeated fields) a second GraphProto chunk adding
    # an If node whose sub-graphs nest `depth` levels deep: the reader descends at most 8
    # levels (deeper is a malformed file, found without walking the rest), and an If with a
    # then_branch only is rejected by the import
    base = _onnx_model([helper.make_node("Identity", ["x"], ["y"])], [])
    deep = _nested_if_graph(depth)
    model = base + _varint(7 << 3 | 2) + _varint(len(deep)) + deep
    if depth <= 8:
        rejects(Model.load, model, "(If)", "has no else_branch attribute")
    else:
        rejects(Model.load, model, "sub-graphs nested deeper than 8 levels")


def test_onnx_unknown_domain_is_rejected():
    # custom-op domains would need user code: hepinfer never loads or runs any
    node = helper.make_node("MyOp", ["x"], ["y"], domain="com.example")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 4])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]
    )
    rejects(Model.load, model.SerializeToString(), "MyOp")


def test_onnx_graph_of_thousands_of_chained_nodes():
    # graph order, folding and buffer planning are iterative: a long chain loads and runs
    n = 3000
    names = ["x"] + [f"t{i}" for i in range(n - 1)] + ["y"]
    nodes = [helper.make_node("Relu" if i % 2 == 0 else "Neg", [names[i]], [names[i + 1]]) for i in range(n)]
    model = Model.load(_onnx_model(nodes, []))
    x = np.array([[1.0, -2.0, 3.0, -4.0]], np.float32)
    np.testing.assert_array_equal(
        model.predict(x), np.zeros((1, 4), np.float32)
    )  # -relu(x), then relu(-relu(x)) = 0


# ------------------------------------------- ONNX: external data files, load-time memory (issue 14)
import os
import subprocess
import sys
import textwrap


def _bounded_load(tmp_path, setup: str, limit_gib: float = 2.0, timeout: float = 60.0) -> dict:
    """Runs `setup` (which defines `load()`) in a fresh interpreter, then `load()` under an
    address-space limit of `limit_gib`: a regression fails with MemoryError or a timeout
    instead of eating the machine. Returns {"ok", "error", "seconds", "rss_mb", "read_mb"} (rss:
    the peak resident size of the process, after hepinfer was imported, in MiB; read: the bytes the
    process read from files while loading, /proc/self/io rchar, in MiB). Tests bound memory and
    bytes read, not seconds (the timeout only stops a runaway)."""
    script = (
        textwrap.dedent(
            """
        import json, resource, sys, time
        import numpy as np
        import hepinfer
        from hepinfer import Model
        from onnx import TensorProto, helper
        """
        )
        + textwrap.dedent(setup)
        + textwrap.dedent(
            f"""
        # limit_gib more address space than the process has now (under AddressSanitizer, whose
        # shadow reservation alone is terabytes of it, an absolute limit would stop everything)
        with open("/proc/self/status") as f:
            vm_size = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
        limit = vm_size + int({limit_gib} * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        def rchar():
            with open("/proc/self/io") as f:
                return next(int(line.split()[1]) for line in f if line.startswith("rchar:"))
        r0 = rchar()
        t0 = time.perf_counter()
        result = {{"ok": True, "error": ""}}
        try:
            load()
        except Exception as e:  # noqa: BLE001
            result = {{"ok": False, "error": type(e).__name__ + ": " + str(e)}}
        result["seconds"] = time.perf_counter() - t0
        result["read_mb"] = (rchar() - r0) / 2**20
        # VmHWM, not ru_maxrss: a child's ru_maxrss starts from its parent's peak at fork (pytest's)
        with open("/proc/self/status") as f:
            result["rss_mb"] = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
        print(json.dumps(result))
        """
        )
    )
    (tmp_path / "bounded_load.py").write_text(script)
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "bounded_load.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _external_tensor(name, dims, **entries):
    t = _empty_tensor(name, dims)
    t.data_location = TensorProto.EXTERNAL
    for k, v in entries.items():
        e = t.external_data.add()
        e.key, e.value = k, str(v)
    return t


def _add_external(folder: Path, **entries) -> Path:
    path = folder / "model.onnx"
    path.write_bytes(
        _onnx_model([helper.make_node("Add", ["x", "w"], ["y"])], [_external_tensor("w", [4], **entries)])
    )
    return path


def test_onnx_external_data_symlink_out_of_the_folder(tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(4, dtype=np.float32).tobytes())
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "weights.bin").symlink_to(secret)
    message = rejects(
        Model.load, _add_external(model_dir, location="weights.bin"), "tensor 'w'", "weights.bin"
    )
    assert "outside the model's folder" in message
    # a folder symlink on the way out is the same
    (model_dir / "sub").symlink_to(tmp_path)
    message = rejects(Model.load, _add_external(model_dir, location="sub/secret.bin"), "tensor 'w'")
    assert "outside the model's folder" in message


def test_onnx_external_data_symlink_to_a_device(tmp_path):
    # /dev/zero: reading "the whole file" never ends; it is not a regular file
    (tmp_path / "weights.bin").symlink_to("/dev/zero")
    res = _bounded_load(
        tmp_path,
        f"""
        def load():
            Model.load({str(_add_external(tmp_path, location="weights.bin"))!r})
        """,
        timeout=60,
    )
    assert not res["ok"] and res["error"].startswith("ModelFormatError"), res
    assert "not a regular file" in res["error"] or "outside the model's folder" in res["error"], res
    assert "tensor 'w'" in res["error"] and "weights.bin" in res["error"], res
    # a device inside the folder (a FIFO here: opening it would block)
    fifo_dir = tmp_path / "fifo"
    fifo_dir.mkdir()
    os.mkfifo(fifo_dir / "weights.bin")
    res = _bounded_load(
        tmp_path,
        f"""
        def load():
            Model.load({str(_add_external(fifo_dir, location="weights.bin"))!r})
        """,
        timeout=30,
    )
    assert not res["ok"] and "not a regular file" in res["error"] and "tensor 'w'" in res["error"], res


def test_onnx_external_data_symlink_inside_the_folder(tmp_path):
    # a symlink from the folder to a regular file in the folder is allowed (what the checks
    # protect is the rest of the machine; the target is as much the model's as the link)
    w = np.array([1.0, -2.0, 3.5, 4.0], np.float32)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "real.bin").write_bytes(b"\x00" * 8 + w.tobytes())
    (tmp_path / "weights.bin").symlink_to(Path("data") / "real.bin")
    path = _add_external(tmp_path, location="weights.bin", offset=8, length=16)
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    np.testing.assert_array_equal(Model.load(path).predict(x), x + w)
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(Model.load(path).predict(x), sess.run(None, {"x": x})[0])


def test_onnx_external_data_length_must_match_the_tensor(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"\x00" * 64)
    message = rejects(
        Model.load,
        _add_external(tmp_path, location="weights.bin", offset=0, length=20),
        "tensor 'w'",
        "weights.bin",
    )
    assert "raw data has 20 bytes, expected 16" in message
    message = rejects(
        Model.load, _add_external(tmp_path, location="weights.bin", offset=60, length=16), "tensor 'w'"
    )
    assert "past the end" in message and "weights.bin" in message
    rejects(Model.load, _add_external(tmp_path, location="missing.bin"), "tensor 'w'", "missing.bin")


def test_onnx_external_data_small_tensor_in_a_big_file(tmp_path):
    # 16 bytes at offset 1.4e9 of a 1.5 GB (sparse) file: only those 16 bytes are read
    w = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    with open(tmp_path / "weights.bin", "wb") as f:
        f.truncate(1_500_000_000)
        f.seek(1_400_000_000)
        f.write(w.tobytes())
    path = _add_external(tmp_path, location="weights.bin", offset=1_400_000_000, length=16)
    res = _bounded_load(
        tmp_path,
        f"""
        def load():
            m = Model.load({str(path)!r})
            y = m.predict(np.ones((2, 4), np.float32))
            assert (y == 1 + np.array([1, 2, 3, 4], np.float32)).all(), y
        """,
        limit_gib=2.0,
    )
    assert res["ok"], res
    assert res["read_mb"] < 20, res  # the 16 bytes, not the 1.5 GB file (the old code read it whole)
    if not UNDER_ASAN:
        assert res["rss_mb"] < 600, res


def test_onnx_external_data_many_tensors_in_one_file(tmp_path):
    # 50 tensors of 1 MiB in one 200 MB file (the rest of the file is not theirs): loads in
    # about the time to read 50 MiB, and agrees with onnxruntime
    n, k = 50, 1 << 18
    rng = np.random.default_rng(1)
    ws = [rng.standard_normal(k).astype(np.float32) for _ in range(n)]
    stride = 4_000_000
    with open(tmp_path / "weights.bin", "wb") as f:
        f.truncate(200_000_000)
        for i, w in enumerate(ws):
            f.seek(i * stride)
            f.write(w.tobytes())
    inits, nodes, prev = [], [], "x"
    for i in range(n):
        inits.append(_external_tensor(f"w{i}", [k], location="weights.bin", offset=i * stride, length=4 * k))
        out = "y" if i == n - 1 else f"t{i}"
        nodes.append(helper.make_node("Add", [prev, f"w{i}"], [out]))
        prev = out
    path = tmp_path / "model.onnx"
    path.write_bytes(_onnx_model(nodes, inits, x_shape=("batch", k), y_shape=("batch", k)))
    res = _bounded_load(
        tmp_path,
        f"""
        def load():
            Model.load({str(path)!r}).predict(np.zeros((1, {k}), np.float32))
        """,
        limit_gib=2.0,
    )
    assert res["ok"], res
    assert res["read_mb"] < 120, res  # 50 MiB of tensors, not 50 reads of the 200 MB file
    x = rng.standard_normal((2, k)).astype(np.float32)
    got = Model.load(path).predict(x)
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(got, sess.run(None, {"x": x})[0], rtol=1e-6, atol=1e-5)


def _graph_bytes(nodes, inputs, outputs, inits=()) -> bytes:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def _sixteen_huge_inputs() -> bytes:
    # 16 fixed-shape inputs of 2^26 floats (256 MiB each, 4 GiB in all) in a file of ~500 bytes
    n = 1 << 26
    names = [f"x{i}" for i in range(16)]
    return _graph_bytes(
        [helper.make_node("Sum", names, ["y"])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, n]) for x in names],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])],
    )


def _expand_branches(
    n_branches: int, elements: int, *, interleaved: bool, constant: bool, tail=(), fill: float = 1.0
) -> bytes:
    """Branches Expand(src, [1, elements]) -> ReduceSum -> Sum of all: from the input x [1, 1]
    (the load-time dry run evaluates them) or from a constant (constant folding does)."""
    inits = [
        helper.make_tensor("shape", TensorProto.INT64, [2], [1, elements]),
        helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
        helper.make_tensor("one", TensorProto.FLOAT, [1, 1], [fill]),
    ]
    src = "one" if constant else "x"
    expands = [
        helper.make_node("Expand", [src, "shape"], [f"e{i}"], name=f"expand{i}") for i in range(n_branches)
    ]
    reduces = [
        helper.make_node("ReduceSum", [f"e{i}", "axes"], [f"r{i}"], name=f"reduce{i}")
        for i in range(n_branches)
    ]
    nodes = [n for pair in zip(expands, reduces) for n in pair] if interleaved else expands + reduces
    last = "s" if tail else "y"
    nodes.append(helper.make_node("Sum", [f"r{i}" for i in range(n_branches)] + ["x"], [last], name="sum"))
    nodes.extend(tail)
    return _graph_bytes(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )


def test_onnx_sixteen_huge_declared_inputs_load_cheaply(tmp_path):
    content = _sixteen_huge_inputs()
    assert len(content) < 1024
    (tmp_path / "m.onnx").write_bytes(content)
    res = _bounded_load(tmp_path, 'def load():\n    Model.load("m.onnx")\n', limit_gib=2.0)
    assert res["ok"], res  # legitimate ONNX (onnxruntime loads it): no dry run on 4 GiB of zeros
    if not UNDER_ASAN:
        assert res["rss_mb"] < 500, res


@pytest.mark.parametrize("constant", [False, True], ids=["dry-run", "folding"])
def test_onnx_expand_branches_to_a_gib_load_within_a_budget(tmp_path, constant):
    # four branches each expanding to 1 GiB (all live at once in the file's node order)
    (tmp_path / "m.onnx").write_bytes(_expand_branches(4, 1 << 28, interleaved=False, constant=constant))
    res = _bounded_load(tmp_path, 'def load():\n    Model.load("m.onnx")\n', limit_gib=2.5, timeout=120)
    if not res["ok"]:  # refusing is acceptable, but only with the node named
        assert res["error"].startswith("ModelFormatError") and "expand" in res["error"], res
    if not UNDER_ASAN:
        assert res["rss_mb"] < 1600, res


def test_onnx_folded_intermediates_are_freed_after_their_last_use(tmp_path):
    # eight constant branches of 256 MiB, each reduced right after it is expanded: folding
    # holds one at a time, not eight (2 GiB) until the end of the load (zeros: a float sum of
    # 2^26 ones is not exact)
    (tmp_path / "m.onnx").write_bytes(_expand_branches(8, 1 << 26, interleaved=True, constant=True, fill=0.0))
    res = _bounded_load(
        tmp_path,
        """
        def load():
            m = Model.load("m.onnx")
            y = m.predict(np.full((1, 1), 0.5, np.float32))
            assert y.reshape(-1).tolist() == [0.5], y
            assert m.n_nodes <= 1, m.n_nodes  # folded (only the Sum with x is left)
        """,
        limit_gib=2.0,
        timeout=120,
    )
    assert res["ok"], res
    if not UNDER_ASAN:
        assert res["rss_mb"] < 800, res


def test_onnx_dry_run_still_checks_shapes_after_large_intermediates():
    # five 256 MiB branches in a row (1.25 GiB if none were freed), then a Reshape that cannot
    # fit: still reported at load, naming the node
    bad = [
        helper.make_tensor("three", TensorProto.INT64, [1], [3]),
    ]
    tail = [helper.make_node("Reshape", ["s", "three"], ["y"], name="bad_reshape")]
    content = _expand_branches(5, 1 << 26, interleaved=True, constant=False, tail=tail)
    m = onnx.load_from_string(content)
    m.graph.initializer.extend(bad)
    rejects(Model.load, m.SerializeToString(), "bad_reshape", "declared input shapes")


def test_onnx_expand_branches_agree_with_onnxruntime():
    ort = pytest.importorskip("onnxruntime")
    for constant in (False, True):
        for interleaved in (False, True):
            content = _expand_branches(4, 1 << 12, interleaved=interleaved, constant=constant)
            x = np.full((1, 1), 0.25, np.float32)
            sess = ort.InferenceSession(content, providers=["CPUExecutionProvider"])
            np.testing.assert_allclose(
                Model.load(content).predict(x).reshape(-1), sess.run(None, {"x": x})[0].reshape(-1), rtol=1e-6
            )


def test_onnx_external_tensor_over_the_size_limit_is_refused_before_reading(tmp_path):
    # 2^31 floats (8 GiB, over the 4 GiB per-tensor load limit) backed by a sparse 8 GiB file
    with open(tmp_path / "weights.bin", "wb") as f:
        f.truncate(1 << 33)
    path = tmp_path / "model.onnx"
    path.write_bytes(
        _onnx_model(
            [helper.make_node("Add", ["x", "w"], ["y"])],
            [_external_tensor("w", [1 << 31], location="weights.bin", offset=0, length=1 << 33)],
            x_shape=("batch", 1 << 31),
            y_shape=("batch", 1 << 31),
        )
    )
    res = _bounded_load(tmp_path, f"def load():\n    Model.load({str(path)!r})\n", limit_gib=2.0)
    assert res["error"].startswith("ModelFormatError") and "tensor 'w'" in res["error"], res
    assert "would need more than" in res["error"] and res["read_mb"] < 20, res  # refused before reading
