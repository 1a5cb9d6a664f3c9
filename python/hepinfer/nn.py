"""Neural networks from ONNX files: MLPs, Deep Sets / energy-flow networks, EdgeConv
(ParticleNet-like) graph networks, autoencoders.

    >>> model = hepinfer.nn.Model.load("tagger.onnx")
    >>> model.inputs                      # [TensorInfo(name='x', dtype='float32', shape=('batch', 30))]
    >>> scores = model.predict(X)         # one input, one output: numpy in, numpy out
    >>> out = model.predict({"points": p, "features": f, "mask": m}, n_threads=2)
    >>> scores = model.predict(jets)      # jagged awkward jets: each jet at its true length
    >>> scores = model.predict_jagged(offsets, {"features": content})   # the same from raw buffers
    >>> gpu = model.to("cuda")            # or Model.load(path, device="cuda:1")
    >>> scores = gpu.predict(X)           # numpy in -> numpy out; torch CUDA tensor in -> torch CUDA tensor out

The C++ core reads the ``.onnx`` file itself (no onnx/onnxruntime needed at run time),
checks every node against the implemented operators at load (``hepinfer.ModelFormatError``
names the node and op otherwise) and evaluates in float32. The GIL is released while it
runs (calls on fewer than 256 rows keep it: they take microseconds).

A graph the engine refuses can be run by onnxruntime instead, on explicit request only:
``Model.load(path, backend="onnxruntime")`` gives the same ``Model`` (``predict``, jagged jets,
``hepinfer.score`` locally and on Dask) with onnxruntime evaluating the graph (CPU only; needs
``pip install onnxruntime onnx``). The default backend never falls back to it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, Optional, Union

import numpy as np

from hepinfer import _core
from hepinfer._core import InputError, ModelFormatError
from hepinfer._onnxruntime import MissingDependencyError, OnnxRuntimeGraph

__all__ = [
    "BACKENDS",
    "JaggedInputInfo",
    "MissingDependencyError",
    "Model",
    "ModelSummary",
    "NodeSummary",
    "NodeTime",
    "TensorInfo",
    "describe",
    "supported_operators",
]

#: The evaluators :meth:`Model.load` takes: hepinfer's own engine (default) and onnxruntime.
BACKENDS = ("hepinfer", "onnxruntime")
# a load refused for an operator (or operator domain) the engine does not implement: the message
# names an operator and says it is not supported
_NAMES_OPERATOR = re.compile(r"\boperators?\b|\bops?\b", re.IGNORECASE)
_NOT_SUPPORTED = re.compile(
    r"not supported|unsupported|not implemented|does not (support|implement)", re.IGNORECASE
)
_ORT_HINT = ' (Model.load(path, backend="onnxruntime") runs it through onnxruntime)'

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


class JaggedInputInfo(NamedTuple):
    """How :meth:`Model.predict_jagged` fills one model input.

    ``role`` is ``"particle"`` (one row of ``n_features`` values per particle, read from
    jagged content), ``"mask"`` (built from the offsets: 1 for real particles, 0 for padding)
    or ``"jet"`` (one row of ``n_features`` values per jet). ``particle_axis`` is the
    position of the particle dimension in the input's shape (-1 for per-jet inputs).
    """

    name: str
    role: str
    particle_axis: int
    n_features: int


class NodeSummary(NamedTuple):
    """One node of an ONNX graph: name, operator, domain (``""`` for the default ONNX domain)
    and whether hepinfer's engine implements the operator."""

    name: str
    op_type: str
    domain: str
    supported: bool


class NodeTime(NamedTuple):
    """The time one node of the loaded graph took in one evaluation (:meth:`Model.profile`):
    the median over the repeats. Fused nodes keep their first ONNX node's name and show the
    chain as ``op_type`` (``"Conv+Relu"``); ``ran`` is False for nodes an ``If`` skipped."""

    name: str
    op_type: str
    seconds: float
    ran: bool


