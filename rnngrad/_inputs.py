"""A user's model and data, checked once and cut into batches (private: used by the
probe's engine and the modules that run a user's model)."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from rnngrad._losses import LossSpec
from rnngrad._validation import check_int

__all__ = [
    "Batch",
    "check_inputs",
    "check_model",
    "check_targets",
    "input_names",
    "input_structure",
    "prepare_batches",
]


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
    return spec, _slices(xs, ys, batch_size)


def _slices(xs: Any, ys: np.ndarray | None, batch_size: int | None) -> Iterator[Batch]:
    """Checked inputs and targets in batches of at most ``batch_size`` (all at once
    without one)."""
    size = _batch_size(xs)
    step = batch_size or size
    for start in range(0, size, step):
        part = slice(start, min(start + step, size))
        yield Batch(
            tf.nest.map_structure(lambda a, p=part: a[p], xs),
            None if ys is None else ys[part],
            part.stop - part.start,
        )


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
            xb = tf.nest.map_structure(_numpy, xb)
            try:
                xb = check_inputs(model, xb)
            except ValueError as err:
                raise ValueError(f"{err}{_unbatched_hint(model, xb)}") from None
            yb = None if yb is None else check_targets(model, xb, _numpy(yb), spec)
            yield from _slices(xb, yb, batch_size)

    return spec, batches()


def _unbatched_hint(model: keras.Model, xb: Any) -> str:
    """A hint when a dataset's element has one dimension fewer than the model's input:
    single examples, not batches."""
    inputs = getattr(model, "inputs", None) or []
    parts = tf.nest.flatten(xb)
    if inputs and parts and len(np.shape(parts[0])) == len(inputs[0].shape) - 1:
        return (
            "; the dataset's elements look like single examples: batch it first, "
            "e.g. dataset.batch(32)"
        )
    return ""


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
    if spec is None:  # a subclassed model declares no inputs: its own precision
        dtype = "int32" if np.issubdtype(array.dtype, np.integer) else _float_dtype(model)
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


# The output shape a model computes for an input shape (without the batch), per model:
# Keras's shape inference runs through the whole graph, which costs more than a short
# probe, and a built model's answer for a given input shape does not change.
_OUTPUT_SHAPES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def structure_key(model: keras.Model) -> tuple:
    """What a cached result about ``model`` (a compiled probe, its output shape) depends
    on besides the inputs and the loss: its layers and which variables are trainable. A
    layer added or popped, or a layer frozen or unfrozen, gives a new key."""
    return (
        tuple(id(layer) for layer in model.layers),
        tuple(id(variable) for variable in model.trainable_variables),
    )


def _output_shape(model: keras.Model, xs: Any) -> tuple | None:
    """The output's shape for this batch; None entries where it cannot be known."""
    batch = _batch_size(xs)
    shapes = tf.nest.map_structure(lambda a: tuple(a.shape[1:]), xs)
    known = _OUTPUT_SHAPES.setdefault(model, {})
    key = (repr(shapes), structure_key(model))
    if key not in known:
        known[key] = _computed_output_shape(model, xs)
    rest = known[key]
    return None if rest is None else (batch, *rest)


def _computed_output_shape(model: keras.Model, xs: Any) -> tuple | None:
    """The output's shape after the batch axis; None where it cannot be known."""
    try:
        shapes = tf.nest.map_structure(lambda a: tuple(a.shape), xs)
        shape = model.compute_output_shape(shapes)
        if isinstance(shape, tuple) and all(d is None or isinstance(d, int) for d in shape):
            return tuple(shape[1:])
    except Exception:  # subclassed models may not know their output shape
        pass
    outputs = _model_outputs(model)
    if outputs is not None:
        return tuple(outputs[0].shape)[1:]
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
        if outputs:
            output_dtype = keras.backend.standardize_dtype(outputs[0].dtype)
            dtype = "float64" if output_dtype == "float64" else "float32"  # as the model
        else:  # a subclassed model: its own precision
            dtype = _float_dtype(model)
        return array.astype(dtype, copy=False)
    return array


def _float_dtype(model: keras.Model) -> str:
    """float64 for a model that computes in float64 (its dtype policy), else float32:
    arrays are never rounded below the model's own precision."""
    compute = keras.backend.standardize_dtype(getattr(model, "compute_dtype", None) or "float32")
    return "float64" if compute == "float64" else "float32"
