"""Boosted-jet samples: W -> qq' (and top) jets against QCD jets, from Pythia 8 and FastJet.

    >>> import hepinfer.datasets as hd
    >>> jets = hd.load_jets()                      # the committed sample (2000 W + 2000 QCD jets)
    >>> jets.jet_mass, jets.tau21, jets.constituent_pt        # awkward Array of jet records
    >>> path = hd.generate_jets(500, 500, seed=7)  # a fresh sample (cached on disk), a ROOT file
    >>> toy = hd.generate_toy_jets(100, seed=1)    # parametric jets, same schema, no Pythia

Command line: ``python -m hepinfer.datasets generate --signal 2000 --background 2000 -o jets.root``
(``--process top``, ``--pt-min/--pt-max``, ``--seed``, ``--workers``, ``--no-progress``) and
``python -m hepinfer.datasets info [FILE]``.

Physics (``generate_jets``)
---------------------------
* pp collisions at sqrt(s) = 13 TeV, Pythia 8 default tune (Monash) with multiparton interactions,
  initial- and final-state showers and hadronisation on (Pythia's defaults); particles with
  c*tau > 10 mm are stable (``ParticleDecays:limitTau0``).
* Signal W jets: ``WeakBosonAndParton:qqbar2Wg`` and ``WeakBosonAndParton:qg2Wq`` (W + jet), the W
  forced to hadrons (``24:onIfAny = 1 2 3 4 5``). Boosted Ws come from the W + jet recoil:
  ``PhaseSpace:pTHatMin = pT_min - 50 GeV`` (250 GeV for the default 300-500 GeV window) makes
  about one event in three give a W jet in the window.
* Optional top jets (``process="top"``, label 2): ``Top:gg2ttbar`` and ``Top:qqbar2ttbar`` with both
  Ws to hadrons. At pT 300-500 GeV a top's decay products are often wider than R = 0.8, so a
  higher window (e.g. ``pt_range=(500, 700)``) is more efficient.
* Background QCD jets: ``HardQCD:all`` with the same pTHatMin.
* Jets: FastJet anti-kT, R = 0.8, E-scheme, from all final-state visible particles (no neutrinos)
  with |eta| < 5. At most ONE jet per event is kept: the highest-pT jet with
  pT_min <= pT < pT_max and |eta| < 2.5 that, for signal, is matched to a hadronically decaying
  W (top): dR(jet, W) < 0.6 and every decay quark of the W (top) within dR < 0.8 of the jet axis
  (the quark directions are before showering), so it is a real, contained W (top) jet. For QCD,
  the highest-pT jet in the window.
* Features (see :mod:`hepinfer.datasets.schema`): jet pT, eta, phi, mass, energy, soft-drop
  mass (z_cut = 0.1, beta = 0), N-subjettiness tau1..3 (beta = 1, exclusive-kT axes, R0 = 0.8,
  computed in numpy by :mod:`hepinfer.datasets.substructure`, checked against FastJet-contrib),
  tau21, tau32, constituent count and the jagged constituents (pt, eta, phi, energy as float32;
  charge, pdgId as int32), sorted by decreasing pT; the label (0 QCD, 1 W, 2 top), an event
  number and the generator weight (1: Pythia's events are unweighted).
* Reproducible: each chunk of up to 500 jets per class has its own Pythia seed derived from
  ``seed`` (``Random:setSeed``, ``Random:seed``); the same parameters give the same jets and
  the same arrays in the file (the ROOT file's bytes differ by its creation time and UUID),
  whatever ``n_workers``. The jets of both classes are shuffled with ``seed``. ``event`` is
  ``chunk * 10^7 + index of the Pythia event in its chunk`` (unique within a class).
* Cached in ``$HEPINFER_CACHE/datasets`` (default ``~/.cache/hepinfer/datasets``), the file name
  holding a hash of all parameters, the format version and the Pythia/FastJet versions.

The committed sample (``default_sample_path()``) and how it was made: see ``data/README.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional, Union

from hepinfer.datasets.pythia import cache_dir, generate_jets
from hepinfer.datasets.schema import CONSTITUENT_BRANCHES, JET_BRANCHES, LABELS, TREE_NAME
from hepinfer.datasets.substructure import jet_substructure, n_subjettiness, soft_drop_mass
from hepinfer.datasets.toy import generate_toy_jets

__all__ = [
    "CONSTITUENT_BRANCHES",
    "DEFAULT_SAMPLE_ARGS",
    "JET_BRANCHES",
    "LABELS",
    "TREE_NAME",
    "cache_dir",
    "default_sample_path",
    "generate_jets",
    "generate_toy_jets",
    "jet_substructure",
    "load_jets",
    "main",
    "n_subjettiness",
    "soft_drop_mass",
]

#: How the committed sample was generated (``python -m hepinfer.datasets generate`` arguments).
DEFAULT_SAMPLE_ARGS = dict(n_signal=2000, n_background=2000, process="W", pt_range=(300.0, 500.0), seed=2026)


def default_sample_path() -> Path:
    """The committed sample: 2000 W jets + 2000 QCD jets, pT 300-500 GeV (see ``data/README.md``)."""
    return Path(__file__).resolve().parent / "data" / "jets_w_qcd.root"


def load_jets(path: Union[str, Path, None] = None, library: str = "ak") -> Any:
    """Read a jet sample (default: :func:`default_sample_path`).

    ``library="ak"``: an awkward Array of jet records (fields as in
    :mod:`hepinfer.datasets.schema`, ``constituent_*`` jagged). ``library="np"``: a dict of numpy
    arrays, the constituent columns flattened over jets plus ``constituent_offsets`` (n_jets + 1).
    """
    from hepinfer.datasets.schema import read_jets

    return read_jets(default_sample_path() if path is None else path, library=library)


def _cmd_generate(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    path = generate_jets(
        args.signal,
        args.background,
        process=args.process,
        pt_range=(args.pt_min, args.pt_max),
        seed=args.seed,
        output=args.output,
        progress=not args.no_progress,
        n_workers=args.workers,
        cache=not args.no_cache,
    )
    print(f"{path}  ({time.perf_counter() - start:.1f} s)")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    import numpy as np

    columns = load_jets(args.file, library="np")
    names = {v: k for k, v in LABELS.items()}
    print(f"file         {args.file or default_sample_path()}")
    print(f"jets         {len(columns['label'])}")
    for label in np.unique(columns["label"]):
        sel = columns["label"] == label
        print(
            f"{names.get(int(label), label):<12} {int(sel.sum())} jets, median mass {np.median(columns['jet_mass'][sel]):.1f} GeV, "
            f"median soft-drop mass {np.median(columns['jet_sd_mass'][sel]):.1f} GeV, "
            f"median tau21 {np.nanmedian(columns['tau21'][sel]):.3f}, "
            f"mean constituents {columns['n_constituents'][sel].mean():.1f}"
        )
    return 0


def main(argv: Optional[Sequence[str]] = None, prog: str = "python -m hepinfer.datasets") -> int:
    """``python -m hepinfer.datasets {generate,info} ...``; returns the exit status.

    ``hepinfer generate ...`` forwards here with ``main(["generate", ...], prog="hepinfer")``.
    """
    parser = argparse.ArgumentParser(prog=prog, description=(__doc__ or "").splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("generate", help="generate a Pythia 8 + FastJet jet sample (ROOT file)")
    p.add_argument("--signal", type=int, default=2000, help="number of signal (W or top) jets")
    p.add_argument("--background", type=int, default=2000, help="number of QCD jets")
    p.add_argument("--process", choices=["W", "top"], default="W", help="signal process")
    p.add_argument("--pt-min", type=float, default=300.0, help="jet pT window lower edge [GeV]")
    p.add_argument("--pt-max", type=float, default=500.0, help="jet pT window upper edge [GeV]")
    p.add_argument("--seed", type=int, default=1, help="random seed")
    p.add_argument("-o", "--output", type=Path, default=None, help="output file (default: the cached file)")
    p.add_argument("--workers", type=int, default=1, help="worker processes")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-cache", action="store_true", help="regenerate even if a cached sample exists")
    p.set_defaults(func=_cmd_generate)
    p = sub.add_parser("info", help="summarise a jet sample")
    p.add_argument("file", nargs="?", type=Path, default=None, help="sample (default: the committed one)")
    p.set_defaults(func=_cmd_info)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (ValueError, RuntimeError, OSError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
