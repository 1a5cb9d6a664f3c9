"""The training sample: what ``[data]`` names, read from wherever the events are.

:func:`load_data` turns a :class:`~hepinfer.train.config.RunConfig` (its ``[data]`` section and
the model kind) into a :class:`TrainingData`: numpy arrays with one row per event, holding only
the columns the run needs. Sources:

* ``"toy"`` / ``"pythia"``: the samples of :mod:`hepinfer.datasets`;
* ROOT files, TTrees or RNTuples: a path, a glob pattern, a ``"file.root:tree"`` spec or a list of
  those (``data.tree`` names the tree where the spec does not), read in chunks of
  ``data.chunk_size`` with :func:`hepinfer.io.iterate`, as :func:`hepinfer.score` reads them;
* ``.parquet`` files (read in row batches) and ``.npz`` files;
* from Python, ``load_data(config, arrays)`` with an awkward Array of records, a pandas
  DataFrame or a dict of numpy/awkward columns (or ``{class name: table}`` with ``data.classes``).

Every feature, the label (``data.target``), the weight, the event number, the decorrelation
variable (``data.mass``) and the per-particle inputs are branch names or expressions in the
language of :func:`hepinfer.score` (numpy functions, ``hepinfer.io.PER_EVENT_FUNCTIONS``,
``data.aliases``); per-particle expressions combine jagged branches with per-jet ones
(``"log(c_pt)"``, ``"c_eta - eta"``). The label comes from a branch or from which files an
event was read (``[data.classes]``). Without an event number (``data.event_number = ""``, or
``"auto"`` on a sample without an ``event``-like branch) events are split into folds by a stable
hash of their feature values (:func:`row_hash`), the same on every machine and every run.

Memory: only the needed columns are kept, chunk by chunk; a sample of more than
``data.max_events`` selected events is refused with an error that says so (it is never
truncated silently). With ``data.memory_budget`` set, :func:`open_data` returns a
:class:`StreamingData` instead when the sample would take more than the budget, and
:func:`hepinfer.train.run` trains on it chunk by chunk (:mod:`hepinfer.train.streaming`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Optional, Union

import numpy as np

from hepinfer._core import Error
from hepinfer.train.config import (
    PARTICLE_MODELS,
    REGRESSION_LOSSES,
    ConfigError,
    RunConfig,
    memory_bytes,
    ordered_classes,
)

__all__ = [
    "BUILTIN_PARTICLE_FEATURES",
    "StreamingData",
    "TrainingData",
    "bytes_per_event",
    "load_data",
    "open_data",
    "row_hash",
]

#: ``data.particle_features`` names understood on the samples of :mod:`hepinfer.datasets` (and on
#: files written with its schema), as expressions of the schema's branches.
BUILTIN_PARTICLE_FEATURES: dict[str, str] = {
    "pt_fraction": "constituent_pt / jet_pt",
    "log_pt": "log(fmax(constituent_pt, 0.001))",
    "log_energy": "log(fmax(constituent_energy, 0.001))",
    "deta": "constituent_eta - jet_eta",
    "dphi": "arctan2(sin(constituent_phi - jet_phi), cos(constituent_phi - jet_phi))",
    "charge": "constituent_charge",
}

_EVENT_CANDIDATES = ("event", "Event", "eventNumber", "EventNumber", "event_number", "evt")
_TABLE_SUFFIXES = (".parquet", ".pq", ".npz")


@dataclass
class TrainingData:
    """The events of a training run, one row per event (numpy arrays of equal length).

    ``label``: int64 class index in ``0 .. len(class_names) - 1`` for classifiers (``None`` for
    regression); ``target``: float64, the label as a number or the regression target;
    ``features``: float64 ``(n, len(feature_names))``, NaN kept (empty for particle networks);
    ``particles``/``mask``: float32 ``(n, max_particles, len(particle_feature_names))`` zero-padded
    and its bool mask (``None`` unless the model is a set/graph network); ``event``: non-negative
    int64 event numbers (or row hashes, see ``event_origin``) for the fold split; ``mass``: the
    decorrelation variable (``None`` when ``data.mass = ""``); ``parameter``: the parameterised
    classifier's θ column (or ``None``).
    """

    features: np.ndarray
    feature_names: list[str]
    target: np.ndarray
    weight: np.ndarray
    event: np.ndarray
    label: Optional[np.ndarray] = None
    class_names: list[str] = field(default_factory=list)
    mass: Optional[np.ndarray] = None
    parameter: Optional[np.ndarray] = None
    particles: Optional[np.ndarray] = None
    mask: Optional[np.ndarray] = None
    particle_feature_names: list[str] = field(default_factory=list)
    event_origin: str = ""
    """Where ``event`` comes from: ``"branch 'event'"`` or ``"hash of the features"``."""
    event_expression: str = ""
    """The branch (or expression) the event numbers were read from; ``""`` when they are hashes."""
    sources: list[str] = field(default_factory=list)
    """The files read (or ``"toy"``, ``"pythia"``, ``"arrays"``)."""

    def __len__(self) -> int:
        return len(self.target)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def subset(self, index: Any) -> TrainingData:
        """The events selected by ``index`` (a boolean mask or indices)."""

        def take(a: Optional[np.ndarray]) -> Optional[np.ndarray]:
            return None if a is None else a[index]

        return replace(
            self,
            features=self.features[index],
            target=self.target[index],
            weight=self.weight[index],
            event=self.event[index],
            label=take(self.label),
            mass=take(self.mass),
            parameter=take(self.parameter),
            particles=take(self.particles),
            mask=take(self.mask),
        )


# ---------------------------------------------------------------------------------- hashing


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, elementwise on uint64 (wrapping arithmetic)."""
    h = h ^ (h >> np.uint64(30))
    h = h * np.uint64(0xBF58476D1CE4E5B9)
    h = h ^ (h >> np.uint64(27))
    h = h * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def row_hash(*columns: np.ndarray) -> np.ndarray:
    """A stable non-negative int64 per row from the values of ``columns`` (each ``(n,)`` or
    ``(n, k)``): the fold split's event number where the sample has none. The same values give
    the same hash on every platform and run (values are hashed as float64 bit patterns, NaN and
    -0.0 normalised), so an event stays in its fold when files are reordered or re-read."""
    if not columns:
        raise ValueError("row_hash needs at least one column")
    n = len(columns[0])
    h = np.full(n, 0x9E3779B97F4A7C15, dtype=np.uint64)
    for col in columns:
        raw = np.asarray(col, dtype=np.float64).reshape(n, -1)
        values = np.where(np.isnan(raw), np.nan, raw) + 0.0  # one NaN, -0.0 -> 0.0
        bits = np.ascontiguousarray(values).view(np.uint64)
        for j in range(bits.shape[1]):
            h = _mix(h ^ bits[:, j])
    return (h >> np.uint64(1)).astype(np.int64)


