"""Keras callbacks for training runs: stop on divergence, record gradients as training goes.

:class:`StopOnNonFinite` ends a fit at the first NaN or infinite loss while keeping the
history so far (:func:`rnngrad.training.train` always adds it). :class:`GradientHistory`
measures, on a fixed probe batch, the global norm of the loss gradient with respect to
the trainable weights and the state-gradient profile of every recurrent layer, before
training and after every epoch (or every N batches), so a chapter can show how gradient
flow changes while a network learns.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import keras
import numpy as np

from rnngrad._engine import global_norm, run_probe
from rnngrad._inputs import check_inputs, check_model, check_targets
from rnngrad._losses import check_loss_argument, resolve_loss
from rnngrad._validation import check_array, check_int
from rnngrad.probes import LossArg

__all__ = ["GradientHistory", "StopOnNonFinite"]


def updates_made(model: keras.Model | None) -> int | None:
    """The updates the model's optimizer has applied so far, or None without one."""
    optimizer = getattr(model, "optimizer", None)
    iterations = getattr(optimizer, "iterations", None)
    return None if iterations is None else int(iterations)


class StopOnNonFinite(keras.callbacks.Callback):
    """Stop training at the first batch whose loss is NaN or infinite, with a warning.

    Unlike an exception, this keeps everything recorded so far: Keras still closes the
    epoch, so ``History`` holds the partial epoch too.

    Keras calls it after every compiled call. :func:`rnngrad.training.train` runs
    ``STEPS_PER_EXECUTION`` updates per call unless another callback watches single
    batches; then the loss may have become non-finite up to that many updates before
    the batch reported.

    Attributes
    ----------
    stopped_at : tuple or None
        ``(epoch, batch)`` of the first non-finite loss seen (the last batch of its
        compiled call).
    """

    watches_batches = False  # the loss of a call's last batch is enough to stop

    def __init__(self) -> None:
        super().__init__()
        self.stopped_at: tuple[int, int] | None = None
        self._epoch = 0
        self._epoch_first_update: int | None = None

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        """Remember the epoch and the updates before it, to report where the loss
        became non-finite."""
        self._epoch = epoch
        self._epoch_first_update = updates_made(self.model)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        """Stop at the first batch whose loss is NaN or infinite."""
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)) and self.stopped_at is None:
            # Keras reports a call's last batch as if every call ran all its steps;
            # the optimizer's count says which batch really was the last
            made = updates_made(self.model)
            if made is not None and self._epoch_first_update is not None:
                batch = made - self._epoch_first_update - 1
            self.stopped_at = (self._epoch, batch)
            self.model.stop_training = True
            warnings.warn(
                f"training stopped: the loss became {float(loss)} at epoch {self._epoch}, "
                f"batch {batch} (exploding gradients?); the history so far is kept",
                RuntimeWarning,
                stacklevel=2,
            )


def _is_array_like(value: Any) -> bool:
    """A nested list of numbers (one array), as opposed to a list or dict of arrays."""
    if isinstance(value, dict):
        return False
    return not all(hasattr(part, "shape") for part in value)


