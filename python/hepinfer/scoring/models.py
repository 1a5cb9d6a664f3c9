"""The model side of :func:`hepinfer.score`: the protocol a model follows, the adapters that
make forests, networks, model files and boosters follow it, and the mapping of branches or
expressions to model inputs."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any, Optional, Protocol, Union, runtime_checkable

import numpy as np

from hepinfer._core import InputError


@runtime_checkable
class ScoringModel(Protocol):
    """What :func:`score` needs from a model (see the module documentation)."""

    @property
    def input_names(self) -> Sequence[str]: ...

    @property
    def output_names(self) -> Sequence[str]: ...

    def predict(self, inputs: Mapping[str, np.ndarray]) -> Any: ...


# ---------------------------------------------------------------------------------- adapters


def _names(value: Any) -> list[str]:
    return [v if isinstance(v, str) else str(getattr(v, "name", v)) for v in value]


class _ForestModel:
    """A :class:`hepinfer.Forest` seen through the scoring protocol."""

    def __init__(
        self, forest: Any, output_kind: str, n_threads: Optional[int], output_names: Optional[Sequence[str]]
    ):
        self.forest = forest
        self.output_kind = output_kind
        self.n_threads = n_threads
        self.input_names = list(forest.feature_names)
        k = forest.n_outputs(output_kind)
        if output_names is not None:
            names = [str(n) for n in output_names]
            if len(names) != k:
                raise InputError(
                    f"output_names has {len(names)} names but the model gives {k} outputs per event"
                )
        else:
            names = ["score"] if k == 1 else [f"score_{i}" for i in range(k)]
        self.output_names = names

    def predict(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        return self.forest.predict(dict(inputs), output=self.output_kind, n_threads=self.n_threads)


class _KFoldModel:
    """A k-fold bundle (:class:`hepinfer.KFold`) seen through the scoring protocol: its inputs are
    the members' features and, last, the bundle's event-number branch, which picks the member
    that scores each event (``event_number mod k``); see :meth:`expressions`."""

    def __init__(
        self, kfold: Any, output_kind: str, n_threads: Optional[int], output_names: Optional[Sequence[str]]
    ) -> None:
        self.kfold = kfold
        self.output_kind = output_kind
        self.n_threads = n_threads
        self.feature_names = list(kfold.feature_names)
        self.event_input = kfold.event_number
        self.input_names = [*self.feature_names, self.event_input]
        k = kfold.n_outputs(output_kind)
        if output_names is not None:
            names = [str(n) for n in output_names]
            if len(names) != k:
                raise InputError(
                    f"output_names has {len(names)} names but the model gives {k} outputs per event"
                )
        else:
            names = ["score"] if k == 1 else [f"score_{i}" for i in range(k)]
        self.output_names = names

    def expressions(self, features: Any) -> dict[str, str]:
        """model input -> branch or expression: the features as :func:`score` takes them for a
        forest (``None``, a list in the bundle's feature order, or a dict), and the event number
        from the bundle's branch unless a dict names it (``{"event": "eventNumber"}``)."""
        event = self.event_input
        if isinstance(features, Mapping) and self.event_input in features:
            features = dict(features)
            event = str(features.pop(self.event_input))
        exprs = _feature_expressions(self.feature_names, features)
        exprs[self.event_input] = event
        return exprs

    def predict(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        X = {name: inputs[name] for name in self.feature_names}
        events = inputs[self.event_input]
        try:
            return self.kfold.predict(X, events, output=self.output_kind, n_threads=self.n_threads)
        except InputError as err:
            raise InputError(f"k-fold model, event-number branch {self.event_input!r}: {err}") from None


class _GenericModel:
    """Any object with input names and ``predict(dict)``."""

    def __init__(self, model: Any, output_names: Optional[Sequence[str]]):
        self.model = model
        for attr in ("input_names", "feature_names", "inputs"):
            value = getattr(model, attr, None)
            if value is not None and not callable(value):
                self.input_names = _names(value)
                break
        else:
            raise TypeError(
                f"{type(model).__name__} is not a model hepinfer can score: it needs input names "
                "(input_names, feature_names or inputs) and predict(dict of arrays)"
            )
        if not callable(getattr(model, "predict", None)):
            raise TypeError(f"{type(model).__name__} has no predict method")
        given = output_names if output_names is not None else getattr(model, "output_names", None)
        self.output_names = _names(given) if given is not None and not callable(given) else None

    def predict(self, inputs: Mapping[str, np.ndarray]) -> Any:
        return self.model.predict(dict(inputs))


class _NetworkModel:
    """A :class:`hepinfer.nn.Model` with one input of shape ``(events, k)`` seen through the
    scoring protocol: its k input columns are named ``"x[0]" ... "x[k-1]"`` (for an input
    called ``x``) and stacked in that order, so ``score`` needs ``features=`` (k branches or
    expressions, in the order the network was trained on)."""

    needs_features = True

    def __init__(self, model: Any, n_threads: Optional[int], output_names: Optional[Sequence[str]]) -> None:
        inputs = model.inputs
        shape = inputs[0].shape if len(inputs) == 1 else None
        if shape is None or len(shape) != 2 or int(shape[1]) < 1:
            described = ", ".join(f"{t.name} {list(t.shape) if t.shape is not None else '?'}" for t in inputs)
            raise InputError(
                f"score() runs networks with one input of shape (events, features); this one takes {described}: "
                "wrap it in an object with input_names and predict(dict of per-event arrays) "
                "(see hepinfer.scoring), e.g. padding particles with hepinfer.jagged"
            )
        self.model = model
        self.n_threads = 0 if n_threads is None else n_threads
        self.input = str(inputs[0].name)
        self.input_names = [f"{self.input}[{j}]" for j in range(int(shape[1]))]
        names = list(output_names) if output_names is not None else list(model.output_names)
        width = _one_output_width(model)
        if output_names is None and width is not None and width > 1:
            names = [f"score_{j}" for j in range(width)]  # one branch per column of the one output
        self.output_names = [str(n) for n in names]

    def predict(self, inputs: Mapping[str, np.ndarray]) -> Any:
        X = np.empty((len(inputs[self.input_names[0]]), len(self.input_names)), dtype=np.float32)
        for j, name in enumerate(self.input_names):
            X[:, j] = inputs[name]
        result = self.model.predict(X, n_threads=self.n_threads)
        if isinstance(result, np.ndarray) and result.ndim == 2 and result.shape[1] == 1:
            return result.reshape(-1)  # one score per event, as Forest.predict gives it
        return result


def _one_output_width(model: Any) -> Optional[int]:
    outs = model.outputs
    width = outs[0].shape[-1] if len(outs) == 1 and outs[0].shape else None
    return width if isinstance(width, int) else None


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if i >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        b = data[i]
        value |= (b & 0x7F) << shift
        i += 1
        shift += 7
        if b < 0x80:
            return value, i


def _protobuf_fields(data: bytes) -> Any:
    """(field number, wire type, value) of one protobuf message's top-level fields (value: an
    int, or the bytes of a length-delimited field)."""
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(data, i)
            yield field, wire, value
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        elif wire == 2:
            n, i = _varint(data, i)
            if i + n > len(data):
                raise ValueError("truncated field")
            yield field, wire, data[i : i + n]
            i += n
        else:
            raise ValueError(f"protobuf wire type {wire}")


def onnx_metadata(path: Union[str, os.PathLike]) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file (key -> value) without the onnx package: the
    top-level fields of the ModelProto are walked (field 14 holds the key/value pairs) and the
    graph is skipped. ``{}`` for a file that cannot be read this way."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        out = {}
        for field, wire, value in _protobuf_fields(data):
            if field == 14 and wire == 2:
                entry = {k: v for k, w, v in _protobuf_fields(value) if w == 2}
                out[entry.get(1, b"").decode("utf-8")] = entry.get(2, b"").decode("utf-8")
        return out
    except (OSError, ValueError, UnicodeDecodeError):
        return {}


def stored_output_columns(path: Union[str, os.PathLike]) -> Optional[list[str]]:
    """The output column names stored in a model file by :mod:`hepinfer.export` (ONNX
    ``metadata_props`` ``hepinfer.output_columns``; xgboost JSON ``learner.attributes``
    ``hepinfer_output_columns``), or ``None``."""
    text: Optional[str] = None
    path = os.fspath(path)
    if path.lower().endswith(".onnx"):
        text = onnx_metadata(path).get("hepinfer.output_columns")
    elif path.lower().endswith(".json"):
        try:
            with open(path, encoding="utf-8") as f:
                learner = json.load(f).get("learner", {})
            text = (learner.get("attributes") or {}).get("hepinfer_output_columns")
        except (OSError, ValueError, AttributeError):
            return None
    if not isinstance(text, str):
        return None
    try:
        names = json.loads(text)
    except ValueError:
        return None
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        return None
    return names


def _is_row_network(model: Any) -> bool:
    """True for a network with one input of shape ``(events, k)``, k fixed."""
    inputs = model.inputs
    if len(inputs) != 1 or inputs[0].shape is None or len(inputs[0].shape) != 2:
        return False
    return isinstance(inputs[0].shape[1], int)


def _expression_list(spec: Any, what: str) -> list[str]:
    if isinstance(spec, str):
        exprs = split_features(spec)
    elif isinstance(spec, Sequence):
        exprs = [str(e) for e in spec]
    else:
        raise InputError(
            f"{what}: give a branch name or a list of branch names/expressions, not {type(spec).__name__}"
        )
    if not exprs:
        raise InputError(f"{what}: no branch given")
    return exprs


class _JaggedNetworkModel:
    """A set or graph :class:`hepinfer.nn.Model` (PFN, EFN, ParticleNet) scored from jagged
    branches with :meth:`hepinfer.nn.Model.predict_jagged`, each event (jet) at its true
    number of particles. Each per-particle input is read from jagged branches (one per value
    per particle, in order), each per-jet input from flat branches; the mask input is built from
    the particle counts."""

    needs_features = True

    def __init__(
        self,
        model: Any,
        n_threads: Optional[int],
        output_names: Optional[Sequence[str]],
        mask: Union[str, None, bool] = None,
        particle_axis: Optional[int] = None,
    ) -> None:
        try:
            layout, _ = model.jagged_layout(mask=mask, particle_axis=particle_axis)
        except InputError as err:
            described = ", ".join(
                f"{t.name} {list(t.shape) if t.shape is not None else '?'}" for t in model.inputs
            )
            raise InputError(
                f"score() runs networks with one input of shape (events, features), or set/graph networks "
                f"read from jagged branches; this one takes {described} and is neither: {err}"
            ) from err
        self.model = model
        self.mask = mask
        self.particle_axis = particle_axis
        self.n_threads = 0 if n_threads is None else n_threads
        self.particle_inputs = {t.name: int(t.n_features) for t in layout if t.role == "particle"}
        self.jet_inputs = {t.name: int(t.n_features) for t in layout if t.role == "jet"}
        self.mask_inputs = [t.name for t in layout if t.role == "mask"]
        if not self.particle_inputs:
            raise InputError(
                f"the network's inputs {model.input_names} have no particle axis: score() reads it with "
                "features=[one branch per input column] only when it has one (events, k) input"
            )
        self.input_names = [*self.particle_inputs, *self.jet_inputs]
        names = list(output_names) if output_names is not None else list(model.output_names)
        width = _one_output_width(model)
        if output_names is None and width is not None and width > 1:
            names = [f"score_{j}" for j in range(width)]  # one branch per column of the one output
        self.output_names = [str(n) for n in names]

    def describe(self) -> str:
        parts = [f"{n} ({k} value(s) per particle)" for n, k in self.particle_inputs.items()]
        parts += [f"{n} ({k} value(s) per jet)" for n, k in self.jet_inputs.items()]
        parts += [f"{n} (mask, built from the particle counts)" for n in self.mask_inputs]
        return ", ".join(parts)

    def branch_map(
        self, features: Any, jet_features: Optional[Mapping[str, Any]]
    ) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        """(per-particle input -> jagged branches, per-jet input -> flat branches), validated."""
        if features is None:
            raise InputError(
                f"the network's inputs are {self.describe()}: give features={{input: [jagged branches, "
                "one per value per particle, in the order it was trained on]}"
                + (" and jet_features={input: [branches]}" if self.jet_inputs else "")
            )
        if not isinstance(features, Mapping):
            if len(self.particle_inputs) != 1:
                raise InputError(
                    f"the network has per-particle inputs {list(self.particle_inputs)}: give features as a "
                    "dict {input: [jagged branches]}"
                )
            features = {next(iter(self.particle_inputs)): features}
        particle: dict[str, list[str]] = {}
        for name, spec in features.items():
            name = str(name)
            if name in self.mask_inputs:
                raise InputError(
                    f"input {name!r} is the mask: it is built from the particle counts, do not give it"
                )
            if name in self.jet_inputs:
                raise InputError(
                    f"input {name!r} takes values per jet, not per particle: give it in jet_features="
                )
            if name not in self.particle_inputs:
                raise InputError(
                    f"features names {name!r}, which is not an input of the network; its inputs are {self.describe()}"
                )
            particle[name] = self._checked(
                name, _expression_list(spec, f"features[{name!r}]"), self.particle_inputs[name], "particle"
            )
        missing = [n for n in self.particle_inputs if n not in particle]
        if missing:
            raise InputError(
                f"features gives no branches for the per-particle input(s) {missing}; the inputs are {self.describe()}"
            )
        jets: dict[str, list[str]] = {}
        for name, spec in (jet_features or {}).items():
            name = str(name)
            if name in self.particle_inputs:
                raise InputError(
                    f"input {name!r} takes values per particle: give its jagged branches in features="
                )
            if name not in self.jet_inputs:
                raise InputError(
                    f"jet_features names {name!r}, which is not a per-jet input of the network; its inputs are {self.describe()}"
                )
            jets[name] = self._checked(
                name, _expression_list(spec, f"jet_features[{name!r}]"), self.jet_inputs[name], "jet"
            )
        missing = [n for n in self.jet_inputs if n not in jets]
        if missing:
            raise InputError(
                f"give jet_features={{input: [branches]}} for the per-jet input(s) {missing} ({self.describe()})"
            )
        return particle, jets

    @staticmethod
    def _checked(name: str, exprs: list[str], n: int, per: str) -> list[str]:
        if n > 0 and len(exprs) != n:
            raise InputError(
                f"input {name!r} takes {n} value(s) per {per}; {len(exprs)} branch(es) given: {exprs}"
            )
        return exprs

    def predict_jagged(
        self, offsets: np.ndarray, particles: Mapping[str, list[np.ndarray]], jets: Mapping[str, np.ndarray]
    ) -> Any:
        result = self.model.predict_jagged(
            offsets,
            dict(particles),
            jet_inputs=dict(jets) or None,
            mask=self.mask,
            particle_axis=self.particle_axis,
            n_threads=self.n_threads,
        )
        if isinstance(result, np.ndarray) and result.ndim == 2 and result.shape[1] == 1:
            return result.reshape(-1)
        return result


def _is_network(model: Any) -> bool:
    return type(model).__module__ == "hepinfer.nn" and type(model).__name__ == "Model"


def _check_nn_backend(model: Any, nn_backend: Optional[str]) -> None:
    """``nn_backend`` names how ONNX networks are evaluated: it must fit the model given."""
    if nn_backend is None:
        return
    if _is_network(model):
        if model.backend != nn_backend:
            raise InputError(
                f"nn_backend={nn_backend!r}, but this hepinfer.nn.Model was loaded with backend "
                f"{model.backend!r}: give the .onnx path, or load it with Model.load(path, backend={nn_backend!r})"
            )
        return
    raise InputError(
        f"nn_backend={nn_backend!r} is for ONNX networks (an .onnx path or a hepinfer.nn.Model); "
        f"this model is a {type(model).__name__}"
    )


def as_scoring_model(
    model: Any,
    *,
    output_kind: str = "probability",
    n_threads: Optional[int] = None,
    output_names: Optional[Sequence[str]] = None,
    nn_backend: Optional[str] = None,
) -> Any:
    """An object following :class:`ScoringModel` for ``model``: a :class:`hepinfer.Forest`, a
    k-fold bundle (:class:`hepinfer.KFold` or its folder / manifest path), a model file path or bytes, an xgboost/lightgbm booster, a :class:`hepinfer.nn.Model` (or an
    ``.onnx`` path) with one ``(events, features)`` input, or any object that already follows
    the protocol (``input_names``/``feature_names``/``inputs`` and ``predict(dict)``).

    ``nn_backend`` (``"hepinfer"`` or ``"onnxruntime"``, see :meth:`hepinfer.nn.Model.load`)
    loads an ``.onnx`` path with that backend; for a loaded network it must be the one it was
    loaded with, and it is refused for other models. ``None``: hepinfer's engine for paths.

    Output names: ``output_names`` when given; else, for a model file written by
    :mod:`hepinfer.export` (``hepinfer train``), the output columns stored in it
    (``score_<class>`` per class of a multiclass tagger, ``prediction``/``width`` of a
    regression) when their number matches the model's; else ``score`` for one output per event
    and ``score_0 .. score_<k-1>`` for k."""

    path = os.fspath(model) if isinstance(model, (str, os.PathLike)) else None
    stored = stored_output_columns(path) if path is not None and output_names is None else None
    scorer = _as_scoring_model(
        model, output_kind=output_kind, n_threads=n_threads, output_names=output_names, nn_backend=nn_backend
    )
    if stored is not None:
        _apply_stored_names(scorer, stored)
    return scorer


def _as_scoring_model(
    model: Any,
    *,
    output_kind: str,
    n_threads: Optional[int],
    output_names: Optional[Sequence[str]],
    nn_backend: Optional[str],
) -> Any:
    from hepinfer.forest import Forest
    from hepinfer.kfold import KFold, is_bundle

    if isinstance(model, (_NetworkModel, _JaggedNetworkModel)):
        _check_nn_backend(model.model, nn_backend)
        return model
    if isinstance(model, (_ForestModel, _GenericModel, _KFoldModel)):
        _check_nn_backend(model, nn_backend)
        return model
    if is_bundle(model):
        model = KFold.load(model)
    if isinstance(model, KFold):
        _check_nn_backend(model, nn_backend)
        return _KFoldModel(model, output_kind, n_threads, output_names)
    if isinstance(model, (str, os.PathLike)) and os.fspath(model).lower().endswith(".onnx"):
        from hepinfer.nn import Model

        model = Model.load(model, backend=nn_backend or "hepinfer")
    elif isinstance(model, (str, os.PathLike, bytes, bytearray)) or type(model).__module__.split(".")[0] in (
        "xgboost",
        "lightgbm",
    ):
        model = Forest.load(model)
    _check_nn_backend(model, nn_backend)
    if isinstance(model, Forest):
        return _ForestModel(model, output_kind, n_threads, output_names)
    if _is_network(model):
        if _is_row_network(model):
            return _NetworkModel(model, n_threads, output_names)
        return _JaggedNetworkModel(model, n_threads, output_names)
    return _GenericModel(model, output_names)


def _apply_stored_names(scorer: Any, stored: list[str]) -> None:
    """Name the outputs of the scoring model of a file by the names stored in it, where they fit
    the model's outputs (a forest's columns, a network's one output)."""
    if isinstance(scorer, _ForestModel):
        fits = (
            scorer.forest.n_outputs(scorer.output_kind) == len(stored) and scorer.output_kind == "probability"
        )
    elif isinstance(scorer, (_NetworkModel, _JaggedNetworkModel)):
        width = _one_output_width(scorer.model)
        fits = len(scorer.model.outputs) == 1 and (
            width == len(stored) or (width is None and len(stored) == 1)
        )
    else:
        fits = False
    if fits:
        scorer.output_names = list(stored)


def split_features(text: str) -> list[str]:
    """``"x, sqrt(a**2 + b**2), nth(Jet_pt, 1)"`` -> the three expressions: split at the commas
    outside parentheses and brackets, blanks around each removed."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def _feature_expressions(input_names: Sequence[str], features: Any) -> dict[str, str]:
    """model input name -> branch name or expression."""
    names = list(input_names)
    if features is None:
        if not names:
            raise InputError(
                "the model has no feature names: give features=[branch, ...] in the model's order"
            )
        return {n: n for n in names}
    if isinstance(features, str):
        features = split_features(features)
    if isinstance(features, Mapping):
        unknown = [k for k in features if names and k not in names]
        if unknown:
            raise InputError(
                f"features names {unknown} that are not model inputs; the model's inputs are {names}"
            )
        if not names:
            raise InputError("the model has no feature names: give features as a list in the model's order")
        return {n: str(features.get(n, n)) for n in names}
    features = [str(f) for f in features]
    if names and len(features) != len(names):
        raise InputError(
            f"features has {len(features)} entries but the model has {len(names)} inputs {names}; "
            "give one branch or expression per model input, in the model's order (or a dict)"
        )
    if not names:
        return {f: f for f in features}
    return dict(zip(names, features))


def _output_columns(
    result: Any, n: int, names: Optional[list[str]]
) -> tuple[list[str], list[np.ndarray], str]:
    """Normalise a model's predict result into (names, columns, kind)."""
    if isinstance(result, Mapping):
        cols = [np.asarray(v) for v in result.values()]
        keys = [str(k) for k in result.keys()]
        kind = "dict"
    elif type(result).__module__.startswith("awkward"):
        import awkward as ak

        fields = ak.fields(result)
        if fields:
            keys, cols, kind = list(fields), [ak.to_numpy(result[f]) for f in fields], "dict"
        else:
            return _output_columns(ak.to_numpy(result), n, names)
    else:
        a = np.asarray(result)
        if a.ndim == 1:
            cols = [a]
        elif a.ndim == 2:
            cols = [a[:, j] for j in range(a.shape[1])]
        else:
            raise InputError(f"the model returned an array of shape {a.shape}; expected (n,) or (n, k)")
        keys = (
            names
            if names is not None and len(names) == len(cols)
            else (["score"] if len(cols) == 1 else [f"score_{j}" for j in range(len(cols))])
        )
        kind = "array1" if a.ndim == 1 else "array2"
    for k, c in zip(keys, cols):
        if c.shape != (n,):
            raise InputError(f"the model's output {k!r} has shape {c.shape} for {n} events")
    return keys, cols, kind
