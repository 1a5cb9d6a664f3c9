"""Run by tests/deploy/test_kfold_rdf.py in a subprocess (ROOT is imported only there):

    python kfold_job.py WORKDIR

WORKDIR holds events.root (tree "Events", written by uproot), the k-fold bundles bdt_kfold/ and
mlp_kfold/; the events are copied into a TTree with many clusters (so that ImplicitMT runs
several tasks), scored with hepinfer.rdf.Predictor(bundle, features) under
ROOT.EnableImplicitMT(2), and written to results.npz (in RDataFrame's order) and errors.json."""

import json
import sys
import warnings

warnings.simplefilter("ignore")

import numpy as np
import ROOT

import hepinfer.rdf

work = sys.argv[1]
features = ["pt", "eta", "mass"]
opts = ROOT.RDF.RSnapshotOptions()
opts.fAutoFlush = 200
ROOT.RDataFrame("Events", f"{work}/events.root").Snapshot("Events", f"{work}/clustered.root", "", opts)

ROOT.EnableImplicitMT(2)
df = ROOT.RDataFrame("Events", f"{work}/clustered.root")
bdt = hepinfer.rdf.Predictor(f"{work}/bdt_kfold", ["mass", "pt", "eta"])  # any order: matched by name
margin = hepinfer.rdf.Predictor(
    f"{work}/bdt_kfold/kfold.json", features, output="margin", event_number="evt32"
)
mlp = hepinfer.rdf.Predictor(f"{work}/mlp_kfold", features, output_index=1)
scored = df.Define("slot", "rdfslot_")
for name, p in (("bdt", bdt), ("margin", margin), ("mlp", mlp)):
    scored = p.define(scored, name)
cols = ["event", "slot", "bdt", "margin", "mlp"]
arrays = scored.AsNumpy(cols)
out = {k: np.asarray(arrays[k]) for k in cols}
out["columns"] = np.array(bdt.columns + ["|"] + margin.columns)

errors = {}
for case, args, kw in (
    ("all_outputs", (f"{work}/mlp_kfold", features), {"all_outputs": True}),
    ("wrong_names", (f"{work}/bdt_kfold", ["pt", "eta", "m"]), {}),
    ("multi_output", (f"{work}/mlp_kfold", features), {}),
    ("event_number_single", (f"{work}/bdt_kfold/fold_0/model.json", features), {"event_number": "event"}),
):
    try:
        hepinfer.rdf.Predictor(*args, **kw)
        errors[case] = None
    except Exception as e:  # noqa: BLE001 (recorded with its type for the test to check)
        errors[case] = [type(e).__name__, str(e)]
# a float event-number column does not compile (the event number must be an integer)
try:
    ROOT.DisableImplicitMT()
    bad = bdt.define(
        ROOT.RDataFrame("Events", f"{work}/clustered.root").Range(5), "s", ["pt", "eta", "mass", "evt_float"]
    )
    bad.Sum("s").GetValue()
    errors["float_event"] = None
except Exception as e:  # noqa: BLE001
    errors["float_event"] = [type(e).__name__, str(e)]

np.savez(f"{work}/results.npz", **out)
with open(f"{work}/errors.json", "w") as fh:
    json.dump(errors, fh)
print("ok")
