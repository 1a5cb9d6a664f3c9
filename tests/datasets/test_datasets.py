"""hepinfer.datasets: Pythia 8 + FastJet jet samples, the toy generator and jet substructure.

* A fresh small Pythia sample (20 W + 20 QCD jets) is generated once per module into a temporary
  cache: schema, pT window, |eta|, four-momentum closure, offsets, reproducibility (same seed ->
  same arrays, other seed -> other jets), cache hits and the command line.
* The committed sample: W mass peak, tau21 separation, soft-drop mass, same closure checks.
* N-subjettiness (beta = 1, exclusive-kT axes) against a brute-force pure-Python reference and
  FastJet-contrib's Nsubjettiness; soft-drop mass against FastJet-contrib's SoftDrop; edge cases
  (empty, one- and two-particle jets, collinear particles).
* The toy generator has exactly the Pythia schema.
"""

from __future__ import annotations

import math
import os
import time

import numpy as np
import pytest

import hepinfer.datasets as hd
from hepinfer.datasets import schema
from hepinfer.datasets.pythia import sample_key
from hepinfer.datasets.substructure import (
    exclusive_kt_axes,
    jet_substructure,
    n_subjettiness,
    soft_drop_mass,
)

ak = pytest.importorskip("awkward")
uproot = pytest.importorskip("uproot")

N_SMALL = 20
SEED = 12345
PT_RANGE = (300.0, 500.0)


# ----------------------------------------------------------------------------------------------
# helpers


def _p4(columns, j):
    """Float64 (n x 4) px, py, pz, E of jet j's constituents from a numpy column dict."""
    lo, hi = columns["constituent_offsets"][j], columns["constituent_offsets"][j + 1]
    pt = columns["constituent_pt"][lo:hi].astype(np.float64)
    eta = columns["constituent_eta"][lo:hi].astype(np.float64)
    phi = columns["constituent_phi"][lo:hi].astype(np.float64)
    e = columns["constituent_energy"][lo:hi].astype(np.float64)
    return np.column_stack([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), e])


def _random_jet(rng, n, spread=0.3):
    """n massive particles scattered around a random axis (px, py, pz, E)."""
    pt = rng.exponential(20.0, n) + 0.5
    eta = rng.uniform(-2, 2) + rng.normal(0, spread, n)
    phi = rng.uniform(-np.pi, np.pi) + rng.normal(0, spread, n)
    m = rng.choice([0.0, 0.13957, 0.493677], n)
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    return np.column_stack([px, py, pz, np.sqrt(px**2 + py**2 + pz**2 + m**2)])


def _rap_phi(v):
    return 0.5 * math.log((v[3] + v[2]) / (v[3] - v[2])), math.atan2(v[1], v[0])


def _dr(a, b):
    ya, pa = _rap_phi(a)
    yb, pb = _rap_phi(b)
    dphi = abs(pa - pb)
    dphi = min(dphi, 2 * math.pi - dphi)
    return math.hypot(ya - yb, dphi)


def _reference_tau(particles, n_axes, r0=0.8):
    """Brute force: pairwise exclusive-kT clustering by full search, then the normalised measure."""
    parts = [tuple(float(x) for x in p) for p in particles]
    if len(parts) <= n_axes:
        return 0.0
    jets = list(parts)
    while len(jets) > n_axes:
        best = None
        for i in range(len(jets)):
            for j in range(i + 1, len(jets)):
                kt2 = min(jets[i][0] ** 2 + jets[i][1] ** 2, jets[j][0] ** 2 + jets[j][1] ** 2)
                d = kt2 * _dr(jets[i], jets[j]) ** 2
                if best is None or d < best[0]:
                    best = (d, i, j)
        _, i, j = best
        merged = tuple(a + b for a, b in zip(jets[i], jets[j]))
        jets = [x for k, x in enumerate(jets) if k not in (i, j)] + [merged]
    pts = [math.hypot(p[0], p[1]) for p in parts]
    num = sum(pt * min(_dr(p, a) for a in jets) for pt, p in zip(pts, parts))
    return num / (r0 * sum(pts))


