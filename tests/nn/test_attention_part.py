"""ParT (the zoo's Particle Transformer) through the fused attention and GELU nodes at its
published particle count (100; narrow layers keep it fast): predict_jagged (each jet at its true
length) and predict on the padded jets against onnxruntime on the padded jets, with empty,
one-particle and full jets, at one and two threads."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("torch")
pytest.importorskip("onnx")

from hepinfer.nn import Model  # noqa: E402
from hepinfer.train import zoo  # noqa: E402

SIZE = dict(n_features=7, embed_dims=(16, 32, 16), pair_dims=(8, 8), heads=4, layers=2, cls_layers=1)


@pytest.fixture(scope="module")
def part(tmp_path_factory):
    model = zoo.ZOO["part"](**SIZE, max_particles=100)
    path = str(tmp_path_factory.mktemp("part") / "part.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zoo.export(model, path)
    return model, path


def _check(got, ref):
    got = np.asarray(got).reshape(ref.shape)
    # an empty jet is NaN in the padded graph (every key masked); the relative tolerance of the
    # issue, with an absolute floor for scores near zero
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6, equal_nan=True)


def test_part_jagged_and_padded_match_onnxruntime(part, rng):
    model, path = part
    layout = model.jagged
    n = layout.max_particles
    counts = np.concatenate([[0, 1, n, n - 1, 2, 0], rng.integers(0, n + 1, 10)])
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    content = layout.content(int(offsets[-1]), rng)
    feeds = zoo.padded(layout, offsets, content, n)
    ref = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    assert np.isnan(ref[[0, 5]]).all() and np.isfinite(np.delete(ref, [0, 5], axis=0)).all()
    hep = Model.load(path)
    for n_threads in (1, 2):
        _check(hep.predict(feeds, n_threads=n_threads), ref)
        _check(hep.predict_jagged(offsets, zoo.jagged_particles(layout, content), n_threads=n_threads), ref)


def test_part_single_jets(part, rng):
    """Batches of one jet: an empty jet, a one-particle jet and a full one."""
    model, path = part
    layout = model.jagged
    n = layout.max_particles
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    hep = Model.load(path)
    for count in (0, 1, 37, n):
        offsets = np.array([0, count], dtype=np.int64)
        content = layout.content(count, rng)
        feeds = zoo.padded(layout, offsets, content, n)
        ref = session.run(None, feeds)[0]
        _check(hep.predict(feeds), ref)
        _check(hep.predict_jagged(offsets, zoo.jagged_particles(layout, content)), ref)
