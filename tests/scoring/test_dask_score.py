"""hepinfer.score(dask=True) against the local path: the same arguments (expressions, aliases,
cut, output=, on_error=, return_summary=) give the same scores, summaries and output files; run
on dask's synchronous and threaded schedulers (fast, deterministic; test_score.py has the
2-worker distributed cluster)."""

from __future__ import annotations

import numpy as np
import pytest

uproot = pytest.importorskip("uproot")
ak = pytest.importorskip("awkward")
pytest.importorskip("xgboost")
dask = pytest.importorskip("dask")

import hepinfer
from hepinfer.io import ReadError
from hepinfer.scoring import score, score_dask
from tests.scoring.samples import corrupt_last_basket, reference, train

NAMES = ["f_x", "f_r", "lead_pt"]
FEATURES = {"f_x": "x", "f_r": "r", "lead_pt": "first(Jet_pt)"}
ALIASES = {"r": "sqrt(x**2 + y**2)"}
CUT = "(nJet >= 1) & (y > -1.5)"


@pytest.fixture(scope="module")
def forest(rootdir):
    ref = reference(rootdir, "nano_a")
    X = np.stack([ref["x"], np.sqrt(ref["x"] ** 2 + ref["y"] ** 2), ref["lead"]], axis=1)
    return hepinfer.Forest.load(train(X, ref["y"] > 0, NAMES))


