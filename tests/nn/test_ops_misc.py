"""The ops of nn/ops_misc.cpp and nn/ops_index.cpp (Mod, Einsum, Trilu, IsNaN/IsInf, Scatter*,
CumSum, ArgMax/ArgMin, OneHot, NonZero, PRelu, Instance/GroupNormalization and the extra
element-wise activations) against onnxruntime, on graphs built with onnx.helper and fresh
random inputs (NaN/inf where they matter, int64 paths, empty tensors), and their load errors."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper

import hepinfer
from hepinfer.nn import Model

F, I, B = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL
ELEM = {np.dtype(np.float32): F, np.dtype(np.int64): I, np.dtype(np.bool_): B}


def make(nodes, inputs, outputs, inits=(), opset=17):
    """A ModelProto from nodes; inputs/outputs are (name, elem_type, shape) triples."""
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, t, s) if t else onnx.ValueInfoProto(name=n) for n, t, s in outputs],
        initializer=[numpy_helper.from_array(np.asarray(v), name=k) for k, v in dict(inits).items()],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8 if opset < 21 else 10
    if any(not t for _, t, _ in outputs):  # output types from onnx's shape inference
        inferred = onnx.shape_inference.infer_shapes(m)
        types = {
            v.name: v.type.tensor_type.elem_type
            for v in list(inferred.graph.value_info) + list(inferred.graph.output)
        }
        for o in m.graph.output:
            if not o.type.tensor_type.elem_type:
                o.CopyFrom(helper.make_tensor_value_info(o.name, types[o.name], None))
    return m


def node_model(op, feeds, n_out=1, inits=(), opset=17, out_type=0, **attrs):
    """One node `op` reading the feeds (then the initializers) in order; the output type from
    onnx's shape inference unless given."""
    names = list(feeds) + [k for k, _ in inits]
    outs = [f"y{k}" for k in range(n_out)]
    return make(
        [helper.make_node(op, names, outs, name="n0", **attrs)],
        [(k, ELEM[np.asarray(v).dtype], list(np.shape(v))) for k, v in feeds.items()],
        [(o, out_type, None) for o in outs],
        inits=inits,
        opset=opset,
    )


def compare(m, feeds, rtol=1e-5, atol=1e-6, ref=None):
    """Evaluates `m` with hepinfer and onnxruntime (or the given reference outputs) and checks
    every output (shape, dtype, values)."""
    if ref is None:
        s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        ref = s.run(None, feeds)
    mine = Model.load(m.SerializeToString())
    out = mine.predict(dict(feeds), n_threads=1)
    if not isinstance(out, dict):
        out = {mine.outputs[0].name: out}
    got = [out[t.name] for t in mine.outputs]
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        assert g.shape == r.shape, (g.shape, r.shape)
        assert g.dtype == r.dtype, (g.dtype, r.dtype)
        if r.dtype.kind == "f":
            np.testing.assert_allclose(g, r, rtol=rtol, atol=atol, equal_nan=True)
        else:
            np.testing.assert_array_equal(g, r)
    return got


def randn(rng, *shape):
    return np.asarray(rng.standard_normal(shape), dtype=np.float32)


def with_specials(x):
    """x with NaN, +inf, -inf, 0 and -0 in its first elements (when it has room)."""
    x = x.copy()
    flat = x.reshape(-1)
    specials = [np.nan, np.inf, -np.inf, 0.0, -0.0]
    flat[: min(len(specials), flat.size)] = specials[: flat.size]
    return x


# ----------------------------------------------------------------------------- element-wise
ACTS = [
    ("Mish", {}, 3.0),
    ("HardSwish", {}, 5.0),
    ("Softsign", {}, 3.0),
    ("Celu", {}, 3.0),
    ("Celu", {"alpha": 0.5}, 3.0),
    ("ThresholdedRelu", {}, 3.0),
    ("ThresholdedRelu", {"alpha": 0.3}, 3.0),
    ("Shrink", {}, 2.0),
    ("Shrink", {"bias": 0.2, "lambd": 0.7}, 2.0),
    ("Tan", {}, 1.5),
    ("Asin", {}, 1.2),  # outside [-1, 1]: NaN
    ("Acos", {}, 1.2),
    ("Atan", {}, 4.0),
    ("Sinh", {}, 4.0),
    ("Cosh", {}, 4.0),
    ("Asinh", {}, 4.0),
    ("Acosh", {}, 4.0),  # below 1: NaN
    ("Atanh", {}, 1.2),
]


