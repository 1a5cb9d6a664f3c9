"""Decorrelated training that cannot fail silently (issue 17): model selection by a stated
objective for DisCo, MoDE and the adversary, the dead-classifier warning, the lazy progress bar.

Samples are the tiny toys of tests/train/toy_jets.py (a falling background mass, a W-like
signal peak, a mass-independent "tau21"), trained for a few epochs on one thread.
"""

from __future__ import annotations

import math
import sys
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hepinfer import train as T
from hepinfer.train import losses_extra as lx
from tests.train.toy_jets import dcor2, make_sample, mlp_for, toy_jets

torch.set_num_threads(1)


def test_overly_strong_disco_warns_of_a_dead_classifier(rng):
    # only the mass separates: a strong DisCo term must flatten the score and kill the classifier
    X, y, mass = toy_jets(rng, 600)
    X = X[:, :1].copy()
    trainer = T.Trainer(
        mlp_for(X, 0),
        decorrelation="disco",
        decorrelation_strength=10.0,
        epochs=10,
        batch_size=0,
        learning_rate=1e-2,
        progress=False,
    )
    with pytest.warns(T.TrainingWarning, match=r"dead classifier.*AUC .*< 0\.55.*scan-strength"):
        history = trainer.fit(make_sample(X, y, mass))
    best = history.epochs[history.best_epoch - 1]
    assert best["train_sample_auc"] < 0.55


def test_dead_classifier_warning_reads_the_validation_sample(rng):
    X, y, mass = toy_jets(rng, 600)
    Xv, yv, mv = toy_jets(rng, 400)
    trainer = T.Trainer(
        mlp_for(X[:, :1], 0),
        decorrelation="mode",
        decorrelation_strength=50.0,
        epochs=8,
        batch_size=0,
        learning_rate=1e-2,
        progress=False,
    )
    with pytest.warns(T.TrainingWarning, match="validation AUC"):
        trainer.fit(make_sample(X[:, :1], y, mass), make_sample(Xv[:, :1], yv, mv))


