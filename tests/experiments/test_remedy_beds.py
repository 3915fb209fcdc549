"""rnngrad.experiments.remedy_beds: the beds are what the chapters say they are."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import rnngrad
from rnngrad.experiments.remedy_beds import (
    BEDS,
    LastFiniteWeights,
    bed_data,
    build_exploding,
    build_instability,
    build_vanishing,
    compiled_mse,
    finite_weights,
    instability_optimizer,
    validation_mse,
)


@pytest.mark.parametrize("bed", sorted(BEDS))
def test_bed_data_is_the_adding_problem_with_fixed_seeds(bed):
    length, sets = BEDS[bed]
    data = bed_data(bed)
    assert set(data) == set(sets)
    for name, (n, seed) in sets.items():
        x, y = rnngrad.tasks.adding_problem(n, length, seed=seed)
        np.testing.assert_array_equal(data[name][0], x)
        np.testing.assert_array_equal(data[name][1], y)
    assert len({sets[name][1] for name in sets}) == len(sets)  # no data set repeats another


@pytest.mark.parametrize(
    "build, units, gain",
    [(build_exploding, 32, 2.0), (build_instability, 64, 1.0), (build_vanishing, 64, 0.5)],
)
def test_default_recurrent_matrix_is_gain_times_orthogonal(build, units, gain):
    model = build()
    layer = model.layers[1]
    assert isinstance(layer, keras.layers.SimpleRNN) and layer.units == units
    singular = np.linalg.svd(np.asarray(layer.cell.recurrent_kernel.numpy(), np.float64))[1]
    np.testing.assert_allclose(singular, gain, rtol=1e-5)


def test_remedies_change_only_what_they_name():
    identity = build_exploding(gain=1.0, init="identity").layers[1].cell.recurrent_kernel
    np.testing.assert_allclose(identity.numpy(), np.eye(32), atol=1e-7)
    lstm = build_instability(cell="lstm").layers[1]
    assert isinstance(lstm, keras.layers.LSTM) and lstm.units == 64
    a, b = build_exploding(seed=3), build_exploding(seed=3)
    for w, v in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(w, v)


def test_instability_optimizer_is_sgd_with_momentum_and_clipping():
    optimizer = instability_optimizer(0.05, clipnorm=2.0)
    assert optimizer.__class__.__name__ == "SGD"
    assert optimizer.momentum == pytest.approx(0.9) and optimizer.clipnorm == pytest.approx(2.0)
    assert float(optimizer.learning_rate) == pytest.approx(0.05)


def test_validation_mse_matches_numpy_and_is_inf_after_overflow():
    x, y = bed_data("instability")["probe"]
    model = build_instability()
    expected = np.mean((np.asarray(model(x), np.float64) - y) ** 2)
    assert validation_mse(model, x, y) == pytest.approx(expected, rel=1e-5)
    weights = model.get_weights()
    weights[1][0, 0] = np.inf
    model.set_weights(weights)
    assert not finite_weights(model) and validation_mse(model, x, y) == float("inf")


def test_validation_errors_name_the_argument():
    with pytest.raises(ValueError, match="bed"):
        bed_data("no such bed")
    with pytest.raises(TypeError, match="model"):
        finite_weights("not a model")


def test_compiled_mse_equals_validation_mse_for_other_models_of_the_architecture():
    x, y = bed_data("exploding")["probe"]
    reference = build_exploding(0)
    evaluate = compiled_mse(reference, x, y)
    for seed in (1, 2):
        other = build_exploding(seed)
        assert evaluate(other) == pytest.approx(validation_mse(other, x, y), rel=1e-5)
    np.testing.assert_array_equal(reference.get_weights()[0], build_exploding(2).get_weights()[0])
    broken = build_exploding(3)
    weights = broken.get_weights()
    weights[0][0, 0] = np.nan
    broken.set_weights(weights)
    assert evaluate(broken) == float("inf")
    with pytest.raises(ValueError):
        evaluate(build_instability())  # another architecture
    with pytest.raises(TypeError, match="model"):
        compiled_mse("not a model", x, y)
    with pytest.raises(ValueError, match="same number"):
        compiled_mse(reference, x, y[:3])


@pytest.mark.integration
def test_last_finite_weights_are_the_weights_before_the_overflow():
    x, y = bed_data("instability")["probe"]
    model = build_instability()
    keep = LastFiniteWeights(every=1)
    rnngrad.training.train(model, x, y, epochs=1, batch_size=16, callbacks=[keep])
    assert keep.updates == 4
    for kept, now in zip(keep.weights, model.get_weights()):
        np.testing.assert_array_equal(kept, now)
    # a run that overflows: the kept weights are finite, from before the first bad update
    blowup = LastFiniteWeights(every=1)
    result = rnngrad.training.train(
        build_instability(),
        x,
        y * 1e6,
        epochs=20,
        batch_size=16,
        optimizer=instability_optimizer(10.0),
        callbacks=[blowup],
    )
    assert result.diverged and blowup.weights is not None
    assert all(np.all(np.isfinite(w)) for w in blowup.weights)
    stop_epoch, stop_batch = result.stopped_at
    # the loss seen non-finite at (epoch, batch) is that of the weights after
    # epoch * 4 + batch updates; the update made from it is the last that can be finite
    assert 0 < blowup.updates <= stop_epoch * 4 + stop_batch + 1
    with pytest.raises(ValueError, match="every"):
        LastFiniteWeights(every=0)


def test_compiled_validation_mse_equals_the_eager_one_and_reads_new_weights():
    from rnngrad.experiments import remedy_beds

    x, y = bed_data("exploding")["probe"]
    model = build_exploding(0, "lstm", 1.0)
    assert validation_mse(model, x, y, compiled=True) == validation_mse(model, x, y)
    forward = remedy_beds._FORWARD[model]
    model.set_weights(build_exploding(1, "lstm", 3.0).get_weights())
    assert validation_mse(model, x, y, compiled=True) == validation_mse(model, x, y)
    assert remedy_beds._FORWARD[model] is forward  # one trace for every set of weights
    assert forward.experimental_get_tracing_count() == 1
    model.set_weights([np.full_like(w, np.inf) for w in model.get_weights()])
    assert validation_mse(model, x, y, compiled=True) == float("inf")
    with pytest.raises(TypeError, match="compiled"):
        validation_mse(model, x, y, compiled="yes")
