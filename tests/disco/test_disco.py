"""hepinfer.disco against dcor, a dense float64 numpy reference of the weighted definition and
torch autograd through the dense O(n^2) formula."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import hepinfer
from hepinfer import disco

dcor = pytest.importorskip("dcor")


# ---------------------------------------------------------------- dense references
def _dist(v: np.ndarray) -> np.ndarray:
    v = v.reshape(len(v), -1)
    return np.sqrt(((v[:, None, :] - v[None, :, :]) ** 2).sum(-1))


def dense_weighted(x, y, w=None):
    """(dcov_xy, dcov_xx, dcov_yy, dcor2) from the issue's weighted definition, float64, O(n^2)."""
    n = len(x)
    w = np.ones(n) if w is None else np.asarray(w, float) * n / np.sum(w)

    def centred(a):
        ai = (a * w[None, :]).mean(1)
        aa = (ai * w).mean()
        return a - ai[:, None] - ai[None, :] + aa

    A, B = centred(_dist(x)), centred(_dist(y))

    def cov(P, Q):
        return float((w * (P * Q * w[None, :]).mean(1)).mean())

    c, vx, vy = cov(A, B), cov(A, A), cov(B, B)
    den = np.sqrt(abs(vx * vy))
    return c, vx, vy, (c / den if den > 0 else 0.0)


def torch_dense_dcor2(x, y, w=None):
    """dCor^2 through the dense formula in torch (the DisCo repository's approach), float64."""
    import torch

    n = x.shape[0]
    w = torch.ones(n, dtype=torch.float64) if w is None else w * n / w.sum()

    def dist(v):
        v = v.reshape(n, -1)
        diff = v[:, None, :] - v[None, :, :]
        if v.shape[1] == 1:
            return diff.abs()[..., 0]
        return diff.square().sum(-1).sqrt()

    def centred(a):
        ai = (a * w[None, :]).mean(1)
        aa = (ai * w).mean()
        return a - ai[:, None] - ai[None, :] + aa

    A, B = centred(dist(x)), centred(dist(y))

    def cov(P, Q):
        return (w * (P * Q * w[None, :]).mean(1)).mean()

    return cov(A, B) / torch.sqrt(cov(A, A) * cov(B, B))


def rel_close(a, b, rtol, scale=None):
    scale = max(abs(b), 1e-300) if scale is None else scale
    return abs(a - b) <= rtol * scale


# ---------------------------------------------------------------- values against dcor
@pytest.mark.parametrize("n", [4, 5, 7, 16, 100, 1000])
@pytest.mark.parametrize("ties", [False, True])
def test_matches_dcor_unweighted(rng, n, ties):
    # centred data: with offsets (x ~ 100) dcor's own sums lose ~1e-10..1e-9 relative (checked
    # against exact rational arithmetic); offsets are tested against exact references below
    x = rng.normal(size=n) * 3
    y = x**2 / 5 + rng.normal(size=n)
    if ties:
        x, y = np.round(x, 0), np.round(y, 0)
    for unbiased in (False, True):
        got = disco.distance_correlation(x, y, unbiased=unbiased)
        cov = disco.distance_covariance(x, y, unbiased=unbiased)
        if unbiased:
            ref = dcor.u_distance_correlation_sqr(x, y)
            ref_cov = dcor.u_distance_covariance_sqr(x, y)
            vx, vy = dcor.u_distance_covariance_sqr(x, x), dcor.u_distance_covariance_sqr(y, y)
        else:
            ref = dcor.distance_correlation_sqr(x, y)
            ref_cov = dcor.distance_covariance_sqr(x, y)
            vx, vy = dcor.distance_covariance_sqr(x, x), dcor.distance_covariance_sqr(y, y)
        # covariances: relative to the natural scale sqrt(vx vy) (a U-statistic can be ~0; in
        # degenerate tiny samples vx or vy is ~0 too: then relative to 1e-3 of the spread product)
        scale = max(np.sqrt(abs(vx * vy)), 1e-3 * np.ptp(x) * np.ptp(y))
        assert rel_close(cov, ref_cov, 1e-10, scale=max(scale, abs(ref_cov))), (unbiased, cov, ref_cov)
        # dCor^2 is ill-conditioned when a variance is ~0 (tiny samples with ties): compare only
        # when both variances are well away from rounding level
        xs, ys = np.ptp(x) ** 2, np.ptp(y) ** 2
        if abs(vx) > 1e-4 * xs and abs(vy) > 1e-4 * ys:
            assert rel_close(got, ref, 1e-10, scale=max(abs(ref), 1e-3)), (unbiased, got, ref)


