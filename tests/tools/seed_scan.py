"""Run one test function over many seeds, outside pytest, to size a statistical test's margin.

    nice -n 10 python tests/tools/seed_scan.py train/test_train.py::test_adversary_lowers_mass_dependence --seeds 100
    nice -n 10 python tests/tools/seed_scan.py "tests/train/test_losses.py::test_training_loop_decorrelates[penalty=mode1]"

The test gets ``rng = np.random.default_rng(seed)`` for seed = start, start + 1, ... (what the
``rng`` fixture gives with HEPINFER_TEST_SEED=seed) and a fresh ``tmp_path``; warnings are errors,
as under pytest. Prints the failing seeds and their assertion messages.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import re
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("test", help="[tests/]FOLDER/FILE.py::FUNCTION[name=value,...]")
    p.add_argument("--seeds", type=int, default=100)
    p.add_argument("--start", type=int, default=0)
    args = p.parse_args()
    m = re.fullmatch(r"(?:tests/)?((?:\w+/)*\w+)\.py::(\w+)(?:\[(.*)\])?", args.test)
    if not m:
        p.error("expected [tests/]FOLDER/FILE.py::FUNCTION[name=value,...]")
    root = Path(__file__).resolve().parents[2]  # the tests are the package `tests` under the checkout
    sys.path.insert(0, str(root))
    module = "tests." + m.group(1).replace("/", ".")
    func = getattr(importlib.import_module(module), m.group(2))
    params = {}
    for item in filter(None, (m.group(3) or "").split(",")):
        k, v = item.split("=", 1)
        try:
            params[k] = ast.literal_eval(v)
        except ValueError:
            params[k] = v
    names = inspect.signature(func).parameters
    failures = []
    t0 = time.time()
    for seed in range(args.start, args.start + args.seeds):
        kw = dict(params)
        if "rng" in names:
            kw["rng"] = np.random.default_rng(seed)
        if "tmp_path" in names:
            kw["tmp_path"] = Path(tempfile.mkdtemp(prefix="seedscan"))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                func(**kw)
        except Exception as e:  # noqa: BLE001 (assertions, torch's GradcheckError, ...; not pytest.skip)
            failures.append(seed)
            msg = str(e).splitlines()[0][:300] if str(e) else ""
            print(f"seed {seed}: FAIL {type(e).__name__} {msg}", flush=True)
    print(
        f"{args.test}: {len(failures)} failures in {args.seeds} seeds {failures} ({time.time() - t0:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
