"""Sweeps over settings x seeds with tidy records, and success rates under a fixed rule.

:func:`sweep` trains every setting (a dict of model and training options) with every
seed, reusing compiled models where it can, and returns one dict per run, ready for a
table or a figure. :func:`success_rate` counts the runs that pass a rule the caller
states explicitly, fixed before looking at the results.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras

from rnngrad._tflog import quiet_retracing_warnings
from rnngrad._validation import check_array
from rnngrad.training import (
    Evaluation,
    Trainer,
    check_evaluate,
    check_seeds,
    is_float_rate,
    report_progress,
    shared_trainer,
)

__all__ = ["TRAIN_OPTIONS", "evaluation", "success_rate", "sweep"]

TRAIN_OPTIONS = (
    "epochs",
    "batch_size",
    "optimizer",
    "learning_rate",
    "clipnorm",
    "clipvalue",
    "global_clipnorm",
    "loss",
    "validation_data",
    "callbacks",
    "verbose",
)
"""Keys of a :func:`sweep` setting that go to ``train``; the others go to ``build``."""


def sweep(
    build: Callable[..., keras.Model],
    x: Any,
    y: Any,
    settings: Sequence[Mapping[str, Any]],
    seeds: Sequence[int],
    *,
    progress: bool | None = None,
    evaluate: Evaluation | None = None,
    trainers: dict | None = None,
    **train_kwargs: Any,
) -> list[dict[str, Any]]:
    """Train every setting with every seed and return one tidy record per run.

    Each setting is a dict. Its keys that are :data:`TRAIN_OPTIONS` (``learning_rate``,
    ``optimizer``, ``epochs``, clipping, ...) override ``train_kwargs`` for that
    setting; the other keys are passed to ``build(seed, **those)``. The model is
    compiled once per setting and reused across seeds, as in
    :func:`~rnngrad.training.train_seeds`; consecutive settings that differ only in a
    float ``learning_rate`` share one compiled model too, since the rate is a variable
    of the optimizer.

    Parameters
    ----------
    build : callable
        ``(seed, **model_options) -> keras.Model``.
    x, y : array-like
        Training data, shared by every run.
    settings : sequence of dict
        E.g. ``[{"learning_rate": 0.1}, {"learning_rate": 1.0}]`` or
        ``[{"cell": "lstm"}, {"cell": "gru"}]``.
    seeds : sequence of int
        Every setting runs once per seed.
    progress : bool, optional
        One line per run on stderr; by default only when stderr is a terminal.
    evaluate : callable, optional
        ``model -> float or dict``, as for :func:`~rnngrad.training.train_seeds`; its
        values join the record.
    trainers : dict, optional
        Compiled models to share with other calls, as for
        :func:`~rnngrad.training.train_seeds`: every run then trains in the one kept for
        its architecture, optimizer and loss, whatever the order of the settings.
    **train_kwargs
        Defaults for :func:`~rnngrad.training.train` (``epochs`` is required, here or
        in every setting).

    Returns
    -------
    list of dict
        One per run, settings in order, seeds within: the setting's keys, ``seed``,
        ``diverged``, ``epochs_run``, ``seconds``, ``final_<key>`` for every history
        key (``final_loss``, ``final_val_loss``, ...), ``history`` (the whole
        per-epoch history, for curves) and the evaluation's keys.

    Examples
    --------
    >>> import rnngrad
    >>> x, y = rnngrad.tasks.adding_problem(64, 10, seed=0)
    >>> def build(seed, units):
    ...     return rnngrad.build_rnn("simple", units, input_dim=2, seed=seed)
    >>> records = sweep(build, x, y, [{"units": 4}, {"units": 8}], [0, 1], epochs=1)
    >>> [(r["units"], r["seed"]) for r in records]
    [(4, 0), (4, 1), (8, 0), (8, 1)]
    """
    if not callable(build):
        raise TypeError(f"build must be a callable (seed, **options) -> keras.Model, got {build!r}")
    settings = _check_settings(settings)
    seeds = check_seeds(seeds)
    check_evaluate(evaluate)
    if trainers is not None and not isinstance(trainers, dict):
        raise TypeError(f"trainers must be a dict (empty at first), got {type(trainers).__name__}")
    records: list[dict[str, Any]] = []
    runner, shared = None, None
    total = len(settings) * len(seeds)
    for setting in settings:
        model_options = {k: v for k, v in setting.items() if k not in TRAIN_OPTIONS}
        options = {**train_kwargs, **{k: v for k, v in setting.items() if k in TRAIN_OPTIONS}}
        rate = options.get("learning_rate", 1e-3)
        reusable = {k: v for k, v in setting.items() if k != "learning_rate"}
        if runner is None or not is_float_rate(rate) or not _same(reusable, shared):
            runner = Trainer(options)
            shared = reusable if is_float_rate(rate) else None
        for seed in seeds:
            model = build(seed, **model_options)
            if trainers is not None and isinstance(model, keras.Model):
                runner, rate = shared_trainer(trainers, model, options)
            result = runner.run(model, x, y, seed, evaluate=evaluate, learning_rate=rate)
            record = {**setting, "seed": seed, "diverged": result.diverged}
            record["epochs_run"] = len(result.history.get("loss", []))
            record["seconds"] = result.seconds
            record.update({f"final_{key}": result.final(key) for key in result.history})
            record["history"] = result.history
            record.update(result.extra)
            records.append(record)
            label = ", ".join(f"{k}={v}" for k, v in setting.items())
            report_progress(progress, f"[{len(records)}/{total}] {label} seed {seed}", result)
    return records


def evaluation(x: Any, y: Any, *, key: str = "test_loss") -> Callable[[keras.Model], dict]:
    """An ``evaluate`` callable for :func:`sweep`: the model's loss on held-out data.

    Parameters
    ----------
    x, y : array-like
        The held-out inputs and targets.
    key : str, default "test_loss"
        The record key the loss is stored under.

    Returns
    -------
    callable
        ``model -> {key: model.evaluate(x, y)}``, the compiled loss as a float.

    Examples
    --------
    >>> import rnngrad
    >>> x, y = rnngrad.tasks.adding_problem(64, 10, seed=0)
    >>> def build(seed):
    ...     return rnngrad.build_rnn("simple", 4, input_dim=2, seed=seed)
    >>> evaluate = evaluation(x, y, key="mse")
    >>> records = sweep(build, x, y, [{}], [0], epochs=1, evaluate=evaluate)
    >>> sorted(k for k in records[0] if k.endswith("mse"))
    ['mse']
    """
    x = check_array("x", x)
    y = check_array("y", y)
    if len(x) != len(y):
        raise ValueError(
            f"x and y must have the same number of examples, got {len(x)} and {len(y)}"
        )
    if not isinstance(key, str) or not key:
        raise TypeError(f"key must be a non-empty string, got {key!r}")

    def evaluate(model: keras.Model) -> dict[str, float]:
        with quiet_retracing_warnings():  # one test function per model, by design
            return {key: float(model.evaluate(x, y, verbose=0))}

    return evaluate


def success_rate(
    records: Sequence[Mapping[str, Any]],
    success: Callable[[Mapping[str, Any]], bool],
    *,
    by: Sequence[str],
) -> list[dict[str, Any]]:
    """The fraction of runs that meet a success rule, per group of settings.

    Parameters
    ----------
    records : sequence of dict
        Runs, e.g. from :func:`sweep`.
    success : callable
        ``record -> bool``: the rule, fixed before the runs are looked at, e.g.
        ``lambda r: r["test_mse"] < 0.1 * ADDING_BASELINE_MSE``.
    by : sequence of str
        The record keys that define a group, e.g. ``["cell"]``.

    Returns
    -------
    list of dict
        One per group, in order of first appearance: the ``by`` keys, ``successes``,
        ``runs`` and ``rate`` (successes / runs).

    Examples
    --------
    >>> records = [{"cell": "lstm", "mse": 0.01}, {"cell": "lstm", "mse": 0.2}]
    >>> success_rate(records, lambda r: r["mse"] < 0.05, by=["cell"])
    [{'cell': 'lstm', 'successes': 1, 'runs': 2, 'rate': 0.5}]
    """
    if not callable(success):
        raise TypeError(f"success must be a callable record -> bool, got {success!r}")
    if isinstance(by, str) or not all(isinstance(key, str) for key in by):
        raise TypeError(f"by must be a sequence of key names, got {by!r}")
    if not records:
        raise ValueError("records must hold at least one run")
    groups: dict[tuple, dict[str, Any]] = {}
    for record in records:
        if not isinstance(record, Mapping):
            raise TypeError(f"records must hold dicts, got {type(record).__name__}")
        missing = [key for key in by if key not in record]
        if missing:
            raise ValueError(f"by names keys missing from a record: {missing}")
        key = tuple(record[k] for k in by)
        group = groups.setdefault(key, {**dict(zip(by, key)), "successes": 0, "runs": 0})
        group["successes"] += int(bool(success(record)))
        group["runs"] += 1
    return [{**group, "rate": group["successes"] / group["runs"]} for group in groups.values()]


def _check_settings(settings: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(settings, Mapping) or not isinstance(settings, Sequence):
        raise TypeError(f"settings must be a sequence of dicts, got {type(settings).__name__}")
    if not settings:
        raise ValueError("settings must hold at least one setting")
    checked = []
    for setting in settings:
        if not isinstance(setting, Mapping) or not all(isinstance(k, str) for k in setting):
            raise TypeError(f"settings must hold dicts with string keys, got {setting!r}")
        reserved = {"seed", "diverged", "epochs_run", "seconds", "history"} & set(setting)
        if reserved:
            raise ValueError(f"settings may not use the record's own keys {sorted(reserved)}")
        checked.append(dict(setting))
    return checked


def _same(a: Mapping[str, Any], b: Mapping[str, Any] | None) -> bool:
    """Whether two settings are equal (False when a value cannot be compared, e.g. arrays)."""
    if b is None or a.keys() != b.keys():
        return False
    try:
        return all(bool(a[key] == b[key]) for key in a)
    except (TypeError, ValueError):
        return False
