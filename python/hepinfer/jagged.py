"""Jagged arrays (a variable number of objects per event) for feature building.

Takes awkward arrays straight from uproot (or ``(offsets, content)`` numpy pairs) and
runs the C++ kernels on their buffers without copying them:

    >>> import hepinfer.jagged as hj
    >>> jets = ak.zip({"pt": t["Jet_pt"], "eta": t["Jet_eta"], "phi": t["Jet_phi"], "mass": t["Jet_mass"]})
    >>> values, mask = hj.leading(jets, k=4, by="pt")   # dict of (n_events, 4) arrays + mask
    >>> ht = hj.event_sum(jets, "pt")
    >>> dr, index = hj.min_delta_r(jets, muons)         # jet-lepton cleaning

Accepted inputs
---------------
* an awkward array of lists of floats (``ListOffsetArray`` of ``NumpyArray``), e.g. ``t["Jet_pt"]``;
* an awkward array of lists of records (``ak.zip`` of such lists, ``events.Jet``): every
  float field is a column, all sharing one offsets array;
* a record of lists (``t.arrays(["Jet_pt", "Jet_eta"])``): each field is a column; their
  offsets must agree event by event;
* ``(offsets, content)`` numpy pairs: offsets of ``n_events + 1`` int32/uint32/int64
  entries (need not start at 0), content 1-D, 2-D ``(n_objects, n_columns)`` or a dict
  of 1-D arrays.

Offsets may be int32, uint32 or int64 and content float32 or float64; the common
``ListOffsetArray`` case is read zero-copy. Other list layouts (``ListArray``, e.g. after
some slicing) are packed first with ``ak.to_packed`` (a copy). Option types (``None``)
and non-float content raise :class:`hepinfer.InputError`; use ``ak.fill_none`` /
``ak.values_astype`` first. Offsets and columns are validated on entry.

Sorting (``top_k``, ``leading``) is stable (ties keep their order in the event) and puts
NaN keys last whatever the direction. ``n_threads=None`` uses every core; results do
not depend on it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Optional

import numpy as np

from hepinfer import _core
from hepinfer._core import InputError

__all__ = [
    "JaggedInput",
    "delta_phi",
    "delta_r",
    "event_count",
    "event_max",
    "event_mean",
    "event_min",
    "event_sum",
    "leading",
    "min_delta_r",
    "pad",
    "to_pt_eta_phi_m",
    "to_px_py_pz_e",
    "top_k",
    "view",
]

JaggedInput = Any
"""An awkward array of lists (of floats or of records) or an ``(offsets, content)`` pair."""

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_OFFSET_TYPES = (np.dtype(np.int32), np.dtype(np.uint32), np.dtype(np.int64))


def _threads(n_threads: Optional[int]) -> int:
    if n_threads is None:
        return 0
    n = int(n_threads)
    if n < 1:
        raise InputError(f"n_threads must be >= 1 or None (all cores), got {n_threads}")
    return n


def _is_awkward(x: Any) -> bool:
    return type(x).__module__.startswith("awkward") and hasattr(x, "layout")


class _Jagged:
    """A validated core view plus what is needed to wrap results in the input's kind."""

    __slots__ = ("awkward", "behavior", "core", "names", "offsets", "record")

    def __init__(
        self,
        core: Any,
        names: list[str],
        awkward: bool,
        record: bool,
        offsets: np.ndarray,
        behavior: Any = None,
    ):
        self.core = core
        self.names = names
        self.awkward = awkward
        self.record = record  # input had named fields (records / dict of columns)
        self.offsets = offsets  # as given (may not start at 0)
        self.behavior = behavior

    @property
    def n_events(self) -> int:
        return int(self.core.n_events)

    def column(self, name: Optional[str], what: str = "by") -> int:
        if name is None:
            if len(self.names) != 1:
                raise InputError(f"{what}: the array has fields {self.names}; say which one")
            return 0
        if name not in self.names:
            raise InputError(f"{what}: no field {name!r} (fields: {self.names})")
        return self.names.index(name)

    def zero_based_offsets(self) -> np.ndarray:
        off = self.offsets.astype(np.int64)
        return off - off[0] if len(off) else off


def _strip_unmasked(layout: Any) -> Any:
    import awkward as ak

    while isinstance(layout, ak.contents.UnmaskedArray):
        layout = layout.content
    return layout


