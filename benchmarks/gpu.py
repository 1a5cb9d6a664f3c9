#!/usr/bin/env python3
"""GPU benchmark (issue 7): forests and DisCo on a CUDA device.

    python benchmarks/gpu.py --quick              # ~2 minutes: smaller models and batches
    python benchmarks/gpu.py --json out.json      # full run

Part 1, forests: rows/s of a 500-tree, depth-6 XGBoost model on 30 features (--quick: 100 trees)
at batch 10^4 ... 10^7, for
  * hepinfer on the GPU with the rows already on the device (torch CUDA tensor, result on device),
  * hepinfer on the GPU from numpy (host -> device copy and back included),
  * hepinfer's CPU engine (all cores; up to 10^6 rows),
  * xgboost's GPU predictor (device="cuda", inplace_predict on the device tensor when xgboost
    accepts it, else on numpy).
Margins of the GPU run are checked bit-for-bit against the CPU engine before timing.
Part 2, DisCo forward + backward: hepinfer.train.decorrelation.disco_loss(device="cuda") on CUDA tensors
against the dense torch formula on CUDA (n x n matrices, autograd; up to the n that fits in
memory) and hepinfer's CPU path, for n = 10^3 ... 10^6 (--quick: up to 10^5).

Needs a hepinfer built with HEPINFER_CUDA=ON, a visible CUDA device and torch with CUDA; exits
with status 2 and a message saying which is missing otherwise. Timings: best of --repeats after a
warm-up, with torch.cuda.synchronize() around each.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from typing import Any, Callable

import numpy as np

# the dense torch DisCo formula (the reference of both benchmarks) lives in benchmarks/disco.py
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from disco import dense_torch_disco  # noqa: E402


def _fail(msg: str) -> None:
    print(f"benchmarks/gpu.py: {msg}", file=sys.stderr)
    sys.exit(2)


def _best(fn: Callable[[], Any], repeats: int, sync: Callable[[], None]) -> float:
    fn()
    sync()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_forest(args: argparse.Namespace, torch: Any, sync: Callable[[], None]) -> list[dict]:
    import xgboost as xgb

    import hepinfer

    rng = np.random.default_rng(1)
    n_trees = 100 if args.quick else 500
    X_train = rng.normal(size=(50_000, 30)).astype(np.float32)
    y_train = (X_train[:, :5].sum(1) + rng.normal(size=50_000) > 0).astype(np.float32)
    t0 = time.perf_counter()
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 6, "eta": 0.1, "tree_method": "hist", "device": "cuda"},
        xgb.DMatrix(X_train, label=y_train),
        num_boost_round=n_trees,
    )
    print(f"trained {n_trees} trees in {time.perf_counter() - t0:.1f} s", flush=True)
    forest = hepinfer.Forest.load(booster)
    booster.set_param({"device": "cuda"})
    batches = [10**4, 10**5, 10**6] if args.quick else [10**4, 10**5, 10**6, 10**7]
    rows = []
    for n in batches:
        X = rng.normal(size=(n, 30)).astype(np.float32)
        X[rng.random(X.shape) < 0.02] = np.nan
        Xt = torch.from_numpy(X).cuda()
        ref = forest.predict(X[:20000], output="margin")
        got = forest.predict(Xt[:20000], output="margin", device="cuda").cpu().numpy()
        if not np.array_equal(got, ref):
            _fail(f"GPU margins differ from the CPU engine at batch {n}: {np.sum(got != ref)} rows")
        rec: dict[str, Any] = {"batch": n, "n_trees": n_trees, "depth": 6, "n_features": 30}
        t = _best(lambda Xt=Xt: forest.predict(Xt, device="cuda"), args.repeats, sync)
        rec["hepinfer_gpu_device_rows_per_s"] = n / t
        t = _best(lambda: forest.predict(X, device="cuda"), args.repeats, sync)
        rec["hepinfer_gpu_from_numpy_rows_per_s"] = n / t
        if n <= 10**6:
            t = _best(lambda: forest.predict(X, n_threads=0), max(1, args.repeats // 2), lambda: None)
            rec["hepinfer_cpu_rows_per_s"] = n / t
        try:
            t = _best(lambda Xt=Xt: booster.inplace_predict(Xt), args.repeats, sync)
            rec["xgboost_gpu_input"] = "torch CUDA tensor"
        except Exception:  # xgboost versions without __cuda_array_interface__ input
            t = _best(lambda: booster.inplace_predict(X), args.repeats, sync)
            rec["xgboost_gpu_input"] = "numpy (copied by xgboost)"
        rec["xgboost_gpu_rows_per_s"] = n / t
        rec["speedup_vs_xgboost_gpu"] = rec["hepinfer_gpu_device_rows_per_s"] / rec["xgboost_gpu_rows_per_s"]
        print(json.dumps(rec), flush=True)
        rows.append(rec)
        del Xt
        torch.cuda.empty_cache()
    return rows


def bench_disco(args: argparse.Namespace, torch: Any, sync: Callable[[], None]) -> list[dict]:
    from hepinfer import disco
    from hepinfer.train.decorrelation import disco_loss

    rng = np.random.default_rng(2)
    sizes = [10**3, 10**4, 10**5] if args.quick else [10**3, 10**4, 10**5, 10**6]
    free = torch.cuda.mem_get_info()[0]
    rows = []
    for n in sizes:
        x = rng.normal(size=n)
        m = 0.5 * x + rng.normal(size=n)
        w = rng.uniform(0.5, 2, size=n)
        s = torch.tensor(x, device="cuda", requires_grad=True)
        mt, wt = torch.tensor(m, device="cuda"), torch.tensor(w, device="cuda")
        v_cpu = disco.distance_correlation(x, m, w)
        v_gpu = disco_loss(s, mt, wt, device="cuda").item()
        if abs(v_gpu - v_cpu) > 1e-9 * max(1.0, abs(v_cpu)):
            _fail(f"GPU DisCo {v_gpu!r} differs from the CPU {v_cpu!r} at n={n}")
        rec: dict[str, Any] = {"n": n}

        def gpu_fwd_bwd() -> None:
            s.grad = None
            disco_loss(s, mt, wt, device="cuda").backward()

        rec["hepinfer_gpu_fwd_bwd_s"] = _best(gpu_fwd_bwd, args.repeats, sync)
        sc = torch.tensor(x, requires_grad=True)
        mc, wc = torch.tensor(m), torch.tensor(w)

        def cpu_fwd_bwd() -> None:
            sc.grad = None
            disco_loss(sc, mc, wc).backward()

        rec["hepinfer_cpu_fwd_bwd_s"] = _best(cpu_fwd_bwd, max(1, args.repeats // 2), lambda: None)
        if 8 * 8 * n * n < 0.8 * free:  # about eight live n x n float64 matrices in the dense graph

            def dense() -> None:
                s.grad = None
                dense_torch_disco(s, mt, wt).backward()

            rec["dense_torch_gpu_fwd_bwd_s"] = _best(dense, args.repeats, sync)
            rec["speedup_vs_dense_torch_gpu"] = (
                rec["dense_torch_gpu_fwd_bwd_s"] / rec["hepinfer_gpu_fwd_bwd_s"]
            )
        else:
            rec["dense_torch_gpu_fwd_bwd_s"] = None
            rec["dense_note"] = "n x n matrices do not fit in GPU memory"
        print(json.dumps(rec), flush=True)
        rows.append(rec)
        torch.cuda.empty_cache()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller model and sizes (~2 minutes)")
    ap.add_argument(
        "--json", default=None, help="write the results here (default benchmarks/results/gpu.json)"
    )
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--only", choices=["forest", "disco"], default=None)
    args = ap.parse_args()

    try:
        import hepinfer
        from hepinfer import _core
    except ImportError as e:
        _fail(f"cannot import hepinfer ({e}); build it with -DHEPINFER_CUDA=ON and set PYTHONPATH")
    if not _core.built_with_cuda():
        _fail("this hepinfer was built without CUDA (rebuild with -DHEPINFER_CUDA=ON); nothing to measure")
    if _core.cuda_device_count() == 0:
        _fail("hepinfer has CUDA but no CUDA device is visible (check nvidia-smi / CUDA_VISIBLE_DEVICES)")
    try:
        import torch
    except ImportError:
        _fail("torch is needed for device tensors and the dense reference (pip install torch with CUDA)")
    if not torch.cuda.is_available():
        _fail(f"torch {torch.__version__} cannot use the GPU (a CPU-only torch build?)")

    def sync() -> None:
        torch.cuda.synchronize()

    result: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "gpu": torch.cuda.get_device_name(0),
        "cpu": platform.processor() or platform.machine(),
        "cpu_threads": os.cpu_count(),
        "hepinfer": hepinfer.__version__,
        "torch": torch.__version__,
        "quick": args.quick,
    }
    try:
        import xgboost

        result["xgboost"] = xgboost.__version__
    except ImportError:
        xgboost = None
    print(f"GPU: {result['gpu']}", flush=True)
    if args.only in (None, "forest"):
        if xgboost is None:
            print("xgboost not installed: forest part skipped", file=sys.stderr)
        else:
            result["forest"] = bench_forest(args, torch, sync)
    if args.only in (None, "disco"):
        result["disco"] = bench_disco(args, torch, sync)
    path = args.json or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "gpu.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
