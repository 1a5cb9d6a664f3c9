"""The ONNX If operator: branches inlined under guards, against onnxruntime (runtime and
constant conditions, outer-scope reads, nested Ifs, torch exports) and malformed sub-graphs."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from onnx import TensorProto, helper, numpy_helper

import hepinfer
from hepinfer.nn import Model
from tests.nn.onnx_graphs import branch, make, squeeze_if_one

F, I, B = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL


def run_ort(m, feeds):
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, feeds)


def compare(m, feeds):
    """Evaluates `m` with hepinfer and onnxruntime and checks every output."""
    ref = run_ort(m, feeds)
    mine = Model.load(m.SerializeToString())
    out = mine.predict(dict(feeds))
    if not isinstance(out, dict):
        out = {mine.outputs[0].name: out}
    got = [out[t.name] for t in mine.outputs]
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        assert g.shape == r.shape and g.dtype == r.dtype, (g.shape, r.shape, g.dtype, r.dtype)
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6, equal_nan=True)


def randn(rng, *shape):
    return np.asarray(rng.standard_normal(shape), dtype=np.float32)


def test_runtime_condition_both_branches_in_one_process(rng):
    m = squeeze_if_one()
    model = Model.load(m.SerializeToString())
    for k in (1, 4, 1, 2):  # then, else, then again: the workspace is reused between them
        x = randn(rng, 5, k, 3)
        ref = run_ort(m, {"x": x})[0]
        got = model.predict({"x": x})
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref, rtol=1e-6)
    # batch sizes 0 and 1
    for n in (0, 1):
        compare(m, {"x": randn(rng, n, 1, 3)})
        compare(m, {"x": randn(rng, n, 2, 3)})


def several_nodes_if():
    """Branches of several nodes reading outer values, a branch initializer, branch-local
    names repeating outer ones, two outputs of different shapes per branch."""
    s = helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0, name="sum")
    zero = helper.make_node("Constant", [], ["zero"], value=numpy_helper.from_array(np.array(0, np.float32)))
    cond = helper.make_node("Greater", ["s", "zero"], ["cond"], name="gt")
    then_b = branch(
        [
            helper.make_node("Mul", ["x", "w"], ["t"], name="mul"),  # w: an outer initializer
            helper.make_node("Add", ["t", "bias"], ["s2"], name="add"),
            helper.make_node("Tanh", ["s2"], ["out0"], name="tanh"),
            helper.make_node("Identity", ["x"], ["out1"], name="idx"),
        ],
        [("out0", F, None), ("out1", F, None)],
        inits={"bias": np.array([1.0, -2.0, 0.5], np.float32)},
    )
    else_b = branch(
        [
            helper.make_node("Transpose", ["x"], ["tr"], perm=[1, 0]),
            helper.make_node("Neg", ["tr"], ["out0"], name="neg"),
            helper.make_node("Abs", ["x"], ["out1"], name="abs"),
        ],
        [("out0", F, None), ("out1", F, None)],
    )
    iff = helper.make_node("If", ["cond"], ["a", "b"], then_branch=then_b, else_branch=else_b, name="if")
    post = helper.make_node("Mul", ["b", "w"], ["c"], name="post")
    return make(
        [s, zero, cond, iff, post],
        [("x", F, ["n", 3])],
        [("a", F, None), ("c", F, None), ("s", F, None)],
        inits={"w": np.array([0.5, 2.0, -1.0], np.float32)},
    )


def test_several_nodes_outer_values_and_different_shapes(rng):
    m = several_nodes_if()
    model = Model.load(m.SerializeToString())
    seen = set()
    for _ in range(12):
        x = randn(rng, int(rng.integers(1, 5)), 3)
        ref = run_ort(m, {"x": x})
        got = model.predict({"x": x})
        seen.add(bool(x.sum() > 0))
        for name, r in zip(("a", "c", "s"), ref):
            assert got[name].shape == r.shape
            np.testing.assert_allclose(got[name], r, rtol=1e-5, atol=1e-6)
    assert seen == {True, False}
    x = randn(rng, 2, 3)
    x[0, 0] = np.nan  # NaN sum: the condition is false
    compare(m, {"x": x})


def test_branch_output_that_is_an_outer_value(rng):
    """onnxruntime refuses this (it wants an Identity in between); the ONNX spec allows it."""
    then_b = branch([], [("x", F, None)])
    else_b = branch([], [("w", F, None)])
    m = make(
        [helper.make_node("If", ["c"], ["y"], then_branch=then_b, else_branch=else_b, name="if")],
        [("x", F, ["n", 3]), ("c", B, [])],
        [("y", F, None)],
        inits={"w": np.array([0.5, 2.0, -1.0], np.float32)},
    )
    model = Model.load(m.SerializeToString())
    x = randn(rng, 4, 3)
    np.testing.assert_array_equal(model.predict({"x": x, "c": np.array(True)}), x)
    np.testing.assert_array_equal(model.predict({"x": x, "c": np.array(False)}), [0.5, 2.0, -1.0])


def test_nested_if(rng):
    inner_then = branch([helper.make_node("Sin", ["x"], ["r"])], [("r", F, None)])
    inner_else = branch([helper.make_node("Cos", ["x"], ["r"])], [("r", F, None)])
    then_b = branch(
        [
            helper.make_node(
                "If", ["c2"], ["i"], then_branch=inner_then, else_branch=inner_else, name="inner"
            ),
            helper.make_node("Add", ["i", "x"], ["r"]),
        ],
        [("r", F, None)],
    )
    else_b = branch([helper.make_node("Exp", ["x"], ["r"])], [("r", F, None)])
    m = make(
        [helper.make_node("If", ["c1"], ["y"], then_branch=then_b, else_branch=else_b, name="outer")],
        [("x", F, ["n", 4]), ("c1", B, []), ("c2", B, [])],
        [("y", F, None)],
    )
    model = Model.load(m.SerializeToString())
    x = randn(rng, 3, 4)
    for c1 in (True, False):
        for c2 in (True, False):
            feeds = {"x": x, "c1": np.array(c1), "c2": np.array(c2)}
            np.testing.assert_allclose(model.predict(feeds), run_ort(m, feeds)[0], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("value", [True, False])
def test_constant_condition_is_folded(rng, value):
    then_b = branch(
        [
            helper.make_node(
                "Constant", [], ["axes"], value=numpy_helper.from_array(np.array([1], np.int64))
            ),
            helper.make_node("Squeeze", ["x", "axes"], ["r"]),
        ],
        [("r", F, None)],
    )
    else_b = branch([helper.make_node("Relu", ["x"], ["r"])], [("r", F, None)])
    m = make(
        [helper.make_node("If", ["c"], ["y"], then_branch=then_b, else_branch=else_b, name="if")],
        [("x", F, ["n", 1, 3])],
        [("y", F, None)],
        inits={"c": np.array(value)},
    )
    compare(m, {"x": randn(rng, 4, 1, 3)})
    compare(m, {"x": randn(rng, 0, 1, 3)})
    # the untaken branch is gone: an else branch that could not run on these shapes is never tried
    if value:
        bad_else = branch(
            [helper.make_node("Squeeze", ["x", "ax0"], ["r"])],
            [("r", F, None)],
            inits={"ax0": np.array([2], np.int64)},
        )
        m2 = make(
            [helper.make_node("If", ["c"], ["y"], then_branch=then_b, else_branch=bad_else, name="if")],
            [("x", F, [2, 1, 3])],
            [("y", F, None)],
            inits={"c": np.array(True)},
        )
        x = randn(rng, 2, 1, 3)
        np.testing.assert_allclose(Model.load(m2.SerializeToString()).predict({"x": x}), x[:, 0, :])


def test_condition_that_is_not_a_bool_scalar_is_an_input_error(rng):
    then_b = branch([helper.make_node("Relu", ["x"], ["r"])], [("r", F, None)])
    else_b = branch([helper.make_node("Neg", ["x"], ["r"])], [("r", F, None)])
    m = make(
        [helper.make_node("If", ["c"], ["y"], then_branch=then_b, else_branch=else_b, name="if")],
        [("x", F, ["n", 3]), ("c", B, ["k"])],
        [("y", F, None)],
    )
    model = Model.load(m.SerializeToString())
    x = randn(rng, 2, 3)
    np.testing.assert_allclose(model.predict({"x": x, "c": np.array([False])}), -x)
    with pytest.raises(hepinfer.InputError, match="not a single bool"):
        model.predict({"x": x, "c": np.array([True, False])})


class Squeeze1(torch.nn.Module):
    def forward(self, x):
        return torch.relu(x.squeeze(1)) * 2.0


def test_torch_exported_squeeze_makes_an_if(rng):
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # the TorchScript exporter is deprecated; it is the one that writes If
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Squeeze1(),
            (torch.zeros(2, 1, 3),),
            buf,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "n", 1: "k"}, "y": {0: "n"}},
            opset_version=17,
            dynamo=False,
        )
    m = onnx.load_from_string(buf.getvalue())
    assert "If" in [n.op_type for n in m.graph.node]
    for k in (1, 3):
        compare(m, {"x": randn(rng, 4, k, 3)})


def bad_if(**change):
    then_b = branch([helper.make_node("Relu", ["x"], ["r"])], [("r", F, None)])
    else_b = branch([helper.make_node("Cast", ["x"], ["r"], to=I)], [("r", I, None)])
    attrs = {"then_branch": then_b, "else_branch": else_b}
    attrs.update(change)
    attrs = {k: v for k, v in attrs.items() if v is not None}
    return make(
        [helper.make_node("If", ["c"], ["y"], name="if", **attrs)],
        [("x", F, ["n", 3]), ("c", B, [])],
        [("y", F, None)],
    )


def test_malformed_branches_are_clear_errors():
    ok_else = branch([helper.make_node("Neg", ["x"], ["r"])], [("r", F, None)])
    with pytest.raises(hepinfer.ModelFormatError, match="node 'if' \\(If\\): has no else_branch attribute"):
        Model.load(bad_if(else_branch=None).SerializeToString())
    two = branch([helper.make_node("Neg", ["x"], ["r"])], [("r", F, None), ("x", F, None)])
    with pytest.raises(hepinfer.ModelFormatError, match="else_branch has 2 outputs, the If has 1"):
        Model.load(bad_if(else_branch=two).SerializeToString())
    with pytest.raises(
        hepinfer.ModelFormatError, match="output 0 is float32 in then_branch but int64 in else_branch"
    ):
        Model.load(bad_if().SerializeToString())
    missing = branch([helper.make_node("Neg", ["x"], ["r"])], [("q", F, None)])
    with pytest.raises(hepinfer.ModelFormatError, match="else_branch output 'q' is never produced"):
        Model.load(bad_if(else_branch=missing).SerializeToString())
    unknown = branch([helper.make_node("Neg", ["nope"], ["r"])], [("r", F, None)])
    with pytest.raises(hepinfer.ModelFormatError, match="input 'nope' is not produced"):
        Model.load(bad_if(else_branch=unknown).SerializeToString())
    unsupported = branch([helper.make_node("Loop", ["x"], ["r"], name="lp")], [("r", F, None)])
    with pytest.raises(hepinfer.ModelFormatError, match="'Loop' is not supported"):
        Model.load(bad_if(else_branch=unsupported).SerializeToString())
    twice = branch(
        [helper.make_node("Neg", ["x"], ["r"]), helper.make_node("Abs", ["x"], ["r"], name="abs")],
        [("r", F, None)],
    )
    with pytest.raises(
        hepinfer.ModelFormatError, match="abs' \\(Abs\\): output 'r' is defined twice in the branch"
    ):
        Model.load(bad_if(else_branch=twice).SerializeToString())
    with pytest.raises(hepinfer.ModelFormatError, match="else_branch is not a graph"):
        Model.load(bad_if(else_branch=3).SerializeToString())
    # a correct pair for contrast
    Model.load(bad_if(else_branch=ok_else).SerializeToString())


def test_too_deep_nesting_is_refused():
    body = branch([helper.make_node("Neg", ["x"], ["r"])], [("r", F, None)])
    for _ in range(12):
        body = branch(
            [helper.make_node("If", ["c"], ["r"], then_branch=body, else_branch=body)],
            [("r", F, None)],
        )
    m = make(
        [helper.make_node("If", ["c"], ["y"], then_branch=body, else_branch=body)],
        [("x", F, ["n", 3]), ("c", B, [])],
        [("y", F, None)],
    )
    with pytest.raises(hepinfer.ModelFormatError, match="nested deeper than 8"):
        Model.load(m.SerializeToString())


def test_sub_graphs_of_other_ops_are_refused():
    body = branch([helper.make_node("Neg", ["x"], ["r"])], [("r", F, None)])
    m = make(
        [helper.make_node("Neg", ["x"], ["y"], name="n", body=body)],
        [("x", F, ["n", 3])],
        [("y", F, None)],
    )
    with pytest.raises(hepinfer.ModelFormatError, match="only If is supported"):
        Model.load(m.SerializeToString())


def test_threads_taking_different_branches_at_once(rng):
    """Guards live in each thread's workspace: threads sharing one model take either branch."""
    import threading

    m = squeeze_if_one()
    model = Model.load(m.SerializeToString())
    xs = [randn(rng, 3, 1 + i % 3, 3) for i in range(8)]
    refs = [run_ort(m, {"x": x})[0] for x in xs]
    errors = []

    def work(i):
        try:
            for _ in range(50):
                got = model.predict({"x": xs[i]})
                assert got.shape == refs[i].shape
                np.testing.assert_allclose(got, refs[i], rtol=1e-6)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    # and one call split over threads by rows
    x = randn(rng, 300, 1, 3)
    np.testing.assert_allclose(model.predict({"x": x}, n_threads=2), run_ort(m, {"x": x})[0], rtol=1e-6)
