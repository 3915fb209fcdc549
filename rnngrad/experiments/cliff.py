"""Pascanu's cliff: the one-unit recurrent network whose loss surface has a wall.

Pascanu, Mikolov & Bengio (2013, section 3) illustrate exploding gradients with a
network of a single unit,

    x_t = w * sigmoid(x_{t-1}) + b,    t = 1..T,    x_0 = 0.5,

and the loss ``E = (sigmoid(x_T) - target)^2`` on the last state (their figure 6 uses
T = 50 and target 0.7). Over ``(w, b)`` the loss is flat almost everywhere, but along a
curve the final state jumps from one fixed point of the map to the other: a *wall*, on
which the gradient is huge and points straight across it. Gradient descent that hits the
wall is thrown far away; clipping the gradient's norm (their Algorithm 1) keeps the step
small.

Everything here is float64 NumPy with exact back-propagation through time, so the wall
can be resolved as finely as float64 allows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rnngrad._validation import check_array, check_float, check_int

__all__ = ["CliffPath", "cliff_loss_and_gradient", "cliff_states", "gradient_descent"]


def _sigmoid(v: np.ndarray) -> np.ndarray:
    # exp of a large positive argument overflows to inf, and 1/inf = 0: the right limit.
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-v))


def _check_problem(steps: int, x0: float, target: float) -> tuple[int, float, float]:
    steps = check_int("steps", steps, minimum=1)
    x0 = check_float("x0", x0)
    target = check_float("target", target)
    return steps, x0, target


def _parameters(w: object, b: object) -> tuple[np.ndarray, np.ndarray]:
    w = check_array("w", w).astype(np.float64)
    b = check_array("b", b).astype(np.float64)
    try:
        w, b = np.broadcast_arrays(w, b)
    except ValueError:
        raise ValueError(
            f"w and b must broadcast together, got shapes {w.shape} and {b.shape}"
        ) from None
    if not (np.all(np.isfinite(w)) and np.all(np.isfinite(b))):
        raise ValueError("w and b must be finite")
    return w, b


def cliff_states(w: object, b: object, *, steps: int = 50, x0: float = 0.5) -> np.ndarray:
    """The states ``x_0, ..., x_T`` of the one-unit network for every ``(w, b)``.

    Parameters
    ----------
    w, b : float or array-like
        Recurrent weight and bias; arrays broadcast together (e.g. a mesh grid).
    steps : int, default 50
        ``T``, the number of steps.
    x0 : float, default 0.5
        The initial state.

    Returns
    -------
    numpy.ndarray
        float64, shape ``(T + 1, *broadcast shape)``; ``[t]`` is ``x_t``.

    Examples
    --------
    >>> cliff_states(2.0, -1.0, steps=2).round(4).tolist()
    [0.5, 0.2449, 0.1219]
    """
    steps, x0, _ = _check_problem(steps, x0, 0.0)
    w, b = _parameters(w, b)
    states = np.empty((steps + 1, *w.shape))
    states[0] = x0
    for t in range(steps):
        states[t + 1] = w * _sigmoid(states[t]) + b
    return states


def cliff_loss_and_gradient(
    w: object,
    b: object,
    *,
    steps: int = 50,
    x0: float = 0.5,
    target: float = 0.7,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The loss ``E = (sigmoid(x_T) - target)^2`` and its exact gradient in ``(w, b)``.

    The gradient is back-propagation through time written out: with
    ``delta_T = dE/dx_T`` and ``delta_{t-1} = delta_t * w * sigmoid'(x_{t-1})``,
    ``dE/dw = sum_t delta_t * sigmoid(x_{t-1})`` and ``dE/db = sum_t delta_t``.

    Parameters
    ----------
    w, b : float or array-like
        Recurrent weight and bias; arrays broadcast together.
    steps : int, default 50
        ``T``.
    x0 : float, default 0.5
        The initial state.
    target : float, default 0.7
        The target for ``sigmoid(x_T)``.

    Returns
    -------
    loss, dE_dw, dE_db : numpy.ndarray
        float64 arrays of the broadcast shape (0-d for scalar inputs).

    Examples
    --------
    >>> loss, dw, db = cliff_loss_and_gradient(4.0, -2.5)
    >>> round(float(loss), 4)
    0.3421
    """
    steps, x0, target = _check_problem(steps, x0, target)
    states = cliff_states(w, b, steps=steps, x0=x0)
    w = np.broadcast_to(np.asarray(w, np.float64), states.shape[1:])
    out = _sigmoid(states[-1])
    loss = (out - target) ** 2
    delta = 2.0 * (out - target) * out * (1.0 - out)  # dE/dx_T
    grad_w = np.zeros_like(delta)
    grad_b = np.zeros_like(delta)
    for t in range(steps, 0, -1):  # x_t = w * s(x_{t-1}) + b
        s = _sigmoid(states[t - 1])
        grad_w += delta * s
        grad_b += delta
        delta = delta * w * s * (1.0 - s)  # dE/dx_{t-1}
    return loss, grad_w, grad_b


