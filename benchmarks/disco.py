#!/usr/bin/env python3
"""`hepinfer bench disco` from a checkout: the benchmark lives in hepinfer.bench.disco (installed with
the package; its docstring and `--help` describe it). Same command line; the results go to
./hepinfer-bench-disco.json unless --json PATH or --out DIR says otherwise."""

import sys

from hepinfer.bench.disco import (
    dense_torch_disco,  # noqa: F401 (gpu.py imports it from here)
    main,
)

if __name__ == "__main__":
    sys.exit(main())
