"""n_threads larger than the system lets a process start (a virtual-memory limit, as on many
grid sites): every engine must run on the threads that did start and give the n_threads=1
result, never abort the process (it used to: std::terminate from an unjoined std::thread).
Each check runs in a child Python with RLIMIT_AS set to what it already uses plus 256 MiB,
which leaves room for a few dozen of the 400 thread stacks asked for."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]  # the tests/ folder
pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc are Linux-only"
)

CHILD = textwrap.dedent(
    r"""
    import resource, sys, threading
    import numpy as np
    import hepinfer
    from hepinfer import jagged

    data = sys.argv[1]
    rng = np.random.default_rng(7)
    forest = hepinfer.Forest.load(data + "/xgboost/xgb2.1.4_multi_softprob.json")
    X = rng.normal(size=(60000, forest.n_features)).astype(np.float32)
    model = hepinfer.Model.load(data + "/nn/mlp_8_32_16_2.onnx")
    x_nn = rng.normal(size=(3200, 8)).astype(np.float32)
    x_dc, y_dc = rng.normal(size=(3000, 2)), rng.normal(size=3000)
    counts = np.arange(200000) % 5
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    pt = rng.random(offsets[-1]).astype(np.float32)

    def run(nt):
        return [
            forest.predict(X, n_threads=nt),
            forest.predict_leaf(X, n_threads=nt),
            model.predict(x_nn, n_threads=nt),
            np.array([hepinfer.distance_correlation(x_dc, y_dc, n_threads=nt)]),
            jagged.event_sum((offsets, pt), n_threads=nt),
            jagged.leading((offsets, pt), k=2, by=None, n_threads=nt)[0],
        ]

    want = run(1)
    with open("/proc/self/statm") as f:
        used = int(f.read().split()[0]) * resource.getpagesize()
    limit = used + (256 << 20)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    # the limit must really refuse threads here, or this test proves nothing
    started, hold = [], threading.Event()
    try:
        for _ in range(400):
            t = threading.Thread(target=hold.wait)
            t.start()
            started.append(t)
    except RuntimeError:  # "can't start new thread"
        pass
    hold.set()
    for t in started:
        t.join()
    if len(started) >= 400:
        print("the limit refused no thread")
        sys.exit(3)
    got = run(400)
    for w, g in zip(want, got):
        np.testing.assert_array_equal(w, g)
    print("ok", len(started))
    """
)


def test_many_threads_under_a_virtual_memory_limit():
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(TESTS / "data")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr[-4000:]}"
    assert proc.stdout.splitlines()[-1].startswith("ok"), proc.stdout  # "ok <threads Python could start>"
