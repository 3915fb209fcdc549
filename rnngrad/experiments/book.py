"""Helpers the book's chapter notebooks share: numbers and figures glued into the text.

A chapter computes its numbers and figures in code and the text shows them through
MyST-NB's ``{glue:text}`` roles and ``{glue:figure}`` directives. These helpers do the
gluing in one call each:

- :func:`glue_numbers` glues a set of numbers at once, as plain Python ``int`` and
  ``float`` (a NumPy scalar would be shown as ``np.float64(0.73)`` and could not be
  formatted with ``:.2f``);
- :func:`glue_texts` glues words (a verdict, a name) the same way;
- :func:`table_html` writes a small table of results as HTML, for a cell to display;
- :func:`count_words` says "none of the three", "one of the three" or "all three" for a
  count of runs, so that a glued count reads as a sentence, not as "0 of 3";
- :func:`glue_figure` glues a figure and closes it, after checking that it fits the text
  column (a wider figure is shown scaled down, with text too small to read).

Nothing here imports TensorFlow. MyST-NB (the ``book`` extra) is imported only when
something is glued.
"""

from __future__ import annotations

import html
import numbers
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from rnngrad.plotting import COLUMN_WIDTH

__all__ = [
    "count_words",
    "glue_figure",
    "glue_numbers",
    "glue_texts",
    "plain_number",
    "table_html",
]


def plain_number(value: object, *, name: str = "value") -> int | float:
    """Return a number as a plain Python ``int`` or ``float``.

    Parameters
    ----------
    value : int, float, numpy.number or numpy.ndarray
        The number. Integers (Python or NumPy) give an ``int``, every other real number
        a ``float``; infinities and NaN are kept (a rate of ``-inf`` is a result too).
    name : str, default "value"
        The name used in error messages.

    Returns
    -------
    int or float

    Raises
    ------
    TypeError
        If ``value`` is not a single real number (a bool, a string, a complex number, an
        array with more than one element).

    Examples
    --------
    >>> plain_number(np.float32(0.25))
    0.25
    >>> plain_number(np.int64(7))
    7
    >>> plain_number(np.array(-np.inf))
    -inf
    """
    if isinstance(value, np.ndarray):
        if value.ndim != 0:
            raise TypeError(f"{name} must be a single number, got an array of shape {value.shape}")
        value = value[()]
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    if isinstance(value, numbers.Integral):
        return int(value)
    return float(value)


def _glue(name: str, value: object) -> None:
    try:
        from myst_nb import glue
    except ImportError as err:  # pragma: no cover - the book extra is part of the test setup
        raise ImportError("gluing needs MyST-NB: pip install 'rnngrad[book]' (or myst-nb)") from err
    glue(name, value, display=False)


def _check_key(key: object) -> str:
    if not isinstance(key, str) or not key:
        raise TypeError(f"each glue name must be a non-empty string, got {key!r}")
    return key


def glue_numbers(
    values: Mapping[str, object] | None = None, /, *, prefix: str = "", **named: object
) -> None:
    """Glue a set of numbers for the ``{glue:text}`` roles of a chapter, at once.

    Parameters
    ----------
    values : mapping of str to float, optional
        Names and numbers, for names built in code (``{f"rate_{cell}": ...}``).
    prefix : str, default ""
        Put before every name, so that a chapter can keep its glue names apart from
        another's (``prefix="step_"`` glues ``rate`` as ``step_rate``).
    **named : float
        More names and numbers, as keyword arguments.

    Returns
    -------
    None
        Nothing, so that a call ending a notebook cell prints nothing on the
        page; each number is glued as :func:`plain_number` gives it.

    Raises
    ------
    TypeError
        If a name is not a non-empty string or a value is not a single real number
        (nothing is glued then).
    ValueError
        If a name is given twice.

    Examples
    --------
    >>> import numpy as np
    >>> glue_numbers({"ratio": np.float64(0.5)}, steps=np.int64(99))

    A chapter's text then shows the ratio with the role ``{glue:text}`` and the content
    ``ratio:.2f``, as 0.50.
    """
    if values is not None and not isinstance(values, Mapping):
        raise TypeError(
            f"values must be a mapping of names to numbers, got {type(values).__name__}"
        )
    given = dict(values or {})
    repeated = sorted(set(given) & set(named))
    if repeated:
        raise ValueError(f"glue names given twice: {', '.join(repeated)}")
    given.update(named)
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a string, got {type(prefix).__name__}")
    plain = {
        _check_key(prefix + key): plain_number(value, name=key) for key, value in given.items()
    }
    for key, value in plain.items():
        _glue(key, value)


