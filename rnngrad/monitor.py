"""A training-time watchdog for gradient health: :class:`GradientMonitor`.

It is a :class:`~rnngrad.callbacks.GradientHistory` (the global gradient norm and the
state-gradient profile on a fixed probe batch, every epoch or every N updates) that also
*acts* on each measurement:

- a **spike**: the global gradient norm exceeds ``spike_factor`` times the running
  median of the earlier measurements (the symptom clipping is for);
- a **collapsing horizon**: the number of steps the gradient reaches back (see
  :func:`rnngrad.profiles.horizon`) falls below ``horizon_fraction`` of its value at the
  first measurement (the network is losing its long-range credit);
- **non-finite** gradients: inf or NaN anywhere.

Each event is a ``RuntimeWarning`` and an entry in :attr:`GradientMonitor.events`, once
when its condition starts (not again while it persists); the kinds listed in ``stop_on``
also stop training (Keras keeps the history so far). The
norm and the horizon go into the epoch logs, so Keras's ``History`` keeps them.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from rnngrad._validation import check_float, check_int
from rnngrad.callbacks import GradientHistory
from rnngrad.probes import LossArg
from rnngrad.profiles import horizon

__all__ = ["EVENT_KINDS", "GradientEvent", "GradientMonitor"]

EVENT_KINDS = ("spike", "horizon", "nonfinite")
"""The events a :class:`GradientMonitor` can report (and stop on)."""


@dataclass
class GradientEvent:
    """One thing the monitor noticed, with the measurement behind it."""

    kind: str  # one of EVENT_KINDS
    step: int  # updates made before the measurement
    epoch: float
    message: str


class GradientMonitor(GradientHistory):
    """Warn (and optionally stop) when gradients spike, overflow or stop reaching back.

    Parameters
    ----------
    x_probe, y_probe, loss, every_n_batches
        As for :class:`~rnngrad.callbacks.GradientHistory`: a fixed probe batch, its
        targets (or None), the training loss, and how often to measure (every epoch's
        end by default).
    spike_factor : float, default 10.0
        A norm above ``spike_factor`` x the running median of the earlier norms is a spike.
    min_history : int, default 3
        Measurements needed before spikes are judged (a median of one is noise).
    horizon_fraction : float, default 0.5
        The horizon collapses when it falls below this fraction of its first value.
    threshold : float, default 1e-3
        The ratio to the last step's gradient that counts as vanished, for the horizon.
    stop_on : list of str, optional
        Event kinds (``"spike"``, ``"horizon"``, ``"nonfinite"``) that stop training;
        by default none does.

    Attributes
    ----------
    horizons : list of int
        At each measurement, the shortest horizon over the recurrent layers (the
        sequence length when the gradient reaches every step).
    events : list of GradientEvent
        Everything noticed, in order.

    Examples
    --------
    >>> import rnngrad
    >>> x, y = rnngrad.tasks.adding_problem(64, 10, seed=0)
    >>> model = rnngrad.build_rnn("simple", 4, input_dim=2)
    >>> monitor = GradientMonitor(x[:8], y[:8], stop_on=["nonfinite"])
    >>> result = rnngrad.training.train(model, x, y, epochs=2, callbacks=[monitor])
    >>> len(monitor.horizons), "horizon" in result.history
    (3, True)
    """

    def __init__(
        self,
        x_probe: Any,
        y_probe: Any,
        *,
        loss: LossArg = "mse",
        every_n_batches: int | None = None,
        spike_factor: float = 10.0,
        min_history: int = 3,
        horizon_fraction: float = 0.5,
        threshold: float = 1e-3,
        stop_on: Iterable[str] = (),
    ) -> None:
        super().__init__(x_probe, y_probe, loss=loss, every_n_batches=every_n_batches)
        self.spike_factor = check_float("spike_factor", spike_factor, positive=True)
        if self.spike_factor <= 1:
            raise ValueError(f"spike_factor must be > 1, got {spike_factor}")
        self.min_history = check_int("min_history", min_history, minimum=1)
        self.horizon_fraction = check_float("horizon_fraction", horizon_fraction, positive=True)
        if self.horizon_fraction >= 1:
            raise ValueError(f"horizon_fraction must be < 1, got {horizon_fraction}")
        self.threshold = check_float("threshold", threshold, positive=True)
        if isinstance(stop_on, str):
            stop_on = [stop_on]
        self.stop_on = set(stop_on)
        unknown = self.stop_on - set(EVENT_KINDS)
        if unknown:
            raise ValueError(f"stop_on must name events among {EVENT_KINDS}, got {sorted(unknown)}")
        self.horizons: list[int] = []
        self.events: list[GradientEvent] = []
        self._active: set[str] = set()  # conditions that hold now: warned once already

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.horizons, self.events, self._active = [], [], set()
        super().on_train_begin(logs)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        super().on_epoch_end(epoch, logs)
        if logs is not None and self.horizons:
            logs["horizon"] = float(self.horizons[-1])

    def record(self, step: int, epoch: float, grad_norm: float, profile: np.ndarray) -> None:
        """Keep the measurement, then check it for spikes, overflow and a shrinking horizon."""
        earlier = [g for g in self.grad_norms if math.isfinite(g)]
        super().record(step, epoch, grad_norm, profile)
        reach = self._shortest_horizon(profile)
        self.horizons.append(reach)

        finite = math.isfinite(grad_norm) and bool(np.all(np.isfinite(profile[~np.isnan(profile)])))
        median = float(np.median(earlier)) if len(earlier) >= self.min_history else math.inf
        first = self.horizons[0]
        checks = {
            "nonfinite": (not finite, f"non-finite gradients (global norm {grad_norm})"),
            "spike": (
                finite and grad_norm > self.spike_factor * median,
                f"gradient norm {grad_norm:.3g} is {grad_norm / max(median, 1e-300):.1f}x "
                f"the running median {median:.3g}",
            ),
            "horizon": (
                finite and reach < self.horizon_fraction * first,
                f"the gradient now reaches {reach} steps back, down from {first} at the "
                "first measurement",
            ),
        }
        for kind, (holds, message) in checks.items():
            if holds and kind not in self._active:
                self._event(kind, step, epoch, message)
            if holds:
                self._active.add(kind)
            else:
                self._active.discard(kind)

    def _shortest_horizon(self, profile: np.ndarray) -> int:
        reaches = []
        for row in np.atleast_2d(profile):
            row = row[~np.isnan(row)]  # shorter layers are padded with NaN at the end
            found = horizon(row, threshold=self.threshold) if np.all(np.isfinite(row)) else 0
            reaches.append(len(row) if found is None else found)
        return int(min(reaches))

    def _event(self, kind: str, step: int, epoch: float, message: str) -> None:
        self.events.append(GradientEvent(kind=kind, step=step, epoch=epoch, message=message))
        stopping = kind in self.stop_on and self.model is not None
        warnings.warn(
            f"GradientMonitor, step {step}: {message}"
            + ("; stopping training" if stopping else ""),
            RuntimeWarning,
            stacklevel=2,
        )
        if stopping:
            self.model.stop_training = True