# ---------------------------------------------------------------------------------- the plan


@dataclass
class _Plan:
    """Which expression feeds which column: config key -> expression (flat, one value per
    event) and the per-particle expressions."""

    flat: dict[str, str]
    particle: list[str]
    aliases: dict[str, str]
    cut: Optional[str]
    label_from_files: bool

    def flat_names(self, prefix: str) -> list[str]:
        return [k for k in self.flat if k.startswith(prefix)]


def _plan(config: RunConfig, fields: Optional[Sequence[str]]) -> _Plan:
    """``fields``: the names the first input has (to resolve ``event_number = "auto"`` and the
    built-in particle features), or ``None`` when unknown."""
    d = config.data
    particle_model = config.model.kind in PARTICLE_MODELS
    flat: dict[str, str] = {}
    if not particle_model:
        for i, f in enumerate(d.features):
            flat[f"data.features[{i}]"] = f
    label_from_files = bool(d.classes)
    if not label_from_files:
        flat["data.target"] = d.target
    if d.weight:
        flat["data.weight"] = d.weight
    if d.mass:
        flat["data.mass"] = d.mass
    if d.parameter:
        flat["data.parameter"] = d.parameter
    event = d.event_number
    if event == "auto":
        names = set(fields or ())
        event = next((c for c in _EVENT_CANDIDATES if c in names and c not in d.aliases), "")
    if event:
        flat["data.event_number"] = event
    particle: list[str] = []
    if particle_model:
        names = set(fields or ())
        for p in d.particle_features:
            builtin = BUILTIN_PARTICLE_FEATURES.get(p)
            particle.append(builtin if builtin is not None and p not in names and p not in d.aliases else p)
    return _Plan(flat, particle, dict(d.aliases), d.cut or None, label_from_files)