@pytest.mark.slow
@pytest.mark.parametrize("n", [10_000, 100_000])
def test_matches_dcor_large(rng, n):
    # centred data: dcor's own rounding is then ~1e-13 (with offsets of ~100 it loses ~1e-9,
    # see test_offsets_against_extended_precision for hepinfer on such data)
    x = np.round(rng.normal(size=n), 3)  # ties in x
    y = np.round(0.3 * x + rng.normal(size=n), 2)  # ties in y
    z = rng.normal(size=n)
    # dependent; independent (dCor^2 ~ 1/n is a small difference of O(1) terms, and dcor's own
    # results then scatter by ~3e-13 under permutations of the events: compare on the scale 1e-2)
    for b, floor in ((y, 1e-3), (z, 1e-2)):
        ref = dcor.distance_correlation_sqr(x, b, method="mergesort")
        assert rel_close(disco.distance_correlation(x, b), ref, 1e-10, scale=max(abs(ref), floor))
        ref_u = dcor.u_distance_correlation_sqr(x, b, method="mergesort")
        assert rel_close(
            disco.distance_correlation(x, b, unbiased=True), ref_u, 1e-10, scale=max(abs(ref_u), floor)
        )
    assert dcor.distance_correlation_sqr(x, z, method="mergesort") < 1e-3


def test_offsets_against_extended_precision(rng):
    """Data far from 0 (offsets ~100): hepinfer against an O(n^2) long-double reference."""
    n = 1000
    x = np.round(rng.normal(size=n) + 100.0, 3)
    ys = (np.round(0.3 * x + rng.normal(size=n), 2) - 50.0, rng.normal(size=n) - 50.0)
    L = np.longdouble
    for y in ys:
        xl, yl = x.astype(L), y.astype(L)
        a = np.abs(xl[:, None] - xl[None, :])
        b = np.abs(yl[:, None] - yl[None, :])
        N = L(n)

        def v(P, Q, N=N):
            return ((P * Q).sum() - 2 * (P.sum(1) * Q.sum(1)).sum() / N + P.sum() * Q.sum() / N**2) / N**2

        ref = float(v(a, b) / np.sqrt(v(a, a) * v(b, b)))
        assert rel_close(disco.distance_correlation(x, y), ref, 1e-10, scale=max(abs(ref), 1e-3))


def test_multidimensional_matches_dcor(rng):
    n = 300
    m = rng.normal(size=(n, 2)) * [10.0, 50.0] + [90.0, 400.0]  # "mass and pT"
    s = np.tanh(m[:, 0] / 100 + rng.normal(size=n))
    for unbiased, fn in ((False, dcor.distance_correlation_sqr), (True, dcor.u_distance_correlation_sqr)):
        assert rel_close(disco.distance_correlation(s, m, unbiased=unbiased), fn(s, m), 1e-10)
        x2 = np.c_[s, s**2]
        assert rel_close(disco.distance_correlation(x2, m, unbiased=unbiased), fn(x2, m), 1e-10)
    # (n, 1) inputs take the O(n log n) path and agree with the 1-D call
    assert disco.distance_correlation(s[:, None], m[:, :1]) == pytest.approx(
        disco.distance_correlation(s, m[:, 0]), rel=1e-12
    )


def test_threads_do_not_change_results(rng):
    n = 500
    x, y = rng.normal(size=(n, 2)), rng.normal(size=(n, 3))
    w = rng.uniform(0.5, 2, size=n)
    v1, g1 = disco.distance_correlation_and_grad(x, y, w, n_threads=1)
    v4, g4 = disco.distance_correlation_and_grad(x, y, w, n_threads=4)
    assert v1 == v4
    np.testing.assert_array_equal(g1, g4)


def test_gil_released_threaded_stress(rng):
    n = 2000
    x, y = rng.normal(size=n), rng.normal(size=n)
    ref = disco.distance_correlation(x, y)
    out = []

    def work():
        for _ in range(5):
            out.append(disco.distance_correlation(x, y))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out == [ref] * 20


