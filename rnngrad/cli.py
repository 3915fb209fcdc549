"""The ``rnngrad`` command: ``rnngrad diagnose MODEL.keras`` (also ``python -m rnngrad``).

Exit status: 0 with a report; 1 when ``--fail-on`` lists the verdict (for a user's CI);
2 on any error, with one plain line on stderr and no traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import time
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

USAGE_ERROR = 2
FAILED_VERDICT = 1


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line instead of usage + message
        raise CliError(f"{message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``rnngrad`` command."""
    parser = _Parser(
        prog="rnngrad",
        description="Measure vanishing and exploding gradients in Keras recurrent models.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    diagnose = commands.add_parser(
        "diagnose",
        help="report the gradient health of a saved Keras model",
        description=(
            "Load a saved Keras model (safe mode), measure dL/dh_t for every step of every "
            "recurrent layer on a batch, and report a verdict (healthy, vanishing, exploding), "
            "the per-step decay, the horizon and what to try."
        ),
    )
    diagnose.add_argument("model", help="a model saved with model.save('m.keras')")
    diagnose.add_argument(
        "--data",
        metavar="FILE",
        help="a .npz with arrays 'x' (and optionally 'y'), or with one array per model "
        "input named after the input; or a .npy holding x",
    )
    diagnose.add_argument(
        "--length",
        type=int,
        metavar="T",
        help="sequence length of the random inputs used without --data (default: the "
        "model's own input length, else 100)",
    )
    diagnose.add_argument(
        "--batch",
        type=int,
        metavar="B",
        help="number of sequences: the first B of --data (default: all of them), or of "
        "random inputs (default 32)",
    )
    diagnose.add_argument(
        "--loss",
        default="auto",
        help="a Keras loss name such as mse or sparse_categorical_crossentropy (default: the "
        "loss the model was compiled with; MSE if it was saved uncompiled)",
    )
    diagnose.add_argument(
        "--from-logits",
        action="store_true",
        help="with a cross-entropy --loss: the model outputs logits, not probabilities",
    )
    diagnose.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    diagnose.add_argument("--json", action="store_true", help="print one JSON object")
    diagnose.add_argument("--plot", metavar="OUT.png", help="save the gradient profiles here")
    diagnose.add_argument(
        "--fail-on",
        default="",
        metavar="VERDICTS",
        help="comma-separated verdicts (vanishing,exploding) that make the exit status 1",
    )
    diagnose.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import this module before loading (repeatable): the module that defines and "
        "registers the model's custom layers or cells (@keras.saving."
        "register_keras_serializable); looked up from the current directory too",
    )
    diagnose.add_argument(
        "--unsafe",
        action="store_true",
        help="allow models with Lambda layers (runs code stored in the file: trusted files only)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return the exit status."""
    with _native_stderr_silenced():
        try:
            args = build_parser().parse_args(argv)
            return _diagnose_command(args)
        except CliError as err:
            print(f"rnngrad: error: {err}", file=sys.stderr)
            return USAGE_ERROR
        except KeyboardInterrupt:
            print("rnngrad: interrupted", file=sys.stderr)
            return USAGE_ERROR
        except SystemExit as done:  # --help
            return int(done.code or 0)
        except Exception as err:  # the contract is one line, never a traceback
            text = str(err).strip().splitlines()[0] if str(err).strip() else ""
            print(f"rnngrad: internal error: {type(err).__name__}: {text}", file=sys.stderr)
            return USAGE_ERROR


def _check_arguments(args: argparse.Namespace) -> set[str]:
    """Everything that can be checked before TensorFlow loads; the --fail-on verdicts."""
    from rnngrad.verdicts import NO_SIGNAL, VERDICTS  # NumPy only

    choices = (*VERDICTS, NO_SIGNAL)
    fail_on = {v.strip() for v in args.fail_on.split(",") if v.strip()}
    unknown = fail_on - set(choices)
    if unknown:
        raise CliError(f"--fail-on takes {', '.join(choices)}; got {', '.join(sorted(unknown))}")
    if args.batch is not None and args.batch < 1:
        raise CliError(f"--batch must be >= 1, got {args.batch}")
    if args.length is not None and args.length < 1:
        raise CliError(f"--length must be >= 1, got {args.length}")
    if args.length is not None and args.data is not None:  # it would be silently ignored
        raise CliError("--length sets the length of random inputs; it cannot go with --data")
    path = Path(args.model)
    if not path.is_file():
        raise CliError(f"no such model file: {path}")
    if path.suffix in (".h5", ".hdf5"):
        if not _starts_with(path, b"\x89HDF"):
            raise CliError(f"{path} is not a valid HDF5 file")
    elif not zipfile.is_zipfile(path):
        raise CliError(f"{path} is not a valid Keras archive (a .keras file is a zip archive)")
    if args.data is not None:
        data = Path(args.data)
        if not data.is_file():
            raise CliError(f"no such data file: {data}")
        if data.suffix == ".npy":
            if not _starts_with(data, b"\x93NUMPY"):
                raise CliError(f"{data} is not a .npy file (it does not start with NumPy's header)")
        elif not zipfile.is_zipfile(data):
            raise CliError(
                f"{data} is not a .npz archive; --data takes a .npz (np.savez) or a .npy (np.save)"
            )
    if args.from_logits and args.loss == "auto":
        raise CliError("--from-logits needs --loss (the compiled loss keeps its own setting)")
    return fail_on


def _check_probed(model: Any) -> None:
    from rnngrad._engine import probed_layers

    try:
        probed_layers(model, "h")
    except ValueError as err:
        raise CliError(str(err).strip().splitlines()[0]) from None


def _starts_with(path: Path, magic: bytes) -> bool:
    with open(path, "rb") as handle:
        return handle.read(len(magic)) == magic


def _diagnose_command(args: argparse.Namespace) -> int:
    fail_on = _check_arguments(args)
    path = Path(args.model)
    progress = _Progress(enabled=sys.stderr.isatty() and not args.json)
    progress("loading TensorFlow and the model")
    warnings.simplefilter("ignore")  # Keras's load-time chatter; the report says what matters
    import numpy as np

    from rnngrad.diagnosis import diagnose

    _import_modules(args.imports)
    model, load_note = _load_model(path, unsafe=args.unsafe)
    _check_probed(model)  # a model the probe refuses is named before any data is asked for
    x, y, source = _inputs(model, args, np)
    loss = _loss(args)
    if y is None and args.loss != "auto":  # it would be silently ignored
        raise CliError(
            f"--loss {args.loss} needs targets: pass --data with an array y (without targets "
            "the loss is 1/2 ||output||^2)"
        )
    progress(f"measuring gradients on {_describe_batch(x, np)}")
    try:
        report = diagnose(model, x, y, loss=loss)
    except (ValueError, TypeError) as err:
        raise CliError(str(err).strip().splitlines()[0]) from None
    if load_note:  # the loss was not restored: say so once, instead of "not compiled"
        report.notes = [n for n in report.notes if "not compiled" not in n]
        report.notes.append(load_note)
    if source == "random":
        report.notes.append(
            "inputs were random: real data can saturate units differently; pass --data "
            "for a verdict on your data"
        )
    if args.plot:
        _save_plot(report, args.plot)
    if args.json:
        payload = report.to_dict()
        payload["model"] = str(path)
        payload["inputs"] = source
        print(_dumps(payload))
    else:
        print(f"model: {path}  (inputs: {source})")
        print(report.summary())
    progress.done()
    return FAILED_VERDICT if report.verdict in fail_on else 0


def _describe_batch(x: Any, np: Any) -> str:
    first = next(iter(x.values())) if isinstance(x, dict) else x[0] if isinstance(x, list) else x
    shape = np.shape(first)
    return f"{shape[0]} sequences of length {shape[1]}" if len(shape) > 1 else f"{shape[0]} rows"


def _load_model(path: Path, *, unsafe: bool) -> tuple[Any, str | None]:
    """The model, compiled as it was saved if its loss can be restored; and a note."""
    import keras

    note = None
    try:
        try:
            model = keras.models.load_model(path, safe_mode=not unsafe, compile=True)
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            if _needs_unsafe(err):
                raise
            model = keras.models.load_model(path, safe_mode=not unsafe, compile=False)
            note = (
                f"the saved loss could not be restored ({str(err).splitlines()[0][:80]}), so "
                "the loss is MSE; pass --loss to choose one"
            )
    except (ValueError, TypeError) as err:
        if _needs_unsafe(err):
            raise CliError(
                f"{path} contains a Lambda layer, which runs code stored in the file; "
                "rerun with --unsafe if you trust it"
            ) from None
        missing = _unregistered_class(str(err))
        if missing is not None:
            name, module = missing
            raise CliError(
                f"cannot load {path}: it uses the custom class {name!r}, which is not "
                f"registered in this process; pass --import {module or 'MODULE'} (the module "
                "that defines it with @keras.saving.register_keras_serializable)"
            ) from None
        raise CliError(f"cannot load {path} as a Keras model: {str(err).splitlines()[0]}") from None
    except (OSError, zipfile.BadZipFile, KeyError) as err:
        raise CliError(f"{path} is not a valid Keras archive: {err}") from None
    if not isinstance(model, keras.Model):
        raise CliError(f"{path} does not hold a Keras model")
    return model, note


def _import_modules(names: list[str]) -> None:
    """Import the modules that register the model's custom objects, from the current
    directory too (as ``python -m`` would)."""
    import importlib

    if names and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as err:  # any failure while importing user code: one line
            raise CliError(f"--import {name}: {type(err).__name__}: {err}") from None


def _unregistered_class(text: str) -> tuple[str, str | None] | None:
    """(class name, its module) when Keras could not locate a custom class, else None."""
    found = re.search(r"Could not locate class '([^']+)'", text)
    if found is None:
        return None
    name = found.group(1)
    module = re.search(r"\{'module': '([^']+)', 'class_name': '" + re.escape(name) + "'", text)
    return name, module.group(1) if module else None


def _needs_unsafe(err: Exception) -> bool:
    text = str(err)
    return "safe_mode" in text or "Lambda" in text


def _inputs(model: Any, args: argparse.Namespace, np: Any) -> tuple[Any, Any, str]:
    from rnngrad._inputs import input_names, input_structure

    names = input_names(model)
    if args.data is not None:
        return (*_data_file(args.data, names, args.batch, np), args.data)
    structure = input_structure(model)
    specs = list(structure.values()) if isinstance(structure, dict) else _input_specs(model)
    if len(specs) != 1:
        raise CliError(
            f"the model has {len(specs)} inputs ({', '.join(names)}); pass --data with one "
            "array per input, named after it"
        )
    shape, dtype = tuple(specs[0].shape), str(specs[0].dtype)
    length = shape[1] if len(shape) > 1 else None
    if length is not None and args.length is not None and args.length != length:
        raise CliError(f"--length {args.length} differs from the model's input length {length}")
    length = length or args.length or 100
    rng = np.random.default_rng(args.seed)
    batch = args.batch or 32
    if "int" in dtype:
        vocabulary = _vocabulary(model)
        if vocabulary is None or len(shape) != 2:
            raise CliError(f"the model takes integer inputs of shape {shape}; pass --data")
        # Token ids within the vocabulary; id 0 is often padding, so draw from 1 up.
        low = 1 if vocabulary > 1 else 0
        x = rng.integers(low, vocabulary, size=(batch, length)).astype(dtype)
        return x, None, "random"
    if len(shape) != 3 or shape[2] is None:
        raise CliError(f"the model takes inputs of shape {shape} ({dtype}); pass --data")
    x = rng.standard_normal((batch, length, shape[2])).astype("float32")
    return x, None, "random"


def _input_specs(model: Any) -> list:
    try:
        specs = list(model.inputs or [])
    except (AttributeError, ValueError):
        specs = []
    if not specs:
        raise CliError("the model has no known input shape; pass --data")
    return specs


def _vocabulary(model: Any) -> int | None:
    import keras

    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.Embedding):
            return int(layer.input_dim)
    return None


