"""Score ROOT files with any hepinfer model: ``hepinfer.score(model, files, ...)``.

    scores = hepinfer.score("bdt.json", "ttbar_*.root", tree="Events")        # numpy, one per event
    summary = hepinfer.score(forest, files, tree="Events", output="scores.root", chunk="50 MB")

The files are read chunk by chunk (memory bounded by ``chunk``, not by the files), the next
pieces being read in a background thread while the model evaluates the current one (see
:func:`_read_plan`: a large chunk is read in pieces, so reading and evaluation overlap from the
first piece on).

Set and graph networks (PFN, EFN, ParticleNet) are read from jagged branches, one event
per jet, without padding::

    hepinfer.score("particlenet.onnx", files, tree="jets",
                   features={"points": ["part_deta", "part_dphi"],
                             "features": ["part_logpt", "part_loge", "part_deta", "part_dphi"]},
                   jet_features={"jet": ["jet_pt", "jet_eta"]})    # only if the network has per-jet inputs

The model protocol
------------------
``score`` takes any object that has

* its input names: an attribute ``input_names`` (or ``feature_names``, as
  :class:`hepinfer.Forest` has, or ``inputs``, as the neural-network ``hepinfer.Model`` has;
  a list of strings or of objects with a ``.name``), and
* ``predict(inputs)`` taking a dict ``{input name: 1-D numpy array}`` (one value per event)
  and returning a numpy array ``(n,)`` (one output), ``(n, k)`` (k outputs), or a dict
  ``{output name: (n,) array}``;
* optionally ``output_names`` (a list of k names for the output branches).

:class:`hepinfer.Forest` objects, model files (any format ``Forest.load`` reads) and in-memory
xgboost/lightgbm boosters are adapted to it automatically (``output_kind`` and ``n_threads``
are passed to :meth:`hepinfer.Forest.predict`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import pickle
import queue
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import numpy as np

from hepinfer._core import Error, InputError
from hepinfer.io import (
    _IDENTIFIER,
    Chunk,
    FileFailure,
    FilesLike,
    ReadError,
    TreeSource,
    _as_column,
    _branch_names,
    _broken_branch_error,
    _bytes_read,
    _chunk_stop,
    _failing_expression_error,
    _iterate_one,
    _missing_branch_error,
    _nothing_returned_error,
    _one_line,
    _tree_name,
    check_branches,
    check_expression_names,
    expand_files,
    find_event_ids,
    open_tree,
    read_chunks,
    validate_expressions,
)

try:  # typing.Protocol is 3.8+, runtime_checkable too
    from typing import Protocol, runtime_checkable
except ImportError:  # pragma: no cover
    Protocol = object  # type: ignore[assignment,misc]

    def runtime_checkable(cls):  # type: ignore[no-redef]
        return cls


__all__ = [
    "ModelHolder",
    "OutputError",
    "ScoreSummary",
    "ScoringModel",
    "as_scoring_model",
    "score",
    "score_dask",
    "split_features",
    "Terminated",
]


@runtime_checkable
class ScoringModel(Protocol):
    """What :func:`score` needs from a model (see the module documentation)."""

    @property
    def input_names(self) -> Sequence[str]: ...

    @property
    def output_names(self) -> Sequence[str]: ...

    def predict(self, inputs: Mapping[str, np.ndarray]) -> Any: ...


# ---------------------------------------------------------------------------------- adapters


def _names(value: Any) -> list[str]:
    return [v if isinstance(v, str) else str(getattr(v, "name", v)) for v in value]


class _ForestModel:
    """A :class:`hepinfer.Forest` seen through the scoring protocol."""

    def __init__(
        self, forest: Any, output_kind: str, n_threads: Optional[int], output_names: Optional[Sequence[str]]
    ):
        self.forest = forest
        self.output_kind = output_kind
        self.n_threads = n_threads
        self.input_names = list(forest.feature_names)
        k = forest.n_outputs(output_kind)
        if output_names is not None:
            names = [str(n) for n in output_names]
            if len(names) != k:
                raise InputError(
                    f"output_names has {len(names)} names but the model gives {k} outputs per event"
                )
        else:
            names = ["score"] if k == 1 else [f"score_{i}" for i in range(k)]
        self.output_names = names

    def predict(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        return self.forest.predict(dict(inputs), output=self.output_kind, n_threads=self.n_threads)


class _GenericModel:
    """Any object with input names and ``predict(dict)``."""

    def __init__(self, model: Any, output_names: Optional[Sequence[str]]):
        self.model = model
        for attr in ("input_names", "feature_names", "inputs"):
            value = getattr(model, attr, None)
            if value is not None and not callable(value):
                self.input_names = _names(value)
                break
        else:
            raise TypeError(
                f"{type(model).__name__} is not a model hepinfer can score: it needs input names "
                "(input_names, feature_names or inputs) and predict(dict of arrays)"
            )
        if not callable(getattr(model, "predict", None)):
            raise TypeError(f"{type(model).__name__} has no predict method")
        given = output_names if output_names is not None else getattr(model, "output_names", None)
        self.output_names = _names(given) if given is not None and not callable(given) else None

    def predict(self, inputs: Mapping[str, np.ndarray]) -> Any:
        return self.model.predict(dict(inputs))


class _NetworkModel:
    """A :class:`hepinfer.nn.Model` with one input of shape ``(events, k)`` seen through the
    scoring protocol: its k input columns are named ``"x[0]" ... "x[k-1]"`` (for an input
    called ``x``) and stacked in that order, so ``score`` needs ``features=`` (k branches or
    expressions, in the order the network was trained on)."""

    needs_features = True

    def __init__(self, model: Any, n_threads: Optional[int], output_names: Optional[Sequence[str]]) -> None:
        inputs = model.inputs
        shape = inputs[0].shape if len(inputs) == 1 else None
        if shape is None or len(shape) != 2 or int(shape[1]) < 1:
            described = ", ".join(f"{t.name} {list(t.shape) if t.shape is not None else '?'}" for t in inputs)
            raise InputError(
                f"score() runs networks with one input of shape (events, features); this one takes {described}: "
                "wrap it in an object with input_names and predict(dict of per-event arrays) "
                "(see hepinfer.scoring), e.g. padding particles with hepinfer.jagged"
            )
        self.model = model
        self.n_threads = 0 if n_threads is None else n_threads
        self.input = str(inputs[0].name)
        self.input_names = [f"{self.input}[{j}]" for j in range(int(shape[1]))]
        names = list(output_names) if output_names is not None else list(model.output_names)
        self.output_names = [str(n) for n in names]

    def predict(self, inputs: Mapping[str, np.ndarray]) -> Any:
        X = np.empty((len(inputs[self.input_names[0]]), len(self.input_names)), dtype=np.float32)
        for j, name in enumerate(self.input_names):
            X[:, j] = inputs[name]
        result = self.model.predict(X, n_threads=self.n_threads)
        if isinstance(result, np.ndarray) and result.ndim == 2 and result.shape[1] == 1:
            return result.reshape(-1)  # one score per event, as Forest.predict gives it
        return result


def _is_row_network(model: Any) -> bool:
    """True for a network with one input of shape ``(events, k)``, k fixed."""
    inputs = model.inputs
    if len(inputs) != 1 or inputs[0].shape is None or len(inputs[0].shape) != 2:
        return False
    return isinstance(inputs[0].shape[1], int)


def _expression_list(spec: Any, what: str) -> list[str]:
    if isinstance(spec, str):
        exprs = split_features(spec)
    elif isinstance(spec, Sequence):
        exprs = [str(e) for e in spec]
    else:
        raise InputError(
            f"{what}: give a branch name or a list of branch names/expressions, not {type(spec).__name__}"
        )
    if not exprs:
        raise InputError(f"{what}: no branch given")
    return exprs


class _JaggedNetworkModel:
    """A set or graph :class:`hepinfer.nn.Model` (PFN, EFN, ParticleNet) scored from jagged
    branches with :meth:`hepinfer.nn.Model.predict_jagged`, each event (jet) at its true
    number of particles. Each per-particle input is read from jagged branches (one per value
    per particle, in order), each per-jet input from flat branches; the mask input is built from
    the particle counts."""

    needs_features = True

    def __init__(
        self,
        model: Any,
        n_threads: Optional[int],
        output_names: Optional[Sequence[str]],
        mask: Union[str, None, bool] = None,
        particle_axis: Optional[int] = None,
    ) -> None:
        try:
            layout, _ = model.jagged_layout(mask=mask, particle_axis=particle_axis)
        except InputError as err:
            described = ", ".join(
                f"{t.name} {list(t.shape) if t.shape is not None else '?'}" for t in model.inputs
            )
            raise InputError(
                f"score() runs networks with one input of shape (events, features), or set/graph networks "
                f"read from jagged branches; this one takes {described} and is neither: {err}"
            ) from err
        self.model = model
        self.mask = mask
        self.particle_axis = particle_axis
        self.n_threads = 0 if n_threads is None else n_threads
        self.particle_inputs = {t.name: int(t.n_features) for t in layout if t.role == "particle"}
        self.jet_inputs = {t.name: int(t.n_features) for t in layout if t.role == "jet"}
        self.mask_inputs = [t.name for t in layout if t.role == "mask"]
        if not self.particle_inputs:
            raise InputError(
                f"the network's inputs {model.input_names} have no particle axis: score() reads it with "
                "features=[one branch per input column] only when it has one (events, k) input"
            )
        self.input_names = [*self.particle_inputs, *self.jet_inputs]
        names = list(output_names) if output_names is not None else list(model.output_names)
        outs = model.outputs
        width = outs[0].shape[-1] if len(outs) == 1 and outs[0].shape else None
        if output_names is None and isinstance(width, int) and width > 1:
            names = [f"score_{j}" for j in range(width)]  # one branch per column of the one output
        self.output_names = [str(n) for n in names]

    def describe(self) -> str:
        parts = [f"{n} ({k} value(s) per particle)" for n, k in self.particle_inputs.items()]
        parts += [f"{n} ({k} value(s) per jet)" for n, k in self.jet_inputs.items()]
        parts += [f"{n} (mask, built from the particle counts)" for n in self.mask_inputs]
        return ", ".join(parts)

    def branch_map(
        self, features: Any, jet_features: Optional[Mapping[str, Any]]
    ) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        """(per-particle input -> jagged branches, per-jet input -> flat branches), validated."""
        if features is None:
            raise InputError(
                f"the network's inputs are {self.describe()}: give features={{input: [jagged branches, "
                "one per value per particle, in the order it was trained on]}"
                + (" and jet_features={input: [branches]}" if self.jet_inputs else "")
            )
        if not isinstance(features, Mapping):
            if len(self.particle_inputs) != 1:
                raise InputError(
                    f"the network has per-particle inputs {list(self.particle_inputs)}: give features as a "
                    "dict {input: [jagged branches]}"
                )
            features = {next(iter(self.particle_inputs)): features}
        particle: dict[str, list[str]] = {}
        for name, spec in features.items():
            name = str(name)
            if name in self.mask_inputs:
                raise InputError(
                    f"input {name!r} is the mask: it is built from the particle counts, do not give it"
                )
            if name in self.jet_inputs:
                raise InputError(
                    f"input {name!r} takes values per jet, not per particle: give it in jet_features="
                )
            if name not in self.particle_inputs:
                raise InputError(
                    f"features names {name!r}, which is not an input of the network; its inputs are {self.describe()}"
                )
            particle[name] = self._checked(
                name, _expression_list(spec, f"features[{name!r}]"), self.particle_inputs[name], "particle"
            )
        missing = [n for n in self.particle_inputs if n not in particle]
        if missing:
            raise InputError(
                f"features gives no branches for the per-particle input(s) {missing}; the inputs are {self.describe()}"
            )
        jets: dict[str, list[str]] = {}
        for name, spec in (jet_features or {}).items():
            name = str(name)
            if name in self.particle_inputs:
                raise InputError(
                    f"input {name!r} takes values per particle: give its jagged branches in features="
                )
            if name not in self.jet_inputs:
                raise InputError(
                    f"jet_features names {name!r}, which is not a per-jet input of the network; its inputs are {self.describe()}"
                )
            jets[name] = self._checked(
                name, _expression_list(spec, f"jet_features[{name!r}]"), self.jet_inputs[name], "jet"
            )
        missing = [n for n in self.jet_inputs if n not in jets]
        if missing:
            raise InputError(
                f"give jet_features={{input: [branches]}} for the per-jet input(s) {missing} ({self.describe()})"
            )
        return particle, jets

    @staticmethod
    def _checked(name: str, exprs: list[str], n: int, per: str) -> list[str]:
        if n > 0 and len(exprs) != n:
            raise InputError(
                f"input {name!r} takes {n} value(s) per {per}; {len(exprs)} branch(es) given: {exprs}"
            )
        return exprs

    def predict_jagged(
        self, offsets: np.ndarray, particles: Mapping[str, list[np.ndarray]], jets: Mapping[str, np.ndarray]
    ) -> Any:
        result = self.model.predict_jagged(
            offsets,
            dict(particles),
            jet_inputs=dict(jets) or None,
            mask=self.mask,
            particle_axis=self.particle_axis,
            n_threads=self.n_threads,
        )
        if isinstance(result, np.ndarray) and result.ndim == 2 and result.shape[1] == 1:
            return result.reshape(-1)
        return result


def as_scoring_model(
    model: Any,
    *,
    output_kind: str = "probability",
    n_threads: Optional[int] = None,
    output_names: Optional[Sequence[str]] = None,
) -> Any:
    """An object following :class:`ScoringModel` for ``model``: a :class:`hepinfer.Forest`, a
    model file path or bytes, an xgboost/lightgbm booster, a :class:`hepinfer.nn.Model` (or an
    ``.onnx`` path) with one ``(events, features)`` input, or any object that already follows
    the protocol (``input_names``/``feature_names``/``inputs`` and ``predict(dict)``)."""
    from hepinfer.forest import Forest

    if isinstance(model, (_ForestModel, _GenericModel, _NetworkModel, _JaggedNetworkModel)):
        return model
    if isinstance(model, (str, os.PathLike)) and os.fspath(model).lower().endswith(".onnx"):
        from hepinfer.nn import Model

        model = Model.load(model)
    elif isinstance(model, (str, os.PathLike, bytes, bytearray)) or type(model).__module__.split(".")[0] in (
        "xgboost",
        "lightgbm",
    ):
        model = Forest.load(model)
    if isinstance(model, Forest):
        return _ForestModel(model, output_kind, n_threads, output_names)
    if type(model).__module__ == "hepinfer.nn" and type(model).__name__ == "Model":
        if _is_row_network(model):
            return _NetworkModel(model, n_threads, output_names)
        return _JaggedNetworkModel(model, n_threads, output_names)
    return _GenericModel(model, output_names)


def split_features(text: str) -> list[str]:
    """``"x, sqrt(a**2 + b**2), nth(Jet_pt, 1)"`` -> the three expressions: split at the commas
    outside parentheses and brackets, blanks around each removed."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def _feature_expressions(input_names: Sequence[str], features: Any) -> dict[str, str]:
    """model input name -> branch name or expression."""
    names = list(input_names)
    if features is None:
        if not names:
            raise InputError(
                "the model has no feature names: give features=[branch, ...] in the model's order"
            )
        return {n: n for n in names}
    if isinstance(features, str):
        features = split_features(features)
    if isinstance(features, Mapping):
        unknown = [k for k in features if names and k not in names]
        if unknown:
            raise InputError(
                f"features names {unknown} that are not model inputs; the model's inputs are {names}"
            )
        if not names:
            raise InputError("the model has no feature names: give features as a list in the model's order")
        return {n: str(features.get(n, n)) for n in names}
    features = [str(f) for f in features]
    if names and len(features) != len(names):
        raise InputError(
            f"features has {len(features)} entries but the model has {len(names)} inputs {names}; "
            "give one branch or expression per model input, in the model's order (or a dict)"
        )
    if not names:
        return {f: f for f in features}
    return dict(zip(names, features))


