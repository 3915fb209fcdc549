"""One call that makes an experiment repeatable."""

from __future__ import annotations

import random

import keras
import numpy as np
import tensorflow as tf

from rnngrad._validation import check_int


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy, TensorFlow and Keras, and make TensorFlow's ops deterministic.

    Call it once at the top of a notebook or script; every rnngrad experiment also takes
    an explicit ``seed`` of its own, so results do not depend on call order.

    Parameters
    ----------
    seed : int
        A non-negative integer.

    Examples
    --------
    >>> import rnngrad
    >>> rnngrad.seed_everything(0)
    """
    seed = check_int("seed", seed, minimum=0)
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - seeds the legacy global generator on purpose
    keras.utils.set_random_seed(seed)  # also seeds tf.random and Keras's global generator
    tf.config.experimental.enable_op_determinism()


def seed_run(seed: int, model: keras.Model) -> None:
    """Seed one training run of ``model`` as :func:`seed_everything` does, keeping the
    compiled functions TensorFlow has instantiated, where that changes nothing.

    ``tf.random.set_seed`` also empties TensorFlow's kernel cache, so that stateful random
    kernels start again from the seed; every compiled function is then instantiated and
    optimized again at its next call: a quarter of a second for a small recurrent
    network's training step on a 2-core CPU, longer than many of the book's runs. A model
    made only of Keras's own layers draws no stateful random numbers in its training step
    (Keras's random ops are stateless, their state a variable), and ``model.fit`` traces
    a new shuffling function for every fit, whose kernels start afresh; for such a model
    this sets the same seeds (Python, NumPy, Keras, TensorFlow's global seed and its
    operation-seed generator) without emptying the cache, and the run is the same, bit for
    bit. Any other model (a custom or ``Lambda`` layer, cell or model class) gets
    :func:`seed_everything`, and so does every model where TensorFlow's eager context
    lacks the two attributes set here.
    """
    seed = check_int("seed", seed, minimum=0)
    context = _eager_context()
    if context is None or not _only_keras_layers(model):
        seed_everything(seed)
        return
    from keras.src.backend.common import global_state
    from keras.src.random import seed_generator
    from keras.src.utils import rng_utils

    # keras.utils.set_random_seed, but for tf.random.set_seed's emptying of the cache
    global_state.set_global_attribute(rng_utils.GLOBAL_RANDOM_SEED, seed)
    global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - seeds the legacy global generator on purpose
    context._seed = seed  # what tf.random.set_seed sets, before it empties the cache
    context._rng = random.Random(seed)
    tf.config.experimental.enable_op_determinism()


def _eager_context():
    """TensorFlow's eager context, if it keeps the global seed where this version expects."""
    from tensorflow.python.eager import context as eager

    found = eager.context()
    if not all(hasattr(found, name) for name in ("_seed", "_rng", "_set_global_seed")):
        return None
    return found


def _only_keras_layers(model: object) -> bool:
    """Whether ``model`` and every layer in it are Keras's own classes (no ``Lambda``)."""
    if not isinstance(model, keras.Model):
        return False
    parts = [model, *model._flatten_layers(include_self=False, recursive=True)]
    return all(
        type(part).__module__.startswith("keras.") and not isinstance(part, keras.layers.Lambda)
        for part in parts
    )
