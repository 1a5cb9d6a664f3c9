"""Helpers for comparing single-operator graphs with onnxruntime (one thread): a ModelProto from
nodes, and the check of every output of hepinfer against onnxruntime's."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

from hepinfer.nn import Model


def make(nodes, inputs, outputs, inits=(), opset=17) -> onnx.ModelProto:
    """A ModelProto from nodes; inputs/outputs are (name, elem_type, shape) triples."""
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
        initializer=[numpy_helper.from_array(np.asarray(v), name=k) for k, v in dict(inits).items()],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def compare(m, feeds, rtol=1e-5, atol=1e-5, n_threads=1):
    """Evaluates `m` with hepinfer (`n_threads`) and onnxruntime (one thread) and checks every
    output: shape, dtype and values (NaN where onnxruntime has NaN)."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    ref = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feeds)
    mine = Model.load(m.SerializeToString())
    out = mine.predict(dict(feeds), n_threads=n_threads)
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
