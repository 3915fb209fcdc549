"""Mean-field predictions of the per-step gradient rate, taken along a network's trajectory.

For ``W_h = g Q`` (Q orthogonal) or Gaussian ``W_h`` with entries N(0, g^2/n), a
back-propagated vector ``v`` is multiplied at each step by ``W_h^T diag(phi'(a_t))``.
When ``v`` is in general position with respect to the diagonal (large n), its squared
norm changes by ``g^2 * mean_i phi'(a_{t,i})^2`` per step, so the log-norm changes by

    rate_t = log g + 1/2 log mean_i phi'(a_{t,i})^2,

and the predicted rate of the profile is the mean of ``rate_t`` over the steps. Its
square-free cousin ``log g + mean_i log phi'(a_{t,i})`` is smaller (Jensen's inequality)
and is minus infinity as soon as one ReLU unit is off. ``chi = g^2 mean phi'^2`` is the
mean-field *susceptibility*: chi = 1 is the critical line between vanishing and exploding
(Chen, Pennington & Schoenholz 2018).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from rnngrad._validation import check_array, check_choice, check_float, check_int
from rnngrad.models import recurrent_layers
from rnngrad.theory import ACTIVATION_DERIVATIVE_BOUNDS, ACTIVATIONS, activation_derivative

__all__ = [
    "first_simple_rnn",
    "jensen_lower_bound_rate",
    "mean_field_rate",
    "simple_rnn_preactivations",
    "stack_preactivations",
    "susceptibility",
]


def first_simple_rnn(model: keras.Model) -> keras.layers.SimpleRNN:
    """The model's first recurrent layer, which the gain and Lyapunov scans vary; a
    TypeError/ValueError unless it is a ``keras.layers.SimpleRNN``."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model, got {type(model).__name__}")
    layers = recurrent_layers(model)
    if not layers or not isinstance(layers[0], keras.layers.SimpleRNN):
        raise ValueError("model's first recurrent layer must be a keras.layers.SimpleRNN")
    return layers[0]


def simple_rnn_preactivations(layer: keras.layers.Layer, x: Any) -> np.ndarray:
    """Pre-activations ``a_t = W_x x_t + W_h h_{t-1} + b`` of a SimpleRNN, in float64.

    Runs the layer's own weights in NumPy over the inputs it receives.

    Parameters
    ----------
    layer : keras.layers.SimpleRNN
        A built layer; its activation must be one of linear, tanh, sigmoid, relu.
    x : array-like
        The layer's inputs, ``(B, T, features)``.

    Returns
    -------
    numpy.ndarray
        ``(B, T, units)``, steps t = 1..T.
    """
    if not isinstance(layer, keras.layers.SimpleRNN):
        raise TypeError(f"layer must be a keras.layers.SimpleRNN, got {type(layer).__name__}")
    name = getattr(layer.cell.activation, "__name__", None)
    activation = check_choice("layer activation", name, ACTIVATION_DERIVATIVE_BOUNDS)
    x = check_array("x", x, ndim=3).astype(np.float64)
    cell = layer.cell
    kernel = cell.kernel.numpy().astype(np.float64)
    if x.shape[-1] != kernel.shape[0]:
        raise ValueError(f"x must have {kernel.shape[0]} features, got shape {x.shape}")
    recurrent = cell.recurrent_kernel.numpy().astype(np.float64)
    bias = cell.bias.numpy().astype(np.float64) if cell.use_bias else 0.0
    phi = ACTIVATIONS[activation]
    driven = x @ kernel + bias  # (B, T, U): the input drive of every step
    pre = np.empty_like(driven)
    h = np.zeros((x.shape[0], kernel.shape[1]))
    for t in range(x.shape[1]):
        pre[:, t] = driven[:, t] + h @ recurrent
        h = phi(pre[:, t])
    return pre


