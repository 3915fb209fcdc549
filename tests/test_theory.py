"""Theory functions against closed forms and direct numerical computation."""

import numpy as np
import pytest

from rnngrad.models import recurrent_init_matrix
from rnngrad.theory import (
    activation_derivative,
    activation_derivative_bound,
    linear_rnn_gradient_ratio,
    max_singular_value,
    pascanu_bound,
    spectral_radius,
)

GRID = np.linspace(-30, 30, 600_001)  # step 1e-4, through 0


@pytest.mark.parametrize("name", ["linear", "tanh", "sigmoid", "relu"])
def test_bound_is_the_supremum_of_the_derivative(name):
    derivative = activation_derivative(name, GRID)
    assert derivative.max() == pytest.approx(activation_derivative_bound(name), abs=1e-12)
    assert derivative.min() >= 0  # no activation here has a negative slope


def test_derivatives_match_finite_differences():
    a = np.linspace(-4, 4, 81) + 0.013  # off ReLU's kink
    for name, function in [
        ("tanh", np.tanh),
        ("sigmoid", lambda v: 1 / (1 + np.exp(-v))),
        ("relu", lambda v: np.maximum(v, 0)),
        ("linear", lambda v: v),
    ]:
        numeric = (function(a + 1e-6) - function(a - 1e-6)) / 2e-6
        np.testing.assert_allclose(activation_derivative(name, a), numeric, atol=1e-8)


def test_saturated_derivatives_stay_positive_and_accurate_in_float64():
    a = np.array([20.0, 30.0, 40.0, 300.0, -300.0])
    tanh_d = activation_derivative("tanh", a)
    sigmoid_d = activation_derivative("sigmoid", a)
    assert (tanh_d > 0).all() and (sigmoid_d > 0).all()
    assert 1.0 - np.tanh(30.0) ** 2 == 0.0  # what the textbook formula gives
    # closed forms: sech^2(a) = 1 / cosh(a)^2, s'(a) = exp(-a) / (1 + exp(-a))^2
    np.testing.assert_allclose(tanh_d[:3], 1.0 / np.cosh(a[:3]) ** 2, rtol=1e-12)
    np.testing.assert_allclose(
        sigmoid_d[:3], np.exp(-a[:3]) / (1 + np.exp(-a[:3])) ** 2, rtol=1e-12
    )
    assert tanh_d[3] == tanh_d[4] and sigmoid_d[3] == sigmoid_d[4]  # even functions


def test_pascanu_bound_and_linear_law():
    lag = np.arange(5)
    np.testing.assert_allclose(pascanu_bound(3.0, lag, gamma=0.25), 0.75**lag)
    np.testing.assert_allclose(linear_rnn_gradient_ratio(1.5, lag), 1.5**lag)


def test_linear_law_is_exact_for_a_scaled_orthogonal_matrix():
    rho, w = 0.9, recurrent_init_matrix("orthogonal", 20, seed=0, gain=0.9)
    v = np.random.default_rng(0).normal(size=20)
    norms = [np.linalg.norm(np.linalg.matrix_power(w.T, k) @ v) for k in range(30)]
    np.testing.assert_allclose(
        np.array(norms) / norms[0], linear_rnn_gradient_ratio(rho, np.arange(30)), rtol=1e-12
    )


def test_spectral_radius_and_singular_value_differ_for_non_normal_matrices():
    w = np.array([[0.5, 10.0], [0.0, 0.5]])
    assert spectral_radius(w) == pytest.approx(0.5)
    assert max_singular_value(w) == pytest.approx(np.linalg.svd(w, compute_uv=False)[0])


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: activation_derivative_bound("softsign"), ValueError, "activation must be one of"),
        (lambda: pascanu_bound(-1.0, [1]), ValueError, "sigma_max must be >= 0"),
        (lambda: pascanu_bound(1.0, [-1]), ValueError, "lags must be >= 0"),
        (lambda: pascanu_bound(1.0, [1], gamma=0), ValueError, "gamma must be > 0"),
        (lambda: linear_rnn_gradient_ratio("a", [1]), TypeError, "rho must be a real number"),
        (lambda: spectral_radius(np.ones((2, 3))), ValueError, "matrix must be square"),
        (lambda: max_singular_value(np.ones(3)), ValueError, "matrix must have rank 2"),
    ],
)
def test_bad_arguments_are_named(call, error, match):
    with pytest.raises(error, match=match):
        call()
