"""The recurrent ops LSTM, GRU and RNN (cpp/src/nn/ops_rnn.cpp) against onnxruntime and torch:
torch.nn.LSTM/GRU/RNN exports (1 and 2 layers, bidirectional, batch_first, initial states),
graphs built with onnx.helper for what torch never writes (sequence_lens, reverse, peepholes,
clip, input_forget, layout=1, linear_before_reset=0, activations, absent outputs, weights
computed in the graph), a DeepJet-like tagger, and the load errors."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from onnx import TensorProto, helper, numpy_helper

import hepinfer
from hepinfer.nn import Model

F, I64, I32 = TensorProto.FLOAT, TensorProto.INT64, TensorProto.INT32
RTOL, ATOL = 1e-5, 1e-6
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


# ----------------------------------------------------------------------------- helpers
def make(nodes, inputs, outputs, inits=(), opset=17):
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


def run_ort(m, feeds):
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, feeds)


def predict_all(model, feeds):
    out = model.predict(dict(feeds))
    if not isinstance(out, dict):
        out = {model.outputs[0].name: out}
    return [out[t.name] for t in model.outputs]


def compare(m, feeds, rtol=RTOL, atol=ATOL):
    """Evaluates `m` with hepinfer and onnxruntime and checks every output. onnxruntime does not
    run layout=1 (batch-major) recurrent nodes: it gets the same graph with layout 0 and
    transposed inputs and outputs."""
    layout1 = any(a.name == "layout" and a.i == 1 for n in m.graph.node for a in n.attribute)
    if layout1:
        ref_m = onnx.ModelProto()
        ref_m.CopyFrom(m)
        for n in ref_m.graph.node:
            keep = [a for a in n.attribute if a.name != "layout"]
            del n.attribute[:]
            n.attribute.extend(keep)
        for v in ref_m.graph.input:
            if v.name in ("X", "h0", "c0"):
                v.type.tensor_type.ClearField("shape")
        ref_feeds = {k: to_layout0(k, v) for k, v in feeds.items()}
        ref = [from_layout0(o.name, r) for o, r in zip(ref_m.graph.output, run_ort(ref_m, ref_feeds))]
    else:
        ref = run_ort(m, feeds)
    got = predict_all(Model.load(m.SerializeToString()), feeds)
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        assert g.shape == r.shape, (g.shape, r.shape)
        assert g.dtype == r.dtype
        np.testing.assert_allclose(g, r, rtol=rtol, atol=atol, equal_nan=True)
    return got


def to_layout0(name, v):
    """X [batch, seq, in] -> [seq, batch, in]; initial states [batch, D, H] -> [D, batch, H]."""
    return np.ascontiguousarray(v.transpose(1, 0, 2)) if name in ("X", "h0", "c0") else v


def from_layout0(name, v):
    """Y [seq, D, batch, H] -> [batch, seq, D, H]; Y_h/Y_c [D, batch, H] -> [batch, D, H]."""
    return np.ascontiguousarray(v.transpose(2, 0, 1, 3) if name == "Y" else v.transpose(1, 0, 2))


def randn(rng, *shape, scale=1.0):
    return np.asarray(rng.standard_normal(shape) * scale, dtype=np.float32)


# ----------------------------------------------------------------------------- (a) torch exports
class Wrapped(torch.nn.Module):
    """An nn.LSTM/GRU/RNN returning its sequence output and final state(s)."""

    def __init__(self, rnn, with_state):
        super().__init__()
        self.rnn = rnn
        self.with_state = with_state

    def forward(self, x, *state):
        if isinstance(self.rnn, torch.nn.LSTM):
            y, (h, c) = self.rnn(x, tuple(state) if self.with_state else None)
            return y, h, c
        y, h = self.rnn(x, state[0] if self.with_state else None)
        return y, h


def make_rnn(kind, n_in, hidden, layers, bidirectional, batch_first):
    kw = dict(num_layers=layers, bidirectional=bidirectional, batch_first=batch_first)
    if kind == "LSTM":
        return torch.nn.LSTM(n_in, hidden, **kw)
    if kind == "GRU":
        return torch.nn.GRU(n_in, hidden, **kw)
    return torch.nn.RNN(n_in, hidden, nonlinearity=kind.split("_")[1], **kw)


def export(module, args, input_names, output_names, dynamic):
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            f,
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic,
            dynamo=False,
            opset_version=17,
        )
    return f.getvalue()


def check_torch_rnn(rng, kind, layers, bidirectional, batch_first, with_state, n_in=5, hidden=7):
    torch.manual_seed(int(rng.integers(1 << 30)))
    rnn = make_rnn(kind, n_in, hidden, layers, bidirectional, batch_first).eval()
    module = Wrapped(rnn, with_state).eval()
    n_state = 2 if kind == "LSTM" else 1
    dirs = 2 if bidirectional else 1
    seq_axis, batch_axis = (1, 0) if batch_first else (0, 1)

    def inputs(seq, batch):
        xs = randn(rng, *((batch, seq, n_in) if batch_first else (seq, batch, n_in)))
        states = [randn(rng, layers * dirs, batch, hidden) for _ in range(n_state)] if with_state else []
        return [xs, *states]

    names = ["x"] + (["h0", "c0"][:n_state] if with_state else [])
    outs = ["y", "h", "c"][: 1 + n_state]
    dynamic = {"x": {seq_axis: "seq", batch_axis: "batch"}}
    for nm in names[1:]:
        dynamic[nm] = {1: "batch"}
    dynamic["y"] = {seq_axis: "seq", batch_axis: "batch"}
    for nm in outs[1:]:
        dynamic[nm] = {1: "batch"}
    data = export(module, tuple(torch.from_numpy(a) for a in inputs(4, 3)), names, outs, dynamic)
    model = Model.load(data)
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    for seq, batch in [(6, 5), (1, 1), (25, 2)]:
        xs = inputs(seq, batch)
        feeds = dict(zip(names, xs))
        got = predict_all(model, feeds)
        ref = sess.run(None, feeds)
        with torch.no_grad():
            want = [t.numpy() for t in module(*(torch.from_numpy(a) for a in xs))]
        for g, r, w in zip(got, ref, want):
            assert g.shape == r.shape == w.shape
            np.testing.assert_allclose(g, r, rtol=RTOL, atol=ATOL)
            np.testing.assert_allclose(g, w, rtol=RTOL, atol=1e-5)


@pytest.mark.parametrize(
    "kind",
    [
        "LSTM",
        "GRU",
        "RNN_tanh",
        "RNN_relu",
    ],
)
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["seq_first", "batch_first"])
def test_torch_export(rng, kind, layers, bidirectional, batch_first):
    check_torch_rnn(rng, kind, layers, bidirectional, batch_first, with_state=False)


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN_tanh"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_torch_export_initial_state(rng, kind, bidirectional):
    check_torch_rnn(rng, kind, 2, bidirectional, True, with_state=True)


def test_torch_long_sequence(rng):
    """200 steps: errors may add up, but stay within 1e-4."""
    torch.manual_seed(3)
    module = Wrapped(torch.nn.LSTM(4, 16), False).eval()
    data = export(
        module,
        (torch.zeros(3, 2, 4),),
        ["x"],
        ["y", "h", "c"],
        {"x": {0: "s", 1: "b"}, "y": {0: "s", 1: "b"}},
    )
    x = randn(rng, 200, 3, 4)
    got = predict_all(Model.load(data), {"x": x})
    ref = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r, rtol=0, atol=1e-4)


# ----------------------------------------------------------------------------- (b) onnx.helper graphs
def rnn_graph(
    op,
    rng,
    *,
    seq=5,
    batch=3,
    n_in=4,
    hidden=3,
    direction="forward",
    layout=0,
    bias=True,
    lens=None,
    h0=False,
    c0=False,
    peep=False,
    outputs=("Y", "Y_h", "Y_c"),
    weights_as_inputs=False,
    w_scale=0.5,
    **attrs,
):
    """One recurrent node with random weights; returns (model, feeds)."""
    D = 2 if direction == "bidirectional" else 1
    G = GATES[op]
    inits = {
        "W": randn(rng, D, G * hidden, n_in, scale=w_scale),
        "R": randn(rng, D, G * hidden, hidden, scale=w_scale),
    }
    if bias:
        inits["B"] = randn(rng, D, 2 * G * hidden, scale=w_scale)
    x_shape = [batch, seq, n_in] if layout else [seq, batch, n_in]
    st_shape = [batch, D, hidden] if layout else [D, batch, hidden]
    feeds = {"X": randn(rng, *x_shape)}
    inputs = [("X", F, x_shape)]
    nodes = []
    names = ["X", "W", "R", "B" if bias else ""]
    if lens is not None:
        feeds["lens64"] = np.asarray(lens, np.int64)
        inputs.append(("lens64", I64, [batch]))
        nodes.append(helper.make_node("Cast", ["lens64"], ["lens"], to=I32))
        names.append("lens")
    else:
        names.append("")
    if h0:
        feeds["h0"] = randn(rng, *st_shape)
        inputs.append(("h0", F, st_shape))
    names.append("h0" if h0 else "")
    if op == "LSTM":
        if c0:
            feeds["c0"] = randn(rng, *st_shape)
            inputs.append(("c0", F, st_shape))
        names.append("c0" if c0 else "")
        if peep:
            inits["P"] = randn(rng, D, 3 * hidden)
        names.append("P" if peep else "")
    while names and names[-1] == "":
        names.pop()
    if weights_as_inputs:  # weights computed in the graph: packed on every call
        for k in [k for k in inits if k != "P"]:
            feeds[k] = inits.pop(k)
            inputs.append((k, F, list(feeds[k].shape)))
    outs = [o if o in outputs else "" for o in ["Y", "Y_h", "Y_c"][: 3 if op == "LSTM" else 2]]
    while outs and outs[-1] == "":
        outs.pop()
    nodes.append(
        helper.make_node(op, names, outs, name="rnn0", hidden_size=hidden, direction=direction, **attrs)
    )
    if layout:
        nodes[-1].attribute.append(helper.make_attribute("layout", layout))
    model = make(nodes, inputs, [(o, F, None) for o in outs if o], inits)
    return model, feeds


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("layout", [0, 1])
@pytest.mark.parametrize("lens", [None, [5, 2, 0]], ids=["full", "lens"])
def test_directions_layouts_lengths(rng, op, direction, layout, lens):
    m, feeds = rnn_graph(op, rng, direction=direction, layout=layout, lens=lens, h0=True, c0=True)
    compare(m, feeds)


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("input_forget", [0, 1])
@pytest.mark.parametrize("clip", [None, 0.7])
def test_lstm_peepholes_clip_input_forget(rng, direction, input_forget, clip):
    attrs = {"input_forget": input_forget}
    if clip is not None:
        attrs["clip"] = clip
    m, feeds = rnn_graph(
        "LSTM", rng, direction=direction, peep=True, h0=True, c0=True, lens=[5, 3, 1], **attrs
    )
    compare(m, feeds)


@pytest.mark.parametrize("lbr", [0, 1])
@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
@pytest.mark.parametrize("clip", [None, 0.5])
@pytest.mark.parametrize("bias", [True, False])
def test_gru_linear_before_reset(rng, lbr, direction, clip, bias):
    attrs = {"linear_before_reset": lbr}
    if clip is not None:
        attrs["clip"] = clip
    m, feeds = rnn_graph("GRU", rng, direction=direction, bias=bias, h0=True, lens=[4, 5, 2], **attrs)
    compare(m, feeds)


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_rnn_clip(rng, op):
    m, feeds = rnn_graph(op, rng, direction="bidirectional", clip=0.3, h0=True)
    compare(m, feeds)


ABSENT_OUTPUTS = [
    ("LSTM", ("Y",)),
    ("LSTM", ("Y_h",)),
    ("LSTM", ("Y_c",)),
    ("LSTM", ("Y", "Y_c")),
    ("LSTM", ("Y_h", "Y_c")),
    ("GRU", ("Y",)),
    ("GRU", ("Y_h",)),
    ("RNN", ("Y_h",)),
]


@pytest.mark.parametrize(
    ("op", "outputs"), ABSENT_OUTPUTS, ids=[f"{o}-{'+'.join(x)}" for o, x in ABSENT_OUTPUTS]
)
def test_absent_outputs(rng, op, outputs):
    m, feeds = rnn_graph(op, rng, direction="bidirectional", outputs=outputs)
    got = compare(m, feeds)
    assert len(got) == len(outputs)


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("layout", [0, 1])
def test_weights_computed_in_graph(rng, op, layout):
    m, feeds = rnn_graph(
        op, rng, direction="bidirectional", layout=layout, weights_as_inputs=True, lens=[1, 5, 3]
    )
    compare(m, feeds)


@pytest.mark.parametrize("op", ["LSTM", "GRU", "GRU_lbr", "RNN"])
def test_wide_hidden(rng, op):
    """Hidden sizes that are not multiples of the 16-column panels; a batch above the GEMM row
    block and split into several blocks of rows that run all steps in turn."""
    attrs = {"linear_before_reset": 1} if op == "GRU_lbr" else {}
    m, feeds = rnn_graph(
        op.split("_")[0],
        rng,
        seq=5,
        batch=250,
        n_in=19,
        hidden=101,
        direction="bidirectional",
        h0=True,
        w_scale=0.1,  # as torch's 1/sqrt(hidden) initialisation: pre-activations of order 1
        **attrs,
    )
    compare(m, feeds, atol=1e-5)


LSTM_VARIANTS = {
    "default": {},  # sigmoid/tanh/tanh: the fused cell pass
    "peephole_clip": {"peep": True, "clip": 0.6},
    "input_forget": {"input_forget": 1},
}


def stacked_case(rng, op, n_in, variant, direction, layout, lens, weights_as_inputs=False):
    """hidden 9 (one full 8-column group and a tail); n_in <= 9 takes the input projection into
    the step GEMM against stacked [R; W] weights, n_in = 12 projects all steps first."""
    kw = dict(LSTM_VARIANTS[variant]) if op == "LSTM" else {}
    m, feeds = rnn_graph(
        op,
        rng,
        seq=5,
        batch=5,
        n_in=n_in,
        hidden=9,
        direction=direction,
        layout=layout,
        lens=lens,
        h0=True,
        c0=True,
        weights_as_inputs=weights_as_inputs,
        **kw,
    )
    compare(m, feeds)


@pytest.mark.parametrize(
    "op_variant", ["LSTM-default", "LSTM-peephole_clip", "LSTM-input_forget", "RNN-default"]
)
@pytest.mark.parametrize("n_in", [1, 9, 12])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("layout", [0, 1])
@pytest.mark.parametrize("lens", [None, [5, 2, 0, 1, 4]], ids=["full", "lens"])
def test_stacked_input_and_fused_cell(rng, op_variant, n_in, direction, layout, lens):
    op, variant = op_variant.split("-")
    stacked_case(rng, op, n_in, variant, direction, layout, lens)


@pytest.mark.parametrize("op", ["LSTM", "RNN"])
@pytest.mark.parametrize("n_in", [3, 12])
def test_stacked_weights_computed_in_graph(rng, op, n_in):
    stacked_case(rng, op, n_in, "default", "bidirectional", 0, [5, 2, 0, 1, 4], weights_as_inputs=True)


def run_cases_on_kernels(seed: int) -> None:
    """The stacked and fused LSTM/RNN paths and a DeepJet-sized LSTM on this process's kernels."""
    rng = np.random.default_rng(seed)
    for op, variant in [("LSTM", "default"), ("LSTM", "peephole_clip"), ("RNN", "default")]:
        for n_in in (4, 12):
            stacked_case(rng, op, n_in, variant, "bidirectional", 1, [5, 2, 0, 1, 4])
    for batch in (0, 1, 37):
        m, feeds = rnn_graph(
            "LSTM", rng, seq=25, batch=batch, n_in=8, hidden=50, w_scale=0.15, h0=True, c0=True
        )
        if batch:
            compare(m, feeds, atol=1e-5)
        else:
            got = predict_all(Model.load(m.SerializeToString()), feeds)
            assert got[0].shape == (25, 1, 0, 50)


