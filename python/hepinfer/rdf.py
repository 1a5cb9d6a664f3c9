"""hepinfer models as ROOT RDataFrame columns from PyROOT.

:func:`declare` loads hepinfer's shared C++ library into ROOT's interpreter and declares
``hepinfer/rdf.hpp`` (once per process); :class:`Predictor` loads a model there and gives
the expression that ``RDataFrame.Define`` jit-compiles::

    import ROOT, hepinfer.rdf
    ROOT.EnableImplicitMT(4)
    df = ROOT.RDataFrame("Events", "events.root")
    bdt = hepinfer.rdf.Predictor("bdt.json", ["jet_pt", "jet_mass", "tau21"])
    df = bdt.define(df, "bdt_score")                   # = df.Define("bdt_score", bdt.expression())
    pfn = hepinfer.rdf.Predictor("pfn.onnx", ["pf_pt", "pf_eta", "pf_phi"])   # RVec columns: particles
    scores = pfn.define(df, "pfn_score").AsNumpy(["pfn_score"])
    kfold = hepinfer.rdf.Predictor("tagger_kfold", ["jet_pt", "jet_mass", "tau21"])   # + the "event" column
    df = kfold.define(df, "kfold_score")               # each event scored by the member of its fold

The model is loaded once in C++ and shared by every RDataFrame slot (ImplicitMT); the event
loop runs without Python. Scores equal ``hepinfer.Forest.predict`` / ``hepinfer.Model.predict``
on the same values, rounded to float32 (see ``hepinfer/rdf.hpp`` for the rules). Compiled C++
analyses use ``hepinfer::rdf::Predictor<float, ...>`` from the same header directly.

Needs the ``root`` package (``pip install root`` or a ROOT installation with PyROOT) and
hepinfer's shared library (``lib/libhepinfer_shared.so`` inside the package, or the path in the
environment variable ``HEPINFER_SHARED_LIBRARY``).
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional, Union

from hepinfer._core import InputError, ModelFormatError

__all__ = ["Predictor", "declare", "library_path"]

PathLike = Union[str, "os.PathLike[str]"]

_lock = threading.Lock()
_declared = False
# Every C++ predictor made here lives until the interpreter exits: RDataFrame may run a
# jitted expression (which holds the object's address) long after the Python object is gone.
_keep_alive: list = []


def _root() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the pip wheel warns that it is an alpha release
        import ROOT

    return ROOT


def library_path() -> str:
    """Path of hepinfer's shared C++ library (what ROOT's interpreter loads).

    ``HEPINFER_SHARED_LIBRARY`` if set, else ``libhepinfer_shared`` or ``libhepinfer`` (shared)
    in the package's ``lib`` folder. Raises FileNotFoundError when there is none.
    """
    env = os.environ.get("HEPINFER_SHARED_LIBRARY")
    if env:
        if not Path(env).is_file():
            raise FileNotFoundError(f"HEPINFER_SHARED_LIBRARY={env} does not exist")
        return env
    from hepinfer import cmake_dir

    lib = Path(cmake_dir()).parents[1]  # the package's lib folder (cmake_dir is lib/cmake/hepinfer)
    for pattern in (
        "libhepinfer_shared.so*",
        "libhepinfer_shared.dylib",
        "libhepinfer.so*",
        "libhepinfer*.dylib",
    ):
        found = sorted(lib.glob(pattern))
        if found:
            return str(found[0])
    raise FileNotFoundError(
        f"hepinfer's shared library was not found in {lib}: this installation of hepinfer has only the static "
        "library, which ROOT's interpreter cannot load. Build hepinfer with its shared library, or set "
        "HEPINFER_SHARED_LIBRARY to a libhepinfer.so built with -DBUILD_SHARED_LIBS=ON."
    )


def declare() -> None:
    """Load hepinfer into ROOT's interpreter and declare ``hepinfer/rdf.hpp`` (once per process)."""
    global _declared
    with _lock:
        if _declared:
            return
        from hepinfer import include_dir

        ROOT = _root()
        lib = library_path()
        if ROOT.gSystem.Load(lib) < 0:
            raise RuntimeError(f"ROOT could not load {lib}")
        ROOT.gInterpreter.AddIncludePath(include_dir())
        # the factories PyROOT calls (hepinfer_rdf_python::new_predictor, ...) are in that header too
        if not ROOT.gInterpreter.Declare('#include "hepinfer/rdf_python.hpp"\n'):
            raise RuntimeError(
                f"ROOT's interpreter could not compile hepinfer/rdf_python.hpp from {include_dir()}"
            )
        _declared = True


