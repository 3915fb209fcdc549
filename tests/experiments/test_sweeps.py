"""Sweeps give the same runs as training each setting from scratch; success rates count."""

import numpy as np
import pytest

import rnngrad
from rnngrad import training
from rnngrad.experiments.sweeps import evaluation, success_rate, sweep
from rnngrad.tasks import adding_problem


@pytest.fixture(scope="module")
def data():
    return adding_problem(96, 10, seed=0)


def build(seed, units=4, cell="simple"):
    return rnngrad.build_rnn(cell, units, input_dim=2, seed=seed)


@pytest.mark.integration
def test_records_are_tidy_and_in_order(data):
    x, y = data

    def evaluate(model):
        return {"test_mse": float(model.evaluate(x[:32], y[:32], verbose=0))}

    records = sweep(build, x, y, [{"units": 3}, {"units": 5}], [1, 2], epochs=2, evaluate=evaluate)
    assert [(r["units"], r["seed"]) for r in records] == [(3, 1), (3, 2), (5, 1), (5, 2)]
    for record in records:
        assert {"diverged", "epochs_run", "seconds", "final_loss", "test_mse"} <= set(record)
        assert record["epochs_run"] == 2 and not record["diverged"]
        assert record["final_loss"] == record["history"]["loss"][-1]


@pytest.mark.integration
def test_learning_rate_settings_equal_independent_runs(data):
    # the two settings share one compiled model; the runs must not notice
    x, y = data
    settings = [
        {"learning_rate": 0.01, "optimizer": "sgd"},
        {"learning_rate": 0.3, "optimizer": "sgd"},
    ]
    records = sweep(build, x, y, settings, [0, 1], epochs=2)
    for record in records:
        alone = training.train(
            build(record["seed"]),
            x,
            y,
            epochs=2,
            optimizer="sgd",
            learning_rate=record["learning_rate"],
            seed=record["seed"],
        )
        assert record["final_loss"] == pytest.approx(alone.final(), rel=1e-6)


@pytest.mark.integration
def test_model_settings_go_to_build_and_train_settings_to_train(data):
    x, y = data
    records = sweep(
        build, x, y, [{"cell": "gru", "epochs": 1}, {"cell": "lstm", "epochs": 2}], [0], epochs=3
    )
    assert [r["epochs_run"] for r in records] == [1, 2]


def test_divergence_is_recorded_not_raised(data):
    x, y = data

    def linear(seed):
        return rnngrad.build_rnn("simple", 8, input_dim=2, activation="linear", recurrent_gain=1.6)

    with pytest.warns(RuntimeWarning, match="loss became"):
        records = sweep(
            lambda seed: linear(seed),
            x,
            y,
            [{"learning_rate": 1.0}],
            [0],
            epochs=3,
            optimizer="sgd",
        )
    assert records[0]["diverged"] and not np.isfinite(records[0]["final_loss"])


@pytest.mark.integration
def test_progress_goes_to_stderr_only_when_asked(data, capsys):
    x, y = data
    sweep(build, x, y, [{"units": 2}], [0], epochs=1, progress=True)
    assert "[1/1] units=2 seed 0: loss" in capsys.readouterr().err
    sweep(build, x, y, [{"units": 2}], [0], epochs=1, progress=False)
    assert capsys.readouterr().err == ""


def test_success_rate_counts_per_group():
    records = [
        {"cell": "lstm", "lr": 1, "mse": 0.01},
        {"cell": "gru", "lr": 1, "mse": 0.3},
        {"cell": "lstm", "lr": 1, "mse": 0.2},
        {"cell": "gru", "lr": 1, "mse": 0.001},
        {"cell": "lstm", "lr": 1, "mse": 0.0},
    ]
    rates = success_rate(records, lambda r: r["mse"] < 0.05, by=["cell"])
    assert rates == [
        {"cell": "lstm", "successes": 2, "runs": 3, "rate": pytest.approx(2 / 3)},
        {"cell": "gru", "successes": 1, "runs": 2, "rate": 0.5},
    ]
    assert success_rate(records, lambda r: True, by=[]) == [
        {"successes": 5, "runs": 5, "rate": 1.0}
    ]


@pytest.mark.integration
def test_evaluation_is_the_models_compiled_loss_on_the_given_data(data):
    x, y = data
    records = sweep(build, x, y, [{}], [3], epochs=1, evaluate=evaluation(x[:40], y[:40]))
    model = build(3)
    training.train(model, x, y, epochs=1, seed=3)
    expected = float(np.mean((model.predict(x[:40], verbose=0) - y[:40]) ** 2))
    assert records[0]["test_loss"] == pytest.approx(expected, rel=1e-5)


@pytest.mark.integration
def test_train_seeds_passes_evaluations_to_extra(data):
    x, y = data
    results = training.train_seeds(build, x, y, [0, 1], epochs=1, evaluate=lambda m: 7.0)
    assert [r.extra for r in results] == [{"score": 7.0}, {"score": 7.0}]


@pytest.mark.parametrize(
    "call, error, match",
    [
        (
            lambda x, y: sweep(build, x, y, {"units": 2}, [0], epochs=1),
            TypeError,
            "settings must be",
        ),
        (lambda x, y: sweep(build, x, y, [], [0], epochs=1), ValueError, "at least one setting"),
        (lambda x, y: sweep(build, x, y, [{"seed": 1}], [0], epochs=1), ValueError, "own keys"),
        (lambda x, y: sweep(build, x, y, [{}], [], epochs=1), ValueError, "at least one seed"),
        (lambda x, y: sweep(build, x, y, [{}], 3, epochs=1), TypeError, "seeds must be"),
        (lambda x, y: sweep(build, x, y, [{}], [0]), TypeError, "epochs"),
        (lambda x, y: sweep("b", x, y, [{}], [0], epochs=1), TypeError, "build must be"),
        (lambda x, y: sweep(build, x, y, [{}], [0], epochs=1, evaluate=3), TypeError, "evaluate"),
        (lambda x, y: success_rate([], bool, by=[]), ValueError, "at least one run"),
        (lambda x, y: evaluation(x, y[:3]), ValueError, "same number of examples"),
        (lambda x, y: evaluation(x, y, key=""), TypeError, "key must be"),
        (lambda x, y: success_rate([{"a": 1}], bool, by="a"), TypeError, "by must be"),
        (lambda x, y: success_rate([{"a": 1}], bool, by=["b"]), ValueError, "missing"),
        (lambda x, y: success_rate([{"a": 1}], 1, by=["a"]), TypeError, "success must be"),
    ],
)
def test_bad_arguments_are_named(data, call, error, match):
    with pytest.raises(error, match=match):
        call(*data)
