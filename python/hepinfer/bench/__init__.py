"""The benchmarks, runnable from the installed package: ``hepinfer bench NAME [options]``.

    pip install "hepinfer[bench]"          # the competitors (xgboost, lightgbm, treelite, onnxruntime, ...)
    hepinfer bench forest --quick          # writes ./hepinfer-bench-forest.json
    hepinfer bench forest --help           # the benchmark's own options

Each benchmark is a module of this package with ``main(argv) -> int``; the scripts in a checkout's
``benchmarks/`` folder call the same functions. Results are written where the user says
(``--json PATH``, or ``--out DIR`` for ``DIR/hepinfer-bench-NAME.json``; default: the current
directory), never into the installed package. A competitor that is not installed is reported
with the package to install (:func:`missing`); it never stops the run.
"""

from __future__ import annotations

import argparse
import importlib
import os
from pathlib import Path
from typing import Optional, Sequence

__all__ = ["BENCHMARKS", "add_output_arguments", "import_reason", "missing", "output_path", "require", "run"]

#: name -> one line, in the order ``hepinfer bench --help`` lists them
BENCHMARKS = {
    "forest": "tree ensembles: hepinfer against xgboost, lightgbm, treelite, tl2cgen, lleaves, onnxruntime",
    "nn": "neural networks (MLP, autoencoder, PFN, ParticleNet): hepinfer against onnxruntime and torch",
    "disco": "distance correlation: hepinfer.disco against dcor and the dense torch DisCo loss",
    "io": "scoring a ROOT file: hepinfer.score against a bare uproot read of the same branches",
    "jagged": "jagged-array reductions: hepinfer.jagged against awkward",
    "codegen": "generated C++ (hepinfer codegen) against the engine and tl2cgen's generated C",
    "load": "memory and throughput over a long scoring stream with a corrupted file in it",
}

#: the distribution that provides an importable module, where the names differ
_DISTRIBUTIONS = {"sklearn": "scikit-learn", "llvmlite.binding": "llvmlite"}


def missing(module: str, *, extra: str = "bench") -> str:
    """The one-line report of a competitor (or input library) that is not installed: what to install,
    e.g. "onnxmltools is not installed: pip install onnxmltools (or pip install 'hepinfer[bench]')"."""
    dist = _DISTRIBUTIONS.get(module, module.split(".")[0])
    return f"{dist} is not installed: pip install {dist} (or pip install 'hepinfer[{extra}]')"


def import_reason(exc: BaseException, *, extra: str = "bench") -> str:
    """Why an import failed, in one line; a missing module names the package to install."""
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        return missing(exc.name, extra=extra)
    if isinstance(exc, ImportError) and str(exc):
        return str(exc).replace("\n", " ")
    text = f"{type(exc).__name__}: {exc}".strip().replace("\n", " ")
    return text if len(text) <= 300 else text[:297] + "..."


def require(*modules: str, extra: str = "bench") -> None:
    """Import the modules a benchmark cannot run without; SystemExit with one line per missing one
    (the package to install) otherwise."""
    problems = []
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            problems.append(import_reason(exc, extra=extra))
    if problems:
        raise SystemExit("hepinfer bench: cannot run: " + "; ".join(problems))


def add_output_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    """``--json PATH`` and ``--out DIR``: where the results go (see :func:`output_path`)."""
    parser.add_argument(
        "--out",
        default=".",
        metavar="DIR",
        help=f"folder for the results, written as DIR/hepinfer-bench-{name}.json (default: the current directory)",
    )
    parser.add_argument(
        "--json",
        default=None,
        metavar="PATH",
        help="write the results to this file instead ('' = write none)",
    )


def output_path(args: argparse.Namespace, name: str) -> Optional[str]:
    """The results file of a run: --json PATH, else OUT/hepinfer-bench-NAME.json; None for --json ''.
    A path inside the installed hepinfer package is refused (ValueError)."""
    if args.json == "":
        return None
    path = Path(args.json) if args.json else Path(args.out) / f"hepinfer-bench-{name}.json"
    package = Path(__file__).resolve().parents[1]
    resolved = path.resolve()
    if resolved == package or package in resolved.parents:
        raise ValueError(
            f"{path}: inside the hepinfer package ({package}); write the results elsewhere (--json PATH or --out DIR)"
        )
    os.makedirs(resolved.parent, exist_ok=True)
    return str(path)


def run(name: str, argv: Optional[Sequence[str]] = None) -> int:
    """Run benchmark NAME with its command line ``argv`` (``--help`` prints its own options)."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}")
    module = importlib.import_module(f"hepinfer.bench.{name}")
    return int(module.main(list(argv or [])) or 0)