def table_html(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A table of results as HTML (``<table class="table">``), every cell escaped.

    Parameters
    ----------
    header : sequence of str
        The column headings.
    rows : sequence of sequence
        One sequence of cells per row, as many as ``header`` has headings; each cell is
        shown as ``str(cell)`` (format numbers before).

    Returns
    -------
    str
        The table, for ``IPython.display.HTML``.

    Raises
    ------
    ValueError
        If ``header`` is empty or a row has a different number of cells.

    Examples
    --------
    >>> print(table_html(["remedy", "helps"], [["clipping", "no"]]))
    <table class="table">
    <tr><th>remedy</th><th>helps</th></tr>
    <tr><td>clipping</td><td>no</td></tr>
    </table>
    """
    header = [str(h) for h in header]
    if not header:
        raise ValueError("header must name at least one column")
    lines = ['<table class="table">', _row("th", header)]
    for k, row in enumerate(rows):
        cells = [str(cell) for cell in row]
        if len(cells) != len(header):
            raise ValueError(
                f"rows[{k}] has {len(cells)} cells, but the header has {len(header)} columns"
            )
        lines.append(_row("td", cells))
    return "\n".join([*lines, "</table>"])


def _row(tag: str, cells: list[str]) -> str:
    return "<tr>" + "".join(f"<{tag}>{html.escape(c)}</{tag}>" for c in cells) + "</tr>"


_NUMBER_WORDS = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
)  # fmt: skip


def count_words(count: int, total: int) -> str:
    """How many of ``total`` runs (seeds, examples) did something, in words.

    Parameters
    ----------
    count : int
        How many did; between 0 and ``total``.
    total : int
        How many there were; at least 1. Counts out of ten or fewer are spelled out.

    Returns
    -------
    str
        ``"none of the three"``, ``"one of the three"``, ``"both"`` or ``"all three"``:
        the words to put before a plural noun ("... of the three seeds").

    Raises
    ------
    TypeError
        If a count is not an integer.
    ValueError
        If ``total`` is below 1 or ``count`` is not between 0 and ``total``.

    Examples
    --------
    >>> count_words(0, 3), count_words(1, 3), count_words(3, 3), count_words(2, 2)
    ('none of the three', 'one of the three', 'all three', 'both')
    >>> count_words(5, 12)
    '5 of the 12'
    """
    for name, value in (("count", count), ("total", total)):
        if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    count, total = int(count), int(total)
    if total < 1:
        raise ValueError(f"total must be at least 1, got {total}")
    if not 0 <= count <= total:
        raise ValueError(f"count must be between 0 and total ({total}), got {count}")

    def word(n: int) -> str:  # digits for both numbers when the total is large
        return _NUMBER_WORDS[n] if total < len(_NUMBER_WORDS) else str(n)

    if count == 0:
        return f"none of the {word(total)}"
    if count == total:
        return "both" if total == 2 else f"all {word(total)}"
    return f"{word(count)} of the {word(total)}"


def glue_texts(values: Mapping[str, str] | None = None, /, **named: str) -> dict[str, str]:
    """Glue a set of words (a verdict, a model's name) for ``{glue:text}`` roles, at once.

    Parameters
    ----------
    values : mapping of str to str, optional
        Names and texts, for names built in code.
    **named : str
        More names and texts, as keyword arguments.

    Returns
    -------
    None
        Nothing (a call ending a notebook cell prints nothing on the page).

    Raises
    ------
    TypeError
        If a name is not a non-empty string or a value is not a string (a number belongs
        in :func:`glue_numbers`, where it can be formatted); nothing is glued then.
    ValueError
        If a name is given twice.

    Examples
    --------
    >>> glue_texts(verdict="vanishing")
    """
    if values is not None and not isinstance(values, Mapping):
        kind = type(values).__name__
        raise TypeError(f"values must be a mapping of names to texts, got {kind}")
    given = dict(values or {})
    repeated = sorted(set(given) & set(named))
    if repeated:
        raise ValueError(f"glue names given twice: {', '.join(repeated)}")
    given.update(named)
    for key, value in given.items():
        _check_key(key)
        if not isinstance(value, str):
            kind = type(value).__name__
            raise TypeError(f"{key} must be a string, got {kind} {value!r}")
    for key, value in given.items():
        _glue(key, value)


def glue_figure(name: str, fig: Figure) -> None:
    """Glue a figure for a ``{glue:figure}`` directive and close it.

    Closing keeps the figure from being shown a second time under the cell that made it,
    and frees its memory.

    Parameters
    ----------
    name : str
        The glue name, which the ``{glue:figure}`` directive refers to.
    fig : matplotlib.figure.Figure
        The figure; at most :data:`rnngrad.plotting.COLUMN_WIDTH` inches wide, so that the
        page shows it at its natural size.

    Raises
    ------
    TypeError
        If ``name`` is not a non-empty string or ``fig`` is not a matplotlib figure.
    ValueError
        If the figure is wider than the column (make it narrower, or stack its panels).

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> fig, ax = plt.subplots(figsize=(6, 3))
    >>> glue_figure("fig-example", fig)
    >>> plt.fignum_exists(fig.number)
    False
    """
    _check_key(name)
    if not isinstance(fig, Figure):
        raise TypeError(f"fig must be a matplotlib Figure, got {type(fig).__name__}")
    width = fig.get_figwidth()
    if width > COLUMN_WIDTH + 1e-9:
        raise ValueError(
            f"fig is {width:g} inches wide, wider than the {COLUMN_WIDTH:g}-inch text column: "
            "the page would shrink it and its text; make it narrower or stack its panels"
        )
    import matplotlib.pyplot as plt

    _glue(name, fig)
    plt.close(fig)
