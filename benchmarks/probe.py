"""How much does the one-pass probe cost? Against a training step and the eager unroll.

For each sequence length T and cell, on one batch (B=32, H=64, the adding problem):

- probe: ``state_gradient_norms`` warm (compiled, cached), with its default
  ``jit_compile="auto"`` and with XLA off;
- train step: ``model.train_on_batch`` warm, Keras's default compile (SGD, MSE);
- eager unroll: Keras's cell called step by step in Python inside one GradientTape,
  then ``tape.gradient`` with respect to every state (the obvious exact alternative).

Run with ``make benchmark`` (or ``python benchmarks/probe.py --update-readme`` to
rewrite the table in README.md). Timings are medians of repeated warm calls.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the eager unroll lives with the test oracles

import numpy as np  # noqa: E402
from oracles import chain, mse, unrolled_state_gradients  # noqa: E402

import rnngrad  # noqa: E402

BATCH, UNITS = 32, 64


def median_seconds(function, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def measure(cell: str, length: int, layers: int, eager_repeats: int) -> dict[str, float]:
    x, y = rnngrad.tasks.adding_problem(BATCH, length, seed=0)
    model = rnngrad.build_rnn(cell, UNITS, input_dim=2, layers=layers, seed=0)
    model.compile(optimizer="sgd", loss="mse")
    start = time.perf_counter()
    rnngrad.state_gradient_norms(model, x, y)
    first_call = time.perf_counter() - start
    row = {
        "first": first_call,
        "probe": median_seconds(lambda: rnngrad.state_gradient_norms(model, x, y), 7),
        "probe_graph": median_seconds(
            lambda: rnngrad.state_gradient_norms(model, x, y, jit_compile=False), 7
        ),
        "train": median_seconds(lambda: model.train_on_batch(x, y), 7),
    }
    row["eager"] = median_seconds(
        lambda: unrolled_state_gradients(chain(model), x, y, mse), eager_repeats, warmup=1
    )
    return row


def table(rows: list[tuple[str, int, dict[str, float]]]) -> str:
    lines = [
        "| model | T | probe (default) | probe, XLA off | train step | eager unroll "
        "| probe / train step | eager / probe | first call |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, length, r in rows:
        lines.append(
            f"| {name} | {length} | {r['probe'] * 1e3:.1f} ms | {r['probe_graph'] * 1e3:.1f} ms "
            f"| {r['train'] * 1e3:.1f} ms | {r['eager'] * 1e3:.0f} ms "
            f"| {r['probe'] / r['train']:.2f}× | {r['eager'] / r['probe']:.0f}× "
            f"| {r['first']:.1f} s |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[100, 400, 1000])
    parser.add_argument("--update-readme", action="store_true")
    args = parser.parse_args()
    rnngrad.seed_everything(0)
    rows = []
    configs = [("SimpleRNN", "simple", 1), ("LSTM", "lstm", 1), ("GRU", "gru", 1)]
    for length in args.lengths:
        for name, cell, layers in configs:
            rows.append((name, length, measure(cell, length, layers, eager_repeats=3)))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    # A stacked model: the lower layer returns its whole sequence, so "auto" runs without XLA.
    stacked = measure("lstm", 400, 2, eager_repeats=2)
    rows.append(("2 × LSTM, stacked", 400, stacked))
    print(table(rows[-1:]).splitlines()[-1], flush=True)

    cpu = f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}"
    text = (
        f"B={BATCH}, H={UNITS}, adding-problem inputs; {cpu}; "
        f"TensorFlow {rnngrad.probes.tf.__version__}, Keras {rnngrad.models.keras.__version__}."
        f"\n\n{table(rows)}\n"
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
