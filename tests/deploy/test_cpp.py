"""The C++ side, driven from pytest: the ctest unit tests and an external CMake project
(tests/consumer, like treelite's example_app) built against the installed package with
find_package(hepinfer), its output compared with Python's."""

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
pytestmark = pytest.mark.skipif(CMAKE is None, reason="cmake not found")


def _run(cmd, **kw):
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def _configure_and_build(source: Path, build: Path) -> None:
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    _run(
        [
            CMAKE,
            "-S",
            str(source),
            "-B",
            str(build),
            *gen,
            "-DCMAKE_BUILD_TYPE=Release",
            f"-Dhepinfer_DIR={hepinfer.cmake_dir()}",
        ]
    )
    _run([CMAKE, "--build", str(build), "--parallel", str(os.cpu_count() or 2)])


def test_installed_cmake_package_exists():
    cmake_dir = Path(hepinfer.cmake_dir())
    assert (cmake_dir / "hepinferConfig.cmake").is_file()
    assert (cmake_dir / "hepinferConfigVersion.cmake").is_file()
    assert (Path(hepinfer.include_dir()) / "hepinfer" / "forest.hpp").is_file()
    out = _run([sys.executable, "-m", "hepinfer", "--cmake-dir"]).stdout.strip()
    assert Path(out) == cmake_dir


@pytest.fixture(scope="module")
def cpp_tests(tmp_path_factory):
    build = tmp_path_factory.mktemp("cpp_tests")
    _configure_and_build(TESTS / "cpp", build)
    return build


@pytest.mark.parametrize("avx2", ["default", "disabled"])
def test_ctest_unit_tests(cpp_tests, avx2):
    env = dict(os.environ)
    if avx2 == "disabled":
        env["HEPINFER_DISABLE_AVX2"] = "1"
    proc = _run(["ctest", "--test-dir", str(cpp_tests), "--output-on-failure"], env=env)
    assert "100% tests passed" in proc.stdout, proc.stdout


def test_consumer_project_matches_python(tmp_path):
    xgb = pytest.importorskip("xgboost")
    rng = np.random.default_rng()
    X = rng.normal(size=(400, 6)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(int)
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 4, "nthread": 1}, xgb.DMatrix(X, y), num_boost_round=20
    )
    model = tmp_path / "model.json"
    booster.save_model(model)
    rows = rng.normal(size=(50, 6)).astype(np.float32)
    csv = tmp_path / "rows.csv"
    np.savetxt(csv, rows, delimiter=",", fmt="%.9g")

    build = tmp_path / "build"
    _configure_and_build(TESTS / "consumer", build)
    exe = build / "example_app"
    out = _run([str(exe), str(model), str(csv)]).stdout
    cpp_scores = np.array([float(v) for v in out.split()])
    py_scores = hepinfer.Forest.load(model).predict(np.loadtxt(csv, delimiter=",", ndmin=2))
    np.testing.assert_array_equal(cpp_scores, py_scores)
    np.testing.assert_allclose(cpp_scores, booster.predict(xgb.DMatrix(rows)), rtol=1e-6, atol=1e-7)

    bad = _run_fail([str(exe), str(TESTS / "data" / "tmva" / "grad.xml"), str(csv)])
    assert "values, the model takes" in bad


def _run_fail(cmd):
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode != 0
    return proc.stderr
