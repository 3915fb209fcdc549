"""The book's figure style and the plots that recur across chapters."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

from rnngrad._validation import check_array
from rnngrad.profiles import gradient_ratio, lags

__all__ = ["COLUMN_WIDTH", "FIGURE_DPI", "PALETTE", "plot_gradient_profile", "use_book_style"]

COLUMN_WIDTH: float = 6.0
"""The width of the book's text column in inches at :data:`FIGURE_DPI` (600 screen pixels).

The HTML page shows a figure at its natural size when it is no wider than the column, so
a figure made at this width (or narrower) keeps the font sizes of :func:`use_book_style`
on screen; a wider one is scaled down, and its text with it. Two panels side by side
therefore share this width, or are stacked. On a phone (a screen under 576 px) the page
shows a figure at no less than 3/4 of its natural size, about 1 px per point, in a box
of its own that scrolls sideways (``book/_static/chapters.css``)."""

FIGURE_DPI: int = 100
"""Pixels per inch of a figure on screen (a 10-point label is 14 pixels high)."""

PALETTE: tuple[str, ...] = (
    "#0072B2",  # blue
    "#D55E00",  # vermillion
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#E69F00",  # orange
    "#56B4E9",  # sky blue
    "#000000",  # black
    "#F0E442",  # yellow (last: weak on white)
)
"""Okabe & Ito's colour-blind-safe palette, in the order lines are drawn."""


def use_book_style() -> None:
    """Set matplotlib's defaults to the book's style.

    White backgrounds (pages are read in dark mode too), the colour-blind-safe
    :data:`PALETTE`, light grids, no top/right spines, and sizes for the page: figures
    are :data:`COLUMN_WIDTH` inches wide at :data:`FIGURE_DPI`, so they are shown at their
    natural size, where the smallest text (ticks and legends, 9 points) is 12.5 pixels
    high. In a Jupyter kernel, figures are also displayed as pixel-doubled PNGs
    ("retina"), sharp on high-density screens and still shown at the same size.

    Examples
    --------
    >>> use_book_style()
    >>> import matplotlib as mpl
    >>> mpl.rcParams["figure.facecolor"]
    'white'
    >>> mpl.rcParams["figure.figsize"][0] == COLUMN_WIDTH
    True
    """
    mpl.rcParams.update(
        {
            "figure.figsize": (COLUMN_WIDTH, 3.6),
            "figure.dpi": FIGURE_DPI,
            "savefig.dpi": "figure",
            "figure.facecolor": "white",
            "axes.facecolor": "white",
            "savefig.facecolor": "white",
            "figure.constrained_layout.use": True,
            "axes.prop_cycle": mpl.cycler(color=PALETTE),
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "grid.linewidth": 0.6,
            "font.size": 10,
            "axes.titlesize": 10.5,
            "axes.labelsize": 10,
            "xtick.labelsize": 9,
            "ytick.labelsize": 9,
            "legend.fontsize": 9,
            "legend.title_fontsize": 9,
            "legend.frameon": False,
            "lines.linewidth": 1.8,
            "lines.markersize": 5,
            "image.cmap": "viridis",
        }
    )
    _use_retina_in_jupyter()


def _use_retina_in_jupyter() -> None:
    """Display figures as pixel-doubled PNGs when running under IPython (else do nothing)."""
    try:
        from IPython.core.interactiveshell import InteractiveShell
    except ImportError:  # plain Python without IPython: nothing is displayed inline
        return
    if not InteractiveShell.initialized():
        return
    try:
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:
        return
    set_matplotlib_formats("retina")


def plot_gradient_profile(
    norms: np.ndarray,
    *,
    ax: Axes | None = None,
    label: str | Sequence[str] | None = None,
    normalize: bool = True,
    **line_kwargs: object,
) -> Axes:
    """Plot gradient norm against lag (steps back in time) on a log scale.

    Parameters
    ----------
    norms : array-like
        A ``(T,)`` profile or a ``(layers, T)`` table from
        :func:`rnngrad.probes.state_gradient_norms`; one line per row.
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure by default.
    label : str or list of str, optional
        Legend label(s), one per row.
    normalize : bool, default True
        Plot ``||dL/dh_t|| / ||dL/dh_T||`` (1 at lag 0) instead of raw norms.
    **line_kwargs
        Passed to ``Axes.plot``.

    Returns
    -------
    matplotlib.axes.Axes
        Zero and non-finite norms (float32 underflow, overflow) are left out of the
        line, since a log axis cannot show them.
    """
    table = check_array("norms", norms, ndim=(1, 2)).astype(np.float64)
    table = np.atleast_2d(table)
    if normalize:
        table = gradient_ratio(table)
    labels = [label] if isinstance(label, str) or label is None else list(label)
    if len(labels) == 1 and table.shape[0] > 1:
        labels = labels * table.shape[0] if labels[0] is None else labels
    if len(labels) != table.shape[0]:
        raise ValueError(f"label must give one name per row ({table.shape[0]}), got {len(labels)}")
    if ax is None:
        _, ax = plt.subplots()
    lag = lags(table.shape[1])
    for row, name in zip(table, labels):
        shown = np.where(np.isfinite(row) & (row > 0), row, np.nan)
        ax.plot(lag, shown, label=name, **line_kwargs)
    ax.set_yscale("log")
    ax.set_xlabel(r"lag $T - t$ (steps back in time)")
    ax.set_ylabel(
        r"$\|\partial L/\partial h_t\| \,/\, \|\partial L/\partial h_T\|$"
        if normalize
        else r"$\|\partial L/\partial h_t\|$ (batch mean)"
    )
    if any(name is not None for name in labels):
        ax.legend()
    return ax