@pytest.mark.parametrize("kernels", ["avx512", "avx2", "portable"])
def test_kernel_sets(rng, kernels):
    """Each kernel set (chosen once per process: a subprocess per set) against onnxruntime."""
    code = f"from tests.nn.test_ops_rnn import run_cases_on_kernels; run_cases_on_kernels({int(rng.integers(1 << 30))})"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, HEPINFER_NN_KERNELS=kernels)
    r = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]


ACTIVATIONS = [
    # (op, activations, alphas, betas)
    ("LSTM", ["HardSigmoid", "Tanh", "Softsign"], [0.3], [0.4]),
    ("LSTM", ["sigmoid", "LeakyRelu", "ScaledTanh"], [0.1, 0.8], [1.3]),
    ("LSTM", ["Sigmoid", "Elu", "Softplus"], None, None),
    ("GRU", ["HardSigmoid", "Affine"], [0.25, 0.5], [0.5, 0.1]),
    ("GRU", ["Sigmoid", "ThresholdedRelu"], [0.2], None),
    ("GRU", ["Sigmoid", "Relu", "HardSigmoid", "Tanh"], None, None),  # bidirectional: 2 per direction
    ("RNN", ["Relu"], None, None),
    ("RNN", ["LeakyRelu"], None, None),
    ("RNN", ["Elu"], [0.5], None),
]


