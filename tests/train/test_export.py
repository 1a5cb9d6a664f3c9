"""hepinfer.export: torch → ONNX (dynamic batch and particle count) and xgboost → JSON, each
checked right after writing; here the files are compared again on fresh inputs of other shapes
with onnxruntime and, when hepinfer.nn is there, with hepinfer.nn.Model."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from hepinfer import train as T
from hepinfer.export import ExportError, export_forest, export_onnx, max_relative_difference

torch.set_num_threads(1)


def _hepinfer_model():
    try:
        from hepinfer.nn import Model
    except ImportError:
        return None
    return Model


def _compare(module, path, inputs, names):
    module.eval()
    with torch.no_grad():
        expected = module(*inputs).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {n: t.numpy() for n, t in zip(names, inputs)})[0]
    assert got.shape == expected.shape
    assert max_relative_difference(got, expected) <= 1e-5
    Model = _hepinfer_model()
    if Model is not None:
        ours = np.asarray(Model.load(str(path)).predict(*[t.numpy() for t in inputs]))
        assert max_relative_difference(ours.reshape(expected.shape), expected) <= 1e-5


def _particles(rng, batch, n_particles, n_features=3):
    x = rng.normal(0, 0.3, (batch, n_particles, n_features)).astype(np.float32)
    x[..., 0] = np.abs(x[..., 0])
    mask = np.arange(n_particles)[None, :] < rng.integers(1, n_particles + 1, batch)[:, None]
    if batch > 2:
        mask[1] = False  # a jet with no particles at all
    x *= mask[..., None]
    return torch.as_tensor(x), torch.as_tensor(mask.astype(np.float32))


@pytest.mark.parametrize("what", ["mlp", "gaussian", "mse", "autoencoder"])
def test_event_level_models_round_trip(rng, tmp_path, what):
    torch.manual_seed(int(rng.integers(1 << 30)))
    if what == "mlp":
        module = T.WithSigmoid(T.MLP(4, (16, 8)))
    elif what == "gaussian":
        module = T.GaussianRegressor(4, (16,))
        module.fit_target(torch.as_tensor(rng.normal(50, 10, 100)))
    elif what == "mse":
        module = T.MLP(4, (16,), n_outputs=2)
    else:
        module = T.ReconstructionError(T.Autoencoder(4, (8,), 2))
    scaler = (
        module.classifier.scaler
        if what == "mlp"
        else (module.autoencoder.scaler if what == "autoencoder" else module.scaler)
    )
    scaler.fit(torch.as_tensor(rng.normal(3, 2, (100, 4)).astype(np.float32)))
    example = torch.as_tensor(rng.normal(3, 2, (16, 4)).astype(np.float32))
    path = export_onnx(module, example, tmp_path / f"{what}.onnx")
    for batch in (1, 5, 333):
        _compare(module, path, (torch.as_tensor(rng.normal(3, 2, (batch, 4)).astype(np.float32)),), ["input"])
    if what == "gaussian":
        with torch.no_grad():
            assert torch.all(module(example)[:, 1] > 0)


@pytest.mark.parametrize("kind", ["pfn", "efn", "particlenet"])
def test_constituent_models_dynamic_batch_and_particles(rng, tmp_path, kind):
    torch.manual_seed(int(rng.integers(1 << 30)))
    if kind == "pfn":
        net = T.ParticleFlowNetwork(3, (16,), 8, (8,))
    elif kind == "efn":
        net = T.EnergyFlowNetwork(0, (1, 2), (16,), 8, (8,))
    else:
        net = T.ParticleNetLite(3, (1, 2), k=4, blocks=((8, 8), (16,)), head_hidden=(8,), dropout=0.0)
    module = T.WithSigmoid(net)
    if hasattr(net, "scaler"):
        net.scaler.fit(*_particles(rng, 50, 10))
    path = export_onnx(module, _particles(rng, 8, 10), tmp_path / f"{kind}.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["particles", "mask"]
    # other batch sizes and particle counts, also fewer particles than ParticleNet's k
    for batch, n_particles in ((1, 1), (3, 2), (7, 10), (64, 37)):
        _compare(module, path, _particles(rng, batch, n_particles), ["particles", "mask"])


def test_export_detects_a_model_that_does_not_reproduce(tmp_path):
    class Drifting(torch.nn.Module):
        """Its output changes from call to call (Python state the trace cannot capture)."""

        def __init__(self):
            super().__init__()
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            return x * float(self.calls)

    with pytest.raises(ExportError, match="onnxruntime output 0 differs"):
        export_onnx(Drifting(), torch.ones(4, 2), tmp_path / "drift.onnx", check_hepinfer=False)


def test_max_relative_difference():
    a = np.array([1.0, 100.0, np.nan])
    assert max_relative_difference(a, a) == 0.0
    assert max_relative_difference(np.array([2e-6, 100.0]), np.array([0.0, 100.001])) == pytest.approx(
        1e-5, rel=1e-4
    )
    assert max_relative_difference(np.array([np.nan]), np.array([1.0])) == np.inf
    assert max_relative_difference(np.zeros(2), np.zeros(3)) == np.inf


def test_forest_export_is_verified_with_hepinfer(rng, tmp_path):
    xgb = pytest.importorskip("xgboost")
    X = rng.normal(size=(500, 5)).astype(np.float32)
    X[rng.random(X.shape) < 0.05] = np.nan
    y = (np.nan_to_num(X[:, 0]) + 0.5 * rng.normal(size=500) > 0).astype(int)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 4, "nthread": 1}, xgb.DMatrix(X, y), 30)
    path = export_forest(booster, tmp_path / "bdt.json", X)
    import hepinfer

    np.testing.assert_allclose(
        hepinfer.Forest.load(path).predict(X), booster.predict(xgb.DMatrix(X)), rtol=1e-6
    )
    assert export_forest(booster, tmp_path / "default_rows.json") == str(tmp_path / "default_rows.json")
    with pytest.raises(ValueError, match=r"\.json"):
        export_forest(booster, tmp_path / "bdt.ubj")
