"""diagnose(): verdicts from the transport through each layer's recurrence, on models built
with plain Keras; the transport equals an eager unroll of the layer's own cell."""

import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import rnngrad
from rnngrad.diagnosis import VERDICTS, chapter_links, diagnose
from rnngrad.verdicts import NO_SIGNAL, transport_verdict
from tests.oracles import transport_oracle

T = 60
ROOT = Path(__file__).resolve().parents[1]


def _simple(activation, gain, seed=0, steps=T):
    return keras.Sequential(
        [
            keras.Input((steps, 3)),
            keras.layers.SimpleRNN(
                16,
                activation=activation,
                recurrent_initializer=keras.initializers.Orthogonal(gain=gain, seed=seed),
                kernel_initializer=keras.initializers.GlorotUniform(seed=seed),
            ),
            keras.layers.Dense(1),
        ]
    )


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).normal(size=(8, T, 3)).astype("float32")


def by_lag(profile):
    """A per-example (B, T) transport in input time, as the mean by lag."""
    return profile.mean(axis=0)[::-1]


def test_tanh_with_small_recurrent_gain_is_vanishing(x):
    report = diagnose(_simple("tanh", 0.5), x)
    layer = report.layers[0]
    assert report.verdict == layer.verdict == "vanishing"
    assert layer.horizon is not None and layer.horizon < T
    # each step multiplies by diag(tanh') W_h, whose norm is at most 0.5
    assert 0.3 < layer.decay_per_step <= 0.5 + 1e-6
    assert layer.sigma_max["h"] == pytest.approx(0.5, rel=1e-5)
    assert any("LSTM or GRU" in s.action for s in report.suggestions)
    assert all(s.evidence and s.page.endswith(".html") for s in report.suggestions)


def test_linear_orthogonal_transport_is_exactly_the_gain_to_the_lag(x):
    exploding = diagnose(_simple("linear", 1.5), x)
    layer = exploding.layers[0]
    np.testing.assert_allclose(layer.transport, 1.5 ** np.arange(T), rtol=1e-4)
    assert exploding.verdict == "exploding" and layer.decay_per_step == pytest.approx(1.5, 1e-4)
    assert any("scale down the recurrent matrix" in s.action for s in exploding.suggestions)
    healthy = diagnose(_simple("linear", 1.0), x)
    np.testing.assert_allclose(healthy.layers[0].transport, np.ones(T), rtol=1e-4)
    assert healthy.verdict == "healthy" and healthy.horizon is None
    assert healthy.suggestions == []


@pytest.mark.integration
def test_the_transport_of_each_stacked_layer_is_its_own_recurrence(x):
    first = keras.layers.LSTM(6, return_sequences=True)
    second = keras.layers.GRU(5)
    model = keras.Sequential([keras.Input((T, 3)), first, second, keras.layers.Dense(1)])
    report = diagnose(model, x, np.zeros((8, 1)))
    hidden = first(x)
    for index, (layer, inputs) in enumerate([(first, x), (second, hidden)]):
        expected = by_lag(transport_oracle(layer, inputs, width=6))
        np.testing.assert_allclose(report.layers[index].transport, expected, rtol=1e-3)


@pytest.mark.parametrize("head", ["last", "per-step", "pooled"])
def test_the_same_recurrent_weights_get_the_same_verdict_under_any_head(x, head):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((T, 3))
    layer = keras.layers.SimpleRNN(
        16,
        return_sequences=head != "last",
        recurrent_initializer=keras.initializers.Orthogonal(gain=0.6, seed=1),
        kernel_initializer=keras.initializers.GlorotUniform(seed=1),
    )
    hidden = layer(inputs)
    if head == "per-step":
        output = keras.layers.TimeDistributed(keras.layers.Dense(1))(hidden)
        y = np.zeros((8, T, 1))
    else:
        if head == "pooled":
            hidden = keras.layers.GlobalAveragePooling1D()(hidden)
        output = keras.layers.Dense(1)(hidden)
        y = np.zeros((8, 1))
    report = diagnose(keras.Model(inputs, output), x, y)
    expected = by_lag(transport_oracle(layer, x))
    np.testing.assert_allclose(report.layers[0].transport, expected, rtol=1e-3)
    assert report.verdict == "vanishing"
    assert 0.4 < report.decay_per_step < 0.6


