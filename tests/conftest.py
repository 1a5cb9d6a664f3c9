from __future__ import annotations

import numpy as np
import pytest
from seeding import stable_seed


@pytest.fixture
def rng(request):
    """A random generator per test, seeded by seeding.stable_seed(node id); the seed is printed
    so a failure can be replayed (or another seed tried) with HEPINFER_TEST_SEED=<seed>."""
    seed = stable_seed(request.node.nodeid)
    print(f"[{request.node.nodeid}] random seed = {seed}")
    return np.random.default_rng(seed)


# ---- the small ONNX models of the CUDA NN tests (tests/test_nn_device.py: the device plan on the
# host reference backend; tests/gpu/test_nn_gpu.py: on a GPU), made by tests/nn_device_models.py


@pytest.fixture(scope="module")
def nn_models_seed():
    s = stable_seed("tests/nn_device_models.py::seed") % (1 << 31)
    print(f"torch weight seed = {s}")
    return s


@pytest.fixture(scope="module")
def dense(tmp_path_factory, nn_models_seed):
    """MLP-like ONNX models (nn_device_models.dense_models): name -> (path, extra)."""
    torch = pytest.importorskip("torch")
    from nn_device_models import dense_models

    return dense_models(torch, tmp_path_factory.mktemp("dense"), nn_models_seed)


@pytest.fixture(scope="module")
def pfns(tmp_path_factory, nn_models_seed):
    """Deep Sets / PFN ONNX models (nn_device_models.pfn_models)."""
    torch = pytest.importorskip("torch")
    from nn_device_models import pfn_models

    return pfn_models(torch, tmp_path_factory.mktemp("pfn"), nn_models_seed + 1)
