"""The curvature of a model's loss: Hessian-vector products and the extreme eigenvalues.

Gradient descent with step ``eta`` on a quadratic with curvature ``lambda`` multiplies the
distance to the minimum by ``1 - eta * lambda`` per step, so it is stable only for
``eta < 2 / lambda_max``. Whether a run that blows up did so because its step was too
large for the curvature at its start, or because it met a region of much larger
curvature on the way (Pascanu et al.'s cliffs), is a question about ``lambda_max`` of the
loss's Hessian ``H`` with respect to the trainable weights.

:func:`hessian_vector_product` computes ``H v`` exactly by differentiating the gradient
(one forward and two backward passes, never forming ``H``). :func:`hessian_extremes`
runs the Lanczos method on those products (with full reorthogonalization) and returns
the largest and the smallest eigenvalue of ``H``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from rnngrad._validation import check_array, check_int

__all__ = ["hessian_extremes", "hessian_vector_product"]

LossFn = Callable[[Any, Any], Any]


def hessian_vector_product(
    model: keras.Model, x: Any, y: Any, vector: Any, *, loss: str | LossFn = "mse"
) -> np.ndarray:
    """``H v``, the Hessian of the mean loss over ``(x, y)`` times a vector of weights.

    Parameters
    ----------
    model : keras.Model
        A built model; ``H`` is taken with respect to ``model.trainable_variables``,
        flattened and concatenated in that order.
    x, y : array-like
        Inputs and targets; the loss is the mean over every example given, with the
        model run with ``training=False``.
    vector : array-like
        ``(P,)``, P the number of trainable weights.
    loss : str or callable, default "mse"
        A Keras loss name or a callable ``(y_true, y_pred) -> per-example losses``.

    Returns
    -------
    numpy.ndarray
        ``(P,)``, float64.

    Examples
    --------
    >>> import keras
    >>> model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    >>> x, y = np.array([[1.0], [3.0]]), np.zeros((2, 1))
    >>> # 2 mean [x^2, x]
    >>> hessian_vector_product(model, x, y, [1.0, 0.0]).round(6).tolist()
    [10.0, 4.0]
    """
    product, size = _compiled_product(model, x, y, loss)
    vector = check_array("vector", vector, ndim=1).astype(np.float64)
    if vector.size != size:
        raise ValueError(
            f"vector must have {size} entries (the trainable weights), got {vector.size}"
        )
    return product(vector)


def hessian_extremes(
    model: keras.Model,
    x: Any,
    y: Any,
    *,
    loss: str | LossFn = "mse",
    iterations: int = 40,
    seed: int = 0,
) -> tuple[float, float]:
    """The largest and smallest eigenvalues of the loss's Hessian, by the Lanczos method.

    Parameters
    ----------
    model, x, y, loss
        As for :func:`hessian_vector_product`.
    iterations : int, default 40
        Lanczos steps (Hessian-vector products), >= 2. The extreme eigenvalues
        converge first; with as many steps as weights the result is exact up to
        rounding. At most the number of weights are used.
    seed : int, default 0
        Seed of the random starting vector.

    Returns
    -------
    tuple of float
        ``(lambda_max, lambda_min)``: the largest and the smallest Ritz values, which
        approach the Hessian's extreme eigenvalues from inside.

    Examples
    --------
    >>> import keras
    >>> model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    >>> x, y = np.array([[1.0], [3.0]]), np.zeros((2, 1))
    >>> # the eigenvalues of [[10, 4], [4, 2]], 6 +- sqrt(32) (float32 arithmetic)
    >>> [round(v, 4) for v in hessian_extremes(model, x, y)]
    [11.6569, 0.3431]
    """
    product, size = _compiled_product(model, x, y, loss)
    iterations = min(check_int("iterations", iterations, minimum=2), size)
    rng = np.random.default_rng(check_int("seed", seed))
    basis = np.zeros((iterations, size))
    alphas, betas = [], []
    v = rng.normal(size=size)
    v /= np.linalg.norm(v)
    w = np.zeros(size)
    beta = 0.0
    for j in range(iterations):
        basis[j] = v
        w = product(v) - beta * (basis[j - 1] if j else 0.0)
        alpha = float(w @ v)
        w -= alpha * v
        for _ in range(2):  # full reorthogonalization, twice is enough
            w -= basis[: j + 1].T @ (basis[: j + 1] @ w)
        alphas.append(alpha)
        beta = float(np.linalg.norm(w))
        if j == iterations - 1 or beta <= 1e-12 * max(abs(a) for a in alphas):
            break
        betas.append(beta)
        v = w / beta
    tridiagonal = np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)
    ritz = np.linalg.eigvalsh(tridiagonal)
    return float(ritz[-1]), float(ritz[0])


def _compiled_product(model, x, y, loss):
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model, got {type(model).__name__}")
    weights = list(model.trainable_variables)
    if not weights:
        raise ValueError("model has no trainable weights")
    x = check_array("x", x)
    y = check_array("y", y)
    if len(x) != len(y):
        raise ValueError(
            f"x and y must have the same number of examples, got {len(x)} and {len(y)}"
        )
    if isinstance(loss, str):
        try:
            loss_fn = keras.losses.get(loss)
        except ValueError:
            message = f"loss must be a Keras loss name or a callable, got {loss!r}"
            raise ValueError(message) from None
    elif callable(loss):
        loss_fn = loss
    else:
        raise TypeError(f"loss must be a Keras loss name or a callable, got {type(loss).__name__}")
    dtype = weights[0].dtype
    x_t, y_t = tf.constant(x, dtype=dtype), tf.constant(y, dtype=dtype)
    shapes = [tuple(w.shape) for w in weights]
    sizes = [int(np.prod(s)) for s in shapes]

    @tf.function(reduce_retracing=True)
    def hvp(pieces):
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                value = tf.reduce_mean(loss_fn(y_t, model(x_t, training=False)))
            grads = inner.gradient(value, weights)
            dot = tf.add_n([tf.reduce_sum(g * p) for g, p in zip(grads, pieces)])
        return outer.gradient(dot, weights)

    def product(vector: np.ndarray) -> np.ndarray:
        pieces, start = [], 0
        for shape, size in zip(shapes, sizes):
            pieces.append(tf.constant(vector[start : start + size].reshape(shape), dtype=dtype))
            start += size
        result = hvp(pieces)
        return np.concatenate([np.asarray(r, dtype=np.float64).ravel() for r in result])

    return product, sum(sizes)
