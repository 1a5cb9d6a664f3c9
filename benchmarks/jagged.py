#!/usr/bin/env python3
"""`hepinfer bench jagged` from a checkout: the benchmark lives in hepinfer.bench.jagged (installed with
the package; its docstring and `--help` describe it). Same command line; the results go to
./hepinfer-bench-jagged.json unless --json PATH or --out DIR says otherwise."""

import sys

from hepinfer.bench.jagged import main

if __name__ == "__main__":
    sys.exit(main())
