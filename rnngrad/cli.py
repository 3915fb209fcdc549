"""The ``rnngrad`` command: ``rnngrad diagnose MODEL.keras`` (also ``python -m rnngrad``).

Exit status: 0 with a report; 1 when ``--fail-on`` lists the verdict (for a user's CI);
2 on any error, with one plain line on stderr and no traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
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
        "--data", metavar="FILE.npz", help="arrays 'x' (and optionally 'y') to measure on"
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
        help="mse, sparse_categorical_crossentropy, categorical_crossentropy or "
        "binary_crossentropy (default: chosen from the targets and the output layer)",
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
            print(f"rnngrad: internal error: {type(err).__name__}: {err}", file=sys.stderr)
            return USAGE_ERROR


def _diagnose_command(args: argparse.Namespace) -> int:
    from rnngrad.diagnosis import VERDICTS  # light: no TensorFlow yet

    fail_on = {v.strip() for v in args.fail_on.split(",") if v.strip()}
    unknown = fail_on - set(VERDICTS)
    if unknown:
        raise CliError(f"--fail-on takes {', '.join(VERDICTS)}; got {', '.join(sorted(unknown))}")
    if args.batch is not None and args.batch < 1:
        raise CliError(f"--batch must be >= 1, got {args.batch}")
    if args.length is not None and args.length < 1:
        raise CliError(f"--length must be >= 1, got {args.length}")
    path = Path(args.model)
    if not path.is_file():
        raise CliError(f"no such model file: {path}")
    if args.data is not None and not Path(args.data).is_file():
        raise CliError(f"no such data file: {args.data}")

    progress = _Progress(enabled=sys.stderr.isatty() and not args.json)
    progress("loading TensorFlow and the model")
    warnings.simplefilter("ignore")  # Keras's load-time chatter; the report says what matters
    import numpy as np

    from rnngrad.diagnosis import diagnose

    model = _load_model(path, unsafe=args.unsafe)
    x, y, source = _inputs(model, args, np)
    loss = _choose_loss(model, y, args.loss, np)
    progress(f"measuring gradients on a batch of {x.shape[0]} sequences of length {x.shape[1]}")
    try:
        report = diagnose(model, x, y, loss=loss)
    except (ValueError, TypeError) as err:
        raise CliError(str(err).splitlines()[0]) from None
    if source == "random":
        report.notes.append(
            "inputs were N(0, 1) noise"
            + ("" if y is not None else " and the loss 1/2 ||output||^2")
            + ": real data can saturate units differently; pass --data for a verdict on your data"
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


def _load_model(path: Path, *, unsafe: bool) -> Any:
    import keras

    try:
        model = keras.models.load_model(path, safe_mode=not unsafe, compile=False)
    except (ValueError, TypeError) as err:
        text = str(err)
        if "safe_mode" in text or "Lambda" in text:
            raise CliError(
                f"{path} contains a Lambda layer, which runs code stored in the file; "
                "rerun with --unsafe if you trust it"
            ) from None
        raise CliError(f"cannot load {path} as a Keras model: {text.splitlines()[0]}") from None
    except (OSError, zipfile.BadZipFile, KeyError) as err:
        raise CliError(f"cannot load {path} as a Keras model: {err}") from None
    if not isinstance(model, keras.Model):
        raise CliError(f"{path} does not hold a Keras model")
    return model


def _inputs(model: Any, args: argparse.Namespace, np: Any) -> tuple[Any, Any, str]:
    if args.data is not None:
        try:
            arrays = np.load(args.data, allow_pickle=False)
            names = list(arrays.files)
        except (OSError, ValueError, zipfile.BadZipFile) as err:
            raise CliError(f"cannot read {args.data} as a .npz file: {err}") from None
        if "x" not in names:
            raise CliError(f"{args.data} must hold an array named 'x' (found: {', '.join(names)})")
        x = arrays["x"][: args.batch]  # a batch of None keeps every row
        y = arrays["y"][: args.batch] if "y" in names else None
        return x, y, args.data
    try:
        shape = tuple(model.inputs[0].shape)
        dtype = str(model.inputs[0].dtype)
    except (AttributeError, IndexError, ValueError):
        raise CliError("the model has no known input shape; pass --data") from None
    if len(shape) != 3 or shape[2] is None or "int" in dtype:
        raise CliError(f"the model takes inputs of shape {shape} ({dtype}); pass --data")
    length = shape[1]
    if length is not None and args.length is not None and args.length != length:
        raise CliError(f"--length {args.length} differs from the model's input length {length}")
    length = length or args.length or 100
    rng = np.random.default_rng(args.seed)
    x = rng.standard_normal((args.batch or 32, length, shape[2])).astype("float32")
    return x, None, "random"


def _choose_loss(model: Any, y: Any, requested: str, np: Any) -> str | None:
    from rnngrad.probes import LOSSES, _outputs_probabilities

    if requested != "auto":
        if requested not in LOSSES:
            raise CliError(f"--loss must be auto or one of {', '.join(LOSSES)}; got {requested}")
        return requested
    if y is None:
        return None
    outputs = int(model.outputs[0].shape[-1] or 1)
    if np.issubdtype(np.asarray(y).dtype, np.integer) and outputs > 1:
        return "sparse_categorical_crossentropy"
    if outputs > 1 and _outputs_probabilities(model, "softmax"):
        return "categorical_crossentropy"
    if _outputs_probabilities(model, "sigmoid"):
        return "binary_crossentropy"
    return "mse"


def _save_plot(report: Any, out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rnngrad.plotting import plot_gradient_profile, use_book_style

    use_book_style()
    fig, ax = plt.subplots()
    for layer in report.layers:
        plot_gradient_profile(layer.profile, ax=ax, label=f"{layer.name} ({layer.kind})")
    ax.axhline(1e-3, color="0.4", lw=1, ls=":", label="vanishing threshold 1e-3")
    ax.legend()
    ax.set_title(f"Gradient profile: {report.verdict}")
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
