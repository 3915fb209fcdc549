"""The exact one-pass probe of dL/dh_t for every time step of every recurrent layer.

How it works. While the model is traced, each recurrent layer's ``call`` is replaced by
a loop over time that runs the same cell equations on the layer's own weights and adds a
zero tensor ``eps_t`` to the new state::

    h_t = cell(x_t, h_{t-1}) + eps_t,      eps_t = 0.

The value of the network is unchanged, and ``dL/d eps_t`` is exactly the total
derivative dL/dh_t: through the read-out *and* through every later state. One
``tape.gradient`` call over all layers' perturbations gives every step of every layer
at once: one forward and one backward pass, the cost of a training step. (Taking the
gradient with respect to the layer's returned sequence instead would miss the paths
through later states.) The traced function is compiled and cached per model, so later
calls on the same model and shapes cost only the run.

For LSTM layers the cell state can be probed too: ``eps`` is then added to ``c_t``
before ``h_t = o_t * tanh(c_t)`` is formed, so dL/dc_t includes the path through
``h_t``.
"""

from __future__ import annotations

import contextlib
import warnings
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from rnngrad._validation import check_array, check_choice
from rnngrad.models import _cell_kind, recurrent_layers

__all__ = [
    "LOSSES",
    "STATES",
    "check_model_data",
    "global_gradient_norm",
    "state_gradient_norms",
    "state_gradients",
]

LOSSES = (
    "mse",
    "sparse_categorical_crossentropy",
    "categorical_crossentropy",
    "binary_crossentropy",
)
"""Loss names the probe understands; a callable ``(y_true, y_pred) -> (B,)`` also works."""

STATES = ("h", "c", "all")
"""The states the probe can differentiate (hidden output, LSTM cell state, or both)."""

LossArg = str | Callable[[tf.Tensor, tf.Tensor], tf.Tensor]

# Norms within this factor of the gradients' largest finite value are "near overflow"
# (float32: 3.4e38 -> 3.4e30; float64: 1.8e308 -> 1.8e300).
_NEAR_OVERFLOW = 1e-8


def state_gradient_norms(
    model: keras.Model,
    x: Any,
    y: Any = None,
    *,
    loss: LossArg = "mse",
    state: str = "h",
    jit_compile: bool | str = "auto",
) -> np.ndarray:
    """Batch-mean norm of dL_i/dh_t for every time step and every recurrent layer.

    Parameters
    ----------
    model : keras.Model
        Any Sequential or Functional Keras model with one input and one or more
        ``SimpleRNN``/``LSTM``/``GRU`` layers (stacked, mixed, nested, with other
        layers before and after). It runs with ``training=False``.
    x : array-like
        A batch of inputs, e.g. ``(B, T, features)``.
    y : array-like or None
        Targets matching the model's output. ``None`` uses the loss
        ``1/2 * ||output||^2`` per example (summed over output units, averaged over
        time for sequence outputs), a target-free probe of the network itself.
    loss : str or callable, default "mse"
        One of :data:`LOSSES` or a callable ``(y_true, y_pred) -> (B,)``. ``"mse"`` is
        the mean over output units. The cross-entropies take logits or probabilities
        as the model's last activation says (softmax/sigmoid: probabilities). For
        sequence outputs ``(B, T, k)`` the per-example loss is the mean over time.
    state : {"h", "c", "all"}, default "h"
        ``"h"``: the hidden output ``h_t``; ``"c"``: the LSTM cell state ``c_t``
        (``ValueError`` if a recurrent layer has none); ``"all"``: ``h_t`` and, where
        the layer has one, ``c_t``, concatenated.
    jit_compile : bool or "auto", default "auto"
        Compile the probe with XLA. ``"auto"`` uses XLA when no recurrent layer
        returns its whole sequence: XLA then runs the probe about twice as fast as
        TensorFlow's graph executor on a CPU, but writing a sequence out inside an XLA
        loop copies the whole buffer at every step (the README's benchmark).

    Returns
    -------
    numpy.ndarray
        float64, shape ``(layers, T)``: entry ``[l, t]`` is the mean over the batch of
        ``||dL_i/dh_t||_2`` for the l-th recurrent layer in call order at step
        ``t = 1..T`` (``h_0`` excluded), where ``L_i`` is example i's own loss, so the
        values do not shrink with the batch size. If the layers run over different
        lengths, shorter rows are padded with NaN at the end.

    Warns
    -----
    RuntimeWarning
        If gradients overflow (inf or NaN) or come near float32's limit: exploding
        gradients are a result to report, not an error.

    Examples
    --------
    >>> import rnngrad
    >>> from rnngrad.models import build_rnn
    >>> model = build_rnn("simple", 16, input_dim=2, recurrent_gain=0.5)
    >>> x, y = rnngrad.tasks.adding_problem(8, 20, seed=0)
    >>> norms = state_gradient_norms(model, x, y)
    >>> norms.shape
    (1, 20)
    >>> bool(norms[0, 0] < norms[0, -1])  # gain 0.5: the gradient vanishes going back
    True
    """
    result = _run_probe(model, x, y, loss=loss, state=state, jit_compile=jit_compile)
    norms = [n.numpy() for n in result.norms]
    _warn_if_overflowing(norms, result.gradients[0].dtype.as_numpy_dtype)
    longest = max(len(row) for row in norms)
    table = np.full((len(norms), longest), np.nan)
    for row, values in zip(table, norms):
        row[: len(values)] = values
    return table


