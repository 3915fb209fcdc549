"""Shared test set-up: quiet TensorFlow and a seeded start.

``tests`` is a package, so tests and benchmarks import the oracles as ``tests.oracles``.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Tests run in parallel processes (pytest -n 2): one thread each, not two apiece.
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")

import pytest

import rnngrad


@pytest.fixture(autouse=True)
def _seeded():
    rnngrad.seed_everything(0)
