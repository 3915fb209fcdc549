"""TensorFlow's retracing warning, hidden where one compiled function per model is by design."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["quiet_retracing_warnings"]


@contextlib.contextmanager
def quiet_retracing_warnings() -> Iterator[None]:
    """Hide TensorFlow's "N out of the last M calls triggered tf.function retracing".

    Keras compiles one training and one prediction function per model, and the
    package's probe one per model and shape: a notebook or a sweep that trains, scores
    or probes many models triggers the warning by design, and it would only be noise on
    the page. Other warnings and errors still show.
    """
    import tensorflow as tf

    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")
    try:
        yield
    finally:
        logger.setLevel(level)
