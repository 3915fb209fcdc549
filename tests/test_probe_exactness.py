"""Exact or refused: models built without rnngrad's helpers, checked against an eager unroll
of the model's own cells and against Keras's own compiled loss."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import rnngrad
from rnngrad import _engine, _replay
from rnngrad.probes import global_gradient_norm, state_gradient_norms, state_gradients
from tests.oracles import chain, keras_per_example, relative_error, unrolled_state_gradients

F32_TOL = 1e-3
RNG = np.random.default_rng(0)


class LayerNormLSTMCell(keras.layers.LSTMCell):
    """An LSTM cell with its gate pre-activations layer-normalized: new equations."""

    def build(self, input_shape):
        super().build(input_shape)
        self.norm = keras.layers.LayerNormalization()
        self.norm.build((None, 4 * self.units))

    def call(self, inputs, states, training=False):
        h_tm1, c_tm1 = states
        z = self.norm(inputs @ self.kernel + h_tm1 @ self.recurrent_kernel) + self.bias
        i, f, g, o = tf.split(z, 4, axis=-1)
        c = tf.sigmoid(f) * c_tm1 + tf.sigmoid(i) * tf.tanh(g)
        h = tf.sigmoid(o) * tf.tanh(c)
        return h, [h, c]


class OutputIsNotTheState(keras.layers.Layer):
    """A cell whose output differs from its state: the probe cannot tell which is h_t."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units, self.state_size = units, units

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units))

    def call(self, inputs, states):
        h = tf.tanh(inputs @ self.kernel + states[0])
        return 2.0 * h, [h]


def test_a_cell_subclass_with_new_equations_is_probed_exactly():
    inputs = keras.Input((15, 3))
    hidden = keras.layers.RNN(LayerNormLSTMCell(6), name="ln_lstm")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1)(hidden))
    x = RNG.normal(size=(4, 15, 3)).astype("float32")
    y = np.ones((4, 1), "float32")
    mse = keras_per_example(keras.losses.MeanSquaredError())
    oracle = unrolled_state_gradients(chain(model), x, y, mse)[0]
    probe = state_gradients(model, x, y)[0]
    assert relative_error(probe, oracle) < F32_TOL
    profiles = rnngrad.probes.gradient_profiles(model, x, y)
    assert profiles.cells == ["lstm"]  # a subclass of LSTMCell, run through its own call
    assert _engine.run_probe(model, x, y).rows[0].kind == "custom"


def test_a_cell_whose_output_is_not_its_state_is_refused_by_name():
    inputs = keras.Input((8, 2))
    hidden = keras.layers.RNN(OutputIsNotTheState(4), name="odd")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1)(hidden))
    with pytest.raises(ValueError, match=r"'odd'.*not its first state"):
        state_gradient_norms(model, np.zeros((2, 8, 2)), np.zeros((2, 1)))


