#!/usr/bin/env python3
"""Neural-network inference benchmark: hepinfer.nn.Model against onnxruntime and torch, in one
process and one run.

    hepinfer bench nn                       # full run (or python benchmarks/nn.py in a checkout)
    hepinfer bench nn --quick               # smoke run (batches 1,16,256; fewer repeats)
    hepinfer bench nn --models mlp --batches 1,10000 --json out.json

Models (built in torch with a fixed seed, exported with torch.onnx.export, TorchScript exporter):
  mlp    30 -> 64 -> 64 -> 64 -> 1, ReLU, sigmoid head
  ae     dense autoencoder 20 -> 16 -> 4 -> 16 -> 20 (+ per-event reconstruction error)
  pfn    Deep Sets / particle-flow network on (batch, 100 particles, 4) with a mask (masked sum)
  pnet   ParticleNet-Lite-like: 2 EdgeConv blocks, k = 16 neighbours in (eta, phi) (--pnet-k), 100 particles

Engines: hepinfer (n_threads 1 and all), onnxruntime (intra-op threads 1 and all), torch
(set_num_threads 1 and all). Every engine's output is compared with onnxruntime before timing.
Times are medians of several repeats (time.perf_counter after a warm-up); batch 1 loops many
single calls and reports the time per call. Constituent models are timed on padded input here
(benchmarks/nn_jagged.py times the jagged path). The C++ batch-1 latency is measured by
benchmarks/bench_nn_single_row.cpp (hepinfer_bench_nn_single_row MODEL.onnx), which can be
given the MLP exported here with --save-models DIR.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from typing import Any, Callable

import numpy as np

from hepinfer.bench import add_output_arguments, output_path, require


def _machine_info() -> dict[str, Any]:
    """hepinfer.bench.forest's machine_info (CPU model, family, NN kernels)."""
    from hepinfer.bench.forest import machine_info

    return machine_info()


def _models(torch):
    """The benchmark's torch classes by name. They live in hepinfer.train.zoo (BENCH_MODELS), shared
    with benchmarks/nn_zoo.py and the zoo tests; ``torch`` is unused (kept for nn_jagged.py)."""
    from hepinfer.train.zoo import BENCH_MODELS

    return BENCH_MODELS