def test_a_layer_whose_last_step_gets_no_gradient_reads_no_infinite_growth():
    model = keras.Sequential(
        [
            keras.Input((21, 3)),
            keras.layers.LSTM(6, return_sequences=True),
            keras.layers.Conv1D(4, 2, strides=2),  # windows (1, 2), ..., (19, 20): not 21
            keras.layers.GRU(5),
            keras.layers.Dense(1),
        ]
    )
    x = np.random.default_rng(1).normal(size=(4, 21, 3)).astype("float32")
    report = diagnose(model, x, np.zeros((4, 1)))
    lstm = report.layers[0]
    assert lstm.profile[-1] == 0.0  # the stride skips the last step
    assert lstm.first_step_ratio is None  # a ratio to zero is reported as unknown
    assert all(np.isfinite(layer.transport).all() for layer in report.layers)
    assert report.verdict in VERDICTS and report.verdict != "exploding"
    actions = [s.action for s in report.suggestions]
    assert len(actions) == len(set(actions))


def test_a_layer_the_loss_does_not_reach_has_no_signal():
    model = keras.Sequential(
        [
            keras.Input((10, 2)),
            keras.layers.GRU(4),
            keras.layers.Dense(1, kernel_initializer="zeros", name="cut"),
        ]
    )
    report = diagnose(model, np.ones((3, 10, 2)), np.ones((3, 1)))
    assert report.layers[0].verdict == NO_SIGNAL and report.verdict == NO_SIGNAL
    assert "check the path from gru" in report.suggestions[0].action


def test_suggestions_do_not_repeat_what_the_model_already_does(x):
    # A default Keras LSTM already has unit_forget_bias: the suggestion names a higher bias.
    model = keras.Sequential([keras.Input((T, 3)), keras.layers.LSTM(16), keras.layers.Dense(1)])
    report = diagnose(model, x * 3, np.zeros((8, 1)))
    layer = report.layers[0]
    assert report.verdict == "vanishing", report.summary()
    gating = [s for s in report.suggestions if "forget-gate bias" in s.action]
    assert gating and "unit_forget_bias" not in gating[0].action
    target = float(gating[0].action.split("to about ")[1].split()[0])
    assert target > np.log(layer.gates["f"] / (1 - layer.gates["f"]))
    # An orthogonal W_h with gain 1 is not told to become orthogonal with gain 1.
    saturated = diagnose(_simple("tanh", 1.0), x * 8)
    assert saturated.verdict == "vanishing"
    assert not any("orthogonal" in s.action for s in saturated.suggestions)


def test_thresholds_are_arguments_and_are_recorded(x):
    model = _simple("tanh", 0.7)
    strict = diagnose(model, x, vanishing_ratio=1e-2)
    loose = diagnose(model, x, vanishing_ratio=1e-6)
    assert strict.layers[0].horizon < loose.layers[0].horizon
    assert json.loads(strict.to_json())["thresholds"]["vanishing_ratio"] == 1e-2
    with pytest.raises(ValueError, match="vanishing_ratio must be < 1"):
        diagnose(model, x, vanishing_ratio=2.0)


def test_nan_targets_are_refused(x):
    y = np.zeros((8, 1))
    y[3] = np.nan
    with pytest.raises(ValueError, match="y must hold finite"):
        diagnose(_simple("tanh", 0.5), x, y)


