"""A gradient-health report for your own Keras RNN: :func:`diagnose`.

It answers "are my gradients vanishing or exploding, over which horizon, and what should
I try?" from one probe of the model on a batch. Two quantities per recurrent row:

- the **profile** ``||dL_i/dh_t||`` for every step t (what
  :func:`rnngrad.probes.state_gradient_norms` returns): the gradient the loss actually
  sends to each step, direct terms from the head included;
- the **transport** by lag ``l``: ``||u_i . dh_T/dh_{T-l}||`` for a fixed random unit
  vector ``u_i`` per example, averaged over examples: how much of a gradient arriving at
  the layer's last state its own recurrence carries back ``l`` steps. It is measured in
  the same compiled call as the profile, by one more backward loop through each layer
  alone (seeded with ``u_i`` at its last state), so each layer's transport is its own
  (not its neighbours'), and it does not depend on the head or the loss. Its square
  averages to the mean squared singular value of the backward Jacobian product
  ``J_T ... J_{T-l+1}``, the quantity mean-field theory calls ``chi^l``. A backward
  (``go_backwards``) row is measured along its own direction of processing; masked
  steps do not count as lags.

The verdict, ``decay_per_step`` and ``horizon`` come from the transport (rules in
:mod:`rnngrad.verdicts`), so a last-step, a per-step and a pooled head on the same
recurrent weights get the same verdict. A row whose profile is zero at every step (the
loss does not reach it) is reported as "no signal", never as growth.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Any

import keras
import numpy as np

from rnngrad._engine import InexactAcrossBatches, ProbeRun, Row, global_norm, run_probe
from rnngrad._validation import check_float
from rnngrad.models import GATES, recurrent_matrix
from rnngrad.probes import LossArg
from rnngrad.profiles import decay_rate
from rnngrad.theory import spectral_radius
from rnngrad.verdicts import (
    EXPLODING_RATIO,
    NO_SIGNAL,
    VANISHING_RATIO,
    VERDICTS,
    transport_verdict,
)

__all__ = [
    "EXPLODING_RATIO",
    "NO_SIGNAL",
    "VANISHING_RATIO",
    "VERDICTS",
    "DiagnosisReport",
    "LayerReport",
    "Suggestion",
    "chapter_links",
    "diagnose",
]


def chapter_links() -> dict[str, dict[str, str]]:
    """The book's chapters that suggestions cite: ``{key: {"title", "page"}}``, where
    ``page`` is the chapter's path on the book's site (data: ``rnngrad/data/chapters.json``)."""
    text = resources.files("rnngrad").joinpath("data/chapters.json").read_text()
    return json.loads(text)


@dataclass
class Suggestion:
    """One thing to try, why (the measurement), and where the book explains it."""

    action: str
    evidence: str
    chapter: str  # the chapter's title
    page: str  # its path on the book's site, e.g. "book/gating.html"


@dataclass
class LayerReport:
    """The gradient health of one recurrent row (a layer, or one direction of one)."""

    name: str
    layer_class: str  # "SimpleRNN", "LSTM", "GRU", "RNN", ...
    cell: str  # "simple", "lstm", "gru" (Keras's cells or subclasses) or "custom"
    direction: str  # "forward" or "backward"
    units: int
    verdict: str  # "healthy", "vanishing", "exploding" or "no signal"
    decay_per_step: float  # exp(fitted log-slope of the transport); < 1 shrinks going back
    horizon: int | None  # lags until the transport falls below the vanishing ratio
    max_transport: float  # the largest transport over lags
    transport: list[float] = field(repr=False)  # by lag 0, 1, ... (1 at lag 0)
    profile: list[float] = field(repr=False)  # ||dL/dh_t||, t = 1..T, input time
    first_step_ratio: float | None = None  # loss gradient, first over last processed step
    non_finite: int = 0  # inf/NaN entries in the profile and transport
    spectral_radius: dict[str, float] = field(default_factory=dict)  # per gate block of W_h
    sigma_max: dict[str, float] = field(default_factory=dict)
    sigma_min: dict[str, float] = field(default_factory=dict)
    # mean gate openings (LSTM: i, f, o; GRU: z, r) of Keras's own cells; None otherwise
    gates: dict[str, float] | None = None
    keep_bias: float | None = None  # mean bias of the forget (LSTM) or update (GRU) gate
    projected_horizon: int | None = None  # healthy but shrinking: lags until the threshold
    projected_growth: int | None = None  # healthy but growing: lags until the exploding one


@dataclass
class DiagnosisReport:
    """What :func:`diagnose` found. ``to_dict``/``to_json`` give the CLI's JSON."""

    verdict: str
    decay_per_step: float  # of the worst layer (NaN when the output is not finite)
    horizon: int | None  # of the worst layer (None when the output is not finite)
    sequence_length: int
    batch_size: int  # examples measured
    loss: str
    global_gradient_norm: float
    non_finite: int
    layers: list[LayerReport]
    suggestions: list[Suggestion]
    thresholds: dict[str, float]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary (non-finite floats become strings "inf"/"nan")."""
        return _json_safe(asdict(self))

    def to_json(self, **kwargs: Any) -> str:
        """The report as one JSON object."""
        return json.dumps(self.to_dict(), **kwargs)

    def summary(self) -> str:
        """A readable multi-line text report, as the command line prints it."""
        rules = self.thresholds
        lines = [
            f"verdict: {self.verdict.upper()}  (T = {self.sequence_length}, "
            f"examples = {self.batch_size}, loss = {self.loss})",
            f"rules: vanishing below {rules['vanishing_ratio']:g}, exploding above "
            f"{rules['exploding_ratio']:g} of the gradient arriving at a layer's last state",
            "global gradient norm: "
            + (
                f"{self.global_gradient_norm:.3g}"
                if not math.isnan(self.global_gradient_norm)
                else "not measured (see the notes)"
            ),
        ]
        for layer in self.layers:
            horizon = "beyond the sequence" if layer.horizon is None else f"{layer.horizon} steps"
            first = "n/a" if layer.first_step_ratio is None else f"{layer.first_step_ratio:.3g}"
            lines.append(
                f"- {layer.name} ({layer.layer_class}, {layer.units} units, {layer.direction}): "
                f"{layer.verdict}; transport x{layer.decay_per_step:.4g} per step, horizon "
                f"{horizon}; loss gradient first/last step {first}"
            )
            if layer.projected_horizon is not None:
                lines.append(
                    f"    healthy over this length, but at this rate the transport would fall "
                    f"below {rules['vanishing_ratio']:g} after about "
                    f"{layer.projected_horizon} steps"
                )
            if layer.projected_growth is not None:
                lines.append(
                    f"    healthy over this length, but the transport grows: at this rate it "
                    f"would exceed {rules['exploding_ratio']:g} (exploding) after about "
                    f"{layer.projected_growth} steps"
                )
            if layer.sigma_max:
                blocks = ", ".join(
                    f"{gate}: rho {layer.spectral_radius[gate]:.3g} / sigma_max "
                    f"{layer.sigma_max[gate]:.3g}"
                    for gate in layer.sigma_max
                )
                lines.append(f"    W_h {blocks}")
            if layer.gates:
                means = ", ".join(f"{g} {v:.3f}" for g, v in layer.gates.items())
                lines.append(f"    mean gates: {means}")
            if layer.non_finite:
                lines.append(f"    {layer.non_finite} non-finite gradient values")
        if self.suggestions:
            lines.append("suggestions:")
            for s in self.suggestions:
                lines.append(
                    f"- {s.action}\n    because {s.evidence}\n    see: {s.chapter} ({s.page})"
                )
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


def diagnose(
    model: keras.Model,
    x: Any,
    y: Any = None,
    *,
    loss: LossArg = None,
    batch_size: int | None = None,
    vanishing_ratio: float = VANISHING_RATIO,
    exploding_ratio: float = EXPLODING_RATIO,
) -> DiagnosisReport:
    """Measure a model's gradient flow on data and say what it means.

    Parameters
    ----------
    model : keras.Model
        Any model the probe supports (:func:`rnngrad.probes.state_gradient_norms`):
        stacked, bidirectional, masked, multi-input, with any head.
    x : array-like, list or dict of array-like, or tf.data.Dataset
        Representative inputs, as for the probe. Real data is better than noise:
        saturation, and so the verdict, depends on the inputs.
    y : array-like, optional
        Targets. Without them the loss is ``1/2 ||output||^2`` per example.
    loss : None, str, keras.losses.Loss or callable
        As for the probe: by default the model's compiled loss, else MSE.
    batch_size : int, optional
        Measure in batches of at most this many examples. The profile, the transport
        and the gate openings are the same in any batches (each example keeps its own
        direction u); the global gradient norm is the whole data's when the loss is a
        mean of per-example losses, and is not reported (NaN, with a note) when batches
        cannot give it exactly (a summing reduction, a masked loss).
    vanishing_ratio, exploding_ratio : float
        The transport below (above) which a layer is vanishing (exploding); also the
        horizon's threshold. Defaults :data:`~rnngrad.verdicts.VANISHING_RATIO`,
        :data:`~rnngrad.verdicts.EXPLODING_RATIO`.

    Returns
    -------
    DiagnosisReport
        Its ``thresholds`` record the values used.

    Examples
    --------
    >>> import rnngrad
    >>> model = rnngrad.build_rnn("simple", 32, input_dim=2, recurrent_gain=0.5)
    >>> x, y = rnngrad.tasks.adding_problem(16, 50, seed=0)
    >>> report = diagnose(model, x, y)
    >>> report.verdict, report.layers[0].horizon is not None
    ('vanishing', True)
    """
    vanishing_ratio = check_float("vanishing_ratio", vanishing_ratio, positive=True)
    exploding_ratio = check_float("exploding_ratio", exploding_ratio, positive=True)
    if not vanishing_ratio < 1 < exploding_ratio:
        raise ValueError(
            "vanishing_ratio must be < 1 < exploding_ratio, got "
            f"{vanishing_ratio} and {exploding_ratio}"
        )
    run = run_probe(
        model, x, y, loss=loss, state="h", batch_size=batch_size, transport=True, gates=True
    )
    if not any(count.sum() for count in run.norm_counts):
        raise ValueError("every step of every example in x is masked: there is nothing to diagnose")
    norm = run.global_norm  # measured in the same pass where that is exact
    norm_note = None
    if norm is None:
        try:
            norm, _ = global_norm(model, x, y, loss=loss, batch_size=batch_size)
        except InexactAcrossBatches as err:  # reported as not measured, never as a guess
            norm, norm_note = float("nan"), f"no global gradient norm is reported: {err}"
    rules = {"vanishing_ratio": vanishing_ratio, "exploding_ratio": exploding_ratio}
    reports = _layer_reports(run, rules)
    with_signal = [r for r in reports if r.verdict != NO_SIGNAL]
    if with_signal:
        worst = max(with_signal, key=lambda r: VERDICTS.index(r.verdict))
        verdict, decay, reach = worst.verdict, worst.decay_per_step, worst.horizon
    else:
        verdict, decay, reach = NO_SIGNAL, float("nan"), None
    notes = [norm_note] if norm_note else []
    if run.output_non_finite:
        # The states behind a non-finite output have overflowed: whatever the transport
        # through them reads (a ReLU's zero slope at inf reads as vanishing), the model
        # is past exploding. The rows' decay and horizon were read through those states,
        # so the report gives none.
        verdict, decay, reach = "exploding", float("nan"), None
        notes.append(
            f"the model's own output model(x) is not finite for {run.output_non_finite} of "
            f"{run.examples} examples (activations that overflowed, as in a diverged run, or "
            "an example masked at every step): the gradients are taken through non-finite "
            "states, so the verdict is 'exploding' whatever the layers' rows read, and "
            "the report gives no decay rate or horizon"
        )
    if run.loss.source == "default":
        notes.append("the model is not compiled, so the loss is MSE; pass loss= to choose")
    if run.loss.source == "no targets":
        notes.append(
            "no targets were given: the profiles and the global gradient norm are those of "
            "the target-free loss 1/2 ||output||^2 (pass y for your loss's); the verdicts "
            "read the transport, which does not depend on the loss"
        )
    report = DiagnosisReport(
        verdict=verdict,
        decay_per_step=decay,
        horizon=reach,
        sequence_length=max(len(r.profile) for r in reports),
        batch_size=run.examples,
        loss=run.loss.describe(),
        global_gradient_norm=norm,
        non_finite=sum(r.non_finite for r in reports),
        layers=reports,
        suggestions=[],
        thresholds=rules,
        notes=notes,
    )
    clipping = _optimizer_clipping(model)
    if clipping is not None:
        report.notes.append(f"the model's optimizer already clips ({clipping})")
    ungated = [r.name for r in reports if r.cell in ("lstm", "gru") and r.gates is None]
    if ungated:
        report.notes.append(
            f"{', '.join(ungated)} run their own cell code (a cell subclass or "
            "implementation=1), so their gate openings are not measured and no gate-bias "
            "advice is given; the profile and transport are exact as for every row"
        )
    conflicted = _shared_with_conflicting_verdicts(run.rows, reports)
    if conflicted:
        report.notes.append(
            f"{', '.join(sorted(conflicted))} share weights with rows of another verdict (the "
            "same layer on different inputs): no advice on their recurrent matrices"
        )
    report.suggestions = _suggestions(report, rules, clipping, conflicted)
    return report


def _optimizer_clipping(model: keras.Model) -> str | None:
    """The clipping the compiled model's optimizer already does, as Keras names it."""
    optimizer = getattr(model, "optimizer", None) if getattr(model, "compiled", False) else None
    for option in ("global_clipnorm", "clipnorm", "clipvalue"):
        value = getattr(optimizer, option, None)
        if value is not None:
            return f"{option}={value:g}"
    return None


