"""The exact one-pass probe of dL/dh_t for every time step of every recurrent layer.

How it works. While the model is traced, each recurrent layer's ``call`` is replaced by
a loop over time that computes what the layer computes and adds a zero tensor ``eps_t``
to the new state::

    h_t = cell(x_t, h_{t-1}) + eps_t,      eps_t = 0.

The value of the network is unchanged, and ``dL/d eps_t`` is exactly the total
derivative dL/dh_t: through the read-out *and* through every later state. One
``tape.gradient`` call over all layers' perturbations gives every step of every layer
at once: one forward and one backward pass, the cost of a training step. (Taking the
gradient with respect to the layer's returned sequence instead would miss the paths
through later states.) The traced function is compiled and cached per model and input
shape, so later calls cost only the run.

Exact or refused. Keras's ``SimpleRNNCell``, ``LSTMCell`` and ``GRUCell`` are replayed
from their weights in Keras's own order of operations; any other cell (a subclass, a
custom cell in ``keras.layers.RNN``) is run by calling the cell itself. The first time a
compiled probe runs, it checks itself: every recurrent layer's replayed output must
equal the layer's own output on the same inputs, and the model's output must equal
``model(x, training=False)``, within the dtype's precision. The probe runs on
TensorFlow's own kernels, which reproduce Keras's forward pass exactly, and switches to
XLA (faster on a CPU) when the same probe is run again and again; if XLA's arithmetic
drifts from Keras's (a chaotic network amplifies rounding), it stays without XLA. If
the replay does not reproduce the model, it raises a ``ValueError`` naming the layer. What it
refuses outright: stateful layers, layers that override ``call``, cells whose output
is not their first state, and ``state="c"`` for anything but a stock LSTM cell.

Rows. One row per recurrent layer call, in call order; a ``Bidirectional`` layer gives
two rows, ``"name (forward)"`` then ``"name (backward)"``. A layer called more than once
(a shared layer, or one inside ``TimeDistributed``, called once per slice) gives a row per
call, the second named ``"name (call 2)"`` and so on; two different layers with the same
name (two reloaded copies of one model) are told apart as ``"name [2]"``. Every row is indexed by
*input time* t = 1..T: entry t of a backward row is the gradient with respect to the
backward layer's state after it has read x_T, ..., x_t (its last processed step is
t = 1). Masked steps (``Masking``, ``Embedding(mask_zero=True)``) carry the state, as in
Keras; a row's value at step t is the mean over the examples in which step t is not
masked, and NaN where it is masked in every example. Read such a profile with care: its
steps average different sets of examples (in a left-padded batch the early steps hold
only the longest sequences), so a change along t can come from which examples are
counted as well as from the gradient; ``state_gradients`` gives each example's own.

The loss. By default the model's compiled loss (a name, a function or a
``keras.losses.Loss``, with its ``from_logits``); MSE if the model is not compiled;
``1/2 ||output||^2`` without targets. ``L_i`` is example i's own loss, the mean of
Keras's unreduced loss over the example's entries (its unmasked steps for a masked
sequence output), so values do not shrink with the batch size.

For LSTM layers the cell state can be probed too: ``eps`` is then added to ``c_t``
before ``h_t = o_t * tanh(c_t)`` is formed, so dL/dc_t includes the path through h_t.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from rnngrad._engine import STATES, ProbeRun, global_norm, run_probe
from rnngrad._inputs import check_model, prepare_batches
from rnngrad._losses import LOSS_NAMES, resolve_loss

__all__ = [
    "LOSSES",
    "STATES",
    "GradientProfiles",
    "check_model_data",
    "global_gradient_norm",
    "gradient_profiles",
    "state_gradient_norms",
    "state_gradients",
]

LOSSES = LOSS_NAMES
"""Loss names the book uses. Any name ``keras.losses.get`` knows, a ``keras.losses.Loss``
or a callable ``(y_true, y_pred) -> (B,)`` also works; ``None`` is the model's own."""

LossArg = str | keras.losses.Loss | Callable[[tf.Tensor, tf.Tensor], tf.Tensor] | None


