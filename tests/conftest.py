from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def rng(request):
    """A fresh random generator per test; its seed is printed so a failure can be replayed
    with HEPINFER_TEST_SEED=<seed>."""
    import os

    seed = int(os.environ.get("HEPINFER_TEST_SEED", np.random.SeedSequence().entropy % (1 << 32)))
    print(f"[{request.node.name}] random seed = {seed}")
    return np.random.default_rng(seed)
