"""TopK along the last axis on rows of ParticleNet's size (k nearest of 100 points) against
onnxruntime: the vector candidate path (rows without NaN) and its scalar fallback (rows with
NaN), smallest and largest, many ties (lower index first), -0.0 next to 0.0, k from 0 to the
whole row, row lengths that are not multiples of 8, batch 0 and 1."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper

from tests.nn.ort_compare import compare, make

F, I = TensorProto.FLOAT, TensorProto.INT64


def topk_model(n, k, largest):
    return make(
        [helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=-1, largest=largest)],
        [("x", F, ["batch", n, n])],
        [("v", F, None), ("i", I, None)],
        {"k": np.array([k], dtype=np.int64)},
        opset=11,
    )


@pytest.mark.parametrize("largest", [0, 1])
@pytest.mark.parametrize(("n", "k"), [(100, 17), (100, 1), (100, 64), (100, 100), (37, 16), (9, 9), (5, 0)])
def test_topk_rows_random(largest, n, k):
    rng = np.random.default_rng(1000 * n + 10 * k + largest)
    x = rng.standard_normal((3, n, n)).astype(np.float32)
    compare(topk_model(n, k, largest), {"x": x})


@pytest.mark.parametrize("largest", [0, 1])
def test_topk_rows_ties_and_signed_zero(largest):
    rng = np.random.default_rng(7 + largest)
    x = rng.integers(-3, 4, (2, 100, 100)).astype(np.float32)  # many equal values per row
    x[0, :, ::7] = -0.0  # -0.0 and 0.0 compare equal: index order decides
    x[1, :50] = 1e18  # rows of one value: the first k indices
    compare(topk_model(100, 17, largest), {"x": x})


@pytest.mark.parametrize("largest", [0, 1])
def test_topk_rows_nan(largest):
    rng = np.random.default_rng(11 + largest)
    x = rng.standard_normal((2, 100, 100)).astype(np.float32)
    x[0, 3, 5] = np.nan
    x[0, 10, ::3] = np.nan  # more NaN than the non-NaN values kept
    x[1, 20:30, 90:] = np.nan
    x[1, 40] = np.nan  # a row of NaN only
    compare(topk_model(100, 17, largest), {"x": x})


@pytest.mark.parametrize("batch", [0, 1])
def test_topk_rows_small_batches(batch):
    rng = np.random.default_rng(20 + batch)
    x = rng.standard_normal((batch, 100, 100)).astype(np.float32)
    compare(topk_model(100, 17, 0), {"x": x})
