"""rnngrad: measure how gradients flow back through time in Keras recurrent networks.

The package behind the book *Vanishing and exploding gradients in RNNs, measured*.

Diagnose your model (the practitioner's core, flat at ``rnngrad.*``):

- :mod:`rnngrad.probes`: the exact one-pass probe of dL/dh_t for every time step of
  every recurrent layer (``rnngrad.state_gradient_norms``, ``rnngrad.state_gradients``,
  ``rnngrad.gradient_profiles``, ``rnngrad.global_gradient_norm``);
- :mod:`rnngrad.diagnosis`: :func:`diagnose`, a gradient-health report, with its rules in
  :mod:`rnngrad.verdicts`; :mod:`rnngrad.cli`: the ``rnngrad diagnose`` command;
- :mod:`rnngrad.monitor` and :mod:`rnngrad.callbacks`: Keras callbacks that watch
  gradients while training (TensorBoard too);
- :mod:`rnngrad.profiles`: ratios, fitted decay rates and horizons of measured profiles.

Build and train:

- :mod:`rnngrad.tasks` (the adding problem, copy memory, pixel-by-pixel digits),
  :mod:`rnngrad.models` (:func:`build_rnn`: stock Keras models with a chosen
  initialization), :mod:`rnngrad.training` (reproducible runs, Keras's clipping modes),
  :mod:`rnngrad.theory` (closed forms and bounds), :mod:`rnngrad.plotting` (the figure
  style).

The book's experiments, in :mod:`rnngrad.experiments`: the instruments of single chapters
(Pascanu's cliff, clipping compared, truncated BPTT, the regularizer Omega, the shared
matrix's per-step terms, gain scans, mean-field rates, Lyapunov exponents, curvature,
finite differences, latching, gradient noise, sweeps, schedules, the real-data runs,
the book's glue helpers). The few a practitioner reaches for are lifted to the top level:
``rnngrad.threshold_from_norms`` (a clipping threshold from observed norms),
``rnngrad.truncated_model`` (truncated BPTT) and ``rnngrad.WarmupDecay`` (learning-rate
warm-up and decay).

DESIGN notes. A module's tier is decided by who calls it: a practitioner diagnosing or
training their own model, or a chapter making its argument. The core imports nothing
from :mod:`rnngrad.experiments`, so the experiments can change with the text without
touching the API readers rely on (as QuantEcon keeps lecture-specific code out of its
package core), and the package is at most one level deep (as nanoGPT and micrograd
argue). ``training`` is core because users train with it and the monitor's examples run
it; ``theory`` because ``diagnose`` reads spectra with it; ``plotting`` because the
command line draws with it. ``gates`` and ``schedules`` moved out: only the gating and
remedies chapters call them. Shared internals live in private modules whose names are
public inside them (``_engine`` runs the probe, ``_losses`` resolves the loss,
``_inputs`` checks data, ``_replay`` replays a layer), so no module imports another
module's private names. One vocabulary names a cell: ``"simple"``, ``"lstm"``,
``"gru"``, or ``"custom"`` for any other.

Submodules load on first use, so ``import rnngrad`` is quick and TensorFlow is imported
only when something needs it (the command line tool relies on this to keep
TensorFlow's start-up logs off the terminal and to answer usage errors at once).
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
    "callbacks",
    "cli",
    "diagnosis",
    "experiments",
    "models",
    "monitor",
    "plotting",
    "probes",
    "profiles",
    "tasks",
    "theory",
    "training",
    "verdicts",
)
_FUNCTIONS = {
    "build_rnn": "models",
    "diagnose": "diagnosis",
    "seed_everything": "_seed",
    "state_gradient_norms": "probes",
    "state_gradients": "probes",
    "gradient_profiles": "probes",
    "global_gradient_norm": "probes",
    # Remedies a practitioner calls, lifted from the book's experiments.
    "threshold_from_norms": "experiments.clipping",
    "truncated_model": "experiments.truncation",
    "WarmupDecay": "experiments.schedules",
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
