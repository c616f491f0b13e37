"""Exact log p(x) and p(z|x) by quadrature over the 2-D latent plane.

One implementation serves the evaluation CLI and the explorer's views:

1. A global grid of cell centres over [-R, R]^2 (spacing h0), shared by every image: the decoder's
   logits there do not depend on x, so log p(x|z_g) for a batch of images is one matrix product.
   This searches the whole plane, so modes that q(z|x) never reaches are found.
2. Per image, cells that hold mass (log p(x, z) within ``MASS_NATS`` of the maximum) or may hide a
   narrow peak (large curvature within ``SEARCH_NATS``) are subdivided s x s, with s chosen from the
   local curvature so that the fine spacing is at most half the posterior's width there.
3. log p(x) = logsumexp over all points of log p(x, z) + log(cell area).

Error estimate: the same sum with every other sub-point (a uniform lattice of twice the spacing)
gives a second estimate; their difference bounds the resolution error (the midpoint rule on a smooth
peak converges very fast, so the finer estimate is far better than this). Mass outside the square is
bounded by max over the border of log p(x|z) + log P(z outside the square).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .model import VAE, standard_normal_log_density

HALF_WIDTH = 6.0  # R: the global grid covers [-R, R]^2; P(z outside) under the prior is 4e-9
COARSE_SPACING = 0.075  # h0
MASS_NATS = 12.0  # cells within this of the max log joint are refined where curvature asks for it
SEARCH_NATS = 30.0  # cells within this are refined too if their curvature suggests a hidden narrow peak
MAX_SUBDIVISION = 32


@dataclass
class GlobalGrid:
    """The decoder evaluated on the global grid of cell centres; shared by all images of one model."""

    centres: torch.Tensor  # (G, 2)
    logits: torch.Tensor  # (G, D) decoder logits
    softplus_sum: torch.Tensor  # (G,) sum_d softplus(logits)
    log_prior: torch.Tensor  # (G,)
    n: int  # the grid is n x n; index g = i * n + j with z = (x_i, y_j)
    spacing: float
    half_width: float


@dataclass
class Quadrature:
    log_px: float  # log p(x) by quadrature
    error_estimate: float  # nats: |fine - half-resolution| + bound on mass outside the square
    outside_log_mass_bound: float  # log of an upper bound on the mass outside [-R, R]^2
    points: torch.Tensor  # (P, 2) every quadrature point used
    log_joint: torch.Tensor  # (P,) log p(x, z) there
    log_area: torch.Tensor  # (P,) log cell area there
    n_refined_cells: int
    finest_spacing: float


def axis_centres(n: int, spacing: float, half_width: float) -> torch.Tensor:
    return -half_width + spacing * (torch.arange(n, dtype=torch.float32) + 0.5)


@torch.no_grad()
def log_likelihood_from_logits(x: torch.Tensor, logits: torch.Tensor, softplus_sum: torch.Tensor) -> torch.Tensor:
    """log p(x|z_g) for images x (B, D) and logits (G, D): x . f - sum softplus(f).  -> (B, G)"""
    return x @ logits.T - softplus_sum


@torch.no_grad()
def decoder_table(model: VAE, z: torch.Tensor, chunk: int = 16384) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoder logits and their softplus sums at points z (G, 2)."""
    logits = torch.cat([model.decode_logits(c) for c in z.split(chunk)])
    return logits, F.softplus(logits).sum(-1)


@torch.no_grad()
def global_grid(model: VAE, half_width: float = HALF_WIDTH, spacing: float = COARSE_SPACING) -> GlobalGrid:
    n = int(round(2 * half_width / spacing))
    axis = axis_centres(n, spacing, half_width)
    centres = torch.cartesian_prod(axis, axis)  # (n*n, 2), row-major: g = i * n + j
    logits, softplus_sum = decoder_table(model, centres)
    return GlobalGrid(centres, logits, softplus_sum, standard_normal_log_density(centres), n, spacing, half_width)


@torch.no_grad()
def coarse_log_joint(grid: GlobalGrid, x: torch.Tensor) -> torch.Tensor:
    """log p(x, z_g) on the global grid for images x (B, D).  -> (B, G)"""
    return log_likelihood_from_logits(x, grid.logits, grid.softplus_sum) + grid.log_prior


@torch.no_grad()
def log_joint_at(model: VAE, x: torch.Tensor, z: torch.Tensor, chunk: int = 16384) -> torch.Tensor:
    """log p(x, z) for one image x (D,) at points z (P, 2).  -> (P,)"""
    out = []
    for c in z.split(chunk):
        logits = model.decode_logits(c)
        out.append(log_likelihood_from_logits(x, logits, F.softplus(logits).sum(-1)) + standard_normal_log_density(c))
    return torch.cat(out) if out else torch.zeros(0)


def _curvature(j2d: torch.Tensor) -> torch.Tensor:
    """Largest absolute second difference along either axis, per cell (borders: one-sided 0)."""
    curv = torch.zeros_like(j2d)
    dx = (j2d[2:, :] - 2 * j2d[1:-1, :] + j2d[:-2, :]).abs()
    dy = (j2d[:, 2:] - 2 * j2d[:, 1:-1] + j2d[:, :-2]).abs()
    curv[1:-1, :] = torch.maximum(curv[1:-1, :], dx)
    curv[:, 1:-1] = torch.maximum(curv[:, 1:-1], dy)
    return torch.nan_to_num(curv, nan=0.0, posinf=1e6)


