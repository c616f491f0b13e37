"""Sampling-importance-resampling (sir.sir_sample) against the q_IW density: chi-square tests of histograms of many
draws over grid-cell bins, which pass for the sampler and fail for deliberately wrong ones.

Models: a small VAE trained in-process on binarized sklearn digits, and (marked slow) copies of the shipped MNIST
checkpoints vae-k1 and iwae-k50 with images of the shipped binarized test set.
"""

from __future__ import annotations

import math

import pytest
import torch
from posterior_setup import (
    Setup,
    _covering,
    _gen,
    _grid,
)
from scipy import stats

from iwae import posterior as post
from iwae import sir
from iwae.model import VAE

# --- helpers --------------------------------------------------------------------------------------------------------

SIR_K = 5  # small K: q_IW is then clearly different from both q and p(z|x)
N_INDEPENDENT = 20_000  # draws in independent mode
SHARED_CALLS, SHARED_R = 4_000, 4  # shared mode: 4,000 batches of K proposals, 4 draws from each
BINS = 16  # the grid is coarsened to 16 x 16 bins; bins expecting fewer than 5 draws are merged into one
P_MIN = 1e-3


def _sir_image(s: Setup) -> int:
    """digits: the image with the largest TV(q, p) among the first 10 test images (q_IW at K = 5 then sits clearly
    between q and p, checked in the tests); MNIST: the first image where q covers p."""
    if s.name != "digits":
        return _covering(s, 1)[0]
    tv = [post.total_variation(_grid(s, i).log_posterior, _grid(s, i).log_q, _grid(s, i).log_area) for i in range(10)]
    return max(range(10), key=lambda i: tv[i])


def _log_q_iw_precise(s: Setup, i: int, k: int) -> torch.Tensor:
    """q_IW at K from a 50,000-draw pool and 4,096 draws of S (16 calls of 256): its bin probabilities are then
    accurate to ~1%, far below the 7% sampling error of a bin holding 200 of 20,000 draws."""
    key = ("q_iw_precise", i, k)
    if key not in s.cache:
        pool = post.proposal_pool(s.model, s.x[i], 50_000, _gen(7 + i))
        parts = [post.log_q_iw(_grid(s, i), pool, k, 256, _gen(500 + c)) for c in range(16)]
        s.cache[key] = torch.logsumexp(torch.stack(parts), 0) - math.log(len(parts))
    return s.cache[key]


def _bin_probs(g: post.ImageGrid, log_density: torch.Tensor) -> torch.Tensor:
    """Probabilities of the BINS x BINS bins under a grid density, normalized over the window.  -> (BINS^2,)"""
    b = g.n // BINS
    p = torch.softmax(log_density.double(), 0).reshape(g.n, g.n)  # [i (x), j (y)]
    return p.reshape(BINS, b, BINS, b).sum((1, 3)).reshape(-1)