def state_gradients(
    model: keras.Model,
    x: Any,
    y: Any = None,
    *,
    loss: LossArg = "mse",
    state: str = "h",
    jit_compile: bool | str = "auto",
) -> list[np.ndarray]:
    """The raw gradients dL_i/dh_t, for analyses that need directions, not only norms.

    Takes the same arguments as :func:`state_gradient_norms` and runs the same single
    backward pass.

    Returns
    -------
    list of numpy.ndarray
        One array per recurrent layer in call order, shape ``(B, T, width)``, where
        ``width`` is the layer's units (twice that for an LSTM with ``state="all"``).
        Row ``i`` is the gradient of example i's own loss.
    """
    result = _run_probe(model, x, y, loss=loss, state=state, jit_compile=jit_compile)
    grads = [g.numpy() for g in result.gradients]
    norms = [np.linalg.norm(g.astype(np.float64), axis=-1) for g in grads]
    _warn_if_overflowing(norms, grads[0].dtype)
    return grads


def global_gradient_norm(
    model: keras.Model, x: Any, y: Any = None, *, loss: LossArg = "mse"
) -> float:
    """Norm of the gradient of the batch-mean loss with respect to all trainable weights.

    This is the quantity ``global_clipnorm`` clips: the gradient an optimizer would see
    for this batch, all variables concatenated.

    Parameters
    ----------
    model, x, y, loss
        As in :func:`state_gradient_norms`; the loss is averaged over the batch.

    Returns
    -------
    float
        Computed in float64 from the per-variable gradients; inf or NaN if they overflow.

    Examples
    --------
    >>> import rnngrad
    >>> model = rnngrad.build_rnn("gru", 8, input_dim=2)
    >>> x, y = rnngrad.tasks.adding_problem(16, 20, seed=0)
    >>> bool(global_gradient_norm(model, x, y) > 0)
    True
    """
    x, y = check_model_data(model, x, y, loss)
    key = (loss if isinstance(loss, str) else id(loss), y is None)
    per_model = _GRADIENT_NORM_CACHE.setdefault(model, {})
    if key not in per_model:
        per_model[key] = _compile_gradient_norm(model, loss, y is None)
    with _quiet_retracing_warnings():
        value = per_model[key](x) if y is None else per_model[key](x, y)
    return float(value.numpy())


