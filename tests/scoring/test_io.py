"""hepinfer.io: reading ROOT files chunk by chunk, on files written by ROOT itself (the `root`
wheel, when installed), by uproot, and scikit-hep-testdata's files (when they can be fetched)."""

from __future__ import annotations

import os

import numpy as np
import pytest

uproot = pytest.importorskip("uproot")
ak = pytest.importorskip("awkward")

import hepinfer
from hepinfer.io import ReadError, expand_files, iterate, open_tree
from tests.scoring.samples import corrupt_last_basket, reference, skhep_file, write_flat

# ------------------------------------------------------------------ files


def test_expand_files_patterns_specs_lists(tmp_path, rng):
    for i in (2, 0, 1):
        write_flat(tmp_path / f"f{i}.root", rng, 10)
    (tmp_path / "sub").mkdir()
    found = expand_files(str(tmp_path / "f*.root"), tree="Events")
    assert [os.path.basename(s.path) for s in found] == ["f0.root", "f1.root", "f2.root"]
    assert [s.index for s in found] == [0, 1, 2] and all(s.tree == "Events" for s in found)
    spec = expand_files([f"{tmp_path}/f1.root:Events", tmp_path / "f2.root"], tree="T")
    assert [(os.path.basename(s.path), s.tree) for s in spec] == [("f1.root", "Events"), ("f2.root", "T")]
    assert expand_files({str(tmp_path / "f0.root"): "X"})[0].tree == "X"
    assert expand_files(f"{tmp_path}/f*.root:Events")[2].tree == "Events"
    assert (
        expand_files("root://eos.example//store/x.root:Events")[0].path == "root://eos.example//store/x.root"
    )
    with pytest.raises(ReadError, match="no file matches"):
        expand_files(str(tmp_path / "nothing*.root"))
    with pytest.raises(ReadError, match="no such file") as err:
        expand_files(str(tmp_path / "missing.root"))
    assert err.value.file.endswith("missing.root")
    with pytest.raises(ReadError, match="is a folder"):
        expand_files(str(tmp_path / "sub"))
    assert isinstance(err.value, hepinfer.InputError) and isinstance(err.value, ValueError)


def test_open_tree_errors_name_the_file(tmp_path, rng):
    write_flat(tmp_path / "ok.root", rng, 10)
    (tmp_path / "text.root").write_bytes(b"this is not a ROOT file at all" * 10)
    good = (tmp_path / "ok.root").read_bytes()
    (tmp_path / "empty.root").write_bytes(b"")
    for name in ("text.root", "empty.root"):
        with pytest.raises(ReadError, match="cannot be read as a ROOT file") as err:
            open_tree(str(tmp_path / name), "Events")
        assert name in str(err.value) and err.value.file.endswith(name)
    for frac in (0.1, 0.3, 0.5, 0.7, 0.9, 0.99):  # an interrupted copy, cut anywhere
        (tmp_path / "cut.root").write_bytes(good[: int(len(good) * frac)])
        with pytest.raises(ReadError, match="cut.root (is truncated|cannot be read as a ROOT file)") as err:
            list(iterate(str(tmp_path / "cut.root"), ["a"]))
        assert err.value.file.endswith("cut.root")
    with pytest.raises(ReadError, match="has no tree 'Evnts'; it has: Events"):
        open_tree(str(tmp_path / "ok.root"), "Evnts")
    t = open_tree(str(tmp_path / "ok.root"))  # the only tree
    assert t.num_entries == 10
    t.file.close()


def test_open_tree_roots_own_file(rootdir):
    with pytest.raises(ReadError, match="'h' is a TH1[FD], not a TTree or RNTuple; the file's trees: other"):
        open_tree(f"{rootdir}/mixed.root:h")
    t = open_tree(f"{rootdir}/mixed.root")  # the TTree is the only tree next to the histogram
    assert t.name == "other"
    t.file.close()


# ------------------------------------------------------------------ iterate