def _fastjet_reference(jets_p4):
    """FastJet-contrib tau1..3 (KT_Axes, beta 1, R0 0.8) and soft-drop mass (z 0.1, beta 0) per jet."""
    fastjet = pytest.importorskip("fastjet")
    counts = [len(p) for p in jets_p4]
    flat = np.concatenate(jets_p4)
    events = ak.zip(
        {k: ak.unflatten(flat[:, i].copy(), counts) for i, k in enumerate(["px", "py", "pz", "E"])}
    )
    seq = fastjet.ClusterSequence(events, fastjet.JetDefinition(fastjet.cambridge_algorithm, 999.0))
    taus = ak.to_numpy(seq.njettiness(njets=[1, 2, 3], axes_definition="KT_Axes", beta=1.0, R0=0.8))
    sd = ak.to_numpy(
        seq.exclusive_jets_softdrop_grooming(njets=1, beta=0.0, symmetry_cut=0.1, R0=0.8).msoftdrop
    )
    return np.asarray(taus).reshape(len(jets_p4), 3), np.asarray(sd).reshape(-1)


def _check_schema(tree_or_array_fields, types):
    assert list(tree_or_array_fields) == list(schema.JET_BRANCHES) + list(schema.CONSTITUENT_BRANCHES)
    for name, dt in {**schema.JET_BRANCHES, **schema.CONSTITUENT_BRANCHES}.items():
        assert types[name] == np.dtype(dt), name


def _check_sample(columns, pt_range, eta_max=2.5):
    """Window, acceptance, offsets, substructure ranges and four-momentum closure."""
    n = len(columns["label"])
    off = columns["constituent_offsets"]
    assert len(off) == n + 1 and off[0] == 0 and off[-1] == len(columns["constituent_pt"])
    assert np.array_equal(np.diff(off), columns["n_constituents"])
    assert (columns["n_constituents"] >= 1).all()
    assert ((columns["jet_pt"] >= pt_range[0]) & (columns["jet_pt"] < pt_range[1])).all()
    assert (np.abs(columns["jet_eta"]) < eta_max).all()
    assert (np.abs(columns["jet_phi"]) <= np.pi).all()
    for t in ("tau1", "tau2", "tau3"):
        assert (columns[t] >= 0).all() and (columns[t] < 2).all()
    ok = columns["tau1"] > 0
    assert np.allclose(columns["tau21"][ok], (columns["tau2"] / columns["tau1"])[ok], rtol=1e-6)
    assert (columns["jet_sd_mass"] <= columns["jet_mass"] * (1 + 1e-5) + 1e-3).all()
    for j in range(n):
        p4 = _p4(columns, j)
        pt = np.hypot(p4[:, 0], p4[:, 1])
        assert (np.diff(pt) <= 1e-3).all(), "constituents are sorted by decreasing pT"
        total = p4.sum(axis=0)
        jpt, jeta, jphi, je = (float(columns[k][j]) for k in ("jet_pt", "jet_eta", "jet_phi", "jet_energy"))
        jet = np.array([jpt * np.cos(jphi), jpt * np.sin(jphi), jpt * np.sinh(jeta), je])
        tol = 2e-5 * je
        assert np.abs(total - jet).max() < tol, (j, total, jet)
        m2 = total[3] ** 2 - (total[:3] ** 2).sum()
        assert abs(m2 - float(columns["jet_mass"][j]) ** 2) < 1e-4 * je**2


# ----------------------------------------------------------------------------------------------
# a fresh Pythia sample


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """(cache root, path, numpy columns, seconds) of 20 W + 20 QCD jets generated now."""
    pytest.importorskip("pythia8mc")
    pytest.importorskip("fastjet")
    root = tmp_path_factory.mktemp("hepinfer-cache")
    old = os.environ.get("HEPINFER_CACHE")
    os.environ["HEPINFER_CACHE"] = str(root)
    try:
        start = time.perf_counter()
        path = hd.generate_jets(N_SMALL, N_SMALL, pt_range=PT_RANGE, seed=SEED, progress=False)
        seconds = time.perf_counter() - start
    finally:
        if old is None:
            del os.environ["HEPINFER_CACHE"]
        else:
            os.environ["HEPINFER_CACHE"] = old
    return root, path, hd.load_jets(path, library="np"), seconds


