"""Load test of `hepinfer score` (issue 8): 100 ROOT files with one corrupted among them, scored
through the command line and the Python API: the other 99 files' scores are all written and
equal Forest.predict on the same arrays, the bad file is named, and the resident memory stays
flat over hundreds of chunks (the long-run measurement is benchmarks/load.py)."""

from __future__ import annotations

import gc
import os
import re
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

uproot = pytest.importorskip("uproot")
xgb = pytest.importorskip("xgboost")

import hepinfer
from hepinfer.cli import main
from hepinfer.io import ReadError
from hepinfer.scoring import score
from tests.seeding import stable_seed

N_FILES = 100
BAD = 57  # the corrupted file
FEATURES = ["x", "y", "nJet"]
IDS = ["run", "luminosityBlock", "event"]
GARBAGE = b"\xde\xad\xbe\xef" * 12


def write_events(path, rng, n: int, baskets: int = 4) -> dict:
    """NanoAOD-like flat branches (float32, float64 with NaNs, int32, uint32/uint64 ids)."""
    data = {
        "run": np.full(n, 1, np.uint32),
        "luminosityBlock": (np.arange(n) // 100 + 1).astype(np.uint32),
        "event": rng.permutation(n).astype(np.uint64) + np.uint64(10**12),
        "x": rng.normal(size=n).astype(np.float32),
        "y": rng.uniform(-2, 2, size=n),
        "nJet": rng.poisson(2, size=n).astype(np.int32),
    }
    data["y"][rng.random(n) < 0.02] = np.nan  # missing values travel to the forest as NaN
    with uproot.recreate(path) as f:
        f.mktree("Events", {k: v.dtype for k, v in data.items()})
        for part in np.array_split(np.arange(n), baskets):
            f["Events"].extend({k: v[part] for k, v in data.items()})
    return data


def corrupt_basket(path, branch: str, basket: int) -> int:
    """Overwrite the start of one basket of `branch` (its key and the first bytes of its data)
    with garbage; returns the first entry of that basket (the file fails there, part-way)."""
    with uproot.open(path) as f:
        b = f["Events"][branch]
        seek = int(b.member("fBasketSeek")[basket])
        first = int(b.member("fBasketEntry")[basket])
    with open(path, "r+b") as fh:
        fh.seek(seek)
        fh.write(GARBAGE)
    return first


@pytest.fixture(scope="module")
def hundred(tmp_path_factory):
    """100 files of 600-1400 events in 4 baskets each, file BAD broken in its third basket of
    'y'; an xgboost model file on those features; the files' arrays."""
    rng = np.random.default_rng(stable_seed("tests/test_load.py::hundred"))
    where = tmp_path_factory.mktemp("hundred")
    paths, data = [], []
    for i in range(N_FILES):
        path = str(where / f"events_{i:03d}.root")
        data.append(write_events(path, rng, int(rng.integers(600, 1400))))
        paths.append(path)
    fails_at = corrupt_basket(paths[BAD], "y", 2)
    X = np.stack([np.concatenate([d[k] for d in data[:5]]).astype(np.float64) for k in FEATURES], axis=1)
    label = (np.nan_to_num(X[:, 0]) * X[:, 2] > np.nan_to_num(X[:, 1])).astype(float)
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 4, "nthread": 1},
        xgb.DMatrix(X, label=label, feature_names=FEATURES, missing=np.nan),
        20,
    )
    model = str(where / "bdt.json")
    booster.save_model(model)
    return {"paths": paths, "data": data, "model": model, "fails_at": fails_at, "dir": where}


def expected_scores(hundred, i: int, stop=None) -> np.ndarray:
    forest = hepinfer.Forest.load(hundred["model"])
    return forest.predict({k: hundred["data"][i][k][:stop] for k in FEATURES})


def delivered(hundred, chunk: int) -> int:
    """Events of the bad file scored before its broken basket: the whole chunks before it."""
    return hundred["fails_at"] // chunk * chunk


