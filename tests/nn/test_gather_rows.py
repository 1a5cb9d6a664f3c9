"""Gather against onnxruntime on ParticleNet's neighbour-gather shape (channel rows of
batch x points values, indices for k neighbours of every point) and the element sizes of its
copy loops (float32 and int64 elements, 1-byte bool elements, whole rows), negative indices, empty
index and data tensors, and the error for an index out of range."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper

from hepinfer.nn import Model
from tests.nn.ort_compare import compare, make

F, I = TensorProto.FLOAT, TensorProto.INT64


def gather_model(elem, shape, idx_shape, axis):
    return make(
        [helper.make_node("Gather", ["x", "i"], ["y"], axis=axis)],
        [("x", elem, shape), ("i", I, idx_shape)],
        [("y", elem, None)],
    )


@pytest.mark.parametrize("batch", [0, 1, 3])
def test_gather_neighbours(batch):
    rng = np.random.default_rng(30 + batch)
    c, p, k = 64, 100, 16
    x = rng.standard_normal((c, batch * p)).astype(np.float32)
    x[3, :: max(1, batch * p // 7 or 1)] = np.nan  # NaN is copied like any value
    idx = rng.integers(-batch * p, max(batch * p, 1), (batch * p * k,)) if batch else np.zeros(0, np.int64)
    compare(gather_model(F, [c, "n"], ["m"], 1), {"x": x, "i": idx.astype(np.int64)})


@pytest.mark.parametrize(
    ("dtype", "elem"),
    [
        (np.float32, F),
        (np.int64, I),
        (np.bool_, TensorProto.BOOL),
    ],
)
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_gather_element_sizes(dtype, elem, axis):
    rng = np.random.default_rng(40 + axis)
    x = rng.integers(0, 200, (4, 5, 6)).astype(dtype)
    dim = x.shape[axis]
    idx = rng.integers(-dim, dim, (3, 2)).astype(np.int64)
    compare(gather_model(elem, list(x.shape), [3, 2], axis), {"x": x, "i": idx})


def test_gather_out_of_range():
    m = gather_model(F, [2, 5], ["m"], 1)
    model = Model.load(m.SerializeToString())
    x = np.zeros((2, 5), np.float32)
    with pytest.raises(Exception, match="index 5 is out of range for a dimension of size 5"):
        model.predict({"x": x, "i": np.array([0, 5, 1], np.int64)})
    with pytest.raises(Exception, match="index -6 is out of range"):
        model.predict({"x": x, "i": np.array([-6], np.int64)})
