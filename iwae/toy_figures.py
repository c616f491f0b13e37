"""Pure figure builders for the toy targets (``iwae.toy``): a ToyResult in, plotly figures out.

No Streamlit here. The house style and helpers are ``iwae.figures``': one colour scale shared by every
density panel (``shared_scale``, clipped to DENSITY_SPAN nats below the highest maximum), square axes
equal to the window, Viridis, white ellipses for q's 2-sd contour.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .figures import (
    CONTOUR_COLOURS,
    DENSITY_SPAN,
    FONT,
    _clipped,
    contour_stride,
    grid_extent,
    q_ellipse,
    shared_scale,
    white_line,
)
from .toy import ToyResult

TARGET_CONTOUR_NATS = 5.0  # the target's contour drawn on every q and q_IW panel: this far below its maximum
FIT_COLOURS = {"elbo": "#1f77b4", "iwae": "#ff7f0e"}


def panel_titles(k: int) -> tuple[str, ...]:
    return (
        "target p(z)",
        "q: ELBO fit",
        f"q<sub>IW</sub> of the ELBO fit, K = {k}",
        f"q: IWAE fit (L<sub>K</sub>, K = {k})",
        f"q<sub>IW</sub> of the IWAE fit, K = {k}",
    )


def toy_figure(result: ToyResult, span: float = DENSITY_SPAN, height: int = 360) -> go.Figure:
    """Five panels side by side on the target's window, one colour scale: the target, q fitted by the
    ELBO and its q_IW at K, q fitted by L_K and its q_IW at K. Each q panel and q_IW panel carries that
    q's 2-sd ellipse (white) and the target's contour TARGET_CONTOUR_NATS below its maximum (dotted)."""
    r = result
    x_axis, y_axis = np.asarray(r.x_axis, np.float32), np.asarray(r.y_axis, np.float32)
    images = (r.log_target, r.elbo_fit.log_q, r.elbo_fit.log_qiw, r.iwae_fit.log_q, r.iwae_fit.log_qiw)
    names = ("target", "q (ELBO fit)", f"q_IW (ELBO fit, K={r.k})", f"q (IWAE fit, K={r.k})",
             f"q_IW (IWAE fit, K={r.k})")
    zmin, zmax = shared_scale(*images, span=span)
    fig = make_subplots(rows=1, cols=5, subplot_titles=panel_titles(r.k), horizontal_spacing=0.025)
    for i, (name, image) in enumerate(zip(names, images, strict=True)):
        fig.add_trace(
            go.Heatmap(
                x=x_axis, y=y_axis, z=_clipped(image, zmin, zmax), zmin=zmin, zmax=zmax, colorscale="Viridis",
                showscale=i == 0, name=name, meta="density",
                colorbar=dict(title=dict(text="log density", side="right"), thickness=12, len=0.9, x=1.01),
                hovertemplate="z = (%{x:.2f}, %{y:.2f})<br>log density %{z:.2f}<extra>" + name + "</extra>",
            ),
            row=1, col=i + 1,
        )
    top = float(np.max(r.log_target))
    step = contour_stride(len(x_axis))
    contour_z = _clipped(np.asarray(r.log_target)[::step, ::step], top - 30, top)
    for col, view in ((2, r.elbo_fit), (3, r.elbo_fit), (4, r.iwae_fit), (5, r.iwae_fit)):
        fig.add_trace(
            go.Contour(
                x=x_axis[::step], y=y_axis[::step], z=contour_z, showscale=False, showlegend=col == 2,
                name=f"target, {TARGET_CONTOUR_NATS:.0f} nats below its maximum", meta="target-contour",
                contours=dict(start=top - TARGET_CONTOUR_NATS, end=top - TARGET_CONTOUR_NATS, size=1.0,
                              coloring="lines"),
                colorscale=[[0, CONTOUR_COLOURS["p"]], [1, CONTOUR_COLOURS["p"]]],
                line=dict(width=1.5, dash="dot"), hoverinfo="skip",
            ),
            row=1, col=col,
        )
        ex, ey = q_ellipse(view.fit.mu, view.fit.sigma)
        for trace in white_line(ex, ey, "q: 2-sd ellipse", col == 2, "ellipse"):
            fig.add_trace(trace, row=1, col=col)
    x_range, y_range = grid_extent(x_axis), grid_extent(y_axis)
    for i in range(1, 6):
        sx = "" if i == 1 else str(i)
        fig.layout[f"xaxis{sx}"].update(range=list(x_range), constrain="domain", showgrid=False, zeroline=False,
                                        title_text="z<sub>1</sub>")
        fig.layout[f"yaxis{sx}"].update(range=list(y_range), scaleanchor=f"x{sx}", scaleratio=1, constrain="domain",
                                        showgrid=False, zeroline=False, title_text="z<sub>2</sub>" if i == 1 else None,
                                        showticklabels=i == 1)
    fig.update_layout(
        height=height, margin=dict(l=50, r=10, t=40, b=40), font=FONT, plot_bgcolor="white",
        legend=dict(orientation="h", x=0.5, xanchor="center", y=-0.18, yanchor="top", font=dict(size=12),
                    bgcolor="rgba(0,0,0,0)"),
    )
    fig.update_annotations(font_size=13)
    return fig


def fit_trace_figure(result: ToyResult, height: int = 300) -> go.Figure:
    """The minibatch bound at every Adam step of both fits, and the target's exact log Z (every bound's
    ceiling)."""
    r = result
    fig = go.Figure()
    for key, view, name in (("elbo", r.elbo_fit, "ELBO fit: ELBO per step"),
                            ("iwae", r.iwae_fit, f"IWAE fit: L_K per step, K = {r.k}")):
        trace = np.asarray(view.fit.trace, np.float64)
        fig.add_trace(go.Scatter(x=np.arange(1, len(trace) + 1), y=trace, mode="lines", name=name,
                                 line=dict(color=FIT_COLOURS[key], width=1.5),
                                 hovertemplate="step %{x}<br>%{y:.3f} nats<extra></extra>"))
    n = max(len(r.elbo_fit.fit.trace), len(r.iwae_fit.fit.trace))
    fig.add_trace(go.Scatter(x=[1, n], y=[r.log_z_exact] * 2, mode="lines", name="log Z (exact)",
                             line=dict(color="black", dash="dash"), hovertemplate="log Z = %{y:.3f}<extra></extra>"))
    # The first steps start far below; show the last nine tenths so the end of each run is readable.
    tail = np.concatenate([np.asarray(v.fit.trace[len(v.fit.trace) // 10:], np.float64)
                           for v in (r.elbo_fit, r.iwae_fit)])
    lo, hi = float(np.percentile(tail, 1)), max(float(tail.max()), r.log_z_exact)
    pad = 0.05 * (hi - lo) + 1e-3
    fig.update_xaxes(title_text="Adam step", showgrid=True, gridcolor="#e5e5e5")
    fig.update_yaxes(title_text="bound (nats)", range=[lo - pad, hi + pad], showgrid=True, gridcolor="#e5e5e5")
    fig.update_layout(height=height, margin=dict(l=60, r=10, t=10, b=50), font=FONT, plot_bgcolor="white",
                      legend=dict(orientation="h", x=0, y=-0.3, yanchor="top"))
    return fig
