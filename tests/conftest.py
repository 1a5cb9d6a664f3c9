from __future__ import annotations

import numpy as np
import pytest

from seeding import stable_seed


@pytest.fixture
def rng(request):
    """A random generator per test, seeded by seeding.stable_seed(node id); the seed is printed
    so a failure can be replayed (or another seed tried) with HEPINFER_TEST_SEED=<seed>."""
    seed = stable_seed(request.node.nodeid)
    print(f"[{request.node.nodeid}] random seed = {seed}")
    return np.random.default_rng(seed)
