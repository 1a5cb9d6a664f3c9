"""hepinfer on real ROOT files that no one here wrote: the data files CERN ships with ROOT's
tutorials inside the `root` pip wheel (UCI Higgs sample, the TMVA tutorial's signal and
background trees, hsimple's TNtuple, a file of C-style variable-length arrays).

The files are found without importing ROOT (importing it prints warnings); the tests skip
when the wheel is not installed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

uproot = pytest.importorskip("uproot")
ak = pytest.importorskip("awkward")
xgb = pytest.importorskip("xgboost")

import hepinfer
from hepinfer.io import ReadError


def _tutorials() -> Path | None:
    spec = importlib.util.find_spec("ROOT")
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = Path(loc) / "tutorials"
        if p.is_dir():
            return p
    return None


TUTORIALS = _tutorials()
pytestmark = pytest.mark.skipif(
    TUTORIALS is None, reason="the `root` wheel (ROOT's tutorial files) is not installed"
)


def _file(rel: str) -> str:
    path = TUTORIALS / rel
    if not path.is_file():
        pytest.skip(f"{rel} not shipped by this ROOT wheel")
    return str(path)


HIGGS_FEATURES = [
    "lepton_pT",
    "lepton_eta",
    "missing_energy_magnitude",
    "jet1_pt",
    "jet1_eta",
    "jet2_pt",
    "m_jj",
    "m_jjj",
    "m_lv",
    "m_jlv",
    "m_bb",
    "m_wbb",
    "m_wwbb",
]


@pytest.fixture(scope="module")
def higgs():
    path = _file("machine_learning/data/Higgs_data.root")
    with uproot.open(path) as f:
        sig = f["sig_tree"].arrays(HIGGS_FEATURES, library="np")
        bkg = f["bkg_tree"].arrays(HIGGS_FEATURES, library="np")
    X = np.concatenate([np.stack([a[k] for k in HIGGS_FEATURES], axis=1) for a in (sig, bkg)])
    y = np.concatenate([np.ones(len(sig[HIGGS_FEATURES[0]])), np.zeros(len(bkg[HIGGS_FEATURES[0]]))])
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 5, "eta": 0.2, "nthread": 1},
        xgb.DMatrix(X[::2], y[::2], feature_names=HIGGS_FEATURES),
        60,
    )
    return path, booster, sig, bkg


def test_higgs_bdt_scores_two_trees_of_one_file(higgs, tmp_path):
    """A BDT trained on the UCI Higgs sample: hepinfer.score over the signal and background
    trees equals xgboost on the same events, and the written file round-trips."""
    path, booster, sig, bkg = higgs
    forest = hepinfer.Forest.load(booster)
    for tree, arrays in (("sig_tree", sig), ("bkg_tree", bkg)):
        got = hepinfer.score(forest, path, tree=tree, chunk=3000)
        X = np.stack([arrays[k] for k in HIGGS_FEATURES], axis=1)
        np.testing.assert_allclose(
            got, booster.predict(xgb.DMatrix(X, feature_names=HIGGS_FEATURES)), rtol=1e-6, atol=1e-7
        )
    out = tmp_path / "higgs_scores.root"
    summary = hepinfer.score(forest, {path: "sig_tree"}, output=str(out), chunk="200 kB")
    assert summary.events == 10000 and not summary.failures
    with uproot.open(out) as f:
        written = f["scores"].arrays(["entry", "score"], library="np")
    np.testing.assert_array_equal(written["entry"], np.arange(10000))
    np.testing.assert_array_equal(written["score"], hepinfer.score(forest, path, tree="sig_tree"))
    # uproot's awkward record array straight into the forest (its buffers' dtype objects are
    # not numpy's canonical ones)
    with uproot.open(path) as f:
        events = f["sig_tree"].arrays(HIGGS_FEATURES)
    np.testing.assert_array_equal(forest.predict(events), written["score"])
    # the BDT separates the real sample
    s, b = (hepinfer.score(forest, path, tree=t) for t in ("sig_tree", "bkg_tree"))
    assert np.mean(s) > np.mean(b) + 0.1


def test_tmva_tutorial_trees_with_expressions(tmp_path):
    """The TMVA tutorial's TreeS/TreeB: features given as expressions of the branches, a cut,
    and a LightGBM model, against LightGBM on the same derived arrays."""
    lgb = pytest.importorskip("lightgbm")
    path = _file("machine_learning/data/tmva_class_example.root")
    exprs = {"sum12": "var1 + var2", "diff12": "var1 - var2", "var3": "var3", "var4": "var4"}
    with uproot.open(path) as f:
        S = f["TreeS"].arrays(["var1", "var2", "var3", "var4"], library="np")
        B = f["TreeB"].arrays(["var1", "var2", "var3", "var4"], library="np")

    def derive(a):
        return np.stack([a["var1"] + a["var2"], a["var1"] - a["var2"], a["var3"], a["var4"]], axis=1)

    X = np.concatenate([derive(S), derive(B)]).astype(np.float64)
    y = np.r_[np.ones(6000), np.zeros(6000)]
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_threads": 1, "num_leaves": 15},
        lgb.Dataset(X, y, feature_name=list(exprs)),
        30,
    )
    model = tmp_path / "tmva_example.txt"
    booster.save_model(str(model))
    got = hepinfer.score(str(model), path, tree="TreeB", features=exprs, cut="var4 > 0")
    keep = B["var4"] > 0
    # uproot computes the expressions in the branches' float32
    ref = booster.predict(derive({k: v[keep] for k, v in B.items()}).astype(np.float64))
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    assert len(got) == int(keep.sum())


def test_hsimple_ntuple_and_not_a_tree(tmp_path):
    """hsimple.root: a TNtuple (scored) beside histograms (a clear error names the object)."""
    path = _file("hsimple.root")
    with uproot.open(path) as f:
        nt = f["ntuple"].arrays(["px", "py", "pz"], library="np")
    X = np.stack([nt["px"], nt["py"], nt["pz"]], axis=1)
    booster = xgb.train(
        {"objective": "reg:squarederror", "max_depth": 4, "nthread": 1},
        xgb.DMatrix(X, np.hypot(nt["px"], nt["py"]), feature_names=["px", "py", "pz"]),
        20,
    )
    got = hepinfer.score(booster, path, tree="ntuple")
    np.testing.assert_allclose(
        got, booster.predict(xgb.DMatrix(X, feature_names=["px", "py", "pz"])), rtol=1e-6, atol=1e-6
    )
    with pytest.raises(ReadError, match="hpx"):
        hepinfer.score(booster, path, tree="hpx")


def test_variable_length_arrays_four_vectors():
    """df017_vecOpsHEP.root (C-style double[] arrays): hepinfer.jagged's four-vector kernels on
    uproot's awkward arrays equal numpy on the flattened content, per event."""
    path = _file("analysis/dataframe/df017_vecOpsHEP.root")
    with uproot.open(path) as f:
        ev = f["myDataset"].arrays(["px", "py", "E"])
    pz = ak.zeros_like(ev.px)
    pt, eta, phi, m = hepinfer.jagged.to_pt_eta_phi_m(ev.px, ev.py, pz, ev.E)
    px, py, E = (ak.to_numpy(ak.flatten(a)) for a in (ev.px, ev.py, ev.E))
    np.testing.assert_allclose(np.asarray(ak.flatten(pt)), np.hypot(px, py), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(ak.flatten(phi)), np.arctan2(py, px), rtol=1e-12)
    m2 = E**2 - px**2 - py**2
    np.testing.assert_allclose(np.asarray(ak.flatten(m)), np.sign(m2) * np.sqrt(np.abs(m2)), rtol=1e-9)
    lead = hepinfer.jagged.leading(ak.zip({"pt": pt, "E": ev.E}), k=2, by="pt", fields=["pt", "E"])
    assert isinstance(lead, tuple) and len(lead) >= 2