def state_gradient_norms(
    model: keras.Model,
    x: Any,
    y: Any = None,
    *,
    loss: LossArg = None,
    state: str = "h",
    jit_compile: bool | str = "auto",
    batch_size: int | None = None,
) -> np.ndarray:
    """Mean norm of dL_i/dh_t for every time step and every recurrent row.

    Parameters
    ----------
    model : keras.Model
        A built Keras model (Sequential, Functional or subclassed) with one output and
        one or more recurrent layers: ``SimpleRNN``, ``LSTM``, ``GRU``,
        ``keras.layers.RNN`` with any cell whose output is its first state,
        ``Bidirectional`` wrappers of these; stacked, nested, masked, with other layers
        before and after. It runs with ``training=False``.
    x : array-like, list, tuple or dict of array-like, or tf.data.Dataset
        The inputs, e.g. ``(B, T, features)``; one array per input for a multi-input
        model (a dict keyed by the input layers' names); or a dataset of ``(x, y)`` or
        ``x`` batches (then ``y`` must be None).
    y : array-like or None
        Targets matching the model's output (class ids for a sparse cross-entropy).
        ``None`` uses the loss ``1/2 ||output||^2`` per example, a target-free probe of
        the network itself. Must be finite.
    loss : None, str, keras.losses.Loss or callable, default None
        ``None``: the model's compiled loss, or MSE if it is not compiled. A name
        (``"mse"``, ``"sparse_categorical_crossentropy"``, ... with Keras's defaults,
        so ``from_logits=False``), a ``keras.losses.Loss`` (e.g.
        ``SparseCategoricalCrossentropy(from_logits=True)``) or a callable
        ``(y_true, y_pred) -> (B,)`` or ``(B, T)``. Whether outputs are probabilities
        comes from the loss, never from the last layer's activation.
    state : {"h", "c", "all"}, default "h"
        ``"h"``: the hidden output ``h_t``; ``"c"``: the LSTM cell state ``c_t``
        (``ValueError`` for a row that has none); ``"all"``: ``h_t`` and, where the
        row has one, ``c_t``, concatenated.
    jit_compile : bool or "auto", default "auto"
        True: XLA from the first run; ``"auto"``: XLA once the same probe (model,
        options and input shapes) has run ``XLA_AFTER_STABLE_RUNS`` (8) times in a row on
        the same weights, so one-off probes and training monitors skip its compile time
        and its re-checks (a count, so a notebook run twice gets the same numbers); False:
        never. Either way a probe whose XLA form does not reproduce the
        model runs on TensorFlow's own kernels instead.
    batch_size : int, optional
        Run the probe on batches of at most this many examples (for inputs too large
        for one pass); the result is the same mean over every example.

    Returns
    -------
    numpy.ndarray
        float64, shape ``(rows, T)``: entry ``[r, t]`` is the mean over the examples
        (in which step t is not masked) of ``||dL_i/dh_t||_2`` for row ``r`` at step
        ``t = 1..T`` (``h_0`` excluded). Rows are recurrent layer calls in call order,
        a ``Bidirectional`` layer giving its forward then its backward direction (see
        :func:`gradient_profiles` for the rows' names). Rows shorter than the longest
        are padded with NaN; a step masked in every example is NaN.

    Warns
    -----
    RuntimeWarning
        If gradients overflow (inf or NaN) in the dtype they are computed in:
        exploding gradients are a result to report, not an error.
    UserWarning
        If the model is compiled with a loss but no targets were given (neither ``y``
        nor in the dataset) and ``loss`` is None: the array is then the gradient of
        ``1/2 ||output||^2``, not of the compiled loss.

    Examples
    --------
    >>> import rnngrad
    >>> from rnngrad.models import build_rnn
    >>> model = build_rnn("simple", 16, input_dim=2, recurrent_gain=0.5)
    >>> x, y = rnngrad.tasks.adding_problem(8, 20, seed=0)
    >>> norms = state_gradient_norms(model, x, y)
    >>> norms.shape
    (1, 20)
    >>> # gain 0.5: the gradient vanishes going back
    >>> bool(norms[0, 0] < norms[0, -1])
    True
    """
    run = run_probe(
        model, x, y, loss=loss, state=state, jit_compile=jit_compile, batch_size=batch_size
    )
    _warn_if_overflowing(run)
    _warn_if_compiled_loss_unused(model, run, loss)
    return run.norms()


def _warn_if_compiled_loss_unused(model: keras.Model, run: Any, loss: Any) -> None:
    """The bare arrays of :func:`state_gradient_norms` and :func:`state_gradients` do not
    say which loss they differentiate: say it where the model's compiled loss was passed
    over for want of targets."""
    compiled = getattr(model, "compiled", False) and getattr(model, "loss", None) is not None
    if compiled and loss is None and run.loss.source == "no targets":
        warnings.warn(
            f"model {model.name!r} is compiled with a loss, but no targets were given: "
            "these are the gradients of the target-free loss 1/2 ||output||^2, not of the "
            "compiled loss (pass y to use it)",
            UserWarning,
            stacklevel=3,
        )