# ---------------------------------------------------------------------------------- chunks


@dataclass
class _Part:
    """One chunk's columns: config key -> 1-D numpy, and the padded particles."""

    flat: dict[str, np.ndarray]
    particles: Optional[np.ndarray] = None
    mask: Optional[np.ndarray] = None

    @property
    def n_events(self) -> int:
        if self.flat:
            return len(next(iter(self.flat.values())))
        return 0 if self.particles is None else len(self.particles)


def _pad(
    offsets: np.ndarray, content: Sequence[np.ndarray], max_particles: int
) -> tuple[np.ndarray, np.ndarray]:
    from hepinfer.jagged import pad

    values = {f"p{i}": np.nan_to_num(np.asarray(c, dtype=np.float32)) for i, c in enumerate(content)}
    x, mask = pad((np.asarray(offsets, np.int64), values), max_particles, stacked=True, dtype=np.float32)
    return np.asarray(x), np.asarray(mask, dtype=bool)


def _root_parts(
    files: Any, tree: Optional[str], plan: _Plan, config: RunConfig, step: Union[int, str]
) -> Iterator[_Part]:
    from hepinfer.io import _iterate_jagged, _sources, check_branches, iterate, open_tree

    if not plan.particle:
        for chunk in iterate(
            files, plan.flat, tree=tree, aliases=plan.aliases or None, cut=plan.cut, step_size=step
        ):
            yield _Part(dict(chunk.arrays))
        return
    for source in _sources(files, tree):
        # the per-jet columns ride along as ids, which the jagged reader does not check
        opened = open_tree(source)
        try:
            check_branches(source, opened, plan.flat, plan.aliases or None)
        finally:
            opened.file.close()
        for jc in _iterate_jagged(
            source,
            {"data.particle_features": plan.particle},
            {},
            plan.aliases or None,
            plan.cut,
            step,
            {},
            plan.flat,
        ):
            x, mask = _pad(jc.offsets, jc.particles["data.particle_features"], config.data.max_particles)
            yield _Part({k.lstrip("\x00"): v for k, v in jc.arrays.items()}, x, mask)


def _fields_of(table: Any) -> list[str]:
    if isinstance(table, Mapping):
        return [str(k) for k in table]
    fields = getattr(table, "fields", None)
    if fields is not None:
        return list(fields)
    columns = getattr(table, "columns", None)
    if columns is not None:
        return [str(c) for c in columns]
    raise ConfigError(
        f"data: cannot read a {type(table).__name__}; give an awkward Array of records, a pandas DataFrame "
        "or a dict of columns"
    )


def _column_of(table: Any, name: str) -> Any:
    value = table[name]
    if hasattr(value, "to_numpy") and not type(value).__module__.startswith("awkward"):
        value = value.to_numpy()  # pandas
    if isinstance(value, np.ndarray) and value.dtype == object:
        import awkward as ak

        value = ak.Array(value.tolist())
    elif isinstance(value, list):
        import awkward as ak

        value = ak.Array(value)
    return value


def _check_names(
    exprs: Mapping[str, str], aliases: Mapping[str, str], fields: Sequence[str], where: str
) -> None:
    """A ConfigError naming the key if an expression reads a column the table lacks."""
    import difflib

    from hepinfer.io import _functions, _parse_expression, _symbols, validate_expressions

    try:
        validate_expressions(dict(exprs), aliases or None)
    except Error as e:
        raise ConfigError(str(e)) from None
    known = set(fields) | set(aliases) | _functions()
    for key, expr in exprs.items():
        todo, seen = [expr], set()
        while todo:
            text = todo.pop()
            for kind, name in _symbols(_parse_expression(text, key)):
                if kind == "call" or name in seen:
                    continue
                seen.add(name)
                if name in aliases:
                    todo.append(aliases[name])
                elif name not in known:
                    close = difflib.get_close_matches(name, list(fields), n=3)
                    hint = f"; similar names: {', '.join(close)}" if close else ""
                    inside = f" (in {expr!r})" if expr != name else ""
                    raise ConfigError(
                        f"{_key(key)}: column {name!r}{inside} is not in the sample {where} "
                        f"(it has {', '.join(sorted(fields))}){hint}"
                    )


