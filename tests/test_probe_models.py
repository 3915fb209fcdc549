"""The models people train: Bidirectional, go_backwards, masks, several inputs, tf.data and
batches; each against an eager unroll of the model's own cells."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import rnngrad
from rnngrad import _engine
from rnngrad.probes import gradient_profiles, state_gradient_norms, state_gradients
from tests.oracles import chain, keras_per_example, relative_error, unroll, unrolled_state_gradients

F32_TOL = 1e-3
MSE = keras_per_example(keras.losses.MeanSquaredError())
RNG = np.random.default_rng(1)


def masked_mean(gradients, mask):
    """The probe's row: mean over the examples unmasked at t; NaN where none is."""
    norms = np.linalg.norm(gradients, axis=-1)
    counts = mask.sum(axis=0)
    with np.errstate(invalid="ignore"):
        return np.where(counts > 0, (norms * mask).sum(axis=0) / np.maximum(counts, 1), np.nan)


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave"])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_bidirectional_rows_equal_an_unroll_of_both_directions(merge_mode, return_sequences):
    layers = [
        keras.layers.Bidirectional(
            keras.layers.LSTM(4, return_sequences=return_sequences),
            merge_mode=merge_mode,
            name="bi",
        ),
    ]
    if return_sequences:
        layers.append(keras.layers.GlobalAveragePooling1D())
    model = keras.Sequential([keras.Input((9, 3)), *layers, keras.layers.Dense(2)])
    x = RNG.normal(size=(4, 9, 3)).astype("float32")
    y = RNG.normal(size=(4, 2)).astype("float32")
    oracle = unrolled_state_gradients(chain(model), x, y, MSE)
    probe = state_gradients(model, x, y)
    assert len(probe) == 2
    for p, o in zip(probe, oracle):
        assert relative_error(p, o) < F32_TOL
    names = gradient_profiles(model, x, y).names
    assert names == ["bi (forward)", "bi (backward)"]


