"""Cases a practitioner tried on the package (a review), each a regression test: the
numbers equal Keras's own, or the package refuses with a clear message."""

import json
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import rnngrad
from rnngrad.cli import main
from rnngrad.probes import global_gradient_norm, gradient_profiles, state_gradient_norms
from tests.oracles import chain, keras_per_example, relative_error, unrolled_state_gradients

RNG = np.random.default_rng(5)
X = RNG.normal(size=(8, 10, 3)).astype("float32")
Y = np.zeros((8, 1), "float32")


def keras_norm(model, x, y):
    """The optimizer's gradient norm: Keras's compiled loss under one tape."""
    with tf.GradientTape() as tape:
        loss = model.compute_loss(x=x, y=y, y_pred=model(x, training=False))
    grads = tape.gradient(loss, model.trainable_variables)
    return np.sqrt(sum(np.sum(np.asarray(g, np.float64) ** 2) for g in grads))


def test_compiled_loss_weights_scale_the_loss_as_keras_does():
    model = keras.Sequential([keras.Input((10, 3)), keras.layers.LSTM(4), keras.layers.Dense(1)])
    model.compile(loss="mse", loss_weights=0.25)
    y = RNG.normal(size=(8, 1)).astype("float32")
    assert global_gradient_norm(model, X, y) == pytest.approx(keras_norm(model, X, y), rel=1e-5)
    assert "x 0.25" in gradient_profiles(model, X, y).loss


def test_sample_weights_in_a_dataset_are_refused():
    model = keras.Sequential([keras.Input((10, 3)), keras.layers.GRU(4), keras.layers.Dense(1)])
    dataset = tf.data.Dataset.from_tensor_slices((X, Y, np.ones(8, "float32"))).batch(8)
    with pytest.raises(ValueError, match="sample weights"):
        state_gradient_norms(model, dataset)


def test_an_unbatched_dataset_is_refused_with_the_fix():
    model = keras.Sequential([keras.Input((10, 3)), keras.layers.GRU(4), keras.layers.Dense(1)])
    dataset = tf.data.Dataset.from_tensor_slices((X, Y))  # single examples
    with pytest.raises(ValueError, match=r"got \(10, 3\).*dataset.batch\(32\)"):
        state_gradient_norms(model, dataset)
    state_gradient_norms(model, dataset.batch(4))  # batched: measured


@pytest.mark.integration
def test_an_elementwise_loss_on_a_masked_sequence_is_masked_as_keras_masks_it():
    def squared(a, b):
        return tf.square(a - b)  # (B, T, 1): Keras squeezes it to the mask's rank

    def masked_tagger():
        keras.utils.set_random_seed(1)
        return keras.Sequential(
            [
                keras.Input((10, 3)),
                keras.layers.Masking(),
                keras.layers.LSTM(3, return_sequences=True),
                keras.layers.Dense(1),
            ]
        )

    x = X.copy()
    x[0, 6:], x[1, 3:] = 0.0, 0.0
    y = RNG.normal(size=(8, 10, 1)).astype("float32")
    custom, reference = masked_tagger(), masked_tagger()
    custom.compile(loss=squared)
    reference.compile(loss="mse")
    assert global_gradient_norm(custom, x, y) == pytest.approx(keras_norm(custom, x, y), 1e-5)
    np.testing.assert_allclose(
        state_gradient_norms(custom, x, y), state_gradient_norms(reference, x, y), rtol=1e-5
    )


class TwoInputs(keras.Model):
    """A subclassed model that takes [a, b]."""

    def __init__(self):
        super().__init__()
        self.first, self.second = keras.layers.LSTM(3), keras.layers.GRU(3)
        self.head = keras.layers.Dense(1)

    def call(self, inputs):
        return self.head(tf.concat([self.first(inputs[0]), self.second(inputs[1])], -1))