def _output_columns(
    result: Any, n: int, names: Optional[list[str]]
) -> tuple[list[str], list[np.ndarray], str]:
    """Normalise a model's predict result into (names, columns, kind)."""
    if isinstance(result, Mapping):
        cols = [np.asarray(v) for v in result.values()]
        keys = [str(k) for k in result.keys()]
        kind = "dict"
    elif type(result).__module__.startswith("awkward"):
        import awkward as ak

        fields = ak.fields(result)
        if fields:
            keys, cols, kind = list(fields), [ak.to_numpy(result[f]) for f in fields], "dict"
        else:
            return _output_columns(ak.to_numpy(result), n, names)
    else:
        a = np.asarray(result)
        if a.ndim == 1:
            cols = [a]
        elif a.ndim == 2:
            cols = [a[:, j] for j in range(a.shape[1])]
        else:
            raise InputError(f"the model returned an array of shape {a.shape}; expected (n,) or (n, k)")
        keys = (
            names
            if names is not None and len(names) == len(cols)
            else (["score"] if len(cols) == 1 else [f"score_{j}" for j in range(len(cols))])
        )
        kind = "array1" if a.ndim == 1 else "array2"
    for k, c in zip(keys, cols):
        if c.shape != (n,):
            raise InputError(f"the model's output {k!r} has shape {c.shape} for {n} events")
    return keys, cols, kind


# ---------------------------------------------------------------------------------- results


