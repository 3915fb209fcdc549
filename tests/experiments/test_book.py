"""rnngrad.experiments.book: numbers and figures glued into the chapters' text."""

import subprocess
import sys
import textwrap

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

from rnngrad.experiments import book
from rnngrad.plotting import COLUMN_WIDTH


@pytest.fixture
def glued(monkeypatch):
    """Record what would be glued instead of displaying it."""
    calls = []
    monkeypatch.setattr(book, "_glue", lambda name, value: calls.append((name, value)))
    return calls


def test_plain_number_gives_python_ints_and_floats():
    assert type(book.plain_number(np.int32(3))) is int
    assert type(book.plain_number(np.float32(0.5))) is float
    assert book.plain_number(np.array(2.5)) == 2.5
    assert book.plain_number(7) == 7 and type(book.plain_number(7)) is int
    assert book.plain_number(np.float64(-np.inf)) == -np.inf
    assert np.isnan(book.plain_number(float("nan")))


@pytest.mark.parametrize("value", [True, np.bool_(False), "0.5", 1j, np.ones(2), None])
def test_plain_number_refuses_what_is_not_one_real_number(value):
    with pytest.raises(TypeError, match="rate"):
        book.plain_number(value, name="rate")


def test_glue_numbers_glues_every_name_once_as_plain_numbers(glued):
    # nothing returned: a call that ends a notebook cell must print nothing on the page
    assert book.glue_numbers({"a": np.float64(0.25)}, b=np.int64(4), c=1.5) is None
    assert glued == [("a", 0.25), ("b", 4), ("c", 1.5)]
    assert [type(v) for _, v in glued] == [float, int, float]


def test_glue_numbers_checks_everything_before_gluing_anything(glued):
    with pytest.raises(TypeError, match="bad must be a real number"):
        book.glue_numbers(good=1.0, bad="text")
    with pytest.raises(ValueError, match="given twice: a"):
        book.glue_numbers({"a": 1.0}, a=2.0)
    with pytest.raises(TypeError, match="mapping"):
        book.glue_numbers([("a", 1.0)])
    with pytest.raises(TypeError, match="glue name"):
        book.glue_numbers({"": 1.0})
    assert glued == []


def test_count_words_reads_as_a_sentence():
    said = [book.count_words(k, 3) for k in range(4)]
    assert said == ["none of the three", "one of the three", "two of the three", "all three"]
    assert book.count_words(2, 2) == "both"
    assert book.count_words(1, 1) == "all one"
    assert book.count_words(0, 11) == "none of the 11"
    assert book.count_words(np.int64(4), 11) == "4 of the 11"


@pytest.mark.parametrize(
    ("count", "total", "error"),
    [(4, 3, ValueError), (-1, 3, ValueError), (0, 0, ValueError), (1.0, 3, TypeError),
     (True, 3, TypeError)],
)  # fmt: skip
def test_count_words_refuses_impossible_counts(count, total, error):
    with pytest.raises(error, match=r"^(count|total) must"):
        book.count_words(count, total)


def test_table_html_escapes_cells_and_checks_row_lengths():
    table = book.table_html(["remedy", "a < b"], [["Ω", 1.5], ["x & y", "no"]])
    assert "<th>a &lt; b</th>" in table and "<td>x &amp; y</td>" in table
    assert table.count("<tr>") == 3 and "<td>1.5</td>" in table
    with pytest.raises(ValueError, match=r"rows\[1\] has 1 cells"):
        book.table_html(["a", "b"], [["1", "2"], ["3"]])
    with pytest.raises(ValueError, match="header"):
        book.table_html([], [])


def test_glue_texts_glues_strings_only(glued):
    assert book.glue_texts({"a": "vanishing"}, b="healthy") is None
    assert glued == [("a", "vanishing"), ("b", "healthy")]
    with pytest.raises(TypeError, match="c must be a string"):
        book.glue_texts(c=0.5)
    with pytest.raises(ValueError, match="given twice: a"):
        book.glue_texts({"a": "x"}, a="y")
    assert len(glued) == 2


def test_glue_figure_glues_then_closes(glued):
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 3))
    ax.plot([0, 1])
    book.glue_figure("fig-x", fig)
    assert glued == [("fig-x", fig)]
    assert not plt.fignum_exists(fig.number)


def test_glue_figure_refuses_a_figure_wider_than_the_column(glued):
    fig = plt.figure(figsize=(COLUMN_WIDTH + 1, 3))
    with pytest.raises(ValueError, match="wider than the 6-inch text column"):
        book.glue_figure("fig-wide", fig)
    with pytest.raises(TypeError, match="fig must be a matplotlib Figure"):
        book.glue_figure("fig-none", None)
    assert glued == []
    plt.close(fig)


def _run_in_ipython(code: str) -> str:
    """Run code in a fresh process with an IPython shell, return its stdout."""
    script = textwrap.dedent(
        """
        import matplotlib
        matplotlib.use("Agg")
        from IPython.core.interactiveshell import InteractiveShell
        shell = InteractiveShell.instance()
        """
    ) + textwrap.dedent(code)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_glued_numbers_and_figures_reach_the_notebook_as_myst_nb_reads_them():
    out = _run_in_ipython(
        """
        import json
        from unittest import mock
        import matplotlib.pyplot as plt
        import numpy as np
        from rnngrad.experiments.book import glue_figure, glue_numbers
        from rnngrad.plotting import use_book_style

        use_book_style()
        shown = []
        with mock.patch("myst_nb.ext.glue.ipy_display",
                        lambda data, raw, metadata: shown.append((data, metadata))):
            glue_numbers(rate=np.float64(-0.125))
            fig, ax = plt.subplots()
            ax.plot([0, 1], [1, 0])
            glue_figure("fig-line", fig)
        (number, _), (figure, meta) = shown
        prefix = "application/papermill.record/"
        print(json.dumps({
            "text": number[prefix + "text/plain"],
            "png": prefix + "image/png" in figure,
            "meta": meta.get("image/png"),
        }))
        """
    )
    result = __import__("json").loads(out.strip().splitlines()[-1])
    assert result["text"] == "-0.125"  # a plain float, formattable with :.2f
    assert result["png"]
    # retina: the PNG has twice the pixels and is shown at the column's width
    width = result["meta"]["width"]
    assert abs(width - COLUMN_WIDTH * 100) < 0.05 * COLUMN_WIDTH * 100, result["meta"]


def test_book_module_does_not_import_tensorflow():
    code = (
        "import sys, rnngrad.experiments.book; "
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]
