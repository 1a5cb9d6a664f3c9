"""The command line: info, predict, score and the subcommands (the demo itself: tests/test_demo.py)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import hepinfer
from hepinfer.cli import main


def test_roc_auc_reference():
    from hepinfer.demo import roc_auc

    y = np.array([0, 0, 1, 1, 0, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.4, 0.4])
    # brute force: P(s_pos > s_neg) + 0.5 P(equal)
    pos, neg = s[y == 1], s[y == 0]
    expected = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    assert roc_auc(y, s) == pytest.approx(expected)


def test_info_and_predict(tmp_path, capsys):
    xgb = pytest.importorskip("xgboost")
    rng = np.random.default_rng(5)
    X = rng.normal(size=(200, 3)).astype(np.float32)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 2}, xgb.DMatrix(X, X[:, 0] > 0), 4)
    model = tmp_path / "m.ubj"
    booster.save_model(model)
    assert main(["info", str(model)]) == 0
    assert "binary:logistic" in capsys.readouterr().out
    csv = tmp_path / "rows.csv"
    np.savetxt(csv, X[:20], delimiter=",")
    out = tmp_path / "scores.csv"
    assert main(["predict", str(model), str(csv), "-o", str(out)]) == 0
    np.testing.assert_allclose(np.loadtxt(out), hepinfer.Forest.load(model).predict(X[:20].astype(np.float64)))
    assert main(["info", str(csv)]) == 1  # not a model: a clear error, exit code 1
    assert "unrecognised model format" in capsys.readouterr().err


def test_module_entry_point():
    proc = subprocess.run([sys.executable, "-m", "hepinfer", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0
    assert proc.stdout.strip() == hepinfer.__version__


def test_score_command(tmp_path, capsys, rng):
    xgb = pytest.importorskip("xgboost")
    uproot = pytest.importorskip("uproot")
    n = 4000
    cols = {"pt": rng.exponential(40, n).astype(np.float32), "eta": rng.normal(0, 2, n).astype(np.float32)}
    for i, part in enumerate(np.array_split(np.arange(n), 2)):
        with uproot.recreate(tmp_path / f"in{i}.root") as f:
            f.mktree("Events", {"Muon_pt": np.float32, "Muon_eta": np.float32, "event": np.uint64})
            f["Events"].extend({"Muon_pt": cols["pt"][part], "Muon_eta": cols["eta"][part], "event": part.astype(np.uint64)})
    X = np.stack([cols["pt"], cols["eta"]], axis=1)
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 3}, xgb.DMatrix(X, X[:, 0] > 40, feature_names=["pt", "eta"]), 5
    )
    model = tmp_path / "m.json"
    booster.save_model(model)
    out = tmp_path / "scores.root"
    argv = ["score", str(model), str(tmp_path / "in*.root"), "--tree", "Events", "--features", "Muon_pt,Muon_eta"]
    assert main([*argv, "-o", str(out), "--chunk", "700", "--threads", "1"]) == 0
    captured = capsys.readouterr()
    assert "4.00k/4.00k" in captured.err and "events/s" in captured.err  # the progress bar
    assert "2 scored, 0 failed" in captured.out and "4,000" in captured.out and str(out) in captured.out
    with uproot.open(out) as f:
        got = f["scores"].arrays(library="np")
    np.testing.assert_array_equal(got["score"], hepinfer.Forest.load(model).predict(X))
    np.testing.assert_array_equal(got["event"], np.arange(n))
    assert main([*argv, "-o", str(out), "--chunk", "50 kB", "--output-kind", "margin", "--no-progress"]) == 0
    with uproot.open(out) as f:
        margins = f["scores"]["score"].array(library="np")
    np.testing.assert_array_equal(margins, hepinfer.Forest.load(model).predict(X, output="margin"))
    # a bad file: exit code 1 and the file named; with --on-error skip, exit code 3 and a summary
    (tmp_path / "in9.root").write_text("not ROOT")
    capsys.readouterr()
    assert main([*argv, "-o", str(out), "--no-progress"]) == 1
    assert "in9.root" in capsys.readouterr().err
    assert main([*argv, "-o", str(out), "--no-progress", "--on-error", "skip"]) == 3
    assert "FAILED    [2]" in capsys.readouterr().out
    assert main(["score", str(model), str(tmp_path / "in0.root"), "-o", str(out), "--features", "Muon_pt"]) == 1
    assert "features has 1 entries but the model has 2 inputs" in capsys.readouterr().err


def test_demo_arguments_reach_run_demo(monkeypatch, tmp_path):
    import hepinfer.demo

    seen = {}
    monkeypatch.setattr(hepinfer.demo, "run_demo", lambda **kw: seen.update(kw) or 0)
    assert main(["demo", "--events", "300", "--generate", "50", "--out", str(tmp_path), "--threads", "2"]) == 0
    assert seen["n_events"] == 300 and seen["generate"] == 50 and seen["n_threads"] == 2
    assert str(seen["out_dir"]) == str(tmp_path) and seen["sample"] is None


@pytest.mark.parametrize("command", ["generate", "train", "codegen", "score", "demo"])
def test_subcommands_have_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"hepinfer {command}" in capsys.readouterr().out