def test_a_layer_that_overrides_call_is_refused_by_name():
    class Doubled(keras.layers.GRU):
        def call(self, sequences, initial_state=None, mask=None, training=False):
            return 2 * super().call(sequences, initial_state, mask, training)

    model = keras.Sequential([keras.Input((8, 2)), Doubled(4, name="twice"), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match=r"'twice'.*overrides call"):
        state_gradient_norms(model, np.zeros((2, 8, 2)), np.zeros((2, 1)))


def test_the_self_check_refuses_a_replay_that_does_not_reproduce_the_layer(monkeypatch):
    original = _replay._StockStep.__call__

    def off_by_a_little(self, inputs, carry, eps_c):
        new, gates = original(self, inputs, carry, eps_c)
        return [new[0] + 1e-2, *new[1:]], gates

    monkeypatch.setattr(_replay._StockStep, "__call__", off_by_a_little)
    model = rnngrad.build_rnn("gru", 4, input_dim=2, seed=1)
    x, y = rnngrad.tasks.adding_problem(3, 10, seed=0)
    with pytest.raises(ValueError, match=r"'gru_1'.*does not reproduce"):
        state_gradient_norms(model, x, y)


def test_xla_drift_on_a_chaotic_network_falls_back_to_exact_kernels(monkeypatch):
    # tanh with gain 1.5 is chaotic: XLA's rounding differences grow along the sequence.
    monkeypatch.setattr(_engine, "XLA_AFTER_STABLE_RUNS", 2)
    model = rnngrad.build_rnn("simple", 32, input_dim=2, recurrent_gain=1.5, seed=0)
    x, y = rnngrad.tasks.adding_problem(8, 120, seed=0)
    first = _engine.run_probe(model, x, y)  # TensorFlow's own kernels
    assert first.jit_compile is False
    assert _engine.run_probe(model, x, y).jit_compile is False  # first fingerprint
    run = _engine.run_probe(model, x, y)  # same weights again: tries XLA, which drifts
    assert run.jit_compile is False
    (entry,) = _engine._CACHE[model].values()
    assert entry.xla_failed
    mse = keras_per_example(keras.losses.MeanSquaredError())
    oracle = unrolled_state_gradients(chain(model), x, y, mse)[0]
    np.testing.assert_allclose(run.norms()[0], np.linalg.norm(oracle, axis=-1).mean(0), rtol=1e-4)


def classifier(head, recurrent=keras.layers.LSTM, units=6, steps=12, features=3, **kwargs):
    """A recurrent layer under a last-step, per-step or pooled softmax head."""
    inputs = keras.Input((steps, features))
    hidden = recurrent(units, return_sequences=head != "last", **kwargs)(inputs)
    if head == "per-step":
        hidden = keras.layers.TimeDistributed(keras.layers.Dense(5, activation="softmax"))(hidden)
        return keras.Model(inputs, hidden)
    if head == "pooled":
        hidden = keras.layers.GlobalAveragePooling1D()(hidden)
    return keras.Model(inputs, keras.layers.Dense(5, activation="softmax")(hidden))


@pytest.mark.parametrize("head", ["last", "per-step", "pooled"])
def test_compiled_loss_is_the_default_and_matches_keras_for_every_head(head):
    model = classifier(head)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x = RNG.normal(size=(5, 12, 3)).astype("float32")
    y = RNG.integers(0, 5, size=(5, 12) if head == "per-step" else (5,))
    # the global norm equals the gradient of Keras's own compiled loss
    with tf.GradientTape() as tape:
        keras_loss = model.compute_loss(x=x, y=y, y_pred=model(x, training=False))
    grads = tape.gradient(keras_loss, model.trainable_variables)
    expected = np.sqrt(sum(np.sum(np.asarray(g, np.float64) ** 2) for g in grads))
    assert global_gradient_norm(model, x, y) == pytest.approx(expected, rel=1e-5)
    # the state gradients are those of Keras's sparse cross-entropy, per example
    loss = keras.losses.SparseCategoricalCrossentropy()
    oracle = unrolled_state_gradients(chain(model), x, y, keras_per_example(loss))[0]
    probe = state_gradients(model, x, y)[0]
    assert relative_error(probe, oracle) < F32_TOL
    report = rnngrad.probes.gradient_profiles(model, x, y)
    assert "compiled" in report.loss and "sparse_categorical_crossentropy" in report.loss


def test_a_loss_object_with_from_logits_is_honoured():
    model = keras.Sequential([keras.Input((10, 2)), keras.layers.GRU(5), keras.layers.Dense(4)])
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer="adam", loss=loss)
    x = RNG.normal(size=(6, 10, 2)).astype("float32")
    y = RNG.integers(0, 4, size=6)
    oracle = unrolled_state_gradients(chain(model), x, y, keras_per_example(loss))[0]
    assert relative_error(state_gradients(model, x, y)[0], oracle) < F32_TOL
    assert relative_error(state_gradients(model, x, y, loss=loss)[0], oracle) < F32_TOL
    # the same model read as probabilities is a different (here wrong) loss
    as_probabilities = state_gradients(model, x, y, loss="sparse_categorical_crossentropy")[0]
    assert relative_error(as_probabilities, oracle) > 1e-2


def test_a_model_compiled_with_categorical_crossentropy_is_not_probed_with_mse():
    model = keras.Sequential(
        [keras.Input((10, 2)), keras.layers.LSTM(5), keras.layers.Dense(3, activation="softmax")]
    )
    model.compile(loss="categorical_crossentropy")
    x = RNG.normal(size=(4, 10, 2)).astype("float32")
    y = np.eye(3, dtype="float32")[[0, 1, 2, 1]]
    oracle = unrolled_state_gradients(chain(model), x, y, keras.losses.categorical_crossentropy)
    assert relative_error(state_gradients(model, x, y)[0], oracle[0]) < F32_TOL


def test_integer_labels_on_an_uncompiled_softmax_model_say_which_loss_to_pass():
    model = keras.Sequential(
        [keras.Input((10, 2)), keras.layers.GRU(5), keras.layers.Dense(3, activation="softmax")]
    )
    with pytest.raises(ValueError, match=r"not compiled.*sparse_categorical_crossentropy"):
        state_gradient_norms(model, np.zeros((4, 10, 2)), np.array([0, 1, 2, 1]))


