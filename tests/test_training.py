"""Training runs: clipping reaches the optimizer, divergence keeps the history, seeds repeat."""

import keras
import numpy as np
import pytest

import rnngrad
from rnngrad import training
from rnngrad.tasks import adding_problem


@pytest.fixture(scope="module")
def data():
    return adding_problem(256, 15, seed=0)


def test_train_records_history_and_seed_repeats(data):
    x, y = data
    first = training.train(rnngrad.build_rnn("simple", 8, input_dim=2, seed=1), x, y, epochs=2)
    again = training.train(rnngrad.build_rnn("simple", 8, input_dim=2, seed=1), x, y, epochs=2)
    assert len(first.history["loss"]) == 2 and not first.diverged
    assert first.history == again.history


def test_divergence_stops_with_a_warning_and_keeps_the_history(data):
    x, y = data
    model = rnngrad.build_rnn("simple", 8, input_dim=2, activation="linear", recurrent_gain=1.6)
    with pytest.warns(RuntimeWarning, match="loss became"):
        result = training.train(model, x, y, epochs=5, optimizer="sgd", learning_rate=1.0)
    assert result.diverged and result.stopped_at is not None
    assert 1 <= len(result.history["loss"]) < 5  # the partial epoch is kept, later ones never ran
    assert not np.isfinite(result.history["loss"][-1])


def test_train_seeds_equals_training_each_seed_from_scratch(data):
    x, y = data

    def build(seed):
        return rnngrad.build_rnn("gru", 6, input_dim=2, seed=seed)

    reused = training.train_seeds(build, x, y, [3, 4], epochs=2, optimizer="adam")
    fresh = [training.train(build(s), x, y, epochs=2, seed=s) for s in (3, 4)]
    for a, b in zip(reused, fresh):
        np.testing.assert_allclose(a.history["loss"], b.history["loss"], rtol=1e-6)


@pytest.mark.parametrize("option", ["clipnorm", "clipvalue", "global_clipnorm"])
def test_clipping_options_reach_the_keras_optimizer(option):
    optimizer = training.make_optimizer("sgd", 0.1, **{option: 0.5})
    assert getattr(optimizer, option) == 0.5


def test_schedules_are_accepted():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    optimizer = training.make_optimizer("sgd", schedule)
    assert (
        isinstance(optimizer.learning_rate, keras.Variable) or optimizer.learning_rate is not None
    )


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: training.make_optimizer("adagrad"), ValueError, "optimizer must be one of"),
        (lambda: training.make_optimizer("sgd", -1.0), ValueError, "learning_rate must be > 0"),
        (
            lambda: training.make_optimizer("sgd", clipnorm=1.0, clipvalue=1.0),
            ValueError,
            "at most one",
        ),
        (
            lambda: training.train("model", [1], [1], epochs=1),
            TypeError,
            "model must be a keras.Model",
        ),
    ],
)
def test_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_mismatched_data_is_named(data):
    x, y = data
    with pytest.raises(ValueError, match="same number of examples"):
        training.train(rnngrad.build_rnn("simple", 4, input_dim=2), x, y[:10], epochs=1)
