"""gain_scan equals probing a fresh model per gain; a linear scan has its closed form."""

import numpy as np
import pytest

import rnngrad
from rnngrad.experiments.meanfield import simple_rnn_preactivations, susceptibility
from rnngrad.experiments.scans import crossing, gain_scan
from rnngrad.models import recurrent_init_matrix
from rnngrad.theory import linear_rnn_gradient_ratio


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).normal(size=(6, 12, 3))


def test_linear_scan_matches_the_closed_form(x):
    q = recurrent_init_matrix("orthogonal", 8, seed=2)
    model = rnngrad.build_rnn("simple", 8, input_dim=3, activation="linear", dtype="float64")
    scan = gain_scan(model, q, [0.5, 1.0, 1.3], x)
    for g, row in zip(scan.gains, scan.norms):
        ratio = row / row[-1]
        np.testing.assert_allclose(
            ratio, linear_rnn_gradient_ratio(g, np.arange(11, -1, -1)), rtol=1e-9
        )
    np.testing.assert_allclose(scan.susceptibility, scan.gains**2)
    np.testing.assert_allclose(scan.sigma_max, scan.gains, rtol=1e-12)
    np.testing.assert_allclose(scan.spectral_radius, scan.gains, rtol=1e-12)
    np.testing.assert_allclose(scan.rates(), np.log(scan.gains), atol=1e-9)
    np.testing.assert_allclose(scan.log10_ratio()[:, 0], 11 * np.log10(scan.gains), atol=1e-9)


def test_tanh_scan_equals_a_fresh_model_per_gain(x):
    base = recurrent_init_matrix("normal", 8, seed=3)
    model = rnngrad.build_rnn("simple", 8, input_dim=3, seed=4)
    before = model.get_layer("simple_1").cell.recurrent_kernel.numpy().copy()
    scan = gain_scan(model, base, [0.7, 1.6], x, skip=2)
    np.testing.assert_array_equal(model.get_layer("simple_1").cell.recurrent_kernel.numpy(), before)
    for g, row, chi in zip(scan.gains, scan.norms, scan.susceptibility):
        fresh = rnngrad.build_rnn("simple", 8, input_dim=3, seed=4, recurrent_initializer=g * base)
        np.testing.assert_allclose(row, rnngrad.state_gradient_norms(fresh, x, None)[0], rtol=1e-5)
        pre = simple_rnn_preactivations(fresh.get_layer("simple_1"), x)
        assert chi == pytest.approx(susceptibility(pre, "tanh", g, skip=2), rel=1e-5)


def test_crossing_interpolates_and_reports_none():
    assert crossing([0.0, 1.0, 2.0], [2.0, 1.5, 0.5], level=1.0) == pytest.approx(1.5)
    assert crossing([0.0, 1.0], [-1.0, 0.0]) == 1.0
    assert np.isnan(crossing([0.0, 1.0], [1.0, 2.0]))


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda m, x: gain_scan("m", np.eye(4), [1.0], x), TypeError, "model must be"),
        (lambda m, x: gain_scan(m, np.eye(3), [1.0], x), ValueError, r"shape \(4, 4\)"),
        (lambda m, x: gain_scan(m, np.eye(4), [], x), ValueError, "at least one gain"),
        (lambda m, x: gain_scan(m, np.eye(4), [-1.0], x), ValueError, "gains must be > 0"),
        (
            lambda m, x: gain_scan(rnngrad.build_rnn("lstm", 4, input_dim=3), np.eye(4), [1.0], x),
            ValueError,
            "SimpleRNN",
        ),
        (lambda m, x: crossing([0.0, 1.0], [1.0]), ValueError, "same length"),
        (lambda m, x: crossing([1.0, 0.0], [1.0, 2.0]), ValueError, "increasing"),
    ],
)
def test_bad_arguments_are_named(x, call, error, match):
    model = rnngrad.build_rnn("simple", 4, input_dim=3)
    with pytest.raises(error, match=match):
        call(model, x)
