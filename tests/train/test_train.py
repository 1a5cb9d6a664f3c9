"""hepinfer.train: losses, decorrelation, adversarial training, reweighting, BDTs, config, CLI.

Samples are tiny toys made here (a falling background mass spectrum, a W-like signal peak and a
"tau21"-like variable that separates without depending on the mass), so each test runs in a
second or two on one thread. Decorrelation is measured with hepinfer.disco (the C++ distance
correlation) when it is there, otherwise with the dcor package (slow to import: numba).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("xgboost")

from hepinfer import train as T
from hepinfer.train import losses_extra as lx

torch.set_num_threads(1)


def dcor2(x, y, weights=None):
    """Reference squared distance correlation (V-statistic)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    try:
        from hepinfer.disco import distance_correlation
    except ImportError:
        dcor = pytest.importorskip("dcor")
        if weights is not None:  # integer weights = repeated events
            k = np.asarray(weights).astype(int)
            x, y = np.repeat(x, k), np.repeat(y, k)
        return dcor.distance_correlation_sqr(x, y)
    return distance_correlation(x, y, weights)


def toy_jets(rng, n, *, signal_fraction=0.5):
    """(features [mass, tau21], label, mass): background mass falling, signal peaked at 80."""
    y = (rng.random(n) < signal_fraction).astype(np.float64)
    mass = np.where(y == 1, rng.normal(80.0, 8.0, n), 20.0 + rng.exponential(40.0, n))
    tau21 = np.where(y == 1, rng.normal(0.35, 0.12, n), rng.normal(0.55, 0.12, n))
    X = np.column_stack([mass, tau21]).astype(np.float32)
    return X, y, mass


def make_sample(X, y, mass=None, w=None):
    return T.Sample(
        (torch.as_tensor(X, dtype=torch.float32),),
        torch.as_tensor(y, dtype=torch.float32),
        None if w is None else torch.as_tensor(w, dtype=torch.float32),
        None if mass is None else torch.as_tensor(mass, dtype=torch.float32),
    )


def mlp_for(X, seed, hidden=(16, 16), dropout=0.0):
    torch.manual_seed(seed)
    model = T.MLP(X.shape[1], hidden, dropout=dropout)
    model.scaler.fit(torch.as_tensor(X))
    return model


def background_dcor2(trainer, X, y, mass):
    score = trainer.predict(torch.as_tensor(X))
    bkg = y < 0.5
    return dcor2(score[bkg], mass[bkg])


# ---------------------------------------------------------------------------- losses
def test_focal_loss_matches_formula_and_reduces_to_bce(rng):
    n = 257
    logits = torch.as_tensor(rng.normal(0, 3, n))
    logits[:3] = torch.tensor([0.0, 30.0, -30.0])  # on the threshold and saturated
    y = torch.as_tensor(rng.integers(0, 2, n).astype(np.float64))
    w = torch.as_tensor(rng.uniform(0.1, 2.0, n))
    for gamma in (0.0, 0.5, 2.0, 5.0):
        z, yy = logits.numpy(), y.numpy()
        log_p, log_q = -np.logaddexp(0.0, -z), -np.logaddexp(0.0, z)  # log p, log(1 - p), p = sigmoid(z)
        p, q = np.exp(log_p), np.exp(log_q)
        f = -yy * q**gamma * log_p - (1 - yy) * p**gamma * log_q
        expected = np.sum(w.numpy() * f) / w.numpy().sum()
        got = float(lx.focal_loss(logits, y, w, gamma=gamma))
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)
    bce = float(lx.binary_cross_entropy(logits, y, w))
    ref = float(
        torch.nn.functional.binary_cross_entropy_with_logits(logits, y, weight=w, reduction="sum") / w.sum()
    )
    assert float(lx.focal_loss(logits, y, w, gamma=0.0)) == pytest.approx(bce, rel=1e-12)
    assert bce == pytest.approx(ref, rel=1e-12)
    # gamma > 0 down-weights easy events: never above the BCE
    assert float(lx.focal_loss(logits, y, w, gamma=2.0)) < bce
    with pytest.raises(ValueError, match="gamma"):
        lx.focal_loss(logits, y, w, gamma=-1.0)


