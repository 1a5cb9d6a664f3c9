"""hepinfer.codegen: the generated standalone C++ header, compiled with g++ -Werror, must
reproduce the engine exactly (outputs, margins and leaf indices) on fresh random inputs with
NaN, infinities and values exactly on (and next to) the split thresholds; fixed-point output
must stay within its documented bound."""

from __future__ import annotations

import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest

import hepinfer
from hepinfer import _core, codegen

HERE = Path(__file__).resolve().parent
GXX = shutil.which("g++")
pytestmark = pytest.mark.skipif(GXX is None, reason="g++ not found")

# One driver for several generated headers (model0.hpp ... namespaces gen0 ...): one g++ run.
DRIVER_HEAD = r"""
#include <cstdio>
#include <cstdlib>
#include <vector>
"""
DRIVER_RUN = r"""
static void run_NSNAME(const std::vector<double>& rows, std::vector<double>& out) {
  namespace m = NSPATH;
  const std::size_t nf = m::n_features, n = rows.size() / nf;
  std::vector<float> rf(nf);
  std::vector<double> o(m::n_outputs), g(m::n_margins);
  std::vector<std::int32_t> lv(m::n_trees);
  for (std::size_t r = 0; r < n; ++r) {
    const double* row = rows.data() + r * nf;
    for (std::size_t j = 0; j < nf; ++j) rf[j] = static_cast<float>(row[j]);
    m::predict(row, o.data());
    out.insert(out.end(), o.begin(), o.end());
    m::predict(rf.data(), o.data());
    out.insert(out.end(), o.begin(), o.end());
    m::margin(row, g.data());
    out.insert(out.end(), g.begin(), g.end());
    m::predict_leaf(row, lv.data());
    for (std::int32_t l : lv) out.push_back(static_cast<double>(l));
  }
}
"""
DRIVER_MAIN = r"""
int main(int argc, char** argv) {
  if (argc != 4) return 2;
  std::FILE* in = std::fopen(argv[1], "rb");
  if (!in) return 2;
  std::vector<double> rows, out;
  double v;
  while (std::fread(&v, sizeof v, 1, in) == 1) rows.push_back(v);
  std::fclose(in);
  switch (std::atoi(argv[3])) {
CASES
    default: return 2;
  }
  std::FILE* f = std::fopen(argv[2], "wb");
  std::fwrite(out.data(), sizeof(double), out.size(), f);
  std::fclose(f);
  return 0;
}
"""


