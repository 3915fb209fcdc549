"""The real-data chapter's instruments against independent computations."""

import keras
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import rnngrad
from rnngrad.experiments.real_data import (
    accuracy,
    append_blanks,
    classifier,
    compare_models,
    last_steps_accuracy,
)
from rnngrad.tasks import sequential_digits

LOSS = "sparse_categorical_crossentropy"


@pytest.fixture(scope="module")
def rows():
    """A small row-by-row digits task: 96 training and 64 test images, 8 steps of 8."""
    (x, y), (x_test, y_test) = sequential_digits(seed=0)
    return (x[:96].reshape(-1, 8, 8), y[:96]), (x_test[:64].reshape(-1, 8, 8), y_test[:64])


def test_append_blanks_keeps_the_sequence_and_adds_zeros():
    x = np.random.default_rng(0).uniform(0.1, 1.0, size=(3, 5, 2)).astype(np.float32)
    padded = append_blanks(x, 4)
    assert padded.shape == (3, 9, 2) and padded.dtype == np.float32
    assert np.array_equal(padded[:, :5], x) and not padded[:, 5:].any()
    assert np.array_equal(append_blanks(x, 0), x)
    with pytest.raises(ValueError, match="steps must be >= 0"):
        append_blanks(x, -1)
    with pytest.raises(ValueError, match="x must have rank 3"):
        append_blanks(x[0], 1)


def test_last_steps_accuracy_is_a_logistic_regression_on_the_last_steps(rows):
    (x, y), (x_test, y_test) = rows
    got = last_steps_accuracy(rows, [1, 3, 8])
    for k, value in zip([1, 3, 8], got):
        oracle = LogisticRegression(max_iter=2000).fit(x[:, -k:].reshape(len(x), -1), y)
        assert value == oracle.score(x_test[:, -k:].reshape(len(x_test), -1), y_test)


def test_last_steps_accuracy_sees_only_the_last_steps():
    # the label sits in the first step only: a read-out of the last k < T steps guesses
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, size=400).astype(np.int32)
    x = rng.normal(size=(400, 6, 1)).astype(np.float32)
    x[:, 0, 0] = 10.0 * labels
    split = ((x[:300], labels[:300]), (x[300:], labels[300:]))
    short, full = last_steps_accuracy(split, [5, 6])
    assert full == 1.0 and short < 0.45  # chance is 0.25 (100 test examples)


def test_accuracy_is_the_share_of_correct_argmax_and_nonfinite_counts_as_wrong(rows):
    (x, y), _ = rows
    model = classifier(4)(0, input_dim=8, length=8)
    scores = keras.ops.convert_to_numpy(model(x, training=False))  # eager, independent
    assert accuracy(model, x, y) == pytest.approx(np.mean(scores.argmax(-1) == y), abs=1e-12)
    model.layers[-1].kernel.assign(np.full(model.layers[-1].kernel.shape, np.nan))
    assert accuracy(model, x, y) == 0.0
    with pytest.raises(ValueError, match="same number of examples"):
        accuracy(model, x, y[:-1])


def test_accuracy_runs_more_than_one_chunk_and_counts_every_example():
    # 1024 examples per eager call: 1100 examples take two calls, and every one counts
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1100, 5, 2)).astype("float32")
    model = classifier(4)(0, input_dim=2, length=5)
    labels = keras.ops.convert_to_numpy(model(x, training=False)).argmax(-1)
    assert accuracy(model, x, labels) == 1.0
    labels[-1] = (labels[-1] + 1) % 10  # wrong in the second chunk only
    assert accuracy(model, x, labels) == pytest.approx(1099 / 1100, abs=1e-12)


def test_classifier_builds_build_rnn_models_with_chrono_set_to_the_length():
    build = classifier(6, cell="lstm", chrono=True)
    model = build(3, input_dim=2, length=40)
    reference = rnngrad.build_rnn(
        "lstm",
        6,
        input_dim=2,
        output_dim=10,
        output_activation="softmax",
        seed=3,
        chrono_length=40,
    )
    for a, b in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match="sets \\['seed'\\] itself"):
        classifier(4, seed=1)
    with pytest.raises(TypeError, match="chrono must be True or False"):
        classifier(4, chrono=1)


@pytest.mark.integration
def test_compare_models_profiles_are_the_probe_before_and_after_training(rows):
    (x, y), (x_test, y_test) = rows
    models = {
        "gru": classifier(5, cell="gru"),
        "gru chrono": classifier(5, cell="gru", chrono=True),
    }
    records = compare_models(
        models, {"rows": rows}, [0, 1], epochs=2, batch_size=32, keep_weights=True
    )
    assert [(r["model"], r["seed"]) for r in records] == [
        ("gru", 0),
        ("gru", 1),
        ("gru chrono", 0),
        ("gru chrono", 1),
    ]
    for record in records:
        fresh = models[record["model"]](record["seed"], input_dim=8, length=8)
        before = rnngrad.state_gradient_norms(fresh, x[:64], y[:64], loss=LOSS)[0]
        fresh.set_weights(record["weights"])
        after = rnngrad.state_gradient_norms(fresh, x[:64], y[:64], loss=LOSS)[0]
        assert record["profiles"].shape == (3, 8)
        np.testing.assert_allclose(record["profiles"][0], before, rtol=1e-5)
        np.testing.assert_allclose(record["profiles"][-1], after, rtol=1e-5)
        assert record["accuracy"] == accuracy(fresh, x_test, y_test)