@pytest.mark.integration
def test_a_subclassed_model_with_two_inputs_keeps_its_batch():
    model = TwoInputs()
    x3 = X[:3]
    model([x3, x3])
    profiles = gradient_profiles(model, [x3, x3], Y[:3])
    assert profiles.examples == 3 and len(profiles) == 2
    assert rnngrad.diagnose(model, [x3, x3], Y[:3]).batch_size == 3


def test_a_dict_input_model_takes_the_keys_it_was_built_with():
    a, b = keras.Input((10, 3), name="a"), keras.Input((10, 3), name="b")
    hidden = keras.layers.Concatenate()([keras.layers.LSTM(2)(a), keras.layers.GRU(2)(b)])
    model = keras.Model({"tokens": a, "extra": b}, keras.layers.Dense(1)(hidden))
    norms = state_gradient_norms(model, {"tokens": X, "extra": X}, Y)
    assert norms.shape == (2, 10) and np.all(np.isfinite(norms))
    with pytest.raises(ValueError, match="missing"):
        state_gradient_norms(model, {"tokens": X}, Y)


def test_float64_models_diagnose_and_monitor():
    model = keras.Sequential(
        [
            keras.Input((10, 3), dtype="float64"),
            keras.layers.GRU(3, dtype="float64"),
            keras.layers.Dense(1, dtype="float64"),
        ]
    )
    report = rnngrad.diagnose(model, X.astype("float64"), Y.astype("float64"))
    assert report.layers[0].transport[0] == pytest.approx(1.0, rel=1e-12)


@pytest.mark.parametrize(
    "layer, message",
    [
        (keras.layers.RNN([keras.layers.GRUCell(3), keras.layers.LSTMCell(4)]), "StackedRNNCells"),
        (keras.layers.SimpleRNN(3, stateful=True), "stateful"),
    ],
)
def test_refusals_are_one_clear_line(layer, message):
    model = keras.Sequential([keras.Input((10, 3), batch_size=8), layer, keras.layers.Dense(1)])
    with pytest.raises(ValueError) as error:
        state_gradient_norms(model, X, Y)
    first = str(error.value).splitlines()[0]
    assert message in first and "in user code" not in first


def test_a_runtime_error_says_what_went_wrong():
    model = keras.Sequential(
        [
            keras.Input((10,), dtype="int32"),
            keras.layers.Embedding(5, 3),
            keras.layers.GRU(2),
            keras.layers.Dense(1),
        ]
    )
    with pytest.raises(ValueError, match=r"is not in \[0, 5\)"):
        state_gradient_norms(model, np.full((2, 10), 7), np.zeros((2, 1)))
    with pytest.raises(TypeError, match="must hold integers"):
        state_gradient_norms(model, np.full((2, 10), 1.5), np.zeros((2, 1)))


def test_a_batch_masked_everywhere_is_refused_by_diagnose():
    model = keras.Sequential(
        [keras.Input((10, 3)), keras.layers.Masking(), keras.layers.LSTM(2), keras.layers.Dense(1)]
    )
    with pytest.raises(ValueError, match="every step of every example"):
        rnngrad.diagnose(model, np.zeros((4, 10, 3)), np.zeros((4, 1)))


def test_the_forget_bias_suggestion_starts_from_the_real_bias():
    model = keras.Sequential([keras.Input((30, 3)), keras.layers.LSTM(4), keras.layers.Dense(1)])
    cell = model.layers[0].cell
    bias, kernel = cell.bias.numpy(), cell.kernel.numpy()
    bias[4:8], kernel[:, 4:8] = 3.0, -3.0  # a high bias, but inputs close the gate
    cell.bias.assign(bias)
    cell.kernel.assign(kernel)
    x = np.abs(RNG.normal(size=(8, 30, 3))).astype("float32") + 1.0
    report = rnngrad.diagnose(model, x, np.zeros((8, 1)))
    layer = report.layers[0]
    assert layer.verdict == "vanishing" and layer.keep_bias == pytest.approx(3.0)
    action = next(s.action for s in report.suggestions if "forget-gate bias" in s.action)
    assert float(action.split("to about ")[1].split()[0]) > 3.0  # raise it, never lower it


