"""The probe's engine, shared by the modules that run a user's model (private).

One place for what several modules need, so none imports another's private names:

- :func:`cell_family`: which cell a recurrent layer runs (the one vocabulary:
  ``"simple"``, ``"lstm"``, ``"gru"``);
- :class:`LossSpec` and :func:`resolve_loss`: the loss the probe differentiates (the
  model's compiled loss by default), per example and with Keras's own reduction;
- :func:`prepare_batches`: a user's ``x``/``y`` (arrays, lists or dicts of arrays, a
  ``tf.data.Dataset``) checked once and cut into batches;
- :func:`run_probe`: the compiled one-pass probe with its forward self-check, over every
  batch, accumulated into a :class:`ProbeRun`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import math
import weakref
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from rnngrad._replay import (
    LayerCall,
    ProbeRefusal,
    Recorder,
    patched_layers,
    refuse,
    replay_kind,
    take_refusal,
)
from rnngrad._validation import check_choice, check_int

__all__ = [
    "LOSS_NAMES",
    "STATES",
    "Batch",
    "LossSpec",
    "ProbeRun",
    "Row",
    "cell_family",
    "check_inputs",
    "check_loss_argument",
    "check_model",
    "check_targets",
    "global_norm",
    "input_names",
    "input_structure",
    "prepare_batches",
    "probed_layers",
    "resolve_loss",
    "run_probe",
    "transport_directions",
]

LOSS_NAMES = (
    "mse",
    "sparse_categorical_crossentropy",
    "categorical_crossentropy",
    "binary_crossentropy",
)
"""The loss names the book uses; any name ``keras.losses.get`` knows also works."""

STATES = ("h", "c", "all")

# The self-check runs Keras's layers eagerly up to this many layer-steps, else as a graph.
EAGER_CHECK_STEPS = 200

# jit_compile="auto" switches to XLA after this many runs of the same compiled probe.
XLA_AFTER_RUNS = 2

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
    kind: str  # how it was replayed: "simple", "lstm", "gru" or "cell" (its own call)
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


def check_model(model: Any) -> keras.Model:
    """A built Keras model with one output, or a TypeError/ValueError saying why not."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model, got {type(model).__name__}")
    if not model.built:
        raise ValueError(
            f"model {model.name!r} is not built (it has no weights yet); call it on a batch "
            "or start it with keras.Input(...)"
        )
    outputs = _model_outputs(model)
    if outputs is not None and len(outputs) != 1:
        raise ValueError(
            f"model {model.name!r} has {len(outputs)} outputs; the probe needs one "
            "(probe keras.Model(model.inputs, model.outputs[i]) for output i)"
        )
    return model


def _model_outputs(model: keras.Model) -> list | None:
    try:
        outputs = model.outputs
    except (AttributeError, ValueError):
        return None
    return list(outputs) if outputs else None


# --------------------------------------------------------------------------- losses