def check_written(hundred, out: str, files_done, bad_events: int) -> dict:
    """Every scored file's events are in `out`, in order, with their ids and the right scores
    (the first `bad_events` of the bad file); returns the written arrays."""
    with uproot.open(out) as f:
        got = f["scores"].arrays(library="np")
        inputs = str(f["hepinfer_inputs"])
        failed = (
            f["hepinfer_failures"].arrays(library="np")
            if "hepinfer_failures" in f
            else {"path": [], "message": []}
        )
        failures = "\n".join(f"{p}\t{m}" for p, m in zip(failed["path"], failed["message"]))
    assert inputs.count("\n") == N_FILES - 1 and hundred["paths"][BAD] in inputs
    for i in files_done:
        rows = got["file_index"] == i
        data = hundred["data"][i]
        n = bad_events if i == BAD else len(data["x"])
        assert rows.sum() == n, i
        np.testing.assert_array_equal(got["entry"][rows], np.arange(n))
        np.testing.assert_array_equal(got["score"][rows], expected_scores(hundred, i, n))
        for k in IDS:
            assert got[k].dtype == data[k].dtype
            np.testing.assert_array_equal(got[k][rows], data[k][:n])
    assert set(np.unique(got["file_index"]).tolist()) == {i for i in files_done if i != BAD or bad_events}
    return {"arrays": got, "failures": failures}


