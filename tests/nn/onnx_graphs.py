"""Small ONNX graphs built with onnx.helper that several test modules of tests/nn share."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.nn.ort_compare import make

F, I, B = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL


def branch(nodes, outputs, inits=()):
    """A branch graph; outputs are (name, elem_type, shape) triples."""
    return helper.make_graph(
        nodes,
        "branch",
        [],
        [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
        initializer=[numpy_helper.from_array(np.asarray(v), name=k) for k, v in dict(inits).items()],
    )


def squeeze_if_one(axis=1):
    """The TorchScript exporter's squeeze(axis) on a dimension unknown at export."""
    shape = helper.make_node("Shape", ["x"], ["s"], name="shape")
    idx = helper.make_node(
        "Constant", [], ["i"], value=numpy_helper.from_array(np.array(axis, np.int64)), name="ci"
    )
    one = helper.make_node(
        "Constant", [], ["one"], value=numpy_helper.from_array(np.array(1, np.int64)), name="c1"
    )
    gather = helper.make_node("Gather", ["s", "i"], ["d"], axis=0, name="gather")
    eq = helper.make_node("Equal", ["d", "one"], ["cond"], name="eq")
    then_b = branch(
        [
            helper.make_node(
                "Constant", [], ["axes"], value=numpy_helper.from_array(np.array([axis], np.int64))
            ),
            helper.make_node("Squeeze", ["x", "axes"], ["y_then"], name="sq"),
        ],
        [("y_then", F, None)],
    )
    else_b = branch([helper.make_node("Identity", ["x"], ["y_else"], name="id")], [("y_else", F, None)])
    iff = helper.make_node("If", ["cond"], ["y"], then_branch=then_b, else_branch=else_b, name="if")
    relu = helper.make_node("Relu", ["y"], ["z"], name="relu")
    return make([shape, idx, one, gather, eq, iff, relu], [("x", F, ["n", "k", 3])], [("z", F, None)])


def small_mlp(rng: np.random.Generator, unsupported: bool = False) -> onnx.ModelProto:
    """x[batch, 6] -> MatMul, Add, Relu, MatMul -> Softmax (or, with `unsupported`, Hardmax and a
    node of a custom domain) -> y[batch, 3]; the nodes are named mm1, add1, relu1, mm2, ..."""
    w1 = numpy_helper.from_array(rng.normal(size=(6, 8)).astype(np.float32), "w1")
    b1 = numpy_helper.from_array(rng.normal(size=(8,)).astype(np.float32), "b1")
    w2 = numpy_helper.from_array(rng.normal(size=(8, 3)).astype(np.float32), "w2")
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h0"], name="mm1"),
        helper.make_node("Add", ["h0", "b1"], ["h1"], name="add1"),
        helper.make_node("Relu", ["h1"], ["h2"], name="relu1"),
        helper.make_node("MatMul", ["h2", "w2"], ["z"], name="mm2"),
    ]
    if unsupported:
        nodes.append(helper.make_node("Hardmax", ["z"], ["hm"], name="hardmax", axis=-1))
        nodes.append(helper.make_node("Custom", ["hm"], ["y"], name="custom", domain="com.example"))
    else:
        nodes.append(helper.make_node("Softmax", ["z"], ["y"], name="softmax", axis=-1))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [w1, b1, w2],
    )
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid("com.example", 1)] if unsupported else [])
    m = helper.make_model(graph, opset_imports=opsets, producer_name="test", producer_version="1.0")
    m.ir_version = 8
    return m