def test_gate_means_match_a_direct_computation():
    layer = keras.layers.LSTM(4, return_sequences=False)
    model = keras.Sequential([keras.Input((6, 2)), layer, keras.layers.Dense(1)])
    x = np.random.default_rng(1).normal(size=(3, 6, 2)).astype("float32")
    report = diagnose(model, x)
    cell = layer.cell
    k, u, b = cell.kernel.numpy(), cell.recurrent_kernel.numpy(), cell.bias.numpy()
    h, c, forget = np.zeros((3, 4)), np.zeros((3, 4)), []

    def sigmoid(v):
        return 1 / (1 + np.exp(-v))

    for t in range(6):
        i, f, g, o = np.split(x[:, t] @ k + h @ u + b, 4, axis=-1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
        forget.append(sigmoid(f))
    assert report.layers[0].gates["f"] == pytest.approx(np.mean(forget), rel=1e-5)


def test_overflow_is_a_result_and_the_json_stays_valid():
    assert transport_verdict(np.array([1.0, np.inf])) == "exploding"
    model = _simple("linear", 3.0, steps=100)
    x = np.random.default_rng(2).normal(size=(4, 100, 3)).astype("float32")
    report = diagnose(model, x)  # 3**99 overflows float32: a result, not an exception
    assert report.verdict == "exploding" and report.non_finite > 0
    parsed = json.loads(report.to_json())
    assert parsed["verdict"] == "exploding" and parsed["layers"][0]["max_transport"] == "inf"
    assert any("overflows" in s["evidence"] for s in parsed["suggestions"])


def test_bidirectional_masked_rows_are_measured_along_their_own_direction():
    steps = 12
    model = keras.Sequential(
        [
            keras.Input((steps,), dtype="int32"),
            keras.layers.Embedding(20, 6, mask_zero=True),
            keras.layers.Bidirectional(keras.layers.GRU(5), name="bi"),
            keras.layers.Dense(1),
        ]
    )
    x = np.random.default_rng(3).integers(1, 20, size=(4, steps))
    x[:, 8:] = 0  # every example padded after step 8
    report = diagnose(model, x, np.zeros((4, 1)))
    assert [layer.name for layer in report.layers] == ["bi (forward)", "bi (backward)"]
    assert [layer.direction for layer in report.layers] == ["forward", "backward"]
    for index, layer in enumerate(report.layers):
        assert len(layer.transport) == 8  # padded steps are not lags
        assert layer.transport[0] == pytest.approx(1.0, rel=1e-5)
        embedded = model.layers[0](x)
        mask = x != 0
        sub = model.layers[1].forward_layer if index == 0 else model.layers[1].backward_layer
        per_example = transport_oracle(sub, embedded, mask=mask)
        counted = per_example[:, :8]
        expected = counted.mean(0)[::-1] if index == 0 else counted.mean(0)
        np.testing.assert_allclose(layer.transport, expected, rtol=1e-3)


def test_every_chapter_a_suggestion_links_is_in_the_book():
    toc = (ROOT / "_toc.yml").read_text()
    for key, link in chapter_links().items():
        page = link["page"].removesuffix(".html")
        assert f"file: {page}" in toc, f"{key}: {page} is not in _toc.yml"


def test_report_names_the_loss_it_used():
    model = rnngrad.build_rnn("gru", 4, input_dim=2)
    x, y = rnngrad.tasks.adding_problem(4, 10, seed=0)
    assert "not compiled" in diagnose(model, x, y).loss
    model.compile(loss="mae")
    assert diagnose(model, x, y).loss.startswith("mae (the model's compiled loss")


class _ScaledCell(keras.layers.SimpleRNNCell):
    """A SimpleRNN cell with a new equation (its state halved): run through its call."""

    def call(self, sequence, states, training=False):
        h, _ = super().call(sequence, states, training=training)
        halved = 0.5 * h
        return halved, [halved]


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["stock", "custom cell", "regularized"])
def test_the_reported_global_norm_is_the_optimizers_gradient_norm(x, kind):
    if kind == "custom cell":
        recurrent = keras.layers.RNN(_ScaledCell(6), return_sequences=True)
    else:
        regularizer = keras.regularizers.L2(0.1) if kind == "regularized" else None
        recurrent = keras.layers.LSTM(6, return_sequences=True, kernel_regularizer=regularizer)
    model = keras.Sequential(
        [keras.Input((T, 3)), recurrent, keras.layers.GRU(4), keras.layers.Dense(1)]
    )
    model.compile(loss="mse")
    y = np.random.default_rng(4).normal(size=(8, 1)).astype("float32")
    with tf.GradientTape() as tape:
        loss = model.compute_loss(x=x, y=y, y_pred=model(x, training=False))
    grads = tape.gradient(loss, model.trainable_variables)
    expected = np.sqrt(sum(np.sum(np.asarray(g, np.float64) ** 2) for g in grads))
    assert diagnose(model, x, y).global_gradient_norm == pytest.approx(expected, rel=1e-5)


def test_gate_openings_are_measured_for_keras_cells_and_said_missing_otherwise():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(4, 8, 3)).astype("float32"), np.zeros((4, 1), "float32")
    for implementation, measured in ((2, True), (1, False)):
        model = keras.Sequential(
            [
                keras.Input((8, 3)),
                keras.layers.LSTM(5, implementation=implementation, name="lstm"),
                keras.layers.Dense(1),
            ]
        )
        report = diagnose(model, x, y)
        assert (report.layers[0].gates is not None) == measured
        assert any("gate openings are not measured" in n for n in report.notes) != measured
