"""Fixtures shared across the capability folders: the seeded random generator of every test, and
the small ONNX models of the CUDA NN executor's tests (tests/nn/test_nn_device.py: the device plan
on the host reference backend; tests/gpu/test_nn_gpu.py: on a GPU). Fixtures used by one folder
only live in that folder's conftest.py; helper modules (tests/seeding.py, tests/nn/device_models.py,
...) hold plain functions, never fixtures."""

from __future__ import annotations

import numpy as np
import pytest

from tests.seeding import seed_name, stable_seed


@pytest.fixture
def rng(request):
    """A random generator per test, seeded by seeding.stable_seed(seed_name(node id)); the seed is
    printed so a failure can be replayed (or another seed tried) with HEPINFER_TEST_SEED=<seed>."""
    seed = stable_seed(seed_name(request.node.nodeid))
    print(f"[{request.node.nodeid}] random seed = {seed}")
    return np.random.default_rng(seed)


# ---- the small ONNX models of the CUDA NN tests, made by tests/nn/device_models.py


@pytest.fixture(scope="module")
def nn_models_seed():
    s = stable_seed("tests/nn_device_models.py::seed") % (1 << 31)  # the name from before the move
    print(f"torch weight seed = {s}")
    return s


@pytest.fixture(scope="module")
def dense(tmp_path_factory, nn_models_seed):
    """MLP-like ONNX models (device_models.dense_models): name -> (path, extra)."""
    torch = pytest.importorskip("torch")
    from tests.nn.device_models import dense_models

    return dense_models(torch, tmp_path_factory.mktemp("dense"), nn_models_seed)


@pytest.fixture(scope="module")
def pfns(tmp_path_factory, nn_models_seed):
    """Deep Sets / PFN ONNX models (device_models.pfn_models)."""
    torch = pytest.importorskip("torch")
    from tests.nn.device_models import pfn_models

    return pfn_models(torch, tmp_path_factory.mktemp("pfn"), nn_models_seed + 1)
