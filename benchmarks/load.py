#!/usr/bin/env python3
"""`hepinfer bench load` from a checkout: the benchmark lives in hepinfer.bench.load (installed with
the package; its docstring and `--help` describe it). Same command line; the results go to
./hepinfer-bench-load.json unless --json PATH or --out DIR says otherwise."""

import sys

from hepinfer.bench.load import main

if __name__ == "__main__":
    sys.exit(main())