@dataclass
class ScoreSummary:
    """What :func:`score` did: inputs, events, timing, output, failures.

    ``scores`` holds the scores when they were kept in memory (``output=None``), with
    ``file_index`` and ``entry`` telling where each event came from.
    """

    files: list[TreeSource]
    events: int = 0
    seconds: float = 0.0
    bytes_read: int = 0
    output: Optional[str] = None
    output_tree: Optional[str] = None
    output_names: list[str] = field(default_factory=list)
    event_ids: dict[str, str] = field(default_factory=dict)
    events_per_file: dict[int, int] = field(default_factory=dict)
    failures: list[FileFailure] = field(default_factory=list)
    scores: Any = None
    file_index: Optional[np.ndarray] = None
    entry: Optional[np.ndarray] = None
    status: str = ""

    def status_line(self) -> str:
        """How a run that got to its end ended: ``"complete"``, or ``"complete: N files skipped
        (see hepinfer_failures)"`` when ``on_error="skip"`` left files out (``", K of them
        part-way"`` when K of them had delivered events before they broke)."""
        failed = {f.source.index: f.entry for f in self.failures}
        if not failed:
            return "complete"
        n = len(failed)
        part_way = sum(1 for entry in failed.values() if entry > 0)
        text = f"complete: {n} file{'s' if n != 1 else ''} skipped"
        if part_way:
            text += f", {part_way} of them part-way"
        return text + " (see hepinfer_failures)"

    @property
    def n_files_done(self) -> int:
        failed = {f.source.index for f in self.failures}
        return sum(1 for s in self.files if s.index not in failed)

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def report(self) -> str:
        """A few lines for a terminal."""
        lines = [
            f"files     {self.n_files_done} scored, {len(self.failures)} failed, {len(self.files)} given",
            f"events    {self.events:,}",
            f"time      {self.seconds:.2f} s ({self.events_per_second:,.0f} events/s, "
            f"{_size(self.bytes_read / max(self.seconds, 1e-9))}/s read, {_size(self.bytes_read)} in all)",
        ]
        if self.output:
            ids = ", ".join(["file_index", "entry", *self.event_ids])
            lines.append(
                f"output    {self.output}:{self.output_tree} ({ids}; {', '.join(self.output_names)})"
            )
            if self.status:
                lines.append(f"status    {self.status}")
        for f in self.failures:
            lines.append(f"FAILED    [{f.source.index}] {f.source.path} after {f.entry} entries: {f.message}")
        return "\n".join(lines)


