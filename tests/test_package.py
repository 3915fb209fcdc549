"""Package-level contract: seeding, the backend check, notebooks stored clean."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import rnngrad

ROOT = Path(__file__).resolve().parents[1]


def test_seed_everything_repeats_keras_randomness():
    rnngrad.seed_everything(5)
    first = keras.random.normal((3,)).numpy(), np.random.rand(2)  # noqa: NPY002
    rnngrad.seed_everything(5)
    second = keras.random.normal((3,)).numpy(), np.random.rand(2)  # noqa: NPY002
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("seed, error", [(-1, ValueError), (1.5, TypeError), (True, TypeError)])
def test_seed_everything_rejects_bad_seeds(seed, error):
    with pytest.raises(error, match="seed"):
        rnngrad.seed_everything(seed)


def test_import_under_another_backend_fails_with_a_clear_message():
    env = dict(os.environ, KERAS_BACKEND="jax")
    result = subprocess.run(
        [sys.executable, "-c", "import rnngrad"], env=env, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "rnngrad needs Keras's TensorFlow backend" in result.stderr
    assert "KERAS_BACKEND='jax'" in result.stderr


def test_public_api_contract_names_exist():
    from rnngrad import models, probes, tasks

    for module, names in [
        (tasks, ["adding_problem", "copy_memory", "copy_memory_baseline", "ADDING_BASELINE_MSE"]),
        (models, ["build_rnn"]),
        (probes, ["state_gradient_norms", "state_gradients"]),
    ]:
        for name in names:
            assert hasattr(module, name), f"{module.__name__}.{name}"


NOTEBOOKS = sorted((ROOT / "book").glob("**/*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebooks_are_stored_without_outputs(path):
    notebook = json.loads(path.read_text())
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [], f"{path.name}: a code cell has stored outputs"
            assert cell["execution_count"] is None, f"{path.name}: execution count stored"


def test_table_of_contents_lists_exactly_the_chapters():
    toc = (ROOT / "_toc.yml").read_text()
    listed = {
        line.split(":", 1)[1].strip()
        for line in toc.splitlines()
        if line.strip().startswith(("file:", "- file:", "root:"))
    }
    chapters = {str(p.relative_to(ROOT).with_suffix("")) for p in NOTEBOOKS}
    assert chapters <= listed, f"notebooks missing from _toc.yml: {chapters - listed}"
    for entry in listed:
        candidates = [ROOT / f"{entry}{suffix}" for suffix in (".ipynb", ".md", "")]
        assert any(c.exists() for c in candidates), f"_toc.yml lists a missing file: {entry}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_chapters_follow_the_chapter_standard(path):
    notebook = json.loads(path.read_text())
    markdown = "\n".join(
        "".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "markdown"
    )
    code = "\n".join("".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code")
    assert markdown.lstrip().startswith("# "), f"{path.name}: no title"
    assert "## Summary" in markdown and "## Exercises" in markdown, path.name
    exercises, solutions = markdown.count("{exercise}"), markdown.count("{solution}")
    assert exercises >= 3 and solutions == exercises, f"{path.name}: {exercises} exercises"
    assert markdown.count(":class: dropdown") >= solutions, f"{path.name}: solutions not folded"
    assert "rnngrad.seed_everything(" in code, f"{path.name}: not seeded"
    assert "# Check:" in code and "assert " in code, f"{path.name}: no checked claims"
    figures = markdown.split("{glue:figure}")[1:]
    for figure in figures:
        options = figure.split("\n\n", 1)[0]
        assert ":name:" in options and ":alt:" in options, f"{path.name}: figure without name/alt"
