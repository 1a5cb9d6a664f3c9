"""Writes the small ONNX models of tests/data/nn (used by tests/cpp/test_threads.cpp).

    python tests/data/nn/make_models.py

* mlp_8_32_16_2.onnx: x[batch, 8] -> Gemm(32) -> Relu -> Gemm(16) -> Tanh -> Gemm(2) -> Softmax
* topk_particles.onnx: x[batch, 16, 4] (16 particles, 4 features): the 4 particles with the
  largest feature 0 (TopK + GatherElements), flattened -> Gemm(8) -> Relu -> Gemm(2) -> Sigmoid

Weights come from a fixed seed; the files are a few kB.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = Path(__file__).resolve().parent
OPSET = [helper.make_opsetid("", 17)]


def _init(name: str, array: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(array, name=name)


def mlp(rng: np.random.Generator) -> onnx.ModelProto:
    sizes = [8, 32, 16, 2]
    inits, nodes = [], []
    prev = "x"
    acts = ["Relu", "Tanh", "Softmax"]
    for i in range(3):
        w = rng.normal(0.0, 1.0 / np.sqrt(sizes[i]), size=(sizes[i], sizes[i + 1])).astype(np.float32)
        b = rng.normal(0.0, 0.1, size=sizes[i + 1]).astype(np.float32)
        inits += [_init(f"w{i}", w), _init(f"b{i}", b)]
        nodes.append(helper.make_node("Gemm", [prev, f"w{i}", f"b{i}"], [f"h{i}"], name=f"dense{i}"))
        out = "y" if i == 2 else f"a{i}"
        attrs = {"axis": 1} if acts[i] == "Softmax" else {}
        nodes.append(helper.make_node(acts[i], [f"h{i}"], [out], name=f"act{i}", **attrs))
        prev = out
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        inits,
    )
    return helper.make_model(graph, opset_imports=OPSET, producer_name="hepinfer-tests")


def topk_particles(rng: np.random.Generator) -> onnx.ModelProto:
    w1 = rng.normal(0.0, 0.25, size=(16, 8)).astype(np.float32)
    b1 = rng.normal(0.0, 0.1, size=8).astype(np.float32)
    w2 = rng.normal(0.0, 0.35, size=(8, 2)).astype(np.float32)
    b2 = rng.normal(0.0, 0.1, size=2).astype(np.float32)
    inits = [
        _init("feature0", np.array(0, dtype=np.int64)),
        _init("k", np.array([4], dtype=np.int64)),
        _init("axes2", np.array([2], dtype=np.int64)),
        _init("expand_shape", np.array([1, 1, 4], dtype=np.int64)),
        _init("w1", w1),
        _init("b1", b1),
        _init("w2", w2),
        _init("b2", b2),
    ]
    nodes = [
        helper.make_node("Gather", ["x", "feature0"], ["key"], axis=2, name="key"),
        helper.make_node(
            "TopK", ["key", "k"], ["top_values", "top_index"], axis=1, largest=1, sorted=1, name="topk"
        ),
        helper.make_node("Unsqueeze", ["top_index", "axes2"], ["index3"], name="unsqueeze"),
        helper.make_node("Expand", ["index3", "expand_shape"], ["index"], name="expand"),
        helper.make_node("GatherElements", ["x", "index"], ["leading"], axis=1, name="leading"),
        helper.make_node("Flatten", ["leading"], ["flat"], axis=1, name="flatten"),
        helper.make_node("Gemm", ["flat", "w1", "b1"], ["h1"], name="dense1"),
        helper.make_node("Relu", ["h1"], ["a1"], name="relu"),
        helper.make_node("Gemm", ["a1", "w2", "b2"], ["h2"], name="dense2"),
        helper.make_node("Sigmoid", ["h2"], ["y"], name="sigmoid"),
    ]
    graph = helper.make_graph(
        nodes,
        "topk_particles",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        inits,
    )
    return helper.make_model(graph, opset_imports=OPSET, producer_name="hepinfer-tests")


def main() -> None:
    rng = np.random.default_rng(20261123)
    for name, make in [("mlp_8_32_16_2.onnx", mlp), ("topk_particles.onnx", topk_particles)]:
        model = make(rng)
        model.ir_version = 8
        onnx.checker.check_model(model, full_check=True)
        onnx.save(model, HERE / name)
        print("wrote", HERE / name)


if __name__ == "__main__":
    main()
