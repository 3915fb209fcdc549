"""Bad input gets a ValueError/TypeError naming the argument; exploding is a warning."""

import warnings

import keras
import numpy as np
import pytest

import rnngrad
from rnngrad.probes import state_gradient_norms
from rnngrad.tasks import adding_problem


@pytest.fixture(scope="module")
def model():
    return rnngrad.build_rnn("lstm", 4, input_dim=2, length=10)


@pytest.mark.parametrize(
    "x, y, error, match",
    [
        (np.zeros((3, 10)), np.zeros((3, 1)), ValueError, r"x must have shape \(B, 10, 2\)"),
        (np.zeros((3, 10, 5)), np.zeros((3, 1)), ValueError, r"x must have shape \(B, 10, 2\)"),
        (np.zeros((3, 11, 2)), np.zeros((3, 1)), ValueError, r"x must have shape \(B, 10, 2\)"),
        (np.zeros((0, 10, 2)), np.zeros((0, 1)), ValueError, "at least one example"),
        (np.full((3, 10, 2), np.nan), np.zeros((3, 1)), ValueError, "x must hold finite"),
        (
            np.array([["a"] * 2] * 10 * 3).reshape(3, 10, 2),
            np.zeros((3, 1)),
            TypeError,
            "x must hold numbers",
        ),
        (
            np.zeros((3, 10, 2)),
            np.zeros((4, 1)),
            ValueError,
            "y must have the same batch size as x",
        ),
        (
            np.zeros((3, 10, 2)),
            np.zeros((3, 2)),
            ValueError,
            r"y must have the model's output shape",
        ),
        (None, np.zeros((3, 1)), TypeError, "x must be an array"),
    ],
)
def test_probe_names_the_bad_argument(model, x, y, error, match):
    with pytest.raises(error, match=match):
        state_gradient_norms(model, x, y)


def test_probe_rejects_unknown_options(model):
    x, y = np.zeros((2, 10, 2)), np.zeros((2, 1))
    with pytest.raises(ValueError, match="loss must be a Keras loss name"):
        state_gradient_norms(model, x, y, loss="hinges")
    with pytest.raises(TypeError, match="loss must be None"):
        state_gradient_norms(model, x, y, loss=3)
    with pytest.raises(ValueError, match="state must be one of"):
        state_gradient_norms(model, x, y, state="z")
    with pytest.raises(TypeError, match="jit_compile"):
        state_gradient_norms(model, x, y, jit_compile="yes")


def test_probe_rejects_what_is_not_a_keras_model():
    with pytest.raises(TypeError, match=r"model must be a keras\.Model"):
        state_gradient_norms(lambda v: v, np.zeros((2, 3, 1)), np.zeros((2, 1)))
    with pytest.raises(TypeError, match=r"model must be a keras\.Model"):
        state_gradient_norms(keras.layers.LSTM(3), np.zeros((2, 3, 1)), np.zeros((2, 1)))


def test_sparse_targets_are_checked():
    model = rnngrad.build_rnn("gru", 4, input_dim=2, output_dim=3, sequence_output=True)
    x = np.zeros((2, 6, 2), "float32")
    with pytest.raises(TypeError, match="integer class ids"):
        state_gradient_norms(model, x, np.full((2, 6), 0.5), loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"class ids in \[0, 3\)"):
        state_gradient_norms(model, x, np.full((2, 6), 3), loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"y must have shape \(2, 6\)"):
        state_gradient_norms(
            model, x, np.zeros((2, 5), int), loss="sparse_categorical_crossentropy"
        )


def test_overflowing_network_warns_and_returns_non_finite_norms():
    model = rnngrad.build_rnn("simple", 8, input_dim=2, activation="linear", recurrent_gain=2.0)
    x, y = adding_problem(4, 200, seed=0)  # 2**200 = 1.6e60 overflows float32
    with pytest.warns(RuntimeWarning, match="overflow float32's range"):
        norms = state_gradient_norms(model, x, y)
    assert norms.shape == (1, 200)
    assert (~np.isfinite(norms)).any()


def test_huge_but_finite_norms_do_not_warn():
    model = rnngrad.build_rnn("simple", 8, input_dim=2, activation="linear", recurrent_gain=2.0)
    x, y = adding_problem(2, 58, seed=0)  # norms up to ~4e33: finite in float32
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a warning is for real overflow only
        norms = state_gradient_norms(model, x, y)
    assert np.isfinite(norms).all() and norms.max() > 3.4e30


def test_float64_models_do_not_warn_far_from_their_own_limit():
    model = rnngrad.build_rnn(
        "simple", 8, input_dim=2, activation="linear", recurrent_gain=2.0, dtype="float64"
    )
    x, y = adding_problem(2, 120, seed=0)  # 2**119 = 6.6e35: beyond float32, fine in float64
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        norms = state_gradient_norms(model, x, y)
    assert norms.max() > 1e35
