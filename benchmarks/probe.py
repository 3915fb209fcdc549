"""What does the probe cost? Against a training step, against ``diagnose``, and against
the eager unroll, measured side by side in one run.

For each model, on one batch (B=32, H=64, the adding problem):

- probe: ``state_gradient_norms`` warm (its compiled forms traced and checked; with the
  default ``jit_compile="auto"`` a probe repeated on the same weights settles under
  XLA after ``XLA_AFTER_STABLE_RUNS`` runs on TensorFlow's kernels: the warm-up runs
  until then);
- train step: ``model.train_on_batch`` warm, Keras's default compile for this machine
  (SGD, MSE);
- diagnose: ``rnngrad.diagnose`` warm: the probe with each layer's transport (one more
  backward loop per layer), the gate openings and the optimizer's gradient norm, in one
  compiled call;
- eager unroll: Keras's cells called step by step in Python inside one GradientTape,
  then ``tape.gradient`` with respect to every state (the obvious exact alternative).

Goals (issue "The models people actually train"): probe <= 0.75x a training step for
single and stacked layers; a warm diagnose <= 1.5x a warm probe; no retracing for a
repeated shape, a partial last batch included (checked at the end).

Run with ``make benchmark`` (or ``python benchmarks/probe.py --update-readme`` to
rewrite the table in README.md). Timings are medians of repeated warm calls; the ratios
are medians of ratios of calls made back to back, round after round.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]

import keras  # noqa: E402
import numpy as np  # noqa: E402

import rnngrad  # noqa: E402
from rnngrad import _engine  # noqa: E402
from tests.oracles import chain, mse, unrolled_state_gradients  # noqa: E402

BATCH, UNITS = 32, 64
WARMUP = 4
MAX_WARMUP = 40  # calls; a probe settles (XLA or not) after XLA_AFTER_STABLE_RUNS runs
ROUNDS = 15  # timed rounds of probe, training step and diagnose, back to back


def settled(model: keras.Model) -> bool:
    """Whether every compiled probe of ``model`` has made its final choice: an XLA form
    checked on these weights, or TensorFlow's kernels for good."""
    entries = [entry for entry in _engine._CACHE.get(model, {}).values() if entry.runs]
    return bool(entries) and all(
        entry.xla_failed or (entry.xla is not None and entry.xla.checked) for entry in entries
    )


def median_seconds(function, repeats: int, warmup: int = WARMUP, model=None) -> float:
    """The median of ``repeats`` timed calls, after ``warmup`` calls, and with ``model``
    after as many more as the probe needs to settle on its compiled form."""
    for _ in range(warmup):
        function()
    for _ in range(MAX_WARMUP if model is not None else 0):
        if settled(model):
            break
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def stacked(first: str, second: str, length: int) -> keras.Model:
    """Two stock layers stacked, e.g. LSTM -> GRU, as a user would write them."""
    keras.utils.set_random_seed(0)
    layers = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}
    inputs = keras.Input((length, 2))
    hidden = layers[first](UNITS, return_sequences=True)(inputs)
    hidden = layers[second](UNITS)(hidden)
    return keras.Model(inputs, keras.layers.Dense(1)(hidden))


