"""The probe's engine: the compiled one-pass probe, its self-check and its results
(private; shared by the modules that run a user's model).

- :func:`cell_family`: which cell a recurrent layer runs (the one vocabulary:
  ``"simple"``, ``"lstm"``, ``"gru"``);
- :func:`probed_layers`: the layers the probe replays, or a refusal naming one;
- :func:`run_probe`: the compiled one-pass probe with its forward self-check, over every
  batch (checked and cut by :mod:`rnngrad._inputs`, with the loss of
  :mod:`rnngrad._losses`), accumulated into a :class:`ProbeRun`;
- :func:`global_norm`: the optimizer's gradient norm on the same data.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from rnngrad._inputs import check_model, prepare_batches, structure_key
from rnngrad._losses import LossSpec, resolve_loss
from rnngrad._replay import (
    ProbeRefusal,
    Recorder,
    patched_layers,
    refuse,
    replay_kind,
    take_refusal,
)
from rnngrad._tflog import quiet_retracing_warnings
from rnngrad._validation import check_choice

__all__ = [
    "STATES",
    "InexactAcrossBatches",
    "ProbeRun",
    "Row",
    "cell_family",
    "global_norm",
    "probed_layers",
    "run_probe",
    "tf_variables",
]

STATES = ("h", "c", "all")

# The self-check runs Keras's layers eagerly up to this many layer-steps, else as a graph.
EAGER_CHECK_STEPS = 200

# jit_compile="auto" switches to XLA once the same compiled probe has run this many times
# in a row on the same weights (a benchmark, a batched dataset): XLA's compile costs
# seconds, so a probe run a few times keeps TensorFlow's kernels, and a training monitor,
# whose weights change between runs, never pays it or the self-check new weights need.
# A count, not a time, so that the same notebook run twice computes the same numbers.
XLA_AFTER_STABLE_RUNS = 8

# The forward self-check: the replay must reproduce the model within this relative error.
SELF_CHECK_TOLERANCE = {"float64": 1e-9, "float32": 1e-4, "float16": 1e-2, "bfloat16": 5e-2}


# --------------------------------------------------------------------------- cells


def cell_family(layer: Any) -> str | None:
    """``"simple"``, ``"lstm"`` or ``"gru"`` for a layer (or cell) running a Keras
    ``SimpleRNNCell``, ``LSTMCell`` or ``GRUCell`` or a subclass of one; None otherwise.

    The family names the weights' layout (gate blocks of the recurrent kernel); whether
    the probe replays the stock equations or runs the cell's own ``call`` is decided by
    the exact type (:func:`rnngrad._replay.replay_kind`).
    """
    cell = layer if isinstance(layer, keras.layers.Layer) and not hasattr(layer, "cell") else None
    cell = getattr(layer, "cell", cell)
    if isinstance(cell, keras.layers.SimpleRNNCell):
        return "simple"
    if isinstance(cell, keras.layers.LSTMCell):
        return "lstm"
    if isinstance(cell, keras.layers.GRUCell):
        return "gru"
    return None


_STOCK_CALLS = {
    klass.__dict__[name]
    for klass in (keras.layers.RNN, keras.layers.SimpleRNN, keras.layers.LSTM, keras.layers.GRU)
    for name in ("call", "inner_loop")
    if name in klass.__dict__
}


@dataclass
class Row:
    """One row of the probe's result: a recurrent layer call, or one direction of a
    ``Bidirectional`` layer."""

    name: str  # "lstm_1", "bidirectional (forward)", "bidirectional (backward)"
    layer: keras.layers.RNN
    kind: str  # how it is replayed: "simple", "lstm", "gru" (equations) or "custom" (its call)
    family: str | None  # cell_family(layer)
    backwards: bool  # processes the sequence from its last step to its first
    units: int


def probed_layers(model: keras.Model, state: str) -> tuple[list, list, dict]:
    """The model's recurrent layers the probe will replay, the ``Bidirectional``
    wrappers among their owners, and a display name per layer; or a ValueError naming
    the first layer the probe cannot reproduce exactly."""
    everything = [model, *model._flatten_layers(include_self=False, recursive=True)]
    wrappers = [layer for layer in everything if isinstance(layer, keras.layers.Bidirectional)]
    names = {}
    for wrapper in wrappers:
        names[id(wrapper.forward_layer)] = f"{wrapper.name} (forward)"
        names[id(wrapper.backward_layer)] = f"{wrapper.name} (backward)"
    layers = [layer for layer in everything if isinstance(layer, keras.layers.RNN)]
    if not layers:
        raise ValueError(f"model {model.name!r} has no recurrent (keras.layers.RNN) layer to probe")
    for layer in layers:
        names.setdefault(id(layer), layer.name)
        label = f"layer {names[id(layer)]!r} ({type(layer).__name__})"
        if isinstance(layer.cell, keras.layers.StackedRNNCells):
            raise ProbeRefusal(
                f"{label} runs StackedRNNCells (keras.layers.RNN given a list of cells); the "
                "probe measures one state per layer: build one RNN layer per cell"
            )
        if layer.stateful:
            raise ValueError(
                f"{label} is stateful; the probe does not support stateful layers (rebuild "
                "the model with stateful=False and the same weights to probe it)"
            )
        for method in ("call", "inner_loop"):
            if getattr(type(layer), method) not in _STOCK_CALLS:
                raise ValueError(
                    f"{label} overrides {method}(); the probe replays Keras's own RNN loop "
                    "and cannot reproduce a layer that changes it"
                )
        if state == "c" and replay_kind(layer) != "lstm":
            raise ValueError(
                f"state='c' needs a stock LSTM cell state, but {label} runs "
                f"{type(layer.cell).__name__}"
            )
    return layers, wrappers, names


# --------------------------------------------------------------------------- the probe


@dataclass
class ProbeRun:
    """What :func:`run_probe` measured, accumulated over every batch."""

    rows: list[Row]
    loss: LossSpec
    examples: int
    norm_sums: list[np.ndarray]  # per row, (T,): sum over counted examples of ||dL_i/dh_t||
    norm_counts: list[np.ndarray]  # per row, (T,): examples in which step t is not masked
    gradients: list[list[np.ndarray]] | None  # per row, per batch: (B, T, width), input time
    transport_sums: list[np.ndarray] | None  # per row, by lag: sum of ||u . dh_T/dh_{T-lag}||
    transport_counts: list[np.ndarray] | None
    gate_means: list[dict[str, float] | None]
    jit_compile: bool  # whether XLA ran the probe
    non_finite: int = 0  # inf/NaN gradient entries
    output_non_finite: int = 0  # examples whose output model(x) is not finite
    global_norm: float | None = None  # the optimizer's gradient norm, when measured in the pass
    # the optimizer's gradient (model.trainable_variables' order), when measured in the pass
    weight_gradients: list[np.ndarray] | None = None

    def norms(self) -> np.ndarray:
        """(rows, T): mean over the examples in which step t counts; NaN where none does."""
        longest = max(len(s) for s in self.norm_sums)
        table = np.full((len(self.rows), longest), np.nan)
        for row, sums, counts in zip(table, self.norm_sums, self.norm_counts):
            with np.errstate(invalid="ignore", divide="ignore"):
                row[: len(sums)] = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        return table

    def transport(self) -> list[np.ndarray]:
        """Per row, by lag 0, 1, ...: the mean transport over examples reaching that lag."""
        if self.transport_sums is None:
            raise ValueError("this probe run did not measure transport")
        rows = []
        for sums, counts in zip(self.transport_sums, self.transport_counts):
            reached = int(np.count_nonzero(counts > 0))  # lags are counted from 0 upwards
            rows.append(sums[:reached] / counts[:reached])
        return rows


# model -> {key: _CompiledProbe}. Weak keys: a model's cache dies with it (the compiled
# functions hold only a weak reference to it).
_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass
class _CompiledProbe:
    function: Callable
    jit: bool
    calls: list[tuple]  # per call: (layer, kind, backwards), filled when traced
    checked: bool = False
    keep: Any = None  # objects the key refers to by id
    checked_weights: Any = None  # the weights' fingerprint when an XLA form was checked
    reference: Callable | None = None  # Keras's forward pass, compiled for the self-check


def run_probe(
    model: keras.Model,
    x: Any,
    y: Any = None,
    *,
    loss: Any = None,
    state: str = "h",
    jit_compile: bool | str = "auto",
    batch_size: int | None = None,
    keep_gradients: bool = False,
    transport: bool = False,
    gates: bool = False,
) -> ProbeRun:
    """Probe ``model`` on every batch of ``x`` (and ``y``) and accumulate the results.

    ``transport``: also measure, per row, the gain of the layer's own backward
    Jacobian product applied to a fixed random unit vector ``u`` at its last state,
    ``||u . dh_T/dh_{T-lag}||``, independent of the head and the loss (used by
    ``diagnose``). ``gates``: also the mean gate openings of stock LSTM/GRU rows.
    """
    check_model(model)
    check_choice("state", state, STATES)
    if jit_compile != "auto" and not isinstance(jit_compile, bool):
        raise TypeError(f"jit_compile must be True, False or 'auto', got {jit_compile!r}")
    layers, wrappers, names = probed_layers(model, state)
    spec, batches = prepare_batches(
        model, x, y, lambda has: resolve_loss(model, loss, has_targets=has), batch_size=batch_size
    )
    acc: _Accumulator | None = None
    jit_used = False
    # Example i's direction is row i of one random stream, whatever the batches: each
    # batch takes the stream's next rows, so batch_size= does not change the transport.
    directions = _DirectionStream(layers) if transport else None
    for batch in batches:
        u = directions.next(batch.size) if directions is not None else None
        result, compiled = _run_batch(
            model, layers, wrappers, names, spec, state, batch, jit_compile, u, gates
        )
        jit_used = compiled.jit
        if acc is None:
            acc = _Accumulator(model, compiled.calls, names, spec, keep_gradients, transport, gates)
        acc.add(result, batch.size)
    if acc is None:
        raise ValueError("x holds no examples")
    return acc.finish(jit_used)


@dataclass
class _ProbeEntry:
    """The compiled probes of one model, loss, option set and input signature."""

    graph: _CompiledProbe | None = None  # TensorFlow's own kernels: reproduces Keras exactly
    xla: _CompiledProbe | None = None  # faster on a CPU once compiled
    runs: int = 0
    xla_failed: bool = False  # XLA's forward pass did not reproduce the model
    stable_runs: int = 0  # runs in a row on the same weights, this one included
    last_weights: tuple[float, float] | None = None  # at the previous "auto" decision


def _run_batch(model, layers, wrappers, names, spec, state, batch, jit_compile, directions, gates):
    """Run the probe on one batch, choosing and checking its compiled form.

    ``jit_compile="auto"`` runs TensorFlow's own kernels until the probe has run
    ``XLA_AFTER_STABLE_RUNS`` times in a row on the same weights, then XLA: a probe run
    a few times (a diagnosis, a sweep over models) skips XLA's compile time, which for
    stacked or bidirectional layers is seconds; a probe run again and again on the same
    weights (a benchmark, a batched dataset) gets XLA's speed; a training monitor, whose
    weights change between runs, keeps the exact kernels instead of re-checking XLA at
    every run. Every compiled form is checked on its first run, and an XLA form again on
    new weights; one that does not reproduce the model is not used again.
    """
    x_in, y_in = batch.x, batch.y
    transport = directions is not None  # the batch's rows of the directions u
    specs = _specs(x_in, y_in, transport)
    key = (spec.key, state, y_in is None, transport, gates, repr(specs), structure_key(model))
    entry = _CACHE.setdefault(model, {}).setdefault(key, _ProbeEntry())
    entry.runs += 1
    want_xla = jit_compile is True
    fingerprint = None  # of the weights, taken at most once per batch
    if jit_compile == "auto":
        # the first run of a probe takes no fingerprint (most probes run once); its
        # weights count as new
        fingerprint = _weights_fingerprint(model) if entry.runs > 1 else None
        same = fingerprint is not None and fingerprint == entry.last_weights
        entry.stable_runs = entry.stable_runs + 1 if same else 1
        entry.last_weights = fingerprint
        want_xla = entry.stable_runs >= XLA_AFTER_STABLE_RUNS
    if want_xla and not entry.xla_failed:
        if entry.xla is None:
            entry.xla = _compile(
                model, layers, wrappers, spec, state, specs, True, transport, gates
            )
        result = _call(entry.xla, model, x_in, y_in, directions)
        # XLA's fused arithmetic can drift from Keras's forward pass where a chaotic
        # network amplifies rounding, and new weights can make a network chaotic: the XLA
        # form is checked again whenever the weights have changed since its last check.
        weights = fingerprint if fingerprint is not None else _weights_fingerprint(model)
        if entry.xla.checked and entry.xla.checked_weights == weights:
            return result, entry.xla
        if _self_check(model, entry.xla, names, result, x_in) is None:
            entry.xla.checked, entry.xla.checked_weights = True, weights
            return result, entry.xla
        entry.xla_failed, entry.xla = True, None  # TensorFlow's own kernels from now on
    if entry.graph is None:
        entry.graph = _compile(model, layers, wrappers, spec, state, specs, False, transport, gates)
    result = _call(entry.graph, model, x_in, y_in, directions)
    if not entry.graph.checked:
        mismatch = _self_check(model, entry.graph, names, result, x_in)
        if mismatch is not None:
            raise ValueError(mismatch)
        entry.graph.checked = True
    return result, entry.graph


def _specs(x: Any, y: Any, transport: bool) -> list:
    """The compiled probe's input signature: any batch size, everything else fixed, so a
    partial last batch does not retrace."""
    specs = [tf.nest.map_structure(lambda a: tf.TensorSpec((None, *a.shape[1:]), a.dtype), x)]
    if y is not None:
        specs.append(tf.TensorSpec((None, *y.shape[1:]), y.dtype))
    if transport:
        specs.append(tf.TensorSpec((None, None), tf.float32))  # the directions u
    return specs


def _call(compiled: _CompiledProbe, model, x, y, directions) -> dict:
    args = [x]
    if y is not None:
        args.append(y)
    if directions is not None:
        args.append(directions)
    take_refusal()  # forget any refusal of an earlier, caught run
    try:
        with quiet_retracing_warnings():
            return compiled.function(*args)
    except tf.errors.OpError as err:
        raise ValueError(
            f"the probe could not run model {model.name!r} on x: {_op_error_cause(err)}"
        ) from err
    except Exception:
        refusal = take_refusal()  # raised while tracing, under TensorFlow's wrapping
        if refusal is not None:
            raise ProbeRefusal(refusal) from None
        raise


def _op_error_cause(err: tf.errors.OpError) -> str:
    """The line of a TensorFlow runtime error that says what went wrong."""
    lines = [
        line.strip()
        for line in str(err.message).splitlines()
        if line.strip()
        and not line.startswith((" ", "\t"))
        and not line.startswith(("Graph execution error", "Detected at node", "File "))
        and "[Op:" not in line
    ]
    return lines[-1] if lines else str(err).strip().splitlines()[0]


def _compile(model, layers, wrappers, spec, state, specs, jit, transport, gates):
    model_ref = weakref.ref(model)
    compiled = _CompiledProbe(function=None, jit=jit, calls=[], keep=spec.loss)
    has_targets = len(specs) > (2 if transport else 1)

    def probe(*args):
        x = args[0]
        y = args[1] if has_targets else None
        directions = args[-1] if transport else None
        model = model_ref()
        with tf.GradientTape() as tape:
            recorder = Recorder(
                tape=tape,
                state=state,
                gates=gates,
                weight_gradients=transport,
                directions=directions,
            )
            with patched_layers(layers, recorder, wrappers):
                y_pred = model(x, training=False)
            if isinstance(y_pred, (list, tuple, dict)):
                refuse(f"model {model.name!r} has several outputs; the probe needs one")
            per_example = spec.per_example(y, y_pred)  # (B,)
            total = tf.reduce_sum(per_example)  # example i's states only affect L_i
            perturbations = [c.perturbations for c in recorder.calls]
            weights = []
            if transport:
                # The weights' gradient of sum_i L_i, in the same backward pass, is the
                # optimizer's gradient (times B) when Keras's loss is the mean of the L_i
                # and nothing else adds a loss (for diagnose's global norm).
                exact = (
                    spec.mean_of_examples
                    and getattr(y_pred, "_keras_mask", None) is None
                    and not model.losses
                )
                weights = tf_variables(model.trainable_variables) if exact else []
        if not recorder.calls:
            refuse(f"model {model.name!r} never called its recurrent layers")
        compiled.calls[:] = [(c.layer, c.kind, c.backwards) for c in recorder.calls]
        zero = tf.UnconnectedGradients.ZERO
        grads = tape.gradient(total, [*perturbations, weights], unconnected_gradients=zero)
        weight_grads = grads.pop()
        out: dict[str, Any] = {"y_pred": y_pred, "gradients": [], "norms": [], "masks": []}
        out["gate_sums"], out["gate_counts"], out["captures"] = [], [], []
        out["transport"] = []
        # Embeddings have sparse (IndexedSlices) gradients: densify them.
        out["weight_gradients"] = [
            tf.cast(tf.convert_to_tensor(g), tf.float64) for g in weight_grads
        ]
        for call in recorder.calls if transport else []:
            # u . h_T back to this call's own eps_t only: its transport (see _replay)
            norms = tf.transpose(call.transport())  # (B, T)
            out["transport"].append(tf.reverse(norms, [1]) if call.backwards else norms)
        for call, group in zip(recorder.calls, grads):
            g = tf.transpose(tf.concat(group, axis=-1), [1, 0, 2])  # (B, T, width)
            if call.backwards:
                g = tf.reverse(g, [1])  # processing order -> input time
            out["gradients"].append(g)
            out["norms"].append(tf.norm(tf.cast(g, tf.float64), axis=-1))  # (B, T)
            out["masks"].append(call.mask)
            out["gate_sums"].append(call.gate_sums)
            out["gate_counts"].append(call.gate_count)
            out["captures"].append(
                {
                    "inputs": call.inputs,
                    "initial_state": call.initial_state,
                    "mask": call.mask_in,
                    "output": call.output,
                }
            )
        return out

    compiled.function = tf.function(probe, input_signature=specs, jit_compile=jit)
    return compiled


def tf_variables(variables: Any) -> list[Any]:
    """The TensorFlow variables behind Keras variables, as sources for ``tape.gradient``.

    (TensorFlow needs them to fill in zeros for a variable the target does not depend
    on: a Keras variable reports its dtype as a string, which breaks
    ``UnconnectedGradients.ZERO``.)
    """
    return [getattr(v, "value", v) for v in variables]


class _DirectionStream:
    """The fixed random directions u of the transport, handed out batch by batch: row i
    is example i's, N(0, 1) entries from a NumPy generator seeded with 7919, one column
    per unit of the widest recurrent layer (a layer with n units uses the first n
    columns, normalized). The stream fills rows in order, so drawing a rows and then b
    rows gives rows 0..a+b-1 of one draw of a + b rows: example i gets row i whatever
    the batch sizes."""

    def __init__(self, layers: list[keras.layers.RNN]) -> None:
        self.width = max(int(tf.nest.flatten(layer.cell.state_size)[0]) for layer in layers)
        self.generator = np.random.default_rng(7919)

    def next(self, rows: int) -> np.ndarray:
        return self.generator.standard_normal((rows, self.width)).astype("float32")


def _weights_fingerprint(model: keras.Model) -> tuple[float, float]:
    """Two numbers that change when any of the model's weights does: the sums of the
    weights and of their squares, in float64 (read on the host: a compiled call to
    compute them costs more than the reading for the models the probe runs on)."""
    total = squares = 0.0
    for weight in model.weights:
        values = tf.convert_to_tensor(weight).numpy()
        total += float(np.sum(values, dtype=np.float64))
        squares += float(np.sum(np.square(values, dtype=np.float64)))
    return total, squares


@contextlib.contextmanager
def _recording_calls(layers: list[keras.layers.RNN], recorded: list[Any]) -> Iterator[None]:
    """Record the main output of every call of ``layers`` (their own ``call``)."""
    patched = []

    def recording(layer: keras.layers.RNN) -> Callable:
        original = type(layer).call

        def call(*args: Any, **kwargs: Any) -> Any:
            out = original(layer, *args, **kwargs)
            recorded.append(out[0] if layer.return_state else out)
            return out

        call.__signature__ = inspect.signature(original)
        return call

    try:
        for layer in layers:
            if "call" not in vars(layer):  # a layer called twice is patched once
                object.__setattr__(layer, "call", recording(layer))
                patched.append(layer)
        yield
    finally:
        for layer in patched:
            object.__delattr__(layer, "call")


# --------------------------------------------------------------------------- self-check


def _relative_error(ours: Any, ref: Any) -> float:
    a = tf.cast(ours, tf.float64).numpy()
    b = tf.cast(ref, tf.float64).numpy()
    if a.shape != b.shape:
        return math.inf
    if not np.array_equal(np.isnan(a), np.isnan(b)) or not np.array_equal(np.isinf(a), np.isinf(b)):
        return math.inf
    finite = np.isfinite(b)
    if not finite.any():
        return 0.0
    if not np.array_equal(a[~finite], b[~finite]):
        return math.inf
    scale = max(float(np.max(np.abs(b[finite]))), np.finfo(np.float64).tiny)
    return float(np.max(np.abs(a[finite] - b[finite])) / scale)


def _self_check(model, compiled, names, result, x) -> str | None:
    """None if the replay reproduces the model, else a message naming what does not.

    Keras's own forward pass, ``model(x)`` with every recurrent layer's own ``call``,
    runs once while each layer's output is recorded; the replay's outputs are compared
    with them in call order (the first that differs is named), then the model's output.
    """
    layers = [layer for layer, _, _ in compiled.calls]

    def tolerance_of(dtype: Any) -> float:
        return SELF_CHECK_TOLERANCE.get(keras.backend.standardize_dtype(dtype), 1e-4)

    # The model's output is as precise as its least precise recurrent layer allows.
    model_tolerance = max(
        [tolerance_of(result["y_pred"].dtype)]
        + [tolerance_of(layer.cell.compute_dtype) for layer in layers]
    )

    model_ref = weakref.ref(model)  # the cached form must not keep the model alive

    def references(x):
        """Keras's own forward pass, recording what each recurrent layer returned."""
        recorded: list[Any] = []
        with _recording_calls(layers, recorded):
            output = model_ref()(x, training=False)
        return recorded, output

    # Short sequences run eagerly faster than a graph is traced; long ones need a graph,
    # traced once per compiled probe.
    steps = max(int(tf.shape(c["inputs"])[1]) for c in result["captures"])
    if steps * len(layers) > EAGER_CHECK_STEPS:
        if compiled.reference is None:
            compiled.reference = tf.function(references, autograph=False, reduce_retracing=True)
        references = compiled.reference
    with quiet_retracing_warnings():
        layer_outputs, model_output = references(x)
    if len(layer_outputs) != len(layers):
        return f"model {model.name!r} calls its recurrent layers differently from run to run"
    for layer, capture, reference in zip(layers, result["captures"], layer_outputs):
        error = _relative_error(capture["output"], reference)
        tolerance = tolerance_of(layer.cell.compute_dtype)
        if error > tolerance:
            return (
                f"layer {names[id(layer)]!r} ({type(layer).__name__} running "
                f"{type(layer.cell).__name__}): the probe's replay does not reproduce the "
                f"layer's own output (relative difference {error:.2g} > {tolerance:g}), so "
                "the probe refuses to report gradients for this model"
            )
    error = _relative_error(result["y_pred"], model_output)
    if error > model_tolerance:
        outputs = [np.asarray(o) for o in tf.nest.flatten(model_output)]
        bad = sorted(
            {
                int(i)
                for o in outputs
                if o.ndim
                for i in np.nonzero(~np.all(np.isfinite(o.reshape(len(o), -1)), axis=1))[0]
            }
        )
        if bad:
            shown = ", ".join(str(int(i)) for i in bad[:5]) + (", ..." if len(bad) > 5 else "")
            return (
                f"model {model.name!r}: Keras's own output model(x) is not finite for example(s) "
                f"{shown} of the batch (an example masked at every step gives NaN through a "
                "masked mean, for instance); the probe refuses a batch on which the model itself "
                "computes no loss: leave such examples out"
            )
        return (
            f"model {model.name!r}: the probe's forward pass does not reproduce model(x) "
            f"(relative difference {error:.2g} > {model_tolerance:g}) although each recurrent "
            "layer reproduces its own output; the probe refuses to report gradients for this model"
        )
    return None


