"""hepinfer's C interface (hepinfer_c.h): a pure C99 program (tests/capi) built against the
installed CMake package with find_package(hepinfer); its predictions (batch, single row,
float and double, margins, leaf indices) must equal Python's, and its error paths (bad file,
wrong sizes, NULL handles, bad enums) must give the documented status codes and messages."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import hepinfer

TESTS = Path(__file__).resolve().parents[1]  # the tests/ folder
CMAKE = shutil.which("cmake")
pytestmark = pytest.mark.skipif(
    CMAKE is None or shutil.which("cc") is None, reason="cmake or a C compiler not found"
)

# status codes of hepinfer_c.h
OK, NULL_ARGUMENT, INPUT, MODEL_FORMAT = 0, 1, 2, 3


def _run(cmd, **kw):
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


@pytest.fixture(scope="module")
def capi_exe(tmp_path_factory):
    build = tmp_path_factory.mktemp("capi")
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    _run(
        [
            CMAKE,
            "-S",
            str(TESTS / "capi"),
            "-B",
            str(build),
            *gen,
            "-DCMAKE_BUILD_TYPE=Release",
            f"-Dhepinfer_DIR={hepinfer.cmake_dir()}",
        ]
    )
    _run([CMAKE, "--build", str(build), "--parallel", str(os.cpu_count() or 2)])
    return build / "capi_test"


def _parse(stdout: str) -> dict:
    out: dict = {}
    for line in stdout.splitlines():
        tag, _, rest = line.partition(" ")
        out.setdefault(tag, []).append(rest)
    return out


def _values(lines) -> np.ndarray:
    return np.array([[float(v) for v in line.split(",")] for line in lines])


def _models(tmp_path, rng):
    xgb = pytest.importorskip("xgboost")
    X = rng.normal(size=(600, 5)).astype(np.float32)
    X[rng.random(X.shape) < 0.1] = np.nan
    z = np.nan_to_num(X[:, 0]) + np.nan_to_num(X[:, 1]) * np.nan_to_num(X[:, 2])
    binary = xgb.train(
        {"objective": "binary:logistic", "max_depth": 4, "nthread": 1}, xgb.DMatrix(X, z > 0), 15
    )
    multi = xgb.train(
        {"objective": "multi:softprob", "num_class": 3, "max_depth": 3, "nthread": 1},
        xgb.DMatrix(X, np.digitize(z, [-0.5, 0.5])),
        10,
    )
    binary.save_model(tmp_path / "binary.json")
    multi.save_model(tmp_path / "multi.ubj")
    return [tmp_path / "binary.json", tmp_path / "multi.ubj", TESTS / "data" / "tmva" / "fisher.xml"]


def test_c_program_matches_python(capi_exe, tmp_path, rng):
    for model in _models(tmp_path, rng):
        forest = hepinfer.Forest.load(model)
        rows = rng.normal(size=(40, forest.n_features))
        rows[rng.random(rows.shape) < 0.1] = np.nan
        rows[3, 0] = np.inf
        csv = tmp_path / "rows.csv"
        np.savetxt(csv, rows, delimiter=",", fmt="%.17g")  # "nan"/"inf" are read back by fscanf
        rows = np.loadtxt(csv, delimiter=",", ndmin=2)
        proc = _run([str(capi_exe), str(model), str(csv)])
        got = _parse(proc.stdout)
        info = [int(v) for v in got["info"][0].split()]
        assert info == [forest.n_features, forest.n_outputs(), forest.n_outputs("margin"), forest.n_trees]
        expected = forest.predict(rows).reshape(len(rows), -1)
        np.testing.assert_array_equal(_values(got["batch"]), expected)
        np.testing.assert_array_equal(_values(got["one"]), expected)
        rows32 = rows.astype(np.float32)
        np.testing.assert_array_equal(_values(got["onef"]), forest.predict(rows32).reshape(len(rows), -1))
        np.testing.assert_array_equal(
            _values(got["margin"]), forest.predict(rows32, output="margin").reshape(len(rows), -1)
        )
        np.testing.assert_array_equal(_values(got["leaf"]).astype(np.int32), forest.predict_leaf(rows))
        assert got["checks"] == ["ok"], proc.stderr


def test_c_error_paths(capi_exe, tmp_path, rng):
    model = _models(tmp_path, rng)[0]
    csv = tmp_path / "rows.csv"
    np.savetxt(csv, rng.normal(size=(5, 5)), delimiter=",")
    proc = _run([str(capi_exe), str(model), str(csv)])
    errors = [line.split(" ", 1) for line in _parse(proc.stdout)["error"]]
    status = [int(e[0]) for e in errors]
    messages = [e[1] if len(e) > 1 else "" for e in errors]
    assert status == [
        MODEL_FORMAT,
        MODEL_FORMAT,
        MODEL_FORMAT,
        INPUT,
        NULL_ARGUMENT,
        NULL_ARGUMENT,
        INPUT,
        INPUT,
        INPUT,
        INPUT,
        INPUT,
        NULL_ARGUMENT,
        NULL_ARGUMENT,
        NULL_ARGUMENT,
        NULL_ARGUMENT,
        NULL_ARGUMENT,
        OK,
    ]
    assert "/nonexistent/model.json" in messages[0] and "cannot open" in messages[0]
    assert "tmva_cut_op" in messages[3]
    assert "`path` is NULL" in messages[4] and "hepinfer_forest_load" in messages[4]
    assert "6 features but the model expects 5" in messages[6]
    assert "room for" in messages[7]
    assert "HEPINFER_OUTPUT_PROBABILITY" in messages[8]
    assert "`forest` is NULL" in messages[11]
    assert "`row` is NULL" in messages[12]
    assert "`out` is NULL" in messages[13]
    assert all(m.strip() for m in messages[:-1])
    assert _parse(proc.stdout)["checks"] == ["ok"]


def test_c_program_reports_a_bad_model(capi_exe, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"learner": {"gradient_booster": ')
    csv = tmp_path / "rows.csv"
    csv.write_text("1,2\n")
    proc = subprocess.run([str(capi_exe), str(bad), str(csv)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert "cannot load" in proc.stderr and "bad.json" in proc.stderr and "model format error" in proc.stderr


def test_c_last_error_is_per_thread(capi_exe):
    """8 threads fail at the same moments, each with its own message (a file path or a feature
    count only it uses), and each must read back its own: hepinfer_last_error is per thread."""
    proc = _run(
        [str(capi_exe), "--error-threads", str(TESTS / "data" / "xgboost" / "xgb2.1.4_multi_softprob.json")]
    )
    assert _parse(proc.stdout)["error-threads"] == ["ok"], proc.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS is enforced on Linux")
def test_c_many_threads_under_a_virtual_memory_limit(capi_exe):
    """n_threads = 400 under an address-space limit that leaves room for only a few dozen thread
    stacks: the C API must predict on the threads that started (it used to abort: SIGABRT)."""
    import resource

    limit = 320 << 20  # the program itself needs ~30 MiB; each thread stack takes 8 MiB

    def limit_address_space():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    model = TESTS / "data" / "xgboost" / "xgb2.1.4_multi_softprob.json"
    proc = subprocess.run(
        [str(capi_exe), "--n-threads", "400", str(model), "60000"],
        capture_output=True,
        text=True,
        preexec_fn=limit_address_space,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert _parse(proc.stdout)["n-threads"] == ["ok"]
