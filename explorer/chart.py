"""Plotly charts drawn by a small component of the app's own instead of ``st.plotly_chart``.

Streamlit 1.67's plotly element draws every new or changed figure twice: once hidden before its width is measured,
then again at that width, each time from scratch (docs/benchmarks.md, "Evening of 2026-12-03"). This component keeps
one chart div per key and calls ``Plotly.react`` on it once per change, so a new image redraws each chart once and in
place. On the Posteriors page an image change took 1.10 s against 1.70 s (docs/benchmarks.md, "Night of 2026-12-03").

The browser loads plotly.js on the first chart: ``static/plotly-iwae.min.js``, served by Streamlit
(``server.enableStaticServing`` in .streamlit/config.toml), a bundle of the plotly.js that the Python plotly ships with
only the traces the explorer draws (``BUNDLE_TRACES``; scripts/build_plotly_bundle.py). A new tab loaded and evaluated
it in 0.16-0.18 s against 1.05-1.16 s for the full plotly.min.js (docs/benchmarks.md, "2026-12-06"). A figure with
another trace, a checkout without the bundle, or a server configured not to serve static files, is drawn by
``st.plotly_chart``. A chart drawn with ``on_select`` (the latent scatter) sends a click or a box selection back in
the shape of Streamlit's own plotly selection event.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable
from pathlib import Path

import plotly
import plotly.io
import streamlit as st

ROOT = Path(__file__).resolve().parents[1]
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"  # the full bundle, for its version
BUNDLE = ROOT / "static" / "plotly-iwae.min.js"  # served at app/static/plotly-iwae.min.js
BUNDLE_TRACES = ("bar", "contour", "heatmap", "scatter", "scattergl")  # the trace types the bundle draws
COMPONENT_NAME = "iwae_plotly_chart"
CHART_CLASS = "iwae-chart"  # the chart div's class (the browser tests and bench/harness.py look for it)
DEFAULT_HEIGHT = 450  # plotly's, for a figure without one: the space kept while plotly.js loads
# WebGL canvases at the screen's own pixel ratio (a JavaScript expression; plotly accepts 1 to 4): plotly's default, 2,
# draws four times the pixels a screen of ratio 1 shows (two 10,000-point latent scatters: 735 against 430 ms in
# software-rendered Chromium, bench/plotly_newplot.py; docs/benchmarks.md, "2026-12-06, later").
GL_PIXEL_RATIO_JS = "Math.min(4, Math.max(1, window.devicePixelRatio || 1))"

# Runs in the page (no iframe). One div per component instance, kept across reruns; each call draws the figure into
# it with Plotly.react, after the previous draw (calls come in order, draws finish in order); an unchanged figure is
# left as drawn.
_JS = """
let loading = null;
function loadPlotly() {
  if (window.Plotly) return Promise.resolve(window.Plotly);
  if (!loading) loading = new Promise((resolve, reject) => {
    const script = document.createElement('script');
    script.src = './app/static/%(bundle)s';
    script.onload = () => resolve(window.Plotly);
    script.onerror = () => { loading = null; reject(new Error('plotly.js did not load')); };
    document.head.appendChild(script);
  });
  return loading;
}
export default function(component) {
  const { data, parentElement } = component;
  let div = parentElement.querySelector('div.%(cls)s');
  if (!div) {
    div = document.createElement('div');
    div.className = '%(cls)s';
    div.style.width = '100%%';
    parentElement.appendChild(div);
  }
  if (div.__spec === data.figure) return;  // a rerun that left this figure as it was
  div.__spec = data.figure;
  const figure = JSON.parse(data.figure);
  // the page's own font where a figure names none, as Streamlit's element does (plotly's default is wider)
  const font = figure.layout.font || {};
  if (!font.family) figure.layout.font = Object.assign({}, font, {family: getComputedStyle(parentElement).fontFamily});
  div.style.minHeight = (figure.layout.height || %(height)d) + 'px';
  const config = Object.assign({responsive: true, plotGlPixelRatio: %(gl_ratio)s}, data.config);
  div.__drawn = (div.__drawn || Promise.resolve())
    .then(() => loadPlotly())
    .then(Plotly => Plotly.react(div, figure.data, figure.layout, config))
    .then(() => { if (data.select && !div.__selecting) listen(div); })
    .catch(error => { div.textContent = 'This chart could not be drawn: ' + error.message; });
  div.__send = component.setTriggerValue;
}
// A click (clickmode "event+select") or a box selection, sent in the shape of Streamlit's plotly selection event.
function listen(div) {
  div.__selecting = true;
  div.on('plotly_selected', event => {
    if (!event || !event.points || !event.points.length) return;
    const points = event.points.map(p => ({curve_number: p.curveNumber, point_number: p.pointNumber,
                                           point_index: p.pointIndex, x: p.x, y: p.y}));
    const box = event.range ? [{x: event.range.x, y: event.range.y}] : [];
    div.__send('selection', {points: points, box: box});
  });
}
""" % {"cls": CHART_CLASS, "height": DEFAULT_HEIGHT, "bundle": BUNDLE.name, "gl_ratio": GL_PIXEL_RATIO_JS}


def plotly_js_version() -> str | None:
    """The plotly.js version of the installed Python plotly's full bundle (its first lines name it), or None."""
    found = re.search(r"plotly\.js v(\d+\.\d+\.\d+)", PLOTLY_JS.read_text(encoding="utf-8", errors="replace")[:500])
    return found.group(1) if found else None


_registering = threading.Lock()  # two sessions' first charts may come at once: the first registers, once


def _component():
    """The registered component, or None when the checkout has no plotly.js bundle or Streamlit does not serve static/
    (then ``st.plotly_chart``)."""
    with _registering:
        return _registered()


@functools.cache
def _registered():
    if not BUNDLE.is_file() or not st.get_option("server.enableStaticServing"):  # nothing would serve it
        return None
    return st.components.v2.component(COMPONENT_NAME, js=_JS, isolate_styles=False)


def trace_types(figure) -> set[str]:
    """The trace types of a Figure or its dict (a trace without a type is a scatter, as in plotly.js)."""
    if isinstance(figure, dict):
        return {t.get("type") or "scatter" for t in figure.get("data", [])}
    return {t.type for t in figure.data}


def plotly_chart(figure, key: str, config: dict | None = None, on_select: Callable[[], None] | None = None) -> None:
    """Draw a plotly figure (a Figure or its dict) under ``key``, kept in place across reruns. ``on_select``: called
    when the user clicks a point or box-selects; ``selection(key)`` then says what was chosen."""
    component = _component()
    if component is None or not trace_types(figure) <= set(BUNDLE_TRACES):
        selecting = {"on_select": on_select, "selection_mode": ("points", "box")} if on_select else {}
        st.plotly_chart(figure, key=key, config=config, **selecting)
        return
    data = {"figure": plotly.io.to_json(figure, validate=False), "config": config or {}, "select": bool(on_select)}
    component(data=data, key=key, **({"on_selection_change": on_select} if on_select else {}))


def selection(key: str) -> dict | None:
    """The selection event of the chart drawn under ``key`` (in its ``on_select`` callback): Streamlit's plotly
    selection, {"points": [{"curve_number", "point_index", ...}], "box": [{"x": [x0, x1], "y": [y0, y1]}]}."""
    event = st.session_state.get(key) or {}
    return event.get("selection")
