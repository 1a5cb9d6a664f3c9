"""Command-line manners: --version in the help, Ctrl-C ends any subcommand with one line and exit
status 130 (no traceback), `hepinfer info` describes every kind of model hepinfer loads."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import hepinfer
from hepinfer.cli import main

DATA = Path(__file__).resolve().parents[1] / "data"


def test_help_shows_version_and_cmake_dir(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--version" in out and "--cmake-dir" in out and "130" in out
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == hepinfer.__version__


def _interrupt(args: list[str], cwd: Path, after: float) -> subprocess.CompletedProcess:
    """Run `python -m hepinfer ARGS`, send SIGINT (Ctrl-C) `after` seconds in, collect the result."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "hepinfer", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(after)
    assert proc.poll() is None, "the command ended before it could be interrupted: " + proc.stderr.read()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _train_config(tmp_path: Path) -> Path:
    """A run that goes on for much longer than the test waits (100000 epochs)."""
    rng = np.random.default_rng(3)
    n = 2000
    data = tmp_path / "jets.npz"
    np.savez(
        data,
        jet_mass=rng.exponential(50.0, n),
        tau21=rng.uniform(size=n),
        label=rng.integers(0, 2, n),
        event=rng.permutation(n),
        weight=np.ones(n),
    )
    cfg = tmp_path / "run.toml"
    cfg.write_text(
        f'seed = 1\noutput = "{(tmp_path / "out").as_posix()}"\n'
        f'[data]\nsource = "{data.as_posix()}"\nfeatures = ["jet_mass", "tau21"]\n'
        '[model]\nkind = "mlp"\nhidden = [8]\n'
        "[training]\nepochs = 100000\nbatch_size = 64\nprogress = false\n"
    )
    return cfg


@pytest.mark.parametrize("command, after", [("train", 1.5), ("train", 4.0), ("demo", 4.0)])
def test_ctrl_c_exits_130_with_one_line(command, after, tmp_path):
    """SIGINT while the subcommand imports its libraries (torch: an interrupt there used to end the
    process by SIGINT, status -2, although it was handled) or works: exit status 130, a one-line
    message on stderr, no traceback."""
    pytest.importorskip("torch")
    pytest.importorskip("xgboost")
    if command == "train":
        args = ["train", str(_train_config(tmp_path))]
    else:
        pytest.importorskip("onnxruntime")
        pytest.importorskip("matplotlib")
        pytest.importorskip("uproot")
        args = ["demo", "--out", str(tmp_path / "demo")]
    result = _interrupt(args, tmp_path, after=after)
    assert result.returncode == 128 + signal.SIGINT, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("hepinfer: stopped by Ctrl-C (SIGINT)")
    assert sum("stopped by" in line for line in lines) == 1


def test_info_every_model_kind(tmp_path, capsys):
    """Forests of every format (XGBoost JSON and UBJ, LightGBM text, TMVA XML), an ONNX network and
    a k-fold bundle: each described, exit status 0; what each says comes from the model."""
    cases = {
        DATA / "xgboost" / "xgb2.1.4_multi_softprob.json": ["format       xgboost", "multi:softprob"],
        DATA / "xgboost" / "xgb2.1.4_binary_logistic.ubj": ["format       xgboost", "binary:logistic"],
        DATA / "lightgbm" / "multiclass.txt": ["format       lightgbm", "classes      3"],
        DATA / "tmva" / "grad.xml": ["format       tmva", "names        p, q"],
    }
    for path, expected in cases.items():
        forest = hepinfer.Forest.load(path)
        assert main(["info", str(path)]) == 0
        out = capsys.readouterr().out
        for text in expected + [f"trees        {forest.n_trees}", f"features     {forest.n_features}"]:
            assert text in out, (path, text, out)

    onnx_model = DATA / "onnx" / "mlp_3_4_2.onnx"
    assert main(["info", str(onnx_model)]) == 0
    out = capsys.readouterr().out
    assert "format       ONNX" in out and "x: float32[batch, 3]" in out and "loads        yes" in out

    member = DATA / "xgboost" / "xgb2.1.4_binary_logistic.json"
    names = hepinfer.Forest.load(member).feature_names
    for i in range(3):
        shutil.copy(member, tmp_path / f"fold{i}.json")
    hepinfer.kfold.write_manifest(
        tmp_path / "bundle",
        [tmp_path / f"fold{i}.json" for i in range(3)],
        features=names,
        event_number="evt",
    )
    assert main(["info", str(tmp_path / "bundle")]) == 0
    out = capsys.readouterr().out
    assert "k-fold bundle (3 folds of forest members)" in out
    assert "fold = evt mod 3" in out and "names        " + ", ".join(names) in out
    assert out.count(" fold ") == 3 and os.fspath(tmp_path / "fold2.json") in out