def expected(rootdir: str, forest, names) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scores, file_index, entry) computed from the values the files were filled with."""
    scores, index, entry = [], [], []
    for i, name in enumerate(names):
        ref = reference(rootdir, name)
        sel = (ref["nJet"] >= 1) & (ref["y"] > -1.5)
        X = np.stack([ref["x"], np.sqrt(ref["x"] ** 2 + ref["y"] ** 2), ref["lead"]], axis=1)[sel]
        scores.append(forest.predict(X))
        index.append(np.full(int(sel.sum()), i))
        entry.append(np.flatnonzero(sel))
    return np.concatenate(scores), np.concatenate(index), np.concatenate(entry)


def read_output(path) -> dict:
    """Every tree and string of a score file, with dtypes."""
    with uproot.open(path) as f:
        out = {"scores": f["scores"].arrays(library="np")}
        for key in ("hepinfer_inputs", "hepinfer_failures"):
            if key == "hepinfer_failures" and key in f:  # a tree: one line per failed file
                t = f[key].arrays(library="np")
                out[key] = "\n".join("\t".join(str(t[k][i]) for k in t) for i in range(len(t["path"])))
            elif key in f:
                out[key] = str(f[key])
    return out


def assert_same_output(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    assert list(a["scores"]) == list(b["scores"])  # same branches, same order
    for k, v in a["scores"].items():
        assert v.dtype == b["scores"][k].dtype, k
        np.testing.assert_array_equal(v, b["scores"][k], err_msg=k)
    for k in ("hepinfer_inputs", "hepinfer_failures"):
        assert a.get(k) == b.get(k)


@pytest.mark.parametrize("scheduler", ["synchronous", "threads"])
def test_dask_equals_local_with_expressions_aliases_cut_output(rootdir, forest, tmp_path, scheduler):
    files = [f"{rootdir}/nano_a.root", f"{rootdir}/nano_b.root", f"{rootdir}/nano_a.root"]
    want, want_index, want_entry = expected(rootdir, forest, ["nano_a", "nano_b", "nano_a"])
    kw = {"tree": "Events", "features": FEATURES, "aliases": ALIASES, "cut": CUT}
    local = score(forest, files, return_summary=True, **kw)
    np.testing.assert_array_equal(local.scores, want)
    np.testing.assert_array_equal(local.file_index, want_index)
    np.testing.assert_array_equal(local.entry, want_entry)
    with dask.config.set(scheduler=scheduler):
        for chunk in (1234, "30 kB"):  # partitions of events, and of bytes
            got = score(forest, files, dask=True, return_summary=True, chunk=chunk, **kw)
            np.testing.assert_array_equal(got.scores, want)
            np.testing.assert_array_equal(got.file_index, want_index)
            np.testing.assert_array_equal(got.entry, want_entry)
            assert got.events == local.events and got.events_per_file == local.events_per_file
            assert got.event_ids == local.event_ids and got.output_names == ["score"] and not got.failures
        # the bare scores, and the model given as a file
        model = tmp_path / "m.json"
        forest_file = train(np.zeros((2, 3)), np.array([0.0, 1.0]), NAMES, rounds=1)
        forest_file.save_model(model)
        np.testing.assert_array_equal(
            score(str(model), files, dask=True, chunk=999, **kw), score(str(model), files, **kw)
        )
        # output files: the same trees, branches, dtypes and bookkeeping strings
        score(forest, files, output=tmp_path / "local.root", chunk=700, **kw)
        summary = score(forest, files, output=tmp_path / "dask.root", dask=True, chunk=700, **kw)
    assert summary.output == str(tmp_path / "dask.root") and summary.events == len(want)
    local_out, dask_out = read_output(tmp_path / "local.root"), read_output(tmp_path / "dask.root")
    assert_same_output(dask_out, local_out)
    np.testing.assert_array_equal(dask_out["scores"]["score"], want)
    assert list(dask_out["scores"]) == ["file_index", "entry", "run", "luminosityBlock", "event", "score"]
    events = [reference(rootdir, n)["event"] for n in ("nano_a", "nano_b", "nano_a")]
    np.testing.assert_array_equal(
        dask_out["scores"]["event"], [events[i][e] for i, e in zip(want_index, want_entry)]
    )


def test_dask_bad_files_same_as_local(rootdir, forest, tmp_path):
    good = f"{rootdir}/nano_a.root"
    with open(good, "rb") as fh:
        data = fh.read()
    corrupt = tmp_path / "corrupt.root"
    corrupt.write_bytes(data)
    corrupt_last_basket(corrupt, "y")  # fails part-way: the first entries are scored
    (tmp_path / "text.root").write_text("not ROOT")
    files = [good, str(corrupt), str(tmp_path / "text.root"), f"{rootdir}/nano_b.root"]
    kw = {"tree": "Events", "features": FEATURES, "aliases": ALIASES, "cut": CUT, "chunk": 700}
    with dask.config.set(scheduler="synchronous"):
        # skip: the same failures (file, entry, message), the same scores of the rest
        local = score(forest, files, on_error="skip", output=tmp_path / "l.root", **kw)
        remote = score(forest, files, on_error="skip", output=tmp_path / "d.root", dask=True, **kw)
        assert [(f.source.index, f.entry, f.message) for f in remote.failures] == [
            (f.source.index, f.entry, f.message) for f in local.failures
        ]
        assert [f.source.index for f in local.failures] == [2, 1]  # checked first, then read
        assert 0 < local.failures[1].entry < 5000 and "branch 'y'" in local.failures[1].message
        assert remote.events_per_file == local.events_per_file and remote.report().count("FAILED") == 2
        assert_same_output(read_output(tmp_path / "d.root"), read_output(tmp_path / "l.root"))
        # raise: the same error, and the same partial output file
        for name, dask_ in (("lr.root", False), ("dr.root", True)):
            with pytest.raises(
                ReadError, match=r"corrupt\.root: branch 'y' of tree 'Events' cannot be read"
            ) as err:
                score(forest, [good, str(corrupt), good], output=tmp_path / name, dask=dask_, **kw)
            assert str(tmp_path / name) in str(err.value) and err.value.branch == "y"
            assert err.value.summary.events_per_file[0] == local.events_per_file[0]
        assert_same_output(read_output(tmp_path / "dr.root"), read_output(tmp_path / "lr.root"))
        # in memory
        kept = score(forest, files, on_error="skip", return_summary=True, dask=True, **kw)
        assert len(kept.scores) == local.events and [f.source.index for f in kept.failures] == [2, 1]


def test_dask_lazy_record_array(rootdir, forest):
    dak = pytest.importorskip("dask_awkward")
    files = [f"{rootdir}/nano_b.root", f"{rootdir}/nano_a.root"]
    want, want_index, want_entry = expected(rootdir, forest, ["nano_b", "nano_a"])
    kw = {"tree": "Events", "features": FEATURES, "aliases": ALIASES}
    with dask.config.set(scheduler="synchronous"):
        lazy = score_dask(forest, files, cut=CUT, chunk=1000, compute=False, **kw)
        assert isinstance(lazy, dak.Array) and lazy.npartitions == 3 + 5
        assert lazy.fields == ["file_index", "entry", "run", "luminosityBlock", "event", "score"]
        got = lazy.compute()
        # without a cut the partitions' lengths are known
        uncut = score_dask(forest, files, chunk=1000, compute=False, **kw)
        assert uncut.divisions == (0, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000)
    np.testing.assert_array_equal(ak.to_numpy(got.score), want)
    np.testing.assert_array_equal(ak.to_numpy(got.file_index), want_index)
    np.testing.assert_array_equal(ak.to_numpy(got.entry), want_entry)


def test_dask_expression_errors_before_reading(rootdir, forest):
    path = f"{rootdir}/nano_a.root:Events"
    with dask.config.set(scheduler="synchronous"):
        for dask_ in (False, True):
            with pytest.raises(
                hepinfer.InputError, match=r"feature 'f_r': 'sqrt\(x\*\*2 \+\* y\)' is not a valid"
            ):
                score(forest, path, features={**FEATURES, "f_r": "sqrt(x**2 +* y)"}, dask=dask_)
            with pytest.raises(hepinfer.InputError, match=r"calls frist\(\).*did you mean first"):
                score(
                    forest,
                    path,
                    features={**FEATURES, "lead_pt": "frist(Jet_pt)"},
                    aliases=ALIASES,
                    dask=dask_,
                )
            with pytest.raises(
                ReadError,
                match=r"nano_a\.root: tree 'Events' has no branch 'z' \(needed for feature 'f_r' in alias 'r' = "
                r"'sqrt\(x\*\*2 \+ z\*\*2\)'\)",
            ):
                score(forest, path, features=FEATURES, aliases={"r": "sqrt(x**2 + z**2)"}, dask=dask_)
            with pytest.raises(
                ReadError,
                match=r"has no branch 'nJets' \(used by the cut in 'nJets > 1'\); similar names: nJet",
            ):
                score(forest, path, features=FEATURES, aliases=ALIASES, cut="nJets > 1", dask=dask_)


def test_dask_rntuple_with_expressions(rootdir, tmp_path):
    """The RNTuple ROOT wrote (RDataFrame Snapshot), scored with expressions, an alias and a cut,
    on dask and locally."""
    ref = reference(rootdir, "nano_b")
    X = np.stack([ref["x"] * 2, np.abs(ref["y"]), ref["nJet"]], axis=1)
    forest = hepinfer.Forest.load(train(X, ref["y"] > 0, NAMES))
    kw = {
        "tree": "Events",
        "features": {"f_x": "x * 2", "f_r": "ay", "lead_pt": "nJet"},
        "aliases": {"ay": "abs(y)"},
        "cut": "nJet != 2",
    }
    path = f"{rootdir}/ntuple.root"
    local = score(forest, path, return_summary=True, **kw)
    sel = ref["nJet"] != 2
    np.testing.assert_array_equal(local.entry, np.flatnonzero(sel))
    np.testing.assert_array_equal(local.scores, forest.predict(X[sel]))
    with dask.config.set(scheduler="synchronous"):
        remote = score(forest, path, dask=True, return_summary=True, chunk=500, **kw)
        score(forest, path, dask=True, output=tmp_path / "d.root", chunk="10 kB", **kw)
    score(forest, path, output=tmp_path / "l.root", **kw)
    np.testing.assert_array_equal(remote.scores, local.scores)
    np.testing.assert_array_equal(remote.entry, local.entry)
    assert_same_output(read_output(tmp_path / "d.root"), read_output(tmp_path / "l.root"))
