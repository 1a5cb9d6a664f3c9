"""hepinfer score loses nothing and never misreports: the output appears at its path only
complete (written to a temporary file beside it, fsynced, renamed into place, the status the last
thing written), an input is never the output, an existing output is replaced only when asked,
SIGTERM/SIGINT stop cleanly without a traceback, a killed run leaves no output, and the status
says how the run ended (complete / complete: N files skipped / incomplete: why)."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

uproot = pytest.importorskip("uproot")
xgb = pytest.importorskip("xgboost")

import hepinfer
from hepinfer.cli import main
from hepinfer.io import ReadError
from hepinfer.scoring import OutputError, local, output, score
from tests.scoring.samples import corrupt_last_basket, write_flat

NAMES = ("a", "b", "c")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Two input files of 3000 and 2000 events, an xgboost model file on a, b, c."""
    where = tmp_path_factory.mktemp("safety")
    rng = np.random.default_rng(5)
    paths, data = [], []
    for i, n in enumerate((3000, 2000)):
        path = where / f"in{i}.root"
        data.append(write_flat(path, rng, n, extends=4, names=NAMES))
        paths.append(str(path))
    X = np.stack([data[0][k] for k in NAMES], axis=1)
    d = xgb.DMatrix(X, label=(X[:, 0] > X[:, 1]).astype(float), feature_names=list(NAMES))
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3, "nthread": 1}, d, 10)
    model = where / "m.json"
    booster.save_model(model)
    forest = hepinfer.Forest.load(str(model))
    want = np.concatenate([forest.predict({k: x[k] for k in NAMES}) for x in data])
    return {"paths": paths, "model": str(model), "forest": forest, "want": want, "dir": where}


def status(path) -> str:
    with uproot.open(path) as f:
        return str(f["hepinfer_status"])


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in Path(directory).iterdir() if ".incomplete-" in p.name)


# ------------------------------------------------------------------ 1. output = an input


@pytest.mark.parametrize("dask", [False, True])
def test_output_equal_to_an_input_is_refused_before_anything_is_written(setup, tmp_path, dask):
    src = tmp_path / "x.root"
    src.write_bytes(Path(setup["paths"][0]).read_bytes())
    before = src.read_bytes()
    for target in (src, tmp_path / "." / "x.root"):  # the same path, spelt another way
        with pytest.raises(OutputError, match="is also an input") as err:
            score(
                setup["model"],
                [setup["paths"][1], str(src)],
                tree="Events",
                output=target,
                overwrite=True,
                dask=dask,
            )
        assert "x.root" in str(err.value) and "were written" not in str(err.value)  # claims nothing
        assert src.read_bytes() == before  # untouched
    link = tmp_path / "link.root"  # a symlink to the input, and a hard link: the same file
    link.symlink_to(src)
    hard = tmp_path / "hard.root"
    os.link(src, hard)
    for target in (link, hard):
        with pytest.raises(OutputError, match="is also an input"):
            score(setup["model"], str(src), tree="Events", output=target, overwrite=True, dask=dask)
    assert src.read_bytes() == before and leftovers(tmp_path) == []


def test_cli_output_equal_to_input_exits_1_and_keeps_the_input(setup, tmp_path, capsys):
    src = tmp_path / "x.root"
    src.write_bytes(Path(setup["paths"][0]).read_bytes())
    before = src.read_bytes()
    pytest.importorskip("distributed")
    for extra in ([], ["--force"], ["--dask", "local:1"]):
        argv = [
            "score",
            setup["model"],
            str(src),
            "--tree",
            "Events",
            "-o",
            str(src),
            "--no-progress",
            *extra,
        ]
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert "is also an input" in err and "has no tree" not in err
        assert src.read_bytes() == before


# ------------------------------------------------------------------ 2. existing output


