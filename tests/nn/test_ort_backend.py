"""Model.load(..., backend="onnxruntime"), the opt-in escape hatch for graphs hepinfer's engine
refuses: such a graph loads only with it and matches onnxruntime run directly; the default
backend's refusal says how to opt in; on models both backends run, every public call (predict
with each input form, jagged jets with empty, single and no jets, the jagged layout and its
errors, score() locally, on Dask and from the CLI) gives the same results through either."""

from __future__ import annotations

import pickle
import sys
import threading

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
ak = pytest.importorskip("awkward")

from onnx import TensorProto, helper, numpy_helper

import hepinfer
from hepinfer.nn import JaggedInputInfo, MissingDependencyError, Model
from tests.nn.jet_models import export

RTOL, ATOL = 1e-5, 2e-6
HINT = '(Model.load(path, backend="onnxruntime") runs it through onnxruntime)'


def assert_close(got, want, rtol=RTOL, atol=ATOL):
    if isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want)
        for k in want:
            assert_close(got[k], want[k], rtol, atol)
        return
    assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, want.shape, got.dtype, want.dtype)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, equal_nan=True)


def ort_run(model, feeds):
    content = model if isinstance(model, bytes) else model.SerializeToString()
    s = ort.InferenceSession(content, providers=["CPUExecutionProvider"])
    return s.run(None, feeds)


def make_model(nodes, inputs, outputs, initializers=(), opset=17, domains=()):
    m = helper.make_model(
        helper.make_graph(nodes, "g", inputs, outputs, list(initializers)),
        opset_imports=[helper.make_opsetid("", opset), *(helper.make_opsetid(d, 1) for d in domains)],
        producer_name="hepinfer-tests",
        producer_version="1.0",
    )
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


# ----------------------------------------------------------------------------- models
def hardmax_model(rng):
    """x (n, 4), s (n, 1) -> z = x W + s; outputs Hardmax(z) (not implemented by hepinfer) and
    Sigmoid(z)."""
    W = rng.normal(size=(4, 5)).astype(np.float32)
    return make_model(
        [
            helper.make_node("MatMul", ["x", "W"], ["xw"], name="project"),
            helper.make_node("Add", ["xw", "s"], ["z"], name="shift"),
            helper.make_node("Hardmax", ["z"], ["choice"], axis=-1, name="pick"),
            helper.make_node("Sigmoid", ["z"], ["p"], name="squash"),
        ],
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4]),
            helper.make_tensor_value_info("s", TensorProto.FLOAT, ["n", 1]),
        ],
        [
            helper.make_tensor_value_info("choice", TensorProto.FLOAT, ["n", 5]),
            helper.make_tensor_value_info("p", TensorProto.FLOAT, ["n", 5]),
        ],
        [numpy_helper.from_array(W, "W")],
    )


def mlp_model(rng, n_in=3):
    """Gemm-ReLU-Gemm-Sigmoid, x (n, n_in) -> probability (n, 1)."""
    W1 = rng.normal(size=(n_in, 16)).astype(np.float32)
    b1 = rng.normal(size=16).astype(np.float32)
    W2 = rng.normal(size=(16, 1)).astype(np.float32) / 4
    b2 = rng.normal(size=1).astype(np.float32)
    return make_model(
        [
            helper.make_node("Gemm", ["x", "W1", "b1"], ["h"]),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("Gemm", ["r", "W2", "b2"], ["z"]),
            helper.make_node("Sigmoid", ["z"], ["probability"]),
        ],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", n_in])],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["n", 1])],
        [numpy_helper.from_array(a, k) for a, k in ((W1, "W1"), (b1, "b1"), (W2, "W2"), (b2, "b2"))],
    )


