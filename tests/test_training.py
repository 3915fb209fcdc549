"""Training runs: clipping reaches the optimizer, divergence keeps the history, seeds repeat."""

import keras
import numpy as np
import pytest

import rnngrad
from rnngrad import training
from rnngrad.tasks import adding_problem


@pytest.fixture(scope="module")
def data():
    return adding_problem(256, 15, seed=0)


@pytest.mark.integration
def test_train_records_history_and_seed_repeats(data):
    x, y = data
    first = training.train(rnngrad.build_rnn("simple", 8, input_dim=2, seed=1), x, y, epochs=2)
    again = training.train(rnngrad.build_rnn("simple", 8, input_dim=2, seed=1), x, y, epochs=2)
    assert len(first.history["loss"]) == 2 and not first.diverged
    assert first.history == again.history


def test_divergence_stops_with_a_warning_and_keeps_the_history(data):
    x, y = data
    model = rnngrad.build_rnn("simple", 8, input_dim=2, activation="linear", recurrent_gain=1.6)
    with pytest.warns(RuntimeWarning, match="loss became"):
        result = training.train(model, x, y, epochs=5, optimizer="sgd", learning_rate=1.0)
    assert result.diverged and result.stopped_at is not None
    assert 1 <= len(result.history["loss"]) < 5  # the partial epoch is kept, later ones never ran
    assert not np.isfinite(result.history["loss"][-1])


@pytest.mark.integration
def test_train_seeds_equals_training_each_seed_from_scratch(data):
    x, y = data

    def build(seed):
        return rnngrad.build_rnn("gru", 6, input_dim=2, seed=seed)

    reused = training.train_seeds(build, x, y, [3, 4], epochs=2, optimizer="adam")
    fresh = [training.train(build(s), x, y, epochs=2, seed=s) for s in (3, 4)]
    for a, b in zip(reused, fresh):
        np.testing.assert_allclose(a.history["loss"], b.history["loss"], rtol=1e-6)


@pytest.mark.integration
def test_train_seeds_shares_compiled_models_across_calls_only_where_it_may(data):
    x, y = data

    def build(cell, gain):
        return lambda s: rnngrad.build_rnn(cell, 6, input_dim=2, recurrent_gain=gain, seed=s)

    def sgd(rate=0.05, **clipping):  # a new optimizer each call
        return training.make_optimizer("sgd", rate, momentum=0.9, **clipping)

    def seeds(build, seed_list, epochs=2, optimizer=None):
        optimizer = optimizer or sgd()
        return training.train_seeds(
            build, x, y, seed_list, epochs=epochs, optimizer=optimizer, trainers=shared
        )

    shared = {}
    first = seeds(build("gru", 1.0), [0])
    (compiled,) = [trainer.model for trainer in shared.values()]
    # another gain, learning rate and budget; the same architecture, optimizer and loss: the
    # same compiled model, and the same runs as from scratch
    runs = seeds(build("gru", 3.0), [0, 1], epochs=3, optimizer=sgd(0.02))
    assert len(shared) == 1 and next(iter(shared.values())).model is compiled
    for seed, run in zip((0, 1), runs):
        alone = training.train(
            build("gru", 3.0)(seed), x, y, epochs=3, optimizer=sgd(0.02), seed=seed
        )
        np.testing.assert_allclose(run.history["loss"], alone.history["loss"], rtol=1e-6)
    np.testing.assert_allclose(
        seeds(build("gru", 1.0), [0])[0].history["loss"], first[0].history["loss"], rtol=1e-6
    )
    # another architecture, another optimizer setting: a model of its own
    seeds(build("lstm", 1.0), [0])
    seeds(build("gru", 1.0), [0], optimizer=sgd(global_clipnorm=1.0))
    assert len(shared) == 3
    with pytest.raises(TypeError, match="trainers must be a dict"):
        training.train_seeds(build("gru", 1.0), x, y, [0], epochs=1, trainers=[])


@pytest.mark.integration
def test_a_sweep_and_train_seeds_share_compiled_models(data):
    from rnngrad.experiments.sweeps import sweep

    x, y = data

    def build(seed, gain=1.0):
        return rnngrad.build_rnn("simple", 6, input_dim=2, recurrent_gain=gain, seed=seed)

    shared = {}
    settings = [
        {"learning_rate": 0.01},
        {"learning_rate": 0.01, "global_clipnorm": 1.0},
        {"learning_rate": 0.2, "gain": 2.0},  # shares the first setting's model
    ]
    records = sweep(build, x, y, settings, [0], epochs=2, optimizer="sgd", trainers=shared)
    assert len(shared) == 2
    for record, setting in zip(records, settings):
        clipping = {k: v for k, v in setting.items() if k == "global_clipnorm"}
        alone = training.train(
            build(0, setting.get("gain", 1.0)),
            x,
            y,
            epochs=2,
            optimizer="sgd",
            learning_rate=setting["learning_rate"],
            seed=0,
            **clipping,
        )
        assert record["history"]["loss"] == pytest.approx(alone.history["loss"], rel=1e-6)
    again = training.train_seeds(
        build, x, y, [0], epochs=1, optimizer="sgd", learning_rate=0.2, trainers=shared
    )
    alone = training.train(build(0), x, y, epochs=1, optimizer="sgd", learning_rate=0.2)
    assert len(shared) == 2
    assert again[0].history["loss"] == pytest.approx(alone.history["loss"], rel=1e-6)
    with pytest.raises(TypeError, match="trainers must be a dict"):
        sweep(build, x, y, settings, [0], epochs=1, trainers="no")