# ---------------------------------------------------------------- weighted definition
@pytest.mark.parametrize("n", [2, 3, 10, 200])
@pytest.mark.parametrize("dims", [(1, 1), (1, 2), (3, 1)])
def test_weighted_matches_dense_reference(rng, n, dims):
    x = rng.normal(size=(n, dims[0])).squeeze(1) if dims[0] == 1 else rng.normal(size=(n, dims[0]))
    y = rng.exponential(size=(n, dims[1])).squeeze(1) if dims[1] == 1 else rng.exponential(size=(n, dims[1]))
    w = rng.uniform(0.1, 3.0, size=n)
    ref = dense_weighted(x, y, w)
    assert rel_close(disco.distance_covariance(x, y, w), ref[0], 1e-10, scale=np.sqrt(ref[1] * ref[2]))
    assert rel_close(disco.distance_correlation(x, y, w), ref[3], 1e-10, scale=max(ref[3], 1e-3))
    assert disco.distance_correlation(x, y, w, squared=False) == pytest.approx(
        np.sqrt(max(ref[3], 0)), rel=1e-9
    )


def test_weighted_with_ties_and_zero_weights(rng):
    n = 400
    x = np.round(rng.normal(size=n), 1)
    y = np.round(x + rng.normal(size=n), 1)
    w = rng.uniform(0, 2, size=n)
    w[::7] = 0.0
    ref = dense_weighted(x, y, w)
    assert rel_close(disco.distance_correlation(x, y, w), ref[3], 1e-10)
    # zero weights are the same as dropping the events
    keep = w > 0
    assert rel_close(
        disco.distance_correlation(x, y, w), disco.distance_correlation(x[keep], y[keep], w[keep]), 1e-12
    )


def test_integer_weights_equal_repeated_events(rng):
    n = 300
    x, y = rng.normal(size=n), rng.gamma(2.0, size=n)
    k = rng.integers(1, 4, size=n)
    rep = disco.distance_correlation(np.repeat(x, k), np.repeat(y, k))
    assert rel_close(disco.distance_correlation(x, y, k.astype(float)), rep, 1e-11)
    assert rel_close(disco.distance_correlation(x, y, k), rep, 1e-11)  # integer dtype accepted
    _, g_rep = disco.distance_covariance_and_grad(np.repeat(x, k), np.repeat(y, k))
    _, g_w = disco.distance_covariance_and_grad(x, y, k)
    # each event's gradient is the sum over its copies
    np.testing.assert_allclose(
        g_w, np.add.reduceat(g_rep, np.r_[0, np.cumsum(k)[:-1]]), rtol=1e-9, atol=1e-14
    )


def test_invariances(rng):
    n = 1000
    x = rng.normal(size=n)
    y = np.sin(x) + 0.5 * rng.normal(size=n)
    w = rng.uniform(0.2, 2, size=n)
    base = disco.distance_correlation(x, y, w)
    assert rel_close(disco.distance_correlation(3.7 * x - 20, 0.01 * y + 5, w), base, 1e-11)
    assert rel_close(disco.distance_correlation(x, y, 1e3 * w), base, 1e-12)
    assert rel_close(disco.distance_correlation(y, x, w), base, 1e-11)
    assert rel_close(disco.distance_correlation(-x, y, w), base, 1e-11)


def test_independence_and_dependence(rng):
    n = 20_000
    x = rng.normal(size=n)
    assert disco.distance_correlation(x, rng.normal(size=n)) < 5e-3
    assert abs(disco.distance_correlation(x, rng.normal(size=n), unbiased=True)) < 5e-4
    assert disco.distance_correlation(x, np.exp(x)) > 0.8
    assert disco.distance_correlation(x, 2 * x + 1) == pytest.approx(1.0, rel=1e-12)


def test_float32_input(rng):
    x = rng.normal(size=500).astype(np.float32)
    y = (x + rng.normal(size=500)).astype(np.float32)
    ref = disco.distance_correlation(x.astype(np.float64), y.astype(np.float64))
    assert disco.distance_correlation(x, y) == ref


