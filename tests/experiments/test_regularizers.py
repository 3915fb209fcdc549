"""Pascanu's Omega on top of the probe, against a direct NumPy computation."""

import keras
import numpy as np
import pytest

import rnngrad
from rnngrad.experiments.clipping import weight_gradients
from rnngrad.experiments.regularizers import omega, omega_gradients, omega_ratios, train_with_omega
from tests.oracles import numpy_simple_rnn_bptt


@pytest.fixture(scope="module")
def setup():
    model = rnngrad.build_rnn("simple", 5, input_dim=2, dtype="float64", recurrent_gain=0.8, seed=2)
    x, y = rnngrad.tasks.adding_problem(4, 8, seed=1)
    return model, x.astype(np.float64), y.astype(np.float64)


def numpy_states(x, kernel, recurrent, bias):
    batch, steps, _ = x.shape
    h = np.zeros((batch, steps + 1, recurrent.shape[0]))
    for t in range(steps):
        h[:, t + 1] = np.tanh(x[:, t] @ kernel + h[:, t] @ recurrent + bias)
    return h


def numpy_omega(kernel, recurrent, bias, x, h, delta):
    """Omega with delta_t and the states h_{t-1} held fixed; a_t recomputed from the weights."""
    unit = delta[:, 1:] / np.linalg.norm(delta[:, 1:], axis=-1, keepdims=True)  # t = 2..T
    a = x[:, 1:] @ kernel + h[:, 1:-1] @ recurrent + bias  # a_t from h_{t-1}, t = 2..T
    product = (unit * (1 - np.tanh(a) ** 2)) @ recurrent.T  # delta_t J_t / ||delta_t||
    ratio = np.linalg.norm(product, axis=-1)
    return ratio, np.mean(np.sum((ratio - 1) ** 2, axis=1))


def test_ratios_and_omega_equal_numpy(setup):
    model, x, y = setup
    kernel, recurrent, bias, dense_w, dense_b = model.get_weights()
    delta = numpy_simple_rnn_bptt(x, kernel, recurrent, bias, dense_w, dense_b, y)
    h = numpy_states(x, kernel, recurrent, bias)
    ratio, value = numpy_omega(kernel, recurrent, bias, x, h, delta)
    np.testing.assert_allclose(omega_ratios(model, x, y), ratio, rtol=1e-10)
    assert omega(model, x, y) == pytest.approx(value, rel=1e-10)


def test_last_step_loss_ratio_is_the_ratio_of_consecutive_state_gradients(setup):
    # With a loss on h_T only, delta_k = delta_{k+1} J_{k+1} exactly.
    model, x, y = setup
    norms = np.linalg.norm(rnngrad.state_gradients(model, x, y)[0], axis=-1)  # (B, T)
    np.testing.assert_allclose(omega_ratios(model, x, y), norms[:, :-1] / norms[:, 1:], rtol=1e-10)