def _data_file(name: str, input_names: list[str], batch: int | None, np: Any) -> tuple[Any, Any]:
    try:
        if name.endswith(".npy"):
            return np.load(name, allow_pickle=False)[:batch], None
        arrays = np.load(name, allow_pickle=False)
        keys = list(arrays.files)
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise CliError(f"cannot read {name}: {err}") from None
    try:
        y = arrays["y"][:batch] if "y" in keys else None
        if "x" in keys:
            return arrays["x"][:batch], y
        if len(input_names) > 1 and all(n in keys for n in input_names):
            return {n: arrays[n][:batch] for n in input_names}, y
    except ValueError as err:  # object arrays need pickle, which is refused
        raise CliError(f"cannot read {name}: {err}; save plain numeric arrays") from None
    wanted = "'x'" if len(input_names) <= 1 else f"'x' or one per input ({', '.join(input_names)})"
    raise CliError(f"{name} must hold an array named {wanted} (found: {', '.join(keys)})")


def _loss(args: argparse.Namespace) -> Any:
    if args.loss == "auto":
        return None
    import keras

    try:
        function = keras.losses.get(args.loss)
    except (ValueError, TypeError):
        function = None
    if function is None:
        raise CliError(f"--loss must be auto or a Keras loss name; got {args.loss}")
    if not args.from_logits:
        return args.loss
    classes = {
        "sparse_categorical_crossentropy": keras.losses.SparseCategoricalCrossentropy,
        "categorical_crossentropy": keras.losses.CategoricalCrossentropy,
        "binary_crossentropy": keras.losses.BinaryCrossentropy,
    }
    if args.loss not in classes:
        raise CliError(f"--from-logits applies to the cross-entropies, not {args.loss}")
    return classes[args.loss](from_logits=True)