@pytest.mark.parametrize(("op", "attrs", "scale"), ACTS, ids=[f"{a[0]}-{i}" for i, a in enumerate(ACTS)])
@pytest.mark.parametrize("shape", [(7, 33), (0, 4), ()])
def test_activation(rng, op, attrs, scale, shape):
    x = np.asarray(rng.standard_normal(shape) * scale, dtype=np.float32)
    if x.size > 5:
        x = with_specials(x)
    compare(node_model(op, {"x": x}, opset=18, **attrs), {"x": x}, rtol=2e-6, atol=2e-6)


def test_activation_rejects_int64():
    x = np.arange(6, dtype=np.int64).reshape(2, 3)
    with pytest.raises(ValueError, match=r"n0.*input must be float32, got int64"):
        Model.load(node_model("Softsign", {"x": x}, opset=18).SerializeToString())


# ----------------------------------------------------------------------------- Mod
@pytest.mark.parametrize("fmod", [0, 1])
@pytest.mark.parametrize(
    ("sa", "sb"), [((5, 6), (5, 6)), ((5, 6), (6,)), ((4, 1, 3), (2, 1)), ((0, 3), (3,))]
)
def test_mod_int64(rng, fmod, sa, sb):
    a = rng.integers(-50, 50, size=sa).astype(np.int64)
    b = rng.integers(1, 9, size=sb).astype(np.int64) * rng.choice([-1, 1], size=sb).astype(np.int64)
    compare(node_model("Mod", {"a": a, "b": b}, fmod=fmod), {"a": a, "b": b})


@pytest.mark.parametrize(("sa", "sb"), [((5, 6), (5, 6)), ((3, 4), ()), ((0, 2), (2,))])
def test_mod_float(rng, sa, sb):
    a = np.asarray(rng.standard_normal(sa) * 10, dtype=np.float32)
    b = np.asarray(rng.standard_normal(sb) * 3, dtype=np.float32)
    if a.size > 5:
        a = with_specials(a)
    compare(node_model("Mod", {"a": a, "b": b}, fmod=1), {"a": a, "b": b})


def test_mod_errors():
    a = np.ones((2, 3), np.float32)
    # fmod=0 on floats is refused, as by onnxruntime
    with pytest.raises(ValueError, match=r"n0.*fmod"):
        Model.load(node_model("Mod", {"a": a, "b": a}, fmod=0).SerializeToString())
    with pytest.raises(ValueError, match=r"n0.*fmod must be 0 or 1"):
        Model.load(node_model("Mod", {"a": a, "b": a}, fmod=2).SerializeToString())
    ai = np.array([[1, 2, 3]], np.int64)
    model = Model.load(node_model("Mod", {"a": ai, "b": ai}).SerializeToString())
    with pytest.raises(hepinfer.InputError, match=r"n0.*modulo by zero"):
        model.predict({"a": ai, "b": np.array([[1, 0, 2]], np.int64)})


# ----------------------------------------------------------------------------- IsNaN / IsInf
@pytest.mark.parametrize(
    ("op", "attrs"),
    [("IsNaN", {}), ("IsInf", {}), ("IsInf", {"detect_positive": 0}), ("IsInf", {"detect_negative": 0})],
)
@pytest.mark.parametrize("shape", [(4, 9), (0,), ()])
def test_isnan_isinf(rng, op, attrs, shape):
    x = randn(rng, *shape)
    if x.size > 5:
        x = with_specials(x)
    compare(node_model(op, {"x": x}, opset=20, **attrs), {"x": x})


# ----------------------------------------------------------------------------- Trilu
@pytest.mark.parametrize("upper", [0, 1])
@pytest.mark.parametrize("k", [None, 0, 2, -1, -7, 9])
@pytest.mark.parametrize("shape", [(3, 5), (2, 4, 4), (0, 3, 3), (6, 2)])
def test_trilu(rng, upper, k, shape):
    x = randn(rng, *shape)
    feeds = {"x": x}
    inits = [("k", np.array(k, np.int64))] if k is not None else []
    compare(node_model("Trilu", feeds, inits=inits, upper=upper), feeds)


@pytest.mark.parametrize("dtype", [np.int64, np.bool_])
def test_trilu_types_and_input_k(rng, dtype):
    x = (rng.integers(0, 3, size=(2, 5, 4)) > 0).astype(dtype)
    feeds = {"x": x, "k": np.array(1, np.int64)}
    compare(node_model("Trilu", feeds, upper=0), feeds)


