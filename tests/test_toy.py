"""Toy 2-D targets (iwae/toy.py, iwae/toy_figures.py): targets normalized against their closed-form
normalizers, Gaussian fits by the ELBO and by L_K, q_IW on the window, and the figure.

Thresholds were measured with seed 0 (and seeds 0-4 for the margins quoted) at the module defaults
(1,000 Adam steps, 128 x 128 grid); each is stated beside its assertion.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from iwae import posterior, toy, toy_figures


@pytest.fixture(scope="module")
def banana():
    return toy.compare("banana", 100, seed=0)


@pytest.fixture(scope="module")
def mixture():
    return toy.compare("mixture", 100, seed=0)


def _window_probability(target: toy.Target, mu, sigma) -> float:
    """P(z in the window) for z ~ N(mu, diag sigma^2), in closed form."""
    (x0, x1), (y0, y1) = target.window()
    cdf = toy._normal_cdf
    px = cdf((x1 - mu[0]) / sigma[0]) - cdf((x0 - mu[0]) / sigma[0])
    py = cdf((y1 - mu[1]) / sigma[1]) - cdf((y0 - mu[1]) / sigma[1])
    return px * py


def _hand_made_fit(target: str, mu, sigma, k: int = 1) -> toy.GaussianFit:
    return toy.GaussianFit(target, k, 0, 1, 1, "dreg", torch.tensor(mu), torch.tensor(sigma), np.zeros(1, np.float32))


# ------------------------------------------------------------------------------------------------
# Targets


@pytest.mark.parametrize("name", list(toy.TARGETS))
def test_targets_normalize_on_their_window_to_the_closed_form(name):
    """Grid quadrature of the unnormalized density equals the closed-form log Z (measured: within 4e-4
    nats, the banana's tips past the window; the others within 1e-9), so the window holds all but
    0.1% of the mass and the grid resolves the density; after normalization it integrates to 1."""
    t = toy.TARGETS[name]
    g = toy.window_grid(t, _hand_made_fit(name, list(t.centre), [1.0, 1.0]))
    assert g.log_joint.shape == (toy.RESOLUTION**2,)
    assert abs(g.log_px - t.log_normalizer) < 1e-3
    assert math.exp(g.log_px - t.log_normalizer) > 0.999  # mass inside the window
    assert g.mass(g.log_posterior) == pytest.approx(1.0, abs=1e-6)  # float32 densities
    assert g.log_px_error < 1e-3


def test_ring_normalizer_against_a_large_fine_grid():
    """The ring's closed form (the one target whose normalizer is not a Gaussian's) against brute force
    on a window three times larger at a finer spacing."""
    t = toy.TARGETS["ring"]
    n, side = 1200, 3 * t.side
    axis = -side / 2 + side / n * (torch.arange(n, dtype=torch.float64) + 0.5)
    log_z = torch.logsumexp(t.log_density(torch.cartesian_prod(axis, axis)), 0).item() + 2 * math.log(side / n)
    assert log_z == pytest.approx(t.log_normalizer, abs=1e-6)


# ------------------------------------------------------------------------------------------------
# Fits


def test_both_fits_recover_a_gaussian_target():
    """A diagonal Gaussian target is in q's family and maximizes both the ELBO and L_K: the fits find its
    mean within 0.02 and its standard deviations within 3% (measured: within 0.001 at K = 1 and K = 100;
    DReG's variance vanishes at q = p). The bounds reached equal log Z (the weights are constant)."""
    t = toy.TARGETS["gaussian"]
    for k in (1, 100):
        fit = toy.fit_gaussian("gaussian", k, seed=0)
        np.testing.assert_allclose(fit.mu.numpy(), toy.GAUSS_MEAN, atol=0.02)
        np.testing.assert_allclose(fit.sigma.numpy(), toy.GAUSS_SD, rtol=0.03)
        assert toy.estimate_bound(t, fit, k)[0] == pytest.approx(t.log_normalizer, abs=0.01)


@pytest.mark.parametrize("which", ["banana", "mixture"])
def test_q_iw_of_the_iwae_fit_covers_a_non_gaussian_target(which, banana, mixture):
    """TV(q_IW at K = 100, target) is at least five times below TV(q, target) and below 0.05 (measured over
    seeds 0-4: TV(q_IW) 0.004-0.010 against TV(q) 0.505-0.651)."""
    r = {"banana": banana, "mixture": mixture}[which]
    v = r.iwae_fit
    assert v.tv_q > 0.3
    assert v.tv_qiw < 0.05
    assert v.tv_qiw < v.tv_q / 5
    assert v.kl_qiw < 0.05 < v.kl_q


def test_q_iw_improves_on_q_only_where_q_reaches(banana, mixture):
    """The ELBO fit of the banana sits at its bend: its q_IW at K = 100 halves the TV (measured 0.375 ->
    0.196). The ELBO fit of the mixture sits on one mode (measured sigma 0.600 on a component of 0.6) and
    puts ~e^-35 density on the other, which resampling cannot create: q_IW stays at TV ~ 0.5."""
    e = banana.elbo_fit
    assert e.tv_qiw < e.tv_q - 0.1
    m = mixture.elbo_fit
    assert abs(abs(float(m.fit.mu[0])) - toy.MIX_D) < 0.05 and abs(float(m.fit.mu[1])) < 0.05
    assert m.tv_q == pytest.approx(0.5, abs=0.02)
    assert m.tv_qiw == pytest.approx(0.5, abs=0.02)


@pytest.mark.parametrize("which", ["banana", "mixture"])
def test_the_iwae_fitted_q_is_broader(which, banana, mixture):
    """det Sigma of the IWAE fit over the ELBO fit's: measured 75-91 (banana), 18-22 (mixture) over seeds 0-4."""
    r = {"banana": banana, "mixture": mixture}[which]
    det_elbo = float(r.elbo_fit.fit.sigma.prod()) ** 2
    det_iwae = float(r.iwae_fit.fit.sigma.prod()) ** 2
    assert det_iwae > 4 * det_elbo


def test_each_fit_wins_its_own_bound(banana):
    """The ELBO fit has the higher ELBO, the IWAE fit the higher L_K (measured: ELBO 0.285 vs -13.0, L_100
    0.561 vs 0.765 nats), and every estimate stays below log Z = 0.788 up to 3 standard errors."""
    e, i, log_z = banana.elbo_fit, banana.iwae_fit, banana.log_z_exact
    assert e.elbo[0] > i.elbo[0] + 1.0
    assert i.l_k[0] > e.l_k[0] + 3 * (e.l_k[1] + i.l_k[1])
    for value, se in (e.elbo, e.l_k, i.elbo, i.l_k):
        assert value < log_z + 3 * se + 1e-6
    assert e.elbo[0] < e.l_k[0]  # L_1 <= L_K for the same q


def test_q_iw_self_check_integrates_to_one(banana, mixture):
    """Not renormalized, q_IW integrates to ~1 at K = 100 (measured over seeds 0-4: 0.975-1.031)."""
    for r in (banana, mixture):
        for v in (r.elbo_fit, r.iwae_fit):
            assert abs(v.mass_qiw - 1) < 0.06


def test_q_iw_at_k1_is_q_and_q_has_its_closed_form_mass():
    """At K = 1, q_IW = q exactly (so their integrals agree), and the integral of q over the window is the
    closed-form Gaussian probability of the window (q chosen to reach past it)."""
    t = toy.TARGETS["banana"]
    mu, sigma = [1.0, 0.5], [1.5, 0.8]
    g, v = toy.fit_view(t, _hand_made_fit("banana", mu, sigma), 1, seed=3)
    np.testing.assert_array_equal(v.log_qiw, v.log_q)
    assert v.mass_qiw == v.mass_q
    expected = _window_probability(t, mu, sigma)
    assert expected < 0.99  # the window cuts q
    assert v.mass_q == pytest.approx(expected, abs=1e-4)
    # the same K = 1 identity straight from the shared estimator
    pool = toy.gaussian_pool(t, v.fit, 100, torch.Generator().manual_seed(0))
    torch.testing.assert_close(posterior.log_q_iw(g, pool, 1), g.log_q.double())


def test_k1_compare_uses_one_fit_for_both_columns():
    r = toy.compare("mixture", 1, seed=0, steps=50)
    assert r.elbo_fit.fit is r.iwae_fit.fit
    np.testing.assert_array_equal(r.elbo_fit.log_qiw, r.iwae_fit.log_qiw)


def test_deterministic_for_a_seed_and_progress_reported():
    seen = []
    a = toy.fit_gaussian("ring", 5, steps=30, seed=7, on_step=lambda s, n, b: seen.append((s, n, b)))
    b = toy.fit_gaussian("ring", 5, steps=30, seed=7)
    c = toy.fit_gaussian("ring", 5, steps=30, seed=8)
    torch.testing.assert_close(a.mu, b.mu, rtol=0, atol=0)
    np.testing.assert_array_equal(a.trace, b.trace)
    assert not np.array_equal(a.trace, c.trace)
    assert [s for s, _, _ in seen] == list(range(1, 31)) and {n for _, n, _ in seen} == {30}
    np.testing.assert_allclose([bd for _, _, bd in seen], a.trace)
    _, v1 = toy.fit_view("ring", a, 5, seed=1)
    _, v2 = toy.fit_view("ring", a, 5, seed=1)
    np.testing.assert_array_equal(v1.log_qiw, v2.log_qiw)
    # compare() reports both fits as one run of 2 x steps
    steps = []
    toy.compare("gaussian", 2, seed=0, steps=10, resolution=16, on_step=lambda s, n, bd: steps.append((s, n)))
    assert steps == [(s, 20) for s in range(1, 21)]


@pytest.mark.parametrize("name", list(toy.TARGETS))
def test_each_targets_score_is_the_gradient_of_its_log_density(name):
    t = toy.TARGETS[name]
    (x0, x1), (y0, y1) = t.window()
    gen = torch.Generator().manual_seed(0)
    z = torch.stack((x0 + (x1 - x0) * torch.rand(500, generator=gen, dtype=torch.float64),
                     y0 + (y1 - y0) * torch.rand(500, generator=gen, dtype=torch.float64)), -1).requires_grad_(True)
    (autograd,) = torch.autograd.grad(t.log_density(z).sum(), z)
    torch.testing.assert_close(t.score(z.detach()), autograd, rtol=1e-10, atol=1e-10)


def test_the_written_out_adam_is_torchs_adam_under_its_exponential_decay():
    steps, gen = 40, torch.Generator().manual_seed(1)
    grads = torch.randn(steps, 4, generator=gen) * torch.logspace(1, -3, steps)[:, None]  # large, then small
    start = torch.randn(4, generator=gen)
    mine = toy.Adam(start.clone(), steps)
    theirs = start.clone().requires_grad_(True)
    opt = torch.optim.Adam([theirs], lr=toy.LEARNING_RATE, betas=toy.ADAM_BETAS, eps=toy.ADAM_EPS)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=toy.FINAL_LR_FACTOR ** (1 / (steps - 1)))
    for grad in grads:
        mine.step(grad)
        theirs.grad = grad.clone()
        opt.step()
        sched.step()
        torch.testing.assert_close(mine.params, theirs.detach(), rtol=0, atol=1e-7)
    assert mine.lr == pytest.approx(toy.LEARNING_RATE * toy.FINAL_LR_FACTOR ** (steps / (steps - 1)), rel=1e-9)