def _shared_with_conflicting_verdicts(rows: list[Row], reports: list[LayerReport]) -> set[str]:
    """Rows of one layer (called more than once) whose verdicts differ."""
    by_layer: dict[int, list[LayerReport]] = {}
    for row, report in zip(rows, reports):
        by_layer.setdefault(id(row.layer), []).append(report)
    conflicted: set[str] = set()
    for group in by_layer.values():
        if len({r.verdict for r in group} - {NO_SIGNAL}) > 1:
            conflicted |= {r.name for r in group}
    return conflicted


# --------------------------------------------------------------------------- layers


def _layer_reports(run: ProbeRun, rules: dict[str, float]) -> list[LayerReport]:
    profiles = run.norms()
    reports = []
    for row, profile, counts, transport, gates in zip(
        run.rows, profiles, run.norm_counts, run.transport(), run.gate_means
    ):
        counted = profile[: len(counts)][counts > 0]  # steps not masked in every example
        reports.append(_layer_report(row, counted, profile, transport, gates, rules))
    return reports


def _layer_report(
    row: Row,
    counted: np.ndarray,
    profile: np.ndarray,
    transport: np.ndarray,
    gates: dict | None,
    rules: dict[str, float],
) -> LayerReport:
    no_signal = counted.size == 0 or bool(np.all(counted == 0))
    if no_signal:
        verdict = NO_SIGNAL
    else:
        verdict = transport_verdict(
            transport,
            vanishing_ratio=rules["vanishing_ratio"],
            exploding_ratio=rules["exploding_ratio"],
        )
    rate = decay_rate(transport[::-1]) if transport.size > 1 else float("nan")
    below = np.nonzero(np.isfinite(transport) & (transport < rules["vanishing_ratio"]))[0]
    rho, sigma, sigma_min = {}, {}, {}
    if row.family is not None:
        for gate in GATES[row.family]:
            matrix = recurrent_matrix(row.layer, None if row.family == "simple" else gate)
            rho[gate], sigma[gate], sigma_min[gate] = _spectrum(matrix)
    finite = transport[np.isfinite(transport)]
    projected = growth = None
    if verdict == "healthy" and math.isfinite(rate) and rate < 0:
        # At the fitted rate, the lag at which the transport would cross the threshold.
        projected = math.ceil(math.log(rules["vanishing_ratio"]) / rate)
    if verdict == "healthy" and math.isfinite(rate) and rate > 0:
        # the same for a transport that grows: the lag at which it would read exploding
        growth = math.ceil(math.log(rules["exploding_ratio"]) / rate)
    return LayerReport(
        name=row.name,
        layer_class=type(row.layer).__name__,
        cell=row.family or "custom",
        direction="backward" if row.backwards else "forward",
        units=row.units,
        verdict=verdict,
        decay_per_step=float(math.exp(rate)) if math.isfinite(rate) else float("nan"),
        horizon=int(below[0]) if below.size else None,
        max_transport=float(finite.max()) if finite.size == transport.size else float("inf"),
        transport=[float(v) for v in transport],
        profile=[float(v) for v in profile],
        first_step_ratio=_first_over_last(counted, row.backwards),
        non_finite=int(np.count_nonzero(~np.isfinite(counted)))
        + int(np.count_nonzero(~np.isfinite(transport))),
        spectral_radius=rho,
        sigma_max=sigma,
        sigma_min=sigma_min,
        gates=gates,
        keep_bias=_keep_bias(row),
        projected_horizon=projected,
        projected_growth=growth,
    )


