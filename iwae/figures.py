"""Pure figure builders for the explorer: numpy in, plotly figures (or uint8 images) out.

No Streamlit and no model code here; every function is tested on its own (tests/test_figures.py).
Conventions: latent coordinates are (z1, z2) on (x, y); a density image is (n_y, n_x) with row 0 at
the lowest y (as ``ImageGrid.to_image`` returns it); digit colours are fixed across every figure.
"""

from __future__ import annotations

import base64
import functools
import io
import math
from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

# Ten distinguishable colours, one per digit, shared by every figure.
DIGIT_COLOURS = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)
DIGIT_META = "digit"  # trace.meta of the per-digit scatter traces (clicks on other traces are ignored)
DENSITY_SPAN = 12.0  # nats shown below the maximum in the posterior heatmaps
CONTOUR_LEVELS = (1.0, 5.0, 9.0)  # nats below each density's maximum, for the overlay panel
CONTOUR_RESOLUTION = 64  # at most this many points per side in the contour panel
CONTOUR_COLOURS = {"q": "#1f77b4", "q_iw": "#ff7f0e", "p": "#111111"}
FONT = dict(size=13)


def _as_np(a) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


# ---------------------------------------------------------------------------------------------
# Small images (digits, reconstructions): uint8 arrays for st.image, upscaled without blurring


def digit_image(x, scale: int = 4) -> np.ndarray:
    """One image (784,) in [0, 1] -> uint8 (28 s, 28 s), black digit on white, nearest-neighbour upscaled."""
    img = 1.0 - np.clip(_as_np(x).reshape(28, 28).astype(np.float64), 0.0, 1.0)
    img = np.kron(img, np.ones((scale, scale)))
    return (img * 255).round().astype(np.uint8)


def tile_images(images, cols: int = 4, scale: int = 2, gap: int = 2) -> np.ndarray:
    """(N, 784) images in [0, 1] -> one uint8 picture, ``cols`` per row, grey gaps between tiles."""
    images = _as_np(images).reshape(-1, 784)
    n = len(images)
    rows = max(1, math.ceil(n / cols))
    side = 28 * scale
    out = np.full((rows * side + (rows + 1) * gap, cols * side + (cols + 1) * gap), 160, dtype=np.uint8)
    for i, x in enumerate(images):
        r, c = divmod(i, cols)
        top, left = gap + r * (side + gap), gap + c * (side + gap)
        out[top : top + side, left : left + side] = digit_image(x, scale)
    return out


def mean_image(images) -> np.ndarray:
    """Pixelwise average of (N, 784) images -> (784,)."""
    return _as_np(images).reshape(-1, 784).mean(0)


# ---------------------------------------------------------------------------------------------
# The latent space


def latent_window(mu, low: float = 0.5, high: float = 99.5, pad: float = 0.08) -> tuple[tuple, tuple]:
    """A square window (x_range, y_range) holding the central mass of the latent means."""
    mu = _as_np(mu).astype(np.float64)
    mu = mu[np.isfinite(mu).all(1)]
    if len(mu) == 0:
        return (-3.0, 3.0), (-3.0, 3.0)
    lo, hi = np.percentile(mu, low, axis=0), np.percentile(mu, high, axis=0)
    centre = (lo + hi) / 2
    half = max(float((hi - lo).max()) / 2 * (1 + pad), 0.5)
    return (centre[0] - half, centre[0] + half), (centre[1] - half, centre[1] + half)


def _square_axes(fig: go.Figure, x_range, y_range, **kw) -> None:
    fig.update_xaxes(range=list(x_range), title_text="z<sub>1</sub>", constrain="domain", zeroline=False, **kw)
    fig.update_yaxes(range=list(y_range), title_text="z<sub>2</sub>", scaleanchor="x", scaleratio=1,
                     constrain="domain", zeroline=False, **kw)


