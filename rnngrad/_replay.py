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

Each layer's loop has its own backward loop (:class:`_TimeLoop`), which also gives, for
``diagnose``, the layer's *transport*: the gradient of ``u . h_T`` with respect to every
``eps_t`` of the same call, ``u^T J_T ... J_{t+1}``, the product of the step Jacobians
``dh_t/dh_{t-1}`` of that layer's own recurrence along the trajectory just computed
(nothing else lies between ``eps_t`` and ``h_T``), untouched by the loss and by the other
layers: one more backward loop over the layer, seeded at its last state, that computes
neither the inputs' nor the weights' gradients, with no second forward pass.

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
    transport: Callable[[], tf.Tensor]  # ||d(u . h_T)/d eps_t|| (T, B) float64, after the gradient
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
    weight_gradients: bool = False  # the layers' weights will be differentiated too
    gates: bool = False  # sum the gate openings of stock LSTM/GRU layers
    # (B, W) directions u: each layer also measures its transport, seeded with the first
    # `units` columns of u, normalized, at its last state (see _TimeLoop.transport)
    directions: tf.Tensor | None = None
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
    for eps in watched:
        recorder.tape.watch(eps)

    loop = _TimeLoop(
        run,
        eps_h,
        eps_c,
        tmask,
        steps,
        collect=layer.return_sequences,
        zero_output=getattr(layer, "zero_output_for_mask", False),
        gates=recorder.gates and run.gate_count > 0,
        weights=recorder.weight_gradients,
        transport_seed=_unit_directions(recorder.directions, run.units, layer.compute_dtype),
    )
    final_states, outputs, last_output, gate_sums, gate_count = loop.run(states)

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
            transport=loop.transport,
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


