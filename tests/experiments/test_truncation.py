"""Truncated BPTT: same forward pass, gradients cut after k steps, against NumPy BPTT."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import rnngrad
from rnngrad.experiments.clipping import weight_gradients
from rnngrad.experiments.truncation import (
    chunk_bounds,
    cut_gradients,
    long_range_share,
    truncated_model,
    update_share,
)
from tests.oracles import numpy_simple_rnn_bptt


@pytest.mark.parametrize(
    "length, k, expected",
    [
        (10, 4, [(0, 2), (2, 6), (6, 10)]),
        (10, 5, [(0, 5), (5, 10)]),
        (10, 10, [(0, 10)]),
        (10, 25, [(0, 10)]),
        (3, 1, [(0, 1), (1, 2), (2, 3)]),
    ],
)
def test_chunk_bounds_are_aligned_to_the_end(length, k, expected):
    assert chunk_bounds(length, k) == expected


@pytest.mark.parametrize(
    "kwargs",
    [
        {"cell": "simple"},
        {"cell": "lstm"},
        {"cell": "gru"},
        {"cell": "lstm", "layers": 2},
        {"cell": "gru", "sequence_output": True},
    ],
)
def test_forward_pass_is_unchanged(kwargs):
    model = rnngrad.build_rnn(units=5, input_dim=2, seed=1, **kwargs)
    x, _ = rnngrad.tasks.adding_problem(3, 11, seed=0)
    for k in (1, 3, 11):
        np.testing.assert_allclose(truncated_model(model, k, length=11)(x), model(x), atol=1e-6)


def numpy_truncated_recurrent_gradient(model, x, y, k):
    """dL/dU (batch mean), tanh SimpleRNN read at the last step, BPTT cut after k steps."""
    kernel, recurrent, bias, dense_w, dense_b = [w.astype(np.float64) for w in model.get_weights()]
    delta = numpy_simple_rnn_bptt(x, kernel, recurrent, bias, dense_w, dense_b, y)  # full
    batch, steps, _ = x.shape
    h = np.zeros((batch, steps + 1, recurrent.shape[0]))
    for t in range(steps):
        h[:, t + 1] = np.tanh(x[:, t] @ kernel + h[:, t] @ recurrent + bias)
    # With one loss at step T, cutting after k steps keeps dL/dh_t for t > T - k exactly
    # and drops every earlier step's contribution.
    keep = np.arange(1, steps + 1) > steps - k
    pre = delta * (1 - h[:, 1:] ** 2) * keep[None, :, None]
    return np.einsum("btu,btv->uv", h[:, :-1], pre) / batch


@pytest.mark.parametrize("k", [1, 4, 9])
def test_truncated_gradient_equals_numpy_truncated_bptt(k):
    model = rnngrad.build_rnn("simple", 4, input_dim=2, dtype="float64", recurrent_gain=1.3)
    x, y = rnngrad.tasks.adding_problem(5, 9, seed=2)
    grads = weight_gradients(
        truncated_model(model, k, length=9), x, y, variables=model.trainable_variables
    )
    expected = numpy_truncated_recurrent_gradient(model, x, y, k)
    np.testing.assert_allclose(grads[1], expected, rtol=1e-10, atol=1e-15)
    if k == 9:  # no cut: full BPTT
        np.testing.assert_allclose(grads[1], weight_gradients(model, x, y)[1], rtol=1e-12)


def test_sequence_loss_gradient_equals_a_step_by_step_tape_with_stops():
    model = rnngrad.build_rnn("lstm", 3, input_dim=2, sequence_output=True, dtype="float64")
    x, y = rnngrad.tasks.adding_problem(4, 7, seed=0)
    targets = np.repeat(y[:, None, :], 7, axis=1)
    lstm, dense = model.layers[1], model.layers[2]
    with tf.GradientTape() as tape:
        states = [tf.zeros((4, 3), tf.float64)] * 2
        outputs = []
        for t in range(7):
            if t in (1, 4):  # chunk_bounds(7, 3) = [(0, 1), (1, 4), (4, 7)]
                states = [tf.stop_gradient(s) for s in states]
            h, states = lstm.cell(tf.constant(x[:, t], tf.float64), states)
            outputs.append(dense(h))
        out = tf.stack(outputs, axis=1)
        loss = tf.reduce_mean(tf.square(out - targets))
    expected = tape.gradient(loss, model.trainable_variables)
    got = weight_gradients(
        truncated_model(model, 3, length=7), x, targets, variables=model.trainable_variables
    )
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e.numpy(), rtol=1e-10, atol=1e-14)


def test_training_the_truncated_model_trains_the_original():
    model = rnngrad.build_rnn("simple", 4, input_dim=2, seed=0)
    before = [w.copy() for w in model.get_weights()]
    x, y = rnngrad.tasks.adding_problem(32, 6, seed=0)
    rnngrad.training.train(truncated_model(model, 2, length=6), x, y, epochs=1, optimizer="sgd")
    assert all(not np.allclose(a, b) for a, b in zip(before, model.get_weights()))


def test_long_range_share_for_sgd_is_the_relative_gradient_difference_at_any_rate():
    model = rnngrad.build_rnn("simple", 6, input_dim=2, dtype="float64", seed=1)
    x, y = rnngrad.tasks.adding_problem(8, 12, seed=0)
    full, cut = cut_gradients(model, x, y, lag=4)
    flat = np.concatenate([g.ravel() for g in full])
    flat_cut = np.concatenate([g.ravel() for g in cut])
    expected = np.linalg.norm(flat - flat_cut) / np.linalg.norm(flat)
    assert 0 < expected < 1
    for rate in (1.0, 0.01, 30.0):
        sgd = keras.optimizers.SGD(learning_rate=rate)
        assert long_range_share(model, x, y, lag=4, optimizer=sgd) == pytest.approx(
            expected, rel=1e-9
        )
    assert long_range_share(model, x, y, lag=12) == 0.0  # no cut at all


@pytest.mark.integration
@pytest.mark.parametrize("cell", ["simple", "gru"])
def test_compiled_cut_gradients_equal_the_eager_ones_for_every_weights_loaded(cell):
    from rnngrad.experiments import truncation

    x, y = rnngrad.tasks.adding_problem(8, 12, seed=1)
    model = rnngrad.build_rnn(cell, 5, input_dim=2, dtype="float64", seed=0)
    for seed in (0, 1, 2):  # one model, other weights loaded into it
        model.set_weights(
            rnngrad.build_rnn(cell, 5, input_dim=2, dtype="float64", seed=seed).get_weights()
        )
        eager = cut_gradients(model, x, y, lag=4)
        compiled = cut_gradients(model, x, y, lag=4, compiled=True)
        for a, b in zip([*eager[0], *eager[1]], [*compiled[0], *compiled[1]]):
            np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-14)
        assert long_range_share(model, x, y, lag=4, compiled=True) == pytest.approx(
            long_range_share(model, x, y, lag=4), rel=1e-9
        )
    (function,) = truncation._CUT_CACHE[model].values()  # one function, traced once
    assert function.experimental_get_tracing_count() == 1
    with pytest.raises(TypeError, match="compiled"):
        cut_gradients(model, x, y, lag=4, compiled="yes")


def test_update_share_closed_form():
    assert update_share([np.array([3.0, 4.0])], [np.array([0.0, 4.0])]) == pytest.approx(0.6)


def test_bad_models_and_arguments_raise():
    x = np.zeros((2, 5, 2), np.float32)
    residual = rnngrad.build_rnn("simple", 4, input_dim=2, layers=2, residual=True)
    with pytest.raises(ValueError, match="chain"):
        truncated_model(residual, 2, length=5)
    fixed = rnngrad.build_rnn("simple", 4, input_dim=2, length=5)
    with pytest.raises(ValueError, match="length"):
        truncated_model(fixed, 2, length=6)
    model = rnngrad.build_rnn("simple", 4, input_dim=2)
    with pytest.raises(ValueError, match="truncation"):
        truncated_model(model, 0, length=5)
    with pytest.raises(TypeError, match="model"):
        truncated_model("model", 2, length=5)
    with pytest.raises(ValueError, match="lag"):
        long_range_share(model, x, None, lag=6)
    with pytest.raises(ValueError, match="sequences"):
        cut_gradients(model, np.zeros((2, 5)), None, lag=2)
    with pytest.raises(ValueError, match="same variables"):
        update_share([np.ones(2)], [np.ones(2), np.ones(2)])
