"""Lyapunov exponents and the singular values of Jacobian products of a recurrent network.

A SimpleRNN's step Jacobian is ``J_t = dh_t/dh_{t-1} = diag(phi'(a_t)) W_h``. The same
product of Jacobians carries a perturbation forward and a gradient back:

    dh_T = J_T ... J_{t+1} dh_t        dL/dh_t = dL/dh_T J_T ... J_{t+1}.

Forward, the *largest Lyapunov exponent* ``lambda_1`` is the long-run natural-log growth
per step of a perturbation of the state along the trajectory: ``lambda_1 > 0`` is
chaos (nearby trajectories separate), ``lambda_1 < 0`` means the state forgets where it
started (Sompolinsky, Crisanti & Sommers 1988). Backward, the same number is the
long-lag rate of the gradient, so the edge of chaos and the edge between vanishing and
exploding gradients are one line. :func:`lyapunov_exponents` computes the ``k`` largest
exponents by the standard QR method (Benettin et al. 1980): carry ``k`` orthonormal
tangent vectors along the trajectory, re-orthonormalize them at every step, and average
the logs of the diagonal of ``R``. :func:`lyapunov_scan` does it for every gain of a
grid, as :func:`rnngrad.experiments.scans.gain_scan` does for the gradient.

:func:`product_singular_values` returns the whole singular-value spectrum of
``J_T ... J_{T-l+1}`` for every lag ``l``: dynamical isometry (Pennington, Schoenholz &
Ganguli 2017) asks that they stay near 1, not only their root mean square.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np

from rnngrad._validation import check_array, check_float, check_int
from rnngrad.experiments.meanfield import first_simple_rnn, simple_rnn_preactivations
from rnngrad.models import recurrent_matrix
from rnngrad.theory import activation_derivative

__all__ = [
    "lyapunov_exponents",
    "lyapunov_scan",
    "product_singular_values",
    "simple_rnn_jacobians",
]


def simple_rnn_jacobians(layer: keras.layers.Layer, x: Any) -> np.ndarray:
    """Step Jacobians ``J_t = diag(phi'(a_t)) W_h`` of a SimpleRNN along its trajectory.

    Parameters
    ----------
    layer : keras.layers.SimpleRNN
        A built layer with a linear, tanh, sigmoid or relu activation.
    x : array-like
        The layer's inputs, ``(B, T, features)``.

    Returns
    -------
    numpy.ndarray
        float64, ``(B, T, units, units)``: entry ``[b, t, i, j]`` is
        ``dh_{t,i} / dh_{t-1,j}`` for example ``b`` at steps t = 1..T.

    Examples
    --------
    >>> import rnngrad
    >>> model = rnngrad.build_rnn("simple", 3, input_dim=2, activation="linear")
    >>> j = simple_rnn_jacobians(model.get_layer("simple_1"), np.ones((1, 4, 2)))
    >>> j.shape
    (1, 4, 3, 3)
    >>> bool(np.allclose(j[0, 2], recurrent_matrix(model.get_layer("simple_1"))))
    True
    """
    derivative, w_h = _derivatives(layer, x)
    return derivative[..., :, None] * w_h  # (B, T, n, 1) * (n, n)


def lyapunov_exponents(
    jacobians: Any, k: int = 1, *, skip: int = 0, seed: int = 0, start: Any = None
) -> np.ndarray:
    """The ``k`` largest Lyapunov exponents of a sequence of Jacobians, by the QR method.

    ``k`` tangent vectors start orthonormal; at every step they are multiplied by
    ``J_t`` and re-orthonormalized, ``J_t Q_{t-1} = Q_t R_t``. The i-th exponent is the
    mean of ``log |R_t[i, i]|`` over the steps after ``skip``: the natural-log growth per
    step of the i-th direction of a perturbation.

    Parameters
    ----------
    jacobians : array-like
        ``(T, n, n)`` or ``(B, T, n, n)``: ``J_t`` maps ``dh_{t-1}`` to ``dh_t``.
    k : int, default 1
        How many exponents, 1 <= k <= n.
    skip : int, default 0
        Steps whose growth is not counted (the tangent vectors still turn into the
        growing directions during them), 0 <= skip < T.
    seed : int, default 0
        Seed of the random orthonormal start (ignored when ``start`` is given).
    start : array-like, optional
        ``(n, k)`` starting tangent vectors, orthonormalized before use.

    Returns
    -------
    numpy.ndarray
        ``(k,)``: the exponents, largest first, averaged over the ``B`` examples.

    Examples
    --------
    >>> q = np.linalg.qr(np.random.default_rng(0).normal(size=(4, 4)))[0]
    >>> np.round(lyapunov_exponents(np.stack([0.5 * q] * 10), k=4), 6).tolist()
    [-0.693147, -0.693147, -0.693147, -0.693147]
    """
    jacobians = check_array("jacobians", jacobians, ndim=(3, 4)).astype(np.float64)
    if jacobians.ndim == 3:
        jacobians = jacobians[None]
    batch, steps, n, m = jacobians.shape
    if n != m:
        raise ValueError(f"jacobians must be square, got shape {jacobians.shape}")
    return _qr_exponents(lambda t, q: jacobians[:, t] @ q, batch, steps, n, k, skip, seed, start)


def lyapunov_scan(
    model: keras.Model,
    base: Any,
    gains: Sequence[float],
    x: Any,
    *,
    k: int = 1,
    skip: int = 0,
    seed: int = 0,
) -> np.ndarray:
    """Lyapunov exponents of a SimpleRNN for ``W_h = g * base``, g in ``gains``.

    The forward counterpart of :func:`rnngrad.experiments.scans.gain_scan`, on the same model,
    inputs and grid: for each gain the trajectory is run in float64 NumPy with the
    layer's own input kernel and bias, and the exponents are taken along it.

    Parameters
    ----------
    model : keras.Model
        A model whose first recurrent layer is a ``SimpleRNN`` reading the model's input.
        Its recurrent kernel is restored afterwards.
    base : array-like
        ``(units, units)``, ``W_h`` at gain 1 in the book's convention.
    gains : sequence of float
        Each > 0.
    x : array-like
        ``(B, T, features)`` inputs.
    k, skip, seed
        As for :func:`lyapunov_exponents`.

    Returns
    -------
    numpy.ndarray
        ``(G, k)``: row ``i`` holds the ``k`` largest exponents at ``gains[i]``.

    Examples
    --------
    >>> import rnngrad
    >>> model = rnngrad.build_rnn("simple", 4, input_dim=1, activation="linear")
    >>> q = np.linalg.qr(np.random.default_rng(0).normal(size=(4, 4)))[0]
    >>> exponents = lyapunov_scan(model, q, [0.5, 2.0], np.ones((1, 6, 1)))
    >>> np.round(exponents[:, 0], 6).tolist()
    [-0.693147, 0.693147]
    """
    layer = first_simple_rnn(model)
    units = layer.cell.units
    base = check_array("base", base, ndim=2).astype(np.float64)
    if base.shape != (units, units):
        raise ValueError(f"base must have shape ({units}, {units}), got {base.shape}")
    gains = [check_float("gains", g, positive=True) for g in gains]
    if not gains:
        raise ValueError("gains must hold at least one gain")
    x = check_array("x", x, ndim=3)
    original = layer.cell.recurrent_kernel.numpy()
    rows = []
    try:
        for g in gains:
            layer.cell.recurrent_kernel.assign((g * base).T.astype(original.dtype))
            derivative, w_h = _derivatives(layer, x)
            batch, steps = derivative.shape[:2]

            def step(t, q, d=derivative, w=w_h):  # diag(phi'(a_t)) W_h Q, (B, n, k)
                return d[:, t, :, None] * (w @ q)

            rows.append(_qr_exponents(step, batch, steps, units, k, skip, seed, None))
    finally:
        layer.cell.recurrent_kernel.assign(original)
    return np.array(rows)


def product_singular_values(jacobians: Any, max_lag: int) -> np.ndarray:
    """Singular values of the Jacobian products ``J_T J_{T-1} ... J_{T-l+1}``, l = 1..max_lag.

    The product of the last ``l`` step Jacobians carries the gradient ``l`` steps back:
    ``dL/dh_{T-l} = dL/dh_T J_T ... J_{T-l+1}``. Its singular values say how unevenly it
    does so; all equal to 1 is exact isometry.

    Parameters
    ----------
    jacobians : array-like
        ``(T, n, n)`` or ``(B, T, n, n)``, e.g. from :func:`simple_rnn_jacobians`.
    max_lag : int
        The longest product, 1 <= max_lag <= T.

    Returns
    -------
    numpy.ndarray
        ``(max_lag, B, n)``, each row sorted from largest to smallest. Products are
        formed in float64: singular values below about ``1e-15`` times the largest of the
        same product are rounding noise.

    Examples
    --------
    >>> q = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))[0]
    >>> s = product_singular_values(np.stack([2.0 * q] * 5), 3)
    >>> np.round(s[:, 0], 6).tolist()  # every singular value of (2Q)^l is 2^l
    [[2.0, 2.0, 2.0], [4.0, 4.0, 4.0], [8.0, 8.0, 8.0]]
    """
    jacobians = check_array("jacobians", jacobians, ndim=(3, 4)).astype(np.float64)
    if jacobians.ndim == 3:
        jacobians = jacobians[None]
    batch, steps, n, m = jacobians.shape
    if n != m:
        raise ValueError(f"jacobians must be square, got shape {jacobians.shape}")
    max_lag = check_int("max_lag", max_lag, minimum=1)
    if max_lag > steps:
        raise ValueError(f"max_lag must be at most the number of steps {steps}, got {max_lag}")
    product = np.broadcast_to(np.eye(n), (batch, n, n))
    values = np.empty((max_lag, batch, n))
    for lag in range(1, max_lag + 1):
        product = product @ jacobians[:, steps - lag]  # J_T ... J_{T-lag+1}
        values[lag - 1] = np.linalg.svd(product, compute_uv=False)
    return values


def _derivatives(layer: keras.layers.Layer, x: Any) -> tuple[np.ndarray, np.ndarray]:
    """phi'(a_t) along the trajectory, (B, T, n), and W_h, (n, n), both float64."""
    pre = simple_rnn_preactivations(layer, x)  # validates layer and x
    activation = layer.cell.activation.__name__
    return activation_derivative(activation, pre), recurrent_matrix(layer).astype(np.float64)


def _qr_exponents(
    step: Callable[[int, np.ndarray], np.ndarray],
    batch: int,
    steps: int,
    n: int,
    k: int,
    skip: int,
    seed: int,
    start: Any,
) -> np.ndarray:
    k = check_int("k", k, minimum=1)
    if k > n:
        raise ValueError(f"k must be at most the state size {n}, got {k}")
    skip = check_int("skip", skip, minimum=0)
    if skip >= steps:
        raise ValueError(f"skip must be smaller than the number of steps {steps}, got {skip}")
    if start is None:
        start = np.random.default_rng(check_int("seed", seed)).normal(size=(n, k))
    else:
        start = check_array("start", start, ndim=2).astype(np.float64)
        if start.shape != (n, k):
            raise ValueError(f"start must have shape ({n}, {k}), got {start.shape}")
    q = np.broadcast_to(np.linalg.qr(start)[0], (batch, n, k))
    total = np.zeros((batch, k))
    with np.errstate(divide="ignore"):
        for t in range(steps):
            q, r = np.linalg.qr(step(t, q))  # (B, n, k), (B, k, k)
            if t >= skip:
                total += np.log(np.abs(np.diagonal(r, axis1=1, axis2=2)))
    return np.mean(total, axis=0) / (steps - skip)