def masked_hardmax_model():
    """x (batch, n, 3), mask (batch, n) -> Hardmax of the masked sum over particles (batch, 3)."""
    return make_model(
        [
            helper.make_node("Unsqueeze", ["mask", "axes"], ["m3"]),
            helper.make_node("Mul", ["x", "m3"], ["xm"]),
            helper.make_node("ReduceSum", ["xm", "ax1"], ["sum"], keepdims=0),
            helper.make_node("Hardmax", ["sum"], ["y"], axis=-1, name="pick"),
        ],
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "n", 3]),
            helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["batch", "n"]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [
            numpy_helper.from_array(np.array([2], np.int64), "axes"),
            numpy_helper.from_array(np.array([1], np.int64), "ax1"),
        ],
    )


class PFN(torch.nn.Module):
    """Phi per particle, masked sum over particles, F on the sum (and an optional per-jet input)."""

    def __init__(self, n_feat=4, latent=16, jet_feat=0):
        super().__init__()
        self.jet_feat = jet_feat
        self.phi = torch.nn.Sequential(
            torch.nn.Linear(n_feat, 32), torch.nn.ReLU(), torch.nn.Linear(32, latent), torch.nn.ReLU()
        )
        self.f = torch.nn.Sequential(
            torch.nn.Linear(latent + jet_feat, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3)
        )

    def forward(self, particles, mask, *jet):
        h = (self.phi(particles) * mask.unsqueeze(-1)).sum(dim=1)
        if self.jet_feat:
            h = torch.cat([h, jet[0]], dim=1)
        return torch.softmax(self.f(h), dim=-1)


class EdgeNet(torch.nn.Module):
    """One EdgeConv block over the k nearest neighbours in (eta, phi), padded points pushed 1e9
    away, masked mean pooling: a small ParticleNet, channels first (batch, C, particles)."""

    def __init__(self, k):
        super().__init__()
        self.k = k
        self.edge = torch.nn.Sequential(
            torch.nn.Conv2d(8, 16, 1), torch.nn.ReLU(), torch.nn.Conv2d(16, 16, 1)
        )
        self.head = torch.nn.Linear(16, 2)

    def forward(self, points, features, mask):
        points = points * mask + (1 - mask) * 1e9
        x = features * mask
        inner = -2 * torch.matmul(points.transpose(2, 1), points)
        xx = torch.sum(points**2, dim=1, keepdim=True)
        idx = (-xx - inner - xx.transpose(2, 1)).topk(k=self.k + 1, dim=-1)[1][:, :, 1:]
        B, C, P = x.shape
        flat = (idx + torch.arange(0, B).view(-1, 1, 1) * P).reshape(-1)
        nb = x.transpose(2, 1).reshape(B * P, C)[flat, :].view(B, P, self.k, C).permute(0, 3, 1, 2)
        center = x.unsqueeze(-1).repeat(1, 1, 1, self.k)
        h = self.edge(torch.cat([center, nb - center], dim=1)).mean(dim=-1) * mask
        return torch.softmax(self.head(h.sum(dim=-1) / mask.sum(dim=-1)), dim=-1)


@pytest.fixture(scope="module")
def torch_models(tmp_path_factory):
    """{name: path}: a masked PFN, one with a per-jet input, and an EdgeConv net (k = 4)."""

    def str_export(*args):
        return str(export(*args))

    from tests.seeding import stable_seed

    seed = stable_seed("tests/nn/test_ort_backend.py::torch_models") % (1 << 31)
    print(f"torch weight seed = {seed}")
    torch.manual_seed(seed)
    d = tmp_path_factory.mktemp("ort_backend")
    dyn = [{0: "batch", 1: "n_particles"}] * 2
    return {
        "pfn": str_export(
            PFN().eval(), (torch.randn(3, 9, 4), torch.ones(3, 9)), d / "pfn.onnx", ["particles", "mask"], dyn
        ),
        "pfn_jet": str_export(
            PFN(jet_feat=2).eval(),
            (torch.randn(3, 9, 4), torch.ones(3, 9), torch.randn(3, 2)),
            d / "pfn_jet.onnx",
            ["particles", "mask", "jet"],
            [*dyn, {0: "batch"}],
        ),
        "edge": str_export(
            EdgeNet(4).eval(),
            (torch.randn(2, 2, 9), torch.randn(2, 4, 9), torch.ones(2, 1, 9)),
            d / "edge.onnx",
            ["points", "features", "mask"],
            [{0: "batch", 2: "n_particles"}] * 3,
        ),
    }


