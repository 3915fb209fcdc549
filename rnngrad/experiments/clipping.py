"""What Keras's clipping options do to a real gradient, measured on Keras itself.

Keras optimizers take three clipping options, and they are not the same algorithm:

- ``global_clipnorm=c``: if the norm of the whole gradient (all variables together)
  exceeds ``c``, rescale it to norm ``c``. This is Pascanu et al.'s (2013) Algorithm 1:
  the step is shortened, its direction is kept exactly.
- ``clipnorm=c``: rescale *each variable's* gradient to norm at most ``c``, each with its
  own factor; the whole gradient's direction changes when variables are scaled
  differently.
- ``clipvalue=c``: clip every element to ``[-c, c]``; the direction changes.

Rather than re-implementing these rules, :func:`optimizer_update` applies a real Keras
optimizer once to zero-valued copies of the variables and reads back what it did, so
:func:`compare_clipping` reports what Keras actually does. :func:`weight_gradients`
gives the gradient a model would be trained on, and :func:`threshold_from_norms` turns
observed gradient norms into a clipping threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from rnngrad._engine import tf_variables  # re-exported: the truncation and Omega code use it
from rnngrad._losses import loss_for_targets, resolve_loss
from rnngrad._validation import check_array, check_choice, check_float
from rnngrad.probes import LossArg, check_model_data
from rnngrad.training import make_optimizer

__all__ = [
    "CLIP_MODES",
    "ClippingEffect",
    "clipped_gradients",
    "compare_clipping",
    "optimizer_update",
    "tf_variables",
    "threshold_from_norms",
    "weight_gradients",
]

CLIP_MODES = ("global_clipnorm", "clipnorm", "clipvalue")
"""Keras's clipping options, in the order the book discusses them."""


def weight_gradients(
    model: keras.Model,
    x: Any,
    y: Any = None,
    *,
    loss: LossArg = "mse",
    variables: Sequence[keras.Variable] | None = None,
) -> list[np.ndarray]:
    """The gradient of the batch-mean loss with respect to every trainable weight.

    This is the gradient Keras's ``fit`` hands to the optimizer for this batch (without
    regularization terms); the model runs with ``training=False``.

    Parameters
    ----------
    model : keras.Model
    x, y : array-like
        A batch and its targets; ``y=None`` uses the target-free loss
        ``1/2 ||output||^2`` as :func:`rnngrad.probes.state_gradient_norms` does.
    loss : str or callable, default "mse"
        One of :data:`rnngrad.probes.LOSSES` or a callable ``(y_true, y_pred) -> (B,)``.
    variables : list of keras.Variable, optional
        Differentiate with respect to these (default ``model.trainable_variables``); e.g.
        another model's variables that ``model`` shares, so gradients line up.

    Returns
    -------
    list of numpy.ndarray
        One float64 array per variable, same shapes (zeros for a variable the loss does
        not depend on).

    Examples
    --------
    >>> import rnngrad
    >>> model = rnngrad.build_rnn("simple", 4, input_dim=2)
    >>> x, y = rnngrad.tasks.adding_problem(8, 5, seed=0)
    >>> [g.shape for g in weight_gradients(model, x, y)]
    [(2, 4), (4, 4), (4,), (4, 1), (1,)]
    """
    loss = loss_for_targets(loss, y)  # y=None: the target-free loss
    x, y = check_model_data(model, x, y, loss)
    variables = list(model.trainable_variables if variables is None else variables)
    if not variables or not all(isinstance(v, keras.Variable) for v in variables):
        raise TypeError("variables must be a non-empty list of keras.Variable")
    spec = resolve_loss(model, loss, has_targets=y is not None)
    with tf.GradientTape() as tape:
        mean_loss = tf.reduce_mean(spec.per_example(y, model(x, training=False)))
    grads = tape.gradient(mean_loss, tf_variables(variables), unconnected_gradients="zero")
    return [np.asarray(g, dtype=np.float64) for g in grads]


def _check_gradients(gradients: Sequence[Any]) -> list[np.ndarray]:
    if isinstance(gradients, np.ndarray) or not isinstance(gradients, Sequence) or not gradients:
        raise TypeError("gradients must be a non-empty list of arrays, one per variable")
    arrays = [check_array("gradients", g).astype(np.float64) for g in gradients]
    if not all(np.all(np.isfinite(g)) for g in arrays):
        raise ValueError("gradients must be finite")
    return arrays


def optimizer_update(
    optimizer: keras.optimizers.Optimizer, gradients: Sequence[Any]
) -> list[np.ndarray]:
    """The change one step of a Keras optimizer makes, given the gradients.

    A fresh copy of ``optimizer`` (from its config, so its state starts empty) is
    applied once to zero-valued variables of the gradients' shapes; the new values are
    the update. The variables are float64, so the update is Keras's rule evaluated in
    double precision (a float32 model's optimizer differs from it by rounding only), and
    small differences between two gradients are not lost to float32 rounding. For SGD
    with ``learning_rate=1`` and no momentum the update is exactly minus the (clipped)
    gradient; for Adam it is Adam's first step.

    Parameters
    ----------
    optimizer : keras.optimizers.Optimizer
        A configured optimizer; it is copied, never modified.
    gradients : list of array-like
        One gradient per variable.

    Returns
    -------
    list of numpy.ndarray
        The updates, float64 arrays of the gradients' shapes.

    Examples
    --------
    >>> sgd = keras.optimizers.SGD(learning_rate=0.5)
    >>> optimizer_update(sgd, [np.array([2.0, -4.0])])[0].tolist()
    [-1.0, 2.0]
    """
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        raise TypeError(f"optimizer must be a keras optimizer, got {type(optimizer).__name__}")
    arrays = _check_gradients(gradients)
    fresh = optimizer.__class__.from_config(optimizer.get_config())
    variables = [keras.Variable(np.zeros(g.shape), dtype="float64") for g in arrays]
    fresh.apply([tf.constant(g, tf.float64) for g in arrays], variables)
    return [np.asarray(v.numpy(), dtype=np.float64) for v in variables]