def _key(key: str) -> str:
    """``data.features[2]`` -> ``data.features`` (the message quotes the expression)."""
    return key.split("[", 1)[0]


def _flat_numpy(value: Any, key: str, expr: str, where: str) -> np.ndarray:
    if type(value).__module__.startswith("awkward"):
        import awkward as ak

        if value.ndim != 1:
            raise ConfigError(
                f"{key}: {expr!r} gives {ak.type(value)} in {where}, not one number per event; per-particle "
                "values go in data.particle_features, or reduce them with first(), max_of(), sum_of(), num()"
            )
        value = ak.to_numpy(value)
    a = np.asarray(value)
    if a.ndim == 0:
        raise ConfigError(f"{key}: {expr!r} gives one number, not one per event")
    if a.ndim != 1 or a.dtype.kind not in "fiub":
        raise ConfigError(
            f"{key}: {expr!r} gives {a.dtype} values of shape {a.shape[1:]} in {where}, not numbers"
        )
    return a


def _table_parts(tables: Iterator[Any], plan: _Plan, config: RunConfig, where: str) -> Iterator[_Part]:
    """Chunks of in-memory tables (dicts of columns, awkward records, DataFrames)."""
    from hepinfer.io import _evaluate_expressions

    for table in tables:
        fields = _fields_of(table)
        wanted = {**plan.flat, **{f"data.particle_features[{i}]": p for i, p in enumerate(plan.particle)}}
        if plan.cut:
            wanted["data.cut"] = plan.cut
        _check_names(wanted, plan.aliases, fields, where)
        used = _used_fields(list(wanted.values()), plan.aliases, set(fields))
        arrays = {name: _column_of(table, name) for name in used}
        values = _evaluate_expressions(arrays, list(dict.fromkeys(wanted.values())), plan.aliases, set(used))
        selected = None
        if plan.cut:
            selected = _flat_numpy(values[plan.cut], "data.cut", plan.cut, where)
            if selected.dtype != np.bool_:
                raise ConfigError(f"data.cut: {plan.cut!r} gives {selected.dtype}, not one boolean per event")
        flat = {}
        for key, expr in plan.flat.items():
            col = _flat_numpy(values[expr], key, expr, where)
            flat[key] = col if selected is None else col[selected]
        part = _Part(flat)
        if plan.particle:
            part.particles, part.mask = _particles_of(values, plan, selected, config, where)
        yield part


def _used_fields(exprs: Sequence[str], aliases: Mapping[str, str], fields: set) -> list[str]:
    from hepinfer.io import _fields_read

    return sorted(set(_fields_read(exprs, aliases, fields)))


def _particles_of(
    values: Mapping[str, Any], plan: _Plan, selected: Optional[np.ndarray], config: RunConfig, where: str
) -> tuple[np.ndarray, np.ndarray]:
    import awkward as ak

    offsets: Optional[np.ndarray] = None
    content = []
    for i, expr in enumerate(plan.particle):
        v = values[expr]
        v = ak.Array(v) if not type(v).__module__.startswith("awkward") else v
        if selected is not None:
            v = v[selected]
        if v.ndim != 2:
            raise ConfigError(
                f"data.particle_features[{i}]: {expr!r} gives {ak.type(v)} in {where}, not one number per particle "
                "(use jagged columns, e.g. c_pt, or combine them with per-jet ones: 'c_eta - eta')"
            )
        counts = np.asarray(ak.num(v, axis=1), dtype=np.int64)
        off = np.concatenate([[0], np.cumsum(counts)])
        if offsets is None:
            offsets = off
        elif not np.array_equal(off, offsets):
            raise ConfigError(
                f"data.particle_features: {plan.particle[0]!r} and {expr!r} hold different numbers of particles "
                f"in {where}; every per-particle input needs one value per particle of the same jets"
            )
        content.append(ak.to_numpy(ak.flatten(v, axis=None)))
    assert offsets is not None
    return _pad(offsets, content, config.data.max_particles)


