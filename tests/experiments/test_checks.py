"""Finite differences, written without the probe's code, agree with the probe."""

import numpy as np
import pytest

import rnngrad
from rnngrad.experiments.checks import finite_difference_state_gradient
from rnngrad.tasks import adding_problem


@pytest.mark.parametrize("cell", ["simple", "lstm", "gru"])
def test_probe_equals_central_differences_in_float64(cell):
    model = rnngrad.build_rnn(cell, 6, input_dim=2, dtype="float64", seed=1)
    x, y = adding_problem(3, 25, seed=0)
    probe = rnngrad.state_gradients(model, x, y)[0]
    for step in (25, 20, 12):
        fd = finite_difference_state_gradient(model, x, y, step)
        scale = np.abs(probe[:, step - 1]).max()
        # truncation ~ delta^2 = 1e-12, rounding ~ 1e-16 / delta = 1e-10 (relative to L)
        np.testing.assert_allclose(fd, probe[:, step - 1], atol=1e-7 * scale)


def test_finite_differences_reject_stacked_models():
    model = rnngrad.build_rnn("simple", 3, input_dim=2, layers=2)
    with pytest.raises(ValueError, match="only recurrent layer"):
        finite_difference_state_gradient(model, np.zeros((1, 5, 2)), np.zeros((1, 1)), 2)


def test_finite_differences_check_the_step():
    model = rnngrad.build_rnn("simple", 3, input_dim=2)
    with pytest.raises(ValueError, match="step must be between 1 and T=5"):
        finite_difference_state_gradient(model, np.zeros((1, 5, 2)), np.zeros((1, 1)), 6)
