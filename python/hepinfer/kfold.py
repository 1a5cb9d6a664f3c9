"""k-fold cross-application: k models, each applied to the events it was not trained on.

The standard way analyses avoid scoring events with a model that saw them (TMVA's
CrossValidation): the events are split into k folds by event number, model ``i`` is trained on
the events of the other folds and applied to those of fold ``i``.

* **Fold of an event**: ``event_number mod k``, non-negative (``((e % k) + k) % k``, numpy's
  and Python's ``e % k``), as TMVA's ``int([eventNumber]) % int([NumFolds])`` split expression for
  the non-negative event numbers experiments write. Event numbers must be integers (any numpy
  integer dtype; uint64 numbers above 2**63 are exact too); floats are refused rather than
  truncated.
* **Bundle**: a folder holding ``kfold.json`` and the member model files::

      {"format": "hepinfer-kfold", "version": 1, "n_folds": 5, "event_number": "event",
       "features": ["pt", "eta", "mass"],
       "members": ["fold_0/model.json", "fold_1/model.json", ...]}

  ``members[i]`` is applied to fold ``i``; paths are relative to the manifest's folder. Members
  are any model hepinfer loads, all of one kind: XGBoost JSON/UBJ, LightGBM text or TMVA XML
  (:class:`hepinfer.Forest`), or ONNX networks with one ``(events, n_features)`` float input and
  one float output (:class:`hepinfer.nn.Model`); they must agree on the features and the number
  of outputs (a forest that records feature names must list the manifest's, in its order).
  ``hepinfer train`` with ``training.n_folds = k`` writes such a bundle; :func:`write_manifest`
  writes one for models trained elsewhere.

Evaluation happens in the C++ core (``hepinfer::KFold``, ``hepinfer/kfold.hpp``): rows are
grouped per fold and each member is called once on its group; the GIL is released.

    >>> bundle = hepinfer.KFold.load("tagger_kfold")
    >>> scores = bundle.predict(X, event_numbers)            # X: (n, n_features)
    >>> scores = bundle.predict(events)                      # dict / DataFrame / awkward with the event branch
    >>> hepinfer.score("tagger_kfold", "data/*.root", tree="Events")   # reads the features and `event`
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any, Optional, Union

import numpy as np

from hepinfer import _core
from hepinfer._core import InputError

__all__ = ["MANIFEST_NAME", "KFold", "is_bundle", "refuse_bundle", "write_manifest"]

MANIFEST_NAME = "kfold.json"
"""The manifest's file name inside a bundle folder."""

PathLike = Union[str, "os.PathLike[str]"]


def _manifest_path(path: PathLike) -> str:
    p = os.fspath(path)
    return os.path.join(p, MANIFEST_NAME) if os.path.isdir(p) else p


