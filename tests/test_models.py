"""build_rnn builds stock Keras models with the requested, seeded initialization."""

import keras
import numpy as np
import pytest

import rnngrad
from rnngrad.models import build_rnn, recurrent_init_matrix, recurrent_layers, recurrent_matrix
from rnngrad.theory import max_singular_value, spectral_radius


def test_shapes_and_stock_layers():
    model = build_rnn("gru", 8, input_dim=3, output_dim=2, layers=3)
    assert [type(layer).__name__ for layer in model.layers] == [
        "InputLayer",
        "GRU",
        "GRU",
        "GRU",
        "Dense",
    ]
    assert model(np.zeros((4, 7, 3))).shape == (4, 2)
    seq = build_rnn("lstm", 8, input_dim=3, output_dim=5, sequence_output=True)
    assert seq(np.zeros((4, 7, 3))).shape == (4, 7, 5)


@pytest.mark.parametrize("cell", ["simple", "lstm", "gru"])
@pytest.mark.parametrize("name", ["orthogonal", "identity", "normal", "glorot_uniform"])
def test_every_gate_block_is_gain_times_the_named_initializer(cell, name):
    model = build_rnn(cell, 32, input_dim=2, recurrent_initializer=name, recurrent_gain=0.8, seed=5)
    layer = recurrent_layers(model)[0]
    gates = rnngrad.models.GATES[cell]
    blocks = [recurrent_matrix(layer, None if cell == "simple" else g) for g in gates]
    for block in blocks:
        if name == "orthogonal":
            np.testing.assert_allclose(block @ block.T, 0.64 * np.eye(32), atol=1e-5)
        elif name == "identity":
            np.testing.assert_allclose(block, 0.8 * np.eye(32), atol=1e-7)
        elif name == "normal":
            assert np.std(block) == pytest.approx(0.8 / np.sqrt(32), rel=0.1)
        else:
            assert np.abs(block).max() <= 0.8 * np.sqrt(3 / 32) + 1e-6
    if len(blocks) > 1 and name != "identity":
        assert not np.allclose(blocks[0], blocks[1])  # blocks are drawn independently


def test_book_convention_is_the_transpose_of_keras_recurrent_kernel():
    w_h = np.arange(9.0).reshape(3, 3) / 10
    model = build_rnn("simple", 3, input_dim=1, recurrent_initializer=w_h, dtype="float64")
    layer = model.get_layer("simple_1")
    np.testing.assert_array_equal(recurrent_matrix(layer), w_h)
    np.testing.assert_array_equal(layer.cell.recurrent_kernel.numpy(), w_h.T)
    # one step from h_0 = e_1 with zero input gives tanh(W_h e_1): the column convention
    h1 = keras.ops.convert_to_numpy(layer.cell(np.zeros((1, 1)), [np.array([[1.0, 0.0, 0.0]])])[0])
    np.testing.assert_allclose(
        h1[0], np.tanh(w_h @ np.array([1.0, 0, 0]) + layer.cell.bias.numpy())
    )


def test_forget_bias_sets_the_lstm_forget_block():
    model = build_rnn("lstm", 4, input_dim=2, forget_bias=-2.0)
    bias = model.get_layer("lstm_1").cell.bias.numpy()
    np.testing.assert_array_equal(bias[4:8], -2.0)
    np.testing.assert_array_equal(np.delete(bias, range(4, 8)), 0.0)


def test_same_seed_same_weights_other_seed_other_weights():
    a = build_rnn("lstm", 6, input_dim=2, layers=2, seed=7)
    b = build_rnn("lstm", 6, input_dim=2, layers=2, seed=7)
    c = build_rnn("lstm", 6, input_dim=2, layers=2, seed=8)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert not all(np.array_equal(wa, wc) for wa, wc in zip(a.get_weights(), c.get_weights()))


def test_same_seed_same_profile():
    x, y = rnngrad.tasks.adding_problem(4, 30, seed=0)
    first = rnngrad.state_gradient_norms(build_rnn("gru", 8, input_dim=2, seed=3), x, y)
    second = rnngrad.state_gradient_norms(build_rnn("gru", 8, input_dim=2, seed=3), x, y)
    np.testing.assert_array_equal(first, second)


def test_saves_and_loads_without_custom_objects(tmp_path):
    model = build_rnn("lstm", 5, input_dim=2, recurrent_gain=0.5)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    x = np.random.default_rng(0).normal(size=(2, 6, 2)).astype("float32")
    np.testing.assert_allclose(model(x), loaded(x), rtol=1e-6)