@pytest.mark.integration
def test_the_text_classifier_people_copy_two_stacked_bidirectional_lstms_with_masking():
    vocabulary, steps = 30, 14
    model = keras.Sequential(
        [
            keras.Input((steps,), dtype="int32"),
            keras.layers.Embedding(vocabulary, 8, mask_zero=True),
            keras.layers.Bidirectional(keras.layers.LSTM(6, return_sequences=True), name="b1"),
            keras.layers.Bidirectional(keras.layers.LSTM(5), name="b2"),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(loss="binary_crossentropy")
    lengths = np.array([14, 9, 5, 11, 3])
    x = RNG.integers(1, vocabulary, size=(5, steps))
    x[np.arange(steps)[None, :] >= lengths[:, None]] = 0  # right padding
    y = RNG.integers(0, 2, size=(5, 1)).astype("float32")
    oracle = unrolled_state_gradients(chain(model), x, y, keras.losses.binary_crossentropy)
    probe = state_gradients(model, x, y)
    mask = x != 0
    norms = state_gradient_norms(model, x, y)
    assert len(probe) == 4 and norms.shape == (4, steps)
    for p, o, row in zip(probe, oracle, norms):
        assert relative_error(p[mask], o[mask]) < F32_TOL  # the counted entries
        np.testing.assert_allclose(row, masked_mean(o, mask), rtol=F32_TOL)


@pytest.mark.parametrize("padding", ["left", "right"])
def test_masking_layer_left_or_right_padding_equals_a_masked_unroll(padding):
    steps, lengths = 12, np.array([12, 7, 4])
    x = RNG.normal(size=(3, steps, 2)).astype("float32")
    position = np.arange(steps)[None, :]
    pad = (
        position >= lengths[:, None] if padding == "right" else position < steps - lengths[:, None]
    )
    x[pad] = 0.0
    model = keras.Sequential(
        [
            keras.Input((steps, 2)),
            keras.layers.Masking(0.0),
            keras.layers.GRU(5, return_sequences=True),
            keras.layers.SimpleRNN(4),
            keras.layers.Dense(1),
        ]
    )
    y = np.ones((3, 1), "float32")
    oracle = unrolled_state_gradients(chain(model), x, y, MSE)
    norms = state_gradient_norms(model, x, y)
    for row, o in zip(norms, oracle):
        np.testing.assert_allclose(row, masked_mean(o, ~pad), rtol=F32_TOL)


def test_a_step_masked_in_every_example_is_nan_not_vanished():
    x = RNG.normal(size=(2, 8, 2)).astype("float32")
    x[:, 5:] = 0.0  # both examples end at step 5
    model = keras.Sequential(
        [
            keras.Input((8, 2)),
            keras.layers.Masking(0.0),
            keras.layers.LSTM(4),
            keras.layers.Dense(1),
        ]
    )
    norms = state_gradient_norms(model, x, np.zeros((2, 1)))[0]
    assert np.all(np.isnan(norms[5:])) and np.all(np.isfinite(norms[:5]))


def test_go_backwards_layer_rows_are_in_input_time():
    model = keras.Sequential(
        [keras.Input((10, 2)), keras.layers.GRU(4, go_backwards=True), keras.layers.Dense(1)]
    )
    x = RNG.normal(size=(3, 10, 2)).astype("float32")
    y = np.zeros((3, 1), "float32")
    oracle = unrolled_state_gradients(chain(model), x, y, MSE)[0]
    probe = state_gradients(model, x, y)[0]
    assert relative_error(probe, oracle) < F32_TOL
    norms = state_gradient_norms(model, x, y)[0]
    assert norms[0] > norms[-1]  # the last processed step is t = 1: nearest the loss


def test_multi_input_models_take_lists_and_dicts():
    lstm, side, join, head = (
        keras.layers.LSTM(6),
        keras.layers.Dense(3),
        keras.layers.Concatenate(),
        keras.layers.Dense(1),
    )
    sequence, static = keras.Input((10, 3), name="sequence"), keras.Input((4,), name="static")
    model = keras.Model([sequence, static], head(join([lstm(sequence), side(static)])))
    xs = RNG.normal(size=(5, 10, 3)).astype("float32")
    xt = RNG.normal(size=(5, 4)).astype("float32")
    y = np.zeros((5, 1), "float32")
    with tf.GradientTape() as tape:  # the same graph, the LSTM unrolled by hand
        out, tensors, _ = unroll(lstm, tf.constant(xs), tape)
        total = tf.reduce_sum(MSE(y, head(join([out, side(xt)]))))
    oracle = np.stack(tape.gradient(total, tensors[0]), axis=1)
    by_list = state_gradients(model, [xs, xt], y)[0]
    by_dict = state_gradients(model, {"sequence": xs, "static": xt}, y)[0]
    assert relative_error(by_list, oracle) < F32_TOL
    np.testing.assert_array_equal(by_list, by_dict)
    with pytest.raises(ValueError, match="missing static"):
        state_gradients(model, {"sequence": xs}, y)


@pytest.mark.integration
def test_batches_and_datasets_give_the_mean_over_everything():
    model = rnngrad.build_rnn("lstm", 6, input_dim=2, layers=2)
    x, y = rnngrad.tasks.adding_problem(21, 15, seed=2)
    whole = state_gradient_norms(model, x, y)
    np.testing.assert_allclose(state_gradient_norms(model, x, y, batch_size=8), whole, rtol=1e-5)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(5)
    np.testing.assert_allclose(state_gradient_norms(model, dataset), whole, rtol=1e-5)
    x_only = tf.data.Dataset.from_tensor_slices(x).batch(10)
    np.testing.assert_allclose(
        state_gradient_norms(model, x_only), state_gradient_norms(model, x), rtol=1e-5
    )
    gradients = state_gradients(model, x, y, batch_size=8)
    assert [g.shape for g in gradients] == [(21, 15, 6), (21, 15, 6)]
    with pytest.raises(TypeError, match="y must be None"):
        state_gradient_norms(model, dataset, y)


def test_no_retracing_for_repeated_shapes_including_a_partial_last_batch():
    model = rnngrad.build_rnn("gru", 5, input_dim=2)
    x, y = rnngrad.tasks.adding_problem(20, 12, seed=3)
    for _ in range(3):
        state_gradient_norms(model, x, y, batch_size=8)  # 8, 8, 4
    entries = list(_engine._CACHE[model].values())
    assert len(entries) == 1  # one signature: any batch size
    compiled = [c for c in (entries[0].graph, entries[0].xla) if c is not None]
    assert compiled and all(c.function.experimental_get_tracing_count() == 1 for c in compiled)
