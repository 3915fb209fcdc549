"""Small, reproducible training runs: one entry point, clipping, schedules, seeds.

:func:`train` compiles a model with an optimizer built by :func:`make_optimizer` (Keras's
own clipping options: ``clipnorm`` per variable, ``clipvalue`` per element,
``global_clipnorm`` for the whole gradient as in Pascanu et al. 2013; a float learning
rate or a schedule such as :class:`~rnngrad.experiments.schedules.WarmupDecay`), fits it, and
returns a :class:`TrainResult` that keeps the history even when the loss becomes NaN or
infinite: divergence is a result, not a crash. :func:`train_seeds` repeats a run over
seeds reusing one compiled model, since tracing a recurrent model costs seconds
(:func:`rnngrad.experiments.sweeps.sweep` does settings x seeds); :class:`Trainer` is that reuse on
its own, for runs on different data too. The callbacks live in
:mod:`rnngrad.callbacks`; ``StopOnNonFinite`` is still importable from here.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from rnngrad._seed import seed_run
from rnngrad._tflog import quiet_retracing_warnings
from rnngrad._validation import check_array, check_choice, check_float, check_int
from rnngrad.callbacks import StopOnNonFinite

__all__ = [
    "OPTIMIZERS",
    "TrainResult",
    "Trainer",
    "architecture_key",
    "build_optimizer",
    "check_evaluate",
    "check_fit_arguments",
    "check_seeds",
    "is_float_rate",
    "make_optimizer",
    "report_progress",
    "shared_trainer",
    "train",
    "train_seeds",
]

OPTIMIZERS = {
    "sgd": keras.optimizers.SGD,
    "adam": keras.optimizers.Adam,
    "rmsprop": keras.optimizers.RMSprop,
}
"""Optimizer names :func:`make_optimizer` accepts."""


@dataclass
class TrainResult:
    """What a training run produced.

    Attributes
    ----------
    history : dict of str to list of float
        Per-epoch values, as Keras's ``History`` records them (``loss``, ``val_loss``,
        and anything callbacks add). The epoch in which training stopped on a
        non-finite loss is included.
    diverged : bool
        True if the loss became NaN or infinite and training stopped.
    stopped_at : tuple or None
        ``(epoch, batch)``, both counted from 0, where the loss was first seen
        non-finite: exactly that batch when a callback watches every batch, else the
        last batch of the ``STEPS_PER_EXECUTION`` updates in which it became so.
    seconds : float
        Wall-clock duration of the fit.
    seed : int
        The seed the run used.
    """

    history: dict[str, list[float]]
    diverged: bool
    stopped_at: tuple[int, int] | None
    seconds: float
    seed: int
    extra: dict[str, Any] = field(default_factory=dict)

    def final(self, key: str = "loss") -> float:
        """The last recorded value of ``key`` (NaN if it was never recorded)."""
        values = self.history.get(key, [])
        return float(values[-1]) if values else float("nan")


def make_optimizer(
    name: str = "adam",
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule = 1e-3,
    *,
    clipnorm: float | None = None,
    clipvalue: float | None = None,
    global_clipnorm: float | None = None,
    momentum: float = 0.0,
) -> keras.optimizers.Optimizer:
    """A Keras optimizer with the chosen learning rate (or schedule) and clipping.

    Parameters
    ----------
    name : {"sgd", "adam", "rmsprop"}
    learning_rate : float or keras.optimizers.schedules.LearningRateSchedule
        A positive rate, or a schedule of the step count.
    clipnorm : float, optional
        Rescale each variable's gradient to at most this norm (per variable).
    clipvalue : float, optional
        Clip every gradient element to ``[-clipvalue, clipvalue]`` (changes direction).
    global_clipnorm : float, optional
        Rescale the whole gradient to at most this norm: Pascanu's clipping.
    momentum : float, default 0.0
        SGD momentum (ignored by the other optimizers).

    Returns
    -------
    keras.optimizers.Optimizer
    """
    check_choice("optimizer", name, OPTIMIZERS)
    if not isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule):
        learning_rate = check_float("learning_rate", learning_rate, positive=True)
    options: dict[str, Any] = {"learning_rate": learning_rate}
    given = {"clipnorm": clipnorm, "clipvalue": clipvalue, "global_clipnorm": global_clipnorm}
    given = {key: value for key, value in given.items() if value is not None}
    if len(given) > 1:
        raise ValueError(f"choose at most one of clipnorm, clipvalue, global_clipnorm; got {given}")
    for key, value in given.items():
        options[key] = check_float(key, value, positive=True)
    if name == "sgd":
        options["momentum"] = check_float("momentum", momentum)
    return OPTIMIZERS[name](**options)


def train(
    model: keras.Model,
    x: Any,
    y: Any,
    *,
    epochs: int,
    batch_size: int = 32,
    optimizer: str | keras.optimizers.Optimizer = "adam",
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule = 1e-3,
    clipnorm: float | None = None,
    clipvalue: float | None = None,
    global_clipnorm: float | None = None,
    loss: str | Callable | None = None,
    validation_data: tuple[Any, Any] | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    seed: int = 0,
    verbose: int = 0,
) -> TrainResult:
    """Compile and fit ``model``; stop (and warn) on a non-finite loss, keeping the history.

    Parameters
    ----------
    model : keras.Model
        The model to train, in place.
    x, y : array-like
        Training data.
    epochs : int
        Number of passes over the data, >= 1.
    batch_size : int, default 32
    optimizer : str or keras.optimizers.Optimizer, default "adam"
        A name for :func:`make_optimizer` (with ``learning_rate`` and the clipping
        options), or a ready optimizer (then those options must be left unset).
    learning_rate, clipnorm, clipvalue, global_clipnorm
        See :func:`make_optimizer`.
    loss : str or callable, optional
        Any Keras loss. By default the loss ``model`` was compiled with, and MSE for a
        model that was not compiled.
    validation_data : tuple, optional
        ``(x_val, y_val)`` evaluated after every epoch (``val_loss`` in the history).
    callbacks : sequence of keras.callbacks.Callback
        Extra callbacks, e.g. a gradient recorder.
    seed : int, default 0
        Seeds everything (shuffling included) before the fit.
    verbose : int, default 0
        Keras's verbosity.

    Returns
    -------
    TrainResult
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model, got {type(model).__name__}")
    if loss is None:  # the model's own loss, as the probe uses it
        loss = getattr(model, "loss", None) or "mse"
    _compile(model, optimizer, learning_rate, clipnorm, clipvalue, global_clipnorm, loss)
    return _fit(model, x, y, epochs, batch_size, validation_data, callbacks, seed, verbose)