@pytest.mark.integration
def test_compare_models_runs_equal_independent_training(rows):
    (x, y), _ = rows
    models = {"tanh": classifier(4), "identity": classifier(4, recurrent_initializer="identity")}
    budget = {"epochs": 2, "batch_size": 32, "learning_rate": 0.01}
    records = compare_models(models, {"rows": rows}, [2], runs=[("identity", "rows")], **budget)
    alone = rnngrad.training.train(
        models["identity"](2, input_dim=8, length=8), x, y, loss=LOSS, seed=2, **budget
    )
    assert len(records) == 1
    np.testing.assert_allclose(records[0]["history"], alone.history["loss"], rtol=1e-6)
    # without profiles the run is the same; only the measurement is skipped
    runs = [("identity", "rows")]
    quiet = compare_models(models, {"rows": rows}, [2], runs=runs, profiles=False, **budget)
    assert quiet[0]["profiles"] is None
    np.testing.assert_allclose(quiet[0]["history"], alone.history["loss"], rtol=1e-6)
    # profiles on the tasks named only: the same data under two names, one profiled
    both = {"profiled": rows, "quiet": rows}
    runs = [("identity", "profiled"), ("identity", "quiet")]
    named = compare_models(models, both, [2], runs=runs, profiles=["profiled"], **budget)
    assert named[0]["profiles"].shape == (3, 8) and named[1]["profiles"] is None
    for record in named:
        np.testing.assert_allclose(record["history"], alone.history["loss"], rtol=1e-6)


@pytest.mark.integration
def test_compare_models_scores_every_run_as_accuracy_does(rows):
    # one compiled model (and one traced scoring function) serves two seeds and two
    # input shapes; every score equals the eager accuracy of the trained weights
    (x, y), (x_test, y_test) = rows
    pixels = ((x.reshape(-1, 64, 1), y), (x_test.reshape(-1, 64, 1), y_test))
    tasks = {"rows": rows, "pixels": pixels}
    models = {"tanh": classifier(4)}
    records = compare_models(
        models, tasks, [0, 1], profiles=False, keep_weights=True, epochs=1, batch_size=32
    )
    assert [(r["task"], r["seed"]) for r in records] == [
        ("rows", 0),
        ("rows", 1),
        ("pixels", 0),
        ("pixels", 1),
    ]
    for record in records:
        (_, _), (inputs, labels) = tasks[record["task"]]
        fresh = models["tanh"](0, input_dim=inputs.shape[2], length=inputs.shape[1])
        fresh.set_weights(record["weights"])
        assert record["accuracy"] == accuracy(fresh, inputs, labels)
    assert len({r["accuracy"] for r in records}) > 1  # the runs differ


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"models": {}}, TypeError, "models must be a non-empty mapping"),
        ({"models": {"a": 1}}, TypeError, "models must map names to callables"),
        ({"tasks": {"t": (1, 2)}}, TypeError, "a task must be"),
        ({"seeds": []}, ValueError, "seeds must hold at least one seed"),
        ({"seeds": "0"}, TypeError, "seeds must be a sequence"),
        ({"runs": [("a", "nope")]}, ValueError, "runs names a model or task"),
        ({"runs": ["a"]}, TypeError, "runs must hold"),
        ({"callbacks": []}, TypeError, "sets the callbacks itself"),
        ({"keep_weights": 1}, TypeError, "keep_weights must be True or False"),
        ({"profiles": "yes"}, TypeError, "profiles must be True, False or a sequence"),
        ({"profiles": ["nope"]}, ValueError, "profiles names tasks that are not given"),
    ],
)
def test_bad_arguments_are_named(rows, kwargs, error, match):
    arguments = {"models": {"a": classifier(2)}, "tasks": {"t": rows}, "seeds": [0], "epochs": 1}
    with pytest.raises(error, match=match):
        compare_models(**{**arguments, **kwargs})


def test_tasks_are_checked(rows):
    (x, y), (x_test, y_test) = rows
    build = {"a": classifier(2)}
    with pytest.raises(ValueError, match="same steps and features"):
        compare_models(build, {"t": ((x, y), (x_test[:, :4], y_test))}, [0], epochs=1)
    with pytest.raises(TypeError, match="labels must be integers"):
        compare_models(build, {"t": ((x, y * 1.0), (x_test, y_test))}, [0], epochs=1)
    with pytest.raises(ValueError, match="steps must hold memory lengths"):
        last_steps_accuracy(rows, [9])
    assert isinstance(classifier(2)(0, input_dim=1, length=3), keras.Model)
