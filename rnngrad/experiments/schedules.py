"""Learning-rate schedules for :func:`rnngrad.training.make_optimizer` and ``train``.

Keras's own schedules (``keras.optimizers.schedules``) work too; :class:`WarmupDecay`
adds the warm-up-then-decay shape used for recurrent networks, where the first updates
(with Adam's moment estimates not yet settled) are the likeliest to jump off a cliff
of the loss surface. It is registered with Keras, so an optimizer that uses it saves
and loads with the model.
"""

from __future__ import annotations

import math
from typing import Any

import keras

from rnngrad._validation import check_choice, check_float, check_int

__all__ = ["WarmupDecay"]


@keras.saving.register_keras_serializable(package="rnngrad")
class WarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to a peak learning rate, then a cosine or linear decay.

    With ``w = warmup_steps``, ``d = decay_steps``, peak rate ``p`` and final rate
    ``f``, the rate at update ``s`` (counted from 0) is::

        lr(s) = p * s / w                                  for s < w
        lr(s) = f + (p - f) * shape(min(s - w, d) / d)     for s >= w

    with ``shape(u) = (1 + cos(pi u)) / 2`` (``"cosine"``) or ``1 - u``
    (``"linear"``); after ``w + d`` updates it stays at ``f``. Warm-up keeps the first
    updates small while Adam's moment estimates and the weights settle; the decay lets
    training settle into a minimum. The cosine case equals Keras's
    ``CosineDecay(0.0, d, alpha=f / p, warmup_target=p, warmup_steps=w)``.

    Parameters
    ----------
    peak_learning_rate : float
        ``p`` > 0, reached at the end of the warm-up.
    warmup_steps : int
        ``w`` >= 0 updates of linear warm-up from 0 (0: start at the peak).
    decay_steps : int
        ``d`` >= 1 updates of decay.
    final_learning_rate : float, default 0.0
        ``f``, with 0 <= f <= p.
    decay : {"cosine", "linear"}, default "cosine"
    name : str, optional

    Examples
    --------
    >>> schedule = WarmupDecay(0.1, warmup_steps=10, decay_steps=100)
    >>> [round(float(schedule(s)), 4) for s in (0, 5, 10, 60, 110, 500)]
    [0.0, 0.05, 0.1, 0.05, 0.0, 0.0]
    """

    DECAYS = ("cosine", "linear")

    def __init__(
        self,
        peak_learning_rate: float,
        warmup_steps: int,
        decay_steps: int,
        *,
        final_learning_rate: float = 0.0,
        decay: str = "cosine",
        name: str | None = None,
    ) -> None:
        super().__init__()
        self.peak_learning_rate = check_float(
            "peak_learning_rate", peak_learning_rate, positive=True
        )
        self.warmup_steps = check_int("warmup_steps", warmup_steps, minimum=0)
        self.decay_steps = check_int("decay_steps", decay_steps, minimum=1)
        self.final_learning_rate = check_float("final_learning_rate", final_learning_rate)
        if not 0.0 <= self.final_learning_rate <= self.peak_learning_rate:
            raise ValueError(
                f"final_learning_rate must lie in [0, peak_learning_rate = "
                f"{self.peak_learning_rate}], got {self.final_learning_rate}"
            )
        self.decay = check_choice("decay", decay, self.DECAYS)
        self.name = name

    def __call__(self, step: Any) -> Any:
        ops = keras.ops
        step = ops.cast(step, "float32")
        peak, final = self.peak_learning_rate, self.final_learning_rate
        warm = peak * step / max(self.warmup_steps, 1)
        progress = ops.minimum(ops.maximum(step - self.warmup_steps, 0.0), self.decay_steps)
        progress = progress / self.decay_steps
        if self.decay == "cosine":
            shape = 0.5 * (1.0 + ops.cos(math.pi * progress))
        else:
            shape = 1.0 - progress
        decayed = final + (peak - final) * shape
        return ops.where(step < self.warmup_steps, warm, decayed)

    def get_config(self) -> dict[str, Any]:
        return {
            "peak_learning_rate": self.peak_learning_rate,
            "warmup_steps": self.warmup_steps,
            "decay_steps": self.decay_steps,
            "final_learning_rate": self.final_learning_rate,
            "decay": self.decay,
            "name": self.name,
        }