def _check_no_option(layout: Any, what: str) -> None:
    import awkward as ak

    if isinstance(
        layout, (ak.contents.IndexedOptionArray, ak.contents.ByteMaskedArray, ak.contents.BitMaskedArray)
    ):
        raise InputError(
            f"{what} has an option type (missing values, None): hepinfer's jagged kernels do not take it; "
            "use ak.fill_none (or ak.drop_none) first"
        )


def _numpy_column(layout: Any, name: str) -> np.ndarray:
    import awkward as ak

    layout = _strip_unmasked(layout)
    _check_no_option(layout, f"column {name!r}")
    if isinstance(layout, ak.contents.EmptyArray):  # lists that are all empty: no content at all
        return np.zeros(0, dtype=np.float64)
    if isinstance(layout, ak.contents.IndexedArray):
        layout = layout.project()  # a copy: an indexed (lazily sliced) content
    if not isinstance(layout, ak.contents.NumpyArray):
        raise InputError(
            f"column {name!r} is a {type(layout).__name__}, not a flat list of numbers: "
            "hepinfer's jagged kernels take lists of float32/float64 values (one level of nesting)"
        )
    data = np.asarray(layout.data)
    if data.ndim != 1:
        raise InputError(
            f"column {name!r} has inner dimensions {data.shape[1:]}; only flat lists are supported"
        )
    if data.dtype not in _FLOATS:
        raise InputError(
            f"column {name!r} has dtype {data.dtype}; the jagged kernels take float32 or float64 "
            "(convert with ak.values_astype(array, np.float32))"
        )
    return data


def _list_parts(layout: Any, what: str) -> tuple[np.ndarray, Any]:
    """(offsets, content layout) of a list layout, packing non-offset lists first."""
    import awkward as ak

    layout = _strip_unmasked(layout)
    _check_no_option(layout, what)
    if isinstance(layout, (ak.contents.ListArray, ak.contents.RegularArray)):
        layout = ak.to_layout(ak.to_packed(ak.Array(layout))).to_ListOffsetArray64(True)
    if not isinstance(layout, ak.contents.ListOffsetArray):
        raise InputError(
            f"{what} is a {type(layout).__name__}, not a jagged array (lists per event); "
            "pass e.g. tree['Jet_pt'] or ak.zip of such arrays"
        )
    return np.asarray(layout.offsets.data), layout.content


def _is_float_list(layout: Any) -> bool:
    import awkward as ak

    layout = _strip_unmasked(layout)
    if not isinstance(layout, (ak.contents.ListOffsetArray, ak.contents.ListArray)):
        return False
    content = _strip_unmasked(layout.content)
    return isinstance(content, ak.contents.NumpyArray) and np.asarray(content.data).dtype in _FLOATS


def _from_awkward(array: Any, fields: Optional[Sequence[str]]) -> _Jagged:
    import awkward as ak

    layout = _strip_unmasked(ak.to_layout(array))
    behavior = getattr(array, "behavior", None)
    if isinstance(layout, ak.contents.RecordArray):
        # A record of lists: each field its own list array; offsets must agree.
        names = (
            list(fields)
            if fields is not None
            else [f for f in layout.fields if _is_float_list(layout.content(f))]
        )
        offsets = None
        cols = []
        for name in names:
            if name not in layout.fields:
                raise InputError(f"no field {name!r} (fields: {layout.fields})")
            off, content = _list_parts(layout.content(name), f"field {name!r}")
            off = off[: layout.length + 1]
            if offsets is None:
                offsets = off
            elif not (off is offsets or np.array_equal(off - off[0], offsets - offsets[0])):
                counts_a, counts_b = np.diff(offsets), np.diff(off)
                bad = int(np.argmax(counts_a != counts_b)) if len(counts_a) == len(counts_b) else 0
                raise InputError(
                    f"field {name!r} has different counts per event from field {names[0]!r} "
                    f"(first difference at event {bad}); zip only collections of the same objects"
                )
            elif off[0] != offsets[0]:
                raise InputError(
                    f"field {name!r} starts at a different content position; use ak.to_packed first"
                )
            cols.append(_numpy_column(content, name))
        if offsets is None:
            raise InputError("the record array has no fields to use")
        core = _core.JaggedView(_offsets(offsets), cols, names)
        return _Jagged(core, names, True, True, offsets, behavior)
    offsets, content = _list_parts(layout, "the array")
    content = _strip_unmasked(content)
    _check_no_option(content, "the list content")
    if isinstance(content, ak.contents.IndexedArray):
        content = content.project()
    if isinstance(content, ak.contents.RecordArray):
        float_fields = [
            f
            for f in content.fields
            if isinstance(_strip_unmasked(content.content(f)), ak.contents.NumpyArray)
            and np.asarray(_strip_unmasked(content.content(f)).data).dtype in _FLOATS
        ]
        names = list(fields) if fields is not None else float_fields
        if not names:
            raise InputError(f"the records have no float32/float64 fields (fields: {content.fields})")
        cols = []
        for name in names:
            if name not in content.fields:
                raise InputError(f"no field {name!r} (fields: {content.fields})")
            cols.append(_numpy_column(content.content(name), name))
        core = _core.JaggedView(_offsets(offsets), cols, names)
        return _Jagged(core, names, True, True, offsets, behavior)
    if fields is not None:
        raise InputError("fields= was given but the array has no record fields")
    col = _numpy_column(content, "values")
    core = _core.JaggedView(_offsets(offsets), [col], ["values"])
    return _Jagged(core, ["values"], True, False, offsets, behavior)


