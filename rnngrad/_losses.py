"""The loss the probe differentiates: which one, per example, and as Keras reduces it
(private: used by the probe's engine and the modules that run a user's model)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import keras
import tensorflow as tf

from rnngrad._replay import refuse

__all__ = ["LOSS_NAMES", "LossSpec", "check_loss_argument", "loss_for_targets", "resolve_loss"]

LOSS_NAMES = (
    "mse",
    "sparse_categorical_crossentropy",
    "categorical_crossentropy",
    "binary_crossentropy",
)
"""The loss names the book uses; any name ``keras.losses.get`` knows also works."""

STATES = ("h", "c", "all")


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
        mask): functions and losses with the default reduction do, unless the loss masks
        entries itself (``ignore_class``: Keras then divides by the entries kept)."""
        if self.loss is None or not isinstance(self.loss, keras.losses.Loss):
            return True
        if getattr(self.loss, "_fn_kwargs", {}).get("ignore_class") is not None:
            return False
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
        if loss is not None:
            # a loss of targets cannot be differentiated without them; using the
            # target-free loss instead would return other gradients than asked for
            raise ValueError(
                f"loss={_describe_argument(loss)} needs targets, but y is None: pass y, or "
                "leave loss unset to probe the target-free loss 1/2 ||output||^2"
            )
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
        # By identity (the object kept alive in the key): two Loss objects with the same
        # config can compute different losses (a parameter get_config leaves out)
        key = ("object", id(loss), loss)
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


def _describe_argument(loss: Any) -> str:
    """``loss`` as an error message names it: a name quoted, an object by its class."""
    if isinstance(loss, str):
        return repr(loss)
    return getattr(loss, "__name__", None) or type(loss).__name__


def loss_for_targets(loss: Any, y: Any) -> Any:
    """The experiments' convention: their ``loss`` (MSE by default) is the loss of the
    targets, and without targets they probe the target-free loss ``1/2 ||output||^2``.
    The public probes refuse a loss without targets instead, so an experiment passes
    them ``None`` when ``y`` is None."""
    return loss if y is not None else None
