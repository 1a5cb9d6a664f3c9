"""The jet-sample schema shared by the Pythia and toy generators, and its ROOT reading/writing.

A sample is one TTree ``jets`` with one entry per jet:

=================  =========  ==========================================================
branch             type       meaning
=================  =========  ==========================================================
label              int32      0 = QCD jet, 1 = W -> qq' jet, 2 = top (t -> bqq') jet
event              int64      event number (see the generator for how it is numbered)
weight             float64    generator weight (1 for Pythia's unweighted events)
jet_pt             float32    jet transverse momentum [GeV] (sum of the constituents)
jet_eta            float32    jet pseudorapidity
jet_phi            float32    jet azimuth in (-pi, pi]
jet_mass           float32    jet invariant mass [GeV]
jet_energy         float32    jet energy [GeV]
jet_sd_mass        float32    soft-drop mass, z_cut = 0.1, beta = 0 [GeV]
tau1, tau2, tau3   float32    N-subjettiness, beta = 1, exclusive-kT axes, R0 = 0.8
tau21, tau32       float32    tau2/tau1 and tau3/tau2 (NaN where the denominator is 0)
n_constituents     int32      number of constituents (counter of the jagged branches)
constituent_pt     float32[]  constituent transverse momentum [GeV], sorted by decreasing pT
constituent_eta    float32[]  constituent pseudorapidity
constituent_phi    float32[]  constituent azimuth
constituent_energy float32[]  constituent energy [GeV]
constituent_charge int32[]    electric charge in units of e
constituent_pdgId  int32[]    PDG particle code
=================  =========  ==========================================================

The jet four-momentum is the E-scheme sum of its constituents (as FastJet's anti-kT), so the
constituents' four-momenta add up to (jet_pt, jet_eta, jet_phi, jet_energy) to float32 precision.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np

from hepinfer.datasets.substructure import jet_substructure

__all__ = [
    "CONSTITUENT_BRANCHES",
    "CONSTITUENT_FEATURES",
    "JET_BRANCHES",
    "LABELS",
    "TREE_NAME",
    "build_jets",
    "constituent_features",
    "padded_constituents",
    "read_jets",
    "write_jets",
]

TREE_NAME = "jets"
LABELS = {"QCD": 0, "W": 1, "top": 2}

JET_BRANCHES: dict[str, str] = {
    "label": "int32",
    "event": "int64",
    "weight": "float64",
    "jet_pt": "float32",
    "jet_eta": "float32",
    "jet_phi": "float32",
    "jet_mass": "float32",
    "jet_energy": "float32",
    "jet_sd_mass": "float32",
    "tau1": "float32",
    "tau2": "float32",
    "tau3": "float32",
    "tau21": "float32",
    "tau32": "float32",
    "n_constituents": "int32",
}
CONSTITUENT_BRANCHES: dict[str, str] = {
    "constituent_pt": "float32",
    "constituent_eta": "float32",
    "constituent_phi": "float32",
    "constituent_energy": "float32",
    "constituent_charge": "int32",
    "constituent_pdgId": "int32",
}

#: Per-constituent network inputs made from the constituent branches by :func:`constituent_features`:
#: pT / jet pT, log pT, log E (pT and E floored at 1 MeV), Δη and Δφ to the jet axis (Δφ in
#: [-π, π)), charge.
CONSTITUENT_FEATURES = ("pt_fraction", "log_pt", "log_energy", "deta", "dphi", "charge")


def constituent_features(
    columns: Mapping[str, np.ndarray], max_particles: int, names: Sequence[str] = CONSTITUENT_FEATURES
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The per-constituent inputs of set and graph networks, unpadded: each jet's number of kept
    constituents (its hardest ``max_particles``: constituents are stored hardest first) and
    ``{name: float32 values}`` over the kept constituents, jet after jet (NaN replaced by 0).
    ``columns`` holds ``constituent_offsets`` (n_jets + 1) and the flat constituent and jet
    branches of the schema. The one home of these features: the demo, ``hepinfer.train`` and
    :func:`padded_constituents` use it."""
    unknown = [n for n in names if n not in CONSTITUENT_FEATURES]
    if unknown:
        raise ValueError(f"unknown constituent features {unknown}; known: {', '.join(CONSTITUENT_FEATURES)}")
    offsets = np.asarray(columns["constituent_offsets"], dtype=np.int64)
    n_jets = len(offsets) - 1
    counts = np.diff(offsets)
    jet = np.repeat(np.arange(n_jets), counts)
    keep = np.arange(offsets[-1]) - offsets[jet] < max_particles
    jet = jet[keep]

    def flat(name: str) -> np.ndarray:
        return np.asarray(columns[name], dtype=np.float64)[keep]

    def jets(name: str) -> np.ndarray:
        return np.asarray(columns[name], dtype=np.float64)[jet]

    make = {
        "pt_fraction": lambda: flat("constituent_pt") / jets("jet_pt"),
        "log_pt": lambda: np.log(np.maximum(flat("constituent_pt"), 1e-3)),
        "log_energy": lambda: np.log(np.maximum(flat("constituent_energy"), 1e-3)),
        "deta": lambda: flat("constituent_eta") - jets("jet_eta"),
        "dphi": lambda: np.remainder(flat("constituent_phi") - jets("jet_phi") + np.pi, 2 * np.pi) - np.pi,
        "charge": lambda: flat("constituent_charge"),
    }
    values = {n: np.nan_to_num(make[n]()).astype(np.float32) for n in names}
    return np.minimum(counts, max_particles), values