def test_gaussian_nll_matches_torch(rng):
    mean = torch.as_tensor(rng.normal(size=50))
    width = torch.as_tensor(rng.uniform(0.1, 3.0, 50))
    y = torch.as_tensor(rng.normal(size=50))
    ours = float(lx.gaussian_nll(torch.stack([mean, width], 1), y))
    ref = float(torch.nn.GaussianNLLLoss(full=True)(mean, y, width**2))
    assert ours == pytest.approx(ref, rel=1e-12)
    with pytest.raises(ValueError, match="mean, width"):
        lx.gaussian_nll(mean.reshape(-1, 1), y)


def test_torch_distance_correlation_matches_reference(rng):
    x = rng.normal(size=300)
    y = x**2 + rng.normal(size=300)
    ours = float(T.distance_correlation_squared(torch.as_tensor(x), torch.as_tensor(y)))
    assert ours == pytest.approx(dcor2(x, y), rel=1e-9)
    k = rng.integers(1, 4, 300)
    weighted = float(
        T.distance_correlation_squared(torch.as_tensor(x), torch.as_tensor(y), torch.as_tensor(k * 1.0))
    )
    assert weighted == pytest.approx(dcor2(x, y, k), rel=1e-9)
    assert (
        float(T.distance_correlation_squared(torch.zeros(5, dtype=torch.float64), torch.arange(5.0))) == 0.0
    )


@pytest.mark.parametrize("epsilon", [0.1, 1e-3, 0.37])
def test_fgsm_moves_inputs_by_at_most_epsilon(rng, epsilon):
    X, y, _ = toy_jets(rng, 300)
    X[:5] = [[1.0, 1.0], [0.0, 0.0], [-1.0, 3.0], [1e6, 1e-8], [80.4, 0.5]]
    model = mlp_for(X, 0)
    x = torch.as_tensor(X)
    target = torch.as_tensor(y, dtype=torch.float32)
    (adv,) = lx.fgsm_perturb(lambda inp: lx.binary_cross_entropy(model(*inp), target), (x,), epsilon)
    diff = np.abs(adv.numpy().astype(np.float64) - X.astype(np.float64))
    assert diff.max() <= epsilon  # exactly, also where the float32 sum rounds
    assert diff.max() > 0.5 * epsilon
    # the direction is the gradient's sign
    xg = x.clone().requires_grad_(True)
    lx.binary_cross_entropy(model(xg), target).backward()
    moved = diff > 0
    assert np.all(np.sign(adv.numpy() - X)[moved] == np.sign(xg.grad.numpy())[moved])
    # padded particles are not moved, the mask is not perturbed
    parts = torch.as_tensor(rng.normal(size=(6, 5, 3)).astype(np.float32))
    mask = torch.as_tensor(rng.random((6, 5)) < 0.6)
    mask[:, 0] = True
    parts = parts * mask.unsqueeze(-1)
    torch.manual_seed(1)
    pfn = T.DeepSets(3, (8,), 4, (4,))
    lab = torch.as_tensor(rng.integers(0, 2, 6).astype(np.float32))
    adv_p, adv_m = lx.fgsm_perturb(
        lambda inp: lx.binary_cross_entropy(pfn(*inp), lab), (parts, mask), epsilon, mask=mask
    )
    d = (adv_p.double() - parts.double()).abs()
    assert d.max() <= epsilon
    assert torch.all(d[~mask] == 0)
    assert torch.equal(adv_m, mask)
    with pytest.raises(ValueError, match="epsilon"):
        lx.fgsm_perturb(lambda inp: inp[0].sum(), (x,), -1.0)


def test_gradient_reversal_flips_gradient():
    x = torch.tensor([1.0, -2.0], requires_grad=True)
    (lx.gradient_reversal(x, 3.0) * torch.tensor([2.0, 5.0])).sum().backward()
    assert torch.equal(x.grad, torch.tensor([-6.0, -15.0]))


