"""Pascanu's regularizer Omega: a penalty that keeps the back-propagated gradient's norm.

Pascanu, Mikolov & Bengio (2013, section 3.3) add to the loss

    Omega = sum_k ( ||delta_{k+1} J_{k+1}|| / ||delta_{k+1}|| - 1 )^2,

with ``delta_{k+1} = dL/dh_{k+1}`` (a row vector) and ``J_{k+1} = dh_{k+1}/dh_k`` the
step Jacobian. Each term asks one step of back-propagation to preserve the norm of the
gradient it carries: a factor below 1 (vanishing) or above 1 (exploding) is penalized.
As in the paper, ``delta_{k+1}`` is treated as a constant when Omega is differentiated;
here the states ``h_k`` and the layer's inputs are constants too, so the penalty acts on
the weights through ``J_{k+1}`` only (its ``W_h`` and the derivative ``phi'(a_{k+1})``).

The implementation sits on the probe: :func:`rnngrad.probes.state_gradients` gives
every ``delta_t`` in one backward pass, and ``delta_{k+1} J_{k+1}`` is one
vector-Jacobian product of the layer's own Keras cell, for all steps at once. It applies
to a recurrent layer with a single state (``SimpleRNN`` or ``GRU``).
"""

from __future__ import annotations

import math
import time
import weakref
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from rnngrad._inputs import check_inputs, check_targets
from rnngrad._losses import check_loss_argument, loss_for_targets, resolve_loss
from rnngrad._seed import seed_run
from rnngrad._validation import check_float, check_int
from rnngrad.experiments.clipping import tf_variables
from rnngrad.models import recurrent_layers
from rnngrad.probes import LossArg, state_gradients
from rnngrad.training import TrainResult, _reset_optimizer, check_fit_arguments, make_optimizer

__all__ = ["omega", "omega_gradients", "omega_ratios", "train_with_omega"]


class _OmegaParts:
    """What Omega needs from a model: its single-state recurrent layer and that layer's input."""

    def __init__(self, model: keras.Model, layer: str | None) -> None:
        if not isinstance(model, keras.Model):
            raise TypeError(f"model must be a keras.Model, got {type(model).__name__}")
        layers = recurrent_layers(model)
        if not layers:
            raise ValueError(f"model {model.name!r} has no SimpleRNN, LSTM or GRU layer")
        names = [lay.name for lay in layers]
        if layer is None:
            if len(layers) > 1:
                raise ValueError(
                    f"model {model.name!r} has several recurrent layers {names}; "
                    "name one with layer="
                )
            index = 0
        elif layer in names:
            index = names.index(layer)
        else:
            raise ValueError(f"layer must be one of the recurrent layers {names}, got {layer!r}")
        self.index = index
        self.layer = layers[index]
        if isinstance(self.layer.cell, keras.layers.LSTMCell) or not isinstance(
            self.layer.cell, (keras.layers.SimpleRNNCell, keras.layers.GRUCell)
        ):
            raise ValueError(
                f"layer {self.layer.name!r} must be a SimpleRNN or GRU (one state per step); "
                f"got {type(self.layer).__name__}"
            )
        if self.layer.go_backwards or self.layer.stateful:
            raise ValueError(f"layer {self.layer.name!r} must not be go_backwards or stateful")
        self.model = model
        try:
            inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
            self.layer_input = keras.Model(inputs, self.layer.input)
        except Exception as err:  # subclassed models have no graph to cut
            raise ValueError(
                f"could not find the input of layer {self.layer.name!r} in model "
                f"{model.name!r}: {err}"
            ) from None
        # The same cell, so the same weights; the same precision as the layer.
        self.run = keras.layers.RNN(
            self.layer.cell, return_sequences=True, dtype=self.layer.dtype_policy
        )


