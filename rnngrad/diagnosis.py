"""A gradient-health report for your own Keras RNN: :func:`diagnose`.

It answers "are my gradients vanishing or exploding, over which horizon, and what should
I try?" from one probe of the model on a batch:

- per recurrent layer: the profile ||dL/dh_t||, the fitted per-step factor
  ``decay_per_step`` (the geometric-mean ratio from one step to the one before, e.g. 0.9
  means the gradient shrinks by 10 % per step back in time), the ``horizon`` (steps back
  until the gradient falls below ``VANISHING_RATIO`` of its last-step value, None if it
  never does within the sequence), the largest growth, the recurrent matrices' spectral
  radius and largest singular value, and for LSTM/GRU the mean gate openings;
- the global gradient norm (what ``global_clipnorm`` clips);
- a verdict, by the rule in :func:`layer_verdict`, where the worst layer decides;
- suggestions, each citing the measurement that triggered it and the chapter that
  explains it.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import keras
import numpy as np

from rnngrad.gates import gate_trajectory
from rnngrad.models import GATES, _cell_kind, recurrent_matrix
from rnngrad.probes import LossArg, _run_probe, global_gradient_norm
from rnngrad.profiles import decay_rate, gradient_ratio, horizon
from rnngrad.theory import max_singular_value, spectral_radius

__all__ = [
    "EXPLODING_RATIO",
    "VANISHING_RATIO",
    "VERDICTS",
    "DiagnosisReport",
    "LayerReport",
    "Suggestion",
    "diagnose",
    "layer_verdict",
]

VANISHING_RATIO = 1e-3
"""A layer vanishes if its gradient falls below this fraction of the last step's."""
EXPLODING_RATIO = 1e3
"""A layer explodes if its gradient grows beyond this multiple of the last step's."""
VERDICTS = ("healthy", "vanishing", "exploding")
"""The possible verdicts, from best to worst; the worst layer decides the model's verdict."""

# Chapters that explain each suggestion (document paths in the book).
_CHAPTERS = {
    "bptt": ("Backpropagation through time in one page", "book/bptt"),
    "long": ("Long sequences", "book/long_sequences"),
    "init": ("Initialization and training", "book/initialization_training"),
    "gating": ("Gating: LSTM and GRU", "book/gating"),
    "remedies": ("Remedies", "book/remedies"),
}


@dataclass
class Suggestion:
    """One thing to try, why (the measurement), and where the book explains it."""

    action: str
    evidence: str
    chapter: str
    page: str


@dataclass
class LayerReport:
    """The gradient health of one recurrent layer."""

    name: str
    kind: str  # "SimpleRNN", "LSTM" or "GRU"
    units: int
    verdict: str
    decay_per_step: float  # exp(fitted log-slope); < 1 vanishing, > 1 growing
    horizon: int | None  # steps back until the ratio falls below VANISHING_RATIO
    max_ratio: float  # largest ||dL/dh_t|| / ||dL/dh_T||
    first_step_ratio: float  # ||dL/dh_1|| / ||dL/dh_T||
    non_finite: int  # inf/NaN entries in the profile
    spectral_radius: dict[str, float]  # per gate block of W_h
    sigma_max: dict[str, float]  # per gate block of W_h
    gates: dict[str, float] | None  # mean gate openings (LSTM: i, f, o; GRU: z, r)
    profile: list[float] = field(repr=False)  # ||dL/dh_t||, t = 1..T