@pytest.mark.slow
def test_pythia_sample_schema_window_and_closure(fresh):
    root, path, columns, _ = fresh
    assert path.parent == root / "datasets" and path.exists()
    with uproot.open(path) as f:
        tree = f[schema.TREE_NAME]
        assert tree.num_entries == 2 * N_SMALL
        names = [b for b in tree.keys() if b in schema.JET_BRANCHES or b in schema.CONSTITUENT_BRANCHES]
        _check_schema(names, {b: tree[b].interpretation.numpy_dtype if b in schema.JET_BRANCHES
                              else tree[b].interpretation.content.numpy_dtype for b in names})  # fmt: skip
    assert np.bincount(columns["label"]).tolist() == [N_SMALL, N_SMALL]
    assert (columns["weight"] == 1.0).all()
    for label in (0, 1):
        events = columns["event"][columns["label"] == label]
        assert len(np.unique(events)) == len(events)
    _check_sample(columns, PT_RANGE)
    # Pythia particles: charges are integers consistent with the pdgId sign conventions
    assert set(np.unique(columns["constituent_charge"])) <= {-2, -1, 0, 1, 2}
    assert not np.isin(np.abs(columns["constituent_pdgId"]), [12, 14, 16]).any(), "no neutrinos"
    charged_pions = np.abs(columns["constituent_pdgId"]) == 211
    assert (np.abs(columns["constituent_charge"][charged_pions]) == 1).all()
    photons = columns["constituent_pdgId"] == 22
    assert (columns["constituent_charge"][photons] == 0).all()
    # the awkward view holds the same numbers
    jets = hd.load_jets(path)
    assert len(jets) == 2 * N_SMALL
    assert ak.num(jets.constituent_pt).to_list() == columns["n_constituents"].tolist()
    assert np.array_equal(ak.to_numpy(ak.flatten(jets.constituent_pdgId)), columns["constituent_pdgId"])


@pytest.mark.slow
def test_pythia_same_seed_same_content_other_seed_differs(fresh, monkeypatch, tmp_path):
    root, _, columns, _ = fresh
    monkeypatch.setenv("HEPINFER_CACHE", str(root))
    # regenerated in two worker processes (one per chunk): the same arrays
    again = hd.generate_jets(N_SMALL, N_SMALL, pt_range=PT_RANGE, seed=SEED, progress=False, cache=False,
                             output=tmp_path / "again.root", n_workers=2)  # fmt: skip
    redo = hd.load_jets(again, library="np")
    assert redo.keys() == columns.keys()
    for name in columns:
        assert np.array_equal(redo[name], columns[name], equal_nan=True), name
    other = hd.load_jets(hd.generate_jets(N_SMALL, N_SMALL, pt_range=PT_RANGE, seed=SEED + 1, progress=False),
                         library="np")  # fmt: skip
    assert not np.array_equal(np.sort(other["jet_pt"]), np.sort(columns["jet_pt"]))
    _check_sample(other, PT_RANGE)


@pytest.mark.slow
def test_pythia_cache_hit_and_output_copy(fresh, monkeypatch, tmp_path):
    root, path, _, seconds = fresh
    monkeypatch.setenv("HEPINFER_CACHE", str(root))
    mtime = path.stat().st_mtime_ns
    start = time.perf_counter()
    hit = hd.generate_jets(N_SMALL, N_SMALL, pt_range=PT_RANGE, seed=SEED, progress=False)
    elapsed = time.perf_counter() - start
    assert hit == path and path.stat().st_mtime_ns == mtime
    assert elapsed < min(1.0, seconds / 2)
    copy = hd.generate_jets(
        N_SMALL, N_SMALL, pt_range=PT_RANGE, seed=SEED, progress=False, output=tmp_path / "x.root"
    )
    assert copy == tmp_path / "x.root" and copy.read_bytes() == path.read_bytes()
    # every content-changing parameter changes the cache key
    base = dict(process="W", n_signal=20, n_background=20, pt_range=[300.0, 500.0], seed=1, eta_max=2.5,
                pt_hat_min=250.0, match_radius=0.6)  # fmt: skip
    keys = {sample_key(**base)}
    for name, value in [("process", "top"), ("n_signal", 21), ("n_background", 19), ("pt_range", [300.0, 600.0]),
                        ("seed", 2), ("eta_max", 2.0), ("pt_hat_min", 200.0), ("match_radius", 0.4)]:  # fmt: skip
        keys.add(sample_key(**{**base, name: value}))
    assert len(keys) == 9


@pytest.mark.slow
def test_command_line_generate_and_info(fresh, monkeypatch, tmp_path, capsys):
    root, path, _, _ = fresh
    monkeypatch.setenv("HEPINFER_CACHE", str(root))
    out = tmp_path / "cli.root"
    argv = ["generate", "--signal", str(N_SMALL), "--background", str(N_SMALL), "--seed", str(SEED),
            "--no-progress", "-o", str(out)]  # fmt: skip
    assert hd.main(argv) == 0
    assert out.read_bytes() == path.read_bytes()
    assert hd.main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"jets         {2 * N_SMALL}" in text and "W " in text and "QCD" in text