_SPECTRA: dict[tuple, tuple[float, float, float]] = {}


def _spectrum(matrix: np.ndarray) -> tuple[float, float, float]:
    """(spectral radius, largest and smallest singular value) of a recurrent matrix,
    remembered by its exact contents: a model diagnosed again on the same weights (on
    other data, or with other thresholds) skips the eigenvalue and singular-value
    computations, which for a small model cost as much as the probe itself."""
    matrix = np.ascontiguousarray(matrix, dtype=np.float64)
    key = (matrix.shape, hashlib.sha1(matrix.tobytes()).hexdigest())
    if key not in _SPECTRA:
        if len(_SPECTRA) > 256:
            _SPECTRA.clear()
        singular = np.linalg.svd(matrix, compute_uv=False)
        _SPECTRA[key] = (spectral_radius(matrix), float(singular.max()), float(singular.min()))
    return _SPECTRA[key]


def _keep_bias(row: Row) -> float | None:
    """The mean bias of the gate that keeps the state: an LSTM's forget gate, a GRU's
    update gate (input and recurrent biases together); None without one."""
    cell = row.layer.cell
    if row.family not in ("lstm", "gru") or not getattr(cell, "use_bias", False):
        return None
    bias = cell.bias.numpy().astype(np.float64)
    units = cell.units
    if row.family == "lstm":
        return float(bias[units : 2 * units].mean())
    if bias.ndim == 2:  # reset_after: input and recurrent biases, both added to z
        return float((bias[0, :units] + bias[1, :units]).mean())
    return float(bias[:units].mean())


