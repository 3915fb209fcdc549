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
