"""Train several small SimpleRNNs side by side, as the blocks of one wider network.

A chapter that trains the same small ``SimpleRNN`` from several seeds, or on two data
sets of the same length, pays for each run separately, although on a CPU a step of a
32-unit network costs little more than a step of a 96-unit one. :func:`train_side_by_side`
places ``K`` such networks on the diagonal of one network of ``K * units`` units: the
input kernel, the recurrent kernel and the read-out are block-diagonal, and constraints
put the off-diagonal blocks back to zero after every update. The loss is the sum of the
``K`` networks' own losses, so each block receives exactly its own network's gradient;
Adam's update is element-wise, so each block moves exactly as its network would alone.
The only thing the ``K`` runs share is the order of the minibatches.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from rnngrad._seed import seed_everything
from rnngrad._validation import check_array, check_int
from rnngrad.training import build_optimizer

__all__ = ["BlockMask", "train_side_by_side"]


class BlockMask(keras.constraints.Constraint):
    """Multiply a weight by a fixed 0/1 mask (keeps the off-diagonal blocks at zero)."""

    def __init__(self, mask: np.ndarray) -> None:
        self.mask = np.asarray(mask, dtype="float32")

    def __call__(self, w):
        return w * keras.ops.cast(self.mask, w.dtype)

    def get_config(self) -> dict:
        return {"mask": self.mask.tolist()}


def _block_mask(rows: int, cols: int, count: int) -> np.ndarray:
    """A ``(count * rows, count * cols)`` mask with ``count`` blocks of ones on the diagonal."""
    return np.kron(np.eye(count), np.ones((rows, cols)))


def _block_diagonal(blocks: Sequence[np.ndarray]) -> np.ndarray:
    rows, cols = blocks[0].shape
    out = np.zeros((len(blocks) * rows, len(blocks) * cols), dtype=blocks[0].dtype)
    for k, block in enumerate(blocks):
        out[k * rows : (k + 1) * rows, k * cols : (k + 1) * cols] = block
    return out


def _simple_rnn_parts(model: keras.Model) -> tuple[keras.layers.SimpleRNN, keras.layers.Dense]:
    rnns = [layer for layer in model.layers if isinstance(layer, keras.layers.SimpleRNN)]
    denses = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    others = [
        layer
        for layer in model.layers
        if not isinstance(
            layer, (keras.layers.SimpleRNN, keras.layers.Dense, keras.layers.InputLayer)
        )
    ]
    if len(rnns) != 1 or len(denses) != 1 or others or rnns[0].return_sequences:
        raise ValueError(
            f"each model must be one SimpleRNN (last step) and one Dense read-out, as "
            f"build_rnn('simple', ...) builds it; {model.name!r} is not"
        )
    return rnns[0], denses[0]


def train_side_by_side(
    models: Sequence[keras.Model],
    xs: Sequence[np.ndarray],
    ys: Sequence[np.ndarray],
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule,
    seed: int = 0,
    shuffle: bool = True,
) -> list[keras.Model]:
    """Train ``K`` single-layer SimpleRNN regressors with Adam and MSE, in one network.

    Network ``k`` trains on ``(xs[k], ys[k])``; the result is the same as training each
    alone with ``model.compile(keras.optimizers.Adam(learning_rate), "mse")`` and
    ``model.fit`` on the same minibatches, up to float32 rounding.

    Parameters
    ----------
    models : sequence of keras.Model
        ``K`` models as :func:`rnngrad.models.build_rnn` builds them with ``cell="simple"``,
        ``layers=1`` and ``output_dim=1``, all with the same units, activation and input
        size. Their weights are the starting point, and they receive the trained weights.
    xs, ys : sequence of array-like
        ``K`` inputs ``(N, T, input_dim)`` and targets ``(N, 1)``, with the same ``N``
        and ``T`` (the same array may be given for several models).
    epochs, batch_size : int
        As in ``model.fit``; every network sees the same minibatches.
    learning_rate : float or keras.optimizers.schedules.LearningRateSchedule
        Adam's learning rate.
    seed : int, default 0
        Seeds the shuffling (:func:`rnngrad.seed_everything`).
    shuffle : bool, default True
        Shuffle the examples every epoch, as ``model.fit`` does.

    Returns
    -------
    list of keras.Model
        ``models``, trained in place.

    Examples
    --------
    >>> import rnngrad
    >>> x, y = rnngrad.tasks.adding_problem(64, 5, seed=0)
    >>> nets = [rnngrad.build_rnn("simple", 4, input_dim=2, seed=s) for s in (0, 1)]
    >>> trained = train_side_by_side(
    ...     nets, [x, x], [y, y], epochs=1, batch_size=32, learning_rate=1e-2
    ... )
    >>> len(trained), trained[0] is nets[0]
    (2, True)
    """
    models = list(models)
    count = len(models)
    if count == 0 or len(xs) != count or len(ys) != count:
        raise ValueError(
            f"need as many inputs and targets as models, got {count} models, {len(xs)} "
            f"inputs and {len(ys)} targets"
        )
    epochs = check_int("epochs", epochs, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    parts = [_simple_rnn_parts(model) for model in models]
    rnn = parts[0][0]
    units, activation = rnn.units, rnn.activation
    xs = [check_array(f"xs[{k}]", x, ndim=3).astype("float32") for k, x in enumerate(xs)]
    ys = [
        check_array(f"ys[{k}]", y).astype("float32").reshape(len(y), -1) for k, y in enumerate(ys)
    ]
    if len({x.shape for x in xs}) != 1 or {y.shape[1] for y in ys} != {1}:
        raise ValueError("every input must have the same shape and every target one column")
    if any(len(y) != len(xs[0]) for y in ys):
        raise ValueError("targets must have as many examples as the inputs")
    for other, _ in parts[1:]:
        if other.units != units or other.activation is not activation:
            raise ValueError("every model must have the same units and activation")
    features = xs[0].shape[-1]
    inputs = keras.Input((None, count * features))
    wide = keras.layers.SimpleRNN(
        count * units,
        activation=activation,
        kernel_constraint=BlockMask(_block_mask(features, units, count)),
        recurrent_constraint=BlockMask(_block_mask(units, units, count)),
    )
    head = keras.layers.Dense(count, kernel_constraint=BlockMask(_block_mask(units, 1, count)))
    network = keras.Model(inputs, head(wide(inputs)))
    weights = [[w.numpy() for w in part.weights] for part in (p for pair in parts for p in pair)]
    kernel, recurrent, bias = (
        _block_diagonal([weights[2 * k][0] for k in range(count)]),
        _block_diagonal([weights[2 * k][1] for k in range(count)]),
        np.concatenate([weights[2 * k][2] for k in range(count)]),
    )
    wide.set_weights([kernel, recurrent, bias])
    head.set_weights(
        [
            _block_diagonal([weights[2 * k + 1][0] for k in range(count)]),
            np.concatenate([weights[2 * k + 1][1] for k in range(count)]),
        ]
    )

    def summed_mse(y_true, y_pred):  # (B,): the sum of the K networks' squared errors
        return keras.ops.sum(keras.ops.square(y_true - y_pred), axis=-1)

    network.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=summed_mse,
        jit_compile=False,
        steps_per_execution=-(-len(xs[0]) // batch_size),
    )
    build_optimizer(network)  # one trace of the training function, not two
    seed_everything(seed)
    network.fit(
        np.concatenate(xs, axis=-1),
        np.concatenate(ys, axis=-1),
        epochs=epochs,
        batch_size=batch_size,
        shuffle=shuffle,
        verbose=0,
    )
    kernel, recurrent, bias = wide.get_weights()
    out_kernel, out_bias = head.get_weights()
    for k, (layer, read_out) in enumerate(parts):
        rows, cols = slice(k * features, (k + 1) * features), slice(k * units, (k + 1) * units)
        layer.set_weights([kernel[rows, cols], recurrent[cols, cols], bias[cols]])
        read_out.set_weights([out_kernel[cols, k : k + 1], out_bias[k : k + 1]])
    return models