def state_gradients(
    model: keras.Model,
    x: Any,
    y: Any = None,
    *,
    loss: LossArg = None,
    state: str = "h",
    jit_compile: bool | str = "auto",
    batch_size: int | None = None,
) -> list[np.ndarray]:
    """The raw gradients dL_i/dh_t, for analyses that need directions, not only norms.

    Takes the same arguments as :func:`state_gradient_norms`, runs the same single
    backward pass and warns as it does.

    Returns
    -------
    list of numpy.ndarray
        One array per row, shape ``(N, T, width)`` for all N examples given, in input
        time, where ``width`` is the layer's units (twice that for an LSTM with
        ``state="all"``). Entry ``[i]`` is the gradient of example i's own loss;
        masked steps hold the gradient with respect to the carried state (h, and c for
        an LSTM with ``state="c"`` or ``"all"``).

    Examples
    --------
    >>> import rnngrad
    >>> model = rnngrad.build_rnn("lstm", 3, input_dim=2)
    >>> x, y = rnngrad.tasks.adding_problem(4, 6, seed=0)
    >>> [g.shape for g in state_gradients(model, x, y, state="all")]
    [(4, 6, 6)]
    """
    run = run_probe(
        model,
        x,
        y,
        loss=loss,
        state=state,
        jit_compile=jit_compile,
        batch_size=batch_size,
        keep_gradients=True,
    )
    _warn_if_overflowing(run)
    _warn_if_compiled_loss_unused(model, run, loss)
    longest = max(g.shape[1] for batches in run.gradients for g in batches)
    return [_concatenate(batches, longest) for batches in run.gradients]


@dataclass
class GradientProfiles:
    """The probe's rows, labelled: ``profiles["lstm_1"]`` is that row's ``(T,)`` profile.

    Attributes
    ----------
    names : list of str
        One per row, in call order: the layer's name, or ``"name (forward)"`` and
        ``"name (backward)"`` for the two directions of a ``Bidirectional`` layer, and
        ``"name (call k)"`` for the k-th call of a layer called more than once.
    norms : numpy.ndarray
        ``(rows, T)``, as :func:`state_gradient_norms` returns.
    directions : list of str
        ``"forward"`` or ``"backward"``: the direction each row processes time in.
    cells : list of str
        The cell each row runs, in the package's one vocabulary: ``"simple"``,
        ``"lstm"`` or ``"gru"`` for Keras's cells (and their subclasses), ``"custom"``
        for any other.
    loss : str
        The loss differentiated, and where it came from.
    examples : int
        How many examples the means are over.
    """

    names: list[str]
    norms: np.ndarray
    directions: list[str]
    cells: list[str]
    loss: str
    examples: int

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.names:
            raise KeyError(f"no row named {name!r}; the rows are {self.names}")
        return self.norms[self.names.index(name)]

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def as_dict(self) -> dict[str, np.ndarray]:
        """``{row name: (T,) profile}``."""
        return {name: self.norms[i] for i, name in enumerate(self.names)}


def gradient_profiles(
    model: keras.Model,
    x: Any,
    y: Any = None,
    *,
    loss: LossArg = None,
    state: str = "h",
    jit_compile: bool | str = "auto",
    batch_size: int | None = None,
) -> GradientProfiles:
    """:func:`state_gradient_norms` with every row labelled by its layer.

    Takes the same arguments as :func:`state_gradient_norms`.

    Returns
    -------
    GradientProfiles

    Examples
    --------
    >>> import keras, numpy as np
    >>> inputs = keras.Input((12, 3))
    >>> hidden = keras.layers.Bidirectional(keras.layers.GRU(4), name="bi")(inputs)
    >>> model = keras.Model(inputs, keras.layers.Dense(1)(hidden))
    >>> x = np.random.default_rng(0).normal(size=(5, 12, 3)).astype("float32")
    >>> profiles = gradient_profiles(model, x, np.zeros((5, 1)))
    >>> profiles.names, profiles["bi (backward)"].shape
    (['bi (forward)', 'bi (backward)'], (12,))
    """
    run = run_probe(
        model, x, y, loss=loss, state=state, jit_compile=jit_compile, batch_size=batch_size
    )
    _warn_if_overflowing(run)
    return _profiles(run)


