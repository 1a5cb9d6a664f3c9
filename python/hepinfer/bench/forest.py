#!/usr/bin/env python3
"""Tree-ensemble inference benchmark: hepinfer against its competitors, in one
process and one run.

    hepinfer bench forest                       # full run (several minutes)
    hepinfer bench forest --quick               # CI smoke run (< 60 s once cached)
    hepinfer bench forest --tiny                # a few seconds: does it run here (one small model)
    hepinfer bench forest --models a,d --batches 1,100000 --threads 1
    python benchmarks/forest.py [same flags]    # the same, from a checkout

Engines: hepinfer, xgboost (Booster.inplace_predict), lightgbm (Booster.predict),
treelite (treelite.gtil.predict), tl2cgen (compiled C via tl2cgen.export_lib +
tl2cgen.Predictor), lleaves (LightGBM models only, LLVM-compiled) and
onnxruntime (TreeEnsemble via onnxmltools.convert_xgboost/convert_lightgbm).
An engine that cannot be imported, converted or compiled is reported as
"unavailable" with the reason; it never stops the run.

Models (trained here on synthetic data with a fixed seed, cached on disk):
  a  xgboost binary:logistic, 500 trees, depth 6, 30 features
  b  xgboost binary:logistic, 1000 trees, depth 6, 5 features
  c  xgboost multi:softprob, 4 classes, 200 rounds (800 trees), depth 5, 20 features
  d  lightgbm binary, 300 trees, 255 leaves, 30 features
  e  xgboost binary:logistic, 100 trees, depth 6, 30 features (the C++ latency model)

Before timing, every engine's output is compared with the reference
(xgboost Booster.predict / lightgbm Booster.predict) and the max abs diff is
printed. Timings are the median of several repeats (time.perf_counter, after a
warm-up call). For batch 1, many single-row calls are looped and the time per
call is reported; hepinfer uses its single-row fast path Forest.predict_one
for single-output models.

The entry point is main(argv=None) -> int. The results go to ./hepinfer-bench-forest.json
(--out DIR, --json PATH); the engines missing are listed with the package to install
(pip install "hepinfer[bench]" installs them all).
"""

import argparse
import contextlib
import hashlib
import importlib
import io
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from hepinfer import Error
from hepinfer.bench import add_output_arguments, import_reason, missing, output_path

DEFAULT_BATCHES = "1,100,10000,100000,1000000"
QUICK_BATCHES = "1,100,10000"
# 1 000 000 rows single-threaded takes tens of seconds per call and engine on a
# laptop-class CPU; by default that size is run with all threads only.
DEFAULT_MAX_SINGLE_THREAD_ROWS = 100_000
ENGINE_ORDER = ["hepinfer", "xgboost", "lightgbm", "treelite", "tl2cgen", "lleaves", "onnxruntime"]
PACKAGES = [
    "hepinfer",
    "numpy",
    "xgboost",
    "xgboost-cpu",  # the same module, CPU-only wheel (hepinfer[bench] on Linux)
    "lightgbm",
    "treelite",
    "tl2cgen",
    "lleaves",
    "llvmlite",
    "onnxruntime",
    "onnxmltools",
    "onnx",
    "skl2onnx",
    "scipy",
    "scikit-learn",
    "protobuf",
]
TOLERANCE = 1e-4  # max abs diff on probabilities before an engine is flagged


# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class ModelSpec:
    key: str
    library: str  # "xgboost" or "lightgbm"
    n_features: int
    n_trees: int  # boosting rounds
    depth: int = 6  # xgboost max_depth
    num_leaves: int = 0  # lightgbm
    n_classes: int = 2
    n_train: int = 50_000

    @property
    def objective(self) -> str:
        if self.library == "xgboost":
            return "binary:logistic" if self.n_classes == 2 else "multi:softprob"
        return "binary" if self.n_classes == 2 else "multiclass"

    @property
    def n_outputs(self) -> int:
        return 1 if self.n_classes == 2 else self.n_classes

    def describe(self) -> str:
        if self.library == "xgboost":
            shape = f"{self.n_trees} rounds depth {self.depth}"
        else:
            shape = f"{self.n_trees} trees {self.num_leaves} leaves"
        return f"{self.library} {self.objective}, {shape}, {self.n_features} features"

    def scaled(self, factor: float, n_train: int) -> "ModelSpec":
        return ModelSpec(
            self.key,
            self.library,
            self.n_features,
            max(10, int(self.n_trees * factor)),
            self.depth,
            self.num_leaves,
            self.n_classes,
            n_train,
        )


MODELS: Dict[str, ModelSpec] = {
    "a": ModelSpec("a", "xgboost", 30, 500, depth=6),
    "b": ModelSpec("b", "xgboost", 5, 1000, depth=6),
    "c": ModelSpec("c", "xgboost", 20, 200, depth=5, n_classes=4),
    "d": ModelSpec("d", "lightgbm", 30, 300, num_leaves=255),
    "e": ModelSpec("e", "xgboost", 30, 100, depth=6),
}
CPP_MODEL_KEY = "e"


def make_data(n_rows: int, n_features: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n_rows, n_features), dtype=np.float32)


def make_labels(X: np.ndarray, n_classes: int, seed: int) -> np.ndarray:
    """A nonlinear target with noise, so trees grow to their full depth."""
    rng = np.random.default_rng(seed + 1)
    n_f = X.shape[1]
    w = rng.standard_normal(n_f)
    z = X @ w / math.sqrt(n_f)
    z = z + np.sin(2.0 * X[:, 0]) + X[:, 1 % n_f] * X[:, 2 % n_f] + 0.5 * np.abs(X[:, 3 % n_f])
    z = z + 0.7 * rng.standard_normal(len(z))
    if n_classes == 2:
        return (z > np.median(z)).astype(np.int32)
    edges = np.quantile(z, np.linspace(0, 1, n_classes + 1)[1:-1])
    return np.searchsorted(edges, z).astype(np.int32)