def test_initializer_statistics_match_their_descriptions():
    q = recurrent_init_matrix("orthogonal", 200, seed=0)
    assert spectral_radius(q) == pytest.approx(1.0) and max_singular_value(q) == pytest.approx(1.0)
    g = recurrent_init_matrix("normal", 200, seed=0)
    assert spectral_radius(g) == pytest.approx(1.0, abs=0.1)  # circular law
    assert max_singular_value(g) == pytest.approx(2.0, abs=0.15)  # Marchenko-Pastur edge


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(cell="rnn"), ValueError, "cell must be one of"),
        (dict(units=0), ValueError, "units must be >= 1"),
        (dict(units=3.5), TypeError, "units must be an integer"),
        (dict(input_dim=0), ValueError, "input_dim"),
        (dict(layers=0), ValueError, "layers must be >= 1"),
        (dict(output_dim=-1), ValueError, "output_dim"),
        (dict(recurrent_initializer="he"), ValueError, "recurrent_initializer must be one of"),
        (dict(recurrent_initializer=np.eye(3)), ValueError, r"shape \(4, 4\)"),
        (dict(recurrent_gain=float("nan")), ValueError, "recurrent_gain must be finite"),
        (dict(activation="swishy"), ValueError, "activation must name a Keras activation"),
        (dict(dtype="float16"), ValueError, "dtype"),
    ],
)
def test_bad_arguments_are_named(kwargs, error, match):
    arguments = dict(cell="simple", units=4, input_dim=2) | kwargs
    cell, units = arguments.pop("cell"), arguments.pop("units")
    with pytest.raises(error, match=match):
        build_rnn(cell, units, **arguments)


def test_recurrent_matrix_rejects_other_layers():
    with pytest.raises(TypeError, match="SimpleRNN, LSTM or GRU"):
        recurrent_matrix(keras.layers.Dense(3))
    with pytest.raises(ValueError, match="gate must be one of"):
        recurrent_matrix(build_rnn("lstm", 3, input_dim=1).get_layer("lstm_1"))


# ------------------------------------------------------- residual stacks, chrono init, W_x init


@pytest.mark.parametrize("sequence_output", [False, True])
def test_residual_stack_adds_each_layers_input_to_its_output(sequence_output):
    model = build_rnn(
        "simple", 5, input_dim=2, layers=3, residual=True, sequence_output=sequence_output
    )
    assert [type(layer).__name__ for layer in model.layers].count("Add") == 2
    x = np.random.default_rng(0).normal(size=(3, 7, 2)).astype("float32")
    rnn = [model.get_layer(f"simple_{i}") for i in (1, 2, 3)]
    h1 = rnn[0](x)
    h2 = rnn[1](h1) + h1  # the layers are called on their own: the independent reference
    last = rnn[2](h2)
    h3 = last + (h2 if sequence_output else h2[:, -1, :])
    expected = model.get_layer("readout")(h3)
    np.testing.assert_allclose(model(x), expected, rtol=1e-5, atol=1e-6)


def test_residual_models_save_load_and_probe(tmp_path):
    model = build_rnn("gru", 4, input_dim=2, layers=2, residual=True)
    model.save(tmp_path / "r.keras")
    loaded = keras.models.load_model(tmp_path / "r.keras", safe_mode=True)
    x, y = rnngrad.tasks.adding_problem(4, 9, seed=0)
    np.testing.assert_allclose(model(x), loaded(x), rtol=1e-6)
    assert rnngrad.state_gradient_norms(loaded, x, y).shape == (2, 9)


def test_chrono_biases_are_logs_of_uniform_memory_lengths():
    b = rnngrad.models.chrono_biases(50, 20000, seed=0)
    u = np.exp(b)
    assert u.min() >= 1.0 and u.max() <= 49.0
    assert u.mean() == pytest.approx(25.0, rel=0.02)  # U(1, 49): mean 25, sd 13.9 / sqrt(n)
    np.testing.assert_array_equal(b, rnngrad.models.chrono_biases(50, 20000, seed=0))


def test_chrono_initialization_sets_lstm_and_gru_gate_biases():
    lstm = build_rnn("lstm", 6, input_dim=2, layers=2, chrono_length=30, forget_bias=5.0, seed=1)
    for index, layer in enumerate(recurrent_layers(lstm)):
        bias = layer.cell.bias.numpy()
        i, f, c, o = np.split(bias, 4)
        expected = rnngrad.models.chrono_biases(30, 6, seed=rnngrad.models._subseed(1, index, 9))
        np.testing.assert_allclose(f, expected, rtol=1e-6)  # forget_bias is ignored
        np.testing.assert_allclose(i, -f)
        np.testing.assert_array_equal(np.concatenate([c, o]), 0.0)
    gru = build_rnn("gru", 6, input_dim=2, chrono_length=30, seed=1)
    bias = gru.get_layer("gru_1").cell.bias.numpy()  # (2, 18): input row, recurrent row
    z_expected = rnngrad.models.chrono_biases(30, 6, seed=rnngrad.models._subseed(1, 0, 9))
    np.testing.assert_allclose(bias[0, :6], z_expected, rtol=1e-6)  # z multiplies h_{t-1}
    np.testing.assert_array_equal(bias[0, 6:], 0.0)
    np.testing.assert_array_equal(bias[1], 0.0)


