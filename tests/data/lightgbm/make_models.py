"""Writes the small LightGBM text models of tests/data/lightgbm (used by tests/cpp/test_threads.cpp).

    python tests/data/lightgbm/make_models.py

* binary_categorical.txt: binary objective, 5 features (feature 4 categorical, NaN in the
  training data so that missing values have learned default directions), 12 trees of 15 leaves.
* multiclass.txt: 3 classes, 4 features, 8 iterations (24 trees) of 7 leaves.
"""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np

HERE = Path(__file__).resolve().parent


def main() -> None:
    rng = np.random.default_rng(20261123)
    n = 2000
    x = rng.normal(size=(n, 5))
    x[:, 4] = rng.integers(0, 12, size=n)
    x[rng.random(n) < 0.05, 1] = np.nan
    y = ((x[:, 0] + np.nan_to_num(x[:, 1]) * x[:, 2] + (x[:, 4] % 3 == 0)) > 0.5).astype(int)
    params = {
        "objective": "binary",
        "num_leaves": 15,
        "learning_rate": 0.2,
        "verbose": -1,
        "seed": 1,
        "min_data_per_group": 5,
        "cat_smooth": 1.0,
        "deterministic": True,
        "num_threads": 1,
    }
    booster = lgb.train(params, lgb.Dataset(x, y, categorical_feature=[4]), num_boost_round=12)
    booster.save_model(str(HERE / "binary_categorical.txt"))

    x = rng.normal(size=(n, 4))
    y = np.digitize(x[:, 0] + 0.5 * x[:, 1] * x[:, 3], [-0.5, 0.5])
    params = {
        "objective": "multiclass",
        "num_class": 3,
        "num_leaves": 7,
        "learning_rate": 0.3,
        "verbose": -1,
        "seed": 1,
        "deterministic": True,
        "num_threads": 1,
    }
    booster = lgb.train(params, lgb.Dataset(x, y), num_boost_round=8)
    booster.save_model(str(HERE / "multiclass.txt"))
    print("wrote", sorted(p.name for p in HERE.glob("*.txt")))


if __name__ == "__main__":
    main()