@pytest.mark.parametrize("case", range(len(ACTIVATIONS)))
def test_activations(rng, case):
    op, acts, alphas, betas = ACTIVATIONS[case]
    attrs = {"activations": acts}
    if alphas:
        attrs["activation_alpha"] = alphas
    if betas:
        attrs["activation_beta"] = betas
    n_per = {"LSTM": 3, "GRU": 2, "RNN": 1}[op]
    direction = "bidirectional" if len(acts) == 2 * n_per else "forward"
    m, feeds = rnn_graph(op, rng, direction=direction, h0=True, **attrs)
    compare(m, feeds)


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_sequence_lengths_zero_with_initial_state(rng, op):
    """An entry of length 0 ends in a zero state, not its initial state (as onnxruntime)."""
    m, feeds = rnn_graph(op, rng, direction="bidirectional", lens=[0, 4, 0], h0=True, c0=True)
    compare(m, feeds)


def test_rnn_empty_batch_and_sequence(rng):
    """onnxruntime gives these for RNN (its LSTM and GRU stop the process on an empty batch)."""
    for seq, batch in [(0, 3), (4, 0)]:
        m, feeds = rnn_graph("RNN", rng, seq=seq, batch=batch, direction="bidirectional")
        compare(m, feeds)


@pytest.mark.parametrize("op", ["LSTM", "GRU"])
@pytest.mark.parametrize("layout", [0, 1])
def test_empty_batch_and_sequence(rng, op, layout):
    """Batch 0 (onnxruntime stops the process on it for LSTM and GRU): empty outputs. Sequence
    length 0: Y is empty and Y_h/Y_c are zero whatever the initial state, as for entries of
    length 0 (onnxruntime's GRU stops the process there, its LSTM leaves the reverse state
    uninitialised)."""
    D = 2
    m, feeds = rnn_graph(op, rng, seq=3, batch=0, layout=layout, direction="bidirectional", h0=True, c0=True)
    got = predict_all(Model.load(m.SerializeToString()), feeds)
    assert got[0].shape == ((0, 3, D, 3) if layout else (3, D, 0, 3))
    for g in got[1:]:
        assert g.shape == ((0, D, 3) if layout else (D, 0, 3))
    m, feeds = rnn_graph(op, rng, seq=0, batch=2, layout=layout, direction="bidirectional", h0=True, c0=True)
    got = predict_all(Model.load(m.SerializeToString()), feeds)
    assert got[0].shape == ((2, 0, D, 3) if layout else (0, D, 2, 3))
    for g in got[1:]:
        np.testing.assert_array_equal(g, np.zeros_like(feeds["h0"]))