def is_bundle(source: Any) -> bool:
    """True for a path to a k-fold bundle: a folder holding ``kfold.json``, or a JSON file whose
    ``format`` is ``"hepinfer-kfold"`` (read only as far as needed to tell)."""
    if not isinstance(source, (str, os.PathLike)):
        return False
    p = os.fspath(source)
    if os.path.isdir(p):
        return os.path.isfile(os.path.join(p, MANIFEST_NAME))
    if not p.lower().endswith(".json") or not os.path.isfile(p):
        return False
    try:
        with open(p, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return b'"hepinfer-kfold"' in head


def refuse_bundle(source: Any, loader: str) -> None:
    """Raise :class:`hepinfer.ModelFormatError` when ``source`` is a k-fold bundle given to a
    single-model ``loader`` (``Forest.load``, ``Model.load``), saying how to load it."""
    if is_bundle(source):
        raise _core.ModelFormatError(
            f"{os.fspath(source)}: a k-fold bundle: load it with hepinfer.KFold.load, not {loader} "
            "(hepinfer.score and hepinfer.rdf take the bundle as it is)"
        )


def write_manifest(
    folder: PathLike,
    members: Sequence[PathLike],
    *,
    features: Sequence[str],
    event_number: str = "event",
) -> str:
    """Write ``<folder>/kfold.json`` for ``members`` (``members[i]`` is applied to the events
    with ``event_number mod len(members) == i`` and must have been trained without them) and
    return its path. Member paths inside ``folder`` are stored relative to it. The bundle is
    loaded once to check it (:class:`hepinfer.ModelFormatError` names what is wrong)."""
    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    stored = []
    for m in members:
        p = os.path.abspath(os.fspath(m))
        rel = os.path.relpath(p, os.path.abspath(folder))
        stored.append(p if rel.startswith("..") else rel.replace(os.sep, "/"))
    manifest = {
        "format": "hepinfer-kfold",
        "version": 1,
        "n_folds": len(stored),
        "fold": "event_number mod n_folds",
        "event_number": str(event_number),
        "features": [str(f) for f in features],
        "members": stored,
    }
    path = os.path.join(folder, MANIFEST_NAME)
    with open(path, "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    _core.KFold.load(path)
    return path


def _event_numbers(values: Any, n: Optional[int], what: str) -> np.ndarray:
    """int64 or uint64 event numbers, exactly; InputError for anything else."""
    if type(values).__module__.startswith("awkward"):
        import awkward as ak

        values = ak.to_numpy(values)
    elif hasattr(values, "to_numpy"):
        values = values.to_numpy()
    a = np.asarray(values)
    if a.ndim != 1:
        raise InputError(f"{what} must be 1-dimensional (one per event), got shape {a.shape}")
    if a.dtype.kind not in "iu" or a.dtype == np.bool_:
        raise InputError(
            f"{what} must hold integers (the fold is event_number mod n_folds), got dtype {a.dtype}"
        )
    if n is not None and len(a) != n:
        raise InputError(f"{what} has {len(a)} entries for {n} events")
    if a.dtype == np.uint64:
        return np.ascontiguousarray(a)
    return np.ascontiguousarray(a, dtype=np.int64)


def _column(values: Any, what: str) -> np.ndarray:
    a = np.asarray(values)
    if a.ndim != 1:
        raise InputError(f"{what} must be 1-dimensional, got shape {a.shape}")
    if a.dtype.kind == "f":
        return a
    if a.dtype.kind in "iub":
        return a.astype(np.float64)
    raise InputError(f"{what} has dtype {a.dtype}; hepinfer needs numbers")


class KFold:
    """A k-fold bundle loaded as one model: each event is scored by the member of its fold.

    Use :meth:`KFold.load`. Immutable after load; ``predict`` is thread-safe and releases the
    GIL. Pickles as the bundle's file contents (for Dask workers).
    """

    __slots__ = ("_core", "_files", "_path")

    def __init__(self, core: Any, path: str, files: Optional[dict[str, bytes]] = None) -> None:
        self._core = core
        self._path = path
        self._files = files

    @classmethod
    def load(cls, path: PathLike, *, format: str = "auto", tmva_cut_op: str = ">=") -> KFold:
        """Load a bundle: a folder holding ``kfold.json`` or the manifest itself. ``format`` and
        ``tmva_cut_op`` are passed to the forest members' reader (see :meth:`hepinfer.Forest.load`).
        A malformed manifest, a missing member file, members with different features or numbers
        of outputs raise :class:`hepinfer.ModelFormatError` naming the file and the field."""
        p = os.fspath(path)
        return cls(_core.KFold.load(p, format, tmva_cut_op), os.path.abspath(p))

    def __reduce__(self) -> tuple:
        """Pickle as the manifest and member files' bytes; loaded again from a temporary folder."""
        files = self._files
        if files is None:
            manifest = _manifest_path(self._path)
            files = {MANIFEST_NAME: _read(manifest)}
            text = json.loads(files[MANIFEST_NAME])
            for i, (name, full) in enumerate(zip(text["members"], self._core.member_paths)):
                if os.path.isabs(name) or ".." in name.replace("\\", "/").split("/"):
                    # outside the bundle folder: stored under a neutral name, the manifest rewritten
                    name = f"member_{i}{os.path.splitext(name)[1]}"
                    text["members"][i] = name
                files[name] = _read(full)
            files[MANIFEST_NAME] = json.dumps(text).encode()
        return (_kfold_from_files, (files,))

    # ------------------------------------------------------------------ description
    @property
    def n_folds(self) -> int:
        return int(self._core.n_folds)

    @property
    def kind(self) -> str:
        """``"forest"`` or ``"network"``: what the members are."""
        return str(self._core.kind)

    @property
    def event_number(self) -> str:
        """The branch (column) holding the event number."""
        return str(self._core.event_number)

    @property
    def feature_names(self) -> list[str]:
        return list(self._core.feature_names)

    @property
    def n_features(self) -> int:
        return int(self._core.n_features)

    @property
    def member_paths(self) -> list[str]:
        """The member model files, in fold order (member ``i`` scores fold ``i``)."""
        return list(self._core.member_paths)

    def n_outputs(self, output: str = "probability") -> int:
        return int(self._core.n_outputs(output))

    def members(self) -> list[Any]:
        """The member models, loaded on their own (:class:`hepinfer.Forest` or
        :class:`hepinfer.nn.Model`), in fold order."""
        if self.kind == "network":
            from hepinfer.nn import Model

            return [Model.load(p) for p in self.member_paths]
        from hepinfer.forest import Forest

        return [Forest.load(p) for p in self.member_paths]

    def folds(self, event_numbers: Any) -> np.ndarray:
        """The fold of each event (int32): ``event_number mod n_folds``, non-negative."""
        return self._core.folds(_event_numbers(event_numbers, None, "event_numbers"))

    def __repr__(self) -> str:
        return (
            f"hepinfer.KFold({self._path!r}, n_folds={self.n_folds}, kind={self.kind!r}, "
            f"event_number={self.event_number!r}, features={self.feature_names})"
        )

    # ------------------------------------------------------------------ evaluation
    def predict(
        self,
        X: Any,
        event_numbers: Any = None,
        *,
        output: str = "probability",
        n_threads: Optional[int] = None,
    ) -> np.ndarray:
        """Score each event with the member of its fold.

        ``X``: a 2-D array ``(n, n_features)`` in the manifest's feature order (float32 is
        passed as is, other numbers as float64), or a dict / pandas DataFrame / awkward record
        array with the features by name. ``event_numbers``: one integer per event; ``None``
        takes the ``event_number`` column of a dict, DataFrame or record array. ``output``
        (``"probability"`` / ``"margin"``) is for forest members. Returns ``(n,)`` for one
        output, ``(n, k)`` otherwise, float64. ``n_threads=None``: every core; the result does
        not depend on it.
        """
        named = isinstance(X, Mapping) or hasattr(X, "columns") or _is_record(X)
        if named:
            matrix = self._named_matrix(X)
            if event_numbers is None:
                ev_col = self.event_number
                try:
                    event_numbers = X[ev_col]
                except (KeyError, ValueError, IndexError, TypeError):
                    raise InputError(
                        f"no event_numbers given and the input has no column {ev_col!r} (the bundle's "
                        "event-number branch): give event_numbers= or that column"
                    ) from None
        else:
            a = np.asarray(X)
            if a.ndim != 2:
                raise InputError(f"X must be 2-dimensional (events, features), got shape {a.shape}")
            if a.shape[1] != self.n_features:
                raise InputError(
                    f"X has {a.shape[1]} features but the k-fold model expects {self.n_features} "
                    f"{self.feature_names}"
                )
            if a.dtype == np.float32:
                matrix = np.ascontiguousarray(a)
            elif a.dtype.kind in "fiub":
                matrix = np.ascontiguousarray(a, dtype=np.float64)
            else:
                raise InputError(f"X has dtype {a.dtype}; hepinfer needs numbers")
            if event_numbers is None:
                raise InputError(
                    f"give event_numbers= (one integer per event, the {self.event_number!r} branch): "
                    "the fold of each event decides which member scores it"
                )
        ev = _event_numbers(event_numbers, matrix.shape[0], "event_numbers")
        threads = 0 if n_threads is None else int(n_threads)
        if threads < 0:
            raise InputError(f"n_threads must be >= 0, got {n_threads}")
        result = self._core.predict(matrix, ev, output, threads or (os.cpu_count() or 1))
        return result[:, 0] if result.shape[1] == 1 else result

    def _named_matrix(self, X: Any) -> np.ndarray:
        names = self.feature_names
        missing = []
        cols = []
        for name in names:
            try:
                col = X[name]
            except (KeyError, ValueError, IndexError, TypeError):
                missing.append(name)
                continue
            if type(col).__module__.startswith("awkward"):
                import awkward as ak

                col = ak.to_numpy(col)
            elif hasattr(col, "to_numpy"):
                col = col.to_numpy()
            cols.append(_column(col, f"feature {name!r}"))
        if missing:
            raise InputError(f"the input has no column(s) {missing}; the k-fold model's features are {names}")
        dtype = np.float32 if all(c.dtype == np.float32 for c in cols) else np.float64
        n = len(cols[0])
        for name, c in zip(names, cols):
            if len(c) != n:
                raise InputError(f"feature {name!r} has {len(c)} entries, {names[0]!r} has {n}")
        return np.ascontiguousarray(np.column_stack(cols).astype(dtype, copy=False))


def _is_record(x: Any) -> bool:
    return type(x).__module__.startswith("awkward") and bool(getattr(x, "fields", None))


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _kfold_from_files(files: dict[str, bytes]) -> KFold:
    """Unpickle: the bundle's files written to a temporary folder, loaded, the folder removed."""
    folder = tempfile.mkdtemp(prefix="hepinfer-kfold-")
    try:
        for name, data in files.items():
            target = os.path.join(folder, name)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as f:
                f.write(data)
        core = _core.KFold.load(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return KFold(core, folder, files)