# ---------------------------------------------------------------------------- training
def test_loss_decreases_and_separates(rng):
    X, y, mass = toy_jets(rng, 600)
    trainer = T.Trainer(mlp_for(X, 0), epochs=15, batch_size=128, learning_rate=3e-3, progress=False, seed=1)
    history = trainer.fit(make_sample(X, y, mass), make_sample(*toy_jets(rng, 300)))
    losses = history.column("train_loss")
    assert len(losses) == 15 and losses[-1] < 0.8 * losses[0]
    assert history.epochs[-1]["validation_auc"] > 0.85
    assert history.best_epoch >= 1


@pytest.mark.parametrize("loss", ["focal", "bce"])
def test_fgsm_training_runs_and_learns(rng, loss):
    X, y, mass = toy_jets(rng, 400)
    trainer = T.Trainer(
        mlp_for(X, 0),
        loss=loss,
        fgsm_epsilon=0.05,
        epochs=8,
        batch_size=100,
        learning_rate=3e-3,
        progress=False,
    )
    history = trainer.fit(make_sample(X, y, mass))
    assert history.column("train_loss")[-1] < history.column("train_loss")[0]


def _train_decorrelated(X, y, mass, **kwargs):
    trainer = T.Trainer(
        mlp_for(X, 3), epochs=60, batch_size=0, learning_rate=1e-2, progress=False, seed=3, **kwargs
    )
    trainer.fit(make_sample(X, y, mass))
    return trainer


def test_disco_lowers_mass_dependence(rng):
    X, y, mass = toy_jets(rng, 1000)
    Xt, yt, mt = toy_jets(rng, 2000)
    plain = _train_decorrelated(X, y, mass)
    disco = _train_decorrelated(X, y, mass, decorrelation="disco", decorrelation_strength=1.0)
    d_plain, d_disco = background_dcor2(plain, Xt, yt, mt), background_dcor2(disco, Xt, yt, mt)
    assert d_plain > 0.1
    assert d_disco < 0.5 * d_plain
    # still a classifier (tau21 separates without the mass)
    assert T.roc_auc(disco.predict(torch.as_tensor(Xt)), yt) > 0.7


def test_custom_penalty_callable_is_used(rng):
    X, y, mass = toy_jets(rng, 200)
    calls = []

    def penalty(score, m, w):
        calls.append((score.shape, m.shape))
        return score.var()

    trainer = T.Trainer(
        mlp_for(X, 0),
        decorrelation=penalty,
        decorrelation_strength=1.0,
        epochs=1,
        batch_size=0,
        progress=False,
    )
    trainer.fit(make_sample(X, y, mass))
    assert calls and calls[0][0] == calls[0][1] == (int((y < 0.5).sum()),)  # background events only


def test_mode_penalty_when_available(rng):
    X, y, mass = toy_jets(rng, 1000)
    Xt, yt, mt = toy_jets(rng, 2000)
    plain = _train_decorrelated(X, y, mass)
    mode = _train_decorrelated(X, y, mass, decorrelation="mode", decorrelation_strength=1.0)
    # over seeds 0-99 (tests/tools/seed_scan.py) the ratio was 0.76-0.91, median 0.84: no failure
    assert background_dcor2(mode, Xt, yt, mt) < background_dcor2(plain, Xt, yt, mt)


def test_adversary_lowers_mass_dependence(rng):
    X, y, mass = toy_jets(rng, 1000)
    Xt, yt, mt = toy_jets(rng, 2000)
    plain = _train_decorrelated(X, y, mass)
    torch.manual_seed(5)
    adversarial = _train_decorrelated(
        X,
        y,
        mass,
        decorrelation="adversary",
        decorrelation_strength=1.0,
        adversary_steps=5,
        adversary_learning_rate=1e-2,
        adversary_pretrain_epochs=20,
        adversary=lx.MassAdversary(3, (16,)),
    )
    # the adversarial game is noisy: over seeds 0-99 (tests/tools/seed_scan.py) the ratio had median
    # 0.16 but a tail up to 0.74 (seed 46; 0.61 at seed 3224537975), so the limit is 0.9; with
    # decorrelation_strength=0 (the adversary has no effect) the ratio is exactly 1
    assert background_dcor2(adversarial, Xt, yt, mt) < 0.9 * background_dcor2(plain, Xt, yt, mt)


