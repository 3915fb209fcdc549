"""Independent computations of dL_i/dh_t that the probe is tested against.

None of this uses rnngrad's probe code: one oracle is back-propagation through time
written in NumPy, the other runs Keras's own cells step by step eagerly inside one
GradientTape and asks for the gradient with respect to every intermediate state (the
"obvious" method the probe replaces; it is also what the benchmark compares against).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


def numpy_simple_rnn_bptt(x, kernel, recurrent, bias, dense_w, dense_b, y, *, sequence=False):
    """Per-example dL_i/dh_t, (B, T, H), for tanh SimpleRNN -> Dense with an MSE loss.

    Keras's row-vector convention: h_t = tanh(x_t K + h_{t-1} U + b), out = h D + d.
    L_i = mean over outputs of (out - y)^2, averaged over time if ``sequence``.
    """
    x = np.asarray(x, np.float64)
    batch, steps, _ = x.shape
    units = recurrent.shape[0]
    h = np.zeros((batch, steps + 1, units))  # h[:, 0] is h_0 = 0
    for t in range(steps):
        h[:, t + 1] = np.tanh(x[:, t] @ kernel + h[:, t] @ recurrent + bias)
    k = dense_w.shape[1]
    delta = np.zeros((batch, steps, units))  # dL/dh_t, t = 1..T
    if sequence:
        out = h[:, 1:] @ dense_w + dense_b
        direct = (2.0 / (k * steps)) * (out - y) @ dense_w.T  # (B, T, H)
    else:
        out = h[:, -1] @ dense_w + dense_b
        direct = np.zeros((batch, steps, units))
        direct[:, -1] = (2.0 / k) * (out - y) @ dense_w.T
    carry = np.zeros((batch, units))  # dL/dh_t via h_{t+1}
    for t in range(steps - 1, -1, -1):
        delta[:, t] = direct[:, t] + carry
        pre = delta[:, t] * (1.0 - h[:, t + 1] ** 2)  # through tanh at step t
        carry = pre @ recurrent.T
    return delta


def unrolled_state_gradients(layers, x, y, per_example_loss, *, state="h"):
    """Run a chain of layers, recurrent ones step by step with their stock cells.

    Returns one (B, T, width) array per recurrent layer: the gradient of the summed
    per-example losses with respect to each h_t (and/or c_t), from one tape.
    """
    x = tf.convert_to_tensor(x)
    watched = []
    with tf.GradientTape() as tape:
        out = x
        for layer in layers:
            if isinstance(layer, keras.layers.RNN):
                out, tensors, _ = unroll(layer, out, tape, state)
                watched.append(tensors)
            else:
                out = layer(out, training=False)
        total = tf.reduce_sum(per_example_loss(y, out))
    grads = tape.gradient(total, watched, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    result = []
    for per_layer in grads:
        columns = [tf.stack(g, axis=1) for g in per_layer]  # (B, T, units) each
        result.append(tf.concat(columns, axis=-1).numpy())
    return result


def unroll(layer, sequence, tape, state="h", initial_state=None):
    """One recurrent layer, its stock cell called step by step; every state is watched.

    Returns the layer's output, the watched tensors ([hs], [cs] or [hs, cs]) and the
    final states.
    """
    cell = layer.cell
    batch = sequence.shape[0]
    n_states = 2 if isinstance(cell, keras.layers.LSTMCell) else 1
    if initial_state is None:
        states = [tf.zeros((batch, cell.units), cell.compute_dtype) for _ in range(n_states)]
    else:
        states = list(initial_state)
    hs, cs = [], []
    for t in range(sequence.shape[1]):
        h, states = cell(sequence[:, t], states, training=False)
        states = list(states) if isinstance(states, (list, tuple)) else [states]
        tape.watch(h)
        hs.append(h)
        if n_states == 2:
            tape.watch(states[1])
            cs.append(states[1])
        states[0] = h  # the watched tensor is the one carried forward
    outputs = tf.stack(hs, axis=1) if layer.return_sequences else hs[-1]
    tensors = {"h": [hs], "c": [cs], "all": [hs, cs] if cs else [hs]}[state]
    return outputs, tensors, states


def mse(y, out):
    axes = list(range(1, len(out.shape)))
    return tf.reduce_mean(tf.square(tf.cast(y, out.dtype) - out), axis=axes)


def chain(model):
    """The layers of a Sequential or chain-shaped Functional model, nested models flattened."""
    layers = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.Model):
            layers += chain(layer)
        else:
            layers.append(layer)
    return layers


def relative_error(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