# ---------------------------------------------------------------- gradients
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize(("unbiased", "weighted"), [(False, False), (False, True), (True, False)])
def test_gradient_matches_torch_dense(rng, unbiased, ties, weighted):
    torch = pytest.importorskip("torch")
    n = 120
    x = rng.normal(size=n)
    y = x**2 + rng.normal(size=n)
    if ties:
        x, y = np.round(x, 1), np.round(y, 1)
    w = rng.uniform(0.2, 2.0, size=n) if weighted else None
    xt = torch.tensor(x, requires_grad=True)
    yt, wt = torch.tensor(y), None if w is None else torch.tensor(w)
    if unbiased:
        ref = torch_dense_u_dcor2(xt, yt)
    else:
        ref = torch_dense_dcor2(xt, yt, wt)
    (g_ref,) = torch.autograd.grad(ref, xt)
    val, g = disco.distance_correlation_and_grad(x, y, w, unbiased=unbiased)
    assert rel_close(val, ref.item(), 1e-10)
    np.testing.assert_allclose(g, g_ref.numpy(), rtol=1e-8, atol=1e-8 * np.abs(g_ref.numpy()).max())


def torch_dense_u_dcor2(x, y):
    import torch

    n = x.shape[0]

    def ucentred(a):
        r = a.sum(1)
        t = a.sum()
        u = a - r[:, None] / (n - 2) - r[None, :] / (n - 2) + t / ((n - 1) * (n - 2))
        return u * (1 - torch.eye(n, dtype=a.dtype))

    A = ucentred((x[:, None] - x[None, :]).abs())
    B = ucentred((y[:, None] - y[None, :]).abs())

    def cov(P, Q):
        return (P * Q).sum() / (n * (n - 3))

    return cov(A, B) / torch.sqrt(abs(cov(A, A) * cov(B, B)))


def test_gradient_multidimensional_matches_torch(rng):
    torch = pytest.importorskip("torch")
    n = 80
    x = rng.normal(size=(n, 2))
    y = np.c_[x[:, 0] ** 2, x[:, 1]] + rng.normal(size=(n, 2))
    x[5] = x[9]  # a pair at distance 0
    w = rng.uniform(0.5, 2, size=n)
    xt = torch.tensor(x, requires_grad=True)
    # torch's sqrt at 0 has an infinite derivative: the reference masks zero distances (the
    # convention hepinfer documents: such pairs contribute 0 to the gradient)
    ref = _torch_dense_masked(xt, torch.tensor(y), torch.tensor(w))
    (g_ref,) = torch.autograd.grad(ref, xt)
    val, g = disco.distance_correlation_and_grad(x, y, w)
    assert rel_close(val, ref.item(), 1e-10)
    np.testing.assert_allclose(g, g_ref.numpy(), rtol=1e-8, atol=1e-8 * np.abs(g_ref.numpy()).max())


def _torch_dense_masked(x, y, w):
    import torch

    n = x.shape[0]
    w = w * n / w.sum()

    def dist(v):
        sq = (v[:, None, :] - v[None, :, :]).square().sum(-1)
        mask = sq > 0
        return torch.where(mask, torch.sqrt(torch.where(mask, sq, torch.ones_like(sq))), torch.zeros_like(sq))

    def centred(a):
        ai = (a * w[None, :]).mean(1)
        aa = (ai * w).mean()
        return a - ai[:, None] - ai[None, :] + aa

    A, B = centred(dist(x)), centred(dist(y))

    def cov(P, Q):
        return (w * (P * Q * w[None, :]).mean(1)).mean()

    return cov(A, B) / torch.sqrt(cov(A, A) * cov(B, B))


def test_dcov_gradient_matches_finite_differences(rng):
    n = 50
    x, y = rng.normal(size=n), rng.normal(size=n)
    w = rng.uniform(0.5, 2, size=n)
    _, g = disco.distance_covariance_and_grad(x, y, w)
    h = 1e-6
    for k in (0, 7, 33):
        xp, xm = x.copy(), x.copy()
        xp[k] += h
        xm[k] -= h
        fd = (disco.distance_covariance(xp, y, w) - disco.distance_covariance(xm, y, w)) / (2 * h)
        assert g[k] == pytest.approx(fd, rel=1e-5, abs=1e-9)


# ---------------------------------------------------------------- edge cases
def test_constant_inputs_give_zero_value_and_gradient(rng):
    x = rng.normal(size=50)
    c = np.full(50, 3.0)
    for a, b in ((x, c), (c, x), (c, c)):
        val, g = disco.distance_correlation_and_grad(a, b)
        assert val == 0.0
        assert np.all(g == 0.0)
    assert disco.distance_correlation(np.c_[x, x], np.c_[c, c]) == 0.0


