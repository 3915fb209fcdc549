"""Truncated backpropagation through time, and the long-range credit it gives up.

Truncated BPTT cuts the backward pass after ``k`` steps: the sequence is processed in
chunks of ``k`` steps, the state is carried forward from chunk to chunk as usual, but
the gradient does not flow back across a chunk boundary. Each Jacobian product then has
at most ``k`` factors, so the gradient cannot grow like ``(gamma sigma_max)^T`` and the
backward pass costs ``k`` steps instead of ``T``; in exchange, a loss at step ``t``
gives no credit at all to anything more than ``k`` steps before it.

:func:`truncated_model` builds that computation as a Keras model that *shares every
weight* with an existing model, so training it with :func:`rnngrad.training.train`
trains the original by truncated BPTT, and its gradient can be compared with the full
one. :func:`long_range_share` uses it as a measuring instrument: the share of a weight
update that comes from gradient which travelled more than ``lag`` steps back.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from rnngrad._engine import probed_layers
from rnngrad._losses import loss_for_targets, resolve_loss
from rnngrad._tflog import quiet_retracing_warnings
from rnngrad._validation import check_int
from rnngrad.experiments.clipping import optimizer_update, tf_variables, weight_gradients
from rnngrad.probes import LossArg, check_model_data

__all__ = ["chunk_bounds", "cut_gradients", "long_range_share", "truncated_model", "update_share"]


def chunk_bounds(length: int, truncation: int) -> list[tuple[int, int]]:
    """The ``[start, end)`` chunks of truncated BPTT, aligned to the end of the sequence.

    The last chunk is the last ``truncation`` steps, so the loss at the final step sees
    exactly ``truncation`` steps of gradient; the first chunk takes what is left over.

    Parameters
    ----------
    length : int
        Sequence length ``T``, >= 1.
    truncation : int
        Steps per chunk ``k``, >= 1.

    Returns
    -------
    list of tuple of int

    Examples
    --------
    >>> chunk_bounds(10, 4)
    [(0, 2), (2, 6), (6, 10)]
    """
    length = check_int("length", length, minimum=1)
    truncation = check_int("truncation", truncation, minimum=1)
    ends = list(range(length, 0, -truncation))[::-1]
    return [(max(0, end - truncation), end) for end in ends]


def _chain(model: keras.Model) -> tuple[list, list, list]:
    """Split a chain model into (layers before, recurrent layers, layers after)."""
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    kinds = [isinstance(layer, keras.layers.RNN) for layer in layers]
    first = kinds.index(True)
    last = len(kinds) - 1 - kinds[::-1].index(True)
    if not all(kinds[first : last + 1]):
        raise ValueError(
            f"model {model.name!r}: truncated_model needs its recurrent layers stacked "
            "directly on each other, with no other layer between them"
        )
    previous = model.inputs[0] if model.inputs else None
    for layer in layers:
        if previous is not None and layer.input is not previous:
            raise ValueError(
                f"model {model.name!r}: truncated_model needs a plain chain of layers "
                f"(each feeding the next); layer {layer.name!r} does not take the previous "
                "layer's output (residual or branching models are not supported)"
            )
        previous = layer.output
    recurrent = layers[first : last + 1]
    for layer in recurrent[:-1]:
        if not layer.return_sequences:
            raise ValueError(
                f"layer {layer.name!r} feeds another recurrent layer, so it must return sequences"
            )
    return layers[:first], recurrent, layers[last + 1 :]


def truncated_model(model: keras.Model, truncation: int, *, length: int) -> keras.Model:
    """A model that shares ``model``'s weights and back-propagates at most ``truncation`` steps.

    The forward pass is exactly ``model``'s: every recurrent layer runs over the whole
    sequence, carrying its state. The sequence is split by :func:`chunk_bounds`, and
    the state handed from one chunk to the next passes through ``stop_gradient``, so in
    the backward pass a gradient never crosses a chunk boundary. With a loss on the last
    step only, the gradient reaches exactly the last ``truncation`` steps; with a loss on
    every step, each step's loss reaches back to the start of its chunk (the common
    "k1 = k2 = k" form of truncated BPTT). ``truncation >= length`` is full BPTT.

    The new model's recurrent layers are ``keras.layers.RNN`` wrappers around the
    *same cell objects*, and the other layers are the same layer objects, so training
    the returned model (e.g. with :func:`rnngrad.training.train`) updates ``model``.

    Parameters
    ----------
    model : keras.Model
        A chain of layers (Sequential, or Functional without branches): optional
        per-step layers, one or more stacked ``SimpleRNN``/``LSTM``/``GRU`` layers, then
        any layers, as :func:`rnngrad.models.build_rnn` builds (``residual=False``).
    truncation : int
        ``k``, the most steps a gradient travels back, >= 1.
    length : int
        The sequence length ``T`` the new model accepts (the chunks are fixed).

    Returns
    -------
    keras.Model
        Not compiled; maps ``(B, length, features)`` to ``model``'s output.

    Examples
    --------
    >>> import rnngrad
    >>> model = rnngrad.build_rnn("simple", 4, input_dim=2)
    >>> x, _ = rnngrad.tasks.adding_problem(3, 10, seed=0)
    >>> short = truncated_model(model, 4, length=10)
    >>> bool(np.allclose(short(x), model(x), atol=1e-6))  # same forward pass
    True
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model, got {type(model).__name__}")
    truncation = check_int("truncation", truncation, minimum=1)
    length = check_int("length", length, minimum=1)
    probed_layers(model, "h")  # no stateful layer or layer overriding call
    if not model.inputs or len(model.inputs) != 1:
        raise ValueError(f"model {model.name!r} must have exactly one input")
    before, recurrent, after = _chain(model)
    spec = model.inputs[0]
    if len(spec.shape) < 3:
        raise ValueError(f"model {model.name!r} must take sequences (B, T, ...), got {spec.shape}")
    if spec.shape[1] is not None and spec.shape[1] != length:
        raise ValueError(
            f"length must be the model's sequence length {spec.shape[1]}, got {length}"
        )
    inputs = keras.Input(shape=(length, *spec.shape[2:]), dtype=spec.dtype)
    sequence = inputs
    for layer in before:  # per-step layers: run them on the whole sequence
        sequence = layer(sequence)
    runners = [
        keras.layers.RNN(
            layer.cell,
            return_sequences=True,
            return_state=True,
            name=f"{layer.name}_truncated_{truncation}",
            dtype=layer.dtype_policy,  # a float64 model stays float64
        )
        for layer in recurrent
    ]
    states: list[Any] = [None] * len(runners)
    outputs = []
    for start, end in chunk_bounds(length, truncation):
        chunk = sequence[:, start:end]
        for index, runner in enumerate(runners):
            chunk, *final = runner(chunk, initial_state=states[index])
            # The next chunk starts from this state, but no gradient flows back into it.
            states[index] = [keras.ops.stop_gradient(state) for state in final]
        outputs.append(chunk)
    if recurrent[-1].return_sequences:
        out = outputs[0] if len(outputs) == 1 else keras.ops.concatenate(outputs, axis=1)
    else:
        out = outputs[-1][:, -1]
    for layer in after:
        out = layer(out)
    return keras.Model(inputs, out, name=f"{model.name}_truncated_{truncation}")


