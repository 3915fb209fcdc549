"""WarmupDecay: its closed form, Keras's own warm-up cosine, serialization, use in training."""

import math

import keras
import numpy as np
import pytest

import rnngrad
from rnngrad import training
from rnngrad.experiments.schedules import WarmupDecay


def closed_form(step, peak, warmup, decay_steps, final, decay):
    if step < warmup:
        return peak * step / warmup
    u = min(step - warmup, decay_steps) / decay_steps
    shape = 0.5 * (1 + math.cos(math.pi * u)) if decay == "cosine" else 1 - u
    return final + (peak - final) * shape


@pytest.mark.parametrize("decay", ["cosine", "linear"])
@pytest.mark.parametrize("warmup", [0, 1, 7])
def test_values_match_the_closed_form(decay, warmup):
    schedule = WarmupDecay(0.3, warmup, 20, final_learning_rate=0.01, decay=decay)
    for step in [0, 1, 3, 6, 7, 8, 12, 17, 26, 27, 28, 100]:
        expected = closed_form(step, 0.3, warmup, 20, 0.01, decay)
        assert float(schedule(step)) == pytest.approx(expected, rel=1e-6, abs=1e-8), step


def test_cosine_equals_keras_cosine_decay_with_warmup():
    ours = WarmupDecay(0.2, 10, 50, final_learning_rate=0.02)
    keras_schedule = keras.optimizers.schedules.CosineDecay(
        0.0, 50, alpha=0.1, warmup_target=0.2, warmup_steps=10
    )
    steps = np.arange(0, 80)
    np.testing.assert_allclose(
        [float(ours(s)) for s in steps], [float(keras_schedule(s)) for s in steps], rtol=1e-5
    )


def test_config_round_trip_and_keras_serialization():
    schedule = WarmupDecay(0.1, 5, 30, final_learning_rate=0.001, decay="linear", name="w")
    again = WarmupDecay.from_config(schedule.get_config())
    assert again.get_config() == schedule.get_config()
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert isinstance(restored, WarmupDecay)
    assert float(restored(12)) == pytest.approx(float(schedule(12)))


def test_a_model_trained_with_it_saves_and_loads(tmp_path):
    x, y = rnngrad.tasks.adding_problem(64, 8, seed=0)
    model = rnngrad.build_rnn("simple", 4, input_dim=2)
    training.train(model, x, y, epochs=1, learning_rate=WarmupDecay(0.01, 2, 10))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.optimizer._learning_rate, WarmupDecay)


def test_the_optimizer_follows_it_during_training():
    x, y = rnngrad.tasks.adding_problem(96, 8, seed=0)  # 3 updates per epoch at batch 32
    schedule = WarmupDecay(0.05, 4, 8, decay="linear")
    model = rnngrad.build_rnn("simple", 4, input_dim=2)
    training.train(model, x, y, epochs=2, optimizer="sgd", learning_rate=schedule)
    assert int(model.optimizer.iterations) == 6
    assert float(model.optimizer.learning_rate) == pytest.approx(
        closed_form(6, 0.05, 4, 8, 0, "linear")
    )


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(peak_learning_rate=0.0), ValueError, "peak_learning_rate must be > 0"),
        (dict(warmup_steps=-1), ValueError, "warmup_steps must be >= 0"),
        (dict(decay_steps=0), ValueError, "decay_steps must be >= 1"),
        (dict(final_learning_rate=0.5), ValueError, "final_learning_rate must lie in"),
        (dict(decay="step"), ValueError, "decay must be one of"),
        (dict(warmup_steps=2.5), TypeError, "warmup_steps must be an integer"),
    ],
)
def test_bad_arguments_are_named(kwargs, error, match):
    arguments = dict(peak_learning_rate=0.1, warmup_steps=2, decay_steps=10) | kwargs
    with pytest.raises(error, match=match):
        WarmupDecay(**arguments)