# ----------------------------------------------------------------------------- ScatterND / ScatterElements
@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
@pytest.mark.parametrize("dtype", [np.float32, np.int64])
def test_scatter_nd(rng, reduction, dtype):
    data = rng.integers(-5, 5, size=(4, 5, 3)).astype(dtype)
    # distinct index tuples for "none" (duplicates are unspecified there), repeats for reductions
    if reduction == "none":
        flat = rng.choice(20, size=6, replace=False)
        idx = np.stack([flat // 5, flat % 5], axis=-1).reshape(2, 3, 2)
    else:
        idx = np.stack([rng.integers(-4, 4, size=(2, 3)), rng.integers(0, 5, size=(2, 3))], axis=-1)
    idx = idx.astype(np.int64)
    upd = rng.integers(-3, 4, size=(2, 3, 3)).astype(dtype)
    feeds = {"data": data, "idx": idx, "upd": upd}
    compare(node_model("ScatterND", feeds, opset=18, reduction=reduction), feeds)


def test_scatter_nd_full_index_and_empty(rng):
    data = randn(rng, 3, 4)
    idx = np.array([[0, 1], [2, 3]], np.int64)
    upd = randn(rng, 2)
    feeds = {"data": data, "idx": idx, "upd": upd}
    compare(node_model("ScatterND", feeds), feeds)
    feeds = {"data": data, "idx": np.zeros((0, 1), np.int64), "upd": np.zeros((0, 4), np.float32)}
    compare(node_model("ScatterND", feeds), feeds)


@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_scatter_elements(rng, reduction, axis):
    data = randn(rng, 4, 5)
    shape = (3, 4) if axis == 0 else (4, 3)
    dim = data.shape[axis]
    if reduction == "none":  # distinct targets along the axis (duplicates are unspecified there)
        a = axis % 2
        idx = np.stack([rng.permutation(dim)[: shape[a]] for _ in range(shape[1 - a])], axis=1 - a)
    else:
        idx = rng.integers(-dim, dim, size=shape)
    feeds = {"data": data, "idx": idx.astype(np.int64), "upd": randn(rng, *shape)}
    compare(node_model("ScatterElements", feeds, opset=18, axis=axis, reduction=reduction), feeds)


def test_scatter_errors():
    data = np.zeros((3, 4), np.float32)
    feeds = {"data": data, "idx": np.array([[0], [3]], np.int64), "upd": np.zeros((2, 4), np.float32)}
    model = Model.load(node_model("ScatterND", feeds).SerializeToString())
    with pytest.raises(hepinfer.InputError, match=r"n0.*index 3 is out of range"):
        model.predict(feeds)
    with pytest.raises(ValueError, match=r"n0.*reduction 'sum'"):
        node = node_model("ScatterElements", feeds, opset=18, reduction="sum")
        Model.load(node.SerializeToString())
    feeds["upd"] = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"n0.*updates \[2, 3\] must have shape \[2, 4\]"):
        Model.load(node_model("ScatterND", feeds).SerializeToString())


# ----------------------------------------------------------------------------- CumSum
@pytest.mark.parametrize("exclusive", [0, 1])
@pytest.mark.parametrize("reverse", [0, 1])
@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("dtype", [np.float32, np.int64])
def test_cumsum(rng, exclusive, reverse, axis, dtype):
    x = (rng.standard_normal((3, 5, 2)) * 5).astype(dtype)
    feeds = {"x": x}
    compare(
        node_model(
            "CumSum", feeds, inits=[("axis", np.array(axis, np.int64))], exclusive=exclusive, reverse=reverse
        ),
        feeds,
    )


def test_cumsum_empty_and_nan(rng):
    for x in (np.zeros((0, 3), np.float32), with_specials(randn(rng, 2, 6))):
        feeds = {"x": x, "axis": np.array(1, np.int64)}
        compare(node_model("CumSum", feeds), feeds)


# ----------------------------------------------------------------------------- ArgMax / ArgMin
@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("keepdims", [0, 1])
@pytest.mark.parametrize("last", [0, 1])
@pytest.mark.parametrize("dtype", [np.float32, np.int64])
def test_argmax(rng, op, axis, keepdims, last, dtype):
    x = rng.integers(-3, 3, size=(4, 6, 5)).astype(dtype)  # many ties
    compare(node_model(op, {"x": x}, axis=axis, keepdims=keepdims, select_last_index=last), {"x": x})


@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
def test_argmax_empty_and_nan(rng, op):
    x = np.zeros((0, 4), np.float32)
    compare(node_model(op, {"x": x}, axis=1), {"x": x})
    x = randn(rng, 3, 4)
    x[0, 2] = np.nan
    x[1, 0] = np.nan
    compare(node_model(op, {"x": x}, axis=1), {"x": x})


# ----------------------------------------------------------------------------- OneHot
# (indices, depth, values) types: the combinations onnxruntime implements
ONEHOT_TYPES = [
    (np.int64, np.int64, np.int64),
    (np.int64, np.float32, np.float32),
    (np.float32, np.float32, np.float32),
]


@pytest.mark.parametrize("axis", [-1, 0, 1])
@pytest.mark.parametrize("types", ONEHOT_TYPES, ids=["int-int-int", "int-float-float", "float-float-float"])
def test_onehot(rng, axis, types):
    it, dt, vt = types
    idx = rng.integers(-6, 8, size=(3, 4)).astype(it)  # some out of range: all off
    feeds = {"idx": idx}
    inits = [("depth", np.array(5, dt)), ("values", np.array([-1.5, 2.0]).astype(vt))]
    compare(node_model("OneHot", feeds, inits=inits, axis=axis), feeds)


def test_onehot_empty_and_depth_input(rng):
    inits = [("values", np.array([0, 7], np.int64))]
    for idx in (np.zeros((0, 2), np.int64), rng.integers(0, 3, size=(5,)).astype(np.int64)):
        feeds = {"idx": idx, "depth": np.array(3, np.int64)}
        compare(node_model("OneHot", feeds, inits=inits), feeds)


# ----------------------------------------------------------------------------- NonZero
@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.bool_])
@pytest.mark.parametrize("shape", [(3, 4, 2), (7,), (0, 3)])
def test_nonzero(rng, dtype, shape):
    x = (rng.integers(0, 3, size=shape) * (rng.random(shape) > 0.5)).astype(dtype)
    compare(node_model("NonZero", {"x": x}), {"x": x})