def test_gradient_equals_central_differences_with_the_deltas_held_fixed(setup):
    model, x, y = setup
    kernel, recurrent, bias, dense_w, dense_b = model.get_weights()
    delta = numpy_simple_rnn_bptt(x, kernel, recurrent, bias, dense_w, dense_b, y)
    h = numpy_states(x, kernel, recurrent, bias)
    _, grads = omega_gradients(model, x, y)
    step = 1e-6
    for index, weights in [(1, recurrent), (2, bias), (0, kernel)]:
        flat = weights.ravel()
        for i in [0, flat.size // 2, flat.size - 1]:
            args = {0: kernel, 1: recurrent, 2: bias}
            plus, minus = flat.copy(), flat.copy()
            plus[i] += step
            minus[i] -= step
            f = []
            for changed in (plus, minus):
                args[index] = changed.reshape(weights.shape)
                f.append(numpy_omega(args[0], args[1], args[2], x, h, delta)[1])
            expected = (f[0] - f[1]) / (2 * step)
            assert grads[index].ravel()[i] == pytest.approx(expected, rel=1e-6, abs=1e-9)
    np.testing.assert_array_equal(grads[3], 0.0)  # the read-out does not enter Omega
    np.testing.assert_array_equal(grads[4], 0.0)


def test_gru_is_supported_and_lstm_is_refused():
    x, y = rnngrad.tasks.adding_problem(3, 6, seed=0)
    gru = rnngrad.build_rnn("gru", 4, input_dim=2, seed=0)
    ratios = omega_ratios(gru, x, y)
    assert ratios.shape == (3, 5) and np.all(np.isfinite(ratios))
    with pytest.raises(ValueError, match="SimpleRNN or GRU"):
        omega(rnngrad.build_rnn("lstm", 4, input_dim=2), x, y)
    stacked = rnngrad.build_rnn("simple", 4, input_dim=2, layers=2)
    with pytest.raises(ValueError, match="several recurrent layers"):
        omega(stacked, x, y)
    name = rnngrad.models.recurrent_layers(stacked)[1].name
    assert omega_ratios(stacked, x, y, layer=name).shape == (3, 5)


@pytest.mark.integration
@pytest.mark.parametrize("strength", [0.0, 0.5])
def test_one_full_batch_step_is_sgd_on_loss_plus_strength_times_omega(setup, strength):
    model, x, y = setup
    fresh = keras.models.clone_model(model)
    fresh.set_weights(model.get_weights())
    before = fresh.get_weights()
    loss_grads = weight_gradients(fresh, x, y)
    _, penalty_grads = omega_gradients(fresh, x, y)
    result = train_with_omega(
        fresh, x, y, strength=strength, epochs=1, batch_size=len(x), learning_rate=0.1
    )
    assert len(result.history["loss"]) == 1 and not result.diverged
    rate = float(np.float32(0.1))  # Keras keeps the learning rate in a float32 variable
    for w0, w1, gl, gp in zip(before, fresh.get_weights(), loss_grads, penalty_grads):
        np.testing.assert_allclose(w1, w0 - rate * (gl + strength * gp), rtol=1e-9, atol=1e-12)


def test_training_with_omega_brings_the_factors_towards_one():
    model = rnngrad.build_rnn("simple", 8, input_dim=2, recurrent_gain=0.5, seed=0)
    x, y = rnngrad.tasks.adding_problem(64, 12, seed=0)
    start = omega(model, x[:16], y[:16])
    result = train_with_omega(model, x, y, strength=1.0, epochs=3, learning_rate=0.1)
    assert omega(model, x[:16], y[:16]) < 0.5 * start
    assert result.history["omega"][-1] < result.history["omega"][0]


@pytest.mark.integration
def test_a_model_trained_again_reuses_its_compiled_step_and_repeats_a_fresh_run():
    from rnngrad.experiments import regularizers

    x, y = rnngrad.tasks.adding_problem(48, 10, seed=0)

    def build(seed):
        return rnngrad.build_rnn("simple", 6, input_dim=2, recurrent_gain=0.5, seed=seed)

    options = {"strength": 0.5, "epochs": 2, "batch_size": 16, "momentum": 0.9}
    fresh = [train_with_omega(build(s), x, y, seed=s, **options).history for s in (1, 2)]
    model = build(0)
    train_with_omega(model, x, y, seed=0, **options)
    (step,) = regularizers._STEPS[model].values()
    for seed, expected in zip((1, 2), fresh):
        model.set_weights(build(seed).get_weights())
        assert train_with_omega(model, x, y, seed=seed, **options).history == expected
    assert list(regularizers._STEPS[model].values()) == [step]  # traced for the first run only
    assert step.experimental_get_tracing_count() == 1
    # another strength: the same traced step (the strength is its variable), and the
    # same run as a fresh model's; then the first strength again, as before
    unregularized = {**options, "strength": 0.0}
    expected = train_with_omega(build(1), x, y, seed=1, **unregularized).history
    model.set_weights(build(1).get_weights())
    assert train_with_omega(model, x, y, seed=1, **unregularized).history == expected
    model.set_weights(build(2).get_weights())
    assert train_with_omega(model, x, y, seed=2, **options).history == fresh[1]
    assert list(regularizers._STEPS[model].values()) == [step]
    assert step.experimental_get_tracing_count() == 1
    options_other = {**options, "learning_rate": 0.05}  # another optimizer: another step
    train_with_omega(model, x, y, seed=0, **options_other)
    assert len(regularizers._STEPS[model]) == 2


def test_bad_arguments_raise(setup):
    model, x, y = setup
    with pytest.raises(ValueError, match="strength"):
        train_with_omega(model, x, y, strength=-1.0, epochs=1)
    with pytest.raises(ValueError, match="epochs"):
        train_with_omega(model, x, y, strength=1.0, epochs=0)
    with pytest.raises(ValueError, match="same number"):
        train_with_omega(model, x, y[:2], strength=1.0, epochs=1)
    with pytest.raises(ValueError, match="layer"):
        omega(model, x, y, layer="nope")
    with pytest.raises(TypeError, match="model"):
        omega("model", x, y)
    with pytest.raises(ValueError, match="loss"):
        omega(model, x, y, loss="hinges")
