"""hepinfer.score with a k-fold bundle: the features and the bundle's event-number branch are read
from ROOT files and each event is scored by the member of its fold, locally and on Dask, to a
ROOT output too; a missing or non-integer event-number branch is a clear error."""

from __future__ import annotations

import numpy as np
import pytest

import hepinfer
from hepinfer import InputError
from tests.deploy.kfold_models import FEATURES, events, fold_of, xgboost_bundle

uproot = pytest.importorskip("uproot")
pytest.importorskip("xgboost")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("kfold_score")
    paths = xgboost_bundle(base / "bundle", 5, seed=3)
    rng = np.random.default_rng(7)
    files, data = [], []
    for j in range(2):
        d = events(rng, 1500 + 300 * j)
        d["event"] = d["event"].astype(np.uint64)  # NanoAOD's type
        d["evt_float"] = d["event"].astype(np.float64)
        d["other_event"] = (d["event"] + 1).astype(np.int32)
        path = base / f"events_{j}.root"
        with uproot.recreate(path) as f:
            f["Events"] = d
        files.append(str(path))
        data.append(d)
    return base / "bundle", paths, files, data


def want_scores(paths, data, event_key="event"):
    out = []
    forests = [hepinfer.Forest.load(p) for p in paths]
    for d in data:
        X = np.column_stack([d[f] for f in FEATURES])
        folds = fold_of(d[event_key], len(paths))
        s = np.empty(len(X))
        for i, f in enumerate(forests):
            s[folds == i] = f.predict(X[folds == i])
        out.append(s)
    return np.concatenate(out)


def test_score_local_and_dask(setup, tmp_path):
    folder, paths, files, data = setup
    want = want_scores(paths, data)
    np.testing.assert_array_equal(hepinfer.score(folder, files, tree="Events"), want)
    kf = hepinfer.KFold.load(folder / "kfold.json")
    np.testing.assert_array_equal(hepinfer.score(kf, files, tree="Events", chunk=700, n_threads=2), want)
    summary = hepinfer.score(folder, files, tree="Events", output=tmp_path / "s.root")
    assert summary.events == len(want) and summary.status == "complete"
    with uproot.open(tmp_path / "s.root") as f:
        t = f["scores"].arrays(library="np")
    np.testing.assert_array_equal(t["score"], want)
    np.testing.assert_array_equal(t["event"], np.concatenate([d["event"] for d in data]))
    dask = pytest.importorskip("dask")
    with dask.config.set(scheduler="synchronous"):
        np.testing.assert_array_equal(
            hepinfer.score(folder, files, tree="Events", dask=True, chunk=800), want
        )
        np.testing.assert_array_equal(hepinfer.score(kf, files, tree="Events", dask=True, chunk=900), want)


def test_features_and_event_branch_by_name(setup):
    folder, paths, files, data = setup
    # features as a list (in the bundle's order), the event number from another branch
    want = want_scores(paths, data, "other_event")
    got = hepinfer.score(folder, files, tree="Events", features={"event": "other_event"})
    np.testing.assert_array_equal(got, want)
    got = hepinfer.score(folder, files[:1], tree="Events", features=["pt", "eta", "mass"])
    np.testing.assert_array_equal(got, want_scores(paths, data)[: len(data[0]["pt"])])


def test_event_branch_errors(setup, tmp_path):
    folder, paths, files, data = setup
    with pytest.raises(InputError, match="event-number branch 'event'.*must hold integers.*float64"):
        hepinfer.score(folder, files, tree="Events", features={"event": "evt_float"})
    path = tmp_path / "no_event.root"
    with uproot.recreate(path) as f:
        f["Events"] = {k: v for k, v in data[0].items() if k != "event"}
    with pytest.raises(hepinfer.io.ReadError, match="no_event.root.*event"):
        hepinfer.score(folder, [str(path)], tree="Events")


def test_cli_score_with_a_bundle(setup, tmp_path):
    from hepinfer.cli import main

    folder, paths, files, data = setup
    out = tmp_path / "cli.root"
    assert main(["score", str(folder), *files, "-o", str(out), "--tree", "Events", "--no-progress"]) == 0
    with uproot.open(out) as f:
        np.testing.assert_array_equal(f["scores"]["score"].array(library="np"), want_scores(paths, data))
