"""The C interface of k-fold bundles (hepinfer_kfold_* in hepinfer_c.h): a C99 program
(tests/capi/kfold.c) built against the installed CMake package scores events with the member of
their fold exactly as hepinfer.KFold does (float and double rows, negative event numbers), and its
error paths give the documented status codes and messages."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import hepinfer
from tests.deploy.kfold_models import FEATURES, events, fold_of, xgboost_bundle

TESTS = Path(__file__).resolve().parents[1]
CMAKE = shutil.which("cmake")
pytestmark = pytest.mark.skipif(
    CMAKE is None or shutil.which("cc") is None, reason="cmake or a C compiler not found"
)


def _run(cmd):
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_c_program_matches_python(tmp_path, rng):
    pytest.importorskip("xgboost")
    build = tmp_path / "build"
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    _run([CMAKE, "-S", str(TESTS / "capi"), "-B", str(build), *gen, f"-Dhepinfer_DIR={hepinfer.cmake_dir()}"])
    _run([CMAKE, "--build", str(build), "--target", "capi_kfold", "--parallel", str(os.cpu_count() or 2)])
    paths = xgboost_bundle(tmp_path / "bundle", 3, seed=23)
    d = events(rng, 300)
    d["event"] = rng.integers(-(10**6), 10**6, 300)  # exact as doubles in the csv; negative ones too
    table = np.column_stack([d[f] for f in FEATURES] + [d["event"]])
    np.savetxt(tmp_path / "rows.csv", table, delimiter=",", fmt="%.17g")
    table = np.loadtxt(tmp_path / "rows.csv", delimiter=",")
    X, ev = table[:, :3], table[:, 3].astype(np.int64)
    lines: dict[str, list[str]] = {}
    for line in _run(
        [str(build / "capi_kfold"), str(tmp_path / "bundle"), str(tmp_path / "rows.csv")]
    ).stdout.splitlines():
        tag, _, rest = line.partition(" ")
        lines.setdefault(tag, []).append(rest)
    assert lines["info"] == ["3 3 1"]
    np.testing.assert_array_equal([int(v) for v in lines["fold"]], fold_of(ev, 3))
    kf = hepinfer.KFold.load(tmp_path / "bundle")
    np.testing.assert_array_equal([float(v) for v in lines["batch"]], kf.predict(X.astype(np.float32), ev))
    np.testing.assert_array_equal([float(v) for v in lines["batchd"]], kf.predict(X, ev))
    forests = [hepinfer.Forest.load(p) for p in paths]  # and member by member
    want = np.array([forests[f].predict(X[i : i + 1])[0] for i, f in enumerate(fold_of(ev, 3))])
    np.testing.assert_array_equal([float(v) for v in lines["batchd"]], want)
    errors = [e.split(" ", 1) for e in lines["error"]]
    assert errors == [
        ["2", "rows have 4 features but the k-fold model expects 3"],
        ["2", "out has room for 299 values, 300 are needed"],
        ["1", "hepinfer_kfold_predict_float: argument `event_numbers` is NULL"],
        ["2", "output must be HEPINFER_OUTPUT_PROBABILITY (0) or HEPINFER_OUTPUT_MARGIN (1), not 7"],
        ["3", "no/such/bundle: cannot open the k-fold manifest"],
        ["1", "hepinfer_kfold_n_folds: argument `kfold` is NULL"],
    ]
