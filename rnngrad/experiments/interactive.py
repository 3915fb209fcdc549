"""Interactive figures for the book's web pages: a slider over curves a notebook measured.

:func:`slider_figure` takes curves measured at each value of a parameter (a gradient
profile for every recurrent gain of a grid, say) and returns a :class:`SliderFigure`: a
`plotly.js <https://plotly.com/javascript/>`_ figure whose slider stops only at the
measured values and shows, at each stop, exactly the arrays measured there (nothing is
interpolated), together with a static image for print, the PDF and readers without
JavaScript.

The HTML it writes loads no script from anywhere: the page must provide plotly.js as
``window.Plotly``. The book's Sphinx extension serves the copy of plotly.js that ships
in the ``plotly`` Python package (:func:`plotly_js_path`) from the site's own
``_static`` folder, so the figure works offline and from disk. Where plotly.js is not
loaded (a notebook in Jupyter, a page printed to PDF), the static image is shown.

Needs the ``plotly`` package (``pip install "rnngrad[book]"``).
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from rnngrad._validation import check_array, check_int

__all__ = ["SliderFigure", "plotly_js_path", "slider_figure"]

_FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"
_COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
_DASHES = ("solid", "dash", "dot", "dashdot", "longdash")
_CSS = (
    ".rnngrad-interactive{max-width:100%;margin:0 auto}"
    ".rnngrad-interactive .rnngrad-live{display:none;width:100%}"
    ".rnngrad-interactive.is-live .rnngrad-live{display:block}"
    ".rnngrad-interactive.is-live .rnngrad-static{display:none}"
    ".rnngrad-interactive .rnngrad-static{display:block;max-width:100%;height:auto;margin:0 auto}"
    "@media print{.rnngrad-interactive .rnngrad-live,"
    ".rnngrad-interactive.is-live .rnngrad-live{display:none!important}"
    ".rnngrad-interactive .rnngrad-static,"
    ".rnngrad-interactive.is-live .rnngrad-static{display:block!important}}"
)


def plotly_js_path() -> Path:
    """The minified plotly.js that ships inside the installed ``plotly`` package.

    Returns
    -------
    pathlib.Path
        ``.../plotly/package_data/plotly.min.js`` (MIT licence; its header names it).

    Examples
    --------
    >>> plotly_js_path().name
    'plotly.min.js'
    """
    plotly = _plotly()
    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise FileNotFoundError(f"plotly.js is missing from the plotly package: {path}")
    return path


@dataclass(frozen=True)
class SliderFigure:
    """A measured family of curves with a slider, and its static image.

    Build it with :func:`slider_figure`. In Jupyter (and in the book's build, through
    ``myst_nb.glue``) it displays as HTML: the live figure where plotly.js is loaded,
    the static image elsewhere.

    Attributes
    ----------
    spec : dict
        The plotly.js figure: ``{"data": [...], "layout": {...}, "config": {...}}``,
        JSON-serializable, with one slider step per measured value.
    png : bytes
        The static image (PNG), shown when plotly.js is absent and when printing.
    alt : str
        Alternative text of the static image.
    values : numpy.ndarray
        The slider's values, in order.
    """

    spec: dict[str, Any]
    png: bytes = field(repr=False)
    alt: str
    values: np.ndarray = field(repr=False)

    @property
    def element_id(self) -> str:
        """A stable id for the figure's ``<div>``: the same arrays give the same page."""
        digest = hashlib.sha256(json.dumps(self.spec, sort_keys=True).encode())
        digest.update(self.png)
        return "rnngrad-slider-" + digest.hexdigest()[:12]

    def to_html(self) -> str:
        """The figure as a self-contained HTML fragment (no external script).

        Returns
        -------
        str
            A ``<div class="rnngrad-interactive">`` holding the live figure's container,
            the static ``<img>`` (PNG as a data URI, with the alt text), a small style
            block and a script that draws the figure with ``window.Plotly`` if present.
        """
        ident = self.element_id
        data = base64.b64encode(self.png).decode("ascii")
        spec = json.dumps(self.spec, separators=(",", ":"), allow_nan=False)
        spec = spec.replace("</", "<\\/")  # never close the script element early
        script = (
            "(function(){"
            f"var box=document.getElementById('{ident}');"
            "if(!box||!window.Plotly)return;"
            f"var spec={spec};"
            "var live=box.querySelector('.rnngrad-live');"
            "box.classList.add('is-live');"
            "window.Plotly.newPlot(live,spec.data,spec.layout,spec.config);"
            "})();"
        )
        return (
            f'<div class="rnngrad-interactive" id="{ident}">'
            f"<style>{_CSS}</style>"
            '<div class="rnngrad-live"></div>'
            f'<img class="rnngrad-static" src="data:image/png;base64,{data}" '
            f'alt="{html.escape(self.alt, quote=True)}">'
            f"<script>{script}</script>"
            "</div>"
        )

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return {
            "text/html": self.to_html(),
            "image/png": base64.b64encode(self.png).decode("ascii"),
            "text/plain": repr(self),
        }


