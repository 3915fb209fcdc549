"""The tasks match their definitions and their trivial baselines."""

import math

import numpy as np
import pytest

from rnngrad.tasks import (
    ADDING_BASELINE_MSE,
    adding_problem,
    copy_memory,
    copy_memory_baseline,
    digits_permutation,
    one_hot,
    sequential_digits,
)


def test_adding_problem_matches_its_definition():
    x, y = adding_problem(500, 31, seed=0)
    assert x.shape == (500, 31, 2) and y.shape == (500, 1)
    assert x.dtype == np.float32 and y.dtype == np.float32
    values, markers = x[..., 0], x[..., 1]
    assert values.min() >= 0 and values.max() <= 1
    assert set(np.unique(markers)) == {0.0, 1.0}
    assert (markers[:, :15].sum(1) == 1).all() and (markers[:, 15:].sum(1) == 1).all()
    np.testing.assert_allclose(y[:, 0], (values * markers).sum(1), rtol=1e-6)


def test_adding_baseline_is_the_mse_of_predicting_one():
    _, y = adding_problem(200_000, 10, seed=1)
    mse_of_one = float(np.mean((y - 1.0) ** 2))
    assert ADDING_BASELINE_MSE == pytest.approx(1 / 6)
    # standard error of the mean of (U1+U2-1)^2 is about 0.18/sqrt(n) = 4e-4
    assert mse_of_one == pytest.approx(ADDING_BASELINE_MSE, abs=2e-3)


def test_tasks_are_seeded():
    a, b = adding_problem(4, 10, seed=3), adding_problem(4, 10, seed=3)
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    assert not np.array_equal(adding_problem(4, 10, seed=4)[0], a[0])
    assert np.array_equal(copy_memory(3, 5, seed=1)[0], copy_memory(3, 5, seed=1)[0])


def test_copy_memory_matches_its_definition():
    n_symbols, copy_len, delay = 8, 10, 30
    x, y = copy_memory(50, delay, seed=0)
    length = delay + 2 * copy_len
    assert x.shape == y.shape == (50, length) and x.dtype == np.int32
    blank, delimiter = n_symbols, n_symbols + 1
    assert (x[:, :copy_len] < n_symbols).all()
    assert (x[:, copy_len : copy_len + delay - 1] == blank).all()
    assert (x[:, copy_len + delay - 1] == delimiter).all()
    assert (x[:, copy_len + delay :] == blank).all()
    assert (y[:, : delay + copy_len] == blank).all()
    assert np.array_equal(y[:, -copy_len:], x[:, :copy_len])


def test_copy_memory_baseline_is_the_memoryless_cross_entropy():
    delay = 40
    assert copy_memory_baseline(delay) == pytest.approx(10 * math.log(8) / (delay + 20))
    # the strategy itself: certain blank, then uniform over the data symbols
    _, y = copy_memory(100, delay, seed=0)
    probs = np.zeros((100, delay + 20, 10))
    probs[:, :, 8] = 1.0
    probs[:, -10:, :] = 0.0
    probs[:, -10:, :8] = 1 / 8
    picked = np.take_along_axis(probs, y[..., None], axis=-1)[..., 0]
    assert -np.log(picked).mean() == pytest.approx(copy_memory_baseline(delay), rel=1e-12)