def padded_constituents(
    columns: Mapping[str, np.ndarray], max_particles: int, names: Sequence[str] = CONSTITUENT_FEATURES
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`constituent_features` zero-padded by :func:`hepinfer.jagged.pad`: float32
    ``(n_jets, max_particles, len(names))`` and the bool mask ``(n_jets, max_particles)``."""
    from hepinfer.jagged import pad

    counts, values = constituent_features(columns, max_particles, names)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    x, mask = pad((offsets, {n: values[n] for n in names}), max_particles, stacked=True, dtype=np.float32)
    return x, mask


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0.0 else float("nan")


def build_jets(
    constituents: Sequence[np.ndarray],
    charges: Sequence[np.ndarray],
    pdg_ids: Sequence[np.ndarray],
    labels: Union[Sequence[int], np.ndarray],
    events: Union[Sequence[int], np.ndarray],
    weights: Union[Sequence[float], np.ndarray],
) -> dict[str, np.ndarray]:
    """Columns of the schema from each jet's constituents.

    ``constituents[j]`` is an (n_j x 4) array of px, py, pz, E [GeV] of jet j's constituents (any
    order; they are stored sorted by decreasing pT). Returns jet-level numpy arrays plus the
    jagged columns as flat arrays and ``constituent_offsets`` (int64, n_jets + 1).
    """
    n_jets = len(constituents)
    out: dict[str, Any] = {name: np.zeros(n_jets, dtype=dt) for name, dt in JET_BRANCHES.items()}
    flat: dict[str, list[np.ndarray]] = {name: [] for name in CONSTITUENT_BRANCHES}
    sorted_p4, orders = [], []
    for j in range(n_jets):
        p4: np.ndarray = np.asarray(constituents[j], dtype=np.float64).reshape(-1, 4)
        order = np.argsort(-np.hypot(p4[:, 0], p4[:, 1]), kind="stable")
        sorted_p4.append(p4[order])
        orders.append(order)
    all_taus, all_sd = jet_substructure(sorted_p4, 3)
    for j in range(n_jets):
        p4, order = sorted_p4[j], orders[j]
        pt = np.hypot(p4[:, 0], p4[:, 1])
        jet = p4.sum(axis=0)
        jet_pt = float(np.hypot(jet[0], jet[1]))
        m2 = jet[3] ** 2 - jet[0] ** 2 - jet[1] ** 2 - jet[2] ** 2
        taus = all_taus[j]
        out["label"][j] = labels[j]
        out["event"][j] = events[j]
        out["weight"][j] = weights[j]
        out["jet_pt"][j] = jet_pt
        out["jet_eta"][j] = np.arcsinh(jet[2] / jet_pt) if jet_pt > 0 else np.nan
        out["jet_phi"][j] = np.arctan2(jet[1], jet[0])
        out["jet_mass"][j] = np.sqrt(m2) if m2 > 0 else 0.0
        out["jet_energy"][j] = jet[3]
        out["jet_sd_mass"][j] = all_sd[j]
        out["tau1"][j], out["tau2"][j], out["tau3"][j] = taus
        out["tau21"][j] = _ratio(taus[1], taus[0])
        out["tau32"][j] = _ratio(taus[2], taus[1])
        out["n_constituents"][j] = len(pt)
        with np.errstate(divide="ignore", invalid="ignore"):
            eta = np.arcsinh(p4[:, 2] / pt)
        flat["constituent_pt"].append(pt)
        flat["constituent_eta"].append(eta)
        flat["constituent_phi"].append(np.arctan2(p4[:, 1], p4[:, 0]))
        flat["constituent_energy"].append(p4[:, 3])
        flat["constituent_charge"].append(np.asarray(charges[j])[order])
        flat["constituent_pdgId"].append(np.asarray(pdg_ids[j])[order])
    for name, dt in CONSTITUENT_BRANCHES.items():
        out[name] = np.concatenate(flat[name]).astype(dt) if n_jets else np.zeros(0, dtype=dt)
    out["constituent_offsets"] = np.concatenate([[0], np.cumsum(out["n_constituents"], dtype=np.int64)])
    return out


def concatenate(parts: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Concatenate column dicts made by :func:`build_jets` (jets in the order given)."""
    out: dict[str, np.ndarray] = {}
    for name in list(JET_BRANCHES) + list(CONSTITUENT_BRANCHES):
        out[name] = np.concatenate([p[name] for p in parts])
    out["constituent_offsets"] = np.concatenate([[0], np.cumsum(out["n_constituents"], dtype=np.int64)])
    return out


