"""Minibatch gradient windows and their signal-to-noise ratio against Keras and closed forms."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import rnngrad
from rnngrad.experiments.gradient_noise import (
    MinibatchTerms,
    minibatch_terms,
    signal_to_noise,
)


def keras_minibatch_gradient(model, x, y):
    """dL/dW_h (book convention) of one minibatch's mean MSE, from one GradientTape."""
    kernel = model.get_layer("simple_1").cell.recurrent_kernel
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(keras.losses.mean_squared_error(y, model(x, training=False)))
    return tape.gradient(loss, kernel).numpy().T


@pytest.fixture(scope="module")
def setting():
    model = rnngrad.build_rnn("simple", 5, input_dim=2, recurrent_gain=0.9, dtype="float64")
    x, y = rnngrad.tasks.adding_problem(12, 8, seed=4)
    return model, x.astype("float64"), y.astype("float64")


def test_each_minibatch_total_is_kerass_gradient_and_the_windows_add_up_to_it(setting):
    model, x, y = setting
    terms = minibatch_terms(model, x, y, batch_size=4, window=2)
    assert terms.total.shape == (3, 5, 5) and terms.windows.shape == (3, 4, 5, 5)
    for k in range(3):
        expected = keras_minibatch_gradient(model, x[4 * k : 4 * k + 4], y[4 * k : 4 * k + 4])
        np.testing.assert_allclose(terms.total[k], expected, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(terms.windows.sum(axis=1), terms.total, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(terms.lags, [0.5, 2.5, 4.5, 6.5])


def test_windows_are_counted_back_from_the_last_step(setting):
    model, x, y = setting
    per_step = rnngrad.experiments.sharing.recurrent_gradient_terms(model, x[:4], y[:4])  # t = 1..T
    terms = minibatch_terms(model, x[:4], y[:4], batch_size=4, window=1)
    np.testing.assert_allclose(terms.windows[0], per_step[::-1], rtol=1e-12, atol=1e-15)
    # the oldest window holds the first step, whose term is zero (h_0 = 0)
    assert np.abs(terms.windows[0, -1]).max() == 0.0


def test_one_probe_pass_equals_one_per_minibatch(setting):
    # the windows come from one probe pass over all the examples, grouped afterwards;
    # they equal each minibatch's own per-step terms summed by lag window
    model, x, y = setting
    terms = minibatch_terms(model, x, y, batch_size=3, window=4)
    for k in range(4):
        per_step = rnngrad.experiments.sharing.recurrent_gradient_terms(
            model, x[3 * k : 3 * k + 3], y[3 * k : 3 * k + 3]
        )[::-1]  # lag 0 first
        expected = per_step.reshape(2, 4, 5, 5).sum(axis=1)
        np.testing.assert_allclose(terms.windows[k], expected, rtol=1e-12, atol=1e-15)


def test_signal_and_noise_match_a_synthetic_closed_form():
    rng = np.random.default_rng(0)
    count, units = 4000, 3
    mean = np.zeros((2, units, units))
    mean[0, 0, 0], mean[1] = 0.5, 1e-4 * np.eye(units)  # a large and a tiny term
    windows = mean + 1e-6 * rng.normal(size=(count, 2, units, units))
    noise_sd = 0.2
    total = windows.sum(axis=1) + noise_sd * rng.normal(size=(count, units, units))
    result = signal_to_noise(MinibatchTerms(total, windows, window=10, batch_size=1))
    expected_signal = np.array([0.5, 1e-4 * np.sqrt(units)])
    np.testing.assert_allclose(result.signal, expected_signal, rtol=1e-3)
    # isotropic noise: its component along any unit direction has sd noise_sd
    np.testing.assert_allclose(result.noise, noise_sd, rtol=0.05)
    np.testing.assert_allclose(result.snr, expected_signal / noise_sd, rtol=0.06)
    np.testing.assert_allclose(result.signal_error, 1e-6 * units / np.sqrt(count), rtol=0.05)
    assert result.resolved.all()
    np.testing.assert_allclose(result.minibatches_to_resolve, 1 / result.snr**2)
    np.testing.assert_array_equal(result.lags, [4.5, 14.5])


def test_noise_is_measured_along_the_signal_not_in_every_direction():
    rng = np.random.default_rng(1)
    count = 3000
    windows = np.zeros((count, 1, 2, 2))
    windows[:, 0, 0, 0] = 1.0  # the signal points along entry (0, 0)
    total = windows[:, 0].copy()
    total[:, 1, 1] += 100.0 * rng.normal(size=count)  # huge noise elsewhere
    total[:, 0, 0] += 0.1 * rng.normal(size=count)  # small noise along the signal
    result = signal_to_noise(MinibatchTerms(total, windows, window=1, batch_size=1))
    assert result.noise[0] == pytest.approx(0.1, rel=0.05)
    assert result.snr[0] == pytest.approx(10.0, rel=0.05)


def test_an_unresolved_window_is_flagged():
    rng = np.random.default_rng(2)
    windows = rng.normal(size=(50, 1, 2, 2))  # mean zero: all noise
    total = windows[:, 0]
    result = signal_to_noise(MinibatchTerms(total, windows, window=1, batch_size=1))
    assert not result.resolved[0]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(batch_size=5), "multiple of batch_size"),
        (dict(batch_size=0), "batch_size"),
        (dict(window=3), "multiple of window"),
        (dict(window=0), "window"),
    ],
)
def test_minibatch_terms_validates_sizes(setting, kwargs, match):
    model, x, y = setting
    arguments = dict(batch_size=4, window=2) | kwargs
    with pytest.raises(ValueError, match=match):
        minibatch_terms(model, x, y, **arguments)


def test_minibatch_terms_needs_matching_targets(setting):
    model, x, y = setting
    with pytest.raises(ValueError, match="same number of examples"):
        minibatch_terms(model, x, y[:8], batch_size=4, window=2)


def test_signal_to_noise_validates_its_input():
    with pytest.raises(TypeError, match="MinibatchTerms"):
        signal_to_noise({"total": np.zeros((2, 2, 2))})
    one = MinibatchTerms(np.zeros((1, 2, 2)), np.zeros((1, 1, 2, 2)), window=1, batch_size=1)
    with pytest.raises(ValueError, match="minibatches"):
        signal_to_noise(one)
