"""Networks trained side by side, as blocks of one network, train as they would alone."""

import keras
import numpy as np
import pytest

import rnngrad
from rnngrad.experiments.side_by_side import train_side_by_side


def alone(model, x, y, **fit):
    """The reference: the model trained by itself with Adam and MSE, same minibatches."""
    model.compile(keras.optimizers.Adam(1e-2), "mse", jit_compile=False)
    model.fit(x, y, shuffle=False, verbose=0, **fit)
    return model


@pytest.mark.integration
def test_each_block_trains_as_its_network_alone():
    x, y = rnngrad.tasks.adding_problem(96, 7, seed=0)
    x2, y2 = rnngrad.tasks.adding_problem(96, 7, seed=1)
    build = [  # two seeds on one data set, a third network on another
        lambda: rnngrad.build_rnn("simple", 5, input_dim=2, seed=0),
        lambda: rnngrad.build_rnn("simple", 5, input_dim=2, seed=1),
        lambda: rnngrad.build_rnn("simple", 5, input_dim=2, seed=2),
    ]
    data = [(x, y), (x, y), (x2, y2)]
    together = train_side_by_side(
        [b() for b in build],
        [d[0] for d in data],
        [d[1] for d in data],
        epochs=3,
        batch_size=16,
        learning_rate=1e-2,
        shuffle=False,
    )
    for b, (xd, yd), trained in zip(build, data, together):
        reference = alone(b(), xd, yd, epochs=3, batch_size=16)
        for got, want in zip(trained.get_weights(), reference.get_weights()):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
        # and they moved: the test is not passed by untrained weights
        assert not np.allclose(trained.get_weights()[1], b().get_weights()[1], atol=1e-3)


def test_refuses_models_it_cannot_place_side_by_side():
    x, y = rnngrad.tasks.adding_problem(8, 4, seed=0)
    lstm = rnngrad.build_rnn("lstm", 3, input_dim=2)
    simple = rnngrad.build_rnn("simple", 3, input_dim=2)
    wider = rnngrad.build_rnn("simple", 4, input_dim=2)
    kwargs = dict(epochs=1, batch_size=4, learning_rate=1e-2)
    with pytest.raises(ValueError, match="one SimpleRNN"):
        train_side_by_side([lstm], [x], [y], **kwargs)
    with pytest.raises(ValueError, match="same units"):
        train_side_by_side([simple, wider], [x, x], [y, y], **kwargs)
    with pytest.raises(ValueError, match="as many inputs"):
        train_side_by_side([simple], [x, x], [y], **kwargs)