def test_gaussian_head_learns_the_width(rng):
    n = 3000
    x = rng.uniform(-1, 1, (n, 1)).astype(np.float32)
    sigma = 0.1 + 0.5 * np.abs(x[:, 0])
    y = 2 * x[:, 0] + sigma * rng.normal(size=n)
    torch.manual_seed(0)
    model = T.GaussianRegressor(1, (32, 32))
    model.scaler.fit(torch.as_tensor(x))
    model.fit_target(torch.as_tensor(y))
    trainer = T.Trainer(
        model, loss="gaussian_nll", epochs=40, batch_size=300, learning_rate=1e-2, progress=False
    )
    trainer.fit(T.Sample((torch.as_tensor(x),), torch.as_tensor(y, dtype=torch.float32)))
    # inside the data range: at the edges the fit of the mean has only one side's events
    grid = np.array([[-0.7], [-0.35], [0.0], [0.35], [0.7]], dtype=np.float32)
    out = trainer.predict(torch.as_tensor(grid))
    # tolerances from 20 seeds: mean within 0.11, width within 0.075 (absolute) of the truth
    np.testing.assert_allclose(out[:, 0], 2 * grid[:, 0], atol=0.2)
    np.testing.assert_allclose(out[:, 1], 0.1 + 0.5 * np.abs(grid[:, 0]), rtol=0.35, atol=0.06)
    assert min(out[0, 1], out[4, 1]) > 2 * out[2, 1]  # the width grows with |x| (truth: x4.5)


def test_mse_regression_and_autoencoder(rng):
    X, y, _mass = toy_jets(rng, 800)
    torch.manual_seed(0)
    reg = T.MLP(2, (16,))
    reg.scaler.fit(torch.as_tensor(X))
    target = torch.as_tensor(X[:, 0] * 0.01 + X[:, 1], dtype=torch.float32)
    h = T.Trainer(reg, loss="mse", epochs=20, batch_size=100, learning_rate=1e-2, progress=False).fit(
        T.Sample((torch.as_tensor(X),), target)
    )
    assert h.column("train_loss")[-1] < 0.1 * h.column("train_loss")[0]
    bkg = y < 0.5
    ae = T.Autoencoder(2, (8,), 1)
    ae.scaler.fit(torch.as_tensor(X[bkg]))
    trainer = T.Trainer(
        ae, loss="reconstruction", epochs=30, batch_size=100, learning_rate=1e-2, progress=False
    )
    h = trainer.fit(make_sample(X[bkg], y[bkg]))
    assert h.column("train_loss")[-1] < h.column("train_loss")[0]
    score = trainer.predict(torch.as_tensor(X))
    assert score.shape == (len(X),) and T.roc_auc(score, y) > 0.6  # the signal is anomalous


def test_multiclass_cross_entropy(rng):
    X = rng.normal(size=(600, 2)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0).astype(int)
    torch.manual_seed(0)
    trainer = T.Trainer(
        T.MLP(2, (16,), 3),
        loss="cross_entropy",
        epochs=20,
        batch_size=100,
        learning_rate=1e-2,
        progress=False,
    )
    trainer.fit(T.Sample((torch.as_tensor(X),), torch.as_tensor(y)))
    p = trainer.predict(torch.as_tensor(X))
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)
    assert (p.argmax(axis=1) == y).mean() > 0.85


def test_particle_networks_train(rng):
    n, p = 200, 12
    _X, y, _ = toy_jets(rng, n)
    counts = rng.integers(2, p + 1, n)
    mask = np.arange(p)[None, :] < counts[:, None]
    parts = rng.normal(0, 0.1, (n, p, 3)).astype(np.float32)
    parts[..., 0] = np.abs(parts[..., 0]) + (y[:, None] * 0.3)  # a per-particle feature that separates
    parts *= mask[..., None]
    sample = T.Sample(
        (torch.as_tensor(parts), torch.as_tensor(mask)), torch.as_tensor(y, dtype=torch.float32)
    )
    torch.manual_seed(0)
    for model in (
        T.DeepSets(3, (16,), 8, (8,)),
        T.ParticleNetLite(3, (1, 2), k=3, blocks=((8, 8),), head_hidden=(8,)),
    ):
        model.scaler.fit(sample.inputs[0], sample.inputs[1])
        h = T.Trainer(model, epochs=6, batch_size=50, learning_rate=1e-2, progress=False).fit(sample)
        assert h.column("train_loss")[-1] < h.column("train_loss")[0]


