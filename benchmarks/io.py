#!/usr/bin/env python3
"""`hepinfer bench io` from a checkout: the benchmark lives in hepinfer.bench.io (installed with
the package; its docstring and `--help` describe it). Same command line; the results go to
./hepinfer-bench-io.json unless --json PATH or --out DIR says otherwise."""

import sys

from hepinfer.bench.io import main

if __name__ == "__main__":
    sys.exit(main())
