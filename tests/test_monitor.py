"""GradientMonitor: spikes, overflow and a collapsing horizon are noticed, warned about, and
can stop training without losing the history."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import rnngrad
from rnngrad import training
from rnngrad.monitor import GradientMonitor
from rnngrad.tasks import adding_problem


@pytest.fixture(scope="module")
def data():
    return adding_problem(512, 30, seed=0)


def test_monitor_on_a_model_that_explodes_warns_and_stops_keeping_the_history(data):
    x, y = data
    model = rnngrad.build_rnn("simple", 16, input_dim=2, activation="linear", recurrent_gain=1.2)
    monitor = GradientMonitor(x[:16], y[:16], every_n_batches=2, stop_on=["spike", "nonfinite"])
    with pytest.warns(RuntimeWarning, match="GradientMonitor"):
        result = training.train(
            model, x, y, epochs=5, optimizer="sgd", learning_rate=0.05, callbacks=[monitor]
        )
    kinds = {event.kind for event in monitor.events}
    assert kinds & {"spike", "nonfinite"}, monitor.events
    steps_per_epoch = 512 // 32
    assert monitor.steps[-1] < 5 * steps_per_epoch  # it stopped early
    assert len(monitor.grad_norms) == len(monitor.horizons) == len(monitor.profiles)
    assert "grad_norm" in result.history and "horizon" in result.history
    median = np.median(monitor.grad_norms[: monitor.min_history])
    spike = next(e for e in monitor.events if e.kind in ("spike", "nonfinite"))
    index = monitor.steps.index(spike.step)
    assert not np.isfinite(monitor.grad_norms[index]) or (
        monitor.grad_norms[index] > monitor.spike_factor * median
    )


def test_a_nonfinite_measurement_has_no_horizon_not_a_zero_one():
    monitor = GradientMonitor(np.zeros((2, 10, 2)), None)
    profile = np.ones((1, 10))
    monitor.record(0, 0.0, 1.0, profile, [np.ones(10)])
    with pytest.warns(RuntimeWarning, match="non-finite"):
        monitor.record(1, 1.0, np.inf, profile, [np.full(10, np.inf)])
    assert monitor.horizons[0] == 10 and np.isnan(monitor.horizons[1])
    assert [e.kind for e in monitor.events] == ["nonfinite"]  # not a collapse


def test_a_probe_batch_that_does_not_fit_the_model_names_x_probe():
    model = rnngrad.build_rnn("simple", 4, input_dim=2)
    x, y = adding_problem(32, 10, seed=0)
    monitor = GradientMonitor(np.zeros((4, 10, 3)), None)  # 3 features, the model takes 2
    with pytest.raises(ValueError, match=r"probe batch \(x_probe, y_probe\) does not fit"):
        training.train(model, x, y, epochs=1, callbacks=[monitor])


def test_a_model_the_probe_refuses_is_not_blamed_on_the_probe_batch():
    inputs = keras.Input(batch_shape=(4, 10, 2))
    hidden = keras.layers.SimpleRNN(4, stateful=True, name="kept")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1)(hidden))
    model.compile(optimizer="sgd", loss="mse")
    x, y = adding_problem(8, 10, seed=0)
    monitor = GradientMonitor(x[:4], y[:4])
    with pytest.raises(ValueError, match="stateful") as caught:
        model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[monitor])
    assert "probe batch" not in str(caught.value)


def test_horizon_collapse_is_noticed():
    monitor = GradientMonitor(np.zeros((2, 10, 2)), None, stop_on=["horizon"])
    profile = np.ones((1, 10))
    flat, steep = [np.ones(10)], [0.1 ** np.arange(10)]  # transport by lag
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to warn about yet
        monitor.record(0, 0.0, 1.0, profile, flat)
    with pytest.warns(RuntimeWarning, match="reaches 4 steps back, down from 10"):
        monitor.record(1, 1.0, 1.0, profile, steep)
    assert monitor.horizons == [10, 4] and monitor.events[-1].kind == "horizon"


@pytest.mark.integration
def test_the_horizon_is_the_one_diagnose_reports(data):
    x, y = data
    model = rnngrad.build_rnn("simple", 8, input_dim=2, recurrent_gain=0.5)
    monitor = GradientMonitor(x[:16], y[:16])
    training.train(model, x, y, epochs=1, callbacks=[monitor])
    report = rnngrad.diagnose(model, x[:16], y[:16])
    assert monitor.horizons[-1] == report.layers[0].horizon


@pytest.mark.integration
def test_log_keys_reach_callbacks_listed_before_the_monitor(data):
    x, y = data
    seen = []

    class Reader(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(("horizon" in logs, "grad_norm" in logs))

    model = rnngrad.build_rnn("gru", 4, input_dim=2)
    monitor = GradientMonitor(x[:8], y[:8])
    early = keras.callbacks.EarlyStopping(monitor="grad_norm", mode="min", patience=5)
    training.train(model, x, y, epochs=2, callbacks=[Reader(), early, monitor])
    assert seen == [(True, True), (True, True)]


@pytest.mark.integration
def test_tensorboard_gets_each_rows_horizon_decay_and_a_profile_image(data, tmp_path):
    x, y = data
    model = keras.Sequential(
        [
            keras.Input((30, 2)),
            keras.layers.Bidirectional(keras.layers.GRU(4), name="bi"),
            keras.layers.Dense(1),
        ]
    )
    monitor = GradientMonitor(x[:8], y[:8], log_dir=tmp_path)
    training.train(model, x, y, epochs=1, callbacks=[monitor])
    tags = set()
    for path in tmp_path.rglob("events.out.tfevents.*"):
        for record in tf.data.TFRecordDataset(str(path)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            tags |= {value.tag for value in event.summary.value}
    assert {
        "gradients/global_norm",
        "gradients/bi_forward/horizon",
        "gradients/bi_backward/decay_per_step",
        "gradients/profiles",
    } <= tags


@pytest.mark.integration
def test_a_healthy_run_raises_no_event(data):
    x, y = data
    model = rnngrad.build_rnn("gru", 8, input_dim=2)
    monitor = GradientMonitor(x[:16], y[:16])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        training.train(model, x, y, epochs=2, callbacks=[monitor])
    assert monitor.events == [] and len(monitor.horizons) == 3


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(spike_factor=1.0), "spike_factor must be > 1"),
        (dict(horizon_fraction=1.5), "horizon_fraction must be < 1"),
        (dict(stop_on=["boom"]), "stop_on must name events"),
        (dict(min_history=0), "min_history must be >= 1"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GradientMonitor(np.zeros((2, 5, 2)), None, **kwargs)


def test_a_nonfinite_event_reports_the_norm_formatted():
    monitor = GradientMonitor(np.zeros((2, 10, 2)), None)
    profile = np.ones((1, 10))
    profile[0, 3] = np.inf  # a finite global norm, a profile that overflowed
    with pytest.warns(RuntimeWarning, match="non-finite"):
        monitor.record(0, 0, 1234.56789, profile, [np.ones(10)])
    (event,) = monitor.events
    assert event.kind == "nonfinite"
    assert "global norm 1.23e+03" in event.message, event.message