def test_nan_propagates(rng):
    """A NaN input makes its batch entry NaN from that step on (as torch); the other entries are
    untouched. onnxruntime's clamped sigmoid/tanh turn the NaN into finite numbers, so it is the
    reference for the other entries only."""
    m, feeds = rnn_graph("LSTM", rng, h0=True, c0=True)
    feeds["X"][2, 1, 0] = np.nan
    ref = run_ort(m, feeds)
    got = predict_all(Model.load(m.SerializeToString()), feeds)
    assert np.isnan(got[0][2:, 0, 1]).all() and not np.isnan(got[0][:2, 0, 1]).any()
    assert np.isnan(got[1][0, 1]).all() and np.isnan(got[2][0, 1]).all()
    for g, r in zip(got, ref):
        keep = np.ones(g.shape[-2], bool)
        keep[1] = False
        np.testing.assert_allclose(g[..., keep, :], r[..., keep, :], rtol=RTOL, atol=ATOL)


def test_threads_and_single_rows(rng):
    """Batch-separable models give the same results split over threads and row by row."""
    torch.manual_seed(5)
    module = Wrapped(torch.nn.LSTM(4, 8, batch_first=True, bidirectional=True), False).eval()
    data = export(
        module, (torch.zeros(2, 6, 4),), ["x"], ["y", "h", "c"], {"x": {0: "batch"}, "y": {0: "batch"}}
    )
    model = Model.load(data)
    x = randn(rng, 64, 6, 4)
    full = model.predict({"x": x}, n_threads=1)["y"]
    np.testing.assert_allclose(model.predict({"x": x}, n_threads=4)["y"], full, rtol=1e-6, atol=1e-7)
    for i in [0, 17, 63]:
        np.testing.assert_allclose(
            model.predict({"x": x[i : i + 1]})["y"], full[i : i + 1], rtol=1e-6, atol=1e-7
        )


