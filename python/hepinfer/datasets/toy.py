"""A fast parametric jet generator (no Pythia, no FastJet) with the schema of the Pythia samples.

Meant for unit tests and quick examples, not for physics. Each jet is built from constituents
in the (eta, phi) plane around a jet axis (jet pT uniform in the window, |eta| < 2, phi uniform):

* W jets (label 1): a W of mass ~ N(80.4, 2.5) GeV splits into two prongs with momentum fractions
  z, 1 - z (z uniform in [0.2, 0.8]) separated by dR = m / (pT sqrt(z (1 - z))); each prong
  fragments into a few collinear particles (Dirichlet momentum sharing, Gaussian angular spread
  0.02). Two-prong structure: low tau21, jet mass near 80 GeV.
* QCD jets (label 0): a hard prong plus one softer emission (z = 0.5 u^3, angle
  0.8 exp(-Exp(1.2))), wider angular spread (0.04): a falling mass spectrum and higher tau21.
* Both get a few soft underlying-event particles (Poisson(4), pT ~ Exp(1 GeV), uniform in dR < 0.8).
  Particles further than dR = 0.8 from the axis are dropped (the jet radius).

Particles are charged pions (60%), photons (30%), charged kaons (5%) or neutrons (5%) with their
masses. Finally the three-momenta are scaled so that the jet pT is exactly the sampled one. All
substructure columns are computed from the constituents exactly as for the Pythia sample.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from hepinfer.datasets import schema

__all__ = ["generate_toy_jets"]

_SPECIES = np.array([211, -211, 22, 321, -321, 2112], dtype=np.int32)
_SPECIES_CUMULATIVE = np.cumsum([0.3, 0.3, 0.3, 0.025, 0.025, 0.05])
_MASS = np.array([0.13957, 0.13957, 0.0, 0.493677, 0.493677, 0.939565])
_CHARGE = np.array([1, -1, 0, 1, -1, 0], dtype=np.int32)


def _toy_jet(rng: np.random.Generator, signal: bool, pt: float, eta: float, phi: float):
    angle = rng.uniform(0.0, 2.0 * np.pi)
    direction = np.array([np.cos(angle), np.sin(angle)])
    if signal:
        mass = rng.normal(80.4, 2.5)
        z = rng.uniform(0.2, 0.8)
        dr = mass / (pt * np.sqrt(z * (1.0 - z)))
        prongs = [(z, (1.0 - z) * dr), (1.0 - z, -z * dr)]
        spread, mean_particles = 0.02, 10.0
    else:
        z = 0.5 * rng.random() ** 3
        dr = 0.8 * np.exp(-rng.exponential(1.2))
        prongs = [(1.0 - z, z * dr), (z, -(1.0 - z) * dr)]
        spread, mean_particles = 0.04, 14.0
    frac, deta, dphi = [], [], []
    for share, offset in prongs:
        k = 1 + rng.poisson(mean_particles * share)
        frac.append(share * rng.dirichlet(np.full(k, 0.7)))
        d = offset * direction + rng.normal(0.0, spread, (k, 2))
        deta.append(d[:, 0])
        dphi.append(d[:, 1])
    k_ue = rng.poisson(4.0)
    r = 0.8 * np.sqrt(rng.random(k_ue))
    a = rng.uniform(0.0, 2.0 * np.pi, k_ue)
    frac.append(rng.exponential(1.0, k_ue) / pt)
    deta.append(r * np.cos(a))
    dphi.append(r * np.sin(a))
    f, de, dp = np.concatenate(frac), np.concatenate(deta), np.concatenate(dphi)
    inside = np.hypot(de, dp) < 0.8
    inside[np.argmax(f)] = True
    f, de, dp = f[inside], de[inside], dp[inside]
    species = np.minimum(
        np.searchsorted(_SPECIES_CUMULATIVE, rng.random(len(f)), side="right"), len(_SPECIES) - 1
    )
    masses = _MASS[species]
    cpt = pt * f
    p3 = np.column_stack([cpt * np.cos(phi + dp), cpt * np.sin(phi + dp), cpt * np.sinh(eta + de)])
    p3 *= pt / np.hypot(p3[:, 0].sum(), p3[:, 1].sum())
    e = np.sqrt((p3**2).sum(axis=1) + masses**2)
    return np.column_stack([p3, e]), _CHARGE[species], _SPECIES[species]


def generate_toy_jets(
    n_signal: int,
    n_background: Optional[int] = None,
    *,
    seed: int = 0,
    pt_range: tuple[float, float] = (300.0, 500.0),
    output: Union[str, Path, None] = None,
    library: str = "ak",
) -> Any:
    """``n_signal`` toy W jets and ``n_background`` (default: as many) toy QCD jets, shuffled.

    Same schema as :func:`hepinfer.datasets.generate_jets` (see :mod:`hepinfer.datasets.schema`);
    ``event`` is the jet's index before shuffling, ``weight`` is 1. Returns an awkward Array
    (``library="ak"``) or a dict of numpy arrays (``library="np"``, as
    :func:`hepinfer.datasets.load_jets`); with ``output`` the sample is also written there as ROOT.
    """
    if n_background is None:
        n_background = n_signal
    if n_signal < 0 or n_background < 0:
        raise ValueError(f"jet counts must be >= 0, got n_signal={n_signal}, n_background={n_background}")
    lo, hi = float(pt_range[0]), float(pt_range[1])
    if not 0.0 < lo < hi:
        raise ValueError(f"pt_range must be (low, high) with 0 < low < high, got {pt_range}")
    if library not in ("ak", "np"):
        raise ValueError(f"library must be 'ak' or 'np', not {library!r}")
    rng = np.random.default_rng(seed)
    n = n_signal + n_background
    labels = np.concatenate(
        [np.full(n_signal, schema.LABELS["W"]), np.full(n_background, schema.LABELS["QCD"])]
    )
    constituents, charges, ids = [], [], []
    for j in range(n):
        p4, q, pid = _toy_jet(
            rng, bool(labels[j]), rng.uniform(lo, hi), rng.uniform(-2.0, 2.0), rng.uniform(-np.pi, np.pi)
        )
        constituents.append(p4)
        charges.append(q)
        ids.append(pid)
    columns = schema.build_jets(constituents, charges, ids, labels, np.arange(n), np.ones(n))
    columns = schema.take(columns, rng.permutation(n))
    if output is not None:
        schema.write_jets(output, columns)
    return columns if library == "np" else schema.to_awkward(columns)
