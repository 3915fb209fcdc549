"""Real data: recurrent classifiers on the 8x8 digits read as sequences (chapter "Real data").

The chapter compares cells and initializations on the digits read pixel by pixel
(:func:`rnngrad.tasks.sequential_digits`), permuted, row by row, and with blank steps
appended before the read-out. This module holds its instruments:

- :func:`append_blanks`: a gap of zero inputs between the image and the read-out, so
  the label's information lies at least that many steps back;
- :func:`last_steps_accuracy`: how much of the label the last ``k`` steps carry, read
  by a linear classifier (multinomial logistic regression) that sees only them;
- :func:`classifier`: a builder of ``build_rnn`` classifiers for :func:`compare_models`;
- :func:`compare_models`: train every model on every task with every seed, reusing one
  compiled model per architecture (:class:`rnngrad.training.Trainer`), and record the
  test accuracy and the state-gradient profile before, during and after training;
- :class:`ProfileHistory`: the callback that records those profiles.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from rnngrad._validation import check_array, check_int
from rnngrad.callbacks import GradientHistory
from rnngrad.models import build_rnn
from rnngrad.probes import state_gradient_norms
from rnngrad.training import Trainer, architecture_key

__all__ = [
    "ProfileHistory",
    "accuracy",
    "append_blanks",
    "classifier",
    "compare_models",
    "last_steps_accuracy",
]

Split = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
Builder = Callable[..., keras.Model]


def append_blanks(x: Any, steps: int) -> np.ndarray:
    """Append ``steps`` all-zero time steps to every sequence.

    Parameters
    ----------
    x : array-like
        ``(n, T, features)`` sequences.
    steps : int
        Number of blank steps, >= 0.

    Returns
    -------
    numpy.ndarray
        ``(n, T + steps, features)``, of ``x``'s dtype: ``x`` followed by zeros.

    Examples
    --------
    >>> append_blanks(np.ones((2, 3, 1)), 2)[0, :, 0].tolist()
    [1.0, 1.0, 1.0, 0.0, 0.0]
    """
    x = check_array("x", x, ndim=3)
    steps = check_int("steps", steps, minimum=0)
    return np.pad(x, ((0, 0), (0, steps), (0, 0)))


def last_steps_accuracy(split: Split, steps: Sequence[int], *, max_iter: int = 2000) -> np.ndarray:
    """Test accuracy of a linear classifier that sees only the last ``k`` steps.

    For each ``k`` in ``steps``, a multinomial logistic regression
    (``sklearn.linear_model.LogisticRegression``, default L2 penalty) is fitted
    on the last ``k`` steps of the training sequences, all their features flattened,
    and scored on the same steps of the test sequences. It measures how much of the
    label a memory of ``k`` steps gives a linear read-out: a task whose accuracy is
    already high at small ``k`` needs no long memory.

    Parameters
    ----------
    split : tuple
        ``((x_train, y_train), (x_test, y_test))`` with ``x`` of shape
        ``(n, T, features)`` and integer labels ``y``, as from
        :func:`rnngrad.tasks.sequential_digits`.
    steps : sequence of int
        Memory lengths ``k``, each in ``1 .. T``.
    max_iter : int, default 2000
        Iterations of the solver.

    Returns
    -------
    numpy.ndarray
        float64, one test accuracy per ``k``.

    Examples
    --------
    >>> from rnngrad.tasks import sequential_digits
    >>> acc = last_steps_accuracy(sequential_digits(seed=0), [8, 64])
    >>> bool(acc[1] > acc[0])
    True
    """
    from sklearn.linear_model import LogisticRegression  # the chapter's only sklearn model
    from threadpoolctl import threadpool_limits

    (x_train, y_train), (x_test, y_test) = _check_split(split)
    length = x_train.shape[1]
    if isinstance(steps, str | bytes) or not isinstance(steps, Sequence | np.ndarray):
        raise TypeError(f"steps must be a sequence of integers, got {type(steps).__name__}")
    steps = [check_int("steps", k, minimum=1) for k in steps]
    if not steps or max(steps) > length:
        raise ValueError(f"steps must hold memory lengths in 1 .. {length}, got {steps}")
    max_iter = check_int("max_iter", max_iter, minimum=1)
    scores = []
    # One BLAS thread: next to TensorFlow's threads, more make this small fit ~30x slower.
    with threadpool_limits(limits=1):
        for k in steps:
            model = LogisticRegression(max_iter=max_iter)
            model.fit(x_train[:, -k:].reshape(len(x_train), -1), y_train)
            scores.append(model.score(x_test[:, -k:].reshape(len(x_test), -1), y_test))
    return np.array(scores, dtype=np.float64)


def accuracy(model: keras.Model, x: Any, y: Any) -> float:
    """Share of the examples whose most probable class is the label.

    Parameters
    ----------
    model : keras.Model
        A classifier whose output is ``(n, classes)`` scores (probabilities or logits).
    x : array-like
        Inputs.
    y : array-like of int
        ``(n,)`` labels.

    Returns
    -------
    float
        In [0, 1]. A model whose outputs are not finite (a diverged run) scores the
        examples it gives no finite prediction as wrong.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model, got {type(model).__name__}")
    x = check_array("x", x)
    y = check_array("y", y, ndim=1)
    if len(x) != len(y):
        raise ValueError(
            f"x and y must have the same number of examples, got {len(x)} and {len(y)}"
        )
    # One eager call per chunk. ``model.predict`` would trace a prediction function for
    # every compiled model, and after :func:`rnngrad.training.train` (32 updates per
    # compiled call) one that holds 32 copies of the network: seconds per architecture
    # and input shape, against a fraction of a second for the eager calls.
    # (:func:`compare_models`, which scores many runs of one compiled model, traces
    # a plain forward pass once instead: :func:`_compiled_forward`.)
    return _accuracy(lambda chunk: model(chunk, training=False), x, y)