def test_kernel_initializer_by_name_or_instance_is_seeded():
    a = build_rnn("simple", 4, input_dim=3, kernel_initializer="random_normal", seed=2)
    b = build_rnn("simple", 4, input_dim=3, kernel_initializer="random_normal", seed=2)
    kernel = a.get_layer("simple_1").cell.kernel.numpy()
    np.testing.assert_array_equal(kernel, b.get_layer("simple_1").cell.kernel.numpy())
    assert np.std(kernel) < 0.2  # Keras's RandomNormal: stddev 0.05, not Glorot's ~0.6
    small = keras.initializers.RandomNormal(stddev=1e-3)
    c = build_rnn("simple", 4, input_dim=3, kernel_initializer=small, layers=2)
    assert np.abs(c.get_layer("simple_2").cell.kernel.numpy()).max() < 1e-2
    zeros = build_rnn("simple", 4, input_dim=3, kernel_initializer="zeros")
    np.testing.assert_array_equal(zeros.get_layer("simple_1").cell.kernel.numpy(), 0.0)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(chrono_length=2, cell="lstm"), ValueError, "chrono_length must be >= 3"),
        (dict(chrono_length=10), ValueError, "chrono_length applies to 'lstm' and 'gru'"),
        (dict(residual="yes"), TypeError, "residual must be True or False"),
        (dict(kernel_initializer="nope"), ValueError, "kernel_initializer must name"),
        (dict(kernel_initializer=3), TypeError, "kernel_initializer must be"),
    ],
)
def test_new_arguments_are_checked(kwargs, error, match):
    arguments = dict(cell="simple", units=4, input_dim=2) | kwargs
    cell, units = arguments.pop("cell"), arguments.pop("units")
    with pytest.raises(error, match=match):
        build_rnn(cell, units, **arguments)


@pytest.mark.parametrize("cell", ["simple", "lstm", "gru"])
def test_keras_default_is_one_orthogonal_kernel_like_a_stock_layer(cell):
    model = build_rnn(cell, 8, input_dim=2, recurrent_initializer="keras", recurrent_gain=0.5)
    kernel = recurrent_layers(model)[0].cell.recurrent_kernel.numpy()  # (8, gates * 8)
    np.testing.assert_allclose(kernel @ kernel.T, 0.25 * np.eye(8), atol=1e-5)  # rows orthogonal
    again = build_rnn(cell, 8, input_dim=2, recurrent_initializer="keras", recurrent_gain=0.5)
    np.testing.assert_array_equal(kernel, recurrent_layers(again)[0].cell.recurrent_kernel.numpy())
    if cell != "simple":  # each gate's block is a slice: singular values below 1
        block = recurrent_matrix(recurrent_layers(model)[0], rnngrad.models.GATES[cell][0])
        assert max_singular_value(block) < 0.5


def test_set_forget_bias_reaches_both_directions_and_keeps_other_weights():
    from rnngrad.models import set_forget_bias

    model = keras.Sequential(
        [
            keras.Input((5, 2)),
            keras.layers.Bidirectional(keras.layers.LSTM(3, return_sequences=True), name="bi"),
            keras.layers.GRU(2),
        ]
    )
    before = [w.numpy().copy() for w in model.weights]
    changed = set_forget_bias(model, 2.5)
    assert sorted(name.split("_lstm")[0] for name in changed) == ["backward", "forward"]
    for layer in (model.layers[0].forward_layer, model.layers[0].backward_layer):
        b = layer.cell.bias.numpy()
        np.testing.assert_array_equal(b[3:6], 2.5)
    after = [w.numpy() for w in model.weights]
    differing = [i for i, (a, b) in enumerate(zip(before, after)) if not np.array_equal(a, b)]
    assert len(differing) == 2  # the two LSTM biases, nothing else
    with pytest.raises(ValueError, match="no LSTM"):
        set_forget_bias(keras.Sequential([keras.Input((5, 2)), keras.layers.GRU(2)]), 1.0)
