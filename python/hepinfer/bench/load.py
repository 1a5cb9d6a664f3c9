#!/usr/bin/env python3
"""Load test of hepinfer.score: one long run over many files, resident memory sampled per chunk.

    hepinfer bench load                 # about 5 minutes: 100 files, one corrupted, scored over and over
    hepinfer bench load --quick         # about 30 s
    hepinfer bench load --minutes 30 --json load.json   (default ./hepinfer-bench-load.json)
    python benchmarks/load.py --quick   # the same from a checkout

`--files` ROOT files of `--events` NanoAOD-like events (float32/float64/int32 features, run /
luminosityBlock / event ids, uproot's default compression, 10 baskets per branch) are written once
into the cache folder, and one of them is corrupted in the middle (garbage over one basket of one
branch: it fails part-way). An XGBoost BDT (`--trees` trees, depth 6) is trained once on them.
Then ONE call of ``hepinfer.score(model, files * passes, output=..., on_error="skip",
chunk=--chunk)`` runs for about `--minutes`: the number of passes over the file list comes from
a timed first pass. The model is wrapped in a probe that reads the process's resident set size
(psutil, or /proc/self/status) and the time at every chunk.

Printed and written to --json: the RSS trace summary (start, after warm-up, max, end, growth after
warm-up, the least-squares slope in MB per 1000 chunks after warm-up), throughput (events/s
over the first and the last 10 % of the chunks, to show that it does not degrade), the number of
failures recorded (one per pass, the corrupted file), and a check that the scores written for
the last pass equal Forest.predict on the files' arrays.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any, Optional

import numpy as np

from hepinfer.bench import add_output_arguments, output_path, require

FEATURES = ["x", "y", "z", "nJet"]


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def resident_bytes() -> int:
    """This process's resident set size in bytes (psutil, or Linux's /proc/self/status)."""
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    raise RuntimeError("cannot read the resident memory (no psutil, no /proc/self/status)")


def make_files(folder: str, n_files: int, n_events: int, seed: int = 11) -> list[str]:
    import uproot

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n_files):
        path = os.path.join(folder, f"events_{i:03d}.root")
        paths.append(path)
        if os.path.exists(path):
            continue
        n = n_events
        data = {
            "run": np.full(n, 1, np.uint32),
            "luminosityBlock": (np.arange(n) // 500 + 1).astype(np.uint32),
            "event": np.arange(n, dtype=np.uint64) + np.uint64(i * n_events),
            "x": rng.normal(size=n).astype(np.float32),
            "y": rng.uniform(-2, 2, size=n),
            "z": rng.exponential(30, size=n).astype(np.float32),
            "nJet": rng.poisson(3, size=n).astype(np.int32),
        }
        tmp = path + ".part"
        with uproot.recreate(tmp) as f:
            f.mktree("Events", {k: v.dtype for k, v in data.items()})
            for part in np.array_split(np.arange(n), 10):
                f["Events"].extend({k: v[part] for k, v in data.items()})
        os.replace(tmp, path)
    return paths


def corrupt_middle(path: str, out: str) -> None:
    """A copy of `path` with garbage over the start of the middle basket of branch y."""
    import uproot

    with open(path, "rb") as fh:
        data = bytearray(fh.read())
    with uproot.open(path) as f:
        branch = f["Events"]["y"]
        n = int(branch.member("fWriteBasket"))
        seek = int(branch.member("fBasketSeek")[n // 2])
    data[seek : seek + 48] = b"\xde\xad\xbe\xef" * 12
    with open(out, "wb") as fh:
        fh.write(data)


def train_model(paths: Sequence[str], model_path: str, n_trees: int) -> None:
    import uproot
    import xgboost as xgb

    arrays = [uproot.open(p)["Events"].arrays(FEATURES, library="np") for p in paths[:5]]
    X = np.stack([np.concatenate([a[k] for a in arrays]).astype(np.float64) for k in FEATURES], axis=1)
    label = (X[:, 0] * X[:, 1] + 0.02 * X[:, 2] - 0.3 * X[:, 3] > 0).astype(float)
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 6, "eta": 0.1, "nthread": 1},
        xgb.DMatrix(X, label=label, feature_names=FEATURES),
        n_trees,
    )
    booster.save_model(model_path)


class Probe:
    """The forest seen through hepinfer.score's model protocol, recording RSS and time per chunk."""

    def __init__(self, forest: Any, n_threads: Optional[int]) -> None:
        self.forest = forest
        self.n_threads = n_threads
        self.input_names = list(forest.feature_names)
        self.output_names = ["score"]
        self.rss: list[int] = []
        self.time: list[float] = []
        self.events: list[int] = []

    def predict(self, inputs: Any) -> Any:
        self.rss.append(resident_bytes())
        self.time.append(time.perf_counter())
        self.events.append(len(next(iter(inputs.values()))))
        return self.forest.predict(dict(inputs), n_threads=self.n_threads)