@pytest.mark.integration
def test_a_run_is_seeded_as_by_seed_everything_whatever_ran_before(data, monkeypatch):
    import tensorflow as tf

    from rnngrad import _seed

    x, y = data

    def run():
        model = rnngrad.build_rnn("simple", 6, input_dim=2, seed=1)
        return training.train(model, x, y, epochs=3, batch_size=16, seed=1).history["loss"]

    light = run()
    training.train(rnngrad.build_rnn("gru", 4, input_dim=2), x, y, epochs=1, seed=2)
    tf.random.uniform((3,))  # eager random numbers in between
    assert run() == light
    # the same as with seed_everything's emptying of TensorFlow's kernel cache
    monkeypatch.setattr(training, "seed_run", lambda seed, model: _seed.seed_everything(seed))
    assert run() == light


class _Noisy(keras.layers.Layer):  # a stateful TensorFlow random op in the training step
    def call(self, inputs):
        import tensorflow as tf

        return inputs + 0.1 * tf.random.uniform(tf.shape(inputs), seed=1)


@pytest.mark.integration
def test_a_model_with_its_own_layers_is_seeded_with_an_emptied_cache(data):
    from rnngrad._seed import _only_keras_layers

    x, y = data

    def build(seed):
        inputs = keras.Input((15, 2))
        glorot, orthogonal = keras.initializers.GlorotUniform, keras.initializers.Orthogonal
        rnn = keras.layers.SimpleRNN(
            4, kernel_initializer=glorot(seed), recurrent_initializer=orthogonal(seed)
        )
        hidden = rnn(_Noisy()(inputs))
        return keras.Model(inputs, keras.layers.Dense(1, kernel_initializer=glorot(seed))(hidden))

    assert _only_keras_layers(rnngrad.build_rnn("lstm", 4, input_dim=2))
    assert not _only_keras_layers(build(0))
    first, again = training.train_seeds(build, x, y, [0, 0], epochs=1)  # one compiled model
    assert first.history == again.history


@pytest.mark.parametrize("option", ["clipnorm", "clipvalue", "global_clipnorm"])
def test_clipping_options_reach_the_keras_optimizer(option):
    optimizer = training.make_optimizer("sgd", 0.1, **{option: 0.5})
    assert getattr(optimizer, option) == 0.5


def test_schedules_are_accepted():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    optimizer = training.make_optimizer("sgd", schedule)
    assert (
        isinstance(optimizer.learning_rate, keras.Variable) or optimizer.learning_rate is not None
    )


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: training.make_optimizer("adagrad"), ValueError, "optimizer must be one of"),
        (lambda: training.make_optimizer("sgd", -1.0), ValueError, "learning_rate must be > 0"),
        (
            lambda: training.make_optimizer("sgd", clipnorm=1.0, clipvalue=1.0),
            ValueError,
            "at most one",
        ),
        (
            lambda: training.train("model", [1], [1], epochs=1),
            TypeError,
            "model must be a keras.Model",
        ),
    ],
)
def test_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_mismatched_data_is_named(data):
    x, y = data
    with pytest.raises(ValueError, match="same number of examples"):
        training.train(rnngrad.build_rnn("simple", 4, input_dim=2), x, y[:10], epochs=1)


@pytest.mark.integration
def test_trainer_reuses_one_compiled_model_across_data_and_equals_fresh_training(data):
    x, y = data
    x_long, y_long = adding_problem(256, 25, seed=1)  # other data, other length

    def build(seed):
        return rnngrad.build_rnn("simple", 6, input_dim=2, seed=seed)

    trainer = training.Trainer(epochs=2, learning_rate=0.01)
    trainer.run(build(0), x, y, seed=0)
    compiled = trainer.model
    reused = trainer.run(build(1), x_long, y_long, seed=1)
    fresh = training.train(build(1), x_long, y_long, epochs=2, learning_rate=0.01, seed=1)
    assert trainer.model is compiled
    np.testing.assert_allclose(reused.history["loss"], fresh.history["loss"], rtol=1e-6)


def test_trainer_refuses_another_architecture(data):
    x, y = data
    trainer = training.Trainer(epochs=1)
    trainer.run(rnngrad.build_rnn("simple", 6, input_dim=2), x, y, seed=0)
    relu = rnngrad.build_rnn("simple", 6, input_dim=2, activation="relu")
    with pytest.raises(ValueError, match="fresh must have the architecture"):
        trainer.run(relu, x, y, seed=0)
    with pytest.raises(TypeError, match="epochs"):
        training.Trainer(batch_size=4)


