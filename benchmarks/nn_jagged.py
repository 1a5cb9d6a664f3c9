#!/usr/bin/env python3
"""Jagged (unpadded) constituent-model benchmark: hepinfer.nn.Model.predict_jagged on jets of
variable multiplicity against onnxruntime (and hepinfer) on the same jets padded to 100
particles, in one process and one run.

    python benchmarks/nn_jagged.py                  # full run (20000 jets)
    python benchmarks/nn_jagged.py --quick          # smoke run (2000 jets, fewer repeats)
    python benchmarks/nn_jagged.py --models pnet --jets 5000 --json out.json

Jets: multiplicity n ~ Poisson(Gamma(shape 4, scale 10)) (mean ~40, tail to 100), clipped to
1..100; per particle (log pt, eta, phi, E-ish) standard normal. Models are the ones of
benchmarks/nn.py (built in torch with a fixed seed, TorchScript ONNX export):
  pfn    Deep Sets / particle-flow network, masked sum pooling (4 -> 64 -> 64 -> 32, F 32 -> 64 -> 2)
  pnet   ParticleNet-Lite: 2 EdgeConv blocks (32,32,32 / 64,64,64), k = 16 in (eta, phi), masked mean

Engines (jets/s, medians of several repeats after a warm-up; the engines take turns in every repeat):
  hepinfer jagged  predict_jagged(offsets, content) on the jagged jets, n_threads 1 and all cores
  onnxruntime pad  the padded-to-100 model input in batches of --batch jets, intra-op threads 1 and all
  hepinfer pad     the same padded batches through hepinfer's padded predict
The padded inputs are built once outside the timing (their padding cost is not counted). Every
engine's scores are compared with onnxruntime's on padded input before timing.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from typing import Any, Callable

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
PAD = 100


def _bench_nn():
    """benchmarks/nn.py (the model definitions are shared)."""
    spec = importlib.util.spec_from_file_location("hepinfer_bench_nn", os.path.join(HERE, "nn.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def jets(n_jets: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """offsets (n_jets + 1) and content (n_particles, 4) float32."""
    counts = np.clip(rng.poisson(rng.gamma(4.0, 10.0, n_jets)), 1, PAD)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    content = rng.standard_normal((int(offsets[-1]), 4)).astype(np.float32)
    return offsets, content


def padded(name: str, offsets: np.ndarray, content: np.ndarray) -> dict[str, np.ndarray]:
    n_jets = len(offsets) - 1
    counts = np.diff(offsets)
    x = np.zeros((n_jets, PAD, 4), np.float32)
    rows = np.repeat(np.arange(n_jets), counts)
    cols = np.arange(len(content)) - np.repeat(offsets[:-1], counts)
    x[rows, cols] = content
    mask = (np.arange(PAD)[None, :] < counts[:, None]).astype(np.float32)
    if name == "pfn":
        return {"particles": x, "mask": mask}
    return {
        "points": np.ascontiguousarray(x[..., 1:3].transpose(0, 2, 1)),
        "features": np.ascontiguousarray(x.transpose(0, 2, 1)),
        "mask": np.ascontiguousarray(mask[:, None, :]),
    }


def export(torch, bench, name: str, path: str, k: int) -> None:
    torch.manual_seed(1)
    models = bench._models(torch)
    model = (models["pnet"](k=k) if name == "pnet" else models["pfn"]()).eval()
    ex = padded(name, *jets(2, np.random.default_rng(0)))
    names = list(ex)
    axis = {0: "batch", 2: "n"} if name == "pnet" else {0: "batch", 1: "n"}
    axes: dict[str, Any] = {n: axis for n in names}
    axes["y"] = {0: "batch"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            tuple(torch.from_numpy(v) for v in ex.values()),
            path,
            input_names=names,
            output_names=["y"],
            dynamic_axes=axes,
            dynamo=False,
            opset_version=17,
        )


def median_seconds(engines: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Median seconds per call of every engine; the engines take turns within each repeat so that
    a change in machine load affects them alike."""
    for fn in engines.values():
        fn()
    times: dict[str, list[float]] = {en: [] for en in engines}
    for _ in range(repeats):
        for en, fn in engines.items():
            t0 = time.perf_counter()
            fn()
            times[en].append(time.perf_counter() - t0)
    return {en: statistics.median(t) for en, t in times.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--models", default="pfn,pnet")
    ap.add_argument("--jets", type=int, default=None, help="number of jets (default 20000, --quick 2000)")
    ap.add_argument("--batch", type=int, default=256, help="jets per padded batch (default 256)")
    ap.add_argument("--k", type=int, default=16, help="ParticleNet-Lite neighbours (default 16)")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None, help="the 'all' thread count (default: cpu count)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    import onnxruntime as ort
    import torch

    from hepinfer.nn import Model

    bench = _bench_nn()
    n_jets = args.jets or (2000 if args.quick else 20000)
    repeats = args.repeats or (3 if args.quick else 5)
    n_all = args.threads or os.cpu_count() or 1
    threads = sorted({1, n_all})
    rng = np.random.default_rng(42)
    offsets, content = jets(n_jets, rng)
    counts = np.diff(offsets)
    tmp = tempfile.mkdtemp(prefix="hepinfer-nn-jagged-bench-")
    print(
        f"# hepinfer jagged nn benchmark  cpu_count={os.cpu_count()}  {platform.processor() or platform.machine()}  "
        f"onnxruntime {ort.__version__}  torch {torch.__version__}"
    )
    print(
        f"# {n_jets} jets, multiplicity mean {counts.mean():.1f}, median {np.median(counts):.0f}, "
        f"99% {np.percentile(counts, 99):.0f}, max {counts.max()}; padded engines: {PAD} particles, "
        f"batches of {args.batch} jets; ParticleNet-Lite k = {args.k}"
    )
    results = []
    for name in args.models.split(","):
        path = os.path.join(tmp, f"{name}.onnx")
        export(torch, bench, name, path, args.k)
        hep = Model.load(path)
        feeds = padded(name, offsets, content)
        batches = [{k: v[a : a + args.batch] for k, v in feeds.items()} for a in range(0, n_jets, args.batch)]
        particles = content if name == "pfn" else {"points": content[:, 1:3], "features": content}
        sessions = {}
        for nt in threads:
            so = ort.SessionOptions()
            so.intra_op_num_threads = nt
            so.inter_op_num_threads = 1
            sessions[nt] = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        engines: dict[str, Callable[[], Any]] = {}
        for nt in threads:
            engines[f"hepinfer jagged t{nt}"] = lambda nt=nt, hep=hep, particles=particles: (
                hep.predict_jagged(offsets, particles, n_threads=nt)
            )
        for nt in threads:
            engines[f"onnxruntime pad{PAD} t{nt}"] = lambda s=sessions[nt], batches=batches: np.concatenate(
                [s.run(None, b)[0] for b in batches]
            )
        for nt in threads:
            engines[f"hepinfer pad{PAD} t{nt}"] = lambda nt=nt, hep=hep, batches=batches: np.concatenate(
                [hep.predict(b, n_threads=nt) for b in batches]
            )
        ref = engines[f"onnxruntime pad{PAD} t1"]()
        row: dict[str, Any] = {"model": name, "n_jets": n_jets, "jets_per_s": {}, "max_abs_diff": {}}
        for en, fn in engines.items():
            row["max_abs_diff"][en] = float(np.max(np.abs(fn() - ref)))
        for en, sec in median_seconds(engines, repeats).items():
            row["jets_per_s"][en] = n_jets / sec
        results.append(row)
        r = row["jets_per_s"]
        print(f"\n{name} ({'k = ' + str(args.k) if name == 'pnet' else 'masked sum'})")
        print(f"  {'engine':24s} {'jets/s':>12s} {'vs ort t1':>10s} {'max|diff|':>10s}")
        base = r[f"onnxruntime pad{PAD} t1"]
        for en in engines:
            print(f"  {en:24s} {r[en]:12.0f} {r[en] / base:9.2f}x {row['max_abs_diff'][en]:10.2g}")
        for nt in threads:
            print(
                f"  jagged vs onnxruntime padded, t{nt}: "
                f"{r[f'hepinfer jagged t{nt}'] / r[f'onnxruntime pad{PAD} t{nt}']:.2f}x"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "cpu_count": os.cpu_count(),
                    "n_jets": n_jets,
                    "multiplicity_mean": float(counts.mean()),
                    "pad": PAD,
                    "batch": args.batch,
                    "k": args.k,
                    "results": results,
                },
                f,
                indent=1,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