def check_model_data(
    model: keras.Model, x: Any, y: Any, loss: LossArg
) -> tuple[tf.Tensor, tf.Tensor | None]:
    """Validate a model, a batch and a loss the way the probe does; return tensors.

    Raises ``TypeError``/``ValueError`` naming the argument for anything the probe would
    not accept: a non-Keras model, an unknown loss, ``x`` of the wrong rank, feature size
    or dtype, ``y`` whose batch or shape does not match. Other modules that run a model
    on a user's batch call it, so every entry point rejects bad input the same way.

    Returns
    -------
    x, y : tf.Tensor
        ``y`` is None when no targets were given.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model, got {type(model).__name__}")
    if isinstance(loss, str):
        check_choice("loss", loss, LOSSES)
    elif not callable(loss):
        raise TypeError(f"loss must be one of {LOSSES} or a callable, got {type(loss).__name__}")
    x = _check_inputs(model, x)
    return x, (None if y is None else _check_targets(model, x, y, loss))


# --------------------------------------------------------------------------- internals


@dataclass
class _ProbeResult:
    gradients: list[tf.Tensor]  # per layer, (B, T, width)
    norms: list[tf.Tensor]  # per layer, (T,) float64
    layer_names: list[str]  # the probed layers, in call order


@dataclass
class _Recorder:
    """Collects the zero perturbations the patched layers create while being traced."""

    tape: tf.GradientTape
    state: str
    # One group per layer call: [eps_h], [eps_c] or [eps_h, eps_c], each (T, B, units).
    perturbations: list[list[tf.Tensor]] = field(default_factory=list)
    layer_names: list[str] = field(default_factory=list)  # in call order


def _run_probe(
    model: keras.Model, x: Any, y: Any, *, loss: LossArg, state: str, jit_compile: bool | str
) -> _ProbeResult:
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model, got {type(model).__name__}")
    check_choice("state", state, STATES)
    if jit_compile != "auto" and not isinstance(jit_compile, bool):
        raise TypeError(f"jit_compile must be True, False or 'auto', got {jit_compile!r}")
    layers = _supported_recurrent_layers(model, state)
    if jit_compile == "auto":
        jit_compile = not any(layer.return_sequences for layer in layers)
    x, y = check_model_data(model, x, y, loss)
    loss_key = loss if isinstance(loss, str) else id(loss)

    key = (loss_key, state, y is None, jit_compile)
    per_model = _PROBE_CACHE.setdefault(model, {})
    if key not in per_model:
        per_model[key] = _compile_probe(model, layers, loss, state, y is None, jit_compile)
    probe, layer_names = per_model[key]
    try:
        with _quiet_retracing_warnings():
            gradients, norms = probe(x) if y is None else probe(x, y)
    except (tf.errors.InvalidArgumentError, ValueError) as err:
        raise ValueError(f"the probe could not run model {model.name!r} on x: {err}") from err
    return _ProbeResult(list(gradients), list(norms), list(layer_names))


# model -> {(loss, state, no_targets, jit): (compiled probe, layer names)}. Weak keys: a
# model's cache dies with it (the compiled functions only hold a weak reference to it).
_PROBE_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _compile_probe(
    model: keras.Model,
    layers: list[keras.layers.RNN],
    loss: LossArg,
    state: str,
    no_targets: bool,
    jit_compile: bool,
) -> tuple[Callable, list[str]]:
    """The compiled probe, and the list of probed layer names it fills in when traced."""
    model_ref = weakref.ref(model)
    layer_refs = [weakref.ref(layer) for layer in layers]
    layer_names: list[str] = []

    def probe(x: tf.Tensor, y: tf.Tensor | None = None):
        model = model_ref()
        with tf.GradientTape() as tape:
            recorder = _Recorder(tape=tape, state=state)
            with _perturbed_calls([ref() for ref in layer_refs], recorder):
                y_pred = model(x, training=False)
            if isinstance(y_pred, (list, tuple)):
                raise ValueError(f"model {model.name!r} has several outputs; the probe needs one")
            per_example = _per_example_loss(loss, model, y, y_pred)  # (B,)
            total = tf.reduce_sum(per_example)  # example i's state only affects L_i
        layer_names[:] = recorder.layer_names  # a trace-time side effect, by design
        grads = tape.gradient(  # the one backward pass, for every layer at once
            total, recorder.perturbations, unconnected_gradients=tf.UnconnectedGradients.ZERO
        )
        # [h] / [c] / [h, c] per layer -> (B, T, width)
        grads = [tf.transpose(tf.concat(group, axis=-1), [1, 0, 2]) for group in grads]
        # Norms in float64: squares of large float32 gradients would overflow.
        norms = [tf.reduce_mean(tf.norm(tf.cast(g, tf.float64), axis=-1), axis=0) for g in grads]
        return grads, norms

    function = (lambda x: probe(x)) if no_targets else probe
    return tf.function(function, jit_compile=jit_compile, reduce_retracing=True), layer_names


_GRADIENT_NORM_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _compile_gradient_norm(model: keras.Model, loss: LossArg, no_targets: bool) -> Callable:
    model_ref = weakref.ref(model)

    def gradient_norm(x: tf.Tensor, y: tf.Tensor | None = None) -> tf.Tensor:
        model = model_ref()
        weights = model.trainable_variables
        with tf.GradientTape() as tape:
            mean_loss = tf.reduce_mean(_per_example_loss(loss, model, y, model(x, training=False)))
        grads = tape.gradient(mean_loss, weights)
        squares = [tf.reduce_sum(tf.square(tf.cast(g, tf.float64))) for g in grads if g is not None]
        return tf.sqrt(tf.add_n(squares))

    function = (lambda x: gradient_norm(x)) if no_targets else gradient_norm
    return tf.function(function, reduce_retracing=True)


@contextlib.contextmanager
def _quiet_retracing_warnings() -> Iterator[None]:
    """Hide TensorFlow's "N calls triggered retracing" warning: one compiled probe per
    model is by design, and probing many models in a notebook is normal use."""
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")
    try:
        yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _perturbed_calls(layers: list[keras.layers.RNN], recorder: _Recorder) -> Iterator[None]:
    """Swap each layer's ``call`` for the perturbed loop while the model is traced."""
    patched = []
    try:
        for layer in layers:
            # object.__setattr__ bypasses Keras's attribute tracking; the instance
            # attribute shadows the class's call, which Layer.__call__ looks up on self.
            object.__setattr__(layer, "call", _perturbed_call(layer, recorder))
            patched.append(layer)
        yield
    finally:
        for layer in patched:
            object.__delattr__(layer, "call")