def latent_scatter(
    mu,
    labels,
    chosen: int | None = None,
    z_point: Sequence[float] | None = None,
    window: tuple | None = None,
    title: str | None = None,
    height: int = 520,
    own_point: Sequence[float] | None = None,
) -> go.Figure:
    """The test set's latent means coloured by digit: one Scattergl trace per digit (customdata = test
    index), then the chosen image (ring), the user's own digit's mean (star) and an optional decoded
    point z (cross) on top."""
    mu, labels = _as_np(mu), _as_np(labels).astype(int)
    fig = go.Figure()
    for d in range(10):
        idx = np.flatnonzero(labels == d)
        fig.add_trace(
            go.Scattergl(
                x=mu[idx, 0], y=mu[idx, 1], mode="markers", name=str(d), meta=DIGIT_META,
                customdata=idx, marker=dict(size=4, color=DIGIT_COLOURS[d], opacity=0.6),
                hovertemplate=f"digit {d} · image #%{{customdata}}<br>z = (%{{x:.2f}}, %{{y:.2f}})<extra></extra>",
            )
        )
    if chosen is not None and 0 <= chosen < len(mu):
        fig.add_trace(
            go.Scattergl(
                x=[mu[chosen, 0]], y=[mu[chosen, 1]], mode="markers", name=f"image #{chosen}",
                marker=dict(size=18, color="rgba(0,0,0,0)", line=dict(width=3, color="black")),
                hovertemplate=f"chosen image #{chosen} (digit {labels[chosen]})<extra></extra>",
            )
        )
    if own_point is not None:
        fig.add_trace(
            go.Scattergl(
                x=[float(own_point[0])], y=[float(own_point[1])], mode="markers", name="your digit",
                marker=dict(size=20, symbol="star", color="gold", line=dict(width=2, color="black")),
                hovertemplate="your own digit: μ(x) = (%{x:.2f}, %{y:.2f})<extra></extra>",
            )
        )
    if z_point is not None:
        fig.add_trace(
            go.Scattergl(
                x=[float(z_point[0])], y=[float(z_point[1])], mode="markers", name="decoded z",
                marker=dict(size=14, symbol="x", color="black"),
                hovertemplate="decoded z = (%{x:.2f}, %{y:.2f})<extra></extra>",
            )
        )
    x_range, y_range = window or latent_window(mu)
    _square_axes(fig, x_range, y_range)
    fig.update_layout(
        title=title, height=height, margin=dict(l=50, r=10, t=40 if title else 30, b=40), font=FONT,
        legend=dict(title="digit", itemsizing="constant", orientation="h", x=0, y=-0.14, yanchor="top"),
        clickmode="event+select",
        plot_bgcolor="white",
    )
    return fig


def selection_to_index(fig: go.Figure, selection: Mapping | None) -> int | None:
    """The test index a plotly selection event chose (Streamlit's ``event.selection``), or None.

    Clicks map back through (curve_number, point_index) into the figure's own per-digit traces;
    clicks on other traces (the highlight ring, the z cross) are ignored. A box selection of several
    points chooses the point nearest the box's centre."""
    if not selection:
        return None
    points = selection.get("points") or []
    found = []
    for p in points:
        try:
            cn, pi = int(p["curve_number"]), int(p["point_index"])
        except (KeyError, TypeError, ValueError):
            continue
        if 0 <= cn < len(fig.data) and fig.data[cn].meta == DIGIT_META and 0 <= pi < len(fig.data[cn].customdata):
            trace = fig.data[cn]
            found.append((int(trace.customdata[pi]), float(trace.x[pi]), float(trace.y[pi])))
    if not found:
        return None
    boxes = selection.get("box") or []
    if len(found) > 1 and boxes:
        try:
            bx, by = boxes[0]["x"], boxes[0]["y"]
            cx, cy = (min(bx) + max(bx)) / 2, (min(by) + max(by)) / 2
            return min(found, key=lambda t: (t[1] - cx) ** 2 + (t[2] - cy) ** 2)[0]
        except (KeyError, TypeError, ValueError, IndexError):
            pass
    return found[0][0]


def png_data_uri(image) -> str:
    """A greyscale image in [0, 1] (row 0 at the top) as a PNG data URI (small, unlike a heatmap)."""
    arr = (np.clip(_as_np(image).astype(np.float64), 0, 1) * 255).round().astype(np.uint8)
    return _png_base64(arr.tobytes(), arr.shape)


