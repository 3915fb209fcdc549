"""rnngrad: measure how gradients flow back through time in Keras recurrent networks.

The package behind the book *Vanishing and exploding gradients in RNNs, measured*.
Its modules, one job each:

- :mod:`rnngrad.tasks`: synthetic long-range tasks (adding problem, copy memory);
- :mod:`rnngrad.models`: :func:`~rnngrad.models.build_rnn`, stock Keras models with
  controlled initialization;
- :mod:`rnngrad.probes`: the exact one-pass probe of dL/dh_t for every time step;
- :mod:`rnngrad.profiles`: gradient ratios and fitted decay rates of measured profiles;
- :mod:`rnngrad.theory`: closed-form predictions and bounds;
- :mod:`rnngrad.sharing`: the shared W_h's gradient split into per-step terms, and
  power iteration (tied vs untied recurrent matrices);
- :mod:`rnngrad.meanfield`: mean-field rate predictions along a network's trajectory;
- :mod:`rnngrad.checks`: finite differences, an independent check of the probe;
- :mod:`rnngrad.training`: reproducible training runs with clipping and divergence handling,
  with :mod:`rnngrad.schedules` (learning-rate warm-up and decay), :mod:`rnngrad.sweeps`
  (settings x seeds, success rates) and :mod:`rnngrad.callbacks` (gradients recorded
  during training);
- :mod:`rnngrad.monitor`: :class:`~rnngrad.monitor.GradientMonitor`, warnings on spikes,
  overflow and a collapsing horizon while training;
- :mod:`rnngrad.gates`: LSTM/GRU gate trajectories and the forget/update-gate path;
- :mod:`rnngrad.scans`: gradient profiles over a range of recurrent gains;
- remedies: :mod:`rnngrad.cliff` (Pascanu's one-unit cliff), :mod:`rnngrad.clipping`
  (Keras's clipping modes, measured), :mod:`rnngrad.truncation` (truncated BPTT) and
  :mod:`rnngrad.regularizers` (Pascanu's regularizer Omega);
- :mod:`rnngrad.diagnosis`: :func:`~rnngrad.diagnosis.diagnose`, a gradient-health report
  for your own model (also the ``rnngrad diagnose`` command);
- :mod:`rnngrad.plotting`: the book's figure style and recurring plots;
- :mod:`rnngrad.book`: what the chapter notebooks share (numbers and figures glued into
  the text).

Submodules load on first use, so ``import rnngrad`` is quick and TensorFlow is imported
only when something needs it (the command line tool relies on this to keep
TensorFlow's start-up logs off the terminal).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from typing import Any

# rnngrad drives TensorFlow directly (tf.function, GradientTape), so Keras must run on
# the TensorFlow backend. Fail at import, with the fix, rather than deep inside a probe.
_backend = os.environ.get("KERAS_BACKEND", "tensorflow")
if _backend != "tensorflow":
    raise ImportError(
        f"rnngrad needs Keras's TensorFlow backend, but KERAS_BACKEND={_backend!r}. "
        "Unset KERAS_BACKEND or set it to 'tensorflow' before importing rnngrad."
    )
if "keras" in sys.modules and sys.modules["keras"].backend.backend() != "tensorflow":
    raise ImportError(
        "rnngrad needs Keras's TensorFlow backend, but Keras was already imported with the "
        f"{sys.modules['keras'].backend.backend()!r} backend. Set KERAS_BACKEND=tensorflow "
        "before importing Keras."
    )
# TensorFlow's C++ start-up chatter (oneDNN, CUDA stubs) is noise for readers.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

_SUBMODULES = (
    "book",
    "callbacks",
    "checks",
    "cliff",
    "clipping",
    "diagnosis",
    "gates",
    "meanfield",
    "models",
    "monitor",
    "plotting",
    "probes",
    "profiles",
    "regularizers",
    "scans",
    "schedules",
    "sharing",
    "sweeps",
    "tasks",
    "theory",
    "training",
    "truncation",
)
_FUNCTIONS = {
    "build_rnn": "models",
    "diagnose": "diagnosis",
    "seed_everything": "_seed",
    "state_gradient_norms": "probes",
    "state_gradients": "probes",
}

__all__ = ["__version__", *_SUBMODULES, *_FUNCTIONS]


def __getattr__(name: str) -> Any:
    if name in _FUNCTIONS:
        return getattr(importlib.import_module(f"rnngrad.{_FUNCTIONS[name]}"), name)
    if not name.startswith("_") and importlib.util.find_spec(f"rnngrad.{name}") is not None:
        return importlib.import_module(f"rnngrad.{name}")  # any public submodule
    raise AttributeError(f"module 'rnngrad' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