class GradientHistory(keras.callbacks.Callback):
    """Record gradient norms and state-gradient profiles on a fixed batch during training.

    Each measurement takes the model's current weights and a fixed probe batch and
    computes two things: the global norm of the gradient of the batch-mean loss with
    respect to all trainable weights (the quantity gradient clipping looks at), and the
    profile ``||dL_i/dh_t||`` of every recurrent layer from
    :func:`rnngrad.probes.state_gradient_norms`. It measures once before the first
    update, then at the end of every epoch, or every ``every_n_batches`` updates (and
    at the end of every epoch). At each epoch's end it also writes ``grad_norm`` into
    the epoch's logs, so Keras's ``History`` (and :class:`rnngrad.training.TrainResult`)
    keeps it next to the loss.

    Subclasses can change what is done with a measurement by overriding :meth:`record`
    (for instance to warn about spikes), and what is measured by overriding
    ``measure()``. The lists are cleared at the start of every fit, as Keras's
    ``History`` is.

    Parameters
    ----------
    x_probe : array-like
        The probe batch of inputs, e.g. ``(B, T, features)``; it never changes, so
        measurements differ only because the weights do.
    y_probe : array-like or None
        Its targets; ``None`` uses the target-free loss ``1/2 ||output||^2``, as the
        probe does.
    loss : None, str, keras.losses.Loss or callable, default None
        The loss to differentiate, as for :func:`rnngrad.probes.state_gradient_norms`;
        ``None`` is the loss the model is compiled (trained) with.
    every_n_batches : int or None, default None
        Also measure after every this many updates (counted across epochs). A model
        compiled with ``steps_per_execution`` > 1 reports only every that many updates:
        then it measures at the first report at or after each multiple (``steps`` says
        which update).

    Attributes
    ----------
    steps : list of int
        The number of updates made before each measurement (0 = before training).
    epochs : list of float
        The same in epochs (``steps / steps_per_epoch``; NaN for a mid-epoch
        measurement when Keras does not know the epoch's length).
    grad_norms : list of float
        Global norm of the gradient of the training loss (as Keras reduces it, plus the
        model's regularization losses) w.r.t. the trainable weights, as in ``fit``.
    profiles : list of numpy.ndarray
        ``(rows, T)`` state-gradient norms, as from
        :func:`~rnngrad.probes.state_gradient_norms`.
    transports : list of list of numpy.ndarray
        Only when a subclass sets ``measures_transport``: per measurement, each row's
        transport by lag (see :func:`rnngrad.diagnosis.diagnose`).

    Examples
    --------
    >>> import rnngrad
    >>> x, y = rnngrad.tasks.adding_problem(64, 10, seed=0)
    >>> model = rnngrad.build_rnn("simple", 4, input_dim=2)
    >>> history = GradientHistory(x[:8], y[:8])
    >>> result = rnngrad.training.train(model, x, y, epochs=2, callbacks=[history])
    >>> history.epochs, len(result.history["grad_norm"])
    ([0.0, 1.0, 2.0], 2)
    """

    def __init__(
        self,
        x_probe: Any,
        y_probe: Any,
        *,
        loss: LossArg = None,
        every_n_batches: int | None = None,
    ) -> None:
        super().__init__()
        if isinstance(x_probe, (list, tuple, dict)) and not _is_array_like(x_probe):
            self.x_probe = x_probe  # several inputs: checked against the model when measured
            first = next(iter(x_probe.values())) if isinstance(x_probe, dict) else x_probe[0]
            examples = len(first)
        else:
            self.x_probe = check_array("x_probe", x_probe)
            if self.x_probe.ndim < 2:
                raise ValueError(
                    f"x_probe must be a batch (rank >= 2), got shape {self.x_probe.shape}"
                )
            examples = len(self.x_probe)
        self.y_probe = None if y_probe is None else check_array("y_probe", y_probe)
        if self.y_probe is not None and len(self.y_probe) != examples:
            raise ValueError(
                f"x_probe and y_probe must have the same number of examples, "
                f"got {examples} and {len(self.y_probe)}"
            )
        self.loss = check_loss_argument(loss)
        if every_n_batches is not None:
            every_n_batches = check_int("every_n_batches", every_n_batches, minimum=1)
        self.every_n_batches = every_n_batches
        self.steps: list[int] = []
        self.epochs: list[float] = []
        self.grad_norms: list[float] = []
        self.profiles: list[np.ndarray] = []
        self.transports: list[list[np.ndarray]] = []
        self.row_names: list[str] = []
        self._step = 0

    measures_transport = False
    """Whether ``measure()`` also measures each row's transport (costs a batch copy)."""

    # ---------------------------------------------------------------- the two hooks

    def measure(self) -> tuple[float, np.ndarray, list[np.ndarray] | None]:
        """Measure the current model on the probe batch.

        Overflowing gradients are not warned about here: they are recorded (as inf or
        NaN), and :class:`~rnngrad.monitor.GradientMonitor` reports them once.

        Returns
        -------
        grad_norm : float
            Global norm of the gradient of the batch-mean loss w.r.t. the trainable
            weights.
        profile : numpy.ndarray
            ``(rows, T)`` state-gradient norms.
        transport : list of numpy.ndarray or None
            Each row's transport by lag, if :attr:`measures_transport`.
        """
        grad_norm, _ = global_norm(self.model, self.x_probe, self.y_probe, loss=self.loss)
        run = run_probe(
            self.model,
            self.x_probe,
            self.y_probe,
            loss=self.loss,
            transport=self.measures_transport,
        )
        self.row_names = [row.name for row in run.rows]
        transport = run.transport() if self.measures_transport else None
        return grad_norm, run.norms(), transport

    def record(
        self,
        step: int,
        epoch: float,
        grad_norm: float,
        profile: np.ndarray,
        transport: list[np.ndarray] | None = None,
    ) -> None:
        """Keep one measurement (override to act on it, e.g. to warn)."""
        self.steps.append(step)
        self.epochs.append(epoch)
        self.grad_norms.append(grad_norm)
        self.profiles.append(profile)
        if transport is not None:
            self.transports.append(transport)

    # ---------------------------------------------------------------- Keras's hooks

    def on_train_begin(self, logs: dict | None = None) -> None:
        """Clear the records and measure the untrained model (step 0)."""
        self.steps, self.epochs, self.grad_norms, self.profiles = [], [], [], []
        self.transports = []
        self._step = 0
        self._first_update = updates_made(self.model) or 0
        self._check_probe_batch()
        self._take()

    def _check_probe_batch(self) -> None:
        """The probe batch against the model, which the callback first meets here: an
        error in the batch names ``x_probe``/``y_probe`` (the probe's own checks name
        ``x``/``y``); an error in the model or the loss is left as the probe reports it."""
        check_model(self.model)
        spec = resolve_loss(self.model, self.loss, has_targets=self.y_probe is not None)
        try:
            xs = check_inputs(self.model, self.x_probe)
            if self.y_probe is not None:
                check_targets(self.model, xs, self.y_probe, spec)
        except (ValueError, TypeError) as err:
            raise type(err)(
                f"{type(self).__name__}: the probe batch (x_probe, y_probe) does not fit "
                f"model {self.model.name!r}: {err}"
            ) from err

    @property
    def watches_batches(self) -> bool:
        """Whether it needs to see every update (``every_n_batches`` set): then
        :func:`rnngrad.training.train` runs one update per compiled call."""
        return self.every_n_batches is not None

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        """Count updates; measure every ``every_n_batches`` of them."""
        # a compiled call may run several updates: the optimizer counts them
        made = updates_made(self.model)
        before = self._step
        self._step = self._step + 1 if made is None else made - self._first_update
        n = self.every_n_batches
        if n and self._step // n > before // n:  # a multiple of n was reached or passed
            self._take()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """Measure (unless just done) and write ``grad_norm`` into the epoch's logs."""
        if not self.steps or self.steps[-1] != self._step:
            self._take(epoch + 1.0)
        if logs is not None:
            logs["grad_norm"] = self.grad_norms[-1]

    # ---------------------------------------------------------------- internals

    def _take(self, epoch: float | None = None) -> None:
        if epoch is None:
            per_epoch = (self.params or {}).get("steps")
            epoch = self._step / per_epoch if per_epoch else float("nan")
            epoch = 0.0 if self._step == 0 else epoch
        grad_norm, profile, transport = self.measure()
        self.record(self._step, float(epoch), grad_norm, profile, transport)