def test_no_clipping_advice_for_a_model_that_already_clips():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((40, 3)),
            keras.layers.SimpleRNN(
                8,
                activation="linear",
                recurrent_initializer=keras.initializers.Orthogonal(gain=1.5),
            ),
            keras.layers.Dense(1),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(global_clipnorm=1.0), loss="mse")
    report = rnngrad.diagnose(model, RNG.normal(size=(4, 40, 3)), np.zeros((4, 1)))
    assert report.verdict == "exploding"
    assert not any("global_clipnorm" in s.action for s in report.suggestions)
    assert any("already clips (global_clipnorm=1)" in note for note in report.notes)


def test_distinct_layers_with_one_name_are_not_called_one_layer():
    # Two reloaded copies of one model, ensembled: their layers share names.
    copies = [
        keras.Sequential([keras.layers.LSTM(3, name="lstm")], name=f"copy_{i}") for i in (1, 2)
    ]
    inputs = keras.Input((10, 3))
    merged = keras.layers.Average()([copy(inputs) for copy in copies])
    model = keras.Model(inputs, keras.layers.Dense(1)(merged))
    assert gradient_profiles(model, X, Y).names == ["lstm", "lstm [2]"]


def _linear_orthogonal_report(gain: float):
    """diagnose on a linear SimpleRNN with W_h = gain * Q over 8 steps: its transport is
    gain**lag exactly, healthy within the sequence for gain 0.5 and 2."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 3)),
            keras.layers.SimpleRNN(
                8, activation="linear", recurrent_initializer=keras.initializers.Orthogonal(gain)
            ),
            keras.layers.Dense(1),
        ]
    )
    return rnngrad.diagnose(model, RNG.normal(size=(4, 8, 3)), np.zeros((4, 1)))


def test_a_short_healthy_sequence_reports_where_the_rate_would_take_it():
    report = _linear_orthogonal_report(0.5)
    layer = report.layers[0]
    assert layer.verdict == "healthy"  # 0.5**7 is above 1e-3 within the sequence
    assert layer.projected_horizon == 10  # 0.5**10 < 1e-3 <= 0.5**9
    assert "after about 10 steps" in report.summary()


def test_a_healthy_layer_that_grows_is_projected_to_explode():
    # gain 2: 2**7 = 128 is below the exploding ratio 1e3 within the sequence
    report = _linear_orthogonal_report(2.0)
    layer = report.layers[0]
    assert layer.verdict == "healthy" and layer.projected_horizon is None
    assert layer.projected_growth == 10  # 2**10 > 1e3 >= 2**9
    assert "exceed 1000 (exploding) after about 10 steps" in report.summary()


def test_a_loss_without_targets_is_refused_not_swapped():
    model = keras.Sequential([keras.Input((5, 2)), keras.layers.GRU(3), keras.layers.Dense(1)])
    x = RNG.normal(size=(4, 5, 2)).astype("float32")
    for loss in ("mse", keras.losses.BinaryCrossentropy()):
        with pytest.raises(ValueError, match="needs targets, but y is None"):
            rnngrad.state_gradient_norms(model, x, loss=loss)
    report = rnngrad.diagnose(model, x)  # no loss asked for: the target-free loss, said
    assert any("no targets were given" in note for note in report.notes)


def test_half_precision_underflow_is_warned_about():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((60, 3)),
            keras.layers.SimpleRNN(
                8,
                dtype="mixed_float16",
                recurrent_initializer=keras.initializers.Orthogonal(0.5),
            ),
            keras.layers.Dense(1, dtype="float32"),
        ]
    )
    with pytest.warns(RuntimeWarning, match="underflow float16"):
        norms = state_gradient_norms(model, RNG.normal(size=(4, 60, 3)), np.zeros((4, 1)))
    assert np.any(norms == 0)


def test_the_command_line_takes_a_multi_input_model_with_named_arrays(tmp_path, capfd, monkeypatch):
    a, b = keras.Input((10, 3), name="a"), keras.Input((10, 3), name="b")
    hidden = keras.layers.Concatenate()([keras.layers.LSTM(2)(a), keras.layers.GRU(2)(b)])
    keras.Model([a, b], keras.layers.Dense(1)(hidden)).save(tmp_path / "two.keras")
    np.savez(tmp_path / "data.npz", a=X, b=X, y=Y)
    np.savez(tmp_path / "objects.npz", x=np.array([X, "text"], dtype=object))
    monkeypatch.chdir(tmp_path)
    capfd.readouterr()
    assert main(["diagnose", "two.keras", "--json", "--data", "data.npz"]) == 0
    out, err = capfd.readouterr()
    assert len(json.loads(out)["layers"]) == 2, err
    assert main(["diagnose", "two.keras", "--json", "--data", "objects.npz"]) == 2
    _, err = capfd.readouterr()
    assert "internal" not in err and "save plain numeric arrays" in err


def test_no_stray_warning_from_an_overflowing_diagnosis():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((120, 3)),
            keras.layers.SimpleRNN(
                8, activation="linear", recurrent_initializer=keras.initializers.Orthogonal(3.0)
            ),
            keras.layers.Dense(1),
        ]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = rnngrad.diagnose(model, RNG.normal(size=(4, 120, 3)), np.zeros((4, 1)))
    assert report.verdict == "exploding"


def test_an_example_masked_at_every_step_is_named_not_blamed_on_the_replay():
    # Keras's masked mean of nothing is 0/0: the model's own output is NaN there.
    steps, features = 10, 3
    x = np.random.default_rng(0).normal(size=(6, steps, features)).astype("float32")
    x[2] = 0.0
    inputs = keras.Input((steps, features))
    hidden = keras.layers.GRU(6, return_sequences=True)(keras.layers.Masking()(inputs))
    pooled = keras.layers.GlobalAveragePooling1D()(hidden)
    model = keras.Model(inputs, keras.layers.Dense(1)(pooled))
    with pytest.raises(ValueError, match=r"not finite for example\(s\) 2 of the batch"):
        rnngrad.state_gradient_norms(model, x, np.zeros((6, 1)))


@pytest.mark.integration
def test_train_keeps_the_compiled_loss_and_refuses_datasets_clearly():
    model = keras.Sequential(
        [keras.Input((20, 2)), keras.layers.GRU(4), keras.layers.Dense(3, activation="softmax")]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    x = np.random.default_rng(0).random((32, 20, 2)).astype("float32")
    y = np.random.default_rng(1).integers(0, 3, 32)
    result = rnngrad.training.train(model, x, y, epochs=1)
    assert model.loss == "sparse_categorical_crossentropy" and np.isfinite(result.final())
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    with pytest.raises(TypeError, match=r"do not take a tf\.data\.Dataset"):
        rnngrad.training.train(model, dataset, None, epochs=1)
    assert rnngrad.global_gradient_norm is rnngrad.probes.global_gradient_norm
    assert rnngrad.gradient_profiles is rnngrad.probes.gradient_profiles


# ---------------------------------------------------- compiled probes follow the model
# (found by a practitioner review: a cached probe kept measuring what it was traced for)


def _keras_global_norm(model, x, y):
    """The norm of the gradient Keras's optimizer would see (compiled loss)."""
    with tf.GradientTape() as tape:
        value = model.compute_loss(x=x, y=y, y_pred=model(x))
    grads = tape.gradient(value, model.trainable_variables)
    # dense: an Embedding's IndexedSlices repeat indices, whose norm is not the gradient's
    dense = [
        tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)  # None: not reached
        for g, v in zip(grads, model.trainable_variables)
    ]
    return float(tf.linalg.global_norm(dense))


