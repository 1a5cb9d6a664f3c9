"""Multiclass training end to end: networks (MLP, PFN, ParticleNet) with a softmax output and
xgboost ``multi:softprob`` BDTs, through ``hepinfer train`` and the Python API, exported and read
back by :class:`hepinfer.nn.Model` / :class:`hepinfer.Forest`, scored with one branch per class,
and the per-class metrics and plots. Trainings are tiny (a few hundred events, 1-3 epochs)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("xgboost")

from hepinfer import train as T

torch.set_num_threads(1)

CLASSES = ["qcd", "w", "top"]


def three_classes(rng, n):
    """(features [mass, tau21, tau32], label 0..2): each class its own mass peak and substructure."""
    y = rng.integers(0, 3, n)
    mass = np.choose(y, [20.0 + rng.exponential(40.0, n), rng.normal(80.0, 8.0, n), rng.normal(172.0, 12.0, n)])
    tau21 = np.choose(y, [rng.normal(0.6, 0.1, n), rng.normal(0.3, 0.1, n), rng.normal(0.45, 0.1, n)])
    tau32 = np.choose(y, [rng.normal(0.8, 0.1, n), rng.normal(0.75, 0.1, n), rng.normal(0.5, 0.1, n)])
    return np.column_stack([mass, tau21, tau32]), y


def write_npz(rng, path, n=600):
    X, y = three_classes(rng, n)
    np.savez(path, jet_mass=X[:, 0], tau21=X[:, 1], tau32=X[:, 2], label=y, event=rng.permutation(n))


def config_text(tmp_path, data, model, loss="cross_entropy", extra=""):
    return (
        f'seed = 1\noutput = "{(tmp_path / "out").as_posix()}"\n'
        f'[data]\nsource = "{data.as_posix()}"\nfeatures = ["jet_mass", "tau21", "tau32"]\n'
        f'[model]\nkind = "{model}"\nhidden = [16]\n'
        "[training]\nepochs = 3\nbatch_size = 64\nprogress = false\nlearning_rate = 0.01\n"
        f'[loss]\nkind = "{loss}"\n[bdt]\nn_trees = 15\n{extra}'
    )


def test_cli_cross_entropy_mlp_trains_three_classes(rng, tmp_path):
    """Issue 17, finding 4: loss.kind = "cross_entropy" passed validation, then build_model made a
    one-output network and the run died with an IndexError."""
    data = tmp_path / "jets.npz"
    write_npz(rng, data)
    cfg = tmp_path / "run.toml"
    cfg.write_text(config_text(tmp_path, data, "mlp"))
    assert T.main([str(cfg)]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["n_classes"] == 3
