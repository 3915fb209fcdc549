"""Run the unit tests against the newest versions ``pyproject.toml`` allows.

The lock file pins the versions the book is built and tested with; ``pyproject.toml``
promises looser ranges. This creates ``.venv-latest`` with the newest versions in those
ranges (no lock), runs the unit tests there, and writes the result with the versions
into ``benchmarks/results_latest.md`` and the README. Run with ``make test-latest``
(it downloads packages from PyPI).
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv-latest"
PACKAGES = ("tensorflow", "keras", "numpy", "matplotlib", "scikit-learn", "tensorboard")


def run(*command: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ROOT, text=True, **kwargs)


def main() -> int:
    python = VENV / "bin" / "python"
    run(sys.executable, "-m", "venv", "--clear", str(VENV), check=True)
    run(str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip", check=True)
    # the unit tests import the book tools too (glue helpers, the TOC reader)
    run(str(python), "-m", "pip", "install", "--quiet", "-e", ".[book,test]", check=True)
    frozen = run(str(python), "-m", "pip", "freeze", capture_output=True, check=True).stdout
    versions = dict(line.split("==", 1) for line in frozen.splitlines() if "==" in line)
    lowered = {name.lower(): version for name, version in versions.items()}
    start = time.perf_counter()
    tests = run(
        str(python),
        "-m",
        "pytest",
        "-q",
        "tests",
        "--ignore=tests/site",
        "-m",
        "not slow",
        "--doctest-modules",
        "rnngrad",
        "-p",
        "no:cacheprovider",
        capture_output=True,
    )
    elapsed = time.perf_counter() - start
    summary = tests.stdout.strip().splitlines()[-1] if tests.stdout.strip() else "no output"
    listed = ", ".join(f"{name} {lowered.get(name, '?')}" for name in PACKAGES)
    text = (
        f"`make test-latest` on {time.strftime('%Y-%m-%d')}: the unit tests against the newest "
        f"versions `pyproject.toml` allows ({listed}; Python {sys.version.split()[0]}): "
        f"**{summary}** in {elapsed:.0f} s.\n"
    )
    (ROOT / "benchmarks" / "results_latest.md").write_text(text)
    readme = ROOT / "README.md"
    readme.write_text(
        re.sub(
            r"<!-- latest:start -->.*<!-- latest:end -->",
            lambda _: f"<!-- latest:start -->\n{text}<!-- latest:end -->",
            readme.read_text(),
            flags=re.S,
        )
    )
    print(text)
    if tests.returncode != 0:
        print(tests.stdout[-5000:])
    return tests.returncode


if __name__ == "__main__":
    raise SystemExit(main())
