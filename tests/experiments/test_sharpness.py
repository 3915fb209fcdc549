"""rnngrad.experiments.sharpness against finite differences, closed forms and simulation."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import rnngrad
from rnngrad.experiments.sharpness import (
    SharpnessHistory,
    hessian_vector_product,
    sharpness,
    stability_limit,
)


def _tiny_rnn():
    x, y = rnngrad.tasks.adding_problem(6, 5, seed=3)
    model = rnngrad.build_rnn("simple", 3, input_dim=2, recurrent_gain=1.3, dtype="float64", seed=1)
    return model, x.astype("float64"), y.astype("float64")


def _flat_gradient(model, x, y):
    with tf.GradientTape() as tape:
        value = tf.reduce_mean(keras.losses.get("mse")(y, model(x, training=False)))
    grads = tape.gradient(value, [v.value for v in model.trainable_variables])
    return np.concatenate([np.asarray(g).ravel() for g in grads])


def _finite_difference_hessian(model, x, y, step=1e-5):
    """Central differences of the exact gradient, one weight at a time (float64)."""
    weights = [w.copy() for w in model.get_weights()]
    sizes = [w.size for w in weights]
    flat = np.concatenate([w.ravel() for w in weights])
    columns = []
    for i in range(flat.size):
        grads = []
        for sign in (1, -1):
            moved = flat.copy()
            moved[i] += sign * step
            parts = np.split(moved, np.cumsum(sizes)[:-1])
            model.set_weights([p.reshape(w.shape) for p, w in zip(parts, weights)])
            grads.append(_flat_gradient(model, x, y))
        columns.append((grads[0] - grads[1]) / (2 * step))
    model.set_weights(weights)
    hessian = np.array(columns).T
    return (hessian + hessian.T) / 2, sizes


def test_hessian_vector_product_matches_finite_differences():
    model, x, y = _tiny_rnn()
    hessian, sizes = _finite_difference_hessian(model, x, y)
    rng = np.random.default_rng(0)
    vector = rng.standard_normal(hessian.shape[0])
    parts = np.split(vector, np.cumsum(sizes)[:-1])
    shaped = [p.reshape(w.shape) for p, w in zip(parts, model.get_weights())]
    product = hessian_vector_product(model, x, y, shaped)
    flat = np.concatenate([p.ravel() for p in product])
    np.testing.assert_allclose(flat, hessian @ vector, rtol=1e-6, atol=1e-8)


def test_sharpness_matches_the_eigenvalues_of_the_finite_difference_hessian():
    model, x, y = _tiny_rnn()
    hessian, _ = _finite_difference_hessian(model, x, y)
    eigenvalues = np.linalg.eigvalsh(hessian)
    found = sharpness(model, x, y, iterations=hessian.shape[0], seed=1)
    assert found.largest == pytest.approx(eigenvalues[-1], rel=1e-6)
    assert found.smallest == pytest.approx(eigenvalues[0], rel=1e-5, abs=1e-8)
    assert found.residual < 1e-6


def test_sharpness_of_least_squares_is_the_top_eigenvalue_of_2_xtx_over_n():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((40, 5))
    y = rng.standard_normal((40, 1))
    model = keras.Sequential(
        [keras.Input((5,), dtype="float64"), keras.layers.Dense(1, dtype="float64")]
    )
    augmented = np.hstack([x, np.ones((40, 1))])  # the bias is a weight on a constant input
    expected = np.linalg.eigvalsh(2 * augmented.T @ augmented / 40)[-1]
    found = sharpness(model, x, y, iterations=6)
    assert found.largest == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("momentum", [0.0, 0.5, 0.9])
def test_stability_limit_separates_converging_from_diverging_heavy_ball(momentum):
    eta = 0.1
    limit = stability_limit(eta, momentum)

    def final_size(curvature, steps=4000):  # Keras SGD on curvature * w^2 / 2
        w, v = 1.0, 0.0
        for _ in range(steps):
            v = momentum * v - eta * curvature * w
            w += v
        return abs(w)

    assert final_size(0.99 * limit) < 1.0
    assert final_size(1.01 * limit) > 1e3


def test_stability_limit_closed_form_and_validation():
    assert stability_limit(0.1) == pytest.approx(20.0)
    assert stability_limit(0.01, 0.9) == pytest.approx(380.0)
    with pytest.raises(ValueError, match="momentum"):
        stability_limit(0.1, 1.0)
    with pytest.raises(ValueError, match="learning_rate"):
        stability_limit(0.0)


def test_input_validation_names_the_argument():
    model, x, y = _tiny_rnn()
    with pytest.raises(TypeError, match="model"):
        sharpness("not a model", x, y)
    with pytest.raises(ValueError, match="iterations"):
        sharpness(model, x, y, iterations=1)
    with pytest.raises(ValueError, match="x and y"):
        sharpness(model, x, y[:3])
    with pytest.raises(ValueError, match="vectors"):
        hessian_vector_product(model, x, y, [np.zeros(2)])
    with pytest.raises(ValueError, match="loss"):
        sharpness(model, x, y, loss="no such loss")


def test_sharpness_history_measures_at_the_chosen_updates_of_every_fit():
    x, y = rnngrad.tasks.adding_problem(32, 5, seed=0)
    model = rnngrad.build_rnn("simple", 4, input_dim=2, dtype="float64", seed=0)
    start = sharpness(model, x, y, iterations=8).largest
    history = SharpnessHistory(x, y, at_updates=[0, 3], iterations=8)
    weights = model.get_weights()
    for _ in range(2):  # the same model trained twice from the same weights: one run each
        model.set_weights(weights)
        rnngrad.training.train(
            model, x, y, epochs=1, batch_size=8, optimizer="sgd", callbacks=[history]
        )
    assert [run["steps"] for run in history.runs] == [[0, 3], [0, 3]]
    assert history.runs[0]["largest"][0] == pytest.approx(start, rel=1e-10)
    after = sharpness(model, x, y, iterations=8).largest  # 4 updates in, not 3
    assert history.runs[1]["largest"][1] != pytest.approx(after, rel=1e-6)
    assert history.runs[0]["largest"] == pytest.approx(history.runs[1]["largest"], rel=1e-9)


@pytest.mark.integration
def test_sharpness_history_lets_a_call_run_the_updates_between_its_measurements():
    x, y = rnngrad.tasks.adding_problem(64, 5, seed=0)  # 8 updates an epoch at batch 8
    weights = rnngrad.build_rnn("simple", 4, input_dim=2, dtype="float64", seed=0).get_weights()

    class EveryBatch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            pass

    runs = []
    for extra in ([], [EveryBatch()]):  # 4 updates per call, then 1
        model = rnngrad.build_rnn("simple", 4, input_dim=2, dtype="float64", seed=0)
        model.set_weights(weights)
        history = SharpnessHistory(x, y, at_updates=[4, 12], iterations=8)
        rnngrad.training.train(
            model, x, y, epochs=2, batch_size=8, optimizer="sgd", callbacks=[history, *extra]
        )
        assert model.steps_per_execution == (4 if not extra else 1)
        runs.append(history.runs[0])
    assert runs[0]["steps"] == runs[1]["steps"] == [4, 12]
    assert runs[0]["largest"] == runs[1]["largest"]


@pytest.mark.integration
def test_sharpness_history_can_measure_on_a_model_compiled_already():
    from rnngrad.experiments import sharpness as module

    x, y = rnngrad.tasks.adding_problem(32, 5, seed=0)

    def build(seed, units=4):
        return rnngrad.build_rnn("simple", units, input_dim=2, dtype="float64", seed=seed)

    measured = build(9)
    sharpness(measured, x, y, iterations=6)  # its product is compiled
    runs = []
    for measure_on in (None, measured):
        model = build(0)
        history = SharpnessHistory(x, y, at_updates=[0, 4], iterations=6, measure_on=measure_on)
        rnngrad.training.train(
            model, x, y, epochs=1, batch_size=8, optimizer="sgd", callbacks=[history]
        )
        runs.append(history.runs[0]["largest"])
    assert runs[0] == pytest.approx(runs[1], rel=1e-12)
    assert model not in module._HVP_CACHE  # measured on the other model only
    other = SharpnessHistory(x, y, at_updates=[0], measure_on=build(0, units=5))
    with pytest.raises(ValueError, match="architecture"):
        rnngrad.training.train(build(0), x, y, epochs=1, batch_size=8, callbacks=[other])
    with pytest.raises(TypeError, match="measure_on"):
        SharpnessHistory(x, y, at_updates=[0], measure_on="model")


@pytest.mark.integration
def test_the_compiled_product_reads_the_current_weights():
    model, x, y = _tiny_rnn()
    before = sharpness(model, x, y, iterations=10).largest
    model.set_weights([2 * w for w in model.get_weights()])
    hessian, _ = _finite_difference_hessian(model, x, y)
    after = sharpness(model, x, y, iterations=hessian.shape[0]).largest
    assert after == pytest.approx(np.linalg.eigvalsh(hessian)[-1], rel=1e-6)
    assert abs(after - before) > 1e-3 * abs(before)
