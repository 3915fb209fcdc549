"""The curvature that decides whether a gradient step is stable: Hessian-vector products,
the largest Hessian eigenvalue (the *sharpness*), and the step size it allows.

Gradient descent on a quadratic with curvature ``lam`` multiplies the error by
``1 - eta * lam`` each step, so it diverges once ``eta > 2 / lam``. Heavy-ball momentum
``beta`` (Keras's ``SGD(momentum=beta)``: ``v <- beta v - eta g``, ``w <- w + v``) moves
the limit to ``eta * lam < 2 (1 + beta)``. Near a point of a network's loss the largest
eigenvalue ``lambda_max`` of the Hessian plays the role of ``lam``: a step larger than
:func:`stability_limit` is *too large for the local curvature*, whatever the length of
the sequence. This is a different thing from an exploding BPTT gradient (one that grows
with the lag), and the remedies chapters keep the two apart.

:func:`hessian_vector_product` differentiates the batch-mean loss twice (no Hessian is
formed); :func:`sharpness` runs Lanczos iterations on those products and returns the
extreme eigenvalues.
"""

from __future__ import annotations

import hashlib
import math
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from rnngrad._validation import check_array, check_float, check_int
from rnngrad.callbacks import updates_made
from rnngrad.training import architecture_key

__all__ = [
    "Sharpness",
    "SharpnessHistory",
    "hessian_vector_product",
    "sharpness",
    "stability_limit",
]

# One compiled Hessian-vector product per (model, batch, loss): tracing a recurrent model
# twice-differentiated costs seconds, and the weights are read when it runs, so a model
# whose weights are replaced (train_seeds, a callback) reuses it.
_HVP_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def stability_limit(learning_rate: float, momentum: float = 0.0) -> float:
    """The largest curvature at which (heavy-ball) gradient descent is stable: 2 (1 + beta) / eta.

    On a quadratic ``lam w^2 / 2`` Keras's SGD with learning rate ``eta`` and momentum
    ``beta`` converges when ``eta * lam < 2 (1 + beta)`` and diverges when it is larger
    (0 <= beta < 1).

    Parameters
    ----------
    learning_rate : float
        ``eta`` > 0.
    momentum : float, default 0.0
        ``beta`` in [0, 1).

    Returns
    -------
    float

    Examples
    --------
    >>> # SGD at 0.1, momentum 0.9: curvature up to 38
    >>> round(stability_limit(0.1, 0.9), 12)
    38.0
    """
    eta = check_float("learning_rate", learning_rate, positive=True)
    beta = check_float("momentum", momentum)
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {beta}")
    return 2.0 * (1.0 + beta) / eta


def _loss_function(loss: str | Callable) -> Callable:
    if isinstance(loss, str):
        try:
            return keras.losses.get(loss)
        except ValueError:
            raise ValueError(f"loss must name a Keras loss, got {loss!r}") from None
    if callable(loss):
        return loss
    raise TypeError(f"loss must be a Keras loss name or a callable, got {type(loss).__name__}")


def _check_model(model: Any) -> list:
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model, got {type(model).__name__}")
    variables = list(model.trainable_variables)
    if not variables:
        raise ValueError(f"model {model.name!r} has no trainable variables")
    return variables


