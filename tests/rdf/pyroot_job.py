"""Run by tests/deploy/test_rdf.py in a subprocess (ROOT is imported only there):

    python pyroot_job.py WORKDIR

WORKDIR holds events.root (tree "Events", written by uproot) and the models; this script
copies the events into a TTree with many clusters (so that ImplicitMT really runs several
tasks), defines the scores with hepinfer.rdf under ROOT.EnableImplicitMT(2) and writes
results.npz (scores and event numbers, in RDataFrame's order) and errors.json."""

import json
import sys
import warnings

warnings.simplefilter("ignore")

import numpy as np
import ROOT

import hepinfer.rdf

work = sys.argv[1]
opts = ROOT.RDF.RSnapshotOptions()
opts.fAutoFlush = 250
ROOT.RDataFrame("Events", f"{work}/events.root").Snapshot("Events", f"{work}/clustered.root", "", opts)

ROOT.EnableImplicitMT(2)
df = ROOT.RDataFrame("Events", f"{work}/clustered.root")
bdt = hepinfer.rdf.Predictor(f"{work}/bdt.json", ["jet_mass", "jet_pt", "n_constituents", "tau21"])
lgbm = hepinfer.rdf.Predictor(
    f"{work}/multi.txt", ["jet_pt", "jet_mass", "tau21", "n_constituents"], all_outputs=True
)
lgbm1 = hepinfer.rdf.Predictor(
    f"{work}/multi.txt", ["jet_pt", "jet_mass", "tau21", "n_constituents"], output_index=1, output="margin"
)
mlp = hepinfer.rdf.Predictor(f"{work}/mlp.onnx", ["jet_pt", "jet_mass", "tau21", "n_constituents"])
pfn = hepinfer.rdf.Predictor(f"{work}/pfn.onnx", ["pf_pt", "pf_eta"])
scored = df.Define("slot", "rdfslot_")
for name, p in (("bdt", bdt), ("lgbm", lgbm), ("lgbm1", lgbm1), ("mlp", mlp), ("pfn", pfn)):
    scored = p.define(scored, name)
cols = ["event", "slot", "bdt", "lgbm", "lgbm1", "mlp", "pfn"]
arrays = scored.AsNumpy(cols)
out = {k: np.asarray(arrays[k]) for k in cols if k != "lgbm"}
out["lgbm"] = np.array([np.asarray(v) for v in arrays["lgbm"]], dtype=np.float32)

errors = {}
for case, args in (
    ("wrong_names", (f"{work}/bdt.json", ["jet_mass", "jet_pt", "n_constituents", "tau_21"])),
    ("wrong_count", (f"{work}/mlp.onnx", ["jet_pt", "jet_mass"])),
    ("multi_output", (f"{work}/multi.txt", ["jet_pt", "jet_mass", "tau21", "n_constituents"])),
    ("bad_file", (f"{work}/broken.json", ["a", "b"])),
):
    try:
        hepinfer.rdf.Predictor(*args)
        errors[case] = None
    except Exception as e:  # noqa: BLE001 (recorded with its type for the test to check)
        errors[case] = [type(e).__name__, str(e)]
# a run-time error inside the event loop (particle columns of different lengths)
try:
    ROOT.DisableImplicitMT()
    bad = pfn.define(ROOT.RDataFrame("Events", f"{work}/clustered.root").Range(5), "s", ["pf_pt", "pf_short"])
    bad.Sum("s").GetValue()
    errors["ragged"] = None
except Exception as e:  # noqa: BLE001
    errors["ragged"] = [type(e).__name__, str(e)]

np.savez(f"{work}/results.npz", **out)
with open(f"{work}/errors.json", "w") as fh:
    json.dump(errors, fh)
print("ok")