def slider_figure(
    x: Sequence[float] | np.ndarray,
    values: Sequence[float] | np.ndarray,
    curves: Mapping[str, Sequence[Sequence[float]] | np.ndarray],
    *,
    static: Figure,
    alt: str,
    slider_label: str,
    x_label: str,
    y_label: str,
    log_y: bool = False,
    start: float | None = None,
    value_format: str = ".2f",
    titles: Sequence[str] | None = None,
    background: str | None = None,
    styles: Mapping[str, Mapping[str, Any]] | None = None,
    y_limits: tuple[float, float] | None = None,
    height: int = 440,
) -> SliderFigure:
    """A figure whose slider shows the curves measured at each value of a parameter.

    Parameters
    ----------
    x : array-like
        ``(L,)``, the horizontal coordinate shared by every curve (e.g. the lag).
    values : array-like
        ``(G,)``, the parameter values the curves were measured at, increasing; the
        slider stops at these and nowhere else.
    curves : dict of str to array-like
        Each ``name -> (G, L)`` array: row ``k`` is the curve measured at
        ``values[k]``. Non-finite values (and, with ``log_y``, values <= 0) are left
        out of the line, as on a matplotlib log axis.
    static : matplotlib.figure.Figure
        The static version of the same data, drawn by the caller (saved as PNG at the
        figure's own dpi; the caller may close it afterwards).
    alt : str
        Alternative text of the static image (what it shows), not empty.
    slider_label : str
        What the slider sets, e.g. ``"recurrent gain g"``.
    x_label, y_label : str
        Axis titles (plain text: plotly.js does not render TeX here).
    log_y : bool, default False
        A logarithmic vertical axis.
    start : float, optional
        The value shown first (one of ``values``); the middle value by default.
    value_format : str, default ".2f"
        Format of the value shown on the slider (Python format spec).
    titles : sequence of str, optional
        ``(G,)``: the title at each value (say what was measured there); by default
        ``"<slider_label> = <value>"``.
    background : str, optional
        The name of a curve to draw faintly at every value behind the highlighted one,
        so the reader sees the whole measured family while moving the slider.
    styles : dict, optional
        ``name -> {"color": ..., "dash": ..., "width": ...}`` for the plotly lines;
        the book's palette and solid, dashed, dotted lines by default.
    y_limits : tuple of float, optional
        ``(low, high)``, the vertical axis' limits, fixed for every value (by default
        the range of all the curves at all values, so that moving the slider never
        rescales the axis).
    height : int, default 440
        Height of the live figure in CSS pixels (it takes the page's width).

    Returns
    -------
    SliderFigure

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> lag = np.arange(5)
    >>> gains = np.array([0.5, 1.0])
    >>> fig, ax = plt.subplots()
    >>> figure = slider_figure(lag, gains, {"measured": gains[:, None] ** lag},
    ...                        static=fig, alt="two lines", slider_label="g",
    ...                        x_label="lag", y_label="ratio", log_y=True)
    >>> [step["label"] for step in figure.spec["layout"]["sliders"][0]["steps"]]
    ['0.50', '1.00']
    >>> # the curve at the start value (the middle: index 1)
    >>> figure.spec["data"][0]["y"]
    [1.0, 1.0, 1.0, 1.0, 1.0]
    """
    _plotly()
    x = check_array("x", x, ndim=1).astype(np.float64)
    values = check_array("values", values, ndim=1).astype(np.float64)
    if values.size == 0:
        raise ValueError("values must hold at least one value")
    if not np.all(np.isfinite(values)) or np.any(np.diff(values) <= 0):
        raise ValueError("values must be finite and increasing")
    if not np.all(np.isfinite(x)):
        raise ValueError("x must be finite")
    if not isinstance(curves, Mapping) or not curves:
        raise TypeError("curves must be a non-empty mapping of name -> (G, L) array")
    table: dict[str, np.ndarray] = {}
    for name, rows in curves.items():
        if not isinstance(name, str):
            raise TypeError(f"curves keys must be str, got {type(name).__name__}")
        array = check_array(f"curves[{name!r}]", rows, ndim=2).astype(np.float64)
        if array.shape != (values.size, x.size):
            raise ValueError(
                f"curves[{name!r}] must have shape ({values.size}, {x.size}) "
                f"(values x points), got {array.shape}"
            )
        table[name] = array
    if not isinstance(static, Figure):
        raise TypeError(f"static must be a matplotlib Figure, got {type(static).__name__}")
    for label, text in (("alt", alt), ("slider_label", slider_label)):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{label} must be a non-empty string")
    if not isinstance(x_label, str) or not isinstance(y_label, str):
        raise TypeError("x_label and y_label must be strings")
    index = values.size // 2 if start is None else _index_of("start", start, values)
    try:
        format(1.0, value_format)
    except (TypeError, ValueError) as err:
        raise ValueError(f"value_format must be a format spec for floats: {err}") from None
    if titles is None:
        titles = [f"{slider_label} = {v:{value_format}}" for v in values]
    titles = list(titles)
    if len(titles) != values.size or not all(isinstance(t, str) for t in titles):
        raise ValueError(f"titles must be {values.size} strings, one per value")
    if background is not None and background not in table:
        raise ValueError(f"background must name one of {list(table)}, got {background!r}")
    styles = dict(styles or {})
    unknown = set(styles) - set(table)
    if unknown:
        raise ValueError(f"styles names curves that are not given: {sorted(unknown)}")
    height = check_int("height", height, minimum=200)
    y_range = _y_range(table, log_y) if y_limits is None else _limits(y_limits, log_y)

    shown = {name: [_clean(row, log_y) for row in rows] for name, rows in table.items()}
    xs = [float(v) for v in x]
    data: list[dict[str, Any]] = []
    if background is not None:
        for row in shown[background]:
            data.append(
                {
                    "type": "scatter",
                    "mode": "lines",
                    "x": xs,
                    "y": row,
                    "line": {"color": "rgba(120,120,120,0.25)", "width": 1},
                    "hoverinfo": "skip",
                    "showlegend": False,
                }
            )
    first_live = len(data)
    for k, name in enumerate(table):
        style = {
            "color": _COLORS[k % len(_COLORS)],
            "dash": _DASHES[k % len(_DASHES)],
            "width": 2.5,
        }
        style.update(styles.get(name, {}))
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": name,
                "x": xs,
                "y": shown[name][index],
                "line": style,
                "hovertemplate": "%{x}: %{y:.3g}<extra>" + html.escape(name) + "</extra>",
            }
        )
    live = list(range(first_live, len(data)))
    steps = [
        {
            "label": f"{v:{value_format}}",
            "method": "update",
            "args": [
                {"y": [shown[name][k] for name in table]},
                {"title.text": titles[k]},
                live,
            ],
        }
        for k, v in enumerate(values)
    ]
    # Top to bottom: the title, the slider, the plot, the axis title, the legend (in one
    # or two columns of a fixed share of the width, so that its height is known whatever
    # the screen's width: two columns only for names short enough for a phone).
    columns = 2 if max(len(name) for name in table) <= 12 else 1
    legend_rows = math.ceil(len(table) / columns) if len(table) > 1 else 0
    legend_height = 24 * legend_rows
    layout = {
        "template": "none",
        "height": height + legend_height,
        "autosize": True,
        "font": {"family": _FONT, "size": 13, "color": "#222"},
        "title": {
            "text": titles[index],
            "font": {"size": 14},
            "x": 0,
            "xref": "paper",
            "xanchor": "left",
            "y": 1,
            "yref": "container",
            "yanchor": "top",
            "pad": {"t": 10},
        },
        "margin": {"l": 64, "r": 14, "t": 118, "b": 52 + legend_height},
        "paper_bgcolor": "white",
        "plot_bgcolor": "white",
        "xaxis": _axis(x_label, [float(x.min()), float(x.max())], log=False),
        "yaxis": _axis(y_label, y_range, log=log_y),
        "legend": {
            "orientation": "h",
            "x": 0,
            "xref": "paper",
            "xanchor": "left",
            "y": 0,
            "yref": "container",
            "yanchor": "bottom",
            "entrywidth": 1 / columns,
            "entrywidthmode": "fraction",
            "font": {"size": 12},
        },
        "showlegend": len(table) > 1,
        "sliders": [
            {
                "active": index,
                "steps": steps,
                "currentvalue": {"prefix": f"{slider_label} = ", "font": {"size": 13}},
                "len": 1.0,
                "x": 0,
                "xanchor": "left",
                "y": 1,
                "yanchor": "bottom",
                "pad": {"t": 0, "b": 14, "l": 0, "r": 0},
                "font": {"size": 11},
                "minorticklen": 0,
            }
        ],
    }
    spec = {
        "data": data,
        "layout": layout,
        "config": {"responsive": True, "displaylogo": False, "displayModeBar": False},
    }
    _plotly().graph_objects.Figure(data=data, layout=layout)  # validates every property
    buffer = io.BytesIO()
    static.savefig(buffer, format="png", dpi=static.dpi, metadata={"Software": None})
    return SliderFigure(spec=spec, png=buffer.getvalue(), alt=alt, values=values)


