"""diagnose(): verdicts on clear cases built with plain Keras, and reports on common models."""

import json

import keras
import numpy as np
import pytest

from rnngrad.diagnosis import EXPLODING_RATIO, VANISHING_RATIO, diagnose, layer_verdict

T = 80


def _simple(activation, gain, seed=0):
    return keras.Sequential(
        [
            keras.Input((T, 3)),
            keras.layers.SimpleRNN(
                32,
                activation=activation,
                recurrent_initializer=keras.initializers.Orthogonal(gain=gain, seed=seed),
                kernel_initializer=keras.initializers.GlorotUniform(seed=seed),
            ),
            keras.layers.Dense(1),
        ]
    )


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).normal(size=(16, T, 3)).astype("float32")


def test_tanh_with_small_recurrent_gain_is_vanishing(x):
    report = diagnose(_simple("tanh", 0.5), x)
    layer = report.layers[0]
    assert report.verdict == layer.verdict == "vanishing"
    assert layer.horizon is not None and layer.horizon < T
    assert layer.decay_per_step < 0.7  # gain 0.5 times tanh' <= 1
    assert layer.sigma_max["h"] == pytest.approx(0.5, rel=1e-5)
    assert any("LSTM or GRU" in s.action for s in report.suggestions)
    assert all(s.evidence and s.chapter for s in report.suggestions)


def test_linear_with_gain_one_and_a_half_is_exploding(x):
    report = diagnose(_simple("linear", 1.5), x)
    assert report.verdict == "exploding"
    assert report.decay_per_step == pytest.approx(1.5, rel=1e-3)  # exactly 1.5 per step
    assert report.layers[0].max_ratio > EXPLODING_RATIO
    assert any("global_clipnorm" in s.action for s in report.suggestions)


def test_linear_orthogonal_gain_one_is_healthy(x):
    report = diagnose(_simple("linear", 1.0), x)
    assert report.verdict == "healthy" and report.horizon is None
    assert report.decay_per_step == pytest.approx(1.0, abs=1e-4)
    assert report.suggestions == []


def test_default_keras_lstm_report_says_what_it_measured(x):
    model = keras.Sequential([keras.Input((T, 3)), keras.layers.LSTM(16), keras.layers.Dense(1)])
    report = diagnose(model, x, np.zeros((16, 1), "float32"))
    layer = report.layers[0]
    assert layer.kind == "LSTM" and len(layer.profile) == T
    assert set(layer.gates) == {"i", "f", "o"} and 0 < layer.gates["f"] < 1
    assert set(layer.sigma_max) == {"i", "f", "c", "o"}
    assert np.isfinite(report.global_gradient_norm) and report.global_gradient_norm > 0
    assert report.verdict == layer_verdict(np.array(layer.profile))
    assert report.verdict in report.summary().lower()


def test_gru_classifier_reports_every_layer_and_update_gates(x):
    model = keras.Sequential(
        [
            keras.Input((T, 3)),
            keras.layers.GRU(12, return_sequences=True),
            keras.layers.GRU(8),
            keras.layers.Dense(4, activation="softmax"),
        ]
    )
    y = np.arange(16) % 4
    report = diagnose(model, x, y, loss="sparse_categorical_crossentropy")
    assert [layer.kind for layer in report.layers] == ["GRU", "GRU"]
    assert all(set(layer.gates) == {"z", "r"} for layer in report.layers)
    assert report.loss == "sparse_categorical_crossentropy"
    worst = max(report.layers, key=lambda r: ("healthy", "vanishing", "exploding").index(r.verdict))
    assert report.verdict == worst.verdict


def test_gate_means_match_a_direct_computation():
    layer = keras.layers.LSTM(4, return_sequences=False)
    model = keras.Sequential([keras.Input((6, 2)), layer, keras.layers.Dense(1)])
    x = np.random.default_rng(1).normal(size=(3, 6, 2)).astype("float32")
    report = diagnose(model, x)
    cell = layer.cell
    k, u, b = cell.kernel.numpy(), cell.recurrent_kernel.numpy(), cell.bias.numpy()
    h, c, forget = np.zeros((3, 4)), np.zeros((3, 4)), []
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    for t in range(6):
        i, f, g, o = np.split(x[:, t] @ k + h @ u + b, 4, axis=-1)
        c = sig(f) * c + sig(i) * np.tanh(g)
        h = sig(o) * np.tanh(c)
        forget.append(sig(f))
    assert report.layers[0].gates["f"] == pytest.approx(np.mean(forget), rel=1e-5)


def test_non_finite_profile_counts_as_exploding_and_json_stays_valid():
    assert layer_verdict(np.array([np.inf, 1.0, 1.0])) == "exploding"
    assert layer_verdict(np.array([np.nan, 1.0])) == "exploding"
    assert layer_verdict(np.full(10, 1.0)) == "healthy"
    assert layer_verdict(np.array([VANISHING_RATIO / 2, 1.0])) == "vanishing"
    model = _simple("linear", 3.0)
    x = np.random.default_rng(2).normal(size=(4, T, 3)).astype("float32") * 10
    report = diagnose(model, x)  # 3**80 overflows float32: a result, not an exception
    assert report.verdict == "exploding" and report.non_finite > 0
    parsed = json.loads(report.to_json())
    assert parsed["verdict"] == "exploding"
    assert any("overflow" in s["evidence"] for s in parsed["suggestions"])
