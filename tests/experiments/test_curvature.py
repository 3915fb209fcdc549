"""Hessian-vector products and Lanczos extremes against closed forms and finite differences."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import rnngrad
from rnngrad.experiments.curvature import hessian_extremes, hessian_vector_product


def linear_model(features, seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [keras.Input((features,), dtype="float64"), keras.layers.Dense(1, dtype="float64")]
    )


@pytest.mark.integration
def test_linear_least_squares_hessian_is_two_x_transpose_x_over_n():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 3)), rng.normal(size=(50, 1))
    model = linear_model(3)
    design = np.hstack([x, np.ones((50, 1))])  # weights are [kernel (3), bias (1)]
    hessian = 2.0 / 50 * design.T @ design
    for _ in range(3):
        v = rng.normal(size=4)
        np.testing.assert_allclose(hessian_vector_product(model, x, y, v), hessian @ v, rtol=1e-10)
    largest, smallest = hessian_extremes(model, x, y, iterations=4)
    eigenvalues = np.linalg.eigvalsh(hessian)
    assert largest == pytest.approx(eigenvalues[-1], rel=1e-10)
    assert smallest == pytest.approx(eigenvalues[0], rel=1e-8)


def flat_gradient(model, x, y):
    with tf.GradientTape() as tape:
        value = tf.reduce_mean(keras.losses.mean_squared_error(y, model(x, training=False)))
    grads = tape.gradient(value, model.trainable_variables)
    return np.concatenate([g.numpy().ravel() for g in grads])


def set_flat(model, flat):
    start = 0
    for w in model.trainable_variables:
        w.assign(flat[start : start + w.numpy().size].reshape(w.shape))
        start += w.numpy().size


@pytest.mark.integration
def test_rnn_hessian_matches_finite_differences_of_the_gradient():
    # A tanh RNN (3 units): the full Hessian from central differences of the exact gradient
    model = rnngrad.build_rnn("simple", 3, input_dim=2, dtype="float64", recurrent_gain=1.3)
    x, y = rnngrad.tasks.adding_problem(16, 8, seed=1)
    x, y = x.astype("float64"), y.astype("float64")
    theta = np.concatenate([w.numpy().ravel() for w in model.trainable_variables])
    size, eps = theta.size, 1e-5
    hessian = np.empty((size, size))
    for i in range(size):
        step = np.zeros(size)
        step[i] = eps
        set_flat(model, theta + step)
        plus = flat_gradient(model, x, y)
        set_flat(model, theta - step)
        hessian[:, i] = (plus - flat_gradient(model, x, y)) / (2 * eps)
    set_flat(model, theta)
    hessian = 0.5 * (hessian + hessian.T)
    v = np.random.default_rng(2).normal(size=size)
    np.testing.assert_allclose(
        hessian_vector_product(model, x, y, v), hessian @ v, rtol=1e-6, atol=1e-8
    )
    eigenvalues = np.linalg.eigvalsh(hessian)
    largest, smallest = hessian_extremes(model, x, y, iterations=size, seed=3)
    assert largest == pytest.approx(eigenvalues[-1], rel=1e-6)
    assert smallest == pytest.approx(eigenvalues[0], rel=1e-5, abs=1e-8)
    # A few Lanczos steps already find the largest eigenvalue
    few, _ = hessian_extremes(model, x, y, iterations=12, seed=3)
    assert few == pytest.approx(eigenvalues[-1], rel=1e-4)


def test_bad_arguments():
    model = linear_model(2)
    x, y = np.ones((4, 2)), np.ones((4, 1))
    with pytest.raises(ValueError, match="vector must have 3 entries"):
        hessian_vector_product(model, x, y, np.ones(2))
    with pytest.raises(ValueError, match="same number of examples"):
        hessian_extremes(model, x, y[:3])
    with pytest.raises(ValueError, match="loss"):
        hessian_extremes(model, x, y, loss="no such loss")
    with pytest.raises(TypeError, match="loss"):
        hessian_extremes(model, x, y, loss=3)
    with pytest.raises(ValueError, match="iterations"):
        hessian_extremes(model, x, y, iterations=1)
    with pytest.raises(TypeError, match="model"):
        hessian_extremes("model", x, y)
