"""hepinfer.codegen: the generated standalone C++ header, compiled with g++ -Werror, must
reproduce the engine exactly (outputs, margins and leaf indices) on fresh random inputs with
NaN, infinities and values exactly on (and next to) the split thresholds; fixed-point output
must stay within its documented bound."""

from __future__ import annotations

import math
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest

import hepinfer
from hepinfer import _core, codegen
from tests.deploy.deep_trees import deep_rows, deep_xgb_json

TESTS = Path(__file__).resolve().parents[1]  # the tests/ folder
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
        cwd=tmp_path,
        capture_output=True,
        text=True,
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
    return (
        flat[:, :no],
        flat[:, no : 2 * no],
        flat[:, 2 * no : 2 * no + nm],
        flat[:, 2 * no + nm :].astype(np.int32),
    )


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
    params = {
        "objective": objective,
        "max_depth": depth,
        "nthread": 1,
        "seed": int(rng.integers(1 << 30)),
        **extra,
    }
    booster = xgb.train(params, xgb.DMatrix(X, y), rounds)
    return hepinfer.Forest.load(booster)


def test_xgboost_exact(tmp_path, rng):
    """binary:logistic, multi:softprob, multi:softmax, reg:squarederror and a saved 1.7.6 model."""
    forests = [
        _xgb(o, rng) for o in ["binary:logistic", "multi:softprob", "multi:softmax", "reg:squarederror"]
    ]
    forests.append(hepinfer.Forest.load(TESTS / "data" / "xgboost" / "xgb1.7.6_multi_softprob.json"))
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
    p = {
        "objective": "binary",
        "verbose": -1,
        "num_leaves": 31,
        "min_data_in_leaf": 5,
        "num_threads": 1,
        "seed": int(rng.integers(1 << 30)),
        "max_cat_to_onehot": 4,
        "cat_smooth": 1,
        **params,
    }
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
    files = sorted((TESTS / "data" / "tmva").glob("*.xml"))
    shared = TESTS.parent.parent / "shared" / "tmva"
    files += sorted(shared.glob("*.weights.xml")) if shared.is_dir() else []
    return files


def test_tmva_exact(tmp_path, rng):
    """Every TMVA file of the test data (AdaBoost, YesNo leaves, Grad, Fisher cuts, Decorrelation,
    Normalize, PCA) and the real ones in ../shared/tmva when present."""
    forests = [hepinfer.Forest.load(p) for p in _tmva_files()]
    # -ffp-contract=off: Fisher cuts and transformations must not be fused (see the module docstring)
    _check_exact(tmp_path, forests, [_edge_rows(f, rng, 300) for f in forests], flags=["-ffp-contract=off"])


def test_tmva_shared_reference_outputs(tmp_path):
    shared = TESTS.parent.parent / "shared" / "tmva"
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
    src = TESTS / "data" / "xgboost" / "xgb2.1.4_binary_logistic.json"
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
    booster = xgb.train(
        {
            "max_depth": 4,
            "tree_method": "hist",
            "max_cat_to_onehot": 1,
            "nthread": 1,
            "objective": "binary:logistic",
        },
        xgb.DMatrix(X, y, feature_types=["q", "c", "q"], enable_categorical=True),
        15,
    )
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


