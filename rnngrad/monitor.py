"""A training-time watchdog for gradient health: :class:`GradientMonitor`.

It is a :class:`~rnngrad.callbacks.GradientHistory` (the global gradient norm, the
state-gradient profile and each row's transport on a fixed probe batch, every epoch or
every N updates) that also *acts* on each measurement:

- a **spike**: the global gradient norm exceeds ``spike_factor`` times the running
  median of the earlier measurements (the symptom clipping is for);
- a **collapsing horizon**: the number of steps the gradient reaches back (the horizon
  of :func:`rnngrad.diagnosis.diagnose`, read off the transport) falls below
  ``horizon_fraction`` of its value at the first measurement;
- **non-finite** gradients: inf or NaN anywhere, in the dtype they are computed in.

Each event is a ``RuntimeWarning`` and an entry in :attr:`GradientMonitor.events`, once
when its condition starts (not again while it persists); the kinds listed in ``stop_on``
also stop training (Keras keeps the history so far). The norm and the horizon go into
the epoch logs before any other callback reads them (the monitor moves itself to the
front of the callback list), so ``History``, ``EarlyStopping`` or ``CSVLogger`` see
them wherever the monitor is listed. Given a ``log_dir``, it also writes each row's
horizon and decay per step as TensorBoard scalars, and the profiles as an image.
"""

from __future__ import annotations

