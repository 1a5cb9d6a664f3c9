"""The ``hepinfer`` command line.

hepinfer demo [--events N] [--generate N] [--out DIR]   W/QCD taggers trained, decorrelated, exported and run
hepinfer info MODEL [--profile]           what a model holds (forest of any format; ONNX: ops, native or not,
                                          --profile: where the time of one evaluation goes; k-fold bundle)
hepinfer predict MODEL INPUT.csv [-o OUT.csv] [--output margin]
hepinfer score MODEL FILE [FILE ...] --tree Events -o scores.root [--features f1,f2] [--chunk "50 MB"]
              [--aliases "lead=first(Jet_pt), r=sqrt(x**2 + y**2)"] [--cut "nJet >= 2"] [--dask local:4]
              [--on-error skip] [--force]   exit status 0: all scored, 1: stopped at an error (or the
              output exists: --force replaces it), 3: files skipped, 130/143: stopped by Ctrl-C/SIGTERM
hepinfer score pfn.onnx FILE ... --tree jets -o scores.root --jagged-features particles=part_pt,part_eta,...
              [--jet-features jet=jet_pt,jet_eta]   set/graph networks on jagged branches, unpadded
              [--backend onnxruntime]   an ONNX network hepinfer's engine refuses, run by onnxruntime
hepinfer generate --signal N --background N -o jets.root   Pythia 8 + FastJet W/QCD jets
hepinfer train CONFIG.toml [--set key=value] [--output DIR] [--resume]
hepinfer codegen MODEL -o tagger.hpp [--name N] [--namespace NS] [--precision P] [--layout L]
hepinfer bench forest|nn|disco|io|jagged|codegen|load [--quick] [--out DIR] [...]   a benchmark
                                          (hepinfer.bench; the competitors: pip install "hepinfer[bench]")
hepinfer --cmake-dir                      folder to pass as -Dhepinfer_DIR to CMake
hepinfer --version

Ctrl-C stops any subcommand with one line on stderr and exit status 130 (no traceback).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import re
import signal
import sys
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np

__all__ = ["main"]


def _shape_text(t: Any) -> str:
    if t.shape is None:
        return f"{t.dtype} (no shape declared)"
    dims = ", ".join("?" if d is None else str(d) for d in t.shape)
    return f"{t.dtype}[{dims}]"


def _cmd_info_onnx(args: argparse.Namespace) -> int:
    from hepinfer._core import Error
    from hepinfer.nn import Model, describe

    s = describe(args.model)
    print(f"model        {args.model}")
    print(f"format       ONNX (IR version {s.ir_version}, opset {s.opset})")
    print(f"producer     {s.producer or '?'}")
    for label, values in (("inputs", s.inputs), ("outputs", s.outputs)):
        for i, t in enumerate(values):
            print(f"{label if i == 0 else '':<12} {t.name}: {_shape_text(t)}")
    print(f"parameters   {s.n_parameters:,} in {s.n_initializers} initializers")
    n_native = len(s.nodes) - len(s.unsupported)
    print(f"nodes        {len(s.nodes)}, {n_native} of them on operators hepinfer implements")
    print("operators")
    native = {(n.domain, n.op_type): n.supported for n in s.nodes}
    for (domain, op), count in s.op_histogram().items():
        name = op if not domain or domain == "ai.onnx" else f"{domain}.{op}"
        mark = "native" if native[(domain, op)] else "NOT SUPPORTED"
        print(f"  {name:<28} {count:>5}  {mark}")
    if s.unsupported:
        print("unsupported nodes")
        for n in s.unsupported:
            print(f"  {n.name or '?'} ({n.op_type}{' in ' + n.domain if n.domain else ''})")
    try:
        m = Model.load(args.model)
    except Error as e:
        print(f"loads        no: {e}")
        return 1
    print(f"loads        yes ({m.n_nodes} nodes after folding and fusion)")
    if args.profile:
        return _print_profile(m, args)
    return 0


def _profile_inputs(m: Any, batch: int, dims: dict[str, int]) -> dict[str, np.ndarray]:
    """Random inputs of the model's declared shapes: the first dimension, where symbolic, is the
    batch; other symbolic dimensions come from --dim NAME=VALUE. float32 normal, int64 zeros,
    bool all true (masks: every particle present)."""
    rng = np.random.default_rng(1)
    feeds: dict[str, np.ndarray] = {}
    for t in m.inputs:
        if t.shape is None:
            raise ValueError(f"input '{t.name}' has no declared shape; --profile needs one")
        shape = []
        for i, d in enumerate(t.shape):
            if isinstance(d, int):
                shape.append(d)
            elif isinstance(d, str) and d in dims:
                shape.append(dims[d])
            elif i == 0:
                shape.append(batch)
            else:
                raise ValueError(
                    f"input '{t.name}' has the symbolic dimension {d or '?'} at axis {i}: give --dim {d or 'NAME'}=VALUE"
                )
        if t.dtype == "float32":
            feeds[t.name] = rng.standard_normal(shape).astype(np.float32)
        elif t.dtype == "bool":
            feeds[t.name] = np.ones(shape, dtype=bool)
        else:
            feeds[t.name] = np.zeros(shape, dtype=np.int64)
    return feeds


def _print_profile(m: Any, args: argparse.Namespace) -> int:
    dims: dict[str, int] = {}
    for spec in args.dim:
        name, sep, value = spec.partition("=")
        if not sep or not value.strip().isdigit():
            raise ValueError(f"--dim takes NAME=VALUE with a non-negative integer value, got {spec!r}")
        dims[name.strip()] = int(value)
    times = m.profile(_profile_inputs(m, args.batch, dims), repeats=args.repeats)
    total = sum(t.seconds for t in times) or 1e-30
    print(
        f"profile      batch {args.batch}, one thread, median of {args.repeats} evaluations: {total * 1e6:,.1f} µs in {len(times)} nodes"
    )
    by_op: dict[str, list[float]] = {}
    for t in times:
        entry = by_op.setdefault(t.op_type, [0.0, 0.0])
        entry[0] += t.seconds
        entry[1] += 1
    print("by operator")
    for op, (sec, count) in sorted(by_op.items(), key=lambda kv: -kv[1][0]):
        print(f"  {op:<28} {int(count):>5}  {sec * 1e6:>11,.1f} µs  {100 * sec / total:5.1f} %")
    print(f"slowest nodes (top {args.top})")
    for t in sorted(times, key=lambda t: -t.seconds)[: args.top]:
        print(
            f"  {t.name or '?':<40} {t.op_type:<20} {t.seconds * 1e6:>11,.1f} µs  {100 * t.seconds / total:5.1f} %"
        )
    return 0


def _cmd_info_kfold(args: argparse.Namespace) -> int:
    from hepinfer.kfold import KFold

    b = KFold.load(args.model, tmva_cut_op=args.tmva_cut_op)
    print(f"model        {args.model}")
    print(f"format       hepinfer k-fold bundle ({b.n_folds} folds of {b.kind} members)")
    print(f"event number {b.event_number} (fold = {b.event_number} mod {b.n_folds})")
    print(f"features     {b.n_features}")
    if b.feature_names:
        print("names        " + ", ".join(b.feature_names))
    print(f"outputs      {b.n_outputs()}")
    for i, path in enumerate(b.member_paths):
        print(f"{'members' if i == 0 else '':<12} fold {i}: {path}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from hepinfer.forest import Forest
    from hepinfer.kfold import is_bundle

    if str(args.model).lower().endswith(".onnx"):
        return _cmd_info_onnx(args)
    if is_bundle(args.model):
        return _cmd_info_kfold(args)

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


def _chunk(text: str) -> "int | str":
    text = text.strip()
    if text.isdigit():
        if int(text) < 1:
            raise argparse.ArgumentTypeError("--chunk must be at least 1 event")
        return int(text)
    return text


def _named_lists(items: list[str], flag: str) -> dict[str, list[str]]:
    """["points=part_eta,part_phi", ...] -> {"points": ["part_eta", "part_phi"], ...}."""
    from hepinfer.scoring import split_features

    out: dict[str, list[str]] = {}
    for item in items:
        name, sep, branches = item.partition("=")
        if not sep or not name.strip() or not split_features(branches):
            raise ValueError(f"{flag} takes INPUT=BRANCH,BRANCH,...; got {item!r}")
        if name.strip() in out:
            raise ValueError(f"{flag} names the input {name.strip()!r} twice")
        out[name.strip()] = split_features(branches)
    return out


_ALIAS = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=(?!=)(.*)$", re.S)


def _aliases(items: list[str]) -> dict[str, str]:
    """["r=sqrt(x**2 + y**2), lead=first(Jet_pt)", "ht=sum_of(Jet_pt)"] -> {"r": ..., "lead": ..., "ht": ...}."""
    from hepinfer.scoring import split_features

    out: dict[str, str] = {}
    for item in items:
        for part in split_features(item):
            m = _ALIAS.match(part)
            if m is None or not m.group(2).strip():
                raise ValueError(
                    f"--aliases takes NAME=EXPRESSION (e.g. 'lead_pt=first(Jet_pt)'); got {part!r}"
                )
            name, expr = m.group(1), m.group(2).strip()
            if name in out:
                raise ValueError(f"--aliases defines {name!r} twice")
            out[name] = expr
    return out


def _cmd_score(args: argparse.Namespace) -> int:
    from hepinfer.scoring import score, split_features

    features: Any = split_features(args.features) if args.features else None
    if args.jagged_features:
        if features is not None:
            raise ValueError("give either --features (one value per event) or --jagged-features, not both")
        features = _named_lists(args.jagged_features, "--jagged-features")
    jet_features = _named_lists(args.jet_features, "--jet-features") if args.jet_features else None
    aliases = _aliases(args.aliases) if args.aliases else None
    with _dask_client(args.dask) as client:
        summary = score(
            args.model,
            args.files,
            tree=args.tree,
            features=features,
            jet_features=jet_features,
            aliases=aliases,
            cut=args.cut,
            chunk=args.chunk,
            output=args.o,
            output_tree=args.output_tree,
            output_kind=args.output_kind,
            n_threads=args.threads,
            progress=not args.no_progress,
            on_error=args.on_error,
            dask=client is not None,
            overwrite=args.force,
            nn_backend=args.backend,
        )
    print(summary.report())
    return 3 if summary.failures else 0


def _interrupted(err: KeyboardInterrupt, args: Optional[argparse.Namespace]) -> int:
    """One line on stderr for a run stopped by Ctrl-C or SIGTERM (no traceback): how far it got and
    that nothing was written; the exit status is 128 + the signal's number, as a shell reports it."""
    signum = int(getattr(err, "signum", signal.SIGINT))
    how = "Ctrl-C (SIGINT)" if signum == signal.SIGINT else signal.Signals(signum).name
    summary = getattr(err, "hepinfer_summary", None)
    where = ""
    if summary is not None:
        done = sum(1 for n in summary.events_per_file.values() if n)
        where = f" after {summary.events:,} events from {done} of {len(summary.files)} file(s)"
    output = getattr(args, "o", None)
    tail = f"; nothing written to {output}" if output else ""
    print(f"hepinfer: stopped by {how}{where}{tail}", file=sys.stderr)
    return 128 + signum


