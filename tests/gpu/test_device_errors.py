"""Device requests where they cannot be served: these run everywhere (CPU-only CI included).
A CPU-only build raises DeviceError "built without CUDA"; a CUDA build without a visible device
says how many devices it sees; a malformed device string is rejected in either case."""

from __future__ import annotations

import os

import pytest

import hepinfer
from hepinfer import _core, disco

DATA = os.path.join(os.path.dirname(__file__), "..", "data")
HAS_GPU = _core.built_with_cuda() and _core.cuda_device_count() > 0
needs_no_gpu = pytest.mark.skipif(HAS_GPU, reason="a CUDA device is visible: the device is usable here")
EXPECTED = "built without CUDA" if not _core.built_with_cuda() else "CUDA device"


@needs_no_gpu
def test_forest_on_cuda_raises_clear_error(rng):
    forest = hepinfer.Forest.load(os.path.join(DATA, "lightgbm", "multiclass.txt"))
    X = rng.normal(size=(10, forest.n_features))
    for device in ("cuda", "cuda:0", "cuda:3"):
        with pytest.raises(hepinfer.DeviceError, match=EXPECTED):
            forest.predict(X, device=device)
    # the CPU path is unaffected
    assert forest.predict(X, device="cpu").shape == (10, forest.n_outputs())


@needs_no_gpu
def test_disco_on_cuda_raises_clear_error(rng):
    x, y = rng.normal(size=50), rng.normal(size=50)
    with pytest.raises(hepinfer.DeviceError, match=EXPECTED):
        disco.distance_correlation(x, y, device="cuda")
    with pytest.raises(hepinfer.DeviceError, match=EXPECTED):
        disco.distance_correlation_and_grad(x, y, device="cuda:1")


@needs_no_gpu
def test_disco_loss_on_cuda_raises_and_auto_falls_back_to_cpu(rng):
    torch = pytest.importorskip("torch")
    from hepinfer.train.decorrelation import DisCo, disco_loss

    x, y = rng.normal(size=64), rng.normal(size=64)
    s = torch.tensor(x, requires_grad=True)
    with pytest.raises(hepinfer.DeviceError, match=EXPECTED):
        disco_loss(s, torch.tensor(y), device="cuda")
    # "auto" with a CPU tensor is the CPU path, equal to the default
    a = disco_loss(s, torch.tensor(y), device="auto")
    b = disco_loss(s, torch.tensor(y))
    assert a.item() == b.item() == pytest.approx(disco.distance_correlation(x, y), rel=1e-12)
    assert "device='cuda'" in repr(DisCo(device="cuda"))


def test_malformed_device_strings(rng):
    forest = hepinfer.Forest.load(os.path.join(DATA, "lightgbm", "multiclass.txt"))
    X = rng.normal(size=(3, forest.n_features))
    for bad, fragment in (("gpu", "unknown device"), ("cuda:", "malformed"), ("cuda:x", "malformed")):
        with pytest.raises(hepinfer.DeviceError, match=fragment):
            forest.predict(X, device=bad)
        with pytest.raises(hepinfer.DeviceError, match=fragment):
            disco.distance_correlation(X[:, 0], X[:, 1], device=bad)