def global_gradient_norm(
    model: keras.Model,
    x: Any,
    y: Any = None,
    *,
    loss: LossArg = None,
    batch_size: int | None = None,
) -> float:
    """Norm of the gradient of the training loss with respect to all trainable weights.

    This is the quantity ``global_clipnorm`` clips: the gradient an optimizer would see
    for this batch, all variables concatenated. The loss is reduced as Keras reduces it
    (its ``reduction``, masks) and the model's own regularization losses
    (``model.losses``) are added, as in ``model.fit``; the model runs with
    ``training=False``.

    Parameters
    ----------
    model, x, y, loss, batch_size
        As in :func:`state_gradient_norms`. Over several batches, the gradient is the
        mean of the batches' gradients weighted by their sizes, which is the gradient on
        all the examples at once when Keras reduces the loss to the mean of per-example
        losses; for any other loss (a ``"sum"`` reduction, ``ignore_class``, a masked
        per-step loss) several batches raise ``ValueError``.

    Returns
    -------
    float
        Computed in float64 from the per-variable gradients; inf or NaN if they overflow.

    Examples
    --------
    >>> import rnngrad
    >>> model = rnngrad.build_rnn("gru", 8, input_dim=2)
    >>> x, y = rnngrad.tasks.adding_problem(16, 20, seed=0)
    >>> bool(global_gradient_norm(model, x, y) > 0)
    True
    """
    value, _ = global_norm(model, x, y, loss=loss, batch_size=batch_size)
    return value


def check_model_data(
    model: keras.Model, x: Any, y: Any, loss: LossArg = None
) -> tuple[Any, tf.Tensor | None]:
    """Validate a model, a batch and a loss the way the probe does; return tensors.

    Raises ``TypeError``/``ValueError`` naming the argument for anything the probe would
    not accept: a non-Keras or unbuilt model, several outputs, an unknown loss, ``x`` of
    the wrong structure, rank, feature size or dtype, non-finite ``x`` or ``y``, ``y``
    whose batch or shape does not match. Other modules that run a model on a user's
    batch call it, so every entry point rejects bad input the same way.

    Returns
    -------
    x, y : tf.Tensor
        ``x`` as the model takes it (a list for a multi-input model); ``y`` is None when
        no targets were given.
    """
    check_model(model)
    if isinstance(x, tf.data.Dataset):
        raise TypeError("x must be arrays here, not a tf.data.Dataset")
    _, batches = prepare_batches(
        model, x, y, lambda has: resolve_loss(model, loss, has_targets=has)
    )
    batch = next(batches)
    x_out = tf.nest.map_structure(tf.convert_to_tensor, batch.x)
    return x_out, None if batch.y is None else tf.convert_to_tensor(batch.y)


# --------------------------------------------------------------------------- helpers


def _profiles(run: ProbeRun) -> GradientProfiles:
    return GradientProfiles(
        names=[row.name for row in run.rows],
        norms=run.norms(),
        directions=["backward" if row.backwards else "forward" for row in run.rows],
        cells=[row.family or "custom" for row in run.rows],
        loss=run.loss.describe(),
        examples=run.examples,
    )


def _concatenate(batches: list[np.ndarray], longest: int) -> np.ndarray:
    padded = []
    for g in batches:
        if g.shape[1] < longest:
            pad = np.full((g.shape[0], longest - g.shape[1], g.shape[2]), np.nan, g.dtype)
            g = np.concatenate([g, pad], axis=1)
        padded.append(g)
    return np.concatenate(padded, axis=0)


def _warn_if_overflowing(run: ProbeRun) -> None:
    """Warn when gradients overflowed the dtype they were computed in, or, in half
    precision, underflowed to exact zeros."""
    dtype = run.rows[0].layer.cell.compute_dtype
    total = sum(int(c.sum()) for c in run.norm_counts)
    if run.non_finite:
        largest = tf.as_dtype(dtype).max
        warnings.warn(
            f"{run.non_finite} of {total} gradient norms are inf or NaN: the gradients "
            f"overflow {dtype}'s range (max {largest:.2g}), as exploding gradients do.",
            RuntimeWarning,
            stacklevel=3,
        )
    if dtype in ("float16", "bfloat16"):
        norms = run.norms()
        zeros = int(np.count_nonzero(norms == 0))
        if zeros and np.nanmax(norms) > 0:
            tiny = float(np.finfo(np.float16).smallest_subnormal) if dtype == "float16" else None
            smallest = f" (smallest {tiny:.1g})" if tiny else ""
            warnings.warn(
                f"{zeros} of {norms.size} gradient norms are exactly 0: the gradients underflow "
                f"{dtype}{smallest}; the same weights in float32 would measure them.",
                RuntimeWarning,
                stacklevel=3,
            )
