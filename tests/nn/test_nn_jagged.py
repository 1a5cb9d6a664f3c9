"""hepinfer.nn.Model.predict_jagged: set (PFN) and graph (ParticleNet-Lite EdgeConv, k = 7 and 16)
models exported from torch, evaluated on jets of variable length at their true length, against the
same ONNX model on padded-and-masked input evaluated by onnxruntime and by hepinfer; every input
form (offsets + content, awkward arrays of records/numbers, per-jet inputs), edge cases (empty
jets, jets shorter than k, a batch without jets) and the error paths."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from tests.seeding import stable_seed

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
ak = pytest.importorskip("awkward")

from onnx import TensorProto, helper

import hepinfer
from hepinfer.nn import JaggedInputInfo, Model
from tests.nn.jet_models import PFN, ParticleNetLite, export, pad, pnet_padded_feeds, randomize_batchnorm

RTOL, ATOL = 1e-5, 2e-6


@pytest.fixture(scope="module")
def torch_seed():
    seed = stable_seed("tests/test_nn_jagged.py::torch_seed") % (1 << 31)
    print(f"torch weight seed = {seed}")
    return seed


@pytest.fixture(scope="module")
def pfn_path(tmp_path_factory, torch_seed):
    torch.manual_seed(torch_seed)
    dyn = [{0: "batch", 1: "n_particles"}] * 2
    return export(
        PFN().eval(),
        (torch.randn(3, 9, 4), torch.ones(3, 9)),
        tmp_path_factory.mktemp("pfn") / "pfn.onnx",
        ["particles", "mask"],
        dyn,
    )


@pytest.fixture(scope="module")
def pfn_jet_path(tmp_path_factory, torch_seed):
    torch.manual_seed(torch_seed + 1)
    dyn = [{0: "batch", 1: "n_particles"}] * 2 + [{0: "batch"}]
    return export(
        PFN(jet_feat=2).eval(),
        (torch.randn(3, 9, 4), torch.ones(3, 9), torch.randn(3, 2)),
        tmp_path_factory.mktemp("pfnj") / "pfn_jet.onnx",
        ["particles", "mask", "jet"],
        dyn,
    )


@pytest.fixture(scope="module", params=[7, 16])
def pnet(request, tmp_path_factory, torch_seed):
    k = request.param
    torch.manual_seed(torch_seed + k)
    net = ParticleNetLite(k).eval()
    randomize_batchnorm(net, torch.Generator().manual_seed(torch_seed + 100 + k))
    P = k + 5
    path = export(
        net,
        (torch.randn(2, 2, P), torch.randn(2, 4, P), torch.ones(2, 1, P)),
        tmp_path_factory.mktemp(f"pn{k}") / "pn.onnx",
        ["points", "features", "mask"],
        [{0: "batch", 2: "n_particles"}] * 3,
    )
    return k, path


# ----------------------------------------------------------------------------- data
SPECIAL_LENGTHS = [0, 1, 2, 6, 7, 8, 15, 16, 17, 18, 100, 101, 120]


def random_lengths(rng, n_jets, special=True):
    """Jet multiplicities 0..120 (gamma-Poisson, mean ~40) plus the edge cases 0, 1, k-1, k, k+1, > 100."""
    lam = rng.gamma(4.0, 10.0, n_jets)
    n = np.minimum(rng.poisson(lam), 120)
    if special:
        n = np.concatenate([n, SPECIAL_LENGTHS])
        rng.shuffle(n)
    return n.astype(np.int64)


def offsets_of(lengths):
    return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


def particles_content(rng, total):
    """(total, 4) float32 particles: log pt, eta, phi, E-ish; eta and phi on a 1/64 grid so that
    kNN distances are exact in float32 (no near-ties that rounding could flip)."""
    x = rng.standard_normal((total, 4)).astype(np.float32)
    x[:, 1:3] = rng.integers(-160, 161, (total, 2)) / 64.0
    return x


def ort_run(path, feeds):
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run(None, feeds)[0]


def assert_close(got, want, rtol=RTOL, atol=ATOL):
    assert got.shape == want.shape, (got.shape, want.shape)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, equal_nan=True)


# ----------------------------------------------------------------------------- PFN
def test_pfn_matches_padded_model(rng, pfn_path):
    model = Model.load(pfn_path)
    lengths = random_lengths(rng, 300)
    offsets = offsets_of(lengths)
    content = particles_content(rng, int(offsets[-1]))
    P = int(lengths.max()) + 3
    x, mask = pad(content, offsets, P, channels_first=False)
    want = ort_run(pfn_path, {"particles": x, "mask": mask})
    assert_close(model.predict({"particles": x, "mask": mask}), want)
    got = model.predict_jagged(offsets, content)
    assert_close(got, want)
    # the padded length does not matter to a qualifying model: compare at another pad too
    x2, mask2 = pad(content, offsets, P + 40, channels_first=False)
    assert_close(got, model.predict({"particles": x2, "mask": mask2}))
    # content forms: float64, a dict with a list of single columns, int32 / uint32 offsets
    assert_close(model.predict_jagged(offsets, content.astype(np.float64)), want)
    cols = [np.ascontiguousarray(content[:, f]) for f in range(4)]
    assert_close(model.predict_jagged(offsets.astype(np.int32), {"particles": cols}), want)
    assert_close(
        model.predict_jagged(offsets.astype(np.uint32), {"particles": [content[:, :2], content[:, 2:]]}), want
    )


def test_pfn_awkward_forms(rng, pfn_path):
    model = Model.load(pfn_path)
    lengths = random_lengths(rng, 60)
    offsets = offsets_of(lengths)
    content = particles_content(rng, int(offsets[-1]))
    x, mask = pad(content, offsets, int(lengths.max()), channels_first=False)
    want = ort_run(pfn_path, {"particles": x, "mask": mask})
    numbers = ak.unflatten(content, lengths)  # n_jets * var * 4 * float32
    assert_close(model.predict(numbers), want)
    records = ak.zip(
        {f: ak.unflatten(content[:, i], lengths) for i, f in enumerate(["pt", "eta", "phi", "e"])}
    )
    assert_close(model.predict(records), want)  # one per-particle input: every field in order
    assert_close(model.predict_jagged(records, fields={"particles": ["pt", "eta", "phi", "e"]}), want)
    reordered = model.predict_jagged(records, fields={"particles": ["e", "phi", "eta", "pt"]})
    assert_close(reordered, model.predict_jagged(offsets, content[:, ::-1].copy()))
    named = ak.zip({"particles": numbers}, depth_limit=1)  # a jet record with a per-particle field
    assert_close(model.predict(named), want)
    # a slice (offsets not starting at 0) and a fancy-indexed ListArray
    assert_close(model.predict(numbers[10:40]), want[10:40])
    pick = rng.permutation(len(lengths))[:25]
    assert_close(model.predict(records[pick]), want[pick])
    # the same slices from raw buffers
    assert_close(model.predict_jagged(offsets[10:41], content), want[10:40])


def test_pfn_with_per_jet_input(rng, pfn_jet_path):
    model = Model.load(pfn_jet_path)
    layout, min_len = model.jagged_layout()
    assert [(t.name, t.role, t.n_features) for t in layout] == [
        ("particles", "particle", 4),
        ("mask", "mask", 1),
        ("jet", "jet", 2),
    ]
    assert min_len == 1
    lengths = random_lengths(rng, 80)
    offsets = offsets_of(lengths)
    content = particles_content(rng, int(offsets[-1]))
    jet = rng.standard_normal((len(lengths), 2)).astype(np.float32)
    x, mask = pad(content, offsets, int(lengths.max()), channels_first=False)
    want = ort_run(pfn_jet_path, {"particles": x, "mask": mask, "jet": jet})
    assert_close(model.predict_jagged(offsets, content, jet_inputs={"jet": jet}), want)
    arr = ak.zip({"particles": ak.unflatten(content, lengths), "jet": jet}, depth_limit=1)
    assert_close(model.predict(arr), want)
    with pytest.raises(hepinfer.InputError, match="per-jet input 'jet'.*missing"):
        model.predict_jagged(offsets, content)
    with pytest.raises(hepinfer.InputError, match="per-jet input 'jet' has shape"):
        model.predict_jagged(offsets, content, jet_inputs={"jet": jet[:-1]})


# ----------------------------------------------------------------------------- ParticleNet-Lite
def test_particlenet_matches_padded_model(rng, pnet):
    k, path = pnet
    model = Model.load(path)
    layout, min_len = model.jagged_layout()
    assert min_len == k + 1  # topk(k + 1) including the particle itself
    assert [(t.name, t.role, t.particle_axis, t.n_features) for t in layout] == [
        ("points", "particle", 2, 2),
        ("features", "particle", 2, 4),
        ("mask", "mask", 2, 1),
    ]
    lengths = random_lengths(rng, 120)
    offsets = offsets_of(lengths)
    content = particles_content(rng, int(offsets[-1]))
    feeds = pnet_padded_feeds(content, offsets, int(lengths.max()) + 2)
    want = ort_run(path, feeds)
    assert np.isnan(want[lengths == 0]).all() and np.isfinite(want[lengths > 0]).all()
    assert_close(model.predict(feeds), want)
    particles = {"points": content[:, 1:3], "features": content}
    got = model.predict_jagged(offsets, particles)
    assert_close(got, want)
    assert_close(
        got, model.predict(pnet_padded_feeds(content, offsets, 128))
    )  # hepinfer padded, more padding
    assert_close(
        model.predict_jagged(
            offsets.astype(np.int32), {k_: v.astype(np.float64) for k_, v in particles.items()}
        ),
        want,
    )
    # awkward: particle records with feature names mapped onto the inputs
    jets = ak.zip({f: ak.unflatten(content[:, i], lengths) for i, f in enumerate(["pt", "eta", "phi", "e"])})
    mapped = model.predict_jagged(
        jets, fields={"points": ["eta", "phi"], "features": ["pt", "eta", "phi", "e"]}
    )
    assert_close(mapped, want)
    # explicit particle axis and mask name give the same
    assert_close(model.predict_jagged(offsets, particles, particle_axis=2, mask="mask"), got, rtol=0, atol=0)


def test_particlenet_short_jets(rng, pnet):
    """Jets with fewer particles than k + 1 (and empty ones) are evaluated as the padded model does."""
    k, path = pnet
    model = Model.load(path)
    lengths = np.array([0, 1, 2, k - 1, k, k + 1, k + 2, 0, 3] * 3)
    offsets = offsets_of(lengths)
    content = particles_content(rng, int(offsets[-1]))
    particles = {"points": content[:, 1:3], "features": content}
    for P in (k + 2, 2 * k + 7):  # the longest jet, and more padding
        want = ort_run(path, pnet_padded_feeds(content, offsets, P))
        assert_close(model.predict_jagged(offsets, particles), want)


def test_particlenet_single_jet_and_empty_batch(rng, pnet):
    k, path = pnet
    model = Model.load(path)
    n = int(rng.integers(k + 1, 90))
    content = particles_content(rng, n)
    offsets = np.array([0, n])
    want = ort_run(path, pnet_padded_feeds(content, offsets, n))
    got = model.predict_jagged(offsets, {"points": content[:, 1:3], "features": content})
    assert got.shape == (1, 2)
    assert_close(got, want)
    empty = model.predict_jagged(np.zeros(1, np.int64), {"points": content[:0, 1:3], "features": content[:0]})
    assert empty.shape == (0, 2) and empty.dtype == np.float32
    none = np.zeros(0, np.int64)
    arr = ak.zip(
        {"points": ak.unflatten(content[:0, 1:3], none), "features": ak.unflatten(content[:0], none)},
        depth_limit=1,
    )
    assert model.predict(arr).shape == (0, 2)
    arr = ak.zip(
        {"points": ak.unflatten(content[:, 1:3], [n]), "features": ak.unflatten(content, [n])}, depth_limit=1
    )
    assert_close(model.predict(arr), want)


# ----------------------------------------------------------------------------- threads and chunks
def test_thread_count_and_concurrency(rng, pnet):
    _, path = pnet
    model = Model.load(path)
    lengths = random_lengths(rng, 150)
    offsets = offsets_of(lengths)
    content = particles_content(rng, int(offsets[-1]))
    particles = {"points": content[:, 1:3], "features": content}
    one = model.predict_jagged(offsets, particles, n_threads=1)
    for nt in (2, 3, 0):
        np.testing.assert_array_equal(model.predict_jagged(offsets, particles, n_threads=nt), one)
    results = [None] * 4

    def work(i):
        results[i] = model.predict_jagged(offsets, particles, n_threads=2)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        np.testing.assert_array_equal(r, one)


def test_many_jets_of_one_length_split_into_chunks(rng, pfn_path):
    """3000 jets of 1..3 particles: groups larger than one evaluation are split, order kept."""
    model = Model.load(pfn_path)
    lengths = rng.integers(1, 4, 3000)
    offsets = offsets_of(lengths)
    content = particles_content(rng, int(offsets[-1]))
    x, mask = pad(content, offsets, 3, channels_first=False)
    want = ort_run(pfn_path, {"particles": x, "mask": mask})
    assert_close(model.predict_jagged(offsets, content, n_threads=2), want)


# ----------------------------------------------------------------------------- hand-built graphs
def masked_sum_model(mask_type, fixed_particles=None, per_particle_output=False):
    """x (batch, n, 3) and a mask (batch, n) -> sum over real particles (batch, 3), built with onnx.helper."""
    n = fixed_particles if fixed_particles is not None else "n"
    nodes = []
    if mask_type == TensorProto.BOOL:
        nodes.append(helper.make_node("Cast", ["mask"], ["m"], to=TensorProto.FLOAT))
    else:
        nodes.append(helper.make_node("Identity", ["mask"], ["m"]))
    nodes += [
        helper.make_node("Unsqueeze", ["m", "axes"], ["m3"]),
        helper.make_node("Mul", ["x", "m3"], ["xm"]),
    ]
    if per_particle_output:
        outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", n, 3])]
        nodes.append(helper.make_node("Identity", ["xm"], ["y"]))
    else:
        outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])]
        nodes.append(helper.make_node("ReduceSum", ["xm", "ax1"], ["y"], keepdims=0))
    g = helper.make_graph(
        nodes,
        "masked_sum",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", n, 3]),
            helper.make_tensor_value_info("mask", mask_type, ["batch", n]),
        ],
        outputs,
        initializer=[
            onnx.numpy_helper.from_array(np.array([2], np.int64), "axes"),
            onnx.numpy_helper.from_array(np.array([1], np.int64), "ax1"),
        ],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return Model.load(m.SerializeToString())


@pytest.mark.parametrize("mask_type", [TensorProto.FLOAT, TensorProto.BOOL])
def test_masked_sum_exact(rng, mask_type):
    model = masked_sum_model(mask_type)
    lengths = random_lengths(rng, 50)
    offsets = offsets_of(lengths)
    content = rng.integers(-1000, 1000, (int(offsets[-1]), 3)).astype(np.float32)  # exact sums
    want = np.array(
        [content[a:b].sum(axis=0) for a, b in zip(offsets[:-1], offsets[1:])], np.float32
    ).reshape(-1, 3)
    np.testing.assert_array_equal(model.predict_jagged(offsets, content), want)
    # NaN in one particle only spoils its jet
    bad = content.copy()
    j = int(np.argmax(lengths > 0))
    bad[offsets[j]] = np.nan
    got = model.predict_jagged(offsets, bad)
    assert np.isnan(got[j]).all()
    np.testing.assert_array_equal(np.delete(got, j, axis=0), np.delete(want, j, axis=0))


def test_layout_options():
    model = masked_sum_model(TensorProto.FLOAT)
    layout, _ = model.jagged_layout()
    assert layout == [JaggedInputInfo("x", "particle", 1, 3), JaggedInputInfo("mask", "mask", 1, 1)]
    layout, _ = model.jagged_layout(mask=False)
    assert [t.role for t in layout] == ["particle", "particle"]
    _, min_len = model.jagged_layout(min_length=5)
    assert min_len == 5
    # mask=False: the mask must then be given as a per-particle column
    offsets = np.array([0, 2, 3])
    x = np.arange(9, dtype=np.float32).reshape(3, 3)
    got = model.predict_jagged(offsets, {"x": x, "mask": np.array([1, 0, 1], np.float32)}, mask=False)
    np.testing.assert_array_equal(got, [[0, 1, 2], [6, 7, 8]])
    with pytest.raises(hepinfer.InputError, match="mask input 'nope' is not an input"):
        model.jagged_layout(mask="nope")
    with pytest.raises(hepinfer.InputError, match="not at the particle axis 2"):
        model.jagged_layout(particle_axis=2)


# ----------------------------------------------------------------------------- errors
def test_errors(rng, pfn_path):
    model = Model.load(pfn_path)
    content = particles_content(rng, 10)
    with pytest.raises(hepinfer.InputError, match="offsets decrease at event 1"):
        model.predict_jagged(np.array([0, 5, 3, 10]), content)
    with pytest.raises(hepinfer.InputError, match="has 10 values but the offsets reach 11 at event 2"):
        model.predict_jagged(np.array([0, 5, 7, 11]), content)
    with pytest.raises(hepinfer.InputError, match="offsets\\[0\\] = -1 is negative"):
        model.predict_jagged(np.array([-1, 5]), content)
    with pytest.raises(hepinfer.InputError, match="takes 4 value\\(s\\) per particle, 3 column\\(s\\)"):
        model.predict_jagged(np.array([0, 5, 10]), content[:, :3])
    with pytest.raises(hepinfer.InputError, match="1-D array of n_jets \\+ 1"):
        model.predict_jagged(np.zeros((0,), np.int64), content)
    with pytest.raises(hepinfer.InputError, match="offsets must be integers"):
        model.predict_jagged(np.array([0.0, 5.0]), content)
    with pytest.raises(hepinfer.InputError, match="is the mask"):
        model.predict_jagged(np.array([0, 10]), {"particles": content, "mask": content[:, 0]})
    with pytest.raises(hepinfer.InputError, match="'pt' is not an input of the model"):
        model.predict_jagged(np.array([0, 10]), {"particles": content, "pt": content[:, 0]})
    with pytest.raises(hepinfer.InputError, match="content must have shape"):
        model.predict_jagged(np.array([0, 10]), content.reshape(10, 2, 2))
    with pytest.raises(hepinfer.InputError, match="must be numbers"):
        model.predict_jagged(np.array([0, 1]), np.array(["a"]))
    jets = ak.zip({"a": ak.unflatten(content[:, 0], [4, 6]), "b": ak.unflatten(content[:, 1], [4, 6])})
    with pytest.raises(hepinfer.InputError, match="takes 4 value"):
        model.predict(jets)
    with pytest.raises(hepinfer.InputError, match="not per-particle inputs"):
        model.predict_jagged(jets, fields={"points": ["a"]})
    with pytest.raises(hepinfer.InputError, match="fields \\['c'\\] for input 'particles'"):
        model.predict_jagged(jets, fields={"particles": ["a", "b", "c"]})
    var_var = ak.Array([[[1.0, 2.0], [3.0]], []])
    with pytest.raises(hepinfer.InputError, match="not supported"):
        model.predict(var_var)


def test_fixed_particle_dimension_is_refused(tmp_path):
    torch.manual_seed(0)
    path = export(
        PFN().eval(),
        (torch.randn(3, 9, 4), torch.ones(3, 9)),
        tmp_path / "fixed.onnx",
        ["particles", "mask"],
        [{0: "batch"}] * 2,
    )
    model = Model.load(path)
    with pytest.raises(
        hepinfer.InputError, match="no input has a symbolic particle dimension.*fixed particle"
    ):
        model.predict_jagged(np.array([0, 3]), np.zeros((3, 4), np.float32))
    with pytest.raises(hepinfer.InputError, match="no input has a symbolic particle dimension"):
        model.jagged_layout(particle_axis=1)
    fixed = masked_sum_model(TensorProto.FLOAT, fixed_particles=5)
    with pytest.raises(hepinfer.InputError, match="symbolic particle dimension"):
        fixed.jagged_layout()


def test_per_particle_output_is_refused():
    model = masked_sum_model(TensorProto.FLOAT, per_particle_output=True)
    with pytest.raises(hepinfer.InputError, match="output 'y' .* has a particle dimension"):
        model.predict_jagged(np.array([0, 2]), np.zeros((2, 3), np.float32))