def _size(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


class OutputError(Error, OSError):
    """The output file cannot be written where it was asked for (it exists and ``overwrite``
    was not given, it is one of the inputs, it is a directory), or writing it failed (a full
    disk, a file size limit): then nothing was written at the output path."""


def _temporary_path(target: str) -> str:
    """Where the output is written until it is complete: beside the target (the same file
    system, so the final rename is atomic), named so that a user who finds one left by a run
    killed with SIGKILL knows what it is."""
    return f"{target}.incomplete-{os.getpid()}"


def _is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def _check_output(output: Any, sources: Sequence[TreeSource], overwrite: bool) -> str:
    """The output path, after refusing (before anything is opened for writing) a target that
    is one of the inputs (the same resolved path, or the same inode: symbolic or hard links),
    a directory, or an existing file when ``overwrite`` is false."""
    target = os.fspath(output)
    if os.path.isdir(target):
        raise OutputError(f"the output {target} is a directory: give a file name")
    if os.path.lexists(target) or os.path.exists(target):
        real = os.path.realpath(target)
        for s in sources:
            path = s.path[len("file://") :] if s.path.startswith("file://") else s.path
            if not _is_local(s.path):
                continue
            same = os.path.realpath(path) == real
            if not same:
                with contextlib.suppress(OSError):
                    same = os.path.samefile(path, target)
            if same:
                raise OutputError(
                    f"the output {target} is also an input (file [{s.index}] {s.path}): scoring it would "
                    "destroy it; nothing was read or written, choose another output path"
                )
        if not overwrite:
            raise OutputError(
                f"the output {target} exists: pass overwrite=True (hepinfer score --force) to replace it, "
                "or choose another path"
            )
    return target


def _fsync(path: str, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    try:
        os.fsync(fd)
    except OSError as err:
        if not directory or err.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise  # some file systems cannot fsync a directory: the rename is still atomic
    finally:
        os.close(fd)


class _RootWriter:
    """Scores written to a new ROOT file tree, atomically: everything goes to a temporary file
    beside ``target`` (see :func:`_temporary_path`), which :meth:`close` finishes (pending
    scores, the inputs and failures, and last of all ``hepinfer_status``), fsyncs and renames
    into place; :meth:`discard` removes it. A run killed at any moment thus leaves either no
    file at ``target`` or a complete one. Chunks are gathered up to ``buffer_events`` events
    before each write (one basket per branch), so small chunks do not make tiny baskets and
    memory stays bounded by the buffer."""

    def __init__(self, target: str, tree_name: str, overwrite: bool, buffer_events: int = 100_000) -> None:
        import uproot

        self.target = target
        self.temp = _temporary_path(target)
        self.tree_name = tree_name
        self.overwrite = overwrite
        self.buffer_events = buffer_events
        self.finishing = False
        try:
            self.file: Any = uproot.recreate(self.temp)
        except Exception as err:
            with contextlib.suppress(OSError):
                os.unlink(self.temp)
            raise OutputError(f"cannot create the output file {target} (as {self.temp}): {err}") from err
        self.tree: Any = None
        self.pending: list[dict[str, np.ndarray]] = []
        self.n_pending = 0

    def write(self, columns: Mapping[str, np.ndarray]) -> None:
        n = len(next(iter(columns.values()))) if columns else 0
        if n == 0:  # nothing to write (and an empty chunk's placeholder dtypes must not make the branches)
            return
        self.pending.append(dict(columns))
        self.n_pending += n
        if self.n_pending >= self.buffer_events:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        pending, self.pending, self.n_pending = self.pending, [], 0
        first = pending[0]
        if self.tree is None:
            self.tree = self.file.mktree(self.tree_name, {k: v.dtype for k, v in first.items()})
        joined = first if len(pending) == 1 else {k: np.concatenate([c[k] for c in pending]) for k in first}
        self.tree.extend(joined)

    def close(self, summary: ScoreSummary, schema: Mapping[str, Any], status: str) -> None:
        """Write what is pending, the ``hepinfer_inputs`` string, the ``hepinfer_failures`` tree
        (when files failed) and, last, the ``hepinfer_status`` string; close, fsync and rename
        the file into place. If any of it fails the temporary file is removed and
        :class:`OutputError` says that nothing was written."""
        self.finishing = True
        try:
            try:
                self.flush()
                if self.tree is None and schema:
                    self.file.mktree(self.tree_name, dict(schema))
                self.file["hepinfer_inputs"] = "\n".join(
                    f"{s.index}\t{s.path}\t{s.tree or ''}\t{summary.events_per_file.get(s.index, 0)}"
                    for s in summary.files
                )
                if summary.failures:
                    failures = _failures_tree(summary.failures)
                    types = {k: "string" if isinstance(v, list) else v.dtype for k, v in failures.items()}
                    self.file.mktree("hepinfer_failures", types).extend(failures)
                self.file["hepinfer_status"] = status
            finally:
                self.file.close()
            _fsync(self.temp)
            self._publish()
        except OutputError:
            raise
        except BaseException as err:
            self.discard()
            if not isinstance(err, Exception):
                raise  # KeyboardInterrupt, SystemExit: not an output problem
            raise OutputError(
                f"could not finish writing the output {self.target}: {_one_line(err)}; nothing was written "
                "there (the temporary file was removed)"
            ) from err

    def _publish(self) -> None:
        """Rename the finished temporary file to the target (the target's directory fsynced after)."""
        if self.overwrite:
            os.replace(self.temp, self.target)
        else:  # a hard link does not replace a file that appeared meanwhile; fall back where links are not allowed
            try:
                os.link(self.temp, self.target)
            except FileExistsError:
                raise OutputError(
                    f"the output {self.target} was created by something else while scoring: it was left as it "
                    f"is, and the scores are in {self.temp}"
                ) from None
            except OSError:
                if os.path.lexists(self.target):
                    raise
                os.replace(self.temp, self.target)
            else:
                os.unlink(self.temp)
        _fsync(os.path.dirname(os.path.abspath(self.target)), directory=True)

    def discard(self) -> None:
        """Close and remove the temporary file (a run that was interrupted or could not finish)."""
        with contextlib.suppress(Exception):
            self.file.close()
        with contextlib.suppress(OSError):
            os.unlink(self.temp)


def _failures_tree(failures: Sequence[FileFailure]) -> dict[str, Any]:
    """The ``hepinfer_failures`` tree: one entry per failed file, its position among the inputs,
    path, tree, the entry it failed at (events before it were scored) and the error."""
    return {
        "file_index": np.array([f.source.index for f in failures], dtype=np.int32),
        "path": [f.source.path for f in failures],
        "tree": [f.source.tree or "" for f in failures],
        "entry": np.array([f.entry for f in failures], dtype=np.int64),
        "message": [f.message for f in failures],
    }


# Pieces read ahead of the one being evaluated (0: read and evaluate in turn, in one thread).
# The results do not depend on it: pieces are delivered in order, each evaluated alone.
_READ_AHEAD = 2
# A chunk of at least 2 * _MIN_READ_EVENTS events is read in pieces of chunk / _READ_PIECES
# events (at least _MIN_READ_EVENTS), so that evaluation starts after the first piece and the last
# piece's evaluation is all that is left after the read; fewer events per read do not cost more
# (uproot reuses the baskets a piece ends in; benchmarks/io.py). uproot decompresses whole baskets,
# so pieces smaller than a basket arrive together: the basket is the grain of the overlap.
_READ_PIECES = 8
_MIN_READ_EVENTS = 50_000


def _read_plan(chunk_events: int) -> tuple[int, Optional[int]]:
    """(events per dask partition, events per read or None to read ``chunk`` as given) for a
    tree whose ``chunk`` holds ``chunk_events`` events. Partitions are a whole number of reads,
    so the local path (reads from entry 0) and the dask path (reads from each partition's
    start) read the same entry ranges: the same failure entries, the same output."""
    if chunk_events < 2 * _MIN_READ_EVENTS:
        return chunk_events, None
    step = max(_MIN_READ_EVENTS, chunk_events // _READ_PIECES)
    return step * (chunk_events // step), step


def _prefetch(chunks: Iterator[Any], depth: Optional[int] = None) -> Iterator[Any]:
    """The items of ``chunks`` in order, read in a background thread up to ``depth`` items
    (default ``_READ_AHEAD``) ahead of the caller, who works on the current one meanwhile. An
    exception raised by ``chunks`` reaches the caller, in order, after the items before it;
    when the caller stops early (an exception of its own, or ``close()``), the reader is stopped
    and joined before this returns. ``depth`` 0: read in the caller's thread, in turn."""
    depth = _READ_AHEAD if depth is None else depth
    if depth < 1:
        yield from chunks
        return
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def work() -> None:
        item: tuple[Any, Optional[BaseException]] = (done, None)
        try:
            for c in chunks:
                while not stop.is_set():
                    try:
                        q.put((c, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    break
        except BaseException as err:  # forwarded to the consumer
            item = (None, err)
        finally:
            close = getattr(chunks, "close", None)
            try:
                if close is not None:
                    close()
            except BaseException as err:  # the consumer must not wait for an item that never comes
                if item[1] is None:
                    item = (None, err)
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                break
            except queue.Full:
                continue

    thread = threading.Thread(target=work, name="hepinfer-reader", daemon=True)
    thread.start()
    try:
        while True:
            c, err = q.get()
            if err is not None:
                raise err
            if c is done:
                return
            yield c
    finally:
        stop.set()
        if thread is not threading.current_thread():  # not when the GC finalises it in the reader
            thread.join()


# ---------------------------------------------------------------------------------- jagged reading


@dataclass
class _JaggedChunk(Chunk):
    """A chunk for a set/graph network: the particle ``offsets`` (``n_events + 1``), the
    per-particle content of each input (one array per branch) and the per-jet inputs."""

    offsets: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))
    particles: dict[str, list[np.ndarray]] = field(default_factory=dict)
    jets: dict[str, np.ndarray] = field(default_factory=dict)


def _check_jagged_branches(
    source: TreeSource,
    tree: Any,
    particle: Mapping[str, list[str]],
    jets: Mapping[str, list[str]],
    aliases: Optional[Mapping[str, str]],
    cut: Optional[str] = None,
) -> None:
    """Raise :class:`ReadError` if a plain branch of a per-particle input is missing or not
    jagged, or one of a per-jet input is missing or not one number per event, or if an
    expression or the cut reads a branch the tree does not have."""
    import uproot

    names = set(_branch_names(tree))
    is_ttree = isinstance(tree, uproot.behaviors.TTree.TTree)
    for name, exprs in particle.items():
        for e in exprs:
            if not _IDENTIFIER.match(e) or e in (aliases or {}):
                check_expression_names(source, tree, e, aliases, name, names)
                continue
            if e not in names:
                raise _missing_branch_error(source, tree, e, name)
            if not is_ttree:
                continue
            interp = tree[e].interpretation
            if not isinstance(interp, uproot.interpretation.jagged.AsJagged):
                raise _not_jagged_error(
                    source, tree, e, name, f"{tree[e].typename}, read as {type(interp).__name__}"
                )
    check_branches(
        source, tree, {f"{n}[{j}]": e for n, es in jets.items() for j, e in enumerate(es)}, aliases, cut=cut
    )


def _not_jagged_error(source: TreeSource, tree: Any, expr: str, name: str, what: str) -> ReadError:
    return ReadError(
        f"{source.path}: branch {expr!r} of tree {_tree_name(tree)!r} is not jagged ({what}); the per-particle "
        f"input {name!r} needs a variable number of values per event (one per particle, e.g. float[]); "
        "per-event values of the jet go in jet_features=",
        file=source.path,
        tree=_tree_name(tree),
        branch=expr,
    )


def _jagged_buffers(
    value: Any, source: TreeSource, tree: Any, name: str, expr: str
) -> tuple[np.ndarray, np.ndarray]:
    """(offsets starting at 0, per-particle numbers) of one jagged column, without copying
    what uproot read where the layout allows it."""
    import awkward as ak

    layout = ak.to_layout(value)
    while isinstance(layout, (ak.contents.IndexedArray, ak.contents.UnmaskedArray)):
        layout = layout.project() if isinstance(layout, ak.contents.IndexedArray) else layout.content
    if isinstance(layout, ak.contents.ListArray):
        layout = layout.to_ListOffsetArray64(False)
    if not isinstance(layout, ak.contents.ListOffsetArray):
        raise _not_jagged_error(source, tree, expr, name, f"it gives {ak.type(value)}")
    offsets = np.asarray(layout.offsets.data).astype(np.int64, copy=False)
    content = layout.content[int(offsets[0]) : int(offsets[-1])]
    offsets = offsets - offsets[0] if len(offsets) and offsets[0] != 0 else offsets
    while isinstance(content, (ak.contents.IndexedArray, ak.contents.UnmaskedArray)):
        content = content.project() if isinstance(content, ak.contents.IndexedArray) else content.content
    data = np.asarray(content.data) if isinstance(content, ak.contents.NumpyArray) else None
    if data is None or data.ndim != 1 or data.dtype.kind not in "fiub":
        raise ReadError(
            f"{source.path}: {expr!r} (per-particle input {name!r}) gives {ak.type(value)}; a per-particle "
            "branch holds one number per particle (no nested lists, records or missing values)",
            file=source.path,
            tree=_tree_name(tree),
            branch=expr,
        )
    if data.dtype.kind != "f" or data.dtype.itemsize < 4:
        data = data.astype(np.float32)
    return offsets, data


def _count_mismatch(
    source: TreeSource,
    tree: Any,
    a: tuple[str, str, np.ndarray],
    b: tuple[str, str, np.ndarray],
    entries: np.ndarray,
) -> ReadError:
    (na, ea, oa), (nb, eb, ob) = a, b
    ca, cb = np.diff(oa), np.diff(ob)
    i = int(np.flatnonzero(ca != cb)[0])
    return ReadError(
        f"{source.path}: branches {ea!r} (input {na!r}) and {eb!r} (input {nb!r}) of tree {_tree_name(tree)!r} "
        f"hold different numbers of particles in entry {int(entries[i])} ({int(ca[i])} and {int(cb[i])}); "
        "every per-particle branch must have one value per particle of the same jets",
        file=source.path,
        tree=_tree_name(tree),
        branch=eb,
    )


def _iterate_jagged(
    source: TreeSource,
    particle: Mapping[str, list[str]],
    jets: Mapping[str, list[str]],
    aliases: Optional[Mapping[str, str]],
    cut: Optional[str],
    step_size: Union[int, str],
    open_options: Mapping[str, Any],
    ids: Mapping[str, str],
    entry_start: Optional[int] = None,
    entry_stop: Optional[int] = None,
) -> Iterator[_JaggedChunk]:
    """Chunks of one tree for a set/graph network (see :class:`_JaggedChunk`)."""
    tree = open_tree(source, **open_options)
    try:
        yield from _iterate_jagged_open(
            source, tree, particle, jets, aliases, cut, step_size, ids, entry_start, entry_stop
        )
    except ReadError:
        raise
    except Exception as err:
        raise ReadError(
            f"{source.path}: reading tree {_tree_name(tree)!r} failed (truncated or corrupt file, or a bad "
            f"expression?): {_one_line(err)}",
            file=source.path,
            tree=_tree_name(tree),
        ) from err
    finally:
        tree.file.close()


def _iterate_jagged_open(
    source: TreeSource,
    tree: Any,
    particle: Mapping[str, list[str]],
    jets: Mapping[str, list[str]],
    aliases: Optional[Mapping[str, str]],
    cut: Optional[str],
    step_size: Union[int, str],
    ids: Mapping[str, str],
    entry_start: Optional[int] = None,
    entry_stop: Optional[int] = None,
) -> Iterator[_JaggedChunk]:
    _check_jagged_branches(source, tree, particle, jets, aliases, cut)
    unique = list(
        dict.fromkeys(
            [
                *(e for es in particle.values() for e in es),
                *(e for es in jets.values() for e in es),
                *ids.values(),
            ]
            + ([cut] if cut is not None else [])
        )
    )
    iterator = read_chunks(tree, unique, aliases, step_size, entry_start, entry_stop)
    next_entry = entry_start or 0
    while True:
        try:
            arrays, report = next(iterator)
        except StopIteration:
            break
        except ReadError:
            raise
        except Exception as err:
            broken = _broken_branch_error(source, tree, unique, aliases, next_entry, step_size)
            if broken is None:
                broken = _failing_expression_error(source, tree, unique, aliases, next_entry, step_size, err)
            if broken is not None:
                raise broken from err
            raise
        start, stop = int(report.tree_entry_start), int(report.tree_entry_stop)
        next_entry = stop
        fields = set(arrays) if isinstance(arrays, Mapping) else set(arrays.fields)
        lost = [e for e in unique if e not in fields]
        if lost:
            raise _nothing_returned_error(source, tree, lost)
        entries = np.arange(start, stop, dtype=np.int64)
        selected: Any = None
        if cut is not None:
            selected = _as_column(arrays[cut], source, tree, "cut", cut)
            if selected.dtype != np.bool_:
                raise ReadError(
                    f"{source.path}: the cut {cut!r} gives {selected.dtype}, not one boolean per event",
                    file=source.path,
                )
            entries = entries[selected]

        def column(e: str, arrays: Any = arrays, selected: Any = selected) -> Any:
            return arrays[e] if selected is None else arrays[e][selected]

        offsets: Optional[tuple[str, str, np.ndarray]] = None
        content: dict[str, list[np.ndarray]] = {}
        for name, exprs in particle.items():
            content[name] = []
            for e in exprs:
                off, data = _jagged_buffers(column(e), source, tree, name, e)
                if offsets is None:
                    offsets = (name, e, off)
                elif off is not offsets[2] and not np.array_equal(off, offsets[2]):
                    raise _count_mismatch(source, tree, offsets, (name, e, off), entries)
                content[name].append(data)
        per_jet = {
            name: np.column_stack(
                [
                    _as_column(column(e), source, tree, f"{name}[{j}]", e).astype(np.float32)
                    for j, e in enumerate(exprs)
                ]
            )
            if len(entries)
            else np.zeros((0, len(exprs)), np.float32)
            for name, exprs in jets.items()
        }
        out = {f"\x00{k}": _as_column(column(v), source, tree, k, v) for k, v in ids.items()}
        assert offsets is not None
        yield _JaggedChunk(
            source,
            start,
            stop,
            out,
            entries,
            _bytes_read(tree),
            offsets=offsets[2],
            particles=content,
            jets=per_jet,
        )


# ---------------------------------------------------------------------------------- score


def score(
    model: Any,
    files: FilesLike,
    *,
    tree: Optional[str] = None,
    features: Union[None, str, Sequence[str], Mapping[str, Any]] = None,
    jet_features: Optional[Mapping[str, Union[str, Sequence[str]]]] = None,
    aliases: Optional[Mapping[str, str]] = None,
    cut: Optional[str] = None,
    chunk: Union[int, str] = "100 MB",
    output: Optional[Union[str, os.PathLike[str]]] = None,
    output_tree: str = "scores",
    output_kind: str = "probability",
    output_names: Optional[Sequence[str]] = None,
    n_threads: Optional[int] = None,
    progress: bool = False,
    on_error: str = "raise",
    event_ids: bool = True,
    return_summary: bool = False,
    dask: bool = False,
    open_options: Optional[Mapping[str, Any]] = None,
    overwrite: bool = False,
) -> Any:
    """Run ``model`` over every event of ``files``.

    Parameters
    ----------
    model
        A :class:`hepinfer.Forest`, a model file (path or bytes), an xgboost/lightgbm booster,
        a :class:`hepinfer.nn.Model` or ``.onnx`` path with one ``(events, k)`` input (then
        ``features`` lists its k columns) or with per-particle inputs (a set or graph network,
        read from jagged branches: see ``features``), or any object following
        :class:`ScoringModel`.
    files, tree
        ROOT files as :func:`hepinfer.io.expand_files` takes them (paths, glob patterns,
        ``"file.root:Events"`` specs, lists, ``{path: tree}``); ``tree`` names the TTree or
        RNTuple where the spec does not (``None``: each file's only tree).
    features
        Where each model input comes from. ``None``: branches named like the model's inputs.
        A list (or comma-separated string): one branch name or uproot expression per model
        input, in the model's order. A dict: model input name -> branch name or expression
        (inputs not in it are read from the branch of the same name).

        For a set or graph network (a :class:`hepinfer.nn.Model` with per-particle inputs:
        PFN, EFN, ParticleNet): ``{per-particle input: [jagged branches]}``, one branch (or
        expression) per value per particle, in the order the network was trained on, e.g.
        ``{"points": ["part_deta", "part_dphi"], "features": ["part_logpt", "part_deta",
        "part_dphi", "part_loge"]}`` (a plain list for a network with one per-particle input).
        Each event is one jet; its particles are evaluated at their true number with
        :meth:`hepinfer.nn.Model.predict_jagged` (no padding; events without particles are
        scored too). All these branches must hold the same number of values in each event.
        The mask input is built from those counts and is not given.
    jet_features
        For set/graph networks with per-jet inputs: ``{per-jet input: [branches]}``, one flat
        branch (or expression, e.g. ``"log(jet_pt)"``) per value per jet.
    aliases, cut
        uproot aliases usable in the features (``{"pt_lead": "first(Jet_pt)"}``), and an event
        selection expression (events failing it are not scored). An expression that is not valid
        syntax or calls an unknown function raises :class:`hepinfer.InputError` before any file
        is read; one that reads a branch a file lacks raises :class:`hepinfer.io.ReadError`
        naming the file, the branch and the expression.
    chunk
        Events per chunk (int) or a size such as ``"50 MB"``: bounds the memory used. A chunk
        of 100 000 events or more is read in 8 pieces (of at least 50 000 events), each read
        in a background thread while the model evaluates the one before (at most 2 pieces
        read ahead), so reading and evaluation overlap; the scores do not depend on it.
    output
        ``None``: return the scores. A path: write a ROOT file with tree ``output_tree`` holding
        ``file_index`` (position of the input file), ``entry`` (entry number in its tree), the
        event identifiers ``run``/``luminosityBlock``/``event`` when the inputs have them
        (NanoAOD spellings and common others, see ``hepinfer.io.EVENT_ID_BRANCHES``) and one
        branch per model output (``score``, or ``score_0..score_k``, or ``output_names``), plus a
        ``hepinfer_inputs`` string listing the input files and events scored from each, a
        ``hepinfer_failures`` tree when files failed (``file_index``, ``path``, ``tree``,
        ``entry``, ``message``), and last the ``hepinfer_status`` string: ``"complete"``,
        ``"complete: N files skipped (see hepinfer_failures)"`` (``on_error="skip"``), or
        ``"incomplete: <error>"`` when an error stopped the run part-way (the file then holds
        the scores computed before it).

        The file is written atomically: to ``<output>.incomplete-<pid>`` beside it, then
        fsynced and renamed to ``output`` once the status is written. So ``output`` appears only
        complete; a run interrupted by Ctrl-C or SIGTERM removes its temporary file and writes
        nothing (the exception carries the summary as ``hepinfer_summary``), and a run killed with
        SIGKILL leaves no file at ``output`` (only the temporary one). A failure to finish the file
        (a full disk) raises :class:`OutputError` and writes nothing. An ``output`` that is one
        of the inputs (same path, symbolic or hard link) is refused before anything is read,
        and an existing one too unless ``overwrite``.
    output_kind, n_threads
        For forests: ``"probability"`` or ``"margin"``, and threads (``None``: all cores).
    progress
        A progress bar on stderr (events/s, ETA, MB read).
    on_error
        ``"raise"``: the first unreadable file (not ROOT, truncated, missing tree or branch, wrong
        branch type) stops the run with a :class:`hepinfer.io.ReadError` naming it. Files are
        checked (tree, branches, types) before any event is scored: a bad file found then stops
        the run before any output is written. A file that breaks part-way (a corrupt basket)
        stops it with the scores computed so far kept in ``output`` (status ``incomplete``; the
        message says so, the error's ``summary`` attribute has the details). ``"skip"``: the
        file is left out, recorded in the summary's ``failures`` and, with ``output=``, in the
        output's ``hepinfer_failures`` tree and status; scoring goes on with the next file; a
        file that breaks part-way keeps the scores of the entries before ``FileFailure.entry``.
    return_summary
        Return a :class:`ScoreSummary` (with ``scores``, ``file_index``, ``entry``) instead of the
        bare scores when ``output`` is ``None``.
    dask
        Score on the current dask scheduler (e.g. a ``distributed.Client``) with
        :func:`score_dask`: every argument works the same and gives the same result (scores,
        summary, output file); partitions of ``chunk`` events are read and scored on the
        workers, ``n_threads`` (default 1) is per task.
    overwrite
        Replace an existing ``output`` file (otherwise :class:`OutputError`, as ``hadd``
        refuses an existing target without ``-f``).

    Returns
    -------
    With ``output=None``: a numpy array, ``(n,)`` for one output, ``(n, k)`` for k outputs (as
    ``Forest.predict``), or a dict of arrays for models that return dicts. With ``output``: the
    :class:`ScoreSummary`.
    """
    if on_error not in ("raise", "skip"):
        raise InputError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if dask:
        return score_dask(
            model,
            files,
            tree=tree,
            features=features,
            jet_features=jet_features,
            aliases=aliases,
            cut=cut,
            chunk=chunk,
            output=output,
            output_tree=output_tree,
            output_kind=output_kind,
            output_names=output_names,
            n_threads=1 if n_threads is None else n_threads,
            progress=progress,
            on_error=on_error,
            event_ids=event_ids,
            return_summary=return_summary,
            open_options=open_options,
            overwrite=overwrite,
        )
    scorer = as_scoring_model(model, output_kind=output_kind, n_threads=n_threads, output_names=output_names)
    plan = _make_plan(scorer, features, jet_features, aliases, cut, chunk, open_options)
    summary, good, total, sizes = _check_files(
        plan, files, tree, on_error, event_ids, output, output_tree, overwrite
    )
    if output is None:
        plan.event_ids = {}  # only the output file holds them: not read (summary.event_ids names them)
    collector = _Collector(
        summary, scorer, summary.output, output_tree, on_error, _progress_bar(total, progress), overwrite
    )

    def items() -> Iterator[Union[Chunk, _Failure]]:
        for source in good:
            entry = 0
            try:
                for c in plan.read(source, step=_read_plan(sizes[source.index][1])[1]):
                    entry = c.entry_stop
                    yield c
            except ReadError as err:
                yield _Failure(source, entry, err)

    def blocks() -> Iterator[Union[_Block, _Failure]]:
        reader = _prefetch(items())
        try:
            for item in reader:
                if isinstance(item, _Failure):
                    yield item
                else:
                    yield _evaluate(scorer, plan, item, (item.source.index, 0))
        finally:
            reader.close()  # stops and joins the reader thread now, not when the GC gets to it

    with _signals_raise():
        return collector.run(blocks(), return_summary)


# ---------------------------------------------------------------------------------- one plan, two runners


@dataclass
class _Plan:
    """What to read from each tree and how (picklable: it travels to dask workers)."""

    jagged: bool
    exprs: dict[str, str]  # flat models: model input -> branch or expression
    particle: dict[str, list[str]]  # set/graph networks: per-particle input -> jagged branches
    jets: dict[str, list[str]]  # ... and per-jet input -> flat branches
    aliases: Optional[dict[str, str]]
    cut: Optional[str]
    chunk: Union[int, str]
    open_options: dict[str, Any]
    event_ids: dict[str, str] = field(default_factory=dict)

    def expressions(self) -> list[str]:
        """Everything read from the tree (features, event ids, cut) and the aliases they use."""
        every = [*self.exprs.values()]
        every += [e for es in (*self.particle.values(), *self.jets.values()) for e in es]
        every += [*self.event_ids.values(), *([self.cut] if self.cut is not None else [])]
        return [*every, *(self.aliases or {}).values()]

    def check(self, source: TreeSource, tree: Any) -> None:
        if self.jagged:
            _check_jagged_branches(source, tree, self.particle, self.jets, self.aliases, self.cut)
        else:
            check_branches(source, tree, self.exprs, self.aliases, cut=self.cut)

    def read(
        self,
        source: TreeSource,
        entry_start: Optional[int] = None,
        entry_stop: Optional[int] = None,
        step: Optional[int] = None,
    ) -> Iterator[Chunk]:
        """Chunks of ``source`` (entries ``entry_start..entry_stop``) of ``step`` events, or of
        ``chunk`` as given when ``step`` is None."""
        how = (self.aliases, self.cut, step or self.chunk, self.open_options, self.event_ids)
        if self.jagged:
            return _iterate_jagged(source, self.particle, self.jets, *how, entry_start, entry_stop)
        return _iterate_one(source, self.exprs, *how, entry_start, entry_stop)


def _make_plan(
    scorer: Any,
    features: Any,
    jet_features: Optional[Mapping[str, Any]],
    aliases: Optional[Mapping[str, str]],
    cut: Optional[str],
    chunk: Union[int, str],
    open_options: Optional[Mapping[str, Any]],
) -> _Plan:
    """Which branches or expressions feed which model input, checked before any file is opened."""
    particle: dict[str, list[str]] = {}
    jets: dict[str, list[str]] = {}
    exprs: dict[str, str] = {}
    jagged = isinstance(scorer, _JaggedNetworkModel)
    if jagged:
        particle, jets = scorer.branch_map(features, jet_features)
        named = {f"{n}[{j}]": e for m in (particle, jets) for n, es in m.items() for j, e in enumerate(es)}
    else:
        if jet_features is not None:
            raise InputError(
                "jet_features= is for set/graph networks with per-particle inputs; give this model's inputs in features="
            )
        if features is None and getattr(scorer, "needs_features", False):
            raise InputError(
                f"the network's input {scorer.input!r} takes {len(scorer.input_names)} numbers per event and "
                f"has no feature names: give features=[{len(scorer.input_names)} branches or expressions] in the "
                "order it was trained on"
            )
        exprs = named = _feature_expressions(scorer.input_names, features)
    if aliases is not None and not isinstance(aliases, Mapping):
        raise InputError(f"aliases must be a dict {{name: expression}}, not {type(aliases).__name__}")
    if cut is not None and not isinstance(cut, str):
        raise InputError(f"cut must be an expression (a string), not {type(cut).__name__}")
    validate_expressions(named, aliases, cut)
    if isinstance(chunk, bool) or not isinstance(chunk, (int, str)) or (isinstance(chunk, int) and chunk < 1):
        raise InputError(f"chunk must be a number of events (>= 1) or a size such as '50 MB', not {chunk!r}")
    return _Plan(
        jagged,
        exprs,
        particle,
        jets,
        dict(aliases) if aliases else None,
        cut,
        chunk,
        dict(open_options or {}),
    )


def _check_files(
    plan: _Plan,
    files: FilesLike,
    tree: Optional[str],
    on_error: str,
    event_ids: bool,
    output: Any,
    output_tree: str,
    overwrite: bool = False,
) -> tuple[ScoreSummary, list[TreeSource], int, dict[int, tuple[int, int]]]:
    """Refuse an output path that must not be written (see :func:`_check_output`), then open and
    check every file before scoring anything (a bad file among 500 is found in seconds):
    (summary, good files, their entries in all, {file index: (entries, entries in one chunk)}).
    Sets ``plan.event_ids`` from the first good file."""
    sources = expand_files(files, tree)
    if output is not None:
        output = _check_output(output, sources, overwrite)
    summary = ScoreSummary(files=sources, output=output, output_tree=output_tree)
    good: list[TreeSource] = []
    total = 0
    sizes: dict[int, tuple[int, int]] = {}
    ids: Optional[dict[str, str]] = None
    for source in sources:
        try:
            t = open_tree(source, **plan.open_options)
            try:
                plan.check(source, t)
                if ids is None:
                    ids = find_event_ids(t) if event_ids else {}
                    plan.event_ids = ids
                n = int(t.num_entries)
                sizes[source.index] = (n, _chunk_stop(t, plan.expressions(), 0, plan.chunk) if n else 1)
                total += n
            finally:
                t.file.close()
            good.append(source)
        except ReadError as err:
            if on_error == "raise":
                if output is None:
                    raise
                raise ReadError(
                    f"{err}\nno output was written to {output}: every file is checked before anything is "
                    "scored (use on_error='skip' to score the others)",
                    file=err.file, tree=err.tree, branch=err.branch,
                ) from err
            summary.failures.append(FileFailure(source, 0, err))
    summary.event_ids = ids or {}
    plan.event_ids = summary.event_ids
    return summary, good, total, sizes


@dataclass
class _Block:
    """The scores of one chunk: where its events came from and the model's outputs."""

    file_index: int
    reader: tuple  # the reader that read it: bytes_read counts from that reader's start
    entry_start: int
    entry_stop: int
    entries: np.ndarray
    ids: dict[str, np.ndarray]
    keys: list[str]
    cols: list[np.ndarray]
    kind: str
    bytes_read: int


@dataclass
class _Failure:
    """A file that failed after ``entry`` entries (events before it were delivered)."""

    source: TreeSource
    entry: int
    error: ReadError

    def __reduce__(self) -> tuple:  # sent back from dask workers without traceback or cause
        e = self.error
        return (_failure, (self.source, self.entry, str(e), e.file, e.tree, e.branch))


def _failure(source: TreeSource, entry: int, message: str, file: Any, tree: Any, branch: Any) -> _Failure:
    return _Failure(source, entry, ReadError(message, file=file, tree=tree, branch=branch))


def _evaluate(scorer: Any, plan: _Plan, c: Chunk, reader: tuple) -> _Block:
    """Run the model on one chunk."""
    n = c.n_events
    keys: list[str] = []
    cols: list[np.ndarray] = []
    kind = ""
    if n:
        if isinstance(c, _JaggedChunk):
            result = scorer.predict_jagged(c.offsets, c.particles, c.jets)
        else:
            result = scorer.predict({name: c.arrays[name] for name in plan.exprs})
        keys, cols, kind = _output_columns(result, n, scorer.output_names)
    ids = {k: c.arrays["\x00" + k] for k in plan.event_ids}
    return _Block(
        c.source.index, reader, c.entry_start, c.entry_stop, c.entries, ids, keys, cols, kind, c.bytes_read
    )


class _Collector:
    """Takes the blocks of scores in file and entry order, from either runner, and keeps or
    writes them; the same blocks give the same result and the same output file."""

    def __init__(
        self,
        summary: ScoreSummary,
        scorer: Any,
        output: Any,
        output_tree: str,
        on_error: str,
        bar: Any,
        overwrite: bool = False,
    ) -> None:
        self.summary = summary
        self.on_error = on_error
        self.bar = bar
        self.output = None if output is None else (os.fspath(output), output_tree, overwrite)
        self.writer: Optional[_RootWriter] = None  # made by run(), where an interruption is handled
        self.names: Optional[list[str]] = list(scorer.output_names) if scorer.output_names else None
        self.kept: list[list[np.ndarray]] = []
        self.kind = "array1"
        self.index: list[np.ndarray] = []
        self.entry: list[np.ndarray] = []
        self.bytes_done: dict[tuple, int] = {}
        self.failed: set[int] = set()
        self.start = time.perf_counter()

    def add(self, block: _Block) -> None:
        if block.file_index in self.failed:  # after its failure, as if the file had stopped there
            return
        s = self.summary
        n = len(block.entries)
        s.events += n
        s.events_per_file[block.file_index] = s.events_per_file.get(block.file_index, 0) + n
        self.bytes_done[block.reader] = block.bytes_read
        s.bytes_read = sum(self.bytes_done.values())
        if n:
            self.names = block.keys
            file_index = np.full(n, block.file_index, dtype=np.int32)
            if self.writer is not None:
                columns: dict[str, np.ndarray] = {"file_index": file_index, "entry": block.entries}
                columns.update(block.ids)
                for k, col in zip(block.keys, block.cols):
                    columns[k] = np.ascontiguousarray(col)
                self.writer.write(columns)
            else:
                self.kept.append(block.cols)
                self.kind = block.kind
                self.index.append(file_index)
                self.entry.append(block.entries)
        # entries read, not events selected: the bar's total counts entries (before any cut)
        self.bar.update(block.entry_stop - block.entry_start)
        self.bar.set_postfix_str(f"{_size(s.bytes_read)} read", refresh=False)

    def fail(self, failure: _Failure) -> None:
        if self.on_error == "raise":
            # recorded first, so the partial output file says which file stopped the run
            self.summary.failures.append(FileFailure(failure.source, failure.entry, failure.error))
            raise failure.error
        if failure.source.index not in self.failed:
            self.failed.add(failure.source.index)
            self.summary.failures.append(FileFailure(failure.source, failure.entry, failure.error))

    def run(self, blocks: Iterator[Union[_Block, _Failure]], return_summary: bool) -> Any:
        """Consume ``blocks`` and return what :func:`score` returns. ``blocks`` is closed
        before this returns or raises (a reader thread or dask futures behind it are stopped).

        With an output file: a run that ends is written with its status (``complete...``, or
        ``incomplete: <error>`` for an error that stopped it, the scores so far kept); a run
        interrupted (KeyboardInterrupt, SIGTERM through :func:`_signals_raise`) writes nothing,
        its temporary file removed. The exception carries the summary as ``hepinfer_summary``."""
        summary = self.summary
        try:
            try:
                if self.output is not None:
                    self.writer = _RootWriter(*self.output)
                for b in blocks:
                    if isinstance(b, _Failure):
                        self.fail(b)
                    else:
                        self.add(b)
            finally:
                close = getattr(blocks, "close", None)
                if close is not None:
                    close()
        except BaseException as err:
            summary.seconds = time.perf_counter() - self.start
            self.bar.close()
            err.hepinfer_summary = summary  # type: ignore[attr-defined]
            if self.writer is None:
                raise
            if not isinstance(err, Exception):  # interrupted: nothing at the output path
                self.writer.discard()
                raise
            summary.status = f"incomplete: {_one_line(err)}"
            try:
                self.writer.close(summary, {}, status=summary.status)
            except OutputError as failed:
                raise failed from err
            if isinstance(err, ReadError):
                raise _with_partial_output(err, summary) from err
            raise
        summary.seconds = time.perf_counter() - self.start
        self.bar.close()
        summary.output_names = list(self.names or ["score"])
        summary.status = summary.status_line()
        if self.writer is not None:
            schema = {"file_index": np.int32, "entry": np.int64}
            schema.update({k: np.float64 for k in summary.output_names})
            self.writer.close(summary, schema, status=summary.status)
            return summary
        summary.file_index = np.concatenate(self.index) if self.index else np.empty(0, np.int32)
        summary.entry = np.concatenate(self.entry) if self.entry else np.empty(0, np.int64)
        summary.scores = _concatenate(self.kept, self.kind, summary.output_names)
        return summary if return_summary else summary.scores


class Terminated(KeyboardInterrupt):
    """SIGTERM (a batch system's wall-time limit, ``kill``) turned into an exception while
    :func:`score` runs, so that it stops as on Ctrl-C: the reader stopped, the temporary output
    removed, nothing written at the output path. ``signum`` is the signal's number."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    """While scoring: SIGTERM raises :class:`Terminated` (Python already turns SIGINT into
    KeyboardInterrupt). Only from the main thread and only where SIGTERM has its default
    action (a handler the program installed is left alone); restored afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous is not signal.SIG_DFL:
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated(signum)

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _concatenate(kept: list[list[np.ndarray]], kind: str, names: list[str]) -> Any:
    k = len(names) if names else 1
    columns = [np.concatenate([cols[j] for cols in kept]) if kept else np.empty(0) for j in range(k)]
    if kind == "dict":
        return dict(zip(names, columns))
    if kind == "array2" or k > 1:
        return np.stack(columns, axis=1) if columns else np.empty((0, k))
    return columns[0]


def _with_partial_output(err: ReadError, summary: ScoreSummary) -> ReadError:
    done = sorted(i for i, n in summary.events_per_file.items() if n)
    message = (
        f"{err}\nscoring stopped; the {summary.events:,} events scored before it "
        f"(from {len(done)} file(s)) were written to {summary.output}:{summary.output_tree} "
        "(the file_index branch tells which input each event came from; use on_error='skip' to go on past bad files)"
    )
    new = ReadError(message, file=err.file, tree=err.tree, branch=err.branch)
    new.summary = summary  # type: ignore[attr-defined]
    return new


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def set_postfix_str(self, s: str, refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(
        total=total, unit=" events", unit_scale=True, file=sys.stderr, dynamic_ncols=True, smoothing=0.1
    )


# ---------------------------------------------------------------------------------- dask

_LOADED: dict[tuple, Any] = {}
_LOADED_LOCK = threading.Lock()


class ModelHolder:
    """A model that is cheap to send to dask workers and loaded once per worker process.

    It keeps the model's bytes (the model file for forests, a pickle for other models) and
    their SHA-256; :meth:`get` loads it the first time a process asks and caches it in a
    module-level dict keyed by that hash.
    """

    __slots__ = ("data", "key", "kind", "n_threads", "output_kind", "output_names")

    def __init__(
        self,
        kind: str,
        data: bytes,
        *,
        output_kind: str = "probability",
        n_threads: Optional[int] = 1,
        output_names: Optional[Sequence[str]] = None,
    ) -> None:
        if kind not in ("forest", "onnx", "pickle"):
            raise ValueError(f"kind must be 'forest', 'onnx' or 'pickle', got {kind!r}")
        self.kind = kind
        self.data = bytes(data)
        self.key = hashlib.sha256(self.data).hexdigest()
        self.output_kind = output_kind
        self.n_threads = n_threads
        self.output_names = list(output_names) if output_names is not None else None

    @classmethod
    def from_model(
        cls,
        model: Any,
        *,
        output_kind: str = "probability",
        n_threads: Optional[int] = 1,
        output_names: Optional[Sequence[str]] = None,
    ) -> ModelHolder:
        """From a model file path or bytes, an xgboost/lightgbm booster, or a picklable model
        following :class:`ScoringModel`, or a loaded :class:`hepinfer.Forest` (pickled as its
        model file's bytes)."""
        from hepinfer.forest import Forest

        options = {"output_kind": output_kind, "n_threads": n_threads, "output_names": output_names}
        if isinstance(model, ModelHolder):
            return model
        if isinstance(model, _ForestModel):
            model = model.forest
        if isinstance(model, (str, os.PathLike)):
            kind = "onnx" if os.fspath(model).lower().endswith(".onnx") else "forest"
            with open(os.fspath(model), "rb") as fh:
                return cls(kind, fh.read(), **options)
        if isinstance(model, (bytes, bytearray)):
            return cls("forest", bytes(model), **options)
        module = type(model).__module__.split(".")[0]
        if module == "xgboost":
            booster = model.get_booster() if hasattr(model, "get_booster") else model
            return cls("forest", bytes(booster.save_raw(raw_format="ubj")), **options)
        if module == "lightgbm":
            booster = getattr(model, "booster_", model)
            return cls("forest", booster.model_to_string().encode(), **options)
        if isinstance(model, Forest):
            try:
                return cls("pickle", pickle.dumps(model), **options)
            except TypeError as err:
                raise InputError(f"this hepinfer.Forest cannot be sent to dask workers: {err}") from err
        if isinstance(model, _GenericModel):
            model = model.model
        try:
            return cls("pickle", pickle.dumps(model), **options)
        except Exception as err:
            raise InputError(
                f"the model ({type(model).__name__}) cannot be pickled for dask workers: {err}"
            ) from err

    def __reduce__(self) -> tuple:
        return (
            _holder,
            (self.kind, self.data, self.key, self.output_kind, self.n_threads, self.output_names),
        )

    def get(self) -> Any:
        """The model, following :class:`ScoringModel`, loaded once per process."""
        cache_key = (self.key, self.output_kind, self.n_threads, tuple(self.output_names or ()))
        with _LOADED_LOCK:
            model = _LOADED.get(cache_key)
            if model is None:
                if self.kind == "onnx":
                    from hepinfer.nn import Model

                    raw: Any = Model.load(self.data)
                else:
                    raw = pickle.loads(self.data) if self.kind == "pickle" else self.data
                model = as_scoring_model(
                    raw,
                    output_kind=self.output_kind,
                    n_threads=self.n_threads,
                    output_names=self.output_names,
                )
                _LOADED[cache_key] = model
            return model


def _holder(
    kind: str, data: bytes, key: str, output_kind: str, n_threads: Optional[int], output_names: Any
) -> ModelHolder:
    h = ModelHolder.__new__(ModelHolder)
    h.kind, h.data, h.key = kind, data, key
    h.output_kind, h.n_threads, h.output_names = output_kind, n_threads, output_names
    return h


@dataclass(frozen=True)
class _Job:
    """One dask partition: entries ``entry_start..entry_stop`` of one tree."""

    source: TreeSource
    entry_start: int
    entry_stop: int
    step: Optional[int] = None  # events per read (None: plan.chunk), as the local path reads


def _score_job(holder: ModelHolder, plan: _Plan, job: _Job) -> list[Union[_Block, _Failure]]:
    """On a worker: read one partition chunk by chunk with the reader the local path uses and
    score it with the model (loaded once per worker process)."""
    scorer = holder.get()
    out: list[Union[_Block, _Failure]] = []
    entry = job.entry_start
    try:
        for c in plan.read(job.source, job.entry_start, job.entry_stop, job.step):
            out.append(_evaluate(scorer, plan, c, (job.source.index, job.entry_start)))
            entry = c.entry_stop
    except ReadError as err:
        out.append(_Failure(job.source, entry, err))
    return out


def _job_as_awkward(holder: ModelHolder, plan: _Plan, job: _Job, names: list[str]) -> Any:
    """One partition of :func:`score_dask`'s lazy result: a record array of ``file_index``,
    ``entry``, the event identifiers and the outputs."""
    import awkward as ak

    blocks = _score_job(holder, plan, job)
    for b in blocks:
        if isinstance(b, _Failure):
            raise b.error
    done = [b for b in blocks if isinstance(b, _Block) and len(b.entries)]
    columns: dict[str, np.ndarray] = {
        "file_index": np.full(sum(len(b.entries) for b in done), job.source.index, dtype=np.int32),
        "entry": np.concatenate([b.entries for b in done]) if done else np.empty(0, np.int64),
    }
    for k in plan.event_ids:
        columns[k] = np.concatenate([b.ids[k] for b in done]) if done else np.empty(0, np.int64)
    keys = done[0].keys if done else names
    for j, k in enumerate(keys):
        columns[k] = np.concatenate([b.cols[j] for b in done]) if done else np.empty(0, np.float64)
    return ak.zip(columns, depth_limit=1)


def _dask_client() -> Any:
    """The distributed Client the current dask scheduler is, or None (threads, processes,
    synchronous...)."""
    try:
        import distributed
        from dask.base import get_scheduler
    except ImportError:
        return None
    scheduler = get_scheduler()
    client = getattr(scheduler, "__self__", None)
    return client if isinstance(client, distributed.Client) else None


def _ordered_results(tasks: list[Any]) -> Iterator[Any]:
    """The tasks' results in task order, computed on the current dask scheduler. On a
    distributed cluster every task is submitted at once and each result is fetched as soon as
    it is done (and released on the workers); elsewhere they are computed in batches."""
    import dask

    client = _dask_client()
    if client is None:
        batch = max(1, 2 * (os.cpu_count() or 1))
        for lo in range(0, len(tasks), batch):
            yield from dask.compute(*tasks[lo : lo + batch])
        return
    from distributed import as_completed

    futures = client.compute(tasks)
    position = {f.key: i for i, f in enumerate(futures)}
    ready: dict[int, Any] = {}
    following = 0
    try:
        for future in as_completed(futures):
            ready[position[future.key]] = future.result()
            future.release()
            while following in ready:
                yield ready.pop(following)
                following += 1
    finally:
        client.cancel(futures)


def score_dask(
    model: Any,
    files: FilesLike,
    *,
    tree: Optional[str] = None,
    features: Union[None, str, Sequence[str], Mapping[str, Any]] = None,
    jet_features: Optional[Mapping[str, Union[str, Sequence[str]]]] = None,
    aliases: Optional[Mapping[str, str]] = None,
    cut: Optional[str] = None,
    chunk: Union[int, str] = "100 MB",
    output: Optional[Union[str, os.PathLike[str]]] = None,
    output_tree: str = "scores",
    output_kind: str = "probability",
    output_names: Optional[Sequence[str]] = None,
    n_threads: Optional[int] = 1,
    progress: bool = False,
    on_error: str = "raise",
    event_ids: bool = True,
    return_summary: bool = False,
    open_options: Optional[Mapping[str, Any]] = None,
    compute: bool = True,
    overwrite: bool = False,
) -> Any:
    """:func:`score` on the current dask scheduler (a ``distributed.Client``, or dask's
    threads, processes or synchronous schedulers), with the same arguments and the same results.

    Each file is split into partitions of ``chunk`` events (or of the number of events that
    ``chunk`` bytes of the branches read hold), each partition read and scored by a dask task
    with the reader the local path uses (features, expressions, aliases, cut, jagged inputs),
    so scores, event ids and entry numbers are the same. The model travels as a
    :class:`ModelHolder` (the model file's bytes), one node of the graph shared by every
    partition, loaded once per worker process; ``n_threads`` is per task (default 1).

    Files are checked on the client first, as :func:`score` does. The scores come back to the
    client in file and entry order and are returned, or written to ``output`` there (the same
    ROOT file the local path writes); ``on_error`` applies as in :func:`score` (with ``"skip"``,
    the partitions of a failed file after its failure are dropped).

    With ``compute=False``: the lazy dask-awkward record array (one partition per task) of
    ``file_index``, ``entry``, the event identifiers and the outputs (``output``,
    ``on_error="skip"``, ``progress`` and ``return_summary`` do not apply; a bad file raises when
    computed). Its metadata comes from computing the first partition.
    """
    import dask

    if on_error not in ("raise", "skip"):
        raise InputError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    holder = ModelHolder.from_model(
        model, output_kind=output_kind, n_threads=n_threads, output_names=output_names
    )
    scorer = holder.get()
    plan = _make_plan(scorer, features, jet_features, aliases, cut, chunk, open_options)
    summary, good, total, sizes = _check_files(
        plan, files, tree, "raise" if not compute else on_error, event_ids, output if compute else None,
        output_tree, overwrite,
    )
    if compute and output is None:
        plan.event_ids = {}  # as score(): only the output file holds them
    jobs = []
    for source in good:
        n, chunk_events = sizes[source.index]
        partition, step = _read_plan(chunk_events)
        jobs += [_Job(source, start, min(start + partition, n), step) for start in range(0, n, partition)]
    token = uuid.uuid4().hex[:16]
    # the model is one node of the graph: its bytes travel to each worker once (not once per
    # partition) and are loaded there once (ModelHolder.get caches per process)
    model_node = dask.delayed(holder, name=f"hepinfer-model-{holder.key[:16]}-{token}")
    plan_node = dask.delayed(plan, name=f"hepinfer-plan-{token}")
    if not compute:
        import dask_awkward as dak

        if not jobs:
            raise InputError("score_dask(compute=False): the files hold no entries to score")
        names = list(scorer.output_names or ["score"])
        parts = [
            dask.delayed(_job_as_awkward)(
                model_node, plan_node, job, names, dask_key_name=(f"hepinfer-score-{token}", i)
            )
            for i, job in enumerate(jobs)
        ]
        divisions = None
        if cut is None:
            sizes_ = [j.entry_stop - j.entry_start for j in jobs]
            divisions = tuple(int(d) for d in np.concatenate([[0], np.cumsum(sizes_)]))
        return dak.from_delayed(parts, divisions=divisions, prefix="hepinfer-score")
    tasks = [
        dask.delayed(_score_job)(model_node, plan_node, job, dask_key_name=(f"hepinfer-score-{token}", i))
        for i, job in enumerate(jobs)
    ]
    collector = _Collector(
        summary, scorer, summary.output, output_tree, on_error, _progress_bar(total, progress), overwrite
    )

    def blocks() -> Iterator[Union[_Block, _Failure]]:
        for result in _ordered_results(tasks):
            yield from result

    with _signals_raise():
        return collector.run(blocks(), return_summary)
