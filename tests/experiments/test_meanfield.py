"""Mean-field rates against closed forms, a direct computation, and the measured probe."""

import numpy as np
import pytest

import rnngrad
from rnngrad.experiments.meanfield import (
    jensen_lower_bound_rate,
    mean_field_rate,
    simple_rnn_preactivations,
    stack_preactivations,
    susceptibility,
)
from rnngrad.models import recurrent_matrix


def test_preactivations_match_a_direct_unroll():
    model = rnngrad.build_rnn("simple", 8, input_dim=3, activation="relu", seed=2)
    layer = model.get_layer("simple_1")
    x = np.random.default_rng(0).normal(size=(4, 12, 3))
    a = simple_rnn_preactivations(layer, x)
    w_h = recurrent_matrix(layer)  # book convention: a_t = W_x x_t + W_h h_{t-1} + b
    w_x, b = layer.cell.kernel.numpy().T, layer.cell.bias.numpy()
    h = np.zeros((4, 8))
    for t in range(12):
        expected = x[:, t] @ w_x.T + h @ w_h.T + b
        np.testing.assert_allclose(a[:, t], expected, rtol=1e-6, atol=1e-6)
        h = np.maximum(expected, 0)


@pytest.mark.parametrize("residual", [False, True])
def test_stack_preactivations_read_what_each_layer_reads(residual):
    import keras

    model = rnngrad.build_rnn("simple", 6, input_dim=2, layers=3, residual=residual, seed=1)
    layers = [model.get_layer(f"simple_{k}") for k in (1, 2, 3)]
    x = np.random.default_rng(0).uniform(size=(4, 9, 2)).astype("float32")
    reads = keras.Model(model.input, [layer.input for layer in layers])(x)
    found = stack_preactivations(model, x)
    assert len(found) == 3
    for layer, read, a in zip(layers, reads, found):
        expected = simple_rnn_preactivations(layer, np.asarray(read))
        np.testing.assert_allclose(a, expected, rtol=1e-5, atol=1e-5)


def test_stack_preactivations_refuse_gated_stacks():
    model = rnngrad.build_rnn("gru", 4, input_dim=2, layers=2)
    with pytest.raises(ValueError, match="SimpleRNN"):
        stack_preactivations(model, np.zeros((1, 3, 2)))


def test_closed_forms():
    zeros = np.zeros((2, 5, 4))
    assert mean_field_rate(zeros, "tanh", 0.5) == pytest.approx(np.log(0.5))
    assert mean_field_rate(zeros, "linear", 1.3) == pytest.approx(np.log(1.3))
    assert susceptibility(zeros, "sigmoid", 4.0) == pytest.approx(1.0)
    half_on = np.array([[[1.0, -1.0]]])  # ReLU: mean phi'^2 = 1/2
    assert mean_field_rate(half_on, "relu", 1.0) == pytest.approx(0.5 * np.log(0.5))
    assert jensen_lower_bound_rate(half_on, "relu", 1.0) == -np.inf


def test_jensen_bound_is_below_the_mean_field_rate():
    a = np.random.default_rng(1).normal(scale=2.0, size=(3, 20, 16))
    for activation in ("tanh", "sigmoid"):
        assert jensen_lower_bound_rate(a, activation, 1.0) < mean_field_rate(a, activation, 1.0)


@pytest.mark.parametrize("activation, gain", [("tanh", 1.5), ("linear", 0.9), ("relu", 1.2)])
def test_prediction_matches_the_measured_rate_of_a_wide_network(activation, gain):
    # n = 256 units, orthogonal W_h: the mean-field limit is close; tolerance 0.03 per step
    model = rnngrad.build_rnn(
        "simple", 256, input_dim=4, activation=activation, recurrent_gain=gain, seed=0
    )
    x = np.random.default_rng(0).normal(size=(16, 120, 4)).astype("float32")
    norms = rnngrad.state_gradient_norms(model, x, None)[0]
    measured = rnngrad.profiles.decay_rate(norms, skip=10)
    a = simple_rnn_preactivations(model.get_layer("simple_1"), x)
    assert measured == pytest.approx(mean_field_rate(a, activation, gain, skip=10), abs=0.03)


def test_bad_arguments():
    with pytest.raises(TypeError, match="SimpleRNN"):
        simple_rnn_preactivations(
            rnngrad.build_rnn("gru", 3, input_dim=1).layers[1], np.zeros((1, 2, 1))
        )
    with pytest.raises(ValueError, match="skip must be smaller"):
        mean_field_rate(np.zeros((1, 3, 2)), "tanh", 1.0, skip=3)
    with pytest.raises(ValueError, match="gain must be > 0"):
        mean_field_rate(np.zeros((1, 3, 2)), "tanh", 0.0)
