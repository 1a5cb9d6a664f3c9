"""The decorrelation-strength scan (hepinfer.train.scan_strength, ``hepinfer train --scan-strength``)
and the evidence every ``hepinfer train`` run writes (summary metrics, ROC, score and sculpting plots).
Tiny toys, a few epochs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("matplotlib")

from hepinfer import train as T
from hepinfer.metrics import decorrelation_metrics
from tests.train.toy_jets import make_sample, mlp_for, toy_jets

torch.set_num_threads(1)


def _check_rule(points, chosen, fraction):
    """The stated rule: the largest validation 1/JSD among the λ > 0 that keep `fraction` of the
    λ = 0 validation rejection (else the largest rejection)."""
    ref = points[0]
    assert ref["strength"] == 0
    scan = [p for p in points if p["strength"] > 0]
    inf = lambda v: math.inf if v is None else v  # noqa: E731
    keep = [
        p
        for p in scan
        if inf(p["validation_background_rejection"]) >= fraction * inf(ref["validation_background_rejection"])
    ]
    if keep:
        best = max(inf(p["validation_inverse_jsd"]) for p in keep)
        assert chosen in [p["strength"] for p in keep if inf(p["validation_inverse_jsd"]) == best]
    else:
        best = max(inf(p["validation_background_rejection"]) for p in scan)
        assert chosen in [p["strength"] for p in scan if inf(p["validation_background_rejection"]) == best]


def test_scan_strength_writes_the_front(rng, tmp_path):
    X, y, mass = toy_jets(rng, 600)
    Xv, yv, mv = toy_jets(rng, 600)
    Xt, yt, mt = toy_jets(rng, 600)
    result = T.scan_strength(
        lambda: mlp_for(X, 0),
        make_sample(X, y, mass),
        make_sample(Xv, yv, mv),
        [2.0, 0.5],
        test=make_sample(Xt, yt, mt),
        output=str(tmp_path),
        epochs=10,
        batch_size=0,
        learning_rate=1e-2,
        progress=False,
    )
    assert [p["strength"] for p in result.points] == [0.0, 0.5, 2.0]
    _check_rule(result.points, result.chosen, 0.5)
    written = json.loads((tmp_path / "strength_scan.json").read_text())
    assert written["chosen"] == result.chosen and len(written["points"]) == 3
    assert (tmp_path / "strength_scan.png").stat().st_size > 0
    for p in result.points:  # the test metrics are the metrics of hepinfer.metrics on the test sample
        assert 0.5 < p["test_auc"] <= 1 and p["test_background_dcor2"] >= 0
    # stronger decorrelation: flatter on the validation sample than no decorrelation
    assert result.points[2]["validation_dcor2"] < result.points[0]["validation_dcor2"]


def test_scan_strength_rejects_bad_input(rng):
    X, y, mass = toy_jets(rng, 100)
    sample = make_sample(X, y, mass)
    with pytest.raises(ValueError, match="validation sample with a mass"):
        T.scan_strength(lambda: mlp_for(X, 0), sample, None, [1.0])
    with pytest.raises(ValueError, match="values > 0"):
        T.scan_strength(lambda: mlp_for(X, 0), sample, sample, [0.0, 1.0])


def test_run_evidence_matches_the_metrics(rng, tmp_path):
    X, y, mass = toy_jets(rng, 800)
    score = 1 / (1 + np.exp(-(0.5 - X[:, 1]) * 8))
    w = rng.uniform(0.5, 2.0, len(y))
    out = T.run_evidence(str(tmp_path), score, y, w, mass)
    expected = decorrelation_metrics(score, mass, y > 0.5, w, signal_efficiency=0.5, bins=50)
    assert out["test_background_rejection"] == pytest.approx(expected["background_rejection"])
    assert out["test_inverse_jsd"] == pytest.approx(expected["inverse_jsd"])
    assert out["test_auc"] == pytest.approx(T.roc_auc(score, y, w))
    for name in ("roc", "scores", "mass_sculpting"):
        assert (tmp_path / f"{name}.png").stat().st_size > 0 and out["plots"][name].endswith(f"{name}.png")


def _write_config(rng, tmp_path):
    X, y, mass = toy_jets(rng, 900)
    data = tmp_path / "jets.npz"
    np.savez(
        data, jet_mass=mass, tau21=X[:, 1], label=y, event=rng.permutation(len(y)), weight=np.ones(len(y))
    )
    cfg = tmp_path / "run.toml"
    cfg.write_text(
        f'seed = 0\noutput = "{(tmp_path / "out").as_posix()}"\nexport_onnx = false\n'
        f'[data]\nsource = "{data.as_posix()}"\nfeatures = ["jet_mass", "tau21"]\nweight = "weight"\n'
        '[model]\nkind = "mlp"\nhidden = [16, 16]\n'
        "[training]\nepochs = 10\nbatch_size = 0\nprogress = false\nlearning_rate = 0.01\n"
        '[loss]\ndecorrelation = "disco"\ndecorrelation_strength = 1.0\n'
    )
    return cfg


def test_every_run_writes_its_evidence(rng, tmp_path):
    cfg = _write_config(rng, tmp_path)
    assert T.main([str(cfg)]) == 0
    out = tmp_path / "out"
    summary = json.loads((out / "summary.json").read_text())
    for key in ("test_auc", "test_background_rejection", "test_inverse_jsd", "test_background_dcor2"):
        assert summary[key] is not None and math.isfinite(summary[key]), key
    for name in ("roc.png", "scores.png", "mass_sculpting.png"):
        assert (out / name).stat().st_size > 0


def test_cli_scan_strength(rng, tmp_path, capsys):
    cfg = _write_config(rng, tmp_path)
    assert T.main([str(cfg), "--scan-strength", "0.5,3"]) == 0
    out = tmp_path / "out"
    scan = json.loads((out / "strength_scan.json").read_text())
    assert [p["strength"] for p in scan["points"]] == [0.0, 0.5, 3.0]
    _check_rule(scan["points"], scan["chosen"], 0.5)
    assert (out / "strength_scan.png").stat().st_size > 0
    for p in scan["points"]:
        folder = out / f"strength_{p['strength']:g}"
        assert (folder / "summary.json").exists() and (folder / "mass_sculpting.png").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["chosen_strength"] == scan["chosen"]
    assert summary["config"]["loss"]["decorrelation_strength"] == scan["chosen"]
    assert "chosen_strength" in capsys.readouterr().out


def test_cli_scan_strength_needs_numbers(rng, tmp_path):
    cfg = _write_config(rng, tmp_path)
    with pytest.raises(SystemExit):
        T.main([str(cfg), "--scan-strength", "one,two"])
    assert T.main([str(cfg), "--scan-strength", "-1"]) == 2  # a ConfigError: strengths must be > 0


def test_scan_and_selection_config_keys_are_checked():
    with pytest.raises(T.ConfigError, match=r"loss\.strength_scan: needs loss\.decorrelation"):
        T.parse_config({"loss": {"strength_scan": [1.0]}})
    with pytest.raises(T.ConfigError, match=r"loss\.strength_scan: expected a list of finite numbers"):
        T.parse_config({"loss": {"decorrelation": "disco", "strength_scan": ["a"]}})
    with pytest.raises(T.ConfigError, match=r"training\.selection: must be"):
        T.parse_config({"training": {"selection": "best"}})
    with pytest.raises(T.ConfigError, match=r"training\.selection: 'rejection' needs a binary"):
        T.parse_config({"training": {"selection": "rejection"}, "loss": {"kind": "mse"}})
    with pytest.raises(T.ConfigError, match=r"loss\.mode_monotonic: needs loss\.mode_order = 2"):
        T.parse_config({"loss": {"decorrelation": "mode", "mode_monotonic": True}})
    config = T.parse_config({"loss": {"decorrelation": "mode", "mode_order": 2, "mode_monotonic": True}})
    assert config.loss.mode_order == 2 and config.loss.mode_monotonic