def _bin_counts(g: post.ImageGrid, z: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Counts of draws z (R, 2) per bin, and how many fell outside the window."""
    h = g.spacing
    i = torch.floor((z[:, 0].double() - (g.x_axis[0].item() - h / 2)) / h).long()
    j = torch.floor((z[:, 1].double() - (g.y_axis[0].item() - h / 2)) / h).long()
    inside = (i >= 0) & (i < g.n) & (j >= 0) & (j < g.n)
    b = g.n // BINS
    index = (i[inside] // b) * BINS + j[inside] // b
    return torch.bincount(index, minlength=BINS * BINS).double(), int((~inside).sum())


def _chi_square_p(g: post.ImageGrid, z: torch.Tensor, log_density: torch.Tensor) -> float:
    """p-value of Pearson's chi-square test of the draws' bin counts against the density (draws outside the window,
    under 1% of them, are left out: the test is then of the density conditioned on the window)."""
    counts, outside = _bin_counts(g, z)
    assert outside <= 0.01 * len(z), f"{outside} of {len(z)} draws outside the window"
    expected = _bin_probs(g, log_density) * counts.sum()
    small = expected < 5
    obs = torch.cat([counts[~small], counts[small].sum().reshape(1)])
    exp = torch.cat([expected[~small], expected[small].sum().reshape(1)])
    if not small.any():
        obs, exp = obs[:-1], exp[:-1]
    return float(stats.chisquare(obs.numpy(), exp.numpy()).pvalue)


def _check_draws(d: sir.SIRDraws, k: int, shared: bool) -> None:
    """Each draw is the proposal its index names, weights are normalized, 1 <= ESS <= K."""
    batches = 1 if shared else len(d.z)
    assert d.proposals.shape == (batches, k, 2) and d.weights.shape == (batches, k)
    picked = d.proposals[0, d.index] if shared else d.proposals[torch.arange(len(d.z)), d.index]
    assert torch.equal(d.z, picked)
    torch.testing.assert_close(d.weights.sum(-1), torch.ones(batches, dtype=d.weights.dtype))
    assert ((d.ess >= 1 - 1e-9) & (d.ess <= k + 1e-9)).all()


# --- independent mode -----------------------------------------------------------------------------------------------


def test_sir_independent_matches_q_iw(subject):
    """20,000 independent SIR draws at K = 5: chi-square p > 1e-3 against the q_IW density on 16 x 16 bins."""
    i = _sir_image(subject)
    g = _grid(subject, i)
    draws = sir.sir_sample(subject.model, subject.x[i], SIR_K, N_INDEPENDENT, _gen(11))
    _check_draws(draws, SIR_K, shared=False)
    p = _chi_square_p(g, draws.z, _log_q_iw_precise(subject, i, SIR_K))
    assert p > P_MIN, f"{subject.name} image {i}: SIR draws do not follow q_IW at K={SIR_K} (p = {p:.2e})"


def test_chi_square_rejects_wrong_samplers(small):
    """The same test has the power to see the classic mistakes, on an image where q_IW (K = 5) differs from both q
    and p (TV > 0.1 to each): resampling from a batch of K - 1 proposals (q_IW at K - 1, an off-by-one in "K - 1
    others"), and returning q's draws without resampling, are both rejected (p < 1e-3) while the sampler is not."""
    i = _sir_image(small)
    g = _grid(small, i)
    log_q_iw = _log_q_iw_precise(small, i, SIR_K)
    assert post.total_variation(log_q_iw, g.log_q, g.log_area) > 0.1
    assert post.total_variation(log_q_iw, g.log_posterior, g.log_area) > 0.1
    right = sir.sir_sample(small.model, small.x[i], SIR_K, N_INDEPENDENT, _gen(12)).z
    off_by_one = sir.sir_sample(small.model, small.x[i], SIR_K - 1, N_INDEPENDENT, _gen(13)).z
    no_resampling = sir.q_samples(small.model, small.x[i], N_INDEPENDENT, _gen(14))
    assert _chi_square_p(g, right, log_q_iw) > P_MIN
    assert _chi_square_p(g, off_by_one, log_q_iw) < P_MIN
    assert _chi_square_p(g, no_resampling, log_q_iw) < P_MIN
    assert _chi_square_p(g, no_resampling, g.log_q) > P_MIN  # q_samples itself is right: it follows q


# --- shared mode ----------------------------------------------------------------------------------------------------


def _without_replacement(model: VAE, x: torch.Tensor, k: int, calls: int, r: int, gen) -> torch.Tensor:
    """The wrong shared mode: R distinct indices from one batch of K proposals.  -> (calls, R, 2)"""
    lw = model.log_weights(x.expand(calls, -1), k, gen)
    index = torch.multinomial(torch.softmax(lw.log_w.double(), -1), r, replacement=False, generator=gen)
    return torch.gather(lw.z, 1, index[..., None].expand(-1, -1, 2))


def test_sir_shared_mode_each_draw_is_q_iw(small):
    """Shared mode (one batch of K = 5 proposals, R = 4 indices with replacement): the draws of one batch are
    dependent, so the chi-square test is run per position r over 4,000 independent batches: every position follows
    q_IW (p > 1e-3). Drawing the R indices without replacement instead is rejected at positions 2-4 (p < 1e-3),
    while its first position, an ordinary SIR draw, passes."""
    i = _sir_image(small)
    g = _grid(small, i)
    log_q_iw = _log_q_iw_precise(small, i, SIR_K)
    gen = _gen(21)
    batches = []
    for _ in range(SHARED_CALLS):
        d = sir.sir_sample(small.model, small.x[i], SIR_K, SHARED_R, gen, shared=True)
        batches.append(d.z)
    _check_draws(d, SIR_K, shared=True)
    z = torch.stack(batches)  # (calls, R, 2)
    for r in range(SHARED_R):
        p = _chi_square_p(g, z[:, r], log_q_iw)
        assert p > P_MIN, f"shared mode, draw {r + 1} of each batch: p = {p:.2e}"
    wrong = _without_replacement(small.model, small.x[i], SIR_K, SHARED_CALLS, SHARED_R, _gen(22))
    assert _chi_square_p(g, wrong[:, 0], log_q_iw) > P_MIN
    for r in range(1, SHARED_R):
        p = _chi_square_p(g, wrong[:, r], log_q_iw)
        assert p < P_MIN, f"without replacement, draw {r + 1} of each batch passed: p = {p:.2e}"


# --- extremes -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("subject", ["digits", pytest.param("vae-k1", marks=pytest.mark.slow)], indirect=True)
def test_sir_finite_at_k_100000_and_on_extreme_images(subject):
    """K = 100,000 (shared mode, 16 draws; independent mode, 1 draw) and all-black / all-white images at K = 1, 1000:
    finite draws, normalized weights, 1 <= ESS <= K, and every draw one of its batch's proposals."""
    x = subject.x[_sir_image(subject)]
    for image, k, shared, r in [(x, 100_000, True, 16), (x, 100_000, False, 1)] + [
        (torch.full_like(x, pixel), k, shared, 8) for pixel in (0.0, 1.0) for k in (1, 1000) for shared in (False, True)
    ]:
        d = sir.sir_sample(subject.model, image, k, r, _gen(k), shared=shared)
        assert torch.isfinite(d.z).all() and torch.isfinite(d.weights).all()
        _check_draws(d, k, shared)


def test_sir_from_pool_matches_q_iw(small):
    """Resampling from a pool of q draws (the app's overlay): disjoint K-sets give independent draws that pass the
    same chi-square test against q_IW at K = 5; windows of one permutation (R K > pool) are flagged dependent."""
    i = _sir_image(small)
    g = _grid(small, i)
    pool = post.proposal_pool(small.model, small.x[i], SIR_K * N_INDEPENDENT, _gen(21))
    draws = sir.sir_from_pool(pool.z, pool.log_w, SIR_K, N_INDEPENDENT, _gen(22))
    assert draws.independent
    assert torch.equal(draws.z, draws.proposals[torch.arange(N_INDEPENDENT), draws.index])
    assert _chi_square_p(g, draws.z, _log_q_iw_precise(small, i, SIR_K)) > P_MIN
    wrong = sir.sir_from_pool(pool.z, pool.log_w, SIR_K - 1, N_INDEPENDENT, _gen(23))  # off by one: rejected
    assert _chi_square_p(g, wrong.z, _log_q_iw_precise(small, i, SIR_K)) < P_MIN
    dependent = sir.sir_from_pool(pool.z[:1000], pool.log_w[:1000], 50, 100, _gen(24))
    assert not dependent.independent and torch.isfinite(dependent.weights).all()
    with pytest.raises(ValueError):
        sir.sir_from_pool(pool.z[:10], pool.log_w[:10], 11, 1)


def test_the_independence_boundary_of_pool_draws():
    """sir.independent_from_pool is the one rule (the Posteriors page's caption reads the draws' flag): up to R K = pool
    size the K-sets are disjoint, so no pool draw serves two SIR draws; one more draw makes them dependent."""
    z = torch.randn(1000, 2, generator=_gen(30))
    log_w = torch.randn(1000, generator=_gen(31), dtype=torch.float64)
    fits = sir.sir_from_pool(z, log_w, 10, 100, _gen(32))
    assert sir.independent_from_pool(10, 100, 1000) and fits.independent
    assert len(torch.unique(fits.proposals.reshape(-1, 2), dim=0)) == 1000  # every pool draw used exactly once
    over = sir.sir_from_pool(z, log_w, 10, 101, _gen(33))
    assert not sir.independent_from_pool(10, 101, 1000) and not over.independent
