"""Synthetic long-range tasks: NumPy arrays, seeded, with their trivial baselines.

Both tasks put the information the model needs at the start of a long sequence and ask
for it at the end, so they can only be solved if gradients carry credit across the
whole gap (Hochreiter & Schmidhuber 1997; Arjovsky, Shah & Bengio 2016).
"""

from __future__ import annotations

import math

import numpy as np

from rnngrad._validation import check_array, check_int

ADDING_BASELINE_MSE: float = 1.0 / 6.0
"""The test MSE of always predicting 1.0 on the adding problem, Var(U1 + U2) = 2/12 = 1/6."""

__all__ = [
    "ADDING_BASELINE_MSE",
    "adding_problem",
    "copy_memory",
    "copy_memory_baseline",
    "one_hot",
]


def adding_problem(n: int, length: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The adding problem: add the two marked numbers of a long sequence.

    Each sequence has two channels. Channel 0 holds values drawn from U[0, 1]; channel 1
    is zero except for exactly two 1s, one in the first half ``[0, length // 2)`` and one
    in the second half ``[length // 2, length)``. The target is the sum of the two
    marked values. Predicting the constant 1.0 gives an MSE of 1/6
    (:data:`ADDING_BASELINE_MSE`), so a model must beat that to have learned anything.

    Parameters
    ----------
    n : int
        Number of sequences, >= 1.
    length : int
        Sequence length T, >= 2.
    seed : int
        Seed of the NumPy generator; the same seed gives the same arrays.

    Returns
    -------
    x : numpy.ndarray
        float32, shape ``(n, length, 2)``.
    y : numpy.ndarray
        float32, shape ``(n, 1)``.

    Examples
    --------
    >>> x, y = adding_problem(4, 10, seed=0)
    >>> x.shape, y.shape
    ((4, 10, 2), (4, 1))
    >>> bool((x[:, :, 1].sum(axis=1) == 2).all())
    True
    """
    n = check_int("n", n, minimum=1)
    length = check_int("length", length, minimum=2)
    seed = check_int("seed", seed, minimum=0)
    rng = np.random.default_rng(seed)
    values = rng.uniform(0.0, 1.0, size=(n, length))
    half = length // 2
    first = rng.integers(0, half, size=n)  # marker in [0, T//2)
    second = rng.integers(half, length, size=n)  # marker in [T//2, T)
    markers = np.zeros((n, length))
    rows = np.arange(n)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    x = np.stack([values, markers], axis=-1).astype(np.float32)
    y = (values[rows, first] + values[rows, second]).astype(np.float32)[:, None]
    return x, y


def copy_memory(
    n: int, delay: int, *, seed: int, n_symbols: int = 8, copy_len: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """The copy-memory task: recall a short string after a long blank delay.

    Token ids ``0 .. n_symbols-1`` are data, ``n_symbols`` is the blank and
    ``n_symbols + 1`` the delimiter. The input is ``copy_len`` random data symbols,
    ``delay - 1`` blanks, the delimiter, then ``copy_len`` blanks. The target is
    ``delay + copy_len`` blanks followed by the ``copy_len`` data symbols, so both have
    ``delay + 2 * copy_len`` steps (Arjovsky, Shah & Bengio 2016).

    Parameters
    ----------
    n : int
        Number of sequences, >= 1.
    delay : int
        Gap between the end of the data and the delimiter's cue, >= 1.
    seed : int
        Seed of the NumPy generator.
    n_symbols : int, default 8
        Size of the data alphabet, >= 2.
    copy_len : int, default 10
        Number of symbols to remember, >= 1.

    Returns
    -------
    x, y : numpy.ndarray
        int32, shape ``(n, delay + 2 * copy_len)``.

    Examples
    --------
    >>> x, y = copy_memory(2, 5, seed=0, copy_len=3)
    >>> x.shape
    (2, 11)
    >>> bool((y[:, -3:] == x[:, :3]).all())
    True
    """
    n = check_int("n", n, minimum=1)
    delay = check_int("delay", delay, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    n_symbols = check_int("n_symbols", n_symbols, minimum=2)
    copy_len = check_int("copy_len", copy_len, minimum=1)
    blank, delimiter = n_symbols, n_symbols + 1
    rng = np.random.default_rng(seed)
    data = rng.integers(0, n_symbols, size=(n, copy_len))
    length = delay + 2 * copy_len
    x = np.full((n, length), blank, dtype=np.int32)
    x[:, :copy_len] = data
    x[:, copy_len + delay - 1] = delimiter
    y = np.full((n, length), blank, dtype=np.int32)
    y[:, -copy_len:] = data
    return x, y


def copy_memory_baseline(delay: int, n_symbols: int = 8, copy_len: int = 10) -> float:
    """Cross-entropy per step of the best memoryless strategy on :func:`copy_memory`.

    Such a model predicts the blank with certainty for the first ``delay + copy_len``
    steps and a uniform guess over the data symbols for the last ``copy_len``:
    ``copy_len * ln(n_symbols) / (delay + 2 * copy_len)`` nats per step.

    Examples
    --------
    >>> round(copy_memory_baseline(100), 4)
    0.1733
    """
    delay = check_int("delay", delay, minimum=1)
    n_symbols = check_int("n_symbols", n_symbols, minimum=2)
    copy_len = check_int("copy_len", copy_len, minimum=1)
    return copy_len * math.log(n_symbols) / (delay + 2 * copy_len)


def one_hot(tokens: np.ndarray, depth: int) -> np.ndarray:
    """One-hot encode integer tokens for a model that takes float features.

    Parameters
    ----------
    tokens : array of int
        Token ids in ``[0, depth)``, any shape.
    depth : int
        Number of distinct ids.

    Returns
    -------
    numpy.ndarray
        float32, shape ``tokens.shape + (depth,)``.

    Examples
    --------
    >>> one_hot([[0, 2]], 3).tolist()
    [[[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]]
    """
    depth = check_int("depth", depth, minimum=1)
    tokens = check_array("tokens", tokens)
    if not np.issubdtype(tokens.dtype, np.integer):
        raise TypeError(f"tokens must hold integers, got dtype {tokens.dtype}")
    if tokens.size and (tokens.min() < 0 or tokens.max() >= depth):
        raise ValueError(
            f"tokens must lie in [0, {depth}), got values from {tokens.min()} to {tokens.max()}"
        )
    return np.eye(depth, dtype=np.float32)[tokens]
