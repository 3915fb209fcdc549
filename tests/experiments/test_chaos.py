"""Lyapunov exponents and Jacobian-product spectra against closed forms and NumPy oracles."""

import numpy as np
import pytest
import tensorflow as tf

import rnngrad
from rnngrad.experiments.chaos import (
    lyapunov_exponents,
    lyapunov_scan,
    product_singular_values,
    simple_rnn_jacobians,
)
from rnngrad.experiments.scans import gain_scan
from rnngrad.models import recurrent_init_matrix, recurrent_layers
from rnngrad.profiles import decay_rate


def orthogonal(n, seed):
    return recurrent_init_matrix("orthogonal", n, seed=seed)


@pytest.mark.parametrize("rho", [0.5, 1.0, 1.7])
def test_scaled_orthogonal_map_has_every_exponent_log_rho(rho):
    jacobians = np.stack([rho * orthogonal(6, seed=1)] * 30)
    exponents = lyapunov_exponents(jacobians, k=6, seed=3)
    np.testing.assert_allclose(exponents, np.log(rho), rtol=0, atol=1e-12)


def test_diagonal_map_gives_the_sorted_log_moduli():
    d = np.array([0.3, -2.0, 1.1, 0.05])
    jacobians = np.stack([np.diag(d)] * 400)
    exponents = lyapunov_exponents(jacobians, k=4, skip=100)
    np.testing.assert_allclose(exponents, np.sort(np.log(np.abs(d)))[::-1], atol=1e-10)


def test_sum_of_all_exponents_is_the_mean_log_determinant():
    rng = np.random.default_rng(0)
    jacobians = rng.normal(size=(3, 25, 5, 5)) / np.sqrt(5)
    exponents = lyapunov_exponents(jacobians, k=5, skip=4)
    log_det = np.log(np.abs(np.linalg.det(jacobians[:, 4:]))).mean()
    assert exponents.sum() == pytest.approx(log_det, rel=1e-12)


def test_top_k_exponents_measure_the_volume_the_product_stretches():
    # Exact for any start Q0: sum of k exponents x T = log sqrt(det((P Q0)^T P Q0))
    rng = np.random.default_rng(1)
    jacobians = rng.normal(size=(20, 6, 6)) / np.sqrt(6)
    start = np.linalg.qr(rng.normal(size=(6, 2)))[0]
    product = np.linalg.multi_dot(jacobians[::-1])  # J_T ... J_1
    moved = product @ start
    volume = 0.5 * np.log(np.linalg.det(moved.T @ moved))
    exponents = lyapunov_exponents(jacobians, k=2, start=start)
    assert exponents.sum() * 20 == pytest.approx(volume, rel=1e-10)
    one = lyapunov_exponents(jacobians, k=1, start=start[:, :1])[0]
    assert one * 20 == pytest.approx(np.log(np.linalg.norm(moved[:, 0])), rel=1e-10)


def test_jacobians_match_autodiff_of_the_keras_cell():
    model = rnngrad.build_rnn("simple", 5, input_dim=3, recurrent_gain=1.3, seed=4, dtype="float64")
    layer = recurrent_layers(model)[0]
    x = np.random.default_rng(2).normal(size=(2, 6, 3))
    jacobians = simple_rnn_jacobians(layer, x)
    h = tf.zeros((2, 5), dtype="float64")
    for t in range(6):
        with tf.GradientTape() as tape:
            tape.watch(h)
            out, _ = layer.cell(tf.constant(x[:, t]), [h])
        expected = tape.batch_jacobian(out, h).numpy()  # [b, i, j] = dh_t,i / dh_{t-1},j
        np.testing.assert_allclose(jacobians[:, t], expected, rtol=1e-10, atol=1e-12)
        h = out


def test_scan_matches_the_exponent_of_the_scanned_jacobians_and_restores_the_kernel():
    model = rnngrad.build_rnn("simple", 8, input_dim=2, seed=0, dtype="float64")
    layer = recurrent_layers(model)[0]
    before = layer.cell.recurrent_kernel.numpy().copy()
    base = orthogonal(8, seed=2)
    x = np.random.default_rng(3).normal(size=(4, 30, 2))
    scanned = lyapunov_scan(model, base, [0.7, 1.8], x, k=3, skip=5, seed=1)
    np.testing.assert_array_equal(layer.cell.recurrent_kernel.numpy(), before)
    for row, g in zip(scanned, [0.7, 1.8]):
        layer.cell.recurrent_kernel.assign((g * base).T)
        direct = lyapunov_exponents(simple_rnn_jacobians(layer, x), k=3, skip=5, seed=1)
        np.testing.assert_allclose(row, direct, rtol=1e-12)
    layer.cell.recurrent_kernel.assign(before)