def take(columns: dict[str, np.ndarray], index: np.ndarray) -> dict[str, np.ndarray]:
    """The jets ``index`` (an integer array) of a column dict, constituents included."""
    offsets = columns["constituent_offsets"]
    out = {name: columns[name][index] for name in JET_BRANCHES}
    if len(index):
        flat_index = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in index])
    else:
        flat_index = np.zeros(0, dtype=np.int64)
    for name in CONSTITUENT_BRANCHES:
        out[name] = columns[name][flat_index]
    out["constituent_offsets"] = np.concatenate([[0], np.cumsum(out["n_constituents"], dtype=np.int64)])
    return out


def to_awkward(columns: dict[str, np.ndarray]) -> Any:
    """An awkward Array of jet records (fields as the branch names; constituents jagged)."""
    import awkward as ak

    offsets = np.asarray(columns["constituent_offsets"], dtype=np.int64)
    fields: dict[str, Any] = {name: columns[name] for name in JET_BRANCHES}
    for name in CONSTITUENT_BRANCHES:
        fields[name] = ak.unflatten(columns[name], np.diff(offsets))
    return ak.zip(fields, depth_limit=1)


def write_jets(path: Union[str, Path], columns: dict[str, np.ndarray]) -> Path:
    """Write the columns of :func:`build_jets` to ``path`` as the TTree ``jets`` (LZMA level 9)."""
    import awkward as ak
    import uproot

    path = Path(path)
    offsets = np.asarray(columns["constituent_offsets"], dtype=np.int64)
    counts = np.diff(offsets)
    record = ak.zip(
        {name[len("constituent_") :]: ak.unflatten(columns[name], counts) for name in CONSTITUENT_BRANCHES}
    )
    branches: dict[str, Any] = {name: columns[name] for name in JET_BRANCHES if name != "n_constituents"}
    branches["constituent"] = record
    with uproot.recreate(path, compression=uproot.LZMA(9)) as f:
        types = {name: np.dtype(JET_BRANCHES[name]) for name in JET_BRANCHES if name != "n_constituents"}
        types["constituent"] = record.type.content
        tree = f.mktree(TREE_NAME, types, counter_name=lambda _: "n_constituents", title="hepinfer jets")
        tree.extend(branches)
    return path


def read_jets(path: Union[str, Path], library: str = "ak") -> Any:
    """Read a sample written by :func:`write_jets`.

    ``library="ak"`` gives an awkward Array of jet records (the ``constituent_*`` fields jagged);
    ``library="np"`` a dict of numpy arrays: jet-level columns, the constituent columns flattened
    over all jets, and ``constituent_offsets`` (int64, n_jets + 1) delimiting each jet's constituents.
    """
    import uproot

    if library not in ("ak", "np"):
        raise ValueError(f"library must be 'ak' or 'np', not {library!r}")
    with uproot.open(path) as f:
        if TREE_NAME not in f:
            raise ValueError(f"{path}: no TTree '{TREE_NAME}' (not a hepinfer jet sample)")
        tree = f[TREE_NAME]
        missing = [b for b in list(JET_BRANCHES) + list(CONSTITUENT_BRANCHES) if b not in tree]
        if missing:
            raise ValueError(f"{path}: TTree '{TREE_NAME}' lacks branches {missing}")
        arrays = tree.arrays(list(JET_BRANCHES) + list(CONSTITUENT_BRANCHES), library="ak")
    import awkward as ak

    columns: dict[str, Any] = {
        name: ak.to_numpy(arrays[name]).astype(JET_BRANCHES[name]) for name in JET_BRANCHES
    }
    for name, dt in CONSTITUENT_BRANCHES.items():
        columns[name] = ak.to_numpy(ak.flatten(arrays[name], axis=None)).astype(dt)
    columns["constituent_offsets"] = np.concatenate(
        [[0], np.cumsum(columns["n_constituents"], dtype=np.int64)]
    )
    return columns if library == "np" else to_awkward(columns)
