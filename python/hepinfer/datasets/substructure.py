"""Jet substructure from a jet's constituents, in numpy: N-subjettiness and soft-drop mass.

Both observables are computed here rather than taken from FastJet so that the toy generator
(no FastJet) and the Pythia generator share one definition; the test suite checks them against
FastJet-contrib's ``Nsubjettiness`` / ``SoftDrop`` (shipped with the ``fastjet`` wheel's awkward
interface) and against a brute-force reference.

N-subjettiness (Thaler & Van Tilburg, JHEP 03 (2011) 015), normalised measure with beta = 1::

    tau_N = sum_i pT_i * min_k dR(i, axis_k) / (R0 * sum_i pT_i)        R0 = 0.8

with the N axes taken as the exclusive-kT subjets of the jet ("exclusive-kT axes", FastJet-contrib's
``KT_Axes``): the constituents are clustered pairwise with the kT distance
``d_ij = min(pT_i^2, pT_j^2) * dR_ij^2`` and E-scheme recombination (four-vectors add) until N
pseudojets remain; those are the axes. dR is measured in rapidity y (computed as FastJet does,
see :func:`rapidity_phi`) and azimuth phi. A jet with
at most N constituents has tau_N = 0.

Soft-drop mass (Larkoski, Marzani, Soyez, Thaler, JHEP 05 (2014) 146) with z_cut = 0.1,
beta = 0 (the modified mass-drop tagger): recluster the constituents with Cambridge/Aachen
(``d_ij = dR_ij^2``, E-scheme), then undo the clusterings from the last one, keeping the harder
(higher-pT) branch, until ``min(pT1, pT2) / (pT1 + pT2) > z_cut * (dR12 / R0)^beta``; the mass of the
pseudojet reached is the soft-drop mass (a single constituent's mass if the declustering runs out).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["exclusive_kt_axes", "jet_substructure", "n_subjettiness", "rapidity_phi", "soft_drop_mass"]


def rapidity_phi(
    px: np.ndarray, py: np.ndarray, pz: np.ndarray, e: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Rapidity and azimuth in (-pi, pi] of four-vectors.

    The rapidity is computed as FastJet does, ``-sign(pz) 0.5 ln((pT^2 + max(m^2, 0)) / (E + |pz|)^2)``,
    which equals ``0.5 ln((E + pz) / (E - pz))`` but stays accurate for nearly massless particles
    and treats a slightly negative m^2 (rounding) as 0.
    """
    px, py, pz, e = (np.asarray(a, dtype=np.float64) for a in (px, py, pz, e))
    pt2 = px**2 + py**2
    m2 = np.maximum((e + pz) * (e - pz) - pt2, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        y = 0.5 * np.log((pt2 + m2) / (e + np.abs(pz)) ** 2)
    return np.where(pz > 0, -y, y), np.arctan2(py, px)


def _delta_r2(y1: np.ndarray, phi1: np.ndarray, y2: np.ndarray, phi2: np.ndarray) -> np.ndarray:
    dphi = np.abs(phi1 - phi2)
    dphi = np.where(dphi > np.pi, 2.0 * np.pi - dphi, dphi)
    return (y1 - y2) ** 2 + dphi**2


def _pad(jets: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(J x M x 4 zero-padded four-vectors, J constituent counts) of a list of (n_j x 4) arrays."""
    counts = np.array([len(j) for j in jets], dtype=np.int64)
    width = max(int(counts.max()) if len(counts) else 0, 1)
    p4 = np.zeros((len(jets), width, 4))
    for j, jet in enumerate(jets):
        p4[j, : counts[j]] = jet
    return p4, counts


def _cluster(p4: np.ndarray, counts: np.ndarray, kt_measure: bool, keep: Sequence[int] = ()):
    """Pairwise agglomeration of the constituents of J jets at once (no beam distance).

    ``p4`` is J x M x 4 (padded), ``counts`` the J constituent counts. Distances are
    ``dR^2`` (Cambridge/Aachen) or ``min(pT_i^2, pT_j^2) dR^2`` (kT); four-vectors add. Uses
    nearest-neighbour bookkeeping, so a step costs O(J M) plus the rows whose neighbour merged.

    Returns (nodes, children, snapshots): ``nodes`` J x (2M - 1) x 4, the particles then the
    merged pseudojets in merge order (jet j's m-th merge is node ``counts[j] + m``);
    ``children`` J x (M - 1) x 2, the two nodes of each merge; ``snapshots[k]`` J x k x 4, the
    pseudojets alive when k remained (the particles themselves, zero-padded, if counts[j] <= k).
    """
    n_jets, width = p4.shape[0], p4.shape[1]
    nodes = np.zeros((n_jets, 2 * width - 1, 4))
    nodes[:, :width] = p4
    children = np.zeros((n_jets, max(width - 1, 0), 2), dtype=np.int64)
    snapshots = {k: np.zeros((n_jets, k, 4)) for k in keep}
    for k in keep:
        small = counts <= k
        snapshots[k][small, : min(k, width)] = p4[small, : min(k, width)]
    alive = np.arange(width)[None, :] < counts[:, None]
    slot_node = np.broadcast_to(np.arange(width), (n_jets, width)).copy()
    y, phi = rapidity_phi(p4[..., 0], p4[..., 1], p4[..., 2], p4[..., 3])
    y = np.where(alive, y, 0.0)
    pt2 = p4[..., 0] ** 2 + p4[..., 1] ** 2
    dist = _delta_r2(y[:, :, None], phi[:, :, None], y[:, None, :], phi[:, None, :])
    if kt_measure:
        dist = dist * np.minimum(pt2[:, :, None], pt2[:, None, :])
    pair = alive[:, :, None] & alive[:, None, :]
    pair &= ~np.eye(width, dtype=bool)[None]
    dist = np.where(pair, dist, np.inf)
    nn_dist = dist.min(axis=2)
    nn_index = dist.argmin(axis=2)
    remaining = counts.copy()
    while True:
        act = np.flatnonzero(remaining > 1)
        if len(act) == 0:
            break
        a = nn_dist[act].argmin(axis=1)
        b = nn_index[act, a]
        merge = counts[act] - remaining[act]
        new = counts[act] + merge
        node_a, node_b = slot_node[act, a], slot_node[act, b]
        children[act, merge, 0] = node_a
        children[act, merge, 1] = node_b
        nodes[act, new] = nodes[act, node_a] + nodes[act, node_b]
        slot_node[act, a] = new
        alive[act, b] = False
        dist[act, b, :] = np.inf
        dist[act, :, b] = np.inf
        nn_dist[act, b] = np.inf
        v = nodes[act, new]
        ya, phia = rapidity_phi(v[:, 0], v[:, 1], v[:, 2], v[:, 3])
        y[act, a], phi[act, a] = ya, phia
        pt2[act, a] = v[:, 0] ** 2 + v[:, 1] ** 2
        row = _delta_r2(ya[:, None], phia[:, None], y[act], phi[act])
        if kt_measure:
            row = row * np.minimum(pt2[act, a][:, None], pt2[act])
        row = np.where(alive[act], row, np.inf)
        row[np.arange(len(act)), a] = np.inf
        dist[act, a, :] = row
        dist[act, :, a] = row
        nn_dist[act, a] = row.min(axis=1)
        nn_index[act, a] = row.argmin(axis=1)
        # rows whose nearest neighbour was a or b: search again; the others may now be nearest to a
        near = nn_index[act]
        stale = (near == a[:, None]) | (near == b[:, None])
        stale &= alive[act]
        stale[np.arange(len(act)), a] = False
        jj, ii = np.nonzero(stale)
        if len(jj):
            rows = dist[act[jj], ii, :]
            nn_dist[act[jj], ii] = rows.min(axis=1)
            nn_index[act[jj], ii] = rows.argmin(axis=1)
        closer = row < nn_dist[act]
        jj, ii = np.nonzero(closer)
        if len(jj):
            nn_dist[act[jj], ii] = row[jj, ii]
            nn_index[act[jj], ii] = a[jj]
        remaining[act] -= 1
        for k in keep:
            hit = act[remaining[act] == k]
            if len(hit):
                slots = np.nonzero(alive[hit])[1].reshape(len(hit), k)
                snapshots[k][hit] = nodes[hit[:, None], slot_node[hit[:, None], slots]]
    return nodes, children, snapshots


def jet_substructure(
    jets: Sequence[np.ndarray], n_max: int = 3, r0: float = 0.8, z_cut: float = 0.1, beta: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """N-subjettiness ``tau_1..tau_n_max`` (J x n_max) and soft-drop mass (J) of many jets at once.

    ``jets[j]`` is an (n_j x 4) array of px, py, pz, E of jet j's constituents. Definitions as in
    the module docstring (beta = 1 for tau_N; ``z_cut``, ``beta`` and ``r0`` for soft drop).
    Jets are processed in groups of similar size, so the cost is close to O(sum n_j^2).
    """
    jets = [np.asarray(j, dtype=np.float64).reshape(-1, 4) for j in jets]
    taus = np.zeros((len(jets), n_max))
    sd_mass = np.zeros(len(jets))
    order = np.argsort([len(j) for j in jets], kind="stable")
    group = 64
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        for start in range(0, len(order), group):
            index = order[start : start + group]
            p4, counts = _pad([jets[i] for i in index])
            taus[index] = _n_subjettiness_padded(p4, counts, n_max, r0)
            sd_mass[index] = _soft_drop_padded(p4, counts, z_cut, beta, r0)
    return taus, sd_mass


def _n_subjettiness_padded(p4: np.ndarray, counts: np.ndarray, n_max: int, r0: float) -> np.ndarray:
    mask = np.arange(p4.shape[1])[None, :] < counts[:, None]
    pt = np.where(mask, np.hypot(p4[..., 0], p4[..., 1]), 0.0)
    y, phi = rapidity_phi(p4[..., 0], p4[..., 1], p4[..., 2], p4[..., 3])
    y = np.where(mask, y, 0.0)
    # sequential sums (cumsum), so that zero padding cannot change the rounding
    norm = r0 * np.cumsum(pt, axis=1)[:, -1]
    snapshots = _cluster(p4, counts, kt_measure=True, keep=tuple(range(1, n_max + 1)))[2]
    taus = np.zeros((p4.shape[0], n_max))
    for k in range(1, n_max + 1):
        axes = snapshots[k]
        ya, phia = rapidity_phi(axes[..., 0], axes[..., 1], axes[..., 2], axes[..., 3])
        dr2 = _delta_r2(y[:, :, None], phi[:, :, None], ya[:, None, :], phia[:, None, :])
        dr = np.sqrt(np.nan_to_num(dr2, nan=np.inf).min(axis=2))
        num = np.cumsum(np.where(mask, pt * dr, 0.0), axis=1)[:, -1]
        ok = (counts > k) & (norm > 0.0)
        taus[ok, k - 1] = num[ok] / norm[ok]
    return taus


def _soft_drop_padded(p4: np.ndarray, counts: np.ndarray, z_cut: float, beta: float, r0: float) -> np.ndarray:
    nodes, children, _ = _cluster(p4, counts, kt_measure=False)
    node = np.maximum(2 * counts - 2, 0)
    done = counts <= 1
    while not done.all():
        idx = np.flatnonzero(~done)
        merge = node[idx] - counts[idx]
        ca, cb = children[idx, merge, 0], children[idx, merge, 1]
        pa, pb = nodes[idx, ca], nodes[idx, cb]
        pta, ptb = np.hypot(pa[:, 0], pa[:, 1]), np.hypot(pb[:, 0], pb[:, 1])
        ya, phia = rapidity_phi(pa[:, 0], pa[:, 1], pa[:, 2], pa[:, 3])
        yb, phib = rapidity_phi(pb[:, 0], pb[:, 1], pb[:, 2], pb[:, 3])
        dr = np.sqrt(_delta_r2(ya, phia, yb, phib))
        passed = np.minimum(pta, ptb) / (pta + ptb) > z_cut * (dr / r0) ** beta
        harder = np.where(pta >= ptb, ca, cb)
        node[idx] = np.where(passed, node[idx], harder)
        done[idx] = passed | (node[idx] < counts[idx])
    groomed = nodes[np.arange(len(node)), node]
    m2 = groomed[:, 3] ** 2 - (groomed[:, :3] ** 2).sum(axis=1)
    return np.where((m2 > 0.0) & (counts > 0), np.sqrt(np.maximum(m2, 0.0)), 0.0)


def exclusive_kt_axes(p4: np.ndarray, n_axes: int) -> np.ndarray:
    """The ``n_axes`` exclusive-kT subjets (rows px, py, pz, E) of one jet's constituents ``p4``.

    With at most ``n_axes`` constituents, the constituents themselves are returned.
    """
    p4 = np.asarray(p4, dtype=np.float64).reshape(-1, 4)
    if n_axes < 1:
        raise ValueError(f"n_axes must be >= 1, got {n_axes}")
    if len(p4) <= n_axes:
        return p4.copy()
    padded, counts = _pad([p4])
    return _cluster(padded, counts, kt_measure=True, keep=(n_axes,))[2][n_axes][0]


def n_subjettiness(p4: np.ndarray, n_max: int = 3, r0: float = 0.8) -> np.ndarray:
    """``[tau_1, ..., tau_n_max]`` of one jet from its constituents ``p4`` (n x 4: px, py, pz, E).

    Normalised measure, beta = 1, exclusive-kT axes (see the module docstring). A jet with at most
    N constituents (an empty jet too) has tau_N = 0.
    """
    return jet_substructure([p4], n_max=n_max, r0=r0)[0][0]


def soft_drop_mass(p4: np.ndarray, z_cut: float = 0.1, beta: float = 0.0, r0: float = 0.8) -> float:
    """Soft-drop groomed mass of one jet from its constituents ``p4`` (n x 4: px, py, pz, E)."""
    return float(jet_substructure([p4], n_max=1, r0=r0, z_cut=z_cut, beta=beta)[1][0])