def test_one_hot():
    tokens, _ = copy_memory(2, 3, seed=0, copy_len=2)
    encoded = one_hot(tokens, 10)
    assert encoded.shape == (2, 7, 10)
    assert np.array_equal(encoded.argmax(-1), tokens)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: adding_problem(0, 10, seed=0), ValueError, "n must be >= 1"),
        (lambda: adding_problem(5, 1, seed=0), ValueError, "length must be >= 2"),
        (lambda: adding_problem(5, 10.0, seed=0), TypeError, "length must be an integer"),
        (lambda: adding_problem(5, 10, seed=-1), ValueError, "seed"),
        (lambda: copy_memory(5, 0, seed=0), ValueError, "delay must be >= 1"),
        (lambda: copy_memory(5, 5, seed=0, n_symbols=1), ValueError, "n_symbols"),
        (lambda: copy_memory_baseline(5, copy_len=0), ValueError, "copy_len"),
        (lambda: one_hot([0, 5], 3), ValueError, "tokens must lie in"),
        (lambda: one_hot([0.5], 3), TypeError, "tokens must hold integers"),
        (lambda: sequential_digits(permuted=1), TypeError, "permuted must be True or False"),
        (lambda: sequential_digits(seed=-1), ValueError, "seed must be >= 0"),
        (lambda: sequential_digits(seed=1.0), TypeError, "seed must be an integer"),
        (lambda: sequential_digits(test_fraction=0.0), ValueError, "test_fraction must lie"),
        (lambda: sequential_digits(test_fraction=1), ValueError, "test_fraction must lie"),
        (lambda: sequential_digits(test_fraction="0.2"), TypeError, "test_fraction must be"),
        (lambda: sequential_digits(test_fraction=1e-4), ValueError, "empty split"),
    ],
)
def test_bad_arguments_are_named(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    return load_digits()


def test_sequential_digits_shapes_dtypes_and_ranges():
    (x, y), (x_test, y_test) = sequential_digits(seed=0)
    assert x.shape == (1348, 64, 1) and x_test.shape == (449, 64, 1)  # 449 = round(0.25 * 1797)
    assert y.shape == (1348,) and y_test.shape == (449,)
    assert x.dtype == x_test.dtype == np.float32 and y.dtype == y_test.dtype == np.int32
    assert x.min() == 0.0 and x.max() == 1.0 and x_test.min() >= 0.0 and x_test.max() <= 1.0
    assert set(np.unique(np.concatenate([y, y_test]))) == set(range(10))


@pytest.mark.parametrize("fraction, n_test", [(0.1, 180), (0.5, 898), (0.9, 1617)])
def test_split_sizes_follow_the_test_fraction(fraction, n_test):
    (x, _), (x_test, _) = sequential_digits(seed=3, test_fraction=fraction)
    assert len(x_test) == n_test == round(fraction * 1797) and len(x) + len(x_test) == 1797


def test_the_split_is_a_disjoint_cover_of_all_images_read_in_row_major_order(digits):
    (x, y), (x_test, y_test) = sequential_digits(seed=5)
    images = np.concatenate([x, x_test])[:, :, 0]  # (1797, 64)
    labels = np.concatenate([y, y_test])
    expected = (digits.images.reshape(1797, 64) / 16.0).astype(np.float32)
    # train + test is the data set, each (image, label) used exactly once: equal as
    # multisets (compared sorted, as bytes), which also makes the two sets disjoint
    got = sorted(map(bytes, np.column_stack([images, labels]).astype(np.float32)))
    want = np.column_stack([expected, digits.target]).astype(np.float32)
    assert got == sorted(map(bytes, want))


def test_the_split_is_seeded():
    first, again = sequential_digits(seed=2), sequential_digits(seed=2)
    other = sequential_digits(seed=3)
    for a, b in zip(first, again):
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(first[0][1], other[0][1])


def test_permuted_applies_one_fixed_bijection_to_every_image():
    permutation = digits_permutation()
    assert sorted(permutation.tolist()) == list(range(64))
    assert not np.array_equal(permutation, np.arange(64))
    assert np.array_equal(permutation, digits_permutation())
    for seed in (0, 7):  # the permutation does not depend on the split's seed
        (x, y), (x_test, y_test) = sequential_digits(seed=seed)
        (xp, yp), (xp_test, yp_test) = sequential_digits(seed=seed, permuted=True)
        assert np.array_equal(y, yp) and np.array_equal(y_test, yp_test)
        assert np.array_equal(xp, x[:, permutation]) and np.array_equal(
            xp_test, x_test[:, permutation]
        )
