"""hepinfer: fast machine-learning inference and decorrelated training for particle physics.

    >>> import hepinfer
    >>> forest = hepinfer.Forest.load("model.json")      # XGBoost, LightGBM or TMVA BDT
    >>> scores = forest.predict(X)                         # numpy, pandas, dict or awkward
"""

from __future__ import annotations

from hepinfer._core import (
    DeviceError,
    Error,
    InputError,
    ModelFormatError,
    built_with_cuda,
    cuda_device_count,
)
from hepinfer._core import __version__ as _core_version
from hepinfer.forest import Forest

__version__ = _core_version

__all__ = [
    "DeviceError",
    "Error",
    "Forest",
    "InputError",
    "ModelFormatError",
    "__version__",
    "built_with_cuda",
    "cmake_dir",
    "cuda_device_count",
    "include_dir",
]


def cmake_dir() -> str:
    """Folder holding hepinferConfig.cmake: pass it as ``-Dhepinfer_DIR=...`` to CMake."""
    from pathlib import Path

    return str(Path(__file__).resolve().parent / "lib" / "cmake" / "hepinfer")


def include_dir() -> str:
    """Folder holding the C++ headers (``hepinfer/forest.hpp`` ...)."""
    from pathlib import Path

    return str(Path(__file__).resolve().parent / "include")
