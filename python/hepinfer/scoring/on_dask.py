"""The Dask runner of :func:`hepinfer.score`: partitions of each file read and scored on the
workers with the same plan, the model shipped once per worker as its bytes, the scores
collected on the client in file and entry order."""

from __future__ import annotations

import hashlib
import os
import pickle
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Optional, Union

import numpy as np

from hepinfer._core import InputError
from hepinfer.io import FilesLike, ReadError, TreeSource
from hepinfer.scoring.models import (
    _ForestModel,
    _GenericModel,
    _JaggedNetworkModel,
    _KFoldModel,
    _NetworkModel,
    as_scoring_model,
    stored_output_columns,
)
from hepinfer.scoring.output import _Block, _Failure, collect
from hepinfer.scoring.plan import ScoreOptions, _evaluate, _Plan, _read_plan, prepare

# ---------------------------------------------------------------------------------- dask

_LOADED: dict[tuple, Any] = {}
_LOADED_LOCK = threading.Lock()


class ModelHolder:
    """A model that is cheap to send to dask workers and loaded once per worker process.

    It keeps the model's bytes (the model file for forests and ONNX files, a pickle for other
    models, e.g. a network loaded with ``backend="onnxruntime"``, which pickles as its ONNX bytes)
    and their SHA-256; :meth:`get` loads it the first time a process asks and caches it in a
    module-level dict keyed by that hash. ``nn_backend`` is the backend an ONNX file is loaded
    with there (see :meth:`hepinfer.nn.Model.load`).
    """

    __slots__ = ("data", "key", "kind", "n_threads", "nn_backend", "output_kind", "output_names")

    def __init__(
        self,
        kind: str,
        data: bytes,
        *,
        output_kind: str = "probability",
        n_threads: Optional[int] = 1,
        output_names: Optional[Sequence[str]] = None,
        nn_backend: Optional[str] = None,
    ) -> None:
        if kind not in ("forest", "onnx", "pickle"):
            raise ValueError(f"kind must be 'forest', 'onnx' or 'pickle', got {kind!r}")
        self.kind = kind
        self.data = bytes(data)
        self.key = hashlib.sha256(self.data).hexdigest()
        self.output_kind = output_kind
        self.n_threads = n_threads
        self.output_names = list(output_names) if output_names is not None else None
        self.nn_backend = nn_backend

    @classmethod
    def from_model(
        cls,
        model: Any,
        *,
        output_kind: str = "probability",
        n_threads: Optional[int] = 1,
        output_names: Optional[Sequence[str]] = None,
        nn_backend: Optional[str] = None,
    ) -> ModelHolder:
        """From a model file path or bytes, an xgboost/lightgbm booster, or a picklable model
        following :class:`ScoringModel`, or a loaded :class:`hepinfer.Forest` (pickled as its
        model file's bytes)."""
        from hepinfer.forest import Forest
        from hepinfer.kfold import KFold, is_bundle

        options: dict[str, Any] = {
            "output_kind": output_kind,
            "n_threads": n_threads,
            "output_names": output_names,
            "nn_backend": nn_backend,
        }
        if isinstance(model, ModelHolder):
            return model
        if isinstance(model, _ForestModel):
            model = model.forest
        if isinstance(model, (_NetworkModel, _JaggedNetworkModel)):
            model = model.model  # a network travels as itself (options are applied again there)
        if isinstance(model, _KFoldModel):
            model = model.kfold  # a k-fold bundle travels as its files (options applied again there)
        if is_bundle(model):
            model = KFold.load(model)
        if isinstance(model, (str, os.PathLike)):
            if output_names is None and stored_output_columns(model) is not None:
                # the bytes travel without their path: name the outputs here, as score() locally
                options["output_names"] = as_scoring_model(
                    model, output_kind=output_kind, n_threads=n_threads, nn_backend=nn_backend
                ).output_names
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
            (
                self.kind,
                self.data,
                self.key,
                self.output_kind,
                self.n_threads,
                self.output_names,
                self.nn_backend,
            ),
        )

    def get(self) -> Any:
        """The model, following :class:`ScoringModel`, loaded once per process."""
        cache_key = (
            self.key,
            self.output_kind,
            self.n_threads,
            tuple(self.output_names or ()),
            self.nn_backend,
        )
        with _LOADED_LOCK:
            model = _LOADED.get(cache_key)
            if model is None:
                if self.kind == "onnx":
                    from hepinfer.nn import Model

                    raw: Any = Model.load(self.data, backend=self.nn_backend or "hepinfer")
                else:
                    raw = pickle.loads(self.data) if self.kind == "pickle" else self.data
                model = as_scoring_model(
                    raw,
                    output_kind=self.output_kind,
                    n_threads=self.n_threads,
                    output_names=self.output_names,
                    nn_backend=self.nn_backend,
                )
                _LOADED[cache_key] = model
            return model


def _holder(
    kind: str,
    data: bytes,
    key: str,
    output_kind: str,
    n_threads: Optional[int],
    output_names: Any,
    nn_backend: Optional[str] = None,
) -> ModelHolder:
    h = ModelHolder.__new__(ModelHolder)
    h.kind, h.data, h.key = kind, data, key
    h.output_kind, h.n_threads, h.output_names = output_kind, n_threads, output_names
    h.nn_backend = nn_backend
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


def score_dask(model: Any, files: FilesLike, *, compute: bool = True, **options: Any) -> Any:
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
    if "dask" in options:
        raise TypeError("score_dask() takes no dask= argument (it is score(..., dask=True))")
    return run_dask(model, files, ScoreOptions(**{"n_threads": 1, **options}), compute=compute)


def run_dask(model: Any, files: FilesLike, options: ScoreOptions, compute: bool = True) -> Any:
    """:func:`score_dask` with its options gathered (``n_threads`` None: 1 per task)."""
    import dask

    o = options
    n_threads = 1 if o.n_threads is None else o.n_threads
    holder = ModelHolder.from_model(
        model,
        output_kind=o.output_kind,
        n_threads=n_threads,
        output_names=o.output_names,
        nn_backend=o.nn_backend,
    )
    scorer, plan, summary, good, total, sizes = prepare(
        holder.get(),
        files,
        o,
        check_on_error="raise" if not compute else None,
        output=o.output if compute else None,
    )
    if compute and o.output is None:
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
        if o.cut is None:
            sizes_ = [j.entry_stop - j.entry_start for j in jobs]
            divisions = tuple(int(d) for d in np.concatenate([[0], np.cumsum(sizes_)]))
        return dak.from_delayed(parts, divisions=divisions, prefix="hepinfer-score")
    tasks = [
        dask.delayed(_score_job)(model_node, plan_node, job, dask_key_name=(f"hepinfer-score-{token}", i))
        for i, job in enumerate(jobs)
    ]

    def blocks() -> Iterator[Union[_Block, _Failure]]:
        for result in _ordered_results(tasks):
            yield from result

    return collect(summary, scorer, o, total, blocks())