def clipped_gradients(gradients: Sequence[Any], mode: str, threshold: float) -> list[np.ndarray]:
    """The gradients after Keras's clipping option ``mode`` with ``threshold``.

    Measured, not re-implemented: Keras's SGD with learning rate 1 and the option is
    applied by :func:`optimizer_update`, and the clipped gradient is minus its update.

    Parameters
    ----------
    gradients : list of array-like
        One gradient per variable.
    mode : {"global_clipnorm", "clipnorm", "clipvalue"}
    threshold : float
        The option's value, > 0.

    Returns
    -------
    list of numpy.ndarray

    Examples
    --------
    >>> grads = [np.array([3.0, 4.0])]
    >>> [g.tolist() for g in clipped_gradients(grads, "clipvalue", 1.0)]
    [[1.0, 1.0]]
    """
    check_choice("mode", mode, CLIP_MODES)
    threshold = check_float("threshold", threshold, positive=True)
    sgd = make_optimizer("sgd", 1.0, **{mode: threshold})
    return [-u for u in optimizer_update(sgd, gradients)]


@dataclass
class ClippingEffect:
    """What one clipping option did to one gradient.

    Attributes
    ----------
    mode : str
        The Keras option.
    threshold : float
    cosine : float
        Cosine of the angle between the raw and the clipped gradient, all variables
        concatenated: 1 means the direction is kept.
    raw_norm, clipped_norm : float
        Global norms before and after.
    variable_scales : list of float
        Per variable, ``||clipped|| / ||raw||`` (1 for an untouched variable, NaN for a
        zero gradient).
    """

    mode: str
    threshold: float
    cosine: float
    raw_norm: float
    clipped_norm: float
    variable_scales: list[float]


def compare_clipping(
    gradients: Sequence[Any], threshold: float, *, modes: Sequence[str] = CLIP_MODES
) -> list[ClippingEffect]:
    """Apply each Keras clipping option to the same gradients and measure the change.

    Parameters
    ----------
    gradients : list of array-like
        One gradient per variable, e.g. from :func:`weight_gradients`.
    threshold : float
        The same value for every option, > 0.
    modes : sequence of str, optional
        Which options to apply; every one of :data:`CLIP_MODES` by default.

    Returns
    -------
    list of ClippingEffect
        One per mode, in the order given.

    Examples
    --------
    >>> grads = [np.array([3.0, 1.0]), np.array([0.0, 0.4])]
    >>> effects = compare_clipping(grads, 1.0)
    >>> [(e.mode, round(e.cosine, 4)) for e in effects]
    [('global_clipnorm', 1.0), ('clipnorm', 0.9677), ('clipvalue', 0.888)]
    """
    raw = _check_gradients(gradients)
    if isinstance(modes, str):
        modes = [modes]
    for mode in modes:
        check_choice("modes", mode, CLIP_MODES)
    flat_raw = np.concatenate([g.ravel() for g in raw])
    effects = []
    for mode in modes:
        clipped = clipped_gradients(raw, mode, threshold)
        flat = np.concatenate([g.ravel() for g in clipped])
        cosine = float(flat_raw @ flat / (np.linalg.norm(flat_raw) * np.linalg.norm(flat)))
        with np.errstate(invalid="ignore", divide="ignore"):
            scales = [float(np.linalg.norm(c) / np.linalg.norm(g)) for c, g in zip(clipped, raw)]
        effects.append(
            ClippingEffect(
                mode=mode,
                threshold=float(threshold),
                cosine=cosine,
                raw_norm=float(np.linalg.norm(flat_raw)),
                clipped_norm=float(np.linalg.norm(flat)),
                variable_scales=scales,
            )
        )
    return effects


def threshold_from_norms(norms: Any, *, factor: float = 2.0) -> float:
    """A clipping threshold from observed gradient norms: ``factor`` x their median.

    Pascanu et al. (2013) suggest setting the threshold from the average norm over
    many updates (they found training insensitive to it within a range of about 0.5 to
    10 times that average). The median is used because exploding runs produce a few
    enormous norms that would dominate a mean. Non-finite norms are ignored.

    Parameters
    ----------
    norms : array-like
        Observed global gradient norms, e.g. ``GradientHistory.grad_norms``.
    factor : float, default 2.0
        Multiple of the median, > 0.

    Returns
    -------
    float

    Examples
    --------
    >>> threshold_from_norms([0.5, 1.0, 2.0, float("inf")], factor=2.0)
    2.0
    """
    values = check_array("norms", norms, ndim=1).astype(np.float64)
    factor = check_float("factor", factor, positive=True)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise ValueError("norms must hold at least one finite value")
    if np.any(finite < 0):
        raise ValueError("norms must be non-negative")
    return float(factor * np.median(finite))