def _omega_terms(cell, inputs, states, delta):
    """Per example, per step: (ratio, kept), ratio = ||delta_t J_t|| / ||delta_t||, t = 2..T.

    ``inputs`` (B, T, F) are the layer's inputs, ``states`` (B, T, H) its states h_1..h_T,
    ``delta`` (B, T, H) the gradients dL/dh_t; all constants.
    """
    batch, steps = tf.shape(states)[0], tf.shape(states)[1]
    units = states.shape[-1]
    previous = tf.reshape(states[:, :-1], (-1, units))  # h_1 .. h_{T-1}
    step_input = tf.reshape(inputs[:, 1:], (-1, inputs.shape[-1]))  # x_2 .. x_T
    carried = tf.reshape(delta[:, 1:], (-1, units))  # delta_2 .. delta_T
    norms = tf.norm(carried, axis=-1, keepdims=True)
    kept = norms[:, 0] > 0  # a gradient that underflowed to 0 has no direction
    unit = tf.where(norms > 0, carried / tf.where(norms > 0, norms, 1.0), 0.0)
    with tf.GradientTape() as inner:
        inner.watch(previous)
        output, _ = cell(step_input, [previous], training=False)
    product = inner.gradient(output, previous, output_gradients=unit)  # delta_t J_t / ||delta_t||
    ratio = tf.reshape(tf.norm(product, axis=-1), (batch, steps - 1))
    return ratio, tf.reshape(kept, (batch, steps - 1))


def _omega_value(ratio, kept):
    terms = tf.where(kept, tf.square(ratio - 1.0), 0.0)
    return tf.reduce_mean(tf.reduce_sum(terms, axis=1))  # sum over steps, mean over examples


def _inputs_states_deltas(parts: _OmegaParts, x, y, loss):
    deltas = state_gradients(parts.model, x, y, loss=loss)[parts.index]  # (B, T, H)
    inputs = parts.layer_input(x, training=False)
    states = parts.run(inputs, training=False)
    dtype = states.dtype
    return tf.cast(inputs, dtype), states, tf.constant(deltas, dtype)


def _check_loss(loss: Any) -> None:
    check_loss_argument(loss)


def omega_ratios(
    model: keras.Model, x: Any, y: Any = None, *, loss: LossArg = "mse", layer: str | None = None
) -> np.ndarray:
    """The per-step factors ``||delta_{k+1} J_{k+1}|| / ||delta_{k+1}||`` that Omega penalizes.

    Parameters
    ----------
    model : keras.Model
        A model with a ``SimpleRNN`` or ``GRU`` layer (Sequential or Functional).
    x, y : array-like
        A batch and its targets (``y=None``: the target-free loss, as for the probe).
    loss : str or callable, default "mse"
        As for :func:`rnngrad.probes.state_gradient_norms`.
    layer : str, optional
        The recurrent layer's name; needed only when the model has several.

    Returns
    -------
    numpy.ndarray
        float64 ``(B, T - 1)``: column ``j`` is step ``k = j + 1`` (the factor by which
        back-propagating from ``h_{k+1}`` to ``h_k`` scales the gradient's norm). NaN
        where ``delta_{k+1}`` underflowed to exactly zero.

    Examples
    --------
    >>> import rnngrad
    >>> model = rnngrad.build_rnn("simple", 8, input_dim=2, recurrent_gain=0.5)
    >>> x, y = rnngrad.tasks.adding_problem(4, 6, seed=0)
    >>> ratios = omega_ratios(model, x, y)
    >>> # ||J|| <= sigma_max(W_h) = 0.5
    >>> ratios.shape, bool(np.all(ratios <= 0.5 + 1e-6))
    ((4, 5), True)
    """
    loss = loss_for_targets(loss, y)  # y=None: the target-free loss
    _check_loss(loss)
    parts = _OmegaParts(model, layer)
    inputs, states, deltas = _inputs_states_deltas(parts, x, y, loss)
    ratio, kept = _omega_terms(parts.layer.cell, inputs, states, deltas)
    return np.where(kept.numpy(), ratio.numpy().astype(np.float64), np.nan)