def test_largest_exponent_is_the_gradients_long_lag_rate_in_a_linear_network():
    # Linear W_h = g Q: the gradient ratio is exactly g^lag and lambda_1 = log g
    model = rnngrad.build_rnn("simple", 6, input_dim=2, activation="linear", dtype="float64")
    base = orthogonal(6, seed=5)
    x = np.random.default_rng(4).normal(size=(3, 40, 2))
    gains = [0.6, 1.0, 1.4]
    exponents = lyapunov_scan(model, base, gains, x)[:, 0]
    rates = gain_scan(model, base, gains, x).rates()
    np.testing.assert_allclose(exponents, np.log(gains), atol=1e-12)
    np.testing.assert_allclose(rates, np.log(gains), atol=1e-9)


def test_tanh_network_exponent_follows_the_probed_gradient_rate():
    # The same product of Jacobians carries both; T = 200 lets both settle (tolerance 0.02)
    model = rnngrad.build_rnn("simple", 32, input_dim=2, dtype="float64", seed=1)
    base = orthogonal(32, seed=6)
    x = np.random.default_rng(5).normal(size=(8, 200, 2))
    gains = [0.8, 1.6, 2.2]
    exponents = lyapunov_scan(model, base, gains, x, skip=20)[:, 0]
    scan = gain_scan(model, base, gains, x)
    rates = [decay_rate(row, skip=20, floor=1e-300) for row in scan.norms]
    np.testing.assert_allclose(exponents, rates, atol=0.02)


def test_product_singular_values_closed_forms_and_numpy_oracle():
    q = orthogonal(4, seed=7)
    s = product_singular_values(np.stack([0.9 * q] * 12), 12)
    np.testing.assert_allclose(s[:, 0], 0.9 ** np.arange(1, 13)[:, None] * np.ones(4), rtol=1e-12)
    d = np.diag([2.0, -0.5, 1.0])
    s = product_singular_values(np.stack([d] * 5), 5)
    np.testing.assert_allclose(s[4, 0], [32.0, 1.0, 0.5**5], rtol=1e-12)
    rng = np.random.default_rng(8)
    jacobians = rng.normal(size=(2, 7, 5, 5))
    s = product_singular_values(jacobians, 4)
    for b in range(2):
        for lag in range(1, 5):
            product = np.linalg.multi_dot([*jacobians[b, 7 - lag :][::-1], np.eye(5)])
            expected = np.linalg.svd(product, compute_uv=False)
            np.testing.assert_allclose(s[lag - 1, b], expected, rtol=1e-10)


def test_bad_arguments():
    with pytest.raises(ValueError, match="jacobians"):
        lyapunov_exponents(np.ones((3, 2, 4)))
    with pytest.raises(ValueError, match="jacobians must have rank"):
        lyapunov_exponents(np.ones((2, 2)))
    with pytest.raises(ValueError, match="k must be at most"):
        lyapunov_exponents(np.ones((3, 2, 2)), k=3)
    with pytest.raises(ValueError, match="skip"):
        lyapunov_exponents(np.ones((3, 2, 2)), skip=3)
    with pytest.raises(ValueError, match="start must have shape"):
        lyapunov_exponents(np.ones((3, 2, 2)), start=np.ones((3, 1)))
    with pytest.raises(ValueError, match="max_lag"):
        product_singular_values(np.ones((3, 2, 2)), 4)
    with pytest.raises(TypeError, match="max_lag"):
        product_singular_values(np.ones((3, 2, 2)), 1.5)
    lstm = rnngrad.build_rnn("lstm", 3, input_dim=2)
    with pytest.raises(ValueError, match="SimpleRNN"):
        lyapunov_scan(lstm, np.eye(3), [1.0], np.ones((1, 4, 2)))
    with pytest.raises(TypeError, match="SimpleRNN"):
        simple_rnn_jacobians(recurrent_layers(lstm)[0], np.ones((1, 4, 2)))
    simple = rnngrad.build_rnn("simple", 3, input_dim=2)
    with pytest.raises(ValueError, match="base must have shape"):
        lyapunov_scan(simple, np.eye(4), [1.0], np.ones((1, 4, 2)))
    with pytest.raises(ValueError, match="gains must be > 0"):
        lyapunov_scan(simple, np.eye(3), [0.0], np.ones((1, 4, 2)))
    with pytest.raises(TypeError, match="model"):
        lyapunov_scan("model", np.eye(3), [1.0], np.ones((1, 4, 2)))
