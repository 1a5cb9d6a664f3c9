"""The nn engine's compute kernels against onnxruntime, on shapes chosen to hit every code path:
the packed GEMM (6 x 16 register tiles: row and column remainders, K = 1, K above the 256
K-block, batches 0/1/odd and above the row-block size), the dot-product path of dense layers
with at most 4 outputs, fused bias + activation epilogues (vectorised exp/tanh/sigmoid) with
NaN and inf, row-blocked evaluation of large batches, and the fast paths of Reduce*, Tile,
Transpose and TopK. The portable (non-AVX2) kernels are checked in a subprocess with
HEPINFER_DISABLE_AVX2=1."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper

from hepinfer.nn import Model
from tests.nn.ort_compare import compare, make

F, I, B = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL
# the environment variables that choose kernels (tests that force a choice start without them)
KERNEL_VARS = (
    "HEPINFER_NN_KERNELS",
    "HEPINFER_DISABLE_AVX2",
    "HEPINFER_DISABLE_AVX512",
    "HEPINFER_NN_NO_ZERO_SKIP",
)


def randn(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


ACTS = {
    "Relu": {},
    "Sigmoid": {},
    "Tanh": {},
    "Elu": {"alpha": 0.7},
    "LeakyRelu": {"alpha": 0.1},
    "HardSigmoid": {"alpha": 0.3, "beta": 0.4},
    "Softplus": {},  # not vectorised: the scalar epilogue
}


def dense_model(rng, K, N, act=None, bias=True):
    nodes = [helper.make_node("Gemm", ["x", "w"] + (["b"] if bias else []), ["h" if act else "y"])]
    if act:
        nodes.append(helper.make_node(act, ["h"], ["y"], **ACTS[act]))
    inits = {"w": randn(rng, K, N) / np.float32(np.sqrt(max(K, 1)))}
    if bias:
        inits["b"] = randn(rng, N)
    return make(nodes, [("x", F, ["batch", K])], [("y", F, ["batch", N])], inits)


# ----------------------------------------------------------------------------- packed GEMM (dense layers)
@pytest.mark.parametrize("N", [1, 2, 3, 4, 5, 8, 9, 15, 16, 17, 33, 64])
@pytest.mark.parametrize("K", [1, 3, 8, 30, 64, 300])
def test_dense_shapes(rng, K, N):
    m = dense_model(rng, K, N, act="Relu")
    for M in (0, 1, 5, 6, 7, 13):
        compare(m, {"x": randn(rng, M, K)})


@pytest.mark.parametrize("act", sorted(ACTS))
@pytest.mark.parametrize("N", [1, 3, 16, 20])
def test_dense_activation_epilogue(rng, act, N):
    m = dense_model(rng, 12, N, act=act)
    x = randn(rng, 37, 12) * 4
    x[3] = np.nan  # a whole row of NaN: NaN out in that row
    x[5, 2] = np.inf
    x[6, 0] = -np.inf
    x[7] *= 40  # saturating values of sigmoid/tanh, exp overflow range of Elu
    x[8] *= -40
    compare(m, {"x": x})


def test_dense_nan_stays_in_its_row(rng):
    m = dense_model(rng, 30, 64, act="Relu")
    x = randn(rng, 19, 30)
    x[4, 7] = np.nan
    y = compare(m, {"x": x})[0]
    assert np.isnan(y[4]).all()
    assert not np.isnan(np.delete(y, 4, axis=0)).any()


def test_dense_without_bias_and_large_values(rng):
    m = dense_model(rng, 40, 24, bias=False)
    compare(m, {"x": randn(rng, 11, 40) * 1e6}, rtol=1e-5, atol=1e-1)


# ----------------------------------------------------------------------------- row-blocked evaluation
def test_large_batch_in_row_blocks_matches_row_by_row(rng):
    """A batch of 1000 runs in row blocks (intermediates stay in L2); the MLP result must match
    onnxruntime and the same rows evaluated one at a time."""
    nodes, inits, last = [], {}, "x"
    for i, (k, n) in enumerate([(30, 64), (64, 64), (64, 1)]):
        nodes.append(helper.make_node("Gemm", [last, f"w{i}", f"b{i}"], [f"g{i}"]))
        nodes.append(helper.make_node("Relu" if n > 1 else "Sigmoid", [f"g{i}"], [f"h{i}"]))
        inits[f"w{i}"] = randn(rng, k, n) / np.float32(8)
        inits[f"b{i}"] = randn(rng, n)
        last = f"h{i}"
    nodes.append(helper.make_node("Identity", [last], ["y"]))
    m = make(nodes, [("x", F, ["batch", 30])], [("y", F, ["batch", 1])], inits)
    x = randn(rng, 1000, 30)
    y = compare(m, {"x": x})[0]
    model = Model.load(m.SerializeToString())
    one = np.concatenate([model.predict(x[i : i + 1]) for i in range(0, 1000, 97)])
    np.testing.assert_allclose(y[::97], one, rtol=1e-6, atol=1e-7)
    compare(m, {"x": x}, n_threads=2)


def test_large_batch_with_per_batch_output_falls_back(rng):
    """A graph whose output is not one row per input row (a sum over the batch) still gives the
    whole-batch result."""
    m = make(
        [helper.make_node("ReduceSum", ["x"], ["y"], keepdims=0)],
        [("x", F, ["batch", 3])],
        [("y", F, [])],
    )
    compare(m, {"x": randn(rng, 600, 3)}, rtol=1e-4)


# ----------------------------------------------------------------------------- GEMM on computed tensors
@pytest.mark.parametrize("K", [1, 7, 256, 257, 600])
@pytest.mark.parametrize("MN", [(1, 1), (5, 17), (6, 16), (13, 40)])
def test_matmul_computed_operands(rng, K, MN):
    M, N = MN
    m = make(
        [helper.make_node("MatMul", ["a", "b"], ["y"])],
        [("a", F, [2, M, K]), ("b", F, [2, K, N])],
        [("y", F, None)],
    )
    compare(m, {"a": randn(rng, 2, M, K), "b": randn(rng, 2, K, N)}, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("cin", [3, 64, 300])
def test_pointwise_conv_bias_relu(rng, cin):
    """1x1 Conv2d (the EdgeConv layers) with bias per output channel and a fused Relu."""
    m = make(
        [helper.make_node("Conv", ["x", "w", "b"], ["c"]), helper.make_node("Relu", ["c"], ["y"])],
        [("x", F, [2, cin, 7, 5])],
        [("y", F, None)],
        {"w": randn(rng, 13, cin, 1, 1) / np.float32(np.sqrt(cin)), "b": randn(rng, 13)},
    )
    x = randn(rng, 2, cin, 7, 5)
    x[1, 0, 3, 2] = np.nan
    compare(m, {"x": x}, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- data-movement fast paths
@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMean", "ReduceSumSquare", "ReduceL2"])
@pytest.mark.parametrize("axes", [[-1], [1], [1, 2], [0], [1, 3]])
@pytest.mark.parametrize("keepdims", [0, 1])
def test_reduce_contiguous_axes(rng, op, axes, keepdims):
    x = randn(rng, 3, 4, 1, 6)
    x[2, 1, 0, 3] = np.nan
    m = make(
        [helper.make_node(op, ["x", "axes"], ["y"], keepdims=keepdims)],
        [("x", F, [3, 4, 1, 6])],
        [("y", F, None)],
        {"axes": np.array(axes, np.int64)},
        opset=18,
    )
    compare(m, {"x": x})


@pytest.mark.parametrize(
    "shape,reps",
    [
        ([2, 3, 1], [1, 2, 5]),
        ([1], [7]),
        ([4, 1, 3], [2, 3, 1]),
        ([2, 2], [0, 3]),
        ([3, 1, 2, 1], [1, 1, 1, 16]),
    ],
)
@pytest.mark.parametrize("dtype", ["float", "int64", "bool"])
def test_tile(rng, shape, reps, dtype):
    x = randn(rng, *shape)
    t = F
    if dtype == "int64":
        x, t = (x * 100).astype(np.int64), I
    elif dtype == "bool":
        x, t = x > 0, B
    m = make(
        [helper.make_node("Tile", ["x", "r"], ["y"])],
        [("x", t, shape)],
        [("y", t, None)],
        {"r": np.array(reps, np.int64)},
    )
    compare(m, {"x": x})


@pytest.mark.parametrize(
    "shape,perm",
    [
        ([5, 37], [1, 0]),
        ([3, 17, 40], [0, 2, 1]),
        ([2, 10, 16, 32], [0, 3, 1, 2]),
        ([4, 3, 5], [2, 0, 1]),
        ([2, 3, 4, 5], [0, 2, 1, 3]),
        ([2, 3, 4], [1, 2, 0]),
    ],
)
def test_transpose(rng, shape, perm):
    m = make(
        [helper.make_node("Transpose", ["x"], ["y"], perm=perm)],
        [("x", F, shape)],
        [("y", F, None)],
    )
    compare(m, {"x": randn(rng, *shape)})


@pytest.mark.parametrize("largest", [0, 1])
@pytest.mark.parametrize("k", [0, 1, 5, 17, 40])
@pytest.mark.parametrize("axis", [-1, 1])
def test_topk_small_k(rng, largest, k, axis):
    """k <= 64 uses insertion into the k best: ties (lower index first) and NaN (larger than any
    number) as onnxruntime orders them."""
    x = np.round(randn(rng, 3, 40, 6) * 3).astype(np.float32)  # many ties
    x[0, 5, 2] = np.nan
    x[1, 0, 0] = np.inf
    x[2, 9, 5] = -np.inf
    if axis == -1:  # the 40 candidates along the last axis; axis 1: strided (inner = 6)
        x = x.transpose(0, 2, 1).copy()
    m = make(
        [helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=axis, largest=largest)],
        [("x", F, list(x.shape))],
        [("v", F, None), ("i", I, None)],
        {"k": np.array([k], np.int64)},
    )
    # ties: onnxruntime keeps the lower index first, as hepinfer does
    compare(m, {"x": x})


# ----------------------------------------------------------------------------- zero-skipping rows
def relu_fed_model(rng, K, N, act, finite=True):
    """x -> Relu -> Gemm(K, N) -> act: the dense layer's input is about half exact zeros, which
    the row kernel skips (when every weight is finite)."""
    w = randn(rng, K, N) / np.float32(np.sqrt(K))
    if not finite:
        w[K // 2, N // 3] = np.inf
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Gemm", ["r", "w", "b"], ["h" if act else "y"]),
    ]
    if act:
        nodes.append(helper.make_node(act, ["h"], ["y"], **ACTS[act]))
    return make(nodes, [("x", F, ["N", K])], [("y", F, None)], {"w": w, "b": randn(rng, N)})


def relu_fed_input(rng, M, K):
    x = randn(rng, M, K) * 2
    if M > 4:
        x[1] = -1.0  # a row of zeros after the Relu: bias only
        x[2, ::3] = np.nan  # NaN is not a zero: it reaches the sums
        x[4, 1] = np.inf
    if M > 200:
        x[100:200] = np.abs(x[100:200]) + 0.1  # whole row blocks with no zeros: the dense tiles
    return x


ZERO_SKIP_SHAPES = [(64, 64), (16, 40), (33, 100), (300, 130), (64, 48)]


@pytest.mark.parametrize("K,N", ZERO_SKIP_SHAPES)
@pytest.mark.parametrize("act", [None, "Relu", "Sigmoid", "Softplus"])
def test_zero_skipping_rows_match_onnxruntime(rng, K, N, act):
    m = relu_fed_model(rng, K, N, act)
    for M in (1, 7, 97, 1000):
        compare(m, {"x": relu_fed_input(rng, M, K)}, rtol=2e-5, atol=2e-5)


def test_zero_skipping_rows_with_an_infinite_weight(rng):
    """0 * inf is NaN: a layer with a non-finite weight keeps every product (dense tiles only)."""
    m = relu_fed_model(rng, 64, 64, None, finite=False)
    compare(m, {"x": relu_fed_input(rng, 300, 64)})


def _zero_skip_outputs(env: dict, path, x_path, out_path) -> None:
    code = (
        "import sys, numpy as np; from hepinfer.nn import Model; "
        "m = Model.load(sys.argv[1]); x = np.load(sys.argv[2]); "
        "np.save(sys.argv[3], m.predict(x, n_threads=1))"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, str(path), str(x_path), str(out_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-3000:]


def test_zero_skipping_rows_equal_the_dense_tiles_bit_for_bit(rng, tmp_path):
    """Skipping a zero input drops fma(0, w, s) = s: the same sums in the same order, so the
    zero-skipping kernel (with AVX-512 gathering, as with 8-wide tiles on an AVX-512 CPU, or the
    portable gathering), the dense 8-wide tiles (HEPINFER_NN_NO_ZERO_SKIP=1) and the 16-wide tiles
    (which skip nothing: they are faster than the 8-wide skipping rows) give identical bits."""
    K, N = 64, 100
    m = relu_fed_model(rng, K, N, "Tanh")
    path = tmp_path / "m.onnx"
    path.write_bytes(m.SerializeToString())
    x = relu_fed_input(rng, 1000, K)
    np.save(tmp_path / "x.npy", x)
    outs = {}
    for name, extra in {
        "default": {},
        "dense": {"HEPINFER_NN_NO_ZERO_SKIP": "1"},
        "no_avx512": {"HEPINFER_DISABLE_AVX512": "1"},
        "avx2_tiles": {"HEPINFER_NN_KERNELS": "avx2"},
        "avx512_tiles": {"HEPINFER_NN_KERNELS": "avx512"},
    }.items():
        # the kernel choice of each run is its own (not an override the whole session runs under)
        env = {k: v for k, v in os.environ.items() if k not in KERNEL_VARS}
        env.update(extra)
        _zero_skip_outputs(env, path, tmp_path / "x.npy", tmp_path / f"{name}.npy")
        outs[name] = np.load(tmp_path / f"{name}.npy")
    assert np.isfinite(outs["dense"][10:]).all()
    for name in ("default", "no_avx512", "avx2_tiles", "avx512_tiles"):
        assert outs[name].tobytes() == outs["dense"].tobytes(), name


# ----------------------------------------------------------------------------- forced kernel choices
KERNEL_CHOICES = ("avx512", "avx2", "portable")


def _forced_outputs(kernels: str, models: list, xs: list, tmp_path) -> tuple[dict, list]:
    """Every model on its input in a subprocess with HEPINFER_NN_KERNELS=kernels: the kernel
    choice (hepinfer._core.nn_cpu_kernels()) and the outputs."""
    code = (
        "import json, sys, numpy as np; from hepinfer import _core; from hepinfer.nn import Model\n"
        "n = int(sys.argv[2]); d = sys.argv[1]\n"
        "for i in range(n):\n"
        "    m = Model.load(f'{d}/m{i}.onnx'); x = np.load(f'{d}/x{i}.npy')\n"
        "    np.save(f'{d}/{sys.argv[3]}{i}.npy', m.predict(x, n_threads=1))\n"
        "print(json.dumps(_core.nn_cpu_kernels()))\n"
    )
    for i, (m, x) in enumerate(zip(models, xs)):
        (tmp_path / f"m{i}.onnx").write_bytes(m.SerializeToString())
        np.save(tmp_path / f"x{i}.npy", x)
    env = {k: v for k, v in os.environ.items() if k not in KERNEL_VARS}
    env["HEPINFER_NN_KERNELS"] = kernels
    r = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path), str(len(models)), kernels],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    import json

    info = json.loads(r.stdout.strip().splitlines()[-1])
    return info, [np.load(tmp_path / f"{kernels}{i}.npy") for i in range(len(models))]


def _reference(x, w, b, act):
    """float64 numpy: act(x @ w + b); NaN/inf propagate as IEEE arithmetic says."""
    with np.errstate(invalid="ignore", over="ignore"):
        h = x.astype(np.float64) @ w.astype(np.float64) + b.astype(np.float64)
        if act == "Relu":
            return np.where(h > 0, h, np.where(np.isnan(h), h, 0.0))
        if act == "Sigmoid":
            return 1.0 / (1.0 + np.exp(-h))
        if act == "Softplus":
            return np.where(h > 20, h, np.log1p(np.exp(np.minimum(h, 20))))
    return h


def test_kernel_choice_is_reported():
    from hepinfer import _core

    info = _core.nn_cpu_kernels()
    assert info["kernels"] in KERNEL_CHOICES
    assert set(info) == {"kernels", "reason", "vendor", "cpu", "family", "model"}
    assert info["reason"]
    if os.path.exists("/proc/cpuinfo") and info["vendor"]:
        with open("/proc/cpuinfo") as f:
            text = f.read()
        assert f"cpu family\t: {info['family']}\n" in text
        assert f"model\t\t: {info['model']}\n" in text


def test_every_forced_kernel_choice_matches_float64(rng, tmp_path):
    """Large odd shapes (row, column and K remainders of every tile; K across several K blocks)
    with NaN, inf and all-zero input rows, dense and ReLU-fed (zero-skipping) inputs, for each
    kernel set forced with HEPINFER_NN_KERNELS: float64 numpy is the reference; the 16-wide and
    8-wide tiles sum every output in the same order and agree bit for bit."""
    cases = []
    for M, K, N, act, relu_fed in [
        (67, 515, 1027, None, False),
        (67, 515, 1027, "Relu", True),
        (301, 300, 260, "Sigmoid", False),
        (13, 17, 257, "Softplus", False),
        (200, 64, 100, "Relu", True),
        (5, 1030, 33, None, False),
        (41, 1024, 70, "Relu", False),  # a 4 KiB row stride: the 16-wide tiles copy A's K blocks
    ]:
        w = randn(rng, K, N) / np.float32(np.sqrt(K))
        b = randn(rng, N)
        nodes = [helper.make_node("Relu", ["x"], ["r"])] if relu_fed else []
        nodes.append(helper.make_node("Gemm", ["r" if relu_fed else "x", "w", "b"], ["h" if act else "y"]))
        if act:
            nodes.append(helper.make_node(act, ["h"], ["y"], **ACTS[act]))
        m = make(nodes, [("x", F, ["N", K])], [("y", F, None)], {"w": w, "b": b})
        x = randn(rng, M, K)
        x[1] = 0.0  # a zero row: bias only
        x[2, K // 2] = np.nan
        x[3, K - 1] = np.inf
        x[M - 1, 0] = -np.inf
        if M > 12:
            x[7:12] = 0.0
        cases.append(
            (
                m,
                x,
                _reference(np.maximum(x, 0, where=~np.isnan(x), out=x.copy()) if relu_fed else x, w, b, act),
            )
        )
    models = [c[0] for c in cases]
    xs = [c[1] for c in cases]
    outs = {}
    for kernels in KERNEL_CHOICES:
        info, outs[kernels] = _forced_outputs(kernels, models, xs, tmp_path)
        assert info["kernels"] in KERNEL_CHOICES
        if info["kernels"] != kernels:  # only where this CPU cannot run the forced set
            assert "clamped" in info["reason"], info
        assert "HEPINFER_NN_KERNELS" in info["reason"]
        for got, (_, _, ref) in zip(outs[kernels], cases):
            assert got.dtype == np.float32
            np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4, equal_nan=True, err_msg=kernels)
    for a, b in zip(outs["avx512"], outs["avx2"]):
        assert a.tobytes() == b.tobytes()


# ----------------------------------------------------------------------------- portable kernels
@pytest.mark.slow
def test_portable_kernels_subprocess():
    """The same GEMM, dense and activation checks with the AVX2 kernels switched off."""
    env = dict(os.environ, HEPINFER_DISABLE_AVX2="1")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            __file__,
            "-k",
            "dense_activation or nan_stays or matmul_computed or pointwise_conv or row_blocks",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