def test_nonzero_nan_and_all_zero():
    x = np.array([[np.nan, 0.0, -0.0], [0.0, 0.0, 1.0]], np.float32)
    compare(node_model("NonZero", {"x": x}), {"x": x})
    x = np.zeros((2, 2), np.float32)
    compare(node_model("NonZero", {"x": x}), {"x": x})


# ----------------------------------------------------------------------------- PRelu
@pytest.mark.parametrize(
    "slope_shape", [(1,), (5,), (3, 1), (2, 3, 5), (), (1, 1), (2, 1, 1), (3, 5), (2, 3, 1)]
)
def test_prelu(rng, slope_shape):
    x = with_specials(randn(rng, 2, 3, 5))
    feeds = {"x": x}
    compare(node_model("PRelu", feeds, inits=[("s", randn(rng, *slope_shape))]), feeds)


@pytest.mark.parametrize("batch", [0, 1, 4])
@pytest.mark.parametrize("slope_shape", [(16, 1, 1), (1, 1, 1), (16, 1, 11), (11,), (2, 16, 1, 11)])
def test_prelu_per_channel_blocks(rng, batch, slope_shape):
    """The block form (slopes along consecutive axes: per channel of a CNN, per feature) and the
    per-element form it falls back to ([16, 1, 11]: two separate axes), NaN and ±inf included."""
    if len(slope_shape) == 4 and batch != 2:
        slope_shape = (batch, *slope_shape[1:]) if batch else (1, *slope_shape[1:])
    x = with_specials(randn(rng, batch, 16, 7, 11))
    feeds = {"x": x}
    compare(node_model("PRelu", feeds, inits=[("s", randn(rng, *slope_shape))]), feeds)


def test_prelu_slope_must_broadcast_to_x(rng):
    feeds = {"x": randn(rng, 2, 3)}
    with pytest.raises(ValueError, match=r"n0.*slope \[4, 3\] does not broadcast to X \[2, 3\]"):
        Model.load(node_model("PRelu", feeds, inits=[("s", randn(rng, 4, 3))]).SerializeToString())


# ----------------------------------------------------------------------------- normalizations
@pytest.mark.parametrize("shape", [(2, 3, 7), (3, 4, 2, 5), (0, 3, 4)])
def test_instance_norm(rng, shape):
    C = shape[1]
    x = randn(rng, *shape) * 3 + 1
    feeds = {"x": x}
    inits = [("s", randn(rng, C)), ("b", randn(rng, C))]
    compare(
        node_model("InstanceNormalization", feeds, inits=inits, epsilon=1e-3), feeds, rtol=1e-4, atol=1e-5
    )


