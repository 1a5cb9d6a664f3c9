"""Deterministic seeds for the tests: the same test draws the same numbers on every run."""

from __future__ import annotations

import os
import zlib


def stable_seed(name: str) -> int:
    """HEPINFER_TEST_SEED when set, else a stable hash (CRC-32) of ``name`` (a test's node id,
    or a fixture's name), so a red CI is reproducible, never random."""
    env = os.environ.get("HEPINFER_TEST_SEED")
    if env:
        return int(env)
    return zlib.crc32(name.encode("utf-8"))


def seed_name(nodeid: str) -> str:
    """The name a test's seed is hashed from: its node id without the capability folder
    (``tests/nn/test_nn.py::test_x[a]`` -> ``tests/test_nn.py::test_x[a]``), so that moving a test
    file between folders does not change the numbers it draws."""
    path, sep, rest = nodeid.partition("::")
    return f"tests/{path.rsplit('/', 1)[-1]}{sep}{rest}"