def _perturbed_call(layer: keras.layers.RNN, recorder: _Recorder) -> Callable:
    kind = _cell_kind(layer)

    def call(sequences, initial_state=None, mask=None, training=False):
        if mask is not None:
            raise ValueError(
                f"layer {layer.name!r} receives a mask (Masking or Embedding(mask_zero=True)); "
                "the probe does not support masked sequences yet"
            )
        return _perturbed_loop(layer, kind, sequences, initial_state, recorder)

    return call


def _perturbed_loop(
    layer: keras.layers.RNN,
    kind: str,
    sequences: tf.Tensor,
    initial_state: Any,
    recorder: _Recorder,
) -> Any:
    """Run ``layer`` over ``sequences`` with its own weights, adding zero perturbations."""
    cell = layer.cell
    dtype = cell.compute_dtype
    units = cell.units
    x = tf.transpose(tf.cast(sequences, dtype), [1, 0, 2])  # (B, T, F) -> (T, B, F)
    batch = tf.shape(x)[1]
    steps = x.shape[0] if x.shape[0] is not None else tf.shape(x)[0]

    def weight(variable):
        return tf.cast(tf.convert_to_tensor(variable), dtype)

    kernel, recurrent = weight(cell.kernel), weight(cell.recurrent_kernel)
    bias = weight(cell.bias) if cell.use_bias else None
    recurrent_bias = None
    if kind == "gru" and bias is not None and cell.reset_after:
        bias, recurrent_bias = bias[0], bias[1]  # GRU keeps input and recurrent biases apart
    # The input projection of every step in one matmul, outside the loop.
    projected = tf.einsum("tbf,fg->tbg", x, kernel)  # (T, B, gates * units)
    if bias is not None:
        projected += bias

    n_states = 2 if kind == "lstm" else 1
    if initial_state is None:
        states = [tf.zeros((batch, units), dtype) for _ in range(n_states)]
    else:
        states = [tf.cast(s, dtype) for s in tf.nest.flatten(initial_state)]

    perturb_c = kind == "lstm" and recorder.state in ("c", "all")
    eps_h = tf.zeros((steps, batch, units), dtype)
    eps_c = tf.zeros((steps, batch, units), dtype) if perturb_c else None
    watched = {"h": [eps_h], "c": [eps_c], "all": [eps_h, eps_c]}[recorder.state]
    if not perturb_c:
        watched = [eps_h]  # no cell state: "all" is h alone
    for eps in watched:
        recorder.tape.watch(eps)
    recorder.perturbations.append(watched)
    recorder.layer_names.append(layer.name)

    act, gate_act = cell.activation, getattr(cell, "recurrent_activation", None)

    def step(carry, inputs):  # one time step: (h,) or (h, c) -> the same, perturbed
        p_t, e_h = inputs[:2]
        h_prev = carry[0]
        if kind == "simple":
            return (act(p_t + h_prev @ recurrent) + e_h,)
        if kind == "lstm":
            c_prev = carry[1]
            z = p_t + h_prev @ recurrent
            i, f, g, o = tf.split(z, 4, axis=-1)  # Keras's gate order
            c = gate_act(f) * c_prev + gate_act(i) * act(g)
            if perturb_c:
                c = c + inputs[2]  # before h is formed, so dL/dc_t includes the path through h_t
            h = gate_act(o) * act(c) + e_h
            return (h, c)
        # GRU
        x_z, x_r, x_h = tf.split(p_t, 3, axis=-1)
        if cell.reset_after:
            inner = h_prev @ recurrent
            if recurrent_bias is not None:
                inner += recurrent_bias
            r_z, r_r, r_h = tf.split(inner, 3, axis=-1)
            z, r = gate_act(x_z + r_z), gate_act(x_r + r_r)
            candidate = act(x_h + r * r_h)
        else:
            r_z, r_r = tf.split(h_prev @ recurrent[:, : 2 * units], 2, axis=-1)
            z, r = gate_act(x_z + r_z), gate_act(x_r + r_r)
            candidate = act(x_h + (r * h_prev) @ recurrent[:, 2 * units :])
        return (z * h_prev + (1 - z) * candidate + e_h,)

    elems = (projected, eps_h, eps_c) if perturb_c else (projected, eps_h)
    final_states, outputs = _time_loop(step, elems, states, steps, collect=layer.return_sequences)
    output = outputs if layer.return_sequences else final_states[0]
    if layer.return_state:
        return (output, *final_states)
    return output