def _compile(tmp_path: Path, headers, flags=(), namespace=None) -> Path:
    """Compile one driver for the headers (str or list of str, namespaces gen0, gen1, ...)."""
    if isinstance(headers, str):
        headers = [headers]
    src = [DRIVER_HEAD]
    cases = []
    for k, h in enumerate(headers):
        (tmp_path / f"model{k}.hpp").write_text(h)
        src.insert(0, f'#include "model{k}.hpp"\n')
        path = f"{namespace}::gen{k}" if namespace else f"gen{k}"
        src.append(DRIVER_RUN.replace("NSNAME", f"gen{k}").replace("NSPATH", path))
        cases.append(f"    case {k}: run_gen{k}(rows, out); break;")
    src.append(DRIVER_MAIN.replace("CASES", "\n".join(cases)))
    (tmp_path / "driver.cpp").write_text("".join(src))
    exe = tmp_path / "driver"
    proc = subprocess.run(
        [GXX, "-O2", "-std=c++17", "-Wall", "-Wextra", "-Werror", *flags, "driver.cpp", "-o", str(exe)],
        cwd=tmp_path, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return exe


def _run(exe: Path, forest: hepinfer.Forest, X: np.ndarray, k: int = 0):
    rows = np.ascontiguousarray(X, dtype=np.float64)
    (exe.parent / "rows.bin").write_bytes(rows.tobytes())
    subprocess.run([str(exe), "rows.bin", "out.bin", str(k)], cwd=exe.parent, check=True)
    flat = np.fromfile(exe.parent / "out.bin", dtype=np.float64)
    no, nm, nt = forest.n_outputs(), forest.n_outputs("margin"), forest.n_trees
    per = 2 * no + nm + nt
    flat = flat.reshape(len(rows), per)
    return flat[:, :no], flat[:, no:2 * no], flat[:, 2 * no:2 * no + nm], flat[:, 2 * no + nm:].astype(np.int32)


def _as2d(a: np.ndarray) -> np.ndarray:
    return a.reshape(len(a), -1)


def _check_exact(tmp_path, forests, rows, flags=(), **kw):
    """Generate, compile (once) and compare with the engine: outputs, margins, leaves, exactly."""
    if not isinstance(forests, list):
        forests, rows = [forests], [rows]
    headers = [codegen.generate_cpp(f, name=f"gen{k}", **kw) for k, f in enumerate(forests)]
    exe = _compile(tmp_path, headers, flags)
    for k, (forest, X) in enumerate(zip(forests, rows)):
        pd, pf, marg, leaves = _run(exe, forest, X, k)
        np.testing.assert_array_equal(pd, _as2d(forest.predict(X)))
        # float rows: the same values widened to double are the same input for every library
        np.testing.assert_array_equal(pf, _as2d(forest.predict(X.astype(np.float32).astype(np.float64))))
        np.testing.assert_array_equal(marg, _as2d(forest.predict(X, output="margin")))
        np.testing.assert_array_equal(leaves, forest.predict_leaf(X))
    return headers


def _edge_rows(forest: hepinfer.Forest, rng, n: int) -> np.ndarray:
    """Random rows with NaN, +-inf and values exactly on / next to split thresholds."""
    ir = _core.forest_ir(forest._core)
    nf = forest.n_features
    X = rng.normal(scale=1.5, size=(n, nf))
    nodes = ir["nodes"]
    num = nodes["kind"] == 1
    feats, thr = nodes["feature"][num], nodes["threshold"][num]
    fin = np.isfinite(thr)
    feats, thr = feats[fin], thr[fin]
    if len(thr):
        k = rng.integers(0, len(thr), size=n * nf // 2)
        r = rng.integers(0, n, size=len(k))
        t = thr[k]
        choice = rng.integers(0, 4, size=len(k))
        t = np.where(choice == 1, np.nextafter(t, np.inf), t)
        t = np.where(choice == 2, np.nextafter(t, -np.inf), t)
        t = np.where(choice == 3, np.float32(t).astype(np.float64), t)
        X[r, feats[k]] = t
    mask = rng.random(X.shape)
    X[mask < 0.08] = np.nan
    X[(mask >= 0.08) & (mask < 0.1)] = np.inf
    X[(mask >= 0.1) & (mask < 0.12)] = -np.inf
    X[(mask >= 0.12) & (mask < 0.14)] = 0.0
    return X


# ----------------------------------------------------------------------------- XGBoost
xgb = pytest.importorskip("xgboost")


def _xgb(objective, rng, n_features=6, rounds=25, depth=4, **extra):
    X = rng.normal(size=(1500, n_features)).astype(np.float32)
    X[rng.random(X.shape) < 0.1] = np.nan
    z = np.nan_to_num(X[:, 0]) + np.nan_to_num(X[:, 1]) * np.nan_to_num(X[:, 2])
    if objective.startswith("multi"):
        y = np.digitize(z, [-0.5, 0.5])
        extra.setdefault("num_class", 3)
    elif objective.startswith("binary"):
        y = (z > 0).astype(int)
    else:
        y = z
    params = {"objective": objective, "max_depth": depth, "nthread": 1, "seed": int(rng.integers(1 << 30)), **extra}
    booster = xgb.train(params, xgb.DMatrix(X, y), rounds)
    return hepinfer.Forest.load(booster)


def test_xgboost_exact(tmp_path, rng):
    """binary:logistic, multi:softprob, multi:softmax, reg:squarederror and a saved 1.7.6 model."""
    forests = [_xgb(o, rng) for o in ["binary:logistic", "multi:softprob", "multi:softmax", "reg:squarederror"]]
    forests.append(hepinfer.Forest.load(HERE / "data" / "xgboost" / "xgb1.7.6_multi_softprob.json"))
    _check_exact(tmp_path, forests, [_edge_rows(f, rng, 300) for f in forests])


def test_xgboost_branches_layout_and_namespace(tmp_path, rng):
    forest = _xgb("binary:logistic", rng, depth=5)
    X = _edge_rows(forest, rng, 300)
    header = codegen.generate_cpp(forest, name="gen0", namespace="NS", layout="branches")
    assert "nodes[" not in header  # no complete-tree table: every tree is a conditional
    exe = _compile(tmp_path, header, namespace="NS")
    pd, pf, marg, leaves = _run(exe, forest, X)
    np.testing.assert_array_equal(pd[:, 0], forest.predict(X))
    np.testing.assert_array_equal(pf[:, 0], forest.predict(X.astype(np.float32)))
    np.testing.assert_array_equal(marg[:, 0], forest.predict(X, output="margin"))
    np.testing.assert_array_equal(leaves, forest.predict_leaf(X))


# ----------------------------------------------------------------------------- LightGBM
lgb = pytest.importorskip("lightgbm")


def _lgb(params, rng, categorical=False, nan=True, zeros=False):
    n = 2000
    X = rng.normal(size=(n, 5))
    if categorical:
        X[:, 3] = rng.integers(0, 40, size=n)
    if zeros:
        X[rng.random(X.shape) < 0.2] = 0.0
    if nan:
        X[rng.random(X.shape) < 0.1] = np.nan
    z = np.nan_to_num(X[:, 0]) - np.nan_to_num(X[:, 1]) + (np.nan_to_num(X[:, 3]) % 3 == 0)
    y = (z > 0.3).astype(int)
    p = {"objective": "binary", "verbose": -1, "num_leaves": 31, "min_data_in_leaf": 5, "num_threads": 1,
         "seed": int(rng.integers(1 << 30)), "max_cat_to_onehot": 4, "cat_smooth": 1, **params}
    kw = {"categorical_feature": [3]} if categorical else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        booster = lgb.train(p, lgb.Dataset(X, y, **kw), 20)
    return hepinfer.Forest.load(booster)


def test_lightgbm_exact(tmp_path, rng):
    """NaN missing + categorical, zero-as-missing, no missing (None), multiclass, deep leaf-wise trees."""
    kinds = {
        "nan_missing_categorical": ({}, {"categorical": True}),
        "zero_as_missing": ({"zero_as_missing": True}, {"zeros": True, "categorical": True}),
        "no_missing": ({"use_missing": False}, {"zeros": True}),
        "multiclass": ({"objective": "multiclass", "num_class": 3}, {"categorical": True}),
        "deep_trees": ({"num_leaves": 200, "min_data_in_leaf": 2, "max_depth": -1}, {}),
    }
    forests, rows = [], []
    for params, kw in kinds.values():
        forest = _lgb(params, rng, **kw)
        X = _edge_rows(forest, rng, 300)
        if kw.get("categorical"):
            cats = rng.integers(-3, 70, size=len(X)).astype(np.float64)
            cats[::7] = np.nan
            cats[::11] += 0.5
            cats[::13] = 2.0**31 + 5
            X[:, 3] = np.where(rng.random(len(X)) < 0.8, cats, X[:, 3])
        X[::5, 2] = 0.0
        X[::6, 4] = 1e-36
        X[::9, 4] = -np.float32(1e-35)
        forests.append(forest)
        rows.append(X)
    headers = _check_exact(tmp_path, forests, rows)
    assert "category_left(" in headers[0] and "zero_missing_left(" in headers[1]


# ----------------------------------------------------------------------------- TMVA
def _tmva_files():
    files = sorted((HERE / "data" / "tmva").glob("*.xml"))
    shared = HERE.parent.parent / "shared" / "tmva"
    files += sorted(shared.glob("*.weights.xml")) if shared.is_dir() else []
    return files


def test_tmva_exact(tmp_path, rng):
    """Every TMVA file of the test data (AdaBoost, YesNo leaves, Grad, Fisher cuts, Decorrelation,
    Normalize, PCA) and the real ones in ../shared/tmva when present."""
    forests = [hepinfer.Forest.load(p) for p in _tmva_files()]
    # -ffp-contract=off: Fisher cuts and transformations must not be fused (see the module docstring)
    _check_exact(tmp_path, forests, [_edge_rows(f, rng, 300) for f in forests], flags=["-ffp-contract=off"])


def test_tmva_shared_reference_outputs(tmp_path):
    shared = HERE.parent.parent / "shared" / "tmva"
    files = sorted(shared.glob("*.weights.xml")) if shared.is_dir() else []
    if not files:
        pytest.skip("../shared/tmva not present")
    path = files[0]
    stem = path.name[: -len(".weights.xml")]
    inputs = np.loadtxt(shared / f"{stem}.inputs.csv", delimiter=",", ndmin=2)
    forest = hepinfer.Forest.load(path, tmva_cut_op="auto")
    exe = _compile(tmp_path, codegen.generate_cpp(forest, name="gen0"), flags=["-ffp-contract=off"])
    pd, _, _, _ = _run(exe, forest, inputs)
    np.testing.assert_array_equal(pd[:, 0], forest.predict(inputs))
    reference = np.loadtxt(shared / f"{stem}.tmva.csv", delimiter=",", ndmin=2)[:, -1]
    assert np.max(np.abs(pd[:, 0] - reference)) <= 1e-6  # the tolerance of test_tmva.py


# ----------------------------------------------------------------------------- fixed point
@pytest.mark.parametrize("width,integer", [(16, 6), (24, 8)])
def test_fixed_point_within_bound(tmp_path, rng, width, integer):
    forest = _xgb("binary:logistic", rng, rounds=30)
    frac = width - integer
    header = codegen.generate_cpp(forest, name="gen0", precision=f"fixed<{width},{integer}>")
    exe = _compile(tmp_path, header)
    # inputs on the fixed-point grid and within range: every decision must be the engine's
    X = np.floor(rng.normal(scale=1.5, size=(500, forest.n_features)) * 2.0**frac) / 2.0**frac
    X[rng.random(X.shape) < 0.05] = np.nan
    X = X.astype(np.float32).astype(np.float64)  # the grid values are floats too
    _, _, marg, leaves = _run(exe, forest, X)
    np.testing.assert_array_equal(leaves, forest.predict_leaf(X))
    bound = (forest.n_trees + 1) * 2.0 ** -(frac + 1)
    engine = forest.predict(X, output="margin")
    # plus the engine's float32 sums (XGBoost): a few float ulps of the margin per tree
    slack = forest.n_trees * np.spacing(np.float32(np.abs(engine).max() + 1)).astype(np.float64)
    assert np.abs(marg[:, 0] - engine).max() <= bound + slack
    # off the grid a decision may change only for an input within one quantum above a threshold
    Y = rng.normal(size=(400, forest.n_features)).astype(np.float32).astype(np.float64)
    _, _, _, leaves_y = _run(exe, forest, Y)
    ir = _core.forest_ir(forest._core)
    num = ir["nodes"]["kind"] == 1
    near = np.zeros(len(Y), dtype=bool)
    for f, t in zip(ir["nodes"]["feature"][num], ir["nodes"]["threshold"][num]):
        near |= (Y[:, f] >= t) & (Y[:, f] < t + 2.0**-frac)
    assert (~near).sum() > 50
    np.testing.assert_array_equal(leaves_y[~near], forest.predict_leaf(Y[~near]))


def test_fixed_point_rejects_categorical(rng):
    forest = _lgb({}, rng, categorical=True, nan=False)
    with pytest.raises(hepinfer.InputError, match="numerical splits only"):
        codegen.generate_cpp(forest, precision="fixed<16,6>")


# ----------------------------------------------------------------------------- API and CLI
def test_argument_errors(rng):
    forest = _xgb("binary:logistic", rng, rounds=2)
    with pytest.raises(hepinfer.InputError, match="not a valid C\\+\\+ identifier"):
        codegen.generate_cpp(forest, name="9lives")
    with pytest.raises(hepinfer.InputError, match="not a valid C\\+\\+ identifier"):
        codegen.generate_cpp(forest, name="ok", namespace="a::class")
    with pytest.raises(hepinfer.InputError, match="precision"):
        codegen.generate_cpp(forest, precision="half")
    with pytest.raises(hepinfer.InputError, match="layout"):
        codegen.generate_cpp(forest, layout="spiral")
    with pytest.raises(hepinfer.ModelFormatError):
        codegen.generate_cpp(b"not a model")


def test_emit_cpp_and_cli(tmp_path, rng):
    forest = _xgb("binary:logistic", rng, rounds=5)
    path = tmp_path / "a" / "gen.hpp"
    path.parent.mkdir()
    assert codegen.emit_cpp(forest, path, name="gen0") == str(path)
    assert path.read_text() == codegen.generate_cpp(forest, name="gen0")
    # the command line, from a model file
    src = HERE / "data" / "xgboost" / "xgb2.1.4_binary_logistic.json"
    out = tmp_path / "b" / "gen0.hpp"
    out.parent.mkdir()
    assert codegen.main([str(src), "-o", str(out)]) == 0  # namespace from the file name
    exe = _compile(out.parent, out.read_text())
    f2 = hepinfer.Forest.load(src)
    X = _edge_rows(f2, rng, 50)
    pd, _, _, _ = _run(exe, f2, X)
    np.testing.assert_array_equal(pd[:, 0], f2.predict(X))
    # a missing model file: an error message and status 2, no traceback
    assert codegen.main([str(tmp_path / "missing.json"), "-o", str(tmp_path / "x.hpp")]) == 2


def test_categorical_xgboost_and_lightgbm_output_variants(tmp_path, rng):
    """XGBoost categorical splits (negative categories go right), a LightGBM random forest
    (outputs from the averaged margin), a scaled sigmoid and reg_sqrt: exact."""
    n = 2000
    X = np.column_stack([rng.normal(size=n), rng.integers(0, 30, n), rng.normal(size=n)])
    y = ((X[:, 0] > 0) ^ np.isin(X[:, 1], [1, 4, 9, 16, 25])).astype(int)
    booster = xgb.train({"max_depth": 4, "tree_method": "hist", "max_cat_to_onehot": 1, "nthread": 1,
                         "objective": "binary:logistic"},
                        xgb.DMatrix(X, y, feature_types=["q", "c", "q"], enable_categorical=True), 15)
    forests = [hepinfer.Forest.load(booster)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for params, target in (
            ({"objective": "binary", "boosting": "rf", "bagging_fraction": 0.7, "bagging_freq": 1}, y),
            ({"objective": "binary", "sigmoid": 1.7}, y),
            ({"objective": "regression", "reg_sqrt": True}, X[:, 0] * np.abs(X[:, 2]) * 5),
        ):
            p = {"verbose": -1, "num_leaves": 15, "num_threads": 1, **params}
            forests.append(hepinfer.Forest.load(lgb.train(p, lgb.Dataset(X, target), 10)))
    rows = []
    for forest in forests:
        R = _edge_rows(forest, rng, 300)
        R[:100, 1] = rng.choice([-0.5, -1.0, -3.0, 2.7, 29.0, 31.0, 100.0, np.nan], 100)
        rows.append(R)
    _check_exact(tmp_path, forests, rows)