@contextlib.contextmanager
def _dask_client(spec: Optional[str]) -> Iterator[Any]:
    """None, or a dask.distributed Client for --dask: a scheduler address, or 'local[:N]' for a
    cluster of N single-threaded worker processes on this machine (closed at the end)."""
    if spec is None:
        yield None
        return
    try:
        import distributed
    except ImportError as err:
        raise ValueError("--dask needs dask.distributed (pip install 'hepinfer[dask]')") from err
    local = re.fullmatch(r"local(?::(\d+))?", spec.strip())
    if local is not None:
        workers = int(local.group(1)) if local.group(1) else None
        if workers == 0:
            raise ValueError("--dask local:N needs N >= 1 workers")
        with (
            distributed.LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                dashboard_address=None,
                # the workers' logs while the cluster is torn down (a run stopped by Ctrl-C or
                # SIGTERM) are noise on the user's terminal: "failed to communicate with scheduler
                # during heartbeat" is logged at ERROR with a traceback when the scheduler closes
                # mid-heartbeat. A failure that matters reaches the client as an exception (a task's
                # own error, KilledWorker for a worker that died) and is reported from there.
                silence_logs=logging.CRITICAL,
            ) as cluster,
            distributed.Client(cluster) as client,
        ):
            yield client
        return
    try:
        client = distributed.Client(spec, timeout="20s")
    except OSError as err:
        raise ValueError(f"--dask: cannot reach a dask scheduler at {spec!r}: {err}") from err
    with client:
        yield client


