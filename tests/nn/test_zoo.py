"""The NN zoo (hepinfer.train.zoo, issue 16) at reduced sizes: each network is exported from
torch inside the test and hepinfer must match onnxruntime on fresh inputs, for constituent
models also with empty and full jets and through predict_jagged. The full-size models are
timed by benchmarks/nn_zoo.py.

Each model is exported by the TorchScript exporter and, where onnxscript is installed, by the
dynamo exporter as well; the export itself is checked against torch first, so that a failure
names the engine at fault."""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from hepinfer.nn import Model  # noqa: E402
from hepinfer.train import zoo  # noqa: E402

# sizes that keep every test to seconds, with every layer type of the published model kept
SMALL = {
    "particlenet": dict(n_features=5, k=4, blocks=((8, 8), (16, 16)), fc=16, max_particles=12),
    "part": dict(
        n_features=5,
        embed_dims=(16, 32, 16),
        pair_dims=(8,),
        heads=2,
        layers=2,
        cls_layers=1,
        max_particles=12,
    ),
    "deepjet": dict(
        n_cpf=6,
        n_npf=5,
        n_sv=3,
        cpf_convs=(8, 4),
        npf_convs=(4,),
        sv_convs=(8, 4),
        lstm=(12, 6, 6),
        dense=(16, 8),
    ),
    "deeptau": dict(n_cell=12, embed=(8,), channels=8, dense=(16,)),
    "calogan": dict(latent=8, channels=(16, 8, 4)),
    "vae_decoder": dict(widths=(5, 16, 24, 12)),
    "realnvp": dict(dim=6, hidden=16, n_couplings=4),
    "mlp": {},
    "ae": {},
    "pfn": dict(max_particles=12),
    "efn": dict(max_particles=12),
    "pnet_lite": dict(k=4, max_particles=12),
}
# recurrences and long attention stacks sum in another order in every runtime
ATOL = {"deepjet": 1e-4, "part": 1e-5}
HAS_DYNAMO = importlib.util.find_spec("onnxscript") is not None
EXPORTERS = [
    "torchscript",
    pytest.param("dynamo", marks=pytest.mark.skipif(not HAS_DYNAMO, reason="needs onnxscript")),
]
PARTICLE_MODELS = [name for name in SMALL if name in ("particlenet", "part", "pfn", "efn", "pnet_lite")]