def _npz_tables(path: str) -> Iterator[dict[str, np.ndarray]]:
    with np.load(path) as f:
        yield {k: f[k] for k in f.files}


def _parquet_file(path: str) -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError(
            f"data.source: {path}: reading parquet needs pyarrow (pip install pyarrow)"
        ) from None
    try:
        return pq.ParquetFile(path)
    except Exception as e:  # noqa: BLE001 - pyarrow raises its own kinds on bad files
        raise ConfigError(f"data.source: {path} cannot be read as parquet: {e}") from None


def _parquet_tables(path: str, plan: _Plan, batch: int) -> Iterator[Any]:
    import awkward as ak

    pf = _parquet_file(path)
    fields = set(pf.schema_arrow.names)
    wanted = [*plan.flat.values(), *plan.particle, *([plan.cut] if plan.cut else [])]
    columns = _used_fields(wanted, plan.aliases, fields)
    _check_names(plan.flat, plan.aliases, sorted(fields), path)
    for record_batch in pf.iter_batches(batch_size=batch, columns=columns):
        yield ak.from_arrow(record_batch)


def _events_per_step(chunk_size: str) -> Union[int, str]:
    text = chunk_size.strip()
    return int(text) if text.isdigit() else text


def _table_batch(step: Union[int, str]) -> int:
    return step if isinstance(step, int) else 100_000


def _is_table_file(path: str) -> bool:
    return path.lower().endswith(_TABLE_SUFFIXES)


def _first_fields(files: Any, tree: Optional[str]) -> list[str]:
    """The branch (or column) names of the first input file."""
    from hepinfer.io import _branch_names, expand_files, open_tree

    first = expand_files(files, tree)[0]
    if first.path.lower().endswith(".npz"):
        with np.load(first.path) as f:
            return list(f.files)
    if _is_table_file(first.path):
        return list(_parquet_file(first.path).schema_arrow.names)
    t = open_tree(first)
    try:
        return _branch_names(t)
    finally:
        t.file.close()


def _file_parts(files: Any, plan: _Plan, config: RunConfig, step: Union[int, str]) -> Iterator[_Part]:
    from hepinfer.io import expand_files

    tree = config.data.tree or None
    sources = expand_files(files, tree)
    tables = [s for s in sources if _is_table_file(s.path)]
    if tables and len(tables) != len(sources):
        raise ConfigError("data.source: mix of ROOT and parquet/npz files; give one kind")
    if not tables:
        yield from _root_parts(sources, None, plan, config, step)
        return
    for s in sources:
        if s.path.lower().endswith(".npz"):
            yield from _table_parts(_npz_tables(s.path), plan, config, s.path)
        else:
            yield from _table_parts(_parquet_tables(s.path, plan, _table_batch(step)), plan, config, s.path)


# ---------------------------------------------------------------------------------- assembling


def _generated(config: RunConfig) -> dict[str, np.ndarray]:
    d = config.data
    try:
        import hepinfer.datasets as hd
    except ImportError as e:  # pragma: no cover
        raise ConfigError(f"data.source = {d.source!r} needs hepinfer.datasets ({e})") from None
    if d.source == "toy":
        return dict(hd.generate_toy_jets(d.n_signal, d.n_background, seed=config.seed, library="np"))
    return dict(hd.load_jets(library="np"))


def _generated_parts(config: RunConfig, plan: _Plan) -> Iterator[_Part]:
    """The built-in samples: flat expressions over the per-jet columns, the built-in
    particle features from :func:`hepinfer.datasets.schema.padded_constituents`, other
    particle expressions over the jagged constituents."""
    from hepinfer.datasets.schema import CONSTITUENT_FEATURES, padded_constituents, to_awkward

    columns = _generated(config)
    n = len(columns["constituent_offsets"]) - 1
    names = config.data.particle_features
    builtin = bool(plan.particle) and all(p in CONSTITUENT_FEATURES for p in names)
    if plan.particle and not builtin:
        table: Any = to_awkward(columns)
    else:
        table = {k: v for k, v in columns.items() if np.ndim(v) == 1 and len(v) == n}
    flat_plan = replace(plan, particle=[] if builtin else plan.particle)
    for part in _table_parts(iter([table]), flat_plan, config, f"data.source = {config.data.source!r}"):
        if builtin:
            x, mask = padded_constituents(columns, config.data.max_particles, names)
            if plan.cut:
                keep = _flat_numpy(_table_cut(table, plan), "data.cut", plan.cut, "the generated sample")
                x, mask = x[keep], mask[keep]
            part.particles, part.mask = x, mask
        yield part


