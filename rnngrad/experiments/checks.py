"""An independent check of the probe: finite differences of the loss in a hidden state.

:func:`finite_difference_state_gradient` nudges ``h_t`` by ``+-delta`` along every unit,
reruns Keras's own cell for the remaining steps and differences the loss. It shares no
code with the probe's perturbed loop, so agreement between the two is evidence for both.
Use float64 models: in float32, rounding limits central differences to about three
significant digits.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from rnngrad._inputs import check_inputs, check_model, check_targets
from rnngrad._losses import loss_for_targets, resolve_loss
from rnngrad._validation import check_float, check_int
from rnngrad.probes import LossArg

__all__ = ["finite_difference_state_gradient"]


def finite_difference_state_gradient(
    model: keras.Model,
    x: Any,
    y: Any,
    step: int,
    *,
    delta: float = 1e-6,
    loss: LossArg = "mse",
) -> np.ndarray:
    """Central finite differences of each example's loss with respect to ``h_step``.

    Parameters
    ----------
    model : keras.Model
        A model whose first layer after the input is its only recurrent layer
        (``SimpleRNN``, ``LSTM`` or ``GRU`` returning the last step) followed by any
        layers that read that last state, e.g. :func:`rnngrad.models.build_rnn` with
        ``layers=1``.
    x, y : array-like
        Inputs ``(B, T, features)`` and targets, as for the probe.
    step : int
        The step t in ``1..T`` whose hidden state is nudged.
    delta : float, default 1e-6
        Half-width of the central difference.
    loss : str or callable, default "mse"
        As in :func:`rnngrad.probes.state_gradient_norms`.

    Returns
    -------
    numpy.ndarray
        float64, ``(B, units)``: row i approximates dL_i/dh_t. It matches row i of
        ``state_gradients(model, x, y)[0][:, step - 1]``.
    """
    loss = loss_for_targets(loss, y)  # y=None: the target-free loss
    layer, head = _split(model)
    check_model(model)
    spec = resolve_loss(model, loss, has_targets=y is not None)
    x = tf.convert_to_tensor(check_inputs(model, x))
    y = None if y is None else tf.convert_to_tensor(check_targets(model, x, y, spec))
    steps = x.shape[1]
    step = check_int("step", step, minimum=1)
    if step > steps:
        raise ValueError(f"step must be between 1 and T={steps}, got {step}")
    delta = check_float("delta", delta, positive=True)

    cell, batch, units = layer.cell, x.shape[0], layer.cell.units
    states = [tf.zeros((batch, units), cell.compute_dtype)] * len(_state_sizes(cell))
    for t in range(step):  # run up to h_step
        _, states = _cell_step(cell, x[:, t], states)

    # 2 * units nudged copies of the batch: +delta e_j, then -delta e_j, for every unit j
    nudges = delta * np.concatenate([np.eye(units), -np.eye(units)])  # (2U, U)
    copies = 2 * units
    tiled = [tf.repeat(s, copies, axis=0) for s in states]  # (B * 2U, U), example-major
    tiled[0] += tf.cast(np.tile(nudges, (batch, 1)), tiled[0].dtype)
    tail = tf.repeat(x[:, step:], copies, axis=0)
    for t in range(steps - step):
        _, tiled = _cell_step(cell, tail[:, t], tiled)
    out = tiled[0]
    for later in head:
        out = later(out, training=False)
    targets = tf.repeat(y, copies, axis=0)
    losses = spec.per_example(targets, out).numpy().astype(np.float64)
    losses = losses.reshape(batch, 2, units)
    return (losses[:, 0] - losses[:, 1]) / (2 * delta)


def _split(model: keras.Model) -> tuple[keras.layers.RNN, list[keras.layers.Layer]]:
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model, got {type(model).__name__}")
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    kinds = (keras.layers.SimpleRNN, keras.layers.LSTM, keras.layers.GRU)
    recurrent = [layer for layer in layers if isinstance(layer, keras.layers.RNN)]
    if (
        len(recurrent) != 1
        or layers[0] is not recurrent[0]
        or not isinstance(recurrent[0], kinds)
        or recurrent[0].return_sequences
        or recurrent[0].go_backwards
    ):
        raise ValueError(
            "model must start with its only recurrent layer (SimpleRNN, LSTM or GRU, "
            "return_sequences=False) followed by layers reading its last state"
        )
    return recurrent[0], layers[1:]


def _state_sizes(cell: keras.layers.Layer) -> list[int]:
    size = cell.state_size
    return list(size) if isinstance(size, (list, tuple)) else [size]


def _cell_step(cell, inputs, states):
    output, new_states = cell(inputs, states, training=False)
    new_states = list(new_states) if isinstance(new_states, (list, tuple)) else [new_states]
    return output, new_states