def test_every_zoo_model_has_a_small_size():
    assert set(SMALL) == set(zoo.ZOO)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(name, exporter) -> (ZooModel, path), exported once per module."""
    cache: dict[tuple[str, str], tuple[zoo.ZooModel, str]] = {}
    folder = tmp_path_factory.mktemp("zoo")

    def get(name: str, exporter: str) -> tuple[zoo.ZooModel, str]:
        key = (name, exporter)
        if key not in cache:
            model = zoo.ZOO[name](**SMALL[name])
            path = str(folder / f"{name}.{exporter}.onnx")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    zoo.export(model, path, dynamo=exporter == "dynamo")
                except Exception as err:
                    if exporter != "dynamo":
                        raise
                    # torch's dynamo exporter cannot write every zoo model (ParT in torch 2.13):
                    # nothing hepinfer could be tested on
                    cause = str(err.__cause__ or err).strip().splitlines()
                    pytest.skip(
                        f"the dynamo exporter fails: {cause[0][:200] if cause else type(err).__name__}"
                    )
            cache[key] = (model, path)
        return cache[key]

    return get


def _session(path: str):
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"])


def _check(name: str, got, ref, what: str) -> None:
    got = np.asarray(got).reshape(ref.shape)
    # relative 1e-5, and an absolute floor of 1e-6 of the output's scale: an output near zero
    # after a cancelling sum (a ConvTranspose of values ~10 giving 0.005) differs from
    # onnxruntime's by float32 rounding of the terms, not of the result
    scale = float(np.nanmax(np.abs(ref), initial=1.0))
    atol = max(ATOL.get(name, 1e-6), 1e-6 * scale)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=atol, err_msg=f"{name}: {what}")


def _edge_jets(model: zoo.ZooModel, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A batch with an empty jet, a one-particle jet, a full jet and jets of random length."""
    layout = model.jagged
    assert layout is not None
    n = layout.max_particles
    counts = np.array([0, 1, n, n - 1, *rng.integers(0, n + 1, 4)])
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return zoo.padded(layout, offsets, layout.content(int(offsets[-1]), rng), n)


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("name", list(SMALL))
def test_zoo_model_matches_onnxruntime(name, exporter, exported, rng):
    model, path = exported(name, exporter)
    session = _session(path)
    hep = Model.load(path)
    batches = [model.inputs(b, rng) for b in (1, 5)]
    if model.jagged is not None:
        batches.append(_edge_jets(model, rng))
    for feeds in batches:
        ref = session.run(None, feeds)[0]
        batch = len(next(iter(feeds.values())))
        # the export itself is faithful (else the comparison below would test the exporter)
        scale = float(np.nanmax(np.abs(ref), initial=1.0))
        expected = model.torch_run(feeds).reshape(ref.shape)
        if name == "part":
            # an empty jet: every key masked, NaN scores in the ONNX graph (checked below), while
            # torch's attention returns finite ones for a fully masked row
            empty = np.isnan(ref).all(axis=tuple(range(1, ref.ndim)))
            expected[empty] = np.nan
        np.testing.assert_allclose(
            ref,
            expected,
            rtol=1e-4,
            atol=1e-5 * scale,
            err_msg=f"{name}: torch",
        )
        _check(name, hep.predict(feeds), ref, f"batch {batch}")
        _check(name, hep.predict(feeds, n_threads=2), ref, f"batch {batch}, 2 threads")
    if name == "part":
        # weaver's ParT: an empty jet has every key masked (-inf), so its scores are NaN; a
        # one-particle or full jet has finite scores
        edge = session.run(None, batches[-1])[0]
        assert np.isnan(edge[0]).all() and np.isfinite(edge[1:]).all()


@pytest.mark.parametrize("name", PARTICLE_MODELS)
def test_zoo_particle_model_jagged_matches_padded(name, exported, rng):
    """predict_jagged (each jet at its true length) equals onnxruntime on the padded jets,
    including empty, single-particle and full jets."""
    model, path = exported(name, "torchscript")
    layout = model.jagged
    assert layout is not None
    n = layout.max_particles
    counts = np.concatenate([[0, 1, n, 2], np.clip(rng.poisson(n // 2, 12), 0, n)])
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    content = layout.content(int(offsets[-1]), rng)
    ref = _session(path).run(None, zoo.padded(layout, offsets, content, n))[0]
    hep = Model.load(path)
    got = hep.predict_jagged(offsets, zoo.jagged_particles(layout, content))
    _check(name, got, ref, "jagged")


def test_padded_and_jagged_layouts_agree(rng):
    """The zoo's jet helpers: padding puts each jet's particles first, in order, in every
    per-particle input (on its particle axis), and the mask marks exactly them."""
    model = zoo.ZOO["part"](**SMALL["part"])
    layout = model.jagged
    assert layout is not None
    offsets = zoo.jets(20, rng, layout.max_particles)
    content = layout.content(int(offsets[-1]), rng)
    feeds = zoo.padded(layout, offsets, content, layout.max_particles)
    particles = zoo.jagged_particles(layout, content)
    mask = feeds["mask"][:, 0, :]
    np.testing.assert_array_equal(mask.sum(axis=1), np.minimum(np.diff(offsets), layout.max_particles))
    for jet in range(20):
        a, b = offsets[jet], offsets[jet + 1]
        for name in ("x", "v"):
            np.testing.assert_array_equal(feeds[name][jet, :, : b - a].T, particles[name][a:b])
            assert not feeds[name][jet, :, b - a :].any()
    assert set(feeds) == set(model.input_names)
