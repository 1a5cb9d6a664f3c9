#!/usr/bin/env python3
"""`hepinfer bench forest` from a checkout: the benchmark lives in hepinfer.bench.forest (installed with
the package; its docstring and `--help` describe it). Same command line; the results go to
./hepinfer-bench-forest.json unless --json PATH or --out DIR says otherwise."""

import sys

from hepinfer.bench.forest import *  # noqa: F403 (nn_zoo.py loads this file by path for machine_info)
from hepinfer.bench.forest import main

if __name__ == "__main__":
    sys.exit(main())
