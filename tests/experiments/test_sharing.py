"""Per-step terms of the shared W_h against Keras's own gradient and closed forms."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import rnngrad
from rnngrad.experiments.sharing import (
    backprop_alignment,
    dominant_eigenspace,
    eigenspace_fraction,
    linear_backprop,
    recurrent_gradient_terms,
    spectral_gap,
    term_shares,
)


def keras_recurrent_gradient(model, layer, x, y):
    """dL/dW_h (book convention) of the batch-mean loss, from one GradientTape."""
    with tf.GradientTape() as tape:
        out = model(x, training=False)
        if y is None:
            per_example = 0.5 * tf.reduce_sum(tf.square(out), axis=-1)
        else:
            per_example = tf.reduce_mean(tf.square(out - y), axis=-1)
        mean_loss = tf.reduce_mean(per_example)
    grad = tape.gradient(mean_loss, layer.cell.recurrent_kernel)
    return keras.ops.convert_to_numpy(grad).astype(np.float64).T  # Keras's U is W_h^T


@pytest.mark.parametrize("activation", ["tanh", "linear", "sigmoid", "relu"])
def test_terms_sum_to_the_gradient_keras_computes(activation):
    model = rnngrad.build_rnn(
        "simple", 6, input_dim=2, activation=activation, recurrent_gain=1.2, dtype="float64"
    )
    x, y = rnngrad.tasks.adding_problem(5, 9, seed=3)
    x, y = x.astype("float64"), y.astype("float64")
    terms = recurrent_gradient_terms(model, x, y)
    expected = keras_recurrent_gradient(model, model.get_layer("simple_1"), x, y)
    assert terms.shape == (9, 6, 6)
    np.testing.assert_allclose(terms.sum(axis=0), expected, rtol=1e-10, atol=1e-13)
    assert np.abs(terms[0]).max() == 0.0  # h_0 = 0


def test_float32_model_and_the_target_free_loss():
    model = rnngrad.build_rnn("simple", 8, input_dim=3, recurrent_gain=1.5, seed=4)
    x = np.random.default_rng(0).normal(size=(4, 20, 3)).astype("float32")
    terms = recurrent_gradient_terms(model, x, None)
    expected = keras_recurrent_gradient(model, model.get_layer("simple_1"), x, None)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(terms.sum(axis=0), expected, atol=1e-5 * scale)


def test_second_layer_of_a_stack():
    model = rnngrad.build_rnn("simple", 5, input_dim=2, layers=2, dtype="float64", seed=1)
    x, y = rnngrad.tasks.adding_problem(3, 7, seed=0)
    x, y = x.astype("float64"), y.astype("float64")
    for name in ("simple_1", "simple_2"):
        layer = model.get_layer(name)
        terms = recurrent_gradient_terms(model, x, y, layer=name)
        expected = keras_recurrent_gradient(model, layer, x, y)
        np.testing.assert_allclose(terms.sum(axis=0), expected, rtol=1e-10, atol=1e-13)
    by_object = recurrent_gradient_terms(model, x, y, layer=model.get_layer("simple_2"))
    np.testing.assert_allclose(by_object, terms)


def test_closed_form_of_a_one_unit_linear_rnn():
    # h_1 = k x_1, h_2 = w h_1 + k x_2, out = d h_2 + c, L = (out - y)^2:
    # G_1 = 0 (h_0 = 0), G_2 = dL/da_2 * h_1 = 2 (out - y) d * h_1.
    model = rnngrad.build_rnn(
        "simple", 1, input_dim=1, activation="linear", dtype="float64", use_bias=False
    )
    layer, readout = model.get_layer("simple_1"), model.get_layer("readout")
    w, k, d, c = 0.7, 1.3, -0.4, 0.2
    layer.cell.recurrent_kernel.assign([[w]])
    layer.cell.kernel.assign([[k]])
    readout.kernel.assign([[d]])
    readout.bias.assign([c])
    x = np.array([[[0.5], [-1.0]]])
    y = np.array([[0.3]])
    h1 = k * 0.5
    out = d * (w * h1 + k * -1.0) + c
    terms = recurrent_gradient_terms(model, x, y)
    np.testing.assert_allclose(terms[:, 0, 0], [0.0, 2 * (out - 0.3) * d * h1], rtol=1e-12)


def test_term_shares():
    terms = np.zeros((3, 2, 2))
    terms[1, 0, 0], terms[2] = 1.0, [[0.0, 3.0], [0.0, 0.0]]
    np.testing.assert_allclose(term_shares(terms), [0.0, 0.25, 0.75])
    with pytest.raises(ValueError, match="not all zero"):
        term_shares(np.zeros((3, 2)))


def test_dominant_eigenspace_real_and_complex():
    rng = np.random.default_rng(0)
    basis_change = rng.normal(size=(4, 4))
    real = basis_change @ np.diag([0.3, -1.5, 0.9, 1.2]) @ np.linalg.inv(basis_change)
    space = dominant_eigenspace(real)
    assert space.shape == (4, 1)
    expected = basis_change[:, 1] / np.linalg.norm(basis_change[:, 1])
    assert abs(abs(space[:, 0] @ expected) - 1) < 1e-10
    block = np.zeros((4, 4))
    block[:2, :2] = 1.1 * np.array([[np.cos(0.3), -np.sin(0.3)], [np.sin(0.3), np.cos(0.3)]])
    block[2:, 2:] = np.diag([0.5, -0.7])
    complex_pair = basis_change @ block @ np.linalg.inv(basis_change)
    plane = dominant_eigenspace(complex_pair)
    assert plane.shape == (4, 2)
    np.testing.assert_allclose(plane.T @ plane, np.eye(2), atol=1e-12)
    # the plane is spanned by the first two columns of the basis change
    fractions = eigenspace_fraction(basis_change[:, :2].T, plane)
    np.testing.assert_allclose(fractions, [1.0, 1.0], atol=1e-10)


def test_power_iteration_converges_to_the_dominant_eigenspace():
    w = rnngrad.models.recurrent_init_matrix("normal", 12, seed=3)
    grads = linear_backprop(w, np.random.default_rng(1).normal(size=(5, 12)), steps=300)
    fraction = eigenspace_fraction(grads[:, 0], dominant_eigenspace(w.T))
    np.testing.assert_allclose(fraction, 1.0, atol=1e-6)


def test_linear_backprop_matches_the_probe_of_a_linear_rnn():
    model = rnngrad.build_rnn(
        "simple", 6, input_dim=2, activation="linear", recurrent_gain=0.9, dtype="float64"
    )
    x, y = rnngrad.tasks.adding_problem(4, 15, seed=2)
    probe = rnngrad.state_gradients(model, x.astype("float64"), y.astype("float64"))[0]
    w_h = rnngrad.models.recurrent_matrix(model.get_layer("simple_1"))
    backprop = linear_backprop(w_h, probe[:, -1], steps=14)  # dL/dh_1 .. dL/dh_15
    np.testing.assert_allclose(backprop, probe, rtol=1e-10, atol=1e-14)


def test_untied_chain_uses_each_matrix_once_in_order():
    a, b = np.array([[2.0, 0.0], [0.0, 1.0]]), np.array([[0.0, 1.0], [1.0, 0.0]])
    out = linear_backprop(np.stack([a, b]), np.array([1.0, 0.0]))
    # g_2 = e1; g_1 = W_2^T g_2 = b^T e1 = e2; g_0 = W_1^T g_1 = a^T e2 = e2
    np.testing.assert_allclose(out, [[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])


def test_spectral_gap_skips_the_complex_partner():
    block = np.zeros((4, 4))
    block[:2, :2] = [[0.0, -2.0], [2.0, 0.0]]  # eigenvalues +-2i: a plane
    block[2:, 2:] = np.diag([1.5, -0.5])
    assert spectral_gap(block) == pytest.approx(0.75)
    assert spectral_gap(np.diag([3.0, -2.0, 1.0])) == pytest.approx(2 / 3)


def test_tied_alignment_matches_the_closed_form_of_a_diagonal_matrix():
    # W = diag(lam), g = c: after k steps v = c * lam**k, fraction = |c_1 lam_1^k| / ||v||
    lam, c = np.array([0.9, -0.6, 0.3]), np.array([0.2, 1.0, -2.0])
    fraction, norm = backprop_alignment(np.diag(lam), c, steps=30)
    k = np.arange(31)[:, None]
    v = c * lam**k
    np.testing.assert_allclose(fraction, np.abs(v[:, 0]) / np.linalg.norm(v, axis=1), rtol=1e-12)
    np.testing.assert_allclose(norm, np.linalg.norm(v, axis=1), rtol=1e-12)


def test_untied_alignment_uses_the_matrix_that_acted_last():
    a, b = np.diag([2.0, 1.0]), np.diag([1.0, 2.0])  # W_1 = a, W_2 = b
    fraction, norm = backprop_alignment(np.stack([a, b]), np.array([1.0, 1.0]))
    # lag 0: (1, 1) vs b's axis e2; lag 1: b (1, 1) = (1, 2) vs e2; lag 2: a (1, 2) = (2, 2) vs e1
    np.testing.assert_allclose(fraction, [1 / np.sqrt(2), 2 / np.sqrt(5), 1 / np.sqrt(2)])
    np.testing.assert_allclose(norm, [np.sqrt(2), np.sqrt(5), np.sqrt(8)])


def test_bad_arguments():
    gru = rnngrad.build_rnn("gru", 3, input_dim=2)
    x, y = rnngrad.tasks.adding_problem(2, 4, seed=0)
    with pytest.raises(TypeError, match="SimpleRNN layers only"):
        recurrent_gradient_terms(gru, x, y)
    stacked = rnngrad.build_rnn("simple", 3, input_dim=2, layers=2)
    with pytest.raises(ValueError, match="2 recurrent layers"):
        recurrent_gradient_terms(stacked, x, y)
    with pytest.raises(ValueError, match="must name a recurrent layer"):
        recurrent_gradient_terms(stacked, x, y, layer="readout")
    with pytest.raises(TypeError, match=r"keras\.Model"):
        recurrent_gradient_terms("model", x, y)
    with pytest.raises(ValueError, match="square"):
        dominant_eigenspace(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="orthonormal"):
        eigenspace_fraction(np.ones((2, 2)), np.ones((2, 1)))
    with pytest.raises(ValueError, match="entries on their last axis"):
        eigenspace_fraction(np.ones((2, 3)), np.eye(2)[:, :1])
    with pytest.raises(ValueError, match="steps is required"):
        linear_backprop(np.eye(2), np.ones(2))
    with pytest.raises(ValueError, match="grad must have 2 entries"):
        linear_backprop(np.eye(2), np.ones(3), steps=2)
    with pytest.raises(ValueError, match="single"):
        backprop_alignment(np.eye(2), np.ones((3, 2)), steps=2)
    with pytest.raises(ValueError, match="larger than its dominant eigenspace"):
        spectral_gap(np.array([[0.0, -1.0], [1.0, 0.0]]))