@pytest.mark.parametrize("name,k", [("banana", 1), ("ring", 5), ("mixture", 50)])
def test_the_written_out_dreg_gradient_is_autograd_of_the_dreg_surrogate(name, k):
    """Tucker et al.'s surrogate sum_k w~_k^2 log w(z_k), w~ held constant and q's parameters stopped inside log q,
    differentiated by autograd through the reparameterized draws only."""
    t, gen = toy.TARGETS[name], torch.Generator().manual_seed(2)
    params = torch.tensor([0.3, -0.2, 0.1, -0.4], dtype=torch.float64)
    eps = torch.randn(7, k, 2, generator=gen, dtype=torch.float64)
    live = params.clone().requires_grad_(True)
    z = live[:2] + torch.exp(live[2:]) * eps
    stopped = torch.distributions.Normal(params[:2], torch.exp(params[2:]))
    log_w = t.log_density(z) - stopped.log_prob(z).sum(-1)
    surrogate = (torch.softmax(log_w.detach(), -1) ** 2 * log_w).sum(-1).mean()
    (expected,) = torch.autograd.grad(surrogate, live)
    gradient, written_log_w = toy._dreg_gradient(t, params, eps)
    torch.testing.assert_close(gradient, expected, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(written_log_w, log_w.detach(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("k", [0, -3, 2.5, True])
def test_bad_k_raises(k):
    with pytest.raises(ValueError, match="K must be"):
        toy.fit_gaussian("banana", k, steps=2)
    with pytest.raises(ValueError, match="K must be"):
        toy.compare("banana", k, steps=2)
    with pytest.raises(ValueError, match="K must be"):
        toy.fit_view("banana", _hand_made_fit("banana", [0.0, 0.0], [1.0, 1.0]), k)


def test_bad_target_and_settings_raise():
    for call in (lambda: toy.get_target("donut"), lambda: toy.fit_gaussian("donut", 1, steps=2),
                 lambda: toy.compare("donut", 10, steps=2)):
        with pytest.raises(ValueError, match="unknown target"):
            call()
    with pytest.raises(ValueError, match="steps"):
        toy.fit_gaussian("banana", 1, steps=0)
    with pytest.raises(ValueError, match="estimator"):
        toy.fit_gaussian("banana", 1, steps=2, estimator="reinforce")
    fit = toy.fit_gaussian("banana", 1, steps=2)
    with pytest.raises(ValueError, match="do not match"):
        toy.compare("banana", 10, steps=2, elbo_fit=fit, iwae_fit=fit)


# ------------------------------------------------------------------------------------------------
# Figures


def test_toy_figure_shares_one_scale_and_the_window(banana):
    fig = toy_figures.toy_figure(banana)
    heatmaps = [t for t in fig.data if t.type == "heatmap" and t.meta == "density"]
    assert len(heatmaps) == 5
    assert len({(h.zmin, h.zmax) for h in heatmaps}) == 1
    assert heatmaps[0].zmax == pytest.approx(max(float(np.max(d)) for d in (
        banana.log_target, banana.elbo_fit.log_q, banana.elbo_fit.log_qiw, banana.iwae_fit.log_q,
        banana.iwae_fit.log_qiw)), rel=1e-6)
    assert sum(h.showscale for h in heatmaps) == 1
    np.testing.assert_allclose(np.asarray(heatmaps[0].z), banana.log_target.clip(heatmaps[0].zmin - 1), rtol=1e-6)
    (x0, x1), (y0, y1) = toy.TARGETS["banana"].window()
    for i in range(1, 6):
        sx = "" if i == 1 else str(i)
        np.testing.assert_allclose(fig.layout[f"xaxis{sx}"].range, (x0, x1), atol=1e-5)
        np.testing.assert_allclose(fig.layout[f"yaxis{sx}"].range, (y0, y1), atol=1e-5)
        assert fig.layout[f"yaxis{sx}"].scaleanchor == f"x{sx}"
    assert [a.text for a in fig.layout.annotations] == list(toy_figures.panel_titles(100))
    assert len([t for t in fig.data if t.meta == "ellipse"]) == 4


def test_fit_trace_figure(banana):
    fig = toy_figures.fit_trace_figure(banana)
    assert [len(t.x) for t in fig.data] == [toy.STEPS, toy.STEPS, 2]
    assert fig.data[2].y[0] == banana.log_z_exact


def test_the_toy_legend_shows_the_white_ellipse_by_its_black_edge(banana):
    fig = toy_figures.toy_figure(banana)
    entries = [t for t in fig.data if t.type == "scatter" and t.showlegend is not False]
    assert [(t.name, t.line.color) for t in entries] == [("q: 2-sd ellipse", "black")]
    edges = [t for t in fig.data if t.meta == "ellipse-edge"]
    lines = [t for t in fig.data if t.meta == "ellipse"]
    assert len(edges) == len(lines) == 4 and {t.legendgroup for t in edges} == {t.legendgroup for t in lines}
