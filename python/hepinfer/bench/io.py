#!/usr/bin/env python3
"""ROOT-file scoring benchmark: hepinfer.score against a bare uproot read of the same branches.

    hepinfer bench io                  # 1.1 GB file (generated once, about 2 minutes)
    hepinfer bench io --quick          # ~120 MB file, 2 repeats
    hepinfer bench io --json out.json --repeats 5 --chunk "100 MB"
    (python benchmarks/io.py [same flags] in a checkout; results default to ./hepinfer-bench-io.json)

A ROOT file of float32 branches (30 by default, correlated Gaussians, uproot's default ZLIB
compression) is written once into the cache folder (default /tmp/hepinfer-bench-cache; not
part of the repository), and an XGBoost BDT (500 trees, depth 6, trained on a 100k-event
subsample) is trained once on it. Then, in this process, the same branches are read with the
same chunk size by:

  read                  uproot.iterate(..., library="np"), nothing else: the floor
  hepinfer.score        hepinfer.score(model, file): reading, evaluation, result in memory
                        (the chunk read in pieces, read ahead in a background thread)
  score (whole chunks)  the same, each chunk read whole, one read ahead (hepinfer before the
                        pieces; with "100 MB" chunks the 0.12 GB file is 2 chunks)
  score (in turn)       the same, read and evaluated in turn in one thread (no read-ahead)
  hepinfer.score->ROOT  hepinfer.score writing scores, entry numbers and the 'event' branch
                        to a new ROOT file (so it also reads 'event', and compresses its output)
  read+Forest.predict   the plain loop: read a chunk, then hepinfer.Forest.predict it
  read+xgboost          the plain loop with xgboost's Booster.inplace_predict

The file is read once before timing, so every measurement runs with the file in the page
cache (no disk in the numbers: this is CPU cost: decompression, conversion, evaluation).
The cases run in turn, --repeats rounds (so a change in the machine's load hits them alike);
the table gives each case's median wall time, its median CPU time (all threads of this
process), and the wall time over the bare read. The model evaluation alone is also reported
(the sum of the predict calls in the plain loop), and a lower bound for any reader + model
pipeline on this machine: (read CPU + model CPU) / cores, or the read alone if larger.

--overlap adds a check of the pipeline itself that needs no free core: hepinfer.score with a
model that only waits (time.sleep, GIL released) 0.6 µs per event, about the bare read's time,
read in pieces / whole chunks / in turn. Perfect overlap gives the read time plus one piece's
read and one piece's wait; in turn gives the read time plus the wait.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any, Callable, Optional

import numpy as np

from hepinfer.bench import add_output_arguments, output_path, require


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def make_file(path: str, n_events: int, n_features: int, seed: int = 7) -> None:
    """Correlated Gaussian float32 branches f0..f{n-1} plus a label, written chunk by chunk."""
    import uproot

    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(n_features, n_features)) / np.sqrt(n_features)
    names = [f"f{i}" for i in range(n_features)]
    tmp = path + ".part"
    with uproot.recreate(tmp) as f:
        f.mktree("Events", {**{k: np.float32 for k in names}, "label": np.int8, "event": np.uint64})
        done = 0
        step = 500_000
        while done < n_events:
            n = min(step, n_events - done)
            z = rng.normal(size=(n, n_features)) @ mix
            label = (z[:, 0] * z[:, 1] + np.sin(z[:, 2]) + 0.5 * rng.normal(size=n) > 0).astype(np.int8)
            cols = {k: z[:, i].astype(np.float32) for i, k in enumerate(names)}
            f["Events"].extend({**cols, "label": label, "event": np.arange(done, done + n, dtype=np.uint64)})
            done += n
            _log(f"  wrote {done:,}/{n_events:,} events")
    os.replace(tmp, path)


def train_model(path: str, model_path: str, n_features: int, n_trees: int) -> None:
    import uproot
    import xgboost as xgb

    names = [f"f{i}" for i in range(n_features)]
    with uproot.open(path) as f:
        arrays = f["Events"].arrays(names + ["label"], entry_stop=100_000, library="np")
    X = np.stack([arrays[k] for k in names], axis=1)
    d = xgb.DMatrix(X, label=arrays["label"], feature_names=names)
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 6, "eta": 0.1, "tree_method": "hist"}, d, n_trees
    )
    booster.save_model(model_path)


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """(wall seconds, CPU seconds of this process, result) of one call."""
    t0, c0 = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - t0, time.process_time() - c0, result


def with_settings(fn: Callable[[], Any], **settings: Any) -> Callable[[], Any]:
    """fn run with hepinfer.scoring's read settings changed (restored after): _READ_AHEAD lives in
    the local runner, _MIN_READ_EVENTS and _READ_PIECES in the reading plan."""
    from hepinfer.scoring import local, plan

    def home(name: str) -> Any:
        return local if name == "_READ_AHEAD" else plan

    def run() -> Any:
        saved = {k: getattr(home(k), k) for k in settings}
        for k, v in settings.items():
            setattr(home(k), k, v)
        try:
            return fn()
        finally:
            for k, v in saved.items():
                setattr(home(k), k, v)

    return run


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="hepinfer bench io", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a ~120 MB file and 2 repeats")
    p.add_argument(
        "--size-gb", type=float, default=None, help="file size to aim for (default 1.12, quick 0.12)"
    )
    p.add_argument("--features", type=int, default=30)
    p.add_argument("--trees", type=int, default=500)
    p.add_argument("--chunk", default="100 MB", help='chunk: events (int) or size ("100 MB")')
    p.add_argument("--repeats", type=int, default=None, help="timed repeats (default 3, quick 2)")
    p.add_argument("--threads", type=int, default=None, help="evaluation threads (default: all cores)")
    p.add_argument("--cache-dir", default=os.environ.get("HEPINFER_BENCH_CACHE", "/tmp/hepinfer-bench-cache"))
    p.add_argument("--skip", default="", help="comma list of cases to leave out (e.g. read+xgboost)")
    add_output_arguments(p, "io")
    p.add_argument("--overlap", action="store_true", help="also time a waiting model (see above)")
    args = p.parse_args(argv)
    try:
        json_path = output_path(args, "io")
    except ValueError as bad:
        p.error(str(bad))
    require("uproot", "awkward", "xgboost")

    import uproot
    import xgboost as xgb

    import hepinfer
    from hepinfer.scoring import score

    size_gb = args.size_gb if args.size_gb is not None else (0.12 if args.quick else 1.12)
    repeats = args.repeats or (2 if args.quick else 3)
    chunk: Any = int(args.chunk) if str(args.chunk).isdigit() else args.chunk
    os.makedirs(args.cache_dir, exist_ok=True)
    # zlib-compressed correlated float32 Gaussians take ~3.9 bytes per value on disk
    n_events = int(size_gb * 1e9 / (args.features * 3.9 + 2))
    path = os.path.join(args.cache_dir, f"flat_{args.features}f_{n_events}.root")
    if not os.path.exists(path):
        _log(f"writing {path} ({n_events:,} events, once)")
        make_file(path, n_events, args.features)
    model_path = os.path.join(args.cache_dir, f"bdt_{args.features}f_{args.trees}t.json")
    if not os.path.exists(model_path):
        _log(f"training {model_path} (once)")
        train_model(path, model_path, args.features, args.trees)
    file_bytes = os.path.getsize(path)
    names = [f"f{i}" for i in range(args.features)]
    forest = hepinfer.Forest.load(model_path)
    booster = xgb.Booster(model_file=model_path)
    if args.threads:
        booster.set_param({"nthread": args.threads})
    spec = f"{path}:Events"

    def read() -> int:
        n = 0
        for arrays in uproot.iterate(spec, names, step_size=chunk, library="np"):
            n += len(arrays[names[0]])
        return n

    predict_seconds: list[float] = []

    def loop(predict: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        # the model's share, in wall time, is added to predict_seconds by the caller
        out = []
        spent = 0.0
        for arrays in uproot.iterate(spec, names, step_size=chunk, library="np"):
            X = np.empty((len(arrays[names[0]]), len(names)), dtype=np.float32, order="F")
            for j, k in enumerate(names):
                X[:, j] = arrays[k]
            t0 = time.perf_counter()
            out.append(predict(X))
            spent += time.perf_counter() - t0
        predict_seconds.append(spent)
        return np.concatenate(out)

    def in_memory() -> Any:
        return score(forest, spec, chunk=chunk, n_threads=args.threads)

    out_dir = tempfile.mkdtemp(prefix="hepinfer-bench-io-")
    cases: dict[str, Callable[[], Any]] = {
        "read": read,
        "hepinfer.score": in_memory,
        "score (whole chunks)": with_settings(in_memory, _MIN_READ_EVENTS=1 << 62, _READ_AHEAD=1),
        "score (in turn)": with_settings(in_memory, _MIN_READ_EVENTS=1 << 62, _READ_AHEAD=0),
        "hepinfer.score->ROOT": lambda: score(
            forest,
            spec,
            chunk=chunk,
            n_threads=args.threads,
            output=os.path.join(out_dir, "scores.root"),
            overwrite=True,  # timed repeatedly into the same file
        ),
        "read+Forest.predict": lambda: loop(lambda X: forest.predict(X, n_threads=args.threads)),
        "read+xgboost": lambda: loop(lambda X: booster.inplace_predict(X)),
    }
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}

    _log(f"warming the page cache: reading {path} once ({file_bytes / 1e9:.2f} GB)")
    n_read = read()
    assert n_read == n_events
    _log("checking hepinfer.score == Forest.predict == xgboost on the first 100k events")
    with uproot.open(path) as f:
        head = f["Events"].arrays(names, entry_stop=100_000, library="np")
    Xh = np.stack([head[k] for k in names], axis=1)
    ref_h = forest.predict(Xh)
    max_diff_xgb = float(np.max(np.abs(ref_h - booster.inplace_predict(Xh))))

    chosen = {k: v for k, v in cases.items() if k not in skip}
    walls: dict[str, list[float]] = {k: [] for k in chosen}
    cpus: dict[str, list[float]] = {k: [] for k in chosen}
    predicts: dict[str, list[float]] = {k: [] for k in chosen}
    first: Optional[np.ndarray] = None
    for r in range(repeats):
        _log(f"round {r + 1}/{repeats}: {', '.join(chosen)}")
        for name, fn in chosen.items():
            predict_seconds.clear()
            wall, cpu, result = timed(fn)
            walls[name].append(wall)
            cpus[name].append(cpu)
            predicts[name] += predict_seconds
            if name.startswith(("hepinfer.score", "score (")) and not name.endswith("ROOT"):
                assert np.array_equal(result[:100_000], ref_h), f"{name} differs from Forest.predict"
                if first is None:
                    first = result
                assert np.array_equal(result, first), f"{name} differs from the other scoring runs"
    results: dict[str, dict[str, Any]] = {}
    for name in chosen:
        row: dict[str, Any] = {
            "seconds": statistics.median(walls[name]),
            "all_seconds": walls[name],
            "cpu_seconds": statistics.median(cpus[name]),
            "all_cpu_seconds": cpus[name],
        }
        if predicts[name]:
            row["predict_seconds"] = statistics.median(predicts[name])
        results[name] = row

    floor = results["read"]["seconds"] if "read" in results else float("nan")
    print()
    print(
        f"file {path}: {file_bytes / 1e9:.2f} GB, {n_events:,} events, {args.features} float32 branches, "
        f"chunk {chunk!r}, page cache warm"
    )
    print(
        f"model: xgboost binary:logistic, {forest.n_trees} trees, depth 6; threads: {args.threads or 'all'} "
        f"({os.cpu_count()} cores); medians of {repeats}"
    )
    print(f"max |hepinfer - xgboost| on 100k events: {max_diff_xgb:.2e}")
    print()
    print(
        f"{'case':<24}{'wall s':>8}{'CPU s':>8}{'M events/s':>12}{'MB/s (file)':>13}{'/ read':>9}"
        f"{'model only s':>14}"
    )
    for name, row in results.items():
        s = row["seconds"]
        model_only = f"{row['predict_seconds']:.2f}" if "predict_seconds" in row else ""
        print(
            f"{name:<24}{s:>8.2f}{row['cpu_seconds']:>8.2f}{n_events / s / 1e6:>12.2f}"
            f"{file_bytes / s / 1e6:>13.0f}{s / floor:>9.2f}{model_only:>14}"
        )
        row["ratio_to_read"] = s / floor
        row["events_per_second"] = n_events / s
    cores = os.cpu_count() or 1
    bound = None
    if "read" in results and "read+Forest.predict" in results:
        # CPU of the model alone: the plain loop's CPU minus the read's
        model_cpu = results["read+Forest.predict"]["cpu_seconds"] - results["read"]["cpu_seconds"]
        read_cpu = results["read"]["cpu_seconds"]
        bound = max(floor, (read_cpu + model_cpu) / cores)
        print(
            f"\nread {read_cpu:.2f} CPU s + model {model_cpu:.2f} CPU s on {cores} cores: no pipeline "
            f"can take less than {bound:.2f} s here ({bound / floor:.2f} x the bare read)"
        )
    if "hepinfer.score" in results:
        over = results["hepinfer.score"]["seconds"] / floor - 1
        print(f"hepinfer.score is {over * 100:+.0f}% over the bare read (target: within +10%)")
    overlap: dict[str, dict[str, float]] = {}
    if args.overlap:
        wait_per_event = 0.6e-6

        class Waiting:
            input_names = names
            output_names = ["score"]

            def predict(self, inputs: Any) -> np.ndarray:
                n = len(inputs[names[0]])
                time.sleep(wait_per_event * n)
                return np.zeros(n)

        def waiting() -> Any:
            return score(Waiting(), spec, chunk=chunk)

        variants = {
            "pieces, 2 read ahead": waiting,
            "whole chunks, 1 ahead": with_settings(waiting, _MIN_READ_EVENTS=1 << 62, _READ_AHEAD=1),
            "in turn": with_settings(waiting, _MIN_READ_EVENTS=1 << 62, _READ_AHEAD=0),
        }
        timings: dict[str, list[float]] = {k: [] for k in variants}
        for _ in range(repeats):
            for k, fn in variants.items():
                timings[k].append(timed(fn)[0])
        print(f"\nmodel waiting {wait_per_event * n_events:.2f} s in all (no CPU); medians of {repeats}:")
        for k, ts in timings.items():
            overlap[k] = {"seconds": statistics.median(ts), "all_seconds": ts}
            print(f"  {k:<24}{statistics.median(ts):>8.2f} s{statistics.median(ts) / floor:>8.2f} x read")
    if json_path:
        doc = {
            "benchmark": "io",
            "machine": {
                "platform": platform.platform(),
                "processor": platform.processor(),
                "cpus": os.cpu_count(),
            },
            "versions": {
                "hepinfer": hepinfer.__version__,
                "uproot": uproot.__version__,
                "xgboost": xgb.__version__,
            },
            "file": {"path": path, "bytes": file_bytes, "events": n_events, "branches": args.features},
            "chunk": chunk,
            "threads": args.threads,
            "repeats": repeats,
            "page_cache": "warm (file read once before timing)",
            "max_abs_diff_xgboost": max_diff_xgb,
            "pipeline_lower_bound_seconds": bound,
            "load_average": os.getloadavg(),
            "results": results,
            "overlap_waiting_model": overlap,
        }
        with open(json_path, "w") as fh:
            json.dump(doc, fh, indent=2)
        print(f"wrote {json_path}")
    print("\n(the jagged feature-building benchmark: hepinfer bench jagged --quick)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
