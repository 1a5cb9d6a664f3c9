# Regenerate with an old xgboost in its own venv: pip install "xgboost==1.7.6" "numpy<2"; python make_models.py .
# Writes small XGBoost models with the running xgboost version plus inputs and its own outputs.
import os
import sys

import numpy as np
import xgboost as xgb

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
v = xgb.__version__
rng = np.random.default_rng(17)
X = rng.normal(size=(600, 5)).astype(np.float32)
X[rng.random(X.shape) < 0.08] = np.nan
Xt = rng.normal(size=(200, 5)).astype(np.float32)
Xt[rng.random(Xt.shape) < 0.1] = np.nan
cases = {
    "binary_logistic": ({"objective": "binary:logistic"}, (np.nan_to_num(X[:, 0]) > 0).astype(int)),
    "reg_squarederror": ({"objective": "reg:squarederror"}, np.nan_to_num(X[:, 1]) * 2.0),
    "multi_softprob": ({"objective": "multi:softprob", "num_class": 3}, rng.integers(0, 3, 600)),
    "binary_logitraw": ({"objective": "binary:logitraw"}, (np.nan_to_num(X[:, 2]) > 0).astype(int)),
}
for name, (params, y) in cases.items():
    params = dict(params, max_depth=4, eta=0.3, base_score=0.3 if "multi" not in name else 0.5)
    b = xgb.train(params, xgb.DMatrix(X, y, feature_names=[f"x{i}" for i in range(5)]), 8)
    stem = f"{out}/xgb{v}_{name}"
    b.save_model(stem + ".json")
    try:
        b.save_model(stem + ".ubj")
    except Exception as e:
        print("no ubj", e)
    d = xgb.DMatrix(Xt, feature_names=[f"x{i}" for i in range(5)])
    np.savez(
        stem + ".npz",
        X=Xt,
        margin=b.predict(d, output_margin=True),
        prob=b.predict(d),
        leaf=b.predict(d, pred_leaf=True),
    )
print("done", v)