@pytest.mark.parametrize("step", [3, 333, 5000, 10**9])
def test_iterate_chunks_equal_a_direct_read(rootdir, step):
    want = reference(rootdir, "nano_a")
    chunks = list(iterate(f"{rootdir}/nano_a.root:Events", ["x", "y", "nJet"], step_size=step))
    assert all(c.n_events <= step for c in chunks)
    assert [c.entry_start for c in chunks] == [
        sum(d.n_events for d in chunks[:i]) for i in range(len(chunks))
    ]
    for name in ("x", "y", "nJet"):
        got = np.concatenate([c.arrays[name] for c in chunks])
        np.testing.assert_array_equal(got, want[name])  # NaNs included
    assert np.array_equal(np.concatenate([c.entries for c in chunks]), np.arange(5000))
    assert chunks[-1].bytes_read > 0


def test_iterate_bytes_bound_memory(tmp_path, rng):
    write_flat(tmp_path / "big.root", rng, 200_000, extends=20)
    chunks = list(iterate(str(tmp_path / "big.root"), ["a", "b", "c"], step_size="100 kB"))
    assert len(chunks) > 5
    # each chunk holds about 100 kB of the three float32 branches, not the whole 2.4 MB
    assert max(c.n_events for c in chunks) * 12 <= 2 * 100_000
    assert sum(c.n_events for c in chunks) == 200_000


def test_iterate_expressions_aliases_cut(rootdir):
    want = reference(rootdir, "nano_a")
    exprs = {
        "r": "sqrt(x**2 + y**2)",
        "lead": "first(Jet_pt)",
        "n": "num(Jet_pt)",
        "s": "sum_of(Jet_pt)",
        "z": "w",
    }
    chunks = list(
        iterate(f"{rootdir}/nano_a.root", exprs, aliases={"w": "2 * y"}, cut="y > 0", step_size=1234)
    )
    sel = want["y"] > 0
    got = {k: np.concatenate([c.arrays[k] for c in chunks]) for k in exprs}
    np.testing.assert_array_equal(np.concatenate([c.entries for c in chunks]), np.nonzero(sel)[0])
    np.testing.assert_allclose(got["r"], np.sqrt(want["x"] ** 2 + want["y"] ** 2)[sel], rtol=1e-6)
    np.testing.assert_array_equal(got["lead"], want["lead"][sel])  # NaN for events without jets
    assert np.isnan(got["lead"]).any()
    np.testing.assert_array_equal(got["n"], want["nJet"][sel])
    np.testing.assert_allclose(got["s"], want["jet_sum"][sel], rtol=1e-5)
    np.testing.assert_array_equal(got["z"], 2 * want["y"][sel])


def test_per_event_functions_match_awkward(rootdir):
    jets = reference(rootdir, "nano_b")["jets"]
    exprs = ["max_of(Jet_pt)", "min_of(Jet_pt)", "mean_of(Jet_pt)", "nth(Jet_pt, 1)", "nth(Jet_pt, 1, -1)"]
    chunks = list(iterate(f"{rootdir}/nano_b.root:Events", exprs, step_size=1000))
    got = {e: np.concatenate([c.arrays[e] for c in chunks]) for e in exprs}
    nan = np.nan
    np.testing.assert_array_equal(got["max_of(Jet_pt)"], ak.to_numpy(ak.fill_none(ak.max(jets, axis=1), nan)))
    np.testing.assert_array_equal(got["min_of(Jet_pt)"], ak.to_numpy(ak.fill_none(ak.min(jets, axis=1), nan)))
    np.testing.assert_allclose(got["mean_of(Jet_pt)"], ak.to_numpy(ak.fill_none(ak.mean(jets, axis=1), nan)))
    second = np.array([row[1] if len(row) > 1 else nan for row in jets.tolist()])
    assert np.isnan(second).any() and not np.isnan(second).all()
    np.testing.assert_array_equal(got["nth(Jet_pt, 1)"], second)
    np.testing.assert_array_equal(got["nth(Jet_pt, 1, -1)"], np.where(np.isnan(second), -1, second))