def _offsets(offsets: Any) -> np.ndarray:
    off = np.asarray(offsets)
    if off.ndim != 1:
        raise InputError(f"offsets must be 1-dimensional, got shape {off.shape}")
    if off.dtype not in _OFFSET_TYPES:
        if off.dtype.kind in "iu" and len(off) and off.min() >= 0:
            off = off.astype(np.int64)
        else:
            raise InputError(f"offsets must be int32, uint32 or int64, got {off.dtype}")
    return np.ascontiguousarray(off)


def _from_numpy(pair: Sequence[Any], fields: Optional[Sequence[str]]) -> _Jagged:
    if len(pair) != 2:
        raise InputError("a numpy jagged array is an (offsets, content) pair")
    offsets = _offsets(pair[0])
    content = pair[1]
    if isinstance(content, Mapping):
        names = list(fields) if fields is not None else [str(k) for k in content]
        for n in names:
            if n not in content:
                raise InputError(f"no column {n!r} (columns: {list(content)})")
        cols = [np.asarray(content[n]) for n in names]
        record = True
    else:
        c = np.asarray(content)
        if c.ndim == 1:
            names, cols, record = ["values"], [c], False
        elif c.ndim == 2:
            names = list(fields) if fields is not None else [f"column {i}" for i in range(c.shape[1])]
            if len(names) != c.shape[1]:
                raise InputError(f"{len(names)} names given for {c.shape[1]} content columns")
            cols, record = [c[:, i] for i in range(c.shape[1])], True
        else:
            raise InputError(
                f"content must be 1-D, 2-D (n_objects, n_columns) or a dict, got shape {c.shape}"
            )
    for n, c in zip(names, cols):
        if c.dtype not in _FLOATS:
            raise InputError(f"column {n!r} has dtype {c.dtype}; the jagged kernels take float32 or float64")
    core = _core.JaggedView(offsets, cols, names)
    return _Jagged(core, names, False, record, offsets)


def view(array: JaggedInput, fields: Optional[Sequence[str]] = None) -> Any:
    """The validated zero-copy core view (``hepinfer._core.JaggedView``) of a jagged input.

    Raises :class:`hepinfer.InputError` for non-monotone offsets, offsets beyond the
    content, columns of different lengths, option types or non-float content.
    """
    return _view(array, fields).core


def _view(array: JaggedInput, fields: Optional[Sequence[str]] = None) -> _Jagged:
    if isinstance(array, _Jagged):
        return array
    if _is_awkward(array):
        return _from_awkward(array, fields)
    if isinstance(array, tuple):
        return _from_numpy(array, fields)
    raise InputError(f"expected an awkward array or an (offsets, content) tuple, got {type(array).__name__}")


def _out_dtype(j: _Jagged, dtype: Any) -> str:
    if dtype is not None:
        d = np.dtype(dtype)
        if d not in _FLOATS:
            raise InputError(f"dtype must be float32 or float64, got {d}")
        return str(d)
    return "float32" if all(d == "float32" for d in j.core.column_dtypes) else "float64"


def _wrap_jagged(
    j: _Jagged, offsets: np.ndarray, columns: dict[str, np.ndarray], single: Optional[str] = None
) -> Any:
    """Results laid out like the input: awkward list (of records) or (offsets, content)."""
    if not j.awkward:
        if single is not None or not j.record:
            return offsets, columns[single if single is not None else j.names[0]]
        return offsets, columns
    import awkward as ak

    off = ak.index.Index64(offsets)
    if single is not None or not j.record:
        content = ak.contents.NumpyArray(columns[single if single is not None else j.names[0]])
    else:
        n = len(offsets) and int(offsets[-1])
        content = ak.contents.RecordArray(
            [ak.contents.NumpyArray(columns[k]) for k in columns], list(columns), length=n
        )
    return ak.Array(ak.contents.ListOffsetArray(off, content), behavior=j.behavior)


