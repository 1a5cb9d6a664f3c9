"""The ``hepinfer`` command line.

    hepinfer demo [--events N] [--out DIR]    train, export, load and check a BDT end to end
    hepinfer info MODEL                       what a model file holds
    hepinfer predict MODEL INPUT.csv [-o OUT.csv] [--output margin]
    hepinfer bench forest [...]               the forest benchmark (benchmarks/forest.py)
    hepinfer --cmake-dir                      folder to pass as -Dhepinfer_DIR to CMake
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

__all__ = ["main"]


def _cmd_info(args: argparse.Namespace) -> int:
    from hepinfer.forest import Forest

    f = Forest.load(args.model, tmva_cut_op=args.tmva_cut_op)
    print(f"model        {args.model}")
    print(f"format       {f.source_format}")
    print(f"objective    {f.objective}")
    print(f"trees        {f.n_trees}")
    print(f"features     {f.n_features}")
    print(f"classes      {f.n_classes}")
    if f.feature_names:
        print("names        " + ", ".join(f.feature_names))
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from hepinfer.forest import Forest

    f = Forest.load(args.model, tmva_cut_op=args.tmva_cut_op)
    X = np.loadtxt(args.input, delimiter=",", dtype=np.float64, ndmin=2, skiprows=args.skip_header)
    scores = f.predict(X, output=args.output, n_threads=args.threads)
    if args.o:
        np.savetxt(args.o, np.atleast_2d(scores.T).T, delimiter=",", fmt="%.17g")
        print(f"wrote {len(scores)} scores to {args.o}")
    else:
        np.savetxt(sys.stdout, np.atleast_2d(scores.T).T, delimiter=",", fmt="%.17g")
    return 0


def _cmd_bench(args: argparse.Namespace, rest: list[str]) -> int:
    if args.what != "forest":
        print(f"unknown benchmark {args.what!r} (available: forest)", file=sys.stderr)
        return 2
    import importlib.util

    candidates = [Path.cwd() / "benchmarks" / "forest.py", Path(__file__).resolve().parents[2] / "benchmarks" / "forest.py"]
    for path in candidates:
        if path.is_file():
            spec = importlib.util.spec_from_file_location("hepinfer_bench_forest", path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return int(module.main(rest) or 0)
    print("benchmarks/forest.py not found: run from a checkout of hepinfer", file=sys.stderr)
    return 2


def _cmd_demo(args: argparse.Namespace) -> int:
    from hepinfer.demo import run_demo

    return run_demo(n_events=args.events, out_dir=Path(args.out), n_threads=args.threads)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--cmake-dir"]:
        import hepinfer

        print(hepinfer.cmake_dir())
        return 0
    if argv[:1] == ["--version"]:
        import hepinfer

        print(hepinfer.__version__)
        return 0

    parser = argparse.ArgumentParser(prog="hepinfer", description="Fast ML inference for particle physics")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="train a BDT, export it, load it in hepinfer and check it against xgboost")
    p.add_argument("--events", type=int, default=20000, help="events per class (default 20000)")
    p.add_argument("--out", default="hepinfer-demo", help="output folder (default ./hepinfer-demo)")
    p.add_argument("--threads", type=int, default=None, help="threads for evaluation (default: all)")

    p = sub.add_parser("info", help="describe a model file")
    p.add_argument("model")
    p.add_argument("--tmva-cut-op", default=">=", choices=[">=", ">", "auto"])

    p = sub.add_parser("predict", help="score the rows of a CSV file")
    p.add_argument("model")
    p.add_argument("input", help="CSV, one event per line, features in the model's order")
    p.add_argument("-o", help="output CSV (default: stdout)")
    p.add_argument("--output", default="probability", choices=["probability", "margin"])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--skip-header", type=int, default=0, help="header lines to skip")
    p.add_argument("--tmva-cut-op", default=">=", choices=[">=", ">", "auto"])

    p = sub.add_parser("bench", help="run a benchmark (extra arguments go to it)")
    p.add_argument("what", choices=["forest"])

    args, rest = parser.parse_known_args(argv)
    if args.command != "bench" and rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    from hepinfer import Error

    try:
        if args.command == "info":
            return _cmd_info(args)
        if args.command == "predict":
            return _cmd_predict(args)
        if args.command == "bench":
            return _cmd_bench(args, rest)
        if args.command == "demo":
            return _cmd_demo(args)
    except (Error, ValueError, OSError) as err:
        print(f"hepinfer: error: {err}", file=sys.stderr)
        return 1
    return 2