def _subdivision(curv: torch.Tensor) -> torch.Tensor:
    """Powers of two s with fine spacing h0/s <= posterior width / 2, width ~ h0 / sqrt(curvature)."""
    need = 2.0 * curv.clamp(min=0).sqrt()
    s = torch.ones_like(need, dtype=torch.int64)
    while True:
        grow = (s < need) & (s < MAX_SUBDIVISION)
        if not grow.any():
            return s
        s = torch.where(grow, s * 2, s)


def _outside_log_mass_bound(grid: GlobalGrid, j_coarse: torch.Tensor) -> float:
    """max over the border cells of log p(x|z) plus log P(z outside the square) under the prior."""
    n = grid.n
    j2d = (j_coarse - grid.log_prior).reshape(n, n)
    border = torch.cat([j2d[0], j2d[-1], j2d[:, 0], j2d[:, -1]]).max().item()
    tail = math.erfc(grid.half_width / math.sqrt(2))  # P(|z_1| > R)
    p_outside = 1 - (1 - tail) ** 2
    return border + math.log(p_outside)


@torch.no_grad()
def refine(model: VAE, grid: GlobalGrid, x: torch.Tensor, j_coarse: torch.Tensor) -> Quadrature:
    """Adaptive quadrature for one image x (D,), given its log joint on the global grid (G,)."""
    n, h0 = grid.n, grid.spacing
    j2d = j_coarse.reshape(n, n)
    top = j_coarse.max()
    curv = _curvature(j2d)
    wanted = (j2d >= top - MASS_NATS) | ((j2d >= top - SEARCH_NATS) & (curv > 4.0))
    s = torch.where(wanted, _subdivision(curv), torch.ones_like(curv, dtype=torch.int64)).reshape(-1)

    log_area0 = math.log(h0 * h0)
    keep = s == 1
    points = [grid.centres[keep]]
    log_joint = [j_coarse[keep]]
    log_area = [torch.full((int(keep.sum()),), log_area0)]
    half_terms = [j_coarse[keep] + log_area0]  # the half-resolution estimate shares the unrefined cells
    finest = h0
    for level in torch.unique(s[~keep]).tolist():
        cells = grid.centres[s == level]  # (C, 2)
        offs = (torch.arange(level, dtype=torch.float32) + 0.5) / level - 0.5
        offsets = torch.cartesian_prod(offs, offs) * h0  # (level^2, 2)
        sub = (cells[:, None, :] + offsets[None, :, :]).reshape(-1, 2)  # (C * level^2, 2)
        j_sub = log_joint_at(model, x, sub)
        area = 2 * math.log(h0 / level)
        points.append(sub)
        log_joint.append(j_sub)
        log_area.append(torch.full((len(sub),), area))
        # every other sub-point in each direction: a uniform lattice of spacing 2 h0 / level
        even = torch.cartesian_prod(torch.arange(level) % 2 == 0, torch.arange(level) % 2 == 0).all(-1)
        half_terms.append(j_sub.reshape(len(cells), -1)[:, even].reshape(-1) + area + math.log(4))
        finest = min(finest, h0 / level)
    points_t, joint_t, area_t = torch.cat(points), torch.cat(log_joint), torch.cat(log_area)
    log_px = torch.logsumexp((joint_t + area_t).double(), 0).item()
    log_px_half = torch.logsumexp(torch.cat(half_terms).double(), 0).item()
    outside = _outside_log_mass_bound(grid, j_coarse)
    d = outside - log_px  # missing mass changes log p(x) by at most log(1 + e^d) nats
    outside_nats = d + math.log1p(math.exp(-d)) if d > 0 else math.log1p(math.exp(d))
    error = abs(log_px - log_px_half) + outside_nats
    return Quadrature(
        log_px=log_px,
        error_estimate=error,
        outside_log_mass_bound=outside,
        points=points_t,
        log_joint=joint_t,
        log_area=area_t,
        n_refined_cells=int((~keep).sum()),
        finest_spacing=finest,
    )


@torch.no_grad()
def log_px_batch(model: VAE, grid: GlobalGrid, x: torch.Tensor, batch: int = 256, progress=None) -> tuple[
    torch.Tensor, torch.Tensor
]:
    """Quadrature log p(x) and its error estimate for many images (N, D).  -> (N,), (N,)"""
    log_px, err = torch.empty(len(x), dtype=torch.float64), torch.empty(len(x), dtype=torch.float64)
    for start in range(0, len(x), batch):
        xb = x[start : start + batch]
        jb = coarse_log_joint(grid, xb)
        for i in range(len(xb)):
            q = refine(model, grid, xb[i], jb[i])
            log_px[start + i], err[start + i] = q.log_px, q.error_estimate
        if progress is not None:
            progress(len(xb))
    return log_px, err


@torch.no_grad()
def posterior_modes(grid: GlobalGrid, j_coarse: torch.Tensor, nats: float = 6.0) -> list[float]:
    """Separate regions of the posterior on the global grid: connected sets of cells whose log joint is
    within ``nats`` of the maximum. Returns each region's share of the mass, largest first."""
    from scipy import ndimage

    j2d = j_coarse.reshape(grid.n, grid.n)
    labels, count = ndimage.label((j2d >= j2d.max() - nats).numpy())
    weights = torch.softmax(j_coarse.double(), 0).reshape(grid.n, grid.n).numpy()
    shares = ndimage.sum(weights, labels, index=range(1, count + 1))
    return sorted((float(s) for s in shares), reverse=True)