def _time_loop(
    step: Callable, elems: tuple[tf.Tensor, ...], states: list[tf.Tensor], steps: Any, collect: bool
) -> tuple[list[tf.Tensor], tf.Tensor | None]:
    """Run ``step`` over the time-major ``elems``; return the final states and, if
    ``collect``, the first state at every step as ``(B, T, units)``.

    A ``tf.while_loop`` over TensorArrays, like Keras's own RNN loop. The sequence is
    only written out when a later layer needs it: under XLA on a CPU every write into
    the (T, B, units) buffer copies the whole buffer.
    """
    readers = [tf.TensorArray(e.dtype, size=steps).unstack(e) for e in elems]
    loop_vars = [tf.constant(0), tuple(states)]
    if collect:
        loop_vars.append(tf.TensorArray(states[0].dtype, size=steps))

    def body(t, carry, *written):
        carry = step(carry, [reader.read(t) for reader in readers])
        written = [w.write(t, carry[0]) for w in written]
        return (t + 1, carry, *written)

    _, final, *written = tf.while_loop(
        lambda t, *_: t < steps,
        body,
        tuple(loop_vars),
        maximum_iterations=steps,
        parallel_iterations=32,
    )
    outputs = tf.transpose(written[0].stack(), [1, 0, 2]) if collect else None  # (B, T, units)
    return list(final), outputs