def bidirectional(length: int) -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((length, 2))
    hidden = keras.layers.Bidirectional(keras.layers.LSTM(UNITS // 2))(inputs)
    return keras.Model(inputs, keras.layers.Dense(1)(hidden))


def measure(model: keras.Model, length: int, eager_repeats: int) -> dict[str, float]:
    x, y = rnngrad.tasks.adding_problem(BATCH, length, seed=0)
    # The training step runs on a copy, so that the probed weights never change (new
    # weights would make the probe check its XLA form again, which a warm probe does not).
    trained = keras.models.clone_model(model)
    trained.set_weights(model.get_weights())
    trained.compile(optimizer="sgd", loss="mse")
    model.compile(optimizer="sgd", loss="mse")
    start = time.perf_counter()
    rnngrad.state_gradient_norms(model, x, y)
    first_call = time.perf_counter() - start
    calls = {
        "probe": lambda: rnngrad.state_gradient_norms(model, x, y),
        "train": lambda: trained.train_on_batch(x, y),
        "diagnose": lambda: rnngrad.diagnose(model, x, y),
    }
    row = {"first": first_call, **paired_seconds(calls, ROUNDS, model)}
    row["eager"] = (
        median_seconds(lambda: unrolled_state_gradients(chain(model), x, y, mse), 1, warmup=1)
        if eager_repeats
        else float("nan")
    )
    return row


def paired_seconds(calls: dict, rounds: int, model: keras.Model) -> dict[str, float]:
    """Each call warm (as :func:`median_seconds` warms it), then ``rounds`` rounds of one
    timed call each, back to back: the median time of each, and the medians of the
    per-round ratios probe/train and diagnose/probe, which a drift of the machine's speed
    during the run affects far less than a ratio of medians measured minutes apart."""
    for name, call in calls.items():
        median_seconds(call, 1, model=model if name != "train" else None)
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    t = {name: np.array(values) for name, values in times.items()}
    row = {name: float(np.median(values)) for name, values in t.items()}
    row["probe/train"] = float(np.median(t["probe"] / t["train"]))
    row["diagnose/probe"] = float(np.median(t["diagnose"] / t["probe"]))
    return row


def retracing_check() -> str:
    """Repeated calls with a partial last batch: every compiled form traced once."""
    model = rnngrad.build_rnn("gru", UNITS, input_dim=2, length=100)
    x, y = rnngrad.tasks.adding_problem(80, 100, seed=1)
    for _ in range(4):
        rnngrad.state_gradient_norms(model, x, y, batch_size=32)  # 32, 32, 16
    entries = list(_engine._CACHE[model].values())
    traces = [
        compiled.function.experimental_get_tracing_count()
        for entry in entries
        for compiled in (entry.graph, entry.xla)
        if compiled is not None
    ]
    return (
        f"Retracing: 4 passes over 80 sequences in batches of 32 (32, 32, 16): "
        f"{len(entries)} input signature, compiled forms traced {traces} times."
    )


def table(rows: list[tuple[str, int, dict[str, float]]]) -> str:
    lines = [
        "| model | T | probe | train step | probe / train step | diagnose "
        "| diagnose / probe | eager unroll | eager / probe | first probe |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, length, r in rows:
        eager = "" if np.isnan(r["eager"]) else f"{r['eager'] * 1e3:.0f} ms"
        ratio = "" if np.isnan(r["eager"]) else f"{r['eager'] / r['probe']:.0f}×"
        lines.append(
            f"| {name} | {length} | {r['probe'] * 1e3:.1f} ms | {r['train'] * 1e3:.1f} ms "
            f"| {r['probe/train']:.2f}× | {r['diagnose'] * 1e3:.1f} ms "
            f"| {r['diagnose/probe']:.2f}× | {eager} | {ratio} | {r['first']:.1f} s |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[100, 400, 1000])
    parser.add_argument("--update-readme", action="store_true")
    args = parser.parse_args()
    rnngrad.seed_everything(0)
    rows = []
    for length in args.lengths:
        for name, cell in [("SimpleRNN", "simple"), ("LSTM", "lstm"), ("GRU", "gru")]:
            model = rnngrad.build_rnn(cell, UNITS, input_dim=2, seed=0)
            rows.append((name, length, measure(model, length, eager_repeats=length <= 400)))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    for name, model in [
        ("LSTM → GRU, stacked", stacked("lstm", "gru", 400)),
        ("2 × LSTM, stacked", stacked("lstm", "lstm", 400)),
        ("Bidirectional LSTM", bidirectional(400)),
    ]:
        rows.append((name, 400, measure(model, 400, eager_repeats=1)))
        print(table(rows[-1:]).splitlines()[-1], flush=True)

    cpu = f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}"
    text = (
        f"B={BATCH}, H={UNITS}, adding-problem inputs; {cpu}; "
        f"TensorFlow {rnngrad.probes.tf.__version__}, Keras {keras.__version__}."
        f"\n\n{table(rows)}\n\n{retracing_check()}\n"
    )
    (ROOT / "benchmarks" / "results.md").write_text(text)
    print("\n" + text)
    if args.update_readme:
        readme = ROOT / "README.md"
        block = f"<!-- benchmark:start -->\n{text}<!-- benchmark:end -->"
        updated = re.sub(
            r"<!-- benchmark:start -->.*<!-- benchmark:end -->",
            lambda _: block,
            readme.read_text(),
            flags=re.S,
        )
        readme.write_text(updated)


if __name__ == "__main__":
    main()