def _unit_directions(directions: Any, units: int, dtype: Any) -> tf.Tensor | None:
    """Each example's unit vector u_i for a layer of ``units`` (B, units): the first
    ``units`` columns of ``directions``, normalized (in float64 for a float64 layer, in
    float32 otherwise); None without directions."""
    if directions is None:
        return None
    dtype = tf.float64 if tf.as_dtype(dtype) == tf.float64 else tf.float32
    u = tf.cast(directions[:, :units], dtype)
    return u / tf.norm(u, axis=-1, keepdims=True)


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
    _WEIGHTS = ("kernel", "recurrent", "bias", "recurrent_bias", "input_bias")

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

    def weight_tensors(self) -> list[tf.Tensor]:
        """The weights the step reads, as tensors (their gradients are the layer's)."""
        return [getattr(self, name) for name in self._WEIGHTS if getattr(self, name) is not None]

    def with_weights(self, tensors: list[tf.Tensor]) -> _StockStep:
        """The same step reading ``tensors`` (in :meth:`weight_tensors`'s order)."""
        step, values = copy.copy(self), iter(tensors)
        for name in self._WEIGHTS:
            if getattr(self, name) is not None:
                setattr(step, name, next(values))
        return step

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
            # split, not sliced as in Keras's cell (the same values): under XLA the
            # gradient of three slices of a batch of dynamic size cost more than the rest
            # of the GRU's step (measured: a probe 2.7 times slower)
            r_z, r_r, r_h = tf.split(inner, 3, axis=-1)
            z, r = self.gate_act(x_z + r_z), self.gate_act(x_r + r_r)
            candidate = self.act(x_h + r * r_h)
        else:
            gates_kernel, candidate_kernel = tf.split(self.recurrent, [2 * units, units], axis=1)
            r_z, r_r = tf.split(h_prev @ gates_kernel, 2, axis=-1)
            z, r = self.gate_act(x_z + r_z), self.gate_act(x_r + r_r)
            candidate = self.act(x_h + (r * h_prev) @ candidate_kernel)
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

    def weight_tensors(self) -> list[tf.Tensor]:
        """None: the cell reads its own variables (``tf.custom_gradient`` finds them)."""
        return []

    def with_weights(self, tensors: list[tf.Tensor]) -> _CellStep:
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
    only when a later layer needs the whole sequence.

    Its gradient is its own backward loop over time (``tf.custom_gradient``), which
    recomputes each step from the states saved on the way forward and takes that step's
    vector-Jacobian product: under XLA, TensorFlow's own gradient of a loop that collects
    its outputs copies the whole collected sequence at every step (its cost grows with
    the square of the length: measured 19 ms at T = 100 and 1.6 s at T = 800 for a
    64-unit tanh loop), while this backward loop only reads and writes one step at a
    time. The step is the same function forwards and backwards (:meth:`_transition`),
    so the gradients are those of exactly the computation that ran.
    """

    def __init__(
        self,
        step,
        eps_h,
        eps_c,
        tmask,
        steps,
        *,
        collect,
        zero_output,
        gates,
        weights,
        transport_seed=None,
    ):
        self.step, self.eps_h, self.eps_c, self.tmask = step, eps_h, eps_c, tmask
        self.steps, self.collect, self.zero_output, self.gates = steps, collect, zero_output, gates
        # weights: also return the gradients of the layer's weights (only the probe's
        # transport mode asks for them; otherwise they are not computed, and the layer's
        # weights must not be differentiated through this loop)
        self.weights = weights
        # transport_seed: u (B, units), or None: the backward loop also carries u from
        # the last state back, with the same recomputed steps (see transport())
        self.transport_seed = transport_seed
        self._transported = None  # the transport, once the backward loop has run

    def _transition(self, step, read, carry, prev_out):
        """One step: (inputs, eps, mask; states, previous output) -> (states, previous
        output, output, gates), exactly as the layer computes it."""
        eps_c = read.get("eps_c")
        new, gates = step(read["in"], carry, eps_c)
        m = tf.expand_dims(read["mask"], -1) if "mask" in read else None  # (B, 1)
        if m is not None:  # a masked step carries every state
            new = [tf.where(m, n, c) for n, c in zip(new, carry)]
            if eps_c is not None:  # as eps_h: perturb the carried c too, so dL/d eps_c
                new[1] = tf.where(m, new[1], new[1] + eps_c)  # is dL/dc there as well
        h = new[0] + read["eps_h"]
        out = h
        if m is not None:
            previous = tf.zeros_like(h) if self.zero_output else prev_out
            out = tf.where(m, h, previous)
            prev_out = out
        return (h, *new[1:]), prev_out, out, gates, m

    def run(self, states):
        """(final states, outputs (B, T, units) or None, last output, gate sums, count)."""
        step = self.step
        elems = list(step.elems())
        weights = step.weight_tensors() if self.weights else []
        differentiable = [*elems, *states, self.eps_h]
        if self.eps_c is not None:
            differentiable.append(self.eps_c)
        differentiable += weights
        n_in, n_states = len(elems), len(states)
        masked = self.tmask is not None

        @tf.custom_gradient
        def loop(*args):
            args = list(args)
            x_in, init = args[:n_in], args[n_in : n_in + n_states]
            rest = args[n_in + n_states :]
            eps_h = rest.pop(0)
            eps_c = rest.pop(0) if self.eps_c is not None else None
            run_step = step.with_weights(rest) if weights else step
            named = {"in": x_in, "eps_h": [eps_h]}
            if eps_c is not None:
                named["eps_c"] = [eps_c]
            if masked:
                named["mask"] = [self.tmask]
            readers = {
                key: [_reader(e, self.steps) for e in values] for key, values in named.items()
            }
            result, saved = self._forward(run_step, readers, init)
            self._ran = (run_step, readers, saved, init)  # for transport()

            def grad(*cotangents, variables=None):
                found = self._backward(
                    run_step,
                    readers,
                    saved,
                    init,
                    cotangents,
                    variables,
                    inputs=True,
                    transport_seed=self.transport_seed,
                )
                self._transported = found.get("transport")
                d_args = [*found["in"], *found["states"], found["eps_h"]]
                if "eps_c" in found:
                    d_args.append(found["eps_c"])
                d_args += found["weights"][: len(weights)]
                if variables:
                    d_vars = found["weights"][len(weights) :]
                    return d_args, d_vars if self.weights else [None] * len(variables)
                return d_args

            return result, grad

        flat = loop(*differentiable)
        carry = list(flat[:n_states])
        last_out, outputs = flat[n_states], None
        index = n_states + 1
        if self.collect:
            outputs = tf.transpose(flat[index], [1, 0, 2])  # (B, T, units)
            index += 1
        gate_sums = count = None
        if self.gates:
            gate_sums, count = flat[index], flat[index + 1]
        return carry, outputs, last_out, gate_sums, count

    def _forward(self, step, readers, init):
        steps, masked = self.steps, self.tmask is not None
        h0 = init[0]
        loop_vars: dict[str, Any] = {"t": tf.constant(0), "carry": tuple(init)}
        # the states before every step, for the backward loop's recomputation
        loop_vars["saved"] = tuple(_writer(s, steps) for s in init)
        if masked:
            loop_vars["prev_out"] = tf.zeros_like(h0)  # Keras starts from a zero output
            loop_vars["saved_prev"] = _writer(h0, steps)
        if self.collect:
            loop_vars["out"] = _writer(h0, steps)
        if self.gates:
            # per gate, example and unit, summed over steps: one fused cast-and-add per
            # step; the sum over examples and units is taken once, after the loop
            shape = tf.concat([[step.gate_count], tf.shape(h0)], 0)
            loop_vars["gate_sums"] = tf.zeros(shape, tf.float64)
            loop_vars["count"] = tf.zeros((), tf.float64)

        def body(v):
            t = v["t"]
            read = {key: [r.read(t) for r in values] for key, values in readers.items()}
            read = {key: (value if key == "in" else value[0]) for key, value in read.items()}
            updated = dict(v, t=t + 1)
            updated["saved"] = tuple(s.write(t, c) for s, c in zip(v["saved"], v["carry"]))
            if masked:
                updated["saved_prev"] = v["saved_prev"].write(t, v["prev_out"])
            carry, prev_out, out, gates, m = self._transition(
                step, read, v["carry"], v.get("prev_out")
            )
            updated["carry"] = carry
            if masked:
                updated["prev_out"] = prev_out
            if self.collect:
                updated["out"] = v["out"].write(t, out)
            if self.gates:
                weight = None if m is None else tf.cast(m, tf.float64)  # (B, 1)
                opened = tf.cast(tf.stack(gates), tf.float64)  # (gates, B, units)
                if weight is not None:
                    opened = opened * weight
                h = carry[0]
                rows = tf.cast(tf.shape(h)[0], tf.float64) if m is None else tf.reduce_sum(weight)
                updated["gate_sums"] = v["gate_sums"] + opened
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
        result = [*carry, final["prev_out"] if masked else carry[0]]
        if self.collect:
            result.append(final["out"].stack())  # (T, B, units)
        if self.gates:
            result += [tf.reduce_sum(final["gate_sums"], axis=[1, 2]), final["count"]]
        saved = {"states": list(final["saved"])}
        if masked:
            saved["prev_out"] = final["saved_prev"]
        return result, saved

    def transport(self) -> tf.Tensor:
        """``||d (u . h_T) / d eps_t||`` for every step t and example (T, B), in float64,
        ``u`` the loop's ``transport_seed``: the norms of the Jacobian products of the
        layer's own steps applied to u at its last state, independent of the loss.

        The gradient's backward loop computes it alongside the loss's gradient, from the
        same recomputed steps (one more vector-Jacobian product per step), when the loss
        depends on the layer; otherwise a backward loop of its own, seeded at the last
        state, computes it (computing neither the inputs' nor the weights' gradients).
        """
        if self.transport_seed is None:
            raise ValueError("this loop was built without a transport seed")
        if self._transported is not None:
            return self._transported
        step, readers, saved, init = self._ran
        seed = [tf.cast(self.transport_seed, init[0].dtype)] + [None] * len(init)
        found = self._backward(step, readers, saved, init, seed, None, inputs=False, weights=False)
        return tf.norm(tf.cast(found["eps_h"], tf.float64), axis=-1)

    def _backward(
        self,
        step,
        readers,
        saved,
        init,
        cotangents,
        variables,
        *,
        inputs,
        weights=None,
        transport_seed=None,
    ):
        """The gradients of the loop's inputs from the cotangents of its outputs, by a
        loop over time from the last step to the first: always of the states and the
        eps's; of the layer's inputs if ``inputs``; of its weights (and ``variables``) if
        ``weights`` (by default when the loop was built to). A dict of them by name.

        With ``transport_seed`` u (B, units), the same loop also carries a second set of
        state cotangents, u at the last h and zero elsewhere, through the same recomputed
        steps (a second vector-Jacobian product of each step, from the states only):
        ``found["transport"]`` is then the norm of ``d (u . h_T) / d eps_t`` (T, B), in
        float64 (only the norms are kept: a smaller buffer to write at every step).
        """
        steps, masked = self.steps, self.tmask is not None
        weights = self.weights if weights is None else weights
        variables = list(variables or []) if weights else []
        weight_tensors = step.weight_tensors() if weights else []
        n_states = len(init)
        cotangents = list(cotangents)
        d_carry = [_or_zeros(d, s) for d, s in zip(cotangents[:n_states], init)]
        d_last = cotangents[n_states]
        d_prev = None
        if masked:
            d_prev = _or_zeros(d_last, init[0])
        elif d_last is not None:
            d_carry[0] = d_carry[0] + d_last
        d_outputs = None
        if self.collect and len(cotangents) > n_states + 1 and cotangents[n_states + 1] is not None:
            d_outputs = _reader(cotangents[n_states + 1], steps)
        n_in = len(readers["in"]) if inputs else 0
        loop_vars: dict[str, Any] = {"i": tf.constant(0), "d_carry": tuple(d_carry)}
        if masked:
            loop_vars["d_prev"] = d_prev
        loop_vars["d_in"] = tuple(_writer_like(r, steps) for r in readers["in"][:n_in])
        loop_vars["d_eps_h"] = _writer(init[0], steps)
        if "eps_c" in readers:
            loop_vars["d_eps_c"] = _writer(init[-1], steps)
        wanted = [*weight_tensors, *variables]
        loop_vars["d_weights"] = tuple(tf.zeros(w.shape, w.dtype) for w in wanted)
        transporting = transport_seed is not None
        if transporting:
            seed = tf.cast(transport_seed, init[0].dtype)
            loop_vars["t_carry"] = (seed, *[tf.zeros_like(s) for s in init[1:]])
            if masked:
                loop_vars["t_prev"] = tf.zeros_like(init[0])
            loop_vars["t_norms"] = tf.TensorArray(
                tf.float64, size=steps, element_shape=init[0].shape[:1]
            )

        def body(v):
            t = steps - 1 - v["i"]
            read = {key: [r.read(t) for r in values] for key, values in readers.items()}
            read = {key: (value if key == "in" else value[0]) for key, value in read.items()}
            carry_before = [s.read(t) for s in saved["states"]]
            prev_before = saved["prev_out"].read(t) if masked else None
            sources = [*carry_before, *read["in"][:n_in], read["eps_h"]]
            if "eps_c" in read:
                sources.append(read["eps_c"])
            if masked:
                sources.append(prev_before)
            # the weights as tensors of this loop body, so the tape sees them used
            held = [tf.identity(w) for w in weight_tensors]
            local = step.with_weights(held) if held else step
            with tf.GradientTape(
                persistent=transporting, watch_accessed_variables=bool(variables)
            ) as tape:
                tape.watch(sources + held)
                carry, prev_out, out, _, _ = self._transition(
                    local, read, carry_before, prev_before
                )
            targets, outgoing = list(carry), list(v["d_carry"])
            if masked:
                targets.append(prev_out)
                outgoing.append(v["d_prev"])
            if d_outputs is not None:
                targets.append(out)
                outgoing.append(d_outputs.read(t))
            grads = tape.gradient(
                targets,
                [*sources, *held, *variables],
                output_gradients=outgoing,
                unconnected_gradients=tf.UnconnectedGradients.ZERO,
            )
            grads = [tf.convert_to_tensor(g) for g in grads]
            k = n_states
            updated = dict(v, i=v["i"] + 1, d_carry=tuple(grads[:k]))
            updated["d_in"] = tuple(w.write(t, g) for w, g in zip(v["d_in"], grads[k : k + n_in]))
            k += n_in
            updated["d_eps_h"] = v["d_eps_h"].write(t, grads[k])
            k += 1
            if "eps_c" in read:
                updated["d_eps_c"] = v["d_eps_c"].write(t, grads[k])
                k += 1
            if masked:
                updated["d_prev"] = grads[k]
                k += 1
            updated["d_weights"] = tuple(a + g for a, g in zip(v["d_weights"], grads[k:]))
            if transporting:  # the same step's Jacobian, applied to the transport's cotangent
                t_targets, t_outgoing = list(carry), list(v["t_carry"])
                t_sources = [*carry_before, read["eps_h"]]
                if masked:
                    t_targets.append(prev_out)
                    t_outgoing.append(v["t_prev"])
                    t_sources.append(prev_before)
                t_grads = tape.gradient(
                    t_targets,
                    t_sources,
                    output_gradients=t_outgoing,
                    unconnected_gradients=tf.UnconnectedGradients.ZERO,
                )
                t_grads = [tf.convert_to_tensor(g) for g in t_grads]
                updated["t_carry"] = tuple(t_grads[:n_states])
                norm = tf.norm(tf.cast(t_grads[n_states], tf.float64), axis=-1)  # (B,)
                updated["t_norms"] = v["t_norms"].write(t, norm)
                if masked:
                    updated["t_prev"] = t_grads[n_states + 1]
            return (updated,)

        (final,) = tf.while_loop(
            lambda v: v["i"] < steps,
            body,
            (loop_vars,),
            maximum_iterations=steps,
            parallel_iterations=32,
        )
        found = {
            "in": [w.stack() for w in final["d_in"]],
            "states": list(final["d_carry"]),
            "eps_h": final["d_eps_h"].stack(),
            "weights": list(final["d_weights"]),
        }
        if "eps_c" in readers:
            found["eps_c"] = final["d_eps_c"].stack()
        if transporting:
            found["transport"] = final["t_norms"].stack()
        return found


def _reader(values: tf.Tensor, steps: Any) -> tf.TensorArray:
    """A TensorArray holding ``values`` (T, ...) one step per element; ``element_shape``
    lets XLA read and write it in place."""
    return tf.TensorArray(values.dtype, size=steps, element_shape=values.shape[1:]).unstack(values)


def _writer(like: tf.Tensor, steps: Any) -> tf.TensorArray:
    """An empty TensorArray for ``steps`` elements shaped and typed like ``like``."""
    return tf.TensorArray(like.dtype, size=steps, element_shape=like.shape)


def _writer_like(reader: tf.TensorArray, steps: Any) -> tf.TensorArray:
    return tf.TensorArray(reader.dtype, size=steps, element_shape=reader.element_shape)


def _or_zeros(cotangent: Any, like: tf.Tensor) -> tf.Tensor:
    return tf.zeros_like(like) if cotangent is None else cotangent
