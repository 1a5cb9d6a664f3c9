"""hepinfer.score's read-ahead: pieces read in a background thread give the same scores and the
same output file as reading and evaluating in turn; errors from the reader or the model reach
the caller, stop the reader thread and leave an output file that says it is incomplete."""

from __future__ import annotations

import shutil
import threading

import numpy as np
import pytest

uproot = pytest.importorskip("uproot")
xgb = pytest.importorskip("xgboost")

import hepinfer
from hepinfer.io import ReadError
from hepinfer.scoring import local, score
from hepinfer.scoring import plan as reading_plan
from hepinfer.scoring.local import _prefetch
from hepinfer.scoring.plan import _read_plan
from tests.scoring.samples import corrupt_last_basket, write_flat

NAMES = ("a", "b", "c")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Three files of 3000, 1700 and 2500 events in several baskets, and a forest on a, b, c."""
    where = tmp_path_factory.mktemp("pipeline")
    rng = np.random.default_rng(11)
    paths, data = [], []
    for i, (n, extends) in enumerate(((3000, 7), (1700, 3), (2500, 5))):
        path = str(where / f"f{i}.root")
        data.append(write_flat(path, rng, n, extends=extends, names=NAMES))
        paths.append(path)
    X = np.stack([data[0][k] for k in NAMES], axis=1)
    d = xgb.DMatrix(X, label=(X[:, 0] * X[:, 1] > X[:, 2]).astype(float), feature_names=list(NAMES))
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 4, "nthread": 1}, d, 30)
    return {"paths": paths, "data": data, "forest": hepinfer.Forest.load(booster), "dir": where}


@pytest.fixture
def small_pieces(monkeypatch):
    """Chunks of >= 200 events read in pieces of chunk / 4 (at least 100 events)."""
    monkeypatch.setattr(reading_plan, "_MIN_READ_EVENTS", 100)
    monkeypatch.setattr(reading_plan, "_READ_PIECES", 4)


def readers_alive() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "hepinfer-reader" and t.is_alive()]


def written(path) -> dict:
    with uproot.open(path) as f:
        out = {"scores": f["scores"].arrays(library="np")}
        for key in ("hepinfer_inputs", "hepinfer_failures", "hepinfer_status"):
            if key == "hepinfer_failures" and key in f:  # a tree: one line per failed file
                t = f[key].arrays(library="np")
                out[key] = "\n".join("\t".join(str(t[k][i]) for k in t) for i in range(len(t["path"])))
            elif key in f:
                out[key] = str(f[key])
    return out


def test_read_plan_pieces_tile_partitions():
    assert _read_plan(700) == (700, None)  # small chunks: read as given
    assert _read_plan(2 * reading_plan._MIN_READ_EVENTS - 1)[1] is None
    for chunk_events in (100_000, 833_289, 999_999, 10_000_000):
        partition, step = _read_plan(chunk_events)
        assert step is not None and step >= reading_plan._MIN_READ_EVENTS
        assert partition % step == 0 and chunk_events - step < partition <= chunk_events
    assert _read_plan(833_289) == (833_288, 104_161)  # the benchmark's 100 MB chunk: 8 pieces


@pytest.mark.parametrize("chunk", [1000, "20 kB"])
def test_pipelined_equals_sequential(files, tmp_path, monkeypatch, small_pieces, chunk):
    forest, paths = files["forest"], files["paths"]
    want = np.concatenate([forest.predict({k: d[k] for k in NAMES}) for d in files["data"]])
    got = {}
    for ahead in (0, 1, 2):
        monkeypatch.setattr(local, "_READ_AHEAD", ahead)
        got[ahead] = score(forest, paths, tree="Events", chunk=chunk, n_threads=2, return_summary=True)
        score(forest, paths, tree="Events", chunk=chunk, output=tmp_path / f"out{ahead}.root")
    for ahead, summary in got.items():
        np.testing.assert_array_equal(summary.scores, want)  # bit-identical, in file and entry order
        entries = np.concatenate([np.arange(len(d["a"])) for d in files["data"]])
        np.testing.assert_array_equal(summary.entry, entries)
        assert summary.events == len(want) and not summary.failures
    files_out = {ahead: written(tmp_path / f"out{ahead}.root") for ahead in got}
    for ahead in (1, 2):
        assert sorted(files_out[ahead]) == sorted(files_out[0])
        for k, v in files_out[0]["scores"].items():
            assert files_out[ahead]["scores"][k].dtype == v.dtype
            np.testing.assert_array_equal(files_out[ahead]["scores"][k], v, err_msg=k)
        assert files_out[ahead]["hepinfer_inputs"] == files_out[0]["hepinfer_inputs"]
    assert files_out[0]["hepinfer_status"] == "complete"
    np.testing.assert_array_equal(files_out[0]["scores"]["score"], want)
    assert not readers_alive()


def broken_copy(source, dest, branch):
    """A copy of the ROOT file `source` at `dest` whose last basket of `branch` is corrupt."""
    shutil.copyfile(source, dest)
    corrupt_last_basket(str(dest), branch)
    return str(dest)


def test_pieces_with_dask_equal_local(files, tmp_path, small_pieces):
    """With pieces, dask partitions are whole pieces: a file broken part-way fails at the same
    entry on both paths and the output files are the same."""
    dask = pytest.importorskip("dask")
    forest = files["forest"]
    bad = broken_copy(files["paths"][0], tmp_path / "bad.root", "b")
    paths = [files["paths"][1], bad, files["paths"][2]]
    with dask.config.set(scheduler="synchronous"):
        local = score(forest, paths, tree="Events", chunk=1000, on_error="skip", output=tmp_path / "l.root")
        remote = score(
            forest, paths, tree="Events", chunk=1000, on_error="skip", output=tmp_path / "d.root", dask=True
        )
    (failure,) = local.failures
    assert failure.source.index == 1 and 0 < failure.entry < 3000 and failure.entry % 250 == 0
    assert [(f.source.index, f.entry) for f in remote.failures] == [(1, failure.entry)]
    a, b = written(tmp_path / "l.root"), written(tmp_path / "d.root")
    assert sorted(a) == sorted(b)
    for k, v in a["scores"].items():
        np.testing.assert_array_equal(b["scores"][k], v, err_msg=k)


class Exploding:
    """Wraps _Plan.read: raises `error` after `after` chunks of the file `path`."""

    def __init__(self, read, path: str, after: int, error: BaseException) -> None:
        self.read, self.path, self.after, self.error = read, path, after, error
        self.thread_names: list[str] = []

    def __call__(self, plan, source, *args, **kwargs):
        for i, c in enumerate(self.read(plan, source, *args, **kwargs)):
            self.thread_names.append(threading.current_thread().name)
            if source.path == self.path and i == self.after:
                raise self.error
            yield c


def test_reader_error_mid_file_reaches_caller_and_output_says_incomplete(
    files, tmp_path, monkeypatch, small_pieces
):
    forest, paths = files["forest"], files["paths"]
    error = RuntimeError("disk went away")
    boom = Exploding(reading_plan._Plan.read, paths[1], 2, error)
    monkeypatch.setattr(reading_plan._Plan, "read", lambda plan, *args, **kwargs: boom(plan, *args, **kwargs))
    out = tmp_path / "partial.root"
    with pytest.raises(RuntimeError, match="disk went away") as err:
        score(forest, paths, tree="Events", chunk=1000, output=out)
    assert err.value is error  # the reader's exception itself, with its traceback
    assert set(boom.thread_names) == {"hepinfer-reader"}  # it was read in the background
    assert not readers_alive()
    got = written(out)
    assert got["hepinfer_status"] == "incomplete: RuntimeError: disk went away"
    # what was written is what was scored before the error, and right: file 0, then 2 pieces of file 1
    idx, entry = got["scores"]["file_index"], got["scores"]["entry"]
    assert np.sum(idx == 0) == 3000 and np.sum(idx == 1) == 2 * 250 and set(idx.tolist()) == {0, 1}
    want = np.concatenate([forest.predict({k: d[k] for k in NAMES}) for d in files["data"][:2]])[: len(idx)]
    np.testing.assert_array_equal(got["scores"]["score"], want)
    np.testing.assert_array_equal(entry[idx == 1], np.arange(500))
    # in memory: the same exception, nothing returned
    with pytest.raises(RuntimeError, match="disk went away"):
        score(forest, paths, tree="Events", chunk=1000)
    assert not readers_alive()


def test_broken_basket_raise_records_failure_in_output(files, tmp_path):
    forest = files["forest"]
    bad = broken_copy(files["paths"][0], tmp_path / "bad.root", "c")
    out = tmp_path / "partial.root"
    with pytest.raises(ReadError, match="bad.root") as err:
        score(forest, [files["paths"][2], bad], tree="Events", chunk=400, output=out)
    assert err.value.summary.failures[0].source.path == bad
    got = written(out)
    status = got["hepinfer_status"]
    assert status.startswith("incomplete: ReadError:") and "bad.root" in status
    assert bad in got["hepinfer_failures"] and "branch 'c'" in got["hepinfer_failures"]
    assert np.sum(got["scores"]["file_index"] == 0) == 2500 and np.sum(got["scores"]["file_index"] == 1) > 0
    assert not readers_alive()


class FailingModel:
    """A scoring-protocol model that raises on its `fail_at`-th call."""

    def __init__(self, forest, fail_at: int) -> None:
        self.forest, self.fail_at, self.calls = forest, fail_at, 0
        self.input_names, self.output_names = list(NAMES), ["score"]

    def predict(self, inputs):
        self.calls += 1
        if self.calls == self.fail_at:
            raise ValueError("model blew up")
        return self.forest.predict(dict(inputs))


def test_model_error_stops_the_reader(files, tmp_path):
    model = FailingModel(files["forest"], fail_at=3)
    out = tmp_path / "m.root"
    with pytest.raises(ValueError, match="model blew up"):
        score(model, files["paths"], tree="Events", chunk=300, output=out)
    assert not readers_alive()  # joined before score returned, not left to the GC
    got = written(out)
    assert got["hepinfer_status"] == "incomplete: ValueError: model blew up"
    assert len(got["scores"]["score"]) == 600


def test_prefetch_order_errors_and_early_close():
    def items(n, fail_at=None):
        for i in range(n):
            if i == fail_at:
                raise KeyError(i)
            yield i

    for depth in (0, 1, 2, 5):
        assert list(_prefetch(items(50), depth)) == list(range(50))
        got = []
        with pytest.raises(KeyError):
            for x in _prefetch(items(50, fail_at=17), depth):
                got.append(x)
        assert got == list(range(17))  # every item before the error, in order
    closed = threading.Event()

    def endless():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.set()

    def failing_cleanup():
        try:
            yield from range(3)
        finally:
            raise OSError("cleanup failed")

    got = []
    with pytest.raises(OSError, match="cleanup failed"):  # raised, not waited for forever
        for x in _prefetch(failing_cleanup(), 2):
            got.append(x)
    assert got == [0, 1, 2]
    reader = _prefetch(endless(), 2)
    assert [next(reader) for _ in range(5)] == list(range(5))
    reader.close()
    assert closed.is_set() and not readers_alive()