# ----------------------------------------------------------------------------- (c) DeepJet-like
class DeepJetLike(torch.nn.Module):
    """DeepJet's shape: 1x1 convolutions per candidate collection (charged 25, neutral 25,
    secondary vertices 4), an LSTM over each, concatenation with global features, dense layers,
    softmax over 6 classes."""

    def __init__(self):
        super().__init__()

        def convs(n_in, widths):
            layers, c = [], n_in
            for w in widths:
                layers += [torch.nn.Conv1d(c, w, 1), torch.nn.ReLU()]
                c = w
            return torch.nn.Sequential(*layers)

        self.cpf_conv = convs(16, [64, 32, 32, 8])
        self.npf_conv = convs(6, [32, 16, 4])
        self.sv_conv = convs(12, [64, 32, 32, 8])
        self.cpf_lstm = torch.nn.LSTM(8, 150)
        self.npf_lstm = torch.nn.LSTM(4, 50)
        self.sv_lstm = torch.nn.LSTM(8, 50)
        self.head = torch.nn.Sequential(
            torch.nn.Linear(15 + 150 + 50 + 50, 200),
            torch.nn.ReLU(),
            torch.nn.Linear(200, 100),
            torch.nn.ReLU(),
            torch.nn.Linear(100, 6),
        )

    def forward(self, glob, cpf, npf, sv):
        # collections as [batch, candidates, features] (as DeepJet's inputs)
        outs = [glob]
        for x, conv, lstm in [
            (cpf, self.cpf_conv, self.cpf_lstm),
            (npf, self.npf_conv, self.npf_lstm),
            (sv, self.sv_conv, self.sv_lstm),
        ]:
            h = conv(x.transpose(1, 2))  # [batch, channels, candidates]
            _, (hn, _) = lstm(h.permute(2, 0, 1))  # [candidates, batch, channels]
            outs.append(hn[-1])
        return torch.softmax(self.head(torch.cat(outs, dim=1)), dim=1)


