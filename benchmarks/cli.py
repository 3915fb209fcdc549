"""Wall-clock time of ``rnngrad diagnose`` on a saved T=100 model, TensorFlow's import included.

Goal: <= 15 s. Each run is a fresh process (``python -m rnngrad diagnose ...``), so the
time includes starting Python, importing TensorFlow, loading the model, compiling and
running the probe and writing the report. Run with ``make benchmark``.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
REPEATS = 3


def main() -> None:
    import rnngrad

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for cell, layers in [("simple", 1), ("lstm", 2)]:
            path = Path(folder) / f"{cell}.keras"
            rnngrad.build_rnn(cell, 64, input_dim=8, layers=layers, length=100).save(path)
            times = []
            for _ in range(REPEATS):
                start = time.perf_counter()
                done = subprocess.run(
                    [sys.executable, "-m", "rnngrad", "diagnose", str(path), "--json"],
                    capture_output=True,
                    text=True,
                )
                times.append(time.perf_counter() - start)
                if done.returncode not in (0, 1):
                    raise SystemExit(f"rnngrad diagnose failed: {done.stderr}")
            name = f"{layers} x {cell} (64 units), T=100, B=32"
            rows.append((name, statistics.median(times), max(times)))
    lines = ["| model | median | slowest |", "|---|---:|---:|"]
    lines += [f"| {name} | {median:.1f} s | {slowest:.1f} s |" for name, median, slowest in rows]
    text = "\n".join(lines)
    print(text)
    result = (
        f"`rnngrad diagnose MODEL.keras --json`, {REPEATS} fresh processes each, "
        f"{os.cpu_count()} cores.\n\n{text}\n"
    )
    (ROOT / "benchmarks" / "results_cli.md").write_text(result)
    readme = ROOT / "README.md"
    readme.write_text(
        re.sub(
            r"<!-- cli-benchmark:start -->.*<!-- cli-benchmark:end -->",
            lambda _: f"<!-- cli-benchmark:start -->\n{result}<!-- cli-benchmark:end -->",
            readme.read_text(),
            flags=re.S,
        )
    )


if __name__ == "__main__":
    main()