def trace_summary(rss_bytes: Sequence[int], warm_up: int) -> dict[str, float]:
    rss = np.asarray(rss_bytes, dtype=np.float64) / 1e6
    warm_up = min(warm_up, max(0, len(rss) - 2))
    after = rss[warm_up:]
    x = np.arange(len(after), dtype=np.float64)
    slope = float(np.polyfit(x, after, 1)[0]) * 1000 if len(after) >= 2 else 0.0
    return {
        "chunks": len(rss),
        "warm_up_chunks": warm_up,
        "start_mb": float(rss[0]),
        "after_warm_up_mb": float(after[0]),
        "max_mb": float(rss.max()),
        "end_mb": float(rss[-1]),
        "growth_after_warm_up_mb": float(after.max() - after[0]),
        "slope_mb_per_1000_chunks": slope,
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="hepinfer bench load", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="about 30 s (20 files of 5000 events, 0.5 min)")
    p.add_argument("--minutes", type=float, default=None, help="length of the run (default 5, quick 0.5)")
    p.add_argument("--files", type=int, default=None, help="files in the list (default 100, quick 20)")
    p.add_argument("--events", type=int, default=None, help="events per file (default 20000, quick 5000)")
    p.add_argument(
        "--chunk", default="1000", help='chunk: events (int) or size ("1 MB"); default 1000 events'
    )
    p.add_argument("--trees", type=int, default=100)
    p.add_argument("--threads", type=int, default=1, help="evaluation threads (default 1; 0: all cores)")
    p.add_argument("--warm-up", type=int, default=200, help="chunks left out of the growth and slope")
    p.add_argument("--cache-dir", default=os.environ.get("HEPINFER_BENCH_CACHE", "/tmp/hepinfer-bench-cache"))
    p.add_argument("--keep-output", action="store_true", help="keep the scores file (default: deleted)")
    add_output_arguments(p, "load")
    args = p.parse_args(argv)
    try:
        json_path = output_path(args, "load")
    except ValueError as bad:
        p.error(str(bad))
    require("uproot", "awkward", "xgboost")

    import uproot

    import hepinfer
    from hepinfer.scoring import score

    minutes = args.minutes if args.minutes is not None else (0.5 if args.quick else 5.0)
    n_files = args.files or (20 if args.quick else 100)
    n_events = args.events or (5000 if args.quick else 20000)
    chunk: Any = int(args.chunk) if str(args.chunk).isdigit() else args.chunk
    threads = None if args.threads == 0 else args.threads
    folder = os.path.join(args.cache_dir, f"load_{n_files}x{n_events}")
    os.makedirs(folder, exist_ok=True)
    _log(f"files: {folder} ({n_files} x {n_events:,} events, written once)")
    paths = make_files(folder, n_files, n_events)
    bad_index = n_files // 2
    bad = os.path.join(folder, "corrupted.root")
    corrupt_middle(paths[bad_index], bad)
    paths[bad_index] = bad
    model_path = os.path.join(folder, f"bdt_{args.trees}t.json")
    if not os.path.exists(model_path):
        train_model([q for q in paths if q != bad], model_path, args.trees)
    forest = hepinfer.Forest.load(model_path)

    with tempfile.TemporaryDirectory(prefix="hepinfer-load-") as tmp:
        # a timed first pass sets the number of passes
        probe = Probe(forest, threads)
        t0 = time.perf_counter()
        first = score(
            probe, paths, tree="Events", chunk=chunk, output=os.path.join(tmp, "pass.root"), on_error="skip"
        )
        t_pass = time.perf_counter() - t0
        passes = max(2, math.ceil(minutes * 60 / t_pass))
        _log(
            f"one pass: {first.events:,} events in {t_pass:.1f} s ({len(probe.rss)} chunks, "
            f"{len(first.failures)} failure); running {passes} passes in one call"
        )
        out = (
            os.path.join(tmp, "scores.root") if not args.keep_output else os.path.abspath("load_scores.root")
        )
        probe = Probe(forest, threads)
        t0 = time.perf_counter()
        summary = score(
            probe, paths * passes, tree="Events", chunk=chunk, output=out, on_error="skip", overwrite=True
        )
        seconds = time.perf_counter() - t0
        out_bytes = os.path.getsize(out)

        # the last pass's scores, read back, against Forest.predict on the files
        good_events = first.events
        with uproot.open(out) as f:
            tree = f["scores"]
            n_written = int(tree.num_entries)
            last = tree.arrays(["file_index", "score"], entry_start=n_written - good_events, library="np")
        expected = []
        for q in paths:
            if q == bad:
                failure = first.failures[0]
                cut = failure.entry
            else:
                cut = None
            with uproot.open(q) as f:
                a = f["Events"].arrays(FEATURES, entry_stop=cut, library="np")
            expected.append(forest.predict(a))
        scores_ok = bool(
            np.array_equal(last["score"], np.concatenate(expected))
            and np.all(np.diff(last["file_index"]) >= 0)
            and last["file_index"][0] == (passes - 1) * n_files
        )

    rss = trace_summary(probe.rss, args.warm_up)
    times, events = np.asarray(probe.time), np.asarray(probe.events)
    k = max(2, len(times) // 10)
    rate_first = float(events[1:k].sum() / (times[k - 1] - times[0]))
    rate_last = float(events[-k + 1 :].sum() / (times[-1] - times[-k]))
    tenths = np.array_split(np.arange(len(times)), 10)
    rate_tenths = [
        float(events[t[1:]].sum() / (times[t[-1]] - times[t[0]]))
        for t in tenths
        if len(t) > 2 and times[t[-1]] > times[t[0]]
    ]
    result = {
        "benchmark": "load",
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "hepinfer": hepinfer.__version__,
        "settings": {
            "files": n_files,
            "events_per_file": n_events,
            "chunk": chunk,
            "trees": args.trees,
            "threads": args.threads,
            "passes": passes,
            "minutes": minutes,
        },
        "events": summary.events,
        "seconds": seconds,
        "events_per_second": summary.events / seconds,
        "events_per_second_first_10pct": rate_first,
        "events_per_second_last_10pct": rate_last,
        "events_per_second_by_tenth": rate_tenths,
        "files_scored": summary.n_files_done,
        "failures": len(summary.failures),
        "failures_name_the_file": all(f.source.path == bad for f in summary.failures),
        "output_bytes": out_bytes,
        "last_pass_scores_equal_forest_predict": scores_ok,
        "rss": rss,
        "rss_trace_mb": [round(v / 1e6, 2) for v in probe.rss[:: max(1, len(probe.rss) // 2000)]],
    }
    print(
        f"hepinfer.score load test: {n_files} files x {passes} passes (one corrupted), chunk {chunk}, "
        f"{summary.events:,} events in {seconds:.0f} s ({summary.events / seconds:,.0f} events/s; "
        f"first 10 % {rate_first:,.0f}, last 10 % {rate_last:,.0f})"
    )
    print("events/s by tenth of the run: " + ", ".join(f"{r:,.0f}" for r in rate_tenths))
    print(
        f"files scored {summary.n_files_done:,}, failures {len(summary.failures)} (all naming {os.path.basename(bad)}: "
        f"{result['failures_name_the_file']}), output {out_bytes / 1e6:.0f} MB, last pass equal to Forest.predict: {scores_ok}"
    )
    print(
        f"RSS over {rss['chunks']:,} chunks: start {rss['start_mb']:.1f} MB, after {rss['warm_up_chunks']} warm-up chunks "
        f"{rss['after_warm_up_mb']:.1f} MB, max {rss['max_mb']:.1f} MB, end {rss['end_mb']:.1f} MB; growth after "
        f"warm-up {rss['growth_after_warm_up_mb']:.2f} MB, slope {rss['slope_mb_per_1000_chunks']:+.3f} MB per 1000 chunks"
    )
    if json_path:
        with open(json_path, "w") as fh:
            json.dump(result, fh, indent=1)
        _log(f"wrote {json_path}")
    return 0 if scores_ok and result["failures_name_the_file"] and result["failures"] == passes else 1


if __name__ == "__main__":
    sys.exit(main())
