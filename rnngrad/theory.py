"""Closed-form predictions and bounds to overlay on measured gradient profiles.

Notation (shared with the book): ``h_t = phi(W_x x_t + W_h h_{t-1} + b)``, the step
Jacobian ``J_t = dh_t/dh_{t-1} = diag(phi'(a_t)) W_h``, and
``dL/dh_k = dL/dh_T J_T ... J_{k+1}``. Since ``||diag(phi')|| <= gamma = sup|phi'|``,

    ||dh_T / dh_k|| <= (gamma * sigma_max(W_h)) ** (T - k)        (Pascanu et al. 2013)

so ``sigma_max < 1/gamma`` is *sufficient* for vanishing and ``sigma_max > 1/gamma`` is
only *necessary* for exploding. For a linear RNN with ``W_h = rho * Q``, ``Q``
orthogonal, every Jacobian is ``rho * Q`` and the ratio is exactly ``rho ** lag``.
"""

from __future__ import annotations

import numpy as np

from rnngrad._validation import check_array, check_choice, check_float

__all__ = [
    "ACTIVATIONS",
    "ACTIVATION_DERIVATIVE_BOUNDS",
    "activation_derivative",
    "activation_derivative_bound",
    "linear_rnn_gradient_ratio",
    "max_singular_value",
    "pascanu_bound",
    "spectral_radius",
]

ACTIVATIONS = {
    "linear": lambda a: a,
    "tanh": np.tanh,
    "sigmoid": lambda a: 0.5 * (1.0 + np.tanh(0.5 * a)),  # no overflow for large |a|
    "relu": lambda a: np.maximum(a, 0.0),
}
"""The activations the book's closed forms know, as NumPy functions (float64-safe)."""

ACTIVATION_DERIVATIVE_BOUNDS: dict[str, float] = {
    "linear": 1.0,
    "tanh": 1.0,
    "sigmoid": 0.25,
    "relu": 1.0,
}
"""gamma, the supremum of ``abs(phi'(a))``, for each activation. tanh' = 1 - tanh^2 lies
in (0, 1], sigmoid' = s (1 - s) in (0, 1/4], relu' in {0, 1}."""


def activation_derivative_bound(activation: str) -> float:
    """gamma, the supremum over a of ``abs(phi'(a))``: the factor in Pascanu's bound.

    Parameters
    ----------
    activation : {"linear", "tanh", "sigmoid", "relu"}

    Examples
    --------
    >>> activation_derivative_bound("sigmoid")
    0.25
    """
    check_choice("activation", activation, ACTIVATION_DERIVATIVE_BOUNDS)
    return ACTIVATION_DERIVATIVE_BOUNDS[activation]


def activation_derivative(activation: str, a: np.ndarray) -> np.ndarray:
    """phi'(a), computed in float64.

    Parameters
    ----------
    activation : {"linear", "tanh", "sigmoid", "relu"}
    a : array-like
        Pre-activations.

    Returns
    -------
    numpy.ndarray
        float64, the shape of ``a``. ReLU's derivative at exactly 0 is taken as 0.

    Notes
    -----
    tanh' and sigmoid' are computed from ``e = exp(-|a|)`` as ``4 e^2 / (1 + e^2)^2``
    and ``e / (1 + e)^2``, which stay positive out to ``|a|`` of about 370 and 745.
    The textbook forms ``1 - tanh(a)^2`` and ``s (1 - s)`` cancel to exactly 0 once
    ``tanh(a)`` or ``s`` rounds to 1: beyond ``|a|`` of about 19 and 37 in float64,
    and about 8 to 10 and 17 in float32 (TensorFlow's float32 tanh gradient is 0 from
    ``a`` of about 7.9), which is what a float32 network's backward pass computes for
    a saturated unit.

    Examples
    --------
    >>> activation_derivative("tanh", [0.0, 1.0]).round(4).tolist()
    [1.0, 0.42]
    >>> # 1 - tanh(30)**2 is exactly 0
    >>> bool(activation_derivative("tanh", [30.0])[0] > 0)
    True
    """
    check_choice("activation", activation, ACTIVATION_DERIVATIVE_BOUNDS)
    a = check_array("a", a).astype(np.float64)
    if activation == "linear":
        return np.ones_like(a)
    if activation == "tanh":
        e2 = np.exp(-2.0 * np.abs(a))  # sech^2(a) = 4 e^{-2|a|} / (1 + e^{-2|a|})^2
        return 4.0 * e2 / (1.0 + e2) ** 2
    if activation == "sigmoid":
        e = np.exp(-np.abs(a))  # s (1 - s) = e^{-|a|} / (1 + e^{-|a|})^2, no cancellation
        return e / (1.0 + e) ** 2
    return (a > 0).astype(np.float64)