def _small_lstm():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 3))
    hidden = keras.layers.LSTM(6, name="enc")(inputs)
    return keras.Model(inputs, keras.layers.Dense(1, name="head")(hidden))


def test_two_loss_objects_with_the_same_config_are_not_confused():
    class ScaledMSE(keras.losses.Loss):
        def __init__(self, scale):
            super().__init__(name="scaled_mse")
            self.scale = scale  # left out of get_config, as custom losses often do

        def call(self, y_true, y_pred):
            return self.scale * tf.reduce_mean(tf.square(y_true - y_pred), axis=-1)

    model = _small_lstm()
    x = np.random.default_rng(0).normal(size=(4, 12, 3)).astype("float32")
    y = np.ones((4, 1), "float32")
    one = rnngrad.state_gradient_norms(model, x, y, loss=ScaledMSE(1.0))
    ten = rnngrad.state_gradient_norms(model, x, y, loss=ScaledMSE(10.0))
    np.testing.assert_allclose(ten, 10 * one, rtol=1e-5)


@pytest.mark.integration
def test_freezing_a_layer_changes_the_global_norm_as_keras_computes_it():
    model = _small_lstm()
    x = np.random.default_rng(1).normal(size=(4, 12, 3)).astype("float32")
    y = np.ones((4, 1), "float32")
    model.compile("sgd", "mse")
    before = rnngrad.global_gradient_norm(model, x, y)
    model.get_layer("enc").trainable = False
    model.compile("sgd", "mse")
    expected = _keras_global_norm(model, x, y)
    after = rnngrad.global_gradient_norm(model, x, y)
    assert abs(after - expected) < 1e-5 * expected
    assert after < before
    assert abs(rnngrad.diagnose(model, x, y).global_gradient_norm - expected) < 1e-5 * expected


