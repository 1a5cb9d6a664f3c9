#!/usr/bin/env python3
"""`hepinfer bench nn` from a checkout: the benchmark lives in hepinfer.bench.nn (installed with
the package; its docstring and `--help` describe it). Same command line; the results go to
./hepinfer-bench-nn.json unless --json PATH or --out DIR says otherwise."""

import sys

from hepinfer.bench.nn import _models, _time_all, main  # noqa: F401 (nn_zoo.py and nn_jagged.py load this file by path)

if __name__ == "__main__":
    sys.exit(main())