@pytest.mark.parametrize("opset", [18, 21])
@pytest.mark.parametrize(
    ("shape", "groups"), [((2, 6, 5), 3), ((3, 4, 2, 3), 1), ((2, 4, 3), 4), ((0, 4, 3), 2)]
)
def test_group_norm(rng, opset, shape, groups):
    C = shape[1]
    n = groups if opset < 21 else C
    feeds = {"x": randn(rng, *shape) * 2 - 1}
    inits = [("s", randn(rng, n)), ("b", randn(rng, n))]
    m = node_model(
        "GroupNormalization", feeds, inits=inits, opset=opset, out_type=F, num_groups=groups, epsilon=1e-4
    )
    if opset == 18:
        try:
            ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime may no longer implement the deprecated version
            pytest.skip(f"onnxruntime refuses GroupNormalization-18: {e}")
    # onnxruntime's function body fails on an empty batch (Reshape to [0, G, -1])
    ref = [np.zeros(shape, np.float32)] if shape[0] == 0 else None
    compare(m, feeds, rtol=1e-4, atol=1e-5, ref=ref)


def test_norm_errors(rng):
    feeds = {"x": randn(rng, 2, 6, 3)}
    inits = [("s", randn(rng, 6)), ("b", randn(rng, 6))]

    def load(op, feeds=feeds, **kw):
        Model.load(node_model(op, feeds, inits=inits, out_type=F, **kw).SerializeToString())

    with pytest.raises(ValueError, match=r"n0.*num_groups is required"):
        load("GroupNormalization", opset=21)
    with pytest.raises(ValueError, match=r"n0.*num_groups 4 does not divide the 6 channels"):
        load("GroupNormalization", opset=21, num_groups=4)
    with pytest.raises(ValueError, match=r"n0.*scale \[6\] must hold one value per group \(3\)"):
        load("GroupNormalization", opset=18, num_groups=3)
    with pytest.raises(ValueError, match=r"n0.*stash_type 10"):
        load("GroupNormalization", opset=21, num_groups=3, stash_type=10)
    with pytest.raises(ValueError, match=r"n0.*X must have rank >= 3"):  # as onnxruntime
        load("InstanceNormalization", feeds={"x": randn(rng, 2, 6)})


# ----------------------------------------------------------------------------- Einsum
EINSUM = [
    ("bhid,bhjd->bhij", [(2, 3, 4, 5), (2, 3, 6, 5)]),
    ("bhij,bhjd->bhid", [(2, 3, 4, 6), (2, 3, 6, 5)]),
    ("ij,jk", [(3, 4), (4, 5)]),
    ("ij,jk->ik", [(3, 0), (0, 5)]),
    ("ij->ji", [(3, 4)]),
    ("ii->i", [(4, 4)]),
    ("ii", [(4, 4)]),
    ("ij->", [(3, 4)]),
    ("i,i", [(5,), (5,)]),
    ("i,j->ij", [(3,), (4,)]),
    ("...ij,...jk->...ik", [(2, 3, 4, 5), (2, 3, 5, 2)]),
    ("...ij,...jk->...ik", [(2, 3, 4, 5), (3, 5, 2)]),  # ellipses of different ranks broadcast
    ("b...d,bd->b...", [(2, 3, 4, 5), (2, 5)]),
    ("bij,bjk,bkl->bil", [(2, 3, 4), (2, 4, 5), (2, 5, 3)]),
    ("Ab,bc", [(3, 4), (4, 2)]),
    ("ijk,jil->kl", [(3, 4, 5), (4, 3, 2)]),
    ("bid,bjd->bij", [(0, 3, 4), (0, 5, 4)]),
    ("i i , j->ij", [(3, 3), (2,)]),
]


@pytest.mark.parametrize(("eq", "shapes"), EINSUM, ids=[f"{e[0]}-{i}" for i, e in enumerate(EINSUM)])
def test_einsum(rng, eq, shapes):
    feeds = {f"x{k}": randn(rng, *s) for k, s in enumerate(shapes)}
    ref = None
    # onnxruntime 1.32 dies (SIGFPE) on empty operands and refuses the upper-case label: numpy there,
    # and the ellipses of different ranks (numpy broadcasts them)
    if any(0 in s for s in shapes) or eq == "Ab,bc" or len({len(s) for s in shapes}) > 1 and "..." in eq:
        ref = [np.einsum(eq.replace(" ", ""), *feeds.values()).astype(np.float32)]
    compare(node_model("Einsum", feeds, out_type=F, equation=eq), feeds, rtol=1e-4, atol=1e-5, ref=ref)