def _save_plot(report: Any, out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rnngrad.plotting import use_book_style

    use_book_style()
    fig, ax = plt.subplots()
    for layer in report.layers:
        lags = range(len(layer.transport))
        ax.semilogy(lags, layer.transport, label=f"{layer.name} ({layer.verdict})")
    ratio = report.thresholds["vanishing_ratio"]
    ax.axhline(ratio, color="0.4", lw=1, ls=":", label=f"vanishing threshold {ratio:g}")
    ax.set_xlabel("steps back from the last state (lag)")
    ax.set_ylabel("gradient carried back (transport)")
    ax.legend()
    ax.set_title(f"Gradient transport: {report.verdict}")
    try:
        fig.savefig(out)
    except OSError as err:
        raise CliError(f"cannot write the plot to {out}: {err}") from None
    finally:
        plt.close(fig)


def _dumps(payload: dict) -> str:
    import json

    return json.dumps(payload)


class _Progress:
    """One status line on an interactive terminal, overwritten as work proceeds."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.start = time.perf_counter()

    def __call__(self, message: str) -> None:
        if self.enabled:
            elapsed = time.perf_counter() - self.start
            print(f"\r\033[Krnngrad: {message}... ({elapsed:.0f} s)", end="", file=sys.stderr)

    def done(self) -> None:
        if self.enabled:
            print("\r\033[K", end="", file=sys.stderr)


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Send TensorFlow's C++ logs (written straight to file descriptor 2) to /dev/null,
    while Python's own stderr, where our messages go, still reaches the terminal."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    python_stderr = sys.stderr
    sys.stderr = os.fdopen(os.dup(saved), "w", buffering=1)
    try:
        yield
    finally:
        sys.stderr.flush()
        sys.stderr.close()
        sys.stderr = python_stderr
        os.dup2(saved, 2)
        os.close(saved)