def deepjet_like(seed=0):
    torch.manual_seed(seed)
    module = DeepJetLike().eval()
    shapes = {"glob": (15,), "cpf": (25, 16), "npf": (25, 6), "sv": (4, 12)}
    args = tuple(torch.zeros(2, *s) for s in shapes.values())
    dyn = {k: {0: "batch"} for k in [*shapes, "probs"]}
    return module, export(module, args, list(shapes), ["probs"], dyn), shapes


def test_deepjet_like(rng):
    module, data, shapes = deepjet_like()
    model = Model.load(data)
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    for batch in [1, 7, 100]:
        feeds = {k: randn(rng, batch, *s) for k, s in shapes.items()}
        got = model.predict(feeds)
        ref = sess.run(None, feeds)[0]
        with torch.no_grad():
            want = module(*(torch.from_numpy(v) for v in feeds.values())).numpy()
        assert got.shape == (batch, 6)
        np.testing.assert_allclose(got, ref, rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-5)


# ----------------------------------------------------------------------------- (d) load errors
def test_wrong_weight_shape(rng):
    m, _ = rnn_graph("LSTM", rng, hidden=3)
    m.graph.initializer[0].CopyFrom(numpy_helper.from_array(randn(rng, 1, 11, 4), name="W"))
    with pytest.raises(
        hepinfer.ModelFormatError, match=r"rnn0.*W has shape \[1, 11, 4\].*\[1, 12, input_size\]"
    ):
        Model.load(m.SerializeToString())
    m, _ = rnn_graph("GRU", rng, hidden=3, direction="bidirectional")
    m.graph.initializer[1].CopyFrom(numpy_helper.from_array(randn(rng, 2, 9, 4), name="R"))
    with pytest.raises(hepinfer.ModelFormatError, match=r"rnn0.*R has shape \[2, 9, 4\].*\[2, 9, 3\]"):
        Model.load(m.SerializeToString())
    m, _ = rnn_graph("RNN", rng, hidden=3)
    m.graph.initializer[2].CopyFrom(numpy_helper.from_array(randn(rng, 1, 5), name="B"))
    with pytest.raises(hepinfer.ModelFormatError, match=r"rnn0.*B has shape \[1, 5\].*\[1, 6\]"):
        Model.load(m.SerializeToString())


