"""Pure plotly builder for the gradient signal-to-noise figure (data as read by ``iwae.snr.load_snr``).

Two panels, encoder (phi) and decoder (theta), SNR against K on log-log axes, one line per estimator
(standard IWAE, DReG): four data traces, ``trace.meta = {"estimator", "group"}``. Dotted reference slopes
(``meta = "reference"``): K^(-1/2) in the encoder panel and K^(1/2) in the decoder panel, through the standard
estimator's first point; a grey band below the estimate's noise floor sqrt(2 / (pi M)) (``meta = "floor"``).
"""

from __future__ import annotations

from collections.abc import Mapping

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .snr import FIGURE_STATISTIC, GROUPS, noise_floor, series

ESTIMATOR_STYLE = {  # name in the legend, colour, dash
    "standard": ("standard IWAE gradient", "#1f77b4", "solid"),
    "dreg": ("DReG (Tucker et al. 2019)", "#d62728", "dash"),
}
GROUP_TITLE = {"encoder": "Encoder (inference network φ)", "decoder": "Decoder (generative network θ)"}
REFERENCE_SLOPE = {"encoder": -0.5, "decoder": 0.5}
FONT = dict(size=13)


def protocol_caption(data: Mapping, statistic: str = FIGURE_STATISTIC) -> str:
    """One line saying what the figure's numbers are."""
    p = data["protocol"]
    n = len(p["images"])
    return (
        f"{statistic.capitalize()} over parameter elements of |mean| / std of the gradient over M = {p['repeats']} "
        f"repeats (fresh z, seed {p['seed']}); checkpoint {p['checkpoint']}; {n} test image{'s' if n != 1 else ''} "
        f"(indices {_indices(p['images'])}) of {p['binarization']}."
    )


def _indices(indices) -> str:
    indices = list(indices)
    if len(indices) > 2 and indices == list(range(indices[0], indices[-1] + 1)):
        return f"{indices[0]}-{indices[-1]}"
    return ", ".join(str(i) for i in indices)


def snr_figure(data: Mapping, statistic: str = FIGURE_STATISTIC, title: str | None = None,
               height: int = 420) -> go.Figure:
    """SNR against K, encoder and decoder panels, standard vs DReG, log-log axes."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=[GROUP_TITLE[g] for g in GROUPS], horizontal_spacing=0.1)
    all_ks = sorted({r["k"] for r in data["results"]})
    floor = noise_floor(data["protocol"]["repeats"])
    for col, group in enumerate(GROUPS, start=1):
        first = None
        for estimator, (name, colour, dash) in ESTIMATOR_STYLE.items():
            ks, values = series(data, estimator, group, statistic)
            if not ks:
                continue
            if estimator == "standard":
                first = (ks[0], values[0])
            fig.add_trace(go.Scatter(
                x=ks, y=values, mode="lines+markers", name=name, legendgroup=estimator, showlegend=col == 1,
                line=dict(color=colour, dash=dash, width=2), marker=dict(size=7),
                meta={"estimator": estimator, "group": group},
                hovertemplate=f"{name}<br>{group}<br>K = %{{x}}<br>{statistic} SNR = %{{y:.4g}}<extra></extra>",
            ), row=1, col=col)
        if first is not None and first[1] > 0 and len(all_ks) > 1:
            slope = REFERENCE_SLOPE[group]
            k0, y0 = first
            ref_ks = [all_ks[0], all_ks[-1]]
            fig.add_trace(go.Scatter(
                x=ref_ks, y=[y0 * (k / k0) ** slope for k in ref_ks], mode="lines",
                name="∝ K^(−1/2) (encoder) / K^(1/2) (decoder)", legendgroup="reference", showlegend=col == 1,
                line=dict(color="#888888", dash="dot", width=1.5), meta="reference", hoverinfo="skip",
            ), row=1, col=col)
        if group == "encoder" and all_ks:
            fig.add_trace(go.Scatter(
                x=[all_ks[0], all_ks[-1]], y=[floor, floor], mode="lines",
                name=f"noise floor of the estimate, √(2/πM) = {floor:.3g}", legendgroup="floor",
                line=dict(color="#bbbbbb", width=6), opacity=0.5, meta="floor",
                hovertemplate="an element with true SNR 0 is estimated at about %{y:.3g}<extra></extra>",
            ), row=1, col=col)
    fig.update_xaxes(type="log", title_text="K (importance samples)", tickvals=all_ks,
                     ticktext=[f"{k:,}" for k in all_ks], tickangle=0, showgrid=True, gridcolor="#e5e5e5")
    ticks = [m * 10.0**e for e in range(-3, 4) for m in (1, 2, 5)]  # labelled in full: 0.02, not a bare "2"
    fig.update_yaxes(type="log", tickvals=ticks, ticktext=[f"{t:g}" for t in ticks], showgrid=True,
                     gridcolor="#e5e5e5")
    fig.update_yaxes(title_text=f"SNR ({statistic} over elements)", row=1, col=1)
    fig.update_layout(
        title=title, height=height, font=FONT, plot_bgcolor="white",
        margin=dict(l=60, r=10, t=70 if title else 40, b=50),
        legend=dict(orientation="h", x=0, y=-0.22, yanchor="top"),
    )
    return fig
