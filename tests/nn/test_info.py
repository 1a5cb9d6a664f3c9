"""hepinfer.nn.describe / `hepinfer info model.onnx`: what an ONNX file holds, read without
building the model, with every node marked native or not (issue 16)."""

from __future__ import annotations

import pytest

onnx = pytest.importorskip("onnx")

import hepinfer  # noqa: E402
from hepinfer.cli import main  # noqa: E402
from hepinfer.nn import describe, supported_operators  # noqa: E402
from tests.nn.onnx_graphs import small_mlp  # noqa: E402


def test_describe_supported_model(rng):
    m = small_mlp(rng)
    s = describe(m)
    assert s.producer == "test 1.0"
    assert s.opset == 17 and s.ir_version == 8
    assert [(t.name, t.dtype, t.shape) for t in s.inputs] == [("x", "float32", ("batch", 6))]
    assert [(t.name, t.dtype, t.shape) for t in s.outputs] == [("y", "float32", ("batch", 3))]
    assert s.n_parameters == 6 * 8 + 8 + 8 * 3 and s.n_initializers == 3
    assert [n.op_type for n in s.nodes] == ["MatMul", "Add", "Relu", "MatMul", "Softmax"]
    assert all(n.supported for n in s.nodes) and s.unsupported == []
    assert s.op_histogram() == {("", "MatMul"): 2, ("", "Add"): 1, ("", "Relu"): 1, ("", "Softmax"): 1}
    # the same from bytes and from a path
    assert describe(m.SerializeToString()) == s


def test_describe_lists_unsupported_nodes(rng, tmp_path):
    m = small_mlp(rng, unsupported=True)
    path = tmp_path / "m.onnx"
    onnx.save(m, str(path))
    s = describe(path)
    assert [(n.name, n.op_type, n.domain) for n in s.unsupported] == [
        ("hardmax", "Hardmax", ""),
        ("custom", "Custom", "com.example"),
    ]
    # the engine refuses it, naming both nodes at once
    with pytest.raises(hepinfer.ModelFormatError, match=r"hardmax.*Hardmax.*custom.*Custom"):
        hepinfer.nn.Model.load(path)


def test_supported_operators_match_describe(rng):
    ops = supported_operators()
    assert ops == sorted(ops) and {"MatMul", "Gemm", "Conv", "Softmax", "Constant"} <= set(ops)
    assert "Hardmax" not in ops
    s = describe(small_mlp(rng))
    assert all((n.op_type in ops) == n.supported for n in s.nodes)


def test_cli_info_onnx(rng, tmp_path, capsys):
    good, bad = tmp_path / "good.onnx", tmp_path / "bad.onnx"
    onnx.save(small_mlp(rng), str(good))
    onnx.save(small_mlp(rng, unsupported=True), str(bad))
    assert main(["info", str(good)]) == 0
    out = capsys.readouterr().out
    assert "opset 17" in out and "x: float32[batch, 6]" in out and "y: float32[batch, 3]" in out
    assert "parameters   80 in 3 initializers" in out
    assert "MatMul" in out and "NOT SUPPORTED" not in out and "loads        yes" in out
    assert main(["info", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "Hardmax" in out and "com.example.Custom" in out and "NOT SUPPORTED" in out
    assert "nodes        6, 4 of them on operators hepinfer implements" in out
    assert "loads        no:" in out


def test_describe_malformed_file(tmp_path):
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"\x08\x07\x12\xff\xff\xff")
    with pytest.raises(hepinfer.ModelFormatError, match="broken.onnx"):
        describe(path)
    with pytest.raises(hepinfer.ModelFormatError):
        describe(tmp_path / "missing.onnx")
    with pytest.raises(TypeError):
        describe(3.5)


def test_readme_operator_table_is_the_op_table():
    """README's operator table lists exactly the operators the engine implements."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = text[text.index("| family | operators |") :].split("\n\n", 1)[0]
    listed: set[str] = set()
    for row in table.splitlines()[2:]:
        cell = row.split("|")[2]
        cell = re.sub(r"\([^)]*\)", "", cell)
        listed |= {w.strip() for w in cell.split(",") if w.strip()}
    assert listed == set(supported_operators())
