"""Inputs the loader fuzzers (tests/fuzz, run by .ci/fuzz) once crashed, hung or exhausted memory on.

Each file under tests/data/fuzz_regressions/<target>/ is a minimised fuzzer input; the fixed
loaders must now either reject it with hepinfer.ModelFormatError (a ValueError whose message
names the file) or load it, in which case the model must evaluate rows holding NaN, +-inf,
signed zeros and extreme values without crashing, with outputs of the declared shape that do
not depend on the number of threads. .ci/fuzz replays the same folders through the C++
harnesses under AddressSanitizer/UBSan.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hepinfer import Forest, InputError, Model, ModelFormatError

REGRESSIONS = Path(__file__).resolve().parents[1] / "data" / "fuzz_regressions"
# fuzz target (folder name) -> Forest.load format; "onnx" loads with Model.load
FOREST_FORMATS = {
    "xgboost_json": "xgboost-json",
    "xgboost_ubj": "xgboost-ubj",
    "lightgbm": "lightgbm",
    "tmva": "tmva",
}
TARGETS = (*FOREST_FORMATS, "onnx")


def _cases() -> list:
    if not REGRESSIONS.is_dir():
        return []
    return [
        pytest.param(folder.name, path, id=f"{folder.name}/{path.name}")
        for folder in sorted(REGRESSIONS.iterdir())
        if folder.is_dir()
        for path in sorted(folder.iterdir())
        if path.is_file()
    ]


CASES = _cases()


def _special_rows(rng: np.random.Generator, n_rows: int, n_features: int) -> np.ndarray:
    """Random rows in which a third of the values are NaN, +-inf, +-0 or near the float range ends."""
    x = rng.normal(scale=5.0, size=(n_rows, n_features))
    specials = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 3.4e38, -3.4e38, 1e-40])
    mask = rng.random(size=x.shape) < 0.35
    x[mask] = rng.choice(specials, size=int(mask.sum()))
    return x


def test_regression_folders_are_fuzz_targets():
    """Every folder is named after a harness of .ci/fuzz, which replays it; no stray files."""
    if not REGRESSIONS.is_dir():
        pytest.skip("no fuzz regressions recorded")
    for entry in REGRESSIONS.iterdir():
        assert entry.is_dir() and entry.name in TARGETS, entry
        assert any(entry.iterdir()), f"{entry} is empty"


@pytest.mark.parametrize("target,path", CASES)
def test_fuzz_regression_is_rejected_or_evaluates(target, path, rng, tmp_path):
    if target == "onnx":
        _check_onnx(path, rng, tmp_path)
    else:
        _check_forest(target, path, rng)


def _check_forest(target: str, path: Path, rng: np.random.Generator) -> None:
    kwargs = {"tmva_cut_op": "auto"} if target == "tmva" else {}
    try:
        forest = Forest.load(path, format=FOREST_FORMATS[target], **kwargs)
    except ModelFormatError as err:
        assert path.name in str(err), f"the message should name the file: {err}"
        # the same bytes from memory give the same rejection (bar the source name)
        with pytest.raises(ModelFormatError):
            Forest.load(path.read_bytes(), format=FOREST_FORMATS[target], **kwargs)
        return
    # accepted: it must evaluate cleanly
    X = _special_rows(rng, 37, forest.n_features)
    for output in ("probability", "margin"):
        one = forest.predict(X.astype(np.float32), output=output, n_threads=1)
        many = forest.predict(X.astype(np.float32), output=output, n_threads=3)
        n_out = forest.n_outputs(output)
        assert one.shape == ((37,) if n_out == 1 else (37, n_out))
        np.testing.assert_array_equal(one, many)
        row = forest.predict_one(X[0].astype(np.float32), output=output)
        np.testing.assert_array_equal(np.asarray(row).ravel(), np.asarray(one[0]).ravel())
    assert forest.predict_leaf(X).shape == (37, forest.n_trees)


def _check_onnx(path: Path, rng: np.random.Generator, tmp_path: Path) -> None:
    # external data is looked up in an empty folder: a fuzzed location can only fail to open
    try:
        model = Model.load(path, external_data_dir=tmp_path)
    except ModelFormatError as err:
        assert path.name in str(err), f"the message should name the file: {err}"
        with pytest.raises(ModelFormatError):
            Model.load(path.read_bytes(), external_data_dir=tmp_path)
        return
    inputs = {}
    for info in model.inputs:
        shape = tuple(d if isinstance(d, int) else 2 for d in (info.shape or ()))
        if info.dtype == "float32":
            inputs[info.name] = _special_rows(rng, 1, int(np.prod(shape))).astype(np.float32).reshape(shape)
        elif info.dtype == "int64":
            inputs[info.name] = rng.integers(-3, 4, size=shape).astype(np.int64)
        else:
            inputs[info.name] = rng.random(size=shape) < 0.5
    try:
        out = model.predict(inputs)
    except InputError:
        return  # an accepted model may refuse particular values (an index out of range)
    outs = out if isinstance(out, dict) else {model.outputs[0].name: out}
    assert list(outs) == model.output_names
