"""GPU tests: every test marked ``gpu`` is skipped, with the reason, when this hepinfer was built
without CUDA or no CUDA device is visible. Run them on a GPU machine with
``benchmarks/gpu_check.sh`` (builds with HEPINFER_CUDA=ON, runs this folder and the benchmark)."""

from __future__ import annotations

import pytest

from hepinfer import _core


def gpu_skip_reason() -> str | None:
    if not _core.built_with_cuda():
        return "hepinfer was built without CUDA (HEPINFER_CUDA=OFF): GPU kernels not compiled in"
    if _core.cuda_device_count() == 0:
        return "hepinfer has CUDA but no CUDA device is visible"
    return None


@pytest.fixture(autouse=True)
def _skip_without_gpu(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("gpu") is not None:
        reason = gpu_skip_reason()
        if reason is not None:
            pytest.skip(reason)


@pytest.fixture
def torch_cuda():
    """torch with a usable CUDA device, or a skip saying what is missing."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip(f"torch {torch.__version__} has no usable CUDA device")
    return torch
