"""Long-range gradient terms against minibatch noise: the signal-to-noise ratio of credit.

The gradient of a SimpleRNN's shared recurrent matrix is a sum of one term per step
(:func:`rnngrad.experiments.sharing.recurrent_gradient_terms`). The terms from steps far
back in time carry the credit for long-range dependencies. A small term is not lost because it is
small: a learning rate can rescale it. It is lost when it is small *against the noise* of
the gradient it is part of. Training sees one minibatch at a time, and the minibatch
gradient fluctuates from batch to batch by far more than a term of relative size 1e-8.

For ``K`` minibatches this module splits each minibatch's gradient ``G_k`` of ``W_h``
into windows of steps by lag, ``L_{k,j}`` = the sum of the terms whose lag lies in window
``j``, and measures per window

- the **signal** ``||mean_k L_{k,j}||`` (Frobenius), with its standard error
  ``sqrt(sum Var_k(L_{k,j}) / K)``;
- the **noise** along the signal's direction ``u_j = mean_k L_{k,j} / ||mean_k L_{k,j}||``:
  the standard deviation over minibatches of ``<G_k, u_j>``, the component of the whole
  minibatch gradient that an update would add along ``u_j``;
- the **signal-to-noise ratio** ``SNR_j`` = signal / noise. Averaging ``m`` minibatches
  divides the noise by ``sqrt(m)``, so the window's credit stands out of the noise only
  after about ``1 / SNR_j^2`` minibatches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from rnngrad._validation import check_array, check_int
from rnngrad.experiments.sharing import step_factors

# examples per probe pass: bounds the probe's memory, not the result
_PROBE_BATCH = 512

__all__ = ["MinibatchTerms", "SignalToNoise", "minibatch_terms", "signal_to_noise"]


@dataclass(frozen=True)
class MinibatchTerms:
    """The recurrent-matrix gradient of each minibatch, whole and split into lag windows.

    Attributes
    ----------
    total : numpy.ndarray
        ``(K, n, n)``: the gradient of ``W_h`` (book convention) of each minibatch's mean
        loss.
    windows : numpy.ndarray
        ``(K, J, n, n)``: window ``j`` sums the terms at lags ``j*w .. (j+1)*w - 1``
        (``w`` the window length); the windows add up to ``total``.
    window : int
        The window length in steps.
    batch_size : int
        Examples per minibatch.
    """

    total: np.ndarray
    windows: np.ndarray
    window: int
    batch_size: int

    @property
    def lags(self) -> np.ndarray:
        """``(J,)`` the middle lag of each window."""
        return self.window * np.arange(self.windows.shape[1]) + (self.window - 1) / 2


@dataclass(frozen=True)
class SignalToNoise:
    """Per lag window: the mean long-range term against the minibatch noise along it.

    Attributes
    ----------
    lags : numpy.ndarray
        ``(J,)`` middle lag of each window.
    signal : numpy.ndarray
        ``(J,)`` ``||mean_k L_{k,j}||``.
    signal_error : numpy.ndarray
        ``(J,)`` the standard error of that mean, ``sqrt(sum Var_k(L_{k,j}) / K)``.
    noise : numpy.ndarray
        ``(J,)`` the standard deviation over minibatches of ``<G_k, u_j>``.
    snr : numpy.ndarray
        ``(J,)`` ``signal / noise``.
    minibatches : int
        ``K``.
    """

    lags: np.ndarray
    signal: np.ndarray
    signal_error: np.ndarray
    noise: np.ndarray
    snr: np.ndarray
    minibatches: int

    @property
    def resolved(self) -> np.ndarray:
        """``(J,)`` True where the signal exceeds three standard errors of its estimate."""
        return self.signal > 3 * self.signal_error

    @property
    def minibatches_to_resolve(self) -> np.ndarray:
        """``(J,)`` ``1 / snr^2``: how many minibatches must be averaged to see the window."""
        with np.errstate(divide="ignore"):
            return 1.0 / self.snr**2


def minibatch_terms(
    model: keras.Model,
    x: Any,
    y: Any,
    *,
    batch_size: int,
    window: int,
    loss: Any = "mse",
    layer: Any = None,
) -> MinibatchTerms:
    """Split each minibatch's recurrent-matrix gradient into windows of steps by lag.

    Parameters
    ----------
    model : keras.Model
        A model with a ``SimpleRNN`` layer, as for
        :func:`rnngrad.experiments.sharing.recurrent_gradient_terms`.
    x, y : array-like
        ``(N, T, features)`` inputs and matching targets; ``N`` must be a multiple of
        ``batch_size``. Minibatch ``k`` is examples ``k*B .. (k+1)*B - 1``.
    batch_size : int
        Examples per minibatch, ``B >= 1``.
    window : int
        Steps per lag window; ``T`` must be a multiple of it.
    loss, layer
        As in :func:`rnngrad.experiments.sharing.recurrent_gradient_terms` (``loss`` is passed on).

    Returns
    -------
    MinibatchTerms

    Examples
    --------
    >>> import rnngrad
    >>> model = rnngrad.build_rnn("simple", 4, input_dim=2, seed=0)
    >>> x, y = rnngrad.tasks.adding_problem(8, 6, seed=0)
    >>> terms = minibatch_terms(model, x, y, batch_size=4, window=3)
    >>> terms.total.shape, terms.windows.shape, terms.lags.tolist()
    ((2, 4, 4), (2, 2, 4, 4), [1.0, 4.0])
    >>> bool(np.allclose(terms.windows.sum(axis=1), terms.total))
    True
    """
    x = check_array("x", x, ndim=3)
    y = check_array("y", y)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    window = check_int("window", window, minimum=1)
    n, length = x.shape[:2]
    if len(y) != n:
        raise ValueError(f"x and y must hold the same number of examples, got {n} and {len(y)}")
    if n % batch_size or n == 0:
        raise ValueError(f"the number of examples ({n}) must be a positive multiple of batch_size")
    if length % window:
        raise ValueError(f"the sequence length ({length}) must be a multiple of window ({window})")
    # One probe pass over every example (each example's gradient is of its own loss,
    # so it does not depend on the batch it is computed in), then each minibatch's
    # mean term per window as one matrix product: (B * w, U)^T (B * w, U)
    delta, h_prev = step_factors(
        model, x, y, loss=loss, layer=layer, batch_size=min(n, _PROBE_BATCH)
    )
    count, windows_per_sequence, units = n // batch_size, length // window, delta.shape[-1]

    def grouped(factor: np.ndarray) -> np.ndarray:  # (K, J, B * w, U), lag 0 first
        by_lag = factor[:, ::-1].reshape(count, batch_size, windows_per_sequence, window, units)
        return by_lag.transpose(0, 2, 1, 3, 4).reshape(
            count, windows_per_sequence, batch_size * window, units
        )

    windows = np.matmul(grouped(delta).transpose(0, 1, 3, 2), grouped(h_prev)) / batch_size
    return MinibatchTerms(windows.sum(axis=1), windows, window, batch_size)


def signal_to_noise(terms: MinibatchTerms) -> SignalToNoise:
    """Each lag window's mean term against the minibatch noise of the gradient along it.

    Parameters
    ----------
    terms : MinibatchTerms
        From :func:`minibatch_terms`, with at least two minibatches.

    Returns
    -------
    SignalToNoise

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> # a constant long-range term in unit-variance noise
    >>> windows = np.ones((400, 1, 2, 2)) * 1e-3
    >>> total = windows[:, 0] + rng.normal(size=(400, 2, 2))
    >>> terms = MinibatchTerms(total, windows, window=5, batch_size=8)
    >>> result = signal_to_noise(terms)
    >>> round(float(result.signal[0]), 6), round(float(result.noise[0]), 1)
    (0.002, 1.0)
    """
    if not isinstance(terms, MinibatchTerms):
        raise TypeError(f"terms must be a MinibatchTerms, got {type(terms).__name__}")
    total = check_array("terms.total", terms.total, ndim=3).astype(np.float64)
    windows = check_array("terms.windows", terms.windows, ndim=4).astype(np.float64)
    count = len(total)
    if count < 2 or windows.shape[0] != count:
        raise ValueError(
            f"need the same number (>= 2) of minibatches in total and windows, got "
            f"{count} and {windows.shape[0]}"
        )
    mean = windows.mean(axis=0)  # (J, n, n)
    signal = np.sqrt(np.sum(mean**2, axis=(1, 2)))
    spread = np.sum(windows.var(axis=0, ddof=1), axis=(1, 2))
    signal_error = np.sqrt(spread / count)
    with np.errstate(invalid="ignore", divide="ignore"):
        direction = mean / signal[:, None, None]  # (J, n, n), unit Frobenius norm
    along = np.einsum("kab,jab->kj", total, direction)  # (K, J)
    noise = along.std(axis=0, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = signal / noise
    return SignalToNoise(terms.lags, signal, signal_error, noise, snr, count)