def test_generate_rejects_bad_arguments():
    with pytest.raises(ValueError, match="process"):
        hd.generate_jets(1, 1, process="Z")
    with pytest.raises(ValueError, match="pt_range"):
        hd.generate_jets(1, 1, pt_range=(500.0, 300.0))
    with pytest.raises(ValueError, match="n_signal"):
        hd.generate_jets(0, 0)
    with pytest.raises(ValueError, match="n_signal"):
        hd.generate_jets(-1, 3)


def test_command_line_reports_errors(capsys, tmp_path):
    assert hd.main(["generate", "--pt-min", "500", "--pt-max", "300", "--no-progress"]) == 1
    assert "pt_range" in capsys.readouterr().err
    assert hd.main(["info", str(tmp_path / "missing.root")], prog="hepinfer") == 1
    assert capsys.readouterr().err.startswith("hepinfer: error:")


# ----------------------------------------------------------------------------------------------
# the committed sample


@pytest.fixture(scope="module")
def committed():
    path = hd.default_sample_path()
    assert path.exists(), f"{path} is missing"
    return hd.load_jets(library="np")


def test_committed_sample_is_small_and_complete(committed):
    path = hd.default_sample_path()
    assert path.stat().st_size < 6 * 2**20
    args = hd.DEFAULT_SAMPLE_ARGS
    assert np.bincount(committed["label"]).tolist() == [args["n_background"], args["n_signal"]]
    _check_sample(committed, args["pt_range"])
    with uproot.open(path) as f:
        tree = f[schema.TREE_NAME]
        names = [b for b in tree.keys() if b in schema.JET_BRANCHES or b in schema.CONSTITUENT_BRANCHES]
        _check_schema(names, {b: tree[b].interpretation.numpy_dtype if b in schema.JET_BRANCHES
                              else tree[b].interpretation.content.numpy_dtype for b in names})  # fmt: skip


def test_committed_sample_physics(committed):
    w = committed["label"] == 1
    qcd = committed["label"] == 0
    assert 65.0 < np.median(committed["jet_mass"][w]) < 95.0
    assert 70.0 < np.median(committed["jet_sd_mass"][w]) < 90.0
    assert committed["jet_mass"][qcd].mean() < committed["jet_mass"][w].mean()
    assert np.median(committed["jet_sd_mass"][qcd]) < 50.0
    assert np.nanmedian(committed["tau21"][w]) < np.nanmedian(committed["tau21"][qcd])
    # W jets in the 65-95 GeV mass window: far more W than QCD
    in_window = (committed["jet_sd_mass"] > 65) & (committed["jet_sd_mass"] < 95)
    assert in_window[w].mean() > 2 * in_window[qcd].mean()


def test_committed_sample_substructure_matches_recomputation(committed, rng):
    """The stored taus / soft-drop mass equal a recomputation from the stored float32 constituents."""
    picks = rng.choice(len(committed["label"]), 200, replace=False)
    taus, sd = jet_substructure([_p4(committed, j) for j in picks])
    stored = np.column_stack([committed[k][picks] for k in ("tau1", "tau2", "tau3")])
    # the stored values come from the generator's float64 particles; rounding them to float32 can
    # flip a discontinuous choice (a kT axis, a soft-drop step at z = 0.1) in a rare jet, so a
    # few percent of jets may differ; the rest must agree to float32 precision
    tau_ok = np.isclose(taus, stored, rtol=1e-3, atol=1e-4).all(axis=1)
    sd_ok = np.abs(sd - committed["jet_sd_mass"][picks]) < 1e-4 * committed["jet_energy"][picks] + 1e-3
    assert tau_ok.mean() >= 0.97 and sd_ok.mean() >= 0.97, (tau_ok.mean(), sd_ok.mean())


# ----------------------------------------------------------------------------------------------
# substructure


def test_n_subjettiness_matches_brute_force(rng):
    for n in (1, 2, 3, 4, 5, 8, 17, 30):
        p4 = _random_jet(rng, n)
        ours = n_subjettiness(p4, 3)
        ref = [_reference_tau(p4, k) for k in (1, 2, 3)]
        assert np.allclose(ours, ref, rtol=1e-10, atol=1e-12), (n, ours, ref)


