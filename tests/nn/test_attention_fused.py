"""The fused attention and erf-GELU nodes (cpp/src/nn/attention_pass.cpp, ops_attention.cpp)
against onnxruntime on fresh inputs: graphs written node by node as torch's TorchScript exporter
writes them (MatMul / Mul / Add / Softmax / MatMul with Transposes around), with and without
additive and boolean masks, fully masked rows, batch 0, 1 and several, sequence lengths 1 and
odd, several head counts; and patterns that differ from the fused one, which must run unfused.

Which path a graph took is seen in the error of a mask that does not broadcast: the fused node
names itself (op type "MatMul+Add+Softmax+MatMul"), the unfused graph names its Add."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper  # noqa: E402

from hepinfer import InputError  # noqa: E402
from hepinfer.nn import Model  # noqa: E402

FUSED = "MatMul+Add+Softmax+MatMul"
RTOL, ATOL = 1e-5, 1e-6


def _dims(prefix: str, rank: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(rank)]


def attention_graph(
    *,
    mask: str = "float",
    mask_rank: int = 4,
    swap_add: bool = False,
    softmax_axis: int = -1,
    weights_output: bool = False,
    scale: float = 0.25,
) -> bytes:
    """softmax(Q*s @ transpose(K) (+ mask)) @ V as the TorchScript exporter writes SDPA.
    mask: "float" (additive), "bool" (True = attend, through Where as torch exports it) or
    "none"."""
    f32 = TensorProto.FLOAT
    inputs = [
        helper.make_tensor_value_info("q", f32, _dims("q", 4)),
        helper.make_tensor_value_info("k", f32, _dims("k", 4)),
        helper.make_tensor_value_info("v", f32, _dims("v", 4)),
    ]
    inits = [helper.make_tensor("scale", f32, [], [scale])]
    nodes = [
        helper.make_node("Mul", ["q", "scale"], ["qs"]),
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]),
        helper.make_node("MatMul", ["qs", "kt"], ["scores"]),
    ]
    logits = "scores"
    if mask != "none":
        mtype = TensorProto.BOOL if mask == "bool" else f32
        inputs.append(helper.make_tensor_value_info("mask", mtype, _dims("m", mask_rank)))
        additive = "mask"
        if mask == "bool":
            inits += [
                helper.make_tensor("zero", f32, [], [0.0]),
                helper.make_tensor("minf", f32, [], [-np.inf]),
            ]
            nodes.append(helper.make_node("Where", ["mask", "zero", "minf"], ["additive"]))
            additive = "additive"
        add_in = [additive, "scores"] if swap_add else ["scores", additive]
        nodes.append(helper.make_node("Add", add_in, ["logits"]))
        logits = "logits"
    nodes += [
        helper.make_node("Softmax", [logits], ["p"], axis=softmax_axis),
        helper.make_node("MatMul", ["p", "v"], ["out"]),
    ]
    outputs = [helper.make_tensor_value_info("out", f32, _dims("o", 4))]
    if weights_output:
        nodes.append(helper.make_node("ReduceSum", ["p"], ["psum"], keepdims=1))
        outputs.append(helper.make_tensor_value_info("psum", f32, [1, 1, 1, 1]))
    graph = helper.make_graph(nodes, "attention", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def qkv(rng, batch, heads, t, s, d, dv=None):
    dv = d if dv is None else dv

    def normal(*shape):
        return np.asarray(rng.standard_normal(shape), dtype=np.float32)

    return {
        "q": normal(batch, heads, t, d),
        "k": normal(batch, heads, s, d),
        "v": normal(batch, heads, s, dv),
    }


def run_both(data: bytes, feeds: dict[str, np.ndarray]):
    ref = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, feeds)
    got = Model.load(data).predict(dict(feeds), n_threads=1)
    got = list(got.values()) if isinstance(got, dict) else [got]
    return got, ref


def check(data: bytes, feeds: dict[str, np.ndarray]):
    got, ref = run_both(data, feeds)
    for g, r in zip(got, ref):
        assert g.shape == r.shape
        np.testing.assert_allclose(g, r, rtol=RTOL, atol=ATOL, equal_nan=True)
    return got[0], ref[0]


def fused(data: bytes, feeds: dict[str, np.ndarray]) -> bool:
    """Whether the graph ran through the fused node: a mask one column too wide is refused by
    the fused node (named in the error) or by the unfused Add."""
    bad = dict(feeds)
    m = bad["mask"]
    bad["mask"] = np.concatenate([m, m[..., :1]], axis=-1) if m.shape[-1] > 1 else np.repeat(m, 3, axis=-1)
    with pytest.raises(InputError) as err:
        Model.load(data).predict(bad, n_threads=1)
    return FUSED in str(err.value)


@pytest.mark.parametrize("heads", [1, 3, 8])
@pytest.mark.parametrize(("t", "s"), [(1, 1), (1, 9), (7, 7), (17, 33), (40, 100)])
def test_additive_mask_matches_onnxruntime(rng, heads, t, s):
    data = attention_graph()
    feeds = qkv(rng, 3, heads, t, s, 16)
    feeds["mask"] = np.asarray(rng.standard_normal((3, heads, t, s)), dtype=np.float32)
    check(data, feeds)
    assert fused(data, feeds)


@pytest.mark.parametrize("batch", [0, 1, 4])
def test_batch_sizes_and_head_dims(rng, batch):
    data = attention_graph()
    feeds = qkv(rng, batch, 2, 5, 11, 7, dv=3)
    feeds["mask"] = np.asarray(rng.standard_normal((batch, 2, 5, 11)), dtype=np.float32)
    got, ref = check(data, feeds)
    assert got.shape == (batch, 2, 5, 3)


def test_key_padding_mask_with_fully_masked_rows(rng):
    """A (batch, 1, 1, s) key padding mask of 0 / -inf (ParT's, nn.MultiheadAttention's): a jet
    with every key masked gives NaN in onnxruntime (softmax over -inf only), and in hepinfer."""
    data = attention_graph(swap_add=True)
    batch, s = 4, 13
    feeds = qkv(rng, batch, 4, s, s, 8)
    lengths = np.array([s, 0, 1, 6])
    mask = np.where(np.arange(s)[None, :] < lengths[:, None], 0.0, -np.inf).astype(np.float32)
    feeds["mask"] = mask.reshape(batch, 1, 1, s)
    got, ref = check(data, feeds)
    assert np.isnan(ref[1]).all() and np.isnan(got[1]).all()
    assert np.isfinite(got[[0, 2, 3]]).all()
    assert fused(data, feeds)


@pytest.mark.parametrize("mask_shape", [(1, 1, 1, 9), (1, 1, 5, 9), (2, 1, 5, 9), (2, 3, 1, 9), (1, 1, 5, 1)])
def test_broadcast_masks(rng, mask_shape):
    data = attention_graph()
    feeds = qkv(rng, 2, 3, 5, 9, 4)
    feeds["mask"] = np.asarray(rng.standard_normal(mask_shape), dtype=np.float32)
    check(data, feeds)


@pytest.mark.parametrize("mask_rank", [1, 2])
def test_low_rank_masks(rng, mask_rank):
    data = attention_graph(mask_rank=mask_rank)
    feeds = qkv(rng, 2, 3, 5, 9, 4)
    feeds["mask"] = np.asarray(rng.standard_normal((5, 9)[2 - mask_rank :]), dtype=np.float32)
    check(data, feeds)


def test_query_broadcast_along_the_mask_rows(rng):
    """One query row (t = 1) against a mask with 6 rows: the Add broadcasts the scores."""
    data = attention_graph()
    feeds = qkv(rng, 2, 2, 1, 9, 4)
    feeds["mask"] = np.asarray(rng.standard_normal((2, 2, 6, 9)), dtype=np.float32)
    got, _ = check(data, feeds)
    assert got.shape == (2, 2, 6, 4)


def test_boolean_mask(rng):
    """torch's boolean attn_mask (True = attend) exported through Where(mask, 0, -inf) + Add;
    rows that see no key are NaN in both."""
    data = attention_graph(mask="bool")
    feeds = qkv(rng, 2, 4, 6, 10, 8)
    mask = rng.random((2, 1, 6, 10)) > 0.4
    mask[0, 0, 2, :] = False
    mask[1, 0, 3, :] = True
    feeds["mask"] = mask
    got, ref = check(data, feeds)
    assert np.isnan(ref[0, :, 2]).all() and np.isnan(got[0, :, 2]).all()


def test_no_mask(rng):
    data = attention_graph(mask="none")
    feeds = qkv(rng, 3, 2, 9, 17, 16)
    check(data, feeds)


def test_extreme_scores_and_nan(rng):
    """Large logits (softmax must subtract the row maximum), -inf entries and a NaN in Q."""
    data = attention_graph(scale=30.0)
    feeds = qkv(rng, 2, 2, 5, 12, 8)
    mask = np.asarray(rng.standard_normal((2, 2, 5, 12)), dtype=np.float32)
    mask[0, 1, :, 3:7] = -np.inf
    feeds["mask"] = mask
    feeds["q"][1, 0, 2, 1] = np.nan
    got, ref = run_both(data, feeds)
    # logits of ~100 carry ~1e-5 of summation-order rounding into the exponent: the tolerance
    # of the other tests times ten
    np.testing.assert_allclose(got[0], ref[0], rtol=10 * RTOL, atol=10 * ATOL, equal_nan=True)
    assert np.isnan(got[0][1, 0, 2]).all()


@pytest.mark.parametrize("variant", ["softmax_axis", "weights_used"])
def test_patterns_that_differ_run_unfused(rng, variant):
    """A Softmax over another axis than the last, or attention weights that are also an output,
    are not the fused pattern: the graph runs node by node, with the same results."""
    kwargs = {"softmax_axis": 2} if variant == "softmax_axis" else {"weights_output": True}
    data = attention_graph(**kwargs)
    feeds = qkv(rng, 2, 3, 6, 6, 4)
    feeds["mask"] = np.asarray(rng.standard_normal((2, 3, 6, 6)), dtype=np.float32)
    check(data, feeds)
    assert not fused(data, feeds)


def test_fused_equals_unoptimised_load(rng):
    """The fused graph against the same file loaded without any fusion (optimize=False)."""
    from hepinfer import _core

    data = attention_graph()
    feeds = qkv(rng, 3, 4, 21, 21, 16)
    feeds["mask"] = np.asarray(rng.standard_normal((3, 1, 1, 21)), dtype=np.float32)
    plain = Model(_core.Model.load_from_memory(data, optimize=False))
    np.testing.assert_allclose(
        Model.load(data).predict(dict(feeds)), plain.predict(dict(feeds)), rtol=RTOL, atol=ATOL
    )


# ------------------------------------------------------------------------ erf GELU


def gelu_graph(
    div: float = 1.4142135, one: float = 1.0, half: float = 0.5, erf_used_twice: bool = False
) -> bytes:
    """x -> Mul(Mul(x, Add(Erf(Div(x, div)), one)), half), as torch exports nn.GELU()."""
    f32 = TensorProto.FLOAT
    inits = [
        helper.make_tensor("c", f32, [], [div]),
        helper.make_tensor("one", f32, [], [one]),
        helper.make_tensor("half", f32, [1], [half]),
    ]
    nodes = [
        helper.make_node("Div", ["x", "c"], ["a"]),
        helper.make_node("Erf", ["a"], ["e"]),
        helper.make_node("Add", ["one", "e"], ["e1"]),
        helper.make_node("Mul", ["x", "e1"], ["xe"]),
        helper.make_node("Mul", ["half", "xe"], ["y"]),
    ]
    outputs = [helper.make_tensor_value_info("y", f32, ["b", "n"])]
    if erf_used_twice:
        nodes.append(helper.make_node("Neg", ["e"], ["ne"]))
        outputs.append(helper.make_tensor_value_info("ne", f32, ["b", "n"]))
    graph = helper.make_graph(
        nodes, "gelu", [helper.make_tensor_value_info("x", f32, ["b", "n"])], outputs, initializer=inits
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


@pytest.mark.parametrize("consts", [(1.4142135, 1.0, 0.5), (1.3, 0.7, 2.0)])
@pytest.mark.parametrize("erf_used_twice", [False, True])
def test_erf_gelu(rng, consts, erf_used_twice):
    x = np.asarray(rng.standard_normal((7, 37)) * 4, dtype=np.float32)
    x[0, :12] = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-30, -1e-30, 9.0, -9.0, 30.0, -30.0, 0.927]
    data = gelu_graph(*consts, erf_used_twice=erf_used_twice)
    got, ref = run_both(data, {"x": x})
    for g, r in zip(got, ref):
        assert g.shape == r.shape  # the rank-1 constant keeps the output at rank 2
        np.testing.assert_allclose(g, r, rtol=RTOL, atol=ATOL, equal_nan=True)


def test_erf_gelu_empty_and_scalar_like(rng):
    data = gelu_graph()
    for shape in [(0, 5), (1, 1), (3, 8), (2, 9)]:
        x = np.asarray(rng.standard_normal(shape), dtype=np.float32)
        got, ref = run_both(data, {"x": x})
        np.testing.assert_allclose(got[0], ref[0], rtol=RTOL, atol=ATOL)


# ------------------------------------------------------------------------ Softmax op


@pytest.mark.parametrize("length", [1, 7, 8, 9, 100, 1000])
def test_softmax_rows(rng, length):
    """The row softmax that the Softmax op shares with the fused node: rows of any length,
    -inf entries, a row of only -inf (NaN) and a NaN entry (NaN row)."""
    f32 = TensorProto.FLOAT
    graph = helper.make_graph(
        [helper.make_node("Softmax", ["x"], ["y"], axis=-1)],
        "softmax",
        [helper.make_tensor_value_info("x", f32, ["b", "n"])],
        [helper.make_tensor_value_info("y", f32, ["b", "n"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    data = model.SerializeToString()
    x = np.asarray(rng.standard_normal((5, length)) * 10, dtype=np.float32)
    x[1, : length // 2] = -np.inf
    x[2, :] = -np.inf
    x[3, length // 2] = np.nan
    x[4, 0] = 80.0
    got, ref = run_both(data, {"x": x})
    np.testing.assert_allclose(got[0], ref[0], rtol=RTOL, atol=ATOL, equal_nan=True)
    assert np.isnan(got[0][2]).all() and np.isnan(got[0][3]).all()


def test_torch_gelu_stays_a_gelu_for_the_device_plan(rng):
    """torch's GELU constants (sqrt 2, 1, 0.5 as scalars) fuse into an ordinary Gelu activation,
    which the CUDA plan runs too: its host reference backend agrees with onnxruntime."""
    f32 = TensorProto.FLOAT
    inits = [
        helper.make_tensor("c", f32, [], [1.4142135]),
        helper.make_tensor("one", f32, [], [1.0]),
        helper.make_tensor("half", f32, [], [0.5]),
    ]
    nodes = [
        helper.make_node("Div", ["x", "c"], ["a"]),
        helper.make_node("Erf", ["a"], ["e"]),
        helper.make_node("Add", ["e", "one"], ["e1"]),
        helper.make_node("Mul", ["x", "e1"], ["xe"]),
        helper.make_node("Mul", ["xe", "half"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "gelu",
        [helper.make_tensor_value_info("x", f32, ["b", 9])],
        [helper.make_tensor_value_info("y", f32, ["b", 9])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    data = model.SerializeToString()
    x = np.asarray(rng.standard_normal((6, 9)) * 3, dtype=np.float32)
    ref = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    hep = Model.load(data)
    np.testing.assert_allclose(hep.predict(x), ref, rtol=RTOL, atol=ATOL)
    (plan,) = hep._core._device_plan_reference([x])
    np.testing.assert_allclose(np.asarray(plan).reshape(ref.shape), ref, rtol=RTOL, atol=ATOL)