def stack_preactivations(model: keras.Model, x: Any) -> list[np.ndarray]:
    """Pre-activations of every SimpleRNN layer of a :func:`~rnngrad.models.build_rnn`
    stack, in float64, each from the inputs that layer actually reads.

    Runs the stack in NumPy: layer 1 reads ``x``; layer ``l + 1`` reads
    ``phi(a^(l))``, plus that layer's own input when the stack is residual
    (``build_rnn(..., residual=True)``, recognized by its ``Add`` layers). One pass
    of NumPy, no Keras call, so it is cheap to repeat for many weight draws.

    Parameters
    ----------
    model : keras.Model
        A stack of ``SimpleRNN`` layers from :func:`~rnngrad.models.build_rnn`
        (``cell="simple"``), plain or residual.
    x : array-like
        The model's inputs, ``(B, T, input_dim)``.

    Returns
    -------
    list of numpy.ndarray
        One ``(B, T, units)`` array per layer, bottom first.

    Examples
    --------
    >>> import rnngrad
    >>> model = rnngrad.build_rnn("simple", 8, input_dim=2, layers=3, residual=True)
    >>> x, _ = rnngrad.tasks.adding_problem(4, 10, seed=0)
    >>> [a.shape for a in stack_preactivations(model, x)]
    [(4, 10, 8), (4, 10, 8), (4, 10, 8)]
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model, got {type(model).__name__}")
    layers = recurrent_layers(model)
    if not layers or not all(isinstance(layer, keras.layers.SimpleRNN) for layer in layers):
        raise ValueError(f"model {model.name!r} must be a stack of SimpleRNN layers")
    residual = any(isinstance(layer, keras.layers.Add) for layer in model.layers)
    reads = check_array("x", x, ndim=3).astype(np.float64)
    found = []
    for index, layer in enumerate(layers):
        a = simple_rnn_preactivations(layer, reads)  # (B, T, units)
        h = ACTIVATIONS[layer.cell.activation.__name__](a)
        reads = h + reads if residual and index > 0 else h
        found.append(a)
    return found


def mean_field_rate(
    preactivations: np.ndarray, activation: str, gain: float, *, skip: int = 0
) -> float:
    """Predicted log-change of the gradient norm per step back in time.

    ``log g + 1/2 log mean(phi'(a_t)^2)``, the mean over units and examples inside the
    log, then averaged over steps ``t > skip``.

    Parameters
    ----------
    preactivations : array-like
        ``(B, T, units)``, e.g. from :func:`simple_rnn_preactivations`.
    activation : {"linear", "tanh", "sigmoid", "relu"}
    gain : float
        g, the scale of W_h (its singular values for ``g Q``), > 0.
    skip : int, default 0
        Leave out the first ``skip`` steps (the transient from h_0 = 0).

    Examples
    --------
    >>> a = np.zeros((1, 5, 3))
    >>> round(mean_field_rate(a, "sigmoid", 2.0), 4)  # log 2 + log 1/4
    -0.6931
    """
    second_moment = _per_step(
        preactivations, activation, skip, lambda d: np.mean(d**2, axis=(0, 2))
    )
    gain = check_float("gain", gain, positive=True)
    return float(np.log(gain) + 0.5 * np.mean(np.log(second_moment)))


def jensen_lower_bound_rate(
    preactivations: np.ndarray, activation: str, gain: float, *, skip: int = 0
) -> float:
    """The naive rate ``log g + mean log phi'(a_t)``: a lower bound of :func:`mean_field_rate`.

    By Jensen's inequality ``mean log phi' <= 1/2 log mean phi'^2``; it is ``-inf``
    when any unit has ``phi' = 0`` (an inactive ReLU).

    Examples
    --------
    >>> a = np.array([[[-1.0, 1.0]]])
    >>> jensen_lower_bound_rate(a, "relu", 1.0)
    -inf
    """
    gain = check_float("gain", gain, positive=True)
    with np.errstate(divide="ignore"):
        mean_log = _per_step(
            preactivations, activation, skip, lambda d: np.mean(np.log(d), axis=(0, 2))
        )
    return float(np.log(gain) + np.mean(mean_log))


def susceptibility(
    preactivations: np.ndarray, activation: str, gain: float, *, skip: int = 0
) -> float:
    """chi = g^2 * mean phi'(a)^2 along the trajectory; chi = 1 is the critical line.

    Returns ``exp(2 * mean_field_rate(...))``, the geometric mean over steps of the
    per-step ``g^2 mean phi'(a_t)^2``.

    Examples
    --------
    >>> susceptibility(np.zeros((1, 4, 2)), "tanh", 1.0)
    1.0
    """
    return float(np.exp(2.0 * mean_field_rate(preactivations, activation, gain, skip=skip)))


def _per_step(preactivations, activation, skip, reduce):
    a = check_array("preactivations", preactivations, ndim=3).astype(np.float64)
    check_choice("activation", activation, ACTIVATION_DERIVATIVE_BOUNDS)
    skip = check_int("skip", skip, minimum=0)
    if skip >= a.shape[1]:
        raise ValueError(f"skip must be smaller than the number of steps {a.shape[1]}, got {skip}")
    return reduce(activation_derivative(activation, a[:, skip:]))