def test_small_samples():
    assert disco.distance_correlation([0.0, 1.0], [0.0, 2.0]) == pytest.approx(1.0)
    assert disco.distance_correlation([0.0, 1.0, 2.0], [1.0, 0.0, 1.0]) == pytest.approx(
        dcor.distance_correlation_sqr(np.array([0.0, 1.0, 2.0]), np.array([1.0, 0.0, 1.0])), rel=1e-12
    )
    with pytest.raises(hepinfer.InputError, match="at least 2 events"):
        disco.distance_correlation([1.0], [2.0])
    with pytest.raises(hepinfer.InputError, match="at least 2 events"):
        disco.distance_correlation([], [])
    with pytest.raises(hepinfer.InputError, match="at least 4 events"):
        disco.distance_correlation([1.0, 2.0, 3.0], [1.0, 2.0, 4.0], unbiased=True)


def test_bad_inputs(rng):
    x, y = rng.normal(size=10), rng.normal(size=10)
    for bad, name in ((np.nan, "nan"), (np.inf, "inf"), (-np.inf, "-inf")):
        xb = x.copy()
        xb[3] = bad
        with pytest.raises(hepinfer.InputError, match=r"x\[3\] is not finite \(" + name.replace("-", r"\-")):
            disco.distance_correlation(xb, y)
        with pytest.raises(hepinfer.InputError, match=r"y\[3\]"):
            disco.distance_correlation_and_grad(x, xb)
    with pytest.raises(hepinfer.InputError, match=r"x\[4, 1\]"):
        m = rng.normal(size=(10, 2))
        m[4, 1] = np.nan
        disco.distance_correlation(m, y)
    w = np.ones(10)
    w[2] = -1
    with pytest.raises(hepinfer.InputError, match=r"weights\[2\] is negative"):
        disco.distance_correlation(x, y, w)
    with pytest.raises(hepinfer.InputError, match="sum to zero"):
        disco.distance_correlation(x, y, np.zeros(10))
    w = np.ones(10)
    w[9] = np.nan
    with pytest.raises(hepinfer.InputError, match=r"weights\[9\]"):
        disco.distance_correlation(x, y, w)
    with pytest.raises(hepinfer.InputError, match="does not support weights"):
        disco.distance_correlation(x, y, np.ones(10), unbiased=True)
    with pytest.raises(hepinfer.InputError, match="same number of events"):
        disco.distance_correlation(x, y[:5])
    with pytest.raises(hepinfer.InputError, match="one entry per event"):
        disco.distance_correlation(x, y, np.ones(5))
    with pytest.raises(hepinfer.InputError, match="dimensional"):
        disco.distance_correlation(np.zeros((10, 2, 2)), y)
    with pytest.raises(hepinfer.InputError, match="dtype"):
        disco.distance_correlation(np.array(["a"] * 10), y)
    with pytest.raises(hepinfer.InputError, match="n_threads"):
        disco.distance_correlation(np.c_[x, x], y, n_threads=-1)


@pytest.mark.parametrize("n", [4, 5, 7, 12])
def test_small_samples_with_offsets_against_exact_rationals(rng, n):
    """Tiny samples far from 0, V and U estimators, against exact rational arithmetic."""
    from fractions import Fraction

    x = rng.normal(size=n) * 3 + 100.0
    y = x**2 / 50 + rng.normal(size=n)
    X, Y = [Fraction(v) for v in x], [Fraction(v) for v in y]

    def centred(Z, unbiased):
        a = [[abs(Z[i] - Z[j]) for j in range(n)] for i in range(n)]
        r = [sum(row) for row in a]
        t = sum(r)
        if unbiased:
            return [
                [
                    a[i][j] - r[i] / (n - 2) - r[j] / (n - 2) + t / ((n - 1) * (n - 2))
                    if i != j
                    else Fraction(0)
                    for j in range(n)
                ]
                for i in range(n)
            ]
        return [[a[i][j] - r[i] / n - r[j] / n + t / n**2 for j in range(n)] for i in range(n)]

    for unbiased in (False, True):
        A, B = centred(X, unbiased), centred(Y, unbiased)
        total = sum(A[i][j] * B[i][j] for i in range(n) for j in range(n))
        exact = float(total / (n * (n - 3)) if unbiased else total / n**2)
        got = disco.distance_covariance(x, y, unbiased=unbiased)
        assert abs(got - exact) <= 1e-12 * abs(exact), (unbiased, got, exact)
