"""The same chapter run twice prints the same numbers: every glued value is identical.

Slow (it executes a chapter that trains models, twice): run with ``make repro``.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
# A chapter that trains several models (training is where nondeterminism would show).
CHAPTER = ROOT / "book" / "long_sequences.ipynb"


def glued_values(path: Path, workdir: Path) -> dict[str, str]:
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=600, resources={"metadata": {"path": str(workdir)}}).execute()
    values = {}
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            name = output.get("metadata", {}).get("scrapbook", {}).get("name")
            if name is not None:
                # glue(..., display=False) stores its value under a papermill mime type,
                # e.g. "application/papermill.record/text/plain"
                data = output.get("data", {})
                text = [v for k, v in data.items() if k.endswith(("text/plain", "text/html"))]
                values[name] = "".join(text[0]) if text else ""
    return values


@pytest.mark.slow
def test_a_training_chapter_reproduces_every_glued_number(tmp_path):
    if not CHAPTER.exists():
        pytest.fail(f"{CHAPTER.name} is missing: the reproducibility check has no chapter to run")
    first = glued_values(CHAPTER, tmp_path)
    second = glued_values(CHAPTER, tmp_path)
    numbers = {k: v for k, v in first.items() if not v.startswith("<Figure")}
    assert len(numbers) >= 5, f"expected the chapter to glue numbers, found {sorted(first)}"
    different = {k: (v, second.get(k)) for k, v in numbers.items() if second.get(k) != v}
    assert not different, f"glued values differ between two runs: {different}"