def both(path_or_model):
    """The same model through hepinfer's engine and through onnxruntime."""
    native = Model.load(path_or_model)
    via_ort = Model.load(path_or_model, backend="onnxruntime")
    assert native.backend == "hepinfer" and via_ort.backend == "onnxruntime"
    return native, via_ort


# ----------------------------------------------------------------------------- data
def random_lengths(rng, n_jets):
    """Multiplicities 0..60 plus the edge cases 0, 1, 2, 4, 5 (k = 4 of the EdgeConv net)."""
    n = np.minimum(rng.poisson(rng.gamma(3.0, 6.0, n_jets)), 60)
    n = np.concatenate([n, [0, 1, 2, 3, 4, 5, 0]])
    rng.shuffle(n)
    return n.astype(np.int64)


def offsets_of(lengths):
    return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


def particles_content(rng, total):
    """(total, 4) float32; eta and phi on a 1/64 grid so that kNN distances have no near-ties."""
    x = rng.standard_normal((total, 4)).astype(np.float32)
    x[:, 1:3] = rng.integers(-160, 161, (total, 2)) / 64.0
    return x


def pad(content, offsets, P):
    """Zero-padded (n_jets, P, F) array and its mask (n_jets, P)."""
    n_jets = len(offsets) - 1
    out = np.zeros((n_jets, P, content.shape[1]), np.float32)
    mask = np.zeros((n_jets, P), np.float32)
    for j in range(n_jets):
        a, b = offsets[j], offsets[j + 1]
        out[j, : b - a] = content[a:b]
        mask[j, : b - a] = 1
    return out, mask


# ----------------------------------------------------------------------------- an unsupported op
def test_unsupported_op_runs_only_through_onnxruntime(rng, tmp_path):
    proto = hardmax_model(rng)
    path = tmp_path / "hardmax.onnx"
    onnx.save(proto, path)
    # the default backend refuses it, names the node, and says how to opt in (never falls back)
    for source in (path, str(path), proto.SerializeToString(), proto):
        with pytest.raises(hepinfer.ModelFormatError) as info:
            Model.load(source)
        message = str(info.value)
        assert "node 'pick' (Hardmax): operator 'Hardmax' is not supported by hepinfer" in message
        assert message.endswith(HINT) and message.count(HINT) == 1
    for source in (path, proto.SerializeToString(), proto):
        model = Model.load(source, backend="onnxruntime")
        assert model.backend == "onnxruntime" and model.device == "cpu"
        assert model.inputs == [
            hepinfer.nn.TensorInfo("x", "float32", ("n", 4)),
            hepinfer.nn.TensorInfo("s", "float32", ("n", 1)),
        ]
        assert model.output_names == ["choice", "p"] and model.outputs[0].shape == ("n", 5)
        assert model.input_names == ["x", "s"]
        assert (model.producer, model.opset, model.n_nodes) == ("hepinfer-tests 1.0", 17, 4)
        assert model.batch_separable and "onnxruntime" in repr(model)
    for n in (0, 1, 37, 1000):
        x = rng.normal(size=(n, 4)).astype(np.float32)
        s = rng.normal(size=(n, 1)).astype(np.float32)
        choice, p = ort_run(proto, {"x": x, "s": s})
        want = {"choice": choice, "p": p}
        assert_close(model.predict({"x": x, "s": s}), want, 0, 0)
        assert_close(model.predict(x, s), want, 0, 0)
        assert_close(model([x, s], n_threads=2), want, 0, 0)
        assert_close(model.predict(ak.zip({"x": x, "s": s[:, 0]}, depth_limit=1)), want, 0, 0)
        assert_close(model.predict({"x": x.astype(np.float64), "s": s[:, 0]}), want, 0, 0)  # converted
    # the error messages of the native backend
    with pytest.raises(hepinfer.InputError, match=r"missing model input\(s\) \['s'\]"):
        model.predict({"x": x})
    with pytest.raises(hepinfer.InputError, match=r"unknown input name\(s\) \['t'\]"):
        model.predict({"x": x, "s": s, "t": s})
    with pytest.raises(hepinfer.InputError, match=r"3 arrays given; the model has 2 inputs \['x', 's'\]"):
        model.predict(x, s, s)
    with pytest.raises(hepinfer.InputError, match=r"the model has 2 inputs \['x', 's'\]: give a dict"):
        model.predict(x)
    with pytest.raises(
        hepinfer.InputError, match=r"input 'x' has shape \(4, 3\); the model expects \(n, 4\)"
    ):
        model.predict({"x": x[:4, :3], "s": s[:4]})
    with pytest.raises(hepinfer.InputError, match="input 's' has n = 3 but another input has 4"):
        model.predict({"x": x[:4], "s": s[:3]})
    with pytest.raises(hepinfer.InputError, match="input 'x' must be float32, got an array of dtype <U1"):
        model.predict({"x": np.full((2, 4), "a"), "s": s[:2]})
    # it pickles as its ONNX bytes (how it reaches Dask workers)
    clone = pickle.loads(pickle.dumps(model))
    assert clone.backend == "onnxruntime" and clone.inputs == model.inputs
    assert_close(clone.predict(x, s), model.predict(x, s), 0, 0)


