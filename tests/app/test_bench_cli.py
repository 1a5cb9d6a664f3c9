"""`hepinfer bench` from the installed package (hepinfer.bench), run from a folder outside the
checkout: the results go where asked (default: the current directory), never into the package or
the checkout; a missing competitor names the package to install; `--help` is the benchmark's own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import hepinfer
from hepinfer.cli import main

PACKAGE = Path(hepinfer.__file__).resolve().parent
CHECKOUT = Path(__file__).resolve().parents[2]

# `python -c` running the command line with onnxmltools hidden, as on a machine without it
WITHOUT_ONNXMLTOOLS = "import sys; sys.modules['onnxmltools'] = None; from hepinfer.cli import main; sys.exit(main(sys.argv[1:]))"


def _files(folder: Path) -> dict[str, float]:
    """Every file under folder (no caches) with its modification time."""
    return {
        str(p.relative_to(folder)): p.stat().st_mtime
        for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and ".pytest_cache" not in p.parts
    }


def _checkout_state() -> str:
    """What git sees in the checkout (modified tracked files, new untracked ones); '' outside one."""
    if not (CHECKOUT / ".git").exists():
        return ""
    proc = subprocess.run(
        ["git", "-C", str(CHECKOUT), "status", "--porcelain", "--untracked-files=all"],
        capture_output=True,
        text=True,
    )
    return proc.stdout if proc.returncode == 0 else ""


def _run(args: list[str], cwd: Path, code: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, HEPINFER_BENCH_CACHE=str(cwd / "cache"), PYTHONDONTWRITEBYTECODE="1")
    head = [sys.executable, "-c", code] if code else [sys.executable, "-m", "hepinfer"]
    return subprocess.run(head + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_bench_forest_tiny_outside_the_checkout(tmp_path):
    pytest.importorskip("xgboost")
    pytest.importorskip("onnxruntime")
    work = tmp_path / "elsewhere"
    work.mkdir()
    before_package, before_checkout = _files(PACKAGE), _checkout_state()
    out = tmp_path / "results" / "forest.json"
    proc = _run(["bench", "forest", "--tiny", "--json", str(out)], work, code=WITHOUT_ONNXMLTOOLS)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(out.read_text())
    assert doc["benchmark"] == "forest" and doc["tiny"]
    engines = {r["engine"] for r in doc["results"]}
    assert {"hepinfer", "xgboost"} <= engines and {r["model"] for r in doc["results"]} == {"e"}
    # onnxruntime is installed, its tree converter is not: the reason names what to install
    ort = doc["engines"]["onnxruntime"]
    assert not ort["available"]
    assert "pip install onnxmltools" in ort["reason"] and "hepinfer[bench]" in ort["reason"]
    assert "pip install onnxmltools" in proc.stdout
    # nothing written beside the results: not in the working folder, the package or the checkout
    assert sorted(p.name for p in work.iterdir()) == ["cache"]
    assert _files(PACKAGE) == before_package
    assert _checkout_state() == before_checkout


def test_bench_jagged_writes_into_the_current_directory(tmp_path):
    pytest.importorskip("awkward")
    before_checkout = _checkout_state()
    args = ["bench", "jagged", "--events", "3000", "--repeats", "1", "--threads", "1", "--no-file"]
    proc = _run(args, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads((tmp_path / "hepinfer-bench-jagged.json").read_text())
    assert doc["benchmark"] == "jagged" and doc["events"] == 3000
    assert {r["operation"] for r in doc["results"]} >= {"leading4", "min_dr"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hepinfer-bench-jagged.json"]
    assert _checkout_state() == before_checkout


@pytest.mark.parametrize("name", ["forest", "nn", "disco", "io", "jagged", "codegen", "load"])
def test_bench_help_is_the_benchmarks_own(name, capsys):
    assert main(["bench", name, "--help"]) == 0
    out = capsys.readouterr().out
    assert f"usage: hepinfer bench {name}" in out
    assert "--out DIR" in out and "--json PATH" in out


def test_bench_refuses_to_write_into_the_package(capsys):
    assert main(["bench", "disco", "--tiny", "--out", str(PACKAGE / "results")]) == 2
    assert "inside the hepinfer package" in capsys.readouterr().err
    assert not (PACKAGE / "results").exists()


def test_bench_lists_the_benchmarks(capsys):
    assert main(["bench", "--help"]) == 0
    out = capsys.readouterr().out
    for name in ("forest", "nn", "disco", "io"):
        assert f"\n  {name} " in out
    assert "hepinfer[bench]" in out
    assert main(["bench", "nope"]) == 2
    assert "unknown benchmark 'nope'" in capsys.readouterr().err


def test_missing_names_the_package_to_install():
    from hepinfer.bench import import_reason, missing

    assert missing("onnxmltools") == (
        "onnxmltools is not installed: pip install onnxmltools (or pip install 'hepinfer[bench]')"
    )
    assert missing("sklearn").startswith("scikit-learn is not installed: pip install scikit-learn")
    with pytest.raises(ImportError) as info:
        import hepinfer_no_such_module  # noqa: F401
    assert import_reason(info.value) == missing("hepinfer_no_such_module")