def cut_gradients(
    model: keras.Model,
    x: Any,
    y: Any = None,
    *,
    lag: int,
    loss: LossArg = "mse",
    compiled: bool = False,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The full BPTT gradient and the gradient with back-propagation cut after ``lag`` steps.

    Parameters
    ----------
    model : keras.Model
        A chain model, as for :func:`truncated_model`.
    x, y : array-like
        A batch ``(B, T, features)`` and its targets (``y=None``: the target-free loss).
    lag : int
        The cut, 1 <= lag <= T.
    loss : str or callable, default "mse"
    compiled : bool, default False
        Compute both gradients in one compiled function, kept for ``model`` (per cut,
        loss and batch shape): slower than the default eager computation for one call,
        faster when ``model`` is measured again, with other weights loaded into it.

    Returns
    -------
    full, cut : list of numpy.ndarray
        Gradients of the batch-mean loss, one float64 array per
        ``model.trainable_variables`` entry. ``full - cut`` is the part of the gradient
        that travelled more than ``lag`` steps back.
    """
    loss = loss_for_targets(loss, y)  # y=None: the target-free loss
    x_array = np.asarray(x)
    if x_array.ndim < 3:
        raise ValueError(
            f"x must be a batch of sequences (B, T, features), got shape {x_array.shape}"
        )
    length = x_array.shape[1]
    lag = check_int("lag", lag, minimum=1)
    if lag > length:
        raise ValueError(f"lag must be at most the sequence length {length}, got {lag}")
    if not isinstance(compiled, bool):
        raise TypeError(f"compiled must be True or False, got {compiled!r}")
    if compiled:
        return _compiled_cut(model, x, y, lag, length, loss)
    full = weight_gradients(model, x, y, loss=loss)
    short = truncated_model(model, lag, length=length)
    cut = weight_gradients(short, x, y, loss=loss, variables=model.trainable_variables)
    return full, cut


# model -> {(lag, loss, batch signature): compiled (full, cut) gradients}. Weak keys, and
# the function holds only a weak reference to the model, so an entry dies with its model.
_CUT_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _compiled_cut(model, x, y, lag, length, loss):
    """:func:`cut_gradients` in one compiled function per model, cut, loss and batch shape."""
    x, y = check_model_data(model, x, y, loss)
    spec = resolve_loss(model, loss, has_targets=y is not None)
    signature = repr(tf.nest.map_structure(lambda t: (tuple(t.shape), t.dtype.name), (x, y)))
    key = (lag, spec.key, signature)
    cache = _CUT_CACHE.setdefault(model, {})
    if key not in cache:
        short = truncated_model(model, lag, length=length)
        sources = tf_variables(model.trainable_variables)
        model_ref = weakref.ref(model)

        @tf.function(autograph=False)
        def both(x, y):
            with tf.GradientTape() as tape:
                full = tf.reduce_mean(spec.per_example(y, model_ref()(x, training=False)))
            full = tape.gradient(full, sources, unconnected_gradients="zero")
            with tf.GradientTape() as tape:
                cut = tf.reduce_mean(spec.per_example(y, short(x, training=False)))
            return full, tape.gradient(cut, sources, unconnected_gradients="zero")

        cache[key] = both
    with quiet_retracing_warnings():
        full, cut = cache[key](x, y)
    return (
        [np.asarray(g, dtype=np.float64) for g in full],
        [np.asarray(g, dtype=np.float64) for g in cut],
    )


def update_share(
    full: Sequence[Any], cut: Sequence[Any], optimizer: keras.optimizers.Optimizer | None = None
) -> float:
    """``||u(full) - u(cut)|| / ||u(full)||``, ``u`` the update ``optimizer`` makes.

    Parameters
    ----------
    full, cut : list of array-like
        Two gradients of the same variables, e.g. from :func:`cut_gradients`.
    optimizer : keras.optimizers.Optimizer, optional
        Applied through :func:`rnngrad.experiments.clipping.optimizer_update` (a fresh copy's first
        step); default SGD with learning rate 1, for which the share is
        ``||full - cut|| / ||full||``.

    Returns
    -------
    float

    Examples
    --------
    >>> update_share([np.array([3.0, 4.0])], [np.array([3.0, 3.0])])
    0.2
    """
    if optimizer is None:
        optimizer = keras.optimizers.SGD(learning_rate=1.0)
    if len(full) != len(cut):
        raise ValueError(
            f"full and cut must hold the same variables, got {len(full)} and {len(cut)}"
        )
    update = np.concatenate([u.ravel() for u in optimizer_update(optimizer, full)])
    update_cut = np.concatenate([u.ravel() for u in optimizer_update(optimizer, cut)])
    return float(np.linalg.norm(update - update_cut) / np.linalg.norm(update))


def long_range_share(
    model: keras.Model,
    x: Any,
    y: Any = None,
    *,
    lag: int,
    optimizer: keras.optimizers.Optimizer | None = None,
    loss: LossArg = "mse",
    compiled: bool = False,
) -> float:
    """The share of a weight update that comes from gradient older than ``lag`` steps.

    With ``g`` the full BPTT gradient of the batch-mean loss and ``g_lag`` the gradient
    with back-propagation cut after ``lag`` steps (:func:`cut_gradients`), and ``u(.)``
    the update ``optimizer`` makes from a gradient (:func:`update_share`), the share is

        ||u(g) - u(g_lag)|| / ||u(g)||,

    norms over all weights together. For plain SGD it is ``||g - g_lag|| / ||g||`` at
    any learning rate: how much of the step carries credit for dependencies longer than
    ``lag``. A vanishing gradient makes it tiny; an optimizer cannot restore what the
    sum over time has already lost. Use a float64 model to resolve shares below about
    1e-6 (float32 rounding of the two gradients is of that order).

    Parameters
    ----------
    model : keras.Model
        A chain model, as for :func:`truncated_model`.
    x, y : array-like
        A batch ``(B, T, features)`` and its targets (``y=None``: the target-free loss).
    lag : int
        The cut, 1 <= lag <= T.
    optimizer : keras.optimizers.Optimizer, optional
        Copied, never modified; default SGD with learning rate 1.
    loss : str or callable, default "mse"
    compiled : bool, default False
        As for :func:`cut_gradients`: worth it for a model measured again and again, with
        other weights loaded into it.

    Returns
    -------
    float

    Examples
    --------
    >>> import rnngrad
    >>> model = rnngrad.build_rnn("simple", 8, input_dim=2, recurrent_gain=0.3)
    >>> x, y = rnngrad.tasks.adding_problem(16, 20, seed=0)
    >>> bool(long_range_share(model, x, y, lag=10) < 1e-3)  # gain 0.3: almost none
    True
    """
    full, cut = cut_gradients(model, x, y, lag=lag, loss=loss, compiled=compiled)
    return update_share(full, cut, optimizer)
