"""The output side of :func:`hepinfer.score`: the summary, the atomic ROOT output file, the
collector that takes the blocks of scores from either runner in file and entry order, and
SIGTERM/SIGINT handling (see :func:`hepinfer.score` for the guarantees)."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import numpy as np

from hepinfer._core import Error
from hepinfer.io import FileFailure, ReadError, TreeSource, _one_line

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
            schema: dict[str, Any] = {"file_index": np.int32, "entry": np.int64}
            schema.update({k: np.float64 for k in summary.output_names})
            self.writer.close(summary, schema, status=summary.status)
            return summary
        summary.file_index = np.concatenate(self.index) if self.index else np.empty(0, np.int32)
        summary.entry = np.concatenate(self.entry) if self.entry else np.empty(0, np.int64)
        summary.scores = _concatenate(self.kept, self.kind, summary.output_names)
        return summary if return_summary else summary.scores


def collect(summary: ScoreSummary, scorer: Any, options: Any, total: int, blocks: Iterator[Any]) -> Any:
    """Both runners' last step: a :class:`_Collector` made from the run's ``ScoreOptions``
    (output, tree, on_error, progress bar over ``total`` entries, overwrite) takes ``blocks``,
    with SIGTERM turned into :class:`Terminated` meanwhile; returns what :func:`hepinfer.score`
    returns."""
    collector = _Collector(
        summary,
        scorer,
        summary.output,
        options.output_tree,
        options.on_error,
        _progress_bar(total, options.progress),
        options.overwrite,
    )
    with _signals_raise():
        return collector.run(blocks, options.return_summary)


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