# ----------------------------------------------------------------------------- MLPs (ONNX)
MLP_DRIVER = r"""
#include <cstdio>
#include <cstdlib>
#include <vector>
HEADERS
template <typename Run>
static void run(const std::vector<double>& rows, std::vector<float>& out, std::size_t nf, std::size_t no, Run f) {
  std::vector<float> o(no), rf(nf);
  for (std::size_t r = 0; r < rows.size() / nf; ++r) {
    for (std::size_t j = 0; j < nf; ++j) rf[j] = static_cast<float>(rows[r * nf + j]);
    f(rows.data() + r * nf, rf.data(), o.data());
    out.insert(out.end(), o.begin(), o.end());
  }
}
int main(int argc, char** argv) {
  if (argc != 4) return 2;
  std::FILE* in = std::fopen(argv[1], "rb");
  if (!in) return 2;
  std::vector<double> rows;
  std::vector<float> out;
  double v;
  while (std::fread(&v, sizeof v, 1, in) == 1) rows.push_back(v);
  std::fclose(in);
  switch (std::atoi(argv[3])) {
CASES
    default: return 2;
  }
  std::FILE* f = std::fopen(argv[2], "wb");
  std::fwrite(out.data(), sizeof(float), out.size(), f);
  std::fclose(f);
  return 0;
}
"""
# each case runs predict on double rows and on the same rows as float: both must agree
MLP_CASE = """    case K: run(rows, out, NSK::n_features, NSK::n_outputs, [](const double* d, const float* s, float* o) {
      NSK::predict(d, o);
      float o2[NSK::n_outputs];
      NSK::predict(s, o2);
      for (std::size_t i = 0; i < NSK::n_outputs; ++i) if (!(o2[i] == o[i]) && o[i] == o[i]) std::abort();
    }); break;"""


def _torch_export(net, n_in: int, path: Path, opset: int = 20) -> Path:
    torch = pytest.importorskip("torch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net.eval(),
            (torch.randn(3, n_in),),
            str(path),
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
            dynamo=False,
            opset_version=opset,
        )
    return path