@dataclass(frozen=True)
class LossSpec:
    """The loss the probe differentiates, with where it came from."""

    label: str  # e.g. "sparse_categorical_crossentropy (from_logits=True)"
    source: str  # "compiled", "given", "default" (not compiled: MSE) or "no targets"
    loss: keras.losses.Loss | Callable | None  # None: 1/2 ||output||^2 per example
    sparse: bool  # targets are class ids
    key: Hashable
    weight: float = 1.0  # compile(loss_weights=...): Keras multiplies the loss by it

    @property
    def mean_of_examples(self) -> bool:
        """Whether Keras reduces this loss to the mean of the per-example L_i (without a
        mask): functions and losses with the default reduction do."""
        if self.loss is None or not isinstance(self.loss, keras.losses.Loss):
            return True
        return getattr(self.loss, "reduction", None) in ("sum_over_batch_size", "mean")

    def describe(self) -> str:
        """The label and where it came from, for reports."""
        where = {
            "compiled": "the model's compiled loss",
            "given": "as given",
            "default": "the model is not compiled, so MSE",
            "no targets": "no targets were given",
        }[self.source]
        return f"{self.label} ({where})"

    def per_example(self, y: tf.Tensor | None, y_pred: tf.Tensor) -> tf.Tensor:
        """Example i's own loss L_i, shape (B,): the mean of Keras's unreduced loss over
        the example's non-batch entries (its unmasked steps for a masked sequence)."""
        mask = getattr(y_pred, "_keras_mask", None)
        if self.loss is None:
            values = 0.5 * tf.reduce_sum(tf.square(tf.cast(y_pred, _loss_dtype(y_pred))), axis=-1)
        else:
            values = _unreduced(self.loss, y, y_pred)
            if values.shape.rank == 0:
                refuse(
                    f"loss {self.label} returns a scalar; the probe needs one value per "
                    "example, shape (B,) or (B, T)"
                )
            if mask is None:
                mask = getattr(values, "_keras_mask", None)
        values = tf.cast(values, _loss_dtype(y_pred)) * self.weight
        if values.shape.rank == 1:
            return values
        axes = list(range(1, values.shape.rank))
        if mask is None:
            return tf.reduce_mean(values, axis=axes)
        values, weight = _same_rank(values, tf.cast(mask, values.dtype))
        axes = list(range(1, values.shape.rank))
        weight = tf.broadcast_to(weight, tf.shape(values))
        return tf.math.divide_no_nan(
            tf.reduce_sum(values * weight, axis=axes), tf.reduce_sum(weight, axis=axes)
        )

    def batch_loss(self, y: tf.Tensor | None, y_pred: tf.Tensor) -> tf.Tensor:
        """The scalar loss as Keras reduces it (masks and the loss's own reduction)."""
        if self.loss is None:
            return tf.reduce_mean(self.per_example(y, y_pred))
        if isinstance(self.loss, keras.losses.Loss):
            return self.loss(y, y_pred) * self.weight
        # A function: Keras wraps it with the "sum_over_batch_size" reduction, which with a
        # mask is the mean over the unmasked entries.
        values = _unreduced(self.loss, y, y_pred) * self.weight
        mask = getattr(y_pred, "_keras_mask", None)
        if mask is None:
            return tf.reduce_mean(values)
        values, weight = _same_rank(values, tf.cast(mask, values.dtype))
        weight = tf.broadcast_to(weight, tf.shape(values))
        return tf.math.divide_no_nan(tf.reduce_sum(values * weight), tf.reduce_sum(weight))