def _hvp_function(model: keras.Model, x: Any, y: Any, loss: str | Callable) -> Callable:
    """A compiled ``vectors -> H vectors`` for the batch-mean loss of ``model`` on (x, y)."""
    variables = _check_model(model)
    x = check_array("x", x)
    y = check_array("y", y)
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same number of examples, got {len(x)}, {len(y)}")
    per_example = _loss_function(loss)
    digest = hashlib.sha1()
    for array in (x, y):
        digest.update(str((array.shape, array.dtype)).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    key = (digest.hexdigest(), loss if isinstance(loss, str) else id(loss))
    cached = _HVP_CACHE.setdefault(model, {})
    if key not in cached:
        cached[key] = _compile_hvp(model, variables, x, y, per_example)
    return cached[key]


def _compile_hvp(model, variables, x, y, per_example) -> Callable:
    dtype = variables[0].dtype
    x_t, y_t = tf.constant(x, dtype), tf.constant(y, dtype)
    sources = [getattr(v, "value", v) for v in variables]
    signature = [tf.TensorSpec(v.shape, dtype) for v in variables]

    @tf.function(input_signature=[signature])
    def hvp(vectors):
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                value = tf.reduce_mean(per_example(y_t, model(x_t, training=False)))
            grads = inner.gradient(value, sources, unconnected_gradients="zero")
            dot = tf.add_n([tf.reduce_sum(g * v) for g, v in zip(grads, vectors)])
        return outer.gradient(dot, sources, unconnected_gradients="zero")

    return hvp


def hessian_vector_product(
    model: keras.Model, x: Any, y: Any, vectors: Sequence[Any], *, loss: str | Callable = "mse"
) -> list[np.ndarray]:
    """``H v``: the Hessian of the batch-mean loss times one vector per trainable variable.

    Parameters
    ----------
    model : keras.Model
        Evaluated with ``training=False``.
    x, y : array-like
        The batch and its targets.
    vectors : list of array-like
        One array per trainable variable, of its shape.
    loss : str or callable, default "mse"
        A Keras loss name (``keras.losses.get``) or ``(y_true, y_pred) -> (B,)``.

    Returns
    -------
    list of numpy.ndarray
        float64 arrays, one per variable.

    Examples
    --------
    >>> import rnngrad
    >>> model = keras.Sequential(
    ...     [keras.Input((1,)), keras.layers.Dense(1, use_bias=False)]
    ... )
    >>> x = np.array([[1.0], [3.0]], "float32")
    >>> y = np.zeros((2, 1), "float32")
    >>> # 2 mean(x^2)
    >>> hessian_vector_product(model, x, y, [np.ones((1, 1))])[0].tolist()
    [[10.0]]
    """
    variables = _check_model(model)
    if isinstance(vectors, np.ndarray) or not isinstance(vectors, Sequence):
        raise TypeError("vectors must be a list of arrays, one per trainable variable")
    if len(vectors) != len(variables):
        raise ValueError(f"vectors must hold {len(variables)} arrays, got {len(vectors)}")
    arrays = []
    for v, variable in zip(vectors, variables):
        array = check_array("vectors", v)
        if array.shape != tuple(variable.shape):
            raise ValueError(f"vectors: expected shape {tuple(variable.shape)}, got {array.shape}")
        arrays.append(tf.constant(array, variable.dtype))
    hvp = _hvp_function(model, x, y, loss)
    return [np.asarray(h, dtype=np.float64) for h in hvp(arrays)]


@dataclass
class Sharpness:
    """The extreme eigenvalues of the loss Hessian found by Lanczos iteration.

    Attributes
    ----------
    largest : float
        The largest (most positive) eigenvalue, ``lambda_max``: the sharpness.
    smallest : float
        The most negative one (the loss is not convex away from a minimum).
    residual : float
        ``||H v - largest v|| / |largest|`` for the returned eigenvector: how well it
        has converged.
    iterations : int
        Lanczos steps taken.
    """

    largest: float
    smallest: float
    residual: float
    iterations: int


def sharpness(
    model: keras.Model,
    x: Any,
    y: Any,
    *,
    iterations: int = 20,
    loss: str | Callable = "mse",
    seed: int = 0,
) -> Sharpness:
    """The largest eigenvalue of the Hessian of the batch-mean loss, by Lanczos iteration.

    Lanczos with full re-orthogonalization, on Hessian-vector products of the model in
    its own dtype; the extreme Ritz values converge first, so a few tens of steps give
    ``lambda_max`` to a few digits (``residual`` says how well).

    Parameters
    ----------
    model : keras.Model
    x, y : array-like
        The batch the loss is measured on.
    iterations : int, default 20
        Lanczos steps (at most the number of weights), >= 2.
    loss : str or callable, default "mse"
    seed : int, default 0
        Seeds the random start vector.

    Returns
    -------
    Sharpness

    Examples
    --------
    >>> model = keras.Sequential(
    ...     [keras.Input((2,)), keras.layers.Dense(1, use_bias=False)]
    ... )
    >>> x = np.array([[1.0, 0.0], [0.0, 2.0]], "float32")
    >>> y = np.zeros((2, 1), "float32")
    >>> round(sharpness(model, x, y, iterations=2).largest, 4)  # Hessian diag(1, 4)
    4.0
    """
    variables = _check_model(model)
    iterations = check_int("iterations", iterations, minimum=2)
    hvp = _hvp_function(model, x, y, loss)
    shapes = [tuple(v.shape) for v in variables]
    sizes = [int(np.prod(s)) for s in shapes]
    n = sum(sizes)
    iterations = min(iterations, n)
    dtype = variables[0].dtype

    def apply(flat: np.ndarray) -> np.ndarray:
        parts = np.split(flat, np.cumsum(sizes)[:-1])
        pieces = [tf.constant(p.reshape(s), dtype) for p, s in zip(parts, shapes)]
        return np.concatenate([np.asarray(h, np.float64).ravel() for h in hvp(pieces)])

    rng = np.random.default_rng(seed)
    basis = np.zeros((iterations, n))
    v = rng.standard_normal(n)
    basis[0] = v / np.linalg.norm(v)
    alpha, beta = [], []
    for k in range(iterations):
        w = apply(basis[k])
        alpha.append(float(basis[k] @ w))
        w -= basis[: k + 1].T @ (basis[: k + 1] @ w)  # full re-orthogonalization, twice
        w -= basis[: k + 1].T @ (basis[: k + 1] @ w)
        norm = float(np.linalg.norm(w))
        if k == iterations - 1 or norm < 1e-12 * max(1.0, abs(alpha[-1])):
            break
        beta.append(norm)
        basis[k + 1] = w / norm
    m = len(alpha)
    tridiagonal = np.diag(alpha) + np.diag(beta[: m - 1], 1) + np.diag(beta[: m - 1], -1)
    values, vectors = np.linalg.eigh(tridiagonal)
    top = basis[:m].T @ vectors[:, -1]
    residual = np.linalg.norm(apply(top) - values[-1] * top) / max(abs(values[-1]), 1e-300)
    return Sharpness(
        largest=float(values[-1]),
        smallest=float(values[0]),
        residual=float(residual),
        iterations=m,
    )


class SharpnessHistory(keras.callbacks.Callback):
    """Measure the sharpness on a fixed batch at chosen update counts during training.

    Parameters
    ----------
    x, y : array-like
        The batch the loss Hessian is measured on.
    at_updates : sequence of int
        Update counts (0 = before the first update) at which to measure.
    iterations : int, default 20
        Lanczos steps per measurement (see :func:`sharpness`).
    loss : str or callable, default "mse"
    measure_on : keras.Model, optional
        A model of the trained one's architecture to measure on, with the trained
        weights loaded into it: one whose Hessian-vector product on ``(x, y)`` is
        compiled already (tracing one for the trained model costs seconds). Its weights
        are overwritten.

    Attributes
    ----------
    runs : list of dict
        One per ``fit`` (a model reused for several seeds gives one per seed): ``steps``
        (the update counts measured) and ``largest`` (``lambda_max`` there, NaN when a
        weight was no longer finite). Updates the run never reached are missing.

    Examples
    --------
    >>> import rnngrad
    >>> x, y = rnngrad.tasks.adding_problem(32, 5, seed=0)
    >>> model = rnngrad.build_rnn("simple", 4, input_dim=2)
    >>> history = SharpnessHistory(x, y, at_updates=[0, 2], iterations=5)
    >>> _ = rnngrad.training.train(
    ...     model, x, y, epochs=1, batch_size=8, callbacks=[history]
    ... )
    >>> history.runs[0]["steps"]
    [0, 2]
    """

    def __init__(
        self,
        x: Any,
        y: Any,
        *,
        at_updates: Iterable[int],
        iterations: int = 20,
        loss: str | Callable = "mse",
        measure_on: keras.Model | None = None,
    ) -> None:
        super().__init__()
        if measure_on is not None and not isinstance(measure_on, keras.Model):
            raise TypeError(f"measure_on must be a keras.Model, got {type(measure_on).__name__}")
        self.measure_on = measure_on
        self.x = check_array("x", x)
        self.y = check_array("y", y)
        if isinstance(at_updates, (str, bytes)) or not isinstance(at_updates, Iterable):
            raise TypeError("at_updates must be an iterable of update counts")
        self.at_updates = sorted({check_int("at_updates", u, minimum=0) for u in at_updates})
        if not self.at_updates:
            raise ValueError("at_updates must name at least one update count")
        self.iterations = check_int("iterations", iterations, minimum=2)
        _loss_function(loss)
        self.loss = loss
        self.runs: list[dict[str, list]] = []
        self._count = 0
        self._first_update = 0

    def _measure(self) -> None:
        run = self.runs[-1]
        run["steps"].append(self._count)
        finite = all(np.all(np.isfinite(np.asarray(v))) for v in self.model.trainable_variables)
        value = math.nan
        if finite:
            target = self.model
            if self.measure_on is not None and self.measure_on is not self.model:
                if architecture_key(self.measure_on) != architecture_key(self.model):
                    raise ValueError(
                        "measure_on must have the architecture of the trained model "
                        f"{self.model.name!r}"
                    )
                target = self.measure_on
                target.set_weights(self.model.get_weights())
            found = sharpness(target, self.x, self.y, iterations=self.iterations, loss=self.loss)
            value = found.largest
        run["largest"].append(value)

    watches_batches = False  # it needs the model only after the updates it measures at

    @property
    def updates_per_call(self) -> int | None:
        """The most updates a compiled call may run so that one ends at every update
        measured at (see ``rnngrad.training.steps_per_execution``)."""
        counts = [count for count in self.at_updates if count > 0]
        return math.gcd(*counts) if counts else None

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.runs.append({"steps": [], "largest": []})
        self._count = 0
        self._first_update = updates_made(self.model) or 0
        if 0 in self.at_updates:
            self._measure()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        # a compiled call may run several updates: the optimizer counts them
        made = updates_made(self.model)
        self._count = self._count + 1 if made is None else made - self._first_update
        if self._count in self.at_updates:
            self._measure()
