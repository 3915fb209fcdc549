"""Independent computations of dL_i/dh_t that the probe is tested against.

None of this uses rnngrad's probe code: one oracle is back-propagation through time
written in NumPy, the other runs Keras's own cells step by step eagerly inside one
GradientTape and asks for the gradient with respect to every intermediate state (the
"obvious" method the probe replaces; it is also what the benchmark compares against).
"""

from __future__ import annotations

import inspect

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
    """Run a chain of layers, recurrent ones step by step with their own cells.

    Handles ``Masking``/``Embedding(mask_zero=True)`` masks, ``go_backwards`` layers and
    ``Bidirectional`` wrappers (forward then backward row, backward rows in input time).
    Returns one (B, T, width) array per recurrent row: the gradient of the summed
    per-example losses with respect to each h_t (and/or c_t), from one tape.
    """
    x = tf.convert_to_tensor(x)
    watched, backwards = [], []
    with tf.GradientTape() as tape:
        out, mask = x, None
        for layer in layers:
            if isinstance(layer, keras.layers.Masking):
                mask = tf.reduce_any(tf.not_equal(out, layer.mask_value), axis=-1)
                out = out * tf.cast(mask[..., None], out.dtype)
            elif isinstance(layer, keras.layers.Embedding):
                mask = tf.not_equal(out, 0) if layer.mask_zero else None
                out = layer(out)
            elif isinstance(layer, keras.layers.Bidirectional):
                out = bidirectional(layer, out, tape, state, mask, watched, backwards)
                mask = mask if layer.return_sequences else None
            elif isinstance(layer, keras.layers.RNN):
                out, tensors, _ = unroll(layer, out, tape, state, mask=mask)
                watched.append(tensors)
                backwards.append(layer.go_backwards)
                mask = mask if layer.return_sequences else None
            else:
                out = layer(out, training=False)
        total = tf.reduce_sum(per_example_loss(y, out))
    grads = tape.gradient(total, watched, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    result = []
    for per_layer, is_backward in zip(grads, backwards):
        columns = [tf.stack(g, axis=1) for g in per_layer]  # (B, T, units) each
        array = tf.concat(columns, axis=-1).numpy()
        result.append(array[:, ::-1] if is_backward else array)  # input time
    return result


def bidirectional(wrapper, sequence, tape, state, mask, watched, backwards):
    """A Bidirectional layer from its two layers' cells, merged as Keras merges them."""
    y, fwd, _ = unroll(wrapper.forward_layer, sequence, tape, state, mask=mask)
    y_rev, bwd, _ = unroll(wrapper.backward_layer, sequence, tape, state, mask=mask)
    watched += [fwd, bwd]
    backwards += [False, True]
    if wrapper.return_sequences:
        y_rev = tf.reverse(y_rev, [1])
    merge = wrapper.merge_mode
    if merge == "concat":
        return tf.concat([y, y_rev], axis=-1)
    if merge == "sum":
        return y + y_rev
    if merge == "ave":
        return (y + y_rev) / 2
    if merge == "mul":
        return y * y_rev
    raise ValueError(f"merge mode {merge!r} not in the oracle")


def unroll(layer, sequence, tape, state="h", initial_state=None, mask=None):
    """One recurrent layer, its own cell called step by step; every state is watched.

    Masked steps carry the states and repeat the previous output (Keras's semantics);
    a ``go_backwards`` layer runs over the reversed sequence and returns its outputs in
    processing order, as Keras does. Returns the layer's output, the watched tensors
    ([hs], [cs] or [hs, cs], in processing order) and the final states.
    """
    cell = layer.cell
    batch = sequence.shape[0]
    sizes = tf.nest.flatten(cell.state_size)
    if initial_state is None:
        states = [tf.zeros((batch, s), cell.compute_dtype) for s in sizes]
    else:
        states = list(initial_state)
    steps = list(range(sequence.shape[1]))
    if layer.go_backwards:
        steps = steps[::-1]
    hs, cs, outputs = [], [], []
    previous = tf.zeros_like(states[0])
    takes_training = "training" in inspect.signature(cell.call).parameters
    kwargs = {"training": False} if takes_training else {}
    for t in steps:
        h, new = cell(sequence[:, t], list(states), **kwargs)
        new = list(new) if isinstance(new, (list, tuple)) else [new]
        if mask is not None:
            m = mask[:, t : t + 1]
            new = [tf.where(m, n, s) for n, s in zip(new, states)]
            h = new[0]
        tape.watch(h)
        new[0] = h  # the watched tensor is the one carried forward
        hs.append(h)
        if len(new) == 2:
            tape.watch(new[1])
            cs.append(new[1])
        out = h if mask is None else tf.where(mask[:, t : t + 1], h, previous)
        previous = out
        outputs.append(out)
        states = new
    last = outputs[-1]
    outputs = tf.stack(outputs, axis=1) if layer.return_sequences else last
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


def keras_per_example(loss):
    """Example i's loss from a Keras loss object: its unreduced values, averaged per example."""

    def per_example(y, out):
        values = loss.call(tf.cast(y, loss.dtype), tf.cast(out, loss.dtype))
        axes = list(range(1, len(values.shape)))
        return tf.reduce_mean(values, axis=axes) if axes else values

    return per_example


def transport_oracle(layer, sequence, width=None, initial_state=None, mask=None):
    """||u_i . dh_T/dh_t|| per example and step, in input time, for the probe's u.

    u_i is row i of N(0, 1) draws from ``np.random.default_rng(7919)`` with ``width``
    columns (the widest recurrent layer of the model; default this layer's units), the
    first ``units`` of them, normalized.
    """
    sequence = tf.convert_to_tensor(sequence)
    units = layer.cell.units
    draws = np.random.default_rng(7919).standard_normal((sequence.shape[0], width or units))
    u = tf.constant(draws.astype("float32")[:, :units])
    u = u / tf.norm(u, axis=-1, keepdims=True)
    with tf.GradientTape() as tape:
        _, tensors, final = unroll(layer, sequence, tape, "h", initial_state, mask)
        total = tf.reduce_sum(tf.cast(final[0], tf.float32) * u)
    grads = tape.gradient(total, tensors[0])
    norms = np.linalg.norm(np.stack([g.numpy() for g in grads], axis=1), axis=-1)
    return norms[:, ::-1] if layer.go_backwards else norms


def relative_error(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
