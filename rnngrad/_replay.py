"""Recurrent layers replayed with a zero perturbation on every state (used by the probe).

While the probe traces a model, each recurrent layer's ``call`` is swapped for
:func:`perturbed_call`: a loop over time that computes exactly what the layer computes
and adds a zero tensor ``eps_t`` to the state after every step,

    h_t = step(x_t, h_{t-1}) + eps_t,      eps_t = 0,

so that ``dL/d eps_t`` is the total derivative dL/dh_t. Two ways to run a step:

- the stock cells (exactly ``SimpleRNNCell``, ``LSTMCell`` and ``GRUCell`` with
  ``implementation=2``) are replayed from their weights, with the input projection of
  every step done in one matrix product before the loop and the operations of each step
  in Keras's own order, so the replay reproduces Keras's forward pass bit for bit
  outside XLA; the LSTM's cell state can then be perturbed before ``h_t`` is formed,
  and the gate openings are summed along the way;
- any other cell (a subclass, a custom cell) is run by calling the cell itself, as
  Keras's own loop does; its output must be its first state, which is perturbed.

Masks carry the state over masked steps, as Keras does; ``go_backwards`` layers run over
the reversed sequence and return their outputs in processing order, as Keras does.

A recorder in ``transport`` mode also runs a *transport lane* in every layer's loop, for
``diagnose``: a second copy of the state, perturbed by its own zero tensor, whose every
step is the layer's step evaluated at the main lane's state,

    g_t = step(sg(x_t), sg(h_{t-1}) + (g_{t-1} - sg(g_{t-1})); sg(W)) + eps'_t,

(``sg`` is ``stop_gradient``). Its values equal the main lane's, so XLA merges the two
forward computations, but its gradient flows only through the step Jacobians
``dh_t/dh_{t-1}`` of the main trajectory, with the inputs and the weights held fixed: the
gradient of ``u . g_T`` with respect to ``eps'_t`` is ``u^T J_T ... J_{t+1}``, the
layer's own transport, untouched by the loss and by the other layers, in the same
backward pass as everything else.

This module is private: the probe (``rnngrad._engine``) is its only user.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NoReturn

import keras
import tensorflow as tf

__all__ = [
    "STOCK_CELLS",
    "LayerCall",
    "ProbeRefusal",
    "Recorder",
    "patched_layers",
    "refuse",
    "replay_kind",
    "take_refusal",
]

STOCK_CELLS = {
    keras.layers.SimpleRNNCell: "simple",
    keras.layers.LSTMCell: "lstm",
    keras.layers.GRUCell: "gru",
}
"""Cells whose equations the replay computes itself (exact types only)."""

GATE_NAMES = {"lstm": ("i", "f", "o"), "gru": ("z", "r")}


class ProbeRefusal(ValueError):
    """The probe cannot compute this model exactly; the message says why."""


_REFUSAL = threading.local()


def refuse(message: str) -> NoReturn:
    """Raise a :class:`ProbeRefusal`, keeping its message for the caller to report.

    Raised while a model is traced, the error reaches the caller wrapped in
    TensorFlow's and Keras's "in user code" text; :func:`take_refusal` gives the
    message back intact.
    """
    _REFUSAL.message = message
    raise ProbeRefusal(message)


def take_refusal() -> str | None:
    """The message of the last refusal raised in this thread, once."""
    message = getattr(_REFUSAL, "message", None)
    _REFUSAL.message = None
    return message


def replay_kind(layer: keras.layers.RNN) -> str:
    """``"simple"``, ``"lstm"`` or ``"gru"`` for a stock cell replayed from its weights;
    ``"custom"`` for any other cell, run through its own ``call``."""
    kind = STOCK_CELLS.get(type(layer.cell))
    if kind in ("lstm", "gru") and getattr(layer.cell, "implementation", 2) != 2:
        return "custom"  # implementation 1 orders its operations differently
    return kind or "custom"


@dataclass
class LayerCall:
    """What one replayed layer call recorded while the model was traced."""

    layer: keras.layers.RNN
    kind: str  # replay_kind(layer)
    backwards: bool  # processed the sequence from its last step to its first
    perturbations: list[tf.Tensor]  # [eps_h] or [eps_h, eps_c], (T, B, units), processing order
    final_state: tf.Tensor  # (B, units): h after the last processed step
    lane: tf.Tensor | None  # the transport lane's eps', (T, B, units), processing order
    lane_final: tf.Tensor | None  # (B, units): the transport lane's last state
    weights_held: bool  # the transport lane held this layer's weights fixed
    mask: tf.Tensor | None  # (B, T) bool in input time, True where the step counts
    gate_sums: tf.Tensor | None  # (gates,) sums of each gate over counted (b, t, unit)
    gate_count: tf.Tensor | None  # the number of (b, t, unit) entries summed
    inputs: Any  # what the layer was called with, for the forward self-check
    initial_state: Any
    mask_in: Any
    output: Any  # what the replay returned


@dataclass
class Recorder:
    """Collects the perturbations the replayed layers create while being traced."""

    tape: tf.GradientTape
    state: str  # "h", "c" or "all"
    transport: bool = False  # also run each layer's transport lane
    gates: bool = False  # sum the gate openings of stock LSTM/GRU layers
    calls: list[LayerCall] = field(default_factory=list)


@contextlib.contextmanager
def patched_layers(
    layers: list[keras.layers.RNN],
    recorder: Recorder,
    wrappers: list[keras.layers.Bidirectional] = (),
) -> Iterator[None]:
    """Swap each layer's ``call`` for :func:`perturbed_call` while the model is traced.

    The ``Bidirectional`` ``wrappers`` are kept off their fused LSTM/GRU path (used on
    GPUs), which would bypass their forward and backward layers.
    """
    patched: list[tuple[Any, str]] = []
    try:
        for layer in layers:
            # object.__setattr__ bypasses Keras's attribute tracking; the instance
            # attribute shadows the class's call, which Layer.__call__ looks up on self.
            object.__setattr__(layer, "call", perturbed_call(layer, recorder))
            patched.append((layer, "call"))
        for wrapper in wrappers:
            for name in ("_can_attempt_fused_lstm", "_can_attempt_fused_gru"):
                object.__setattr__(wrapper, name, lambda *args, **kwargs: False)
                patched.append((wrapper, name))
        yield
    finally:
        for owner, name in patched:
            object.__delattr__(owner, name)


def perturbed_call(layer: keras.layers.RNN, recorder: Recorder) -> Callable:
    """A drop-in replacement for ``layer.call`` that records its perturbations."""
    kind = replay_kind(layer)

    def call(sequences, initial_state=None, mask=None, training=False):
        return _replay(layer, kind, recorder, sequences, initial_state, mask)

    call.__signature__ = inspect.signature(type(layer).call)  # what Keras inspects
    return call


# --------------------------------------------------------------------------- the replay


def _replay(
    layer: keras.layers.RNN,
    kind: str,
    recorder: Recorder,
    sequences: Any,
    initial_state: Any,
    mask: Any,
) -> Any:
    cell = layer.cell
    dtype = cell.compute_dtype
    sequences = tf.convert_to_tensor(sequences)
    batch = tf.shape(sequences)[0]
    steps = sequences.shape[1] if sequences.shape[1] is not None else tf.shape(sequences)[1]

    given_state = initial_state
    if initial_state is None:
        initial_state = layer.get_initial_state(batch_size=batch)
    states = [tf.cast(s, dtype) for s in tf.nest.flatten(initial_state)]
    x = sequences
    step_mask = None if mask is None else _as_step_mask(mask)  # (B, T) bool

    # Time-major, in processing order.
    x = tf.transpose(x, [1, 0, *range(2, x.shape.rank)])
    tmask = None if step_mask is None else tf.transpose(step_mask)
    if layer.go_backwards:
        x = tf.reverse(x, [0])
        tmask = None if tmask is None else tf.reverse(tmask, [0])

    if kind == "custom":
        run = _CellStep(layer, recorder, x, states)
    else:
        run = _StockStep(layer, kind, recorder, x, states)
    eps_h = tf.zeros((steps, batch, run.units), dtype)
    perturb_c = run.perturbs_c
    eps_c = tf.zeros((steps, batch, run.units), dtype) if perturb_c else None
    watched = [eps_h, eps_c] if perturb_c and recorder.state == "all" else None
    watched = watched or ([eps_c] if perturb_c else [eps_h])
    lane = tf.zeros((steps, batch, run.units), dtype) if recorder.transport else None
    for eps in watched if lane is None else [*watched, lane]:
        recorder.tape.watch(eps)

    loop = _TimeLoop(
        run,
        eps_h,
        eps_c,
        lane,
        tmask,
        steps,
        collect=layer.return_sequences,
        zero_output=getattr(layer, "zero_output_for_mask", False),
        gates=recorder.gates and run.gate_count > 0,
    )
    final_states, outputs, last_output, gate_sums, gate_count, lane_final = loop.run(states)

    output = outputs if layer.return_sequences else last_output
    output = tf.cast(output, layer.compute_dtype)
    final_states = [tf.cast(s, layer.compute_dtype) for s in final_states]
    recorder.calls.append(
        LayerCall(
            layer=layer,
            kind=kind,
            backwards=bool(layer.go_backwards),
            perturbations=watched,
            final_state=final_states[0],
            lane=lane,
            lane_final=lane_final,
            weights_held=kind != "custom",
            mask=step_mask,
            gate_sums=gate_sums,
            gate_count=gate_count,
            inputs=sequences,
            initial_state=given_state,
            mask_in=mask,
            output=output,
        )
    )
    if layer.return_state:
        return (output, *final_states)
    return output


def _as_step_mask(mask: Any) -> tf.Tensor:
    mask = tf.convert_to_tensor(tf.nest.flatten(mask)[0])
    if mask.dtype != tf.bool:
        mask = tf.cast(mask, tf.bool)
    if mask.shape.rank == 3:  # (B, T, 1), as Keras also accepts
        mask = mask[..., 0]
    return mask


class _StockStep:
    """One step of a stock cell, from its weights, in Keras's order of operations."""

    perturbs_c = False

    def __init__(self, layer, kind, recorder, x, states):
        cell = layer.cell
        self.kind, self.cell = kind, cell
        self.units = cell.units
        dtype = cell.compute_dtype

        def weight(variable):
            return tf.cast(tf.convert_to_tensor(variable), dtype)

        self.kernel, self.recurrent = weight(cell.kernel), weight(cell.recurrent_kernel)
        bias = weight(cell.bias) if cell.use_bias else None
        self.bias = self.recurrent_bias = None
        # The input projection stays inside the loop, one (B, F) x (F, G) product per step
        # as in Keras's cells: the same kernels round the same way, so the replay
        # reproduces Keras's forward pass exactly, even where chaos amplifies rounding.
        self.x = tf.cast(x, dtype)  # (T, B, F)
        self.input_bias = None
        if kind in ("simple", "gru") and bias is not None:
            if kind == "gru" and cell.reset_after:
                bias, self.recurrent_bias = bias[0], bias[1]
            self.input_bias = bias  # Keras adds it to x K, before the recurrence
        elif kind == "lstm":
            self.bias = bias  # Keras's LSTM adds it after x K + h U
        self.perturbs_c = kind == "lstm" and recorder.state in ("c", "all")
        self.act = cell.activation
        self.gate_act = getattr(cell, "recurrent_activation", None)
        self.gate_count = len(GATE_NAMES.get(kind, ()))

    def elems(self):
        return (self.x,)

    def held(self) -> _StockStep:
        """The same step with its weights held fixed (``stop_gradient``)."""
        held = copy.copy(self)
        for name in ("kernel", "recurrent", "bias", "recurrent_bias", "input_bias"):
            value = getattr(self, name)
            if value is not None:
                setattr(held, name, tf.stop_gradient(value))
        return held

    def __call__(self, inputs, carry, eps_c):
        """(x_t,), (h, [c]) -> (h_new, [c_new]) without eps_h, and the gates."""
        (x_t,) = inputs
        drive = x_t @ self.kernel
        if self.input_bias is not None:
            drive = drive + self.input_bias
        h_prev = carry[0]
        if self.kind == "simple":
            return [self.act(drive + h_prev @ self.recurrent)], []
        if self.kind == "lstm":
            z = drive + h_prev @ self.recurrent
            if self.bias is not None:
                z = z + self.bias
            zi, zf, zc, zo = tf.split(z, 4, axis=-1)  # Keras's gate order
            i, f, o = self.gate_act(zi), self.gate_act(zf), self.gate_act(zo)
            c = f * carry[1] + i * self.act(zc)
            if eps_c is not None:
                c = c + eps_c  # before h is formed: dL/dc_t includes the path through h_t
            return [o * self.act(c), c], [i, f, o]
        x_z, x_r, x_h = tf.split(drive, 3, axis=-1)
        units = self.units
        if self.cell.reset_after:
            inner = h_prev @ self.recurrent
            if self.recurrent_bias is not None:
                inner = inner + self.recurrent_bias
            r_z, r_r, r_h = inner[:, :units], inner[:, units : 2 * units], inner[:, 2 * units :]
            z, r = self.gate_act(x_z + r_z), self.gate_act(x_r + r_r)
            candidate = self.act(x_h + r * r_h)
        else:
            inner = h_prev @ self.recurrent[:, : 2 * units]
            r_z, r_r = inner[:, :units], inner[:, units:]
            z, r = self.gate_act(x_z + r_z), self.gate_act(x_r + r_r)
            candidate = self.act(x_h + (r * h_prev) @ self.recurrent[:, 2 * units :])
        return [z * h_prev + (1 - z) * candidate], [z, r]


