"""GradientHistory measures what an independent GradientTape measures; StopOnNonFinite stops."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import rnngrad
from rnngrad import training
from rnngrad.callbacks import GradientHistory, StopOnNonFinite
from rnngrad.probes import global_gradient_norm
from rnngrad.tasks import adding_problem, copy_memory, one_hot


@pytest.fixture(scope="module")
def data():
    return adding_problem(128, 12, seed=0)  # 4 updates per epoch at batch 32


def tape_global_norm(model, x, y, loss_fn):
    """The oracle: Keras's own loss object under one GradientTape, squares summed in float64."""
    with tf.GradientTape() as tape:
        value = loss_fn(y, model(x, training=False))
    grads = tape.gradient(value, model.trainable_variables)
    return float(np.sqrt(sum(np.sum(np.asarray(g, dtype=np.float64) ** 2) for g in grads)))


def test_every_n_batches_with_several_updates_per_compiled_call(data):
    # Keras reports every third update (steps_per_execution=3): with every_n_batches=2
    # the measurements land on the first report at or after each multiple of 2
    x, y = data
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 2))
    model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.GRU(4)(inputs)))
    model.compile(optimizer="sgd", loss="mse", steps_per_execution=3)
    history = GradientHistory(x[:8], y[:8], every_n_batches=2)
    model.fit(x, y, epochs=2, batch_size=16, callbacks=[history], verbose=0)  # 8 per epoch
    assert history.steps == [0, 3, 6, 8, 11, 14, 16]


@pytest.mark.integration
def test_records_before_training_and_after_every_epoch(data):
    x, y = data
    model = rnngrad.build_rnn("gru", 6, input_dim=2, seed=2)
    before = tape_global_norm(model, x[:16], y[:16], keras.losses.MeanSquaredError())
    profile_before = rnngrad.state_gradient_norms(model, x[:16], y[:16])
    history = GradientHistory(x[:16], y[:16])
    result = training.train(model, x, y, epochs=2, callbacks=[history])
    assert history.steps == [0, 4, 8]
    assert history.epochs == [0.0, 1.0, 2.0]
    assert history.grad_norms[0] == pytest.approx(before, rel=1e-5)
    np.testing.assert_allclose(history.profiles[0], profile_before, rtol=1e-6)
    # the last record is the trained model's, measured independently
    after = tape_global_norm(model, x[:16], y[:16], keras.losses.MeanSquaredError())
    assert history.grad_norms[-1] == pytest.approx(after, rel=1e-5)
    np.testing.assert_allclose(
        history.profiles[-1], rnngrad.state_gradient_norms(model, x[:16], y[:16]), rtol=1e-6
    )
    # Keras's History keeps the per-epoch values next to the loss
    np.testing.assert_allclose(result.history["grad_norm"], history.grad_norms[1:])
    assert all(p.shape == (1, 12) for p in history.profiles)


@pytest.mark.integration
def test_every_n_batches_counts_across_epochs(data):
    x, y = data
    history = GradientHistory(x[:8], y[:8], every_n_batches=3)
    model = rnngrad.build_rnn("simple", 4, input_dim=2, layers=2)
    result = training.train(model, x, y, epochs=2, callbacks=[history])
    # after updates 3 and 6 (every 3), plus each epoch's end (4 and 8) not yet measured
    assert history.steps == [0, 3, 4, 6, 8]
    np.testing.assert_allclose(history.epochs, [0, 0.75, 1, 1.5, 2])
    assert result.history["grad_norm"] == [history.grad_norms[2], history.grad_norms[4]]
    assert history.profiles[0].shape == (2, 12)


def test_sequence_outputs_with_cross_entropy_match_the_tape():
    tokens, targets = copy_memory(16, 4, seed=0, copy_len=3)
    x = one_hot(tokens, 10)
    model = rnngrad.build_rnn(
        "lstm", 5, input_dim=10, output_dim=10, sequence_output=True, output_activation="softmax"
    )
    measured = global_gradient_norm(model, x, targets, loss="sparse_categorical_crossentropy")
    expected = tape_global_norm(model, x, targets, keras.losses.SparseCategoricalCrossentropy())
    assert measured == pytest.approx(expected, rel=1e-5)


def test_without_targets_the_loss_is_half_the_squared_output(data):
    x, _ = data

    def half_square(_, y_pred):
        return tf.reduce_mean(0.5 * tf.reduce_sum(tf.square(y_pred), axis=-1))

    model = rnngrad.build_rnn("simple", 4, input_dim=2, output_dim=3)
    history = GradientHistory(x[:8], None)
    history.set_model(model)
    grad_norm, profile, _ = history.measure()
    assert grad_norm == pytest.approx(tape_global_norm(model, x[:8], None, half_square), rel=1e-5)
    np.testing.assert_allclose(profile, rnngrad.state_gradient_norms(model, x[:8], None))


@pytest.mark.integration
def test_subclasses_override_record_and_history_resets_per_fit(data):
    x, y = data

    class Counting(GradientHistory):
        def record(self, step, epoch, grad_norm, profile, transport=None):
            super().record(step, epoch, grad_norm, profile, transport)
            self.seen = getattr(self, "seen", 0) + 1

    history = Counting(x[:8], y[:8])
    model = rnngrad.build_rnn("simple", 4, input_dim=2)
    training.train(model, x, y, epochs=1, callbacks=[history])
    training.train(model, x, y, epochs=2, callbacks=[history])
    assert history.seen == 2 + 3 and history.steps == [0, 4, 8]


def test_stop_on_non_finite_marks_the_batch():
    stopper = StopOnNonFinite()
    stopper.set_model(keras.Sequential([keras.layers.Dense(1)]))
    stopper.on_epoch_begin(2)
    stopper.on_train_batch_end(0, {"loss": 1.0})
    with pytest.warns(RuntimeWarning, match="epoch 2, batch 1"):
        stopper.on_train_batch_end(1, {"loss": float("nan")})
    stopper.on_train_batch_end(2, {"loss": float("inf")})  # the first one is kept
    assert stopper.stopped_at == (2, 1) and stopper.model.stop_training


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(x_probe=None), TypeError, "x_probe must be an array"),
        (dict(x_probe=np.zeros(3)), ValueError, "x_probe must be a batch"),
        (dict(y_probe=np.zeros((2, 1))), ValueError, "same number of examples"),
        (dict(loss="hinges"), ValueError, "loss must be a Keras loss name"),
        (dict(loss=3), TypeError, "loss must be None"),
        (dict(every_n_batches=0), ValueError, "every_n_batches must be >= 1"),
    ],
)
def test_bad_arguments_are_named(kwargs, error, match):
    arguments = dict(x_probe=np.zeros((4, 5, 2)), y_probe=np.zeros((4, 1))) | kwargs
    x_probe, y_probe = arguments.pop("x_probe"), arguments.pop("y_probe")
    with pytest.raises(error, match=match):
        GradientHistory(x_probe, y_probe, **arguments)


def test_global_gradient_norm_needs_a_model():
    with pytest.raises(TypeError, match=r"model must be a keras\.Model"):
        global_gradient_norm("model", np.zeros((1, 3, 2)))