# --------------------------------------------------------------------------- accumulation


class _Accumulator:
    """Sums over batches: per-step norms and counts, transport by lag, gate openings."""

    def __init__(self, model, calls, names, spec, keep_gradients, transport, gates):
        self.rows: list[Row] = []
        calls_of: dict[int, int] = {}  # layer identity -> calls so far
        owner_of: dict[str, int] = {}  # display name -> the first layer with it
        for layer, kind, backwards in calls:
            name = names[id(layer)]
            if owner_of.setdefault(name, id(layer)) != id(layer):
                # another layer with the same name (e.g. two reloaded copies of one model)
                clash = 1 + sum(1 for n in owner_of if n == name or n.startswith(f"{name} ["))
                name = f"{name} [{clash}]"
                owner_of[name] = id(layer)
            calls_of[id(layer)] = calls_of.get(id(layer), 0) + 1
            if calls_of[id(layer)] > 1:  # the same layer called again: one row per call
                name = f"{name} (call {calls_of[id(layer)]})"
            units = getattr(layer.cell, "units", None) or tf.nest.flatten(layer.cell.state_size)[0]
            self.rows.append(Row(name, layer, kind, cell_family(layer), backwards, int(units)))
        n = len(self.rows)
        self.spec, self.examples, self.non_finite = spec, 0, 0
        self.output_non_finite = 0
        self.sums = [np.zeros(0) for _ in range(n)]
        self.counts = [np.zeros(0) for _ in range(n)]
        self.gradients = [[] for _ in range(n)] if keep_gradients else None
        self.t_sums = [np.zeros(0) for _ in range(n)] if transport else None
        self.t_counts = [np.zeros(0) for _ in range(n)] if transport else None
        self.gate_sums = [None] * n
        self.gate_counts = [0.0] * n
        self.gates = gates
        self.weight_sums: list[np.ndarray] | None = None  # sum_i dL_i/dW, every batch
        self.weights_exact = transport

    def add(self, result: dict, size: int) -> None:
        self.examples += size
        outputs = np.asarray(result["y_pred"]).reshape(size, -1)
        self.output_non_finite += int(np.count_nonzero(~np.all(np.isfinite(outputs), axis=1)))
        if self.weights_exact:
            grads = result["weight_gradients"]
            if not grads:  # this model's optimizer gradient is not the sum of the L_i's
                self.weights_exact, self.weight_sums = False, None
            else:
                values = [g.numpy() for g in grads]
                self.weight_sums = (
                    values
                    if self.weight_sums is None
                    else [a + b for a, b in zip(self.weight_sums, values)]
                )
        for r, row in enumerate(self.rows):
            norms = result["norms"][r].numpy()  # (B, T)
            mask = result["masks"][r]
            mask = np.ones(norms.shape, bool) if mask is None else mask.numpy().astype(bool)
            main, main_mask = norms, mask
            self.non_finite += int(np.count_nonzero(~np.isfinite(main[main_mask])))
            _grow_add(self.sums, r, np.where(main_mask, main, 0.0).sum(axis=0))
            _grow_add(self.counts, r, main_mask.sum(axis=0).astype(float))
            if self.gradients is not None:
                self.gradients[r].append(result["gradients"][r].numpy())
            if self.t_sums is not None:
                copy, copy_mask = result["transport"][r].numpy(), mask
                if row.backwards:  # input time -> processing order
                    copy, copy_mask = copy[:, ::-1], copy_mask[:, ::-1]
                # lag of a counted step = counted steps after it in processing order
                after = np.cumsum(copy_mask[:, ::-1], axis=1)[:, ::-1] - 1
                lag = after[copy_mask]
                sums = np.zeros(copy.shape[1])
                counts = np.zeros(copy.shape[1])
                np.add.at(sums, lag, copy[copy_mask])
                np.add.at(counts, lag, 1.0)
                _grow_add(self.t_sums, r, sums)
                _grow_add(self.t_counts, r, counts)
            if self.gates and result["gate_sums"][r] is not None:
                sums = result["gate_sums"][r].numpy()
                self.gate_sums[r] = sums if self.gate_sums[r] is None else self.gate_sums[r] + sums
                self.gate_counts[r] += float(result["gate_counts"][r].numpy())

    def finish(self, jit: bool) -> ProbeRun:
        gate_means = []
        for row, sums, count in zip(self.rows, self.gate_sums, self.gate_counts):
            if sums is None or count == 0:
                gate_means.append(None)
                continue
            names = {"lstm": ("i", "f", "o"), "gru": ("z", "r")}[row.kind]
            gate_means.append({g: float(v / count) for g, v in zip(names, sums)})
        return ProbeRun(
            rows=self.rows,
            loss=self.spec,
            examples=self.examples,
            norm_sums=self.sums,
            norm_counts=self.counts,
            gradients=self.gradients,
            transport_sums=self.t_sums,
            transport_counts=self.t_counts,
            gate_means=gate_means,
            jit_compile=jit,
            non_finite=self.non_finite,
            output_non_finite=self.output_non_finite,
            global_norm=self._global_norm(),
            weight_gradients=self._weight_gradients(),
        )

    def _weight_gradients(self) -> list[np.ndarray] | None:
        if not self.weights_exact or self.weight_sums is None:
            return None
        return [g / self.examples for g in self.weight_sums]

    def _global_norm(self) -> float | None:
        gradients = self._weight_gradients()
        if gradients is None:
            return None
        return math.sqrt(sum(float(np.sum(np.square(g))) for g in gradients))


