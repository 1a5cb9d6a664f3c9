"""Forests with one tree thousands of levels deep (a chain), and rows that leave the chain at chosen
levels: the recursion-free paths of the code generator (tests/deploy/test_codegen.py) and of the
TMVA export (tests/deploy/test_tmva_export.py). Plain helpers."""

from __future__ import annotations

import json

import numpy as np


def deep_xgb_json(rng, depth: int, n_features: int = 3) -> tuple[bytes, list]:
    """An XGBoost binary:logistic JSON model: a small trained tree ensemble plus one chain tree
    `depth` splits deep (internal node 2d splits on feature d % n_features at a threshold rising
    with d, its left child is the leaf 2d+1, its right child the next internal node). Returns the
    model and the chain's (feature, threshold) list."""
    X = rng.normal(size=(300, n_features)).astype(np.float32)
    import xgboost as xgb

    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 3, "nthread": 1},
        xgb.DMatrix(X, (X[:, 0] > 0).astype(int)),
        3,
    )
    model = json.loads(booster.save_raw("json"))
    gb = model["learner"]["gradient_booster"]["model"]
    n = 2 * depth + 1
    feats = [d % n_features for d in range(depth)]
    thr = [float(np.float32(-3 + 6 * d / depth)) for d in range(depth)]
    left = [-1] * n
    right = [-1] * n
    parents = [2147483647] * n
    cond = rng.normal(scale=0.1, size=n).astype(np.float32).tolist()
    split_idx = [0] * n
    default_left = [0] * n
    for d in range(depth):
        i = 2 * d
        left[i], right[i] = i + 1, i + 2
        parents[i + 1] = parents[i + 2] = i
        cond[i], split_idx[i] = thr[d], feats[d]
        default_left[i] = int(rng.random() < 0.5)
    tree = {
        "base_weights": cond,
        "categories": [],
        "categories_nodes": [],
        "categories_segments": [],
        "categories_sizes": [],
        "default_left": default_left,
        "id": len(gb["trees"]),
        "left_children": left,
        "loss_changes": [0.0] * n,
        "parents": parents,
        "right_children": right,
        "split_conditions": cond,
        "split_indices": split_idx,
        "split_type": [0] * n,
        "sum_hessian": [1.0] * n,
        "tree_param": {
            "num_deleted": "0",
            "num_feature": str(n_features),
            "num_nodes": str(n),
            "size_leaf_vector": "1",
        },
    }
    gb["trees"].append(tree)
    k = len(gb["trees"])
    gb["gbtree_model_param"]["num_trees"] = str(k)
    gb["tree_info"] = [0] * k
    gb["iteration_indptr"] = list(range(k + 1))
    return json.dumps(model).encode(), list(zip(feats, thr))


def deep_rows(rng, chain, n_features: int, n: int) -> np.ndarray:
    """float32 rows that leave the chain at chosen levels (many deep ones), on and next to the cuts, NaN."""
    depth = len(chain)
    X = np.empty((n, n_features))
    exits = np.concatenate([rng.integers(0, depth, n - 4), [0, depth - 1, depth, depth]])
    for r, L in enumerate(exits):
        for j in range(n_features):  # pass every cut before level L: the largest threshold of feature j
            before = [t for f, t in chain[:L] if f == j]
            X[r, j] = before[-1] if before else -5.0
        if L < depth:  # go left at level L
            f, t = chain[L]
            X[r, f] = float(np.nextafter(np.float32(t), np.float32(-np.inf))) if r % 3 else np.nan
    X[-1] = 10.0
    return X.astype(np.float32).astype(np.float64)
