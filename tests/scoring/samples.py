"""ROOT files (and a small BDT) that the scoring tests share: the NanoAOD-like files written by
ROOT's own I/O (or by uproot without ROOT) and their reference arrays, flat uproot files, a
corrupted basket, scikit-hep-testdata files. Plain helpers: the fixture ``rootdir`` that writes
the files once per session is in tests/scoring/conftest.py."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from tests.seeding import stable_seed

uproot = pytest.importorskip("uproot")
ak = pytest.importorskip("awkward")

# ------------------------------------------------------------------ files written by ROOT

_ROOT_SCRIPT = r"""
import sys, warnings
warnings.simplefilter("ignore")
import array
import numpy as np
import ROOT
out, seed = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(seed)
for name, n in (("nano_a", 5000), ("nano_b", 3000)):
    x = rng.normal(size=n).astype(np.float32)
    x[5::97] = np.nan
    y = rng.uniform(-2, 2, size=n)
    njet = rng.poisson(2, size=n).astype(np.int32)
    pts = rng.exponential(30, size=njet.sum()).astype(np.float32)
    run = np.full(n, seed % 1000, np.uint32)
    lumi = (np.arange(n) // 100 + 1).astype(np.uint32)
    event = (np.arange(n, dtype=np.uint64) * 7 + 123456789012)
    f = ROOT.TFile(f"{out}/{name}.root", "RECREATE")
    t = ROOT.TTree("Events", "NanoAOD-like events")
    t.SetAutoFlush(700)
    b = {k: array.array(c, [0]) for k, c in (("run", "I"), ("luminosityBlock", "I"), ("event", "Q"), ("x", "f"), ("y", "d"), ("nJet", "i"))}
    t.Branch("run", b["run"], "run/i"); t.Branch("luminosityBlock", b["luminosityBlock"], "luminosityBlock/i")
    t.Branch("event", b["event"], "event/l"); t.Branch("x", b["x"], "x/F"); t.Branch("y", b["y"], "y/D")
    t.Branch("nJet", b["nJet"], "nJet/I")
    jet = ROOT.std.vector("float")()
    t.Branch("Jet_pt", jet)
    k = 0
    for i in range(n):
        b["run"][0] = int(run[i]); b["luminosityBlock"][0] = int(lumi[i]); b["event"][0] = int(event[i])
        b["x"][0] = float(x[i]); b["y"][0] = float(y[i]); b["nJet"][0] = int(njet[i])
        jet.clear()
        for j in range(njet[i]):
            jet.push_back(float(pts[k])); k += 1
        t.Fill()
    t.Write(); f.Close()
    np.savez(f"{out}/{name}.npz", run=run, luminosityBlock=lumi, event=event, x=x, y=y, nJet=njet, pts=pts)
rn = ROOT.RDF.RSnapshotOptions()
rn.fOutputFormat = ROOT.RDF.ESnapshotOutputFormat.kRNTuple
ROOT.RDataFrame("Events", f"{out}/nano_b.root").Snapshot("Events", f"{out}/ntuple.root", ["x", "y", "nJet"], rn)
f = ROOT.TFile(f"{out}/mixed.root", "RECREATE")
h = ROOT.TH1F("h", "a histogram", 10, 0, 1); h.Write()
t = ROOT.TTree("other", "another tree"); t.Write()
f.Close()
print("ok")
"""


def root_written_files(base) -> str:
    """NanoAOD-like files written by ROOT's own I/O (TTree::Fill, std::vector<float>, and an
    RNTuple from RDataFrame::Snapshot), made once per test session. Without the `root` wheel
    the same files are written with uproot instead (HEPINFER_REQUIRE_ROOT=1: fail then;
    HEPINFER_TEST_WRITER=uproot: use uproot even where ROOT is installed)."""
    out = base / "root-written"
    if (out / "ok").exists():
        return str(out)
    import importlib.util

    out.mkdir(exist_ok=True)
    seed = stable_seed("tests/test_io.py::root-written") % 100000
    if importlib.util.find_spec("ROOT") is None or os.environ.get("HEPINFER_TEST_WRITER") == "uproot":
        if os.environ.get("HEPINFER_REQUIRE_ROOT"):
            pytest.fail("HEPINFER_REQUIRE_ROOT is set but ROOT (pip install root) is not installed")
        print(f"ROOT is not installed: the test files are written by uproot, numpy seed {seed}")
        _write_with_uproot(str(out), seed)
    else:
        print(f"test files written by ROOT from numpy seed {seed}")
        proc = subprocess.run(
            [sys.executable, "-c", _ROOT_SCRIPT, str(out), str(seed)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if proc.returncode != 0 or "ok" not in proc.stdout:
            pytest.fail(f"writing files with ROOT failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    (out / "ok").write_text(str(seed))
    return str(out)


def _write_with_uproot(out: str, seed: int) -> None:
    """The files _ROOT_SCRIPT writes, with the same content, written by uproot."""
    rng = np.random.default_rng(seed)
    for name, n in (("nano_a", 5000), ("nano_b", 3000)):
        x = rng.normal(size=n).astype(np.float32)
        x[5::97] = np.nan
        y = rng.uniform(-2, 2, size=n)
        njet = rng.poisson(2, size=n).astype(np.int32)
        pts = rng.exponential(30, size=njet.sum()).astype(np.float32)
        run = np.full(n, seed % 1000, np.uint32)
        lumi = (np.arange(n) // 100 + 1).astype(np.uint32)
        event = np.arange(n, dtype=np.uint64) * 7 + 123456789012
        cols = {"run": run, "luminosityBlock": lumi, "event": event, "x": x, "y": y, "nJet": njet}
        jets = ak.unflatten(pts, njet)
        with uproot.recreate(f"{out}/{name}.root") as f:
            f.mktree("Events", {**{k: v.dtype for k, v in cols.items()}, "Jet_pt": "var * float32"})
            for part in np.array_split(np.arange(n), max(1, n // 700)):  # several baskets
                lo, hi = part[0], part[-1] + 1
                f["Events"].extend({**{k: v[lo:hi] for k, v in cols.items()}, "Jet_pt": jets[lo:hi]})
        np.savez(f"{out}/{name}.npz", **cols, pts=pts)
        if name == "nano_b":
            with uproot.recreate(f"{out}/ntuple.root") as f:
                f["Events"] = {"x": x, "y": y, "nJet": njet}  # uproot writes an RNTuple
    with uproot.recreate(f"{out}/mixed.root") as f:
        f["h"] = np.histogram(rng.uniform(size=10), bins=10, range=(0, 1))
        f.mktree("other", {"v": np.float32})


def reference(rootdir: str, name: str) -> dict:
    """The values the ROOT files were filled with, plus per-event jet quantities."""
    want = dict(np.load(f"{rootdir}/{name}.npz"))
    jets = ak.unflatten(want.pop("pts"), want["nJet"])
    want["lead"] = ak.to_numpy(ak.fill_none(ak.firsts(jets), np.nan)).astype(np.float32)
    want["jet_sum"] = ak.to_numpy(ak.sum(jets, axis=1))
    want["jets"] = jets
    return want


def skhep_file(name: str) -> str:
    """A scikit-hep-testdata file, or skip when it cannot be had (it downloads on first use)."""
    skhep = pytest.importorskip("skhep_testdata")
    try:
        return skhep.data_path(name)
    except Exception as err:  # offline: requests' ConnectionError, or unknown to this release
        pytest.skip(f"scikit-hep-testdata file {name} not available: {type(err).__name__}")


def write_flat(path, rng, n: int, *, extends: int = 1, names=("a", "b", "c"), tree: str = "Events") -> dict:
    """An uproot-written file of float32 branches in `extends` baskets; returns the arrays."""
    data = {k: rng.normal(size=n).astype(np.float32) for k in names}
    with uproot.recreate(path) as f:
        f.mktree(tree, {k: np.float32 for k in names})
        for part in np.array_split(np.arange(n), extends):
            f[tree].extend({k: v[part] for k, v in data.items()})
    return data


def corrupt_last_basket(path, branch: str, tree: str = "Events") -> None:
    """Overwrite the last basket of `branch` with zeros (the file stays openable)."""
    with uproot.open(path) as f:
        seeks = f[tree][branch].member("fBasketSeek")
        n = int(f[tree][branch].member("fWriteBasket"))
        seek = int(seeks[n - 1])
    with open(path, "r+b") as fh:
        fh.seek(seek)
        fh.write(b"\x00" * 64)


def train(X: np.ndarray, y: np.ndarray, names, objective="binary:logistic", rounds=20, **params):
    """A small XGBoost BDT (depth 4, one thread) on named features."""
    import xgboost as xgb

    d = xgb.DMatrix(X, label=y, feature_names=list(names), missing=np.nan)
    return xgb.train({"objective": objective, "max_depth": 4, "eta": 0.3, "nthread": 1, **params}, d, rounds)