def _inputs(name: str, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    if name == "mlp":
        return {"x": rng.standard_normal((batch, 30)).astype(np.float32)}
    if name == "ae":
        return {"x": rng.standard_normal((batch, 20)).astype(np.float32)}
    n = 100
    counts = np.clip(rng.poisson(40, batch), 8, n)
    mask = (np.arange(n)[None, :] < counts[:, None]).astype(np.float32)
    x = rng.standard_normal((batch, n, 4)).astype(np.float32) * mask[..., None]
    if name == "pfn":
        return {"particles": x, "mask": mask}
    return {
        "points": np.ascontiguousarray(x[..., 1:3].transpose(0, 2, 1)),
        "features": np.ascontiguousarray(x.transpose(0, 2, 1)),
        "mask": np.ascontiguousarray(mask[:, None, :]),
    }


def _export(torch, name: str, path: str, pnet_k: int = 16) -> Any:
    torch.manual_seed(1)
    model = (_models(torch)[name](k=pnet_k) if name == "pnet" else _models(torch)[name]()).eval()
    ex = _inputs(name, 2, np.random.default_rng(0))
    args = tuple(torch.from_numpy(v) for v in ex.values())
    names = list(ex)
    axes = {
        k: (
            {0: "batch", 2: "n"}
            if name == "pnet"
            else {0: "batch", 1: "n"}
            if name == "pfn"
            else {0: "batch"}
        )
        for k in names
    }
    axes["y"] = {0: "batch"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            args,
            path,
            input_names=names,
            output_names=["y"],
            dynamic_axes=axes,
            dynamo=False,
            opset_version=17,
        )
    return model


def _loops(fn: Callable[[], Any]) -> int:
    """Calls per timing so that one timing lasts about 2 ms (after a warm-up call)."""
    fn()
    t0 = time.perf_counter()
    fn()
    one = time.perf_counter() - t0
    return max(1, int(2e-3 / max(one, 1e-7))) if one < 2e-3 else 1


def _time_all(
    engines: dict[str, Callable[[], Any]], repeats: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Median and fastest seconds per call of every engine. The repeats are interleaved (one
    timing of each engine per round), so a machine whose load changes during the run slows all
    engines alike; the fastest timing is the best estimate of the unloaded speed on a shared
    machine."""
    loops = {en: _loops(fn) for en, fn in engines.items()}
    times: dict[str, list[float]] = {en: [] for en in engines}
    for _ in range(repeats):
        for en, fn in engines.items():
            t0 = time.perf_counter()
            for _ in range(loops[en]):
                fn()
            times[en].append((time.perf_counter() - t0) / loops[en])
    return {en: statistics.median(t) for en, t in times.items()}, {en: min(t) for en, t in times.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="hepinfer bench nn", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="batches 1,16,256 and 3 repeats")
    ap.add_argument("--models", default="mlp,ae,pfn,pnet", help="comma list (default mlp,ae,pfn,pnet)")
    ap.add_argument("--batches", default=None, help="comma list (default 1,16,256,10000)")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats (default 7, quick 3)")
    add_output_arguments(ap, "nn")
    ap.add_argument("--pnet-k", type=int, default=16, help="neighbours of the ParticleNet-Lite kNN")
    ap.add_argument("--save-models", default=None, help="also write the exported .onnx files to this folder")
    args = ap.parse_args(argv)
    try:
        json_path = output_path(args, "nn")
    except ValueError as bad:
        ap.error(str(bad))
    require("torch", "onnx", "onnxruntime")
    import onnxruntime as ort
    import torch

    from hepinfer.nn import Model

    batches = [int(b) for b in (args.batches or ("1,16,256" if args.quick else "1,16,256,10000")).split(",")]
    repeats = args.repeats or (3 if args.quick else 7)
    n_all = os.cpu_count() or 1
    rng = np.random.default_rng(42)
    results = []
    tmp = tempfile.mkdtemp(prefix="hepinfer-nn-bench-")
    info = _machine_info()
    print(
        f"# hepinfer nn benchmark  cpu_count={n_all}  {info['cpu_model']} (family {info['cpu_family']}, "
        f"model {info['cpu_model_number']}, NN kernels {info['nn_kernels']})  torch {torch.__version__}  "
        f"onnxruntime {ort.__version__}"
    )
    for name in args.models.split(","):
        path = os.path.join(tmp, f"{name}.onnx")
        tmodel = _export(torch, name, path, args.pnet_k)
        if args.save_models:
            os.makedirs(args.save_models, exist_ok=True)
            with open(path, "rb") as src, open(os.path.join(args.save_models, f"{name}.onnx"), "wb") as dst:
                dst.write(src.read())
        hep = Model.load(path)
        sessions = {}
        for nt in (1, n_all):
            so = ort.SessionOptions()
            so.intra_op_num_threads = nt
            so.inter_op_num_threads = 1
            sessions[nt] = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        for batch in batches:
            if name == "pnet" and batch > 1000:
                print(f"{name:5s} batch {batch}: skipped (padded ParticleNet at this batch needs > 5 GB)")
                continue
            feeds = _inputs(name, batch, rng)
            ref = sessions[1].run(None, feeds)[0]
            single = len(feeds) == 1
            x0 = next(iter(feeds.values()))
            engines: dict[str, Callable[[], Any]] = {}
            for nt in sorted({1, n_all}):
                if single:
                    engines[f"hepinfer t{nt}"] = lambda nt=nt, hep=hep, x0=x0: hep.predict(x0, n_threads=nt)
                else:
                    engines[f"hepinfer t{nt}"] = lambda nt=nt, hep=hep, feeds=feeds: hep.predict(
                        feeds, n_threads=nt
                    )
                engines[f"onnxruntime t{nt}"] = lambda s=sessions[nt], feeds=feeds: s.run(None, feeds)
                tins = tuple(torch.from_numpy(v) for v in feeds.values())

                def run_torch(nt=nt, tins=tins, tmodel=tmodel):
                    torch.set_num_threads(nt)
                    with torch.no_grad():
                        return tmodel(*tins)

                engines[f"torch t{nt}"] = run_torch
            row = {"model": name, "batch": batch, "seconds": {}, "max_abs_diff": {}}
            for en, fn in engines.items():
                out = fn()
                out = out[0] if isinstance(out, list) else out
                out = out.numpy() if hasattr(out, "numpy") else np.asarray(out)
                row["max_abs_diff"][en] = (
                    float(np.max(np.abs(out.reshape(ref.shape) - ref))) if ref.size else 0.0
                )
            # one-thread engines are timed apart from the multi-thread ones: idle worker threads
            # of a multi-thread run (onnxruntime's and torch's pools spin for a while) would
            # otherwise take CPU from the next one-thread timing on a machine with few cores
            row["seconds"], row["min_seconds"] = {}, {}
            for suffix in sorted({en.rsplit(" ", 1)[1] for en in engines}):
                med, fast = _time_all(
                    {en: fn for en, fn in engines.items() if en.endswith(" " + suffix)}, repeats
                )
                row["seconds"].update(med)
                row["min_seconds"].update(fast)
            torch.set_num_threads(n_all)
            results.append(row)
            s = row["seconds"]
            best1 = min(s["onnxruntime t1"], s["torch t1"])
            fast = row["min_seconds"]
            best1_min = min(fast["onnxruntime t1"], fast["torch t1"])
            line = "  ".join(f"{en} {s[en] * 1e6:10.1f}us" for en in engines)
            print(
                f"{name:5s} batch {batch:6d}: {line}  | hepinfer t1 speed-up vs best(ort, torch) t1: {best1 / s['hepinfer t1']:.2f}x"
                f" (fastest runs: {best1_min / fast['hepinfer t1']:.2f}x)  max|diff| {max(row['max_abs_diff'].values()):.2g}"
            )
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"cpu_count": n_all, "machine": info, "results": results}, f, indent=1)
        print(f"wrote {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