def _accuracy(forward: Callable[[np.ndarray], Any], x: np.ndarray, y: np.ndarray) -> float:
    """:func:`accuracy` with the scores from ``forward`` (one call per chunk of 1024)."""
    scores = np.concatenate(
        [np.asarray(forward(x[start : start + 1024])) for start in range(0, len(x), 1024)]
    )
    finite = np.all(np.isfinite(scores), axis=-1)
    return float(np.mean(finite & (np.argmax(scores, axis=-1) == y)))


def _compiled_forward(model: keras.Model) -> Callable[[np.ndarray], Any]:
    """``model(x, training=False)`` as one traced function (once per input shape).

    Called eagerly, a recurrent model runs its time loop op by op: about a second for a
    32-unit GRU on 449 sequences of 94 steps, against a few hundredths once traced
    (tracing takes a few tenths), with the same scores (the tests compare the two). The
    function reads the model's variables, so it serves every run that loads new weights
    into the same model.
    """
    return tf.function(lambda chunk: model(chunk, training=False))


def classifier(units: int, *, n_classes: int = 10, chrono: bool = False, **options: Any) -> Builder:
    """A builder of ``build_rnn`` classifiers for :func:`compare_models`.

    Parameters
    ----------
    units : int
        Hidden units of the recurrent layer.
    n_classes : int, default 10
        Units of the softmax read-out.
    chrono : bool, default False
        Chrono initialization with ``T_max`` set to each task's sequence length
        (``build_rnn(..., chrono_length=T)``).
    **options
        Other :func:`rnngrad.models.build_rnn` arguments: ``cell`` (default
        ``"simple"``), ``activation``, ``recurrent_initializer``, ``forget_bias``, ...

    Returns
    -------
    callable
        ``(seed, *, input_dim, length) -> keras.Model`` mapping ``(B, T, input_dim)`` to
        ``(B, n_classes)`` softmax probabilities.

    Examples
    --------
    >>> build = classifier(8, cell="gru")
    >>> build(0, input_dim=1, length=64).output_shape
    (None, 10)
    """
    units = check_int("units", units, minimum=1)
    n_classes = check_int("n_classes", n_classes, minimum=2)
    if not isinstance(chrono, bool):
        raise TypeError(f"chrono must be True or False, got {type(chrono).__name__}")
    cell = options.pop("cell", "simple")
    reserved = {"input_dim", "output_dim", "output_activation", "seed", "chrono_length"}
    clash = sorted(reserved & set(options))
    if clash:
        raise TypeError(f"classifier sets {clash} itself")

    def build(seed: int, *, input_dim: int, length: int) -> keras.Model:
        extra = {"chrono_length": length} if chrono else {}
        return build_rnn(
            cell,
            units,
            input_dim=input_dim,
            output_dim=n_classes,
            output_activation="softmax",
            seed=seed,
            **options,
            **extra,
        )

    build(0, input_dim=1, length=3)  # fail now, not in the middle of a comparison
    return build