def _spec_hash(spec: ModelSpec, lib_version: str) -> str:
    text = json.dumps([spec.__dict__, lib_version], sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


@dataclass
class Model:
    spec: ModelSpec
    path: str  # xgboost JSON or LightGBM text
    booster: Any  # xgboost.Booster or lightgbm.Booster
    workdir: str  # per-model cache directory for converted artefacts
    train_seconds: float = 0.0
    cached: bool = False


def build_model(spec: ModelSpec, cache_dir: str, n_threads: int, log) -> Model:
    if spec.library == "xgboost":
        import xgboost as xgb

        version = xgb.__version__
    else:
        import lightgbm as lgb

        version = lgb.__version__
    workdir = os.path.join(cache_dir, f"model_{spec.key}_{_spec_hash(spec, version)}")
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "model.json" if spec.library == "xgboost" else "model.txt")
    t0 = time.perf_counter()
    cached = os.path.exists(path)
    if not cached:
        log(f"  training model {spec.key}: {spec.describe()} on {spec.n_train} rows ...")
        X = make_data(spec.n_train, spec.n_features, seed=1000 + ord(spec.key))
        y = make_labels(X, spec.n_classes, seed=2000 + ord(spec.key))
        tmp = path + ".tmp"
        if spec.library == "xgboost":
            params = {
                "objective": spec.objective,
                "max_depth": spec.depth,
                "eta": 0.1,
                "tree_method": "hist",
                "min_child_weight": 0.5,
                "subsample": 0.8,
                "colsample_bytree": 0.9,
                "seed": 7,
                "nthread": n_threads,
            }
            if spec.n_classes > 2:
                params["num_class"] = spec.n_classes
            dtrain = xgb.DMatrix(X, label=y)
            booster = xgb.train(params, dtrain, num_boost_round=spec.n_trees)
            booster.save_model(tmp + ".json")
            os.replace(tmp + ".json", path)
        else:
            params = {
                "objective": spec.objective,
                "num_leaves": spec.num_leaves,
                "learning_rate": 0.05,
                "min_data_in_leaf": 5,
                "feature_fraction": 0.9,
                "bagging_fraction": 0.8,
                "bagging_freq": 1,
                "seed": 7,
                "verbose": -1,
                "num_threads": n_threads,
                "deterministic": True,
            }
            if spec.n_classes > 2:
                params["num_class"] = spec.n_classes
            booster = lgb.train(params, lgb.Dataset(X, label=y), num_boost_round=spec.n_trees)
            booster.save_model(tmp)
            os.replace(tmp, path)
    if spec.library == "xgboost":
        booster = xgb.Booster(model_file=path)
    else:
        booster = lgb.Booster(model_file=path)
    return Model(spec, path, booster, workdir, time.perf_counter() - t0, cached)


def reference_predict(model: Model, X: np.ndarray) -> np.ndarray:
    if model.spec.library == "xgboost":
        import xgboost as xgb

        out = model.booster.predict(xgb.DMatrix(X))
    else:
        out = model.booster.predict(X)
    return (
        np.asarray(out, dtype=np.float64).reshape(len(X), -1).squeeze(axis=1)
        if model.spec.n_outputs == 1
        else np.asarray(out, dtype=np.float64).reshape(len(X), -1)
    )


# --------------------------------------------------------------------------- engines


class Unavailable(Error, RuntimeError):
    """Engine cannot run this model (import, conversion or compilation failed)."""


def _dist_version(name: str) -> Optional[str]:
    from importlib import metadata

    try:
        return metadata.version(name)
    except Exception:  # noqa: BLE001
        return None


