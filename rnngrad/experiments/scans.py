"""Scans of a recurrent network's gradient over the gain of its recurrent matrix.

:func:`gain_scan` puts ``W_h = g * base`` into one compiled model for every gain ``g``
of a grid, measures the gradient profile and the mean-field susceptibility
``chi = g^2 mean phi'(a_t)^2`` along the same trajectory, and records ``sigma_max`` and
the spectral radius of each ``W_h``: the ingredients of a phase diagram of gradient
flow over (gain, lag). Reusing one model means the probe is traced once for the whole
grid. :func:`crossing` finds where a scanned quantity crosses a level (``chi = 1``, a
decay rate of 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from rnngrad._losses import loss_for_targets
from rnngrad._validation import check_array, check_float, check_int
from rnngrad.experiments.meanfield import (
    first_simple_rnn,
    simple_rnn_preactivations,
    susceptibility,
)
from rnngrad.probes import LossArg, state_gradient_norms
from rnngrad.profiles import decay_rate, gradient_ratio
from rnngrad.theory import max_singular_value, spectral_radius

__all__ = ["GainScan", "crossing", "gain_scan"]


@dataclass
class GainScan:
    """What :func:`gain_scan` measured, one row per gain.

    Attributes
    ----------
    gains : numpy.ndarray
        ``(G,)``, the gains scanned.
    norms : numpy.ndarray
        ``(G, T)``, the first recurrent layer's gradient profile at each gain.
    susceptibility : numpy.ndarray
        ``(G,)``, ``chi = g^2 mean phi'(a_t)^2`` along the trajectory
        (:func:`rnngrad.experiments.meanfield.susceptibility`); ``chi = 1`` is the mean-field
        critical line.
    sigma_max, spectral_radius : numpy.ndarray
        ``(G,)``, of ``W_h = g * base``.
    """

    gains: np.ndarray
    norms: np.ndarray
    susceptibility: np.ndarray
    sigma_max: np.ndarray
    spectral_radius: np.ndarray

    def log10_ratio(self) -> np.ndarray:
        """``(G, T)``: log10 of ||dL/dh_t|| / ||dL/dh_T|| (``-inf`` where it underflowed)."""
        with np.errstate(divide="ignore"):
            return np.log10(gradient_ratio(self.norms))

    def rates(self, *, skip: int = 0) -> np.ndarray:
        """``(G,)``: each profile's fitted decay rate (:func:`~rnngrad.profiles.decay_rate`)."""
        return np.array([decay_rate(row, skip=skip, floor=1e-300) for row in self.norms])


def gain_scan(
    model: keras.Model,
    base: np.ndarray,
    gains: Sequence[float],
    x: Any,
    y: Any = None,
    *,
    loss: LossArg = "mse",
    skip: int = 0,
) -> GainScan:
    """Measure gradient profiles and the susceptibility for ``W_h = g * base``, g in ``gains``.

    Parameters
    ----------
    model : keras.Model
        A model whose first recurrent layer is a ``SimpleRNN`` reading the model's input
        directly, e.g. ``build_rnn("simple", n, input_dim=...)``. Its recurrent kernel
        is restored after the scan.
    base : numpy.ndarray
        ``(units, units)``, the recurrent matrix at gain 1 in the book's convention
        (``W_h``, the transpose of Keras's ``recurrent_kernel``), e.g. from
        :func:`rnngrad.models.recurrent_init_matrix`.
    gains : sequence of float
        The gains ``g``, each > 0.
    x, y, loss
        The probe batch and loss, as for :func:`rnngrad.probes.state_gradient_norms`
        (``y=None``: the target-free loss ``1/2 ||output||^2``).
    skip : int, default 0
        Steps left out at the start of the trajectory when averaging ``phi'^2`` (the
        transient from ``h_0 = 0``).

    Returns
    -------
    GainScan

    Examples
    --------
    >>> import rnngrad
    >>> from rnngrad.models import recurrent_init_matrix
    >>> model = rnngrad.build_rnn("simple", 8, input_dim=2, activation="linear")
    >>> q = recurrent_init_matrix("orthogonal", 8, seed=0)
    >>> scan = gain_scan(model, q, [0.5, 2.0], np.ones((4, 5, 2)))
    >>> np.round(scan.susceptibility, 6).tolist()  # linear: chi = g^2
    [0.25, 4.0]
    """
    loss = loss_for_targets(loss, y)  # y=None: the target-free loss
    layer = first_simple_rnn(model)
    if layer.input is not model.inputs[0]:
        raise ValueError(f"layer {layer.name!r} must read the model's input directly")
    units = layer.cell.units
    base = check_array("base", base, ndim=2).astype(np.float64)
    if base.shape != (units, units):
        raise ValueError(f"base must have shape ({units}, {units}), got {base.shape}")
    gains = np.array([check_float("gains", g, positive=True) for g in gains])
    if gains.size == 0:
        raise ValueError("gains must hold at least one gain")
    skip = check_int("skip", skip, minimum=0)
    x = check_array("x", x, ndim=3)
    activation = layer.cell.activation.__name__
    original = layer.cell.recurrent_kernel.numpy()
    dtype = original.dtype
    norms, chi = [], []
    try:
        for g in gains:
            layer.cell.recurrent_kernel.assign((g * base).T.astype(dtype))  # Keras: W_h^T
            norms.append(state_gradient_norms(model, x, y, loss=loss)[0])
            pre = simple_rnn_preactivations(layer, x)
            chi.append(susceptibility(pre, activation, g, skip=skip))
    finally:
        layer.cell.recurrent_kernel.assign(original)
    return GainScan(
        gains=gains,
        norms=np.array(norms),
        susceptibility=np.array(chi),
        sigma_max=gains * max_singular_value(base),
        spectral_radius=gains * spectral_radius(base),
    )


def crossing(x: Sequence[float], y: Sequence[float], level: float = 0.0) -> float:
    """The first ``x`` at which ``y`` crosses ``level``, by linear interpolation.

    Parameters
    ----------
    x, y : sequence of float
        Matching 1-D sequences, ``x`` increasing.
    level : float, default 0.0

    Returns
    -------
    float
        NaN if ``y`` never crosses (or touches) ``level``.

    Examples
    --------
    >>> crossing([1.0, 2.0, 3.0], [-1.0, -0.5, 0.5])
    2.5
    """
    x = check_array("x", x, ndim=1).astype(np.float64)
    y = check_array("y", y, ndim=1).astype(np.float64)
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length, got {x.size} and {y.size}")
    if np.any(np.diff(x) <= 0):
        raise ValueError("x must be increasing")
    level = check_float("level", level)
    d = y - level
    for k in range(len(d) - 1):
        if d[k] == 0:
            return float(x[k])
        if d[k] * d[k + 1] < 0:
            return float(x[k] - d[k] * (x[k + 1] - x[k]) / (d[k + 1] - d[k]))
    return float(x[-1]) if len(d) and d[-1] == 0 else float("nan")