class ProfileHistory(GradientHistory):
    """:class:`~rnngrad.callbacks.GradientHistory` that records only the profiles.

    It skips the global gradient norm (``grad_norms`` holds NaN), which saves a second
    compiled function per model when only ``||dL_i/dh_t||`` before, during and after
    training is wanted.
    """

    def measure(self) -> tuple[float, np.ndarray, None]:
        """The profile on the probe batch; NaN for the global norm; no transport."""
        profile = state_gradient_norms(self.model, self.x_probe, self.y_probe, loss=self.loss)
        return float("nan"), profile, None


def compare_models(
    models: Mapping[str, Builder],
    tasks: Mapping[str, Split],
    seeds: Sequence[int],
    *,
    runs: Sequence[tuple[str, str]] | None = None,
    probe_examples: int = 64,
    profiles: bool | Sequence[str] = True,
    keep_weights: bool = False,
    **train_kwargs: Any,
) -> list[dict[str, Any]]:
    """Train models on classification tasks, seeds each, and measure them.

    Every model in ``runs`` is trained on its task once per seed with one fixed budget
    (``train_kwargs``, passed to :class:`rnngrad.training.Trainer`, with
    ``loss="sparse_categorical_crossentropy"`` unless given). Models with the same
    architecture share one compiled model (:func:`rnngrad.training.architecture_key`),
    whatever their initialization or task, so each architecture's training step is
    traced once per input shape.

    Parameters
    ----------
    models : mapping of str to callable
        ``name -> build(seed, *, input_dim, length)``, e.g. from :func:`classifier`.
    tasks : mapping of str to tuple
        ``name -> ((x_train, y_train), (x_test, y_test))``, ``x`` of shape
        ``(n, T, features)``, ``y`` integer labels.
    seeds : sequence of int
        Every run is repeated for each seed (the seed of the initial weights and of
        the shuffling).
    runs : sequence of tuple, optional
        Which models to train on which tasks, in this order; all pairs by default.
    probe_examples : int, default 64
        The profiles are measured on the first this many training sequences, with
        the training loss.
    profiles : bool or sequence of str, default True
        Measure the profiles: on every task (True), on none (False), or on the tasks
        named. A run without them costs one compiled function less (``profiles`` is
        then None).
    keep_weights : bool, default False
        Also keep each trained model's weights (``weights``, as from
        ``model.get_weights()``), to load into a model built by the same builder.
    **train_kwargs
        The budget: ``epochs`` (required), ``batch_size``, ``learning_rate``,
        ``global_clipnorm``, ...

    Returns
    -------
    list of dict
        One per run, in the order of ``runs`` then ``seeds``: ``model``, ``task``,
        ``seed``, ``accuracy`` (on the task's test set), ``diverged``,
        ``epochs_run``, ``seconds``, ``history`` (per-epoch training loss) and
        ``profiles``, a ``(epochs_run + 1, T)`` array of the first recurrent layer's
        ``||dL_i/dh_t||`` before training and after every epoch (row 0 at
        initialization, row -1 after training); ``weights`` with ``keep_weights``.

    Examples
    --------
    >>> from rnngrad.tasks import sequential_digits
    >>> (x, y), (x_t, y_t) = sequential_digits(seed=0)
    >>> def rows(images):
    ...     return images.reshape(-1, 8, 8)
    >>> tasks = {"rows": ((rows(x[:64]), y[:64]), (rows(x_t), y_t))}
    >>> models = {"gru": classifier(4, cell="gru")}
    >>> records = compare_models(models, tasks, [0], epochs=1)
    >>> records[0]["profiles"].shape
    (2, 8)
    """
    models = _check_mapping("models", models, callable_values=True)
    tasks = {name: _check_split(split) for name, split in _check_mapping("tasks", tasks).items()}
    if isinstance(seeds, str | bytes) or not isinstance(seeds, Sequence | np.ndarray):
        raise TypeError(f"seeds must be a sequence of integers, got {type(seeds).__name__}")
    seeds = [check_int("seeds", seed, minimum=0) for seed in seeds]
    if not seeds:
        raise ValueError("seeds must hold at least one seed")
    runs = [(m, t) for m in models for t in tasks] if runs is None else list(runs)
    for pair in runs:
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise TypeError(f"runs must hold (model, task) pairs, got {pair!r}")
        if pair[0] not in models or pair[1] not in tasks:
            raise ValueError(f"runs names a model or task that is not given: {pair!r}")
    probe_examples = check_int("probe_examples", probe_examples, minimum=1)
    if not isinstance(keep_weights, bool):
        raise TypeError(f"keep_weights must be True or False, got {type(keep_weights).__name__}")
    profiled = _profiled_tasks(profiles, tasks)
    train_kwargs.setdefault("loss", "sparse_categorical_crossentropy")
    if "callbacks" in train_kwargs:
        raise TypeError("compare_models sets the callbacks itself")
    trainers: dict[str, Trainer] = {}
    forwards: dict[str, Callable[[np.ndarray], Any]] = {}  # one scoring function per trainer
    records = []
    for model_name, task_name in runs:
        (x, y), (x_test, y_test) = tasks[task_name]
        history = ProfileHistory(x[:probe_examples], y[:probe_examples], loss=train_kwargs["loss"])
        measured = task_name in profiled
        callbacks = [history] if measured else []
        for seed in seeds:
            fresh = models[model_name](seed, input_dim=x.shape[2], length=x.shape[1])
            key = architecture_key(fresh)
            trainer = trainers.setdefault(key, Trainer(train_kwargs))
            result = trainer.run(fresh, x, y, seed, callbacks=callbacks)
            if key not in forwards:
                forwards[key] = _compiled_forward(trainer.model)
            records.append(
                {
                    "model": model_name,
                    "task": task_name,
                    "seed": seed,
                    "accuracy": _accuracy(forwards[key], x_test, y_test),
                    "diverged": result.diverged,
                    "epochs_run": len(result.history.get("loss", [])),
                    "seconds": result.seconds,
                    "history": result.history.get("loss", []),
                    "profiles": np.array([p[0] for p in history.profiles]) if measured else None,
                }
            )
            if keep_weights:
                records[-1]["weights"] = trainer.model.get_weights()
    return records