def test_rntuple_written_by_root(rootdir):
    want = reference(rootdir, "nano_b")  # ROOT converted nano_b's TTree to an RNTuple
    chunks = list(iterate(f"{rootdir}/ntuple.root:Events", ["x", "nJet"], step_size=700))
    assert len(chunks) >= 3
    np.testing.assert_array_equal(np.concatenate([c.arrays["x"] for c in chunks]), want["x"])
    np.testing.assert_array_equal(np.concatenate([c.arrays["nJet"] for c in chunks]), want["nJet"])


# ------------------------------------------------------------------ bad input


def test_jagged_branch_as_feature_names_file_and_branch(rootdir):
    with pytest.raises(ReadError) as err:
        list(iterate(f"{rootdir}/nano_a.root:Events", {"pt": "Jet_pt"}, step_size=1000))
    msg = str(err.value)
    assert "nano_a.root" in msg and "'Jet_pt'" in msg and "jagged" in msg and "first(Jet_pt)" in msg
    assert err.value.branch == "Jet_pt" and err.value.tree == "Events"
    with pytest.raises(ReadError, match="has no branch 'Jet_Pt'.*similar names: Jet_pt"):
        list(iterate(f"{rootdir}/nano_a.root:Events", ["x", "Jet_Pt"]))
    with pytest.raises(ReadError, match="jagged"):  # an expression that stays jagged
        list(iterate(f"{rootdir}/nano_a.root:Events", ["Jet_pt * 2"]))
    with pytest.raises(ReadError, match="has no branch 'nope'"):
        list(iterate(f"{rootdir}/nano_a.root:Events", ["x + nope"]))


def test_fixed_size_array_branch_is_refused(tmp_path, rng):
    with uproot.recreate(tmp_path / "v.root") as f:
        f.mktree("t", {"p3": (np.float64, (3,)), "e": np.float64})
        f["t"].extend({"p3": rng.normal(size=(20, 3)), "e": rng.normal(size=20)})
        f["ntuple"] = {"p3": rng.normal(size=(20, 3)), "e": rng.normal(size=20)}  # uproot writes an RNTuple
    with pytest.raises(ReadError, match=r"branch 'p3'.*fixed-size array \(3,\)"):
        list(iterate(str(tmp_path / "v.root:t"), ["e", "p3"]))
    with pytest.raises(ReadError, match=r"v.root: branch 'p3'.*an array per event"):
        list(iterate(str(tmp_path / "v.root:ntuple"), ["e", "p3"]))
    # uproot evaluates expressions on TTrees only; hepinfer evaluates them on RNTuples itself
    (c,) = iterate(str(tmp_path / "v.root:ntuple"), {"r": "sqrt(abs(e))", "p": "e * 2"})
    with uproot.open(tmp_path / "v.root") as f:
        e = f["ntuple"]["e"].array(library="np")
    np.testing.assert_array_equal(c.arrays["r"], np.sqrt(np.abs(e)))
    np.testing.assert_array_equal(c.arrays["p"], e * 2)


def test_corrupt_basket_fails_mid_file_naming_it(tmp_path, rng):
    write_flat(tmp_path / "ok.root", rng, 1000, extends=4)
    write_flat(tmp_path / "bad.root", rng, 1000, extends=4)
    corrupt_last_basket(tmp_path / "bad.root", "b")
    files = [str(tmp_path / "ok.root"), str(tmp_path / "bad.root"), str(tmp_path / "ok.root")]
    with pytest.raises(ReadError, match="bad.root.*truncated or corrupt") as err:
        list(iterate(files, ["a", "b"], step_size=250))
    # the broken branch and the entries of the failed chunk are named
    assert err.value.branch == "b" and err.value.file.endswith("bad.root")
    assert "branch 'b' of tree 'Events' cannot be read in entries 750-999" in str(err.value)
    with pytest.raises(ReadError, match="branch 'b'.*entries 750-999"):  # in an expression too
        list(iterate(files[1:], ["a + 2 * b"], step_size=250))
    with pytest.raises(ReadError, match="branch 'b'"):  # a chunk size in bytes
        list(iterate(files[1:], ["a", "b"], step_size="1 kB"))
    failures: list = []
    chunks = list(iterate(files, ["a", "b"], step_size=250, on_error="skip", failures=failures))
    assert [f.source.index for f in failures] == [1]
    assert 0 < failures[0].entry < 1000  # the first baskets of bad.root were read
    assert sum(c.n_events for c in chunks if c.source.index != 1) == 2000


