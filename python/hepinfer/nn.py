"""Neural networks from ONNX files: MLPs, Deep Sets / energy-flow networks, EdgeConv
(ParticleNet-like) graph networks, autoencoders.

    >>> model = hepinfer.nn.Model.load("tagger.onnx")
    >>> model.inputs                      # [TensorInfo(name='x', dtype='float32', shape=('batch', 30))]
    >>> scores = model.predict(X)         # one input, one output: numpy in, numpy out
    >>> out = model.predict({"points": p, "features": f, "mask": m}, n_threads=2)

The C++ core reads the ``.onnx`` file itself (no onnx/onnxruntime needed at run time),
checks every node against the implemented operators at load (``hepinfer.ModelFormatError``
names the node and op otherwise) and evaluates in float32. The GIL is released while it
runs (calls on fewer than 256 rows keep it: they take microseconds).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, Optional, Union

import numpy as np

from hepinfer import _core
from hepinfer._core import InputError

__all__ = ["Model", "TensorInfo"]

PathLike = Union[str, "os.PathLike[str]"]
Dim = Union[int, str, None]


class TensorInfo(NamedTuple):
    """A model input or output: its name, numpy dtype name and declared shape.

    ``shape`` holds ints for fixed dimensions, the symbol's name (``"batch"``) for symbolic
    ones, ``None`` for unnamed unknown ones; ``shape`` itself is ``None`` when the file
    declares no shape.
    """

    name: str
    dtype: str
    shape: Optional[tuple[Dim, ...]]


_DTYPES = {"float32": np.dtype(np.float32), "int64": np.dtype(np.int64), "bool": np.dtype(np.bool_)}


def _is_awkward(x: Any) -> bool:
    return type(x).__module__.startswith("awkward") and hasattr(x, "layout")


def _is_dataframe(x: Any) -> bool:
    return type(x).__module__.startswith("pandas") and hasattr(x, "columns") and hasattr(x, "dtypes")


def _convert(value: Any, info: TensorInfo) -> np.ndarray:
    """`value` as a C-contiguous array of the input's dtype (exact conversions only for int/bool inputs)."""
    if _is_awkward(value):
        import awkward as ak

        try:
            value = ak.to_numpy(value)
        except Exception as err:  # jagged (variable-length) content cannot become a dense array
            raise InputError(
                f"input '{info.name}' is a jagged awkward array; pad it to the model's fixed length first"
            ) from err
    elif _is_dataframe(value):
        value = value.to_numpy()
    a = np.asarray(value)
    want = _DTYPES[info.dtype]
    if a.dtype != want:
        kind = a.dtype.kind
        if (
            (want.kind == "f" and kind in "fiub")
            or (want.kind == "i" and kind in "iub")
            or (want.kind == "b" and kind == "b")
        ):
            a = a.astype(want)
        else:
            raise InputError(f"input '{info.name}' must be {info.dtype}, got an array of dtype {a.dtype}")
    shape = info.shape
    if shape is not None and a.ndim == len(shape) - 1 and shape[-1] == 1:
        a = a[..., None]  # one value per event for a (batch, 1) input
    return a if a.flags.c_contiguous else a.copy(order="C")