def _table_cut(table: Any, plan: _Plan) -> Any:
    from hepinfer.io import _evaluate_expressions

    assert plan.cut is not None
    fields = set(_fields_of(table))
    return _evaluate_expressions(table, [plan.cut], plan.aliases, fields)[plan.cut]


def _check_budget(config: RunConfig, n: int, where: str) -> None:
    limit = config.data.max_events
    if limit and n > limit:
        raise ConfigError(
            f"data.max_events: the sample has more than {limit:,} selected events ({n:,} read so far, from {where}); "
            "raise data.max_events (memory: about 8 bytes per feature per event, 4 per particle value), "
            "or select fewer events with data.cut or fewer files. hepinfer does not truncate silently."
        )


def _collect(
    parts: Iterator[_Part], config: RunConfig, where: str, counted: list[int], limit: int = 0
) -> Optional[list[_Part]]:
    """The chunks of one input; ``limit`` > 0 (events that fit data.memory_budget) replaces the
    data.max_events check: ``None`` as soon as the sample passes it (reading stops there)."""
    out: list[_Part] = []
    for part in parts:
        counted[0] += part.n_events
        if limit:
            if counted[0] > limit:
                return None
        else:
            _check_budget(config, counted[0], where)
        out.append(part)
    return out


def _concat(parts: list[_Part], key: str) -> np.ndarray:
    return np.concatenate([p.flat[key] for p in parts]) if parts else np.zeros(0)


def _groups(config: RunConfig, arrays: Any) -> list[tuple[Optional[int], str, Any]]:
    """(class index or None, description, input) per group of inputs."""
    d = config.data
    if d.classes:
        names = ordered_classes(d)
        if arrays is not None:
            if not isinstance(arrays, Mapping) or set(map(str, arrays)) != set(names):
                raise ConfigError(
                    f"data.classes: give load_data(config, arrays) one table per class {names}, as a dict"
                )
            return [(names.index(str(k)), f"class {k!r}", v) for k, v in arrays.items()]
        return [(names.index(name), f"class {name!r}", d.classes[name]) for name in d.classes]
    if arrays is not None:
        return [(None, "the arrays given", arrays)]
    return [(None, f"data.source = {d.source!r}", d.source)]


_PartSource = tuple[Optional[int], str, Callable[[], Iterator[_Part]]]


def _open_inputs(config: RunConfig, arrays: Any) -> tuple[_Plan, list[_PartSource], list[str]]:
    """The plan and, per group of inputs, (class index or None, description, a function that
    reads its chunks afresh): one chunk -> :class:`_Part` is the step both the in-memory and the
    streaming path use."""
    d = config.data
    step = _events_per_step(d.chunk_size)
    sources: list[str] = []
    plan: Optional[_Plan] = None
    out: list[_PartSource] = []
    for label, where, item in _groups(config, arrays):
        make: Callable[[], Iterator[_Part]]
        if arrays is not None:
            plan = plan or _plan(config, _fields_of(item))
            make = partial(_table_parts_of, item, plan, config, where)
            sources.append("arrays")
        elif label is None and d.source in ("toy", "pythia"):
            plan = plan or _plan(config, _generated_fields(config))
            make = partial(_generated_parts, config, plan)
            sources.append(d.source)
        else:
            from hepinfer.io import expand_files

            files = item if isinstance(item, (str, list)) else str(item)
            try:
                expanded = expand_files(files, d.tree or None)
            except Error as e:
                key = "data.classes" if label is not None else "data.source"
                raise ConfigError(f"{key}: {e}") from None
            plan = plan or _plan(config, _first_fields(files, d.tree or None))
            make = partial(_file_parts, files, plan, config, step)
            sources.extend(str(s) for s in expanded)
        out.append((label, where, make))
    assert plan is not None
    return plan, out, sources


def _table_parts_of(table: Any, plan: _Plan, config: RunConfig, where: str) -> Iterator[_Part]:
    return _table_parts(iter([table]), plan, config, where)


