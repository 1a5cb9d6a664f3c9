"""Small k-fold bundles for the k-fold tests: xgboost and ONNX members written to a folder with
their manifest (plain functions; fixtures live in the test modules)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

FEATURES = ["pt", "eta", "mass"]


def events(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """n events with the FEATURES (float32, float64, float32; some NaN) and an event number."""
    pt = rng.exponential(50, n).astype(np.float32)
    eta = rng.normal(0, 1.5, n)
    mass = rng.uniform(0, 200, n).astype(np.float32)
    mass[rng.random(n) < 0.05] = np.nan
    return {"pt": pt, "eta": eta, "mass": mass, "event": rng.integers(0, 2**40, n, dtype=np.int64)}


def xgboost_bundle(folder: Path, k: int, seed: int, *, event_number: str = "event") -> list[str]:
    """k xgboost members, each trained on its own random sample (so they differ), and the
    manifest; returns the member paths in fold order."""
    import xgboost as xgb

    import hepinfer.kfold

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(k):
        X = rng.normal(size=(300, len(FEATURES)))
        y = (X[:, 0] + (i + 1) * 0.5 * X[:, 1] + rng.normal(0, 0.5, 300) > 0).astype(float)
        d = xgb.DMatrix(X, label=y, feature_names=FEATURES)
        booster = xgb.train(
            {"objective": "binary:logistic", "max_depth": 3, "seed": seed + i, "nthread": 1}, d, 8 + i
        )
        path = folder / f"fold_{i}" / "model.json"
        path.parent.mkdir(exist_ok=True)
        booster.save_model(str(path))
        paths.append(str(path))
    hepinfer.kfold.write_manifest(folder, paths, features=FEATURES, event_number=event_number)
    return paths


def mlp_onnx(path: Path, n_inputs: int, n_outputs: int, seed: int) -> str:
    """A 2-layer MLP (Gemm, Relu, Gemm, Sigmoid) with random weights as an ONNX file."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w1 = rng.normal(size=(n_inputs, 8)).astype(np.float32)
    b1 = rng.normal(size=8).astype(np.float32)
    w2 = rng.normal(size=(8, n_outputs)).astype(np.float32)
    b2 = rng.normal(size=n_outputs).astype(np.float32)
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"]),
        helper.make_node("Relu", ["h"], ["a"]),
        helper.make_node("Gemm", ["a", "w2", "b2"], ["z"]),
        helper.make_node("Sigmoid", ["z"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", n_inputs])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", n_outputs])],
        [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return str(path)


def write_raw_manifest(folder: Path, **fields) -> Path:
    """A manifest with the given fields on top of a valid 3-fold one (None removes a field)."""
    manifest = {
        "format": "hepinfer-kfold",
        "version": 1,
        "n_folds": 3,
        "event_number": "event",
        "features": FEATURES,
        "members": [f"fold_{i}/model.json" for i in range(3)],
    }
    for key, value in fields.items():
        if value is None:
            manifest.pop(key, None)
        else:
            manifest[key] = value
    path = folder / "kfold.json"
    path.write_text(json.dumps(manifest))
    return path


def fold_of(event_numbers: np.ndarray, k: int) -> np.ndarray:
    """The documented rule, independently: event_number mod k, non-negative (Python's %)."""
    return np.array([int(e) % k for e in event_numbers.tolist()], dtype=np.int64)
