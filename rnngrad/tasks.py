"""Long-range tasks as NumPy arrays, seeded, with their trivial baselines.

The synthetic tasks put the information the model needs at the start of a long sequence
and ask for it at the end, so they can only be solved if gradients carry credit across
the whole gap (Hochreiter & Schmidhuber 1997; Arjovsky, Shah & Bengio 2016).
:func:`sequential_digits` reads real images pixel by pixel, a miniature of the
sequential MNIST benchmark (Le, Jaitly & Hinton 2015), from the 8x8 digits that
scikit-learn ships (nothing is downloaded).
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from rnngrad._validation import check_array, check_int

ADDING_BASELINE_MSE: float = 1.0 / 6.0
"""The test MSE of always predicting 1.0 on the adding problem, Var(U1 + U2) = 2/12 = 1/6."""

__all__ = [
    "ADDING_BASELINE_MSE",
    "DIGITS_PERMUTATION_SEED",
    "adding_problem",
    "copy_memory",
    "copy_memory_baseline",
    "digits_permutation",
    "one_hot",
    "sequential_digits",
]

DIGITS_PERMUTATION_SEED: int = 14
"""Seed of the one fixed permutation of the 64 pixel positions used by
``sequential_digits(permuted=True)``; it does not depend on the split's seed, so every
split of the permuted task reads the pixels in the same order."""


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


def digits_permutation() -> np.ndarray:
    """The fixed permutation of the 64 pixel positions of the permuted digits task.

    Drawn once from :data:`DIGITS_PERMUTATION_SEED`: step ``t`` of a permuted sequence
    is pixel ``digits_permutation()[t]`` of the image in row-major order.

    Returns
    -------
    numpy.ndarray
        int64, shape ``(64,)``, a permutation of ``0 .. 63``.

    Examples
    --------
    >>> p = digits_permutation()
    >>> sorted(p.tolist()) == list(range(64))
    True
    """
    return np.random.default_rng(DIGITS_PERMUTATION_SEED).permutation(64)


def sequential_digits(
    *, permuted: bool = False, seed: int = 0, test_fraction: float = 0.25
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The 8x8 digits read pixel by pixel: 64-step sequences of one feature, 10 classes.

    The 1,797 handwritten digits that scikit-learn ships
    (``sklearn.datasets.load_digits``, nothing is downloaded) are read in row-major
    order, one pixel per step, as sequential MNIST reads its 28x28 images
    (Le, Jaitly & Hinton 2015). Pixel intensities (integers 0 to 16) are divided by
    16. A seeded shuffle splits all the images into a training and a test set.

    Parameters
    ----------
    permuted : bool, default False
        Read the pixels in the order of one fixed permutation
        (:func:`digits_permutation`), the same for every image and every ``seed``: the
        permuted task spreads the dependencies over the whole sequence.
    seed : int, default 0
        Seed of the shuffle that splits the images.
    test_fraction : float, default 0.25
        Share of the images in the test set, in (0, 1); the test set has
        ``round(test_fraction * 1797)`` images, at least one, and so does the
        training set.

    Returns
    -------
    (x_train, y_train), (x_test, y_test) : tuple of numpy.ndarray
        ``x`` float32 of shape ``(n, 64, 1)`` with values in [0, 1]; ``y`` int32 of
        shape ``(n,)`` with labels 0 to 9.

    Examples
    --------
    >>> (x, y), (x_test, y_test) = sequential_digits(seed=0)
    >>> x.shape, x_test.shape, y.dtype
    ((1348, 64, 1), (449, 64, 1), dtype('int32'))
    >>> rows = x.reshape(-1, 8, 8)  # row by row: 8 steps of 8 features
    """
    if not isinstance(permuted, bool | np.bool_):
        raise TypeError(f"permuted must be True or False, got {type(permuted).__name__}")
    seed = check_int("seed", seed, minimum=0)
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, numbers.Real):
        raise TypeError(f"test_fraction must be a real number, got {type(test_fraction).__name__}")
    test_fraction = float(test_fraction)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    from sklearn.datasets import load_digits  # imported here: the other tasks need no sklearn

    digits = load_digits()
    n = len(digits.target)
    n_test = round(test_fraction * n)
    if not 1 <= n_test <= n - 1:
        raise ValueError(f"test_fraction={test_fraction} leaves an empty split of the {n} images")
    x = (digits.images.reshape(n, 64) / 16.0).astype(np.float32)
    if permuted:
        x = x[:, digits_permutation()]
    y = digits.target.astype(np.int32)
    order = np.random.default_rng(seed).permutation(n)
    test, train = order[:n_test], order[n_test:]
    return (x[train, :, None], y[train]), (x[test, :, None], y[test])