def _short_reason(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip().replace("\n", " ")
    return text if len(text) <= 300 else text[:297] + "..."


@dataclass
class Runner:
    """A prepared engine for one model and one thread count."""

    batch: Callable[[np.ndarray], Any]  # predict a 2-D batch
    single: Callable[[int], Any]  # predict row i of the single-row pool
    normalize: Callable[[Any], np.ndarray]  # raw output -> (n,) or (n, k) probabilities
    dtype: Any = np.float32  # input dtype the engine consumes natively
    note: str = ""


class Engine:
    name = "?"
    libraries = ("xgboost", "lightgbm")  # model libraries the engine can run
    module = ""

    def __init__(self):
        self.version = None
        self.import_error: Optional[str] = None

    def import_check(self):
        try:
            mod = importlib.import_module(self.module)
            self.version = _dist_version(self.module) or getattr(mod, "__version__", "?")
            self._import_extra()
        except BaseException as exc:  # noqa: BLE001 - any failure means unavailable
            self.import_error = import_reason(exc)

    def _import_extra(self):
        pass

    def supports(self, model: Model) -> Optional[str]:
        if model.spec.library not in self.libraries:
            return f"runs {'/'.join(self.libraries)} models only"
        return None

    def load(self, model: Model, log) -> Any:
        """Per-model state shared by all thread counts (conversion, compilation)."""
        return None

    def runner(self, model: Model, state: Any, n_threads: int, pool: List[np.ndarray]) -> Runner:
        raise NotImplementedError


def _squeeze_probs(n_outputs: int):
    def norm(out) -> np.ndarray:
        a = np.asarray(out, dtype=np.float64)
        n = a.shape[0] if a.ndim else 1
        a = a.reshape(n, -1)
        return a[:, 0] if n_outputs == 1 else a

    return norm


class HepinferEngine(Engine):
    name = "hepinfer"
    module = "hepinfer"

    def import_check(self):
        try:
            mod = importlib.import_module("hepinfer")
            self.mod = mod
            self.version = getattr(mod, "__version__", "?")
        except BaseException as exc:  # noqa: BLE001
            self.import_error = _short_reason(exc)

    def load(self, model, log):
        return self.mod.Forest.load(model.path)

    def runner(self, model, forest, n_threads, pool):
        n_out = model.spec.n_outputs
        norm = _squeeze_probs(n_out)
        predict = forest.predict
        if n_out == 1 and hasattr(forest, "predict_one"):
            predict_one = forest.predict_one
            rows1d = [r[0] for r in pool]
            single = lambda i: predict_one(rows1d[i])  # noqa: E731
            note = "batch 1 via predict_one"
        else:
            single = lambda i: predict(pool[i], output="probability", n_threads=n_threads)  # noqa: E731
            note = ""
        return Runner(
            batch=lambda X: predict(X, output="probability", n_threads=n_threads),
            single=single,
            normalize=norm,
            note=note,
        )


class XGBoostEngine(Engine):
    name = "xgboost"
    libraries = ("xgboost",)
    module = "xgboost"

    def load(self, model, log):
        import xgboost as xgb

        return xgb.Booster(model_file=model.path)

    def runner(self, model, booster, n_threads, pool):
        booster.set_param({"nthread": n_threads})
        ip = booster.inplace_predict
        return Runner(
            batch=lambda X: ip(X),
            single=lambda i: ip(pool[i]),
            normalize=_squeeze_probs(model.spec.n_outputs),
        )


class LightGBMEngine(Engine):
    name = "lightgbm"
    libraries = ("lightgbm",)
    module = "lightgbm"

    def load(self, model, log):
        import lightgbm as lgb

        return lgb.Booster(model_file=model.path)

    def runner(self, model, booster, n_threads, pool):
        p = booster.predict
        return Runner(
            batch=lambda X: p(X, num_threads=n_threads),
            single=lambda i: p(pool[i], num_threads=n_threads),
            normalize=_squeeze_probs(model.spec.n_outputs),
        )


def _treelite_model(model: Model):
    import treelite

    if model.spec.library == "xgboost":
        return treelite.frontend.load_xgboost_model(model.path)
    return treelite.frontend.load_lightgbm_model(model.path)


class TreeliteEngine(Engine):
    name = "treelite"
    module = "treelite"

    def _import_extra(self):
        import treelite.gtil  # noqa: F401

    def load(self, model, log):
        return _treelite_model(model)

    def runner(self, model, tlm, n_threads, pool):
        import treelite.gtil as gtil

        pred = gtil.predict
        return Runner(
            batch=lambda X: pred(tlm, X, nthread=n_threads),
            single=lambda i: pred(tlm, pool[i], nthread=n_threads),
            normalize=_squeeze_probs(model.spec.n_outputs),
        )


class TL2cgenEngine(Engine):
    name = "tl2cgen"
    module = "tl2cgen"

    def _import_extra(self):
        import treelite  # noqa: F401  (tl2cgen consumes treelite models)

        if shutil.which("gcc") is None and shutil.which("cc") is None:
            raise RuntimeError("no C compiler (gcc/cc) on PATH")

    def load(self, model, log):
        import tl2cgen

        libpath = os.path.join(model.workdir, f"tl2cgen-{tl2cgen.__version__}.so")
        if not os.path.exists(libpath):
            tlm = _treelite_model(model)
            n_trees = model.spec.n_trees * (model.spec.n_outputs if model.spec.library == "xgboost" else 1)
            parallel = max(1, min(32, n_trees // 50))
            log(f"  tl2cgen: compiling model {model.spec.key} ({n_trees} trees, {parallel} units) ...")
            t0 = time.perf_counter()
            tmp = libpath + f".{os.getpid()}.tmp.so"
            tl2cgen.export_lib(
                tlm,
                toolchain="gcc" if shutil.which("gcc") else "cc",
                libpath=tmp,
                params={"parallel_comp": parallel},
                nthread=os.cpu_count() or 1,
            )
            os.replace(tmp, libpath)
            log(f"  tl2cgen: compiled in {time.perf_counter() - t0:.1f} s")
        return libpath

    def runner(self, model, libpath, n_threads, pool):
        import tl2cgen

        pred = tl2cgen.Predictor(libpath, nthread=n_threads)
        DM = tl2cgen.DMatrix
        dpool = [DM(r) for r in pool]
        return Runner(
            batch=lambda X: pred.predict(DM(X)),
            single=lambda i: pred.predict(dpool[i]),
            normalize=_squeeze_probs(model.spec.n_outputs),
            note="batch 1 with a prebuilt tl2cgen.DMatrix per row",
        )


class LleavesEngine(Engine):
    name = "lleaves"
    libraries = ("lightgbm",)
    module = "lleaves"

    def _import_extra(self):
        import llvmlite.binding as llvm

        # lleaves <= 1.3 uses the legacy pass manager, removed in llvmlite 0.45.
        if not hasattr(llvm, "PassManagerBuilder"):
            import llvmlite

            raise ImportError(
                f"llvmlite {llvmlite.__version__} lacks PassManagerBuilder, which lleaves "
                f"needs: pip install 'llvmlite<0.45' (hepinfer[bench] pins it)"
            )

    inline = True  # lleaves' default; set from --lleaves-inline

    def load(self, model, log):
        import lleaves
        import llvmlite

        cache = os.path.join(
            model.workdir,
            f"lleaves-{self.version}-llvmlite-{llvmlite.__version__}{'' if self.inline else '-noinline'}.o",
        )
        m = lleaves.Model(model_file=model.path)
        if not os.path.exists(cache):
            log(
                f"  lleaves: compiling model {model.spec.key} (finline={self.inline}; with inlining this "
                f"takes ~20 s per 10 trees of 255 leaves, once: cached) ..."
            )
        t0 = time.perf_counter()
        m.compile(cache=cache, finline=self.inline)
        if time.perf_counter() - t0 > 1:
            log(f"  lleaves: compiled in {time.perf_counter() - t0:.1f} s")
        return m

    def runner(self, model, m, n_threads, pool):
        pool64 = [np.ascontiguousarray(r, dtype=np.float64) for r in pool]
        return Runner(
            batch=lambda X: m.predict(X, n_jobs=n_threads),
            single=lambda i: m.predict(pool64[i], n_jobs=n_threads),
            normalize=_squeeze_probs(model.spec.n_outputs),
            dtype=np.float64,
            note="float64 input (its native dtype)",
        )


class OnnxRuntimeEngine(Engine):
    name = "onnxruntime"
    module = "onnxruntime"

    def _import_extra(self):
        try:
            import onnx  # noqa: F401
            import onnxmltools  # noqa: F401
        except ModuleNotFoundError as exc:  # onnxruntime itself imported: say what the conversion lacks
            name = exc.name or "onnxmltools"
            raise ImportError(
                f"onnxruntime runs the trees that {name} converts to ONNX; {missing(name)}"
            ) from exc

    def load(self, model, log):
        import onnxmltools
        from onnxmltools.convert.common.data_types import FloatTensorType

        path = os.path.join(model.workdir, f"model-onnxmltools-{onnxmltools.__version__}.onnx")
        if not os.path.exists(path):
            types = [("input", FloatTensorType([None, model.spec.n_features]))]
            with contextlib.redirect_stdout(io.StringIO()):
                if model.spec.library == "xgboost":
                    onx = onnxmltools.convert_xgboost(model.booster, initial_types=types)
                else:
                    onx = onnxmltools.convert_lightgbm(model.booster, initial_types=types, zipmap=False)
            tmp = path + f".{os.getpid()}.tmp"
            with open(tmp, "wb") as fh:
                fh.write(onx.SerializeToString())
            os.replace(tmp, path)
        return path

    def runner(self, model, path, n_threads, pool):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = n_threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        in_name = sess.get_inputs()[0].name
        outs = [o.name for o in sess.get_outputs()]
        prob = "probabilities" if "probabilities" in outs else outs[-1]
        n_out = model.spec.n_outputs
        run = sess.run

        def norm(out):
            a = np.asarray(out[0], dtype=np.float64)
            a = a.reshape(a.shape[0], -1)
            if n_out == 1:
                return a[:, -1]
            return a

        return Runner(
            batch=lambda X: run([prob], {in_name: X}),
            single=lambda i: run([prob], {in_name: pool[i]}),
            normalize=norm,
        )


ENGINES = {
    e.name: e
    for e in (
        HepinferEngine,
        XGBoostEngine,
        LightGBMEngine,
        TreeliteEngine,
        TL2cgenEngine,
        LleavesEngine,
        OnnxRuntimeEngine,
    )
}


# --------------------------------------------------------------------------- timing


def time_batch(fn: Callable, X: np.ndarray, repeats: int, budget_s: float) -> (float, int):
    """Median seconds of fn(X) over repeats (after one warm-up), limited by budget_s."""
    t0 = time.perf_counter()
    fn(X)  # warm-up
    first = time.perf_counter() - t0
    if first > 0:
        repeats = max(1, min(repeats, int(budget_s / first)))
    # Small batches: put several calls in each sample so timer resolution does not matter.
    inner = 1
    if first < 2e-3:
        inner = max(1, int(2e-3 / max(first, 1e-7)))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn(X)
        times.append((time.perf_counter() - t0) / inner)
    return statistics.median(times), repeats


def time_single(
    fn: Callable[[int], Any], pool_size: int, calls: int, repeats: int, budget_s: float
) -> (float, int):
    """Median seconds per single-row call; each sample loops `calls` calls over the row pool."""
    for i in range(min(pool_size, 50)):  # warm-up
        fn(i)
    t0 = time.perf_counter()
    n = min(calls, 100)
    for k in range(n):
        fn(k % pool_size)
    per_call = (time.perf_counter() - t0) / n
    if per_call * calls * repeats > budget_s:
        calls = max(100, int(budget_s / repeats / max(per_call, 1e-9)))
    idx = [k % pool_size for k in range(calls)]
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in idx:
            fn(i)
        times.append((time.perf_counter() - t0) / calls)
    return statistics.median(times), calls


# --------------------------------------------------------------------------- machine info


def machine_info() -> Dict[str, Any]:
    cpu = platform.processor() or "?"
    flags = ""
    family = model = None  # /proc/cpuinfo's "cpu family" and "model" (e.g. 25/97 Zen 4, 26 Zen 5)
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and cpu in ("?", "", "x86_64"):
                    cpu = value.strip()
                elif key == "flags" and not flags:
                    flags = value
                elif key == "cpu family" and family is None:
                    family = int(value) if value.strip().isdigit() else value.strip()
                elif key == "model" and model is None:
                    model = int(value) if value.strip().isdigit() else value.strip()
    except OSError:
        pass
    simd = [
        f
        for f in ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl")
        if f" {f} " in f" {flags} "
    ]
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    mem = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal"):
                    mem = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    try:  # which NN tiles this CPU runs (chosen per CPU at run time)
        from hepinfer import _core

        nn_kernels: Optional[str] = _core.nn_cpu_kernels()["kernels"]
    except (ImportError, AttributeError):
        nn_kernels = None
    return {
        "cpu_model": cpu,
        "cpu_family": family,
        "nn_kernels": nn_kernels,
        "cpu_model_number": model,
        "load_average_at_start": load,
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "simd_flags": simd,
        "memory_gib": mem,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "hostname": platform.node(),
    }


def package_versions() -> Dict[str, Optional[str]]:
    from importlib import metadata

    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


# --------------------------------------------------------------------------- C++ bench


def default_cpp_bench() -> Optional[str]:
    """The C++ single-row bench built in a checkout: looked for under the current directory and, when
    this module runs from a checkout (an editable install), under its root; else on PATH."""
    names = ["hepinfer_bench_single_row"]
    roots = [os.getcwd()]
    checkout = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    if os.path.isdir(os.path.join(checkout, "cpp")) and checkout not in roots:
        roots.append(checkout)
    for root, d in (
        (root, d)
        for root in roots
        for d in (
            "build",
            "build/benchmarks",
            "build/cpp",
            "cpp/build",
            "build/release",
            "build/Release",
            "build/benchmarks/Release",
        )
    ):
        for n in names:
            p = os.path.join(root, d, n)
            if os.path.isfile(p) and os.access(p, os.X_OK):
                return p
    return shutil.which(names[0])


def run_cpp_bench(binary: str, model: Model, calls: int, batch_rows: int, log) -> Dict[str, Any]:
    cmd = [binary, model.path, "--calls", str(calls), "--batch-rows", str(batch_rows), "--json"]
    log(f"  running {' '.join(cmd)}")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"status": "failed", "reason": _short_reason(exc), "command": cmd}
    result = None
    for line in proc.stdout.splitlines()[::-1]:
        line = line.strip()
        if line.startswith("{"):
            try:
                result = json.loads(line)
                break
            except json.JSONDecodeError:
                pass
    if proc.returncode != 0 or result is None:
        return {
            "status": "failed",
            "reason": (proc.stderr or proc.stdout)[-500:],
            "rc": proc.returncode,
            "command": cmd,
        }
    result["status"] = "ok"
    result["command"] = cmd
    result["model"] = model.spec.key
    return result


# --------------------------------------------------------------------------- main


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="hepinfer bench forest",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="CI smoke run: smaller models and batches (%s), fewer repeats" % QUICK_BATCHES,
    )
    p.add_argument(
        "--tiny",
        action="store_true",
        help="a few seconds, to see that the benchmark runs: model e cut to 20 trees, batches 1,100, one "
        "thread, engines hepinfer,xgboost,onnxruntime (each overridable), no C++ bench",
    )
    p.add_argument("--models", default=None, help="comma list of model keys a,b,c,d,e (default a,b,c,d)")
    p.add_argument(
        "--engines", default=None, help="comma list of engines (default: all): " + ",".join(ENGINE_ORDER)
    )
    p.add_argument("--batches", default=None, help=f"comma list of batch sizes (default {DEFAULT_BATCHES})")
    p.add_argument(
        "--threads", default="1,all", help="comma list of thread counts; 'all' = every core (default 1,all)"
    )
    p.add_argument(
        "--max-single-thread-rows",
        type=int,
        default=None,
        help="largest batch timed with 1 thread (default %d; larger batches all-threads only; "
        "0 = no limit)" % DEFAULT_MAX_SINGLE_THREAD_ROWS,
    )
    p.add_argument(
        "--repeats", type=int, default=None, help="timed repeats per measurement (default 7, quick 3)"
    )
    p.add_argument(
        "--single-calls",
        type=int,
        default=None,
        help="single-row calls per repeat for batch 1 (default 2000, quick 200)",
    )
    p.add_argument(
        "--budget",
        type=float,
        default=None,
        help="seconds per measurement; repeats are cut to fit (default 15, quick 1)",
    )
    p.add_argument(
        "--max-call-seconds",
        type=float,
        default=None,
        help="skip a batch when the engine's per-row time at the previous batch size predicts a "
        "call longer than this (default 20, quick 5; 0 = never skip)",
    )
    p.add_argument(
        "--check-rows", type=int, default=None, help="rows used for the output check (default 10000)"
    )
    p.add_argument(
        "--cache-dir",
        default=None,
        help="model cache (default $HEPINFER_BENCH_CACHE or <tmp>/hepinfer-bench-cache)",
    )
    add_output_arguments(p, "forest")
    p.add_argument(
        "--cpp-bench",
        default=None,
        help="path of the hepinfer_bench_single_row binary (default: look in build/; 'none' to skip)",
    )
    p.add_argument("--cpp-calls", type=int, default=200_000, help="single-row calls for the C++ bench")
    p.add_argument(
        "--lleaves-inline",
        choices=["auto", "on", "off"],
        default="auto",
        help="lleaves compile(finline=...): 'on' is lleaves' default and ~25%% faster to run but "
        "slow to compile (minutes for model d, cached); auto = on, off with --quick",
    )
    p.add_argument("--seed", type=int, default=12345, help="seed of the benchmark (test) data")
    p.add_argument("-v", "--verbose", action="store_true", help="print tracebacks of engine failures")
    a = p.parse_args(argv)
    if a.tiny:
        a.quick = True
        a.models = a.models or "e"
        a.batches = a.batches or "1,100"
        a.threads = "1" if a.threads == "1,all" else a.threads
        a.engines = a.engines or "hepinfer,xgboost,onnxruntime"
        a.repeats = a.repeats or 2
        a.single_calls = a.single_calls or 50
        a.budget = a.budget or 0.2
        a.check_rows = a.check_rows or 200
        a.cpp_bench = a.cpp_bench or "none"
    try:
        a.json_path = output_path(a, "forest")
    except ValueError as bad:
        p.error(str(bad))
    a.batches = [
        int(float(x)) for x in (a.batches or (QUICK_BATCHES if a.quick else DEFAULT_BATCHES)).split(",") if x
    ]
    a.models = [m.strip() for m in (a.models or "a,b,c,d").split(",") if m.strip()]
    for m in a.models:
        if m not in MODELS:
            p.error(f"unknown model {m!r}; choose from {','.join(MODELS)}")
    a.engines = [e.strip() for e in (a.engines or ",".join(ENGINE_ORDER)).split(",") if e.strip()]
    for e in a.engines:
        if e not in ENGINES:
            p.error(f"unknown engine {e!r}; choose from {','.join(ENGINE_ORDER)}")
    if "hepinfer" not in a.engines:
        a.engines.insert(0, "hepinfer")
    try:
        all_threads = len(os.sched_getaffinity(0))
    except AttributeError:
        all_threads = os.cpu_count() or 1
    threads = []
    for t in a.threads.split(","):
        t = t.strip()
        n = all_threads if t == "all" else int(t)
        if n not in threads:
            threads.append(n)
    a.thread_list = threads
    a.all_threads = all_threads
    a.repeats = a.repeats or (3 if a.quick else 7)
    a.single_calls = a.single_calls or (200 if a.quick else 2000)
    a.budget = a.budget or (1.0 if a.quick else 15.0)
    if a.max_call_seconds is None:
        a.max_call_seconds = 5.0 if a.quick else 20.0
    a.check_rows = a.check_rows or (2000 if a.quick else 10_000)
    if a.max_single_thread_rows is None:
        a.max_single_thread_rows = DEFAULT_MAX_SINGLE_THREAD_ROWS
    a.cache_dir = (
        a.cache_dir
        or os.environ.get("HEPINFER_BENCH_CACHE")
        or os.path.join(tempfile.gettempdir(), "hepinfer-bench-cache")
    )
    return a


def fmt_time(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    us = seconds * 1e6
    if us >= 1000:
        return f"{us:,.0f}"
    if us >= 10:
        return f"{us:.1f}"
    return f"{us:.3f}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        args = parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # --help or a usage error: return its code instead of exiting
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    started = time.perf_counter()

    def log(msg=""):
        print(msg, flush=True)

    os.makedirs(args.cache_dir, exist_ok=True)
    info = machine_info()
    versions = package_versions()
    log(
        f"hepinfer forest benchmark | CPU: {info['cpu_model']} | cores: {info['usable_cores']} "
        f"| SIMD: {','.join(info['simd_flags']) or '-'} | python {info['python']}"
    )
    if info.get("load_average_at_start") and info["load_average_at_start"][0] > (info["usable_cores"] or 1):
        log(
            f"WARNING: load average {info['load_average_at_start']} on {info['usable_cores']} cores: "
            f"other processes compete for the CPU, timings will be noisy"
        )
    log(f"cache: {args.cache_dir}  quick: {args.quick}  batches: {args.batches}  threads: {args.thread_list}")

    # --- engines
    engines: Dict[str, Engine] = {}
    unavailable: Dict[str, str] = {}
    for name in args.engines:
        eng = ENGINES[name]()
        if name == "lleaves":
            eng.inline = args.lleaves_inline == "on" or (args.lleaves_inline == "auto" and not args.quick)
        eng.import_check()
        engines[name] = eng
        if eng.import_error:
            unavailable[name] = eng.import_error
            log(f"  engine {name:12s} UNAVAILABLE: {eng.import_error}")
        else:
            log(f"  engine {name:12s} {eng.version}")

    # --- models
    specs = []
    for key in args.models:
        spec = MODELS[key]
        if args.tiny:
            spec = spec.scaled(0.2, n_train=2000)
        elif args.quick:
            spec = spec.scaled(0.2, n_train=5000)
        specs.append(spec)

    results: List[Dict[str, Any]] = []
    checks: List[Dict[str, Any]] = []
    model_info: Dict[str, Any] = {}
    per_model_unavailable: List[Dict[str, str]] = []
    skipped: List[Dict[str, Any]] = []

    for spec in specs:
        log("")
        log(f"=== model {spec.key}: {spec.describe()}")
        try:
            model = build_model(spec, args.cache_dir, args.all_threads, log)
        except BaseException as exc:  # noqa: BLE001
            log(f"  cannot build model: {_short_reason(exc)}")
            model_info[spec.key] = {"spec": spec.__dict__, "error": _short_reason(exc)}
            continue
        model_info[spec.key] = {
            "spec": dict(spec.__dict__),
            "description": spec.describe(),
            "path": model.path,
            "cached": model.cached,
            "load_or_train_seconds": round(model.train_seconds, 3),
        }
        max_batch = max(args.batches)
        X32 = make_data(
            max(max_batch, args.check_rows, 1024), spec.n_features, seed=args.seed + ord(spec.key)
        )
        X64 = None
        pool32 = [np.ascontiguousarray(X32[i : i + 1]) for i in range(1024)]
        Xcheck = X32[: args.check_rows]
        ref = reference_predict(model, Xcheck)

        for name, eng in engines.items():
            if eng.import_error:
                continue
            why = eng.supports(model)
            if why:
                continue
            try:
                state = eng.load(model, log)
            except BaseException as exc:  # noqa: BLE001
                reason = _short_reason(exc)
                if args.verbose:
                    traceback.print_exc()
                log(f"  {name:12s} UNAVAILABLE for model {spec.key}: {reason}")
                per_model_unavailable.append({"model": spec.key, "engine": name, "reason": reason})
                continue
            for n_threads in args.thread_list:
                try:
                    r = eng.runner(model, state, n_threads, pool32)
                    Xe = X32
                    if r.dtype == np.float64:
                        if X64 is None:
                            X64 = X32.astype(np.float64)
                        Xe = X64
                    # --- correctness check, first thread count only (+ single row path)
                    if n_threads == args.thread_list[0]:
                        got = r.normalize(r.batch(Xe[: args.check_rows]))
                        diff = float(np.max(np.abs(got - ref))) if got.shape == ref.shape else float("inf")
                        one = np.array([r.normalize(r.single(i)).reshape(-1) for i in range(64)])
                        one_ref = ref[:64].reshape(64, -1)
                        diff1 = (
                            float(np.max(np.abs(one - one_ref)))
                            if one.shape == one_ref.shape
                            else float("inf")
                        )
                        ok = diff <= TOLERANCE and diff1 <= TOLERANCE
                        checks.append(
                            {
                                "model": spec.key,
                                "engine": name,
                                "max_abs_diff": diff,
                                "max_abs_diff_single_row": diff1,
                                "rows": len(ref),
                                "ok": ok,
                                "shape": list(got.shape),
                                "ref_shape": list(ref.shape),
                            }
                        )
                        log(
                            f"  check {name:12s} max|diff| = {diff:.3g} (batch), {diff1:.3g} (single row)"
                            + ("" if ok else "   <-- MISMATCH (tolerance %g)" % TOLERANCE)
                        )
                    last_per_row = None
                    for batch in args.batches:
                        if (
                            last_per_row is not None
                            and batch > 1
                            and args.max_call_seconds
                            and last_per_row * batch > args.max_call_seconds
                        ):
                            est = last_per_row * batch
                            log(
                                f"  {name:12s} threads={n_threads:<2d} batch={batch:<8d} skipped: estimated "
                                f"{est:.0f} s per call > --max-call-seconds {args.max_call_seconds:g}"
                            )
                            skipped.append(
                                {
                                    "model": spec.key,
                                    "engine": name,
                                    "threads": n_threads,
                                    "batch": batch,
                                    "estimated_seconds_per_call": est,
                                }
                            )
                            continue
                        if (
                            n_threads == 1
                            and args.max_single_thread_rows
                            and batch > args.max_single_thread_rows
                            and args.all_threads > 1
                            and args.all_threads in args.thread_list
                        ):
                            continue
                        if batch == 1:
                            t, calls = time_single(
                                r.single, len(pool32), args.single_calls, args.repeats, args.budget
                            )
                            extra = {"calls_per_repeat": calls}
                        else:
                            Xb = Xe[:batch]
                            t, reps = time_batch(r.batch, Xb, args.repeats, args.budget)
                            extra = {"repeats": reps}
                        res = {
                            "model": spec.key,
                            "batch": batch,
                            "threads": n_threads,
                            "engine": name,
                            "seconds_per_call": t,
                            "us_per_row": t / batch * 1e6,
                            "rows_per_s": batch / t if t > 0 else None,
                            "note": r.note,
                            **extra,
                        }
                        results.append(res)
                        if batch > 1:
                            last_per_row = t / batch
                        log(
                            f"  {name:12s} threads={n_threads:<2d} batch={batch:<8d} "
                            f"{'per call' if batch == 1 else 'per row '} {fmt_time(t / batch)} us"
                        )
                except BaseException as exc:  # noqa: BLE001
                    if isinstance(exc, KeyboardInterrupt):
                        raise
                    reason = _short_reason(exc)
                    if args.verbose:
                        traceback.print_exc()
                    log(f"  {name:12s} FAILED for model {spec.key} threads={n_threads}: {reason}")
                    per_model_unavailable.append(
                        {"model": spec.key, "engine": name, "threads": n_threads, "reason": reason}
                    )
            del state
        del X32, X64, pool32

    # --- ratios
    hep = {
        (r["model"], r["batch"], r["threads"]): r["seconds_per_call"]
        for r in results
        if r["engine"] == "hepinfer"
    }
    for r in results:
        h = hep.get((r["model"], r["batch"], r["threads"]))
        r["ratio_vs_hepinfer"] = (r["seconds_per_call"] / h) if h else None

    # --- table
    log("")
    log(
        "time: us per row (batch > 1) or us per call (batch 1); ratio = engine time / hepinfer time "
        "(> 1: hepinfer faster)"
    )
    hdr = (
        f"{'model':5s} {'batch':>9s} {'thr':>3s} {'engine':12s} {'time(us)':>12s} {'unit':>8s} "
        f"{'rows/s':>14s} {'ratio':>8s}"
    )
    log(hdr)
    log("-" * len(hdr))
    order = {n: i for i, n in enumerate(ENGINE_ORDER)}
    results.sort(key=lambda r: (r["model"], r["batch"], r["threads"], order.get(r["engine"], 99)))
    prev = None
    for r in results:
        key = (r["model"], r["batch"], r["threads"])
        if prev is not None and key != prev:
            log("")
        prev = key
        ratio = "-" if r["ratio_vs_hepinfer"] is None else f"{r['ratio_vs_hepinfer']:.2f}x"
        log(
            f"{r['model']:5s} {r['batch']:>9d} {r['threads']:>3d} {r['engine']:12s} "
            f"{fmt_time(r['us_per_row'] / 1e6):>12s} {'call' if r['batch'] == 1 else 'row':>8s} "
            f"{r['rows_per_s']:>14,.0f} {ratio:>8s}"
        )
    if (
        args.max_single_thread_rows
        and any(b > args.max_single_thread_rows for b in args.batches)
        and args.all_threads > 1
        and 1 in args.thread_list
        and args.all_threads in args.thread_list
    ):
        log(
            f"(batches > {args.max_single_thread_rows} rows are timed with {args.all_threads} threads only; "
            f"--max-single-thread-rows 0 to time them single-threaded too)"
        )
    if skipped:
        log(
            f"skipped (estimated > {args.max_call_seconds:g} s per call): "
            + ", ".join(
                f"{s_['engine']} model {s_['model']} batch {s_['batch']} threads {s_['threads']}"
                for s_ in skipped
            )
        )
    if unavailable or per_model_unavailable:
        log("")
        log("unavailable engines:")
        for n, why in unavailable.items():
            log(f"  {n}: {why}")
        for u in per_model_unavailable:
            log(
                f"  {u['engine']} (model {u['model']}{', threads %s' % u['threads'] if 'threads' in u else ''}): "
                f"{u['reason']}"
            )

    # --- C++ single-row latency
    cpp = None
    cpp_path = args.cpp_bench if args.cpp_bench not in (None, "") else default_cpp_bench()
    if cpp_path and cpp_path.lower() != "none":
        log("")
        log(
            "C++ single-row latency (hepinfer::Forest::predict_one), model e: "
            + MODELS[CPP_MODEL_KEY].describe()
        )
        if not (os.path.isfile(cpp_path) and os.access(cpp_path, os.X_OK)):
            cpp = {"status": "failed", "reason": f"not an executable: {cpp_path}"}
        else:
            try:
                m_e = build_model(MODELS[CPP_MODEL_KEY], args.cache_dir, args.all_threads, log)
                cpp = run_cpp_bench(
                    cpp_path,
                    m_e,
                    args.cpp_calls if not args.quick else 20_000,
                    100_000 if not args.quick else 10_000,
                    log,
                )
            except BaseException as exc:  # noqa: BLE001
                cpp = {"status": "failed", "reason": _short_reason(exc)}
        if cpp.get("status") == "ok":
            log(
                f"  single row: {cpp.get('single_row_ns_median', float('nan')):.1f} ns/call (median of blocks; "
                f"p10 {cpp.get('single_row_ns_p10', float('nan')):.1f}, min {cpp.get('single_row_ns_min', float('nan')):.1f})"
                + "".join(
                    f"; batch {cpp.get('batch_rows')} rows, {k.split('_')[-1]} thread(s): {v:.1f} ns/row"
                    for k, v in cpp.items()
                    if k.startswith("batch_ns_per_row_threads_")
                )
            )
        else:
            log(f"  C++ bench failed: {cpp.get('reason')}")
    else:
        cpp = {"status": "skipped", "reason": "no hepinfer_bench_single_row binary (use --cpp-bench PATH)"}

    # --- targets (report only; nothing is adjusted)
    targets = evaluate_targets(results, cpp, args)
    if targets:
        log("")
        log("targets:")
        for t in targets:
            log(f"  [{t['status']:4s}] {t['target']}: {t['detail']}")

    elapsed = time.perf_counter() - started
    try:
        info["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    log("")
    log(f"total {elapsed:.1f} s")

    doc = {
        "benchmark": "forest",
        "schema": 1,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": ["hepinfer", "bench", "forest"] + list(sys.argv[1:] if argv is None else argv),
        "quick": args.quick,
        "tiny": args.tiny,
        "machine": info,
        "versions": versions,
        "engines": {
            n: {"version": e.version, "available": e.import_error is None, "reason": e.import_error}
            for n, e in engines.items()
        },
        "engine_failures": per_model_unavailable,
        "skipped": skipped,
        "settings": {
            "batches": args.batches,
            "threads": args.thread_list,
            "repeats": args.repeats,
            "single_calls": args.single_calls,
            "budget_s": args.budget,
            "max_single_thread_rows": args.max_single_thread_rows,
            "seed": args.seed,
            "tolerance": TOLERANCE,
            "cache_dir": args.cache_dir,
            "lleaves_inline": getattr(engines.get("lleaves"), "inline", None),
        },
        "models": model_info,
        "checks": checks,
        "results": results,
        "cpp_single_row": cpp,
        "targets": targets,
        "elapsed_s": elapsed,
    }
    if args.json_path:
        with open(args.json_path, "w") as fh:
            json.dump(doc, fh, indent=1, default=str)
        log(f"wrote {args.json_path}")
    return 0


def evaluate_targets(results, cpp, args) -> List[Dict[str, Any]]:
    def get(model, batch, threads, engine):
        for r in results:
            if (r["model"], r["batch"], r["threads"], r["engine"]) == (model, batch, threads, engine):
                return r["seconds_per_call"]
        return None

    out = []
    big = 100_000 if 100_000 in args.batches else max([b for b in args.batches if b > 1], default=None)
    if big and 1 in args.thread_list:
        h = get("a", big, 1, "hepinfer")
        x = get("a", big, 1, "xgboost")
        if h and x:
            out.append(
                {
                    "target": f"model a, 1 thread, {big} rows: hepinfer >= 3x xgboost",
                    "ratio": x / h,
                    "status": "PASS" if x / h >= 3 else "FAIL",
                    "detail": f"{x / h:.2f}x ({x / big * 1e6:.3f} vs {h / big * 1e6:.3f} us/row)",
                }
            )
        if h:
            others = [(e, get("a", big, 1, e)) for e in ENGINE_ORDER if e not in ("hepinfer", "xgboost")]
            others = [(e, t) for e, t in others if t]
            if others:
                e, t = min(others, key=lambda p: p[1])
                out.append(
                    {
                        "target": f"model a, 1 thread, {big} rows: hepinfer >= 1.5x fastest other engine",
                        "ratio": t / h,
                        "status": "PASS" if t / h >= 1.5 else "FAIL",
                        "detail": f"{t / h:.2f}x vs {e} ({t / big * 1e6:.3f} us/row)",
                    }
                )
    if 1 in args.batches and 1 in args.thread_list:
        h = get("a", 1, 1, "hepinfer")
        x = get("a", 1, 1, "xgboost")
        if h and x:
            out.append(
                {
                    "target": "model a, batch 1 from Python: hepinfer >= 20x xgboost",
                    "ratio": x / h,
                    "status": "PASS" if x / h >= 20 else "FAIL",
                    "detail": f"{x / h:.1f}x ({x * 1e6:.2f} vs {h * 1e6:.2f} us/call)",
                }
            )
    if cpp and cpp.get("status") == "ok" and cpp.get("single_row_ns_median") is not None:
        ns = cpp["single_row_ns_median"]
        out.append(
            {
                "target": "C++ predict_one, 100 trees depth 6: < 1 us",
                "ratio": None,
                "status": "PASS" if ns < 1000 else "FAIL",
                "detail": f"{ns:.1f} ns/call",
            }
        )
    if not any(r["engine"] == "hepinfer" for r in results):
        out.append(
            {
                "target": "hepinfer measured",
                "ratio": None,
                "status": "N/A",
                "detail": "hepinfer unavailable: no ratios",
            }
        )
    return out


if __name__ == "__main__":
    sys.exit(main())