class _CellStep:
    """One step of any cell, by calling the cell itself, as Keras's own loop does."""

    perturbs_c = False
    gate_count = 0

    def __init__(self, layer, recorder, x, states):
        self.layer, self.cell = layer, layer.cell
        name = f"layer {layer.name!r} ({type(layer.cell).__name__})"
        if recorder.state != "h":
            refuse(
                f"state={recorder.state!r} needs a stock LSTM cell, whose cell state the probe "
                f"can perturb before h_t is formed; {name} runs its own cell equations"
            )
        sizes = tf.nest.flatten(self.cell.state_size)
        if not all(isinstance(s, int) for s in sizes):
            refuse(f"{name} has states that are not vectors; the probe cannot probe it")
        self.units = int(sizes[0])
        self.kwargs = {"training": False} if _accepts_training(self.cell) else {}
        self.x = x
        self.name = name

    def elems(self):
        return (self.x,)

    def held(self) -> _CellStep:
        """The cell reads its own weights: they cannot be held fixed from outside."""
        return self

    def __call__(self, inputs, carry, eps_c):
        (x_t,) = inputs
        output, new_states = self.cell(x_t, tuple(carry), **self.kwargs)  # as Keras's loop
        new_states = tf.nest.flatten(new_states)
        if output is not new_states[0]:
            refuse(
                f"{self.name}: the cell's output is not its first state, so the probe cannot "
                "tell which tensor is h_t; it supports cells that return (h, [h, ...])"
            )
        return list(new_states), []


