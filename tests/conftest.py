"""Shared test set-up: quiet TensorFlow and a seeded start.

``tests`` is a package, so tests and benchmarks import the oracles as ``tests.oracles``.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

import rnngrad


@pytest.fixture(autouse=True)
def _seeded():
    rnngrad.seed_everything(0)