def test_jagged_graph_with_unsupported_op(rng):
    proto = masked_hardmax_model()
    with pytest.raises(hepinfer.ModelFormatError, match=r"\(Hardmax\).*runs it through onnxruntime\)$"):
        Model.load(proto)
    model = Model.load(proto, backend="onnxruntime")
    assert model.jagged_layout() == (
        [JaggedInputInfo("x", "particle", 1, 3), JaggedInputInfo("mask", "mask", 1, 1)],
        1,
    )
    lengths = random_lengths(rng, 80)
    offsets = offsets_of(lengths)
    content = rng.standard_normal((int(offsets[-1]), 3)).astype(np.float32)
    x, mask = pad(content, offsets, int(lengths.max()) + 2)
    want = ort_run(proto, {"x": x, "mask": mask})[0]
    assert_close(model.predict_jagged(offsets, content), want, 0, 0)
    assert_close(model.predict(ak.unflatten(content, lengths)), want, 0, 0)


def test_other_operator_domain_and_external_weights(rng, tmp_path):
    """A com.microsoft operator (refused by the engine: another domain) runs through onnxruntime;
    weights in an external file are read in (relative to the model, or external_data_dir)."""
    gelu = make_model(
        [helper.make_node("Gelu", ["x"], ["y"], domain="com.microsoft", name="gelu")],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 5])],
        domains=["com.microsoft"],
    )
    with pytest.raises(hepinfer.ModelFormatError, match=r"operator domain 'com.microsoft'.*onnxruntime\)$"):
        Model.load(gelu)
    x = np.concatenate([rng.normal(size=(40, 5)), np.full((1, 5), np.nan)]).astype(np.float32)
    assert_close(Model.load(gelu, backend="onnxruntime").predict(x), ort_run(gelu, {"x": x})[0], 0, 0)
    # an MLP saved with its weights in a separate file
    proto = mlp_model(rng)
    folder = tmp_path / "model"
    folder.mkdir()
    external = onnx.ModelProto()
    external.CopyFrom(proto)  # onnx.save moves the weights out of the proto it saves
    onnx.save(
        external, folder / "mlp.onnx", save_as_external_data=True, location="weights.bin", size_threshold=0
    )
    assert (folder / "weights.bin").stat().st_size > 0
    X = rng.normal(size=(25, 3)).astype(np.float32)
    want = ort_run(proto, {"x": X})[0]
    via_ort = Model.load(folder / "mlp.onnx", backend="onnxruntime")
    assert_close(via_ort.predict(X), want)
    assert_close(Model.load(folder / "mlp.onnx").predict(X), want)
    content = (folder / "mlp.onnx").read_bytes()
    assert_close(Model.load(content, backend="onnxruntime", external_data_dir=folder).predict(X), want)
    (folder / "weights.bin").rename(tmp_path / "elsewhere.bin")
    assert_close(pickle.loads(pickle.dumps(via_ort)).predict(X), want)  # the weights travel with it
    with pytest.raises(hepinfer.ModelFormatError, match="mlp.onnx: not a readable ONNX model"):
        Model.load(folder / "mlp.onnx", backend="onnxruntime")
    with pytest.raises(hepinfer.ModelFormatError, match="cannot open model file"):
        Model.load(tmp_path / "missing.onnx", backend="onnxruntime")


