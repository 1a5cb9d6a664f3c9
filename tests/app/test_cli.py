"""The command line: info, predict, score and the subcommands (the demo itself: tests/app/test_demo.py)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import hepinfer
from hepinfer.cli import main


def test_roc_auc_reference():
    from hepinfer.metrics import roc_auc

    y = np.array([0, 0, 1, 1, 0, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.4, 0.4])
    # brute force: P(s_pos > s_neg) + 0.5 P(equal)
    pos, neg = s[y == 1], s[y == 0]
    expected = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    assert roc_auc(s, y) == pytest.approx(expected)


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
    np.testing.assert_allclose(
        np.loadtxt(out), hepinfer.Forest.load(model).predict(X[:20].astype(np.float64))
    )
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
            f["Events"].extend(
                {"Muon_pt": cols["pt"][part], "Muon_eta": cols["eta"][part], "event": part.astype(np.uint64)}
            )
    X = np.stack([cols["pt"], cols["eta"]], axis=1)
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 3},
        xgb.DMatrix(X, X[:, 0] > 40, feature_names=["pt", "eta"]),
        5,
    )
    model = tmp_path / "m.json"
    booster.save_model(model)
    out = tmp_path / "scores.root"
    argv = [
        "score",
        str(model),
        str(tmp_path / "in*.root"),
        "--tree",
        "Events",
        "--features",
        "Muon_pt,Muon_eta",
        "--force",
    ]  # the runs below write the same output again
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
    assert (
        main(["score", str(model), str(tmp_path / "in0.root"), "-o", str(out), "--features", "Muon_pt"]) == 1
    )
    assert "features has 1 entries but the model has 2 inputs" in capsys.readouterr().err


def test_demo_arguments_reach_run_demo(monkeypatch, tmp_path):
    import hepinfer.demo

    seen = {}
    monkeypatch.setattr(hepinfer.demo, "run_demo", lambda **kw: seen.update(kw) or 0)
    assert (
        main(["demo", "--events", "300", "--generate", "50", "--out", str(tmp_path), "--threads", "2"]) == 0
    )
    assert seen["n_events"] == 300 and seen["generate"] == 50 and seen["n_threads"] == 2
    assert str(seen["out_dir"]) == str(tmp_path) and seen["sample"] is None


@pytest.mark.parametrize("command", ["generate", "train", "codegen", "score", "demo"])
def test_subcommands_have_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"hepinfer {command}" in capsys.readouterr().out


def test_score_command_aliases(tmp_path, capsys, rng):
    """--aliases defines features from branch expressions (usable in --features, --cut and other
    aliases); the scores equal the model on the same quantities computed with numpy."""
    xgb = pytest.importorskip("xgboost")
    uproot = pytest.importorskip("uproot")
    ak = pytest.importorskip("awkward")
    n = 3000
    counts = rng.poisson(2.0, n)
    jet_pt = ak.unflatten(rng.exponential(30, int(counts.sum())).astype(np.float32), counts)
    px, py = rng.normal(0, 20, n).astype(np.float32), rng.normal(0, 20, n).astype(np.float32)
    with uproot.recreate(tmp_path / "in.root") as f:
        f.mktree("Events", {"MET_px": np.float32, "MET_py": np.float32, "Jet_pt": "var * float32"})
        f["Events"].extend({"MET_px": px, "MET_py": py, "Jet_pt": jet_pt})
    met = np.sqrt(px**2 + py**2)
    lead = ak.to_numpy(ak.fill_none(ak.firsts(jet_pt), np.nan)).astype(np.float32)
    ht = ak.to_numpy(ak.sum(jet_pt, axis=1)).astype(np.float32)
    X = np.stack([met, lead, ht], axis=1)
    names = ["met", "lead_pt", "ht"]
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 3},
        xgb.DMatrix(X, met > 25, feature_names=names, missing=np.nan),
        8,
    )
    model = tmp_path / "m.json"
    booster.save_model(model)
    forest = hepinfer.Forest.load(model)
    out = tmp_path / "scores.root"
    argv = [
        "score",
        str(model),
        str(tmp_path / "in.root"),
        "-o",
        str(out),
        "--no-progress",
        "--chunk",
        "700",
        "--force",
    ]
    aliases = ["met=sqrt(MET_px**2 + MET_py**2), lead_pt=first(Jet_pt)", "ht = sum_of(Jet_pt)"]
    assert main([*argv, "--aliases", aliases[0], "--aliases", aliases[1]]) == 0  # features named like aliases
    with uproot.open(out) as f:
        got = f["scores"].arrays(library="np")
    np.testing.assert_array_equal(got["score"], forest.predict(X))
    np.testing.assert_array_equal(got["entry"], np.arange(n))
    # aliases in --features and --cut, an alias of aliases, commas inside an alias's expression
    capsys.readouterr()
    assert (
        main(
            [
                *argv,
                "--aliases",
                "m=met, met=hypot(MET_px, MET_py), lead_pt=first(Jet_pt)",
                "--features",
                "m, lead_pt, sum_of(Jet_pt)",
                "--cut",
                "m > 10",
            ]
        )
        == 0
    )
    assert "files     1 scored" in capsys.readouterr().out
    with uproot.open(out) as f:
        got = f["scores"].arrays(library="np")
    hypot = np.hypot(px, py)  # what uproot computes (float32), not sqrt(px**2 + py**2) rounded differently
    keep = hypot > 10
    np.testing.assert_array_equal(got["entry"], np.flatnonzero(keep))
    np.testing.assert_array_equal(got["score"], forest.predict(np.stack([hypot, lead, ht], axis=1)[keep]))
    # bad aliases: clear errors, exit code 1, no traceback
    for bad, message in (
        ("met", "--aliases takes NAME=EXPRESSION"),
        ("met==MET_px", "--aliases takes NAME=EXPRESSION"),
        ("met=MET_px, met=MET_py", "--aliases defines 'met' twice"),
        (
            "met=sqrt(MET_px**2 +* MET_py**2)",
            "alias 'met': 'sqrt(MET_px**2 +* MET_py**2)' is not a valid expression",
        ),
        (
            "met=sqrt(MET_pz), lead_pt=first(Jet_pt), ht=sum_of(Jet_pt)",
            "has no branch 'MET_pz' (needed for feature 'met' in alias 'met' = 'sqrt(MET_pz)'); similar names: MET_p",
        ),
    ):
        assert main([*argv, "--aliases", bad]) == 1, bad
        err = capsys.readouterr().err
        assert "hepinfer: error:" in err and message in err, (bad, err)


def test_score_command_on_dask(tmp_path, capsys, rng):
    """--dask local:2 scores on two worker processes and writes the same file as without it."""
    pytest.importorskip("distributed")
    xgb = pytest.importorskip("xgboost")
    uproot = pytest.importorskip("uproot")
    n = 3000
    data = {k: rng.normal(size=n).astype(np.float32) for k in ("a", "b")}
    for i, part in enumerate(np.array_split(np.arange(n), 3)):
        with uproot.recreate(tmp_path / f"in{i}.root") as f:
            f.mktree("Events", {k: np.float32 for k in data})
            f["Events"].extend({k: v[part] for k, v in data.items()})
    X = np.stack([data["a"], data["b"] ** 2], axis=1)
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 3},
        xgb.DMatrix(X, X[:, 0] > X[:, 1] - 1, feature_names=["a", "b2"]),
        6,
    )
    model = tmp_path / "m.json"
    booster.save_model(model)
    argv = [
        "score",
        str(model),
        str(tmp_path / "in*.root"),
        "--tree",
        "Events",
        "--no-progress",
        "--aliases",
        "b2=b**2",
        "--cut",
        "a > -1",
        "--chunk",
        "300",
    ]
    assert main([*argv, "-o", str(tmp_path / "local.root")]) == 0
    assert main([*argv, "-o", str(tmp_path / "dask.root"), "--dask", "local:2"]) == 0
    assert "files     3 scored, 0 failed, 3 given" in capsys.readouterr().out
    with uproot.open(tmp_path / "local.root") as f, uproot.open(tmp_path / "dask.root") as g:
        want, got = f["scores"].arrays(library="np"), g["scores"].arrays(library="np")
    assert list(got) == ["file_index", "entry", "score"]
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
    keep = data["a"] > -1
    np.testing.assert_array_equal(got["score"], hepinfer.Forest.load(model).predict(X[keep]))
    assert main([*argv, "-o", str(tmp_path / "x.root"), "--dask", "local:0"]) == 1
    assert "--dask local:N needs N >= 1" in capsys.readouterr().err