class ModelSummary(NamedTuple):
    """What an ONNX file declares, read without loading the model (:func:`describe`)."""

    producer: str
    ir_version: int
    opset: int
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    nodes: list[NodeSummary]
    n_parameters: int
    n_initializers: int

    def op_histogram(self) -> dict[tuple[str, str], int]:
        """``{(domain, op_type): count}``, most frequent first."""
        counts: dict[tuple[str, str], int] = {}
        for n in self.nodes:
            counts[(n.domain, n.op_type)] = counts.get((n.domain, n.op_type), 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    @property
    def unsupported(self) -> list[NodeSummary]:
        """The nodes whose operator hepinfer's engine does not implement."""
        return [n for n in self.nodes if not n.supported]


def describe(source: Union[PathLike, bytes, Any]) -> ModelSummary:
    """Inputs, outputs, nodes (with whether each operator runs natively) and parameter count of
    an ONNX model, read without building it: works for models hepinfer refuses. ``source``: a
    path, the file's bytes or an ``onnx.ModelProto``. Raises ``ModelFormatError`` for a
    malformed file."""
    if isinstance(source, (str, os.PathLike)):
        d = _core.describe_onnx(os.fspath(source))
    elif isinstance(source, (bytes, bytearray, memoryview)):
        d = _core.describe_onnx_bytes(bytes(source), "<bytes>")
    elif hasattr(source, "SerializeToString"):
        d = _core.describe_onnx_bytes(source.SerializeToString(), "<onnx.ModelProto>")
    else:
        raise TypeError(f"cannot describe {type(source).__name__}; give a path, bytes or onnx.ModelProto")
    return ModelSummary(
        producer=d["producer"],
        ir_version=int(d["ir_version"]),
        opset=int(d["opset"]),
        inputs=[TensorInfo(*t) for t in d["inputs"]],
        outputs=[TensorInfo(*t) for t in d["outputs"]],
        nodes=[NodeSummary(*n) for n in d["nodes"]],
        n_parameters=int(d["n_parameters"]),
        n_initializers=int(d["n_initializers"]),
    )


def supported_operators() -> list[str]:
    """The ONNX operators (default domain) hepinfer's engine implements, sorted."""
    return list(_core.nn_supported_operators())


_DTYPES: dict[str, np.dtype] = {
    "float32": np.dtype(np.float32),
    "int64": np.dtype(np.int64),
    "bool": np.dtype(np.bool_),
    # element types only the onnxruntime backend exchanges
    **{name: np.dtype(name) for name in ("float16", "float64", "int8", "int16", "int32")},
    **{name: np.dtype(name) for name in ("uint8", "uint16", "uint32", "uint64")},
}


def _is_awkward(x: Any) -> bool:
    return type(x).__module__.startswith("awkward") and hasattr(x, "layout")


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "is_cuda")


def _torch() -> Any:
    import torch

    return torch


def _on_cuda(x: Any) -> bool:
    """A torch CUDA tensor or any object exposing ``__cuda_array_interface__`` (cupy, numba)."""
    if _is_torch(x):
        return bool(x.is_cuda)
    return hasattr(x, "__cuda_array_interface__")


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
            or (want.kind == "u" and kind in "ub")
            or (want.kind == "b" and kind == "b")
        ):
            a = a.astype(want)
        else:
            raise InputError(f"input '{info.name}' must be {info.dtype}, got an array of dtype {a.dtype}")
    shape = info.shape
    if shape is not None and a.ndim == len(shape) - 1 and shape[-1] == 1:
        a = a[..., None]  # one value per event for a (batch, 1) input
    return a if a.flags.c_contiguous else a.copy(order="C")


def _awkward_is_jagged(x: Any) -> bool:
    """True for awkward arrays of jets with a variable number of particles (a ``var`` dimension)."""
    import awkward as ak

    t = x.type.content
    while isinstance(t, ak.types.OptionType):
        t = t.content
    if isinstance(t, ak.types.ListType):
        return True
    if isinstance(t, ak.types.RecordType):
        return any(isinstance(c, ak.types.ListType) for c in t.contents)
    return False


