"""explorer/chart.py: the app's chart component sends the figure itself; the browser draws it with the shipped
plotly.js bundle (static/plotly-iwae.min.js), which is the plotly.js of the installed plotly with the explorer's trace
types; any other figure, or a checkout without the bundle, is drawn by Streamlit's own element. (What the browser
draws, and a click on the latent scatter, are tested in tests/test_browser.py.)"""

from __future__ import annotations

import json
import re

import pytest
from streamlit.testing.v1 import AppTest

from explorer import chart


def _script() -> None:
    import plotly.graph_objects as go

    from explorer import chart

    chart.plotly_chart(go.Figure(go.Scatter(x=[1, 2, 3], y=[4, 5, 6], name="three points")), key="three",
                       config={"displaylogo": False})


def _pie_script() -> None:
    import plotly.graph_objects as go

    from explorer import chart

    chart.plotly_chart(go.Figure(go.Pie(values=[1, 2], name="a pie")), key="pie")


@pytest.fixture
def bundle(monkeypatch):
    def use(path):
        monkeypatch.setattr(chart, "BUNDLE", path)
        chart._registered.cache_clear()

    yield use
    chart._registered.cache_clear()


def test_the_component_sends_the_figure():
    at = AppTest.from_function(_script).run()
    assert not at.exception
    charts = [e for e in at.get("bidi_component") if e.proto.component_name == chart.COMPONENT_NAME]
    assert len(charts) == 1 and not at.get("plotly_chart")
    data = json.loads(charts[0].proto.json)
    figure = json.loads(data["figure"])
    assert [t["name"] for t in figure["data"]] == ["three points"]
    assert figure["data"][0]["x"] == [1, 2, 3] and figure["data"][0]["y"] == [4, 5, 6]
    assert data["config"] == {"displaylogo": False} and data["select"] is False


def test_the_shipped_bundle_is_the_installed_plotlys_plotly_js_with_the_explorers_traces():
    version = chart.plotly_js_version()
    assert version
    text = chart.BUNDLE.read_text(encoding="utf-8")
    first = text.split("\n", 1)[0]
    found = re.match(r"/\*! plotly\.js v(\S+) with the traces ([a-z0-9, ]+) only", first)
    assert found, first
    assert found.group(1) == version  # rebuild it (scripts/build_plotly_bundle.py) when plotly is upgraded
    assert tuple(found.group(2).split(", ")) == chart.BUNDLE_TRACES
    assert re.search(rf'\.version="{re.escape(version)}"', text)  # the body is that version too (Plotly.version)
    assert len(text) < 0.5 * chart.PLOTLY_JS.stat().st_size  # a partial bundle, not the full one renamed


def test_trace_types_of_figures_and_their_dicts():
    import plotly.graph_objects as go

    figure = go.Figure([go.Scattergl(x=[1]), go.Heatmap(z=[[1]]), go.Bar(y=[1])])
    assert chart.trace_types(figure) == {"scattergl", "heatmap", "bar"}
    assert chart.trace_types(figure.to_dict()) == {"scattergl", "heatmap", "bar"}
    assert chart.trace_types({"data": [{"x": [1], "y": [2]}]}) == {"scatter"}  # plotly.js's default type


def test_a_figure_with_a_trace_outside_the_bundle_is_streamlits_own():
    at = AppTest.from_function(_pie_script).run()
    assert not at.exception
    assert len(at.get("plotly_chart")) == 1 and not at.get("bidi_component")
    assert [t["type"] for t in json.loads(at.get("plotly_chart")[0].proto.spec)["data"]] == ["pie"]


def test_without_the_bundle_the_chart_is_streamlits_own(bundle, tmp_path):
    bundle(tmp_path / "static" / "plotly-iwae.min.js")
    at = AppTest.from_function(_script).run()
    assert not at.exception
    assert len(at.get("plotly_chart")) == 1 and not at.get("bidi_component")
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert [t["name"] for t in spec["data"]] == ["three points"]


def test_a_server_that_does_not_serve_static_files_draws_with_streamlits_own(bundle):
    from streamlit import config

    bundle(chart.BUNDLE)  # the shipped bundle is there, but nothing would serve it to the browser
    serving = config.get_option("server.enableStaticServing")
    config.set_option("server.enableStaticServing", False)
    try:
        at = AppTest.from_function(_script).run()
    finally:
        config.set_option("server.enableStaticServing", serving)
    assert not at.exception
    assert len(at.get("plotly_chart")) == 1 and not at.get("bidi_component")
