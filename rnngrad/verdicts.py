"""The rules behind a verdict: thresholds and the rule itself, in one place.

This module imports only NumPy, so the command line can check its arguments (for
example ``--fail-on``) before TensorFlow loads.

A verdict is read off a layer's *transport*: for each lag ``l``, how much of a unit
gradient arriving at the layer's last state is carried back ``l`` steps through the
layer's own recurrence, ``||u . dh_T/dh_{T-l}||`` for fixed random unit vectors ``u``
(see :func:`rnngrad.diagnosis.diagnose`). The transport is 1 at lag 0 by construction,
and it does not depend on the model's head or loss, so the same recurrent weights get
the same verdict under a last-step, a per-step or a pooled read-out.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "EXPLODING_RATIO",
    "NO_SIGNAL",
    "VANISHING_RATIO",
    "VERDICTS",
    "transport_verdict",
]

VANISHING_RATIO = 1e-3
"""The default threshold below which a layer's transport within the sequence vanishes.

A convention, not a law: a gradient below 1e-3 of what arrives at the last state still
exists, but is small against the minibatch noise of the same gradient (the weight
sharing chapter measures the ratio)."""
EXPLODING_RATIO = 1e3
"""The default threshold above which a layer's transport within the sequence explodes."""
NO_SIGNAL = "no signal"
"""The verdict of a layer whose loss gradient is zero at every step (the loss does not
depend on it on this batch)."""
VERDICTS = ("healthy", "vanishing", "exploding")
"""The verdicts of a layer with signal, from best to worst; the worst layer decides the
model's verdict. A model none of whose layers has signal gets :data:`NO_SIGNAL`."""


def transport_verdict(
    transport: np.ndarray,
    *,
    vanishing_ratio: float = VANISHING_RATIO,
    exploding_ratio: float = EXPLODING_RATIO,
) -> str:
    """The verdict for one layer's transport by lag (``transport[0]`` is lag 0).

    - ``"exploding"`` if any value is inf or NaN (the backward product overflowed) or
      the largest exceeds ``exploding_ratio``;
    - else ``"vanishing"`` if some value is below ``vanishing_ratio`` (the horizon is
      shorter than the sequence);
    - else ``"healthy"``.

    Examples
    --------
    >>> transport_verdict(0.5 ** np.arange(20))
    'vanishing'
    >>> transport_verdict(np.ones(50))
    'healthy'
    >>> transport_verdict(1.2 ** np.arange(60))
    'exploding'
    """
    values = np.asarray(transport, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"transport must be a non-empty 1-D array, got shape {values.shape}")
    if not np.all(np.isfinite(values)) or values.max() > exploding_ratio:
        return "exploding"
    if values.min() < vanishing_ratio:
        return "vanishing"
    return "healthy"
