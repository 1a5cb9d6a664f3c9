"""The reading plan of :func:`hepinfer.score`, shared by the local and the Dask runner: the
options, which branches or expressions feed which model input, the check of every file before
anything is scored, how a tree is cut into reads and partitions, and the evaluation of one
chunk into a block of scores."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import numpy as np

from hepinfer._core import InputError
from hepinfer.io import (
    Chunk,
    FileFailure,
    FilesLike,
    ReadError,
    TreeSource,
    _check_jagged_branches,
    _chunk_stop,
    _iterate_jagged,
    _iterate_one,
    _JaggedChunk,
    check_branches,
    expand_files,
    find_event_ids,
    open_tree,
    validate_expressions,
)
from hepinfer.scoring.models import (
    _feature_expressions,
    _JaggedNetworkModel,
    _output_columns,
    as_scoring_model,
)
from hepinfer.scoring.output import ScoreSummary, _Block, _check_output


@dataclass(frozen=True)
class ScoreOptions:
    """Everything :func:`hepinfer.score` takes besides the model and the files (see its
    documentation): one object for the local and the Dask runner."""

    tree: Optional[str] = None
    features: Union[None, str, Sequence[str], Mapping[str, Any]] = None
    jet_features: Optional[Mapping[str, Union[str, Sequence[str]]]] = None
    aliases: Optional[Mapping[str, str]] = None
    cut: Optional[str] = None
    chunk: Union[int, str] = "100 MB"
    output: Optional[Union[str, os.PathLike[str]]] = None
    output_tree: str = "scores"
    output_kind: str = "probability"
    output_names: Optional[Sequence[str]] = None
    n_threads: Optional[int] = None
    progress: bool = False
    on_error: str = "raise"
    event_ids: bool = True
    return_summary: bool = False
    open_options: Optional[Mapping[str, Any]] = None
    overwrite: bool = False
    nn_backend: Optional[str] = None

    def __post_init__(self) -> None:
        if self.on_error not in ("raise", "skip"):
            raise InputError(f"on_error must be 'raise' or 'skip', got {self.on_error!r}")
        if self.nn_backend not in (None, "hepinfer", "onnxruntime"):
            raise InputError(f"nn_backend must be 'hepinfer' or 'onnxruntime', got {self.nn_backend!r}")


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
        if isinstance(getattr(scorer, "event_input", None), str):  # k-fold: the features + the event number
            exprs = named = scorer.expressions(features)
        else:
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
                    file=err.file,
                    tree=err.tree,
                    branch=err.branch,
                ) from err
            summary.failures.append(FileFailure(source, 0, err))
    summary.event_ids = ids or {}
    plan.event_ids = summary.event_ids
    return summary, good, total, sizes


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


def prepare(
    model: Any,
    files: FilesLike,
    options: ScoreOptions,
    *,
    check_on_error: Optional[str] = None,
    output: Any = None,
    n_threads: Optional[int] = None,
) -> tuple[Any, _Plan, ScoreSummary, list[TreeSource], int, dict[int, tuple[int, int]]]:
    """What both runners do first: the model adapted (:func:`as_scoring_model`), the plan made
    and checked, the output path checked and every file opened and checked: (scorer, plan,
    summary, good files, their entries in all, {file index: (entries, entries in one chunk)})."""
    o = options
    scorer = as_scoring_model(
        model,
        output_kind=o.output_kind,
        n_threads=n_threads,
        output_names=o.output_names,
        nn_backend=o.nn_backend,
    )
    plan = _make_plan(scorer, o.features, o.jet_features, o.aliases, o.cut, o.chunk, o.open_options)
    summary, good, total, sizes = _check_files(
        plan, files, o.tree, check_on_error or o.on_error, o.event_ids, output, o.output_tree, o.overwrite
    )
    return scorer, plan, summary, good, total, sizes
