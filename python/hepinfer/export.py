"""Export trained models and check them right after writing.

* :func:`export_onnx`: a torch module → ONNX with dynamic batch axis (and dynamic particle axis
  for ``(particles, mask)`` inputs), then the file is run with onnxruntime and, when available,
  with :class:`hepinfer.nn.Model` on the example inputs and on a resized copy of them (other
  batch size and particle count); any output further than ``rtol`` from torch's raises
  :class:`ExportError`.
* :func:`export_forest`: an xgboost Booster → xgboost JSON, loaded back with
  :class:`hepinfer.Forest` and compared with xgboost's own predictions.

Both can store what each output column is (``output_columns``, e.g. ``score_qcd, score_w,
score_top`` for a 3-class tagger) and the class names: in the ONNX file's ``metadata_props``
(keys ``hepinfer.output_columns`` and ``hepinfer.classes``, JSON lists) or the xgboost JSON's
``learner.attributes`` (``hepinfer_output_columns``, ``hepinfer_classes``). :func:`hepinfer.score`
names its output branches after them.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Sequence
from typing import Any, Optional, Union

import numpy as np

from hepinfer._core import Error

__all__ = ["ExportError", "export_forest", "export_onnx", "max_relative_difference", "output_column_names"]

ONNX_OUTPUT_COLUMNS_KEY = "hepinfer.output_columns"
ONNX_CLASSES_KEY = "hepinfer.classes"
XGBOOST_OUTPUT_COLUMNS_KEY = "hepinfer_output_columns"
XGBOOST_CLASSES_KEY = "hepinfer_classes"

PathLike = Union[str, "os.PathLike[str]"]


class ExportError(Error, RuntimeError):
    """An exported model does not reproduce the original (a :class:`hepinfer.Error`)."""


def max_relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    """``max |a - b| / max(|b|, 1)`` (relative for |b| > 1, absolute below)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf")
    if a.size == 0:
        return 0.0
    if not np.array_equal(np.isnan(a), np.isnan(b)):
        return float("inf")
    ok = ~np.isnan(b)
    return float(np.max(np.abs(a[ok] - b[ok]) / np.maximum(np.abs(b[ok]), 1.0), initial=0.0))


def output_column_names(classes: Sequence[str], prefix: str = "score_") -> list[str]:
    """Branch names for the per-class outputs: ``score_<class>``, every character other than a
    letter, digit or ``_`` replaced by ``_`` (``"W+jets"`` -> ``score_W_jets``); where two
    classes would get the same name, or a name is empty, ``score_<index>`` for all."""
    names = [prefix + re.sub(r"[^A-Za-z0-9_]", "_", str(c)) for c in classes]
    if len(set(names)) != len(names) or any(n == prefix for n in names):
        names = [f"{prefix}{i}" for i in range(len(names))]
    return names


def _columns_metadata(
    output_columns: Optional[Sequence[str]], classes: Optional[Sequence[str]]
) -> dict[str, str]:
    meta = {}
    if output_columns is not None:
        meta["output_columns"] = json.dumps([str(c) for c in output_columns])
    if classes is not None:
        meta["classes"] = json.dumps([str(c) for c in classes])
    return meta


def _resized(inputs: Sequence[Any], particle_axis: bool) -> list[Any]:
    """A copy of the inputs with another batch size (and particle count): rows repeated and
    dropped, particles cut (keeping the mask consistent)."""
    import torch

    n = inputs[0].shape[0]
    rows = torch.arange(n + 3) % n if n > 0 else torch.arange(0)
    out = [t[rows] for t in inputs]
    if particle_axis and out[0].shape[1] > 1:
        p = out[0].shape[1] - 1
        out = [t[:, :p] for t in out]
    return out