def test_missing_onnxruntime_is_a_clear_import_error(rng, monkeypatch):
    proto = hardmax_model(rng)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` raises ImportError
    with pytest.raises(MissingDependencyError, match="pip install onnxruntime") as info:
        Model.load(proto, backend="onnxruntime")
    assert isinstance(info.value, ImportError) and isinstance(info.value, hepinfer.Error)
    with pytest.raises(ValueError, match="backend must be one of"):
        Model.load(proto, backend="torch")


def test_to_cuda_is_refused(rng):
    model = Model.load(hardmax_model(rng), backend="onnxruntime")
    assert model.to("cpu") is model
    for device in ("cuda", "cuda:1"):
        with pytest.raises(hepinfer.DeviceError, match=r'backend="onnxruntime" runs on the CPU only.*cuda'):
            model.to(device)
    with pytest.raises(hepinfer.DeviceError, match="CPU only"):
        Model.load(hardmax_model(rng), backend="onnxruntime", device="cuda")


# ----------------------------------------------------------------------------- the same model through both
def test_mlp_same_on_both_backends(rng):
    import pandas as pd

    native, via_ort = both(mlp_model(rng).SerializeToString())
    for attr in ("inputs", "outputs", "input_names", "output_names", "producer", "opset", "batch_separable"):
        assert getattr(native, attr) == getattr(via_ort, attr), attr
    for n in (0, 1, 5, 3000):
        X = rng.normal(size=(n, 3))
        X[rng.random(X.shape) < 0.01] = np.nan  # NaN in a row spoils that row only, in both
        want = native.predict(X)
        assert want.shape == (n, 1)
        assert_close(via_ort.predict(X), want)
        assert_close(via_ort.predict(X.astype(np.float32), n_threads=0), want)
        assert_close(via_ort.predict({"x": X}), want)
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    assert_close(via_ort.predict(frame), native.predict(frame))
    with pytest.raises(
        hepinfer.InputError, match=r"input 'x' has shape \(5, 2\); the model expects \(n, 3\)"
    ):
        via_ort.predict(X[:5, :2])
    # thread-safe: concurrent calls with different thread counts share the model
    one = via_ort.predict(X)
    results: list = [None] * 6

    def work(i):
        results[i] = via_ort.predict(X, n_threads=1 + i % 3)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        np.testing.assert_array_equal(r, one)


def test_pfn_jagged_same_on_both_backends(rng, torch_models):
    native, via_ort = both(torch_models["pfn"])
    assert via_ort.jagged_layout() == native.jagged_layout()
    lengths = random_lengths(rng, 300)
    offsets = offsets_of(lengths)
    content = particles_content(rng, int(offsets[-1]))
    want = native.predict_jagged(offsets, content)
    x, mask = pad(content, offsets, int(lengths.max()))
    assert_close(want, ort_run(onnx.load(torch_models["pfn"]), {"particles": x, "mask": mask})[0])
    assert_close(via_ort.predict_jagged(offsets, content), want)
    assert_close(via_ort.predict_jagged(offsets, content, n_threads=2), want)
    # every content form, int32 offsets, small chunks of one length
    cols = [np.ascontiguousarray(content[:, f]) for f in range(4)]
    assert_close(via_ort.predict_jagged(offsets.astype(np.int32), {"particles": cols}), want)
    assert_close(via_ort.predict_jagged(offsets, content.astype(np.float64)), want)
    numbers = ak.unflatten(content, lengths)
    assert_close(via_ort.predict(numbers), want)
    assert_close(via_ort.predict(numbers[10:40]), want[10:40])  # a slice: offsets not from 0
    records = ak.zip(
        {f: ak.unflatten(content[:, i], lengths) for i, f in enumerate(["pt", "eta", "phi", "e"])}
    )
    assert_close(via_ort.predict_jagged(records, fields={"particles": ["pt", "eta", "phi", "e"]}), want)
    # a single jet, an empty jet alone, no jets
    for j in (int(np.argmax(lengths > 5)), int(np.argmax(lengths == 0))):
        one = offsets[j : j + 2]
        assert_close(via_ort.predict_jagged(one, content), native.predict_jagged(one, content))
        assert_close(via_ort.predict_jagged(one, content), want[j : j + 1])
    none = np.zeros(1, np.int64)
    got, ref = via_ort.predict_jagged(none, content[:0]), native.predict_jagged(none, content[:0])
    assert got.shape == ref.shape == (0, 3) and got.dtype == ref.dtype == np.float32
    assert via_ort.predict(numbers[:0]).shape == (0, 3)
    # padded input through predict is the padded model on both
    assert_close(
        via_ort.predict({"particles": x, "mask": mask}), native.predict({"particles": x, "mask": mask})
    )


def test_pfn_with_per_jet_input_same_on_both_backends(rng, torch_models):
    native, via_ort = both(torch_models["pfn_jet"])
    assert via_ort.jagged_layout() == native.jagged_layout()
    lengths = random_lengths(rng, 90)
    offsets = offsets_of(lengths)
    content = particles_content(rng, int(offsets[-1]))
    jet = rng.standard_normal((len(lengths), 2)).astype(np.float32)
    want = native.predict_jagged(offsets, content, jet_inputs={"jet": jet})
    assert_close(via_ort.predict_jagged(offsets, content, jet_inputs={"jet": jet}), want)
    arr = ak.zip({"particles": ak.unflatten(content, lengths), "jet": jet}, depth_limit=1)
    assert_close(via_ort.predict(arr), want)
    got = via_ort.predict_jagged(np.zeros(1, np.int64), content[:0], jet_inputs={"jet": jet[:0]})
    assert got.shape == (0, 3)


def test_knn_graph_jagged_same_on_both_backends(rng, torch_models):
    native, via_ort = both(torch_models["edge"])
    layout = via_ort.jagged_layout()
    assert layout == native.jagged_layout()
    assert layout[1] == 5  # the TopK's k (k + 1 with the particle itself), read from the graph
    assert [t.role for t in layout[0]] == ["particle", "particle", "mask"]
    lengths = random_lengths(rng, 150)
    offsets = offsets_of(lengths)
    content = particles_content(rng, int(offsets[-1]))
    particles = {"points": content[:, 1:3], "features": content}
    want = native.predict_jagged(offsets, particles)
    assert np.isnan(want[lengths == 0]).all() and np.isfinite(want[lengths > 0]).all()  # 0/0 pooling
    assert_close(via_ort.predict_jagged(offsets, particles), want)
    # jets shorter than k + 1 are padded to it with pad_value and mask 0, on both
    short = offsets_of(np.array([0, 1, 2, 3, 4, 5, 6]))
    for kw in ({}, {"pad_value": 3.0}, {"min_length": 9}):
        assert_close(
            via_ort.predict_jagged(short, particles, **kw), native.predict_jagged(short, particles, **kw)
        )
    none = np.zeros(1, np.int64)
    empty = {"points": content[:0, 1:3], "features": content[:0]}
    assert via_ort.predict_jagged(none, empty).shape == native.predict_jagged(none, empty).shape == (0, 2)


def test_jagged_errors_are_the_native_ones(rng, torch_models):
    """The jagged rules are mirrored: each bad call fails with the native backend's message."""
    content = particles_content(rng, 10)
    pfn = both(torch_models["pfn"])
    pfn_jet = both(torch_models["pfn_jet"])
    edge = both(torch_models["edge"])
    calls = [
        (pfn, lambda m: m.predict_jagged(np.array([0, 5, 3, 10]), content)),
        (pfn, lambda m: m.predict_jagged(np.array([0, 5, 7, 11]), content)),
        (pfn, lambda m: m.predict_jagged(np.array([-1, 5]), content)),
        (pfn, lambda m: m.predict_jagged(np.array([0, 5, 10]), content[:, :3])),
        (pfn, lambda m: m.predict_jagged(np.zeros((0,), np.int64), content)),
        (pfn, lambda m: m.predict_jagged(np.array([0, 10]), {"particles": content, "mask": content[:, 0]})),
        (pfn, lambda m: m.predict_jagged(np.array([0, 10]), {"particles": content, "pt": content[:, 0]})),
        (pfn, lambda m: m.predict_jagged(np.array([0, 10]), content.reshape(10, 2, 2))),
        (pfn, lambda m: m.jagged_layout(mask="nope")),
        (pfn, lambda m: m.jagged_layout(particle_axis=2)),
        (pfn, lambda m: m.jagged_layout(particle_axis=-1)),
        (pfn_jet, lambda m: m.predict_jagged(np.array([0, 4, 10]), content)),
        (
            pfn_jet,
            lambda m: m.predict_jagged(np.array([0, 4, 10]), content, jet_inputs={"jet": np.zeros((3, 2))}),
        ),
        (pfn_jet, lambda m: m.predict_jagged(np.array([0, 4, 10]), {"jet": content})),
        (edge, lambda m: m.predict_jagged(np.array([0, 10]), {"points": content[:, :2]})),
        (edge, lambda m: m.jagged_layout(mask="points")),
    ]
    for (native, via_ort), call in calls:
        with pytest.raises(hepinfer.InputError) as want:
            call(native)
        with pytest.raises(hepinfer.InputError) as got:
            call(via_ort)
        assert str(got.value) == str(want.value)
    # a model without a particle axis, and one with two mask-like inputs
    flat = both(mlp_model(rng).SerializeToString())
    with pytest.raises(hepinfer.InputError) as want:
        flat[0].jagged_layout()
    with pytest.raises(hepinfer.InputError) as got:
        flat[1].jagged_layout()
    assert str(got.value).replace("<bytes>", "") == str(want.value).replace("<bytes>", "")
    assert "no input has a symbolic particle dimension" in str(got.value)


# ----------------------------------------------------------------------------- score()
@pytest.fixture(scope="module")
def scored_files(tmp_path_factory):
    """A flat tree 'Events' (a, b, c) and a jagged tree 'jets' (part_* per particle, jet_pt) in
    one ROOT file written with uproot, with the MLP's ONNX file beside it."""
    uproot = pytest.importorskip("uproot")
    rng = np.random.default_rng(20261207)
    d = tmp_path_factory.mktemp("ort_score")
    n = 700
    counts = np.minimum(rng.poisson(rng.gamma(3.0, 5.0, n)), 40)
    counts[:3] = 0
    part = particles_content(rng, int(counts.sum()))
    path = d / "events.root"
    with uproot.recreate(path) as f:
        f["Events"] = {k: rng.normal(size=n).astype(np.float32) for k in ("a", "b", "c")}
        jagged = {
            f"part_{k}": ak.unflatten(part[:, i], counts) for i, k in enumerate(["logpt", "eta", "phi", "e"])
        }
        f.mktree("jets", {**{k: v.type.content for k, v in jagged.items()}, "jet_pt": np.float32})
        f["jets"].extend({**jagged, "jet_pt": rng.uniform(200, 600, n).astype(np.float32)})
    mlp = d / "mlp.onnx"
    onnx.save(mlp_model(rng), mlp)
    return str(path), str(mlp)


PFN_BRANCHES = ["part_logpt", "part_eta", "part_phi", "part_e"]


def test_score_locally_through_onnxruntime(scored_files, torch_models, tmp_path, capsys):
    from hepinfer.cli import main

    path, mlp = scored_files
    features = ["a", "b * 2", "c"]
    want = hepinfer.score(mlp, f"{path}:Events", features=features)
    got = hepinfer.score(mlp, f"{path}:Events", features=features, nn_backend="onnxruntime", chunk=100)
    assert got.shape == want.shape == (700,)
    assert_close(got, want)
    loaded = Model.load(mlp, backend="onnxruntime")
    assert_close(hepinfer.score(loaded, f"{path}:Events", features=features), want)
    # the jagged network, each jet at its own length
    pfn = torch_models["pfn"]
    want = hepinfer.score(pfn, path, tree="jets", features=PFN_BRANCHES)
    got = hepinfer.score(pfn, path, tree="jets", features=PFN_BRANCHES, nn_backend="onnxruntime", chunk=150)
    assert got.shape == want.shape == (700, 3)
    assert_close(got, want)
    # nn_backend must fit the model given: no silent switch either way
    with pytest.raises(hepinfer.InputError, match="loaded with backend 'onnxruntime'"):
        hepinfer.score(loaded, f"{path}:Events", features=features, nn_backend="hepinfer")
    with pytest.raises(hepinfer.InputError, match="nn_backend must be"):
        hepinfer.score(mlp, f"{path}:Events", features=features, nn_backend="torch")
    # the CLI's --backend
    out = tmp_path / "s.root"
    argv = [
        "score",
        mlp,
        path,
        "--tree",
        "Events",
        "-o",
        str(out),
        "--no-progress",
        "--features",
        "a, b * 2, c",
    ]
    assert main([*argv, "--backend", "onnxruntime"]) == 0
    capsys.readouterr()
    import uproot

    with uproot.open(out) as f:
        assert_close(
            f["scores"]["probability"].array(library="np"),
            hepinfer.score(mlp, f"{path}:Events", features=features),
        )


@pytest.mark.slow
def test_score_on_dask_through_onnxruntime(scored_files, torch_models):
    pytest.importorskip("dask")
    distributed = pytest.importorskip("distributed")
    from hepinfer.scoring import ModelHolder

    path, mlp = scored_files
    pfn = torch_models["pfn"]
    features = ["a", "b * 2", "c"]
    flat_want = hepinfer.score(mlp, f"{path}:Events", features=features)
    jagged_want = hepinfer.score(pfn, path, tree="jets", features=PFN_BRANCHES)
    # the holder carries the backend: a worker loads the bytes with it
    holder = pickle.loads(pickle.dumps(ModelHolder.from_model(mlp, nn_backend="onnxruntime")))
    assert holder.get().model.backend == "onnxruntime"
    # a model loaded with the backend travels as its pickled ONNX bytes
    loaded = Model.load(pfn, backend="onnxruntime")
    holder = pickle.loads(pickle.dumps(ModelHolder.from_model(loaded)))
    assert holder.kind == "pickle" and holder.get().model.backend == "onnxruntime"
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster),
    ):
        flat = hepinfer.score(
            mlp, f"{path}:Events", features=features, nn_backend="onnxruntime", chunk=300, dask=True
        )
        jagged = hepinfer.score(loaded, path, tree="jets", features=PFN_BRANCHES, chunk=300, dask=True)
    assert_close(flat, flat_want)
    assert_close(jagged, jagged_want)