def test_wrong_input_size_at_predict(rng):
    m, feeds = rnn_graph("LSTM", rng, n_in=4)
    m.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "n"
    model = Model.load(m.SerializeToString())
    with pytest.raises(ValueError, match=r"rnn0.*X has input size 5; W \[1, 12, 4\] takes 4"):
        model.predict({"X": randn(rng, 5, 3, 5)})


def test_unsupported_activation(rng):
    m, _ = rnn_graph("LSTM", rng, activations=["Sigmoid", "Gelu", "Tanh"])
    with pytest.raises(hepinfer.ModelFormatError, match=r"rnn0.*activation 'Gelu' is not supported"):
        Model.load(m.SerializeToString())
    m, _ = rnn_graph("GRU", rng, activations=["Sigmoid", "Tanh", "Tanh"])
    with pytest.raises(hepinfer.ModelFormatError, match=r"rnn0.*has 3 activations; expected 2"):
        Model.load(m.SerializeToString())


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({"direction": "sideways"}, "direction 'sideways'"),
        ({"clip": -1.0}, "clip must be positive"),
        ({"input_forget": 2}, "input_forget must be 0 or 1"),
        ({"layout": 2}, "layout must be 0 or 1"),
    ],
)
def test_bad_attributes(rng, attrs, message):
    layout = attrs.pop("layout", 0)
    m, _ = rnn_graph("LSTM", rng, layout=layout, **attrs)
    with pytest.raises(hepinfer.ModelFormatError, match=f"rnn0.*{message}"):
        Model.load(m.SerializeToString())


def test_missing_hidden_size(rng):
    m, _ = rnn_graph("GRU", rng)
    node = m.graph.node[-1]
    keep = [a for a in node.attribute if a.name != "hidden_size"]
    del node.attribute[:]
    node.attribute.extend(keep)
    with pytest.raises(hepinfer.ModelFormatError, match="rnn0.*hidden_size"):
        Model.load(m.SerializeToString())


def test_sequence_length_out_of_range(rng):
    m, feeds = rnn_graph("GRU", rng, lens=[1, 2, 3])
    model = Model.load(m.SerializeToString())
    feeds["lens64"] = np.asarray([1, 9, 3], np.int64)
    with pytest.raises(ValueError, match=r"rnn0.*sequence_lens\[1\] = 9"):
        model.predict(feeds)
