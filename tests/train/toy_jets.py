"""Tiny W-vs-QCD-like toys for the decorrelation tests (plain functions, no fixtures): a falling
background mass spectrum, a W-like signal peak at 80 and a "tau21"-like variable that separates
without depending on the mass (the same toy as tests/train/test_train.py)."""

from __future__ import annotations

import numpy as np
import torch

from hepinfer import train as T


def toy_jets(rng, n, *, signal_fraction=0.5):
    """(features [mass, tau21], label, mass)."""
    y = (rng.random(n) < signal_fraction).astype(np.float64)
    mass = np.where(y == 1, rng.normal(80.0, 8.0, n), 20.0 + rng.exponential(40.0, n))
    tau21 = np.where(y == 1, rng.normal(0.35, 0.12, n), rng.normal(0.55, 0.12, n))
    X = np.column_stack([mass, tau21]).astype(np.float32)
    return X, y, mass


def make_sample(X, y, mass=None, w=None):
    return T.Sample(
        (torch.as_tensor(X, dtype=torch.float32),),
        torch.as_tensor(y, dtype=torch.float32),
        None if w is None else torch.as_tensor(w, dtype=torch.float32),
        None if mass is None else torch.as_tensor(mass, dtype=torch.float32),
    )


def mlp_for(X, seed, hidden=(16, 16)):
    """A seeded MLP with its input scaler fitted to X."""
    torch.manual_seed(seed)
    model = T.MLP(X.shape[1], hidden)
    model.scaler.fit(torch.as_tensor(X))
    return model


def dcor2(x, y, weights=None):
    """dCor²(x, y) (V-statistic) with hepinfer's C++ estimator."""
    from hepinfer.disco import distance_correlation

    return distance_correlation(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64), weights)
