"""Issue 17, "memory bounded": a sample larger than data.memory_budget is streamed chunk by
chunk (networks and BDTs) instead of being refused, with the same fold split as in memory."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("xgboost")
uproot = pytest.importorskip("uproot")
ak = pytest.importorskip("awkward")

import hepinfer.train as T  # noqa: E402
from hepinfer.train import data as D  # noqa: E402
from hepinfer.train import streaming as S  # noqa: E402
from hepinfer.train.bdt import rebalance_weights, split_by_event_number  # noqa: E402

N_EVENTS = 4000
CHUNK = 200  # events per chunk: 20 chunks
BUDGET = "100 KB"  # about 1400 events at 72 bytes each: the sample (about 290 KB) does not fit


def easy_jets(rng, n):
    """Two features that separate signal from background well, a mass, an event number."""
    label = rng.integers(0, 2, n)
    return {
        "x1": rng.normal(np.where(label == 1, 1.5, -1.5), 1.0),
        "x2": rng.normal(np.where(label == 1, 0.5, -0.5), 1.0),
        "mass": rng.exponential(40, n) + 10,
        "label": label.astype(np.int32),
        "event": rng.permutation(10 * n)[:n].astype(np.int64),
    }


def jagged_jets(rng, n):
    """Jets with jagged constituents: signal jets have fewer, narrower ones."""
    label = rng.integers(0, 2, n)
    pt, eta = rng.uniform(300, 500, n), rng.uniform(-2, 2, n)
    n_const = rng.poisson(np.where(label == 1, 8, 16)) + 2
    spread = np.where(label == 1, 0.05, 0.15)
    return {
        "pt": pt,
        "eta": eta,
        "mass": rng.exponential(40, n) + 10,
        "label": label.astype(np.int32),
        "event": np.arange(n, dtype=np.int64),
        "c_pt": ak.Array([rng.dirichlet(np.ones(k)) * p for k, p in zip(n_const, pt)]),
        "c_eta": ak.Array([e + rng.normal(0, s, k) for e, s, k in zip(eta, spread, n_const)]),
    }


@pytest.fixture
def jets_file(tmp_path, rng):
    path = tmp_path / "jets.root"
    with uproot.recreate(path) as f:
        f["jets"] = easy_jets(rng, N_EVENTS)
    return path


def config_for(tmp_path, path, kind, **sections):
    settings = {
        "output": str(tmp_path / f"out-{kind}"),
        "data": {
            "source": str(path),
            "tree": "jets",
            "features": ["x1", "x2", "log(mass)"],
            "mass": "mass",
            "chunk_size": str(CHUNK),
            "memory_budget": BUDGET,
        },
        "model": {"kind": kind, "hidden": [16]},
        "training": {"epochs": 2, "batch_size": 128, "learning_rate": 1e-2, "progress": False},
        "bdt": {"n_trees": 15, "max_depth": 3, "early_stopping_rounds": 0},
    }
    for section, values in sections.items():
        settings.setdefault(section, {}).update(values)
    return T.load_config(settings)


@pytest.fixture
def sizes(monkeypatch):
    """Spies: the events of every TrainingData built (whole sample or chunk) and of every piece
    the streamed training and scoring reads."""
    seen: dict[str, list[int]] = {"assembled": [], "pieces": []}
    assemble, fold_rows = D._assemble, S._fold_rows

    def spy_assemble(*args, **kwargs):
        out = assemble(*args, **kwargs)
        seen["assembled"].append(len(out))
        return out

    def spy_fold_rows(*args, **kwargs):
        for rows in fold_rows(*args, **kwargs):
            seen["pieces"].append(len(rows))
            yield rows

    monkeypatch.setattr(D, "_assemble", spy_assemble)
    monkeypatch.setattr(S, "_fold_rows", spy_fold_rows)
    return seen


def check_streamed(summary, sizes):
    assert summary["streamed"] is True
    assert "streamed in 20 chunks" in summary["data"]
    assert summary["n_train"] + summary["n_validation"] + summary["n_test"] == N_EVENTS
    # no array of the whole sample was built: every TrainingData is one chunk, every piece at
    # most the shuffle buffer's chunks
    assert sizes["assembled"] and max(sizes["assembled"]) <= CHUNK
    assert sizes["pieces"] and max(sizes["pieces"]) <= S.SHUFFLE_CHUNKS * CHUNK < N_EVENTS / 4


def test_small_sample_stays_in_memory(tmp_path, jets_file):
    config = config_for(tmp_path, jets_file, "mlp", data={"memory_budget": "10 MB"})
    assert isinstance(D.open_data(config), D.TrainingData)
    config.data.memory_budget = BUDGET
    streamed = D.open_data(config)
    assert isinstance(streamed, D.StreamingData)
    assert streamed.bytes_per_event == 72  # 3 features, label, mass, event + 3 computed columns


def test_mlp_streams_and_learns(tmp_path, jets_file, sizes):
    config = config_for(tmp_path, jets_file, "mlp")
    summary = T.run(config)
    check_streamed(summary, sizes)
    assert summary["test_auc"] > 0.7
    assert len(summary["history"]) == 2 and "validation_auc" in summary["history"][0]
    assert summary["onnx"]
    # the same run in memory (other mini-batches, same folds) ends about as good
    config.data.memory_budget = ""
    config.output = str(tmp_path / "in-memory")
    in_memory = T.run(config)
    assert "streamed" not in in_memory and in_memory["n_test"] == summary["n_test"]
    assert abs(summary["test_auc"] - in_memory["test_auc"]) < 0.03


def test_bdt_streams_through_external_memory(tmp_path, jets_file, sizes):
    config = config_for(tmp_path, jets_file, "bdt")
    summary = T.run(config)
    check_streamed(summary, sizes)
    assert summary["test_auc"] > 0.7
    assert summary["best_iteration"] == 14
    assert not list((tmp_path / "out-bdt").glob("xgboost-cache*"))  # the cache pages are removed


def test_fold_split_is_the_in_memory_one(tmp_path, jets_file):
    for event_number in ("auto", ""):  # the branch 'event', then hashes of the features
        config = config_for(tmp_path, jets_file, "mlp", data={"event_number": event_number})
        streamed = D.open_data(config)
        assert isinstance(streamed, D.StreamingData)
        config.data.memory_budget = ""
        whole = D.load_data(config)
        _, _, test = split_by_event_number(whole.event, 5, validation_fold=0, test_fold=1)
        chunk_test = [c.event[S._folds(config, c)[2]] for c in streamed.chunks()]
        assert np.array_equal(np.concatenate(chunk_test), whole.event[test])
        assert len(set(whole.event[test])) > N_EVENTS / 10
    # and the streamed run counts the folds the in-memory run does
    found = S.survey(config, streamed, "binary")
    train, validation, test = split_by_event_number(whole.event, 5, validation_fold=0, test_fold=1)
    assert found.n == [int(train.sum()), int(validation.sum()), int(test.sum())]
    # the streamed test-fold scoring sees exactly the in-memory test events, in the same order
    seen: list[np.ndarray] = []
    score, (label, weight, mass), example = S._test_fold(
        config, streamed, np.ones((3, 2)), lambda inputs: seen.append(inputs[0]) or inputs[0][:, 0], 5
    )
    inputs = np.nan_to_num(whole.features[test], nan=-1.0).astype(np.float32)
    np.testing.assert_array_equal(np.concatenate(seen), inputs)
    np.testing.assert_array_equal(score, inputs[:, 0])
    np.testing.assert_array_equal(label, whole.target[test])
    np.testing.assert_array_equal(weight, whole.weight[test])
    assert mass is not None and whole.mass is not None
    np.testing.assert_array_equal(mass, whole.mass[test])
    np.testing.assert_array_equal(example[0], inputs[:5])


def test_standardisation_and_rebalancing_match_the_whole_training_fold(tmp_path, jets_file):
    """The Standardize constants from the first pass's sums, and the re-balanced weights, are
    those of the whole training fold in memory."""
    config = config_for(tmp_path, jets_file, "mlp")
    streamed = D.open_data(config)
    assert isinstance(streamed, D.StreamingData)
    found = S.survey(config, streamed, "binary")
    assert found.x is not None
    mean, std = found.moments(found.x)
    config.data.memory_budget = ""
    whole = D.load_data(config)
    train, _, _ = split_by_event_number(whole.event, 5, validation_fold=0, test_fold=1)
    x = whole.features[train].astype(np.float32).astype(np.float64)  # the network's float32 inputs
    np.testing.assert_allclose(mean, x.mean(0), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(std, x.std(0, ddof=1), rtol=1e-8)
    # and the re-balanced weights are those of rebalance_weights on the whole training fold
    factors = S._class_factors(config, "binary", found)
    streamed_weights = np.concatenate([r.weight for r in S._fold_rows(config, streamed, 0, factors, 3)])
    np.testing.assert_allclose(streamed_weights, rebalance_weights(whole.target[train], whole.weight[train]))


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"training": {"batch_size": 0}}, r"training.batch_size = 0 \(full-batch"),
        (
            {"model": {"kind": "autoencoder"}, "loss": {"kind": "reconstruction"}},
            r"does not support an? anomaly run",
        ),
        ({"loss": {"decorrelation": "adversary", "decorrelation_strength": 1.0}}, r"'adversary'"),
    ],
)
def test_refusals_say_why(tmp_path, jets_file, sections, message):
    config = config_for(tmp_path, jets_file, "mlp", **sections)
    with pytest.raises(
        T.ConfigError, match=r"data.memory_budget: the sample is larger than '100 KB'.*" + message
    ):
        T.run(config)


def three_class_jets(rng, n):
    """Three classes separated by x1 (and x2), an event number."""
    label = rng.integers(0, 3, n)
    return {
        "x1": rng.normal(2.0 * label - 2.0, 0.8),
        "x2": rng.normal(label - 1.0, 1.0),
        "mass": rng.exponential(40, n) + 10,
        "label": label.astype(np.int32),
        "event": rng.permutation(10 * n)[:n].astype(np.int64),
    }


@pytest.mark.parametrize("kind", ["mlp", "bdt"])
def test_multiclass_streams(tmp_path, rng, sizes, kind):
    """A three-class sample larger than the budget: per-class re-balancing from the first pass
    equals rebalance_classes on the whole training fold, and the network (softmax export) and
    the multi:softprob BDT learn the classes."""
    path = tmp_path / "three.root"
    with uproot.recreate(path) as f:
        f["jets"] = three_class_jets(rng, N_EVENTS)
    config = config_for(tmp_path, path, kind, loss={"kind": "cross_entropy"}, data={"mass": ""})
    summary = T.run(config)
    check_streamed(summary, sizes)
    assert summary["task"] == "multiclass" and summary["n_classes"] == 3
    assert min(c["auc"] for c in summary["test_per_class"].values()) > 0.8
    streamed = D.open_data(config)
    found = S.survey(config, streamed, "multiclass")
    factors = S._class_factors(config, "multiclass", found)
    config.data.memory_budget = ""
    whole = D.load_data(config)
    train, _, _ = split_by_event_number(whole.event, 5, validation_fold=0, test_fold=1)
    streamed_weights = np.concatenate([r.weight for r in S._fold_rows(config, streamed, 0, factors, 3)])
    np.testing.assert_allclose(
        streamed_weights, T.rebalance_classes(whole.label[train], whole.weight[train], 3)
    )


def test_budget_must_be_a_size():
    with pytest.raises(T.ConfigError, match=r"data.memory_budget: expected a positive size such as '2 GB'"):
        T.load_config({"data": {"memory_budget": "lots"}})
    assert T.load_config({"data": {"memory_budget": "1.5 GiB"}}).data.memory_budget == "1.5 GiB"


def test_particle_network_streams_jagged_branches(tmp_path, rng, sizes):
    """A Deep Sets network on per-particle expressions of jagged branches, streamed."""
    n = 1200
    columns = jagged_jets(rng, n)
    path = tmp_path / "jagged.root"
    with uproot.recreate(path) as f:
        f["jets"] = columns
    config = config_for(
        tmp_path,
        path,
        "deepsets",
        data={
            "particle_features": ["c_pt / pt", "c_eta - eta"],
            "max_particles": 30,
            "chunk_size": "150",
        },
        model={"hidden": [16], "latent": 8, "rho_hidden": [16]},
        training={"epochs": 3, "batch_size": 64, "learning_rate": 3e-3},
    )
    summary = T.run(config)
    assert summary["streamed"] is True and "streamed in 8 chunks" in summary["data"]
    assert summary["n_train"] + summary["n_validation"] + summary["n_test"] == n
    assert max(sizes["assembled"]) <= 150 and max(sizes["pieces"]) <= S.SHUFFLE_CHUNKS * 150
    assert summary["test_auc"] > 0.7  # signal jets are narrower and have fewer constituents


def test_regression_streams_with_the_target_standardised(tmp_path, jets_file, sizes):
    """An MSE regression of an expression of the features: the target's mean and width come from
    the first pass, the test-fold RMSE is well below the target's spread."""
    config = config_for(
        tmp_path,
        jets_file,
        "mlp",
        data={"target": "2 * x1 - x2", "features": ["x1", "x2"]},
        loss={"kind": "mse"},
        training={"epochs": 2, "learning_rate": 1e-2},
    )
    summary = T.run(config)
    check_streamed(summary, sizes)
    config.data.memory_budget = ""
    whole = D.load_data(config)
    assert summary["test_rmse"] < 0.3 * float(np.std(whole.target))


def test_disco_streams_with_a_per_batch_term(tmp_path, jets_file, sizes):
    """DisCo with mini-batches streams: the term is computed per mini-batch in training and on
    the gathered validation outputs for model selection ("objective": loss + λ·penalty)."""
    config = config_for(
        tmp_path,
        jets_file,
        "mlp",
        data={"features": ["x1", "x2"]},  # with the mass as input the first epoch is dead, in memory too
        loss={"decorrelation": "disco", "decorrelation_strength": 0.5},
        training={"epochs": 1, "batch_size": 256},
    )
    summary = T.run(config)
    check_streamed(summary, sizes)
    record = summary["history"][0]
    assert record["validation_loss"] > record["validation_plain_loss"]  # the penalty is in
    assert 0 <= record["validation_dcor2"] < 1
    assert "test_background_dcor2" in summary
