"""Gates of LSTM and GRU layers along a trajectory, and the gradient their diagonal path carries.

An LSTM's cell state obeys ``c_t = f_t * c_{t-1} + i_t * g_t``, so

    dc_t/dc_{t-1} = diag(f_t) + (terms through h_{t-1} = o_{t-1} * tanh(c_{t-1}), which
                    feeds every gate at step t through the recurrent weights).

Keras's GRU has ``h_t = z_t * h_{t-1} + (1 - z_t) * candidate_t``, whose diagonal term is
``diag(z_t)``. :func:`gate_trajectory` runs a layer's own weights in float64 NumPy and
returns every gate at every step; :func:`diagonal_path_profile` gives the gradient norm
that the diagonal term alone would carry back, ``||dL/dc_T * prod f||``, to compare with
the full gradient the probe measures.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from rnngrad._engine import cell_family
from rnngrad._validation import check_array
from rnngrad.theory import ACTIVATIONS

__all__ = ["diagonal_path_profile", "gate_trajectory"]


def gate_trajectory(layer: keras.layers.Layer, x: Any) -> dict[str, np.ndarray]:
    """Every gate and state of an LSTM or GRU layer at every step, from its own weights.

    Parameters
    ----------
    layer : keras.layers.LSTM or keras.layers.GRU
        A built layer (with ``h_0 = 0`` and, for LSTM, ``c_0 = 0``).
    x : array-like
        The layer's inputs, ``(B, T, features)``.

    Returns
    -------
    dict of str to numpy.ndarray
        float64 arrays of shape ``(B, T, units)`` for steps t = 1..T. LSTM: ``"i"``,
        ``"f"``, ``"g"`` (the candidate), ``"o"``, ``"c"``, ``"h"``; GRU (Keras's
        equations, ``reset_after`` either way): ``"z"``, ``"r"``, ``"candidate"``,
        ``"h"``.

    Examples
    --------
    >>> import rnngrad
    >>> model = rnngrad.build_rnn(
    ...     "lstm", 3, input_dim=2, forget_bias=2.0, recurrent_gain=0.0
    ... )
    >>> gates = gate_trajectory(model.get_layer("lstm_1"), np.zeros((1, 4, 2)))
    >>> round(float(gates["f"].mean()), 4)  # sigmoid(2): no input, no recurrence
    0.8808
    """
    kind = cell_family(layer)
    if kind not in ("lstm", "gru"):
        raise TypeError(
            f"layer must run a keras LSTM or GRU cell, got {type(layer).__name__}"
            + ("; a SimpleRNN has no gates" if kind == "simple" else "")
        )
    x = check_array("x", x, ndim=3).astype(np.float64)
    cell = layer.cell
    kernel = _numpy(cell.kernel)
    if x.shape[-1] != kernel.shape[0]:
        raise ValueError(f"x must have {kernel.shape[0]} features, got shape {x.shape}")
    recurrent = _numpy(cell.recurrent_kernel)
    act, gate_act = _activation(cell.activation), _activation(cell.recurrent_activation)
    units = cell.units
    batch, steps = x.shape[:2]
    bias = _numpy(cell.bias) if cell.use_bias else None
    recurrent_bias = None
    if kind == "gru" and bias is not None and cell.reset_after:
        bias, recurrent_bias = bias[0], bias[1]  # GRU keeps input and recurrent biases apart
    drive = x @ kernel + (0.0 if bias is None else bias)  # (B, T, gates * units)
    names = ("i", "f", "g", "o", "c", "h") if kind == "lstm" else ("z", "r", "candidate", "h")
    out = {name: np.empty((batch, steps, units)) for name in names}
    h = np.zeros((batch, units))
    c = np.zeros((batch, units))
    for t in range(steps):
        if kind == "lstm":
            z = drive[:, t] + h @ recurrent
            i, f, g, o = np.split(z, 4, axis=-1)  # Keras's order
            i, f, g, o = gate_act(i), gate_act(f), act(g), gate_act(o)
            c = f * c + i * g
            h = o * act(c)
            values = (i, f, g, o, c, h)
        else:
            x_z, x_r, x_h = np.split(drive[:, t], 3, axis=-1)
            if cell.reset_after:
                inner = h @ recurrent + (0.0 if recurrent_bias is None else recurrent_bias)
                r_z, r_r, r_h = np.split(inner, 3, axis=-1)
                z, r = gate_act(x_z + r_z), gate_act(x_r + r_r)
                candidate = act(x_h + r * r_h)
            else:
                r_z, r_r = np.split(h @ recurrent[:, : 2 * units], 2, axis=-1)
                z, r = gate_act(x_z + r_z), gate_act(x_r + r_r)
                candidate = act(x_h + (r * h) @ recurrent[:, 2 * units :])
            h = z * h + (1.0 - z) * candidate
            values = (z, r, candidate, h)
        for name, value in zip(names, values):
            out[name][:, t] = value
    return out


def diagonal_path_profile(last_gradient: Any, keep: Any) -> np.ndarray:
    """The gradient norm carried back by the diagonal (forget or update gate) path alone.

    ``||dL/ds_T * prod_{u=t+1}^{T} keep_u||`` (elementwise products), the batch mean
    for every step t = 1..T: what the gradient would be if ``ds_t/ds_{t-1}`` were
    ``diag(keep_t)``, with ``keep = f`` for an LSTM's cell state ``s = c`` and
    ``keep = z`` for a GRU's ``s = h``.

    Parameters
    ----------
    last_gradient : array-like
        ``(B, units)``: dL/ds_T, e.g. the last step of
        :func:`rnngrad.probes.state_gradients`.
    keep : array-like
        ``(B, T, units)``: the gate along the trajectory, from :func:`gate_trajectory`.

    Returns
    -------
    numpy.ndarray
        float64, shape ``(T,)``, the same layout as a row of
        :func:`rnngrad.probes.state_gradient_norms`.

    Examples
    --------
    >>> diagonal_path_profile(np.ones((1, 1)), np.full((1, 3, 1), 0.5)).tolist()
    [0.25, 0.5, 1.0]
    """
    last = check_array("last_gradient", last_gradient, ndim=2).astype(np.float64)
    keep = check_array("keep", keep, ndim=3).astype(np.float64)
    if keep.shape[0] != last.shape[0] or keep.shape[2] != last.shape[1]:
        raise ValueError(
            f"keep must have shape (B, T, units) = ({last.shape[0]}, T, {last.shape[1]}) "
            f"to match last_gradient, got {keep.shape}"
        )
    # P_t = prod_{u > t} keep_u: a reversed cumulative product, shifted by one step.
    suffix = np.cumprod(keep[:, ::-1], axis=1)[:, ::-1]  # prod_{u >= t}
    carried = np.concatenate([suffix[:, 1:], np.ones_like(suffix[:, :1])], axis=1)
    return np.linalg.norm(last[:, None, :] * carried, axis=-1).mean(axis=0)


def _numpy(variable: Any) -> np.ndarray:
    value = variable.numpy() if hasattr(variable, "numpy") else variable
    return np.asarray(value, dtype=np.float64)


def _activation(function: Any):
    name = getattr(function, "__name__", None)
    if name in ACTIVATIONS:
        return ACTIVATIONS[name]

    def through_keras(a: np.ndarray) -> np.ndarray:  # any other Keras activation, in float64
        return _numpy(function(keras.ops.convert_to_tensor(a, dtype="float64")))

    return through_keras