def _accepts_training(cell: Any) -> bool:
    try:
        return "training" in inspect.signature(cell.call).parameters
    except (TypeError, ValueError):
        return False


class _TimeLoop:
    """The loop over time, like Keras's own: masks carry states, outputs are collected
    only when a later layer needs the whole sequence; the transport lane, if any, runs
    beside the main lane."""

    def __init__(self, step, eps_h, eps_c, lane, tmask, steps, *, collect, zero_output, gates):
        self.step, self.eps_h, self.eps_c, self.lane, self.tmask = step, eps_h, eps_c, lane, tmask
        self.steps, self.collect, self.zero_output, self.gates = steps, collect, zero_output, gates

    def run(self, states):
        step, steps = self.step, self.steps
        held = step.held() if self.lane is not None else None
        named = {"in": list(step.elems()), "eps_h": [self.eps_h]}
        if self.eps_c is not None:
            named["eps_c"] = [self.eps_c]
        if self.lane is not None:
            named["lane"] = [self.lane]
        if self.tmask is not None:
            named["mask"] = [self.tmask]
        readers = {
            key: [tf.TensorArray(e.dtype, size=steps).unstack(e) for e in values]
            for key, values in named.items()
        }
        h0 = states[0]
        loop_vars: dict[str, Any] = {"t": tf.constant(0), "carry": tuple(states)}
        if self.lane is not None:  # the lane starts where the main lane starts, held fixed
            loop_vars["lane"] = tuple(tf.stop_gradient(s) for s in states)
        if self.tmask is not None:
            loop_vars["prev_out"] = tf.zeros_like(h0)  # Keras starts from a zero output
        if self.collect:  # element_shape lets XLA write in place
            loop_vars["out"] = tf.TensorArray(h0.dtype, size=steps, element_shape=h0.shape)
        if self.gates:
            loop_vars["gate_sums"] = tf.zeros((step.gate_count,), tf.float64)
            loop_vars["count"] = tf.zeros((), tf.float64)

        def body(v):
            t = v["t"]
            read = {key: [r.read(t) for r in values] for key, values in readers.items()}
            eps_c = read["eps_c"][0] if "eps_c" in read else None
            new, gates = step(read["in"], v["carry"], eps_c)
            m = tf.expand_dims(read["mask"][0], -1) if "mask" in read else None  # (B, 1)
            if m is not None:  # a masked step carries every state
                new = [tf.where(m, n, c) for n, c in zip(new, v["carry"])]
            h = new[0] + read["eps_h"][0]
            out = h
            updated = dict(v, t=t + 1, carry=(h, *new[1:]))
            if "lane" in v:
                updated["lane"] = self._lane_step(held, read, v, m)
            if m is not None:
                previous = tf.zeros_like(h) if self.zero_output else v["prev_out"]
                out = tf.where(m, h, previous)
                updated["prev_out"] = out
            if "out" in v:
                updated["out"] = v["out"].write(t, out)
            if "gate_sums" in v:
                weight = None if m is None else tf.cast(m, tf.float64)
                sums = [
                    tf.reduce_sum(tf.cast(g, tf.float64) * (1.0 if weight is None else weight))
                    for g in gates
                ]
                rows = tf.cast(tf.shape(h)[0], tf.float64) if m is None else tf.reduce_sum(weight)
                updated["gate_sums"] = v["gate_sums"] + tf.stack(sums)
                updated["count"] = v["count"] + rows * tf.cast(tf.shape(h)[-1], tf.float64)
            return (updated,)

        (final,) = tf.while_loop(
            lambda v: v["t"] < steps,
            body,
            (loop_vars,),
            maximum_iterations=steps,
            parallel_iterations=32,
        )
        carry = list(final["carry"])
        last_out = final.get("prev_out", carry[0])
        outputs = None
        if "out" in final:
            outputs = tf.transpose(final["out"].stack(), [1, 0, 2])  # (B, T, units)
        lane_final = final["lane"][0] if "lane" in final else None
        return carry, outputs, last_out, final.get("gate_sums"), final.get("count"), lane_final

    @staticmethod
    def _lane_step(held, read, v, m):
        """One step of the transport lane: the step at the main lane's state, with the
        derivative taken through the lane's own state only."""
        at = [
            tf.stop_gradient(main) + (lane - tf.stop_gradient(lane))
            for main, lane in zip(v["carry"], v["lane"])
        ]
        inputs = [tf.stop_gradient(e) for e in read["in"]]
        new, _ = held(inputs, at, None)
        if m is not None:
            new = [tf.where(m, n, c) for n, c in zip(new, v["lane"])]
        return (new[0] + read["lane"][0], *new[1:])
