"""Keras's clipping options, measured on Keras, against their definitions."""

import keras
import numpy as np
import pytest

import rnngrad
from rnngrad.experiments.clipping import (
    CLIP_MODES,
    clipped_gradients,
    compare_clipping,
    optimizer_update,
    threshold_from_norms,
    weight_gradients,
)
from tests.oracles import numpy_simple_rnn_bptt


@pytest.fixture(scope="module")
def gradients():
    rng = np.random.default_rng(0)
    return [rng.normal(size=(3, 4)) * 5.0, rng.normal(size=(4,)) * 0.1, rng.normal(size=(4, 1))]


def cosine(a, b):
    a = np.concatenate([v.ravel() for v in a])
    b = np.concatenate([v.ravel() for v in b])
    return a @ b / (np.linalg.norm(a) * np.linalg.norm(b))


def test_weight_gradients_equal_numpy_bptt_in_float64():
    model = rnngrad.build_rnn("simple", 5, input_dim=2, dtype="float64", seed=3)
    x, y = rnngrad.tasks.adding_problem(6, 7, seed=0)
    kernel, recurrent, bias, dense_w, dense_b = [w.astype(np.float64) for w in model.get_weights()]
    delta = numpy_simple_rnn_bptt(x, kernel, recurrent, bias, dense_w, dense_b, y)  # (B, T, H)
    h = np.zeros((6, 8, 5))
    for t in range(7):
        h[:, t + 1] = np.tanh(x[:, t] @ kernel + h[:, t] @ recurrent + bias)
    pre = delta * (1 - h[:, 1:] ** 2)  # dL_i/da_t
    expected_recurrent = np.einsum("btu,btv->uv", h[:, :-1], pre) / 6  # batch mean
    expected_kernel = np.einsum("btf,btv->fv", x.astype(np.float64), pre) / 6
    grads = weight_gradients(model, x, y)
    np.testing.assert_allclose(grads[0], expected_kernel, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(grads[1], expected_recurrent, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(grads[2], pre.sum(axis=1).mean(axis=0), rtol=1e-10, atol=1e-14)


def test_weight_gradients_for_given_variables_follow_their_order():
    model = rnngrad.build_rnn("gru", 3, input_dim=2, seed=0)
    x, y = rnngrad.tasks.adding_problem(4, 5, seed=0)
    grads = weight_gradients(model, x, y)
    reversed_grads = weight_gradients(model, x, y, variables=model.trainable_variables[::-1])
    for a, b in zip(grads, reversed_grads[::-1]):
        np.testing.assert_array_equal(a, b)


def test_sgd_update_is_minus_learning_rate_times_gradient(gradients):
    updates = optimizer_update(keras.optimizers.SGD(learning_rate=0.25), gradients)
    for u, g in zip(updates, gradients):
        np.testing.assert_allclose(u, -0.25 * g, rtol=1e-15)


def test_adam_first_step_follows_adams_formula(gradients):
    adam = keras.optimizers.Adam(learning_rate=0.01)
    b1, b2, eps = 0.9, 0.999, 1e-7  # Keras's defaults
    for u, g in zip(optimizer_update(adam, gradients), gradients):
        # one step: m = (1-b1) g, v = (1-b2) g^2, alpha = lr sqrt(1-b2) / (1-b1)
        expected = (
            -0.01 * np.sqrt(1 - b2) / (1 - b1) * (1 - b1) * g / (np.sqrt((1 - b2) * g**2) + eps)
        )
        # rtol 1e-5: Keras forms 1 - beta_2 ** t from float32 beta_2 (6e-6 relative)
        np.testing.assert_allclose(u, expected, rtol=1e-5)
    assert adam.iterations.numpy() == 0  # the optimizer passed in is never used


def test_clipping_modes_equal_their_definitions(gradients):
    c = 1.5
    total = np.sqrt(sum((g**2).sum() for g in gradients))
    expected = {
        "global_clipnorm": [g * min(1.0, c / total) for g in gradients],
        "clipnorm": [g * min(1.0, c / np.linalg.norm(g)) for g in gradients],
        "clipvalue": [np.clip(g, -c, c) for g in gradients],
    }
    for mode in CLIP_MODES:
        for got, want in zip(clipped_gradients(gradients, mode, c), expected[mode]):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


def test_compare_clipping_cosines_match_the_definitions(gradients):
    effects = {e.mode: e for e in compare_clipping(gradients, 1.0)}
    assert abs(effects["global_clipnorm"].cosine - 1.0) < 1e-12
    per_variable = [g * min(1.0, 1.0 / np.linalg.norm(g)) for g in gradients]
    assert effects["clipnorm"].cosine == pytest.approx(cosine(gradients, per_variable), rel=1e-12)
    clipped = [np.clip(g, -1.0, 1.0) for g in gradients]
    assert effects["clipvalue"].cosine == pytest.approx(cosine(gradients, clipped), rel=1e-12)
    assert effects["clipnorm"].cosine < 0.999 and effects["clipvalue"].cosine < 0.999
    assert effects["global_clipnorm"].clipped_norm == pytest.approx(1.0, rel=1e-12)
    scales = effects["global_clipnorm"].variable_scales
    np.testing.assert_allclose(scales, scales[0], rtol=1e-12)  # one factor for all


def test_thresholds_above_the_gradient_change_nothing(gradients):
    for effect in compare_clipping(gradients, 1e6):
        assert abs(effect.cosine - 1.0) < 1e-12
        np.testing.assert_allclose(effect.variable_scales, 1.0, rtol=1e-12)


def test_threshold_from_norms_is_a_multiple_of_the_median_of_finite_norms():
    assert threshold_from_norms([1.0, 3.0, 2.0, np.inf, np.nan], factor=0.5) == 1.0
    assert threshold_from_norms(np.array([4.0]), factor=2.0) == 8.0


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda g: clipped_gradients(g, "clip", 1.0), ValueError),
        (lambda g: clipped_gradients(g, "clipnorm", 0.0), ValueError),
        (lambda g: compare_clipping(g, 1.0, modes=["global"]), ValueError),
        (lambda g: optimizer_update("sgd", g), TypeError),
        (lambda g: optimizer_update(keras.optimizers.SGD(), []), TypeError),
        (lambda g: optimizer_update(keras.optimizers.SGD(), [np.array([np.nan])]), ValueError),
        (lambda g: threshold_from_norms([np.inf]), ValueError),
        (lambda g: threshold_from_norms([1.0], factor=0), ValueError),
        (lambda g: weight_gradients("model", np.zeros((1, 2, 2))), TypeError),
    ],
)
def test_bad_arguments_raise(gradients, call, error):
    with pytest.raises(error):
        call(gradients)
