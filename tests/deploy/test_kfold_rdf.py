"""A k-fold bundle as an RDataFrame column (hepinfer/rdf_kfold.hpp through hepinfer.rdf, PyROOT,
ImplicitMT on; run in a subprocess: tests/rdf/kfold_job.py): each event's value is the member of
its fold on that event, as float32 (forests exactly, networks to float rounding), from the
manifest's event-number column or another one; clear errors. Skipped without ROOT."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import hepinfer
from tests.deploy.kfold_models import FEATURES, events, fold_of, mlp_onnx, xgboost_bundle

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("ROOT") is None, reason="ROOT (pip install root) not installed"
)
TESTS = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    pytest.importorskip("xgboost")
    pytest.importorskip("onnx")
    uproot = pytest.importorskip("uproot")
    import hepinfer.rdf

    try:
        hepinfer.rdf.library_path()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    work = tmp_path_factory.mktemp("kfold_rdf")
    paths = xgboost_bundle(work / "bdt_kfold", 3, seed=11)
    nets = [mlp_onnx(work / f"net_{i}.onnx", len(FEATURES), 2, seed=50 + i) for i in range(4)]
    (work / "mlp_kfold").mkdir()
    hepinfer.kfold.write_manifest(work / "mlp_kfold", nets, features=FEATURES)
    d = events(np.random.default_rng(5), 2500)
    d["mass"] = np.nan_to_num(d["mass"])
    d["event"] = d["event"].astype(np.uint64)
    d["evt32"] = (np.arange(2500) * 7 - 3000).astype(np.int32)  # negative numbers too
    d["evt_float"] = d["evt32"].astype(np.float64)
    with uproot.recreate(work / "events.root") as f:
        f["Events"] = d
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(hepinfer.__file__).resolve().parents[1]), str(TESTS.parent)]
    )
    proc = subprocess.run(
        [sys.executable, str(TESTS / "rdf" / "kfold_job.py"), str(work)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    res = dict(np.load(work / "results.npz"))
    errors = json.loads((work / "errors.json").read_text())
    columns = res.pop("columns")
    order = np.argsort(res["event"])
    res = {k: v[order] for k, v in res.items()}
    d = {k: v[np.argsort(d["event"])] for k, v in d.items()}
    np.testing.assert_array_equal(res["event"], d["event"])
    return work, paths, nets, d, res, errors, list(columns), proc.stderr


def test_forest_bundle_column(job):
    work, paths, _, d, res, _, columns, _ = job
    assert len(np.unique(res["slot"])) == 2, "ImplicitMT(2) should have used both slots"
    assert columns == ["mass", "pt", "eta", "event", "|", "pt", "eta", "mass", "evt32"]
    X = np.column_stack([d[f] for f in FEATURES])
    forests = [hepinfer.Forest.load(p) for p in paths]
    for key, ev, output in (("bdt", d["event"], "probability"), ("margin", d["evt32"], "margin")):
        folds = fold_of(ev, 3)
        want = np.empty(len(X))
        for i, f in enumerate(forests):
            want[folds == i] = f.predict(X[folds == i], output=output)
        np.testing.assert_array_equal(res[key], want.astype(np.float32), err_msg=key)


def test_network_bundle_column(job):
    work, _, nets, d, res, _, _, _ = job
    ort = pytest.importorskip("onnxruntime")
    X = np.column_stack([d[f] for f in FEATURES]).astype(np.float32)
    folds = fold_of(d["event"], 4)
    want = np.empty(len(X), dtype=np.float32)
    for i, p in enumerate(nets):
        sess = ort.InferenceSession(p, providers=["CPUExecutionProvider"])
        want[folds == i] = sess.run(None, {"x": X[folds == i]})[0][:, 1]
    np.testing.assert_allclose(res["mlp"], want, rtol=1e-5, atol=1e-6)


def test_errors(job):
    errors = job[5]
    assert (
        errors["all_outputs"][0] == "InputError"
        and "not available for k-fold bundles" in errors["all_outputs"][1]
    )
    assert (
        errors["wrong_names"][0] == "InputError"
        and "missing mass; not features of the model: m" in (errors["wrong_names"][1])
    )
    assert errors["multi_output"][0] == "InputError" and "2 outputs per event" in errors["multi_output"][1]
    assert (
        errors["event_number_single"][0] == "InputError"
        and "a single model" in errors["event_number_single"][1]
    )
    # a float event-number column: ROOT's jit fails on the header's static_assert, which says why
    assert errors["float_event"] is not None
    assert "the event-number column (the last) must have an integer type" in job[7]
