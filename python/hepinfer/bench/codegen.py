"""Generated C++ (hepinfer.codegen) against the engine and tl2cgen's generated C, from C++.

    hepinfer bench codegen                 # 500 trees of depth 6 on 30 features
    hepinfer bench codegen --quick         # 100 trees, fewer calls (CI smoke run)
    hepinfer bench codegen --json out.json # default ./hepinfer-bench-codegen.json

One XGBoost binary:logistic model is trained (cached in --work) and turned into:
  * codegen (arrays)   hepinfer.codegen.emit_cpp, layout="arrays" (complete-tree tables)
  * codegen (branches) hepinfer.codegen.emit_cpp, layout="branches" (nested conditionals)
  * engine             hepinfer::Forest::predict_one / predict (the installed C++ library)
  * tl2cgen            tl2cgen.generate_c_code (treelite's C code generator), compiled alike
Each contestant is compiled with the same compiler and flags (g++/gcc -O2, no -march) into
one small C++ harness that reads the same standard-normal float32 rows and reports:
  * compile: seconds to compile the contestant's code (one job; tl2cgen's files one by one)
  * single row: median over blocks of 1000 calls of the time per call (one event, batch 1)
  * throughput: rows per second calling the single-row function in a loop, 1 thread
    (for the engine also its batch predict on all rows, 1 thread)
Outputs are checked: codegen and engine bit-identical, tl2cgen within float32 rounding.

MLP row (skip with --skip mlp): a 30-64-64-64-1 ReLU MLP with a sigmoid head (random
weights, exported by torch.onnx) as
  * codegen MLP (float / float16 / fixed<18,8>)  hepinfer.codegen.emit_cpp on the .onnx file
  * engine MLP       hepinfer::Model::predict_one (C++)
  * onnxruntime      InferenceSession.run on one row from Python (1 intra-op thread)
all at batch 1 (one event per call), harnesses compiled with g++ -O3 (GCC's -O2 does not
vectorise the generated dense loops); float outputs must match the engine within 1e-5,
float16/fixed-point ones stay within hepinfer.codegen.mlp_error_bound.
The contestants run in turns (--rounds) so that a busy machine slows them alike; the
reported numbers are medians over the rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from hepinfer.bench import add_output_arguments, output_path, require

HARNESS = r"""
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>
#if CONTESTANT == 1
#include "gen.hpp"
static inline double score(const float* row) { return gen::predict(row); }
#elif CONTESTANT == 2
#include <hepinfer/forest.hpp>
static const hepinfer::Forest* forest = nullptr;
static inline double score(const float* row) { return forest->predict_one(row); }
#else
extern "C" {
#include "header.h"
}
static int n_features_tl = 0;
static inline double score(const float* row) {
  Entry e[1024];
  for (int j = 0; j < n_features_tl; ++j) {
    if (std::isnan(row[j])) e[j].missing = -1;
    else e[j].fvalue = row[j];
  }
  float r = 0.0f;
  predict(e, 0, &r);
  return r;
}
#endif
using Clock = std::chrono::steady_clock;
static double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
int main(int argc, char** argv) {
  // harness ROWS.bin N_FEATURES CALLS OUT.bin [MODEL]
  const int nf = std::atoi(argv[2]);
  const long calls = std::atol(argv[3]);
  std::FILE* in = std::fopen(argv[1], "rb");
  std::vector<float> rows;
  float v;
  while (std::fread(&v, sizeof v, 1, in) == 1) rows.push_back(v);
  std::fclose(in);
  const std::size_t n = rows.size() / static_cast<std::size_t>(nf);
#if CONTESTANT == 2
  const hepinfer::Forest f = hepinfer::Forest::load(argv[5]);
  forest = &f;
#elif CONTESTANT == 3
  n_features_tl = nf;
#endif
  std::vector<double> out(n);
  volatile double sink = 0.0;
  // single row: blocks of 1000 calls cycling over a pool of 1024 rows
  const std::size_t pool = std::min<std::size_t>(n, 1024);
  for (std::size_t i = 0; i < 2000; ++i) sink = sink + score(rows.data() + (i % pool) * nf);
  std::vector<double> blocks;
  for (long b = 0; b < calls / 1000; ++b) {
    const auto t0 = Clock::now();
    double s = 0.0;
    for (std::size_t i = 0; i < 1000; ++i) s += score(rows.data() + ((b * 1000 + i) % pool) * nf);
    blocks.push_back(std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / 1000.0);
    sink = sink + s;
  }
  // throughput: the single-row function over all rows, median of 5
  std::vector<double> loops;
  for (int rep = 0; rep < 5; ++rep) {
    const auto t0 = Clock::now();
    for (std::size_t r = 0; r < n; ++r) out[r] = score(rows.data() + r * nf);
    loops.push_back(std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / static_cast<double>(n));
  }
  double batch = -1.0;
#if CONTESTANT == 2
  std::vector<double> outb(n);
  std::vector<double> bt;
  for (int rep = 0; rep < 5; ++rep) {
    const auto t0 = Clock::now();
    f.predict(rows.data(), n, outb.data(), hepinfer::Output::Probability, 1);
    bt.push_back(std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / static_cast<double>(n));
  }
  batch = median(bt);
  for (std::size_t r = 0; r < n; ++r)
    if (outb[r] != out[r]) return std::fprintf(stderr, "engine batch != predict_one at row %zu\n", r), 1;
#endif
  std::FILE* o = std::fopen(argv[4], "wb");
  std::fwrite(out.data(), sizeof(double), n, o);
  std::fclose(o);
  std::printf("{\"single_ns\": %.3f, \"loop_ns_per_row\": %.3f, \"batch_ns_per_row\": %.3f}\n", median(blocks),
              median(loops), batch);
  return sink == 12345.678 ? 3 : 0;
}
"""


MLP_HARNESS = r"""
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>
#if CONTESTANT == 1
#include "gen.hpp"
static inline void score(const float* row, float* out) { gen::predict(row, out); }
#else
#include <hepinfer/nn.hpp>
static const hepinfer::Model* model = nullptr;
static inline void score(const float* row, float* out) { model->predict_one(row, out); }
#endif
using Clock = std::chrono::steady_clock;
int main(int argc, char** argv) {
  // harness ROWS.bin N_FEATURES CALLS OUT.bin [MODEL]
  const int nf = std::atoi(argv[2]);
  const long calls = std::atol(argv[3]);
  std::FILE* in = std::fopen(argv[1], "rb");
  std::vector<float> rows;
  float v;
  while (std::fread(&v, sizeof v, 1, in) == 1) rows.push_back(v);
  std::fclose(in);
  const std::size_t n = rows.size() / static_cast<std::size_t>(nf);
#if CONTESTANT == 2
  const hepinfer::Model m = hepinfer::Model::load(argv[5]);
  model = &m;
#endif
  std::vector<float> out(n);
  float sink = 0.0f, o = 0.0f;
  const std::size_t pool = std::min<std::size_t>(n, 1024);
  for (std::size_t i = 0; i < 2000; ++i) { score(rows.data() + (i % pool) * nf, &o); sink += o; }
  std::vector<double> blocks;
  for (long b = 0; b < calls / 1000; ++b) {
    const auto t0 = Clock::now();
    for (std::size_t i = 0; i < 1000; ++i) { score(rows.data() + ((b * 1000 + i) % pool) * nf, &o); sink += o; }
    blocks.push_back(std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / 1000.0);
  }
  for (std::size_t r = 0; r < n; ++r) score(rows.data() + r * nf, &out[r]);
  std::sort(blocks.begin(), blocks.end());
  std::FILE* f = std::fopen(argv[4], "wb");
  std::fwrite(out.data(), sizeof(float), n, f);
  std::fclose(f);
  std::printf("{\"single_ns\": %.3f}\n", blocks[blocks.size() / 2]);
  return sink == 12345.678f ? 3 : 0;
}
"""


def _mlp_bench(work: Path, cxx: str, flags: list, calls: int, rounds: int, log) -> dict:
    """Batch-1 latency of the generated MLP header, the engine and onnxruntime (see the docstring)."""
    import hepinfer
    from hepinfer import codegen

    path = work / "mlp_30x64x3.onnx"
    if not path.exists():
        import warnings

        import torch

        torch.manual_seed(3)
        nn = torch.nn
        net = nn.Sequential(
            nn.Linear(30, 64),
            nn.ReLU(),
            nn.Linear(64, 64),
            nn.ReLU(),
            nn.Linear(64, 64),
            nn.ReLU(),
            nn.Linear(64, 1),
            nn.Sigmoid(),
        ).eval()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                net,
                (torch.randn(2, 30),),
                str(path),
                input_names=["x"],
                output_names=["y"],
                dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
                dynamo=False,
                opset_version=17,
            )
    rows = np.random.default_rng(11).normal(size=(2000, 30)).astype(np.float32)
    (work / "mlp_rows.bin").write_bytes(rows.tobytes())
    reference = hepinfer.Model.load(path).predict(rows).reshape(-1)
    built: dict = {}
    for precision, native in (("float", False), ("float", True), ("float16", False), ("fixed<18,8>", False)):
        name = f"codegen MLP ({precision}{', -march=native' if native else ''})"
        d = work / ("mlp_" + "".join(c for c in precision if c.isalnum()) + ("_native" if native else ""))
        d.mkdir(exist_ok=True)
        codegen.emit_cpp(path, d / "gen.hpp", name="gen", precision=precision)
        (d / "harness.cpp").write_text(MLP_HARNESS)
        log(f"compiling {name} ...")
        extra_flags = ["-march=native"] if native else []
        try:
            sec = _timed([cxx, *flags, *extra_flags, "-DCONTESTANT=1", "harness.cpp", "-o", "harness"], cwd=d)
        except RuntimeError as e:  # e.g. no _Float16 in this compiler
            log(f"{name} skipped: {str(e)[-300:]}")
            continue
        built[name] = (d / "harness", sec, precision, [])
    d = work / "mlp_engine"
    d.mkdir(exist_ok=True)
    (d / "harness.cpp").write_text(MLP_HARNESS)
    libdir = Path(hepinfer.cmake_dir()).parents[1]
    log("compiling engine MLP harness ...")
    sec = _timed(
        [
            cxx,
            *flags,
            "-DCONTESTANT=2",
            f"-I{hepinfer.include_dir()}",
            "harness.cpp",
            "-o",
            "harness",
            f"-L{libdir}",
            "-lhepinfer",
            "-lpthread",
        ],
        cwd=d,
    )
    built["engine MLP"] = (d / "harness", sec, "float", [str(path)])
    runs: dict = {name: [] for name in built}
    for _ in range(rounds):
        for name, (exe, _, _, extra) in built.items():
            out = work / "mlp_out.bin"
            proc = _run([str(exe), str(work / "mlp_rows.bin"), "30", str(calls), str(out), *extra])
            runs[name].append(
                (
                    json.loads(proc.stdout.strip().splitlines()[-1])["single_ns"],
                    np.fromfile(out, dtype=np.float32),
                )
            )
    results: dict = {}
    for name, (_, compile_s, precision, _) in built.items():
        got = runs[name][0][1]
        diff = float(np.max(np.abs(got.astype(np.float64) - reference)))
        ok = diff <= 1e-5 if precision == "float" else True
        bound = None
        if precision not in ("float",):
            bound = float(np.max(codegen.mlp_error_bound(path, rows, precision)))
            ok = diff <= bound + 1e-5
        results[name] = {
            "single_ns": float(np.median([r[0] for r in runs[name]])),
            "compile_s": compile_s,
            "max_abs_diff_vs_engine": diff,
            "error_bound": bound,
            "matches_engine": ok,
        }
    try:
        import onnxruntime as ort
    except ImportError:
        log("onnxruntime skipped: not installed")
    else:
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        one = [rows[i : i + 1] for i in range(1024)]
        for i in range(2000):
            sess.run(None, {"x": one[i % 1024]})
        per_round = []
        for _ in range(rounds):
            blocks = []
            for b in range(max(1, calls // 1000)):
                t0 = time.perf_counter()
                for i in range(1000):
                    sess.run(None, {"x": one[(b * 1000 + i) % 1024]})
                blocks.append((time.perf_counter() - t0) / 1000 * 1e9)
            per_round.append(float(np.median(blocks)))
        got = np.concatenate(
            [sess.run(None, {"x": rows[i : i + 1]})[0].reshape(-1) for i in range(len(rows))]
        )
        diff = float(np.max(np.abs(got.astype(np.float64) - reference)))
        results[f"onnxruntime {ort.__version__} (Python)"] = {
            "single_ns": float(np.median(per_round)),
            "compile_s": 0.0,
            "max_abs_diff_vs_engine": diff,
            "error_bound": None,
            "matches_engine": diff <= 1e-5,
        }
    return results


def _run(cmd, cwd=None) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def _timed(cmd, cwd=None) -> float:
    t0 = time.perf_counter()
    _run(cmd, cwd)
    return time.perf_counter() - t0


def _train(work: Path, n_trees: int, depth: int, n_features: int, log) -> Path:
    import xgboost as xgb

    path = work / f"xgb_{n_trees}x{depth}_{n_features}f.json"
    if path.exists():
        return path
    log(f"training xgboost: {n_trees} trees of depth {depth} on {n_features} features ...")
    rng = np.random.default_rng(42)
    X = rng.normal(size=(20000, n_features)).astype(np.float32)
    w = rng.normal(size=n_features)
    y = (X @ w + 0.5 * X[:, 0] * X[:, 1] + rng.normal(size=len(X)) > 0).astype(int)
    booster = xgb.train(
        {
            "objective": "binary:logistic",
            "max_depth": depth,
            "eta": 0.05,
            "nthread": os.cpu_count() or 1,
            "seed": 1,
        },
        xgb.DMatrix(X, y),
        n_trees,
    )
    booster.save_model(path)
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="hepinfer bench codegen", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="100 trees, fewer calls")
    p.add_argument("--trees", type=int, default=None)
    p.add_argument("--depth", type=int, default=6)
    p.add_argument("--features", type=int, default=30)
    p.add_argument("--rows", type=int, default=None, help="rows for the throughput loop")
    p.add_argument("--calls", type=int, default=None, help="single-row calls (multiple of 1000)")
    add_output_arguments(p, "codegen")
    p.add_argument(
        "--work", default=os.path.join(os.path.expanduser("~"), ".cache", "hepinfer-bench-codegen")
    )
    p.add_argument("--rounds", type=int, default=None, help="turns over the contestants (default 3, quick 1)")
    p.add_argument("--skip", default="", help="comma-separated contestants to skip (e.g. tl2cgen, mlp)")
    args = p.parse_args(argv)
    try:
        json_path = output_path(args, "codegen")
    except ValueError as bad:
        p.error(str(bad))
    require("xgboost")
    n_trees = args.trees or (100 if args.quick else 500)
    n_rows = args.rows or (5000 if args.quick else 50000)
    calls = args.calls or (20000 if args.quick else 200000)
    args.rounds = args.rounds or (1 if args.quick else 3)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    import hepinfer
    from hepinfer import codegen

    cxx = shutil.which("g++")
    cc = shutil.which("gcc") or shutil.which("cc")
    if cxx is None:
        print("g++ not found", file=sys.stderr)
        return 2
    model_path = _train(work, n_trees, args.depth, args.features, log)
    forest = hepinfer.Forest.load(model_path)
    rows = np.random.default_rng(7).normal(size=(n_rows, args.features)).astype(np.float32)
    (work / "rows.bin").write_bytes(rows.tobytes())
    reference = forest.predict(rows)
    flags = ["-O2", "-std=c++17"]
    results: dict = {}
    extra_info: dict = {}

    built: dict = {}  # name -> (exe, compile_s, exact, extra args)

    def bench(name: str, exe: Path, compile_s: float, exact: bool, extra=()) -> None:
        built[name] = (exe, compile_s, exact, list(extra))

    # hepinfer codegen, both layouts
    for layout in ("arrays", "branches"):
        name = f"codegen ({layout})"
        if layout in skip or "codegen" in skip:
            continue
        d = work / f"codegen_{layout}"
        d.mkdir(exist_ok=True)
        t0 = time.perf_counter()
        codegen.emit_cpp(forest, d / "gen.hpp", name="gen", layout=layout)
        gen_s = time.perf_counter() - t0
        (d / "harness.cpp").write_text(HARNESS)
        log(f"compiling {name} ...")
        sec = _timed([cxx, *flags, "-DCONTESTANT=1", "harness.cpp", "-o", "harness"], cwd=d)
        bench(name, d / "harness", sec, exact=True)
        extra_info[name] = {"generate_s": gen_s, "header_bytes": (d / "gen.hpp").stat().st_size}

    # the engine (installed C++ library)
    if "engine" not in skip:
        d = work / "engine"
        d.mkdir(exist_ok=True)
        (d / "harness.cpp").write_text(HARNESS)
        libdir = Path(hepinfer.cmake_dir()).parents[1]
        log("compiling engine harness ...")
        sec = _timed(
            [
                cxx,
                *flags,
                "-DCONTESTANT=2",
                f"-I{hepinfer.include_dir()}",
                "harness.cpp",
                "-o",
                "harness",
                f"-L{libdir}",
                "-lhepinfer",
                "-lpthread",
            ],
            cwd=d,
        )
        bench("engine", d / "harness", sec, exact=True, extra=[str(model_path)])

    # tl2cgen generated C
    if "tl2cgen" not in skip:
        try:
            import tl2cgen
            import treelite
        except ImportError as e:
            log(f"tl2cgen skipped: {e}")
        else:
            d = work / "tl2cgen"
            if d.exists():
                shutil.rmtree(d)
            d.mkdir()
            tlm = treelite.frontend.load_xgboost_model(str(model_path))
            tl2cgen.generate_c_code(tlm, dirpath=str(d), params={"parallel_comp": max(1, n_trees // 50)})
            (d / "harness.cpp").write_text(HARNESS)
            log("compiling tl2cgen ...")
            sec = 0.0
            objs = []
            for src in sorted(d.glob("*.c")):
                sec += _timed([cc, "-O2", "-std=c99", "-c", src.name, "-o", src.stem + ".o"], cwd=d)
                objs.append(src.stem + ".o")
            sec += _timed(
                [cxx, *flags, "-DCONTESTANT=3", "harness.cpp", *objs, "-o", "harness", "-lm"], cwd=d
            )
            bench(f"tl2cgen {tl2cgen.__version__}", d / "harness", sec, exact=False)

    # run the contestants in turns (--rounds times) so that a busy machine slows them alike;
    # each number is the median over the rounds of the harness's own medians
    runs: dict = {name: [] for name in built}
    for rnd in range(args.rounds):
        for name, (exe, _, _, extra) in built.items():
            out = work / f"out_{len(runs[name])}_{abs(hash(name))}.bin"
            proc = _run([str(exe), str(work / "rows.bin"), str(args.features), str(calls), str(out), *extra])
            runs[name].append(
                (json.loads(proc.stdout.strip().splitlines()[-1]), np.fromfile(out, dtype=np.float64))
            )
        log(f"  round {rnd + 1}/{args.rounds} done")
    for name, (exe, compile_s, exact, _) in built.items():
        r = {
            key: float(np.median([x[0][key] for x in runs[name]]))
            for key in ("single_ns", "loop_ns_per_row", "batch_ns_per_row")
        }
        got = runs[name][0][1]
        ok = (
            bool(np.array_equal(got, reference))
            if exact
            else bool(np.allclose(got, reference, rtol=1e-5, atol=1e-6))
        )
        r.update(compile_s=compile_s, matches_engine=ok, exact=exact)
        r.update(extra_info.get(name, {}))
        results[name] = r

    mlp_results: dict = {}
    if "mlp" not in skip:
        # -O3: GCC's -O2 does not vectorise the generated dense loops (6x slower here)
        mlp_results = _mlp_bench(work, cxx, ["-O3", "-std=c++17"], calls, args.rounds, log)

    base = results.get("engine", {}).get("single_ns")
    print()
    print(
        f"model: xgboost binary:logistic, {n_trees} trees of depth {args.depth}, {args.features} features; "
        f"{calls} single-row calls, {n_rows} rows, {args.rounds} rounds; g++ -O2, 1 thread; "
        f"{platform.processor() or platform.machine()}, load average {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} cores"
    )
    print(
        f"{'contestant':<22}{'compile s':>10}{'single ns':>11}{'x engine':>10}{'loop ns/row':>13}"
        f"{'batch ns/row':>14}{'matches':>9}"
    )
    for name, r in results.items():
        ratio = f"{r['single_ns'] / base:.2f}" if base else "-"
        batch = f"{r['batch_ns_per_row']:.1f}" if r["batch_ns_per_row"] > 0 else "-"
        match = ("exact" if r["exact"] else "close") if r["matches_engine"] else "NO"
        print(
            f"{name:<22}{r['compile_s']:>10.2f}{r['single_ns']:>11.1f}{ratio:>10}{r['loop_ns_per_row']:>13.1f}"
            f"{batch:>14}{match:>9}"
        )
    if mlp_results:
        base = mlp_results.get("engine MLP", {}).get("single_ns")
        print()
        print(
            f"model: MLP 30-64-64-64-1 (ReLU, sigmoid head), batch 1, {calls} calls, {args.rounds} rounds; "
            "g++ -O3, 1 thread"
        )
        print(
            f"{'contestant':<34}{'compile s':>10}{'single ns':>11}{'x engine':>10}{'max |diff|':>12}"
            f"{'bound':>10}{'ok':>5}"
        )
        for name, r in mlp_results.items():
            ratio = f"{r['single_ns'] / base:.2f}" if base else "-"
            bound = f"{r['error_bound']:.2g}" if r["error_bound"] is not None else "-"
            print(
                f"{name:<34}{r['compile_s']:>10.2f}{r['single_ns']:>11.1f}{ratio:>10}"
                f"{r['max_abs_diff_vs_engine']:>12.2g}{bound:>10}{'yes' if r['matches_engine'] else 'NO':>5}"
            )
    if json_path:
        payload = {
            "benchmark": "codegen",
            "model": {
                "library": "xgboost",
                "objective": "binary:logistic",
                "n_trees": n_trees,
                "depth": args.depth,
                "n_features": args.features,
            },
            "calls": calls,
            "rows": n_rows,
            "rounds": args.rounds,
            "flags": flags,
            "load_average": os.getloadavg()[0],
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
            "results": results,
            "mlp_results": mlp_results,
        }
        Path(json_path).write_text(json.dumps(payload, indent=2))
        print(f"wrote {json_path}")
    ok = all(r["matches_engine"] for r in results.values()) and all(
        r["matches_engine"] for r in mlp_results.values()
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