def test_existing_output_is_refused_without_overwrite(setup, tmp_path, capsys):
    out = tmp_path / "scores.root"
    out.write_text("my notes, not a ROOT file")
    with pytest.raises(OutputError, match="exists") as err:
        score(setup["model"], setup["paths"], tree="Events", output=out)
    assert "overwrite=True" in str(err.value)
    assert out.read_text() == "my notes, not a ROOT file"
    argv = ["score", setup["model"], *setup["paths"], "--tree", "Events", "-o", str(out), "--no-progress"]
    assert main(argv) == 1
    assert "--force" in capsys.readouterr().err
    assert out.read_text() == "my notes, not a ROOT file"
    assert main([*argv, "--force"]) == 0
    assert status(out) == "complete"
    with uproot.open(out) as f:
        np.testing.assert_array_equal(f["scores"]["score"].array(library="np"), setup["want"])
    summary = score(setup["model"], setup["paths"], tree="Events", output=out, overwrite=True)
    assert summary.events == 5000 and status(out) == "complete" and leftovers(tmp_path) == []


def test_output_that_is_a_directory_is_refused(setup, tmp_path):
    with pytest.raises(OutputError, match="directory"):
        score(setup["model"], setup["paths"], tree="Events", output=tmp_path, overwrite=True)


# ------------------------------------------------------------------ 3. killed runs (SIGKILL, SIGTERM, SIGINT)

LONG_RUN = textwrap.dedent(
    """
    import sys, hepinfer
    model, out, chunk, *files = sys.argv[1:]
    print("start", flush=True)
    hepinfer.score(model, files, tree="Events", output=out, chunk=int(chunk), n_threads=1)
    print("done", flush=True)
    """
)


@pytest.fixture(scope="module")
def big(setup, tmp_path_factory):
    """A larger input (400 000 events in 40 baskets), scored in 2000-event chunks: a few seconds."""
    where = tmp_path_factory.mktemp("big")
    path = where / "big.root"
    write_flat(path, np.random.default_rng(9), 400_000, extends=40, names=NAMES)
    return str(path)


def _start(setup, big, out, chunk=2000):
    return subprocess.Popen(
        [sys.executable, "-c", LONG_RUN, setup["model"], str(out), str(chunk), big, big],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_started(proc) -> float:
    line = proc.stdout.readline()
    assert line.strip() == "start", proc.stderr.read()
    return time.perf_counter()


@pytest.mark.slow
def test_sigkill_at_random_moments_leaves_no_output_or_a_complete_one(setup, big, tmp_path):
    # one undisturbed run gives the duration (and the reference output)
    ref = tmp_path / "ref.root"
    proc = _start(setup, big, ref)
    t0 = _wait_started(proc)
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    duration = time.perf_counter() - t0
    proc.stdout.close()
    proc.stderr.close()
    with uproot.open(ref) as f:
        n_ref = f["scores"].num_entries
    assert status(ref) == "complete" and n_ref == 800_000
    moments = np.random.default_rng(2026).uniform(0.0, 1.15 * duration, 20)
    outcomes = {"absent": 0, "complete": 0}
    for i, moment in enumerate(moments):
        out = tmp_path / f"killed{i}.root"
        proc = _start(setup, big, out)
        t0 = _wait_started(proc)
        time.sleep(max(0.0, moment - (time.perf_counter() - t0)))
        proc.kill()
        proc.wait(timeout=60)
        proc.stdout.close()
        proc.stderr.close()
        if out.exists():  # only ever a finished file, whose status says so
            assert status(out) == "complete"
            with uproot.open(out) as f:
                assert f["scores"].num_entries == n_ref
            outcomes["complete"] += 1
        else:
            outcomes["absent"] += 1
    # most kills land mid-run (the sample means something); a loaded machine can make the reference
    # run slow and the killed ones fast, hence not all
    assert outcomes["absent"] >= 5, (outcomes, duration)
    for name in leftovers(tmp_path):  # SIGKILL cannot be caught: the temporary file may stay, named so
        assert name.startswith("killed") and ".root.incomplete-" in name


def _signal_mid_run(tmp_path, options: list, sig: int, settle: float) -> tuple[int, str, str]:
    """`hepinfer score ... -o tmp_path/scores.root OPTIONS` in a subprocess, sent `sig` once its
    temporary output exists (scoring has begun) and `settle` seconds more: (exit code, stdout, stderr)."""
    argv = [sys.executable, "-m", "hepinfer", "score", *options, "-o", str(tmp_path / "scores.root")]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while not leftovers(tmp_path):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.02)
    time.sleep(settle)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    return proc.returncode, stdout, stderr


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_cli_stops_cleanly_on_sigterm_and_sigint(setup, big, tmp_path, sig, code):
    out = tmp_path / "scores.root"
    options = [
        setup["model"],
        big,
        big,
        "--tree",
        "Events",
        "--chunk",
        "2000",
        "--threads",
        "1",
        "--no-progress",
    ]
    returncode, stdout, stderr = _signal_mid_run(tmp_path, options, sig, settle=0.3)
    assert returncode == code, (stdout, stderr)
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "stopped by" in lines[0] and "events" in lines[0] and "nothing written" in lines[0]
    assert not out.exists() and leftovers(tmp_path) == []


