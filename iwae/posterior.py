"""Densities of one image's latent posterior on a display grid: q(z|x), q_IW(z|x) at any K, p(z|x).

The grid window is chosen from the adaptive quadrature (``quadrature.py``), which searches the whole
latent plane, so it covers the true posterior even where q(z|x) never reaches; log p(x) comes from the
same quadrature. q_IW follows Cremer et al. (2017):

    q_IW(z|x) = q(z|x) E_{z_2..z_K ~ q}[ K w(z) / (w(z) + sum_{j=2..K} w(z_j)) ]

estimated in log space with M draws of the K - 1 other weights shared by every grid point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from . import quadrature as quad
from .model import VAE, gaussian_log_density

RESOLUTION = 128
POOL_SIZE = 10_000  # proposal draws kept per image; K - 1 of them form each draw of S
N_S_DRAWS = 64  # M: draws of S = sum of K - 1 other weights, shared by all grid points
WINDOW_NATS = 9.0  # the window covers z where p(z|x) is within this of its maximum density


@dataclass
class ImageGrid:
    """One image's display grid and the exact densities on it."""

    x_axis: torch.Tensor  # (n,)
    y_axis: torch.Tensor  # (n,)
    points: torch.Tensor  # (n*n, 2), g = i * n + j for z = (x_axis[i], y_axis[j])
    spacing: float
    log_q: torch.Tensor  # (n*n,) log q(z|x)
    log_joint: torch.Tensor  # (n*n,) log p(x, z)
    log_px: float  # quadrature
    log_px_error: float  # its error estimate (nats)
    mu: torch.Tensor  # (2,)
    sigma: torch.Tensor  # (2,)

    @property
    def n(self) -> int:
        return len(self.x_axis)

    @property
    def log_area(self) -> float:
        return 2 * math.log(self.spacing)

    @property
    def log_posterior(self) -> torch.Tensor:
        """log p(z|x) = log p(x, z) - log p(x), normalized by the quadrature."""
        return self.log_joint - self.log_px

    @property
    def log_w(self) -> torch.Tensor:
        return self.log_joint - self.log_q

    def mass(self, log_density: torch.Tensor) -> float:
        """Integral of a density over the window (1 when the window covers and resolves it)."""
        return torch.logsumexp(log_density.double() + self.log_area, 0).exp().item()

    def to_image(self, values: torch.Tensor):
        """(n*n,) -> numpy (n_y, n_x) with rows along y, as heatmaps expect."""
        return values.reshape(self.n, self.n).T.numpy()


@dataclass
class Pool:
    """Draws from q(z|x) for one image and their log weights."""

    z: torch.Tensor  # (P, 2)
    log_w: torch.Tensor  # (P,)