def test_padding_is_ignored(rng):
    parts = torch.as_tensor(rng.normal(size=(5, 9, 3)).astype(np.float32))
    mask = torch.as_tensor(rng.random((5, 9)) < 0.5)
    mask[:, 0] = True
    mask[4] = False  # a jet with no particles
    junk = parts.clone()
    junk[~mask] = 1e3
    torch.manual_seed(0)
    for model in (
        T.DeepSets(3, (8,), 4, (4,)),
        T.EnergyFlowNetwork(0, (1, 2), (8,), 4, (4,)),
        T.ParticleNetLite(3, k=4, blocks=((8,), (8,)), head_hidden=(4,)),
    ):
        model.eval()
        a, b = model(parts * mask.unsqueeze(-1), mask), model(junk, mask)
        assert torch.all(torch.isfinite(a))
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        # permutation invariance
        perm = torch.as_tensor(rng.permutation(9))
        torch.testing.assert_close(
            model(parts[:, perm], mask[:, perm]), model(parts, mask), rtol=1e-4, atol=1e-5
        )


# ---------------------------------------------------------------------------- reproducibility
def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_same_seed_gives_identical_weights(rng):
    X, y, mass = toy_jets(rng, 300)
    states = []
    for seed in (7, 7, 8):
        trainer = T.Trainer(mlp_for(X, 0, dropout=0.2), epochs=3, batch_size=64, seed=seed, progress=False)
        trainer.fit(make_sample(X, y, mass))
        states.append(_state(trainer.model))
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert not all(torch.equal(states[0][k], states[2][k]) for k in states[0])


def test_checkpoint_resume_continues_identically(rng, tmp_path):
    X, y, mass = toy_jets(rng, 300)
    sample, val = make_sample(X, y, mass), make_sample(*toy_jets(rng, 100))
    kw = {
        "batch_size": 64,
        "seed": 2,
        "progress": False,
        "decorrelation": "adversary",
        "decorrelation_strength": 1.0,
    }
    straight = T.Trainer(mlp_for(X, 0, dropout=0.2), epochs=4, **kw)
    straight.fit(sample, val, restore_best=False)
    path = tmp_path / "ckpt.pt"
    first = T.Trainer(mlp_for(X, 0, dropout=0.2), epochs=2, checkpoint_path=path, **kw)
    first.fit(sample, val, restore_best=False)
    resumed = T.Trainer(mlp_for(X, 99, dropout=0.2), epochs=4, checkpoint_path=path, **kw)
    history = resumed.fit(sample, val, resume=True, restore_best=False)
    assert resumed.epoch == 4 and len(history.epochs) == 4
    a, b = _state(straight.model), _state(resumed.model)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert history.epochs == straight.history.epochs
    other = T.Trainer(
        mlp_for(X, 0), epochs=4, checkpoint_path=path, loss="focal", batch_size=64, progress=False
    )
    with pytest.raises(ValueError, match="loss"):
        other.fit(sample, resume=True)


def test_early_stopping_restores_best(rng):
    X = rng.normal(size=(200, 2)).astype(np.float32)
    y = rng.integers(0, 2, 200).astype(np.float64)  # nothing to learn: validation loss rises
    Xv = rng.normal(size=(200, 2)).astype(np.float32)
    yv = rng.integers(0, 2, 200).astype(np.float64)
    trainer = T.Trainer(
        mlp_for(X, 0, hidden=(64, 64)),
        epochs=200,
        batch_size=20,
        learning_rate=1e-2,
        patience=3,
        progress=False,
    )
    history = trainer.fit(make_sample(X, y), make_sample(Xv, yv))
    assert history.stopped_early and len(history.epochs) < 200
    best = min(history.column("validation_loss"))
    assert trainer.evaluate(make_sample(Xv, yv))["validation_loss"] == pytest.approx(best, rel=1e-6)


