"""rnngrad.experiments.interactive: slider figures show exactly the measured arrays,
and load nothing."""

from __future__ import annotations

import base64
import math
import re
import struct
import zlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest

from rnngrad.experiments.interactive import SliderFigure, plotly_js_path, slider_figure

pytest.importorskip("plotly")


@pytest.fixture
def static():
    fig, ax = plt.subplots(figsize=(4, 3), dpi=100)
    ax.plot([0, 1], [0, 1])
    yield fig
    plt.close(fig)


def _family(seed=0, gains=(0.5, 0.8, 1.0, 1.3, 2.0), length=12):
    rng = np.random.default_rng(seed)
    gains = np.array(gains)
    lag = np.arange(length)
    measured = gains[:, None] ** lag * np.exp(0.01 * rng.normal(size=(gains.size, length)))
    return lag, gains, measured


def _make(static, **kwargs):
    lag, gains, measured = _family()
    options = {
        "static": static,
        "alt": "profiles",
        "slider_label": "gain g",
        "x_label": "lag",
        "y_label": "ratio",
        "log_y": True,
    }
    options.update(kwargs)
    return slider_figure(lag, gains, {"measured": measured, "bound": 0.9 * measured}, **options)


def test_every_slider_step_shows_exactly_the_measured_rows(static):
    lag, gains, measured = _family()
    figure = slider_figure(
        lag,
        gains,
        {"measured": measured, "bound": 0.5 * measured},
        static=static,
        alt="a",
        slider_label="g",
        x_label="lag",
        y_label="ratio",
        log_y=True,
    )
    (slider,) = figure.spec["layout"]["sliders"]
    assert len(slider["steps"]) == gains.size  # one stop per measured value, no more
    for k, step in enumerate(slider["steps"]):
        assert step["method"] == "update"
        restyle, relayout, traces = step["args"]
        assert traces == [0, 1]
        np.testing.assert_array_equal(restyle["y"][0], measured[k])  # bit for bit
        np.testing.assert_array_equal(restyle["y"][1], 0.5 * measured[k])
        assert step["label"] == f"{gains[k]:.2f}"
        assert relayout["title.text"] == f"g = {gains[k]:.2f}"
    np.testing.assert_array_equal(figure.spec["data"][0]["x"], lag)
    np.testing.assert_array_equal(figure.values, gains)


def test_the_first_view_is_the_start_value_and_the_axis_holds_every_value(static):
    _, gains, measured = _family()
    figure = _make(static, start=1.3)
    k = 3
    assert figure.spec["layout"]["sliders"][0]["active"] == k
    np.testing.assert_array_equal(figure.spec["data"][0]["y"], measured[k])
    low, high = figure.spec["layout"]["yaxis"]["range"]  # log10 units on a log axis
    every = np.concatenate([measured.ravel(), 0.9 * measured.ravel()])
    assert low < math.log10(every.min()) and high > math.log10(every.max())
    assert high - low < 1.2 * (math.log10(every.max()) - math.log10(every.min()))
    assert figure.spec["layout"]["yaxis"]["type"] == "log"
    default = _make(static)  # the middle value
    assert default.spec["layout"]["sliders"][0]["active"] == gains.size // 2


def test_values_a_log_axis_cannot_show_become_gaps(static):
    lag = np.arange(4)
    curves = {"m": np.array([[1.0, 0.0, np.nan, 2.0], [1.0, np.inf, -1.0, 3.0]])}
    kwargs = {"static": static, "alt": "a", "slider_label": "g", "x_label": "x", "y_label": "y"}
    figure = slider_figure(lag, [1.0, 2.0], curves, log_y=True, start=1.0, **kwargs)
    steps = figure.spec["layout"]["sliders"][0]["steps"]
    assert steps[0]["args"][0]["y"][0] == [1.0, None, None, 2.0]
    assert steps[1]["args"][0]["y"][0] == [1.0, None, None, 3.0]
    linear = slider_figure(lag, [1.0, 2.0], curves, log_y=False, start=1.0, **kwargs)
    assert linear.spec["layout"]["sliders"][0]["steps"][1]["args"][0]["y"][0] == [
        1.0,
        None,
        -1.0,
        3.0,
    ]


def test_background_draws_the_whole_family_behind_the_highlighted_curves(static):
    _, gains, measured = _family()
    figure = _make(static, background="measured")
    data = figure.spec["data"]
    assert len(data) == gains.size + 2
    for k in range(gains.size):
        np.testing.assert_array_equal(data[k]["y"], measured[k])
        assert data[k]["hoverinfo"] == "skip"
    assert figure.spec["layout"]["sliders"][0]["steps"][0]["args"][2] == [
        gains.size,
        gains.size + 1,
    ]


def test_fixed_limits_replace_the_data_range(static):
    figure = _make(static, y_limits=(1e-3, 10.0))
    assert figure.spec["layout"]["yaxis"]["range"] == [-3.0, 1.0]
    linear = _make(static, log_y=False, y_limits=(-1, 2))
    assert linear.spec["layout"]["yaxis"]["range"] == [-1.0, 2.0]