def _plotly() -> Any:
    try:
        import plotly
        import plotly.graph_objects
    except ImportError as err:  # pragma: no cover - the book's environment has it
        raise ImportError(
            'rnngrad.experiments.interactive needs the plotly package: pip install "rnngrad[book]"'
        ) from err
    return plotly


def _index_of(name: str, value: object, values: np.ndarray) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise TypeError(f"{name} must be one of the values, got {type(value).__name__}")
    matches = np.flatnonzero(np.isclose(values, float(value), rtol=1e-9, atol=1e-12))
    if matches.size != 1:
        raise ValueError(f"{name} must be one of the values {values.tolist()}, got {value}")
    return int(matches[0])


def _clean(row: np.ndarray, log_y: bool) -> list[float | None]:
    ok = np.isfinite(row) & (row > 0 if log_y else True)
    return [float(v) if good else None for v, good in zip(row, ok)]


def _y_range(table: Mapping[str, np.ndarray], log_y: bool) -> list[float]:
    every = np.concatenate([a.ravel() for a in table.values()])
    every = every[np.isfinite(every) & ((every > 0) if log_y else True)]
    if every.size == 0:
        raise ValueError("curves hold no value that can be drawn")
    low, high = float(every.min()), float(every.max())
    if log_y:
        low, high = math.log10(low), math.log10(high)
    pad = 0.04 * (high - low) if high > low else 0.5
    return [low - pad, high + pad]


def _limits(limits: object, log_y: bool) -> list[float]:
    try:
        low, high = (float(v) for v in limits)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise TypeError(f"y_limits must be two numbers, got {limits!r}") from None
    if not (np.isfinite(low) and np.isfinite(high) and low < high) or (log_y and low <= 0):
        raise ValueError(f"y_limits must be finite and increasing (> 0 on a log axis): {limits}")
    return [math.log10(low), math.log10(high)] if log_y else [low, high]


def _axis(title: str, limits: list[float], *, log: bool) -> dict[str, Any]:
    axis: dict[str, Any] = {
        "title": {"text": title, "font": {"size": 13}},
        "range": limits,
        "showgrid": True,
        "gridcolor": "#e5e5e5",
        "zeroline": False,
        "showline": True,
        "linecolor": "#444",
        "ticks": "outside",
        "tickfont": {"size": 12},
        "automargin": True,
        "fixedrange": True,
    }
    if log:
        axis.update(type="log", exponentformat="power")
    return axis