def top_k(
    array: JaggedInput,
    k: int,
    by: Optional[str] = None,
    *,
    ascending: bool = False,
    fields: Optional[Sequence[str]] = None,
    n_threads: Optional[int] = None,
) -> tuple[Any, Any]:
    """The k leading objects of every event, ordered by field ``by`` (largest first).

    Returns ``(selected, index)``: the selected objects (all fields, at most k per event,
    as a jagged array of the input's kind) and their indices within the event
    (``ak.argsort(...)[:, :k]`` semantics, stable, NaN keys last).
    """
    if int(k) < 0:
        raise InputError(f"k must be >= 0, got {k}")
    j = _view(array, fields)
    key = j.column(by)
    index, counts = _core.jagged_top_k_indices(j.core, key, int(k), bool(ascending), _threads(n_threads))
    offsets = np.zeros(j.n_events + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    cols = {
        name: _core.jagged_gather(j.core, i, index, counts, j.core.column_dtypes[i], _threads(n_threads))
        for i, name in enumerate(j.names)
    }
    flat_index = index[index >= 0] if index.size else np.zeros(0, dtype=np.int64)
    if j.awkward:
        import awkward as ak

        idx = ak.Array(
            ak.contents.ListOffsetArray(ak.index.Index64(offsets), ak.contents.NumpyArray(flat_index))
        )
    else:
        idx = (offsets, flat_index)
    return _wrap_jagged(j, offsets, cols), idx


def _dense_result(j: _Jagged, out: np.ndarray, stacked: bool) -> Any:
    """(n_columns, n_events, L) array -> one array, or dict of (n_events, L) arrays."""
    if stacked:
        return out
    if not j.record:
        return out[0]
    return {name: out[i] for i, name in enumerate(j.names)}


def pad(
    array: JaggedInput,
    length: int,
    fill: float = 0.0,
    *,
    clip: bool = True,
    fields: Optional[Sequence[str]] = None,
    stacked: bool = False,
    dtype: Any = None,
    n_threads: Optional[int] = None,
) -> tuple[Any, np.ndarray]:
    """Pads (with ``fill``) or truncates every event to ``length`` objects.

    Returns ``(values, mask)``; mask is a ``(n_events, length)`` bool array, True for real
    objects. values is an ``(n_events, length)`` array for a list of numbers, a dict
    field -> ``(n_events, length)`` for records, or one ``(n_events, length, n_fields)``
    array with ``stacked=True``. With ``clip=False`` the length grows to the largest
    event, as ``ak.pad_none(clip=False)``. dtype defaults to the content's (float64 if mixed).
    """
    if int(length) < 0:
        raise InputError(f"length must be >= 0, got {length}")
    j = _view(array, fields)
    n = int(length)
    if not clip and j.n_events:
        n = max(n, int(_core.jagged_counts(j.core, 1).max()))
    out, mask = _core.jagged_pad(
        j.core, n, float(fill), _out_dtype(j, dtype), "events" if stacked else "columns", _threads(n_threads)
    )
    return _dense_result(j, out, stacked), mask


def leading(
    array: JaggedInput,
    k: int = 4,
    by: Optional[str] = "pt",
    *,
    fields: Optional[Sequence[str]] = None,
    fill: float = 0.0,
    ascending: bool = False,
    stacked: bool = False,
    dtype: Any = None,
    return_index: bool = False,
    n_threads: Optional[int] = None,
) -> tuple[Any, ...]:
    """The common feature build in one pass: the k leading objects by ``by``, padded.

    ``leading(jets, k=4, by="pt", fields=["pt", "eta", "phi", "mass"])`` gives the leading
    four jets' kinematics as a dict of ``(n_events, 4)`` arrays (or one
    ``(n_events, 4, n_fields)`` array with ``stacked=True``) padded with ``fill``, and the
    ``(n_events, 4)`` bool mask. ``by=None`` is allowed for a list of numbers. With
    ``return_index=True`` also the ``(n_events, k)`` indices within the event (-1 for padding).
    ``by`` need not be among ``fields``.
    """
    if int(k) < 0:
        raise InputError(f"k must be >= 0, got {k}")
    j = _view(array, None if fields is None else _with_key(fields, by))
    key = j.column(by if j.record else None)
    out, mask, index = _core.jagged_leading(
        j.core,
        key,
        int(k),
        bool(ascending),
        float(fill),
        _out_dtype(j, dtype),
        "events" if stacked else "columns",
        _threads(n_threads),
    )
    if fields is not None and by is not None and by not in fields:
        keep = [i for i, n in enumerate(j.names) if n in fields]
        out = out[:, :, keep] if stacked else out[keep]
        j = _Jagged(j.core, [j.names[i] for i in keep], j.awkward, j.record, j.offsets, j.behavior)
    values = _dense_result(j, out, stacked)
    return (values, mask, index) if return_index else (values, mask)


def _with_key(fields: Sequence[str], by: Optional[str]) -> list[str]:
    names = list(fields)
    if by is not None and by not in names:
        names.append(by)
    return names


def _reduce(
    array: JaggedInput, field: Optional[str], op: str, empty: float, n_threads: Optional[int]
) -> np.ndarray:
    j = _view(array, None if field is None else [field])
    return _core.jagged_reduce(j.core, 0, op, float(empty), _threads(n_threads))


def event_sum(
    array: JaggedInput, field: Optional[str] = None, *, n_threads: Optional[int] = None
) -> np.ndarray:
    """Per-event sum of a field (e.g. HT = ``event_sum(jets, "pt")``), float64; 0 for empty events."""
    return _reduce(array, field, "sum", 0.0, n_threads)


def event_max(
    array: JaggedInput, field: Optional[str] = None, *, empty: float = np.nan, n_threads: Optional[int] = None
) -> np.ndarray:
    """Per-event maximum (NaN values skipped, as in awkward), float64; ``empty`` for empty events
    (awkward gives None there)."""
    return _reduce(array, field, "max", empty, n_threads)


def event_min(
    array: JaggedInput, field: Optional[str] = None, *, empty: float = np.nan, n_threads: Optional[int] = None
) -> np.ndarray:
    """Per-event minimum (NaN values skipped), float64; ``empty`` for empty events."""
    return _reduce(array, field, "min", empty, n_threads)


def event_mean(
    array: JaggedInput, field: Optional[str] = None, *, empty: float = np.nan, n_threads: Optional[int] = None
) -> np.ndarray:
    """Per-event mean, float64 (accumulated in double); ``empty`` for empty events."""
    return _reduce(array, field, "mean", empty, n_threads)


def event_count(array: JaggedInput, *, n_threads: Optional[int] = None) -> np.ndarray:
    """Number of objects per event (int64)."""
    j = _view(array)
    return _core.jagged_counts(j.core, _threads(n_threads))


# --- elementwise (four-vectors, Delta R) -------------------------------------------------


def _elementwise_inputs(arrays: Sequence[Any], names: str) -> tuple[list[np.ndarray], Any]:
    """Flat float arrays for the inputs and a function that gives results their shape back.

    Numpy inputs (any shape, same shape) are flattened; awkward jagged inputs must have the
    same counts per event and their content (in the offsets' range) is used without copying.
    """
    if any(_is_awkward(a) for a in arrays):
        views = [_view(a) for a in arrays]
        counts0 = np.diff(views[0].offsets.astype(np.int64))
        flats = []
        for v, a in zip(views, arrays):
            if v.record:
                raise InputError(f"{names}: pass jagged arrays of numbers, not records")
            if not np.array_equal(np.diff(v.offsets.astype(np.int64)), counts0):
                raise InputError(f"{names}: the jagged arrays have different counts per event")
            lo, hi = int(v.core.content_begin), int(v.core.content_end)
            flats.append(_content_of(a)[lo:hi])
        flats = _same_float(flats, names)
        offsets = views[0].zero_based_offsets()

        def wrap(x: np.ndarray) -> Any:
            import awkward as ak

            return ak.Array(ak.contents.ListOffsetArray(ak.index.Index64(offsets), ak.contents.NumpyArray(x)))

        return flats, wrap
    arrs = [np.asarray(a) for a in arrays]
    shape = arrs[0].shape
    for a in arrs:
        if a.shape != shape:
            raise InputError(f"{names}: the arrays have different shapes {[x.shape for x in arrs]}")
    flats = _same_float([np.ascontiguousarray(a).reshape(-1) for a in arrs], names)
    return flats, lambda x: x.reshape(shape)


def _content_of(array: Any) -> np.ndarray:
    import awkward as ak

    _, content = _list_parts(_strip_unmasked(ak.to_layout(array)), "the array")
    return _numpy_column(content, "values")


def _same_float(arrs: list[np.ndarray], names: str) -> list[np.ndarray]:
    dt = np.result_type(*[a.dtype for a in arrs])
    if dt not in _FLOATS:
        if dt.kind in "iub":
            dt = np.dtype(np.float64)
        elif dt == np.float16:
            dt = np.dtype(np.float32)
        else:
            raise InputError(f"{names}: need float32/float64 numbers, got {dt}")
    return [np.ascontiguousarray(a, dtype=dt) for a in arrs]


def to_pt_eta_phi_m(
    px: Any, py: Any, pz: Any, energy: Any, *, n_threads: Optional[int] = None
) -> tuple[Any, ...]:
    """(pt, eta, phi, mass) from (px, py, pz, E), elementwise, with the `vector` package's
    conventions: eta = asinh(pz/pt) (+-inf for pt = 0, 0 when pz = pt = 0), phi in [-pi, pi],
    mass = sign(m2) sqrt(|m2|) (a negative mass for a slightly space-like vector).
    Numpy arrays (any shape) or aligned awkward jagged arrays."""
    flats, wrap = _elementwise_inputs([px, py, pz, energy], "px, py, pz, E")
    return tuple(
        wrap(x) for x in _core.to_pt_eta_phi_m(flats[0], flats[1], flats[2], flats[3], _threads(n_threads))
    )


def to_px_py_pz_e(
    pt: Any, eta: Any, phi: Any, mass: Any, *, n_threads: Optional[int] = None
) -> tuple[Any, ...]:
    """(px, py, pz, E) from (pt, eta, phi, mass), elementwise; a negative mass means a
    negative m2 (E = sqrt(max(p^2 + m|m|, 0))), as in `vector`."""
    flats, wrap = _elementwise_inputs([pt, eta, phi, mass], "pt, eta, phi, mass")
    return tuple(
        wrap(x) for x in _core.to_px_py_pz_e(flats[0], flats[1], flats[2], flats[3], _threads(n_threads))
    )


def delta_phi(phi1: Any, phi2: Any) -> Any:
    """phi1 - phi2 wrapped into [-pi, pi) (numpy arrays or scalars)."""
    d = np.asarray(phi1, dtype=np.result_type(np.asarray(phi1).dtype, np.float32)) - np.asarray(phi2)
    return (d + np.pi) % (2 * np.pi) - np.pi


def delta_r(eta1: Any, phi1: Any, eta2: Any, phi2: Any, *, n_threads: Optional[int] = None) -> Any:
    """Elementwise Delta R = sqrt(Delta eta^2 + Delta phi^2) of aligned collections
    (Delta phi wrapped into [-pi, pi)). Numpy arrays or aligned awkward jagged arrays."""
    flats, wrap = _elementwise_inputs([eta1, phi1, eta2, phi2], "eta1, phi1, eta2, phi2")
    return wrap(_core.delta_r(flats[0], flats[1], flats[2], flats[3], _threads(n_threads)))


def min_delta_r(
    a: JaggedInput,
    b: JaggedInput,
    *,
    eta: str = "eta",
    phi: str = "phi",
    empty: float = np.inf,
    n_threads: Optional[int] = None,
) -> tuple[Any, Any]:
    """For every object of ``a``, the smallest Delta R to an object of ``b`` in the same event
    and that object's index within the event (jet-lepton cleaning).

    Returns ``(min_dr, index)`` aligned with ``a`` (jagged, of a's kind): ``empty`` and -1
    where the event has no ``b`` object. Ties keep the first ``b`` object. Both inputs are
    records (awkward) or ``(offsets, {"eta": ..., "phi": ...})`` pairs with fields ``eta``, ``phi``.
    """
    ja = _view(a, [eta, phi])
    jb = _view(b, [eta, phi])
    dr, index = _core.jagged_min_delta_r(ja.core, 0, 1, jb.core, 0, 1, float(empty), _threads(n_threads))
    offsets = ja.zero_based_offsets()
    if ja.awkward:
        import awkward as ak

        def wrap(x: np.ndarray) -> Any:
            return ak.Array(ak.contents.ListOffsetArray(ak.index.Index64(offsets), ak.contents.NumpyArray(x)))

        return wrap(dr), wrap(index)
    return (offsets, dr), (offsets, index)
