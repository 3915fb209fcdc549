"""Shared test set-up: quiet TensorFlow, the oracles on the path, a seeded start."""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(__file__))  # `import oracles`

import pytest

import rnngrad


@pytest.fixture(autouse=True)
def _seeded():
    rnngrad.seed_everything(0)
