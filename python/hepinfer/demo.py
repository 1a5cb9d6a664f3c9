"""``hepinfer demo``: the forest path end to end on a small built-in sample.

1. Generate boosted-jet-like events: signal jets from W -> qq' (jet mass near 80 GeV,
   two-prong substructure: low N-subjettiness ratio tau21 and low D2) and background QCD
   jets (falling mass spectrum, one-prong-like substructure). Jets with fewer than three
   constituents have no tau32 (NaN), as in real ntuples. The generator is parametric
   (below); a Pythia-based sample replaces it once the event-generation path lands.
2. Train an XGBoost BDT and a LightGBM model on it, save them as XGBoost JSON and UBJ and
   LightGBM text.
3. Load each file with hepinfer and check, on held-out events, that hepinfer's scores equal
   the reference library's (XGBoost: identical margins and leaves; LightGBM: within 1e-9).
4. Report ROC AUC, timings against each library's own predict, and write the scores.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import numpy as np

import hepinfer

FEATURES = ["jet_pt", "jet_eta", "jet_mass", "tau21", "tau32", "d2", "n_constituents", "lead_track_frac"]


def generate_jets(n_per_class: int, seed: int = 2026) -> tuple[np.ndarray, np.ndarray]:
    """Signal (label 1) and background (label 0) jets, float32, features as FEATURES."""
    rng = np.random.default_rng(seed)

    def sample(n: int, signal: bool) -> np.ndarray:
        pt = 250.0 + rng.exponential(150.0 if signal else 110.0, n)
        eta = rng.uniform(-2.4, 2.4, n)
        if signal:
            mass = np.where(rng.random(n) < 0.8, rng.normal(80.4, 8.0 + 0.01 * (pt - 250)), rng.uniform(20, 150, n))
            tau21 = rng.beta(3.0, 5.0, n)
            d2 = rng.gamma(2.0, 0.6, n)
            ncon = rng.poisson(28 + 0.02 * pt)
            lead = rng.beta(2.0, 6.0, n)
        else:
            mass = 10.0 + rng.exponential(35.0, n) * (1 + (pt - 250) / 800)
            tau21 = rng.beta(5.0, 3.0, n)
            d2 = rng.gamma(3.0, 0.9, n)
            ncon = rng.poisson(22 + 0.03 * pt)
            lead = rng.beta(3.0, 4.0, n)
        tau32 = np.clip(rng.normal(0.7 if signal else 0.6, 0.15, n), 0.0, 1.0)
        tau32[ncon < 3] = np.nan
        return np.column_stack([pt, eta, np.clip(mass, 1.0, None), tau21, tau32, d2, ncon, lead])

    X = np.vstack([sample(n_per_class, True), sample(n_per_class, False)]).astype(np.float32)
    y = np.concatenate([np.ones(n_per_class), np.zeros(n_per_class)]).astype(np.int32)
    order = rng.permutation(len(y))
    return X[order], y[order]


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties)."""
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score), dtype=np.float64)
    sorted_scores = score[order]
    i = 0
    while i < len(score):
        j = i
        while j + 1 < len(score) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = 0.5 * (i + j) + 1
        i = j + 1
    n_pos = int(np.sum(y == 1))
    n_neg = len(y) - n_pos
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _median_time(fn, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def run_demo(n_events: int = 20000, out_dir: Path = Path("hepinfer-demo"), n_threads: Optional[int] = None) -> int:
    import lightgbm as lgb
    import xgboost as xgb

    out_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    X, y = generate_jets(n_events)
    n_train = len(y) // 2
    X_train, y_train, X_test, y_test = X[:n_train], y[:n_train], X[n_train:], y[n_train:]
    print(f"hepinfer {hepinfer.__version__} demo: {len(y)} jets ({n_events} W, {n_events} QCD), "
          f"{len(FEATURES)} features, {n_train} for training")

    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 6, "eta": 0.1, "nthread": 2, "seed": 1},
        xgb.DMatrix(X_train, y_train, feature_names=FEATURES), num_boost_round=300)
    lgbm = lgb.train({"objective": "binary", "num_leaves": 63, "learning_rate": 0.1, "verbose": -1,
                      "num_threads": 2, "seed": 1},
                     lgb.Dataset(X_train, y_train, feature_name=FEATURES), num_boost_round=200)
    paths = {"xgboost-json": out_dir / "bdt.json", "xgboost-ubj": out_dir / "bdt.ubj",
             "lightgbm": out_dir / "bdt_lightgbm.txt"}
    booster.save_model(paths["xgboost-json"])
    booster.save_model(paths["xgboost-ubj"])
    lgbm.save_model(str(paths["lightgbm"]))

    ok = True
    dtest = xgb.DMatrix(X_test, feature_names=FEATURES)
    ref_margin = booster.predict(dtest, output_margin=True)
    ref_prob = booster.predict(dtest)
    ref_leaf = booster.predict(dtest, pred_leaf=True)
    print(f"\n{'model file':<28}{'check':<44}{'result':>10}")
    for kind in ("xgboost-json", "xgboost-ubj"):
        forest = hepinfer.Forest.load(paths[kind])
        margin = forest.predict(X_test, output="margin", n_threads=n_threads)
        same_margin = bool(np.array_equal(margin.astype(np.float32), ref_margin))
        same_leaf = bool(np.array_equal(forest.predict_leaf(X_test), ref_leaf))
        prob_diff = float(np.max(np.abs(forest.predict(X_test, n_threads=n_threads) - ref_prob)))
        ok &= same_margin and same_leaf and prob_diff < 1e-6
        print(f"{paths[kind].name:<28}{'margins identical to xgboost':<44}{str(same_margin):>10}")
        print(f"{'':<28}{'leaf indices identical to pred_leaf':<44}{str(same_leaf):>10}")
        print(f"{'':<28}{'max |probability - xgboost|':<44}{prob_diff:>10.1e}")
    forest_lgb = hepinfer.Forest.load(paths["lightgbm"])
    lgb_diff = float(np.max(np.abs(forest_lgb.predict(X_test, output="margin", n_threads=n_threads)
                                   - lgbm.predict(X_test, raw_score=True))))
    ok &= lgb_diff <= 1e-9
    print(f"{paths['lightgbm'].name:<28}{'max |margin - lightgbm|':<44}{lgb_diff:>10.1e}")

    forest = hepinfer.Forest.load(paths["xgboost-ubj"])
    scores = forest.predict({name: X_test[:, j] for j, name in enumerate(FEATURES)}, n_threads=n_threads)
    scores_lgb = forest_lgb.predict(X_test, n_threads=n_threads)
    print(f"\nROC AUC on {len(y_test)} held-out jets: XGBoost BDT {roc_auc(y_test, scores):.4f}, "
          f"LightGBM {roc_auc(y_test, scores_lgb):.4f}, jet mass alone {roc_auc(y_test, -np.abs(X_test[:, 2] - 80.4)):.4f}")

    booster.set_param({"nthread": 1})
    t_xgb = _median_time(lambda: booster.inplace_predict(X_test))
    t_hep = _median_time(lambda: forest.predict(X_test, n_threads=1))
    t_lgb = _median_time(lambda: lgbm.predict(X_test, num_threads=1))
    t_hep_lgb = _median_time(lambda: forest_lgb.predict(X_test, n_threads=1))
    row = X_test[0]
    n_calls = 2000
    t_one = _median_time(lambda: [forest.predict_one(row) for _ in range(n_calls)]) / n_calls
    t_xgb_one = _median_time(lambda: [booster.inplace_predict(X_test[:1]) for _ in range(50)]) / 50
    n = len(y_test)
    print(f"\nspeed, one thread, {n} jets (median of 5):")
    print(f"  XGBoost model   xgboost {t_xgb / n * 1e6:7.2f} us/jet   hepinfer {t_hep / n * 1e6:7.2f} us/jet   "
          f"x{t_xgb / t_hep:.1f}")
    print(f"  LightGBM model  lightgbm {t_lgb / n * 1e6:6.2f} us/jet   hepinfer {t_hep_lgb / n * 1e6:7.2f} us/jet   "
          f"x{t_lgb / t_hep_lgb:.1f}")
    print(f"  one jet per call  xgboost {t_xgb_one * 1e6:7.1f} us   hepinfer {t_one * 1e6:6.2f} us   "
          f"x{t_xgb_one / t_one:.0f}")

    out = out_dir / "scores.csv"
    table = np.column_stack([np.arange(n), y_test, scores, scores_lgb])
    np.savetxt(out, table, delimiter=",", fmt=["%d", "%d", "%.9g", "%.9g"],
               header="event,label,score_xgboost,score_lightgbm", comments="")
    print(f"\nwrote {out} ({n} rows); models in {out_dir}/; {time.perf_counter() - t_start:.1f} s in all")
    print("all checks passed" if ok else "SOME CHECKS FAILED")
    return 0 if ok else 1
