"""hepinfer::rdf (cpp/include/hepinfer/rdf.hpp) inside ROOT's RDataFrame, with ImplicitMT on:
from PyROOT (hepinfer.rdf, run in a subprocess: tests/rdf/pyroot_job.py) and from a compiled
C++ analysis (tests/rdf, built with find_package(hepinfer) and find_package(ROOT)). Scores of
forests (xgboost with feature names in another column order, LightGBM multiclass) must equal
hepinfer.Forest.predict on the same events exactly (as float32); networks (an MLP and a
particle-list Deep Sets model on RVec columns, zero-padded) must match hepinfer.Model.predict.
Wrong column names, counts, multi-output models, bad files and ragged particle columns must
give clear errors. Skipped where ROOT (pip install root) is not installed, except the check of
the header without ROOT (tests/rdf/no_root.cpp, compiled with g++ against the installed package)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import hepinfer
from tests.seeding import stable_seed

TESTS = Path(__file__).resolve().parents[1]  # the tests/ folder
needs_root = pytest.mark.skipif(
    importlib.util.find_spec("ROOT") is None, reason="ROOT (pip install root) not installed"
)

N_EVENTS = 1500
MAX_PARTICLES = 8
FEATURES = ["jet_pt", "jet_mass", "tau21", "n_constituents"]


def _run(cmd, **kw):
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)
    if proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n"
            f"{proc.stderr[-6000:]}"
        )
    return proc


# ----------------------------------------------------------------------------- inputs and models
def _events(rng) -> dict:
    n = N_EVENTS
    n_pf = rng.integers(0, 2 * MAX_PARTICLES, n)  # longer lists than the network takes: truncated
    n_pf[:3] = [0, 1, MAX_PARTICLES]
    return {
        "event": np.arange(n, dtype=np.uint64) * 3 + 1000,
        "jet_pt": rng.exponential(100, n).astype(np.float32) + 300,
        "jet_mass": rng.uniform(0, 200, n),  # double
        "tau21": rng.uniform(0, 1, n).astype(np.float32),
        "n_constituents": rng.integers(5, 80, n).astype(np.int32),
        "n_pf": n_pf,
    }


def _write_events(path: Path, ev: dict, rng) -> list:
    import awkward as ak
    import uproot

    pf_pt = [rng.exponential(20, k).astype(np.float32) for k in ev["n_pf"]]
    pf_eta = [rng.normal(0, 0.4, k).astype(np.float32) for k in ev["n_pf"]]
    short = [v[:-1] if len(v) else v for v in pf_pt]
    with uproot.recreate(path) as f:
        f["Events"] = {
            **{k: ev[k] for k in ("event", "jet_pt", "jet_mass", "tau21", "n_constituents")},
            "pf_pt": ak.Array(pf_pt),
            "pf_eta": ak.Array(pf_eta),
            "pf_short": ak.Array(short),
        }
    return [pf_pt, pf_eta]


def _feature_matrix(ev: dict, names) -> np.ndarray:
    return np.column_stack([ev[k].astype(np.float64) for k in names])


def _models(work: Path, ev: dict, rng) -> None:
    xgb = pytest.importorskip("xgboost")
    lgb = pytest.importorskip("lightgbm")
    torch = pytest.importorskip("torch")
    X = _feature_matrix(ev, FEATURES)
    y = ((X[:, 1] > 80) & (X[:, 2] < 0.5)).astype(int)
    # feature names in another order than the columns given to the Predictor
    names = ["jet_mass", "jet_pt", "n_constituents", "tau21"]
    Xn = _feature_matrix(ev, names)
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 4, "nthread": 1},
        xgb.DMatrix(Xn, y, feature_names=names),
        20,
    )
    booster.save_model(work / "bdt.json")
    yc = np.digitize(X[:, 1], [60, 130])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lgb.train(
            {"objective": "multiclass", "num_class": 3, "verbose": -1, "num_leaves": 7, "num_threads": 1},
            lgb.Dataset(X, yc, feature_name=FEATURES),
            10,
        ).save_model(str(work / "multi.txt"))
    (work / "broken.json").write_text('{"learner": {"gradient_booster": ')

    torch.manual_seed(int(rng.integers(1 << 30)))
    mlp = torch.nn.Sequential(
        torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1), torch.nn.Sigmoid()
    )
    with torch.no_grad():  # features of order 1, so that the sigmoid does not saturate at 1 for every event
        mlp[0].weight /= torch.as_tensor(np.abs(X).mean(axis=0) + 1e-3, dtype=torch.float32)

    class DeepSets(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.phi = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU())
            self.rho = torch.nn.Linear(8, 1)

        def forward(self, x):  # x: [batch, particles, 2]
            return torch.sigmoid(self.rho(self.phi(x).sum(dim=1)))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for net, shape, name in ((mlp, (2, 4), "mlp.onnx"), (DeepSets(), (2, MAX_PARTICLES, 2), "pfn.onnx")):
            torch.onnx.export(
                net.eval(),
                (torch.randn(*shape) * 0.01,),
                str(work / name),
                input_names=["x"],
                output_names=["y"],
                dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
                dynamo=False,
                opset_version=17,
            )


def _padded(pf, ev) -> np.ndarray:
    n = len(ev["n_pf"])
    x = np.zeros((n, MAX_PARTICLES, 2), np.float32)
    for i in range(n):
        k = min(len(pf[0][i]), MAX_PARTICLES)
        x[i, :k, 0] = pf[0][i][:k]
        x[i, :k, 1] = pf[1][i][:k]
    return x


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    seed = stable_seed("tests/test_rdf.py::setup")
    print(f"[test_rdf] random seed = {seed}")
    rng = np.random.default_rng(seed)
    work = tmp_path_factory.mktemp("rdf")
    ev = _events(rng)
    pf = _write_events(work / "events.root", ev, rng)
    _models(work, ev, rng)
    return work, ev, pf


def _library_or_skip() -> str:
    import hepinfer.rdf

    try:
        return hepinfer.rdf.library_path()
    except FileNotFoundError as e:
        pytest.skip(str(e))


# ----------------------------------------------------------------------------- PyROOT
@pytest.fixture(scope="module")
def pyroot(setup):
    work, ev, _ = setup
    _library_or_skip()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(hepinfer.__file__).resolve().parents[1]), env.get("PYTHONPATH", "")]
    )
    _run([sys.executable, str(TESTS / "rdf" / "pyroot_job.py"), str(work)], env=env, timeout=600)
    res = dict(np.load(work / "results.npz"))
    errors = json.loads((work / "errors.json").read_text())
    # RDataFrame's order under ImplicitMT is not the file's: put events back in order
    order = np.argsort(res["event"])
    res = {k: v[order] for k, v in res.items()}
    np.testing.assert_array_equal(res["event"], ev["event"])
    return res, errors


@needs_root
def test_pyroot_forest_scores_exact(setup, pyroot):
    work, ev, _ = setup
    res, _ = pyroot
    assert len(np.unique(res["slot"])) == 2, "ImplicitMT(2) should have used both slots"
    bdt = hepinfer.Forest.load(work / "bdt.json")
    expected = bdt.predict(_feature_matrix(ev, bdt.feature_names)).astype(np.float32)
    np.testing.assert_array_equal(res["bdt"], expected)
    multi = hepinfer.Forest.load(work / "multi.txt")
    X = _feature_matrix(ev, FEATURES)
    np.testing.assert_array_equal(res["lgbm"], multi.predict(X).astype(np.float32))
    np.testing.assert_array_equal(res["lgbm1"], multi.predict(X, output="margin")[:, 1].astype(np.float32))


@needs_root
def test_pyroot_network_scores(setup, pyroot):
    work, ev, pf = setup
    res, _ = pyroot
    X = _feature_matrix(ev, FEATURES).astype(np.float32)
    mlp = hepinfer.Model.load(work / "mlp.onnx").predict(X).reshape(-1)
    np.testing.assert_allclose(res["mlp"], mlp, rtol=1e-5, atol=1e-7)
    pfn = hepinfer.Model.load(work / "pfn.onnx").predict(_padded(pf, ev)).reshape(-1)
    np.testing.assert_allclose(res["pfn"], pfn, rtol=1e-5, atol=1e-7)
    assert np.ptp(res["pfn"]) > 0 and np.ptp(res["mlp"]) > 0


@needs_root
def test_pyroot_errors(pyroot):
    _, errors = pyroot
    kind, msg = errors["wrong_names"]
    assert kind == "InputError"
    assert "missing tau21" in msg and "not features of the model: tau_21" in msg
    kind, msg = errors["wrong_count"]
    assert kind == "InputError" and "2 columns given" in msg
    kind, msg = errors["multi_output"]
    assert kind == "InputError" and "3 outputs per event" in msg
    kind, msg = errors["bad_file"]
    assert kind == "ModelFormatError" and "broken.json" in msg
    assert errors["ragged"] is not None and "different lengths" in errors["ragged"][1]


@needs_root
def test_python_argument_checks(tmp_path):
    import hepinfer.rdf

    with pytest.raises(hepinfer.InputError, match="does not exist"):
        hepinfer.rdf.Predictor(tmp_path / "missing.json", ["a"])
    with pytest.raises(hepinfer.InputError, match="sequence of column names"):
        hepinfer.rdf.Predictor(tmp_path / "missing.json", "a")
    with pytest.raises(hepinfer.InputError, match="probability"):
        hepinfer.rdf.Predictor(tmp_path / "missing.json", ["a"], output="logit")


# ----------------------------------------------------------------------------- compiled C++
def _fixed_root_cmake_dir(base: Path) -> Path:
    """ROOT's pip wheel ships a CMake package whose imported targets point into a build-time
    folder ('<prefix>/mock_site_packages/ROOT', '.../cppyy'): a copy of ROOT's cmake folder whose
    _IMPORT_PREFIX is a folder of links to the installed wheel and whose 'mock_site_packages'
    paths are the real site-packages."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec = importlib.util.find_spec("ROOT")
    root = Path(spec.origin).resolve().parent
    cmake = root / "cmake"
    if not (cmake / "ROOTConfig.cmake").is_file():
        pytest.skip(f"no ROOTConfig.cmake in {cmake}")
    fixed = base / "root-prefix"
    (fixed / "cmake").mkdir(parents=True)
    for entry in root.iterdir():
        if entry.name != "cmake":
            (fixed / entry.name).symlink_to(entry)
    step = 'get_filename_component(_IMPORT_PREFIX "${_IMPORT_PREFIX}" PATH)\n'
    for f in cmake.iterdir():
        if f.is_dir():
            (fixed / "cmake" / f.name).symlink_to(f)
            continue
        text = f.read_text()
        text = text.replace(
            'get_filename_component(_IMPORT_PREFIX "${CMAKE_CURRENT_LIST_FILE}" PATH)\n',
            f'set(_IMPORT_PREFIX "{fixed}")\n',
        ).replace(step, "")
        text = text.replace("${_IMPORT_PREFIX}/mock_site_packages/", f"{root.parent}/")
        (fixed / "cmake" / f.name).write_text(text)
    return fixed / "cmake"


