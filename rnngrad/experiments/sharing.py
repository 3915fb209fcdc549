"""Weight sharing: the shared recurrent matrix's gradient, one term per time step.

A SimpleRNN applies the same ``W_h`` at every step, so its gradient is a sum over time,

    dL/dW_h = sum_t  diag(phi'(a_t)) (dL/dh_t)^T h_{t-1}^T ,

one term per step, each the gradient with respect to the copy of ``W_h`` used at that
step. :func:`recurrent_gradient_terms` measures every term of a Keras model and
:func:`term_shares` says how much of the gradient each step carries.

The second half is about *tying* itself. Back-propagating through a linear RNN multiplies
the gradient by ``W_h^T`` at every step: that is power iteration, so the gradient turns
into the dominant eigenspace of ``W_h^T`` (:func:`dominant_eigenspace`,
:func:`eigenspace_fraction`) at a speed set by the :func:`spectral_gap`.
:func:`linear_backprop` back-propagates through any chain of matrices, tied or not, and
:func:`backprop_alignment` measures the alignment along the way, so the two can be
compared.

Matrices are in the book's convention, ``a_t = W_x x_t + W_h h_{t-1} + b`` with column
vectors; Keras's ``recurrent_kernel`` is ``W_h`` transposed.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from rnngrad._losses import loss_for_targets
from rnngrad._validation import check_array, check_float, check_int
from rnngrad.experiments.meanfield import simple_rnn_preactivations
from rnngrad.models import recurrent_layers
from rnngrad.probes import LossArg, state_gradients
from rnngrad.theory import ACTIVATIONS, activation_derivative

__all__ = [
    "backprop_alignment",
    "dominant_eigenspace",
    "eigenspace_fraction",
    "linear_backprop",
    "recurrent_gradient_terms",
    "spectral_gap",
    "step_factors",
    "term_shares",
]


def recurrent_gradient_terms(
    model: keras.Model,
    x: Any,
    y: Any = None,
    *,
    loss: LossArg = "mse",
    layer: keras.layers.Layer | str | None = None,
) -> np.ndarray:
    """The gradient of a SimpleRNN's recurrent matrix, split into one term per time step.

    Term ``t`` is the gradient of the batch-mean loss with respect to the copy of
    ``W_h`` that step ``t`` uses,

        G_t = mean_i  diag(phi'(a_{i,t})) (dL_i/dh_{i,t})^T h_{i,t-1}^T ,

    so ``G_1 + ... + G_T`` is the gradient Keras computes for the layer's
    ``recurrent_kernel`` (transposed: this is ``W_h`` in the book's convention). The
    state gradients come from :func:`rnngrad.probes.state_gradients`, the states and
    pre-activations from the layer's own weights run in float64
    (:func:`rnngrad.experiments.meanfield.simple_rnn_preactivations`).

    Parameters
    ----------
    model : keras.Model
        A model with at least one ``SimpleRNN`` layer (linear, tanh, sigmoid or relu)
        that starts from ``h_0 = 0``.
    x, y, loss
        As in :func:`rnngrad.probes.state_gradient_norms`; ``y=None`` uses the loss
        ``1/2 ||output||^2``. The loss is averaged over the batch, as in training.
    layer : keras.layers.SimpleRNN or str, optional
        Which layer (or its name). Needed only when the model has several recurrent
        layers.

    Returns
    -------
    numpy.ndarray
        float64, shape ``(T, units, units)``; entry ``[t - 1]`` is ``G_t``. The first
        term is zero because ``h_0 = 0``.

    Examples
    --------
    >>> import rnngrad
    >>> model = rnngrad.build_rnn("simple", 4, input_dim=2, seed=0)
    >>> x, y = rnngrad.tasks.adding_problem(8, 6, seed=0)
    >>> terms = recurrent_gradient_terms(model, x, y)
    >>> terms.shape
    (6, 4, 4)
    >>> float(np.abs(terms[0]).max())  # h_0 = 0: the first step's term vanishes
    0.0
    """
    delta, h_prev = step_factors(model, x, y, loss=loss, layer=layer)
    return np.einsum("bti,btj->tij", delta, h_prev) / len(delta)


def step_factors(
    model: keras.Model,
    x: Any,
    y: Any = None,
    *,
    loss: LossArg = "mse",
    layer: keras.layers.Layer | str | None = None,
    batch_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Each example's two factors of the per-step terms: ``dL_i/da_t`` and ``h_{t-1}``.

    Example ``i``'s own term at step ``t`` is the outer product
    ``outer(delta[i, t], h_prev[i, t])``; :func:`recurrent_gradient_terms` averages them
    over the batch, and :func:`rnngrad.experiments.gradient_noise.minibatch_terms` over
    each minibatch, from one probe pass over every example.

    Parameters
    ----------
    model, x, y, loss, layer
        As in :func:`recurrent_gradient_terms`.
    batch_size : int, optional
        Passed to :func:`rnngrad.probes.state_gradients` (the probe runs on batches of
        at most this many examples; the values do not change).

    Returns
    -------
    delta, h_prev : numpy.ndarray
        float64, each ``(B, T, units)``: ``delta[i, t - 1] = phi'(a_{i,t}) * dL_i/dh_{i,t}``
        and ``h_prev[i, t - 1] = h_{i,t-1}`` (``h_0 = 0``).

    Examples
    --------
    >>> import rnngrad
    >>> model = rnngrad.build_rnn("simple", 4, input_dim=2, seed=0)
    >>> x, y = rnngrad.tasks.adding_problem(8, 6, seed=0)
    >>> delta, h_prev = step_factors(model, x, y)
    >>> delta.shape, float(np.abs(h_prev[:, 0]).max())
    ((8, 6, 4), 0.0)
    """
    loss = loss_for_targets(loss, y)  # y=None: the target-free loss
    target, index = _simple_rnn_layer(model, layer)
    grads = state_gradients(model, x, y, loss=loss, batch_size=batch_size)[index]
    grads = grads.astype(np.float64)  # (B, T, U)
    inputs = _layer_inputs(model, target, x)
    pre = simple_rnn_preactivations(target, inputs)  # (B, T, U)
    if pre.shape != grads.shape:
        raise ValueError(
            f"layer {target.name!r} does not run over the whole input sequence "
            f"(pre-activations {pre.shape}, gradients {grads.shape})"
        )
    activation = target.cell.activation.__name__
    h = ACTIVATIONS[activation](pre)
    h_prev = np.concatenate([np.zeros_like(h[:, :1]), h[:, :-1]], axis=1)  # h_0 = 0
    delta = grads * activation_derivative(activation, pre)  # dL_i/da_t, (B, T, U)
    return delta, h_prev


def term_shares(terms: np.ndarray) -> np.ndarray:
    """Each term's share of the gradient: its norm over the sum of all the terms' norms.

    The terms of :func:`recurrent_gradient_terms` point in different directions and
    partly cancel when summed, so the norm of the sum is no yardstick; the shares are
    non-negative and add up to 1.

    Parameters
    ----------
    terms : array-like
        ``(T, ...)``: one term per step (any shape after the first axis).

    Returns
    -------
    numpy.ndarray
        float64, shape ``(T,)``: Frobenius norm of each term over the sum of them.

    Examples
    --------
    >>> term_shares(np.array([[0.0, 0.0], [3.0, 4.0], [0.0, -5.0]])).tolist()
    [0.0, 0.5, 0.5]
    """
    terms = check_array("terms", terms).astype(np.float64)
    if terms.ndim < 1 or len(terms) == 0:
        raise ValueError(f"terms must hold at least one term, got shape {terms.shape}")
    norms = np.sqrt(np.sum(terms.reshape(len(terms), -1) ** 2, axis=1))
    total = norms.sum()
    if not np.isfinite(total) or total == 0:
        raise ValueError("terms must have finite norms that are not all zero")
    return norms / total


def dominant_eigenspace(matrix: np.ndarray, *, rtol: float = 1e-9) -> np.ndarray:
    """Orthonormal basis of the real invariant subspace of a matrix's largest eigenvalue.

    One vector when the eigenvalue of largest modulus is real; a plane (two vectors)
    when it is one of a complex-conjugate pair, spanned by the real and imaginary parts
    of its eigenvector. Repeated multiplication by the matrix (power iteration) turns a
    generic vector into this subspace.

    Parameters
    ----------
    matrix : array-like
        A square real matrix. Pass ``W_h.T`` for the space that back-propagated
        gradients enter.
    rtol : float, default 1e-9
        An eigenvalue counts as complex when ``|imag| > rtol * |lambda|``.

    Returns
    -------
    numpy.ndarray
        float64, shape ``(n, 1)`` or ``(n, 2)``, orthonormal columns, each with its
        largest entry positive.

    Examples
    --------
    >>> dominant_eigenspace(np.diag([0.5, -2.0, 1.0])).ravel().tolist()
    [0.0, 1.0, 0.0]
    >>> rotation = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.5]])
    >>> dominant_eigenspace(rotation).shape  # eigenvalues +-i: a plane
    (3, 2)
    """
    _, vectors, top, k = _top_eigenpair(matrix, rtol)
    vector = vectors[:, top]
    span = np.stack([vector.real, vector.imag], axis=1) if k == 2 else np.real(vector)[:, None]
    basis, _ = np.linalg.qr(span)
    # Eigenvectors have no sign; make each column's largest entry positive, for repeatability.
    signs = np.sign(basis[np.argmax(np.abs(basis), axis=0), np.arange(basis.shape[1])])
    return basis * signs + 0.0  # + 0.0 turns -0.0 into 0.0


def spectral_gap(matrix: np.ndarray, *, rtol: float = 1e-9) -> float:
    """``|lambda_{k+1}| / |lambda_1|``: how fast power iteration forgets everything else.

    ``k`` is the dimension of :func:`dominant_eigenspace` (1 for a real top eigenvalue,
    2 for a complex pair), so the ratio compares the top eigenvalue with the largest
    one outside that subspace. The component of a generic vector outside the subspace
    shrinks, relative to the inside, like ``gap ** steps``: it takes about
    ``-1 / log(gap)`` steps per factor ``e``.

    Parameters
    ----------
    matrix : array-like
        A square real matrix of size n > k.
    rtol : float, default 1e-9
        As in :func:`dominant_eigenspace`.

    Returns
    -------
    float
        In [0, 1].

    Examples
    --------
    >>> spectral_gap(np.diag([3.0, -2.0, 1.0]))
    0.6666666666666666
    """
    values, _, _, k = _top_eigenpair(matrix, rtol)
    moduli = np.sort(np.abs(values))[::-1]
    if len(moduli) <= k:
        raise ValueError(
            f"matrix must be larger than its dominant eigenspace ({k}), got {len(moduli)}"
        )
    return float(moduli[k] / moduli[0]) if moduli[0] > 0 else float("nan")


def eigenspace_fraction(vectors: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """The fraction of each vector's norm that lies in a subspace: ``||P v|| / ||v||``.

    Parameters
    ----------
    vectors : array-like
        ``(..., n)``: vectors along the last axis.
    basis : array-like
        ``(n, k)`` with orthonormal columns, e.g. from :func:`dominant_eigenspace`.

    Returns
    -------
    numpy.ndarray
        float64, shape ``vectors.shape[:-1]``, values in [0, 1] (NaN for a zero vector).
        A random direction in ``n`` dimensions has an expected squared fraction ``k / n``.

    Examples
    --------
    >>> basis = np.array([[1.0], [0.0]])
    >>> eigenspace_fraction(np.array([[3.0, 4.0], [2.0, 0.0]]), basis).tolist()
    [0.6, 1.0]
    """
    vectors = check_array("vectors", vectors).astype(np.float64)
    basis = check_array("basis", basis, ndim=2).astype(np.float64)
    if vectors.ndim < 1 or vectors.shape[-1] != basis.shape[0]:
        raise ValueError(
            f"vectors must have {basis.shape[0]} entries on their last axis (the basis has "
            f"{basis.shape[0]} rows), got shape {vectors.shape}"
        )
    if not np.allclose(basis.T @ basis, np.eye(basis.shape[1]), atol=1e-8):
        raise ValueError("basis must have orthonormal columns")
    projected = np.linalg.norm(vectors @ basis, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return projected / np.linalg.norm(vectors, axis=-1)


def linear_backprop(
    matrices: np.ndarray, grad: np.ndarray, *, steps: int | None = None
) -> np.ndarray:
    """Back-propagate a gradient through a linear RNN: ``g_{t-1} = W_t^T g_t``.

    With ``h_t = W_t h_{t-1} + (input terms)``, the gradient with respect to
    ``h_{t-1}`` is ``W_t^T`` times the gradient with respect to ``h_t``. A tied
    network uses one matrix at every step; an untied one a different matrix per step.

    Parameters
    ----------
    matrices : array-like
        ``(T, n, n)``: ``W_1, ..., W_T`` in the book's convention (untied), or one
        ``(n, n)`` matrix used at every step (tied; then ``steps`` gives T).
    grad : array-like
        ``(n,)`` or ``(B, n)``: dL/dh_T, one row per example.
    steps : int, optional
        T, for a single tied matrix only.

    Returns
    -------
    numpy.ndarray
        float64, ``(T + 1, n)`` or ``(B, T + 1, n)``: entry ``[..., t, :]`` is dL/dh_t
        for ``t = 0..T`` (the last one is ``grad``).

    Examples
    --------
    >>> w = np.array([[0.0, 2.0], [1.0, 0.0]])
    >>> linear_backprop(w, np.array([1.0, 0.0]), steps=2).tolist()
    [[2.0, 0.0], [0.0, 2.0], [1.0, 0.0]]
    """
    matrices = check_array("matrices", matrices, ndim=(2, 3)).astype(np.float64)
    if matrices.ndim == 2:
        if steps is None:
            raise ValueError("steps is required when matrices is a single (n, n) matrix")
        steps = check_int("steps", steps, minimum=1)
        matrices = np.broadcast_to(matrices, (steps, *matrices.shape))
    elif steps is not None:
        raise ValueError("steps is only for a single tied matrix; (T, n, n) already gives T")
    steps, rows, cols = matrices.shape
    if rows != cols:
        raise ValueError(f"matrices must be square, got shape {matrices.shape}")
    grad = check_array("grad", grad, ndim=(1, 2)).astype(np.float64)
    if grad.shape[-1] != rows:
        raise ValueError(f"grad must have {rows} entries per row, got shape {grad.shape}")
    single = grad.ndim == 1
    g = np.atleast_2d(grad)
    out = np.empty((len(g), steps + 1, rows))  # (B, T + 1, n)
    out[:, steps] = g
    for t in range(steps, 0, -1):  # row vectors: (W_t^T g)^T = g^T W_t
        out[:, t - 1] = out[:, t] @ matrices[t - 1]
    return out[0] if single else out


def backprop_alignment(
    matrices: np.ndarray, grad: np.ndarray, *, steps: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Back-propagate through a linear chain and measure the gradient's alignment.

    At every lag the gradient is compared with the dominant eigenspace of the matrix
    that acted on it last (transposed, since back-propagation applies ``W_t^T``). For a
    tied chain that is always ``W_h^T``, and power iteration drives the fraction to 1;
    for an untied chain it is the most favourable single matrix to compare with.

    Parameters
    ----------
    matrices, grad, steps
        As in :func:`linear_backprop`, with ``grad`` a single ``(n,)`` vector.

    Returns
    -------
    fraction : numpy.ndarray
        ``(T + 1,)`` by lag ``0..T``: :func:`eigenspace_fraction` of ``dL/dh_{T-lag}`` in
        the dominant eigenspace of ``W_{T-lag+1}^T`` (at lag 0, of ``W_T^T``, the first
        to act).
    norm : numpy.ndarray
        ``(T + 1,)``: ``||dL/dh_{T-lag}||``.

    Examples
    --------
    >>> fraction, norm = backprop_alignment(
    ...     np.diag([2.0, 1.0]), np.ones(2), steps=2
    ... )
    >>> fraction.round(4).tolist(), norm.round(4).tolist()
    ([0.7071, 0.8944, 0.9701], [1.4142, 2.2361, 4.1231])
    """
    grads = linear_backprop(matrices, grad, steps=steps)  # (T + 1, n), index t
    if grads.ndim != 2:
        raise ValueError(f"grad must be a single (n,) vector, got shape {np.shape(grad)}")
    by_lag = grads[::-1]  # (T + 1, n), lag 0..T
    norm = np.linalg.norm(by_lag, axis=1)
    chain = np.asarray(matrices, dtype=np.float64)
    if chain.ndim == 2:  # tied: one eigenspace for every lag
        return eigenspace_fraction(by_lag, dominant_eigenspace(chain.T)), norm
    # untied: at lag k >= 1 the last matrix to act was W_{T-k+1} = chain[T - k]; at lag 0, W_T
    total = len(chain)
    fraction = np.array(
        [
            eigenspace_fraction(v, dominant_eigenspace(chain[total - max(k, 1)].T))
            for k, v in enumerate(by_lag)
        ]
    )
    return fraction, norm


# --------------------------------------------------------------------------- internals


def _top_eigenpair(matrix: np.ndarray, rtol: float) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Eigenvalues, eigenvectors, the index of the largest modulus, and k: 2 if it is
    one of a complex-conjugate pair (a real plane), else 1."""
    rtol = check_float("rtol", rtol, positive=True)
    values, vectors = np.linalg.eig(_check_finite_square(matrix))
    top = int(np.argmax(np.abs(values)))
    k = 2 if abs(values[top].imag) > rtol * abs(values[top]) else 1
    return values, vectors, top, k


def _check_finite_square(matrix: np.ndarray) -> np.ndarray:
    matrix = check_array("matrix", matrix, ndim=2).astype(np.float64)
    if matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"matrix must be square, got shape {matrix.shape}")
    if not np.all(np.isfinite(matrix)):
        raise ValueError("matrix must hold finite numbers")
    return matrix


def _simple_rnn_layer(
    model: keras.Model, layer: keras.layers.Layer | str | None
) -> tuple[keras.layers.SimpleRNN, int]:
    """The chosen SimpleRNN layer and its position among the model's recurrent layers."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model, got {type(model).__name__}")
    layers = recurrent_layers(model)
    if isinstance(layer, str):
        names = [candidate.name for candidate in layers]
        if layer not in names:
            raise ValueError(
                f"layer must name a recurrent layer of the model {names}; got {layer!r}"
            )
        index = names.index(layer)
    elif layer is None:
        if len(layers) != 1:
            raise ValueError(
                f"the model has {len(layers)} recurrent layers; say which with layer=..."
            )
        index = 0
    else:
        matches = [i for i, candidate in enumerate(layers) if candidate is layer]
        if not matches:
            raise ValueError(f"layer {getattr(layer, 'name', layer)!r} is not in the model")
        index = matches[0]
    target = layers[index]
    if not isinstance(target, keras.layers.SimpleRNN):
        raise TypeError(
            f"layer {target.name!r} is a {type(target).__name__}; the per-step terms are "
            "defined here for SimpleRNN layers only"
        )
    return target, index


def _layer_inputs(model: keras.Model, layer: keras.layers.Layer, x: Any) -> np.ndarray:
    """What ``layer`` receives when the model runs on ``x``."""
    x = np.asarray(x)
    if any(layer.input is tensor for tensor in model.inputs):
        return x
    feeder = keras.Model(model.input, layer.input)
    return keras.ops.convert_to_numpy(feeder(x, training=False))