def load_data(config: RunConfig, arrays: Any = None) -> TrainingData:
    """Read the events of ``config.data`` (see the module documentation) into a
    :class:`TrainingData`. ``arrays`` replaces the files: an awkward Array of records, a pandas
    DataFrame or a dict of columns (or, with ``data.classes``, a dict class name -> such a table).

    ``hepinfer.train.run(config, data)`` trains on the result (``run(config)`` calls this
    itself); load once and pass it on to train several models on the same events.

    Raises :class:`~hepinfer.train.config.ConfigError` (or :class:`hepinfer.io.ReadError`, a
    :class:`hepinfer.InputError`) naming the key, the file and the branch at fault.
    """
    plan, inputs, sources = _open_inputs(config, arrays)
    counted = [0]
    collected = []
    for label, where, make in inputs:
        parts = _collect(make(), config, where, counted)
        assert parts is not None  # without a limit, _check_budget raises instead
        collected.append((label, parts))
    return _assemble(config, plan, collected, sources)


def open_data(config: RunConfig) -> Union[TrainingData, StreamingData]:
    """:func:`load_data`, unless ``data.memory_budget`` is set and the sample turns out larger:
    then a :class:`StreamingData` that reads the files again chunk by chunk. The size is checked
    while reading (selected events x :func:`bytes_per_event`), so no more than the budget is
    ever held; what was read is dropped when the budget is passed."""
    d = config.data
    if not d.memory_budget.strip() or (d.source in ("toy", "pythia") and not d.classes):
        return load_data(config)
    plan, inputs, sources = _open_inputs(config, None)
    per_event = bytes_per_event(config, plan)
    limit = max(1, memory_bytes(d.memory_budget) // per_event)
    counted = [0]
    collected = []
    for label, where, make in inputs:
        parts = _collect(make(), config, where, counted, limit)
        if parts is None:  # over the budget: what was read is dropped
            return StreamingData(config, plan, inputs, sources, per_event)
        collected.append((label, parts))
    return _assemble(config, plan, collected, sources)


def bytes_per_event(config: RunConfig, plan: Optional[_Plan] = None) -> int:
    """The in-memory size of one event of the sample: 8 bytes per flat column (features, label,
    weight, event number, mass, ...), 4 per particle value and 1 per particle slot (the mask)."""
    plan = plan or _plan(config, None)
    size = 8 * (len(plan.flat) + 3)  # + target, weight, event as float64/int64 when computed
    if plan.particle:
        size += config.data.max_particles * (4 * len(plan.particle) + 1)
    return size


@dataclass
class StreamingData:
    """A sample too large for ``data.memory_budget``: :meth:`chunks` reads it again, chunk by
    chunk (``data.chunk_size``), each chunk a :class:`TrainingData` built exactly as
    :func:`load_data` builds the whole sample (same expressions, labels, event numbers or row
    hashes), so the fold split by event number is the same event by event."""

    config: RunConfig
    plan: _Plan
    inputs: list[_PartSource]
    sources: list[str]
    bytes_per_event: int

    def chunks(self) -> Iterator[TrainingData]:
        """The sample's chunks, in file order (empty chunks, e.g. after ``data.cut``, skipped)."""
        for label, _, make in self.inputs:
            for part in make():
                if part.n_events:
                    yield _assemble(self.config, self.plan, [(label, [part])], self.sources)

    @property
    def feature_names(self) -> list[str]:
        return [self.plan.flat[k] for k in self.plan.flat_names("data.features[")]


def _generated_fields(config: RunConfig) -> list[str]:
    from hepinfer.datasets.schema import CONSTITUENT_BRANCHES, JET_BRANCHES

    return [*JET_BRANCHES, *CONSTITUENT_BRANCHES]


def _assemble(
    config: RunConfig, plan: _Plan, collected: list[tuple[Optional[int], list[_Part]]], sources: list[str]
) -> TrainingData:
    d = config.data
    parts = [p for _, ps in collected for p in ps]
    n = sum(p.n_events for p in parts)
    if n == 0:
        raise ConfigError(f"data: no events selected from {', '.join(sources) or 'the input'}")
    feature_keys = plan.flat_names("data.features[")
    features = (
        np.column_stack([_concat(parts, k).astype(np.float64) for k in feature_keys])
        if feature_keys
        else np.zeros((n, 0))
    )
    particles = mask = None
    if plan.particle:
        particles = np.concatenate([p.particles for p in parts if p.particles is not None])
        mask = np.concatenate([p.mask for p in parts if p.mask is not None])
    regression = config.loss.kind in REGRESSION_LOSSES
    if plan.label_from_files:
        raw = np.concatenate([np.full(p.n_events, label) for label, ps in collected for p in ps]).astype(
            np.float64
        )
    else:
        raw = _concat(parts, "data.target").astype(np.float64)
    label = None
    class_names: list[str] = []
    if not regression:
        label, class_names = _labels(config, raw)
    weight = _concat(parts, "data.weight").astype(np.float64) if d.weight else np.ones(n)
    if not np.all(np.isfinite(weight)):
        raise ConfigError(
            f"data.weight: {d.weight!r} gives {int((~np.isfinite(weight)).sum())} non-finite weights"
        )
    if "data.event_number" in plan.flat:
        event = _event_numbers(_concat(parts, "data.event_number"), plan.flat["data.event_number"])
        origin = f"branch {plan.flat['data.event_number']!r}"
    else:
        hashed = [features] if feature_keys else []
        if particles is not None:
            hashed.append(particles.reshape(n, -1))
        event = row_hash(*(hashed or [raw]))
        origin = "hash of the features"
    return TrainingData(
        features=features,
        feature_names=[plan.flat[k] for k in feature_keys],
        target=raw,
        weight=weight,
        event=event,
        label=label,
        class_names=class_names,
        mass=_concat(parts, "data.mass").astype(np.float64) if d.mass else None,
        parameter=_concat(parts, "data.parameter").astype(np.float64) if d.parameter else None,
        particles=particles,
        mask=mask,
        particle_feature_names=list(d.particle_features) if plan.particle else [],
        event_origin=origin,
        event_expression=plan.flat.get("data.event_number", ""),
        sources=sources,
    )


def _labels(config: RunConfig, raw: np.ndarray) -> tuple[np.ndarray, list[str]]:
    d = config.data
    names = ordered_classes(d)
    bad = ~np.isfinite(raw) | (raw != np.round(raw)) | (raw < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ConfigError(
            f"data.target: {d.target!r} must give class indices 0, 1, ... for a classifier; event {i} has {float(raw[i]):g}"
        )
    label = raw.astype(np.int64)
    top = int(label.max()) if len(label) else 0
    if names:
        if top >= len(names):
            raise ConfigError(
                f"data.class_names: {len(names)} names {names} but {d.target!r} reaches class index {top}"
            )
    else:
        names = ["background", "signal"] if top <= 1 else [f"class_{i}" for i in range(top + 1)]
    return label, names


def _event_numbers(values: np.ndarray, expr: str) -> np.ndarray:
    if values.dtype.kind == "f":
        if not (np.all(np.isfinite(values)) and np.all(values == np.round(values))):
            raise ConfigError(
                f"data.event_number: {expr!r} must give integers (event numbers), got {values.dtype} values"
            )
    elif values.dtype.kind not in "iub":
        raise ConfigError(f"data.event_number: {expr!r} gives {values.dtype}, not integers")
    # negative (or above 2**63) numbers keep their low 63 bits: non-negative, still one per event
    bits = values.astype(np.uint64) if values.dtype.kind == "u" else values.astype(np.int64).view(np.uint64)
    return (bits & np.uint64(0x7FFFFFFFFFFFFFFF)).astype(np.int64)


def describe(data: TrainingData) -> str:
    """One line for logs: events, classes, columns, the split's event numbers."""
    classes = ""
    if data.label is not None:
        counts = np.bincount(data.label, minlength=data.n_classes)
        classes = ", ".join(f"{name} {int(c)}" for name, c in zip(data.class_names, counts))
    shape = f"{data.features.shape[1]} features"
    if data.particles is not None:
        shape = f"{data.particles.shape[2]} values per particle, up to {data.particles.shape[1]} particles"
    return f"{len(data)} events ({classes}) from {len(data.sources)} input(s); {shape}; folds by {data.event_origin}"