def test_custom_titles_and_styles_are_used(static):
    lag, gains, measured = _family()
    titles = [f"measured {k}" for k in range(gains.size)]
    figure = slider_figure(
        lag,
        gains,
        {"measured": measured},
        static=static,
        alt="a",
        slider_label="g",
        x_label="lag",
        y_label="ratio",
        titles=titles,
        styles={"measured": {"color": "#000000", "dash": "dot"}},
        value_format=".1f",
    )
    steps = figure.spec["layout"]["sliders"][0]["steps"]
    assert [s["args"][1]["title.text"] for s in steps] == titles
    assert [s["label"] for s in steps] == [f"{g:.1f}" for g in gains]
    assert figure.spec["data"][0]["line"]["color"] == "#000000"
    assert figure.spec["data"][0]["line"]["dash"] == "dot"
    assert figure.spec["layout"]["showlegend"] is False  # one curve: no legend needed


def _png_dpi(png: bytes) -> float:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    at = 8
    while at < len(png):
        (length,) = struct.unpack(">I", png[at : at + 4])
        kind = png[at + 4 : at + 8]
        if kind == b"pHYs":
            x_per_m, _, unit = struct.unpack(">IIB", png[at + 8 : at + 17])
            assert unit == 1
            return x_per_m * 0.0254
        at += 12 + length
    raise AssertionError("no pHYs chunk")


def _png_width(png: bytes) -> int:
    return struct.unpack(">I", png[16:20])[0]


def test_html_is_self_contained_with_a_static_image_and_its_alt_text(static):
    figure = _make(static, alt='Lines "fan" out & <converge>')
    page = figure.to_html()
    assert 'alt="Lines &quot;fan&quot; out &amp; &lt;converge&gt;"' in page
    assert "<script src" not in page and "http" not in page  # loads nothing from anywhere
    (uri,) = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    png = base64.b64decode(uri)
    assert png == figure.png
    assert _png_width(png) == 400  # 4 in at the figure's 100 dpi
    assert abs(_png_dpi(png) - 100) < 0.5  # the dpi is recorded, for the legibility check
    assert f'id="{figure.element_id}"' in page
    spec = re.search(r"var spec=(\{.*?\});var live", page).group(1)
    assert "</" not in spec  # cannot end the script early
    bundle = figure._repr_mimebundle_()
    assert bundle["text/html"] == page
    assert zlib.crc32(base64.b64decode(bundle["image/png"])) == zlib.crc32(png)


def test_the_element_id_is_stable_and_follows_the_data(static):
    first, again = _make(static), _make(static)
    assert first.element_id == again.element_id  # a rerun gives the same page
    lag, gains, measured = _family(seed=1)
    other = slider_figure(
        lag,
        gains,
        {"measured": measured, "bound": 0.9 * measured},
        static=static,
        alt="profiles",
        slider_label="gain g",
        x_label="lag",
        y_label="ratio",
        log_y=True,
    )
    assert other.element_id != first.element_id
    assert isinstance(first, SliderFigure)


@pytest.mark.parametrize(
    "change, error, match",
    [
        ({"x": np.arange(5)}, ValueError, "curves\\['m'\\] must have shape"),
        ({"values": [2.0, 1.0, 3.0]}, ValueError, "values must be finite and increasing"),
        ({"values": []}, ValueError, "values must hold"),
        ({"curves": {}}, TypeError, "curves must be"),
        ({"curves": {"m": np.ones(4)}}, ValueError, "rank 2"),
        ({"start": 1.5}, ValueError, "start must be one of"),
        ({"start": "1"}, TypeError, "start must be"),
        ({"alt": "  "}, ValueError, "alt must be"),
        ({"slider_label": ""}, ValueError, "slider_label"),
        ({"static": "fig"}, TypeError, "static must be a matplotlib Figure"),
        ({"titles": ["a"]}, ValueError, "titles must be 3 strings"),
        ({"background": "other"}, ValueError, "background must name"),
        ({"styles": {"other": {}}}, ValueError, "styles names curves"),
        ({"height": 10}, ValueError, "height"),
        ({"y_limits": (1.0,)}, TypeError, "y_limits must be two numbers"),
        ({"y_limits": (2.0, 1.0)}, ValueError, "y_limits must be finite and increasing"),
        ({"y_limits": (0.0, 1.0), "log_y": True}, ValueError, "> 0 on a log axis"),
        ({"value_format": "q"}, ValueError, "value_format"),
        ({"curves": {"m": np.full((3, 4), np.nan)}}, ValueError, "no value that can be drawn"),
    ],
)
def test_bad_arguments_name_what_was_wrong(static, change, error, match):
    arguments = {
        "x": np.arange(4),
        "values": [1.0, 2.0, 3.0],
        "curves": {"m": np.ones((3, 4))},
        "static": static,
        "alt": "a",
        "slider_label": "g",
        "x_label": "x",
        "y_label": "y",
    }
    arguments.update(change)
    x, values, curves = arguments.pop("x"), arguments.pop("values"), arguments.pop("curves")
    with pytest.raises(error, match=match):
        slider_figure(x, values, curves, **arguments)


def test_plotly_js_ships_in_the_package_with_its_licence():
    path = plotly_js_path()
    head = path.read_text(encoding="utf-8", errors="replace")[:300]
    assert "plotly.js v" in head and "MIT license" in head
    assert path.stat().st_size > 1_000_000