import inspect
import io
import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from rnngrad._validation import check_float, check_int
from rnngrad.callbacks import GradientHistory
from rnngrad.probes import LossArg
from rnngrad.profiles import decay_rate
from rnngrad.verdicts import VANISHING_RATIO

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
        targets (or None), the loss (by default the model's compiled loss), and how
        often to measure (every epoch's end by default).
    spike_factor : float, default 10.0
        A norm above ``spike_factor`` x the running median of the earlier norms is a spike.
    min_history : int, default 3
        Measurements needed before spikes are judged (a median of one is noise).
    horizon_fraction : float, default 0.5
        The horizon collapses when it falls below this fraction of its first value.
    threshold : float, default :data:`rnngrad.verdicts.VANISHING_RATIO`
        The transport that counts as vanished, for the horizon.
    stop_on : list of str, optional
        Event kinds (``"spike"``, ``"horizon"``, ``"nonfinite"``) that stop training;
        by default none does.
    log_dir : str or os.PathLike, optional
        Write TensorBoard summaries here at every measurement: the global norm, each
        row's horizon and decay per step, and an image of the profiles.

    Attributes
    ----------
    horizons : list of float
        At each measurement, the shortest horizon over the recurrent rows, in steps: the
        sequence length when the transport stays above ``threshold`` at every lag, NaN
        when the gradients were not finite (no horizon can be read through overflowed
        states). The logs' ``horizon`` is the last of them.
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

    measures_transport = True

    def __init__(
        self,
        x_probe: Any,
        y_probe: Any,
        *,
        loss: LossArg = None,
        every_n_batches: int | None = None,
        spike_factor: float = 10.0,
        min_history: int = 3,
        horizon_fraction: float = 0.5,
        threshold: float = VANISHING_RATIO,
        stop_on: Iterable[str] = (),
        log_dir: str | Path | None = None,
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
        if self.threshold >= 1:
            raise ValueError(f"threshold must be < 1, got {threshold}")
        if isinstance(stop_on, str):
            stop_on = [stop_on]
        self.stop_on = set(stop_on)
        unknown = self.stop_on - set(EVENT_KINDS)
        if unknown:
            raise ValueError(f"stop_on must name events among {EVENT_KINDS}, got {sorted(unknown)}")
        if log_dir is not None and not isinstance(log_dir, (str, Path)):
            raise TypeError(f"log_dir must be a path, got {type(log_dir).__name__}")
        self.log_dir = None if log_dir is None else str(log_dir)
        self.horizons: list[float] = []
        self.events: list[GradientEvent] = []
        self._active: set[str] = set()  # conditions that hold now: warned once already
        self._writer = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        """Go first among the callbacks, clear the records and measure step 0."""
        _move_to_front_of_callback_list(self)
        self.horizons, self.events, self._active = [], [], set()
        if self.log_dir is not None and self._writer is None:
            import tensorflow as tf

            self._writer = tf.summary.create_file_writer(self.log_dir)
        super().on_train_begin(logs)

    def on_train_end(self, logs: dict | None = None) -> None:
        """Flush the TensorBoard summaries."""
        if self._writer is not None:
            self._writer.flush()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """Measure (unless just done); write ``grad_norm`` and ``horizon`` into the logs."""
        super().on_epoch_end(epoch, logs)
        if logs is not None and self.horizons:
            logs["horizon"] = float(self.horizons[-1])

    def record(
        self,
        step: int,
        epoch: float,
        grad_norm: float,
        profile: np.ndarray,
        transport: list[np.ndarray] | None = None,
    ) -> None:
        """Keep the measurement, then check it for spikes, overflow and a shrinking horizon."""
        if transport is None:
            raise ValueError("GradientMonitor.record needs each row's transport")
        earlier = [g for g in self.grad_norms if math.isfinite(g)]
        super().record(step, epoch, grad_norm, profile, transport)
        reaches = [self._horizon(row) for row in transport]
        reach = math.nan if any(math.isnan(r) for r in reaches) else float(min(reaches))
        self.horizons.append(reach)

        finite = (
            math.isfinite(grad_norm)
            and bool(np.all(np.isfinite(profile[~np.isnan(profile)])))
            and all(np.all(np.isfinite(row)) for row in transport)
        )
        median = float(np.median(earlier)) if len(earlier) >= self.min_history else math.inf
        first = self.horizons[0]
        checks = {
            "nonfinite": (not finite, f"non-finite gradients (global norm {grad_norm:.3g})"),
            "spike": (
                finite and grad_norm > self.spike_factor * median,
                f"gradient norm {grad_norm:.3g} is {grad_norm / max(median, 1e-300):.1f}x "
                f"the running median {median:.3g}",
            ),
            "horizon": (
                finite and reach < self.horizon_fraction * first,
                f"the gradient now reaches {reach:.0f} steps back, down from {first:.0f} at "
                "the first measurement",
            ),
        }
        for kind, (holds, message) in checks.items():
            if holds and kind not in self._active:
                self._event(kind, step, epoch, message)
            if holds:
                self._active.add(kind)
            else:
                self._active.discard(kind)
        if self._writer is not None:
            self._summaries(step, grad_norm, profile, transport, reaches)

    def _horizon(self, transport: np.ndarray) -> float:
        """Lags until the transport falls below the threshold (NaN if it overflowed: a
        zero would read as a collapse; the number of lags measured if it never falls)."""
        if not np.all(np.isfinite(transport)):
            return math.nan
        below = np.nonzero(transport < self.threshold)[0]
        return float(below[0]) if below.size else float(len(transport))

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

    def _summaries(self, step, grad_norm, profile, transport, reaches) -> None:
        import tensorflow as tf

        names = self.row_names or [f"row_{i}" for i in range(len(transport))]
        with self._writer.as_default(step=step):
            tf.summary.scalar("gradients/global_norm", grad_norm)
            for name, row, reach in zip(names, transport, reaches):
                tag = _tag(name)
                rate = decay_rate(row[::-1]) if len(row) > 1 else float("nan")
                tf.summary.scalar(f"gradients/{tag}/horizon", reach)
                tf.summary.scalar(f"gradients/{tag}/decay_per_step", math.exp(rate))
            tf.summary.image("gradients/profiles", _profile_image(names, profile, transport))


def _tag(name: str) -> str:
    """A TensorBoard tag from a row name: "bi (forward)" -> "bi_forward"."""
    cleaned = "".join(c if c.isalnum() or c in "-." else " " for c in name)
    return "_".join(cleaned.split())


def _profile_image(names, profile, transport) -> Any:
    """The profiles and transports as a (1, H, W, 4) uint8 image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import tensorflow as tf

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6, 6), layout="constrained")
    for name, row in zip(names, profile):
        top.semilogy(np.arange(1, len(row) + 1), row, label=name)
    top.set_xlabel("step t")
    top.set_ylabel("||dL/dh_t||")
    top.legend(fontsize=8)
    for name, row in zip(names, transport):
        bottom.semilogy(np.arange(len(row)), row, label=name)
    bottom.set_xlabel("steps back from the last state")
    bottom.set_ylabel("transport")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    return tf.image.decode_png(buffer.getvalue(), channels=4)[None]


def _move_to_front_of_callback_list(callback: keras.callbacks.Callback) -> None:
    """Move ``callback`` to the front of the Keras ``CallbackList`` running it, so the
    keys it writes into the epoch logs reach every other callback.

    Keras hands every callback the same logs dictionary, in list order, and offers no
    hook that runs before all of them; the list is found in the calling frames. Moving
    the current element to the front while Keras iterates over the list skips and
    repeats nothing (the elements before it shift by one, behind the iterator).
    """
    frame = inspect.currentframe()
    try:
        for _ in range(8):
            frame = frame.f_back if frame is not None else None
            if frame is None:
                return
            owner = frame.f_locals.get("self")
            if isinstance(owner, keras.callbacks.CallbackList):
                if callback in owner.callbacks and owner.callbacks[0] is not callback:
                    owner.callbacks.remove(callback)
                    owner.callbacks.insert(0, callback)
                return
    finally:
        del frame