BENCHMARKS = ("forest", "nn", "disco", "io", "jagged", "codegen", "load")


def _bench_usage() -> str:
    from hepinfer.bench import BENCHMARKS as described

    lines = [
        "usage: hepinfer bench NAME [--quick] [--out DIR | --json PATH] [options of NAME]",
        "",
        "Run a benchmark of the installed package (hepinfer.bench); `hepinfer bench NAME --help` lists its",
        'options. The competitors come with pip install "hepinfer[bench]"; one that is missing is reported',
        "with the package to install. Results: ./hepinfer-bench-NAME.json (--out DIR, --json PATH).",
        "",
        "benchmarks:",
    ]
    lines += [f"  {name:<9} {text}" for name, text in described.items()]
    return "\n".join(lines)


def _cmd_bench(argv: list[str]) -> int:
    """``hepinfer bench NAME ...``: NAME's own parser gets the rest (so --help is NAME's)."""
    from hepinfer.bench import run

    if not argv or argv[0] in ("-h", "--help"):
        print(_bench_usage())
        return 0 if argv else 2
    if argv[0] not in BENCHMARKS:
        print(_bench_usage(), file=sys.stderr)
        print(f"\nhepinfer bench: unknown benchmark {argv[0]!r}", file=sys.stderr)
        return 2
    try:
        return run(argv[0], argv[1:])
    except SystemExit as exc:  # a benchmark's --help, usage error or `require` refusal
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
            return 2
        return 0 if exc.code is None else int(exc.code)


