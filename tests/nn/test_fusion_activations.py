"""Dense layers with fused activations (cpp/src/nn/passes.cpp's fuse, kernels.cpp's vectorised
activations) against onnxruntime: SiLU as torch exports it (Gemm, Sigmoid, Mul -> one Dense +
SiLU node), Softplus and Exp, on every kernel set, on batches 0, 1 and several, widths that are
not multiples of the GEMM tiles, large |x| (exp under- and overflow) and NaN."""

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
RTOL = 1e-5


OPSET = {"Mish": 18, "GeluTanh": 20}  # the first opsets with Mish and Gelu(approximate="tanh")


def make(nodes, n_in, n_out, inits, opset=17):
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", F, ["batch", n_in])],
        [helper.make_tensor_value_info("y", F, ["batch", n_out])],
        initializer=[numpy_helper.from_array(v, name=k) for k, v in inits.items()],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def dense_act(act: str, n_in: int, n_out: int, scale: float, seed: int):
    """x -> Gemm -> act -> y, with act 'silu' exported as torch does (Sigmoid and Mul)."""
    rng = np.random.default_rng(seed)
    inits = {
        "w": (rng.standard_normal((n_out, n_in)) * scale / np.sqrt(n_in)).astype(np.float32),
        "b": rng.standard_normal(n_out).astype(np.float32),
    }
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["h"], transB=1)]
    if act == "silu":
        nodes += [helper.make_node("Sigmoid", ["h"], ["s"]), helper.make_node("Mul", ["h", "s"], ["y"])]
    elif act == "GeluTanh":
        nodes.append(helper.make_node("Gelu", ["h"], ["y"], approximate="tanh"))
    else:
        nodes.append(helper.make_node(act, ["h"], ["y"]))
    return make(nodes, n_in, n_out, inits, OPSET.get(act, 17))


def check(m, x: np.ndarray, atol: float = 1e-30, rtol: float = RTOL) -> None:
    """hepinfer against onnxruntime: NaN where onnxruntime has NaN, else within RTOL; `atol`
    covers the GEMM's rounding where a sum cancels to near zero (summation orders differ)."""
    ref = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[
        0
    ]
    got = Model.load(m.SerializeToString()).predict({"x": x})
    assert got.shape == ref.shape
    assert np.array_equal(np.isnan(got), np.isnan(ref))
    ok = ~np.isnan(ref)
    np.testing.assert_allclose(got[ok], ref[ok], rtol=rtol, atol=atol)


@pytest.mark.parametrize("act", ["silu", "Softplus", "Exp", "Mish", "GeluTanh"])
@pytest.mark.parametrize("n_in,n_out", [(17, 256), (5, 37), (64, 1), (33, 100)])
def test_dense_activation_matches_onnxruntime(act: str, n_in: int, n_out: int) -> None:
    rng = np.random.default_rng(n_in * 100 + n_out)
    for scale in (1.0, 40.0):  # 40: pre-activations far past exp's range (|x| up to ~200)
        m = dense_act(act, n_in, n_out, scale, seed=n_out)
        for batch in (0, 1, 3, 13, 100):
            x = rng.standard_normal((batch, n_in)).astype(np.float32)
            if batch > 2:
                x[2, 0] = np.nan
            # exp turns the GEMM's absolute rounding (~1e-6 of |x| ~ scale) into a relative one
            check(m, x, atol=1e-6 * scale, rtol=RTOL * scale if act == "Exp" else RTOL)


def test_silu_is_one_node() -> None:
    m = dense_act("silu", 17, 64, 1.0, seed=1)
    assert Model.load(m.SerializeToString()).n_nodes == 1
    # Sigmoid read elsewhere too: no fusion, the same values
    g = m.graph
    g.output.append(helper.make_tensor_value_info("s", F, ["batch", 64]))
    model = Model.load(m.SerializeToString())
    assert model.n_nodes == 3
    x = np.random.default_rng(2).standard_normal((9, 17)).astype(np.float32)
    ref = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    got = model.predict({"x": x})
    for r, name in zip(ref, ("y", "s")):
        np.testing.assert_allclose(got[name], r, rtol=RTOL, atol=1e-6)


EXACT = {
    "Sigmoid": lambda x: np.where(x >= 0, 1 / (1 + np.exp(-x)), np.exp(x) / (1 + np.exp(x))),
    "Softplus": lambda x: np.logaddexp(0.0, x),
    "Exp": np.exp,
    "Tanh": np.tanh,
    "Mish": lambda x: x * np.tanh(np.logaddexp(0.0, x)),
}


@pytest.mark.parametrize("act", sorted(EXACT))
def test_standalone_activation_extremes(act: str) -> None:
    """The element-wise op alone over the exp range edges, infinities and NaN, against float64
    numpy (onnxruntime's own Sigmoid is a rational approximation off by ~1e-8 in the tails):
    within RTOL down to the smallest normal float, denormals absolutely."""
    x = np.concatenate(
        [
            np.linspace(-120, 120, 4001, dtype=np.float32),
            np.array([-88.5, -87.4, -87.0, 87.9, 88.0, 88.5, 88.7, 89.0, 20.0, 20.001, 19.999], np.float32),
            np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, 1e-30, -1e-30], np.float32),
        ]
    ).reshape(-1, 1)
    m = make([helper.make_node(act, ["x"], ["y"])], 1, 1, {}, OPSET.get(act, 17))
    got = Model.load(m.SerializeToString()).predict({"x": x}).astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        ref = EXACT[act](x.astype(np.float64))
        ref = np.where(np.abs(ref) > np.finfo(np.float32).max, np.copysign(np.inf, ref), ref)
    assert np.array_equal(np.isnan(got), np.isnan(ref))
    ok = ~np.isnan(ref)
    np.testing.assert_allclose(got[ok], ref[ok], rtol=RTOL, atol=float(np.finfo(np.float32).tiny))


@pytest.mark.parametrize("kernels", ["avx512", "avx2", "portable"])
def test_kernel_sets_agree(kernels: str) -> None:
    """Each kernel set (a subprocess, the choice is made once per process) against onnxruntime."""
    code = (
        "import numpy as np\n"
        "from tests.nn.test_fusion_activations import dense_act, check\n"
        "rng = np.random.default_rng(5)\n"
        "for act in ('silu', 'Softplus', 'Exp', 'Mish', 'GeluTanh'):\n"
        "    for batch in (1, 7, 50):\n"
        "        m = dense_act(act, 19, 45, 10.0, seed=3)\n"
        "        x = rng.standard_normal((batch, 19)).astype(np.float32)\n"
        "        check(m, x, atol=1e-5, rtol=1e-4 if act == 'Exp' else 1e-5)\n"
    )
    env = dict(os.environ, HEPINFER_NN_KERNELS=kernels)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    r = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