# --------------------------------------------------------------------------- suggestions


def _first_over_last(counted: np.ndarray, backwards: bool) -> float | None:
    """The loss gradient at the first processed step over the last processed one (a
    backward row processes input time from its end); None if the last one is zero."""
    if counted.size == 0:
        return None
    first, last = (counted[-1], counted[0]) if backwards else (counted[0], counted[-1])
    if not (np.isfinite(last) and last > 0):
        return None
    return float(first / last)


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def _suggestions(
    report: DiagnosisReport,
    rules: dict[str, float],
    clipping: str | None = None,
    conflicted: set[str] = frozenset(),
) -> list[Suggestion]:
    """What to try, from the measurements: each names its layers and its evidence, none
    repeats what the model already does, and rows that need the same change share one
    suggestion."""
    links = chapter_links()
    found: dict[tuple[str, str], tuple[list[str], list[str]]] = {}

    def add(key: str, action: str, name: str, evidence: str) -> None:
        names, evidences = found.setdefault((key, action), ([], []))
        names.append(name)
        evidences.append(evidence)

    ranked = sorted(
        report.layers,
        key=lambda r: -VERDICTS.index(r.verdict) if r.verdict in VERDICTS else -len(VERDICTS),
    )
    vanishing_ratio = rules["vanishing_ratio"]
    for layer in ranked:
        name = layer.name
        sigma = max(layer.sigma_max.values()) if layer.sigma_max else None
        lags = len(layer.transport) - 1
        if layer.verdict == NO_SIGNAL:
            add(
                "diagnose",
                "check the path from {layers} to the output",
                name,
                f"the loss gradient is zero at every step of {name} on this data",
            )
        elif layer.verdict == "exploding":
            growth = (
                "overflows to inf"
                if not math.isfinite(layer.max_transport)
                else f"grows to {layer.max_transport:.3g}x"
            )
            evidence = (
                f"in {name} the gradient arriving at the last state {growth} within {lags} "
                f"steps back (x{layer.decay_per_step:.3g} per step; threshold "
                f"{rules['exploding_ratio']:g})"
            )
            if sigma is not None and sigma > 1.0 and name not in conflicted:
                add(
                    "init",
                    "scale down the recurrent matrix of {layers} (e.g. orthogonal with gain 1)",
                    name,
                    f"{evidence}; its largest singular value is {sigma:.3g}, above 1",
                )
            if clipping is None:
                add(
                    "remedies",
                    "if training is unstable, bound each update with global_clipnorm (set "
                    "near the median gradient norm); clipping bounds the step, not the growth",
                    name,
                    evidence
                    + (
                        f"; the global gradient norm is {report.global_gradient_norm:.3g}"
                        if not math.isnan(report.global_gradient_norm)
                        else ""
                    ),
                )
        elif layer.verdict == "vanishing":
            evidence = (
                f"in {name} the gradient arriving at the last state falls below "
                f"{vanishing_ratio:g} after {layer.horizon} steps (x{layer.decay_per_step:.3g} "
                "per step)"
            )
            _vanishing_suggestions(
                layer, evidence, lags, vanishing_ratio, add, layer.name in conflicted
            )
    return [
        Suggestion(
            action.format(layers=_join(names)),
            "; ".join(evidences),
            links[key]["title"],
            links[key]["page"],
        )
        for (key, action), (names, evidences) in found.items()
    ]


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _vanishing_suggestions(layer, evidence, lags, vanishing_ratio, add, shared) -> None:
    name = layer.name
    if layer.cell == "simple":
        add("gating", "replace {layers} by an LSTM or GRU layer", name, evidence)
        sigma = layer.sigma_max.get("h")
        smallest = layer.sigma_min.get("h")
        orthogonal = sigma is not None and abs(sigma - 1) < 0.05 and abs(smallest - 1) < 0.05
        if sigma is not None and not orthogonal and not shared:
            spread = (
                f"all {sigma:.3g}"
                if math.isclose(sigma, smallest, rel_tol=1e-3)
                else f"from {smallest:.3g} to {sigma:.3g}"
            )
            add(
                "init",
                "initialize the recurrent matrix of {layers} orthogonal with gain 1 (or "
                "identity with ReLU)",
                name,
                f"{evidence}; its singular values are {spread}",
            )
        return
    keep_name = {"lstm": "f", "gru": "z"}.get(layer.cell)
    if keep_name and layer.gates and keep_name in layer.gates:
        keep = layer.gates[keep_name]
        # The gate path alone keeps keep^l of the gradient: to stay above the ratio over
        # the sequence needs keep >= ratio^(1 / lags).
        needed = vanishing_ratio ** (1.0 / max(lags, 1))
        gate = "forget" if keep_name == "f" else "update"
        if keep < needed and layer.keep_bias is not None:
            # Shifting the bias shifts every pre-activation: to first order the mean gate
            # moves from logit(keep) to logit(needed).
            shift = _logit(needed) - _logit(min(max(keep, 1e-6), 1 - 1e-6))
            target = layer.keep_bias + shift
            add(
                "gating",
                f"raise the {gate}-gate bias of {{layers}} to about {target:.1f} (for a mean "
                f"{gate} gate of {needed:.3f}), e.g. by chrono initialization",
                name,
                f"{evidence}; its {gate}-gate bias is {layer.keep_bias:.2f} on average and its "
                f"mean {gate} gate {keep:.3f}, and keeping {vanishing_ratio:g} of the gradient "
                f"over {lags} steps needs at least {needed:.3f}",
            )
            return
    add(
        "long",
        "shorten the dependencies {layers} must carry (shorter sequences, or a summary of "
        "the early steps fed later)",
        name,
        evidence,
    )


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "inf", "-inf", "nan": JSON has no such numbers
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value
