"""Summaries of measured gradient profiles: ratios against the last step, fitted decay rates.

A *profile* is what :func:`rnngrad.probes.state_gradient_norms` returns for one layer:
``norms[t]`` = mean ||dL/dh_t|| for t = 1..T. The book reads it backwards in time, by
*lag* = T - t, the number of steps the gradient has travelled back.
"""

from __future__ import annotations

import numpy as np

from rnngrad._validation import check_array, check_int

__all__ = ["decay_rate", "gradient_ratio", "horizon", "lags"]


def lags(length: int) -> np.ndarray:
    """Lags ``T - t`` of the steps ``t = 1..T``: ``[T-1, ..., 1, 0]``.

    Examples
    --------
    >>> lags(4).tolist()
    [3, 2, 1, 0]
    """
    length = check_int("length", length, minimum=1)
    return np.arange(length - 1, -1, -1)


def gradient_ratio(norms: np.ndarray) -> np.ndarray:
    """||dL/dh_t|| / ||dL/dh_T||: each step's gradient norm relative to the last step's.

    Parameters
    ----------
    norms : array-like
        ``(T,)`` or ``(layers, T)``, as returned by the probe.

    Returns
    -------
    numpy.ndarray
        The same shape; the last column is 1.

    Examples
    --------
    >>> gradient_ratio([0.25, 0.5, 1.0]).tolist()
    [0.25, 0.5, 1.0]
    """
    norms = check_array("norms", norms, ndim=(1, 2)).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return norms / norms[..., -1:]


def decay_rate(norms: np.ndarray, *, skip: int = 0, floor: float = 1e-30) -> float:
    """Fitted per-step rate of change of the gradient norm going back in time.

    The least-squares slope of ``log ||dL/dh_{T-lag}||`` against ``lag``: natural-log
    units per step, negative when the gradient vanishes going back, positive when it
    explodes. ``exp(rate)`` is the decay factor per step.

    Parameters
    ----------
    norms : array-like
        A ``(T,)`` profile, t = 1..T.
    skip : int, default 0
        Leave out the ``skip`` most recent steps (the transient near the loss).
    floor : float, default 1e-30
        Leave out norms at or below this value (float32 underflow) and non-finite ones.

    Returns
    -------
    float
        The slope; NaN if fewer than two usable points remain.

    Examples
    --------
    >>> round(decay_rate(0.5 ** np.arange(10, -1, -1)), 6)  # halves every step back
    -0.693147
    """
    norms = check_array("norms", norms, ndim=1).astype(np.float64)
    skip = check_int("skip", skip, minimum=0)
    lag = lags(len(norms))
    keep = np.isfinite(norms) & (norms > floor) & (lag >= skip)
    if np.count_nonzero(keep) < 2:
        return float("nan")
    slope, _ = np.polyfit(lag[keep], np.log(norms[keep]), 1)
    return float(slope)


def horizon(norms: np.ndarray, *, threshold: float = 1e-3) -> int | None:
    """Steps back until the gradient falls below ``threshold`` times its last-step value.

    Parameters
    ----------
    norms : array-like
        A ``(T,)`` profile, t = 1..T.
    threshold : float, default 1e-3
        The fraction of ``||dL/dh_T||`` that counts as vanished, in (0, 1).

    Returns
    -------
    int or None
        The smallest lag whose ratio is below the threshold; None if no step of the
        sequence is (the gradient reaches every step).

    Examples
    --------
    >>> horizon(0.1 ** lags(6))  # 1, 0.1, 0.01, 1e-3, 1e-4, ... going back
    4
    >>> horizon(np.ones(10)) is None
    True
    """
    norms = check_array("norms", norms, ndim=1).astype(np.float64)
    if isinstance(threshold, bool) or not 0 < float(threshold) < 1:
        raise ValueError(f"threshold must lie in (0, 1), got {threshold!r}")
    ratio = gradient_ratio(norms)
    below = np.nonzero(np.isfinite(ratio) & (ratio < threshold))[0]
    return int(len(norms) - 1 - below.max()) if below.size else None