def pascanu_bound(sigma_max: float, lags: np.ndarray, *, gamma: float = 1.0) -> np.ndarray:
    """Upper bound (gamma * sigma_max) ** lag on ||dh_T/dh_{T-lag}|| and on the gradient ratio.

    Parameters
    ----------
    sigma_max : float
        Largest singular value of W_h, >= 0.
    lags : array-like
        Steps back in time, >= 0.
    gamma : float, default 1.0
        The supremum of ``abs(phi')``, see :func:`activation_derivative_bound`.

    Returns
    -------
    numpy.ndarray
        float64, the shape of ``lags``.

    Examples
    --------
    >>> pascanu_bound(2.0, [0, 1, 2], gamma=0.25).tolist()
    [1.0, 0.5, 0.25]
    """
    sigma_max = check_float("sigma_max", sigma_max)
    gamma = check_float("gamma", gamma, positive=True)
    if sigma_max < 0:
        raise ValueError(f"sigma_max must be >= 0, got {sigma_max}")
    return np.power(gamma * sigma_max, _check_lags(lags))


def linear_rnn_gradient_ratio(rho: float, lags: np.ndarray) -> np.ndarray:
    """Exact gradient ratio rho ** lag of a linear RNN with W_h = rho * Q, Q orthogonal.

    Every Jacobian is ``rho * Q`` and ``Q`` preserves norms, so
    ``||dL/dh_{T-lag}|| = rho ** lag * ||dL/dh_T||`` for every example.

    Examples
    --------
    >>> linear_rnn_gradient_ratio(0.5, [0, 2]).tolist()
    [1.0, 0.25]
    """
    rho = check_float("rho", rho)
    if rho < 0:
        raise ValueError(f"rho must be >= 0, got {rho}")
    return np.power(rho, _check_lags(lags))


def spectral_radius(matrix: np.ndarray) -> float:
    """Largest eigenvalue modulus of a square matrix.

    Examples
    --------
    >>> spectral_radius(np.array([[0.0, 2.0], [0.5, 0.0]]))
    1.0
    """
    matrix = _check_square(matrix)
    return float(np.max(np.abs(np.linalg.eigvals(matrix))))


def max_singular_value(matrix: np.ndarray) -> float:
    """Largest singular value (spectral norm) of a matrix.

    Examples
    --------
    >>> max_singular_value(np.array([[0.0, 2.0], [0.5, 0.0]]))
    2.0
    """
    matrix = check_array("matrix", matrix, ndim=2).astype(np.float64)
    return float(np.linalg.norm(matrix, ord=2))


def _check_lags(lags: np.ndarray) -> np.ndarray:
    lags = check_array("lags", lags).astype(np.float64)
    if np.any(lags < 0):
        raise ValueError("lags must be >= 0")
    return lags


def _check_square(matrix: np.ndarray) -> np.ndarray:
    matrix = check_array("matrix", matrix, ndim=2).astype(np.float64)
    if matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"matrix must be square, got shape {matrix.shape}")
    return matrix