def window_axes(centre: tuple[float, float], side: float, resolution: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Cell centres of a square window: (x_axis (n,), y_axis (n,), spacing), n = resolution cells per side."""
    spacing = side / resolution
    offsets = -side / 2 + spacing * (torch.arange(resolution, dtype=torch.float32) + 0.5)
    return centre[0] + offsets, centre[1] + offsets, spacing


def choose_window(mu: torch.Tensor, sigma: torch.Tensor, q: quad.Quadrature) -> tuple[float, float, float]:
    """A square (centre x, centre y, side) holding q's mean +- 3.5 sd and every z where the true
    posterior density is within WINDOW_NATS of its maximum, with a cell's margin. It is read from the quadrature's
    first stage, before the resolution passes that only sharpen log p(x): so an image's window is the same whether
    its log p(x) is computed here or taken from the evaluation (``image_grid``)."""
    stage = q.first_stage
    near_top = stage.log_joint >= stage.log_joint.max() - WINDOW_NATS
    pts = stage.points[near_top]
    cell = math.exp(0.5 * stage.log_area[near_top].max().item())
    lo = torch.minimum(pts.min(0).values - cell, mu - 3.5 * sigma)
    hi = torch.maximum(pts.max(0).values + cell, mu + 3.5 * sigma)
    centre = (lo + hi) / 2
    side = max((hi - lo).max().item() * 1.15, 0.05)
    return centre[0].item(), centre[1].item(), side


@torch.no_grad()
def image_grid(model: VAE, grid: quad.GlobalGrid, x: torch.Tensor, resolution: int = RESOLUTION,
               log_px: tuple[float, float] | None = None) -> ImageGrid:
    """The display grid for one binarized image x (D,): window, log q, log p(x, z), log p(x). ``log_px``: the
    quadrature's log p(x) and error estimate when already known (the evaluation's per-image numbers, from the same
    ``quadrature.refine``); then only the quadrature's first stage is computed here, for the window."""
    q = quad.refine_image(model, grid, x, passes=0 if log_px is not None else None)
    log_px, log_px_error = log_px if log_px is not None else (q.log_px, q.error_estimate)
    mu, logvar = model.encode(x[None])
    mu, logvar = mu[0], logvar[0]
    sigma = torch.exp(0.5 * logvar)
    cx, cy, side = choose_window(mu, sigma, q)
    x_axis, y_axis, spacing = window_axes((cx, cy), side, resolution)
    points = torch.cartesian_prod(x_axis, y_axis)
    return ImageGrid(
        x_axis=x_axis,
        y_axis=y_axis,
        points=points,
        spacing=spacing,
        log_q=gaussian_log_density(points, mu, logvar),
        log_joint=model.log_joint(x[None], points[None])[0],  # the fast path (iwae.decoding): 16,384 points
        log_px=log_px,
        log_px_error=log_px_error,
        mu=mu,
        sigma=sigma,
    )


@torch.no_grad()
def proposal_pool(model: VAE, x: torch.Tensor, size: int, generator: torch.Generator | None = None) -> Pool:
    """``size`` draws from q(z|x) for one image x (D,) and their log weights."""
    zs, lws = [], []
    for start in range(0, size, 16384):
        lw = model.log_weights(x[None], min(16384, size - start), generator)
        zs.append(lw.z[0])
        lws.append(lw.log_w[0])
    return Pool(torch.cat(zs), torch.cat(lws))


def pool_size_for(k: int) -> int:
    """Pool size so that the M draws of K - 1 distinct others vary: 4 (K - 1), at least POOL_SIZE.
    The pool's own Monte Carlo error in p(x) is what the q_IW integral self-check shows."""
    return max(POOL_SIZE, 4 * (k - 1))


