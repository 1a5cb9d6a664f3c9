"""Model.profile / `hepinfer info model.onnx --profile`: where the time of one evaluation goes,
node by node (issue 16: "where a target is missed, say where the time goes")."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

import hepinfer  # noqa: E402
from hepinfer.cli import main  # noqa: E402
from hepinfer.nn import Model, NodeTime  # noqa: E402
from tests.nn.onnx_graphs import small_mlp, squeeze_if_one  # noqa: E402


def test_profile_has_one_entry_per_loaded_node(rng):
    m = Model.load(small_mlp(rng).SerializeToString())
    x = rng.normal(size=(64, 6)).astype(np.float32)
    times = m.profile(x, repeats=5)
    assert len(times) == m.n_nodes
    assert all(isinstance(t, NodeTime) and t.ran and t.seconds >= 0 for t in times)
    # MatMul + Add + Relu fuse into one node named after the first; the second MatMul and the
    # Softmax stay apart
    assert [t.op_type for t in times][-1] == "Softmax"
    assert times[0].name.startswith("mm1") and "Relu" in times[0].op_type
    # inputs are taken as predict takes them (a dict) and the model still predicts the same
    assert len(m.profile({"x": x}, repeats=1)) == m.n_nodes
    np.testing.assert_array_equal(m.predict(x), m.predict(x.copy()))


def test_profile_marks_the_skipped_branch(rng):
    m = Model.load(squeeze_if_one().SerializeToString())
    x = rng.normal(size=(3, 4, 3)).astype(np.float32)  # dimension 1 is not 1: the else branch runs
    times = m.profile({"x": x}, repeats=3)
    skipped = [t for t in times if not t.ran]
    assert skipped and all(t.seconds == 0 for t in skipped)
    assert any(t.ran for t in times)


def test_profile_checks_its_arguments(rng):
    m = Model.load(small_mlp(rng).SerializeToString())
    with pytest.raises(ValueError, match="repeats must be at least 1"):
        m.profile(np.zeros((2, 6), np.float32), repeats=0)
    with pytest.raises(hepinfer.InputError, match="input 'x'"):
        m.profile(np.zeros((2, 5), np.float32))
    pytest.importorskip("onnxruntime")
    ort_model = Model.load(small_mlp(rng).SerializeToString(), backend="onnxruntime")
    with pytest.raises(ValueError, match="hepinfer backend"):
        ort_model.profile(np.zeros((2, 6), np.float32))


def test_cli_info_profile(rng, tmp_path, capsys):
    path = tmp_path / "mlp.onnx"
    path.write_bytes(small_mlp(rng).SerializeToString())
    assert main(["info", str(path), "--profile", "--batch", "32", "--repeats", "3", "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert "profile      batch 32, one thread, median of 3 evaluations" in out
    by_op = out.split("by operator")[1].split("slowest nodes")[0]
    assert "Softmax" in by_op and "MatMul" in by_op
    slowest = out.split("slowest nodes (top 2)")[1].strip().splitlines()
    assert len(slowest) == 2


def test_cli_info_profile_needs_symbolic_dims(rng, tmp_path, capsys):
    path = tmp_path / "if.onnx"
    path.write_bytes(squeeze_if_one().SerializeToString())
    code = main(["info", str(path), "--profile"])
    err = capsys.readouterr().err
    assert code != 0 and "give --dim k=VALUE" in err
    assert main(["info", str(path), "--profile", "--dim", "k=4", "--repeats", "2"]) == 0
    assert "by operator" in capsys.readouterr().out
    assert main(["info", str(path), "--profile", "--dim", "k=four"]) != 0
    assert "--dim takes NAME=VALUE" in capsys.readouterr().err
