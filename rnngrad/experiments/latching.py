"""Bengio, Simard & Frasconi (1994)'s latching argument, measured on one recurrent unit.

To store a bit for a long time in the presence of noise, a recurrent network must keep its
state inside the basin of an attractor, and the noise must not push it out. Bengio et al.
(1994) showed that this *robust latching* needs the map to be contracting where the bit is
stored, ``|f'| < 1`` there, and that the same contraction makes the gradient of a late loss
with respect to an early state vanish: ``dh_T/dh_0`` is a product of the derivatives the
state visits. Memory that survives noise and a gradient that survives time come from one
product, so they cannot both be had.

This module measures both sides on the smallest network that can latch: one unit,

    h_t = phi(w * h_{t-1} + xi_t),    xi_t ~ N(0, noise^2),    t = 1..T,

with ``phi = tanh`` (or the identity, the non-contracting reference). A random bit is
written as ``h_0 = phi(+-write)``; after ``T`` noisy steps the bit counts as *kept* if
``sign(h_T)`` still equals it. Along the same trajectory the exact gradient is

    dh_T/dh_0 = prod_{t=1..T} w * phi'(a_t),    a_t = w * h_{t-1} + xi_t.

For ``w > 1`` the tanh unit has two stable fixed points ``+-h*`` with ``h* = tanh(w h*)``,
and the map's derivative there is ``lambda* = w (1 - h*^2) < 1``
(:func:`fixed_point_derivative`): the bit is stored at an attractor, and the gradient
decays like ``lambda*^T`` while the state sits there. For ``w <= 1`` the only fixed point is
0 and every bit is forgotten. The linear unit with ``w = 1`` has ``phi' = 1``: its gradient
never changes, and its state is a random walk that forgets the bit at a rate set by the
noise.

Everything is float64 NumPy and seeded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rnngrad._validation import check_choice, check_float, check_int
from rnngrad.theory import activation_derivative

__all__ = ["LatchRun", "fixed_point", "fixed_point_derivative", "latch"]

ACTIVATIONS = ("tanh", "linear")
"""Activations :func:`latch` accepts."""


def fixed_point(weight: float) -> float:
    """The non-negative stable fixed point ``h*`` of ``h = tanh(weight * h)``.

    Parameters
    ----------
    weight : float
        The unit's self-connection ``w > 0``.

    Returns
    -------
    float
        0 for ``w <= 1`` (the only fixed point); otherwise the positive root of
        ``h = tanh(w h)``, to float64 precision.

    Examples
    --------
    >>> fixed_point(0.5)
    0.0
    >>> h = fixed_point(2.0)
    >>> round(h, 6), bool(abs(h - np.tanh(2.0 * h)) < 1e-15)
    (0.957504, True)
    """
    weight = check_float("weight", weight, positive=True)
    if weight <= 1.0:
        return 0.0
    # h - tanh(w h) is negative on (0, h*) and positive above it: bisection on (0, 1].
    low, high = 0.0, 1.0
    for _ in range(200):
        middle = 0.5 * (low + high)
        if middle - np.tanh(weight * middle) < 0:
            low = middle
        else:
            high = middle
        if high - low <= 2 * np.finfo(float).eps:
            break
    return float(0.5 * (low + high))


def fixed_point_derivative(weight: float) -> float:
    """The derivative ``w (1 - h*^2)`` of the map ``h -> tanh(w h)`` at its stable fixed point.

    Below 1 for every ``w != 1``: the fixed point attracts. Its log is the rate per step at
    which the gradient ``dh_T/dh_0`` decays while the state sits at the fixed point.

    Parameters
    ----------
    weight : float
        The unit's self-connection ``w > 0``.

    Returns
    -------
    float

    Examples
    --------
    >>> fixed_point_derivative(0.5)  # the fixed point is 0, where tanh' = 1
    0.5
    >>> round(fixed_point_derivative(2.0), 4)
    0.1664
    """
    weight = check_float("weight", weight, positive=True)
    return float(weight * (1.0 - fixed_point(weight) ** 2))


@dataclass(frozen=True)
class LatchRun:
    """One latching experiment: many trials of one unit storing a random bit.

    Attributes
    ----------
    weight, noise, steps, activation
        The settings of :func:`latch`.
    bits : numpy.ndarray
        ``(trials,)`` the bits written, +1 or -1.
    final : numpy.ndarray
        ``(trials,)`` the states ``h_T``.
    log_gradient : numpy.ndarray
        ``(trials,)`` ``log |dh_T/dh_0|`` along each trial's own trajectory.
    """

    weight: float
    noise: float
    steps: int
    activation: str
    bits: np.ndarray
    final: np.ndarray
    log_gradient: np.ndarray

    @property
    def kept(self) -> float:
        """The fraction of trials whose ``sign(h_T)`` equals the bit written."""
        return float(np.mean(np.sign(self.final) == self.bits))

    @property
    def rate(self) -> float:
        """Mean ``log |dh_T/dh_0|`` per step: the gradient's rate (negative = vanishing)."""
        return float(np.mean(self.log_gradient) / self.steps)


def latch(
    weight: float,
    *,
    steps: int,
    noise: float,
    seed: int,
    trials: int = 2000,
    write: float = 1.0,
    activation: str = "tanh",
) -> LatchRun:
    """Write a random bit into one recurrent unit, run it through noise, and measure.

    Parameters
    ----------
    weight : float
        Self-connection ``w > 0``.
    steps : int
        Number of noisy steps ``T >= 1`` after the write.
    noise : float
        Standard deviation of the Gaussian noise added to the pre-activation at every
        step (>= 0).
    seed : int
        Seeds the bits and the noise.
    trials : int, default 2000
        Independent trials (bits).
    write : float, default 1.0
        The write input: ``h_0 = phi(+-write)``.
    activation : {"tanh", "linear"}, default "tanh"

    Returns
    -------
    LatchRun
        The bits, the final states and ``log |dh_T/dh_0|`` per trial; ``.kept`` and
        ``.rate`` summarize them.

    Examples
    --------
    >>> run = latch(3.0, steps=50, noise=0.3, seed=0, trials=500)
    >>> run.kept  # a deep attractor keeps every bit...
    1.0
    >>> # ...and the gradient vanishes at log(lambda*)
    >>> bool(run.rate < np.log(0.05))
    True
    >>> linear = latch(
    ...     1.0, steps=50, noise=0.3, seed=0, trials=500,
    ...     activation="linear",
    ... )
    >>> linear.rate  # the linear unit passes the gradient whole
    0.0
    """
    weight = check_float("weight", weight, positive=True)
    steps = check_int("steps", steps, minimum=1)
    noise = check_float("noise", noise)
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    seed = check_int("seed", seed, minimum=0)
    trials = check_int("trials", trials, minimum=1)
    write = check_float("write", write, positive=True)
    activation = check_choice("activation", activation, ACTIVATIONS)

    rng = np.random.default_rng(seed)
    bits = rng.choice(np.array([-1.0, 1.0]), size=trials)
    h = np.tanh(write * bits) if activation == "tanh" else write * bits
    log_gradient = np.zeros(trials)
    for _ in range(steps):
        a = weight * h + noise * rng.standard_normal(trials)
        slope = activation_derivative(activation, a)  # tanh' without cancellation in the tails
        h = np.tanh(a) if activation == "tanh" else a
        log_gradient += np.log(weight) + np.log(slope)
    return LatchRun(weight, noise, steps, activation, bits, h, log_gradient)