@needs_root
@pytest.mark.slow
def test_compiled_rdataframe_app(setup, tmp_path):
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("cmake not found")
    uproot = pytest.importorskip("uproot")
    work, ev, _ = setup
    build = tmp_path / "build"
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    root_dir = _fixed_root_cmake_dir(tmp_path)
    # the wheel's own libraries (libfreetype, ...) need their bundled dependencies in root.libs
    bundled = (root_dir.parent / "lib").resolve().parent.parent / "root.libs"
    link = [f"-DCMAKE_EXE_LINKER_FLAGS=-Wl,-rpath-link,{bundled}"] if bundled.is_dir() else []
    _run(
        [
            cmake,
            "-S",
            str(TESTS / "rdf"),
            "-B",
            str(build),
            *gen,
            "-DCMAKE_BUILD_TYPE=Release",
            *link,
            f"-Dhepinfer_DIR={hepinfer.cmake_dir()}",
            f"-DROOT_DIR={root_dir}",
        ]
    )
    _run([cmake, "--build", str(build)], timeout=600)
    out = tmp_path / "scores.root"
    proc = _run(
        [
            str(build / "rdf_app"),
            str(work / "events.root"),
            str(work / "bdt.json"),
            str(work / "mlp.onnx"),
            str(out),
        ],
        timeout=300,
    )
    assert "not features of the model: tau_21" in proc.stdout
    scores = uproot.open(out)["Scores"].arrays(["event", "bdt", "mlp"], library="np")
    order = np.argsort(scores["event"])
    np.testing.assert_array_equal(scores["event"][order], ev["event"])
    bdt = hepinfer.Forest.load(work / "bdt.json")
    np.testing.assert_array_equal(
        scores["bdt"][order], bdt.predict(_feature_matrix(ev, bdt.feature_names)).astype(np.float32)
    )
    mlp = hepinfer.Model.load(work / "mlp.onnx").predict(_feature_matrix(ev, FEATURES).astype(np.float32))
    np.testing.assert_allclose(scores["mlp"][order], mlp.reshape(-1), rtol=1e-5, atol=1e-7)


