"""Presenter view: the explorer readable from the back of a room on a 1280 x 720 projector.

Switched by ``?present=1`` on any page (read on a session's first run) and by the sidebar's toggle (session state
``present``, mirrored back into the URL). When on: larger text (the root font size, which Streamlit's rem-based sizes
follow), larger figure text, Streamlit's toolbar and "Deploy" button hidden, the sidebar collapsed when the page
opens, and the two model columns of a page stacked (one model per row) where a figure holds two panels.
"""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

KEY = "present"  # session state and URL parameter
QUERY_ON = "1"
_FROM_URL = "_present_from_url"  # session state: opened with ?present=1, the sidebar's collapse not yet delivered
FIGURE_FONT = 18  # px, the figures the lesson builds in presenter view
ROOT_FONT = 21  # px, the root font size in presenter view (Streamlit's default is 16)

# Plotly writes its text sizes inline (style="font-size: 12px"); the stylesheet overrides the small ones on every
# page's figures. The lesson's own figures are built with FIGURE_FONT instead (their margins then fit).
_CSS = f"""
<style>
html {{ font-size: {ROOT_FONT}px; }}
[data-testid="stToolbar"], [data-testid="stAppDeployButton"], [data-testid="stMainMenu"],
[data-testid="stDecoration"], [data-testid="stStatusWidget"] {{ display: none !important; }}
[data-testid="stHeader"] {{ background: transparent; pointer-events: none; }}
[data-testid="stHeader"] button, [data-testid="stHeader"] a {{ pointer-events: auto; }}
[data-testid="stMainBlockContainer"] {{ padding-top: 3rem; padding-left: 1.5rem; padding-right: 1.5rem;
  max-width: 100%; }}
[data-testid="stCaptionContainer"] {{ font-size: 0.95rem; }}
.js-plotly-plot .main-svg text[style*="font-size: 10px"], .js-plotly-plot .main-svg text[style*="font-size: 11px"],
.js-plotly-plot .main-svg text[style*="font-size: 12px"] {{ font-size: 15px !important; }}
.js-plotly-plot .main-svg text[style*="font-size: 13px"],
.js-plotly-plot .main-svg text[style*="font-size: 14px"] {{ font-size: 17px !important; }}
</style>
"""


def init() -> None:
    """On a session's first run, before the sidebar's toggle exists: take ``?present=`` from the URL."""
    ss = st.session_state
    if KEY not in ss:
        raw = str(st.query_params.get(KEY, "")).strip().lower()
        ss[KEY] = raw in ("1", "true", "yes", "on")
        ss[_FROM_URL] = ss[KEY]


def active() -> bool:
    return bool(st.session_state.get(KEY, False))


def toggle(container) -> None:
    """The sidebar's switch."""
    container.toggle("Presenter view", key=KEY,
                     help="Large text and figures for a projector (1280 × 720); the toolbar hidden. The URL "
                          "parameter ?present=1 opens any page this way.")


def query() -> dict[str, str]:
    """The URL parameter that carries the presenter view ({} when off)."""
    return {KEY: QUERY_ON} if active() else {}


def apply() -> None:
    """Once per run, after the sidebar: the presenter stylesheet, and the sidebar collapsed when the session was
    opened with ?present=1 (sent until a run completes, so a toggle later leaves the sidebar open)."""
    if not active():
        return
    if st.session_state.get(_FROM_URL, False):
        # Streamlit drops a run's unsent page config when the run is interrupted by a rerun (the lesson's first run
        # reruns at once), so the collapse is sent again by every run until one completes: see run_completed.
        st.set_page_config(initial_sidebar_state="collapsed")
    st.html(_CSS)


def run_completed() -> None:
    """Called after a page has run to its end: the sidebar's collapse has reached the browser."""
    st.session_state.pop(_FROM_URL, None)


def style(fig: go.Figure, height: int | None = None) -> go.Figure:
    """A figure built for the lesson, made readable in presenter view (larger text, and taller when ``height``)."""
    if active():
        fig.update_layout(font=dict(size=FIGURE_FONT))
        fig.update_annotations(font=dict(size=FIGURE_FONT - 3))  # panel titles: wider text would be cut off
        fig.update_layout(legend=dict(font=dict(size=FIGURE_FONT - 1)))
        if height:
            fig.update_layout(height=height)
    return fig


def stacked() -> bool:
    """Whether pages should put the two models one per row (presenter view) instead of side by side."""
    return active()
