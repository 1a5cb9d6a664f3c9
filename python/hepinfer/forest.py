"""Tree ensembles: XGBoost (JSON/UBJ), LightGBM (text) and TMVA BDT (XML) models.

Evaluation happens in the C++ core with the exact semantics of the library the model
came from; the GIL is released while it runs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any, Optional, Union

import numpy as np

from hepinfer import _core, _device
from hepinfer._core import InputError

__all__ = ["Forest"]

PathLike = Union[str, "os.PathLike[str]"]

_FLOAT_KINDS = {np.dtype(np.float32), np.dtype(np.float64)}


def _is_awkward(x: Any) -> bool:
    return type(x).__module__.startswith("awkward") and hasattr(x, "layout")


def _is_dataframe(x: Any) -> bool:
    return type(x).__module__.startswith("pandas") and hasattr(x, "columns") and hasattr(x, "dtypes")


def _numeric(values: Any, what: str) -> np.ndarray:
    """A 1-D or 2-D numpy array of float32/float64 for `values`; ints and bools are converted exactly."""
    a = np.asarray(values)
    if a.dtype in _FLOAT_KINDS:
        return a
    if a.dtype.kind in "iub":
        return a.astype(np.float64)
    if a.dtype == np.float16:
        return a.astype(np.float32)
    raise InputError(
        f"{what} has dtype {a.dtype}; hepinfer needs numbers (float32, float64, integers or bools)"
    )


class Forest:
    """A tree ensemble loaded from XGBoost, LightGBM or TMVA, immutable after load.

    Use :meth:`Forest.load`. ``predict`` accepts a 2-D numpy array (float32/float64,
    C or Fortran order, any strides, zero-copy), a pandas DataFrame, a dict of 1-D
    arrays or an awkward record array; named inputs are matched to the model's
    feature names.
    """

    __slots__ = ("_core", "_pandas_categorical", "_source", "_gpu")

    def __init__(
        self, core: _core.Forest, pandas_categorical: Optional[list] = None, source: Optional[tuple] = None
    ) -> None:
        self._core = core
        self._pandas_categorical = pandas_categorical
        # how to load it again (pickling, e.g. to Dask workers):
        # ("bytes", data, format, tmva_cut_op) or ("path", path, mtime_ns, size, format, tmva_cut_op)
        self._source = source
        self._gpu: dict[str, Any] = {}  # device -> _core.ForestGPU, uploaded on first use

    def __reduce__(self) -> tuple:
        """Pickle as the model file's bytes: the forest is rebuilt by loading them again."""
        src = self._source
        if src is None:
            raise TypeError("this Forest was not created by Forest.load and cannot be pickled")
        if src[0] == "path":
            _, path, mtime_ns, size, fmt, cut_op = src
            try:
                st = os.stat(path)
                if (st.st_mtime_ns, st.st_size) != (mtime_ns, size):
                    raise OSError("the file changed since it was loaded")
                with open(path, "rb") as f:
                    data = f.read()
            except OSError as err:
                raise TypeError(f"cannot pickle the Forest loaded from {path!r}: {err}") from None
        else:
            _, data, fmt, cut_op = src
        return (_forest_from_bytes, (data, fmt, cut_op))

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, source: Any, *, format: str = "auto", tmva_cut_op: str = ">=") -> "Forest":
        """Load a model.

        Parameters
        ----------
        source
            A path (XGBoost ``.json``/``.ubj``, LightGBM ``.txt``, TMVA ``*.weights.xml``),
            the file's content as ``bytes``, or an in-memory ``xgboost.Booster`` /
            ``lightgbm.Booster`` (or their scikit-learn wrappers).
        format
            ``"auto"`` (detected from the content), ``"xgboost-json"``, ``"xgboost-ubj"``,
            ``"lightgbm"`` or ``"tmva"``.
        tmva_cut_op
            TMVA only: ``">="`` (ROOT >= 6.18, what today's ``TMVA::Reader`` computes),
            ``">"`` (ROOT <= 6.16) or ``"auto"`` (by the ROOT release recorded in the file).
        """
        if isinstance(source, (str, os.PathLike)):
            from hepinfer.kfold import refuse_bundle

            path = os.fspath(source)
            refuse_bundle(path, "Forest.load")
            st = os.stat(path) if os.path.exists(path) else None
            core = _core.Forest.load(path, format, tmva_cut_op)
            pandas_categorical = None
            if core.source_format == "lightgbm":
                pandas_categorical = _lightgbm_pandas_categorical_from_file(path)
            src = (
                ("path", os.path.abspath(path), st.st_mtime_ns, st.st_size, format, tmva_cut_op)
                if st
                else None
            )
            return cls(core, pandas_categorical, src)
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
            core = _core.Forest.load_from_memory(data, format, tmva_cut_op, "<memory>")
            pandas_categorical = None
            if core.source_format == "lightgbm":
                pandas_categorical = _lightgbm_pandas_categorical(data.decode("utf-8", "replace"))
            return cls(core, pandas_categorical, ("bytes", data, format, tmva_cut_op))
        booster = _unwrap_sklearn(source)
        module = type(booster).__module__
        if module.startswith("xgboost"):
            raw = bytes(booster.save_raw(raw_format="ubj"))
            core = _core.Forest.load_from_memory(raw, "xgboost-ubj", tmva_cut_op, "<xgboost.Booster>")
            return cls(core, None, ("bytes", raw, "xgboost-ubj", tmva_cut_op))
        if module.startswith("lightgbm"):
            text = booster.model_to_string()
            core = _core.Forest.load_from_memory(text.encode(), "lightgbm", tmva_cut_op, "<lightgbm.Booster>")
            return cls(
                core, _lightgbm_pandas_categorical(text), ("bytes", text.encode(), "lightgbm", tmva_cut_op)
            )
        raise TypeError(
            f"cannot load a model from {type(source).__name__}: pass a path, bytes, "
            "an xgboost.Booster or a lightgbm.Booster"
        )

    # ------------------------------------------------------------------ metadata
    @property
    def n_features(self) -> int:
        """Number of input features."""
        return self._core.n_features

    @property
    def n_classes(self) -> int:
        """Number of classes (1 for regression, 2 for binary classification)."""
        return self._core.n_classes

    @property
    def n_trees(self) -> int:
        return self._core.n_trees

    @property
    def feature_names(self) -> list[str]:
        """The model's feature names (TMVA: the variable expressions); empty if it has none."""
        return list(self._core.feature_names)

    @property
    def objective(self) -> str:
        return self._core.objective

    @property
    def source_format(self) -> str:
        """``"xgboost"``, ``"lightgbm"`` or ``"tmva"``."""
        return self._core.source_format

    def n_outputs(self, output: str = "probability") -> int:
        """Columns of :meth:`predict`'s output for this ``output`` kind."""
        return self._core.n_outputs(output)

    def __repr__(self) -> str:
        return (
            f"<hepinfer.Forest {self.source_format} {self.objective!r}: {self.n_trees} trees, "
            f"{self.n_features} features, {self.n_classes} classes>"
        )

    # ------------------------------------------------------------------ evaluation
    def predict(
        self,
        X: Any,
        *,
        output: str = "probability",
        n_threads: Optional[int] = None,
        out: Optional[np.ndarray] = None,
        device: str = "cpu",
    ) -> Any:
        """Evaluate the forest.

        ``output="probability"`` gives what the source library's own predict gives
        (XGBoost/LightGBM transformed prediction, TMVA's MVA value); ``"margin"`` the raw
        sum of leaves plus base score. Returns shape ``(n,)`` for single-output models and
        ``(n, n_classes)`` otherwise. ``n_threads=None`` uses every core; results do not
        depend on the number of threads.

        ``device="cuda"`` or ``"cuda:N"`` evaluates on that GPU (hepinfer built with
        ``HEPINFER_CUDA=ON``; :class:`hepinfer.DeviceError` otherwise). The trees are uploaded on
        the first call for each device and kept. Decisions and margins are bit-identical to the
        CPU; transformed outputs (sigmoid, softmax, exp) agree to a few ulp (device exp). Host
        input (numpy, pandas, dicts, awkward) is copied to the device and the result returned as
        numpy; a torch CUDA tensor, cupy array or other ``__cuda_array_interface__`` producer of
        shape (n, n_features) is read on the device and the result is a float64 array of the same
        library on the same device (``out`` is for numpy results only). Models with TMVA
        variable transformations are CPU-only.
        """
        if not _device.is_cpu(device):
            return self._predict_gpu(X, output, out, device)
        matrix = self._matrix(X)
        core_out = None
        n_out = self._core.n_outputs(output)
        if out is not None:
            if not isinstance(out, np.ndarray) or out.dtype != np.float64:
                raise InputError("out must be a float64 numpy array")
            if out.shape not in ((matrix.shape[0], n_out), (matrix.shape[0],) if n_out == 1 else ()):
                raise InputError(f"out has shape {out.shape}, expected {(matrix.shape[0], n_out)}")
            core_out = out
        result = self._core.predict(matrix, output, _threads(n_threads), core_out)
        if out is not None:
            return out
        return result[:, 0] if n_out == 1 else result

    def _gpu_for(self, device: str) -> Any:
        cache = getattr(self, "_gpu", None)
        if cache is None:
            cache = self._gpu = {}
        gpu = cache.get(device)
        if gpu is None:
            gpu = _core.ForestGPU(self._core, device)
            cache[device] = gpu
        return gpu

    def _predict_gpu(self, X: Any, output: str, out: Optional[np.ndarray], device: str) -> Any:
        _device.check(device)
        n_out = self._core.n_outputs(output)
        if _device.on_device(X):
            device = _device.resolve(device, [X])
            gpu = self._gpu_for(device)
            rows = _device.as_device_array(X, "X", dtype=None)
            if len(rows.shape) != 2 or rows.shape[1] != self.n_features:
                raise InputError(f"X must have shape (n, {self.n_features}), got {rows.shape}")
            if out is not None:
                raise InputError("out= is for numpy results; GPU input returns a new device array")
            result, ptr = _device.empty_like_device(rows.owner, (rows.shape[0], n_out))
            gpu.predict_device(
                rows.ptr, rows.shape[0], rows.dtype, ptr, output, _device.stream_of(rows.owner)
            )
            return result[:, 0] if n_out == 1 else result
        device = _device.resolve(device, [])
        matrix = self._matrix(X)
        result = self._gpu_for(device).predict(matrix, output)
        if out is not None:
            if not isinstance(out, np.ndarray) or out.dtype != np.float64:
                raise InputError("out must be a float64 numpy array")
            if out.size != result.size:
                raise InputError(f"out has shape {out.shape}, expected {(matrix.shape[0], n_out)}")
            out.reshape(result.shape)[...] = result
            return out
        return result[:, 0] if n_out == 1 else result

    def predict_leaf(self, X: Any, *, n_threads: Optional[int] = None) -> np.ndarray:
        """Index of the leaf reached in every tree, shape ``(n, n_trees)``, in the source
        library's numbering (as ``xgboost`` ``pred_leaf`` / ``lightgbm`` ``pred_leaf``)."""
        return self._core.predict_leaf(self._matrix(X), _threads(n_threads))

    def predict_one(self, row: Any, *, output: str = "probability") -> Any:
        """One event: a float for single-output models, else an array. The low-latency path."""
        if isinstance(row, np.ndarray) and row.dtype in _FLOAT_KINDS and row.ndim == 1:
            return self._core.predict_one(
                row if row.flags.c_contiguous else np.ascontiguousarray(row), output
            )
        if isinstance(row, Mapping) or _is_dataframe(row) or _is_awkward(row):
            m = self._matrix(row)
            if m.shape[0] != 1:
                raise InputError(f"predict_one takes one event, got {m.shape[0]}")
            return self._core.predict_one(np.ascontiguousarray(m[0]), output)
        a = _numeric(row, "row")
        if a.ndim != 1:
            raise InputError(f"predict_one takes a 1-D row, got shape {a.shape}")
        return self._core.predict_one(np.ascontiguousarray(a), output)

    __call__ = predict

    # ------------------------------------------------------------------ inputs
    def _matrix(self, X: Any) -> np.ndarray:
        if isinstance(X, np.ndarray) and X.dtype in _FLOAT_KINDS:
            matrix = X
        elif _is_dataframe(X):
            matrix = self._from_columns({str(c): X[c] for c in X.columns}, is_pandas=True)
        elif isinstance(X, Mapping):
            matrix = self._from_columns(X)
        elif _is_awkward(X):
            matrix = self._from_awkward(X)
        else:
            matrix = _numeric(X, "X")
        if matrix.ndim == 1:
            raise InputError(
                f"X must be 2-dimensional (rows, features), got shape {matrix.shape}; "
                "for one event use predict_one(row) or X.reshape(1, -1)"
            )
        if matrix.ndim != 2:
            raise InputError(f"X must be 2-dimensional (rows, features), got shape {matrix.shape}")
        if matrix.shape[1] != self.n_features:
            raise InputError(f"X has {matrix.shape[1]} features but the model expects {self.n_features}")
        return matrix

    def _order(self, names: Sequence[str]) -> list[str]:
        model_names = self.feature_names
        given = list(names)
        if model_names:
            missing = [n for n in model_names if n not in set(given)]
            if missing:
                raise InputError(
                    f"input lacks {len(missing)} of the model's features: {missing[:10]}"
                    + (" ..." if len(missing) > 10 else "")
                    + f"; it has {given[:10]}"
                    + (" ..." if len(given) > 10 else "")
                )
            return model_names
        if len(given) != self.n_features:
            raise InputError(
                f"the model has no feature names and the input has {len(given)} named columns "
                f"for {self.n_features} features"
            )
        return given

    def _from_columns(self, columns: Mapping[str, Any], is_pandas: bool = False) -> np.ndarray:
        order = self._order([str(k) for k in columns.keys()])
        cols = []
        n_categorical = 0
        for name in order:
            col = columns[name]
            if is_pandas and str(getattr(col, "dtype", "")) == "category":
                col = self._category_codes(n_categorical, col)
                n_categorical += 1
            elif is_pandas:
                col = col.to_numpy()
            a = _numeric(col, f"column {name!r}")
            if a.ndim != 1:
                raise InputError(f"column {name!r} must be 1-dimensional, got shape {a.shape}")
            cols.append(a)
        n = len(cols[0]) if cols else 0
        for name, a in zip(order, cols):
            if len(a) != n:
                raise InputError(f"column {name!r} has {len(a)} rows, the first column has {n}")
        dtype = np.float32 if cols and all(a.dtype == np.float32 for a in cols) else np.float64
        matrix = np.empty((n, len(cols)), dtype=dtype, order="F")
        for j, a in enumerate(cols):
            matrix[:, j] = a
        return matrix

    def _category_codes(self, k: int, col: Any) -> np.ndarray:
        """The k-th pandas categorical column -> the integer codes the model was trained with.

        LightGBM records the categories of each pandas categorical column (in column order)
        at training time and maps prediction data through them; so does this.
        """
        import pandas as pd

        pc = self._pandas_categorical
        cats = pc[k] if pc is not None and k < len(pc) else None
        codes = pd.Categorical(col, categories=cats).codes if cats is not None else col.cat.codes.to_numpy()
        codes = np.asarray(codes, dtype=np.float64)
        codes[codes < 0] = np.nan
        return codes

    def _from_awkward(self, X: Any) -> np.ndarray:
        import awkward as ak

        fields = ak.fields(X)
        if not fields:
            return _numeric(ak.to_numpy(X), "X")
        columns = {}
        for name in self._order(fields):
            field = X[name]
            if field.ndim != 1:
                raise InputError(
                    f"field {name!r} is jagged ({ak.type(field)}): a forest takes one value per event, "
                    f"select one first (e.g. X[{name!r}][:, 0] or ak.max(X[{name!r}], axis=1))"
                )
            try:
                columns[name] = ak.to_numpy(field)
            except ValueError as err:
                raise InputError(f"field {name!r} cannot be read as numbers: {err}") from err
        return self._from_columns(columns)


def _threads(n_threads: Optional[int]) -> int:
    if n_threads is None:
        return 0
    n = int(n_threads)
    if n < 1:
        raise InputError(f"n_threads must be >= 1 or None (all cores), got {n_threads}")
    return n


def _unwrap_sklearn(model: Any) -> Any:
    if hasattr(model, "get_booster") and callable(model.get_booster):
        return model.get_booster()
    booster = getattr(model, "booster_", None)
    if booster is not None:
        return booster
    return model


def _forest_from_bytes(data: bytes, format: str, tmva_cut_op: str) -> Forest:
    """Unpickling: load the model again from its file's bytes."""
    return Forest.load(data, format=format, tmva_cut_op=tmva_cut_op)


def _lightgbm_pandas_categorical(text: str) -> Optional[list]:
    """The category lists LightGBM stores for pandas categorical columns (None if absent)."""
    key = "pandas_categorical:"
    pos = text.rfind(key)
    if pos < 0:
        return None
    line = text[pos + len(key) :].splitlines()[0].strip()
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, list) else None


def _lightgbm_pandas_categorical_from_file(path: str) -> Optional[list]:
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - (1 << 20)))
        tail = fh.read().decode("utf-8", "replace")
    return _lightgbm_pandas_categorical(tail)
