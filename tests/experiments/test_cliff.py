"""Pascanu's cliff: exact loss and gradient against closed forms and finite differences."""

import numpy as np
import pytest

from rnngrad.experiments.cliff import cliff_loss_and_gradient, cliff_states, gradient_descent


def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def test_states_follow_the_recursion():
    states = cliff_states(3.0, -1.5, steps=3, x0=0.2)
    x = [0.2]
    for _ in range(3):
        x.append(3.0 * sigmoid(x[-1]) - 1.5)
    np.testing.assert_allclose(states, x, rtol=1e-15)


def test_one_step_loss_and_gradient_in_closed_form():
    w, b, x0, target = 2.5, -0.7, 0.3, 0.6
    x1 = w * sigmoid(x0) + b
    s1 = sigmoid(x1)
    loss, gw, gb = cliff_loss_and_gradient(w, b, steps=1, x0=x0, target=target)
    assert loss == pytest.approx((s1 - target) ** 2, rel=1e-14)
    assert gw == pytest.approx(2 * (s1 - target) * s1 * (1 - s1) * sigmoid(x0), rel=1e-14)
    assert gb == pytest.approx(2 * (s1 - target) * s1 * (1 - s1), rel=1e-14)


@pytest.mark.parametrize("w, b", [(4.0, -2.5), (3.0, -1.0), (6.0, -3.2), (1.0, 0.5)])
def test_gradient_equals_central_differences(w, b):
    _, gw, gb = cliff_loss_and_gradient(w, b)
    h = 1e-6
    fw = (cliff_loss_and_gradient(w + h, b)[0] - cliff_loss_and_gradient(w - h, b)[0]) / (2 * h)
    fb = (cliff_loss_and_gradient(w, b + h)[0] - cliff_loss_and_gradient(w, b - h)[0]) / (2 * h)
    scale = max(abs(gw), abs(gb))
    # central differences in float64: error ~ h^2 * third derivative + 1e-16 / h
    assert abs(fw - gw) < 1e-6 * scale + 1e-9 and abs(fb - gb) < 1e-6 * scale + 1e-9


def test_broadcasting_over_a_grid_equals_pointwise_values():
    w, b = np.meshgrid(np.linspace(2, 8, 5), np.linspace(-4, 0, 4))
    loss, gw, gb = cliff_loss_and_gradient(w, b)
    assert loss.shape == gw.shape == gb.shape == (4, 5)
    single = cliff_loss_and_gradient(w[2, 3], b[2, 3])
    np.testing.assert_allclose([loss[2, 3], gw[2, 3], gb[2, 3]], single, rtol=1e-14)


def test_the_wall_has_a_huge_gradient_between_flat_regions():
    w = np.linspace(4.5, 5.2, 20001)  # across the wall at b = -2.5
    _, gw, gb = cliff_loss_and_gradient(w, -2.5)
    norm = np.hypot(gw, gb)
    assert norm.max() > 1e3 * np.median(norm)


@pytest.mark.parametrize("clip", [None, 0.5])
def test_descent_steps_are_learning_rate_times_the_clipped_gradient(clip):
    path = gradient_descent((4.0, -2.5), learning_rate=1.0, n_updates=10, clip_norm=clip)
    assert path.params.shape == (11, 2) and path.losses.shape == (11,)
    np.testing.assert_array_equal(path.params[0], [4.0, -2.5])
    for i in range(10):
        _, gw, gb = cliff_loss_and_gradient(*path.params[i])
        grad = np.array([gw, gb])
        norm = np.linalg.norm(grad)
        assert path.grad_norms[i] == pytest.approx(norm, rel=1e-14)
        scale = 1.0 if clip is None else min(1.0, clip / norm)
        np.testing.assert_allclose(path.params[i + 1], path.params[i] - scale * grad, rtol=1e-14)
        assert path.losses[i] == pytest.approx(cliff_loss_and_gradient(*path.params[i])[0])
    if clip is not None:
        assert path.step_lengths.max() <= clip * (1 + 1e-12)


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"start": (1.0,)}, ValueError),
        ({"start": (np.nan, 0.0)}, ValueError),
        ({"learning_rate": 0.0}, ValueError),
        ({"n_updates": 0}, ValueError),
        ({"clip_norm": -1.0}, ValueError),
        ({"steps": 0}, ValueError),
        ({"learning_rate": "big"}, TypeError),
    ],
)
def test_bad_arguments_raise(kwargs, error):
    arguments = {"start": (4.0, -2.5), "learning_rate": 1.0, "n_updates": 3, **kwargs}
    start = arguments.pop("start")
    with pytest.raises(error):
        gradient_descent(start, **arguments)


def test_bad_parameters_raise():
    with pytest.raises(ValueError, match="w and b"):
        cliff_loss_and_gradient(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="finite"):
        cliff_states(np.inf, 0.0)
    with pytest.raises(TypeError, match="w"):
        cliff_states(["a"], 0.0)
