"""Boosted-jet samples from Pythia 8 + FastJet (see :mod:`hepinfer.datasets` for the physics).

One generation is split into chunks of at most ``CHUNK_JETS`` jets per class; chunk ``k`` of class
``c`` runs its own Pythia instance seeded from ``SeedSequence([seed, c, k])``, so the content does
not depend on how many worker processes ran the chunks. Chunks are merged in (class, chunk) order
and the jets are then shuffled with ``default_rng(seed)``.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from queue import Empty
from typing import Any, Callable, Optional, Union

import numpy as np

from hepinfer.datasets import schema

__all__ = ["FORMAT_VERSION", "cache_dir", "generate_jets", "pythia_settings", "sample_key"]

#: Bumped whenever a change to the generator changes the content of a sample with given parameters.
FORMAT_VERSION = 1
CHUNK_JETS = 500
EVENT_STRIDE = 10_000_000  # event = chunk * EVENT_STRIDE + index of the Pythia event in its chunk
PARTICLE_ETA_MAX = 5.0  # particles given to the jet finder
MAX_EVENTS_PER_JET = 200  # give up when a chunk needs more events than this per requested jet
_BATCH_EVENTS = 64  # events clustered together by FastJet

_PROCESS_SETTINGS = {
    "W": ["WeakBosonAndParton:qqbar2Wg = on", "WeakBosonAndParton:qg2Wq = on"],
    "top": ["Top:gg2ttbar = on", "Top:qqbar2ttbar = on"],
    "QCD": ["HardQCD:all = on"],
}
_RESONANCE = {"W": 24, "top": 6}


def cache_dir() -> Path:
    """Where generated samples are cached: ``$HEPINFER_CACHE/datasets`` or ``~/.cache/hepinfer/datasets``."""
    root = os.environ.get("HEPINFER_CACHE")
    base = Path(root) if root else Path.home() / ".cache" / "hepinfer"
    return base / "datasets"


def pythia_settings(kind: str, seed: int, pt_hat_min: float) -> list[str]:
    """The Pythia ``readString`` lines for one chunk of ``kind`` ("W", "top" or "QCD")."""
    if kind not in _PROCESS_SETTINGS:
        raise ValueError(f"unknown process {kind!r}; expected one of {sorted(_PROCESS_SETTINGS)}")
    return [
        "Beams:eCM = 13000.",
        *_PROCESS_SETTINGS[kind],
        f"PhaseSpace:pTHatMin = {pt_hat_min:.6g}",
        "24:onMode = off",  # W -> hadrons only (the W of the signal and of t -> bW)
        "24:onIfAny = 1 2 3 4 5",
        "ParticleDecays:limitTau0 = on",  # particles with c*tau > 10 mm are stable (LHC convention)
        "ParticleDecays:tau0Max = 10.",
        "Random:setSeed = on",
        f"Random:seed = {seed}",
        "Print:quiet = on",
        "Print:errors = off",
    ]


def _chunk_seed(seed: int, label: int, chunk: int) -> int:
    state = np.random.SeedSequence([seed, label, chunk]).generate_state(1)[0]
    return int(state % 900_000_000) + 1  # Pythia accepts 1 .. 900 000 000


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Silence C/C++ output on file descriptor 1 (FastJet prints a banner on first use)."""
    try:
        sys.stdout.flush()
        saved = os.dup(1)
        libc: Any = ctypes.CDLL(None)
    except (OSError, ValueError, AttributeError, TypeError):  # no fd 1 or no C library (Windows)
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
            try:
                yield
            finally:
                libc.fflush(None)
    finally:
        os.dup2(saved, 1)
        os.close(saved)


_FASTJET_BANNER_SHOWN = False


def _cluster(particles: list[np.ndarray], min_pt: float) -> list[list[np.ndarray]]:
    """Anti-kT R = 0.8 jets (FastJet, E-scheme) of each event: constituent indices per jet."""
    global _FASTJET_BANNER_SHOWN
    import awkward as ak
    import fastjet

    counts = np.array([len(p) for p in particles], dtype=np.int64)
    flat = np.concatenate(particles) if particles else np.zeros((0, 4))
    events = ak.zip(
        {name: ak.unflatten(flat[:, i].copy(), counts) for i, name in enumerate(("px", "py", "pz", "E"))}
    )
    jet_def = fastjet.JetDefinition(fastjet.antikt_algorithm, 0.8)
    if not _FASTJET_BANNER_SHOWN:
        with _quiet_stdout():
            sequence = fastjet.ClusterSequence(events, jet_def)
            indices = sequence.constituent_index(min_pt)
        _FASTJET_BANNER_SHOWN = True
    else:
        sequence = fastjet.ClusterSequence(events, jet_def)
        indices = sequence.constituent_index(min_pt)
    flat_index = np.asarray(ak.to_numpy(ak.flatten(indices, axis=None)), dtype=np.int64)
    per_jet = np.asarray(ak.to_numpy(ak.flatten(ak.num(indices, axis=2), axis=None)), dtype=np.int64)
    per_event = np.asarray(ak.to_numpy(ak.num(indices, axis=1)), dtype=np.int64)
    jets = np.split(flat_index, np.cumsum(per_jet)[:-1]) if len(per_jet) else []
    bounds = np.concatenate([[0], np.cumsum(per_event)])
    return [jets[bounds[e] : bounds[e + 1]] for e in range(len(particles))]


