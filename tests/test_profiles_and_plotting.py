"""Profile summaries and the book's plots."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

from rnngrad.plotting import PALETTE, plot_gradient_profile, use_book_style
from rnngrad.profiles import decay_rate, gradient_ratio, lags


def test_decay_rate_recovers_a_geometric_profile():
    profile = 0.9 ** lags(50) * 3.0
    assert decay_rate(profile) == pytest.approx(np.log(0.9), abs=1e-12)
    exploding = 1.2 ** lags(50)
    assert decay_rate(exploding) == pytest.approx(np.log(1.2), abs=1e-12)


def test_decay_rate_skips_underflow_and_the_recent_transient():
    profile = 0.5 ** lags(200)  # reaches 1e-60: float32 would hold zeros there
    profile32 = profile.astype(np.float32).astype(np.float64)
    assert decay_rate(profile32) == pytest.approx(np.log(0.5), abs=1e-6)
    bent = profile.copy()
    bent[-3:] = 1.0  # a flat transient at the three most recent steps
    assert decay_rate(bent, skip=3) == pytest.approx(np.log(0.5), abs=1e-9)
    assert np.isnan(decay_rate(np.zeros(10)))


def test_gradient_ratio_is_relative_to_the_last_step():
    table = np.array([[1.0, 2.0, 4.0], [3.0, 3.0, 3.0]])
    np.testing.assert_allclose(gradient_ratio(table), [[0.25, 0.5, 1.0], [1.0, 1.0, 1.0]])


def test_book_style_is_white_and_colour_blind_safe():
    use_book_style()
    assert matplotlib.rcParams["figure.facecolor"] == "white"
    assert matplotlib.rcParams["axes.facecolor"] == "white"
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    assert [c.upper() for c in colors] == [c.upper() for c in PALETTE]


def test_profile_plot_is_log_scale_by_lag_with_one_line_per_layer():
    use_book_style()
    table = np.vstack([0.9 ** lags(30), 1.1 ** lags(30)])
    table[0, 0] = 0.0  # underflow: left out, not plotted at -inf
    ax = plot_gradient_profile(table, label=["layer 1", "layer 2"])
    assert ax.get_yscale() == "log"
    lines = ax.get_lines()
    assert len(lines) == 2
    x, y = lines[0].get_data()
    assert x[0] == 29 and x[-1] == 0 and y[-1] == 1.0
    assert np.isnan(y[0])
    assert "lag" in ax.get_xlabel()
    plt.close("all")


def test_profile_plot_rejects_mismatched_labels():
    with pytest.raises(ValueError, match="one name per row"):
        plot_gradient_profile(np.ones((2, 5)), label=["only one", "two", "three"])
    plt.close("all")


def test_horizon_is_the_first_lag_below_the_threshold():
    from rnngrad.profiles import horizon

    profile = 0.5 ** lags(30)  # ratio 2^-lag: below 1e-3 from lag 10 (2^-10 = 9.8e-4)
    assert horizon(profile) == 10
    assert horizon(profile, threshold=0.3) == 2
    assert horizon(np.ones(5)) is None
    with pytest.raises(ValueError, match="threshold must lie in"):
        horizon(profile, threshold=2.0)