def test_architecture_key_ignores_weights_and_initializers_only():
    key = training.architecture_key
    base = rnngrad.build_rnn("gru", 4, input_dim=1, seed=0)
    same = [
        rnngrad.build_rnn("gru", 4, input_dim=1, seed=9),
        rnngrad.build_rnn("gru", 4, input_dim=1, chrono_length=50),
        rnngrad.build_rnn("gru", 4, input_dim=1, recurrent_initializer="identity"),
    ]
    other = [
        rnngrad.build_rnn("gru", 5, input_dim=1),
        rnngrad.build_rnn("lstm", 4, input_dim=1),
        rnngrad.build_rnn("gru", 4, input_dim=2),
        rnngrad.build_rnn("gru", 4, input_dim=1, activation="relu"),
        rnngrad.build_rnn("gru", 4, input_dim=1, output_activation="softmax"),
    ]
    assert all(key(m) == key(base) for m in same)
    assert all(key(m) != key(base) for m in other)
    with pytest.raises(TypeError, match=r"model must be a keras\.Model"):
        key("gru")


def test_architecture_key_ignores_the_seed_of_a_wrapped_cell():
    # keras.layers.RNN(cell) nests the cell's configuration, seed and name included; a
    # truncated model built again with another seed is the same architecture (the
    # remedies chapter trains several seeds of it in one Trainer).
    from rnngrad.experiments.truncation import truncated_model

    key = training.architecture_key

    def build(units, seed):
        return truncated_model(
            rnngrad.build_rnn("simple", units, input_dim=1, seed=seed), 3, length=10
        )

    assert key(build(4, 0)) == key(build(4, 1))
    assert key(build(4, 0)) != key(build(5, 0))


@pytest.mark.integration
def test_several_updates_per_call_unless_a_callback_watches_batches():
    from rnngrad.callbacks import GradientHistory, StopOnNonFinite

    x, y = rnngrad.tasks.adding_problem(96, 8, seed=0)

    class EveryBatch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            pass

    probe = GradientHistory(x[:4], y[:4])
    assert training.steps_per_execution([StopOnNonFinite(), probe]) == (
        training.STEPS_PER_EXECUTION
    )
    assert training.steps_per_execution([GradientHistory(x[:4], y[:4], every_n_batches=2)]) == 1
    assert training.steps_per_execution([EveryBatch()]) == 1

    class EveryEighth(keras.callbacks.Callback):  # needs the model after every 8th update
        watches_batches, updates_per_call = False, 8

        def on_train_batch_end(self, batch, logs=None):
            pass

    assert training.steps_per_execution([EveryEighth()]) == 8
    assert training.steps_per_execution([EveryEighth()], steps_per_epoch=12) == 4
    assert training.steps_per_execution([EveryEighth(), EveryBatch()]) == 1
    # the same updates either way, bitwise: 3 updates an epoch at batch 32
    fast = rnngrad.build_rnn("gru", 4, input_dim=2, seed=3)
    slow = rnngrad.build_rnn("gru", 4, input_dim=2, seed=3)
    training.train(fast, x, y, epochs=2, callbacks=[probe])
    assert fast.steps_per_execution == training.STEPS_PER_EXECUTION
    assert probe.steps == [0, 3, 6]
    training.train(slow, x, y, epochs=2, callbacks=[EveryBatch()])
    assert slow.steps_per_execution == 1
    for a, b in zip(fast.get_weights(), slow.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_stop_on_a_non_finite_loss_names_a_batch_of_the_epoch_with_several_updates_per_call():
    x, y = rnngrad.tasks.adding_problem(96, 30, seed=0)  # 3 updates an epoch at batch 32
    model = rnngrad.build_rnn("simple", 8, input_dim=2, activation="linear", recurrent_gain=3.0)
    with pytest.warns(RuntimeWarning, match="training stopped"):
        result = training.train(model, x, y, epochs=3, optimizer="sgd", learning_rate=10.0)
    assert model.steps_per_execution == training.STEPS_PER_EXECUTION
    assert result.diverged and result.stopped_at[0] == 0 and 0 <= result.stopped_at[1] < 3


def test_the_training_function_is_traced_once_and_trains_as_keras_does(data):
    """The optimizer is built before the first fit, so ``tf.function`` traces the training
    step once (not twice, as when the first trace creates the optimizer's variables), and
    the updates are bitwise those of Keras's own compile and fit."""
    x, y = data
    traced = []
    ours = rnngrad.build_rnn("gru", 4, input_dim=2, seed=5)
    train_step = ours.train_step
    ours.train_step = lambda batch: traced.append(1) or train_step(batch)
    training.train(
        ours, x, y, epochs=2, batch_size=48, optimizer="adam", learning_rate=0.01, seed=0
    )
    assert len(traced) == 1

    keras_own = rnngrad.build_rnn("gru", 4, input_dim=2, seed=5)
    keras_own.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse", jit_compile=False)
    rnngrad.seed_everything(0)
    keras_own.fit(x, y, epochs=2, batch_size=48, shuffle=True, verbose=0)
    for a, b in zip(ours.get_weights(), keras_own.get_weights()):
        np.testing.assert_array_equal(a, b)