def test_a_layer_added_to_a_sequential_model_is_probed():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((12, 3)), keras.layers.LSTM(6, return_sequences=True)])
    x = np.random.default_rng(2).normal(size=(4, 12, 3)).astype("float32")
    first = rnngrad.state_gradient_norms(model, x, loss="mse", y=np.zeros((4, 12, 6)))
    assert first.shape == (1, 12)
    model.add(keras.layers.GRU(5))
    model.add(keras.layers.Dense(1))
    second = rnngrad.state_gradient_norms(model, x, np.zeros((4, 1), "float32"), loss="mse")
    assert second.shape == (2, 12)


def test_a_model_whose_output_overflowed_is_diagnosed_exploding():
    # A ReLU RNN with a recurrent gain of 50: finite weights, an output that overflows
    # (the state of a diverged run). Its transport through inf states reads as vanishing.
    keras.utils.set_random_seed(0)
    inputs = keras.Input((30, 2))
    hidden = keras.layers.SimpleRNN(
        16, activation="relu", recurrent_initializer=keras.initializers.Orthogonal(gain=50.0)
    )(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1)(hidden))
    x = np.abs(np.random.default_rng(3).normal(size=(8, 30, 2))).astype("float32") + 1.0
    y = np.zeros((8, 1), "float32")
    assert not np.all(np.isfinite(model(x).numpy()))
    report = rnngrad.diagnose(model, x, y, loss="mse")
    assert report.verdict == "exploding"
    assert any("not finite" in note for note in report.notes)
    # the rows' decay and horizon were read through inf states: the report gives none
    assert np.isnan(report.decay_per_step) and report.horizon is None
    assert json.loads(report.to_json())["decay_per_step"] == "nan"


def test_diagnose_global_norm_with_ignore_class_is_the_optimizers():
    # Keras averages an ignore_class loss over the entries it keeps, not over examples:
    # the same-pass shortcut does not apply, and the norm must still be Keras's.
    keras.utils.set_random_seed(0)
    inputs = keras.Input((10, 3))
    hidden = keras.layers.GRU(6)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(4)(hidden))
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0)
    model.compile("sgd", loss)
    x = np.random.default_rng(4).normal(size=(8, 10, 3)).astype("float32")
    y = np.array([0, 0, 0, 1, 2, 3, 1, 2])
    expected = _keras_global_norm(model, x, y)
    got = rnngrad.diagnose(model, x, y).global_gradient_norm
    assert abs(got - expected) < 1e-5 * expected


