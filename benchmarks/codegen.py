#!/usr/bin/env python3
"""`hepinfer bench codegen` from a checkout: the benchmark lives in hepinfer.bench.codegen (installed with
the package; its docstring and `--help` describe it). Same command line; the results go to
./hepinfer-bench-codegen.json unless --json PATH or --out DIR says otherwise."""

import sys

from hepinfer.bench.codegen import main

if __name__ == "__main__":
    sys.exit(main())
