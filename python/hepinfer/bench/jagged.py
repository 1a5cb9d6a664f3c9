#!/usr/bin/env python3
"""Jagged feature-building benchmark: hepinfer.jagged against the same operations written
idiomatically in awkward, in one process and one run.

    hepinfer bench jagged                  # 1e6 events (about a minute)
    hepinfer bench jagged --quick          # 1e5 events, 3 repeats
    hepinfer bench jagged --events 300000 --threads 1,all --json out.json
    hepinfer bench jagged --file nano.root # also a NanoAOD file (Jet_*, Muon_* branches)

Operations (jets: pt, eta, phi, mass float32, counts ~ Poisson(6); leptons: eta, phi,
counts ~ Poisson(1.5); int64 offsets as uproot gives):
  leading4   top-4 jets by pt, 4 columns padded with 0 + mask (argsort, slicing,
             ak.pad_none, ak.fill_none, ak.to_numpy per column)
  pad6       jet pt padded/truncated to 6 + mask
  sum_pt     per-event sum of jet pt (HT)
  max_pt     per-event max of jet pt, empty -> NaN (ak.max + ak.fill_none)
  count      jets per event (ak.num)
  min_dr     for every jet the smallest Delta R to a lepton and its index (ak.cartesian nested)
  to_pxpypze (px, py, pz, E) of every jet (numpy ufuncs on awkward arrays)

Every hepinfer result is compared with awkward's before timing. Timings are medians of
several repeats after a warm-up call; speed-up = awkward time / hepinfer time. The real
file is scikit-hep-testdata's nanoAOD_2015_CMS_Open_Data_ttbar.root when it can be had
(it is downloaded on first use), or --file.

This file is importable by path: the entry point is main(argv=None) -> int.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from typing import Any, Callable, Optional

import numpy as np

from hepinfer.bench import add_output_arguments, import_reason, output_path, require


def make_events(n: int, seed: int) -> tuple[Any, Any]:
    import awkward as ak

    rng = np.random.default_rng(seed)

    def collection(mean: float, fields: dict[str, Callable[[int], np.ndarray]]) -> Any:
        counts = rng.poisson(mean, n)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        m = int(offsets[-1])
        content = ak.contents.RecordArray(
            [ak.contents.NumpyArray(f(m).astype(np.float32)) for f in fields.values()], list(fields)
        )
        return ak.Array(ak.contents.ListOffsetArray(ak.index.Index64(offsets), content))

    jets = collection(
        6.0,
        {
            "pt": lambda m: 20 + rng.exponential(40.0, m),
            "eta": lambda m: rng.uniform(-2.5, 2.5, m),
            "phi": lambda m: rng.uniform(-np.pi, np.pi, m),
            "mass": lambda m: rng.exponential(8.0, m),
        },
    )
    leptons = collection(
        1.5, {"eta": lambda m: rng.uniform(-2.5, 2.5, m), "phi": lambda m: rng.uniform(-np.pi, np.pi, m)}
    )
    return jets, leptons


def load_file(path: str) -> tuple[Any, Any]:
    import awkward as ak
    import uproot

    with uproot.open(path) as f:
        tree = f["Events"]
        arrays = tree.arrays(["Jet_pt", "Jet_eta", "Jet_phi", "Jet_mass", "Muon_eta", "Muon_phi"])
    jets = ak.zip({k[4:]: arrays[k] for k in ("Jet_pt", "Jet_eta", "Jet_phi", "Jet_mass")})
    muons = ak.zip({"eta": arrays["Muon_eta"], "phi": arrays["Muon_phi"]})
    return jets, muons


# --- the operations, both ways ---------------------------------------------------------------

FIELDS = ["pt", "eta", "phi", "mass"]


def ak_leading4(jets: Any, leptons: Any) -> Any:
    import awkward as ak

    order = ak.argsort(jets.pt, axis=1, ascending=False)
    top = jets[order][:, :4]
    out = {}
    for f in FIELDS:
        out[f] = ak.to_numpy(ak.fill_none(ak.pad_none(top[f], 4, axis=1, clip=True), 0.0))
    mask = ~ak.to_numpy(ak.is_none(ak.pad_none(top.pt, 4, axis=1, clip=True), axis=1))
    return out, mask


def hi_leading4(jets: Any, leptons: Any, n_threads: Optional[int]) -> Any:
    import hepinfer.jagged as hj

    return hj.leading(jets, k=4, by="pt", fields=FIELDS, fill=0.0, n_threads=n_threads)


def ak_pad6(jets: Any, leptons: Any) -> Any:
    import awkward as ak

    p = ak.pad_none(jets.pt, 6, axis=1, clip=True)
    return ak.to_numpy(ak.fill_none(p, 0.0)), ~ak.to_numpy(ak.is_none(p, axis=1))


def hi_pad6(jets: Any, leptons: Any, n_threads: Optional[int]) -> Any:
    import hepinfer.jagged as hj

    return hj.pad(jets.pt, 6, fill=0.0, n_threads=n_threads)


def ak_sum(jets: Any, leptons: Any) -> Any:
    import awkward as ak

    return ak.to_numpy(ak.sum(jets.pt, axis=1))


def hi_sum(jets: Any, leptons: Any, n_threads: Optional[int]) -> Any:
    import hepinfer.jagged as hj

    return hj.event_sum(jets, "pt", n_threads=n_threads)


def ak_max(jets: Any, leptons: Any) -> Any:
    import awkward as ak

    return ak.to_numpy(ak.fill_none(ak.max(jets.pt, axis=1), np.nan))


def hi_max(jets: Any, leptons: Any, n_threads: Optional[int]) -> Any:
    import hepinfer.jagged as hj

    return hj.event_max(jets, "pt", n_threads=n_threads)


def ak_count(jets: Any, leptons: Any) -> Any:
    import awkward as ak

    return ak.to_numpy(ak.num(jets, axis=1))


def hi_count(jets: Any, leptons: Any, n_threads: Optional[int]) -> Any:
    import hepinfer.jagged as hj

    return hj.event_count(jets, n_threads=n_threads)


def ak_min_dr(jets: Any, leptons: Any) -> Any:
    import awkward as ak

    pairs = ak.cartesian({"j": jets, "l": leptons}, axis=1, nested=True)
    d_phi = (pairs.j.phi - pairs.l.phi + np.pi) % (2 * np.pi) - np.pi
    dr = np.sqrt((pairs.j.eta - pairs.l.eta) ** 2 + d_phi**2)
    return (
        ak.to_numpy(ak.flatten(ak.fill_none(ak.min(dr, axis=2), np.inf))),
        ak.to_numpy(ak.flatten(ak.fill_none(ak.argmin(dr, axis=2), -1))),
    )


def hi_min_dr(jets: Any, leptons: Any, n_threads: Optional[int]) -> Any:
    import awkward as ak

    import hepinfer.jagged as hj

    dr, index = hj.min_delta_r(jets, leptons, n_threads=n_threads)
    return ak.to_numpy(ak.flatten(dr)), ak.to_numpy(ak.flatten(index))


def ak_pxpypze(jets: Any, leptons: Any) -> Any:
    import awkward as ak

    pt, eta, phi, m = jets.pt, jets.eta, jets.phi, jets.mass
    pz = pt * np.sinh(eta)
    out = (pt * np.cos(phi), pt * np.sin(phi), pz, np.sqrt(pt**2 + pz**2 + m**2))
    return tuple(ak.to_numpy(ak.flatten(x)) for x in out)


def hi_pxpypze(jets: Any, leptons: Any, n_threads: Optional[int]) -> Any:
    import awkward as ak

    import hepinfer.jagged as hj

    out = hj.to_px_py_pz_e(jets.pt, jets.eta, jets.phi, jets.mass, n_threads=n_threads)
    return tuple(ak.to_numpy(ak.flatten(x)) for x in out)


OPERATIONS: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
    "leading4": (ak_leading4, hi_leading4),
    "pad6": (ak_pad6, hi_pad6),
    "sum_pt": (ak_sum, hi_sum),
    "max_pt": (ak_max, hi_max),
    "count": (ak_count, hi_count),
    "min_dr": (ak_min_dr, hi_min_dr),
    "to_pxpypze": (ak_pxpypze, hi_pxpypze),
}


def _flat(x: Any) -> list[np.ndarray]:
    if isinstance(x, dict):
        return [np.asarray(x[k]) for k in sorted(x)]
    if isinstance(x, tuple):
        out: list[np.ndarray] = []
        for item in x:
            out.extend(_flat(item))
        return out
    return [np.asarray(x)]


def compare(name: str, ref: Any, got: Any) -> float:
    """Max abs difference between awkward's and hepinfer's results (raises on shape mismatch)."""
    worst = 0.0
    for a, b in zip(_flat(ref), _flat(got), strict=True):
        if a.shape != b.shape:
            raise AssertionError(f"{name}: shapes differ {a.shape} vs {b.shape}")
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        both_nan = np.isnan(a64) & np.isnan(b64)
        same = (a64 == b64) | both_nan
        if not same.all():
            d = np.abs(a64[~same] - b64[~same])
            worst = max(worst, float(np.nanmax(d)) if d.size else 0.0)
    return worst


def timeit(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run_dataset(
    label: str,
    jets: Any,
    leptons: Any,
    ops: list[str],
    threads: list[Optional[int]],
    repeats: int,
    results: list[dict[str, Any]],
) -> None:
    import awkward as ak

    n_events = len(jets)
    n_jets = int(ak.sum(ak.num(jets)))
    print(f"\n{label}: {n_events} events, {n_jets} jets ({n_jets / max(n_events, 1):.2f} per event)")
    header = f"{'operation':<12} {'awkward ms':>11}" + "".join(
        f" {'hepinfer ms (' + _tname(t) + ')':>20} {'speed-up':>9}" for t in threads
    )
    print(header)
    print("-" * len(header))
    for op in ops:
        ak_fn, hi_fn = OPERATIONS[op]
        ref = ak_fn(jets, leptons)
        diff = compare(op, ref, hi_fn(jets, leptons, 1))
        t_ak = timeit(lambda f=ak_fn: f(jets, leptons), repeats)
        row = f"{op:<12} {t_ak * 1e3:>11.2f}"
        for t in threads:
            t_hi = timeit(lambda f=hi_fn, t=t: f(jets, leptons, t), repeats)
            row += f" {t_hi * 1e3:>20.2f} {t_ak / t_hi:>8.1f}x"
            results.append(
                {
                    "dataset": label,
                    "operation": op,
                    "n_events": n_events,
                    "threads": _tname(t),
                    "awkward_s": t_ak,
                    "hepinfer_s": t_hi,
                    "speedup": t_ak / t_hi,
                    "max_abs_diff": diff,
                }
            )
        print(row + (f"   (max |diff| {diff:.3g})" if diff else ""))


def _tname(t: Optional[int]) -> str:
    return "all" if t is None else str(t)


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(
        prog="hepinfer bench jagged",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="1e5 events, 3 repeats")
    p.add_argument("--events", type=int, default=None, help="synthetic events (default 1e6; quick 1e5)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats (default 7; quick 3)")
    p.add_argument("--threads", default="1,all", help="comma list of thread counts; 'all' = every core")
    p.add_argument("--ops", default=",".join(OPERATIONS), help="comma list of operations")
    p.add_argument(
        "--file", default=None, help="a NanoAOD-like ROOT file (default: scikit-hep-testdata's, if any)"
    )
    p.add_argument("--no-file", action="store_true", help="skip the real-file part")
    p.add_argument("--seed", type=int, default=2024)
    add_output_arguments(p, "jagged")
    args = p.parse_args(argv)
    try:
        json_path = output_path(args, "jagged")
    except ValueError as bad:
        p.error(str(bad))
    require("awkward")

    import awkward as ak

    import hepinfer

    n_events = args.events or (100_000 if args.quick else 1_000_000)
    repeats = args.repeats or (3 if args.quick else 7)
    threads: list[Optional[int]] = [None if t.strip() == "all" else int(t) for t in args.threads.split(",")]
    ops = [o.strip() for o in args.ops.split(",") if o.strip()]
    for o in ops:
        if o not in OPERATIONS:
            p.error(f"unknown operation {o!r} (known: {', '.join(OPERATIONS)})")
    print(
        f"hepinfer {hepinfer.__version__}, awkward {ak.__version__}, numpy {np.__version__}, "
        f"python {platform.python_version()}, {os.cpu_count()} cores"
    )
    results: list[dict[str, Any]] = []
    jets, leptons = make_events(n_events, args.seed)
    run_dataset(
        f"synthetic (Poisson 6 jets, {n_events} events)", jets, leptons, ops, threads, repeats, results
    )

    if not args.no_file:
        path = args.file
        if path is None:
            try:
                import skhep_testdata

                path = skhep_testdata.data_path("nanoAOD_2015_CMS_Open_Data_ttbar.root")
            except ImportError as err:
                print(f"\nreal file: unavailable ({import_reason(err)})")
            except OSError as err:  # downloaded on first use: may be unavailable offline
                print(f"\nreal file: unavailable ({type(err).__name__}: {str(err)[:120]})")
        if path is not None:
            fj, fm = load_file(path)
            run_dataset(f"file {os.path.basename(path)}", fj, fm, ops, threads, repeats, results)

    if json_path:
        with open(json_path, "w") as f:
            json.dump(
                {"benchmark": "jagged", "events": n_events, "repeats": repeats, "results": results},
                f,
                indent=1,
            )
        print(f"\nwrote {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
