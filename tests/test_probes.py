"""The probe equals independent computations, on rnngrad's models and on the reader's own."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import rnngrad
from rnngrad import _engine
from rnngrad.probes import state_gradient_norms, state_gradients
from rnngrad.tasks import adding_problem
from tests.oracles import (
    chain,
    keras_per_example,
    mse,
    numpy_simple_rnn_bptt,
    relative_error,
    unroll,
    unrolled_state_gradients,
)

F64_TOL = 1e-6  # relative, float64 models
F32_TOL = 1e-3  # relative, float32 models


def _weights(layer):
    return [keras.ops.convert_to_numpy(w) for w in layer.weights]


@pytest.mark.parametrize("sequence_output", [False, True])
def test_simple_rnn_equals_numpy_bptt_in_float64(sequence_output):
    model = rnngrad.build_rnn(
        "simple",
        6,
        input_dim=2,
        output_dim=2,
        dtype="float64",
        seed=3,
        recurrent_gain=1.2,
        sequence_output=sequence_output,
    )
    x, _ = adding_problem(5, 25, seed=1)
    y = np.random.default_rng(0).normal(size=(5, 25, 2) if sequence_output else (5, 2))
    grads = state_gradients(model, x, y)[0]
    kernel, recurrent, bias = _weights(model.get_layer("simple_1"))
    dense_w, dense_b = _weights(model.get_layer("readout"))
    expected = numpy_simple_rnn_bptt(
        x, kernel, recurrent, bias, dense_w, dense_b, y, sequence=sequence_output
    )
    assert grads.shape == (5, 25, 6)
    assert relative_error(grads, expected) < F64_TOL
    norms = state_gradient_norms(model, x, y)
    np.testing.assert_allclose(norms[0], np.linalg.norm(expected, axis=-1).mean(0), rtol=F64_TOL)


def test_simple_rnn_float32_matches_float64_oracle():
    model = rnngrad.build_rnn("simple", 16, input_dim=2, seed=0)
    x, y = adding_problem(8, 60, seed=0)
    norms = state_gradient_norms(model, x, y)[0]
    kernel, recurrent, bias = (w.astype(np.float64) for w in _weights(model.get_layer("simple_1")))
    dense_w, dense_b = (w.astype(np.float64) for w in _weights(model.get_layer("readout")))
    expected = numpy_simple_rnn_bptt(x, kernel, recurrent, bias, dense_w, dense_b, y)
    np.testing.assert_allclose(norms, np.linalg.norm(expected, axis=-1).mean(0), rtol=F32_TOL)


@pytest.mark.parametrize(
    "cell, state", [("lstm", "h"), ("lstm", "c"), ("lstm", "all"), ("gru", "h"), ("gru", "all")]
)
def test_gated_cells_equal_step_by_step_unroll(cell, state):
    model = rnngrad.build_rnn(cell, 5, input_dim=2, dtype="float64", seed=2, recurrent_gain=1.5)
    x, y = adding_problem(4, 30, seed=2)
    probe = state_gradients(model, x, y, state=state)[0]
    oracle = unrolled_state_gradients(chain(model), x, y, mse, state=state)[0]
    assert probe.shape == oracle.shape
    assert relative_error(probe, oracle) < F64_TOL


def test_gru_without_reset_after_and_without_bias():
    model = keras.Sequential(
        [
            keras.Input((20, 3), dtype="float64"),
            keras.layers.GRU(4, reset_after=False, dtype="float64", return_sequences=True),
            keras.layers.GRU(4, use_bias=False, dtype="float64"),
            keras.layers.Dense(1, dtype="float64"),
        ]
    )
    x = np.random.default_rng(0).normal(size=(3, 20, 3))
    y = np.ones((3, 1))
    probe = state_gradients(model, x, y)
    oracle = unrolled_state_gradients(chain(model), x, y, mse)
    for p, o in zip(probe, oracle):
        assert relative_error(p, o) < F64_TOL


def test_stacked_mixed_cells_all_layers_in_one_pass():
    model = keras.Sequential(
        [
            keras.Input((15, 2), dtype="float64"),
            keras.layers.SimpleRNN(4, return_sequences=True, dtype="float64"),
            keras.layers.LSTM(5, return_sequences=True, dtype="float64"),
            keras.layers.GRU(3, dtype="float64"),
            keras.layers.Dense(2, dtype="float64"),
        ]
    )
    x = np.random.default_rng(1).normal(size=(4, 15, 2))
    y = np.zeros((4, 2))
    probe = state_gradients(model, x, y, state="all")
    oracle = unrolled_state_gradients(chain(model), x, y, mse, state="all")
    assert [p.shape for p in probe] == [(4, 15, 4), (4, 15, 10), (4, 15, 3)]
    for p, o in zip(probe, oracle):
        assert relative_error(p, o) < F64_TOL


def test_functional_dense_lstm_gru_dense_built_without_rnngrad():
    inputs = keras.Input((12, 3))
    h = keras.layers.Dense(8, activation="relu")(inputs)
    h = keras.layers.LSTM(6, return_sequences=True)(h)
    h = keras.layers.GRU(5)(h)
    outputs = keras.layers.Dense(1)(h)
    model = keras.Model(inputs, outputs)
    x = np.random.default_rng(2).normal(size=(6, 12, 3)).astype("float32")
    y = np.zeros((6, 1), "float32")
    norms = state_gradient_norms(model, x, y)
    oracle = unrolled_state_gradients(chain(model), x, y, mse)
    assert norms.shape == (2, 12)
    for row, o in zip(norms, oracle):
        np.testing.assert_allclose(row, np.linalg.norm(o, axis=-1).mean(0), rtol=F32_TOL)


def test_nested_sequential_inside_functional():
    inner = keras.Sequential(
        [keras.layers.SimpleRNN(4, return_sequences=True), keras.layers.LSTM(3)]
    )
    inputs = keras.Input((10, 2))
    outputs = keras.layers.Dense(1)(inner(inputs))
    model = keras.Model(inputs, outputs)
    x = np.random.default_rng(3).normal(size=(5, 10, 2)).astype("float32")
    y = np.ones((5, 1), "float32")
    probe = state_gradients(model, x, y)
    oracle = unrolled_state_gradients(chain(model), x, y, mse)
    assert len(probe) == 2
    for p, o in zip(probe, oracle):
        assert relative_error(p, o) < F32_TOL


def test_sequence_classifier_with_sparse_categorical_crossentropy():
    model = keras.Sequential(
        [
            keras.Input((18, 4)),
            keras.layers.GRU(8, return_sequences=True),
            keras.layers.Dense(5, activation="softmax"),
        ]
    )
    rng = np.random.default_rng(4)
    x = rng.normal(size=(6, 18, 4)).astype("float32")
    y = rng.integers(0, 5, size=(6, 18))

    def per_example(y_true, out):
        return tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y_true, out), axis=1)

    probe = state_gradients(model, x, y, loss="sparse_categorical_crossentropy")[0]
    oracle = unrolled_state_gradients(chain(model), x, y, per_example)[0]
    assert relative_error(probe, oracle) < F32_TOL


@pytest.mark.parametrize(
    "activation, loss",
    [
        ("softmax", "categorical_crossentropy"),
        (None, keras.losses.CategoricalCrossentropy(from_logits=True)),
        ("sigmoid", "binary_crossentropy"),
        (None, keras.losses.BinaryCrossentropy(from_logits=True)),
    ],
)
def test_cross_entropies_take_logits_or_probabilities_from_the_loss(activation, loss):
    model = rnngrad.build_rnn("lstm", 6, input_dim=2, output_dim=3, output_activation=activation)
    x, _ = adding_problem(4, 20, seed=5)
    y = np.eye(3, dtype="float32")[[0, 1, 2, 0]]
    if isinstance(loss, str):  # a name: Keras's function with its defaults (probabilities)
        per_example = keras.losses.get(loss)
    else:
        per_example = keras_per_example(loss)
    oracle = unrolled_state_gradients(chain(model), x, y, per_example)[0]
    probe = state_gradients(model, x, y, loss=loss)[0]
    assert relative_error(probe, oracle) < F32_TOL


def test_callable_loss_and_no_targets():
    model = rnngrad.build_rnn("gru", 6, input_dim=2, output_dim=2)
    x, _ = adding_problem(4, 20, seed=6)

    def half_squared_norm(_, out):
        return 0.5 * tf.reduce_sum(tf.square(out), axis=-1)

    oracle = unrolled_state_gradients(chain(model), x, None, half_squared_norm)[0]
    assert relative_error(state_gradients(model, x)[0], oracle) < F32_TOL
    zeros = np.zeros((4, 2), "float32")
    via_callable = state_gradients(model, x, zeros, loss=half_squared_norm)[0]
    assert relative_error(via_callable, oracle) < F32_TOL


def test_norms_are_per_example_and_do_not_shrink_with_batch_size():
    model = rnngrad.build_rnn("simple", 8, input_dim=2)
    x, y = adding_problem(6, 30, seed=7)
    whole = state_gradient_norms(model, x, y)
    one_by_one = np.mean(
        [state_gradient_norms(model, x[i : i + 1], y[i : i + 1]) for i in range(6)], 0
    )
    np.testing.assert_allclose(whole, one_by_one, rtol=1e-5)


@pytest.mark.parametrize("rho", [0.7, 1.0, 1.1])
def test_linear_rnn_with_scaled_orthogonal_matrix_gives_rho_to_the_lag(rho):
    model = rnngrad.build_rnn(
        "simple", 16, input_dim=2, activation="linear", recurrent_gain=rho, dtype="float64"
    )
    x, y = adding_problem(4, 80, seed=8)
    ratio = rnngrad.profiles.gradient_ratio(state_gradient_norms(model, x, y))[0]
    expected = rnngrad.theory.linear_rnn_gradient_ratio(rho, rnngrad.profiles.lags(80))
    np.testing.assert_allclose(ratio, expected, rtol=1e-10)


@pytest.mark.integration
def test_xla_and_graph_paths_agree_and_compiled_probe_is_cached():
    model = rnngrad.build_rnn("lstm", 8, input_dim=2, layers=2)
    x, y = adding_problem(4, 25, seed=9)
    graph = state_gradient_norms(model, x, y, jit_compile=False)
    xla = state_gradient_norms(model, x, y, jit_compile=True)
    np.testing.assert_allclose(graph, xla, rtol=1e-4)
    cache = _engine._CACHE[model]
    before = {key: (entry.graph, entry.xla) for key, entry in cache.items()}
    state_gradient_norms(model, x, y, jit_compile=False)
    after = {key: (entry.graph, entry.xla) for key, entry in cache.items()}
    assert after == before  # no new compiled function for a repeated call


def test_probe_follows_weight_updates():
    model = rnngrad.build_rnn("simple", 6, input_dim=2, dtype="float64")
    x, y = adding_problem(3, 15, seed=10)
    state_gradient_norms(model, x, y)  # compile with the old weights
    layer = model.get_layer("simple_1")
    layer.cell.recurrent_kernel.assign(layer.cell.recurrent_kernel.numpy() * 0.5)
    oracle = unrolled_state_gradients(chain(model), x, y, mse)[0]
    assert relative_error(state_gradients(model, x, y)[0], oracle) < F64_TOL


def test_return_state_and_initial_state_are_honoured():
    inputs = keras.Input((10, 2), dtype="float64")
    lstm = keras.layers.LSTM(4, return_sequences=True, return_state=True, dtype="float64")
    gru = keras.layers.GRU(4, dtype="float64")
    readout = keras.layers.Dense(1, dtype="float64")
    seq, h, c = lstm(inputs)
    model = keras.Model(inputs, readout(gru(seq, initial_state=h) + c))
    x = np.random.default_rng(11).normal(size=(3, 10, 2))
    y = np.zeros((3, 1))
    with tf.GradientTape() as tape:  # the same graph, unrolled by hand
        seq_, lstm_states, (h_, c_) = unroll(lstm, tf.constant(x), tape)
        out_, gru_states, _ = unroll(gru, seq_, tape, initial_state=[h_])
        total = tf.reduce_sum(mse(y, readout(out_ + c_)))
    oracle = tape.gradient(total, [lstm_states, gru_states])
    probe = state_gradients(model, x, y)
    for p, o in zip(probe, oracle):
        assert relative_error(p, tf.stack(o[0], axis=1)) < F64_TOL


def test_stateful_layers_raise_value_error():
    model = keras.Sequential(
        [
            keras.Input((10, 2), batch_size=2),
            keras.layers.SimpleRNN(4, stateful=True, name="memory"),
            keras.layers.Dense(1),
        ]
    )
    x = np.zeros((2, 10, 2), "float32")
    with pytest.raises(ValueError, match=r"'memory'.*stateful"):
        state_gradient_norms(model, x, np.zeros((2, 1)))


def test_cell_state_of_a_layer_without_one_raises():
    model = rnngrad.build_rnn("gru", 4, input_dim=2)
    with pytest.raises(ValueError, match=r"state='c'.*'gru_1'"):
        state_gradient_norms(model, np.zeros((2, 5, 2)), np.zeros((2, 1)), state="c")


def test_model_without_recurrent_layer_raises():
    model = keras.Sequential([keras.Input((5, 2)), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="no recurrent"):
        state_gradient_norms(model, np.zeros((2, 5, 2)), np.zeros((2, 5, 1)))


def test_global_gradient_norm_equals_a_tape_over_the_weights():
    model = rnngrad.build_rnn("lstm", 6, input_dim=2, layers=2)
    x, y = adding_problem(8, 20, seed=12)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(mse(y, model(x)))
    grads = tape.gradient(loss, model.trainable_variables)
    expected = np.sqrt(sum(float(tf.reduce_sum(g.numpy().astype(np.float64) ** 2)) for g in grads))
    assert rnngrad.probes.global_gradient_norm(model, x, y) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("backwards", [False, True])
def test_masked_lstm_cell_state_gradients_are_those_of_the_carried_state(backwards):
    # Reference: Keras's LSTM equations in float64, eps_c added to c_t before h_t is formed
    # at a step that runs, and to the carried c at a masked step (as eps_h to the carried
    # h); examples masked in the middle (2, 3: leading steps) and at the end (0, 1)
    steps, units = 9, 4
    rng = np.random.default_rng(5)
    x = rng.normal(size=(5, steps, 3))
    mask = np.ones((5, steps), bool)
    mask[:2, 6:] = False
    mask[2:4, :3] = False
    x[~mask] = 0.0
    y = rng.normal(size=(5, 1))
    keras.utils.set_random_seed(2)
    inputs = keras.Input((steps, 3), dtype="float64")
    lstm = keras.layers.LSTM(
        units, go_backwards=backwards, bias_initializer="random_normal", dtype="float64"
    )
    dense = keras.layers.Dense(1, dtype="float64")
    model = keras.Model(inputs, dense(lstm(keras.layers.Masking(dtype="float64")(inputs))))
    model.compile(loss="mse")
    cell = lstm.cell
    order = range(steps - 1, -1, -1) if backwards else range(steps)
    with tf.GradientTape(persistent=True) as tape:
        h = c = output = tf.zeros((5, units), tf.float64)
        perturbations = {}
        for t in order:
            z = x[:, t] @ cell.kernel + h @ cell.recurrent_kernel + cell.bias
            zi, zf, zc, zo = tf.split(z, 4, axis=-1)
            eps_h, eps_c = tf.zeros_like(h), tf.zeros_like(c)
            tape.watch([eps_h, eps_c])
            perturbations[t] = (eps_h, eps_c)
            c_new = tf.sigmoid(zf) * c + tf.sigmoid(zi) * tf.tanh(zc) + eps_c
            h_new = tf.sigmoid(zo) * tf.tanh(c_new)
            runs = mask[:, t : t + 1]
            c = tf.where(runs, c_new, c + eps_c)
            h = tf.where(runs, h_new, h) + eps_h
            output = tf.where(runs, h, output)  # a masked step repeats the last output
        loss = tf.reduce_sum(tf.reduce_mean(tf.square(dense(output) - y), axis=-1))
    expected = np.zeros((5, steps, 2 * units))
    for t, (eps_h, eps_c) in perturbations.items():
        expected[:, t] = np.concatenate(tape.gradient(loss, [eps_h, eps_c]), axis=-1)
    (probe,) = state_gradients(model, x, y, state="all")
    assert np.abs(expected[~mask][:, units:]).max() > 0  # the carried c matters later
    assert np.max(np.abs(probe - expected)) < 1e-9 * np.max(np.abs(expected))