def _hepinfer_model_outputs(path: str, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The exported file run by hepinfer.nn.Model (ExportError when hepinfer cannot load it)."""
    from hepinfer.nn import Model

    try:
        model = Model.load(path)
    except ValueError as e:
        raise ExportError(
            f"{path}: hepinfer.nn.Model cannot load the exported file ({e}); onnxruntime agrees with torch, "
            "pass check_hepinfer=False to skip this check"
        ) from e
    out = model.predict(*inputs)
    return [np.asarray(o) for o in (out.values() if isinstance(out, dict) else [out])]


def export_onnx(
    model: Any,
    example_inputs: Union[Any, Sequence[Any]],
    path: PathLike,
    *,
    input_names: Optional[Sequence[str]] = None,
    output_names: Optional[Sequence[str]] = None,
    particle_axis: Optional[bool] = None,
    opset: int = 17,
    rtol: float = 1e-5,
    check_hepinfer: bool = True,
    output_columns: Optional[Sequence[str]] = None,
    classes: Optional[Sequence[str]] = None,
) -> str:
    """Write a torch module to ONNX and verify the file.

    Parameters
    ----------
    model
        A ``torch.nn.Module`` whose ``forward`` takes the tensors in ``example_inputs``.
    example_inputs
        A tensor or a tuple of tensors (float32) used for tracing and for the check.
    input_names, output_names
        Names in the ONNX graph (default ``input``/``particles, mask`` and ``output``).
    particle_axis
        Whether axis 1 of 3-D inputs (and of the 2-D mask next to them) is the particle axis
        and should be dynamic; default: yes when the first input is 3-D.
    rtol
        Largest allowed ``|onnx - torch| / max(|torch|, 1)``.
    check_hepinfer
        Also run the file with :class:`hepinfer.nn.Model` when hepinfer has it.
    output_columns, classes
        What each column of the (one) output is and the class names, stored in the file's
        ``metadata_props`` (see the module documentation); ``output_columns`` must have one
        name per column.

    Returns the path. Raises :class:`ExportError` when a runtime disagrees with torch.
    """
    import torch

    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    inputs = tuple(example_inputs)
    if not inputs:
        raise ValueError("export_onnx needs at least one example input")
    if particle_axis is None:
        particle_axis = inputs[0].ndim == 3
    if input_names is None:
        input_names = (
            ["particles", "mask"][: len(inputs)]
            if particle_axis
            else [f"input{i}" if i else "input" for i in range(len(inputs))]
        )
    input_names = list(input_names)
    if len(input_names) != len(inputs):
        raise ValueError(f"{len(input_names)} input names for {len(inputs)} inputs")
    model = model.eval()
    with torch.no_grad():
        reference = model(*inputs)
    n_outputs = len(reference) if isinstance(reference, (tuple, list)) else 1
    if output_columns is not None:
        width = 1 if n_outputs > 1 or reference.ndim < 2 else int(reference.shape[-1])
        if n_outputs > 1 or len(output_columns) != width:
            raise ValueError(
                f"output_columns has {len(output_columns)} names but the model returns {n_outputs} output(s) "
                f"of {width} column(s)"
            )
    output_names = (
        list(output_names)
        if output_names is not None
        else (["output"] if n_outputs == 1 else [f"output{i}" for i in range(n_outputs)])
    )
    dynamic_axes: dict[str, dict[int, str]] = {}
    for name, t in zip(input_names, inputs):
        axes = {0: "batch"}
        if particle_axis and t.ndim >= 2:
            axes[1] = "particles"
        dynamic_axes[name] = axes
    for name in output_names:
        dynamic_axes[name] = {0: "batch"}
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            model,
            inputs,
            path,
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            dynamo=False,
        )
    metadata = _columns_metadata(output_columns, classes)
    if metadata:
        import onnx

        proto = onnx.load(path)
        onnx.helper.set_model_props(proto, {f"hepinfer.{k}": v for k, v in metadata.items()})
        onnx.save(proto, path)
    _verify_onnx(
        model, path, [inputs, tuple(_resized(inputs, bool(particle_axis)))], input_names, rtol, check_hepinfer
    )
    return path


def _verify_onnx(
    model: Any, path: str, cases: list, input_names: list[str], rtol: float, check_hepinfer: bool
) -> None:
    import onnx
    import onnxruntime as ort
    import torch

    onnx.checker.check_model(onnx.load(path))
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    for case in cases:
        with torch.no_grad():
            expected = model(*case)
        expected = [e.numpy() for e in (expected if isinstance(expected, (tuple, list)) else [expected])]
        feed = {name: t.numpy() for name, t in zip(input_names, case)}
        shape = " x ".join(str(tuple(t.shape)) for t in case)
        got = session.run(None, feed)
        for i, (g, e) in enumerate(zip(got, expected)):
            d = max_relative_difference(g, e)
            if not d <= rtol:
                raise ExportError(
                    f"{path}: onnxruntime output {i} differs from torch by {d:.3g} (relative) > {rtol:g} on inputs {shape}"
                )
        if check_hepinfer:
            mine = _hepinfer_model_outputs(path, [t.numpy() for t in case])
            for i, (g, e) in enumerate(zip(mine, expected)):
                d = max_relative_difference(np.asarray(g).reshape(e.shape) if g.size == e.size else g, e)
                if not d <= rtol:
                    raise ExportError(
                        f"{path}: hepinfer.nn.Model output {i} differs from torch by {d:.3g} (relative) > {rtol:g} "
                        f"on inputs {shape}"
                    )


def export_forest(
    booster: Any,
    path: PathLike,
    X_check: Any = None,
    *,
    rtol: float = 1e-5,
    seed: int = 0,
    output_columns: Optional[Sequence[str]] = None,
    classes: Optional[Sequence[str]] = None,
) -> str:
    """Save an xgboost Booster as JSON and verify it with :class:`hepinfer.Forest`.

    ``X_check`` (rows to compare on; default: 1000 standard-normal rows with some NaN) is
    scored by xgboost and by the reloaded file; a difference beyond ``rtol`` raises
    :class:`ExportError` (for a ``multi:softprob`` model every class probability is compared).
    ``output_columns`` and ``classes`` are stored as attributes of a copy of the booster (see
    the module documentation). Returns the path.
    """
    import xgboost as xgb

    from hepinfer import Forest

    if hasattr(booster, "get_booster"):
        booster = booster.get_booster()
    path = os.fspath(path)
    if not path.endswith(".json"):
        raise ValueError(f"export_forest writes xgboost JSON; the path must end in .json, got {path!r}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    metadata = _columns_metadata(output_columns, classes)
    if metadata:
        booster = booster.copy()
        booster.set_attr(**{f"hepinfer_{k}": v for k, v in metadata.items()})
    booster.save_model(path)
    if X_check is None:
        rng = np.random.default_rng(seed)
        X_check = rng.normal(size=(1000, booster.num_features()))
        X_check[rng.random(X_check.shape) < 0.05] = np.nan
    X_check = np.asarray(X_check, dtype=np.float32)
    expected = booster.predict(xgb.DMatrix(X_check, feature_names=booster.feature_names))
    forest = Forest.load(path)
    got = np.asarray(forest.predict(X_check))
    if got.size != expected.size:
        raise ExportError(
            f"{path}: hepinfer.Forest gives {got.shape[1] if got.ndim == 2 else 1} output(s) per event, "
            f"xgboost {expected.shape[1] if expected.ndim == 2 else 1}"
        )
    d = max_relative_difference(got.reshape(expected.shape), expected)
    if not d <= rtol:
        raise ExportError(f"{path}: hepinfer.Forest differs from xgboost by {d:.3g} (relative) > {rtol:g}")
    return path
