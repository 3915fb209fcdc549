"""The three test beds of the remedies chapters: one per meaning of a gradient problem.

"Exploding" names two different things, and the remedies chapters measure each remedy
on a bed built for the problem it concerns:

- the **exploding bed** (:func:`build_exploding`): a network with *exploding BPTT
  gradients*, whose back-propagated gradient grows with the lag at initialization: a
  tanh ``SimpleRNN`` of 32 units with ``W_h = 2 Q`` (``Q`` orthogonal) on the adding
  problem at ``T = 50``, trained with plain SGD in batches of 32;
- the **instability bed** (:func:`build_instability`): a *training instability*, a step
  too large for the curvature of the loss at a short length where the gradient does not
  grow with the lag: a tanh ``SimpleRNN`` of 64 units with ``W_h = Q`` at ``T = 10``,
  trained with SGD at 0.1 with momentum 0.9 (:func:`instability_optimizer`) in batches
  of 64;
- the **vanishing bed** (:func:`build_vanishing`): a tanh ``SimpleRNN`` of 64 units with
  ``W_h = 0.5 Q`` at ``T = 50``, in float64 so that long-range shares of 1e-8 are
  resolved.

Each builder takes the remedy as arguments (the cell, the recurrent gain and
initializer), so a remedy that changes the network is the same call with other values.
:func:`bed_data` gives each bed's data sets, always the same for the same bed.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from rnngrad._validation import check_array, check_choice, check_int
from rnngrad.callbacks import updates_made
from rnngrad.models import build_rnn
from rnngrad.tasks import adding_problem
from rnngrad.training import make_optimizer

__all__ = [
    "BEDS",
    "LastFiniteWeights",
    "bed_data",
    "build_exploding",
    "build_instability",
    "build_vanishing",
    "compiled_mse",
    "finite_weights",
    "instability_optimizer",
    "validation_mse",
]

BEDS = {
    # name: (sequence length, {data set: (number of sequences, seed)})
    "exploding": (50, {"train": (512, 0), "val": (512, 1), "probe": (64, 2)}),
    "instability": (10, {"train": (2048, 0), "test": (512, 1), "probe": (64, 2)}),
    "vanishing": (50, {"train": (512, 3), "probe": (64, 4)}),
}
"""Each bed's sequence length and data sets (``(n, seed)`` for the adding problem)."""