class Model:
    """An ONNX neural network, immutable after load; share it between threads.

    Use :meth:`Model.load`. :meth:`predict` takes a numpy array (single-input models), a
    dict ``{input name: array}``, several arrays in input order, or an awkward record array
    whose fields are the input names; it returns one array for single-output models and a
    dict ``{output name: array}`` otherwise.
    """

    __slots__ = ("_core", "_inputs", "_outputs", "_rows")

    def __init__(self, core: _core.Model) -> None:
        self._core = core
        self._inputs = [TensorInfo(n, d, s) for n, d, s in core.inputs]
        self._outputs = [TensorInfo(n, d, s) for n, d, s in core.outputs]
        self._rows = core.simple_rows

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(
        cls, source: Union[PathLike, bytes, Any], *, external_data_dir: Optional[PathLike] = None
    ) -> "Model":
        """Load an ONNX model.

        Parameters
        ----------
        source
            A path to an ``.onnx`` file, the file's content as ``bytes``, or an in-memory
            ``onnx.ModelProto``.
        external_data_dir
            Folder that external weight files are relative to (default: the model's folder;
            the working directory for bytes).
        """
        ext = os.fspath(external_data_dir) if external_data_dir is not None else ""
        if isinstance(source, (str, os.PathLike)):
            return cls(_core.Model.load(os.fspath(source), ext))
        if isinstance(source, (bytes, bytearray, memoryview)):
            return cls(_core.Model.load_from_memory(bytes(source), "<bytes>", ext))
        if hasattr(source, "SerializeToString"):
            return cls(_core.Model.load_from_memory(source.SerializeToString(), "<onnx.ModelProto>", ext))
        raise TypeError(
            f"cannot load a model from {type(source).__name__}; give a path, bytes or onnx.ModelProto"
        )

    # ------------------------------------------------------------------ description
    @property
    def inputs(self) -> list[TensorInfo]:
        """The graph inputs (name, dtype, shape) in declaration order."""
        return list(self._inputs)

    @property
    def outputs(self) -> list[TensorInfo]:
        """The graph outputs (name, dtype, shape) in declaration order."""
        return list(self._outputs)

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self._inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self._outputs]

    @property
    def producer(self) -> str:
        """The program that wrote the file (e.g. ``"pytorch 2.13.0"``)."""
        return self._core.producer

    @property
    def opset(self) -> int:
        return self._core.opset

    @property
    def n_nodes(self) -> int:
        """Nodes evaluated per call, after constant folding and fusion."""
        return self._core.n_nodes

    @property
    def batch_separable(self) -> bool:
        """Whether ``n_threads`` > 1 splits the batch (all inputs/outputs share a symbolic first dimension)."""
        return self._core.batch_separable

    def __repr__(self) -> str:
        ins = ", ".join(
            f"{t.name}: {t.dtype}{list(t.shape) if t.shape is not None else ''}" for t in self._inputs
        )
        return f"<hepinfer.nn.Model ({ins}) -> {len(self._outputs)} output(s), {self.n_nodes} nodes>"

    # ------------------------------------------------------------------ evaluation
    def predict(self, x: Any, *more: Any, n_threads: int = 1) -> Union[np.ndarray, dict[str, np.ndarray]]:
        """Evaluate the network.

        Parameters
        ----------
        x
            A numpy array (single-input models), a dict ``{input name: array}``, an awkward
            record array or pandas DataFrame whose fields/columns are the input names; or the
            first of several arrays given in input order (``predict(points, features, mask)``).
        n_threads
            Threads over batch rows (batch-separable models); ``<= 0``: all cores. Results do
            not depend on it.

        Returns
        -------
        One array for a single-output model, else ``{output name: array}``.
        """
        if (
            not more
            and self._rows
            and type(x) is np.ndarray
            and x.dtype == np.float32
            and x.flags.c_contiguous
            and x.ndim >= 1
        ):
            return self._core.predict_rows(x, n_threads)
        arrays = self._arrays(x, more)
        out = self._core.predict(arrays, n_threads)
        if len(out) == 1:
            return out[0]
        return {t.name: o for t, o in zip(self._outputs, out)}

    def __call__(self, x: Any, *more: Any, n_threads: int = 1) -> Union[np.ndarray, dict[str, np.ndarray]]:
        return self.predict(x, *more, n_threads=n_threads)

    def _arrays(self, x: Any, more: Sequence[Any]) -> list[np.ndarray]:
        infos = self._inputs
        if more:
            values = [x, *more]
            if len(values) != len(infos):
                raise InputError(
                    f"{len(values)} arrays given; the model has {len(infos)} inputs {self.input_names}"
                )
            return [_convert(v, t) for v, t in zip(values, infos)]
        named: Optional[Mapping[str, Any]] = None
        if isinstance(x, Mapping):
            named = x
        elif _is_awkward(x) and x.fields:
            named = {f: x[f] for f in x.fields}
        elif _is_dataframe(x) and len(infos) > 1:
            named = {c: x[c].to_numpy() for c in x.columns}
        if named is not None:
            missing = [t.name for t in infos if t.name not in named]
            if missing:
                raise InputError(
                    f"missing model input(s) {missing}; the model's inputs are {self.input_names}, "
                    f"given {sorted(map(str, named))}"
                )
            extra = [k for k in named if k not in {t.name for t in infos}]
            if extra:
                raise InputError(f"unknown input name(s) {extra}; the model's inputs are {self.input_names}")
            return [_convert(named[t.name], t) for t in infos]
        if isinstance(x, (list, tuple)) and len(infos) > 1:
            return self._arrays(x[0], list(x[1:]))
        if len(infos) != 1:
            raise InputError(
                f"the model has {len(infos)} inputs {self.input_names}: give a dict {{name: array}} or all arrays in order"
            )
        return [_convert(x, infos[0])]
