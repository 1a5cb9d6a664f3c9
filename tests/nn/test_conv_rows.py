"""Conv and ConvTranspose in the row form (constant weights packed at load as a dense layer's
right operand, output or input positions of several events as GEMM rows) against onnxruntime:
16+ output channels per group, the attribute variants (1-D to 3-D, strides, dilations, groups,
asymmetric and automatic padding, output_padding / output_shape), batches 0, 1, several and
large enough for several events per GEMM chunk and several chunks per event, NaN inputs, fused
activations, and the three GEMM kernel sets (HEPINFER_NN_KERNELS=avx512|avx2|portable)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper

from hepinfer.nn import Model

F = TensorProto.FLOAT


def make(nodes, x_shape, inits):
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", F, ["batch", *x_shape])],
        [helper.make_tensor_value_info("y", F, None)],
        initializer=[numpy_helper.from_array(np.asarray(v), name=k) for k, v in inits.items()],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def one_node(op, x, w, b, act=None, **attrs):
    nodes = [helper.make_node(op, ["x", "w", "b"], ["h" if act else "y"], **attrs)]
    if act:
        nodes.append(helper.make_node(act, ["h"], ["y"]))
    return make(nodes, x.shape[1:], {"w": w, "b": b})


def ort_run(m, x):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(
        None, {"x": x}
    )[0]


def check(m, x, rtol=1e-5):
    """hepinfer against onnxruntime: same shape, max error relative to the largest output <= rtol,
    NaN where onnxruntime has NaN."""
    ref = ort_run(m, x)
    got = Model.load(m.SerializeToString()).predict({"x": x})
    assert got.shape == ref.shape and got.dtype == ref.dtype
    assert np.array_equal(np.isnan(got), np.isnan(ref))
    ok = ~np.isnan(ref)
    if ref[ok].size:
        scale = max(1.0, float(np.max(np.abs(ref[ok]))))
        assert float(np.max(np.abs(got[ok] - ref[ok]))) <= rtol * scale
    return got


def randn(rng, *shape):
    return np.asarray(rng.standard_normal(shape), dtype=np.float32)


CONV_CASES = [
    # spatial shape, kernel, attributes
    ((21, 21), (3, 3), {"pads": [1, 1, 1, 1]}),
    ((6, 6), (3, 3), {}),
    ((11, 11), (3, 3), {"pads": [1, 0, 2, 1], "strides": [2, 1]}),
    ((13, 12), (3, 2), {"dilations": [2, 3], "pads": [2, 1, 0, 2]}),
    ((9, 9), (4, 4), {"auto_pad": "SAME_LOWER", "strides": [2, 2]}),
    ((9, 8), (2, 3), {"auto_pad": "SAME_UPPER"}),
    ((10, 9), (3, 3), {"auto_pad": "VALID", "strides": [1, 2]}),
    ((7, 7), (1, 1), {"strides": [2, 2]}),
    ((7, 7), (1, 1), {"pads": [1, 1, 0, 0]}),
    ((17,), (5,), {"pads": [2, 1], "strides": [2]}),
    ((12,), (3,), {"dilations": [3]}),
    ((5, 6, 7), (3, 3, 3), {"pads": [1, 1, 1, 1, 0, 1]}),
    ((6, 6, 5), (2, 3, 1), {"strides": [2, 1, 2], "dilations": [1, 2, 1]}),
]


@pytest.mark.parametrize("spatial,kernel,attrs", CONV_CASES)
@pytest.mark.parametrize("group,Mg", [(1, 16), (1, 40), (2, 17), (1, 1), (2, 3)])
@pytest.mark.parametrize("batch", [0, 1, 3])
def test_conv_rows(rng, spatial, kernel, attrs, group, Mg, batch):
    """Mg >= 16: packed panels; Mg <= 4 with C_g * taps >= 64: dot products (gemm_columns)."""
    C = 8 * group
    x = randn(rng, batch, C, *spatial)
    m = one_node(
        "Conv", x, randn(rng, Mg * group, C // group, *kernel), randn(rng, Mg * group), group=group, **attrs
    )
    check(m, x)


@pytest.mark.parametrize(
    "spatial,channels,batch", [((5, 5), (64, 64), 40), ((21, 21), (64, 64), 2), ((3, 3), (300, 24), 7)]
)
def test_conv_rows_chunks(rng, spatial, channels, batch):
    """Several events per GEMM chunk (small grids) and several chunks per event (large grids)."""
    C, M = channels
    x = randn(rng, batch, C, *spatial)
    m = one_node("Conv", x, randn(rng, M, C, 3, 3) / 8, randn(rng, M), pads=[1, 1, 1, 1])
    check(m, x)


@pytest.mark.parametrize("act", ["Relu", "LeakyRelu", "Sigmoid", "Tanh"])
def test_conv_rows_fused_activation_and_nan(rng, act):
    x = randn(rng, 4, 8, 9, 9)
    x[1, 3, 4, 4] = np.nan
    x[2, 0, 0, 0] = np.nan
    m = one_node("Conv", x, randn(rng, 24, 8, 3, 3), randn(rng, 24), act=act, pads=[1, 1, 1, 1])
    got = check(m, x)
    assert np.isnan(got[1]).any() and not np.isnan(got[0]).any()
    assert Model.load(m.SerializeToString()).n_nodes == 1


CONV_T_CASES = [
    ((3, 3), (4, 4), {"strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ((6, 6), (3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]}),
    ((5, 4), (3, 3), {"dilations": [2, 1], "pads": [0, 1, 2, 0]}),
    ((4, 5), (2, 3), {"strides": [3, 2], "output_padding": [2, 1]}),
    ((5, 5), (3, 3), {"strides": [2, 2], "output_shape": [10, 10]}),
    ((5, 5), (3, 3), {"strides": [2, 2], "output_shape": [11, 12]}),
    ((4, 4), (3, 3), {"strides": [2, 2], "auto_pad": "SAME_LOWER"}),
    ((7,), (4,), {"strides": [2], "pads": [1, 2]}),
    ((3, 4, 3), (3, 3, 2), {"strides": [2, 1, 2], "pads": [1, 0, 0, 1, 1, 0]}),
]


@pytest.mark.parametrize("spatial,kernel,attrs", CONV_T_CASES)
@pytest.mark.parametrize("group,Mg", [(1, 1), (1, 20), (2, 5)])
@pytest.mark.parametrize("batch", [0, 1, 3])
def test_conv_transpose_rows(rng, spatial, kernel, attrs, group, Mg, batch):
    C = 6 * group
    x = randn(rng, batch, C, *spatial)
    x[..., 0] = np.where(rng.random(x[..., 0].shape) < 0.05, np.nan, x[..., 0])
    m = one_node("ConvTranspose", x, randn(rng, C, Mg, *kernel), randn(rng, Mg * group), group=group, **attrs)
    check(m, x)


@pytest.mark.parametrize("spatial,channels,batch", [((3, 3), (256, 128), 20), ((12, 12), (32, 64), 3)])
def test_conv_transpose_rows_chunks(rng, spatial, channels, batch):
    C, M = channels
    x = randn(rng, batch, C, *spatial)
    m = one_node(
        "ConvTranspose", x, randn(rng, C, M, 4, 4) / 8, randn(rng, M), strides=[2, 2], pads=[1, 1, 1, 1]
    )
    check(m, x)


_PREDICT = (
    "import sys, numpy as np; from hepinfer import _core; from hepinfer.nn import Model; "
    "m = Model.load(sys.argv[1]); x = np.load(sys.argv[2]); "
    "np.save(sys.argv[3], m.predict(x, n_threads=1)); print(_core.nn_cpu_kernels()['kernels'])"
)


@pytest.mark.parametrize("kernels", ["avx512", "avx2", "portable"])
def test_conv_rows_kernel_sets(rng, tmp_path, kernels):
    """Every GEMM kernel set (forced with HEPINFER_NN_KERNELS, clamped to what the CPU has) gives
    onnxruntime's values for the row-form Conv (panels and dot products), ConvTranspose and a
    pointwise Conv."""
    x = randn(rng, 5, 12, 9, 7)
    x[3, 2, 4, 4] = np.nan
    models = {
        "conv": one_node("Conv", x, randn(rng, 37, 12, 3, 3), randn(rng, 37), act="Relu", pads=[1, 0, 1, 2]),
        "convt": one_node(
            "ConvTranspose",
            x,
            randn(rng, 12, 19, 3, 3),
            randn(rng, 19),
            strides=[2, 2],
            output_padding=[1, 0],
        ),
        "pointwise": one_node("Conv", x, randn(rng, 21, 12, 1, 1), randn(rng, 21), act="Tanh"),
        "columns": one_node("Conv", x, randn(rng, 2, 12, 3, 3), randn(rng, 2), act="Relu", pads=[0, 1, 1, 1]),
    }
    np.save(tmp_path / "x.npy", x)
    env = dict(os.environ, HEPINFER_NN_KERNELS=kernels)
    for name, m in models.items():
        (tmp_path / f"{name}.onnx").write_bytes(m.SerializeToString())
        r = subprocess.run(
            [
                sys.executable,
                "-c",
                _PREDICT,
                str(tmp_path / f"{name}.onnx"),
                str(tmp_path / "x.npy"),
                str(tmp_path / "y.npy"),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0, r.stderr[-3000:]
        assert r.stdout.split()[-1] in (kernels, "avx2", "portable")  # clamped to what the CPU has
        got, ref = np.load(tmp_path / "y.npy"), ort_run(m, x)
        assert np.array_equal(np.isnan(got), np.isnan(ref)), name
        ok = ~np.isnan(ref)
        assert float(np.max(np.abs(got[ok] - ref[ok]))) <= 1e-5 * max(1.0, float(np.max(np.abs(ref[ok])))), (
            name
        )