@pytest.mark.parametrize(
    "x, y, message",
    [
        (np.zeros((3, 10, 2)), np.array([[1.0], [np.nan], [0.0]]), "y must hold finite"),
        (np.full((3, 10, 2), np.inf), np.zeros((3, 1)), "x must hold finite"),
        (np.zeros((3, 10, 2)), np.zeros((2, 1)), "same batch size"),
        (np.zeros((3, 10, 5)), np.zeros((3, 1)), r"x must have shape \(B, 10, 2\)"),
    ],
)
def test_bad_data_gets_a_clear_error(x, y, message):
    model = rnngrad.build_rnn("simple", 4, input_dim=2, length=10)
    with pytest.raises(ValueError, match=message):
        state_gradient_norms(model, x, y)


def test_unbuilt_multi_output_and_scalar_loss_models_get_clear_errors():
    unbuilt = keras.Sequential([keras.layers.LSTM(4), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="not built"):
        state_gradient_norms(unbuilt, np.zeros((2, 5, 2)), np.zeros((2, 1)))
    inputs = keras.Input((5, 2))
    hidden = keras.layers.LSTM(4)(inputs)
    two = keras.Model(inputs, [keras.layers.Dense(1)(hidden), keras.layers.Dense(2)(hidden)])
    with pytest.raises(ValueError, match="2 outputs"):
        state_gradient_norms(two, np.zeros((2, 5, 2)), np.zeros((2, 1)))
    model = rnngrad.build_rnn("gru", 3, input_dim=2)
    with pytest.raises(ValueError, match="scalar"):
        state_gradient_norms(
            model, np.zeros((2, 5, 2)), np.zeros((2, 1)), loss=lambda t, p: tf.reduce_sum(p)
        )
    with pytest.raises(TypeError, match="loss must be"):
        state_gradient_norms(model, np.zeros((2, 5, 2)), np.zeros((2, 1)), loss=3)
    with pytest.raises(ValueError, match="loss must be a Keras loss name"):
        state_gradient_norms(model, np.zeros((2, 5, 2)), np.zeros((2, 1)), loss="nope")


def _same_weights(policy):
    keras.utils.set_random_seed(3)
    inputs = keras.Input((20, 3))
    hidden = keras.layers.LSTM(8, return_sequences=True, dtype=policy)(inputs)
    hidden = keras.layers.GRU(8, dtype=policy)(hidden)
    return keras.Model(inputs, keras.layers.Dense(1, dtype="float32")(hidden))


@pytest.mark.parametrize("policy, tolerance", [("mixed_float16", 5e-3), ("mixed_bfloat16", 5e-2)])
def test_mixed_precision_runs_without_false_overflow_and_matches_float32(policy, tolerance):
    reference, mixed = _same_weights("float32"), _same_weights(policy)
    mixed.set_weights(reference.get_weights())
    x = RNG.normal(size=(8, 20, 3)).astype("float32")
    y = RNG.normal(size=(8, 1)).astype("float32")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no overflow warning: none happened
        norms = state_gradient_norms(mixed, x, y)
    expected = state_gradient_norms(reference, x, y)
    relative = np.abs(norms - expected) / expected
    assert np.max(relative) < tolerance


def test_real_overflow_warns_naming_the_dtype():
    model = rnngrad.build_rnn("simple", 16, input_dim=2, activation="linear", recurrent_gain=3.0)
    x, y = rnngrad.tasks.adding_problem(2, 120, seed=0)
    with pytest.warns(RuntimeWarning, match="overflow float32"):
        norms = state_gradient_norms(model, x, y)
    assert not np.all(np.isfinite(norms))


def test_new_weights_send_the_xla_form_back_to_its_self_check(monkeypatch):
    # A probe that went to XLA on a calm network, then given chaotic weights, must not
    # keep using XLA unchecked: with "auto" new weights run on TensorFlow's kernels, and
    # once they are stable XLA's form is checked again and falls back.
    monkeypatch.setattr(_engine, "XLA_AFTER_STABLE_RUNS", 2)
    model = rnngrad.build_rnn("simple", 32, input_dim=2, recurrent_gain=0.9, seed=0)
    x, y = rnngrad.tasks.adding_problem(8, 120, seed=0)
    for _ in range(2):
        _engine.run_probe(model, x, y)
    assert _engine.run_probe(model, x, y).jit_compile is True
    (entry,) = _engine._CACHE[model].values()
    assert entry.xla is not None and not entry.xla_failed
    chaotic = rnngrad.build_rnn("simple", 32, input_dim=2, recurrent_gain=2.0, seed=0)
    model.set_weights(chaotic.get_weights())
    exact = _engine.run_probe(chaotic, x, y, jit_compile=False).norms()
    changed = _engine.run_probe(model, x, y)  # new weights: the exact kernels
    assert changed.jit_compile is False
    np.testing.assert_allclose(changed.norms(), exact, rtol=1e-6)
    measured = _engine.run_probe(model, x, y).norms()  # stable again: XLA re-checked
    np.testing.assert_allclose(measured, exact, rtol=1e-6)
    assert entry.xla_failed


def test_auto_keeps_the_exact_kernels_while_the_weights_change(monkeypatch):
    # A training monitor changes the weights between runs: XLA's form would need its
    # self-check at every run, so "auto" stays on TensorFlow's kernels.
    monkeypatch.setattr(_engine, "XLA_AFTER_STABLE_RUNS", 2)
    model = rnngrad.build_rnn("simple", 8, input_dim=2, seed=0)
    x, y = rnngrad.tasks.adding_problem(4, 20, seed=0)
    for step in range(4):
        model.layers[-1].bias.assign([0.01 * (step + 1)])
        assert _engine.run_probe(model, x, y).jit_compile is False
    (entry,) = _engine._CACHE[model].values()
    assert entry.xla is None


def _weights_gradient_models():
    """Plain Keras models covering every tap of the stock steps (biases or none, both GRU
    variants, both directions, masks, embeddings, stacks, float64)."""
    seq = keras.Input((12, 3))
    masked = keras.layers.Masking(0.0)(seq)
    tokens = keras.Input((12,), dtype="int32")
    embedded = keras.layers.Embedding(20, 5, mask_zero=True)(tokens)
    cases = {
        "simple": keras.Sequential([seq, keras.layers.SimpleRNN(6), keras.layers.Dense(1)]),
        "lstm no bias, gru v1": keras.Sequential(
            [
                seq,
                keras.layers.LSTM(6, use_bias=False, return_sequences=True),
                keras.layers.GRU(5, reset_after=False),
                keras.layers.Dense(1),
            ]
        ),
        "gru backwards": keras.Sequential(
            [seq, keras.layers.GRU(6, go_backwards=True), keras.layers.Dense(1)]
        ),
        "masked bidirectional": keras.Model(
            seq,
            keras.layers.Dense(1)(
                keras.layers.Bidirectional(keras.layers.LSTM(4), merge_mode="sum")(masked)
            ),
        ),
        "embedding classifier": keras.Model(
            tokens,
            keras.layers.Dense(3)(
                keras.layers.Bidirectional(keras.layers.GRU(4, reset_after=False))(embedded)
            ),
        ),
    }
    return cases


@pytest.mark.integration
@pytest.mark.parametrize("name", list(_weights_gradient_models()))
def test_the_weights_gradient_of_the_diagnose_pass_is_keras_gradient_per_variable(name):
    # diagnose's global norm comes from weight gradients built after the backward loop
    # from each step's tapped products: every variable must equal Keras's own gradient
    model = _weights_gradient_models()[name]
    rng = np.random.default_rng(3)
    if name == "embedding classifier":
        x = rng.integers(1, 20, size=(8, 12)).astype("int32")
        x[:3, :4] = 0  # left padding
        y = rng.integers(0, 3, size=(8,))
        model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    else:
        x = rng.normal(size=(8, 12, 3)).astype("float32")
        x[:2, 8:] = 0.0  # right padding (masked where a Masking layer reads it)
        y = rng.normal(size=(8, 1)).astype("float32")
        model.compile(loss="mse")
    with tf.GradientTape() as tape:
        loss = model.compute_loss(x=x, y=y, y_pred=model(x, training=False))
    expected = tape.gradient(loss, model.trainable_variables)
    run = _engine.run_probe(model, x, y, transport=True, jit_compile=False)
    assert run.weight_gradients is not None
    assert len(run.weight_gradients) == len(expected)
    for variable, ours, theirs in zip(model.trainable_variables, run.weight_gradients, expected):
        theirs = np.asarray(tf.convert_to_tensor(theirs), np.float64)
        scale = np.max(np.abs(theirs)) or 1.0
        error = np.max(np.abs(ours - theirs)) / scale
        assert error < 1e-5, f"{variable.path}: relative error {error:.2e}"
    xla = _engine.run_probe(model, x, y, transport=True, jit_compile=True)
    for ours, theirs in zip(xla.weight_gradients, expected):
        theirs = np.asarray(tf.convert_to_tensor(theirs), np.float64)
        assert np.max(np.abs(ours - theirs)) <= 1e-4 * (np.max(np.abs(theirs)) or 1.0)
