"""Jagged arrays: hepinfer.jagged must agree with awkward's own operations and `vector`.

Every test draws fresh random jagged arrays (seed printed by the `rng` fixture) with empty
events, ties and NaN keys, for float32/float64 content, int32/uint32/int64 offsets, and
sliced arrays whose offsets do not start at 0. References: ak.argsort + slicing,
ak.pad_none + ak.fill_none, ak.sum/max/min/mean/count, the `vector` package, ak.cartesian.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

import hepinfer
import hepinfer.jagged as hj

ak = pytest.importorskip("awkward")

INDEX = {"int32": "Index32", "uint32": "IndexU32", "int64": "Index64"}


def make_jagged(
    rng, n_events, dtype="float64", offsets="int64", mean=3.0, ties=False, nans=False, fields=None
):
    """A random ak.Array of lists (of records when `fields` is given) with the given offset type."""
    counts = rng.poisson(mean, n_events)
    counts[rng.random(n_events) < 0.15] = 0  # plenty of empty events
    off = np.zeros(n_events + 1, dtype=np.int64)
    np.cumsum(counts, out=off[1:])
    n = int(off[-1])

    def column():
        x = rng.exponential(30.0, n) if not ties else rng.integers(0, 4, n).astype(float)
        if nans and n:
            x[rng.random(n) < 0.1] = np.nan
        return x.astype(dtype)

    index = getattr(ak.index, INDEX[offsets])(off.astype(offsets))
    if fields is None:
        content = ak.contents.NumpyArray(column())
    else:
        content = ak.contents.RecordArray([ak.contents.NumpyArray(column()) for _ in fields], list(fields))
    return ak.Array(ak.contents.ListOffsetArray(index, content))


def sliced(array, rng):
    """A slice that keeps the whole content buffer: offsets no longer start at 0."""
    start = int(rng.integers(1, max(2, len(array) // 3)))
    out = array[start:]
    layout = ak.to_layout(out)
    assert isinstance(layout, ak.contents.ListOffsetArray)
    return out


def awkward_order(x, ascending):
    """ak.argsort with NaN keys last (awkward puts them first): NaN -> -inf/+inf, stable."""
    filled = ak.where(np.isnan(x), np.inf if ascending else -np.inf, x)
    return ak.argsort(filled, axis=1, ascending=ascending, stable=True)


def padded(x, k, fill):
    p = ak.pad_none(x, k, axis=1, clip=True)
    return ak.to_numpy(ak.fill_none(p, fill)), ~ak.to_numpy(ak.is_none(p, axis=1))


CASES = [
    ("float64", "int64"),
    ("float32", "int32"),
    ("float32", "uint32"),
    ("float64", "int32"),
]


# --- views, zero-copy, validation -----------------------------------------------------------


@pytest.mark.parametrize("dtype,offsets", CASES)
def test_view_is_zero_copy(rng, dtype, offsets):
    jets = sliced(make_jagged(rng, 50, dtype, offsets, fields=["pt", "eta"]), rng)
    layout = ak.to_layout(jets)
    v = hj.view(jets)
    assert v.n_events == len(jets)
    assert v.names == ["pt", "eta"]
    assert v.offsets_address == np.asarray(layout.offsets.data).ctypes.data
    for i, f in enumerate(["pt", "eta"]):
        buf = np.asarray(layout.content.content(f).data)
        assert v.column_address(i) == buf.ctypes.data
        assert v.column_dtypes[i] == dtype
    # A plain list of numbers and a numpy pair are read in place too.
    pt = jets.pt
    assert hj.view(pt).column_address(0) == np.asarray(ak.to_layout(pt).content.data).ctypes.data
    off = np.asarray(layout.offsets.data)
    content = np.asarray(layout.content.content("pt").data)
    v2 = hj.view((off, content))
    assert v2.offsets_address == off.ctypes.data and v2.column_address(0) == content.ctypes.data
    assert v2.content_begin == int(off[0]) and v2.content_end == int(off[-1])


def test_record_of_lists_and_interleaved_numpy(rng):
    # uproot's t.arrays(["Jet_pt", ...]) shape: a record whose fields are separate lists.
    jets = make_jagged(rng, 40, fields=["pt", "eta"])
    rec = ak.Array({"Jet_pt": jets.pt, "Jet_eta": jets.eta, "nJet": ak.num(jets)})
    v = hj.view(rec)
    assert v.names == ["Jet_pt", "Jet_eta"]  # the integer counter is not a list of floats: skipped
    values, mask = hj.leading(rec, k=3, by="Jet_pt")
    ref, ref_mask = padded(jets.pt[awkward_order(jets.pt, False)], 3, 0.0)
    np.testing.assert_array_equal(values["Jet_pt"], ref)
    np.testing.assert_array_equal(mask, ref_mask)
    # (offsets, 2-D content): columns are strided views, still no copy.
    off = np.asarray(ak.to_layout(jets).offsets.data)
    content = np.stack([ak.to_numpy(ak.flatten(jets.pt)), ak.to_numpy(ak.flatten(jets.eta))], axis=1)
    v3 = hj.view((off, content), fields=["pt", "eta"])
    assert v3.column_address(1) == content.ctypes.data + content.itemsize
    vals3, mask3, index3 = hj.leading((off, content), k=3, by="column 0", return_index=True)
    ref, ref_mask = padded(jets.pt[awkward_order(jets.pt, False)], 3, 0.0)
    np.testing.assert_array_equal(vals3["column 0"], ref)
    np.testing.assert_array_equal(mask3, ref_mask)
    np.testing.assert_array_equal(index3, padded(awkward_order(jets.pt, False), 3, -1)[0])


def test_selected_and_reordered_arrays(rng):
    # Cuts inside the lists (indexed content) and event reordering (ListArray) are accepted:
    # they are packed first (a copy), with the same results as awkward.
    jets = make_jagged(rng, 200, "float32", "int64", nans=True, fields=["pt", "eta"])
    for selected in (jets[jets.pt > 20], jets[::-1], jets[rng.permutation(len(jets))][:, ::-1]):
        values, mask = hj.leading(selected, k=3, by="pt")
        for f in ("pt", "eta"):
            ref, ref_mask = padded(selected[f][awkward_order(selected.pt, False)], 3, 0.0)
            np.testing.assert_array_equal(values[f], ref)
            np.testing.assert_array_equal(mask, ref_mask)
        np.testing.assert_allclose(
            hj.event_sum(selected, "eta"), ak.to_numpy(ak.sum(selected.eta, axis=1)), rtol=1e-5
        )


def test_bad_inputs_raise_input_error(rng):
    content = rng.normal(size=10)
    with pytest.raises(hepinfer.InputError, match="offsets decrease at event 1"):
        hj.view((np.array([0, 4, 3, 10]), content))
    with pytest.raises(
        hepinfer.InputError, match=r"column \"values\" has 10 values but the offsets reach 12 at event 2"
    ):
        hj.view((np.array([0, 4, 9, 12]), content))
    with pytest.raises(hepinfer.InputError, match="negative"):
        hj.view((np.array([-1, 4, 9], dtype=np.int32), content))
    with pytest.raises(hepinfer.InputError, match=r"column \"eta\" has 7 values"):
        hj.view((np.array([0, 4, 9]), {"pt": content, "eta": content[:7]}))
    with pytest.raises(hepinfer.InputError, match="int32, uint32 or int64"):
        hj.view((np.array([0.0, 4.0]), content))
    with pytest.raises(hepinfer.InputError, match="float32 or float64"):
        hj.view((np.array([0, 4]), np.arange(4)))
    with pytest.raises(hepinfer.InputError, match="at least one entry"):
        hj.view((np.zeros(0, dtype=np.int64), content))
    a = ak.Array([[1.0, 2.0], [], [3.0]])
    with pytest.raises(hepinfer.InputError, match="option type"):
        hj.pad(ak.Array([[1.0, None], [2.0]]), 2)
    with pytest.raises(hepinfer.InputError, match="option type"):
        hj.pad(ak.Array([[1.0], None, [2.0]]), 2)
    with pytest.raises(hepinfer.InputError, match="int64"):
        hj.pad(ak.Array([[1, 2], [3]]), 2)
    with pytest.raises(hepinfer.InputError, match="not a jagged array"):
        hj.pad(ak.Array([1.0, 2.0]), 2)
    with pytest.raises(hepinfer.InputError, match="different counts per event"):
        hj.view(ak.Array({"a": a, "b": a[::-1]}))
    with pytest.raises(hepinfer.InputError, match="no field 'mass'"):
        hj.leading(make_jagged(rng, 5, fields=["pt"]), k=2, by="mass")
    with pytest.raises(hepinfer.InputError, match="k must be >= 0"):
        hj.top_k(a, -1)
    with pytest.raises(hepinfer.InputError, match="n_threads"):
        hj.pad(a, 2, n_threads=0)


# --- top-k, pad, leading ----------------------------------------------------------------------


@pytest.mark.parametrize("dtype,offsets", CASES)
@pytest.mark.parametrize("ascending", [False, True])
@pytest.mark.parametrize("ties,nans", [(False, False), (True, True), (False, True)])
def test_top_k_matches_argsort(rng, dtype, offsets, ascending, ties, nans):
    jets = sliced(make_jagged(rng, 300, dtype, offsets, ties=ties, nans=nans, fields=["pt", "eta"]), rng)
    for k in (0, 1, 3, 50):  # 50: more than any event holds
        selected, index = hj.top_k(jets, k, by="pt", ascending=ascending, n_threads=2)
        ref_index = awkward_order(jets.pt, ascending)[:, :k]
        assert ak.to_list(index) == ak.to_list(ref_index)
        assert ak.to_list(ak.num(selected)) == ak.to_list(ak.num(ref_index))
        for f in ("pt", "eta"):
            got = ak.to_numpy(ak.flatten(selected[f]))
            assert got.dtype == np.dtype(dtype)
            np.testing.assert_array_equal(got, ak.to_numpy(ak.flatten(jets[f][ref_index])))
    if not nans:  # without NaN keys awkward's own argsort is the reference as it stands
        _, index = hj.top_k(jets.pt, 2, ascending=ascending)
        ref = ak.argsort(jets.pt, axis=1, ascending=ascending, stable=True)[:, :2]
        assert ak.to_list(index) == ak.to_list(ref)


def test_top_k_numpy_pair_and_large_events(rng):
    # Events with hundreds of objects take the full stable sort path.
    jets = make_jagged(rng, 30, mean=200.0, ties=True, nans=True)
    off = np.asarray(ak.to_layout(jets).offsets.data)
    content = np.asarray(ak.to_layout(jets).content.data)
    for k in (5, 20, 1000):
        (sel_off, sel), (idx_off, idx) = hj.top_k((off, content), k)
        ref = awkward_order(jets, False)[:, :k]
        np.testing.assert_array_equal(idx, ak.to_numpy(ak.flatten(ref)))
        np.testing.assert_array_equal(np.diff(sel_off), ak.to_numpy(ak.num(ref)))
        np.testing.assert_array_equal(sel, ak.to_numpy(ak.flatten(jets[ref])))
        assert sel_off is idx_off or np.array_equal(sel_off, idx_off)


@pytest.mark.parametrize("dtype,offsets", CASES)
@pytest.mark.parametrize("clip", [True, False])
def test_pad_matches_pad_none(rng, dtype, offsets, clip):
    jets = sliced(make_jagged(rng, 200, dtype, offsets, nans=True, fields=["pt", "eta", "phi"]), rng)
    for length in (0, 1, 4, 30):
        values, mask = hj.pad(jets, length, fill=-999.0, clip=clip)
        stacked, mask2 = hj.pad(jets, length, fill=-999.0, clip=clip, stacked=True, n_threads=3)
        np.testing.assert_array_equal(mask, mask2)
        for i, f in enumerate(["pt", "eta", "phi"]):
            # clip=False pads to the longest event: that is clip=True at that length (regular type).
            reach = length if clip else max(length, int(ak.max(ak.num(jets), initial=0)))
            p = ak.pad_none(jets[f], reach, axis=1, clip=True)
            ref = ak.to_numpy(ak.fill_none(p, -999.0)).reshape(len(jets), -1)
            np.testing.assert_array_equal(values[f], ref)
            np.testing.assert_array_equal(stacked[:, :, i], ref)
            assert values[f].dtype == np.dtype(dtype)
            np.testing.assert_array_equal(mask, ~ak.to_numpy(ak.is_none(p, axis=1)).reshape(ref.shape))
    single, _m = hj.pad(jets.pt, 3, dtype=np.float64)
    assert single.dtype == np.float64 and single.shape == (len(jets), 3)


@pytest.mark.parametrize("dtype,offsets", CASES)
def test_leading_is_top_k_then_pad(rng, dtype, offsets):
    fields = ["pt", "eta", "phi", "mass"]
    jets = sliced(make_jagged(rng, 400, dtype, offsets, ties=True, nans=True, fields=fields), rng)
    order = awkward_order(jets.pt, False)
    values, mask, index = hj.leading(jets, k=4, by="pt", fields=fields, return_index=True, n_threads=2)
    stacked, mask2 = hj.leading(jets, k=4, by="pt", fields=fields, stacked=True)
    assert stacked.shape == (len(jets), 4, 4)
    np.testing.assert_array_equal(mask, mask2)
    for i, f in enumerate(fields):
        ref, ref_mask = padded(jets[f][order], 4, 0.0)
        np.testing.assert_array_equal(values[f], ref)
        np.testing.assert_array_equal(stacked[:, :, i], ref)
        np.testing.assert_array_equal(mask, ref_mask)
    ref_index, _ = padded(order, 4, -1)
    np.testing.assert_array_equal(index, ref_index)
    # The key need not be an output column; ascending order; fill value.
    eta_only, _m = hj.leading(jets, k=2, by="pt", fields=["eta"], ascending=True, fill=-5.0)
    assert list(eta_only) == ["eta"]
    ref, _ = padded(jets.eta[awkward_order(jets.pt, True)], 2, -5.0)
    np.testing.assert_array_equal(eta_only["eta"], ref)


def test_empty_batch(rng):
    for offsets in ("int32", "int64"):
        jets = make_jagged(rng, 0, offsets=offsets, fields=["pt", "eta", "phi"])
        values, mask = hj.leading(jets, k=4, by="pt")
        assert values["pt"].shape == (0, 4) and mask.shape == (0, 4)
        sel, idx = hj.top_k(jets, 2, by="pt")
        assert len(sel) == 0 and len(idx) == 0
        assert hj.event_sum(jets, "pt").shape == (0,)
        assert hj.event_count(jets).shape == (0,)
        dr, _i = hj.min_delta_r(jets, jets)
        assert len(dr) == 0
        padded_values, _m = hj.pad(jets.pt, 3, clip=False)
        assert padded_values.shape == (0, 3)
    # All events empty.
    empty = ak.Array([[], [], []])
    values, mask = hj.pad(ak.values_astype(empty, np.float32), 2)
    assert values.shape == (3, 2) and not mask.any()


# --- reductions -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype,offsets", CASES)
def test_event_reductions_match_awkward(rng, dtype, offsets):
    x = sliced(make_jagged(rng, 500, dtype, offsets, nans=True), rng)
    rtol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(hj.event_sum(x, n_threads=2), ak.to_numpy(ak.sum(x, axis=1)), rtol=rtol)
    for fn, ref in ((hj.event_max, ak.max), (hj.event_min, ak.min)):
        got = fn(x, empty=-1.0)
        np.testing.assert_array_equal(got, ak.to_numpy(ak.fill_none(ref(x, axis=1), -1.0)).astype(np.float64))
        assert np.isnan(fn(x)[ak.to_numpy(ak.num(x)) == 0]).all()
    got_mean = hj.event_mean(x, empty=0.0)
    ref_mean = ak.to_numpy(ak.fill_none(ak.mean(x, axis=1), 0.0))
    empty = ak.to_numpy(ak.num(x)) == 0
    np.testing.assert_allclose(got_mean[~empty], ref_mean[~empty], rtol=rtol)
    assert (got_mean[empty] == 0.0).all()
    np.testing.assert_array_equal(hj.event_count(x), ak.to_numpy(ak.num(x)))
    jets = ak.zip({"pt": x, "eta": x * 2})
    np.testing.assert_allclose(hj.event_sum(jets, "eta"), ak.to_numpy(ak.sum(jets.eta, axis=1)), rtol=rtol)


# --- four-vectors and Delta R -----------------------------------------------------------------


def test_four_vectors_match_vector(rng):
    vector = pytest.importorskip("vector")
    n = 2000
    for dtype in (np.float64, np.float32):
        px, py, pz = (rng.normal(0, 40, n).astype(dtype) for _ in range(3))
        m_true = rng.exponential(5.0, n)
        e = np.sqrt(px.astype(float) ** 2 + py.astype(float) ** 2 + pz.astype(float) ** 2 + m_true**2)
        e[:50] = np.sqrt(px[:50].astype(float) ** 2 + py[:50] ** 2 + pz[:50] ** 2) * (
            1 - 1e-9
        )  # m2 < 0 by rounding
        px[50:60] = py[50:60] = 0  # pt = 0: eta = +-inf (or 0 when pz = 0 too)
        pz[55:60] = 0
        e = e.astype(dtype)
        pt, eta, phi, mass = hj.to_pt_eta_phi_m(px, py, pz, e, n_threads=2)
        v = vector.array(
            {"px": px.astype(float), "py": py.astype(float), "pz": pz.astype(float), "E": e.astype(float)}
        )
        rtol = 2e-6 if dtype == np.float32 else 1e-12
        for got, ref in ((pt, v.pt), (eta, v.eta), (phi, v.phi)):
            assert got.dtype == dtype
            np.testing.assert_allclose(got, ref, rtol=rtol, atol=1e-5 if dtype == np.float32 else 1e-12)
        np.testing.assert_allclose(mass, v.mass, rtol=1e-3 if dtype == np.float32 else 1e-7, atol=1e-3)
        assert (np.sign(mass) == np.sign(v.mass)).mean() > 0.99
        # And back.
        m = rng.normal(5, 5, n).astype(dtype)  # some negative masses (negative m2)
        eta_in = rng.normal(0, 2, n).astype(dtype)
        phi_in = rng.uniform(-np.pi, np.pi, n).astype(dtype)
        pt_in = rng.exponential(30, n).astype(dtype)
        out = hj.to_px_py_pz_e(pt_in, eta_in, phi_in, m)
        w = vector.array(
            {
                "pt": pt_in.astype(float),
                "eta": eta_in.astype(float),
                "phi": phi_in.astype(float),
                "mass": m.astype(float),
            }
        )
        for got, ref in zip(out, (w.px, w.py, w.pz, w.E)):
            np.testing.assert_allclose(got, ref, rtol=rtol * 10, atol=1e-4 if dtype == np.float32 else 1e-10)


def test_four_vectors_on_jagged(rng):
    jets = sliced(make_jagged(rng, 100, fields=["pt", "eta", "phi", "mass"]), rng)
    px, py, pz, e = hj.to_px_py_pz_e(jets.pt, jets.eta, jets.phi, jets.mass)
    assert ak.to_list(ak.num(px)) == ak.to_list(ak.num(jets))
    np.testing.assert_allclose(
        ak.to_numpy(ak.flatten(px)), ak.to_numpy(ak.flatten(jets.pt * np.cos(jets.phi)))
    )
    pt, eta, _phi, _m = hj.to_pt_eta_phi_m(px, py, pz, e)
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(pt)), ak.to_numpy(ak.flatten(jets.pt)), rtol=1e-9)
    np.testing.assert_allclose(
        ak.to_numpy(ak.flatten(eta)), ak.to_numpy(ak.flatten(jets.eta)), rtol=1e-7, atol=1e-9
    )
    with pytest.raises(hepinfer.InputError, match="different counts"):
        hj.to_pt_eta_phi_m(jets.pt, jets.pt, jets.pt, jets.pt[::-1])


def test_delta_phi_wraps_like_vector(rng):
    vector = pytest.importorskip("vector")
    phi1 = rng.uniform(-10, 10, 1000)
    phi2 = rng.uniform(-10, 10, 1000)
    phi1[:4] = [np.pi, -np.pi, 0.0, np.pi]
    phi2[:4] = [-np.pi, np.pi, np.pi, 0.0]
    eta1, eta2 = rng.normal(size=1000), rng.normal(size=1000)
    dr = hj.delta_r(eta1, phi1, eta2, phi2)
    v1 = vector.array({"rho": np.ones(1000), "phi": phi1, "eta": eta1})
    v2 = vector.array({"rho": np.ones(1000), "phi": phi2, "eta": eta2})
    np.testing.assert_allclose(dr, v1.deltaR(v2), rtol=1e-12)
    d = hj.delta_phi(phi1, phi2)
    assert (d >= -np.pi).all() and (d < np.pi).all()
    np.testing.assert_allclose(d, v1.deltaphi(v2), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype,offsets", CASES)
def test_min_delta_r_matches_cartesian(rng, dtype, offsets):
    jets = sliced(make_jagged(rng, 300, dtype, offsets, fields=["pt", "eta", "phi"]), rng)
    n = len(jets)
    leptons = make_jagged(rng, n, dtype, "int64", mean=1.0, fields=["eta", "phi"])
    dr, index = hj.min_delta_r(jets, leptons, n_threads=2)
    pairs = ak.cartesian({"j": jets, "l": leptons}, axis=1, nested=True)
    d_eta = ak.values_astype(pairs.j.eta, np.float64) - pairs.l.eta
    d_phi = (ak.values_astype(pairs.j.phi, np.float64) - pairs.l.phi + np.pi) % (2 * np.pi) - np.pi
    all_dr = np.sqrt(d_eta**2 + d_phi**2)
    ref = ak.fill_none(ak.min(all_dr, axis=2), np.inf)
    ref_index = ak.fill_none(ak.argmin(all_dr, axis=2), -1)
    assert ak.to_list(ak.num(dr)) == ak.to_list(ak.num(jets))
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(dr)), ak.to_numpy(ak.flatten(ref)), rtol=1e-12)
    np.testing.assert_array_equal(ak.to_numpy(ak.flatten(index)), ak.to_numpy(ak.flatten(ref_index)))
    # Elementwise Delta R on jagged, aligned collections (a jet with itself shifted).
    shifted = jets.eta + 1.0
    d = hj.delta_r(jets.eta, jets.phi, shifted, jets.phi)
    # exactly |shifted - eta| of the (possibly float32-rounded) inputs
    expected = np.abs(
        ak.to_numpy(ak.flatten(shifted)).astype(np.float64)
        - ak.to_numpy(ak.flatten(jets.eta)).astype(np.float64)
    )
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(d)), expected, rtol=1e-6)
    assert np.all(np.abs(expected - 1.0) < 1e-4 * np.maximum(1.0, np.abs(ak.to_numpy(ak.flatten(jets.eta)))))
    with pytest.raises(hepinfer.InputError, match="different numbers of events"):
        hj.min_delta_r(jets, leptons[1:])


# --- threads ----------------------------------------------------------------------------------


def test_threads_give_identical_results_and_release_gil(rng):
    jets = make_jagged(rng, 60_000, "float32", "int32", ties=True, nans=True, fields=["pt", "eta", "phi"])
    ref, ref_mask = hj.leading(jets, k=4, by="pt", stacked=True, n_threads=1)
    results = []

    def work():
        results.append(hj.leading(jets, k=4, by="pt", stacked=True, n_threads=None))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for values, mask in results:
        np.testing.assert_array_equal(values, ref)
        np.testing.assert_array_equal(mask, ref_mask)
    np.testing.assert_array_equal(
        hj.event_max(jets, "pt", n_threads=3), hj.event_max(jets, "pt", n_threads=1)
    )


# --- files ------------------------------------------------------------------------------------


def _check_leading_four(jets):
    values, mask = hj.leading(jets, k=4, by="pt", fields=["pt", "eta", "phi", "mass"])
    order = ak.argsort(jets.pt, axis=1, ascending=False, stable=True)
    for f in ("pt", "eta", "phi", "mass"):
        ref, ref_mask = padded(jets[f][order], 4, 0.0)
        np.testing.assert_array_equal(values[f], ref)
        np.testing.assert_array_equal(mask, ref_mask)
    np.testing.assert_allclose(hj.event_sum(jets, "pt"), ak.to_numpy(ak.sum(jets.pt, axis=1)), rtol=1e-5)


def test_uproot_written_nanoaod_like_file(rng, tmp_path):
    uproot = pytest.importorskip("uproot")
    jets = make_jagged(rng, 500, "float32", "int64", mean=6.0, fields=["pt", "eta", "phi", "mass"])
    with uproot.recreate(tmp_path / "nano.root") as f:
        f["Events"] = {f"Jet_{k}": jets[k] for k in jets.fields}  # jagged branches as in NanoAOD
    with uproot.open(tmp_path / "nano.root") as f:
        arrays = f["Events"].arrays(["Jet_pt", "Jet_eta", "Jet_phi", "Jet_mass"])
    read = ak.zip({k[4:]: arrays[k] for k in arrays.fields})
    _check_leading_four(read)
    # Without zipping: a record of separate lists sharing the counts.
    values, _mask = hj.leading(arrays, k=4, by="Jet_pt")
    np.testing.assert_array_equal(values["Jet_eta"], hj.leading(read, k=4, by="pt")[0]["eta"])


def test_cms_nanoaod_file():
    uproot = pytest.importorskip("uproot")
    skhep_testdata = pytest.importorskip("skhep_testdata")
    try:
        path = skhep_testdata.data_path("nanoAOD_2015_CMS_Open_Data_ttbar.root")
    except OSError as err:  # downloaded on first use (requests errors are OSErrors)
        pytest.skip(f"CMS NanoAOD test file not available: {err}")
    with uproot.open(path) as f:
        arrays = f["Events"].arrays(["Jet_pt", "Jet_eta", "Jet_phi", "Jet_mass", "Muon_eta", "Muon_phi"])
    jets = ak.zip({k[4:]: arrays[k] for k in ("Jet_pt", "Jet_eta", "Jet_phi", "Jet_mass")})
    muons = ak.zip({"eta": arrays["Muon_eta"], "phi": arrays["Muon_phi"]})
    assert (
        hj.view(jets).column_address(0) == np.asarray(ak.to_layout(arrays["Jet_pt"]).content.data).ctypes.data
    )
    _check_leading_four(jets)
    dr, _ = hj.min_delta_r(jets, muons)
    pairs = ak.cartesian({"j": jets, "m": muons}, axis=1, nested=True)
    d_phi = (pairs.j.phi - pairs.m.phi + np.pi) % (2 * np.pi) - np.pi
    ref = ak.fill_none(ak.min(np.sqrt((pairs.j.eta - pairs.m.eta) ** 2 + d_phi**2), axis=2), np.inf)
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(dr)), ak.to_numpy(ak.flatten(ref)), rtol=1e-5)