_FIT_OPTIONS = ("epochs", "batch_size", "validation_data", "callbacks", "verbose")

Evaluation = Callable[[keras.Model], "float | Mapping[str, float]"]


def train_seeds(
    build: Callable[[int], keras.Model],
    x: Any,
    y: Any,
    seeds: Sequence[int],
    *,
    progress: bool | None = None,
    evaluate: Evaluation | None = None,
    trainers: dict | None = None,
    **train_kwargs: Any,
) -> list[TrainResult]:
    """Train a freshly initialized model for each seed, reusing one compiled model.

    ``build(seed)`` gives the initial weights for each seed. The first model is
    compiled once; for later seeds its weights are replaced by ``build(seed)``'s and the
    optimizer's state (step count, moments) is reset, so the run is the same as training
    ``build(seed)`` from scratch, without tracing the training step again. With
    ``trainers``, calls share compiled models too: models that differ only in their
    weights (another initialization, gain or seed), trained with the same optimizer and
    loss, reuse one.

    Parameters
    ----------
    build : callable
        ``seed -> keras.Model``, the same architecture for every seed.
    x, y : array-like
        Training data.
    seeds : sequence of int
        One run per seed.
    progress : bool, optional
        Print one line per run to stderr. By default only when stderr is a terminal,
        so notebooks and the book stay quiet.
    evaluate : callable, optional
        ``model -> float or dict of str to float``, called on the trained model after
        each run (e.g. a test-set loss); the values go to ``TrainResult.extra`` (a float
        under the key ``"score"``).
    trainers : dict, optional
        A dict, empty at first, to pass to several calls (of this function and of
        :func:`rnngrad.experiments.sweeps.sweep`): it keeps one :class:`Trainer` per
        architecture (:func:`architecture_key`) and optimizer and loss. An optimizer
        instance counts by its configuration, so a new optimizer configured like an
        earlier one reuses the earlier one's compiled model; a learning rate that is a
        number is not part of it (it is a variable of the optimizer, set for each run),
        nor are ``epochs``, ``batch_size`` and the other options of the fit.
    **train_kwargs
        Passed to :func:`train` (``epochs`` is required).

    Returns
    -------
    list of TrainResult
        In the order of ``seeds``.

    Examples
    --------
    >>> import rnngrad
    >>> x, y = rnngrad.tasks.adding_problem(64, 10, seed=0)
    >>> def build(gain):
    ...     return lambda s: rnngrad.build_rnn(
    ...         "simple", 4, input_dim=2, recurrent_gain=gain
    ...     )
    >>> shared = {}
    >>> # one architecture: both calls train in one compiled model
    >>> for gain in (0.5, 2.0):
    ...     runs = train_seeds(
    ...         build(gain), x, y, [0, 1], epochs=1, trainers=shared
    ...     )
    >>> len(shared)
    1
    """
    seeds = check_seeds(seeds)
    check_evaluate(evaluate)
    if trainers is not None and not isinstance(trainers, dict):
        raise TypeError(f"trainers must be a dict (empty at first), got {type(trainers).__name__}")
    runner, rate = None, None
    results = []
    for index, seed in enumerate(seeds):
        fresh = build(seed)
        if runner is None:
            runner = Trainer(train_kwargs)
            if trainers is not None and isinstance(fresh, keras.Model):
                runner, rate = shared_trainer(trainers, fresh, train_kwargs)
        results.append(runner.run(fresh, x, y, seed, evaluate=evaluate, learning_rate=rate))
        report_progress(progress, f"[{index + 1}/{len(seeds)}] seed {seed}", results[-1])
    return results