def test_trainer_rejects_bad_options(rng):
    X, y, _mass = toy_jets(rng, 50)
    with pytest.raises(ValueError, match="loss"):
        T.Trainer(mlp_for(X, 0), loss="hinge")
    with pytest.raises(ValueError, match="binary"):
        T.Trainer(mlp_for(X, 0), loss="mse", decorrelation="disco")
    with pytest.raises(ValueError, match="mass"):
        T.Trainer(mlp_for(X, 0), decorrelation="disco", decorrelation_strength=1, progress=False).fit(
            make_sample(X, y)
        )
    with pytest.raises(ValueError, match="empty"):
        T.Trainer(mlp_for(X, 0), progress=False).fit(make_sample(X[:0], y[:0]))
    with pytest.raises(ValueError, match="inputs"):
        T.Sample((torch.zeros(3, 2),), torch.zeros(4))


# ---------------------------------------------------------------------------- reweighting
def test_reweighting_closes(rng):
    n = 6000
    s1 = rng.normal(0.0, 1.0, (n, 2))
    a = rng.normal(0.4, 1.2, n)
    s2 = np.column_stack([a, 0.5 * a + rng.normal(-0.3, 0.8, n)])  # shifted, wider, correlated
    before = T.closure_check(s1, None, s2)
    result = T.reweight(s1, s2, n_threads=1, n_trees=100, seed=1)
    assert result.weights.shape == (n,) and np.all(result.weights >= 0)
    assert result.weights.sum() == pytest.approx(n, rel=1e-9)  # sample 1 keeps its total weight
    after = T.closure_check(s1, result.weights, s2)
    assert before.chi2_per_ndf.max() > 20
    assert np.all(after.chi2_per_ndf < 3.0), after.chi2_per_ndf
    n_eff = result.weights.sum() ** 2 / (result.weights**2).sum()
    assert np.all(after.ks < 1.63 * np.sqrt(1 / n_eff + 1 / n))  # KS test at the 1 % level
    assert after.ks.max() < before.ks.max() / 3
    # closure of a sample with itself
    same = T.closure_check(s2[: n // 2], None, s2[n // 2 :])
    assert np.all(same.chi2_per_ndf < 3.0)


def test_reweight_clipping_and_errors(rng):
    s1 = rng.normal(0, 1, (500, 1))
    s2 = rng.normal(2.5, 0.5, (500, 1))
    r = T.reweight(s1, s2, max_weight=5.0, n_threads=1, n_trees=30)
    assert r.n_clipped > 0
    assert np.sum(r.ratio == r.ratio.max()) == r.n_clipped  # the clipped events sit at the cap
    assert r.weights.sum() == pytest.approx(500, rel=1e-9)
    with pytest.raises(ValueError, match="features"):
        T.reweight(s1, rng.normal(size=(10, 2)))


def test_parameterised_classifier_inputs(rng):
    n = 2000
    y = rng.integers(0, 2, n)
    theta = np.where(y == 1, rng.choice([50.0, 80.0, 120.0], n, p=[0.2, 0.5, 0.3]), np.nan)
    X, th = T.parameterise(rng.normal(size=(n, 3)), theta, y, seed=1)
    assert X.shape == (n, 4) and np.array_equal(X[:, 3], th)
    assert np.array_equal(th[y == 1], theta[y == 1])
    bkg = th[y == 0]
    assert set(np.unique(bkg)) <= {50.0, 80.0, 120.0}
    for value, p in ((50.0, 0.2), (80.0, 0.5), (120.0, 0.3)):
        assert np.mean(bkg == value) == pytest.approx(np.mean(th[y == 1] == value), abs=0.06)
        assert np.mean(th[y == 1] == value) == pytest.approx(p, abs=0.05)
    with pytest.raises(ValueError, match="signal"):
        T.parameterise(np.zeros((3, 1)), np.zeros(3), np.zeros(3))


# ---------------------------------------------------------------------------- BDT
def test_split_and_rebalance(rng):
    ev = rng.integers(0, 10**9, 1000)
    train, val, test = T.split_by_event_number(ev, 5, validation_fold=2, test_fold=4)
    assert np.all(train ^ val ^ test) and not np.any(train & val)
    assert np.array_equal(test, ev % 5 == 4) and np.array_equal(val, ev % 5 == 2)
    shuffled = rng.permutation(1000)
    assert np.array_equal(
        T.split_by_event_number(ev[shuffled], 5, validation_fold=2, test_fold=4)[2], test[shuffled]
    )
    with pytest.raises(ValueError, match="different"):
        T.split_by_event_number(ev, 5, validation_fold=1, test_fold=1)
    with pytest.raises(ValueError, match="integers"):
        T.split_by_event_number(ev + 0.5, 5)
    y = (rng.random(1000) < 0.2).astype(int)
    w = rng.uniform(-0.2, 2.0, 1000)
    wb = T.rebalance_weights(y, w)
    assert wb[y == 1].sum() == pytest.approx(wb[y == 0].sum(), rel=1e-12)
    assert np.array_equal(wb[y == 0], w[y == 0])
    with pytest.raises(ValueError, match="both classes"):
        T.rebalance_weights(np.zeros(5), np.ones(5))


def test_bdt_early_stopping_importance_and_forest_export(rng, tmp_path):
    X, y, _mass = toy_jets(rng, 3000)
    noise = rng.normal(size=(3000, 1))
    X = np.column_stack([X, noise])
    w = rng.uniform(0.5, 1.5, 3000)
    result = T.train_bdt(
        X,
        y,
        w,
        np.arange(3000) * 7,
        feature_names=["mass", "tau21", "noise"],
        n_trees=400,
        learning_rate=0.3,
        early_stopping_rounds=5,
        n_threads=1,
        seed=1,
    )
    assert result.booster.num_boosted_rounds() == result.best_iteration + 1 < 400
    val_loss = result.evals_result["validation"]["logloss"]
    assert val_loss[result.best_iteration] == min(val_loss)
    gain = result.importance["gain"]
    assert set(gain) == {"mass", "tau21", "noise"} and gain["noise"] < min(gain["mass"], gain["tau21"])
    path = result.save(tmp_path / "bdt.json", X[result.split[2]])
    import hepinfer

    forest = hepinfer.Forest.load(path)
    np.testing.assert_allclose(
        forest.predict(X[result.split[2]]), result.predict(X[result.split[2]]), rtol=1e-6
    )
    assert T.roc_auc(result.predict(X[result.split[2]]), y[result.split[2]]) > 0.85
    with pytest.raises(ValueError, match="label"):
        T.train_bdt(X, y * 2, n_trees=2)


# ---------------------------------------------------------------------------- config and CLI
def test_config_errors_name_the_key(tmp_path):
    cases = {
        "[training]\nlearnin_rate = 0.1\n": r"training\.learnin_rate.*did you mean 'learning_rate'",
        "[training]\nlearning_rate = -1\n": r"training\.learning_rate: must be > 0",
        "[training]\nepochs = 'ten'\n": r"training\.epochs: expected an integer",
        "[model]\nkind = 'transformer'\n": r"model\.kind: must be one of",
        "[loss]\ndecorrelation = 'disco'\nkind = 'mse'\n": r"loss\.decorrelation",
        "[data]\nfeatures = []\n": r"data\.features",
        "[data]\ntest_fold = 0\n": r"data\.test_fold",
        "sead = 3\n": r"'sead'.*did you mean 'seed'",
        "device = 'tpu'\n": r"device: must be",
        "[loss]\nfocal_gamma = nan\n": r"loss\.focal_gamma: expected a finite number",
        "[training\n": r"not valid TOML",
    }
    for i, (text, pattern) in enumerate(cases.items()):
        path = tmp_path / f"c{i}.toml"
        path.write_text(text)
        with pytest.raises(T.ConfigError, match=pattern):
            T.load_config(path)
    with pytest.raises(T.ConfigError, match="does not exist"):
        T.load_config(tmp_path / "missing.toml")
    good = tmp_path / "good.toml"
    good.write_text("seed = 4\n[training]\nepochs = 3\n[loss]\nkind = 'focal'\nfocal_gamma = 1.5\n")
    config = T.load_config(good, ["training.batch_size=0", "loss.decorrelation=disco", "model.hidden=[8, 4]"])
    assert (config.seed, config.training.epochs, config.training.batch_size) == (4, 3, 0)
    assert (
        config.loss.decorrelation == "disco"
        and config.model.hidden == [8, 4]
        and config.loss.focal_gamma == 1.5
    )
    with pytest.raises(T.ConfigError, match=r"training\.epochs"):
        T.load_config(good, ["training.epochs=0"])


def _write_npz(rng, path, n=600):
    X, y, mass = toy_jets(rng, n)
    np.savez(path, jet_mass=mass, tau21=X[:, 1], label=y, event=rng.permutation(n), weight=np.ones(n))


@pytest.mark.parametrize("kind", ["mlp", "bdt"])
def test_cli_main_runs_a_config(rng, tmp_path, kind, capsys):
    data = tmp_path / "jets.npz"
    _write_npz(rng, data)
    cfg = tmp_path / "run.toml"
    cfg.write_text(
        f'seed = 1\noutput = "{(tmp_path / "out").as_posix()}"\n'
        f'[data]\nsource = "{data.as_posix()}"\nfeatures = ["jet_mass", "tau21"]\nweight = "weight"\n'
        f'[model]\nkind = "{kind}"\nhidden = [8]\n'
        "[training]\nepochs = 30\nbatch_size = 0\nprogress = false\nlearning_rate = 0.01\n"
        "[bdt]\nn_trees = 20\n"
    )
    assert T.main([str(cfg)]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["test_auc"] > 0.8 and math.isfinite(summary["test_background_dcor2_mass"])
    assert (tmp_path / "out" / ("model.json" if kind == "bdt" else "model.onnx")).exists()
    assert "test_auc" in capsys.readouterr().out
    if kind == "mlp":  # resume from the checkpoint: 2 more epochs
        assert T.main([str(cfg), "--resume", "--set", "training.epochs=32"]) == 0
        assert len(json.loads((tmp_path / "out" / "summary.json").read_text())["history"]) == 32
    bad = tmp_path / "bad.toml"
    bad.write_text(
        f'[data]\nsource = "{data.as_posix()}"\nfeatures = ["nope"]\nevent_number = ""\n[training]\nprogress = false\n'
    )
    assert T.main([str(bad)]) == 2
    assert "data.features: column 'nope'" in capsys.readouterr().err


def test_cli_toy_particle_network(tmp_path):
    pytest.importorskip("hepinfer.datasets")
    cfg = tmp_path / "pfn.toml"
    cfg.write_text(
        f'output = "{(tmp_path / "pfn").as_posix()}"\n[data]\nsource = "toy"\nn_signal = 60\nn_background = 60\n'
        'max_particles = 20\n[model]\nkind = "particlenet"\nk = 3\nblocks = [[8]]\nrho_hidden = [8]\n'
        "[training]\nepochs = 2\nbatch_size = 32\nprogress = false\n"
    )
    assert T.main([str(cfg)]) == 0
    assert (tmp_path / "pfn" / "model.onnx").exists()


@pytest.mark.parametrize("weighted", [False, True])
def test_validation_dcor2_is_the_background_dcor2(rng, weighted):
    """Trainer.evaluate reports dCor²(score, mass) on the background events with hepinfer's C++
    estimator: the torch reference formula on the same scores gives the same value."""
    X, y, mass = toy_jets(rng, 3000)
    w = rng.uniform(0.5, 2.0, len(y)) if weighted else None
    trainer = T.Trainer(mlp_for(X, 0), epochs=1, batch_size=256, progress=False)
    trainer.fit(make_sample(X, y, mass, w))
    got = trainer.evaluate(make_sample(X, y, mass, w))["validation_dcor2"]
    score = trainer.predict(torch.as_tensor(X)).astype(np.float32).astype(np.float64)
    bkg = y < 0.5
    ref = T.distance_correlation_squared(
        torch.as_tensor(score[bkg]),
        torch.as_tensor(mass.astype(np.float32).astype(np.float64)[bkg]),
        None if w is None else torch.as_tensor(w.astype(np.float32).astype(np.float64)[bkg]),
    )
    assert 0.0 < got < 1.0
    assert got == pytest.approx(float(ref), rel=1e-6)