def omega(
    model: keras.Model, x: Any, y: Any = None, *, loss: LossArg = "mse", layer: str | None = None
) -> float:
    """Pascanu's regularizer: ``sum_k (ratio_k - 1)^2``, averaged over the batch.

    Parameters
    ----------
    model, x, y, loss, layer
        As for :func:`omega_ratios`.

    Returns
    -------
    float
        0 when every step of back-propagation preserves the gradient's norm; steps whose
        gradient underflowed to zero are left out.

    Examples
    --------
    >>> import rnngrad
    >>> model = rnngrad.build_rnn("simple", 8, input_dim=2, recurrent_gain=0.5)
    >>> x, y = rnngrad.tasks.adding_problem(4, 6, seed=0)
    >>> bool(omega(model, x, y) > 5 * 0.25)  # five steps, each factor at most 0.5
    True
    """
    ratios = omega_ratios(model, x, y, loss=loss, layer=layer)
    return float(np.mean(np.nansum((ratios - 1.0) ** 2, axis=1)))


def omega_gradients(
    model: keras.Model, x: Any, y: Any = None, *, loss: LossArg = "mse", layer: str | None = None
) -> tuple[float, list[np.ndarray]]:
    """Omega and its gradient with respect to ``model.trainable_variables``.

    The ``delta_t``, the states and the layer's inputs are held constant (see the module
    notes), so only the recurrent layer's own weights get a non-zero gradient.

    Parameters
    ----------
    model, x, y, loss, layer
        As for :func:`omega_ratios`.

    Returns
    -------
    value : float
    gradients : list of numpy.ndarray
        float64, one per trainable variable (zeros where Omega does not depend on it).
    """
    loss = loss_for_targets(loss, y)  # y=None: the target-free loss
    _check_loss(loss)
    parts = _OmegaParts(model, layer)
    inputs, states, deltas = _inputs_states_deltas(parts, x, y, loss)
    variables = model.trainable_variables
    with tf.GradientTape() as tape:
        value = _omega_value(*_omega_terms(parts.layer.cell, inputs, states, deltas))
    grads = tape.gradient(value, tf_variables(variables), unconnected_gradients="zero")
    return float(value), [np.asarray(g, dtype=np.float64) for g in grads]


# model -> {options: compiled step}: a model trained again with other weights loaded into
# it (another seed) reuses its step instead of tracing it again. Weak keys, and the step
# holds only a weak reference to the model, so an entry dies with its model.
_STEPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _omega_step(model: keras.Model, parts: _OmegaParts, spec: Any, options: tuple) -> Any:
    """The compiled training step on ``loss + strength * Omega``, with its optimizer."""
    optimizer, learning_rate, global_clipnorm, momentum = options[:4]
    strength = tf.Variable(0.0, dtype=tf.float64, trainable=False)  # set for each run
    built = make_optimizer(
        optimizer, learning_rate, global_clipnorm=global_clipnorm, momentum=momentum
    )
    variables = model.trainable_variables
    sources = tf_variables(variables)
    built.build(variables)  # create the optimizer's slots outside the compiled step
    cell, layer_input, run = parts.layer.cell, parts.layer_input, parts.run
    model_ref = weakref.ref(model)

    @tf.function(reduce_retracing=True)
    def step(xb, yb, deltas):
        # The layer's inputs and states are constants of Omega (see the module notes).
        inputs = tf.stop_gradient(layer_input(xb, training=False))
        states = tf.stop_gradient(run(inputs, training=False))
        inputs, deltas = tf.cast(inputs, states.dtype), tf.cast(deltas, states.dtype)
        with tf.GradientTape() as tape:
            value = tf.reduce_mean(spec.per_example(yb, model_ref()(xb, training=True)))
            penalty = _omega_value(*_omega_terms(cell, inputs, states, deltas))
            total = value + tf.cast(strength, penalty.dtype) * penalty
        grads = tape.gradient(total, sources, unconnected_gradients="zero")
        built.apply(grads, variables)
        return value, penalty

    step.optimizer, step.strength = built, strength
    return step