def _mlp_models(tmp_path: Path, rng) -> dict:
    """Torch MLPs covering the supported layers, exported by torch.onnx (opset 20)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    torch.manual_seed(int(rng.integers(1 << 30)))
    nn = torch.nn
    bn = nn.BatchNorm1d(16)
    with torch.no_grad():  # non-trivial running statistics to fold
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.2, 0.2)
    models = {
        "tagger": nn.Sequential(
            nn.Linear(7, 16),
            bn,
            nn.LeakyReLU(0.1),
            nn.Dropout(0.2),
            nn.Linear(16, 16),
            nn.ELU(),
            nn.Linear(16, 8),
            nn.ReLU(),
            nn.Linear(8, 1),
            nn.Sigmoid(),
        ),
        "multiclass": nn.Sequential(
            nn.Flatten(),
            nn.Linear(7, 12),
            nn.GELU(),
            nn.Linear(12, 12),
            nn.GELU(approximate="tanh"),
            nn.SELU(),
            nn.Linear(12, 12),
            nn.Tanh(),
            nn.Linear(12, 12),
            nn.Hardtanh(-0.5, 0.8),
            nn.Linear(12, 4),
            nn.Softmax(dim=-1),
        ),
        "regression": nn.Sequential(nn.Linear(7, 10), nn.ReLU(), nn.Linear(10, 2)),
    }
    return {k: _torch_export(m, 7, tmp_path / f"{k}.onnx") for k, m in models.items()}


def _mlp_run(tmp_path: Path, headers: list, X: np.ndarray, flags=()) -> list:
    src = MLP_DRIVER.replace("HEADERS", "".join(f'#include "mlp{k}.hpp"\n' for k in range(len(headers))))
    src = src.replace(
        "CASES",
        "\n".join(MLP_CASE.replace("NSK", f"mlp{k}").replace("K", str(k)) for k in range(len(headers))),
    )
    for k, h in enumerate(headers):
        (tmp_path / f"mlp{k}.hpp").write_text(h)
    (tmp_path / "mlp_driver.cpp").write_text(src)
    exe = tmp_path / "mlp_driver"
    proc = subprocess.run(
        [
            GXX,
            "-O2",
            "-std=c++17",
            "-Wall",
            "-Wextra",
            "-Wconversion",
            "-Werror",
            *flags,
            "mlp_driver.cpp",
            "-o",
            str(exe),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    (tmp_path / "mlp_rows.bin").write_bytes(np.ascontiguousarray(X, np.float64).tobytes())
    outs = []
    for k in range(len(headers)):
        subprocess.run([str(exe), "mlp_rows.bin", "mlp_out.bin", str(k)], cwd=tmp_path, check=True)
        outs.append(np.fromfile(tmp_path / "mlp_out.bin", dtype=np.float32).reshape(len(X), -1))
    return outs


def _gxx_has_float16() -> bool:
    proc = subprocess.run(
        [GXX, "-std=c++17", "-x", "c++", "-fsyntax-only", "-"],
        input="_Float16 h = 1;\n",
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.returncode == 0


def test_mlp_float_matches_engine(tmp_path, rng):
    """float32 and double headers against hepinfer.Model: <= 1e-5 relative, all layers and heads."""
    paths = _mlp_models(tmp_path, rng)
    X = rng.normal(scale=1.5, size=(400, 7)).astype(np.float32)
    X[:3] = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]  # zeros, a single-row-like edge
    X[3] = 1e-30
    X[4] = rng.normal(scale=20.0, size=7)  # saturating activations
    X[5, 2] = np.nan  # NaN propagates (ReLU/LeakyReLU keep it)
    names = list(paths)
    jobs = [(n, p) for p in ("float", "double") for n in names]
    headers = [codegen.generate_cpp(paths[n], name=f"mlp{k}", precision=p) for k, (n, p) in enumerate(jobs)]
    outs = _mlp_run(tmp_path, headers, X)
    for (name, _), out in zip(jobs, outs):
        ref = hepinfer.Model.load(paths[name]).predict(X).reshape(len(X), -1)
        assert out.shape == ref.shape
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6, equal_nan=True)
        assert np.isnan(out[5]).any() == np.isnan(ref[5]).any()
    softmax = outs[1]
    np.testing.assert_allclose(softmax[~np.isnan(softmax).any(axis=1)].sum(axis=1), 1.0, rtol=1e-5)
    assert "_Float16" not in headers[0] and "hepinfer" not in headers[0].split("Do not edit.")[1]


@pytest.mark.parametrize("precision", ["fixed<18,8>", "fixed<12,5>", "float16"])
def test_mlp_reduced_precision_within_bound(tmp_path, rng, precision):
    """fixed-point and float16 headers differ from the engine by at most mlp_error_bound (plus
    the engine's own float32 rounding), and really are quantised (not float in disguise)."""
    if precision == "float16" and not _gxx_has_float16():
        pytest.skip("this g++ has no _Float16")
    paths = _mlp_models(tmp_path, rng)
    X = rng.normal(size=(300, 7)).astype(np.float32)
    names = list(paths)
    headers = [
        codegen.generate_cpp(paths[n], name=f"mlp{k}", precision=precision) for k, n in enumerate(names)
    ]
    outs = _mlp_run(tmp_path, headers, X)
    for name, out in zip(names, outs):
        ref = hepinfer.Model.load(paths[name]).predict(X).reshape(len(X), -1)
        bound = codegen.mlp_error_bound(paths[name], X, precision)
        assert np.isfinite(bound).all(), "no input here may saturate"
        diff = np.abs(out.astype(np.float64) - ref).max(axis=1)
        slack = 1e-5 * np.maximum(1.0, np.abs(ref).max(axis=1))
        assert (diff <= bound + slack).all(), (name, float((diff - bound).max()))
        assert diff.max() > 0  # quantisation did happen
        if precision.startswith("fixed"):
            width, integer = map(int, precision[6:-1].split(","))
            q = out * 2.0 ** (width - integer)  # outputs lie on the grid
            np.testing.assert_array_equal(q, np.round(q))


def test_mlp_fixed_point_saturates(tmp_path, rng):
    """Inputs beyond the fixed-point range saturate (the bound says inf there) and NaN reads as 0."""
    paths = _mlp_models(tmp_path, rng)
    X = rng.normal(size=(20, 7)).astype(np.float32)
    X[0, 0] = 1e6
    X[1, 1] = np.nan
    bound = codegen.mlp_error_bound(paths["regression"], X, "fixed<10,4>")
    assert np.isinf(bound[0])
    header = codegen.generate_cpp(paths["regression"], name="mlp0", precision="fixed<10,4>")
    out = _mlp_run(tmp_path, [header], X)[0]
    X1 = X.copy()
    X1[0, 0] = 8 - 2.0**-6  # the largest value of fixed<10,4>
    X1[1, 1] = 0.0
    out1 = _mlp_run(tmp_path, [header], X1)[0]
    np.testing.assert_array_equal(out, out1)


def _onnx_chain_model(nodes, inits, n_in=3, out="y"):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", n_in])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["batch", "n_out"])],
        [
            numpy_helper.from_array(
                np.asarray(v, np.int64 if np.asarray(v).dtype.kind == "i" else np.float32), k
            )
            for k, v in inits.items()
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def test_mlp_matmul_add_and_input_normalisation(tmp_path, rng):
    """A hand-written graph: (x - mean) / std, MatMul + Add, Clip, Identity, Reshape, Gemm with
    transB/alpha/beta and a scalar bias: folded, and equal to the engine."""
    from onnx import helper

    W1, b1 = rng.normal(size=(3, 5)), rng.normal(size=5)
    W2, b2 = rng.normal(size=(2, 5)), rng.normal(size=())
    nodes = [
        helper.make_node("Sub", ["x", "mean"], ["c"], name="centre"),
        helper.make_node("Div", ["c", "std"], ["n"], name="scale"),
        helper.make_node("MatMul", ["n", "W1"], ["h"], name="mm"),
        helper.make_node("Add", ["b1", "h"], ["h1"], name="bias"),
        helper.make_node("Clip", ["h1", "lo", "hi"], ["h2"], name="clip"),
        helper.make_node("Identity", ["h2"], ["h3"], name="id"),
        helper.make_node("Reshape", ["h3", "shape"], ["h4"], name="reshape"),
        helper.make_node("Gemm", ["h4", "W2", "b2"], ["y"], name="out", transB=1, alpha=0.5, beta=2.0),
    ]
    model = _onnx_chain_model(
        nodes,
        {
            "mean": rng.normal(size=3),
            "std": rng.uniform(0.5, 2, 3),
            "W1": W1,
            "b1": b1,
            "lo": -1.0,
            "hi": 1.5,
            "shape": np.array([-1, 5]),
            "W2": W2,
            "b2": b2,
        },
    )
    import onnx

    path = tmp_path / "chain.onnx"
    onnx.save(model, path)
    header = codegen.generate_cpp(model, name="mlp0")
    assert header.count("dense<") == 2 and "affine<" not in header  # normalisation folded into MatMul
    X = rng.normal(size=(200, 3)).astype(np.float32)
    out = _mlp_run(tmp_path, [header], X)[0]
    np.testing.assert_allclose(out, hepinfer.Model.load(path).predict(X), rtol=1e-5, atol=1e-5)


def test_mlp_unsupported_models_are_refused(tmp_path, rng):
    from onnx import helper

    W = rng.normal(size=(3, 3))
    sin = _onnx_chain_model(
        [
            helper.make_node("MatMul", ["x", "W"], ["h"], name="mm"),
            helper.make_node("Sin", ["h"], ["y"], name="weird"),
        ],
        {"W": W},
    )
    with pytest.raises(hepinfer.InputError, match=r"node 'weird' \(Sin\) is not supported"):
        codegen.generate_cpp(sin)
    residual = _onnx_chain_model(
        [
            helper.make_node("MatMul", ["x", "W"], ["h"], name="mm"),
            helper.make_node("Add", ["h", "x"], ["y"], name="skip"),
        ],
        {"W": W},
    )
    with pytest.raises(hepinfer.InputError, match=r"node 'skip' \(Add\) does not continue the chain"):
        codegen.generate_cpp(residual)
    no_dense = _onnx_chain_model([helper.make_node("Relu", ["x"], ["y"], name="r")], {})
    with pytest.raises(hepinfer.InputError, match="not an MLP"):
        codegen.generate_cpp(no_dense)
    ok = _onnx_chain_model([helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")], {"W": W})
    with pytest.raises(hepinfer.InputError, match="precision"):
        codegen.generate_cpp(ok, precision="fixed<40,8>")
    with pytest.raises(hepinfer.InputError, match="layout"):
        codegen.generate_cpp(ok, layout="arrays")
    with pytest.raises(hepinfer.InputError, match="float16"):
        codegen.mlp_error_bound(ok, np.zeros((1, 3)), "float")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    with pytest.raises(hepinfer.InputError, match="bad.onnx"):
        codegen.generate_cpp(bad)


def test_mlp_cli(tmp_path, rng):
    path = _mlp_models(tmp_path, rng)["tagger"]
    out = tmp_path / "tagger.hpp"
    assert codegen.main([str(path), "-o", str(out), "--precision", "fixed<16,6>"]) == 0
    text = out.read_text()
    assert "namespace tagger {" in text and "ap_fixed<16,6,AP_RND,AP_SAT>" in text


# ------------------------------------------------------- fixed-point MLPs, bit for bit
def _ap_quantize(v, width: int, frac: int) -> np.ndarray:
    """ap_fixed<width, width-frac, AP_RND, AP_SAT> of real values, from exact rationals (independent
    of codegen): round to the nearest multiple of 2^-frac, ties towards +inf, then saturate; NaN -> 0."""
    from fractions import Fraction

    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    v = np.asarray(v, np.float64)
    out = np.empty(v.shape, np.int64)
    for idx, x in np.ndenumerate(v):
        if np.isnan(x):
            q = 0
        elif np.isinf(x):
            q = hi if x > 0 else lo
        else:
            q = math.floor(Fraction(float(x)) * (1 << frac) + Fraction(1, 2))
        out[idx] = min(max(q, lo), hi)
    return out


def _ap_dense(xq: np.ndarray, wq: np.ndarray, bq: np.ndarray, width: int, frac: int) -> np.ndarray:
    """One dense layer on raw ap_fixed integers: exact products and sum (2*frac fractional bits),
    then one AP_RND rounding (floor(acc / 2^frac + 1/2)) and AP_SAT saturation."""
    acc = xq @ wq.T + (bq << frac)[None, :]  # int64: exact for these sizes
    assert np.abs(acc).max() < 2**62
    q = np.floor_divide(acc + (1 << (frac - 1)), 1 << frac)
    return np.clip(q, -(1 << (width - 1)), (1 << (width - 1)) - 1)


@pytest.mark.parametrize("width,integer", [(10, 4), (16, 6), (24, 10)])
def test_mlp_fixed_point_bit_exact_against_ap_fixed_emulation(tmp_path, rng, width, integer):
    """The fixed-point MLP header equals, bit for bit, an independent int64 emulation of
    ap_fixed<W,I,AP_RND,AP_SAT> (inputs, weights and every dense output rounded to the nearest with
    ties towards +inf and saturated; ReLU exact) on inputs that hit rounding ties of the inputs and
    of the accumulators, both signs, and saturation of inputs, hidden layers and outputs."""
    from onnx import helper

    frac = width - integer
    step, top = 2.0**-frac, 2.0 ** (integer - 1)
    # weights on a grid twice as fine as the format's: half of them are exact rounding ties
    shapes = [(12, 5), (9, 12), (3, 9)]
    Ws = [np.round(rng.normal(scale=0.6, size=s) * 2 * 2**frac) / (2 * 2**frac) for s in shapes]
    for W in Ws:  # neurons with weights in multiples of 1/2: half of their sums end exactly on a tie
        W[1::2] = np.round(W[1::2] * 2) / 2
    bs = [np.round(rng.normal(scale=0.5, size=s[0]) * 2 * 2**frac) / (2 * 2**frac) for s in shapes]
    Ws[0][0, :] = top / 2  # one neuron that saturates for large inputs
    Ws[1][1, :] = -top / 3
    nodes = [
        helper.make_node("Gemm", ["x", "W0", "b0"], ["h0"], name="fc0", transB=1),
        helper.make_node("Relu", ["h0"], ["a0"], name="relu0"),
        helper.make_node("Gemm", ["a0", "W1", "b1"], ["h1"], name="fc1", transB=1),
        helper.make_node("Relu", ["h1"], ["a1"], name="relu1"),
        helper.make_node("Gemm", ["a1", "W2", "b2"], ["y"], name="fc2", transB=1),
    ]
    model = _onnx_chain_model(
        nodes, {f"{k}{i}": v for i, (W, b) in enumerate(zip(Ws, bs)) for k, v in (("W", W), ("b", b))}, n_in=5
    )
    # float32 rows (the driver also checks float rows give the same result)
    n = 3000
    X = rng.normal(scale=top / 3, size=(n, 5))
    k = rng.integers(-(1 << (width - 1)), 1 << (width - 1), size=(n, 5)).astype(np.float64)
    X[: n // 3] = (k[: n // 3] + 0.5) * step  # input ties, positive and negative
    X[n // 3 : 2 * n // 3] = k[n // 3 : 2 * n // 3] * step / 4  # on the grid: accumulator ties
    edge = np.array(
        [
            top,
            -top,
            top - step,
            top - step / 2,
            -top - step / 2,
            -top + step / 2,
            1e6,
            -1e6,
            np.inf,
            -np.inf,
            np.nan,
            0.0,
            step / 2,
            -step / 2,
            3 * step / 2,
            -3 * step / 2,
        ]
    )
    pick = rng.random(X.shape) < 0.05
    X[pick] = rng.choice(edge, size=int(pick.sum()))
    X = X.astype(np.float32)
    assert np.array_equal(X[np.isfinite(X)].astype(np.float64), X[np.isfinite(X)])
    header = codegen.generate_cpp(model, name="mlp0", precision=f"fixed<{width},{integer}>")
    out = _mlp_run(tmp_path, [header], X)[0]
    # the emulation, from the ONNX file's float32 weights
    q = _ap_quantize(X, width, frac)
    hits = {"input ties": 0, "accumulator ties": 0, "saturated": 0}
    finite = X[np.isfinite(X)].astype(np.float64)
    hits["input ties"] = int(((finite * 2**frac) % 1 == 0.5).sum())
    for i, (W, b) in enumerate(zip(Ws, bs)):
        wq = _ap_quantize(W.astype(np.float32), width, frac)
        bq = _ap_quantize(b.astype(np.float32), width, frac)
        acc = q @ wq.T + (bq << frac)[None, :]
        hits["accumulator ties"] += int((acc % (1 << frac) == 1 << (frac - 1)).sum())
        q = _ap_dense(q, wq, bq, width, frac)
        hits["saturated"] += int(((q == (1 << (width - 1)) - 1) | (q == -(1 << (width - 1)))).sum())
        if i < len(Ws) - 1:
            q = np.maximum(q, 0)
    expected = (q.astype(np.float64) * step).astype(np.float32)
    assert min(hits.values()) > 20, hits  # the inputs really exercise rounding ties and saturation
    bad = np.flatnonzero((out != expected).any(axis=1))
    assert len(bad) == 0, (
        f"{len(bad)} of {n} rows differ, first: x={X[bad[0]].tolist()} header="
        f"{out[bad[0]].tolist()} ap_fixed={expected[bad[0]].tolist()}"
    )


# ------------------------------------------------------- deep trees and hostile strings
def test_tree_5000_levels_deep(tmp_path, rng):
    """LightGBM and XGBoost allow trees thousands of levels deep: code generation walks them without
    recursion, and the generated header compiles and equals the engine and XGBoost itself."""
    depth, nf = 5000, 3
    raw, chain = deep_xgb_json(rng, depth, nf)
    forest = hepinfer.Forest.load(raw, format="xgboost-json")
    X = deep_rows(rng, chain, nf, 400)
    header = codegen.generate_cpp(forest, name="gen0")
    assert "goto n" in header  # the deep tree is flat labelled statements, not a 5000-level expression
    exe = _compile(tmp_path, header)
    pd, pf, marg, leaves = _run(exe, forest, X)
    np.testing.assert_array_equal(pd[:, 0], forest.predict(X))
    np.testing.assert_array_equal(marg[:, 0], forest.predict(X, output="margin"))
    np.testing.assert_array_equal(leaves, forest.predict_leaf(X))
    booster = xgb.Booster(model_file=bytearray(raw))
    dm = xgb.DMatrix(X.astype(np.float32), missing=np.nan)
    np.testing.assert_allclose(pd[:, 0], booster.predict(dm), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(leaves, booster.predict(dm, pred_leaf=True).astype(np.int32))
    assert len(np.unique(leaves[:, -1])) > 150  # the rows really end deep in the chain, at many levels


def test_hostile_names_are_escaped(tmp_path, rng):
    """A model file name with a newline (or CR, NUL, backslash, */) cannot inject code through the
    header's comments, and feature names with quotes, backslashes, CR, NUL and non-ASCII become
    exact string literals (the header compiles with -Werror and the names read back byte for byte)."""
    evil = "m\nint injected = 1; /* \r\n#error injected\x00 */ \\"
    names = ['a"b', "back\\slash", "cr\rlf\nnul\x00end", "tab\there", "caf\u00e9 \u2028 ??/", "tri??=x\\"]
    src = tmp_path / (evil.replace("\x00", "").replace("/", "_") + ".json")
    X = rng.normal(size=(1500, 6)).astype(np.float32)
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 3, "nthread": 1},
        xgb.DMatrix(X, (X[:, 0] > 0).astype(int), feature_names=[f"f{j}" for j in range(6)]),
        3,
    )
    booster.feature_names = None
    booster.save_model(str(src))
    import json

    model = json.loads(src.read_text())
    model["learner"]["feature_names"] = names
    model["learner"]["feature_types"] = ["float"] * 6
    src.write_text(json.dumps(model))
    f2 = hepinfer.Forest.load(src)
    assert f2.feature_names == names
    header = codegen.generate_cpp(f2, name="gen0")
    for line in header.splitlines():
        assert "injected" not in line or line.startswith("//"), line
        assert not line.rstrip().endswith("\\"), line
    assert (
        "\r" not in header
        and "\x00" not in header
        and "\u2028" not in header
        and "*/" not in header.split("#pragma")[0]
    )
    driver = (
        '#include "model0.hpp"\n#include <cstdio>\n#include <cstring>\n'
        "int main() {\n  for (int j = 0; j < gen0::n_features; ++j) {\n"
        "    const char* s = gen0::feature_names[j];\n"
        "    std::fwrite(s, 1, std::strlen(s), stdout); std::fputc('|', stdout);\n  }\n  return 0;\n}\n"
    )
    (tmp_path / "model0.hpp").write_text(header)
    (tmp_path / "names.cpp").write_text(driver)
    proc = subprocess.run(
        [GXX, "-std=c++17", "-Wall", "-Wextra", "-Werror", "-Wcomment", "names.cpp", "-o", "names"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = subprocess.run([str(tmp_path / "names")], capture_output=True, check=True).stdout
    # C strings end at NUL: the name holding one reads back up to it
    assert got == b"|".join(n.split("\x00")[0].encode() for n in names) + b"|"
    # the generated predictions are still right
    exe = _compile(tmp_path, header)
    Y = _edge_rows(f2, rng, 100)
    pd, _, _, _ = _run(exe, f2, Y)
    np.testing.assert_array_equal(pd[:, 0], f2.predict(Y))


def test_hostile_onnx_node_names_are_escaped(tmp_path, rng):
    from onnx import helper

    W = rng.normal(size=(3, 2))
    model = _onnx_chain_model(
        [
            helper.make_node("MatMul", ["x", "W"], ["h"], name="mm\nint injected = 1;\\"),
            helper.make_node("Relu", ["h"], ["y"], name="r\r*/\x00"),
        ],
        {"W": W},
        n_in=3,
    )
    header = codegen.generate_cpp(model, name="mlp0", precision="fixed<16,6>")
    assert "\r" not in header and "\x00" not in header and "*/" not in header
    assert all("injected" not in ln or "//" in ln.split("injected")[0] for ln in header.splitlines())
    X = rng.normal(size=(50, 3)).astype(np.float32)
    out = _mlp_run(tmp_path, [header], X)[0]
    assert out.shape == (50, 2)