# ------------------------------------------------------------------ scikit-hep-testdata


def test_skhep_hzz_flat_branches():
    path = skhep_file("uproot-HZZ.root")
    direct = uproot.open(path)["events"].arrays(["MET_px", "MET_py", "NMuon"], library="np")
    chunks = list(iterate(f"{path}:events", ["MET_px", "MET_py", "NMuon"], step_size=500))
    for k, v in direct.items():
        np.testing.assert_array_equal(np.concatenate([c.arrays[k] for c in chunks]), v)
    with pytest.raises(ReadError, match="Muon_Px.*jagged"):
        list(iterate(f"{path}:events", ["Muon_Px"]))


def test_skhep_nanoaod_jagged_jets():
    path = skhep_file("nanoAOD_2015_CMS_Open_Data_ttbar.root")
    jets = uproot.open(path)["Events"]["Jet_pt"].array()
    (c,) = iterate(f"{path}:Events", ["max_of(Jet_pt)", "run", "event"], step_size=10**7)
    np.testing.assert_array_equal(
        c.arrays["max_of(Jet_pt)"], ak.to_numpy(ak.fill_none(ak.max(jets, axis=1), np.nan))
    )


def test_skhep_rntuple():
    path = skhep_file("ntpl001_staff_rntuple_v1-0-0-0.root")
    direct = uproot.open(path)["Staff"].arrays(["Age", "Cost"])
    chunks = list(iterate(f"{path}:Staff", ["Age", "Cost"], step_size=1000))
    np.testing.assert_array_equal(
        np.concatenate([c.arrays["Age"] for c in chunks]), ak.to_numpy(direct["Age"])
    )


# ------------------------------------------------------------------ bad expressions


def test_bad_expressions_give_clear_errors(tmp_path, rng):
    """A syntax error or an unknown function fails before any file is read; a missing branch
    names the file, the branch and the expression; jagged branches with different counts in an
    expression name the expression and the entries."""
    n = 400
    jets = rng.poisson(2, n)
    muons = jets.copy()
    muons[137] += 1  # one event where the muons and jets differ in number
    jet_pt = ak.unflatten(rng.exponential(30, jets.sum()).astype(np.float32), jets)
    with uproot.recreate(tmp_path / "j.root") as f:
        f.mktree("Events", {"x": np.float32, "Jet_pt": "var * float32", "Muon_pt": "var * float32"})
        f["Events"].extend(
            {
                "x": rng.normal(size=n).astype(np.float32),
                "Jet_pt": jet_pt,
                "Muon_pt": ak.unflatten(rng.exponential(10, muons.sum()).astype(np.float32), muons),
            }
        )
    path = str(tmp_path / "j.root:Events")
    with pytest.raises(
        hepinfer.InputError, match=r"feature 'r': 'sqrt\(x\*\*2 \+\)' is not a valid expression"
    ):
        list(iterate(str(tmp_path / "nothing.root"), {"r": "sqrt(x**2 +)"}))  # before looking at the files
    with pytest.raises(
        hepinfer.InputError, match=r"'mx\(Jet_pt\)' calls mx\(\).*per-event functions num, first"
    ):
        list(iterate(path, ["mx(Jet_pt)"]))
    with pytest.raises(hepinfer.InputError, match=r"alias 'a': 'x \+ \+\* 1' is not a valid expression"):
        list(iterate(path, ["a"], aliases={"a": "x + +* 1"}))
    with pytest.raises(hepinfer.InputError, match=r"cut: 'x >' is not a valid expression"):
        list(iterate(path, ["x"], cut="x >"))
    with pytest.raises(
        ReadError,
        match=r"j\.root: tree 'Events' has no branch 'Jet_eta' \(needed for feature 'h' in "
        r"'sum_of\(Jet_pt \* Jet_eta\)'\); similar names: Jet_pt",
    ) as err:
        list(iterate(path, {"h": "sum_of(Jet_pt * Jet_eta)"}))
    assert err.value.branch == "Jet_eta" and err.value.file.endswith("j.root")
    # the same jet counts broadcast; different counts in event 137 are named with the expression
    (ok,) = iterate(path, {"s": "sum_of(Jet_pt * Jet_pt)"})
    np.testing.assert_array_equal(ok.arrays["s"], ak.to_numpy(ak.sum(jet_pt * jet_pt, axis=1)))
    with pytest.raises(
        ReadError,
        match=r"j\.root: the expression 'sum_of\(Jet_pt \* Muon_pt\)' cannot be evaluated on tree 'Events' in entries "
        r"0-399 \(it combines jagged branches that hold different numbers of values in an event",
    ):
        list(iterate(path, {"s": "sum_of(Jet_pt * Muon_pt)"}))
    with pytest.raises(
        ReadError, match=r"'sum_of\(Jet_pt \* Muon_pt\)' cannot be evaluated.*entries 100-199"
    ):
        list(iterate(path, {"s": "sum_of(Jet_pt * Muon_pt)"}, step_size=100))