def _supported_recurrent_layers(model: keras.Model, state: str) -> list[keras.layers.RNN]:
    """The model's recurrent layers, or a ValueError naming the first the probe can't handle."""
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.Bidirectional):
            raise ValueError(
                f"layer {layer.name!r} is Bidirectional; the probe does not support "
                "Bidirectional layers yet"
            )
        if isinstance(layer, keras.layers.Masking) or getattr(layer, "mask_zero", False):
            raise ValueError(
                f"layer {layer.name!r} ({type(layer).__name__}) masks its output; "
                "the probe does not support masked sequences yet"
            )
    layers = recurrent_layers(model)
    if not layers:
        raise ValueError(f"model {model.name!r} has no SimpleRNN, LSTM or GRU layer to probe")
    for layer in layers:
        name = f"layer {layer.name!r} ({type(layer).__name__})"
        if layer.go_backwards:
            raise ValueError(f"{name} has go_backwards=True; the probe does not support it yet")
        if layer.stateful:
            raise ValueError(f"{name} is stateful; the probe does not support stateful layers")
        try:
            kind = _cell_kind(layer)
        except TypeError:
            raise ValueError(
                f"{name} runs a {type(layer.cell).__name__}; the probe supports "
                "SimpleRNN, LSTM and GRU cells"
            ) from None
        if state == "c" and kind != "lstm":
            raise ValueError(f"state='c' needs an LSTM cell state, but {name} has none")
    return layers


def _input_spec(model: keras.Model) -> keras.KerasTensor | None:
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):  # a Sequential that was never built
        return None
    if not inputs:
        return None
    if len(inputs) != 1:
        raise ValueError(f"model {model.name!r} has {len(inputs)} inputs; the probe needs one")
    return inputs[0]


def _check_inputs(model: keras.Model, x: Any) -> tf.Tensor:
    array = check_array("x", x)
    spec = _input_spec(model)
    if array.ndim == 0 or array.shape[0] == 0:
        raise ValueError(f"x must be a batch with at least one example, got shape {array.shape}")
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        raise ValueError("x must hold finite numbers; it contains inf or NaN")
    if spec is None:
        dtype = "int32" if np.issubdtype(array.dtype, np.integer) else "float32"
        return tf.convert_to_tensor(array, dtype=dtype)
    expected = tuple(spec.shape)
    described = "(" + ", ".join("B" if i == 0 else str(d) for i, d in enumerate(expected)) + ")"
    if array.ndim != len(expected):
        raise ValueError(
            f"x must have rank {len(expected)}, shape {described} for model {model.name!r}, "
            f"got shape {array.shape}"
        )
    for size, want in zip(array.shape[1:], expected[1:]):
        if want is not None and size != want:
            raise ValueError(
                f"x must have shape {described} for model {model.name!r}, got {array.shape}"
            )
    return tf.convert_to_tensor(array, dtype=spec.dtype)


