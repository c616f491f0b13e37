"""The figure of one estimator draw (``iwae.estimator.EstimatorDraw``): K log weights as sorted bars with the mean of
the log (ELBO estimate) and the log of the mean (L_K) drawn across them, and the normalized weights below. Pure:
numbers in, a plotly figure out."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from .estimator import EstimatorDraw
from .figures import FONT

COLOURS = {"bars": "#7f8c9d", "elbo": "#1f77b4", "l_k": "#d62728", "w": "#ff7f0e"}


def estimator_figure(draw: EstimatorDraw, height: int = 460, font_size: int = FONT["size"]) -> go.Figure:
    """Top: log w_k sorted from largest to smallest (bars from the smallest shown), with horizontal lines at
    mean(log w) = the ELBO estimate and log mean(w) = L_K; bottom: the normalized weights w~_k in the same order."""
    order = draw.order
    log_w, w = draw.log_w[order], draw.w_tilde[order]
    rank = np.arange(1, draw.k + 1)
    floor = float(log_w.min()) - max(1.0, 0.05 * float(log_w.max() - log_w.min()))
    layout = dict(
        height=height, font=dict(size=font_size), plot_bgcolor="white", bargap=0.05 if draw.k <= 100 else 0,
        margin=dict(l=10, r=10, t=10, b=10),
        legend=dict(orientation="h", x=0, y=1.02, yanchor="bottom", font=dict(size=font_size)),
        xaxis=dict(domain=[0, 1], anchor="y", showticklabels=False, matches="x2", showgrid=False),
        yaxis=dict(domain=[0.42, 1.0], anchor="x", title_text="log w (nats)", automargin=True, showgrid=True,
                   gridcolor="#e5e5e5", range=[floor, float(log_w.max()) + 0.08 * (float(log_w.max()) - floor)]),
        xaxis2=dict(domain=[0, 1], anchor="y2", title_text=f"the K = {draw.k} draws, sorted by weight",
                    automargin=True, showgrid=False),
        yaxis2=dict(domain=[0.0, 0.3], anchor="x2", title_text="w̃", automargin=True, showgrid=True,
                    gridcolor="#e5e5e5", range=[0, max(float(w.max()) * 1.1, 1e-12)]),
    )
    fig = go.Figure(layout=layout)
    fig.add_trace(go.Bar(x=rank, y=log_w - floor, base=floor, marker_color=COLOURS["bars"], name="log w_k",
                         hovertemplate="draw %{x}: log w = %{customdata:.3f}<extra></extra>", customdata=log_w,
                         showlegend=False))
    for value, name, colour, dash in ((draw.elbo, "mean of log w (ELBO estimate)", COLOURS["elbo"], "dash"),
                                      (draw.l_k, "log of mean w (L_K)", COLOURS["l_k"], "solid")):
        fig.add_trace(go.Scatter(x=[0.5, draw.k + 0.5], y=[value, value], mode="lines", name=f"{name} = {value:.2f}",
                                 line=dict(color=colour, width=3, dash=dash),
                                 hovertemplate=f"{name}: {value:.3f}<extra></extra>"))
    fig.add_trace(go.Bar(x=rank, y=w, xaxis="x2", yaxis="y2", marker_color=COLOURS["w"], name="w̃_k",
                         showlegend=False, hovertemplate="draw %{x}: w̃ = %{y:.4f}<extra></extra>"))
    return fig