def test_rntuple_expressions_aliases_cut_equal_ttree(tmp_path, rng, rootdir):
    """uproot evaluates expressions on TTrees only: on RNTuples hepinfer evaluates them itself,
    with the same syntax and functions, giving what the TTree gives."""
    n = 2500
    counts = rng.poisson(2, n)
    data = {
        "x": rng.normal(size=n).astype(np.float32),
        "y": rng.uniform(-2, 2, n),
        "Jet_pt": ak.unflatten(rng.exponential(30, counts.sum()).astype(np.float32), counts),
    }
    with uproot.recreate(tmp_path / "t.root") as f:
        f.mktree("tree", {"x": np.float32, "y": np.float64, "Jet_pt": "var * float32"})
        f["tree"].extend(data)
        f["ntuple"] = data
    exprs = {
        "r": "sqrt(x**2 + y**2)",
        "lead": "first(Jet_pt)",
        "n": "num(Jet_pt)",
        "w": "w",
        "s": "sum_of(Jet_pt)",
    }
    kw = {
        "aliases": {"w": "where(y > 0, 2 * v, x)", "v": "y"},
        "cut": "(num(Jet_pt) > 0) & (w < 1)",
        "step_size": 700,
    }
    t = list(iterate(str(tmp_path / "t.root:tree"), exprs, **kw))
    r = list(iterate(str(tmp_path / "t.root:ntuple"), exprs, **kw))
    assert [c.entry_start for c in r] == [c.entry_start for c in t] == [0, 700, 1400, 2100]
    for k in exprs:
        got, want = (np.concatenate([c.arrays[k] for c in chunks]) for chunks in (r, t))
        assert got.dtype == want.dtype and len(got) > 1000
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(
        np.concatenate([c.entries for c in r]), np.concatenate([c.entries for c in t])
    )
    with pytest.raises(
        ReadError, match=r"t\.root: tree 'ntuple' has no branch 'z' \(needed for feature 'r' in 'x \+ z'\)"
    ):
        list(iterate(str(tmp_path / "t.root:ntuple"), {"r": "x + z"}))
    # the RNTuple ROOT itself wrote, scored with expressions
    want = reference(rootdir, "nano_b")
    (c,) = iterate(
        f"{rootdir}/ntuple.root:Events", {"d": "x - 2 * y", "j": "nJet"}, cut="nJet > 1", step_size=10**6
    )
    sel = want["nJet"] > 1
    np.testing.assert_array_equal(c.arrays["d"], (want["x"] - 2 * want["y"])[sel])
    np.testing.assert_array_equal(c.entries, np.flatnonzero(sel))