def test_keyboard_interrupt_in_score_removes_the_temporary_file(setup, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = local._evaluate

    def interrupted(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(local, "_evaluate", interrupted)
    out = tmp_path / "scores.root"
    with pytest.raises(KeyboardInterrupt) as err:
        score(setup["model"], setup["paths"], tree="Events", output=out, chunk=500)
    assert not out.exists() and leftovers(tmp_path) == []
    assert err.value.hepinfer_summary.events == 1000  # two chunks were scored before it


# ------------------------------------------------------------------ 4. disk full


def test_disk_full_in_final_flush_leaves_no_output_claiming_complete(setup, tmp_path, monkeypatch):
    real = output._RootWriter.flush

    def full(self):
        if self.n_pending and getattr(self, "finishing", False):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self)

    monkeypatch.setattr(output._RootWriter, "flush", full)
    out = tmp_path / "scores.root"
    with pytest.raises(OutputError, match="No space left on device") as err:
        score(setup["model"], setup["paths"], tree="Events", output=out, chunk=500)
    assert "nothing was written" in str(err.value)
    assert not out.exists() and leftovers(tmp_path) == []


FILE_SIZE_LIMITED = textwrap.dedent(
    """
    import resource, signal, sys, hepinfer
    from hepinfer.scoring import OutputError
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG, like a full disk
    limit = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    model, out, *files = sys.argv[2:]
    try:
        hepinfer.score(model, files, tree="Events", output=out, chunk=1000, n_threads=1)
    except OutputError as err:
        print("OutputError:", err)
        sys.exit(7)
    """
)


def test_real_write_failure_from_a_file_size_limit(setup, big, tmp_path):
    out = tmp_path / "scores.root"
    proc = subprocess.run(
        [sys.executable, "-c", FILE_SIZE_LIMITED, str(400_000), setup["model"], str(out), big],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 7, proc.stdout + proc.stderr
    assert "nothing was written" in proc.stdout
    assert not out.exists() and leftovers(tmp_path) == []


# ------------------------------------------------------------------ 5. skipped files, failures tree, raise


def _bad_inputs(setup, tmp_path) -> list[str]:
    (tmp_path / "text.root").write_text("not ROOT")
    corrupt = tmp_path / "corrupt.root"
    corrupt.write_bytes(Path(setup["paths"][0]).read_bytes())
    corrupt_last_basket(corrupt, "b")
    return [setup["paths"][0], str(tmp_path / "text.root"), str(corrupt), setup["paths"][1]]


@pytest.mark.parametrize("dask", [False, True])
def test_skipped_files_are_in_the_status_and_in_a_failures_tree(setup, tmp_path, dask):
    if dask:
        pytest.importorskip("dask_awkward")
    files = _bad_inputs(setup, tmp_path)
    out = tmp_path / "skip.root"
    summary = score(setup["model"], files, tree="Events", output=out, on_error="skip", chunk=500, dask=dask)
    assert len(summary.failures) == 2
    assert status(out) == "complete: 2 files skipped, 1 of them part-way (see hepinfer_failures)"
    with uproot.open(out) as f:
        failures = f["hepinfer_failures"]
        assert isinstance(failures, uproot.TTree)
        got = failures.arrays(library="np")
    assert list(got["file_index"]) == [1, 2]
    assert list(got["path"]) == files[1:3]
    assert got["entry"][0] == 0 and got["entry"][1] > 0
    assert "not ROOT" in got["message"][0] and "'b'" in got["message"][1]
    assert got["file_index"].dtype == np.int32 and got["entry"].dtype == np.int64


def test_one_skipped_file_status(setup, tmp_path):
    (tmp_path / "text.root").write_text("not ROOT")
    out = tmp_path / "one.root"
    score(
        setup["model"],
        [setup["paths"][0], str(tmp_path / "text.root")],
        tree="Events",
        output=out,
        on_error="skip",
    )
    assert status(out) == "complete: 1 file skipped (see hepinfer_failures)"


def test_no_failures_tree_when_nothing_failed(setup, tmp_path):
    out = tmp_path / "ok.root"
    score(setup["model"], setup["paths"], tree="Events", output=out)
    with uproot.open(out) as f:
        assert "hepinfer_failures" not in f and str(f["hepinfer_status"]) == "complete"


@pytest.mark.parametrize("dask", [False, True])
def test_raise_on_a_file_found_bad_up_front_writes_no_output(setup, tmp_path, dask):
    """As the README says: files are checked before anything is scored, and a bad one found
    then stops the run before any output is written (nothing was scored)."""
    if dask:
        pytest.importorskip("dask_awkward")
    files = _bad_inputs(setup, tmp_path)
    out = tmp_path / "never.root"
    with pytest.raises(ReadError, match="text.root") as err:
        score(setup["model"], files, tree="Events", output=out, dask=dask)
    assert "no output was written" in str(err.value)
    assert not out.exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("dask", [False, True])
def test_raise_part_way_keeps_the_scores_so_far_with_an_incomplete_status(setup, tmp_path, dask):
    if dask:
        pytest.importorskip("dask_awkward")
    files = _bad_inputs(setup, tmp_path)
    del files[1]  # the corrupt basket is found only while reading
    out = tmp_path / "partial.root"
    with pytest.raises(ReadError, match="corrupt.root") as err:
        score(setup["model"], files, tree="Events", output=out, chunk=500, dask=dask)
    assert str(out) in str(err.value)
    got = status(out)
    assert got.startswith("incomplete: ") and "corrupt.root" in got
    with uproot.open(out) as f:
        n = f["scores"].num_entries
        assert list(f["hepinfer_failures"]["path"].array(library="np")) == [files[1]]
    assert n == err.value.summary.events and 3000 <= n < 6000
    assert leftovers(tmp_path) == []


# ------------------------------------------------------------------ 6. Ctrl-C from the command line


def test_cli_keyboard_interrupt_is_one_line_exit_130(setup, tmp_path, capsys, monkeypatch):
    calls = {"n": 0}
    real = local._evaluate

    def interrupted(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(local, "_evaluate", interrupted)
    out = tmp_path / "scores.root"
    code = main(
        [
            "score",
            setup["model"],
            *setup["paths"],
            "--tree",
            "Events",
            "-o",
            str(out),
            "--chunk",
            "700",
            "--no-progress",
        ]
    )
    assert code == 130
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    assert "stopped by Ctrl-C (SIGINT) after 700 events" in err and "nothing written" in err
    assert not out.exists() and leftovers(tmp_path) == []


@pytest.mark.slow
def test_cli_sigterm_on_a_dask_cluster_writes_nothing(setup, big, tmp_path):
    """The Dask path's guarantees: SIGTERM while a 1-worker LocalCluster scores stops the run,
    cancels the work, removes the temporary output and exits 143 with one line."""
    pytest.importorskip("distributed")
    out = tmp_path / "scores.root"
    options = [setup["model"], big, big, big, "--tree", "Events", "--chunk", "2000", "--dask", "local:1"]
    returncode, stdout, stderr = _signal_mid_run(
        tmp_path, [*options, "--no-progress"], signal.SIGTERM, settle=0.5
    )
    assert returncode == 143, (stdout, stderr)
    assert "Traceback" not in stderr
    assert "hepinfer: stopped by SIGTERM after" in stderr and "nothing written" in stderr
    assert not out.exists() and leftovers(tmp_path) == []
