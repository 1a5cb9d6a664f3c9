from __future__ import annotations

import os
import zlib

import numpy as np
import pytest


def test_seed(nodeid: str) -> int:
    """The seed of a test: HEPINFER_TEST_SEED when set, else a stable hash (CRC-32) of the test's
    node id, so every run of a test draws the same numbers (a red CI is reproducible, never random)."""
    env = os.environ.get("HEPINFER_TEST_SEED")
    if env:
        return int(env)
    return zlib.crc32(nodeid.encode("utf-8"))


test_seed.__test__ = False  # a helper, not a test


@pytest.fixture
def rng(request):
    """A random generator per test, seeded by test_seed(); the seed is printed so a failure can be
    replayed (or another seed tried) with HEPINFER_TEST_SEED=<seed>."""
    seed = test_seed(request.node.nodeid)
    print(f"[{request.node.nodeid}] random seed = {seed}")
    return np.random.default_rng(seed)