def _grow_add(store: list[np.ndarray], index: int, values: np.ndarray) -> None:
    """store[index] += values, growing it with zeros to the longer length first
    (batches of different lengths are aligned at their first step)."""
    current = store[index]
    if len(values) > len(current):
        current = np.concatenate([current, np.zeros(len(values) - len(current))])
    current[: len(values)] += values
    store[index] = current


# --------------------------------------------------------------------------- global norm

_NORM_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class InexactAcrossBatches(ValueError):
    """The optimizer's gradient norm was asked over several batches for a loss whose
    whole-data gradient is not the size-weighted mean of the batches' gradients."""


def _inexact_message(model: keras.Model, spec: LossSpec, masked: bool) -> str:
    why = (
        "its output is masked, so Keras divides the loss by the unmasked entries of the whole batch"
        if masked
        else f"its loss {spec.label} is not reduced to the mean of per-example losses"
    )
    return (
        f"the global gradient norm of model {model.name!r} cannot be combined exactly from "
        f"several batches: {why}; pass all examples in one batch (batch_size=None, or one "
        "batch of the dataset)"
    )


def global_norm(
    model: keras.Model, x: Any, y: Any = None, *, loss: Any = None, batch_size: int | None = None
) -> tuple[float, LossSpec]:
    """The norm of the gradient of the loss an optimizer would see, w.r.t. every
    trainable weight: the loss reduced as Keras reduces it, plus the model's own
    regularization losses; over several batches, the example-weighted mean gradient,
    which is the gradient on all the examples at once only when Keras's loss is the
    mean of per-example losses: otherwise (a summing reduction, a loss that masks
    entries, an output mask) several batches raise :class:`InexactAcrossBatches`."""
    check_model(model)
    spec, batches = prepare_batches(
        model, x, y, lambda has: resolve_loss(model, loss, has_targets=has), batch_size=batch_size
    )
    total, count, seen, masked = None, 0, 0, False
    for batch in batches:
        seen += 1
        if seen > 1 and (masked or not spec.mean_of_examples):
            raise InexactAcrossBatches(_inexact_message(model, spec, masked))
        specs = _specs(batch.x, batch.y, False)
        key = (spec.key, batch.y is None, repr(specs), structure_key(model))
        per_model = _NORM_CACHE.setdefault(model, {})
        if key not in per_model:
            per_model[key] = (_compile_gradients(model, spec, specs), spec.loss)
        function = per_model[key][0]
        args = [batch.x] if batch.y is None else [batch.x, batch.y]
        try:
            with quiet_retracing_warnings():
                values = function(*args)
        except tf.errors.OpError as err:  # e.g. ids outside an Embedding's vocabulary
            raise ValueError(
                f"the gradient of model {model.name!r} could not be computed on x: "
                f"{_op_error_cause(err)}"
            ) from err
        values, output_masked = values
        masked = masked or bool(output_masked)
        grads = [g.numpy().astype(np.float64) * batch.size for g in values]
        total = grads if total is None else [a + b for a, b in zip(total, grads)]
        count += batch.size
    squares = sum(float(np.sum(np.square(g / count))) for g in total)
    return math.sqrt(squares), spec


def _compile_gradients(model: keras.Model, spec: LossSpec, specs: list) -> Callable:
    model_ref = weakref.ref(model)

    def gradients(x, y=None):
        model = model_ref()
        weights = model.trainable_variables
        with tf.GradientTape() as tape:
            y_pred = model(x, training=False)
            value = spec.batch_loss(y, y_pred)
            extra = [tf.cast(tf.reduce_sum(v), value.dtype) for v in model.losses]
            if extra:
                value = value + tf.add_n(extra)
        zero = tf.UnconnectedGradients.ZERO
        grads = tape.gradient(value, tf_variables(weights), unconnected_gradients=zero)
        # Embeddings have sparse (IndexedSlices) gradients: densify them.
        grads = [tf.cast(tf.convert_to_tensor(g), tf.float64) for g in grads]
        # whether Keras's loss divides by the unmasked entries of this batch (an output
        # mask): then batches cannot be combined by their sizes
        masked = getattr(y_pred, "_keras_mask", None) is not None
        return grads, tf.constant(masked)

    return tf.function(gradients, input_signature=specs)
