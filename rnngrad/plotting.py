"""The book's figure style and the plots that recur across chapters."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

from rnngrad._validation import check_array
from rnngrad.profiles import gradient_ratio, lags

__all__ = ["PALETTE", "plot_gradient_profile", "use_book_style"]

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
    :data:`PALETTE`, labels readable at page width, light grids, no top/right spines.

    Examples
    --------
    >>> use_book_style()
    >>> import matplotlib as mpl
    >>> mpl.rcParams["figure.facecolor"]
    'white'
    """
    mpl.rcParams.update(
        {
            "figure.figsize": (7.0, 4.0),
            "figure.dpi": 120,
            "savefig.dpi": 150,
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
            "font.size": 11,
            "axes.titlesize": 12,
            "axes.labelsize": 11,
            "legend.fontsize": 10,
            "legend.frameon": False,
            "lines.linewidth": 2.0,
            "image.cmap": "viridis",
        }
    )


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
