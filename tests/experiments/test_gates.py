"""Gate trajectories reproduce Keras's layers; the diagonal path is exact without recurrence."""

import keras
import numpy as np
import pytest

import rnngrad
from rnngrad.experiments.gates import diagonal_path_profile, gate_trajectory
from rnngrad.models import recurrent_layers


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).normal(size=(5, 9, 3))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_hidden_states_equal_the_keras_layer(cell, x):
    model = rnngrad.build_rnn(cell, 6, input_dim=3, sequence_output=True, dtype="float64", seed=4)
    layer = recurrent_layers(model)[0]
    layer.cell.bias.assign(np.random.default_rng(1).normal(size=layer.cell.bias.shape))
    gates = gate_trajectory(layer, x)
    np.testing.assert_allclose(gates["h"], keras.ops.convert_to_numpy(layer(x)), atol=1e-12)
    for name, value in gates.items():
        assert value.shape == (5, 9, 6), name


def test_lstm_cell_state_and_gates_satisfy_the_cell_equations(x):
    model = rnngrad.build_rnn("lstm", 4, input_dim=3, dtype="float64", seed=2)
    g = gate_trajectory(model.get_layer("lstm_1"), x)
    c_prev = np.concatenate([np.zeros_like(g["c"][:, :1]), g["c"][:, :-1]], axis=1)
    np.testing.assert_allclose(g["c"], g["f"] * c_prev + g["i"] * g["g"], atol=1e-12)
    np.testing.assert_allclose(g["h"], g["o"] * np.tanh(g["c"]), atol=1e-12)
    assert np.all((g["f"] > 0) & (g["f"] < 1))


def test_gru_without_reset_after_matches_keras(x):
    layer = keras.layers.GRU(5, reset_after=False, return_sequences=True, dtype="float64")
    expected = keras.ops.convert_to_numpy(layer(x))
    np.testing.assert_allclose(gate_trajectory(layer, x)["h"], expected, atol=1e-12)


@pytest.mark.parametrize("cell, state, keep", [("lstm", "c", "f"), ("gru", "h", "z")])
def test_without_recurrent_weights_the_diagonal_path_is_the_whole_gradient(cell, state, keep, x):
    # With W_h = 0 nothing but the gate's diagonal links s_{t-1} to s_t: the probe's full
    # backward pass and the elementwise product must agree.
    model = rnngrad.build_rnn(cell, 6, input_dim=3, recurrent_gain=0.0, dtype="float64", seed=3)
    layer = recurrent_layers(model)[0]
    y = np.ones((5, 1))
    full = rnngrad.state_gradients(model, x, y, state=state)[0]  # (B, T, units)
    predicted = diagonal_path_profile(full[:, -1], gate_trajectory(layer, x)[keep])
    measured = rnngrad.state_gradient_norms(model, x, y, state=state)[0]
    np.testing.assert_allclose(predicted, measured, rtol=1e-10)


def test_diagonal_path_profile_closed_form():
    keep = np.full((2, 4, 3), 0.5)
    last = np.ones((2, 3))
    np.testing.assert_allclose(
        diagonal_path_profile(last, keep), np.sqrt(3) * 0.5 ** np.arange(3, -1, -1)
    )


@pytest.mark.parametrize(
    "call, error, match",
    [
        (
            lambda: gate_trajectory(keras.layers.SimpleRNN(2), np.zeros((1, 2, 1))),
            TypeError,
            "no gates",
        ),
        (
            lambda: gate_trajectory(keras.layers.Dense(2), np.zeros((1, 2, 1))),
            TypeError,
            "LSTM or GRU",
        ),
        (
            lambda: diagonal_path_profile(np.ones((2, 3)), np.ones((2, 4, 2))),
            ValueError,
            "keep must",
        ),
        (lambda: diagonal_path_profile(np.ones(3), np.ones((1, 4, 3))), ValueError, "rank 2"),
    ],
)
def test_bad_arguments_are_named(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_wrong_feature_count_is_named():
    model = rnngrad.build_rnn("lstm", 3, input_dim=2)
    with pytest.raises(ValueError, match="x must have 2 features"):
        gate_trajectory(model.get_layer("lstm_1"), np.zeros((1, 4, 5)))
