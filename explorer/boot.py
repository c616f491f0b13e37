"""What runs before the torch import (~1.4 s): only Streamlit, plotly and pandas are imported here.

- ``ICON``: the page icon, a file shipped in the repository (no request leaves the server: an offline classroom
  sees it too);
- ``warm_up_browser``: on a session's first run, an empty WebGL chart sent before the torch import;
- ``hand_over_legacy_run``: a page file run without app.py (a fresh server's first deep link) runs app.py instead.
"""

from __future__ import annotations

import runpy
from pathlib import Path

# Imported whole here, under this module's import lock, before any session builds a plotly figure: plotly's
# validators look pandas up in sys.modules without importing it, and 20 sessions opened at once on a fresh server
# found it half-imported by another session's thread (AttributeError; bench/load_sessions.py).
import pandas  # noqa: F401
import plotly.graph_objects as go
import streamlit as st

from . import chart, legacy

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app.py"
ICON = str(Path(__file__).resolve().parent / "icon.png")
FRAME_FLAG = "_frame_active"  # True in session state while app.py runs a page inside its frame
_WARMED = "_browser_warmed"


def hand_over_legacy_run() -> None:
    """In a legacy run of a page file (see ``explorer.legacy``), switch the legacy handling off, run app.py in this
    same run (its st.navigation finds the page by its URL path and runs it inside the frame, as for any other run),
    then stop: no "Page not found" dialog, the sidebar drawn, the URL's state read as usual. Every session that
    opened before the handling was off takes this path once. Does nothing when app.py runs the page, or when the
    page file itself is the script being run."""
    if st.session_state.get(FRAME_FLAG) or legacy.main_script() != APP:
        return
    legacy.leave_legacy_mode()
    runpy.run_path(str(APP), run_name="__main__")
    st.stop()


def warm_up_browser():
    """On a session's first run, an empty, 10-pixel (plotly's least) WebGL chart sent before the torch import, so
    that the browser fetches and compiles plotly.js and sets up WebGL while the server imports, instead of after
    the first real chart arrives (a cold start's first chart then appears ~1.7 s sooner: bench/app_latency.py).
    Every run makes the slot, empty after the first: the page's elements then keep their positions from a session's
    first run to the next. Shifted by one, every chart of the page was re-created in the browser on the session's
    first input (the latent page's first tiles change took 2.75 s against 0.68 s). Returns the slot, to clear once
    the imports are done."""
    placeholder = st.empty()
    if _WARMED not in st.session_state:
        st.session_state[_WARMED] = True
        with placeholder:
            chart.plotly_chart(_WARM_UP_FIGURE, key="_browser_warm_up",
                               config={"staticPlot": True, "displayModeBar": False})
    return placeholder


# Built (and validated) once, at import.
_WARM_UP_FIGURE = go.Figure(
    data=[go.Scattergl(x=[], y=[])],
    layout=dict(height=10, margin=dict(l=0, r=0, t=0, b=0), paper_bgcolor="rgba(0,0,0,0)",
                plot_bgcolor="rgba(0,0,0,0)", xaxis=dict(visible=False), yaxis=dict(visible=False)),
)