class Trainer:
    """One compiled model, reused for many runs that each start from fresh weights.

    Tracing a recurrent model's training step costs seconds; :func:`train_seeds` and
    :func:`rnngrad.experiments.sweeps.sweep` avoid paying it for every seed by compiling the first
    model and, for every later run, loading the fresh model's weights into it and
    resetting the optimizer's state (step count, moments). The run is then the same as
    training the fresh model from scratch with :func:`train`. A ``Trainer`` does the
    same for runs on different data too (a task and its permuted version, longer
    sequences; new input shapes retrace once), as long as every fresh model has the
    architecture of the first one: a model that differs in anything but its weights
    (layer types, sizes, activations) is refused.

    Parameters
    ----------
    **train_kwargs
        Options of :func:`train` (``epochs`` is required): the optimizer, learning
        rate, clipping and loss are fixed at the first compile; ``batch_size``,
        ``validation_data``, ``callbacks`` and ``verbose`` apply to every fit.

    Attributes
    ----------
    model : keras.Model or None
        The compiled model, None before the first run.

    Examples
    --------
    >>> import rnngrad
    >>> x, y = rnngrad.tasks.adding_problem(64, 10, seed=0)
    >>> trainer = Trainer(epochs=1, learning_rate=0.01)
    >>> runs = [
    ...     trainer.run(
    ...         rnngrad.build_rnn("simple", 4, input_dim=2, seed=s),
    ...         x, y, seed=s,
    ...     )
    ...     for s in (0, 1)
    ... ]
    >>> len(runs), runs[0].seed, runs[1].seed
    (2, 0, 1)
    """

    def __init__(self, train_kwargs: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        kwargs = {**dict(train_kwargs or {}), **kwargs}
        self.fit_args = {key: kwargs.pop(key) for key in _FIT_OPTIONS if key in kwargs}
        if "epochs" not in self.fit_args:
            raise TypeError("train_seeds, sweep and Trainer need epochs=... for train()")
        kwargs.pop("seed", None)
        self.compile_args = (
            kwargs.pop("optimizer", "adam"),
            kwargs.pop("learning_rate", 1e-3),
            kwargs.pop("clipnorm", None),
            kwargs.pop("clipvalue", None),
            kwargs.pop("global_clipnorm", None),
            kwargs.pop("loss", "mse"),
        )
        if kwargs:
            raise TypeError(f"unexpected arguments for train(): {sorted(kwargs)}")
        self.model: keras.Model | None = None
        self._architecture: str | None = None

    def run(
        self,
        fresh: keras.Model,
        x: Any,
        y: Any,
        seed: int,
        *,
        evaluate: Evaluation | None = None,
        learning_rate: Any = None,
        callbacks: Sequence[keras.callbacks.Callback] = (),
    ) -> TrainResult:
        """Train ``fresh``'s weights on ``(x, y)`` in the compiled model.

        Parameters
        ----------
        fresh : keras.Model
            A model with the initial weights of this run; after the first run, only
            its weights are used.
        x, y : array-like
            Training data.
        seed : int
            Seeds everything (shuffling included) before the fit.
        evaluate : callable, optional
            ``model -> float or dict``, called on the trained model; the values go to
            ``TrainResult.extra`` (a float under ``"score"``).
        learning_rate : float, optional
            A new learning rate for this run (a variable of the optimizer: no
            retracing).
        callbacks : sequence of keras.callbacks.Callback
            Callbacks for this run only, after the configured ones.

        Returns
        -------
        TrainResult
        """
        if not isinstance(fresh, keras.Model):
            raise TypeError(f"build must return a keras.Model, got {type(fresh).__name__}")
        seed = check_int("seed", seed, minimum=0)
        architecture = architecture_key(fresh)
        if self.model is None:
            self.model = fresh
            self._architecture = architecture
            _compile(self.model, *self.compile_args)
        elif architecture != self._architecture:
            raise ValueError(
                "fresh must have the architecture of the model this Trainer compiled "
                f"first ({self.model.name!r}); {fresh.name!r} differs in more than its weights"
            )
        else:
            self.model.set_weights(fresh.get_weights())
            _reset_optimizer(self.model.optimizer)
        if is_float_rate(learning_rate):
            rate = check_float("learning_rate", learning_rate, positive=True)
            self.model.optimizer.learning_rate = rate  # a variable: no retracing
        args = self.fit_args
        result = _fit(
            self.model,
            x,
            y,
            args["epochs"],
            args.get("batch_size", 32),
            args.get("validation_data"),
            [*args.get("callbacks", ()), *callbacks],
            seed,
            args.get("verbose", 0),
        )
        if evaluate is not None:
            value = evaluate(self.model)
            result.extra.update(value if isinstance(value, Mapping) else {"score": float(value)})
        return result


def architecture_key(model: keras.Model) -> str:
    """A text that two models share exactly when they differ in nothing but their weights.

    It lists every layer's type and configuration (names, initializers and seeds
    left out) and every weight's shape, so a model built again with another seed or
    another initialization has the same key, and one with another size, activation or
    layer type has a different key.

    Examples
    --------
    >>> import rnngrad
    >>> a = rnngrad.build_rnn("simple", 4, input_dim=1, seed=0)
    >>> b = rnngrad.build_rnn(
    ...     "simple", 4, input_dim=1, seed=1,
    ...     recurrent_initializer="identity",
    ... )
    >>> c = rnngrad.build_rnn("simple", 4, input_dim=1, activation="relu")
    >>> key_a, key_b, key_c = (architecture_key(m) for m in (a, b, c))
    >>> key_a == key_b, key_a == key_c
    (True, False)
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model, got {type(model).__name__}")
    layers = [
        f"{type(layer).__name__}{_without_identity(layer.get_config())}"
        for layer in model._flatten_layers(include_self=False, recursive=True)
    ]
    shapes = [tuple(weight.shape) for weight in model.weights]
    return repr((layers, shapes))


def shared_trainer(
    trainers: dict, fresh: keras.Model, train_kwargs: Mapping[str, Any]
) -> tuple[Trainer, float | None]:
    """The :class:`Trainer` in ``trainers`` for ``fresh``'s architecture and these options.

    One is made (and kept) where none compiled this architecture with this optimizer
    and loss; the options of the fit (``epochs``, ``batch_size``, ``callbacks``, ...)
    become the found one's. Also returns the learning rate to give each run (a number is
    a variable of the optimizer, not part of what was compiled), or None for a schedule.
    """
    compiled = {key: value for key, value in train_kwargs.items() if key not in _FIT_OPTIONS}
    optimizer = compiled.get("optimizer", "adam")
    rate = compiled.get("learning_rate", 1e-3)
    if isinstance(optimizer, keras.optimizers.Optimizer) and "learning_rate" not in compiled:
        rate = _config(optimizer).get("learning_rate")  # a number, or a schedule's config
    rate = float(rate) if isinstance(rate, int | float) and not isinstance(rate, bool) else None
    if rate is not None:
        compiled.pop("learning_rate", None)
    key = (architecture_key(fresh), _options_key(compiled, without_rate=rate is not None))
    trainer = trainers.get(key)
    if trainer is None:
        trainer = trainers[key] = Trainer(train_kwargs)
    else:
        trainer.fit_args = {
            name: train_kwargs[name] for name in _FIT_OPTIONS if name in train_kwargs
        }
    return trainer, rate


def _config(value: Any) -> dict:
    """An optimizer's or a schedule's configuration without its name (Keras numbers the
    names of new optimizers), or an empty dict where it has none."""
    try:
        config = value.get_config()
    except (NotImplementedError, TypeError, ValueError):
        return {}
    return {key: item for key, item in config.items() if key != "name"}


def _options_key(options: Mapping[str, Any], *, without_rate: bool) -> str:
    """A text that two sets of compile options share when they compile the same step.

    An optimizer or a learning-rate schedule counts by its class and configuration (an
    optimizer's learning rate left out if ``without_rate``), or by identity where it has
    no configuration.
    """

    def described(value: Any) -> Any:
        if isinstance(
            value, keras.optimizers.Optimizer | keras.optimizers.schedules.LearningRateSchedule
        ):
            config = _config(value)
            if not config:
                return (type(value).__name__, id(value))
            if without_rate:
                config.pop("learning_rate", None)
            return (type(value).__name__, repr(sorted(config.items())))
        return repr(value)

    return repr(sorted((name, described(value)) for name, value in options.items()))


def _without_identity(config: Any) -> Any:
    """``config`` with names, seeds and initializers removed at every depth.

    A wrapper's configuration nests its cell's (``keras.layers.RNN(cell)``), whose seed
    and name change from one build to the next without changing the architecture.
    """
    if isinstance(config, dict):
        return sorted(
            (key, _without_identity(value))
            for key, value in config.items()
            if key not in ("name", "seed") and not key.endswith("_initializer")
        )
    if isinstance(config, list | tuple):
        return [_without_identity(value) for value in config]
    return config


def check_seeds(seeds: Sequence[int]) -> list[int]:
    """``seeds`` as a non-empty list of non-negative ints, or a TypeError/ValueError."""
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence | np.ndarray):
        raise TypeError(f"seeds must be a sequence of integers, got {type(seeds).__name__}")
    seeds = [check_int("seeds", s, minimum=0) for s in seeds]
    if not seeds:
        raise ValueError("seeds must hold at least one seed")
    return seeds


def check_evaluate(evaluate: object) -> None:
    """A TypeError unless ``evaluate`` is None or a callable ``model -> float or dict``."""
    if evaluate is not None and not callable(evaluate):
        raise TypeError(f"evaluate must be a callable model -> float or dict, got {evaluate!r}")


def is_float_rate(rate: object) -> bool:
    """Whether a learning rate is a number (not a schedule), so a compiled model can be
    reused by setting it."""
    return (
        not isinstance(rate, keras.optimizers.schedules.LearningRateSchedule) and rate is not None
    )


def report_progress(progress: bool | None, label: str, result: TrainResult) -> None:
    """One line on stderr about a finished run, when ``progress`` (default: a terminal)."""
    if progress is None:
        progress = sys.stderr.isatty()
    if progress:
        print(
            f"{label}: loss {result.final():.4g}"
            f"{' (diverged)' if result.diverged else ''} in {result.seconds:.1f} s",
            file=sys.stderr,
            flush=True,
        )


def _compile(model, optimizer, learning_rate, clipnorm, clipvalue, global_clipnorm, loss):
    if isinstance(optimizer, keras.optimizers.Optimizer):
        if any(v is not None for v in (clipnorm, clipvalue, global_clipnorm)):
            raise ValueError("set clipping on the optimizer you pass, not as train() arguments")
        built = optimizer
    elif isinstance(optimizer, str):
        built = make_optimizer(
            optimizer,
            learning_rate,
            clipnorm=clipnorm,
            clipvalue=clipvalue,
            global_clipnorm=global_clipnorm,
        )
    else:
        raise TypeError(
            f"optimizer must be a name or a keras optimizer, got {type(optimizer).__name__}"
        )
    # XLA (Keras's "auto" on a CPU) made small recurrent models train slower, not faster:
    # measured on 2 cores, 3 epochs of a two-layer GRU stack (T = 40, batch 32) took
    # 10.4 s under XLA and 6.7 s on TensorFlow's kernels, after a compile no shorter.
    model.compile(optimizer=built, loss=loss, jit_compile=False)
    build_optimizer(model)


def build_optimizer(model: keras.Model) -> None:
    """Create a compiled model's optimizer variables now, outside the training function.

    Keras otherwise creates them while tracing the first training step, and
    ``tf.function`` then traces the whole training function a second time (its rule for
    variables created in a first call). The updates are bitwise the same; the first fit
    of a compiled model takes 1-2 s less (measured on 2 cores, 32-unit LSTM and GRU).

    Parameters
    ----------
    model : keras.Model
        A model after ``compile``; an optimizer already built is left as it is.
    """
    if not model.optimizer.built:  # an optimizer passed in may be built already
        model.optimizer.build(model.trainable_variables)


def check_fit_arguments(
    x: Any, y: Any, epochs: int, batch_size: int
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Validate the data and loop sizes of a training run (shared by every training loop)."""
    epochs = check_int("epochs", epochs, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    for name, value in (("x", x), ("y", y)):
        if type(value).__module__.startswith("tensorflow") and hasattr(value, "element_spec"):
            raise TypeError(
                f"{name} must be arrays: the training helpers do not take a tf.data.Dataset "
                "(pass the arrays, or call model.fit with the dataset)"
            )
    x = check_array("x", x)
    y = check_array("y", y)
    if len(x) != len(y):
        raise ValueError(
            f"x and y must have the same number of examples, got {len(x)} and {len(y)}"
        )
    return x, y, epochs, batch_size


# Updates per compiled call when no callback needs to see single batches: the same
# updates, bitwise, with less of Keras's per-step overhead (measured on 2 cores: two
# epochs of a 32-unit SimpleRNN on 6000 sequences took 1.2 s instead of 2.0-2.7 s).
STEPS_PER_EXECUTION = 32
_BATCH_HOOKS = ("on_train_batch_begin", "on_train_batch_end", "on_batch_begin", "on_batch_end")


def steps_per_execution(
    callbacks: Sequence[keras.callbacks.Callback], steps_per_epoch: int | None = None
) -> int:
    """``STEPS_PER_EXECUTION``, or fewer if a callback needs to see the model more often.

    A callback that needs to see every update says so with a true ``watches_batches``
    attribute (one update per call); without one, overriding any of Keras's batch hooks
    counts as watching batches. A callback that needs to see the model only after every
    ``n``-th update of a fit says so with ``watches_batches = False`` and an
    ``updates_per_call`` of ``n``: a call then runs the largest number of updates that
    divides ``n``, ``STEPS_PER_EXECUTION`` and ``steps_per_epoch`` (Keras ends a call at
    the end of an epoch), so that every ``n``-th update ends a call.
    """
    steps = STEPS_PER_EXECUTION
    for callback in callbacks:
        watches = getattr(callback, "watches_batches", None)
        if watches is None:
            base = keras.callbacks.Callback
            watches = any(getattr(type(callback), h) is not getattr(base, h) for h in _BATCH_HOOKS)
        if watches:
            return 1
        every = getattr(callback, "updates_per_call", None)
        if every:
            steps = math.gcd(steps, int(every), int(steps_per_epoch or 0))
    return steps


def _fit(model, x, y, epochs, batch_size, validation_data, callbacks, seed, verbose):
    x, y, epochs, batch_size = check_fit_arguments(x, y, epochs, batch_size)
    seed_run(seed, model)  # seed_everything, keeping the compiled training step
    stopper = StopOnNonFinite()
    steps = steps_per_execution([stopper, *callbacks], math.ceil(len(x) / batch_size))
    if model.steps_per_execution != steps:
        model.steps_per_execution = steps
        model.train_function = None  # Keras builds it again for the new count
    start = time.perf_counter()
    with quiet_retracing_warnings():  # one training function per model, by design
        history = model.fit(
            x,
            y,
            epochs=epochs,
            batch_size=batch_size,
            validation_data=validation_data,
            callbacks=[stopper, *callbacks],
            shuffle=True,
            verbose=verbose,
        )
    seconds = time.perf_counter() - start
    record = {key: [float(v) for v in values] for key, values in history.history.items()}
    return TrainResult(
        history=record,
        diverged=stopper.stopped_at is not None,
        stopped_at=stopper.stopped_at,
        seconds=seconds,
        seed=seed,
    )


def _reset_optimizer(optimizer: keras.optimizers.Optimizer) -> None:
    """Zero the optimizer's state (step count, moments) so the next fit starts afresh."""
    learning_rate = getattr(optimizer, "_learning_rate", None)  # a variable; keep its value
    for variable in optimizer.variables:
        if variable is not learning_rate:
            variable.assign(np.zeros(variable.shape, dtype=variable.dtype))