def test_n_subjettiness_and_soft_drop_match_fastjet_contrib(rng, committed):
    jets = [_random_jet(rng, int(n)) for n in rng.integers(2, 60, 30)]
    jets += [_p4(committed, int(j)) for j in rng.choice(len(committed["label"]), 30, replace=False)]
    ref_taus, ref_sd = _fastjet_reference(jets)
    taus, sd = jet_substructure(jets)
    assert np.allclose(taus, ref_taus, rtol=1e-10, atol=1e-12)
    # compared as m^2: a groomed jet of one massless particle has m^2 at rounding level
    # (FastJet gave 1.2e-7 GeV where hepinfer gives 0), i.e. m ~ sqrt(eps) E, not ~eps
    energy = np.array([j[:, 3].sum() for j in jets])
    # FastJet reports a space-like groomed jet (m^2 < 0 from rounding) as -sqrt(-m^2); hepinfer as 0
    ref_sd = np.maximum(ref_sd, 0.0)
    assert np.allclose(sd**2, ref_sd**2, rtol=2e-9, atol=1e-12 * energy**2)
    # the one-jet functions give the same numbers as the batched form the generators use
    for j in rng.choice(len(jets), 8, replace=False):
        assert np.array_equal(n_subjettiness(jets[j]), taus[j])
        assert soft_drop_mass(jets[j]) == sd[j]


def test_substructure_edge_cases(rng):
    assert n_subjettiness(np.zeros((0, 4))).tolist() == [0.0, 0.0, 0.0]
    assert soft_drop_mass(np.zeros((0, 4))) == 0.0
    one = _random_jet(rng, 1)
    assert n_subjettiness(one).tolist() == [0.0, 0.0, 0.0]
    mass = math.sqrt(max(one[0, 3] ** 2 - (one[0, :3] ** 2).sum(), 0.0))
    assert soft_drop_mass(one) == pytest.approx(mass, abs=1e-9)
    two = _random_jet(rng, 2)
    taus = n_subjettiness(two)
    assert taus[0] > 0 and taus[1] == 0.0 and taus[2] == 0.0
    # two particles: tau1 analytic, the axis being the sum of the two
    axis = two.sum(axis=0)
    pts = np.hypot(two[:, 0], two[:, 1])
    expected = sum(pt * _dr(p, axis) for pt, p in zip(pts, two)) / (0.8 * pts.sum())
    assert taus[0] == pytest.approx(expected, rel=1e-12)
    # exactly collinear massless particles: tau1 = 0
    direction = np.array([0.3, -0.4, 1.2])
    collinear = np.array([[*(s * direction), s * np.linalg.norm(direction)] for s in (10.0, 25.0, 3.0)])
    assert n_subjettiness(collinear)[0] == pytest.approx(0.0, abs=1e-7)
    # the kT axes: N axes sum to the jet, each an exclusive subjet
    p4 = _random_jet(rng, 12)
    for k in (1, 2, 3, 12, 15):
        axes = exclusive_kt_axes(p4, k)
        assert len(axes) == min(k, 12)
        assert np.allclose(axes.sum(axis=0), p4.sum(axis=0))
    # soft drop of a hard two-prong pair keeps both prongs, of a very soft second prong drops it
    hard = np.array([[100.0, 0.0, 0.0, 100.0], [0.0, 100.0, 0.0, 100.0]])
    assert soft_drop_mass(hard) == pytest.approx(math.sqrt(2 * 100.0 * 100.0), rel=1e-12)
    soft = np.array([[100.0, 0.0, 0.0, 100.0], [0.0, 5.0, 0.0, 5.0]])
    assert soft_drop_mass(soft) == 0.0


# ----------------------------------------------------------------------------------------------
# toy generator


def test_toy_schema_equals_pythia_schema(committed, tmp_path):
    toy = hd.generate_toy_jets(60, 40, seed=3, library="np", output=tmp_path / "toy.root")
    assert toy.keys() == committed.keys()
    for name in toy:
        assert toy[name].dtype == committed[name].dtype, name
    with uproot.open(tmp_path / "toy.root") as f, uproot.open(hd.default_sample_path()) as g:
        a, b = f[schema.TREE_NAME], g[schema.TREE_NAME]
        assert a.keys() == b.keys()
        assert [a[k].typename for k in a.keys()] == [b[k].typename for k in b.keys()]
    assert np.bincount(toy["label"]).tolist() == [40, 60]
    _check_sample(toy, (300.0, 500.0), eta_max=2.5)
    back = hd.load_jets(tmp_path / "toy.root", library="np")
    for name in toy:
        assert np.array_equal(back[name], toy[name], equal_nan=True), name
    jets = hd.generate_toy_jets(60, 40, seed=3)
    assert jets.fields == hd.load_jets().fields
    assert np.array_equal(ak.to_numpy(jets.jet_mass), toy["jet_mass"])