def test_header_without_root(setup, tmp_path):
    """rdf.hpp in a program without ROOT: typed and untyped Predictor, MultiPredictor (std::vector),
    column names in another order than the model's, and the errors."""
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ not found")
    work, ev, _ = setup
    libdir = Path(hepinfer.cmake_dir()).parents[1]
    exe = tmp_path / "no_root"
    _run(
        [
            gxx,
            "-O2",
            "-std=c++17",
            "-Wall",
            "-Wextra",
            "-Wconversion",
            "-Wshadow",
            "-Werror",
            f"-I{hepinfer.include_dir()}",
            str(TESTS / "rdf" / "no_root.cpp"),
            "-o",
            str(exe),
            f"-L{libdir}",
            f"-Wl,-rpath,{libdir}",
            "-lhepinfer",
            "-lpthread",
        ]
    )
    X = _feature_matrix(ev, FEATURES)
    (tmp_path / "rows.bin").write_bytes(np.ascontiguousarray(X).tobytes())
    proc = _run(
        [
            str(exe),
            str(work / "bdt.json"),
            str(work / "multi.txt"),
            str(tmp_path / "rows.bin"),
            str(tmp_path / "out.bin"),
        ]
    )
    out = np.fromfile(tmp_path / "out.bin", dtype=np.float32).reshape(len(X), 5)
    bdt = hepinfer.Forest.load(work / "bdt.json")
    expected = bdt.predict(_feature_matrix(ev, bdt.feature_names)).astype(np.float32)
    np.testing.assert_array_equal(out[:, 0], expected)
    np.testing.assert_array_equal(out[:, 1], expected)
    np.testing.assert_array_equal(
        out[:, 2:], hepinfer.Forest.load(work / "multi.txt").predict(X).astype(np.float32)
    )
    lines = proc.stdout.splitlines()
    assert "3 columns given (jet_pt, jet_mass, tau21) but the model takes 4 features" in lines[0]
    assert "missing n_constituents; not features of the model: nconst" in lines[1]
    assert "3 outputs per event" in lines[2]
    assert "called with 3 values but constructed with 4 columns" in lines[3]