def _awkward_numbers(layout: Any, what: str) -> np.ndarray:
    """Per-particle content (NumpyArray, or RegularArray of numbers) as a (n,) or (n, F) numpy view."""
    import awkward as ak

    if isinstance(layout, (ak.contents.UnmaskedArray,)):
        layout = layout.content
    if isinstance(layout, ak.contents.IndexedArray):
        layout = layout.project()
    if isinstance(layout, ak.contents.NumpyArray):
        a = np.asarray(layout.data)
        if a.ndim > 2:
            a = a.reshape(a.shape[0], -1)
        return a
    if isinstance(layout, ak.contents.RegularArray):
        inner = _awkward_numbers(layout.content, what)
        if inner.ndim == 1:
            return inner[: len(layout) * layout.size].reshape(len(layout), layout.size)
        return inner[: len(layout) * layout.size].reshape(len(layout), -1)
    raise InputError(
        f"{what}: per-particle content of type {layout.form.type} is not supported "
        "(numbers or fixed-size lists of numbers per particle, without missing values)"
    )


def _float_content(a: np.ndarray) -> np.ndarray:
    if a.dtype in (np.float32, np.float64):
        return a
    if a.dtype.kind in "iub":
        return a.astype(np.float32)
    raise InputError(f"per-particle content must be numbers, got dtype {a.dtype}")


def _awkward_list(layout: Any, what: str) -> tuple[np.ndarray, Any]:
    """(offsets, content layout) of a jagged (var) awkward layout, zero-copy for ListOffsetArray."""
    import awkward as ak

    if isinstance(layout, ak.contents.IndexedArray):
        layout = layout.project()
    if isinstance(layout, ak.contents.ListArray):
        layout = layout.to_ListOffsetArray64(False)
    if not isinstance(layout, ak.contents.ListOffsetArray):
        raise InputError(
            f"{what}: expected jets with a variable number of particles (var * ...), got {layout.form.type}"
        )
    offsets = np.asarray(layout.offsets.data)
    content = layout.content
    if len(offsets) and offsets[0] != 0:  # a sliced array: start its content at the first jet
        content = content[int(offsets[0]) :]
        offsets = offsets - offsets[0]
    while isinstance(content, (ak.contents.IndexedArray, ak.contents.UnmaskedArray)):
        content = content.project() if isinstance(content, ak.contents.IndexedArray) else content.content
    return offsets, content


def _from_awkward(jets: Any) -> tuple[np.ndarray, dict[Optional[str], np.ndarray], dict[str, Any]]:
    """offsets, per-particle columns {field (None: unnamed): (n,) or (n, F)}, per-jet fields."""
    import awkward as ak

    layout = ak.to_layout(jets)
    while isinstance(layout, (ak.contents.UnmaskedArray, ak.contents.IndexedArray)):
        layout = layout.content if isinstance(layout, ak.contents.UnmaskedArray) else layout.project()
    particles: dict[Optional[str], np.ndarray] = {}
    per_jet: dict[str, Any] = {}
    offsets: Optional[np.ndarray] = None
    if isinstance(layout, ak.contents.RecordArray):
        # jets as records: list fields hold particles, the other fields are per-jet values
        for field in layout.fields:
            sub = layout.content(field)[: len(layout)]
            if isinstance(sub, ak.contents.IndexedArray):
                sub = sub.project()
            if not isinstance(sub, (ak.contents.ListOffsetArray, ak.contents.ListArray)):
                per_jet[field] = ak.Array(sub)
                continue
            off, content = _awkward_list(sub, f"field '{field}'")
            if offsets is None:
                offsets = off
            elif not np.array_equal(offsets, off):
                raise InputError(
                    f"field '{field}' does not have the same number of particles per jet as the others"
                )
            if isinstance(content, ak.contents.RecordArray):
                for f in content.fields:
                    particles[f] = _float_content(
                        _awkward_numbers(content.content(f), f"field '{field}.{f}'")
                    )
            else:
                particles[field] = _float_content(_awkward_numbers(content, f"field '{field}'"))
        if offsets is None:
            raise InputError("the awkward record has no variable-length (per-particle) field")
        return offsets, particles, per_jet
    offsets, content = _awkward_list(layout, "jets")
    if isinstance(content, ak.contents.RecordArray):
        for f in content.fields:
            particles[f] = _float_content(_awkward_numbers(content.content(f), f"field '{f}'"))
    else:
        particles[None] = _float_content(_awkward_numbers(content, "jets"))
    return offsets, particles, per_jet


