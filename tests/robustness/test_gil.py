"""The C++ kernels that claim to release the GIL (py::gil_scoped_release in cpp/bindings) really
do: while one runs in a worker thread, a pure-Python loop in the main thread keeps running. With
the GIL held the main thread would stand still for the whole call; comparing results (what the
thread-safety tests do) cannot tell the difference."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import hepinfer
from hepinfer import _core

TESTS = Path(__file__).resolve().parents[1]  # the tests/ folder
MIN_CALL_S = 0.2  # each call is made at least this long, so a held GIL shows as a long stall


def _longest_stall(call) -> tuple[float, float]:
    """Run ``call()`` in a worker thread while the main thread counts in a pure-Python loop:
    (longest gap between two iterations of the loop while the call ran, duration of the call)."""
    done = threading.Event()
    box: dict = {}

    def worker():
        box["t0"] = time.perf_counter()
        try:
            call()
        finally:
            box["t1"] = time.perf_counter()
            done.set()

    stamps = []
    t = threading.Thread(target=worker)
    t.start()
    while not done.is_set():
        stamps.append(time.perf_counter())
    t.join()
    s = np.array(stamps)
    s = s[(s >= box["t0"]) & (s <= box["t1"])]
    edges = np.concatenate([[box["t0"]], s, [box["t1"]]])
    return float(np.diff(edges).max()), box["t1"] - box["t0"]


MAX_ITEMS = 1 << 24  # inputs stay near 2 GB at most on a fast machine (jagged: ~140 B per event)


def _sized(make, n0: int, max_n: int = MAX_ITEMS):
    """make(n) -> call; doubles n until one call takes at least MIN_CALL_S, or n reaches max_n
    (a fast kernel on a fast machine would otherwise double its input into tens of GB): then a
    call of at least MIN_CALL_S / 4 still shows a held GIL as a stall of about its length."""
    n, last = n0, 0.0
    while True:
        call = make(n)
        t0 = time.perf_counter()
        call()
        last = time.perf_counter() - t0
        if last >= MIN_CALL_S:
            return call
        if 2 * n > max_n:
            break
        n *= 2
    if last >= MIN_CALL_S / 4:
        return call
    pytest.fail(f"could not make the call last {MIN_CALL_S / 4} s with {n} items")


# ---------------------------------------------------------------- the calls
def _chain_forest(depth: int = 3000) -> hepinfer.Forest:
    """An XGBoost model with one chain tree `depth` levels deep: each row walks thousands of nodes."""
    model = json.loads((TESTS / "data" / "xgboost" / "xgb2.1.4_binary_logistic.json").read_text())
    gb = model["learner"]["gradient_booster"]["model"]
    n = 2 * depth + 1
    left, right, parents, cond = [-1] * n, [-1] * n, [2147483647] * n, [0.01] * n
    for d in range(depth):
        i = 2 * d
        left[i], right[i], cond[i] = i + 1, i + 2, -1.0 + d / depth
        parents[i + 1] = parents[i + 2] = i
    gb["trees"].append(
        {
            "base_weights": cond,
            "categories": [],
            "categories_nodes": [],
            "categories_segments": [],
            "categories_sizes": [],
            "default_left": [0] * n,
            "id": len(gb["trees"]),
            "left_children": left,
            "loss_changes": [0.0] * n,
            "parents": parents,
            "right_children": right,
            "split_conditions": cond,
            "split_indices": [0] * n,
            "split_type": [0] * n,
            "sum_hessian": [1.0] * n,
            "tree_param": {
                "num_deleted": "0",
                "num_feature": model["learner"]["learner_model_param"]["num_feature"],
                "num_nodes": str(n),
                "size_leaf_vector": "1",
            },
        }
    )
    k = len(gb["trees"])
    gb["gbtree_model_param"]["num_trees"] = str(k)
    gb["tree_info"] = [0] * k
    gb["iteration_indptr"] = list(range(k + 1))
    return hepinfer.Forest.load(json.dumps(model).encode(), format="xgboost-json")


def _jagged(rng, n_events: int, n_columns: int = 3, max_count: int = 12):
    counts = rng.integers(0, max_count, n_events)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    cols = [rng.normal(size=int(offsets[-1])) for _ in range(n_columns)]
    return _core.JaggedView(offsets, cols, [f"c{j}" for j in range(n_columns)])


def _forest_predict(rng):
    forest = _chain_forest()

    def make(n):
        X = rng.uniform(-1, 0.99, size=(n, forest.n_features))
        return lambda: forest._core.predict(X, "probability", 1)

    return make, 2000


def _forest_predict_leaf(rng):
    forest = _chain_forest()

    def make(n):
        X = rng.uniform(-1, 0.99, size=(n, forest.n_features))
        return lambda: forest._core.predict_leaf(X, 1)

    return make, 2000


def _nn_predict(rng):
    model = hepinfer.Model.load(TESTS / "data" / "onnx" / "mlp_3_4_2.onnx")

    def make(n):
        X = rng.normal(size=(n, 3)).astype(np.float32)
        return lambda: model._core.predict_rows(X, 1)

    return make, 200_000


def _nn_predict_list(rng):
    model = hepinfer.Model.load(TESTS / "data" / "onnx" / "mlp_3_4_2.onnx")

    def make(n):
        X = rng.normal(size=(n, 3)).astype(np.float32)
        return lambda: model._core.predict([X], 1)

    return make, 200_000


def _gather(rng):
    def make(n):
        view = _jagged(rng, n)
        index, counts = _core.jagged_top_k_indices(view, 0, 3, False, 1)
        return lambda: _core.jagged_gather(view, 1, index, counts, "float64", 1)

    return make, 200_000


def _disco(rng):
    def make(n):
        x, y = rng.normal(size=n), rng.normal(size=n)
        return lambda: _core.distance_stats(x, y, None, False, 1, True)

    return make, 100_000


def _jagged_call(fn, max_count: int = 12, max_n: int = MAX_ITEMS):
    def factory(rng):
        def make(n):
            view = _jagged(rng, n, max_count=max_count)
            return lambda: fn(view)

        return make, 200_000, max_n

    return factory


def _elementwise(fn):
    def factory(rng):
        def make(n):
            a = [rng.uniform(0.5, 2.0, n) for _ in range(4)]
            a[3] = a[3] + 3.0  # energy above |p|
            return lambda: fn(*a)

        return make, 1_000_000

    return factory


CALLS = {
    "forest_predict": _forest_predict,
    "forest_predict_leaf": _forest_predict_leaf,
    "nn_predict_rows": _nn_predict,
    "nn_predict": _nn_predict_list,
    "distance_stats": _disco,
    "jagged_pad": _jagged_call(lambda v: _core.jagged_pad(v, 8, 0.0, "float64", "events", 1)),
    "jagged_leading": _jagged_call(
        lambda v: _core.jagged_leading(v, 0, 3, False, 0.0, "float64", "events", 1)
    ),
    "jagged_top_k_indices": _jagged_call(lambda v: _core.jagged_top_k_indices(v, 0, 3, False, 1)),
    "jagged_gather": _gather,
    "jagged_reduce": _jagged_call(lambda v: _core.jagged_reduce(v, 0, "sum", 0.0, 1)),
    # counts read only the offsets: empty jets (24 B per event with the result) let this fastest
    # kernel run long enough without gigabytes of content
    "jagged_counts": _jagged_call(lambda v: _core.jagged_counts(v, 1), max_count=1, max_n=1 << 27),
    "jagged_min_delta_r": _jagged_call(lambda v: _core.jagged_min_delta_r(v, 0, 1, v, 1, 2, 0.0, 1)),
    "to_pt_eta_phi_m": _elementwise(lambda a, b, c, d: _core.to_pt_eta_phi_m(a, b, c, d, 1)),
    "to_px_py_pz_e": _elementwise(lambda a, b, c, d: _core.to_px_py_pz_e(a, b, c, d, 1)),
    "delta_r": _elementwise(lambda a, b, c, d: _core.delta_r(a, b, c, d, 1)),
}


@pytest.mark.parametrize("name", list(CALLS))
def test_long_cpp_call_releases_the_gil(rng, name):
    make, n0, *max_n = CALLS[name](rng)
    call = _sized(make, n0, *max_n)
    stall, duration = _longest_stall(call)
    print(f"{name}: call {duration:.3f} s, longest stall of the Python thread {stall:.3f} s")
    # a held GIL stalls the main thread for about the whole call; released, only for scheduling
    assert stall < 0.5 * duration, (
        f"{name}: the Python thread stood still {stall:.3f} s of a {duration:.3f} s call"
    )