def test_cli_skips_the_corrupted_file_and_scores_the_other_99(hundred, tmp_path, capsys):
    out = str(tmp_path / "scores.root")
    argv = ["score", hundred["model"], *hundred["paths"], "--tree", "Events", "-o", out]
    code = main([*argv, "--chunk", "300", "--on-error", "skip", "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 3  # documented: some files failed and were skipped, the rest was scored
    bad = hundred["paths"][BAD]
    assert "99 scored, 1 failed, 100 given" in printed
    assert f"FAILED    [{BAD}] {bad} after {delivered(hundred, 300)} entries" in printed
    assert "branch 'y'" in printed and printed.count("FAILED") == 1
    total = sum(len(d["x"]) for i, d in enumerate(hundred["data"]) if i != BAD) + delivered(hundred, 300)
    assert f"events    {total:,}" in printed
    written = check_written(hundred, out, range(N_FILES), delivered(hundred, 300))
    assert bad in written["failures"] and "branch 'y'" in written["failures"]
    # chunks given in bytes and a progress bar: the same scores
    out2 = str(tmp_path / "scores_bytes.root")
    assert main([*argv[:-1], out2, "--chunk", "20 kB", "--on-error", "skip"]) == 3
    captured = capsys.readouterr()
    assert "events/s" in captured.err and "read" in captured.err
    bad_events = int(re.search(rf"FAILED    \[{BAD}\] .* after (\d+) entries", captured.out).group(1))
    assert 0 <= bad_events <= hundred["fails_at"]
    again = check_written(hundred, out2, range(N_FILES), bad_events)
    good = written["arrays"]["file_index"] != BAD
    np.testing.assert_array_equal(
        again["arrays"]["score"][again["arrays"]["file_index"] != BAD], written["arrays"]["score"][good]
    )


def test_cli_stops_at_the_corrupted_file_keeping_what_was_scored(hundred, tmp_path):
    """The default (--on-error raise), in a fresh process: exit status 1, the bad file and
    branch named on stderr, and the scores written up to the failure kept in a valid file."""
    out = str(tmp_path / "scores.root")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hepinfer",
            "score",
            hundred["model"],
            *hundred["paths"],
            "-o",
            out,
            "--chunk",
            "500",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    bad = hundred["paths"][BAD]
    assert f"hepinfer: error: {bad}: branch 'y' of tree 'Events' cannot be read" in proc.stderr
    assert f"were written to {out}:scores" in proc.stderr
    check_written(hundred, out, range(BAD + 1), delivered(hundred, 500))


def test_python_api_skip_and_raise(hundred, tmp_path):
    paths = hundred["paths"]
    summary = score(hundred["model"], paths, tree="Events", chunk=400, on_error="skip", return_summary=True)
    assert summary.n_files_done == 99 and len(summary.failures) == 1
    (failure,) = summary.failures
    assert failure.source.index == BAD and failure.source.path == paths[BAD]
    assert failure.entry == delivered(hundred, 400)
    assert failure.error.branch == "y" and failure.error.file == paths[BAD]
    want = np.concatenate(
        [expected_scores(hundred, i, failure.entry if i == BAD else None) for i in range(N_FILES)]
    )
    np.testing.assert_array_equal(summary.scores, want)
    assert summary.events == len(want) == len(summary.entry)
    # on_error="raise": the error names the file and branch and carries what was written
    out = tmp_path / "partial.root"
    with pytest.raises(ReadError) as err:
        score(hundred["model"], paths, tree="Events", chunk=400, output=out)
    assert err.value.file == paths[BAD] and err.value.branch == "y"
    partial = err.value.summary
    assert partial.events == sum(len(d["x"]) for d in hundred["data"][:BAD]) + failure.entry
    check_written(hundred, str(out), range(BAD + 1), failure.entry)


# ------------------------------------------------------------------ memory over a long run


def resident_bytes() -> int:
    """This process's resident set size (psutil, or /proc/self/status)."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        return int(psutil.Process().memory_info().rss)
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    pytest.skip("no way to read the resident memory here (no psutil, no /proc)")


class MemoryProbe:
    """A scoring-protocol model that records the resident memory at every chunk, or with
    ``trace=True`` traces Python allocations (tracemalloc) from chunk 20 on."""

    def __init__(self, forest, trace: bool = False):
        self.forest = forest
        self.input_names = list(forest.feature_names)
        self.output_names = ["score"]
        self.trace = trace
        self.rss: list[int] = []
        self.chunks = 0
        self.first_numpy = 0

    def predict(self, inputs):
        if self.trace and self.chunks == 10:
            gc.collect()
            tracemalloc.start()
        if self.trace and self.chunks == 30:
            self.first_numpy = _numpy_bytes()
        if not self.trace:
            self.rss.append(resident_bytes())
        self.chunks += 1
        return self.forest.predict(dict(inputs), n_threads=1)


def _numpy_bytes() -> int:
    """Bytes of numpy array data allocated since tracemalloc started and still alive."""
    snap = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.DomainFilter(True, np.lib.tracemalloc_domain)]
    )
    return sum(t.size for t in snap.traces)


def _growth(values: np.ndarray) -> float:
    """Growth from the start to the end of a series, robust to spikes: the median of its last
    fifth minus the median of its first fifth."""
    k = max(1, len(values) // 5)
    return float(np.median(values[-k:]) - np.median(values[:k]))


def test_memory_stays_flat_over_hundreds_of_chunks(hundred, tmp_path):
    """Every good file twice (198 files, ~200k events) in chunks of 300 events, written to a
    ROOT file: after 100 chunks of warm-up, the resident memory grows by less than 5 MB over
    the next ~650 chunks (median of the last fifth minus median of the first fifth; measured
    2.2-2.5 MB). Then every good file once with tracemalloc: numpy arrays allocated after the
    first 30 chunks and still alive at the end stay under 1 MB (measured -0.2 MB). A leak of
    one chunk's arrays per chunk (~8 MB in all) measured 6.1-7.0 MB and 2.6-2.8 MB: it fails
    both; a leak of one open file per file would be ~100 MB."""
    good = [p for i, p in enumerate(hundred["paths"]) if i != BAD]
    forest = hepinfer.Forest.load(hundred["model"])
    probe = MemoryProbe(forest)
    gc.collect()
    summary = score(probe, good * 2, tree="Events", chunk=300, output=tmp_path / "long.root")
    assert summary.events == 2 * sum(len(d["x"]) for i, d in enumerate(hundred["data"]) if i != BAD)
    rss = np.array(probe.rss) / 1e6
    assert len(rss) > 600
    after_warm_up = rss[100:]
    growth = _growth(after_warm_up)
    traced = MemoryProbe(forest, trace=True)
    try:
        score(traced, good, tree="Events", chunk=300, output=tmp_path / "traced.root")
        gc.collect()
        numpy_held = (_numpy_bytes() - traced.first_numpy) / 1e6
    finally:
        tracemalloc.stop()
    print(
        f"RSS over {len(rss)} chunks: start {rss[0]:.1f} MB, after warm-up {after_warm_up[0]:.1f} MB, "
        f"max {rss.max():.1f} MB, end {rss[-1]:.1f} MB, growth after warm-up {growth:.2f} MB; "
        f"numpy data still held after {traced.chunks} chunks: {numpy_held:.3f} MB"
    )
    assert growth < 5, f"resident memory grew by {growth:.1f} MB after warm-up"
    assert numpy_held < 1, f"{numpy_held:.2f} MB of numpy arrays allocated while scoring are still held"
    assert os.path.getsize(tmp_path / "long.root") > 0
