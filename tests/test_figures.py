"""The explorer's pure figure builders (iwae/figures.py): trace types and counts, shared colour scales,
axis ranges equal to the window, click mapping, and a real posterior grid end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from iwae import figures, latent, posterior, quadrature
from iwae.model import VAE, ModelConfig


def scatter_points(fig) -> int:
    """Number of test points in a latent scatter (the per-digit traces only)."""
    return sum(len(t.x) for t in fig.data if t.meta == figures.DIGIT_META)


def density_traces(*figs) -> list:
    """The density heatmaps of posterior figures, in order (q, p, q_IW for posterior_figures' pair)."""
    return [t for fig in figs for t in fig.data if t.type == "heatmap" and t.meta == "density"]


@pytest.fixture(scope="module")
def latent_points():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 10_000)
    centres = np.stack([np.cos(labels * 0.6), np.sin(labels * 0.6)], 1) * 2
    mu = centres + rng.normal(0, 0.3, (10_000, 2))
    return mu, labels


def test_latent_scatter_has_one_webgl_trace_per_digit_and_every_point(latent_points):
    mu, labels = latent_points
    fig = figures.latent_scatter(mu, labels, chosen=17, z_point=(0.5, -0.5))
    digit_traces = [t for t in fig.data if t.meta == figures.DIGIT_META]
    assert len(digit_traces) == 10
    assert all(t.type == "scattergl" for t in fig.data)
    assert scatter_points(fig) == 10_000
    # each trace holds exactly its digit's points, and customdata maps back to test indices
    for d, t in enumerate(digit_traces):
        np.testing.assert_array_equal(np.asarray(t.customdata), np.flatnonzero(labels == d))
        np.testing.assert_allclose(np.asarray(t.x), mu[labels == d, 0])
    # highlight ring on the chosen image, cross at the decoded z
    ring, cross = fig.data[10], fig.data[11]
    assert (ring.x[0], ring.y[0]) == (mu[17, 0], mu[17, 1])
    assert (cross.x[0], cross.y[0]) == (0.5, -0.5)
    assert "image #%{customdata}" in digit_traces[0].hovertemplate and "digit 0" in digit_traces[0].hovertemplate


def test_latent_scatter_axes_equal_the_window(latent_points):
    mu, labels = latent_points
    window = ((-1.0, 2.0), (-3.0, 0.0))
    fig = figures.latent_scatter(mu, labels, window=window)
    assert tuple(fig.layout.xaxis.range) == window[0]
    assert tuple(fig.layout.yaxis.range) == window[1]
    assert fig.layout.yaxis.scaleanchor == "x"


def test_latent_window_is_square_and_holds_the_central_mass(latent_points):
    mu, _ = latent_points
    (x0, x1), (y0, y1) = figures.latent_window(mu)
    assert math.isclose(x1 - x0, y1 - y0)
    inside = (mu[:, 0] >= x0) & (mu[:, 0] <= x1) & (mu[:, 1] >= y0) & (mu[:, 1] <= y1)
    assert inside.mean() > 0.98
    assert figures.latent_window(np.full((5, 2), np.nan)) == ((-3.0, 3.0), (-3.0, 3.0))


def test_selection_maps_clicks_back_to_test_indices(latent_points):
    mu, labels = latent_points
    fig = figures.latent_scatter(mu, labels, chosen=3, z_point=(0, 0))
    d = int(labels[42])
    pi = int(np.flatnonzero(np.flatnonzero(labels == d) == 42)[0])
    click = {"points": [{"curve_number": d, "point_index": pi, "x": mu[42, 0], "y": mu[42, 1]}]}
    assert figures.selection_to_index(fig, click) == 42
    # the highlight ring and the z cross are not test points
    assert figures.selection_to_index(fig, {"points": [{"curve_number": 10, "point_index": 0}]}) is None
    assert figures.selection_to_index(fig, {"points": [{"curve_number": 11, "point_index": 0}]}) is None
    assert figures.selection_to_index(fig, None) is None
    assert figures.selection_to_index(fig, {"points": [], "box": [], "lasso": []}) is None
    assert figures.selection_to_index(fig, {"points": [{"curve_number": 99, "point_index": 0}]}) is None