def _same_rank(values: tf.Tensor, mask: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """As Keras matches a loss and its mask: a trailing axis of 1 is squeezed, else the
    lower-rank one gets a trailing axis."""
    while values.shape.rank > mask.shape.rank:
        if values.shape[-1] == 1:
            values = tf.squeeze(values, -1)
        else:
            mask = tf.expand_dims(mask, -1)
    while mask.shape.rank > values.shape.rank:
        if mask.shape[-1] == 1:
            mask = tf.squeeze(mask, -1)
        else:
            values = tf.expand_dims(values, -1)
    return values, mask


def _loss_dtype(y_pred: tf.Tensor) -> tf.DType:
    return tf.float64 if y_pred.dtype == tf.float64 else tf.float32


def _unreduced(loss: Any, y: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    """Keras's per-entry loss values, converted as ``Loss.__call__`` converts them."""
    if isinstance(loss, keras.losses.Loss):
        dtype = loss.dtype
    else:  # Keras wraps a function in a float32 Loss; float64 models keep their precision
        dtype = "float64" if y_pred.dtype == tf.float64 else keras.backend.floatx()
    values = loss.call if isinstance(loss, keras.losses.Loss) else loss
    return tf.convert_to_tensor(values(tf.cast(y, dtype), tf.cast(y_pred, dtype)))


def resolve_loss(model: keras.Model, loss: Any, *, has_targets: bool) -> LossSpec:
    """The loss to differentiate: ``loss`` if given, else the model's compiled loss,
    else MSE; without targets, ``1/2 ||output||^2``."""
    if not has_targets:
        return LossSpec("1/2 ||output||^2", "no targets", None, False, "no targets")
    source = "given"
    if loss is None:
        compiled = getattr(model, "loss", None) if getattr(model, "compiled", False) else None
        if compiled is None:
            return _spec("mse", "default")
        loss = _single(compiled, model, "loss")
        spec = _spec(loss, "compiled")
        weight = _compiled_loss_weight(model)
        if weight != 1.0:  # Keras multiplies the loss by it, so its gradients too
            spec = dataclasses.replace(
                spec, label=f"{spec.label} x {weight:g}", weight=weight, key=(spec.key, weight)
            )
        return spec
    return _spec(loss, source)


def _single(value: Any, model: keras.Model, what: str) -> Any:
    """The one entry of a compile argument given per output (a list or dict of one)."""
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        if len(value) != 1:
            raise ValueError(
                f"model {model.name!r} was compiled with one {what} per output ({value!r}); "
                "the probe needs a model with one output"
            )
        value = value[0]
    return value


def _compiled_loss_weight(model: keras.Model) -> float:
    """``compile(loss_weights=...)``, which Keras multiplies the loss by (1 if unset)."""
    compiled = getattr(model, "_compile_loss", None)
    weights = getattr(compiled, "_user_loss_weights", None)
    if weights is None:
        config = getattr(getattr(model, "_compile_config", None), "config", {}) or {}
        weights = config.get("loss_weights")
    if weights is None:
        return 1.0
    weight = _single(weights, model, "loss weight")
    try:
        return float(weight)
    except (TypeError, ValueError):
        raise ValueError(
            f"model {model.name!r} was compiled with loss_weights={weights!r}; the probe "
            "needs a number"
        ) from None


def _spec(loss: Any, source: str) -> LossSpec:
    if isinstance(loss, str):
        if loss.lower() in ("crossentropy", "ce"):
            raise ValueError(
                f"loss {loss!r} leaves Keras to pick a cross-entropy from the targets; pass "
                "the one you mean, e.g. 'sparse_categorical_crossentropy'"
            )
        function = keras.losses.get(loss) if _known_loss_name(loss) else None
        if function is None:
            raise ValueError(
                f"loss must be a Keras loss name (e.g. {', '.join(map(repr, LOSS_NAMES))}), a "
                f"keras.losses.Loss or a callable (y_true, y_pred) -> (B,); got {loss!r}"
            )
        obj = function if isinstance(function, keras.losses.Loss) else None
        name = loss if obj is None else type(obj).__name__
        sparse = "sparse" in (loss.lower() if obj is None else type(obj).__name__.lower())
        label = name if obj is None else _describe_loss_object(obj)
        return LossSpec(label, source, function, sparse, ("name", loss))
    if isinstance(loss, keras.losses.Loss):
        label = _describe_loss_object(loss)
        sparse = "sparse" in type(loss).__name__.lower() or "sparse" in getattr(
            getattr(loss, "fn", None), "__name__", ""
        )
        try:
            key = ("object", json.dumps(keras.losses.serialize(loss), sort_keys=True, default=str))
        except Exception:
            key = ("id", id(loss))
        return LossSpec(label, source, loss, sparse, key)
    if callable(loss):
        name = getattr(loss, "__name__", type(loss).__name__)
        return LossSpec(name, source, loss, "sparse" in name.lower(), ("id", id(loss), loss))
    raise TypeError(
        "loss must be None (the model's compiled loss), a Keras loss name, a "
        f"keras.losses.Loss or a callable (y_true, y_pred) -> (B,); got {type(loss).__name__}"
    )


def check_loss_argument(loss: Any) -> Any:
    """``loss`` if the probe can use it (None, a Keras loss name, a ``keras.losses.Loss``
    or a callable), else a TypeError/ValueError naming the argument."""
    if (
        loss is None
        or isinstance(loss, keras.losses.Loss)
        or (callable(loss) and not isinstance(loss, str))
    ):
        return loss
    if not isinstance(loss, str):
        raise TypeError(
            "loss must be None (the model's compiled loss), a Keras loss name, a "
            f"keras.losses.Loss or a callable (y_true, y_pred) -> (B,); got {type(loss).__name__}"
        )
    if loss.lower() in ("crossentropy", "ce") or not _known_loss_name(loss):
        raise ValueError(
            f"loss must be a Keras loss name (e.g. {', '.join(map(repr, LOSS_NAMES))}), a "
            f"keras.losses.Loss or a callable (y_true, y_pred) -> (B,); got {loss!r}"
        )
    return loss


def _known_loss_name(name: str) -> bool:
    try:
        return keras.losses.get(name) is not None
    except (ValueError, TypeError):
        return False


def _describe_loss_object(loss: keras.losses.Loss) -> str:
    name = getattr(getattr(loss, "fn", None), "__name__", None) or type(loss).__name__
    config = loss.get_config() if hasattr(loss, "get_config") else {}
    from_logits = config.get("from_logits")
    return name if from_logits is None else f"{name} (from_logits={from_logits})"


# --------------------------------------------------------------------------- inputs


@dataclass
class Batch:
    """One checked batch: ``x`` as the model takes it, ``y`` or None, its size."""

    x: Any
    y: tf.Tensor | None
    size: int


def prepare_batches(
    model: keras.Model,
    x: Any,
    y: Any,
    spec_for: Callable[[bool], LossSpec],
    *,
    batch_size: int | None = None,
) -> tuple[LossSpec, Iterator[Batch]]:
    """Check ``x``/``y`` against the model and the loss; yield batches.

    ``x`` may be an array, a list/tuple/dict of arrays (one per model input) or a
    ``tf.data.Dataset`` of ``(x, y)`` or ``x`` batches (then ``y`` must be None).
    ``spec_for(has_targets)`` gives the loss once it is known whether there are targets.
    """
    if batch_size is not None:
        batch_size = check_int("batch_size", batch_size, minimum=1)
    if isinstance(x, tf.data.Dataset):
        if y is not None:
            raise TypeError("y must be None when x is a tf.data.Dataset (its elements hold y)")
        return _dataset_batches(model, x, spec_for, batch_size)
    xs = check_inputs(model, x)
    spec = spec_for(y is not None)
    ys = None if y is None else check_targets(model, xs, y, spec)
    size = _batch_size(xs)
    step = batch_size or size

    def batches() -> Iterator[Batch]:
        for start in range(0, size, step):
            part = slice(start, min(start + step, size))
            yield Batch(
                tf.nest.map_structure(lambda a, p=part: a[p], xs),
                None if ys is None else ys[part],
                part.stop - part.start,
            )

    return spec, batches()


def _dataset_batches(model, dataset, spec_for, batch_size):
    iterator = iter(dataset)
    try:
        first = next(iterator)
    except StopIteration:
        raise ValueError("x is an empty tf.data.Dataset") from None
    if isinstance(first, tuple) and len(first) == 3:
        raise ValueError(
            "x is a dataset of (x, y, sample_weight): the probe does not use sample weights; "
            "give a dataset of (x, y) (the mean over examples is then unweighted)"
        )
    # As in Keras, a pair is (x, y); a model with two inputs and no targets takes ((a, b),).
    has_targets = isinstance(first, tuple) and len(first) == 2
    spec = spec_for(has_targets)

    def split(element):
        if isinstance(element, tuple) and len(element) == 1:
            return element[0], None
        if has_targets:
            if not isinstance(element, tuple) or len(element) != 2:
                raise ValueError("every element of the dataset must be (x, y) like the first")
            return element[0], element[1]
        return element, None

    def batches() -> Iterator[Batch]:
        for element in _chain_first(first, iterator):
            xb, yb = split(element)
            xb = check_inputs(model, tf.nest.map_structure(_numpy, xb))
            yb = None if yb is None else check_targets(model, xb, _numpy(yb), spec)
            size = _batch_size(xb)
            step = batch_size or size
            for start in range(0, size, step):
                part = slice(start, min(start + step, size))
                yield Batch(
                    tf.nest.map_structure(lambda a, p=part: a[p], xb),
                    None if yb is None else yb[part],
                    part.stop - part.start,
                )

    return spec, batches()


def _chain_first(first, rest):
    yield first
    yield from rest


def _numpy(value: Any) -> Any:
    return value.numpy() if hasattr(value, "numpy") else value


def _batch_size(xs: Any) -> int:
    return int(tf.nest.flatten(xs)[0].shape[0])


def input_structure(model: keras.Model) -> Any:
    """The model's inputs as it was built (a KerasTensor, or a list or dict of them);
    None for a subclassed model that does not declare them."""
    try:
        return model.input
    except (AttributeError, ValueError):  # a Sequential model knows only model.inputs
        pass
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        return None
    if not inputs:
        return None
    return inputs[0] if len(inputs) == 1 else list(inputs)


def input_names(model: keras.Model) -> list[str]:
    """The names ``x`` may use for a multi-input model: the dict keys it was built
    with, else its ``Input`` layers' names, in order."""
    structure = input_structure(model)
    if isinstance(structure, dict):
        return list(structure)
    if isinstance(structure, (list, tuple)):
        return [tensor.name for tensor in structure]
    return [] if structure is None else [structure.name]


def check_inputs(model: keras.Model, x: Any) -> Any:
    """``x`` as the model takes it, checked: an array, or a list or dict of arrays in the
    structure the model was built with, in the inputs' dtypes; a TypeError/ValueError
    naming what is wrong."""
    structure = input_structure(model)
    if isinstance(structure, dict):
        checked = _match_dict(model, x, structure)
    elif isinstance(structure, (list, tuple)) and len(structure) > 1:
        checked = _match_list(model, x, list(structure))
    elif structure is not None:  # one input
        tensor = structure[0] if isinstance(structure, (list, tuple)) else structure
        checked = _check_one("x", _only(model, x, tensor.name), tensor, model)
    elif isinstance(x, dict) or _is_array_list(x):  # a subclassed model: take x's structure
        checked = tf.nest.map_structure(lambda a: _check_one("x", a, None, model), x)
        if isinstance(x, tuple):
            checked = list(checked)
    else:
        checked = _check_one("x", x, None, model)
    sizes = {a.shape[0] for a in tf.nest.flatten(checked)}
    if len(sizes) != 1:
        raise ValueError(f"x's arrays must all have the same number of examples, got {sizes}")
    return checked


def _is_array_list(x: Any) -> bool:
    """A list or tuple of arrays (several inputs), not a nested list of numbers."""
    return isinstance(x, (list, tuple)) and len(x) > 0 and all(hasattr(p, "shape") for p in x)


def _only(model: keras.Model, x: Any, name: str) -> Any:
    """The one array of a single-input model, from an array, a list of one or a dict
    keyed by the input's name."""
    if isinstance(x, dict):
        if list(x) != [name]:
            raise ValueError(
                f"x must be an array for model {model.name!r}, or a dict with the one key "
                f"{name!r}; got keys {sorted(map(str, x))}"
            )
        return x[name]
    if _is_array_list(x):
        if len(x) != 1:
            raise ValueError(
                f"model {model.name!r} has one input; x must be one array, got {len(x)}"
            )
        return x[0]
    return x


def _match_dict(model: keras.Model, x: Any, structure: dict) -> dict[str, np.ndarray]:
    if not isinstance(x, dict):
        raise TypeError(
            f"model {model.name!r} takes a dict of inputs ({', '.join(structure)}); x must be "
            f"a dict with those keys, got {type(x).__name__}"
        )
    missing = [key for key in structure if key not in x]
    extra = [key for key in x if key not in structure]
    if missing or extra:
        raise ValueError(
            f"x must have exactly the keys of model {model.name!r}'s inputs "
            f"({', '.join(structure)}); missing {missing or 'none'}, unknown {extra or 'none'}"
        )
    return {
        key: _check_one(f"x[{key!r}]", x[key], tensor, model) for key, tensor in structure.items()
    }


def _match_list(model: keras.Model, x: Any, tensors: list) -> list[np.ndarray]:
    names = [tensor.name for tensor in tensors]
    if isinstance(x, dict):  # Keras matches a dict to a list of inputs by their names
        missing = [n for n in names if n not in x]
        if missing:
            raise ValueError(
                f"x must have a key for every input of model {model.name!r} "
                f"({', '.join(names)}); missing {', '.join(missing)}"
            )
        x = [x[n] for n in names]
    if not isinstance(x, (list, tuple)) or len(x) != len(tensors):
        raise TypeError(
            f"model {model.name!r} has {len(tensors)} inputs ({', '.join(names)}); x must "
            f"be a list, tuple or dict of {len(tensors)} arrays, got {type(x).__name__}"
        )
    return [
        _check_one(f"x[{name!r}]", part, tensor, model)
        for name, part, tensor in zip(names, x, tensors)
    ]


def _check_one(name: str, value: Any, spec: Any, model: keras.Model) -> np.ndarray:
    if value is None:
        raise TypeError(f"{name} must be an array, got None")
    try:
        array = np.asarray(value)
    except Exception as err:  # ragged lists
        raise TypeError(f"{name} must be array-like, got {type(value).__name__}: {err}") from None
    if np.iscomplexobj(array):
        raise TypeError(f"{name} must hold real numbers, got dtype {array.dtype}")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise TypeError(f"{name} must hold numbers, got dtype {array.dtype}")
    if array.ndim == 0 or array.shape[0] == 0:
        raise ValueError(
            f"{name} must be a batch with at least one example, got shape {array.shape}"
        )
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must hold finite numbers; it contains inf or NaN")
    if spec is None:
        dtype = "int32" if np.issubdtype(array.dtype, np.integer) else "float32"
        return array.astype(dtype, copy=False)
    expected = tuple(spec.shape)
    shown = "(" + ", ".join("B" if i == 0 else str(d) for i, d in enumerate(expected)) + ")"
    if array.ndim != len(expected) or any(
        want is not None and size != want for size, want in zip(array.shape[1:], expected[1:])
    ):
        raise ValueError(
            f"{name} must have shape {shown} for model {model.name!r}, got {array.shape}"
        )
    dtype = keras.backend.standardize_dtype(spec.dtype)
    if "int" in dtype and np.issubdtype(array.dtype, np.floating):
        if not np.all(np.equal(np.mod(array, 1), 0)):
            raise TypeError(f"{name} must hold integers (ids) for model {model.name!r}")
    return array.astype(dtype, copy=False)


def _output_shape(model: keras.Model, xs: Any) -> tuple | None:
    """The output's shape for this batch; None entries where it cannot be known."""
    batch = _batch_size(xs)
    try:
        shapes = tf.nest.map_structure(lambda a: tuple(a.shape), xs)
        shape = model.compute_output_shape(shapes)
        if isinstance(shape, tuple) and all(d is None or isinstance(d, int) for d in shape):
            return (batch, *shape[1:])
    except Exception:  # subclassed models may not know their output shape
        pass
    outputs = _model_outputs(model)
    if outputs is not None:
        return (batch, *tuple(outputs[0].shape)[1:])
    return None  # the run will tell


def _matches(shape: tuple, expected: tuple) -> bool:
    return len(shape) == len(expected) and all(
        want is None or size == want for size, want in zip(shape, expected)
    )


def check_targets(model: keras.Model, xs: Any, y: Any, spec: LossSpec) -> np.ndarray:
    """``y`` checked against the model's output for ``xs`` and the loss: finite, the
    batch size of ``xs``, the output's shape (class ids for a sparse loss)."""
    batch = _batch_size(xs)
    try:
        array = np.asarray(y)
    except Exception as err:
        raise TypeError(f"y must be array-like, got {type(y).__name__}: {err}") from None
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise TypeError(f"y must hold numbers, got dtype {array.dtype}")
    if array.ndim == 0 or array.shape[0] != batch:
        raise ValueError(f"y must have the same batch size as x ({batch}), got shape {array.shape}")
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        raise ValueError("y must hold finite numbers; it contains inf or NaN")
    out = _output_shape(model, xs)
    if spec.sparse:
        integral = np.issubdtype(array.dtype, np.integer) or bool(
            np.all(np.equal(np.mod(array, 1), 0))
        )
        if not integral:
            raise TypeError(f"y must hold integer class ids for {spec.label}, got {array.dtype}")
        if out is not None:
            want = out[:-1]
            if not (_matches(array.shape, want) or _matches(array.shape, (*want, 1))):
                raise ValueError(
                    f"y must have shape {want} (class ids) for output shape {out}, "
                    f"got {array.shape}"
                )
            classes = out[-1]
            if classes is not None and (array.min() < 0 or array.max() >= classes):
                raise ValueError(f"y must hold class ids in [0, {classes}), got out of range")
            array = array.reshape(array.shape[: len(want)])
        return array.astype("int32")
    if out is not None and not _matches(array.shape, out):
        if _matches((*array.shape, 1), out):
            array = array[..., None]  # (B,) targets for a (B, 1) output
        elif (
            spec.source == "default"
            and np.issubdtype(array.dtype, np.integer)
            and (_matches(array.shape, out[:-1]) or _matches(array.shape, (*out[:-1], 1)))
        ):
            raise ValueError(
                f"y holds class ids of shape {array.shape} for outputs of shape {out}, but "
                f"model {model.name!r} is not compiled, so the loss would be MSE; pass "
                "loss='sparse_categorical_crossentropy' (outputs are probabilities) or "
                "loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True) (logits), "
                "or compile the model with its loss"
            )
        else:
            raise ValueError(f"y must have the model's output shape {out}, got {array.shape}")
    if np.issubdtype(array.dtype, np.floating) or array.dtype == bool:
        outputs = _model_outputs(model)
        output_dtype = keras.backend.standardize_dtype(outputs[0].dtype) if outputs else None
        dtype = "float64" if output_dtype == "float64" else "float32"  # as precise as the model
        return array.astype(dtype, copy=False)
    return array


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
    global_norm: float | None = None  # the optimizer's gradient norm, when measured in the pass

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
    for batch in batches:
        result, compiled = _run_batch(
            model, layers, wrappers, names, spec, state, batch, jit_compile, transport, gates
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


def _run_batch(model, layers, wrappers, names, spec, state, batch, jit_compile, transport, gates):
    """Run the probe on one batch, choosing and checking its compiled form.

    ``jit_compile="auto"`` runs TensorFlow's own kernels for the first runs of a probe
    and XLA from its third run on: a probe run once or twice (a diagnosis, before and
    after a fix) skips XLA's compile time, which for stacked or bidirectional layers is
    many seconds; a probe run again and again (a training monitor, a benchmark) gets its
    speed. Every compiled form is checked on its first run; an XLA form that does not
    reproduce the model is not used again.
    """
    x_in, y_in = batch.x, batch.y
    directions = transport_directions(batch.size, layers) if transport else None
    specs = _specs(x_in, y_in, transport)
    key = (spec.key, state, y_in is None, transport, gates, repr(specs))
    entry = _CACHE.setdefault(model, {}).setdefault(key, _ProbeEntry())
    entry.runs += 1
    want_xla = jit_compile is True or (jit_compile == "auto" and entry.runs > XLA_AFTER_RUNS)
    if want_xla and not entry.xla_failed:
        if entry.xla is None:
            entry.xla = _compile(
                model, layers, wrappers, spec, state, specs, True, transport, gates
            )
        result = _call(entry.xla, model, x_in, y_in, directions)
        if entry.xla.checked:
            return result, entry.xla
        # XLA's fused arithmetic can drift from Keras's forward pass (a chaotic network
        # amplifies rounding); then TensorFlow's own kernels are used instead.
        if _self_check(model, entry.xla, names, result, x_in) is None:
            entry.xla.checked = True
            return result, entry.xla
        entry.xla_failed, entry.xla = True, None
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
        with _quiet_retracing_warnings():
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
            recorder = Recorder(tape=tape, state=state, transport=transport, gates=gates)
            with patched_layers(layers, recorder, wrappers):
                y_pred = model(x, training=False)
            if isinstance(y_pred, (list, tuple, dict)):
                refuse(f"model {model.name!r} has several outputs; the probe needs one")
            per_example = spec.per_example(y, y_pred)  # (B,)
            total = tf.reduce_sum(per_example)  # example i's states only affect L_i
            perturbations = [c.perturbations for c in recorder.calls]
            weights = []
            if transport:  # each layer's transport lane, in the same pass
                for call in recorder.calls:
                    total += tf.cast(_transport_term(call, directions), total.dtype)
                perturbations += [[c.lane] for c in recorder.calls]
                # The weights' gradient of sum_i L_i, in the same backward pass, is the
                # optimizer's gradient (times B) when the lanes hold the weights fixed,
                # Keras's loss is the mean of the L_i, and nothing else adds a loss.
                exact = (
                    all(c.weights_held for c in recorder.calls)
                    and spec.mean_of_examples
                    and getattr(y_pred, "_keras_mask", None) is None
                    and not model.losses
                )
                weights = list(model.trainable_variables) if exact else []
        if not recorder.calls:
            refuse(f"model {model.name!r} never called its recurrent layers")
        compiled.calls[:] = [(c.layer, c.kind, c.backwards) for c in recorder.calls]
        grads = tape.gradient(  # the one backward pass, for every layer at once
            total, [*perturbations, weights], unconnected_gradients=tf.UnconnectedGradients.ZERO
        )
        weight_grads = grads.pop()
        out: dict[str, Any] = {"y_pred": y_pred, "gradients": [], "norms": [], "masks": []}
        out["gate_sums"], out["gate_counts"], out["captures"] = [], [], []
        out["transport"] = []
        # Embeddings have sparse (IndexedSlices) gradients: densify them.
        out["weight_gradients"] = [
            tf.cast(tf.convert_to_tensor(g), tf.float64) for g in weight_grads
        ]
        main = len(recorder.calls)
        for call, group in zip(recorder.calls if transport else [], grads[main:]):
            g = tf.concat(group, axis=-1)  # (T, B, units), processing order
            norms = tf.transpose(tf.norm(tf.cast(g, tf.float64), axis=-1))  # (B, T)
            out["transport"].append(tf.reverse(norms, [1]) if call.backwards else norms)
        for call, group in zip(recorder.calls, grads[:main]):
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


def transport_directions(examples: int, layers: list[keras.layers.RNN]) -> np.ndarray:
    """The fixed random directions u: row i is example i's, N(0, 1) entries from a NumPy
    generator seeded with 7919, one column per unit of the widest recurrent layer (a
    layer with n units uses the first n columns, normalized)."""
    width = max(int(tf.nest.flatten(layer.cell.state_size)[0]) for layer in layers)
    return np.random.default_rng(7919).standard_normal((examples, width)).astype("float32")


def _transport_term(call: LayerCall, directions: tf.Tensor) -> tf.Tensor:
    """sum over the batch of u_i . h_T, u_i the example's fixed random unit vector
    (:func:`transport_directions`)."""
    h = call.lane_final  # (B, units): the transport lane's last state
    dtype = tf.float64 if h.dtype == tf.float64 else tf.float32
    u = tf.cast(directions[:, : h.shape[-1]], dtype)
    u = u / tf.norm(u, axis=-1, keepdims=True)
    return tf.reduce_sum(tf.cast(h, dtype) * u)


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


@contextlib.contextmanager
def _quiet_retracing_warnings() -> Iterator[None]:
    """Hide TensorFlow's "N calls triggered retracing" warning: one compiled probe per
    model and shape is by design, and probing many models in a notebook is normal use."""
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")
    try:
        yield
    finally:
        logger.setLevel(level)


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

    def references(x):
        """Keras's own forward pass, recording what each recurrent layer returned."""
        recorded: list[Any] = []
        with _recording_calls(layers, recorded):
            output = model(x, training=False)
        return recorded, output

    # Short sequences run eagerly faster than a graph is traced; long ones need a graph.
    steps = max(int(tf.shape(c["inputs"])[1]) for c in result["captures"])
    if steps * len(layers) > EAGER_CHECK_STEPS:
        references = tf.function(references, autograph=False)
    with _quiet_retracing_warnings():
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
            global_norm=self._global_norm(),
        )

    def _global_norm(self) -> float | None:
        if not self.weights_exact or self.weight_sums is None:
            return None
        squares = sum(float(np.sum(np.square(g / self.examples))) for g in self.weight_sums)
        return math.sqrt(squares)


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


def global_norm(
    model: keras.Model, x: Any, y: Any = None, *, loss: Any = None, batch_size: int | None = None
) -> tuple[float, LossSpec]:
    """The norm of the gradient of the loss an optimizer would see, w.r.t. every
    trainable weight: the loss reduced as Keras reduces it, plus the model's own
    regularization losses; over several batches, the example-weighted mean gradient."""
    check_model(model)
    spec, batches = prepare_batches(
        model, x, y, lambda has: resolve_loss(model, loss, has_targets=has), batch_size=batch_size
    )
    total, count = None, 0
    for batch in batches:
        specs = _specs(batch.x, batch.y, False)
        key = (spec.key, batch.y is None, repr(specs))
        per_model = _NORM_CACHE.setdefault(model, {})
        if key not in per_model:
            per_model[key] = (_compile_gradients(model, spec, specs), spec.loss)
        function = per_model[key][0]
        args = [batch.x] if batch.y is None else [batch.x, batch.y]
        with _quiet_retracing_warnings():
            grads = [g.numpy().astype(np.float64) * batch.size for g in function(*args)]
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
        grads = tape.gradient(value, weights, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        # Embeddings have sparse (IndexedSlices) gradients: densify them.
        return [tf.cast(tf.convert_to_tensor(g), tf.float64) for g in grads]

    return tf.function(gradients, input_signature=specs)