@torch.no_grad()
def log_other_weight_sums(pool: Pool, k: int, n_draws: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """log S_m, S_m = sum of K - 1 weights of distinct pool draws (exactly distributed as K - 1 fresh
    draws from q).  -> (M,); -inf when K = 1."""
    if k < 1:
        raise ValueError(f"K must be at least 1, got {k}")
    if k == 1:
        return torch.full((n_draws,), -math.inf, dtype=torch.float64)
    if k - 1 > len(pool.log_w):
        raise ValueError(f"the pool holds {len(pool.log_w)} draws, K - 1 = {k - 1} needs more")
    size = len(pool.log_w)
    # Windows of K - 1 consecutive positions (cyclically) in one random permutation of the pool:
    # each window holds K - 1 distinct draws, as cheap as slicing.
    order = torch.randperm(size, generator=generator)
    starts = torch.randint(0, size, (n_draws, 1), generator=generator)
    idx = order[(starts + torch.arange(k - 1)) % size]  # (M, K-1)
    return torch.logsumexp(pool.log_w.double()[idx], dim=1)


@torch.no_grad()
def log_q_iw(
    g: ImageGrid, pool: Pool, k: int, n_draws: int = N_S_DRAWS, generator: torch.Generator | None = None
) -> torch.Tensor:
    """log q_IW(z|x) at K on the grid points, not renormalized.  -> (n*n,) float64"""
    log_s = log_other_weight_sums(pool, k, n_draws, generator)  # (M,)
    log_w = g.log_w.double()[:, None]  # (G, 1)
    ratio = math.log(k) + log_w - torch.logaddexp(log_w, log_s[None, :])  # (G, M): log K w / (w + S)
    return g.log_q.double() + torch.logsumexp(ratio, dim=1) - math.log(n_draws)


GRID_S_BUDGET = 500_000  # draws of "other" weights behind one q_IW: M = budget / (K - 1) draws of S
GRID_S_MAX_DRAWS = 4096  # at most this many draws of S (small K)
GRID_S_LEVELS = 256  # log w levels at which E_S[K w / (w + S)] is tabulated
GRID_S_MARGIN = 30.0  # nats beyond the drawn log S where the table stops; outside, the exact limits are used


def log_other_weight_sums_on_grid(g: ImageGrid, k: int, n_draws: int,
                                  generator: torch.Generator | None = None) -> torch.Tensor:
    """log S_m, S_m = sum of the weights of K - 1 draws from q discretized on the grid (cell probabilities
    proportional to q at the cell centres).  -> (M,); -inf when K = 1."""
    if k < 1:
        raise ValueError(f"K must be at least 1, got {k}")
    if k == 1:
        return torch.full((n_draws,), -math.inf, dtype=torch.float64)
    cdf = torch.cumsum(torch.softmax(g.log_q.double(), 0), 0)
    # Stratified uniforms in random order: each draw is exactly distributed as q on the grid, and together they
    # hold every cell in its exact proportion, so rare cells with large weights are neither missed nor doubled.
    n = n_draws * (k - 1)
    u = (torch.arange(n, dtype=torch.float64) + torch.rand(n, generator=generator, dtype=torch.float64)) / n * cdf[-1]
    below = torch.searchsorted(u, cdf)  # sorted u: count per cell by 16k searches, not n
    counts = torch.diff(below, prepend=below.new_zeros(1))
    counts[-1] += n - below[-1]
    cells = torch.repeat_interleave(torch.arange(len(cdf)), counts)[torch.randperm(n, generator=generator)]
    return torch.logsumexp(g.log_w.double()[cells].view(n_draws, k - 1), dim=1)


def grid_s_draws(k: int, budget: int = GRID_S_BUDGET) -> int:
    """M, the draws of S behind one grid-based q_IW at K: budget / (K - 1), between 64 and GRID_S_MAX_DRAWS."""
    return max(64, min(GRID_S_MAX_DRAWS, budget // max(k - 1, 1)))


@torch.no_grad()
def log_q_iw_on_grid(g: ImageGrid, k: int, generator: torch.Generator | None = None,
                     budget: int = GRID_S_BUDGET) -> torch.Tensor:
    """log q_IW(z|x) at K on the grid points, not renormalized, with the K - 1 other samples drawn from q
    discretized on the same grid.  -> (n*n,) float64

    E_S[K w / (w + S)] depends on z only through w(z), so it is computed once per level of log w, from
    M = budget / (K - 1) draws of S (between 64 and GRID_S_MAX_DRAWS), and interpolated at each grid point:
    many more draws of S than ``log_q_iw`` affords per point. Below the tabulated range it is K w E[1/S]
    (slope 1 in log w), above it K. Because the grid point z and the others then come from one distribution,
    the integral is q's mass on the window up to the Monte Carlo error of the M draws (symmetry:
    E[K w_1 / (w_1 + ... + w_K)] = 1), which makes the self-check sharp. Needs q resolved by the grid
    (a standard deviation of at least two cells); otherwise use ``log_q_iw`` with a pool of draws."""
    log_q = g.log_q.double()
    if k == 1:
        return log_q.clone()
    m = grid_s_draws(k, budget)
    log_s = log_other_weight_sums_on_grid(g, k, m, generator)  # (M,)
    log_w = g.log_w.double()
    finite = log_w[torch.isfinite(log_w)]
    lo = max(finite.min().item(), log_s.min().item() - GRID_S_MARGIN)
    hi = min(finite.max().item(), log_s.max().item() + GRID_S_MARGIN)
    hi = max(hi, lo + 1e-6)
    levels = torch.linspace(lo, hi, GRID_S_LEVELS, dtype=torch.float64)
    ratio = math.log(k) + levels[:, None] - torch.logaddexp(levels[:, None], log_s[None, :])  # (L, M)
    log_phi = torch.logsumexp(ratio, dim=1) - math.log(m)  # log E_S[K w / (w + S)] at each level
    pos = ((log_w - lo) / (hi - lo) * (GRID_S_LEVELS - 1)).clamp(0, GRID_S_LEVELS - 1)
    i0 = pos.floor().long().clamp(max=GRID_S_LEVELS - 2)
    t = pos - i0
    inside = log_phi[i0] * (1 - t) + log_phi[i0 + 1] * t
    below = log_phi[0] + (log_w - lo)  # K w E[1/S]: proportional to w
    out = torch.where(log_w < lo, below, torch.where(log_w > hi, log_phi[-1].expand_as(log_w), inside))
    return log_q + out


RESOLVED_CELLS = 2.0  # the grid resolves q when each of its standard deviations spans at least this many cells


def q_resolved(g: ImageGrid) -> bool:
    """Whether the display grid resolves q(z|x): the one rule behind both the q_IW estimator chosen here and the
    exact 2-sd ellipse the figures draw in place of a q too narrow to show (``figures.posterior_figures``)."""
    return g.sigma.min().item() >= RESOLVED_CELLS * g.spacing


@dataclass(frozen=True)
class OthersDrawn:
    """How the K - 1 other samples behind a q_IW estimate were drawn."""

    source: str  # "grid": from q discretized on the display grid, stratified; "pool": from a pool of draws from q
    draws: int  # M, the draws of the K - 1 others
    pool_size: int = 0  # the pool's size when source == "pool"


def log_q_iw_for_display(g: ImageGrid, pool: Pool, k: int,
                         generator: torch.Generator | None = None) -> tuple[torch.Tensor, OthersDrawn]:
    """The explorer's q_IW at K: the other samples from q on the grid when the grid resolves q (the sharper
    estimate), else from the pool of draws.  -> (log q_IW (n*n,), how the other K - 1 samples were drawn)"""
    if k == 1 or q_resolved(g):
        return log_q_iw_on_grid(g, k, generator), OthersDrawn("grid", grid_s_draws(k))
    return log_q_iw(g, pool, k, generator=generator), OthersDrawn("pool", N_S_DRAWS, len(pool.log_w))


def renormalize(log_density: torch.Tensor, log_area: float) -> torch.Tensor:
    """Normalize on the grid so the Riemann sum is exactly 1 (for distances between grid densities)."""
    return log_density - torch.logsumexp(log_density.double() + log_area, 0)


def total_variation(log_p: torch.Tensor, log_q: torch.Tensor, log_area: float) -> float:
    """TV = 1/2 integral |p - q| over the grid, both renormalized on it."""
    p = renormalize(log_p.double(), log_area).exp()
    q = renormalize(log_q.double(), log_area).exp()
    return 0.5 * ((p - q).abs().sum() * math.exp(log_area)).item()


def kl_divergence(log_p: torch.Tensor, log_q: torch.Tensor, log_area: float) -> float:
    """KL(p || q) = integral p log(p / q) over the grid, both renormalized on it."""
    lp = renormalize(log_p.double(), log_area)
    lq = renormalize(log_q.double(), log_area)
    terms = torch.where(lp > -math.inf, lp.exp() * (lp - lq), torch.zeros_like(lp))  # 0 log 0 = 0
    return (terms.sum() * math.exp(log_area)).item()
