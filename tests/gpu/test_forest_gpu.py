"""Forest evaluation on a CUDA device against the CPU engine (decisions and margins bit-identical,
transformed outputs within a few ulp), on fresh random data with NaN and values exactly on the
split thresholds. Skipped without a GPU (see conftest.py)."""

from __future__ import annotations

import os

import numpy as np
import pytest

import hepinfer

pytestmark = pytest.mark.gpu
DATA = os.path.join(os.path.dirname(__file__), "..", "data")


def _grid_data(rng, n, d, nan_fraction=0.1):
    """Values on a coarse grid (so trained thresholds are hit exactly), NaN, and +-inf."""
    X = np.round(rng.normal(size=(n, d)) * 4) / 4
    X[rng.random((n, d)) < nan_fraction] = np.nan
    X[rng.random((n, d)) < 0.01] = np.inf
    X[rng.random((n, d)) < 0.01] = -np.inf
    return X


def _xgboost_forest(rng, objective, n_classes=None):
    xgb = pytest.importorskip("xgboost")
    X = _grid_data(rng, 2000, 12)
    if n_classes:
        y = rng.integers(0, n_classes, size=2000)
    elif objective.startswith("binary"):
        y = (np.nan_to_num(X[:, 0]) + rng.normal(size=2000) > 0).astype(float)
    else:
        y = np.nan_to_num(X[:, 1]) * 2 + rng.normal(size=2000)
    params = {"objective": objective, "max_depth": int(rng.integers(3, 9)), "eta": 0.3, "tree_method": "hist"}
    if n_classes:
        params["num_class"] = n_classes
    booster = xgb.train(params, xgb.DMatrix(X, label=y), num_boost_round=int(rng.integers(10, 60)))
    return hepinfer.Forest.load(booster)


def _check_equal(forest, X, atol_ulps=4):
    for output in ("margin", "probability"):
        cpu = forest.predict(X, output=output)
        gpu = forest.predict(X, output=output, device="cuda")
        assert gpu.shape == cpu.shape
        if output == "margin":
            np.testing.assert_array_equal(gpu, cpu)  # bit-identical: same decisions, same summation order
        else:
            np.testing.assert_array_max_ulp(gpu, cpu, maxulp=atol_ulps)


@pytest.mark.parametrize(
    "objective", ["binary:logistic", "reg:squarederror", "multi:softprob", "multi:softmax"]
)
def test_xgboost_matches_cpu(rng, objective):
    forest = _xgboost_forest(rng, objective, n_classes=4 if objective.startswith("multi") else None)
    X = _grid_data(rng, 5000, 12)
    _check_equal(forest, X)
    _check_equal(forest, X.astype(np.float32))
    _check_equal(forest, np.asfortranarray(X))  # strided input


@pytest.mark.parametrize("name", ["binary_categorical.txt", "multiclass.txt"])
def test_lightgbm_matches_cpu(rng, name):
    forest = hepinfer.Forest.load(os.path.join(DATA, "lightgbm", name))
    X = _grid_data(rng, 3000, forest.n_features)
    X[:, 0] = np.where(
        rng.random(3000) < 0.5, rng.integers(-2, 40, size=3000), X[:, 0]
    )  # category-like values
    _check_equal(forest, X)
    _check_equal(forest, X.astype(np.float32))


def test_empty_batch_and_single_row(rng):
    forest = _xgboost_forest(rng, "binary:logistic")
    empty = forest.predict(np.empty((0, 12)), device="cuda")
    assert empty.shape == (0,)
    X = _grid_data(rng, 1, 12)
    np.testing.assert_array_equal(
        forest.predict(X, output="margin", device="cuda"), forest.predict(X, output="margin")
    )


def test_wide_rows_bypass_shared_memory(rng):
    """More features than a shared-memory tile holds: the unstaged kernel path."""
    xgb = pytest.importorskip("xgboost")
    X = _grid_data(rng, 1500, 700, nan_fraction=0.05)
    y = (np.nan_to_num(X[:, 3]) > 0).astype(float)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 6}, xgb.DMatrix(X, label=y), 20)
    forest = hepinfer.Forest.load(booster)
    _check_equal(forest, X)
    _check_equal(forest, X.astype(np.float32))


def test_torch_cuda_input_stays_on_device(rng, torch_cuda):
    torch = torch_cuda
    forest = _xgboost_forest(rng, "multi:softprob", n_classes=3)
    X = _grid_data(rng, 4000, 12).astype(np.float32)
    t = torch.from_numpy(X).cuda()
    got = forest.predict(t, output="margin", device="cuda")
    assert isinstance(got, torch.Tensor) and got.device.type == "cuda" and got.dtype == torch.float64
    np.testing.assert_array_equal(got.cpu().numpy(), forest.predict(X, output="margin"))