def _cmd_demo(args: argparse.Namespace) -> int:
    from hepinfer.demo import run_demo

    return run_demo(
        n_events=args.events,
        out_dir=Path(args.out),
        n_threads=args.threads,
        generate=args.generate,
        sample=args.sample,
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The ``hepinfer`` command; returns the exit status. Ctrl-C anywhere (also while a subcommand
    imports its libraries) ends with one line on stderr and status 130, never a traceback."""
    try:
        return _main(list(sys.argv[1:] if argv is None else argv))
    except KeyboardInterrupt as err:  # the parser-based subcommands report their own (with the output)
        return _interrupted(err, None)


def entry() -> None:
    """The ``hepinfer`` console script and ``python -m hepinfer``: :func:`main`, then exit with its
    status. After Ctrl-C / SIGTERM (status 130 / 143) the exit handlers run and the process ends with
    ``os._exit``: a KeyboardInterrupt that went through Python code run from C (``PyRun_String``, as
    pybind11 modules such as torch's do while they import) leaves CPython's "unhandled
    KeyboardInterrupt" flag set although ``main`` handled it, and the interpreter would then end by
    killing itself with SIGINT (status -2 instead of 130)."""
    code = main()
    if code in (128 + signal.SIGINT, 128 + signal.SIGTERM):
        import atexit
        import os

        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)
    sys.exit(code)


def _main(argv: list[str]) -> int:
    if argv[:1] == ["--cmake-dir"]:
        import hepinfer

        print(hepinfer.cmake_dir())
        return 0
    if argv[:1] == ["--version"]:
        import hepinfer

        print(hepinfer.__version__)
        return 0
    # subcommands with their own argument parsers
    if argv[:1] == ["generate"]:
        from hepinfer.datasets import main as datasets_main

        return int(datasets_main(argv, prog="hepinfer") or 0)
    if argv[:1] == ["train"]:
        from hepinfer.train import main as train_main

        return int(train_main(argv[1:]) or 0)
    if argv[:1] == ["codegen"]:
        from hepinfer.codegen import main as codegen_main

        return int(codegen_main(argv[1:]) or 0)
    if argv[:1] == ["bench"]:
        from hepinfer import Error

        try:
            return _cmd_bench(argv[1:])
        except (Error, ValueError, OSError) as err:
            print(f"hepinfer: error: {err}", file=sys.stderr)
            return 1

    import hepinfer

    parser = argparse.ArgumentParser(
        prog="hepinfer",
        description="Fast ML inference for particle physics",
        epilog="Ctrl-C stops any subcommand with one line on stderr and exit status 130.",
    )
    parser.add_argument("--version", action="version", version=hepinfer.__version__)
    parser.add_argument(
        "--cmake-dir",
        action="store_true",
        help="print the folder to pass as -Dhepinfer_DIR to CMake (C++ projects using hepinfer)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "demo", help="W-vs-QCD jet taggers (BDT, MLP, DisCo MLP, PFN) trained, exported and run by hepinfer"
    )
    p.add_argument(
        "--events",
        type=int,
        default=None,
        help="jets per class taken from the sample (default: all; the committed sample has 2000)",
    )
    p.add_argument(
        "--generate",
        type=int,
        default=None,
        metavar="N",
        help="generate a fresh Pythia 8 + FastJet sample of N W and N QCD jets (needs hepinfer[datasets]; cached)",
    )
    p.add_argument(
        "--sample",
        default=None,
        help="a jet sample file (hepinfer.datasets format) instead of the committed one",
    )
    p.add_argument("--out", default="hepinfer-demo", help="output folder (default ./hepinfer-demo)")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads for scoring the ROOT file (default: all); training and the speed table use one",
    )

    p = sub.add_parser(
        "info",
        help="describe a model: a forest (XGBoost, LightGBM, TMVA), an ONNX network, a k-fold bundle",
    )
    p.add_argument("model")
    p.add_argument(
        "--profile",
        action="store_true",
        help="ONNX: time every node on random inputs (one thread) and list where the time goes",
    )
    p.add_argument("--batch", type=int, default=1, help="--profile: the batch size (default 1)")
    p.add_argument(
        "--dim",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="--profile: the size of a symbolic dimension (repeatable)",
    )
    p.add_argument("--repeats", type=int, default=20, help="--profile: evaluations timed (default 20)")
    p.add_argument("--top", type=int, default=15, help="--profile: slowest nodes listed (default 15)")
    p.add_argument("--tmva-cut-op", default=">=", choices=[">=", ">", "auto"])

    p = sub.add_parser("predict", help="score the rows of a CSV file")
    p.add_argument("model")
    p.add_argument("input", help="CSV, one event per line, features in the model's order")
    p.add_argument("-o", help="output CSV (default: stdout)")
    p.add_argument("--output", default="probability", choices=["probability", "margin"])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--skip-header", type=int, default=0, help="header lines to skip")
    p.add_argument("--tmva-cut-op", default=">=", choices=[">=", ">", "auto"])

    p = sub.add_parser(
        "score",
        help="score the events of ROOT files and write the scores to a ROOT file",
        epilog=(
            "The output appears only complete (written beside it as O.incomplete-PID, renamed when done); "
            "its hepinfer_status says how the run ended. Exit status: 0 every file scored; 1 stopped at an "
            "error (named on stderr): a bad file found by the check before scoring, or an output that exists "
            "(use --force) or is an input, writes nothing; a file that breaks part-way keeps the scores "
            "before it with status 'incomplete: ...'; 3 with --on-error skip, some files failed: they are "
            "listed as FAILED in the summary and in the output's hepinfer_failures tree, every other file is "
            "scored; 130 / 143 stopped by Ctrl-C / SIGTERM: nothing written"
        ),
    )
    p.add_argument(
        "model",
        help="model file (XGBoost .json/.ubj, LightGBM .txt, TMVA .weights.xml; or ONNX .onnx with one "
        "(events, features) input, given its branches with --features, or a set/graph network given its "
        "jagged branches with --jagged-features; or a k-fold bundle, the folder holding kfold.json: each event "
        "scored by the member of its fold, from the bundle's event-number branch)",
    )
    p.add_argument("files", nargs="+", help="ROOT files, glob patterns or file.root:tree specs")
    p.add_argument(
        "-o",
        required=True,
        help="output ROOT file (scores, file_index, entry, run/lumi/event); written to "
        "O.incomplete-PID and renamed to O only when complete",
    )
    p.add_argument(
        "-f",
        "--force",
        action="store_true",
        help="replace the output file if it exists (an output that is one of the inputs is always refused)",
    )
    p.add_argument("--tree", default=None, help="TTree or RNTuple name (default: the file's only tree)")
    p.add_argument(
        "--features",
        default=None,
        help="comma-separated branches/expressions in the model's order (commas inside "
        "parentheses belong to the expression: 'x, nth(Jet_pt, 1)')",
    )
    p.add_argument(
        "--jagged-features",
        action="append",
        default=None,
        metavar="INPUT=BRANCHES",
        help="set/graph networks (ONNX PFN, ParticleNet): a per-particle input and its jagged "
        "branches, one per value per particle in training order, e.g. "
        "'points=part_deta,part_dphi'; repeat for each per-particle input (read without padding)",
    )
    p.add_argument(
        "--jet-features",
        action="append",
        default=None,
        metavar="INPUT=BRANCHES",
        help="with --jagged-features: a per-jet input of the network and its flat branches/expressions",
    )
    p.add_argument(
        "--aliases",
        action="append",
        default=None,
        metavar="NAME=EXPRESSION",
        help="a feature defined from branches, usable in --features, --cut and other aliases, e.g. "
        "'lead_pt=first(Jet_pt)' or 'r=sqrt(x**2 + y**2), ht=sum_of(Jet_pt)' (repeat or separate "
        "with commas)",
    )
    p.add_argument(
        "--backend",
        default=None,
        choices=["hepinfer", "onnxruntime"],
        help="what evaluates an ONNX model: hepinfer's engine (default), or onnxruntime for a network "
        "whose operators the engine refuses (needs onnxruntime and onnx installed; never chosen silently)",
    )
    p.add_argument("--cut", default=None, help="event selection expression (uproot syntax)")
    p.add_argument(
        "--chunk", type=_chunk, default="100 MB", help='events per chunk or a size ("50 MB", default)'
    )
    p.add_argument("--threads", type=int, default=None, help="threads for evaluation (default: all)")
    p.add_argument("--output-kind", default="probability", choices=["probability", "margin"])
    p.add_argument("--output-tree", default="scores", help="tree name in the output file (default scores)")
    p.add_argument(
        "--on-error",
        default="raise",
        choices=["raise", "skip"],
        help="stop at the first unreadable file (default) or skip it and go on (exit code 3)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument(
        "--dask",
        default=None,
        metavar="SCHEDULER",
        help="score on dask.distributed: a scheduler address (tcp://host:8786), or 'local:N' for N "
        "worker processes on this machine; --chunk sets the partitions, --threads the threads per "
        "task (default 1); same output as without it",
    )

    sub.add_parser("generate", help="generate a Pythia 8 + FastJet W/QCD jet sample (hepinfer.datasets)")
    sub.add_parser("train", help="train a model from a TOML configuration (hepinfer.train)")
    sub.add_parser("codegen", help="write a self-contained C++ header for a model (hepinfer.codegen)")

    sub.add_parser(
        "bench",
        help=f"run a benchmark: {', '.join(BENCHMARKS)} (hepinfer bench NAME --help: its options)",
    )

    args = parser.parse_args(argv)
    from hepinfer import Error

    try:
        if args.command == "info":
            return _cmd_info(args)
        if args.command == "predict":
            return _cmd_predict(args)
        if args.command == "score":
            return _cmd_score(args)
        if args.command == "demo":
            return _cmd_demo(args)
    except (Error, ValueError, OSError) as err:
        print(f"hepinfer: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:  # Ctrl-C, and SIGTERM while scoring (hepinfer.scoring.Terminated)
        return _interrupted(err, args)
    return 2