@dataclass
class CliffPath:
    """A gradient-descent run on the cliff.

    Attributes
    ----------
    params : numpy.ndarray
        ``(n + 1, 2)``: ``(w, b)`` before each update and after the last.
    losses : numpy.ndarray
        ``(n + 1,)``: the loss at each point of ``params``.
    grad_norms : numpy.ndarray
        ``(n,)``: the norm of the raw (unclipped) gradient at each update.
    clip_norm : float or None
        The clipping threshold used, if any.
    """

    params: np.ndarray
    losses: np.ndarray
    grad_norms: np.ndarray
    clip_norm: float | None

    @property
    def step_lengths(self) -> np.ndarray:
        """``(n,)``: the distance in ``(w, b)`` travelled by each update."""
        return np.linalg.norm(np.diff(self.params, axis=0), axis=1)


def gradient_descent(
    start: tuple[float, float],
    *,
    learning_rate: float,
    n_updates: int,
    clip_norm: float | None = None,
    steps: int = 50,
    x0: float = 0.5,
    target: float = 0.7,
) -> CliffPath:
    """Plain gradient descent on the cliff, optionally with norm clipping.

    With ``clip_norm = c``, a gradient ``g`` with ``||g|| > c`` is replaced by
    ``c * g / ||g||`` before the update (Pascanu et al.'s Algorithm 1): the direction is
    kept, only the step is shortened.

    Parameters
    ----------
    start : tuple of float
        ``(w, b)`` to start from.
    learning_rate : float
        Step size, > 0.
    n_updates : int
        Number of updates, >= 1.
    clip_norm : float, optional
        Clipping threshold, > 0; None for no clipping.
    steps, x0, target
        The problem, as in :func:`cliff_loss_and_gradient`.

    Returns
    -------
    CliffPath

    Examples
    --------
    >>> path = gradient_descent(
    ...     (4.0, -2.5), learning_rate=1.0, n_updates=3, clip_norm=0.5
    ... )
    >>> path.params.shape, bool(path.step_lengths.max() <= 0.5 + 1e-12)
    ((4, 2), True)
    """
    start = check_array("start", start, ndim=1).astype(np.float64)
    if start.shape != (2,) or not np.all(np.isfinite(start)):
        raise ValueError(f"start must be a finite pair (w, b), got {start.tolist()}")
    learning_rate = check_float("learning_rate", learning_rate, positive=True)
    n_updates = check_int("n_updates", n_updates, minimum=1)
    if clip_norm is not None:
        clip_norm = check_float("clip_norm", clip_norm, positive=True)
    steps, x0, target = _check_problem(steps, x0, target)
    params = np.empty((n_updates + 1, 2))
    losses = np.empty(n_updates + 1)
    norms = np.empty(n_updates)
    params[0] = start
    for i in range(n_updates + 1):
        loss, gw, gb = cliff_loss_and_gradient(*params[i], steps=steps, x0=x0, target=target)
        losses[i] = loss
        if i == n_updates:
            break
        grad = np.array([gw, gb], dtype=np.float64)
        norms[i] = np.linalg.norm(grad)
        if clip_norm is not None and norms[i] > clip_norm:
            grad *= clip_norm / norms[i]
        params[i + 1] = params[i] - learning_rate * grad
    return CliffPath(params=params, losses=losses, grad_norms=norms, clip_norm=clip_norm)
