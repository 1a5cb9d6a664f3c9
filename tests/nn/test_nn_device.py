"""The CUDA NN executor without a GPU: in a CPU-only build, device="cuda" raises the clear
"built without CUDA" error; in every build, the device plan (the node-by-node CUDA executor
with its per-jet / per-particle tensors, broadcasting, segment pooling and softmax) runs on its
host reference backend, which evaluates the same per-element functions as the CUDA kernels,
and must agree with onnxruntime and the CPU engine on torch-exported MLPs, an autoencoder and
PFNs (padded and jagged), including an empty batch, a single row, empty and one-particle jets.
What this cannot check is the CUDA kernels' launch and tiling code: tests/gpu/test_nn_gpu.py."""

from __future__ import annotations

import numpy as np
import pytest

import hepinfer
from hepinfer import _core
from hepinfer.nn import Model

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from tests.nn.device_models import jagged_jets, knn_model, ort_run, padded

RTOL, ATOL = 1e-5, 2e-6


@pytest.mark.skipif(_core.built_with_cuda(), reason="this build has CUDA: the error is for CPU-only builds")
def test_cuda_request_in_cpu_only_build(dense):
    path, _ = dense["mlp"]
    with pytest.raises(hepinfer.DeviceError, match="built without CUDA"):
        Model.load(path, device="cuda")
    model = Model.load(path)
    with pytest.raises(hepinfer.DeviceError, match="built without CUDA"):
        model.to("cuda:1")
    assert model.device == "cpu"
    assert model.to("cpu") is model
    with pytest.raises(hepinfer.DeviceError, match="unknown device"):
        model.to("tpu")


@pytest.mark.skipif(
    not _core.built_with_cuda() or _core.cuda_device_count() > 0,
    reason="needs a CUDA build on a machine without GPU",
)
def test_cuda_request_without_a_device(dense):
    with pytest.raises(hepinfer.DeviceError, match="0 CUDA device"):
        Model.load(dense["mlp"][0], device="cuda")


@pytest.mark.parametrize("name", ["mlp", "softmax", "autoencoder"])
@pytest.mark.parametrize("rows", [0, 1, 37, 300])
def test_dense_plan_matches_onnxruntime(rng, dense, name, rows):
    path, d = dense[name]
    model = Model.load(path)
    x = rng.normal(0, 1.5, (rows, d)).astype(np.float32)
    (got,) = model._core._device_plan_reference([x])
    want = ort_run(path, {"x": x})
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(got, model.predict(x), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", ["pfn_sum", "pfn_mean"])
def test_pfn_padded_plan(rng, pfns, name):
    offsets, content = jagged_jets(rng, 40)
    x, m = padded(content, offsets)
    (got,) = _core_model(pfns[name])._device_plan_reference([x, m])
    np.testing.assert_allclose(got, ort_run(pfns[name], {"particles": x, "mask": m}), rtol=RTOL, atol=ATOL)


def _core_model(path):
    return Model.load(path)._core


@pytest.mark.parametrize("name", ["pfn_sum", "pfn_mean"])
@pytest.mark.parametrize("n_jets", [0, 1, 3, 64])
def test_pfn_jagged_plan_matches_padded_model(rng, pfns, name, n_jets):
    offsets, content = jagged_jets(rng, n_jets)
    core = _core_model(pfns[name])
    (got,) = core._device_plan_reference_jagged(offsets, [("particles", [content])], [])
    assert got.shape == (n_jets, 3)
    (cpu,) = core.predict_jagged(offsets, [("particles", [content])], [])
    np.testing.assert_allclose(got, cpu, rtol=RTOL, atol=ATOL)
    if n_jets:
        x, m = padded(content, offsets)
        np.testing.assert_allclose(
            got, ort_run(pfns[name], {"particles": x, "mask": m}), rtol=RTOL, atol=ATOL
        )


def test_pfn_jagged_plan_with_per_jet_input(rng, pfns):
    offsets, content = jagged_jets(rng, 25)
    jet = rng.standard_normal((25, 2)).astype(np.float32)
    core = _core_model(pfns["pfn_jet"])
    # float64 columns with a stride (a column view of a wider array) are read like the CPU path
    wide = np.concatenate([content.astype(np.float64), np.zeros((len(content), 1))], axis=1)
    (got,) = core._device_plan_reference_jagged(offsets, [("particles", [wide[:, :4]])], [("jet", jet)])
    x, m = padded(content, offsets)
    want = ort_run(pfns["pfn_jet"], {"particles": x, "mask": m, "jet": jet})
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_jagged_plan_input_errors(rng, pfns):
    offsets, content = jagged_jets(rng, 5)
    core = _core_model(pfns["pfn_jet"])
    with pytest.raises(hepinfer.InputError, match="per-jet input 'jet' is missing"):
        core._device_plan_reference_jagged(offsets, [("particles", [content])], [])
    with pytest.raises(hepinfer.InputError, match="takes 4 value"):
        core._device_plan_reference_jagged(offsets, [("particles", [content[:, :3]])], [])


def test_unsupported_model_names_the_node(tmp_path):
    core = Model.load(knn_model(torch, tmp_path))._core
    points = np.zeros((2, 8, 2), np.float32)
    with pytest.raises(hepinfer.DeviceError, match=r"not supported on CUDA yet") as e:
        core._device_plan_reference([points])
    assert "(TopK)" in str(e.value) or "node '" in str(e.value)