def test_global_norm_refuses_ids_outside_the_vocabulary_clearly():
    inputs = keras.Input((6,), dtype="int32")
    hidden = keras.layers.LSTM(4)(keras.layers.Embedding(20, 3)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(1)(hidden))
    x = np.full((2, 6), 25, "int32")  # every id beyond the 20-word vocabulary
    with pytest.raises(ValueError, match="could not be computed"):
        global_gradient_norm(model, x, np.zeros((2, 1), "float32"), loss="mse")


class _Float64Subclass(keras.Model):
    def __init__(self):
        super().__init__(dtype="float64", name="float64_subclass")
        self.recurrent = keras.layers.GRU(6, dtype="float64")
        self.head = keras.layers.Dense(1, dtype="float64")

    def call(self, x, training=False):
        return self.head(self.recurrent(x))


def test_a_float64_subclassed_model_gets_its_data_in_float64():
    # a subclassed model declares no inputs: x and y must not be rounded to float32
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 12, 3)), rng.normal(size=(8, 1))
    keras.utils.set_random_seed(0)
    model = _Float64Subclass()
    model(x)
    loss_object = keras.losses.MeanSquaredError(dtype="float64")  # Keras's default: float32
    model.compile(loss=loss_object)
    oracle = unrolled_state_gradients(chain(model), x, y, keras_per_example(loss_object))[0]
    expected = np.linalg.norm(oracle, axis=-1).mean(axis=0)
    assert relative_error(rnngrad.state_gradient_norms(model, x, y)[0], expected) < 1e-12
    with tf.GradientTape() as tape:
        loss = model.compute_loss(x=x, y=y, y_pred=model(x, training=False))
    grads = tape.gradient(loss, model.trainable_variables)
    keras_norm = float(tf.linalg.global_norm(grads))
    assert rnngrad.global_gradient_norm(model, x, y) == pytest.approx(keras_norm, rel=1e-12)


@keras.saving.register_keras_serializable(package="rnngrad_tests")
class _StopGradient(keras.layers.Layer):
    def call(self, inputs):
        return keras.ops.stop_gradient(inputs)


@pytest.mark.integration
def test_weights_the_loss_does_not_reach_get_zero_gradient_not_a_crash():
    # A recurrent branch read through stop_gradient: Keras trains the model; its
    # optimizer gradient is zero for that branch's weights. The global norm equals
    # Keras's, and diagnose reports the branch as "no signal" (it crashed inside
    # TensorFlow, on Keras variables whose dtype is a string).
    keras.utils.set_random_seed(0)
    inputs = keras.Input((10, 3))
    cut = _StopGradient()(keras.layers.GRU(4, name="cut")(inputs))
    kept = keras.layers.SimpleRNN(4, name="kept")(inputs)
    outputs = keras.layers.Dense(1)(keras.layers.Concatenate()([cut, kept]))
    model = keras.Model(inputs, outputs)
    model.compile("sgd", "mse")
    x = np.random.default_rng(0).normal(size=(6, 10, 3)).astype("float32")
    y = np.ones((6, 1), "float32")
    expected = _keras_global_norm(model, x, y)
    assert abs(rnngrad.global_gradient_norm(model, x, y) - expected) < 1e-5 * expected
    report = rnngrad.diagnose(model, x, y)
    assert abs(report.global_gradient_norm - expected) < 1e-5 * expected
    verdicts = {layer.name: layer.verdict for layer in report.layers}
    assert verdicts["cut"] == "no signal" and verdicts["kept"] != "no signal", verdicts


