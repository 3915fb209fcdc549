"""The latching instrument against closed forms, finite differences and a Keras SimpleRNN."""

import math

import numpy as np
import pytest

import rnngrad
from rnngrad.experiments.latching import fixed_point, fixed_point_derivative, latch


@pytest.mark.parametrize("weight", [1.01, 1.2, 1.5, 2.0, 3.0, 8.0])
def test_fixed_point_solves_the_map_and_attracts(weight):
    h = fixed_point(weight)
    assert 0 < h < 1
    assert abs(h - np.tanh(weight * h)) < 1e-14
    slope = fixed_point_derivative(weight)
    assert slope == pytest.approx(weight * (1 - h**2), rel=1e-14)
    assert 0 < slope < 1  # a stable fixed point
    # iterating the map from anywhere positive converges to it
    state = 0.9
    for _ in range(20000):
        state = np.tanh(weight * state)
    assert state == pytest.approx(h, abs=1e-9)


@pytest.mark.parametrize("weight", [0.1, 0.5, 1.0])
def test_below_one_the_only_fixed_point_is_zero(weight):
    assert fixed_point(weight) == 0.0
    assert fixed_point_derivative(weight) == weight


def test_without_noise_every_bit_is_kept_and_the_gradient_is_the_product_of_slopes():
    weight, steps = 2.0, 30
    run = latch(weight, steps=steps, noise=0.0, seed=0, trials=50)
    assert run.kept == 1.0
    state, expected = np.tanh(1.0), 0.0  # the + bit; the - bit is its mirror image
    for _ in range(steps):
        state = np.tanh(weight * state)
        expected += math.log(weight * (1 - state**2))
    np.testing.assert_allclose(run.log_gradient, expected, rtol=1e-12)
    np.testing.assert_allclose(np.abs(run.final), state, rtol=1e-12)
    # the state converges to h*, so the rate tends to log lambda*
    long = latch(weight, steps=2000, noise=0.0, seed=0, trials=4)
    assert long.rate == pytest.approx(math.log(fixed_point_derivative(weight)), abs=2e-3)


@pytest.mark.parametrize("weight, activation", [(1.4, "tanh"), (0.8, "tanh"), (1.0, "linear")])
def test_log_gradient_equals_finite_differences_on_the_same_noise(weight, activation):
    """The draws are the bits, then one standard normal per trial per step (documented)."""
    steps, noise, seed, trials, write = 12, 0.3, 5, 6, 1.0
    run = latch(weight, steps=steps, noise=noise, seed=seed, trials=trials, activation=activation)
    rng = np.random.default_rng(seed)
    bits = rng.choice(np.array([-1.0, 1.0]), size=trials)
    xi = np.stack([noise * rng.standard_normal(trials) for _ in range(steps)])
    phi = np.tanh if activation == "tanh" else (lambda v: v)

    def final(h0):
        h = h0
        for t in range(steps):
            h = phi(weight * h + xi[t])
        return h

    h0 = phi(write * bits)
    np.testing.assert_array_equal(run.bits, bits)
    np.testing.assert_allclose(run.final, final(h0), rtol=1e-12)
    delta = 1e-5  # central differences: rounding error about 1e-11 absolute
    fd = (final(h0 + delta) - final(h0 - delta)) / (2 * delta)
    np.testing.assert_allclose(np.exp(run.log_gradient), np.abs(fd), rtol=1e-6, atol=1e-9)


def test_the_linear_unit_keeps_its_gradient_and_forgets_like_a_random_walk():
    noise, write = 0.2, 1.0
    for steps in (50, 500):
        run = latch(
            1.0, steps=steps, noise=noise, seed=1, trials=20000, write=write,
            activation="linear",
        )  # fmt: skip
        assert run.rate == 0.0
        # h_T = h_0 + N(0, noise^2 T): the sign survives with probability Phi(write / sd)
        expected = 0.5 * (1 + math.erf(write / (noise * math.sqrt(steps)) / math.sqrt(2)))
        standard_error = math.sqrt(expected * (1 - expected) / 20000)
        assert abs(run.kept - expected) < 4 * standard_error, (steps, run.kept, expected)


def test_a_deep_attractor_keeps_the_bit_and_a_weak_one_loses_it():
    deep = latch(2.5, steps=500, noise=0.2, seed=0, trials=1000)
    weak = latch(1.1, steps=500, noise=0.2, seed=0, trials=1000)
    assert deep.kept == 1.0 and abs(weak.kept - 0.5) < 0.06
    assert deep.rate < weak.rate < 0


def test_the_same_unit_as_a_keras_simple_rnn():
    """A 1-unit SimpleRNN fed the write then the noise computes the same h_T and gradient."""
    import keras

    weight, steps, noise, seed, trials = 1.6, 20, 0.3, 2, 8
    run = latch(weight, steps=steps, noise=noise, seed=seed, trials=trials)
    rng = np.random.default_rng(seed)
    bits = rng.choice(np.array([-1.0, 1.0]), size=trials)
    xi = np.stack([noise * rng.standard_normal(trials) for _ in range(steps)], axis=1)
    x = np.concatenate([bits[:, None], xi], axis=1)[..., None]  # (B, T + 1, 1)
    model = rnngrad.build_rnn("simple", 1, input_dim=1, dtype="float64", seed=0)
    layer = model.get_layer("simple_1")
    layer.cell.kernel.assign(np.ones((1, 1)))
    layer.cell.recurrent_kernel.assign(np.full((1, 1), weight))
    layer.cell.bias.assign(np.zeros(1))
    states = keras.Model(model.inputs[0], layer.output)(x).numpy()[:, 0]
    np.testing.assert_allclose(states, run.final, rtol=1e-12)
    grads = rnngrad.state_gradients(model, x, None)[0][:, :, 0]  # (B, T + 1)
    ratio = np.abs(grads[:, 0] / grads[:, -1])  # |dh_{T+1} / dh_1| = |dh_T / dh_0| here
    np.testing.assert_allclose(np.log(ratio), run.log_gradient, rtol=1e-9)


def test_runs_are_reproducible_from_the_seed():
    a = latch(1.5, steps=40, noise=0.3, seed=7, trials=100)
    b = latch(1.5, steps=40, noise=0.3, seed=7, trials=100)
    np.testing.assert_array_equal(a.final, b.final)
    assert a.kept == b.kept and a.rate == b.rate


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        (dict(weight=0.0), ValueError, "weight"),
        (dict(weight="2"), TypeError, "weight"),
        (dict(steps=0), ValueError, "steps"),
        (dict(noise=-0.1), ValueError, "noise"),
        (dict(seed=-1), ValueError, "seed"),
        (dict(trials=0), ValueError, "trials"),
        (dict(write=0.0), ValueError, "write"),
        (dict(activation="relu"), ValueError, "activation"),
    ],
)
def test_latch_validates_its_arguments(kwargs, error, name):
    arguments = dict(weight=1.5, steps=10, noise=0.2, seed=0) | kwargs
    weight = arguments.pop("weight")
    with pytest.raises(error, match=name):
        latch(weight, **arguments)


def test_fixed_point_validates_the_weight():
    with pytest.raises(ValueError, match="weight"):
        fixed_point(-1.0)
    with pytest.raises(TypeError, match="weight"):
        fixed_point_derivative(None)
