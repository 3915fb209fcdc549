"""Stock Keras recurrent models with controlled initialization.

:func:`build_rnn` returns a plain ``keras.Model`` made only of Keras's own layers
(``SimpleRNN``, ``LSTM``, ``GRU``, ``Dense``), so anything the book measures on it also
holds for models readers build themselves, and it saves and loads with
``model.save("m.keras")`` without rnngrad installed.

Matrix convention. The book writes the recurrence with column vectors,
``h_t = phi(W_x x_t + W_h h_{t-1} + b)``. Keras multiplies row vectors from the left,
``h_t = phi(x_t K + h_{t-1} U + b)``, so Keras's ``recurrent_kernel`` ``U`` is the
book's ``W_h`` transposed. :func:`recurrent_matrix` returns ``W_h`` in the book's
convention.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np

from rnngrad._engine import cell_family
from rnngrad._validation import check_choice, check_float, check_int

__all__ = [
    "CELLS",
    "GATES",
    "KERAS_DEFAULT",
    "RECURRENT_INITIALIZERS",
    "build_rnn",
    "chrono_biases",
    "recurrent_init_matrix",
    "recurrent_layers",
    "recurrent_matrix",
    "set_forget_bias",
]

CELLS = {"simple": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM, "gru": keras.layers.GRU}
"""The cell names :func:`build_rnn` accepts and the Keras layers they build."""

RECURRENT_INITIALIZERS = ("orthogonal", "identity", "normal", "glorot_uniform")
"""Named recurrent initializers; each is multiplied by ``recurrent_gain``."""

KERAS_DEFAULT = "keras"
"""``recurrent_initializer`` value for Keras's own default: one orthogonal matrix over the
whole ``(units, gates * units)`` recurrent kernel, as ``keras.layers.LSTM(units)`` has."""

GATES = {"simple": ("h",), "lstm": ("i", "f", "c", "o"), "gru": ("z", "r", "h")}
"""Gate blocks of Keras's recurrent kernels, in Keras's order."""


def recurrent_init_matrix(name: str, units: int, *, seed: int, gain: float = 1.0) -> np.ndarray:
    """One ``units x units`` recurrent matrix drawn from a named initializer, times ``gain``.

    Parameters
    ----------
    name : {"orthogonal", "identity", "normal", "glorot_uniform"}
        ``"orthogonal"`` is Haar-random (QR of a Gaussian with the signs fixed);
        ``"normal"`` has entries N(0, 1/units), so its spectral radius is close to 1
        and its largest singular value close to 2; ``"glorot_uniform"`` has entries
        U(-sqrt(3/units), sqrt(3/units)).
    units : int
        Matrix size, >= 1.
    seed : int
        Seed of the NumPy generator.
    gain : float, default 1.0
        Scale applied to the matrix.

    Returns
    -------
    numpy.ndarray
        float64, shape ``(units, units)``.

    Examples
    --------
    >>> q = recurrent_init_matrix("orthogonal", 4, seed=0)
    >>> bool(np.allclose(q @ q.T, np.eye(4)))
    True
    """
    check_choice("recurrent_initializer", name, RECURRENT_INITIALIZERS)
    units = check_int("units", units, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    gain = check_float("recurrent_gain", gain)
    rng = np.random.default_rng(seed)
    if name == "orthogonal":
        q, r = np.linalg.qr(rng.standard_normal((units, units)))
        matrix = q * np.sign(np.diag(r))  # sign fix makes Q Haar-distributed
    elif name == "identity":
        matrix = np.eye(units)
    elif name == "normal":
        matrix = rng.standard_normal((units, units)) / np.sqrt(units)
    else:
        limit = np.sqrt(6.0 / (2 * units))
        matrix = rng.uniform(-limit, limit, size=(units, units))
    return gain * matrix


def build_rnn(
    cell: str,
    units: int,
    *,
    input_dim: int,
    output_dim: int = 1,
    layers: int = 1,
    activation: str | Callable | None = "tanh",
    recurrent_initializer: str | np.ndarray = "orthogonal",
    recurrent_gain: float = 1.0,
    forget_bias: float = 1.0,
    sequence_output: bool = False,
    seed: int = 0,
    output_activation: str | None = None,
    recurrent_activation: str = "sigmoid",
    use_bias: bool = True,
    length: int | None = None,
    dtype: str = "float32",
    name: str | None = None,
    residual: bool = False,
    chrono_length: int | None = None,
    kernel_initializer: str | keras.initializers.Initializer = "glorot_uniform",
) -> keras.Model:
    """Build a stacked recurrent network from stock Keras layers with a chosen recurrent init.

    The model maps ``(B, T, input_dim)`` to ``(B, output_dim)`` read from the last
    step, or to ``(B, T, output_dim)`` with ``sequence_output=True``: ``layers``
    recurrent layers of ``units`` each, then a ``Dense`` read-out.

    Parameters
    ----------
    cell : {"simple", "lstm", "gru"}
        ``keras.layers.SimpleRNN``, ``LSTM`` or ``GRU``.
    units : int
        Hidden units per recurrent layer, >= 1.
    input_dim : int
        Features per time step, >= 1.
    output_dim : int, default 1
        Units of the ``Dense`` read-out, >= 1.
    layers : int, default 1
        Number of stacked recurrent layers, >= 1.
    activation : str or callable or None, default "tanh"
        The recurrent layers' activation (for LSTM/GRU: the candidate and output
        nonlinearity). ``None`` or ``"linear"`` gives a linear RNN.
    recurrent_initializer : str or numpy.ndarray, default "orthogonal"
        One of :data:`RECURRENT_INITIALIZERS` (see :func:`recurrent_init_matrix`), or a
        ``(units, units)`` array used as ``W_h`` in the book's convention (Keras's
        ``recurrent_kernel`` is its transpose). For LSTM/GRU it is applied to each
        gate's ``units x units`` block, every block drawn independently. Or
        ``"keras"`` (:data:`KERAS_DEFAULT`): what a stock Keras layer gets, one
        orthogonal matrix over the whole ``(units, gates * units)`` kernel, so that for
        LSTM/GRU each gate's block is only a slice of it (singular values below 1); for
        SimpleRNN it is the same distribution as ``"orthogonal"``.
    recurrent_gain : float, default 1.0
        Multiplies every recurrent block.
    forget_bias : float, default 1.0
        Initial bias of the LSTM forget gate (Keras's ``unit_forget_bias`` gives 1.0).
        Ignored by the other cells.
    sequence_output : bool, default False
        Read out every step instead of only the last one.
    seed : int, default 0
        The same arguments and seed give identical weights.
    output_activation : str or None, default None
        Activation of the ``Dense`` read-out, e.g. ``"softmax"``.
    recurrent_activation : str, default "sigmoid"
        Gate activation of LSTM/GRU.
    use_bias : bool, default True
        Whether the recurrent layers have biases.
    length : int or None, default None
        Fixed sequence length of the ``Input``; ``None`` accepts any length.
    dtype : {"float32", "float64"}, default "float32"
        Precision of every layer.
    name : str or None
        Model name; by default ``"<cell>_rnn"``.
    residual : bool, default False
        Add each recurrent layer's input to its output, for every layer after the
        first (whose input has ``input_dim`` features, not ``units``):
        ``h^(l) = RNN_l(h^(l-1)) + h^(l-1)``, with ``keras.layers.Add``. Where the last
        layer returns only its last step, the skip takes the last step of its input.
    chrono_length : int or None, default None
        Chrono initialization (Tallec & Ollivier 2018) for LSTM and GRU, for
        dependencies up to about this many steps (>= 3): each unit's gate bias is
        ``log u`` with ``u ~ U(1, chrono_length - 1)`` (:func:`chrono_biases`), so its
        forget factor ``sigmoid(log u) = u / (1 + u)`` keeps a memory of about
        ``1 + u`` steps. LSTM: the forget bias is ``log u`` (``forget_bias`` is then
        ignored) and the input bias ``-log u``; GRU: the update gate ``z``, which
        multiplies ``h_{t-1}`` in Keras's GRU, gets ``log u``. ``None`` keeps the usual
        biases.
    kernel_initializer : str or keras.initializers.Initializer, default "glorot_uniform"
        Initializer of the input kernels ``W_x`` (a Keras name or an instance); it is
        re-seeded from ``seed`` for each layer, so the same arguments give the same
        weights.

    Returns
    -------
    keras.Model
        A Functional model, not compiled.

    Examples
    --------
    >>> model = build_rnn("lstm", 8, input_dim=2, layers=2, seed=1)
    >>> [layer.__class__.__name__ for layer in model.layers]
    ['InputLayer', 'LSTM', 'LSTM', 'Dense']
    """
    check_choice("cell", cell, CELLS)
    units = check_int("units", units, minimum=1)
    input_dim = check_int("input_dim", input_dim, minimum=1)
    output_dim = check_int("output_dim", output_dim, minimum=1)
    layers = check_int("layers", layers, minimum=1)
    recurrent_gain = check_float("recurrent_gain", recurrent_gain)
    forget_bias = check_float("forget_bias", forget_bias)
    seed = check_int("seed", seed, minimum=0)
    check_choice("dtype", dtype, ("float32", "float64"))
    if length is not None:
        length = check_int("length", length, minimum=1)
    if chrono_length is not None:
        chrono_length = check_int("chrono_length", chrono_length, minimum=3)
        if cell == "simple":
            raise ValueError("chrono_length applies to 'lstm' and 'gru' cells, not 'simple'")
    if not isinstance(residual, bool):
        raise TypeError(f"residual must be True or False, got {residual!r}")
    _kernel_initializer(kernel_initializer, seed)  # fail early on a bad name
    w_h = _check_recurrent_initializer(recurrent_initializer, units)
    activation = _check_activation("activation", activation)
    recurrent_activation = _check_activation("recurrent_activation", recurrent_activation)
    output_activation = _check_activation("output_activation", output_activation)

    inputs = keras.Input((length, input_dim), dtype=dtype, name="sequence")
    x = inputs
    for index in range(layers):
        return_sequences = sequence_output or index < layers - 1
        options = dict(
            activation=activation,
            use_bias=use_bias,
            return_sequences=return_sequences,
            kernel_initializer=_kernel_initializer(kernel_initializer, _subseed(seed, index, 0)),
            dtype=dtype,
            name=f"{cell}_{index + 1}",
        )
        if cell != "simple":
            options["recurrent_activation"] = recurrent_activation
        h = CELLS[cell](units, **options)(x)
        if residual and index > 0:
            skip = x if return_sequences else x[:, -1, :]  # (B, T, units) or (B, units)
            h = keras.layers.Add(dtype=dtype, name=f"residual_{index + 1}")([skip, h])
        x = h
    outputs = keras.layers.Dense(
        output_dim,
        activation=output_activation,
        kernel_initializer=keras.initializers.GlorotUniform(seed=_subseed(seed, layers, 0)),
        dtype=dtype,
        name="readout",
    )(x)
    model = keras.Model(inputs, outputs, name=name or f"{cell}_rnn")

    keras_default = (
        isinstance(recurrent_initializer, str) and recurrent_initializer == KERAS_DEFAULT
    )
    n_gates = len(GATES[cell])
    for index, layer in enumerate(recurrent_layers(model)):
        if keras_default:  # one orthogonal (units, gates * units) matrix, in Keras's layout
            whole = keras.initializers.Orthogonal(seed=_subseed(seed, index, 1))
            kernel = recurrent_gain * whole((units, n_gates * units), dtype).numpy()
        else:
            blocks = []
            for gate in range(n_gates):
                if w_h is None:
                    block = recurrent_init_matrix(
                        recurrent_initializer,
                        units,
                        seed=_subseed(seed, index, 1 + gate),
                        gain=recurrent_gain,
                    )
                else:
                    block = recurrent_gain * w_h
                blocks.append(block.T)  # Keras's recurrent_kernel is W_h transposed
            kernel = np.concatenate(blocks, axis=1)
        layer.cell.recurrent_kernel.assign(kernel.astype(dtype))
        if cell == "lstm" and use_bias:
            bias = np.zeros(4 * units, dtype=dtype)
            bias[units : 2 * units] = forget_bias  # Keras's gate order: i, f, c, o
            if chrono_length is not None:
                log_u = chrono_biases(chrono_length, units, seed=_subseed(seed, index, 9))
                bias[units : 2 * units] = log_u
                bias[:units] = -log_u
            layer.cell.bias.assign(bias)
        if cell == "gru" and use_bias and chrono_length is not None:
            bias = np.zeros(layer.cell.bias.shape, dtype=dtype)  # (2, 3 units) with reset_after
            z_bias = chrono_biases(chrono_length, units, seed=_subseed(seed, index, 9))
            if bias.ndim == 2:
                bias[0, :units] = z_bias  # input bias row; the recurrent row stays 0
            else:
                bias[:units] = z_bias
            layer.cell.bias.assign(bias)
    return model


def set_forget_bias(model: keras.Model, bias: float) -> list[str]:
    """Set the forget-gate bias of every LSTM in a model, both directions of a
    ``Bidirectional`` layer included; the other weights are kept.

    This is the change ``rnngrad.diagnose`` suggests when an LSTM's transport vanishes
    because its mean forget gate is too low for the sequence length.

    Parameters
    ----------
    model : keras.Model
        A built model; its LSTM cells (``LSTMCell`` or a subclass) with a bias are set.
    bias : float
        The new forget-gate bias of every unit (Keras's ``unit_forget_bias`` gives 1).

    Returns
    -------
    list of str
        The names of the layers changed, in the order Keras tracks them.

    Examples
    --------
    >>> model = build_rnn("lstm", 3, input_dim=2, layers=2)
    >>> set_forget_bias(model, 2.5)
    ['lstm_1', 'lstm_2']
    >>> float(model.get_layer("lstm_2").cell.bias.numpy()[3:6].mean())
    2.5
    """
    bias = check_float("bias", bias)
    changed = []
    for layer in recurrent_layers(model):
        cell = layer.cell
        if cell_family(layer) != "lstm" or not cell.use_bias:
            continue
        values = cell.bias.numpy().copy()
        values[cell.units : 2 * cell.units] = bias  # Keras's gate order: i, f, c, o
        cell.bias.assign(values)
        changed.append(layer.name)
    if not changed:
        raise ValueError(f"model {model.name!r} has no LSTM layer with a bias to set")
    return changed


def chrono_biases(length: int, units: int, *, seed: int) -> np.ndarray:
    """Gate biases of chrono initialization: ``log u``, ``u ~ U(1, length - 1)``.

    Tallec & Ollivier (2018) derive that a gated unit whose forget factor is
    ``sigmoid(b)`` keeps information for about ``1 / (1 - sigmoid(b))`` steps; drawing
    ``b = log u`` spreads these memory lengths ``1 + u`` uniformly over ``[2, length]``.

    Parameters
    ----------
    length : int
        The longest dependency to cater for, ``T_max`` >= 3.
    units : int
        Number of biases, >= 1.
    seed : int
        Seed of the NumPy generator.

    Returns
    -------
    numpy.ndarray
        float64, shape ``(units,)``, values in ``[0, log(length - 1))``.

    Examples
    --------
    >>> b = chrono_biases(100, 5, seed=0)
    >>> bool(((b >= 0) & (b < np.log(99))).all())
    True
    """
    length = check_int("chrono_length", length, minimum=3)
    units = check_int("units", units, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    rng = np.random.default_rng(seed)
    return np.log(rng.uniform(1.0, length - 1.0, size=units))


def recurrent_layers(model: keras.Model) -> list[keras.layers.RNN]:
    """The recurrent (``keras.layers.RNN``) layers of a model, nested models included.

    ``SimpleRNN``, ``LSTM``, ``GRU`` and ``keras.layers.RNN`` with any cell; the two
    directions of a ``Bidirectional`` layer are its ``forward_layer`` and
    ``backward_layer``.

    Parameters
    ----------
    model : keras.Model
        Any Keras model or layer.

    Returns
    -------
    list of keras.layers.RNN
        In the order Keras tracks them (for stacked models, input to output).
    """
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(f"model must be a Keras model or layer, got {type(model).__name__}")
    found = [model] if isinstance(model, keras.layers.RNN) else []
    found += [
        layer
        for layer in model._flatten_layers(include_self=False, recursive=True)
        if isinstance(layer, keras.layers.RNN)
    ]
    return found


def recurrent_matrix(layer: keras.layers.Layer, gate: str | None = None) -> np.ndarray:
    """The recurrent matrix ``W_h`` of a recurrent layer, in the book's convention.

    Parameters
    ----------
    layer : keras.layers.SimpleRNN, LSTM or GRU
        The layer (or a ``keras.layers.RNN`` wrapping one of their cells).
    gate : str or None
        For LSTM one of ``"i", "f", "c", "o"``, for GRU one of ``"z", "r", "h"``;
        ``None`` for SimpleRNN.

    Returns
    -------
    numpy.ndarray
        ``(units, units)``: ``W_h = U_gate.T`` where ``U`` is Keras's
        ``recurrent_kernel``.
    """
    kind = cell_family(layer)
    if kind is None:
        raise TypeError(
            f"layer must run a keras SimpleRNN, LSTM or GRU cell, got {type(layer).__name__}"
        )
    gates = GATES[kind]
    if kind == "simple":
        if gate not in (None, "h"):
            raise ValueError(f"gate must be None for a SimpleRNN layer, got {gate!r}")
        index = 0
    else:
        if gate is None:
            raise ValueError(f"gate must be one of {gates} for a {kind.upper()} layer")
        index = gates.index(check_choice("gate", gate, gates))
    units = layer.cell.units
    kernel = layer.cell.recurrent_kernel.numpy()
    return kernel[:, index * units : (index + 1) * units].T


def _subseed(seed: int, layer: int, part: int) -> int:
    """A distinct, reproducible seed for each weight of each layer."""
    return int(np.random.SeedSequence([seed, layer, part]).generate_state(1)[0])


def _check_recurrent_initializer(value: object, units: int) -> np.ndarray | None:
    if isinstance(value, str):
        check_choice("recurrent_initializer", value, (*RECURRENT_INITIALIZERS, KERAS_DEFAULT))
        return None
    if isinstance(value, np.ndarray):
        if value.shape != (units, units):
            raise ValueError(
                f"recurrent_initializer as an array must have shape ({units}, {units}), "
                f"got {value.shape}"
            )
        if not np.all(np.isfinite(value)):
            raise ValueError("recurrent_initializer must hold finite numbers")
        return value.astype(np.float64)
    raise TypeError(
        "recurrent_initializer must be one of "
        f"{', '.join((*RECURRENT_INITIALIZERS, KERAS_DEFAULT))} or a (units, units) NumPy array, "
        f"got {type(value).__name__}"
    )


def _kernel_initializer(value: object, seed: int) -> keras.initializers.Initializer:
    """A fresh initializer from a name or an instance, with its seed set (if it takes one)."""
    if isinstance(value, str):
        try:
            initializer = keras.initializers.get(value)
        except ValueError:
            raise ValueError(
                f"kernel_initializer must name a Keras initializer, got {value!r}"
            ) from None
    elif isinstance(value, keras.initializers.Initializer):
        initializer = value
    else:
        raise TypeError(
            "kernel_initializer must be a Keras initializer name or instance, "
            f"got {type(value).__name__}"
        )
    config = initializer.get_config()
    if "seed" in config:
        config["seed"] = seed
    return initializer.__class__.from_config(config)


def _check_activation(name: str, value: object) -> object:
    if value is None or callable(value):
        return value
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, a callable or None, got {type(value).__name__}")
    try:
        keras.activations.get(value)
    except ValueError:
        raise ValueError(f"{name} must name a Keras activation, got {value!r}") from None
    return value