def _translate(error: Exception) -> Exception:
    """cppyy's exception for a C++ hepinfer error -> hepinfer's Python exception."""
    text = str(error)
    for marker, cls in (("ModelFormatError", ModelFormatError), ("InputError", InputError)):
        if marker in text:
            message = text.split(marker, 1)[1].lstrip(": ").strip()
            return cls(message or text)
    return error


class Predictor:
    """A hepinfer model evaluated inside RDataFrame, one value (or vector) per event.

    Parameters
    ----------
    model:
        Model file: ``.onnx`` for a network, otherwise a forest (XGBoost JSON/UBJ, LightGBM text,
        TMVA XML); or a k-fold bundle (a folder with ``kfold.json``, see :mod:`hepinfer.kfold`):
        each event is scored by the member of its fold, read from the bundle's event-number
        column (an integer column), which the expression passes last (``self.columns`` ends
        with it).
    columns:
        RDataFrame columns, one per model feature (scalars), or one ``RVec`` per particle feature
        for a network over particles. For a forest that records feature names these must be
        exactly its feature names (any order).
    output_index:
        Which output to return for a model with several (e.g. one class of a multiclass forest).
    output:
        ``"probability"`` (default) or ``"margin"`` (forests: before the objective's link).
    all_outputs:
        Return every output of the event as ``RVec<float>`` instead of one float.
    event_number:
        k-fold bundles: the column holding the event number (default: the manifest's
        ``event_number``).

    Raises hepinfer.InputError when the columns do not fit the model and
    hepinfer.ModelFormatError for a bad model file.
    """

    def __init__(
        self,
        model: PathLike,
        columns: Sequence[str],
        *,
        output_index: Optional[int] = None,
        output: str = "probability",
        all_outputs: bool = False,
        event_number: Optional[str] = None,
    ) -> None:
        if isinstance(columns, str) or not all(isinstance(c, str) for c in columns):
            raise InputError("columns must be a sequence of column names (str)")
        if output not in ("probability", "margin"):
            raise InputError(f'output must be "probability" or "margin", not {output!r}')
        if all_outputs and output_index is not None:
            raise InputError("give either output_index or all_outputs=True, not both")
        from hepinfer.kfold import is_bundle

        path = os.fspath(model)
        kfold = is_bundle(path)
        if not kfold and not Path(path).is_file():
            raise InputError(f"model file {path} does not exist")
        if kfold and all_outputs:
            raise InputError(
                "all_outputs=True is not available for k-fold bundles: choose one output with output_index"
            )
        if event_number is not None and not kfold:
            raise InputError(f"event_number= is for k-fold bundles; {path} is a single model")
        declare()
        ROOT = _root()
        names = ROOT.std.vector["std::string"]()
        for c in columns:
            names.push_back(c)
        self.columns: list[str] = list(columns)
        self.model_path: str = path
        self.all_outputs: bool = all_outputs
        try:
            if kfold:
                index = -1 if output_index is None else int(output_index)
                obj = ROOT.hepinfer_rdf_python.new_kfold_predictor(
                    path, names, event_number or "", index, output == "margin"
                )
                self._type = "hepinfer::rdf::KFoldPredictor<>"
                self.columns = [str(c) for c in obj.columns()]  # the features, then the event number
            elif all_outputs:
                obj = ROOT.hepinfer_rdf_python.new_multi_predictor(path, names, output == "margin")
                self._type = "hepinfer::rdf::MultiPredictor<>"
            else:
                index = -1 if output_index is None else int(output_index)
                obj = ROOT.hepinfer_rdf_python.new_predictor(path, names, index, output == "margin")
                self._type = "hepinfer::rdf::Predictor<>"
        except Exception as e:  # noqa: BLE001 (cppyy turns C++ exceptions into several types)
            raise _translate(e) from None
        obj.__python_owns__ = True
        self._cpp = obj
        self._address = int(ROOT.addressof(obj))
        with _lock:
            _keep_alive.append(obj)

    @property
    def n_outputs(self) -> int:
        """Values per event of the model."""
        return int(self._cpp.n_outputs())

    def expression(self, columns: Optional[Sequence[str]] = None) -> str:
        """The C++ expression for ``RDataFrame.Define`` (optionally on other column names)."""
        cols = self.columns if columns is None else list(columns)
        if len(cols) != len(self.columns):
            raise InputError(f"{len(cols)} columns given, the predictor was made for {len(self.columns)}")
        return f"(*reinterpret_cast<const {self._type}*>({self._address:#x}))({', '.join(cols)})"

    def define(self, df: Any, name: str, columns: Optional[Sequence[str]] = None) -> Any:
        """``df.Define(name, self.expression(columns))``: the data frame with the score column."""
        return df.Define(name, self.expression(columns))

    def __repr__(self) -> str:
        return f"hepinfer.rdf.Predictor({self.model_path!r}, {self.columns!r})"