def test_box_selection_chooses_the_point_nearest_the_box_centre(latent_points):
    mu, labels = latent_points
    fig = figures.latent_scatter(mu, labels)
    picked = [5, 6, 7]
    points = []
    for i in picked:
        d = int(labels[i])
        points.append({"curve_number": d, "point_index": int(np.flatnonzero(np.flatnonzero(labels == d) == i)[0])})
    target = mu[6]
    box = [{"x": [target[0] - 0.01, target[0] + 0.01], "y": [target[1] - 0.01, target[1] + 0.01]}]
    assert figures.selection_to_index(fig, {"points": points, "box": box}) == 6
    assert figures.selection_to_index(fig, {"points": points}) == 5  # no box: the first point


def test_manifold_figure_places_the_picture_in_latent_coordinates(latent_points):
    mu, labels = latent_points
    n, x_range, y_range = 5, (-2.0, 2.0), (-1.0, 3.0)
    picture = np.random.default_rng(1).random((n * 28, n * 28))
    plain = figures.manifold_figure(picture, n, x_range, y_range)
    assert len(plain.layout.images) == 1
    img = plain.layout.images[0]
    assert img.source.startswith("data:image/png;base64,")
    (x0, x1), (y0, y1) = figures.manifold_extent(n, x_range, y_range)
    assert (img.x, img.y, img.sizex, img.sizey) == pytest.approx((x0, y1, x1 - x0, y1 - y0))
    assert x0 == pytest.approx(-2.5) and y1 == pytest.approx(3.5)  # half a tile beyond the tile centres
    assert scatter_points(plain) == 0
    assert tuple(plain.layout.xaxis.range) == pytest.approx((x0, x1))
    overlaid = figures.manifold_figure(picture, n, x_range, y_range, mu=mu, labels=labels)
    assert scatter_points(overlaid) == 10_000