@functools.lru_cache(maxsize=32)
def _png_base64(pixels: bytes, shape: tuple[int, int]) -> str:
    """Encoded once per distinct picture: the manifold is redrawn on every rerun of its page, unchanged."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.frombytes("L", (shape[1], shape[0]), pixels).save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def manifold_extent(n: int, x_range, y_range) -> tuple[tuple, tuple]:
    """Data extent of iwae.latent.decoded_manifold's picture: tile centres span the ranges, so the
    picture reaches half a tile beyond them."""
    step_x = (x_range[1] - x_range[0]) / max(n - 1, 1)
    step_y = (y_range[1] - y_range[0]) / max(n - 1, 1)
    return ((x_range[0] - step_x / 2, x_range[1] + step_x / 2), (y_range[0] - step_y / 2, y_range[1] + step_y / 2))


def manifold_figure(
    image,
    n: int,
    x_range,
    y_range,
    mu=None,
    labels=None,
    title: str | None = None,
    height: int = 520,
) -> go.Figure:
    """The decoded manifold (``decoded_manifold``'s tiled picture) placed in latent coordinates, with
    the test means overlaid when ``mu`` is given (the overlay toggle). The chosen image is not marked: then the
    figure does not change with the image, and the browser keeps it instead of drawing it again."""
    (x0, x1), (y0, y1) = manifold_extent(n, x_range, y_range)
    img = 1.0 - np.clip(_as_np(image), 0, 1)  # black strokes on white, like the input digits
    fig = go.Figure()
    # An invisible trace spanning the picture keeps the axes (and hover) alive without any data.
    fig.add_trace(go.Scatter(x=[x0, x1], y=[y0, y1], mode="markers", marker=dict(opacity=0), showlegend=False,
                             hoverinfo="skip"))
    fig.add_layout_image(
        dict(source=png_data_uri(img), xref="x", yref="y", x=x0, y=y1, sizex=x1 - x0, sizey=y1 - y0,
             sizing="stretch", layer="below", opacity=1.0)
    )
    if mu is not None and labels is not None:
        mu, labels = _as_np(mu), _as_np(labels).astype(int)
        for d in range(10):
            idx = np.flatnonzero(labels == d)
            fig.add_trace(
                go.Scattergl(
                    x=mu[idx, 0], y=mu[idx, 1], mode="markers", name=str(d), meta=DIGIT_META, customdata=idx,
                    marker=dict(size=3, color=DIGIT_COLOURS[d], opacity=0.45),
                    hovertemplate=f"digit {d} · image #%{{customdata}}<extra></extra>",
                )
            )
    _square_axes(fig, (x0, x1), (y0, y1), showgrid=False)
    fig.update_layout(title=title, height=height, margin=dict(l=50, r=10, t=40 if title else 10, b=40), font=FONT,
                      plot_bgcolor="white",
                      legend=dict(title="digit", itemsizing="constant", orientation="h", x=0, y=-0.14, yanchor="top"),
                      showlegend=mu is not None)
    return fig


# ---------------------------------------------------------------------------------------------
# Posteriors: q(z|x), q_IW(z|x) at K, p(z|x) on one window


def grid_extent(axis) -> tuple[float, float]:
    """The range covered by cells centred on an evenly spaced axis."""
    axis = _as_np(axis).astype(np.float64)
    h = float(axis[1] - axis[0]) if len(axis) > 1 else 1.0
    return float(axis[0] - h / 2), float(axis[-1] + h / 2)


def shared_scale(*log_densities, span: float = DENSITY_SPAN) -> tuple[float, float]:
    """(zmin, zmax) shared by several log-density images: the overall maximum and ``span`` below it."""
    tops = [float(np.nanmax(np.where(np.isfinite(d), d, -np.inf))) for d in map(_as_np, log_densities)]
    tops = [t for t in tops if np.isfinite(t)]
    zmax = max(tops) if tops else 0.0
    return zmax - span, zmax


def _clipped(log_density, zmin: float, zmax: float) -> np.ndarray:
    """Finite values only (no blank cells): -inf and NaN go just below the colour scale's floor."""
    d = _as_np(log_density).astype(np.float64)
    return np.clip(np.nan_to_num(d, nan=zmin - 1, neginf=zmin - 1, posinf=zmax), zmin - 1, zmax).astype(np.float32)


def _density_heatmap(name: str, dens, x_axis, y_axis, zmin: float, zmax: float, showscale: bool) -> go.Heatmap:
    return go.Heatmap(
        x=x_axis, y=y_axis, z=_clipped(dens, zmin, zmax), zmin=zmin, zmax=zmax, colorscale="Viridis",
        showscale=showscale, name=name, meta="density",
        colorbar=dict(title=dict(text="log density", side="right"), thickness=14),
        hovertemplate="z = (%{x:.3f}, %{y:.3f})<br>log density %{z:.2f}<extra>" + name + "</extra>",
    )


def _mean_marker(mu, colour: str, showlegend: bool) -> go.Scatter:
    """A filled cross edged in the other of black and white: it shows on a heatmap, on white and in the legend."""
    mu = _as_np(mu).reshape(-1)
    edge = "black" if colour == "white" else "white"
    return go.Scatter(x=[mu[0]], y=[mu[1]], mode="markers", name="mean of q", showlegend=showlegend,
                      marker=dict(size=11, symbol="x", color=colour, line=dict(width=1, color=edge)),
                      hovertemplate="mean of q (%{x:.3f}, %{y:.3f})<extra></extra>", meta="mean")


def white_line(x, y, name: str, showlegend: bool, meta: str) -> list[go.Scatter]:
    """A white line for a heatmap, edged in black: the edge, drawn first and wider, also stands for it in the legend
    (a white line does not show on the legend's white ground); one legend group, so a click hides both."""
    common = dict(x=x, y=y, mode="lines", name=name, legendgroup=f"{meta}-{name}", hoverinfo="skip")
    return [go.Scatter(**common, showlegend=showlegend, meta=f"{meta}-edge", line=dict(color="black", width=4)),
            go.Scatter(**common, showlegend=False, meta=meta, line=dict(color="white", width=2))]


def _ellipse(mu, sigma, colour: str, showlegend: bool) -> go.Scatter:
    ex, ey = q_ellipse(mu, sigma)
    return go.Scatter(x=ex, y=ey, mode="lines", name="q: 2-sd ellipse", showlegend=showlegend, meta="ellipse",
                      hoverinfo="skip", line=dict(color=colour, width=2))


PANEL_GAP = 0.14  # horizontal space between the two panels of a posterior figure, as a fraction of its width


def _two_panel_figure(left: list, right: list, titles: tuple[str, str], x_axis, y_axis, height: int) -> go.Figure:
    """Two square panels showing exactly the grid's window, titled, legend below: the layout make_subplots(1, 2)
    would give, written as one dict so that the figure is validated once (about half the time: a K change
    rebuilds one such figure per model)."""
    x_range, y_range = list(grid_extent(x_axis)), list(grid_extent(y_axis))
    width = (1 - PANEL_GAP) / 2
    layout = dict(
        height=height, margin=dict(l=40, r=10, t=30, b=20), font=FONT, plot_bgcolor="white",
        legend=dict(orientation="h", x=0.5, xanchor="center", y=-0.08, yanchor="top", font=dict(size=12)),
        annotations=[],
    )
    for sx, domain, title in (("", [0.0, width], titles[0]), ("2", [1 - width, 1.0], titles[1])):
        layout[f"xaxis{sx}"] = dict(domain=domain, anchor=f"y{sx}", range=x_range, constrain="domain", showgrid=False,
                                    zeroline=False)
        layout[f"yaxis{sx}"] = dict(domain=[0.0, 1.0], anchor=f"x{sx}", range=y_range, scaleanchor=f"x{sx}",
                                    scaleratio=1, constrain="domain", showgrid=False, zeroline=False)
        layout["annotations"].append(dict(text=title, x=sum(domain) / 2, y=1.0, xref="paper", yref="paper",
                                          xanchor="center", yanchor="bottom", showarrow=False, font=dict(size=13)))
    for trace in right:
        trace.update(xaxis="x2", yaxis="y2")
    return go.Figure(data=left + right, layout=layout)


def posterior_figures(
    x_axis,
    y_axis,
    log_q,
    log_qiw,
    log_p,
    k: int,
    q_draws=None,
    sir_draws=None,
    mu=None,
    sigma=None,
    span: float = DENSITY_SPAN,
    height: int = 360,
    q_resolved: bool = True,
) -> tuple[go.Figure, go.Figure]:
    """One window, four panels in two figures: ``posterior_fixed_figure`` (log q(z|x) | log p(z|x)), which does
    not depend on K, and ``posterior_k_figure`` (log q_IW(z|x) at K | contours of all three), which does. Split so
    that a K change rebuilds, re-sends and redraws only the second. One colour scale for the three heatmaps:
    [m - span, m] with m the highest of q and p (fixed across K; q_IW above m, which Monte Carlo error can give,
    shows in the top colour).

    log_* are (n_y, n_x) images; q draws go on the q panel, SIR draws on the q_IW panel. When the grid does not
    resolve q (``q_resolved`` False: ``iwae.posterior.q_resolved`` decides), the exact 2-sd ellipse of q (``mu``,
    ``sigma``) is drawn on the q and contour panels instead of leaving them seemingly blank."""
    return (posterior_fixed_figure(x_axis, y_axis, log_q, log_p, q_draws, mu, sigma, span, height, q_resolved),
            posterior_k_figure(x_axis, y_axis, log_q, log_qiw, log_p, k, sir_draws, mu, sigma, span, height,
                               q_resolved))


def posterior_fixed_figure(x_axis, y_axis, log_q, log_p, q_draws=None, mu=None, sigma=None,
                           span: float = DENSITY_SPAN, height: int = 360, q_resolved: bool = True) -> go.Figure:
    """(log q(z|x) with draws from q | log p(z|x)): the K-independent half of ``posterior_figures``."""
    x_axis, y_axis = _as_np(x_axis).astype(np.float32), _as_np(y_axis).astype(np.float32)
    zmin, zmax = shared_scale(log_q, log_p, span=span)
    unresolved = not q_resolved and mu is not None and sigma is not None
    left = [_density_heatmap("q", log_q, x_axis, y_axis, zmin, zmax, True)]
    right = [_density_heatmap("p", log_p, x_axis, y_axis, zmin, zmax, False)]
    if q_draws is not None and len(q_draws):
        q_draws = _as_np(q_draws)
        left.append(go.Scatter(x=q_draws[:, 0], y=q_draws[:, 1], mode="markers", name="draws from q",
                               marker=dict(size=4, color="white", line=dict(width=0.5, color="black")),
                               hovertemplate="q draw (%{x:.3f}, %{y:.3f})<extra></extra>", meta="draws"))
    if unresolved:
        left.extend(white_line(*q_ellipse(mu, sigma), "q: 2-sd ellipse", True, "ellipse"))
    if mu is not None:
        left.append(_mean_marker(mu, "white", True))
        right.append(_mean_marker(mu, "white", False))
    fixed = _two_panel_figure(left, right, ("q(z|x): the encoder", "p(z|x): the true posterior"), x_axis, y_axis,
                              height)
    return fixed


def posterior_k_figure(x_axis, y_axis, log_q, log_qiw, log_p, k: int, sir_draws=None, mu=None, sigma=None,
                       span: float = DENSITY_SPAN, height: int = 360, q_resolved: bool = True) -> go.Figure:
    """(log q_IW(z|x) at K with SIR draws | contours of q, q_IW and p): the half of ``posterior_figures`` that
    changes with K."""
    x_axis, y_axis = _as_np(x_axis).astype(np.float32), _as_np(y_axis).astype(np.float32)
    zmin, zmax = shared_scale(log_q, log_p, span=span)
    unresolved = not q_resolved and mu is not None and sigma is not None
    left = [_density_heatmap("q_iw", log_qiw, x_axis, y_axis, zmin, zmax, False)]
    right = []
    step = contour_stride(len(x_axis))
    for name, dens in (("q", log_q), ("q_iw", log_qiw), ("p", log_p)):
        d = _as_np(dens).astype(np.float64)
        top = float(np.nanmax(np.where(np.isfinite(d), d, -np.inf)))
        label = {"q": "q(z|x)", "q_iw": f"q_IW, K={k}", "p": "p(z|x)"}[name]
        right.append(go.Contour(
            x=x_axis[::step], y=y_axis[::step], z=_clipped(d[::step, ::step], top - 30, top), name=label,
            showlegend=True, showscale=False,
            contours=dict(start=top - max(CONTOUR_LEVELS), end=top - min(CONTOUR_LEVELS),
                          size=CONTOUR_LEVELS[1] - CONTOUR_LEVELS[0], coloring="lines"),
            colorscale=[[0, CONTOUR_COLOURS[name]], [1, CONTOUR_COLOURS[name]]],
            line=dict(width=2, dash="dot" if name == "q" else "solid"), hoverinfo="skip", meta="contour",
        ))
    if sir_draws is not None and len(sir_draws):
        sir_draws = _as_np(sir_draws)
        left.append(go.Scatter(x=sir_draws[:, 0], y=sir_draws[:, 1], mode="markers", name=f"SIR draws, K={k}",
                               marker=dict(size=5, color="#ff3b3b", line=dict(width=0.5, color="white")),
                               hovertemplate="SIR draw (%{x:.3f}, %{y:.3f})<extra></extra>", meta="draws"))
    if unresolved:
        right.append(_ellipse(mu, sigma, CONTOUR_COLOURS["q"], True))
    if mu is not None:
        left.append(_mean_marker(mu, "white", False))
        right.append(_mean_marker(mu, "black", True))
    moving = _two_panel_figure(left, right, (f"q<sub>IW</sub>(z|x) at K = {k}",
                                             "contours: 1, 5, 9 nats below max"), x_axis, y_axis, height)
    return moving


def contour_stride(n: int) -> int:
    """Contours are drawn from every stride-th grid point (at most CONTOUR_RESOLUTION per side): the browser traces
    them itself, and a quarter of the points is four times lighter to send and to trace."""
    return max(1, n // CONTOUR_RESOLUTION)


def q_ellipse(mu, sigma, n_sd: float = 2.0, points: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """The axis-aligned ellipse mu +- n_sd * sigma of a diagonal Gaussian, as a closed line."""
    mu, sigma = _as_np(mu).reshape(-1).astype(np.float64), _as_np(sigma).reshape(-1).astype(np.float64)
    t = np.linspace(0, 2 * np.pi, points)
    return mu[0] + n_sd * sigma[0] * np.cos(t), mu[1] + n_sd * sigma[1] * np.sin(t)


# ---------------------------------------------------------------------------------------------
# Bounds


def bound_curve_figure(
    ks,
    mean,
    spread=None,
    log_px: float | None = None,
    log_px_label: str = "log p(x), quadrature",
    title: str | None = None,
    height: int = 380,
    colour: str = "#1f77b4",
) -> go.Figure:
    """L_K against K (log axis), a +-1 sd band over repeats when ``spread`` is given, and the exact
    log p(x) as a dashed line."""
    ks = [int(k) for k in ks]
    mean = np.asarray(mean, dtype=np.float64)
    fig = go.Figure()
    if spread is not None:
        spread = np.asarray(spread, dtype=np.float64)
        fig.add_trace(go.Scatter(x=ks, y=mean + spread, mode="lines", line=dict(width=0), showlegend=False,
                                 hoverinfo="skip", name="upper"))
        fig.add_trace(go.Scatter(x=ks, y=mean - spread, mode="lines", line=dict(width=0), fill="tonexty",
                                 fillcolor="rgba(31,119,180,0.2)", name="±1 sd over repeats", hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=ks, y=mean, mode="lines+markers", name="L_K", line=dict(color=colour, width=2),
                             hovertemplate="K = %{x}<br>L_K = %{y:.3f}<extra></extra>"))
    if log_px is not None and np.isfinite(log_px):
        fig.add_trace(go.Scatter(x=[ks[0], ks[-1]], y=[log_px, log_px], mode="lines", name=log_px_label,
                                 line=dict(color="black", dash="dash"),
                                 hovertemplate="log p(x) = %{y:.3f}<extra></extra>"))
    fig.update_xaxes(type="log", title_text="K (number of importance samples)", tickvals=ks,
                     ticktext=[f"{k:,}" for k in ks], tickangle=0)
    fig.update_yaxes(title_text="nats")
    fig.update_layout(title=title, height=height, margin=dict(l=60, r=10, t=40 if title else 10, b=50), font=FONT,
                      legend=dict(orientation="h", x=0, y=-0.25, yanchor="top"), plot_bgcolor="white")
    fig.update_xaxes(showgrid=True, gridcolor="#e5e5e5")
    fig.update_yaxes(showgrid=True, gridcolor="#e5e5e5")
    return fig


def training_figure(history: Sequence[Mapping], title: str | None = None, height: int = 340) -> go.Figure:
    """Training bound and test bound per epoch from a checkpoint's history."""
    fig = go.Figure()
    epochs = [h.get("epoch") for h in history]
    for key, name, dash, colour in (("train_bound", "training bound (minibatch mean)", "solid", "#1f77b4"),
                                    ("test_bound", "test bound", "dot", "#ff7f0e")):
        ys = [h.get(key) for h in history]
        if any(y is not None for y in ys):
            fig.add_trace(go.Scatter(x=epochs, y=ys, mode="lines+markers", name=name,
                                     line=dict(dash=dash, color=colour),
                                     marker=dict(size=4), hovertemplate="epoch %{x}<br>%{y:.2f} nats<extra></extra>"))
    if not fig.data:
        fig.add_annotation(text="no training history in this checkpoint", showarrow=False, x=0.5, y=0.5,
                           xref="paper", yref="paper")
    fig.update_xaxes(title_text="epoch", showgrid=True, gridcolor="#e5e5e5")
    fig.update_yaxes(title_text="bound (nats per image)", showgrid=True, gridcolor="#e5e5e5")
    fig.update_layout(title=title, height=height, margin=dict(l=60, r=10, t=40 if title else 10, b=50), font=FONT,
                      legend=dict(orientation="h", x=0, y=-0.3, yanchor="top"), plot_bgcolor="white")
    return fig
