"""The ``backend="onnxruntime"`` escape hatch of :meth:`hepinfer.nn.Model.load`: an ONNX graph
that hepinfer's engine refuses, run by onnxruntime behind the same :class:`hepinfer.nn.Model`.

:class:`OnnxRuntimeGraph` stands where the C++ ``_core.Model`` stands for the native engine and
answers the same calls (inputs, outputs, producer, opset, ``predict``, ``jagged_layout``,
``predict_jagged``), so that ``Model``'s input handling (numpy, dicts, awkward, DataFrames,
jagged jets) and ``hepinfer.score`` work unchanged. Jagged evaluation follows the rules of
``cpp/src/nn/jagged.cpp`` (input roles, particle axis, ``min_length`` from the graph's TopK
nodes, jets grouped by length and evaluated padded only up to their group's length), here with
numpy gathering each group's padded batch and onnxruntime evaluating it.

onnx and onnxruntime are optional: imported when a model is loaded with this backend, never
at ``import hepinfer``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Optional

import numpy as np

from hepinfer import _core
from hepinfer._core import InputError, ModelFormatError

__all__ = ["MissingDependencyError", "OnnxRuntimeGraph"]


class MissingDependencyError(_core.Error, ImportError):
    """An optional package that the requested feature needs is not installed."""


# ONNX TensorProto element types -> numpy dtype names (the numeric ones onnxruntime runs)
_ELEMENT_TYPES = {
    1: "float32",
    2: "uint8",
    3: "int8",
    4: "uint16",
    5: "int16",
    6: "int32",
    7: "int64",
    9: "bool",
    10: "float16",
    11: "float64",
    12: "uint32",
    13: "uint64",
}

Dim = Any  # int (fixed), str (named symbolic) or None (unnamed symbolic)
Info = tuple[str, str, Optional[tuple[Dim, ...]]]  # (name, dtype name, shape), as _core.Model gives


def _import_backend() -> tuple[Any, Any]:
    """(onnx, onnxruntime), or MissingDependencyError saying what to install."""
    missing = []
    try:
        import onnxruntime
    except ImportError:
        missing.append("onnxruntime")
    try:
        import onnx
    except ImportError:
        missing.append("onnx")
    if missing:
        raise MissingDependencyError(
            f'Model.load(..., backend="onnxruntime") needs {" and ".join(missing)}, which is not installed: '
            f"pip install {' '.join(missing)}"
        )
    return onnx, onnxruntime


def _dims_text(info: Info) -> str:
    shape = info[2] or ()
    return "(" + ", ".join(str(d) if d is not None else "?" for d in shape) + ")"


def _symbolic(d: Dim) -> bool:
    return not isinstance(d, int)


class _InputPlan:
    """How one graph input is filled in jagged evaluation (see cpp/src/nn/jagged.cpp's InputPlan)."""

    __slots__ = ("axis", "inner", "n_features", "name", "outer", "role")

    def __init__(self, name: str) -> None:
        self.name = name
        self.role = "jet"
        self.axis = -1
        self.n_features = 1
        self.outer = 1
        self.inner = 1


class OnnxRuntimeGraph:
    """An ONNX model run by onnxruntime, answering the calls :class:`hepinfer.nn.Model` makes on
    ``_core.Model``. Immutable after load; sessions (one per thread count, created on first use)
    are shared by every thread (``InferenceSession.run`` is thread-safe)."""

    backend = "onnxruntime"
    simple_rows = False  # Model.predict's numpy fast path is the native engine's

    def __init__(self, content: bytes, source: str) -> None:
        onnx, _ = _import_backend()
        self.source = source
        self._bytes = bytes(content)
        self._sessions: dict[int, Any] = {}
        self._lock = threading.Lock()
        try:
            proto = onnx.load_from_string(self._bytes)
        except Exception as err:
            raise ModelFormatError(f"{source}: not a readable ONNX model: {err}") from err
        self._describe(proto)
        self._session(1)  # onnxruntime checks the graph now: a broken model fails at load

    @classmethod
    def load(cls, source: Any, source_name: str, external_data_dir: Optional[str]) -> OnnxRuntimeGraph:
        """From a path, bytes or an onnx.ModelProto; external weights are read in (relative to
        ``external_data_dir``, default the model's folder) so that the model is one byte string
        that can travel to Dask workers."""
        import os

        onnx, _ = _import_backend()
        from onnx.external_data_helper import load_external_data_for_model

        try:
            if isinstance(source, (str, os.PathLike)):
                path = os.fspath(source)
                if not os.path.isfile(path):
                    raise ModelFormatError(f"cannot open model file '{path}'")
                proto = onnx.load(path, load_external_data=False)
                base = external_data_dir if external_data_dir is not None else os.path.dirname(path)
            elif isinstance(source, (bytes, bytearray, memoryview)):
                proto = onnx.load_from_string(bytes(source))
                base = external_data_dir if external_data_dir is not None else os.getcwd()
            else:
                proto = onnx.ModelProto()
                proto.CopyFrom(source)  # external data is read into a copy, not the caller's proto
                base = external_data_dir if external_data_dir is not None else os.getcwd()
            load_external_data_for_model(proto, base)  # only touches tensors stored outside
            content = proto.SerializeToString()
        except ModelFormatError:
            raise
        except Exception as err:
            raise ModelFormatError(f"{source_name}: not a readable ONNX model: {err}") from err
        return cls(content, source_name)

    def __reduce__(self) -> tuple:
        # the model's bytes travel (to Dask workers, through pickle); sessions are made again there
        return (OnnxRuntimeGraph, (self._bytes, self.source))

    # ------------------------------------------------------------------ description
    def _describe(self, proto: Any) -> None:
        graph = proto.graph
        initialized = {t.name for t in graph.initializer}
        self.inputs: list[Info] = [self._info(v, "input") for v in graph.input if v.name not in initialized]
        self.outputs: list[Info] = [self._info(v, "output") for v in graph.output]
        self.producer = proto.producer_name + (f" {proto.producer_version}" if proto.producer_version else "")
        self.opset = -1
        for imp in proto.opset_import:
            if imp.domain in ("", "ai.onnx"):
                self.opset = int(imp.version)
        self.n_nodes = len(graph.node)
        # batch-separable: every input and output shares one named symbolic first dimension
        names = {t[2][0] if t[2] else None for t in (*self.inputs, *self.outputs)}
        self.batch_separable = bool(self.inputs) and len(names) == 1 and isinstance(next(iter(names)), str)
        self._topk = self._topk_constants(proto)

    def _info(self, v: Any, what: str) -> Info:
        if not v.type.HasField("tensor_type"):
            raise ModelFormatError(f"{self.source}: graph {what} '{v.name}' is not a tensor")
        tt = v.type.tensor_type
        dtype = _ELEMENT_TYPES.get(int(tt.elem_type))
        if dtype is None:
            raise ModelFormatError(
                f"{self.source}: graph {what} '{v.name}' has ONNX element type {tt.elem_type}, which "
                "hepinfer's onnxruntime backend does not exchange (numeric and bool tensors only)"
            )
        if not tt.HasField("shape"):
            return (v.name, dtype, None)
        dims: list[Dim] = []
        for d in tt.shape.dim:
            if d.HasField("dim_value") and d.dim_value >= 0:
                dims.append(int(d.dim_value))
            elif d.HasField("dim_param") and d.dim_param:
                dims.append(str(d.dim_param))
            else:
                dims.append(None)
        return (v.name, dtype, tuple(dims))

    @staticmethod
    def _topk_constants(proto: Any) -> list[tuple[str, Optional[int]]]:
        """(node name, k or None when k is not a constant) of every TopK node."""
        from onnx import numpy_helper

        constants: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
        found: list[tuple[str, Optional[int]]] = []

        def walk(graph: Any) -> None:
            for node in graph.node:
                if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                    for a in node.attribute:
                        if a.name == "value":
                            constants[node.output[0]] = numpy_helper.to_array(a.t)
                        elif a.name == "value_int":
                            constants[node.output[0]] = np.array(a.i, np.int64)
                        elif a.name == "value_ints":
                            constants[node.output[0]] = np.array(list(a.ints), np.int64)
                elif (
                    node.op_type in ("Identity", "Cast", "Reshape", "Squeeze", "Unsqueeze")
                    and node.input
                    and node.input[0] in constants
                ):
                    constants[node.output[0]] = constants[node.input[0]]  # k's value passes through
                if node.op_type == "TopK" and node.domain in ("", "ai.onnx"):
                    name = node.name or (node.output[0] if node.output else "?")
                    k: Optional[int] = None
                    attr = [a for a in node.attribute if a.name == "k"]
                    if attr:  # opset < 10
                        k = int(attr[0].i)
                    elif len(node.input) > 1 and node.input[1] in constants:
                        value = constants[node.input[1]]
                        if value.size == 1 and value.dtype.kind in "iu":
                            k = int(value.reshape(-1)[0])
                    found.append((name, k))
                for a in node.attribute:  # control-flow bodies
                    if a.HasField("g"):
                        walk(a.g)
                    for g in a.graphs:
                        walk(g)

        walk(proto.graph)
        return found

    # ------------------------------------------------------------------ sessions
    def _session(self, n_threads: int) -> Any:
        """The session with ``n_threads`` intra-op threads (``<= 0``: onnxruntime's default, all
        physical cores), created on first use."""
        n = max(0, int(n_threads))
        session = self._sessions.get(n)
        if session is not None:
            return session
        with self._lock:
            session = self._sessions.get(n)
            if session is None:
                _, ort = _import_backend()
                options = ort.SessionOptions()
                options.intra_op_num_threads = n
                options.inter_op_num_threads = 1
                options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
                options.log_severity_level = 3  # errors only: no warnings on the user's terminal
                try:
                    session = ort.InferenceSession(
                        self._bytes, sess_options=options, providers=["CPUExecutionProvider"]
                    )
                except Exception as err:
                    raise ModelFormatError(
                        f"{self.source}: onnxruntime cannot load the model: {err}"
                    ) from err
                self._sessions[n] = session
        return session

    def _run(self, feeds: dict[str, np.ndarray], n_threads: int) -> list[np.ndarray]:
        try:
            out = self._session(n_threads).run(None, feeds)
        except Exception as err:
            if type(err).__module__.startswith("onnxruntime"):
                raise InputError(f"{self.source}: onnxruntime: {err}") from err
            raise
        return [np.asarray(o) for o in out]

    def to_device(self, device: str) -> Any:
        raise _core.DeviceError(
            f'{self.source}: a model loaded with backend="onnxruntime" runs on the CPU only; '
            f"it cannot move to {device!r} (hepinfer's CUDA executor takes models the native backend loads)"
        )

    # ------------------------------------------------------------------ evaluation
    def _check_input(self, info: Info, a: np.ndarray, dims: dict[str, int]) -> None:
        """The checks of cpp/src/nn/model.cpp's check_input, with the same messages."""
        name, dtype, shape = info
        if a.dtype != np.dtype(dtype):
            raise InputError(f"input '{name}' must be {dtype}, got {a.dtype}")
        if not a.flags.c_contiguous:
            raise InputError(f"input '{name}' must be C-contiguous")
        if shape is None:
            return
        got = "(" + ", ".join(str(d) for d in a.shape) + ")"
        want = _dims_text(info)
        if a.ndim != len(shape):
            raise InputError(f"input '{name}' has shape {got}; the model expects {want}")
        for d, n in zip(shape, a.shape):
            if isinstance(d, int) and n != d:
                raise InputError(f"input '{name}' has shape {got}; the model expects {want}")
            if isinstance(d, str):
                seen = dims.setdefault(d, int(n))
                if seen != n:
                    raise InputError(f"input '{name}' has {d} = {n} but another input has {seen}")

    def predict(self, arrays: Sequence[np.ndarray], n_threads: int = 1) -> list[np.ndarray]:
        if len(arrays) != len(self.inputs):
            raise InputError(f"the model has {len(self.inputs)} inputs, {len(arrays)} were given")
        dims: dict[str, int] = {}
        for info, a in zip(self.inputs, arrays):
            self._check_input(info, a, dims)
        return self._run({info[0]: a for info, a in zip(self.inputs, arrays)}, n_threads)

    def predict_rows(self, x: np.ndarray, n_threads: int = 1) -> np.ndarray:
        return self.predict([x], n_threads)[0]

    # ------------------------------------------------------------------ jagged evaluation
    def _analyse(
        self, mask: str, detect_mask: bool, particle_axis: int, min_length: int
    ) -> tuple[list[_InputPlan], int]:
        """The plan of cpp/src/nn/jagged.cpp's analyse(): each input's role, particle axis and
        values per particle/jet, and the shortest evaluation length; the same errors."""
        src = self.source
        plans: list[_InputPlan] = []
        particle_dim_names: list[Dim] = []
        for info in self.inputs:
            name, _, shape = info
            ip = _InputPlan(name)
            if shape is None:
                raise InputError(
                    f"{src}: input '{name}' declares no shape; jagged evaluation needs declared shapes"
                )
            if not shape:
                raise InputError(f"{src}: input '{name}' is a scalar; it has no batch dimension")
            if not _symbolic(shape[0]):
                raise InputError(
                    f"{src}: input '{name}' has a fixed batch size of {shape[0]}; jagged evaluation needs a "
                    "symbolic batch dimension"
                )
            symbolic = [i for i in range(1, len(shape)) if _symbolic(shape[i])]
            axis = -1
            if particle_axis > 0:
                if particle_axis < len(shape) and _symbolic(shape[particle_axis]):
                    axis = particle_axis
                for s in symbolic:
                    if s != axis:
                        raise InputError(
                            f"{src}: input '{name}' {_dims_text(info)} has a symbolic dimension at position {s}, "
                            f"not at the particle axis {particle_axis}"
                        )
            elif particle_axis < 0:
                raise InputError(f"particle_axis must be >= 1 (or 0 to detect it), got {particle_axis}")
            else:
                if len(symbolic) > 1:
                    raise InputError(
                        f"{src}: input '{name}' {_dims_text(info)} has several symbolic dimensions after the "
                        "batch; give particle_axis"
                    )
                if symbolic:
                    axis = symbolic[0]
            if axis < 0:
                ip.n_features = int(np.prod([int(d) for d in shape[1:]], dtype=np.int64))
            else:
                ip.role = "particle"
                ip.axis = axis
                ip.outer = int(np.prod([int(d) for d in shape[1:axis]], dtype=np.int64))
                ip.inner = int(np.prod([int(d) for d in shape[axis + 1 :]], dtype=np.int64))
                ip.n_features = ip.outer * ip.inner
                particle_dim_names.append(shape[axis])
            plans.append(ip)
        if not any(p.role == "particle" for p in plans):
            shapes = ", ".join(f"'{t[0]}' {_dims_text(t)}" for t in self.inputs)
            raise InputError(
                f"{src}: no input has a symbolic particle dimension (inputs: {shapes}); jagged evaluation needs "
                "a set or graph model exported with a dynamic number of particles (a model with a fixed particle "
                "dimension may depend on it and cannot be evaluated jagged)"
            )
        found = -1
        if mask:
            names = [t[0] for t in self.inputs]
            if mask not in names:
                listed = ", ".join(f"'{n}'" for n in names)
                raise InputError(
                    f"mask input '{mask}' is not an input of the model (its inputs are {listed})"
                )
            found = names.index(mask)
            if plans[found].role != "particle":
                raise InputError(
                    f"{src}: mask input '{mask}' {_dims_text(self.inputs[found])} has no particle axis"
                )
        elif detect_mask:
            for i, info in enumerate(self.inputs):
                if plans[i].role != "particle" or "mask" not in info[0].lower():
                    continue
                if found >= 0:
                    raise InputError(
                        f"{src}: inputs '{self.inputs[found][0]}' and '{info[0]}' both look like a mask; name "
                        "the mask input explicitly"
                    )
                found = i
        if found >= 0:
            ip = plans[found]
            if ip.n_features != 1:
                raise InputError(
                    f"{src}: mask input '{ip.name}' {_dims_text(self.inputs[found])} must hold one value per "
                    f"particle, it holds {ip.n_features}"
                )
            ip.role = "mask"
        for ip, info in zip(plans, self.inputs):
            if ip.role == "particle" and info[1] != "float32":
                raise InputError(
                    f"{src}: per-particle input '{ip.name}' is {info[1]}; jagged evaluation fills float32 "
                    "per-particle inputs only"
                )
        for info in self.outputs:
            shape = info[2]
            if shape is None:
                continue
            for d in shape[1:]:
                if isinstance(d, str) and d in particle_dim_names:
                    raise InputError(
                        f"{src}: output '{info[0]}' {_dims_text(info)} has a particle dimension; jagged "
                        "evaluation gives one row per jet"
                    )
        if min_length >= 0:
            return plans, max(1, int(min_length))
        k_max = 1
        for node, k in self._topk:
            if k is None:
                raise InputError(
                    f"{src}: node '{node}' (TopK) has a k that is not a constant; give min_length (the smallest "
                    "number of particles the padded model is evaluated with)"
                )
            k_max = max(k_max, k)
        return plans, k_max

    def jagged_layout(
        self, mask: str = "", detect_mask: bool = True, particle_axis: int = 0, min_length: int = -1
    ) -> tuple[list[tuple[str, str, int, int]], int]:
        plans, min_len = self._analyse(mask, detect_mask, particle_axis, min_length)
        return [(p.name, p.role, p.axis, p.n_features) for p in plans], min_len

    @staticmethod
    def _offsets(offsets: np.ndarray) -> np.ndarray:
        if offsets.dtype not in (np.int64, np.int32, np.uint32):
            raise InputError(f"offsets must be int64, int32 or uint32, got {offsets.dtype}")
        if offsets.ndim != 1 or len(offsets) < 1:
            raise InputError("offsets must be a 1-D array of n_jets + 1 entries")
        off = offsets.astype(np.int64)
        if off[0] < 0:
            raise InputError(f"jagged array: offsets[0] = {off[0]} is negative")
        down = np.flatnonzero(off[1:] < off[:-1])
        if len(down):
            e = int(down[0])
            raise InputError(
                f"jagged array: offsets decrease at event {e} (offsets[{e}] = {off[e]} > offsets[{e + 1}] = {off[e + 1]})"
            )
        return off

    @staticmethod
    def _columns(name: str, arrays: Sequence[np.ndarray]) -> list[tuple[str, np.ndarray]]:
        """Per-particle columns (label, (n,) array) of one input, checked as the binding checks them."""
        cols: list[tuple[str, np.ndarray]] = []
        for a in arrays:
            a = np.asarray(a)
            if a.dtype not in (np.float32, np.float64):
                raise InputError(
                    f"per-particle input '{name}': content must be float32 or float64, got {a.dtype}"
                )
            if a.ndim not in (1, 2):
                raise InputError(
                    f"per-particle input '{name}': content must have shape (n_particles,) or (n_particles, "
                    f"n_features), got {a.ndim} dimensions"
                )
            for j in range(1 if a.ndim == 1 else a.shape[1]):
                cols.append((f"{name}[{len(cols)}]", a if a.ndim == 1 else a[:, j]))
        return cols

    def predict_jagged(
        self,
        offsets: np.ndarray,
        particles: Sequence[tuple[str, Sequence[np.ndarray]]],
        jets: Sequence[tuple[str, np.ndarray]],
        mask: str = "",
        detect_mask: bool = True,
        particle_axis: int = 0,
        min_length: int = -1,
        pad_value: float = 0.0,
        chunk_particles: int = 2048,
        n_threads: int = 1,
    ) -> list[np.ndarray]:
        """Jets grouped by evaluation length max(n, min_length), each group (in chunks of at most
        ``chunk_particles`` values) padded to its length and run through onnxruntime; the rules
        and errors of ``Model::predict_jagged`` (cpp/src/nn/jagged.cpp)."""
        plans, min_len = self._analyse(mask, detect_mask, particle_axis, min_length)
        names = [t[0] for t in self.inputs]
        listed = ", ".join(f"'{n}'" for n in names)

        def index(name: str, what: str) -> int:
            if name not in names:
                raise InputError(f"{what} '{name}' is not an input of the model (its inputs are {listed})")
            return names.index(name)

        given: dict[int, list[tuple[str, np.ndarray]]] = {}
        for name, arrays in particles:
            i = index(name, "per-particle input")
            ip = plans[i]
            if ip.role == "mask":
                raise InputError(f"input '{name}' is the mask; it is built from the offsets, do not give it")
            if ip.role == "jet":
                raise InputError(
                    f"input '{name}' {_dims_text(self.inputs[i])} has no particle axis; give it as a per-jet "
                    "input [n_jets, ...]"
                )
            if i in given:
                raise InputError(f"input '{name}' is given twice")
            cols = self._columns(name, arrays)
            if len(cols) != ip.n_features:
                raise InputError(
                    f"input '{name}' {_dims_text(self.inputs[i])} takes {ip.n_features} value(s) per particle, "
                    f"{len(cols)} column(s) were given"
                )
            given[i] = cols
        off = self._offsets(np.asarray(offsets))
        n_jets = len(off) - 1
        per_jet: dict[int, np.ndarray] = {}
        for name, a in jets:
            i = index(name, "per-jet input")
            info = self.inputs[i]
            if plans[i].role != "jet":
                raise InputError(
                    f"input '{name}' {_dims_text(info)} has a particle axis; give it as jagged columns"
                )
            if i in per_jet:
                raise InputError(f"input '{name}' is given twice")
            a = np.asarray(a)
            if a.dtype != np.dtype(info[1]):
                raise InputError(f"input '{name}' must be {info[1]}, got {a.dtype}")
            shape = info[2] or ()
            ok = a.ndim == len(shape) and a.ndim > 0 and a.shape[0] == n_jets
            ok = ok and all(a.shape[d] == shape[d] for d in range(1, len(shape)))
            if not ok:
                got = "(" + ", ".join(str(d) for d in a.shape) + ")"
                raise InputError(
                    f"per-jet input '{name}' has shape {got}; the model expects {_dims_text(info)} with {n_jets} jets"
                )
            per_jet[i] = a
        for i, ip in enumerate(plans):
            if (ip.role == "particle" and i not in given) or (ip.role == "jet" and i not in per_jet):
                kind = "per-particle" if ip.role == "particle" else "per-jet"
                raise InputError(f"{kind} input '{ip.name}' {_dims_text(self.inputs[i])} is missing")
        # every column must hold the particles the offsets reach
        last = int(off[-1]) if n_jets else 0
        for cols in given.values():
            for label, c in cols:
                if last > len(c):
                    e = int(np.searchsorted(off[1:], len(c), side="right"))
                    raise InputError(
                        f'jagged array column "{label}" has {len(c)} values but the offsets reach '
                        f"{int(off[e + 1])} at event {e}"
                    )
        # one (n_particles, n_features) float32 matrix per per-particle input, from the jets' range
        first = int(off[0]) if n_jets else 0
        content = {
            i: np.stack([np.asarray(c[first:last], np.float32) for _, c in cols], axis=1)
            for i, cols in given.items()
        }
        counts = np.diff(off)
        starts = off[:-1] - first
        length = np.maximum(counts, min_len)
        order = np.argsort(length, kind="stable")
        budget = max(1, int(chunk_particles))
        chunks: list[tuple[int, int, int]] = []  # (first in order, count, length)
        lo = 0
        while lo < n_jets:
            L = int(length[order[lo]])
            hi = int(np.searchsorted(length[order], L, side="right"))
            per = max(1, budget // L)
            chunks += [(s, min(per, hi - s), L) for s in range(lo, hi, per)]
            lo = hi
        outputs: list[Optional[np.ndarray]] = [None] * len(self.outputs)

        def evaluate(rows: np.ndarray, L: int) -> list[np.ndarray]:
            B = len(rows)
            n: np.ndarray = counts[rows] if B and n_jets else np.zeros(B, np.int64)
            real = np.arange(L)[None, :] < n[:, None]  # (B, L)
            feeds: dict[str, np.ndarray] = {}
            for i, ip in enumerate(plans):
                name, dtype, shape = self.inputs[i]
                dims = list(shape or ())
                if ip.role == "jet":
                    rest = [int(d) for d in dims[1:]]
                    feeds[name] = (
                        np.ascontiguousarray(per_jet[i][rows]) if n_jets else np.zeros([B, *rest], dtype)
                    )
                    continue
                full = [B if d == 0 else L if d == ip.axis else int(dims[d]) for d in range(len(dims))]
                if ip.role == "mask":
                    feeds[name] = real.astype(dtype).reshape(full)
                    continue
                x = np.full((B, L, ip.n_features), np.float32(pad_value), np.float32)
                if real.any():
                    idx = starts[rows][:, None] + np.arange(L)[None, :]
                    x[real] = content[i][idx[real]]
                # (B, L, outer, inner) -> (B, outer, L, inner) -> the input's shape
                split = x.reshape(B, L, ip.outer, ip.inner).transpose(0, 2, 1, 3)
                feeds[name] = np.ascontiguousarray(split).reshape(full)
            try:
                return self._run(feeds, n_threads)
            except InputError as err:
                raise InputError(
                    f"evaluating jets at length {L}: {err} (does the model take a variable number of particles?)"
                ) from err

        def store(result: list[np.ndarray], rows: np.ndarray, L: int, dummy: bool) -> None:
            B = len(rows)
            for k, v in enumerate(result):
                name = self.outputs[k][0]
                if v.ndim == 0 or v.shape[0] != B:
                    shape = "[" + ",".join(str(d) for d in v.shape) + "]"
                    raise InputError(
                        f"output '{name}' has shape {shape} for a batch of {B} jets; jagged evaluation needs one "
                        "row per jet"
                    )
                o = outputs[k]
                if o is None:
                    o = outputs[k] = np.zeros((0 if dummy else n_jets, *v.shape[1:]), v.dtype)
                elif v.dtype != o.dtype or v.shape[1:] != o.shape[1:]:
                    got = "[" + ",".join(str(d) for d in v.shape[1:]) + "]"
                    want = "[" + ",".join(str(d) for d in o.shape[1:]) + "]"
                    raise InputError(
                        f"output '{name}' has rows of shape {got} for jets of length {L} but {want} for others; "
                        "jagged evaluation needs outputs that do not depend on the number of particles"
                    )
                if not dummy:
                    o[rows] = v

        if not chunks:  # no jets: evaluate one empty jet for the outputs' shapes
            dummy_rows: np.ndarray = np.zeros(1, np.int64)
            store(evaluate(dummy_rows, min_len), dummy_rows, min_len, True)
        for s, count, L in reversed(chunks):  # longest first, as the native engine goes
            rows = order[s : s + count]
            store(evaluate(rows, L), rows, L, False)
        return [o for o in outputs if o is not None]