def _profiled_tasks(profiles: object, tasks: Mapping[str, Split]) -> set[str]:
    if isinstance(profiles, bool):
        return set(tasks) if profiles else set()
    if isinstance(profiles, str | bytes) or not isinstance(profiles, Sequence | set | frozenset):
        raise TypeError(
            f"profiles must be True, False or a sequence of task names, got {profiles!r}"
        )
    unknown = sorted(str(name) for name in set(profiles) - set(tasks))
    if unknown:
        raise ValueError(f"profiles names tasks that are not given: {unknown}")
    return set(profiles)


def _check_split(split: object) -> Split:
    try:
        (x, y), (x_test, y_test) = split  # type: ignore[misc]
    except (TypeError, ValueError):
        raise TypeError(
            f"a task must be ((x_train, y_train), (x_test, y_test)), got {type(split).__name__}"
        ) from None
    x, x_test = check_array("x_train", x, ndim=3), check_array("x_test", x_test, ndim=3)
    y, y_test = check_array("y_train", y, ndim=1), check_array("y_test", y_test, ndim=1)
    for name, data, labels in (("train", x, y), ("test", x_test, y_test)):
        if len(data) != len(labels) or len(data) == 0:
            raise ValueError(
                f"x_{name} and y_{name} must hold the same, non-zero number of examples, "
                f"got {len(data)} and {len(labels)}"
            )
    if x.shape[1:] != x_test.shape[1:]:
        raise ValueError(
            f"x_train and x_test must have the same steps and features, "
            f"got {x.shape[1:]} and {x_test.shape[1:]}"
        )
    if not (np.issubdtype(y.dtype, np.integer) and np.issubdtype(y_test.dtype, np.integer)):
        raise TypeError("labels must be integers")
    return (x, y), (x_test, y_test)


def _check_mapping(name: str, value: object, *, callable_values: bool = False) -> dict:
    if not isinstance(value, Mapping) or not value:
        raise TypeError(f"{name} must be a non-empty mapping of names, got {value!r}")
    if not all(isinstance(key, str) for key in value):
        raise TypeError(f"{name} must have string keys")
    if callable_values and not all(callable(v) for v in value.values()):
        raise TypeError(f"{name} must map names to callables")
    return dict(value)