def test_batch_size_does_not_change_the_transport():
    # each example keeps its own direction u whatever the batches (it was drawn by its
    # position inside its batch)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((20, 3)), keras.layers.GRU(6), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    x = np.random.default_rng(2).normal(size=(12, 20, 3)).astype("float32")
    y = np.ones((12, 1), "float32")
    whole = rnngrad.diagnose(model, x, y)
    for batch_size in (5, 1):
        batched = rnngrad.diagnose(model, x, y, batch_size=batch_size)
        np.testing.assert_allclose(
            batched.layers[0].transport, whole.layers[0].transport, rtol=1e-5
        )
        assert abs(batched.global_gradient_norm / whole.global_gradient_norm - 1) < 1e-5


def test_a_global_norm_batches_cannot_give_exactly_is_refused_not_averaged():
    # With reduction="sum" Keras's whole-batch gradient is the sum of the batches',
    # not their size-weighted mean: over several batches the norm is refused (and
    # diagnose reports none, with a note); in one batch it is Keras's.
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((10, 3)), keras.layers.GRU(4), keras.layers.Dense(1)])
    model.compile("sgd", keras.losses.MeanSquaredError(reduction="sum"))
    x = np.random.default_rng(0).normal(size=(12, 10, 3)).astype("float32")
    y = np.zeros((12, 1), "float32")
    expected = _keras_global_norm(model, x, y)
    assert abs(rnngrad.global_gradient_norm(model, x, y) - expected) < 1e-5 * expected
    with pytest.raises(ValueError, match="cannot be combined exactly from several batches"):
        rnngrad.global_gradient_norm(model, x, y, batch_size=6)
    report = rnngrad.diagnose(model, x, y, batch_size=6)
    assert np.isnan(report.global_gradient_norm)
    assert any("no global gradient norm" in note for note in report.notes)
    assert "not measured" in report.summary()
    assert abs(rnngrad.diagnose(model, x, y).global_gradient_norm - expected) < 1e-5 * expected


def test_a_masked_per_step_loss_over_batches_is_refused():
    # Keras divides a masked per-step loss by the unmasked entries of the whole batch
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,), dtype="int32")
    hidden = keras.layers.Embedding(10, 4, mask_zero=True)(inputs)
    hidden = keras.layers.LSTM(4, return_sequences=True)(hidden)
    model = keras.Model(inputs, keras.layers.Dense(1)(hidden))
    model.compile("sgd", "mse")
    x = np.random.default_rng(0).integers(1, 10, size=(6, 8))
    x[:3, :5] = 0  # left padding in half of the examples
    y = np.ones((6, 8, 1), "float32")
    expected = _keras_global_norm(model, x, y)
    assert abs(rnngrad.global_gradient_norm(model, x, y) - expected) < 1e-5 * expected
    with pytest.raises(ValueError, match="output is masked"):
        rnngrad.global_gradient_norm(model, x, y, batch_size=2)


def test_a_compiled_model_probed_without_targets_says_which_loss_it_differentiates():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((6, 2)), keras.layers.GRU(4), keras.layers.Dense(3, activation="softmax")]
    )
    x = np.random.default_rng(0).normal(size=(5, 6, 2)).astype("float32")
    labels = np.array([0, 1, 2, 0, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not compiled: the target-free loss, no warning
        state_gradient_norms(model, x)
    model.compile("sgd", "sparse_categorical_crossentropy")
    with pytest.warns(UserWarning, match="no targets were given: .*1/2 \\|\\|output\\|\\|\\^2"):
        without = state_gradient_norms(model, x)
    with pytest.warns(UserWarning, match="no targets were given"):
        rnngrad.state_gradients(model, x)  # the raw gradients, a bare array too
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # targets, a dataset of (x, y), or a loss named: none
        with_labels = state_gradient_norms(model, x, labels)
        batches = tf.data.Dataset.from_tensor_slices((x, labels)).batch(2)
        np.testing.assert_allclose(state_gradient_norms(model, batches), with_labels, rtol=1e-5)
        state_gradient_norms(model, x, labels, loss="sparse_categorical_crossentropy")
    assert not np.allclose(without, with_labels)