def train_with_omega(
    model: keras.Model,
    x: Any,
    y: Any,
    *,
    strength: float,
    epochs: int,
    batch_size: int = 32,
    optimizer: str = "sgd",
    learning_rate: float = 0.01,
    global_clipnorm: float | None = None,
    momentum: float = 0.0,
    loss: str = "mse",
    layer: str | None = None,
    seed: int = 0,
) -> TrainResult:
    """Train ``model`` on ``loss + strength * Omega``, as Pascanu et al. did.

    A plain training loop: for every batch, the probe measures the ``delta_t`` at the
    current weights, then one compiled step takes the gradient of the batch-mean loss
    plus ``strength`` times Omega on that batch and lets the optimizer apply it (with
    ``global_clipnorm`` if given: the paper combines Omega with clipping, since Omega
    does nothing against exploding steps of the loss itself).

    Parameters
    ----------
    model : keras.Model
        Trained in place; a model with one ``SimpleRNN``/``GRU`` layer (or ``layer=``).
    x, y : array-like
        Training data.
    strength : float
        The weight of Omega, >= 0 (0 trains on the loss alone, through the same loop).
    epochs : int
        Passes over the data, >= 1.
    batch_size : int, default 32
    optimizer : {"sgd", "adam", "rmsprop"}, default "sgd"
    learning_rate : float, default 0.01
    global_clipnorm : float, optional
        Pascanu's clipping of the total gradient.
    momentum : float, default 0.0
        SGD momentum.
    loss : str, default "mse"
        One of :data:`rnngrad.probes.LOSSES`.
    layer : str, optional
        The recurrent layer to regularize, if the model has several.
    seed : int, default 0
        Seeds the shuffling.

    Returns
    -------
    rnngrad.training.TrainResult
        ``history`` has per-epoch means of ``loss`` (without Omega) and ``omega``;
        training stops at the first non-finite value (``diverged``).

    Examples
    --------
    >>> import rnngrad
    >>> model = rnngrad.build_rnn("simple", 8, input_dim=2, recurrent_gain=0.5)
    >>> x, y = rnngrad.tasks.adding_problem(64, 10, seed=0)
    >>> result = train_with_omega(
    ...     model, x, y, strength=0.1, epochs=2, learning_rate=0.05
    ... )
    >>> sorted(result.history), len(result.history["omega"])
    (['loss', 'omega'], 2)
    """
    if not isinstance(loss, str):
        raise TypeError(f"loss must be a loss name for train_with_omega, got {type(loss).__name__}")
    _check_loss(loss)
    parts = _OmegaParts(model, layer)
    strength = check_float("strength", strength)
    if strength < 0:
        raise ValueError(f"strength must be >= 0, got {strength}")
    x, y, epochs, batch_size = check_fit_arguments(x, y, epochs, batch_size)
    seed = check_int("seed", seed, minimum=0)
    spec = resolve_loss(model, loss, has_targets=True)
    options = (optimizer, learning_rate, global_clipnorm, momentum, loss, layer)
    # The strength is a variable of the compiled step, so runs that differ only in it
    # (a run without Omega as the control of one with it) share one traced step.
    key = (*options, tuple(id(v) for v in model.trainable_variables))
    step = _STEPS.setdefault(model, {}).get(key)
    if step is None:
        step = _STEPS[model][key] = _omega_step(model, parts, spec, options)
    else:
        _reset_optimizer(step.optimizer)  # a fresh start, as a new optimizer's
    step.strength.assign(strength)

    seed_run(seed, model)  # seed_everything, keeping the compiled probe
    rng = np.random.default_rng(seed)
    history: dict[str, list[float]] = {"loss": [], "omega": []}
    stopped = None
    start = time.perf_counter()
    for epoch in range(epochs):
        order = rng.permutation(len(x))
        losses, penalties = [], []
        for batch, first in enumerate(range(0, len(x), batch_size)):
            index = order[first : first + batch_size]
            xb = check_inputs(model, x[index])
            yb = check_targets(model, xb, y[index], spec)
            deltas = state_gradients(model, xb, yb, loss=loss)[parts.index]  # (B, T, H)
            value, penalty = step(xb, yb, tf.constant(deltas))
            losses.append(float(value))
            penalties.append(float(penalty))
            if not (math.isfinite(losses[-1]) and math.isfinite(penalties[-1])):
                stopped = (epoch, batch)
                break
        history["loss"].append(float(np.mean(losses)))
        history["omega"].append(float(np.mean(penalties)))
        if stopped is not None:
            break
    return TrainResult(
        history=history,
        diverged=stopped is not None,
        stopped_at=stopped,
        seconds=time.perf_counter() - start,
        seed=seed,
    )
