"""The local runner of :func:`hepinfer.score`: :func:`score` itself, and the run in this
process with a reader thread that stays ahead of the model."""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Generator, Iterator, Mapping, Sequence
from typing import Any, Optional, Union

from hepinfer.io import Chunk, FilesLike, ReadError
from hepinfer.scoring.output import _Block, _Failure, collect
from hepinfer.scoring.plan import ScoreOptions, _evaluate, _read_plan, prepare

# Pieces read ahead of the one being evaluated (0: read and evaluate in turn, in one thread).
# The results do not depend on it: pieces are delivered in order, each evaluated alone.
_READ_AHEAD = 2


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
    nn_backend: Optional[str] = None,
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
        branch per model output (``score``, or ``score_0..score_k``, or ``output_names``, or the
        output columns a file written by ``hepinfer train`` stores: ``score_<class>`` per class
        of a multiclass model, ``prediction`` of a regression), plus a
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
    nn_backend
        How an ``.onnx`` path is evaluated: ``None`` or ``"hepinfer"``, hepinfer's engine;
        ``"onnxruntime"``, onnxruntime (for a network whose operators the engine refuses; see
        :meth:`hepinfer.nn.Model.load`), here and on Dask workers alike. A network loaded with
        ``Model.load(path, backend="onnxruntime")`` keeps its backend without it.

    Returns
    -------
    With ``output=None``: a numpy array, ``(n,)`` for one output, ``(n, k)`` for k outputs (as
    ``Forest.predict``), or a dict of arrays for models that return dicts. With ``output``: the
    :class:`ScoreSummary`.
    """
    options = ScoreOptions(
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
        n_threads=n_threads,
        progress=progress,
        on_error=on_error,
        event_ids=event_ids,
        return_summary=return_summary,
        open_options=open_options,
        overwrite=overwrite,
        nn_backend=nn_backend,
    )
    if dask:
        from hepinfer.scoring.on_dask import run_dask

        return run_dask(model, files, options)
    return run_local(model, files, options)


def run_local(model: Any, files: FilesLike, options: ScoreOptions) -> Any:
    """:func:`score` in this process: chunks read ahead in a background thread (see
    :func:`_prefetch`), evaluated here in file and entry order."""
    o = options
    scorer, plan, summary, good, total, sizes = prepare(
        model, files, o, output=o.output, n_threads=o.n_threads
    )
    if o.output is None:
        plan.event_ids = {}  # only the output file holds them: not read (summary.event_ids names them)

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

    return collect(summary, scorer, o, total, blocks())


def _prefetch(chunks: Iterator[Any], depth: Optional[int] = None) -> Generator[Any, None, None]:
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
