"""explorer/chart.py: the app's chart component sends the figure itself and serves plotly.js from static/; where the
copy cannot be written, the chart falls back to Streamlit's own element. (What the browser draws, and a click on the
latent scatter, are tested in tests/test_browser.py.)"""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from explorer import chart


def _script() -> None:
    import plotly.graph_objects as go

    from explorer import chart

    chart.plotly_chart(go.Figure(go.Scatter(x=[1, 2, 3], y=[4, 5, 6], name="three points")), key="three",
                       config={"displaylogo": False})


@pytest.fixture
def static_copy(monkeypatch, tmp_path):
    def use(path):
        monkeypatch.setattr(chart, "STATIC_COPY", path)
        chart._registered.cache_clear()
        return path

    yield use
    chart._registered.cache_clear()


def test_the_component_sends_the_figure_and_serves_plotly_js(static_copy, tmp_path):
    copy = static_copy(tmp_path / "static" / "plotly.min.js")
    at = AppTest.from_function(_script).run()
    assert not at.exception
    charts = [e for e in at.get("bidi_component") if e.proto.component_name == chart.COMPONENT_NAME]
    assert len(charts) == 1 and not at.get("plotly_chart")
    data = json.loads(charts[0].proto.json)
    figure = json.loads(data["figure"])
    assert [t["name"] for t in figure["data"]] == ["three points"]
    assert figure["data"][0]["x"] == [1, 2, 3] and figure["data"][0]["y"] == [4, 5, 6]
    assert data["config"] == {"displaylogo": False} and data["select"] is False
    assert copy.read_bytes() == chart.PLOTLY_JS.read_bytes()  # the plotly.js of the installed plotly


def test_a_stale_copy_of_plotly_js_is_replaced(static_copy, tmp_path):
    copy = static_copy(tmp_path / "static" / "plotly.min.js")
    copy.parent.mkdir()
    copy.write_text("/* plotly.js of another version */")
    AppTest.from_function(_script).run()
    assert copy.read_bytes() == chart.PLOTLY_JS.read_bytes()


def test_without_a_place_for_plotly_js_the_chart_is_streamlits_own(static_copy, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where static/ would be")
    static_copy(blocker / "plotly.min.js")
    at = AppTest.from_function(_script).run()
    assert not at.exception
    assert len(at.get("plotly_chart")) == 1 and not at.get("bidi_component")
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert [t["name"] for t in spec["data"]] == ["three points"]