def test_toy_physics_and_reproducibility():
    a = hd.generate_toy_jets(150, seed=11, library="np")
    b = hd.generate_toy_jets(150, seed=11, library="np")
    c = hd.generate_toy_jets(150, seed=12, library="np")
    for name in a:
        assert np.array_equal(a[name], b[name], equal_nan=True), name
    assert not np.array_equal(a["jet_mass"], c["jet_mass"])
    w, qcd = a["label"] == 1, a["label"] == 0
    assert 70.0 < np.median(a["jet_mass"][w]) < 95.0
    assert np.median(a["jet_mass"][qcd]) < np.median(a["jet_mass"][w])
    assert np.nanmedian(a["tau21"][w]) < np.nanmedian(a["tau21"][qcd])
    small = hd.generate_toy_jets(1, 0, seed=1, library="np", pt_range=(1000.0, 1001.0))
    assert len(small["label"]) == 1 and 1000.0 <= small["jet_pt"][0] < 1001.0
    empty = hd.generate_toy_jets(0, 0, library="np")
    assert len(empty["label"]) == 0 and empty["constituent_offsets"].tolist() == [0]
    for bad in (
        dict(n_signal=-1),
        dict(n_signal=1, pt_range=(10.0, 5.0)),
        dict(n_signal=1, library="pandas"),
    ):
        with pytest.raises(ValueError):
            hd.generate_toy_jets(**bad)


def test_load_jets_rejects_wrong_files(tmp_path):
    with pytest.raises(ValueError, match="library"):
        hd.load_jets(library="pandas")
    with uproot.recreate(tmp_path / "other.root") as f:
        f["Events"] = {"x": np.arange(3)}
    with pytest.raises(ValueError, match="no TTree 'jets'"):
        hd.load_jets(tmp_path / "other.root")
    with uproot.recreate(tmp_path / "partial.root") as f:
        f["jets"] = {"jet_pt": np.arange(3.0)}
    with pytest.raises(ValueError, match="lacks branches"):
        hd.load_jets(tmp_path / "partial.root")


def test_constituent_features_padded_equal_a_plain_numpy_padding():
    """The one home of the constituent features (demo, hepinfer.train): jagged.pad's padding equals
    a slot-by-slot numpy reference, with the hardest max_particles kept and Δφ wrapped."""
    from hepinfer.datasets import load_jets
    from hepinfer.datasets.schema import CONSTITUENT_FEATURES, constituent_features, padded_constituents

    cols = load_jets(library="np")
    for max_particles in (1, 7, 64):
        counts, values = constituent_features(cols, max_particles)
        x, mask = padded_constituents(cols, max_particles)
        offsets = cols["constituent_offsets"]
        n = len(offsets) - 1
        want = np.zeros((n, max_particles, len(CONSTITUENT_FEATURES)), np.float32)
        for j in range(0, n, 97):  # a sample of jets, slot by slot
            lo = offsets[j]
            for s in range(min(int(offsets[j + 1] - lo), max_particles)):
                pt, eta = float(cols["constituent_pt"][lo + s]), float(cols["constituent_eta"][lo + s])
                dphi = float(cols["constituent_phi"][lo + s]) - float(cols["jet_phi"][j])
                want[j, s] = [
                    pt / float(cols["jet_pt"][j]),
                    np.log(max(pt, 1e-3)),
                    np.log(max(float(cols["constituent_energy"][lo + s]), 1e-3)),
                    eta - float(cols["jet_eta"][j]),
                    np.remainder(dphi + np.pi, 2 * np.pi) - np.pi,
                    cols["constituent_charge"][lo + s],
                ]
            np.testing.assert_array_equal(x[j], want[j])
        np.testing.assert_array_equal(mask.sum(axis=1), np.minimum(np.diff(offsets), max_particles))
        assert (
            x.dtype == np.float32
            and mask.dtype == bool
            and counts.sum() == sum(len(v) for v in values.values()) // 6
        )