def _event_particles(event: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Final-state visible particles (no neutrinos) with |eta| < 5: (p4 n x 4, charge, pdgId)."""
    rows = []
    for i in range(event.size()):
        p = event[i]
        if p.isFinal() and p.isVisible() and p.pT() > 0.0 and abs(p.eta()) < PARTICLE_ETA_MAX:
            rows.append((p.px(), p.py(), p.pz(), p.e(), p.charge(), p.id()))
    table = np.array(rows, dtype=np.float64).reshape(-1, 6)
    return table[:, :4].copy(), np.rint(table[:, 4]).astype(np.int32), table[:, 5].astype(np.int32)


def _truth(pythia: Any, kind: str) -> list[tuple[float, float, list[tuple[float, float]]]]:
    """(eta, phi, [(eta, phi) of the decay quarks]) of each hadronically decaying W / top."""
    if kind not in _RESONANCE:
        return []
    event = pythia.event
    out = []
    for i in range(min(pythia.process.size(), event.size())):
        if event[i].idAbs() != _RESONANCE[kind] or event[i].iTopCopyId() != i:
            continue
        res = event[event[i].iBotCopyId()]
        quarks = []
        for d in res.daughterList():
            q = event[d]
            if q.idAbs() == 24:  # t -> W b: follow the W to its quarks
                w = event[q.iBotCopyId()]
                quarks += [event[k] for k in w.daughterList()]
            else:
                quarks.append(q)
        if quarks and all(1 <= q.idAbs() <= 5 for q in quarks):
            out.append((res.eta(), res.phi(), [(q.eta(), q.phi()) for q in quarks]))
    return out


def _delta_r(eta1: float, phi1: float, eta2: float, phi2: float) -> float:
    dphi = abs(phi1 - phi2)
    if dphi > np.pi:
        dphi = 2.0 * np.pi - dphi
    return float(np.hypot(eta1 - eta2, dphi))


def _generate_chunk(
    kind: str,
    chunk: int,
    n_jets: int,
    seed: int,
    pt_range: tuple[float, float],
    eta_max: float,
    pt_hat_min: float,
    match_radius: float,
    on_jet: Optional[Callable[[], None]] = None,
) -> dict[str, np.ndarray]:
    """``n_jets`` jets of one class from one Pythia instance (see the package docstring)."""
    import pythia8mc

    label = schema.LABELS[kind]
    pythia = pythia8mc.Pythia("", False)
    for line in pythia_settings(kind, _chunk_seed(seed, label, chunk), pt_hat_min):
        if not pythia.readString(line):
            raise RuntimeError(f"Pythia rejected the setting {line!r}")
    if not pythia.init():
        raise RuntimeError(f"Pythia failed to initialise for process {kind!r}")
    lo, hi = pt_range
    constituents: list[np.ndarray] = []
    charges: list[np.ndarray] = []
    ids: list[np.ndarray] = []
    events: list[int] = []
    weights: list[float] = []
    n_events = 0
    max_events = max(2000, MAX_EVENTS_PER_JET * n_jets)
    while len(constituents) < n_jets:
        if n_events >= max_events:
            raise RuntimeError(
                f"{kind}: only {len(constituents)} of {n_jets} jets in {n_events} events; "
                f"the pT window {pt_range} is too far from PhaseSpace:pTHatMin = {pt_hat_min}"
            )
        batch = []
        for _ in range(_BATCH_EVENTS):
            index = n_events
            n_events += 1
            if not pythia.next():
                continue
            p4, q, pid = _event_particles(pythia.event)
            batch.append((index, p4, q, pid, _truth(pythia, kind), pythia.infoPython().weight()))
        jets_per_event = _cluster([b[1] for b in batch], 0.95 * lo)
        for (index, p4, q, pid, truth, weight), jets in zip(batch, jets_per_event):
            best = None
            for members in jets:
                jet = p4[members].sum(axis=0)
                pt = float(np.hypot(jet[0], jet[1]))
                if not lo <= pt < hi:
                    continue
                eta = float(np.arcsinh(jet[2] / pt))
                if abs(eta) >= eta_max:
                    continue
                if kind != "QCD":
                    phi = float(np.arctan2(jet[1], jet[0]))
                    matched = any(
                        _delta_r(eta, phi, t_eta, t_phi) < match_radius
                        and all(_delta_r(eta, phi, q_eta, q_phi) < 0.8 for q_eta, q_phi in quarks)
                        for t_eta, t_phi, quarks in truth
                    )
                    if not matched:
                        continue
                if best is None or pt > best[0]:
                    best = (pt, members)
            if best is None:
                continue
            members = best[1]
            constituents.append(p4[members])
            charges.append(q[members])
            ids.append(pid[members])
            events.append(chunk * EVENT_STRIDE + index)
            weights.append(weight)
            if on_jet is not None:
                on_jet()
            if len(constituents) == n_jets:
                break
    return schema.build_jets(constituents, charges, ids, [label] * n_jets, events, weights)


def _run_chunk(args: tuple, queue: Any = None) -> dict[str, np.ndarray]:
    """Worker-process entry: one chunk, reporting each accepted jet to ``queue`` (progress bar)."""
    return _generate_chunk(*args, on_jet=None if queue is None else (lambda: queue.put(1)))  # type: ignore[misc]


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for dist in ("pythia8mc", "fastjet"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "absent"
    return out


def sample_key(**params: Any) -> str:
    """A short hash of the generation parameters, FORMAT_VERSION and the generator versions."""
    blob = json.dumps(
        {**params, "format": FORMAT_VERSION, "chunk": CHUNK_JETS, **_versions()}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def generate_jets(
    n_signal: int,
    n_background: int,
    *,
    process: str = "W",
    pt_range: tuple[float, float] = (300.0, 500.0),
    seed: int = 1,
    output: Union[str, Path, None] = None,
    progress: bool = True,
    n_workers: int = 1,
    eta_max: float = 2.5,
    pt_hat_min: Optional[float] = None,
    match_radius: float = 0.6,
    cache: bool = True,
) -> Path:
    """Generate ``n_signal`` W (or top) jets and ``n_background`` QCD jets; return the ROOT file.

    The sample is cached under :func:`cache_dir` keyed by every parameter (except ``output``,
    ``progress``, ``n_workers`` and ``cache``, which do not change the content), the format
    version and the Pythia/FastJet versions: a second call with the same parameters returns at
    once. ``cache=False`` regenerates (and refreshes the cached file). With ``output`` the file
    is also copied there and that path is returned.

    ``pt_hat_min`` defaults to ``pt_range[0] - 50`` GeV. ``n_workers`` > 1 runs chunks of
    ``CHUNK_JETS`` jets in that many processes; the result is the same for any ``n_workers``.
    """
    if process not in ("W", "top"):
        raise ValueError(f"process must be 'W' or 'top', not {process!r}")
    if n_signal < 0 or n_background < 0 or n_signal + n_background == 0:
        raise ValueError(f"need n_signal, n_background >= 0 and not both 0, got {n_signal}, {n_background}")
    lo, hi = float(pt_range[0]), float(pt_range[1])
    if not 0.0 < lo < hi:
        raise ValueError(f"pt_range must be (low, high) with 0 < low < high, got {pt_range}")
    if pt_hat_min is None:
        pt_hat_min = max(lo - 50.0, 0.0)
    if not 0 <= seed < 2**63:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    params = dict(
        process=process, n_signal=int(n_signal), n_background=int(n_background), pt_range=[lo, hi],
        seed=int(seed), eta_max=float(eta_max), pt_hat_min=float(pt_hat_min), match_radius=float(match_radius),
    )  # fmt: skip
    name = f"jets-{process}-{n_signal}s-{n_background}b-seed{seed}-{sample_key(**params)}.root"
    cached = cache_dir() / name
    if not (cache and cached.exists()):
        columns = _generate(params, progress=progress, n_workers=n_workers)
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f".{cached.name}.{os.getpid()}.tmp")
        schema.write_jets(tmp, columns)
        os.replace(tmp, cached)
    if output is None:
        return cached
    output = Path(output)
    if output.resolve() != cached.resolve():
        shutil.copyfile(cached, output)
    return output


def _generate(params: dict, progress: bool, n_workers: int) -> dict[str, np.ndarray]:
    from tqdm.auto import tqdm

    tasks = []
    for kind, n in ((params["process"], params["n_signal"]), ("QCD", params["n_background"])):
        for chunk, start in enumerate(range(0, n, CHUNK_JETS)):
            tasks.append(
                (kind, chunk, min(CHUNK_JETS, n - start), params["seed"], tuple(params["pt_range"]),
                 params["eta_max"], params["pt_hat_min"], params["match_radius"])
            )  # fmt: skip
    total = params["n_signal"] + params["n_background"]
    with tqdm(total=total, disable=not progress, file=sys.stderr, unit="jet", desc="Pythia jets") as bar:
        if n_workers <= 1 or len(tasks) == 1:
            parts = [_generate_chunk(*task, on_jet=lambda: bar.update(1)) for task in tasks]
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            context = multiprocessing.get_context("spawn")
            with (
                context.Manager() as manager,
                ProcessPoolExecutor(max_workers=n_workers, mp_context=context) as pool,
            ):
                queue = manager.Queue()
                futures = [pool.submit(_run_chunk, task, queue) for task in tasks]
                while not all(f.done() for f in futures):
                    try:
                        bar.update(queue.get(timeout=0.25))
                    except Empty:
                        pass
                parts = [f.result() for f in futures]  # in task order: deterministic merge
                bar.update(total - bar.n)
    columns = schema.concatenate(parts)
    order = np.random.default_rng(params["seed"]).permutation(total)
    return schema.take(columns, order)