class Model:
    """An ONNX neural network, immutable after load; share it between threads.

    Use :meth:`Model.load`. :meth:`predict` takes a numpy array (single-input models), a
    dict ``{input name: array}``, several arrays in input order, or an awkward record array
    whose fields are the input names; it returns one array for single-output models and a
    dict ``{output name: array}`` otherwise.
    """

    __slots__ = ("_core", "_device", "_inputs", "_outputs", "_rows")

    def __init__(self, core: Union[_core.Model, OnnxRuntimeGraph], device: Optional[Any] = None) -> None:
        self._core = core
        self._device = device  # a _core.DeviceModel when the model runs on CUDA
        self._inputs = [TensorInfo(n, d, s) for n, d, s in core.inputs]
        self._outputs = [TensorInfo(n, d, s) for n, d, s in core.outputs]
        self._rows = core.simple_rows

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(
        cls,
        source: Union[PathLike, bytes, Any],
        *,
        external_data_dir: Optional[PathLike] = None,
        device: str = "cpu",
        backend: str = "hepinfer",
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
        device
            ``"cpu"`` (default), ``"cuda"`` or ``"cuda:N"``: the same as ``Model.load(...).to(device)``.
        backend
            ``"hepinfer"`` (default): hepinfer's own engine, which refuses a graph with an
            operator it does not implement (``ModelFormatError`` naming the node).
            ``"onnxruntime"``: onnxruntime evaluates the graph, for models the engine refuses;
            everything else stays the same (inputs, ``predict`` with every input form, jagged
            jets with :meth:`predict_jagged` grouped by length as the engine groups them,
            ``hepinfer.score`` locally and on Dask, pickling). ``n_threads`` then sets
            onnxruntime's intra-op threads; the model runs on the CPU only (:meth:`to` a GPU
            raises ``DeviceError``). Needs ``pip install onnxruntime onnx``
            (:class:`MissingDependencyError`, an ``ImportError``, otherwise). Never chosen
            silently: the default backend does not fall back to onnxruntime.
        """
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if backend == "onnxruntime":
            if isinstance(source, (str, os.PathLike)):
                name = os.fspath(source)
            elif isinstance(source, (bytes, bytearray, memoryview)):
                name = "<bytes>"
            elif hasattr(source, "SerializeToString"):
                name = "<onnx.ModelProto>"
            else:
                raise TypeError(
                    f"cannot load a model from {type(source).__name__}; give a path, bytes or onnx.ModelProto"
                )
            ext_dir = os.fspath(external_data_dir) if external_data_dir is not None else None
            return cls(OnnxRuntimeGraph.load(source, name, ext_dir)).to(device)
        ext = os.fspath(external_data_dir) if external_data_dir is not None else ""
        try:
            if isinstance(source, (str, os.PathLike)):
                from hepinfer.kfold import refuse_bundle

                refuse_bundle(source, "Model.load")
                core = _core.Model.load(os.fspath(source), ext)
            elif isinstance(source, (bytes, bytearray, memoryview)):
                core = _core.Model.load_from_memory(bytes(source), "<bytes>", ext)
            elif hasattr(source, "SerializeToString"):
                core = _core.Model.load_from_memory(source.SerializeToString(), "<onnx.ModelProto>", ext)
            else:
                raise TypeError(
                    f"cannot load a model from {type(source).__name__}; give a path, bytes or onnx.ModelProto"
                )
        except ModelFormatError as err:
            message = str(err)
            if (
                not (_NAMES_OPERATOR.search(message) and _NOT_SUPPORTED.search(message))
                or _ORT_HINT in message
            ):
                raise
            raise type(err)(message + _ORT_HINT) from None
        return cls(core).to(device)

    def to(self, device: str) -> "Model":
        """The same network on ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:N"``); the weights are
        uploaded once and shared by every call.

        A CUDA model evaluates dense networks (fused dense layers with bias and activation,
        elementwise ops, softmax heads, concatenations, reshapes, reductions, batch norm: MLPs,
        autoencoders, padded set models) and, through :meth:`predict_jagged`, Deep Sets / PFN /
        EFN models on jagged jets without padding (segment sums/means over the offsets on the
        device). EdgeConv/kNN graph networks (TopK, Gather) are not supported on CUDA yet.

        Raises ``hepinfer.DeviceError`` when hepinfer was built without CUDA ("built without
        CUDA"), when no such device is visible, or naming the first node whose op or form the
        CUDA executor does not implement; and for any device but the CPU on a model loaded with
        ``backend="onnxruntime"``.
        """
        if device == "cpu":
            return self if self._device is None else Model(self._core)
        return Model(self._core, self._core.to_device(device))

    @property
    def device(self) -> str:
        """Where :meth:`predict` runs: ``"cpu"`` or ``"cuda:N"``."""
        return "cpu" if self._device is None else f"cuda:{self._device.device}"

    @property
    def backend(self) -> str:
        """What evaluates the graph: ``"hepinfer"`` (the native engine) or ``"onnxruntime"``
        (``Model.load(..., backend="onnxruntime")``)."""
        return "onnxruntime" if isinstance(self._core, OnnxRuntimeGraph) else "hepinfer"

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
        """Nodes evaluated per call, after constant folding and fusion (with the onnxruntime
        backend: the nodes of the ONNX graph as written)."""
        return self._core.n_nodes

    @property
    def batch_separable(self) -> bool:
        """Whether ``n_threads`` > 1 splits the batch (all inputs/outputs share a symbolic first dimension)."""
        return self._core.batch_separable

    def __repr__(self) -> str:
        ins = ", ".join(
            f"{t.name}: {t.dtype}{list(t.shape) if t.shape is not None else ''}" for t in self._inputs
        )
        via = ", onnxruntime" if self.backend == "onnxruntime" else ""
        return f"<hepinfer.nn.Model ({ins}) -> {len(self._outputs)} output(s), {self.n_nodes} nodes{via}>"

    # ------------------------------------------------------------------ evaluation
    def predict(self, x: Any, *more: Any, n_threads: int = 1) -> Union[np.ndarray, dict[str, np.ndarray]]:
        """Evaluate the network.

        Parameters
        ----------
        x
            A numpy array (single-input models), a dict ``{input name: array}``, an awkward
            record array or pandas DataFrame whose fields/columns are the input names; or the
            first of several arrays given in input order (``predict(points, features, mask)``).
            An awkward array of jets with a variable number of particles (a ``var``
            dimension) goes to :meth:`predict_jagged` with its default options.
        n_threads
            Threads over batch rows (batch-separable models); ``<= 0``: all cores. Results do
            not depend on it. With the onnxruntime backend: onnxruntime's intra-op threads.

        On a CUDA model (:meth:`to`), numpy (and other host) inputs are copied to the device
        and the outputs come back as numpy arrays; torch CUDA tensors and other objects with
        ``__cuda_array_interface__`` (cupy, numba) on the model's device are read in place
        (float32, C-contiguous) after the producing torch stream, and the outputs stay on the
        device: torch CUDA tensors for torch inputs, else ``hepinfer.nn`` device arrays with
        ``__cuda_array_interface__`` (``cupy.asarray`` takes them without a copy).

        Returns
        -------
        One array for a single-output model, else ``{output name: array}``.
        """
        if self._device is not None:
            return self._predict_cuda(x, more)
        if (
            not more
            and self._rows
            and type(x) is np.ndarray
            and x.dtype == np.float32
            and x.flags.c_contiguous
            and x.ndim >= 1
        ):
            return self._core.predict_rows(x, n_threads)
        if not more and _is_awkward(x) and _awkward_is_jagged(x):
            return self.predict_jagged(x, n_threads=n_threads)
        arrays = self._arrays(x, more)
        out = self._core.predict(arrays, n_threads)
        if len(out) == 1:
            return out[0]
        return {t.name: o for t, o in zip(self._outputs, out)}

    def _predict_cuda(self, x: Any, more: Sequence[Any]) -> Any:
        if not more and _is_awkward(x) and _awkward_is_jagged(x):
            return self.predict_jagged(x)
        values = [x, *more] if more or not isinstance(x, Mapping) else None
        if isinstance(x, Mapping) and not more:
            missing = [t.name for t in self._inputs if t.name not in x]
            if not missing:
                values = [x[t.name] for t in self._inputs]
        if values is not None and len(values) == len(self._inputs) and all(_on_cuda(v) for v in values):
            return self._predict_on_device(values)
        out = self._on_device().predict(self._arrays(x, more))
        if len(out) == 1:
            return out[0]
        return {t.name: o for t, o in zip(self._outputs, out)}

    def _on_device(self) -> Any:
        """The _core.DeviceModel (only called on the CUDA paths)."""
        if self._device is None:
            raise RuntimeError("this model is on the CPU")
        return self._device

    def _predict_on_device(self, values: Sequence[Any]) -> Any:
        device = self._on_device()
        torch_in = any(_is_torch(v) for v in values)
        stream = 0
        pairs = []
        keep = []  # converted tensors must live until the call returns
        for v, t in zip(values, self._inputs):
            if _is_torch(v):
                if v.dtype != _torch().float32 or not v.is_contiguous():
                    v = v.float().contiguous()
                    keep.append(v)
                if v.device.index != device.device:
                    raise InputError(
                        f"input '{t.name}' is on {v.device}; the model is on cuda:{device.device}"
                    )
                stream = _torch().cuda.current_stream(v.device).cuda_stream
                pairs.append((int(v.data_ptr()), [int(d) for d in v.shape]))
                continue
            cai = v.__cuda_array_interface__
            if np.dtype(cai["typestr"]) != np.float32:
                raise InputError(f"input '{t.name}' must be float32 on the device, got {cai['typestr']}")
            shape = [int(d) for d in cai["shape"]]
            strides = cai.get("strides")
            if strides is not None and tuple(strides) != tuple(
                4 * int(np.prod(shape[i + 1 :], dtype=np.int64)) for i in range(len(shape))
            ):
                raise InputError(f"input '{t.name}' must be C-contiguous on the device")
            pairs.append((int(cai["data"][0]), shape))
        out = device.predict_on_device(pairs, stream)
        del keep
        if torch_in:
            torch = _torch()
            dev = torch.device("cuda", device.device)
            out = [torch.as_tensor(o, device=dev) for o in out]
        if len(out) == 1:
            return out[0]
        return {t.name: o for t, o in zip(self._outputs, out)}

    def profile(self, x: Any, *more: Any, repeats: int = 10) -> list[NodeTime]:
        """Where the time of one evaluation goes: each node's median wall time over ``repeats``
        evaluations of the inputs (given as to :meth:`predict`), in graph order, one thread.

        The batch runs in one piece; :meth:`predict` runs batches of 256 rows or more of a
        batch-separable model in row blocks, so there the sum over nodes can exceed its time.
        Only the hepinfer backend on the CPU has per-node times.
        """
        if self._device is not None or not isinstance(self._core, _core.Model):
            raise ValueError(
                f"profile needs the hepinfer backend on the CPU; this model runs on {self.backend}/{self.device}"
            )
        if int(repeats) < 1:
            raise ValueError(f"repeats must be at least 1, got {repeats}")
        return [NodeTime(*t) for t in self._core.profile(self._arrays(x, more), int(repeats))]

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

    # ------------------------------------------------------------------ jagged evaluation
    def jagged_layout(
        self,
        *,
        mask: Union[str, None, bool] = None,
        particle_axis: Optional[int] = None,
        min_length: Optional[int] = None,
    ) -> tuple[list[JaggedInputInfo], int]:
        """How :meth:`predict_jagged` reads this model: each input's role (``"particle"``,
        ``"mask"``, ``"jet"``), particle axis and values per particle/jet, and the shortest
        length a jet is evaluated at (the largest kNN ``k``). Raises ``InputError`` where
        the model cannot be evaluated jagged (e.g. a fixed particle dimension)."""
        name, detect = self._mask_option(mask)
        infos, min_len = self._core.jagged_layout(
            name,
            detect,
            0 if particle_axis is None else int(particle_axis),
            -1 if min_length is None else int(min_length),
        )
        return [JaggedInputInfo(*t) for t in infos], int(min_len)

    @staticmethod
    def _mask_option(mask: Union[str, None, bool]) -> tuple[str, bool]:
        if mask is None or mask is True:
            return "", True
        if mask is False:
            return "", False
        if isinstance(mask, str) and mask:
            return mask, False
        raise TypeError(
            "mask must be an input name, None (detect an input named like 'mask') or False (no mask)"
        )

    def predict_jagged(
        self,
        jets: Any,
        particles: Any = None,
        *,
        jet_inputs: Optional[Mapping[str, Any]] = None,
        fields: Optional[Mapping[str, Union[str, Sequence[str]]]] = None,
        mask: Union[str, None, bool] = None,
        particle_axis: Optional[int] = None,
        min_length: Optional[int] = None,
        pad_value: float = 0.0,
        n_threads: int = 1,
    ) -> Union[np.ndarray, dict[str, np.ndarray]]:
        """Evaluate a set or graph model on jets with a variable number of particles, each jet
        at its true length (no padding to a common size).

        Jets are grouped by their number of particles ``n`` and each group goes through the
        unmodified graph as a batch of length ``n`` with the mask input all ones. Jets shorter
        than ``min_length`` (by default the ``k`` of the graph's kNN ``TopK``) are padded to it
        with ``pad_value`` and mask 0, exactly as the padded model sees them. The scores equal
        those of the padded-and-masked model (to float32 rounding) when the model qualifies:

        * particles interact only through masked pooling (sum or mean over the particle axis
          of features multiplied by the mask, divided by the mask's sum for a mean) and
          through kNN in which padded points can never be neighbours of real ones (their
          coordinates pushed far away, e.g. ``points * mask + 1e9 * (1 - mask)``) and padded
          features are masked (zero) before they are gathered;
        * everything else acts per particle or per jet: Linear/1x1 Conv layers, activations,
          BatchNorm in inference mode, EdgeConv's mean over the k neighbours, the jet-level
          head.

        Models that do **not** qualify (their scores depend on the padded length): anything
        that mixes particles otherwise, e.g. a Flatten or Linear over the particle axis,
        LayerNorm or softmax/attention across particles without masking, unmasked pooling
        (max pooling over padded zeros), a Reshape to a fixed number of particles. A model
        whose inputs have a fixed (non-symbolic) particle dimension is refused with
        ``InputError``: export it with a dynamic particle axis.

        Parameters
        ----------
        jets
            An awkward array of jets (``n_jets * var * ...``): lists of particles whose record
            fields are the model's per-particle input names (a field may hold several values
            per particle, ``var * 4 * float32``) or feature names (combine them with
            ``fields``), or lists of numbers for a model with one per-particle input; a jet
            record may also hold per-jet fields named like per-jet inputs. Or the jets'
            ``offsets`` (``n_jets + 1`` int32/uint32/int64 entries; jet ``j`` owns particles
            ``offsets[j] .. offsets[j+1]-1``) with the content in ``particles``.
        particles
            With offsets: the per-particle content, ``{input name: array}`` where each array is
            ``(n_particles,)``, ``(n_particles, n_values)`` or a list of such arrays
            (concatenated along the values), float32 or float64 (read without copying); or
            a single array for a model with one per-particle input.
        jet_inputs
            Per-jet inputs ``{input name: array (n_jets, ...)}`` (e.g. jet pT, global features).
        fields
            ``{input name: field or [fields]}``: which awkward fields (in order) make each
            per-particle input, e.g. ``{"points": ["eta", "phi"], "features": ["pt", "eta",
            "phi", "e"]}``. Default: the field named like the input; for a model with one
            per-particle input, every field in order.
        mask
            Name of the mask input (built from the offsets, never given); ``None``: the
            per-particle input whose name contains "mask"; ``False``: the model has none.
        particle_axis
            Position of the particle dimension in the per-particle inputs (1 for
            ``(batch, particles, features)``, 2 for channels-first ``(batch, channels,
            particles)``); ``None``: each input's one symbolic dimension after the batch.
        min_length
            Shortest length a jet is evaluated at; ``None``: the largest ``k`` of the graph's
            ``TopK`` nodes.
        pad_value
            Feature value of padded slots (what the padded model's padding holds).
        n_threads
            Threads over groups of jets (``<= 0``: all cores). Results do not depend on it.
            With the onnxruntime backend: onnxruntime's intra-op threads, groups in turn.

        Returns
        -------
        One row per jet: an array for a single-output model, else ``{output name: array}``.
        """
        layout, _ = self.jagged_layout(mask=mask, particle_axis=particle_axis, min_length=min_length)
        particle_inputs = [t.name for t in layout if t.role == "particle"]
        jet_names = {t.name for t in layout if t.role == "jet"}
        per_jet: dict[str, Any] = {}
        if _is_awkward(jets):
            if particles is not None:
                raise TypeError("give either an awkward array of jets, or offsets and particles")
            offsets, columns, per_jet = _from_awkward(jets)
            per_jet = {k: v for k, v in per_jet.items() if k in jet_names}
            content = self._columns_for_inputs(columns, particle_inputs, fields)
        else:
            if particles is None:
                raise TypeError("give the per-particle content: predict_jagged(offsets, particles)")
            if fields is not None:
                raise TypeError(
                    "fields maps awkward record fields; with offsets give particles={input: arrays}"
                )
            offsets = np.asarray(jets)
            if isinstance(particles, Mapping):
                content = {
                    k: (list(v) if isinstance(v, (list, tuple)) else [v]) for k, v in particles.items()
                }
            elif len(particle_inputs) == 1:
                content = {
                    particle_inputs[0]: list(particles)
                    if isinstance(particles, (list, tuple))
                    else [particles]
                }
            else:
                raise InputError(
                    f"the model has per-particle inputs {particle_inputs}: give particles as a dict {{name: array}}"
                )
            content = {k: [_float_content(np.asarray(a)) for a in v] for k, v in content.items()}
        if offsets.dtype not in (np.int64, np.int32, np.uint32):
            if offsets.dtype.kind not in "iu":
                raise InputError(f"offsets must be integers, got dtype {offsets.dtype}")
            offsets = offsets.astype(np.int64)
        offsets = np.ascontiguousarray(offsets)
        given = dict(per_jet)
        if jet_inputs:
            given.update(jet_inputs)
        infos = {t.name: t for t in self._inputs}
        jets_list = []
        for name, value in given.items():
            if name not in infos:
                raise InputError(
                    f"per-jet input '{name}' is not an input of the model; its inputs are {self.input_names}"
                )
            jets_list.append((name, _convert(value, infos[name])))
        mask_name, detect = self._mask_option(mask)
        args = (
            offsets,
            list(content.items()),
            jets_list,
            mask_name,
            detect,
            0 if particle_axis is None else int(particle_axis),
            -1 if min_length is None else int(min_length),
            float(pad_value),
        )
        if self._device is not None:
            out = self._device.predict_jagged(*args)
        else:
            out = self._core.predict_jagged(*args, 2048, int(n_threads))
        if len(out) == 1:
            return out[0]
        return {t.name: o for t, o in zip(self._outputs, out)}

    @staticmethod
    def _columns_for_inputs(
        columns: Mapping[Optional[str], np.ndarray],
        particle_inputs: Sequence[str],
        fields: Optional[Mapping[str, Union[str, Sequence[str]]]],
    ) -> dict[str, list[np.ndarray]]:
        """Per-particle awkward columns grouped into the model's per-particle inputs."""
        named = [k for k in columns if k is not None]
        if fields is not None:
            unknown = [k for k in fields if k not in particle_inputs]
            if unknown:
                raise InputError(
                    f"fields given for {unknown}, which are not per-particle inputs {list(particle_inputs)}"
                )
        out: dict[str, list[np.ndarray]] = {}
        for name in particle_inputs:
            if fields is not None and name in fields:
                spec = fields[name]
                keys = [spec] if isinstance(spec, str) else list(spec)
                missing = [k for k in keys if k not in columns]
                if missing:
                    raise InputError(
                        f"fields {missing} for input '{name}' are not in the jets (fields: {named})"
                    )
                out[name] = [columns[k] for k in keys]
            elif name in columns:
                out[name] = [columns[name]]
            elif len(particle_inputs) == 1 and None in columns:
                out[name] = [columns[None]]
            elif len(particle_inputs) == 1 and fields is None:
                out[name] = [columns[k] for k in named]  # every field, in record order
            else:
                raise InputError(
                    f"per-particle input '{name}' is not a field of the jets (fields: {named}); "
                    f"map it with fields={{'{name}': [field, ...]}}"
                )
        return out