def test_healthy_decorrelated_training_does_not_warn(rng):
    X, y, mass = toy_jets(rng, 600)
    Xv, yv, mv = toy_jets(rng, 400)
    trainer = T.Trainer(
        mlp_for(X, 0),
        decorrelation="disco",
        decorrelation_strength=1.0,
        epochs=8,
        batch_size=0,
        learning_rate=1e-2,
        progress=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", T.TrainingWarning)
        history = trainer.fit(make_sample(X, y, mass), make_sample(Xv, yv, mv))
    last = history.epochs[-1]
    for key in ("auc", "background_rejection", "inverse_jsd", "score_spread", "dcor2"):
        assert math.isfinite(last[f"validation_{key}"]), key
    assert last["validation_auc"] > 0.7 and last["validation_background_rejection"] > 1


def _adversarial_trainer(X, epochs=20):
    torch.manual_seed(5)
    return T.Trainer(
        mlp_for(X, 0),
        decorrelation="adversary",
        decorrelation_strength=1.0,
        adversary_steps=5,
        adversary_learning_rate=1e-2,
        adversary_pretrain_epochs=20,
        adversary=lx.MassAdversary(3, (16,)),
        epochs=epochs,
        batch_size=256,
        learning_rate=1e-2,
        progress=False,
    )


def test_adversary_without_validation_does_not_restore_the_mass_regressor(rng):
    X, y, mass = toy_jets(rng, 1000)
    trainer = _adversarial_trainer(X)
    history = trainer.fit(make_sample(X, y, mass))
    dc = np.array(history.column("train_sample_dcor2"))
    selection = np.array(history.column("selection"))
    train_loss = np.array(history.column("train_loss"))
    # the stated objective: plain BCE + λ dCor²(score, mass | background) on the training sample
    assert "dCor²" in history.selection and "training sample" in history.selection
    plain = np.array(history.column("train_sample_plain_loss"))
    np.testing.assert_allclose(selection, plain + 1.0 * dc, rtol=1e-12)
    assert history.best_epoch == int(np.argmin(selection)) + 1
    bkg = y < 0.5
    restored = dcor2(trainer.predict(torch.as_tensor(X))[bkg], mass[bkg])
    assert restored == pytest.approx(dc[history.best_epoch - 1], rel=1e-4, abs=1e-6)
    # the old rule (lowest training loss, which contains the adversary's NLL) picks the epoch in
    # which the score predicts the mass best; the restored model is far flatter than that one
    old_pick = int(np.argmin(train_loss))
    assert restored < 0.5 * dc[old_pick]
    assert restored < dc.max()


def test_adversary_with_validation_keeps_the_decorrelation_term(rng):
    X, y, mass = toy_jets(rng, 600)
    Xv, yv, mv = toy_jets(rng, 400)
    trainer = _adversarial_trainer(X, epochs=6)
    history = trainer.fit(make_sample(X, y, mass), make_sample(Xv, yv, mv))
    for record in history.epochs:
        expected = record["validation_plain_loss"] + 1.0 * record["validation_dcor2"]
        assert record["selection"] == pytest.approx(expected, rel=1e-12)
    assert history.best_epoch == int(np.argmin(history.column("selection"))) + 1
    assert "validation sample" in history.selection


@pytest.mark.parametrize(
    ("decorrelation", "options"),
    [("disco", None), ("mode", None), ("mode", {"order": 2}), ("mode", {"order": 2, "monotonic": True})],
)
def test_objective_selection_includes_the_penalty(rng, decorrelation, options):
    X, y, mass = toy_jets(rng, 500)
    Xv, yv, mv = toy_jets(rng, 300)
    trainer = T.Trainer(
        mlp_for(X, 0),
        decorrelation=decorrelation,
        decorrelation_strength=2.0,
        decorrelation_options=options,
        epochs=5,
        batch_size=128,
        learning_rate=1e-2,
        progress=False,
    )
    history = trainer.fit(make_sample(X, y, mass), make_sample(Xv, yv, mv))
    # the validation loss is plain + λ·penalty on the whole validation sample
    for record in history.epochs:
        assert record["selection"] == record["validation_loss"]
        assert record["validation_loss"] > record["validation_plain_loss"]
    assert history.best_epoch == int(np.argmin(history.column("selection"))) + 1
    final = trainer.evaluate(make_sample(Xv, yv, mv))["validation_loss"]
    assert final == pytest.approx(min(history.column("validation_loss")), rel=1e-6)


def test_rejection_selection_respects_the_inverse_jsd_floor(rng):
    X, y, mass = toy_jets(rng, 600)
    Xv, yv, mv = toy_jets(rng, 600)
    trainer = T.Trainer(
        mlp_for(X, 0),
        decorrelation="disco",
        decorrelation_strength=0.5,
        selection="rejection",
        min_inverse_jsd=5.0,
        mass_bins=20,
        epochs=8,
        batch_size=128,
        learning_rate=1e-2,
        progress=False,
    )
    history = trainer.fit(make_sample(X, y, mass), make_sample(Xv, yv, mv))
    rejection = np.array(history.column("validation_background_rejection"))
    inverse_jsd = np.array(history.column("validation_inverse_jsd"))
    ok = inverse_jsd >= 5.0
    expected = int(np.argmax(np.where(ok, rejection, -np.inf))) if ok.any() else int(np.argmax(inverse_jsd))
    assert history.best_epoch == expected + 1
    assert "1/JSD >= 5" in history.selection


def test_selection_option_is_checked(rng):
    X, y, _mass = toy_jets(rng, 50)
    with pytest.raises(ValueError, match="needs the mass of the validation sample"):
        T.Trainer(mlp_for(X, 0), selection="rejection", progress=False).fit(
            make_sample(X, y), make_sample(X, y)
        )
    model = torch.nn.Linear(2, 1)
    with pytest.raises(ValueError, match="selection must be one of"):
        T.Trainer(model, selection="best", progress=False)
    with pytest.raises(ValueError, match="needs a binary classifier"):
        T.Trainer(model, loss="mse", selection="rejection", progress=False)


def test_no_progress_bar_does_not_import_tqdm(rng, monkeypatch):
    X, y, mass = toy_jets(rng, 100)
    for name in [n for n in sys.modules if n == "tqdm" or n.startswith("tqdm.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "tqdm", None)  # any import of tqdm raises ImportError
    trainer = T.Trainer(mlp_for(X, 0), epochs=2, batch_size=0, progress=False)
    assert len(trainer.fit(make_sample(X, y, mass)).epochs) == 2


def test_progress_bar_is_shown(rng, capsys):
    pytest.importorskip("tqdm")
    X, y, mass = toy_jets(rng, 100)
    trainer = T.Trainer(mlp_for(X, 0), epochs=2, batch_size=0, progress=True)
    trainer.fit(make_sample(X, y, mass))
    assert "training" in capsys.readouterr().err


def test_decorrelation_on_a_bdt_is_refused_not_ignored():
    """xgboost trains without the DisCo/MoDE/adversary term: asking for one on a BDT is an error
    at config validation, not a silently undecorrelated model."""
    from hepinfer.train import ConfigError, parse_config

    for how in ("disco", "mode", "adversary"):
        with pytest.raises(
            ConfigError, match=r"loss.decorrelation: '" + how + "' is a term of a network's loss"
        ):
            parse_config(
                {"model": {"kind": "bdt"}, "loss": {"decorrelation": how, "decorrelation_strength": 1.0}}
            )
    parse_config({"model": {"kind": "bdt"}, "loss": {"decorrelation": "none"}})
