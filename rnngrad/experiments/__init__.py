"""The book's experiments: the instruments of single chapters.

Each module here measures one phenomenon for the text; they change with the chapters,
not with the API a practitioner relies on (that stays flat at ``rnngrad.*``), and no core
module imports them. By chapter:

- Backpropagation through time: :mod:`~rnngrad.experiments.checks` (finite differences,
  an independent check of the probe).
- Long sequences: :mod:`~rnngrad.experiments.latching` (Bengio et al.'s latching).
- Weight sharing: :mod:`~rnngrad.experiments.sharing` (per-step terms of the shared
  matrix's gradient, power iteration) and :mod:`~rnngrad.experiments.gradient_noise`
  (long-range terms against minibatch noise).
- Activation functions and initialization: :mod:`~rnngrad.experiments.meanfield`
  (mean-field rates), :mod:`~rnngrad.experiments.scans` (gain scans),
  :mod:`~rnngrad.experiments.chaos` (Lyapunov exponents, Jacobian-product spectra) and
  :mod:`~rnngrad.experiments.curvature` (Hessian eigenvalues).
- Gating: :mod:`~rnngrad.experiments.gates` (gate trajectories, the diagonal path).
- Remedies: :mod:`~rnngrad.experiments.cliff` (Pascanu's cliff),
  :mod:`~rnngrad.experiments.clipping` (Keras's clipping modes, measured),
  :mod:`~rnngrad.experiments.schedules` (warm-up and decay),
  :mod:`~rnngrad.experiments.truncation` (truncated BPTT),
  :mod:`~rnngrad.experiments.regularizers` (Pascanu's Omega),
  :mod:`~rnngrad.experiments.sharpness` (curvature during training) and
  :mod:`~rnngrad.experiments.remedy_beds` (the chapters' test beds).
- Real data: :mod:`~rnngrad.experiments.real_data`.
- Every chapter: :mod:`~rnngrad.experiments.sweeps` (settings x seeds) and
  :mod:`~rnngrad.experiments.book` (gluing numbers and figures into the pages).

``rnngrad.threshold_from_norms``, ``rnngrad.truncated_model`` and
``rnngrad.WarmupDecay`` lift the remedies a practitioner calls to the top level.
Submodules load on first use, as in ``rnngrad`` itself.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any


def __getattr__(name: str) -> Any:
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