def bed_data(bed: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The adding-problem data sets of one bed, as ``{name: (x, y)}``.

    Parameters
    ----------
    bed : {"exploding", "instability", "vanishing"}

    Returns
    -------
    dict of str to tuple of numpy.ndarray
        ``"train"`` and ``"probe"`` for every bed, plus ``"val"`` (exploding) or
        ``"test"`` (instability); see :data:`BEDS`.

    Examples
    --------
    >>> data = bed_data("exploding")
    >>> data["train"][0].shape, data["probe"][0].shape
    ((512, 50, 2), (64, 50, 2))
    """
    check_choice("bed", bed, BEDS)
    length, sets = BEDS[bed]
    return {name: adding_problem(n, length, seed=seed) for name, (n, seed) in sets.items()}


def build_exploding(
    seed: int = 0, cell: str = "simple", gain: float = 2.0, init: str = "orthogonal"
) -> keras.Model:
    """The exploding bed's network (by default ``W_h = 2Q``, 32 units), or a remedy's.

    Examples
    --------
    >>> model = build_exploding()
    >>> w_h = model.layers[1].cell.recurrent_kernel.numpy()
    >>> round(float(np.linalg.svd(w_h)[1][0]), 4)
    2.0
    """
    return build_rnn(
        cell, 32, input_dim=2, recurrent_gain=gain, recurrent_initializer=init, seed=seed
    )


def build_instability(
    seed: int = 0, cell: str = "simple", gain: float = 1.0, init: str = "orthogonal"
) -> keras.Model:
    """The instability bed's network (by default ``W_h = Q``, 64 units), or a remedy's.

    Examples
    --------
    >>> build_instability().layers[1].units
    64
    """
    return build_rnn(
        cell, 64, input_dim=2, recurrent_gain=gain, recurrent_initializer=init, seed=seed
    )


def build_vanishing(
    cell: str = "simple", gain: float = 0.5, init: str = "orthogonal"
) -> keras.Model:
    """The vanishing bed's network (by default ``W_h = 0.5 Q``, 64 units, float64).

    Examples
    --------
    >>> build_vanishing().layers[1].cell.recurrent_kernel.dtype
    'float64'
    """
    return build_rnn(
        cell,
        64,
        input_dim=2,
        recurrent_gain=gain,
        recurrent_initializer=init,
        dtype="float64",
        seed=0,
    )


def instability_optimizer(
    learning_rate: Any = 0.1, **clipping: float
) -> keras.optimizers.Optimizer:
    """The instability bed's optimizer: SGD with momentum 0.9 (and any Keras clipping).

    Examples
    --------
    >>> optimizer = instability_optimizer(global_clipnorm=1.0)
    >>> optimizer.momentum, optimizer.global_clipnorm
    (0.9, 1.0)
    """
    return make_optimizer("sgd", learning_rate, momentum=0.9, **clipping)


def finite_weights(model: keras.Model) -> bool:
    """Whether every weight of ``model`` is finite (a run that overflowed leaves NaN or inf).

    Examples
    --------
    >>> finite_weights(build_exploding())
    True
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model, got {type(model).__name__}")
    return all(bool(np.all(np.isfinite(w))) for w in model.get_weights())


# model -> its forward pass as one compiled function (weak keys: it dies with the model).
_FORWARD: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def validation_mse(model: keras.Model, x: Any, y: Any, *, compiled: bool = False) -> float:
    """The model's MSE on ``(x, y)``, or ``inf`` once a weight has overflowed.

    The model runs once on the whole set (``training=False``), eagerly by default.
    ``model.predict`` would trace a prediction function for every model it sees, and after
    :func:`rnngrad.training.train` (32 updates per compiled call) one that holds 32 copies
    of the network: seconds per model, against a fraction of a second for the eager call
    on the beds' few hundred sequences. With ``compiled=True`` the forward pass is traced
    once per model and kept (it reads the current weights when it runs), which pays for
    itself when one model is scored again and again with other weights loaded, as
    :func:`rnngrad.training.train_seeds` does with its compiled models (measured on 2
    cores: a 32-unit LSTM at ``T = 50`` on 512 sequences, 0.3-0.4 s a call eagerly, a
    0.2 s trace and then 0.03 s a call; the same numbers).

    Examples
    --------
    >>> data = bed_data("instability")
    >>> model = build_instability()
    >>> bool(validation_mse(model, *data["probe"]) > 0)
    True
    >>> validation_mse(model, *data["probe"], compiled=True) == validation_mse(
    ...     model, *data["probe"]
    ... )
    True
    """
    if not isinstance(compiled, bool):
        raise TypeError(f"compiled must be True or False, got {compiled!r}")
    if not finite_weights(model):
        return float("inf")
    if compiled:
        forward = _FORWARD.get(model)
        if forward is None:
            model_ref = weakref.ref(model)  # the function must not keep the model alive
            forward = _FORWARD[model] = tf.function(
                lambda inputs: model_ref()(inputs, training=False), reduce_retracing=True
            )
        output = forward(np.asarray(x))
    else:
        output = model(np.asarray(x), training=False)
    prediction = np.asarray(output, dtype=np.float64)
    return float(np.mean((prediction - np.asarray(y, dtype=np.float64)) ** 2))


def compiled_mse(model: keras.Model, x: Any, y: Any) -> Callable[[keras.Model], float]:
    """A compiled :func:`validation_mse` on ``(x, y)`` for any model of ``model``'s architecture.

    :func:`validation_mse` runs the model eagerly, a fraction of a second per call on the
    beds' few hundred sequences. A chapter that evaluates many trained models of one
    architecture can instead copy each one's weights into ``model`` and run one compiled
    forward pass: traced once, then milliseconds per call.

    Parameters
    ----------
    model : keras.Model
        The model the weights are copied into (its own weights are overwritten); it
        runs with ``training=False``.
    x, y : array-like
        The inputs and targets.

    Returns
    -------
    callable
        ``trained -> float``: the MSE of ``trained``'s weights on ``(x, y)`` (float64
        mean of the float32 predictions), or ``inf`` once a weight has overflowed. A
        model of another architecture raises ``ValueError`` (from ``set_weights``).

    Examples
    --------
    >>> data = bed_data("instability")
    >>> evaluate = compiled_mse(build_instability(), *data["probe"])
    >>> other = build_instability(seed=1)
    >>> bool(abs(evaluate(other) - validation_mse(other, *data["probe"])) < 1e-6)
    True
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model, got {type(model).__name__}")
    x = check_array("x", x)
    y = check_array("y", y).astype(np.float64)
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same number of examples, got {len(x)}, {len(y)}")
    inputs = tf.constant(x, dtype=model.inputs[0].dtype)
    forward = tf.function(lambda: model(inputs, training=False))

    def evaluate(trained: keras.Model) -> float:
        if not finite_weights(trained):
            return float("inf")
        if trained is not model:
            model.set_weights(trained.get_weights())
        prediction = np.asarray(forward(), dtype=np.float64)
        return float(np.mean((prediction - y) ** 2))

    return evaluate


class LastFiniteWeights(keras.callbacks.Callback):
    """Keep a copy of the weights after every ``every`` updates while they are finite.

    After a run that overflowed, :attr:`weights` are the last finite weights seen and
    :attr:`updates` the number of updates made when they were copied: at most ``every``
    updates before the first non-finite one.

    Parameters
    ----------
    every : int, default 1
        Copy after every this many updates (``rnngrad.training.train`` then runs that
        many updates per compiled call).

    Attributes
    ----------
    weights : list of numpy.ndarray or None
        The last finite weights (None before the first copy).
    updates : int or None
        The updates made when they were copied.

    Examples
    --------
    >>> import rnngrad
    >>> x, y = bed_data("instability")["probe"]
    >>> keep = LastFiniteWeights(every=2)
    >>> _ = rnngrad.training.train(
    ...     build_instability(), x, y, epochs=1, batch_size=16, callbacks=[keep]
    ... )
    >>> keep.updates
    4
    """

    watches_batches = False  # it needs the model only after every ``every`` updates

    def __init__(self, every: int = 1) -> None:
        super().__init__()
        self.updates_per_call = check_int("every", every, minimum=1)
        self.weights: list[np.ndarray] | None = None
        self.updates: int | None = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.weights, self.updates = None, None
        self._first_update = updates_made(self.model) or 0
        self._keep()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._keep()

    def _keep(self) -> None:
        if finite_weights(self.model):
            self.weights = self.model.get_weights()
            self.updates = (updates_made(self.model) or 0) - self._first_update
