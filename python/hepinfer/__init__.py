"""hepinfer: fast machine-learning inference and decorrelated training for particle physics.

    >>> import hepinfer
    >>> forest = hepinfer.Forest.load("model.json")      # XGBoost, LightGBM or TMVA BDT
    >>> scores = forest.predict(X)                         # numpy, pandas, dict or awkward
    >>> model = hepinfer.Model.load("tagger.onnx")        # neural networks from ONNX
    >>> bundle = hepinfer.KFold.load("tagger_kfold")      # k-fold: each event scored by the model not trained on it
    >>> hepinfer.score(forest, "events_*.root", tree="Events", output="scores.root")
    >>> hepinfer.distance_correlation(score, mass)         # exact DisCo in O(n log n)

Capabilities live in submodules, imported on first use so that ``import hepinfer`` stays light:
``hepinfer.io`` (ROOT files), ``hepinfer.jagged`` (jagged-array kernels), ``hepinfer.disco``,
``hepinfer.metrics``, ``hepinfer.train`` (torch/xgboost, the DisCo/MoDE losses included),
``hepinfer.export``, ``hepinfer.codegen``, ``hepinfer.tmva_export``, ``hepinfer.datasets``,
``hepinfer.plot`` (matplotlib), ``hepinfer.rdf`` (ROOT RDataFrame through PyROOT).
"""

from __future__ import annotations

import importlib
from typing import Any

from hepinfer._core import (
    DeviceError,
    Error,
    InputError,
    ModelFormatError,
    built_with_cuda,
    cuda_device_count,
)
from hepinfer._core import __version__ as _core_version
from hepinfer.disco import distance_correlation
from hepinfer.forest import Forest
from hepinfer.kfold import KFold
from hepinfer.nn import Model
from hepinfer.scoring import score

__version__ = _core_version

_SUBMODULES = (
    "codegen",
    "datasets",
    "disco",
    "export",
    "io",
    "jagged",
    "losses",
    "metrics",
    "nn",
    "plot",
    "rdf",
    "scoring",
    "tmva_export",
    "train",
)

__all__ = [
    "DeviceError",
    "Error",
    "Forest",
    "InputError",
    "KFold",
    "Model",
    "ModelFormatError",
    "__version__",
    "built_with_cuda",
    "cmake_dir",
    "cuda_device_count",
    "distance_correlation",
    "include_dir",
    "score",
] + list(_SUBMODULES)


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"hepinfer.{name}")
    raise AttributeError(f"module 'hepinfer' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def cmake_dir() -> str:
    """Folder holding hepinferConfig.cmake: pass it as ``-Dhepinfer_DIR=...`` to CMake."""
    from pathlib import Path

    return str(Path(__file__).resolve().parent / "lib" / "cmake" / "hepinfer")


def include_dir() -> str:
    """Folder holding the C++ headers (``hepinfer/forest.hpp`` ...)."""
    from pathlib import Path

    return str(Path(__file__).resolve().parent / "include")