def test_einsum_int64(rng):
    feeds = {
        "a": rng.integers(-5, 5, size=(2, 3, 4)).astype(np.int64),
        "b": rng.integers(-5, 5, size=(2, 4)).astype(np.int64),
    }
    compare(node_model("Einsum", feeds, equation="bij,bj->bi"), feeds)


@pytest.mark.parametrize(
    ("eq", "msg"),
    [
        ("ij,jk->iz", "output label not in any input"),
        ("ij->ii", "repeated output label"),
        ("ij,jk,kl", "3 terms for 2 inputs"),
        ("ij,jk->i...", "ellipsis in the output but in no input"),
        ("i$", "unexpected character"),
    ],
)
def test_einsum_bad_equation(rng, eq, msg):
    feeds = {"a": randn(rng, 2, 2), "b": randn(rng, 2, 2)}
    if "," not in eq.split("->")[0]:
        del feeds["b"]
    with pytest.raises(ValueError, match=rf"n0.*{msg}"):
        Model.load(node_model("Einsum", feeds, equation=eq).SerializeToString())


def test_einsum_shape_mismatch(rng):
    feeds = {"a": randn(rng, 2, 3), "b": randn(rng, 2, 3)}
    m = node_model("Einsum", {"a": feeds["a"], "b": np.zeros((3, 3), np.float32)}, equation="ij,jk->ik")
    model = Model.load(m.SerializeToString())
    with pytest.raises(hepinfer.InputError):
        model.predict(feeds)


@pytest.mark.parametrize("op", ["Mish", "HardSwish", "Atanh"])
def test_new_activations_are_refused_by_the_cuda_plan(rng, op):
    # the CUDA executor has no code for them: its plan (checked here on the host reference
    # backend) must refuse the node rather than run it as the identity
    x = randn(rng, 3, 4)
    core = Model.load(node_model(op, {"x": x}, opset=18).SerializeToString())._core
    with pytest.raises(hepinfer.DeviceError, match=rf"n0.*\({op}\).*not supported on CUDA"):
        core._device_plan_reference([x])


def test_index_op_shape_errors_name_the_node(rng):
    def load(op, feeds, inits=(), **attrs):
        Model.load(node_model(op, feeds, inits=inits, out_type=F, **attrs).SerializeToString())

    with pytest.raises(ValueError, match=r"n0.*\(Trilu\).*rank >= 2"):
        load("Trilu", {"x": randn(rng, 4)})
    with pytest.raises(ValueError, match=r"n0.*\(CumSum\).*axis must be a scalar"):
        load("CumSum", {"x": randn(rng, 2, 3)}, inits=[("axis", np.array([0, 1], np.int64))])
    with pytest.raises(ValueError, match=r"n0.*\(OneHot\).*values must be \[off_value, on_value\]"):
        load(
            "OneHot",
            {"i": np.zeros(3, np.int64)},
            inits=[("d", np.array(4, np.int64)), ("v", np.zeros(3, np.float32))],
        )
    with pytest.raises(ValueError, match=r"n0.*\(ArgMax\).*axis 2 is out of range for rank 2"):
        load("ArgMax", {"x": randn(rng, 2, 3)}, axis=2)
    with pytest.raises(ValueError, match=r"n0.*\(ScatterElements\).*indices \[3, 3\] exceed data \[2, 3\]"):
        feeds = {"d": randn(rng, 2, 3), "i": np.zeros((3, 3), np.int64), "u": randn(rng, 3, 3)}
        load("ScatterElements", feeds, axis=1)


@pytest.mark.parametrize("op", ["Mish", "HardSwish", "Celu", "Shrink"])
@pytest.mark.parametrize("batch", [0, 1, 300])
def test_activation_after_dense_layer(rng, op, batch):
    # MatMul + Add + activation: the shape the fusion pass folds into one Dense layer (once it
    # lists these activations); the result must not depend on whether it does
    w, b = randn(rng, 6, 9), randn(rng, 9)
    m = make(
        [
            helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
            helper.make_node("Add", ["h", "b"], ["hb"], name="bias"),
            helper.make_node(op, ["hb"], ["y"], name="act"),
        ],
        [("x", F, ["batch", 6])],
        [("y", F, ["batch", 9])],
        inits=[("w", w), ("b", b)],
        opset=18,
    )
    x = randn(rng, batch, 6) * 3
    compare(m, {"x": x}, rtol=1e-5, atol=1e-5)
