"""rnngrad: measure how gradients flow back through time in Keras recurrent networks.

The package behind the book *Vanishing and exploding gradients in RNNs, measured*.
Its modules, one job each:

- :mod:`rnngrad.tasks`: synthetic long-range tasks (adding problem, copy memory);
- :mod:`rnngrad.models`: :func:`~rnngrad.models.build_rnn`, stock Keras models with
  controlled initialization;
- :mod:`rnngrad.probes`: the exact one-pass probe of dL/dh_t for every time step;
- :mod:`rnngrad.profiles`: gradient ratios and fitted decay rates of measured profiles;
- :mod:`rnngrad.theory`: closed-form predictions and bounds;
- :mod:`rnngrad.meanfield`: mean-field rate predictions along a network's trajectory;
- :mod:`rnngrad.checks`: finite differences, an independent check of the probe;
- :mod:`rnngrad.training`: reproducible training runs with clipping and divergence handling;
- :mod:`rnngrad.plotting`: the book's figure style and recurring plots.
"""

from __future__ import annotations

import os

# rnngrad drives TensorFlow directly (tf.function, GradientTape), so Keras must run on
# the TensorFlow backend. Fail at import, with the fix, rather than deep inside a probe.
_backend = os.environ.get("KERAS_BACKEND", "tensorflow")
if _backend != "tensorflow":
    raise ImportError(
        f"rnngrad needs Keras's TensorFlow backend, but KERAS_BACKEND={_backend!r}. "
        "Unset KERAS_BACKEND or set it to 'tensorflow' before importing rnngrad."
    )
# TensorFlow's C++ start-up chatter (oneDNN, CUDA stubs) is noise for readers.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

if keras.backend.backend() != "tensorflow":  # keras was imported earlier with another backend
    raise ImportError(
        f"rnngrad needs Keras's TensorFlow backend, but Keras is running on "
        f"{keras.backend.backend()!r}. Set KERAS_BACKEND=tensorflow before importing Keras."
    )

from rnngrad import (  # noqa: E402
    checks,
    meanfield,
    models,
    plotting,
    probes,
    profiles,
    tasks,
    theory,
    training,
)
from rnngrad._seed import seed_everything  # noqa: E402
from rnngrad.models import build_rnn  # noqa: E402
from rnngrad.probes import state_gradient_norms, state_gradients  # noqa: E402

__version__ = "0.1.0"
__all__ = [
    "__version__",
    "build_rnn",
    "checks",
    "meanfield",
    "models",
    "plotting",
    "probes",
    "profiles",
    "seed_everything",
    "state_gradient_norms",
    "state_gradients",
    "tasks",
    "theory",
    "training",
]