def _check_targets(model: keras.Model, x: tf.Tensor, y: Any, loss: LossArg) -> tf.Tensor:
    array = check_array("y", y)
    if array.ndim == 0 or array.shape[0] != x.shape[0]:
        raise ValueError(
            f"y must have the same batch size as x ({x.shape[0]}), got shape {array.shape}"
        )
    try:
        out_shape = tuple(model.compute_output_shape(tuple(x.shape)))
    except Exception:  # subclassed models may not know their output shape; the run will tell
        out_shape = None
    if callable(loss) and not isinstance(loss, str):
        return tf.convert_to_tensor(array)
    if loss == "sparse_categorical_crossentropy":
        if not np.issubdtype(array.dtype, np.integer):
            raise TypeError(f"y must hold integer class ids for {loss}, got dtype {array.dtype}")
        if out_shape is not None:
            want = out_shape[:-1]
            if array.shape not in (want, (*want, 1)):
                raise ValueError(
                    f"y must have shape {want} (class ids) for output shape {out_shape}, "
                    f"got {array.shape}"
                )
            if array.size and (array.min() < 0 or array.max() >= out_shape[-1]):
                raise ValueError(f"y must hold class ids in [0, {out_shape[-1]}), got out of range")
            array = array.reshape(want)
        return tf.convert_to_tensor(array, dtype="int32")
    if out_shape is not None and array.shape != out_shape:
        if array.size == int(np.prod(out_shape)) and array.ndim == len(out_shape) - 1:
            array = array.reshape(out_shape)  # (B,) targets for a (B, 1) output
        else:
            raise ValueError(f"y must have the model's output shape {out_shape}, got {array.shape}")
    return tf.convert_to_tensor(array, dtype=model.outputs[0].dtype if model.outputs else None)


def _output_layer(model: keras.Model) -> keras.layers.Layer:
    layer = model
    while isinstance(layer, keras.Model) and layer.layers:
        layer = layer.layers[-1]
    return layer


def _outputs_probabilities(model: keras.Model, squash: str) -> bool:
    """Whether the model's last layer ends in ``squash`` ("softmax" or "sigmoid")."""
    layer = _output_layer(model)
    if squash == "softmax" and isinstance(layer, keras.layers.Softmax):
        return True
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", None) == squash


def _per_example_loss(
    loss: LossArg, model: keras.Model, y: tf.Tensor | None, y_pred: tf.Tensor
) -> tf.Tensor:
    """Example i's own loss L_i, shape (B,); sequence outputs are averaged over time."""
    if y is None:
        per_example = 0.5 * tf.reduce_sum(tf.square(y_pred), axis=-1)
    elif callable(loss) and not isinstance(loss, str):
        per_example = tf.convert_to_tensor(loss(y, y_pred))
    elif loss == "mse":
        per_example = tf.reduce_mean(tf.square(tf.cast(y, y_pred.dtype) - y_pred), axis=-1)
    elif loss == "binary_crossentropy":
        from_logits = not _outputs_probabilities(model, "sigmoid")
        per_example = keras.losses.binary_crossentropy(y, y_pred, from_logits=from_logits)
    else:
        from_logits = not _outputs_probabilities(model, "softmax")
        function = getattr(keras.losses, loss)
        per_example = function(y, y_pred, from_logits=from_logits)
    if per_example.shape.rank == 0:
        raise ValueError("loss must return one value per example, shape (B,), got a scalar")
    if per_example.shape.rank > 1:  # (B, T): the mean over time
        per_example = tf.reduce_mean(per_example, axis=list(range(1, per_example.shape.rank)))
    return per_example


def _warn_if_overflowing(norm_rows: list[np.ndarray], dtype: Any) -> None:
    """Warn when gradients of this dtype overflowed or came near its largest value."""
    largest = float(np.finfo(dtype).max)
    limit = _NEAR_OVERFLOW * largest
    values = np.concatenate([np.ravel(row) for row in norm_rows])
    non_finite = int(np.count_nonzero(~np.isfinite(values)))
    huge = int(np.count_nonzero(np.isfinite(values) & (values > limit)))
    if non_finite or huge:
        warnings.warn(
            f"{non_finite} of {values.size} gradient norms are inf or NaN and {huge} exceed "
            f"{limit:.1e}: the gradients explode past {np.dtype(dtype).name}'s range "
            f"(max {largest:.1e}).",
            RuntimeWarning,
            stacklevel=3,
        )