@dataclass
class DiagnosisReport:
    """What :func:`diagnose` found. ``to_dict``/``to_json`` give the CLI's JSON."""

    verdict: str
    decay_per_step: float  # of the worst layer
    horizon: int | None  # of the worst layer
    sequence_length: int
    batch_size: int
    loss: str
    global_gradient_norm: float
    non_finite: int
    layers: list[LayerReport]
    suggestions: list[Suggestion]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary (non-finite floats become strings "inf"/"nan")."""
        return _json_safe(asdict(self))

    def to_json(self, **kwargs: Any) -> str:
        """The report as one JSON object."""
        return json.dumps(self.to_dict(), **kwargs)

    def summary(self) -> str:
        """A readable multi-line text report, as the command line prints it."""
        lines = [
            f"verdict: {self.verdict.upper()}  (T = {self.sequence_length}, "
            f"batch = {self.batch_size}, loss = {self.loss})",
            f"global gradient norm: {self.global_gradient_norm:.3g}",
        ]
        for layer in self.layers:
            horizon = "beyond the sequence" if layer.horizon is None else f"{layer.horizon} steps"
            lines.append(
                f"- {layer.name} ({layer.kind}, {layer.units} units): {layer.verdict}; "
                f"decay per step {layer.decay_per_step:.4g}, horizon {horizon}, "
                f"first/last step {layer.first_step_ratio:.3g}, max {layer.max_ratio:.3g}"
            )
            blocks = ", ".join(
                f"{gate}: rho {layer.spectral_radius[gate]:.3g} / sigma_max "
                f"{layer.sigma_max[gate]:.3g}"
                for gate in layer.spectral_radius
            )
            lines.append(f"    W_h {blocks}")
            if layer.gates:
                means = ", ".join(f"{g} {v:.3f}" for g, v in layer.gates.items())
                lines.append(f"    mean gates: {means}")
            if layer.non_finite:
                lines.append(f"    {layer.non_finite} non-finite gradient norms")
        if self.suggestions:
            lines.append("suggestions:")
            for s in self.suggestions:
                lines.append(f"- {s.action}\n    because {s.evidence}\n    see: {s.chapter}")
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


def layer_verdict(profile: np.ndarray) -> str:
    """The verdict for one layer's profile (||dL/dh_t|| for t = 1..T).

    The rule, relative to the sequence length T: with ``ratio_t = ||dL/dh_t|| /
    ||dL/dh_T||``,

    - ``"exploding"`` if any norm is inf or NaN, or ``max ratio_t > EXPLODING_RATIO``;
    - else ``"vanishing"`` if some ``ratio_t < VANISHING_RATIO`` (the horizon is shorter
      than the sequence);
    - else ``"healthy"``.

    Examples
    --------
    >>> layer_verdict(0.5 ** np.arange(20, -1, -1))
    'vanishing'
    >>> layer_verdict(np.ones(50))
    'healthy'
    """
    profile = np.asarray(profile, dtype=np.float64)
    if not np.all(np.isfinite(profile)):
        return "exploding"
    ratio = gradient_ratio(profile)
    if np.nanmax(ratio) > EXPLODING_RATIO:
        return "exploding"
    if np.nanmin(ratio) < VANISHING_RATIO:
        return "vanishing"
    return "healthy"


def diagnose(
    model: keras.Model,
    x: Any,
    y: Any = None,
    *,
    loss: LossArg | None = None,
) -> DiagnosisReport:
    """Measure a model's gradient flow on a batch and say what it means.

    Parameters
    ----------
    model : keras.Model
        Any model the probe supports (:func:`rnngrad.probes.state_gradient_norms`).
    x : array-like
        A representative batch of inputs, ``(B, T, ...)``. Real data is better than
        noise: saturation, and so the verdict, depends on the inputs.
    y : array-like, optional
        Targets. Without them the loss is ``1/2 ||output||^2`` per example.
    loss : str or callable, optional
        As for the probe; default ``"mse"`` when ``y`` is given.

    Returns
    -------
    DiagnosisReport

    Examples
    --------
    >>> import rnngrad
    >>> model = rnngrad.build_rnn("simple", 32, input_dim=2, recurrent_gain=0.5)
    >>> x, y = rnngrad.tasks.adding_problem(16, 50, seed=0)
    >>> report = diagnose(model, x, y)
    >>> report.verdict, report.layers[0].horizon is not None
    ('vanishing', True)
    """
    if y is not None and loss is None:
        loss = "mse"
    with warnings.catch_warnings():  # overflow is reported in the verdict instead
        warnings.simplefilter("ignore", RuntimeWarning)
        result = _run_probe(model, x, y, loss=loss or "mse", state="h", jit_compile="auto")
        global_norm = global_gradient_norm(model, x, y, loss=loss or "mse")
    layers_by_name = {layer.name: layer for layer in model._flatten_layers(include_self=False)}
    notes: list[str] = []
    gate_means = _gate_means(model, [layers_by_name[n] for n in result.layer_names], x, notes)

    reports = []
    for name, norms in zip(result.layer_names, result.norms):
        layer = layers_by_name[name]
        reports.append(_layer_report(layer, norms.numpy(), gate_means.get(name)))

    worst = max(reports, key=lambda r: VERDICTS.index(r.verdict))
    batch, steps = int(np.shape(x)[0]), max(len(r.profile) for r in reports)
    report = DiagnosisReport(
        verdict=worst.verdict,
        decay_per_step=worst.decay_per_step,
        horizon=worst.horizon,
        sequence_length=steps,
        batch_size=batch,
        loss=loss if isinstance(loss, str) else ("1/2 ||output||^2" if loss is None else "custom"),
        global_gradient_norm=global_norm,
        non_finite=sum(r.non_finite for r in reports),
        layers=reports,
        suggestions=[],
        notes=notes,
    )
    report.suggestions = _suggestions(report)
    return report


def _layer_report(layer: keras.layers.RNN, profile: np.ndarray, gates: dict | None) -> LayerReport:
    kind = _cell_kind(layer)
    ratio = gradient_ratio(profile)
    finite = np.isfinite(ratio)
    rho, sigma = {}, {}
    for gate in GATES[kind]:
        matrix = recurrent_matrix(layer, None if kind == "simple" else gate)
        rho[gate], sigma[gate] = spectral_radius(matrix), max_singular_value(matrix)
    rate = decay_rate(profile)
    return LayerReport(
        name=layer.name,
        kind=type(layer).__name__,
        units=int(layer.cell.units),
        verdict=layer_verdict(profile),
        decay_per_step=float(math.exp(rate)) if math.isfinite(rate) else float("nan"),
        horizon=horizon(profile, threshold=VANISHING_RATIO),
        max_ratio=float(np.nanmax(np.where(finite, ratio, np.inf))),
        first_step_ratio=float(ratio[0]),
        non_finite=int(np.count_nonzero(~np.isfinite(profile))),
        spectral_radius=rho,
        sigma_max=sigma,
        gates=gates,
        profile=[float(v) for v in profile],
    )


def _gate_means(
    model: keras.Model, layers: list[keras.layers.RNN], x: Any, notes: list[str]
) -> dict[str, dict[str, float]]:
    """Mean gate openings of the LSTM/GRU layers, from their own weights on this batch."""
    gated = [layer for layer in layers if _cell_kind(layer) != "simple"]
    if not gated:
        return {}
    try:
        taps = keras.Model(model.inputs[0], [layer.input for layer in gated])
        inputs = taps(np.asarray(x), training=False)
    except Exception as err:  # nested or shared layers: report, do not fail
        notes.append(f"gate statistics skipped: the layers' inputs are not reachable ({err})")
        return {}
    inputs = inputs if isinstance(inputs, (list, tuple)) else [inputs]
    return {
        layer.name: _gates_of(layer, keras.ops.convert_to_numpy(sequence))
        for layer, sequence in zip(gated, inputs)
    }


def _gates_of(layer: keras.layers.RNN, sequence: np.ndarray) -> dict[str, float]:
    gates = gate_trajectory(layer, sequence)
    names = ("i", "f", "o") if _cell_kind(layer) == "lstm" else ("z", "r")
    return {name: float(gates[name].mean()) for name in names}


def _suggestions(report: DiagnosisReport) -> list[Suggestion]:
    found: list[Suggestion] = []

    def add(key: str, action: str, evidence: str) -> None:
        if any(s.action == action for s in found):
            return  # said already, with the evidence of a worse or earlier layer
        title, page = _CHAPTERS[key]
        found.append(Suggestion(action=action, evidence=evidence, chapter=title, page=page))

    ranked = sorted(report.layers, key=lambda r: -VERDICTS.index(r.verdict))
    for layer in ranked:
        where = f"in {layer.name}"
        sigma = max(layer.sigma_max.values())
        if layer.non_finite:
            add(
                "remedies",
                "clip the whole gradient (optimizer global_clipnorm) and lower the learning rate",
                f"{layer.non_finite} of {len(layer.profile)} gradient norms {where} overflow to "
                "inf/NaN",
            )
        elif layer.verdict == "exploding":
            add(
                "remedies",
                "clip the whole gradient with global_clipnorm, set near the median gradient norm",
                f"the gradient {where} grows by {layer.max_ratio:.3g}x going back "
                f"{report.sequence_length - 1} steps "
                f"(global norm {report.global_gradient_norm:.3g})",
            )
            add(
                "init",
                "lower the recurrent gain: an orthogonal recurrent matrix with gain near 1",
                f"the largest singular value of W_h {where} is {sigma:.3g}; "
                "above 1 it permits growth",
            )
        elif layer.verdict == "vanishing":
            horizon = f"after {layer.horizon} steps (x{layer.decay_per_step:.3g} per step)"
            evidence = f"the gradient {where} falls below 1e-3 of its last-step value {horizon}"
            if layer.kind == "SimpleRNN":
                add(
                    "gating",
                    "use an LSTM or GRU layer, whose gates make the decay learnable",
                    evidence,
                )
                add(
                    "init",
                    "initialize the recurrent matrix orthogonal with gain near 1 (or identity "
                    "with ReLU)",
                    f"{evidence}; W_h has sigma_max {sigma:.3g}",
                )
            elif layer.kind == "LSTM" and layer.gates and layer.gates["f"] < 0.9:
                add(
                    "gating",
                    "raise the forget-gate bias (Keras unit_forget_bias, or chrono "
                    "initialization) so the cell state is kept longer",
                    f"{evidence}; the mean forget gate is {layer.gates['f']:.3f}",
                )
            elif layer.kind == "GRU" and layer.gates and layer.gates["z"] < 0.9:
                add(
                    "gating",
                    "bias the update gate towards keeping the state (a positive z bias)",
                    f"{evidence}; the mean update gate is {layer.gates['z']:.3f}",
                )
            else:
                add(
                    "long",
                    "shorten the dependencies the model must learn, or its sequences",
                    evidence,
                )
            add(
                "remedies",
                "do not expect gradient clipping, a larger learning rate or Adam to help: "
                "they act on the gradient after the long-range terms are lost",
                evidence,
            )
    return found


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "inf", "-inf", "nan": JSON has no such numbers
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value
