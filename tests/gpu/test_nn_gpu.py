"""NN inference on a CUDA device (Model.to("cuda")) against onnxruntime and the CPU engine on
torch-exported models: an MLP, a softmax MLP, a dense autoencoder, PFNs on padded input and on
jagged jets (segment pooling on the device, no padding), numpy and torch CUDA inputs, an empty
batch, a single row, empty and one-particle jets, many threads on one model. Skipped without a
GPU or in a CPU-only build (see conftest.py)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import hepinfer
from hepinfer import _core
from hepinfer.nn import Model

pytestmark = pytest.mark.gpu
if not _core.built_with_cuda():
    pytest.skip("hepinfer was built without CUDA (HEPINFER_CUDA=OFF)", allow_module_level=True)
if _core.cuda_device_count() == 0:
    pytest.skip("hepinfer has CUDA but no CUDA device is visible", allow_module_level=True)

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from tests.nn.device_models import jagged_jets, knn_model, ort_run, padded

# the GPU sums in another order (fma, tiles of 16 along K) than the CPU engine and onnxruntime
RTOL, ATOL = 2e-5, 5e-6


@pytest.fixture
def cuda_torch():
    """torch with a usable CUDA device, or a skip saying what is missing."""
    if not torch.cuda.is_available():
        pytest.skip(f"torch {torch.__version__} has no usable CUDA device")
    return torch


@pytest.mark.parametrize("name", ["mlp", "softmax", "autoencoder"])
@pytest.mark.parametrize("rows", [0, 1, 63, 65, 1000, 70_000])
def test_dense_models_numpy(rng, dense, name, rows):
    path, d = dense[name]
    model = Model.load(path, device="cuda")
    assert model.device == "cuda:0"
    x = rng.normal(0, 1.5, (rows, d)).astype(np.float32)
    got = model.predict(x)
    assert isinstance(got, np.ndarray) and got.dtype == np.float32
    want = ort_run(path, {"x": x})
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(got, Model.load(path).predict(x), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", ["mlp", "autoencoder"])
def test_cuda_torch_tensors_stay_on_device(rng, dense, cuda_torch, name):
    path, d = dense[name]
    model = Model.load(path).to("cuda")
    x = rng.normal(0, 1.5, (513, d)).astype(np.float32)
    xt = cuda_torch.from_numpy(x).to("cuda")
    got = model.predict(xt * 1.0)  # produced by a kernel on torch's current stream
    assert isinstance(got, cuda_torch.Tensor) and got.is_cuda and got.dtype == cuda_torch.float32
    np.testing.assert_allclose(got.cpu().numpy(), ort_run(path, {"x": x}), rtol=RTOL, atol=ATOL)
    # a non-contiguous float64 tensor is converted on the device first
    x64 = cuda_torch.from_numpy(x.astype(np.float64)).to("cuda").t().contiguous().t()
    got64 = model.predict(x64)
    np.testing.assert_allclose(got64.cpu().numpy(), ort_run(path, {"x": x}), rtol=RTOL, atol=ATOL)


def test_cuda_array_interface_input(rng, dense, cuda_torch):
    path, d = dense["softmax"]
    model = Model.load(path, device="cuda")
    x = rng.normal(0, 1.5, (100, d)).astype(np.float32)
    xt = cuda_torch.from_numpy(x).to("cuda")
    cuda_torch.cuda.synchronize()

    class Producer:  # a bare __cuda_array_interface__ producer (as cupy or numba would give)
        __cuda_array_interface__ = xt.__cuda_array_interface__

    out = model.predict(Producer())
    cai = out.__cuda_array_interface__
    assert tuple(cai["shape"]) == (100, 5) and cai["typestr"] == "<f4"
    back = cuda_torch.as_tensor(out, device="cuda").cpu().numpy()
    np.testing.assert_allclose(back, ort_run(path, {"x": x}), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", ["pfn_sum", "pfn_mean"])
@pytest.mark.parametrize("n_jets", [0, 1, 3, 500])
def test_pfn_jagged_on_device(rng, pfns, name, n_jets):
    offsets, content = jagged_jets(rng, n_jets)
    cpu = Model.load(pfns[name])
    gpu = cpu.to("cuda")
    got = gpu.predict_jagged(offsets, {"particles": content})
    assert got.shape == (n_jets, 3)
    np.testing.assert_allclose(got, cpu.predict_jagged(offsets, {"particles": content}), rtol=RTOL, atol=ATOL)
    if n_jets:
        x, m = padded(content, offsets)
        np.testing.assert_allclose(
            got, ort_run(pfns[name], {"particles": x, "mask": m}), rtol=RTOL, atol=ATOL
        )
        # the padded model on the device too (dense path with the mask)
        np.testing.assert_allclose(gpu.predict({"particles": x, "mask": m}), got, rtol=RTOL, atol=ATOL)


def test_pfn_jagged_awkward_and_per_jet_input(rng, pfns):
    ak = pytest.importorskip("awkward")
    offsets, content = jagged_jets(rng, 200)
    jet = rng.standard_normal((200, 2)).astype(np.float32)
    model = Model.load(pfns["pfn_jet"], device="cuda")
    got = model.predict_jagged(offsets, {"particles": content}, {"jet": jet})
    x, m = padded(content, offsets)
    want = ort_run(pfns["pfn_jet"], {"particles": x, "mask": m, "jet": jet})
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    sums = Model.load(pfns["pfn_sum"], device="cuda")
    jets = ak.unflatten(content, np.diff(offsets))
    np.testing.assert_allclose(
        sums.predict(jets), Model.load(pfns["pfn_sum"]).predict(jets), rtol=RTOL, atol=ATOL
    )


def test_threads_share_one_device_model(rng, dense):
    path, d = dense["mlp"]
    model = Model.load(path, device="cuda")
    xs = [rng.normal(0, 1.5, (257 + i, d)).astype(np.float32) for i in range(16)]
    want = [Model.load(path).predict(x) for x in xs]
    got = [None] * len(xs)

    def work(i):
        for _ in range(5):
            got[i] = model.predict(xs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL)


def test_unsupported_model_is_refused_at_to(tmp_path):
    model = Model.load(knn_model(torch, tmp_path))
    with pytest.raises(hepinfer.DeviceError, match="not supported on CUDA yet"):
        model.to("cuda")


def test_missing_device_index(dense):
    n = _core.cuda_device_count()
    with pytest.raises(hepinfer.DeviceError, match="CUDA device"):
        Model.load(dense["mlp"][0]).to(f"cuda:{n}")
