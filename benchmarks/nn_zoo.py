#!/usr/bin/env python3
"""The NN zoo benchmark (issue 16): networks as experiments deploy them, at published sizes,
through hepinfer, onnxruntime and torch in one process and one run.

    python benchmarks/nn_zoo.py                       # full run
    python benchmarks/nn_zoo.py --quick               # CI-sized run (batches 1 and 16, few repeats)
    python benchmarks/nn_zoo.py --models part,deepjet --batches 1,256 --json zoo.json

Models: hepinfer.train.zoo.ZOO (ParticleNet at weaver's JetClass size, ParT 8+2 blocks, DeepJet,
a DeepTau-like CNN, a CaloGAN-like generator, a VAE decoder, a RealNVP flow, and the MLP,
autoencoder, PFN, EFN and ParticleNet-Lite of benchmarks/nn.py). Each is exported with
torch.onnx.export at opset 17 by the TorchScript exporter (timed) and, where onnxscript is
installed, also by the dynamo exporter (op histogram, load and parity only).

For every model and exporter: the op histogram, whether hepinfer loads it ("refused: <first line
of the error>" where not), and the largest absolute and relative difference of hepinfer and
torch from onnxruntime. For the models hepinfer loads: seconds per call of hepinfer, onnxruntime
and torch at one thread and at all threads, batch 1 and 256 (medians of interleaved repeats, one
thread timed apart from all threads); for constituent models (--jagged, default ParticleNet, ParT
and PFN) also jets/s of hepinfer's predict_jagged on jets of realistic multiplicity (mean ~40,
tail to 100) against the three engines on the same jets padded to 100 particles in batches of
256. The table gives speed-ups (other engine's time / hepinfer's time); the JSON has the raw
seconds and the machine (CPU model and family from /proc/cpuinfo).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
import warnings
from typing import Any, Callable, Optional

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def _load_benchmark(name: str) -> Any:
    """A sibling benchmark module by path (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"hepinfer_bench_{name}", os.path.join(HERE, f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def first_line(err: BaseException) -> str:
    """The first line of an error, without the leading 'path.onnx: ' of hepinfer's messages."""
    line = (str(err).strip() or type(err).__name__).splitlines()[0]
    head, sep, rest = line.partition(".onnx: ")
    return (rest if sep and " " not in head else line)[:200]


def differences(out: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """Largest |out - ref| and relative difference |out - ref| / max(|ref|, 1e-3 max|ref|) (values
    below a thousandth of the output's scale are compared at that scale); NaN where only one
    side is NaN counts as infinite."""
    out = np.asarray(out, np.float64).reshape(ref.shape)
    ref = np.asarray(ref, np.float64)
    if ref.size == 0:
        return {"abs": 0.0, "rel": 0.0}
    nan_out, nan_ref = np.isnan(out), np.isnan(ref)
    if np.any(nan_out != nan_ref):
        return {"abs": float("inf"), "rel": float("inf")}
    ok = ~nan_ref
    if not ok.any():
        return {"abs": 0.0, "rel": 0.0}
    d = np.abs(out[ok] - ref[ok])
    scale = np.abs(ref[ok])
    floor = max(1e-3 * float(scale.max()), 1e-30)
    return {"abs": float(d.max()), "rel": float((d / np.maximum(scale, floor)).max())}


def _first_output(out: Any) -> np.ndarray:
    if isinstance(out, dict):
        out = next(iter(out.values()))
    if isinstance(out, (list, tuple)):
        out = out[0]
    return out.numpy() if hasattr(out, "numpy") else np.asarray(out)


class Engines:
    """hepinfer, onnxruntime and torch for one exported model, at 1 and at all threads."""

    def __init__(self, model: Any, path: str, hep: Any, threads: list[int]) -> None:
        import onnxruntime as ort

        self.model, self.hep, self.threads = model, hep, threads
        self.sessions = {}
        for nt in threads:
            so = ort.SessionOptions()
            so.intra_op_num_threads = nt
            so.inter_op_num_threads = 1
            self.sessions[nt] = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])

    def calls(
        self, feeds: dict[str, np.ndarray], nt: int, with_hepinfer: bool = True
    ) -> dict[str, Callable[[], Any]]:
        import torch

        names = self.model.input_names
        tins = tuple(torch.from_numpy(feeds[n]) for n in names)
        module = self.model.module

        def run_torch() -> Any:
            torch.set_num_threads(nt)
            with torch.no_grad():
                return module(*tins)

        engines: dict[str, Callable[[], Any]] = {}
        if with_hepinfer and self.hep is not None:
            hep = self.hep
            x0 = feeds[names[0]] if len(names) == 1 else None
            if x0 is not None:
                engines[f"hepinfer t{nt}"] = lambda: hep.predict(x0, n_threads=nt)
            else:
                engines[f"hepinfer t{nt}"] = lambda: hep.predict(feeds, n_threads=nt)
        s = self.sessions[nt]
        engines[f"onnxruntime t{nt}"] = lambda: s.run(None, feeds)
        engines[f"torch t{nt}"] = run_torch
        return engines


def export_and_load(zoo: Any, model: Any, path: str, dynamo: bool) -> dict[str, Any]:
    """Export, op histogram, hepinfer load: {"ok", "ops", "status", "error", "hep"}."""
    from hepinfer.nn import Model

    row: dict[str, Any] = {"exporter": "dynamo" if dynamo else "torchscript", "hep": None}
    try:
        zoo.export(model, path, dynamo=dynamo)
    except Exception as err:
        row.update(ok=False, status=f"export failed: {first_line(err)}", ops={})
        return row
    row["ok"] = True
    row["ops"] = zoo.op_histogram(path)
    try:
        row["hep"] = Model.load(path)
        row["status"] = "loads"
    except Exception as err:
        row["status"] = f"refused: {first_line(err)}"
        row["error"] = str(err)
        row["refused_nodes"] = refused_nodes(path)
    return row


def refused_nodes(path: str) -> list[dict[str, Any]]:
    """Every node of the graph that hepinfer refuses, found by loading each node alone: a one-node
    model with the node's attributes, its constant inputs (initializers and Constant outputs)
    and the other inputs as graph inputs of the inferred type and shape. hepinfer's load stops at
    the first unsupported node; this lists them all, one entry per distinct (op, message)."""
    import onnx
    from onnx import helper, shape_inference

    from hepinfer.nn import Model

    proto = shape_inference.infer_shapes(onnx.load(path))
    g = proto.graph
    consts = {t.name: t for t in g.initializer}
    for node in g.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            t = onnx.TensorProto()
            t.CopyFrom(node.attribute[0].t)
            t.name = node.output[0]
            consts[node.output[0]] = t
    types = {v.name: v for v in list(g.input) + list(g.value_info) + list(g.output)}
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for node in g.node:
        if node.op_type == "Constant":
            continue
        inputs, inits = [], []
        for name in node.input:
            if not name:
                continue
            if name in consts:
                inits.append(consts[name])
            elif name in types:
                inputs.append(types[name])
            else:
                inputs.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
        outputs = [
            types.get(o) or helper.make_tensor_value_info(o, onnx.TensorProto.FLOAT, None)
            for o in node.output
            if o
        ]
        graph = helper.make_graph([node], "probe", inputs, outputs, initializer=inits)
        model = helper.make_model(graph, opset_imports=proto.opset_import)
        try:
            Model.load(model.SerializeToString())
        except Exception as err:
            line = first_line(err)
            message = line.split(f"({node.op_type}): ", 1)[-1]
            entry = seen.setdefault(
                (node.op_type, message), {"op": node.op_type, "message": message, "nodes": []}
            )
            entry["nodes"].append(node.name)
    return list(seen.values())


def parity(engines: Engines, feeds: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    ref = engines.sessions[1].run(None, feeds)[0]
    out = {}
    for en, fn in engines.calls(feeds, 1).items():
        if en.startswith("onnxruntime"):
            continue
        out[en.split()[0]] = differences(_first_output(fn()), ref)
    return out


def fitted_repeats(calls: dict[str, Callable[[], Any]], repeats: int, budget: float) -> int:
    """``repeats``, lowered (to 3 at least) so that one round of every call times repeats stays
    within ``budget`` seconds: a large model at batch 256 (ParT: seconds per call and engine)
    would otherwise take many minutes per table cell. One call of each is timed (a warm-up too)."""
    one = 0.0
    for fn in calls.values():
        t0 = time.perf_counter()
        fn()
        one += time.perf_counter() - t0
    return max(3, min(repeats, int(budget / max(one, 1e-9))))


def time_batches(
    nn_bench: Any,
    engines: Engines,
    batches: list[int],
    repeats: int,
    rng: np.random.Generator,
    budget: float = float("inf"),
) -> dict[str, dict[str, float]]:
    """{batch: {engine: median seconds per call}}; one-thread engines timed apart from the
    all-thread ones (idle pool threads would otherwise slow the one-thread runs). Repeats are
    lowered where they would take more than ``budget`` seconds (see fitted_repeats)."""
    import torch

    out: dict[str, dict[str, float]] = {}
    for batch in batches:
        feeds = engines.model.inputs(batch, rng)
        seconds: dict[str, float] = {}
        for nt in engines.threads:
            calls = engines.calls(feeds, nt)
            med, _fast = nn_bench._time_all(calls, fitted_repeats(calls, repeats, budget))
            seconds.update(med)
        torch.set_num_threads(engines.threads[-1])
        out[str(batch)] = seconds
    return out


def time_jagged(
    nn_bench: Any,
    zoo: Any,
    engines: Engines,
    n_jets: int,
    batch: int,
    repeats: int,
    rng: np.random.Generator,
    budget: float = float("inf"),
) -> dict[str, Any]:
    """jets/s of predict_jagged against the padded model for each engine, and parity of the
    jagged scores with onnxruntime on the padded jets. ``n_jets`` is lowered (to one batch at
    least) where the padded runs of all engines would take more than ``budget`` seconds."""
    import torch

    from hepinfer.nn import Model

    layout = engines.model.jagged
    probe = engines.model.inputs(batch, rng)
    t0 = time.perf_counter()
    engines.sessions[1].run(None, probe)
    per_jet = (time.perf_counter() - t0) / batch  # onnxruntime, one thread, padded
    # four engines (jagged, three padded) at each thread count, `repeats` rounds and a warm-up
    cost = per_jet * 4 * len(engines.threads) * (repeats + 2)
    n_jets = max(batch, min(n_jets, int(budget / max(cost, 1e-12)) // batch * batch))
    offsets = zoo.jets(n_jets, rng, layout.max_particles)
    content = layout.content(int(offsets[-1]), rng)
    feeds = zoo.padded(layout, offsets, content, layout.max_particles)
    chunks = [{k: v[a : a + batch] for k, v in feeds.items()} for a in range(0, n_jets, batch)]
    particles = zoo.jagged_particles(layout, content)
    hep: Model = engines.hep
    ref = np.concatenate([engines.sessions[1].run(None, c)[0] for c in chunks])
    result: dict[str, Any] = {
        "n_jets": n_jets,
        "multiplicity_mean": float(np.diff(offsets).mean()),
        "pad": layout.max_particles,
        "batch": batch,
    }
    try:
        jag = hep.predict_jagged(offsets, particles)
        result["parity"] = differences(_first_output(jag), ref)
    except Exception as err:
        result["status"] = f"refused: {first_line(err)}"
        return result
    result["status"] = "ok"
    jets_per_s: dict[str, float] = {}
    for nt in engines.threads:
        calls: dict[str, Callable[[], Any]] = {
            f"hepinfer jagged t{nt}": lambda nt=nt: hep.predict_jagged(offsets, particles, n_threads=nt)
        }
        for en_name, fn in (
            ("hepinfer", lambda c, nt=nt: hep.predict(c, n_threads=nt)),
            ("onnxruntime", lambda c, s=engines.sessions[nt]: s.run(None, c)),
        ):
            calls[f"{en_name} pad t{nt}"] = lambda fn=fn: [fn(c) for c in chunks]
        tchunks = [tuple(torch.from_numpy(c[n]) for n in engines.model.input_names) for c in chunks]

        def run_torch(nt: int = nt) -> Any:
            torch.set_num_threads(nt)
            with torch.no_grad():
                return [engines.model.module(*t) for t in tchunks]

        calls[f"torch pad t{nt}"] = run_torch
        med, _fast = nn_bench._time_all(calls, repeats)
        jets_per_s.update({en: n_jets / sec for en, sec in med.items()})
    torch.set_num_threads(engines.threads[-1])
    result["jets_per_s"] = jets_per_s
    return result


def speedups(seconds: dict[str, float], nt: int) -> tuple[Optional[float], Optional[float]]:
    hep = seconds.get(f"hepinfer t{nt}")
    if not hep:
        return None, None
    return seconds[f"onnxruntime t{nt}"] / hep, seconds[f"torch t{nt}"] / hep


def fmt(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:.2f}x"


def print_table(rows: list[dict[str, Any]], batches: list[int], threads: list[int]) -> None:
    cols = [(b, nt) for b in batches for nt in threads]
    head = f"{'model':12s} {'exporter':11s} {'max rel':>8s} {'max abs':>8s}  " + "  ".join(
        f"{'b' + str(b) + ' t' + str(nt) + ' ort/torch':>17s}" for b, nt in cols
    )
    print("\nspeed-up of hepinfer (onnxruntime time / hepinfer time, torch time / hepinfer time)")
    print(head)
    for row in rows:
        for ex in row["exports"]:
            lead = f"{row['name']:12s} {ex['exporter']:11s}"
            if ex["status"] != "loads":
                print(f"{lead} {ex['status']}")
                continue
            par = ex.get("parity", {}).get("hepinfer", {})
            cells = []
            for b, nt in cols:
                sec = ex.get("seconds", {}).get(str(b))
                o, t = speedups(sec, nt) if sec else (None, None)
                cells.append(f"{fmt(o) + ' / ' + fmt(t):>17s}")
            print(
                f"{lead} {par.get('rel', float('nan')):8.1e} {par.get('abs', float('nan')):8.1e}  "
                + "  ".join(cells)
            )
    jag = [(row["name"], row["jagged"]) for row in rows if row.get("jagged")]
    if jag:
        print("\njagged (predict_jagged, true lengths) vs padded to 100 particles: jets/s ratios")
        for name, j in jag:
            if j["status"] != "ok":
                print(f"{name:12s} {j['status']}")
                continue
            r = j["jets_per_s"]
            parts = []
            for nt in threads:
                h = r[f"hepinfer jagged t{nt}"]
                parts.append(
                    f"t{nt}: vs ort pad {h / r[f'onnxruntime pad t{nt}']:.2f}x, vs hepinfer pad "
                    f"{h / r[f'hepinfer pad t{nt}']:.2f}x, vs torch pad {h / r[f'torch pad t{nt}']:.2f}x"
                )
            print(
                f"{name:12s} mean {j['multiplicity_mean']:.1f} particles, max rel {j['parity']['rel']:.1e}  "
                + "  ".join(parts)
            )


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="batches 1,16, 3 repeats, 256 jagged jets")
    ap.add_argument("--models", default=None, help="comma-separated zoo names (default: all)")
    ap.add_argument("--batches", default=None, help="default 1,256 (--quick: 1,16)")
    ap.add_argument("--repeats", type=int, default=None, help="default 7 (--quick: 3)")
    ap.add_argument("--jagged", default="particlenet,part,pfn", help="models timed jagged ('' for none)")
    ap.add_argument("--jets", type=int, default=None, help="jagged jets (default 2000, --quick 256)")
    ap.add_argument("--threads", type=int, default=None, help="the 'all threads' count (default: cpu count)")
    ap.add_argument(
        "--budget",
        type=float,
        default=60.0,
        help="seconds a timing may take (per model, batch and thread count; fewer repeats and jagged "
        "jets where it would take longer)",
    )
    ap.add_argument(
        "--dynamo",
        choices=("auto", "on", "off"),
        default="auto",
        help="also export with dynamo=True (auto: where onnxscript is installed)",
    )
    ap.add_argument("--json", default=None)
    ap.add_argument("--save-models", default=None, help="also write the exported .onnx files to this folder")
    args = ap.parse_args(argv)

    import onnxruntime as ort
    import torch

    from hepinfer.train import zoo

    nn_bench = _load_benchmark("nn")  # its interleaved timing (_time_all)
    info = _load_benchmark("forest").machine_info()
    names = args.models.split(",") if args.models else list(zoo.ZOO)
    unknown = [n for n in names if n not in zoo.ZOO]
    if unknown:
        ap.error(f"unknown models {unknown}; the zoo has {list(zoo.ZOO)}")
    batches = [int(b) for b in (args.batches or ("1,16" if args.quick else "1,256")).split(",")]
    repeats = args.repeats or (3 if args.quick else 7)
    n_jets = args.jets or (256 if args.quick else 2000)
    n_all = args.threads or os.cpu_count() or 1
    threads = sorted({1, n_all})
    dynamo = args.dynamo == "on" or (
        args.dynamo == "auto" and importlib.util.find_spec("onnxscript") is not None
    )
    jagged_names = {n for n in args.jagged.split(",") if n}
    rng = np.random.default_rng(42)
    tmp = tempfile.mkdtemp(prefix="hepinfer-nn-zoo-")
    print(
        f"# hepinfer nn zoo benchmark | CPU: {info['cpu_model']} (family {info['cpu_family']}, model "
        f"{info['cpu_model_number']}) | threads 1 and {n_all} | torch {torch.__version__} | onnxruntime "
        f"{ort.__version__} | batches {batches} | repeats {repeats} | exporters torchscript"
        + (" + dynamo" if dynamo else "")
    )
    rows = []
    for name in names:
        model = zoo.ZOO[name]()
        n_params = sum(p.numel() for p in model.module.parameters())
        row: dict[str, Any] = {
            "name": name,
            "description": model.description,
            "parameters": n_params,
            "exports": [],
        }
        for use_dynamo in [False] + ([True] if dynamo else []):
            path = os.path.join(tmp, f"{name}{'.dynamo' if use_dynamo else ''}.onnx")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ex = export_and_load(zoo, model, path, use_dynamo)
            if args.save_models and ex["ok"]:
                os.makedirs(args.save_models, exist_ok=True)
                with (
                    open(path, "rb") as src,
                    open(os.path.join(args.save_models, os.path.basename(path)), "wb") as dst,
                ):
                    dst.write(src.read())
            print(f"{name:12s} {ex['exporter']:11s} {ex['status']}  ops {ex.get('ops', {})}")
            for r in ex.get("refused_nodes", []):
                print(f"{'':12s}   refused {r['op']} x{len(r['nodes'])}: {r['message']}")
            if ex["ok"]:
                try:
                    engines = Engines(model, path, ex["hep"], threads)
                except Exception as err:  # the reference cannot run the export
                    ex["status"] += f"; onnxruntime refused: {first_line(err)}"
                    ex["ok"] = False
            if ex["ok"]:
                probe = model.inputs(max(batches), np.random.default_rng(7))
                try:
                    ex["parity"] = parity(engines, probe)
                except Exception as err:  # a model that loads but fails to run
                    ex["status"] = f"fails at run: {first_line(err)}"
                    ex["hep"] = engines.hep = None
                    ex["parity"] = parity(engines, probe)
                print(f"{'':12s} parity vs onnxruntime: {ex['parity']}")
                if ex["hep"] is not None and not use_dynamo:
                    ex["seconds"] = time_batches(nn_bench, engines, batches, repeats, rng, args.budget)
                    if name in jagged_names and model.jagged is not None:
                        row["jagged"] = time_jagged(
                            nn_bench, zoo, engines, n_jets, 256, max(2, repeats // 2), rng, args.budget
                        )
            ex.pop("hep", None)
            row["exports"].append(ex)
        rows.append(row)
    print_table(rows, batches, threads)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "machine": info,
                    "torch": torch.__version__,
                    "onnxruntime": ort.__version__,
                    "threads": threads,
                    "batches": batches,
                    "repeats": repeats,
                    "models": rows,
                },
                f,
                indent=1,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