def _fake_density(n=40, centre=(0.0, 0.0), scale=1.0):
    axis = np.linspace(-3, 3, n)
    xx, yy = np.meshgrid(axis, axis)  # rows along y
    return axis, -0.5 * ((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / scale**2


def test_posterior_panels_share_one_colour_scale_and_the_window():
    axis, log_q = _fake_density(centre=(0.5, 0.0), scale=1.0)
    _, log_p = _fake_density(centre=(-1.0, 1.0), scale=0.3)
    log_p = log_p + 2.0  # the highest of q and p
    log_qiw = np.maximum(log_q, log_p - 1)
    log_qiw[0, 0] = -np.inf  # must not leave a blank cell
    fixed, moving = figures.posterior_figures(axis, axis, log_q, log_qiw, log_p, k=50, q_draws=np.zeros((7, 2)),
                                              sir_draws=np.ones((9, 2)), mu=np.array([0.5, 0.0]))
    heatmaps = density_traces(fixed, moving)
    assert [t.name for t in heatmaps] == ["q", "p", "q_iw"]
    assert len({t.zmin for t in heatmaps}) == 1 and len({t.zmax for t in heatmaps}) == 1
    assert heatmaps[0].zmax == pytest.approx(log_p.max())
    assert heatmaps[0].zmax - heatmaps[0].zmin == pytest.approx(figures.DENSITY_SPAN)
    assert [t.showscale for t in heatmaps] == [True, False, False]  # one colour bar for the three
    for t in heatmaps:
        z = np.asarray(t.z)
        assert np.isfinite(z).all() and z.shape == log_q.shape
    assert sum(t.type == "contour" for t in moving.data) == 3 and not [t for t in fixed.data if t.type == "contour"]
    assert [len(t.x) for t in fixed.data if t.meta == "draws"] == [7]  # q draws on q
    assert [len(t.x) for t in moving.data if t.meta == "draws"] == [9]  # SIR draws on q_IW
    # every panel shows exactly the window: the grid's cells, centre +- half a spacing
    h = axis[1] - axis[0]
    for fig in (fixed, moving):
        for i in ("", "2"):
            assert tuple(fig.layout[f"xaxis{i}"].range) == pytest.approx((axis[0] - h / 2, axis[-1] + h / 2))
            assert tuple(fig.layout[f"yaxis{i}"].range) == pytest.approx((axis[0] - h / 2, axis[-1] + h / 2))
    assert "K = 50" in moving.layout.annotations[0].text
    assert not [a.text for a in fixed.layout.annotations if "K" in a.text]  # the fixed half does not name K


def test_only_the_q_iw_half_changes_with_k():
    """The split's purpose: at another K the first figure is identical (Streamlit re-sends nothing for it)."""
    axis, log_q = _fake_density(centre=(0.5, 0.0))
    _, log_p = _fake_density(centre=(-1.0, 1.0), scale=0.3)
    a = figures.posterior_figures(axis, axis, log_q, log_q, log_p, k=1, mu=np.zeros(2), sigma=np.ones(2))
    b = figures.posterior_figures(axis, axis, log_q, 0.5 * (log_q + log_p), log_p, k=500, mu=np.zeros(2),
                                  sigma=np.ones(2))
    assert a[0].to_json() == b[0].to_json()
    assert a[1].to_json() != b[1].to_json()


def test_shared_scale_ignores_non_finite_values():
    assert figures.shared_scale(np.array([-np.inf, 1.0]), np.array([np.nan, 3.0]), span=5) == (-2.0, 3.0)
    assert figures.shared_scale(np.array([-np.inf])) == (-figures.DENSITY_SPAN, 0.0)


def test_posterior_figure_from_a_real_image_grid():
    """End to end with the core: a small random 784-pixel model, one image, K = 1 and K = 20."""
    torch.manual_seed(0)
    model = VAE(ModelConfig(hidden_dim=16)).eval()
    x = (torch.rand(784, generator=torch.Generator().manual_seed(1)) < 0.2).float()
    grid = quadrature.global_grid(model, half_width=4.0, spacing=0.2)
    g = posterior.image_grid(model, grid, x, resolution=48)
    pool = posterior.proposal_pool(model, x, 200, torch.Generator().manual_seed(0))
    for k in (1, 20):
        log_qiw = posterior.log_q_iw(g, pool, k, n_draws=16, generator=torch.Generator().manual_seed(2))
        fig, moving = figures.posterior_figures(g.x_axis, g.y_axis, g.to_image(g.log_q), g.to_image(log_qiw),
                                                g.to_image(g.log_posterior), k)
        heatmaps = density_traces(fig, moving)
        assert len(heatmaps) == 3
        assert len({(t.zmin, t.zmax) for t in heatmaps}) == 1
        assert np.asarray(heatmaps[0].z).shape == (48, 48)
        lo, hi = figures.grid_extent(g.x_axis.numpy())
        assert tuple(fig.layout.xaxis.range) == pytest.approx((lo, hi))
        assert hi - lo == pytest.approx(g.spacing * g.n, rel=1e-5)


def test_bound_curve_figure_traces_and_log_axis():
    ks = [1, 10, 100, 1000]
    fig = figures.bound_curve_figure(ks, [-100, -99, -98.5, -98.4], [1.0, 0.5, 0.2, 0.0], log_px=-98.3)
    assert fig.layout.xaxis.type == "log"
    assert len(fig.data) == 4  # band (2), L_K, log p(x)
    assert fig.data[1].fill == "tonexty"
    assert list(fig.data[2].x) == ks
    assert list(fig.data[3].y) == [-98.3, -98.3] and fig.data[3].line.dash == "dash"
    bare = figures.bound_curve_figure(ks, [-100, -99, -98.5, -98.4])
    assert len(bare.data) == 1
    assert len(figures.bound_curve_figure(ks, [-1] * 4, log_px=float("nan")).data) == 1


def test_training_figure():
    history = [{"epoch": e, "train_bound": -150 + e, "test_bound": -151 + e} for e in range(1, 6)]
    fig = figures.training_figure(history)
    assert [len(t.x) for t in fig.data] == [5, 5]
    empty = figures.training_figure([])
    assert len(empty.data) == 0 and len(empty.layout.annotations) == 1


def test_small_images():
    x = np.zeros(784)
    x[:28] = 1
    img = figures.digit_image(x, scale=3)
    assert img.shape == (84, 84) and img.dtype == np.uint8
    assert img[0, 0] == 0 and img[-1, -1] == 255  # black ink on white
    tiles = figures.tile_images(np.ones((16, 784)), cols=4, scale=2, gap=2)
    assert tiles.shape == (4 * 56 + 5 * 2, 4 * 56 + 5 * 2)
    assert tiles.dtype == np.uint8
    np.testing.assert_allclose(figures.mean_image(np.stack([np.zeros(784), np.ones(784)])), 0.5)


def test_knn_accuracy(latent_points):
    mu, labels = latent_points
    assert latent.knn_accuracy(mu, labels) > 0.9
    shuffled = np.random.default_rng(3).permutation(labels)
    assert latent.knn_accuracy(mu, shuffled) < 0.2
    with pytest.raises(ValueError):
        latent.knn_accuracy(mu[:10], labels[:10], n_train=10)


def test_unresolved_q_gets_its_ellipse():
    """posterior.q_resolved decides (one rule for the estimator and the picture); the figures draw q's exact 2-sd
    ellipse on the q and contour panels when it says the grid does not resolve q."""
    axis, log_q = _fake_density()
    mu = np.array([1.0, -1.0])
    narrow = figures.posterior_figures(axis, axis, log_q, log_q, log_q, k=1, mu=mu, sigma=np.array([0.01, 0.2]),
                                       q_resolved=False)
    ellipses = [t for fig in narrow for t in fig.data if t.meta == "ellipse"]
    assert len(ellipses) == 2
    assert max(ellipses[0].x) == pytest.approx(1.02) and min(ellipses[0].y) == pytest.approx(-1.4, abs=1e-3)
    wide = figures.posterior_figures(axis, axis, log_q, log_q, log_q, k=1, mu=mu, sigma=np.array([1.0, 1.0]))
    assert not [t for fig in wide for t in fig.data if t.meta == "ellipse"]


def test_q_resolved_is_two_cells_per_standard_deviation():
    """The rule's threshold: each standard deviation of q spans at least RESOLVED_CELLS grid cells."""
    torch.manual_seed(0)
    model = VAE(ModelConfig(hidden_dim=16)).eval()
    x = (torch.rand(784, generator=torch.Generator().manual_seed(1)) < 0.2).float()
    g = posterior.image_grid(model, quadrature.global_grid(model, half_width=4.0, spacing=0.2), x, resolution=48)
    h = g.spacing * posterior.RESOLVED_CELLS
    for sigma, resolved in (((h, h), True), ((h * 1.01, h * 5), True), ((h * 0.99, h * 5), False)):
        g.sigma = torch.tensor(sigma, dtype=torch.float64)
        assert posterior.q_resolved(g) is resolved, sigma


WHITE = {"white", "#ffffff", "#fff", "rgb(255,255,255)"}


def legend_colours(trace) -> list:
    """The colours that draw a trace's legend symbol: its line, a filled marker's fill, a marker's edge."""
    mode, colours = trace.mode or "", []
    if "lines" in mode:
        colours.append(trace.line.color)
    if "markers" in mode:
        symbol = str(trace.marker.symbol or "circle")
        if not symbol.endswith(("-thin", "-open")):  # an open or line-only symbol has no fill
            colours.append(trace.marker.color)
        if (trace.marker.line.width or 0) > 0:
            colours.append(trace.marker.line.color)
    return [c for c in colours if c is not None]


def shows_in_legend(fig) -> list:
    return [t for t in fig.data if t.type == "scatter" and t.showlegend is not False]


def test_every_legend_entry_shows_on_the_legends_white_ground():
    """White marks are for the heatmaps; the legend (white ground) must still show each entry."""
    axis, log_q = _fake_density()
    figs = figures.posterior_figures(axis, axis, log_q, log_q, log_q, k=5, q_draws=np.zeros((3, 2)),
                                     sir_draws=np.ones((3, 2)), mu=np.array([1.0, -1.0]), sigma=np.array([0.01, 0.2]),
                                     q_resolved=False)
    entries = [t for fig in figs for t in shows_in_legend(fig)]
    assert {t.name for t in entries} >= {"mean of q", "q: 2-sd ellipse", "draws from q"}
    for t in entries:
        assert any(str(c).lower().replace(" ", "") not in WHITE for c in legend_colours(t)), (t.name, t.meta)
    # the white ellipse keeps its black edge, drawn under it and in one legend group with it
    fixed = figs[0]
    edge, line = [t for t in fixed.data if t.meta in ("ellipse-edge", "ellipse")]
    assert (edge.meta, line.line.color, edge.legendgroup) == ("ellipse-edge", "white", line.legendgroup)
    assert edge.line.width > line.line.width and np.array_equal(edge.x, line.x)
